//! Stat fingerprints: a cheap digest of what a directory tree looks like on disk, without
//! reading any file.
//!
//! Each entry contributes its relative path, type, size, permission bits, modification and
//! change times (to the nanosecond), inode and, for a symbolic link, its target — the fields
//! git's index uses to notice a changed file. The change time is what makes this safe with
//! tools that write fixed modification times (npm stamps every file 1985-10-26): any write,
//! `chmod` or rename sets it to now, and nothing in user space can set it back. Two equal
//! fingerprints therefore mean nothing under the tree was touched; a different one only
//! means kiln looks at the contents (hashes them) again.
//!
//! The root's own metadata is left out, so a tree moved as a whole (renamed into another
//! build's directory) keeps its fingerprint.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Accumulates entries into a fingerprint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fingerprinter {
    hasher: Sha256,
}

impl Fingerprinter {
    /// A fingerprint of nothing yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a string input (a name, a setting) to the fingerprint.
    pub(crate) fn add_str(&mut self, label: &str, value: &str) {
        self.field(label.as_bytes());
        self.field(value.as_bytes());
    }

    /// Adds one entry at `rel` (relative to the tree's root) with its metadata; `path` is
    /// where it is on disk (to read a link's target).
    pub(crate) fn add_entry(
        &mut self,
        rel: &Path,
        path: &Path,
        meta: &fs::Metadata,
    ) -> io::Result<()> {
        let file_type = meta.file_type();
        let kind: &[u8] = if file_type.is_dir() {
            b"d"
        } else if file_type.is_symlink() {
            b"l"
        } else if file_type.is_file() {
            b"f"
        } else {
            b"o"
        };
        self.field(rel.as_os_str().as_encoded_bytes());
        self.field(kind);
        for number in [
            meta.size(),
            u64::from(meta.mode()),
            meta.ino(),
            meta.mtime().cast_unsigned(),
            meta.mtime_nsec().cast_unsigned(),
            meta.ctime().cast_unsigned(),
            meta.ctime_nsec().cast_unsigned(),
        ] {
            self.hasher.update(number.to_le_bytes());
        }
        if file_type.is_symlink() {
            self.field(fs::read_link(path)?.as_os_str().as_encoded_bytes());
        }
        Ok(())
    }

    /// Adds every entry under `dir` (not `dir` itself), in file-name order, with its path
    /// relative to `dir` under `prefix`.
    pub(crate) fn add_tree(&mut self, prefix: &Path, dir: &Path) -> io::Result<()> {
        for entry in walkdir::WalkDir::new(dir)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| {
                e.into_io_error()
                    .unwrap_or_else(|| io::Error::other("loop in the file system"))
            })?;
            let rel = entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir yields paths under its root");
            let meta = entry.metadata().map_err(io::Error::other)?;
            self.add_entry(&prefix.join(rel), entry.path(), &meta)?;
        }
        Ok(())
    }

    /// The fingerprint, as 64 hex digits.
    pub(crate) fn finish(self) -> String {
        self.hasher
            .finalize()
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    fn field(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }
}

/// The fingerprint of the tree under `dir` (see the module docs).
pub(crate) fn tree(dir: &Path) -> io::Result<String> {
    let mut fingerprint = Fingerprinter::new();
    fingerprint.add_tree(Path::new(""), dir)?;
    Ok(fingerprint.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn changes_are_noticed_and_moves_of_the_root_are_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/f"), "one").unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
        let first = tree(&dir).unwrap();
        assert_eq!(tree(&dir).unwrap(), first);

        let moved = root.path().join("b");
        fs::rename(&dir, &moved).unwrap();
        assert_eq!(tree(&moved).unwrap(), first, "moving the root keeps it");

        // Same size, modification time put back: the change time still differs.
        let file = moved.join("sub/f");
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&file, "two").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after_write = tree(&moved).unwrap();
        assert_ne!(after_write, first);

        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(tree(&moved).unwrap(), after_write);
        let before_new = tree(&moved).unwrap();
        fs::write(moved.join("new"), "").unwrap();
        assert_ne!(tree(&moved).unwrap(), before_new);
    }
}
