//! What every property module shares: the case count, the corpus and the canary tree.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, FileFailurePersistence};

/// How many cases each property tries: `KILN_FUZZ_CASES`, default 256.
pub fn cases() -> u32 {
    std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(256)
}

/// The proptest configuration for a property whose case costs about `weight` cheap cases
/// (file system work, a process): `cases() / weight`, at least 8.
pub fn config(weight: u32) -> Config {
    Config {
        cases: (cases() / weight.max(1)).max(8),
        // Shrinking a file-system case re-runs it; keep it bounded.
        max_shrink_iters: 2048,
        // tests/properties/proptest-regressions/<module>.txt, replayed before new cases.
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "properties/proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// The committed samples of `tests/corpus/<target>/`, sorted by name: (file name, bytes).
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// The corpus samples as text (lossily: the parsers under test take `&str`).
pub fn corpus_text(target: &str) -> Vec<(String, String)> {
    corpus(target)
        .into_iter()
        .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()))
        .collect()
}

/// A work directory holding `root/` (where the code under test may write) beside
/// `canary/` (where nothing may change), whose state can be compared after an attack.
pub struct Canary {
    /// Holds both.
    pub work: tempfile::TempDir,
    before: BTreeMap<PathBuf, String>,
}

impl Canary {
    pub fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let canary = work.path().join("canary");
        fs::create_dir_all(canary.join("dir")).unwrap();
        fs::write(canary.join("file"), b"canary").unwrap();
        fs::write(canary.join("dir/secret"), b"do not touch").unwrap();
        fs::create_dir(work.path().join("root")).unwrap();
        let before = snapshot(work.path());
        Self { work, before }
    }

    /// The directory the code under test writes beneath.
    pub fn root(&self) -> PathBuf {
        self.work.path().join("root")
    }

    /// The directory nothing may touch.
    pub fn canary(&self) -> PathBuf {
        self.work.path().join("canary")
    }

    /// Panics if anything outside `root/` changed: the canary's entries, contents, modes
    /// and link counts (a hard link made to a canary file counts), or a new entry beside
    /// `root/`.
    pub fn assert_untouched(&self, what: &dyn std::fmt::Debug) {
        let after = snapshot(self.work.path());
        assert_eq!(
            self.before, after,
            "something outside root/ changed after {what:?}"
        );
    }
}

/// Every entry of `work` except what is inside `root/`: path → type, mode, links, contents.
fn snapshot(work: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(work).follow_links(false) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(work).unwrap().to_path_buf();
        if rel.starts_with("root") && rel != Path::new("root") {
            continue;
        }
        let meta = entry.path().symlink_metadata().unwrap();
        let contents = if meta.is_file() {
            String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).into_owned()
        } else if meta.is_symlink() {
            fs::read_link(entry.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        let state = if rel == Path::new("root") {
            // root/ itself may gain entries; only its type matters.
            format!("{:?}", meta.file_type())
        } else {
            format!(
                "{:?} {:o} {} {contents}",
                meta.file_type(),
                meta.mode(),
                meta.nlink()
            )
        };
        out.insert(rel, state);
    }
    out
}
