//! The reproducibility contract (design.md §6): same inputs, same digests.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::util::{TestEnv, kiln_as_nobody, repo};

/// Copies `from` to `to`, creating entries in `reverse` order if asked and giving every file
/// the modification time `mtime`.
fn copy_tree(from: &Path, to: &Path, reverse: bool, mtime: SystemTime) {
    let mut entries: Vec<_> = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    if reverse {
        // Children before parents is impossible, so reverse among files only.
        entries.sort_by_key(|e| std::cmp::Reverse(e.path().to_path_buf()));
    }
    for entry in &entries {
        let rel = entry.path().strip_prefix(from).unwrap();
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::copy(entry.path(), &target).unwrap();
            fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

/// Builds the example from `app` with the shell buildpack from `buildpack`, under `umask`,
/// into an OCI archive; returns (report JSON, archive bytes).
fn build(
    env: &TestEnv,
    app: &Path,
    buildpack: &Path,
    umask: &str,
    extra_env: &[(&str, &str)],
) -> (Value, Vec<u8>) {
    let run_image = env.run_image();
    let archive = env.path("out.tar");
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "build",
            "app",
            "--format",
            "json",
            "--path",
            app.to_str().unwrap(),
            "-b",
            buildpack.to_str().unwrap(),
            "--run-image",
            &run_image,
            "--output",
            &format!("oci-archive:{}", archive.display()),
        ])
        .env("KILN_HOME", env.home())
        .env("KILN_BUILD_ENV", "host")
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        fs::read(&archive).unwrap(),
    )
}

#[test]
fn builds_are_identical_across_paths_mtimes_creation_order_umask_and_time() {
    let a = TestEnv::new();
    let b = TestEnv::new();
    let now = SystemTime::now();
    // Different paths, the same last component: the provenance statement attached to the
    // image names an absolute source or buildpack directory by its name (see README,
    // "Provenance"), so only the directories' names must match.
    let app_a = a.path("some/deep/dir/app");
    let app_b = b.path("elsewhere/app");
    copy_tree(&repo().join("examples/hello-shell"), &app_a, false, now);
    copy_tree(
        &repo().join("examples/hello-shell"),
        &app_b,
        true,
        now - Duration::from_hours(24 * 400),
    );
    // Extra files created in opposite orders.
    for (app, order) in [(&app_a, ["x", "y", "z"]), (&app_b, ["z", "y", "x"])] {
        for name in order {
            fs::create_dir_all(app.join("data")).unwrap();
            fs::write(app.join("data").join(name), name).unwrap();
        }
    }
    let bp_a = a.path("bp-a/shell");
    let bp_b = b.path("buildpacks/shell");
    copy_tree(&repo().join("examples/buildpacks/shell"), &bp_a, false, now);
    copy_tree(&repo().join("examples/buildpacks/shell"), &bp_b, true, now);
    for bp in [&bp_a, &bp_b] {
        for exe in ["detect", "build"] {
            fs::set_permissions(
                bp.join("bin").join(exe),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
    }

    let (report_a, archive_a) = build(&a, &app_a, &bp_a, "022", &[("TZ", "UTC")]);
    std::thread::sleep(Duration::from_millis(1100)); // a different second of the day
    let (report_b, archive_b) = build(&b, &app_b, &bp_b, "077", &[("TZ", "Asia/Tokyo")]);
    assert_eq!(report_a["manifest_digest"], report_b["manifest_digest"]);
    assert_eq!(report_a["config_digest"], report_b["config_digest"]);
    assert_eq!(report_a["layers"], report_b["layers"]);
    assert!(
        archive_a == archive_b,
        "the OCI archives must be byte-identical"
    );

    // Rebuilding in the same store gives the same image and reuses every blob.
    let (again, _) = build(&a, &app_a, &bp_a, "022", &[]);
    assert_eq!(again["manifest_digest"], report_a["manifest_digest"]);
    assert!(
        again["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["reused"] == true)
    );
}

#[test]
fn source_date_epoch_moves_created_but_not_layers() {
    let env = TestEnv::new();
    let app = repo().join("examples/hello-shell");
    let bp = repo().join("examples/buildpacks/shell");
    let (plain, _) = build(&env, &app, &bp, "022", &[]);
    let (dated, _) = build(
        &env,
        &app,
        &bp,
        "022",
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_ne!(plain["manifest_digest"], dated["manifest_digest"]);
    assert_eq!(plain["layers"].as_array().unwrap().len(), 2);
    for (p, d) in plain["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(dated["layers"].as_array().unwrap())
    {
        assert_eq!(p["diff_id"], d["diff_id"]);
    }
    let inspect = |name: &str| -> Value {
        serde_json::from_str(&env.ok(&[
            "inspect",
            "--format",
            "json",
            &format!("oci-archive:{}:{name}", env.path("out.tar").display()),
        ]))
        .unwrap()
    };
    assert_eq!(inspect("app:latest")["created"], "2023-11-14T22:13:20Z");
}

/// Golden `diff_id`s of the example's two kiln-made layers. The run image comes from the
/// host's busybox package, so only kiln's own layers are pinned. Regenerate with
/// `UPDATE_GOLDEN=1 cargo test golden` and review the diff.
#[test]
fn golden_diff_ids_of_the_example() {
    let env = TestEnv::new();
    let (report, _) = build(
        &env,
        &repo().join("examples/hello-shell"),
        &repo().join("examples/buildpacks/shell"),
        "022",
        &[],
    );
    let mut actual = String::new();
    for layer in report["layers"].as_array().unwrap() {
        writeln!(
            actual,
            "{:?} = {:?}",
            layer["name"].as_str().unwrap(),
            layer["diff_id"].as_str().unwrap()
        )
        .unwrap();
    }
    let golden = repo().join("tests/fixtures/golden/hello-shell.toml");
    let header = "# diff_ids of the layers kiln writes for examples/hello-shell (see tests/integration/reproducible.rs)\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(golden.parent().unwrap()).unwrap();
        fs::write(&golden, format!("{header}{actual}")).unwrap();
    }
    let expected = fs::read_to_string(&golden).unwrap();
    assert_eq!(expected.strip_prefix(header).unwrap_or(&expected), actual);
}

/// kiln needs no privileges: as an ordinary user it runs buildpacks in an unprivileged user
/// namespace. When the suite runs as root, build once more as `nobody` and compare.
#[test]
fn an_unprivileged_user_builds_the_same_image() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipping: the suite is not running as root, so it already tests an ordinary user"
        );
        return;
    }
    let env = TestEnv::new();
    let app = repo().join("examples/hello-shell");
    let bp = repo().join("examples/buildpacks/shell");
    let (as_root, _) = build(&env, &app, &bp, "022", &[]);

    // Everything nobody needs: a readable copy of the inputs, a writable home.
    let shared = env.path("shared");
    copy_tree(&app, &shared.join("app"), false, SystemTime::now());
    copy_tree(&bp, &shared.join("bp"), false, SystemTime::now());
    for exe in ["detect", "build"] {
        fs::set_permissions(
            shared.join("bp/bin").join(exe),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let run_image = env.run_image();
    let out = kiln_as_nobody(
        env.dir.path(),
        &shared.join("home"),
        &[
            "build",
            "app",
            "--format",
            "json",
            "--path",
            shared.join("app").to_str().unwrap(),
            "-b",
            shared.join("bp").to_str().unwrap(),
            "--run-image",
            &run_image,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let as_nobody: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(as_nobody["manifest_digest"], as_root["manifest_digest"]);
}
