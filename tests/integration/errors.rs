//! Bad input: each case gets a clear error naming the problem, a documented exit code, and
//! leaves the destination's previous content intact.

use std::fs;
use std::path::{Path, PathBuf};

use crate::assert_contains;
use crate::util::{
    BuildpackSpec, TestEnv, example_app, example_buildpack, oci, validate_layout, write_buildpack,
};

/// Builds the example into `oci:<dir>:img` (the "previous content").
fn good_build(env: &TestEnv, dir: &Path) {
    env.build_ok(
        &example_app(),
        &[&example_buildpack()],
        &oci(dir, "img"),
        &[],
    );
}

/// A snapshot of every file under `dir` (path and content).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

fn build_into(
    env: &TestEnv,
    dest: &Path,
    app: &Path,
    buildpacks: &[&Path],
    extra: &[&str],
) -> std::process::Output {
    env.build(app, buildpacks, &oci(dest, "img"), extra)
}

fn assert_failed(out: &std::process::Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{stderr}");
    for needle in needles {
        assert_contains!(stderr, needle);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_source_directory() {
    let env = TestEnv::new();
    let out = env.run(&[
        "build",
        "x",
        "--path",
        "/no/such/app",
        "-b",
        example_buildpack().to_str().unwrap(),
    ]);
    assert_failed(&out, 3, &["source directory /no/such/app does not exist"]);
}

#[test]
fn failing_buildpack_shows_its_output_and_keeps_the_destination() {
    let env = TestEnv::new();
    let dest = env.path("dest");
    good_build(&env, &dest);
    let before = snapshot(&dest);
    let crash = write_buildpack(
        &env.path("crash"),
        &BuildpackSpec {
            id: "test/crash",
            build: "echo 'compiling…'\necho 'fatal: missing dependency libfoo' >&2\nexit 7",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &dest, &example_app(), &[&crash], &[]);
    assert_failed(
        &out,
        51,
        &[
            "buildpack test/crash@1.0.0 failed",
            "exit code 7",
            "fatal: missing dependency libfoo",
        ],
    );
    // stdout and stderr keep the order the buildpack wrote them in.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (compiling, fatal) = (
        stderr.find("compiling").unwrap(),
        stderr.find("fatal:").unwrap(),
    );
    assert!(compiling < fatal, "{stderr}");
    assert_eq!(snapshot(&dest), before, "the destination must not change");
    validate_layout(&dest, "img", &env.path("scratch"));
}

#[test]
fn buildpack_killed_by_a_signal() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let killed = write_buildpack(
        &env.path("killed"),
        &BuildpackSpec {
            id: "test/killed",
            build: "kill -9 $$",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &env.path("dest"), &app, &[&killed], &[]);
    assert_failed(&out, 51, &["signal 9"]);
}

#[test]
fn invalid_toml_from_a_buildpack_names_the_file() {
    let env = TestEnv::new();
    let dest = env.path("dest");
    good_build(&env, &dest);
    let before = snapshot(&dest);
    let cases = [
        (
            "layer",
            "printf 'this is = = not toml' > \"$CNB_LAYERS_DIR/broken.toml\"",
            "broken.toml",
        ),
        (
            "launch",
            "printf '[[processes]]\\ntype = \"web\"\\ncommand = \"run\"\\n' > \"$CNB_LAYERS_DIR/launch.toml\"",
            "command must be an array",
        ),
        (
            "build",
            "printf '[[unmet]]\\nname = \"nope\"\\n' > \"$CNB_LAYERS_DIR/build.toml\"",
            "must match a requested dependency",
        ),
        (
            "types",
            "printf 'launch = true\\n' > \"$CNB_LAYERS_DIR/top.toml\"",
            "[types] table",
        ),
    ];
    for (name, script, needle) in cases {
        let bp = write_buildpack(
            &env.path(&format!("bp-{name}")),
            &BuildpackSpec {
                id: "test/invalid",
                build: script,
                ..BuildpackSpec::default()
            },
        );
        let out = build_into(&env, &dest, &example_app(), &[&bp], &[]);
        assert_failed(
            &out,
            52,
            &["buildpack test/invalid wrote an invalid", needle],
        );
    }
    // An invalid build plan from detect is a detect error.
    let bad_plan = write_buildpack(
        &env.path("bad-plan"),
        &BuildpackSpec {
            id: "test/bad-plan",
            detect: "echo '[[provides' > \"$CNB_BUILD_PLAN_PATH\"",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &dest, &example_app(), &[&bad_plan], &[]);
    assert_failed(&out, 21, &["build plan is not valid TOML"]);
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn invalid_buildpack_directories() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let out = build_into(
        &env,
        &env.path("dest"),
        &app,
        &[Path::new("/no/such/bp")],
        &[],
    );
    assert_failed(&out, 3, &["buildpack directory /no/such/bp does not exist"]);

    let empty = env.path("empty-bp");
    fs::create_dir_all(&empty).unwrap();
    let out = build_into(&env, &env.path("dest"), &app, &[&empty], &[]);
    assert_failed(&out, 3, &["buildpack.toml"]);

    let garbage = env.path("garbage-bp");
    fs::create_dir_all(&garbage).unwrap();
    fs::write(
        garbage.join("buildpack.toml"),
        "api = \"0.10\"\n[buildpack\n",
    )
    .unwrap();
    let out = build_into(&env, &env.path("dest"), &app, &[&garbage], &[]);
    assert_failed(&out, 3, &["is not a valid buildpack descriptor"]);

    let bad_id = write_buildpack(
        &env.path("bad-id"),
        &BuildpackSpec {
            id: "has spaces",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &env.path("dest"), &app, &[&bad_id], &[]);
    assert_failed(&out, 3, &["contains ' '"]);

    let not_exec = write_buildpack(&env.path("not-exec"), &BuildpackSpec::default());
    fs::set_permissions(
        not_exec.join("bin/detect"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = build_into(&env, &env.path("dest"), &app, &[&not_exec], &[]);
    assert_failed(
        &out,
        3,
        &["bin/detect is not executable (run chmod +x on it)"],
    );

    let old = write_buildpack(
        &env.path("old"),
        &BuildpackSpec {
            api: "0.9",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &env.path("dest"), &app, &[&old], &[]);
    assert_failed(&out, 12, &["Buildpack API 0.9"]);

    // No --buildpack: kiln's built-in order, none of which applies to this app.
    let defaults = env.run(&["build", "x", "--path", app.to_str().unwrap()]);
    assert_failed(
        &defaults,
        20,
        &[
            "no buildpack group passed detection",
            "kiln/python@0.1.0: fail",
            "kiln/procfile@0.1.0: fail",
        ],
    );
}

#[test]
fn nothing_detects_lists_every_buildpack() {
    let env = TestEnv::new();
    let app = env.app("app", &[("README", "no app.sh here")]);
    let other = write_buildpack(
        &env.path("other"),
        &BuildpackSpec {
            id: "test/other",
            detect: "echo 'needs go.mod'; exit 100",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &env.path("dest"), &app, &[&example_buildpack()], &[]);
    assert_failed(
        &out,
        20,
        &[
            "no buildpack group passed detection",
            "examples/shell@0.1.0: fail",
        ],
    );
    let out = build_into(&env, &env.path("dest"), &app, &[&other], &["-v"]);
    assert_failed(&out, 20, &["test/other@1.0.0: fail", "needs go.mod"]);
}

#[test]
fn missing_or_corrupt_run_images() {
    let env = TestEnv::new();
    let dest = env.path("dest");
    good_build(&env, &dest);
    let before = snapshot(&dest);

    let missing = build_into(
        &env,
        &dest,
        &example_app(),
        &[&example_buildpack()],
        &["--run-image", "oci:/no/such/layout:run"],
    );
    assert_failed(
        &missing,
        30,
        &["/no/such/layout is not an OCI image layout"],
    );

    let not_in_store = build_into(
        &env,
        &dest,
        &example_app(),
        &[&example_buildpack()],
        &["--run-image", "kiln/stacks/nope"],
    );
    assert_failed(&not_in_store, 30, &["kiln/stacks/nope:latest", "not found"]);

    let wrong_name = build_into(
        &env,
        &dest,
        &example_app(),
        &[&example_buildpack()],
        &["--run-image", &oci(&env.path("run-image"), "nope")],
    );
    assert_failed(&wrong_name, 30, &["not found", "available: run:1"]);

    // Flip a byte in the run image's layer blob: kiln refuses it before running anything.
    let layout = kiln::image::layout::OciLayout::open(env.path("run-image")).unwrap();
    let index = layout.read_index().unwrap();
    let manifest: kiln::oci::ImageManifest =
        serde_json::from_slice(&layout.read_blob(index.manifests()[0].digest()).unwrap()).unwrap();
    let blob = layout.blob_path(manifest.layers()[0].digest());
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let fresh = TestEnv::new(); // a store that doesn't have the good blob cached
    let out = build_into(
        &fresh,
        &dest,
        &example_app(),
        &[&example_buildpack()],
        &["--run-image", &oci(&env.path("run-image"), "run:1")],
    );
    assert_failed(&out, 30, &["is corrupt: its content hashes to"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("===> BUILDING"));

    // A corrupt manifest is caught when the image is read.
    let manifest_blob = layout.blob_path(index.manifests()[0].digest());
    fs::write(&manifest_blob, b"{}").unwrap();
    let out = fresh.run(&["inspect", &oci(&env.path("run-image"), "run:1")]);
    assert_failed(&out, 30, &["is corrupt"]);
    assert_eq!(snapshot(&dest), before);
}

#[test]
fn destinations_that_are_not_layouts_are_left_alone() {
    let env = TestEnv::new();
    let precious = env.path("precious");
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("notes.txt"), "mine").unwrap();
    let out = build_into(
        &env,
        &precious,
        &example_app(),
        &[&example_buildpack()],
        &[],
    );
    assert_failed(&out, 63, &["is not an OCI image layout"]);
    assert_eq!(fs::read_dir(&precious).unwrap().count(), 1);
    assert_eq!(
        fs::read_to_string(precious.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn unknown_process_lists_the_defined_ones() {
    let env = TestEnv::new();
    let out = build_into(
        &env,
        &env.path("dest"),
        &example_app(),
        &[&example_buildpack()],
        &["--process", "worker"],
    );
    assert_failed(
        &out,
        62,
        &["process type worker does not exist", "greet, web"],
    );
}

#[test]
fn launch_layer_without_contents_is_an_error() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let bp = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/hollow",
            build: "printf '[types]\\nlaunch = true\\n' > \"$CNB_LAYERS_DIR/hollow.toml\"",
            ..BuildpackSpec::default()
        },
    );
    let out = build_into(&env, &env.path("dest"), &app, &[&bp], &[]);
    assert_failed(
        &out,
        62,
        &["layer test/hollow:hollow is launch = true but has no contents"],
    );
}

#[test]
fn invalid_command_lines_exit_2() {
    let env = TestEnv::new();
    let app = example_app();
    let app = app.to_str().unwrap();
    let bp = example_buildpack();
    let bp = bp.to_str().unwrap();
    for (args, needle) in [
        (vec!["build", "--path", app, "-b", bp], "give an image name"),
        (
            vec!["build", "Bad_Name", "--path", app, "-b", bp],
            "not a valid image name",
        ),
        (
            vec![
                "build",
                "x",
                "--path",
                app,
                "-b",
                bp,
                "--run-image",
                "foo@sha256:zz",
            ],
            "the digest must be sha256:<64 hex digits>",
        ),
        (
            vec!["build", "x", "--path", app, "-b", bp, "--output", "scratch"],
            "scratch cannot be an output",
        ),
        (
            vec!["build", "x", "--path", app, "-b", bp, "--env", "=x"],
            "variable name",
        ),
        (
            vec!["build", "x", "--path", app, "-b", bp, "--platform", "linux"],
            "os/arch",
        ),
        (
            vec!["build", "x", "--path", app, "-b", bp, "--process", "a b"],
            "process type",
        ),
        (vec!["build", "x", "--no-such-flag"], "unexpected argument"),
    ] {
        let out = env.run(&args);
        assert_failed(&out, 2, &[needle]);
    }
}

#[test]
fn invalid_source_date_epoch_is_refused() {
    let env = TestEnv::new();
    let out = env
        .kiln()
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .args([
            "build",
            "x",
            "--path",
            example_app().to_str().unwrap(),
            "-b",
            example_buildpack().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_failed(&out, 2, &["SOURCE_DATE_EPOCH=\"yesterday\""]);
}
