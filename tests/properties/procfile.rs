//! The `kiln/procfile` buildpack's Procfile parser, run the way kiln runs it: the `kiln`
//! binary started as the buildpack's `bin/detect` on an app holding a hostile `Procfile`.
//! (The parser is private to the `kiln-buildpacks` crate; its public entry is the buildpack.)
//! Detection passes, fails or errors; it never panics, and what it passes with is a build
//! plan kiln accepts.

use std::fs;
use std::process::Command;

use kiln::internals::plan::BuildPlan;
use proptest::prelude::*;

use crate::support::{config, corpus};

/// Procfile text: `type: command` lines, comments, blanks, missing parts, duplicates, odd
/// types and separators, CRLF, non-UTF-8.
fn procfile() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => "(web|worker|[a-z._-]{1,6}): [ -~]{0,12}",
        1 => Just("# comment".to_string()),
        1 => Just(String::new()),
        1 => Just("   \t".to_string()),
        1 => "[a-z]{1,4}:",
        1 => ":[ -~]{0,6}",
        1 => "[a-z ]{1,4}: x",
        1 => "[ -~]{0,12}",
        1 => ".{0,12}",
        1 => Just("web: a: b: c\r".to_string()),
    ];
    (
        proptest::collection::vec(line, 0..8),
        prop_oneof![4 => Just(Vec::new()), 1 => proptest::collection::vec(128u8.., 1..4)],
    )
        .prop_map(|(lines, tail)| {
            let mut bytes = lines.join("\n").into_bytes();
            bytes.extend(tail);
            bytes
        })
}

/// Runs the built-in `kiln/procfile` detection on an app whose `Procfile` is `bytes`;
/// returns the exit code and the plan it wrote.
fn detect(bytes: &[u8]) -> (Option<i32>, String, String) {
    let work = tempfile::tempdir().unwrap();
    let bp = work.path().join("buildpack");
    fs::create_dir_all(bp.join("bin")).unwrap();
    let builtin = kiln_buildpacks::builtin(kiln_buildpacks::PROCFILE).unwrap();
    fs::write(bp.join("buildpack.toml"), builtin.descriptor).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kiln"), bp.join("bin/detect")).unwrap();
    let app = work.path().join("app");
    let platform = work.path().join("platform");
    fs::create_dir_all(&app).unwrap();
    fs::create_dir_all(&platform).unwrap();
    fs::write(app.join("Procfile"), bytes).unwrap();
    let plan = work.path().join("plan.toml");
    fs::write(&plan, "").unwrap();
    let output = Command::new(bp.join("bin/detect"))
        .arg(&platform)
        .arg(&plan)
        .current_dir(&app)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNB_BUILDPACK_DIR", &bp)
        .env("CNB_PLATFORM_DIR", &platform)
        .env("CNB_BUILD_PLAN_PATH", &plan)
        .env("CNB_TARGET_OS", "linux")
        .env("CNB_TARGET_ARCH", "amd64")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.code(),
        fs::read_to_string(&plan).unwrap_or_default(),
        stderr,
    )
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (code, plan, stderr) = detect(bytes);
    prop_assert!(
        !stderr.contains("panicked"),
        "{:?}: detection panicked: {}",
        String::from_utf8_lossy(bytes),
        stderr
    );
    prop_assert!(
        matches!(code, Some(0 | 1 | 100)),
        "{:?}: detection ended with {:?}: {}",
        String::from_utf8_lossy(bytes),
        code,
        stderr
    );
    if code == Some(0) {
        let parsed: BuildPlan = toml::from_str(&plan)
            .map_err(|e| TestCaseError::fail(format!("plan {plan:?} is not a plan: {e}")))?;
        prop_assert!(parsed.validate().is_ok());
        prop_assert!(parsed.provides.iter().any(|p| p.name == "procfile"));
    }
    Ok(())
}

proptest! {
    // A process per case: a quarter of the cases.
    #![proptest_config(config(16))]

    #[test]
    fn procfile_detection_never_panics(bytes in procfile()) {
        check(&bytes)?;
    }
}

/// The committed Procfiles (`tests/corpus/procfile/`).
#[test]
fn corpus_procfiles_never_panic() {
    for (name, bytes) in corpus("procfile") {
        check(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A valid one passes, so the harness does run the buildpack.
    let (code, plan, stderr) = detect(b"web: ./server\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(plan.contains("procfile"), "{plan}");
}
