//! OCI 1.1 referrers in a registry: the artifacts attached to an image (SBOMs, provenance)
//! pushed with it and read back.
//!
//! Pushing follows distribution-spec 1.1 ("Pushing Manifests with Subject"): the
//! artifacts' blobs, then (the image's manifest being there already, since a registry
//! may refuse a `subject` it does not have) each artifact's manifest by digest. A
//! registry with the referrers API answers that `PUT` with the header `OCI-Subject` and
//! lists the artifact itself. Any other — distribution 2.8 and 3.x among them — gets the
//! *referrers tag schema*: an image index tagged `sha256-<hex>` (the subject's digest)
//! listing the artifacts, which kiln pulls, completes (no duplicates) and pushes back.
//! Two pushes racing on that tag can lose an entry; pushing again restores it.
//!
//! Reading asks `GET /v2/<name>/referrers/<digest>` and falls back to the tag when the
//! registry answers 404. The list is not trusted: each manifest is checked against the
//! digest that names it and kept only if its `subject` is the image.

use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::transfer::{Access, Request, is_index, media_type_of, store_manifest};
use super::{Registry, RegistryError};
use crate::event::{CancelToken, Event, EventSink};
use crate::image::layout::OciLayout;
use crate::image::reference::ImageName;
use crate::image::referrers::Referrer;
use crate::reproducible::canonical_json;
use crate::transport::publish::PushReport;
use crate::untrusted::MAX_DOCUMENT;

/// The most artifacts read back for one image (a registry's list is not trusted).
const MAX_REFERRERS: usize = 256;

/// The header a registry with the referrers API answers a manifest with a `subject` with.
const OCI_SUBJECT: &str = "OCI-Subject";

/// The referrers tag of `subject` (`sha256:<hex>` → `sha256-<hex>`).
fn referrers_tag(subject: &Descriptor) -> String {
    subject.digest().to_string().replacen(':', "-", 1)
}

/// The entry of a referrers list for an artifact: its manifest's descriptor with
/// `artifactType` (the config's media type when the manifest has none) and the manifest's
/// annotations, as distribution-spec asks.
fn list_entry(referrer: &Referrer) -> Descriptor {
    let mut entry = crate::image::descriptor(
        MediaType::ImageManifest,
        referrer.descriptor.digest(),
        referrer.descriptor.size(),
    );
    entry.set_artifact_type(Some(
        referrer
            .manifest
            .artifact_type()
            .clone()
            .unwrap_or_else(|| referrer.manifest.config().media_type().clone()),
    ));
    entry.set_annotations(referrer.manifest.annotations().clone());
    entry
}

/// `index` with an entry for each of `referrers` it lacks (appended in their order);
/// `None` when it lists them all already.
fn completed(index: &ImageIndex, referrers: &[Referrer]) -> Option<ImageIndex> {
    let mut manifests = index.manifests().clone();
    for referrer in referrers {
        if !manifests
            .iter()
            .any(|d| d.digest() == referrer.descriptor.digest())
        {
            manifests.push(list_entry(referrer));
        }
    }
    if manifests.len() == index.manifests().len() {
        return None;
    }
    let mut index = index.clone();
    index.set_manifests(manifests);
    Some(index)
}

impl Registry {
    /// Pushes `referrers` (artifacts whose subject is `subject`, just pushed to
    /// `reference`) from `layout`: their blobs, their manifests by digest, then, unless
    /// the registry answered each with `OCI-Subject`, the referrers tag's index.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_referrers(
        &self,
        client: &Client,
        reference: &Reference,
        access: &Access,
        layout: &OciLayout,
        subject: &Descriptor,
        referrers: &[Referrer],
        report: &mut PushReport,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<(), RegistryError> {
        if referrers.is_empty() {
            return Ok(());
        }
        let mut blobs = Vec::new();
        for referrer in referrers {
            blobs.push(referrer.manifest.config().clone());
            blobs.extend(referrer.manifest.layers().iter().cloned());
        }
        self.send_blobs(client, reference, layout, &blobs, report, events, cancel)?;
        let mut listed_by_registry = true;
        for referrer in referrers {
            Self::check(cancel)?;
            let digest = referrer.descriptor.digest().to_string();
            let bytes = layout.read_blob(referrer.descriptor.digest())?;
            let url = self.url(reference, &format!("manifests/{digest}"));
            let operation = format!("store the attached artifact {digest}");
            let answer = self.exchange(
                reference,
                &operation,
                &Request {
                    method: reqwest::Method::PUT,
                    url: &url,
                    access,
                    header: ("Content-Type", MediaType::ImageManifest.to_string()),
                    body: Some(bytes.into()),
                },
                64 * 1024,
            )?;
            if !answer.status.is_success() {
                return Err(self.convert(reference, &operation, answer.refusal(&url)));
            }
            let subject_header = answer
                .headers
                .get(OCI_SUBJECT)
                .and_then(|v| v.to_str().ok());
            listed_by_registry &= subject_header == Some(subject.digest().as_ref());
            report.referrers.push(referrer.descriptor.digest().clone());
        }
        if listed_by_registry {
            return Ok(());
        }
        let tag = referrers_tag(subject);
        let tagged = Reference::with_tag(
            reference.registry().to_string(),
            reference.repository().to_string(),
            tag.clone(),
        );
        let index = match self.fetch_manifest(&tagged, &tagged, access) {
            Ok(bytes) => Self::referrers_list(&tagged, &bytes)?,
            Err(RegistryError::NotFound { .. }) => crate::image::layout::empty_index(),
            Err(e) => return Err(e),
        };
        if let Some(index) = completed(&index, referrers) {
            let body = canonical_json(&index).map_err(|e| RegistryError::Unsupported {
                reference: tagged.whole(),
                problem: format!("its referrers index cannot be written: {e}"),
            })?;
            let url = self.url(&tagged, &format!("manifests/{tag}"));
            let operation = "store the index listing the attached artifacts";
            let answer = self.exchange(
                &tagged,
                operation,
                &Request {
                    method: reqwest::Method::PUT,
                    url: &url,
                    access,
                    header: ("Content-Type", MediaType::ImageIndex.to_string()),
                    body: Some(body.into()),
                },
                64 * 1024,
            )?;
            if !answer.status.is_success() {
                return Err(self.convert(&tagged, operation, answer.refusal(&url)));
            }
        }
        report.referrers_tag = Some(tag);
        Ok(())
    }

    /// `bytes` (what the referrers API or tag gave for `reference`) as an image index.
    fn referrers_list(reference: &Reference, bytes: &[u8]) -> Result<ImageIndex, RegistryError> {
        let problem = match media_type_of(bytes) {
            Some(media_type) if is_index(&media_type) => {
                match serde_json::from_slice::<ImageIndex>(bytes) {
                    Ok(index) => return Ok(index),
                    Err(e) => format!("it does not parse as an image index ({e})"),
                }
            }
            Some(media_type) => format!("it is a {media_type}, not an image index"),
            None => "it is not an image index".to_string(),
        };
        Err(RegistryError::Unsupported {
            reference: reference.whole(),
            problem: format!(
                "{problem}, yet its tag is the one the referrers tag schema reserves for the list of artifacts attached to an image; kiln left it as it is: delete or retag it, then push again"
            ),
        })
    }

    /// The artifacts attached to the image `subject` in the repository of `name`: the
    /// referrers API's list, else the referrers tag's. Their manifests and (up to
    /// [`MAX_DOCUMENT`] bytes each) their blobs are fetched into `layout`, verified; an
    /// entry whose manifest does not name `subject` is left out. Sorted by artifact type
    /// then digest.
    pub fn referrers(
        &self,
        name: &ImageName,
        subject: &Descriptor,
        layout: &OciLayout,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<Vec<Referrer>, RegistryError> {
        let reference = Self::reference(name)?;
        let client = self.client(reference.resolve_registry(), true);
        let access = self.access(&client, &reference, RegistryOperation::Pull)?;
        let url = self.url(&reference, &format!("referrers/{}", subject.digest()));
        let operation = "list the artifacts attached to the image";
        let answer = self.exchange(
            &reference,
            operation,
            &Request {
                method: reqwest::Method::GET,
                url: &url,
                access: &access,
                header: ("Accept", MediaType::ImageIndex.to_string()),
                body: None,
            },
            MAX_DOCUMENT,
        )?;
        let (listed_by, bytes) = if answer.status.is_success() {
            let bytes = answer.body.ok_or_else(|| RegistryError::Unsupported {
                reference: reference.whole(),
                problem: format!(
                    "the registry's list of the artifacts attached to it is larger than {MAX_DOCUMENT} bytes, kiln's limit"
                ),
            })?;
            (reference.clone(), bytes)
        } else if answer.status == reqwest::StatusCode::NOT_FOUND {
            // No referrers API: the referrers tag schema.
            let tagged = Reference::with_tag(
                reference.registry().to_string(),
                reference.repository().to_string(),
                referrers_tag(subject),
            );
            match self.fetch_manifest(&tagged, &tagged, &access) {
                Ok(bytes) => (tagged, bytes),
                Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        } else {
            return Err(self.convert(&reference, operation, answer.refusal(&url)));
        };
        let index = Self::referrers_list(&listed_by, &bytes)?;
        if index.manifests().len() > MAX_REFERRERS {
            events.event(&Event::Warning(format!(
                "{} lists {} artifacts attached to {}; kiln reads the first {MAX_REFERRERS}",
                listed_by.whole(),
                index.manifests().len(),
                subject.digest()
            )));
        }
        let mut found = Vec::new();
        for entry in index.manifests().iter().take(MAX_REFERRERS) {
            Self::check(cancel)?;
            if entry.digest() == subject.digest() {
                continue;
            }
            let target = reference.clone_with_digest(entry.digest().to_string());
            let bytes = self.fetch_manifest(&reference, &target, &access)?;
            store_manifest(layout, &target, Some(entry.digest().as_ref()), &bytes)?;
            let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                continue;
            };
            if manifest.subject().as_ref().map(Descriptor::digest) != Some(subject.digest()) {
                continue;
            }
            let mut blobs = vec![manifest.config().clone()];
            blobs.extend(manifest.layers().iter().cloned());
            if blobs.iter().any(|b| b.size() > MAX_DOCUMENT) {
                events.event(&Event::Warning(format!(
                    "the artifact {} attached to {} has a blob larger than {MAX_DOCUMENT} bytes; kiln leaves it out",
                    entry.digest(),
                    subject.digest()
                )));
                continue;
            }
            for blob in &blobs {
                if !layout.has_blob(blob.digest()) {
                    self.download(&client, &reference, blob, layout, events, cancel)?;
                }
            }
            let mut descriptor =
                crate::image::descriptor(MediaType::ImageManifest, entry.digest(), entry.size());
            descriptor.set_artifact_type(Some(
                manifest
                    .artifact_type()
                    .clone()
                    .or_else(|| entry.artifact_type().clone())
                    .unwrap_or_else(|| manifest.config().media_type().clone()),
            ));
            found.push(Referrer {
                descriptor,
                manifest,
            });
        }
        found.sort_by_key(|r| (r.artifact_type(), r.descriptor.digest().to_string()));
        found.dedup_by(|a, b| a.descriptor.digest() == b.descriptor.digest());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::referrers::{CYCLONEDX_JSON, SPDX_JSON, write_artifact};

    #[test]
    fn the_referrers_list_is_completed_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path().join("l")).unwrap();
        let (digest, size) = layout.write_blob(b"{\"image\":1}").unwrap();
        let image = crate::image::descriptor(MediaType::ImageManifest, &digest, size);
        let cdx = write_artifact(&layout, &image, CYCLONEDX_JSON, b"{}", "a").unwrap();
        let spdx = write_artifact(&layout, &image, SPDX_JSON, b"{}", "b").unwrap();
        assert_eq!(referrers_tag(&image), format!("sha256-{}", digest.digest()));
        let first = completed(
            &crate::image::layout::empty_index(),
            std::slice::from_ref(&cdx),
        )
        .unwrap();
        assert_eq!(first.manifests().len(), 1);
        assert_eq!(
            first.manifests()[0]
                .artifact_type()
                .as_ref()
                .unwrap()
                .to_string(),
            CYCLONEDX_JSON
        );
        let both = completed(&first, &[cdx.clone(), spdx.clone()]).unwrap();
        assert_eq!(both.manifests().len(), 2);
        assert_eq!(both.manifests()[0], first.manifests()[0]);
        assert!(completed(&both, &[spdx, cdx]).is_none());
        let json: serde_json::Value =
            serde_json::from_slice(&canonical_json(&both).unwrap()).unwrap();
        assert_eq!(json["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(json["schemaVersion"], 2);
    }
}
