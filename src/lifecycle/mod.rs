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
#[allow(dead_code)]
pub(crate) mod analyze;
pub(crate) mod build;
pub(crate) mod detect;
#[allow(dead_code)]
pub(crate) mod export;
mod options;
mod prepare;
mod remember;
mod report;
pub(crate) mod restore;
mod steps;
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
    let options = &*stack_for_app(options, events);
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

/// A build that runs its buildpacks: kiln's phases ([`steps::Steps`]) in [`sequence`].
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
    let mut steps = steps::Steps::new(
        store,
        options,
        destination,
        record,
        recorded,
        inputs,
        events,
        cancel,
    );
    sequence(&mut steps, events, cancel)
}

/// The phases as the orchestrator sees them: kiln's own ([`steps::Steps`]) or, in tests,
/// fakes. Each step takes what earlier steps returned; what it needs besides (the store, the
/// options) its implementation holds.
pub(crate) trait Phases {
    /// Scratch, buildpacks, the copy of the source, the sandbox (and a run image given).
    type Prepared;
    /// What detection chose: the group and its plan.
    type Detected;
    /// The run image.
    type RunImage;
    /// What restore found: the layer cache and the previous image.
    type Restored;
    /// What the buildpacks built.
    type Built;
    /// The image the export wrote.
    type Exported;
    /// The caches saved after publishing, for the build record.
    type Saved;

    /// Analyze (a run image given by the user; times the analyze phase) and prepare.
    fn prepare(&mut self, timings: &mut Timings<'_>) -> Result<Self::Prepared, Error>;
    /// Detect; "no group passed" is [`Error::NothingDetected`].
    fn detect(&mut self, prepared: &Self::Prepared) -> Result<Self::Detected, Error>;
    /// The run image: the one given, or the stack flavour the group needs.
    fn run_image(
        &mut self,
        prepared: &Self::Prepared,
        detected: &Self::Detected,
    ) -> Result<Self::RunImage, Error>;
    /// Restore; failures there only cost speed, so it cannot fail.
    fn restore(
        &mut self,
        prepared: &Self::Prepared,
        detected: &Self::Detected,
        run_image: &Self::RunImage,
    ) -> Self::Restored;
    /// Build.
    fn build(
        &mut self,
        prepared: &Self::Prepared,
        detected: &Self::Detected,
    ) -> Result<Self::Built, Error>;
    /// Export into the store.
    fn export(
        &mut self,
        prepared: &Self::Prepared,
        run_image: &Self::RunImage,
        restored: &Self::Restored,
        built: &Self::Built,
    ) -> Result<Self::Exported, Error>;
    /// Publish to the destination.
    fn publish(&mut self, exported: &Self::Exported) -> Result<publish::Published, Error>;
    /// Save the caches (warnings only); `None` when they were not saved.
    fn save(
        &mut self,
        run_image: &Self::RunImage,
        restored: &Self::Restored,
        built: &Self::Built,
        exported: &Self::Exported,
    ) -> Option<Self::Saved>;
    /// The report.
    fn report(
        &self,
        parts: (
            &Self::Detected,
            &Self::RunImage,
            &Self::Built,
            &Self::Exported,
        ),
        published: publish::Published,
        timings: std::collections::BTreeMap<Timing, f64>,
    ) -> BuildReport;
    /// Record the build for the next one (warnings only).
    fn remember(
        &mut self,
        prepared: &Self::Prepared,
        run_image: &Self::RunImage,
        saved: &Self::Saved,
        report: &BuildReport,
    );
}

/// The order of a build, as the README's "How it works" draws it: analyze and prepare,
/// detect, pick the run image, restore, build, export, publish, save the caches, report,
/// remember. Each phase is timed and announced; a cancellation between export and publish
/// publishes nothing.
pub(crate) fn sequence<P: Phases>(
    phases: &mut P,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BuildReport, Error> {
    let mut timings = Timings::new(events);
    let prepared = phases.prepare(&mut timings)?;
    let detected = timings.phase(Phase::Detect, |_| phases.detect(&prepared))?;
    let run_image = phases.run_image(&prepared, &detected)?;
    let restored = timings.phase(Phase::Restore, |_| {
        Ok(phases.restore(&prepared, &detected, &run_image))
    })?;
    let built = timings.phase(Phase::Build, |_| phases.build(&prepared, &detected))?;
    let (exported, published, saved) = timings.phase(Phase::Export, |timings| {
        let exported = phases.export(&prepared, &run_image, &restored, &built)?;
        cancel.check()?;
        let started = Instant::now();
        let published = phases.publish(&exported)?;
        timings.record(Timing::Publish, started);
        let saved = phases.save(&run_image, &restored, &built, &exported);
        Ok((exported, published, saved))
    })?;
    let report = phases.report(
        (&detected, &run_image, &built, &exported),
        published,
        timings.finish(),
    );
    if let Some(saved) = saved {
        phases.remember(&prepared, &run_image, &saved, &report);
    }
    Ok(report)
}

/// The Debian packages the group's buildpacks need in their run image: each member's
/// `[metadata.kiln] run-image-mixins`, unless a plan entry it provides carries a
/// `run-image-mixins` list in a requirement's metadata, which replaces it (kiln/nodejs
/// needs no Node.js at run time when kiln/static serves the site it built).
fn group_mixins(group: &[GroupMember], plan: &[PlanEntry]) -> BTreeSet<String> {
    group
        .iter()
        .flat_map(|m| {
            let id = m.buildpack.id().as_str();
            let planned = plan
                .iter()
                .filter(|e| e.providers.iter().any(|p| p.id == id))
                .flat_map(|e| &e.requires)
                .find_map(|r| r.metadata.get("run-image-mixins")?.as_array().cloned());
            match planned {
                Some(list) => list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                None => m.buildpack.run_image_mixins(),
            }
        })
        .collect()
}

/// `options` on the built-in stack the app's requested runtimes need, when that is not
/// [`BuildOptions::stack`] and [`BuildOptions::auto_stack`] allows it (a `.python-version`
/// of `3.11` builds on bookworm), with a line in the build log saying why. Not in a builder
/// image, whose build image is itself.
fn stack_for_app<'a>(
    options: &'a BuildOptions,
    events: &dyn EventSink,
) -> std::borrow::Cow<'a, BuildOptions> {
    if !options.auto_stack || options.run_image.is_some() || options.build_image.is_some() {
        return std::borrow::Cow::Borrowed(options);
    }
    // In a builder image, kiln's own file system is the build image: its stack is fixed.
    if options.build_environment == crate::buildenv::BuildEnvironment::Image
        && !matches!(crate::builder::BuilderInfo::current(), Ok(None))
    {
        return std::borrow::Cow::Borrowed(options);
    }
    let arch = options
        .platform
        .clone()
        .unwrap_or_else(crate::image::TargetPlatform::host)
        .architecture;
    let Some(choice) = kiln_buildpacks::stack_for_app(&options.app_dir, &options.stack, &arch)
    else {
        return std::borrow::Cow::Borrowed(options);
    };
    events.event(&Event::Step(format!(
        "Stack: {} instead of {}: {}",
        choice.stack, options.stack, choice.reason
    )));
    let mut chosen = options.clone();
    chosen.stack = choice.stack;
    chosen.auto_stack = false;
    std::borrow::Cow::Owned(chosen)
}

/// Picks the flavour of the default stack that has what the group needs, builds it into
/// the store if needed, and analyzes it.
fn default_run_image(
    store: &Store,
    options: &BuildOptions,
    group: &[GroupMember],
    plan: &[PlanEntry],
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<RunImage, Error> {
    let (source, flavour, platform) = stack::choose::flavour(
        &options.stack,
        options.platform.as_ref(),
        &group_mixins(group, plan),
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
    let options = &*stack_for_app(options, events);
    let mut timings = Timings::new(events);
    let prepared = prepare::prepare(store, options, events, cancel, &mut timings)?;
    let runner = prepared.runner(None, options, events, cancel);
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
                    let switched =
                        prepared.build_sandbox(store, options, &group, events, cancel)?;
                    let runner = prepared.runner(
                        switched.as_ref().map(|s| &s.sandbox),
                        options,
                        events,
                        cancel,
                    );
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
                    &group_mixins(&group, &plan),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::image::digest::sha256_digest;

    /// Phases that record what ran and fail where told to.
    #[derive(Default)]
    struct Fake {
        ran: Vec<&'static str>,
        fail_at: Option<&'static str>,
        cancel_at: Option<(&'static str, CancelToken)>,
        not_saved: bool,
    }

    impl Fake {
        fn step(&mut self, name: &'static str) -> Result<(), Error> {
            self.ran.push(name);
            if let Some((at, token)) = &self.cancel_at
                && *at == name
            {
                token.cancel();
            }
            if self.fail_at == Some(name) {
                return Err(Error::InvalidOptions(format!("{name} failed")));
            }
            Ok(())
        }
    }

    impl Phases for Fake {
        type Prepared = ();
        type Detected = ();
        type RunImage = ();
        type Restored = ();
        type Built = ();
        type Exported = ();
        type Saved = ();

        fn prepare(&mut self, timings: &mut Timings<'_>) -> Result<(), Error> {
            timings.phase(Phase::Analyze, |_| Ok(()))?;
            self.step("prepare")
        }
        fn detect(&mut self, (): &()) -> Result<(), Error> {
            self.ran.push("detect");
            if self.fail_at == Some("detect") {
                return Err(Error::NothingDetected {
                    results: Vec::new(),
                });
            }
            Ok(())
        }
        fn run_image(&mut self, (): &(), (): &()) -> Result<(), Error> {
            self.step("run image")
        }
        fn restore(&mut self, (): &(), (): &(), (): &()) {
            self.ran.push("restore");
        }
        fn build(&mut self, (): &(), (): &()) -> Result<(), Error> {
            self.step("build")
        }
        fn export(&mut self, (): &(), (): &(), (): &(), (): &()) -> Result<(), Error> {
            self.step("export")
        }
        fn publish(&mut self, (): &()) -> Result<publish::Published, Error> {
            self.step("publish").map(|()| publish::Published::Written)
        }
        fn save(&mut self, (): &(), (): &(), (): &(), (): &()) -> Option<()> {
            self.ran.push("save");
            (!self.not_saved).then_some(())
        }
        fn report(
            &self,
            _: (&(), &(), &(), &()),
            published: publish::Published,
            timings: BTreeMap<Timing, f64>,
        ) -> BuildReport {
            BuildReport {
                image: "fake".to_string(),
                manifest_digest: sha256_digest(b"manifest"),
                config_digest: sha256_digest(b"config"),
                run_image: "scratch".to_string(),
                buildpacks: Vec::new(),
                processes: Vec::new(),
                default_process: None,
                layers: Vec::new(),
                timings,
                published,
                up_to_date: false,
            }
        }
        fn remember(&mut self, (): &(), (): &(), (): &(), _: &BuildReport) {
            self.ran.push("remember");
        }
    }

    /// Runs the sequence over `fake`, returning the result and the phase events seen.
    fn run(fake: &mut Fake, cancel: &CancelToken) -> (Result<BuildReport, Error>, Vec<String>) {
        let seen = Mutex::new(Vec::new());
        let events = |e: &Event| match e {
            Event::PhaseStarted(p) => seen.lock().unwrap().push(format!("start {p}")),
            Event::PhaseFinished { phase, .. } => {
                seen.lock().unwrap().push(format!("end {phase}"));
            }
            _ => {}
        };
        let result = sequence(fake, &events, cancel);
        (result, seen.into_inner().unwrap())
    }

    #[test]
    fn phases_run_in_the_order_of_the_pipeline_each_timed_and_announced() {
        let mut fake = Fake::default();
        let (report, events) = run(&mut fake, &CancelToken::new());
        let report = report.unwrap();
        assert_eq!(
            fake.ran,
            [
                "prepare",
                "detect",
                "run image",
                "restore",
                "build",
                "export",
                "publish",
                "save",
                "remember"
            ]
        );
        let phases = [
            "ANALYZING",
            "DETECTING",
            "RESTORING",
            "BUILDING",
            "EXPORTING",
        ];
        let expected: Vec<String> = phases
            .iter()
            .flat_map(|p| [format!("start {p}"), format!("end {p}")])
            .collect();
        assert_eq!(events, expected);
        let keys: Vec<Timing> = report.timings.keys().copied().collect();
        for key in [
            Timing::Phase(Phase::Analyze),
            Timing::Phase(Phase::Detect),
            Timing::Phase(Phase::Restore),
            Timing::Phase(Phase::Build),
            Timing::Phase(Phase::Export),
            Timing::Publish,
        ] {
            assert!(keys.contains(&key), "{key:?} missing from {keys:?}");
        }
    }

    #[test]
    fn a_failed_phase_stops_the_build_before_anything_is_published_or_kept() {
        for (at, ran) in [
            ("detect", vec!["prepare", "detect"]),
            ("run image", vec!["prepare", "detect", "run image"]),
            (
                "build",
                vec!["prepare", "detect", "run image", "restore", "build"],
            ),
            (
                "export",
                vec![
                    "prepare",
                    "detect",
                    "run image",
                    "restore",
                    "build",
                    "export",
                ],
            ),
            (
                "publish",
                vec![
                    "prepare",
                    "detect",
                    "run image",
                    "restore",
                    "build",
                    "export",
                    "publish",
                ],
            ),
        ] {
            let mut fake = Fake {
                fail_at: Some(at),
                ..Fake::default()
            };
            let (result, events) = run(&mut fake, &CancelToken::new());
            assert!(result.is_err(), "{at}");
            assert_eq!(fake.ran, ran, "failing at {at}");
            // The failing phase was announced but never said to have finished (choosing the
            // run image happens between phases).
            let last = events.last().unwrap();
            if at == "run image" {
                assert_eq!(last, "end DETECTING");
            } else {
                assert!(last.starts_with("start "), "{at}: {events:?}");
            }
        }
    }

    #[test]
    fn a_cancellation_after_the_export_publishes_nothing() {
        let cancel = CancelToken::new();
        let mut fake = Fake {
            cancel_at: Some(("export", cancel.clone())),
            ..Fake::default()
        };
        let (result, _) = run(&mut fake, &cancel);
        assert!(crate::error::is_cancelled(&result.unwrap_err()));
        assert_eq!(fake.ran.last(), Some(&"export"));
    }

    #[test]
    fn caches_that_were_not_saved_are_not_remembered() {
        let mut fake = Fake {
            not_saved: true,
            ..Fake::default()
        };
        let (result, _) = run(&mut fake, &CancelToken::new());
        assert!(result.is_ok());
        assert_eq!(fake.ran.last(), Some(&"save"));
    }
}
