//! Build images unpacked as root file systems (hermetic builds run buildpacks with one as
//! their root): one directory per image manifest, `$KILN_HOME/cache/rootfs/<hex>`, unpacked
//! once (verified, nothing outside it touched; see `image::unpack`) into a temporary
//! directory and renamed into place, so a killed unpack leaves nothing half-made in use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::image::LoadedImage;
use crate::image::unpack::{UnpackError, unpack};
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
    unpack(image, temp.path()).map_err(|source| RootfsError::Unpack {
        reference: image.reference.to_string(),
        source,
    })?;
    add_mount_targets(temp.path())
        .map_err(|(path, source)| RootfsError::Prepare { path, source })?;
    let unpacked = temp.keep();
    match fs::rename(&unpacked, &target) {
        Ok(()) => Ok(target),
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
