//! OCI documents: the `oci_spec` types kiln deserializes (index, manifest, configuration,
//! descriptor) and kiln's own readers of them (`kiln::image::load` of an `oci:` layout,
//! `OciLayout::read_index` and `verify`) never panic on arbitrary bytes or hostile JSON
//! (huge, negative and fractional sizes, bad digests, unknown media types, loops of
//! indexes, deep nesting).

use std::fmt::Write as _;
use std::fs;

use kiln::image::layout::OciLayout;
use kiln::oci::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use kiln::{ImageReference, Store, TargetPlatform};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{config, corpus};

const PLACEHOLDERS: [&str; 3] = ["@blob0", "@blob1", "@blob2"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
        proptest::sample::select(PLACEHOLDERS.to_vec()).prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "schemaVersion", "mediaType", "config", "layers", "manifests", "digest", "size",
            "platform", "architecture", "os", "variant", "annotations", "rootfs", "diff_ids",
            "type", "urls", "history", "created", "Env", "Cmd", "Labels",
            "org.opencontainers.image.ref.name", "os.features", "artifactType", "subject",
        ])
        .prop_map(str::to_string),
        1 => ".{0,4}",
    ]
}

/// Any JSON, with keys of OCI documents more often than not.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn size() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(-1)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(0.5)),
        Just(json!("12")),
        (0u64..4096).prop_map(Value::from),
        value(),
    ]
}

fn digest() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => proptest::sample::select(PLACEHOLDERS.to_vec()).prop_map(Value::from),
        1 => Just(json!("sha256:../../../../etc/passwd")),
        1 => Just(json!(format!("sha512:{}", "a".repeat(128)))),
        1 => Just(json!(format!("sha256:{}", "A".repeat(64)))),
        1 => Just(json!(format!("sha256:{}", "0".repeat(64)))),
        1 => Just(json!("sha256:")),
        1 => value(),
    ]
}

fn media_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "text/plain",
            "",
        ])
        .prop_map(Value::from),
        1 => value(),
    ]
}

fn descriptor() -> impl Strategy<Value = Value> {
    (
        media_type(),
        digest(),
        size(),
        prop_oneof![
            Just(Value::Null),
            Just(json!({"architecture": "amd64", "os": "linux"})),
            Just(json!({"architecture": "arm64", "os": "linux", "variant": "v8"})),
            value(),
        ],
        prop_oneof![
            Just(Value::Null),
            ".{0,6}".prop_map(|n| json!({"org.opencontainers.image.ref.name": n})),
            value(),
        ],
    )
        .prop_map(|(m, d, s, p, a)| {
            let mut o = json!({"mediaType": m, "digest": d, "size": s});
            if !p.is_null() {
                o["platform"] = p;
            }
            if !a.is_null() {
                o["annotations"] = a;
            }
            o
        })
}

/// An image index, a manifest or a configuration, near valid or not at all.
fn document() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => (media_type(), proptest::collection::vec(descriptor(), 0..3), prop_oneof![Just(json!(2)), value()])
            .prop_map(|(m, d, v)| json!({"schemaVersion": v, "mediaType": m, "manifests": d})),
        2 => (media_type(), descriptor(), proptest::collection::vec(descriptor(), 0..3))
            .prop_map(|(m, c, l)| json!({"schemaVersion": 2, "mediaType": m, "config": c, "layers": l})),
        2 => (prop_oneof![Just(json!("amd64")), value()], proptest::collection::vec(prop_oneof![digest(), value()], 0..3))
            .prop_map(|(a, ids)| json!({"architecture": a, "os": "linux", "rootfs": {"type": "layers", "diff_ids": ids}, "config": {}})),
        1 => value(),
    ]
}

/// Replaces the placeholder strings with the digests of the blobs written so far.
fn resolve(value: &mut Value, digests: &[String]) {
    match value {
        Value::String(s) => {
            if let Some(i) = PLACEHOLDERS.iter().position(|p| p == s) {
                *s = digests
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("sha256:{}", "f".repeat(64)));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve(v, digests)),
        Value::Object(map) => map.values_mut().for_each(|v| resolve(v, digests)),
        _ => {}
    }
}

fn parse_all(bytes: &[u8]) {
    let _ = ImageIndex::from_reader(bytes);
    let _ = serde_json::from_slice::<ImageIndex>(bytes);
    let _ = serde_json::from_slice::<ImageManifest>(bytes);
    let _ = serde_json::from_slice::<ImageConfiguration>(bytes);
    let _ = serde_json::from_slice::<Descriptor>(bytes);
}

/// A layout whose blobs are `blobs` (each may name the earlier ones' digests through the
/// placeholders) and whose `index.json` is `index` (which may name any of them), read
/// the ways kiln reads layouts.
fn load_layout(blobs: &[Vec<u8>], index: &[u8]) {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(work.path().join("home")).unwrap();
    let path = work.path().join("layout");
    let layout = OciLayout::ensure(&path).unwrap();
    for blob in blobs {
        layout.write_blob(blob).unwrap();
    }
    fs::write(path.join("index.json"), index).unwrap();
    let _ = layout.read_index();
    let _ = layout.verify();
    for name in [None, Some("latest".to_string()), Some(String::new())] {
        let reference = ImageReference::Layout {
            path: path.clone(),
            name,
        };
        for platform in [
            TargetPlatform::host(),
            "linux/arm64/v8".parse().unwrap(),
            "linux/s390x".parse().unwrap(),
        ] {
            if let Ok(image) = kiln::transport::load(&reference, &store, &platform) {
                let _ = image.diff_ids();
                let _ = image.platform();
            }
        }
    }
}

fn materialize(docs: &[Value], index: &Value) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut digests = Vec::new();
    let mut blobs = Vec::new();
    for doc in docs {
        let mut doc = doc.clone();
        resolve(&mut doc, &digests);
        let bytes = serde_json::to_vec(&doc).unwrap();
        digests.push(format!("sha256:{}", sha256_hex(&bytes)));
        blobs.push(bytes);
    }
    let mut index = index.clone();
    resolve(&mut index, &digests);
    (blobs, serde_json::to_vec(&index).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn oci_documents_from_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        parse_all(&bytes);
    }

    #[test]
    fn oci_documents_from_hostile_json_never_panic(doc in document()) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        parse_all(&bytes);
        // Parsed documents survive kiln's own writing and reading.
        if let Ok(index) = ImageIndex::from_reader(&bytes[..]) {
            let written = serde_json::to_vec(&index).unwrap();
            prop_assert_eq!(ImageIndex::from_reader(&written[..]).ok(), Some(index));
        }
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn load_layout_with_hostile_documents_never_panics(
        docs in proptest::collection::vec(document(), 1..4),
        index in document(),
    ) {
        let (blobs, index) = materialize(&docs, &index);
        load_layout(&blobs, &index);
    }
}

/// The committed documents (`tests/corpus/oci/`): each parsed, then used as `index.json` and
/// as every blob of a layout.
#[test]
fn corpus_documents_never_panic() {
    for (_, bytes) in corpus("oci") {
        parse_all(&bytes);
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": bytes.len(),
        }]});
        load_layout(
            std::slice::from_ref(&bytes),
            &serde_json::to_vec(&index).unwrap(),
        );
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": bytes.len(),
        }]});
        load_layout(
            std::slice::from_ref(&bytes),
            &serde_json::to_vec(&index).unwrap(),
        );
        load_layout(&[], &bytes);
    }
}
