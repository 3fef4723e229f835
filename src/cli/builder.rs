//! `kiln builder create`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Format, Printer, TransportArgs, UsageError, open_store_guarded};

#[derive(Debug, Args)]
pub(crate) struct BuilderArgs {
    #[command(subcommand)]
    command: BuilderCommand,
}

#[derive(Debug, Subcommand)]
enum BuilderCommand {
    /// Make a builder image: a stack's build image with kiln in it (entrypoint `kiln`), for
    /// CI pods and containers where kiln cannot create namespaces.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Where the builder image goes: a name in kiln's store, a registry reference,
    /// oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE[:NAME] or
    /// docker-daemon:NAME.
    #[arg(long, short, value_name = "REF")]
    output: String,
    /// The stack whose build image it holds (a built-in stack or a stack directory).
    #[arg(long, default_value = kiln::DEFAULT_STACK, value_name = "STACK")]
    stack: String,
    /// The build flavour (`kiln stack list`): `build` has compilers and common -dev
    /// libraries; `build-python`, `build-nodejs`, `build-go` and `build-rust` add a
    /// language's toolchain.
    #[arg(long, default_value = "build", value_name = "FLAVOUR")]
    flavour: String,
    /// Platform (os/arch[/variant]) [default: the host's; it must be the kiln executable's].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    #[command(flatten)]
    transport: TransportArgs,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) fn run(
    args: &BuilderArgs,
    home: Option<&std::path::PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let BuilderCommand::Create(args) = &args.command;
    let reference: kiln::ImageReference = args
        .output
        .parse()
        .with_context(|| format!("invalid --output {:?}", args.output))?;
    let destination = kiln::Destination::from_reference(&reference, None)
        .map_err(|e| UsageError(format!("invalid --output {:?}: {e}", args.output)))?;
    let mut options = kiln::builder::BuilderOptions::new(&args.stack, &args.flavour, destination);
    options.platform = args
        .platform
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: kiln::image::InvalidPlatform| {
            UsageError(format!("invalid --platform: {e}"))
        })?;
    options.source_date_epoch = super::source_date_epoch()?;
    options.transports = args
        .transport
        .to_transports(kiln::transport::registry::PullPolicy::Missing)?;
    let (store, _guard) = open_store_guarded(home)?;
    let report = kiln::builder::create(&store, &options, printer, cancel)?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => {
            out!("Created builder image {}", report.image);
            out!("  manifest digest: {}", report.manifest_digest);
            out!("  build image:     {}", report.build_image);
        }
    }
    Ok(ExitCode::SUCCESS)
}
