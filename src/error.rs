//! The top-level error: one variant per phase or module, each wrapping that module's error.

use std::path::PathBuf;

use crate::event::Cancelled;
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
    /// The buildpacks' order could not be loaded (an `order.toml` unreadable or invalid).
    #[error(transparent)]
    Catalog(crate::buildpack::catalog::CatalogError),
    /// The builder image kiln runs in says something kiln cannot use.
    #[error(transparent)]
    Builder(#[from] crate::builder::BuilderError),
    /// The run image could not be read.
    #[error(transparent)]
    Analyze(#[from] crate::lifecycle::analyze::AnalyzeError),
    /// Detection failed.
    #[error(transparent)]
    Detect(#[from] crate::lifecycle::detect::DetectError),
    /// No group of buildpacks passed detection.
    #[error("no buildpack group passed detection ({}); run with -v to see each buildpack's output\n{}", summarize(.results), crate::buildpack::builtin::nothing_detected_hint())]
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
    /// The operation was cancelled between phases (errors of phases and modules carry
    /// [`Cancelled`] as their source the same way).
    #[error("cancelled")]
    Cancelled(#[from] Cancelled),
}

/// Whether `error`, or any error in its [`source`](std::error::Error::source) chain, is a
/// cancellation ([`Cancelled`] anywhere in its source chain), whichever module it came from.
pub fn is_cancelled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<Cancelled>() {
            return true;
        }
        next = error.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::build::BuildError;
    use crate::stack::StackError;
    use crate::transport::publish::PublishError;
    use crate::transport::registry::RegistryError;

    #[test]
    fn nothing_detected_lists_what_the_builtins_recognise() {
        let text = Error::NothingDetected {
            results: Vec::new(),
        }
        .to_string();
        for b in kiln_buildpacks::BUILTINS {
            assert!(text.contains(&format!("({})", b.id)), "{text}");
            for file in kiln_buildpacks::detects(b.descriptor) {
                assert!(text.contains(&file), "{file}: {text}");
            }
        }
        assert!(text.contains("--buildpack DIR|ID"), "{text}");
        assert!(text.contains("--order FILE"), "{text}");
    }

    #[test]
    fn cancellation_is_found_under_any_wrapping() {
        assert!(is_cancelled(&Cancelled));
        assert!(is_cancelled(&Error::Cancelled(Cancelled)));
        assert!(is_cancelled(&Error::from(BuildError::from(Cancelled))));
        assert!(is_cancelled(&Error::from(StackError::from(Cancelled))));
        assert!(is_cancelled(&Error::from(PublishError::from(
            RegistryError::from(Cancelled)
        ))));
        assert!(is_cancelled(&Error::from(crate::image::ImageError::from(
            RegistryError::from(Cancelled)
        ))));
    }

    #[test]
    fn other_errors_are_not_cancellation() {
        assert!(!is_cancelled(&Error::InvalidOptions(
            "cancelled".to_string()
        )));
        assert!(!is_cancelled(&Error::NothingDetected {
            results: Vec::new()
        }));
        assert!(!is_cancelled(&std::io::Error::other("cancelled")));
    }
}
