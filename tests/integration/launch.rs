//! The launch check: a process whose program, or whose script's `#!` interpreter, is not in
//! the image fails the build with exit code 53 before anything is written, naming the
//! process, the program and where to get it.

use std::path::{Path, PathBuf};

use crate::assert_contains;
use crate::util::{BuildpackSpec, Podman, TestEnv, oci, write_buildpack};

/// A buildpack whose `launch.toml` has one default `web` process running `command` (a TOML
/// array), and that puts `tool` (a `#!/bin/sh` script) in a launch layer's `bin`.
fn buildpack(env: &TestEnv, name: &str, command: &str) -> PathBuf {
    let build = format!(
        r#"mkdir -p "$CNB_LAYERS_DIR/tools/bin"
printf '#!/bin/sh\necho tool ran\n' > "$CNB_LAYERS_DIR/tools/bin/tool"
chmod +x "$CNB_LAYERS_DIR/tools/bin/tool"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/tools.toml"
cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[processes]]
type = "web"
command = {command}
default = true
EOF"#
    );
    write_buildpack(
        &env.path(name),
        &BuildpackSpec {
            id: "test/launch",
            build: &build,
            ..BuildpackSpec::default()
        },
    )
}

/// A small app: a Node-style `bin/start` script with `shebang`, a shell script, a README.
fn app(env: &TestEnv, shebang: &str) -> PathBuf {
    let app = env.app(
        "app",
        &[
            ("bin/start", &format!("{shebang}\nconsole.log('started')\n")),
            ("run.sh", "#!/bin/sh\necho \"hello from run.sh\"\n"),
            ("README.md", "# service\n"),
        ],
    );
    for script in ["bin/start", "run.sh"] {
        let path = app.join(script);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    app
}

fn build_fails(env: &TestEnv, app: &Path, buildpack: &Path, extra: &[&str]) -> String {
    let out = env.build(app, &[buildpack], &oci(&env.path("out"), "img"), extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(53), "{stderr}");
    assert!(
        !env.path("out/index.json").exists(),
        "nothing is written when the launch check fails"
    );
    stderr
}

#[test]
fn a_missing_program_fails_the_build_naming_process_program_and_provider() {
    let env = TestEnv::new();
    let app = app(&env, "#!/bin/sh");
    // Heroku's Procfile buildpack runs commands as `bash -c`; of kiln's flavours only `r`
    // (whose R start script needs it) has bash.
    let heroku = buildpack(&env, "bash-bp", r#"["bash", "-c", "./run.sh"]"#);
    let stderr = build_fails(&env, &app, &heroku, &[]);
    assert_contains!(
        stderr,
        "process web: `bash` is not in the image (searched PATH="
    );
    assert_contains!(
        stderr,
        "Debian package bash provides it (the `r` flavour of stack trixie has it: --run-image kiln/stacks/trixie-r)"
    );
    assert_contains!(stderr, "kiln/procfile runs Procfile commands with `sh -c`");

    // A program nobody installed.
    let missing = buildpack(&env, "missing-bp", r#"["web-server", "--port", "8080"]"#);
    let stderr = build_fails(&env, &app, &missing, &[]);
    assert_contains!(stderr, "process web: `web-server` is not in the image");
    assert_contains!(
        stderr,
        "no buildpack installed `web-server` in a launch layer"
    );

    // The program a simple `sh -c` script execs is checked too.
    let exec = buildpack(&env, "exec-bp", r#"["sh", "-c", "exec gunicorn app:app"]"#);
    let stderr = build_fails(&env, &app, &exec, &[]);
    assert_contains!(stderr, "`gunicorn` is not in the image");
}

#[test]
fn a_script_needs_its_interpreter_and_env_needs_the_program() {
    let env = TestEnv::new();
    let start = buildpack(&env, "start-bp", r#"["./bin/start"]"#);
    // The busybox run image has /bin/env but no /usr/bin/env.
    let app = app(&env, "#!/usr/bin/env node");
    let stderr = build_fails(&env, &app, &start, &[]);
    assert_contains!(
        stderr,
        "`/usr/bin/env` does not exist in the image (the `#!/usr/bin/env node` line of `./bin/start` needs it)"
    );
    assert_contains!(stderr, "Debian package coreutils provides it");

    // env is there, node is not: named with the flavour that has it.
    let app = self::app(&env, "#!/bin/env node");
    let stderr = build_fails(&env, &app, &start, &[]);
    assert_contains!(stderr, "`node` is not in the image (searched PATH=");
    assert_contains!(
        stderr,
        "the `#!/bin/env node` line of `./bin/start` needs it"
    );
    assert_contains!(
        stderr,
        "Debian package nodejs provides it (the `nodejs` flavour of stack trixie has it"
    );
}

#[test]
fn when_kiln_chose_the_run_image_the_hint_names_the_flavour_and_mixins() {
    let env = TestEnv::new();
    let app = app(&env, "#!/bin/sh");
    let bp = buildpack(&env, "node-bp", r#"["node", "server.js"]"#);
    // No --run-image: kiln picks the stack's smallest flavour (base) for a buildpack that
    // asks for no packages.
    let out = env
        .kiln()
        .args(["build", "--output", &oci(&env.path("out"), "img")])
        .args(["--path", app.to_str().unwrap(), "-b", bp.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(53), "{stderr}");
    assert_contains!(stderr, "process web: `node` is not in the image");
    assert_contains!(
        stderr,
        "the `nodejs` flavour of stack trixie has it (Debian package nodejs): add \"nodejs\" to `run-image-mixins`"
    );
}

#[test]
fn programs_found_through_links_path_and_layers_pass_and_run() {
    let env = TestEnv::new();
    let app = app(&env, "#!/bin/sh");
    // `tool` is on PATH from the launch layer; its `#!/bin/sh` resolves through busybox's
    // /bin/sh link; `./run.sh` is in the app.
    for (name, command) in [
        ("tool-bp", r#"["tool"]"#),
        ("shell-bp", r#"["sh", "-c", "exec ./run.sh"]"#),
    ] {
        let bp = buildpack(&env, name, command);
        let out = oci(&env.path("out"), name);
        env.build_ok(&app, &[&bp], &out, &[]);
        let Some(podman) = Podman::new() else {
            continue;
        };
        let ran = podman.run(&out, &[], &[]);
        let stdout = String::from_utf8_lossy(&ran.stdout);
        assert!(ran.status.success(), "{ran:?}");
        assert!(
            stdout.contains("tool ran") || stdout.contains("hello from run.sh"),
            "{stdout}"
        );
    }
}
