#![doc = include_str!("../README.md")]

pub mod app;
pub mod buildenv;
pub mod buildpack;
pub mod cache;
pub mod env;
mod error;
pub mod event;
pub mod fingerprint;
pub mod image;
pub mod labels;
pub mod launch;
pub mod layer;
pub mod lifecycle;
pub mod plan;
pub mod rebase;
pub mod reproducible;
pub mod stack;
pub mod store;
pub mod transport;
pub mod untrusted;

pub use error::{Error, is_cancelled};
pub use event::{CancelToken, Cancelled, Event, EventSink, NoEvents, Phase};
pub use image::reference::{ImageName, ImageReference};
pub use image::{LoadedImage, TargetPlatform};
pub use launch::ProcessType;
pub use lifecycle::{
    BuildOptions, BuildReport, BuildpackRef, BuildpackSelection, DEFAULT_STACK, DetectSummary,
    LayerReport, build, detect,
};
/// The OCI image-spec types kiln uses at its edges.
pub use oci_spec::image as oci;
pub use store::Store;
pub use transport::publish::Destination;
