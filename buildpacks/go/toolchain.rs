//! Which Go toolchain builds the app, and installing it from a Go module proxy when the build
//! environment's Go is older than the app asks for.
//!
//! The choice is the `go` command's own (`GOTOOLCHAIN=auto`, its default): the newest of the
//! build environment's Go, go.mod's `toolchain` line and the release its `go` line names
//! (`go 1.25` is Go 1.25.0, `go 1.24.3` itself). `GOTOOLCHAIN` in the build's environment
//! (`kiln build --env GOTOOLCHAIN=…`) changes it as it changes the `go` command's:
//! `go1.25.0` for exactly that release, `go1.25.0+auto` for at least it, `local` (or `path`)
//! never to download.
//!
//! A toolchain comes the way the `go` command fetches one: the module `golang.org/toolchain`
//! at `v0.0.1-go1.25.0.linux-amd64` from the Go module proxy (`GOPROXY`), checked against the
//! Go checksum database (`GOSUMDB`): kiln runs the build environment's `go mod download` for
//! it, so every Go network setting applies and the check is Go's own. Where no checksum
//! database is reachable, the user pins the zip's SHA-256 (`KILN_GO_TOOLCHAIN_SHA256`): kiln
//! then downloads the zip itself, compares the hash before anything else reads it, and lets
//! `go mod download` unpack it from a local copy of the proxy. Either way Go unpacks the zip
//! (module zips hold no links, no `..` and are size-checked by Go), and kiln checks that the
//! installed `go` reports the release it was asked for.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::GoVersion;
use crate::common::{Error, Result, cmd, download, say};

/// The module Go distributes its toolchains as.
pub(crate) const MODULE: &str = "golang.org/toolchain";

/// The setting that pins the SHA-256 of the toolchain's zip.
pub(crate) const PIN_SETTING: &str = "KILN_GO_TOOLCHAIN_SHA256";

/// The largest toolchain zip kiln downloads (a release's is about 70 MB; Go's own limit for a
/// module zip is 500 MiB).
const ZIP_LIMIT: u64 = 512 * 1024 * 1024;

/// A Go setting from the build's environment (the user's `--env` and the host's Go network
/// settings, which kiln passes through), empty counting as unset.
pub(crate) fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// How `GOTOOLCHAIN` lets kiln choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The newest of the default (the build environment's Go, or this toolchain) and what
    /// go.mod asks for (`auto`, `go1.25.0+auto`).
    Auto(Option<String>),
    /// The build environment's Go only, never a download (`local`, `path`, `…+path`).
    Local,
    /// Exactly this toolchain (`go1.25.0`).
    Exact(String),
}

/// `GOTOOLCHAIN`'s value read as the `go` command reads it.
pub(crate) fn policy(value: Option<&str>) -> Result<Policy> {
    let bad = |value: &str| {
        Error::new(format!(
            "GOTOOLCHAIN=`{value}` is not a setting kiln understands"
        ))
        .hint("set GOTOOLCHAIN to `auto` (the default), `local`, a release such as `go1.25.0`, or `go1.25.0+auto`, or leave it unset")
    };
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Policy::Auto(None));
    };
    match value {
        "auto" => return Ok(Policy::Auto(None)),
        "local" | "path" => return Ok(Policy::Local),
        _ => {}
    }
    let (name, mode) = match value.split_once('+') {
        Some((name, mode)) => (name, Some(mode)),
        None => (value, None),
    };
    if !is_release_name(name) {
        return Err(bad(value));
    }
    match mode {
        None => Ok(Policy::Exact(name.to_string())),
        Some("auto") => Ok(Policy::Auto(Some(name.to_string()))),
        Some("path") => Ok(Policy::Local),
        Some(_) => Err(bad(value)),
    }
}

/// Whether `name` is a Go release's name: `go1.25.0`, `go1.20`, `go1.25rc1`.
pub(crate) fn is_release_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("go") else {
        return false;
    };
    let numeric_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (numbers, suffix) = rest.split_at(numeric_end);
    let parts: Vec<&str> = numbers.split('.').collect();
    let numbers_ok =
        (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && p.len() <= 4);
    let suffix_ok = suffix.is_empty()
        || ["rc", "beta"].iter().any(|kind| {
            suffix.strip_prefix(kind).is_some_and(|n| {
                !n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit())
            })
        });
    numbers_ok && suffix_ok
}

/// The release a go.mod `go` line names: `1.25` is the language version, whose first release
/// is `go1.25.0` from Go 1.21 on (`go1.20` before); `1.24.3` and `1.25rc1` name releases.
pub(crate) fn release_of_go_line(line: &str) -> Option<String> {
    let name = format!("go{}", line.trim());
    if !is_release_name(&name) {
        return None;
    }
    let numbers: Vec<&str> = line.trim().split('.').collect();
    let is_language = numbers.len() == 2
        && numbers
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_digit()));
    let minor: u32 = numbers.get(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(if is_language && minor >= 21 {
        format!("{name}.0")
    } else {
        name
    })
}

/// A toolchain to install instead of the build environment's Go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    /// Its name (`go1.25.0`).
    pub(crate) name: String,
    /// Its version.
    pub(crate) version: GoVersion,
    /// What asks for it (`go.mod's go 1.25 directive`), for messages.
    pub(crate) why: String,
}

/// What go.mod's `go` and `toolchain` lines and `GOTOOLCHAIN` select, given the build
/// environment's Go (`local`, named `local_name` in messages): `None` for the build
/// environment's own.
pub(crate) fn select(
    local: GoVersion,
    local_name: &str,
    go_line: Option<&str>,
    toolchain_line: Option<&str>,
    policy: &Policy,
) -> Result<Option<Selected>> {
    let go_release = match go_line {
        Some(line) => Some(release_of_go_line(line).ok_or_else(|| {
            Error::new(format!("go.mod: `go {line}` is not a Go version"))
                .hint("write the directive as `go 1.23` or `go 1.23.4`")
        })?),
        None => None,
    };
    let version = |name: &str| {
        GoVersion::parse(name)
            .ok_or_else(|| Error::new(format!("`{name}` is not a Go release kiln can read")))
    };
    let from_go_line = |release: &str| -> Result<Selected> {
        Ok(Selected {
            name: release.to_string(),
            version: version(release)?,
            why: format!("go.mod's `go {}` directive", go_line.unwrap_or_default()),
        })
    };
    let chosen = match policy {
        Policy::Local => {
            if let Some(release) = &go_release
                && version(release)? > local
            {
                return Err(Error::new(format!(
                    "go.mod asks for Go {} or newer (its `go` directive), but the build environment has {local_name} and GOTOOLCHAIN={} forbids downloading a toolchain",
                    go_line.unwrap_or_default(),
                    setting("GOTOOLCHAIN").unwrap_or_else(|| "local".to_string())
                ))
                .hint("unset GOTOOLCHAIN (or set it to `auto`) so that kiln installs the toolchain from the Go module proxy, or lower the `go` directive if the code allows"));
            }
            None
        }
        Policy::Exact(name) => {
            let selected = Selected {
                name: name.clone(),
                version: version(name)?,
                why: format!("GOTOOLCHAIN={name}"),
            };
            if let Some(release) = &go_release
                && version(release)? > selected.version
            {
                return Err(Error::new(format!(
                    "go.mod asks for Go {} or newer (its `go` directive), but GOTOOLCHAIN={name} selects an older toolchain",
                    go_line.unwrap_or_default()
                ))
                .hint("set GOTOOLCHAIN to a newer release, or to `auto` to follow go.mod"));
            }
            Some(selected)
        }
        Policy::Auto(default) => {
            let mut chosen = match default {
                Some(name) => Some(Selected {
                    name: name.clone(),
                    version: version(name)?,
                    why: format!("GOTOOLCHAIN={name}+auto"),
                }),
                None => None,
            };
            let floor = |chosen: &Option<Selected>| chosen.as_ref().map_or(local, |c| c.version);
            if let Some(line) = toolchain_line.map(str::trim).filter(|l| *l != "default") {
                if !is_release_name(line) {
                    return Err(Error::new(format!(
                        "go.mod: `toolchain {line}` is not a Go release kiln can install"
                    ))
                    .hint("write the line as `toolchain go1.25.0`, or remove it"));
                }
                let candidate = Selected {
                    name: line.to_string(),
                    version: version(line)?,
                    why: format!("go.mod's `toolchain {line}` line"),
                };
                if candidate.version > floor(&chosen) {
                    chosen = Some(candidate);
                }
            }
            if let Some(release) = &go_release {
                let candidate = from_go_line(release)?;
                if candidate.version > floor(&chosen) {
                    chosen = Some(candidate);
                }
            }
            chosen
        }
    };
    Ok(chosen.filter(|c| c.version != local))
}

/// The module version of toolchain `name` for the build machine (`v0.0.1-go1.25.0.linux-amd64`):
/// the toolchain runs where the build runs, whatever the app's target.
pub(crate) fn module_version(name: &str) -> Result<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "armv6l",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => {
            return Err(Error::new(format!(
                "kiln does not know the Go name of this machine's architecture ({other})"
            )));
        }
    };
    Ok(format!("v0.0.1-{name}.linux-{arch}"))
}

/// The Go module proxies of a `GOPROXY` list, in order, with whether the next one is tried
/// after any failure (`|`) rather than only after "not found" (`,`); `direct` and `off` are
/// not proxies kiln can fetch from.
pub(crate) fn proxies(goproxy: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = goproxy.trim();
    while !rest.is_empty() {
        let end = rest.find([',', '|']).unwrap_or(rest.len());
        let entry = rest[..end].trim();
        let any_error = rest[end..].starts_with('|');
        rest = rest.get(end + 1..).unwrap_or("");
        if entry.starts_with("https://") || entry.starts_with("http://") {
            out.push((entry.trim_end_matches('/').to_string(), any_error));
        }
    }
    out
}

/// The `GOPROXY` the build environment's Go uses: the setting, else `go env GOPROXY` (its
/// built-in default).
fn goproxy(go: &Path) -> String {
    setting("GOPROXY").unwrap_or_else(|| {
        cmd::output(
            Command::new(go)
                .args(["env", "GOPROXY"])
                .env("GOTOOLCHAIN", "local"),
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
    })
}

/// Whether `pattern` (a `GONOSUMDB`/`GOPRIVATE` glob list entry) matches a prefix of the
/// module path `path`, element by element, as Go matches them.
fn matches_prefix(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim().trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    if pattern.is_empty() || pattern[0].is_empty() || pattern.len() > path.len() {
        return false;
    }
    pattern.iter().zip(&path).all(|(p, e)| glob(p, e))
}

/// `*` and `?` glob matching within one path element.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Why the checksum database would not check a toolchain, if the settings turn it off for
/// it: Go 1.21 and later insist on it for toolchains whatever the settings, older `go`
/// commands obey them, and kiln keeps Go's rule for those too.
pub(crate) fn checksum_database_off() -> Option<String> {
    if setting("GOSUMDB").as_deref() == Some("off") {
        return Some("GOSUMDB=off".to_string());
    }
    let (name, list) = match setting("GONOSUMDB") {
        Some(list) => ("GONOSUMDB", list),
        None => ("GOPRIVATE", setting("GOPRIVATE")?),
    };
    list.split(',')
        .find(|p| matches_prefix(p, MODULE))
        .map(|p| format!("{name} matches {MODULE} (`{}`)", p.trim()))
}

/// How the toolchain is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// By the Go checksum database, through `go mod download`.
    ChecksumDatabase,
    /// Against the SHA-256 the user pinned.
    Pinned(String),
}

/// The check the settings ask for: the pin when there is one (it must be a SHA-256), else
/// the checksum database (which must not be turned off for the toolchain).
pub(crate) fn check() -> Result<Check> {
    if let Some(pin) = setting(PIN_SETTING) {
        return download::parse_sha256(&pin).map(Check::Pinned).ok_or_else(|| {
            Error::new(format!(
                "{PIN_SETTING}=`{pin}` is not a SHA-256 (64 hexadecimal digits, optionally after `sha256:`)"
            ))
            .hint(format!("set {PIN_SETTING} to the SHA-256 of the toolchain's module zip, as `sha256sum` prints it"))
        });
    }
    if let Some(why) = checksum_database_off() {
        return Err(Error::new(format!(
            "a downloaded Go toolchain must be checked, and {why} turns the Go checksum database off for it"
        ))
        .hint(format!(
            "let the checksum database check {MODULE} (unset GOSUMDB=off, remove the pattern), or pin the toolchain's SHA-256 with {PIN_SETTING}"
        )));
    }
    Ok(Check::ChecksumDatabase)
}

/// `go mod download -json`'s answer.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Downloaded {
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Installs toolchain `selected` into `dest/go` with the build environment's `go` (`local`,
/// named `local_name`), checked as `check` says; returns its `GOROOT`. `dest` is a cache layer:
/// everything else kiln puts there on the way is removed.
pub(crate) fn install(
    dest: &Path,
    selected: &Selected,
    local: &Path,
    local_name: &str,
    check: &Check,
) -> Result<PathBuf> {
    let goroot = dest.join("go");
    let modcache = dest.join("modcache");
    let staging = dest.join("proxy");
    for dir in [&goroot, &modcache, &staging] {
        remove_tree(dir)?;
    }
    let version = module_version(&selected.name)?;
    let spec = format!("{MODULE}@{version}");
    let goproxy = goproxy(local);
    let shown_proxy = if goproxy.is_empty() {
        "(GOPROXY unset)".to_string()
    } else {
        goproxy.clone()
    };
    let failure = |problem: &str| {
        Error::new(format!(
            "cannot install Go toolchain {} ({}; the build environment has {local_name}) from the Go module proxy {shown_proxy}: {problem}",
            selected.name, selected.why
        ))
    };
    let mut download = Command::new(local);
    download
        .args(["mod", "download", "-json", &spec])
        .current_dir(dest)
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "on")
        .env("GOMODCACHE", &modcache)
        // Writable module cache directories, so the layer can be replaced; the user's other
        // flags (`-mod=vendor`…) are for the app's build, not this download.
        .env("GOFLAGS", "-modcacherw")
        .env_remove("GOROOT");
    match check {
        Check::ChecksumDatabase => {
            say(&format!(
                "downloading {spec} from the Go module proxy {shown_proxy}, checked by the Go checksum database"
            ));
        }
        Check::Pinned(sha256) => {
            stage_pinned(&staging, &proxies(&goproxy), &version, sha256, &failure)?;
            // The zip is checked: Go only unpacks it, from the local copy (a lone `file://`
            // GOPROXY is the one place Go accepts a toolchain without its checksum database).
            download
                .env("GOPROXY", format!("file://{}", staging.display()))
                .env("GOSUMDB", "off")
                .env_remove("GONOSUMDB")
                .env_remove("GOPRIVATE");
        }
    }
    let out = download.stdin(Stdio::null()).output().map_err(|e| {
        failure(&format!(
            "could not run `{}`: {e}",
            cmd::describe(&download)
        ))
    })?;
    let answer: Downloaded = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let dir = match (answer.error, answer.dir) {
        (None, Some(dir)) if out.status.success() => PathBuf::from(dir),
        (error, _) => {
            let said = error.unwrap_or_else(|| {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                lines[lines.len().saturating_sub(6)..].join("\n    ")
            });
            return Err(explain(failure(&said), &said, &proxies(&goproxy)));
        }
    };
    std::fs::rename(&dir, &goroot).map_err(|e| {
        Error::new(format!(
            "cannot move {} to {}: {e}",
            dir.display(),
            goroot.display()
        ))
    })?;
    remove_tree(&modcache)?;
    remove_tree(&staging)?;
    // Module zips keep no file modes: the `go` command marks a toolchain's programs
    // executable after unpacking one, and so does kiln.
    make_programs_executable(&goroot)?;
    // A module zip may hold no go.mod but its root's, so Go's distribution renames the
    // standard library's `go.mod` files `_go.mod` in it; the `go` command puts them back
    // after unpacking a toolchain, and so does kiln.
    restore_go_mod_files(&goroot)?;
    let go = goroot.join("bin/go");
    if !go.is_file() {
        return Err(Error::new(format!(
            "the Go toolchain {spec} has no bin/go: it is not a Go distribution"
        ))
        .hint("check the Go module proxy (GOPROXY) serves Go's own toolchain module"));
    }
    Ok(goroot)
}

/// Downloads toolchain `version`'s zip from the first of `list` that has it, checks it
/// against the pinned `sha256`, and lays it out under `staging` as a Go module proxy
/// directory (`golang.org/toolchain/@v/<version>.{zip,mod,info}`) for `go mod download` to
/// unpack. `failure` makes the error of a download that did not happen.
fn stage_pinned(
    staging: &Path,
    list: &[(String, bool)],
    version: &str,
    sha256: &str,
    failure: &dyn Fn(&str) -> Error,
) -> Result<()> {
    let spec = format!("{MODULE}@{version}");
    if list.is_empty() {
        return Err(
            failure("no HTTP(S) proxy in GOPROXY to download from").hint(
                "set GOPROXY to the URL of a Go module proxy (kiln build --env GOPROXY=https://…)",
            ),
        );
    }
    let dir = staging.join(MODULE).join("@v");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    let zip = dir.join(format!("{version}.zip"));
    let from = fetch_pinned(list, version, &zip, sha256).map_err(|e| match e {
        PinnedError::NotFound => failure("no proxy has it").hint(available_hint(list)),
        PinnedError::Mismatch { proxy, found } => Error::new(format!(
            "the Go toolchain {spec} from {proxy} has SHA-256 {found}, not the {sha256} {PIN_SETTING} pins"
        ))
        .hint(format!("the download was altered or the pin is for another release or architecture: check the proxy, and set {PIN_SETTING} to the hash of {version}.zip")),
        PinnedError::Other(e) => failure(&e.to_string())
            .hint("point GOPROXY at a Go module proxy this build can reach (kiln build --env GOPROXY=https://…)"),
    })?;
    say(&format!(
        "downloaded {spec} from {from}: SHA-256 {sha256}, as {PIN_SETTING} pins"
    ));
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))
    };
    write(&format!("{version}.mod"), &format!("module {MODULE}\n"))?;
    write(
        &format!("{version}.info"),
        &format!("{{\"Version\":\"{version}\"}}\n"),
    )
}

/// What went wrong with a pinned download.
enum PinnedError {
    NotFound,
    Mismatch { proxy: String, found: String },
    Other(Error),
}

/// Downloads `version`'s zip from the first of `proxies` that has it into `zip` and checks it
/// against `sha256`; returns the proxy it came from.
fn fetch_pinned(
    proxies: &[(String, bool)],
    version: &str,
    zip: &Path,
    sha256: &str,
) -> std::result::Result<String, PinnedError> {
    let client = download::client().map_err(PinnedError::Other)?;
    for (proxy, any_error) in proxies {
        let url = format!("{proxy}/{MODULE}/@v/{version}.zip");
        match download::to_file(&client, &url, zip, ZIP_LIMIT) {
            Ok(Some(fetched)) => {
                if fetched.sha256 != sha256 {
                    let _ = std::fs::remove_file(zip);
                    return Err(PinnedError::Mismatch {
                        proxy: proxy.clone(),
                        found: fetched.sha256,
                    });
                }
                return Ok(proxy.clone());
            }
            Ok(None) => {}
            Err(_) if *any_error => {}
            Err(e) => return Err(PinnedError::Other(e)),
        }
    }
    Err(PinnedError::NotFound)
}

/// Adds to a failed download's error what the user can do about it, from what `go` said.
fn explain(error: Error, said: &str, proxies: &[(String, bool)]) -> Error {
    let lower = said.to_ascii_lowercase();
    if lower.contains("verifying") || lower.contains("sumdb") || lower.contains("checksum") {
        let sumdb = setting("GOSUMDB").unwrap_or_else(|| "Go's default".to_string());
        return error.hint(format!(
            "Go checks a downloaded toolchain against its checksum database (GOSUMDB: {sumdb}), which did not answer: set GOSUMDB to one this build reaches (`<name> <url>`: many Go module proxies serve it under /sumdb/<name>), or pin the toolchain's SHA-256 with {PIN_SETTING} (kiln build --env {PIN_SETTING}=…), which needs no checksum database"
        ));
    }
    if [
        "404",
        "410",
        "not found",
        "unknown revision",
        "no matching versions",
        "invalid version",
    ]
    .iter()
    .any(|s| lower.contains(s))
    {
        return error.hint(available_hint(proxies));
    }
    error.hint("point GOPROXY at a Go module proxy this build can reach (kiln build --env GOPROXY=https://…), or lower go.mod's `go` directive (and `toolchain` line) to the build environment's Go")
}

/// A hint naming the toolchains the first proxy that lists them has for this machine.
fn available_hint(proxies: &[(String, bool)]) -> String {
    let listed = available(proxies);
    match listed {
        Some(list) if !list.is_empty() => format!(
            "the Go module proxy has {list}; ask for one of those in go.mod (`go` directive or `toolchain` line), or point GOPROXY at a proxy that has this one"
        ),
        _ => "ask go.mod for a Go release the Go module proxy has, or point GOPROXY at a proxy that has this one".to_string(),
    }
}

/// The newest release of each of the last few Go lines the proxy lists for this machine
/// (`go1.25.1, go1.24.7, …`).
fn available(proxies: &[(String, bool)]) -> Option<String> {
    let client = download::client().ok()?;
    let suffix = module_version("")
        .ok()?
        .trim_start_matches("v0.0.1-")
        .to_string();
    for (proxy, _) in proxies {
        let Ok(Some(text)) = download::text(&client, &format!("{proxy}/{MODULE}/@v/list"), 1 << 20)
        else {
            continue;
        };
        let mut releases: Vec<(GoVersion, String)> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("v0.0.1-")?.strip_suffix(&suffix))
            .filter(|name| is_release_name(name) && !name.contains("rc") && !name.contains("beta"))
            .filter_map(|name| Some((GoVersion::parse(name)?, name.to_string())))
            .collect();
        releases.sort();
        releases.reverse();
        let mut lines: Vec<String> = Vec::new();
        let mut last: Option<(u32, u32)> = None;
        for (v, name) in releases {
            if last != Some((v.0, v.1)) {
                last = Some((v.0, v.1));
                lines.push(name);
            }
        }
        let more = if lines.len() > 6 {
            ", and older lines"
        } else {
            ""
        };
        lines.truncate(6);
        return Some(format!("{}{more}", lines.join(", ")));
    }
    None
}

/// Sets the executable bits of `bin/*` and `pkg/tool/*/*` under `goroot`.
fn make_programs_executable(goroot: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut dirs = vec![goroot.join("bin")];
    if let Ok(entries) = std::fs::read_dir(goroot.join("pkg/tool")) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
            if meta.is_file() {
                let mode = meta.permissions().mode() | 0o755;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| Error::new(format!("cannot set the mode of {}: {e}", path.display())),
                )?;
            }
        }
    }
    Ok(())
}

/// Copies every `_go.mod` under `root` to `go.mod` beside it (links are not followed).
fn restore_go_mod_files(root: &Path) -> Result<()> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && entry.file_name() == "_go.mod" {
                let dest = dir.join("go.mod");
                std::fs::copy(&path, &dest).map_err(|e| {
                    Error::new(format!(
                        "cannot copy {} to {}: {e}",
                        path.display(),
                        dest.display()
                    ))
                })?;
            }
        }
    }
    Ok(())
}

/// Removes a tree the module cache may have left read-only.
fn remove_tree(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let _ = cmd::output(Command::new("chmod").args(["-R", "u+w"]).arg(dir));
    std::fs::remove_dir_all(dir)
        .map_err(|e| Error::new(format!("cannot remove {}: {e}", dir.display())))
}

/// Checks that the toolchain at `goroot` reports release `name`; returns what it reports.
pub(crate) fn check_reported(goroot: &Path, name: &str) -> Result<String> {
    let reported = cmd::output(
        Command::new(goroot.join("bin/go"))
            .args(["env", "GOVERSION"])
            .env("GOTOOLCHAIN", "local")
            .env_remove("GOROOT"),
    )?;
    let reported = reported.trim().to_string();
    if reported != name {
        return Err(Error::new(format!(
            "the Go toolchain installed as {name} reports {reported}"
        ))
        .hint(
            "the Go module proxy serves another release under this name; check the proxy (GOPROXY)",
        ));
    }
    Ok(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> GoVersion {
        GoVersion::parse(text).unwrap()
    }

    fn pick(go: Option<&str>, toolchain: Option<&str>, policy: &Policy) -> Result<Option<String>> {
        select(v("1.24.4"), "go1.24.4", go, toolchain, policy)
            .map(|s| s.map(|s| format!("{} ({})", s.name, s.why)))
    }

    #[test]
    fn the_go_command_s_rules_pick_the_toolchain() {
        let auto = Policy::Auto(None);
        assert_eq!(pick(Some("1.22"), None, &auto).unwrap(), None);
        assert_eq!(pick(Some("1.24"), None, &auto).unwrap(), None);
        assert_eq!(pick(Some("1.24.4"), None, &auto).unwrap(), None);
        assert_eq!(
            pick(Some("1.25"), None, &auto).unwrap().as_deref(),
            Some("go1.25.0 (go.mod's `go 1.25` directive)")
        );
        assert_eq!(
            pick(Some("1.24.6"), None, &auto).unwrap().as_deref(),
            Some("go1.24.6 (go.mod's `go 1.24.6` directive)")
        );
        assert_eq!(
            pick(Some("1.22"), Some("go1.25.3"), &auto)
                .unwrap()
                .as_deref(),
            Some("go1.25.3 (go.mod's `toolchain go1.25.3` line)")
        );
        // An older toolchain line than the build environment's Go changes nothing.
        assert_eq!(pick(Some("1.22"), Some("go1.23.4"), &auto).unwrap(), None);
        assert_eq!(pick(Some("1.22"), Some("default"), &auto).unwrap(), None);
        // The go line wins over an older toolchain line.
        assert_eq!(
            pick(Some("1.26.1"), Some("go1.25.0"), &auto)
                .unwrap()
                .as_deref(),
            Some("go1.26.1 (go.mod's `go 1.26.1` directive)")
        );
        assert_eq!(
            pick(Some("1.22"), None, &Policy::Exact("go1.23.4".into()))
                .unwrap()
                .as_deref(),
            Some("go1.23.4 (GOTOOLCHAIN=go1.23.4)")
        );
        assert_eq!(
            pick(Some("1.22"), None, &Policy::Auto(Some("go1.25.1".into())))
                .unwrap()
                .as_deref(),
            Some("go1.25.1 (GOTOOLCHAIN=go1.25.1+auto)")
        );
        assert_eq!(pick(Some("1.22"), None, &Policy::Local).unwrap(), None);
        let err = pick(Some("1.25"), None, &Policy::Local)
            .unwrap_err()
            .to_string();
        assert!(err.contains("forbids downloading"), "{err}");
        let err = pick(Some("1.25"), None, &Policy::Exact("go1.24.9".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("selects an older toolchain"), "{err}");
        assert!(pick(Some("1.x"), None, &auto).is_err());
        assert!(pick(Some("1.22"), Some("gopher"), &auto).is_err());
    }

    #[test]
    fn go_lines_name_releases_as_go_does() {
        assert_eq!(release_of_go_line("1.25").as_deref(), Some("go1.25.0"));
        assert_eq!(release_of_go_line("1.21").as_deref(), Some("go1.21.0"));
        assert_eq!(release_of_go_line("1.20").as_deref(), Some("go1.20"));
        assert_eq!(release_of_go_line("1.24.3").as_deref(), Some("go1.24.3"));
        assert_eq!(release_of_go_line("1.25rc1").as_deref(), Some("go1.25rc1"));
        assert_eq!(release_of_go_line("1"), None);
        assert_eq!(release_of_go_line("1.2.3.4"), None);
        assert_eq!(release_of_go_line("1.25 // x"), None);
    }

    #[test]
    fn gotoolchain_values() {
        assert_eq!(policy(None).unwrap(), Policy::Auto(None));
        assert_eq!(policy(Some("auto")).unwrap(), Policy::Auto(None));
        assert_eq!(policy(Some("local")).unwrap(), Policy::Local);
        assert_eq!(policy(Some("path")).unwrap(), Policy::Local);
        assert_eq!(
            policy(Some("go1.25.0")).unwrap(),
            Policy::Exact("go1.25.0".into())
        );
        assert_eq!(
            policy(Some("go1.25.0+auto")).unwrap(),
            Policy::Auto(Some("go1.25.0".into()))
        );
        assert_eq!(policy(Some("go1.25.0+path")).unwrap(), Policy::Local);
        for bad in [
            "1.25",
            "go1.25.0+never",
            "gopher",
            "go1..2",
            "go1.25.0; rm -rf /",
        ] {
            assert!(policy(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn goproxy_lists_keep_their_fallback_rules() {
        assert_eq!(
            proxies("https://a.example/, http://127.0.0.1:8080|https://c.example,direct"),
            [
                ("https://a.example".to_string(), false),
                ("http://127.0.0.1:8080".to_string(), true),
                ("https://c.example".to_string(), false),
            ]
        );
        assert!(proxies("off").is_empty());
        assert!(proxies("direct").is_empty());
        assert!(proxies("").is_empty());
    }

    #[test]
    fn private_patterns_match_module_path_prefixes() {
        for pattern in [
            "*",
            "golang.org",
            "golang.org/toolchain",
            "golang.org/*",
            "*.org",
            "golang.org/",
        ] {
            assert!(matches_prefix(pattern, MODULE), "{pattern}");
        }
        for pattern in [
            "",
            "example.com",
            "golang.org/x",
            "golang.org/toolchain/more",
            "go",
        ] {
            assert!(!matches_prefix(pattern, MODULE), "{pattern}");
        }
    }

    #[test]
    fn module_versions_name_the_build_machine() {
        let version = module_version("go1.25.0").unwrap();
        assert!(version.starts_with("v0.0.1-go1.25.0.linux-"), "{version}");
    }
}
