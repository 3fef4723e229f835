//! Rebuilds: what the Buildpack API says a buildpack finds again (per layer type), launch
//! layers reused from the previous image, up-to-date builds, builds sharing one store at the
//! same time, damaged caches, and builds killed while exporting.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::assert_contains;
use crate::util::{BuildpackSpec, TestEnv, oci, validate_layout, write_buildpack};

/// A buildpack that reports what it finds of its last build's layers (`seen` layer), then
/// writes one layer per type combination holding `gen<GEN>` (GEN from the platform env), and
/// a `store.toml`. The launch-only layer `l` is reused, when its metadata came back, by
/// declaring it without contents.
pub(crate) fn maker(env: &TestEnv) -> std::path::PathBuf {
    let mut script = String::from(
        r#"
L="$CNB_LAYERS_DIR"; GEN=$(cat "$2/env/GEN")
seen=""
for n in l-b-c l-b l-c l b-c b c none; do
  t=no; d=no
  if [ -f "$L/$n.toml" ]; then t=$(grep -o 'gen = [0-9]*' "$L/$n.toml" || echo empty); fi
  if grep -q '^\[types\]' "$L/$n.toml" 2>/dev/null; then t="$t+types"; fi
  if [ -d "$L/$n" ]; then d=$(cat "$L/$n/content" 2>/dev/null || echo empty); fi
  seen="$seen$n toml=$t dir=$d"$'\n'
done
seen="${seen}store=$(grep -o 'gen = [0-9]*' "$L/store.toml" 2>/dev/null || echo none)"
mkdir -p "$L/seen"; printf '%s\n' "$seen" > "$L/seen/report"
printf '[types]\nlaunch = true\n' > "$L/seen.toml"
make_layer() {
  mkdir -p "$L/$1"; echo "gen$GEN" > "$L/$1/content"
  printf '[types]\nlaunch = %s\nbuild = %s\ncache = %s\n[metadata]\ngen = %s\n' "$2" "$3" "$4" "$GEN" > "$L/$1.toml"
}
if [ -f "$L/l.toml" ]; then
  old=$(grep -o 'gen = [0-9]*' "$L/l.toml")
  printf '[types]\nlaunch = true\n[metadata]\n%s\n' "$old" > "$L/l.toml"
else
  make_layer l true false false
fi
printf '[metadata]\ngen = %s\n' "$GEN" > "$L/store.toml"
if [ -f "$2/env/WRITE_APP" ]; then echo "gen$GEN" > generated.txt; fi
"#,
    );
    for (name, l, b, c) in [
        ("l-b-c", true, true, true),
        ("l-b", true, true, false),
        ("l-c", true, false, true),
        ("b-c", false, true, true),
        ("b", false, true, false),
        ("c", false, false, true),
        ("none", false, false, false),
    ] {
        writeln!(script, "make_layer {name} {l} {b} {c}").unwrap();
    }
    write_buildpack(
        &env.path("maker"),
        &BuildpackSpec {
            id: "test/maker",
            build: &script,
            ..BuildpackSpec::default()
        },
    )
}

/// Builds into `out` with `GEN=generation`; returns the JSON report and the log.
fn build_gen(
    env: &TestEnv,
    app: &Path,
    bp: &Path,
    out: &str,
    generation: u32,
    extra: &[&str],
) -> (Value, String) {
    let gen_env = format!("GEN={generation}");
    let mut args = vec!["--env", &gen_env, "--format", "json"];
    args.extend(extra);
    let output = env.build(app, &[bp], out, &args);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "build {generation} failed:\n{log}");
    (serde_json::from_slice(&output.stdout).unwrap(), log)
}

fn layer<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {report}"))
}

/// The `seen` report the maker wrote in the image at `layout`, and the unpacked file system.
fn seen(env: &TestEnv, layout: &Path, scratch: &str) -> Option<(String, std::path::PathBuf)> {
    let rootfs = validate_layout(layout, "img", &env.path(scratch))?;
    let report = fs::read_to_string(rootfs.join("layers/test_maker/seen/report")).unwrap();
    Some((report, rootfs))
}

#[test]
fn rebuilds_restore_and_reuse_layers_per_the_buildpack_api() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    let bp = maker(&env);
    let layout = env.path("out");
    let out = oci(&layout, "img");

    let (first, _) = build_gen(&env, &app, &bp, &out, 1, &[]);
    if let Some((report, _)) = seen(&env, &layout, "s1") {
        assert!(
            report
                .lines()
                .all(|l| l.ends_with("toml=no dir=no") || l == "store=none"),
            "a first build finds nothing:\n{report}"
        );
    }

    let (second, log) = build_gen(&env, &app, &bp, &out, 2, &[]);
    // Only cache = true layers come back with contents; launch-only layers come back as
    // metadata from the previous image; nothing comes back with [types]; store.toml round-trips.
    if let Some((report, rootfs)) = seen(&env, &layout, "s2") {
        assert_eq!(
            report.trim_end(),
            "l-b-c toml=gen = 1 dir=gen1\n\
             l-b toml=no dir=no\n\
             l-c toml=gen = 1 dir=gen1\n\
             l toml=gen = 1 dir=no\n\
             b-c toml=gen = 1 dir=gen1\n\
             b toml=no dir=no\n\
             c toml=gen = 1 dir=gen1\n\
             none toml=no dir=no\n\
             store=gen = 1"
        );
        // The launch layer left without contents is the previous image's.
        assert_eq!(
            fs::read_to_string(rootfs.join("layers/test_maker/l/content")).unwrap(),
            "gen1\n"
        );
        assert_eq!(
            fs::read_to_string(rootfs.join("layers/test_maker/l-c/content")).unwrap(),
            "gen2\n"
        );
    }
    assert_contains!(log, "Reusing layer 'test/maker:l' from the previous image");
    let l1 = layer(&first, "test/maker:l");
    let l2 = layer(&second, "test/maker:l");
    assert_eq!(l1["diff_id"], l2["diff_id"]);
    assert_eq!(l1["digest"], l2["digest"]);
    assert_ne!(
        layer(&first, "test/maker:l-c")["diff_id"],
        layer(&second, "test/maker:l-c")["diff_id"]
    );
    let meta: Value = serde_json::from_str(
        env.inspect(&out)["labels"]["io.buildpacks.lifecycle.metadata"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let layers = &meta["buildpacks"][0]["layers"];
    assert_eq!(layers["l"]["sha"], l1["diff_id"]);
    assert_eq!(layers["l"]["data"]["gen"], 1);
    assert_eq!(layers["l-c"]["data"]["gen"], 2);
    assert_eq!(meta["buildpacks"][0]["store"]["metadata"]["gen"], 2);

    // Nothing changed: up to date, the same image, no buildpack run.
    let (third, log) = build_gen(&env, &app, &bp, &out, 2, &[]);
    assert_eq!(third["up_to_date"], true, "{log}");
    assert_eq!(third["manifest_digest"], second["manifest_digest"]);
    assert!(!log.contains("===> BUILDING"), "{log}");
    // --rebuild runs the buildpacks anyway; --clear-cache restores no cache layer but still
    // the previous image's metadata.
    let (_, log) = build_gen(&env, &app, &bp, &out, 2, &["--rebuild"]);
    assert_contains!(log, "===> BUILDING");
    let (_, log) = build_gen(&env, &app, &bp, &out, 3, &["--clear-cache"]);
    assert!(!log.contains("cache layer 'test/maker"), "{log}");
    if let Some((report, _)) = seen(&env, &layout, "s4") {
        assert_contains!(report, "l toml=gen = 1 dir=no");
        assert_contains!(report, "c toml=no dir=no");
    }

    // The app layer: written again when a buildpack changed the app, reused when the source
    // and the build left it as it was.
    let app_layer = |generation: u32, extra: &[&str]| -> Value {
        let (report, _) = build_gen(&env, &app, &bp, &out, generation, extra);
        layer(&report, "application")["digest"].clone()
    };
    let plain = layer(&first, "application")["digest"].clone();
    let written4 = app_layer(4, &["--env", "WRITE_APP=1"]);
    let written5 = app_layer(5, &["--env", "WRITE_APP=1"]);
    assert_ne!(written4, plain);
    assert_ne!(
        written5, written4,
        "the buildpack's change to the app is exported"
    );
    assert_eq!(app_layer(6, &[]), plain);
    assert_eq!(app_layer(7, &[]), plain);

    // A launch layer declared without contents and no previous image to take it from.
    let fresh = oci(&env.path("fresh"), "img");
    let lonely = write_buildpack(
        &env.path("lonely"),
        &BuildpackSpec {
            id: "test/lonely",
            build: r#"printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/gone.toml""#,
            ..BuildpackSpec::default()
        },
    );
    let failed = env.build(&app, &[&lonely], &fresh, &[]);
    assert!(!failed.status.success());
    assert_contains!(
        String::from_utf8_lossy(&failed.stderr),
        "layer test/lonely:gone is launch = true but has no contents and the previous image has no such layer to reuse"
    );
}

/// A buildpack with a cache-only layer of `size` pseudo-random bytes (`SEED` from the
/// platform env) and a launch layer; it prints whether the cache came back.
pub(crate) fn cacher(env: &TestEnv, size: &str) -> std::path::PathBuf {
    write_buildpack(
        &env.path("cacher"),
        &BuildpackSpec {
            id: "test/cacher",
            build: &format!(
                r#"
set +o pipefail
L="$CNB_LAYERS_DIR"; SEED=$(cat "$2/env/SEED" 2>/dev/null || echo 0)
if [ -f "$L/deps/data" ]; then echo "CACHE: $(cat "$L/deps/seed")"; else echo "CACHE: none"; fi
if [ ! -f "$L/deps/data" ]; then
  mkdir -p "$L/deps"; echo "$SEED" > "$L/deps/seed"
  openssl enc -aes-128-ctr -pass "pass:$SEED" -nosalt -pbkdf2 < /dev/zero 2>/dev/null | head -c {size} > "$L/deps/data"
fi
printf '[types]\ncache = true\n[metadata]\nseed = "%s"\n' "$(cat "$L/deps/seed")" > "$L/deps.toml"
mkdir -p "$L/run"; openssl enc -aes-128-ctr -pass "pass:run$SEED" -nosalt -pbkdf2 < /dev/zero 2>/dev/null | head -c {size} > "$L/run/data"
printf '[types]\nlaunch = true\n' > "$L/run.toml"
"#
            ),
            ..BuildpackSpec::default()
        },
    )
}

/// `kiln build IMAGE` of `app` with buildpack `bp` (the `cacher`, mostly) and `SEED=seed`, always
/// running the buildpacks; returns the command (not run yet).
fn cacher_build(env: &TestEnv, app: &Path, bp: &Path, image: &str, seed: &str) -> Command {
    let mut command = env.kiln();
    command
        .args(["build", image, "--path", app.to_str().unwrap()])
        .args(["--run-image", &env.run_image(), "-b", bp.to_str().unwrap()])
        .args(["--env", &format!("SEED={seed}"), "--rebuild"]);
    command
}

fn verify_store(env: &TestEnv) {
    let out = env.ok(&["store", "verify"]);
    assert_contains!(out, "store is intact");
}

#[test]
fn concurrent_builds_share_one_store() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    let bp = cacher(&env, "2M");
    // Made once, before the builds start at the same time.
    env.run_image();
    // Three images, and two builds of a fourth at the same time, all at once.
    let jobs: Vec<(String, &str)> = vec![
        ("shared/a".to_string(), "1"),
        ("shared/b".to_string(), "2"),
        ("shared/c".to_string(), "3"),
        ("shared/d".to_string(), "4"),
        ("shared/d".to_string(), "5"),
    ];
    let children: Vec<_> = jobs
        .iter()
        .map(|(image, seed)| {
            cacher_build(&env, &app, &bp, image, seed)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for ((image, _), child) in jobs.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    verify_store(&env);
    let store = env.path("home/store");
    for image in ["shared/a", "shared/b", "shared/c", "shared/d"] {
        let inspection = env.inspect(image);
        assert!(inspection["manifest_digest"].is_string(), "{inspection}");
        validate_layout(&store, &format!("{image}:latest"), &env.path(image));
    }
    // Each image's next build finds its own cache.
    for (image, seed) in [("shared/a", "1"), ("shared/b", "2")] {
        let out = cacher_build(&env, &app, &bp, image, seed).output().unwrap();
        assert!(out.status.success());
        assert_contains!(
            String::from_utf8_lossy(&out.stderr),
            format!("CACHE: {seed}")
        );
    }
}

#[test]
fn a_damaged_cache_is_ignored_with_a_warning() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    let bp = cacher(&env, "64k");
    let out = oci(&env.path("out"), "img");
    let build = |seed: &str| {
        let output = env.build(&app, &[&bp], &out, &["--env", &format!("SEED={seed}")]);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{log}");
        log
    };
    build("1");
    assert_contains!(build("2"), "CACHE: 1");

    // The kept directory changed behind kiln's back: not used; the verified blob is.
    let builds = env.path("home/cache/builds");
    let record = fs::read_dir(&builds)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(record.join("layers/test_cacher/deps/seed"), "tampered\n").unwrap();
    let log = build("3");
    assert_contains!(log, "Restored cache layer 'test/cacher:deps'");
    assert_contains!(log, "CACHE: 1");

    // The blob is corrupt and nothing is kept: a warning, and the build goes on without it.
    fs::remove_dir_all(record.join("layers")).unwrap();
    let cache_file = fs::read_dir(env.path("home/cache/layers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cache: Value = serde_json::from_slice(&fs::read(&cache_file).unwrap()).unwrap();
    let digest = cache["buildpacks"][0]["layers"]["deps"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = env.path("home/store/blobs/sha256").join(digest);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&blob, &bytes).unwrap();
    let log = build("4");
    assert_contains!(
        log,
        "cache layer 'test/cacher:deps' is not restored: corrupt"
    );
    assert_contains!(log, "CACHE: none");

    // Unreadable cache metadata: a warning, and a build without the cache.
    fs::write(&cache_file, "{ not json").unwrap();
    fs::remove_dir_all(record.join("layers")).unwrap();
    let log = build("5");
    assert_contains!(log, "is unreadable");
    assert_contains!(log, "CACHE: none");
    // Nothing uses the damaged blob any more: the store's garbage collection after the build
    // removed it, and every blob left is intact.
    assert!(!blob.exists());
    verify_store(&env);
}

/// A tiny deterministic generator for kill points (the seed is printed on failure).
fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn builds_killed_during_export_leave_the_store_and_previous_image_intact() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    let bp = cacher(&env, "12M");
    let run_image = env.run_image();
    let args = |seed: u32| -> Vec<String> {
        vec![
            "build".into(),
            "killed/app".into(),
            "--path".into(),
            app.display().to_string(),
            "--run-image".into(),
            run_image.clone(),
            "-b".into(),
            bp.display().to_string(),
            "--env".into(),
            format!("SEED={seed}"),
            "--format".into(),
            "json".into(),
        ]
    };
    let first = env.kiln().args(args(1)).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    let export_secs = report["timings"]["exporting"].as_f64().unwrap().max(0.2);

    let mut state = u64::from(std::process::id());
    let seed_note = format!("random state seeded with {state}");
    // Starts a build, waits for its export phase, kills it `delay` into it; returns whether
    // the kill landed there (kiln died of SIGKILL before its log said the export ended).
    let kill_during_export = |seed: u32, delay: Duration| -> bool {
        let mut child = env
            .kiln()
            .args(args(seed))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (started_tx, started) = std::sync::mpsc::channel();
        let (ended_tx, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut export_ended = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("===> EXPORTING") {
                    let _ = started_tx.send(());
                }
                export_ended |= line.contains("EXPORTING took");
            }
            let _ = ended_tx.send(export_ended);
        });
        started
            .recv_timeout(Duration::from_mins(2))
            .unwrap_or_else(|_| panic!("no export phase ({seed_note})"));
        std::thread::sleep(delay);
        let _ = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        let export_ended = ended.recv_timeout(Duration::from_secs(10)).unwrap_or(true);
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) && !export_ended
    };
    for round in 0..4u32 {
        let mut delay = Duration::from_secs_f64(
            export_secs * f64::from(u32::try_from(next_random(&mut state) % 100).unwrap()) / 100.0,
        );
        // A kill that came after the export ended proves nothing: try again sooner.
        let mut attempt = 0;
        while !kill_during_export(10 + round * 10 + attempt, delay) {
            attempt += 1;
            assert!(
                attempt < 6,
                "round {round}: no kill landed during the export ({seed_note})"
            );
            delay /= 2;
        }
        eprintln!(
            "round {round}: killed {:.2}s into the export ({seed_note})",
            delay.as_secs_f64()
        );
        // Every blob intact, and the image still there and whole: the previous one, or the
        // new one if the kill came after it was named (verify checks every blob it uses).
        verify_store(&env);
        let inspection = env.inspect("killed/app");
        if inspection["manifest_digest"] != digest.as_str() {
            eprintln!("round {round}: killed after the new image was named");
        }
    }
    let again = env.kiln().args(args(2)).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    verify_store(&env);
    validate_layout(
        &env.path("home/store"),
        "killed/app:latest",
        &env.path("final"),
    );
}

#[test]
fn cache_prune_removes_garbage_and_least_recently_used_caches_never_images() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    let bp = cacher(&env, "1M");
    let build = |image: &str, seed: &str| -> String {
        let out = cacher_build(&env, &app, &bp, image, seed).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    };
    build("prune/a", "1");
    std::thread::sleep(Duration::from_millis(20));
    build("prune/b", "2");
    let prune = |args: &[&str]| -> Value {
        let mut all = vec!["cache", "prune", "--format", "json"];
        all.extend(args);
        serde_json::from_str(&env.ok(&all)).unwrap()
    };

    // Garbage: an interrupted build's scratch directory and a blob nothing uses.
    fs::create_dir_all(env.path("home/work/build-interrupted/layers")).unwrap();
    let stray = env.path(
        "home/store/blobs/sha256/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    );
    fs::write(&stray, "hello").unwrap();
    // The launch check's file lists: of a layer blob that is gone, and of one in use.
    let lists = env.path("home/cache/layer-files");
    fs::create_dir_all(&lists).unwrap();
    let image = env.inspect("prune/a");
    let layer = image["layers"][0]["digest"].as_str().unwrap().to_string();
    let in_use = lists.join(format!("{}.json", layer.trim_start_matches("sha256:")));
    fs::write(&in_use, "[]").unwrap();
    let orphan = lists.join(format!("{}.json", "0".repeat(64)));
    fs::write(&orphan, "[]").unwrap();
    let dry = prune(&["--dry-run"]);
    assert_eq!(dry["work_dirs"], 1, "{dry}");
    assert_eq!(dry["blobs"], 1, "{dry}");
    assert!(stray.exists(), "a dry run removes nothing");
    let pruned = prune(&[]);
    assert_eq!(
        (pruned["work_dirs"].clone(), pruned["blobs"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(pruned["cache_entries"], 0, "no size given: caches stay");
    assert!(!stray.exists());
    assert!(!orphan.exists());
    assert!(in_use.exists());
    assert!(!env.path("home/work/build-interrupted").exists());
    verify_store(&env);

    // One byte under the current size: only the least recently used cache (prune/a's) goes.
    let before = pruned["bytes_after"].as_u64().unwrap();
    let capped = prune(&["--max-size", &(before - 1).to_string()]);
    assert_eq!(capped["cache_entries"], 1, "{capped}");
    assert!(capped["bytes_after"].as_u64().unwrap() < before);
    assert_contains!(build("prune/a", "1"), "CACHE: none");
    assert_contains!(build("prune/b", "2"), "CACHE: 2");

    // Everything: the images stay whole and usable.
    let all = prune(&["--all"]);
    assert_eq!(all["cache_entries"], 2, "{all}");
    assert_eq!(all["bytes_after"], all["bytes_images"], "{all}");
    verify_store(&env);
    for image in ["prune/a:latest", "prune/b:latest"] {
        validate_layout(&env.path("home/store"), image, &env.path(image));
    }
    assert_contains!(build("prune/b", "2"), "CACHE: none");
}

/// `kiln cache prune` waits for a running build (shared/exclusive `gc.lock`) instead of
/// removing its scratch directory or the blobs it is writing.
#[test]
fn cache_prune_waits_for_a_running_build() {
    let env = TestEnv::new();
    let app = env.app("app", &[("app.txt", "x")]);
    // Builds only once the test has started the prune: it waits for a platform env file.
    let bp = write_buildpack(
        &env.path("waiter"),
        &BuildpackSpec {
            id: "test/waiter",
            build: r#"
for _ in $(seq 600); do [ -f "$2/env/GO" ] && break; sleep 0.1; done
[ -f "$2/env/GO" ]
mkdir -p "$CNB_LAYERS_DIR/c" && head -c 1000000 /dev/urandom > "$CNB_LAYERS_DIR/c/data"
printf '[types]
cache = true
launch = true
' > "$CNB_LAYERS_DIR/c.toml"
"#,
            ..BuildpackSpec::default()
        },
    );
    env.run_image();
    let running = cacher_build(&env, &app, &bp, "waited", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The build's platform env directory appears once it holds the lock and runs.
    let deadline = Instant::now() + Duration::from_mins(2);
    let platform_env = loop {
        let found = fs::read_dir(env.path("home/work")).ok().and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("platform/env"))
                .find(|p| p.is_dir())
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "the build did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut prune = env
        .kiln()
        .args(["cache", "prune", "--all", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once prune says it waits for the running build (it found the lock taken), let the
    // build finish.
    let prune_log = std::io::BufReader::new(prune.stderr.take().unwrap());
    let waiting = std::io::BufRead::lines(prune_log)
        .map_while(Result::ok)
        .any(|line| line.contains("Waiting for running kiln builds to finish"));
    assert!(waiting, "prune did not wait for the running build");
    fs::write(platform_env.join("GO"), "1").unwrap();
    let built = running.wait_with_output().unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let pruned = prune.wait_with_output().unwrap();
    assert!(pruned.status.success());
    let report: Value = serde_json::from_slice(&pruned.stdout).unwrap();
    // It ran after the build: no scratch directory left to remove, the image whole.
    assert_eq!(report["work_dirs"], 0, "{report}");
    assert_eq!(report["bytes_after"], report["bytes_images"], "{report}");
    verify_store(&env);
    validate_layout(
        &env.path("home/store"),
        "waited:latest",
        &env.path("validate"),
    );
}

#[test]
fn rebase_swaps_the_run_image_reproducibly_and_refuses_incompatible_ones() {
    use crate::util::{Podman, example_app, example_buildpack};
    let env = TestEnv::new();
    let app_ref = oci(&env.path("app"), "app");
    env.build_ok(&example_app(), &[&example_buildpack()], &app_ref, &[]);
    let original = env.inspect(&app_ref);

    // A patched run image: the busybox run image plus one layer (built by kiln on it, so it
    // keeps its distribution labels).
    let patch_app = env.app("patch-app", &[("x", "x")]);
    let patcher = write_buildpack(
        &env.path("patcher"),
        &BuildpackSpec {
            id: "test/patch",
            build: r#"mkdir -p "$CNB_LAYERS_DIR/os"; echo patched > "$CNB_LAYERS_DIR/os/PATCHED"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/os.toml""#,
            ..BuildpackSpec::default()
        },
    );
    let run2 = oci(&env.path("run2"), "run:2");
    env.build_ok(&patch_app, &[&patcher], &run2, &[]);
    let run2_top = env.inspect(&run2)["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["diff_id"]
        .clone();

    let rebase = |image: &str, run_image: &str, output: &str, extra: &[&str]| -> Value {
        let mut args = vec![
            "rebase",
            image,
            "--run-image",
            run_image,
            "--output",
            output,
            "--format",
            "json",
        ];
        args.extend(extra);
        serde_json::from_str(&env.ok(&args)).unwrap()
    };
    let rebased_ref = oci(&env.path("rebased"), "app");
    let report = rebase(&app_ref, &run2, &rebased_ref, &[]);
    let app_layers = report["app_layers"].as_u64().unwrap();
    assert!(app_layers >= 2, "{report}");
    let rebased = env.inspect(&rebased_ref);
    let meta: Value = serde_json::from_str(
        rebased["labels"]["io.buildpacks.lifecycle.metadata"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["runImage"]["topLayer"], run2_top);
    let layers = rebased["layers"].as_array().unwrap();
    let original_layers = original["layers"].as_array().unwrap();
    // The app's layers are the same blobs, on top of the new run image's.
    assert_eq!(
        layers[layers.len() - usize::try_from(app_layers).unwrap()..],
        original_layers[original_layers.len() - usize::try_from(app_layers).unwrap()..]
    );
    assert_eq!(rebased["processes"], original["processes"]);
    validate_layout(&env.path("rebased"), "app", &env.path("rebased-check"));

    // Reproducible: the same rebase gives the same image, and rebasing back onto the
    // original run image gives the original image.
    let again = rebase(&app_ref, &run2, &oci(&env.path("again"), "app"), &[]);
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);
    let back = rebase(
        &rebased_ref,
        &env.run_image(),
        &oci(&env.path("back"), "app"),
        &[],
    );
    assert_eq!(back["manifest_digest"], original["manifest_digest"]);

    if let Some(podman) = Podman::new() {
        let out = podman.run(&rebased_ref, &[], &[]);
        assert_contains!(String::from_utf8_lossy(&out.stdout), "Hello from kiln!");
        let out = podman.run(
            &rebased_ref,
            &["--entrypoint", "cat"],
            &["/layers/test_patch/os/PATCHED"],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "patched");
    }

    // A run image for another architecture: refused (exit 31) unless --force.
    let arch = if cfg!(target_arch = "aarch64") {
        "amd64"
    } else {
        "arm64"
    };
    let foreign = oci(&env.path("foreign"), "run:arm");
    env.build_ok(
        &patch_app,
        &[&patcher],
        &foreign,
        &[
            "--run-image",
            "scratch",
            "--platform",
            &format!("linux/{arch}"),
        ],
    );
    let out = env.run(&[
        "rebase",
        &app_ref,
        "--run-image",
        &foreign,
        "--output",
        &oci(&env.path("x"), "app"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(31),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains!(
        String::from_utf8_lossy(&out.stderr),
        "pass --force to rebase anyway"
    );
    rebase(
        &app_ref,
        &foreign,
        &oci(&env.path("x"), "app"),
        &["--force"],
    );

    // Not a buildpacks image.
    let out = env.run(&[
        "rebase",
        &env.run_image(),
        "--run-image",
        &run2,
        "--output",
        &oci(&env.path("y"), "img"),
    ]);
    assert_eq!(out.status.code(), Some(31));
    assert_contains!(
        String::from_utf8_lossy(&out.stderr),
        "it was not built with buildpacks"
    );
}
