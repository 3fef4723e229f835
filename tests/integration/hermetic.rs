//! Hermetic builds (issue 17): buildpacks run with a build image as their root file system.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::TestEnv;

/// A buildpack for a busybox build image (`/bin/sh`, no bash) that checks what it sees.
fn checker(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(
        dir.join("buildpack.toml"),
        "api = \"0.10\"\n\n[buildpack]\nid = \"test/checker\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
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
    let bp = checker(&env.path("checker"));
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
