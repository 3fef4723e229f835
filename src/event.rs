//! Progress as events, and cancellation.
//!
//! The library never prints. Everything a user interface might show — phase changes,
//! detection results, buildpack output, layers written — arrives at an [`EventSink`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::buildpack_id::{BuildpackId, VersionedBuildpackId};

/// A phase of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Reading the run image.
    Analyze,
    /// Running `bin/detect`.
    Detect,
    /// Restoring cached layers.
    Restore,
    /// Running `bin/build`.
    Build,
    /// Writing the image.
    Export,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Analyze => "ANALYZING",
            Self::Detect => "DETECTING",
            Self::Restore => "RESTORING",
            Self::Build => "BUILDING",
            Self::Export => "EXPORTING",
        })
    }
}

/// What a build report's `timings` entry measured: a [`Phase`], publishing, or (on the
/// nothing-changed fast path) checking that nothing changed.
///
/// Serialized as today's report keys: `analyzing`, `detecting`, `restoring`, `building`,
/// `exporting`, `publish` and `checking`; ordered by that key, so a map of timings
/// serializes in the same order as one keyed by the strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timing {
    /// A phase of the pipeline.
    Phase(Phase),
    /// Publishing the image to its destination.
    Publish,
    /// Checking whether anything changed since the last build (the fast path).
    Checking,
}

impl Timing {
    /// The report key.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Phase(Phase::Analyze) => "analyzing",
            Self::Phase(Phase::Detect) => "detecting",
            Self::Phase(Phase::Restore) => "restoring",
            Self::Phase(Phase::Build) => "building",
            Self::Phase(Phase::Export) => "exporting",
            Self::Publish => "publish",
            Self::Checking => "checking",
        }
    }
}

impl From<Phase> for Timing {
    fn from(phase: Phase) -> Self {
        Self::Phase(phase)
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Ord for Timing {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Timing {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for Timing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// How a buildpack's `bin/detect` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectStatus {
    /// Exit 0.
    Pass,
    /// Exit 100.
    Fail,
    /// Any other exit, or kiln could not run it or read its plan.
    Error(String),
    /// Not run: its targets don't include the run image's, or its exec-env excludes this one.
    Skipped(String),
}

impl fmt::Display for DetectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Fail => f.write_str("fail"),
            Self::Error(e) => write!(f, "error: {e}"),
            Self::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// Something that happened during a build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A phase began.
    PhaseStarted(Phase),
    /// A phase ended successfully.
    PhaseFinished {
        /// The phase.
        phase: Phase,
        /// How long it took.
        elapsed: Duration,
    },
    /// One buildpack's detection result (with its output, which pack shows only at debug
    /// level or on errors).
    Detected {
        /// The buildpack (`id@version` when displayed).
        buildpack: VersionedBuildpackId,
        /// The result.
        status: DetectStatus,
        /// Its combined stdout and stderr.
        output: String,
    },
    /// A buildpack's `bin/build` started.
    BuildpackStarted {
        /// Buildpack ID.
        id: BuildpackId,
        /// Its version.
        version: String,
    },
    /// A line a buildpack printed during build (stdout and stderr merged).
    BuildpackOutput {
        /// Buildpack ID.
        id: BuildpackId,
        /// The line, without its newline.
        line: String,
    },
    /// A buildpack's `bin/build` finished successfully.
    BuildpackFinished {
        /// Buildpack ID.
        id: BuildpackId,
        /// How long it ran.
        elapsed: Duration,
    },
    /// A layer of the new image was written or reused.
    Layer {
        /// What it holds (`kiln/python:deps`, `application`, …).
        name: String,
        /// Its `diff_id`.
        diff_id: oci_spec::image::Digest,
        /// Compressed size in bytes.
        size: u64,
        /// True when an identical blob already existed, so nothing was compressed.
        reused: bool,
    },
    /// A step of a longer operation, worth a line at normal verbosity ("Resolving packages").
    Step(String),
    /// Progress of a measurable task (downloading, writing layers).
    Progress {
        /// What is progressing; events with the same label update one indicator.
        label: String,
        /// Done so far.
        current: u64,
        /// The total.
        total: u64,
    },
    /// Something the user should know but that does not stop the build.
    Warning(String),
    /// Informational message.
    Info(String),
}

/// Receives [`Event`]s. Implemented for any `Fn(&Event) + Send + Sync`.
pub trait EventSink: Send + Sync {
    /// Handles one event. Called from the thread doing the work; keep it quick.
    fn event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> EventSink for F {
    fn event(&self, event: &Event) {
        self(event);
    }
}

/// An [`EventSink`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _: &Event) {}
}

/// A handle to cancel a running operation (build, stack build, pull, push, rebase) from
/// another thread. Cloning shares the flag.
///
/// Cancellation stops the current buildpack process (SIGKILL) or transfer and makes the
/// operation return an error caused by [`Cancelled`] (see [`crate::is_cancelled`]); nothing
/// already published is touched.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancellation was requested, for `cancel.check()?`.
    ///
    /// # Errors
    ///
    /// [`Cancelled`] when [`CancelToken::cancel`] was called.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// The shared flag, for wiring to signal handlers (e.g. `signal_hook::flag::register`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// The error of an operation stopped through its [`CancelToken`] — the one cancellation of
/// kiln, whichever operation or phase it stopped.
///
/// Each module's error carries it in a `Cancelled` variant whose [`source`] it is, so
/// [`crate::is_cancelled`] finds it under any wrapping (the CLI maps it to exit code 130).
///
/// [`source`]: std::error::Error::source
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn timings_serialize_as_the_report_keys_in_their_order() {
        let all = [
            Timing::Phase(Phase::Analyze),
            Timing::Phase(Phase::Detect),
            Timing::Phase(Phase::Restore),
            Timing::Phase(Phase::Build),
            Timing::Phase(Phase::Export),
            Timing::Publish,
            Timing::Checking,
        ];
        let typed: BTreeMap<Timing, f64> = all.iter().map(|t| (*t, 1.5)).collect();
        let strings: BTreeMap<String, f64> = all.iter().map(|t| (t.to_string(), 1.5)).collect();
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&strings).unwrap()
        );
        // The phase keys are the lowercase phase banners.
        for phase in [
            Phase::Analyze,
            Phase::Detect,
            Phase::Restore,
            Phase::Build,
            Phase::Export,
        ] {
            assert_eq!(
                Timing::from(phase).as_str(),
                phase.to_string().to_ascii_lowercase()
            );
        }
    }
}
