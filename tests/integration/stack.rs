//! Stacks against a Debian archive the tests make themselves: packages built here, an
//! `InRelease` signed with a test key, served on 127.0.0.1 — and tampered with to play a
//! hostile mirror. The real Debian mirror is exercised in `stack_debian.rs`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedSecretKey};
use pgp::types::Password;
use serde_json::Value;

use crate::assert_contains;
use crate::util::{FileServer, TestEnv, layer_entries, validate_schema};

/// A package of the fake archive.
struct Package {
    name: &'static str,
    version: &'static str,
    control: &'static str,
    /// (path, mode, content); a path ending in `/` is a directory.
    files: Vec<(&'static str, u32, &'static [u8])>,
}

fn packages() -> Vec<Package> {
    vec![
        Package {
            name: "base-files",
            version: "1",
            control: "",
            files: vec![
                ("./etc/", 0o755, b""),
                ("./etc/os-release", 0o644, b"ID=testos\nVERSION_ID=1\n"),
                ("./tmp/", 0o1777, b""),
                ("./bin/", 0o755, b""),
            ],
        },
        Package {
            name: "libfoo",
            version: "1.0",
            control: "",
            files: vec![("./usr/lib/libfoo.so.1", 0o644, b"old")],
        },
        Package {
            name: "libfoo",
            version: "2.0",
            control: "",
            files: vec![("./usr/lib/libfoo.so.2", 0o644, b"new")],
        },
        Package {
            name: "tool",
            version: "3.1",
            control: "Depends: libfoo (>= 2), mail-transport-agent | sendmail, dpkg\n",
            files: vec![("./bin/tool", 0o755, b"#!/bin/sh\necho tool\n")],
        },
        Package {
            name: "zmta",
            version: "1",
            control: "Provides: mail-transport-agent\n",
            files: vec![("./usr/sbin/zmta", 0o755, b"mta")],
        },
    ]
}

fn deb(p: &Package) -> Vec<u8> {
    let control = format!(
        "Package: {}\nVersion: {}\nArchitecture: amd64\nMaintainer: test\nDescription: test package\n{}",
        p.name, p.version, p.control
    );
    let gz = |tar: Vec<u8>| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let mut control_tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(control.len() as u64);
    h.set_mode(0o644);
    control_tar
        .append_data(&mut h, "./control", control.as_bytes())
        .unwrap();
    let mut data = tar::Builder::new(Vec::new());
    for (path, mode, content) in &p.files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_size(content.len() as u64);
        }
        data.append_data(&mut h, path, *content).unwrap();
    }
    let mut ar = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.gz", gz(control_tar.into_inner().unwrap())),
        ("data.tar.gz", gz(data.into_inner().unwrap())),
    ] {
        ar.append(
            &ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64),
            &bytes[..],
        )
        .unwrap();
    }
    ar.into_inner().unwrap()
}

fn key(seed: u64) -> SignedSecretKey {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_sign(true)
        .primary_user_id("test archive <archive@example.invalid>".into())
        .build()
        .unwrap()
        .generate(&mut rng)
        .unwrap()
}

use crate::util::sha256_hex as sha256;

/// A served fake archive and a stack directory using it.
struct Fixture {
    env: TestEnv,
    server: FileServer,
}

impl Fixture {
    fn new() -> Self {
        let env = TestEnv::new();
        let archive = env.path("mirror/debian");
        let signer = key(1);
        publish(&archive, &signer);
        let stack = env.path("stack");
        fs::create_dir_all(stack.join("keys")).unwrap();
        fs::write(
            stack.join("keys/archive.asc"),
            signer
                .to_public_key()
                .to_armored_string(pgp::composed::ArmorOptions::default())
                .unwrap(),
        )
        .unwrap();
        fs::write(
            stack.join("stack.toml"),
            "[stack]\nname = \"teststack\"\ndistro = { name = \"testos\", version = \"1\" }\narchitectures = [\"amd64\"]\nkeyring = [\"keys/archive.asc\"]\nexclude = [\"dpkg\"]\n\n[[archive]]\nname = \"main\"\nmirror = \"debian\"\nsuites = [\"test\"]\ncomponents = [\"main\"]\n\n[user]\nname = \"app\"\nuid = 1001\ngid = 1001\nhome = \"/home/app\"\n\n[flavours.base]\npackages = [\"base-files\"]\n\n[flavours.tool]\nextends = \"base\"\npackages = [\"tool\"]\n",
        )
        .unwrap();
        let server = FileServer::start(env.path("mirror"));
        Self { env, server }
    }

    fn mirror(&self) -> String {
        format!("{}/debian", self.server.url())
    }

    fn stack(&self) -> PathBuf {
        self.env.path("stack")
    }

    fn kiln(&self, args: &[&str]) -> std::process::Output {
        self.env
            .kiln()
            .args(args)
            .env("KILN_DEBIAN_MIRROR", self.mirror())
            .env("KILN_DEBIAN_SECURITY_MIRROR", self.mirror())
            .output()
            .unwrap()
    }

    fn lock(&self) -> std::process::Output {
        self.kiln(&["stack", "lock", self.stack().to_str().unwrap()])
    }

    fn build(&self) -> std::process::Output {
        self.kiln(&[
            "stack",
            "build",
            self.stack().to_str().unwrap(),
            "--flavour",
            "tool",
            "--arch",
            "amd64",
            "--format",
            "json",
        ])
    }
}

/// Writes the pool, a `Packages.gz`, and an `InRelease` signed by `signer`.
fn publish(archive: &Path, signer: &SignedSecretKey) {
    let mut index = String::new();
    for p in packages() {
        let bytes = deb(&p);
        let filename = format!("pool/main/{}_{}_amd64.deb", p.name, p.version);
        fs::create_dir_all(archive.join("pool/main")).unwrap();
        fs::write(archive.join(&filename), &bytes).unwrap();
        writeln!(
            index,
            "Package: {}\nVersion: {}\nArchitecture: amd64\n{}Filename: {filename}\nSize: {}\nSHA256: {}\n",
            p.name,
            p.version,
            p.control,
            bytes.len(),
            sha256(&bytes)
        )
        .unwrap();
    }
    let packages_gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(index.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let dists = archive.join("dists/test");
    fs::create_dir_all(dists.join("main/binary-amd64")).unwrap();
    fs::write(dists.join("main/binary-amd64/Packages.gz"), &packages_gz).unwrap();
    sign_release(&dists, &packages_gz, signer);
}

fn sign_release(dists: &Path, packages_gz: &[u8], signer: &SignedSecretKey) {
    let release = format!(
        "Origin: Test\nSuite: test\nCodename: test\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
        sha256(packages_gz),
        packages_gz.len()
    );
    let message =
        CleartextSignedMessage::sign(rng(), &release, &signer.primary_key, &Password::empty())
            .unwrap();
    fs::write(
        dists.join("InRelease"),
        message
            .to_armored_string(pgp::composed::ArmorOptions::default())
            .unwrap(),
    )
    .unwrap();
}

fn rng() -> impl rand::Rng + rand::CryptoRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(99)
}

fn assert_exit(out: &std::process::Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{stderr}");
    for n in needles {
        assert_contains!(stderr, n);
    }
}

#[test]
fn lock_and_build_a_stack_from_a_signed_archive() {
    let f = Fixture::new();
    let out = f.lock();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock: toml::Table =
        toml::from_str(&fs::read_to_string(f.stack().join("tool.lock")).unwrap()).unwrap();
    let mut locked: Vec<String> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}={}@{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["layer"].as_str().unwrap()
            )
        })
        .collect();
    locked.sort();
    // libfoo 2.0 (not 1.0) for "libfoo (>= 2)"; zmta through the virtual package; dpkg excluded.
    assert_eq!(
        locked,
        [
            "base-files=1@base",
            "libfoo=2.0@tool",
            "tool=3.1@tool",
            "zmta=1@tool"
        ]
    );

    let out = f.build();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["image"], "kiln/stacks/teststack-tool:latest");
    assert_eq!(report["layers"].as_array().unwrap().len(), 2);

    let inspection = f.env.inspect("kiln/stacks/teststack-tool");
    assert_eq!(inspection["user"], "1001:1001");
    assert_eq!(
        inspection["labels"]["io.buildpacks.base.distro.name"],
        "testos"
    );
    assert_eq!(
        inspection["labels"]["io.github.kiln-build.stack"],
        "teststack/tool"
    );
    assert_eq!(
        inspection["labels"]["io.github.kiln-build.stack.packages"],
        "base-files=1,libfoo=2.0,tool=3.1,zmta=1"
    );
    assert!(
        inspection["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "CNB_USER_ID=1001")
    );

    let store = f.env.home().join("store");
    let base = layer_entries(&store, inspection["layers"][0]["digest"].as_str().unwrap());
    let find = |entries: &[crate::util::TarEntry], path: &str| {
        entries
            .iter()
            .find(|e| e.path.trim_end_matches('/') == path)
            .unwrap_or_else(|| panic!("{path} not in {entries:?}"))
            .clone()
    };
    assert_eq!(find(&base, "tmp").mode, 0o1777);
    assert_eq!(find(&base, "home/app").uid, 1001);
    assert_eq!(
        find(&base, "bin").mode,
        0o777,
        "bin is the merged-/usr symlink"
    );
    find(&base, "etc/passwd");
    find(&base, "var/lib/dpkg/status.d/base-files");
    let tool = layer_entries(&store, inspection["layers"][1]["digest"].as_str().unwrap());
    assert_eq!(find(&tool, "usr/bin/tool").mode, 0o755);
    assert!(
        !tool.iter().any(|e| e.path.starts_with("bin/")),
        "no bin/ dir shadowing the symlink"
    );
    find(&tool, "var/lib/dpkg/status.d/zmta");
    validate_schema(
        &f.env.home().join("store"),
        "kiln/stacks/teststack-tool:latest",
    );

    // The same lock gives the same image, in another store.
    let other = TestEnv::new();
    let out = other
        .kiln()
        .args([
            "stack",
            "build",
            f.stack().to_str().unwrap(),
            "--flavour",
            "tool",
            "--format",
            "json",
        ])
        .env("KILN_DEBIAN_MIRROR", f.mirror())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);
}

#[test]
fn a_tampered_index_or_wrong_signer_is_refused() {
    let f = Fixture::new();
    let index = f
        .env
        .path("mirror/debian/dists/test/main/binary-amd64/Packages.gz");
    let mut bytes = fs::read(&index).unwrap();
    let good = bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&index, &bytes).unwrap();
    assert_exit(
        &f.lock(),
        42,
        &["does not match the SHA256 in its Release file"],
    );
    fs::write(&index, &good).unwrap();

    // Re-sign the (honest) Release with a key the stack does not trust.
    sign_release(&f.env.path("mirror/debian/dists/test"), &good, &key(2));
    assert_exit(&f.lock(), 42, &["does not verify with the archive keyring"]);
    assert!(
        !f.stack().join("tool.lock").exists(),
        "nothing is written on failure"
    );
}

#[test]
fn locked_packages_the_mirror_lost_or_corrupted_are_clear_errors() {
    let f = Fixture::new();
    assert!(f.lock().status.success());
    let pool = f.env.path("mirror/debian/pool/main");

    let deb = pool.join("tool_3.1_amd64.deb");
    let good = fs::read(&deb).unwrap();
    fs::remove_file(&deb).unwrap();
    assert_exit(
        &f.build(),
        41,
        &["package tool 3.1", "no longer served", "kiln stack lock"],
    );

    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    fs::write(&deb, &corrupt).unwrap();
    assert_exit(&f.build(), 42, &["wrong content"]);
    let cache = f.env.home().join("cache/debs");
    assert!(!cache.join(format!("{}.deb", sha256(&good))).exists());
    assert!(
        !fs::read_dir(&cache).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp")),
        "no temporary files left"
    );

    fs::write(&deb, &good).unwrap();
    assert!(f.build().status.success());
}

#[test]
fn stale_locks_and_missing_keyrings_are_refused() {
    let f = Fixture::new();
    assert!(f.lock().status.success());
    let toml = fs::read_to_string(f.stack().join("stack.toml")).unwrap();
    fs::write(
        f.stack().join("stack.toml"),
        toml.replace("packages = [\"tool\"]", "packages = [\"tool\", \"libfoo\"]"),
    )
    .unwrap();
    assert_exit(&f.build(), 40, &["out of date"]);

    fs::write(
        f.stack().join("stack.toml"),
        toml.replace("keyring = [\"keys/archive.asc\"]\n", ""),
    )
    .unwrap();
    assert_exit(
        &f.lock(),
        40,
        &["names no keyring", "--insecure-skip-signature"],
    );
    let out = f.kiln(&[
        "stack",
        "lock",
        f.stack().to_str().unwrap(),
        "--insecure-skip-signature",
    ]);
    assert!(out.status.success());
    assert_contains!(
        String::from_utf8_lossy(&out.stderr),
        "not verifying the archive's signature"
    );

    assert_exit(
        &f.kiln(&[
            "stack",
            "build",
            f.stack().to_str().unwrap(),
            "--flavour",
            "rust",
        ]),
        40,
        &["has no flavour rust", "base, tool"],
    );
    assert_exit(
        &f.kiln(&[
            "stack",
            "build",
            f.stack().to_str().unwrap(),
            "--arch",
            "riscv64",
        ]),
        40,
        &["not defined for riscv64"],
    );
    assert_exit(&f.kiln(&["stack", "lock", "bookworm"]), 40, &["read-only"]);
}

#[test]
fn an_invalid_stack_name_is_a_clear_error_not_a_panic() {
    // `name` names the stack's images (kiln/stacks/<name>-<flavour>), so uppercase is refused
    // when stack.toml is read, naming the file and a valid spelling (exit 40), rather than
    // panicking when the image name is made.
    let f = Fixture::new();
    let toml = fs::read_to_string(f.stack().join("stack.toml")).unwrap();
    fs::write(
        f.stack().join("stack.toml"),
        toml.replace("name = \"teststack\"", "name = \"MyStack\""),
    )
    .unwrap();
    let stack = f.stack();
    let repo = crate::util::repo();
    let detect = f.kiln(&[
        "detect",
        "--path",
        repo.join("examples/hello-shell").to_str().unwrap(),
        "--buildpack",
        repo.join("examples/buildpacks/shell").to_str().unwrap(),
        "--stack",
        stack.to_str().unwrap(),
    ]);
    let build = f.kiln(&["stack", "build", stack.to_str().unwrap()]);
    for out in [&detect, &build] {
        assert_exit(out, 40, &["stack.toml", "\"MyStack\"", "\"mystack\""]);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
