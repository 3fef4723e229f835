//! The artifacts attached to an image (its SBOMs, its provenance), read from wherever the
//! image is: kiln's store and `oci:` layouts list them in `index.json`; in `oci-archive:`
//! files they are found among the archive's manifests by their `subject` (read by importing
//! the archive's blobs into the store); a registry lists them through the referrers API or
//! its referrers tag (fetched into the store; with the pull policy `never`, the store's
//! are used). Docker archives and the Docker daemon have no place for them.

use super::context::{PullPolicy, Transports};
use crate::event::{CancelToken, EventSink};
use crate::image::layout::{LayoutError, OciLayout};
use crate::image::reference::ImageReference;
use crate::image::referrers::{self, Referrer};
use crate::image::{ImageError, LoadedImage, TargetPlatform};
use crate::store::Store;

/// An image and the artifacts attached to it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Attached {
    /// The image.
    pub image: LoadedImage,
    /// The artifacts whose subject is the image's manifest, sorted by type.
    pub referrers: Vec<Referrer>,
    /// The layout holding the artifacts' blobs.
    pub layout: OciLayout,
}

impl Attached {
    /// The first artifact of `artifact_type`.
    pub fn find(&self, artifact_type: &str) -> Option<&Referrer> {
        self.referrers
            .iter()
            .find(|r| r.artifact_type().as_deref() == Some(artifact_type))
    }

    /// The document an artifact carries: its first layer's blob, verified against its
    /// digest (at most [`crate::image::layout::OciLayout::read_blob`]'s limit).
    pub fn payload(&self, referrer: &Referrer) -> Result<Vec<u8>, LayoutError> {
        let Some(layer) = referrer.manifest.layers().first() else {
            return Ok(Vec::new());
        };
        self.layout.read_blob(layer.digest())
    }
}

/// Reads the image `reference` names and the artifacts attached to it.
pub fn attached(
    reference: &ImageReference,
    store: &Store,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<Attached, ImageError> {
    let image = super::fetch(reference, store, platform, transports, events, cancel)?;
    let subject = image.manifest_descriptor.digest().clone();
    let layout_err = |source| ImageError::Layout {
        reference: reference.to_string(),
        source,
    };
    let (layout, referrers) = match reference {
        ImageReference::Named(_) | ImageReference::Layout { .. } => {
            let layout = image.layout.clone();
            let found = referrers::referrers_of(&layout, &subject).map_err(layout_err)?;
            (layout, found)
        }
        ImageReference::Archive { path, .. } => {
            let (index, blobs) = super::oci_archive::import_listing(path, store.layout())?;
            let mut found = referrers::referrers_in(store.layout(), &index, &subject);
            if found.is_empty() {
                found = referrers::referrers_among(store.layout(), &blobs, &subject);
            }
            (store.layout().clone(), found)
        }
        ImageReference::Registry(name) if transports.pull_policy != PullPolicy::Never => {
            let registry = super::registry::Registry::for_transports(transports, store)?;
            let found = registry.referrers(
                name,
                &image.manifest_descriptor,
                store.layout(),
                events,
                cancel,
            )?;
            (store.layout().clone(), found)
        }
        ImageReference::Registry(_) => {
            let found = referrers::referrers_of(store.layout(), &subject).map_err(layout_err)?;
            (store.layout().clone(), found)
        }
        _ => (store.layout().clone(), Vec::new()),
    };
    Ok(Attached {
        image,
        referrers,
        layout,
    })
}
