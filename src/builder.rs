//! Builder images: a stack's build image with kiln in it, for CI pods and containers that
//! deny the namespaces kiln's sandbox needs.
//!
//! `kiln builder create` writes an image made of a build image's layers and one more layer
//! holding the kiln executable at `/cnb/kiln` (the entrypoint), [`BUILDER_FILE`] (which build
//! image this is, by digest) and the CNB directories (`/layers`, `/workspace`, `/platform`,
//! `/cnb/buildpacks`, `/cnb/plans`) and kiln's home (`/kiln`), writable by the stack's CNB
//! user. kiln started in such an image finds [`BUILDER_FILE`] and runs buildpacks directly,
//! as its own children in its own file system (which *is* the build image), so a build in a
//! pod gives the same image as a hermetic build on a laptop: same build image, same paths,
//! same label naming the build image.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{ConfigBuilder, Digest, HistoryBuilder, MediaType};
use serde::{Deserialize, Serialize};

use crate::event::{CancelToken, Event, EventSink};
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::image::write::{descriptor, write_image};
use crate::layer::{EntryMetadata, LayerSpec, write_layer};
use crate::stack::{StackSource, definition::FlavourName};
use crate::store::Store;
use crate::transport::publish::{self, Destination, Published};

/// Where a builder image says what it is.
pub const BUILDER_FILE: &str = "/cnb/kiln-builder.toml";

/// Where the kiln executable is in a builder image (and in a build image's sandbox).
pub const KILN_IN_IMAGE: &str = "/cnb/kiln";

/// The package every build image of a stack has: kiln's default build images are the
/// stack's flavours that have it (the smallest one with the buildpacks' toolchain).
pub const BUILD_IMAGE_PACKAGE: &str = "build-essential";

/// kiln's home in a builder image (`KILN_HOME`).
pub const BUILDER_HOME: &str = "/kiln";

/// The label naming the stack and flavour a builder image was made from.
pub const BUILDER_LABEL: &str = "io.github.kiln-build.builder";

/// What [`BUILDER_FILE`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuilderInfo {
    /// The stack's name.
    pub stack: String,
    /// The build flavour.
    pub flavour: String,
    /// The build image, `REFERENCE@digest`, as hermetic builds elsewhere name it.
    pub build_image: String,
    /// The Debian packages the build image has (names), to tell whether a group of
    /// buildpacks finds its toolchain here.
    pub packages: Vec<String>,
}

impl BuilderInfo {
    /// The builder kiln runs in, if it runs in one: [`BUILDER_FILE`] read, or `None` when
    /// there is no such file.
    pub fn current() -> Result<Option<Self>, BuilderError> {
        Self::read(Path::new(BUILDER_FILE))
    }

    /// Reads a builder file; `None` when `path` does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, BuilderError> {
        if fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        let invalid = |problem: String| BuilderError::File {
            path: path.to_path_buf(),
            problem,
        };
        let text = crate::untrusted::read_text(
            path,
            crate::untrusted::MAX_METADATA,
            crate::untrusted::Links::Refuse,
        )
        .map_err(|e| invalid(e.to_string()))?;
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| invalid(crate::untrusted::toml_problem(&text, &e)))
    }
}

/// What `kiln builder create` makes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuilderOptions {
    /// The stack (a built-in name or a stack directory).
    pub stack: String,
    /// Its build flavour (`build`, `build-python`, …).
    pub flavour: String,
    /// The platform (default: the host's); its architecture must be the kiln executable's.
    pub platform: Option<TargetPlatform>,
    /// Where the image goes.
    pub destination: Destination,
    /// The kiln executable to put in it (default: the running one).
    pub kiln_executable: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH`, for the image's creation time.
    pub source_date_epoch: Option<i64>,
    /// Registry, daemon and archive settings for the destination.
    pub transports: crate::transport::Transports,
}

impl BuilderOptions {
    /// Options for a builder of `stack`'s `flavour`, written to `destination`.
    pub fn new(stack: &str, flavour: &str, destination: Destination) -> Self {
        Self {
            stack: stack.to_string(),
            flavour: flavour.to_string(),
            platform: None,
            destination,
            kiln_executable: None,
            source_date_epoch: None,
            transports: crate::transport::Transports::default(),
        }
    }
}

/// What was made.
#[derive(Debug, Clone, Serialize)]
pub struct BuilderReport {
    /// Where it went.
    pub image: String,
    /// Its manifest digest.
    pub manifest_digest: Digest,
    /// The build image it holds, `REFERENCE@digest`.
    pub build_image: String,
    /// What publishing did.
    pub published: Published,
}

/// Errors making or reading a builder image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuilderError {
    /// A builder file that cannot be read.
    #[error(
        "{path}: {problem} (it is written by `kiln builder create`; rebuild the builder image)"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A flavour that is not a build image.
    #[error(
        "flavour {flavour} of stack {stack} is not a build image (it lacks {package}); its build flavours: {choices}"
    )]
    NotBuildFlavour {
        /// The stack.
        stack: String,
        /// The flavour.
        flavour: String,
        /// The package build images have.
        package: String,
        /// The stack's build flavours.
        choices: String,
    },
    /// The stack could not give its build image.
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    /// Staging or writing the kiln layer failed.
    #[error("cannot write the builder's kiln layer ({path})")]
    Write {
        /// What was written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image could not be loaded or written.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The layer writer failed.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// The layout refused a blob.
    #[error(transparent)]
    Layout(#[from] crate::image::layout::LayoutError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    /// Cancelled.
    #[error(transparent)]
    Cancelled(#[from] crate::event::Cancelled),
}

/// Makes a builder image (see the module docs).
pub fn create(
    store: &Store,
    options: &BuilderOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BuilderReport, BuilderError> {
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(TargetPlatform::host);
    let source = StackSource::open(&options.stack)?;
    let def = source.definition()?;
    let flavour: FlavourName =
        options
            .flavour
            .parse()
            .map_err(
                |e: crate::stack::definition::InvalidName| BuilderError::File {
                    path: PathBuf::from(&options.flavour),
                    problem: e.to_string(),
                },
            )?;
    let packages = flavour_packages(&source, &flavour, &platform.architecture)?;
    let build_package = BUILD_IMAGE_PACKAGE;
    if !packages.iter().any(|p| p == build_package) {
        let choices = def
            .flavours
            .keys()
            .filter(|f| {
                flavour_packages(&source, f, &platform.architecture)
                    .is_ok_and(|p| p.iter().any(|n| n == build_package))
            })
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BuilderError::NotBuildFlavour {
            stack: def.stack.name.to_string(),
            flavour: flavour.to_string(),
            package: build_package.to_string(),
            choices,
        });
    }
    let name = crate::stack::ensure_image(
        store,
        &source,
        &flavour,
        &platform.architecture,
        events,
        cancel,
    )?;
    let base = crate::transport::load(&ImageReference::Named(name.clone()), store, &platform)
        .map_err(|e| crate::image::ImageError::Transport(Box::new(e)))?;
    let build_image = format!("{name}@{}", base.manifest_descriptor.digest());
    let info = BuilderInfo {
        stack: def.stack.name.to_string(),
        flavour: flavour.to_string(),
        build_image: build_image.clone(),
        packages,
    };
    cancel.check()?;
    let exe =
        crate::buildpack::builtin::executable(options.kiln_executable.as_deref()).map_err(|e| {
            BuilderError::Write {
                path: PathBuf::from(KILN_IN_IMAGE),
                source: std::io::Error::other(e),
            }
        })?;
    let layer = kiln_layer(store, &exe, &info, def.user.uid, def.user.gid)?;
    events.event(&Event::Step(format!(
        "Adding layer 'kiln' ({} bytes) to {build_image}",
        layer.size
    )));
    let config = builder_config(&base, &info, &layer.diff_id, options.source_date_epoch)?;
    let mut layers = base.manifest.layers().clone();
    layers.push(descriptor(
        MediaType::ImageLayerGzip,
        &layer.digest,
        layer.size,
    ));
    let written = write_image(store.layout(), layers, &config)?;
    let published = crate::transport::publish(
        store,
        publish::Publishable {
            descriptor: &written.descriptor,
            manifest: &written.manifest,
        },
        &options.destination,
        &options.transports,
        events,
        cancel,
    )?;
    Ok(BuilderReport {
        image: options.destination.to_string(),
        manifest_digest: written.descriptor.digest().clone(),
        build_image,
        published,
    })
}

/// The names of the Debian packages `flavour`'s lock has for `arch`, sorted.
fn flavour_packages(
    source: &StackSource,
    flavour: &FlavourName,
    arch: &str,
) -> Result<Vec<String>, BuilderError> {
    let mut names: Vec<String> = source
        .lock(flavour.as_str())?
        .map(|lock| {
            lock.packages
                .into_iter()
                .filter(|p| p.arch == arch)
                .map(|p| p.name)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The layer kiln adds: its executable, the builder file, and the directories a build
/// writes, owned by the CNB user.
fn kiln_layer(
    store: &Store,
    exe: &Path,
    info: &BuilderInfo,
    uid: u64,
    gid: u64,
) -> Result<crate::layer::LayerBlob, BuilderError> {
    let staging = tempfile::Builder::new()
        .prefix("builder-")
        .tempdir_in(store.work_dir())
        .map_err(|source| BuilderError::Write {
            path: store.work_dir(),
            source,
        })?;
    let root = staging.path();
    let write = |rel: &str, f: &dyn Fn(&Path) -> std::io::Result<()>| {
        let path = root.join(rel);
        f(&path).map_err(|source| BuilderError::Write { path, source })
    };
    let writable = [
        "cnb/buildpacks",
        "cnb/plans",
        "layers",
        "workspace",
        "platform/env",
        BUILDER_HOME.trim_start_matches('/'),
    ];
    for dir in writable {
        write(dir, &|p| fs::create_dir_all(p))?;
    }
    write("cnb/kiln", &|p| fs::copy(exe, p).map(|_| ()))?;
    let text = format!(
        "# Written by `kiln builder create`: this image is kiln's build environment.\n{}",
        toml::to_string(info).map_err(|e| BuilderError::Write {
            path: PathBuf::from(BUILDER_FILE),
            source: std::io::Error::other(e),
        })?
    );
    write("cnb/kiln-builder.toml", &|p| fs::write(p, &text))?;
    let cnb = |mode| EntryMetadata {
        mode,
        uid: 0,
        gid: 0,
    };
    let mut entries = BTreeMap::from([
        ("cnb".to_string(), cnb(0o755)),
        ("cnb/kiln".to_string(), cnb(0o755)),
        ("cnb/kiln-builder.toml".to_string(), cnb(0o644)),
    ]);
    for dir in writable.iter().chain(&["platform"]) {
        entries.insert(
            (*dir).to_string(),
            EntryMetadata {
                mode: 0o755,
                uid,
                gid,
            },
        );
    }
    let spec = LayerSpec {
        parents: Vec::new(),
        source: root.to_path_buf(),
        target: String::new(),
        only: None,
        uid,
        gid,
        entry_metadata: Some(Arc::new(entries)),
    };
    Ok(write_layer(store.layout(), &spec)?)
}

/// The build image's configuration with kiln as the entrypoint, run as the CNB user, and the
/// kiln layer added.
fn builder_config(
    base: &crate::image::LoadedImage,
    info: &BuilderInfo,
    diff_id: &Digest,
    source_date_epoch: Option<i64>,
) -> Result<oci_spec::image::ImageConfiguration, BuilderError> {
    let invalid = |e: oci_spec::OciSpecError| BuilderError::Write {
        path: PathBuf::from("config"),
        source: std::io::Error::other(e),
    };
    let mut config = base.config.clone();
    let inner = config.config().clone().unwrap_or_default();
    let mut env: Vec<String> = inner
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.starts_with("KILN_HOME="))
        .collect();
    env.push(format!("KILN_HOME={BUILDER_HOME}"));
    let mut labels: HashMap<String, String> = inner.labels().clone().unwrap_or_default();
    labels.insert(
        BUILDER_LABEL.to_string(),
        format!("{}/{}", info.stack, info.flavour),
    );
    labels.insert(
        crate::labels::BUILD_IMAGE.to_string(),
        info.build_image.clone(),
    );
    let mut builder = ConfigBuilder::default()
        .env(env)
        .entrypoint(vec![KILN_IN_IMAGE.to_string()])
        .cmd(vec!["--help".to_string()])
        .labels(labels);
    if let Some(user) = inner.user() {
        builder = builder.user(user.clone());
    }
    config.set_config(Some(builder.build().map_err(invalid)?));
    let mut diff_ids = config.rootfs().diff_ids().clone();
    diff_ids.push(diff_id.to_string());
    config.rootfs_mut().set_diff_ids(diff_ids);
    let mut history = config.history().clone().unwrap_or_default();
    history.push(
        HistoryBuilder::default()
            .created(crate::reproducible::created_timestamp(source_date_epoch))
            .created_by("kiln builder create: the kiln executable and the CNB directories")
            .build()
            .map_err(invalid)?,
    );
    config.set_history(Some(history));
    config.set_created(Some(crate::reproducible::created_timestamp(
        source_date_epoch,
    )));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_files_round_trip_and_strangers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln-builder.toml");
        assert!(BuilderInfo::read(&path).unwrap().is_none());
        let info = BuilderInfo {
            stack: "bookworm".to_string(),
            flavour: "build-python".to_string(),
            build_image: "kiln/stacks/bookworm-build-python:latest@sha256:00".to_string(),
            packages: vec!["build-essential".to_string(), "python3-pip".to_string()],
        };
        fs::write(&path, toml::to_string(&info).unwrap()).unwrap();
        assert_eq!(BuilderInfo::read(&path).unwrap(), Some(info));
        fs::write(&path, "stack = \"bookworm\"\nsecret = \"x\"\n").unwrap();
        let err = BuilderInfo::read(&path).unwrap_err().to_string();
        assert!(err.contains("kiln builder create"), "{err}");
        assert!(!err.contains("\"x\""), "{err}");
        // Never read through a link.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(BuilderInfo::read(&link).is_err());
    }
}
