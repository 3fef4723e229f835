//! Registries: pulling images into kiln's store and pushing them from it over the OCI
//! distribution protocol.
//!
//! The protocol itself — auth challenges (anonymous, basic, bearer tokens), manifests, blob
//! streams, monolithic and chunked uploads, cross-repository mounts — is the ORAS project's
//! `oci-client`. kiln adds what a build tool needs around it:
//!
//! - credentials looked up as Docker and podman do ([`auth`]), never printed;
//! - plain HTTP only for loopback registries and those named in
//!   [`RegistryOptions::insecure`], HTTPS everywhere else;
//! - retries with exponential backoff on connection failures, timeouts, 429 and 5xx; an
//!   interrupted download resumes from where it stopped (HTTP range requests); an
//!   interrupted upload starts that blob again (blobs already in the registry are skipped);
//! - every byte pulled is hashed while it streams into the store and checked against the
//!   digest that names it before the blob is published; a mismatch is an error and nothing
//!   is kept;
//! - before an upload, a blob the registry already has is skipped, and one another
//!   repository of the same registry has is mounted instead of uploaded (kiln remembers
//!   where blobs came from and went, in `$KILN_HOME/cache/blob-sources.json`);
//! - progress events for every transfer.
//!
//! oci-client is asynchronous; kiln drives it from a current-thread Tokio runtime, one
//! operation at a time, so the rest of kiln stays synchronous.

pub mod auth;
mod referrers;
mod remote;
mod sources;
mod transfer;

pub use remote::{RegistryImage, pull};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{
    Client, Reference, RegistryOperation, client::ClientConfig, client::ClientProtocol,
};

use crate::event::{CancelToken, Event, EventSink};
use crate::image::reference::ImageName;

pub use crate::transport::publish::PushReport;
pub use auth::Credentials;

pub use crate::transport::context::{InvalidPullPolicy, PullPolicy, RegistryOptions};

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry}: {message}{}", insecure_hint(.registry, .message))]
    Unreachable {
        /// The registry host.
        registry: String,
        /// What failed.
        message: String,
    },
    /// The registry refused the credentials, or wants some.
    #[error(
        "registry {registry} refused access to {reference} ({how}); give credentials with --creds USER:PASSWORD or KILN_REGISTRY_AUTH, or log in with docker login / podman login"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The image.
        reference: String,
        /// How kiln authenticated (never the secret).
        how: String,
    },
    /// The image or blob does not exist.
    #[error("{reference} was not found in registry {registry}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// What was looked for.
        reference: String,
    },
    /// The registry answered with an error.
    #[error("registry {registry} failed to {operation}: {message}")]
    Response {
        /// The registry host.
        registry: String,
        /// What kiln was doing.
        operation: String,
        /// The registry's error envelope or status.
        message: String,
    },
    /// Content from the registry does not match the digest that names it.
    #[error(
        "{what} of {reference} does not match its digest: expected {expected}, received {found}; nothing was kept"
    )]
    DigestMismatch {
        /// The image.
        reference: String,
        /// Which content.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        found: String,
    },
    /// Something the registry sent is not an image kiln can use.
    #[error("{reference}: {problem}")]
    Unsupported {
        /// The image.
        reference: String,
        /// What is wrong.
        problem: String,
    },
    /// Credentials could not be read.
    #[error(transparent)]
    Credentials(auth::CredentialsError),
    /// An image name cannot be used as a registry reference.
    #[error("{name} is not a registry reference: {problem}")]
    BadReference {
        /// The name.
        name: String,
        /// Why.
        problem: String,
    },
    /// kiln's store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::image::layout::LayoutError),
    /// The transfer was cancelled: its source is the shared [`crate::event::Cancelled`] (see
    /// [`crate::is_cancelled`]).
    #[error("cancelled")]
    Cancelled(#[from] crate::event::Cancelled),
}

fn insecure_hint(registry: &str, message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("https") || lower.contains("tls") || lower.contains("certificate") {
        format!("; if {registry} speaks plain HTTP, pass --insecure-registry {registry}")
    } else {
        String::new()
    }
}

/// A client for the registries of one operation.
pub struct Registry {
    runtime: tokio::runtime::Runtime,
    options: RegistryOptions,
    /// Where kiln records which repositories hold which blobs (for mounts).
    sources_file: Option<PathBuf>,
    clients: Mutex<HashMap<(String, bool), Arc<Client>>>,
    auths: Mutex<HashMap<String, auth::Resolved>>,
    /// The plain HTTP client manifests are fetched with (oci-client reads them whole, with
    /// no bound).
    http: Mutex<Option<reqwest::Client>>,
    /// Where the `diff_ids` of downloaded layers are recorded, if anywhere.
    diff_ids: Option<crate::image::diff_ids::DiffIds>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Whether `host` (`host[:port]`) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    /// A client. `sources_file` is where blob locations are remembered between runs
    /// (kiln uses `$KILN_HOME/cache/blob-sources.json`).
    pub fn new(
        options: RegistryOptions,
        sources_file: Option<PathBuf>,
    ) -> Result<Self, RegistryError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Unreachable {
                registry: String::new(),
                message: format!("cannot start the network runtime: {e}"),
            })?;
        Ok(Self {
            runtime,
            options,
            sources_file,
            clients: Mutex::new(HashMap::new()),
            auths: Mutex::new(HashMap::new()),
            http: Mutex::new(None),
            diff_ids: None,
        })
    }

    /// Records the `diff_id` of every gzip layer downloaded (hashed as it streams in) in
    /// `records`, so that checking the image's `diff_ids` later reads no layer again.
    #[must_use]
    pub fn with_diff_ids(mut self, records: crate::image::diff_ids::DiffIds) -> Self {
        self.diff_ids = Some(records);
        self
    }

    /// Whether kiln speaks plain HTTP to `host`.
    fn plain_http(&self, host: &str) -> bool {
        is_loopback(host) || self.options.insecure.iter().any(|h| h == host)
    }

    /// The HTTP client for requests kiln makes itself.
    fn http(&self) -> Result<reqwest::Client, RegistryError> {
        let mut http = self
            .http
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = &*http {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_mins(2))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                registry: String::new(),
                message: format!("cannot set up HTTP: {e}"),
            })?;
        *http = Some(client.clone());
        Ok(client)
    }

    /// The registry reference for `name` (Docker Hub names get `docker.io`).
    pub(crate) fn reference(name: &ImageName) -> Result<Reference, RegistryError> {
        // An IPv6 literal host (`[::1]:5000/app`) is valid but beyond oci-client's parser:
        // the name is split by kiln's own rules instead.
        if let Some(host) = name.registry().filter(|h| h.starts_with('['))
            && let Some(repository) = name.repository().get(host.len() + 1..)
        {
            let (host, repository) = (host.to_string(), repository.to_string());
            return Ok(match (name.tag(), name.digest()) {
                (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
                    host,
                    repository,
                    tag.to_string(),
                    digest.to_string(),
                ),
                (None, Some(digest)) => {
                    Reference::with_digest(host, repository, digest.to_string())
                }
                (tag, None) => {
                    Reference::with_tag(host, repository, tag.unwrap_or("latest").to_string())
                }
            });
        }
        name.to_string()
            .parse::<Reference>()
            .map_err(|e| RegistryError::BadReference {
                name: name.to_string(),
                problem: e.to_string(),
            })
    }

    /// The client for `host`; `monolithic` clients upload a blob in one request, the others
    /// in chunks.
    fn client(&self, host: &str, monolithic: bool) -> Arc<Client> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            clients
                .entry((host.to_string(), monolithic))
                .or_insert_with(|| {
                    let plain = self.plain_http(host);
                    Arc::new(Client::new(ClientConfig {
                        protocol: if plain {
                            ClientProtocol::Http
                        } else {
                            ClientProtocol::Https
                        },
                        read_timeout: Some(Duration::from_mins(2)),
                        connect_timeout: Some(Duration::from_secs(30)),
                        user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")),
                        use_monolithic_push: monolithic,
                        ..ClientConfig::default()
                    }))
                }),
        )
    }

    fn resolved_auth(&self, host: &str) -> Result<auth::Resolved, RegistryError> {
        let mut auths = self
            .auths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = auths.get(host) {
            return Ok(found.clone());
        }
        let found = auth::resolve(host, self.options.credentials.as_ref())
            .map_err(RegistryError::Credentials)?;
        auths.insert(host.to_string(), found.clone());
        Ok(found)
    }

    /// Authenticates `client` for `operation` on `reference` (fetching a token when the
    /// registry wants one); returns the bearer token, if the registry gave one.
    fn authenticate(
        &self,
        client: &Client,
        reference: &Reference,
        operation: RegistryOperation,
    ) -> Result<Option<String>, RegistryError> {
        let resolved = self.resolved_auth(reference.resolve_registry())?;
        self.retry(reference, "authenticate", || {
            client.auth(reference, &resolved.auth, operation)
        })
    }

    /// Runs the request `make()` builds, again after a backoff while it fails transiently.
    fn retry<T, F, Fut>(
        &self,
        reference: &Reference,
        operation: &str,
        mut make: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut delay = self.options.backoff;
        let attempts = self.options.attempts.max(1);
        for attempt in 1..=attempts {
            match self.runtime.block_on(make()) {
                Ok(value) => return Ok(value),
                Err(e) if attempt < attempts && transient(&e) => {
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
                Err(e) => return Err(self.convert(reference, operation, e)),
            }
        }
        unreachable!("the loop returns on the last attempt")
    }

    /// A kiln error for an oci-client error, naming the registry and what was done.
    fn convert(
        &self,
        reference: &Reference,
        operation: &str,
        error: OciDistributionError,
    ) -> RegistryError {
        let registry = reference.resolve_registry().to_string();
        let how = self
            .auths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&registry)
            .map_or_else(|| "anonymously".to_string(), |r| r.how.clone());
        match error {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized {
                registry,
                reference: reference.whole(),
                how,
            },
            OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
                registry,
                reference: reference.whole(),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let has = |wanted: &[OciErrorCode]| {
                    envelope.errors.iter().any(|e| wanted.contains(&e.code))
                };
                if has(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                    return RegistryError::Unauthorized {
                        registry,
                        reference: reference.whole(),
                        how,
                    };
                }
                if has(&[OciErrorCode::ManifestUnknown, OciErrorCode::NameUnknown]) {
                    return RegistryError::NotFound {
                        registry,
                        reference: reference.whole(),
                    };
                }
                RegistryError::Response {
                    registry,
                    operation: operation.to_string(),
                    message: envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                if code == 404 {
                    return RegistryError::NotFound {
                        registry,
                        reference: reference.whole(),
                    };
                }
                if code == 401 || code == 403 {
                    return RegistryError::Unauthorized {
                        registry,
                        reference: reference.whole(),
                        how,
                    };
                }
                RegistryError::Response {
                    registry,
                    operation: operation.to_string(),
                    message: format!("HTTP {code}: {}", message.trim()),
                }
            }
            // oci-client reports some refusals as reqwest status errors.
            OciDistributionError::RequestError(e) => match e.status().map(|s| s.as_u16()) {
                Some(401 | 403) => RegistryError::Unauthorized {
                    registry,
                    reference: reference.whole(),
                    how,
                },
                Some(404) => RegistryError::NotFound {
                    registry,
                    reference: reference.whole(),
                },
                Some(code) => RegistryError::Response {
                    registry,
                    operation: operation.to_string(),
                    message: format!("HTTP {code}"),
                },
                None => RegistryError::Unreachable {
                    registry,
                    message: describe_request_error(e),
                },
            },
            OciDistributionError::IoError(e) => RegistryError::Unreachable {
                registry,
                message: e.to_string(),
            },
            other => RegistryError::Response {
                registry,
                operation: operation.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// Emits progress for a transfer.
    fn progress(events: &dyn EventSink, label: &str, current: u64, total: u64) {
        events.event(&Event::Progress {
            label: label.to_string(),
            current,
            total,
        });
    }

    fn check(cancel: &CancelToken) -> Result<(), RegistryError> {
        Ok(cancel.check()?)
    }
}

/// A reqwest error with its causes, without the URL (upload URLs carry session tokens).
fn describe_request_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether a failed request is worth repeating: the connection failed or timed out, or the
/// registry said it is overloaded (429) or failing (5xx).
fn transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RequestError(e) => match e.status() {
            Some(status) => status.as_u16() == 429 || status.is_server_error(),
            None => !e.is_builder() && !e.is_redirect(),
        },
        OciDistributionError::IoError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| match &e.code {
                OciErrorCode::Toomanyrequests => true,
                OciErrorCode::Other(code) => code.eq_ignore_ascii_case("unavailable"),
                _ => false,
            })
        }
        _ => false,
    }
}

impl From<RegistryError> for crate::transport::publish::PublishError {
    fn from(error: RegistryError) -> Self {
        Self::Transport(Box::new(error))
    }
}

impl From<RegistryError> for crate::image::ImageError {
    fn from(error: RegistryError) -> Self {
        Self::Transport(Box::new(error))
    }
}

impl Registry {
    /// The client `transports` describe, remembering blob locations in `store` and the
    /// `diff_ids` of the layers it downloads (see `image::diff_ids`).
    pub fn for_transports(
        transports: &crate::transport::context::Transports,
        store: &crate::store::Store,
    ) -> Result<Self, RegistryError> {
        Self::new(
            transports.registry.clone(),
            Some(store.root().join("cache").join("blob-sources.json")),
        )
        .map(|r| r.with_diff_ids(crate::image::diff_ids::DiffIds::in_home(store.root())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.example", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn ipv6_literal_hosts_make_references() {
        let name: ImageName = "[::1]:5000/team/app:1".parse().unwrap();
        let reference = Registry::reference(&name).unwrap();
        assert_eq!(reference.resolve_registry(), "[::1]:5000");
        assert_eq!(reference.repository(), "team/app");
        assert_eq!(reference.tag(), Some("1"));
        assert!(is_loopback(reference.resolve_registry()));
        let digest = format!("sha256:{}", "a".repeat(64));
        let name: ImageName = format!("[::1]:5000/app@{digest}").parse().unwrap();
        let reference = Registry::reference(&name).unwrap();
        assert_eq!(reference.digest(), Some(digest.as_str()));
        // Other names still go through the usual parser (Docker Hub's library/ prefix).
        let name: ImageName = "docker.io/ubuntu:22.04".parse().unwrap();
        assert_eq!(
            Registry::reference(&name).unwrap().repository(),
            "library/ubuntu"
        );
    }

    #[test]
    fn pull_policies_parse() {
        assert_eq!("missing".parse::<PullPolicy>(), Ok(PullPolicy::Missing));
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn server_errors_are_retried_by_kind() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: String::new(),
            message: String::new(),
        };
        assert!(transient(&server(503)));
        assert!(transient(&server(429)));
        assert!(!transient(&server(404)));
        assert!(!transient(&OciDistributionError::UnauthorizedError {
            url: String::new()
        }));
    }
}
