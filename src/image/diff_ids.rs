//! Checking that an image's layers are what its configuration says: the number of
//! `diff_ids` against the number of layers, and each `diff_id` against the uncompressed
//! content of its layer.
//!
//! A layer blob is named by the digest of its *compressed* bytes, and every blob kiln takes
//! in is checked against that digest. The `diff_id` — the digest of the *uncompressed* tar —
//! comes from the configuration, which names no layer by it: a run image whose `diff_ids`
//! are wrong is accepted by the digest checks and yields an image that container tools
//! refuse. Checking a `diff_id` means decompressing the whole layer, seconds for a large base
//! image, so kiln does it once per blob: the `diff_id` found is recorded under
//! `$KILN_HOME/cache/diff-ids/<blob hex>`. The record is a fact about the blob's content
//! (which its name fixes), so it never goes stale; a configuration that claims another
//! `diff_id` for the same blob is refused from the record, without reading the blob again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use super::layout::{LayoutError, OciLayout, write_atomic};
use super::{ImageError, LoadedImage};
use crate::untrusted::{Links, read_file};

/// The `diff_ids` kiln has verified, one small file per layer blob.
#[derive(Debug, Clone)]
pub struct DiffIds {
    dir: PathBuf,
}

impl DiffIds {
    /// The records of the store rooted at `kiln_home` (`$KILN_HOME/cache/diff-ids`).
    pub fn in_home(kiln_home: &Path) -> Self {
        Self {
            dir: kiln_home.join("cache").join("diff-ids"),
        }
    }

    fn record_path(&self, blob: &Digest) -> PathBuf {
        self.dir.join(blob.digest())
    }

    /// The recorded `diff_id` of `blob`, if it was verified before.
    pub fn recorded(&self, blob: &Digest) -> Option<Digest> {
        let bytes = read_file(&self.record_path(blob), 256, Links::Refuse).ok()?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    /// Records that `blob` decompresses to content with digest `diff_id`. Failing to record
    /// only means checking again next time.
    pub fn record(&self, blob: &Digest, diff_id: &Digest) {
        if fs::create_dir_all(&self.dir).is_ok() {
            let _ = write_atomic(&self.record_path(blob), diff_id.to_string().as_bytes());
        }
    }

    /// The `diff_id` of the layer `blob` in `layout`: from the record, else by decompressing
    /// the blob (then recorded).
    pub fn diff_id(&self, layout: &OciLayout, blob: &Digest) -> Result<Digest, LayoutError> {
        if let Some(recorded) = self.recorded(blob) {
            return Ok(recorded);
        }
        let found = layout.diff_id(blob)?;
        self.record(blob, &found);
        Ok(found)
    }

    /// Checks every layer of `image` (whose blobs are in `image.layout`) against its
    /// `diff_id`, after [`check_layer_count`].
    pub fn verify(&self, image: &LoadedImage) -> Result<(), ImageError> {
        check_layer_count(image)?;
        for (layer, expected) in image.manifest.layers().iter().zip(image.diff_ids()) {
            let found = self
                .diff_id(&image.layout, layer.digest())
                .map_err(|source| ImageError::Layout {
                    reference: image.reference.to_string(),
                    source,
                })?;
            if found.to_string() != *expected {
                return Err(ImageError::Layout {
                    reference: image.reference.to_string(),
                    source: LayoutError::DiffIdMismatch {
                        layout: image.layout.root().to_path_buf(),
                        digest: layer.digest().clone(),
                        expected: expected.clone(),
                        found,
                    },
                });
            }
        }
        Ok(())
    }
}

/// Refuses an image whose configuration lists another number of `diff_ids` than its manifest
/// lists layers.
pub(crate) fn check_layer_count(image: &LoadedImage) -> Result<(), ImageError> {
    let layers = image.manifest.layers().len();
    let diff_ids = image.diff_ids().len();
    if layers == diff_ids {
        Ok(())
    } else {
        Err(ImageError::LayerCount {
            reference: image.reference.to_string(),
            layers,
            diff_ids,
        })
    }
}

/// An I/O error for a layer whose uncompressed content does not match its `diff_id`.
pub(crate) fn mismatch(layer: &str, expected: &str, found: &Digest) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "layer {layer} does not match its diff_id: the configuration says {expected}, its uncompressed content hashes to {found}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::descriptor;
    use crate::image::digest::sha256_digest;
    use crate::image::reference::ImageReference;
    use oci_spec::image::{ImageConfiguration, MediaType};

    fn image(layout: &OciLayout, layers: &[&[u8]], diff_ids: &[String]) -> LoadedImage {
        let descriptors = layers
            .iter()
            .map(|bytes| {
                let (digest, size) = layout.write_blob(bytes).unwrap();
                descriptor(MediaType::ImageLayer, &digest, size)
            })
            .collect();
        let config: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let written = crate::image::write_image(layout, descriptors, &config).unwrap();
        LoadedImage {
            reference: "oci:/x:run".parse::<ImageReference>().unwrap(),
            layout: layout.clone(),
            manifest_descriptor: written.descriptor,
            manifest: written.manifest,
            config,
        }
    }

    #[test]
    fn wrong_and_missing_diff_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path().join("l")).unwrap();
        let records = DiffIds::in_home(&dir.path().join("home"));
        let right = sha256_digest(b"layer").to_string();
        let wrong = sha256_digest(b"other").to_string();

        records
            .verify(&image(&layout, &[b"layer"], std::slice::from_ref(&right)))
            .unwrap();
        assert_eq!(
            records
                .recorded(&sha256_digest(b"layer"))
                .unwrap()
                .to_string(),
            right
        );

        let err = records
            .verify(&image(&layout, &[b"layer"], std::slice::from_ref(&wrong)))
            .unwrap_err();
        let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(message.contains("does not match its diff_id"), "{message}");
        assert!(message.contains(&wrong), "{message}");

        for diff_ids in [vec![], vec![right.clone(), right.clone()]] {
            let err = records
                .verify(&image(&layout, &[b"layer"], &diff_ids))
                .unwrap_err();
            assert!(
                matches!(err, ImageError::LayerCount { layers: 1, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("oci:/x:run"), "{err}");
        }
    }
}
