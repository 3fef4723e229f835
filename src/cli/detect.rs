//! `kiln detect`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{Format, Printer, SourceArgs, open_store};

#[derive(Debug, Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Also run the build phase (nothing is exported) to learn the processes, which
    /// buildpacks only declare while building.
    #[arg(long)]
    build: bool,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) fn run(
    args: &DetectArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let options = args.source.to_detect_options()?;
    let store = open_store(home)?;
    let summary = kiln::detect(&store, &options, args.build, printer, cancel)?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&summary)?),
        Format::Human if !summary.detected => {
            out!("No buildpack group passed detection.");
            for r in &summary.results {
                out!("  {}@{}: {}", r.id, r.version, r.status);
                // An error's own words say what to fix; a plain "fail" needs -v.
                if matches!(r.status, kiln::event::DetectStatus::Error(_)) {
                    for line in r.output.lines() {
                        out!("      {line}");
                    }
                }
            }
            if !summary
                .results
                .iter()
                .any(|r| matches!(r.status, kiln::event::DetectStatus::Error(_)))
            {
                out!("{}", kiln::buildpack::builtin::nothing_detected_hint());
            }
        }
        Format::Human => {
            out!("Group:");
            for b in &summary.group {
                out!("  {b}");
            }
            if let Some(run_image) = &summary.run_image {
                out!("Run image: {run_image}");
            }
            if let Some(start) = &summary.start {
                out!("Start: {start}");
            }
            out!("Plan:");
            if summary.plan.is_empty() {
                out!("  (empty)");
            }
            for entry in &summary.plan {
                let providers: Vec<String> = entry
                    .providers
                    .iter()
                    .map(|p| format!("{}@{}", p.id, p.version))
                    .collect();
                out!("  {} (provided by {})", entry.name(), providers.join(", "));
                for r in &entry.requires {
                    for (key, value) in &r.metadata {
                        out!("    {key}: {}", serde_json::to_string(value)?);
                    }
                }
            }
            match &summary.processes {
                None => out!("Processes: run `kiln detect --build` to see them"),
                Some(processes) => {
                    out!("Processes:");
                    for p in processes {
                        let default = if summary.default_process.as_deref()
                            == Some(p.process_type.as_str())
                        {
                            " (default)"
                        } else {
                            ""
                        };
                        out!(
                            "  {}{default}: {}",
                            p.process_type,
                            p.command
                                .iter()
                                .chain(&p.args)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                    }
                }
            }
        }
    }
    let errored = summary
        .results
        .iter()
        .any(|r| matches!(r.status, kiln::event::DetectStatus::Error(_)));
    match (summary.detected, errored) {
        (true, _) => Ok(ExitCode::SUCCESS),
        (false, false) => Ok(ExitCode::from(20)),
        // Also on stderr, as every failure is (exit code 21).
        (false, true) => Err(
            kiln::Error::Detect(kiln::lifecycle::DetectError::BuildpackErrored {
                results: summary.results,
            })
            .into(),
        ),
    }
}
