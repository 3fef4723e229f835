//! Picking the transport of a reference or destination, and the entry points that read
//! ([`fetch`], [`load`]) and write ([`publish`]) through it.

use super::context::{Context, Transport, Transports};
use super::publish::{Destination, PublishError, Publishable, Published};
use super::{docker_archive, docker_daemon, oci, oci_archive, registry, store};
use crate::event::{CancelToken, EventSink};
use crate::image::reference::ImageReference;
use crate::image::{ImageError, LoadedImage, TargetPlatform};
use crate::store::Store;

/// Reads the image `reference` for `platform`, whatever its transport: registry images are
/// pulled into the store (by `transports.pull_policy`; when the registry cannot be reached,
/// a copy already in the store is used with a warning), daemon images are saved from the
/// daemon and imported, local ones are read as [`load`] reads them.
pub fn fetch(
    reference: &ImageReference,
    store: &Store,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<LoadedImage, ImageError> {
    let cx = Context {
        store,
        transports,
        events,
        cancel,
    };
    reader(reference)?.read(&cx, platform)
}

/// Reads the local image `reference` for `platform`. Images read from an `oci-archive:` or a
/// `docker-archive:` are imported into the store first (verified blob by blob). Registry and
/// daemon images are fetched by [`fetch`].
pub fn load(
    reference: &ImageReference,
    store: &Store,
    platform: &TargetPlatform,
) -> Result<LoadedImage, ImageError> {
    if matches!(
        reference,
        ImageReference::Registry(_) | ImageReference::DockerDaemon(_)
    ) {
        return Err(ImageError::Remote {
            reference: reference.to_string(),
        });
    }
    let cx = Context {
        store,
        transports: &Transports::default(),
        events: &crate::event::NoEvents,
        cancel: &CancelToken::new(),
    };
    reader(reference)?.read(&cx, platform)
}

/// The transport of `reference`: what reads it, and what writes an image there.
pub fn reader(reference: &ImageReference) -> Result<Box<dyn Transport>, ImageError> {
    let r = reference.clone();
    Ok(match reference {
        ImageReference::Scratch => return Err(ImageError::Scratch),
        ImageReference::Named(name) => Box::new(store::StoreImage {
            name: name.clone(),
            reference: r,
        }),
        ImageReference::Layout { path, name } => Box::new(oci::OciDir {
            path: path.clone(),
            name: name.clone(),
            reference: r,
        }),
        ImageReference::Archive { path, name } => Box::new(oci_archive::OciArchive {
            path: path.clone(),
            name: name.clone(),
            reference: r,
        }),
        ImageReference::DockerArchive { path, name } => Box::new(docker_archive::DockerArchive {
            path: path.clone(),
            name: name.clone(),
            reference: r,
        }),
        ImageReference::DockerDaemon(name) => Box::new(docker_daemon::DaemonImage {
            name: name.clone(),
            reference: r,
        }),
        ImageReference::Registry(name) => Box::new(registry::RegistryImage {
            name: name.clone(),
            reference: r,
        }),
    })
}

/// The transport that writes to `destination`.
pub fn writer(destination: &Destination) -> Box<dyn Transport> {
    use Destination as D;
    let reference = destination.reference();
    match destination {
        D::Store(name) => Box::new(store::StoreImage {
            name: name.clone(),
            reference,
        }),
        D::Layout { path, name } => Box::new(oci::OciDir {
            path: path.clone(),
            name: Some(name.clone()),
            reference,
        }),
        D::Archive { path, name } => Box::new(oci_archive::OciArchive {
            path: path.clone(),
            name: Some(name.clone()),
            reference,
        }),
        D::DockerArchive { path, name } => Box::new(docker_archive::DockerArchive {
            path: path.clone(),
            name: Some(name.clone()),
            reference,
        }),
        D::DockerDaemon(name) => Box::new(docker_daemon::DaemonImage {
            name: name.clone(),
            reference,
        }),
        D::Registry(name) => Box::new(registry::RegistryImage {
            name: name.clone(),
            reference,
        }),
    }
}

/// Publishes `image` (whose blobs are in `store`) to `destination`, through the destination's
/// transport ([`writer`]).
pub fn publish(
    store: &Store,
    image: Publishable<'_>,
    destination: &Destination,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<Published, PublishError> {
    let cx = Context {
        store,
        transports,
        events,
        cancel,
    };
    writer(destination).write(&cx, image)
}
