//! R apps (issue 14): `examples/r-batch` (a script whose DESCRIPTION imports jsonlite) and
//! `examples/r-plumber` (an API) build with no options — kiln/r, the stack's `r` run image,
//! their R packages from Debian's `r-cran-*` packages in one layer — run under podman as the
//! CNB user, and two clean builds give one digest. A `renv.lock` pin Debian does not carry is
//! said in the build log and recorded; a package Debian lacks fails the export with its name.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::examples::clean_copy;
use crate::util::{Podman, TestEnv, free_port};

/// `kiln build IMAGE --path APP --format json ARGS…` with the defaults (hermetic build
/// images): the report and the log, or the log of a failure with its exit code.
fn build(
    env: &TestEnv,
    app: &Path,
    image: &str,
    args: &[&str],
) -> Result<(Value, String), (Option<i32>, String)> {
    let out = env
        .kiln()
        .env_remove("KILN_BUILD_ENV")
        .args(["build", image, "--path"])
        .arg(app)
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err((out.status.code(), log));
    }
    Ok((serde_json::from_slice(&out.stdout).unwrap(), log))
}

fn label(env: &TestEnv, image: &str, key: &str) -> Value {
    let inspect = env.inspect(image);
    let text = inspect["labels"][key]
        .as_str()
        .unwrap_or("null")
        .to_string();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn r_batch_and_plumber_apps_build_run_and_reproduce() {
    let env = TestEnv::new();
    let podman = Podman::new();

    // The batch job: twice from scratch, one digest.
    let app = clean_copy(&env, "r-batch");
    let (first, log) = build(&env, &app, "r-batch", &[]).unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(
        log.contains("Debian packages: r-cran-jsonlite")
            && log.contains("jsonlite (DESCRIPTION Imports)"),
        "{log}"
    );
    assert_eq!(
        first["run_image"]
            .as_str()
            .map(|r| r.starts_with("kiln/stacks/trixie-r")),
        Some(true),
        "{first}"
    );
    let (second, _) = build(&env, &app, "r-batch-again", &["--clear-cache", "--rebuild"])
        .unwrap_or_else(|(_, log)| panic!("{log}"));
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    let packages = label(&env, "r-batch", "io.github.kiln-build.debian-packages");
    assert!(
        packages.as_array().is_some_and(|p| p.iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.starts_with("r-cran-jsonlite=")))),
        "{packages}"
    );
    assert_eq!(env.inspect("r-batch")["user"], "1000:1000");

    if let Some(podman) = podman.as_ref() {
        let reference = format!("oci:{}:r-batch:latest", env.home().join("store").display());
        let out = podman.run(&reference, &[], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(
            result["r"].as_str().map(|v| v.starts_with("4.5")),
            Some(true),
            "{result}"
        );
        assert_eq!(result["scores"][0]["score"], 112);
        // A failing script's exit status is the container's.
        let failed = podman.run(
            &reference,
            &["--entrypoint", "Rscript"],
            &["-e", "quit(status = 3)"],
        );
        assert_eq!(failed.status.code(), Some(3));
    }

    // The plumber API answers on $PORT.
    let app = clean_copy(&env, "r-plumber");
    let (first, log) =
        build(&env, &app, "r-plumber", &[]).unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(log.contains("Debian packages: r-cran-plumber"), "{log}");
    let (second, _) = build(
        &env,
        &app,
        "r-plumber-again",
        &["--clear-cache", "--rebuild"],
    )
    .unwrap_or_else(|(_, log)| panic!("{log}"));
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    if let Some(podman) = podman.as_ref() {
        let reference = format!(
            "oci:{}:r-plumber:latest",
            env.home().join("store").display()
        );
        let served = podman.serve(&reference, free_port());
        // plumber has been seen answering 404 to the very first requests of a fresh
        // container (cause not found yet): ask again for up to 30 s before judging.
        let mut answer = served.get("/").unwrap();
        for _ in 0..30 {
            if answer.0 == 200 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
            answer = served.get("/").unwrap();
        }
        let (code, body) = answer;
        assert!(
            code == 200 && body.contains("Hello from plumber on R 4.5"),
            "{code} {body}\n{}\n{}",
            served.logs(),
            String::from_utf8_lossy(
                &podman
                    .run(
                        &reference,
                        &["--entrypoint", "sh"],
                        &["-c", "pwd; ls -la; cat plumber.R"]
                    )
                    .stdout
            )
        );
    }

    // renv.lock: a pin Debian does not carry is said and recorded; Debian's version wins.
    let renv = env.path("apps/r-renv");
    fs::create_dir_all(&renv).unwrap();
    fs::write(
        renv.join("renv.lock"),
        r#"{"R": {"Version": "4.5.0"}, "Packages": {"jsonlite": {"Package": "jsonlite", "Version": "1.8.9", "Source": "Repository", "Repository": "CRAN"}}}"#,
    )
    .unwrap();
    fs::write(
        renv.join("run.R"),
        "cat(jsonlite::toJSON(list(ok = TRUE), auto_unbox = TRUE), \"\\n\")\n",
    )
    .unwrap();
    let (_, log) = build(&env, &renv, "r-renv", &[]).unwrap_or_else(|(_, log)| panic!("{log}"));
    assert!(
        log.contains("renv.lock) pins 1.8.9") && log.contains("r-cran-jsonlite 1.9.1"),
        "{log}"
    );
    let requests = label(
        &env,
        "r-renv",
        "io.github.kiln-build.debian-packages.requests",
    );
    assert_eq!(requests[0]["pin"], "1.8.9", "{requests}");

    // A package Debian lacks: exit code 53, naming it.
    let missing = env.path("apps/r-missing");
    fs::create_dir_all(&missing).unwrap();
    fs::write(
        missing.join("DESCRIPTION"),
        "Package: x\nImports: notonDebianXyz\n",
    )
    .unwrap();
    fs::write(missing.join("main.R"), "1\n").unwrap();
    let (code, log) = build(&env, &missing, "r-missing", &[]).unwrap_err();
    assert_eq!(code, Some(53), "{log}");
    assert!(
        log.contains("r-cran-notondebianxyz (for R package notonDebianXyz (DESCRIPTION Imports)"),
        "{log}"
    );
}
