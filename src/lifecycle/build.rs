//! The build phase: run each buildpack's `bin/build` in group order and collect what it made.
//!
//! For each buildpack kiln writes its buildpack plan, runs `bin/build <layers> <platform>
//! <plan>` with the CNB environment, then reads `<layer>.toml` files, `launch.toml`,
//! `build.toml` and `store.toml`. Layers with `build = true` extend the environment of every
//! later buildpack (`bin` → `PATH`, `lib` → `LD_LIBRARY_PATH`/`LIBRARY_PATH`, `include` →
//! `CPATH`, `pkgconfig` → `PKG_CONFIG_PATH`, then `env/` and `env.build/` files). A layer
//! whose types are all false is renamed `<name>.ignore` as the lifecycle does.
//!
//! Everything a buildpack writes is untrusted: its metadata files are read with
//! [`untrusted::read_text`] (at most [`MAX_METADATA`] bytes each, not through a symbolic
//! link, never blocking on a FIFO); layer names must be single path components
//! ([`untrusted::component`]) and layer directories real directories; env files are checked
//! ([`crate::env::check_layer_env`]); labels in the namespaces kiln writes
//! ([`crate::labels::is_reserved`]) are ignored with a warning. Anything invalid is
//! [`BuildError::InvalidOutput`], naming the buildpack and the file.
//!
//! See [Phase #3: Build](https://github.com/buildpacks/spec/blob/main/buildpack.md#phase-3-build).

use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::buildenv::{APP_DIR, LAYERS_DIR, PLATFORM_DIR};
use crate::buildpack::{Buildpack, Runner, exec};
use crate::env::{self, BUILD_ROOT_DIRS, DefaultAction, Env, EnvDirError};
use crate::event::Event;
use crate::labels;
use crate::launch::{Label, LaunchContribution, Processes, Slice, parse_launch_toml};
use crate::lifecycle::detect::GroupMember;
use crate::plan::{self, PlanEntry};
use crate::untrusted::{self, Links, MAX_METADATA};

/// Errors of the build phase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A buildpack's `bin/build` failed. Its last lines of output are kept.
    #[error("buildpack {id}@{version} failed: bin/build ended with {status}{}", tail_hint(.tail, *.output_shown))]
    BuildpackFailed {
        /// Buildpack ID.
        id: String,
        /// Its version.
        version: String,
        /// "exit code 1", "signal 9", …
        status: String,
        /// The last lines it printed.
        tail: Vec<String>,
        /// Whether its output was already shown as it ran (the [`Event::BuildpackOutput`]
        /// events), so the message need not repeat it. kiln sets it false; a platform that
        /// printed the events may set it.
        output_shown: bool,
    },
    /// `bin/build` could not be started.
    #[error("could not run bin/build of {id}")]
    Spawn {
        /// Buildpack ID.
        id: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file the buildpack wrote is invalid.
    #[error("buildpack {id} wrote an invalid {}: {problem}", path.display())]
    InvalidOutput {
        /// Buildpack ID.
        id: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Env files of a layer could not be read.
    #[error(transparent)]
    EnvFiles(#[from] EnvDirError),
    /// Scratch files could not be written.
    #[error("failed to prepare build files at {path}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox could not be entered.
    #[error(transparent)]
    Sandbox(#[from] crate::buildenv::BuildEnvError),
    /// The build was cancelled: its source is the shared [`crate::event::Cancelled`] (see
    /// [`crate::is_cancelled`]).
    #[error("cancelled")]
    Cancelled(#[from] crate::event::Cancelled),
}

fn tail_hint(tail: &[String], output_shown: bool) -> String {
    if output_shown && !tail.is_empty() {
        " (its output is above)".to_string()
    } else if tail.is_empty() {
        " and printed nothing".to_string()
    } else {
        format!("; its last output:\n  {}", tail.join("\n  "))
    }
}

/// A layer's types (`[types]` in `<layer>.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LayerTypes {
    /// Part of the image.
    pub launch: bool,
    /// Visible to later buildpacks.
    pub build: bool,
    /// Kept for the next build.
    pub cache: bool,
}

/// A layer a buildpack created.
#[derive(Debug, Clone)]
pub(crate) struct LayerInfo {
    /// Layer name.
    pub name: String,
    /// Its types.
    pub types: LayerTypes,
    /// The `[metadata]` table.
    pub metadata: toml::Table,
    /// Where its contents are on the host, if the directory exists.
    pub dir: Option<PathBuf>,
}

/// What one buildpack produced.
#[derive(Debug, Clone)]
pub(crate) struct BuildpackOutput {
    /// The buildpack.
    pub buildpack: Buildpack,
    /// Its layers, sorted by name.
    pub layers: Vec<LayerInfo>,
    /// The `[metadata]` of its `store.toml`, if it wrote one.
    pub store: Option<toml::Table>,
    /// The Debian packages it asks kiln to add to the image
    /// ([`DEBIAN_PACKAGES_FILE`]), in its order.
    pub debian_packages: Vec<DebianPackageRequest>,
}

/// The file in a buildpack's layers directory where it asks kiln for Debian packages of
/// the stack in the image (kiln's own; not a layer, never exported):
///
/// ```toml
/// [[package]]
/// name = "r-cran-jsonlite"                      # a Debian package of the stack
/// for = "R package jsonlite (DESCRIPTION Imports)"  # why, for the build log
/// pin = "1.8.9"                                 # optional: the version the app pins
/// ```
pub(crate) const DEBIAN_PACKAGES_FILE: &str = "kiln-debian-packages.toml";

/// One package of a buildpack's [`DEBIAN_PACKAGES_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DebianPackageRequest {
    /// The Debian package.
    pub name: String,
    /// Why the buildpack wants it.
    #[serde(default, rename = "for")]
    pub why: String,
    /// The upstream version the app pins, if any (compared with the version kiln chooses).
    #[serde(default)]
    pub pin: Option<String>,
}

/// The build phase's result.
#[derive(Debug, Clone)]
#[must_use]
pub(crate) struct BuildOutput {
    /// Per buildpack, in group order.
    pub buildpacks: Vec<BuildpackOutput>,
    /// Every process, combined across buildpacks.
    pub processes: Processes,
    /// Labels from `launch.toml`, in buildpack order.
    pub labels: Vec<Label>,
    /// Slices from `launch.toml`, in buildpack order.
    pub slices: Vec<Slice>,
}

/// Host paths the build phase uses.
#[derive(Debug, Clone)]
pub(crate) struct BuildDirs {
    /// The layers directory (seen as `/layers`).
    pub layers: PathBuf,
    /// Scratch directory for buildpack plans (seen at the same path inside the sandbox).
    pub plans: PathBuf,
}

/// Everything the build phase needs.
pub(crate) struct BuildContext<'a> {
    /// The selected group, in order.
    pub group: &'a [GroupMember],
    /// The resolved plan.
    pub plan: &'a [PlanEntry],
    /// Host paths.
    pub dirs: &'a BuildDirs,
    /// The filtered host environment.
    pub base_env: &'a Env,
    /// Runs the buildpacks.
    pub runner: &'a Runner<'a>,
}

/// Runs the build phase.
pub(crate) fn build(ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError> {
    let mut env = ctx.base_env.clone();
    let mut remaining: Vec<PlanEntry> = ctx.plan.to_vec();
    let mut output = BuildOutput {
        buildpacks: Vec::new(),
        processes: Processes::default(),
        labels: Vec::new(),
        slices: Vec::new(),
    };
    for member in ctx.group {
        ctx.runner.cancel.check()?;
        let buildpack = &member.buildpack;
        let id = buildpack.id().to_string();
        let escaped = buildpack.id().escaped();
        let host_layers = ctx.dirs.layers.join(&escaped);
        let guest_layers = Path::new(LAYERS_DIR).join(&escaped);
        fs::create_dir_all(&host_layers).map_err(prepare_err(&host_layers))?;
        let bp_plan = plan::buildpack_plan(&remaining, &id);
        let plan_path = write_buildpack_plan(ctx, &escaped, &bp_plan)?;

        ctx.runner.events.event(&Event::BuildpackStarted {
            id: buildpack.id().clone(),
            version: buildpack.version().to_string(),
        });
        let started = Instant::now();
        run_bin_build(ctx, buildpack, &env, &guest_layers, &plan_path)?;
        // kiln reads the buildpack's output outside the sandbox: its layers directory must
        // still be the directory kiln made, not a link the buildpack put in its place.
        if !fs::symlink_metadata(&host_layers).is_ok_and(|m| m.is_dir()) {
            return Err(BuildError::InvalidOutput {
                id,
                path: guest_layers,
                problem: "the buildpack replaced its layers directory (with a link or a file); write layers into it instead".to_string(),
            });
        }

        let layers = read_layers(&host_layers, &id)?;
        // Every env file of a layer the image or later buildpacks use is checked now, so
        // that invalid ones are this buildpack's invalid output, not an export failure.
        for layer in layers.iter().filter(|l| l.types.build || l.types.launch) {
            if let Some(dir) = &layer.dir {
                env::check_layer_env(dir).map_err(|e| env_output_err(&id, e))?;
            }
        }
        // Build layers extend the environment of every later buildpack.
        for layer in layers.iter().filter(|l| l.types.build) {
            if let Some(dir) = &layer.dir {
                let guest = guest_layers.join(&layer.name);
                env.add_root_dir(dir, &guest, &BUILD_ROOT_DIRS);
                env.add_env_dir(&dir.join("env"), DefaultAction::Override)
                    .map_err(|e| env_output_err(&id, e))?;
                env.add_env_dir(&dir.join("env.build"), DefaultAction::Override)
                    .map_err(|e| env_output_err(&id, e))?;
            }
        }
        let met = read_build_toml(&host_layers, &id, &bp_plan)?;
        plan::remove_met(&mut remaining, &met);
        if let Some(launch) = read_launch_toml(&host_layers, &id)? {
            if let Some(warning) = output.processes.add(launch.processes) {
                ctx.runner.events.event(&Event::Warning(warning));
            }
            for label in launch.labels {
                if labels::is_reserved(&label.key) && !labels::is_buildpack_label(&id, &label.key) {
                    ctx.runner.events.event(&Event::Warning(format!(
                        "buildpack {id} sets the label {:?} in launch.toml; labels under {} are kiln's own, so it is ignored",
                        label.key,
                        labels::RESERVED_PREFIXES.join(" and ")
                    )));
                } else {
                    output.labels.push(label);
                }
            }
            output.slices.extend(launch.slices);
        }
        let store = read_store_toml(&host_layers, &id)?;
        let debian_packages = read_debian_packages(&host_layers, &id)?;
        ctx.runner.events.event(&Event::BuildpackFinished {
            id: buildpack.id().clone(),
            elapsed: started.elapsed(),
        });
        output.buildpacks.push(BuildpackOutput {
            buildpack: buildpack.clone(),
            layers,
            store,
            debian_packages,
        });
    }
    output.processes.retain_exec_env(ctx.runner.exec_env);
    Ok(output)
}

/// An env file error as the buildpack's invalid output (exit code 52) when it is about a
/// file, or as an I/O failure.
fn env_output_err(id: &str, error: EnvDirError) -> BuildError {
    match error {
        EnvDirError::Invalid { path, problem } => BuildError::InvalidOutput {
            id: id.to_string(),
            path,
            problem,
        },
        other => BuildError::EnvFiles(other),
    }
}

/// Reads a metadata file the buildpack wrote (see the module docs); `None` if it has none.
fn read_output(path: &Path, id: &str) -> Result<Option<String>, BuildError> {
    match untrusted::read_text(path, MAX_METADATA, Links::Refuse) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(BuildError::InvalidOutput {
            id: id.to_string(),
            path: path.to_path_buf(),
            problem: env::read_problem(&e),
        }),
    }
}

fn prepare_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + use<> {
    let path = path.to_path_buf();
    move |source| BuildError::Prepare { path, source }
}

/// Writes the buildpack plan for `bin/build` and returns its path.
fn write_buildpack_plan(
    ctx: &BuildContext<'_>,
    escaped_id: &str,
    bp_plan: &plan::BuildpackPlan,
) -> Result<PathBuf, BuildError> {
    let plan_dir = ctx.dirs.plans.join("build").join(escaped_id);
    fs::create_dir_all(&plan_dir).map_err(prepare_err(&plan_dir))?;
    let plan_path = plan_dir.join("plan.toml");
    let plan_text =
        toml::to_string(bp_plan).map_err(|e| prepare_err(&plan_path)(std::io::Error::other(e)))?;
    fs::write(&plan_path, plan_text).map_err(prepare_err(&plan_path))?;
    Ok(plan_path)
}

/// Runs `bin/build <layers> <platform> <plan>` with the CNB environment, streaming its
/// output as events.
fn run_bin_build(
    ctx: &BuildContext<'_>,
    buildpack: &Buildpack,
    env: &Env,
    guest_layers: &Path,
    plan_path: &Path,
) -> Result<(), BuildError> {
    let id = buildpack.id().to_string();
    let mut command = ctx.runner.command(buildpack, "build", env)?;
    command
        .arg(guest_layers)
        .arg(PLATFORM_DIR)
        .arg(crate::buildenv::guest_plan_path(&ctx.dirs.plans, plan_path))
        .env(
            "CNB_BP_PLAN_PATH",
            crate::buildenv::guest_plan_path(&ctx.dirs.plans, plan_path),
        )
        .env("CNB_LAYERS_DIR", guest_layers);
    let mut notify = |silent: std::time::Duration| {
        ctx.runner
            .events
            .event(&Event::Step(quiet_notice(&id, silent)));
    };
    let quiet = exec::quiet_notice_interval().map(|every| exec::QuietNotice {
        every,
        notify: &mut notify,
    });
    let outcome = exec::run(
        command,
        ctx.runner.cancel,
        &mut |line| {
            ctx.runner.events.event(&Event::BuildpackOutput {
                id: buildpack.id().clone(),
                line,
            });
        },
        quiet,
    )
    .map_err(|source| BuildError::Spawn {
        id: id.clone(),
        source,
    })?;
    if outcome.cancelled {
        return Err(crate::event::Cancelled.into());
    }
    if outcome.code != Some(0) {
        return Err(BuildError::BuildpackFailed {
            id,
            version: buildpack.version().to_string(),
            status: outcome.describe(),
            tail: outcome.tail,
            output_shown: false,
        });
    }
    Ok(())
}

/// "kiln/nodejs has printed nothing for 60 s; still running (Ctrl-C cancels)".
fn quiet_notice(id: &str, silent: std::time::Duration) -> String {
    format!(
        "{id} has printed nothing for {} s; still running (Ctrl-C cancels)",
        silent.as_secs()
    )
}

fn read_launch_toml(bp_layers: &Path, id: &str) -> Result<Option<LaunchContribution>, BuildError> {
    let path = bp_layers.join("launch.toml");
    let Some(text) = read_output(&path, id)? else {
        return Ok(None);
    };
    parse_launch_toml(&text, id, Path::new(APP_DIR))
        .map(Some)
        .map_err(|problem| BuildError::InvalidOutput {
            id: id.to_string(),
            path,
            problem: problem.to_string(),
        })
}

/// The names of the layers a buildpack declared (`<name>.toml` files), checked to be single
/// path components, sorted.
fn layer_names(bp_layers: &Path, id: &str) -> Result<Vec<String>, BuildError> {
    let prep = |source| BuildError::Prepare {
        path: bp_layers.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(bp_layers).map_err(prep)? {
        let entry = entry.map_err(prep)?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let file_name = entry.file_name();
        let Some(name) = file_name.as_bytes().strip_suffix(b".toml") else {
            continue;
        };
        let invalid = |problem: String| BuildError::InvalidOutput {
            id: id.to_string(),
            path: entry.path(),
            problem,
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(invalid(
                "a layer name must be UTF-8; rename the layer".to_string(),
            ));
        };
        if matches!(name, "launch" | "build" | "store")
            || file_name.as_bytes() == DEBIAN_PACKAGES_FILE.as_bytes()
        {
            continue;
        }
        // `.toml` names the layer "", `..toml` the layer "." (the whole layers directory),
        // `...toml` the layer "..": each must be one ordinary path component.
        untrusted::component(name, "layer name")
            .map_err(|e| invalid(format!("{e}; name layers with one plain file name")))?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// Reads every `<name>.toml` layer file in a buildpack's layers directory, sorted by name,
/// renaming the directories of layers with no types to `<name>.ignore`.
fn read_layers(bp_layers: &Path, id: &str) -> Result<Vec<LayerInfo>, BuildError> {
    let names = layer_names(bp_layers, id)?;
    let mut layers = Vec::new();
    for name in names {
        let path = bp_layers.join(format!("{name}.toml"));
        let invalid = |problem: String| BuildError::InvalidOutput {
            id: id.to_string(),
            path: path.clone(),
            problem,
        };
        let text = read_output(&path, id)?.ok_or_else(|| invalid("it disappeared".to_string()))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| invalid(untrusted::toml_problem(&text, &e)))?;
        if ["build", "launch", "cache"]
            .iter()
            .any(|k| table.contains_key(*k))
        {
            return Err(invalid(
                "the launch, cache and build flags must be in the [types] table".to_string(),
            ));
        }
        let types = match table.remove("types") {
            None => LayerTypes::default(),
            Some(toml::Value::Table(t)) => {
                let flag = |k: &str| -> Result<bool, BuildError> {
                    match t.get(k) {
                        None => Ok(false),
                        Some(toml::Value::Boolean(b)) => Ok(*b),
                        Some(other) => Err(invalid(format!(
                            "types.{k} must be a boolean, found a {}",
                            other.type_str()
                        ))),
                    }
                };
                LayerTypes {
                    launch: flag("launch")?,
                    build: flag("build")?,
                    cache: flag("cache")?,
                }
            }
            Some(other) => {
                return Err(invalid(format!(
                    "types must be a table, found a {}",
                    other.type_str()
                )));
            }
        };
        let metadata = match table.remove("metadata") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                return Err(invalid(format!(
                    "metadata must be a table, found a {}",
                    other.type_str()
                )));
            }
        };
        let mut dir = bp_layers.join(&name);
        // The layer's contents must be a directory of the layers directory itself: a link
        // would make kiln export (or cache) whatever it points to.
        let exists = match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => true,
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(BuildError::InvalidOutput {
                    id: id.to_string(),
                    path: dir,
                    problem: "the layer directory is a symbolic link; write the layer's files into a directory".to_string(),
                });
            }
            Ok(_) => {
                return Err(BuildError::InvalidOutput {
                    id: id.to_string(),
                    path: dir,
                    problem: "the layer is not a directory; a layer's contents go in a directory named like its .toml file".to_string(),
                });
            }
            Err(_) => false,
        };
        if exists && types == LayerTypes::default() {
            let ignored = bp_layers.join(format!("{name}.ignore"));
            let _ = fs::remove_dir_all(&ignored);
            fs::rename(&dir, &ignored).map_err(|source| BuildError::Prepare {
                path: dir.clone(),
                source,
            })?;
            dir = ignored;
        }
        layers.push(LayerInfo {
            name,
            types,
            metadata,
            dir: exists.then_some(dir),
        });
    }
    Ok(layers)
}

/// Reads `build.toml` and returns the names of plan entries the buildpack met.
fn read_build_toml(
    bp_layers: &Path,
    id: &str,
    bp_plan: &plan::BuildpackPlan,
) -> Result<Vec<String>, BuildError> {
    #[derive(serde::Deserialize)]
    struct Unmet {
        #[serde(default)]
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct BuildToml {
        #[serde(default)]
        unmet: Vec<Unmet>,
    }
    let path = bp_layers.join("build.toml");
    let invalid = |problem: String| BuildError::InvalidOutput {
        id: id.to_string(),
        path: path.clone(),
        problem,
    };
    let unmet: Vec<String> = match read_output(&path, id)? {
        Some(text) => {
            let parsed: BuildToml =
                toml::from_str(&text).map_err(|e| invalid(untrusted::toml_problem(&text, &e)))?;
            let mut names = Vec::new();
            for u in parsed.unmet {
                if u.name.is_empty() {
                    return Err(invalid("unmet.name is required".to_string()));
                }
                if !bp_plan.entries.iter().any(|e| e.name == u.name) {
                    return Err(invalid(format!(
                        "unmet.name '{}' must match a requested dependency",
                        u.name
                    )));
                }
                names.push(u.name);
            }
            names
        }
        None => Vec::new(),
    };
    Ok(bp_plan
        .entries
        .iter()
        .filter(|e| !unmet.contains(&e.name))
        .map(|e| e.name.clone())
        .collect())
}

/// A buildpack's [`DEBIAN_PACKAGES_FILE`]: its packages, or none without the file.
fn read_debian_packages(
    bp_layers: &Path,
    id: &str,
) -> Result<Vec<DebianPackageRequest>, BuildError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        package: Vec<DebianPackageRequest>,
    }
    let path = bp_layers.join(DEBIAN_PACKAGES_FILE);
    let Some(text) = read_output(&path, id)? else {
        return Ok(Vec::new());
    };
    let invalid = |problem: String| BuildError::InvalidOutput {
        id: id.to_string(),
        path: path.clone(),
        problem,
    };
    let file: File =
        toml::from_str(&text).map_err(|e| invalid(untrusted::toml_problem(&text, &e)))?;
    for p in &file.package {
        let valid = p.name.len() > 1
            && p.name
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !valid {
            return Err(invalid(format!(
                "`{}` is not a Debian package name (lower-case letters, digits, '+', '-', '.')",
                p.name
            )));
        }
    }
    Ok(file.package)
}

fn read_store_toml(bp_layers: &Path, id: &str) -> Result<Option<toml::Table>, BuildError> {
    let path = bp_layers.join("store.toml");
    let Some(text) = read_output(&path, id)? else {
        return Ok(None);
    };
    let invalid = |problem: String| BuildError::InvalidOutput {
        id: id.to_string(),
        path: path.clone(),
        problem,
    };
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| invalid(untrusted::toml_problem(&text, &e)))?;
    match table.remove("metadata") {
        None => Ok(Some(toml::Table::new())),
        Some(toml::Value::Table(t)) => Ok(Some(t)),
        Some(other) => Err(invalid(format!(
            "metadata must be a table, found a {}",
            other.type_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_files_are_read_and_untyped_layers_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join("a.toml"),
            "[types]\nlaunch = true\n[metadata]\nv = \"1\"\n",
        )
        .unwrap();
        fs::create_dir(d.join("a")).unwrap();
        fs::write(d.join("b.toml"), "[metadata]\n").unwrap();
        fs::create_dir(d.join("b")).unwrap();
        fs::write(d.join("launch.toml"), "").unwrap();
        fs::write(d.join("store.toml"), "[metadata]\nk = 1\n").unwrap();
        let layers = read_layers(d, "bp").unwrap();
        assert_eq!(layers.len(), 2);
        assert!(layers[0].types.launch);
        assert_eq!(layers[0].metadata["v"].as_str(), Some("1"));
        assert!(d.join("b.ignore").is_dir());
        assert!(!d.join("b").exists());
        assert_eq!(
            read_store_toml(d, "bp").unwrap().unwrap()["k"].as_integer(),
            Some(1)
        );
    }

    #[test]
    fn top_level_types_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.toml"), "launch = true\n").unwrap();
        let err = read_layers(dir.path(), "bp").unwrap_err();
        assert!(err.to_string().contains("[types]"), "{err}");
    }

    #[test]
    fn unmet_must_name_a_plan_entry() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan::BuildpackPlan {
            entries: vec![plan::Require {
                name: "node".into(),
                version: None,
                metadata: toml::Table::new(),
            }],
        };
        assert_eq!(read_build_toml(dir.path(), "bp", &plan).unwrap(), ["node"]);
        fs::write(
            dir.path().join("build.toml"),
            "[[unmet]]\nname = \"node\"\n",
        )
        .unwrap();
        assert!(read_build_toml(dir.path(), "bp", &plan).unwrap().is_empty());
        fs::write(
            dir.path().join("build.toml"),
            "[[unmet]]\nname = \"ruby\"\n",
        )
        .unwrap();
        assert!(read_build_toml(dir.path(), "bp", &plan).is_err());
    }
}
