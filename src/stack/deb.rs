//! Reading `.deb` files and unpacking their data into a staging root, without dpkg.
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar.{gz,xz,zst}` and
//! `data.tar.{gz,xz,zst}` (Debian Policy §3, `deb(5)`). Unpacking:
//!
//! - refuses absolute paths and `..` components, so a package cannot write outside the root;
//! - applies merged-`/usr` the way debootstrap's symlinks would: an entry under `bin/`,
//!   `sbin/` or `lib*/` lands under `usr/` (the base layer carries the `bin -> usr/bin`
//!   symlinks); a package that ships those links itself (trixie's `base-files` does) gets
//!   its `usr/bin` directory instead, and the base layer makes the link;
//! - writes files readable by kiln whatever their declared mode, and records the declared
//!   mode and owner per path for the layer writer
//!   ([`crate::layer::LayerSpec::entry_metadata`]), so running as an ordinary user
//!   gives the same image as running as root;
//! - skips device nodes and FIFOs, which have no place in a container image layer.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::control::{Stanza, parse_stanzas};
use crate::layer::EntryMetadata;
use crate::untrusted::{Beneath, ParentLinks};

/// Top-level directories that merged-`/usr` moves under `usr/`.
pub const MERGED_USR_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Errors reading or unpacking a `.deb`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebError {
    /// The file is not a valid `.deb`.
    #[error("{package}: {problem}")]
    Invalid {
        /// Which package (or file).
        package: String,
        /// What is wrong.
        problem: String,
    },
    /// Reading or writing failed.
    #[error("{package}: failed to unpack {path}")]
    Io {
        /// Which package.
        package: String,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// What is wrong with a part of a `.deb` (the `problem` of [`DebError::Invalid`]).
#[derive(Debug, thiserror::Error)]
enum PartError {
    /// A path that is absolute or climbs out with `..`.
    #[error("refusing unsafe path {} (absolute or with ..)", path.display())]
    UnsafePath { path: PathBuf },
    /// A zstd member whose stream does not start.
    #[error("bad zstd stream: {0}")]
    BadZstd(io::Error),
    /// A member compressed with something kiln does not read.
    #[error("unsupported compression {0:?}")]
    UnsupportedCompression(String),
    /// `control.tar` cannot be listed.
    #[error("control.tar is unreadable: {0}")]
    ControlTarUnreadable(io::Error),
    /// An entry of `control.tar` cannot be read.
    #[error("control.tar is corrupt: {0}")]
    ControlTarCorrupt(io::Error),
    /// An entry of `control.tar` has a path that cannot be read.
    #[error("{0}")]
    ControlTarPath(io::Error),
    /// The `control` file cannot be read (or is too large).
    #[error("control file is unreadable: {0}")]
    ControlUnreadable(io::Error),
    /// The `control` file is not UTF-8.
    #[error("the control file is not UTF-8 text")]
    ControlNotUtf8,
    /// The `control` file is not deb822.
    #[error(transparent)]
    ControlStanza(#[from] super::control::StanzaError),
    /// The `control` file holds no stanza.
    #[error("the control file is empty")]
    ControlEmpty,
    /// `control.tar` has no `control` file.
    #[error("control.tar has no control file")]
    NoControlFile,
}

/// Unpacks packages into a staging root and remembers each entry's declared metadata.
#[derive(Debug)]
pub struct Unpacker {
    root: PathBuf,
    dir: Beneath,
    metadata: BTreeMap<String, EntryMetadata>,
}

impl Unpacker {
    /// Unpacks into `root` (created if needed).
    pub fn new(root: &Path) -> Result<Self, DebError> {
        fs::create_dir_all(root).map_err(|source| DebError::Io {
            package: String::new(),
            path: root.to_path_buf(),
            source,
        })?;
        let dir = Beneath::open(root, ParentLinks::InRoot).map_err(|source| DebError::Io {
            package: String::new(),
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            dir,
            metadata: BTreeMap::new(),
        })
    }

    /// The staging root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Records the metadata of a path kiln creates itself.
    pub fn set_metadata(&mut self, rel: &str, meta: EntryMetadata) {
        self.metadata
            .insert(rel.trim_end_matches('/').to_string(), meta);
    }

    /// Records the metadata of a path unless a package already declared it.
    pub fn set_metadata_if_absent(&mut self, rel: &str, meta: EntryMetadata) {
        self.metadata
            .entry(rel.trim_end_matches('/').to_string())
            .or_insert(meta);
    }

    /// The declared metadata of every unpacked entry, keyed by its path in the root.
    pub fn into_metadata(self) -> BTreeMap<String, EntryMetadata> {
        self.metadata
    }

    /// Unpacks the `.deb` read from `reader` (named `package` in errors) and returns its
    /// control stanza.
    pub fn unpack(&mut self, reader: impl Read, package: &str) -> Result<Stanza, DebError> {
        let invalid = |problem: String| DebError::Invalid {
            package: package.to_string(),
            problem,
        };
        let part = |problem: PartError| invalid(problem.to_string());
        let mut archive = ar::Archive::new(reader);
        let mut control = None;
        let mut saw_data = false;
        let mut saw_version = false;
        while let Some(entry) = archive.next_entry() {
            let mut entry =
                entry.map_err(|e| invalid(format!("not a valid .deb (ar archive): {e}")))?;
            let name = String::from_utf8_lossy(entry.header().identifier())
                .trim_end_matches('/')
                .to_string();
            if name == "debian-binary" {
                let mut version = String::new();
                entry
                    .read_to_string(&mut version)
                    .map_err(|e| invalid(format!("unreadable debian-binary: {e}")))?;
                if !version.starts_with("2.") {
                    return Err(invalid(format!(
                        "unsupported .deb format version {:?}",
                        version.trim()
                    )));
                }
                saw_version = true;
            } else if let Some(compression) = name.strip_prefix("control.tar") {
                let reader = decompressor(&mut entry, compression).map_err(part)?;
                control = Some(read_control(reader).map_err(part)?);
            } else if let Some(compression) = name.strip_prefix("data.tar") {
                let reader = decompressor(&mut entry, compression).map_err(part)?;
                self.unpack_data(reader, package)?;
                saw_data = true;
            }
        }
        if !saw_version || !saw_data {
            return Err(invalid(
                "truncated or not a .deb: debian-binary or data.tar is missing".to_string(),
            ));
        }
        control.ok_or_else(|| invalid("it has no control.tar with a control file".to_string()))
    }

    fn unpack_data(&mut self, reader: impl Read, package: &str) -> Result<(), DebError> {
        let invalid = |problem: String| DebError::Invalid {
            package: package.to_string(),
            problem,
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| invalid(format!("data.tar is unreadable: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(format!("data.tar is corrupt: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| invalid(format!("bad path in data.tar: {e}")))?
                .into_owned();
            let Some(rel) = confine(&raw).map_err(|e| invalid(e.to_string()))? else {
                continue; // the root itself
            };
            let header = entry.header();
            let meta = EntryMetadata {
                mode: header.mode().unwrap_or(0o644) & 0o7777,
                uid: header.uid().unwrap_or(0),
                gid: header.gid().unwrap_or(0),
            };
            let kind = header.entry_type();
            let path = self.root.join(&rel);
            let io_err = |source| DebError::Io {
                package: package.to_string(),
                path: path.clone(),
                source,
            };
            let rel_path = Path::new(&rel);
            match kind {
                tar::EntryType::Directory => {
                    self.dir.create_dir(rel_path, 0o755).map_err(io_err)?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.record_parents(&rel);
                    self.dir
                        .write_file(rel_path, 0o644, &mut entry)
                        .map_err(|e| {
                            if e.kind() == io::ErrorKind::InvalidInput {
                                io_err(e)
                            } else {
                                invalid(format!("data.tar is truncated at {rel}: {e}"))
                            }
                        })?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| invalid(format!("bad link in data.tar: {e}")))?
                        .ok_or_else(|| invalid(format!("symlink {rel} has no target")))?;
                    if is_merged_usr_link(&raw, &target) {
                        // `bin -> usr/bin` would land on `usr/bin` itself: keep the directory.
                        self.dir.create_dir(rel_path, 0o755).map_err(io_err)?;
                        self.metadata.entry(rel).or_insert(EntryMetadata {
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                        });
                        continue;
                    }
                    self.record_parents(&rel);
                    self.dir.symlink(rel_path, &target).map_err(io_err)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|e| invalid(format!("bad link in data.tar: {e}")))?
                        .ok_or_else(|| invalid(format!("hard link {rel} has no target")))?;
                    let target_rel = confine(&target)
                        .map_err(|e| invalid(e.to_string()))?
                        .ok_or_else(|| invalid(format!("hard link {rel} points at the root")))?;
                    self.record_parents(&rel);
                    self.dir
                        .hard_link(Path::new(&target_rel), rel_path)
                        .map_err(io_err)?;
                }
                _ => continue,
            }
            self.metadata.insert(rel, meta);
        }
        Ok(())
    }

    /// Records the parent directories of `rel` as root-owned 0755 unless a package declared
    /// them ([`Beneath`] creates missing ones with that mode).
    /// Only a missing parent is recorded (as before [`Beneath`] did the writing, so stack
    /// digests stay the same); this only looks, the writing never follows a link out.
    fn record_parents(&mut self, rel: &str) {
        let mut dir = Path::new(rel).parent();
        if dir.is_some_and(|d| self.root.join(d).is_dir()) {
            return;
        }
        while let Some(parent) = dir.filter(|p| !p.as_os_str().is_empty()) {
            self.metadata
                .entry(parent.to_string_lossy().into_owned())
                .or_insert(EntryMetadata {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                });
            dir = parent.parent();
        }
    }
}

/// Whether a package's symlink at `raw` is a merged-`/usr` link (`bin -> usr/bin`,
/// `lib64 -> /usr/lib64`), which [`confine`] would turn into a link from `usr/bin` to itself.
fn is_merged_usr_link(raw: &Path, target: &Path) -> bool {
    let normal = |p: &Path| -> Vec<String> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    let (link, target) = (normal(raw), normal(target));
    link.len() == 1
        && MERGED_USR_DIRS.contains(&link[0].as_str())
        && target.len() == 2
        && target[0] == "usr"
        && target[1] == link[0]
        && !target.iter().any(|t| t == "..")
}

/// Turns a path from a package into a relative path inside the root, applying merged-`/usr`.
/// `None` for the root itself; an error for paths that would escape the root.
fn confine(raw: &Path) -> Result<Option<String>, PartError> {
    let mut parts: Vec<String> = Vec::new();
    for component in raw.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(PartError::UnsafePath {
                    path: raw.to_path_buf(),
                });
            }
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    if MERGED_USR_DIRS.contains(&parts[0].as_str()) {
        parts.insert(0, "usr".to_string());
    }
    Ok(Some(parts.join("/")))
}

/// What a `.deb`'s `control.tar` says, read without its data: the control stanza and the
/// shared libraries it declares (see [`read_info`]).
#[derive(Debug, Clone)]
pub struct DebInfo {
    /// The `control` file.
    pub control: Stanza,
    /// The sonames its `shlibs` and `symbols` files declare (`libpq.so.5`), sorted.
    pub sonames: Vec<String>,
}

/// The largest `symbols` file read (libstdc++'s is about 2 MB).
const MAX_SYMBOLS: u64 = 64 << 20;

/// Reads the control part of the `.deb` from `reader` (named `package` in errors) and stops
/// before its data: the control stanza, and the sonames of its `shlibs` lines
/// (`libpq 5 libpq5 (>= 14)` declares `libpq.so.5`; `libfoo 1.2` also `libfoo-1.2.so`) and of
/// its `symbols` file's header lines (`libpq.so.5 libpq5 #MINVER#`). Debian Policy §8.6
/// makes every package with a public shared library ship one of the two.
pub fn read_info(reader: impl Read, package: &str) -> Result<DebInfo, DebError> {
    let invalid = |problem: String| DebError::Invalid {
        package: package.to_string(),
        problem,
    };
    let mut archive = ar::Archive::new(reader);
    while let Some(entry) = archive.next_entry() {
        let mut entry =
            entry.map_err(|e| invalid(format!("not a valid .deb (ar archive): {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        if let Some(compression) = name.strip_prefix("control.tar") {
            let reader =
                decompressor(&mut entry, compression).map_err(|e| invalid(e.to_string()))?;
            return read_control_info(reader).map_err(|e| invalid(e.to_string()));
        }
    }
    Err(invalid("it has no control.tar".to_string()))
}

fn read_control_info(reader: impl Read) -> Result<DebInfo, PartError> {
    let mut archive = tar::Archive::new(reader);
    let mut control = None;
    let mut sonames = std::collections::BTreeSet::new();
    for entry in archive.entries().map_err(PartError::ControlTarUnreadable)? {
        let mut entry = entry.map_err(PartError::ControlTarCorrupt)?;
        let path = entry
            .path()
            .map_err(PartError::ControlTarPath)?
            .into_owned();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        match file {
            "control" => {
                let bytes = crate::untrusted::read_limited(
                    &mut entry,
                    crate::untrusted::MAX_METADATA,
                    "the control file",
                )
                .map_err(PartError::ControlUnreadable)?;
                let text = String::from_utf8(bytes).map_err(|_| PartError::ControlNotUtf8)?;
                control = Some(
                    parse_stanzas(&text)?
                        .into_iter()
                        .next()
                        .ok_or(PartError::ControlEmpty)?,
                );
            }
            "shlibs" | "symbols" => {
                let limit = if file == "shlibs" {
                    crate::untrusted::MAX_METADATA
                } else {
                    MAX_SYMBOLS
                };
                let bytes = crate::untrusted::read_limited(&mut entry, limit, file)
                    .map_err(PartError::ControlUnreadable)?;
                let text = String::from_utf8_lossy(&bytes);
                if file == "shlibs" {
                    sonames.extend(shlibs_sonames(&text));
                } else {
                    sonames.extend(symbols_sonames(&text));
                }
            }
            _ => {}
        }
    }
    Ok(DebInfo {
        control: control.ok_or(PartError::NoControlFile)?,
        sonames: sonames.into_iter().collect(),
    })
}

/// The sonames of a `shlibs` file (`deb-shlibs(5)`): `[type:] library version dependencies`
/// names `library.so.version`, or `library-version.so` for sonames of that form; `udeb:`
/// lines are for the installer and skipped.
pub(crate) fn shlibs_sonames(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(mut library) = words.next() else {
            continue;
        };
        if let Some(kind) = library.strip_suffix(':') {
            if kind != "deb" && !kind.is_empty() {
                continue;
            }
            let Some(next) = words.next() else { continue };
            library = next;
        }
        let Some(version) = words.next() else {
            continue;
        };
        out.push(format!("{library}.so.{version}"));
        out.push(format!("{library}-{version}.so"));
    }
    out
}

/// The sonames of a `symbols` file (`deb-symbols(5)`): each library's header line starts
/// in the first column (`libpq.so.5 libpq5 #MINVER#`); symbol lines start with a blank,
/// `|` or `*`.
pub(crate) fn symbols_sonames(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '|', '*', '#']))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|soname| soname.contains(".so"))
        .map(str::to_string)
        .collect()
}

fn decompressor<'a>(
    reader: &'a mut dyn Read,
    suffix: &str,
) -> Result<Box<dyn Read + 'a>, PartError> {
    Ok(match suffix {
        "" => Box::new(reader),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        ".xz" => Box::new(liblzma::read::XzDecoder::new(reader)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(reader).map_err(PartError::BadZstd)?),
        other => return Err(PartError::UnsupportedCompression(other.to_string())),
    })
}

fn read_control(reader: impl Read) -> Result<Stanza, PartError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(PartError::ControlTarUnreadable)? {
        let mut entry = entry.map_err(PartError::ControlTarCorrupt)?;
        let path = entry
            .path()
            .map_err(PartError::ControlTarPath)?
            .into_owned();
        if path.file_name().is_some_and(|n| n == "control") {
            let bytes = crate::untrusted::read_limited(
                &mut entry,
                crate::untrusted::MAX_METADATA,
                "the control file",
            )
            .map_err(PartError::ControlUnreadable)?;
            let text = String::from_utf8(bytes).map_err(|_| PartError::ControlNotUtf8)?;
            return parse_stanzas(&text)?
                .into_iter()
                .next()
                .ok_or(PartError::ControlEmpty);
        }
    }
    Err(PartError::NoControlFile)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// An entry of a test package's data.tar.
    pub(crate) enum TestEntry<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
    }

    fn tar_of(entries: &[TestEntry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            match e {
                TestEntry::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                TestEntry::File(p, mode, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    // Write the name raw: the tar crate refuses to write `..`, and hostile
                    // packages are exactly what some tests need.
                    let name = &mut h.as_old_mut().name;
                    name.fill(0);
                    name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                TestEntry::Symlink(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
                TestEntry::HardLink(p, t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Builds a `.deb` with `control` text and data entries, compressing data with
    /// `compression` (`gz`, `xz` or `zst`).
    pub(crate) fn make_deb(control: &str, data: &[TestEntry<'_>], compression: &str) -> Vec<u8> {
        let mut control_tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(control.len() as u64);
        h.set_mode(0o644);
        control_tar
            .append_data(&mut h, "./control", control.as_bytes())
            .unwrap();
        let control_gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&control_tar.into_inner().unwrap()).unwrap();
            e.finish().unwrap()
        };
        let data_tar = tar_of(data);
        let data_compressed = match compression {
            "gz" => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&data_tar).unwrap();
                e.finish().unwrap()
            }
            "xz" => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(&data_tar).unwrap();
                e.finish().unwrap()
            }
            "zst" => zstd::encode_all(&data_tar[..], 3).unwrap(),
            other => panic!("{other}"),
        };
        let mut ar = ar::Builder::new(Vec::new());
        for (name, bytes) in [
            ("debian-binary".to_string(), b"2.0\n".to_vec()),
            ("control.tar.gz".to_string(), control_gz),
            (format!("data.tar.{compression}"), data_compressed),
        ] {
            ar.append(
                &ar::Header::new(name.into_bytes(), bytes.len() as u64),
                &bytes[..],
            )
            .unwrap();
        }
        ar.into_inner().unwrap()
    }

    const CONTROL: &str =
        "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nDescription: test\n";

    #[test]
    fn unpacks_each_compression_with_merged_usr_and_metadata() {
        for compression in ["gz", "xz", "zst"] {
            let deb = make_deb(
                CONTROL,
                &[
                    TestEntry::Dir("./", 0o755),
                    TestEntry::Dir("./bin/", 0o755),
                    TestEntry::File("./bin/hello", 0o4755, b"#!/bin/sh\n"),
                    TestEntry::Dir("./tmp/", 0o1777),
                    TestEntry::File("./usr/share/doc/hello/README", 0o600, b"doc"),
                    TestEntry::Symlink("./usr/bin/hi", "hello"),
                    TestEntry::HardLink("./usr/bin/hello2", "./bin/hello"),
                ],
                compression,
            );
            let root = tempfile::tempdir().unwrap();
            let mut unpacker = Unpacker::new(root.path()).unwrap();
            let control = unpacker.unpack(&deb[..], "hello").unwrap();
            assert_eq!(control.get("Version"), Some("1.0-1"));
            assert!(root.path().join("usr/bin/hello").is_file(), "{compression}");
            assert!(!root.path().join("bin").exists());
            assert_eq!(
                fs::read_link(root.path().join("usr/bin/hi")).unwrap(),
                Path::new("hello")
            );
            assert_eq!(
                fs::read(root.path().join("usr/bin/hello2")).unwrap(),
                b"#!/bin/sh\n"
            );
            let meta = unpacker.into_metadata();
            assert_eq!(meta["usr/bin/hello"].mode, 0o4755);
            assert_eq!(meta["tmp"].mode, 0o1777);
            assert_eq!(meta["usr/share/doc/hello/README"].mode, 0o600);
        }
    }

    #[test]
    fn merged_usr_links_a_package_ships_become_directories() {
        let deb = make_deb(
            CONTROL,
            &[
                TestEntry::Dir("./", 0o755),
                TestEntry::Symlink("./bin", "usr/bin"),
                TestEntry::Symlink("./lib64", "/usr/lib64"),
                TestEntry::Dir("./usr/", 0o755),
                TestEntry::Dir("./usr/bin/", 0o755),
                TestEntry::File("./bin/true", 0o755, b"x"),
                // Not a merged-/usr link: kept as a link, under usr/.
                TestEntry::Symlink("./sbin", "usr/bin"),
            ],
            "xz",
        );
        let root = tempfile::tempdir().unwrap();
        let mut unpacker = Unpacker::new(root.path()).unwrap();
        unpacker.unpack(&deb[..], "base-files").unwrap();
        let r = root.path();
        assert!(r.join("usr/bin/true").is_file());
        assert!(fs::symlink_metadata(r.join("usr/lib64")).unwrap().is_dir());
        assert_eq!(
            fs::read_link(r.join("usr/sbin")).unwrap(),
            Path::new("usr/bin")
        );
        let meta = unpacker.into_metadata();
        assert_eq!(meta["usr/lib64"].mode, 0o755);
    }

    #[test]
    fn corrupt_and_truncated_debs_are_errors() {
        let deb = make_deb(
            CONTROL,
            &[TestEntry::File("./a", 0o644, &[7u8; 4096])],
            "xz",
        );
        let root = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not ar", b"definitely not an ar archive".to_vec()),
            ("truncated", deb[..deb.len() / 2].to_vec()),
            ("flipped", {
                let mut d = deb.clone();
                let i = d.len() - 40;
                d[i] ^= 0xff;
                d
            }),
        ];
        for (name, bytes) in cases {
            let mut unpacker = Unpacker::new(root.path()).unwrap();
            let err = unpacker.unpack(&bytes[..], "broken");
            assert!(err.is_err(), "{name} should fail");
            assert!(err.unwrap_err().to_string().starts_with("broken"), "{name}");
        }
    }

    #[test]
    fn paths_escaping_the_root_are_refused() {
        for evil in ["../escape", "./usr/../../escape"] {
            let deb = make_deb(CONTROL, &[TestEntry::File(evil, 0o644, b"x")], "gz");
            let root = tempfile::tempdir().unwrap();
            let mut unpacker = Unpacker::new(&root.path().join("r")).unwrap();
            let err = unpacker.unpack(&deb[..], "evil").unwrap_err();
            assert!(err.to_string().contains("unsafe path"), "{err}");
            assert!(!root.path().join("escape").exists());
        }
    }

    #[test]
    fn links_made_by_a_package_resolve_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let outside = host.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let target = outside.to_str().unwrap();
        let deb = make_deb(
            CONTROL,
            &[
                TestEntry::Symlink("./etc/link", target),
                TestEntry::File("./etc/link/evil", 0o644, b"x"),
                TestEntry::Symlink("./etc/up", "../../../../.."),
                TestEntry::File("./etc/up/evil2", 0o644, b"y"),
            ],
            "gz",
        );
        let root = host.path().join("r");
        let mut unpacker = Unpacker::new(&root).unwrap();
        unpacker.unpack(&deb[..], "evil").unwrap();
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        assert!(!host.path().join("evil2").exists());
        let inside = root.join(target.trim_start_matches('/')).join("evil");
        assert_eq!(fs::read(inside).unwrap(), b"x");
        assert_eq!(fs::read(root.join("evil2")).unwrap(), b"y");
    }

    #[test]
    fn shlibs_and_symbols_name_sonames() {
        let shlibs = "libpq 5 libpq5 (>= 14~beta2)\nudeb: libpq 5 libpq5-udeb\n\
                      libpython3.13 1.0 libpython3.13 (>= 3.13.0)\n# a comment\n";
        let sonames = shlibs_sonames(shlibs);
        assert!(sonames.contains(&"libpq.so.5".to_string()), "{sonames:?}");
        assert!(sonames.contains(&"libpython3.13.so.1.0".to_string()));
        assert!(sonames.contains(&"libpython3.13-1.0.so".to_string()));
        assert_eq!(sonames.len(), 4, "udeb lines are skipped: {sonames:?}");
        let symbols = "libpq.so.5 libpq5 #MINVER#\n* Build-Depends-Package: libpq-dev\n \
                       PQbackendPID@Base 7.3\nlibecpg.so.6 libecpg6 #MINVER#\n| libfoo\n";
        assert_eq!(symbols_sonames(symbols), ["libpq.so.5", "libecpg.so.6"]);
    }
}
