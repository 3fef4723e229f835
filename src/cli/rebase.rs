//! `kiln rebase`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{Format, Printer, TransportArgs, UsageError, open_store};

#[derive(Debug, Args)]
pub(crate) struct RebaseArgs {
    /// The app image: a name in kiln's store, a registry reference, oci:DIR:NAME,
    /// oci-archive:FILE:NAME, docker-archive:FILE or docker-daemon:NAME.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The new run image (any reference kiln reads) [default: the run image the image
    /// records, as it is now in kiln's store, e.g. after `kiln stack build`].
    #[arg(long, value_name = "IMAGE")]
    run_image: Option<String>,
    /// Where the rebased image goes [default: back where IMAGE came from].
    #[arg(long, short, value_name = "DESTINATION")]
    output: Option<String>,
    /// Rebase even onto a run image for another platform or distribution, or an image
    /// labelled io.buildpacks.rebasable=false.
    #[arg(long)]
    force: bool,
    /// Platform to pick from multi-platform images (os/arch[/variant]) [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    #[command(flatten)]
    transport: TransportArgs,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) fn run(
    args: &RebaseArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let image: kiln::ImageReference = args
        .image
        .parse()
        .with_context(|| format!("invalid IMAGE {:?}", args.image))?;
    let mut options = kiln::rebase::RebaseOptions::new(image.clone());
    options.run_image = args
        .run_image
        .as_deref()
        .map(str::parse)
        .transpose()
        .with_context(|| format!("invalid --run-image {:?}", args.run_image))?;
    if let Some(output) = &args.output {
        let reference: kiln::ImageReference = output
            .parse()
            .with_context(|| format!("invalid --output {output:?}"))?;
        let name = match &image {
            kiln::ImageReference::Named(n) | kiln::ImageReference::Registry(n) => Some(n.clone()),
            _ => None,
        };
        options.destination = Some(
            kiln::Destination::from_reference(&reference, name.as_ref())
                .map_err(|e| UsageError(format!("invalid --output {output:?}: {e}")))?,
        );
    }
    options.force = args.force;
    options.platform = args
        .platform
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: kiln::image::InvalidPlatform| {
            UsageError(format!("invalid --platform: {e}"))
        })?;
    options.transports = args
        .transport
        .to_transports(kiln::transport::registry::PullPolicy::Missing)?;
    let store = open_store(home)?;
    let report = kiln::rebase::rebase(&store, &options, printer, cancel)?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => {
            out!("Rebased image {}", report.image);
            out!("  manifest digest: {}", report.manifest_digest);
            out!("  image id:        {}", report.config_digest);
            out!(
                "  run image:       {} (was {})",
                report.new_run_image,
                report.old_run_image
            );
            out!(
                "  layers:          {} run image layers replaced by {}; {} app layers kept",
                report.run_layers.0,
                report.run_layers.1,
                report.app_layers
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
