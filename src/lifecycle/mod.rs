//! The lifecycle: kiln's build, phase by phase, as the README's "How it works" draws it.
//!
//! ```text
//! options ─► analyze (run image) ─► prepare (scratch, buildpacks, source copy, sandbox)
//!         ─► detect (group, plan) ─► [run image of the stack flavour the group needs]
//!         ─► restore (previous image metadata, cache layers) ─► build (layers, processes)
//!         ─► export (image) ─► publish (destination) ─► remember (caches, build record)
//! ```
//!
//! Each phase is a module taking its inputs and returning its outputs as types; this module
//! only sequences them, times them and turns "no group passed" into an error. A build whose
//! inputs did not change since the last one of its destination skips all of it
//! (`up_to_date.rs`).

// The phases are the crate's own; their errors and detect verdicts are public (below).
// (`dead_code`: output fields nothing reads yet, public until issue 15 narrowed the API.)
#[allow(unreachable_pub, dead_code)]
pub(crate) mod analyze;
#[allow(unreachable_pub)]
pub(crate) mod build;
#[allow(unreachable_pub)]
pub(crate) mod detect;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod export;
mod options;
mod prepare;
mod remember;
mod report;
#[allow(unreachable_pub)]
pub(crate) mod restore;
mod timings;
mod up_to_date;

pub use self::analyze::AnalyzeError;
pub use self::build::BuildError;
pub use self::detect::{DetectError, DetectReport};
pub use self::export::ExportError;
pub use options::{BuildOptions, BuildpackRef, BuildpackSelection, DEFAULT_STACK, read_env_file};
pub use report::{BuildReport, DetectSummary, LayerReport};

use std::collections::BTreeSet;
use std::time::Instant;

use self::analyze::RunImage;
use self::detect::{DetectOutcome, GroupMember};
use self::export::ExportContext;
use self::prepare::{run_build, run_detect};
use self::timings::Timings;
use crate::cache::record::{BuildRecord, Recorded};
use crate::error::Error;
use crate::event::{CancelToken, Event, EventSink, Phase, Timing};
use crate::image::reference::ImageReference;
use crate::plan::PlanEntry;
use crate::stack;
use crate::store::Store;
use crate::transport::publish::{self, Destination};

/// Builds the app in `options.app_dir` into an image and publishes it.
///
/// The image's blobs always land in `store`; `options.destination` (default: the store
/// itself, which then requires a name) says where the image is named or copied. When nothing
/// the build depends on changed since the last build of the same destination (as
/// its build record says), the buildpacks do not run: the recorded image is published again.
pub fn build(
    store: &Store,
    options: &BuildOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BuildReport, Error> {
    let destination = options.destination.clone().ok_or_else(|| {
        Error::InvalidOptions("no destination: give an image name or an output".to_string())
    })?;
    // Held until the image is published, so that `kiln cache prune` never takes a blob
    // this build wrote or reuses.
    let _guard = crate::cache::gc::BuildGuard::acquire(store)?;
    let record = BuildRecord::for_destination(store, &destination.to_string());
    let checking = Instant::now();
    let recorded = record.load();
    let inputs = up_to_date::inputs_of(store, options);
    if !options.rebuild
        && let (Some(inputs), Some(recorded)) = (&inputs, &recorded)
        && *inputs == recorded.inputs
        && let Some(report) = up_to_date::up_to_date(
            store,
            &destination,
            recorded,
            checking,
            options,
            events,
            cancel,
        )?
    {
        return Ok(report);
    }
    // From here on the recorded build no longer describes the destination.
    record.invalidate();
    run_phases(
        store,
        options,
        &destination,
        &record,
        recorded.as_ref(),
        inputs,
        events,
        cancel,
    )
}

/// The phases of a build that runs its buildpacks, in order.
#[allow(clippy::too_many_arguments)]
fn run_phases(
    store: &Store,
    options: &BuildOptions,
    destination: &Destination,
    record: &BuildRecord,
    recorded: Option<&Recorded>,
    inputs: Option<String>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BuildReport, Error> {
    let mut timings = Timings::new(events);
    let prepared = prepare::prepare(store, options, events, cancel, &mut timings)?;
    let runner = prepared.runner(options, events, cancel);
    let (group, plan) =
        timings.phase(Phase::Detect, |_| match run_detect(&prepared, &runner)? {
            DetectOutcome::Detected { group, plan, .. } => Ok((group, plan)),
            DetectOutcome::NoMatch { results } => Err(Error::NothingDetected { results }),
        })?;
    let run_image = match &prepared.run_image {
        Some(image) => image.clone(),
        None => default_run_image(store, options, &group, events, cancel)?,
    };
    let (cache, previous) = timings.phase(Phase::Restore, |_| {
        Ok(restore::restore(
            store,
            &restore::RestoreInputs {
                destination,
                record,
                recorded,
                cache_image: options.cache_image.as_ref(),
                clear_cache: options.clear_cache,
                platform: &run_image.platform,
                transports: &options.transports,
                group: &group,
                layers_dir: &prepared.work.layers,
                kept_dir: &prepared.work.kept,
            },
            events,
            cancel,
        ))
    })?;
    let output = timings.phase(Phase::Build, |_| {
        run_build(&prepared, &runner, &group, &plan)
    })?;
    let (exported, published, saved) = timings.phase(Phase::Export, |timings| {
        let memo = crate::cache::memo::ExportMemo::for_destination(store, &destination.to_string());
        let exported = export::export(&ExportContext {
            layout: store.layout(),
            run_image: &run_image,
            build: &output,
            app_dir: &prepared.work.app,
            process: options.process.as_ref(),
            source_date_epoch: options.source_date_epoch,
            exec_env: &options.exec_env,
            memo: &memo,
            app_source: prepared.untouched_app_source().as_deref(),
            previous: previous.as_ref(),
            events,
            cancel,
        })?;
        cancel.check()?;
        let started = Instant::now();
        let published = crate::transport::publish(
            store,
            publish::Publishable {
                descriptor: &exported.manifest_descriptor,
                manifest: &exported.manifest,
            },
            destination,
            &options.transports,
            events,
            cancel,
        )?;
        timings.record(Timing::Publish, started);
        let saved = remember::save_caches(
            store, options, &cache, &memo, &output, &exported, &run_image, events, cancel,
        );
        Ok((exported, published, saved))
    })?;

    let report = BuildReport {
        image: destination.to_string(),
        manifest_digest: exported.manifest_descriptor.digest().clone(),
        config_digest: exported.manifest.config().digest().clone(),
        run_image: run_image.reference.to_string(),
        buildpacks: group.iter().map(|m| m.buildpack.reference()).collect(),
        processes: output.processes.list(),
        default_process: exported
            .default_process
            .as_ref()
            .map(|p| p.process_type.to_string()),
        layers: exported.layers.iter().map(LayerReport::from).collect(),
        timings: timings.finish(),
        published,
        up_to_date: false,
    };
    if let Some(saved) = saved {
        remember::remember(
            record,
            &prepared.work,
            &saved,
            inputs,
            &run_image,
            destination,
            &report,
            events,
        );
    }
    Ok(report)
}

/// The Debian packages the group's buildpacks need in their run image.
fn group_mixins(group: &[GroupMember]) -> BTreeSet<String> {
    group
        .iter()
        .flat_map(|m| m.buildpack.run_image_mixins())
        .collect()
}

/// Picks the flavour of the default stack that has what the group needs, builds it into
/// the store if needed, and analyzes it.
fn default_run_image(
    store: &Store,
    options: &BuildOptions,
    group: &[GroupMember],
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<RunImage, Error> {
    let (source, flavour, platform) = stack::choose::flavour(
        &options.stack,
        options.platform.as_ref(),
        &group_mixins(group),
    )?;
    let name = stack::ensure_image(
        store,
        &source,
        &flavour,
        &platform.architecture,
        events,
        cancel,
    )?;
    events.event(&Event::Step(format!("Run image: {name}")));
    Ok(analyze::analyze(
        store,
        &ImageReference::Named(name),
        Some(&platform),
        &options.transports,
        events,
        cancel,
    )?)
}

/// The `start` recorded by the last group member in the metadata of a requirement it both
/// makes and provides.
fn start_command(group: &[GroupMember], plan: &[PlanEntry]) -> Option<String> {
    let mut start = None;
    for member in group {
        let id = member.buildpack.id().as_str();
        for entry in plan {
            if !entry.providers.iter().any(|p| p.id == id) {
                continue;
            }
            for require in &entry.requires {
                if let Some(s) = require.metadata.get("start").and_then(toml::Value::as_str) {
                    start = Some(s.to_string());
                }
            }
        }
    }
    start
}

/// Runs detection only (and, with `with_build`, the build phase too, to learn the
/// processes), without exporting anything. When no group passes — also when a buildpack's
/// detect errored — the summary says so and `results` holds each buildpack's verdict.
pub fn detect(
    store: &Store,
    options: &BuildOptions,
    with_build: bool,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<DetectSummary, Error> {
    // Its scratch directory is in the store: keep `kiln cache prune` away meanwhile.
    let _guard = crate::cache::gc::BuildGuard::acquire(store)?;
    let mut timings = Timings::new(events);
    let prepared = prepare::prepare(store, options, events, cancel, &mut timings)?;
    let runner = prepared.runner(options, events, cancel);
    // A buildpack whose detect errored is reported in the results (the summary then says
    // nothing passed), as `kiln detect` shows every buildpack's verdict either way.
    let outcome = timings.phase(Phase::Detect, |_| match run_detect(&prepared, &runner) {
        Err(Error::Detect(detect::DetectError::BuildpackErrored { results })) => {
            Ok(DetectOutcome::NoMatch { results })
        }
        other => other,
    })?;
    match outcome {
        DetectOutcome::NoMatch { results } => Ok(DetectSummary {
            detected: false,
            group: Vec::new(),
            plan: Vec::new(),
            processes: None,
            default_process: None,
            run_image: None,
            start: None,
            results,
        }),
        DetectOutcome::Detected {
            group,
            plan,
            results,
        } => {
            let (processes, default_process) = if with_build {
                let output = timings.phase(Phase::Build, |_| {
                    run_build(&prepared, &runner, &group, &plan)
                })?;
                let default = options
                    .process
                    .as_ref()
                    .or(output.processes.default_type())
                    .map(ToString::to_string);
                (Some(output.processes.list()), default)
            } else {
                (None, None)
            };
            let run_image = if let Some(reference) = &options.run_image {
                reference.to_string()
            } else {
                let (source, flavour, _) = stack::choose::flavour(
                    &options.stack,
                    options.platform.as_ref(),
                    &group_mixins(&group),
                )?;
                stack::store_name(&source.definition()?.stack.name, &flavour)?.to_string()
            };
            Ok(DetectSummary {
                detected: true,
                start: start_command(&group, &plan),
                group: group.iter().map(|m| m.buildpack.reference()).collect(),
                plan,
                processes,
                default_process,
                run_image: Some(run_image),
                results,
            })
        }
    }
}
