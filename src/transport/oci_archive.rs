//! `oci-archive:` files: a tar of an OCI image layout.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};

use crate::image::ImageError;
use crate::image::layout::{
    LayoutError, OciLayout, REF_NAME_ANNOTATION, empty_index, open_regular,
};
use crate::reproducible::{NORMALIZED_MTIME, canonical_json};
use crate::untrusted::{MAX_DOCUMENT, read_limited};

/// Reads an OCI archive, importing (and verifying) each blob into `into`, and returns the
/// archive's `index.json`.
pub(super) fn import(path: &Path, into: &OciLayout) -> Result<ImageIndex, ImageError> {
    import_listing(path, into).map(|(index, _)| index)
}

/// [`import`], also returning the digests of the archive's blobs small enough to be
/// manifests (at most [`MAX_DOCUMENT`] bytes).
pub(super) fn import_listing(
    path: &Path,
    into: &OciLayout,
) -> Result<(ImageIndex, Vec<Digest>), ImageError> {
    let mut small = Vec::new();
    let archive_err = |source| ImageError::Archive {
        path: path.to_path_buf(),
        source,
    };
    let file = open_regular(path).map_err(|e| match e {
        LayoutError::Read { source, .. } => archive_err(source),
        other => ImageError::Layout {
            reference: format!("oci-archive:{}", path.display()),
            source: other,
        },
    })?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut index_bytes = None;
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let entry_path = entry.path().map_err(archive_err)?.into_owned();
        let name = entry_path
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if name == "index.json" {
            index_bytes = Some(
                read_limited(&mut entry, MAX_DOCUMENT, "the archive's index.json")
                    .map_err(archive_err)?,
            );
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            if hex.is_empty() || !entry.header().entry_type().is_file() {
                continue;
            }
            let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() else {
                continue;
            };
            if entry.size() <= MAX_DOCUMENT {
                small.push(digest.clone());
            }
            if into.has_blob(&digest) {
                continue;
            }
            into.import_blob(&mut entry, &digest, None, path)
                .map_err(|source| ImageError::Layout {
                    reference: format!("oci-archive:{}", path.display()),
                    source,
                })?;
        }
    }
    let bytes = index_bytes.ok_or_else(|| {
        archive_err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the archive has no index.json; it is not an OCI archive",
        ))
    })?;
    let index = ImageIndex::from_reader(&bytes[..]).map_err(|source| ImageError::Parse {
        reference: format!("oci-archive:{}", path.display()),
        what: "image index",
        source,
    })?;
    Ok((index, small))
}

/// Writes the image `manifest` (whose blobs are all in `from`) as an OCI archive at `path`,
/// naming it `name`, with the blobs of the artifacts attached to it (`referrers`). The
/// archive's `index.json` lists the image alone: `podman load` (containers/image) refuses
/// an archive whose index has more than one entry ("more than one image in oci"), so the
/// artifacts are found by their `subject` among the archive's manifests
/// ([`crate::image::referrers::referrers_among`]), as cosign leaves them out of the index
/// too. The archive is written to a temporary file and renamed into place.
pub fn write_archive(
    path: &Path,
    from: &OciLayout,
    manifest_descriptor: &Descriptor,
    manifest: &ImageManifest,
    name: &str,
    referrers: &[crate::image::referrers::Referrer],
) -> Result<(), LayoutError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write_err = |source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temp = destination_temp(path, &dir).map_err(write_err)?;
    let mut builder = tar::Builder::new(BufWriter::new(temp));
    builder.mode(tar::HeaderMode::Deterministic);

    let mut index = empty_index();
    let mut named = manifest_descriptor.clone();
    let mut annotations = named.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
    named.set_annotations(Some(annotations));
    index.set_manifests(vec![named]);
    let index_json = canonical_json(&index).map_err(|e| write_err(io::Error::other(e)))?;

    append_bytes(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(write_err)?;
    append_bytes(&mut builder, "index.json", &index_json).map_err(write_err)?;
    append_dir(&mut builder, "blobs/").map_err(write_err)?;
    append_dir(&mut builder, "blobs/sha256/").map_err(write_err)?;

    let referrer_blobs: Vec<Descriptor> = referrers
        .iter()
        .flat_map(crate::image::referrers::Referrer::blobs)
        .collect();
    let mut blobs: Vec<&Descriptor> = manifest.layers().iter().collect();
    blobs.push(manifest.config());
    blobs.push(manifest_descriptor);
    blobs.extend(&referrer_blobs);
    blobs.sort_by(|a, b| a.digest().digest().cmp(b.digest().digest()));
    blobs.dedup_by(|a, b| a.digest() == b.digest());
    for blob in blobs {
        let file = from.open_blob(blob.digest())?;
        append_file(
            &mut builder,
            &format!("blobs/sha256/{}", blob.digest().digest()),
            blob.size(),
            BufReader::new(file),
        )
        .map_err(write_err)?;
    }
    let mut out = builder.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    let temp = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    temp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

/// What temporary files of an archive being written are called: `.<name>.kiln-tmp-<pid>-…`,
/// beside the destination (so the rename that publishes the archive stays in one file system).
fn temp_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".kiln-tmp-");
    prefix
}

/// A temporary file for the archive `path` in `dir`, named after the destination and this
/// process. Temporary files of the same destination left by processes that are gone (a
/// killed push) are removed first.
pub(super) fn destination_temp(path: &Path, dir: &Path) -> io::Result<NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let name = path.file_name().unwrap_or_else(|| OsStr::new("archive"));
    let prefix = temp_prefix(name);
    remove_stale_temps(dir, &prefix);
    let mut own = prefix;
    own.push(format!("{}-", std::process::id()));
    tempfile::Builder::new()
        .prefix(&own)
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// Removes `dir/<prefix><pid>-…` files whose process no longer exists.
fn remove_stale_temps(dir: &Path, prefix: &OsStr) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_bytes().strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        let pid = rest
            .split(|b| *b == b'-')
            .next()
            .and_then(|pid| std::str::from_utf8(pid).ok())
            .and_then(|pid| pid.parse::<i32>().ok())
            .filter(|pid| *pid > 0);
        let Some(pid) = pid else { continue };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A tar header with kiln's fixed time and owner (root), for archives kiln writes.
fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(NORMALIZED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Appends a regular file of `size` bytes read from `data`.
pub(super) fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl io::Read,
) -> io::Result<()> {
    builder.append_data(
        &mut header(tar::EntryType::Regular, size, 0o644),
        name,
        data,
    )
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    append_file(builder, name, bytes.len() as u64, bytes)
}

/// Appends a directory entry.
pub(super) fn append_dir<W: Write>(builder: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    builder.append_data(
        &mut header(tar::EntryType::Directory, 0, 0o755),
        name,
        io::empty(),
    )
}

/// An image in an OCI archive (`oci-archive:FILE[:NAME]`): read by importing its blobs into
/// the store (verified), written as a whole new file renamed over the old one.
#[derive(Debug, Clone)]
pub struct OciArchive {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its `org.opencontainers.image.ref.name`, if given.
    pub name: Option<String>,
    /// The reference it was named by.
    pub reference: crate::image::reference::ImageReference,
}

impl super::context::Transport for OciArchive {
    fn read(
        &self,
        cx: &super::context::Context<'_>,
        platform: &crate::image::TargetPlatform,
    ) -> Result<crate::image::LoadedImage, ImageError> {
        let index = import(&self.path, cx.store.layout())?;
        crate::image::resolve(
            &self.reference,
            cx.store.layout().clone(),
            &index,
            self.name.as_deref(),
            platform,
        )
    }

    fn write(
        &self,
        cx: &super::context::Context<'_>,
        image: super::publish::Publishable<'_>,
    ) -> Result<super::publish::Published, super::publish::PublishError> {
        let referrers =
            crate::image::referrers::referrers_of(cx.store.layout(), image.descriptor.digest())
                .map_err(|source| super::publish::PublishError::Write {
                    destination: self.reference.to_string(),
                    source,
                })?;
        write_archive(
            &self.path,
            cx.store.layout(),
            image.descriptor,
            image.manifest,
            self.name.as_deref().unwrap_or("latest"),
            &referrers,
        )
        .map_err(|source| super::publish::PublishError::Write {
            destination: self.reference.to_string(),
            source,
        })?;
        Ok(super::publish::Published::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("app.tar");
        // A pid that cannot be running: above the kernel's pid_max limit.
        let stale = dir.path().join(".app.tar.kiln-tmp-99999999-abc");
        let alive = dir
            .path()
            .join(format!(".app.tar.kiln-tmp-{}-abc", std::process::id()));
        let other = dir.path().join(".other.tar.kiln-tmp-99999999-abc");
        for file in [&stale, &alive, &other] {
            fs::write(file, "partial").unwrap();
        }
        let temp = destination_temp(&archive, dir.path()).unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!(".app.tar.kiln-tmp-{}-", std::process::id())),
            "{name}"
        );
        assert!(!stale.exists(), "a dead writer's file is removed");
        assert!(alive.exists(), "a running writer's file is kept");
        assert!(other.exists(), "another destination's file is kept");
    }
}
