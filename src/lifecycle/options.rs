//! What a build is asked to do: [`BuildOptions`] and the buildpack selection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::buildenv::BuildEnvironment;
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::launch::ProcessType;
use crate::transport::publish::Destination;
use crate::untrusted::{Links, MAX_METADATA, ReadError};

pub use crate::buildpack::catalog::{BuildpackRef, BuildpackSelection};

/// The stack default run images and build images come from (Debian 13). An app that asks for
/// a runtime version only another built-in stack has builds on that one (see
/// [`BuildOptions::auto_stack`]).
pub const DEFAULT_STACK: &str = "trixie";

/// What [`build()`](super::build()) and [`detect()`](super::detect()) are asked to do.
///
/// What a build cannot do without is taken by the constructors: [`BuildOptions::new`] for a
/// build (the app's directory and where the image goes), [`BuildOptions::for_detect`] for a
/// detection, which publishes nothing and so has no destination. Everything else is an
/// optional public field with a working default, set after construction (the struct is
/// `#[non_exhaustive]`, so a new option is never a breaking change):
///
/// ```
/// use kiln::{BuildOptions, BuildpackRef, Destination};
///
/// let mut options = BuildOptions::new("my-app", Destination::Store("my-app:1".parse()?));
/// options.buildpacks.buildpacks.push(BuildpackRef::parse("kiln/procfile"));
/// options.env.insert("PORT".into(), "9000".into());
/// assert_eq!(options.stack, kiln::DEFAULT_STACK);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The app's source directory.
    pub app_dir: PathBuf,
    /// Buildpacks.
    pub buildpacks: BuildpackSelection,
    /// The run image; `None` picks a flavour of [`BuildOptions::stack`] by what the
    /// detected buildpacks need (see the README, "Run images").
    pub run_image: Option<ImageReference>,
    /// The stack (built-in name or directory) default run images come from.
    pub stack: String,
    /// Whether kiln may build on another built-in stack than [`BuildOptions::stack`] when
    /// the app asks for a Python or Node.js version (`.python-version`, `engines.node`, …)
    /// that only the other stack's images provide (default `true`; the build log says so).
    /// `kiln build --stack` turns it off: a stack the user names always wins. It never
    /// applies with a [`BuildOptions::run_image`] or [`BuildOptions::build_image`].
    pub auto_stack: bool,
    /// Platform for multi-platform run images and `scratch` (default: the host's).
    pub platform: Option<TargetPlatform>,
    /// Where the image goes: set by [`BuildOptions::new`], `None` for options made by
    /// [`BuildOptions::for_detect`] (which [`build()`](super::build()) refuses). Read it with
    /// [`BuildOptions::destination`].
    pub(crate) destination: Option<Destination>,
    /// User environment variables for buildpacks (`--env`), on top of `project.toml`'s.
    pub env: BTreeMap<String, String>,
    /// Process type to make the default, overriding the buildpacks' choice.
    pub process: Option<ProcessType>,
    /// `SOURCE_DATE_EPOCH` for the image's `created` time.
    pub source_date_epoch: Option<i64>,
    /// `CNB_EXEC_ENV` (default `production`).
    pub exec_env: String,
    /// How buildpacks run.
    pub build_environment: BuildEnvironment,
    /// The build image of [`BuildEnvironment::Image`] (`--build-image`); `None` means the
    /// `build` flavour of [`BuildOptions::stack`], built on first use.
    pub build_image: Option<ImageReference>,
    /// A CA bundle buildpacks trust instead of the host's (`--ca-certs FILE`): bound at
    /// `/etc/ssl/certs/ca-certificates.crt` in a build image, and named by `SSL_CERT_FILE`,
    /// `REQUESTS_CA_BUNDLE`, `PIP_CERT`, `NODE_EXTRA_CA_CERTS`, `CURL_CA_BUNDLE` and
    /// `GIT_SSL_CAINFO` in both environments.
    pub ca_certs: Option<PathBuf>,
    /// The environment buildpacks inherit from (filtered to the lifecycle's pass-through
    /// list). `None` means kiln's own process environment.
    pub host_env: Option<Vec<(String, String)>>,
    /// The executable that runs the built-in buildpacks (see [`crate::buildpack::builtin`]). `None`
    /// means the running program, which must then call [`crate::buildpack::builtin::run_if_invoked`]
    /// first thing in `main`, as the `kiln` binary does.
    pub kiln_executable: Option<PathBuf>,
    /// Build without restoring the image's layer cache (it is still saved afterwards).
    pub clear_cache: bool,
    /// Run the buildpacks even when nothing changed since the last build of the destination.
    pub rebuild: bool,
    /// A cache image (see `--cache-image`) read before and written after the build.
    pub cache_image: Option<ImageReference>,
    /// How registries and the Docker daemon are reached (run images, destinations).
    pub transports: crate::transport::Transports,
}

impl BuildOptions {
    /// Options to build the app in `app_dir` into an image published to `destination`, with
    /// every other option at its default: kiln's built-in buildpack order, the run image of
    /// the [`DEFAULT_STACK`] flavour the buildpacks need, the host's platform, the
    /// `production` exec environment, the layer cache restored, the buildpacks skipped when
    /// nothing changed since the last build of `destination`.
    pub fn new(app_dir: impl Into<PathBuf>, destination: Destination) -> Self {
        Self::with(app_dir.into(), Some(destination))
    }

    /// Options to run [`detect()`](super::detect()) on the app in `app_dir` (as `kiln
    /// detect` does): detection publishes nothing, so there is no destination, and
    /// [`build()`](super::build()) refuses these options with [`Error::InvalidOptions`](crate::Error::InvalidOptions).
    /// The other defaults are those of [`BuildOptions::new`].
    pub fn for_detect(app_dir: impl Into<PathBuf>) -> Self {
        Self::with(app_dir.into(), None)
    }

    /// Where the image goes (`None` for options made by [`BuildOptions::for_detect`]).
    pub fn destination(&self) -> Option<&Destination> {
        self.destination.as_ref()
    }

    fn with(app_dir: PathBuf, destination: Option<Destination>) -> Self {
        Self {
            app_dir,
            buildpacks: BuildpackSelection::default(),
            run_image: None,
            stack: DEFAULT_STACK.to_string(),
            auto_stack: true,
            platform: None,
            destination,
            env: BTreeMap::new(),
            process: None,
            source_date_epoch: None,
            exec_env: "production".to_string(),
            build_environment: BuildEnvironment::default(),
            build_image: None,
            ca_certs: None,
            host_env: None,
            kiln_executable: None,
            clear_cache: false,
            rebuild: false,
            cache_image: None,
            transports: crate::transport::Transports::default(),
        }
    }
}

/// Reads a file of `NAME=VALUE` lines meant for [`BuildOptions::env`] (`kiln build
/// --env-file`) the way kiln reads every file it is handed: a regular file (a link is
/// followed) of UTF-8 text, at most 1 MiB. Parsing the lines is the caller's.
pub fn read_env_file(path: &Path) -> Result<String, ReadError> {
    crate::untrusted::read_text(path, MAX_METADATA, Links::Follow)
}
