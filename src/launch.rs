//! `launch.toml`: the processes, labels and slices a buildpack contributes to the image.
//!
//! See [launch.toml](https://github.com/buildpacks/spec/blob/main/buildpack.md#launchtoml-toml).
//! For Buildpack API ≥ 0.9 (all APIs kiln runs) `command` is an array and every process is
//! *direct* (exec'd without a shell); the lifecycle rejects the old `direct` key, and so does
//! kiln.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process type: `[A-Za-z0-9._-]+`, but not `.` or `..` (it names the directory
/// `env.launch/<type>/` of a layer, so it must be one ordinary path component).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProcessType(String);

impl ProcessType {
    /// The type as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text that is not a [`ProcessType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid process type; use letters, digits, '.', '_' and '-'")]
pub struct InvalidProcessType {
    /// The text.
    pub text: String,
}

impl FromStr for ProcessType {
    type Err = InvalidProcessType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty()
            || s == "."
            || s == ".."
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(InvalidProcessType {
                text: s.to_string(),
            });
        }
        Ok(Self(s.to_string()))
    }
}

impl TryFrom<String> for ProcessType {
    type Error = InvalidProcessType;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ProcessType> for String {
    fn from(p: ProcessType) -> Self {
        p.0
    }
}

impl fmt::Display for ProcessType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A process the image can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Its type (`web`, `worker`, …).
    #[serde(rename = "type")]
    pub process_type: ProcessType,
    /// The command: the executable and the arguments that are always passed.
    pub command: Vec<String>,
    /// Default arguments, replaced by arguments given at `docker run`/`podman run`.
    pub args: Vec<String>,
    /// Working directory (absolute, inside the image).
    #[serde(rename = "working-dir")]
    pub working_dir: String,
    /// The buildpack that defined it.
    #[serde(rename = "buildpackID")]
    pub buildpack_id: String,
    /// Execution environments it applies to (empty means all).
    #[serde(rename = "exec-env", default, skip_serializing_if = "Vec::is_empty")]
    pub exec_env: Vec<String>,
}

/// A label a buildpack sets on the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Label {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// A slice: app paths that go into a layer of their own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Slice {
    /// Globs relative to the app directory (Go `filepath.Match` syntax).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// What one buildpack's `launch.toml` contributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchContribution {
    /// Its processes, in file order.
    pub processes: Vec<(Process, bool)>,
    /// Its labels.
    pub labels: Vec<Label>,
    /// Its slices.
    pub slices: Vec<Slice>,
}

#[derive(Deserialize)]
struct RawLaunch {
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    processes: Vec<RawProcess>,
    #[serde(default)]
    slices: Vec<Slice>,
}

#[derive(Deserialize)]
struct RawProcess {
    #[serde(rename = "type")]
    process_type: String,
    command: toml::Value,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    direct: Option<toml::Value>,
    #[serde(default)]
    default: bool,
    #[serde(default, rename = "working-dir")]
    working_dir: Option<String>,
    #[serde(default, rename = "exec-env")]
    exec_env: Vec<String>,
}

/// Why a `launch.toml` is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// Not TOML of the expected shape.
    #[error("{problem}")]
    Syntax {
        /// The problem, with the line it is on.
        problem: String,
    },
    /// A process type is not a valid name.
    #[error(transparent)]
    ProcessType(#[from] InvalidProcessType),
    /// `process.direct` is set.
    #[error(
        "process {process_type}: process.direct is not supported on this buildpack version; every process is direct"
    )]
    Direct {
        /// The process.
        process_type: ProcessType,
    },
    /// A command element is not a string.
    #[error("process {process_type}: command elements must be strings, found {found}")]
    CommandElement {
        /// The process.
        process_type: ProcessType,
        /// The element found.
        found: String,
    },
    /// The command is not an array.
    #[error(
        "process {process_type}: command must be an array of strings (Buildpack API 0.9 and later)"
    )]
    CommandNotArray {
        /// The process.
        process_type: ProcessType,
    },
    /// The command is empty.
    #[error("process {process_type}: command must not be empty")]
    EmptyCommand {
        /// The process.
        process_type: ProcessType,
    },
    /// Two processes are marked default.
    #[error("multiple default process types aren't allowed ({first} and {second})")]
    MultipleDefaults {
        /// The first default.
        first: ProcessType,
        /// The second.
        second: ProcessType,
    },
}

/// Parses `launch.toml` of buildpack `buildpack_id`. `app_dir` resolves relative
/// working directories.
///
/// # Errors
///
/// [`LaunchError`] describing the problem of invalid input.
pub fn parse_launch_toml(
    text: &str,
    buildpack_id: &str,
    app_dir: &Path,
) -> Result<LaunchContribution, LaunchError> {
    let raw: RawLaunch = toml::from_str(text).map_err(|e| LaunchError::Syntax {
        problem: crate::untrusted::toml_problem(text, &e),
    })?;
    let mut processes = Vec::new();
    let mut default_seen: Option<ProcessType> = None;
    for p in raw.processes {
        let process_type: ProcessType = p.process_type.parse().map_err(LaunchError::ProcessType)?;
        if p.direct.is_some() {
            return Err(LaunchError::Direct { process_type });
        }
        let command = match p.command {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    other => Err(LaunchError::CommandElement {
                        process_type: process_type.clone(),
                        found: other.to_string(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(LaunchError::CommandNotArray { process_type });
            }
        };
        if command.is_empty() {
            return Err(LaunchError::EmptyCommand { process_type });
        }
        if p.default {
            if let Some(other) = &default_seen {
                return Err(LaunchError::MultipleDefaults {
                    first: other.clone(),
                    second: process_type,
                });
            }
            default_seen = Some(process_type.clone());
        }
        let working_dir = match p.working_dir.filter(|w| !w.is_empty()) {
            Some(w) => app_dir.join(w).to_string_lossy().into_owned(),
            None => app_dir.to_string_lossy().into_owned(),
        };
        processes.push((
            Process {
                process_type,
                command,
                args: p.args,
                working_dir,
                buildpack_id: buildpack_id.to_string(),
                exec_env: p.exec_env,
            },
            p.default,
        ));
    }
    Ok(LaunchContribution {
        processes,
        labels: raw.labels,
        slices: raw.slices,
    })
}

/// The combined process list of a build, following the lifecycle's rules: a later
/// buildpack's process replaces an earlier one of the same type; the last `default = true`
/// wins; a non-default process that replaces the default type leaves the image without a
/// default.
#[derive(Debug, Clone, Default)]
pub struct Processes {
    by_type: std::collections::BTreeMap<ProcessType, Process>,
    default: Option<ProcessType>,
}

impl Processes {
    /// Adds one buildpack's processes; returns a warning if a default was overridden.
    pub fn add(&mut self, processes: Vec<(Process, bool)>) -> Option<String> {
        let mut warning = None;
        for (process, is_default) in processes {
            if is_default {
                self.default = Some(process.process_type.clone());
                warning = None;
            } else if self.default.as_ref() == Some(&process.process_type) {
                self.default = None;
                warning = Some(format!(
                    "redefining the default process type {} with a process not marked as default; the image has no default process",
                    process.process_type
                ));
            }
            self.by_type.insert(process.process_type.clone(), process);
        }
        warning
    }

    /// All processes, sorted by type.
    pub fn list(&self) -> Vec<Process> {
        self.by_type.values().cloned().collect()
    }

    /// The buildpack-chosen default process type.
    pub fn default_type(&self) -> Option<&ProcessType> {
        self.default.as_ref()
    }

    /// The process of `process_type`.
    pub fn get(&self, process_type: &ProcessType) -> Option<&Process> {
        self.by_type.get(process_type)
    }

    /// Drops processes whose `exec-env` excludes `exec_env`.
    pub fn retain_exec_env(&mut self, exec_env: &str) {
        self.by_type.retain(|_, p| {
            p.exec_env.is_empty() || p.exec_env.iter().any(|e| e == "*" || e == exec_env)
        });
        if let Some(d) = &self.default
            && !self.by_type.contains_key(d)
        {
            self.default = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LaunchContribution, LaunchError> {
        parse_launch_toml(text, "bp", Path::new("/workspace"))
    }

    #[test]
    fn parses_processes_labels_slices() {
        let c = parse(
            r#"
            [[labels]]
            key = "team"
            value = "x"
            [[processes]]
            type = "web"
            command = ["./server", "--fixed"]
            args = ["-p", "8080"]
            default = true
            working-dir = "sub"
            [[slices]]
            paths = ["static/*"]
            "#,
        )
        .unwrap();
        let (web, default) = &c.processes[0];
        assert!(default);
        assert_eq!(web.command, ["./server", "--fixed"]);
        assert_eq!(web.args, ["-p", "8080"]);
        assert_eq!(web.working_dir, "/workspace/sub");
        assert_eq!(c.labels[0].key, "team");
        assert_eq!(c.slices[0].paths, ["static/*"]);
    }

    #[test]
    fn rejects_what_the_lifecycle_rejects() {
        let cases = [
            (
                "[[processes]]\ntype = \"web\"\ncommand = \"run\"\n",
                "array",
            ),
            (
                "[[processes]]\ntype = \"web\"\ncommand = [\"x\"]\ndirect = true\n",
                "direct",
            ),
            (
                "[[processes]]\ntype = \"w b\"\ncommand = [\"x\"]\n",
                "process type",
            ),
            (
                "[[processes]]\ntype = \"a\"\ncommand = [\"x\"]\ndefault = true\n[[processes]]\ntype = \"b\"\ncommand = [\"x\"]\ndefault = true\n",
                "multiple default",
            ),
            ("[[processes]]\ntype = \"web\"\ncommand = []\n", "empty"),
            (
                "[[processes]]\ntype = \"..\"\ncommand = [\"x\"]\n",
                "process type",
            ),
            (
                "[[processes]]\ntype = \".\"\ncommand = [\"x\"]\n",
                "process type",
            ),
            ("processes = 3", "invalid type"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    fn proc(t: &str, bp: &str) -> Process {
        Process {
            process_type: t.parse().unwrap(),
            command: vec!["x".into()],
            args: vec![],
            working_dir: "/workspace".into(),
            buildpack_id: bp.into(),
            exec_env: vec![],
        }
    }

    #[test]
    fn later_buildpacks_override_and_defaults_follow_lifecycle() {
        let mut p = Processes::default();
        p.add(vec![(proc("web", "a"), true), (proc("worker", "a"), false)]);
        assert_eq!(p.default_type().unwrap().as_str(), "web");
        // A later non-default "web" removes the default.
        let warning = p.add(vec![(proc("web", "b"), false)]);
        assert!(warning.is_some());
        assert!(p.default_type().is_none());
        assert_eq!(p.get(&"web".parse().unwrap()).unwrap().buildpack_id, "b");
        p.add(vec![(proc("worker", "c"), true)]);
        assert_eq!(p.default_type().unwrap().as_str(), "worker");
        let types: Vec<_> = p.list().into_iter().map(|p| p.process_type.0).collect();
        assert_eq!(types, ["web", "worker"]);
    }
}
