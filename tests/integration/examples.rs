//! The example apps under `examples/`, built with kiln's built-in buildpacks and default run
//! images (no options), run under podman as the image's CNB user, answering HTTP 200 on
//! `$PORT` (or printing their output); then built again, unchanged, to show the dependency
//! layer reused (same `diff_id`, "reused" in the report).
//!
//! One test walks every example in one kiln home, so each run image is built once; a
//! failing example does not hide the others.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::assert_contains;
use crate::util::{Podman, TestEnv, free_port, repo, sh};

/// What an example must do.
enum Check {
    /// Answer `GET /` with 200 and a body containing this.
    Http(&'static str),
    /// Print this and exit 0.
    Output(&'static str),
}

struct Example {
    name: &'static str,
    check: Check,
    /// The layer that must be reused as is on an unchanged rebuild.
    reused_layer: Option<&'static str>,
    /// A line of build output that shows the reuse.
    reuse_line: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "python-flask",
        check: Check::Http("Hello from Flask on Python 3.13"),
        reused_layer: Some("kiln/python:packages"),
        reuse_line: "reusing the installed dependencies (requirements.txt unchanged)",
    },
    Example {
        name: "python-uv",
        check: Check::Http("Hello from FastAPI on Python 3.13"),
        reused_layer: Some("kiln/python:packages"),
        reuse_line: "reusing the installed dependencies (pyproject.toml, uv.lock unchanged)",
    },
    Example {
        name: "node-express",
        check: Check::Http("Hello from Express on Node.js v20"),
        reused_layer: Some("kiln/nodejs:modules"),
        reuse_line: "reusing the production dependencies (lockfile unchanged)",
    },
    Example {
        name: "go-http",
        check: Check::Http("Hello from Go"),
        reused_layer: Some("kiln/go:bin"),
        reuse_line: "reusing the build and module caches",
    },
    Example {
        name: "rust-http",
        check: Check::Http("Hello from Rust, built by kiln!"),
        reused_layer: Some("kiln/rust:bin"),
        reuse_line: "reusing the target directory and registry cache",
    },
    Example {
        name: "static-site",
        check: Check::Http("Hello from a static site"),
        reused_layer: Some("kiln/static:config"),
        reuse_line: "serving public with lighttpd",
    },
    Example {
        name: "procfile-shell",
        check: Check::Output("Hello from a Procfile app, built by kiln!"),
        reused_layer: None,
        reuse_line: "process web: sh hello.sh",
    },
];

/// A copy of the committed example (what a fresh clone holds), so nothing a developer
/// left in the working tree changes the result.
pub(crate) fn clean_copy(env: &TestEnv, name: &str) -> PathBuf {
    let dest = env.path(&format!("apps/{name}"));
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let listed = sh(
        "git",
        &[
            "-C",
            repo().to_str().unwrap(),
            "ls-files",
            "-z",
            &format!("examples/{name}"),
        ],
    );
    for rel in listed.split('\0').filter(|r| !r.is_empty()) {
        let from = repo().join(rel);
        let to = dest.join(rel.strip_prefix(&format!("examples/{name}/")).unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&from, &to).unwrap();
    }
    dest
}

/// `uv lock` in `app`, with uv installed from the package index into the test's scratch
/// space (the repository carries no uv.lock: it would record the index's address).
fn uv_lock(env: &TestEnv, app: &Path) -> Result<(), String> {
    let tool = env.path("uv-tool");
    let uv = tool.join("bin/uv");
    if !uv.exists() {
        run(Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&tool)
            .arg("uv==0.13.9")
            .env("PIP_ROOT_USER_ACTION", "ignore"))?;
    }
    run(Command::new(&uv)
        .arg("lock")
        .current_dir(app)
        .env("UV_PYTHON_DOWNLOADS", "never"))
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `kiln build IMAGE --path APP --format json ARGS…`: the report and the build log.
fn build(env: &TestEnv, app: &Path, image: &str, args: &[&str]) -> Result<(Value, String), String> {
    // With no options: the buildpacks run in the stack's build images (the default).
    let out = env
        .kiln()
        .env_remove("KILN_BUILD_ENV")
        .args(["build", image, "--path"])
        .arg(app)
        .args(["--format", "json"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("kiln build failed:\n{log}"));
    }
    let report = serde_json::from_slice(&out.stdout).map_err(|e| format!("report: {e}"))?;
    Ok((report, log))
}

fn layer<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["layers"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
}

/// Builds `example` three times with `args` (first, after a source change, unchanged), checks
/// the reuse and runs the image.
fn check_example(
    env: &TestEnv,
    podman: Option<&Podman>,
    example: &Example,
    args: &[&str],
) -> Result<(), String> {
    let app = clean_copy(env, example.name);
    if example.name == "python-uv" {
        uv_lock(env, &app)?;
    }
    let image = format!("examples/{}", example.name);
    let (first, _) = build(env, &app, &image, args)?;
    // A source change: the buildpacks run again and reuse what they installed.
    std::fs::write(app.join("CHANGED.txt"), "a change").map_err(|e| e.to_string())?;
    let (second, log) = build(env, &app, &image, args)?;
    // Nothing changed since: the image is up to date without running a buildpack.
    let (third, log3) = build(env, &app, &image, args)?;
    if third["up_to_date"] != true
        || third["manifest_digest"] != second["manifest_digest"]
        || log3.contains("===> BUILDING")
    {
        return Err(format!(
            "an unchanged rebuild was not up to date:\n{third}\n{log3}"
        ));
    }
    if !log.contains(example.reuse_line) {
        return Err(format!(
            "the rebuild did not say {:?}:\n{log}",
            example.reuse_line
        ));
    }
    if let Some(name) = example.reused_layer {
        let (a, b) = (layer(&first, name), layer(&second, name));
        let (Some(a), Some(b)) = (a, b) else {
            return Err(format!(
                "no layer {name} in the reports:\n{first}\n{second}"
            ));
        };
        if a["diff_id"] != b["diff_id"] || b["reused"] != true {
            return Err(format!("layer {name} was not reused: {a} then {b}"));
        }
    }
    // The image runs as the run image's CNB user (podman runs it as the image says).
    let user = env.inspect(&image)["user"].clone();
    if user != "1000:1000" {
        return Err(format!(
            "the image's user is {user}, not the CNB user 1000:1000"
        ));
    }
    let Some(podman) = podman else {
        return Ok(());
    };
    let reference = format!("oci:{}:{image}:latest", env.home().join("store").display());
    if example.name == "python-flask" {
        check_bytecode(podman, &reference)?;
    }
    match example.check {
        Check::Http(expected) => {
            let served = podman.serve(&reference, free_port());
            let (code, body) = served.get("/")?;
            if code != 200 || !body.contains(expected) {
                return Err(format!(
                    "GET / answered {code} {body:?}, expected 200 with {expected:?}; logs:\n{}",
                    served.logs()
                ));
            }
        }
        Check::Output(expected) => {
            let out = podman.run(&reference, &[], &[]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !stdout.contains(expected) {
                return Err(format!(
                    "the image printed {stdout:?} ({}), expected {expected:?}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let report = podman.run(
                &reference,
                &["--entrypoint", "sh"],
                &["-c", "sh hello.sh --report"],
            );
            let stdout = String::from_utf8_lossy(&report.stdout);
            if !stdout.contains("user 1000, in /workspace") {
                return Err(format!("the report process printed {stdout:?}"));
            }
        }
    }
    Ok(())
}

/// Run in the image, with Python told not to write bytecode: imports the app, then lists every
/// module it loaded from the standard library or the installed packages, with the kind of
/// `.pyc` the image had for it (PEP 552 flags: 1 unchecked hash, 3 checked hash) or `none`.
const BYTECODE_PROBE: &str = r#"
import sys, os
import app
kinds = {}
for name, m in sorted(sys.modules.items()):
    f, c = getattr(m, "__file__", None), getattr(m, "__cached__", None)
    if not f or not c or not f.endswith(".py"):
        continue
    where = "stdlib" if f.startswith("/usr/lib/python3") else "packages" if "/site-packages/" in f else None
    if where is None:
        continue
    kind = "none"
    if os.path.exists(c):
        with open(c, "rb") as pyc:
            kind = str(int.from_bytes(pyc.read(8)[4:8], "little"))
    kinds.setdefault((where, kind), []).append(name)
for (where, kind), names in sorted(kinds.items()):
    print(where, kind, len(names), " ".join(names[:5]))
"#;

/// The Python image ships compiled bytecode for what the app imports: unchecked-hash files
/// for its packages, checked-hash ones for the run image's standard library (kiln/python's
/// `bytecode` layer), so a start compiles nothing.
fn check_bytecode(podman: &Podman, reference: &str) -> Result<(), String> {
    let out = podman.run(
        reference,
        &["--entrypoint", "python3", "-e", "PYTHONDONTWRITEBYTECODE=1"],
        &["-c", BYTECODE_PROBE],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kinds: Vec<(&str, &str, usize)> = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?, w.next()?.parse().ok()?))
        })
        .collect();
    let count = |where_: &str, kind: &str| {
        kinds
            .iter()
            .filter(|k| k.0 == where_ && k.1 == kind)
            .map(|k| k.2)
            .sum::<usize>()
    };
    let uncompiled = kinds.iter().any(|k| k.1 != "1" && k.1 != "3");
    if !out.status.success()
        || uncompiled
        || count("packages", "1") < 20
        || count("stdlib", "3") < 20
    {
        return Err(format!(
            "the image lacks bytecode for modules the app imports:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

#[test]
fn examples_build_serve_and_reuse_their_dependencies() {
    let env = TestEnv::new();
    let podman = Podman::new();
    let mut failures = Vec::new();
    for example in EXAMPLES {
        if let Err(e) = check_example(&env, podman.as_ref(), example, &[]) {
            failures.push(format!("{}: {e}", example.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// An app asking for a Python only bookworm has (3.11) builds, with no options, in bookworm's
/// build image on bookworm's run image, and the build log says why; `kiln detect` shows the
/// same choice; a stack the user names wins (and then detection says which stack has it).
#[test]
fn a_python_version_only_bookworm_has_builds_on_bookworm() {
    let env = TestEnv::new();
    let app = clean_copy(&env, "python-flask");
    fs::write(app.join(".python-version"), "3.11\n").unwrap();
    let switched = "Stack: bookworm instead of trixie: .python-version asks for Python 3.11 (trixie has Python 3.13.";

    let detect = env.run(&[
        "detect",
        "--format",
        "json",
        "--path",
        app.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&detect.stderr);
    assert!(detect.status.success(), "{log}");
    assert_contains!(log, switched);
    let summary: Value = serde_json::from_slice(&detect.stdout).unwrap();
    assert_eq!(summary["run_image"], "kiln/stacks/bookworm-python:latest");

    let (report, log) = build(&env, &app, "examples/flask-311", &[]).unwrap();
    assert_contains!(log, switched);
    assert_eq!(report["run_image"], "kiln/stacks/bookworm-python:latest");
    let labels = &env.inspect("examples/flask-311")["labels"];
    assert_eq!(labels["io.github.kiln-build.stack"], "bookworm/python");
    let build_image = labels["io.github.kiln-build.build-image"].as_str().unwrap();
    assert!(
        build_image.starts_with("kiln/stacks/bookworm-build-python:"),
        "{build_image}"
    );
    if let Some(podman) = Podman::new() {
        let reference = format!(
            "oci:{}:examples/flask-311:latest",
            env.home().join("store").display()
        );
        let served = podman.serve(&reference, free_port());
        let (code, body) = served.get("/").unwrap();
        assert!(
            code == 200 && body.contains("Hello from Flask on Python 3.11"),
            "{code} {body}"
        );
    }

    // An explicit --stack always wins: trixie cannot meet the request, and says who can.
    let out = env.run(&[
        "detect",
        "--path",
        app.to_str().unwrap(),
        "--stack",
        "trixie",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(!log.contains("Stack: bookworm"), "{log}");
    assert_contains!(log, "which has Python 3.11.2 (--stack bookworm)");
}
