//! Pulling an image into a layout, pushing one from it.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::BlobResponse;
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::sources::Sources;
use super::{Registry, RegistryError};
use crate::event::{CancelToken, Cancelled, EventSink};
use crate::image::digest::{GzipContentHasher, sha256_digest};
use crate::image::layout::OciLayout;
use crate::image::reference::ImageName;
use crate::image::referrers::Referrer;
use crate::image::{TargetPlatform, docker_media, select_platform};
use crate::transport::publish::PushReport;
use crate::untrusted::MAX_DOCUMENT;

/// The manifest media types kiln asks for (registries answer OCI manifests only to clients
/// that accept them).
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    docker_media::MANIFEST,
    docker_media::MANIFEST_LIST,
];

/// Blobs up to this size go in one request; larger ones in chunks, which proxies with a
/// request-size limit let through.
const MONOLITHIC_MAX: u64 = 64 * 1024 * 1024;

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// How a request kiln makes itself authenticates: with the bearer token the registry gave
/// ([`Registry::authenticate`]), else with basic credentials, else not at all. Redirects to
/// another host carry no credentials (reqwest drops them).
#[derive(Clone)]
pub(super) struct Access {
    token: Option<String>,
    auth: RegistryAuth,
}

impl Access {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        }
    }
}

/// A request kiln makes itself (see [`Registry::exchange`]).
pub(super) struct Request<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub access: &'a Access,
    /// `Accept` for a read, `Content-Type` for a write.
    pub header: (&'static str, String),
    pub body: Option<bytes::Bytes>,
}

/// A registry's answer to a [`Request`].
pub(super) struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    /// The body; `None` when it is longer than the request allowed.
    pub body: Option<Vec<u8>>,
}

impl Answer {
    /// The oci-client error for an answer that is not a success.
    pub(super) fn refusal(&self, url: &str) -> OciDistributionError {
        status_error(self.status, self.body.as_deref().unwrap_or_default(), url)
    }
}

/// The `mediaType` of a manifest or index, inferred from its fields when absent.
pub(super) fn media_type_of(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(media_type) = value.get("mediaType").and_then(serde_json::Value::as_str) {
        return Some(media_type.to_string());
    }
    if value.get("manifests").is_some() {
        Some(MediaType::ImageIndex.to_string())
    } else if value.get("layers").is_some() {
        Some(MediaType::ImageManifest.to_string())
    } else {
        None
    }
}

pub(super) fn is_index(media_type: &str) -> bool {
    media_type == MediaType::ImageIndex.to_string() || media_type == docker_media::MANIFEST_LIST
}

impl Registry {
    /// Pulls `name` for `platform` into `layout` (blobs already there are not fetched again)
    /// and returns the descriptor of the platform's manifest.
    pub fn pull(
        &self,
        name: &ImageName,
        platform: &TargetPlatform,
        layout: &OciLayout,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<Descriptor, RegistryError> {
        self.pull_blobs(name, platform, layout, true, events, cancel)
    }

    /// Like [`Registry::pull`], but brings only the manifest and the configuration (to read
    /// an image's labels without its layers).
    pub fn pull_config(
        &self,
        name: &ImageName,
        platform: &TargetPlatform,
        layout: &OciLayout,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<Descriptor, RegistryError> {
        self.pull_blobs(name, platform, layout, false, events, cancel)
    }

    fn pull_blobs(
        &self,
        name: &ImageName,
        platform: &TargetPlatform,
        layout: &OciLayout,
        with_layers: bool,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<Descriptor, RegistryError> {
        let reference = Self::reference(name)?;
        let host = reference.resolve_registry().to_string();
        let client = self.client(&host, true);
        let access = self.access(&client, &reference, RegistryOperation::Pull)?;
        let bytes = self.fetch_manifest(&reference, &reference, &access)?;
        let mut descriptor = store_manifest(layout, &reference, name.digest(), &bytes)?;
        let mut bytes = bytes;
        if is_index(descriptor.media_type().as_ref()) {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unsupported {
                    reference: reference.whole(),
                    problem: format!("its image index does not parse: {e}"),
                })?;
            let child =
                select_platform(&index, platform).ok_or_else(|| RegistryError::Unsupported {
                    reference: reference.whole(),
                    problem: format!(
                        "it has no image for {platform} (it has: {})",
                        crate::image::platforms_of(&index).join(", ")
                    ),
                })?;
            let child_reference = reference.clone_with_digest(child.digest().to_string());
            let child_bytes = self.fetch_manifest(&reference, &child_reference, &access)?;
            let stored = store_manifest(
                layout,
                &child_reference,
                Some(child.digest().as_ref()),
                &child_bytes,
            )?;
            descriptor = child;
            descriptor.set_media_type(stored.media_type().clone());
            bytes = child_bytes;
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unsupported {
                reference: reference.whole(),
                problem: format!(
                    "its manifest does not parse ({e}); kiln reads OCI and Docker schema 2 images"
                ),
            })?;
        let mut sources = Sources::load(self.sources_file.as_deref());
        let repository = format!("{host}/{}", reference.repository());
        let mut blobs = vec![manifest.config().clone()];
        if with_layers {
            blobs.extend(manifest.layers().iter().cloned());
        }
        for blob in &blobs {
            Self::check(cancel)?;
            if !layout.has_blob(blob.digest()) {
                self.download(&client, &reference, blob, layout, events, cancel)?;
            }
            sources.record(blob.digest().as_ref(), &repository);
        }
        sources.save(self.sources_file.as_deref());
        Ok(descriptor)
    }

    /// Fetches the manifest or index `target` (of the image `reference`) with kiln's own
    /// request, reading at most [`MAX_DOCUMENT`] bytes: oci-client reads a manifest whole,
    /// however large, and a hostile registry could send gigabytes.
    pub(super) fn fetch_manifest(
        &self,
        reference: &Reference,
        target: &Reference,
        access: &Access,
    ) -> Result<Vec<u8>, RegistryError> {
        let tag = target.digest().or_else(|| target.tag()).unwrap_or("latest");
        let url = self.url(target, &format!("manifests/{tag}"));
        let operation = "fetch the manifest";
        let answer = self.exchange(
            reference,
            operation,
            &Request {
                method: reqwest::Method::GET,
                url: &url,
                access,
                header: ("Accept", ACCEPT.join(", ")),
                body: None,
            },
            MAX_DOCUMENT,
        )?;
        if !answer.status.is_success() {
            return Err(self.convert(reference, operation, answer.refusal(&url)));
        }
        answer.body.ok_or_else(|| RegistryError::Unsupported {
            reference: target.whole(),
            problem: format!(
                "the registry sent a manifest larger than {MAX_DOCUMENT} bytes, kiln's limit (and more than registries accept); it is not an image kiln reads"
            ),
        })
    }

    /// The URL of `path` (`manifests/<tag>`, `referrers/<digest>`) in `target`'s repository.
    pub(super) fn url(&self, target: &Reference, path: &str) -> String {
        let host = target.resolve_registry();
        format!(
            "{scheme}://{host}/v2/{repository}/{path}",
            scheme = if self.plain_http(host) {
                "http"
            } else {
                "https"
            },
            repository = target.repository(),
        )
    }

    /// How kiln's own requests for `reference` authenticate (fetching a token for
    /// `operation` when the registry wants one).
    pub(super) fn access(
        &self,
        client: &Client,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<Access, RegistryError> {
        let token = self.authenticate(client, reference, operation)?;
        let auth = self.resolved_auth(reference.resolve_registry())?.auth;
        Ok(Access { token, auth })
    }

    /// Sends `request` (again after a backoff while the registry is unreachable, overloaded
    /// or failing) and returns the answer, whatever its status, with at most `max` bytes of
    /// a successful answer's body (64 KiB of another's).
    pub(super) fn exchange(
        &self,
        reference: &Reference,
        operation: &str,
        request: &Request<'_>,
        max: u64,
    ) -> Result<Answer, RegistryError> {
        let http = self.http()?;
        self.retry(reference, operation, || {
            let mut builder = http
                .request(request.method.clone(), request.url)
                .header(request.header.0, request.header.1.as_str());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let builder = request.access.apply(builder);
            let url = request.url.to_string();
            async move {
                let mut response = builder.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let limit = if status.is_success() { max } else { 64 * 1024 };
                let body = if response.content_length().is_some_and(|n| n > limit) {
                    None
                } else {
                    read_bounded(&mut response, limit).await?
                };
                // Overloaded or failing: an error, so that it is retried.
                if status.as_u16() == 429 || status.is_server_error() {
                    return Err(status_error(status, &body.unwrap_or_default(), &url));
                }
                Ok(Answer {
                    status,
                    headers,
                    body,
                })
            }
        })
    }

    /// Streams one blob into `layout`, hashing it on the way; resumes after interruptions
    /// with a range request. The blob is published only if its digest and size match.
    pub(super) fn download(
        &self,
        client: &Client,
        reference: &Reference,
        blob: &Descriptor,
        layout: &OciLayout,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<(), RegistryError> {
        let digest = blob.digest().to_string();
        let size = blob.size();
        let label = format!("Pulling {}", short(&digest));
        let mut writer = layout.blob_writer()?;
        // A gzip layer's diff_id is hashed on the way in, so checking it later reads nothing.
        let mut content = GzipContentHasher::new();
        let mut delay = self.options.backoff;
        let attempts = self.options.attempts.max(1);
        for attempt in 1..=attempts {
            let offset = writer.len();
            let transfer = async {
                let (mut stream, mut skip) = if offset == 0 {
                    (
                        client
                            .pull_blob_stream(reference, digest.as_str())
                            .await?
                            .stream,
                        0,
                    )
                } else {
                    match client
                        .pull_blob_stream_partial(reference, digest.as_str(), offset, None)
                        .await?
                    {
                        BlobResponse::Partial(s) => (s.stream, 0),
                        // The registry ignored the range: skip what we already have.
                        BlobResponse::Full(s) => (s.stream, offset),
                    }
                };
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    let skipped = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
                    skip -= skipped as u64;
                    writer.write_all(&chunk[skipped..])?;
                    content.update(&chunk[skipped..]);
                    Self::progress(events, &label, writer.len(), size);
                }
                Ok(())
            };
            let result: Result<(), OciDistributionError> =
                self.runtime.block_on(until_cancelled(cancel, transfer))?;
            Self::check(cancel)?;
            // All bytes arrived (a content mismatch shows up below, whatever the stream said).
            if writer.len() >= size {
                break;
            }
            match result {
                Ok(()) => break,
                Err(e) if attempt < attempts && super::transient(&e) => {
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    let operation = format!("download blob {digest}");
                    return Err(match self.convert(reference, &operation, e) {
                        // The registry answered, then the transfer broke off: say how far.
                        RegistryError::Unreachable { registry, message } if attempt > 1 => {
                            RegistryError::Response {
                                registry,
                                operation,
                                message: format!(
                                    "{message} ({} of {size} bytes received in {attempt} attempts)",
                                    writer.len()
                                ),
                            }
                        }
                        other => other,
                    });
                }
            }
        }
        let source = Path::new(reference.whole().as_str()).to_path_buf();
        writer
            .finish_expecting(blob.digest(), Some(size), &source)
            .map_err(|e| match e {
                crate::image::layout::LayoutError::DigestMismatch { found, .. } => {
                    RegistryError::DigestMismatch {
                        reference: reference.whole(),
                        what: format!("blob {digest}"),
                        expected: digest.clone(),
                        found: found.to_string(),
                    }
                }
                crate::image::layout::LayoutError::SizeMismatch { found, .. } => {
                    RegistryError::Response {
                        registry: reference.resolve_registry().to_string(),
                        operation: format!("send blob {digest}"),
                        message: format!(
                            "it ended after {found} of {size} bytes, {attempts} times"
                        ),
                    }
                }
                other => other.into(),
            })?;
        if let (Some(records), Some(diff_id)) = (&self.diff_ids, content.finish()) {
            records.record(blob.digest(), &diff_id);
        }
        Ok(())
    }

    /// Pushes the image whose manifest is `manifest_descriptor` in `layout` to `name`: blobs
    /// the repository has are skipped, blobs another repository of the registry has are
    /// mounted, the others uploaded; then the manifest, by tag (or by digest); then the
    /// artifacts attached to it (`referrers`, whose blobs are in `layout` too): their blobs,
    /// their manifests by digest, and, for a registry without the referrers API (no
    /// `OCI-Subject` answer), the index tagged `sha256-<hex>` that lists them.
    pub fn push(
        &self,
        layout: &OciLayout,
        manifest_descriptor: &Descriptor,
        referrers: &[Referrer],
        name: &ImageName,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<PushReport, RegistryError> {
        let reference = Self::reference(name)?;
        let host = reference.resolve_registry().to_string();
        let manifest_digest = manifest_descriptor.digest().to_string();
        if let Some(wanted) = name.digest()
            && wanted != manifest_digest
        {
            return Err(RegistryError::BadReference {
                name: name.to_string(),
                problem: format!("the image's digest is {manifest_digest}"),
            });
        }
        let client = self.client(&host, true);
        let access = self.access(&client, &reference, RegistryOperation::Push)?;
        let manifest_bytes = layout.read_blob(manifest_descriptor.digest())?;
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| RegistryError::Unsupported {
                reference: manifest_digest.clone(),
                problem: format!("its manifest does not parse: {e}"),
            })?;
        let mut blobs = vec![manifest.config().clone()];
        blobs.extend(manifest.layers().iter().cloned());
        let mut report = PushReport {
            reference: reference.whole(),
            digest: manifest_descriptor.digest().clone(),
            uploaded: Vec::new(),
            mounted: Vec::new(),
            existing: Vec::new(),
            bytes_uploaded: 0,
            referrers: Vec::new(),
            referrers_tag: None,
        };
        self.send_blobs(
            &client,
            &reference,
            layout,
            &blobs,
            &mut report,
            events,
            cancel,
        )?;
        let content_type: reqwest::header::HeaderValue = manifest_descriptor
            .media_type()
            .to_string()
            .parse()
            .map_err(|_| RegistryError::Unsupported {
                reference: manifest_digest.clone(),
                problem: "its media type is not a valid header value".to_string(),
            })?;
        let target = if reference.tag().is_some() {
            reference.clone()
        } else {
            reference.clone_with_digest(manifest_digest.clone())
        };
        let body = bytes::Bytes::from(manifest_bytes);
        self.retry(&reference, "store the manifest", || {
            client.push_manifest_raw(&target, body.clone(), content_type.clone())
        })?;
        self.push_referrers(
            &client,
            &reference,
            &access,
            layout,
            manifest_descriptor,
            referrers,
            &mut report,
            events,
            cancel,
        )?;
        Ok(report)
    }

    /// Sends `blobs` from `layout` to the repository of `reference` (once each): skipped
    /// when it has them, mounted when another repository of the registry does, else
    /// uploaded; `report` says which.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_blobs(
        &self,
        client: &Client,
        reference: &Reference,
        layout: &OciLayout,
        blobs: &[Descriptor],
        report: &mut PushReport,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<(), RegistryError> {
        let repository = format!(
            "{}/{}",
            reference.resolve_registry(),
            reference.repository()
        );
        let mut sources = Sources::load(self.sources_file.as_deref());
        let mut seen = std::collections::BTreeSet::new();
        for blob in blobs {
            if !seen.insert(blob.digest().to_string()) {
                continue;
            }
            Self::check(cancel)?;
            let digest = blob.digest().to_string();
            let exists = self.retry(reference, "check a blob", || {
                client.blob_exists(reference, &digest)
            })?;
            if exists {
                report.existing.push(blob.digest().clone());
            } else if self.mount(client, reference, &sources, &digest, &repository) {
                report.mounted.push(blob.digest().clone());
            } else {
                self.upload(layout, reference, blob, events, cancel)?;
                report.uploaded.push(blob.digest().clone());
                report.bytes_uploaded += blob.size();
            }
            sources.record(&digest, &repository);
            // Remembered as soon as they are there, so a push killed later mounts them.
            sources.save(self.sources_file.as_deref());
        }
        Ok(())
    }

    /// Tries to mount `digest` from another repository of the registry known to hold it.
    fn mount(
        &self,
        client: &Client,
        reference: &Reference,
        sources: &Sources,
        digest: &str,
        repository: &str,
    ) -> bool {
        for from in sources.candidates(digest, reference.resolve_registry(), repository) {
            let source =
                Reference::with_tag(reference.registry().to_string(), from, "latest".to_string());
            if self
                .runtime
                .block_on(client.mount_blob(reference, &source, digest))
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Uploads one blob from `layout`, streaming the file (in one request up to
    /// [`MONOLITHIC_MAX`], in chunks above); a failed attempt starts the blob again.
    fn upload(
        &self,
        layout: &OciLayout,
        reference: &Reference,
        blob: &Descriptor,
        events: &dyn EventSink,
        cancel: &CancelToken,
    ) -> Result<(), RegistryError> {
        let digest = blob.digest().to_string();
        let size = blob.size();
        let path = layout.blob_path(blob.digest());
        let monolithic = size <= MONOLITHIC_MAX;
        let client = self.client(reference.resolve_registry(), monolithic);
        let label = format!("Pushing {}", short(&digest));
        let sent = Arc::new(AtomicU64::new(0));
        let uploaded = self.retry(reference, &format!("upload blob {digest}"), || {
            let client = Arc::clone(&client);
            let path = path.clone();
            let digest = digest.clone();
            let sent = Arc::clone(&sent);
            let label = label.clone();
            async move {
                sent.store(0, Ordering::Relaxed);
                let file = tokio::fs::File::open(&path).await?;
                let counter = Arc::clone(&sent);
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(
                    move |chunk| {
                        let chunk = chunk?;
                        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        Ok(chunk)
                    },
                );
                let reference = reference.clone();
                let upload = client.push_blob_stream(&reference, stream, &digest, Some(size));
                tokio::pin!(upload);
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        result = &mut upload => return result.map(|_| ()),
                        _ = tick.tick() => {
                            Registry::progress(events, &label, sent.load(Ordering::Relaxed), size);
                            if cancel.is_cancelled() {
                                return Err(OciDistributionError::GenericError(Some("cancelled".to_string())));
                            }
                        }
                    }
                }
            }
        });
        // A cancelled upload ends in an error of its own: report the cancellation instead.
        Self::check(cancel)?;
        uploaded?;
        Self::progress(events, &label, size, size);
        Ok(())
    }
}

/// Drives `future` to its end, or until `cancel` is requested (checked every 100 ms): a
/// registry that stalls — no answer, or a body that stops midway — does not hold a cancelled
/// operation until the client's timeouts.
async fn until_cancelled<F: Future>(
    cancel: &CancelToken,
    future: F,
) -> Result<F::Output, Cancelled> {
    tokio::pin!(future);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            output = &mut future => return Ok(output),
            _ = tick.tick() => cancel.check()?,
        }
    }
}

/// Reads the body of `response`, at most `max` bytes: `None` when it is longer.
async fn read_bounded(
    response: &mut reqwest::Response,
    max: u64,
) -> Result<Option<Vec<u8>>, OciDistributionError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// The oci-client error for a registry's refusal (as oci-client reports it, so that retries
/// and messages treat it alike).
fn status_error(status: reqwest::StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError {
            url: url.to_string(),
        };
    }
    if status.is_client_error()
        && let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(body)
    {
        return OciDistributionError::RegistryError {
            envelope,
            url: url.to_string(),
        };
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url: url.to_string(),
        message: String::from_utf8_lossy(body).into_owned(),
    }
}

/// Verifies a manifest or index that arrived for `reference` (against `pinned` when the
/// reference names a digest), stores it in `layout` and returns its descriptor.
pub(super) fn store_manifest(
    layout: &OciLayout,
    reference: &Reference,
    pinned: Option<&str>,
    bytes: &[u8],
) -> Result<Descriptor, RegistryError> {
    let digest = sha256_digest(bytes);
    if let Some(pinned) = pinned
        && pinned != digest.to_string()
    {
        return Err(RegistryError::DigestMismatch {
            reference: reference.whole(),
            what: "the manifest".to_string(),
            expected: pinned.to_string(),
            found: digest.to_string(),
        });
    }
    let media_type = media_type_of(bytes).ok_or_else(|| RegistryError::Unsupported {
        reference: reference.whole(),
        problem: "the registry sent something that is neither an image manifest nor an index (schema 1 manifests are not supported)".to_string(),
    })?;
    layout.write_blob(bytes)?;
    Ok(crate::image::descriptor(
        MediaType::from(media_type.as_str()),
        &digest,
        bytes.len() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_read_or_inferred() {
        assert_eq!(
            media_type_of(
                br#"{"mediaType": "application/vnd.docker.distribution.manifest.v2+json"}"#
            )
            .as_deref(),
            Some(docker_media::MANIFEST)
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion": 2, "manifests": []}"#).as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(media_type_of(br#"{"schemaVersion": 1}"#), None);
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
