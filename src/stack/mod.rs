//! Stacks: reproducible base images kiln builds itself from Debian packages.
//!
//! A stack (`stacks/<name>/stack.toml`) names a distribution, its archives and signing keys,
//! the CNB user, and *flavours* — package sets that build on each other (`python` extends
//! `base`). `kiln stack lock` resolves each flavour against the verified archive indexes and
//! pins every package file by SHA-256 in `stacks/<name>/<flavour>.lock`; `kiln stack build`
//! downloads exactly those files (verified, cached by digest), unpacks them without dpkg or
//! maintainer scripts, does the few things those scripts would have done that matter at run
//! time (`rootfs`), and writes one layer per flavour level plus the image config into kiln's
//! store as `kiln/stacks/<name>-<flavour>`, an image index with one manifest per architecture.

// Locking and building are public (below); how is the crate's own.
mod build;
pub(crate) mod choose;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code))]
pub(crate) mod control;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code))]
pub(crate) mod deb;
pub(crate) mod definition;
pub(crate) mod fetch;
pub(crate) mod mirror;
pub(crate) mod native;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code))]
pub(crate) mod release;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code))]
pub(crate) mod resolve;
pub(crate) mod rootfs;

use std::path::PathBuf;

pub use build::{
    StackImage, StackLayer, StackOptions, build, choose_flavour, ensure_image, lock, store_name,
};
pub use definition::{
    FlavourName, InvalidName, Lock, LockedPackage, StackDefinition, StackName, StackSource,
};
pub use fetch::FetchError;
pub use release::ReleaseError;

/// Errors of stack operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// No stack of that name or directory.
    #[error("no stack {stack}; built-in stacks: {}; or give a directory with a stack.toml", builtin.join(", "))]
    NotFound {
        /// What was asked for.
        stack: String,
        /// The built-in stacks.
        builtin: Vec<String>,
    },
    /// The stack has no such flavour.
    #[error("stack {stack} has no flavour {flavour}; it has: {}", available.join(", "))]
    UnknownFlavour {
        /// The stack.
        stack: String,
        /// The flavour asked for.
        flavour: String,
        /// Its flavours.
        available: Vec<String>,
    },
    /// The stack cannot be built for that architecture.
    #[error("stack {stack} is not defined for {arch}; it supports: {}", available.join(", "))]
    UnsupportedArch {
        /// The stack.
        stack: String,
        /// The architecture asked for.
        arch: String,
        /// Its architectures.
        available: Vec<String>,
    },
    /// `stack.toml` or a lock file is invalid.
    #[error("{stack}: {problem}")]
    Definition {
        /// Which file.
        stack: String,
        /// What is wrong.
        problem: String,
    },
    /// Built-in stacks cannot be written to.
    #[error(
        "{stack} is built into kiln and read-only; lock a stack directory instead (stacks/<name> in kiln's repository, or your own)"
    )]
    ReadOnly {
        /// The stack.
        stack: String,
    },
    /// No mirror is configured.
    #[error("{0}")]
    NoMirror(String),
    /// The stack's archives need a keyring and it has none.
    #[error(
        "stack {stack} names no keyring, so its archive cannot be verified; add `keyring` to stack.toml, or pass --insecure-skip-signature to resolve unverified"
    )]
    NoKeyring {
        /// The stack.
        stack: String,
    },
    /// No flavour has every package the buildpacks need.
    #[error("no flavour of stack {stack} has all of {}, which the buildpacks need in their run image; flavours: {}; or give --run-image", mixins.join(", "), flavours.join(", "))]
    NoFlavour {
        /// The stack.
        stack: String,
        /// The packages needed.
        mixins: Vec<String>,
        /// Its flavours.
        flavours: Vec<String>,
    },
    /// The flavour has no lock file.
    #[error(
        "stack {stack} has no lock for flavour {flavour}; run `kiln stack lock <stack dir>` or build with --no-lock"
    )]
    NoLock {
        /// The stack.
        stack: String,
        /// The flavour.
        flavour: String,
    },
    /// The lock was made from a different definition.
    #[error(
        "the lock of {stack}/{flavour} is out of date (stack.toml changed since it was made); run `kiln stack lock <stack dir>` or build with --no-lock"
    )]
    StaleLock {
        /// The stack.
        stack: String,
        /// The flavour.
        flavour: String,
    },
    /// The lock has no entries for the architecture.
    #[error(
        "the lock of {stack}/{flavour} has no packages for {arch}; run `kiln stack lock <stack dir> --arch {arch}`"
    )]
    LockMissingArch {
        /// The stack.
        stack: String,
        /// The flavour.
        flavour: String,
        /// The architecture.
        arch: String,
    },
    /// A locked package is no longer served by the mirror.
    #[error(
        "package {package} {version} ({url}) is no longer served by the mirror; refresh the lock with `kiln stack lock <stack dir>`, or use a snapshot mirror (--mirror http://snapshot.debian.org/archive/debian/<date>/)"
    )]
    NotServed {
        /// The package.
        package: String,
        /// Its version.
        version: String,
        /// The URL tried.
        url: String,
    },
    /// A Release file does not list an index kiln needs.
    #[error("{release} lists no {path}; is the suite, component or architecture right?")]
    IndexMissing {
        /// The Release URL.
        release: String,
        /// The index path.
        path: String,
    },
    /// An index does not match the checksum its Release file gives.
    #[error(
        "{url} does not match the SHA256 in its Release file (expected {expected}, got {found}); the mirror is inconsistent or tampered with"
    )]
    IndexMismatch {
        /// The index URL.
        url: String,
        /// Expected digest.
        expected: String,
        /// Found digest.
        found: String,
    },
    /// Downloading failed.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// A Release file failed verification.
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// Dependencies cannot be resolved.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// A package could not be unpacked.
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    /// A layer could not be written.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// The store could not be written.
    #[error(transparent)]
    Layout(#[from] crate::image::layout::LayoutError),
    /// The store could not be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A local file could not be read or written.
    #[error("failed to access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The stack build was cancelled: its source is the shared [`crate::event::Cancelled`] (see
    /// [`crate::is_cancelled`]).
    #[error("cancelled")]
    Cancelled(#[from] crate::event::Cancelled),
}
