//! Writing an image's configuration and manifest once its layers are in a layout.

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageConfiguration, ImageManifest, ImageManifestBuilder,
    MediaType, SCHEMA_VERSION,
};

use super::layout::{LayoutError, OciLayout};
use crate::reproducible::canonical_json;

/// An image written to a layout (not yet named in its `index.json`).
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// The manifest's descriptor.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
}

/// Writes `config` and a manifest listing `layers` (whose blobs must already be in
/// `layout`) as canonical JSON blobs.
pub fn write_image(
    layout: &OciLayout,
    layers: Vec<Descriptor>,
    config: &ImageConfiguration,
) -> Result<WrittenImage, LayoutError> {
    let json_err = |e: serde_json::Error| LayoutError::Write {
        path: layout.root().to_path_buf(),
        source: std::io::Error::other(e),
    };
    let config_bytes = canonical_json(config).map_err(json_err)?;
    let (config_digest, config_size) = layout.write_blob(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_size,
        ))
        .layers(layers)
        .build()
        .map_err(|e| json_err(serde_json::Error::io(std::io::Error::other(e))))?;
    let manifest_bytes = canonical_json(&manifest).map_err(json_err)?;
    let (digest, size) = layout.write_blob(&manifest_bytes)?;
    Ok(WrittenImage {
        descriptor: descriptor(MediaType::ImageManifest, &digest, size),
        manifest,
    })
}

/// A descriptor of `media_type` for a blob.
pub fn descriptor(media_type: MediaType, digest: &Digest, size: u64) -> Descriptor {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest.clone())
        .size(size)
        .build()
        .expect("a descriptor with media type, digest and size")
}
