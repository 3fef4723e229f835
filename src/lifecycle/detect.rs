//! The detect phase: which group of buildpacks applies to the app, and its build plan.
//!
//! Groups of the order are tried in turn and the first that passes wins. Composite
//! buildpacks are expanded in place, depth first, exactly as the reference lifecycle
//! expands them (`phase/detector.go`): the composite's own `[[order]]` groups are tried with
//! the rest of the enclosing group appended, and an optional composite may be skipped.
//! Members of a group run `bin/detect` in parallel; each buildpack runs at most once per
//! build. A group passes when every required member passed, at least one member passed, and
//! its build plan resolves (see [`crate::plan`]).
//!
//! "No group passed" is an outcome ([`DetectOutcome::NoMatch`]), not an error.
//!
//! A required member whose `bin/detect` errors (an exit code other than 0 and 100, or a plan
//! kiln cannot read) stops detection: kiln does not go on to later groups. The Buildpack
//! API's detection process moves on to the next group after any non-zero exit, and the
//! reference lifecycle does too (an error only turns its final "nothing passed" into exit
//! code 21). kiln departs from that on purpose: a buildpack that recognised the app and
//! refused it (`kiln/nodejs` on an `engines.node` the run image cannot meet) said what is
//! wrong, and a broader buildpack further down the order (`kiln/static` serving the same
//! app's `public/` directory) would otherwise build a different, broken app without a word.
//! An optional member that errors is dropped from its group, as the specification says, and
//! a buildpack whose targets exclude the run image fails its group without stopping.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::buildenv::PLATFORM_DIR;
use crate::buildpack::descriptor::Target;
use crate::buildpack::order::{GroupEntry, Order};
pub(crate) use crate::buildpack::target::RunTarget;
use crate::buildpack::{
    Buildpack, BuildpackError, BuildpackId, Catalog, Runner, VersionedBuildpackId, exec,
};
use crate::env::Env;
use crate::event::{DetectStatus, Event};
use crate::plan::{self, BuildPlan, Candidate, PlanEntry};

/// Errors of the detect phase (apart from "no group passed", which is an outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A buildpack referenced by the order could not be loaded or found.
    #[error(transparent)]
    Buildpack(#[from] BuildpackError),
    /// A required buildpack's detect errored (exit code other than 0 or 100, or an unreadable
    /// plan), which stops detection, or no group passed and an optional member or a
    /// buildpack for other targets errored. The lifecycle's exit code 21.
    #[error("detection failed: {}", describe_errors(.results))]
    BuildpackErrored {
        /// Every buildpack's result.
        results: Vec<DetectReport>,
    },
    /// A scratch file for detection could not be written.
    #[error("failed to prepare detection files at {path}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Detection was cancelled: its source is the shared [`crate::event::Cancelled`] (see
    /// [`crate::is_cancelled`]).
    #[error("cancelled")]
    Cancelled(#[from] crate::event::Cancelled),
}

/// Each errored buildpack with its error and what it said: its own `error:`/`hint:` lines
/// when it printed some, else its last lines.
fn describe_errors(results: &[DetectReport]) -> String {
    const SHOWN_LINES: usize = 10;
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.status {
            DetectStatus::Error(e) => {
                let lines: Vec<&str> = r.output.lines().filter(|l| !l.trim().is_empty()).collect();
                let own: Vec<&str> = lines
                    .iter()
                    .copied()
                    .skip_while(|l| !l.starts_with("error:"))
                    .collect();
                let shown = if own.is_empty() {
                    &lines[lines.len().saturating_sub(SHOWN_LINES)..]
                } else {
                    &own[..own.len().min(SHOWN_LINES)]
                };
                let mut text = format!("{}@{}: {e}", r.id, r.version);
                for line in shown {
                    text.push_str("\n    ");
                    text.push_str(line);
                }
                Some(text)
            }
            _ => None,
        })
        .collect();
    errors.join("\n")
}

/// One buildpack's detection, for reports and `kiln detect`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectReport {
    /// Buildpack ID.
    pub id: BuildpackId,
    /// Buildpack version.
    pub version: String,
    /// Whether it was an optional member.
    pub optional: bool,
    /// The result.
    #[serde(serialize_with = "serialize_status")]
    pub status: DetectStatus,
    /// Its combined output.
    pub output: String,
}

fn serialize_status<S: serde::Serializer>(status: &DetectStatus, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(status)
}

/// A buildpack of the selected group.
#[derive(Debug, Clone)]
pub(crate) struct GroupMember {
    /// The buildpack.
    pub buildpack: Buildpack,
}

/// The detect phase's result.
#[derive(Debug, Clone)]
#[must_use]
pub(crate) enum DetectOutcome {
    /// A group passed.
    Detected {
        /// The group's participating buildpacks, in build order.
        group: Vec<GroupMember>,
        /// The resolved build plan, sorted by dependency name.
        plan: Vec<PlanEntry>,
        /// What every buildpack that ran said.
        results: Vec<DetectReport>,
    },
    /// No group passed; every buildpack failed cleanly (the lifecycle's exit code 20).
    NoMatch {
        /// What every buildpack that ran said.
        results: Vec<DetectReport>,
    },
}

/// Host-side paths detection uses.
#[derive(Debug, Clone)]
pub(crate) struct DetectDirs {
    /// Scratch directory for plan files (visible at the same path inside the sandbox).
    pub plans: PathBuf,
}

/// Everything detection needs.
pub(crate) struct DetectContext<'a> {
    /// Buildpacks by id and version.
    pub catalog: &'a Catalog,
    /// The order to try.
    pub order: &'a Order,
    /// Scratch paths.
    pub dirs: &'a DetectDirs,
    /// The filtered host environment (see [`Env::for_build`]).
    pub base_env: &'a Env,
    /// Runs the buildpacks.
    pub runner: &'a Runner<'a>,
}

/// Runs the detect phase.
pub(crate) fn detect(ctx: &DetectContext<'_>) -> Result<DetectOutcome, DetectError> {
    let detector = Detector {
        ctx,
        runs: Mutex::new(BTreeMap::new()),
        plans: Mutex::new(BTreeMap::new()),
        errored: Mutex::new(std::collections::BTreeSet::new()),
    };
    let result = detector.order(&ctx.order.order, &[], &[], false, &mut Vec::new());
    let runs = detector
        .runs
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let results: Vec<DetectReport> = runs.into_values().collect();
    match result {
        Ok(Found { members, plan }) => {
            let mut group = Vec::new();
            for element in members {
                let buildpack = ctx
                    .catalog
                    .lookup(element.id.as_str(), Some(&element.version))?
                    .clone();
                group.push(GroupMember { buildpack });
            }
            Ok(DetectOutcome::Detected {
                group,
                plan,
                results,
            })
        }
        Err(GroupFailure::Failed) => Ok(DetectOutcome::NoMatch { results }),
        Err(GroupFailure::BuildpackError | GroupFailure::Stop) => {
            Err(DetectError::BuildpackErrored { results })
        }
        Err(GroupFailure::Hard(e)) => Err(e),
    }
}

/// A group element that will take part in resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    id: BuildpackId,
    version: String,
    optional: bool,
}

impl Element {
    fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    fn versioned(&self) -> VersionedBuildpackId {
        VersionedBuildpackId::new(self.id.clone(), self.version.clone())
    }
}

/// The outcome of one `bin/detect`.
struct DetectRun {
    element: Element,
    status: DetectStatus,
    output: String,
    plan: Option<BuildPlan>,
}

struct Found {
    members: Vec<Element>,
    plan: Vec<PlanEntry>,
}

enum GroupFailure {
    /// Every required buildpack ran; the group did not pass.
    Failed,
    /// The group did not pass and some detect errored.
    BuildpackError,
    /// A required member's `bin/detect` errored: detection stops (see the module docs).
    Stop,
    /// Something that stops detection altogether.
    Hard(DetectError),
}

impl From<DetectError> for GroupFailure {
    fn from(e: DetectError) -> Self {
        Self::Hard(e)
    }
}

impl From<BuildpackError> for GroupFailure {
    fn from(e: BuildpackError) -> Self {
        Self::Hard(e.into())
    }
}

struct Detector<'a, 'c> {
    ctx: &'a DetectContext<'c>,
    runs: Mutex<BTreeMap<String, DetectReport>>,
    plans: Mutex<BTreeMap<String, BuildPlan>>,
    /// Buildpacks whose `bin/detect` errored (not those refused for their targets).
    errored: Mutex<std::collections::BTreeSet<String>>,
}

impl Detector<'_, '_> {
    fn order(
        &self,
        order: &[crate::buildpack::order::OrderGroup],
        done: &[Element],
        next: &[GroupEntry],
        optional: bool,
        expanding: &mut Vec<String>,
    ) -> Result<Found, GroupFailure> {
        let mut buildpack_error = false;
        for group in order {
            let mut entries = group.group.clone();
            entries.extend_from_slice(next);
            match self.group(&entries, done.to_vec(), expanding) {
                Ok(found) => return Ok(found),
                Err(GroupFailure::BuildpackError) => buildpack_error = true,
                Err(GroupFailure::Failed) => {}
                Err(stop @ (GroupFailure::Hard(_) | GroupFailure::Stop)) => return Err(stop),
            }
        }
        if optional {
            return self.group(next, done.to_vec(), expanding);
        }
        Err(if buildpack_error {
            GroupFailure::BuildpackError
        } else {
            GroupFailure::Failed
        })
    }

    fn group(
        &self,
        entries: &[GroupEntry],
        mut done: Vec<Element>,
        expanding: &mut Vec<String>,
    ) -> Result<Found, GroupFailure> {
        if let Err(cancelled) = self.ctx.runner.cancel.check() {
            return Err(DetectError::from(cancelled).into());
        }
        for (i, entry) in entries.iter().enumerate() {
            if done.iter().any(|e| e.id == *entry.id) {
                continue;
            }
            let buildpack = self
                .ctx
                .catalog
                .lookup(&entry.id, entry.version.as_deref())?;
            if buildpack.is_composite() {
                let reference = buildpack.reference().to_string();
                if expanding.contains(&reference) {
                    let mut chain = expanding.clone();
                    chain.push(reference);
                    return Err(BuildpackError::Cycle { chain }.into());
                }
                expanding.push(reference);
                let result = self.order(
                    &buildpack.descriptor().order,
                    &done,
                    &entries[i + 1..],
                    entry.optional,
                    expanding,
                );
                expanding.pop();
                return result;
            }
            let element = Element {
                id: buildpack.id().clone(),
                version: buildpack.version().to_string(),
                optional: entry.optional,
            };
            let targets = buildpack.targets();
            if !targets.is_empty()
                && !targets.iter().any(|t| self.ctx.runner.target.satisfies(t))
                && !entry.optional
            {
                let why = format!(
                    "unable to satisfy target os/arch constraints; run image: {}, buildpack: {}",
                    describe_target(self.ctx.runner.target),
                    targets
                        .iter()
                        .map(describe_buildpack_target)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                self.record(&element, DetectStatus::Error(why), String::new());
                done.push(element);
                continue;
            }
            let exec_envs = buildpack.exec_envs();
            if !exec_envs.is_empty()
                && !exec_envs.contains(&"*")
                && !exec_envs.contains(&self.ctx.runner.exec_env)
            {
                let why = format!(
                    "execution environment {} is not one of {}",
                    self.ctx.runner.exec_env,
                    exec_envs.join(", ")
                );
                self.record(&element, DetectStatus::Skipped(why), String::new());
                continue;
            }
            done.push(element);
        }
        self.run_missing(&done)?;
        self.resolve(&done)
    }

    fn record(&self, element: &Element, status: DetectStatus, output: String) {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.entry(element.key()).or_insert_with(|| DetectReport {
            id: element.id.clone(),
            version: element.version.clone(),
            optional: element.optional,
            status,
            output,
        });
    }

    /// Runs `bin/detect` of every element not run yet, in parallel.
    fn run_missing(&self, done: &[Element]) -> Result<(), DetectError> {
        let missing: Vec<&Element> = {
            let runs = self
                .runs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut seen = Vec::new();
            for e in done {
                if !runs.contains_key(&e.key())
                    && !seen.iter().any(|s: &&Element| s.key() == e.key())
                {
                    seen.push(e);
                }
            }
            seen
        };
        let results: Vec<Result<DetectRun, DetectError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = missing
                .iter()
                .map(|element| {
                    scope.spawn(move || {
                        let buildpack = self
                            .ctx
                            .catalog
                            .lookup(element.id.as_str(), Some(&element.version))?;
                        let (status, output, plan) = self.run_detect(buildpack)?;
                        Ok(DetectRun {
                            element: (*element).clone(),
                            status,
                            output,
                            plan,
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("detect threads do not panic"))
                .collect()
        });
        for result in results {
            let DetectRun {
                element,
                status,
                output,
                plan,
            } = result?;
            self.ctx.runner.events.event(&Event::Detected {
                buildpack: element.versioned(),
                status: status.clone(),
                output: output.clone(),
            });
            if matches!(status, DetectStatus::Error(_)) {
                self.errored
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(element.key());
            }
            self.record(&element, status, output);
            if let Some(plan) = plan {
                self.plans().insert(element.key(), plan);
            }
        }
        self.ctx.runner.cancel.check()?;
        Ok(())
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BuildPlan>> {
        self.plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn run_detect(
        &self,
        buildpack: &Buildpack,
    ) -> Result<(DetectStatus, String, Option<BuildPlan>), DetectError> {
        let ctx = self.ctx;
        let plan_dir = ctx.dirs.plans.join("detect").join(format!(
            "{}-{}",
            buildpack.id().escaped(),
            buildpack.version()
        ));
        let prep = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DetectError::Prepare { path, source }
        };
        fs::create_dir_all(&plan_dir).map_err(prep(&plan_dir))?;
        let plan_path = plan_dir.join("plan.toml");
        fs::write(&plan_path, b"").map_err(prep(&plan_path))?;

        let mut command = match ctx.runner.command(buildpack, "detect", ctx.base_env) {
            Ok(c) => c,
            Err(e) => return Ok((DetectStatus::Error(e.to_string()), String::new(), None)),
        };
        command
            .arg(PLATFORM_DIR)
            .arg(crate::buildenv::guest_plan_path(
                &ctx.dirs.plans,
                &plan_path,
            ))
            .env(
                "CNB_BUILD_PLAN_PATH",
                crate::buildenv::guest_plan_path(&ctx.dirs.plans, &plan_path),
            );
        let mut lines = Vec::new();
        let outcome = match exec::run(command, ctx.runner.cancel, &mut |l| lines.push(l), None) {
            Ok(o) => o,
            Err(e) => {
                return Ok((
                    DetectStatus::Error(format!("could not run bin/detect: {e}")),
                    lines.join("\n"),
                    None,
                ));
            }
        };
        let output = lines.join("\n");
        if outcome.cancelled {
            return Err(crate::event::Cancelled.into());
        }
        match outcome.code {
            Some(0) => {}
            Some(100) => return Ok((DetectStatus::Fail, output, None)),
            _ => {
                return Ok((
                    DetectStatus::Error(format!("bin/detect ended with {}", outcome.describe())),
                    output,
                    None,
                ));
            }
        }
        // Buildpack output: bounded, not through a link, never blocking on a FIFO, and
        // described by line and column, never quoted.
        let text = match crate::untrusted::read_text(
            &plan_path,
            crate::untrusted::MAX_METADATA,
            crate::untrusted::Links::Refuse,
        ) {
            Ok(t) => t,
            Err(e) => {
                return Ok((
                    DetectStatus::Error(format!(
                        "could not read its build plan: {} ({})",
                        crate::env::read_problem(&e),
                        plan_path.display()
                    )),
                    output,
                    None,
                ));
            }
        };
        let plan: BuildPlan = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                return Ok((
                    DetectStatus::Error(format!(
                        "its build plan is not valid TOML: {} ({})",
                        crate::untrusted::toml_problem(&text, &e),
                        plan_path.display()
                    )),
                    output,
                    None,
                ));
            }
        };
        if let Err(problem) = plan.validate() {
            return Ok((DetectStatus::Error(problem.to_string()), output, None));
        }
        Ok((DetectStatus::Pass, output, Some(plan)))
    }

    fn resolve(&self, done: &[Element]) -> Result<Found, GroupFailure> {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let plans = self.plans();
        let errored = self
            .errored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if done
            .iter()
            .any(|e| !e.optional && errored.contains(&e.key()))
        {
            return Err(GroupFailure::Stop);
        }
        let mut all_passed = true;
        let mut any_error = false;
        let mut candidates = Vec::new();
        for (index, element) in done.iter().enumerate() {
            let status = runs.get(&element.key()).map(|r| &r.status);
            match status {
                Some(DetectStatus::Pass) => candidates.push(Candidate {
                    index,
                    id: element.id.to_string(),
                    version: element.version.clone(),
                    optional: element.optional,
                    options: plans
                        .get(&element.key())
                        .map(BuildPlan::options)
                        .unwrap_or_default(),
                }),
                Some(DetectStatus::Fail | DetectStatus::Skipped(_)) | None => {
                    all_passed &= element.optional;
                }
                Some(DetectStatus::Error(_)) => {
                    any_error = true;
                    all_passed &= element.optional;
                }
            }
        }
        let failure = || {
            if any_error {
                GroupFailure::BuildpackError
            } else {
                GroupFailure::Failed
            }
        };
        if !all_passed || candidates.is_empty() {
            return Err(failure());
        }
        let resolution = plan::resolve(&candidates).ok_or(GroupFailure::Failed)?;
        Ok(Found {
            members: resolution
                .members
                .iter()
                .map(|&i| done[i].clone())
                .collect(),
            plan: resolution.entries,
        })
    }
}

fn describe_target(t: &RunTarget) -> String {
    let mut s = format!("{}/{}", t.os, t.arch);
    if let Some(v) = &t.variant {
        s.push('/');
        s.push_str(v);
    }
    if let Some(d) = &t.distro_name {
        let _ = write!(s, " {d} {}", t.distro_version.as_deref().unwrap_or(""));
    }
    s
}

fn describe_buildpack_target(t: &Target) -> String {
    let any = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("*").to_string();
    let mut s = format!("{}/{}", any(t.os.as_deref()), any(t.arch.as_deref()));
    if let Some(v) = t.variant() {
        s.push('/');
        s.push_str(v);
    }
    for d in &t.distros {
        let _ = write!(s, " {} {}", d.name, d.version);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildpack::descriptor::Distro;

    #[test]
    fn target_matching() {
        let run = RunTarget {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
            distro_name: Some("debian".into()),
            distro_version: Some("12".into()),
        };
        assert!(run.satisfies(&Target::default()));
        assert!(run.satisfies(&Target {
            os: Some("linux".into()),
            ..Target::default()
        }));
        assert!(!run.satisfies(&Target {
            arch: Some("arm64".into()),
            ..Target::default()
        }));
        assert!(run.satisfies(&Target {
            distros: vec![Distro {
                name: "debian".into(),
                version: "12".into()
            }],
            ..Target::default()
        }));
        assert!(!run.satisfies(&Target {
            distros: vec![Distro {
                name: "ubuntu".into(),
                version: "24.04".into()
            }],
            ..Target::default()
        }));
        let bare = RunTarget {
            os: "linux".into(),
            arch: "amd64".into(),
            ..RunTarget::default()
        };
        assert!(!bare.satisfies(&Target {
            distros: vec![Distro {
                name: "debian".into(),
                version: String::new()
            }],
            ..Target::default()
        }));
    }

    #[test]
    fn target_env_vars_skip_unknowns() {
        let t = RunTarget {
            os: "linux".into(),
            arch: "arm64".into(),
            variant: Some("v8".into()),
            ..RunTarget::default()
        };
        let names: Vec<_> = t.env_vars().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "CNB_TARGET_OS",
                "CNB_TARGET_ARCH",
                "CNB_TARGET_ARCH_VARIANT"
            ]
        );
    }
}
