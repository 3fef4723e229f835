//! `kiln build`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{Format, Printer, SourceArgs, UsageError, open_store};

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Name of the image in kiln's local store (e.g. myapp or myapp:1.2). Optional when
    /// --output is given.
    #[arg(value_name = "IMAGE")]
    image: Option<String>,
    #[command(flatten)]
    source: SourceArgs,
    /// Where to write the image instead of the store: a registry (HOST/REPO:TAG),
    /// docker-daemon:NAME, docker-archive:FILE[:NAME], oci:DIR[:NAME] or
    /// oci-archive:FILE[:NAME].
    #[arg(short, long, value_name = "REF", conflicts_with = "publish")]
    output: Option<String>,
    /// Push the image to the registry its name says (IMAGE = HOST/REPO:TAG); blobs the
    /// registry already has are not uploaded again.
    #[arg(long)]
    publish: bool,
    /// Process type the image runs by default (overrides the buildpacks' default).
    #[arg(long, value_name = "TYPE")]
    process: Option<String>,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Do not restore the image's cached layers (dependencies are installed afresh; the
    /// cache is saved again afterwards).
    #[arg(long)]
    clear_cache: bool,
    /// Run the buildpacks even if nothing changed since the last build of this image (by
    /// default such a build publishes the image it made last time; see "Fast rebuilds" in
    /// the README).
    #[arg(long)]
    rebuild: bool,
    /// Keep the layer cache in this image too (a registry reference, oci:DIR:NAME, …): read
    /// before the build, written after it, so CI runners without a shared disk share it.
    #[arg(long, value_name = "REF")]
    cache_image: Option<String>,
    /// After the build, remove least recently used build caches (not images) while kiln's
    /// store is larger than SIZE (500M, 10G; 0 for no limit), as `kiln cache prune
    /// --max-size` does. Skipped while other kiln processes are running.
    #[arg(
        long,
        value_name = "SIZE",
        env = "KILN_CACHE_MAX_SIZE",
        default_value = "10G",
        value_parser = kiln::cache::gc::parse_size
    )]
    cache_max_size: u64,
}

pub(crate) fn run(
    args: &BuildArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let mut options = args
        .source
        .to_options(|path| Ok(kiln::BuildOptions::new(path, destination(args)?)))?;
    options.clear_cache = args.clear_cache;
    options.rebuild = args.rebuild;
    options.cache_image = args
        .cache_image
        .as_deref()
        .map(str::parse)
        .transpose()
        .with_context(|| format!("invalid --cache-image {:?}", args.cache_image))?;
    options.process = args
        .process
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: kiln::InvalidProcessType| UsageError(format!("invalid --process: {e}")))?;

    let store = open_store(home)?;
    let report = match kiln::build(&store, &options, printer, cancel) {
        Ok(report) => report,
        Err(kiln::Error::NothingDetected { results }) => {
            printer.detect_failures(&results);
            return Err(kiln::Error::NothingDetected { results }.into());
        }
        // The buildpack's output was printed as it ran: the error need not repeat it.
        Err(kiln::Error::Build(kiln::lifecycle::BuildError::BuildpackFailed {
            id,
            version,
            status,
            tail,
            ..
        })) => {
            return Err(
                kiln::Error::Build(kiln::lifecycle::BuildError::BuildpackFailed {
                    id,
                    version,
                    status,
                    tail,
                    output_shown: printer.shows_buildpack_output(),
                })
                .into(),
            );
        }
        Err(e) => return Err(e.into()),
    };
    if !report.up_to_date {
        cap_store(&store, args.cache_max_size, printer);
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("failed to write report {}", path.display()))?;
    }
    match args.format {
        Format::Json => out!("{json}"),
        Format::Human => {
            if report.up_to_date {
                out!(
                    "Image {} is up to date (nothing changed; --rebuild runs the buildpacks anyway)",
                    report.image
                );
            } else {
                out!("Successfully built image {}", report.image);
            }
            out!("  manifest digest: {}", report.manifest_digest);
            out!("  image id:        {}", report.config_digest);
            let process = report
                .default_process
                .as_deref()
                .unwrap_or("none (give a command when running it)");
            out!("  default process: {process}");
            match &report.published {
                kiln::transport::publish::Published::Pushed(push) => out!(
                    "  pushed:          {}@{} ({} blobs uploaded, {} mounted, {} already there)",
                    push.reference.split('@').next().unwrap_or(&push.reference),
                    push.digest,
                    push.uploaded.len(),
                    push.mounted.len(),
                    push.existing.len()
                ),
                kiln::transport::publish::Published::Loaded { messages } => {
                    for message in messages {
                        out!("  daemon:          {message}");
                    }
                }
                _ => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the image goes: IMAGE, --output and --publish.
fn destination(args: &BuildArgs) -> anyhow::Result<kiln::Destination> {
    let image: Option<kiln::ImageName> = args
        .image
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("invalid IMAGE")?;
    Ok(match (&args.output, &image) {
        (None, Some(image)) if args.publish => kiln::Destination::Registry(image.clone()),
        (None, None) if args.publish => {
            return Err(UsageError(
                "--publish needs an image name with its registry: kiln build HOST/REPO:TAG --publish"
                    .to_string(),
            )
            .into());
        }
        (Some(output), _) => {
            let reference: kiln::ImageReference = output
                .parse()
                .with_context(|| format!("invalid --output {output:?}"))?;
            kiln::Destination::from_reference(&reference, image.as_ref())
                .map_err(|e| UsageError(format!("invalid --output {output:?}: {e}")))?
        }
        (None, Some(image)) => kiln::Destination::Store(image.clone()),
        (None, None) => {
            return Err(UsageError(
                "give an image name (kiln build myapp) or an output (--output oci:DIR)".to_string(),
            )
            .into());
        }
    })
}

/// Prunes build caches while the store is over `max_size` (0: no limit), unless other kiln
/// processes are running.
fn cap_store(store: &kiln::Store, max_size: u64, printer: &Printer) {
    if max_size > 0 {
        let options = kiln::cache::gc::PruneOptions {
            max_size: Some(max_size),
            no_wait: true,
            ..kiln::cache::gc::PruneOptions::default()
        };
        match kiln::cache::gc::prune(store, options, printer) {
            Ok(Some(pruned)) if pruned.cache_entries > 0 => {
                kiln::EventSink::event(
                    printer,
                    &kiln::Event::Info(super::store::describe_prune(&pruned, false)),
                );
            }
            Ok(_) => {}
            Err(e) => kiln::EventSink::event(
                printer,
                &kiln::Event::Warning(format!("the store was not pruned to --cache-max-size: {e}")),
            ),
        }
    }
}
