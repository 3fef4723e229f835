//! kiln's built-in buildpacks beyond the examples: packaged as a standalone buildpack and run
//! as a third-party one, lockfiles of Poetry and Pipenv installed exactly, a Node.js build
//! script with development dependencies pruned from the image.

use std::fs;

use serde_json::Value;

use crate::assert_contains;
use crate::util::{TestEnv, layer_entries};

fn build_json(env: &TestEnv, args: &[&str]) -> (Value, String) {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = env.run(&all);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    (serde_json::from_slice(&out.stdout).unwrap(), log)
}

/// Paths in the layer `name` of `image` in the env's store.
pub(crate) fn layer_paths(env: &TestEnv, report: &Value, name: &str) -> Vec<String> {
    let digest = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name}: {report}"))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    layer_entries(&env.home().join("store"), &digest)
        .into_iter()
        .map(|e| e.path)
        .collect()
}

#[test]
fn a_packaged_builtin_runs_as_a_third_party_buildpack() {
    let env = TestEnv::new();
    let dir = env.path("packaged/python");
    env.ok(&["buildpack", "package", "kiln/python", dir.to_str().unwrap()]);
    assert!(dir.join("buildpack.toml").is_file());
    assert!(dir.join("bin/kiln").is_file());
    assert_eq!(
        fs::read_link(dir.join("bin/detect")).unwrap(),
        std::path::Path::new("kiln")
    );
    // A second package into the same place is refused, not merged.
    let again = env.run(&["buildpack", "package", "kiln/python", dir.to_str().unwrap()]);
    assert!(!again.status.success());

    let app = env.app("job", &[("main.py", "print('nightly job done')\n")]);
    let (report, log) = build_json(
        &env,
        &[
            "job",
            "--path",
            app.to_str().unwrap(),
            "--buildpack",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        report["buildpacks"],
        serde_json::json!(["kiln/python@0.1.0"])
    );
    assert_eq!(report["run_image"], "kiln/stacks/trixie-python:latest");
    assert_contains!(log, "process web: python3 main.py");
}

#[test]
fn poetry_and_pipenv_locks_install_exactly_what_they_pin() {
    let env = TestEnv::new();
    let poetry = env.app(
        "poetry-app",
        &[
            (
                "pyproject.toml",
                "[tool.poetry]\nname = \"svc\"\nversion = \"0.1.0\"\npackage-mode = false\n\n[tool.poetry.dependencies]\npython = \"^3.11\"\nitsdangerous = \"^2.1\"\n\n[tool.poetry.group.dev.dependencies]\nsix = \"*\"\n",
            ),
            (
                "poetry.lock",
                "[[package]]\nname = \"itsdangerous\"\nversion = \"2.1.2\"\nfiles = []\n\n[[package]]\nname = \"six\"\nversion = \"1.16.0\"\nfiles = []\n\n[metadata]\nlock-version = \"2.0\"\n",
            ),
            ("main.py", "import itsdangerous\n"),
        ],
    );
    let (report, log) = build_json(&env, &["poetry-app", "--path", poetry.to_str().unwrap()]);
    assert_contains!(log, "packages pinned by poetry.lock: 1");
    let paths = layer_paths(&env, &report, "kiln/python:packages");
    assert!(
        paths
            .iter()
            .any(|p| p.contains("itsdangerous-2.1.2.dist-info")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("/six")),
        "dev group installed"
    );

    let pipenv = env.app(
        "pipenv-app",
        &[
            ("Pipfile", "[packages]\nitsdangerous = \"*\"\n"),
            (
                "Pipfile.lock",
                "{\"_meta\": {}, \"default\": {\"itsdangerous\": {\"version\": \"==2.1.2\"}}, \"develop\": {\"six\": {\"version\": \"==1.16.0\"}}}\n",
            ),
            ("main.py", "import itsdangerous\n"),
        ],
    );
    let (report, log) = build_json(&env, &["pipenv-app", "--path", pipenv.to_str().unwrap()]);
    assert_contains!(log, "packages pinned by Pipfile.lock: 1");
    let paths = layer_paths(&env, &report, "kiln/python:packages");
    assert!(
        paths
            .iter()
            .any(|p| p.contains("itsdangerous-2.1.2.dist-info"))
    );
    assert!(!paths.iter().any(|p| p.contains("/six")));
}

#[test]
fn node_build_scripts_run_with_dev_dependencies_which_the_image_leaves_out() {
    let env = TestEnv::new();
    let app = env.app(
        "site",
        &[
            (
                "package.json",
                r#"{
  "name": "site",
  "private": true,
  "scripts": {
    "build": "node build.js",
    "start": "node dist/server.js"
  },
  "dependencies": { "ms": "2.1.3" },
  "devDependencies": { "is-number": "7.0.0" }
}
"#,
            ),
            (
                "build.js",
                "const isNumber = require('is-number');\nrequire('fs').mkdirSync('dist', {recursive: true});\nrequire('fs').writeFileSync('dist/server.js', `console.log(${isNumber(1)})\\n`);\n",
            ),
        ],
    );
    let (report, log) = build_json(&env, &["site", "--path", app.to_str().unwrap()]);
    assert_contains!(log, "running the build script");
    assert_contains!(log, "npm install --no-audit --no-fund --include=dev");
    let modules = layer_paths(&env, &report, "kiln/nodejs:modules");
    assert!(
        modules
            .iter()
            .any(|p| p.ends_with("node_modules/ms/package.json")),
        "{modules:?}"
    );
    assert!(
        !modules.iter().any(|p| p.contains("is-number")),
        "{modules:?}"
    );
    let app_layer = layer_paths(&env, &report, "application");
    assert!(
        app_layer.iter().any(|p| p == "workspace/dist/server.js"),
        "{app_layer:?}"
    );
}

/// A changed requirements.txt updates the cached dependency layer and its bytecode in place
/// (uv syncs it; only changed packages are compiled again), and the image is the one a clean
/// build of the new requirements gives, byte for byte; going back gives the first image again.
/// Hermetic (the default), so the bytecode is compiled too.
#[test]
fn dependency_changes_update_the_layer_in_place_to_what_a_clean_install_gives() {
    let env = TestEnv::new();
    let first = "itsdangerous==2.2.0\nmarkupsafe==3.0.3\n";
    let second = "itsdangerous==2.2.0\nmarkupsafe==3.0.3\nsix==1.17.0\nclick==8.1.8\n";
    let app = env.app(
        "deps",
        &[("requirements.txt", first), ("main.py", "import six\n")],
    );
    let build = |image: &str| {
        let out = env
            .kiln()
            .env_remove("KILN_BUILD_ENV")
            .args(["build", image, "--format", "json", "--path"])
            .arg(&app)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (report["manifest_digest"].as_str().unwrap().to_string(), log)
    };
    let (before, log) = build("deps");
    assert_contains!(log, "compiled the installed packages");

    fs::write(app.join("requirements.txt"), second).unwrap();
    let (updated, log) = build("deps");
    assert_contains!(
        log,
        "updating the installed dependencies in place (requirements.txt changed)"
    );
    // itsdangerous and markupsafe keep their bytecode; six and click are compiled.
    assert_contains!(log, "unchanged");
    assert!(!log.contains("compiled the standard library"), "{log}");

    let (clean, log) = build("deps-clean");
    assert!(!log.contains("in place"), "{log}");
    assert_eq!(
        updated, clean,
        "an in-place update differs from a clean install"
    );

    fs::write(app.join("requirements.txt"), first).unwrap();
    let (back, _) = build("deps");
    assert_eq!(
        back, before,
        "removing packages in place left something behind"
    );
}
