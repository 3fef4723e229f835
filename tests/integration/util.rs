//! Test harness: isolated kiln homes, buildpack and app builders, run images, external tools.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../examples/busybox_run_image.rs"]
#[allow(dead_code)]
pub mod busybox_run_image;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example app.
pub fn example_app() -> PathBuf {
    repo().join("examples/hello-shell")
}

/// The example shell buildpack.
pub fn example_buildpack() -> PathBuf {
    repo().join("examples/buildpacks/shell")
}

/// `oci:DIR:NAME`.
pub fn oci(dir: &Path, name: &str) -> String {
    format!("oci:{}:{name}", dir.display())
}

/// A fixture path under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// A scratch directory with a lowercase name (podman derives image names from `oci:` paths
/// and rejects uppercase), removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let path = std::env::temp_dir().join(format!("{prefix}{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An isolated kiln environment: its own `KILN_HOME` and scratch directory.
pub struct TestEnv {
    pub dir: ScratchDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            dir: ScratchDir::new("kiln-test-"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// A `kiln` command with this environment's home and a clean `SOURCE_DATE_EPOCH`.
    pub fn kiln(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        // Most tests are about something other than where buildpacks run, and use small
        // buildpacks and run images of their own: they run buildpacks with the host's tools
        // rather than building the stack's build image. Tests of the default remove this.
        c.env("KILN_HOME", self.home())
            .env("KILN_BUILD_ENV", "host")
            .env_remove("SOURCE_DATE_EPOCH");
        c
    }

    /// Runs kiln with `args`; returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.kiln().args(args).output().unwrap()
    }

    /// Runs kiln and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kiln, asserts the exit code, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "kiln {args:?}: expected exit {code}\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// The store, opened through the library.
    pub fn store(&self) -> kiln::Store {
        kiln::Store::open(self.home()).unwrap()
    }

    /// Writes a source tree of `(path, content)` files under `rel` and returns its path.
    pub fn app(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(rel);
        fs::create_dir_all(&dir).unwrap();
        for (path, content) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
        }
        dir
    }

    /// Runs `kiln build` of `app` with `buildpacks` into `output`, on this environment's
    /// busybox run image unless `extra` gives another `--run-image`.
    pub fn build(&self, app: &Path, buildpacks: &[&Path], output: &str, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![
            "build".into(),
            "--path".into(),
            app.display().to_string(),
            "--output".into(),
            output.into(),
        ];
        if !extra.contains(&"--run-image") {
            args.extend(["--run-image".into(), self.run_image()]);
        }
        for b in buildpacks {
            args.extend(["-b".into(), b.display().to_string()]);
        }
        args.extend(extra.iter().map(ToString::to_string));
        self.kiln().args(&args).output().unwrap()
    }

    /// Like [`TestEnv::build`], asserting success.
    pub fn build_ok(&self, app: &Path, buildpacks: &[&Path], output: &str, extra: &[&str]) {
        let out = self.build(app, buildpacks, output, extra);
        assert!(
            out.status.success(),
            "kiln build failed with {}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kiln inspect --format json REF`.
    pub fn inspect(&self, reference: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", "--format", "json", reference])).unwrap()
    }

    /// The busybox run image of this environment (made on first use).
    pub fn run_image(&self) -> String {
        let dir = self.path("run-image");
        if !dir.join("index.json").exists() {
            busybox_run_image::write_run_image(&dir, "run:1").unwrap();
        }
        format!("oci:{}:run:1", dir.display())
    }
}

/// A shell-script CNB buildpack written on the fly.
pub struct BuildpackSpec<'a> {
    pub id: &'a str,
    pub version: &'a str,
    pub api: &'a str,
    pub detect: &'a str,
    pub build: &'a str,
    pub extra_toml: &'a str,
}

impl Default for BuildpackSpec<'_> {
    fn default() -> Self {
        Self {
            id: "test/bp",
            version: "1.0.0",
            api: "0.10",
            detect: "exit 0",
            build: "exit 0",
            extra_toml: "",
        }
    }
}

/// Writes a buildpack into `dir` and returns `dir`.
pub fn write_buildpack(dir: &Path, spec: &BuildpackSpec<'_>) -> PathBuf {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(
        dir.join("buildpack.toml"),
        format!(
            "api = \"{}\"\n\n[buildpack]\nid = \"{}\"\nversion = \"{}\"\n{}\n",
            spec.api, spec.id, spec.version, spec.extra_toml
        ),
    )
    .unwrap();
    for (name, body) in [("detect", spec.detect), ("build", spec.build)] {
        let path = dir.join("bin").join(name);
        fs::write(
            &path,
            format!("#!/usr/bin/env bash\nset -euo pipefail\n{body}\n"),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.to_path_buf()
}

/// Whether `program` can be run.
pub fn cmd_exists(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// Returns true when `program` exists. When it doesn't: fails the test if
/// `KILN_REQUIRE_TOOLS` is set (as in CI), else prints why the check is skipped.
pub fn require(program: &str) -> bool {
    if cmd_exists(program) {
        return true;
    }
    assert!(
        std::env::var_os("KILN_REQUIRE_TOOLS").is_none(),
        "{program} is required (KILN_REQUIRE_TOOLS is set); run scripts/test to install it"
    );
    eprintln!("skipping: {program} is not installed (scripts/test installs it)");
    false
}

/// Runs `program args`, asserting success; returns stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `oci-image-tool validate` (schema, digests, sizes) of image `name` in the layout at
/// `layout`; works for image indexes too, which umoci cannot unpack.
pub fn validate_schema(layout: &Path, name: &str) {
    if require("oci-image-tool") {
        // oci-image-tool 1.0.0-rc3 wrongly finds a ref "not unique" in an index of three or
        // more images (the first and last of them), so it checks a copy of the layout (blobs
        // hard-linked) whose index holds only the image asked for.
        let single = ScratchDir::new("kiln-validate-");
        let copy = single.path().join("layout");
        sh(
            "cp",
            &["-al", layout.to_str().unwrap(), copy.to_str().unwrap()],
        );
        let mut index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifests = index["manifests"].as_array_mut().unwrap();
        manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name);
        fs::remove_file(copy.join("index.json")).unwrap();
        fs::write(copy.join("index.json"), index.to_string()).unwrap();
        let layout = copy.as_path();
        let out = sh(
            "oci-image-tool",
            &[
                "validate",
                "--type",
                "image",
                "--ref",
                &format!("name={name}"),
                layout.to_str().unwrap(),
            ],
        );
        assert!(out.contains("Validation succeeded"), "{out}");
    }
}

/// Validates the image `name` of the layout at `layout` with every independent validator:
/// `oci-image-tool validate` (schema, digests, sizes), `skopeo copy` to a dir (digest
/// check) and `umoci unpack` (layers apply). Returns the unpacked rootfs directory.
pub fn validate_layout(layout: &Path, name: &str, scratch: &Path) -> Option<PathBuf> {
    fs::create_dir_all(scratch).unwrap();
    let layout_str = layout.to_str().unwrap();
    validate_schema(layout, name);
    if require("skopeo") {
        let dest = scratch.join("skopeo-dir");
        sh(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("oci:{layout_str}:{name}"),
                &format!("dir:{}", dest.display()),
            ],
        );
    }
    if require("umoci") {
        let bundle = scratch.join("umoci-bundle");
        sh(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{layout_str}:{name}"),
                bundle.to_str().unwrap(),
            ],
        );
        return Some(bundle.join("rootfs"));
    }
    None
}

/// A throwaway podman: its own storage (vfs driver, so nothing stays mounted) under a temp
/// directory, removed on drop, and the containers.conf these machines need.
pub struct Podman {
    dir: ScratchDir,
}

impl Podman {
    /// `None` (after `require`) when podman is missing.
    pub fn new() -> Option<Self> {
        if !require("podman") {
            return None;
        }
        Some(Self {
            dir: ScratchDir::new("kiln-podman-"),
        })
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", repo().join("tests/containers.conf"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"));
        c
    }

    /// `podman run --rm IMAGE ARGS…` with extra `podman run` options; returns the output.
    pub fn run(&self, image: &str, options: &[&str], args: &[&str]) -> Output {
        self.command()
            .arg("run")
            .arg("--rm")
            .arg("--network=none")
            .args(options)
            .arg(image)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Podman {
    /// Starts `image` detached on the host network with `PORT=port`; the container is
    /// removed when the returned guard drops.
    pub fn serve(&self, image: &str, port: u16) -> Served<'_> {
        let out = self
            .command()
            .args(["run", "-d", "--rm", "--network=host"])
            .arg(format!("--env=PORT={port}"))
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman run {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Served {
            podman: self,
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            port,
        }
    }
}

/// A container started by [`Podman::serve`].
pub struct Served<'a> {
    podman: &'a Podman,
    id: String,
    port: u16,
}

impl Served<'_> {
    /// `GET path` on the container's port, retried for up to a minute while it starts:
    /// the status code and body, or the container's logs on failure.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.get_with(path, &[])
    }

    /// [`Served::get`] with extra request headers (`("Authorization", "Basic …")`).
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            let attempt =
                std::net::TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut s| {
                    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
                    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n")?;
                    for (name, value) in headers {
                        write!(s, "{name}: {value}\r\n")?;
                    }
                    write!(s, "\r\n")?;
                    let mut response = String::new();
                    s.read_to_string(&mut response)?;
                    Ok(response)
                });
            match attempt {
                Ok(response) if response.starts_with("HTTP/") => {
                    let code = response
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    let body = response
                        .split_once("\r\n\r\n")
                        .map(|(_, b)| b.to_string())
                        .unwrap_or_default();
                    return Ok((code, body));
                }
                _ if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                other => {
                    return Err(format!(
                        "no HTTP answer ({other:?}); logs:\n{}",
                        self.logs()
                    ));
                }
            }
        }
    }

    /// The container's output so far.
    pub fn logs(&self) -> String {
        let out = self
            .podman
            .command()
            .args(["logs", &self.id])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["rm", "--force", "--time", "0", &self.id])
            .output();
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that `haystack` contains `needle`, showing both otherwise.
#[macro_export]
macro_rules! assert_contains {
    ($haystack:expr, $needle:expr) => {{
        let haystack: &str = &$haystack;
        let needle: &str = &$needle;
        assert!(
            haystack.contains(needle),
            "expected to find {needle:?} in:\n{haystack}"
        );
    }};
}

/// A static file server on 127.0.0.1 for a directory, stopped on drop. It serves whatever
/// the directory holds at request time, so a test can tamper with files to play a hostile
/// mirror (a real mirror would not serve mismatched indexes or corrupt packages).
pub struct FileServer {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn start(root: PathBuf) -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread =
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        continue;
                    }
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let file = root.join(path.trim_start_matches('/'));
                    let response = match fs::read(&file) {
                    Ok(body) if !path.contains("..") => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend(body);
                        r
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec(),
                };
                    let _ = stream.write_all(&response);
                }
            });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An entry of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// The entries of the gzip layer blob `digest` in the OCI layout at `layout`.
pub fn layer_entries(layout: &Path, digest: &str) -> Vec<TarEntry> {
    let layout = kiln::image::layout::OciLayout::open(layout).unwrap();
    let file = layout.open_blob(&digest.parse().unwrap()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            TarEntry {
                path: e.path().unwrap().to_string_lossy().into_owned(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
            }
        })
        .collect()
}

/// Runs kiln as `nobody` (uid 65534) with `home` as its `KILN_HOME` and `HOME`, after making
/// `shared` readable and writable by everyone. Only meaningful when the suite runs as root.
pub fn kiln_as_nobody(shared: &Path, home: &Path, args: &[&str]) -> Output {
    fs::create_dir_all(home).unwrap();
    sh("chmod", &["-R", "a+rwX", shared.to_str().unwrap()]);
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_HOME", home)
        .env("HOME", home)
        .env("KILN_BUILD_ENV", "host")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The OCI digest (`sha256:<hex>`) of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}
