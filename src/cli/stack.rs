//! `kiln stack build | lock | list`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::human_size;
use super::{Format, Printer, open_store_guarded};

#[derive(Debug, Args)]
pub(crate) struct StackArgs {
    #[command(subcommand)]
    command: StackCommand,
}

#[derive(Debug, Subcommand)]
enum StackCommand {
    /// Build a stack flavour's run image into kiln's store (kiln/stacks/<stack>-<flavour>).
    Build(BuildArgs),
    /// Resolve flavours against the archive and write their lock files.
    Lock(LockArgs),
    /// List the built-in stacks and their flavours.
    List(ListArgs),
}

#[derive(Debug, Args)]
struct MirrorArgs {
    /// Debian mirror [default: $KILN_DEBIAN_MIRROR, else the host's apt sources].
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Debian security mirror [default: $KILN_DEBIAN_SECURITY_MIRROR, else the host's apt
    /// sources, else the mirror with /debian-security].
    #[arg(long, value_name = "URL")]
    security_mirror: Option<String>,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// A built-in stack (bookworm) or a stack directory.
    #[arg(value_name = "STACK")]
    stack: String,
    /// The flavour.
    #[arg(long, default_value = "base")]
    flavour: String,
    /// Architecture [default: the host's].
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    #[command(flatten)]
    mirrors: MirrorArgs,
    /// Resolve against the mirror now instead of building from the lock file.
    #[arg(long)]
    no_lock: bool,
    /// With --no-lock: do not verify the archive's signature.
    #[arg(long, requires = "no_lock")]
    insecure_skip_signature: bool,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
struct LockArgs {
    /// A stack directory (lock files are written into it).
    #[arg(value_name = "STACK_DIR")]
    stack: PathBuf,
    /// Flavours to lock [default: all].
    #[arg(long = "flavour", value_name = "FLAVOUR")]
    flavours: Vec<String>,
    /// Architectures to lock [default: all of the stack's].
    #[arg(long = "arch", value_name = "ARCH")]
    arches: Vec<String>,
    #[command(flatten)]
    mirrors: MirrorArgs,
    /// Do not verify the archive's signature.
    #[arg(long)]
    insecure_skip_signature: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// What `kiln stack build --format json` prints.
#[derive(Debug, Serialize)]
struct BuildReport {
    image: String,
    manifest_digest: String,
    platform: String,
    compressed_size: u64,
    uncompressed_size: u64,
    layers: Vec<LayerReport>,
    packages: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LayerReport {
    flavour: String,
    packages: usize,
    diff_id: String,
    size: u64,
    uncompressed_size: u64,
}

pub(crate) fn run(
    args: &StackArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    match &args.command {
        StackCommand::Build(a) => build(a, home, printer, cancel),
        StackCommand::Lock(a) => lock(a, printer),
        StackCommand::List(a) => list(a),
    }
}

fn build(
    args: &BuildArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let source = kiln::stack::StackSource::open(&args.stack).map_err(kiln::Error::from)?;
    let mut options = kiln::stack::StackOptions::default();
    options.flavour.clone_from(&args.flavour);
    options.arch.clone_from(&args.arch);
    options.mirror.clone_from(&args.mirrors.mirror);
    options
        .security_mirror
        .clone_from(&args.mirrors.security_mirror);
    options.use_lock = !args.no_lock;
    options.skip_signature = args.insecure_skip_signature;
    options.source_date_epoch = super::source_date_epoch()?;
    let (store, _guard) = open_store_guarded(home)?;
    let image = kiln::stack::build(&store, &source, &options, printer, cancel)
        .map_err(kiln::Error::from)?;
    let report = BuildReport {
        image: image.name.to_string(),
        manifest_digest: image.manifest.digest().to_string(),
        platform: image.platform.to_string(),
        compressed_size: image.compressed_size(),
        uncompressed_size: image.uncompressed_size(),
        layers: image
            .layers
            .iter()
            .map(|l| LayerReport {
                flavour: l.flavour.to_string(),
                packages: l.packages,
                diff_id: l.blob.diff_id.to_string(),
                size: l.blob.size,
                uncompressed_size: l.blob.uncompressed_size,
            })
            .collect(),
        packages: image.packages.clone(),
    };
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => {
            out!("Built {} ({})", report.image, report.platform);
            out!("  manifest digest: {}", report.manifest_digest);
            for l in &report.layers {
                out!(
                    "  layer {:<8} {:>4} packages  {:>9} ({} uncompressed)",
                    l.flavour,
                    l.packages,
                    human_size(l.size),
                    human_size(l.uncompressed_size)
                );
            }
            out!(
                "  size: {} compressed, {} uncompressed, {} packages",
                human_size(report.compressed_size),
                human_size(report.uncompressed_size),
                report.packages.len()
            );
            out!("  use it with: kiln build … --run-image {}", report.image);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lock(args: &LockArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let source = kiln::stack::StackSource::open(&args.stack.display().to_string())
        .map_err(kiln::Error::from)?;
    let mut options = kiln::stack::StackOptions::default();
    options.mirror.clone_from(&args.mirrors.mirror);
    options
        .security_mirror
        .clone_from(&args.mirrors.security_mirror);
    options.skip_signature = args.insecure_skip_signature;
    let written = kiln::stack::lock(&source, &args.flavours, &args.arches, &options, printer)
        .map_err(kiln::Error::from)?;
    for path in written {
        out!("Wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct StackRow {
    stack: String,
    description: String,
    architectures: Vec<String>,
    flavours: Vec<FlavourRow>,
}

#[derive(Debug, Serialize)]
struct FlavourRow {
    name: String,
    extends: Option<String>,
    description: String,
    image: String,
    locked: bool,
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for name in kiln::stack::StackSource::builtin_names() {
        let source = kiln::stack::StackSource::open(&name).map_err(kiln::Error::from)?;
        let def = source.definition().map_err(kiln::Error::from)?;
        let mut flavours = Vec::new();
        for (flavour, f) in &def.flavours {
            flavours.push(FlavourRow {
                name: flavour.to_string(),
                extends: f.extends.as_ref().map(ToString::to_string),
                description: f.description.clone(),
                image: kiln::stack::store_name(&def.stack.name, flavour)
                    .map_err(kiln::Error::from)?
                    .to_string(),
                locked: source
                    .lock(flavour.as_str())
                    .map_err(kiln::Error::from)?
                    .is_some(),
            });
        }
        rows.push(StackRow {
            stack: name,
            description: def.stack.description.clone(),
            architectures: def.stack.architectures.clone(),
            flavours,
        });
    }
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Human => {
            for row in &rows {
                out!(
                    "{}: {} ({})",
                    row.stack,
                    row.description,
                    row.architectures.join(", ")
                );
                for f in &row.flavours {
                    let extends = f
                        .extends
                        .as_deref()
                        .map(|e| format!(" (extends {e})"))
                        .unwrap_or_default();
                    let locked = if f.locked { "" } else { " [no lock]" };
                    out!("  {:<8} {}{extends}{locked}", f.name, f.description);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
