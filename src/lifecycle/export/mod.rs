//! The export phase: write the image — run image layers, one layer per launch layer, the app
//! layer(s) — with its configuration and CNB labels, into kiln's store.
//!
//! Layer order follows the lifecycle: the run image's layers; then, per buildpack in group
//! order, its launch layers by name at `/layers/<escaped id>/<layer>`; then one layer per
//! `launch.toml` slice and a final layer with the rest of the app at `/workspace`.
//!
//! kiln images have no launcher (design decision 9): the launch environment is computed here
//! and written into the config's `Env`, and the default process becomes `Entrypoint`
//! (its `command`) and `Cmd` (its `args`, which `podman run IMAGE ARGS…` replaces, as the
//! CNB launcher does). So `exec.d` and `profile.d` scripts do not run; kiln warns when a
//! launch layer has them.
//!
//! Before anything is written, [`launch_check`] makes sure every process's program (and a
//! script's `#!` interpreter) is in the image; a missing one fails the export with
//! [`ExportError::ProgramMissing`] (exit code 53), naming the stack flavour that has it.
//! Then [`native`] reads the ELF files of the launch layers and the app: shared libraries
//! they need and the run image lacks come from Debian packages of the stack, added as one
//! layer right after the run image's layers.

pub(crate) mod debian;
pub(crate) mod elf;
pub(crate) mod launch_check;
pub(crate) mod native;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageManifest, MediaType, RootFsBuilder,
};

use crate::buildenv::{APP_DIR, LAYERS_DIR};
use crate::env::{DefaultAction, Env, EnvDirError, LAUNCH_ROOT_DIRS};
use crate::event::{CancelToken, Event, EventSink};
use crate::image::layout::{LayoutError, OciLayout};
use crate::image::{descriptor, docker_media, write_image};
use crate::labels::{self, BuildMetadata, BuildpackLayers, LifecycleMetadata};
use crate::launch::{Process, ProcessType, Slice};
use crate::layer::{LayerBlob, LayerError, LayerSpec, buildpack_layer_spec};
use crate::lifecycle::analyze::RunImage;
use crate::lifecycle::build::BuildOutput;
use crate::reproducible::{canonical_json, created_timestamp};

/// Errors of the export phase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A layer could not be written.
    #[error("failed to export layer {name}")]
    Layer {
        /// The layer.
        name: String,
        /// Why.
        #[source]
        source: LayerError,
    },
    /// A run image layer is not in the store (it is copied there when the run image is
    /// analyzed).
    #[error("run image layer {digest} is not in kiln's store")]
    RunImageLayer {
        /// The layer.
        digest: Digest,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// A blob could not be written.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Env files of a launch layer could not be read.
    #[error(transparent)]
    EnvFiles(#[from] EnvDirError),
    /// `--process` names a process no buildpack defined.
    #[error("process type {requested} does not exist; the buildpacks defined: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    UnknownProcess {
        /// The requested type.
        requested: String,
        /// The defined types.
        available: Vec<String>,
    },
    /// A launch layer has no contents and there is no previous image to reuse it from.
    #[error("layer {buildpack}:{layer} is {} but has no contents{}; write the layer directory, or set launch = false", if *.cache { "cache = true" } else { "launch = true" }, if *.cache { "" } else { " and the previous image has no such layer to reuse" })]
    MissingLayerContents {
        /// Buildpack ID.
        buildpack: String,
        /// Layer name.
        layer: String,
        /// Whether it was a cache layer.
        cache: bool,
    },
    /// A process's program, or its script's `#!` interpreter, is not in the image: the
    /// image would fail when it starts.
    #[error("the image cannot start: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    ProgramMissing {
        /// The run image.
        run_image: String,
        /// What each failing process misses.
        problems: Vec<launch_check::MissingProgram>,
    },
    /// The run image's layers could not be read to check the processes' programs.
    #[error("cannot read the run image's layer {path} to check the processes' programs")]
    RunImageFiles {
        /// The layer blob.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the image needs a shared library that neither the image nor any package of
    /// the stack has: the image would fail when that file is loaded.
    #[error("the image cannot run: {}; no Debian package of stack {stack} (the {flavour} lock) provides {}, and the run image {run_image} does not have {}. Ship the library in the layer with the file (and set the file's RUNPATH to it, as auditwheel does with `$ORIGIN/../<package>.libs`), or build against a library the stack has", problems.join("; "), if problems.len() == 1 { "it" } else { "them" }, if problems.len() == 1 { "it" } else { "them" })]
    LibraryMissing {
        /// `FILE needs LIBRARY`, for each.
        problems: Vec<String>,
        /// The stack.
        stack: String,
        /// The flavour whose lock was searched.
        flavour: String,
        /// The run image.
        run_image: String,
    },
    /// Debian packages a buildpack asked for are not in the stack's archive.
    #[error("the image cannot run: stack {stack}'s Debian archive has no package {}. kiln adds R packages only from Debian's r-cran-* packages (installing from a CRAN-like repository is not supported yet): depend on a package Debian has, or run on a --run-image of your own that has it", packages.join(", "))]
    DebianPackagesMissing {
        /// Each package, with why and who asked for it.
        packages: Vec<String>,
        /// The stack.
        stack: String,
    },
    /// The Debian packages that provide the missing libraries could not be found or added.
    #[error("cannot add the Debian packages of the shared libraries the image needs")]
    NativePackages(#[source] crate::stack::StackError),
    /// The image configuration could not be assembled.
    #[error("failed to assemble the image configuration: {0}")]
    Config(String),
    /// The image's SBOM could not be made or attached.
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
    /// The image's provenance statement could not be made or attached.
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceError),
    /// The export was cancelled: its source is the shared [`crate::event::Cancelled`] (see
    /// [`crate::is_cancelled`]).
    #[error("cancelled")]
    Cancelled(#[from] crate::event::Cancelled),
}

/// A layer the export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedLayer {
    /// What it holds: `<buildpack>:<layer>`, `application` or `application slice N`.
    pub name: String,
    /// `diff_id`.
    pub diff_id: Digest,
    /// Blob digest.
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
    /// Whether the blob was already in the store (nothing new written).
    pub reused: bool,
}

/// The exported image.
#[derive(Debug, Clone)]
#[must_use]
pub(crate) struct ExportedImage {
    /// The manifest's descriptor.
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// The layers kiln wrote (not the run image's).
    pub layers: Vec<ExportedLayer>,
    /// The process the image runs by default, if any.
    pub default_process: Option<Process>,
    /// The artifacts attached to the image (its SBOMs), listed in the store's index.
    pub referrers: Vec<crate::image::referrers::Referrer>,
}

/// Everything export needs.
pub(crate) struct ExportContext<'a> {
    /// kiln's store (stack packages and the native-libraries layer).
    pub store: &'a crate::store::Store,
    /// Where blobs go (kiln's store layout).
    pub layout: &'a OciLayout,
    /// The run image.
    pub run_image: &'a RunImage,
    /// What the build produced.
    pub build: &'a BuildOutput,
    /// The host directory holding the built app (`/workspace`).
    pub app_dir: &'a Path,
    /// The process to make the default (`--process`), overriding the buildpacks' choice.
    pub process: Option<&'a ProcessType>,
    /// `SOURCE_DATE_EPOCH`, if set.
    pub source_date_epoch: Option<i64>,
    /// The build image the buildpacks ran in, `REFERENCE@digest` (see
    /// `labels::BUILD_IMAGE`); `None` for the host.
    pub build_image: Option<&'a str>,
    /// `CNB_EXEC_ENV`.
    pub exec_env: &'a str,
    /// What the last export of this image wrote (layers whose content did not change are
    /// not compressed again).
    pub memo: &'a crate::cache::memo::ExportMemo,
    /// The stat fingerprint of the app's source, if the build left its copy in `app_dir`
    /// untouched: app layers whose source and settings are as at the last export are then
    /// reused without reading `app_dir`.
    pub app_source: Option<&'a str>,
    /// The previous image of the destination: launch layers a buildpack left without
    /// contents are reused from it.
    pub previous: Option<&'a crate::lifecycle::analyze::PreviousImage>,
    /// The stack whose flavours the launch check names when a program is missing.
    pub stack: &'a str,
    /// Whether kiln chose the run image (a flavour of `stack`) rather than `--run-image`.
    pub run_image_chosen: bool,
    /// Where the launch check keeps each run image layer's file list
    /// (`$KILN_HOME/cache/layer-files`); `None` reads the layers every time.
    pub layer_files: Option<&'a Path>,
    /// The image's name as its SBOM gives it (see
    /// [`crate::transport::publish::Destination::image_name`]).
    pub image_name: &'a str,
    /// What the build was asked to do, as its provenance statement tells.
    pub provenance: &'a crate::provenance::Request<'a>,
    /// Where events go.
    pub events: &'a dyn EventSink,
    /// Cancellation.
    pub cancel: &'a CancelToken,
}

struct PlannedLayer {
    name: String,
    created_by: String,
    spec: LayerSpec,
    /// A launch layer its buildpack left without contents: the previous image's blob.
    reused: Option<LayerBlob>,
    /// What stands for the source tree's fingerprint (see [`ExportContext::app_source`]).
    tree: Option<String>,
}

/// Runs the export phase.
pub(crate) fn export(ctx: &ExportContext<'_>) -> Result<ExportedImage, ExportError> {
    let (uid, gid) = ctx.run_image.cnb_user();
    let run_layers = run_image_layers(ctx)?;
    let files = image_files(ctx, &run_layers)?;
    check_launch(ctx, &files)?;
    // Packages buildpacks asked for, then libraries the app's files miss: each one layer,
    // right after the run image's.
    let native: Vec<native::NativeLayer> = debian::requested_packages(ctx)?
        .into_iter()
        .chain(native::native_libraries(ctx, &files)?)
        .collect();
    drop(files);

    let (mut planned, mut bp_metadata) = plan_launch_layers(ctx, uid, gid)?;
    let launch_layer_count = planned.len();
    planned.extend(app_layers(
        ctx.app_dir,
        &ctx.build.slices,
        uid,
        gid,
        ctx.events,
    ));
    for plan in &mut planned[launch_layer_count..] {
        plan.tree = ctx.app_source.map(str::to_string);
    }

    let blobs = write_layers_parallel(ctx.layout, ctx.memo, &planned, ctx.cancel)?;
    let exported: Vec<ExportedLayer> = native
        .iter()
        .map(|n| (&n.name, &n.blob))
        .chain(planned.iter().map(|p| &p.name).zip(&blobs))
        .map(|(name, blob)| {
            ctx.events.event(&Event::Layer {
                name: name.clone(),
                diff_id: blob.diff_id.clone(),
                size: blob.size,
                reused: blob.existed,
            });
            ExportedLayer {
                name: name.clone(),
                diff_id: blob.diff_id.clone(),
                digest: blob.digest.clone(),
                size: blob.size,
                reused: blob.existed,
            }
        })
        .collect();
    // Launch layers were planned in the order of the metadata's buildpacks and layer names.
    let (launch_blobs, app_blobs) = blobs.split_at(launch_layer_count);
    let mut launch_blobs = launch_blobs.iter();
    for layer in bp_metadata.iter_mut().flat_map(|e| e.layers.values_mut()) {
        layer.sha = Some(
            launch_blobs
                .next()
                .expect("one blob per launch layer")
                .diff_id
                .clone(),
        );
    }

    let process = choose_process(ctx)?;
    let env = launch_env(ctx, process.as_ref())?;
    let lifecycle = lifecycle_metadata(ctx.run_image, bp_metadata, app_blobs);
    let labels_map = image_labels(
        ctx,
        process.as_ref(),
        &lifecycle,
        &build_metadata(ctx.build),
        &native
            .iter()
            .flat_map(|n| n.labels.iter().cloned())
            .collect::<Vec<_>>(),
    )?;
    let history: Vec<(&str, &LayerBlob)> = native
        .iter()
        .map(|n| (n.created_by.as_str(), &n.blob))
        .chain(planned.iter().map(|p| p.created_by.as_str()).zip(&blobs))
        .collect();
    let config = image_config(ctx, &env, process.as_ref(), labels_map, &history)?;
    let mut layers = run_layers;
    layers.extend(
        native
            .iter()
            .map(|n| &n.blob)
            .chain(&blobs)
            .map(|b| descriptor(MediaType::ImageLayerGzip, &b.digest, b.size)),
    );
    let written = write_image(ctx.layout, layers, &config)?;
    ctx.cancel.check()?;
    let referrers = attach_documents(ctx, &written, &config)?;
    Ok(ExportedImage {
        manifest_descriptor: written.descriptor,
        manifest: written.manifest,
        config,
        layers: exported,
        default_process: process,
        referrers,
    })
}

/// Makes the image's SBOMs from its layers and its provenance statement, and lists them in
/// the store beside it (see [`crate::sbom`], [`crate::provenance`]); the image itself is
/// unchanged.
fn attach_documents(
    ctx: &ExportContext<'_>,
    written: &crate::image::WrittenImage,
    config: &ImageConfiguration,
) -> Result<Vec<crate::image::referrers::Referrer>, ExportError> {
    let started = std::time::Instant::now();
    let cache = ctx.store.state_dirs().layer_packages;
    let inventory = crate::sbom::inventory(
        ctx.layout,
        ctx.image_name,
        &written.descriptor,
        &written.manifest,
        config,
        Some(&cache),
    )?;
    if !inventory.unread.is_empty() {
        ctx.events.event(&Event::Warning(format!(
            "the SBOM does not list the packages of {} layer(s) reused from the registry without downloading them ({}); a build with those layers in kiln's store lists them",
            inventory.unread.len(),
            inventory.unread.join(", ")
        )));
    }
    let mut referrers = crate::sbom::attach(ctx.layout, &written.descriptor, &inventory)?;
    let statement =
        crate::provenance::statement(ctx.image_name, &written.descriptor, config, ctx.provenance)?;
    referrers.push(crate::provenance::attach(
        ctx.layout,
        &written.descriptor,
        &statement,
    )?);
    ctx.store
        .change_index(|layout| crate::image::referrers::add_to_index(layout, &referrers))
        .map_err(crate::sbom::SbomError::Store)?;
    ctx.events.event(&Event::Step(format!(
        "SBOM: {} (CycloneDX and SPDX), and the build's provenance (in-toto, SLSA v1), attached to the image",
        inventory.summary()
    )));
    ctx.events.event(&Event::Info(format!(
        "listing the image's packages took {} ms",
        started.elapsed().as_millis()
    )));
    Ok(referrers)
}

/// The image's files as the launch check and [`native`] see them: the run image's layers,
/// the launch layers at `/layers/<buildpack>/<layer>` and the app at `/workspace`.
fn image_files(
    ctx: &ExportContext<'_>,
    run_layers: &[Descriptor],
) -> Result<launch_check::ImageFiles, ExportError> {
    let mut files = launch_check::run_image_files(ctx.layout, run_layers, ctx.layer_files)
        .map_err(|(path, source)| ExportError::RunImageFiles { path, source })?;
    for output in &ctx.build.buildpacks {
        let escaped = output.buildpack.id().escaped();
        for layer in output.layers.iter().filter(|l| l.types.launch) {
            let guest = format!("{LAYERS_DIR}/{escaped}/{}", layer.name);
            match &layer.dir {
                Some(dir) => files.mount_host(&guest, dir),
                None => files.mount_unknown(&guest),
            }
        }
    }
    files.mount_host(APP_DIR, ctx.app_dir);
    Ok(files)
}

/// The launch check (see [`launch_check`]): every process's program and `#!` interpreter
/// resolves in the image to be, with the `PATH` that process will have.
fn check_launch(
    ctx: &ExportContext<'_>,
    files: &launch_check::ImageFiles,
) -> Result<(), ExportError> {
    let processes = ctx.build.processes.list();
    if processes.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut problems = Vec::new();
    for process in &processes {
        let env = launch_env(ctx, Some(process))?;
        if let Some((program, problem)) =
            launch_check::check_process(files, process, env.get("PATH"))
        {
            problems.push(launch_check::MissingProgram {
                process_type: process.process_type.to_string(),
                hint: Some(provider_hint(ctx, &program)),
                program,
                problem,
            });
        }
    }
    ctx.events.event(&Event::Info(format!(
        "launch check of {} process(es) took {} ms",
        processes.len(),
        started.elapsed().as_millis()
    )));
    if problems.is_empty() {
        return Ok(());
    }
    Err(ExportError::ProgramMissing {
        run_image: ctx.run_image.label_name(),
        problems,
    })
}

/// Which flavour of the stack (or which Debian package) has `program`, said for a run
/// image kiln chose or for one the user gave.
fn provider_hint(ctx: &ExportContext<'_>, program: &str) -> String {
    let Some(package) = launch_check::debian_package(program) else {
        return format!(
            "no buildpack installed `{program}` in a launch layer and the run image {} does not have it",
            ctx.run_image.label_name()
        );
    };
    let arch = &ctx.run_image.platform.architecture;
    let source = crate::stack::StackSource::open(ctx.stack).ok();
    let stack_name = source
        .as_ref()
        .and_then(|s| s.definition().ok())
        .map(|d| d.stack.name.to_string());
    let flavour = source
        .as_ref()
        .and_then(|s| run_flavour_with(s, arch, package));
    match (flavour, stack_name) {
        (Some(flavour), Some(stack)) if ctx.run_image_chosen => format!(
            "the `{flavour}` flavour of stack {stack} has it (Debian package {package}): add \"{package}\" to `run-image-mixins` under [metadata.kiln] in the buildpack's buildpack.toml so kiln picks that flavour, or build with --run-image kiln/stacks/{stack}-{flavour} (made by `kiln stack build {stack} --flavour {flavour}`)"
        ),
        (Some(flavour), Some(stack)) => format!(
            "Debian package {package} provides it (the `{flavour}` flavour of stack {stack} has it: --run-image kiln/stacks/{stack}-{flavour}){}; use a run image that has it",
            procfile_hint(package)
        ),
        (None, Some(stack)) => format!(
            "it comes from Debian package {package}, which no run flavour of stack {stack} has{}; use a program the run image has, or a --run-image with {package}",
            procfile_hint(package)
        ),
        (_, None) => format!("Debian package {package} provides it; use a run image that has it"),
    }
}

/// The smallest flavour of `source` (not a build flavour) whose lock for `arch` has
/// `package`.
fn run_flavour_with(
    source: &crate::stack::StackSource,
    arch: &str,
    package: &str,
) -> Option<String> {
    let def = source.definition().ok()?;
    let mut best: Option<(usize, String)> = None;
    for flavour in def.flavours.keys() {
        if flavour.as_str().starts_with("build") {
            continue;
        }
        let Ok(Some(lock)) = source.lock(flavour.as_str()) else {
            continue;
        };
        let names: Vec<&str> = lock
            .packages
            .iter()
            .filter(|p| p.arch == arch)
            .map(|p| p.name.as_str())
            .collect();
        if names.contains(&package) && best.as_ref().is_none_or(|(n, _)| names.len() < *n) {
            best = Some((names.len(), flavour.to_string()));
        }
    }
    best.map(|(_, f)| f)
}

/// Plans one layer per launch layer (buildpacks in group order, layers by name) and the
/// lifecycle-metadata entry of each buildpack (`diff_ids` filled in once written).
fn plan_launch_layers(
    ctx: &ExportContext<'_>,
    uid: u64,
    gid: u64,
) -> Result<(Vec<PlannedLayer>, Vec<BuildpackLayers>), ExportError> {
    let mut planned = Vec::new();
    let mut bp_metadata = Vec::new();
    for output in &ctx.build.buildpacks {
        let id = output.buildpack.id();
        let escaped = id.escaped();
        let mut entry = BuildpackLayers {
            key: id.clone(),
            version: output.buildpack.version().to_string(),
            layers: BTreeMap::new(),
            store: output.store.as_ref().map(|s| labels::StoreMetadata {
                metadata: labels::toml_to_json(s),
            }),
        };
        for layer in output.layers.iter().filter(|l| l.types.launch) {
            let created_by = format!(
                "Layer: '{}', Created by buildpack: {id}@{}",
                layer.name,
                output.buildpack.version()
            );
            let mut metadata = labels::LayerMetadata {
                sha: None,
                data: labels::toml_to_json(&layer.metadata),
                build: layer.types.build,
                launch: layer.types.launch,
                cache: layer.types.cache,
            };
            let Some(dir) = &layer.dir else {
                // Left without contents: reused from the previous image (spec "Launch
                // Layers"); a cache layer must always have contents.
                let remote = ctx.previous.is_some_and(|p| p.remote);
                let reused = (!layer.types.cache)
                    .then(|| ctx.previous?.launch_layer(id.as_str(), &layer.name))
                    .flatten()
                    .filter(|(_, d)| remote || ctx.layout.has_blob(d.digest()));
                let Some((previous, descriptor)) = reused else {
                    return Err(ExportError::MissingLayerContents {
                        buildpack: id.to_string(),
                        layer: layer.name.clone(),
                        cache: layer.types.cache,
                    });
                };
                ctx.events.event(&Event::Step(format!(
                    "Reusing layer '{id}:{}' from the previous image",
                    layer.name
                )));
                metadata.sha.clone_from(&previous.sha);
                planned.push(PlannedLayer {
                    name: format!("{id}:{}", layer.name),
                    created_by,
                    spec: buildpack_layer_spec(&escaped, &layer.name, Path::new(""), uid, gid),
                    reused: Some(LayerBlob {
                        diff_id: previous.sha.clone().ok_or_else(|| {
                            ExportError::MissingLayerContents {
                                buildpack: id.to_string(),
                                layer: layer.name.clone(),
                                cache: false,
                            }
                        })?,
                        digest: descriptor.digest().clone(),
                        size: descriptor.size(),
                        uncompressed_size: 0,
                        existed: true,
                    }),
                    tree: None,
                });
                entry.layers.insert(layer.name.clone(), metadata);
                continue;
            };
            for script_dir in ["exec.d", "profile.d"] {
                if dir.join(script_dir).exists() {
                    ctx.events.event(&Event::Warning(format!(
                        "layer {id}:{} has {script_dir}/ scripts; kiln images have no launcher, so they will not run",
                        layer.name
                    )));
                }
            }
            planned.push(PlannedLayer {
                name: format!("{id}:{}", layer.name),
                created_by,
                spec: buildpack_layer_spec(&escaped, &layer.name, dir, uid, gid),
                reused: None,
                tree: None,
            });
            entry.layers.insert(layer.name.clone(), metadata);
        }
        bp_metadata.push(entry);
    }
    Ok((planned, bp_metadata))
}

/// `io.buildpacks.lifecycle.metadata`.
fn lifecycle_metadata(
    run_image: &RunImage,
    buildpacks: Vec<BuildpackLayers>,
    app_blobs: &[LayerBlob],
) -> LifecycleMetadata {
    LifecycleMetadata {
        app: app_blobs
            .iter()
            .map(|b| labels::LayerRef {
                sha: Some(b.diff_id.clone()),
            })
            .collect(),
        buildpacks,
        run_image: labels::RunImageMetadata {
            top_layer: run_image.top_layer(),
            reference: run_image
                .image
                .as_ref()
                .map(|i| i.manifest_descriptor.digest().to_string())
                .unwrap_or_default(),
            image: run_image.label_name(),
            mirrors: Vec::new(),
        },
        stack: labels::StackMetadata {
            run_image: labels::StackRunImage {
                image: run_image.label_name(),
                mirrors: Vec::new(),
            },
        },
        ..LifecycleMetadata::default()
    }
}

/// `io.buildpacks.build.metadata`.
fn build_metadata(build: &BuildOutput) -> BuildMetadata {
    BuildMetadata {
        buildpacks: build
            .buildpacks
            .iter()
            .map(|b| labels::BuildpackRef {
                id: b.buildpack.id().to_string(),
                version: b.buildpack.version().to_string(),
                homepage: b.buildpack.homepage().map(str::to_string),
            })
            .collect(),
        processes: build
            .processes
            .list()
            .into_iter()
            .map(|p| labels::ProcessMetadata {
                process_type: p.process_type.to_string(),
                command: p.command,
                args: p.args,
                direct: true,
                working_dir: p.working_dir,
                buildpack_id: p.buildpack_id,
                exec_env: p.exec_env,
            })
            .collect(),
        launcher: labels::LauncherMetadata::default(),
        default_process_type: build.processes.default_type().map(ToString::to_string),
    }
}

/// The run image's layer descriptors (already in the store, see [`crate::lifecycle::analyze`]), Docker
/// media types mapped to their OCI equivalents.
fn run_image_layers(ctx: &ExportContext<'_>) -> Result<Vec<Descriptor>, ExportError> {
    let Some(image) = &ctx.run_image.image else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for layer in image.manifest.layers() {
        if !ctx.layout.has_blob(layer.digest()) {
            return Err(ExportError::RunImageLayer {
                digest: layer.digest().clone(),
                source: LayoutError::BlobMissing {
                    layout: ctx.layout.root().to_path_buf(),
                    digest: layer.digest().clone(),
                },
            });
        }
        let mut layer = layer.clone();
        if layer.media_type().to_string() == docker_media::LAYER_GZIP {
            layer.set_media_type(MediaType::ImageLayerGzip);
        }
        layer.set_annotations(None);
        out.push(layer);
    }
    Ok(out)
}

/// Plans the app layers: one per non-empty slice, then one with everything else.
fn app_layers(
    app_dir: &Path,
    slices: &[Slice],
    uid: u64,
    gid: u64,
    events: &dyn EventSink,
) -> Vec<PlannedLayer> {
    let app_spec = |only| LayerSpec {
        parents: Vec::new(),
        source: app_dir.to_path_buf(),
        target: APP_DIR[1..].to_string(),
        only,
        uid,
        gid,
        entry_metadata: None,
    };
    if slices.is_empty() {
        return vec![PlannedLayer {
            name: "application".to_string(),
            created_by: "Application Layer".to_string(),
            spec: app_spec(None),
            reused: None,
            tree: None,
        }];
    }
    let mut remaining: Vec<PathBuf> = walkdir::WalkDir::new(app_dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| {
            e.path()
                .strip_prefix(app_dir)
                .expect("walkdir yields paths under its root")
                .to_path_buf()
        })
        .collect();
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut layers = Vec::new();
    for (i, slice) in slices.iter().enumerate() {
        let patterns: Vec<glob::Pattern> = slice
            .paths
            .iter()
            .filter_map(|p| {
                let p = p.strip_prefix(&format!("{APP_DIR}/")).unwrap_or(p);
                let p = p.strip_prefix("./").unwrap_or(p);
                match glob::Pattern::new(p) {
                    Ok(pattern) => Some(pattern),
                    Err(e) => {
                        events.event(&Event::Warning(format!(
                            "slice glob {p:?} is invalid ({e}); ignoring it"
                        )));
                        None
                    }
                }
            })
            .collect();
        let matches = |path: &Path| {
            path.ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| patterns.iter().any(|p| p.matches_path_with(a, options)))
        };
        let (taken, rest): (Vec<PathBuf>, Vec<PathBuf>) =
            remaining.into_iter().partition(|p| matches(p));
        remaining = rest;
        if taken.is_empty() {
            events.event(&Event::Warning(format!(
                "slice {} ({}) matches no files; no layer is made for it",
                i + 1,
                slice.paths.join(", ")
            )));
            continue;
        }
        layers.push(PlannedLayer {
            name: format!("application slice {}", i + 1),
            created_by: format!("Application Slice: {}", i + 1),
            spec: app_spec(Some(taken)),
            reused: None,
            tree: None,
        });
    }
    layers.push(PlannedLayer {
        name: "application".to_string(),
        created_by: "Application Layer".to_string(),
        spec: app_spec(Some(remaining)),
        reused: None,
        tree: None,
    });
    layers
}

/// Writes the planned layers with a small pool of threads, returning blobs in plan order.
fn write_layers_parallel(
    layout: &OciLayout,
    memo: &crate::cache::memo::ExportMemo,
    planned: &[PlannedLayer],
    cancel: &CancelToken,
) -> Result<Vec<LayerBlob>, ExportError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .min(planned.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<LayerBlob, ExportError>>>> =
        Mutex::new((0..planned.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = planned.get(i) else { break };
                    let result = if let Err(cancelled) = cancel.check() {
                        Err(cancelled.into())
                    } else if let Some(blob) = &plan.reused {
                        Ok(blob.clone())
                    } else {
                        memo.write_layer(layout, &plan.name, &plan.spec, plan.tree.as_deref())
                            .map_err(|source| ExportError::Layer {
                                name: plan.name.clone(),
                                source,
                            })
                    };
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.expect("every planned layer was attempted"))
        .collect()
}

fn choose_process(ctx: &ExportContext<'_>) -> Result<Option<Process>, ExportError> {
    let processes = &ctx.build.processes;
    let chosen = match ctx.process {
        Some(requested) => Some(processes.get(requested).cloned().ok_or_else(|| {
            ExportError::UnknownProcess {
                requested: requested.to_string(),
                available: processes
                    .list()
                    .into_iter()
                    .map(|p| p.process_type.to_string())
                    .collect(),
            }
        })?),
        None => processes
            .default_type()
            .and_then(|t| processes.get(t))
            .cloned(),
    };
    if chosen.is_none() {
        ctx.events.event(&Event::Warning(
            "no default process type; the image needs a command when it runs (choose one with --process)".to_string(),
        ));
    }
    Ok(chosen)
}

/// The environment the launcher would give `process`: the run image's `Env`, then per
/// buildpack (group order) every launch layer's `bin`/`lib` prepended to `PATH` /
/// `LD_LIBRARY_PATH`, then every launch layer's `env/`, `env.launch/` and
/// `env.launch/<process>/` files (`buildpacks/lifecycle:launch/launcher.go`).
fn launch_env(ctx: &ExportContext<'_>, process: Option<&Process>) -> Result<Env, ExportError> {
    let mut env = Env::from_list(&ctx.run_image.env());
    for output in &ctx.build.buildpacks {
        let escaped = output.buildpack.id().escaped();
        let layers: Vec<(&Path, PathBuf)> = output
            .layers
            .iter()
            .filter(|l| l.types.launch)
            .filter_map(|l| {
                let host = l.dir.as_deref()?;
                Some((host, Path::new(LAYERS_DIR).join(&escaped).join(&l.name)))
            })
            .collect();
        for (host, guest) in &layers {
            env.add_root_dir(host, guest, &LAUNCH_ROOT_DIRS);
        }
        for (host, _) in &layers {
            env.add_env_dir(&host.join("env"), DefaultAction::Override)?;
            env.add_env_dir(&host.join("env.launch"), DefaultAction::Override)?;
            if let Some(p) = process {
                env.add_env_dir(
                    &host.join("env.launch").join(p.process_type.as_str()),
                    DefaultAction::Override,
                )?;
            }
        }
    }
    Ok(env)
}

/// Adds the buildpacks' labels. They never replace kiln's own (the build phase already
/// warned about them; a build record from an older kiln may still carry some), except those
/// kiln's buildpacks keep under their own name (`io.github.kiln-build.nodejs.version`).
fn add_buildpack_labels(ctx: &ExportContext<'_>, labels_map: &mut HashMap<String, String>) {
    let owned = |key: &str| {
        ctx.build
            .buildpacks
            .iter()
            .any(|b| labels::is_buildpack_label(b.buildpack.id().as_str(), key))
    };
    for label in ctx
        .build
        .labels
        .iter()
        .filter(|l| !labels::is_reserved(&l.key) || owned(&l.key))
    {
        labels_map.insert(label.key.clone(), label.value.clone());
    }
}

/// The image's labels: the run image's, then kiln's (CNB metadata, process type, build
/// image, native packages) and the buildpacks'.
fn image_labels(
    ctx: &ExportContext<'_>,
    process: Option<&Process>,
    lifecycle: &LifecycleMetadata,
    build_metadata: &BuildMetadata,
    native_labels: &[(String, String)],
) -> Result<HashMap<String, String>, ExportError> {
    let mut labels_map: HashMap<String, String> = ctx
        .run_image
        .image
        .as_ref()
        .and_then(|i| i.config.config().as_ref())
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    labels_map.insert(
        labels::LIFECYCLE_METADATA.to_string(),
        label_json(lifecycle)?,
    );
    labels_map.insert(
        labels::BUILD_METADATA.to_string(),
        label_json(build_metadata)?,
    );
    labels_map.insert(labels::PROJECT_METADATA.to_string(), "{}".to_string());
    labels_map.insert(labels::EXEC_ENV.to_string(), ctx.exec_env.to_string());
    match process {
        Some(p) => labels_map.insert(labels::PROCESS_TYPE.to_string(), p.process_type.to_string()),
        None => labels_map.remove(labels::PROCESS_TYPE),
    };
    match ctx.build_image {
        Some(image) => labels_map.insert(labels::BUILD_IMAGE.to_string(), image.to_string()),
        None => labels_map.remove(labels::BUILD_IMAGE),
    };
    labels_map.remove(labels::NATIVE_PACKAGES);
    labels_map.remove(labels::NATIVE_LIBRARIES);
    add_buildpack_labels(ctx, &mut labels_map);
    for (key, value) in native_labels {
        labels_map.insert(key.clone(), value.clone());
    }
    Ok(labels_map)
}

/// The image configuration; `layers` are the layers kiln adds to the run image's, with the
/// history line of each.
fn image_config(
    ctx: &ExportContext<'_>,
    env: &Env,
    process: Option<&Process>,
    labels_map: HashMap<String, String>,
    layers: &[(&str, &LayerBlob)],
) -> Result<ImageConfiguration, ExportError> {
    let created = created_timestamp(ctx.source_date_epoch);
    let base = ctx.run_image.image.as_ref().map(|i| &i.config);
    let base_config = base.and_then(|c| c.config().clone());

    let (uid, gid) = ctx.run_image.cnb_user();
    let user = base_config
        .as_ref()
        .and_then(|c| c.user().clone())
        .filter(|u| !u.is_empty())
        .or_else(|| env.contains("CNB_USER_ID").then(|| format!("{uid}:{gid}")));

    let mut config = ConfigBuilder::default()
        .env(env.to_list())
        .labels(labels_map)
        .working_dir(process.map_or(APP_DIR.to_string(), |p| p.working_dir.clone()))
        .build()
        .map_err(|e| ExportError::Config(e.to_string()))?;
    config.set_user(user);
    if let Some(p) = process {
        config.set_entrypoint(Some(p.command.clone()));
        config.set_cmd(Some(p.args.clone()));
    }
    if let Some(base) = &base_config {
        config.set_exposed_ports(base.exposed_ports().clone());
        config.set_volumes(base.volumes().clone());
        config.set_stop_signal(base.stop_signal().clone());
    }

    let mut history = base
        .map(|c| c.history().clone().unwrap_or_default())
        .unwrap_or_default();
    for (created_by, _) in layers {
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(created_by.to_string())
                .build()
                .map_err(|e| ExportError::Config(e.to_string()))?,
        );
    }
    let mut diff_ids: Vec<String> = base
        .map(|c| c.rootfs().diff_ids().clone())
        .unwrap_or_default();
    diff_ids.extend(layers.iter().map(|(_, b)| b.diff_id.to_string()));
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .map_err(|e| ExportError::Config(e.to_string()))?;

    let platform = &ctx.run_image.platform;
    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(platform.architecture.as_str())
        .os(platform.os.as_str())
        .config(config)
        .rootfs(rootfs)
        .history(history);
    if let Some(variant) = &platform.variant {
        builder = builder.variant(variant.clone());
    }
    if let Some(base) = base {
        if let Some(v) = base.os_version() {
            builder = builder.os_version(v.clone());
        }
        if let Some(f) = base.os_features() {
            builder = builder.os_features(f.clone());
        }
    }
    builder
        .build()
        .map_err(|e| ExportError::Config(e.to_string()))
}

/// A label value: canonical JSON of `value`.
fn label_json<T: serde::Serialize>(value: &T) -> Result<String, ExportError> {
    let bytes = canonical_json(value).map_err(|e| ExportError::Config(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| ExportError::Config(e.to_string()))
}

/// For `bash`, which Heroku's Procfile buildpack runs commands with: kiln's own runs them
/// with `sh`, which most flavours have.
fn procfile_hint(package: &str) -> &'static str {
    if package == "bash" {
        " (kiln's own kiln/procfile runs Procfile commands with `sh -c`, which the shell, static, python and nodejs flavours have)"
    } else {
        ""
    }
}
