//! Buildpacks: directories with a `buildpack.toml`, run through the CNB Buildpack API.
//!
//! kiln supports Buildpack API 0.10, 0.11 and 0.12. A component buildpack has `bin/detect`
//! and `bin/build`; a composite buildpack has an `[[order]]` of other buildpacks, which are
//! looked up in a [`Catalog`].

pub mod builtin;
pub mod catalog;
pub mod descriptor;
pub(crate) mod exec;
pub mod order;
pub mod target;

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use self::descriptor::{BuildpackDescriptor, Distro, Target};
pub use crate::buildpack_id::{
    BuildpackId, BuildpackIdError, VersionedBuildpackId, VersionedBuildpackIdError,
};

/// Buildpack API versions kiln runs, oldest first.
pub const SUPPORTED_APIS: [BuildpackApi; 3] = [
    BuildpackApi::new(0, 10),
    BuildpackApi::new(0, 11),
    BuildpackApi::new(0, 12),
];

/// Errors loading buildpacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildpackError {
    /// `buildpack.toml` could not be read.
    #[error("failed to read {path}; a buildpack directory must contain buildpack.toml")]
    ReadDescriptor {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `buildpack.toml` is not valid TOML or lacks required keys.
    #[error("{path} is not a valid buildpack descriptor: {problem}")]
    ParseDescriptor {
        /// The file.
        path: PathBuf,
        /// Where and what (line and column; the file is never quoted).
        problem: String,
    },
    /// A field of `buildpack.toml` is invalid.
    #[error("{path}: {problem}")]
    InvalidDescriptor {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The buildpack implements a Buildpack API kiln does not run.
    #[error(
        "buildpack {id} ({path}) declares Buildpack API {api}, which kiln does not support; supported: {}",
        supported_list()
    )]
    UnsupportedApi {
        /// The buildpack.
        id: String,
        /// The declared API.
        api: String,
        /// Its descriptor.
        path: PathBuf,
    },
    /// A component buildpack lacks `bin/detect` or `bin/build`, or it isn't executable.
    #[error("buildpack {id}: {path} {problem}")]
    BadExecutable {
        /// The buildpack.
        id: String,
        /// The executable's path.
        path: PathBuf,
        /// "is missing" / "is not executable (run chmod +x on it)".
        problem: &'static str,
    },
    /// A group references a buildpack that is not in the catalog.
    #[error("buildpack {reference} not found; known buildpacks: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NotFound {
        /// `id` or `id@version`.
        reference: String,
        /// What the catalog holds.
        known: Vec<String>,
    },
    /// A group references a buildpack by id only, and several versions are known.
    #[error("buildpack {id} is ambiguous: versions {} are known; give a version", versions.join(", "))]
    Ambiguous {
        /// The id.
        id: String,
        /// The known versions.
        versions: Vec<String>,
    },
    /// Two different directories hold the same buildpack id and version.
    #[error("buildpack {id}@{version} is defined twice: {} and {}", first.display(), second.display())]
    Duplicate {
        /// The id.
        id: String,
        /// The version.
        version: String,
        /// One directory.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// Composite buildpacks include each other in a cycle.
    #[error("composite buildpacks form a cycle: {}", chain.join(" -> "))]
    Cycle {
        /// The chain of ids.
        chain: Vec<String>,
    },
    /// A directory given as a buildpack does not exist.
    #[error("buildpack directory {path} does not exist")]
    MissingDirectory {
        /// The directory.
        path: PathBuf,
    },
}

fn supported_list() -> String {
    SUPPORTED_APIS
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Buildpack API version, `<major>.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildpackApi {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl BuildpackApi {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Whether kiln runs buildpacks of this API.
    pub fn is_supported(self) -> bool {
        SUPPORTED_APIS.contains(&self)
    }
}

impl FromStr for BuildpackApi {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
        Ok(Self {
            major: major.parse().map_err(|_| ())?,
            minor: minor.parse().map_err(|_| ())?,
        })
    }
}

impl fmt::Display for BuildpackApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A loaded, validated buildpack directory.
#[derive(Debug, Clone)]
pub struct Buildpack {
    dir: PathBuf,
    id: BuildpackId,
    api: BuildpackApi,
    descriptor: BuildpackDescriptor,
    targets: Vec<Target>,
}

impl Buildpack {
    /// Loads and validates the buildpack in `dir`.
    pub fn load(dir: &Path) -> Result<Self, BuildpackError> {
        if !dir.is_dir() {
            return Err(BuildpackError::MissingDirectory {
                path: dir.to_path_buf(),
            });
        }
        let dir = fs::canonicalize(dir).map_err(|source| BuildpackError::ReadDescriptor {
            path: dir.join("buildpack.toml"),
            source,
        })?;
        let path = dir.join("buildpack.toml");
        // The directory may come from the source tree (`--buildpack ./bp`): bounded, never
        // blocking on a FIFO, and never quoted in errors (a link to a secret would show).
        let text = crate::untrusted::read_text(
            &path,
            crate::untrusted::MAX_METADATA,
            crate::untrusted::Links::Follow,
        )
        .map_err(|e| match e {
            crate::untrusted::ReadError::Io { path, source } => {
                BuildpackError::ReadDescriptor { path, source }
            }
            other => BuildpackError::InvalidDescriptor {
                path: path.clone(),
                problem: crate::env::read_problem(&other),
            },
        })?;
        let descriptor: BuildpackDescriptor =
            toml::from_str(&text).map_err(|e| BuildpackError::ParseDescriptor {
                path: path.clone(),
                problem: crate::untrusted::toml_problem(&text, &e),
            })?;
        let id: BuildpackId =
            descriptor
                .buildpack
                .id
                .parse()
                .map_err(
                    |problem: BuildpackIdError| BuildpackError::InvalidDescriptor {
                        path: path.clone(),
                        problem: problem.to_string(),
                    },
                )?;
        if descriptor.buildpack.version.trim().is_empty() {
            return Err(BuildpackError::InvalidDescriptor {
                path,
                problem: "[buildpack] version must not be empty".to_string(),
            });
        }
        // The version names a directory (`/cnb/buildpacks/<id>/<version>`): one component.
        if let Err(e) =
            crate::untrusted::component(&descriptor.buildpack.version, "[buildpack] version")
        {
            return Err(BuildpackError::InvalidDescriptor {
                path,
                problem: format!("{e} (a version such as 1.2.3)"),
            });
        }
        let api = descriptor
            .api
            .parse::<BuildpackApi>()
            .ok()
            .filter(|api| api.is_supported())
            .ok_or_else(|| BuildpackError::UnsupportedApi {
                id: id.to_string(),
                api: descriptor.api.clone(),
                path: path.clone(),
            })?;
        if descriptor.order.is_empty() {
            for name in ["detect", "build"] {
                let exe = dir.join("bin").join(name);
                // A link into `/cnb` (the platform's directory) resolves inside the build
                // environment only: kiln's built-ins in a build image point at /cnb/kiln.
                let in_platform_dir = fs::read_link(&exe).is_ok_and(|t| t.starts_with("/cnb/"));
                let problem = match fs::metadata(&exe) {
                    Err(_) if in_platform_dir => None,
                    Err(_) => Some("is missing"),
                    Ok(m) if !m.is_file() => Some("is not a file"),
                    Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                        Some("is not executable (run chmod +x on it)")
                    }
                    Ok(_) => None,
                };
                if let Some(problem) = problem {
                    return Err(BuildpackError::BadExecutable {
                        id: id.to_string(),
                        path: exe,
                        problem,
                    });
                }
            }
        }
        let targets = effective_targets(&descriptor, &dir);
        Ok(Self {
            dir,
            id,
            api,
            descriptor,
            targets,
        })
    }

    /// The buildpack's directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its ID.
    pub fn id(&self) -> &BuildpackId {
        &self.id
    }

    /// Its version.
    pub fn version(&self) -> &str {
        &self.descriptor.buildpack.version
    }

    /// The Buildpack API it implements.
    pub fn api(&self) -> BuildpackApi {
        self.api
    }

    /// Its homepage, if any.
    pub fn homepage(&self) -> Option<&str> {
        self.descriptor.buildpack.homepage.as_deref()
    }

    /// Whether user environment variables are hidden from it (`clear-env`).
    pub fn clear_env(&self) -> bool {
        self.descriptor.buildpack.clear_env
    }

    /// The parsed descriptor.
    pub fn descriptor(&self) -> &BuildpackDescriptor {
        &self.descriptor
    }

    /// Whether it is a composite buildpack (an `[[order]]`, no executables).
    pub fn is_composite(&self) -> bool {
        !self.descriptor.order.is_empty()
    }

    /// The targets it supports, after the lifecycle's inference: deprecated `[[stacks]]`
    /// `"*"` matches anything, the bionic stack maps to linux/amd64 Ubuntu 18.04, and a
    /// buildpack with no targets but a `bin/build` supports `linux`.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The execution environments it supports (Buildpack API ≥ 0.12; empty means all).
    pub fn exec_envs(&self) -> Vec<&str> {
        if self.api < BuildpackApi::new(0, 12) {
            return Vec::new();
        }
        self.descriptor
            .buildpack
            .exec_env
            .iter()
            .map(descriptor::ExecEnvEntry::name)
            .collect()
    }

    /// The Debian packages its launch layers need in the run image (CNB "mixins"), from
    /// `[metadata.kiln] run-image-mixins = [...]`. kiln picks the default run image by them.
    pub fn run_image_mixins(&self) -> Vec<String> {
        self.kiln_list("run-image-mixins")
    }

    /// The Debian packages it needs in the build image it runs in (a language toolchain),
    /// from `[metadata.kiln] build-image-mixins = [...]`. kiln picks the default build image
    /// by them.
    pub fn build_image_mixins(&self) -> Vec<String> {
        self.kiln_list("build-image-mixins")
    }

    /// The strings of the list `key` of `[metadata.kiln]`.
    fn kiln_list(&self, key: &str) -> Vec<String> {
        self.descriptor
            .metadata
            .get("kiln")
            .and_then(|k| k.get(key))
            .and_then(toml::Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Its id and version (`id@version` when displayed).
    pub fn reference(&self) -> VersionedBuildpackId {
        VersionedBuildpackId::new(self.id.clone(), self.version())
    }
}

fn effective_targets(descriptor: &BuildpackDescriptor, dir: &Path) -> Vec<Target> {
    if !descriptor.targets.is_empty() {
        return descriptor.targets.clone();
    }
    let mut targets = Vec::new();
    for stack in &descriptor.stacks {
        if stack.id == "io.buildpacks.stacks.bionic" {
            targets.push(Target {
                os: Some("linux".into()),
                arch: Some("amd64".into()),
                distros: vec![Distro {
                    name: "ubuntu".into(),
                    version: "18.04".into(),
                }],
                ..Target::default()
            });
        } else if stack.id == "*" {
            targets.push(Target::default());
        }
    }
    if targets.is_empty() && dir.join("bin").join("build").exists() {
        targets.push(Target {
            os: Some("linux".into()),
            ..Target::default()
        });
    }
    targets
}

/// Runs buildpack executables: the sandbox, and the parts of the CNB environment that every
/// `bin/detect` and `bin/build` of a build shares.
pub struct Runner<'a> {
    /// The sandbox buildpacks run in.
    pub sandbox: &'a crate::buildenv::HostSandbox,
    /// User variables (`--env`, `project.toml`), also in `/platform/env/`.
    pub user_env: &'a std::collections::BTreeMap<String, String>,
    /// The run image's platform (`CNB_TARGET_*`).
    pub target: &'a target::RunTarget,
    /// `CNB_EXEC_ENV` (`production` by default).
    pub exec_env: &'a str,
    /// Where events go.
    pub events: &'a dyn crate::event::EventSink,
    /// Cancellation.
    pub cancel: &'a crate::event::CancelToken,
}

impl Runner<'_> {
    /// A command running `bin/<executable>` of `buildpack` in `/workspace` with environment
    /// `env` (plus the user's variables unless the buildpack sets `clear-env`),
    /// `CNB_BUILDPACK_DIR`, `CNB_PLATFORM_DIR`, `CNB_TARGET_*` and, for Buildpack API 0.12,
    /// `CNB_EXEC_ENV`. Callers add the phase's arguments and variables.
    pub(crate) fn command(
        &self,
        buildpack: &Buildpack,
        executable: &str,
        env: &crate::env::Env,
    ) -> Result<std::process::Command, crate::buildenv::BuildEnvError> {
        use crate::buildenv::{APP_DIR, PLATFORM_DIR, buildpack_guest_dir, os_pairs};
        let guest_dir = buildpack_guest_dir(&buildpack.id().escaped(), buildpack.version());
        let env = if buildpack.clear_env() {
            env.clone()
        } else {
            env.with_user_env(self.user_env, &crate::env::BUILD_ROOT_DIRS)
        };
        let mut command = self
            .sandbox
            .command(&guest_dir.join("bin").join(executable), Path::new(APP_DIR))?;
        command
            .envs(os_pairs(env.iter()))
            .env("CNB_BUILDPACK_DIR", &guest_dir)
            .env("CNB_PLATFORM_DIR", PLATFORM_DIR)
            .envs(self.target.env_vars());
        if buildpack.api() >= BuildpackApi::new(0, 12) {
            command.env("CNB_EXEC_ENV", self.exec_env);
        }
        Ok(command)
    }
}

/// Where buildpacks are found by id and version: the directories given explicitly plus any
/// buildpacks found under search roots.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    buildpacks: Vec<Buildpack>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one buildpack directory and returns the loaded buildpack. Adding the same
    /// directory twice is harmless; the same id and version from two directories is an error.
    pub fn add_dir(&mut self, dir: &Path) -> Result<Buildpack, BuildpackError> {
        let buildpack = Buildpack::load(dir)?;
        self.insert(buildpack.clone())?;
        Ok(buildpack)
    }

    /// Adds every buildpack found up to three levels below `root` (so both `root/<bp>/` and
    /// the lifecycle's `root/<id>/<version>/` layouts work). Unreadable or invalid buildpacks
    /// found this way are errors, not silently skipped.
    pub fn add_search_root(&mut self, root: &Path) -> Result<usize, BuildpackError> {
        if !root.is_dir() {
            return Err(BuildpackError::MissingDirectory {
                path: root.to_path_buf(),
            });
        }
        let mut found = 0;
        let walker = walkdir::WalkDir::new(root)
            .min_depth(1)
            .max_depth(3)
            .sort_by_file_name();
        for entry in walker.into_iter().filter_map(Result::ok) {
            if entry.file_type().is_dir() && entry.path().join("buildpack.toml").is_file() {
                self.add_dir(entry.path())?;
                found += 1;
            }
        }
        Ok(found)
    }

    fn insert(&mut self, buildpack: Buildpack) -> Result<(), BuildpackError> {
        if let Some(existing) = self
            .buildpacks
            .iter()
            .find(|b| b.id == buildpack.id && b.version() == buildpack.version())
        {
            if existing.dir == buildpack.dir {
                return Ok(());
            }
            return Err(BuildpackError::Duplicate {
                id: buildpack.id.to_string(),
                version: buildpack.version().to_string(),
                first: existing.dir.clone(),
                second: buildpack.dir,
            });
        }
        self.buildpacks.push(buildpack);
        Ok(())
    }

    /// Finds `id` at `version` (or the only version of `id` when `version` is `None`).
    pub fn lookup(&self, id: &str, version: Option<&str>) -> Result<&Buildpack, BuildpackError> {
        let candidates: Vec<&Buildpack> = self
            .buildpacks
            .iter()
            .filter(|b| b.id.as_str() == id)
            .collect();
        let not_found = || BuildpackError::NotFound {
            reference: version.map_or_else(|| id.to_string(), |v| format!("{id}@{v}")),
            known: self
                .buildpacks
                .iter()
                .map(|b| b.reference().to_string())
                .collect(),
        };
        match version.filter(|v| !v.is_empty()) {
            Some(v) => candidates
                .into_iter()
                .find(|b| b.version() == v)
                .ok_or_else(not_found),
            None => match candidates.as_slice() {
                [] => Err(not_found()),
                [only] => Ok(only),
                many => Err(BuildpackError::Ambiguous {
                    id: id.to_string(),
                    versions: many.iter().map(|b| b.version().to_string()).collect(),
                }),
            },
        }
    }

    /// All buildpacks in the catalog.
    pub fn buildpacks(&self) -> &[Buildpack] {
        &self.buildpacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_parse_and_range() {
        assert_eq!("0.10".parse::<BuildpackApi>(), Ok(BuildpackApi::new(0, 10)));
        assert_eq!("1".parse::<BuildpackApi>(), Ok(BuildpackApi::new(1, 0)));
        assert!("x".parse::<BuildpackApi>().is_err());
        assert!(BuildpackApi::new(0, 12).is_supported());
        assert!(!BuildpackApi::new(0, 9).is_supported());
        assert!(!BuildpackApi::new(0, 13).is_supported());
        assert!(BuildpackApi::new(0, 9) < BuildpackApi::new(0, 10));
    }

    #[test]
    fn a_version_that_is_not_one_path_component_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        for name in ["detect", "build"] {
            let path = dir.path().join("bin").join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let write = |version: &str| {
            std::fs::write(
                dir.path().join("buildpack.toml"),
                format!("api = \"0.10\"\n[buildpack]\nid = \"test/v\"\nversion = \"{version}\"\n"),
            )
            .unwrap();
        };
        write("1.2.3");
        Buildpack::load(dir.path()).unwrap();
        for version in ["../../etc/x", "..", "1/2"] {
            write(version);
            let err = Buildpack::load(dir.path()).unwrap_err();
            assert!(
                matches!(err, BuildpackError::InvalidDescriptor { .. }),
                "{version}: {err}"
            );
        }
    }
}
