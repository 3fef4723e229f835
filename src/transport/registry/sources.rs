//! Where blobs are known to live in registries: `digest → ["host/repository", …]`, recorded
//! when kiln pulls or pushes them, so a push to another repository of the same registry can
//! mount a blob instead of uploading it. A small JSON file replaced atomically; when two kiln
//! processes race, one's additions may be lost, which only costs an upload later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The recorded locations.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Sources {
    #[serde(flatten)]
    blobs: BTreeMap<String, BTreeSet<String>>,
}

/// At most this many blobs are remembered (the oldest entries by digest order are dropped
/// first; losing one only costs an upload).
const MAX_BLOBS: usize = 20_000;

impl Sources {
    /// Reads `path`; missing or unreadable means nothing is known.
    pub(crate) fn load(path: Option<&Path>) -> Self {
        path.and_then(|p| {
            crate::untrusted::read_file(
                p,
                crate::untrusted::MAX_DOCUMENT,
                crate::untrusted::Links::Refuse,
            )
            .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
    }

    /// Notes that `repository` (`host/repo`) holds `digest`.
    pub(crate) fn record(&mut self, digest: &str, repository: &str) {
        self.blobs
            .entry(digest.to_string())
            .or_default()
            .insert(repository.to_string());
    }

    /// Other repositories of `host` known to hold `digest`.
    pub(crate) fn candidates(&self, digest: &str, host: &str, except: &str) -> Vec<String> {
        let prefix = format!("{host}/");
        self.blobs
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|r| r.starts_with(&prefix) && r.as_str() != except)
            .map(|r| r[prefix.len()..].to_string())
            .collect()
    }

    /// Writes the file (best effort: a failure only loses future mounts).
    pub(crate) fn save(&mut self, path: Option<&Path>) {
        let Some(path) = path else {
            return;
        };
        while self.blobs.len() > MAX_BLOBS {
            self.blobs.pop_first();
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Ok(json) = serde_json::to_vec(self) {
            let _ = crate::image::layout::write_atomic(path, &json);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_other_repositories_of_the_same_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.json");
        let mut s = Sources::load(Some(&file));
        s.record("sha256:a", "127.0.0.1:5000/base");
        s.record("sha256:a", "127.0.0.1:5000/app");
        s.record("sha256:a", "ghcr.io/x/y");
        s.save(Some(&file));
        let s = Sources::load(Some(&file));
        assert_eq!(
            s.candidates("sha256:a", "127.0.0.1:5000", "127.0.0.1:5000/app"),
            ["base"]
        );
        assert!(s.candidates("sha256:b", "127.0.0.1:5000", "x").is_empty());
    }
}
