//! `kiln buildpack list` and `kiln buildpack package`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Format;

#[derive(Debug, Args)]
pub(crate) struct BuildpackArgs {
    #[command(subcommand)]
    command: BuildpackCommand,
}

#[derive(Debug, Subcommand)]
enum BuildpackCommand {
    /// List kiln's built-in buildpacks and the default order.
    List {
        /// Result format on stdout.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Write a built-in buildpack as a standalone buildpack directory (buildpack.toml and a
    /// copy of kiln as bin/detect and bin/build) that any CNB platform runs.
    Package {
        /// The buildpack's id (kiln/python).
        #[arg(value_name = "ID")]
        id: String,
        /// The directory to create (must not exist, or be empty).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// One row of `kiln buildpack list --format json`.
#[derive(Debug, Serialize)]
struct Row {
    id: &'static str,
    version: &'static str,
    name: String,
    description: String,
    run_image_mixins: Vec<String>,
}

fn rows() -> Vec<Row> {
    kiln::buildpack::builtin::BUILTINS
        .iter()
        .map(|b| {
            let table: toml::Table = toml::from_str(b.descriptor).unwrap_or_default();
            let text = |key: &str| {
                table
                    .get("buildpack")
                    .and_then(|t| t.get(key))
                    .and_then(toml::Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let mixins = table
                .get("metadata")
                .and_then(|m| m.get("kiln"))
                .and_then(|k| k.get("run-image-mixins"))
                .and_then(toml::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Row {
                id: b.id,
                version: b.version,
                name: text("name"),
                description: text("description"),
                run_image_mixins: mixins,
            }
        })
        .collect()
}

pub(crate) fn run(args: &BuildpackArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        BuildpackCommand::List { format } => {
            let rows = rows();
            let order = kiln::buildpack::builtin::default_order();
            match format {
                Format::Json => {
                    let json = serde_json::json!({"buildpacks": rows, "default_order": order});
                    out!("{}", serde_json::to_string_pretty(&json)?);
                }
                Format::Human => {
                    for row in &rows {
                        out!("{}@{}  {}", row.id, row.version, row.description);
                    }
                    out!("");
                    out!("Default order (the first group that passes detection builds):");
                    for (n, group) in order.order.iter().enumerate() {
                        let members: Vec<String> = group
                            .group
                            .iter()
                            .map(|e| {
                                if e.optional {
                                    format!("{} (optional)", e.id)
                                } else {
                                    e.id.clone()
                                }
                            })
                            .collect();
                        out!("  {}. {}", n + 1, members.join(", "));
                    }
                }
            }
        }
        BuildpackCommand::Package { id, dir } => {
            let exe = kiln::buildpack::builtin::executable(None)?;
            let written = kiln::buildpack::builtin::package(id, dir, &exe)?;
            out!("Wrote {id} to {}", written.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
