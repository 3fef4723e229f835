//! The whole pipeline: analyze → detect → build → export → publish.

pub mod analyze;
pub mod build;
pub mod detect;
pub mod export;
mod options;
mod report;

pub use options::{BuildOptions, BuildpackRef, BuildpackSelection, DEFAULT_STACK};
pub use report::{BuildReport, DetectSummary, LayerReport};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oci_spec::image::Digest;

use self::analyze::RunImage;
use self::build::{BuildContext, BuildDirs, BuildOutput};
use self::detect::{DetectContext, DetectDirs, DetectOutcome, GroupMember, RunTarget};
use self::export::ExportContext;
use crate::app;
use crate::buildenv::{
    APP_DIR, BuildEnvironment, HostSandbox, LAYERS_DIR, PLATFORM_DIR, SandboxMounts,
    buildpack_guest_dir,
};
use crate::buildpack::builtin;
use crate::buildpack::order::Order;
use crate::buildpack::{Catalog, Runner};
use crate::cache::LayerCache;
use crate::cache::record::{self, BuildRecord, Recorded};
use crate::env::Env;
use crate::error::Error;
use crate::event::{CancelToken, Event, EventSink, Phase};
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::plan::PlanEntry;
use crate::stack::{self, StackSource};
use crate::store::Store;
use crate::transport::publish::{self, Destination};

/// Scratch directories for one build, removed when it ends.
struct WorkDir {
    _temp: tempfile::TempDir,
    buildpacks: PathBuf,
    layers: PathBuf,
    app: PathBuf,
    platform: PathBuf,
    plans: PathBuf,
    root: PathBuf,
    /// Where cache layers kept from the last build are moved while this one restores them.
    kept: PathBuf,
}

impl WorkDir {
    fn new(store: &Store) -> Result<Self, Error> {
        let temp = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(store.work_dir())
            .map_err(|source| Error::Prepare {
                path: store.work_dir(),
                source,
            })?;
        let base = temp.path().to_path_buf();
        let dirs = Self {
            buildpacks: base.join("buildpacks"),
            layers: base.join("layers"),
            app: base.join("workspace"),
            platform: base.join("platform"),
            plans: base.join("plans"),
            root: base.join("root"),
            kept: base.join("kept"),
            _temp: temp,
        };
        for dir in [&dirs.layers, &dirs.platform.join("env"), &dirs.plans] {
            fs::create_dir_all(dir).map_err(|source| Error::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(dirs)
    }
}

/// Everything prepared before detection.
struct Prepared {
    work: WorkDir,
    catalog: Catalog,
    order: Order,
    /// The run image, when given; else chosen after detection.
    run_image: Option<RunImage>,
    /// The platform buildpacks build for.
    target: RunTarget,
    sandbox: HostSandbox,
    base_env: Env,
    user_env: BTreeMap<String, String>,
    /// The source's stat fingerprint (taken before copying it) and the copy's, to tell
    /// whether the build left the app as the source has it.
    app_fingerprints: Option<(String, String)>,
}

fn prepare(
    store: &Store,
    options: &BuildOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
    timings: &mut BTreeMap<String, f64>,
) -> Result<Prepared, Error> {
    // The host environment is the only one so far; a hermetic one will branch here.
    match options.build_environment {
        BuildEnvironment::Host => {}
    }
    let work = WorkDir::new(store)?;
    let exe = builtin::executable(options.kiln_executable.as_deref())?;
    let (catalog, order) =
        crate::buildpack::catalog::load(&options.buildpacks, &work.buildpacks, &exe)
            .map_err(catalog_error)?;

    let started = phase_start(events, Phase::Analyze);
    let (run_image, target) = match &options.run_image {
        Some(reference) => {
            let image = analyze::analyze(
                store,
                reference,
                options.platform.as_ref(),
                &options.transports,
                events,
                cancel,
            )?;
            let target = image.target();
            (Some(image), target)
        }
        None => (None, stack_target(options)?),
    };
    phase_end(events, Phase::Analyze, started, timings);

    let skip = [store.root().to_path_buf()];
    let source_fingerprint = app::fingerprint_source(&options.app_dir, &skip).ok();
    let app = app::copy_source(&options.app_dir, &work.app, &skip)?;
    let app_fingerprints = source_fingerprint.zip(crate::fingerprint::tree(&work.app).ok());
    events.event(&Event::Info(format!(
        "copied {} files ({} bytes) of source",
        app.files, app.bytes
    )));
    let mut user_env = app.build_env;
    user_env.extend(options.env.clone());
    for (name, value) in &user_env {
        // Names come from project.toml (a source tree) or --env: each becomes a file name.
        if let Err(problem) = crate::untrusted::component(name, "build variable name")
            .map_err(|e| e.to_string())
            .and_then(|_| crate::env::check_var_name(name).map_err(str::to_string))
        {
            return Err(Error::InvalidOptions(format!(
                "{problem} (build variables come from --env, --env-file and project.toml's [[io.buildpacks.build.env]])"
            )));
        }
        let path = work.platform.join("env").join(name);
        fs::write(&path, value).map_err(|source| Error::Prepare { path, source })?;
    }
    let mut mounts = SandboxMounts {
        dirs: vec![
            (work.layers.clone(), PathBuf::from(LAYERS_DIR)),
            (work.app.clone(), PathBuf::from(APP_DIR)),
            (work.platform.clone(), PathBuf::from(PLATFORM_DIR)),
            (
                work.plans.clone(),
                PathBuf::from(crate::buildenv::PLANS_DIR),
            ),
        ],
        hidden: Vec::new(),
    };
    mounts.hide_kiln_state(store.root());
    for buildpack in catalog.buildpacks() {
        mounts.dirs.push((
            buildpack.dir().to_path_buf(),
            buildpack_guest_dir(&buildpack.id().escaped(), buildpack.version()),
        ));
    }
    let sandbox = HostSandbox::prepare(&work.root, &mounts)?;
    let host_env = options
        .host_env
        .clone()
        .unwrap_or_else(|| std::env::vars().collect());
    Ok(Prepared {
        work,
        catalog,
        order,
        run_image,
        target,
        sandbox,
        base_env: Env::for_build(host_env),
        user_env,
        app_fingerprints,
    })
}

/// Catalog errors as the top-level error kiln has always given for them (exit codes unchanged).
fn catalog_error(error: crate::buildpack::catalog::CatalogError) -> Error {
    use crate::buildpack::catalog::CatalogError as E;
    match error {
        E::Buildpack(e) => Error::Buildpack(e),
        E::Builtin(e) => Error::Builtin(e),
        E::ReadOrder { path, source } => Error::ReadOrder { path, source },
        E::ParseOrder { path, problem } => Error::ParseOrder { path, problem },
        other => Error::InvalidOptions(other.to_string()),
    }
}

fn phase_start(events: &dyn EventSink, phase: Phase) -> Instant {
    events.event(&Event::PhaseStarted(phase));
    Instant::now()
}

fn phase_end(
    events: &dyn EventSink,
    phase: Phase,
    started: Instant,
    timings: &mut BTreeMap<String, f64>,
) {
    let elapsed: Duration = started.elapsed();
    timings.insert(
        phase.to_string().to_ascii_lowercase(),
        elapsed.as_secs_f64(),
    );
    events.event(&Event::PhaseFinished { phase, elapsed });
}

fn run_detect(prepared: &Prepared, runner: &Runner<'_>) -> Result<DetectOutcome, Error> {
    let ctx = DetectContext {
        catalog: &prepared.catalog,
        order: &prepared.order,
        dirs: &DetectDirs {
            plans: prepared.work.plans.clone(),
        },
        base_env: &prepared.base_env,
        runner,
    };
    Ok(detect::detect(&ctx)?)
}

fn run_build(
    prepared: &Prepared,
    runner: &Runner<'_>,
    group: &[GroupMember],
    plan: &[PlanEntry],
) -> Result<BuildOutput, Error> {
    let ctx = BuildContext {
        group,
        plan,
        dirs: &BuildDirs {
            layers: prepared.work.layers.clone(),
            plans: prepared.work.plans.clone(),
        },
        base_env: &prepared.base_env,
        runner,
    };
    Ok(build::build(&ctx)?)
}

impl Prepared {
    /// The source's fingerprint if the build left the app's copy untouched (so the app
    /// layers depend on the source alone).
    fn untouched_app_source(&self) -> Option<String> {
        let (source, copy) = self.app_fingerprints.as_ref()?;
        (crate::fingerprint::tree(&self.work.app).ok().as_ref() == Some(copy))
            .then(|| source.clone())
    }

    /// The runner for this build's buildpacks.
    fn runner<'a>(
        &'a self,
        options: &'a BuildOptions,
        events: &'a dyn EventSink,
        cancel: &'a CancelToken,
    ) -> Runner<'a> {
        Runner {
            sandbox: &self.sandbox,
            user_env: &self.user_env,
            target: &self.target,
            exec_env: &options.exec_env,
            events,
            cancel,
        }
    }
}

/// The platform buildpacks build for when the run image comes from a stack: linux, the
/// requested or host architecture, and the stack's distribution.
fn stack_target(options: &BuildOptions) -> Result<RunTarget, Error> {
    let def = StackSource::open(&options.stack)?.definition()?;
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(TargetPlatform::host);
    Ok(RunTarget {
        os: platform.os,
        arch: platform.architecture,
        variant: platform.variant,
        distro_name: Some(def.stack.distro.name),
        distro_version: Some(def.stack.distro.version),
    })
}

/// The Debian packages the group's buildpacks need in their run image.
fn group_mixins(group: &[GroupMember]) -> BTreeSet<String> {
    group
        .iter()
        .flat_map(|m| m.buildpack.run_image_mixins())
        .collect()
}

/// The flavour of the default stack that has what the group needs.
fn default_flavour(
    options: &BuildOptions,
    group: &[GroupMember],
) -> Result<(StackSource, String, TargetPlatform), Error> {
    let source = StackSource::open(&options.stack)?;
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(TargetPlatform::host);
    let flavour = stack::choose_flavour(&source, &platform.architecture, &group_mixins(group))?;
    Ok((source, flavour, platform))
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
    let (source, flavour, platform) = default_flavour(options, group)?;
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

/// Builds the app in `options.app_dir` into an image and publishes it.
///
/// The image's blobs always land in `store`; `options.destination` (default: the store
/// itself, which then requires a name) says where the image is named or copied. When nothing
/// the build depends on changed since the last build of the same destination (see
/// [`crate::cache::record`]), the buildpacks do not run: the recorded image is published again.
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
    let inputs = record::inputs_of(store, options);
    if !options.rebuild
        && let (Some(inputs), Some(recorded)) = (&inputs, &recorded)
        && *inputs == recorded.inputs
        && let Some(report) = up_to_date(
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
    build_image(
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

/// Runs the buildpacks and exports and publishes the image (the part of [`build()`] after
/// the check whether anything changed).
#[allow(clippy::too_many_arguments)]
fn build_image(
    store: &Store,
    options: &BuildOptions,
    destination: &Destination,
    record: &BuildRecord,
    recorded: Option<&Recorded>,
    inputs: Option<String>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BuildReport, Error> {
    let mut timings = BTreeMap::new();
    let prepared = prepare(store, options, events, cancel, &mut timings)?;

    let runner = prepared.runner(options, events, cancel);
    let started = phase_start(events, Phase::Detect);
    let (group, plan) = match run_detect(&prepared, &runner)? {
        DetectOutcome::Detected { group, plan, .. } => (group, plan),
        DetectOutcome::NoMatch { results } => return Err(Error::NothingDetected { results }),
    };
    phase_end(events, Phase::Detect, started, &mut timings);

    let run_image = match &prepared.run_image {
        Some(image) => image.clone(),
        None => default_run_image(store, options, &group, events, cancel)?,
    };
    let started = phase_start(events, Phase::Restore);
    let (cache, previous) = restore(
        store,
        options,
        &prepared,
        &group,
        destination,
        record,
        recorded,
        &run_image.platform,
        events,
        cancel,
    );
    phase_end(events, Phase::Restore, started, &mut timings);

    let started = phase_start(events, Phase::Build);
    let output = run_build(&prepared, &runner, &group, &plan)?;
    phase_end(events, Phase::Build, started, &mut timings);

    let started = phase_start(events, Phase::Export);
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
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let started_publish = Instant::now();
    let published = publish::publish(
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
    timings.insert(
        "publish".to_string(),
        started_publish.elapsed().as_secs_f64(),
    );
    let saved = save_caches(
        store, options, &cache, &memo, &output, &exported, &run_image, events, cancel,
    );
    phase_end(events, Phase::Export, started, &mut timings);

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
        timings,
        published,
        up_to_date: false,
    };
    if let Some(saved) = saved {
        remember(
            record,
            &prepared,
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

/// Finds the previous image and restores the cache layers (from the cache image if one is
/// given, the directories kept by the last build, else the store) and the previous image's
/// layer metadata; returns the destination's layer cache and the previous image.
#[allow(clippy::too_many_arguments)]
fn restore(
    store: &Store,
    options: &BuildOptions,
    prepared: &Prepared,
    group: &[GroupMember],
    destination: &Destination,
    record: &BuildRecord,
    recorded: Option<&Recorded>,
    platform: &TargetPlatform,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> (LayerCache, Option<analyze::PreviousImage>) {
    let recorded_manifest = recorded.map(|r| r.manifest_digest.as_str());
    let transports = &options.transports;
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
    if let Some(reference) = options
        .cache_image
        .as_ref()
        .filter(|_| !options.clear_cache)
    {
        crate::cache::image::import(
            store,
            reference,
            &cache,
            platform,
            &options.transports,
            events,
            cancel,
        );
    }
    let kept = if options.clear_cache {
        None
    } else {
        record.claim_layers(&prepared.work.kept)
    };
    cache.restore(
        store.layout(),
        group,
        &prepared.work.layers,
        &crate::cache::Sources {
            previous: previous.as_ref().map(|p| &p.metadata),
            kept: kept.as_ref(),
            use_cache: !options.clear_cache,
        },
        events,
    );
    (cache, previous)
}

/// After publishing: records the cache layers and what the export wrote. The image is
/// published; a cache that cannot be saved only makes the next build slower, so failures
/// are warnings. Returns the cache metadata saved.
#[allow(clippy::too_many_arguments)]
fn save_caches(
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
fn remember(
    record: &BuildRecord,
    prepared: &Prepared,
    saved: &crate::cache::CacheMetadata,
    inputs: Option<String>,
    run_image: &RunImage,
    destination: &Destination,
    report: &BuildReport,
    events: &dyn EventSink,
) {
    let mut keep = BTreeMap::new();
    for buildpack in &saved.buildpacks {
        let escaped = buildpack.key.replace('/', "_");
        for (name, layer) in &buildpack.layers {
            let dir = prepared.work.layers.join(&escaped).join(name);
            if dir.is_dir() {
                keep.insert(format!("{escaped}/{name}"), (dir, layer.sha.clone()));
            }
        }
    }
    if let Err(e) = record.keep_layers(&keep) {
        events.event(&Event::Warning(format!(
            "the cache layers were not kept for the next build ({e}); it extracts them from the store"
        )));
    }
    let Some(inputs) = inputs else {
        return;
    };
    let run_image_digest = run_image
        .image
        .as_ref()
        .map(|i| i.manifest_descriptor.digest().to_string())
        .unwrap_or_default();
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
        manifest_digest: report.manifest_digest.to_string(),
        config_digest: report.config_digest.to_string(),
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

/// The report of a build whose inputs are those recorded, if the recorded image is still
/// whole in the store and its run image unchanged: the image is published again (for a file
/// destination, only if the file changed) and nothing else is done.
fn up_to_date(
    store: &Store,
    destination: &Destination,
    recorded: &Recorded,
    checking: Instant,
    options: &BuildOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<Option<BuildReport>, Error> {
    let layout = store.layout();
    let Ok(manifest_digest) = recorded.manifest_digest.parse::<Digest>() else {
        return Ok(None);
    };
    let Some(manifest) = layout
        .read_blob(&manifest_digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<oci_spec::image::ImageManifest>(&b).ok())
    else {
        return Ok(None);
    };
    if !std::iter::once(manifest.config())
        .chain(manifest.layers())
        .all(|d| layout.has_blob(d.digest()))
    {
        return Ok(None);
    }
    // A run image kept in the store by name (the stack's, a pulled one) must still be the one
    // used; files and layouts are in the inputs' fingerprint.
    let run_image = recorded.run_image.parse::<ImageReference>().ok();
    if let Some(ImageReference::Named(name) | ImageReference::Registry(name)) = &run_image {
        let platform = options
            .platform
            .clone()
            .unwrap_or_else(TargetPlatform::host);
        let current =
            crate::transport::load(&ImageReference::Named(name.clone()), store, &platform)
                .map(|i| i.manifest_descriptor.digest().to_string())
                .unwrap_or_default();
        if current != recorded.run_image_digest {
            return Ok(None);
        }
    }
    events.event(&Event::Step(format!(
        "Nothing changed since the last build of {destination} (source, buildpacks, run image and settings are the same): reusing {}",
        recorded.manifest_digest
    )));
    let mut timings = BTreeMap::new();
    timings.insert("checking".to_string(), checking.elapsed().as_secs_f64());
    let started = Instant::now();
    let unchanged_file = recorded.output_stamp.is_some()
        && match destination {
            Destination::Archive { path, .. } | Destination::DockerArchive { path, .. } => {
                record::file_stamp(path) == recorded.output_stamp
            }
            _ => false,
        };
    let published = if unchanged_file {
        publish::Published::Written
    } else {
        let descriptor = oci_spec::image::DescriptorBuilder::default()
            .media_type(oci_spec::image::MediaType::ImageManifest)
            .digest(manifest_digest.clone())
            .size(
                layout
                    .read_blob(&manifest_digest)
                    .map_or(0, |b| b.len() as u64),
            )
            .build()
            .expect("a descriptor with digest, size and media type builds");
        publish::publish(
            store,
            publish::Publishable {
                descriptor: &descriptor,
                manifest: &manifest,
            },
            destination,
            &options.transports,
            events,
            cancel,
        )?
    };
    timings.insert("publish".to_string(), started.elapsed().as_secs_f64());
    Ok(Some(BuildReport {
        image: destination.to_string(),
        manifest_digest,
        config_digest: manifest.config().digest().clone(),
        run_image: recorded.run_image.clone(),
        buildpacks: recorded.buildpacks.clone(),
        processes: recorded.processes.clone(),
        default_process: recorded.default_process.clone(),
        layers: recorded
            .layers
            .iter()
            .map(|l| LayerReport {
                reused: true,
                ..l.clone()
            })
            .collect(),
        timings,
        published,
        up_to_date: true,
    }))
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
    let mut timings = BTreeMap::new();
    let prepared = prepare(store, options, events, cancel, &mut timings)?;
    let runner = prepared.runner(options, events, cancel);
    let started = phase_start(events, Phase::Detect);
    // A buildpack whose detect errored is reported in the results (the summary then says
    // nothing passed), as `kiln detect` shows every buildpack's verdict either way.
    let outcome = match run_detect(&prepared, &runner) {
        Err(Error::Detect(crate::lifecycle::detect::DetectError::BuildpackErrored { results })) => {
            DetectOutcome::NoMatch { results }
        }
        other => other?,
    };
    phase_end(events, Phase::Detect, started, &mut timings);
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
                let started = phase_start(events, Phase::Build);
                let output = run_build(&prepared, &runner, &group, &plan)?;
                phase_end(events, Phase::Build, started, &mut timings);
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
                let (source, flavour, _) = default_flavour(options, &group)?;
                stack::store_name(&source.definition()?.stack.name, &flavour).to_string()
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
