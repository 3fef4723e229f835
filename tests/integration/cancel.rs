//! Ctrl-C: one SIGINT to the real binary while each long operation is demonstrably under way
//! — a buildpack running, a stack's mirror or a registry stalled midway — ends it with exit
//! code 130 and leaves the store intact.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{FakeRegistry, Reply, Request, Stall};
use crate::util::{BuildpackSpec, TestEnv, write_buildpack};

/// Runs `command` (output to files of `env`), waits until `started()` says the operation is
/// under way, sends one SIGINT and returns how kiln ended. A second signal would make kiln
/// exit 130 at once whatever it was doing, so exactly one is sent.
fn interrupt(
    env: &TestEnv,
    mut command: Command,
    what: &str,
    started: impl Fn() -> bool,
) -> Output {
    let stdout = env.path("kiln.stdout");
    let stderr = env.path("kiln.stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let log = || fs::read_to_string(&stderr).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_mins(2);
    while !started() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "kiln ended ({status}) before {what} was under way:\n{}",
                log()
            );
        }
        if Instant::now() > deadline {
            stop(&mut child);
            panic!("{what} never got under way:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    // Cancellation is checked at least every few hundred milliseconds wherever kiln waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            stop(&mut child);
            panic!(
                "kiln did not stop within 30 s of SIGINT during {what}:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: fs::read(&stdout).unwrap(),
        stderr: fs::read(&stderr).unwrap(),
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Exit code 130 with `error: cancelled`, and a store whose every blob still verifies.
fn assert_cancelled(env: &TestEnv, out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(130),
        "Ctrl-C during {what} must exit 130\nstderr:\n{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l == "error: cancelled"),
        "Ctrl-C during {what} is reported as cancelled\nstderr:\n{stderr}"
    );
    env.ok(&["store", "verify"]);
}

/// A kiln command that sees no credentials or daemon but what the test gives it.
fn isolated(env: &TestEnv) -> Command {
    let mut command = env.kiln();
    command
        .env("DOCKER_CONFIG", "/nonexistent/kiln-test")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("KILN_REGISTRY_AUTH")
        .env_remove("DOCKER_HOST");
    command
}

#[test]
fn ctrl_c_during_a_build_exits_130_and_keeps_the_store_intact() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.sh", "echo hi\n")]);
    let marker = env.path("building");
    let buildpack = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            build: &format!("touch '{}'\nexec sleep 300", marker.display()),
            ..BuildpackSpec::default()
        },
    );
    let mut command = env.kiln();
    command.args([
        "build",
        "--path",
        app.to_str().unwrap(),
        "--run-image",
        &env.run_image(),
        "-b",
        buildpack.to_str().unwrap(),
        "cancelled:1",
    ]);
    let out = interrupt(&env, command, "the buildpack's bin/build", || {
        marker.exists()
    });
    assert_cancelled(&env, &out, "a build");
    let images = env.ok(&["images"]);
    assert!(!images.contains("cancelled"), "{images}");
}

#[test]
fn ctrl_c_during_a_stack_build_exits_130_and_keeps_the_store_intact() {
    let env = TestEnv::new();
    // A mirror that reads each request and never answers: the package downloads hang.
    let mirror = FakeRegistry::start(|_, _| Reply {
        stall: Some(Stall::Silent),
        ..Reply::new(200, "")
    });
    let url = format!("http://{}/debian", mirror.host());
    let mut command = env.kiln();
    command.args([
        "stack",
        "build",
        "bookworm",
        "--flavour",
        "base",
        "--arch",
        "amd64",
        "--mirror",
        &url,
        "--security-mirror",
        &url,
    ]);
    let out = interrupt(&env, command, "a package download", || mirror.stalled() > 0);
    // Nothing but package downloads: the stall is in one (the lock needs no index).
    assert!(
        mirror
            .requests()
            .iter()
            .all(|r| Path::new(&r.path).extension().is_some_and(|e| e == "deb")),
        "{:?}",
        mirror.requests()
    );
    assert_cancelled(&env, &out, "a stack build");
}

/// A one-layer image: its manifest, config and layer, and their digests.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

use crate::util::sha256;

impl Image {
    fn new() -> Self {
        let content = "a layer that never arrives whole\n".repeat(8000);
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "file.txt", content.as_bytes())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = sha256(&tar);
        // Stored, not compressed: large enough to stall midway.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(&tar).unwrap();
        let layer = gz.finish().unwrap();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
            sha256(&config),
            config.len(),
            sha256(&layer),
            layer.len()
        )
        .into_bytes();
        Self {
            manifest,
            config_digest: sha256(&config),
            config,
            layer_digest: sha256(&layer),
            layer,
        }
    }

    /// The registry of `cancel/app:1`, whose layer download stalls after 4 KiB.
    fn serve(&self, request: &Request) -> Reply {
        let path = request.path.as_str();
        if path == "/v2/" {
            return Reply::new(200, "{}");
        }
        if path == "/v2/cancel/app/manifests/1" {
            return Reply::new(200, self.manifest.clone())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &sha256(&self.manifest));
        }
        if path == format!("/v2/cancel/app/blobs/{}", self.config_digest) {
            return Reply::new(200, self.config.clone());
        }
        if path == format!("/v2/cancel/app/blobs/{}", self.layer_digest) {
            return Reply {
                stall: Some(Stall::After(4096)),
                ..Reply::new(200, self.layer.clone())
            };
        }
        Reply::new(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}"#,
        )
        .header("Content-Type", "application/json")
    }
}

#[test]
fn ctrl_c_during_a_pull_exits_130_and_keeps_the_store_intact() {
    let env = TestEnv::new();
    let image = Image::new();
    let layer_digest = image.layer_digest.clone();
    let registry = FakeRegistry::start(move |request, _| image.serve(request));
    let mut command = isolated(&env);
    command.args(["pull", &format!("{}/cancel/app:1", registry.host())]);
    let out = interrupt(&env, command, "a layer download", || registry.stalled() > 0);
    assert!(
        registry
            .requests()
            .last()
            .unwrap()
            .path
            .ends_with(&layer_digest),
        "the stall was not in the layer download: {:?}",
        registry.requests()
    );
    assert_cancelled(&env, &out, "a pull");
    let layout = env.store().layout().clone();
    assert!(!layout.has_blob(&layer_digest.parse().unwrap()));
    let images = env.ok(&["images"]);
    assert!(!images.contains("cancel/app"), "{images}");
}

#[test]
fn ctrl_c_during_a_push_exits_130_and_keeps_the_store_intact() {
    let env = TestEnv::new();
    // Blobs are missing; an upload is never answered.
    let registry =
        FakeRegistry::start(
            |request, _| match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/v2/") => Reply::new(200, "{}"),
                ("POST", path) if path.contains("/blobs/uploads/") => Reply {
                    stall: Some(Stall::Silent),
                    ..Reply::new(202, "")
                },
                _ => Reply::new(
                    404,
                    r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}"#,
                )
                .header("Content-Type", "application/json"),
            },
        );
    let mut command = isolated(&env);
    command.args([
        "push",
        &env.run_image(),
        &format!("{}/cancel/app:1", registry.host()),
    ]);
    let out = interrupt(&env, command, "a blob upload", || registry.stalled() > 0);
    assert!(
        registry
            .requests()
            .iter()
            .all(|r| !r.path.contains("/manifests/")),
        "a manifest was pushed: {:?}",
        registry.requests()
    );
    assert_cancelled(&env, &out, "a push");
}
