//! The dependency rules of kiln's modules (issue 15), checked on the source itself:
//!
//! 1. no cycle between modules (each file is a module; `mod.rs` is its folder's);
//! 2. the phases (`lifecycle::{analyze, detect, restore, build, export}`) never import the
//!    CLI or the orchestrator (`lifecycle` itself and its helpers), only each other;
//! 3. image formats (`image`), the store and the transports (`transport`) never import the
//!    lifecycle or build state (`cache`);
//! 4. build state (`cache`) never imports the lifecycle's orchestrator or the CLI;
//! 5. the ground floor (`layer`, `reproducible`, `event`, `untrusted`, `fingerprint`,
//!    `buildenv`, `buildpack_id`, and the `image::digest` and `image::layout` primitives the
//!    layer writer writes with) imports nothing of kiln but itself.
//!
//! References are `crate::…`, `super::…` and `self::…` paths outside comments and outside
//! the `#[cfg(test)]` module at the end of a file (tests may use anything).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`a::b`) → source with comments and tests removed.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        let name = parts.join("::");
        // The binary (main, cli) is a crate of its own; lib.rs only declares modules.
        if name == "main" || name == "lib" || name.starts_with("cli") {
            continue;
        }
        let text = fs::read_to_string(path).unwrap();
        let code = text
            .split("\n#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.insert(name, code);
    }
    out
}

/// The modules `code` (of module `me`) refers to, resolved to the longest known module.
fn references(me: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let mut base: Vec<String> = match segments.first().copied() {
                Some("crate") => Vec::new(),
                Some("self") => me.split("::").map(str::to_string).collect(),
                Some("super") => {
                    let mut b: Vec<String> = me.split("::").map(str::to_string).collect();
                    while segments.first() == Some(&"super") {
                        b.pop();
                        segments.remove(0);
                    }
                    segments.insert(0, "super");
                    b
                }
                _ => continue,
            };
            segments.remove(0);
            let mut best = None;
            for segment in segments {
                base.push(segment.to_string());
                let candidate = base.join("::");
                if known.contains(&candidate) {
                    best = Some(candidate);
                }
            }
            // A reference to the parent's items (`super::Thing`) is a reference to it.
            let parent = me
                .rsplit_once("::")
                .map_or(String::new(), |(p, _)| p.to_string());
            let target = best.or_else(|| {
                (start == "super::" && known.contains(&parent)).then(|| parent.clone())
            });
            if let Some(target) = target
                && target != me
            {
                refs.insert(target);
            }
        }
    }
    refs
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, code)| (name.clone(), references(name, code, &known)))
        .collect()
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

#[test]
fn modules_form_no_cycle() {
    let graph = graph();
    // Tarjan's strongly connected components, iteratively simple: repeatedly remove
    // modules with no outgoing edge left; what remains is in (or depends on) a cycle.
    let mut remaining = graph.clone();
    loop {
        let leaves: Vec<String> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            remaining.remove(&leaf);
        }
    }
    // Report one cycle: walk from any remaining module until a module repeats.
    if let Some(start) = remaining.keys().next() {
        let mut path = vec![start.clone()];
        loop {
            let last = path.last().unwrap();
            let next = remaining[last]
                .iter()
                .find(|d| remaining.contains_key(*d))
                .unwrap()
                .clone();
            if let Some(at) = path.iter().position(|m| *m == next) {
                let cycle = path[at..].join(" -> ");
                panic!("module cycle: {cycle} -> {next}");
            }
            path.push(next);
        }
    }
}

fn assert_never(from: impl Fn(&str) -> bool, to: impl Fn(&str) -> bool, rule: &str) {
    let mut broken = Vec::new();
    for (module, deps) in graph() {
        if !from(&module) {
            continue;
        }
        for dep in deps.iter().filter(|d| to(d)) {
            broken.push(format!("{module} -> {dep}"));
        }
    }
    assert!(broken.is_empty(), "{rule}:\n  {}", broken.join("\n  "));
}

const PHASES: [&str; 5] = [
    "lifecycle::analyze",
    "lifecycle::detect",
    "lifecycle::restore",
    "lifecycle::build",
    "lifecycle::export",
];

fn is_phase(module: &str) -> bool {
    PHASES
        .iter()
        .any(|p| module == *p || module.starts_with(&format!("{p}::")))
}

#[test]
fn phases_never_import_the_cli_or_the_orchestrator() {
    assert_never(
        is_phase,
        |dep| top(dep) == "cli" || (top(dep) == "lifecycle" && !is_phase(dep)),
        "a phase imports the CLI or the orchestrator",
    );
}

#[test]
fn formats_store_and_transports_never_import_phases_or_state() {
    assert_never(
        |m| matches!(top(m), "image" | "store" | "transport"),
        |dep| matches!(top(dep), "lifecycle" | "cache"),
        "an image format, the store or a transport imports the lifecycle or build state",
    );
}

#[test]
fn build_state_never_imports_the_orchestrator() {
    assert_never(
        |m| top(m) == "cache",
        |dep| top(dep) == "cli" || (top(dep) == "lifecycle" && !is_phase(dep)),
        "build state imports the orchestrator",
    );
}

#[test]
fn the_ground_floor_imports_nothing_above_it() {
    // The layer writer hashes while it writes blobs into a layout, so the digest and layout
    // primitives of `image` are on the ground floor with it.
    // Buildpack ids are values events, labels and records name, so `buildpack_id` is
    // there too (re-exported from `buildpack`, which loads buildpacks).
    const GROUND: [&str; 9] = [
        "buildpack_id",
        "layer",
        "reproducible",
        "event",
        "untrusted",
        "fingerprint",
        "buildenv",
        "image::digest",
        "image::layout",
    ];
    let grounded = |m: &str| {
        GROUND
            .iter()
            .any(|g| m == *g || m.starts_with(&format!("{g}::")))
    };
    assert_never(
        grounded,
        |dep| !grounded(dep),
        "a ground-floor module imports something above it",
    );
}
