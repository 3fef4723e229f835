//! Compiles the runtime inventory of kiln's stacks: for each stack, its distribution and
//! architecture, the Debian version of every package its locks pin. The buildpacks check
//! requested runtime versions (Python, Node.js) against it, so what the run image provides is
//! known at detect time without reading any image.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

#[derive(serde::Deserialize)]
struct StackFile {
    stack: Stack,
}

#[derive(serde::Deserialize)]
struct Stack {
    name: String,
    distro: Distro,
}

#[derive(serde::Deserialize)]
struct Distro {
    name: String,
    version: String,
}

#[derive(serde::Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(serde::Deserialize)]
struct Package {
    name: String,
    version: String,
    arch: String,
}

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let stacks = Path::new(&manifest).join("../stacks");
    println!("cargo:rerun-if-changed={}", stacks.display());
    // (stack, distro, version, arch, package) → Debian version.
    let mut table: BTreeMap<(String, String, String, String, String), String> = BTreeMap::new();
    let mut dirs: Vec<_> = fs::read_dir(&stacks)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = fs::read_to_string(dir.join("stack.toml")) else {
            continue;
        };
        println!("cargo:rerun-if-changed={}", dir.display());
        let stack: StackFile = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join("stack.toml").display()));
        let mut locks: Vec<_> = fs::read_dir(&dir)
            .expect("stack directory is readable")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "lock"))
            .collect();
        locks.sort();
        for lock in locks {
            let text = fs::read_to_string(&lock).expect("lock is readable");
            let parsed: LockFile =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
            for p in parsed.package {
                table.insert(
                    (
                        stack.stack.name.clone(),
                        stack.stack.distro.name.clone(),
                        stack.stack.distro.version.clone(),
                        p.arch,
                        p.name,
                    ),
                    p.version,
                );
            }
        }
    }
    let mut out = String::from(
        "/// (stack, distro, distro version, architecture, package, Debian version) of every\n/// package the stacks' locks pin.\npub(crate) static PACKAGES: &[(&str, &str, &str, &str, &str, &str)] = &[\n",
    );
    for ((stack, distro, version, arch, name), pkg_version) in &table {
        writeln!(
            out,
            "    ({stack:?}, {distro:?}, {version:?}, {arch:?}, {name:?}, {pkg_version:?}),"
        )
        .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("inventory.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}
