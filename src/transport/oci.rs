//! OCI image layout directories (`oci:DIR[:NAME]`): read in place, written blob by blob
//! (each renamed into place) with `index.json` replaced last.

use std::path::PathBuf;

use super::context::{Context, Transport};
use super::publish::{PublishError, Publishable, Published};
use crate::image::layout::OciLayout;
use crate::image::reference::ImageReference;
use crate::image::{ImageError, LoadedImage, TargetPlatform};

/// An image in an OCI layout directory.
#[derive(Debug, Clone)]
pub struct OciDir {
    /// The directory.
    pub path: PathBuf,
    /// Its `org.opencontainers.image.ref.name`, if given.
    pub name: Option<String>,
    /// The reference it was named by.
    pub reference: ImageReference,
}

impl Transport for OciDir {
    fn read(&self, _: &Context<'_>, platform: &TargetPlatform) -> Result<LoadedImage, ImageError> {
        let layout_err = |source| ImageError::Layout {
            reference: self.reference.to_string(),
            source,
        };
        let layout = OciLayout::open(&self.path).map_err(layout_err)?;
        let index = layout.read_index().map_err(layout_err)?;
        crate::image::resolve(
            &self.reference,
            layout,
            &index,
            self.name.as_deref(),
            platform,
        )
    }

    fn write(&self, cx: &Context<'_>, image: Publishable<'_>) -> Result<Published, PublishError> {
        let write_err = |source| PublishError::Write {
            destination: self.reference.to_string(),
            source,
        };
        let layout = OciLayout::ensure(&self.path).map_err(write_err)?;
        let mut blobs = image.manifest.layers().clone();
        blobs.push(image.manifest.config().clone());
        blobs.push(image.descriptor.clone());
        for blob in &blobs {
            layout
                .copy_blob_from(cx.store.layout(), blob)
                .map_err(write_err)?;
        }
        // The artifacts attached to the image (its SBOMs), listed untagged.
        let referrers =
            crate::image::referrers::referrers_of(cx.store.layout(), image.descriptor.digest())
                .map_err(write_err)?;
        crate::image::referrers::copy_referrers(cx.store.layout(), &layout, &referrers)
            .map_err(write_err)?;
        layout
            .tag(image.descriptor, self.name.as_deref().unwrap_or("latest"))
            .map_err(write_err)?;
        Ok(Published::Written)
    }
}
