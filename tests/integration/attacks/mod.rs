//! Attacks: hostile cache images, previous images, run images, archives, registries, source
//! trees and buildpacks (issue 12). Each test builds the hostile input, runs kiln against it
//! and asserts that nothing outside kiln's directories changed (a canary tree checked after
//! the attack), that no secret appears in any output, that kiln did not panic, and that it
//! stopped with a clear error and the documented exit code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod caches;
mod images;
mod sandbox;
mod sources;

/// A tree outside kiln's directories that an attack tries to change: files, a directory
/// and a link, fingerprinted before and compared after.
pub struct Canary {
    root: PathBuf,
    before: Vec<(PathBuf, Vec<u8>)>,
}

impl Canary {
    /// Plants the tree under `dir`.
    pub fn plant(dir: &Path) -> Self {
        let root = dir.join("canary");
        fs::create_dir_all(root.join("some/dir")).unwrap();
        fs::write(root.join("some/dir/keep"), "keep me").unwrap();
        fs::write(root.join("file"), "canary").unwrap();
        let before = Self::snapshot(&root);
        Self { root, before }
    }

    /// The tree's root (attacks aim here).
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.unwrap();
            let data = if entry.file_type().is_file() {
                fs::read(entry.path()).unwrap()
            } else {
                format!("{:?}", entry.file_type()).into_bytes()
            };
            out.push((entry.path().to_path_buf(), data));
        }
        out
    }

    /// Panics if anything under the tree changed, or appeared beside it under `dir`'s parent
    /// named like an attack's target.
    pub fn assert_intact(&self) {
        assert!(
            self.root.exists(),
            "the canary tree {} was removed",
            self.root.display()
        );
        let after = Self::snapshot(&self.root);
        assert_eq!(
            self.before,
            after,
            "the canary tree {} changed",
            self.root.display()
        );
    }
}

/// Asserts the attack was stopped without a panic and with none of `secrets` in the output.
pub fn assert_clean_output(output: &Output, secrets: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && output.status.code() != Some(101),
        "kiln panicked:\n{stderr}"
    );
    for secret in secrets {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "the secret {secret:?} appears in kiln's output:\n{stdout}\n{stderr}"
        );
    }
}

/// Runs `command`, killing it (and failing the test) if it runs longer than `limit`.
pub fn run_with_limit(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "kiln did not finish within {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
