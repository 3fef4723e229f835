//! The analyze phase: read the run image the app will be exported onto.
//!
//! From it the build learns the target platform (`CNB_TARGET_*`), the distribution
//! (`io.buildpacks.base.distro.*` labels), the CNB user (`CNB_USER_ID` / `CNB_GROUP_ID` in its
//! environment) that owns the app's files, and its base environment. Its layers are copied
//! into kiln's store here, each verified against its digest, so a missing or corrupt run
//! image is reported before any buildpack runs.
//!
//! It also finds the previous image of the destination ([`previous_image`]), whose
//! lifecycle metadata says which launch layers the last build made.

use crate::buildpack::target::RunTarget;
use crate::image::reference::ImageReference;
use crate::image::{ImageError, LoadedImage, TargetPlatform};
use crate::labels::{DISTRO_NAME, DISTRO_VERSION, LayerMetadata, LifecycleMetadata};
use crate::store::Store;

/// Errors of the analyze phase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    /// The run image could not be read.
    #[error("cannot use run image {reference}")]
    RunImage {
        /// The run image.
        reference: String,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// A platform was asked for and the run image is for another one.
    #[error(
        "run image {reference} is for {found}, not {wanted} as asked; give a run image for {wanted} (or a multi-platform one), or drop --platform"
    )]
    PlatformMismatch {
        /// The run image.
        reference: String,
        /// Its platform.
        found: TargetPlatform,
        /// The platform asked for.
        wanted: TargetPlatform,
    },
}

/// The run image, resolved.
#[derive(Debug, Clone)]
pub(crate) struct RunImage {
    /// How the user named it.
    pub reference: ImageReference,
    /// The image, or `None` for `scratch`.
    pub image: Option<LoadedImage>,
    /// Its platform (for `scratch`, the requested or host platform).
    pub platform: TargetPlatform,
}

impl RunImage {
    /// The name recorded in the image's labels for rebase: the store name, the `:NAME` of an
    /// `oci:`/`oci-archive:` reference, or `scratch`. Never a host path, so that labels don't
    /// depend on where the run image was read from.
    pub(crate) fn label_name(&self) -> String {
        match &self.reference {
            ImageReference::Scratch => "scratch".to_string(),
            ImageReference::Layout { name, .. }
            | ImageReference::Archive { name, .. }
            | ImageReference::DockerArchive { name, .. } => name.clone().unwrap_or_default(),
            ImageReference::Named(name)
            | ImageReference::Registry(name)
            | ImageReference::DockerDaemon(name) => name.to_string(),
        }
    }

    /// The target buildpacks see.
    pub(crate) fn target(&self) -> RunTarget {
        let label = |key: &str| -> Option<String> {
            self.image
                .as_ref()?
                .config
                .config()
                .as_ref()?
                .labels()
                .as_ref()?
                .get(key)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        RunTarget {
            os: self.platform.os.clone(),
            arch: self.platform.architecture.clone(),
            variant: self.platform.variant.clone(),
            distro_name: label(DISTRO_NAME),
            distro_version: label(DISTRO_VERSION),
        }
    }

    /// The run image's `Env`.
    pub(crate) fn env(&self) -> Vec<String> {
        self.image
            .as_ref()
            .and_then(|i| i.config.config().as_ref())
            .and_then(|c| c.env().clone())
            .unwrap_or_default()
    }

    /// The CNB user and group that own the app and layers: `CNB_USER_ID` / `CNB_GROUP_ID`
    /// from the run image's environment, else a numeric `User`, else root.
    pub(crate) fn cnb_user(&self) -> (u64, u64) {
        let env = crate::env::Env::from_list(&self.env());
        let uid = env.get("CNB_USER_ID").parse().ok();
        let gid = env.get("CNB_GROUP_ID").parse().ok();
        if let Some(uid) = uid {
            return (uid, gid.unwrap_or(uid));
        }
        let user = self
            .image
            .as_ref()
            .and_then(|i| i.config.config().as_ref())
            .and_then(|c| c.user().clone())
            .unwrap_or_default();
        let (u, g) = user.split_once(':').unwrap_or((&user, ""));
        match (u.parse::<u64>(), g.parse::<u64>()) {
            (Ok(u), Ok(g)) => (u, g),
            (Ok(u), Err(_)) => (u, u),
            _ => (0, 0),
        }
    }

    /// `diff_id` of the run image's top layer (`None` for `scratch`, an image without layers,
    /// or a top `diff_id` that is no digest).
    pub(crate) fn top_layer(&self) -> Option<oci_spec::image::Digest> {
        self.image
            .as_ref()
            .and_then(|i| i.diff_ids().last())
            .and_then(|d| d.parse().ok())
    }
}

/// Resolves the run image, from any transport (registry images are pulled into the store).
/// `platform` selects from multi-platform images and is the platform of `scratch`; by default
/// the host's.
pub(crate) fn analyze(
    store: &Store,
    reference: &ImageReference,
    platform: Option<&TargetPlatform>,
    transports: &crate::transport::Transports,
    events: &dyn crate::event::EventSink,
    cancel: &crate::event::CancelToken,
) -> Result<RunImage, AnalyzeError> {
    let wanted = platform.cloned().unwrap_or_else(TargetPlatform::host);
    if *reference == ImageReference::Scratch {
        return Ok(RunImage {
            reference: reference.clone(),
            image: None,
            platform: wanted,
        });
    }
    let run_image_err = |source| AnalyzeError::RunImage {
        reference: reference.to_string(),
        source,
    };
    let mut image = crate::transport::fetch(reference, store, &wanted, transports, events, cancel)
        .map_err(run_image_err)?;
    if let Some(wanted) = platform
        && !platform_matches(wanted, &image.platform())
    {
        return Err(AnalyzeError::PlatformMismatch {
            reference: reference.to_string(),
            found: image.platform(),
            wanted: wanted.clone(),
        });
    }
    // Bring the layers into the store now, verifying each, so that a missing or corrupt run
    // image fails before any buildpack runs; export then only references them.
    for layer in image.manifest.layers() {
        store
            .layout()
            .copy_blob_from(&image.layout, layer)
            .map_err(|source| {
                run_image_err(ImageError::Layout {
                    reference: reference.to_string(),
                    source,
                })
            })?;
    }
    image.layout = store.layout().clone();
    // Check each layer's diff_id once per blob (see crate::image::diff_ids): a run image
    // whose configuration misdescribes its layers would give an image others refuse.
    crate::image::diff_ids::DiffIds::in_home(store.root())
        .verify(&image)
        .map_err(run_image_err)?;
    Ok(RunImage {
        reference: reference.clone(),
        platform: image.platform(),
        image: Some(image),
    })
}

/// Whether an image for `found` serves a request for `wanted`: the same OS and architecture,
/// and the same variant when both name one.
fn platform_matches(wanted: &TargetPlatform, found: &TargetPlatform) -> bool {
    wanted.os == found.os
        && wanted.architecture == found.architecture
        && match (&wanted.variant, &found.variant) {
            (Some(w), Some(f)) => w == f,
            _ => true,
        }
}

/// The image the last build of the same destination produced: the source of the metadata of
/// launch layers (restored before the build) and of launch layers a buildpack reuses by
/// leaving them without contents (spec "Launch Layers").
#[derive(Debug, Clone)]
pub(crate) struct PreviousImage {
    /// Its manifest digest.
    pub manifest_digest: oci_spec::image::Digest,
    /// Its manifest.
    pub manifest: oci_spec::image::ImageManifest,
    /// Its configuration.
    pub config: oci_spec::image::ImageConfiguration,
    /// Its `io.buildpacks.lifecycle.metadata`.
    pub metadata: LifecycleMetadata,
    /// Whether its blobs are at the destination (a registry) rather than necessarily in
    /// the store: a layer reused from it is then referenced without being copied.
    pub remote: bool,
}

impl PreviousImage {
    /// The launch layer `name` of `buildpack` in this image: its metadata and the blob
    /// descriptor of its `diff_id`.
    pub(crate) fn launch_layer(
        &self,
        buildpack: &str,
        name: &str,
    ) -> Option<(&LayerMetadata, &oci_spec::image::Descriptor)> {
        let layer = self
            .metadata
            .buildpacks
            .iter()
            .find(|b| b.key == buildpack)?
            .layers
            .get(name)
            .filter(|l| l.launch)?;
        let index = self
            .config
            .rootfs()
            .diff_ids()
            .iter()
            .position(|d| layer.sha.as_ref().is_some_and(|sha| d == sha.as_ref()))?;
        Some((layer, self.manifest.layers().get(index)?))
    }
}

/// Finds the previous image of `destination` for `platform`: for a store name, the image it
/// names; otherwise the image kiln last built for that destination (`recorded`, a manifest
/// digest whose blobs are in the store); for a registry without such a record (a fresh CI
/// runner), the image the registry has under that name (its manifest and configuration only).
/// Daemons and files are not read back. An image for another platform, or without lifecycle
/// metadata, is no previous image.
pub(crate) fn previous_image(
    store: &Store,
    destination: &crate::transport::publish::Destination,
    recorded: Option<&oci_spec::image::Digest>,
    platform: &TargetPlatform,
    transports: &crate::transport::Transports,
    events: &dyn crate::event::EventSink,
    cancel: &crate::event::CancelToken,
) -> Option<PreviousImage> {
    let layout = store.layout();
    let remote = matches!(
        destination,
        crate::transport::publish::Destination::Registry(_)
    );
    let recorded = match (recorded, destination) {
        (None, crate::transport::publish::Destination::Registry(name)) => {
            let registry =
                crate::transport::registry::Registry::for_transports(transports, store).ok()?;
            match registry.pull_config(name, platform, layout, events, cancel) {
                Ok(descriptor) => Some(descriptor.digest().clone()),
                Err(e) => {
                    events.event(&crate::event::Event::Info(format!(
                        "no previous image of {name} in the registry ({e})"
                    )));
                    None
                }
            }
        }
        (recorded, _) => recorded.cloned(),
    };
    let (manifest_digest, manifest, config) =
        if let crate::transport::publish::Destination::Store(name) = destination {
            let image =
                crate::transport::load(&ImageReference::Named(name.clone()), store, platform)
                    .ok()?;
            (
                image.manifest_descriptor.digest().clone(),
                image.manifest,
                image.config,
            )
        } else {
            let digest = recorded?;
            let manifest: oci_spec::image::ImageManifest =
                serde_json::from_slice(&layout.read_blob(&digest).ok()?).ok()?;
            let config: oci_spec::image::ImageConfiguration =
                serde_json::from_slice(&layout.read_blob(manifest.config().digest()).ok()?).ok()?;
            (digest, manifest, config)
        };
    if config.os().to_string() != platform.os
        || config.architecture().to_string() != platform.architecture
    {
        return None;
    }
    let text = config
        .config()
        .as_ref()?
        .labels()
        .as_ref()?
        .get(crate::labels::LIFECYCLE_METADATA)?;
    // Whoever could push the destination's tag wrote this label: a malformed one is no
    // previous image (nothing of it is restored or reused), said once.
    let metadata = serde_json::from_str(text)
        .inspect_err(|e| {
            events.event(&crate::event::Event::Warning(format!(
                "the previous image of {destination} has unreadable lifecycle metadata ({}); building without it",
                crate::untrusted::json_problem(e)
            )));
        })
        .ok()?;
    Some(PreviousImage {
        manifest_digest,
        manifest,
        config,
        metadata,
        remote,
    })
}
