//! A layer cache kept as an image (`kiln build --cache-image REF`), so that build machines
//! without a shared disk — ephemeral CI runners — share cache layers through a registry.
//!
//! The cache image is an ordinary OCI image: its layers are the `cache = true` layer blobs
//! of the last build (the same blobs the local cache records), and its configuration carries
//! the cache metadata in the `io.buildpacks.lifecycle.cache.metadata` label, in the shape of
//! `$KILN_HOME/cache/layers/<…>.json` (see [`crate::cache`]). Before the build kiln reads it
//! (blobs it already has are not downloaded again) and uses its metadata instead of the local
//! record; after a successful build it writes the new one. `REF` may be any reference kiln
//! writes and reads — a registry, `oci:DIR:NAME`, an archive. A cache image that is missing,
//! unreachable or unreadable only means a build without cache (with a warning); one that
//! cannot be written only means the next build starts without it.

use oci_spec::image::{ConfigBuilder, Digest, ImageConfigurationBuilder, MediaType, RootFsBuilder};

use crate::cache::{CacheMetadata, LayerCache};
use crate::event::{CancelToken, Event, EventSink};
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::image::write::{descriptor, write_image};
use crate::store::Store;
use crate::transport::Transports;
use crate::transport::publish::{self, Destination};
use crate::transport::registry::PullPolicy;

/// The label holding the cache metadata (the lifecycle's name for it).
pub(crate) const CACHE_METADATA_LABEL: &str = "io.buildpacks.lifecycle.cache.metadata";

/// Why a cache image could not be written (a warning: the next build starts without it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CacheImageError {
    /// A blob of a cached layer could not be found or read in the store.
    #[error("cache blob {digest}: {error}")]
    ReadBlob {
        /// The blob.
        digest: Digest,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The cache metadata could not be encoded as the label.
    #[error(transparent)]
    EncodeMetadata(#[from] serde_json::Error),
    /// The encoded cache metadata is not UTF-8.
    #[error(transparent)]
    MetadataNotUtf8(#[from] std::string::FromUtf8Error),
    /// The image configuration could not be built.
    #[error(transparent)]
    BuildConfig(#[from] oci_spec::OciSpecError),
    /// The image could not be written into the store.
    #[error(transparent)]
    WriteImage(#[from] crate::image::layout::LayoutError),
    /// The reference cannot be written to.
    #[error(transparent)]
    Destination(#[from] publish::ScratchIsNoOutput),
    /// Publishing the image to the reference failed.
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
}

/// Reads the cache image `reference` into the store and makes its metadata the cache of
/// this build. Returns whether it did; failures are warnings.
pub(crate) fn import(
    store: &Store,
    reference: &ImageReference,
    cache: &LayerCache,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> bool {
    let mut transports = transports.clone();
    // A registry's cache image is always asked for again: another runner may have
    // written a newer one.
    transports.pull_policy = PullPolicy::Always;
    let result = crate::transport::fetch(reference, store, platform, &transports, events, cancel)
        .map_err(|e| e.to_string())
        .and_then(|image| {
            for layer in image.manifest.layers() {
                store
                    .layout()
                    .copy_blob_from(&image.layout, layer)
                    .map_err(|e| e.to_string())?;
            }
            let metadata: CacheMetadata = image
                .config
                .config()
                .as_ref()
                .and_then(|c| c.labels().as_ref())
                .and_then(|l| l.get(CACHE_METADATA_LABEL))
                .ok_or_else(|| format!("it has no {CACHE_METADATA_LABEL} label"))
                .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))?;
            cache.replace(&metadata).map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => {
            events.event(&Event::Step(format!("Using cache image {reference}")));
            true
        }
        Err(e) => {
            events.event(&Event::Warning(format!(
                "cache image {reference} is not used ({e}); building without it"
            )));
            false
        }
    }
}

/// Writes the cache image of `metadata` (whose blobs are in the store) to `reference`.
/// Failures are warnings.
pub(crate) fn export(
    store: &Store,
    metadata: &CacheMetadata,
    reference: &ImageReference,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) {
    if let Err(e) = write(
        store, metadata, reference, platform, transports, events, cancel,
    ) {
        events.event(&Event::Warning(format!(
            "cache image {reference} was not written ({e}); the next build starts without it"
        )));
    }
}

fn write(
    store: &Store,
    metadata: &CacheMetadata,
    reference: &ImageReference,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<(), CacheImageError> {
    let layout = store.layout();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for buildpack in &metadata.buildpacks {
        for layer in buildpack.layers.values() {
            let digest = &layer.digest;
            let size = std::fs::metadata(layout.blob_path(digest))
                .map_err(|error| CacheImageError::ReadBlob {
                    digest: digest.clone(),
                    error,
                })?
                .len();
            layers.push(descriptor(MediaType::ImageLayerGzip, digest, size));
            diff_ids.push(layer.sha.to_string());
        }
    }
    let label = String::from_utf8(crate::reproducible::canonical_json(metadata)?)?;
    let config = ConfigBuilder::default()
        .labels(
            [(CACHE_METADATA_LABEL.to_string(), label)]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(crate::reproducible::created_timestamp(None))
        .architecture(platform.architecture.as_str())
        .os(platform.os.as_str())
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()?,
        );
    if let Some(variant) = &platform.variant {
        builder = builder.variant(variant.clone());
    }
    let config = builder.build()?;
    let written = write_image(layout, layers, &config)?;
    let destination = Destination::from_reference(reference, None)?;
    crate::transport::publish(
        store,
        publish::Publishable {
            descriptor: &written.descriptor,
            manifest: &written.manifest,
        },
        &destination,
        transports,
        events,
        cancel,
    )?;
    events.event(&Event::Step(format!("Wrote cache image {reference}")));
    Ok(())
}
