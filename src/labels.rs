//! The CNB image labels, in the JSON shapes the platform spec and the lifecycle use, so that
//! CNB-aware tools (`pack inspect`, rebasers, scanners) can read kiln images.
//!
//! See the platform spec's [Labels](https://github.com/buildpacks/spec/blob/main/platform.md#labels).

use std::collections::BTreeMap;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use crate::buildpack_id::BuildpackId;

/// `io.buildpacks.lifecycle.metadata`.
pub const LIFECYCLE_METADATA: &str = "io.buildpacks.lifecycle.metadata";
/// `io.buildpacks.build.metadata`.
pub const BUILD_METADATA: &str = "io.buildpacks.build.metadata";
/// `io.buildpacks.project.metadata`.
pub const PROJECT_METADATA: &str = "io.buildpacks.project.metadata";
/// `io.buildpacks.exec-env` (Platform API 0.15).
pub const EXEC_ENV: &str = "io.buildpacks.exec-env";
/// The process type the image runs by default (kiln's own label; the lifecycle encodes it
/// in an `/cnb/process/<type>` entrypoint, which kiln images do not have).
pub const PROCESS_TYPE: &str = "io.github.kiln-build.process-type";
/// The build image buildpacks ran in (`--build-env image`), as `REFERENCE@sha256:…`; absent
/// when they ran on the host.
pub const BUILD_IMAGE: &str = "io.github.kiln-build.build-image";
/// The stack and flavour a kiln stack image was built from (`bookworm/python`).
pub const STACK: &str = "io.github.kiln-build.stack";
/// The packages of a kiln stack image: `name=version`, comma-separated, sorted.
pub const STACK_PACKAGES: &str = "io.github.kiln-build.stack.packages";
/// How kiln made a stack image (the version of what it does in place of maintainer
/// scripts): an image made another way is made again.
pub const STACK_FORMAT: &str = "io.github.kiln-build.stack.format";
/// The Debian packages kiln added to an app image for the shared libraries its files need
/// and its run image lacks: a JSON list of `name=version`, sorted (see
/// [Native libraries](crate#native-libraries)).
pub const NATIVE_PACKAGES: &str = "io.github.kiln-build.native-packages";
/// Which file needed which of those libraries, from which package: a JSON list of
/// `{"library": …, "needed_by": …, "package": …}`, sorted.
pub const NATIVE_LIBRARIES: &str = "io.github.kiln-build.native-libraries";
/// The Debian packages kiln added for buildpacks' requests (`kiln-debian-packages.toml`): a
/// JSON list of `name=version`, the requested packages and what they need.
pub const DEBIAN_PACKAGES: &str = "io.github.kiln-build.debian-packages";
/// The buildpacks' requests for Debian packages: a JSON list of `name`, `for` (why),
/// `buildpack`, `version` (chosen) and `pin` (the app's, when it has one).
pub const DEBIAN_REQUESTS: &str = "io.github.kiln-build.debian-packages.requests";
/// `io.buildpacks.base.distro.name` on run images.
pub const DISTRO_NAME: &str = "io.buildpacks.base.distro.name";
/// `io.buildpacks.base.distro.version` on run images.
pub const DISTRO_VERSION: &str = "io.buildpacks.base.distro.version";

/// Label namespaces that belong to the platform and to kiln: the CNB labels kiln writes
/// (`io.buildpacks.lifecycle.metadata`, `io.buildpacks.build.metadata`,
/// `io.buildpacks.project.metadata`, `io.buildpacks.exec-env`, the cache's
/// `io.buildpacks.lifecycle.cache.metadata`, the run image's `io.buildpacks.base.*` that
/// rebase reads) and kiln's own (`io.github.kiln-build.*`). A buildpack's `launch.toml`
/// label in them is ignored with a warning: kiln's values always win, as the lifecycle's
/// own labels do over buildpack labels, so a buildpack cannot make an image lie about its
/// layers, run image or processes.
pub const RESERVED_PREFIXES: [&str; 2] = ["io.buildpacks.", "io.github.kiln-build."];

/// Whether `key` is in a namespace of [`RESERVED_PREFIXES`] (compared without regard to
/// ASCII case, as some tools treat label keys).
pub fn is_reserved(key: &str) -> bool {
    let key = key.trim();
    RESERVED_PREFIXES.iter().any(|prefix| {
        key.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

/// The first part of kiln's own label keys after its prefix (`io.github.kiln-build.stack…`).
const KILN_LABEL_NAMES: [&str; 6] = [
    "builder",
    "process-type",
    "build-image",
    "stack",
    "native-packages",
    "native-libraries",
];

/// Whether the buildpack `id` may set `key` although it is under kiln's prefix: kiln's
/// buildpacks (`kiln/<name>`) record what they installed under
/// `io.github.kiln-build.<name>.` (`kiln/nodejs`: `io.github.kiln-build.nodejs.version`), a
/// namespace none of kiln's own labels use.
pub fn is_buildpack_label(id: &str, key: &str) -> bool {
    let Some(name) = id.strip_prefix("kiln/") else {
        return false;
    };
    !name.is_empty()
        && !KILN_LABEL_NAMES.contains(&name)
        && key
            .strip_prefix("io.github.kiln-build.")
            .and_then(|rest| rest.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty())
}

/// A `{"sha": "sha256:…"}` reference to a layer by `diff_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The layer's `diff_id` (`None` when the image has no such layer, written as an empty
    /// string).
    #[serde(default, with = "crate::image::digest::empty_is_none")]
    pub sha: Option<Digest>,
}

/// `io.buildpacks.lifecycle.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleMetadata {
    /// App layers (one per slice, then the rest).
    #[serde(default)]
    pub app: Vec<LayerRef>,
    /// Per buildpack, its launch layers.
    #[serde(default)]
    pub buildpacks: Vec<BuildpackLayers>,
    /// The lifecycle's config layer; kiln images have none (empty sha).
    #[serde(default)]
    pub config: LayerRef,
    /// The launcher layer; kiln images have none (empty sha).
    #[serde(default)]
    pub launcher: LayerRef,
    /// The process-types layer; kiln images have none (empty sha).
    #[serde(default, rename = "process-types")]
    pub process_types: LayerRef,
    /// The run image, for rebase.
    #[serde(default, rename = "runImage")]
    pub run_image: RunImageMetadata,
    /// Deprecated (Platform 0.12) but still written by the lifecycle.
    #[serde(default)]
    pub stack: StackMetadata,
}

/// One buildpack's entry in [`LifecycleMetadata`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildpackLayers {
    /// Buildpack ID.
    pub key: BuildpackId,
    /// Buildpack version.
    pub version: String,
    /// Launch layers by name.
    #[serde(default)]
    pub layers: BTreeMap<String, LayerMetadata>,
    /// Its `store.toml`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreMetadata>,
}

/// A layer's entry in [`BuildpackLayers`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerMetadata {
    /// The layer's `diff_id` (`None`, written as an empty string, until it is known).
    #[serde(with = "crate::image::digest::empty_is_none")]
    pub sha: Option<Digest>,
    /// The layer's `[metadata]`.
    #[serde(default)]
    pub data: serde_json::Value,
    /// `types.build`.
    #[serde(default)]
    pub build: bool,
    /// `types.launch`.
    #[serde(default)]
    pub launch: bool,
    /// `types.cache`.
    #[serde(default)]
    pub cache: bool,
}

/// A buildpack's persisted `store.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreMetadata {
    /// Its `[metadata]`.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// The run image, as recorded for rebase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunImageMetadata {
    /// `diff_id` of the run image's top layer: the boundary between base and app layers
    /// (`None` for a run image without layers, written as an empty string).
    #[serde(
        default,
        rename = "topLayer",
        with = "crate::image::digest::empty_is_none"
    )]
    pub top_layer: Option<Digest>,
    /// The run image's manifest digest.
    #[serde(default)]
    pub reference: String,
    /// The run image's name.
    #[serde(default)]
    pub image: String,
    /// Mirrors of the run image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// The deprecated `stack` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackMetadata {
    /// The run image.
    #[serde(default, rename = "runImage")]
    pub run_image: StackRunImage,
}

/// The run image in [`StackMetadata`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRunImage {
    /// The run image's name.
    #[serde(default)]
    pub image: String,
    /// Mirrors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// `io.buildpacks.build.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildMetadata {
    /// The buildpacks of the group, in order.
    #[serde(default)]
    pub buildpacks: Vec<BuildpackRef>,
    /// Every process.
    #[serde(default)]
    pub processes: Vec<ProcessMetadata>,
    /// Launcher information; kiln images have no launcher, so it is empty.
    #[serde(default)]
    pub launcher: LauncherMetadata,
    /// The default process type chosen by buildpacks.
    #[serde(
        default,
        rename = "buildpack-default-process-type",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_process_type: Option<String>,
}

/// A buildpack of the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildpackRef {
    /// Buildpack ID.
    pub id: String,
    /// Version.
    pub version: String,
    /// Homepage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
}

/// A process in [`BuildMetadata`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMetadata {
    /// Process type.
    #[serde(rename = "type")]
    pub process_type: String,
    /// Command.
    pub command: Vec<String>,
    /// Default arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Always true for the Buildpack APIs kiln runs.
    #[serde(default)]
    pub direct: bool,
    /// Working directory.
    #[serde(
        default,
        rename = "working-dir",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    /// The buildpack that defined it.
    #[serde(default, rename = "buildpackID")]
    pub buildpack_id: String,
    /// Execution environments.
    #[serde(default, rename = "exec-env", skip_serializing_if = "Vec::is_empty")]
    pub exec_env: Vec<String>,
}

/// The launcher entry of [`BuildMetadata`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherMetadata {
    /// Launcher version.
    #[serde(default)]
    pub version: String,
    /// Where it came from.
    #[serde(default)]
    pub source: LauncherSource,
}

/// Source of the launcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherSource {
    /// Git coordinates.
    #[serde(default)]
    pub git: LauncherGit,
}

/// Git coordinates of the launcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherGit {
    /// Repository.
    #[serde(default)]
    pub repository: String,
    /// Commit.
    #[serde(default)]
    pub commit: String,
}

/// Converts a TOML table to JSON (TOML datetimes become strings).
pub fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .iter()
            .map(|(k, v)| (k.clone(), toml_value_to_json(v)))
            .collect(),
    )
}

fn toml_value_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_value_to_json).collect()),
        toml::Value::Table(t) => toml_to_json(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kiln_buildpacks_own_only_their_sub_namespace() {
        assert!(is_buildpack_label(
            "kiln/nodejs",
            "io.github.kiln-build.nodejs.version"
        ));
        for (id, key) in [
            ("kiln/nodejs", "io.github.kiln-build.python.version"),
            ("kiln/nodejs", "io.github.kiln-build.nodejs"),
            ("kiln/nodejs", "io.github.kiln-build.nodejsx.version"),
            ("acme/nodejs", "io.github.kiln-build.nodejs.version"),
            ("kiln/stack", "io.github.kiln-build.stack.packages"),
            ("kiln/builder", "io.github.kiln-build.builder.x"),
            ("kiln/", "io.github.kiln-build..x"),
        ] {
            assert!(!is_buildpack_label(id, key), "{id} {key}");
        }
        // Every kiln label's first part is kept from buildpacks.
        for key in [
            PROCESS_TYPE,
            BUILD_IMAGE,
            STACK,
            STACK_PACKAGES,
            STACK_FORMAT,
        ] {
            let rest = key.strip_prefix("io.github.kiln-build.").unwrap();
            let first = rest.split('.').next().unwrap();
            assert!(KILN_LABEL_NAMES.contains(&first), "{key}");
        }
    }

    #[test]
    fn toml_converts_to_json() {
        let t: toml::Table =
            toml::from_str("v = \"1\"\nn = 2\nwhen = 1979-05-27T07:32:00Z\n[sub]\nok = true\n")
                .unwrap();
        let j = toml_to_json(&t);
        assert_eq!(j["v"], "1");
        assert_eq!(j["n"], 2);
        assert_eq!(j["when"], "1979-05-27T07:32:00Z");
        assert_eq!(j["sub"]["ok"], true);
    }

    #[test]
    fn kiln_and_platform_labels_are_reserved() {
        for key in [
            LIFECYCLE_METADATA,
            BUILD_METADATA,
            PROJECT_METADATA,
            EXEC_ENV,
            PROCESS_TYPE,
            STACK,
            DISTRO_NAME,
            "io.buildpacks.lifecycle.cache.metadata",
            "IO.Buildpacks.Lifecycle.Metadata",
            " io.buildpacks.build.metadata",
        ] {
            assert!(is_reserved(key), "{key}");
        }
        for key in [
            "org.opencontainers.image.source",
            "team",
            "io.buildpacksx",
            "",
        ] {
            assert!(!is_reserved(key), "{key}");
        }
    }

    #[test]
    fn lifecycle_metadata_has_lifecycle_keys() {
        let json = serde_json::to_value(LifecycleMetadata::default()).unwrap();
        for key in [
            "app",
            "buildpacks",
            "config",
            "launcher",
            "process-types",
            "runImage",
            "stack",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["runImage"]["topLayer"], "");
    }

    #[test]
    fn typed_digests_and_ids_keep_the_label_bytes() {
        // A label as kiln wrote it with strings: no layer is an empty sha.
        let label = r#"{"app":[{"sha":"sha256:1111111111111111111111111111111111111111111111111111111111111111"}],"buildpacks":[{"key":"kiln/python","version":"0.1.0","layers":{"deps":{"sha":"sha256:2222222222222222222222222222222222222222222222222222222222222222","data":{},"build":false,"launch":true,"cache":true},"none":{"sha":"","data":null,"build":false,"launch":false,"cache":false}}}],"config":{"sha":""},"launcher":{"sha":""},"process-types":{"sha":""},"runImage":{"topLayer":"sha256:3333333333333333333333333333333333333333333333333333333333333333","reference":"sha256:4444444444444444444444444444444444444444444444444444444444444444","image":"kiln/run"},"stack":{"runImage":{"image":"kiln/run"}}}"#;
        let metadata: LifecycleMetadata = serde_json::from_str(label).unwrap();
        assert_eq!(metadata.config.sha, None);
        assert_eq!(metadata.buildpacks[0].key, "kiln/python");
        assert_eq!(metadata.buildpacks[0].layers["none"].sha, None);
        assert!(metadata.run_image.top_layer.is_some());
        assert_eq!(serde_json::to_string(&metadata).unwrap(), label);
        // Absent fields are none too.
        let bare: LifecycleMetadata = serde_json::from_str("{}").unwrap();
        assert_eq!(bare.run_image.top_layer, None);
        // Something that is no digest, or an invalid buildpack id, does not read.
        assert!(serde_json::from_str::<LayerRef>(r#"{"sha":"sha256:xyz"}"#).is_err());
        assert!(serde_json::from_str::<BuildpackLayers>(r#"{"key":"a b","version":"1"}"#).is_err());
    }
}
