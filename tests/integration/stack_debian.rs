//! The built-in bookworm and trixie stacks, built from the committed locks against the real
//! Debian mirror (found from the host's apt sources, as on any Debian machine or CI runner;
//! a bookworm host's mirror serves trixie too).

use std::fs;

use serde_json::Value;

use crate::assert_contains;
use crate::util::{Podman, TestEnv, kiln_as_nobody, repo, validate_schema};

fn build(env: &TestEnv, flavour: &str) -> Value {
    build_stack(env, "bookworm", flavour)
}

fn build_stack(env: &TestEnv, stack: &str, flavour: &str) -> Value {
    let out = env.run(&[
        "stack",
        "build",
        stack,
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

/// `kiln stack lock` resolves every trixie flavour for both architectures against the signed
/// archive (verified with the committed keys), to the runtimes the stack promises, with none
/// of what the stack excludes in its run images.
#[test]
fn trixie_locks_resolve_against_the_signed_archive() {
    let env = TestEnv::new();
    let dir = env.path("trixie");
    fs::create_dir_all(dir.join("keys")).unwrap();
    let committed = repo().join("stacks/trixie");
    fs::copy(committed.join("stack.toml"), dir.join("stack.toml")).unwrap();
    for key in fs::read_dir(committed.join("keys")).unwrap() {
        let key = key.unwrap();
        fs::copy(key.path(), dir.join("keys").join(key.file_name())).unwrap();
    }
    env.ok(&["stack", "lock", dir.to_str().unwrap()]);
    let lock = |flavour: &str| -> toml::Table {
        toml::from_str(&fs::read_to_string(dir.join(format!("{flavour}.lock"))).unwrap()).unwrap()
    };
    let packages = |flavour: &str, arch: &str| -> Vec<(String, String)> {
        lock(flavour)["package"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["arch"].as_str() == Some(arch))
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["version"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let version = |flavour: &str, arch: &str, name: &str| {
        packages(flavour, arch)
            .into_iter()
            .find(|(n, _)| n == name)
            .map_or_else(
                || panic!("trixie {flavour} ({arch}) has no {name}"),
                |(_, v)| v,
            )
    };
    for arch in ["amd64", "arm64"] {
        assert!(version("python", arch, "python3").starts_with("3.13."));
        assert!(version("nodejs", arch, "nodejs").starts_with("20."));
        assert!(version("build-go", arch, "golang-go").starts_with("2:1.24"));
        assert!(version("build-rust", arch, "rustc").starts_with("1.85."));
        assert!(version("base", arch, "libssl3t64").starts_with("3."));
        for flavour in ["base", "cc", "shell", "static", "python", "nodejs"] {
            for (name, _) in packages(flavour, arch) {
                assert!(
                    !["dpkg", "debconf", "perl-base", "usrmerge", "systemd"]
                        .contains(&name.as_str()),
                    "trixie {flavour} ({arch}) installs {name}"
                );
            }
        }
    }
}

/// The trixie base image is the same bytes from two homes; its python and nodejs images run
/// their runtimes as the CNB user.
#[test]
fn trixie_flavours_are_reproducible_and_run_their_runtimes() {
    let a = TestEnv::new();
    let b = TestEnv::new();
    let first = build_stack(&a, "trixie", "base");
    let second = build_stack(&b, "trixie", "base");
    assert_eq!(first["image"], "kiln/stacks/trixie-base:latest");
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    validate(&a, "kiln/stacks/trixie-base:latest");
    let python = build_stack(&a, "trixie", "python");
    assert_eq!(
        python["layers"][0]["diff_id"],
        first["layers"][0]["diff_id"]
    );
    build_stack(&a, "trixie", "nodejs");
    eprintln!(
        "trixie python: {} bytes uncompressed, {} compressed",
        python["uncompressed_size"], python["compressed_size"]
    );

    let Some(podman) = Podman::new() else { return };
    let image = |flavour: &str| {
        format!(
            "oci:{}:kiln/stacks/trixie-{flavour}:latest",
            a.home().join("store").display()
        )
    };
    let script = "import ssl, sys, os; print(sys.version.split()[0], os.getuid(), ssl.create_default_context().cert_store_stats()['x509_ca'] > 100); print(open('/etc/os-release').read())";
    let out = podman.run(&image("python"), &[], &["python3", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains!(stdout, "3.13.");
    assert_contains!(stdout, " 1000 True");
    assert_contains!(stdout, "Debian GNU/Linux 13 (trixie)");
    // `#!/usr/bin/env node` package binaries need /usr/bin/env.
    let out = podman.run(
        &image("nodejs"),
        &[],
        &[
            "/usr/bin/env",
            "node",
            "-e",
            "console.log(process.version, process.getuid())",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains!(stdout, "v20.");
    assert_contains!(stdout, " 1000");
}
