//! `buildpack.toml`, read the way the reference lifecycle reads it.
//!
//! kiln is a CNB *platform*, so it must accept every descriptor the lifecycle accepts:
//! unknown keys are ignored, `variant` and the lifecycle's `arch-variant` are both read, and
//! `exec-env` may be a list of strings (lifecycle) or of `{ name = … }` tables (spec text).
//! That leniency is why these types are kiln's own rather than `libcnb-data`'s, which are
//! made for buildpack authors and reject unknown fields.
//!
//! See [buildpack.toml](https://github.com/buildpacks/spec/blob/main/buildpack.md#buildpacktoml-toml).

use serde::Deserialize;

use super::order::OrderGroup;

/// A parsed `buildpack.toml` (component or composite).
#[derive(Debug, Clone, Deserialize)]
pub struct BuildpackDescriptor {
    /// The Buildpack API version the buildpack implements.
    pub api: String,
    /// The `[buildpack]` table.
    pub buildpack: BuildpackInfo,
    /// `[[order]]` of a composite buildpack; empty for a component buildpack.
    #[serde(default)]
    pub order: Vec<OrderGroup>,
    /// `[[targets]]` the buildpack supports.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Deprecated `[[stacks]]`, read for its `"*"` and bionic mappings.
    #[serde(default)]
    pub stacks: Vec<Stack>,
    /// Free-form `[metadata]`; kiln reads `[metadata.kiln]` from it.
    #[serde(default)]
    pub metadata: toml::Table,
}

/// The `[buildpack]` table.
#[derive(Debug, Clone, Deserialize)]
pub struct BuildpackInfo {
    /// Buildpack ID.
    pub id: String,
    /// Buildpack version.
    pub version: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// Homepage URL.
    #[serde(default)]
    pub homepage: Option<String>,
    /// When true, user-provided environment variables are not exported to the buildpack.
    #[serde(default, rename = "clear-env")]
    pub clear_env: bool,
    /// SBOM media types the buildpack may write.
    #[serde(default, rename = "sbom-formats")]
    pub sbom_formats: Vec<String>,
    /// Execution environments the buildpack supports (Buildpack API 0.12); empty means all.
    #[serde(default, rename = "exec-env")]
    pub exec_env: Vec<ExecEnvEntry>,
}

/// One `exec-env` entry: `"production"` or `{ name = "production" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExecEnvEntry {
    /// The lifecycle's form.
    Name(String),
    /// The spec's form.
    Table {
        /// The execution environment.
        name: String,
    },
}

impl ExecEnvEntry {
    /// The execution environment named.
    pub fn name(&self) -> &str {
        match self {
            Self::Name(name) | Self::Table { name } => name,
        }
    }
}

/// A `[[targets]]` entry. Missing fields match anything.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Target {
    /// Operating system.
    #[serde(default)]
    pub os: Option<String>,
    /// Architecture.
    #[serde(default)]
    pub arch: Option<String>,
    /// Architecture variant (spec key).
    #[serde(default)]
    pub variant: Option<String>,
    /// Architecture variant (the lifecycle's key).
    #[serde(default, rename = "arch-variant")]
    pub arch_variant: Option<String>,
    /// Distributions; if any are given, one must match.
    #[serde(default)]
    pub distros: Vec<Distro>,
}

/// A `[[targets.distros]]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Distro {
    /// `/etc/os-release` `ID`.
    #[serde(default)]
    pub name: String,
    /// `/etc/os-release` `VERSION_ID`.
    #[serde(default)]
    pub version: String,
}

/// A deprecated `[[stacks]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    /// Stack ID.
    pub id: String,
}

impl Target {
    /// The variant, from whichever key was used.
    pub fn variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or(self.arch_variant.as_deref())
            .filter(|v| !v.is_empty())
    }
}
