#![doc = include_str!("../README.md")]

// The public API (see "As a library" above): what an embedding platform calls, and what the
// `kiln` binary — a crate of its own that sees only this API — calls.
pub mod builder;
pub mod buildpack;
pub mod cache;
pub mod event;
pub mod image;
pub mod labels;
pub mod layer;
pub mod lifecycle;
pub mod provenance;
pub mod rebase;
pub mod reproducible;
pub mod sbom;
pub mod stack;
pub mod store;
pub mod transport;

// Internals: the types of theirs a public item needs are re-exported below; everything else
// in them is `pub(crate)`, except what the property tests reach through the `internals`
// feature (re-exported at the end), which is `pub` and, without the feature, unreachable
// and partly unused.
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub))]
mod app;
mod buildenv;
// Re-exported from `buildpack`; a module of its own on the ground floor, so events, labels
// and records can name buildpacks.
mod buildpack_id;
#[allow(dead_code)]
mod env;
mod error;
mod fingerprint;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub))]
mod launch;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub))]
mod plan;
#[cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code))]
mod untrusted;

pub use app::AppError;
pub use buildenv::{BuildEnvError, BuildEnvironment};
pub use env::EnvDirError;
pub use error::{Error, is_cancelled};
pub use event::{CancelToken, Cancelled, Event, EventSink, NoEvents, Phase};
pub use image::reference::{ImageName, ImageReference};
pub use image::{LoadedImage, TargetPlatform};
pub use launch::{InvalidProcessType, Process, ProcessType};
pub use lifecycle::{
    BuildOptions, BuildReport, BuildpackRef, BuildpackSelection, DEFAULT_STACK, DetectSummary,
    LayerReport, build, detect, read_env_file,
};
/// The OCI image-spec types kiln uses at its edges.
pub use oci_spec::image as oci;
pub use plan::PlanEntry;
pub use store::Store;
pub use transport::publish::Destination;
pub use untrusted::ReadError;

/// kiln's internal parsers, for its property tests (`tests/properties/`) only: **not** part
/// of the API, no semver promise. Present with the non-default `internals` feature.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    /// `crate::untrusted`: paths and files from outside kiln.
    pub mod untrusted {
        pub use crate::untrusted::*;
    }
    /// `crate::plan`: `plan.toml` and the build plan.
    pub mod plan {
        pub use crate::plan::*;
    }
    /// `crate::launch`: `launch.toml`.
    pub mod launch {
        pub use crate::launch::*;
    }
    /// `crate::app`: the app source and `project.toml`.
    pub mod app {
        pub use crate::app::*;
    }
    /// `crate::stack`'s Debian readers.
    pub mod stack {
        /// Debian control data.
        pub mod control {
            pub use crate::stack::control::*;
        }
        /// The `.deb` unpacker.
        pub mod deb {
            pub use crate::stack::deb::*;
        }
        /// `Release` files.
        pub mod release {
            pub use crate::stack::release::*;
        }
        /// `Packages` indexes.
        pub mod resolve {
            pub use crate::stack::resolve::*;
        }
    }
}
