//! The fast path: when nothing a build depends on changed since the last build of the same
//! destination (see [`crate::cache::record`]), the recorded image is published again and no
//! buildpack runs.

use std::collections::BTreeMap;
use std::time::Instant;

use super::options::{BuildOptions, BuildpackRef, BuildpackSelection};
use super::report::{BuildReport, LayerReport};
use crate::buildenv::BuildEnvironment;
use crate::cache::record::Inputs;
use crate::cache::record::{self, Recorded};
use crate::error::Error;
use crate::event::{CancelToken, Event, EventSink, Timing};
use crate::image::TargetPlatform;
use crate::image::reference::ImageReference;
use crate::store::Store;
use crate::transport::publish::{self, Destination};
use crate::transport::registry::PullPolicy;

/// The report of a build whose inputs are those recorded, if the recorded image is still
/// whole in the store and its run image unchanged: the image is published again (for a file
/// destination, only if the file changed) and nothing else is done.
pub(super) fn up_to_date(
    store: &Store,
    destination: &Destination,
    recorded: &Recorded,
    checking: Instant,
    options: &BuildOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<Option<BuildReport>, Error> {
    let layout = store.layout();
    let manifest_digest = recorded.manifest_digest.clone();
    let Some(manifest) = layout
        .read_blob(&manifest_digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<oci_spec::image::ImageManifest>(&b).ok())
    else {
        return Ok(None);
    };
    if !std::iter::once(manifest.config())
        .chain(manifest.layers())
        .all(|d| layout.has_blob(d.digest()))
    {
        return Ok(None);
    }
    // A run image kept in the store by name (the stack's, a pulled one) must still be the one
    // used; files and layouts are in the inputs' fingerprint.
    let run_image = recorded.run_image.parse::<ImageReference>().ok();
    if let Some(ImageReference::Named(name) | ImageReference::Registry(name)) = &run_image {
        let platform = options
            .platform
            .clone()
            .unwrap_or_else(TargetPlatform::host);
        let current =
            crate::transport::load(&ImageReference::Named(name.clone()), store, &platform)
                .ok()
                .map(|i| i.manifest_descriptor.digest().clone());
        if current != recorded.run_image_digest {
            return Ok(None);
        }
    }
    events.event(&Event::Step(format!(
        "Nothing changed since the last build of {destination} (source, buildpacks, run image and settings are the same): reusing {}",
        recorded.manifest_digest
    )));
    let mut timings = BTreeMap::new();
    timings.insert(Timing::Checking, checking.elapsed().as_secs_f64());
    let started = Instant::now();
    let unchanged_file = recorded.output_stamp.is_some()
        && match destination {
            Destination::Archive { path, .. } | Destination::DockerArchive { path, .. } => {
                record::file_stamp(path) == recorded.output_stamp
            }
            _ => false,
        };
    let published = if unchanged_file {
        publish::Published::Written
    } else {
        let descriptor = oci_spec::image::DescriptorBuilder::default()
            .media_type(oci_spec::image::MediaType::ImageManifest)
            .digest(manifest_digest.clone())
            .size(
                layout
                    .read_blob(&manifest_digest)
                    .map_or(0, |b| b.len() as u64),
            )
            .build()
            .expect("a descriptor with digest, size and media type builds");
        crate::transport::publish(
            store,
            publish::Publishable {
                descriptor: &descriptor,
                manifest: &manifest,
            },
            destination,
            &options.transports,
            events,
            cancel,
        )?
    };
    timings.insert(Timing::Publish, started.elapsed().as_secs_f64());
    Ok(Some(BuildReport {
        image: destination.to_string(),
        manifest_digest,
        config_digest: manifest.config().digest().clone(),
        run_image: recorded.run_image.clone(),
        buildpacks: recorded.buildpacks.clone(),
        processes: recorded.processes.clone(),
        default_process: recorded.default_process.clone(),
        layers: recorded
            .layers
            .iter()
            .map(|l| LayerReport {
                reused: true,
                ..l.clone()
            })
            .collect(),
        timings,
        published,
        up_to_date: true,
    }))
}

/// The fingerprint of everything a build with `options` depends on, or `None` when an input
/// cannot be checked without fetching it (a registry run image under the `always` pull
/// policy, a Docker daemon run image), an input cannot be read, or the caller asked for a
/// fresh build (`--clear-cache`): such builds always run their buildpacks.
///
/// The options are destructured field by field, so a new option cannot escape this check
/// silently: it must be added here, as an input or with the reason it is not one. A run
/// image named in the store is checked by digest separately (see
/// [`Recorded::run_image_digest`]); the default stack's run image is found after detection.
pub(super) fn inputs_of(store: &Store, options: &BuildOptions) -> Option<String> {
    let BuildOptions {
        app_dir,
        buildpacks,
        run_image,
        stack,
        // Already applied: `stack` is the one the app's requests chose (and the app is an
        // input, so a changed request is seen).
        auto_stack: _,
        platform,
        // The record is kept per destination: another destination has its own.
        destination: _,
        env,
        process,
        source_date_epoch,
        exec_env,
        build_environment,
        build_image,
        // Which authorities are trusted changes what can be downloaded, not what is built.
        ca_certs: _,
        // Through the environment buildpacks start from, below.
        host_env: _,
        kiln_executable,
        clear_cache,
        // Asks to run the buildpacks whatever the inputs; not an input itself.
        rebuild: _,
        // Only what is restored comes from it, and an up-to-date build restores nothing.
        cache_image: _,
        transports,
    } = options;
    if *clear_cache {
        return None;
    }
    let mut inputs = Inputs::new();
    inputs.add("kiln", env!("CARGO_PKG_VERSION"));
    inputs.add("compression", crate::reproducible::COMPRESSION);
    // The built-in buildpacks are in the executable.
    let exe = crate::buildpack::builtin::executable(kiln_executable.as_deref()).ok()?;
    inputs.add_file("executable", &exe).ok()?;
    inputs.add(
        "app",
        &crate::app::fingerprint_source(app_dir, &[store.root().to_path_buf()]).ok()?,
    );
    let BuildpackSelection {
        buildpacks,
        order_file,
        search_roots,
    } = buildpacks;
    for buildpack in buildpacks {
        match buildpack {
            BuildpackRef::Dir(dir) => inputs.add_tree("buildpack", dir).ok()?,
            BuildpackRef::Id { id, version } => {
                inputs.add(
                    "buildpack",
                    &format!("{id}@{}", version.as_deref().unwrap_or("")),
                );
            }
        }
    }
    for root in search_roots {
        inputs.add_tree("buildpacks-dir", root).ok()?;
    }
    if let Some(order) = order_file {
        inputs.add_file("order", order).ok()?;
    }
    add_run_image(&mut inputs, run_image.as_ref(), stack, transports)?;
    inputs.add(
        "platform",
        &platform
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    for (name, value) in env {
        inputs.add("env", &format!("{name}={value}"));
    }
    inputs.add(
        "process",
        &process
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    inputs.add(
        "source-date-epoch",
        &source_date_epoch.map(|e| e.to_string()).unwrap_or_default(),
    );
    inputs.add("exec-env", exec_env);
    inputs.add(
        "build-environment",
        match build_environment {
            BuildEnvironment::Host => "host",
            BuildEnvironment::Image => "image",
        },
    );
    if *build_environment == BuildEnvironment::Image {
        // The build image is an input like the run image (the stack's when not given).
        add_run_image(&mut inputs, build_image.as_ref(), stack, transports)?;
    }
    for (name, value) in super::prepare::base_env(options).iter() {
        inputs.add(name, value);
    }
    Some(inputs.finish())
}

/// Adds the run image (or the stack its default comes from) to `inputs`; `None` when it
/// cannot be checked without fetching it.
fn add_run_image(
    inputs: &mut Inputs,
    run_image: Option<&ImageReference>,
    stack: &str,
    transports: &crate::transport::Transports,
) -> Option<()> {
    match run_image {
        None => {
            let source = crate::stack::StackSource::open(stack).ok()?;
            inputs.add("stack", source.label());
            if let Some(dir) = source.dir() {
                inputs.add_tree("stack-dir", dir).ok()?;
            }
        }
        Some(reference) => {
            inputs.add("run-image", &reference.to_string());
            match reference {
                ImageReference::Layout { path, .. } => {
                    inputs.add_tree("run-image-layout", path).ok()?;
                }
                ImageReference::Archive { path, .. }
                | ImageReference::DockerArchive { path, .. } => {
                    inputs.add_file("run-image-archive", path).ok()?;
                }
                ImageReference::Registry(_) if transports.pull_policy == PullPolicy::Always => {
                    return None;
                }
                ImageReference::DockerDaemon(_) => return None,
                ImageReference::Registry(_)
                | ImageReference::Named(_)
                | ImageReference::Scratch => {}
            }
        }
    }
    Some(())
}
