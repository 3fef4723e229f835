//! What every transport shares: how registries and the daemon are reached
//! ([`Transports`]), what a read or write works with ([`Context`]), and the [`Transport`]
//! trait each transport module implements.

use std::time::Duration;

use crate::event::{CancelToken, EventSink};
use crate::image::{ImageError, LoadedImage, TargetPlatform};
use crate::store::Store;
use crate::transport::publish::{PublishError, Publishable, Published};
use crate::transport::registry::auth::Credentials;

/// How kiln reaches registries and the Docker daemon.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Transports {
    /// Registry settings (credentials, insecure registries, retries).
    pub registry: RegistryOptions,
    /// When a registry image already in the store is pulled again.
    pub pull_policy: PullPolicy,
    /// The Docker daemon (a `DOCKER_HOST` value); `None` means `DOCKER_HOST` or the default
    /// socket.
    pub docker_host: Option<String>,
}

/// How kiln talks to registries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP (`--insecure-registry`);
    /// loopback ones always are.
    pub insecure: Vec<String>,
    /// Credentials for the registries of this operation (`--creds`, `KILN_REGISTRY_AUTH`),
    /// used before any credentials file.
    pub credentials: Option<Credentials>,
    /// Attempts per request when it fails transiently (at least 1).
    pub attempts: u32,
    /// The first delay between attempts; it doubles each time.
    pub backoff: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            credentials: None,
            attempts: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// When a registry image already in kiln's store is pulled again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always ask the registry (cheap when nothing changed: only the manifest moves).
    #[default]
    Always,
    /// Only when the store does not have it.
    Missing,
    /// Never; the image must be in the store.
    Never,
}

/// Text that is not a [`PullPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a pull policy; use always, missing or never")]
pub struct InvalidPullPolicy {
    /// The text.
    pub text: String,
}

impl std::str::FromStr for PullPolicy {
    type Err = InvalidPullPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "missing" => Ok(Self::Missing),
            "never" => Ok(Self::Never),
            other => Err(InvalidPullPolicy {
                text: other.to_string(),
            }),
        }
    }
}

/// What a transport reads and writes with.
pub struct Context<'a> {
    /// kiln's store: where read images' blobs land and written images' blobs come from.
    pub store: &'a Store,
    /// How registries and the Docker daemon are reached.
    pub transports: &'a Transports,
    /// Progress.
    pub events: &'a dyn EventSink,
    /// Cancellation.
    pub cancel: &'a CancelToken,
}

/// One way images come and go — kiln's store, an OCI layout, an OCI archive, a docker
/// archive, the Docker daemon, a registry — each in its own module, reading and writing.
pub trait Transport {
    /// Reads the image for `platform` (a multi-platform index is resolved to it), bringing
    /// its blobs into the store first where they are not local.
    fn read(&self, cx: &Context<'_>, platform: &TargetPlatform) -> Result<LoadedImage, ImageError>;

    /// Writes `image`, whose blobs are in the store, here.
    fn write(&self, cx: &Context<'_>, image: Publishable<'_>) -> Result<Published, PublishError>;
}
