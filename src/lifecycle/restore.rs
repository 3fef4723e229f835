//! The restore phase: the previous image's layer metadata and the cache layers (from a cache
//! image, the directories the last build kept, or the store) put where buildpacks find them.

use std::path::Path;

use super::analyze::{self, PreviousImage};
use super::detect::GroupMember;
use crate::cache::LayerCache;
use crate::cache::record::{BuildRecord, Recorded};
use crate::event::{CancelToken, EventSink};
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::store::Store;
use crate::transport::Transports;
use crate::transport::publish::Destination;

/// What the restore phase reads besides the store.
#[derive(Debug)]
pub(crate) struct RestoreInputs<'a> {
    /// Where the image goes (its previous image and cache are found by it).
    pub destination: &'a Destination,
    /// The destination's build record and what it recorded last time.
    pub record: &'a BuildRecord,
    /// The last recorded build, if any.
    pub recorded: Option<&'a Recorded>,
    /// A cache image to read first (`--cache-image`).
    pub cache_image: Option<&'a ImageReference>,
    /// Restore no cache layer at all (`--clear-cache`).
    pub clear_cache: bool,
    /// The platform of the run image.
    pub platform: &'a TargetPlatform,
    /// How registries are reached.
    pub transports: &'a Transports,
    /// The group whose buildpacks get their layers back.
    pub group: &'a [GroupMember],
    /// The build's layers directory (`/layers`).
    pub layers_dir: &'a Path,
    /// Where the cache layer directories kept by the last build are moved to.
    pub kept_dir: &'a Path,
}

/// Finds the previous image and restores the cache layers (from the cache image if one is
/// given, the directories kept by the last build, else the store) and the previous image's
/// layer metadata; returns the destination's layer cache and the previous image.
pub(crate) fn restore(
    store: &Store,
    inputs: &RestoreInputs<'_>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> (LayerCache, Option<PreviousImage>) {
    let RestoreInputs {
        destination,
        record,
        recorded,
        cache_image,
        clear_cache,
        platform,
        transports,
        group,
        layers_dir,
        kept_dir,
    } = *inputs;
    let recorded_manifest = recorded.map(|r| &r.manifest_digest);
    let previous = analyze::previous_image(
        store,
        destination,
        recorded_manifest,
        platform,
        transports,
        events,
        cancel,
    );
    let cache = LayerCache::for_destination(store, &destination.to_string());
    if let Some(reference) = cache_image.filter(|_| !clear_cache) {
        crate::cache::image::import(
            store, reference, &cache, platform, transports, events, cancel,
        );
    }
    let kept = if clear_cache {
        None
    } else {
        record.claim_layers(kept_dir)
    };
    cache.restore(
        store.layout(),
        group,
        layers_dir,
        &crate::cache::Sources {
            previous: previous.as_ref().map(|p| &p.metadata),
            kept: kept.as_ref(),
            use_cache: !clear_cache,
        },
        events,
    );
    (cache, previous)
}
