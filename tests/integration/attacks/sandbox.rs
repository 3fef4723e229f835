//! Buildpacks against kiln's own state (S5 of issue 12): its process, its credentials, its
//! store.

use std::fs;
use std::path::Path;
use std::process::Output;

use super::assert_clean_output;
use crate::util::{BuildpackSpec, TestEnv, kiln_as_nobody, write_buildpack};

const SECRETS: [&str; 4] = [
    "secret-cli-pass-4821",
    "secret-env-pass-7734",
    "secret-docker-token-9902",
    "secret-podman-token-1187",
];

/// A buildpack that looks for every secret it could reach and tries to write to the store,
/// printing what it finds into the build log.
fn snooper(env: &TestEnv, home: &Path) -> std::path::PathBuf {
    let script = format!(
        r#"
set +eu +o pipefail
echo "--- processes:"; ls /proc | grep '^[0-9]' | tr '\n' ' '; echo
for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline"; echo; tr '\0' '\n' < "$p/environ"; done 2>/dev/null
echo "--- environment:"; env
echo "--- plan:"; cat "$3" "$CNB_BP_PLAN_PATH" >/dev/null || exit 9
echo "--- home:"; ls -laR "{home}" 2>&1 | head -50
cat "{home}"/cache/layers/*.json 2>&1 | head -5
echo "--- credentials:"
cat "$DOCKER_CONFIG/config.json" "$REGISTRY_AUTH_FILE" "{cfg}/config.json" "{auth}" 2>&1
umount "{home}" 2>&1; umount -l "{cfg}" 2>&1
cat "{cfg}/config.json" 2>&1
touch "{home}/store/planted" 2>&1
mkdir -p "$CNB_LAYERS_DIR/l" && echo ok > "$CNB_LAYERS_DIR/l/f"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/l.toml"
exit 0
"#,
        home = home.display(),
        cfg = env.path("docker").display(),
        auth = env.path("auth.json").display(),
    );
    write_buildpack(
        &env.path("snooper"),
        &BuildpackSpec {
            id: "test/snooper",
            build: &script,
            ..BuildpackSpec::default()
        },
    )
}

fn plant_credentials(env: &TestEnv) {
    fs::create_dir_all(env.path("docker")).unwrap();
    fs::write(
        env.path("docker/config.json"),
        r#"{"auths":{"127.0.0.1:1":{"auth":"secret-docker-token-9902"}}}"#,
    )
    .unwrap();
    fs::write(
        env.path("auth.json"),
        r#"{"auths":{"127.0.0.1:2":{"auth":"secret-podman-token-1187"}}}"#,
    )
    .unwrap();
}

fn assert_unseen(out: &Output, home: &Path) {
    assert_clean_output(out, &SECRETS);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        !home.join("store/planted").exists(),
        "a buildpack wrote to the store:\n{log}"
    );
    // The buildpack saw its own processes only: the namespace's init, itself and its pipeline.
    let processes = log
        .lines()
        .skip_while(|l| !l.contains("--- processes:"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        processes.split_whitespace().count() <= 6,
        "the buildpack sees other processes: {processes}\n{log}"
    );
}

#[test]
fn buildpacks_cannot_read_kiln_state_or_credentials() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "x")]);
    let home = env.home();
    let bp = snooper(&env, &home);
    // A first build so that the store and the cache hold something to find.
    let out = env.build(&app, &[&bp], "snooped", &["-v"]);
    assert_unseen(&out, &home);
    plant_credentials(&env);
    let out = env
        .kiln()
        .args(["build", "snooped", "--rebuild", "-v", "--path"])
        .arg(&app)
        .args(["-b"])
        .arg(&bp)
        .args(["--run-image", &env.run_image()])
        .args(["--creds", "user:secret-cli-pass-4821"])
        .env("KILN_REGISTRY_AUTH", "user:secret-env-pass-7734")
        .env("DOCKER_CONFIG", env.path("docker"))
        .env("REGISTRY_AUTH_FILE", env.path("auth.json"))
        .output()
        .unwrap();
    assert_unseen(&out, &home);
}

#[test]
fn buildpacks_of_an_unprivileged_kiln_cannot_read_its_state_either() {
    let env = TestEnv::new();
    let shared = env.path("shared");
    fs::create_dir_all(&shared).unwrap();
    let home = shared.join("home");
    let app = shared.join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(app.join("f"), "x").unwrap();
    let bp = snooper(&env, &home);
    fs::rename(&bp, shared.join("snooper")).unwrap();
    let run_image = env.run_image();
    fs::rename(env.path("run-image"), shared.join("run-image")).unwrap();
    let run_image = run_image.replace(
        &env.path("run-image").display().to_string(),
        &shared.join("run-image").display().to_string(),
    );
    let snooper = shared.join("snooper");
    let args = [
        "build",
        "snooped",
        "-v",
        "--path",
        app.to_str().unwrap(),
        "-b",
        snooper.to_str().unwrap(),
        "--run-image",
        &run_image,
        "--creds",
        "user:secret-cli-pass-4821",
    ];
    let out = kiln_as_nobody(&shared, &home, &args);
    assert_unseen(&out, &home);
}
