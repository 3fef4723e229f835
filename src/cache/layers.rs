//! The layer cache: the `cache = true` layers of one image's last build, restored before the
//! next build of the same image so buildpacks can reuse them (a dependency layer whose
//! lockfile did not change, a compiler cache).
//!
//! Layers are ordinary layer blobs in kiln's store (content-addressed, so a layer that is
//! both cached and in the image is stored once); what belongs to which image is a small JSON
//! file per image, `$KILN_HOME/cache/layers/<sha256 of the image's destination>.json`, in the
//! shape of the lifecycle's `io.buildpacks.lifecycle.cache.metadata`:
//!
//! ```json
//! {"buildpacks": [{"key": "kiln/python", "version": "0.1.0",
//!   "layers": {"packages": {"sha": "sha256:<diff_id>", "digest": "sha256:<blob>",
//!                           "data": {…}, "build": true, "launch": true, "cache": true}}}]}
//! ```
//!
//! Restoring follows the Buildpack API: for each buildpack of the group, each cached layer's
//! `<layer>.toml` is written with its `[metadata]` (no `[types]`: the buildpack declares them
//! again) and its contents are extracted. Every blob is verified (compressed digest and
//! `diff_id`) while it is extracted; an entry that is missing, corrupt or unreadable is
//! skipped with a warning, never fatal. The metadata file is replaced atomically after each
//! successful build, so a killed build leaves the previous cache usable.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use crate::buildpack_id::BuildpackId;
use crate::cache::record::KeptLayers;
use crate::event::{Event, EventSink};
use crate::image::digest::HashingReader;
use crate::image::layout::{OciLayout, write_atomic};
use crate::labels::LifecycleMetadata;
use crate::layer::buildpack_layer_spec;
use crate::layer::{diff_id_of, spec_fingerprint, write_layer};
use crate::lifecycle::build::BuildOutput;
use crate::lifecycle::detect::GroupMember;
use crate::lifecycle::export::ExportedLayer;
use crate::store::Store;
use crate::untrusted::{self, Beneath, Links, ParentLinks};

/// The cache metadata of one image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct CacheMetadata {
    /// Per buildpack, in group order.
    #[serde(default)]
    pub buildpacks: Vec<CachedBuildpack>,
}

impl CacheMetadata {
    /// `buildpack`'s cached layer `name`, if its blob is still in the store.
    fn stored_layer(
        &self,
        buildpack: &str,
        name: &str,
        layout: &OciLayout,
    ) -> Option<&CachedLayer> {
        let layer = self
            .buildpacks
            .iter()
            .find(|b| b.key == buildpack)?
            .layers
            .get(name)?;
        layout.has_blob(&layer.digest).then_some(layer)
    }

    /// The blob digest of `buildpack`'s layer `name` if it was cached with this `diff_id`
    /// and its blob is still in the store.
    fn unchanged(
        &self,
        buildpack: &str,
        name: &str,
        diff_id: &Digest,
        layout: &OciLayout,
    ) -> Option<Digest> {
        let layer = self.stored_layer(buildpack, name, layout)?;
        (layer.sha == *diff_id).then(|| layer.digest.clone())
    }

    /// The `diff_id` and blob digest of `buildpack`'s layer `name` if it was cached from a
    /// tree with this stat `fingerprint` and its blob is still in the store.
    fn same_source(
        &self,
        buildpack: &str,
        name: &str,
        fingerprint: Option<&str>,
        layout: &OciLayout,
    ) -> Option<(Digest, Digest)> {
        let layer = self.stored_layer(buildpack, name, layout)?;
        (fingerprint.is_some() && layer.fingerprint.as_deref() == fingerprint)
            .then(|| (layer.sha.clone(), layer.digest.clone()))
    }
}

/// Where [`LayerCache::restore`] finds what it restores besides the cache's own record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
    /// The previous image's lifecycle metadata.
    pub previous: Option<&'a LifecycleMetadata>,
    /// Cache layer directories kept from the last build (see [`crate::cache::record`]), used
    /// instead of extracting a layer when they are still what was cached.
    pub kept: Option<&'a KeptLayers>,
    /// Whether to restore cache layers at all (not with `--clear-cache`).
    pub use_cache: bool,
}

/// One buildpack's cached layers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CachedBuildpack {
    /// Buildpack id.
    pub key: BuildpackId,
    /// Buildpack version.
    pub version: String,
    /// Layers by name.
    #[serde(default)]
    pub layers: BTreeMap<String, CachedLayer>,
}

/// One cached layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CachedLayer {
    /// `diff_id`.
    pub sha: Digest,
    /// Blob digest in the store.
    pub digest: Digest,
    /// The layer's `[metadata]`.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Types it had.
    pub build: bool,
    /// Types it had.
    pub launch: bool,
    /// Types it had.
    pub cache: bool,
    /// For a layer not in the image: the stat fingerprint of its contents when `sha` was
    /// computed (see [`crate::fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The cache of one image (by its destination).
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    file: PathBuf,
}

/// Why a cached layer could not be restored.
#[derive(Debug, thiserror::Error)]
enum RestoreError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("its blob is not in the store")]
    Missing,
    #[error("its blob is corrupt (expected {expected}, found {found})")]
    Corrupt { expected: String, found: String },
    #[error("it holds an unsafe path {0}")]
    UnsafePath(String),
    #[error("its metadata cannot be written: {0}")]
    Metadata(MetadataError),
}

impl LayerCache {
    /// The cache of the image published to `destination` (its display form).
    pub(crate) fn for_destination(store: &Store, destination: &str) -> Self {
        Self {
            file: store.state_for(destination).layer_cache,
        }
    }

    /// The metadata file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Replaces the metadata (atomically), e.g. with a cache image's.
    pub(crate) fn replace(&self, metadata: &CacheMetadata) -> Result<(), crate::Error> {
        let parent = self.file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|source| crate::Error::Prepare {
            path: parent.to_path_buf(),
            source,
        })?;
        let json = serde_json::to_vec_pretty(metadata).expect("cache metadata serializes");
        write_atomic(&self.file, &json).map_err(|e| crate::Error::Store(e.into()))
    }

    /// Reads the metadata; a missing or unreadable file is an empty cache (with a warning
    /// for the unreadable one).
    pub(crate) fn metadata(&self, events: &dyn EventSink) -> CacheMetadata {
        let parsed = match untrusted::read_file(&self.file, untrusted::MAX_DOCUMENT, Links::Refuse)
        {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
            Err(e) if e.is_not_found() => return CacheMetadata::default(),
            Err(e) => Err(e.to_string()),
        };
        parsed.unwrap_or_else(|e| {
            events.event(&Event::Warning(format!(
                "the layer cache {} is unreadable ({e}); building without it",
                self.file.display()
            )));
            CacheMetadata::default()
        })
    }

    /// Restores what the group's buildpacks may reuse into `layers_dir`
    /// (`<layers>/<escaped id>/…`), per the Buildpack API: each buildpack's `store.toml` and
    /// the `<name>.toml` of its launch layers from the previous image's metadata; the
    /// `<name>.toml` and contents of its `cache = true` layers from this cache (see
    /// [`Sources`]). Returns how many cache layers were restored.
    pub(crate) fn restore(
        &self,
        layout: &OciLayout,
        group: &[GroupMember],
        layers_dir: &Path,
        sources: &Sources<'_>,
        events: &dyn EventSink,
    ) -> usize {
        let Sources {
            previous,
            kept,
            use_cache,
        } = *sources;
        let metadata = if use_cache {
            self.metadata(events)
        } else {
            CacheMetadata::default()
        };
        let mut restored = 0;
        for member in group {
            let id = member.buildpack.id();
            let escaped = id.escaped();
            let bp_dir = layers_dir.join(&escaped);
            let cached = metadata.buildpacks.iter().find(|b| b.key == id.as_str());
            let in_image =
                previous.and_then(|p| p.buildpacks.iter().find(|b| b.key == id.as_str()));
            if let Some(image) = in_image {
                if let Some(store) = &image.store
                    && let Err(e) = write_metadata_toml(&bp_dir, "store.toml", &store.metadata)
                {
                    events.event(&Event::Warning(format!(
                        "store.toml of {id} is not restored: {e}"
                    )));
                }
                // Launch layers: metadata only. Build-only-at-build-time layers are rebuilt,
                // and a cached one must also be in this cache (restored below).
                for (name, layer) in &image.layers {
                    if !layer.launch || layer.build || layer.cache {
                        continue;
                    }
                    if let Err(e) = untrusted::component(name, "layer name") {
                        events.event(&Event::Warning(format!(
                            "the previous image's metadata of {id} is not restored: {e}"
                        )));
                        continue;
                    }
                    if let Err(e) =
                        write_metadata_toml(&bp_dir, &format!("{name}.toml"), &layer.data)
                    {
                        events.event(&Event::Warning(format!(
                            "metadata of layer '{id}:{name}' is not restored: {e}"
                        )));
                    }
                }
            }
            let Some(cached) = cached else {
                continue;
            };
            for (name, layer) in cached.layers.iter().filter(|(_, l)| l.cache) {
                // Names come from a cache file or a cache image anyone with push access to
                // its tag could have written: one path component or nothing.
                if let Err(e) = untrusted::component(name, "layer name") {
                    events.event(&Event::Warning(format!(
                        "a cache layer of {id} is not restored: {e}"
                    )));
                    continue;
                }
                // The image and the cache disagree about a cached launch layer: rebuild it.
                let image_sha = in_image
                    .and_then(|b| b.layers.get(name))
                    .filter(|l| l.launch && l.cache)
                    .map(|l| l.sha.as_ref());
                if image_sha.is_some_and(|sha| sha != Some(&layer.sha)) {
                    continue;
                }
                let result = if kept
                    .is_some_and(|k| k.take(&escaped, name, &layer.sha, &bp_dir.join(name)))
                {
                    write_metadata_toml(&bp_dir, &format!("{name}.toml"), &layer.data)
                        .map_err(RestoreError::Metadata)
                        .map(|()| "Reused")
                } else {
                    restore_layer(layout, &bp_dir, &escaped, name, layer).map(|()| "Restored")
                };
                match result {
                    Ok(verb) => {
                        restored += 1;
                        events.event(&Event::Step(format!("{verb} cache layer '{id}:{name}'")));
                    }
                    Err(e) => {
                        let _ = fs::remove_dir_all(bp_dir.join(name));
                        let _ = fs::remove_file(bp_dir.join(format!("{name}.toml")));
                        events.event(&Event::Warning(format!(
                            "cache layer '{id}:{name}' is not restored: {e}"
                        )));
                    }
                }
            }
        }
        restored
    }

    /// Records the `cache = true` layers of a successful build: launch layers by the blob the
    /// export wrote, the others written to the store now. The metadata file is replaced
    /// atomically; the metadata written is returned.
    pub(crate) fn save(
        &self,
        layout: &OciLayout,
        build: &BuildOutput,
        exported: &[ExportedLayer],
        owner: (u64, u64),
        events: &dyn EventSink,
    ) -> Result<CacheMetadata, crate::Error> {
        let previous = self.metadata(events);
        let mut metadata = CacheMetadata::default();
        for output in &build.buildpacks {
            let id = output.buildpack.id();
            let mut entry = CachedBuildpack {
                key: id.clone(),
                version: output.buildpack.version().to_string(),
                layers: BTreeMap::new(),
            };
            for layer in output.layers.iter().filter(|l| l.types.cache) {
                let Some(dir) = &layer.dir else {
                    events.event(&Event::Warning(format!(
                        "cache layer '{id}:{}' has no contents; not caching it",
                        layer.name
                    )));
                    continue;
                };
                let full_name = format!("{id}:{}", layer.name);
                let mut fingerprint = None;
                let (diff_id, digest) = match exported.iter().find(|e| e.name == full_name) {
                    Some(e) if layer.types.launch => (e.diff_id.clone(), e.digest.clone()),
                    _ => {
                        let spec =
                            buildpack_layer_spec(&id.escaped(), &layer.name, dir, owner.0, owner.1);
                        let failed = |source| crate::lifecycle::export::ExportError::Layer {
                            name: format!("{full_name} (cache)"),
                            source,
                        };
                        // An unchanged cache (the common case) is not compressed and written
                        // again: recognised by its stat fingerprint, else by hashing it.
                        fingerprint = spec_fingerprint(&spec).ok();
                        if let Some((diff_id, digest)) = previous.same_source(
                            id.as_str(),
                            &layer.name,
                            fingerprint.as_deref(),
                            layout,
                        ) {
                            (diff_id, digest)
                        } else {
                            let diff_id = diff_id_of(&spec).map_err(failed)?;
                            if let Some(digest) =
                                previous.unchanged(id.as_str(), &layer.name, &diff_id, layout)
                            {
                                (diff_id, digest)
                            } else {
                                let blob = write_layer(layout, &spec).map_err(failed)?;
                                (blob.diff_id, blob.digest)
                            }
                        }
                    }
                };
                entry.layers.insert(
                    layer.name.clone(),
                    CachedLayer {
                        sha: diff_id,
                        digest,
                        data: crate::labels::toml_to_json(&layer.metadata),
                        build: layer.types.build,
                        launch: layer.types.launch,
                        cache: true,
                        fingerprint,
                    },
                );
            }
            if !entry.layers.is_empty() {
                metadata.buildpacks.push(entry);
            }
        }
        self.replace(&metadata)?;
        Ok(metadata)
    }
}

/// Extracts one cached layer (verified) into `bp_dir/<name>` and writes `<name>.toml`.
fn restore_layer(
    layout: &OciLayout,
    bp_dir: &Path,
    escaped: &str,
    name: &str,
    layer: &CachedLayer,
) -> Result<(), RestoreError> {
    let digest = &layer.digest;
    if !layout.has_blob(digest) {
        return Err(RestoreError::Missing);
    }
    fs::create_dir_all(bp_dir)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".restore-{name}-"))
        .tempdir_in(bp_dir)?;
    let file = layout
        .open_blob(digest)
        .map_err(|_| RestoreError::Missing)?;
    let compressed = HashingReader::new(file);
    let uncompressed = HashingReader::new(flate2::read::MultiGzDecoder::new(compressed));
    let prefix = format!("layers/{escaped}/{name}");
    let mut archive = tar::Archive::new(uncompressed);
    extract(&mut archive, &prefix, staging.path())?;
    let mut uncompressed = archive.into_inner();
    io::copy(&mut uncompressed, &mut io::sink())?;
    let (gz, diff_id, _) = uncompressed.into_parts();
    let (_, blob_digest, _) = gz.into_inner().into_parts();
    for (expected, found) in [(&layer.digest, blob_digest), (&layer.sha, diff_id)] {
        if *expected != found {
            return Err(RestoreError::Corrupt {
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
    }
    let dest = bp_dir.join(name);
    let _ = fs::remove_dir_all(&dest);
    fs::rename(staging.keep(), &dest)?;
    write_metadata_toml(bp_dir, &format!("{name}.toml"), &layer.data)
        .map_err(RestoreError::Metadata)
}

/// Why a layer's `<name>.toml` (or `store.toml`) could not be written back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MetadataError {
    /// The cached metadata has no TOML form.
    #[error(transparent)]
    Convert(#[from] toml::ser::Error),
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] io::Error),
}

/// Writes `bp_dir/file_name` holding `[metadata]` (and no `[types]`: a buildpack declares them
/// again in every build).
fn write_metadata_toml(
    bp_dir: &Path,
    file_name: &str,
    data: &serde_json::Value,
) -> Result<(), MetadataError> {
    let metadata: toml::Value = match data {
        serde_json::Value::Null => toml::Value::Table(toml::Table::new()),
        data => toml::Value::try_from(data)?,
    };
    let mut doc = toml::Table::new();
    doc.insert("metadata".to_string(), metadata);
    let text = toml::to_string(&doc)?;
    fs::create_dir_all(bp_dir)?;
    fs::write(bp_dir.join(file_name), text)?;
    Ok(())
}

/// Extracts the entries under `prefix/` into `dest` with [`Beneath`]: no entry path with
/// `..` or a root, no writing through a symbolic link (an archive that makes `link -> /x` and
/// then `link/file` is refused), hard links only to entries beneath `dest`. Directory modes
/// are applied last, so a read-only directory (Go's module cache) still receives its files.
/// Kiln extracts into a fresh staging directory and renames it into place only after the
/// blob's digests were checked, so a refused or corrupt layer leaves nothing behind.
fn extract<R: Read>(
    archive: &mut tar::Archive<R>,
    prefix: &str,
    dest: &Path,
) -> Result<(), RestoreError> {
    let mut dir = Beneath::open(dest, ParentLinks::Refuse)?;
    let prefix = Path::new(prefix);
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Ok(rel) = path.strip_prefix(prefix) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let rel = safe_relative(rel)?;
        let mode = entry.header().mode()?;
        let unsafe_entry = |e: io::Error| {
            if e.kind() == io::ErrorKind::InvalidInput {
                RestoreError::UnsafePath(e.to_string())
            } else {
                RestoreError::Io(e)
            }
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                dir.create_dir(&rel, 0o700).map_err(unsafe_entry)?;
                dir_modes.push((rel, mode));
            }
            tar::EntryType::Link => {
                let link = entry.link_name()?.unwrap_or_default().into_owned();
                let link_rel = link
                    .strip_prefix(prefix)
                    .map_err(|_| RestoreError::UnsafePath(link.display().to_string()))?;
                dir.hard_link(&safe_relative(link_rel)?, &rel)
                    .map_err(unsafe_entry)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                dir.symlink(&rel, &target).map_err(unsafe_entry)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                dir.write_file(&rel, mode, &mut entry)
                    .map_err(unsafe_entry)?;
            }
            // kiln's layer writer makes nothing else; a device or FIFO in a cache is hostile.
            other => {
                return Err(RestoreError::UnsafePath(format!(
                    "{} (a {other:?} entry)",
                    rel.display()
                )));
            }
        }
    }
    for (rel, mode) in dir_modes.into_iter().rev() {
        dir.set_mode(&rel, mode).map_err(RestoreError::Io)?;
    }
    Ok(())
}

fn safe_relative(rel: &Path) -> Result<PathBuf, RestoreError> {
    untrusted::relative(rel, "cache layer entry")
        .map_err(|e| RestoreError::UnsafePath(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn layer_of(layout: &OciLayout, dir: &Path) -> CachedLayer {
        let blob = write_layer(
            layout,
            &buildpack_layer_spec("kiln_x", "deps", dir, 1000, 1000),
        )
        .unwrap();
        CachedLayer {
            sha: blob.diff_id,
            digest: blob.digest,
            data: serde_json::json!({"lock": "abc", "n": 2}),
            build: false,
            launch: true,
            cache: true,
            fingerprint: None,
        }
    }

    #[test]
    fn layers_round_trip_with_links_and_read_only_dirs() {
        let root = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(root.path().join("store")).unwrap();
        let src = root.path().join("src");
        fs::create_dir_all(src.join("ro/sub")).unwrap();
        fs::write(src.join("ro/sub/f"), "data").unwrap();
        fs::hard_link(src.join("ro/sub/f"), src.join("g")).unwrap();
        std::os::unix::fs::symlink("ro/sub/f", src.join("s")).unwrap();
        fs::set_permissions(src.join("ro/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        let layer = layer_of(&layout, &src);
        fs::set_permissions(src.join("ro/sub"), fs::Permissions::from_mode(0o755)).unwrap();

        let layers = root.path().join("layers");
        restore_layer(&layout, &layers.join("kiln_x"), "kiln_x", "deps", &layer).unwrap();
        let out = layers.join("kiln_x/deps");
        assert_eq!(fs::read_to_string(out.join("g")).unwrap(), "data");
        assert_eq!(fs::read_link(out.join("s")).unwrap(), Path::new("ro/sub/f"));
        // Layers normalise modes: the read-only directory comes back writable.
        assert_eq!(
            fs::metadata(out.join("ro/sub"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        let toml = fs::read_to_string(layers.join("kiln_x/deps.toml")).unwrap();
        assert!(
            toml.contains("[metadata]") && toml.contains("lock = \"abc\""),
            "{toml}"
        );
        assert!(!toml.contains("types"));
        // The restored tree exports to the same layer.
        assert_eq!(layer_of(&layout, &out).sha, layer.sha);
    }

    /// A hostile cache layer (S2 of issue 12): a link to a directory outside, then a file
    /// through it. The digests match (the attacker wrote the metadata too).
    #[test]
    fn a_layer_writing_through_its_own_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(root.path().join("store")).unwrap();
        let outside = root.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        tar.append_link(&mut link, "layers/kiln_x/deps/link", &outside)
            .unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_size(4);
        file.set_mode(0o644);
        tar.append_data(&mut file, "layers/kiln_x/deps/link/evil", &b"evil"[..])
            .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw).unwrap();
        let (digest, _) = layout.write_blob(&gz.finish().unwrap()).unwrap();
        let layer = CachedLayer {
            sha: crate::image::digest::sha256_digest(&raw),
            digest,
            data: serde_json::Value::Null,
            build: false,
            launch: false,
            cache: true,
            fingerprint: None,
        };
        let bp = root.path().join("layers/kiln_x");
        let err = restore_layer(&layout, &bp, "kiln_x", "deps", &layer).unwrap_err();
        assert!(matches!(err, RestoreError::UnsafePath(_)), "{err}");
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        assert!(!bp.join("deps").exists());
    }

    #[test]
    fn corrupt_and_missing_blobs_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(root.path().join("store")).unwrap();
        let src = root.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), "x".repeat(10_000)).unwrap();
        let layer = layer_of(&layout, &src);
        let bp = root.path().join("layers/kiln_x");

        let mut wrong = layer.clone();
        wrong.sha = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        let err = restore_layer(&layout, &bp, "kiln_x", "deps", &wrong).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");

        let blob = layout.blob_path(&layer.digest);
        let mut bytes = fs::read(&blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&blob, &bytes).unwrap();
        assert!(restore_layer(&layout, &bp, "kiln_x", "deps", &layer).is_err());
        fs::remove_file(&blob).unwrap();
        assert!(matches!(
            restore_layer(&layout, &bp, "kiln_x", "deps", &layer),
            Err(RestoreError::Missing)
        ));
    }
}
