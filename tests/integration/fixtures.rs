//! Detection by kiln's built-in buildpacks on the app trees under `tests/fixtures/apps/`:
//! each `<name>/` is an app, `<name>.json` the expected outcome of `kiln detect` (the group,
//! the start command, each buildpack's recorded decisions, and the errors of buildpacks that
//! refused the app). `UPDATE_GOLDEN=1 cargo test fixtures` rewrites the expectations; review
//! the diff.
//!
//! Also: trees no fixture can hold (unreadable files, very deep nesting), which must give a
//! clear error or a clean "nothing detected", never a panic.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::assert_contains;
use crate::util::{TestEnv, fixture, kiln_as_nobody, sh};

/// The stable part of `kiln detect --format json`.
fn snapshot(summary: &Value) -> Value {
    let without_version = |s: &Value| {
        s.as_str()
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let mut errors = serde_json::Map::new();
    for result in summary["results"].as_array().into_iter().flatten() {
        if result["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("error"))
        {
            let lines: Vec<&str> = result["output"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("error:") || l.starts_with("hint:"))
                .collect();
            errors.insert(result["id"].as_str().unwrap().to_string(), json!(lines));
        }
    }
    let mut plan = serde_json::Map::new();
    for entry in summary["plan"].as_array().into_iter().flatten() {
        let name = entry["requires"][0]["name"].as_str().unwrap().to_string();
        plan.insert(name, entry["requires"][0]["metadata"].clone());
    }
    json!({
        "detected": summary["detected"],
        "group": summary["group"]
            .as_array()
            .into_iter()
            .flatten()
            .map(without_version)
            .collect::<Vec<_>>(),
        "run_image": summary["run_image"],
        "start": summary["start"],
        "plan": plan,
        "errors": errors,
    })
}

fn detect_json(env: &TestEnv, app: &Path) -> (Value, Option<i32>) {
    detect_json_with(env, app, None)
}

/// `kiln detect` of `app`, with `npm_config_registry` when given.
fn detect_json_with(env: &TestEnv, app: &Path, registry: Option<&str>) -> (Value, Option<i32>) {
    let mut command = env.kiln();
    command.args([
        "detect",
        "--path",
        app.to_str().unwrap(),
        "--format",
        "json",
    ]);
    if let Some(registry) = registry {
        command.env("npm_config_registry", registry);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}); stderr:\n{stderr}", app.display()));
    (summary, out.status.code())
}

#[test]
fn detection_matches_the_fixtures() {
    let env = TestEnv::new();
    let root = fixture("apps");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 30, "fixtures missing: {names:?}");
    // Node.js releases the stack does not have come from this registry, so the expected
    // versions stay put.
    let mut npm = crate::npm_registry::FakeNpm::start();
    for version in ["20.18.0", "22.11.0", "24.1.0"] {
        npm.publish_node(version);
    }
    let mut mismatches = Vec::new();
    for name in &names {
        let (summary, code) = detect_json_with(&env, &root.join(name), Some(&npm.url()));
        let mut actual = snapshot(&summary);
        actual["exit_code"] = json!(code);
        let expected_path = root.join(format!("{name}.json"));
        if update {
            let text = serde_json::to_string_pretty(&actual).unwrap();
            fs::write(&expected_path, format!("{text}\n")).unwrap();
            continue;
        }
        let expected: Value = fs::read_to_string(&expected_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        if expected != actual {
            mismatches.push(format!(
                "{name}:\n  expected {}\n  actual   {}",
                serde_json::to_string(&expected).unwrap(),
                serde_json::to_string(&actual).unwrap()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "detection differs from the fixtures (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn a_deep_tree_detects_without_trouble() {
    let env = TestEnv::new();
    let app = env.app("deep", &[("main.py", "print('deep')\n")]);
    let mut dir = app.clone();
    for _ in 0..200 {
        dir = dir.join("d");
    }
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("requirements.txt"), "not at the top\n").unwrap();
    let (summary, code) = detect_json(&env, &app);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["start"], "python3 main.py");
    assert_eq!(
        summary["plan"][0]["requires"][0]["metadata"]["package-manager"],
        "none"
    );
}

#[test]
fn unreadable_files_are_named() {
    let env = TestEnv::new();
    // kiln copies the app before detection, as an ordinary user who cannot read the file.
    let app = env.app("secret", &[("requirements.txt", "flask\n"), ("app.py", "")]);
    fs::write(app.join("credentials.json"), "{}").unwrap();
    let home = env.path("nobody-home");
    fs::create_dir_all(&home).unwrap();
    sh("chmod", &["-R", "a+rwX", env.path("").to_str().unwrap()]);
    fs::set_permissions(
        app.join("credentials.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = kiln_as_nobody(&home, &home, &["detect", "--path", app.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_contains!(stderr, "credentials.json");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
