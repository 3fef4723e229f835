//! Unpacking a downloaded `.tar.gz` (a standalone CPython build) into a layer, treating every
//! entry as hostile: only entries under one top directory are taken (that directory
//! stripped); absolute paths, `..`, device files and links that lead out of the layer are
//! refused; nothing is ever written through a symbolic link (each parent directory is checked
//! to be a real directory before an entry is created in it); the number of entries and the
//! bytes written are bounded. Modes are normalised (`0755` for executables and directories,
//! `0644` otherwise); owners and times are not kept (kiln's layer archives fix them anyway).
//!
//! kiln's own unpacker for image layers (`untrusted::Beneath` in the kiln crate) cannot be
//! used here: the buildpacks are a dependency of that crate, not the other way round.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use super::{Error, Result};

/// What an archive may hold at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of file contents, all files together.
    pub(crate) bytes: u64,
    /// Entries.
    pub(crate) entries: usize,
}

/// The longest entry path accepted, in bytes (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// Unpacks the gzip-compressed tar `archive` into the directory `dest` (created if missing):
/// the entries under `top/`, without that first component. `what` names the archive in
/// errors (`the standalone CPython cpython-3.12.8+….tar.gz`).
pub(crate) fn unpack_tar_gz(
    archive: &Path,
    top: &str,
    dest: &Path,
    limits: Limits,
    what: &str,
) -> Result<()> {
    let file = fs::File::open(archive)
        .map_err(|e| Error::new(format!("cannot open {}: {e}", archive.display())))?;
    unpack(
        flate2::read::GzDecoder::new(io::BufReader::new(file)),
        top,
        dest,
        limits,
        what,
    )
}

/// [`unpack_tar_gz`] of an uncompressed tar stream.
pub(crate) fn unpack(
    reader: impl io::Read,
    top: &str,
    dest: &Path,
    limits: Limits,
    what: &str,
) -> Result<()> {
    let mut unpacker = Unpacker {
        top,
        dest,
        limits,
        what,
        budget: limits.bytes,
        dirs: Vec::new(),
        links: Vec::new(),
    };
    fs::create_dir_all(dest).map_err(|e| unpacker.io(dest, &e))?;
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| unpacker.bad(format!("cannot read it as a tar archive: {e}")))?;
    for (count, entry) in entries.enumerate() {
        let entry =
            entry.map_err(|e| unpacker.bad(format!("cannot read it as a tar archive: {e}")))?;
        if count >= limits.entries {
            return Err(unpacker.bad(format!("it has more than {} entries", limits.entries)));
        }
        unpacker.entry(entry)?;
    }
    unpacker.finish()
}

/// An unpacking under way.
struct Unpacker<'a> {
    top: &'a str,
    dest: &'a Path,
    limits: Limits,
    what: &'a str,
    /// Bytes still allowed.
    budget: u64,
    /// Directories made, in order.
    dirs: Vec<PathBuf>,
    /// Symbolic links made.
    links: Vec<PathBuf>,
}

impl Unpacker<'_> {
    fn bad(&self, problem: impl std::fmt::Display) -> Error {
        Error::new(format!("{} is not a safe archive: {problem}", self.what))
            .hint("check that the configured source serves the file its name says")
    }

    fn io(&self, path: &Path, e: &io::Error) -> Error {
        Error::new(format!(
            "cannot unpack {} into {}: {e}",
            self.what,
            path.display()
        ))
    }

    /// Creates what one entry describes.
    fn entry(&mut self, mut entry: tar::Entry<'_, impl io::Read>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let entry_bad = |this: &Self, p: String| this.bad(format!("entry `{shown}` {p}"));
        let Some(rel) = inside(&raw, self.top).map_err(|p| entry_bad(self, p))? else {
            return Ok(()); // `top/` itself
        };
        let path = self.dest.join(&rel);
        real_parents(self.dest, &rel).map_err(|p| entry_bad(self, p))?;
        let executable = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
        let link_name = entry
            .link_name_bytes()
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default();
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(entry_bad(self, "replaces a file".to_string())),
                    Err(_) => fs::create_dir(&path).map_err(|e| self.io(&path, &e))?,
                }
                self.dirs.push(path);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().unwrap_or(u64::MAX);
                if size > self.budget {
                    return Err(self.bad(format!(
                        "its files hold more than {} MiB",
                        self.limits.bytes / (1024 * 1024)
                    )));
                }
                replaceable(&path).map_err(|p| entry_bad(self, p))?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if executable { 0o755 } else { 0o644 })
                    .open(&path)
                    .map_err(|e| self.io(&path, &e))?;
                let written = io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| entry_bad(self, format!("cannot be read: {e}")))?;
                out.flush().map_err(|e| self.io(&path, &e))?;
                self.budget -= written;
            }
            tar::EntryType::Symlink => {
                let target = std::str::from_utf8(&link_name)
                    .map(Path::new)
                    .map_err(|_| entry_bad(self, "links to a name that is not UTF-8".into()))?;
                link_stays_inside(&rel, target).map_err(|p| {
                    entry_bad(self, format!("(a link to `{}`) {p}", target.display()))
                })?;
                replaceable(&path).map_err(|p| entry_bad(self, p))?;
                std::os::unix::fs::symlink(target, &path).map_err(|e| self.io(&path, &e))?;
                self.links.push(path);
            }
            tar::EntryType::Link => {
                let shown_target = String::from_utf8_lossy(&link_name).into_owned();
                let hard_bad = |this: &Self, p: &str| {
                    entry_bad(this, format!("(a hard link to `{shown_target}`) {p}"))
                };
                let existing = inside(&link_name, self.top)
                    .map_err(|p| hard_bad(self, &p))?
                    .ok_or_else(|| hard_bad(self, "names the top directory"))?;
                real_parents(self.dest, &existing).map_err(|p| hard_bad(self, &p))?;
                let source = self.dest.join(&existing);
                if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
                    return Err(hard_bad(
                        self,
                        "does not name an earlier file of the archive",
                    ));
                }
                replaceable(&path).map_err(|p| entry_bad(self, p))?;
                fs::hard_link(&source, &path).map_err(|e| self.io(&path, &e))?;
            }
            other => {
                return Err(entry_bad(
                    self,
                    format!("is a {other:?}, not a file, directory or link"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the links and sets the directories' modes.
    fn finish(self) -> Result<()> {
        // A chain of links can lead where no single one does (`a` → `b/..` with `b` a
        // link): every link that resolves must resolve inside.
        let root = fs::canonicalize(self.dest).map_err(|e| self.io(self.dest, &e))?;
        for link in &self.links {
            if let Ok(resolved) = fs::canonicalize(link)
                && !resolved.starts_with(&root)
            {
                return Err(self.bad(format!(
                    "link `{}` leads out of the directory (to {})",
                    link.strip_prefix(self.dest).unwrap_or(link).display(),
                    resolved.display()
                )));
            }
        }
        for dir in self.dirs.iter().rev() {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .map_err(|e| self.io(dir, &e))?;
        }
        Ok(())
    }
}

/// The path of an entry below `top/`, from its raw name: `Ok(None)` for `top` itself, an
/// error for anything absolute, with `..`, or outside `top`.
fn inside(raw: &[u8], top: &str) -> std::result::Result<Option<PathBuf>, String> {
    if raw.len() > MAX_PATH {
        return Err(format!("is longer than {MAX_PATH} bytes"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "is not UTF-8".to_string())?;
    if text.contains('\0') {
        return Err("contains a NUL byte".to_string());
    }
    let mut parts = Vec::new();
    for component in Path::new(text).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains `..`".to_string()),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute".to_string()),
        }
    }
    let Some((first, rest)) = parts.split_first() else {
        return Err("is empty".to_string());
    };
    if *first != top {
        return Err(format!("is not under `{top}/`"));
    }
    Ok((!rest.is_empty()).then(|| rest.iter().collect()))
}

/// Checks that every parent of `rel` under `root` that exists is a real directory (never a
/// link), creating the missing ones: nothing is created through a link.
fn real_parents(root: &Path, rel: &Path) -> std::result::Result<(), String> {
    let mut dir = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for part in parents {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "lies below `{}`, which is not a directory",
                    dir.strip_prefix(root).unwrap_or(&dir).display()
                ));
            }
            Err(_) => fs::create_dir(&dir)
                .map_err(|e| format!("cannot be created ({}: {e})", dir.display()))?,
        }
    }
    Ok(())
}

/// Removes a file or link at `path` that a later entry replaces (tar's rule: the last entry
/// wins); a directory there is an error.
fn replaceable(path: &Path) -> std::result::Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err("replaces a directory of the archive".to_string()),
        Ok(_) => fs::remove_file(path).map_err(|e| format!("cannot replace an earlier one: {e}")),
        Err(_) => Ok(()),
    }
}

/// Checks that a link at `rel` (relative to the root) with `target` points inside the root,
/// read as written: relative, and never above the root.
fn link_stays_inside(rel: &Path, target: &Path) -> std::result::Result<(), String> {
    let mut depth: usize = rel.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "leads out of the directory".to_string())?;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute".to_string());
            }
        }
    }
    if target.as_os_str().is_empty() {
        return Err("is empty".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        bytes: 1 << 20,
        entries: 100,
    };

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    fn archive(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    set_path(&mut h, p);
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
                E::File(p, data, mode) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    set_path(&mut h, p);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                E::Symlink(p, t) | E::Hard(p, t) => {
                    h.set_entry_type(if matches!(e, E::Symlink(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    set_path(&mut h, p);
                    let name = h.as_old_mut().linkname.as_mut();
                    name[..t.len()].copy_from_slice(t.as_bytes());
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Writes the raw name (the builder's own setters refuse `..` and absolute paths).
    fn set_path(h: &mut tar::Header, p: &str) {
        let name = &mut h.as_old_mut().name;
        name[..p.len()].copy_from_slice(p.as_bytes());
    }

    fn unpack_into(entries: &[E]) -> (tempfile::TempDir, Result<()>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("layer");
        let result = unpack(
            &archive(entries)[..],
            "python",
            &dest,
            LIMITS,
            "the test archive",
        );
        (dir, result)
    }

    #[test]
    fn a_python_tree_is_unpacked_without_its_top_directory() {
        let (dir, result) = unpack_into(&[
            E::Dir("python/"),
            E::Dir("python/bin/"),
            E::File("python/bin/python3.12", b"ELF", 0o775),
            E::Symlink("python/bin/python3", "python3.12"),
            E::File("python/lib/python3.12/os.py", b"# os", 0o664),
            E::Hard(
                "python/lib/python3.12/os2.py",
                "python/lib/python3.12/os.py",
            ),
            E::Symlink("python/lib/up", "../bin"),
        ]);
        result.unwrap();
        let layer = dir.path().join("layer");
        assert_eq!(fs::read(layer.join("bin/python3")).unwrap(), b"ELF");
        let mode = |p: &str| fs::metadata(layer.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("bin/python3.12"), 0o755);
        assert_eq!(mode("lib/python3.12/os.py"), 0o644);
        assert_eq!(mode("lib/python3.12"), 0o755);
        assert_eq!(
            fs::read(layer.join("lib/python3.12/os2.py")).unwrap(),
            b"# os"
        );
    }

    #[test]
    fn hostile_entries_are_refused() {
        let cases: Vec<(&str, Vec<E>)> = vec![
            (
                "contains `..`",
                vec![E::File("python/../evil", b"x", 0o644)],
            ),
            ("is absolute", vec![E::File("/etc/evil", b"x", 0o644)]),
            (
                "is not under `python/`",
                vec![E::File("other/x", b"x", 0o644)],
            ),
            (
                "leads out of the directory",
                vec![E::Symlink("python/lib/x", "../../etc")],
            ),
            ("is absolute", vec![E::Symlink("python/x", "/etc/passwd")]),
            (
                "which is not a directory",
                vec![
                    E::Symlink("python/lib", "bin"),
                    E::Dir("python/bin/"),
                    E::File("python/lib/x", b"x", 0o644),
                ],
            ),
            (
                "does not name an earlier file",
                vec![E::Hard("python/x", "python/missing")],
            ),
            (
                "contains `..`",
                vec![E::Hard("python/x", "python/../../etc/passwd")],
            ),
            (
                "leads out of the directory (to",
                vec![
                    E::Dir("python/a/"),
                    E::Dir("python/a/b/"),
                    E::Symlink("python/a/b/up", "../.."),
                    E::Symlink("python/a/chain", "b/up/.."),
                ],
            ),
            (
                "more than 1 MiB",
                vec![E::File("python/big", &[0u8; 2 << 20], 0o644)],
            ),
        ];
        for (expected, entries) in cases {
            let (_dir, result) = unpack_into(&entries);
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("the test archive is not a safe archive") && err.contains(expected),
                "{expected}: {err}"
            );
        }
        let many: Vec<E> = (0..101).map(|_| E::Dir("python/")).collect();
        let (_dir, result) = unpack_into(&many);
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("more than 100 entries")
        );
    }
}
