//! kiln's built-in Cloud Native Buildpacks: `kiln/python`, `kiln/nodejs`, `kiln/go`,
//! `kiln/rust`, `kiln/r`, `kiln/static` and `kiln/procfile`.
//!
//! Each lives in its own directory beside this file, with its real `buildpack.toml` and its
//! Rust code, and is written against [`libcnb`] like any Rust buildpack. They are compiled into
//! the one `kiln` binary: kiln writes each as an ordinary buildpack directory whose
//! `bin/detect` and `bin/build` are links to the `kiln` executable, and the binary, started
//! under one of those names with `CNB_BUILDPACK_DIR` set, runs the buildpack instead of the CLI
//! ([`run_if_invoked`]). So built-in buildpacks take exactly the path third-party buildpacks
//! take, and the same directory (with a copy of the binary, `kiln buildpack package`) runs
//! under other CNB platforms.
//!
//! The buildpacks build with the tools of the build host (design.md, decision 3) and take the
//! language runtime of the app's run image from kiln's stacks: each names the Debian packages
//! its launch needs in `[metadata.kiln] run-image-mixins`, and checks a requested runtime
//! version against what the stack's locks pin (`common/inventory.rs`).

mod common;
mod go;
mod nodejs;
mod procfile;
mod python;
mod r;
mod rust;
#[path = "static/mod.rs"]
mod staticsite;

use std::ffi::OsStr;
use std::path::Path;

pub use common::choose::{StackChoice, stack_for_app};

/// One built-in buildpack.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Its id (`kiln/python`).
    pub id: &'static str,
    /// Its version.
    pub version: &'static str,
    /// The text of its `buildpack.toml`.
    pub descriptor: &'static str,
    run: fn(),
}

/// Every built-in buildpack, by id.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        id: "kiln/go",
        version: VERSION,
        descriptor: include_str!("go/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&go::GoBuildpack),
    },
    Builtin {
        id: "kiln/nodejs",
        version: VERSION,
        descriptor: include_str!("nodejs/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&nodejs::NodejsBuildpack),
    },
    Builtin {
        id: "kiln/procfile",
        version: VERSION,
        descriptor: include_str!("procfile/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&procfile::ProcfileBuildpack),
    },
    Builtin {
        id: "kiln/python",
        version: VERSION,
        descriptor: include_str!("python/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&python::PythonBuildpack),
    },
    Builtin {
        id: "kiln/r",
        version: VERSION,
        descriptor: include_str!("r/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&r::RBuildpack),
    },
    Builtin {
        id: "kiln/rust",
        version: VERSION,
        descriptor: include_str!("rust/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&rust::RustBuildpack),
    },
    Builtin {
        id: "kiln/static",
        version: VERSION,
        descriptor: include_str!("static/buildpack.toml"),
        run: || libcnb::libcnb_runtime(&staticsite::StaticBuildpack),
    },
];

/// The version every built-in buildpack carries (the crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The order kiln uses when no buildpacks are given: the language buildpacks from the most
/// specific detection to the broadest, each with `kiln/procfile` as an optional member, then
/// `kiln/procfile` alone. Go and Rust come first because `go.mod` and `Cargo.toml` say exactly
/// what a project is; R before Python because R is detected only by R's own files
/// (`renv.lock`, an R package `DESCRIPTION`, `*.R` entry points) while an R project often
/// carries Python files such as a `requirements.txt` for reticulate, seldom the reverse; Python before Node.js because a Python app with a `package.json` for its
/// front-end tooling is commoner than the reverse; a static site last, since `public/` and
/// `index.html` also appear inside apps of every language.
pub const DEFAULT_ORDER: &[&str] = &[
    "kiln/go",
    "kiln/rust",
    "kiln/r",
    "kiln/python",
    "kiln/nodejs",
    "kiln/static",
];

/// The buildpack every default group ends with, as an optional member.
pub const PROCFILE: &str = "kiln/procfile";

/// Optional members that follow a buildpack in its default group (before `kiln/procfile`):
/// kiln/static serves the static site a Node.js front-end project's build makes, when
/// kiln/nodejs hands it over through the plan entry `static-site`.
pub const HELPERS: &[(&str, &str)] = &[("kiln/nodejs", "kiln/static")];

/// The built-in buildpack with this id.
pub fn builtin(id: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.id == id)
}

/// If this process was started as the `bin/detect` or `bin/build` of a built-in buildpack
/// (its file name is `detect` or `build` and `CNB_BUILDPACK_DIR` names a directory whose
/// `buildpack.toml` has a built-in id), runs that buildpack and exits; otherwise returns.
///
/// The `kiln` binary calls this first thing. A program that embeds kiln as a library and
/// builds with the built-in buildpacks must call it first thing in its `main` too, or point
/// kiln at a `kiln` executable (see the `kiln` crate's `BuildOptions`).
pub fn run_if_invoked() {
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    if !matches!(
        Path::new(&argv0).file_name().and_then(OsStr::to_str),
        Some("detect" | "build")
    ) {
        return;
    }
    let Some(dir) = std::env::var_os("CNB_BUILDPACK_DIR") else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(Path::new(&dir).join("buildpack.toml")) else {
        return;
    };
    let Some(builtin) = descriptor_id(&text).and_then(|id| builtin(&id)) else {
        return;
    };
    common::target_defaults();
    (builtin.run)();
    // libcnb's runtime exits the process itself.
    std::process::exit(0);
}

/// The files whose presence makes a built-in buildpack pass detection, from
/// `[metadata.kiln] detects` of its `buildpack.toml` text (`["go.mod", "main.go"]`).
pub fn detects(descriptor: &str) -> Vec<String> {
    let Ok(table) = toml::from_str::<toml::Table>(descriptor) else {
        return Vec::new();
    };
    table
        .get("metadata")
        .and_then(|m| m.get("kiln"))
        .and_then(|k| k.get("detects"))
        .and_then(toml::Value::as_array)
        .map(|files| {
            files
                .iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What the built-in buildpacks recognise, in the default order, one per line:
/// `Go: go.mod, main.go`. kiln shows it when no group passed detection.
pub fn detection_summary() -> String {
    DEFAULT_ORDER
        .iter()
        .chain([&PROCFILE])
        .filter_map(|id| builtin(id))
        .map(|b| {
            let table: toml::Table = toml::from_str(b.descriptor).unwrap_or_default();
            let name = table
                .get("buildpack")
                .and_then(|bp| bp.get("name"))
                .and_then(toml::Value::as_str)
                .unwrap_or(b.id);
            format!("{name} ({}): {}", b.id, detects(b.descriptor).join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `[buildpack] id` of a `buildpack.toml`.
pub fn descriptor_id(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    table
        .get("buildpack")?
        .get("id")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_carry_their_id_and_the_crate_version() {
        for b in BUILTINS {
            let table: toml::Table = toml::from_str(b.descriptor).unwrap();
            assert_eq!(descriptor_id(b.descriptor).as_deref(), Some(b.id));
            assert_eq!(
                table["buildpack"]["version"].as_str(),
                Some(VERSION),
                "{}",
                b.id
            );
            assert_eq!(table["api"].as_str(), Some("0.10"), "{}", b.id);
        }
        for id in DEFAULT_ORDER.iter().chain([&PROCFILE]) {
            assert!(builtin(id).is_some(), "{id}");
        }
    }

    #[test]
    fn every_builtin_says_what_it_detects() {
        for b in BUILTINS {
            assert!(!detects(b.descriptor).is_empty(), "{}", b.id);
        }
        let summary = detection_summary();
        assert_eq!(summary.lines().count(), BUILTINS.len(), "{summary}");
        assert!(
            summary.contains("Go (kiln/go): go.mod, main.go"),
            "{summary}"
        );
        assert!(
            summary.contains("Node.js (kiln/nodejs): package.json, server.js, index.js"),
            "{summary}"
        );
    }
}
