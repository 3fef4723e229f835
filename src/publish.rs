//! Publishing an exported image to its destination.
//!
//! Export always writes into kiln's store (which is also the layer cache); publishing then
//! names the image there, or copies it into an `oci:` layout or writes an `oci-archive:`.
//! Every file is written to a temporary name and renamed, and `index.json` is replaced only
//! after all blobs are in place, so an interrupted publish leaves the destination's previous
//! content intact.

use std::fmt;
use std::path::PathBuf;

use crate::export::ExportedImage;
use crate::image::layout::{LayoutError, OciLayout};
use crate::image::reference::{ImageName, ImageReference};
use crate::image::write_archive;
use crate::store::{Store, StoreError};

/// Where a built image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// kiln's local store, under a name.
    Store(ImageName),
    /// An OCI image layout directory (created if missing or empty).
    Layout {
        /// The directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name`.
        name: String,
    },
    /// An OCI archive file (replaced if it exists).
    Archive {
        /// The file.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name`.
        name: String,
    },
}

impl Destination {
    /// The destination for `--output REF` given the image name (if any): `oci:` and
    /// `oci-archive:` take their `:NAME`, else the image name, else `latest`.
    pub fn from_reference(
        reference: &ImageReference,
        image: Option<&ImageName>,
    ) -> Result<Self, String> {
        let default_name = || image.map_or_else(|| "latest".to_string(), ToString::to_string);
        match reference {
            ImageReference::Scratch => Err("scratch cannot be an output".to_string()),
            ImageReference::Layout { path, name } => Ok(Self::Layout {
                path: path.clone(),
                name: name.clone().unwrap_or_else(default_name),
            }),
            ImageReference::Archive { path, name } => Ok(Self::Archive {
                path: path.clone(),
                name: name.clone().unwrap_or_else(default_name),
            }),
            ImageReference::Named(name) => Ok(Self::Store(name.clone())),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(name) => write!(f, "{name}"),
            Self::Layout { path, name } => write!(f, "oci:{}:{name}", path.display()),
            Self::Archive { path, name } => write!(f, "oci-archive:{}:{name}", path.display()),
        }
    }
}

/// Errors publishing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Writing to the destination failed.
    #[error("failed to write the image to {destination}")]
    Write {
        /// The destination.
        destination: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// Naming the image in the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Publishes `image` (whose blobs are in `store`) to `destination`.
pub fn publish(
    store: &Store,
    image: &ExportedImage,
    destination: &Destination,
) -> Result<(), PublishError> {
    let write_err = |source| PublishError::Write {
        destination: destination.to_string(),
        source,
    };
    match destination {
        Destination::Store(name) => store.tag(&image.manifest_descriptor, &name.to_string())?,
        Destination::Layout { path, name } => {
            let layout = OciLayout::ensure(path).map_err(write_err)?;
            let mut blobs = image.manifest.layers().clone();
            blobs.push(image.manifest.config().clone());
            blobs.push(image.manifest_descriptor.clone());
            for blob in &blobs {
                layout
                    .copy_blob_from(store.layout(), blob)
                    .map_err(write_err)?;
            }
            layout
                .tag(&image.manifest_descriptor, name)
                .map_err(write_err)?;
        }
        Destination::Archive { path, name } => write_archive(
            path,
            store.layout(),
            &image.manifest_descriptor,
            &image.manifest,
            name,
        )
        .map_err(write_err)?,
    }
    Ok(())
}
