//! The built-in bookworm stack, built from the committed locks against the real Debian
//! mirror (found from the host's apt sources, as on any Debian machine or CI runner).

use serde_json::Value;

use crate::assert_contains;
use crate::util::{Podman, TestEnv, kiln_as_nobody, validate_schema};

fn build(env: &TestEnv, flavour: &str) -> Value {
    let out = env.run(&[
        "stack",
        "build",
        "bookworm",
        "--flavour",
        flavour,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn validate(env: &TestEnv, name: &str) {
    validate_schema(&env.home().join("store"), name);
}

#[test]
fn python_flavour_runs_python3_as_the_cnb_user() {
    let env = TestEnv::new();
    let report = build(&env, "python");
    assert_eq!(report["image"], "kiln/stacks/bookworm-python:latest");
    let size = report["uncompressed_size"].as_u64().unwrap();
    assert!(
        size < 100_000_000,
        "python flavour is {size} bytes uncompressed"
    );
    eprintln!(
        "bookworm python: {} bytes uncompressed, {} compressed, {} packages",
        size,
        report["compressed_size"],
        report["packages"].as_array().unwrap().len()
    );
    validate(&env, "kiln/stacks/bookworm-python:latest");

    let Some(podman) = Podman::new() else { return };
    let image = format!(
        "oci:{}:kiln/stacks/bookworm-python:latest",
        env.home().join("store").display()
    );
    let script = "import ssl, json, os; print(ssl.OPENSSL_VERSION); print(json.dumps({'uid': os.getuid()})); print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 100); print(open('/etc/os-release').read())";
    let out = podman.run(&image, &["--user", "1000"], &["python3", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains!(stdout, "OpenSSL 3");
    assert_contains!(stdout, "{\"uid\": 1000}");
    assert_contains!(stdout, "True");
    assert_contains!(stdout, "Debian GNU/Linux 12 (bookworm)");
}

#[test]
fn base_flavour_is_reproducible_and_runs_as_the_cnb_user() {
    let a = TestEnv::new();
    let b = TestEnv::new();
    let first = build(&a, "base");
    let second = build(&b, "base");
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    assert_eq!(
        first["layers"][0]["diff_id"],
        second["layers"][0]["diff_id"]
    );
    validate(&a, "kiln/stacks/bookworm-base:latest");

    // The python image's base layer is the base image's layer: flavours share it.
    let python = build(&a, "python");
    assert_eq!(
        python["layers"][0]["diff_id"],
        first["layers"][0]["diff_id"]
    );

    // base has no shell; borrow a static busybox to look inside as the CNB user.
    let Some(podman) = Podman::new() else { return };
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static is installed by scripts/test");
    let image = format!(
        "oci:{}:kiln/stacks/bookworm-base:latest",
        a.home().join("store").display()
    );
    let mount = format!("{busybox}:/busybox:ro");
    let out = podman.run(&image, &["--user", "1000", "-v", &mount], &["/busybox", "sh", "-c", "cat /etc/os-release; id -u; ls /etc/ssl/certs/ca-certificates.crt; readlink /etc/localtime"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains!(stdout, "VERSION_ID=\"12\"");
    assert_contains!(stdout, "\n1000\n");
    assert_contains!(stdout, "/etc/ssl/certs/ca-certificates.crt");
    assert_contains!(stdout, "/usr/share/zoneinfo/Etc/UTC");
}

/// No root needed: an ordinary user builds the same bytes (ownership comes from the
/// packages, not from who unpacked them).
#[test]
fn an_ordinary_user_builds_the_same_stack_image() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipping: the suite is not running as root, so it already tests an ordinary user"
        );
        return;
    }
    let root = TestEnv::new();
    let as_root = build(&root, "base");
    let out = kiln_as_nobody(
        root.dir.path(),
        &root.path("nobody-home"),
        &[
            "stack",
            "build",
            "bookworm",
            "--flavour",
            "base",
            "--format",
            "json",
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
