//! Property and fuzz tests of kiln's parsers of hostile input (issue 12): tar paths and
//! extraction beneath a directory, OCI documents, the CNB TOML files, Procfiles, Debian control
//! data and image references.
//!
//! Each module generates inputs with proptest and replays the committed samples of
//! `tests/corpus/<target>/`. `KILN_FUZZ_CASES` sets how many cases each property tries
//! (default 256, a few seconds in all);
//! `KILN_FUZZ_CASES=100000 cargo test --features internals --test properties` fuzzes for
//! longer. The parsers are kiln's internals, reached through `kiln::internals` (the
//! `internals` feature this binary requires), not its API. Failures proptest finds are kept in `proptest-regressions/` beside the
//! modules and replayed first on every run.

// Test code: panicking on unexpected results is the point, and helpers are `pub` for the
// test modules of this one crate.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::too_many_lines,
    unreachable_pub
)]

mod support;

mod control;
mod deb;
mod oci;
mod paths;
mod procfile;
mod reference;
mod tar_extract;
mod toml_files;
