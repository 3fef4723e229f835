//! What a Node.js app's files say: package manager, requested Node version, build script and
//! start command. Pure reads of the app directory, shared by detect and build.

use nodejs_semver::Version;
use serde_json::Value;

use super::registry::Expected;

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
    /// The exact version `packageManager` pins, if it does.
    #[serde(
        rename = "package-manager-version",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) pin: Option<Pin>,
    /// `engines.npm`: the npm to install beside a Node.js kiln installs.
    #[serde(skip)]
    pub(crate) npm_engine: Option<String>,
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

/// A package manager version pinned by `packageManager` (`pnpm@9.12.0+sha512.<hex>`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub(crate) struct Pin {
    /// The exact version.
    pub(crate) version: Version,
    /// The hash its tarball must have, when the field gives one.
    pub(crate) hash: Option<Expected>,
}

impl From<Pin> for String {
    fn from(pin: Pin) -> Self {
        pin.version.to_string()
    }
}

/// The pin of a `packageManager` field: `None` without a version (`"pnpm"`); an error for
/// a version that is not exact or a hash kiln cannot check.
fn parse_pin(field: &str) -> Result<Option<Pin>> {
    let Some((_, rest)) = field.split_once('@') else {
        return Ok(None);
    };
    let (version, hash) = match rest.split_once('+') {
        Some((v, h)) => (v, Some(h)),
        None => (rest, None),
    };
    let bad = |why: String| {
        Error::new(format!("package.json: packageManager `{field}` {why}")).hint(
            "write the manager, an exact version and optionally its hash: \"pnpm@9.12.0\" or \"yarn@4.5.0+sha512.<hex>\"",
        )
    };
    let version = Version::parse(version)
        .map_err(|_| bad(format!("does not pin an exact version (`{version}`)")))?;
    let hash = match hash.map(|h| h.split_once('.').unwrap_or((h, ""))) {
        None => None,
        Some((algorithm, hex)) => {
            let length = match algorithm {
                "sha512" => 128,
                "sha224" => 56,
                other => {
                    return Err(bad(format!(
                        "has a {other} hash; kiln checks sha512 and sha224"
                    )));
                }
            };
            if hex.len() != length || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "has a {algorithm} hash that is not {length} hex digits"
                )));
            }
            Some(if algorithm == "sha512" {
                Expected::Sha512(hex.to_ascii_lowercase())
            } else {
                Expected::Sha224(hex.to_ascii_lowercase())
            })
        }
    };
    Ok(Some(Pin { version, hash }))
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
    let pin = match get("packageManager").and_then(Value::as_str) {
        Some(field) => parse_pin(field)?,
        None => None,
    };
    let npm_engine = get("engines")
        .and_then(|e| e.get("npm"))
        .and_then(Value::as_str)
        .map(str::to_string);
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
        } else if let Some(server) = build_script
            .then(|| built_server(package.as_ref(), script("build").unwrap_or_default()))
            .flatten()
        {
            (
                Some(vec!["node".to_string(), server.to_string()]),
                Some("the server nuxt build writes (Nuxt has no start script)".to_string()),
            )
        } else {
            (None, None)
        };

    Ok(Some(Project {
        manager,
        lockfile,
        pin,
        npm_engine,
        requested,
        has_package_json: package.is_some(),
        install,
        build_script,
        command,
        start_reason,
        dependency_json,
    }))
}

/// Nuxt's server, for a Nuxt app without a start script: `nuxt build` writes a standalone
/// Node.js server (Nitro's `node-server` preset, listening on `PORT`) to
/// `.output/server/index.mjs`, and the starter's package.json has no `start` script (its
/// docs say to run that file). `nuxt generate` writes a static site instead: no server.
fn built_server(
    package: Option<&serde_json::Map<String, Value>>,
    build: &str,
) -> Option<&'static str> {
    let nuxt = ["dependencies", "devDependencies"].iter().any(|s| {
        package
            .and_then(|p| p.get(*s))
            .and_then(|d| d.get("nuxt"))
            .is_some()
    });
    (nuxt && !build.contains("generate")).then_some(".output/server/index.mjs")
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

/// Checks a request against the Node.js a stack provides (`20.19.2`): an error when it is
/// not in the requested range (then kiln/nodejs would install one from the npm registry, and
/// the platform may prefer a stack that has it, see `common::choose`).
pub(crate) fn check_version(requested: &Requested, provided: &str) -> Result<Option<String>> {
    if super::runtime::satisfies(requested, provided)? {
        Ok(None)
    } else {
        Err(Error::new(format!(
            "Node.js {} was requested ({}), but the stack provides Node.js {provided}",
            requested.version, requested.source
        )))
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
        let (_d, a) = app(&[(
            "package.json",
            r#"{"scripts": {"build": "nuxt build", "postinstall": "nuxt prepare"}, "dependencies": {"nuxt": "^3.17.7"}}"#,
        )]);
        assert_eq!(
            analyze(&a).unwrap().unwrap().command.unwrap(),
            ["node", ".output/server/index.mjs"]
        );
        let (_d, a) = app(&[(
            "package.json",
            r#"{"scripts": {"build": "nuxt generate"}, "dependencies": {"nuxt": "^3.17.7"}}"#,
        )]);
        assert_eq!(analyze(&a).unwrap().unwrap().command, None);
        let (_d, a) = app(&[("server.js", "")]);
        let p = analyze(&a).unwrap().unwrap();
        assert_eq!(p.command.unwrap(), ["node", "server.js"]);
        assert!(!p.has_package_json && !p.install);
    }

    #[test]
    fn package_manager_pins_and_hashes() {
        let hex512 = "ab".repeat(64);
        let pin = parse_pin(&format!("pnpm@9.12.0+sha512.{hex512}"))
            .unwrap()
            .unwrap();
        assert_eq!(pin.version.to_string(), "9.12.0");
        assert_eq!(pin.hash, Some(Expected::Sha512(hex512)));
        let pin = parse_pin(&format!("yarn@4.5.0+sha224.{}", "C".repeat(56)))
            .unwrap()
            .unwrap();
        assert_eq!(pin.hash, Some(Expected::Sha224("c".repeat(56))));
        assert_eq!(parse_pin("yarn@1.22.22").unwrap().unwrap().hash, None);
        assert_eq!(parse_pin("pnpm").unwrap(), None);
        for (field, problem) in [
            ("pnpm@^9", "does not pin an exact version (`^9`)"),
            ("pnpm@9.12.0+md5.abc", "has a md5 hash"),
            ("pnpm@9.12.0+sha512.xyz", "not 128 hex digits"),
        ] {
            let err = parse_pin(field).unwrap_err().to_string();
            assert!(err.contains(problem), "{field}: {err}");
            assert!(err.contains("package.json: packageManager"), "{err}");
        }
        let (_d, a) = app(&[(
            "package.json",
            r#"{"packageManager": "pnpm@9.12.0", "engines": {"npm": ">=10"}}"#,
        )]);
        let project = analyze(&a).unwrap().unwrap();
        assert_eq!(project.pin.unwrap().version.to_string(), "9.12.0");
        assert_eq!(project.npm_engine.as_deref(), Some(">=10"));
    }

    #[test]
    fn nvmrc_and_node_version_files_are_read() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            (&[(".nvmrc", "v20.11.1\n")], Some(("v20.11.1", ".nvmrc"))),
            (
                &[(".nvmrc", "# the team's Node.js\n\n  lts/iron  # LTS\n")],
                Some(("lts/iron", ".nvmrc")),
            ),
            (&[(".node-version", "22\n")], Some(("22", ".node-version"))),
            (
                &[(".nvmrc", "20\n"), (".node-version", "22\n")],
                Some(("20", ".nvmrc")),
            ),
            (&[(".nvmrc", "\n# nothing\n")], None),
            (
                &[("package.json", r#"{"engines": {"node": ">=20 <23"}}"#)],
                Some((">=20 <23", "package.json engines.node")),
            ),
        ];
        for (files, expected) in cases {
            let mut files = files.to_vec();
            if !files.iter().any(|(f, _)| *f == "package.json") {
                files.push(("package.json", "{}"));
            }
            let (_d, a) = app(&files);
            let requested = analyze(&a).unwrap().unwrap().requested;
            assert_eq!(
                requested,
                expected.map(|(v, s)| Requested::new(v, s)),
                "{files:?}"
            );
        }
        // engines.node wins over the files.
        let (_d, a) = app(&[
            ("package.json", r#"{"engines": {"node": "22.x"}}"#),
            (".nvmrc", "20\n"),
        ]);
        assert_eq!(
            analyze(&a).unwrap().unwrap().requested.unwrap().source,
            "package.json engines.node"
        );
    }
}
