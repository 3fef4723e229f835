//! kiln's local store: a content-addressed OCI image layout under `$KILN_HOME`.
//!
//! ```text
//! $KILN_HOME/            (default: $XDG_DATA_HOME/kiln, else ~/.local/share/kiln)
//!   store/               an OCI image layout: the default build destination and layer cache
//!   work/                per-build scratch directories, removed when a build ends
//!   cache/layers/        layer cache metadata per destination (see crate::cache)
//!   cache/builds/        build records and kept cache layers (see crate::cache::record)
//!   cache/exports/       export memos (see crate::lifecycle::export)
//!   cache/diff-ids/      verified diff_ids of layer blobs, one small file per blob
//!                        (see crate::image::diff_ids)
//!   cache/layer-files/   the file list of each run image layer blob, for the launch check
//!                        (see crate::lifecycle::export)
//!   lock                 taken exclusively while index.json is rewritten
//! ```
//!
//! Blobs are published by atomic rename and never rewritten, so concurrent kiln processes can
//! share a store; only changes to `index.json` take the lock.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest};

use crate::image::layout::{LayoutError, OciLayout, ref_name};

/// The directories of the state kept between builds (see [`crate::cache`]).
#[derive(Debug, Clone)]
pub struct StateDirs {
    /// Layer cache metadata, one file per destination.
    pub layer_caches: PathBuf,
    /// Build records and kept cache layers, one directory per destination.
    pub builds: PathBuf,
    /// Export memos, one file per destination.
    pub exports: PathBuf,
    /// Build images unpacked as root file systems, one directory per image.
    pub rootfs: PathBuf,
    /// The file list of each run image layer blob (`<hex>.json`), for the launch check.
    pub layer_files: PathBuf,
    /// The packages of each image layer blob (`<hex>.json`), for the SBOM.
    pub layer_packages: PathBuf,
}

/// Where the state kept between builds of one destination lives.
#[derive(Debug, Clone)]
pub struct DestinationState {
    /// The layer cache metadata (`crate::cache::LayerCache`).
    pub layer_cache: PathBuf,
    /// The build record and kept layers (`crate::cache::record::BuildRecord`).
    pub build_dir: PathBuf,
    /// The export memo (`crate::cache::memo::ExportMemo`).
    pub export_memo: PathBuf,
}

/// Errors opening or changing the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Neither `KILN_HOME`, `XDG_DATA_HOME` nor `HOME` is set.
    #[error("cannot find a place for kiln's store: set KILN_HOME (or HOME)")]
    NoHome,
    /// The store directory could not be created or locked.
    #[error("failed to prepare kiln's store at {path}")]
    Prepare {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The store's layout is damaged.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// kiln's local store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    layout: OciLayout,
}

/// An image held in the store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredImage {
    /// Its name.
    pub name: String,
    /// The manifest (or index) descriptor.
    pub descriptor: Descriptor,
    /// Total size of its blobs (config and compressed layers), if the manifest is readable.
    pub size: Option<u64>,
}

/// The store's lock, released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Where the store lives by default: `$KILN_HOME`, else `$XDG_DATA_HOME/kiln`, else
    /// `$HOME/.local/share/kiln`.
    pub fn default_root() -> Result<PathBuf, StoreError> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(home) = var("KILN_HOME") {
            return Ok(PathBuf::from(home));
        }
        if let Some(data) = var("XDG_DATA_HOME") {
            return Ok(PathBuf::from(data).join("kiln"));
        }
        var("HOME")
            .map(|home| PathBuf::from(home).join(".local/share/kiln"))
            .ok_or(StoreError::NoHome)
    }

    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        // Absolute, because buildpacks run in a namespace rooted under the store.
        let root = std::path::absolute(&root).map_err(|source| StoreError::Prepare {
            path: root.clone(),
            source,
        })?;
        for dir in [root.clone(), root.join("work")] {
            fs::create_dir_all(&dir).map_err(|source| StoreError::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
        let store = Self {
            layout: OciLayout::open(root.join("store")).or_else(|_| {
                let _lock = lock_file(&root.join("lock"))?;
                OciLayout::ensure(root.join("store")).map_err(StoreError::from)
            })?,
            root,
        };
        Ok(store)
    }

    /// The store's root directory (`$KILN_HOME`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the state kept between builds lives (see [`crate::cache`]).
    pub fn state_dirs(&self) -> StateDirs {
        let cache = self.root.join("cache");
        StateDirs {
            layer_caches: cache.join("layers"),
            builds: cache.join("builds"),
            exports: cache.join("exports"),
            rootfs: cache.join("rootfs"),
            layer_files: cache.join("layer-files"),
            layer_packages: cache.join("layer-packages"),
        }
    }

    /// Where the state kept between builds of `destination` (its display form) lives: one
    /// key per destination, the SHA-256 of its name, in each of [`Store::state_dirs`].
    pub fn state_for(&self, destination: &str) -> DestinationState {
        let key = crate::image::digest::sha256_digest(destination.as_bytes())
            .digest()
            .to_string();
        let dirs = self.state_dirs();
        DestinationState {
            layer_cache: dirs.layer_caches.join(format!("{key}.json")),
            build_dir: dirs.builds.join(&key),
            export_memo: dirs.exports.join(format!("{key}.json")),
        }
    }

    /// The OCI layout holding images and blobs.
    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    /// Directory for per-build scratch space.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// Takes the store's exclusive lock (blocking until it is free).
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        lock_file(&self.root.join("lock"))
    }

    /// Names the image `descriptor` as `name` in the store, replacing any earlier image of
    /// that name.
    pub fn tag(&self, descriptor: &Descriptor, name: &str) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        self.layout.tag(descriptor, name)?;
        Ok(())
    }

    /// Runs `change` on the store's layout under the store's lock: for changes to
    /// `index.json` beyond naming images (listing referrers beside the image they refer to,
    /// see `image::referrers::add_to_index`).
    pub fn change_index<T>(
        &self,
        change: impl FnOnce(&OciLayout) -> Result<T, LayoutError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        Ok(change(&self.layout)?)
    }

    /// Removes the name `name`; returns whether it existed.
    pub fn untag(&self, name: &str) -> Result<bool, StoreError> {
        let _lock = self.lock()?;
        Ok(self.layout.untag(name)?)
    }

    /// The images the store holds, sorted by name.
    pub fn images(&self) -> Result<Vec<StoredImage>, StoreError> {
        let index = self.layout.read_index()?;
        let mut images: Vec<StoredImage> = index
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = ref_name(d)?.to_string();
                let size = self
                    .layout
                    .read_blob(d.digest())
                    .ok()
                    .and_then(|bytes| ImageManifest::from_reader(&bytes[..]).ok())
                    .map(|m| {
                        m.config().size() + m.layers().iter().map(Descriptor::size).sum::<u64>()
                    });
                Some(StoredImage {
                    name,
                    descriptor: d.clone(),
                    size,
                })
            })
            .collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }
}

fn lock_file(path: &Path) -> Result<StoreLock, StoreError> {
    let prepare = |source| StoreError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(prepare)?;
    file.lock().map_err(prepare)?;
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_layout_and_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("home")).unwrap();
        assert!(store.root().join("store/oci-layout").is_file());
        assert!(store.images().unwrap().is_empty());
        // Opening again reuses it.
        Store::open(dir.path().join("home")).unwrap();
    }
}
