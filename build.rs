//! Embeds the stack definitions under `stacks/` (definitions, keyrings, locks) into the
//! binary, so `kiln stack build bookworm` works after `cargo install` with no other files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=stacks");
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("stacks");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut out = String::from(
        "/// Files of the built-in stacks: (path under `stacks/`, content).\npub(crate) static EMBEDDED_STACK_FILES: &[(&str, &[u8])] = &[\n",
    );
    for rel in files {
        let abs = root.join(&rel);
        writeln!(
            out,
            "    ({:?}, include_bytes!({:?})),",
            rel.to_string_lossy(),
            abs.to_string_lossy()
        )
        .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stacks.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.file_name().is_some_and(|n| n != "README.md") {
            files.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}
