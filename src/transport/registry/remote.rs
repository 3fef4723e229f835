//! Registry images as a transport: read by pulling into the store (by the pull policy),
//! written by pushing.

use super::{PullPolicy, RegistryError};
use crate::event::Event;
use crate::event::{CancelToken, EventSink};
use crate::image::reference::{ImageName, ImageReference};
use crate::image::{ImageError, LoadedImage, TargetPlatform};
use crate::store::Store;
use crate::transport::context::{Context, Transport, Transports};
use crate::transport::publish::{PublishError, Publishable, Published};
use crate::transport::store::StoreImage;

/// An image in a registry (`host/repo:tag`, `…@sha256:…`, `docker://…`).
#[derive(Debug, Clone)]
pub struct RegistryImage {
    /// The image.
    pub name: ImageName,
    /// The reference it was named by.
    pub reference: ImageReference,
}

impl Transport for RegistryImage {
    /// Pulls the image into the store by `transports.pull_policy`; when the registry cannot
    /// be reached, a copy already in the store is used with a warning.
    fn read(&self, cx: &Context<'_>, platform: &TargetPlatform) -> Result<LoadedImage, ImageError> {
        let name = &self.name;
        let stored = StoreImage {
            name: name.clone(),
            reference: ImageReference::Named(name.clone()),
        };
        let local = || {
            stored.read(cx, platform).map(|mut loaded| {
                loaded.reference = self.reference.clone();
                loaded
            })
        };
        let in_store = || !matches!(stored.read(cx, platform), Err(ImageError::NotFound { .. }));
        match cx.transports.pull_policy {
            PullPolicy::Never => local().map_err(|e| match e {
                ImageError::NotFound { .. } => ImageError::NotFound {
                    reference: format!(
                        "{name} (the pull policy is never; pull it with kiln pull {name})"
                    ),
                    available: Vec::new(),
                },
                other => other,
            }),
            PullPolicy::Missing if in_store() => local(),
            PullPolicy::Missing | PullPolicy::Always => {
                match pull(
                    name,
                    cx.store,
                    platform,
                    cx.transports,
                    cx.events,
                    cx.cancel,
                ) {
                    Ok(()) => local(),
                    Err(e) if in_store() && unreachable(&e).is_some() => {
                        let registry = unreachable(&e).unwrap_or_default();
                        cx.events.event(&Event::Warning(format!(
                            "cannot reach registry {registry}; using the copy of {name} in kiln's store"
                        )));
                        local()
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn write(&self, cx: &Context<'_>, image: Publishable<'_>) -> Result<Published, PublishError> {
        let registry = super::Registry::for_transports(cx.transports, cx.store)?;
        // The artifacts attached to the image (its SBOMs, its provenance) go with it.
        let referrers =
            crate::image::referrers::referrers_of(cx.store.layout(), image.descriptor.digest())
                .map_err(RegistryError::Store)?;
        let report = registry.push(
            cx.store.layout(),
            image.descriptor,
            &referrers,
            &self.name,
            cx.events,
            cx.cancel,
        )?;
        Ok(Published::Pushed(report))
    }
}

/// The registry (and why) when `error` says it could not be reached at all.
fn unreachable(error: &ImageError) -> Option<String> {
    match error {
        ImageError::Transport(e) => match e.downcast_ref::<RegistryError>() {
            Some(RegistryError::Unreachable { registry, message }) => {
                Some(format!("{registry} ({message})"))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Pulls the registry image `name` for `platform` into `store` and names it there.
pub fn pull(
    name: &ImageName,
    store: &Store,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<(), ImageError> {
    events.event(&Event::Step(format!("Pulling {name} ({platform})")));
    let registry = super::Registry::for_transports(transports, store)?;
    let descriptor = registry.pull(name, platform, store.layout(), events, cancel)?;
    store.tag(&descriptor, &name.to_string())?;
    Ok(())
}
