//! The command line itself: help, reports, verbosity, inspect output.

use std::fs;

use serde_json::Value;

use crate::assert_contains;
use crate::util::{TestEnv, oci, repo};

fn example_args(env: &TestEnv) -> Vec<String> {
    vec![
        "--path".into(),
        repo().join("examples/hello-shell").display().to_string(),
        "-b".into(),
        repo()
            .join("examples/buildpacks/shell")
            .display()
            .to_string(),
        "--run-image".into(),
        env.run_image(),
    ]
}

#[test]
fn help_lists_the_commands() {
    let env = TestEnv::new();
    let help = env.ok(&["--help"]);
    for command in ["build", "detect", "inspect", "images", "rmi"] {
        assert_contains!(help, command);
    }
    assert_contains!(env.ok(&["build", "--help"]), "--run-image");
    assert_contains!(env.ok(&["--version"]), "kiln");
}

#[test]
fn build_reports_json_on_stdout_and_to_a_file() {
    let env = TestEnv::new();
    let report_file = env.path("report.json");
    let mut args: Vec<String> = vec![
        "build".into(),
        "app:2".into(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(example_args(&env));
    args.extend(["--report".into(), report_file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&args);
    assert!(out.status.success());
    let report: Value =
        serde_json::from_slice(&out.stdout).expect("stdout is only the JSON report");
    let from_file: Value =
        serde_json::from_str(&fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report, from_file);
    assert_eq!(report["image"], "app:2");
    assert!(
        report["manifest_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        report["buildpacks"],
        serde_json::json!(["examples/shell@0.1.0"])
    );
    assert_eq!(report["default_process"], "web");
    assert_eq!(report["layers"][0]["name"], "examples/shell:greeting");
    assert_eq!(report["layers"][1]["name"], "application");
    for phase in ["analyzing", "detecting", "building", "exporting"] {
        assert!(report["timings"][phase].as_f64().is_some(), "{phase}");
    }
    // Logs went to stderr.
    assert_contains!(String::from_utf8_lossy(&out.stderr), "===> BUILDING");
}

#[test]
fn quiet_prints_only_the_result() {
    let env = TestEnv::new();
    let mut args: Vec<String> = vec!["build".into(), "app".into(), "-q".into()];
    args.extend(example_args(&env));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&args);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_contains!(
        String::from_utf8_lossy(&out.stdout),
        "Successfully built image app:latest"
    );
}

#[test]
fn inspect_shows_layers_buildpacks_processes_and_how_to_run_them() {
    let env = TestEnv::new();
    let mut args: Vec<String> = vec!["build".into(), "app".into(), "-q".into()];
    args.extend(example_args(&env));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&args);
    let human = env.ok(&["inspect", "app"]);
    assert_contains!(human, "Run image: run:1 sha256:");
    assert_contains!(human, "run image");
    assert_contains!(
        human,
        "Layer: 'greeting', Created by buildpack: examples/shell@0.1.0"
    );
    assert_contains!(human, "Application Layer");
    assert_contains!(human, "examples/shell@0.1.0");
    assert_contains!(human, "web (default): ./app.sh default-arg");
    assert_contains!(human, "--entrypoint '[\"say-greeting\"]'");
    assert_contains!(human, "GREETING=Hello");

    let json: Value =
        serde_json::from_str(&env.ok(&["inspect", "app", "--format", "json"])).unwrap();
    assert_eq!(json["reference"], "app:latest");
    assert_eq!(json["layers"][0]["from_run_image"], true);
    assert_eq!(json["layers"][1]["from_run_image"], false);
    assert_eq!(json["default_process"], "web");
    assert_eq!(json["user"], "1000:1000");

    let missing = env.run(&["inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(30));
    assert_contains!(String::from_utf8_lossy(&missing.stderr), "nope:latest");
}

#[test]
fn a_kiln_home_inside_the_source_is_not_copied_into_the_image() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.sh", "echo hi\n")]);
    let run_image = env.run_image();
    let out = env
        .kiln()
        .env("KILN_HOME", app.join(".kiln"))
        .args([
            "build",
            "app",
            "-q",
            "--path",
            app.to_str().unwrap(),
            "-b",
            repo().join("examples/buildpacks/shell").to_str().unwrap(),
            "--run-image",
            &run_image,
            "--output",
            &oci(&env.path("out"), "img"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&env.ok(&[
        "inspect",
        "--format",
        "json",
        &oci(&env.path("out"), "img"),
    ]))
    .unwrap();
    let app_layer = json["layers"].as_array().unwrap().last().unwrap().clone();
    assert!(app_layer["size"].as_u64().unwrap() < 2_000, "{app_layer}");
}
