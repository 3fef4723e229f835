//! `kiln/rust`: builds a Cargo package's binary with the build host's `cargo` and runs it.
//!
//! - **Detects** `Cargo.toml`.
//! - **Which binary**: `KILN_RUST_BIN`, else the only binary target, else the package's
//!   `default-run`, else the binary named like the package; in a virtual workspace, the only
//!   binary of all members (otherwise name one with `KILN_RUST_BIN`).
//! - **Build**: `cargo build --release --locked` (without `--locked` when there is no
//!   `Cargo.lock`, with a warning); the target directory and `CARGO_HOME` (registry, git
//!   checkouts; your `config.toml` is copied in, credentials never are) live in a cache layer
//!   kept while the toolchain and target stay the same. The binary is linked statically
//!   (`+crt-static`) when the build host's glibc is newer than the run image's, so it runs
//!   there; otherwise it links glibc dynamically like any Debian program.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::LaunchBuilder;
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::{
    CnbResult, Error, Result, buildpack, cmd, inventory, layers, pass, process, say, section,
    setting, warn,
};

/// The buildpack.
pub(crate) struct RustBuildpack;

buildpack!(RustBuildpack);

/// A binary target of a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Binary {
    /// The package it belongs to.
    package: String,
    /// The binary's name.
    name: String,
    /// The package's directory, relative to the app (empty for the root package).
    #[serde(skip)]
    dir: String,
}

/// What the app's Cargo files say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Project {
    /// The binary to build and run.
    binary: Binary,
    /// Whether a Cargo.lock pins the dependencies.
    locked: bool,
    /// Why this binary (`the only binary`, `default-run`, …).
    reason: String,
}

/// The binaries of the package whose manifest is `manifest` (in directory `dir`).
fn package_binaries(app: &App, dir: &str, manifest: &toml::Table) -> Result<Vec<Binary>> {
    let Some(package) = manifest.get("package").and_then(toml::Value::as_table) else {
        return Ok(Vec::new());
    };
    let name = package
        .get("name")
        .and_then(toml::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let join = |rel: &str| {
        if dir.is_empty() {
            rel.to_string()
        } else {
            format!("{dir}/{rel}")
        }
    };
    let mut bins: Vec<Binary> = Vec::new();
    let mut add = |bin: String| {
        if !bins.iter().any(|b| b.name == bin) {
            bins.push(Binary {
                package: name.clone(),
                name: bin,
                dir: dir.to_string(),
            });
        }
    };
    if let Some(list) = manifest.get("bin").and_then(toml::Value::as_array) {
        for bin in list {
            if let Some(n) = bin.get("name").and_then(toml::Value::as_str) {
                add(n.to_string());
            }
        }
    }
    let autobins = package
        .get("autobins")
        .and_then(toml::Value::as_bool)
        .unwrap_or(true);
    if autobins {
        if app.is_file(&join("src/main.rs")) {
            add(name.clone());
        }
        for entry in app.list(&join("src/bin"))? {
            if let Some(stem) = entry.strip_suffix(".rs") {
                add(stem.to_string());
            } else if app.is_file(&join(&format!("src/bin/{entry}/main.rs"))) {
                add(entry);
            }
        }
    }
    Ok(bins)
}

/// Workspace member directories, expanding a trailing `/*`.
fn members(app: &App, manifest: &toml::Table) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    let list = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    for member in list.iter().filter_map(toml::Value::as_str) {
        let member = member.trim_end_matches('/');
        if let Some(parent) = member.strip_suffix("/*") {
            for name in app.list(parent)? {
                let dir = format!("{parent}/{name}");
                if app.is_file(&format!("{dir}/Cargo.toml")) {
                    dirs.push(dir);
                }
            }
        } else if !member.contains(['*', '?', '[']) {
            dirs.push(member.to_string());
        }
    }
    Ok(dirs)
}

fn analyze(app: &App, wanted: Option<&str>) -> Result<Option<Project>> {
    let Some(manifest) = app.read_toml("Cargo.toml")? else {
        return Ok(None);
    };
    let mut bins = package_binaries(app, "", &manifest)?;
    for dir in members(app, &manifest)? {
        let rel = format!("{dir}/Cargo.toml");
        if let Some(member) = app.read_toml(&rel)? {
            bins.extend(package_binaries(app, &dir, &member)?);
        }
    }
    let locked = app.is_file("Cargo.lock");
    let names = || {
        bins.iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let package = manifest.get("package");
    let (binary, reason) = if let Some(wanted) = wanted.filter(|w| !w.is_empty()) {
        let found = bins.iter().find(|b| b.name == wanted).ok_or_else(|| {
            Error::new(format!(
                "KILN_RUST_BIN names `{wanted}`, which is not a binary of this project (it has: {})",
                names()
            ))
        })?;
        (found.clone(), "KILN_RUST_BIN".to_string())
    } else if let [only] = bins.as_slice() {
        (only.clone(), "the only binary".to_string())
    } else if bins.is_empty() {
        return Err(Error::new("Cargo.toml has no binary target to run")
            .hint("add src/main.rs or a [[bin]] target; a library alone cannot run"));
    } else if let Some(default_run) = package
        .and_then(|p| p.get("default-run"))
        .and_then(toml::Value::as_str)
    {
        let found = bins.iter().find(|b| b.name == default_run).ok_or_else(|| {
            Error::new(format!(
                "Cargo.toml: default-run = \"{default_run}\" is not one of its binaries ({})",
                names()
            ))
        })?;
        (found.clone(), "default-run".to_string())
    } else if let Some(same) = package
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .and_then(|n| bins.iter().find(|b| b.name == n))
    {
        (same.clone(), "named like the package".to_string())
    } else {
        return Err(Error::new(format!(
            "Cargo.toml has several binaries ({}) and none is the default",
            names()
        ))
        .hint(
            "set `default-run` in [package], or pick one: kiln build --env KILN_RUST_BIN=<name>",
        ));
    };
    Ok(Some(Project {
        binary,
        locked,
        reason,
    }))
}

#[derive(serde::Serialize)]
struct Decisions<'a> {
    #[serde(flatten)]
    project: &'a Project,
    start: &'a str,
}

fn detect(context: &DetectContext<RustBuildpack>) -> CnbResult<DetectResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let wanted = setting(context.platform.env(), "KILN_RUST_BIN");
    let Some(project) = analyze(&app, wanted.as_deref())? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    pass(
        "rust",
        &Decisions {
            project: &project,
            start: &project.binary.name,
        },
    )
}

/// The Rust target triple for a CNB architecture.
fn triple(arch: &str) -> Result<&'static str> {
    match arch {
        "amd64" => Ok("x86_64-unknown-linux-gnu"),
        "arm64" => Ok("aarch64-unknown-linux-gnu"),
        other => Err(Error::new(format!(
            "kiln's Rust buildpack does not build for the {other} architecture"
        ))),
    }
}

/// `major.minor` of a glibc version as numbers.
fn glibc(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The build host's glibc version (`getconf GNU_LIBC_VERSION` → `glibc 2.36`).
fn host_glibc() -> Option<(u32, u32)> {
    let out = cmd::output(Command::new("getconf").arg("GNU_LIBC_VERSION")).ok()?;
    glibc(out.split_whitespace().nth(1)?)
}

/// The cache layer is good for one toolchain, target and linking mode.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CacheKey {
    rustc: String,
    target: String,
    static_crt: bool,
}

/// Copies the host's Cargo configuration (registries, mirrors, net settings; never
/// credentials) into the build's `CARGO_HOME`.
fn copy_cargo_config(cargo_home: &Path) -> Result<()> {
    let host_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(host_home) = host_home else {
        return Ok(());
    };
    for name in ["config.toml", "config"] {
        let from = host_home.join(name);
        if from.is_file() {
            std::fs::copy(&from, cargo_home.join(name))
                .map_err(|e| Error::new(format!("cannot copy {}: {e}", from.display())))?;
        }
    }
    Ok(())
}

/// The package id spec of `binary`'s package in the app at `app_dir`:
/// `path+file:///workspace/crates/api#api`. A bare name is ambiguous when a dependency has
/// the same name (a vendored fork, a renamed path dependency); the path never is.
fn package_spec(app_dir: &Path, binary: &Binary) -> String {
    let mut path = app_dir.to_path_buf();
    for part in binary.dir.split('/') {
        if !part.is_empty() && part != "." {
            path.push(part);
        }
    }
    let mut url = String::from("path+file://");
    for byte in path.to_string_lossy().bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            url.push(char::from(byte));
        } else {
            let _ = write!(url, "%{byte:02X}");
        }
    }
    format!("{url}#{}", binary.package)
}

/// `cargo build --release` of the chosen binary of the app at `app_dir` for `target`, with
/// the caches in the cache layer.
fn cargo_build(
    app_dir: &Path,
    project: &Project,
    target: &str,
    cargo_home: &Path,
    target_dir: &Path,
    static_crt: bool,
) -> Command {
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "--target", target])
        .args(["--package", &package_spec(app_dir, &project.binary)])
        .args(["--bin", &project.binary.name]);
    if project.locked {
        cargo.arg("--locked");
    }
    // rustup's proxies find their toolchains through RUSTUP_HOME, which defaults to
    // ~/.rustup; keep it when CARGO_HOME moves.
    if std::env::var_os("RUSTUP_HOME").is_none()
        && let Some(home) = std::env::var_os("HOME")
    {
        let rustup = PathBuf::from(home).join(".rustup");
        if rustup.is_dir() {
            cargo.env("RUSTUP_HOME", rustup);
        }
    }
    cargo
        .env("CARGO_HOME", cargo_home)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_TERM_COLOR", "never");
    if static_crt {
        let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        if !flags.is_empty() {
            flags.push(' ');
        }
        flags.push_str("-C target-feature=+crt-static");
        cargo.env("RUSTFLAGS", flags);
    }
    cargo
}

/// The build host's toolchain (`rustc --version`) and the target triple of the run image,
/// checking that the toolchain can build for it.
fn toolchain(arch: &str) -> Result<(String, &'static str)> {
    if cmd::which("cargo").is_none() {
        return Err(cmd::missing(
            "cargo",
            "the Rust buildpack compiles with it",
            "install Rust (https://rustup.rs) and put ~/.cargo/bin on PATH",
        ));
    }
    let rustc = cmd::output(Command::new("rustc").arg("--version"))?
        .trim()
        .to_string();
    let target = triple(arch)?;
    let sysroot = cmd::output(Command::new("rustc").args(["--print", "sysroot"]))?;
    if !Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .is_dir()
    {
        return Err(Error::new(format!(
            "the build host's Rust toolchain ({rustc}) has no standard library for {target}, the run image's platform"
        ))
        .hint(format!(
            "rustup target add {target}, and give cargo a linker for it (CARGO_TARGET_{}_LINKER)",
            target.to_ascii_uppercase().replace('-', "_")
        )));
    }
    Ok((rustc, target))
}

fn build(context: &BuildContext<RustBuildpack>) -> CnbResult<BuildResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let wanted = setting(context.platform.env(), "KILN_RUST_BIN");
    let project = analyze(&app, wanted.as_deref())?
        .ok_or_else(|| Error::new("Cargo.toml disappeared between detect and build"))?;
    section("Rust");
    let (rustc, target) = toolchain(&context.target.arch)?;
    // Link glibc statically when the run image's is older than the build host's: a binary
    // linked against a newer glibc does not start on an older one.
    let run_glibc = inventory::provided(&context.target, "libc6");
    let static_crt = match (host_glibc(), run_glibc.as_deref().and_then(glibc)) {
        (Some(host), Some(run)) => host > run,
        _ => false,
    };
    say(&format!(
        "{rustc} of the build environment; binary `{}` ({}); {}",
        project.binary.name,
        project.reason,
        if static_crt {
            "glibc linked statically (the build host's glibc is newer than the run image's)"
        } else {
            "glibc linked dynamically"
        }
    ));
    if !project.locked {
        warn(
            "no Cargo.lock: dependency versions are resolved now; commit Cargo.lock for reproducible builds",
        );
    }

    let (cache, reused) = layers::keyed(
        context,
        &layer_name!("cache"),
        false,
        false,
        &CacheKey {
            rustc: rustc.clone(),
            target: target.to_string(),
            static_crt,
        },
    )?;
    say(if reused {
        "reusing the target directory and registry cache"
    } else {
        "starting with an empty target directory and registry cache"
    });
    let cargo_home = cache.path().join("cargo-home");
    let target_dir = cache.path().join("target");
    std::fs::create_dir_all(&cargo_home)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", cargo_home.display())))?;
    copy_cargo_config(&cargo_home)?;

    // Cargo compares the spec's path with the one it derives from the working directory,
    // which the kernel reports without links.
    let app_dir =
        std::fs::canonicalize(&context.app_dir).unwrap_or_else(|_| context.app_dir.clone());
    let mut cargo = cargo_build(
        &app_dir,
        &project,
        target,
        &cargo_home,
        &target_dir,
        static_crt,
    );
    cargo.current_dir(&app_dir);
    cmd::run(&mut cargo)?;

    let bin_dir = layers::launch_bin(context, &layer_name!("bin"))?;
    let built = target_dir
        .join(target)
        .join("release")
        .join(&project.binary.name);
    let installed = bin_dir.join(&project.binary.name);
    std::fs::copy(&built, &installed).map_err(|e| {
        Error::new(format!(
            "cargo finished but {} cannot be copied: {e}",
            built.display()
        ))
    })?;
    let path = installed.to_string_lossy().into_owned();
    say(&format!("process web: {path}"));
    let mut launch = LaunchBuilder::new();
    launch.process(process::process("web", &[path], true)?);
    BuildResultBuilder::new().launch(launch.build()).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn project(files: &[(&str, &str)], wanted: Option<&str>) -> Result<Option<Project>> {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = d.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        analyze(&App::new(d.path()), wanted)
    }

    #[test]
    fn binary_choice() {
        let single = project(
            &[
                ("Cargo.toml", "[package]\nname = \"srv\"\n"),
                ("src/main.rs", ""),
            ],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(single.binary.name, "srv");
        assert!(!single.locked);

        let several = [
            (
                "Cargo.toml",
                "[package]\nname = \"app\"\ndefault-run = \"api\"\n",
            ),
            ("Cargo.lock", ""),
            ("src/main.rs", ""),
            ("src/bin/api.rs", ""),
            ("src/bin/cli/main.rs", ""),
        ];
        let p = project(&several, None).unwrap().unwrap();
        assert_eq!(
            (p.binary.name.as_str(), p.reason.as_str()),
            ("api", "default-run")
        );
        assert!(p.locked);
        let p = project(&several, Some("cli")).unwrap().unwrap();
        assert_eq!(p.binary.name, "cli");
        assert!(project(&several, Some("nope")).is_err());

        let by_name = [
            ("Cargo.toml", "[package]\nname = \"app\"\n"),
            ("src/main.rs", ""),
            ("src/bin/tool.rs", ""),
        ];
        assert_eq!(project(&by_name, None).unwrap().unwrap().binary.name, "app");
        let ambiguous = [(
            "Cargo.toml",
            "[package]\nname = \"app\"\n[[bin]]\nname = \"a\"\n[[bin]]\nname = \"b\"\n",
        )];
        let err = project(&ambiguous, None).unwrap_err().to_string();
        assert!(err.contains("several binaries (a, b)"), "{err}");
    }

    #[test]
    fn workspaces_and_libraries() {
        let ws = [
            ("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\n"),
            ("crates/core/Cargo.toml", "[package]\nname = \"core\"\n"),
            ("crates/core/src/lib.rs", ""),
            ("crates/server/Cargo.toml", "[package]\nname = \"server\"\n"),
            ("crates/server/src/main.rs", ""),
        ];
        let p = project(&ws, None).unwrap().unwrap();
        assert_eq!(p.binary.package, "server");
        let lib = [
            ("Cargo.toml", "[package]\nname = \"l\"\n"),
            ("src/lib.rs", ""),
        ];
        assert!(
            project(&lib, None)
                .unwrap_err()
                .to_string()
                .contains("no binary")
        );
        assert_eq!(project(&[], None).unwrap(), None);
        assert!(project(&[("Cargo.toml", "[package")], None).is_err());
    }

    #[test]
    fn packages_are_named_by_path_not_by_name_alone() {
        let ws = [
            ("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\n"),
            ("crates/api/Cargo.toml", "[package]\nname = \"api\"\n"),
            ("crates/api/src/main.rs", ""),
        ];
        let p = project(&ws, None).unwrap().unwrap();
        assert_eq!(
            package_spec(Path::new("/workspace"), &p.binary),
            "path+file:///workspace/crates/api#api"
        );
        let root = project(
            &[
                ("Cargo.toml", "[package]\nname = \"srv\"\n"),
                ("src/main.rs", ""),
            ],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            package_spec(Path::new("/tmp/my app"), &root.binary),
            "path+file:///tmp/my%20app#srv"
        );
    }

    #[test]
    fn glibc_versions() {
        assert!(glibc("2.39").unwrap() > glibc("2.36").unwrap());
        assert_eq!(glibc("x"), None);
    }
}
