//! pip as kiln/python runs it: for the app's own package, and for the dependencies when the
//! package index has no uv (a private index that mirrors only the app's packages). pip has no
//! in-place update: its dependency layer is installed afresh whenever it changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::files::App;

/// pip as the build runs it.
pub(super) struct Pip {
    /// The Python whose pip runs (the build environment's `python3`, or the standalone
    /// CPython kiln installed).
    pub(super) python: PathBuf,
    /// Options that select the run image's wheels when it differs from the build's Python
    /// (see [`cross_options`]).
    pub(super) cross: Vec<String>,
    /// pip's download cache.
    pub(super) cache: PathBuf,
}

impl Pip {
    /// `python3 -m pip install --target TARGET …`, without the cross options.
    pub(super) fn install(&self, app: &App, target: &Path) -> Command {
        let mut pip = Command::new(&self.python);
        pip.current_dir(app.dir())
            .args(["-m", "pip", "install", "--target"])
            .arg(target)
            // No .pyc files: kiln/python compiles what it installs itself, reproducibly.
            .args([
                "--no-compile",
                "--no-warn-script-location",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            .env("PIP_CACHE_DIR", &self.cache)
            .env("PIP_ROOT_USER_ACTION", "ignore");
        pip
    }

    /// [`Pip::install`] with the wheel selection for the run image.
    pub(super) fn install_for_run_image(&self, app: &App, target: &Path) -> Command {
        let mut pip = self.install(app, target);
        pip.args(&self.cross);
        pip
    }
}

/// pip options that select wheels for another Python or platform than the build's (none
/// unless `cross`).
pub(super) fn cross_options(
    cross: bool,
    minor: &str,
    machine: &str,
    glibc: Option<&str>,
) -> Vec<String> {
    if !cross {
        return Vec::new();
    }
    let abi = format!("cp{}", minor.replace('.', ""));
    let mut options = vec![
        "--python-version".to_string(),
        minor.to_string(),
        "--implementation".to_string(),
        "cp".to_string(),
        "--only-binary=:all:".to_string(),
    ];
    for abi in [abi.as_str(), "abi3", "none"] {
        options.push("--abi".to_string());
        options.push(abi.to_string());
    }
    let newest: u32 = glibc
        .and_then(|g| g.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .unwrap_or(17);
    for minor_glibc in (17..=newest.max(17)).rev() {
        options.push("--platform".to_string());
        options.push(format!("manylinux_2_{minor_glibc}_{machine}"));
    }
    for legacy in ["manylinux2014", "manylinux2010", "manylinux1"] {
        if legacy != "manylinux2014" && machine != "x86_64" {
            continue;
        }
        options.push("--platform".to_string());
        options.push(format!("{legacy}_{machine}"));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_installs_select_the_run_images_wheels() {
        assert!(cross_options(false, "3.11", "x86_64", None).is_empty());
        let options = cross_options(true, "3.11", "aarch64", Some("2.36"));
        let joined = options.join(" ");
        assert!(joined.contains("--python-version 3.11"));
        assert!(joined.contains("--abi cp311"));
        assert!(joined.contains("--platform manylinux_2_36_aarch64"));
        assert!(joined.contains("--platform manylinux_2_17_aarch64"));
        assert!(joined.contains("--platform manylinux2014_aarch64"));
        assert!(!joined.contains("manylinux1_aarch64"));
    }
}
