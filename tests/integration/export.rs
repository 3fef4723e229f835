//! Exported images: layout, config, labels, validation by independent tools, podman runs.

use std::fs;

use crate::assert_contains;
use crate::util::{Podman, TestEnv, repo, validate_layout};

fn build_example(env: &TestEnv, out: &str) -> String {
    let run_image = env.run_image();
    env.ok(&[
        "build",
        "hello",
        "--path",
        repo().join("examples/hello-shell").to_str().unwrap(),
        "--buildpack",
        repo().join("examples/buildpacks/shell").to_str().unwrap(),
        "--run-image",
        &run_image,
        "--output",
        out,
    ])
}

#[test]
fn example_image_validates_and_runs_under_podman_as_cnb_user() {
    let env = TestEnv::new();
    let layout = env.path("out");
    build_example(&env, &format!("oci:{}:hello", layout.display()));

    let rootfs = validate_layout(&layout, "hello", &env.path("scratch"));
    if let Some(rootfs) = rootfs {
        assert!(rootfs.join("workspace/app.sh").is_file());
        assert!(
            rootfs
                .join("layers/examples_shell/greeting/bin/say-greeting")
                .is_file()
        );
        assert!(
            rootfs.join("bin/busybox").is_file(),
            "run image layers come first"
        );
    }

    let Some(podman) = Podman::new() else { return };
    let image = format!("oci:{}:hello", layout.display());
    let out = podman.run(&image, &[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "podman run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "Hello from kiln! I run as uid 1000 in /workspace with args: default-arg"
    );
    // Arguments given at run time replace the process's default args, as with the CNB launcher.
    let out = podman.run(&image, &[], &["a", "b"]);
    assert_contains!(String::from_utf8_lossy(&out.stdout), "with args: a b");
    // The other process, by entrypoint, with the launch env (bin on PATH, GREETING).
    let out = podman.run(&image, &["--entrypoint", "say-greeting"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello");
}

#[test]
fn oci_archive_output_loads_into_podman() {
    let env = TestEnv::new();
    let archive = env.path("hello.oci.tar");
    build_example(
        &env,
        &format!(
            "oci-archive:{}:localhost/kiln-test-archive:1",
            archive.display()
        ),
    );
    assert!(archive.is_file());
    let Some(podman) = Podman::new() else { return };
    let out = podman
        .command()
        .args(["load", "-i", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman.run("localhost/kiln-test-archive:1", &[], &[]);
    assert_contains!(String::from_utf8_lossy(&out.stdout), "Hello from kiln!");
}

#[test]
fn store_output_is_a_valid_layout_and_listed() {
    let env = TestEnv::new();
    let run_image = env.run_image();
    env.ok(&[
        "build",
        "myapp:1.0",
        "--path",
        repo().join("examples/hello-shell").to_str().unwrap(),
        "--buildpack",
        repo().join("examples/buildpacks/shell").to_str().unwrap(),
        "--run-image",
        &run_image,
    ]);
    let images = env.ok(&["images"]);
    assert_contains!(images, "myapp:1.0");
    validate_layout(&env.home().join("store"), "myapp:1.0", &env.path("scratch"));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["images", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "myapp:1.0");
    env.ok(&["rmi", "myapp:1.0"]);
    assert!(!env.ok(&["images"]).contains("myapp"));
    assert!(env.store().layout().verify().unwrap().is_ok());
    assert!(
        fs::read_dir(env.home().join("work"))
            .unwrap()
            .next()
            .is_none(),
        "work dirs are removed"
    );
}
