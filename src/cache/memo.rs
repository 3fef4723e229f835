//! Not compressing a layer again when its content did not change.
//!
//! Compression is most of an export's cost. kiln remembers, per image destination, what each
//! layer of the last export was (`$KILN_HOME/cache/exports/<sha256 of the destination>.json`:
//! layer name → `diff_id`, blob digest and sizes). When the next export of that image has a
//! layer of the same name, kiln first computes the layer's `diff_id` — the tar stream hashed,
//! nothing compressed or written — and if it is the one recorded and the recorded blob is
//! still in the store, intact, the blob is used as it is. Otherwise (and for layers it has no
//! record of) the layer is written as usual, in one pass.
//!
//! Before hashing, kiln compares stat fingerprints ([`crate::fingerprint`]): if the layer's
//! source tree has the fingerprint recorded when that `diff_id` was computed — the same
//! files, inodes and change times, which is what a cache layer kept between builds and left
//! alone by its buildpack looks like — the `diff_id` is known without reading anything.
//! Modification times alone would not do: package managers write fixed ones (npm's are all
//! 1985-10-26), so two versions of a dependency can have the same sizes and times; change
//! times cannot be set back. Likewise the recorded blob is re-hashed only if its own file
//! changed since it was last verified. Hashing the tar stream costs a fraction of
//! compressing it.
//!
//! The record is replaced atomically after a successful build; a missing, unreadable or
//! stale record only means the layer is compressed again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use crate::image::digest::HashingReader;
use crate::image::layout::{LayoutError, OciLayout, write_atomic};
use crate::layer::{
    LayerBlob, LayerError, LayerSpec, diff_id_of, spec_fingerprint_with, write_layer,
};
use crate::reproducible::COMPRESSION;
use crate::store::Store;

/// One exported layer, as remembered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    diff_id: String,
    digest: String,
    size: u64,
    uncompressed_size: u64,
    /// [`spec_fingerprint`] of the layer's source when `diff_id` was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// [`blob_stamp`] of the blob when it was last known intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blob: Option<String>,
    /// [`COMPRESSION`] of the kiln that compressed the blob: a blob compressed otherwise is
    /// not reused, so an image's digest never depends on which kiln filled the store.
    #[serde(default)]
    compression: String,
}

/// What the last export of one image wrote, and what this one writes.
#[derive(Debug, Default)]
pub(crate) struct ExportMemo {
    file: Option<PathBuf>,
    previous: BTreeMap<String, Entry>,
    current: Mutex<BTreeMap<String, Entry>>,
}

impl ExportMemo {
    /// The memo of the image published to `destination` (its display form).
    pub(crate) fn for_destination(store: &Store, destination: &str) -> Self {
        let file = store.state_for(destination).export_memo;
        let previous = crate::untrusted::read_file(
            &file,
            crate::untrusted::MAX_DOCUMENT,
            crate::untrusted::Links::Refuse,
        )
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
        Self {
            file: Some(file),
            previous,
            current: Mutex::default(),
        }
    }

    /// A memo that remembers nothing (every layer is written).
    pub(crate) fn disabled() -> Self {
        Self::default()
    }

    /// Writes the layer `name` described by `spec` into `layout`, or, if its content is what
    /// the last export recorded for `name`, returns the recorded blob without compressing.
    ///
    /// `tree` stands for the fingerprint of `spec`'s source tree when the caller knows it
    /// better (the app's source, for an app layer the build did not touch).
    pub(crate) fn write_layer(
        &self,
        layout: &OciLayout,
        name: &str,
        spec: &LayerSpec,
        tree: Option<&str>,
    ) -> Result<LayerBlob, LayerError> {
        let blob = match self.unchanged(layout, name, spec, tree)? {
            Some(blob) => blob,
            None => write_layer(layout, spec)?,
        };
        // Nothing writes to the source any more: its fingerprint now belongs to this diff_id.
        let source = spec_fingerprint_with(spec, tree).ok();
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                name.to_string(),
                Entry {
                    diff_id: blob.diff_id.to_string(),
                    digest: blob.digest.to_string(),
                    size: blob.size,
                    uncompressed_size: blob.uncompressed_size,
                    source,
                    blob: blob_stamp(layout, &blob.digest),
                    compression: COMPRESSION.to_string(),
                },
            );
        Ok(blob)
    }

    /// The recorded blob of `name` if `spec` has its `diff_id` and the blob is intact.
    fn unchanged(
        &self,
        layout: &OciLayout,
        name: &str,
        spec: &LayerSpec,
        tree: Option<&str>,
    ) -> Result<Option<LayerBlob>, LayerError> {
        let Some(entry) = self.previous.get(name) else {
            return Ok(None);
        };
        if entry.compression != COMPRESSION {
            return Ok(None);
        }
        let (Ok(diff_id), Ok(digest)) = (
            entry.diff_id.parse::<Digest>(),
            entry.digest.parse::<Digest>(),
        ) else {
            return Ok(None);
        };
        let untouched = entry.blob.is_some() && entry.blob == blob_stamp(layout, &digest);
        if !untouched && !blob_intact(layout, &digest, entry.size) {
            // Damaged on disk: removed, so that writing the layer puts a good copy back.
            let _ = fs::remove_file(layout.blob_path(&digest));
            return Ok(None);
        }
        let same_source =
            entry.source.is_some() && entry.source == spec_fingerprint_with(spec, tree).ok();
        if !same_source && diff_id_of(spec)? != diff_id {
            return Ok(None);
        }
        Ok(Some(LayerBlob {
            diff_id,
            digest,
            size: entry.size,
            uncompressed_size: entry.uncompressed_size,
            existed: true,
        }))
    }

    /// Records this export's layers for the next one (atomically).
    pub(crate) fn save(&self) -> Result<(), LayoutError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == self.previous {
            return Ok(());
        }
        let write_err = |source| LayoutError::Write {
            path: file.clone(),
            source,
        };
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(write_err)?;
        }
        let bytes =
            serde_json::to_vec_pretty(&*current).map_err(|e| write_err(io::Error::other(e)))?;
        write_atomic(file, &bytes)
    }
}

/// A stat stamp of the blob file (see [`crate::fingerprint`]): unchanged means the file was
/// not written since.
fn blob_stamp(layout: &OciLayout, digest: &Digest) -> Option<String> {
    let path = layout.blob_path(digest);
    let meta = fs::symlink_metadata(&path).ok()?;
    let mut stamp = crate::fingerprint::Fingerprinter::new();
    stamp
        .add_entry(std::path::Path::new(""), &path, &meta)
        .ok()?;
    Some(stamp.finish())
}

/// Whether the blob `digest` is in `layout` with `size` bytes and that digest (re-hashed:
/// a blob damaged on disk is written again rather than reused).
fn blob_intact(layout: &OciLayout, digest: &Digest, size: u64) -> bool {
    let Ok(file) = layout.open_blob(digest) else {
        return false;
    };
    let mut reader = HashingReader::new(io::BufReader::new(file));
    if io::copy(&mut reader, &mut io::sink()).is_err() {
        return false;
    }
    let (found, len) = reader.finish();
    found == *digest && len == size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path) -> LayerSpec {
        LayerSpec {
            parents: vec![],
            source: dir.to_path_buf(),
            target: "workspace".to_string(),
            only: None,
            uid: 1000,
            gid: 1000,
            entry_metadata: None,
        }
    }

    #[test]
    fn unchanged_layers_reuse_their_blob_and_changed_or_damaged_ones_are_written() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("a.txt"), "one").unwrap();

        let memo = ExportMemo::for_destination(&store, "app:1");
        let first = memo
            .write_layer(store.layout(), "app", &spec(src.path()), None)
            .unwrap();
        assert!(!first.existed);
        memo.save().unwrap();

        // Same content, rewritten (new mtime): reused without writing.
        fs::write(src.path().join("a.txt"), "one").unwrap();
        let memo = ExportMemo::for_destination(&store, "app:1");
        let again = memo
            .write_layer(store.layout(), "app", &spec(src.path()), None)
            .unwrap();
        assert!(again.existed);
        assert_eq!(again.digest, first.digest);
        assert_eq!(again.uncompressed_size, first.uncompressed_size);
        memo.save().unwrap();

        // Another image has no record: written (the store then says it existed).
        let other = ExportMemo::for_destination(&store, "other:1");
        assert!(other.previous.is_empty());

        // Changed content: a new blob.
        fs::write(src.path().join("a.txt"), "two").unwrap();
        let memo = ExportMemo::for_destination(&store, "app:1");
        let changed = memo
            .write_layer(store.layout(), "app", &spec(src.path()), None)
            .unwrap();
        assert_ne!(changed.digest, first.digest);
        memo.save().unwrap();

        // A caller that vouches for the tree (the app source, untouched by the build) gets the
        // recorded blob back without kiln reading the tree — the same vouching, the same blob.
        let memo = ExportMemo::for_destination(&store, "vouched:1");
        let vouched = memo
            .write_layer(store.layout(), "app", &spec(src.path()), Some("tree-1"))
            .unwrap();
        memo.save().unwrap();
        fs::write(src.path().join("a.txt"), "changed behind the vouching").unwrap();
        let memo = ExportMemo::for_destination(&store, "vouched:1");
        let again = memo
            .write_layer(store.layout(), "app", &spec(src.path()), Some("tree-1"))
            .unwrap();
        assert_eq!(again.digest, vouched.digest);
        let memo = ExportMemo::for_destination(&store, "vouched:1");
        let other = memo
            .write_layer(store.layout(), "app", &spec(src.path()), Some("tree-2"))
            .unwrap();
        assert_ne!(other.digest, vouched.digest, "another tree is read");
        fs::write(src.path().join("a.txt"), "two").unwrap();

        // A damaged blob is not reused: the layer is written again, repairing it.
        let path = store.layout().blob_path(&changed.digest);
        let mut perms = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path, perms).unwrap();
        fs::write(&path, b"garbage").unwrap();
        let memo = ExportMemo::for_destination(&store, "app:1");
        let repaired = memo
            .write_layer(store.layout(), "app", &spec(src.path()), None)
            .unwrap();
        assert_eq!(repaired.digest, changed.digest);
        assert!(blob_intact(store.layout(), &repaired.digest, repaired.size));
    }
}
