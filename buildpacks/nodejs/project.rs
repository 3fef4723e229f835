//! What a Node.js app's files say: package manager, requested Node version, build script and
//! start command. Pure reads of the app directory, shared by detect and build.

use nodejs_semver::{Range, Version};
use serde_json::Value;

use crate::common::files::App;
use crate::common::process::shell;
use crate::common::{Error, Requested, Result};

/// The package manager that installs the dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Manager {
    /// npm (`package-lock.json`, `npm-shrinkwrap.json`, or no lockfile).
    Npm,
    /// Yarn 1 (`yarn.lock`).
    YarnClassic,
    /// Yarn 2+ (`yarn.lock` with `__metadata`, or `.yarnrc.yml`).
    YarnBerry,
    /// pnpm (`pnpm-lock.yaml`).
    Pnpm,
    /// Bun (`bun.lock`, `bun.lockb`).
    Bun,
}

impl Manager {
    /// The program that runs it.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::YarnClassic | Self::YarnBerry => "yarn",
            Self::Pnpm => "pnpm",
            Self::Bun => "bun",
        }
    }
}

/// Everything detect decides, recorded in the build plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Project {
    /// Which package manager.
    #[serde(rename = "package-manager")]
    pub(crate) manager: Manager,
    /// Its lockfile, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lockfile: Option<String>,
    /// The Node.js version asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) requested: Option<Requested>,
    /// Whether `package.json` exists (a lone `server.js` has nothing to install).
    #[serde(skip)]
    pub(crate) has_package_json: bool,
    /// Whether there are dependencies to install.
    #[serde(rename = "install")]
    pub(crate) install: bool,
    /// Whether a `build` script runs.
    #[serde(rename = "build-script")]
    pub(crate) build_script: bool,
    /// The default process's command.
    #[serde(skip)]
    pub(crate) command: Option<Vec<String>>,
    /// Where the start command came from.
    #[serde(rename = "start-reason", skip_serializing_if = "Option::is_none")]
    pub(crate) start_reason: Option<String>,
    /// The dependency sections of package.json, for the layer key.
    #[serde(skip)]
    pub(crate) dependency_json: String,
}

const LOCKFILES: &[(&str, Manager)] = &[
    ("package-lock.json", Manager::Npm),
    ("npm-shrinkwrap.json", Manager::Npm),
    ("yarn.lock", Manager::YarnClassic),
    ("pnpm-lock.yaml", Manager::Pnpm),
    ("bun.lock", Manager::Bun),
    ("bun.lockb", Manager::Bun),
];

fn is_berry(app: &App) -> Result<bool> {
    if app.is_file(".yarnrc.yml") {
        return Ok(true);
    }
    Ok(app
        .read("yarn.lock")?
        .is_some_and(|text| text.contains("__metadata:")))
}

fn manager_from_field(field: &str) -> Result<Manager> {
    let name = field.split('@').next().unwrap_or("");
    let major = field
        .split('@')
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match name {
        "npm" => Ok(Manager::Npm),
        "pnpm" => Ok(Manager::Pnpm),
        "bun" => Ok(Manager::Bun),
        "yarn" if major.is_some_and(|m| m >= 2) => Ok(Manager::YarnBerry),
        "yarn" => Ok(Manager::YarnClassic),
        other => Err(Error::new(format!(
            "package.json: packageManager names `{other}`, which is not npm, yarn, pnpm or bun"
        ))),
    }
}

fn same_family(a: Manager, b: Manager) -> bool {
    a.program() == b.program()
}

/// The package manager (from `packageManager`, else the lockfile, else npm) and its
/// lockfile. Lockfiles of different managers conflict unless `packageManager` decides.
fn choose_manager(app: &App, field: Option<&Value>) -> Result<(Manager, Option<String>)> {
    let locks: Vec<(&str, Manager)> = LOCKFILES
        .iter()
        .filter(|(f, _)| app.is_file(f))
        .map(|(f, m)| (*f, *m))
        .collect();
    let mut by_lock: Option<(&str, Manager)> = None;
    for (file, manager) in &locks {
        match by_lock {
            Some((other, m)) if !same_family(m, *manager) && field.is_none() => {
                return Err(Error::new(format!(
                    "conflicting lockfiles: {other} and {file} belong to different package managers"
                ))
                .hint("delete the one you do not use, or name the manager in package.json's \"packageManager\" field"));
            }
            Some(_) => {}
            None => by_lock = Some((file, *manager)),
        }
    }
    let manager = match field {
        Some(Value::String(field)) => manager_from_field(field)?,
        Some(_) => {
            return Err(Error::new(
                "package.json: packageManager must be a string like \"pnpm@9.1.0\"",
            ));
        }
        None => by_lock.map_or(Manager::Npm, |(_, m)| m),
    };
    let manager = if manager == Manager::YarnClassic && is_berry(app)? {
        Manager::YarnBerry
    } else {
        manager
    };
    let lockfile = locks
        .iter()
        .find(|(_, m)| same_family(*m, manager))
        .map(|(f, _)| (*f).to_string());
    Ok((manager, lockfile))
}

/// Reads the app. `None` when it is not a Node.js app.
pub(crate) fn analyze(app: &App) -> Result<Option<Project>> {
    let package = app.read_json("package.json")?;
    let entry = ["server.js", "index.js"]
        .into_iter()
        .find(|f| app.is_file(f));
    if package.is_none() && entry.is_none() {
        return Ok(None);
    }
    let package = match package {
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            return Err(Error::new("package.json is not a JSON object")
                .hint("package.json must be an object such as {\"name\": \"app\"}"));
        }
        None => None,
    };
    let get = |key: &str| package.as_ref().and_then(|p| p.get(key));

    let (manager, lockfile) = choose_manager(app, get("packageManager"))?;
    let requested = requested_version(app, get("engines"))?;
    let scripts = get("scripts").and_then(Value::as_object);
    let script = |name: &str| scripts.and_then(|s| s.get(name)).and_then(Value::as_str);
    let build_script = script("build").is_some_and(|s| !s.trim().is_empty());

    let sections = ["dependencies", "devDependencies", "optionalDependencies"];
    let install = sections.iter().any(|s| {
        get(s)
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty())
    });
    let dependency_json = serde_json::to_string(
        &sections
            .iter()
            .map(|s| get(s).cloned().unwrap_or(Value::Null))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();

    let (command, start_reason) =
        if let Some(start) = script("start").filter(|s| !s.trim().is_empty()) {
            (
                Some(start_command(start)),
                Some("package.json scripts.start".to_string()),
            )
        } else if let Some(main) = get("main")
            .and_then(Value::as_str)
            .filter(|m| app.is_file(m))
        {
            (
                Some(vec!["node".to_string(), main.to_string()]),
                Some("package.json main".to_string()),
            )
        } else if let Some(file) = ["server.js", "index.js", "app.js", "main.js"]
            .into_iter()
            .find(|f| app.is_file(f))
        {
            (
                Some(vec!["node".to_string(), file.to_string()]),
                Some(format!("{file} in the app root")),
            )
        } else {
            (None, None)
        };

    Ok(Some(Project {
        manager,
        lockfile,
        requested,
        has_package_json: package.is_some(),
        install,
        build_script,
        command,
        start_reason,
        dependency_json,
    }))
}

/// A start script as a command: `node file.js args` runs node directly; anything else runs
/// with `sh -c`, as `npm start` would (with `node_modules/.bin` on `PATH`).
fn start_command(script: &str) -> Vec<String> {
    let words: Vec<&str> = script.split_whitespace().collect();
    let simple = script.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '/' | '-' | '_' | '=' | ':' | ',')
    });
    if simple && words.first() == Some(&"node") {
        words.iter().map(ToString::to_string).collect()
    } else {
        shell(script)
    }
}

/// The Node.js version the app asks for: `engines.node`, else `.nvmrc`, else `.node-version`.
fn requested_version(app: &App, engines: Option<&Value>) -> Result<Option<Requested>> {
    if let Some(node) = engines.and_then(|e| e.get("node")).and_then(Value::as_str) {
        return Ok(Some(Requested {
            version: node.to_string(),
            source: "package.json engines.node".to_string(),
        }));
    }
    for file in [".nvmrc", ".node-version"] {
        if let Some(text) = app.read(file)?
            && let Some(line) = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .find(|l| !l.is_empty())
        {
            return Ok(Some(Requested {
                version: line.to_string(),
                source: file.to_string(),
            }));
        }
    }
    Ok(None)
}

/// Node.js LTS code names (`lts/hydrogen` in `.nvmrc`) and their major versions.
const LTS: &[(&str, u64)] = &[
    ("argon", 4),
    ("boron", 6),
    ("carbon", 8),
    ("dubnium", 10),
    ("erbium", 12),
    ("fermium", 14),
    ("gallium", 16),
    ("hydrogen", 18),
    ("iron", 20),
    ("jod", 22),
    ("krypton", 24),
];

/// Checks a request against the Node.js a run image provides (`18.20.4`). Ranges (engines)
/// must contain it; a plain version from `.nvmrc`/`.node-version` must match in major, and a
/// different minor or patch is a warning (returned).
pub(crate) fn check_version(requested: &Requested, provided: &str) -> Result<Option<String>> {
    let have = Version::parse(provided)
        .map_err(|e| Error::new(format!("cannot read Node.js version `{provided}`: {e}")))?;
    let wanted = requested.version.trim();
    let refuse = || {
        Error::new(format!(
            "Node.js {wanted} was requested ({}), but the run image provides Node.js {provided}",
            requested.source
        ))
        .hint(format!(
            "ask for Node.js {} in {} (the run image ships Debian's Node.js {provided}), or build on a run image with the Node.js you need (--run-image)",
            have.major(), requested.source
        ))
    };
    let lower = wanted.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "node" | "stable" | "latest" | "current" | "lts/*" | "lts"
    ) {
        return Ok(Some(format!(
            "{} asks for `{wanted}`; using Node.js {provided} from the run image",
            requested.source
        )));
    }
    if let Some(name) = lower.strip_prefix("lts/") {
        return match LTS.iter().find(|(n, _)| *n == name) {
            Some((_, major)) if *major == have.major() => Ok(None),
            Some(_) => Err(refuse()),
            None => Err(Error::new(format!(
                "{}: `{wanted}` is not a Node.js LTS line kiln knows",
                requested.source
            ))),
        };
    }
    let is_file = requested.source != "package.json engines.node";
    let bare = wanted.trim_start_matches('v');
    if is_file && bare.chars().all(|c| c.is_ascii_digit() || c == '.') && !bare.is_empty() {
        let parts: Vec<u64> = bare.split('.').filter_map(|p| p.parse().ok()).collect();
        if parts.first() != Some(&have.major()) {
            return Err(refuse());
        }
        let differs = parts.get(1).is_some_and(|m| *m != have.minor())
            || parts.get(2).is_some_and(|p| *p != have.patch());
        return Ok(differs.then(|| {
            format!(
                "Node.js {wanted} was requested ({}); using {provided}, Debian's release of the same major version",
                requested.source
            )
        }));
    }
    let range = Range::parse(wanted).map_err(|e| {
        Error::new(format!(
            "{}: `{wanted}` is not a valid version range: {e}",
            requested.source
        ))
    })?;
    if have.satisfies(&range) {
        Ok(None)
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::files::temp_app as app;

    #[test]
    fn managers() {
        let cases: &[(&[(&str, &str)], Manager)] = &[
            (&[("package.json", "{}")], Manager::Npm),
            (
                &[
                    ("package.json", "{}"),
                    ("yarn.lock", "# yarn lockfile v1\n"),
                ],
                Manager::YarnClassic,
            ),
            (
                &[
                    ("package.json", "{}"),
                    ("yarn.lock", "__metadata:\n  version: 8\n"),
                ],
                Manager::YarnBerry,
            ),
            (
                &[("package.json", "{}"), ("pnpm-lock.yaml", "")],
                Manager::Pnpm,
            ),
            (&[("package.json", "{}"), ("bun.lockb", "")], Manager::Bun),
            (
                &[
                    ("package.json", "{\"packageManager\": \"pnpm@9.1.0\"}"),
                    ("package-lock.json", "{}"),
                    ("yarn.lock", ""),
                ],
                Manager::Pnpm,
            ),
            (
                &[("package.json", "{\"packageManager\": \"yarn@4.1.0\"}")],
                Manager::YarnBerry,
            ),
        ];
        for (files, expected) in cases {
            let (_d, a) = app(files);
            assert_eq!(
                analyze(&a).unwrap().unwrap().manager,
                *expected,
                "{files:?}"
            );
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let (_d, a) = app(&[
            ("package.json", "{}"),
            ("package-lock.json", "{}"),
            ("yarn.lock", ""),
        ]);
        let err = analyze(&a).unwrap_err().to_string();
        assert!(
            err.contains("conflicting lockfiles: package-lock.json and yarn.lock"),
            "{err}"
        );
        let (_d, a) = app(&[("package.json", "{\"name\": \"x\",\n}")]);
        let err = analyze(&a).unwrap_err().to_string();
        assert!(err.contains("package.json is not valid JSON"), "{err}");
        let (_d, a) = app(&[("package.json", "[1]")]);
        assert!(
            analyze(&a)
                .unwrap_err()
                .to_string()
                .contains("not a JSON object")
        );
        let (_d, a) = app(&[("package.json", "{\"packageManager\": \"deno@1\"}")]);
        assert!(analyze(&a).is_err());
        let (_d, a) = app(&[("README.md", "")]);
        assert_eq!(analyze(&a).unwrap(), None);
    }

    #[test]
    fn start_commands() {
        let (_d, a) = app(&[(
            "package.json",
            r#"{"scripts": {"start": "node server.js --port=3000"}}"#,
        )]);
        assert_eq!(
            analyze(&a).unwrap().unwrap().command.unwrap(),
            ["node", "server.js", "--port=3000"]
        );
        let (_d, a) = app(&[(
            "package.json",
            r#"{"scripts": {"start": "next start -p $PORT"}}"#,
        )]);
        assert_eq!(
            analyze(&a).unwrap().unwrap().command.unwrap()[2],
            "exec next start -p $PORT"
        );
        let (_d, a) = app(&[
            ("package.json", r#"{"main": "lib/app.js"}"#),
            ("lib/app.js", ""),
        ]);
        assert_eq!(
            analyze(&a).unwrap().unwrap().command.unwrap(),
            ["node", "lib/app.js"]
        );
        let (_d, a) = app(&[("server.js", "")]);
        let p = analyze(&a).unwrap().unwrap();
        assert_eq!(p.command.unwrap(), ["node", "server.js"]);
        assert!(!p.has_package_json && !p.install);
    }

    #[test]
    fn versions() {
        let engines = "package.json engines.node";
        assert_eq!(
            check_version(&Requested::new(">=18", engines), "18.20.4").unwrap(),
            None
        );
        assert_eq!(
            check_version(&Requested::new("18.x", engines), "18.20.4").unwrap(),
            None
        );
        let err = check_version(&Requested::new(">=20", engines), "18.20.4")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Node.js >=20 was requested (package.json engines.node)"),
            "{err}"
        );
        assert!(err.contains("provides Node.js 18.20.4"), "{err}");
        assert_eq!(
            check_version(&Requested::new("18", ".nvmrc"), "18.20.4").unwrap(),
            None
        );
        assert!(
            check_version(&Requested::new("v18.19.0", ".nvmrc"), "18.20.4")
                .unwrap()
                .is_some()
        );
        assert!(check_version(&Requested::new("20", ".node-version"), "18.20.4").is_err());
        assert_eq!(
            check_version(&Requested::new("lts/hydrogen", ".nvmrc"), "18.20.4").unwrap(),
            None
        );
        assert!(check_version(&Requested::new("lts/iron", ".nvmrc"), "18.20.4").is_err());
        assert!(
            check_version(&Requested::new("lts/*", ".nvmrc"), "18.20.4")
                .unwrap()
                .is_some()
        );
        assert!(check_version(&Requested::new("not a range!", engines), "18.20.4").is_err());
    }
}
