//! kiln/nodejs installing the Node.js an app asks for, npm beside it, and the package
//! manager `packageManager` pins, from the npm registry the user configured — here a fake
//! one on 127.0.0.1 ([`FakeNpm`]) whose Node.js is a shell script, so no network is needed.
//! One test uses the real configured registry when npm can reach it.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::assert_contains;
use crate::npm_registry::{FakeNpm, node_package, sha512_hex, tarball};
use crate::util::{ScratchDir, TestEnv, busybox_run_image, oci, require};

/// A registry with Node.js 20.18.0, 22.9.0, 22.11.0 and 24.1.0, npm 10.9.0 (for Node.js
/// 18.17+/20.5+) and npm 11.0.0 (for 24+).
fn registry() -> FakeNpm {
    let mut npm = FakeNpm::start();
    for version in ["20.18.0", "22.9.0", "22.11.0", "24.1.0"] {
        npm.publish_node(version);
    }
    npm.publish_npm("10.9.0", "^18.17.0 || >=20.5.0");
    npm.publish_npm("11.0.0", ">=24.0.0");
    npm
}

/// A run image that says it is Debian 12 (what kiln's stacks are), so kiln/nodejs knows it
/// provides Node.js 18 — busybox inside, as no Node.js runs in these tests' images.
fn debian_labelled_run_image(env: &TestEnv) -> String {
    let dir = env.path("debian-run-image");
    busybox_run_image::write_run_image_as(&dir, "run:12", ("debian", "12")).unwrap();
    format!("oci:{}:run:12", dir.display())
}

fn detect(env: &TestEnv, app: &Path, npm: &FakeNpm) -> (Value, String) {
    let out = env
        .kiln()
        .env("npm_config_registry", npm.url())
        .args(["detect", "--format", "json", "--path"])
        .arg(app)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}); stderr:\n{stderr}"));
    (summary, stderr)
}

fn node_plan(summary: &Value) -> Value {
    summary["plan"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requires"][0]["name"] == "node")
        .map_or_else(
            || panic!("no node plan entry: {summary}"),
            |e| e["requires"][0]["metadata"].clone(),
        )
}

fn build(env: &TestEnv, app: &Path, npm: &FakeNpm, path: Option<&Path>) -> (bool, String) {
    let mut command = env.kiln();
    command
        .env("npm_config_registry", npm.url())
        // A refused download is not retried (npm would back off for a minute).
        .env("npm_config_fetch_retries", "0")
        .args(["build", "--path"])
        .arg(app)
        .args(["--output", &oci(&env.path("out"), "app")])
        .args(["--run-image", &debian_labelled_run_image(env)]);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn detect_picks_the_highest_release_in_range_and_the_cc_run_image() {
    if !require("npm") {
        return;
    }
    let npm = registry();
    let env = TestEnv::new();
    let app = env.app(
        "api",
        &[
            (
                "package.json",
                r#"{"name": "api", "engines": {"node": "22.x"}, "scripts": {"start": "node server.js"}}"#,
            ),
            ("server.js", ""),
        ],
    );
    let (summary, stderr) = detect(&env, &app, &npm);
    let plan = node_plan(&summary);
    assert_eq!(plan["node"], "22.11.0", "{summary}\n{stderr}");
    assert_eq!(plan["node-from"], "npm registry");
    assert_eq!(
        plan["run-image-mixins"],
        json!(["libc6", "libgcc-s1", "libstdc++6"])
    );
    // Only the C and C++ runtime libraries: the `cc` flavour, not `nodejs`.
    assert_eq!(summary["run_image"], "kiln/stacks/trixie-cc:latest");

    // A start script that needs the shell keeps the shell in the run image.
    let app = env.app(
        "web",
        &[
            (
                "package.json",
                r#"{"name": "web", "scripts": {"start": "PORT=${PORT:-3000} node server.js"}}"#,
            ),
            (".nvmrc", "lts/jod\n"),
            ("server.js", ""),
        ],
    );
    let (summary, _) = detect(&env, &app, &npm);
    let plan = node_plan(&summary);
    assert_eq!(plan["node"], "22.11.0", "{summary}");
    assert_eq!(summary["run_image"], "kiln/stacks/trixie-nodejs:latest");

    // Bookworm's Node.js 18 meets `18`: kiln builds on that stack, nothing is installed and
    // nothing asked of the registry.
    let asked = npm.server.requests().len();
    let app = env.app(
        "old",
        &[("package.json", r#"{"name": "old"}"#), (".nvmrc", "18\n")],
    );
    let (summary, _) = detect(&env, &app, &npm);
    let plan = node_plan(&summary);
    assert_eq!(plan["node"], "18.20.4", "{summary}");
    assert!(plan.get("node-from").is_none(), "{summary}");
    assert_eq!(summary["run_image"], "kiln/stacks/bookworm-nodejs:latest");
    assert_eq!(npm.server.requests().len(), asked);
}

#[test]
fn a_range_no_release_meets_names_itself_its_file_and_the_releases() {
    if !require("npm") {
        return;
    }
    let npm = registry();
    let env = TestEnv::new();
    let app = env.app(
        "future",
        &[
            ("package.json", r#"{"name": "future"}"#),
            (".nvmrc", "30\n"),
        ],
    );
    let (summary, _) = detect(&env, &app, &npm);
    assert_eq!(summary["detected"], false, "{summary}");
    let output = summary["results"].to_string();
    assert_contains!(output, "no Node.js release matches `30` (from .nvmrc)");
    assert_contains!(
        output,
        "has Node.js 24.1.0, 22.11.0, 20.18.0 (the newest of each line)"
    );
    assert_contains!(output, &format!("({})", node_package()));
}

#[test]
fn build_installs_node_and_npm_into_a_cached_layer_and_labels_the_image() {
    if !require("npm") {
        return;
    }
    let npm = registry();
    let env = TestEnv::new();
    let app = env.app(
        "api",
        &[
            (
                "package.json",
                r#"{"name": "api", "engines": {"node": "^22.9"}, "scripts": {"start": "node server.js"}}"#,
            ),
            ("server.js", "console.log('hi')\n"),
        ],
    );
    let (ok, log) = build(&env, &app, &npm, None);
    assert!(ok, "{log}");
    assert_contains!(
        log,
        &format!(
            "installing Node.js 22.11.0 from the npm registry http://{} ({})",
            npm.server.host(),
            node_package()
        )
    );
    // npm 11 needs Node.js 24: the newest npm for Node.js 22 is 10.9.0.
    assert_contains!(log, "installed npm 10.9.0 beside it");
    // The installed (fake) node ran.
    assert_contains!(log, "node --version: v22.11.0");
    let tarball = format!("/tarballs/{}-22.11.0.tgz", node_package());
    let fetched = |path: &str| {
        npm.server
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    };
    assert_eq!(fetched(&tarball), 1);

    let inspection = env.inspect(&oci(&env.path("out"), "app"));
    assert_eq!(
        inspection["labels"]["io.github.kiln-build.nodejs.version"], "22.11.0",
        "{inspection}"
    );
    let layers = inspection.to_string();
    assert_contains!(layers, "Layer: 'node', Created by buildpack: kiln/nodejs");
    assert_contains!(layers, "PATH=/layers/kiln_nodejs/node/bin:");

    // The next build reuses the layer: no download.
    fs::write(app.join("CHANGED"), "x").unwrap();
    let (ok, log) = build(&env, &app, &npm, None);
    assert!(ok, "{log}");
    assert_contains!(log, "reusing Node.js 22.11.0");
    assert_eq!(fetched(&tarball), 1);
}

/// A `PATH` with everything the host's has except corepack, pnpm and Yarn, as in
/// Debian 12's build image.
fn path_without_corepack(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let host = std::env::var_os("PATH").unwrap_or_default();
    for source in std::env::split_paths(&host) {
        let Ok(entries) = fs::read_dir(&source) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let skip = ["corepack", "pnpm", "pnpx", "yarn", "yarnpkg"];
            if skip.iter().any(|s| name == *s) || bin.join(&name).exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(entry.path(), bin.join(&name));
        }
    }
    bin
}

/// pnpm 9.12.0: `pnpm install` makes a `node_modules` and says which node it runs with.
fn publish_pnpm(npm: &mut FakeNpm) -> Vec<u8> {
    let script = "#!/bin/sh\necho \"fake pnpm 9.12.0 $* (node $(node --version))\"\nmkdir -p node_modules/left-pad && echo 'module.exports = 1' > node_modules/left-pad/index.js\n";
    let tgz = tarball(&[
        (
            "package.json",
            json!({ "name": "pnpm", "version": "9.12.0", "bin": { "pnpm": "bin/pnpm.cjs" } })
                .to_string(),
            false,
        ),
        ("bin/pnpm.cjs", script.to_string(), false),
    ]);
    npm.publish("pnpm", "9.12.0", &json!({}), tgz.clone());
    tgz
}

#[test]
fn a_pinned_pnpm_is_installed_without_corepack_and_its_hash_checked() {
    if !require("npm") {
        return;
    }
    let mut npm = registry();
    let tgz = publish_pnpm(&mut npm);
    let env = TestEnv::new();
    let path = path_without_corepack(&env.path("tools"));
    let package = |hash: &str| {
        format!(
            r#"{{"name": "shop", "packageManager": "pnpm@9.12.0+sha512.{hash}", "engines": {{"node": "22.x"}}, "dependencies": {{"left-pad": "1.3.0"}}, "main": "index.js"}}"#
        )
    };
    let app = env.app(
        "shop",
        &[
            ("package.json", &package(&sha512_hex(&tgz))),
            ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"),
            ("index.js", ""),
        ],
    );
    let (ok, log) = build(&env, &app, &npm, Some(&path));
    assert!(ok, "{log}");
    assert_contains!(log, "installing pnpm 9.12.0 from the npm registry http://");
    assert_contains!(log, "checked against packageManager's hash");
    // The installed pnpm ran, with the installed Node.js first on PATH.
    assert_contains!(
        log,
        "fake pnpm 9.12.0 install --frozen-lockfile --prod (node v22.11.0)"
    );

    // A hash that is not the tarball's stops the build before anything runs.
    let scratch = ScratchDir::new("kiln-pnpm-hash-");
    let wrong = "0".repeat(128);
    let app = env.app(
        "shop2",
        &[
            ("package.json", &package(&wrong)),
            ("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"),
            ("index.js", ""),
        ],
    );
    let (ok, log) = build(&env, &app, &npm, Some(&path));
    assert!(!ok, "{log}");
    assert_contains!(log, "pnpm@9.12.0 from the npm registry");
    assert_contains!(
        log,
        &format!("does not match packageManager's sha512 {wrong}")
    );
    assert!(!log.contains("fake pnpm 9.12.0 install"), "{log}");
    drop(scratch);
}

#[test]
fn a_tarball_that_does_not_match_the_registry_integrity_is_refused() {
    if !require("npm") {
        return;
    }
    let mut npm = registry();
    // The registry lists another tarball's integrity for 22.12.0.
    let other = tarball(&[("bin/node", "#!/bin/sh\necho other\n".to_string(), true)]);
    let real = tarball(&[("bin/node", "#!/bin/sh\necho v22.12.0\n".to_string(), true)]);
    npm.publish_as(
        node_package(),
        "22.12.0",
        &json!({}),
        real,
        Some(&crate::npm_registry::integrity(&other)),
    );
    let env = TestEnv::new();
    let app = env.app(
        "api",
        &[
            (
                "package.json",
                r#"{"name": "api", "engines": {"node": "22.x"}}"#,
            ),
            ("server.js", ""),
        ],
    );
    let (ok, log) = build(&env, &app, &npm, None);
    assert!(!ok, "{log}");
    // npm itself refuses a tarball that does not match the integrity it lists (EINTEGRITY);
    // either way the build stops and names the package.
    assert_contains!(log, &format!("{}@22.12.0", node_package()));
    assert!(!log.contains("node --version: v22.12.0"), "{log}");
}

/// The real registry npm is configured with: Node.js 22 for a trivial app, its
/// `node --version` checked at build time. Needs the network; skipped (with the reason)
/// only when npm is not installed.
#[test]
fn node_22_from_the_configured_registry() {
    if !require("npm") {
        return;
    }
    let env = TestEnv::new();
    let app = env.app(
        "hello",
        &[
            (
                "package.json",
                r#"{"name": "hello", "engines": {"node": "22.x"}, "scripts": {"start": "node server.js"}}"#,
            ),
            ("server.js", "console.log('hello')\n"),
        ],
    );
    let out = env
        .kiln()
        .args(["build", "--path"])
        .arg(&app)
        .args(["--output", &oci(&env.path("out"), "hello")])
        .args(["--run-image", &debian_labelled_run_image(&env)])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let version = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("node --version: v"))
        .unwrap_or_else(|| panic!("no node --version line:\n{log}"));
    assert!(version.starts_with("22."), "{version}\n{log}");
    let inspection = env.inspect(&oci(&env.path("out"), "hello"));
    assert_eq!(
        inspection["labels"]["io.github.kiln-build.nodejs.version"],
        version
    );
}
