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
//!
//! The source tree is untrusted (a pull request can put anything there): `project.toml` and
//! `.kilnignore` are read with [`crate::untrusted::read_text`] — at most
//! [`crate::untrusted::MAX_METADATA`] bytes, never through a symbolic link,
//! never blocking on a FIFO — and their errors give line numbers, never an excerpt. The
//! walk follows no links and is at most [`MAX_SOURCE_DEPTH`] levels deep.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Deserialize;

use crate::untrusted::{self, Links, MAX_METADATA, ReadError};

/// Name of kiln's ignore file.
pub const IGNORE_FILE: &str = ".kilnignore";

/// Name of the CNB project descriptor.
pub const PROJECT_FILE: &str = "project.toml";

/// How many directory levels below the source's top kiln walks.
///
/// A limit rather than "whatever the file system allows": every path of the copy lives
/// under kiln's work directory, and Linux refuses paths longer than `PATH_MAX` (4096 bytes)
/// — a tree deeper than 1024 levels needs at least 2048 bytes for its relative path alone,
/// so it would fail anyway, late and with an unreadable error. kiln stops at the first
/// directory this deep instead, naming the top-level directory that holds it and the limit,
/// without descending further (what was copied so far is kiln's scratch). Walking is
/// linear in the number of entries (no per-directory `canonicalize`), so a tree just under
/// the limit is copied as fast as a flat one of the same size.
pub const MAX_SOURCE_DEPTH: usize = 1024;

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
    #[error("{path}: {location}: invalid pattern ({problem}); fix or remove it")]
    Pattern {
        /// The file.
        path: PathBuf,
        /// Where in the file: `line 3`, `exclude entry 2`.
        location: String,
        /// What is wrong (the pattern itself is not quoted).
        problem: String,
    },
    /// `project.toml` or `.kilnignore` is not a regular file of at most
    /// `MAX_METADATA` bytes in the source tree (a symbolic link, a FIFO, a device, too
    /// large, not UTF-8).
    #[error(
        "{error}; {} in a source tree must be a regular file of at most {MAX_METADATA} bytes, or absent",
        file_name(.error)
    )]
    Steering {
        /// Why it could not be read (names the file; shown in the message, not as a source,
        /// so that it is not printed twice).
        error: ReadError,
    },
    /// The source tree is deeper than `MAX_SOURCE_DEPTH`.
    #[error(
        "the source tree is more than {MAX_SOURCE_DEPTH} directories deep under {top}; kiln's limit is {MAX_SOURCE_DEPTH} levels (list the directory in {IGNORE_FILE} or flatten it)"
    )]
    TooDeep {
        /// The top-level directory of the source that holds the deep path.
        top: PathBuf,
    },
}

fn file_name(error: &ReadError) -> String {
    let path = match error {
        ReadError::Io { path, .. }
        | ReadError::Symlink { path }
        | ReadError::NotAFile { path, .. }
        | ReadError::TooLarge { path, .. }
        | ReadError::NotUtf8 { path } => path,
    };
    path.file_name()
        .map_or_else(|| "it".to_string(), |n| n.to_string_lossy().into_owned())
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

/// The stat fingerprint (`crate::fingerprint`) of what [`copy_source`] would copy, and of
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
    for steering in [PROJECT_FILE, IGNORE_FILE] {
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
    // The walk follows no link, so the directory at `rel` is `canonical(source)/rel`: a
    // directory to skip is found by its path relative to the source, computed once, instead
    // of canonicalizing every directory (which costs one `readlink` per path component and
    // made deep trees quadratic).
    let skip: Vec<PathBuf> = match fs::canonicalize(source) {
        Ok(root) => skip
            .iter()
            .filter_map(|p| fs::canonicalize(p).ok())
            .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
            .filter(|rel| !rel.as_os_str().is_empty())
            .collect(),
        Err(source_err) => {
            return Err(AppError::Read {
                path: source.to_path_buf(),
                source: source_err,
            });
        }
    };
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
        let Ok(rel) = entry.path().strip_prefix(source) else {
            continue;
        };
        let is_dir = entry.file_type().is_dir();
        if is_dir && skip.iter().any(|s| s == rel) {
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
        if is_dir && entry.depth() > MAX_SOURCE_DEPTH {
            return Err(AppError::TooDeep {
                top: rel
                    .components()
                    .next()
                    .map_or_else(|| source.to_path_buf(), |top| source.join(top.as_os_str())),
            });
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

/// Reads a file that steers the copy (`project.toml`, `.kilnignore`): a regular file of at
/// most [`MAX_METADATA`] bytes, not through a link. `None` if there is none.
fn read_steering(path: &Path) -> Result<Option<String>, AppError> {
    match untrusted::read_text(path, MAX_METADATA, Links::Refuse) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(ReadError::Io { path, source }) => Err(AppError::Read { path, source }),
        Err(error) => Err(AppError::Steering { error }),
    }
}

/// The problem of an invalid gitignore pattern, without the pattern itself.
fn pattern_problem(error: &ignore::Error) -> String {
    match error {
        ignore::Error::WithLineNumber { err, .. }
        | ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. } => pattern_problem(err),
        ignore::Error::Glob { err, .. } => err.clone(),
        _ => "it cannot be parsed".to_string(),
    }
}

fn read_ignore_file(source: &Path) -> Result<Option<Gitignore>, AppError> {
    let path = source.join(IGNORE_FILE);
    let Some(text) = read_steering(&path)? else {
        return Ok(None);
    };
    let mut builder = GitignoreBuilder::new(source);
    // Like git (and `GitignoreBuilder::add`), a leading byte-order mark is not a pattern.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (index, line) in text.lines().enumerate() {
        builder
            .add_line(Some(path.clone()), line)
            .map_err(|e| AppError::Pattern {
                path: path.clone(),
                location: format!("line {}", index + 1),
                problem: pattern_problem(&e),
            })?;
    }
    builder.build().map(Some).map_err(|e| AppError::Pattern {
        path: path.clone(),
        location: "a line".to_string(),
        problem: pattern_problem(&e),
    })
}

fn read_project_toml(
    source: &Path,
) -> Result<(Option<Selection>, BTreeMap<String, String>), AppError> {
    let path = source.join(PROJECT_FILE);
    let Some(text) = read_steering(&path)? else {
        return Ok((None, BTreeMap::new()));
    };
    let invalid = |problem: String| AppError::ProjectDescriptor {
        path: path.clone(),
        problem,
    };
    let parsed: ProjectToml =
        toml::from_str(&text).map_err(|e| invalid(untrusted::toml_problem(&text, &e)))?;
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
    let build = |key: &str, patterns: &[String]| -> Result<Gitignore, AppError> {
        let mut builder = GitignoreBuilder::new(source);
        for (index, pattern) in patterns.iter().enumerate() {
            builder
                .add_line(None, pattern)
                .map_err(|e| AppError::Pattern {
                    path: path.clone(),
                    location: format!("{key} entry {}", index + 1),
                    problem: pattern_problem(&e),
                })?;
        }
        builder.build().map_err(|e| AppError::Pattern {
            path: path.clone(),
            location: key.to_string(),
            problem: pattern_problem(&e),
        })
    };
    let selection = match (table.include, table.exclude) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "include and exclude cannot both be set; keep one of them".to_string(),
            ));
        }
        (Some(include), None) => Some(Selection::Include(build("include", &include)?)),
        (None, Some(exclude)) => Some(Selection::Exclude(build("exclude", &exclude)?)),
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

    fn copy_err(src: &Path) -> AppError {
        let out = tempfile::tempdir().unwrap();
        copy_source(src, &out.path().join("ws"), &[]).unwrap_err()
    }

    #[test]
    fn linked_steering_files_are_refused_unread() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, "password = \"hunter2\"\n[x\n").unwrap();
        for name in [PROJECT_FILE, IGNORE_FILE] {
            let src = tree(&["a.txt"]);
            std::os::unix::fs::symlink(&secret, src.path().join(name)).unwrap();
            let err = copy_err(src.path());
            let text = format!("{:#}", anyhow::Error::from(err));
            assert!(text.contains(name), "{text}");
            assert!(text.contains("symbolic link"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(fingerprint_source(src.path(), &[]).is_err());
        }
    }

    #[test]
    fn fifo_and_huge_steering_files_are_refused_at_once() {
        let src = tree(&["a.txt"]);
        nix::unistd::mkfifo(
            &src.path().join(PROJECT_FILE),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let err = copy_err(src.path()).to_string();
        assert!(err.contains("FIFO"), "{err}");

        let src = tree(&["a.txt"]);
        let huge = "#".repeat(usize::try_from(MAX_METADATA).unwrap() + 1);
        fs::write(src.path().join(IGNORE_FILE), huge).unwrap();
        let err = copy_err(src.path()).to_string();
        assert!(err.contains("larger than"), "{err}");
    }

    #[test]
    fn toml_errors_give_the_line_not_the_text() {
        let src = tree(&["a.txt"]);
        fs::write(
            src.path().join(PROJECT_FILE),
            "[build]\nexclude = [\"x\"]\nKILN_REGISTRY_AUTH=secret-user:secret-pass\n",
        )
        .unwrap();
        let err = copy_err(src.path()).to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn invalid_ignore_patterns_name_the_line_not_the_pattern() {
        let src = tree(&["a.txt"]);
        fs::write(src.path().join(IGNORE_FILE), "*.log\nsecret[z-a]\n").unwrap();
        let err = copy_err(src.path()).to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn names_that_are_not_utf8_are_copied_as_they_are() {
        use std::os::unix::ffi::OsStrExt as _;
        let src = tree(&[]);
        for name in [&b"caf\xe9"[..], b"caf\xff"] {
            fs::write(src.path().join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let app = copy_source(src.path(), &out.path().join("ws"), &[]).unwrap();
        assert_eq!(app.files, 2);
        for name in [&b"caf\xe9"[..], b"caf\xff"] {
            let copy = out
                .path()
                .join("ws")
                .join(std::ffi::OsStr::from_bytes(name));
            assert_eq!(fs::read(copy).unwrap(), name);
        }
    }

    #[test]
    fn trees_deeper_than_the_limit_fail_at_the_limit() {
        let src = tree(&["a.txt"]);
        let mut deep = src.path().join("top");
        for _ in 0..MAX_SOURCE_DEPTH {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("ws");
        let err = copy_source(src.path(), &dest, &[]).unwrap_err();
        assert!(matches!(err, AppError::TooDeep { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("1024") && text.contains("top"), "{text}");

        // One level less is fine.
        let src = tree(&[]);
        let mut deep = src.path().join("top");
        for _ in 1..MAX_SOURCE_DEPTH {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), "deep").unwrap();
        let out = tempfile::tempdir().unwrap();
        assert_eq!(
            copy_source(src.path(), &out.path().join("ws"), &[])
                .unwrap()
                .files,
            1
        );
    }

    #[test]
    fn skipped_directories_are_found_through_a_linked_source() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir_all(real.join(".kiln/store")).unwrap();
        fs::write(real.join(".kiln/store/blob"), "x").unwrap();
        fs::write(real.join("app.py"), "y").unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("ws");
        copy_source(&link, &dest, &[real.join(".kiln")]).unwrap();
        assert!(dest.join("app.py").is_file());
        assert!(!dest.join(".kiln").exists());
    }

    #[test]
    fn missing_source_is_an_error() {
        let out = tempfile::tempdir().unwrap();
        let err = copy_source(Path::new("/no/such/dir"), &out.path().join("ws"), &[]).unwrap_err();
        assert!(matches!(err, AppError::MissingSource { .. }));
    }
}
