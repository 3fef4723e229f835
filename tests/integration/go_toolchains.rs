//! kiln/go installing the Go toolchain go.mod asks for from a Go module proxy — here a fake
//! one on 127.0.0.1 (no proxy or checksum database is reachable from these machines) that
//! serves the build host's own Go repackaged as the module `golang.org/toolchain` under a
//! release name no Go has (`go1.99.0`), its programs patched to report that name. The build
//! downloads it, checks it against the pinned SHA-256, builds with it, labels the image, and
//! the image answers under podman with the version the downloaded toolchain compiled in.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::Digest as _;

use crate::assert_contains;
use crate::servers::{FakeRegistry, Reply};
use crate::util::{Podman, ScratchDir, TestEnv, free_port, oci, require, sh};

const MODULE: &str = "golang.org/toolchain";

/// The host's Go: its `GOROOT` and release name (`go1.19.8`).
fn host_go() -> Option<(PathBuf, String)> {
    if !require("go") || !require("zip") {
        return None;
    }
    let goroot = sh("go", &["env", "GOROOT"]).trim().to_string();
    let version = sh("go", &["env", "GOVERSION"]).trim().to_string();
    Some((PathBuf::from(goroot), version))
}

/// A release name no Go has, as long as `real` (so the programs can be patched in place):
/// `go1.99.0` for `go1.19.8`.
fn fake_name(real: &str) -> String {
    let patch_len = real.len() - "go1.99.".len();
    let patch = if patch_len == 1 {
        "0".to_string()
    } else {
        format!("1{}", "0".repeat(patch_len - 1))
    };
    format!("go1.99.{patch}")
}

/// Replaces every `from` in the file at `path` by `to` (of the same length).
fn patch(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut bytes = fs::read(path).unwrap();
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    fs::write(path, bytes).unwrap();
}

/// The module zip of the host's Go renamed `name`: `bin/`, `pkg/tool/`, `pkg/include/`,
/// `src/` without `cmd` and test data, and `VERSION`, under the module's zip prefix.
fn toolchain_zip(goroot: &Path, real: &str, name: &str, version: &str) -> Vec<u8> {
    let scratch = ScratchDir::new("kiln-go-toolchain-");
    let prefix = format!("{MODULE}@{version}");
    let root = scratch.path().join(&prefix);
    fs::create_dir_all(&root).unwrap();
    let copy = |rel: &str, extra: &[&str]| {
        let dest = root.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let mut c = Command::new("cp");
        c.arg("-rL").args(extra).arg(goroot.join(rel)).arg(&dest);
        assert!(c.status().unwrap().success(), "{c:?}");
    };
    copy("bin", &[]);
    copy("pkg/tool", &[]);
    if goroot.join("pkg/include").exists() {
        copy("pkg/include", &[]);
    }
    copy("src", &[]);
    fs::remove_dir_all(root.join("src/cmd")).unwrap();
    sh(
        "find",
        &[
            root.join("src").to_str().unwrap(),
            "-name",
            "testdata",
            "-prune",
            "-exec",
            "rm",
            "-rf",
            "{}",
            "+",
        ],
    );
    // Programs compiled in the release name: `go env GOVERSION`, the compiler's object
    // headers and `runtime.Version()` of what it builds all say `name`.
    for dir in [root.join("bin"), root.join("pkg/tool/linux_amd64")] {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            patch(&entry.path(), real.as_bytes(), name.as_bytes());
        }
    }
    fs::write(root.join("VERSION"), format!("{name}\n")).unwrap();
    // As Go's distribution does: a module zip holds no go.mod below its root.
    sh(
        "find",
        &[
            root.to_str().unwrap(),
            "-name",
            "go.mod",
            "-execdir",
            "mv",
            "go.mod",
            "_go.mod",
            ";",
        ],
    );
    let zip = scratch.path().join("out.zip");
    let status = Command::new("zip")
        .args(["-q", "-r", "-D", "-1"])
        .arg(&zip)
        .arg(&prefix)
        .current_dir(scratch.path())
        .status()
        .unwrap();
    assert!(status.success());
    fs::read(zip).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A Go module proxy on 127.0.0.1 with the given toolchain zips, by module version.
struct FakeProxy {
    server: FakeRegistry,
}

impl FakeProxy {
    fn start(zips: Vec<(String, Vec<u8>)>, listed: &[&str]) -> Self {
        let mut routes: HashMap<String, Vec<u8>> = HashMap::new();
        let base = format!("/{MODULE}/@v");
        for (version, zip) in zips {
            routes.insert(format!("{base}/{version}.zip"), zip);
            routes.insert(
                format!("{base}/{version}.mod"),
                format!("module {MODULE}\n").into_bytes(),
            );
            routes.insert(
                format!("{base}/{version}.info"),
                format!("{{\"Version\":\"{version}\",\"Time\":\"2026-01-01T00:00:00Z\"}}")
                    .into_bytes(),
            );
        }
        routes.insert(format!("{base}/list"), listed.join("\n").into_bytes());
        let routes = Arc::new(Mutex::new(routes));
        let server = FakeRegistry::start(move |request, _| {
            match routes.lock().unwrap().get(&request.path) {
                Some(body) => Reply::new(200, body.clone()),
                None => Reply::new(404, "not found"),
            }
        });
        Self { server }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.host())
    }

    fn fetched(&self, suffix: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    }
}

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello from %s\n", runtime.Version())
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		panic(err)
	}
}
"#;

/// go.mod asking for `fake`: through the `go` line where the host's Go can read a go.mod
/// naming a newer Go (before 1.21 it ignores the language version it does not know), else
/// through a `toolchain` line.
fn go_mod(real: &str, fake: &str) -> String {
    let minor: u32 = real
        .trim_start_matches("go1.")
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap();
    let fake_line = fake.trim_start_matches("go").rsplit_once('.').unwrap().0;
    if minor < 21 && fake.ends_with(".0") {
        format!("module example.com/hello\n\ngo {fake_line}\n")
    } else {
        format!("module example.com/hello\n\ngo 1.{minor}\n\ntoolchain {fake}\n")
    }
}

fn build(env: &TestEnv, app: &Path, proxy: &FakeProxy, extra: &[(&str, &str)]) -> (bool, String) {
    let mut command = env.kiln();
    command
        .env("GOPROXY", proxy.url())
        .args(["build", "--path"])
        .arg(app)
        .args(["--output", &oci(&env.path("out"), "hello")])
        .args(["--run-image", &env.run_image()]);
    for (name, value) in extra {
        command.args(["--env", &format!("{name}={value}")]);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_toolchain_go_mod_asks_for_is_downloaded_checked_used_and_labelled() {
    let Some((goroot, real)) = host_go() else {
        return;
    };
    let fake = fake_name(&real);
    let version = format!("v0.0.1-{fake}.linux-amd64");
    let zip = toolchain_zip(&goroot, &real, &fake, &version);
    let sha = sha256_hex(&zip);
    let proxy = FakeProxy::start(
        vec![(version.clone(), zip)],
        &[
            &version,
            "v0.0.1-go1.98.3.linux-amd64",
            "v0.0.1-go1.98.1.linux-amd64",
        ],
    );
    let env = TestEnv::new();
    let app = env.app(
        "hello",
        &[("go.mod", &go_mod(&real, &fake)), ("main.go", MAIN_GO)],
    );

    // kiln detect says which Go builds it and where it comes from.
    let out = env
        .kiln()
        .env("GOPROXY", proxy.url())
        .args(["detect", "--format", "json", "--path"])
        .arg(&app)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan = &summary["plan"][0]["requires"][0]["metadata"];
    assert_eq!(
        plan["go-version"],
        fake.trim_start_matches("go"),
        "{summary}"
    );
    assert_eq!(plan["go-from"], "Go module proxy", "{summary}");

    // The checksum database turned off and no pin: refused before any download.
    let (ok, log) = build(&env, &app, &proxy, &[("GOSUMDB", "off")]);
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        "a downloaded Go toolchain must be checked, and GOSUMDB=off turns the Go checksum database off for it"
    );
    assert_contains!(log, "KILN_GO_TOOLCHAIN_SHA256");
    assert_eq!(proxy.fetched(".zip"), 0);

    // No pin, and no checksum database reachable (none is from these machines; a machine
    // that reaches one is told it has no such toolchain): the error says what to set.
    let (ok, log) = build(&env, &app, &proxy, &[]);
    assert!(!ok, "{log}");
    assert_contains!(log, &format!("cannot install Go toolchain {fake}"));
    assert_contains!(log, "verifying");
    assert_contains!(
        log,
        "Go checks a downloaded toolchain against its checksum database"
    );
    assert!(!log.contains(&format!("using {fake}")), "{log}");
    // Go checks the module's go.mod against the database before it fetches the zip.
    assert_eq!(proxy.fetched(".zip"), 0);

    // A pin that is not the zip's: the download is refused and nothing runs from it.
    let wrong = "0".repeat(64);
    let (ok, log) = build(&env, &app, &proxy, &[("KILN_GO_TOOLCHAIN_SHA256", &wrong)]);
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        &format!(
            "the Go toolchain {MODULE}@{version} from {} has SHA-256 {sha}, not the {wrong} KILN_GO_TOOLCHAIN_SHA256 pins",
            proxy.url()
        )
    );
    assert!(!log.contains(&format!("using {fake}")), "{log}");

    // The right pin: downloaded, checked, unpacked, used.
    let (ok, log) = build(&env, &app, &proxy, &[("KILN_GO_TOOLCHAIN_SHA256", &sha)]);
    assert!(ok, "{log}");
    assert_contains!(
        log,
        &format!("asks for {fake}; the build environment has {real}")
    );
    assert_contains!(
        log,
        &format!(
            "downloaded {MODULE}@{version} from {}: SHA-256 {sha}, as KILN_GO_TOOLCHAIN_SHA256 pins",
            proxy.url()
        )
    );
    assert_contains!(log, &format!("using {fake} ("));
    assert_eq!(proxy.fetched(&format!("{version}.zip")), 2);
    let inspection = env.inspect(&oci(&env.path("out"), "hello"));
    assert_eq!(
        inspection["labels"]["io.github.kiln-build.go.version"],
        fake.trim_start_matches("go"),
        "{inspection}"
    );

    // The next build reuses the toolchain layer: no download.
    fs::write(app.join("CHANGED"), "x").unwrap();
    let (ok, log) = build(&env, &app, &proxy, &[("KILN_GO_TOOLCHAIN_SHA256", &sha)]);
    assert!(ok, "{log}");
    assert_contains!(
        log,
        &format!("reusing the Go toolchain {fake} from the cache")
    );
    assert_eq!(proxy.fetched(&format!("{version}.zip")), 2);

    // The binary was compiled by the downloaded toolchain.
    if let Some(podman) = Podman::new() {
        let served = podman.serve(&oci(&env.path("out"), "hello"), free_port());
        let (code, body) = served.get("/").unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body.trim(), format!("Hello from {fake}"));
    }
}

#[test]
fn a_toolchain_no_proxy_has_names_the_ones_it_has() {
    if !require("go") {
        return;
    }
    let proxy = FakeProxy::start(
        Vec::new(),
        &[
            "v0.0.1-go1.98.3.linux-amd64",
            "v0.0.1-go1.98.1.linux-amd64",
            "v0.0.1-go1.97.2.linux-amd64",
            "v0.0.1-go1.97.2.linux-arm64",
            "v0.0.1-go1.99rc1.linux-amd64",
        ],
    );
    let env = TestEnv::new();
    let app = env.app(
        "hello",
        &[
            ("go.mod", "module example.com/hello\n\ngo 1.19\n\n"),
            ("main.go", MAIN_GO),
        ],
    );
    // GOTOOLCHAIN asks for it (an older go command cannot read a newer go.mod), and the
    // checksum database is never reached: the proxy has no such toolchain.
    let (ok, log) = build(
        &env,
        &app,
        &proxy,
        &[
            ("GOTOOLCHAIN", "go1.99.4"),
            ("KILN_GO_TOOLCHAIN_SHA256", &"a".repeat(64)),
        ],
    );
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        &format!(
            "cannot install Go toolchain go1.99.4 (GOTOOLCHAIN=go1.99.4; the build environment has {}) from the Go module proxy {}: no proxy has it",
            sh("go", &["env", "GOVERSION"]).trim(),
            proxy.url()
        )
    );
    assert_contains!(
        log,
        "the Go module proxy has go1.98.3, go1.97.2; ask for one of those in go.mod"
    );

    // Nothing reachable at all: the error names the release, the build environment's Go
    // and the setting.
    let (ok, log) = build(
        &env,
        &app,
        &proxy,
        &[
            ("GOTOOLCHAIN", "go1.99.4"),
            ("GOPROXY", "http://127.0.0.1:1"),
        ],
    );
    assert!(!ok, "{log}");
    assert_contains!(log, "cannot install Go toolchain go1.99.4");
    assert_contains!(log, "from the Go module proxy http://127.0.0.1:1");
    assert_contains!(log, "GOPROXY");
}
