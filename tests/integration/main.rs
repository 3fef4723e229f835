//! kiln's integration tests: the real binary, real buildpacks (shell scripts), real images
//! checked by independent tools and run under podman.

mod util;

mod build;
mod cli;
mod detect;
mod errors;
mod export;
mod reproducible;
