//! Reading the app's files during detection and build. Every problem names the file: a file
//! that exists but cannot be read, is not UTF-8 or does not parse is an error the user can
//! fix, never a silent "not detected" and never a panic.

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// The app directory as the buildpacks see it.
#[derive(Debug, Clone)]
pub(crate) struct App {
    dir: PathBuf,
}

impl App {
    /// The app at `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The app directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rel` under the app directory.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Whether `rel` is a regular file (following symlinks).
    pub(crate) fn is_file(&self, rel: &str) -> bool {
        self.path(rel).is_file()
    }

    /// Whether `rel` is a directory (following symlinks).
    pub(crate) fn is_dir(&self, rel: &str) -> bool {
        self.path(rel).is_dir()
    }

    /// The text of `rel`, or `None` if there is no such file.
    pub(crate) fn read(&self, rel: &str) -> Result<Option<String>> {
        let path = self.path(rel);
        match fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                Error::new(format!("{rel} is not UTF-8 text")).hint(format!("save {rel} as UTF-8"))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == ErrorKind::IsADirectory => Err(Error::new(format!(
                "{rel} is a directory, where a file was expected"
            ))),
            Err(e) => Err(Error::new(format!("cannot read {rel}: {e}")).hint(format!(
                "make {rel} readable, or exclude it from the build in .kilnignore"
            ))),
        }
    }

    /// `rel` parsed as TOML, or `None` if there is no such file.
    pub(crate) fn read_toml(&self, rel: &str) -> Result<Option<toml::Table>> {
        let Some(text) = self.read(rel)? else {
            return Ok(None);
        };
        toml::from_str(&text).map(Some).map_err(|e| {
            Error::new(format!("{rel} is not valid TOML: {}", e.message())).hint(match e.span() {
                Some(span) => format!("fix {rel} at {}", line_col(&text, span.start)),
                None => format!("fix {rel}"),
            })
        })
    }

    /// `rel` parsed as JSON, or `None` if there is no such file.
    pub(crate) fn read_json(&self, rel: &str) -> Result<Option<serde_json::Value>> {
        let Some(text) = self.read(rel)? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::new(format!("{rel} is not valid JSON: {e}")).hint(format!(
                "fix {rel} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// The names of the entries of directory `rel`, sorted; empty if it does not exist.
    pub(crate) fn list(&self, rel: &str) -> Result<Vec<String>> {
        let path = self.path(rel);
        match fs::read_dir(&path) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(std::result::Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                Ok(names)
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                Ok(Vec::new())
            }
            Err(e) => Err(Error::new(format!(
                "cannot list {}: {e}",
                if rel.is_empty() {
                    "the app directory"
                } else {
                    rel
                }
            ))),
        }
    }
}

/// `line L, column C` (1-based) of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// The SHA-256 (hex) of the named files' contents, missing files included as absent, for
/// layer metadata that decides whether a cached layer is still good.
pub(crate) fn digest_files(app: &App, names: &[&str]) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_bytes());
        match app.read(name)? {
            Some(text) => {
                hasher.update([1]);
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update([0]),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes` (a digest).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An app directory holding `files` (`(path, content)`), for tests.
#[cfg(test)]
pub(crate) fn temp_app(files: &[(&str, &str)]) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    let app = App::new(dir.path());
    (dir, app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::new(dir.path());
        assert_eq!(app.read("missing").unwrap(), None);
        fs::write(dir.path().join("bad.json"), "{\n  \"a\": ,\n}").unwrap();
        let err = app.read_json("bad.json").unwrap_err().to_string();
        assert!(err.contains("bad.json is not valid JSON"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        fs::write(dir.path().join("bad.toml"), "a = 1\nb = \n").unwrap();
        let err = app.read_toml("bad.toml").unwrap_err().to_string();
        assert!(err.contains("bad.toml is not valid TOML"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        assert!(app.read("bin").unwrap_err().to_string().contains("UTF-8"));
        fs::create_dir(dir.path().join("d")).unwrap();
        assert!(app.read("d").unwrap_err().to_string().contains("directory"));
        assert_eq!(app.list("").unwrap().len(), 4);
    }

    #[test]
    fn file_digests_change_with_content_and_presence() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::new(dir.path());
        let none = digest_files(&app, &["a"]).unwrap();
        fs::write(dir.path().join("a"), "").unwrap();
        let empty = digest_files(&app, &["a"]).unwrap();
        fs::write(dir.path().join("a"), "x").unwrap();
        let x = digest_files(&app, &["a"]).unwrap();
        assert_ne!(none, empty);
        assert_ne!(empty, x);
        assert_eq!(x, digest_files(&app, &["a"]).unwrap());
    }
}
