//! Publishing an image to its destination.
//!
//! Export always writes into kiln's store (which is also the layer cache); publishing then
//! names the image there, copies it into an `oci:` layout, writes an `oci-archive:` or
//! `docker-archive:`, loads it into the Docker daemon, or pushes it to a registry. Every file
//! is written to a temporary name and renamed, and `index.json` is replaced only after all
//! blobs are in place, so an interrupted publish leaves the destination's previous content
//! intact; a registry gets the manifest only after every blob is there.

use std::fmt;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, Digest, ImageManifest};

use crate::image::layout::LayoutError;
use crate::image::reference::{ImageName, ImageReference};
use crate::store::StoreError;

/// Where a built image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// kiln's local store, under a name.
    Store(ImageName),
    /// An OCI image layout directory (created if missing or empty).
    Layout {
        /// The directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name`.
        name: String,
    },
    /// An OCI archive file (replaced if it exists).
    Archive {
        /// The file.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name`.
        name: String,
    },
    /// A docker archive file (replaced if it exists), for `docker load` / `podman load`.
    DockerArchive {
        /// The file.
        path: PathBuf,
        /// The tag it carries.
        name: String,
    },
    /// The Docker daemon at `DOCKER_HOST`, under a name.
    DockerDaemon(ImageName),
    /// A registry.
    Registry(ImageName),
}

/// `scratch` was given where an image is to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("scratch cannot be an output")]
pub struct ScratchIsNoOutput;

impl Destination {
    /// The destination for `--output REF` given the image name (if any): `oci:`,
    /// `oci-archive:` and `docker-archive:` take their `:NAME`, else the image name, else
    /// `latest`.
    pub fn from_reference(
        reference: &ImageReference,
        image: Option<&ImageName>,
    ) -> Result<Self, ScratchIsNoOutput> {
        let default_name = || image.map_or_else(|| "latest".to_string(), ToString::to_string);
        match reference {
            ImageReference::Scratch => Err(ScratchIsNoOutput),
            ImageReference::Layout { path, name } => Ok(Self::Layout {
                path: path.clone(),
                name: name.clone().unwrap_or_else(default_name),
            }),
            ImageReference::Archive { path, name } => Ok(Self::Archive {
                path: path.clone(),
                name: name.clone().unwrap_or_else(default_name),
            }),
            ImageReference::DockerArchive { path, name } => Ok(Self::DockerArchive {
                path: path.clone(),
                name: name.clone().unwrap_or_else(default_name),
            }),
            ImageReference::DockerDaemon(name) => Ok(Self::DockerDaemon(name.clone())),
            ImageReference::Registry(name) => Ok(Self::Registry(name.clone())),
            ImageReference::Named(name) => Ok(Self::Store(name.clone())),
        }
    }
}

impl Destination {
    /// The reference that reads back what was written here.
    pub fn reference(&self) -> ImageReference {
        match self {
            Self::Store(name) => ImageReference::Named(name.clone()),
            Self::Layout { path, name } => ImageReference::Layout {
                path: path.clone(),
                name: Some(name.clone()),
            },
            Self::Archive { path, name } => ImageReference::Archive {
                path: path.clone(),
                name: Some(name.clone()),
            },
            Self::DockerArchive { path, name } => ImageReference::DockerArchive {
                path: path.clone(),
                name: Some(name.clone()),
            },
            Self::DockerDaemon(name) => ImageReference::DockerDaemon(name.clone()),
            Self::Registry(name) => ImageReference::Registry(name.clone()),
        }
    }
}

impl Destination {
    /// The image's name without tag or transport (`myapp`, `registry.example/team/app`,
    /// the `NAME` of `oci:DIR:NAME`), as its SBOM names it.
    pub fn image_name(&self) -> String {
        match self {
            Self::Store(name) | Self::DockerDaemon(name) | Self::Registry(name) => {
                name.repository().to_string()
            }
            Self::Layout { name, .. }
            | Self::Archive { name, .. }
            | Self::DockerArchive { name, .. } => match name.rsplit_once(':') {
                Some((repository, tag)) if !tag.contains('/') && !repository.is_empty() => {
                    repository.to_string()
                }
                _ => name.clone(),
            },
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(name) | Self::Registry(name) => write!(f, "{name}"),
            Self::Layout { path, name } => write!(f, "oci:{}:{name}", path.display()),
            Self::Archive { path, name } => write!(f, "oci-archive:{}:{name}", path.display()),
            Self::DockerArchive { path, name } => {
                write!(f, "docker-archive:{}:{name}", path.display())
            }
            Self::DockerDaemon(name) => write!(f, "docker-daemon:{name}"),
        }
    }
}

/// Errors publishing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Writing to the destination failed.
    #[error("failed to write the image to {destination}")]
    Write {
        /// The destination.
        destination: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// Naming the image in the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The push to a registry, or loading into the Docker daemon, failed. The transport's
    /// own error is kept whole (it converts with `From`), boxed so that publishing does not
    /// depend on the transports that implement it.
    #[error(transparent)]
    Transport(Box<dyn std::error::Error + Send + Sync>),
}

/// An image to publish: its manifest, whose blobs are all in the store.
#[derive(Debug, Clone, Copy)]
pub struct Publishable<'a> {
    /// The manifest's descriptor.
    pub descriptor: &'a Descriptor,
    /// The manifest.
    pub manifest: &'a ImageManifest,
}

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct PushReport {
    /// Where the image went (`host/repository:tag`).
    pub reference: String,
    /// The manifest's digest (`host/repository@<digest>` pulls exactly this image).
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: Vec<Digest>,
    /// Blobs mounted from another repository of the registry.
    pub mounted: Vec<Digest>,
    /// Blobs the repository already had.
    pub existing: Vec<Digest>,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// The artifacts attached to the image (SBOMs, provenance) pushed with it: their
    /// manifests' digests (their blobs are counted above).
    pub referrers: Vec<Digest>,
    /// The tag (`sha256-<hex>`) of the index listing them, kept for registries without the
    /// referrers API (distribution-spec's referrers tag schema); `None` when the registry
    /// lists them itself or there are none.
    pub referrers_tag: Option<String>,
}

/// What publishing did, where it says more than "done". In JSON reports it is an object
/// whose `kind` is `written`, `pushed` (with the [`PushReport`] fields) or `loaded` (with
/// the daemon's `messages`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Published {
    /// Written to a file, layout or the store.
    Written,
    /// Pushed to a registry.
    Pushed(PushReport),
    /// Loaded into the Docker daemon.
    Loaded {
        /// What the daemon said (`Loaded image: …`).
        messages: Vec<String>,
    },
}
