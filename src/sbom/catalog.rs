//! What one layer holds, as the SBOM needs it: the software packages whose records are in
//! its files, read from the layer's tar stream (never unpacked, nothing written to disk).
//!
//! | record in the layer | component |
//! |---|---|
//! | `var/lib/dpkg/status.d/<package>` (distroless-style, as kiln's stacks write them) and `var/lib/dpkg/status` | Debian packages (`Status: install ok installed` only) |
//! | `…/<name>-<version>.dist-info/METADATA` (not in Debian's `/usr/lib/python3`) | Python distributions |
//! | `…/node_modules/[@scope/]<name>/package.json` | npm packages |
//! | `Cargo.lock` | crates from a registry |
//! | executables with a Go build-info blob (`\xff Go buildinf:`) | the Go module, its dependencies and the Go standard library |
//! | `include/node/node_version.h`, `include/python3.X/patchlevel.h` outside `/usr` | Node.js and Python runtimes kiln installed |
//! | `usr/lib/os-release`, `etc/os-release` | the distribution (purl `distro=` qualifier) |
//!
//! Every read is bounded ([`MAX_RECORD`] and friends); a record that does not parse is
//! skipped, not an error: an SBOM lists what kiln can tell exactly. A layer's catalog
//! depends only on its bytes, so it is kept by blob digest
//! (`$KILN_HOME/cache/layer-packages/<hex>.json`) and never goes stale.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The largest package record read (a `METADATA` header, a `package.json`, a status file).
const MAX_RECORD: u64 = 4 * 1024 * 1024;

/// The largest `var/lib/dpkg/status` or `Cargo.lock` read.
const MAX_DATABASE: u64 = 32 * 1024 * 1024;

/// How far past the Go build-info header its strings are read.
const MAX_GO_BUILDINFO: usize = 1024 * 1024;

/// The record format; a different one is read again from the layer.
const FORMAT: u32 = 1;

pub(crate) use super::records::{Ecosystem, Package};

/// What a layer holds for the SBOM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerCatalog {
    /// [`FORMAT`] when read.
    pub format: u32,
    /// The packages, sorted.
    pub packages: Vec<Package>,
    /// Paths this layer deletes (`.wh.NAME`), relative to the root.
    pub whiteouts: Vec<String>,
    /// Directories whose lower contents this layer hides (`.wh..wh..opq`).
    pub opaque: Vec<String>,
    /// `ID` and `VERSION_ID` of an `os-release` file in the layer.
    pub os_release: Option<(String, String)>,
}

/// The catalog of the layer blob at `blob` (gzip, zstd or plain tar), from the record in
/// `cache` when there is one.
pub(crate) fn layer_catalog(
    blob: &Path,
    hex: &str,
    cache: Option<&Path>,
) -> io::Result<LayerCatalog> {
    let record = cache.map(|dir| dir.join(format!("{hex}.json")));
    if let Some(record) = &record
        && let Ok(bytes) =
            crate::untrusted::read_file(record, 256 * MAX_RECORD, crate::untrusted::Links::Refuse)
        && let Ok(catalog) = serde_json::from_slice::<LayerCatalog>(&bytes)
        && catalog.format == FORMAT
    {
        return Ok(catalog);
    }
    let file = std::fs::File::open(blob)?;
    let catalog = read_layer(file)?;
    // Failing to record only means reading the layer again next time.
    if let (Some(record), Ok(json)) = (&record, serde_json::to_vec(&catalog))
        && record
            .parent()
            .is_some_and(|dir| std::fs::create_dir_all(dir).is_ok())
    {
        let _ = crate::image::layout::write_atomic(record, &json);
    }
    Ok(catalog)
}

/// Reads a layer's tar stream (possibly gzip- or zstd-compressed) into its catalog.
pub(crate) fn read_layer(blob: impl Read) -> io::Result<LayerCatalog> {
    let decoded = crate::image::layout::decompressed(blob)?;
    let mut archive = tar::Archive::new(decoded);
    let mut catalog = LayerCatalog {
        format: FORMAT,
        ..LayerCatalog::default()
    };
    let mut os_release: BTreeMap<String, (String, String)> = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        if path.is_empty() {
            continue;
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            catalog.opaque.push(parent.to_string());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            catalog.whiteouts.push(join(parent, hidden));
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let executable = header.mode().is_ok_and(|m| m & 0o111 != 0);
        read_record(&mut entry, &path, executable, &mut catalog, &mut os_release)?;
    }
    // `usr/lib/os-release` is the file; `etc/os-release` usually links to it.
    catalog.os_release = os_release
        .remove("usr/lib/os-release")
        .or_else(|| os_release.remove("etc/os-release"));
    catalog.packages.sort();
    catalog.packages.dedup();
    Ok(catalog)
}

/// Reads the record at `path` (a regular file of the layer, `executable` or not) into
/// `catalog`; `os_release` collects `os-release` files by path.
fn read_record<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    executable: bool,
    catalog: &mut LayerCatalog,
    os_release: &mut BTreeMap<String, (String, String)>,
) -> io::Result<()> {
    let size = entry.size();
    match classify(path) {
        Some(Record::DpkgStatus { database }) => {
            let limit = if database { MAX_DATABASE } else { MAX_RECORD };
            if let Some(text) = read_text(entry, limit)? {
                catalog.packages.extend(super::records::dpkg(&text, path));
            }
        }
        Some(Record::OsRelease) => {
            if let Some(text) = read_text(entry, MAX_RECORD)?
                && let Some(found) = super::records::os_release(&text)
            {
                os_release.insert(path.to_string(), found);
            }
        }
        Some(Record::PythonMetadata) => {
            if let Some(text) = read_headers(entry)? {
                catalog
                    .packages
                    .extend(super::records::python_metadata(&text, path));
            }
        }
        Some(Record::PackageJson) => {
            if let Some(text) = read_text(entry, MAX_RECORD)? {
                catalog
                    .packages
                    .extend(super::records::package_json(&text, path));
            }
        }
        Some(Record::CargoLock) => {
            if let Some(text) = read_text(entry, MAX_DATABASE)? {
                catalog
                    .packages
                    .extend(super::records::cargo_lock(&text, path));
            }
        }
        Some(Record::NodeVersion) => {
            if let Some(text) = read_text(entry, MAX_RECORD)? {
                catalog
                    .packages
                    .extend(super::records::node_version_h(&text, path));
            }
        }
        Some(Record::PythonPatchlevel) => {
            if let Some(text) = read_text(entry, MAX_RECORD)? {
                catalog
                    .packages
                    .extend(super::records::python_patchlevel_h(&text, path));
            }
        }
        None if executable && size > 64 => {
            if let Some((go, modinfo)) = go_buildinfo(entry)? {
                catalog
                    .packages
                    .extend(super::records::go_modules(&go, &modinfo, path));
            }
        }
        None => {}
    }
    Ok(())
}

/// The kinds of record a path can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    DpkgStatus { database: bool },
    OsRelease,
    PythonMetadata,
    PackageJson,
    CargoLock,
    NodeVersion,
    PythonPatchlevel,
}

/// Which record `path` (relative to the root) holds, by its name alone.
fn classify(path: &str) -> Option<Record> {
    if path == "var/lib/dpkg/status" {
        return Some(Record::DpkgStatus { database: true });
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        // distroless also keeps `<package>.md5sums` there.
        return (!name.is_empty()
            && !name.contains('/')
            && !name.starts_with('.')
            && !name.ends_with(".md5sums"))
        .then_some(Record::DpkgStatus { database: false });
    }
    if path == "usr/lib/os-release" || path == "etc/os-release" {
        return Some(Record::OsRelease);
    }
    let parts: Vec<&str> = path.split('/').collect();
    let name = *parts.last()?;
    // Files under /usr belong to Debian packages, which the dpkg records list already.
    let debian_owned = path.starts_with("usr/");
    match name {
        "METADATA"
            if parts.len() >= 2
                && parts[parts.len() - 2].ends_with(".dist-info")
                && !path.starts_with("usr/lib/python3/") =>
        {
            Some(Record::PythonMetadata)
        }
        "package.json" if is_node_module(&parts) && !path.starts_with("usr/share/") => {
            Some(Record::PackageJson)
        }
        "Cargo.lock" => Some(Record::CargoLock),
        "node_version.h" if !debian_owned && path.ends_with("include/node/node_version.h") => {
            Some(Record::NodeVersion)
        }
        "patchlevel.h"
            if !debian_owned
                && parts.len() >= 3
                && parts[parts.len() - 2].starts_with("python3")
                && parts[parts.len() - 3] == "include" =>
        {
            Some(Record::PythonPatchlevel)
        }
        _ => None,
    }
}

/// Whether `parts` (ending in `package.json`) is `node_modules/<name>/package.json` or
/// `node_modules/@scope/<name>/package.json`.
fn is_node_module(parts: &[&str]) -> bool {
    let n = parts.len();
    (n >= 3 && parts[n - 3] == "node_modules" && !parts[n - 2].starts_with(['@', '.']))
        || (n >= 4 && parts[n - 4] == "node_modules" && parts[n - 3].starts_with('@'))
}

/// At most `limit` bytes of a file as text; `None` if it is longer or not UTF-8.
fn read_text(file: &mut impl Read, limit: u64) -> io::Result<Option<String>> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(None);
    }
    Ok(String::from_utf8(bytes).ok())
}

/// The header part of a `METADATA` file (up to its first empty line), at most
/// [`MAX_RECORD`] bytes.
fn read_headers(file: &mut impl Read) -> io::Result<Option<String>> {
    let mut reader = io::BufReader::new(file.take(MAX_RECORD));
    let mut out = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            return Ok(None);
        };
        if text.trim_end_matches(['\n', '\r']).is_empty() {
            break;
        }
        out.push_str(text);
    }
    Ok(Some(out))
}

/// Go build info: the 16-byte-aligned `\xff Go buildinf:` header, then (Go 1.18 and later:
/// flag bit 2) the Go version and the module information as varint-length strings. Older
/// binaries (pointers instead of inline strings) yield nothing.
fn go_buildinfo(file: &mut impl Read) -> io::Result<Option<(String, String)>> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = file.read(&mut head[got..])?;
        if n == 0 {
            return Ok(None);
        }
        got += n;
    }
    // ELF only: the Go binaries of a Linux image.
    if head != *b"\x7fELF" {
        return Ok(None);
    }
    // `buf[0]` is always at a file offset that is a multiple of 16.
    let mut buf: Vec<u8> = head.to_vec();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut eof = false;
    loop {
        // Search every 16-byte boundary with a whole header in `buf`.
        let mut found = None;
        let mut at = 0;
        while at + 32 <= buf.len() {
            if buf[at..].starts_with(MAGIC) {
                found = Some(at);
                break;
            }
            at += 16;
        }
        if let Some(at) = found {
            // Read what the strings need (or to the end of the file).
            let want = at + 32 + MAX_GO_BUILDINFO;
            while buf.len() < want && !eof {
                let n = file.read(&mut chunk)?;
                if n == 0 {
                    eof = true;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let flags = buf[at + 15];
            if flags & 2 == 0 {
                return Ok(None);
            }
            let mut rest = &buf[at + 32..buf.len().min(want)];
            let Some(go) = varint_bytes(&mut rest) else {
                return Ok(None);
            };
            let Some(modinfo) = varint_bytes(&mut rest) else {
                return Ok(None);
            };
            // The module information is framed by 16 sentinel bytes on each side.
            let modinfo = if modinfo.len() >= 32 {
                &modinfo[16..modinfo.len() - 16]
            } else {
                modinfo
            };
            // The tar reader skips what is left of the entry.
            return Ok(Some((
                String::from_utf8_lossy(go).into_owned(),
                String::from_utf8_lossy(modinfo).into_owned(),
            )));
        }
        if eof {
            return Ok(None);
        }
        // Keep the tail that could start a header, at a 16-byte boundary.
        let keep_from = at.min(buf.len()) & !15;
        buf.drain(..keep_from);
        let n = file.read(&mut chunk)?;
        if n == 0 {
            eof = true;
            // A header needs 32 bytes: nothing shorter can hold one.
            if buf.len() < 32 {
                return Ok(None);
            }
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Bytes prefixed by their length as an unsigned LEB128 varint, taken off `data`.
fn varint_bytes<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        len |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    if len > data.len() {
        return None;
    }
    let (bytes, rest) = data.split_at(len);
    *data = rest;
    Some(bytes)
}

/// `path` relative to the root, without empty, `.` or `..` components.
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect::<Vec<_>>()
        .join("/")
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content, mode) in files {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(*mode);
            header.set_size(content.len() as u64);
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn classify_finds_records_by_path() {
        let cases = [
            ("var/lib/dpkg/status.d/libc6", true),
            ("var/lib/dpkg/status.d/libc6.md5sums", false),
            ("var/lib/dpkg/status.d/python3.13", true),
            ("var/lib/dpkg/status", true),
            (
                "layers/kiln_python/packages/lib/python3.13/site-packages/flask-3.1.0.dist-info/METADATA",
                true,
            ),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                false,
            ),
            ("workspace/node_modules/express/package.json", true),
            ("workspace/node_modules/@types/node/package.json", true),
            ("workspace/node_modules/express/lib/package.json", false),
            ("workspace/package.json", false),
            ("workspace/Cargo.lock", true),
            ("layers/kiln_nodejs/node/include/node/node_version.h", true),
            ("usr/include/node/node_version.h", false),
            ("layers/x/python/include/python3.13/patchlevel.h", true),
        ];
        for (path, expected) in cases {
            assert_eq!(classify(path).is_some(), expected, "{path}");
        }
    }

    #[test]
    fn a_layer_lists_its_records_and_whiteouts() {
        let status = b"Package: libc6\nStatus: install ok installed\nVersion: 2.41-12\nArchitecture: amd64\nSource: glibc\n";
        let metadata = b"Metadata-Version: 2.4\nName: Flask\nVersion: 3.1.2\nLicense-Expression: BSD-3-Clause\n\nbody\nName: not-this\n";
        let layer = tar_of(&[
            ("var/lib/dpkg/status.d/libc6", status, 0o644),
            (
                "usr/lib/os-release",
                b"ID=debian\nVERSION_ID=\"13\"\n",
                0o644,
            ),
            (
                "layers/p/lib/python3.13/site-packages/flask-3.1.2.dist-info/METADATA",
                metadata,
                0o644,
            ),
            ("etc/.wh.gone", b"", 0o644),
        ]);
        let catalog = read_layer(&layer[..]).unwrap();
        assert_eq!(
            catalog.os_release,
            Some(("debian".to_string(), "13".to_string()))
        );
        assert_eq!(catalog.whiteouts, ["etc/gone"]);
        let names: Vec<(&str, &str)> = catalog
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("libc6", "2.41-12"), ("Flask", "3.1.2")]);
        assert_eq!(catalog.packages[1].license.as_deref(), Some("BSD-3-Clause"));
        assert_eq!(catalog.packages[0].qualifiers["upstream"], "glibc");
    }

    #[test]
    fn go_buildinfo_is_found_at_an_aligned_offset_past_a_chunk() {
        let mut binary = b"\x7fELF".to_vec();
        binary.resize(300 * 1024, 0);
        let mut header = b"\xff Go buildinf:".to_vec();
        header.push(8); // pointer size
        header.push(2); // inline strings
        header.resize(32, 0);
        binary.extend_from_slice(&header);
        let go = b"go1.24.1";
        let modinfo = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/a/b\tv1.2.3\th1:x=\n\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";
        binary.push(u8::try_from(go.len()).unwrap());
        binary.extend_from_slice(go);
        binary.push(u8::try_from(modinfo.len()).unwrap());
        binary.extend_from_slice(modinfo);
        binary.resize(binary.len() + 1000, 0);
        let (version, info) = go_buildinfo(&mut &binary[..]).unwrap().unwrap();
        assert_eq!(version, "go1.24.1");
        assert!(info.contains("dep\tgithub.com/a/b\tv1.2.3"));
        // Not an ELF file: nothing.
        assert_eq!(go_buildinfo(&mut &b"#!/bin/sh\n"[..]).unwrap(), None);
    }
}
