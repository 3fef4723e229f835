//! Before detection: the build's scratch directories, its buildpacks, the run image when one
//! is given (the analyze phase), the copy of the source, the build variables and the sandbox
//! buildpacks run in.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use super::analyze::{self, RunImage};
use super::build::{self, BuildContext, BuildDirs, BuildOutput};
use super::detect::{self, DetectContext, DetectDirs, DetectOutcome, GroupMember, RunTarget};
use super::options::BuildOptions;
use super::timings::Timings;
use crate::app;
use crate::buildenv::{
    APP_DIR, BuildEnvironment, HostSandbox, LAYERS_DIR, PLATFORM_DIR, SandboxMounts,
    buildpack_guest_dir,
};
use crate::buildpack::builtin;
use crate::buildpack::order::Order;
use crate::buildpack::{Catalog, Runner};
use crate::env::Env;
use crate::error::Error;
use crate::event::{CancelToken, Event, EventSink, Phase};
use crate::plan::PlanEntry;
use crate::stack;
use crate::store::Store;

/// Scratch directories for one build, removed when it ends.
pub(super) struct WorkDir {
    pub(super) _temp: tempfile::TempDir,
    pub(super) buildpacks: PathBuf,
    pub(super) layers: PathBuf,
    pub(super) app: PathBuf,
    pub(super) platform: PathBuf,
    pub(super) plans: PathBuf,
    pub(super) root: PathBuf,
    /// Where cache layers kept from the last build are moved while this one restores them.
    pub(super) kept: PathBuf,
    /// In a builder image, the CNB directories at their own paths, emptied when the build
    /// ends.
    _direct: Option<DirectDirs>,
}

/// The CNB directories of a builder image (see [`crate::builder`]), which a build uses in
/// place and leaves empty.
struct DirectDirs(Vec<PathBuf>);

impl DirectDirs {
    /// The directories a build writes in a builder image.
    fn paths() -> Vec<PathBuf> {
        [
            LAYERS_DIR,
            APP_DIR,
            PLATFORM_DIR,
            crate::buildenv::PLANS_DIR,
            crate::buildenv::BUILDPACKS_DIR,
        ]
        .iter()
        .map(PathBuf::from)
        .collect()
    }

    /// Claims them: each must be an empty directory (or, for `/platform`, hold only an empty
    /// `env`), and the app must not be inside one.
    fn claim(app_dir: &std::path::Path) -> Result<Self, Error> {
        let app = fs::canonicalize(app_dir).unwrap_or_else(|_| app_dir.to_path_buf());
        let dirs = Self::paths();
        for dir in &dirs {
            if app.starts_with(dir) {
                return Err(Error::InvalidOptions(format!(
                    "the app ({}) is inside {}, which kiln builds in inside a builder image: mount the source elsewhere (e.g. /src) and pass --path",
                    app.display(),
                    dir.display()
                )));
            }
            let entries: Vec<_> = fs::read_dir(dir)
                .map_err(|source| Error::Prepare {
                    path: dir.clone(),
                    source,
                })?
                .filter_map(Result::ok)
                .filter(|e| {
                    !(dir == std::path::Path::new(PLATFORM_DIR)
                        && e.file_name() == "env"
                        && fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_none()))
                })
                .collect();
            if !entries.is_empty() {
                return Err(Error::InvalidOptions(format!(
                    "{} is not empty: in a builder image kiln builds in /layers, /workspace, /platform and /cnb, which must start empty (a fresh container or emptyDir volume per build)",
                    dir.display()
                )));
            }
        }
        fs::create_dir_all(std::path::Path::new(PLATFORM_DIR).join("env")).map_err(|source| {
            Error::Prepare {
                path: PathBuf::from(PLATFORM_DIR),
                source,
            }
        })?;
        Ok(Self(dirs))
    }
}

impl Drop for DirectDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                crate::cache::record::remove_tree(&entry.path());
            }
        }
    }
}

impl WorkDir {
    /// Scratch directories in the store; in a builder image (`direct`), the CNB directories
    /// at their own paths instead, with only the rest in the store.
    pub(super) fn new(store: &Store, direct: Option<&std::path::Path>) -> Result<Self, Error> {
        let temp = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(store.work_dir())
            .map_err(|source| Error::Prepare {
                path: store.work_dir(),
                source,
            })?;
        let base = temp.path().to_path_buf();
        let claimed = direct.map(DirectDirs::claim).transpose()?;
        let place = |own: &str, guest: &str| {
            if claimed.is_some() {
                PathBuf::from(guest)
            } else {
                base.join(own)
            }
        };
        let dirs = Self {
            buildpacks: base.join("buildpacks"),
            layers: place("layers", LAYERS_DIR),
            app: place("workspace", APP_DIR),
            platform: place("platform", PLATFORM_DIR),
            plans: place("plans", crate::buildenv::PLANS_DIR),
            root: base.join("root"),
            kept: base.join("kept"),
            _temp: temp,
            _direct: claimed,
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
pub(super) struct Prepared {
    pub(super) work: WorkDir,
    pub(super) catalog: Catalog,
    pub(super) order: Order,
    /// The run image, when given; else chosen after detection.
    pub(super) run_image: Option<RunImage>,
    /// The platform buildpacks build for.
    pub(super) target: RunTarget,
    pub(super) sandbox: HostSandbox,
    pub(super) base_env: Env,
    pub(super) user_env: BTreeMap<String, String>,
    /// The source's stat fingerprint (taken before copying it) and the copy's, to tell
    /// whether the build left the app as the source has it.
    pub(super) app_fingerprints: Option<(String, String)>,
    /// The build image buildpacks detect in, `REFERENCE@digest` (`--build-env image`).
    pub(super) build_image: Option<String>,
    /// What the sandbox maps, kept to make the build's sandbox when the group needs another
    /// build image than detection ran in.
    mounts: SandboxMounts,
    /// The builder image kiln runs in, if it does.
    builder: Option<crate::builder::BuilderInfo>,
}

/// The sandbox a group builds in when it is not the one detection ran in: the stack's build
/// image with the group's toolchain.
pub(super) struct BuildSandbox {
    pub(super) sandbox: HostSandbox,
    /// The build image, `REFERENCE@digest`.
    pub(super) image: String,
}

pub(super) fn prepare(
    store: &Store,
    options: &BuildOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
    timings: &mut Timings<'_>,
) -> Result<Prepared, Error> {
    let hermetic = options.build_environment == BuildEnvironment::Image;
    // In a builder image, kiln's own file system is the build image: no sandbox.
    let builder = if hermetic && options.build_image.is_none() {
        crate::builder::BuilderInfo::current()?
    } else {
        None
    };
    if let Some(info) = &builder {
        check_builder_stack(info, options)?;
    }
    let work = WorkDir::new(
        store,
        builder.is_some().then_some(options.app_dir.as_path()),
    )?;
    let exe = builtin::executable(options.kiln_executable.as_deref())?;
    // In a build image the built-in buildpacks run the kiln executable bound at /cnb/kiln.
    let guest_exe = if hermetic && builder.is_none() {
        PathBuf::from(crate::builder::KILN_IN_IMAGE)
    } else {
        exe.clone()
    };
    let (catalog, order) =
        crate::buildpack::catalog::load(&options.buildpacks, &work.buildpacks, &guest_exe)
            .map_err(catalog_error)?;

    let (run_image, target) = timings.phase(Phase::Analyze, |_| {
        Ok(match &options.run_image {
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
            None => (
                None,
                stack::choose::target(&options.stack, options.platform.as_ref())?,
            ),
        })
    })?;

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
    write_build_env(&work.platform, &user_env)?;
    let (sandbox, mounts, build_image) = sandbox(
        store,
        options,
        &work,
        &catalog,
        &exe,
        builder.as_ref(),
        events,
        cancel,
    )?;
    let mut base_env = base_env(options);
    if let (Some(_), Some(ca)) = (&builder, &options.ca_certs) {
        // Nothing is bound in a builder image: the bundle is where it is.
        for var in crate::env::CA_VARIABLES {
            base_env.set(var, ca.display().to_string());
        }
    }
    Ok(Prepared {
        work,
        catalog,
        order,
        run_image,
        target,
        sandbox,
        base_env,
        user_env,
        app_fingerprints,
        build_image,
        mounts,
        builder,
    })
}

/// The sandbox buildpacks run in (none in a builder image), what it maps, and the build
/// image's `REFERENCE@digest` (hermetic builds).
#[allow(clippy::too_many_arguments)]
fn sandbox(
    store: &Store,
    options: &BuildOptions,
    work: &WorkDir,
    catalog: &Catalog,
    exe: &std::path::Path,
    builder: Option<&crate::builder::BuilderInfo>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<(HostSandbox, SandboxMounts, Option<String>), Error> {
    let hermetic = options.build_environment == BuildEnvironment::Image;
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
        rootfs: None,
        files: Vec::new(),
    };
    mounts.hide_kiln_state(store.root());
    if let (true, Some(ca)) = (hermetic, &options.ca_certs) {
        mounts
            .files
            .push((ca.clone(), PathBuf::from(crate::env::IMAGE_CA_BUNDLE)));
    }
    let mut build_image = None;
    if let Some(info) = builder {
        build_image = Some(info.build_image.clone());
        events.event(&Event::Step(format!(
            "Build image: {} (kiln runs in this builder image; buildpacks run without a sandbox of kiln's)",
            info.build_image
        )));
    } else if hermetic {
        // Detection runs in the stack's smallest build image; the group may need a bigger one.
        let (rootfs, image) = build_rootfs(store, options, &BTreeSet::new(), events, cancel)?;
        mounts.rootfs = Some(rootfs);
        build_image = Some(image);
        mounts.files.push((
            exe.to_path_buf(),
            PathBuf::from(crate::builder::KILN_IN_IMAGE),
        ));
    }
    for buildpack in catalog.buildpacks() {
        mounts.dirs.push((
            buildpack.dir().to_path_buf(),
            buildpack_guest_dir(&buildpack.id().escaped(), buildpack.version()),
        ));
    }
    let sandbox = if builder.is_some() {
        // The buildpacks at their CNB paths, as links (the builder's /cnb/buildpacks is
        // kiln's to write, and emptied when the build ends).
        for (dir, guest) in &mounts.dirs {
            if guest.starts_with(crate::buildenv::BUILDPACKS_DIR) {
                link_buildpack(dir, guest)?;
            }
        }
        HostSandbox::direct()
    } else {
        HostSandbox::prepare(&work.root, &mounts)?
    };
    Ok((sandbox, mounts, build_image))
}

/// In a builder image, the stack asked for must be the builder's.
fn check_builder_stack(
    info: &crate::builder::BuilderInfo,
    options: &BuildOptions,
) -> Result<(), Error> {
    let stack = stack::StackSource::open(&options.stack)?
        .definition()?
        .stack
        .name
        .to_string();
    if stack == info.stack {
        Ok(())
    } else {
        Err(Error::InvalidOptions(format!(
            "this builder image is stack {}'s {}, not stack {stack}'s: use a builder made with `kiln builder create --stack {stack}`",
            info.stack, info.flavour
        )))
    }
}

/// Links `guest` (a CNB buildpack path) to the buildpack's directory `dir`.
fn link_buildpack(dir: &std::path::Path, guest: &std::path::Path) -> Result<(), Error> {
    let failed = |source| Error::Prepare {
        path: guest.to_path_buf(),
        source,
    };
    if let Some(parent) = guest.parent() {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    std::os::unix::fs::symlink(dir, guest).map_err(failed)
}

pub(super) fn run_detect(prepared: &Prepared, runner: &Runner<'_>) -> Result<DetectOutcome, Error> {
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

pub(super) fn run_build(
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
    pub(super) fn untouched_app_source(&self) -> Option<String> {
        let (source, copy) = self.app_fingerprints.as_ref()?;
        (crate::fingerprint::tree(&self.work.app).ok().as_ref() == Some(copy))
            .then(|| source.clone())
    }

    /// The sandbox `group` builds in when its buildpacks need a toolchain the build image
    /// detection ran in lacks (`build-image-mixins`): the stack's build flavour that has it.
    /// `None` when detection's sandbox will do (host builds, `--build-image`, no toolchain).
    pub(super) fn build_sandbox(
        &self,
        store: &Store,
        options: &BuildOptions,
        group: &[GroupMember],
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<Option<BuildSandbox>, Error> {
        let mixins: BTreeSet<String> = group
            .iter()
            .flat_map(|m| m.buildpack.build_image_mixins())
            .collect();
        if let Some(info) = &self.builder {
            check_builder_has(info, options, &mixins, events)?;
            return Ok(None);
        }
        if options.build_environment != BuildEnvironment::Image
            || options.build_image.is_some()
            || mixins.is_empty()
        {
            return Ok(None);
        }
        let (rootfs, image) = build_rootfs(store, options, &mixins, events, cancel)?;
        if self.mounts.rootfs.as_ref() == Some(&rootfs) {
            return Ok(None);
        }
        let mut mounts = self.mounts.clone();
        mounts.rootfs = Some(rootfs);
        let sandbox = HostSandbox::prepare(&self.work.root.with_file_name("build-root"), &mounts)?;
        Ok(Some(BuildSandbox { sandbox, image }))
    }

    /// The runner for this build's buildpacks, in `sandbox` (else detection's).
    pub(super) fn runner<'a>(
        &'a self,
        sandbox: Option<&'a HostSandbox>,
        options: &'a BuildOptions,
        events: &'a dyn EventSink,
        cancel: &'a CancelToken,
    ) -> Runner<'a> {
        Runner {
            sandbox: sandbox.unwrap_or(&self.sandbox),
            user_env: &self.user_env,
            target: &self.target,
            exec_env: &options.exec_env,
            events,
            cancel,
        }
    }
}

/// In a builder image: the group's toolchain must be there. When it is, but a build
/// elsewhere would pick another build flavour, say that its image will differ.
fn check_builder_has(
    info: &crate::builder::BuilderInfo,
    options: &BuildOptions,
    mixins: &BTreeSet<String>,
    events: &dyn EventSink,
) -> Result<(), Error> {
    let mut wanted = mixins.clone();
    wanted.insert(crate::builder::BUILD_IMAGE_PACKAGE.to_string());
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(crate::image::TargetPlatform::host);
    let source = stack::StackSource::open(&options.stack)?;
    let best = stack::choose_flavour(&source, &platform.architecture, &wanted).ok();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| {
            !m.split('|')
                .any(|alt| info.packages.iter().any(|p| p == alt.trim()))
        })
        .collect();
    if !missing.is_empty() {
        let hint = best.map_or_else(String::new, |f| {
            format!(": use a builder made with `kiln builder create --flavour {f}`")
        });
        return Err(Error::InvalidOptions(format!(
            "the buildpacks need {} in their build image, which this builder image ({} {}) lacks{hint}",
            missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            info.stack,
            info.flavour
        )));
    }
    if let Some(best) = best.filter(|f| f.as_str() != info.flavour) {
        events.event(&Event::Warning(format!(
            "this builder image is {}'s {} flavour; a hermetic build elsewhere uses {best}, so its image digest differs from this one's (build with a builder made with `--flavour {best}` to get the same image)",
            info.stack, info.flavour
        )));
    }
    Ok(())
}

/// Catalog errors as the top-level error kiln has always given for them (exit codes unchanged).
fn catalog_error(error: crate::buildpack::catalog::CatalogError) -> Error {
    use crate::buildpack::catalog::CatalogError as E;
    match error {
        E::Buildpack(e) => Error::Buildpack(e),
        E::Builtin(e) => Error::Builtin(e),
        E::OrderAndBuildpacks => Error::InvalidOptions(E::OrderAndBuildpacks.to_string()),
        other => Error::Catalog(other),
    }
}

/// The environment buildpacks start from: the host's pass-through variables (in a build
/// image, only its proxy and package-index settings, see [`Env::for_build_image`]) and the
/// variables naming `--ca-certs`.
pub(super) fn base_env(options: &BuildOptions) -> Env {
    let host_env = options
        .host_env
        .clone()
        .unwrap_or_else(|| std::env::vars().collect());
    if options.build_environment == BuildEnvironment::Image {
        // The CA variables already name the bundle bound at Debian's path.
        return Env::for_build_image(host_env);
    }
    let mut base_env = Env::for_build(host_env);
    if let Some(ca) = &options.ca_certs {
        for var in crate::env::CA_VARIABLES {
            base_env.set(var, ca.display().to_string());
        }
    }
    base_env
}

/// Writes the build variables into `/platform/env` (one file per variable).
fn write_build_env(
    platform: &std::path::Path,
    vars: &BTreeMap<String, String>,
) -> Result<(), Error> {
    for (name, value) in vars {
        // Names come from project.toml (a source tree) or --env: each becomes a file name.
        if let Err(problem) = crate::untrusted::component(name, "build variable name")
            .map_err(|e| e.to_string())
            .and_then(|_| crate::env::check_var_name(name).map_err(str::to_string))
        {
            return Err(Error::InvalidOptions(format!(
                "{problem} (build variables come from --env, --env-file and project.toml's [[io.buildpacks.build.env]])"
            )));
        }
        let path = platform.join("env").join(name);
        fs::write(&path, value).map_err(|source| Error::Prepare { path, source })?;
    }
    Ok(())
}

/// The build image's root file system (`--build-image`, else the smallest flavour of the stack
/// with [`crate::builder::BUILD_IMAGE_PACKAGE`] and `mixins`, built into the store on first use, unpacked once
/// into the cache) and the image's `REFERENCE@digest`.
fn build_rootfs(
    store: &Store,
    options: &BuildOptions,
    mixins: &BTreeSet<String>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<(PathBuf, String), Error> {
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(crate::image::TargetPlatform::host);
    let reference = if let Some(reference) = &options.build_image {
        reference.clone()
    } else {
        let source = stack::StackSource::open(&options.stack)?;
        let mut wanted = mixins.clone();
        wanted.insert(crate::builder::BUILD_IMAGE_PACKAGE.to_string());
        let flavour = stack::choose_flavour(&source, &platform.architecture, &wanted).map_err(
            |e| match e {
                stack::StackError::NoFlavour { stack, flavours, .. } => {
                    Error::InvalidOptions(format!(
                        "stack {stack} has no build image with {} (a flavour with those packages; it has {}): give one with --build-image REF, or run the buildpacks with the host's tools with --build-env host",
                        wanted.iter().cloned().collect::<Vec<_>>().join(", "),
                        flavours.join(", ")
                    ))
                }
                other => other.into(),
            },
        )?;
        let name = stack::ensure_image(
            store,
            &source,
            &flavour,
            &platform.architecture,
            events,
            cancel,
        )?;
        crate::image::reference::ImageReference::Named(name)
    };
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| {
        Error::from(crate::buildenv::BuildEnvError::Image {
            reference: reference.to_string(),
            source,
        })
    };
    events.event(&Event::Step(format!("Build image: {reference}")));
    let image = crate::transport::fetch(
        &reference,
        store,
        &platform,
        &options.transports,
        events,
        cancel,
    )
    .map_err(|e| failed(Box::new(e)))?;
    let rootfs = crate::cache::rootfs::ensure(store, &image).map_err(|e| failed(Box::new(e)))?;
    let name = reference.to_string();
    // A reference by digest already says which image; others get theirs added.
    let built_by = match name.rsplit_once('@') {
        Some(_) => name,
        None => format!("{name}@{}", image.manifest_descriptor.digest()),
    };
    Ok((rootfs, built_by))
}
