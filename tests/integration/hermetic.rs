//! Hermetic builds (issue 17): buildpacks run with a build image as their root file system.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::TestEnv;

/// A buildpack for a busybox build image (`/bin/sh`, no bash) that checks what it sees; it
/// must not see any of `hidden` (host paths).
fn checker(dir: &Path, hidden: &[&Path]) -> PathBuf {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(
        dir.join("buildpack.toml"),
        "api = \"0.10\"\n\n[buildpack]\nid = \"test/checker\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    let hidden = hidden
        .iter()
        .map(|p| format!("'{}'", p.display()))
        .collect::<Vec<_>>()
        .join(" ");
    let scripts = [
        ("detect", "#!/bin/sh\nexit 0\n".to_string()),
        (
            "build",
            format!(
                r#"#!/bin/sh
set -e
test -x /bin/busybox || {{ echo "not in the build image"; exit 10; }}
if test -e "{repo}"; then echo "the host's tree is visible"; exit 11; fi
if test -e /usr/bin/python3; then echo "host tools are visible"; exit 12; fi
for hidden in /etc/shadow {hidden}; do
  if test -e "$hidden"; then echo "the host's $hidden is visible"; exit 19; fi
done
echo scratch > /tmp/scratch || {{ echo "/tmp is not writable"; exit 13; }}
if touch /bin/planted 2>/dev/null; then echo "the build image is writable"; exit 14; fi
test -c /dev/null || {{ echo "no /dev/null"; exit 15; }}
test "$HOME" = /tmp || {{ echo "HOME is $HOME"; exit 16; }}
test "$SSL_CERT_FILE" = /etc/ssl/certs/ca-certificates.crt || {{ echo "SSL_CERT_FILE is $SSL_CERT_FILE"; exit 17; }}
grep -q kiln-test-ca /etc/ssl/certs/ca-certificates.crt || {{ echo "not the given CA bundle"; exit 18; }}
mkdir -p "$CNB_LAYERS_DIR/l"
echo built > "$CNB_LAYERS_DIR/l/f"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/l.toml"
echo "checked the build image"
"#
            ),
        ),
    ];
    for (name, body) in scripts {
        let path = dir.join("bin").join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn buildpacks_in_a_build_image_see_only_it_and_builds_reproduce() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "x")]);
    // Registry credentials kiln may read, in a Docker config of their own.
    let docker_config = env.path("docker");
    fs::create_dir_all(&docker_config).unwrap();
    fs::write(docker_config.join("config.json"), "{}").unwrap();
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let bp = checker(
        &env.path("checker"),
        &[&env.home(), &docker_config, &home, Path::new("/etc/apt")],
    );
    let image = env.run_image();
    let ca = env.path("ca.pem");
    fs::write(&ca, "# kiln-test-ca\n").unwrap();
    let digest = |out: &str| -> String {
        let args = [
            "--build-env",
            "image",
            "--build-image",
            image.as_str(),
            "--ca-certs",
            ca.to_str().unwrap(),
            "--format",
            "json",
            "--rebuild",
        ];
        let output = env.build(&app, &[&bp], out, &args);
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{log}");
        assert!(log.contains("checked the build image"), "{log}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        report["manifest_digest"].as_str().unwrap().to_string()
    };
    let first = digest(&crate::util::oci(&env.path("out1"), "app"));
    let second = digest(&crate::util::oci(&env.path("out2"), "app"));
    assert_eq!(first, second);
    // The image says which build image built it, by digest.
    let label = config_label(&env.path("out1"), "io.github.kiln-build.build-image");
    assert!(
        label.starts_with(&format!("{image}@sha256:")),
        "{label} should name {image} by digest"
    );
    // The image was unpacked once, into the cache, and nothing wrote into it.
    let unpacked: Vec<_> = fs::read_dir(env.home().join("cache/rootfs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(unpacked.len(), 1, "{unpacked:?}");
    assert!(!unpacked[0].path().join("bin/planted").exists());
    assert!(!unpacked[0].path().join("tmp/scratch").exists());
    // An interrupted unpack is garbage; `--all` also drops the unpacked image.
    fs::create_dir_all(env.home().join("cache/rootfs/.unpacking-x/usr")).unwrap();
    let pruned: Value =
        serde_json::from_str(&env.ok(&["cache", "prune", "--format", "json"])).unwrap();
    assert_eq!(pruned["root_filesystems"], 1, "{pruned}");
    assert!(unpacked[0].path().exists());
    let pruned: Value =
        serde_json::from_str(&env.ok(&["cache", "prune", "--all", "--format", "json"])).unwrap();
    assert_eq!(pruned["root_filesystems"], 1, "{pruned}");
    assert!(!unpacked[0].path().exists());
}

/// The label `key` of the only image in the layout `dir`.
fn config_label(dir: &Path, key: &str) -> String {
    let read = |digest: &str| -> Value {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    };
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    config["config"]["Labels"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn build_image_needs_the_image_build_environment() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "x")]);
    let out = env
        .kiln()
        .args(["build", "x", "--build-image", "scratch", "--path"])
        .arg(&app)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--build-env image"));
}

#[test]
fn ca_certs_reach_buildpacks_on_the_host_too() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "x")]);
    let ca = env.path("ca.pem");
    fs::write(&ca, "# kiln-test-ca\n").unwrap();
    let bp = crate::util::write_buildpack(
        &env.path("bp"),
        &crate::util::BuildpackSpec {
            id: "test/ca",
            build: r#"
for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE PIP_CERT NODE_EXTRA_CA_CERTS CURL_CA_BUNDLE GIT_SSL_CAINFO; do
  grep -q kiln-test-ca "${!v}" || { echo "$v does not name the given bundle"; exit 1; }
done
echo "ca ok"
"#,
            ..crate::util::BuildpackSpec::default()
        },
    );
    let out = env.build(&app, &[&bp], "ca", &["--ca-certs", ca.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("ca ok"), "{log}");
}

/// `podman run` options that give a container what kiln on this host uses to reach the
/// Debian mirror and the package indexes: the apt sources (kiln reads its mirror from them),
/// the CA bundle (this machine's proxy), and the package-index and proxy variables.
fn network_options() -> Vec<String> {
    let mut options = vec!["--network=host".to_string()];
    for path in [
        "/etc/apt/sources.list",
        "/etc/apt/sources.list.d",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        if Path::new(path).exists() {
            options.push(format!("--volume={path}:{path}:ro"));
        }
    }
    for (name, value) in std::env::vars() {
        let passed = ["PIP_", "UV_", "npm_config_", "KILN_DEBIAN"]
            .iter()
            .any(|p| name.starts_with(p))
            || name.to_ascii_lowercase().ends_with("_proxy");
        if passed {
            options.push(format!("--env={name}={value}"));
        }
    }
    options
}

/// The `kiln build flask` options of the container builds: the source at /src, the image
/// to /out, the report on stdout.
const BUILD_IN_CONTAINER: [&str; 6] = [
    "--path",
    "/src",
    "--output",
    "oci:/out:flask",
    "--format",
    "json",
];

/// The manifest digest in a build report printed on stdout.
fn reported_digest(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    report["manifest_digest"].as_str().unwrap().to_string()
}

/// A directory a container's non-root user may write.
fn shared_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.path(name);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Issue 17's contract: the Flask example built hermetically (the default) on this host, in
/// a bare container holding only kiln, the C runtime and a CA bundle (no Python, no pip),
/// and by a builder image as uid 1000 with every capability dropped and namespaces denied
/// by seccomp (a Kubernetes "restricted" pod) gives one image digest.
#[test]
fn hermetic_builds_give_one_digest_on_this_host_in_a_bare_container_and_in_a_restricted_builder() {
    let Some(podman) = crate::util::Podman::new() else {
        return;
    };
    let env = TestEnv::new();
    let app = crate::examples::clean_copy(&env, "python-flask");
    fs::set_permissions(env.path("apps"), fs::Permissions::from_mode(0o755)).unwrap();
    let kiln = env!("CARGO_BIN_EXE_kiln");

    // On this host, with no options.
    let host = env
        .kiln()
        .env_remove("KILN_BUILD_ENV")
        .args(["build", "flask", "--format", "json", "--path"])
        .arg(&app)
        .args(["--output", &crate::util::oci(&env.path("host"), "flask")])
        .output()
        .unwrap();
    let host_digest = reported_digest(&host, "the build on this host");
    // The build images were missing from the store: made on first use, with progress.
    let log = String::from_utf8_lossy(&host.stderr);
    for line in [
        "Building kiln/stacks/trixie-build:latest for",
        "Building kiln/stacks/trixie-build-python:latest for",
        "Downloading ",
        "Build image: kiln/stacks/trixie-build-python:latest",
    ] {
        assert!(
            log.contains(line),
            "no {line:?} in the build's output:\n{log}"
        );
    }

    // In a bare container: the stack's `cc` image (glibc, libgcc, CA certificates) and kiln.
    env.ok(&["stack", "build", "bookworm", "--flavour", "cc"]);
    let bare = env.path("bare.tar");
    env.ok(&[
        "push",
        "kiln/stacks/bookworm-cc",
        &format!("oci-archive:{}:localhost/kiln-test-bare:1", bare.display()),
    ]);
    let load = |archive: &Path| {
        let out = podman
            .command()
            .args(["load", "-i"])
            .arg(archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    load(&bare);
    let out_bare = shared_dir(&env, "bare-out");
    let mut command = podman.command();
    command
        .args(["run", "--rm", "--privileged"])
        .args(network_options())
        .arg(format!("--volume={kiln}:/usr/local/bin/kiln:ro"))
        .arg(format!("--volume={}:/src:ro", app.display()))
        .arg(format!("--volume={}:/out", out_bare.display()))
        .args([
            "localhost/kiln-test-bare:1",
            "/usr/local/bin/kiln",
            "build",
            "flask",
        ])
        .args(BUILD_IN_CONTAINER);
    let bare_digest = reported_digest(&command.output().unwrap(), "the build in a bare container");
    assert_eq!(
        bare_digest, host_digest,
        "a bare container built another image"
    );

    // In a builder image, as a restricted pod runs it.
    let builder = env.path("builder.tar");
    env.ok(&[
        "builder",
        "create",
        "--flavour",
        "build-python",
        "--output",
        &format!(
            "oci-archive:{}:localhost/kiln-test-builder:1",
            builder.display()
        ),
    ]);
    load(&builder);
    let seccomp = format!(
        "seccomp={}",
        crate::util::repo()
            .join("tests/fixtures/seccomp/no-namespaces.json")
            .display()
    );
    let restricted = [
        "--user=1000:1000",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--security-opt",
        seccomp.as_str(),
    ];
    // The profile does deny namespaces there.
    let denied = podman
        .command()
        .args(["run", "--rm"])
        .args(restricted)
        .args([
            "--entrypoint",
            "/usr/bin/unshare",
            "localhost/kiln-test-builder:1",
        ])
        .args(["--user", "--mount", "true"])
        .output()
        .unwrap();
    assert!(
        !denied.status.success(),
        "unshare worked in the restricted container"
    );
    // kiln's home on a volume, as the recipes keep it (emptyDir, a cache between runs).
    let cache = shared_dir(&env, "kiln-cache");
    let out_pod = shared_dir(&env, "pod-out");
    let mut command = podman.command();
    command
        .args(["run", "--rm"])
        .args(restricted)
        .args(network_options())
        .arg(format!("--volume={}:/kiln", cache.display()))
        .arg(format!("--volume={}:/src:ro", app.display()))
        .arg(format!("--volume={}:/out", out_pod.display()))
        .args(["localhost/kiln-test-builder:1", "build", "flask"])
        .args(BUILD_IN_CONTAINER);
    let pod_digest = reported_digest(&command.output().unwrap(), "the build in a builder image");
    assert_eq!(
        pod_digest, host_digest,
        "the builder image built another image"
    );

    // As a GitHub Actions container job runs it: root, the engine's default capabilities
    // and seccomp profile, the checkout mounted as the working directory.
    let out_job = shared_dir(&env, "job-out");
    let mut command = podman.command();
    command
        .args(["run", "--rm", "--user=0:0"])
        .args(network_options())
        .arg(format!("--volume={}:/kiln", cache.display()))
        .arg(format!("--volume={}:/__w/app/app", app.display()))
        .arg("--workdir=/__w/app/app")
        .arg(format!("--volume={}:/out", out_job.display()))
        .args(["localhost/kiln-test-builder:1", "build", "flask"])
        .args(["--output", "oci:/out:flask", "--format", "json"]);
    let job_digest = reported_digest(&command.output().unwrap(), "the build in a container job");
    assert_eq!(
        job_digest, host_digest,
        "the container job built another image"
    );
}
