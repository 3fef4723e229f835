//! Image references (`kiln::ImageReference` and `kiln::ImageName` `FromStr`, and
//! `kiln::TargetPlatform`): never a panic, and a parsed reference written out parses back to
//! itself.

use kiln::{ImageName, ImageReference, TargetPlatform};
use proptest::prelude::*;

use crate::support::{config, corpus_text};

/// References as people and attackers write them: transports, hosts with ports and IPv6
/// brackets, paths, tags, digests, and odd characters anywhere.
fn reference() -> impl Strategy<Value = String> {
    let transport = prop_oneof![
        Just(String::new()),
        Just("oci:".to_string()),
        Just("oci-archive:".to_string()),
        Just("docker-archive:".to_string()),
        Just("docker-daemon:".to_string()),
        Just("docker://".to_string()),
        Just("dir:".to_string()),
        Just("containers-storage:".to_string()),
    ];
    let host = prop_oneof![
        Just(String::new()),
        Just("localhost/".to_string()),
        Just("localhost:5000/".to_string()),
        Just("registry.example/".to_string()),
        Just("[::1]:5000/".to_string()),
        Just("oci:5000/".to_string()),
        Just("dir:1/".to_string()),
        Just("docker-daemon:1/".to_string()),
        Just("scratch/".to_string()),
        "[a-z0-9.:-]{1,6}/",
    ];
    let path = "[a-z0-9._/-]{1,12}".prop_map(String::from);
    let tag = prop_oneof![
        Just(String::new()),
        ":[A-Za-z0-9_.-]{0,8}",
        Just(":latest".to_string())
    ];
    let digest = prop_oneof![
        3 => Just(String::new()),
        1 => "@sha256:[0-9a-fA-F]{64}",
        1 => "@[a-z0-9:]{0,10}",
    ];
    prop_oneof![
        4 => (transport, host, path, tag, digest).prop_map(|(t, h, p, g, d)| format!("{t}{h}{p}{g}{d}")),
        1 => ".{0,24}",
        1 => "[a-z0-9:/@.\\[\\]_-]{0,24}",
    ]
}

fn check_round_trip(text: &str) -> Result<(), TestCaseError> {
    if let Ok(reference) = text.parse::<ImageReference>() {
        let written = reference.to_string();
        let again = written.parse::<ImageReference>();
        prop_assert_eq!(
            again.as_ref(),
            Ok(&reference),
            "{:?} was written as {:?}",
            text,
            written
        );
    }
    if let Ok(name) = text.parse::<ImageName>() {
        let written = name.to_string();
        let again = written.parse::<ImageName>();
        prop_assert_eq!(again.as_ref(), Ok(&name));
        prop_assert!(name.tag().is_some() || name.digest().is_some());
        if let Ok(hub) = ImageName::docker_hub(text) {
            prop_assert!(hub.registry().is_some(), "{:?} → {}", text, hub);
        }
    }
    if let Ok(platform) = text.parse::<TargetPlatform>() {
        let written = platform.to_string();
        let again = written.parse::<TargetPlatform>();
        prop_assert_eq!(again.as_ref(), Ok(&platform));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn reference_written_back_parses_the_same(text in reference()) {
        check_round_trip(&text)?;
    }

    #[test]
    fn platform_written_back_parses_the_same(text in "[a-z0-9]{0,6}(/[a-z0-9]{0,6}){0,3}") {
        check_round_trip(&text)?;
    }
}

/// The committed references (`tests/corpus/reference/`, one a line).
#[test]
fn corpus_references_round_trip() {
    for (name, text) in corpus_text("reference") {
        for line in text.lines() {
            check_round_trip(line).unwrap_or_else(|e| panic!("{name}: {line:?}: {e}"));
        }
    }
}
