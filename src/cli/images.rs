//! `kiln images` and `kiln rmi`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::output::human_size;
use super::{Format, open_store};

#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// Names of images to remove from the store (their blobs stay until garbage collection).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// One row of `kiln images --format json`.
#[derive(Debug, Serialize)]
struct ImageRow {
    name: String,
    digest: String,
    size: Option<u64>,
}

pub(crate) fn run_images(args: &ImagesArgs, home: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let store = open_store(home)?;
    let rows: Vec<ImageRow> = store
        .images()?
        .into_iter()
        .map(|i| ImageRow {
            name: i.name,
            digest: i.descriptor.digest().to_string(),
            size: i.size,
        })
        .collect();
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Human => {
            let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
            out!("{:width$}  {:<19}  SIZE", "NAME", "DIGEST");
            for r in &rows {
                let short = r.digest.get(..19).unwrap_or(&r.digest);
                let size = r.size.map_or_else(|| "?".to_string(), human_size);
                out!("{:width$}  {short}  {size}", r.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_rmi(args: &RmiArgs, home: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let store = open_store(home)?;
    let mut missing = Vec::new();
    for image in &args.images {
        let name: kiln::ImageName = image.parse()?;
        if store.untag(&name.to_string())? {
            out!("Untagged {name}");
        } else {
            missing.push(name.to_string());
        }
    }
    if !missing.is_empty() {
        anyhow::bail!("not in kiln's store: {}", missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
