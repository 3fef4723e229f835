//! After the image is published: what this build leaves for the next one (the layer cache,
//! the export memo, the cache image, the kept cache layer directories and the build record).
//! Failures only make the next build slower, so they are warnings.

use std::collections::BTreeMap;

use super::analyze::RunImage;
use super::build::BuildOutput;
use super::export;
use super::options::BuildOptions;
use super::prepare::WorkDir;
use super::report::BuildReport;
use crate::cache::LayerCache;
use crate::cache::record::{self, BuildRecord, Recorded};
use crate::event::{CancelToken, Event, EventSink};
use crate::store::Store;
use crate::transport::publish::Destination;

/// After publishing: records the cache layers and what the export wrote. The image is
/// published; a cache that cannot be saved only makes the next build slower, so failures
/// are warnings. Returns the cache metadata saved.
#[allow(clippy::too_many_arguments)]
pub(super) fn save_caches(
    store: &Store,
    options: &BuildOptions,
    cache: &LayerCache,
    memo: &crate::cache::memo::ExportMemo,
    output: &BuildOutput,
    exported: &export::ExportedImage,
    run_image: &RunImage,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Option<crate::cache::CacheMetadata> {
    let saved = cache
        .save(
            store.layout(),
            output,
            &exported.layers,
            run_image.cnb_user(),
            events,
        )
        .inspect_err(|e| {
            events.event(&Event::Warning(format!(
                "the layer cache was not saved: {e}"
            )));
        })
        .ok();
    if let Err(e) = memo.save() {
        events.event(&Event::Warning(format!(
            "what this export wrote was not recorded ({e}); the next one compresses every layer again"
        )));
    }
    if let (Some(reference), Some(saved)) = (&options.cache_image, &saved) {
        let platform = &run_image.platform;
        let transports = &options.transports;
        crate::cache::image::export(
            store, saved, reference, platform, transports, events, cancel,
        );
    }
    saved
}

/// Keeps the build's cache layer directories for the next build and records its inputs and
/// image. Failures cost only speed, so they are warnings.
#[allow(clippy::too_many_arguments)]
pub(super) fn remember(
    record: &BuildRecord,
    work: &WorkDir,
    saved: &crate::cache::CacheMetadata,
    inputs: Option<String>,
    run_image: &RunImage,
    destination: &Destination,
    report: &BuildReport,
    events: &dyn EventSink,
) {
    let mut keep = BTreeMap::new();
    for buildpack in &saved.buildpacks {
        let escaped = buildpack.key.escaped();
        for (name, layer) in &buildpack.layers {
            let dir = work.layers.join(&escaped).join(name);
            if dir.is_dir() {
                keep.insert(format!("{escaped}/{name}"), (dir, layer.sha.clone()));
            }
        }
    }
    match record.keep_layers(&keep) {
        Ok(()) => {}
        // /layers on another file system than kiln's home (a builder image's volumes): the
        // next build restores them from the store, as designed.
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            events.event(&Event::Info(
                "the cache layers are on another file system than kiln's home: the next build extracts them from the store".to_string(),
            ));
        }
        Err(e) => events.event(&Event::Warning(format!(
            "the cache layers were not kept for the next build ({e}); it extracts them from the store"
        ))),
    }
    let Some(inputs) = inputs else {
        return;
    };
    let run_image_digest = run_image
        .image
        .as_ref()
        .map(|i| i.manifest_descriptor.digest().clone());
    let output_stamp = match destination {
        Destination::Archive { path, .. } | Destination::DockerArchive { path, .. } => {
            record::file_stamp(path)
        }
        _ => None,
    };
    let recorded = Recorded {
        inputs,
        run_image: run_image.reference.to_string(),
        run_image_digest,
        manifest_digest: report.manifest_digest.clone(),
        config_digest: report.config_digest.clone(),
        buildpacks: report.buildpacks.clone(),
        processes: report.processes.clone(),
        default_process: report.default_process.clone(),
        layers: report.layers.clone(),
        output_stamp,
    };
    if let Err(e) = record.save(&recorded) {
        events.event(&Event::Warning(format!(
            "the build was not recorded ({e}); the next one runs the buildpacks again"
        )));
    }
}
