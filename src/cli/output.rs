//! Turning library events into terminal output, in the manner of pack: phase banners,
//! buildpack output as it happens, one line per layer. Everything goes to stderr, so stdout
//! carries only the result (and is clean JSON with `--format json`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kiln::event::DetectStatus;
use kiln::{Event, EventSink, Phase};

/// Prints events to stderr according to the verbosity.
pub(crate) struct Printer {
    quiet: bool,
    verbose: u8,
    spinner: Mutex<Option<ProgressBar>>,
    terminal: bool,
}

impl Printer {
    pub(crate) fn new(quiet: bool, verbose: u8) -> Self {
        Self {
            quiet,
            verbose,
            spinner: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Prints a line above any progress spinner.
    fn line(&self, text: &str) {
        let spinner = self
            .spinner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match spinner.as_ref() {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    fn start_spinner(&self, message: &str) {
        if !self.terminal || self.quiet {
            return;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self
            .spinner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar);
    }

    fn stop_spinner(&self) {
        if let Some(bar) = self
            .spinner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            bar.finish_and_clear();
        }
    }

    /// Shows progress of `label` as a bar on a terminal (one bar at a time).
    fn progress(&self, label: &str, current: u64, total: u64) {
        if !self.terminal || self.quiet {
            return;
        }
        let mut spinner = self
            .spinner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bar = spinner.get_or_insert_with(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(label.to_string());
            bar
        });
        bar.set_length(total);
        bar.set_position(current);
        if current >= total {
            bar.finish_and_clear();
            *spinner = None;
        }
    }

    /// Whether buildpacks' build output is printed as it comes (not with `--quiet`).
    pub(crate) fn shows_buildpack_output(&self) -> bool {
        !self.quiet
    }

    /// Prints the per-buildpack results after a failed detection, always: this is what
    /// the user needs to see to fix it.
    pub(crate) fn detect_failures(&self, results: &[kiln::lifecycle::DetectReport]) {
        for r in results {
            self.line(&format!("{}@{}: {}", r.id, r.version, r.status));
            let show_output = self.verbose > 0 || matches!(r.status, DetectStatus::Error(_));
            if show_output && !r.output.is_empty() {
                for l in r.output.lines() {
                    self.line(&format!("    {l}"));
                }
            }
        }
    }
}

impl EventSink for Printer {
    fn event(&self, event: &Event) {
        match event {
            Event::Warning(message) => self.line(&format!("warning: {message}")),
            _ if self.quiet => {}
            Event::PhaseStarted(phase) => {
                self.line(&format!("===> {phase}"));
                if *phase == Phase::Export {
                    self.start_spinner("writing layers");
                }
            }
            Event::PhaseFinished { phase, elapsed } => {
                if *phase == Phase::Export {
                    self.stop_spinner();
                }
                if self.verbose > 0 {
                    self.line(&format!("     {phase} took {:.2}s", elapsed.as_secs_f64()));
                }
            }
            Event::Detected {
                buildpack,
                status,
                output,
            } => {
                let always = matches!(status, DetectStatus::Error(_));
                if always || self.verbose > 0 {
                    self.line(&format!("{buildpack}: {status}"));
                    if !output.is_empty() {
                        self.line(&format!("======== Output: {buildpack} ========"));
                        for l in output.lines() {
                            self.line(l);
                        }
                    }
                }
            }
            Event::BuildpackStarted { id, version } if self.verbose > 0 => {
                self.line(&format!("----> {id}@{version}"));
            }
            Event::BuildpackOutput { line, .. } => self.line(line),
            Event::BuildpackFinished { id, elapsed } if self.verbose > 0 => {
                self.line(&format!("<---- {id} ({:.2}s)", elapsed.as_secs_f64()));
            }
            Event::Layer {
                name, size, reused, ..
            } => {
                let verb = if *reused { "Reusing" } else { "Adding" };
                self.line(&format!("{verb} layer '{name}' ({})", human_size(*size)));
            }
            Event::Info(message) if self.verbose > 1 => self.line(message),
            Event::Step(message) => self.line(message),
            Event::Progress {
                label,
                current,
                total,
            } => self.progress(label, *current, *total),
            _ => {}
        }
    }
}

/// `1234567` → `1.2 MB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)] // display only
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1234), "1.2 kB");
        assert_eq!(human_size(5_600_000), "5.6 MB");
    }
}
