//! Before detection: the build's scratch directories, its buildpacks, the run image when one
//! is given (the analyze phase), the copy of the source, the build variables and the sandbox
//! buildpacks run in.

use std::collections::BTreeMap;
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
}

impl WorkDir {
    pub(super) fn new(store: &Store) -> Result<Self, Error> {
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
    /// The build image buildpacks run in, `REFERENCE@digest` (`--build-env image`).
    pub(super) build_image: Option<String>,
}

pub(super) fn prepare(
    store: &Store,
    options: &BuildOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
    timings: &mut Timings<'_>,
) -> Result<Prepared, Error> {
    let work = WorkDir::new(store)?;
    let exe = builtin::executable(options.kiln_executable.as_deref())?;
    // In a build image the built-in buildpacks run the kiln executable bound at /cnb/kiln.
    let hermetic = options.build_environment == BuildEnvironment::Image;
    let guest_exe = if hermetic {
        PathBuf::from(KILN_IN_IMAGE)
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
        mounts.files.push((ca.clone(), PathBuf::from(CA_BUNDLE)));
    }
    let mut build_image = None;
    if hermetic {
        let (rootfs, image) = build_rootfs(store, options, events, cancel)?;
        mounts.rootfs = Some(rootfs);
        build_image = Some(image);
        mounts
            .files
            .push((exe.clone(), PathBuf::from(KILN_IN_IMAGE)));
    }
    for buildpack in catalog.buildpacks() {
        mounts.dirs.push((
            buildpack.dir().to_path_buf(),
            buildpack_guest_dir(&buildpack.id().escaped(), buildpack.version()),
        ));
    }
    let sandbox = HostSandbox::prepare(&work.root, &mounts)?;
    let base_env = base_env(options, hermetic);
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
    })
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

    /// The runner for this build's buildpacks.
    pub(super) fn runner<'a>(
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

/// The environment buildpacks start from: the host's pass-through variables, `HOME` in a
/// build image, and the variables naming `--ca-certs`.
fn base_env(options: &BuildOptions, hermetic: bool) -> Env {
    let host_env = options
        .host_env
        .clone()
        .unwrap_or_else(|| std::env::vars().collect());
    let mut base_env = Env::for_build(host_env);
    if hermetic {
        // The host's home is not there; the fresh /tmp is the one writable place.
        base_env.set("HOME", "/tmp");
    }
    if let Some(ca) = &options.ca_certs {
        let seen = if hermetic {
            CA_BUNDLE.to_string()
        } else {
            ca.display().to_string()
        };
        for var in CA_VARIABLES {
            base_env.set(var, seen.clone());
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

/// Where a build image's CA bundle is (Debian's place).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The variables that name a CA bundle for the tools buildpacks run.
const CA_VARIABLES: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Where the kiln executable is in a build image's sandbox.
const KILN_IN_IMAGE: &str = "/cnb/kiln";

/// The build image's root file system (`--build-image`, else the `build` flavour of the
/// stack, built into the store on first use, unpacked once into the cache) and the image's
/// `REFERENCE@digest`.
fn build_rootfs(
    store: &Store,
    options: &BuildOptions,
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
        let flavour: crate::stack::definition::FlavourName =
            "build"
                .parse()
                .map_err(|e: crate::stack::definition::InvalidName| {
                    Error::InvalidOptions(e.to_string())
                })?;
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
