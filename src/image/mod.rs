//! OCI images: reading them from transports, the local layout format, digests and names.

pub(crate) mod diff_ids;
// (`dead_code`: `HashingWriter::is_empty`/`get_mut`, companions nothing calls yet.)
#[allow(dead_code)]
pub(crate) mod digest;
pub mod layout;
pub mod reference;
pub mod referrers;
pub(crate) mod unpack;
pub(crate) mod write;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
pub use write::{WrittenImage, descriptor, write_image};

use self::layout::{LayoutError, OciLayout, ref_name};
use self::reference::{ImageReference, ReferenceError};

/// Docker's media types, which kiln reads as their OCI equivalents.
pub(crate) mod docker_media {
    pub(crate) const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub(crate) const MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub(crate) const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// Errors reading an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The reference itself is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The layout holding the image is damaged or unreadable.
    #[error("failed to read image {reference}")]
    Layout {
        /// The image.
        reference: String,
        /// What went wrong.
        #[source]
        source: LayoutError,
    },
    /// No image of that name.
    #[error("image {reference} not found{}", list_hint(available))]
    NotFound {
        /// The image asked for.
        reference: String,
        /// What the layout or store does hold.
        available: Vec<String>,
    },
    /// A layout holds several images and none was named.
    #[error("{reference} holds several images ({}); name one as {reference}:NAME", names.join(", "))]
    Ambiguous {
        /// The layout.
        reference: String,
        /// Its image names.
        names: Vec<String>,
    },
    /// A multi-platform image has no manifest for the target platform.
    #[error("image {reference} has no manifest for {platform} (it has: {})", available.join(", "))]
    NoMatchingPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: TargetPlatform,
        /// The platforms it has.
        available: Vec<String>,
    },
    /// A manifest, index or config is malformed.
    #[error("image {reference} has an invalid {what}")]
    Parse {
        /// The image.
        reference: String,
        /// Which document.
        what: &'static str,
        /// The parse error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The configuration lists another number of `diff_ids` than the manifest lists layers.
    #[error(
        "image {reference} is inconsistent: its manifest lists {layers} layers but its configuration {diff_ids} diff_ids; the image is damaged or forged (rebuild or re-pull it)"
    )]
    LayerCount {
        /// The image.
        reference: String,
        /// Layers in the manifest.
        layers: usize,
        /// `diff_ids` in the configuration.
        diff_ids: usize,
    },
    /// A descriptor points at something kiln cannot use as an image.
    #[error("image {reference}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The image.
        reference: String,
        /// The media type.
        media_type: String,
    },
    /// An `oci-archive:` file could not be read.
    #[error("failed to read OCI archive {path}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `scratch` was used where an existing image is required.
    #[error("scratch is not an image that can be read")]
    Scratch,
    /// A registry or daemon image was given to a function that reads only local ones
    /// ([`crate::transport::load`]); [`crate::transport::fetch`] reads every kind.
    #[error("{reference} is not a local image; fetch it through kiln::transport::fetch")]
    Remote {
        /// The image.
        reference: String,
    },
    /// A registry or the Docker daemon could not provide the image. The transport's own
    /// error is kept whole (it converts with `From`); it is boxed so that image formats do
    /// not depend on the transports that read them.
    #[error(transparent)]
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// kiln's store could not record the image.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn list_hint(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (available: {})", available.join(", "))
    }
}

/// An image read from some transport, with its blobs in `layout`.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The image as the user named it.
    pub reference: ImageReference,
    /// The layout holding its blobs.
    pub layout: OciLayout,
    /// The manifest's descriptor (digest, size, media type).
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The image configuration.
    pub config: ImageConfiguration,
}

impl LoadedImage {
    /// The `diff_ids` of the image's layers, bottom first.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// The image's platform.
    pub fn platform(&self) -> TargetPlatform {
        TargetPlatform {
            os: self.config.os().to_string(),
            architecture: self.config.architecture().to_string(),
            variant: self.config.variant().clone().filter(|v| !v.is_empty()),
        }
    }
}

pub(crate) fn resolve(
    reference: &ImageReference,
    layout: OciLayout,
    index: &ImageIndex,
    name: Option<&str>,
    platform: &TargetPlatform,
) -> Result<LoadedImage, ImageError> {
    let display = reference.to_string();
    let names = || -> Vec<String> {
        index
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(str::to_string))
            .collect()
    };
    let entry = match name {
        Some(name) => index
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .ok_or_else(|| ImageError::NotFound {
                reference: display.clone(),
                available: names(),
            })?,
        // Artifacts attached to an image (SBOMs) are not images of their own.
        None => match index
            .manifests()
            .iter()
            .filter(|d| !referrers::is_referrer_entry(d))
            .collect::<Vec<_>>()
            .as_slice()
        {
            [only] => only,
            [] => {
                return Err(ImageError::NotFound {
                    reference: display,
                    available: Vec::new(),
                });
            }
            _ => {
                return Err(ImageError::Ambiguous {
                    reference: display,
                    names: names(),
                });
            }
        },
    };
    let mut descriptor = entry.clone();
    // Follow image indexes (at most a few levels) down to the manifest for `platform`.
    for _ in 0..4 {
        let media_type = descriptor.media_type().to_string();
        if is_index(&media_type) {
            let child: ImageIndex = read_json(&layout, &descriptor, &display, "image index")?;
            descriptor = select_platform(&child, platform)
                .ok_or_else(|| no_matching_platform(&child, &display, platform))?;
            continue;
        }
        if !is_manifest(&media_type) {
            return Err(ImageError::UnsupportedMediaType {
                reference: display,
                media_type,
            });
        }
        let manifest: ImageManifest = read_json(&layout, &descriptor, &display, "image manifest")?;
        let config: ImageConfiguration =
            read_json(&layout, manifest.config(), &display, "image configuration")?;
        let image = LoadedImage {
            reference: reference.clone(),
            layout,
            manifest_descriptor: descriptor,
            manifest,
            config,
        };
        diff_ids::check_layer_count(&image)?;
        return Ok(image);
    }
    Err(ImageError::UnsupportedMediaType {
        reference: display,
        media_type: "image index nested too deeply".to_string(),
    })
}

/// Reads and verifies the blob of `descriptor` and parses it as JSON of type `T`.
fn read_json<T: serde::de::DeserializeOwned>(
    layout: &OciLayout,
    descriptor: &Descriptor,
    reference: &str,
    what: &'static str,
) -> Result<T, ImageError> {
    let bytes = layout
        .read_blob(descriptor.digest())
        .map_err(|source| ImageError::Layout {
            reference: reference.to_string(),
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ImageError::Parse {
        reference: reference.to_string(),
        what,
        source: oci_spec::OciSpecError::SerDe(e),
    })
}

fn no_matching_platform(
    index: &ImageIndex,
    reference: &str,
    wanted: &TargetPlatform,
) -> ImageError {
    ImageError::NoMatchingPlatform {
        reference: reference.to_string(),
        platform: wanted.clone(),
        available: platforms_of(index),
    }
}

/// The platforms an index has images for (`linux/amd64`, …).
pub(crate) fn platforms_of(index: &ImageIndex) -> Vec<String> {
    index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            TargetPlatform {
                os: p.os().to_string(),
                architecture: p.architecture().to_string(),
                variant: p.variant().clone(),
            }
            .to_string()
        })
        .collect()
}

fn is_index(media_type: &str) -> bool {
    media_type == MediaType::ImageIndex.to_string() || media_type == docker_media::MANIFEST_LIST
}

fn is_manifest(media_type: &str) -> bool {
    media_type == MediaType::ImageManifest.to_string() || media_type == docker_media::MANIFEST
}

/// The entry of `index` for `wanted` (an entry without the wanted variant when none has it).
pub(crate) fn select_platform(index: &ImageIndex, wanted: &TargetPlatform) -> Option<Descriptor> {
    let candidates = index.manifests().iter().filter(|d| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == wanted.os && p.architecture().to_string() == wanted.architecture
        })
    });
    let mut fallback = None;
    for d in candidates {
        let variant = d.platform().as_ref().and_then(|p| p.variant().clone());
        match (&wanted.variant, variant) {
            (Some(w), Some(v)) if *w == v => return Some(d.clone()),
            (None, None) => return Some(d.clone()),
            _ => {
                fallback.get_or_insert_with(|| d.clone());
            }
        }
    }
    fallback
}

/// An OS/architecture(/variant) triple, as in `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlatform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture in Go/OCI naming (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Architecture variant (`v8`), if any.
    pub variant: Option<String>,
}

impl TargetPlatform {
    /// The platform kiln itself runs on.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }
}

impl fmt::Display for TargetPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Text that is not a platform (`os/arch[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a platform; write os/arch[/variant], e.g. linux/arm64")]
pub struct InvalidPlatform {
    /// The text.
    pub text: String,
}

impl FromStr for TargetPlatform {
    type Err = InvalidPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).to_string(),
                architecture: (*arch).to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: (*os).to_string(),
                    architecture: (*arch).to_string(),
                    variant: Some((*variant).to_string()),
                })
            }
            _ => Err(InvalidPlatform {
                text: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_round_trips() {
        let p: TargetPlatform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<TargetPlatform>().is_err());
        assert!("linux//".parse::<TargetPlatform>().is_err());
        assert_eq!(TargetPlatform::host().os, "linux");
    }
}
