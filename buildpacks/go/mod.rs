//! `kiln/go`: builds a Go module's main packages into static binaries, one process each.
//!
//! - **Detects** `go.mod`, or a lone `main.go` (built as a single-directory program).
//! - **Go**: the build environment's (the stack's build image: Go 1.24 on trixie, 1.19 on
//!   bookworm; or the host's with `--build-env host`) when it is new enough; else the
//!   toolchain go.mod asks for — its `go` line names the least release (`go 1.25` is Go
//!   1.25.0), a `toolchain go1.25.3` line a newer one — installed from the Go module proxy
//!   into a cache layer, the way the `go` command's `GOTOOLCHAIN=auto` does it, checked by the
//!   Go checksum database or against a pinned SHA-256 (see [`toolchain`]). `GOTOOLCHAIN`
//!   (`local`, `go1.25.0`, `go1.25.0+auto`) changes the choice as it changes the `go`
//!   command's. The image carries the label `io.github.kiln-build.go.version`.
//! - **Main packages**: `KILN_GO_TARGETS` (space- or comma-separated packages, `./cmd/api`),
//!   else the module root if it is `package main`, else every `cmd/<name>` that is. One
//!   target becomes the `web` process; several become processes named after their binaries,
//!   the first being the default.
//! - **Build**: `CGO_ENABLED=0` unless a file imports "C"; `-trimpath`, no build ID and no VCS
//!   stamp, so the same source gives the same binary; `GOOS`/`GOARCH` from the run image's
//!   platform. The build and module caches live in a cache layer.

pub(crate) mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use libcnb::Target;
use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::{Label, LaunchBuilder};
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::{
    CnbResult, Error, Result, buildpack, cmd, inventory, layers, pass, process, say, section,
    setting,
};
use toolchain::Selected;

/// The buildpack.
pub(crate) struct GoBuildpack;

buildpack!(GoBuildpack);

/// A Go version `major.minor[.patch]`, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct GoVersion(u32, u32, u32);

impl GoVersion {
    /// Parses `1.21`, `1.21.3`, `go1.21.3`, `1.22rc1` (pre-releases count as their release).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches("go");
        let numeric: String = text
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(Self(major, minor, patch))
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A main package to build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct MainPackage {
    /// The package (`.`, `./cmd/api`) or, for a module-less program, the files.
    package: String,
    /// The binary's name.
    binary: String,
}

/// What the app's files say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Project {
    /// The module path, if there is a go.mod.
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<String>,
    /// The `go` directive.
    #[serde(skip_serializing_if = "Option::is_none")]
    go: Option<String>,
    /// The `toolchain` line.
    #[serde(skip_serializing_if = "Option::is_none")]
    toolchain: Option<String>,
    /// What to build.
    targets: Vec<MainPackage>,
    /// Whether a file imports "C".
    cgo: bool,
}

fn go_files(app: &App, dir: &str) -> Result<Vec<String>> {
    Ok(app
        .list(dir)?
        .into_iter()
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "go")
                && !n.ends_with("_test.go")
        })
        .map(|n| {
            if dir.is_empty() {
                n
            } else {
                format!("{dir}/{n}")
            }
        })
        .collect())
}

/// The `package` clause of Go source `text`.
fn package_name(text: &str) -> Option<&str> {
    let mut in_block_comment = false;
    for line in text.lines() {
        let mut line = line.trim();
        if in_block_comment {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].trim();
                    in_block_comment = false;
                }
                None => continue,
            }
        }
        if line.starts_with("/*") {
            if !line.contains("*/") {
                in_block_comment = true;
            }
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        return line
            .strip_prefix("package ")
            .map(|rest| rest.split_whitespace().next().unwrap_or(""));
    }
    None
}

fn is_main_package(app: &App, dir: &str) -> Result<bool> {
    for file in go_files(app, dir)? {
        if let Some(text) = app.read(&file)?
            && package_name(&text) == Some("main")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn imports_c(app: &App, dirs: &[String]) -> Result<bool> {
    for dir in dirs {
        for file in go_files(app, dir)? {
            if let Some(text) = app.read(&file)?
                && text.lines().any(|l| {
                    let l = l.trim();
                    l == "import \"C\"" || l == "\"C\""
                })
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn last_element(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .to_string()
}

/// go.mod's `module` path and its `go` and `toolchain` lines.
fn read_go_mod(text: &str) -> Result<(String, Option<String>, Option<String>)> {
    let mut module = None;
    let mut go = None;
    let mut toolchain = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("module ") {
            module = Some(rest.trim().trim_matches('"').to_string());
        } else if let Some(rest) = line.strip_prefix("go ") {
            go = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("toolchain ") {
            toolchain = Some(rest.trim().to_string());
        }
    }
    let module = module.ok_or_else(|| {
        Error::new("go.mod has no `module` directive")
            .hint("start go.mod with `module <path>`, as `go mod init <path>` writes")
    })?;
    Ok((module, go, toolchain))
}

fn analyze(app: &App, targets_env: Option<&str>) -> Result<Option<Project>> {
    let go_mod = app.read("go.mod")?;
    if go_mod.is_none() && !app.is_file("main.go") {
        return Ok(None);
    }
    let (module, go, toolchain) = match &go_mod {
        Some(text) => {
            let (module, go, toolchain) = read_go_mod(text)?;
            (Some(module), go, toolchain)
        }
        None => (None, None, None),
    };
    let mut targets = Vec::new();
    if let Some(list) = targets_env.filter(|l| !l.trim().is_empty()) {
        for package in list.split([',', ' ']).filter(|p| !p.is_empty()) {
            let package = if package.starts_with("./") || package == "." {
                package.to_string()
            } else {
                format!("./{package}")
            };
            let dir = package.trim_start_matches("./").trim_start_matches('.');
            if !app.is_dir(if dir.is_empty() { "." } else { dir }) {
                return Err(Error::new(format!(
                    "KILN_GO_TARGETS names {package}, which is not a directory of the app"
                )));
            }
            let binary = if dir.is_empty() {
                module
                    .as_deref()
                    .map_or_else(|| "app".to_string(), last_element)
            } else {
                last_element(dir)
            };
            targets.push(MainPackage { package, binary });
        }
    } else if module.is_none() {
        let files = go_files(app, "")?;
        targets.push(MainPackage {
            package: files.join(" "),
            binary: "app".to_string(),
        });
    } else if is_main_package(app, "")? {
        targets.push(MainPackage {
            package: ".".to_string(),
            binary: module
                .as_deref()
                .map_or_else(|| "app".to_string(), last_element),
        });
    } else {
        for name in app.list("cmd")? {
            let dir = format!("cmd/{name}");
            if app.is_dir(&dir) && is_main_package(app, &dir)? {
                targets.push(MainPackage {
                    package: format!("./{dir}"),
                    binary: name,
                });
            }
        }
    }
    if targets.is_empty() {
        return Err(Error::new(
            "go.mod found, but no main package: neither the module root nor any cmd/<name> directory is `package main`",
        )
        .hint("put the program in the root or in cmd/<name>, or name its packages in KILN_GO_TARGETS (kiln build --env KILN_GO_TARGETS=./path/to/main)"));
    }
    let mut dirs: Vec<String> = targets
        .iter()
        .map(|t| {
            if module.is_none() {
                String::new()
            } else {
                t.package
                    .trim_start_matches("./")
                    .trim_start_matches('.')
                    .to_string()
            }
        })
        .collect();
    dirs.dedup();
    let cgo = imports_c(app, &dirs)?;
    Ok(Some(Project {
        module,
        go,
        toolchain,
        targets,
        cgo,
    }))
}

/// `(process type, binary)` for each target: `web` for a single one.
fn processes(project: &Project) -> Vec<(String, String)> {
    match project.targets.as_slice() {
        [only] => vec![("web".to_string(), only.binary.clone())],
        many => many
            .iter()
            .map(|t| (t.binary.clone(), t.binary.clone()))
            .collect(),
    }
}

#[derive(serde::Serialize)]
struct Decisions<'a> {
    #[serde(flatten)]
    project: &'a Project,
    /// The Go release that builds the app (`1.24.4`), when kiln knows it at detect time.
    #[serde(rename = "go-version", skip_serializing_if = "Option::is_none")]
    go_version: Option<String>,
    /// Where that Go comes from: `stack`, `build environment`, or `Go module proxy` when
    /// kiln installs it.
    #[serde(rename = "go-from", skip_serializing_if = "Option::is_none")]
    go_from: Option<&'static str>,
    start: String,
}

/// `go-from` when kiln installs the toolchain.
const FROM_PROXY: &str = "Go module proxy";

/// The label that records the Go release that built the image's binaries.
pub(crate) const VERSION_LABEL: &str = "io.github.kiln-build.go.version";

/// The Go of kiln's stack for `target` (`1.24.4`), from its build image's lock.
fn stack_go(target: &Target) -> Option<String> {
    let line = inventory::provided(target, "golang-go")?;
    inventory::provided(target, &format!("golang-{line}-go"))
}

/// The Go that builds when nothing is installed, at detect time: the stack's, for a run image
/// of a kiln stack (detection runs where the build image's Go may not be), else the build
/// environment's.
fn detect_local_go(target: &Target) -> Option<(String, GoVersion, &'static str)> {
    if let Some(version) = stack_go(target) {
        let parsed = GoVersion::parse(&version)?;
        return Some((format!("go{version}"), parsed, "stack"));
    }
    let (text, parsed) = host_go_version().ok()?;
    Some((text, parsed, "build environment"))
}

/// The toolchain go.mod and `GOTOOLCHAIN` ask for instead of the local Go, if any.
fn choose(project: &Project, local: GoVersion, local_name: &str) -> Result<Option<Selected>> {
    let policy = toolchain::policy(toolchain::setting("GOTOOLCHAIN").as_deref())?;
    toolchain::select(
        local,
        local_name,
        project.go.as_deref(),
        project.toolchain.as_deref(),
        &policy,
    )
}

fn detect(context: &DetectContext<GoBuildpack>) -> CnbResult<DetectResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let targets = setting(context.platform.env(), "KILN_GO_TARGETS");
    let Some(project) = analyze(&app, targets.as_deref())? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    let start = processes(&project)
        .first()
        .map(|(_, binary)| binary.clone())
        .unwrap_or_default();
    let (go_version, go_from) = match detect_local_go(&context.target) {
        Some((name, version, from)) => match choose(&project, version, &name)? {
            Some(selected) => (
                Some(selected.name.trim_start_matches("go").to_string()),
                Some(FROM_PROXY),
            ),
            None => (Some(name.trim_start_matches("go").to_string()), Some(from)),
        },
        None => (None, None),
    };
    pass(
        "go",
        &Decisions {
            project: &project,
            go_version,
            go_from,
            start,
        },
    )
}

/// `GOARCH` (and `GOARM`) for a CNB target.
fn goarch(target: &Target) -> Vec<(&'static str, String)> {
    let mut vars = vec![("GOARCH", target.arch.clone())];
    if target.arch == "arm"
        && let Some(v) = target
            .arch_variant
            .as_deref()
            .and_then(|v| v.strip_prefix('v'))
    {
        vars.push(("GOARM", v.to_string()));
    }
    vars
}

/// The cache layer is good for one Go version and platform.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CacheKey {
    go: String,
    arch: String,
}

fn host_go_version() -> Result<(String, GoVersion)> {
    if cmd::which("go").is_none() {
        return Err(cmd::missing(
            "go",
            "the Go buildpack compiles with it",
            "install Go (Debian: apt-get install golang-go; or from https://go.dev/dl) and put it on PATH",
        ));
    }
    // `local`: in the app's directory a Go 1.21+ would otherwise switch to the toolchain
    // go.mod asks for, downloading it behind kiln's back.
    let text = cmd::output(
        Command::new("go")
            .args(["env", "GOVERSION"])
            .env("GOTOOLCHAIN", "local"),
    )?;
    let text = text.trim().to_string();
    let version = GoVersion::parse(&text)
        .ok_or_else(|| Error::new(format!("cannot read the Go version from `{text}`")))?;
    Ok((text, version))
}

fn build(context: &BuildContext<GoBuildpack>) -> CnbResult<BuildResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let targets = setting(context.platform.env(), "KILN_GO_TARGETS");
    let project = analyze(&app, targets.as_deref())?
        .ok_or_else(|| Error::new("go.mod disappeared between detect and build"))?;
    section("Go");
    let (local_text, local) = host_go_version()?;
    let (go, go_text, go_version) = match choose(&project, local, &local_text)? {
        None => {
            say(&format!(
                "using {local_text} of the build environment{}",
                project
                    .go
                    .as_ref()
                    .map(|g| format!(" (go.mod needs {g})"))
                    .unwrap_or_default()
            ));
            (PathBuf::from("go"), local_text, local)
        }
        Some(selected) => {
            let goroot = toolchain_layer(context, &selected, &local_text)?;
            (goroot.join("bin/go"), selected.name, selected.version)
        }
    };
    if project.cgo && std::env::consts::ARCH != rust_arch(&context.target.arch) {
        return Err(Error::new(format!(
            "the app uses cgo (a file imports \"C\"), which kiln cannot cross-compile for {}",
            context.target.arch
        ))
        .hint("build on a host of the target architecture, or remove the cgo dependency")
        .into());
    }

    let (cache, reused) = layers::keyed(
        context,
        &layer_name!("cache"),
        false,
        false,
        &CacheKey {
            go: go_text.clone(),
            arch: context.target.arch.clone(),
        },
    )?;
    say(if reused {
        "reusing the build and module caches"
    } else {
        "starting with empty build and module caches"
    });
    let bin_dir = layers::launch_bin(context, &layer_name!("bin"))?;

    let ldflags = "-s -w -buildid=";
    for target in &project.targets {
        let out = bin_dir.join(&target.binary);
        let mut go = Command::new(&go);
        go.current_dir(&context.app_dir)
            .arg("build")
            .arg("-trimpath")
            .arg(format!("-ldflags={ldflags}"));
        if go_version >= GoVersion(1, 18, 0) {
            go.arg("-buildvcs=false");
        }
        go.arg("-o").arg(&out);
        if project.module.is_none() {
            go.args(target.package.split(' '));
        } else {
            go.arg(&target.package);
        }
        go.env("CGO_ENABLED", if project.cgo { "1" } else { "0" })
            .env("GOOS", "linux")
            .env("GOTOOLCHAIN", "local")
            // A toolchain kiln installed finds its own root from where it is.
            .env_remove("GOROOT")
            .env("GOCACHE", cache.path().join("build"))
            .env("GOMODCACHE", cache.path().join("mod"))
            .env("GOPATH", cache.path().join("gopath"))
            .envs(goarch(&context.target));
        if project.module.is_none() {
            go.env("GO111MODULE", "off");
        }
        cmd::run(&mut go)?;
    }
    // The module cache is read-only by design; make it deletable so the next build can
    // replace the layer.
    let _ = cmd::output(Command::new("chmod").args(["-R", "u+w"]).arg(cache.path()));

    let mut launch = LaunchBuilder::new();
    for (index, (kind, binary)) in processes(&project).iter().enumerate() {
        let path = bin_dir.join(binary).to_string_lossy().into_owned();
        say(&format!("process {kind}: {path}"));
        launch.process(process::process(kind, &[path], index == 0)?);
    }
    launch.label(Label {
        key: VERSION_LABEL.to_string(),
        value: go_text.trim_start_matches("go").to_string(),
    });
    BuildResultBuilder::new().launch(launch.build()).build()
}

/// What the toolchain layer holds; reused while it stays the same.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ToolchainKey {
    toolchain: String,
    module_version: String,
    /// The pinned SHA-256, if any: a new pin is checked against a fresh download.
    sha256: Option<String>,
}

/// Installs `selected` into the cache layer `toolchain` (kept while the release and the pin
/// stay the same) and returns its `GOROOT`.
fn toolchain_layer(
    context: &BuildContext<GoBuildpack>,
    selected: &Selected,
    local_text: &str,
) -> CnbResult<PathBuf> {
    let check = toolchain::check()?;
    let key = ToolchainKey {
        toolchain: selected.name.clone(),
        module_version: toolchain::module_version(&selected.name)?,
        sha256: match &check {
            toolchain::Check::Pinned(sha) => Some(sha.clone()),
            toolchain::Check::ChecksumDatabase => None,
        },
    };
    let (layer, reused) = layers::keyed(context, &layer_name!("toolchain"), false, false, &key)?;
    let goroot = layer.path().join("go");
    say(&format!(
        "{} asks for {}; the build environment has {local_text}",
        selected.why, selected.name
    ));
    if reused && goroot.join("bin/go").is_file() {
        say(&format!(
            "reusing the Go toolchain {} from the cache",
            selected.name
        ));
    } else {
        toolchain::install(&layer.path(), selected, Path::new("go"), local_text, &check)?;
    }
    let reported = toolchain::check_reported(&goroot, &selected.name)?;
    say(&format!("using {reported} ({})", goroot.display()));
    Ok(goroot)
}

/// Rust's name for a CNB architecture.
fn rust_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn versions_order() {
        assert!(GoVersion::parse("1.21").unwrap() > GoVersion::parse("go1.19.8").unwrap());
        assert_eq!(GoVersion::parse("1.22rc1"), Some(GoVersion(1, 22, 0)));
        assert_eq!(GoVersion::parse("x"), None);
    }

    #[test]
    fn package_clause_skips_comments() {
        assert_eq!(
            package_name("// x\n/* a\n b */\npackage main\n"),
            Some("main")
        );
        assert_eq!(package_name("package lib // c\n"), Some("lib"));
        assert_eq!(package_name(""), None);
    }

    #[test]
    fn main_packages() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("go.mod", "module example.com/shop\n\ngo 1.19\n"),
                ("lib.go", "package shop\n"),
                ("cmd/api/main.go", "package main\n"),
                ("cmd/worker/main.go", "package main\nimport \"C\"\n"),
                ("cmd/tools/x.go", "package tools\n"),
            ],
        );
        let app = App::new(d.path());
        let p = analyze(&app, None).unwrap().unwrap();
        assert_eq!(p.go.as_deref(), Some("1.19"));
        let names: Vec<_> = p.targets.iter().map(|t| t.binary.as_str()).collect();
        assert_eq!(names, ["api", "worker"]);
        assert!(p.cgo);
        assert_eq!(processes(&p)[0], ("api".to_string(), "api".to_string()));
        let only = analyze(&app, Some("./cmd/api")).unwrap().unwrap();
        assert_eq!(processes(&only), [("web".to_string(), "api".to_string())]);
        assert!(!only.cgo);
        assert!(analyze(&app, Some("./cmd/nope")).is_err());

        write(d.path(), &[("main.go", "package main\n")]);
        let root = analyze(&app, None).unwrap().unwrap();
        assert_eq!(root.targets[0].binary, "shop");
    }

    #[test]
    fn libraries_and_bad_modules_are_errors() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[("go.mod", "module m\n"), ("lib.go", "package m\n")],
        );
        let err = analyze(&App::new(d.path()), None).unwrap_err().to_string();
        assert!(err.contains("no main package"), "{err}");
        write(d.path(), &[("go.mod", "go 1.21\n")]);
        assert!(analyze(&App::new(d.path()), None).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(analyze(&App::new(empty.path()), None).unwrap(), None);
    }
}
