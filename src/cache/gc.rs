//! Pruning kiln's build caches and collecting the store's garbage (`kiln cache prune`).
//!
//! What the store keeps:
//!
//! - **images**: everything reachable from a name in `index.json` (built images, stack run
//!   images, pulled images). Pruning never removes a named image; `kiln rmi` does.
//! - **attached artifacts** (SBOMs, listed untagged in `index.json`): kept while the image
//!   they refer to is kept; pruning removes the others from `index.json`.
//! - **cache entries**, one per image destination: its layer cache
//!   (`cache/layers/<key>.json`), export record (`cache/exports/<key>.json`) and build record
//!   with kept layer directories (`cache/builds/<key>/`), and the blobs they reference.
//!   An entry's last use is the newest modification time of its files (every build of that
//!   image rewrites them).
//!
//! Pruning removes scratch directories of interrupted builds, half-written blob files, blobs
//! nothing references, and — to get under a size cap, or all of them with `--all` — the least
//! recently used cache entries. A cache entry removed only makes the next build of its image
//! slower.
//!
//! Concurrency: every kiln process that writes to the store holds `$KILN_HOME/gc.lock`
//! shared ([`BuildGuard`]); pruning takes it exclusively, so it never removes a blob a
//! running build has written or chosen to reuse but not yet named.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::image::{Digest, ImageIndex, ImageManifest};

use crate::store::{Store, StoreError};

/// Held (shared) by a process writing to the store; see the module docs.
#[derive(Debug)]
pub struct BuildGuard {
    _file: File,
}

fn guard_file(store: &Store) -> Result<File, StoreError> {
    let path = store.root().join("gc.lock");
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Prepare { path, source })
}

impl BuildGuard {
    /// Takes the guard (waits while a prune runs).
    pub fn acquire(store: &Store) -> Result<Self, StoreError> {
        let file = guard_file(store)?;
        file.lock_shared().map_err(|source| StoreError::Prepare {
            path: store.root().join("gc.lock"),
            source,
        })?;
        Ok(Self { _file: file })
    }
}

/// What to prune.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Remove the least recently used cache entries until the store (blobs and kept layer
    /// directories) is at most this many bytes.
    pub max_size: Option<u64>,
    /// Remove every cache entry.
    pub all: bool,
    /// Only report what would be removed.
    pub dry_run: bool,
    /// Return at once (with `None`) instead of waiting when builds are running.
    pub no_wait: bool,
}

/// What pruning did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Cache entries removed (by image destination key).
    pub cache_entries: usize,
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes freed (blobs, kept layer directories, scratch directories).
    pub bytes_freed: u64,
    /// Scratch directories of interrupted builds removed.
    pub work_dirs: usize,
    /// Unpacked build images removed (interrupted unpacks always, the others with `all`).
    pub root_filesystems: usize,
    /// Size of the store afterwards (blobs and kept layer directories).
    pub bytes_after: u64,
    /// Size of what named images need (pruning cannot go below it).
    pub bytes_images: u64,
}

/// One image destination's cache files.
#[derive(Debug, Default)]
struct Entry {
    files: Vec<PathBuf>,
    last_used: Option<SystemTime>,
    blobs: BTreeSet<String>,
    kept_bytes: u64,
}

/// Prunes the store (see the module docs). `None` when `no_wait` is set and builds are
/// running.
pub fn prune(
    store: &Store,
    options: PruneOptions,
    events: &dyn crate::event::EventSink,
) -> Result<Option<PruneReport>, StoreError> {
    let lock_path = store.root().join("gc.lock");
    let file = guard_file(store)?;
    if options.no_wait {
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(source)) => {
                return Err(StoreError::Prepare {
                    path: lock_path,
                    source,
                });
            }
        }
    } else {
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                events.event(&crate::event::Event::Step(
                    "Waiting for running kiln builds to finish before pruning".to_string(),
                ));
                file.lock().map_err(|source| StoreError::Prepare {
                    path: lock_path,
                    source,
                })?;
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StoreError::Prepare {
                    path: lock_path,
                    source,
                });
            }
        }
    }
    let mut report = PruneReport::default();

    remove_leftovers(store, options, &mut report);

    let blobs_dir = store.layout().root().join("blobs").join("sha256");
    let sizes = blob_sizes(&blobs_dir)?;
    let images = image_blobs(store)?;
    report.bytes_images = images.iter().filter_map(|b| sizes.get(b)).sum();
    let mut entries = cache_entries(store);
    let mut order: Vec<String> = entries.keys().cloned().collect();
    order.sort_by_key(|k| entries[k].last_used);
    let total = |entries: &BTreeMap<String, Entry>| -> u64 {
        let mut live: BTreeSet<&String> = images.iter().collect();
        live.extend(entries.values().flat_map(|e| e.blobs.iter()));
        live.iter().filter_map(|b| sizes.get(*b)).sum::<u64>()
            + entries.values().map(|e| e.kept_bytes).sum::<u64>()
    };
    for key in order {
        let over = options.max_size.is_some_and(|max| total(&entries) > max);
        if !options.all && !over {
            break;
        }
        let entry = entries.remove(&key).expect("ordered keys are entries");
        report.cache_entries += 1;
        report.bytes_freed += entry.kept_bytes;
        if !options.dry_run {
            for file in &entry.files {
                if file.is_dir() {
                    crate::cache::record::remove_tree(file);
                } else {
                    let _ = fs::remove_file(file);
                }
            }
        }
    }

    let mut live: BTreeSet<String> = images.clone();
    live.extend(entries.values().flat_map(|e| e.blobs.iter().cloned()));
    keep_referrers(store, &mut live, options.dry_run)?;
    for (name, size) in &sizes {
        if !live.contains(name) {
            report.blobs += 1;
            report.bytes_freed += size;
            if !options.dry_run {
                let _ = fs::remove_file(blobs_dir.join(name));
            }
        }
    }
    // The launch check's file lists and the SBOM's package lists of blobs that are gone.
    let dirs = store.state_dirs();
    for file in list(&dirs.layer_files)
        .into_iter()
        .chain(list(&dirs.layer_packages))
    {
        let blob = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"));
        let gone = blob.is_none_or(|hex| !live.contains(hex) || !sizes.contains_key(hex));
        if gone && !options.dry_run {
            let _ = fs::remove_file(&file);
        }
    }
    report.bytes_after = total(&entries);
    Ok(Some(report))
}

/// Sizes of the blob files by hex digest; half-written files (`.tmp-…`) count as garbage.
fn blob_sizes(dir: &Path) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut sizes = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(sizes),
        Err(source) => {
            return Err(StoreError::Prepare {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let size = entry.metadata().map_or(0, |m| m.len());
        sizes.insert(entry.file_name().to_string_lossy().into_owned(), size);
    }
    Ok(sizes)
}

/// Every blob reachable from the store's names (hex digests); attached artifacts are left
/// to [`keep_referrers`].
fn image_blobs(store: &Store) -> Result<BTreeSet<String>, StoreError> {
    let index = store.layout().read_index()?;
    let mut blobs = BTreeSet::new();
    for descriptor in index
        .manifests()
        .iter()
        .filter(|d| !crate::image::referrers::is_referrer_entry(d))
    {
        reachable(store, descriptor.digest(), &mut blobs);
    }
    Ok(blobs)
}

/// Adds to `live` the blobs of the artifacts whose subject is live, and (unless `dry_run`)
/// removes the other artifacts from `index.json`.
fn keep_referrers(
    store: &Store,
    live: &mut BTreeSet<String>,
    dry_run: bool,
) -> Result<(), StoreError> {
    let _lock = store.lock()?;
    let mut index = store.layout().read_index()?;
    let mut dropped = false;
    let mut kept = Vec::new();
    for entry in index.manifests() {
        if !crate::image::referrers::is_referrer_entry(entry) {
            kept.push(entry.clone());
            continue;
        }
        let subject = store
            .layout()
            .read_blob(entry.digest())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ImageManifest>(&bytes).ok())
            .and_then(|m| m.subject().clone());
        match subject {
            Some(subject) if live.contains(subject.digest().digest()) => {
                reachable(store, entry.digest(), live);
                kept.push(entry.clone());
            }
            _ => dropped = true,
        }
    }
    if dropped && !dry_run {
        index.set_manifests(kept);
        store.layout().write_index(&index)?;
    }
    Ok(())
}

/// Adds `digest` and, for a manifest or index, everything it references.
fn reachable(store: &Store, digest: &Digest, blobs: &mut BTreeSet<String>) {
    if !blobs.insert(digest.digest().to_string()) {
        return;
    }
    let Ok(bytes) = store.layout().read_blob(digest) else {
        return;
    };
    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes)
        && !manifest.layers().is_empty()
    {
        blobs.insert(manifest.config().digest().digest().to_string());
        for layer in manifest.layers() {
            blobs.insert(layer.digest().digest().to_string());
        }
    } else if let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes) {
        for child in index.manifests() {
            reachable(store, child.digest(), blobs);
        }
    } else if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) {
        blobs.insert(manifest.config().digest().digest().to_string());
    }
}

/// Removes what interrupted builds left (scratch directories, half-unpacked build images)
/// and, with `all`, the unpacked build images.
fn remove_leftovers(store: &Store, options: PruneOptions, report: &mut PruneReport) {
    // No build runs: every scratch directory is left over from an interrupted one.
    if let Ok(entries) = fs::read_dir(store.work_dir()) {
        for entry in entries.filter_map(Result::ok) {
            report.work_dirs += 1;
            report.bytes_freed += tree_size(&entry.path());
            if !options.dry_run {
                crate::cache::record::remove_tree(&entry.path());
            }
        }
    }

    // Unpacked build images: interrupted unpacks always; the others only with `all` (they
    // are made again from the image on next use).
    if let Ok(entries) = fs::read_dir(store.state_dirs().rootfs) {
        for entry in entries.filter_map(Result::ok) {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                // The layer records of unpacked roots (`<hex>.layers`): kept with their root.
                let path = entry.path();
                let root = path.with_extension("").with_extension("");
                if !options.dry_run && (options.all || !root.is_dir()) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            let interrupted = entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(b".unpacking-");
            if interrupted || options.all {
                report.root_filesystems += 1;
                report.bytes_freed += tree_size(&entry.path());
                if !options.dry_run {
                    crate::cache::record::remove_tree(&entry.path());
                }
            }
        }
    }
}

/// The cache entries by destination key.
fn cache_entries(store: &Store) -> BTreeMap<String, Entry> {
    let dirs = store.state_dirs();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let note = |key: String, path: PathBuf, entries: &mut BTreeMap<String, Entry>| {
        let entry = entries.entry(key).or_default();
        let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
        entry.last_used = entry.last_used.max(modified);
        entry.files.push(path);
    };
    for kind in [&dirs.layer_caches, &dirs.exports] {
        for file in list(kind) {
            let Some(key) = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            note(key.clone(), file.clone(), &mut entries);
            let entry = entries.get_mut(&key).expect("just noted");
            if let Ok(bytes) = crate::untrusted::read_file(
                &file,
                crate::untrusted::MAX_DOCUMENT,
                crate::untrusted::Links::Refuse,
            ) && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                collect_digests(&value, &mut entry.blobs);
            }
        }
    }
    for dir in list(&dirs.builds) {
        let Some(key) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        let record = dir.join("record.json");
        note(key.clone(), dir.clone(), &mut entries);
        let entry = entries.get_mut(&key).expect("just noted");
        if let Ok(modified) = fs::metadata(&record).and_then(|m| m.modified()) {
            entry.last_used = entry.last_used.max(Some(modified));
        }
        entry.kept_bytes = tree_size(&dir.join("layers"));
        if let Some(digest) = crate::untrusted::read_file(
            &record,
            crate::untrusted::MAX_DOCUMENT,
            crate::untrusted::Links::Refuse,
        )
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifest_digest"].as_str()?.parse::<Digest>().ok())
        {
            reachable(store, &digest, &mut entry.blobs);
        }
    }
    entries
}

/// Every `"digest": "sha256:…"` in a JSON document, as hex digests.
fn collect_digests(value: &serde_json::Value, into: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                if key == "digest"
                    && let Some(hex) = v.as_str().and_then(|s| s.strip_prefix("sha256:"))
                {
                    into.insert(hex.to_string());
                }
                collect_digests(v, into);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_digests(v, into);
            }
        }
        _ => {}
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// A size that [`parse_size`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// No number where the size starts.
    #[error("{text:?} is not a size; write e.g. 500M or 10G")]
    NotANumber {
        /// The text given.
        text: String,
    },
    /// A unit other than K, M, G or T.
    #[error("{text:?} has an unknown unit; use K, M, G or T")]
    UnknownUnit {
        /// The text given.
        text: String,
    },
}

/// Parses a size: bytes, or a number with `K`, `M`, `G`, `T` (powers of 1024, with or
/// without `iB`/`B`): `500M`, `10GiB`, `1.5G`.
///
/// # Errors
///
/// [`SizeError`] when `text` is no number with a known unit.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| SizeError::NotANumber {
        text: text.to_string(),
    })?;
    let power = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.to_string(),
            });
        }
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((number * 1024f64.powi(power)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }
}
