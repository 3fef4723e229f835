//! Hostile images, archives and registries.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Canary, assert_clean_output};
use crate::util::{TestEnv, example_app, example_buildpack, oci};

/// The SHA-256 digest of `bytes`, `sha256:<hex>`.
fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::from("sha256:"), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Writes `value` as a blob of `layout`; returns its digest and size.
fn write_json_blob(layout: &Path, value: &Value) -> (String, usize) {
    let bytes = serde_json::to_vec(value).unwrap();
    let digest = digest(&bytes);
    fs::write(blob_path(layout, &digest), &bytes).unwrap();
    (digest, bytes.len())
}

/// Copies the OCI layout `from` to `to` and rewrites the configuration (and so the manifest
/// and index) of its image `name` with `forge`.
fn forge_image(from: &Path, to: &Path, name: &str, forge: impl FnOnce(&mut Value)) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    let mut index = read_json(&to.join("index.json"));
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap();
    let mut manifest = read_json(&blob_path(to, entry["digest"].as_str().unwrap()));
    let mut config = read_json(&blob_path(
        to,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    forge(&mut config);
    let (config_digest, config_size) = write_json_blob(to, &config);
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_size);
    let (manifest_digest, manifest_size) = write_json_blob(to, &manifest);
    entry["digest"] = json!(manifest_digest);
    entry["size"] = json!(manifest_size);
    fs::write(to.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The busybox run image of `env` as a layout directory.
fn run_image_dir(env: &TestEnv) -> std::path::PathBuf {
    env.run_image();
    env.path("run-image")
}

fn build_on(env: &TestEnv, run_image: &str, output: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--run-image", run_image];
    args.extend(extra);
    env.build(&example_app(), &[&example_buildpack()], output, &args)
}

fn assert_refused(out: &Output, code: i32, needles: &[&str]) {
    assert_clean_output(out, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}

/// Runs kiln with `args`, killing it if it takes longer than `limit`.
fn run_within(env: &TestEnv, args: &[&str], limit: Duration) -> Output {
    let mut command = env.kiln();
    command.args(args);
    super::run_with_limit(command, limit)
}

#[test]
fn a_run_image_with_wrong_diff_ids_is_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let good = run_image_dir(&env);
    let forged = env.path("forged");
    let wrong = digest(b"not the layer");
    forge_image(&good, &forged, "run:1", |config| {
        config["rootfs"]["diff_ids"][0] = json!(wrong);
    });
    let forged_ref = oci(&forged, "run:1");
    // On a fresh home: the layer is decompressed and hashed.
    let out = build_on(&env, &forged_ref, &oci(&env.path("out"), "app"), &[]);
    assert_refused(&out, 30, &["does not match its diff_id", &wrong, "run:1"]);
    assert!(!env.path("out").exists(), "nothing was written");

    // The genuine image builds (its layers' diff_ids are now recorded) …
    let out = build_on(
        &env,
        &oci(&good, "run:1"),
        &oci(&env.path("ok"), "app"),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // … and the forgery of the same blobs is refused from the record.
    let out = build_on(&env, &forged_ref, &oci(&env.path("out"), "app"), &[]);
    assert_refused(&out, 30, &["does not match its diff_id", &wrong]);
    canary.assert_intact();
}

#[test]
fn a_run_image_with_too_few_or_too_many_diff_ids_is_refused() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let good = run_image_dir(&env);
    let layers = read_json(&blob_path(
        &good,
        read_json(&blob_path(
            &good,
            read_json(&good.join("index.json"))["manifests"][0]["digest"]
                .as_str()
                .unwrap(),
        ))["config"]["digest"]
            .as_str()
            .unwrap(),
    ))["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .len();
    for (dir, extra) in [("fewer", -1_i64), ("more", 3)] {
        let forged = env.path(dir);
        forge_image(&good, &forged, "run:1", |config| {
            let diff_ids = config["rootfs"]["diff_ids"].as_array_mut().unwrap();
            if extra < 0 {
                diff_ids.pop();
            } else {
                for n in 0..extra {
                    diff_ids.push(json!(digest(format!("extra {n}").as_bytes())));
                }
            }
        });
        let count = usize::try_from(i64::try_from(layers).unwrap() + extra).unwrap();
        let out = build_on(
            &env,
            &oci(&forged, "run:1"),
            &oci(&env.path("out"), "app"),
            &[],
        );
        assert_refused(
            &out,
            30,
            &[
                &format!("manifest lists {layers} layers but its configuration {count} diff_ids"),
                dir,
            ],
        );
    }
    assert!(!env.path("out").exists());
    canary.assert_intact();
}

#[test]
fn fifos_and_devices_in_a_layout_fail_fast() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let good = run_image_dir(&env);
    let fifo = |path: &Path| {
        let _ = fs::remove_file(path);
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    };

    // index.json a FIFO, then /dev/zero.
    let layout = env.path("fifo-index");
    fs::create_dir_all(&layout).unwrap();
    fs::copy(good.join("oci-layout"), layout.join("oci-layout")).unwrap();
    fifo(&layout.join("index.json"));
    let out_ref = oci(&env.path("out"), "app");
    let args = |run: &str| -> Vec<String> {
        [
            "build",
            "--path",
            example_app().to_str().unwrap(),
            "-b",
            example_buildpack().to_str().unwrap(),
            "--run-image",
            run,
            "--output",
            &out_ref,
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let run = |reference: &str| {
        let args = args(reference);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_within(&env, &args, Duration::from_mins(1))
    };
    let out = run(&oci(&layout, "run:1"));
    assert_refused(&out, 30, &["index.json", "FIFO"]);
    fs::remove_file(layout.join("index.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", layout.join("index.json")).unwrap();
    let out = run(&oci(&layout, "run:1"));
    assert_refused(&out, 30, &["index.json", "device"]);

    // A layer blob that is a FIFO.
    let layout = env.path("fifo-blob");
    forge_image(&good, &layout, "run:1", |_| {});
    let manifest = read_json(&blob_path(
        &layout,
        read_json(&layout.join("index.json"))["manifests"][0]["digest"]
            .as_str()
            .unwrap(),
    ));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    fifo(&blob_path(&layout, layer));
    let out = run(&oci(&layout, "run:1"));
    assert_refused(&out, 30, &["FIFO", layer.trim_start_matches("sha256:")]);
    assert!(!env.path("out").exists());
    canary.assert_intact();
}

#[test]
fn rebase_refuses_an_image_with_more_diff_ids_than_layers() {
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let app = env.path("app");
    env.build_ok(
        &example_app(),
        &[&example_buildpack()],
        &oci(&app, "app"),
        &[],
    );
    // Extra diff_ids in front push the run image's top layer past the last layer: the split
    // into run image and app layers used to index out of range.
    let forged = env.path("forged");
    forge_image(&app, &forged, "app", |config| {
        let diff_ids = config["rootfs"]["diff_ids"].as_array_mut().unwrap();
        for n in 0..20 {
            diff_ids.insert(0, json!(digest(format!("extra {n}").as_bytes())));
        }
    });
    let out = env.run(&[
        "rebase",
        &oci(&forged, "app"),
        "--run-image",
        &env.run_image(),
        "--output",
        &oci(&env.path("rebased"), "app"),
    ]);
    assert_refused(&out, 30, &["diff_ids", "layers", "forged"]);
    assert!(!env.path("rebased").exists());
    canary.assert_intact();
}

#[test]
fn a_platform_the_run_image_is_not_for_is_refused() {
    let env = TestEnv::new();
    let run = env.run_image();
    let arch = env.inspect(&run)["platform"].as_str().unwrap().to_string();
    let out = build_on(
        &env,
        &run,
        &oci(&env.path("out"), "app"),
        &["--platform", "linux/s390x"],
    );
    assert_refused(&out, 30, &["linux/s390x", &arch, "run:1"]);
    // The platform it is for is fine.
    let out = build_on(
        &env,
        &run,
        &oci(&env.path("ok"), "app"),
        &["--platform", &arch],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A minimal HTTP/1.1 server: each connection's request line goes to `respond`, which writes
/// the whole response. Stops on drop.
struct TinyServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TinyServer {
    fn start(
        bind: &str,
        respond: impl Fn(&str, &str, &mut TcpStream) + Send + Sync + 'static,
    ) -> Option<Self> {
        let listener = TcpListener::bind(bind).ok()?;
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let respond = Arc::new(respond);
        {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let respond = Arc::clone(&respond);
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut reader = BufReader::new(stream.try_clone().unwrap());
                        let mut line = String::new();
                        if reader.read_line(&mut line).is_err() {
                            return;
                        }
                        loop {
                            let mut header = String::new();
                            if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                                break;
                            }
                        }
                        let mut parts = line.split_whitespace();
                        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
                            return;
                        };
                        respond(method, path, &mut stream);
                        let _ = stream.flush();
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    });
                }
            });
        }
        Some(Self { addr, stop })
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn reply(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

#[test]
fn a_huge_manifest_is_not_read_whole() {
    const HUGE: u64 = 200 << 20;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let server = TinyServer::start("127.0.0.1:0", move |_, path, stream| {
        if !path.contains("/manifests/") {
            return reply(stream, 200, "application/json", b"{}");
        }
        // 200 MB of manifest, streamed without a length: kiln must stop reading by itself.
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n{{\"schemaVersion\":2,\"x\":\""
        );
        let chunk = vec![b'a'; 1 << 20];
        while counter.load(Ordering::SeqCst) < HUGE {
            if stream.write_all(&chunk).is_err() {
                return;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    })
    .unwrap();
    let env = TestEnv::new();
    let canary = Canary::plant(env.dir.path());
    let reference = format!("{}/huge:1", server.addr);
    let out = run_within(&env, &["pull", &reference], Duration::from_mins(2));
    assert_clean_output(&out, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("larger than"), "{stderr}");
    assert!(stderr.contains("huge"), "{stderr}");
    let read = sent.load(Ordering::SeqCst);
    assert!(
        read < 64 << 20,
        "kiln read {read} bytes of a manifest it should have stopped at 8 MiB"
    );
    canary.assert_intact();
}

#[test]
fn ipv6_literal_registry_references_work() {
    let env = TestEnv::new();
    let layout = run_image_dir(&env);
    let index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blobs = layout.join("blobs/sha256");
    let root = blobs.clone();
    let Some(server) = TinyServer::start("[::1]:0", move |_, path, stream| {
        let Some(rest) = path.strip_prefix("/v2/run/") else {
            return reply(stream, 200, "application/json", b"{}");
        };
        let (kind, name) = rest.split_once('/').unwrap_or_default();
        let digest = if kind == "manifests" && name == "1" {
            manifest_digest.clone()
        } else {
            name.to_string()
        };
        match fs::read(root.join(digest.trim_start_matches("sha256:"))) {
            Ok(bytes) if kind == "manifests" => reply(
                stream,
                200,
                "application/vnd.oci.image.manifest.v1+json",
                &bytes,
            ),
            Ok(bytes) => reply(stream, 200, "application/octet-stream", &bytes),
            Err(_) => reply(stream, 404, "application/json", b"{}"),
        }
    }) else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let reference = format!("[::1]:{}/run:1", server.addr.port());
    let out = env.run(&["pull", &reference]);
    assert_clean_output(&out, &[]);
    assert!(
        out.status.success(),
        "kiln pull {reference}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = env.ok(&["images"]);
    assert!(
        images.contains(&format!("[::1]:{}/run", server.addr.port())),
        "{images}"
    );
    drop(blobs);
}

#[test]
fn stale_temporary_files_of_a_killed_archive_write_are_removed() {
    let env = TestEnv::new();
    let dir = env.path("archives");
    fs::create_dir_all(&dir).unwrap();
    // What a push killed midway leaves: a temporary file of a process that is gone.
    for name in ["out.tar", "out.docker.tar"] {
        fs::write(
            dir.join(format!(".{name}.kiln-tmp-99999999-AbCdEf")),
            "partial",
        )
        .unwrap();
    }
    let keep = dir.join(".unrelated.kiln-tmp-99999999-x");
    fs::write(&keep, "not ours").unwrap();
    for output in [
        format!("oci-archive:{}:app", dir.join("out.tar").display()),
        format!(
            "docker-archive:{}:app",
            dir.join("out.docker.tar").display()
        ),
    ] {
        env.build_ok(&example_app(), &[&example_buildpack()], &output, &[]);
    }
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".unrelated.kiln-tmp-99999999-x",
            "out.docker.tar",
            "out.tar"
        ]
    );
}
