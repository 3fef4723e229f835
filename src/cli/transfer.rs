//! `kiln push` and `kiln pull`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{Format, Printer, TransportArgs, UsageError, open_store_guarded};

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The image to send: a name in kiln's store, or any image reference kiln reads.
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Where: a registry (HOST/REPO:TAG, docker://NAME), docker-daemon:NAME,
    /// docker-archive:FILE[:NAME], oci:DIR[:NAME] or oci-archive:FILE[:NAME].
    #[arg(value_name = "DESTINATION")]
    destination: String,
    /// Platform to pick from a multi-platform source (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    #[command(flatten)]
    transport: TransportArgs,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The image: a registry reference (HOST/REPO:TAG, …@sha256:…, docker://NAME) or
    /// docker-daemon:NAME. It is named the same in kiln's store.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Platform to pull from a multi-platform image (os/arch[/variant]) [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    #[command(flatten)]
    transport: TransportArgs,
}

fn platform(text: Option<&str>) -> anyhow::Result<kiln::TargetPlatform> {
    Ok(text
        .map(str::parse)
        .transpose()
        .map_err(|e: kiln::image::InvalidPlatform| UsageError(format!("invalid --platform: {e}")))?
        .unwrap_or_else(kiln::TargetPlatform::host))
}

/// What `kiln push --format json` prints.
#[derive(Debug, serde::Serialize)]
struct PushOutput {
    source: String,
    destination: String,
    manifest_digest: String,
    published: kiln::transport::publish::Published,
}

pub(crate) fn run_push(
    args: &PushArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let source: kiln::ImageReference = args
        .source
        .parse()
        .with_context(|| format!("invalid SOURCE {:?}", args.source))?;
    let destination_ref: kiln::ImageReference = args
        .destination
        .parse()
        .with_context(|| format!("invalid DESTINATION {:?}", args.destination))?;
    let source_name = match &source {
        kiln::ImageReference::Named(n) | kiln::ImageReference::Registry(n) => Some(n.clone()),
        _ => None,
    };
    let destination = kiln::Destination::from_reference(&destination_ref, source_name.as_ref())
        .map_err(|e| UsageError(format!("invalid DESTINATION {:?}: {e}", args.destination)))?;
    // A store copy is what `kiln push` usually sends; a registry source is fetched as needed.
    let transports = args
        .transport
        .to_transports(kiln::transport::registry::PullPolicy::Missing)?;
    let (store, _guard) = open_store_guarded(home)?;
    let platform = platform(args.platform.as_deref())?;
    let image = into_store(&source, &store, &platform, &transports, printer, cancel)?;
    let published = kiln::transport::publish(
        &store,
        kiln::transport::publish::Publishable {
            descriptor: &image.manifest_descriptor,
            manifest: &image.manifest,
        },
        &destination,
        &transports,
        printer,
        cancel,
    )
    .map_err(kiln::Error::from)?;
    let output = PushOutput {
        source: source.to_string(),
        destination: destination.to_string(),
        manifest_digest: image.manifest_descriptor.digest().to_string(),
        published,
    };
    let json = serde_json::to_string_pretty(&output)?;
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("failed to write report {}", path.display()))?;
    }
    match args.format {
        Format::Json => out!("{json}"),
        Format::Human => {
            out!("Pushed {} to {}", output.source, output.destination);
            out!("  digest: {}", output.manifest_digest);
            if let kiln::transport::publish::Published::Pushed(report) = &output.published {
                out!(
                    "  blobs: {} uploaded ({} bytes), {} mounted, {} already there",
                    report.uploaded.len(),
                    report.bytes_uploaded,
                    report.mounted.len(),
                    report.existing.len()
                );
                if !report.referrers.is_empty() {
                    out!(
                        "  attached: {} artifacts (SBOMs, provenance){}",
                        report.referrers.len(),
                        report
                            .referrers_tag
                            .as_ref()
                            .map(|t| format!(", listed under the tag {t}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `source` and brings its blobs into `store` (with the artifacts attached to an
/// image in a layout or archive: its SBOMs and provenance; those of a store image are there
/// already).
fn into_store(
    source: &kiln::ImageReference,
    store: &kiln::Store,
    platform: &kiln::TargetPlatform,
    transports: &kiln::transport::Transports,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<kiln::image::LoadedImage> {
    let (image, referrers, referrers_layout) = match source {
        kiln::ImageReference::Layout { .. } | kiln::ImageReference::Archive { .. } => {
            let attached =
                kiln::transport::attached(source, store, platform, transports, printer, cancel)
                    .map_err(kiln::Error::from)?;
            (attached.image, attached.referrers, Some(attached.layout))
        }
        _ => (
            kiln::transport::fetch(source, store, platform, transports, printer, cancel)
                .map_err(kiln::Error::from)?,
            Vec::new(),
            None,
        ),
    };
    let to_store = |e| kiln::Error::from(kiln::store::StoreError::from(e));
    // Blobs of images read from a layout are brought into the store first.
    for blob in image
        .manifest
        .layers()
        .iter()
        .chain([image.manifest.config(), &image.manifest_descriptor])
    {
        store
            .layout()
            .copy_blob_from(&image.layout, blob)
            .map_err(to_store)?;
    }
    if let Some(from) = &referrers_layout {
        for blob in referrers
            .iter()
            .flat_map(kiln::image::referrers::Referrer::blobs)
        {
            store
                .layout()
                .copy_blob_from(from, &blob)
                .map_err(to_store)?;
        }
        store
            .change_index(|layout| kiln::image::referrers::add_to_index(layout, &referrers))
            .map_err(kiln::Error::from)?;
    }
    Ok(image)
}

pub(crate) fn run_pull(
    args: &PullArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let reference: kiln::ImageReference = args
        .image
        .parse()
        .with_context(|| format!("invalid IMAGE {:?}", args.image))?;
    let transports = args
        .transport
        .to_transports(kiln::transport::registry::PullPolicy::Always)?;
    let (store, _guard) = open_store_guarded(home)?;
    let platform = platform(args.platform.as_deref())?;
    let name = match &reference {
        kiln::ImageReference::Registry(name) | kiln::ImageReference::DockerDaemon(name) => {
            name.clone()
        }
        other => {
            return Err(UsageError(format!(
                "{other} is not a registry or daemon image; kiln reads files and layouts directly, or copy them with kiln push {other} NAME"
            ))
            .into());
        }
    };
    let image = kiln::transport::fetch(&reference, &store, &platform, &transports, printer, cancel)
        .map_err(kiln::Error::from)?;
    store
        .tag(&image.manifest_descriptor, &name.to_string())
        .map_err(kiln::Error::from)?;
    out!("Pulled {name} ({})", image.manifest_descriptor.digest());
    Ok(ExitCode::SUCCESS)
}
