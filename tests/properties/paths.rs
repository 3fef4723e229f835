//! `kiln::internals::untrusted::{component, relative, Beneath}`: no name from outside kiln becomes a
//! path outside the directory it is meant for.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use kiln::internals::untrusted::{Beneath, ParentLinks, component, relative};
use proptest::prelude::*;

use crate::support::{Canary, config, corpus};

/// One path component as an attacker would write it.
pub fn hostile_component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-c]{1,2}".prop_map(String::into_bytes),
        2 => Just(b"..".to_vec()),
        1 => Just(b".".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"canary".to_vec()),
        1 => Just(b"a\0b".to_vec()),
        1 => Just(vec![0xff, 0xfe, b'x']),
        1 => (250usize..260).prop_map(|n| vec![b'l'; n]),
        1 => proptest::collection::vec(any::<u8>(), 1..6),
    ]
}

/// A path made of hostile components: absolute or not, with `.`/`..`, doubled and trailing
/// slashes, NUL, non-UTF-8 bytes and over-long names.
pub fn hostile_path() -> impl Strategy<Value = PathBuf> {
    (
        prop_oneof![Just(""), Just("/"), Just("./"), Just("//"), Just("../")],
        proptest::collection::vec(hostile_component(), 1..5),
        prop_oneof![Just(""), Just("/"), Just("/.")],
    )
        .prop_map(|(prefix, parts, suffix)| {
            let mut bytes = prefix.as_bytes().to_vec();
            bytes.extend(parts.join(&b'/'));
            bytes.extend(suffix.as_bytes());
            PathBuf::from(OsString::from_vec(bytes))
        })
}

/// A symbolic link target aimed at the canary beside the root, at the root's parents, or
/// at names inside the root.
pub fn hostile_target(canary: &Path) -> BoxedStrategy<PathBuf> {
    let canary = canary.to_path_buf();
    prop_oneof![
        Just(canary.clone()),
        Just(canary.join("file")),
        Just(canary.join("dir")),
        Just(PathBuf::from("../canary")),
        Just(PathBuf::from("../../canary/dir")),
        Just(PathBuf::from("/")),
        Just(PathBuf::from("..")),
        Just(PathBuf::from(".")),
        hostile_path(),
    ]
    .boxed()
}

/// One operation on a [`Beneath`].
#[derive(Debug, Clone)]
pub enum Op {
    Dir(PathBuf),
    File(PathBuf, Vec<u8>),
    Symlink(PathBuf, PathBuf),
    HardLink(PathBuf, PathBuf),
    Mode(PathBuf, u32),
}

fn ops(canary: &Path) -> impl Strategy<Value = Vec<Op>> {
    let target = hostile_target(canary);
    let op = prop_oneof![
        hostile_path().prop_map(Op::Dir),
        (hostile_path(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(p, c)| Op::File(p, c)),
        (hostile_path(), target).prop_map(|(p, t)| Op::Symlink(p, t)),
        (hostile_path(), hostile_path()).prop_map(|(a, b)| Op::HardLink(a, b)),
        (hostile_path(), any::<u32>()).prop_map(|(p, m)| Op::Mode(p, m)),
    ];
    proptest::collection::vec(op, 1..12)
}

/// Runs `ops`, ignoring their errors (an extractor that skips bad entries must be as safe
/// as one that stops).
pub fn apply(dir: &mut Beneath, ops: &[Op]) {
    for op in ops {
        let _ = match op {
            Op::Dir(p) => dir.create_dir(p, 0o755),
            Op::File(p, contents) => dir.write_file(p, 0o644, &mut &contents[..]).map(|_| ()),
            Op::Symlink(p, target) => dir.symlink(p, target),
            Op::HardLink(existing, p) => dir.hard_link(existing, p),
            Op::Mode(p, mode) => dir.set_mode(p, *mode),
        };
    }
}

fn is_single_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255
}

fn check_relative(path: &Path) -> Result<(), TestCaseError> {
    match relative(path, "archive path") {
        Ok(out) => {
            prop_assert!(!out.as_os_str().is_empty());
            prop_assert!(!out.as_os_str().as_bytes().contains(&0));
            for c in out.components() {
                let Component::Normal(part) = c else {
                    return Err(TestCaseError::fail(format!(
                        "{} became {} with {c:?}",
                        path.display(),
                        out.display()
                    )));
                };
                prop_assert!(part.len() <= 255);
            }
            // Nothing but `.` components was dropped.
            let kept: Vec<_> = path
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect();
            prop_assert_eq!(kept, out.components().collect::<Vec<_>>());
        }
        Err(e) => {
            let bytes = path.as_os_str().as_bytes();
            let refusable = bytes.is_empty()
                || bytes.contains(&0)
                || path.has_root()
                || path
                    .components()
                    .any(|c| c == Component::ParentDir || c.as_os_str().len() > 255)
                || path.components().all(|c| c == Component::CurDir);
            prop_assert!(refusable, "{path:?} refused for no reason: {e}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn component_accepts_exactly_single_names(name in prop_oneof![
        ".{0,8}",
        hostile_component().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        match component(&name, "layer name") {
            Ok(same) => {
                prop_assert!(is_single_name(&name), "{name:?} accepted");
                prop_assert_eq!(same, name.as_str());
                let parts: Vec<_> = Path::new(&name).components().collect();
                prop_assert_eq!(parts, vec![Component::Normal(name.as_ref())]);
            }
            Err(e) => {
                prop_assert!(!is_single_name(&name), "{name:?} refused: {e}");
                prop_assert_eq!(e.name, name);
            }
        }
    }

    #[test]
    fn relative_paths_hold_only_normal_components(path in hostile_path()) {
        check_relative(&path)?;
    }

    #[test]
    fn relative_arbitrary_bytes_hold_only_normal_components(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        check_relative(&PathBuf::from(OsString::from_vec(bytes)))?;
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn beneath_refusing_links_never_writes_outside_its_root(
        ops in ops(Path::new("/canary-placeholder")),
    ) {
        run_ops(ParentLinks::Refuse, &ops);
    }

    #[test]
    fn beneath_resolving_links_in_root_never_writes_outside_its_root(
        ops in ops(Path::new("/canary-placeholder")),
    ) {
        run_ops(ParentLinks::InRoot, &ops);
    }
}

/// Runs `ops` beneath a fresh root with the absolute placeholder target pointed at the real
/// canary, then checks the canary.
fn run_ops(links: ParentLinks, ops: &[Op]) {
    let canary = Canary::new();
    let ops = with_canary(ops, &canary.canary());
    let mut dir = Beneath::open(&canary.root(), links).unwrap();
    apply(&mut dir, &ops);
    canary.assert_untouched(&(links, &ops));
}

/// Replaces the `/canary-placeholder` prefix of link targets with the real canary path
/// (proptest strategies are built before the temporary directory exists).
pub fn with_canary(ops: &[Op], canary: &Path) -> Vec<Op> {
    let fix = |t: &Path| match t.strip_prefix("/canary-placeholder") {
        Ok(rest) if rest.as_os_str().is_empty() => canary.to_path_buf(),
        Ok(rest) => canary.join(rest),
        Err(_) => t.to_path_buf(),
    };
    ops.iter()
        .map(|op| match op {
            Op::Symlink(p, t) => Op::Symlink(p.clone(), fix(t)),
            other => other.clone(),
        })
        .collect()
}

/// Each corpus line is one operation: `dir PATH`, `file PATH`, `symlink PATH TARGET`,
/// `link EXISTING PATH` or `mode PATH OCTAL`; `$CANARY` in a target is the canary directory.
fn parse_ops(text: &str) -> Vec<Op> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            let p = |i: usize| PathBuf::from(words[i].replace("\\0", "\0"));
            match words[0] {
                "dir" => Op::Dir(p(1)),
                "file" => Op::File(p(1), b"x".to_vec()),
                "symlink" => Op::Symlink(
                    p(1),
                    PathBuf::from(words[2].replace("$CANARY", "/canary-placeholder")),
                ),
                "link" => Op::HardLink(p(1), p(2)),
                "mode" => Op::Mode(p(1), u32::from_str_radix(words[2], 8).unwrap()),
                other => panic!("unknown corpus operation {other:?} in {line:?}"),
            }
        })
        .collect()
}

#[test]
fn corpus_paths_never_escape_the_root() {
    for (name, bytes) in corpus("paths") {
        let text = String::from_utf8(bytes).unwrap();
        let ops = parse_ops(&text);
        for links in [ParentLinks::Refuse, ParentLinks::InRoot] {
            run_ops(links, &ops);
        }
        for op in &ops {
            let (Op::Dir(p) | Op::File(p, _) | Op::Symlink(p, _) | Op::Mode(p, _)) = op else {
                continue;
            };
            check_relative(p).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
