//! kiln/python installing a standalone CPython for a Python version the stack lacks, from a
//! mirror of python-build-standalone's release assets — here a fake one on 127.0.0.1.
//!
//! The mirror serves a real, runnable CPython in the `install_only` layout: the build host's
//! own Debian 12 CPython 3.11.2 (`/usr/bin/python3.11` and `/usr/lib/python3.11`, which
//! relocate like a standalone build: the interpreter finds its library next to itself),
//! under the upstream asset name. A relabelled interpreter (a made-up 3.99.0) would not do:
//! kiln checks that the installed `python3` reports the version the asset names, and an
//! interpreter's version is compiled in. So the apps ask for 3.11 with `--stack trixie`
//! (whose Python is 3.13): without `--stack`, kiln would rightly build on bookworm, whose
//! Python is 3.11. On a machine without Debian 12's Python 3.11 the tests say so and skip.
//!
//! Checked: `kiln detect` shows the version, its origin and the `cc` run image; with no
//! mirror configured, or one without the version, the error names the request, the stacks'
//! versions, the mirror's and the setting; a tarball whose SHA-256 is not the listed one is
//! refused; the build installs and uses it (`--build-env host`), labels the image, and the
//! image answers HTTP under podman with the interpreter's version; a rebuild reuses the
//! layer without downloading.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use crate::assert_contains;
use crate::examples::clean_copy;
use crate::servers::{FakeRegistry, Reply};
use crate::util::{Podman, ScratchDir, TestEnv, free_port, oci, sha256_hex};

const SETTING: &str = "KILN_PYTHON_STANDALONE_MIRROR";
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const VERSION: &str = "3.11.2";

fn asset_name() -> String {
    format!("cpython-{VERSION}+20250428-{TRIPLE}-install_only_stripped.tar.gz")
}

/// Debian 12's CPython 3.11.2 as an `install_only` tarball (`python/bin/python3`,
/// `python/lib/python3.11`), or `None` (with a message) where this machine has no such
/// Python.
fn debian_python_tarball() -> Option<Vec<u8>> {
    let exe = Path::new("/usr/bin/python3.11");
    let lib = Path::new("/usr/lib/python3.11");
    let version = Command::new(exe)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if std::env::consts::ARCH != "x86_64"
        || version.as_deref() != Some(VERSION)
        || !lib.join("os.py").is_file()
    {
        eprintln!(
            "skipped: needs Debian 12's CPython {VERSION} at {} on x86_64",
            exe.display()
        );
        return None;
    }
    let scratch = ScratchDir::new("kiln-standalone-python-");
    let root = scratch.path().join("python");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("lib")).unwrap();
    fs::copy(exe, root.join("bin/python3.11")).unwrap();
    std::os::unix::fs::symlink("python3.11", root.join("bin/python3")).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(lib)
        .arg(root.join("lib"))
        .status()
        .unwrap();
    assert!(status.success());
    let stdlib = root.join("lib/python3.11");
    // Debian's links out of the tree (kiln refuses an archive with links leading out), its
    // build directory, and extension modules for libraries no test needs (fewer Debian
    // packages for kiln to add to the run image).
    for rel in [
        "sitecustomize.py",
        "config-3.11-x86_64-linux-gnu",
        "lib-dynload/_dbm.cpython-311-x86_64-linux-gnu.so",
        "lib-dynload/nis.cpython-311-x86_64-linux-gnu.so",
        "lib-dynload/readline.cpython-311-x86_64-linux-gnu.so",
        "lib-dynload/_curses.cpython-311-x86_64-linux-gnu.so",
        "lib-dynload/_curses_panel.cpython-311-x86_64-linux-gnu.so",
    ] {
        let path = stdlib.join(rel);
        if path.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else if fs::symlink_metadata(&path).is_ok() {
            fs::remove_file(&path).unwrap();
        }
    }
    // A standalone build's configuration names its build machine's prefix; kiln points it
    // at the layer.
    fs::write(
        stdlib.join("_sysconfigdata_kiln_test.py"),
        "build_time_vars = {'prefix': '/install', 'INCLUDEPY': '/install/include/python3.11', 'CC': 'clang -pthread'}\n",
    )
    .unwrap();
    let tarball = scratch.path().join("out.tar.gz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(scratch.path())
        .arg("--exclude=__pycache__")
        .arg("-czf")
        .arg(&tarball)
        .arg("python")
        .status()
        .unwrap();
    assert!(status.success());
    Some(fs::read(tarball).unwrap())
}

/// A mirror with `SHA256SUMS` listing the tarball under `sha256` (and builds of other
/// versions it does not serve), and the tarball.
fn mirror(tarball: &[u8], sha256: &str) -> FakeRegistry {
    let name = asset_name();
    let other = |v: &str| {
        format!(
            "{}  cpython-{v}+20250106-{TRIPLE}-install_only_stripped.tar.gz",
            "c".repeat(64)
        )
    };
    let sums = [
        format!("{sha256}  {name}"),
        other("3.12.8"),
        other("3.13.1"),
        format!(
            "{}  cpython-3.14.1+20251201-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
            "d".repeat(64)
        ),
    ]
    .join("\n");
    let mut routes: HashMap<String, Vec<u8>> = HashMap::new();
    routes.insert("/SHA256SUMS".to_string(), sums.into_bytes());
    routes.insert(format!("/{}", name.replace('+', "%2B")), tarball.to_vec());
    let routes = Arc::new(routes);
    FakeRegistry::start(move |request, _| match routes.get(&request.path) {
        Some(body) => Reply::new(200, body.clone()),
        None => Reply::new(404, "not found"),
    })
}

fn url(server: &FakeRegistry) -> String {
    format!("http://{}", server.host())
}

fn fetched_tarballs(server: &FakeRegistry) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(".tar.gz"))
        .count()
}

/// The Flask example asking for Python `request` in `.python-version`.
fn flask_app(env: &TestEnv, request: &str) -> PathBuf {
    let app = clean_copy(env, "python-flask");
    fs::write(app.join(".python-version"), format!("{request}\n")).unwrap();
    app
}

/// `kiln detect --stack trixie` (JSON) with the mirror setting, if any.
fn detect(env: &TestEnv, app: &Path, mirror: Option<&str>) -> (bool, Value, String) {
    let mut command = env.kiln();
    command
        .args(["detect", "--format", "json", "--stack", "trixie", "--path"])
        .arg(app);
    if let Some(mirror) = mirror {
        command.args(["--env", &format!("{SETTING}={mirror}")]);
    }
    let out = command.output().unwrap();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build(env: &TestEnv, app: &Path, mirror: &str) -> (bool, String) {
    let out = env
        .kiln()
        .args(["build", "--stack", "trixie", "--path"])
        .arg(app)
        .args(["--output", &oci(&env.path("out"), "flask")])
        .args(["--env", &format!("{SETTING}={mirror}")])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_python_no_stack_has_is_installed_from_the_standalone_mirror() {
    let Some(tarball) = debian_python_tarball() else {
        return;
    };
    let sha = sha256_hex(&tarball);
    let server = mirror(&tarball, &sha);
    let env = TestEnv::new();
    let app = flask_app(&env, "3.11");

    // kiln detect: the version, where it comes from, and the run image with glibc only.
    let (ok, summary, log) = detect(&env, &app, Some(&url(&server)));
    assert!(ok, "{log}");
    let plan = &summary["plan"][0]["requires"][0]["metadata"];
    assert_eq!(plan["python"], VERSION, "{summary}");
    assert_eq!(plan["python-from"], "standalone CPython", "{summary}");
    assert_eq!(plan["python-asset"], asset_name().as_str(), "{summary}");
    assert_eq!(summary["run_image"], "kiln/stacks/trixie-cc:latest");
    assert_eq!(fetched_tarballs(&server), 0);

    // A tarball that is not the one SHA256SUMS lists: refused, nothing unpacked or run.
    let wrong = "0".repeat(64);
    let lying = mirror(&tarball, &wrong);
    let (ok, log) = build(&env, &app, &url(&lying));
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        &format!(
            "has SHA-256 {}, not the {wrong} that {}/SHA256SUMS lists: refused",
            sha256_hex(&tarball),
            url(&lying)
        )
    );
    assert!(!log.contains("using Python 3.11.2"), "{log}");

    // Downloaded, checked, unpacked, used; the image is labelled.
    let (ok, log) = build(&env, &app, &url(&server));
    assert!(ok, "{log}");
    assert_contains!(
        log,
        &format!(
            "installing standalone CPython {VERSION} from {} (3.11 in .python-version; no kiln stack has it)",
            url(&server)
        )
    );
    assert_contains!(
        log,
        &format!(
            "checked {}: SHA-256 {sha}, as SHA256SUMS lists",
            asset_name()
        )
    );
    assert_contains!(
        log,
        &format!("installing with the build's Python {VERSION}\n")
    );
    assert_contains!(log, "compiled the standard library");
    assert_eq!(fetched_tarballs(&server), 1);
    let inspection = env.inspect(&oci(&env.path("out"), "flask"));
    let labels = &inspection["labels"];
    assert_eq!(
        labels["io.github.kiln-build.python.version"], VERSION,
        "{inspection}"
    );
    assert_eq!(
        labels["io.github.kiln-build.stack"], "trixie/cc",
        "{inspection}"
    );

    // The next build reuses the layer: no download.
    fs::write(app.join("CHANGED"), "x").unwrap();
    let (ok, log) = build(&env, &app, &url(&server));
    assert!(ok, "{log}");
    assert_contains!(
        log,
        &format!("reusing the standalone CPython {VERSION} from the cache")
    );
    assert_eq!(fetched_tarballs(&server), 1);

    if let Some(podman) = Podman::new() {
        let reference = oci(&env.path("out"), "flask");
        // The build configuration points at the layer, not at the build machine.
        let out = podman.run(
            &reference,
            &["--entrypoint", "python3"],
            &[
                "-c",
                "import sys, _sysconfigdata_kiln_test as c; print(sys.executable, c.build_time_vars['INCLUDEPY'], c.build_time_vars['CC'])",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "/layers/kiln_python/python/bin/python3 /layers/kiln_python/python/include/python3.11 cc -pthread",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let container = podman.serve(&reference, free_port());
        let (code, body) = container.get("/").unwrap();
        assert_eq!(code, 200, "{body}\n{}", container.logs());
        assert_eq!(
            body.trim(),
            format!("Hello from Flask on Python {VERSION}, built by kiln!")
        );
    }
}

#[test]
fn a_python_no_stack_or_mirror_has_is_an_error_naming_what_there_is() {
    let Some(tarball) = debian_python_tarball() else {
        return;
    };
    let env = TestEnv::new();
    let app = flask_app(&env, "3.11");

    // No mirror configured.
    let (ok, _, log) = detect(&env, &app, None);
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        "Python 3.11 was requested (.python-version), but the run image provides Python 3.13.5; kiln's stacks have Python 3.11.2 (bookworm), 3.13.5 (trixie), and no standalone CPython mirror is configured (KILN_PYTHON_STANDALONE_MIRROR)"
    );
    assert_contains!(log, "--stack bookworm");
    assert_contains!(
        log,
        "set KILN_PYTHON_STANDALONE_MIRROR to the base URL of a mirror"
    );

    // A mirror that cannot be reached.
    let (ok, _, log) = detect(&env, &app, Some("http://127.0.0.1:1"));
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        "cannot list the standalone CPython builds of http://127.0.0.1:1 (KILN_PYTHON_STANDALONE_MIRROR) for Python 3.11 (.python-version; kiln's stacks have Python 3.11.2 (bookworm), 3.13.5 (trixie)): cannot download http://127.0.0.1:1/SHA256SUMS"
    );

    // A mirror without the version.
    let server = mirror(&tarball, &sha256_hex(&tarball));
    let old = flask_app(&env, "3.10");
    let (ok, _, log) = detect(&env, &old, Some(&url(&server)));
    assert!(!ok, "{log}");
    assert_contains!(
        log,
        &format!(
            "no standalone CPython build for {TRIPLE} matches `3.10` on the mirror {} (KILN_PYTHON_STANDALONE_MIRROR), asked for by .python-version; the mirror has Python 3.13.1, 3.12.8, 3.11.2, kiln's stacks have Python 3.11.2 (bookworm), 3.13.5 (trixie)",
            url(&server)
        )
    );
}
