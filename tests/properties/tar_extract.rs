//! Random tar archives (links, then files through them, hard links, directories, long and
//! hostile names) extracted into a [`Beneath`] never write outside its root.
//!
//! kiln's extractors (the layer cache, Debian packages) map tar entries onto [`Beneath`]
//! calls; [`extract`] does the same with every entry's raw bytes and no checks of its own,
//! so the properties hold for the directory alone. `deb.rs` runs kiln's own Debian unpacker.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use kiln::internals::untrusted::{Beneath, ParentLinks};
use proptest::prelude::*;

use crate::paths::hostile_path;
use crate::support::{Canary, config, corpus};

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Fifo,
}

/// A tar entry with raw name and link bytes (no validation: that is the point).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl Entry {
    pub fn new(kind: Kind, path: &[u8], link: &[u8]) -> Self {
        Self {
            path: path.to_vec(),
            kind,
            link: link.to_vec(),
            data: if kind == Kind::File {
                b"pwned".to_vec()
            } else {
                Vec::new()
            },
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        }
    }
}

/// A GNU tar of `entries`, names and link targets written byte for byte (GNU long-name
/// records for those over 100 bytes).
pub fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if e.path.len() > 100 {
            long_record(&mut out, tar::EntryType::GNULongName, &e.path);
        }
        if e.link.len() > 100 {
            long_record(&mut out, tar::EntryType::GNULongLink, &e.link);
        }
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        let n = e.path.len().min(100);
        old.name[..n].copy_from_slice(&e.path[..n]);
        let n = e.link.len().min(100);
        old.linkname[..n].copy_from_slice(&e.link[..n]);
        h.set_entry_type(match e.kind {
            Kind::File => tar::EntryType::Regular,
            Kind::Dir => tar::EntryType::Directory,
            Kind::Symlink => tar::EntryType::Symlink,
            Kind::HardLink => tar::EntryType::Link,
            Kind::Fifo => tar::EntryType::Fifo,
        });
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        padded(&mut out, &e.data);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn long_record(out: &mut Vec<u8>, kind: tar::EntryType, name: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(0);
    let mut data = name.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    padded(out, &data);
}

fn padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// Extracts `archive` into `dir` the way kiln's extractors do, with no checks but
/// [`Beneath`]'s own; entries it refuses are skipped. Returns how many were written.
pub fn extract(dir: &mut Beneath, archive: impl Read) -> usize {
    let mut archive = tar::Archive::new(archive);
    let Ok(entries) = archive.entries() else {
        return 0;
    };
    let mut written = 0;
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        let path = PathBuf::from(OsString::from_vec(entry.path_bytes().into_owned()));
        let link = entry
            .link_name_bytes()
            .map(|l| PathBuf::from(OsString::from_vec(l.into_owned())));
        let mode = entry.header().mode().unwrap_or(0o644);
        let result = match (entry.header().entry_type(), link) {
            (tar::EntryType::Directory, _) => dir.create_dir(&path, mode),
            (tar::EntryType::Regular | tar::EntryType::Continuous, _) => {
                dir.write_file(&path, mode, &mut entry).map(|_| ())
            }
            (tar::EntryType::Symlink, Some(target)) => dir.symlink(&path, &target),
            (tar::EntryType::Link, Some(existing)) => dir.hard_link(&existing, &path),
            _ => continue,
        };
        written += usize::from(result.is_ok());
    }
    written
}

/// Names likely to collide, so later entries meet what earlier ones made.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop_oneof![Just("a"), Just("b"), Just("link"), Just("a/b"), Just("link/x"),
            Just("link/link/x"), Just("./a"), Just("a/../link/y")]
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => hostile_path().prop_map(|p| p.into_os_string().into_vec()),
        1 => (101usize..300).prop_map(|n| {
            let mut v = b"link/".to_vec();
            v.resize(n, b'z');
            v
        }),
    ]
}

/// Link targets: the canary (absolute and relative), the root's parents, names inside.
fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"/canary-placeholder".to_vec()),
        Just(b"/canary-placeholder/dir".to_vec()),
        Just(b"/canary-placeholder/file".to_vec()),
        Just(b"../canary".to_vec()),
        Just(b"../canary/file".to_vec()),
        Just(b"../../../../../../..".to_vec()),
        Just(b"/".to_vec()),
        Just(b"/etc".to_vec()),
        name(),
    ]
}

fn entry() -> impl Strategy<Value = Vec<Entry>> {
    prop_oneof![
        3 => (name(), prop_oneof![Just(Kind::File), Just(Kind::Dir), Just(Kind::Fifo)])
            .prop_map(|(p, k)| vec![Entry::new(k, &p, b"")]),
        3 => (name(), target()).prop_map(|(p, t)| vec![Entry::new(Kind::Symlink, &p, &t)]),
        2 => (name(), target()).prop_map(|(p, t)| vec![Entry::new(Kind::HardLink, &p, &t)]),
        // The S2 pattern: a link, then a file (or directory, or link) through it.
        3 => (name(), target(), name(), prop_oneof![Just(Kind::File), Just(Kind::Dir),
                Just(Kind::HardLink), Just(Kind::Symlink)])
            .prop_map(|(link, t, rest, k)| {
                let mut through = link.clone();
                through.push(b'/');
                through.extend(rest);
                vec![
                    Entry::new(Kind::Symlink, &link, &t),
                    Entry::new(k, &through, b"/canary-placeholder/file"),
                ]
            }),
    ]
}

/// A random archive as entries.
pub fn archive() -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec(entry(), 1..8).prop_map(|v| v.into_iter().flatten().collect())
}

/// Points the `/canary-placeholder` link targets (and names) at the real canary.
pub fn with_canary(entries: &[Entry], canary: &Path) -> Vec<Entry> {
    let real = canary.as_os_str().as_encoded_bytes();
    let fix = |bytes: &[u8]| -> Vec<u8> {
        match bytes.strip_prefix(b"/canary-placeholder".as_slice()) {
            Some(rest) => [real, rest].concat(),
            None => bytes.to_vec(),
        }
    };
    entries
        .iter()
        .map(|e| Entry {
            link: fix(&e.link),
            ..e.clone()
        })
        .collect()
}

fn run_archive(links: ParentLinks, archive: &[u8], what: &dyn std::fmt::Debug) {
    let canary = Canary::new();
    let mut dir = Beneath::open(&canary.root(), links).unwrap();
    extract(&mut dir, archive);
    canary.assert_untouched(&(links, what));
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn extract_random_archive_refusing_links_stays_beneath_root(entries in archive()) {
        let canary = Canary::new();
        let bytes = tar_bytes(&with_canary(&entries, &canary.canary()));
        let mut dir = Beneath::open(&canary.root(), ParentLinks::Refuse).unwrap();
        extract(&mut dir, &bytes[..]);
        canary.assert_untouched(&entries);
    }

    #[test]
    fn extract_random_archive_resolving_links_in_root_stays_beneath_root(entries in archive()) {
        let canary = Canary::new();
        let bytes = tar_bytes(&with_canary(&entries, &canary.canary()));
        let mut dir = Beneath::open(&canary.root(), ParentLinks::InRoot).unwrap();
        extract(&mut dir, &bytes[..]);
        canary.assert_untouched(&entries);
    }

    #[test]
    fn extract_mangled_archive_stays_beneath_root(
        entries in archive(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let canary = Canary::new();
        let mut bytes = tar_bytes(&with_canary(&entries, &canary.canary()));
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let mut dir = Beneath::open(&canary.root(), ParentLinks::InRoot).unwrap();
        extract(&mut dir, &bytes[..]);
        canary.assert_untouched(&entries);
    }
}

/// The entries of a committed archive as far as they parse, link targets and all.
fn entries_of(bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(bytes);
    let Ok(entries) = archive.entries() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Fifo => Kind::Fifo,
            _ => Kind::File,
        };
        let mut data = Vec::new();
        if entry.read_to_end(&mut data).is_err() {
            break;
        }
        out.push(Entry {
            path: entry.path_bytes().into_owned(),
            kind,
            link: entry
                .link_name_bytes()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default(),
            data,
            mode: entry.header().mode().unwrap_or(0o644),
        });
    }
    out
}

/// The committed archives (`tests/corpus/tar/*.tar`, made by `tests/corpus/make-corpus.py`)
/// extracted both ways: as they are, and rebuilt with their `/canary-placeholder` link
/// targets aimed at the real canary.
#[test]
fn corpus_archives_stay_beneath_root() {
    for (name, bytes) in corpus("tar") {
        for links in [ParentLinks::Refuse, ParentLinks::InRoot] {
            run_archive(links, &bytes, &name);
            let canary = Canary::new();
            let rebuilt = tar_bytes(&with_canary(&entries_of(&bytes), &canary.canary()));
            let mut dir = Beneath::open(&canary.root(), links).unwrap();
            extract(&mut dir, &rebuilt[..]);
            canary.assert_untouched(&(links, &name));
        }
    }
}

/// The S2 attack from issue 12, spelt out: a link to the canary, then a file through it.
#[test]
fn extract_link_then_file_through_it_writes_nothing_outside() {
    let canary = Canary::new();
    let entries = vec![
        Entry::new(Kind::Symlink, b"layers/link", b"/canary-placeholder"),
        Entry::new(Kind::File, b"layers/link/file", b""),
        Entry::new(Kind::Symlink, b"up", b"../canary"),
        Entry::new(Kind::File, b"up/dir/secret", b""),
        Entry::new(Kind::HardLink, b"hard", b"/canary-placeholder/file"),
        Entry::new(Kind::HardLink, b"hard2", b"up/file"),
    ];
    let bytes = tar_bytes(&with_canary(&entries, &canary.canary()));
    for links in [ParentLinks::Refuse, ParentLinks::InRoot] {
        let mut dir = Beneath::open(&canary.root(), links).unwrap();
        extract(&mut dir, &bytes[..]);
        canary.assert_untouched(&(links, &entries));
    }
    assert!(canary.root().join("layers").is_dir());
}

/// The check can fail: a write through a link with plain `std::fs` (what an extractor
/// without [`Beneath`] does) changes the canary, and the check sees it.
#[test]
fn canary_detects_a_write_through_a_link() {
    let canary = Canary::new();
    std::os::unix::fs::symlink(canary.canary(), canary.root().join("link")).unwrap();
    std::fs::write(canary.root().join("link/file"), "pwned").unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        canary.assert_untouched(&"a naive write");
    }));
    assert!(
        caught.is_err(),
        "the canary check missed a write outside root/"
    );
}
