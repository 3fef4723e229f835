//! What a build is asked to do: [`BuildOptions`] and the buildpack selection.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::buildenv::BuildEnvironment;
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::launch::ProcessType;
use crate::transport::publish::Destination;

pub use crate::buildpack::catalog::{BuildpackRef, BuildpackSelection};

/// The stack default run images come from.
pub const DEFAULT_STACK: &str = "bookworm";

/// Options for [`build()`](super::build()) and [`detect()`](super::detect()). `Default` gives an empty app path and `scratch`.
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
    /// Platform for multi-platform run images and `scratch` (default: the host's).
    pub platform: Option<TargetPlatform>,
    /// Where the image goes.
    pub destination: Option<Destination>,
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
    /// A cache image (see [`crate::cache::image`]) read before and written after the build.
    pub cache_image: Option<ImageReference>,
    /// How registries and the Docker daemon are reached (run images, destinations).
    pub transports: crate::transport::Transports,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            app_dir: PathBuf::new(),
            buildpacks: BuildpackSelection::default(),
            run_image: None,
            stack: DEFAULT_STACK.to_string(),
            platform: None,
            destination: None,
            env: BTreeMap::new(),
            process: None,
            source_date_epoch: None,
            exec_env: "production".to_string(),
            build_environment: BuildEnvironment::default(),
            host_env: None,
            kiln_executable: None,
            clear_cache: false,
            rebuild: false,
            cache_image: None,
            transports: crate::transport::Transports::default(),
        }
    }
}
