//! Compiled bytecode in the image, so containers start without compiling: hash-based `.pyc`
//! files (PEP 552) for the installed packages and the run image's standard library, in a
//! `bytecode` launch layer that the image names as `PYTHONPYCACHEPREFIX`.
//!
//! - **Installed packages** get `unchecked-hash` files: their sources sit in kiln's own
//!   `packages` layer, which changes only together with this one, so Python never needs to
//!   look at the source again.
//! - **The standard library** (`/usr/lib/python3.X`, owned by the run image) gets
//!   `checked-hash` files: Python hashes the source on import and compiles afresh when it
//!   changed, so a `kiln rebase` onto a run image with a Python security update runs the
//!   updated library, never stale bytecode of the old one. Hashing a source costs a small
//!   fraction of compiling it.
//! - **Reproducible**: the files embed the source's hash instead of its mtime and their
//!   final path (`co_filename`); each top-level directory is compiled in a fresh process
//!   (forked before any compiling; marshal's output follows the interpreter's history) in
//!   sorted order with `PYTHONHASHSEED=0` — see `bytecode.py`.
//! - The app's own code is not compiled (it may be edited or mounted over at run time);
//!   Python writes its cache into the prefix when it may.
//! - Needs the build's Python to be the run image's Python version (it is in the stack's
//!   build image); otherwise there is no bytecode layer and the log says why.

use std::path::Path;
use std::process::Command;

use libcnb::build::BuildContext;
use libcnb::data::layer_name;
use libcnb::layer_env::{LayerEnv, ModificationBehavior, Scope};
use sha2::Digest as _;

use super::PythonBuildpack;
use crate::common::layers::Reuse;
use crate::common::{CnbResult, cmd, layers, say};

/// The compiler script (run with `python3 -c`).
const SCRIPT: &str = include_str!("bytecode.py");

/// What the bytecode was compiled from; reused while all of it stays the same.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct BytecodeKey {
    /// The compiler script's SHA-256: a changed script recompiles.
    compiler: String,
    /// The compiling interpreter (`3.13.5`): its magic number and marshal format.
    python: String,
    /// The standard library compiled, if any (`/usr/lib/python3.13`).
    stdlib: Option<String>,
    /// The dependency layer's key, serialized.
    packages: String,
}

/// The sources to compile.
pub(super) struct Sources<'a> {
    /// The build's Python version (`3.13.5`).
    pub(super) python: &'a str,
    /// Its executable (`python3`, or the standalone CPython's in the `python` layer).
    pub(super) interpreter: &'a Path,
    /// Its standard library, when it is the run image's (same path and minor version).
    pub(super) stdlib: Option<&'a Path>,
    /// The installed packages' `site-packages`, and the key of their layer.
    pub(super) packages: Option<(&'a Path, String)>,
    /// Whether the packages were installed afresh by this build (the cached bytecode is then
    /// checked even under the same key: an unpinned requirement may have moved).
    pub(super) fresh: bool,
}

/// Writes (or reuses, or updates) the `bytecode` layer for `sources` and points the image
/// at it. A layer made by the same compiler and Python is updated in place when the packages
/// changed: only the packages whose sources changed are compiled again (see `bytecode.py`).
pub(super) fn compile(context: &BuildContext<PythonBuildpack>, sources: &Sources) -> CnbResult<()> {
    if sources.stdlib.is_none() && sources.packages.is_none() {
        return Ok(());
    }
    let key = BytecodeKey {
        compiler: crate::common::files::hex(&sha2::Sha256::digest(SCRIPT)),
        python: sources.python.to_string(),
        stdlib: sources.stdlib.map(|p| p.to_string_lossy().into_owned()),
        packages: sources
            .packages
            .as_ref()
            .map(|(_, key)| key.clone())
            .unwrap_or_default(),
    };
    let (layer, reuse) = layers::keyed_incremental(
        context,
        &layer_name!("bytecode"),
        false,
        true,
        &key,
        |old, new| {
            old.compiler == new.compiler && old.python == new.python && old.stdlib == new.stdlib
        },
    )?;
    let prefix = layer.path();
    if reuse == Reuse::All && !sources.fresh {
        say("reusing the compiled bytecode");
    } else {
        if let Some(stdlib) = sources.stdlib.filter(|_| reuse == Reuse::Nothing) {
            let counts = run(sources.interpreter, &prefix, "checked-hash", stdlib)?;
            say(&format!("compiled the standard library: {counts}"));
        }
        if let Some((site, _)) = &sources.packages {
            let counts = run(sources.interpreter, &prefix, "unchecked-hash", site)?;
            say(&format!("compiled the installed packages: {counts}"));
        }
    }
    layer.write_env(LayerEnv::new().chainable_insert(
        Scope::Launch,
        ModificationBehavior::Override,
        "PYTHONPYCACHEPREFIX",
        &prefix,
    ))?;
    Ok(())
}

/// Compiles the sources under `root` into `prefix`; returns the script's counts.
fn run(python: &Path, prefix: &Path, mode: &str, root: &Path) -> CnbResult<String> {
    if !root.is_dir() {
        return Ok("nothing to compile".to_string());
    }
    let out = cmd::output(
        Command::new(python)
            .args(["-s", "-c", SCRIPT])
            .arg(prefix)
            .arg(mode)
            .arg(root)
            .env("PYTHONHASHSEED", "0")
            .env_remove("PYTHONPYCACHEPREFIX")
            .env_remove("PYTHONDONTWRITEBYTECODE"),
    )?;
    Ok(describe(out.trim()))
}

/// `compiled 12 skipped 1 kept 40` as a log line.
fn describe(counts: &str) -> String {
    let numbers: Vec<&str> = counts.split_whitespace().skip(1).step_by(2).collect();
    let [compiled, skipped, kept] = numbers[..] else {
        return counts.to_string();
    };
    let mut line = format!("{compiled} modules");
    if kept != "0" {
        line = format!("{line}, {kept} unchanged");
    }
    if skipped != "0" {
        line = format!("{line} ({skipped} files are not valid Python and stay uncompiled)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn counts_read_as_a_log_line() {
        assert_eq!(describe("compiled 12 skipped 0 kept 0"), "12 modules");
        assert_eq!(
            describe("compiled 2 skipped 1 kept 40"),
            "2 modules, 40 unchanged (1 files are not valid Python and stay uncompiled)"
        );
        assert_eq!(describe("odd"), "odd");
    }
}
