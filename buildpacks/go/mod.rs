//! `kiln/go`: builds a Go module's main packages with the build host's `go` into static
//! binaries, one process each.
//!
//! - **Detects** `go.mod`, or a lone `main.go` (built as a single-directory program).
//! - **Version**: the `go` directive of `go.mod` is the least Go version the module needs;
//!   the host's Go must be at least that (`GOTOOLCHAIN=local`: kiln never downloads a
//!   toolchain behind your back).
//! - **Main packages**: `KILN_GO_TARGETS` (space- or comma-separated packages, `./cmd/api`),
//!   else the module root if it is `package main`, else every `cmd/<name>` that is. One
//!   target becomes the `web` process; several become processes named after their binaries,
//!   the first being the default.
//! - **Build**: `CGO_ENABLED=0` unless a file imports "C"; `-trimpath`, no build ID and no VCS
//!   stamp, so the same source gives the same binary; `GOOS`/`GOARCH` from the run image's
//!   platform. The build and module caches live in a cache layer.

use std::process::Command;

use libcnb::Target;
use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::LaunchBuilder;
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::{
    CnbResult, Error, Result, buildpack, cmd, layers, pass, process, say, section, setting,
};

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

fn analyze(app: &App, targets_env: Option<&str>) -> Result<Option<Project>> {
    let go_mod = app.read("go.mod")?;
    if go_mod.is_none() && !app.is_file("main.go") {
        return Ok(None);
    }
    let (module, go) = match &go_mod {
        Some(text) => {
            let mut module = None;
            let mut go = None;
            for line in text.lines() {
                let line = line.split("//").next().unwrap_or("").trim();
                if let Some(rest) = line.strip_prefix("module ") {
                    module = Some(rest.trim().trim_matches('"').to_string());
                } else if let Some(rest) = line.strip_prefix("go ") {
                    go = Some(rest.trim().to_string());
                }
            }
            if module.is_none() {
                return Err(Error::new("go.mod has no `module` directive")
                    .hint("start go.mod with `module <path>`, as `go mod init <path>` writes"));
            }
            (module, go)
        }
        None => (None, None),
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
    start: String,
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
    pass(
        "go",
        &Decisions {
            project: &project,
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
    let text = cmd::output(Command::new("go").args(["env", "GOVERSION"]))?;
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
    let (host_text, host) = host_go_version()?;
    if let Some(wanted) = &project.go {
        let needed = GoVersion::parse(wanted).ok_or_else(|| {
            Error::new(format!("go.mod: `go {wanted}` is not a Go version"))
                .hint("write the directive as `go 1.21` or `go 1.21.3`")
        })?;
        if needed > host {
            return Err(Error::new(format!(
                "go.mod asks for Go {wanted} or newer (its `go` directive), but the build host has {host_text}"
            ))
            .hint(format!(
                "install Go {wanted} or newer on the build host and put it first on PATH, or lower the `go` directive if the code allows"
            ))
            .into());
        }
    }
    say(&format!(
        "using {host_text} of the build environment{}",
        project
            .go
            .as_ref()
            .map(|g| format!(" (go.mod needs {g})"))
            .unwrap_or_default()
    ));
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
            go: host_text.clone(),
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
        let mut go = Command::new("go");
        go.current_dir(&context.app_dir)
            .arg("build")
            .arg("-trimpath")
            .arg(format!("-ldflags={ldflags}"));
        if host >= GoVersion(1, 18, 0) {
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
    BuildResultBuilder::new().launch(launch.build()).build()
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
