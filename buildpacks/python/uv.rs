//! Installing the dependencies with uv: resolved (`uv pip compile`) unless a lockfile already
//! pins them, then made exactly so (`uv pip sync`) in the `packages` layer — into the layer
//! restored from the cache when there is one, so a changed lockfile downloads and writes only
//! what changed, and removes what is gone. What `sync` leaves is what a clean install writes:
//! each package's files are the same bytes whichever packages were there before.
//!
//! uv reads its own settings (`UV_*`); the pip settings a user already has (`PIP_INDEX_URL`,
//! `PIP_EXTRA_INDEX_URL`, `PIP_FIND_LINKS`, `PIP_TRUSTED_HOST`, `PIP_NO_INDEX`, `PIP_PRE`,
//! `PIP_CERT`, `PIP_DEFAULT_TIMEOUT`) are translated when the uv one is not set, with pip's
//! index strategy (the best version across all indexes), so a private index configured for
//! pip keeps working.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::files::App;
use crate::common::{Result, cmd};

/// pip's variable, uv's, and how to convert the value.
const FROM_PIP: &[(&str, &str, Convert)] = &[
    ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", Convert::Same),
    ("PIP_EXTRA_INDEX_URL", "UV_INDEX", Convert::Same),
    ("PIP_FIND_LINKS", "UV_FIND_LINKS", Convert::SpacesToCommas),
    ("PIP_TRUSTED_HOST", "UV_INSECURE_HOST", Convert::Same),
    ("PIP_NO_INDEX", "UV_NO_INDEX", Convert::Same),
    ("PIP_PRE", "UV_PRERELEASE", Convert::Allow),
    ("PIP_CERT", "SSL_CERT_FILE", Convert::Same),
    ("PIP_DEFAULT_TIMEOUT", "UV_HTTP_TIMEOUT", Convert::Same),
];

#[derive(Clone, Copy)]
enum Convert {
    Same,
    SpacesToCommas,
    Allow,
}

/// uv as the build runs it.
pub(super) struct Uv {
    /// The executable (in kiln/python's cached `uv` layer).
    pub(super) exe: PathBuf,
    /// uv's download and wheel cache (a cached build layer).
    pub(super) cache: PathBuf,
    /// Options that select the run image's Python and platform: `--python <the build's
    /// python3>` when the build's Python is the run image's, else the target's version and platform with binary
    /// wheels only.
    pub(super) target: Vec<String>,
    /// The user's pip settings, translated (see [`translated_settings`]).
    settings: Vec<(&'static str, OsString)>,
}

impl Uv {
    /// uv at `exe` with its cache at `cache`, installing for `target` (see
    /// [`target_options`]), with the build's pip settings.
    pub(super) fn new(exe: PathBuf, cache: PathBuf, target: Vec<String>) -> Self {
        Self {
            exe,
            cache,
            target,
            settings: translated_settings(|name| std::env::var_os(name)),
        }
    }

    /// `uv pip SUBCOMMAND` in the app's directory, with kiln's and the user's settings.
    fn pip(&self, app: &App, subcommand: &str) -> Command {
        let mut uv = Command::new(&self.exe);
        uv.current_dir(app.dir())
            .args(["pip", subcommand, "--quiet"])
            .args(&self.target)
            .env("UV_CACHE_DIR", &self.cache)
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_NO_PROGRESS", "1")
            // Files are copied out of the cache layer: nothing in the image links into it.
            .env("UV_LINK_MODE", "copy")
            .env("UV_NATIVE_TLS", "1");
        uv.envs(self.settings.iter().map(|(k, v)| (k, v)));
        uv
    }

    /// Resolves `inputs` (requirements files, `pyproject.toml`, `setup.py`) to pinned
    /// requirements in `out`.
    pub(super) fn compile(&self, app: &App, inputs: &[String], out: &Path) -> Result<()> {
        cmd::run(
            self.pip(app, "compile")
                .args(["--no-header", "--no-annotate", "--output-file"])
                .arg(out)
                .args(inputs),
        )
    }

    /// Makes `site` hold exactly the pinned `requirements`.
    pub(super) fn sync(&self, app: &App, requirements: &Path, site: &Path) -> Result<()> {
        cmd::run(
            self.pip(app, "sync")
                .arg("--target")
                .arg(site)
                .arg(requirements),
        )?;
        // uv's lock file for the directory; not part of what was installed.
        let lock = site.join(".lock");
        if lock.exists() {
            std::fs::remove_file(&lock).map_err(|e| write_error(&lock, &e))?;
        }
        drop_install_times(site)
    }
}

fn write_error(path: &Path, e: &std::io::Error) -> crate::common::Error {
    crate::common::Error::new(format!("cannot write {}: {e}", path.display()))
}

/// Removes what uv records of when it installed a local project (`uv_cache.json`: a
/// timestamp, so the layer would differ on every build) and its line in `RECORD`. uv then
/// installs such a project afresh on the next sync, which is right: its sources may have
/// changed.
fn drop_install_times(site: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(site) else {
        return Ok(());
    };
    let mut infos: Vec<PathBuf> = entries
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "dist-info")
                && !p.is_symlink()
                && p.join("uv_cache.json").is_file()
        })
        .collect();
    infos.sort();
    for info in infos {
        let cache = info.join("uv_cache.json");
        std::fs::remove_file(&cache).map_err(|e| write_error(&cache, &e))?;
        let record = info.join("RECORD");
        if record.is_symlink() || !record.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&record).map_err(|e| write_error(&record, &e))?;
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            if !line
                .split(',')
                .next()
                .is_some_and(|p| p.ends_with("/uv_cache.json"))
            {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        std::fs::write(&record, kept).map_err(|e| write_error(&record, &e))?;
    }
    Ok(())
}

/// The uv settings derived from pip's (`get` reads a variable), for those uv's own is unset;
/// extra indexes bring pip's strategy of taking the best version across indexes.
fn translated_settings(get: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, OsString)> {
    let mut out = Vec::new();
    for (pip, uv, convert) in FROM_PIP {
        let Some(value) = get(pip) else {
            continue;
        };
        if get(uv).is_some() {
            continue;
        }
        let value = match convert {
            Convert::Same => value,
            // pip ignores (with a warning) a local path that does not exist; uv fails.
            Convert::SpacesToCommas => value
                .to_string_lossy()
                .split_whitespace()
                .filter(|place| {
                    let usable = place.contains("://") || Path::new(place).exists();
                    if !usable {
                        crate::common::warn(&format!(
                            "{pip} names {place}, which does not exist in the build: ignored, as pip does"
                        ));
                    }
                    usable
                })
                .collect::<Vec<_>>()
                .join(",")
                .into(),
            Convert::Allow => "allow".into(),
        };
        out.push((*uv, value));
        if *pip == "PIP_EXTRA_INDEX_URL" && get("UV_INDEX_STRATEGY").is_none() {
            out.push(("UV_INDEX_STRATEGY", "unsafe-best-match".into()));
        }
    }
    out
}

/// The options for a run image Python `minor` on `machine` with glibc `glibc`: the build's
/// Python `python` when it is the run image's, else (`cross`) wheels for the target only.
pub(super) fn target_options(
    cross: bool,
    minor: &str,
    machine: &str,
    glibc: Option<&str>,
    python: &Path,
) -> Vec<String> {
    if !cross {
        return vec![
            "--python".to_string(),
            python.to_string_lossy().into_owned(),
        ];
    }
    // uv knows manylinux tags up to 2_40; a newer glibc runs those wheels too.
    let glibc_minor: u32 = glibc
        .and_then(|g| g.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .unwrap_or(17)
        .clamp(17, 40);
    vec![
        "--python-version".to_string(),
        minor.to_string(),
        "--python-platform".to_string(),
        format!("{machine}-manylinux_2_{glibc_minor}"),
        "--no-build".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_settings_become_uv_settings_unless_uv_has_its_own() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "PIP_INDEX_URL" => Some("https://index.example/simple".into()),
                "PIP_EXTRA_INDEX_URL" => Some("https://extra.example/simple".into()),
                "PIP_FIND_LINKS" => Some("/ /nonexistent/wheels https://wheels.example/".into()),
                "PIP_PRE" => Some("1".into()),
                "PIP_CERT" => Some("/etc/ca.pem".into()),
                "SSL_CERT_FILE" => Some("/etc/mine.pem".into()),
                _ => None,
            }
        };
        let out: Vec<(&str, String)> = translated_settings(env)
            .into_iter()
            .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            out,
            [
                (
                    "UV_DEFAULT_INDEX",
                    "https://index.example/simple".to_string()
                ),
                ("UV_INDEX", "https://extra.example/simple".to_string()),
                ("UV_INDEX_STRATEGY", "unsafe-best-match".to_string()),
                ("UV_FIND_LINKS", "/,https://wheels.example/".to_string()),
                ("UV_PRERELEASE", "allow".to_string()),
            ]
        );
    }

    #[test]
    fn local_projects_lose_their_install_time() {
        let site = tempfile::tempdir().unwrap();
        let info = site.path().join("mylib-0.1.dist-info");
        std::fs::create_dir(&info).unwrap();
        std::fs::write(info.join("uv_cache.json"), "{\"timestamp\":1}").unwrap();
        std::fs::write(
            info.join("RECORD"),
            "mylib/__init__.py,sha256=x,4\nmylib-0.1.dist-info/uv_cache.json,sha256=y,13\nmylib-0.1.dist-info/RECORD,,\n",
        )
        .unwrap();
        drop_install_times(site.path()).unwrap();
        assert!(!info.join("uv_cache.json").exists());
        assert_eq!(
            std::fs::read_to_string(info.join("RECORD")).unwrap(),
            "mylib/__init__.py,sha256=x,4\nmylib-0.1.dist-info/RECORD,,\n"
        );
    }

    #[test]
    fn another_python_gets_the_targets_wheels() {
        assert_eq!(
            target_options(false, "3.13", "x86_64", None, Path::new("python3")),
            ["--python", "python3"]
        );
        assert_eq!(
            target_options(
                false,
                "3.12",
                "x86_64",
                None,
                Path::new("/layers/kiln_python/python/bin/python3")
            ),
            ["--python", "/layers/kiln_python/python/bin/python3"]
        );
        assert_eq!(
            target_options(true, "3.13", "aarch64", Some("2.41"), Path::new("python3")).join(" "),
            "--python-version 3.13 --python-platform aarch64-manylinux_2_40 --no-build"
        );
    }
}
