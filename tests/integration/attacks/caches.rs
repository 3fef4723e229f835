//! Hostile cache images and previous images (S1, S2, S3 of issue 12): names and archives
//! written by whoever can push a cache tag or an app tag.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Canary, assert_clean_output};
use crate::util::{BuildpackSpec, TestEnv, oci, write_buildpack};

const CACHE_LABEL: &str = "io.buildpacks.lifecycle.cache.metadata";
const LIFECYCLE_LABEL: &str = "io.buildpacks.lifecycle.metadata";

use crate::util::sha256;

/// Writes `bytes` as a blob of the layout `dir`; returns its descriptor fields.
fn put_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = sha256(bytes);
    let hex = digest.trim_start_matches("sha256:");
    fs::write(dir.join("blobs/sha256").join(hex), bytes).unwrap();
    (digest, bytes.len())
}

fn read_json(dir: &Path, digest: &str) -> Value {
    let hex = digest.trim_start_matches("sha256:");
    serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// Rewrites the image tagged `name` in the layout `dir`: `edit` gets its config and its
/// manifest (to change labels, layers and `diff_ids`); the new manifest replaces the old one
/// under the same name.
fn rewrite_image(dir: &Path, name: &str, edit: impl FnOnce(&mut Value, &mut Value)) {
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no image {name} in {}", dir.display()));
    let mut manifest = read_json(dir, entry["digest"].as_str().unwrap());
    let mut config = read_json(dir, manifest["config"]["digest"].as_str().unwrap());
    edit(&mut config, &mut manifest);
    let (digest, size) = put_blob(dir, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(digest);
    manifest["config"]["size"] = json!(size);
    let (digest, size) = put_blob(dir, &serde_json::to_vec(&manifest).unwrap());
    entry["digest"] = json!(digest);
    entry["size"] = json!(size);
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn label(config: &Value, name: &str) -> Value {
    serde_json::from_str(config["config"]["Labels"][name].as_str().unwrap()).unwrap()
}

fn set_label(config: &mut Value, name: &str, value: &Value) {
    config["config"]["Labels"][name] = json!(value.to_string());
}

/// A path that, joined under any directory of kiln's, climbs to `/` and then to `target`.
fn climbing_to(target: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(40),
        target.display().to_string().trim_start_matches('/')
    )
}

fn cacher(env: &TestEnv) -> PathBuf {
    write_buildpack(
        &env.path("cacher"),
        &BuildpackSpec {
            id: "test/cacher",
            build: r#"
mkdir -p "$CNB_LAYERS_DIR/deps" "$CNB_LAYERS_DIR/web"
echo dep > "$CNB_LAYERS_DIR/deps/f"; echo web > "$CNB_LAYERS_DIR/web/f"
printf '[types]\ncache = true\n' > "$CNB_LAYERS_DIR/deps.toml"
printf '[types]\nlaunch = true\n' > "$CNB_LAYERS_DIR/web.toml"
ls "$CNB_LAYERS_DIR"
"#,
            ..BuildpackSpec::default()
        },
    )
}

/// Builds once with a cache image, lets `poison` rewrite it, then builds on a fresh home
/// (the CI case) with it; returns the second build's log.
fn build_with_poisoned_cache(
    env: &TestEnv,
    poison: impl FnOnce(&Path, &mut Value, &mut Value),
) -> String {
    let app = env.app("app", &[("f", "x")]);
    let bp = cacher(env);
    let cache_dir = env.path("cache-image");
    let cache = oci(&cache_dir, "cache");
    let out = env.build(&app, &[&bp], "first", &["--cache-image", &cache]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rewrite_image(&cache_dir, "cache", |config, manifest| {
        poison(&cache_dir, config, manifest);
    });
    let out = env
        .kiln()
        .env("KILN_HOME", env.path("fresh-home"))
        .args(["build", "second", "--cache-image", &cache, "--path"])
        .arg(&app)
        .arg("-b")
        .arg(&bp)
        .args(["--run-image", &env.run_image()])
        .output()
        .unwrap();
    assert_clean_output(&out, &[]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "a poisoned cache must only be skipped:\n{log}"
    );
    log
}

#[test]
fn cache_image_layer_names_cannot_reach_outside() {
    let env = TestEnv::new();
    let canary = Canary::plant(&env.path("outside"));
    let target = climbing_to(&canary.path().join("some/dir"));
    let log = build_with_poisoned_cache(&env, |_, config, _| {
        let mut metadata = label(config, CACHE_LABEL);
        let layers = &mut metadata["buildpacks"][0]["layers"];
        let mut evil = layers["deps"].clone();
        // A missing blob: the restore's cleanup removes `<layers>/<name>` and `<name>.toml`.
        evil["digest"] = json!(format!("sha256:{}", "0".repeat(64)));
        layers[target.as_str()] = evil;
        set_label(config, CACHE_LABEL, &metadata);
    });
    canary.assert_intact();
    assert!(log.contains("is not allowed"), "{log}");
}

#[test]
fn cache_image_archives_cannot_write_through_their_links() {
    let env = TestEnv::new();
    let canary = Canary::plant(&env.path("outside"));
    let outside = canary.path().to_path_buf();
    let log = build_with_poisoned_cache(&env, |dir, config, manifest| {
        let mut tar = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_mode(0o777);
        link.set_size(0);
        tar.append_link(&mut link, "layers/test_cacher/deps/link", &outside)
            .unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o644);
        file.set_size(4);
        tar.append_data(
            &mut file,
            "layers/test_cacher/deps/link/planted",
            &b"evil"[..],
        )
        .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let blob = gz.finish().unwrap();
        let (digest, size) = put_blob(dir, &blob);
        let diff_id = sha256(&raw);
        manifest["layers"] = json!([{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest, "size": size,
        }]);
        config["rootfs"]["diff_ids"] = json!([diff_id]);
        let mut metadata = label(config, CACHE_LABEL);
        let deps = &mut metadata["buildpacks"][0]["layers"]["deps"];
        deps["digest"] = json!(digest);
        deps["sha"] = json!(diff_id);
        set_label(config, CACHE_LABEL, &metadata);
    });
    canary.assert_intact();
    assert!(!outside.join("planted").exists());
    assert!(log.contains("test/cacher:deps' is not restored"), "{log}");
}

#[test]
fn previous_image_layer_names_cannot_reach_outside() {
    let env = TestEnv::new();
    let canary = Canary::plant(&env.path("outside"));
    let app = env.app("app", &[("f", "x")]);
    let bp = cacher(&env);
    let out = env.build(&app, &[&bp], "prev", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The store's image of that name, as if pulled from a tag someone else pushed.
    let target = climbing_to(&canary.path().join("planted"));
    rewrite_image(&env.home().join("store"), "prev:latest", |config, _| {
        let mut metadata = label(config, LIFECYCLE_LABEL);
        // A well-formed digest, so that the label parses and the names are what is refused.
        let zeros = format!("sha256:{}", "0".repeat(64));
        metadata["buildpacks"][0]["layers"][target.as_str()] =
            json!({"sha": zeros, "data": {"x": 1}, "launch": true});
        metadata["buildpacks"][0]["layers"]["."] = json!({"sha": zeros, "launch": true});
        set_label(config, LIFECYCLE_LABEL, &metadata);
    });
    let out = env.build(&app, &[&bp], "prev", &["--rebuild"]);
    assert_clean_output(&out, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    canary.assert_intact();
    assert!(!canary.path().join("planted.toml").exists());
    assert!(log.contains("is not allowed"), "{log}");

    // A label that does not parse (a digest that is none) is no previous image, said so.
    rewrite_image(&env.home().join("store"), "prev:latest", |config, _| {
        let mut metadata = label(config, LIFECYCLE_LABEL);
        metadata["buildpacks"][0]["layers"][target.as_str()] =
            json!({"sha": "sha256:not-a-digest", "launch": true});
        set_label(config, LIFECYCLE_LABEL, &metadata);
    });
    let out = env.build(&app, &[&bp], "prev", &["--rebuild"]);
    assert_clean_output(&out, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("unreadable lifecycle metadata"), "{log}");
    canary.assert_intact();
}
