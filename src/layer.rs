//! Writing a directory tree as a reproducible, compressed layer blob.
//!
//! The writer stack is tar → SHA-256 (`diff_id`) → gzip → SHA-256 (blob digest) → temporary
//! file → rename into `blobs/sha256/`: the layer streams through in one pass and memory stays
//! flat whatever its size. Entries are written in a fixed order (parents first, siblings
//! sorted by name) with the normalisations of [`crate::reproducible`]: fixed mtime, given
//! uid/gid, no user or group names, normalised modes. Hard links inside the layer are kept
//! as hard links; sockets, FIFOs and devices are left out.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use crate::image::digest::HashingWriter;
use crate::image::layout::{LayoutError, OciLayout};
use crate::reproducible::{EntryKind, LayerCompressor, NORMALIZED_MTIME, normalize_mode};

/// Errors writing a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A file of the layer could not be read.
    #[error("failed to read {path} while writing a layer")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The layer blob could not be written.
    #[error("failed to write a layer blob")]
    Write(#[source] io::Error),
    /// The layout refused the blob.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// What goes into one layer.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// Directories added before the content, with trailing `/` (e.g. `layers/`,
    /// `layers/kiln_python/`).
    pub parents: Vec<String>,
    /// The host directory whose tree is added.
    pub source: PathBuf,
    /// Where it goes in the image, relative to `/`, without trailing `/` (`workspace`);
    /// empty to write the tree at the image root (a base image's file system).
    pub target: String,
    /// Whether to add `target` itself and everything under it (`None`), or only the listed
    /// paths relative to `source` (with their parents).
    pub only: Option<Vec<PathBuf>>,
    /// Owner of every entry.
    pub uid: u64,
    /// Group of every entry.
    pub gid: u64,
    /// Exact mode and ownership for entries (keyed by their path in the layer, without
    /// trailing `/`), overriding the normalisation above. Stacks use it to keep the modes
    /// and owners Debian packages declare, whatever the staging files look like.
    pub entry_metadata: Option<std::sync::Arc<BTreeMap<String, EntryMetadata>>>,
}

/// Mode and ownership of one layer entry (see [`LayerSpec::entry_metadata`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMetadata {
    /// Permission bits, including set-id and sticky bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
}

/// A written layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// SHA-256 of the uncompressed tar.
    pub diff_id: Digest,
    /// SHA-256 of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Whether the blob already existed in the layout.
    pub existed: bool,
}

/// The stat fingerprint (`crate::fingerprint`) of everything that decides `spec`'s layer:
/// its settings and its source tree's metadata. Equal fingerprints mean equal layers, so the
/// layer's `diff_id` is known without reading a file.
pub fn spec_fingerprint(spec: &LayerSpec) -> io::Result<String> {
    spec_fingerprint_with(spec, None)
}

/// [`spec_fingerprint`] with `tree` standing for the source tree's fingerprint (the app
/// source's, when the build left its copy untouched).
pub fn spec_fingerprint_with(spec: &LayerSpec, tree: Option<&str>) -> io::Result<String> {
    let mut fingerprint = crate::fingerprint::Fingerprinter::new();
    fingerprint.add_str("parents", &spec.parents.join("\n"));
    fingerprint.add_str("target", &spec.target);
    fingerprint.add_str("only", &format!("{:?}", spec.only));
    fingerprint.add_str("owner", &format!("{}:{}", spec.uid, spec.gid));
    fingerprint.add_str("entries", &format!("{:?}", spec.entry_metadata));
    match tree {
        Some(tree) => fingerprint.add_str("tree", tree),
        None => fingerprint.add_tree(Path::new(""), &spec.source)?,
    }
    Ok(fingerprint.finish())
}

/// Writes `spec` as a gzip-compressed layer blob into `layout`.
pub fn write_layer(layout: &OciLayout, spec: &LayerSpec) -> Result<LayerBlob, LayerError> {
    let blob = layout.blob_writer()?;
    let gz = LayerCompressor::new(blob);
    let mut tar = tar::Builder::new(HashingWriter::new(gz));
    tar.follow_symlinks(false);
    append_entries(&mut tar, spec)?;
    let hashing = tar.into_inner().map_err(LayerError::Write)?;
    let (gz, diff_id, uncompressed_size) = hashing.finish();
    let blob = gz.finish().map_err(LayerError::Write)?;
    let (digest, size, existed) = blob.finish_reporting()?;
    Ok(LayerBlob {
        diff_id,
        digest,
        size,
        uncompressed_size,
        existed,
    })
}

/// Computes the `diff_id` `spec` would have, without writing anything.
pub fn diff_id_of(spec: &LayerSpec) -> Result<Digest, LayerError> {
    let mut tar = tar::Builder::new(HashingWriter::new(io::sink()));
    tar.follow_symlinks(false);
    append_entries(&mut tar, spec)?;
    let hashing = tar.into_inner().map_err(LayerError::Write)?;
    Ok(hashing.finish().1)
}

fn append_entries<W: Write>(tar: &mut tar::Builder<W>, spec: &LayerSpec) -> Result<(), LayerError> {
    for parent in &spec.parents {
        append_dir(tar, Path::new(parent), spec)?;
    }
    let entries = collect(spec)?;
    let mut links: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    for (rel, meta) in entries {
        // The entry's name, byte for byte: a file name that is not UTF-8 is written as it is
        // (the tar crate adds a GNU long-name entry when it does not fit the header), never
        // converted lossily, so two names differing only in invalid bytes stay two files.
        // For UTF-8 names the bytes are exactly those of the `String` kiln always wrote.
        let name: PathBuf = match (rel.as_os_str().is_empty(), spec.target.is_empty()) {
            // An empty target writes the tree at the image root, which has no entry itself.
            (true, true) => continue,
            (true, false) => PathBuf::from(&spec.target),
            (false, true) => rel.clone(),
            (false, false) => {
                let mut bytes = Vec::with_capacity(spec.target.len() + 1 + rel.as_os_str().len());
                bytes.extend_from_slice(spec.target.as_bytes());
                bytes.push(b'/');
                bytes.extend_from_slice(rel.as_os_str().as_bytes());
                PathBuf::from(OsString::from_vec(bytes))
            }
        };
        let path = spec.source.join(&rel);
        let read_err = |source| LayerError::Read {
            path: path.clone(),
            source,
        };
        let file_type = meta.file_type();
        if file_type.is_dir() {
            let mut dir = name.into_os_string();
            dir.push("/");
            append_dir(tar, Path::new(&dir), spec)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(read_err)?;
            let mut header = header(EntryKind::Symlink, 0, spec, &name);
            tar.append_link(&mut header, &name, &target)
                .map_err(LayerError::Write)?;
        } else if file_type.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = links.get(&key) {
                    let mut header = header(EntryKind::File, 0, spec, &name);
                    header.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut header, &name, first)
                        .map_err(LayerError::Write)?;
                    continue;
                }
                links.insert(key, name.clone());
            }
            let mut header = header(EntryKind::File, meta.mode(), spec, &name);
            header.set_size(meta.len());
            let file = File::open(&path).map_err(read_err)?;
            let mut reader = ExactReader {
                inner: BufReader::with_capacity(256 * 1024, file).take(meta.len()),
                remaining: meta.len(),
            };
            tar.append_data(&mut header, &name, &mut reader)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => LayerError::Read {
                        path: path.clone(),
                        source: e,
                    },
                    _ => LayerError::Write(e),
                })?;
        }
    }
    Ok(())
}

/// Lists the entries of the layer, parents before children, siblings by name.
fn collect(spec: &LayerSpec) -> Result<Vec<(PathBuf, fs::Metadata)>, LayerError> {
    let meta = |p: &Path| {
        fs::symlink_metadata(p).map_err(|source| LayerError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let mut out = Vec::new();
    match &spec.only {
        None => {
            for entry in walkdir::WalkDir::new(&spec.source)
                .follow_links(false)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| LayerError::Read {
                    path: e.path().unwrap_or(&spec.source).to_path_buf(),
                    source: e
                        .into_io_error()
                        .unwrap_or_else(|| io::Error::other("file system loop")),
                })?;
                let rel = entry
                    .path()
                    .strip_prefix(&spec.source)
                    .expect("walkdir yields paths under its root")
                    .to_path_buf();
                out.push((rel, meta(entry.path())?));
            }
        }
        Some(paths) => {
            // The listed paths and all their parents, each once, in tree order.
            let mut wanted: BTreeMap<Vec<Vec<u8>>, PathBuf> = BTreeMap::new();
            for path in paths {
                let mut acc = PathBuf::new();
                wanted.insert(Vec::new(), PathBuf::new());
                for component in path.components() {
                    acc.push(component);
                    wanted.insert(tree_key(&acc), acc.clone());
                }
            }
            for rel in wanted.into_values() {
                out.push((rel.clone(), meta(&spec.source.join(&rel))?));
            }
        }
    }
    Ok(out)
}

/// A sort key that orders paths the way a sorted directory walk visits them.
fn tree_key(path: &Path) -> Vec<Vec<u8>> {
    path.components()
        .map(|c| c.as_os_str().as_bytes().to_vec())
        .collect()
}

fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &Path,
    spec: &LayerSpec,
) -> Result<(), LayerError> {
    let mut header = header(EntryKind::Directory, 0, spec, name);
    tar.append_data(&mut header, name, io::empty())
        .map_err(LayerError::Write)
}

fn header(kind: EntryKind, mode: u32, spec: &LayerSpec, name: &Path) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(match kind {
        EntryKind::Directory => tar::EntryType::Directory,
        EntryKind::File => tar::EntryType::Regular,
        EntryKind::Symlink => tar::EntryType::Symlink,
    });
    // Entry metadata is keyed by UTF-8 names (Debian packages'); other names have none.
    let exact = spec
        .entry_metadata
        .as_ref()
        .zip(name.to_str())
        .and_then(|(m, name)| m.get(name.trim_end_matches('/')));
    let (mode, uid, gid) = exact.map_or((normalize_mode(mode, kind), spec.uid, spec.gid), |meta| {
        (meta.mode & 0o7777, meta.uid, meta.gid)
    });
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mtime(NORMALIZED_MTIME);
    header.set_size(0);
    header
}

/// Reads exactly `remaining` bytes, failing if the file shrank while being read.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file changed size while it was being read",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The layer of buildpack layer `name` (contents in `dir`) at
/// `/layers/<escaped buildpack id>/<name>`, owned by `uid:gid`. Launch layers and cached
/// layers are written the same way, so a layer that is both is one blob.
pub fn buildpack_layer_spec(
    escaped_id: &str,
    name: &str,
    dir: &Path,
    uid: u64,
    gid: u64,
) -> LayerSpec {
    let root = &crate::buildenv::LAYERS_DIR[1..];
    LayerSpec {
        parents: vec![format!("{root}/"), format!("{root}/{escaped_id}/")],
        source: dir.to_path_buf(),
        target: format!("{root}/{escaped_id}/{name}"),
        only: None,
        uid,
        gid,
        entry_metadata: None,
    }
}

/// A layer an image build wrote, as reports and build records show it
/// ([`crate::lifecycle::BuildReport`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// What it holds.
    pub name: String,
    /// `diff_id`.
    pub diff_id: Digest,
    /// Blob digest.
    pub digest: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    /// Whether the blob was already in the store.
    pub reused: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn spec(src: &Path) -> LayerSpec {
        LayerSpec {
            parents: vec!["layers/".into(), "layers/bp/".into()],
            source: src.to_path_buf(),
            target: "layers/bp/l".into(),
            only: None,
            uid: 1000,
            gid: 1000,
            entry_metadata: None,
        }
    }

    fn entries(layout: &OciLayout, blob: &LayerBlob) -> Vec<(String, u32, u64, u64, u64)> {
        let file = layout.open_blob(&blob.digest).unwrap();
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn layer_is_normalized_and_ordered() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("bin")).unwrap();
        fs::write(src.path().join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            src.path().join("bin/tool"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        fs::write(src.path().join("a.txt"), "hello").unwrap();
        fs::set_permissions(src.path().join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("a.txt", src.path().join("link")).unwrap();
        fs::hard_link(src.path().join("a.txt"), src.path().join("z-hard")).unwrap();

        let out = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(out.path()).unwrap();
        let blob = write_layer(&layout, &spec(src.path())).unwrap();
        let names: Vec<_> = entries(&layout, &blob)
            .into_iter()
            .map(|(n, mode, uid, mtime, _)| {
                assert_eq!(uid, 1000);
                assert_eq!(mtime, NORMALIZED_MTIME);
                (n, mode)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("layers/".to_string(), 0o755),
                ("layers/bp/".to_string(), 0o755),
                ("layers/bp/l/".to_string(), 0o755),
                ("layers/bp/l/a.txt".to_string(), 0o644),
                ("layers/bp/l/bin/".to_string(), 0o755),
                ("layers/bp/l/bin/tool".to_string(), 0o755),
                ("layers/bp/l/link".to_string(), 0o777),
                ("layers/bp/l/z-hard".to_string(), 0o644),
            ]
        );
        assert_eq!(diff_id_of(&spec(src.path())).unwrap(), blob.diff_id);
        assert!(layout.verify().unwrap().is_ok());
    }

    #[test]
    fn same_content_same_digests_whatever_the_mtime_and_mode() {
        let make = |mode: u32, mtime_offset: u64| {
            let src = tempfile::tempdir().unwrap();
            fs::write(src.path().join("f"), "data").unwrap();
            fs::set_permissions(src.path().join("f"), fs::Permissions::from_mode(mode)).unwrap();
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + mtime_offset);
            File::options()
                .write(true)
                .open(src.path().join("f"))
                .unwrap()
                .set_modified(t)
                .unwrap();
            let out = tempfile::tempdir().unwrap();
            let layout = OciLayout::ensure(out.path()).unwrap();
            write_layer(&layout, &spec(src.path())).unwrap()
        };
        let a = make(0o600, 0);
        let b = make(0o664, 99_999);
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!(a.digest, b.digest);
    }

    #[test]
    fn entry_metadata_overrides_normalization() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("tmp")).unwrap();
        fs::write(src.path().join("su"), "x").unwrap();
        fs::write(src.path().join("plain"), "y").unwrap();
        let mut s = spec(src.path());
        s.parents = vec![];
        s.target = String::new();
        s.entry_metadata = Some(std::sync::Arc::new(BTreeMap::from([
            (
                "tmp".to_string(),
                EntryMetadata {
                    mode: 0o1777,
                    uid: 0,
                    gid: 0,
                },
            ),
            (
                "su".to_string(),
                EntryMetadata {
                    mode: 0o4755,
                    uid: 0,
                    gid: 0,
                },
            ),
        ])));
        let out = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(out.path()).unwrap();
        let blob = write_layer(&layout, &s).unwrap();
        let got: Vec<_> = entries(&layout, &blob)
            .into_iter()
            .map(|(n, mode, uid, _, _)| (n, mode, uid))
            .collect();
        assert_eq!(
            got,
            [
                ("plain".to_string(), 0o644, 1000),
                ("su".to_string(), 0o4755, 0),
                ("tmp/".to_string(), 0o1777, 0),
            ]
        );
        assert!(blob.uncompressed_size >= 4 * 512);
    }

    #[test]
    fn names_that_are_not_utf8_are_written_byte_for_byte() {
        use std::os::unix::ffi::OsStrExt as _;
        let src = tempfile::tempdir().unwrap();
        // Two names that differ only in invalid UTF-8 bytes (both display as "caf\u{fffd}").
        let a = std::ffi::OsStr::from_bytes(b"caf\xe9");
        let b = std::ffi::OsStr::from_bytes(b"caf\xff");
        fs::write(src.path().join(a), "latin-1").unwrap();
        fs::write(src.path().join(b), "other").unwrap();
        // A long non-UTF-8 name needs a GNU long-name entry.
        let mut long = vec![b'd'; 120];
        long.push(0xfe);
        fs::create_dir(src.path().join(std::ffi::OsStr::from_bytes(&long))).unwrap();
        let out = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(out.path()).unwrap();
        let blob = write_layer(&layout, &spec(src.path())).unwrap();
        let file = layout.open_blob(&blob.digest).unwrap();
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
        let names: Vec<Vec<u8>> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        let mut long_entry = b"layers/bp/l/".to_vec();
        long_entry.extend_from_slice(&long);
        long_entry.push(b'/');
        assert!(
            names.contains(&b"layers/bp/l/caf\xe9".to_vec()),
            "{names:?}"
        );
        assert!(
            names.contains(&b"layers/bp/l/caf\xff".to_vec()),
            "{names:?}"
        );
        assert!(names.contains(&long_entry), "{names:?}");
        assert_eq!(names.len(), 3 + 3);
    }

    #[test]
    fn utf8_layers_keep_their_digest() {
        // Pins the bytes of an ordinary layer: writing names as bytes must not change them.
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("bin")).unwrap();
        fs::write(src.path().join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::write(src.path().join("caf\u{e9}.txt"), "hello").unwrap();
        fs::write(src.path().join("x".repeat(150)), "long name").unwrap();
        std::os::unix::fs::symlink("bin/tool", src.path().join("link")).unwrap();
        let digest = diff_id_of(&spec(src.path())).unwrap();
        assert_eq!(digest.to_string(), UTF8_LAYER_DIFF_ID);
    }

    // Computed by the code that wrote names as `String`s, before names were written as bytes.
    const UTF8_LAYER_DIFF_ID: &str =
        "sha256:0ae32eb32e3369cc564df7ceea87541ea9cd0d5a8c0880bb3dcf3a27a090c692";

    #[test]
    fn only_lists_paths_with_parents() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("static/css")).unwrap();
        fs::write(src.path().join("static/css/a.css"), "x").unwrap();
        fs::write(src.path().join("app.py"), "y").unwrap();
        let mut s = spec(src.path());
        s.parents = vec![];
        s.target = "workspace".into();
        s.only = Some(vec![PathBuf::from("static/css/a.css")]);
        let out = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(out.path()).unwrap();
        let blob = write_layer(&layout, &s).unwrap();
        let names: Vec<_> = entries(&layout, &blob).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "workspace/",
                "workspace/static/",
                "workspace/static/css/",
                "workspace/static/css/a.css"
            ]
        );
    }
}
