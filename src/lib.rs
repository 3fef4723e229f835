#![doc = include_str!("../README.md")]

pub mod analyze;
pub mod app;
pub mod build;
pub mod buildenv;
pub mod buildpack;
pub mod builtin;
pub mod cache;
pub mod cache_image;
pub mod detect;
pub mod env;
mod error;
pub mod event;
pub mod export;
pub mod fingerprint;
pub mod gc;
pub mod image;
pub mod labels;
pub mod launch;
mod pipeline;
pub mod plan;
pub mod publish;
pub mod rebase;
pub mod rebuild;
pub mod registry;
pub mod reproducible;
pub mod stack;
pub mod store;
pub mod transport;
pub mod untrusted;

pub use error::Error;
pub use event::{CancelToken, Event, EventSink, NoEvents, Phase};
pub use image::reference::{ImageName, ImageReference};
pub use image::{LoadedImage, TargetPlatform};
pub use launch::ProcessType;
/// The OCI image-spec types kiln uses at its edges.
pub use oci_spec::image as oci;
pub use pipeline::{
    BuildOptions, BuildReport, BuildpackRef, BuildpackSelection, DEFAULT_STACK, DetectSummary,
    LayerReport, build, detect,
};
pub use publish::Destination;
pub use store::Store;
