//! Unpacking an image's layers into a directory, as a root file system: the OCI image
//! spec's changeset rules (whiteouts `.wh.NAME`, opaque directories `.wh..wh..opq`, hard
//! links), applied with [`Beneath`] in root mode so that nothing of any layer — absolute
//! links, `..`, a link made by an earlier layer — reaches outside the directory.
//!
//! Unprivileged, kiln cannot create device nodes or change owners: devices and FIFOs are
//! skipped and every file belongs to whoever runs kiln (the build sandbox maps that user to
//! the image's). Modes are kept. The blob digest of every layer and its `diff_id` are checked
//! while it streams; a layer that does not match fails the unpack (the caller discards the
//! directory).

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};

use super::LoadedImage;
use super::digest::HashingReader;
use crate::untrusted::{Beneath, ParentLinks};

/// Unpacking failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UnpackError {
    /// A layer could not be read or written.
    #[error("failed to unpack layer {digest}")]
    Layer {
        /// The layer's blob digest.
        digest: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A layer's content is not what the image says.
    #[error("layer {digest} does not match the image: expected {expected}, found {found}")]
    Mismatch {
        /// The layer's blob digest.
        digest: String,
        /// The digest the image names.
        expected: String,
        /// The digest of what was read.
        found: String,
    },
    /// A layer's media type is not one kiln unpacks.
    #[error("layer {digest} has media type {media_type}, which kiln cannot unpack")]
    MediaType {
        /// The layer's blob digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
}

/// Unpacks the layers of `image` above the first `skip` (all of them with 0) into `dest`,
/// bottom first: an empty directory kiln made, or one that holds those `skip` layers
/// already (a copy of another image's root file system with the same bottom layers).
/// Entries are replaced by unlinking and creating anew, never written through, so `dest` may
/// share its files' inodes (hard links) with that other root.
pub(crate) fn unpack_from(
    image: &LoadedImage,
    skip: usize,
    dest: &Path,
) -> Result<(), UnpackError> {
    let mut root =
        Beneath::open(dest, ParentLinks::InRoot).map_err(|source| UnpackError::Layer {
            digest: String::new(),
            source,
        })?;
    let diff_ids = image.diff_ids();
    for (layer, diff_id) in image.manifest.layers().iter().zip(diff_ids).skip(skip) {
        unpack_layer(image, layer, diff_id, &mut root)?;
    }
    Ok(())
}

fn unpack_layer(
    image: &LoadedImage,
    layer: &Descriptor,
    diff_id: &str,
    root: &mut Beneath,
) -> Result<(), UnpackError> {
    let digest = layer.digest().to_string();
    let io_err = |source| UnpackError::Layer {
        digest: digest.clone(),
        source,
    };
    let file = image
        .layout
        .open_blob(layer.digest())
        .map_err(|e| io_err(io::Error::other(e)))?;
    let mut compressed = HashingReader::new(file);
    let found = {
        let reader: Box<dyn Read + '_> = match layer.media_type() {
            MediaType::ImageLayerGzip => {
                Box::new(flate2::read::MultiGzDecoder::new(&mut compressed))
            }
            MediaType::ImageLayer => Box::new(&mut compressed),
            MediaType::Other(other) if other.ends_with("tar.gzip") || other.ends_with("tar.gz") => {
                Box::new(flate2::read::MultiGzDecoder::new(&mut compressed))
            }
            other => {
                return Err(UnpackError::MediaType {
                    digest,
                    media_type: other.to_string(),
                });
            }
        };
        let mut archive = tar::Archive::new(HashingReader::new(reader));
        apply(&mut archive, root).map_err(io_err)?;
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(io_err)?;
        rest.into_parts().1
    };
    io::copy(&mut compressed, &mut io::sink()).map_err(io_err)?;
    let (_, blob, _) = compressed.into_parts();
    for (expected, found) in [
        (digest.as_str(), blob.to_string()),
        (diff_id, found.to_string()),
    ] {
        if expected != found {
            return Err(UnpackError::Mismatch {
                digest: digest.clone(),
                expected: expected.to_string(),
                found,
            });
        }
    }
    Ok(())
}

/// Applies one layer's entries (see the module docs).
fn apply<R: Read>(archive: &mut tar::Archive<R>, root: &mut Beneath) -> io::Result<()> {
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = clean(&raw) else {
            continue; // the root itself
        };
        let name = rel
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == b".wh..wh..opq" {
            // Opaque: what lower layers put in this directory is gone.
            let dir = if parent.as_os_str().is_empty() {
                None
            } else {
                Some(parent.clone())
            };
            if let Some(dir) = dir {
                root.remove(&dir)?;
                root.create_dir(&dir, 0o755)?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            let target =
                parent.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(hidden));
            root.remove(&target)?;
            continue;
        }
        let mode = entry.header().mode()?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                root.create_dir(&rel, 0o755)?;
                dir_modes.push((rel, mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                root.write_file(&rel, mode, &mut entry)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                root.symlink(&rel, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                if let Some(target) = clean(&target) {
                    root.hard_link(&target, &rel)?;
                }
            }
            // Devices and FIFOs need privileges kiln does not take; extended headers were
            // applied by the reader.
            _ => {}
        }
    }
    for (rel, mode) in dir_modes.into_iter().rev() {
        root.set_mode(&rel, mode)?;
    }
    Ok(())
}

/// An entry path made relative to the root (`./a/b`, `/a/b` and `a/b` alike), `..` and `.`
/// dropped as the root would resolve them; `None` for the root itself.
fn clean(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tar_of(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            match (path.ends_with('/'), link) {
                (true, _) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
                (false, Some(target)) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                (false, None) if path.contains("..") => {
                    // The tar crate refuses to write `..`; a hostile archive has it anyway.
                    h.set_size(data.len() as u64);
                    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                (false, None) => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_apply_whiteouts_and_never_leave_the_root() {
        let work = tempfile::tempdir().unwrap();
        let root_dir = work.path().join("root");
        let outside = work.path().join("outside");
        fs::create_dir_all(&root_dir).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let mut root = Beneath::open(&root_dir, ParentLinks::InRoot).unwrap();
        let lower = tar_of(&[
            ("a/", None, b""),
            ("a/f", None, b"f"),
            ("a/keep", None, b"k"),
            ("b/", None, b""),
            ("b/old", None, b"o"),
        ]);
        apply(&mut tar::Archive::new(&lower[..]), &mut root).unwrap();
        let outside_text = outside.to_str().unwrap().to_string();
        let upper = tar_of(&[
            ("a/.wh.f", None, b""),
            ("b/.wh..wh..opq", None, b""),
            ("b/new", None, b"n"),
            ("evil", Some(outside_text.as_str()), b""),
            ("evil/planted", None, b"x"),
            ("../../escaped", None, b"x"),
        ]);
        apply(&mut tar::Archive::new(&upper[..]), &mut root).unwrap();
        assert!(!root_dir.join("a/f").exists());
        assert!(root_dir.join("a/keep").exists());
        assert!(!root_dir.join("b/old").exists());
        assert!(root_dir.join("b/new").exists());
        // The absolute link resolved inside the root; nothing reached the real directory.
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        let inside = root_dir
            .join(outside_text.trim_start_matches('/'))
            .join("planted");
        assert!(inside.exists());
        assert!(root_dir.join("escaped").exists());
        assert!(!work.path().join("escaped").exists());
    }
}
