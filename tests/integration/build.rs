//! The build phase through the CLI: layer types, what later buildpacks see, env-file rules,
//! processes, labels, unmet plan entries, store.toml, slices — checked in the exported image.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::assert_contains;
use crate::util::{BuildpackSpec, Podman, TestEnv, oci, validate_layout, write_buildpack};

/// Builds `app` with `buildpacks` into `oci:<env>/out:img` with extra args; returns the
/// `kiln inspect --format json` of the result.
fn build(env: &TestEnv, app: &Path, buildpacks: &[&Path], extra: &[&str]) -> Value {
    let out = oci(&env.path("out"), "img");
    env.build_ok(app, buildpacks, &out, extra);
    env.inspect(&out)
}

fn label(inspection: &Value, key: &str) -> Value {
    serde_json::from_str(inspection["labels"][key].as_str().unwrap()).unwrap()
}

fn env_var<'a>(inspection: &'a Value, name: &str) -> Option<&'a str> {
    inspection["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix(&format!("{name}=")))
}

/// Writes a layer `name` with the given types, a tool `bin/tool-<name>` and an env file.
const MAKE_LAYER: &str = r#"
make_layer() {
  local name=$1 launch=$2 build=$3 cache=$4
  local dir="$CNB_LAYERS_DIR/$name"
  mkdir -p "$dir/bin" "$dir/env"
  printf '#!/bin/sh\necho %s\n' "$name" > "$dir/bin/tool-$name"
  chmod +x "$dir/bin/tool-$name"
  printf '%s' "$name" > "$dir/env/SEEN_$(echo "$name" | tr - _)"
  printf '[types]\nlaunch = %s\nbuild = %s\ncache = %s\n[metadata]\nname = "%s"\n' \
    "$launch" "$build" "$cache" "$name" > "$dir.toml"
}
"#;

#[test]
fn each_layer_type_combination_behaves_per_spec() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    let combos = [
        ("l-b-c", true, true, true),
        ("l-b", true, true, false),
        ("l-c", true, false, true),
        ("l", true, false, false),
        ("b-c", false, true, true),
        ("b", false, true, false),
        ("c", false, false, true),
        ("none", false, false, false),
    ];
    let mut script = MAKE_LAYER.to_string();
    for (name, l, b, c) in combos {
        writeln!(script, "make_layer {name} {l} {b} {c}").unwrap();
    }
    let maker = write_buildpack(
        &env.path("maker"),
        &BuildpackSpec {
            id: "test/maker",
            build: &script,
            ..BuildpackSpec::default()
        },
    );
    // A later buildpack records which tools and variables it can see.
    let observer = write_buildpack(
        &env.path("observer"),
        &BuildpackSpec {
            id: "test/observer",
            build: r#"
dir="$CNB_LAYERS_DIR/seen"; mkdir -p "$dir"
for t in l-b-c l-b l-c l b-c b c none; do
  if command -v "tool-$t" >/dev/null; then echo "$t" >> "$dir/tools"; fi
done
env | grep '^SEEN_' | sort > "$dir/vars"
printf '[types]\nlaunch = true\n' > "$dir.toml"
"#,
            ..BuildpackSpec::default()
        },
    );
    let inspection = build(&env, &app, &[&maker, &observer], &[]);

    // Later buildpacks see exactly the build = true layers (bin on PATH, env/ applied).
    let unpacked = validate_layout(&env.path("out"), "img", &env.path("scratch"));
    let expected_build = ["b", "b-c", "l-b", "l-b-c"];
    if let Some(rootfs) = &unpacked {
        let seen = rootfs.join("layers/test_observer/seen");
        let mut tools: Vec<String> = fs::read_to_string(seen.join("tools"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        tools.sort();
        assert_eq!(tools, expected_build);
        let vars = fs::read_to_string(seen.join("vars")).unwrap();
        assert_eq!(
            vars,
            "SEEN_b=b\nSEEN_b_c=b-c\nSEEN_l_b=l-b\nSEEN_l_b_c=l-b-c\n"
        );
        // Only launch = true layers are in the image; none of the others.
        let mut dirs: Vec<String> = fs::read_dir(rootfs.join("layers/test_maker"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["l", "l-b", "l-b-c", "l-c"]);
    }

    // The lifecycle metadata label lists the launch layers with their types and metadata.
    let meta = label(&inspection, "io.buildpacks.lifecycle.metadata");
    let layers = &meta["buildpacks"][0]["layers"];
    let names: Vec<&String> = layers.as_object().unwrap().keys().collect();
    assert_eq!(names, ["l", "l-b", "l-b-c", "l-c"]);
    assert_eq!(layers["l-b-c"]["build"], true);
    assert_eq!(layers["l-b-c"]["cache"], true);
    assert_eq!(layers["l-c"]["build"], false);
    assert_eq!(layers["l"]["data"]["name"], "l");
    assert!(layers["l"]["sha"].as_str().unwrap().starts_with("sha256:"));

    // Launch layers go into the image's launch environment (bin on PATH, env/ applied).
    // The launcher prepends each layer's bin in name order, so the last name comes first.
    let path = env_var(&inspection, "PATH").unwrap();
    assert_eq!(
        path,
        "/layers/test_maker/l-c/bin:/layers/test_maker/l-b-c/bin:/layers/test_maker/l-b/bin:/layers/test_maker/l/bin:/bin"
    );
    assert_eq!(env_var(&inspection, "SEEN_l_c"), Some("l-c"));
    assert_eq!(env_var(&inspection, "SEEN_b"), None);

    // Layer order: run image, then maker's launch layers by name, observer's, then the app.
    let created: Vec<&str> = inspection["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        &created[1..],
        [
            "Layer: 'l', Created by buildpack: test/maker@1.0.0",
            "Layer: 'l-b', Created by buildpack: test/maker@1.0.0",
            "Layer: 'l-b-c', Created by buildpack: test/maker@1.0.0",
            "Layer: 'l-c', Created by buildpack: test/maker@1.0.0",
            "Layer: 'seen', Created by buildpack: test/observer@1.0.0",
            "Application Layer",
        ]
    );
}

#[test]
fn env_file_suffixes_follow_the_lifecycle() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    // Layers apply in name order: "a-base" sets values that "b-mods" then modifies.
    let writer = write_buildpack(
        &env.path("writer"),
        &BuildpackSpec {
            id: "test/env-writer",
            build: r#"
a="$CNB_LAYERS_DIR/a-base"; mkdir -p "$a/env"
for v in APP PRE NODELIM ORDER DEF_SET; do printf 'base' > "$a/env/$v"; done
printf '[types]\nlaunch = true\nbuild = true\n' > "$a.toml"
l="$CNB_LAYERS_DIR/b-mods"; mkdir -p "$l/env" "$l/env.build" "$l/env.launch/worker"
printf 'overridden' > "$l/env/OVER"
printf 'explicit' > "$l/env/OVER2.override"
printf 'filled' > "$l/env/DEF_UNSET.default"
printf 'ignored' > "$l/env/DEF_SET.default"
printf 'end' > "$l/env/APP.append"; printf ':' > "$l/env/APP.delim"
printf 'front' > "$l/env/PRE.prepend"; printf ',' > "$l/env/PRE.delim"
printf 'glued' > "$l/env/NODELIM.append"
printf '/layers/extra' > "$l/env/PATH.prepend"; printf ':' > "$l/env/PATH.delim"
printf 'x' > "$l/env/WEIRD.unknownsuffix"
printf 'b' > "$l/env/ORDER.append"; printf 'o' > "$l/env/ORDER.override"
printf 'build only' > "$l/env.build/ONLY_BUILD"
printf 'launch only' > "$l/env.launch/ONLY_LAUNCH"
printf 'for worker' > "$l/env.launch/worker/WORKER_ONLY"
printf '[types]\nlaunch = true\nbuild = true\n' > "$l.toml"
printf '[[processes]]\ntype = "web"\ncommand = ["env"]\ndefault = true\n[[processes]]\ntype = "worker"\ncommand = ["env"]\n' > "$CNB_LAYERS_DIR/launch.toml"
"#,
            ..BuildpackSpec::default()
        },
    );
    let reader = write_buildpack(
        &env.path("reader"),
        &BuildpackSpec {
            id: "test/env-reader",
            build: r"env | grep -E '^(OVER|OVER2|DEF_UNSET|DEF_SET|APP|PRE|NODELIM|WEIRD|ORDER|ONLY_BUILD|ONLY_LAUNCH|WORKER_ONLY|PATH|USER_WINS)=' | sort | sed 's/^/ENV /'",
            ..BuildpackSpec::default()
        },
    );
    let run_image = env.run_image();
    let out = env.run(&[
        "build",
        "--path",
        app.to_str().unwrap(),
        "--run-image",
        &run_image,
        "--output",
        &oci(&env.path("out"), "img"),
        "-b",
        writer.to_str().unwrap(),
        "-b",
        reader.to_str().unwrap(),
        "--env",
        "OVER2=from user",
        "--env",
        "USER_WINS=yes",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .collect();
    let get = |name: &str| {
        seen.iter()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not seen in {seen:?}"))
    };
    assert_eq!(get("OVER"), "overridden");
    assert_eq!(get("DEF_UNSET"), "filled");
    assert_eq!(get("DEF_SET"), "base", ".default does nothing when set");
    assert_eq!(get("APP"), "base:end");
    assert_eq!(get("PRE"), "front,base");
    assert_eq!(
        get("NODELIM"),
        "baseglued",
        "without a .delim file nothing joins them"
    );
    assert_eq!(
        get("ORDER"),
        "o",
        "ORDER.append applies before ORDER.override"
    );
    assert_eq!(get("ONLY_BUILD"), "build only");
    // The user's variables are applied last for each buildpack, as the lifecycle does.
    assert_eq!(get("OVER2"), "from user");
    assert_eq!(get("USER_WINS"), "yes");
    let path = get("PATH");
    assert!(
        path.starts_with("/layers/extra:") && path.contains("/usr/bin"),
        "{path}"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("WEIRD=")),
        "unknown suffixes are ignored"
    );
    assert!(!seen.iter().any(|l| l.starts_with("ONLY_LAUNCH=")));

    // The image's launch environment: env/ and env.launch/ of launch layers, not env.build/,
    // and never the user's build-time variables.
    let inspection = env.inspect(&oci(&env.path("out"), "img"));
    assert_eq!(env_var(&inspection, "APP"), Some("base:end"));
    assert_eq!(env_var(&inspection, "OVER2"), Some("explicit"));
    assert_eq!(env_var(&inspection, "ONLY_LAUNCH"), Some("launch only"));
    assert_eq!(env_var(&inspection, "ONLY_BUILD"), None);
    assert_eq!(env_var(&inspection, "USER_WINS"), None);
    assert_eq!(env_var(&inspection, "WORKER_ONLY"), None);
    assert_eq!(env_var(&inspection, "PATH"), Some("/layers/extra:/bin"));

    // Process-specific env.launch/<type>/ applies to the process the image runs.
    env.ok(&[
        "build",
        "--path",
        app.to_str().unwrap(),
        "--run-image",
        &run_image,
        "--output",
        &oci(&env.path("out"), "worker"),
        "-b",
        writer.to_str().unwrap(),
        "--process",
        "worker",
    ]);
    let inspection = env.inspect(&oci(&env.path("out"), "worker"));
    assert_eq!(env_var(&inspection, "WORKER_ONLY"), Some("for worker"));
    assert_eq!(inspection["default_process"], "worker");
}

#[test]
fn processes_labels_args_and_working_dir_reach_the_image() {
    let env = TestEnv::new();
    let app = env.app("app", &[("sub/file.txt", "in sub")]);
    let first = write_buildpack(
        &env.path("first"),
        &BuildpackSpec {
            id: "test/first",
            build: r#"cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[labels]]
key = "org.example.team"
value = "platform"
[[labels]]
key = "org.example.override"
value = "first"
[[processes]]
type = "web"
command = ["cat"]
args = ["sub/file.txt"]
default = true
[[processes]]
type = "lister"
command = ["ls", "-1"]
args = ["."]
working-dir = "sub"
EOF"#,
            ..BuildpackSpec::default()
        },
    );
    let second = write_buildpack(
        &env.path("second"),
        &BuildpackSpec {
            id: "test/second",
            build: r#"cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[labels]]
key = "org.example.override"
value = "second"
[[processes]]
type = "echo"
command = ["echo", "fixed"]
args = ["replaceable"]
EOF"#,
            ..BuildpackSpec::default()
        },
    );
    let inspection = build(&env, &app, &[&first, &second], &[]);
    assert_eq!(inspection["labels"]["org.example.team"], "platform");
    assert_eq!(inspection["labels"]["org.example.override"], "second");
    assert_eq!(
        inspection["labels"]["io.buildpacks.base.distro.name"],
        "busybox"
    );
    assert_eq!(inspection["default_process"], "web");
    assert_eq!(inspection["entrypoint"], serde_json::json!(["cat"]));
    assert_eq!(inspection["cmd"], serde_json::json!(["sub/file.txt"]));
    assert_eq!(inspection["working_dir"], "/workspace");
    assert_eq!(inspection["user"], "1000:1000");
    let build_meta = label(&inspection, "io.buildpacks.build.metadata");
    let types: Vec<&str> = build_meta["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["echo", "lister", "web"]);
    assert_eq!(build_meta["buildpack-default-process-type"], "web");
    assert_eq!(build_meta["processes"][1]["working-dir"], "/workspace/sub");
    assert_eq!(build_meta["processes"][0]["buildpackID"], "test/second");

    // --process chooses another default, with its working directory.
    let lister = build(&env, &app, &[&first, &second], &["--process", "lister"]);
    assert_eq!(lister["working_dir"], "/workspace/sub");
    assert_eq!(lister["entrypoint"], serde_json::json!(["ls", "-1"]));

    let Some(podman) = Podman::new() else { return };
    let image = oci(&env.path("out"), "img");
    let out = podman.run(&image, &[], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "file.txt\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman.run(
        &image,
        &[
            "--entrypoint",
            r#"["echo","fixed"]"#,
            "--workdir",
            "/workspace",
        ],
        &["given"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fixed given\n");
}

#[test]
fn a_non_default_override_leaves_no_default_process() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let launch = |default: bool| {
        format!(
            "printf '[[processes]]\\ntype = \"web\"\\ncommand = [\"true\"]\\ndefault = {default}\\n' > \"$CNB_LAYERS_DIR/launch.toml\""
        )
    };
    let (a_script, b_script) = (launch(true), launch(false));
    let a = write_buildpack(
        &env.path("a"),
        &BuildpackSpec {
            id: "test/a",
            build: &a_script,
            ..BuildpackSpec::default()
        },
    );
    let b = write_buildpack(
        &env.path("b"),
        &BuildpackSpec {
            id: "test/b",
            build: &b_script,
            ..BuildpackSpec::default()
        },
    );
    let run_image = env.run_image();
    let out = env.run(&[
        "build",
        "--path",
        app.to_str().unwrap(),
        "--run-image",
        &run_image,
        "--output",
        &oci(&env.path("out"), "img"),
        "-b",
        a.to_str().unwrap(),
        "-b",
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_contains!(stderr, "redefining the default process type web");
    assert_contains!(stderr, "no default process type");
    let inspection = env.inspect(&oci(&env.path("out"), "img"));
    assert_eq!(inspection["entrypoint"], serde_json::json!([]));
    assert_eq!(inspection["default_process"], Value::Null);
}

#[test]
fn unmet_entries_pass_to_the_next_provider() {
    let env = TestEnv::new();
    let app = env.app("app", &[("f", "")]);
    let provide = "cat >> \"$CNB_BUILD_PLAN_PATH\" <<'EOF'\n[[provides]]\nname = \"node\"\nEOF";
    let first = write_buildpack(
        &env.path("first"),
        &BuildpackSpec {
            id: "test/first",
            detect: provide,
            build: "echo \"FIRST PLAN: $(grep -c name \"$3\")\"\nprintf '[[unmet]]\\nname = \"node\"\\n' > \"$CNB_LAYERS_DIR/build.toml\"",
            ..BuildpackSpec::default()
        },
    );
    let second = write_buildpack(
        &env.path("second"),
        &BuildpackSpec {
            id: "test/second",
            detect: provide,
            build: "echo \"SECOND PLAN: $(grep -c name \"$CNB_BP_PLAN_PATH\")\"",
            ..BuildpackSpec::default()
        },
    );
    let app_bp = write_buildpack(
        &env.path("app-bp"),
        &BuildpackSpec {
            id: "test/app",
            detect: "cat >> \"$CNB_BUILD_PLAN_PATH\" <<'EOF'\n[[requires]]\nname = \"node\"\n[requires.metadata]\nversion = \"22\"\nEOF",
            ..BuildpackSpec::default()
        },
    );
    let run_image = env.run_image();
    let args = |met: bool| {
        vec![
            "build".to_string(),
            "--path".to_string(),
            app.to_str().unwrap().to_string(),
            "--run-image".to_string(),
            run_image.clone(),
            "--output".to_string(),
            format!(
                "oci:{}:img",
                env.path(if met { "met" } else { "out" }).display()
            ),
        ]
    };
    let mut a = args(false);
    for b in [&first, &second, &app_bp] {
        a.push("-b".into());
        a.push(b.to_str().unwrap().into());
    }
    let out = env.kiln().args(&a).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_contains!(stderr, "FIRST PLAN: 1");
    assert_contains!(stderr, "SECOND PLAN: 1");

    // Without [[unmet]], the first provider meets the entry and the second gets nothing.
    fs::write(
        first.join("bin/build"),
        "#!/usr/bin/env bash\necho \"FIRST PLAN: $(grep -c name \"$3\")\"\n",
    )
    .unwrap();
    let out = env.kiln().args(&a).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_contains!(stderr, "SECOND PLAN: 0");
}

#[test]
fn build_sees_the_cnb_environment_and_writes_to_the_app() {
    let env = TestEnv::new();
    let app = env.app("app", &[("src/main.txt", "source")]);
    let buildpack = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/env-check",
            build: r#"
test "$(pwd)" = /workspace || { echo "cwd $(pwd)"; exit 1; }
test "$1" = /layers/test_env-check && test "$CNB_LAYERS_DIR" = "$1" || { echo "layers $1"; exit 1; }
test "$2" = /platform && test "$CNB_PLATFORM_DIR" = /platform || exit 1
test "$3" = "$CNB_BP_PLAN_PATH" && test -f "$3" || exit 1
test "$CNB_BUILDPACK_DIR" = /cnb/buildpacks/test_env-check/1.0.0 || exit 1
test "$CNB_TARGET_OS" = linux || exit 1
test -z "${KILN_TEST_SECRET:-}" || exit 1
echo "compiled" > build-output.txt
rm src/main.txt
mkdir -p "$1/store-demo"
printf '[metadata]\nruns = 3\n' > "$1/store.toml"
echo ok
"#,
            ..BuildpackSpec::default()
        },
    );
    let inspection = build(&env, &app, &[&buildpack], &[]);
    let meta = label(&inspection, "io.buildpacks.lifecycle.metadata");
    assert_eq!(meta["buildpacks"][0]["store"]["metadata"]["runs"], 3);
    assert_eq!(meta["buildpacks"][0]["key"], "test/env-check");
    assert_eq!(meta["runImage"]["image"], "run:1");
    assert!(
        meta["runImage"]["topLayer"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    if let Some(rootfs) = validate_layout(&env.path("out"), "img", &env.path("scratch")) {
        assert_eq!(
            fs::read_to_string(rootfs.join("workspace/build-output.txt")).unwrap(),
            "compiled\n"
        );
        assert!(!rootfs.join("workspace/src/main.txt").exists());
    }
    // The user's source is never modified.
    assert!(app.join("src/main.txt").exists());
    assert!(!app.join("build-output.txt").exists());
}

#[test]
fn slices_become_their_own_app_layers() {
    let env = TestEnv::new();
    let app = env.app(
        "app",
        &[
            ("static/css/site.css", "css"),
            ("static/img/logo.txt", "logo"),
            ("vendor/lib.txt", "lib"),
            ("main.txt", "main"),
        ],
    );
    let buildpack = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            id: "test/slicer",
            build: r#"cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[slices]]
paths = ["vendor"]
[[slices]]
paths = ["static/*", "vendor/*"]
[[slices]]
paths = ["nothing-matches-*"]
EOF"#,
            ..BuildpackSpec::default()
        },
    );
    let inspection = build(&env, &app, &[&buildpack], &[]);
    let created: Vec<&str> = inspection["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        &created[1..],
        [
            "Application Slice: 1",
            "Application Slice: 2",
            "Application Layer"
        ]
    );
    let meta = label(&inspection, "io.buildpacks.lifecycle.metadata");
    assert_eq!(meta["app"].as_array().unwrap().len(), 3);
    if let Some(rootfs) = validate_layout(&env.path("out"), "img", &env.path("scratch")) {
        for f in [
            "static/css/site.css",
            "static/img/logo.txt",
            "vendor/lib.txt",
            "main.txt",
        ] {
            assert!(rootfs.join("workspace").join(f).is_file(), "{f}");
        }
    }
}
