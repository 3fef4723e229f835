//! What the built-in buildpacks share: their error type, running build tools, reading the
//! app's files, the stacks' runtime inventory, plan decisions and processes.

pub(crate) mod choose;
pub(crate) mod cmd;
pub(crate) mod download;
pub(crate) mod files;
pub(crate) mod hints;
pub(crate) mod inventory;
pub(crate) mod layers;
pub(crate) mod process;
pub(crate) mod untar;

use std::fmt;

use libcnb::data::build_plan::{BuildPlanBuilder, Require};
use libcnb::detect::{DetectResult, DetectResultBuilder};

/// A buildpack failure: what went wrong (naming the file or tool) and how to fix it.
#[derive(Debug)]
pub(crate) struct Error {
    message: String,
    hint: Option<String>,
}

impl Error {
    /// An error with this message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds how to fix it.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Puts what was being done before the message (`cannot list …: <message>`).
    pub(crate) fn context(mut self, outer: impl std::fmt::Display) -> Self {
        self.message = format!("{outer}: {}", self.message);
        self
    }

    /// Adds a fact to the message, after it (`…; <more>`).
    pub(crate) fn detail(mut self, more: impl std::fmt::Display) -> Self {
        self.message = format!("{}; {more}", self.message);
        self
    }

    /// Adds another way to fix it, after the hint (`…; or …`).
    pub(crate) fn or_hint(mut self, more: impl Into<String>) -> Self {
        let more = more.into();
        self.hint = Some(match self.hint.take() {
            Some(hint) => format!("{hint}; or {more}"),
            None => more,
        });
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl From<Error> for libcnb::Error<Error> {
    fn from(error: Error) -> Self {
        Self::BuildpackError(error)
    }
}

/// `Result` of the buildpacks' own code.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// `Result` of `Buildpack::detect` and `Buildpack::build`.
pub(crate) type CnbResult<T> = libcnb::Result<T, Error>;

/// Prints a failure the way kiln shows errors: one `error:` line, then the hint. This is what
/// the platform shows the user, so no debug formatting.
pub(crate) fn report(error: &libcnb::Error<Error>) {
    match error {
        libcnb::Error::BuildpackError(e) => eprintln!("error: {e}"),
        other => eprintln!("error: {other}"),
    }
}

/// Implements `libcnb::Buildpack` for a unit struct by delegating to the `detect` and
/// `build` functions of the module, which take the libcnb contexts and return [`CnbResult`].
macro_rules! buildpack {
    ($name:ident) => {
        impl libcnb::Buildpack for $name {
            type Platform = libcnb::generic::GenericPlatform;
            type Metadata = libcnb::generic::GenericMetadata;
            type Error = $crate::common::Error;

            fn detect(
                &self,
                context: libcnb::detect::DetectContext<Self>,
            ) -> $crate::common::CnbResult<libcnb::detect::DetectResult> {
                detect(&context)
            }

            fn build(
                &self,
                context: libcnb::build::BuildContext<Self>,
            ) -> $crate::common::CnbResult<libcnb::build::BuildResult> {
                build(&context)
            }

            fn on_error(&self, error: libcnb::Error<Self::Error>) {
                $crate::common::report(&error);
            }
        }
    };
}
pub(crate) use buildpack;

/// libcnb treats `CNB_TARGET_DISTRO_NAME`/`_VERSION` as required, but the Buildpack API makes
/// them optional: a run image without distribution labels (`scratch`, a distroless image) has
/// none. Set them empty when the platform did not, before libcnb reads them.
pub(crate) fn target_defaults() {
    for name in ["CNB_TARGET_DISTRO_NAME", "CNB_TARGET_DISTRO_VERSION"] {
        if std::env::var_os(name).is_none() {
            // SAFETY: called at the very start of the process, before any other thread
            // exists, so nothing reads the environment concurrently.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(name, "");
            }
        }
    }
}

/// A runtime version the app asked for, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Requested {
    /// The request as written (`3.12`, `>=18 <21`).
    pub(crate) version: String,
    /// Where (`.python-version`, `package.json engines.node`).
    pub(crate) source: String,
}

/// Passes detection, providing and requiring `name` with the buildpack's `decisions` as the
/// requirement's metadata — what `kiln detect` shows (`start` becomes its "Start:").
pub(crate) fn pass<T: serde::Serialize>(name: &str, decisions: &T) -> CnbResult<DetectResult> {
    let mut require = Require::new(name);
    require
        .metadata(decisions)
        .map_err(|e| Error::new(format!("cannot record the plan: {e}")))?;
    DetectResultBuilder::pass()
        .build_plan(
            BuildPlanBuilder::new()
                .provides(name)
                .requires(require)
                .build(),
        )
        .build()
}

/// A user setting (`kiln build --env NAME=VALUE`) from the platform directory.
pub(crate) fn setting(env: &libcnb::Env, name: &str) -> Option<String> {
    env.get(name).map(|v| v.to_string_lossy().into_owned())
}

/// Checks a requested runtime version against the run image's (the stack package
/// `package`, called `runtime` in messages) with `check`: an error when it cannot be met (its
/// hint names the other kiln stacks that meet it), a warning when it is met loosely or
/// cannot be checked on this run image.
pub(crate) fn check_runtime(
    target: &libcnb::Target,
    requested: Option<&Requested>,
    package: &str,
    runtime: &str,
    check: fn(&Requested, &str) -> Result<Option<String>>,
) -> Result<Option<String>> {
    let Some(requested) = requested else {
        return Ok(None);
    };
    match inventory::provided(target, package) {
        Some(provided) => check(requested, &provided).map_err(|error| {
            let current = inventory::stack_of(target);
            let others: Vec<String> = inventory::stacks_providing(&target.arch, package)
                .into_iter()
                .filter(|(stack, version)| {
                    Some(*stack) != current && check(requested, version).is_ok()
                })
                .map(|(stack, version)| {
                    format!("build on kiln's {stack} stack, which has {runtime} {version} (--stack {stack})")
                })
                .collect();
            others.into_iter().fold(error, Error::or_hint)
        }),
        None => Ok(Some(format!(
            "{runtime} {} was requested ({}); kiln does not know the {runtime} of this run image ({}), so it must provide it",
            requested.version,
            requested.source,
            inventory::distro(target).unwrap_or_else(|| "no distribution".to_string())
        ))),
    }
}

#[cfg(test)]
impl Requested {
    /// A request, for tests.
    pub(crate) fn new(version: &str, source: &str) -> Self {
        Self {
            version: version.to_string(),
            source: source.to_string(),
        }
    }
}

/// Prints why detection failed: "no go.mod or main.go", from the `[metadata.kiln] detects`
/// list of the buildpack's `descriptor` (the list kiln also shows when nothing passes).
pub(crate) fn no_match(descriptor: &str) {
    let files = crate::detects(descriptor);
    let text = match files.as_slice() {
        [] => "nothing it recognises".to_string(),
        [one] => one.clone(),
        [most @ .., last] => format!("{} or {last}", most.join(", ")),
    };
    println!("no {text}");
}

/// Prints a section header in the build output.
pub(crate) fn section(title: &str) {
    println!("[{title}]");
}

/// Prints one line of build output under a section.
pub(crate) fn say(line: &str) {
    println!("  {line}");
}

/// Prints a warning in the build output.
pub(crate) fn warn(line: &str) {
    println!("  warning: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian(version: &str) -> libcnb::Target {
        libcnb::Target {
            os: "linux".into(),
            arch: "amd64".into(),
            arch_variant: None,
            distro_name: "debian".into(),
            distro_version: version.into(),
        }
    }

    #[test]
    fn a_runtime_the_run_image_lacks_names_the_stacks_that_have_it() {
        let python = |target: &libcnb::Target, version: &str| {
            check_runtime(
                target,
                Some(&Requested::new(version, ".python-version")),
                "python3",
                "Python",
                crate::python::project::check_version,
            )
        };
        let err = python(&debian("13"), "3.11").unwrap_err().to_string();
        assert!(
            err.contains("provides Python 3.13")
                && err.contains("kiln's bookworm stack, which has Python 3.11")
                && err.contains("--stack bookworm")
                && !err.contains("--stack trixie"),
            "{err}"
        );
        let err = python(&debian("12"), "3.13").unwrap_err().to_string();
        assert!(err.contains("--stack trixie"), "{err}");
        // No kiln stack has it: only the usual hint.
        let err = python(&debian("13"), "3.9").unwrap_err().to_string();
        assert!(!err.contains("--stack"), "{err}");
        assert_eq!(python(&debian("13"), "3.13").unwrap(), None);

        let node = check_runtime(
            &debian("13"),
            Some(&Requested::new("18.x", "package.json engines.node")),
            "nodejs",
            "Node.js",
            crate::nodejs::project::check_version,
        )
        .unwrap_err()
        .to_string();
        assert!(node.contains("--stack bookworm"), "{node}");
    }
}
