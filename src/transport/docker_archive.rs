//! `docker-archive:` files: the tarball `docker save` writes and `docker load` / `podman load`
//! read — a `manifest.json` naming each image's config file, tags and layer tars.
//!
//! kiln writes one image per archive: `<config digest>.json`, one uncompressed
//! `<diff_id>/layer.tar` per layer (the form every loader accepts; gzip layers are
//! decompressed on the fly, counting their length first so nothing is held in memory),
//! `manifest.json` and the legacy `repositories` file, all with fixed times and owners.
//! It reads archives from `docker save`, `podman save` and itself, also Docker 25's OCI-layout
//! flavour, importing each layer into the store as it is (an uncompressed layer keeps its
//! `diff_id` as its digest, which is checked).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageManifest, ImageManifestBuilder, MediaType, SCHEMA_VERSION,
};

use crate::image::diff_ids::mismatch;
use crate::image::digest::{GzipContentHasher, HashingWriter};
use crate::image::layout::{LayoutError, OciLayout, open_regular};
use crate::image::reference::ImageReference;
use crate::image::{ImageError, LoadedImage, descriptor};
use crate::reproducible::canonical_json;
use crate::transport::oci_archive::{append_dir, append_file};
use crate::untrusted::{MAX_DOCUMENT, read_limited};

/// One image of `manifest.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// What pass 1 reads: the images of `manifest.json` and the symlinks between layer files.
struct ArchiveIndex {
    entries: Vec<Entry>,
    links: BTreeMap<String, String>,
}

impl ArchiveIndex {
    /// Reads `manifest.json` (docker save writes it last) and the symlinks.
    fn read(path: &Path) -> io::Result<Self> {
        let mut manifest_bytes = None;
        let mut links = BTreeMap::new();
        let mut archive = tar::Archive::new(BufReader::new(open_archive(path)?));
        for entry in archive.entries()? {
            let mut entry = entry?;
            let entry_path = normalize(&entry.path()?.to_string_lossy());
            if entry.header().entry_type().is_symlink() {
                if let Some(target) = entry.link_name()? {
                    let base = Path::new(&entry_path).parent().unwrap_or(Path::new(""));
                    let resolved = normalize(&base.join(target).to_string_lossy());
                    links.insert(entry_path, resolved);
                }
            } else if entry_path == "manifest.json" {
                manifest_bytes = Some(read_limited(
                    &mut entry,
                    MAX_DOCUMENT,
                    "the archive's manifest.json",
                )?);
            }
        }
        let manifest_bytes = manifest_bytes.ok_or_else(|| {
            invalid_data(
                "the archive has no manifest.json; it is not a docker archive (docker save, podman save)"
                    .to_string(),
            )
        })?;
        let entries = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| invalid_data(format!("its manifest.json is invalid: {e}")))?;
        Ok(Self { entries, links })
    }

    /// The image tagged `name`, or the only one.
    fn choose(&self, name: Option<&str>, display: &str) -> Result<&Entry, ImageError> {
        let tags = |e: &Entry| e.repo_tags.clone().unwrap_or_default();
        let all_tags = || self.entries.iter().flat_map(tags).collect();
        match name {
            Some(wanted) => self
                .entries
                .iter()
                .find(|e| {
                    tags(e)
                        .iter()
                        .any(|t| t == wanted || t.strip_suffix(":latest") == Some(wanted))
                })
                .ok_or_else(|| ImageError::NotFound {
                    reference: display.to_string(),
                    available: all_tags(),
                }),
            None => match self.entries.as_slice() {
                [only] => Ok(only),
                [] => Err(ImageError::NotFound {
                    reference: display.to_string(),
                    available: Vec::new(),
                }),
                _ => Err(ImageError::Ambiguous {
                    reference: display.to_string(),
                    names: all_tags(),
                }),
            },
        }
    }

    /// `p` with symlinks followed.
    fn resolve(&self, p: &str) -> String {
        let mut p = normalize(p);
        for _ in 0..8 {
            match self.links.get(&p) {
                Some(target) => p = target.clone(),
                None => break,
            }
        }
        p
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A failure of pass 2: reading the archive or writing the layout.
enum StreamError {
    Archive(io::Error),
    Layout(LayoutError),
}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        Self::Archive(e)
    }
}

impl From<LayoutError> for StreamError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

/// The config's bytes (if found) and each layer's descriptor and `diff_id` (when known: an
/// uncompressed layer's digest, a gzip layer's uncompressed digest) by its path in the
/// archive.
type StreamedBlobs = (
    Option<Vec<u8>>,
    BTreeMap<String, (Descriptor, Option<oci_spec::image::Digest>)>,
);

/// Pass 2: reads the config at `config_path` and streams the layers at `layer_paths` into
/// `into`, returning the config's bytes and each layer's descriptor by path.
fn stream_blobs(
    path: &Path,
    config_path: &str,
    layer_paths: &[String],
    into: &OciLayout,
) -> Result<StreamedBlobs, StreamError> {
    let mut config_bytes = None;
    let mut layers = BTreeMap::new();
    let mut archive = tar::Archive::new(BufReader::new(open_archive(path)?));
    for tar_entry in archive.entries()? {
        let mut tar_entry = tar_entry?;
        if !tar_entry.header().entry_type().is_file() {
            continue;
        }
        let entry_path = normalize(&tar_entry.path()?.to_string_lossy());
        if entry_path == config_path {
            config_bytes = Some(read_limited(
                &mut tar_entry,
                MAX_DOCUMENT,
                &format!("the image configuration {config_path} in the archive"),
            )?);
        } else if layer_paths.contains(&entry_path) && !layers.contains_key(&entry_path) {
            let mut reader = BufReader::new(&mut tar_entry);
            let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
            let mut writer = into.blob_writer()?;
            // A gzip layer's diff_id is hashed as it streams in (checked once the config
            // is read); an uncompressed layer's is its digest.
            let mut content = GzipContentHasher::new();
            loop {
                let chunk = reader.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                if gzip {
                    content.update(chunk);
                }
                writer.write_all(chunk)?;
                reader.consume(n);
            }
            let (digest, size) = writer.finish()?;
            let (media_type, diff_id) = if gzip {
                (MediaType::ImageLayerGzip, content.finish())
            } else {
                (MediaType::ImageLayer, Some(digest.clone()))
            };
            layers.insert(entry_path, (descriptor(media_type, &digest, size), diff_id));
        }
    }
    Ok((config_bytes, layers))
}

/// Imports the image `name` (or the only one) of the docker archive at `path` into `into`,
/// returning it as an OCI image whose blobs are there.
pub(super) fn import(
    path: &Path,
    name: Option<&str>,
    into: &OciLayout,
    reference: &ImageReference,
) -> Result<LoadedImage, ImageError> {
    let display = reference.to_string();
    let archive_err = |source| ImageError::Archive {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |message: String| archive_err(invalid_data(message));
    let layout_err = |source| ImageError::Layout {
        reference: display.clone(),
        source,
    };

    let index = ArchiveIndex::read(path).map_err(archive_err)?;
    let entry = index.choose(name, &display)?;
    let config_path = index.resolve(&entry.config);
    let layer_paths: Vec<String> = entry.layers.iter().map(|l| index.resolve(l)).collect();

    let (config_bytes, layers) =
        stream_blobs(path, &config_path, &layer_paths, into).map_err(|e| match e {
            StreamError::Archive(e) => archive_err(e),
            StreamError::Layout(e) => layout_err(e),
        })?;
    let config_bytes = config_bytes.ok_or_else(|| {
        invalid(format!(
            "the archive lacks the image's config {config_path}"
        ))
    })?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Parse {
            reference: display.clone(),
            what: "image configuration",
            source: oci_spec::OciSpecError::SerDe(e),
        })?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layer_paths.len() {
        return Err(ImageError::LayerCount {
            reference: display.clone(),
            layers: layer_paths.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut layer_descriptors = Vec::new();
    for (layer_path, diff_id) in layer_paths.iter().zip(diff_ids) {
        let (layer, found) = layers
            .get(layer_path)
            .ok_or_else(|| invalid(format!("the archive lacks the layer {layer_path}")))?;
        let found = match found {
            Some(found) => found.clone(),
            // Not decompressed on the way in (not gzip as far as the stream showed): read it.
            None => into.diff_id(layer.digest()).map_err(layout_err)?,
        };
        if found.to_string() != *diff_id {
            return Err(archive_err(mismatch(layer_path, diff_id, &found)));
        }
        layer_descriptors.push(layer.clone());
    }
    let (config_digest, config_size) = into.write_blob(&config_bytes).map_err(layout_err)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_size,
        ))
        .layers(layer_descriptors)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let manifest_json = canonical_json(&manifest)
        .map_err(|e| invalid(format!("cannot write its manifest: {e}")))?;
    let (digest, size) = into.write_blob(&manifest_json).map_err(layout_err)?;
    Ok(LoadedImage {
        reference: reference.clone(),
        layout: into.clone(),
        manifest_descriptor: descriptor(MediaType::ImageManifest, &digest, size),
        manifest,
        config,
    })
}

/// Writes the image `manifest` (whose blobs are all in `from`) as a docker archive at `path`,
/// tagged `name`, through a temporary file renamed into place.
pub fn write_docker_archive(
    path: &Path,
    from: &OciLayout,
    manifest: &ImageManifest,
    name: &str,
) -> Result<(), LayoutError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write_err = |source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    };
    let config_bytes = from.read_blob(manifest.config().digest())?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| write_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(write_err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the image's config and manifest list different numbers of layers",
        )));
    }
    let temp = crate::transport::oci_archive::destination_temp(path, &dir).map_err(write_err)?;
    let mut builder = tar::Builder::new(BufWriter::new(temp));
    builder.mode(tar::HeaderMode::Deterministic);

    let config_name = format!("{}.json", manifest.config().digest().digest());
    append_file(
        &mut builder,
        &config_name,
        config_bytes.len() as u64,
        &config_bytes[..],
    )
    .map_err(write_err)?;
    let mut layer_names = Vec::new();
    let mut written: Vec<&str> = Vec::new();
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
        let layer_name = format!("{hex}/layer.tar");
        if !written.contains(&hex) {
            append_dir(&mut builder, &format!("{hex}/")).map_err(write_err)?;
            append_layer(&mut builder, &layer_name, from, layer, diff_id).map_err(|e| match e {
                WriteLayerError::Io(e) => write_err(e),
                WriteLayerError::Layout(e) => e,
            })?;
            written.push(hex);
        }
        layer_names.push(layer_name);
    }
    let tag = if name
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
    {
        name.to_string()
    } else {
        format!("{name}:latest")
    };
    let entries = vec![Entry {
        config: config_name,
        repo_tags: Some(vec![tag.clone()]),
        layers: layer_names,
    }];
    let manifest_json = canonical_json(&entries).map_err(|e| write_err(io::Error::other(e)))?;
    append_file(
        &mut builder,
        "manifest.json",
        manifest_json.len() as u64,
        &manifest_json[..],
    )
    .map_err(write_err)?;
    if let (Some((repository, tag)), Some(top)) = (tag.rsplit_once(':'), diff_ids.last()) {
        let top = top.strip_prefix("sha256:").unwrap_or(top);
        let repositories = serde_json::json!({ repository: { tag: top } });
        let bytes = canonical_json(&repositories).map_err(|e| write_err(io::Error::other(e)))?;
        append_file(&mut builder, "repositories", bytes.len() as u64, &bytes[..])
            .map_err(write_err)?;
    }
    let mut out = builder.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    let temp = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    temp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

enum WriteLayerError {
    Io(io::Error),
    Layout(LayoutError),
}

/// Appends a layer blob uncompressed: gzip layers are read twice, once to learn their length
/// (and check their `diff_id`, which names the entry), once to write them.
fn append_layer<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    from: &OciLayout,
    layer: &Descriptor,
    diff_id: &str,
) -> Result<(), WriteLayerError> {
    let gzip = layer.media_type().to_string().ends_with("gzip");
    let open = || {
        from.open_blob(layer.digest())
            .map_err(WriteLayerError::Layout)
    };
    if gzip {
        let mut counted = HashingWriter::new(io::sink());
        io::copy(
            &mut flate2::read::MultiGzDecoder::new(BufReader::new(open()?)),
            &mut counted,
        )
        .map_err(WriteLayerError::Io)?;
        let (_, found, length) = counted.finish();
        if found.to_string() != diff_id {
            return Err(WriteLayerError::Io(mismatch(
                layer.digest().as_ref(),
                diff_id,
                &found,
            )));
        }
        append_file(
            builder,
            name,
            length,
            flate2::read::MultiGzDecoder::new(BufReader::new(open()?)),
        )
        .map_err(WriteLayerError::Io)
    } else {
        if layer.digest().to_string() != diff_id {
            return Err(WriteLayerError::Io(mismatch(
                layer.digest().as_ref(),
                diff_id,
                layer.digest(),
            )));
        }
        append_file(builder, name, layer.size(), BufReader::new(open()?))
            .map_err(WriteLayerError::Io)
    }
}

/// Opens an archive to read, refusing (without blocking) what is not a regular file.
fn open_archive(path: &Path) -> io::Result<File> {
    open_regular(path).map_err(|e| match e {
        LayoutError::Read { source, .. } => source,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    })
}

/// An image in a docker archive (`docker-archive:FILE[:NAME]`, what `docker save` writes):
/// read by importing its layers into the store (verified), written as a new file renamed over
/// the old one.
#[derive(Debug, Clone)]
pub struct DockerArchive {
    /// The file.
    pub path: std::path::PathBuf,
    /// The tag it carries, if given.
    pub name: Option<String>,
    /// The reference it was named by.
    pub reference: crate::image::reference::ImageReference,
}

impl super::context::Transport for DockerArchive {
    fn read(
        &self,
        cx: &super::context::Context<'_>,
        _: &crate::image::TargetPlatform,
    ) -> Result<LoadedImage, ImageError> {
        import(
            &self.path,
            self.name.as_deref(),
            cx.store.layout(),
            &self.reference,
        )
    }

    fn write(
        &self,
        cx: &super::context::Context<'_>,
        image: super::publish::Publishable<'_>,
    ) -> Result<super::publish::Published, super::publish::PublishError> {
        write_docker_archive(
            &self.path,
            cx.store.layout(),
            image.manifest,
            self.name.as_deref().unwrap_or("latest"),
        )
        .map_err(|source| super::publish::PublishError::Write {
            destination: self.reference.to_string(),
            source,
        })?;
        Ok(super::publish::Published::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{LayerSpec, write_layer};

    #[test]
    fn archives_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::ensure(dir.path().join("a")).unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("hello"), "hi").unwrap();
        let blob = write_layer(
            &layout,
            &LayerSpec {
                parents: Vec::new(),
                source: src,
                target: "app".to_string(),
                only: None,
                uid: 0,
                gid: 0,
                entry_metadata: None,
            },
        )
        .unwrap();
        let config: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [blob.diff_id.to_string()]},
            "config": {"Cmd": ["/app/hello"]}
        }))
        .unwrap();
        let written = crate::image::write_image(
            &layout,
            vec![descriptor(
                MediaType::ImageLayerGzip,
                &blob.digest,
                blob.size,
            )],
            &config,
        )
        .unwrap();
        let archive = dir.path().join("x.docker.tar");
        write_docker_archive(&archive, &layout, &written.manifest, "localhost/x").unwrap();

        let other = OciLayout::ensure(dir.path().join("b")).unwrap();
        let reference: ImageReference = format!("docker-archive:{}", archive.display())
            .parse()
            .unwrap();
        let loaded = import(&archive, Some("localhost/x:latest"), &other, &reference).unwrap();
        assert_eq!(loaded.diff_ids(), [blob.diff_id.to_string()]);
        // The layer came back uncompressed, its digest its diff_id.
        assert_eq!(loaded.manifest.layers()[0].digest(), &blob.diff_id);
        assert_eq!(loaded.config.config(), config.config());
        assert!(matches!(
            import(&archive, Some("nope"), &other, &reference),
            Err(ImageError::NotFound { .. })
        ));
    }
}
