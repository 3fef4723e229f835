//! Debian control data (`kiln::internals::stack::control`) and the `Packages` and `Release` files built
//! on it (`PackageIndex::add_packages_file`, `Release::parse`): never a panic, stanzas
//! survive a write and re-read, and versions are totally ordered (a sort of an index's
//! versions would panic otherwise).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use kiln::internals::stack::control::{Stanza, Version, parse_relations, parse_stanzas};
use kiln::internals::stack::release::Release;
use kiln::internals::stack::resolve::PackageIndex;
use proptest::prelude::*;

use crate::support::{config, corpus_text};

/// deb822-ish text: fields, continuation lines (` .`, tabs, odd indentation), comments,
/// blank and whitespace-only separators, and stray bytes.
fn control_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        4 => "[A-Za-z-]{0,6}: ?[ -~]{0,12}",
        3 => "[ \t]{1,2}[ -~]{0,10}",
        1 => Just(" .".to_string()),
        1 => Just("#comment".to_string()),
        1 => Just(String::new()),
        1 => Just(" \t ".to_string()),
        1 => Just("\u{a0}\u{3000}".to_string()),
        1 => Just("Field:\r".to_string()),
        1 => ".{0,12}",
    ];
    proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

/// Version strings: epochs, revisions, tildes, letters, punctuation and garbage.
fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "([0-9]{1,2}:)?[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,4})?",
        1 => "[0-9~a-z.:+-]{0,8}",
        1 => ".{0,8}",
    ]
}

/// Relation fields: alternatives, operators, arch restrictions, build profiles, qualifiers.
fn relations() -> impl Strategy<Value = String> {
    let rel = prop_oneof![
        3 => "[a-z0-9.+-]{1,6}(:any)?( \\((<<|<=|=|>=|>>|<|>) ?[0-9][0-9a-z.~-]{0,4}\\))?( \\[!?(amd64|i386)\\])?( <!nocheck>)?",
        1 => "[a-z()<>=\\[\\]! |:,]{0,12}",
        1 => ".{0,12}",
    ];
    proptest::collection::vec(
        proptest::collection::vec(rel, 1..3).prop_map(|alts| alts.join(" | ")),
        0..4,
    )
    .prop_map(|clauses| clauses.join(", "))
}

fn check_stanzas(text: &str) -> Result<(), TestCaseError> {
    let Ok(stanzas) = parse_stanzas(text) else {
        return Ok(());
    };
    // Written back and read again, the stanzas are the same.
    let written: Vec<String> = stanzas.iter().map(Stanza::to_deb822).collect();
    let again = parse_stanzas(&written.join("\n"));
    prop_assert_eq!(
        again.as_ref(),
        Ok(&stanzas),
        "{:?} written as {:?}",
        text,
        written
    );
    Ok(())
}

fn check_index(text: &str) {
    let mut index = PackageIndex::default();
    let _ = index.add_packages_file(text, "amd64", 0, "Packages");
    let _ = Release::parse(text, "Release");
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn parse_stanzas_written_back_reads_the_same(text in control_text()) {
        check_stanzas(&text)?;
    }

    #[test]
    fn parse_stanzas_arbitrary_text_never_panics(text in ".{0,200}") {
        check_stanzas(&text)?;
    }

    #[test]
    fn version_order_is_total(a in version(), b in version(), c in version()) {
        let parsed: Vec<Version> = [&a, &b, &c].iter().filter_map(|v| Version::parse(v).ok()).collect();
        for x in &parsed {
            prop_assert_eq!(x.cmp(x), Ordering::Equal);
            let text = x.to_string();
            prop_assert_eq!(text.as_str(), text.trim());
            for y in &parsed {
                prop_assert_eq!(x.cmp(y), y.cmp(x).reverse(), "{} vs {}", x, y);
                for z in &parsed {
                    if x <= y && y <= z {
                        prop_assert!(x <= z, "{} <= {} <= {} but not {} <= {}", x, y, z, x, z);
                    }
                }
            }
        }
    }

    #[test]
    fn version_parse_round_trips_through_display(v in version()) {
        if let Ok(parsed) = Version::parse(&v) {
            let again = Version::parse(&parsed.to_string()).unwrap();
            prop_assert_eq!(parsed.cmp(&again), Ordering::Equal);
            prop_assert_eq!(parsed, again);
        }
    }

    #[test]
    fn parse_relations_never_panics(field in relations(), arch in prop_oneof![Just("amd64"), Just("i386"), Just("")]) {
        if let Ok(clauses) = parse_relations(&field, arch) {
            for clause in clauses {
                prop_assert!(!clause.is_empty());
                for relation in clause {
                    prop_assert!(!relation.name.is_empty());
                    // A relation's display parses back to the same relation.
                    let again = parse_relations(&relation.to_string(), arch).unwrap();
                    prop_assert_eq!(again, vec![vec![relation]]);
                }
            }
        }
    }

    #[test]
    fn packages_file_never_panics(
        stanzas in proptest::collection::vec(
            ("[a-z]{1,3}", version(), relations(), relations(), "[0-9]{0,3}|-1|x"),
            0..6,
        ),
        noise in control_text(),
    ) {
        let mut text = String::new();
        for (name, version, depends, provides, size) in stanzas {
            write!(
    text,
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\nDepends: {depends}\nProvides: {provides}\nFilename: pool/{name}.deb\nSize: {size}\nSHA256: {}\n\n",
                "a".repeat(64)
            ).unwrap();
        }
        check_index(&text);
        text.push_str(&noise);
        check_index(&text);
    }
}

/// A `Packages` file of packages `p0`…`p3` (several versions each when `versions` > 1)
/// depending on and providing each other and the virtual names `v0`, `v1`.
fn package_index(versions: usize) -> impl Strategy<Value = String> {
    let name = || proptest::sample::select(vec!["p0", "p1", "p2", "p3", "v0", "v1"]);
    let relation = (
        name(),
        prop_oneof![Just(""), Just(" (>= 2)"), Just(" (= 1)"), Just(" (<< 2)")],
    )
        .prop_map(|(n, c)| format!("{n}{c}"));
    let package = (
        proptest::sample::select(vec!["p0", "p1", "p2", "p3"]),
        1..=versions,
        proptest::collection::vec(relation.clone(), 0..3),
        proptest::collection::vec(name().prop_map(str::to_string), 0..2),
    );
    proptest::collection::vec(package, 1..8).prop_map(|packages| {
        let mut seen = BTreeSet::new();
        let mut text = String::new();
        for (name, version, depends, provides) in packages {
            if !seen.insert((name, version)) {
                continue;
            }
            write!(
    text,
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\nDepends: {}\nProvides: {}\nFilename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {}\n\n",
                depends.join(", "),
                provides.join(", "),
                "a".repeat(64)
            ).unwrap();
        }
        text
    })
}

/// Resolves `wanted` in the index of `text` on a thread, failing if it takes more than
/// ten seconds (a resolver loop; the thread is left spinning).
fn resolve_in_time(text: &str, wanted: &[&str]) -> Result<(), TestCaseError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let text = text.to_string();
    let names: Vec<String> = wanted.iter().map(|w| (*w).to_string()).collect();
    std::thread::spawn(move || {
        let mut index = PackageIndex::default();
        if index
            .add_packages_file(&text, "amd64", 0, "Packages")
            .is_ok()
        {
            let _ = index.resolve(&names, &BTreeMap::new(), &BTreeSet::new());
        }
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!(
            "resolving {wanted:?} did not finish in 10 s"
        ))),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn resolve_index_with_one_version_each_finishes(text in package_index(1)) {
        resolve_in_time(&text, &["p0", "p1", "v0"])?;
    }

    #[test]
    fn resolve_index_with_several_versions_finishes(text in package_index(3)) {
        resolve_in_time(&text, &["p0", "p1", "v0"])?;
    }
}

/// `tests/corpus/control/provider-loop.packages`: `p` 2 depends on `v`, which only `p` 1
/// provides; resolving `p` used to loop forever (fixed in `src/stack/resolve.rs`).
#[test]
fn resolve_corpus_provider_loop_finishes() {
    let (_, text) = corpus_text("control")
        .into_iter()
        .find(|(name, _)| name == "provider-loop.packages")
        .unwrap();
    resolve_in_time(&text, &["p"]).unwrap();
}

/// The committed control, `Packages` and `Release` samples (`tests/corpus/control/`).
#[test]
fn corpus_control_files_never_panic() {
    for (name, text) in corpus_text("control") {
        check_stanzas(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_index(&text);
        for line in text.lines() {
            let _ = Version::parse(line);
            let _ = parse_relations(line, "amd64");
            if let Some((_, value)) = line.split_once(':') {
                let _ = Version::parse(value);
                let _ = parse_relations(value, "amd64");
            }
        }
    }
}
