//! The CNB TOML files kiln reads from buildpacks and source trees: `launch.toml`
//! (`kiln::internals::launch::parse_launch_toml`), `plan.toml` (`kiln::internals::plan::BuildPlan`, validated and
//! resolved as detection does), `buildpack.toml` (`kiln::buildpack::Buildpack::load`),
//! `project.toml` (read by `kiln::internals::app::fingerprint_source`), and the error text kiln makes of
//! every TOML error (`kiln::internals::untrusted::toml_problem`). `build.toml`, `store.toml` and
//! `<layer>.toml` are read by private functions of the build phase behind a buildpack run;
//! their parse is `toml`'s, covered here through the same documents and `toml_problem`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln::buildpack::Buildpack;
use kiln::internals::launch::parse_launch_toml;
use kiln::internals::plan::{BuildPlan, Candidate, resolve};
use kiln::internals::untrusted::toml_problem;
use proptest::prelude::*;

use crate::support::{config, corpus_text};

/// A TOML value, with strings that matter to the parsers (process types, ids, paths, keys).
fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        3 => prop_oneof![
            Just("web"), Just("kiln/python"), Just("../../etc"), Just("/etc/passwd"), Just(""),
            Just("a=b"), Just("production"), Just("0.10"), Just("*"), Just("ruby"), Just("."),
        ]
        .prop_map(|s| toml::Value::String(s.to_string())),
        1 => ".{0,8}".prop_map(toml::Value::String),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            table(inner).prop_map(toml::Value::Table),
        ]
    })
}

fn table(inner: impl Strategy<Value = toml::Value>) -> impl Strategy<Value = toml::Table> {
    let key = prop_oneof![
        4 => proptest::sample::select(vec![
            "processes", "type", "command", "args", "direct", "default", "working-dir",
            "exec-env", "labels", "key", "value", "slices", "paths", "provides", "requires",
            "name", "version", "metadata", "or", "api", "buildpack", "id", "order", "group",
            "optional", "targets", "os", "arch", "stacks", "mixins", "io", "buildpacks",
            "build", "env", "include", "exclude", "_", "schema-version", "unmet", "types",
            "launch", "cache", "clear-env", "sbom-formats", "variant", "arch-variant",
            "distros", "kiln", "run-image-mixins",
        ])
        .prop_map(str::to_string),
        1 => ".{0,4}",
    ];
    proptest::collection::btree_map(key, inner, 0..5).prop_map(|m| m.into_iter().collect())
}

/// A TOML document for any of the files: a table of those keys written out, sometimes
/// followed by lines of raw near-TOML.
fn document() -> impl Strategy<Value = String> {
    let raw_line = prop_oneof![
        "[a-z.\\[\\]\"' =]{0,12}",
        "[a-z]{1,4} = [\\[{\"']?.{0,6}",
        Just("[[processes]]".to_string()),
        Just("[[requires]]\nname = \"x\"\nversion = \"1\"".to_string()),
        ".{0,12}",
    ];
    (table(value()), proptest::collection::vec(raw_line, 0..4)).prop_map(|(t, raw)| {
        let mut text = toml::to_string(&t).unwrap_or_default();
        for line in raw {
            text.push('\n');
            text.push_str(&line);
        }
        text
    })
}

fn check_launch(text: &str) -> Result<(), TestCaseError> {
    if let Ok(launch) = parse_launch_toml(text, "kiln/evil", Path::new("/workspace")) {
        let defaults = launch.processes.iter().filter(|(_, d)| *d).count();
        prop_assert!(defaults <= 1);
        for (process, _) in &launch.processes {
            prop_assert!(!process.command.is_empty());
            prop_assert!(
                process
                    .process_type
                    .to_string()
                    .parse::<kiln::ProcessType>()
                    .is_ok()
            );
        }
    }
    Ok(())
}

fn check_plan(text: &str) -> Result<(), TestCaseError> {
    let Ok(plan) = toml::from_str::<BuildPlan>(text) else {
        return Ok(());
    };
    if plan.validate().is_ok() {
        // What detection keeps, written back, reads the same.
        let written = toml::to_string(&plan).unwrap();
        let again: BuildPlan = toml::from_str(&written).unwrap();
        prop_assert_eq!(&again, &plan);
    }
    let candidates: Vec<Candidate> = (0..2)
        .map(|index| Candidate {
            index,
            id: format!("kiln/bp{index}"),
            version: "1".to_string(),
            optional: index == 1,
            options: plan.options(),
        })
        .collect();
    if let Some(resolution) = resolve(&candidates) {
        let _ = format!("{resolution:?}");
    }
    Ok(())
}

fn check_buildpack(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("buildpack.toml"), text).unwrap();
    fs::create_dir(dir.path().join("bin")).unwrap();
    for exe in ["detect", "build"] {
        let path = dir.path().join("bin").join(exe);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let _ = Buildpack::load(dir.path());
}

fn check_project(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("project.toml"), text).unwrap();
    fs::write(dir.path().join("app.py"), "print(1)\n").unwrap();
    let _ = kiln::internals::app::fingerprint_source(dir.path(), &[]);
}

/// TOML errors are described without any value from the file (it may be a link to
/// `/proc/self/environ`): a secret placed in a value never appears in the description.
fn check_problem(text: &str, secret: &str) -> Result<(), TestCaseError> {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Typed {
        flag: bool,
        #[serde(default)]
        list: Vec<u32>,
    }
    let problems = [
        toml::from_str::<toml::Table>(text)
            .err()
            .map(|e| toml_problem(text, &e)),
        toml::from_str::<Typed>(text)
            .err()
            .map(|e| toml_problem(text, &e)),
    ];
    for problem in problems.into_iter().flatten() {
        prop_assert!(
            !problem.contains(secret),
            "{:?} quotes the secret: {}",
            text,
            problem
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn launch_toml_never_panics(text in document()) {
        check_launch(&text)?;
    }

    #[test]
    fn plan_toml_written_back_reads_the_same(text in document()) {
        check_plan(&text)?;
    }

    #[test]
    fn toml_problem_never_quotes_a_secret_value(
        before in "[a-z]{1,3} = ",
        quote in prop_oneof![Just(""), Just("\""), Just("'"), Just("\"\"\""), Just("[\""), Just("{ a = \"")],
        after in prop_oneof![Just(""), Just("\""), Just(" x"), Just("\n[a"), Just("\0")],
        prefix in prop_oneof![Just(String::new()), document()],
    ) {
        let secret = "KILN_REGISTRY_AUTH=user:hunter2";
        let text = format!("{prefix}\n{before}{quote}{secret}{after}\nflag = \"{secret}\"\n");
        check_problem(&text, "hunter2")?;
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn buildpack_toml_never_panics(text in document()) {
        check_buildpack(&text);
    }

    #[test]
    fn project_toml_never_panics(text in document()) {
        check_project(&text);
    }
}

/// The committed documents (`tests/corpus/toml/`: deep nesting, huge numbers, odd strings),
/// fed to every TOML reader.
#[test]
fn corpus_toml_never_panics() {
    for (name, text) in corpus_text("toml") {
        check_launch(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_plan(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_buildpack(&text);
        check_project(&text);
        check_problem(&text, "hunter2").unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
