//! kiln's local store as a transport: images by name (`myapp:1`, `team/app:2`).

use super::context::{Context, Transport};
use super::publish::{PublishError, Publishable, Published};
use crate::image::layout::ref_name;
use crate::image::reference::{ImageName, ImageReference};
use crate::image::{ImageError, LoadedImage, TargetPlatform};

/// An image in kiln's store.
#[derive(Debug, Clone)]
pub struct StoreImage {
    /// Its name in the store.
    pub name: ImageName,
    /// The reference it was named by.
    pub reference: ImageReference,
}

impl Transport for StoreImage {
    fn read(&self, cx: &Context<'_>, platform: &TargetPlatform) -> Result<LoadedImage, ImageError> {
        let layout = cx.store.layout();
        let index = layout.read_index().map_err(|source| ImageError::Layout {
            reference: self.reference.to_string(),
            source,
        })?;
        let wanted = self.name.to_string();
        if !index
            .manifests()
            .iter()
            .any(|d| ref_name(d) == Some(wanted.as_str()))
        {
            return Err(ImageError::NotFound {
                reference: format!(
                    "{wanted} (in kiln's local store {})",
                    cx.store.root().display()
                ),
                available: Vec::new(),
            });
        }
        crate::image::resolve(
            &self.reference,
            layout.clone(),
            &index,
            Some(&wanted),
            platform,
        )
    }

    fn write(&self, cx: &Context<'_>, image: Publishable<'_>) -> Result<Published, PublishError> {
        cx.store.tag(image.descriptor, &self.name.to_string())?;
        Ok(Published::Written)
    }
}
