//! Locking and building stacks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageIndex, MediaType,
    PlatformBuilder, RootFsBuilder,
};

use super::control::Stanza;
use super::deb::Unpacker;
use super::definition::{
    FlavourName, Lock, LockedPackage, StackDefinition, StackName, StackSource,
};
use super::fetch::{Fetcher, sha256_hex};
use super::mirror::{self, Mirrors};
use super::release::{Keyring, Release};
use super::resolve::{PackageIndex, PackageRecord};
use super::{StackError, rootfs};
use crate::event::{CancelToken, Cancelled, Event, EventSink};
use crate::image::layout::ref_name;
use crate::image::reference::ImageName;
use crate::image::{TargetPlatform, descriptor, write_image};
use crate::labels::{DISTRO_NAME, DISTRO_VERSION, STACK, STACK_FORMAT, STACK_PACKAGES};
use crate::layer::{LayerBlob, LayerSpec, write_layer};
use crate::store::Store;

/// Options for [`build`] and [`lock`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StackOptions {
    /// The flavour to build.
    pub flavour: String,
    /// Architecture (`amd64`, `arm64`); default the host's.
    pub arch: Option<String>,
    /// `--mirror`.
    pub mirror: Option<String>,
    /// `--security-mirror`.
    pub security_mirror: Option<String>,
    /// Build from the lock (default) or resolve against the mirror now.
    pub use_lock: bool,
    /// Resolve without verifying the archive's signature (`--insecure-skip-signature`).
    pub skip_signature: bool,
    /// `SOURCE_DATE_EPOCH` for the image's `created`.
    pub source_date_epoch: Option<i64>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            flavour: "base".to_string(),
            arch: None,
            mirror: None,
            security_mirror: None,
            use_lock: true,
            skip_signature: false,
            source_date_epoch: None,
        }
    }
}

/// A layer of a stack image.
#[derive(Debug, Clone)]
pub struct StackLayer {
    /// The flavour level it holds.
    pub flavour: FlavourName,
    /// How many packages.
    pub packages: usize,
    /// The written blob.
    pub blob: LayerBlob,
}

/// A built stack image.
#[derive(Debug, Clone)]
#[must_use]
pub struct StackImage {
    /// Its name in the store.
    pub name: ImageName,
    /// The manifest.
    pub manifest: Descriptor,
    /// Its platform.
    pub platform: TargetPlatform,
    /// Its layers, bottom first.
    pub layers: Vec<StackLayer>,
    /// `name=version` of every package, sorted.
    pub packages: Vec<String>,
}

impl StackImage {
    /// Total uncompressed size of the layers.
    pub fn uncompressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.uncompressed_size).sum()
    }

    /// Total compressed size of the layers.
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.size).sum()
    }
}

/// The store name of a stack flavour's image: `kiln/stacks/<stack>-<flavour>:latest`.
///
/// # Errors
///
/// [`StackError::Definition`] if the two names do not make an image name, which their
/// validation rules out.
pub fn store_name(stack: &StackName, flavour: &FlavourName) -> Result<ImageName, StackError> {
    format!("kiln/stacks/{stack}-{flavour}").parse().map_err(
        |e: crate::image::reference::ReferenceError| StackError::Definition {
            stack: stack.to_string(),
            problem: e.to_string(),
        },
    )
}

fn host_arch() -> String {
    TargetPlatform::host().architecture
}

fn check_arch(def: &StackDefinition, arch: &str) -> Result<(), StackError> {
    if def.stack.architectures.iter().any(|a| a == arch) {
        Ok(())
    } else {
        Err(StackError::UnsupportedArch {
            stack: def.stack.name.to_string(),
            arch: arch.to_string(),
            available: def.stack.architectures.clone(),
        })
    }
}

pub(super) fn keyring(
    source: &StackSource,
    def: &StackDefinition,
    skip_signature: bool,
    events: &dyn EventSink,
) -> Result<Option<Keyring>, StackError> {
    if skip_signature {
        events.event(&Event::Warning(
            "not verifying the archive's signature (--insecure-skip-signature)".to_string(),
        ));
        return Ok(None);
    }
    if def.stack.keyring.is_empty() {
        return Err(StackError::NoKeyring {
            stack: def.stack.name.to_string(),
        });
    }
    let mut keys = Keyring::default();
    for rel in &def.stack.keyring {
        let content = source.read(rel)?.ok_or_else(|| StackError::Definition {
            stack: source.label().to_string(),
            problem: format!("keyring file {rel} does not exist"),
        })?;
        keys.extend(
            Keyring::from_bytes(&content).map_err(|problem| StackError::Definition {
                stack: source.label().to_string(),
                problem: format!("keyring {rel}: {problem}"),
            })?,
        );
    }
    Ok(Some(keys))
}

/// Fetches, verifies and parses every Packages index of the stack for `arch`.
pub(super) fn fetch_indexes(
    def: &StackDefinition,
    mirrors: &Mirrors,
    keyring: Option<&Keyring>,
    arch: &str,
    fetcher: &Fetcher,
    events: &dyn EventSink,
) -> Result<PackageIndex, StackError> {
    let mut index = PackageIndex::default();
    for (n, archive) in def.archives.iter().enumerate() {
        let Some(base) = mirrors.url(&archive.mirror) else {
            return Err(StackError::NoMirror(format!(
                "no mirror for the {} archive ({}); give --security-mirror URL",
                archive.name, archive.mirror
            )));
        };
        for suite in &archive.suites {
            let release_url = format!("{base}/dists/{suite}/InRelease");
            events.event(&Event::Step(format!("Reading {release_url}")));
            let text = fetcher.bytes(&release_url, 64 << 20)?;
            let release =
                Release::from_inrelease(&String::from_utf8_lossy(&text), keyring, &release_url)?;
            for component in &archive.components {
                let stem = format!("{component}/binary-{arch}/Packages");
                let (path, compression) = [(".xz", "xz"), (".gz", "gz"), ("", "")]
                    .iter()
                    .map(|(suffix, c)| (format!("{stem}{suffix}"), *c))
                    .find(|(p, _)| release.sha256.contains_key(p))
                    .ok_or_else(|| StackError::IndexMissing {
                        release: release_url.clone(),
                        path: stem.clone(),
                    })?;
                let (size, expected) = &release.sha256[&path];
                let url = format!("{base}/dists/{suite}/{path}");
                let bytes = fetcher.bytes(&url, (*size).max(1) + 1)?;
                let found = sha256_hex(&bytes);
                if &found != expected {
                    return Err(StackError::IndexMismatch {
                        url,
                        expected: expected.clone(),
                        found,
                    });
                }
                let text = decompress(&bytes, compression, &url)?;
                index.add_packages_file(&text, arch, n, &url)?;
            }
        }
    }
    Ok(index)
}

fn decompress(bytes: &[u8], compression: &str, url: &str) -> Result<String, StackError> {
    let mut out = String::new();
    let result = match compression {
        "xz" => liblzma::read::XzDecoder::new(bytes).read_to_string(&mut out),
        "gz" => flate2::read::MultiGzDecoder::new(bytes).read_to_string(&mut out),
        _ => std::io::Read::read_to_string(&mut &bytes[..], &mut out),
    };
    result.map_err(|source| StackError::Io {
        path: PathBuf::from(url),
        source,
    })?;
    Ok(out)
}

/// Resolves `flavour` for `arch` against an index: lock entries, bottom layer first.
fn resolve(
    def: &StackDefinition,
    index: &PackageIndex,
    flavour: &str,
    arch: &str,
) -> Result<Vec<LockedPackage>, StackError> {
    let mut installed: BTreeMap<String, PackageRecord> = BTreeMap::new();
    let mut locked = Vec::new();
    for (level, flavour_def) in def.chain(flavour)? {
        let exclude: BTreeSet<String> = flavour_def
            .exclude
            .clone()
            .unwrap_or_else(|| def.stack.exclude.clone())
            .into_iter()
            .collect();
        let mut wanted = flavour_def.packages.clone();
        if flavour_def.include_essential {
            wanted.extend(index.essential());
        }
        for record in index.resolve(&wanted, &installed, &exclude)? {
            locked.push(LockedPackage {
                name: record.name.clone(),
                version: record.version.to_string(),
                architecture: record.architecture.clone(),
                arch: arch.to_string(),
                archive: def.archives[record.source].name.clone(),
                filename: record.filename.clone(),
                size: record.size,
                sha256: record.sha256.clone(),
                layer: level.to_string(),
            });
            installed.insert(record.name.clone(), record);
        }
    }
    Ok(locked)
}

/// Resolves every flavour in `flavours` (all if empty) for every architecture in `arches`
/// (all of the stack's if empty) from one fetch of the indexes, and writes the lock files
/// into the stack directory. Returns the files written.
pub fn lock(
    source: &StackSource,
    flavours: &[String],
    arches: &[String],
    options: &StackOptions,
    events: &dyn EventSink,
) -> Result<Vec<PathBuf>, StackError> {
    if source.dir().is_none() {
        return Err(StackError::ReadOnly {
            stack: source.label().to_string(),
        });
    }
    let def = source.definition()?;
    let arches: Vec<String> = if arches.is_empty() {
        def.stack.architectures.clone()
    } else {
        arches.to_vec()
    };
    for arch in &arches {
        check_arch(&def, arch)?;
    }
    let flavours: Vec<FlavourName> = if flavours.is_empty() {
        def.flavours.keys().cloned().collect()
    } else {
        flavours
            .iter()
            .map(|f| def.flavour(f).cloned())
            .collect::<Result<_, _>>()?
    };
    let mirrors = discover_mirrors(&def, options)?;
    let keyring = keyring(source, &def, options.skip_signature, events)?;
    let fetcher = Fetcher::new()?;
    let mut locks: BTreeMap<FlavourName, Lock> = BTreeMap::new();
    for arch in &arches {
        let index = fetch_indexes(&def, &mirrors, keyring.as_ref(), arch, &fetcher, events)?;
        events.event(&Event::Step(format!(
            "Resolving {} for {arch} ({} packages in the archive)",
            flavours
                .iter()
                .map(FlavourName::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            index.len()
        )));
        for flavour in &flavours {
            let entries = resolve(&def, &index, flavour.as_str(), arch)?;
            let lock = locks.entry(flavour.clone()).or_insert_with(|| Lock {
                stack: def.stack.name.clone(),
                flavour: flavour.clone(),
                definition: String::new(),
                packages: Vec::new(),
            });
            lock.definition = def.fingerprint(flavour.as_str())?;
            lock.packages.extend(entries);
        }
    }
    let mut written = Vec::new();
    for (flavour, mut new) in locks {
        // Keep the entries of architectures not locked this time.
        if let Some(old) = source.lock(flavour.as_str())? {
            new.packages.extend(
                old.packages
                    .into_iter()
                    .filter(|p| !arches.contains(&p.arch)),
            );
        }
        new.packages
            .sort_by(|a, b| (&a.arch, &a.name).cmp(&(&b.arch, &b.name)));
        written.push(source.write_lock(&new)?);
    }
    Ok(written)
}

/// Builds a stack flavour image into the store (see the module docs).
pub fn build(
    store: &Store,
    source: &StackSource,
    options: &StackOptions,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<StackImage, StackError> {
    let def = source.definition()?;
    let arch = options.arch.clone().unwrap_or_else(host_arch);
    check_arch(&def, &arch)?;
    let flavour = def.flavour(&options.flavour)?.clone();
    let chain: Vec<FlavourName> = def
        .chain(&options.flavour)?
        .into_iter()
        .map(|(n, _)| n.clone())
        .collect();
    let mirrors = discover_mirrors(&def, options)?;
    let fetcher = Fetcher::new()?;
    let packages = packages_to_install(source, &def, options, &arch, &mirrors, &fetcher, events)?;
    let debs = download(store, &def, &mirrors, &fetcher, &packages, events, cancel)?;

    let work = tempfile::Builder::new()
        .prefix("stack-")
        .tempdir_in(store.work_dir())
        .map_err(|source| StackError::Io {
            path: store.work_dir(),
            source,
        })?;
    let mut layers = Vec::new();
    for level in &chain {
        cancel.check()?;
        let level_packages: Vec<&LockedPackage> = packages
            .iter()
            .filter(|p| p.layer == level.as_str())
            .collect();
        let root = work.path().join(level.as_str());
        let base = chain.first() == Some(level);
        let blob = build_layer(
            store,
            &def,
            level.as_str(),
            base,
            &level_packages,
            &debs,
            &root,
            events,
        )?;
        layers.push(StackLayer {
            flavour: level.clone(),
            packages: level_packages.len(),
            blob,
        });
    }

    let platform = TargetPlatform {
        os: "linux".to_string(),
        architecture: arch.clone(),
        variant: (arch == "arm64").then(|| "v8".to_string()),
    };
    let mut package_list: Vec<String> = packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    package_list.sort();
    let config = image_config(&def, &flavour, &platform, &layers, &package_list, options)?;
    let written = write_image(
        store.layout(),
        layers
            .iter()
            .map(|l| descriptor(MediaType::ImageLayerGzip, &l.blob.digest, l.blob.size))
            .collect(),
        &config,
    )?;
    let name = store_name(&def.stack.name, &flavour)?;
    add_to_index(store, &name, &written.descriptor, &platform)?;
    Ok(StackImage {
        name,
        manifest: written.descriptor,
        platform,
        layers,
        packages: package_list,
    })
}

pub(super) fn discover_mirrors(
    def: &StackDefinition,
    options: &StackOptions,
) -> Result<Mirrors, StackError> {
    let suite = def
        .archives
        .first()
        .and_then(|a| a.suites.first())
        .cloned()
        .unwrap_or_default();
    mirror::discover(
        options.mirror.as_deref(),
        options.security_mirror.as_deref(),
        &suite,
    )
    .map_err(|e| StackError::NoMirror(e.to_string()))
}

/// The package files of the flavour for `arch`: from its lock (checked against the
/// definition), or resolved against the mirror now with `--no-lock`.
fn packages_to_install(
    source: &StackSource,
    def: &StackDefinition,
    options: &StackOptions,
    arch: &str,
    mirrors: &Mirrors,
    fetcher: &Fetcher,
    events: &dyn EventSink,
) -> Result<Vec<LockedPackage>, StackError> {
    if !options.use_lock {
        let keyring = keyring(source, def, options.skip_signature, events)?;
        let index = fetch_indexes(def, mirrors, keyring.as_ref(), arch, fetcher, events)?;
        return resolve(def, &index, &options.flavour, arch);
    }
    let lock = source
        .lock(&options.flavour)?
        .ok_or_else(|| StackError::NoLock {
            stack: def.stack.name.to_string(),
            flavour: options.flavour.clone(),
        })?;
    if lock.definition != def.fingerprint(&options.flavour)? {
        return Err(StackError::StaleLock {
            stack: def.stack.name.to_string(),
            flavour: options.flavour.clone(),
        });
    }
    let packages: Vec<LockedPackage> = lock
        .packages
        .into_iter()
        .filter(|p| p.arch == arch)
        .collect();
    if packages.is_empty() {
        return Err(StackError::LockMissingArch {
            stack: def.stack.name.to_string(),
            flavour: options.flavour.clone(),
            arch: arch.to_string(),
        });
    }
    Ok(packages)
}

/// Unpacks one flavour level's packages into `root`, configures them (and, for the bottom
/// level, lays out the base file system), and writes the layer.
#[allow(clippy::too_many_arguments)]
fn build_layer(
    store: &Store,
    def: &StackDefinition,
    level: &str,
    base: bool,
    packages: &[&LockedPackage],
    debs: &BTreeMap<String, PathBuf>,
    root: &Path,
    events: &dyn EventSink,
) -> Result<LayerBlob, StackError> {
    events.event(&Event::Step(format!(
        "Unpacking {} packages of {level}",
        packages.len()
    )));
    let mut unpacker = Unpacker::new(root)?;
    let mut controls: Vec<(String, Stanza)> = Vec::new();
    for package in packages {
        let path = &debs[&package.sha256];
        let file = fs::File::open(path).map_err(|source| StackError::Io {
            path: path.clone(),
            source,
        })?;
        let control = unpacker.unpack(std::io::BufReader::new(file), &package.name)?;
        controls.push((package.name.clone(), control));
    }
    if base {
        rootfs::base_layout(&mut unpacker, &def.user)?;
    }
    for note in rootfs::configure(&mut unpacker, &controls)? {
        events.event(&Event::Step(format!("  {note}")));
    }
    let metadata = Arc::new(unpacker.into_metadata());
    events.event(&Event::Step(format!("Writing the {level} layer")));
    let blob = write_layer(store.layout(), &root_layer(root, metadata))?;
    // kiln hashed the tar it wrote: the run image check need not read the layer again.
    crate::image::diff_ids::DiffIds::in_home(store.root()).record(&blob.digest, &blob.diff_id);
    events.event(&Event::Layer {
        name: format!("{}/{level}", def.stack.name),
        diff_id: blob.diff_id.clone(),
        size: blob.size,
        reused: blob.existed,
    });
    Ok(blob)
}

/// The cached `.deb` of every package in `packages` (sha256 → path), downloading those the
/// cache lacks from the mirrors of [`StackOptions::default`] (`KILN_DEBIAN_MIRROR`, the
/// host's apt sources); no mirror is looked for when the cache has them all.
pub(super) fn locked_debs(
    store: &Store,
    def: &StackDefinition,
    packages: &[LockedPackage],
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BTreeMap<String, PathBuf>, StackError> {
    let cache = store.root().join("cache").join("debs");
    let path = |p: &LockedPackage| cache.join(format!("{}.deb", p.sha256));
    if packages.iter().all(|p| path(p).is_file()) {
        return Ok(packages
            .iter()
            .map(|p| (p.sha256.clone(), path(p)))
            .collect());
    }
    let mirrors = discover_mirrors(def, &StackOptions::default())?;
    let fetcher = Fetcher::new()?;
    download(store, def, &mirrors, &fetcher, packages, events, cancel)
}

/// Unpacks `packages` (bottom first) into `root` and writes them as one layer, with each
/// package's `/var/lib/dpkg/status.d` record and what [`rootfs::configure`] does for them,
/// exactly as a flavour level of a stack image is made (no base layout: the layer goes on
/// top of a stack image that has it).
pub(super) fn packages_layer(
    store: &Store,
    packages: &[&LockedPackage],
    debs: &BTreeMap<String, PathBuf>,
    root: &Path,
) -> Result<LayerBlob, StackError> {
    let mut unpacker = Unpacker::new(root)?;
    let mut controls: Vec<(String, Stanza)> = Vec::new();
    for package in packages {
        let path = debs.get(&package.sha256).ok_or_else(|| StackError::Io {
            path: PathBuf::from(format!("{}.deb", package.sha256)),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let file = fs::File::open(path).map_err(|source| StackError::Io {
            path: path.clone(),
            source,
        })?;
        let control = unpacker.unpack(std::io::BufReader::new(file), &package.name)?;
        controls.push((package.name.clone(), control));
    }
    rootfs::configure(&mut unpacker, &controls)?;
    let metadata = Arc::new(unpacker.into_metadata());
    Ok(write_layer(store.layout(), &root_layer(root, metadata))?)
}

/// Downloads every package into the cache (four at a time), verified; returns sha256 → path.
fn download(
    store: &Store,
    def: &StackDefinition,
    mirrors: &Mirrors,
    fetcher: &Fetcher,
    packages: &[LockedPackage],
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<BTreeMap<String, PathBuf>, StackError> {
    let cache = store.root().join("cache").join("debs");
    let missing: Vec<&LockedPackage> = packages
        .iter()
        .filter(|p| !cache.join(format!("{}.deb", p.sha256)).is_file())
        .collect();
    if !missing.is_empty() {
        let bytes: u64 = missing.iter().map(|p| p.size).sum();
        events.event(&Event::Step(format!(
            "Downloading {} of {} packages ({}.{} MB)",
            missing.len(),
            packages.len(),
            bytes / 1_000_000,
            bytes % 1_000_000 / 100_000
        )));
    }
    let total: u64 = missing.iter().map(|p| p.size).sum();
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(package) = missing.get(i) else { break };
                    if cancel.is_cancelled() {
                        break;
                    }
                    let result = download_one(def, mirrors, fetcher, &cache, package, cancel);
                    let current = done.fetch_add(package.size, Ordering::SeqCst) + package.size;
                    events.event(&Event::Progress {
                        label: "downloading packages".to_string(),
                        current,
                        total,
                    });
                    if let Err(e) = result {
                        errors
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(e);
                        break;
                    }
                }
            });
        }
    });
    cancel.check()?;
    if let Some(error) = errors
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .next()
    {
        return Err(error);
    }
    Ok(packages
        .iter()
        .map(|p| (p.sha256.clone(), cache.join(format!("{}.deb", p.sha256))))
        .collect())
}

fn download_one(
    def: &StackDefinition,
    mirrors: &Mirrors,
    fetcher: &Fetcher,
    cache: &Path,
    package: &LockedPackage,
    cancel: &CancelToken,
) -> Result<(), StackError> {
    let archive = def
        .archives
        .iter()
        .find(|a| a.name == package.archive)
        .ok_or_else(|| StackError::Definition {
            stack: def.stack.name.to_string(),
            problem: format!(
                "the lock names archive {} for {}, which stack.toml does not define",
                package.archive, package.name
            ),
        })?;
    let base = mirrors.url(&archive.mirror).ok_or_else(|| {
        StackError::NoMirror(format!(
            "no mirror for the {} archive; give --security-mirror URL",
            archive.name
        ))
    })?;
    let url = format!("{base}/{}", package.filename);
    let dest = cache.join(format!("{}.deb", package.sha256));
    let downloaded = {
        let (fetcher, url) = (fetcher.clone(), url.clone());
        let (size, sha256) = (package.size, package.sha256.clone());
        unless_cancelled(cancel, move || {
            fetcher.download_verified(&url, &dest, size, &sha256)
        })?
    };
    downloaded.map_err(|e| {
        if e.is_not_found() {
            StackError::NotServed {
                package: package.name.clone(),
                version: package.version.clone(),
                url,
            }
        } else {
            StackError::Fetch(e)
        }
    })
}

/// Runs `work` on a thread of its own and waits for its result, or until `cancel` is
/// requested (checked every 100 ms): a mirror that stalls does not hold a cancelled build
/// until the fetcher's timeout. A cancelled wait leaves the thread to end on its own (a
/// download it completes is verified like any other).
fn unless_cancelled<T: Send + 'static>(
    cancel: &CancelToken,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Cancelled> {
    let (sender, receiver) = mpsc::sync_channel(1);
    let thread = std::thread::spawn(move || {
        // The receiver is gone only when the wait was cancelled.
        let _ = sender.send(work());
    });
    loop {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(value) => return Ok(value),
            Err(mpsc::RecvTimeoutError::Timeout) => cancel.check()?,
            // Ended without a result, the thread panicked: pass the panic on, as a scoped
            // thread would.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(
                thread
                    .join()
                    .err()
                    .unwrap_or_else(|| Box::new("a download ended without a result")),
            ),
        }
    }
}

fn image_config(
    def: &StackDefinition,
    flavour: &FlavourName,
    platform: &TargetPlatform,
    layers: &[StackLayer],
    packages: &[String],
    options: &StackOptions,
) -> Result<oci_spec::image::ImageConfiguration, StackError> {
    let invalid = |e: oci_spec::OciSpecError| StackError::Definition {
        stack: def.stack.name.to_string(),
        problem: e.to_string(),
    };
    let created = crate::reproducible::created_timestamp(options.source_date_epoch);
    let labels = std::collections::HashMap::from([
        (DISTRO_NAME.to_string(), def.stack.distro.name.clone()),
        (DISTRO_VERSION.to_string(), def.stack.distro.version.clone()),
        (STACK.to_string(), format!("{}/{flavour}", def.stack.name)),
        (STACK_PACKAGES.to_string(), packages.join(",")),
        (STACK_FORMAT.to_string(), FORMAT.to_string()),
        (
            "org.opencontainers.image.description".to_string(),
            format!(
                "kiln stack {} {flavour}: {}",
                def.stack.name,
                def.flavours
                    .get(flavour)
                    .map_or("", |f| f.description.as_str())
            ),
        ),
    ]);
    let config = ConfigBuilder::default()
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("CNB_USER_ID={}", def.user.uid),
            format!("CNB_GROUP_ID={}", def.user.gid),
        ])
        .user(format!("{}:{}", def.user.uid, def.user.gid))
        .labels(labels)
        .build()
        .map_err(invalid)?;
    let history = layers
        .iter()
        .map(|l| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!(
                    "kiln stack {}: {} ({} packages)",
                    def.stack.name, l.flavour, l.packages
                ))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(platform.architecture.as_str())
        .os(platform.os.as_str())
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    layers
                        .iter()
                        .map(|l| l.blob.diff_id.to_string())
                        .collect::<Vec<_>>(),
                )
                .build()
                .map_err(invalid)?,
        )
        .history(history);
    if let Some(v) = &platform.variant {
        builder = builder.variant(v.clone());
    }
    builder.build().map_err(invalid)
}

/// Names `manifest` in the store's image index `name`, replacing the entry for its platform
/// and keeping the others, so one name serves every architecture built.
fn add_to_index(
    store: &Store,
    name: &ImageName,
    manifest: &Descriptor,
    platform: &TargetPlatform,
) -> Result<(), StackError> {
    let layout = store.layout();
    let name_str = name.to_string();
    let _lock = store.lock()?;
    let mut entries: Vec<Descriptor> = Vec::new();
    if let Some(existing) = layout
        .read_index()?
        .manifests()
        .iter()
        .find(|d| ref_name(d) == Some(name_str.as_str()))
        && existing.media_type() == &MediaType::ImageIndex
        && let Ok(bytes) = layout.read_blob(existing.digest())
        && let Ok(index) = ImageIndex::from_reader(&bytes[..])
    {
        entries.extend(
            index
                .manifests()
                .iter()
                .filter(|d| {
                    d.platform()
                        .as_ref()
                        .is_none_or(|p| p.architecture().to_string() != platform.architecture)
                })
                .cloned(),
        );
    }
    let mut entry = manifest.clone();
    let mut p = PlatformBuilder::default()
        .os(platform.os.as_str())
        .architecture(platform.architecture.as_str());
    if let Some(v) = &platform.variant {
        p = p.variant(v.clone());
    }
    entry.set_platform(Some(p.build().map_err(|e| StackError::Definition {
        stack: name_str.clone(),
        problem: e.to_string(),
    })?));
    entries.push(entry);
    entries.sort_by_key(|d| d.platform().as_ref().map(|p| p.architecture().to_string()));
    let mut index = crate::image::layout::empty_index();
    index.set_manifests(entries);
    let bytes = crate::reproducible::canonical_json(&index).map_err(|e| StackError::Io {
        path: layout.root().to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let (digest, size) = layout.write_blob(&bytes)?;
    layout.tag(&descriptor(MediaType::ImageIndex, &digest, size), &name_str)?;
    Ok(())
}

/// The flavour of `source` to run apps that need `mixins` (Debian package names) on
/// `arch`: of the flavours whose lock for `arch` contains every mixin (a mixin `a | b` is
/// met by either), the one with the fewest packages.
pub fn choose_flavour(
    source: &StackSource,
    arch: &str,
    mixins: &BTreeSet<String>,
) -> Result<FlavourName, StackError> {
    let def = source.definition()?;
    let mut best: Option<(usize, FlavourName)> = None;
    for flavour in def.flavours.keys() {
        let Some(lock) = source.lock(flavour.as_str())? else {
            continue;
        };
        let names: BTreeSet<&str> = lock
            .packages
            .iter()
            .filter(|p| p.arch == arch)
            .map(|p| p.name.as_str())
            .collect();
        // A mixin may name alternatives, `a | b`, as Debian dependencies do (a package that
        // is called otherwise in another release).
        let has = |mixin: &String| mixin.split('|').any(|alt| names.contains(alt.trim()));
        if names.is_empty() || !mixins.iter().all(has) {
            continue;
        }
        if best.as_ref().is_none_or(|(count, _)| names.len() < *count) {
            best = Some((names.len(), flavour.clone()));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| StackError::NoFlavour {
        stack: def.stack.name.to_string(),
        mixins: mixins.iter().cloned().collect(),
        flavours: def.flavours.keys().map(ToString::to_string).collect(),
    })
}

/// The version of how kiln makes stack images (`rootfs::configure` and the layout): raise it
/// when a change makes images of the same lock differ, so stores rebuild them.
pub(super) const FORMAT: &str = "4";

/// Makes sure the store holds `flavour`'s image for `arch` built from the current lock,
/// building it if it is missing or was built from another lock. Returns its store name.
pub fn ensure_image(
    store: &Store,
    source: &StackSource,
    flavour: &FlavourName,
    arch: &str,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<ImageName, StackError> {
    let def = source.definition()?;
    let name = store_name(&def.stack.name, flavour)?;
    let mut wanted: Vec<String> = source
        .lock(flavour.as_str())?
        .map(|l| {
            l.packages
                .iter()
                .filter(|p| p.arch == arch)
                .map(|p| format!("{}={}", p.name, p.version))
                .collect()
        })
        .unwrap_or_default();
    wanted.sort();
    let platform = TargetPlatform {
        os: "linux".to_string(),
        architecture: arch.to_string(),
        variant: None,
    };
    let current = crate::transport::load(
        &crate::image::reference::ImageReference::Named(name.clone()),
        store,
        &platform,
    )
    .ok()
    .and_then(|image| {
        let labels = image.config.config().as_ref()?.labels().clone()?;
        (labels.get(STACK_FORMAT).map(String::as_str) == Some(FORMAT))
            .then(|| labels.get(STACK_PACKAGES).cloned())?
    });
    if current.as_deref() == Some(wanted.join(",").as_str()) {
        return Ok(name);
    }
    events.event(&Event::Step(format!(
        "Building {name} for {arch} from stack {} (once; later builds reuse it)",
        def.stack.name
    )));
    let options = StackOptions {
        flavour: flavour.to_string(),
        arch: Some(arch.to_string()),
        ..StackOptions::default()
    };
    Ok(build(store, source, &options, events, cancel)?.name)
}

/// The layer of an unpacked package root: all of `root`, owned by root, with the metadata
/// the unpacker recorded (modes, owners, links).
fn root_layer(
    root: &Path,
    metadata: Arc<BTreeMap<String, crate::layer::EntryMetadata>>,
) -> LayerSpec {
    LayerSpec {
        parents: Vec::new(),
        source: root.to_path_buf(),
        target: String::new(),
        only: None,
        uid: 0,
        gid: 0,
        entry_metadata: Some(metadata),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_are_chosen_by_the_packages_buildpacks_need() {
        let source = StackSource::open("bookworm").unwrap();
        let choose = |mixins: &[&str]| {
            choose_flavour(
                &source,
                "amd64",
                &mixins.iter().map(ToString::to_string).collect(),
            )
        };
        assert_eq!(choose(&[]).unwrap(), "base");
        assert_eq!(choose(&["python3"]).unwrap(), "python");
        assert_eq!(choose(&["libstdc++6"]).unwrap(), "cc");
        assert_eq!(choose(&["nodejs"]).unwrap(), "nodejs");
        assert_eq!(choose(&["dash", "coreutils"]).unwrap(), "shell");
        assert_eq!(choose(&["python3", "gcc-12"]).unwrap(), "build-python");
        // Build images: the smallest flavour with build-essential and the toolchain.
        assert_eq!(choose(&["build-essential"]).unwrap(), "build");
        assert_eq!(
            choose(&["build-essential", "golang-go"]).unwrap(),
            "build-go"
        );
        assert_eq!(
            choose(&["build-essential", "cargo | cargo-web"]).unwrap(),
            "build-rust"
        );
        assert_eq!(choose(&["build-essential", "npm"]).unwrap(), "build-nodejs");
        assert_eq!(
            choose(&["build-essential", "python3-pip", "python3-venv"]).unwrap(),
            "build-python"
        );
        let err = choose(&["no-such-package"]).unwrap_err().to_string();
        assert!(
            err.contains("no-such-package") && err.contains("--run-image"),
            "{err}"
        );
    }

    #[test]
    fn trixie_flavours_meet_the_buildpacks_mixins() {
        let source = StackSource::open("trixie").unwrap();
        for arch in ["amd64", "arm64"] {
            let choose = |mixins: &[&str]| {
                choose_flavour(
                    &source,
                    arch,
                    &mixins.iter().map(ToString::to_string).collect(),
                )
                .unwrap()
            };
            assert_eq!(choose(&[]), "base");
            assert_eq!(choose(&["python3"]), "python");
            assert_eq!(choose(&["nodejs"]), "nodejs");
            assert_eq!(choose(&["lighttpd"]), "static");
            assert_eq!(choose(&["dash", "coreutils"]), "shell");
            assert_eq!(choose(&["libstdc++6"]), "cc");
            // The built-in buildpacks' build-image mixins: trixie's own rustc and cargo.
            let rust = choose(&["build-essential", "rustc | rustc-web", "cargo | cargo-web"]);
            assert_eq!(rust, "build-rust");
            assert_eq!(choose(&["build-essential", "golang-go"]), "build-go");
            assert_eq!(choose(&["build-essential", "npm"]), "build-nodejs");
        }
    }
}
