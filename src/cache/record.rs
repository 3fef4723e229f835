//! What kiln remembers of the last build of each image, so that the next one redoes only the
//! work whose inputs changed.
//!
//! Per image destination, under `$KILN_HOME/cache/builds/<sha256 of the destination>/`:
//!
//! - `record.json`: the fingerprint of every input of the last successful build (the source
//!   tree's stat fingerprint, the buildpacks, the run image, the settings and the build
//!   environment), the image it produced and its report. When the next build has the same
//!   inputs, its buildpacks would do the same work again; kiln publishes the recorded image
//!   instead (see [`Inputs`]). `kiln build --rebuild` runs the buildpacks anyway.
//! - `layers/`: the `cache = true` layer directories of the last build, kept where they are
//!   instead of being extracted from the store again, with `layers.json` holding each one's
//!   fingerprint and `diff_id`. A build claims the directory by renaming it into its own
//!   scratch space (so two concurrent builds of one image never share it; the second one
//!   extracts from the store) and a kept layer is used only if its fingerprint still matches;
//!   anything else is extracted from the store, verified, as before.
//!
//! Everything here is an accelerator: files are replaced atomically, and a missing, stale or
//! damaged record only means work is done again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use crate::buildpack_id::VersionedBuildpackId;
use crate::image::layout::write_atomic;
use crate::launch::Process;
use crate::layer::LayerReport;
use crate::store::Store;

/// The per-destination record directory.
#[derive(Debug, Clone)]
pub(crate) struct BuildRecord {
    dir: PathBuf,
}

/// The last successful build of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Recorded {
    /// [`Inputs`] fingerprint.
    pub inputs: String,
    /// The run image, as the build resolved it (a store name for stack images).
    pub run_image: String,
    /// Its manifest digest (`None` for `scratch`, written as an empty string).
    #[serde(with = "crate::image::digest::empty_is_none")]
    pub run_image_digest: Option<Digest>,
    /// The image's manifest digest.
    pub manifest_digest: Digest,
    /// Its config digest.
    pub config_digest: Digest,
    /// Each buildpack of the group (written `id@version`).
    pub buildpacks: Vec<VersionedBuildpackId>,
    /// The processes.
    pub processes: Vec<Process>,
    /// The default process.
    pub default_process: Option<String>,
    /// The layers kiln wrote.
    pub layers: Vec<LayerReport>,
    /// For a file destination, the [`crate::fingerprint`] of the file as written.
    pub output_stamp: Option<String>,
}

/// A kept cache layer: its fingerprint and `diff_id` when the last build finished.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct KeptLayer {
    /// [`crate::fingerprint::tree`] of the directory.
    pub fingerprint: String,
    /// The layer's `diff_id` as cached.
    pub diff_id: Digest,
}

/// Cache layer directories a build claimed from the last one: `<escaped id>/<name>` →
/// what they were.
#[derive(Debug, Default)]
pub(crate) struct KeptLayers {
    /// Where the claimed directories are now.
    pub dir: PathBuf,
    /// What each one was, by `<escaped id>/<name>`.
    pub layers: BTreeMap<String, KeptLayer>,
}

impl KeptLayers {
    /// Moves the kept directory of `escaped`'s layer `name` to `dest` if it is still the
    /// layer `diff_id` (same fingerprint as recorded). Returns whether it did.
    pub(crate) fn take(&self, escaped: &str, name: &str, diff_id: &Digest, dest: &Path) -> bool {
        let key = format!("{escaped}/{name}");
        let Some(kept) = self.layers.get(&key) else {
            return false;
        };
        let source = self.dir.join(escaped).join(name);
        if kept.diff_id != *diff_id
            || crate::fingerprint::tree(&source).ok().as_ref() != Some(&kept.fingerprint)
        {
            return false;
        }
        if let Some(parent) = dest.parent()
            && fs::create_dir_all(parent).is_err()
        {
            return false;
        }
        let _ = fs::remove_dir_all(dest);
        fs::rename(&source, dest).is_ok()
    }
}

impl BuildRecord {
    /// The record of the image published to `destination` (its display form).
    pub(crate) fn for_destination(store: &Store, destination: &str) -> Self {
        Self {
            dir: store.state_for(destination).build_dir,
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last successful build, if recorded and readable.
    pub(crate) fn load(&self) -> Option<Recorded> {
        let bytes = crate::untrusted::read_file(
            &self.dir.join("record.json"),
            crate::untrusted::MAX_DOCUMENT,
            crate::untrusted::Links::Refuse,
        )
        .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a successful build (atomically).
    pub(crate) fn save(&self, recorded: &Recorded) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(recorded).map_err(io::Error::other)?;
        write_atomic(&self.dir.join("record.json"), &bytes).map_err(io::Error::other)
    }

    /// Forgets the last build's inputs (its kept layers stay), so the next build runs the
    /// buildpacks.
    pub(crate) fn invalidate(&self) {
        let _ = fs::remove_file(self.dir.join("record.json"));
    }

    /// Claims the kept layer directories by moving them to `into` (which must not exist).
    /// `None` if there are none, or another build claimed them first.
    pub(crate) fn claim_layers(&self, into: &Path) -> Option<KeptLayers> {
        let layers: BTreeMap<String, KeptLayer> = crate::untrusted::read_file(
            &self.dir.join("layers.json"),
            crate::untrusted::MAX_DOCUMENT,
            crate::untrusted::Links::Refuse,
        )
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
        fs::rename(self.dir.join("layers"), into).ok()?;
        Some(KeptLayers {
            dir: into.to_path_buf(),
            layers,
        })
    }

    /// Keeps the given cache layer directories of a finished build for the next one:
    /// `layers` maps `<escaped id>/<name>` to the directory and its `diff_id`. They are
    /// moved (not copied) under a staging name, fingerprinted, and swapped in.
    pub(crate) fn keep_layers(
        &self,
        layers: &BTreeMap<String, (PathBuf, Digest)>,
    ) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let staging = tempfile::Builder::new()
            .prefix(".layers-")
            .tempdir_in(&self.dir)?;
        let mut kept = BTreeMap::new();
        for (key, (dir, diff_id)) in layers {
            let dest = staging.path().join(key);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(dir, &dest)?;
            kept.insert(
                key.clone(),
                KeptLayer {
                    fingerprint: crate::fingerprint::tree(&dest)?,
                    diff_id: diff_id.clone(),
                },
            );
        }
        // Whatever is there (an older build's, or a concurrent one's) gives way.
        let current = self.dir.join("layers");
        if current.exists() {
            let old = self.dir.join(format!(".old-{}", std::process::id()));
            fs::rename(&current, &old)?;
            remove_tree(&old);
        }
        let bytes = serde_json::to_vec_pretty(&kept).map_err(io::Error::other)?;
        write_atomic(&self.dir.join("layers.json"), &bytes).map_err(io::Error::other)?;
        fs::rename(staging.keep(), current)?;
        Ok(())
    }
}

/// Removes a tree, making read-only directories writable first (Go's module cache).
pub(crate) fn remove_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if fs::remove_dir_all(dir).is_ok() {
        return;
    }
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755));
        }
    }
    let _ = fs::remove_dir_all(dir);
}

/// The fingerprint of a build's inputs: everything that decides what the buildpacks do.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    fingerprint: crate::fingerprint::Fingerprinter,
}

impl Inputs {
    /// No inputs yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a named value.
    pub(crate) fn add(&mut self, label: &str, value: &str) {
        self.fingerprint.add_str(label, value);
    }

    /// Adds the stat fingerprint of a tree (a buildpack directory).
    pub(crate) fn add_tree(&mut self, label: &str, dir: &Path) -> io::Result<()> {
        self.fingerprint.add_str(label, "");
        self.fingerprint.add_tree(Path::new(""), dir)
    }

    /// Adds the metadata of one file (an order file, an executable, an archive).
    pub(crate) fn add_file(&mut self, label: &str, path: &Path) -> io::Result<()> {
        let meta = fs::metadata(path)?;
        self.fingerprint.add_str(label, "");
        self.fingerprint.add_entry(Path::new(""), path, &meta)
    }

    /// The fingerprint.
    pub(crate) fn finish(self) -> String {
        self.fingerprint.finish()
    }
}

/// The stamp of a file destination: its metadata fingerprint, or `None` if it is missing.
pub(crate) fn file_stamp(path: &Path) -> Option<String> {
    let mut inputs = Inputs::new();
    inputs.add_file("output", path).ok()?;
    Some(inputs.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_json_and_old_ones_are_read_back() {
        // A record as the previous version wrote it (digests as strings, an empty run image
        // digest for scratch) reads back and is written again byte for byte.
        let old = r#"{
  "inputs": "f",
  "run_image": "scratch",
  "run_image_digest": "",
  "manifest_digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
  "config_digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
  "buildpacks": [
    "kiln/shell@0.1.0"
  ],
  "processes": [],
  "default_process": null,
  "layers": [
    {
      "name": "application",
      "diff_id": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
      "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
      "size": 5,
      "reused": false
    }
  ],
  "output_stamp": null
}"#;
        let recorded: Recorded = serde_json::from_str(old).unwrap();
        assert_eq!(recorded.run_image_digest, None);
        assert_eq!(serde_json::to_string_pretty(&recorded).unwrap(), old);
        let with_run_image = old.replace(
            r#""run_image_digest": """#,
            r#""run_image_digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555""#,
        );
        let recorded: Recorded = serde_json::from_str(&with_run_image).unwrap();
        assert!(recorded.run_image_digest.is_some());
        assert_eq!(
            serde_json::to_string_pretty(&recorded).unwrap(),
            with_run_image
        );

        // An unparsable digest makes the record unusable (a full build), not an error.
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let record = BuildRecord::for_destination(&store, "app:1");
        fs::create_dir_all(record.dir()).unwrap();
        fs::write(
            record.dir().join("record.json"),
            old.replace("sha256:1111", "sha256:zz11"),
        )
        .unwrap();
        assert!(record.load().is_none());
        fs::write(record.dir().join("record.json"), old).unwrap();
        assert!(record.load().is_some());
    }

    #[test]
    fn kept_layers_move_between_builds_and_stale_ones_are_refused() {
        let a = crate::image::digest::sha256_digest(b"a");
        let other = crate::image::digest::sha256_digest(b"other");
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let record = BuildRecord::for_destination(&store, "app:1");
        let work = tempfile::tempdir().unwrap();
        assert!(record.claim_layers(&work.path().join("kept0")).is_none());

        let deps = work.path().join("build1/kiln_x/deps");
        fs::create_dir_all(&deps).unwrap();
        fs::write(deps.join("lib"), "v1").unwrap();
        let mut layers = BTreeMap::new();
        layers.insert("kiln_x/deps".to_string(), (deps.clone(), a.clone()));
        record.keep_layers(&layers).unwrap();
        assert!(!deps.exists(), "moved, not copied");

        // The next build claims them; a second concurrent claim finds nothing.
        let kept = record.claim_layers(&work.path().join("kept1")).unwrap();
        assert!(record.claim_layers(&work.path().join("kept2")).is_none());
        let dest = work.path().join("build2/kiln_x/deps");
        assert!(!kept.take("kiln_x", "deps", &other, &dest));
        assert!(!kept.take("kiln_x", "missing", &a, &dest));
        assert!(kept.take("kiln_x", "deps", &a, &dest));
        assert_eq!(fs::read_to_string(dest.join("lib")).unwrap(), "v1");

        // Kept again, then changed behind kiln's back: refused.
        let mut layers = BTreeMap::new();
        layers.insert("kiln_x/deps".to_string(), (dest, a.clone()));
        record.keep_layers(&layers).unwrap();
        let kept = record.claim_layers(&work.path().join("kept3")).unwrap();
        fs::write(kept.dir.join("kiln_x/deps/lib"), "v2").unwrap();
        assert!(!kept.take("kiln_x", "deps", &a, &work.path().join("build3/d")));
    }
}
