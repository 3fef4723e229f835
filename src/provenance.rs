//! Build provenance: an [in-toto Statement v1] whose predicate is [SLSA Provenance v1],
//! attached to the image as an OCI 1.1 referrer of type `application/vnd.in-toto+json`
//! beside its SBOMs ([`crate::image::referrers`]).
//!
//! It says what was built (the image's name and manifest digest), from what (the source
//! directory as it was given, and the git commit checked out there), how (stack, platform,
//! buildpacks asked for, the names — never the values — of the environment variables given
//! to buildpacks) and with what (the buildpacks that ran, by `id@version`, the build image
//! and the run image, by digest). Like the SBOMs it is deterministic: no `invocationId`, no
//! wall clock (its one time is the image's `created`), sorted keys and the canonical JSON
//! writer, so the same build gives the same bytes. It is not signed.
//!
//! [in-toto Statement v1]: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
//! [SLSA Provenance v1]: https://slsa.dev/spec/v1.0/provenance

use std::collections::BTreeMap;
use std::path::{Component, Path};

use oci_spec::image::{Descriptor, ImageConfiguration};
use serde::Serialize;

use crate::image::layout::{LayoutError, OciLayout};
use crate::image::referrers::{self, Referrer};
use crate::labels;
use crate::untrusted::{Links, MAX_METADATA};

/// The statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of SLSA Provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type of a kiln build: its `externalParameters` are `source` (`name`: the app
/// directory as given when relative, else its name; `digest.gitCommit`), `stack`,
/// `platform`, `buildpacks`, `runImage`, `buildImage`, `buildEnvironment`, `env` (names
/// only), `process`, `execEnv` and `sourceDateEpoch`.
pub const BUILD_TYPE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/buildtypes/cnb/v1");
/// The builder: kiln.
pub const BUILDER_ID: &str = env!("CARGO_PKG_REPOSITORY");
/// The file name the statement's layer carries (`org.opencontainers.image.title`).
pub const FILE_NAME: &str = "provenance.intoto.json";

/// Errors attaching the provenance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvenanceError {
    /// The statement could not be serialised.
    #[error("cannot serialise the provenance statement")]
    Json(#[source] serde_json::Error),
    /// The statement could not be written next to the image.
    #[error("cannot attach the provenance statement to the image")]
    Attach(#[source] LayoutError),
}

/// What a build was asked to do, as far as the provenance tells (see
/// [`ExternalParameters`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub(crate) struct Request<'a> {
    /// The app's directory as given (`--path`).
    pub(crate) source: Option<&'a Path>,
    /// The stack.
    pub(crate) stack: &'a str,
    /// The buildpacks asked for (`--buildpack`), as given; empty for kiln's detection.
    pub(crate) buildpacks: Vec<String>,
    /// `--run-image`, if given.
    pub(crate) run_image: Option<String>,
    /// `--build-image`, if given.
    pub(crate) build_image: Option<String>,
    /// Where buildpacks ran: `host` or `image`.
    pub(crate) build_environment: &'a str,
    /// The names of the environment variables given to buildpacks (`--env`).
    pub(crate) env: Vec<String>,
    /// `--process`, if given.
    pub(crate) process: Option<String>,
    /// `CNB_EXEC_ENV`.
    pub(crate) exec_env: &'a str,
    /// `SOURCE_DATE_EPOCH`, if set.
    pub(crate) source_date_epoch: Option<i64>,
}

/// An in-toto statement.
#[derive(Debug, Serialize)]
struct Statement<'a> {
    #[serde(rename = "_type")]
    kind: &'static str,
    subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    predicate: Provenance<'a>,
}

/// SLSA's `ResourceDescriptor` (the fields kiln uses).
#[derive(Debug, Clone, Default, Serialize)]
struct ResourceDescriptor {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    digest: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Provenance<'a> {
    build_definition: BuildDefinition<'a>,
    run_details: RunDetails,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildDefinition<'a> {
    build_type: &'static str,
    external_parameters: ExternalParameters<'a>,
    internal_parameters: BTreeMap<&'static str, String>,
    resolved_dependencies: Vec<ResourceDescriptor>,
}

/// The parameters of [`BUILD_TYPE`]: what the user asked for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalParameters<'a> {
    /// The source: `name` is its directory as given (relative), or the directory's name;
    /// `digest.gitCommit` the commit checked out there.
    source: ResourceDescriptor,
    stack: &'a str,
    /// `os/arch[/variant]` of the image.
    platform: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    buildpacks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_image: Option<String>,
    build_environment: &'a str,
    /// Names only: values may be secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<String>,
    exec_env: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_date_epoch: Option<i64>,
}

#[derive(Debug, Serialize)]
struct RunDetails {
    builder: Builder,
    metadata: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
struct Builder {
    id: &'static str,
    version: BTreeMap<&'static str, &'static str>,
}

/// The provenance statement of the image `image` (named `name`, with configuration
/// `config`) built as `request` asked; canonical JSON.
pub(crate) fn statement(
    name: &str,
    image: &Descriptor,
    config: &ImageConfiguration,
    request: &Request<'_>,
) -> Result<Vec<u8>, ProvenanceError> {
    let image_labels = config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    let label = |key: &str| image_labels.get(key).map(String::as_str);

    let mut resolved = Vec::new();
    // The buildpacks that ran, in their group's order.
    if let Some(build) = label(labels::BUILD_METADATA)
        .and_then(|v| serde_json::from_str::<labels::BuildMetadata>(v).ok())
    {
        for bp in build.buildpacks {
            resolved.push(ResourceDescriptor {
                name: Some(format!("{}@{}", bp.id, bp.version)),
                uri: Some(
                    bp.homepage
                        .unwrap_or_else(|| format!("urn:cnb:buildpack:{}@{}", bp.id, bp.version)),
                ),
                digest: BTreeMap::new(),
            });
        }
    }
    if let Some(build_image) = label(labels::BUILD_IMAGE) {
        resolved.push(image_dependency("build-image", build_image, None));
    }
    if let Some(lifecycle) = label(labels::LIFECYCLE_METADATA)
        .and_then(|v| serde_json::from_str::<labels::LifecycleMetadata>(v).ok())
    {
        let run = lifecycle.run_image;
        if !run.image.is_empty() || !run.reference.is_empty() {
            resolved.push(image_dependency(
                "run-image",
                &run.image,
                Some(&run.reference),
            ));
        }
    }

    let mut metadata = BTreeMap::new();
    // The image's `created` (SOURCE_DATE_EPOCH or the CNB constant): the one time that
    // does not make two builds of the same thing differ.
    if let Some(created) = config.created() {
        metadata.insert("finishedOn", created.clone());
    }
    let platform = match config.variant() {
        Some(variant) => format!("{}/{}/{variant}", config.os(), config.architecture()),
        None => format!("{}/{}", config.os(), config.architecture()),
    };
    let mut env = request.env.clone();
    env.sort();
    env.dedup();
    let statement = Statement {
        kind: STATEMENT_TYPE,
        subject: vec![ResourceDescriptor {
            name: Some(name.to_string()),
            uri: None,
            digest: sha256_of(image.digest().as_ref()),
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE,
                external_parameters: ExternalParameters {
                    source: source(request.source),
                    stack: request.stack,
                    platform,
                    buildpacks: request.buildpacks.clone(),
                    run_image: request.run_image.clone(),
                    build_image: request.build_image.clone(),
                    build_environment: request.build_environment,
                    env,
                    process: request.process.clone(),
                    exec_env: request.exec_env,
                    source_date_epoch: request.source_date_epoch,
                },
                internal_parameters: BTreeMap::from([(
                    "kilnVersion",
                    env!("CARGO_PKG_VERSION").to_string(),
                )]),
                resolved_dependencies: resolved,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID,
                    version: BTreeMap::from([("kiln", env!("CARGO_PKG_VERSION"))]),
                },
                metadata,
            },
        },
    };
    crate::reproducible::canonical_json(&statement).map_err(ProvenanceError::Json)
}

/// Writes the provenance `statement` of `image` into `layout` as an artifact whose subject
/// is the image; returns it (not yet listed in `index.json`).
pub(crate) fn attach(
    layout: &OciLayout,
    image: &Descriptor,
    statement: &[u8],
) -> Result<Referrer, ProvenanceError> {
    referrers::write_artifact(layout, image, referrers::IN_TOTO_JSON, statement, FILE_NAME)
        .map_err(ProvenanceError::Attach)
}

/// `{"sha256": "<hex>"}` for a `sha256:<hex>` digest (other algorithms by their name).
fn sha256_of(digest: &str) -> BTreeMap<String, String> {
    digest
        .split_once(':')
        .map(|(algorithm, hex)| BTreeMap::from([(algorithm.to_string(), hex.to_string())]))
        .unwrap_or_default()
}

/// A dependency on the image `reference` (`REF@sha256:…`, or `REF` with `digest` apart).
fn image_dependency(name: &str, reference: &str, digest: Option<&str>) -> ResourceDescriptor {
    let (repository, digest) = match (reference.rsplit_once('@'), digest) {
        (Some((repository, pinned)), None) => (repository, Some(pinned)),
        (_, digest) => (reference, digest.filter(|d| !d.is_empty())),
    };
    let uri = match digest {
        Some(digest) if !repository.is_empty() => format!("oci://{repository}@{digest}"),
        _ => format!("oci://{repository}"),
    };
    ResourceDescriptor {
        name: Some(name.to_string()),
        uri: Some(uri),
        digest: digest.map(sha256_of).unwrap_or_default(),
    }
}

/// The source as the provenance names it: a relative path as given (`examples/app`), else
/// the directory's name; with the git commit checked out there, if it is in a repository.
fn source(path: Option<&Path>) -> ResourceDescriptor {
    let Some(path) = path else {
        return ResourceDescriptor::default();
    };
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let given_relative =
        path.is_relative() && path.components().any(|c| matches!(c, Component::Normal(_)));
    let name = if given_relative {
        path.to_string_lossy().into_owned()
    } else {
        resolved
            .file_name()
            .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned())
    };
    ResourceDescriptor {
        name: Some(name),
        uri: None,
        digest: git_commit(&resolved)
            .map(|commit| BTreeMap::from([("gitCommit".to_string(), commit)]))
            .unwrap_or_default(),
    }
}

/// The commit checked out in the git repository holding `dir` (its `HEAD`, followed
/// through a branch's ref file or `packed-refs`), read from `.git` without running git;
/// `None` outside a repository or when `HEAD` names nothing. A worktree's `.git` file and
/// its `commondir` are followed.
fn git_commit(dir: &Path) -> Option<String> {
    let read = |path: &Path| crate::untrusted::read_text(path, MAX_METADATA, Links::Follow).ok();
    for ancestor in dir.ancestors() {
        let dot_git = ancestor.join(".git");
        let Ok(meta) = std::fs::metadata(&dot_git) else {
            continue;
        };
        let git_dir = if meta.is_dir() {
            dot_git
        } else {
            let text = read(&dot_git)?;
            ancestor.join(text.trim().strip_prefix("gitdir:")?.trim())
        };
        let head = read(&git_dir.join("HEAD"))?;
        let head = head.trim();
        if is_object_id(head) {
            return Some(head.to_string());
        }
        let name = head.strip_prefix("ref:")?.trim();
        // A ref name is a path under refs/; nothing else is read.
        if !name.starts_with("refs/")
            || name
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return None;
        }
        let common = read(&git_dir.join("commondir"))
            .map_or_else(|| git_dir.clone(), |c| git_dir.join(c.trim()));
        for dir in [&git_dir, &common] {
            if let Some(id) = read(&dir.join(name)) {
                let id = id.trim();
                return is_object_id(id).then(|| id.to_string());
            }
        }
        let packed = crate::untrusted::read_text(
            &common.join("packed-refs"),
            crate::untrusted::MAX_DOCUMENT,
            Links::Follow,
        )
        .ok()?;
        return packed.lines().find_map(|line| {
            let (id, reference) = line.split_once(' ')?;
            (reference.trim() == name && is_object_id(id)).then(|| id.to_string())
        });
    }
    None
}

/// Whether `text` is a git object ID (SHA-1 or SHA-256, lower-case hex).
fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_commits_are_read_from_refs_packed_refs_and_worktrees() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let git = repo.join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::create_dir_all(repo.join("app/sub")).unwrap();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("refs/heads/main"), format!("{a}\n")).unwrap();
        assert_eq!(git_commit(&repo.join("app/sub")), Some(a.clone()));
        std::fs::remove_file(git.join("refs/heads/main")).unwrap();
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack-refs with: peeled\n{b} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(git_commit(&repo), Some(b.clone()));
        // A worktree: `.git` is a file naming its git directory, which names the common one.
        let wt_git = git.join("worktrees/wt");
        std::fs::create_dir_all(&wt_git).unwrap();
        std::fs::write(wt_git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        assert_eq!(git_commit(&wt), Some(b));
        // A detached HEAD; a HEAD naming something outside refs/ is ignored.
        std::fs::write(git.join("HEAD"), format!("{a}\n")).unwrap();
        assert_eq!(git_commit(&repo), Some(a));
        std::fs::write(git.join("HEAD"), "ref: ../../etc/passwd\n").unwrap();
        assert_eq!(git_commit(&repo), None);
    }

    #[test]
    fn sources_are_named_by_relative_path_or_directory_name() {
        assert_eq!(
            source(Some(Path::new("examples/python-flask")))
                .name
                .as_deref(),
            Some("examples/python-flask")
        );
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("my-app");
        std::fs::create_dir(&app).unwrap();
        let named = source(Some(&app));
        assert_eq!(named.name.as_deref(), Some("my-app"));
        assert!(named.digest.is_empty());
    }

    #[test]
    fn image_dependencies_are_pinned_by_digest() {
        let hex = "1".repeat(64);
        let dep = image_dependency("run-image", &format!("run:1@sha256:{hex}"), None);
        assert_eq!(dep.uri.unwrap(), format!("oci://run:1@sha256:{hex}"));
        assert_eq!(dep.digest["sha256"], hex);
        let dep = image_dependency("run-image", "run:1", Some(&format!("sha256:{hex}")));
        assert_eq!(dep.uri.unwrap(), format!("oci://run:1@sha256:{hex}"));
    }
}
