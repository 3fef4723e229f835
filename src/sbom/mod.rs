//! Software bills of materials: what an image holds, as CycloneDX 1.6 and SPDX 2.3 JSON,
//! attached to the image as OCI 1.1 referrers ([`crate::image::referrers`]).
//!
//! The SBOM is made from the image's own layers, read as tar streams after the image is
//! written (module `catalog`): the Debian packages of the run image (and of the native-libraries
//! layer) by their dpkg records, Python distributions by their `*.dist-info/METADATA`, npm
//! packages by their `node_modules/**/package.json`, Go modules by the build information of
//! Go binaries, crates by `Cargo.lock`, and the Node.js and Python runtimes kiln installed.
//! Each component names the layer it is in (its diffID) and the file it was found by;
//! whiteouts of upper layers remove what they delete.
//!
//! Deterministic: the documents depend only on the image's bytes and name. Their time is
//! the image configuration's `created` (`SOURCE_DATE_EPOCH` or 1980-01-01T00:00:01Z), the
//! CycloneDX serial number a name-based UUID of the manifest digest, the SPDX namespace
//! the manifest digest; arrays are sorted and the JSON canonical.

pub(crate) mod catalog;
mod cyclonedx;
pub(crate) mod license;
pub(crate) mod purl;
pub(crate) mod records;
mod spdx;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifest};

use self::catalog::{Ecosystem, Package};
use crate::image::layout::{LayoutError, OciLayout};
use crate::image::referrers::{self, Referrer};

/// Errors making an SBOM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SbomError {
    /// A layer of the image could not be read.
    #[error(
        "cannot read layer {path} of the image to list its packages; `kiln store verify --repair` removes a damaged blob, then build again"
    )]
    ReadLayer {
        /// The layer blob.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image's configuration lists a different number of layers than its manifest.
    #[error("the image's configuration lists {diff_ids} layers but its manifest {layers}")]
    LayerCount {
        /// Layers the configuration lists.
        diff_ids: usize,
        /// Layers the manifest lists.
        layers: usize,
    },
    /// A document could not be serialised.
    #[error("cannot serialise the SBOM")]
    Json(#[source] serde_json::Error),
    /// The SBOM could not be written next to the image.
    #[error("cannot attach the SBOM to the image")]
    Write(#[source] LayoutError),
    /// The SBOM could not be listed in kiln's store beside the image.
    #[error("cannot list the image's SBOM in kiln's store")]
    Store(#[source] crate::store::StoreError),
}

/// One component of the image: a package and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Component {
    /// The package (its first location's record).
    pub package: Package,
    /// Its purl.
    pub purl: String,
    /// Where it is: the layer's diffID and the file it was found by (absolute path).
    pub locations: Vec<(String, String)>,
}

/// What an image holds, as both documents describe it.
#[derive(Debug, Clone)]
pub(crate) struct Inventory {
    /// The image's name (`myapp`, `registry.example/team/app`).
    pub name: String,
    /// The image's manifest digest.
    pub digest: Digest,
    /// The image's `created` time (`YYYY-MM-DDTHH:MM:SSZ`).
    pub created: String,
    /// The distribution of the image (`debian`, `13`), from its `os-release`.
    pub os: Option<(String, String)>,
    /// The components, sorted by purl.
    pub components: Vec<Component>,
    /// The diff IDs of layers whose blobs are not in the layout (reused in a registry
    /// without downloading them): their packages are missing from the components.
    pub unread: Vec<String>,
}

impl Inventory {
    /// How many components each ecosystem has, for a log line (`42 deb, 9 pypi`).
    pub(crate) fn summary(&self) -> String {
        let mut counts: BTreeMap<Ecosystem, usize> = BTreeMap::new();
        for c in &self.components {
            *counts.entry(c.package.ecosystem).or_default() += 1;
        }
        if counts.is_empty() {
            return "no packages".to_string();
        }
        counts
            .iter()
            .map(|(e, n)| {
                let name = serde_json::to_value(e)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("{n} {name}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Lists what the image (`manifest`, `config`, its blobs in `layout`) holds. `cache` keeps
/// each layer's catalog by blob digest.
pub(crate) fn inventory(
    layout: &OciLayout,
    name: &str,
    image: &Descriptor,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
    cache: Option<&Path>,
) -> Result<Inventory, SbomError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(SbomError::LayerCount {
            diff_ids: diff_ids.len(),
            layers: manifest.layers().len(),
        });
    }
    // (package, layer index) still present after the upper layers' deletions.
    let mut live: Vec<(Package, usize)> = Vec::new();
    let mut os = None;
    let mut unread = Vec::new();
    for (i, layer) in manifest.layers().iter().enumerate() {
        let path = layout.blob_path(layer.digest());
        let catalog = match catalog::layer_catalog(&path, layer.digest().digest(), cache) {
            Ok(catalog) => catalog,
            // A layer the registry already has and kiln reused there without downloading
            // it (a fresh machine publishing): nothing of it can be listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                unread.push(diff_ids[i].clone());
                continue;
            }
            Err(source) => return Err(SbomError::ReadLayer { path, source }),
        };
        let under = |dir: &str, path: &str| {
            dir.is_empty() || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
        };
        live.retain(|(p, _)| {
            !catalog
                .whiteouts
                .iter()
                .any(|w| p.path == *w || under(w, &p.path))
                && !catalog.opaque.iter().any(|o| under(o, &p.path))
                && !catalog.packages.iter().any(|q| q.path == p.path)
        });
        live.extend(catalog.packages.into_iter().map(|p| (p, i)));
        if catalog.os_release.is_some() {
            os = catalog.os_release;
        }
    }
    let mut components: BTreeMap<String, Component> = BTreeMap::new();
    for (package, layer) in live {
        let purl = purl::purl(&package, os.as_ref());
        let location = (diff_ids[layer].clone(), format!("/{}", package.path));
        let component = components.entry(purl.clone()).or_insert_with(|| Component {
            package,
            purl,
            locations: Vec::new(),
        });
        component.locations.push(location);
    }
    let mut components: Vec<Component> = components.into_values().collect();
    for c in &mut components {
        c.locations.sort();
        c.locations.dedup();
    }
    Ok(Inventory {
        name: name.to_string(),
        digest: image.digest().clone(),
        created: config
            .created()
            .clone()
            .unwrap_or_else(|| crate::reproducible::created_timestamp(None)),
        os,
        components,
        unread,
    })
}

/// The CycloneDX 1.6 JSON document of `inventory`.
pub(crate) fn cyclonedx_json(inventory: &Inventory) -> Result<Vec<u8>, SbomError> {
    crate::reproducible::canonical_json(&cyclonedx::document(inventory)).map_err(SbomError::Json)
}

/// The SPDX 2.3 JSON document of `inventory`.
pub(crate) fn spdx_json(inventory: &Inventory) -> Result<Vec<u8>, SbomError> {
    crate::reproducible::canonical_json(&spdx::document(inventory)).map_err(SbomError::Json)
}

/// Writes both documents as artifacts attached to `image` into `layout` (not yet listed
/// in its `index.json`).
pub(crate) fn attach(
    layout: &OciLayout,
    image: &Descriptor,
    inventory: &Inventory,
) -> Result<Vec<Referrer>, SbomError> {
    let cdx = cyclonedx_json(inventory)?;
    let spdx = spdx_json(inventory)?;
    Ok(vec![
        referrers::write_artifact(
            layout,
            image,
            referrers::CYCLONEDX_JSON,
            &cdx,
            "sbom.cdx.json",
        )
        .map_err(SbomError::Write)?,
        referrers::write_artifact(layout, image, referrers::SPDX_JSON, &spdx, "sbom.spdx.json")
            .map_err(SbomError::Write)?,
    ])
}

/// A name-based UUID of `text`: SHA-256, the version nibble 8 (RFC 9562 `UUIDv8`, the
/// "custom" version its appendix uses for SHA-256 names) and the RFC variant, lower-case.
pub(crate) fn uuid_of(text: &str) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let hash = sha2::Sha256::digest(text.as_bytes());
    let mut bytes: [u8; 16] = hash[..16].try_into().expect("a SHA-256 has 32 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// kiln's version, as the documents name their tool.
pub(crate) const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_lower_case_version_8_and_stable() {
        let u = uuid_of("sha256:00");
        assert_eq!(u, uuid_of("sha256:00"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
        assert!(
            u.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }
}
