//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/…`).
//!
//! Every file is published by writing a temporary file in the same directory and renaming it
//! into place, so a process killed at any moment leaves either the old or the new file, never
//! a partial one. Blobs are hashed while they are written and verified when they are read.
//!
//! See the [OCI image layout specification](https://github.com/opencontainers/image-spec/blob/main/image-layout.md).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, Digest, ImageIndex, ImageIndexBuilder, MediaType, SCHEMA_VERSION,
};
use tempfile::NamedTempFile;

use super::digest::{HashingReader, HashingWriter, hex};
use crate::reproducible::canonical_json;
use crate::untrusted::{Links, MAX_DOCUMENT, ReadError, read_file};

/// Annotation naming an image inside a layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// Errors reading or writing an OCI image layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The directory exists but is not an OCI image layout.
    #[error(
        "{path} is not an OCI image layout (no oci-layout file); point at a layout directory or an empty/new one"
    )]
    NotALayout {
        /// The directory.
        path: PathBuf,
    },
    /// A file of the layout could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file of the layout could not be written.
    #[error("failed to write {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A JSON document of the layout is malformed.
    #[error("{path} is not a valid {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have been ("image index", "image manifest", …).
        what: &'static str,
        /// The parse error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A blob's content does not match its digest.
    #[error("blob {expected} in {layout} is corrupt: its content hashes to {found}")]
    DigestMismatch {
        /// The layout.
        layout: PathBuf,
        /// The digest the blob is named by.
        expected: Digest,
        /// The digest of its content.
        found: Digest,
    },
    /// A blob's size does not match its descriptor.
    #[error("blob {digest} in {layout} has {found} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The layout.
        layout: PathBuf,
        /// The blob.
        digest: Digest,
        /// The size from the descriptor.
        expected: u64,
        /// The size on disk.
        found: u64,
    },
    /// A blob referenced by the layout is missing.
    #[error("blob {digest} is missing from {layout}")]
    BlobMissing {
        /// The layout.
        layout: PathBuf,
        /// The blob.
        digest: Digest,
    },
    /// A JSON blob is larger than kiln is willing to read into memory.
    #[error(
        "blob {digest} in {layout} is {size} bytes, too large for a manifest or config (kiln reads at most {MAX_DOCUMENT} bytes)"
    )]
    BlobTooLarge {
        /// The layout.
        layout: PathBuf,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Only sha256 digests are supported.
    #[error("unsupported digest algorithm in {digest}; kiln supports sha256")]
    UnsupportedDigest {
        /// The digest.
        digest: Digest,
    },
    /// A file of the layout is not a regular file of a sensible size (a FIFO, a device, a
    /// huge `index.json`), so kiln refused to read it.
    #[error(transparent)]
    File(#[from] ReadError),
    /// A layer's uncompressed content does not match the `diff_id` the image's
    /// configuration gives it.
    #[error(
        "layer {digest} in {layout} does not match its diff_id: the configuration says {expected}, its uncompressed content hashes to {found}; the image is damaged or forged, rebuild or re-pull it"
    )]
    DiffIdMismatch {
        /// The layout (or archive) holding the layer.
        layout: PathBuf,
        /// The layer blob.
        digest: Digest,
        /// The `diff_id` from the configuration.
        expected: String,
        /// The digest of the layer's uncompressed content.
        found: Digest,
    },
}

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Opens an existing layout. Its `oci-layout` file must be a regular file (read without
    /// blocking and with a size bound: a FIFO or a device there is refused, not waited on).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        match read_file(&root.join(OCI_LAYOUT_FILE), MAX_LAYOUT_FILE, Links::Follow) {
            Ok(_) => Ok(Self { root }),
            Err(e) if e.is_not_found() => Err(LayoutError::NotALayout { path: root }),
            Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotADirectory => {
                Err(LayoutError::NotALayout { path: root })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the layout at `root`, creating it if the directory is missing or empty.
    pub fn ensure(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        if root.join(OCI_LAYOUT_FILE).is_file() {
            return Ok(Self { root });
        }
        let empty = match fs::read_dir(&root) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(source) => return Err(LayoutError::Read { path: root, source }),
        };
        if !empty {
            return Err(LayoutError::NotALayout { path: root });
        }
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|source| LayoutError::Write {
            path: blobs.clone(),
            source,
        })?;
        let layout = Self { root };
        layout.write_index(&empty_index())?;
        write_atomic(
            &layout.root.join(OCI_LAYOUT_FILE),
            OCI_LAYOUT_CONTENT.as_bytes(),
        )?;
        Ok(layout)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(hex(digest))
    }

    /// Whether a blob with this digest is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Starts writing a new blob; its digest is known when it is finished.
    pub fn blob_writer(&self) -> Result<BlobWriter, LayoutError> {
        let dir = self.root.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(|source| LayoutError::Write {
            path: dir.clone(),
            source,
        })?;
        let temp =
            publishable_temp(&dir).map_err(|source| LayoutError::Write { path: dir, source })?;
        Ok(BlobWriter {
            layout: self.clone(),
            inner: HashingWriter::new(BufWriter::with_capacity(256 * 1024, temp)),
        })
    }

    /// Writes `bytes` as a blob and returns its digest and size.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(Digest, u64), LayoutError> {
        let mut writer = self.blob_writer()?;
        writer
            .write_all(bytes)
            .map_err(|source| LayoutError::Write {
                path: self.root.clone(),
                source,
            })?;
        writer.finish()
    }

    /// Copies a blob from `reader` into this layout, verifying that its content hashes to
    /// `expected` (and has `expected_size` bytes, if given) before it becomes visible.
    ///
    /// Returns the number of bytes copied. A blob that is already present is not copied
    /// again.
    pub fn import_blob(
        &self,
        reader: impl Read,
        expected: &Digest,
        expected_size: Option<u64>,
        source_name: &Path,
    ) -> Result<u64, LayoutError> {
        check_algorithm(expected)?;
        let mut writer = self.blob_writer()?;
        let mut reader = reader;
        io::copy(&mut reader, &mut writer).map_err(|source| LayoutError::Read {
            path: source_name.to_path_buf(),
            source,
        })?;
        writer.finish_expecting(expected, expected_size, source_name)
    }

    /// Copies the blob of `descriptor` from `other` into this layout (verifying it), unless
    /// it is already here.
    pub fn copy_blob_from(
        &self,
        other: &OciLayout,
        descriptor: &Descriptor,
    ) -> Result<(), LayoutError> {
        let digest = descriptor.digest();
        if self.has_blob(digest) {
            return Ok(());
        }
        let file = other.open_blob(digest)?;
        self.import_blob(file, digest, Some(descriptor.size()), other.root())?;
        Ok(())
    }

    /// Opens a blob for streaming. The caller verifies what it reads if it must. A blob that
    /// is not a regular file (a FIFO, a device) is refused without blocking.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        check_algorithm(digest)?;
        let path = self.blob_path(digest);
        open_regular(&path).map_err(|e| match e {
            LayoutError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                LayoutError::BlobMissing {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                }
            }
            other => other,
        })
    }

    /// Reads a small blob (manifest, config, index) into memory and verifies its digest.
    /// At most `MAX_DOCUMENT` bytes are read.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let file = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let size = file
            .metadata()
            .map_err(|source| LayoutError::Read {
                path: path.clone(),
                source,
            })?
            .len();
        let too_large = |size| LayoutError::BlobTooLarge {
            layout: self.root.clone(),
            digest: digest.clone(),
            size,
        };
        if size > MAX_DOCUMENT {
            return Err(too_large(size));
        }
        let mut reader = HashingReader::new(file.take(MAX_DOCUMENT + 1));
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| LayoutError::Read { path, source })?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(too_large(bytes.len() as u64));
        }
        let (found, _) = reader.finish();
        if &found != digest {
            return Err(LayoutError::DigestMismatch {
                layout: self.root.clone(),
                expected: digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// The `diff_id` of the layer blob `digest`: the SHA-256 of its uncompressed content.
    /// The blob is streamed through a decompressor (gzip or zstd, told by its first bytes;
    /// anything else is an uncompressed tar whose `diff_id` is its digest) and hashed on the
    /// way, never held in memory; its own digest is checked on the same pass.
    pub fn diff_id(&self, digest: &Digest) -> Result<Digest, LayoutError> {
        let path = self.blob_path(digest);
        let read_err = |source| LayoutError::Read {
            path: path.clone(),
            source,
        };
        let mut compressed =
            io::BufReader::with_capacity(256 * 1024, HashingReader::new(self.open_blob(digest)?));
        let magic = io::BufRead::fill_buf(&mut compressed).map_err(read_err)?;
        let kind = if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let mut uncompressed = HashingWriter::new(io::sink());
        match kind {
            Compression::Gzip => {
                io::copy(
                    &mut flate2::bufread::MultiGzDecoder::new(&mut compressed),
                    &mut uncompressed,
                )
                .map_err(read_err)?;
            }
            Compression::Zstd => {
                let mut decoder =
                    zstd::stream::read::Decoder::with_buffer(&mut compressed).map_err(read_err)?;
                io::copy(&mut decoder, &mut uncompressed).map_err(read_err)?;
            }
            Compression::None => {}
        }
        // Whatever the decompressor left (trailing bytes) still counts for the blob's digest.
        io::copy(&mut compressed, &mut io::sink()).map_err(read_err)?;
        let (found, _) = compressed.into_inner().finish();
        if &found != digest {
            return Err(LayoutError::DigestMismatch {
                layout: self.root.clone(),
                expected: digest.clone(),
                found,
            });
        }
        Ok(match kind {
            Compression::None => found,
            Compression::Gzip | Compression::Zstd => uncompressed.finish().1,
        })
    }

    /// Reads `index.json` (a regular file of at most `MAX_DOCUMENT` bytes, opened without
    /// blocking).
    pub fn read_index(&self) -> Result<ImageIndex, LayoutError> {
        let path = self.root.join("index.json");
        let bytes = read_file(&path, MAX_DOCUMENT, Links::Follow)?;
        ImageIndex::from_reader(&bytes[..]).map_err(|source| LayoutError::Parse {
            path,
            what: "image index",
            source,
        })
    }

    /// Replaces `index.json` atomically.
    pub fn write_index(&self, index: &ImageIndex) -> Result<(), LayoutError> {
        let bytes = canonical_json(index).map_err(|e| LayoutError::Write {
            path: self.root.join("index.json"),
            source: io::Error::other(e),
        })?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Adds `descriptor` to `index.json` under `name`, replacing any image of that name.
    /// Entries are kept sorted by name so the index itself is reproducible.
    pub fn tag(&self, descriptor: &Descriptor, name: &str) -> Result<(), LayoutError> {
        let mut index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        let mut named = descriptor.clone();
        let mut annotations = named.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        named.set_annotations(Some(annotations));
        manifests.push(named);
        // Named images first; untagged entries (referrers) after them, in their order.
        manifests.sort_by_key(|d| (ref_name(d).is_none(), ref_name(d).map(str::to_string)));
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Removes the image called `name` from `index.json`; returns whether it was there.
    /// Its blobs stay until garbage collection.
    pub fn untag(&self, name: &str) -> Result<bool, LayoutError> {
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        let removed = manifests.len() != before;
        if removed {
            index.set_manifests(manifests);
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Re-hashes every blob under `blobs/` and checks that every descriptor reachable from
    /// `index.json` exists with its recorded size (an `fsck`).
    pub fn verify(&self) -> Result<VerifyReport, LayoutError> {
        let mut report = VerifyReport::default();
        let dir = self.root.join("blobs").join("sha256");
        let entries = fs::read_dir(&dir).map_err(|source| LayoutError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut names = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| LayoutError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                report.temporary_files += 1;
                continue;
            }
            names.insert(name);
        }
        for name in names {
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                report.stray_files.push(dir.join(&name));
                continue;
            };
            let path = self.blob_path(&digest);
            let file = match open_regular(&path) {
                Ok(file) => file,
                Err(LayoutError::File(_)) => {
                    report.stray_files.push(path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut reader = HashingReader::new(file);
            io::copy(&mut reader, &mut io::sink())
                .map_err(|source| LayoutError::Read { path, source })?;
            let (found, size) = reader.finish();
            report.blobs += 1;
            report.bytes += size;
            if found != digest {
                report.corrupt.push(LayoutError::DigestMismatch {
                    layout: self.root.clone(),
                    expected: digest,
                    found,
                });
            }
        }
        let index = self.read_index()?;
        let mut pending: Vec<Descriptor> = index.manifests().clone();
        while let Some(descriptor) = pending.pop() {
            let digest = descriptor.digest();
            let path = self.blob_path(digest);
            let Ok(meta) = fs::metadata(&path) else {
                report.corrupt.push(LayoutError::BlobMissing {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                });
                continue;
            };
            if meta.len() != descriptor.size() {
                report.corrupt.push(LayoutError::SizeMismatch {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                    expected: descriptor.size(),
                    found: meta.len(),
                });
                continue;
            }
            match descriptor.media_type() {
                MediaType::ImageIndex => {
                    if let Ok(bytes) = self.read_blob(digest)
                        && let Ok(child) = ImageIndex::from_reader(&bytes[..])
                    {
                        pending.extend(child.manifests().iter().cloned());
                    }
                }
                MediaType::ImageManifest => {
                    if let Ok(bytes) = self.read_blob(digest)
                        && let Ok(manifest) =
                            oci_spec::image::ImageManifest::from_reader(&bytes[..])
                    {
                        pending.push(manifest.config().clone());
                        pending.extend(manifest.layers().iter().cloned());
                    }
                }
                _ => {}
            }
        }
        Ok(report)
    }
}

impl OciLayout {
    /// Removes the blobs [`OciLayout::verify`] found corrupt (content not matching their
    /// digest), so that the next write of that content puts a good copy in place. Returns
    /// how many were removed.
    pub fn repair(&self, report: &VerifyReport) -> Result<usize, LayoutError> {
        let mut removed = 0;
        for problem in &report.corrupt {
            if let LayoutError::DigestMismatch { expected, .. } = problem {
                let path = self.blob_path(expected);
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(LayoutError::Write { path, source }),
                }
            }
        }
        Ok(removed)
    }
}

/// What [`OciLayout::verify`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Number of blobs re-hashed.
    pub blobs: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Temporary files of writes running now or interrupted (harmless).
    pub temporary_files: u64,
    /// Files under `blobs/sha256` whose names are not digests.
    pub stray_files: Vec<PathBuf>,
    /// Problems found: corrupt, missing or mis-sized blobs.
    pub corrupt: Vec<LayoutError>,
}

impl VerifyReport {
    /// Whether the layout is intact.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty()
    }
}

/// A blob being written; see [`OciLayout::blob_writer`].
#[derive(Debug)]
pub struct BlobWriter {
    layout: OciLayout,
    inner: HashingWriter<BufWriter<NamedTempFile>>,
}

impl BlobWriter {
    /// Finishes the blob: renames it to its digest and returns the digest and size.
    pub fn finish(self) -> Result<(Digest, u64), LayoutError> {
        self.finish_reporting()
            .map(|(digest, size, _)| (digest, size))
    }

    /// Like [`BlobWriter::finish`], also telling whether an identical blob was already
    /// present (in which case the new copy is discarded).
    pub fn finish_reporting(self) -> Result<(Digest, u64, bool), LayoutError> {
        let (buffered, digest, size) = self.inner.finish();
        let temp = buffered.into_inner().map_err(|e| LayoutError::Write {
            path: self.layout.root.clone(),
            source: e.into_error(),
        })?;
        let path = self.layout.blob_path(&digest);
        let existed = path.exists();
        if !existed {
            temp.persist(&path).map_err(|e| LayoutError::Write {
                path,
                source: e.error,
            })?;
        }
        Ok((digest, size, existed))
    }
}

impl BlobWriter {
    /// Finishes the blob only if it is `expected` (and `expected_size` bytes long); otherwise
    /// discards it and names `source` in the error. Returns the size.
    pub fn finish_expecting(
        self,
        expected: &Digest,
        expected_size: Option<u64>,
        source: &Path,
    ) -> Result<u64, LayoutError> {
        let (buffered, found, size) = self.inner.finish();
        if &found != expected {
            return Err(LayoutError::DigestMismatch {
                layout: source.to_path_buf(),
                expected: expected.clone(),
                found,
            });
        }
        if let Some(expected_size) = expected_size
            && expected_size != size
        {
            return Err(LayoutError::SizeMismatch {
                layout: source.to_path_buf(),
                digest: expected.clone(),
                expected: expected_size,
                found: size,
            });
        }
        let temp = buffered.into_inner().map_err(|e| LayoutError::Write {
            path: self.layout.root.clone(),
            source: e.into_error(),
        })?;
        let path = self.layout.blob_path(&found);
        if !path.exists() {
            temp.persist(&path).map_err(|e| LayoutError::Write {
                path,
                source: e.error,
            })?;
        }
        Ok(size)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The `org.opencontainers.image.ref.name` of an index entry.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy)]
enum Compression {
    Gzip,
    Zstd,
    None,
}

/// The largest `oci-layout` file kiln accepts (it is 30 bytes).
const MAX_LAYOUT_FILE: u64 = 64 * 1024;

/// Opens `path` for reading without blocking (a FIFO is refused, not waited on) and only if
/// it is a regular file ([`crate::untrusted::open_regular`]).
pub(crate) fn open_regular(path: &Path) -> Result<File, LayoutError> {
    crate::untrusted::open_regular(path, crate::untrusted::Links::Follow).map_err(|e| match e {
        ReadError::Io { path, source } => LayoutError::Read { path, source },
        other => LayoutError::File(other),
    })
}

/// An empty image index.
pub fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .expect("an index with all required fields")
}

/// A temporary file in `dir` that will be published by rename: readable by everyone
/// (`0644` before the umask), unlike `tempfile`'s private default.
pub fn publishable_temp(dir: &Path) -> io::Result<NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write_err = |source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temp = publishable_temp(dir).map_err(write_err)?;
    temp.write_all(bytes).map_err(write_err)?;
    temp.as_file().sync_all().map_err(write_err)?;
    temp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

fn check_algorithm(digest: &Digest) -> Result<(), LayoutError> {
    if digest.algorithm() == &oci_spec::image::DigestAlgorithm::Sha256 {
        Ok(())
    } else {
        Err(LayoutError::UnsupportedDigest {
            digest: digest.clone(),
        })
    }
}

/// A layer blob's tar stream: the blob through gzip or zstd as its first bytes say, else as
/// it is (an uncompressed tar).
pub(crate) fn decompressed<'a>(blob: impl io::Read + 'a) -> io::Result<Box<dyn io::Read + 'a>> {
    let mut reader = io::BufReader::with_capacity(256 * 1024, blob);
    let magic = io::BufRead::fill_buf(&mut reader)?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::sha256_digest;

    #[test]
    fn ensure_creates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("l");
        let layout = OciLayout::ensure(&root).unwrap();
        assert!(root.join("oci-layout").is_file());
        assert!(layout.read_index().unwrap().manifests().is_empty());
        OciLayout::open(&root).unwrap();
    }

    #[test]
    fn ensure_refuses_non_empty_non_layout() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            OciLayout::ensure(dir.path()),
            Err(LayoutError::NotALayout { .. })
        ));
        assert!(dir.path().join("precious.txt").exists());
    }

    #[test]
    fn blobs_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path()).unwrap();
        let (digest, size) = layout.write_blob(b"hello").unwrap();
        assert_eq!(digest, sha256_digest(b"hello"));
        assert_eq!(size, 5);
        assert_eq!(layout.read_blob(&digest).unwrap(), b"hello");
        assert!(layout.verify().unwrap().is_ok());

        fs::write(layout.blob_path(&digest), b"jello").unwrap();
        assert!(matches!(
            layout.read_blob(&digest),
            Err(LayoutError::DigestMismatch { .. })
        ));
        let report = layout.verify().unwrap();
        assert_eq!(report.corrupt.len(), 1);
    }

    #[test]
    fn import_rejects_wrong_digest_without_leaving_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path()).unwrap();
        let claimed = sha256_digest(b"expected");
        let err = layout
            .import_blob(&b"actual"[..], &claimed, None, Path::new("src"))
            .unwrap_err();
        assert!(matches!(err, LayoutError::DigestMismatch { .. }));
        assert!(!layout.has_blob(&claimed));
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "temp file must be cleaned up");
    }

    #[test]
    fn fifos_devices_and_huge_indexes_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path()).unwrap();
        let index = dir.path().join("index.json");
        fs::remove_file(&index).unwrap();
        nix::unistd::mkfifo(&index, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = layout.read_index().unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        fs::remove_file(&index).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
        let err = layout.read_index().unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
        fs::remove_file(&index).unwrap();
        let big = fs::File::create(&index).unwrap();
        big.set_len(MAX_DOCUMENT + 1).unwrap();
        let err = layout.read_index().unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");

        let digest = crate::image::digest::sha256_digest(b"x");
        let blob = layout.blob_path(&digest);
        nix::unistd::mkfifo(&blob, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        for err in [
            layout.read_blob(&digest).unwrap_err(),
            layout.open_blob(&digest).unwrap_err(),
            layout.diff_id(&digest).unwrap_err(),
        ] {
            assert!(err.to_string().contains("FIFO"), "{err}");
        }
        fs::remove_file(dir.path().join("oci-layout")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("oci-layout"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(matches!(
            OciLayout::open(dir.path()),
            Err(LayoutError::File(ReadError::NotAFile { .. }))
        ));
    }

    #[test]
    fn diff_ids_are_the_digests_of_uncompressed_content() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path()).unwrap();
        let content = b"a tar, say".repeat(100);
        let (plain, _) = layout.write_blob(&content).unwrap();
        assert_eq!(layout.diff_id(&plain).unwrap(), sha256_digest(&content));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&content).unwrap();
        let (gzip, _) = layout.write_blob(&gz.finish().unwrap()).unwrap();
        assert_eq!(layout.diff_id(&gzip).unwrap(), sha256_digest(&content));
        let (zstd, _) = layout
            .write_blob(&zstd::encode_all(&content[..], 3).unwrap())
            .unwrap();
        assert_eq!(layout.diff_id(&zstd).unwrap(), sha256_digest(&content));
        fs::write(layout.blob_path(&gzip), b"changed").unwrap();
        assert!(matches!(
            layout.diff_id(&gzip),
            Err(LayoutError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn tag_replaces_same_name_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path()).unwrap();
        let (d1, s1) = layout.write_blob(b"{}").unwrap();
        let desc = |d: &Digest, s| {
            oci_spec::image::DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(d.clone())
                .size(s)
                .build()
                .unwrap()
        };
        layout.tag(&desc(&d1, s1), "b").unwrap();
        layout.tag(&desc(&d1, s1), "a").unwrap();
        layout.tag(&desc(&d1, s1), "b").unwrap();
        let index = layout.read_index().unwrap();
        let names: Vec<_> = index.manifests().iter().filter_map(ref_name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(layout.untag("a").unwrap());
        assert!(!layout.untag("a").unwrap());
    }
}
