//! The top-level error: one variant per phase or module, each wrapping that module's error.

use std::path::PathBuf;

use crate::lifecycle::detect::DetectReport;

/// Any error of a kiln operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options given are inconsistent.
    #[error("{0}")]
    InvalidOptions(String),
    /// The app source could not be read.
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    /// A buildpack could not be loaded.
    #[error(transparent)]
    Buildpack(#[from] crate::buildpack::BuildpackError),
    /// The built-in buildpacks could not be written out.
    #[error(transparent)]
    Builtin(#[from] crate::buildpack::builtin::BuiltinError),
    /// An `order.toml` could not be read.
    #[error("failed to read order file {path}")]
    ReadOrder {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An `order.toml` is invalid.
    #[error("order file {path} is invalid: {problem}")]
    ParseOrder {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The run image could not be read.
    #[error(transparent)]
    Analyze(#[from] crate::lifecycle::analyze::AnalyzeError),
    /// Detection failed.
    #[error(transparent)]
    Detect(#[from] crate::lifecycle::detect::DetectError),
    /// No group of buildpacks passed detection.
    #[error("no buildpack group passed detection ({}); run with -v to see each buildpack's output", summarize(.results))]
    NothingDetected {
        /// What each buildpack said.
        results: Vec<DetectReport>,
    },
    /// A buildpack's build failed.
    #[error(transparent)]
    Build(#[from] crate::lifecycle::build::BuildError),
    /// The image could not be written.
    #[error(transparent)]
    Export(#[from] crate::lifecycle::export::ExportError),
    /// The image could not be published.
    #[error(transparent)]
    Publish(#[from] crate::transport::publish::PublishError),
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),

    /// A stack could not be locked or built.
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    /// kiln's store could not be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The build environment could not be prepared.
    #[error(transparent)]
    BuildEnv(#[from] crate::buildenv::BuildEnvError),
    /// Scratch space could not be prepared.
    #[error("failed to prepare {path}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

fn summarize(results: &[DetectReport]) -> String {
    if results.is_empty() {
        return "no buildpack ran".to_string();
    }
    results
        .iter()
        .map(|r| format!("{}@{}: {}", r.id, r.version, r.status))
        .collect::<Vec<_>>()
        .join(", ")
}
