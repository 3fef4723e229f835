//! Reading images from wherever they are — the local transports of [`crate::image`],
//! registries and the Docker daemon — into kiln's store.

pub mod docker_archive;
pub mod docker_daemon;
pub mod oci_archive;
pub mod publish;
pub mod registry;

pub use docker_archive::write_docker_archive;
pub use oci_archive::write_archive;

use crate::event::{CancelToken, Event, EventSink};
use crate::image::diff_ids::DiffIds;
use crate::image::layout::{OciLayout, ref_name};
use crate::image::reference::{ImageName, ImageReference};
use crate::image::{ImageError, LoadedImage, TargetPlatform};
use crate::store::Store;
use crate::transport::docker_daemon::Daemon;
use crate::transport::registry::{PullPolicy, Registry, RegistryError, RegistryOptions};

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

impl Transports {
    /// A registry client that remembers blob locations in `store`, and the `diff_ids` of
    /// the layers it downloads (see `crate::image::diff_ids`).
    pub fn registry(&self, store: &Store) -> Result<Registry, RegistryError> {
        Registry::new(
            self.registry.clone(),
            Some(store.root().join("cache").join("blob-sources.json")),
        )
        .map(|r| r.with_diff_ids(DiffIds::in_home(store.root())))
    }

    /// The Docker daemon.
    pub fn daemon(&self) -> Result<Daemon, docker_daemon::DaemonError> {
        Daemon::connect(self.docker_host.as_deref())
    }
}

/// Pulls the registry image `name` for `platform` into `store` and names it there.
pub fn pull(
    name: &ImageName,
    store: &Store,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<(), ImageError> {
    events.event(&Event::Step(format!("Pulling {name} ({platform})")));
    let registry = transports.registry(store)?;
    let descriptor = registry.pull(name, platform, store.layout(), events, cancel)?;
    store.tag(&descriptor, &name.to_string())?;
    Ok(())
}

/// Reads the image `reference` for `platform`, whatever its transport: registry images are
/// pulled into the store (by `transports.pull_policy`; when the registry cannot be reached,
/// a copy already in the store is used with a warning), daemon images are saved from the
/// daemon and imported, local ones are read as [`load`] reads them.
pub fn fetch(
    reference: &ImageReference,
    store: &Store,
    platform: &TargetPlatform,
    transports: &Transports,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<LoadedImage, ImageError> {
    match reference {
        ImageReference::Registry(name) => {
            let stored = ImageReference::Named(name.clone());
            let local = || {
                load(&stored, store, platform).map(|mut loaded| {
                    loaded.reference = reference.clone();
                    loaded
                })
            };
            let in_store = || {
                !matches!(
                    load(&stored, store, platform),
                    Err(ImageError::NotFound { .. })
                )
            };
            match transports.pull_policy {
                PullPolicy::Never => local().map_err(|e| match e {
                    ImageError::NotFound { .. } => ImageError::NotFound {
                        reference: format!(
                            "{name} (the pull policy is never; pull it with kiln pull {name})"
                        ),
                        available: Vec::new(),
                    },
                    other => other,
                }),
                PullPolicy::Missing if in_store() => local(),
                PullPolicy::Missing | PullPolicy::Always => {
                    let unreachable = |e: &ImageError| match e {
                        ImageError::Transport(e) => match e.downcast_ref::<RegistryError>() {
                            Some(RegistryError::Unreachable { registry, message }) => {
                                Some(format!("{registry} ({message})"))
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    match pull(name, store, platform, transports, events, cancel) {
                        Ok(()) => local(),
                        Err(e) if in_store() && unreachable(&e).is_some() => {
                            let registry = unreachable(&e).unwrap_or_default();
                            events.event(&Event::Warning(format!(
                                "cannot reach registry {registry}; using the copy of {name} in kiln's store"
                            )));
                            local()
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        }
        ImageReference::DockerDaemon(name) => {
            let daemon = transports.daemon()?;
            events.event(&Event::Step(format!(
                "Saving {name} from the Docker daemon at {}",
                daemon.host()
            )));
            let temp = tempfile::Builder::new()
                .prefix("daemon-")
                .suffix(".tar")
                .tempfile_in(store.work_dir())
                .map_err(|source| ImageError::Archive {
                    path: store.work_dir(),
                    source,
                })?;
            daemon.save(&name.to_string(), temp.path())?;
            let archive = ImageReference::DockerArchive {
                path: temp.path().to_path_buf(),
                name: None,
            };
            let mut loaded = load(&archive, store, platform)?;
            loaded.reference = reference.clone();
            Ok(loaded)
        }
        local => load(local, store, platform),
    }
}

/// Reads the local image `reference` for `platform`. Images read from an `oci-archive:` or a
/// `docker-archive:` are imported into the store first (verified blob by blob). Registry and
/// daemon images are fetched by [`crate::transport::fetch`].
pub fn load(
    reference: &ImageReference,
    store: &Store,
    platform: &TargetPlatform,
) -> Result<LoadedImage, ImageError> {
    let display = reference.to_string();
    let layout_err = |source| ImageError::Layout {
        reference: display.clone(),
        source,
    };
    match reference {
        ImageReference::Scratch => Err(ImageError::Scratch),
        ImageReference::Layout { path, name } => {
            let layout = OciLayout::open(path).map_err(layout_err)?;
            let index = layout.read_index().map_err(layout_err)?;
            crate::image::resolve(reference, layout, &index, name.as_deref(), platform)
        }
        ImageReference::Archive { path, name } => {
            let index = oci_archive::import(path, store.layout())?;
            crate::image::resolve(
                reference,
                store.layout().clone(),
                &index,
                name.as_deref(),
                platform,
            )
        }
        ImageReference::DockerArchive { path, name } => {
            docker_archive::import(path, name.as_deref(), store.layout(), reference)
        }
        ImageReference::Registry(_) | ImageReference::DockerDaemon(_) => {
            Err(ImageError::Remote { reference: display })
        }
        ImageReference::Named(name) => {
            let index = store.layout().read_index().map_err(layout_err)?;
            let wanted = name.to_string();
            if !index
                .manifests()
                .iter()
                .any(|d| ref_name(d) == Some(wanted.as_str()))
            {
                return Err(ImageError::NotFound {
                    reference: format!(
                        "{wanted} (in kiln's local store {})",
                        store.root().display()
                    ),
                    available: Vec::new(),
                });
            }
            crate::image::resolve(
                reference,
                store.layout().clone(),
                &index,
                Some(&wanted),
                platform,
            )
        }
    }
}
