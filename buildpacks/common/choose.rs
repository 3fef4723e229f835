//! Which kiln stack an app's requested runtimes need: when the app asks for a Python or
//! Node.js version that the stack it would build on lacks and another kiln stack has
//! (`.python-version` with `3.11` → bookworm), the platform builds on that stack instead.

use std::path::Path;

use super::files::App;
use super::inventory;
use super::{Requested, Result};

/// Another kiln stack for an app, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackChoice {
    /// The stack's name (`bookworm`).
    pub stack: String,
    /// Why, for the build log: `.python-version asks for Python 3.11 (trixie has Python
    /// 3.13.5, bookworm has Python 3.11.2)`.
    pub reason: String,
}

/// A runtime request of the app: what the run image must provide and how to check it.
struct Request {
    runtime: &'static str,
    package: &'static str,
    requested: Requested,
    check: fn(&Requested, &str) -> Result<Option<String>>,
}

/// The requests the built-in buildpacks that detect the app would check. A file they cannot
/// read counts as no request: detection reports it.
fn requests(app: &App) -> Vec<Request> {
    let mut requests = Vec::new();
    if let Ok(Some(project)) = crate::python::project::analyze(app, None)
        && let Some(requested) = project.requested
    {
        requests.push(Request {
            runtime: "Python",
            package: "python3",
            requested,
            check: crate::python::project::check_version,
        });
    }
    if let Ok(Some(project)) = crate::nodejs::project::analyze(app)
        && let Some(requested) = project.requested
    {
        requests.push(Request {
            runtime: "Node.js",
            package: "nodejs",
            requested,
            check: crate::nodejs::project::check_version,
        });
    }
    requests
}

/// The kiln stack to build the app in `app_dir` on instead of `stack`, for `arch`: `None`
/// when the app asks for no runtime version, when `stack` meets every request, when `stack`
/// is not a kiln stack, or when no kiln stack meets them all (detection then fails, naming
/// what is available). Of several that meet them, the newest distribution release.
pub fn stack_for_app(app_dir: &Path, stack: &str, arch: &str) -> Option<StackChoice> {
    let requests = requests(&App::new(app_dir));
    if requests.is_empty() {
        return None;
    }
    let version = |candidate: &str, package: &str| {
        inventory::stacks_providing(arch, package)
            .into_iter()
            .find(|(s, _)| *s == candidate)
            .map(|(_, v)| v)
    };
    let meets = |candidate: &str| {
        requests.iter().all(|r| {
            version(candidate, r.package).is_some_and(|v| (r.check)(&r.requested, &v).is_ok())
        })
    };
    let stacks = inventory::stacks_newest_first();
    if !stacks.contains(&stack) || meets(stack) {
        return None;
    }
    let chosen = stacks.into_iter().find(|s| meets(s))?;
    let reason = requests
        .iter()
        .map(|r| {
            let has = |s: &str| {
                version(s, r.package).map_or_else(
                    || format!("{s} has no {}", r.runtime),
                    |v| format!("{s} has {} {v}", r.runtime),
                )
            };
            format!(
                "{} asks for {} {} ({}, {})",
                r.requested.source,
                r.runtime,
                r.requested.version,
                has(stack),
                has(chosen)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(StackChoice {
        stack: chosen.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_python_version_only_another_stack_has_chooses_that_stack() {
        let flask = ("requirements.txt", "flask\n");
        for (request, from, expected) in [
            (".python-version", "3.11\n", Some("bookworm")),
            ("runtime.txt", "python-3.11.9\n", Some("bookworm")),
            (".python-version", "3.13\n", None),
            // No kiln stack has it: detection says so.
            (".python-version", "3.9\n", None),
        ] {
            let dir = app(&[flask, (request, from)]);
            let choice = stack_for_app(dir.path(), "trixie", "amd64");
            assert_eq!(
                choice.as_ref().map(|c| c.stack.as_str()),
                expected,
                "{request} {from}"
            );
        }
        let dir = app(&[
            flask,
            (
                "pyproject.toml",
                "[project]\nname = \"a\"\nversion = \"1\"\nrequires-python = \">=3.10,<3.12\"\n",
            ),
        ]);
        let choice = stack_for_app(dir.path(), "trixie", "arm64").unwrap();
        assert_eq!(choice.stack, "bookworm");
        assert!(
            choice.reason.starts_with(
                "pyproject.toml requires-python asks for Python >=3.10,<3.12 (trixie has Python 3.13."
            ) && choice.reason.contains("bookworm has Python 3.11."),
            "{}",
            choice.reason
        );
        // The other way round, and nothing asked for.
        let dir = app(&[flask, (".python-version", "3.13")]);
        assert_eq!(
            stack_for_app(dir.path(), "bookworm", "amd64")
                .unwrap()
                .stack,
            "trixie"
        );
        assert_eq!(stack_for_app(app(&[flask]).path(), "trixie", "amd64"), None);
        // A stack kiln has no inventory for (a stack directory of the user's) is left alone.
        let dir = app(&[flask, (".python-version", "3.11")]);
        assert_eq!(stack_for_app(dir.path(), "mystack", "amd64"), None);
    }

    #[test]
    fn a_node_engines_range_only_another_stack_meets_chooses_that_stack() {
        let package = |engines: &str| {
            app(&[(
                "package.json",
                &format!("{{\"name\": \"a\", \"engines\": {{\"node\": \"{engines}\"}}}}"),
            )])
        };
        let choice = stack_for_app(package("18.x").path(), "trixie", "amd64").unwrap();
        assert_eq!(choice.stack, "bookworm");
        assert!(
            choice.reason.starts_with(
                "package.json engines.node asks for Node.js 18.x (trixie has Node.js 20."
            ),
            "{}",
            choice.reason
        );
        assert_eq!(
            stack_for_app(package(">=18").path(), "trixie", "amd64"),
            None
        );
        assert_eq!(
            stack_for_app(package(">=22").path(), "trixie", "amd64"),
            None
        );
    }
}
