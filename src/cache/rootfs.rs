//! Build images unpacked as root file systems (hermetic builds run buildpacks with one as
//! their root): one directory per image manifest, `$KILN_HOME/cache/rootfs/<hex>`, unpacked
//! once (verified, nothing outside it touched; see `image::unpack`) into a temporary
//! directory and renamed into place, so a killed unpack leaves nothing half-made in use.
//!
//! A stack's build images share their bottom layers (`build-python` is `build` plus one
//! layer): an image whose layers start with those of one already unpacked starts from a copy
//! of it made of hard links, and only its own layers are unpacked. Each root's layer digests
//! are recorded beside it (`<hex>.layers`). Sharing inodes is safe because roots are only
//! ever bound read-only and unpacking replaces entries (unlink, create) instead of writing
//! into them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::image::LoadedImage;
use crate::image::unpack::{UnpackError, unpack_from};
use crate::store::Store;

/// Files and directories the sandbox mounts over; made empty in every root file system so
/// that the mounts have targets.
const MOUNT_TARGETS: [(&str, bool); 15] = [
    ("dev", true),
    ("proc", true),
    ("tmp", true),
    ("etc", true),
    ("etc/resolv.conf", false),
    ("etc/hosts", false),
    // The CA bundle goes where Debian keeps it, even in an image without one.
    ("etc/ssl", true),
    ("etc/ssl/certs", true),
    ("etc/ssl/certs/ca-certificates.crt", false),
    ("dev/null", false),
    ("dev/zero", false),
    ("dev/full", false),
    ("dev/random", false),
    ("dev/urandom", false),
    ("dev/tty", false),
];

/// Making a root file system failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RootfsError {
    /// The image could not be unpacked.
    #[error("cannot unpack the build image {reference}")]
    Unpack {
        /// The image.
        reference: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// The directory could not be prepared.
    #[error("cannot prepare {path}")]
    Prepare {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The root file system of `image`, unpacked on first use.
pub(crate) fn ensure(store: &Store, image: &LoadedImage) -> Result<PathBuf, RootfsError> {
    let dir = store.state_dirs().rootfs;
    let target = dir.join(image.manifest_descriptor.digest().digest());
    if target.is_dir() {
        // Kept from an earlier kiln, which may have made fewer targets.
        add_mount_targets(&target)
            .map_err(|(path, source)| RootfsError::Prepare { path, source })?;
        return Ok(target);
    }
    let prepare = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError::Prepare { path, source }
    };
    fs::create_dir_all(&dir).map_err(prepare(&dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(&dir)
        .map_err(prepare(&dir))?;
    let layers: Vec<String> = image
        .manifest
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    let mut skip = 0;
    if let Some((base, count)) = best_base(&dir, &layers) {
        if link_copy(&base, temp.path()).is_ok() {
            skip = count;
        } else {
            // A copy that failed (another file system, a limit) leaves a full unpack to do.
            crate::cache::record::remove_tree(temp.path());
            fs::create_dir_all(temp.path()).map_err(prepare(temp.path()))?;
        }
    }
    unpack_from(image, skip, temp.path()).map_err(|source| RootfsError::Unpack {
        reference: image.reference.to_string(),
        source,
    })?;
    add_mount_targets(temp.path())
        .map_err(|(path, source)| RootfsError::Prepare { path, source })?;
    let unpacked = temp.keep();
    match fs::rename(&unpacked, &target) {
        Ok(()) => {
            // Only an optimisation for the next image: a failure costs a full unpack then.
            let record = dir.join(format!(
                "{}.layers",
                image.manifest_descriptor.digest().digest()
            ));
            let staged = record.with_extension("layers.tmp");
            if fs::write(&staged, layers.join("\n")).is_ok() {
                let _ = fs::rename(&staged, &record);
            }
            Ok(target)
        }
        // Another build unpacked the same image meanwhile: use theirs.
        Err(_) if target.is_dir() => {
            crate::cache::record::remove_tree(&unpacked);
            Ok(target)
        }
        Err(source) => Err(RootfsError::Prepare {
            path: target,
            source,
        }),
    }
}

/// The unpacked root whose layers are the longest proper prefix of `layers`, with that
/// prefix's length.
fn best_base(dir: &Path, layers: &[String]) -> Option<(PathBuf, usize)> {
    let mut best: Option<(PathBuf, usize)> = None;
    for entry in fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "layers") {
            continue;
        }
        let root = path.with_extension("");
        let Ok(text) = crate::untrusted::read_text(
            &path,
            crate::untrusted::MAX_METADATA,
            crate::untrusted::Links::Refuse,
        ) else {
            continue;
        };
        let theirs: Vec<&str> = text.lines().collect();
        let count = theirs.len();
        let prefix = count < layers.len() && theirs.iter().zip(layers).all(|(a, b)| *a == b);
        if prefix && root.is_dir() && best.as_ref().is_none_or(|(_, c)| count > *c) {
            best = Some((root, count));
        }
    }
    best
}

/// Copies the tree `from` into the existing, empty directory `to`: directories made anew
/// with the same permissions, files hard-linked, symbolic links recreated (never followed).
fn link_copy(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    // Directories are made writable first and get their own permissions last, once filled.
    let mut modes = Vec::new();
    for entry in walkdir::WalkDir::new(from).follow_links(false).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry.path().strip_prefix(from).map_err(io::Error::other)?;
        let dest = to.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir(&dest)?;
            let mode = entry
                .metadata()
                .map_err(io::Error::other)?
                .permissions()
                .mode();
            modes.push((dest, mode & 0o7777));
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &dest)?;
        } else if kind.is_file() {
            fs::hard_link(entry.path(), &dest)?;
        }
    }
    for (dir, mode) in modes.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// Makes the empty files and directories the sandbox mounts over, where the image has none.
fn add_mount_targets(root: &Path) -> Result<(), (PathBuf, io::Error)> {
    for (rel, is_dir) in MOUNT_TARGETS {
        let path = root.join(rel);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        let made = if is_dir {
            fs::create_dir_all(&path)
        } else {
            fs::write(&path, b"")
        };
        made.map_err(|e| (path, e))?;
    }
    Ok(())
}
