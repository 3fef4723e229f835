//! `kiln inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln::labels::{
    BUILD_METADATA, BuildMetadata, LIFECYCLE_METADATA, LifecycleMetadata, ProcessMetadata,
};
use serde::Serialize;

use super::output::human_size;
use super::{Format, Printer, TransportArgs, UsageError, open_store_guarded};

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The image: a name in kiln's store, a registry image (HOST/REPO:TAG, docker://NAME;
    /// kiln's copy when it has one), oci:DIR[:NAME], oci-archive:FILE[:NAME],
    /// docker-archive:FILE[:NAME] or docker-daemon:NAME.
    #[arg(value_name = "IMAGE")]
    image: String,
    #[command(flatten)]
    transport: TransportArgs,
    /// Platform to pick from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// What `kiln inspect --format json` prints. Field names are stable.
#[derive(Debug, Serialize)]
struct Inspection {
    reference: String,
    manifest_digest: String,
    config_digest: String,
    platform: String,
    created: Option<String>,
    run_image: Option<RunImageInfo>,
    layers: Vec<LayerInfo>,
    buildpacks: Vec<kiln::labels::BuildpackRef>,
    processes: Vec<ProcessMetadata>,
    default_process: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    env: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct RunImageInfo {
    image: String,
    reference: String,
    top_layer: String,
}

#[derive(Debug, Serialize)]
struct LayerInfo {
    diff_id: String,
    digest: String,
    size: u64,
    media_type: String,
    created_by: String,
    from_run_image: bool,
}

pub(crate) fn run(
    args: &InspectArgs,
    home: Option<&PathBuf>,
    printer: &Printer,
    cancel: &kiln::CancelToken,
) -> anyhow::Result<ExitCode> {
    let reference: kiln::ImageReference = args
        .image
        .parse()
        .with_context(|| format!("invalid image {:?}", args.image))?;
    let platform = match &args.platform {
        Some(p) => p.parse().map_err(|e: kiln::image::InvalidPlatform| {
            UsageError(format!("invalid --platform: {e}"))
        })?,
        None => kiln::TargetPlatform::host(),
    };
    let (store, _guard) = open_store_guarded(home)?;
    // Like `docker inspect`, a registry image kiln's store already has is read from there.
    let transports = args
        .transport
        .to_transports(kiln::transport::registry::PullPolicy::Missing)?;
    let image = kiln::transport::fetch(&reference, &store, &platform, &transports, printer, cancel)
        .map_err(kiln::Error::from)?;
    let inspection = inspect(&image)?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&inspection)?),
        Format::Human => print_human(&inspection)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(image: &kiln::LoadedImage) -> anyhow::Result<Inspection> {
    let config = image.config.config().clone().unwrap_or_default();
    let labels: std::collections::BTreeMap<String, String> = config
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let lifecycle: Option<LifecycleMetadata> = labels
        .get(LIFECYCLE_METADATA)
        .map(|v| serde_json::from_str(v))
        .transpose()
        .with_context(|| format!("label {LIFECYCLE_METADATA} is not valid"))?;
    let build: Option<BuildMetadata> = labels
        .get(BUILD_METADATA)
        .map(|v| serde_json::from_str(v))
        .transpose()
        .with_context(|| format!("label {BUILD_METADATA} is not valid"))?;
    let history: Vec<String> = image
        .config
        .history()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .map(|h| h.created_by().clone().unwrap_or_default())
        .collect();
    let diff_ids = image.diff_ids();
    let top = lifecycle
        .as_ref()
        .and_then(|l| l.run_image.top_layer.as_ref());
    let base_count = top.map_or(0, |t| {
        diff_ids
            .iter()
            .position(|d| d == t.as_ref())
            .map_or(0, |i| i + 1)
    });
    let layers = image
        .manifest
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| LayerInfo {
            diff_id: diff_ids.get(i).cloned().unwrap_or_default(),
            digest: l.digest().to_string(),
            size: l.size(),
            media_type: l.media_type().to_string(),
            // Base images may lack history; kiln's own entries are always the last ones,
            // so align from the top of the stack.
            created_by: (i + history.len())
                .checked_sub(diff_ids.len())
                .and_then(|h| history.get(h))
                .cloned()
                .unwrap_or_default(),
            from_run_image: i < base_count,
        })
        .collect();
    let entrypoint = config.entrypoint().clone().unwrap_or_default();
    let processes = build
        .as_ref()
        .map(|b| b.processes.clone())
        .unwrap_or_default();
    let default_process = labels.get(kiln::labels::PROCESS_TYPE).cloned();
    Ok(Inspection {
        reference: image.reference.to_string(),
        manifest_digest: image.manifest_descriptor.digest().to_string(),
        config_digest: image.manifest.config().digest().to_string(),
        platform: image.platform().to_string(),
        created: image.config.created().clone(),
        run_image: lifecycle.map(|l| RunImageInfo {
            image: l.run_image.image,
            reference: l.run_image.reference,
            top_layer: l
                .run_image
                .top_layer
                .map(|d| d.to_string())
                .unwrap_or_default(),
        }),
        layers,
        buildpacks: build.map(|b| b.buildpacks).unwrap_or_default(),
        processes,
        default_process,
        entrypoint,
        cmd: config.cmd().clone().unwrap_or_default(),
        working_dir: config.working_dir().clone(),
        user: config.user().clone(),
        env: config.env().clone().unwrap_or_default(),
        labels,
    })
}

fn print_human(i: &Inspection) -> std::io::Result<()> {
    out!("Image:     {}", i.reference);
    out!("Digest:    {}", i.manifest_digest);
    out!("ID:        {}", i.config_digest);
    out!("Platform:  {}", i.platform);
    if let Some(created) = &i.created {
        out!("Created:   {created}");
    }
    match &i.run_image {
        Some(r) if r.reference.is_empty() => out!("Run image: {}", r.image),
        Some(r) => {
            let name = if r.image.is_empty() {
                "(unnamed)"
            } else {
                &r.image
            };
            out!("Run image: {name} {}", r.reference);
        }
        None => out!("Run image: (not a buildpacks image)"),
    }
    out!();
    out!("Layers:");
    let total: u64 = i.layers.iter().map(|l| l.size).sum();
    for (n, l) in i.layers.iter().enumerate() {
        let who = if l.from_run_image {
            "run image".to_string()
        } else if l.created_by.is_empty() {
            "-".to_string()
        } else {
            l.created_by.clone()
        };
        let short = l.diff_id.get(7..19).unwrap_or(&l.diff_id);
        out!("  {:>2}  {short}  {:>9}  {who}", n + 1, human_size(l.size));
    }
    out!("  total {}", human_size(total));
    if !i.buildpacks.is_empty() {
        out!();
        out!("Buildpacks:");
        for b in &i.buildpacks {
            out!(
                "  {}@{}{}",
                b.id,
                b.version,
                b.homepage
                    .as_ref()
                    .map(|h| format!("  {h}"))
                    .unwrap_or_default()
            );
        }
    }
    out!();
    out!("Processes:");
    if i.processes.is_empty() {
        out!("  (none)");
    }
    for p in &i.processes {
        let default = if i.default_process.as_deref() == Some(p.process_type.as_str()) {
            " (default)"
        } else {
            ""
        };
        let line = p
            .command
            .iter()
            .chain(&p.args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        out!("  {}{default}: {line}", p.process_type);
        if default.is_empty() {
            out!("      run it: {}", shell_line(&run_hint(p, &i.reference)));
        }
    }
    out!();
    out!(
        "Entrypoint: {}",
        serde_json::to_string(&i.entrypoint).unwrap_or_default()
    );
    out!(
        "Cmd:        {}",
        serde_json::to_string(&i.cmd).unwrap_or_default()
    );
    out!("WorkingDir: {}", i.working_dir.as_deref().unwrap_or(""));
    out!("User:       {}", i.user.as_deref().unwrap_or(""));
    out!("Env:");
    for e in &i.env {
        out!("  {e}");
    }
    Ok(())
}

/// The words of a `podman run` that starts process `p` of image `reference`: its command as
/// the entrypoint (a JSON array, which podman takes as the exec form) and its arguments.
fn run_hint(p: &ProcessMetadata, reference: &str) -> Vec<String> {
    let workdir = if p.working_dir.is_empty() {
        "/workspace"
    } else {
        &p.working_dir
    };
    let mut words: Vec<String> = [
        "podman",
        "run",
        "--rm",
        "--workdir",
        workdir,
        "--entrypoint",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    words.push(serde_json::to_string(&p.command).unwrap_or_default());
    words.push(reference.to_string());
    words.extend(p.args.iter().cloned());
    words
}

/// `words` as one POSIX shell command line: each word that needs it in single quotes (a
/// quote inside becomes `'\''`), so pasting the line runs exactly these words.
fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(command: &[&str], args: &[&str]) -> ProcessMetadata {
        serde_json::from_value(serde_json::json!({
            "type": "task",
            "command": command,
            "args": args,
            "direct": true,
            "buildpackID": "test/bp",
        }))
        .unwrap()
    }

    #[test]
    fn run_hints_survive_a_posix_shell() {
        let p = process(&["bash", "-c", "echo a b; exit 3"], &["it's", "$HOME", ""]);
        let words = run_hint(&p, "registry.test/app:1");
        let line = shell_line(&words);
        assert_eq!(
            line,
            r#"podman run --rm --workdir /workspace --entrypoint '["bash","-c","echo a b; exit 3"]' registry.test/app:1 'it'\''s' '$HOME' ''"#
        );
        // The shell splits the line back into exactly these words.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {line}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let printed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(printed, words);
    }
}
