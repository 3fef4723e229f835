//! Phase timings and the phase events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, EventSink, Phase, Timing};

/// Seconds per phase for the report (each [`Phase`] and [`Timing::Publish`]), and the phase
/// events.
pub(crate) struct Timings<'a> {
    events: &'a dyn EventSink,
    seconds: BTreeMap<Timing, f64>,
}

impl<'a> Timings<'a> {
    pub(super) fn new(events: &'a dyn EventSink) -> Self {
        Self {
            events,
            seconds: BTreeMap::new(),
        }
    }

    /// Runs `phase` between its started and finished events, recording its time when it
    /// succeeds.
    pub(super) fn phase<T>(
        &mut self,
        phase: Phase,
        run: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.events.event(&Event::PhaseStarted(phase));
        let started = Instant::now();
        let out = run(self)?;
        let elapsed: Duration = started.elapsed();
        self.record(Timing::Phase(phase), started);
        self.events.event(&Event::PhaseFinished { phase, elapsed });
        Ok(out)
    }

    /// Records the time since `started` under `key`.
    pub(super) fn record(&mut self, key: Timing, started: Instant) {
        self.seconds.insert(key, started.elapsed().as_secs_f64());
    }

    pub(super) fn finish(self) -> BTreeMap<Timing, f64> {
        self.seconds
    }
}
