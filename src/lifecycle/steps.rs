//! kiln's own phases behind [`Phases`](super::Phases): the store, the options and the
//! destination they work with, and the calls into each phase module.

use std::collections::BTreeMap;

use super::analyze::{PreviousImage, RunImage};
use super::build::BuildOutput;
use super::detect::{DetectOutcome, GroupMember};
use super::export::{self, ExportContext, ExportedImage};
use super::options::BuildOptions;
use super::prepare::{self, Prepared, run_build, run_detect};
use super::report::{BuildReport, LayerReport};
use super::timings::Timings;
use super::{Phases, default_run_image, remember, restore};
use crate::buildenv::BuildEnvironment;
use crate::cache::memo::ExportMemo;
use crate::cache::record::{BuildRecord, Recorded};
use crate::cache::{CacheMetadata, LayerCache};
use crate::error::Error;
use crate::event::{CancelToken, EventSink, Timing};
use crate::image::reference::ImageReference;
use crate::plan::PlanEntry;
use crate::store::Store;
use crate::transport::publish::{self, Destination, Published};

/// A build of `options` to `destination`, phase by phase.
pub(super) struct Steps<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    destination: &'a Destination,
    record: &'a BuildRecord,
    recorded: Option<&'a Recorded>,
    inputs: Option<String>,
    events: &'a dyn EventSink,
    cancel: &'a CancelToken,
    /// The build image the group built in, when not the one it was detected in.
    build_image: Option<String>,
}

impl<'a> Steps<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        store: &'a Store,
        options: &'a BuildOptions,
        destination: &'a Destination,
        record: &'a BuildRecord,
        recorded: Option<&'a Recorded>,
        inputs: Option<String>,
        events: &'a dyn EventSink,
        cancel: &'a CancelToken,
    ) -> Self {
        Self {
            store,
            options,
            destination,
            record,
            recorded,
            inputs,
            events,
            cancel,
            build_image: None,
        }
    }
}

impl Phases for Steps<'_> {
    type Prepared = Prepared;
    type Detected = (Vec<GroupMember>, Vec<PlanEntry>);
    type RunImage = RunImage;
    type Restored = (LayerCache, Option<PreviousImage>, ExportMemo);
    type Built = BuildOutput;
    type Exported = ExportedImage;
    type Saved = CacheMetadata;

    fn prepare(&mut self, timings: &mut Timings<'_>) -> Result<Prepared, Error> {
        prepare::prepare(self.store, self.options, self.events, self.cancel, timings)
    }

    fn detect(&mut self, prepared: &Prepared) -> Result<Self::Detected, Error> {
        let runner = prepared.runner(None, self.options, self.events, self.cancel);
        match run_detect(prepared, &runner)? {
            DetectOutcome::Detected { group, plan, .. } => Ok((group, plan)),
            DetectOutcome::NoMatch { results } => Err(Error::NothingDetected { results }),
        }
    }

    fn run_image(
        &mut self,
        prepared: &Prepared,
        (group, plan): &Self::Detected,
    ) -> Result<RunImage, Error> {
        match &prepared.run_image {
            Some(image) => Ok(image.clone()),
            None => default_run_image(
                self.store,
                self.options,
                group,
                plan,
                self.events,
                self.cancel,
            ),
        }
    }

    fn restore(
        &mut self,
        prepared: &Prepared,
        (group, _): &Self::Detected,
        run_image: &RunImage,
    ) -> Self::Restored {
        let options = self.options;
        let (cache, previous) = restore::restore(
            self.store,
            &restore::RestoreInputs {
                destination: self.destination,
                record: self.record,
                recorded: self.recorded,
                cache_image: options.cache_image.as_ref(),
                clear_cache: options.clear_cache,
                platform: &run_image.platform,
                transports: &options.transports,
                group,
                layers_dir: &prepared.work.layers,
                kept_dir: &prepared.work.kept,
            },
            self.events,
            self.cancel,
        );
        let memo = ExportMemo::for_destination(self.store, &self.destination.to_string());
        (cache, previous, memo)
    }

    fn build(
        &mut self,
        prepared: &Prepared,
        (group, plan): &Self::Detected,
    ) -> Result<BuildOutput, Error> {
        let switched =
            prepared.build_sandbox(self.store, self.options, group, self.events, self.cancel)?;
        let runner = prepared.runner(
            switched.as_ref().map(|s| &s.sandbox),
            self.options,
            self.events,
            self.cancel,
        );
        let built = run_build(prepared, &runner, group, plan)?;
        self.build_image = switched.map(|s| s.image);
        Ok(built)
    }

    fn export(
        &mut self,
        prepared: &Prepared,
        run_image: &RunImage,
        (_, previous, memo): &Self::Restored,
        built: &BuildOutput,
    ) -> Result<ExportedImage, Error> {
        let options = self.options;
        let layer_files = self.store.state_dirs().layer_files;
        let provenance = provenance_request(options);
        Ok(export::export(&ExportContext {
            store: self.store,
            layout: self.store.layout(),
            run_image,
            build: built,
            app_dir: &prepared.work.app,
            process: options.process.as_ref(),
            source_date_epoch: options.source_date_epoch,
            exec_env: &options.exec_env,
            build_image: self
                .build_image
                .as_deref()
                .or(prepared.build_image.as_deref()),
            memo,
            app_source: prepared.untouched_app_source().as_deref(),
            previous: previous.as_ref(),
            stack: &options.stack,
            run_image_chosen: prepared.run_image.is_none(),
            layer_files: Some(&layer_files),
            image_name: &self.destination.image_name(),
            provenance: &provenance,
            events: self.events,
            cancel: self.cancel,
        })?)
    }

    fn publish(&mut self, exported: &ExportedImage) -> Result<Published, Error> {
        Ok(crate::transport::publish(
            self.store,
            publish::Publishable {
                descriptor: &exported.manifest_descriptor,
                manifest: &exported.manifest,
            },
            self.destination,
            &self.options.transports,
            self.events,
            self.cancel,
        )?)
    }

    fn save(
        &mut self,
        run_image: &RunImage,
        (cache, _, memo): &Self::Restored,
        built: &BuildOutput,
        exported: &ExportedImage,
    ) -> Option<CacheMetadata> {
        remember::save_caches(
            self.store,
            self.options,
            cache,
            memo,
            built,
            exported,
            run_image,
            self.events,
            self.cancel,
        )
    }

    fn report(
        &self,
        ((group, _), run_image, built, exported): (
            &Self::Detected,
            &RunImage,
            &BuildOutput,
            &ExportedImage,
        ),
        published: Published,
        timings: BTreeMap<Timing, f64>,
    ) -> BuildReport {
        BuildReport {
            image: self.destination.to_string(),
            manifest_digest: exported.manifest_descriptor.digest().clone(),
            config_digest: exported.manifest.config().digest().clone(),
            run_image: run_image.reference.to_string(),
            buildpacks: group.iter().map(|m| m.buildpack.reference()).collect(),
            processes: built.processes.list(),
            default_process: exported
                .default_process
                .as_ref()
                .map(|p| p.process_type.to_string()),
            layers: exported.layers.iter().map(LayerReport::from).collect(),
            timings,
            published,
            up_to_date: false,
        }
    }

    fn remember(
        &mut self,
        prepared: &Prepared,
        run_image: &RunImage,
        saved: &CacheMetadata,
        report: &BuildReport,
    ) {
        remember::remember(
            self.record,
            &prepared.work,
            saved,
            self.inputs.take(),
            run_image,
            self.destination,
            report,
            self.events,
        );
    }
}

/// What the build was asked to do, as its provenance statement tells (see
/// [`crate::provenance`]): paths as given when relative, else by their last component (an
/// absolute path names a machine, not the build); environment variable names only.
fn provenance_request(options: &BuildOptions) -> crate::provenance::Request<'_> {
    let path_as_given = |path: &std::path::Path| {
        if path.is_relative() {
            path.display().to_string()
        } else {
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        }
    };
    let mut buildpacks: Vec<String> = options
        .buildpacks
        .buildpacks
        .iter()
        .map(|b| match b {
            crate::buildpack::catalog::BuildpackRef::Dir(dir) => path_as_given(dir),
            crate::buildpack::catalog::BuildpackRef::Id { id, version } => match version {
                Some(version) => format!("{id}@{version}"),
                None => id.clone(),
            },
        })
        .collect();
    if let Some(order) = &options.buildpacks.order_file {
        buildpacks.push(format!("order:{}", path_as_given(order)));
    }
    let mut request = crate::provenance::Request {
        source: Some(&options.app_dir),
        stack: &options.stack,
        buildpacks,
        build_environment: match options.build_environment {
            BuildEnvironment::Host => "host",
            BuildEnvironment::Image => "image",
        },
        exec_env: &options.exec_env,
        ..Default::default()
    };
    // An image in a file or layout is named by the file's or directory's name too.
    let image_as_given = |reference: &ImageReference| {
        let named = |transport: &str, path: &std::path::Path, name: Option<&String>| {
            let path = path_as_given(path);
            name.map_or_else(
                || format!("{transport}:{path}"),
                |name| format!("{transport}:{path}:{name}"),
            )
        };
        match reference {
            ImageReference::Layout { path, name } => named("oci", path, name.as_ref()),
            ImageReference::Archive { path, name } => named("oci-archive", path, name.as_ref()),
            ImageReference::DockerArchive { path, name } => {
                named("docker-archive", path, name.as_ref())
            }
            other => other.to_string(),
        }
    };
    request.run_image = options.run_image.as_ref().map(image_as_given);
    request.build_image = options.build_image.as_ref().map(image_as_given);
    request.env = options.env.keys().cloned().collect();
    request.process = options.process.as_ref().map(ToString::to_string);
    request.source_date_epoch = options.source_date_epoch;
    request
}
