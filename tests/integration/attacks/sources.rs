//! Hostile source trees and buildpack output: files kiln reads from a source tree that are
//! links to secrets or FIFOs, buildpacks writing huge or malformed metadata, env files and
//! layer names that are not names, labels that impersonate kiln's, file names that are not
//! UTF-8, and source trees thousands of directories deep.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::{Canary, assert_clean_output, run_with_limit};
use crate::assert_contains;
use crate::util::{BuildpackSpec, TestEnv, oci, write_buildpack};

const CREDS: &str = "secret-user:secret-pass";
const SECRETS: [&str; 2] = ["secret-user", "secret-pass"];
/// How long a hostile build may take before the test calls it a hang.
const LIMIT: Duration = Duration::from_mins(2);
/// The same for attacks that must fail at once (a FIFO, a too-deep tree).
const QUICK: Duration = Duration::from_mins(1);

/// `kiln build` of `app` with `buildpacks` into an OCI layout under the test's directory,
/// with registry credentials in the environment and on the command line (what an attacker
/// wants to print), stopped after `limit`.
fn hostile_build(env: &TestEnv, app: &Path, buildpacks: &[&Path], limit: Duration) -> Output {
    let mut command = env.kiln();
    command
        .args(["build", "--path"])
        .arg(app)
        .args(["--output", &oci(&env.path("out"), "img")])
        .args(["--run-image", &env.run_image()])
        .args(["--creds", CREDS])
        .env("KILN_REGISTRY_AUTH", CREDS);
    for bp in buildpacks {
        command.arg("-b").arg(bp);
    }
    run_with_limit(command, limit)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts exit `code`, every needle in stderr, no secret anywhere, no panic.
fn assert_refused(output: &Output, code: i32, needles: &[&str], secrets: &[&str]) {
    assert_clean_output(output, secrets);
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr:\n{stderr}");
    for needle in needles {
        assert_contains!(stderr, needle);
    }
}

/// A buildpack whose `bin/build` runs `script`.
fn buildpack(env: &TestEnv, name: &str, script: &str) -> PathBuf {
    write_buildpack(
        &env.path(name),
        &BuildpackSpec {
            id: "test/hostile",
            build: script,
            ..BuildpackSpec::default()
        },
    )
}

fn plain_buildpack(env: &TestEnv) -> PathBuf {
    buildpack(env, "plain-bp", "exit 0")
}

#[test]
fn project_toml_linked_to_the_process_environment_is_not_printed() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let bp = plain_buildpack(&env);
    for (i, target) in ["/proc/self/environ", "/proc/self/cmdline"]
        .into_iter()
        .enumerate()
    {
        let app = env.app(&format!("app-{i}"), &[("app.sh", "echo hi")]);
        std::os::unix::fs::symlink(target, app.join("project.toml")).unwrap();
        let out = hostile_build(&env, &app, &[&bp], LIMIT);
        assert_refused(
            &out,
            3,
            &["project.toml", "symbolic link", "put the file itself there"],
            &SECRETS,
        );
    }
    canary.assert_intact();
}

#[test]
fn kilnignore_linked_to_etc_shadow_is_not_printed() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let bp = plain_buildpack(&env);
    let app = env.app("app", &[("app.sh", "echo hi")]);
    std::os::unix::fs::symlink("/etc/shadow", app.join(".kilnignore")).unwrap();
    // When the suite runs as root kiln could read the file: none of its lines may show.
    let shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
    let mut secrets: Vec<&str> = shadow.lines().filter(|l| l.len() > 8).collect();
    secrets.extend(SECRETS);
    let out = hostile_build(&env, &app, &[&bp], LIMIT);
    assert_refused(&out, 3, &[".kilnignore", "symbolic link"], &secrets);
    canary.assert_intact();
}

#[test]
fn fifo_project_toml_fails_at_once() {
    let env = TestEnv::new();
    let bp = plain_buildpack(&env);
    let app = env.app("app", &[("app.sh", "echo hi")]);
    nix::unistd::mkfifo(&app.join("project.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let out = hostile_build(&env, &app, &[&bp], QUICK);
    assert_refused(&out, 3, &["project.toml", "FIFO"], &SECRETS);
}

#[test]
fn project_toml_errors_give_the_line_not_the_text() {
    let env = TestEnv::new();
    let bp = plain_buildpack(&env);
    let app = env.app(
        "app",
        &[(
            "project.toml",
            "[build]\nexclude = [\"x\"]\npassword = secret-pass\n",
        )],
    );
    let out = hostile_build(&env, &app, &[&bp], LIMIT);
    assert_refused(&out, 3, &["project.toml", "line 3"], &SECRETS);
}

#[test]
fn huge_launch_toml_is_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.app("app", &[("app.sh", "echo hi")]);
    // 20 MB of valid TOML (comments): kiln must not read it whole.
    let bp = buildpack(
        &env,
        "huge-bp",
        r#"{ yes '# padding padding padding' || true; } | head -c 20000000 > "$CNB_LAYERS_DIR/launch.toml""#,
    );
    let out = hostile_build(&env, &app, &[&bp], LIMIT);
    assert_refused(
        &out,
        52,
        &[
            "buildpack test/hostile wrote an invalid",
            "launch.toml",
            "larger than 1048576 bytes",
        ],
        &SECRETS,
    );
    canary.assert_intact();
}

#[test]
fn env_files_that_name_no_variable_are_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.app("app", &[("app.sh", "echo hi")]);
    for (i, file) in ["=X", "A=B", "env.launch/web/=Y", ".override"]
        .into_iter()
        .enumerate()
    {
        let script = format!(
            r#"layer="$CNB_LAYERS_DIR/tools"
mkdir -p "$layer/env" "$layer/env.launch/web"
printf '[types]\nlaunch = true\n' > "$layer.toml"
case '{file}' in
  env.launch/*) printf v > "$layer/{file}" ;;
  *) printf v > "$layer/env/{file}" ;;
esac"#
        );
        let bp = buildpack(&env, &format!("env-bp-{i}"), &script);
        let out = hostile_build(&env, &app, &[&bp], LIMIT);
        let name = file.rsplit('/').next().unwrap();
        assert_refused(
            &out,
            52,
            &[
                "buildpack test/hostile wrote an invalid",
                &format!("/{name}"),
                "variable name",
            ],
            &SECRETS,
        );
    }
    canary.assert_intact();
}

#[test]
fn layers_named_dot_or_dot_dot_are_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.app("app", &[("app.sh", "echo hi")]);
    // `..toml` names the layer "." (the buildpack's whole layers directory), `...toml` the
    // layer ".." (every buildpack's), `.toml` the empty name.
    for (i, file) in ["..toml", "...toml", ".toml"].into_iter().enumerate() {
        let script = format!(
            r#"printf 'secret-pass' > "$CNB_LAYERS_DIR/stray"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/{file}""#
        );
        let bp = buildpack(&env, &format!("dot-bp-{i}"), &script);
        let out = hostile_build(&env, &app, &[&bp], LIMIT);
        assert_refused(
            &out,
            52,
            &[
                "buildpack test/hostile wrote an invalid",
                file,
                "layer name",
            ],
            &SECRETS,
        );
        assert!(!env.path("out").join("index.json").exists(), "no image");
    }
    canary.assert_intact();
}

#[test]
fn a_linked_layer_directory_is_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.app("app", &[("app.sh", "echo hi")]);
    let script = format!(
        r#"ln -s '{}' "$CNB_LAYERS_DIR/host"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/host.toml""#,
        canary.path().display()
    );
    let bp = buildpack(&env, "link-bp", &script);
    let out = hostile_build(&env, &app, &[&bp], LIMIT);
    assert_refused(&out, 52, &["host", "symbolic link"], &SECRETS);
    canary.assert_intact();
}

#[test]
fn linked_env_and_layers_directories_are_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.app("app", &[("app.sh", "echo hi")]);
    // kiln reads buildpack output outside the build sandbox: a link would let a buildpack
    // put files it cannot see (here the canary's "keep me") into the image's config.
    let target = canary.path().join("some/dir");
    let cases = [
        (
            format!(
                r#"mkdir -p "$CNB_LAYERS_DIR/tools"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/tools.toml"
ln -s '{}' "$CNB_LAYERS_DIR/tools/env""#,
                target.display()
            ),
            "env directory is a symbolic link",
        ),
        (
            format!(
                r#"layers="$CNB_LAYERS_DIR"
cd /
rm -rf "$layers"
ln -s '{}' "$layers""#,
                target.display()
            ),
            "replaced its layers directory",
        ),
    ];
    for (i, (script, needle)) in cases.iter().enumerate() {
        let bp = buildpack(&env, &format!("linked-bp-{i}"), script);
        let out = hostile_build(&env, &app, &[&bp], LIMIT);
        assert_refused(
            &out,
            52,
            &["buildpack test/hostile wrote an invalid", needle],
            &["keep me", SECRETS[0], SECRETS[1]],
        );
    }
    canary.assert_intact();
}

#[test]
fn buildpack_labels_cannot_replace_kilns() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.sh", "echo hi")]);
    let bp = buildpack(
        &env,
        "label-bp",
        r#"cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[labels]]
key = "io.buildpacks.lifecycle.metadata"
value = "{\"forged\": true}"
[[labels]]
key = "io.buildpacks.build.metadata"
value = "{\"forged\": true}"
[[labels]]
key = "io.github.kiln-build.process-type"
value = "forged"
[[labels]]
key = "org.example.team"
value = "platform"
[[processes]]
type = "web"
command = ["sh", "./app.sh"]
default = true
EOF"#,
    );
    let out = hostile_build(&env, &app, &[&bp], LIMIT);
    assert_clean_output(&out, &SECRETS);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_contains!(log, "io.buildpacks.lifecycle.metadata");
    assert_contains!(log, "is ignored");
    let inspection = env.inspect(&oci(&env.path("out"), "img"));
    let labels = &inspection["labels"];
    assert_eq!(labels["org.example.team"], "platform");
    assert_eq!(labels["io.github.kiln-build.process-type"], "web");
    for key in [
        "io.buildpacks.lifecycle.metadata",
        "io.buildpacks.build.metadata",
    ] {
        let value: serde_json::Value = serde_json::from_str(labels[key].as_str().unwrap()).unwrap();
        assert!(value.get("forged").is_none(), "{key}: {value}");
    }
}

/// The entry names (raw bytes) of the image's last layer (the app layer).
fn app_layer_names(layout: &Path) -> Vec<Vec<u8>> {
    let layout = kiln::image::layout::OciLayout::open(layout).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.root().join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_reader(layout.open_blob(&manifest_digest.parse().unwrap()).unwrap())
            .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let digest = layers.last().unwrap()["digest"].as_str().unwrap();
    let blob = layout.open_blob(&digest.parse().unwrap()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect()
}

#[test]
fn names_that_differ_only_in_invalid_utf8_stay_two_files() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.sh", "echo hi")]);
    let names: [&[u8]; 2] = [b"caf\xe9", b"caf\xff"];
    for name in names {
        fs::write(app.join(OsStr::from_bytes(name)), name).unwrap();
    }
    let bp = plain_buildpack(&env);
    let out = hostile_build(&env, &app, &[&bp], LIMIT);
    assert_clean_output(&out, &SECRETS);
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = app_layer_names(&env.path("out"));
    for name in names {
        let mut entry = b"workspace/".to_vec();
        entry.extend_from_slice(name);
        assert!(
            entries.contains(&entry),
            "{:?} missing from {entries:?}",
            String::from_utf8_lossy(&entry)
        );
    }
}

/// Makes `levels` nested directories `d` under `root` (with `openat`, as the paths get
/// longer than `PATH_MAX`) and a file at the bottom.
fn deep_tree(root: &Path, levels: usize) {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::{Mode, mkdirat};
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mut dir = open(root, flags, Mode::empty()).unwrap();
    for _ in 0..levels {
        mkdirat(&dir, "d", Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(&dir, "d", flags, Mode::empty()).unwrap();
    }
    let file = openat(
        &dir,
        "bottom",
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    drop(file);
}

/// Removes what [`deep_tree`] made in constant depth: moves each level's child up beside
/// it, then removes the emptied level (`remove_dir_all` would need one descriptor a level).
fn remove_deep_tree(root: &Path) {
    let mut top = root.join("d");
    let mut n = 0;
    while top.is_dir() {
        let child = top.join("d");
        if child.is_dir() {
            let next = root.join(format!("up{n}"));
            n += 1;
            fs::rename(&child, &next).unwrap();
            let _ = fs::remove_dir_all(&top);
            top = next;
        } else {
            fs::remove_dir_all(&top).unwrap();
        }
    }
}

#[test]
fn a_thousand_levels_deep_source_builds_quickly() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.sh", "echo hi")]);
    deep_tree(&app, 1000);
    let bp = plain_buildpack(&env);
    let started = Instant::now();
    let out = hostile_build(&env, &app, &[&bp], Duration::from_mins(5));
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    // One `canonicalize` per directory made this take 21 s (1.5 M `readlink` calls); the walk
    // is now linear and the whole build takes a few seconds, under 7 s on a loaded 2-core
    // machine. The bound sits between the two (the deterministic check of the walk is the
    // 10,000-level test below).
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    let entries = app_layer_names(&env.path("out"));
    let mut bottom = b"workspace/".to_vec();
    for _ in 0..1000 {
        bottom.extend_from_slice(b"d/");
    }
    bottom.extend_from_slice(b"bottom");
    assert!(
        entries.contains(&bottom),
        "the deepest file is in the app layer"
    );
    remove_deep_tree(&app);
}

#[test]
fn ten_thousand_levels_fail_at_once_with_the_limit() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.app("app", &[("app.sh", "echo hi")]);
    deep_tree(&app, 10_000);
    let bp = plain_buildpack(&env);
    let out = hostile_build(&env, &app, &[&bp], QUICK);
    assert_refused(
        &out,
        3,
        &["more than 1024 directories deep", "app/d", ".kilnignore"],
        &SECRETS,
    );
    remove_deep_tree(&app);
    canary.assert_intact();
}

/// A build variable from project.toml becomes a file in `/platform/env`: its name must not
/// climb out of it.
#[test]
fn project_toml_variable_names_cannot_climb_out_of_the_platform_directory() {
    let env = crate::util::TestEnv::new();
    let canary = super::Canary::plant(&env.path("outside"));
    let target = format!(
        "{}{}",
        "../".repeat(30),
        canary
            .path()
            .join("planted")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    let app = env.app(
        "app",
        &[(
            "project.toml",
            &format!("[[io.buildpacks.build.env]]\nname = \"{target}\"\nvalue = \"x\"\n"),
        )],
    );
    let bp = crate::util::write_buildpack(
        &env.path("bp"),
        &crate::util::BuildpackSpec {
            id: "test/plain",
            ..crate::util::BuildpackSpec::default()
        },
    );
    let out = env.build(&app, &[&bp], "climb", &[]);
    super::assert_clean_output(&out, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("is not a valid variable name"), "{stderr}");
    canary.assert_intact();
    assert!(!canary.path().join("planted").exists());
    // The same name given with --env is refused too.
    let plain = env.app("plain", &[("f", "x")]);
    let out = env.build(&plain, &[&bp], "climb", &["--env", &format!("{target}=x")]);
    super::assert_clean_output(&out, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    canary.assert_intact();
}
