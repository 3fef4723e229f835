//! `kiln sbom` and `kiln provenance`: the documents attached to an image.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::{Printer, TransportArgs, UsageError, open_store_guarded};

/// Which SBOM document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum SbomFormat {
    /// CycloneDX 1.6 JSON.
    #[default]
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

#[derive(Debug, Args)]
pub(crate) struct SbomArgs {
    /// The image: a name in kiln's store, a registry image (HOST/REPO:TAG, docker://NAME),
    /// oci:DIR[:NAME] or oci-archive:FILE[:NAME].
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The document to print.
    #[arg(long, value_enum, default_value_t)]
    format: SbomFormat,
    #[command(flatten)]
    transport: TransportArgs,
    /// Platform to pick from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ProvenanceArgs {
    /// The image: a name in kiln's store, a registry image (HOST/REPO:TAG, docker://NAME),
    /// oci:DIR[:NAME] or oci-archive:FILE[:NAME].
    #[arg(value_name = "IMAGE")]
    image: String,
    #[command(flatten)]
    transport: TransportArgs,
    /// Platform to pick from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
}

pub(crate) fn run_provenance(
    args: &ProvenanceArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    print_attached(
        &args.image,
        args.platform.as_deref(),
        &args.transport,
        kiln::image::referrers::IN_TOTO_JSON,
        "provenance statement",
        home,
        printer,
        cancel,
    )
}

pub(crate) fn run(
    args: &SbomArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let artifact_type = match args.format {
        SbomFormat::Cyclonedx => kiln::image::referrers::CYCLONEDX_JSON,
        SbomFormat::Spdx => kiln::image::referrers::SPDX_JSON,
    };
    print_attached(
        &args.image,
        args.platform.as_deref(),
        &args.transport,
        artifact_type,
        "SBOM",
        home,
        printer,
        cancel,
    )
}

/// Prints the document of `artifact_type` attached to `image` on stdout.
#[allow(clippy::too_many_arguments)]
pub(crate) fn print_attached(
    image: &str,
    platform: Option<&str>,
    transport: &TransportArgs,
    artifact_type: &str,
    what: &str,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let reference: kiln::ImageReference = image
        .parse()
        .with_context(|| format!("invalid image {image:?}"))?;
    let platform = match platform {
        Some(p) => p.parse().map_err(|e: kiln::image::InvalidPlatform| {
            UsageError(format!("invalid --platform: {e}"))
        })?,
        None => kiln::TargetPlatform::host(),
    };
    let (store, _guard) = open_store_guarded(home)?;
    let transports = transport.to_transports(kiln::transport::registry::PullPolicy::Missing)?;
    let attached =
        kiln::transport::attached(&reference, &store, &platform, &transports, printer, cancel)
            .map_err(kiln::Error::from)?;
    let Some(referrer) = attached.find(artifact_type) else {
        let found: Vec<String> = attached
            .referrers
            .iter()
            .filter_map(kiln::image::referrers::Referrer::artifact_type)
            .collect();
        anyhow::bail!(
            "image {image} ({}) has no {what} attached ({artifact_type}){}; kiln attaches one to every image it builds: build the image again with this kiln, and copy it with kiln push (other tools may leave attached artifacts behind)",
            attached.image.manifest_descriptor.digest(),
            if found.is_empty() {
                String::new()
            } else {
                format!("; it has {}", found.join(", "))
            }
        );
    };
    let payload = attached.payload(referrer).with_context(|| {
        format!(
            "cannot read the {what} {} attached to {image}",
            referrer.descriptor.digest()
        )
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&payload)?;
    stdout.write_all(b"\n")?;
    Ok(ExitCode::SUCCESS)
}
