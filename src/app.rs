//! The app source: what of the source tree goes into `/workspace`.
//!
//! kiln copies the source tree into the build's own `/workspace` (buildpacks may write
//! there; the user's files are never touched) and leaves out:
//!
//! 1. every `.git` directory;
//! 2. what the CNB project descriptor says: `project.toml` `[io.buildpacks] include` or
//!    `exclude` (schema 0.2, under `[_] schema-version = "0.2"`) or `[build] include` /
//!    `exclude` (schema 0.1); gitignore pattern syntax; a descriptor with both is an error;
//! 3. paths matched by a `.kilnignore` file at the top of the source (gitignore syntax:
//!    `*.log`, `/build`, `node_modules/`, `!keep.log`).
//!
//! `project.toml` may also set build-time environment variables with
//! `[[io.buildpacks.build.env]]` (or `[[build.env]]`) `name = …`, `value = …`; `--env` wins.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Deserialize;

/// Name of kiln's ignore file.
pub const IGNORE_FILE: &str = ".kilnignore";

/// Errors reading the source tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The source directory does not exist or is not a directory.
    #[error("source directory {path} does not exist or is not a directory")]
    MissingSource {
        /// The path given.
        path: PathBuf,
    },
    /// A file of the source could not be read.
    #[error("cannot read {path}; fix its permissions or list it in {IGNORE_FILE}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The copy could not be written.
    #[error("failed to copy the source into {path}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `project.toml` is invalid.
    #[error("{path}: {problem}")]
    ProjectDescriptor {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A pattern of `.kilnignore` or `project.toml` is invalid.
    #[error("{path}: invalid pattern")]
    Pattern {
        /// The file.
        path: PathBuf,
        /// The pattern error.
        #[source]
        source: ignore::Error,
    },
}

/// What the source contributes besides files.
#[derive(Debug, Clone, Default)]
pub struct AppSource {
    /// Build-time variables from `project.toml`.
    pub build_env: BTreeMap<String, String>,
    /// Number of files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
struct ProjectToml {
    #[serde(default, rename = "io")]
    io: Option<IoTable>,
    #[serde(default)]
    build: Option<BuildTable>,
}

#[derive(Debug, Default, Deserialize)]
struct IoTable {
    #[serde(default)]
    buildpacks: Option<BuildTable>,
}

#[derive(Debug, Default, Deserialize)]
struct BuildTable {
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
    #[serde(default)]
    build: Option<EnvTable>,
    #[serde(default)]
    env: Vec<EnvEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct EnvTable {
    #[serde(default)]
    env: Vec<EnvEntry>,
}

#[derive(Debug, Deserialize)]
struct EnvEntry {
    name: String,
    #[serde(default)]
    value: String,
}

enum Selection {
    Exclude(Gitignore),
    Include(Gitignore),
}

/// Copies the app source at `source` into `dest` (which must not exist yet), applying the
/// rules in the module docs. Directories in `skip` (kiln's own home, which may sit inside
/// the source tree) are never copied.
pub fn copy_source(source: &Path, dest: &Path, skip: &[PathBuf]) -> Result<AppSource, AppError> {
    if !source.is_dir() {
        return Err(AppError::MissingSource {
            path: source.to_path_buf(),
        });
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AppError::Write { path, source }
    };
    fs::create_dir_all(dest).map_err(write_err(dest))?;
    let mut skip = skip.to_vec();
    skip.push(dest.to_path_buf());
    let mut app = AppSource::default();
    app.build_env = walk_selected(source, &skip, |entry, rel| {
        let target = dest.join(rel);
        let file_type = entry.file_type();
        if file_type.is_dir() {
            fs::create_dir_all(&target).map_err(write_err(&target))?;
        } else if file_type.is_symlink() {
            let link = fs::read_link(entry.path()).map_err(|source| AppError::Read {
                path: entry.path().to_path_buf(),
                source,
            })?;
            ensure_parent(&target)?;
            std::os::unix::fs::symlink(&link, &target).map_err(write_err(&target))?;
        } else if file_type.is_file() {
            ensure_parent(&target)?;
            let bytes = fs::copy(entry.path(), &target).map_err(|source| {
                if source.kind() == io::ErrorKind::PermissionDenied
                    || fs::File::open(entry.path()).is_err()
                {
                    AppError::Read {
                        path: entry.path().to_path_buf(),
                        source,
                    }
                } else {
                    AppError::Write {
                        path: target.clone(),
                        source,
                    }
                }
            })?;
            // Keep only the owner-execute bit's meaning; export normalises modes anyway, but
            // buildpacks must be able to read and run what they were given.
            let mode = entry.metadata().map_or(0o644, |m| m.permissions().mode());
            let mode = if mode & 0o100 == 0 { 0o644 } else { 0o755 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(write_err(&target))?;
            app.files += 1;
            app.bytes += bytes;
        }
        // Sockets, FIFOs and devices are not part of an app.
        Ok(())
    })?;
    Ok(app)
}

/// The stat fingerprint ([`crate::fingerprint`]) of what [`copy_source`] would copy, and of
/// the files that steer it (`project.toml`, `.kilnignore`): equal fingerprints mean the
/// source did not change.
pub fn fingerprint_source(source: &Path, skip: &[PathBuf]) -> Result<String, AppError> {
    if !source.is_dir() {
        return Err(AppError::MissingSource {
            path: source.to_path_buf(),
        });
    }
    let mut fingerprint = crate::fingerprint::Fingerprinter::new();
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AppError::Read { path, source }
    };
    for steering in ["project.toml", IGNORE_FILE] {
        let path = source.join(steering);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            fingerprint
                .add_entry(Path::new(steering), &path, &meta)
                .map_err(read_err(&path))?;
        }
    }
    fingerprint.add_str("selected", "");
    walk_selected(source, skip, |entry, rel| {
        let meta = entry
            .metadata()
            .map_err(|e| read_err(entry.path())(io::Error::other(e)))?;
        fingerprint
            .add_entry(rel, entry.path(), &meta)
            .map_err(read_err(entry.path()))
    })?;
    Ok(fingerprint.finish())
}

/// Walks the source in file-name order, calling `visit` with each entry the rules in the
/// module docs select (and its path relative to `source`); directories in `skip` are left
/// out. Returns the build environment `project.toml` sets.
fn walk_selected(
    source: &Path,
    skip: &[PathBuf],
    mut visit: impl FnMut(&walkdir::DirEntry, &Path) -> Result<(), AppError>,
) -> Result<BTreeMap<String, String>, AppError> {
    let (selection, build_env) = read_project_toml(source)?;
    let ignore = read_ignore_file(source)?;
    // Canonical forms, so they match however the walk reaches them.
    let skip: Vec<PathBuf> = skip
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    let mut walker = walkdir::WalkDir::new(source)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(source).to_path_buf();
            AppError::Read {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("loop in the file system")),
            }
        })?;
        let rel = entry
            .path()
            .strip_prefix(source)
            .expect("walkdir yields paths under its root");
        let is_dir = entry.file_type().is_dir();
        if is_dir && fs::canonicalize(entry.path()).is_ok_and(|canonical| skip.contains(&canonical))
        {
            walker.skip_current_dir();
            continue;
        }
        let excluded = rel.components().any(|c| c.as_os_str() == ".git")
            || ignore
                .as_ref()
                .is_some_and(|g| g.matched(rel, is_dir).is_ignore())
            || match &selection {
                Some(Selection::Exclude(g)) => g.matched(rel, is_dir).is_ignore(),
                Some(Selection::Include(g)) => {
                    !is_dir && !g.matched_path_or_any_parents(rel, false).is_ignore()
                }
                None => false,
            };
        if excluded {
            if is_dir {
                walker.skip_current_dir();
            }
            continue;
        }
        visit(&entry, rel)?;
    }
    Ok(build_env)
}

fn ensure_parent(path: &Path) -> Result<(), AppError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| AppError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn read_ignore_file(source: &Path) -> Result<Option<Gitignore>, AppError> {
    let path = source.join(IGNORE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let mut builder = GitignoreBuilder::new(source);
    if let Some(err) = builder.add(&path) {
        return Err(AppError::Pattern { path, source: err });
    }
    builder
        .build()
        .map(Some)
        .map_err(|source| AppError::Pattern { path, source })
}

fn read_project_toml(
    source: &Path,
) -> Result<(Option<Selection>, BTreeMap<String, String>), AppError> {
    let path = source.join("project.toml");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, BTreeMap::new())),
        Err(source) => return Err(AppError::Read { path, source }),
    };
    let invalid = |problem: String| AppError::ProjectDescriptor {
        path: path.clone(),
        problem,
    };
    let parsed: ProjectToml = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    // Schema 0.2 keeps the settings under [io.buildpacks]; schema 0.1 under [build].
    let table = parsed
        .io
        .and_then(|io| io.buildpacks)
        .or(parsed.build)
        .unwrap_or_default();
    let mut env = BTreeMap::new();
    let entries = table.build.map(|b| b.env).unwrap_or_default();
    for entry in entries.into_iter().chain(table.env) {
        if entry.name.is_empty() || entry.name.contains(['=', '/', '\0']) {
            return Err(invalid(format!(
                "build env name {:?} is not a valid variable name",
                entry.name
            )));
        }
        env.insert(entry.name, entry.value);
    }
    let build = |patterns: &[String]| -> Result<Gitignore, AppError> {
        let mut builder = GitignoreBuilder::new(source);
        for pattern in patterns {
            builder
                .add_line(None, pattern)
                .map_err(|e| AppError::Pattern {
                    path: path.clone(),
                    source: e,
                })?;
        }
        builder.build().map_err(|e| AppError::Pattern {
            path: path.clone(),
            source: e,
        })
    };
    let selection = match (table.include, table.exclude) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "include and exclude cannot both be set; keep one of them".to_string(),
            ));
        }
        (Some(include), None) => Some(Selection::Include(build(&include)?)),
        (None, Some(exclude)) => Some(Selection::Exclude(build(&exclude)?)),
        (None, None) => None,
    };
    Ok((selection, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        dir
    }

    fn copied(src: &Path) -> Vec<String> {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("ws");
        copy_source(src, &dest, &[]).unwrap();
        let mut files: Vec<String> = walkdir::WalkDir::new(&dest)
            .min_depth(1)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().is_dir())
            .map(|e| {
                e.path()
                    .strip_prefix(&dest)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn git_is_always_excluded() {
        let src = tree(&["a.txt", ".git/HEAD", "sub/.git/x", "sub/b.txt"]);
        assert_eq!(copied(src.path()), ["a.txt", "sub/b.txt"]);
    }

    #[test]
    fn kilnignore_uses_gitignore_rules() {
        let src = tree(&[
            "app.py",
            "debug.log",
            "keep.log",
            "build/out.bin",
            "src/build/x",
            ".kilnignore",
        ]);
        fs::write(src.path().join(".kilnignore"), "*.log\n!keep.log\n/build\n").unwrap();
        assert_eq!(
            copied(src.path()),
            [".kilnignore", "app.py", "keep.log", "src/build/x"]
        );
    }

    #[test]
    fn project_toml_exclude_and_env() {
        let src = tree(&["a.py", "tests/t.py", "docs/readme.md"]);
        fs::write(
            src.path().join("project.toml"),
            "[_]\nschema-version = \"0.2\"\n[io.buildpacks]\nexclude = [\"tests\", \"*.md\"]\n[[io.buildpacks.build.env]]\nname = \"BP_X\"\nvalue = \"1\"\n",
        )
        .unwrap();
        assert_eq!(copied(src.path()), ["a.py", "project.toml"]);
        let out = tempfile::tempdir().unwrap();
        let app = copy_source(src.path(), &out.path().join("ws"), &[]).unwrap();
        assert_eq!(app.build_env["BP_X"], "1");
    }

    #[test]
    fn project_toml_include_v01() {
        let src = tree(&["a.py", "lib/b.py", "notes.txt"]);
        fs::write(
            src.path().join("project.toml"),
            "[build]\ninclude = [\"*.py\", \"lib/\"]\n",
        )
        .unwrap();
        assert_eq!(copied(src.path()), ["a.py", "lib/b.py"]);
    }

    #[test]
    fn include_and_exclude_together_is_an_error() {
        let src = tree(&["a"]);
        fs::write(
            src.path().join("project.toml"),
            "[io.buildpacks]\ninclude = [\"a\"]\nexclude = [\"b\"]\n",
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = copy_source(src.path(), &out.path().join("ws"), &[]).unwrap_err();
        assert!(err.to_string().contains("cannot both"), "{err}");
    }

    #[test]
    fn skipped_and_destination_directories_are_not_copied() {
        let src = tree(&["app.py", ".kiln/store/blob", "deep/x"]);
        let out = src.path().join("deep/ws");
        copy_source(src.path(), &out, &[src.path().join(".kiln")]).unwrap();
        assert!(out.join("app.py").is_file());
        assert!(!out.join(".kiln").exists());
        assert!(out.join("deep/x").is_file());
        assert!(
            !out.join("deep/ws").exists(),
            "the copy must not copy itself"
        );
    }

    #[test]
    fn missing_source_is_an_error() {
        let out = tempfile::tempdir().unwrap();
        let err = copy_source(Path::new("/no/such/dir"), &out.path().join("ws"), &[]).unwrap_err();
        assert!(matches!(err, AppError::MissingSource { .. }));
    }
}
