//! `kiln store verify` and `kiln cache prune`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::human_size;
use super::{Format, open_store};

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Re-hash every blob of kiln's local store and check that every image's blobs are there
    /// with their recorded sizes (exit 1 when something is damaged).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Delete the blobs whose content does not match their digest (builds write them
    /// again, pulls fetch them again).
    #[arg(long)]
    repair: bool,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// What `kiln store verify --format json` prints.
#[derive(Debug, Serialize)]
struct VerifyOutput {
    store: String,
    blobs: u64,
    bytes: u64,
    temporary_files: u64,
    problems: Vec<String>,
    repaired: bool,
    ok: bool,
}

pub(crate) fn run(args: &StoreArgs, home: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let StoreCommand::Verify(args) = &args.command;
    let store = open_store(home)?;
    // No lock needed: blobs are renamed into place complete and never change, so a build
    // running meanwhile cannot make a good blob look damaged.
    let report = store.layout().verify()?;
    if args.repair {
        store.layout().repair(&report)?;
    }
    let output = VerifyOutput {
        store: store.layout().root().display().to_string(),
        blobs: report.blobs,
        bytes: report.bytes,
        temporary_files: report.temporary_files,
        problems: report.corrupt.iter().map(ToString::to_string).collect(),
        repaired: args.repair,
        ok: report.is_ok(),
    };
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&output)?),
        Format::Human => {
            out!(
                "{}: {} blobs ({}) re-hashed, {} temporary files (of running or interrupted writes)",
                output.store,
                output.blobs,
                human_size(output.bytes),
                output.temporary_files
            );
            for problem in &output.problems {
                out!("  damaged: {problem}");
            }
            if output.ok {
                out!("store is intact");
            } else if args.repair {
                out!("removed the damaged blobs; rebuild or pull the images that used them");
            } else {
                out!("run `kiln store verify --repair` to remove the damaged blobs");
            }
        }
    }
    Ok(if output.ok || args.repair {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Remove what builds no longer need: scratch directories of interrupted builds, blobs no
    /// image or cache uses, and the least recently used build caches beyond a size (named
    /// images are never removed; `kiln rmi` does that). Waits for running builds.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Remove least recently used build caches until the store is at most SIZE (500M, 10G).
    #[arg(long, value_name = "SIZE", value_parser = kiln::cache::gc::parse_size)]
    max_size: Option<u64>,
    /// Remove every build cache (the next build of each image starts from scratch).
    #[arg(long)]
    all: bool,
    /// Only report what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) fn run_cache(
    args: &CacheArgs,
    home: Option<&PathBuf>,
    printer: &super::output::Printer,
) -> anyhow::Result<ExitCode> {
    let CacheCommand::Prune(args) = &args.command;
    let store = open_store(home)?;
    let report = kiln::cache::gc::prune(
        &store,
        kiln::cache::gc::PruneOptions {
            max_size: args.max_size,
            all: args.all,
            dry_run: args.dry_run,
            no_wait: false,
        },
        printer,
    )?
    .expect("a waiting prune always runs");
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => out!("{}", describe_prune(&report, args.dry_run)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line saying what a prune removed.
pub(crate) fn describe_prune(report: &kiln::cache::gc::PruneReport, dry_run: bool) -> String {
    format!(
        "{} {} build caches, {} blobs and {} interrupted builds' scratch directories, freeing {}; the store {} {} ({} of it named images)",
        if dry_run { "would remove" } else { "removed" },
        report.cache_entries,
        report.blobs,
        report.work_dirs,
        human_size(report.bytes_freed),
        if dry_run { "would hold" } else { "holds" },
        human_size(report.bytes_after),
        human_size(report.bytes_images),
    )
}
