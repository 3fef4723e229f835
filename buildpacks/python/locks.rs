//! Lockfiles turned into pip requirements: `poetry.lock` (the main group's dependency closure
//! with markers and hashes), `Pipfile.lock` (its `default` section) and an unlocked
//! `Pipfile`. pip then installs exactly the locked versions (`--no-deps`, hash-checked), which
//! is the environment Poetry or Pipenv would create.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::project::{normalize, requirement_name};
use crate::common::{Error, Result};

/// A dependency on `name` (with `extras`) under `marker`.
#[derive(Debug, Clone)]
struct Edge {
    name: String,
    marker: Option<String>,
    extras: Vec<String>,
}

/// The main dependencies: Poetry's own table or PEP 621's (development groups excluded).
fn roots(pyproject: &toml::Table) -> Vec<Edge> {
    let mut roots = Vec::new();
    if let Some(deps) = pyproject
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|t| t.get("dependencies"))
        .and_then(toml::Value::as_table)
    {
        for (name, spec) in deps {
            if name == "python" || spec.get("optional").and_then(toml::Value::as_bool) == Some(true)
            {
                continue;
            }
            roots.push(Edge {
                name: normalize(name),
                marker: spec
                    .get("markers")
                    .and_then(toml::Value::as_str)
                    .map(str::to_string),
                extras: string_list(spec.get("extras")),
            });
        }
    }
    if let Some(deps) = pyproject
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(toml::Value::as_array)
    {
        for dep in deps.iter().filter_map(toml::Value::as_str) {
            let (requirement, marker) = split_marker(dep);
            if let Some(name) = requirement_name(requirement) {
                roots.push(Edge {
                    name,
                    marker,
                    extras: extras_of(requirement),
                });
            }
        }
    }
    roots
}

/// A locked package's required dependencies.
fn dependency_edges(package: &toml::Table) -> Vec<Edge> {
    let mut edges = Vec::new();
    let Some(deps) = package.get("dependencies").and_then(toml::Value::as_table) else {
        return edges;
    };
    for (dep, spec) in deps {
        let specs: Vec<&toml::Value> = match spec {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for spec in specs {
            if spec.get("optional").and_then(toml::Value::as_bool) == Some(true) {
                continue;
            }
            edges.push(Edge {
                name: normalize(dep),
                marker: spec
                    .get("markers")
                    .and_then(toml::Value::as_str)
                    .map(str::to_string),
                extras: string_list(spec.get("extras")),
            });
        }
    }
    edges
}

/// The dependencies a package's `extra` adds.
fn extra_edges(package: &toml::Table, extra: &str) -> Vec<Edge> {
    let table = package.get("extras").and_then(toml::Value::as_table);
    string_list(table.and_then(|t| t.get(extra)))
        .iter()
        .filter_map(|entry| {
            let (requirement, marker) = split_marker(entry);
            Some(Edge {
                name: requirement_name(requirement)?,
                marker: marker.and_then(|m| without_extra(&m)),
                extras: extras_of(requirement),
            })
        })
        .collect()
}

/// One requirement line per locked package.
pub(crate) fn poetry(pyproject: &toml::Table, lock: &toml::Table) -> Result<Vec<String>> {
    let packages: BTreeMap<String, &toml::Table> = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
        .filter_map(|p| Some((normalize(p.get("name")?.as_str()?), p)))
        .collect();

    // Each reachable package's condition (None once any path to it is unconditional) and
    // the extras asked of it. Both only grow, so the walk ends.
    let mut conditions: BTreeMap<String, Condition> = BTreeMap::new();
    let mut extras_asked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut queue: VecDeque<Edge> = roots(pyproject).into();
    while let Some(edge) = queue.pop_front() {
        let Some(package) = packages.get(&edge.name) else {
            return Err(Error::new(format!(
                "poetry.lock has no entry for `{}`, which pyproject.toml or another locked package needs",
                edge.name
            ))
            .hint("run `poetry lock` and commit poetry.lock"));
        };
        let changed = conditions
            .entry(edge.name.clone())
            .or_default()
            .add(edge.marker.clone());
        let asked = extras_asked.entry(edge.name.clone()).or_default();
        let new_extras: Vec<String> = edge
            .extras
            .iter()
            .filter(|e| asked.insert((*e).clone()))
            .cloned()
            .collect();
        let expand: Vec<Edge> = if changed {
            let mut all = dependency_edges(package);
            for extra in asked.iter() {
                all.extend(extra_edges(package, extra));
            }
            all
        } else {
            new_extras
                .iter()
                .flat_map(|extra| extra_edges(package, extra))
                .collect()
        };
        let parent = conditions[&edge.name].expression();
        for child in expand {
            queue.push_back(Edge {
                marker: and(parent.as_deref(), child.marker.as_deref()),
                ..child
            });
        }
    }

    conditions
        .iter()
        .map(|(name, condition)| poetry_line(name, packages[name], condition))
        .collect()
}

/// The pinned, hash-checked requirement for one locked package.
fn poetry_line(name: &str, package: &toml::Table, condition: &Condition) -> Result<String> {
    if let Some(source) = package.get("source").and_then(toml::Value::as_table) {
        let kind = source
            .get("type")
            .and_then(toml::Value::as_str)
            .unwrap_or("");
        if kind != "legacy" {
            return Err(Error::new(format!(
                "poetry.lock installs `{name}` from a {kind} source, which kiln cannot install from the lock"
            ))
            .hint("publish the package to an index, or use requirements.txt for this app"));
        }
    }
    let version = package
        .get("version")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| Error::new(format!("poetry.lock: `{name}` has no version")))?;
    let hashes: Vec<String> = package
        .get("files")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("hash")?.as_str().map(str::to_string))
        .collect();
    Ok(requirement_line(
        name,
        version,
        condition.expression().as_deref(),
        &hashes,
    ))
}

/// `Pipfile.lock`'s `default` section as requirement lines.
pub(crate) fn pipfile_lock(lock: &serde_json::Value) -> Result<Vec<String>> {
    let default = lock
        .get("default")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| {
            Error::new("Pipfile.lock has no `default` section")
                .hint("run `pipenv lock` and commit Pipfile.lock")
        })?;
    let mut lines = Vec::new();
    for (name, entry) in default {
        let Some(version) = entry.get("version").and_then(serde_json::Value::as_str) else {
            return Err(Error::new(format!(
                "Pipfile.lock installs `{name}` from a path or VCS, which kiln cannot install from the lock"
            ))
            .hint("publish the package to an index, or use requirements.txt for this app"));
        };
        let version = version.trim_start_matches("==");
        let marker = entry.get("markers").and_then(serde_json::Value::as_str);
        let hashes: Vec<String> = entry
            .get("hashes")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect();
        lines.push(requirement_line(name, version, marker, &hashes));
    }
    Ok(lines)
}

/// An unlocked `Pipfile`'s `[packages]` as requirement lines (pip resolves them).
pub(crate) fn pipfile(pipfile: &toml::Table) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let Some(packages) = pipfile.get("packages").and_then(toml::Value::as_table) else {
        return Ok(lines);
    };
    for (name, spec) in packages {
        let line = match spec {
            toml::Value::String(version) if version == "*" => name.clone(),
            toml::Value::String(version) => format!("{name}{version}"),
            toml::Value::Table(t) => {
                if t.contains_key("git") || t.contains_key("path") || t.contains_key("file") {
                    return Err(Error::new(format!(
                        "Pipfile: `{name}` comes from a path or VCS, which kiln cannot install"
                    ))
                    .hint("publish the package to an index, or use requirements.txt"));
                }
                let extras = string_list(t.get("extras"));
                let version = t
                    .get("version")
                    .and_then(toml::Value::as_str)
                    .filter(|v| *v != "*")
                    .unwrap_or("");
                let extras = if extras.is_empty() {
                    String::new()
                } else {
                    format!("[{}]", extras.join(","))
                };
                let marker = t
                    .get("markers")
                    .and_then(toml::Value::as_str)
                    .map(|m| format!(" ; {m}"))
                    .unwrap_or_default();
                format!("{name}{extras}{version}{marker}")
            }
            other => {
                return Err(Error::new(format!(
                    "Pipfile: `{name} = {other}` is not a version or table"
                )));
            }
        };
        lines.push(line);
    }
    Ok(lines)
}

fn requirement_line(name: &str, version: &str, marker: Option<&str>, hashes: &[String]) -> String {
    let mut line = format!("{name}=={version}");
    if let Some(marker) = marker {
        line.push_str(" ; ");
        line.push_str(marker);
    }
    for hash in hashes {
        line.push_str(" --hash=");
        line.push_str(hash);
    }
    line
}

/// The conditions under which a package is needed.
#[derive(Debug, Default)]
struct Condition {
    /// `None` when needed unconditionally; else the alternatives.
    any_of: Option<BTreeSet<String>>,
    seen: bool,
}

/// Past this many alternatives a package is treated as always needed (installing a package
/// that is not needed is harmless; the expression stays readable).
const MAX_ALTERNATIVES: usize = 8;

impl Condition {
    /// Adds a path to the package; returns whether the condition became broader.
    fn add(&mut self, marker: Option<String>) -> bool {
        let first = !self.seen;
        self.seen = true;
        match marker {
            None => {
                let changed = first || self.any_of.is_some();
                self.any_of = None;
                changed
            }
            Some(m) => {
                if first {
                    self.any_of = Some(BTreeSet::from([m]));
                    return true;
                }
                match &mut self.any_of {
                    None => false,
                    Some(set) => {
                        let changed = set.insert(m);
                        if set.len() > MAX_ALTERNATIVES {
                            self.any_of = None;
                        }
                        changed
                    }
                }
            }
        }
    }

    fn expression(&self) -> Option<String> {
        let set = self.any_of.as_ref()?;
        Some(match set.len() {
            1 => set.iter().next().cloned().unwrap_or_default(),
            _ => set
                .iter()
                .map(|m| format!("({m})"))
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }
}

fn and(a: Option<&str>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
        (Some(x), Some(y)) => Some(format!("({x}) and ({y})")),
    }
}

fn string_list(value: Option<&toml::Value>) -> Vec<String> {
    value
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// A marker without its `extra == "…"` clauses, which only mean "when this extra is asked
/// for" (already decided here) and which pip would evaluate as false.
fn without_extra(marker: &str) -> Option<String> {
    let kept: Vec<&str> = marker
        .split(" and ")
        .map(str::trim)
        .filter(|clause| {
            !clause
                .trim_start_matches('(')
                .trim_start()
                .starts_with("extra ")
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(" and "))
}

/// `req ; marker` → (`req`, marker).
fn split_marker(dep: &str) -> (&str, Option<String>) {
    match dep.split_once(';') {
        Some((req, marker)) => (req.trim(), Some(marker.trim().to_string())),
        None => (dep.trim(), None),
    }
}

/// The extras of a requirement (`uvicorn[standard] (>=0.2)` → `["standard"]`).
fn extras_of(requirement: &str) -> Vec<String> {
    requirement
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(extras, _)| {
            extras
                .split(',')
                .map(normalize)
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poetry_closure_with_markers_extras_and_hashes() {
        let pyproject: toml::Table = toml::from_str(
            r#"
[tool.poetry.dependencies]
python = "^3.11"
flask = "^3.0"
uvicorn = { version = "*", extras = ["standard"] }
dev-only = { version = "*", optional = true }
[tool.poetry.group.dev.dependencies]
pytest = "*"
"#,
        )
        .unwrap();
        let lock: toml::Table = toml::from_str(
            r#"
[[package]]
name = "Flask"
version = "3.0.0"
files = [{file = "flask.whl", hash = "sha256:aa"}]
[package.dependencies]
click = ">=8"
colorama = {version = "*", markers = "platform_system == \"Windows\""}

[[package]]
name = "click"
version = "8.1.7"
files = []
[package.dependencies]
colorama = {version = "*", markers = "platform_system == \"Windows\""}

[[package]]
name = "colorama"
version = "0.4.6"
files = []

[[package]]
name = "uvicorn"
version = "0.30.0"
files = []
[package.extras]
standard = ["httptools (>=0.5.0) ; extra == \"standard\"", "uvloop ; sys_platform != \"win32\" and extra == \"standard\""]

[[package]]
name = "httptools"
version = "0.6.1"
files = []

[[package]]
name = "uvloop"
version = "0.19.0"
files = []

[[package]]
name = "pytest"
version = "8.0.0"
files = []
"#,
        )
        .unwrap();
        let lines = poetry(&pyproject, &lock).unwrap();
        assert_eq!(
            lines,
            [
                "click==8.1.7",
                "colorama==0.4.6 ; platform_system == \"Windows\"",
                "flask==3.0.0 --hash=sha256:aa",
                "httptools==0.6.1",
                "uvicorn==0.30.0",
                "uvloop==0.19.0 ; sys_platform != \"win32\"",
            ]
        );
    }

    #[test]
    fn poetry_lock_missing_a_package_is_an_error() {
        let pyproject: toml::Table =
            toml::from_str("[tool.poetry.dependencies]\nflask = \"*\"\n").unwrap();
        let lock: toml::Table = toml::from_str("package = []\n").unwrap();
        assert!(
            poetry(&pyproject, &lock)
                .unwrap_err()
                .to_string()
                .contains("`flask`")
        );
    }

    #[test]
    fn pipfile_lock_and_pipfile() {
        let lock = serde_json::json!({
            "default": {
                "flask": {"version": "==3.0.0", "hashes": ["sha256:aa"]},
                "pywin32": {"version": "==306", "markers": "sys_platform == 'win32'"}
            }
        });
        assert_eq!(
            pipfile_lock(&lock).unwrap(),
            [
                "flask==3.0.0 --hash=sha256:aa",
                "pywin32==306 ; sys_platform == 'win32'"
            ]
        );
        assert!(pipfile_lock(&serde_json::json!({})).is_err());
        let file: toml::Table = toml::from_str(
            "[packages]\nflask = \"*\"\nrequests = \">=2\"\nuvicorn = {version = \"*\", extras = [\"standard\"]}\n",
        )
        .unwrap();
        assert_eq!(
            pipfile(&file).unwrap(),
            ["flask", "requests>=2", "uvicorn[standard]"]
        );
    }
}
