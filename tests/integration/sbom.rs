//! SBOMs: every image kiln builds carries CycloneDX and SPDX documents as OCI 1.1
//! referrers, which the reference validators accept and `kiln sbom` prints from the store,
//! layouts and archives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::examples::clean_copy;
use crate::util::{TestEnv, require};

fn assert_ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The validators (`cyclonedx-python-lib` with its JSON validator, `spdx-tools`), installed
/// from the package index into the test's scratch space; `None` without pip.
fn validators(env: &TestEnv) -> Option<PathBuf> {
    let dir = env.path("sbom-validators");
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(&dir)
        .args([
            "cyclonedx-python-lib[json-validation]==11.12.0",
            "spdx-tools==0.8.5",
        ])
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "skipping the SBOM validators: pip failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(dir)
}

/// `JsonStrictValidator` for CycloneDX 1.6 and 1.5 on `file`.
fn validate_cyclonedx(validators: &Path, file: &Path) {
    let script = "import sys\nfrom cyclonedx.schema import SchemaVersion\nfrom cyclonedx.validation.json import JsonStrictValidator\nfor v in (SchemaVersion.V1_6, SchemaVersion.V1_5):\n    e = JsonStrictValidator(v).validate_str(open(sys.argv[1]).read())\n    if e is not None:\n        sys.exit(f'{v}: {e}')\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .env("PYTHONPATH", validators)
        .output()
        .unwrap();
    assert_ok(&out, "CycloneDX JsonStrictValidator");
}

/// `pyspdxtools -i FILE`.
fn validate_spdx(validators: &Path, file: &Path) {
    let out = Command::new(validators.join("bin/pyspdxtools"))
        .arg("-i")
        .arg(file)
        .env("PYTHONPATH", validators)
        .output()
        .unwrap();
    assert_ok(&out, "pyspdxtools -i");
}

fn purls(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = doc["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["purl"].as_str().map(str::to_string))
        .collect();
    for p in doc["packages"].as_array().into_iter().flatten() {
        for r in p["externalRefs"].as_array().into_iter().flatten() {
            out.extend(r["referenceLocator"].as_str().map(str::to_string));
        }
    }
    out
}

fn has(purls: &[String], prefix: &str) -> bool {
    purls.iter().any(|p| p.starts_with(prefix))
}

#[test]
fn the_flask_example_s_sboms_validate_list_its_packages_and_are_referrers_of_the_image() {
    let env = TestEnv::new();
    let app = clean_copy(&env, "python-flask");
    let layout = env.path("out");
    let reference = format!("oci:{}:flask", layout.display());
    let build = |output: &str| -> Value {
        let out = env
            .kiln()
            .args(["build", "flask", "--path"])
            .arg(&app)
            .args(["--output", output, "--format", "json", "--rebuild"])
            .args(["--build-env", "host"])
            .output()
            .unwrap();
        serde_json::from_str(&assert_ok(&out, "kiln build")).unwrap()
    };
    let report = build(&reference);
    let digest = report["manifest_digest"].as_str().unwrap().to_string();

    // The layout lists both SBOMs untagged, after the image, as artifacts whose subject is
    // the image's manifest.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries[0]["digest"], digest.as_str());
    let mut types = Vec::new();
    for entry in &entries[1..] {
        assert!(entry["annotations"]["org.opencontainers.image.ref.name"].is_null());
        let hex = entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let manifest: Value =
            serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        assert_eq!(manifest["subject"]["digest"], digest.as_str());
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(manifest["artifactType"], entry["artifactType"]);
        types.push(entry["artifactType"].as_str().unwrap().to_string());
    }
    types.sort();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ]
    );
    // skopeo still reads the image by name from a layout with referrers.
    if require("skopeo") {
        crate::util::sh("skopeo", &["inspect", "--raw", &reference]);
    }

    let cdx_text = env.ok(&["sbom", &reference]);
    let spdx_text = env.ok(&["sbom", &reference, "--format", "spdx"]);
    let cdx: Value = serde_json::from_str(&cdx_text).unwrap();
    let spdx: Value = serde_json::from_str(&spdx_text).unwrap();
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["metadata"]["component"]["version"], digest.as_str());
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    for doc in [&cdx, &spdx] {
        let purls = purls(doc);
        assert!(has(&purls, "pkg:pypi/flask@"), "{purls:?}");
        assert!(has(&purls, "pkg:pypi/gunicorn@"), "{purls:?}");
        assert!(has(&purls, "pkg:deb/debian/python3.13@"), "{purls:?}");
        assert!(has(&purls, "pkg:deb/debian/libc6@"), "{purls:?}");
        assert!(
            purls.iter().any(|p| p.contains("distro=debian-13")),
            "{purls:?}"
        );
    }
    // Each component names its layer: Flask is in the packages layer.
    let flask = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Flask")
        .unwrap();
    let packages_layer = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "kiln/python:packages")
        .unwrap();
    assert!(
        flask["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "kiln:layer:diffID" && p["value"] == packages_layer["diff_id"]),
        "{flask}"
    );

    // The same image from the store and from an archive: the same documents, byte for byte.
    let store_report = build("flask");
    assert_eq!(store_report["manifest_digest"], digest.as_str());
    assert_eq!(env.ok(&["sbom", "flask"]), cdx_text);
    let archive = env.path("flask.tar");
    build(&format!("oci-archive:{}:flask", archive.display()));
    assert_eq!(
        env.ok(&[
            "sbom",
            &format!("oci-archive:{}", archive.display()),
            "--format",
            "spdx"
        ]),
        spdx_text
    );

    // The provenance: an in-toto statement about this image, naming the run image by
    // digest; the same bytes from every destination and build.
    let provenance_text = env.ok(&["provenance", &reference]);
    let provenance: Value = serde_json::from_str(&provenance_text).unwrap();
    assert_eq!(provenance["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        provenance["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(provenance["subject"][0]["name"], "flask");
    assert_eq!(
        format!(
            "sha256:{}",
            provenance["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        digest
    );
    let definition = &provenance["predicate"]["buildDefinition"];
    assert_eq!(
        definition["buildType"],
        "https://github.com/kiln-build/kiln/buildtypes/cnb/v1"
    );
    assert_eq!(
        definition["externalParameters"]["source"]["name"],
        "python-flask"
    );
    assert_eq!(definition["externalParameters"]["buildEnvironment"], "host");
    let inspected = env.inspect("flask");
    let run_image_digest = inspected["run_image"]["reference"].as_str().unwrap();
    let run_dep = definition["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "run-image")
        .unwrap_or_else(|| panic!("no run image in {provenance:#}"));
    assert_eq!(
        format!("sha256:{}", run_dep["digest"]["sha256"].as_str().unwrap()),
        run_image_digest,
        "{provenance:#}"
    );
    assert!(
        definition["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"].as_str().unwrap().starts_with("kiln/python@")),
        "{provenance:#}"
    );
    assert!(provenance["predicate"]["runDetails"]["builder"]["id"].is_string());
    assert!(!provenance_text.contains("invocationId"));
    assert_eq!(env.ok(&["provenance", "flask"]), provenance_text);
    assert_eq!(
        env.ok(&["provenance", &format!("oci-archive:{}", archive.display())]),
        provenance_text
    );
    // A build in another home, from another copy of the source: the same statement.
    let other = TestEnv::new();
    let other_app = clean_copy(&other, "python-flask");
    let out = other
        .kiln()
        .args(["build", "flask", "--path"])
        .arg(&other_app)
        .args(["--build-env", "host"])
        .output()
        .unwrap();
    assert_ok(&out, "kiln build in another home");
    assert_eq!(other.ok(&["provenance", "flask"]), provenance_text);

    // A docker archive has no place for them: the error says what to do.
    let docker = env.path("flask.docker.tar");
    build(&format!("docker-archive:{}:flask", docker.display()));
    let err = env.fails(
        &["sbom", &format!("docker-archive:{}", docker.display())],
        1,
    );
    assert!(err.contains("has no SBOM attached"), "{err}");

    let Some(validators) = validators(&env) else {
        return;
    };
    let cdx_file = env.path("sbom.cdx.json");
    let spdx_file = env.path("sbom.spdx.json");
    fs::write(&cdx_file, &cdx_text).unwrap();
    fs::write(&spdx_file, &spdx_text).unwrap();
    validate_cyclonedx(&validators, &cdx_file);
    validate_spdx(&validators, &spdx_file);
}
