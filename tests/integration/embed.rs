//! kiln as a library, the way an embedding platform uses it: `kiln::build` and
//! `kiln::detect` called directly (no `kiln` process of ours), events collected by a closure,
//! the report checked against the written layout, and cancellation through a `CancelToken`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln::{BuildOptions, BuildpackRef, CancelToken, Destination, Event, Phase, Store};

use crate::util::{BuildpackSpec, TestEnv, validate_layout, write_buildpack};

/// A shell buildpack that says hello while building, adds a launch layer and a `web` process
/// and, when the app has a `slow` file, waits for a minute (to be cancelled meanwhile).
fn buildpack(env: &TestEnv) -> PathBuf {
    write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/embed",
            build: r#"echo "hello from the buildpack"
if [[ -f slow ]]; then echo "waiting"; sleep 60; fi
layer="$CNB_LAYERS_DIR/greeting"; mkdir -p "$layer/bin"
printf '#!/bin/sh\necho hello\n' > "$layer/bin/greet"; chmod +x "$layer/bin/greet"
printf '[types]\nlaunch = true\n' > "$layer.toml"
printf '[[processes]]\ntype = "web"\ncommand = ["greet"]\ndefault = true\n' > "$CNB_LAYERS_DIR/launch.toml""#,
            ..BuildpackSpec::default()
        },
    )
}

/// Build options as a platform would write them: required ones in `new`, the rest set.
fn options(env: &TestEnv, app: &Path, bp: &Path, destination: Destination) -> BuildOptions {
    let mut options = BuildOptions::new(app, destination);
    options
        .buildpacks
        .buildpacks
        .push(BuildpackRef::Dir(bp.to_path_buf()));
    options.run_image = Some(env.run_image().parse().unwrap());
    // The buildpack is a bash script for the host's tools (not the stack's build image).
    options.build_environment = kiln::BuildEnvironment::Host;
    // This test binary does not dispatch to the built-in buildpacks; the kiln binary does.
    options.kiln_executable = Some(PathBuf::from(env!("CARGO_BIN_EXE_kiln")));
    options
}

/// The manifest digest the layout's `index.json` names `name`.
fn index_digest(layout: &Path, name: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    let entry = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {index}"));
    entry["digest"].as_str().unwrap().to_string()
}

#[test]
fn build_through_the_library_reports_what_it_wrote() {
    let env = TestEnv::new();
    let app = env.app("app", &[("hello.txt", "hi\n")]);
    let bp = buildpack(&env);
    let store = Store::open(env.home()).unwrap();
    let layout = env.path("out");
    let destination = Destination::Layout {
        path: layout.clone(),
        name: "embedded".to_string(),
    };
    let options = options(&env, &app, &bp, destination);
    assert_eq!(
        options.destination().map(ToString::to_string),
        Some(format!("oci:{}:embedded", layout.display()))
    );

    let events = Mutex::new(Vec::new());
    let sink = |event: &Event| events.lock().unwrap().push(event.clone());
    let report = kiln::build(&store, &options, &sink, &CancelToken::new()).unwrap();

    // The report describes the image the layout holds.
    assert_eq!(
        report.manifest_digest.to_string(),
        index_digest(&layout, "embedded")
    );
    assert!(!report.up_to_date);
    let buildpacks: Vec<String> = report.buildpacks.iter().map(ToString::to_string).collect();
    assert_eq!(buildpacks, ["test/embed@1.0.0"]);
    assert_eq!(report.buildpacks[0].id, "test/embed");
    assert_eq!(report.buildpacks[0].version, "1.0.0");
    assert_eq!(report.default_process.as_deref(), Some("web"));
    assert!(
        report
            .layers
            .iter()
            .any(|l| l.name == "test/embed:greeting"),
        "{:?}",
        report.layers
    );
    assert!(matches!(
        report.published,
        kiln::transport::publish::Published::Written
    ));
    validate_layout(&layout, "embedded", &env.path("scratch"));

    // The events arrived at the closure, in pipeline order.
    let events = events.into_inner().unwrap();
    let started: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e {
            Event::PhaseStarted(phase) => Some(*phase),
            _ => None,
        })
        .collect();
    let position = |phase| started.iter().position(|p| *p == phase);
    assert!(
        position(Phase::Detect) < position(Phase::Build)
            && position(Phase::Build) < position(Phase::Export)
            && position(Phase::Detect).is_some(),
        "{started:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::BuildpackOutput { id, line }
            if id == "test/embed" && line == "hello from the buildpack")),
        "{events:?}"
    );

    // Nothing changed: the second build publishes the same image without running anything.
    let again = kiln::build(&store, &options, &kiln::NoEvents, &CancelToken::new()).unwrap();
    assert!(again.up_to_date);
    assert_eq!(again.manifest_digest, report.manifest_digest);
}

#[test]
fn detect_through_the_library_needs_no_destination() {
    let env = TestEnv::new();
    let app = env.app("app", &[("hello.txt", "hi\n")]);
    let bp = buildpack(&env);
    let store = Store::open(env.home()).unwrap();
    let mut options = BuildOptions::for_detect(&app);
    options.buildpacks.buildpacks.push(BuildpackRef::Dir(bp));
    options.run_image = Some(env.run_image().parse().unwrap());
    options.build_environment = kiln::BuildEnvironment::Host;
    options.kiln_executable = Some(PathBuf::from(env!("CARGO_BIN_EXE_kiln")));
    assert!(options.destination().is_none());

    let summary = kiln::detect(
        &store,
        &options,
        false,
        &kiln::NoEvents,
        &CancelToken::new(),
    )
    .unwrap();
    assert!(summary.detected);
    let group: Vec<String> = summary.group.iter().map(ToString::to_string).collect();
    assert_eq!(group, ["test/embed@1.0.0"]);

    // Options for detection publish nothing, so a build refuses them.
    let err = kiln::build(&store, &options, &kiln::NoEvents, &CancelToken::new()).unwrap_err();
    assert!(matches!(err, kiln::Error::InvalidOptions(_)), "{err:?}");
}

#[test]
fn cancelling_through_the_library_stops_the_buildpack() {
    let env = TestEnv::new();
    let app = env.app("app", &[("slow", "")]);
    let bp = buildpack(&env);
    let store = Store::open(env.home()).unwrap();
    let layout = env.path("out");
    let destination = Destination::Layout {
        path: layout.clone(),
        name: "cancelled".to_string(),
    };
    let options = options(&env, &app, &bp, destination);

    // The platform's UI cancels once the buildpack says it is waiting (from the sink here;
    // any thread holding a clone of the token can).
    let cancel = CancelToken::new();
    let sink = {
        let cancel = cancel.clone();
        move |event: &Event| {
            if matches!(event, Event::BuildpackOutput { line, .. } if line == "waiting") {
                cancel.cancel();
            }
        }
    };
    let started = Instant::now();
    let err = kiln::build(&store, &options, &sink, &cancel).unwrap_err();
    assert!(cancel.is_cancelled(), "the buildpack never got to wait");
    assert!(kiln::is_cancelled(&err), "not a cancellation: {err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the build went on for {:?} after it was cancelled",
        started.elapsed()
    );
    // Nothing was published.
    assert!(!layout.join("index.json").exists());

    // A token cancelled before the build starts stops it before anything runs.
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let err = kiln::build(&store, &options, &kiln::NoEvents, &cancelled).unwrap_err();
    assert!(kiln::is_cancelled(&err), "not a cancellation: {err:?}");
}
