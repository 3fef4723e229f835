//! The local store: `kiln store verify` finds damaged blobs, `--repair` removes them, and the
//! next build of the image writes them again (the export memo does not reuse a damaged blob).

use std::fs;

use crate::util::{TestEnv, example_app, example_buildpack};

#[test]
fn a_damaged_blob_is_found_repaired_and_rebuilt() {
    let env = TestEnv::new();
    env.build_ok(&example_app(), &[&example_buildpack()], "hello:1", &[]);
    let verified: serde_json::Value =
        serde_json::from_str(&env.ok(&["store", "verify", "--format", "json"])).unwrap();
    assert_eq!(verified["ok"], true, "{verified:#}");
    assert!(verified["blobs"].as_u64().unwrap() >= 5);

    // Damage the app layer's blob (same size, other bytes).
    let inspected = env.inspect("hello:1");
    let layers = inspected["layers"].as_array().unwrap();
    let app = layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = env
        .home()
        .join("store/blobs/sha256")
        .join(app.strip_prefix("sha256:").unwrap());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let mut perms = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, &bytes).unwrap();

    let out = env.run(&["store", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("blob {app}")), "{stdout}");
    assert!(stdout.contains("--repair"), "{stdout}");

    let repaired = env.ok(&["store", "verify", "--repair"]);
    assert!(repaired.contains("removed the damaged blobs"), "{repaired}");
    assert!(!path.exists());
    // The image now lacks a blob; the same build writes it again, byte for byte.
    let out = env.run(&["store", "verify"]);
    assert_eq!(out.status.code(), Some(1), "the missing blob is reported");
    env.build_ok(&example_app(), &[&example_buildpack()], "hello:1", &[]);
    assert_eq!(fs::read(&path).unwrap().len(), bytes.len());
    env.ok(&["store", "verify"]);
}
