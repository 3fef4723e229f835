//! What a build or a detection reports: [`BuildReport`], [`LayerReport`], [`DetectSummary`].

use std::collections::BTreeMap;

use oci_spec::image::Digest;
use serde::Serialize;

pub use crate::layer::LayerReport;

use super::detect::DetectReport;
use super::export::ExportedLayer;
use crate::buildpack_id::VersionedBuildpackId;
use crate::event::Timing;
use crate::launch::Process;
use crate::plan::PlanEntry;
use crate::transport::publish;

/// The result of [`build()`](super::build()).
#[derive(Debug, Clone, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct BuildReport {
    /// Where the image went.
    pub image: String,
    /// The manifest digest.
    #[serde(serialize_with = "display")]
    pub manifest_digest: Digest,
    /// The config digest (the image ID podman and Docker show).
    #[serde(serialize_with = "display")]
    pub config_digest: Digest,
    /// The run image.
    pub run_image: String,
    /// The buildpacks that built the image (serialized `id@version`).
    pub buildpacks: Vec<VersionedBuildpackId>,
    /// Every process.
    pub processes: Vec<Process>,
    /// The process the image runs by default.
    pub default_process: Option<String>,
    /// The layers kiln wrote.
    pub layers: Vec<LayerReport>,
    /// Seconds spent per phase (and publishing; checking instead of the phases when
    /// [`up_to_date`](Self::up_to_date)).
    pub timings: BTreeMap<Timing, f64>,
    /// What publishing did: for a registry, the pushed reference, digest and blobs
    /// uploaded, mounted or already there.
    pub published: publish::Published,
    /// Whether nothing changed since the last build of the destination, so the buildpacks did
    /// not run and the recorded image was published again.
    pub up_to_date: bool,
}

impl From<&ExportedLayer> for LayerReport {
    fn from(l: &ExportedLayer) -> Self {
        Self {
            name: l.name.clone(),
            diff_id: l.diff_id.clone(),
            digest: l.digest.clone(),
            size: l.size,
            reused: l.reused,
        }
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What [`detect()`](super::detect()) found.
#[derive(Debug, Clone, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct DetectSummary {
    /// Whether a group passed.
    pub detected: bool,
    /// The group (serialized `id@version`), in build order.
    pub group: Vec<VersionedBuildpackId>,
    /// The build plan.
    pub plan: Vec<PlanEntry>,
    /// The processes, when the build phase also ran (`kiln detect --build`).
    pub processes: Option<Vec<Process>>,
    /// The default process, when the build phase also ran.
    pub default_process: Option<String>,
    /// The run image a build would use: the one given, or the stack flavour chosen for what
    /// the group needs.
    pub run_image: Option<String>,
    /// The default process's command as the buildpacks decided it at detect time: the
    /// `start` of the last group member that recorded one in the metadata of a requirement
    /// it provides (kiln's built-in buildpacks do; see `buildpacks/README.md`).
    pub start: Option<String>,
    /// Every buildpack's detect result.
    pub results: Vec<DetectReport>,
}
