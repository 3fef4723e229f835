//! `kiln rebase`: put an app image on another run image without rebuilding it.
//!
//! The image's `io.buildpacks.lifecycle.metadata` label records the run image it was built
//! on (`runImage.topLayer`, the `diff_id` of that image's last layer). Everything up to that
//! layer is the run image; everything after it is the app (buildpack and app layers). Rebase
//! keeps the app layers and the app's configuration and replaces the run image layers, their
//! history and the labels that describe the run image (distribution, stack, the recorded run
//! image), per the CNB rebase rules: the new run image must be for the same OS, architecture
//! and variant and the same distribution (name and version), and the app image must not be
//! labelled `io.buildpacks.rebasable=false`; `--force` skips these checks. Nothing depends on
//! time, so the result is reproducible: rebasing back onto the original run image gives the
//! original image, byte for byte.
//!
//! The native-libraries layer kiln adds for shared libraries the run image lacks (see
//! [`crate::labels::NATIVE_PACKAGES`]) comes after the run image's top layer and is kept like
//! the app's layers; rebase says so and warns when the new run image's packages overlap with
//! it or drop one the old run image had.

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, RootFsBuilder};

use crate::event::{CancelToken, Event, EventSink};
use crate::image::reference::ImageReference;
use crate::image::write::write_image;
use crate::image::{ImageError, TargetPlatform};
use crate::labels::{self, LifecycleMetadata};
use crate::lifecycle::analyze::{self, RunImage};
use crate::store::Store;
use crate::transport::Transports;
use crate::transport::publish::{self, Destination};

/// Errors of [`rebase()`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebaseError {
    /// The app image could not be read.
    #[error("cannot read the image {reference}")]
    Image {
        /// The image.
        reference: String,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// The new run image could not be read.
    #[error(transparent)]
    RunImage(#[from] analyze::AnalyzeError),
    /// The image is not a buildpacks image, or its metadata does not match its layers.
    #[error("cannot rebase {reference}: {problem}")]
    NotRebasable {
        /// The image.
        reference: String,
        /// What is wrong and how to proceed.
        problem: String,
    },
    /// The run images differ in a way that could break the app.
    #[error("cannot rebase {reference} onto {run_image}: {problem}; pass --force to rebase anyway")]
    Incompatible {
        /// The image.
        reference: String,
        /// The new run image.
        run_image: String,
        /// How they differ.
        problem: Incompatibility,
    },
    /// Writing the rebased image failed.
    #[error("cannot write the rebased image: {0}")]
    Write(WriteError),
    /// Publishing the rebased image failed.
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
}

/// How the new run image differs from the one the app was built on, in a way that could
/// break the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompatibility {
    /// Another OS, architecture or variant.
    #[error("the image is for {image}, the run image for {run_image}")]
    Platform {
        /// The app image's platform.
        image: TargetPlatform,
        /// The run image's.
        run_image: TargetPlatform,
    },
    /// Another distribution (name or version label).
    #[error(
        "{label} is {} on the image and {} on the run image",
        image.as_deref().unwrap_or("unset"),
        run_image.as_deref().unwrap_or("unset")
    )]
    Distro {
        /// The label.
        label: &'static str,
        /// Its value on the app image.
        image: Option<String>,
        /// Its value on the run image.
        run_image: Option<String>,
    },
}

/// Why the rebased image could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The image has fewer layers than the run image it records.
    #[error("the image has fewer than {base_count} diff_ids")]
    TooFewDiffIds {
        /// The run image layers it should start with.
        base_count: usize,
    },
    /// The configuration could not be built.
    #[error(transparent)]
    BuildConfig(#[from] oci_spec::OciSpecError),
    /// The lifecycle metadata label could not be encoded.
    #[error(transparent)]
    EncodeMetadata(#[from] serde_json::Error),
    /// The encoded lifecycle metadata is not UTF-8.
    #[error(transparent)]
    MetadataNotUtf8(#[from] std::string::FromUtf8Error),
    /// The image could not be written into the store.
    #[error(transparent)]
    WriteImage(#[from] crate::image::layout::LayoutError),
    /// The store could not be guarded against a concurrent garbage collection.
    #[error(transparent)]
    Guard(#[from] crate::store::StoreError),
}

/// What to rebase.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RebaseOptions {
    /// The app image.
    pub image: ImageReference,
    /// The new run image; `None` means the run image the app image records (for kiln's stack
    /// images, the store name: the stack image as it is now, e.g. after `kiln stack build`
    /// picked up security updates).
    pub run_image: Option<ImageReference>,
    /// Where the result goes (default: where the image came from).
    pub destination: Option<Destination>,
    /// Skip the compatibility checks.
    pub force: bool,
    /// Platform of a multi-platform app or run image (default: the host's).
    pub platform: Option<TargetPlatform>,
    /// How registries and the daemon are reached.
    pub transports: Transports,
}

impl RebaseOptions {
    /// Rebases `image` onto the run image it records, in place.
    pub fn new(image: ImageReference) -> Self {
        Self {
            image,
            run_image: None,
            destination: None,
            force: false,
            platform: None,
            transports: Transports::default(),
        }
    }
}

/// The result of [`rebase()`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct RebaseReport {
    /// Where the rebased image went.
    pub image: String,
    /// Its manifest digest.
    pub manifest_digest: Digest,
    /// Its config digest.
    pub config_digest: Digest,
    /// The run image it was on (as recorded: name and manifest digest).
    pub old_run_image: String,
    /// The run image it is on now.
    pub new_run_image: String,
    /// Run image layers replaced, and how many replaced them.
    pub run_layers: (usize, usize),
    /// App layers kept.
    pub app_layers: usize,
    /// What publishing did.
    pub published: publish::Published,
}

/// Rebases an app image (see the module docs).
pub fn rebase(
    store: &Store,
    options: &RebaseOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<RebaseReport, RebaseError> {
    let _guard =
        crate::cache::gc::BuildGuard::acquire(store).map_err(|e| RebaseError::Write(e.into()))?;
    let reference = options.image.to_string();
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(TargetPlatform::host);
    let not_rebasable = |problem: String| RebaseError::NotRebasable {
        reference: reference.clone(),
        problem,
    };
    let AppImage {
        image: app,
        labels: app_labels,
        mut metadata,
        base_count,
    } = load_app(store, options, &platform, events, cancel)?;
    let run_reference = match &options.run_image {
        Some(r) => r.clone(),
        None => recorded_run_image(&metadata).ok_or_else(|| {
            not_rebasable(format!(
                "it records its run image as {:?}, which kiln cannot find again; give --run-image",
                metadata.run_image.image
            ))
        })?,
    };
    // Only an explicit --platform must match the run image's (else check_compatible).
    let run_image = analyze::analyze(
        store,
        &run_reference,
        options.platform.as_ref(),
        &options.transports,
        events,
        cancel,
    )?;
    if !options.force {
        check_compatible(&app.config, &app_labels, &run_image).map_err(|problem| {
            RebaseError::Incompatible {
                reference: reference.clone(),
                run_image: run_reference.to_string(),
                problem,
            }
        })?;
    }

    check_native_packages(&app_labels, &run_image, events);
    let old_run_image = format!(
        "{}@{}",
        metadata.run_image.image, metadata.run_image.reference
    );
    let new_base_layers: Vec<Descriptor> = run_image
        .image
        .as_ref()
        .map(|i| i.manifest.layers().clone())
        .unwrap_or_default();
    // load_app checked that base_count is within the layers.
    let app_layers = app.manifest.layers().get(base_count..).unwrap_or_default();
    let config = rebased_config(
        &app.config,
        &app_labels,
        &mut metadata,
        &run_image,
        base_count,
    )
    .map_err(RebaseError::Write)?;
    let mut layers = new_base_layers.clone();
    layers.extend_from_slice(app_layers);
    let written =
        write_image(store.layout(), layers, &config).map_err(|e| RebaseError::Write(e.into()))?;
    events.event(&Event::Step(format!(
        "Rebased {reference}: {base_count} run image layers replaced by {} from {}",
        new_base_layers.len(),
        run_reference
    )));

    let destination = destination(options).map_err(not_rebasable)?;
    let published = crate::transport::publish(
        store,
        publish::Publishable {
            descriptor: &written.descriptor,
            manifest: &written.manifest,
        },
        &destination,
        &options.transports,
        events,
        cancel,
    )?;
    Ok(RebaseReport {
        image: destination.to_string(),
        manifest_digest: written.descriptor.digest().clone(),
        config_digest: written.manifest.config().digest().clone(),
        old_run_image,
        new_run_image: format!(
            "{}@{}",
            run_image.label_name(),
            metadata.run_image.reference
        ),
        run_layers: (base_count, new_base_layers.len()),
        app_layers: app_layers.len(),
        published,
    })
}

/// Where the rebased image goes: `--output`, else back where it came from.
fn destination(options: &RebaseOptions) -> Result<Destination, String> {
    match &options.destination {
        Some(d) => Ok(d.clone()),
        None => Destination::from_reference(&options.image, None).map_err(|e| e.to_string()),
    }
}

/// The native-libraries layer (see [`crate::labels::NATIVE_PACKAGES`]) lies after the run
/// image's top layer, so a rebase keeps it as it keeps the app's layers; its packages were
/// chosen for the old run image's package set. Says so, and warns when the new run image
/// has one of them itself (the layer's older files would lie over the run image's) or lacks
/// a package the old one had (a dependency of theirs may be gone): a rebuild then makes the
/// layer for the new run image.
fn check_native_packages(
    app_labels: &std::collections::HashMap<String, String>,
    run_image: &RunImage,
    events: &dyn EventSink,
) {
    let Some(native) = app_labels
        .get(labels::NATIVE_PACKAGES)
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    let package_set = |value: Option<&String>| -> std::collections::BTreeMap<String, String> {
        value
            .map(|v| {
                v.split(',')
                    .filter_map(|p| p.split_once('='))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let new_labels = run_image
        .image
        .as_ref()
        .and_then(|i| i.config.config().as_ref())
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    let old = package_set(app_labels.get(labels::STACK_PACKAGES));
    let new = package_set(new_labels.get(labels::STACK_PACKAGES));
    events.event(&Event::Step(format!(
        "Keeping the native libraries layer ({}); a rebase does not update it, a rebuild does",
        native.join(", ")
    )));
    for entry in &native {
        let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
        if let Some(version) = new.get(name) {
            events.event(&Event::Warning(format!(
                "the new run image has {name} {version} itself; the image's native libraries layer ({entry}) lies over it: rebuild the image so the layer leaves it out"
            )));
        }
    }
    let gone: Vec<&String> = old.keys().filter(|n| !new.contains_key(*n)).collect();
    if !gone.is_empty() {
        events.event(&Event::Warning(format!(
            "the new run image lacks {}, which the old one had and the native libraries ({}) may need: rebuild the image",
            gone.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "),
            native.join(", ")
        )));
    }
}

/// The app image, read and checked.
struct AppImage {
    image: crate::image::LoadedImage,
    labels: std::collections::HashMap<String, String>,
    metadata: LifecycleMetadata,
    /// How many of its layers are the run image's.
    base_count: usize,
}

/// Reads the app image (its layers copied into the store) and finds where its run image
/// ends.
fn load_app(
    store: &Store,
    options: &RebaseOptions,
    platform: &TargetPlatform,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<AppImage, RebaseError> {
    let reference = options.image.to_string();
    let image_err = |source| RebaseError::Image {
        reference: reference.clone(),
        source,
    };
    let app = crate::transport::fetch(
        &options.image,
        store,
        platform,
        &options.transports,
        events,
        cancel,
    )
    .map_err(image_err)?;
    // Every layer must have its diff_id (and no more): the split below relies on it.
    crate::image::diff_ids::check_layer_count(&app).map_err(image_err)?;
    for layer in app.manifest.layers() {
        store
            .layout()
            .copy_blob_from(&app.layout, layer)
            .map_err(|source| {
                image_err(ImageError::Layout {
                    reference: reference.clone(),
                    source,
                })
            })?;
    }
    let not_rebasable = |problem: String| RebaseError::NotRebasable {
        reference: reference.clone(),
        problem,
    };
    let app_labels = app
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    let metadata: LifecycleMetadata = app_labels
        .get(labels::LIFECYCLE_METADATA)
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| {
            not_rebasable(format!(
                "it has no readable {} label (it was not built with buildpacks)",
                labels::LIFECYCLE_METADATA
            ))
        })?;
    let diff_ids = app.diff_ids().to_vec();
    let base_count = match &metadata.run_image.top_layer {
        None => 0,
        Some(top_layer) => diff_ids
            .iter()
            .position(|d| d == top_layer.as_ref())
            .map(|i| i + 1)
            .ok_or_else(|| {
                not_rebasable(format!(
                    "its recorded run image top layer {top_layer} is not one of its layers"
                ))
            })?,
    };
    if !options.force
        && app_labels
            .get("io.buildpacks.rebasable")
            .map(String::as_str)
            == Some("false")
    {
        return Err(not_rebasable(
            "it is labelled io.buildpacks.rebasable=false (a buildpack wrote files that depend on the run image); rebuild it, or pass --force".to_string(),
        ));
    }

    Ok(AppImage {
        image: app,
        labels: app_labels,
        metadata,
        base_count,
    })
}

/// The run image an app image records, if kiln can name it: a store name (kiln's stacks,
/// pulled images) or `scratch`.
fn recorded_run_image(metadata: &LifecycleMetadata) -> Option<ImageReference> {
    let name = &metadata.run_image.image;
    if name == "scratch" {
        return Some(ImageReference::Scratch);
    }
    match name.parse::<ImageReference>().ok()? {
        reference @ (ImageReference::Named(_) | ImageReference::Registry(_)) => Some(reference),
        _ => None,
    }
}

/// Why the new run image may not carry the app (`Err` with the difference).
fn check_compatible(
    app: &ImageConfiguration,
    app_labels: &std::collections::HashMap<String, String>,
    run_image: &RunImage,
) -> Result<(), Incompatibility> {
    let app_platform = TargetPlatform {
        os: app.os().to_string(),
        architecture: app.architecture().to_string(),
        variant: app.variant().clone().filter(|v| !v.is_empty()),
    };
    if app_platform != run_image.platform {
        return Err(Incompatibility::Platform {
            image: app_platform,
            run_image: run_image.platform.clone(),
        });
    }
    let target = run_image.target();
    for (label, new) in [
        (labels::DISTRO_NAME, &target.distro_name),
        (labels::DISTRO_VERSION, &target.distro_version),
    ] {
        let old = app_labels.get(label).filter(|v| !v.is_empty());
        if old != new.as_ref() {
            return Err(Incompatibility::Distro {
                label,
                image: old.cloned(),
                run_image: new.clone(),
            });
        }
    }
    Ok(())
}

/// The labels that describe the run image rather than the app.
const RUN_IMAGE_LABELS: [&str; 4] = [
    labels::DISTRO_NAME,
    labels::DISTRO_VERSION,
    labels::STACK,
    labels::STACK_PACKAGES,
];

/// The app's configuration on `run_image`: base layers, history and run-image labels
/// swapped, the lifecycle metadata's run image updated.
fn rebased_config(
    app: &ImageConfiguration,
    app_labels: &std::collections::HashMap<String, String>,
    metadata: &mut LifecycleMetadata,
    run_image: &RunImage,
    base_count: usize,
) -> Result<ImageConfiguration, WriteError> {
    let base = run_image.image.as_ref().map(|i| &i.config);
    let app_diff_ids = app
        .rootfs()
        .diff_ids()
        .get(base_count..)
        .ok_or(WriteError::TooFewDiffIds { base_count })?;
    let mut diff_ids: Vec<String> = base
        .map(|c| c.rootfs().diff_ids().clone())
        .unwrap_or_default();
    diff_ids.extend(app_diff_ids.iter().cloned());
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()?;

    // History: the run image's, then the entries of the app's own layers (one per layer,
    // the last ones of the app's history).
    let app_layer_count = app_diff_ids.len();
    let app_history = app.history().clone().unwrap_or_default();
    let mut history = base.and_then(|c| c.history().clone()).unwrap_or_default();
    history.extend(
        app_history[app_history.len().saturating_sub(app_layer_count)..]
            .iter()
            .cloned(),
    );

    metadata.run_image.top_layer = run_image.top_layer();
    metadata.run_image.reference = run_image
        .image
        .as_ref()
        .map(|i| i.manifest_descriptor.digest().to_string())
        .unwrap_or_default();
    metadata.run_image.image = run_image.label_name();
    metadata.stack.run_image.image = run_image.label_name();
    let mut new_labels = app_labels.clone();
    let run_labels = base
        .and_then(|c| c.config().as_ref())
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    for label in RUN_IMAGE_LABELS {
        match run_labels.get(label) {
            Some(value) => new_labels.insert(label.to_string(), value.clone()),
            None => new_labels.remove(label),
        };
    }
    new_labels.insert(
        labels::LIFECYCLE_METADATA.to_string(),
        String::from_utf8(crate::reproducible::canonical_json(metadata)?)?,
    );

    let mut config = app.clone();
    let mut inner = app.config().clone().unwrap_or_default();
    inner.set_labels(Some(new_labels));
    config.set_config(Some(inner));
    config.set_rootfs(rootfs);
    config.set_history(Some(history));
    Ok(config)
}
