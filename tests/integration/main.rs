//! kiln's integration tests: the real binary, real buildpacks (shell scripts), real images
//! checked by independent tools and run under podman.

// Test code: panicking on unexpected errors is the point, and helpers are `pub` for the
// test modules of this one crate.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::too_many_lines,
    unreachable_pub
)]

mod servers;
mod util;

mod architecture;
mod attacks;
mod build;
mod builtin;
mod cancel;
mod cli;
mod detect;
mod embed;
mod errors;
mod examples;
mod export;
mod fixtures;
mod frontend;
mod go_toolchains;
mod hermetic;
mod launch;
mod node_runtimes;
mod npm_registry;
mod python_runtimes;
mod r_apps;
mod real_apps;
mod rebuild;
mod registry;
mod reproducible;
mod sbom;
mod stack;
mod stack_debian;
mod store;
