//! OCI 1.1 referrers: artifacts (an SBOM, a provenance statement) attached to an image.
//!
//! An artifact is an image manifest with an `artifactType`, the empty config
//! (`application/vnd.oci.empty.v1+json`, the two bytes `{}`), its document as the one
//! layer and the image's manifest as its `subject` (image-spec 1.1 `manifest.md`; the
//! separate artifact manifest of the 1.1 release candidates was removed and is not used).
//! The image itself is unchanged: its digest is the same with or without artifacts.
//!
//! In an OCI layout (kiln's store, `oci:` directories, `oci-archive:` files) each artifact
//! is listed in `index.json` without a `org.opencontainers.image.ref.name`, as oras does,
//! with its `artifactType` and the annotation [`SUBJECT_ANNOTATION`] (image-spec PR #1171's
//! proposal) so it is found without reading every manifest; an entry without the
//! annotation is matched by its manifest's `subject`.

use std::collections::HashMap;

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageIndex, ImageManifest, ImageManifestBuilder,
    MediaType, SCHEMA_VERSION,
};

use super::layout::{LayoutError, OciLayout, ref_name};
use crate::reproducible::canonical_json;

/// The index annotation naming an artifact's subject (its manifest digest).
pub const SUBJECT_ANNOTATION: &str = "org.opencontainers.image.referrer.subject";

/// The annotation naming an artifact layer's file (`sbom.cdx.json`).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// CycloneDX JSON.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";
/// SPDX JSON.
pub const SPDX_JSON: &str = "application/spdx+json";
/// An in-toto statement.
pub const IN_TOTO_JSON: &str = "application/vnd.in-toto+json";

/// The empty JSON object `{}`: the config of an artifact without one.
pub const EMPTY_JSON: &[u8] = b"{}";

/// The largest artifact manifest read back.
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// An artifact attached to an image: its manifest and the descriptor of that manifest
/// (with `artifactType`), as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The manifest's descriptor, with `artifactType`.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
}

impl Referrer {
    /// The artifact's type (`application/spdx+json`).
    pub fn artifact_type(&self) -> Option<String> {
        self.descriptor
            .artifact_type()
            .as_ref()
            .or(self.manifest.artifact_type().as_ref())
            .map(ToString::to_string)
    }

    /// Every blob of the artifact: its layers, its config, its manifest.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut blobs = self.manifest.layers().clone();
        blobs.push(self.manifest.config().clone());
        blobs.push(self.descriptor.clone());
        blobs
    }
}

/// The descriptor of the empty config.
pub fn empty_descriptor() -> Descriptor {
    let mut d = super::descriptor(
        MediaType::EmptyJSON,
        &super::digest::sha256_digest(EMPTY_JSON),
        EMPTY_JSON.len() as u64,
    );
    d.set_data(Some("e30=".to_string()));
    d
}

/// The subject descriptor of an image manifest: media type, digest and size only.
fn subject_of(image: &Descriptor) -> Descriptor {
    super::descriptor(image.media_type().clone(), image.digest(), image.size())
}

/// Writes an artifact of `artifact_type` whose one layer is `payload` (`file` names it)
/// and whose subject is `image` into `layout`; returns it (nothing is added to
/// `index.json`, see [`add_to_index`]).
pub fn write_artifact(
    layout: &OciLayout,
    image: &Descriptor,
    artifact_type: &str,
    payload: &[u8],
    file: &str,
) -> Result<Referrer, LayoutError> {
    let json_err = |e: String| LayoutError::Write {
        path: layout.root().to_path_buf(),
        source: std::io::Error::other(e),
    };
    layout.write_blob(EMPTY_JSON)?;
    let (digest, size) = layout.write_blob(payload)?;
    let mut layer = super::descriptor(MediaType::Other(artifact_type.to_string()), &digest, size);
    layer.set_annotations(Some(HashMap::from([(
        TITLE_ANNOTATION.to_string(),
        file.to_string(),
    )])));
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(artifact_type.to_string()))
        .config(empty_descriptor())
        .layers(vec![layer])
        .subject(subject_of(image))
        .build()
        .map_err(|e| json_err(e.to_string()))?;
    let bytes = canonical_json(&manifest).map_err(|e| json_err(e.to_string()))?;
    let (digest, size) = layout.write_blob(&bytes)?;
    let mut descriptor = super::descriptor(MediaType::ImageManifest, &digest, size);
    descriptor.set_artifact_type(Some(MediaType::Other(artifact_type.to_string())));
    Ok(Referrer {
        descriptor,
        manifest,
    })
}

/// `descriptor` as an index entry: its `artifactType` and the subject annotation.
fn index_entry(referrer: &Referrer) -> Descriptor {
    let mut entry = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(referrer.descriptor.digest().clone())
        .size(referrer.descriptor.size())
        .build()
        .expect("a descriptor with media type, digest and size");
    entry.set_artifact_type(referrer.artifact_type().map(MediaType::Other));
    if let Some(subject) = referrer.manifest.subject() {
        entry.set_annotations(Some(HashMap::from([(
            SUBJECT_ANNOTATION.to_string(),
            subject.digest().to_string(),
        )])));
    }
    entry
}

/// `index` with `referrers` listed (untagged, no duplicates). Named entries come first
/// (sorted by name, as [`OciLayout::tag`] keeps them), then untagged ones sorted by digest,
/// so the index stays reproducible and a lone image stays the first entry.
pub fn with_referrers(index: &ImageIndex, referrers: &[Referrer]) -> ImageIndex {
    let mut manifests = index.manifests().clone();
    for referrer in referrers {
        if !manifests
            .iter()
            .any(|d| d.digest() == referrer.descriptor.digest() && ref_name(d).is_none())
        {
            manifests.push(index_entry(referrer));
        }
    }
    manifests.sort_by_key(|d| match ref_name(d) {
        Some(name) => (false, name.to_string()),
        None => (true, d.digest().to_string()),
    });
    let mut index = index.clone();
    index.set_manifests(manifests);
    index
}

/// Adds `referrers` to `layout`'s `index.json` (their blobs must be there already).
pub fn add_to_index(layout: &OciLayout, referrers: &[Referrer]) -> Result<(), LayoutError> {
    if referrers.is_empty() {
        return Ok(());
    }
    let index = layout.read_index()?;
    let updated = with_referrers(&index, referrers);
    if updated == index {
        return Ok(());
    }
    layout.write_index(&updated)
}

/// Whether an index entry is an artifact attached to another manifest (not an image a
/// name or a lone entry stands for).
pub fn is_referrer_entry(entry: &Descriptor) -> bool {
    ref_name(entry).is_none()
        && (entry.artifact_type().is_some()
            || entry
                .annotations()
                .as_ref()
                .is_some_and(|a| a.contains_key(SUBJECT_ANNOTATION)))
}

/// The artifacts `index` lists (untagged) whose subject is `subject`, their manifests read
/// from `layout`, sorted by artifact type then digest. Entries that cannot be read are
/// skipped.
pub fn referrers_in(layout: &OciLayout, index: &ImageIndex, subject: &Digest) -> Vec<Referrer> {
    let wanted = subject.to_string();
    let mut out: Vec<Referrer> = index
        .manifests()
        .iter()
        .filter(|d| ref_name(d).is_none() && d.digest() != subject)
        .filter(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(SUBJECT_ANNOTATION))
                .is_none_or(|s| *s == wanted)
        })
        .filter_map(|d| {
            let bytes = layout.read_blob(d.digest()).ok()?;
            if bytes.len() as u64 > MAX_MANIFEST {
                return None;
            }
            let manifest: ImageManifest = serde_json::from_slice(&bytes).ok()?;
            if manifest.subject().as_ref()?.digest() != subject {
                return None;
            }
            let mut descriptor = d.clone();
            descriptor.set_annotations(None);
            if descriptor.artifact_type().is_none() {
                descriptor.set_artifact_type(
                    manifest
                        .artifact_type()
                        .clone()
                        .or_else(|| Some(manifest.config().media_type().clone())),
                );
            }
            Some(Referrer {
                descriptor,
                manifest,
            })
        })
        .collect();
    out.sort_by_key(|r| (r.artifact_type(), r.descriptor.digest().to_string()));
    out.dedup_by(|a, b| a.descriptor.digest() == b.descriptor.digest());
    out
}

/// The artifacts among the blobs `candidates` of `layout` whose subject is `subject` (for
/// archives whose `index.json` lists only the image), sorted as [`referrers_in`] sorts.
pub fn referrers_among(
    layout: &OciLayout,
    candidates: &[Digest],
    subject: &Digest,
) -> Vec<Referrer> {
    let entries: Vec<Descriptor> = candidates
        .iter()
        .filter(|d| *d != subject)
        .filter_map(|d| {
            let size = std::fs::metadata(layout.blob_path(d)).ok()?.len();
            (size <= MAX_MANIFEST).then(|| super::descriptor(MediaType::ImageManifest, d, size))
        })
        .collect();
    let mut index = super::layout::empty_index();
    index.set_manifests(entries);
    referrers_in(layout, &index, subject)
}

/// The artifacts attached to `subject` in `layout`.
pub fn referrers_of(layout: &OciLayout, subject: &Digest) -> Result<Vec<Referrer>, LayoutError> {
    let index = layout.read_index()?;
    Ok(referrers_in(layout, &index, subject))
}

/// Copies `referrers` (blobs, then `index.json` entries) from `from` into `to`.
pub fn copy_referrers(
    from: &OciLayout,
    to: &OciLayout,
    referrers: &[Referrer],
) -> Result<(), LayoutError> {
    for referrer in referrers {
        for blob in referrer.blobs() {
            to.copy_blob_from(from, &blob)?;
        }
    }
    add_to_index(to, referrers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_points_at_its_subject_and_is_listed_untagged() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path().join("l")).unwrap();
        let (digest, size) = layout.write_blob(b"{\"not\":\"an image\"}").unwrap();
        let image = super::super::descriptor(MediaType::ImageManifest, &digest, size);
        layout.tag(&image, "app:1").unwrap();
        let sbom = write_artifact(&layout, &image, SPDX_JSON, b"{}", "sbom.spdx.json").unwrap();
        let cdx = write_artifact(&layout, &image, CYCLONEDX_JSON, b"[]", "sbom.cdx.json").unwrap();
        add_to_index(&layout, &[sbom.clone(), cdx.clone()]).unwrap();
        add_to_index(&layout, std::slice::from_ref(&sbom)).unwrap();
        let index = layout.read_index().unwrap();
        assert_eq!(index.manifests().len(), 3);
        assert_eq!(ref_name(&index.manifests()[0]), Some("app:1"));
        assert!(is_referrer_entry(&index.manifests()[1]));
        // Naming another image keeps the referrers after the names.
        layout.tag(&image, "app:2").unwrap();
        let index = layout.read_index().unwrap();
        assert_eq!(ref_name(&index.manifests()[1]), Some("app:2"));
        let found = referrers_of(&layout, &digest).unwrap();
        let types: Vec<String> = found.iter().filter_map(Referrer::artifact_type).collect();
        assert_eq!(types, [SPDX_JSON, CYCLONEDX_JSON]);
        assert_eq!(found[0].descriptor.digest(), sbom.descriptor.digest());
        assert_eq!(
            found[1].manifest.config().digest().to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let other = super::super::digest::sha256_digest(b"other");
        assert!(referrers_of(&layout, &other).unwrap().is_empty());
    }
}
