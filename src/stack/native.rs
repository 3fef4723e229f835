//! Native libraries: which Debian packages of a stack provide the shared libraries an app's
//! files need and its run image lacks, and the image layer that adds them.
//!
//! The packages come from one lock of the stack — the build flavour the buildpacks ran in,
//! whose `.deb` files kiln already has — so the libraries are the very builds the app was
//! compiled against. A soname maps to the package whose `shlibs` or `symbols` control file
//! declares it ([`super::deb::read_info`]; Debian Policy §8.6 makes every package with a
//! public shared library ship one). What that package needs is resolved over the same lock
//! with the stack's resolver, the run image's packages and the stack's `exclude` list
//! counting as present, so the layer holds only what the run image lacks. The layer is made
//! by the same unpacking and configuration as a stack image's flavour level, so the same
//! packages give the same bytes on any machine; it is recorded by its package list
//! (`$KILN_HOME/cache/native-layers/`) and made once.
//!
//! What each `.deb` declares is recorded by its SHA-256 in `$KILN_HOME/cache/deb-info/`
//! (a file's content never changes, so the record never goes stale): after the first time,
//! mapping needs no `.deb` at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StackError;
use super::build::{FORMAT, locked_debs, packages_layer};
use super::control::{Version, parse_stanzas};
use super::deb::read_info;
use super::definition::{LockedPackage, StackDefinition, StackSource};
use super::resolve::{PackageIndex, PackageRecord};
use crate::event::{CancelToken, Event, EventSink};
use crate::image::digest::sha256_digest;
use crate::layer::LayerBlob;
use crate::store::Store;

/// Where the packages come from: a flavour's lock of a stack, for one architecture.
pub(crate) struct PackageSource<'a> {
    /// The stack.
    pub source: &'a StackSource,
    /// The flavour whose lock is used.
    pub flavour: &'a str,
    /// The Debian architecture (`amd64`).
    pub arch: &'a str,
}

/// What [`resolve_libraries`] found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolution {
    /// Each mapped soname and the package that declares it.
    pub providers: BTreeMap<String, LockedPackage>,
    /// Sonames no package of the lock declares.
    pub unmapped: Vec<String>,
    /// Sonames declared by a package the run image already has (the file is there, but not
    /// where the loader looks).
    pub in_run_image: BTreeMap<String, String>,
    /// The packages to add: the providers and what they need that the run image lacks,
    /// sorted by name.
    pub install: Vec<LockedPackage>,
}

/// What a `.deb` declares, as recorded in `cache/deb-info/<sha256>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DebRecord {
    /// The control stanza, deb822.
    control: String,
    /// Declared sonames.
    sonames: Vec<String>,
}

/// The largest record read back.
const MAX_RECORD: u64 = 16 << 20;

/// Maps `sonames` to packages of `from`'s lock and resolves what to install on a run image
/// that has `run_packages` (name → version).
pub(crate) fn resolve_libraries(
    store: &Store,
    from: &PackageSource<'_>,
    run_packages: &BTreeMap<String, String>,
    sonames: &BTreeSet<String>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<Resolution, StackError> {
    let def = from.source.definition()?;
    let lock = locked(from, &def)?;
    let records = deb_records(store, &def, &lock, events, cancel)?;
    let mut declared: BTreeMap<&str, Vec<&LockedPackage>> = BTreeMap::new();
    for (package, record) in lock.iter().zip(&records) {
        for soname in &record.sonames {
            declared.entry(soname.as_str()).or_default().push(package);
        }
    }
    let mut resolution = Resolution::default();
    for soname in sonames {
        let Some(candidates) = declared.get(soname.as_str()) else {
            resolution.unmapped.push(soname.clone());
            continue;
        };
        // Several packages may declare one soname (a library and its transitional twin):
        // the run image's, else the first by name (the lock is sorted by name).
        if let Some(have) = candidates
            .iter()
            .find(|p| run_packages.contains_key(&p.name))
        {
            resolution
                .in_run_image
                .insert(soname.clone(), have.name.clone());
            continue;
        }
        resolution
            .providers
            .insert(soname.clone(), candidates[0].clone());
    }
    if resolution.providers.is_empty() {
        return Ok(resolution);
    }

    // The lock as a package index: the control stanzas with the lock's file fields.
    let mut text = String::new();
    for (package, record) in lock.iter().zip(&records) {
        let bad = |problem: String| StackError::Definition {
            stack: def.stack.name.to_string(),
            problem: format!(
                "the control file of {} {}: {problem}",
                package.name, package.version
            ),
        };
        let mut stanza = parse_stanzas(&record.control)
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| bad("it is empty".to_string()))?;
        stanza.set("Filename", &package.filename);
        stanza.set("Size", &package.size.to_string());
        stanza.set("SHA256", &package.sha256);
        text.push_str(&stanza.to_deb822());
        text.push('\n');
    }
    let mut index = PackageIndex::default();
    index.add_packages_file(&text, from.arch, 0, &format!("the {} lock", from.flavour))?;
    let mut installed: BTreeMap<String, PackageRecord> = BTreeMap::new();
    for (name, version) in run_packages {
        let Ok(parsed) = Version::parse(version) else {
            continue;
        };
        let record = match index.latest(name) {
            Some(r) if r.version == parsed => r.clone(),
            _ => PackageRecord::installed(name, parsed, from.arch),
        };
        installed.insert(name.clone(), record);
    }
    let exclude: BTreeSet<String> = def.stack.exclude.iter().cloned().collect();
    let wanted: Vec<String> = resolution
        .providers
        .values()
        .map(|p| p.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let chosen = index.resolve(&wanted, &installed, &exclude)?;
    let by_name: BTreeMap<&str, &LockedPackage> =
        lock.iter().map(|p| (p.name.as_str(), p)).collect();
    resolution.install = chosen
        .iter()
        .filter_map(|r| by_name.get(r.name.as_str()).map(|p| (*p).clone()))
        .collect();
    Ok(resolution)
}

/// The lock's packages for the architecture, checked against the definition.
fn locked(
    from: &PackageSource<'_>,
    def: &StackDefinition,
) -> Result<Vec<LockedPackage>, StackError> {
    let lock = from
        .source
        .lock(from.flavour)?
        .ok_or_else(|| StackError::NoLock {
            stack: def.stack.name.to_string(),
            flavour: from.flavour.to_string(),
        })?;
    if lock.definition != def.fingerprint(from.flavour)? {
        return Err(StackError::StaleLock {
            stack: def.stack.name.to_string(),
            flavour: from.flavour.to_string(),
        });
    }
    let mut packages: Vec<LockedPackage> = lock
        .packages
        .into_iter()
        .filter(|p| p.arch == from.arch)
        .collect();
    if packages.is_empty() {
        return Err(StackError::LockMissingArch {
            stack: def.stack.name.to_string(),
            flavour: from.flavour.to_string(),
            arch: from.arch.to_string(),
        });
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(packages)
}

/// What each package's `.deb` declares, in `lock`'s order: recorded ones read back, the
/// others read from their `.deb` (downloaded if the cache lacks it) and recorded.
fn deb_records(
    store: &Store,
    def: &StackDefinition,
    lock: &[LockedPackage],
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<Vec<DebRecord>, StackError> {
    let dir = store.root().join("cache").join("deb-info");
    let record_path = |p: &LockedPackage| dir.join(format!("{}.json", p.sha256));
    let read_record = |p: &LockedPackage| -> Option<DebRecord> {
        let bytes = crate::untrusted::read_file(
            &record_path(p),
            MAX_RECORD,
            crate::untrusted::Links::Refuse,
        )
        .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let mut records: Vec<Option<DebRecord>> = lock.iter().map(read_record).collect();
    let missing: Vec<LockedPackage> = lock
        .iter()
        .zip(&records)
        .filter(|(_, r)| r.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    if !missing.is_empty() {
        events.event(&Event::Step(format!(
            "Reading the shared libraries {} packages of stack {} declare (once)",
            missing.len(),
            def.stack.name
        )));
        let debs = locked_debs(store, def, &missing, events, cancel)?;
        fs::create_dir_all(&dir).map_err(|source| StackError::Io {
            path: dir.clone(),
            source,
        })?;
        for (package, slot) in lock.iter().zip(records.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            cancel.check()?;
            let path = debs.get(&package.sha256).cloned().unwrap_or_default();
            let file = fs::File::open(&path).map_err(|source| StackError::Io {
                path: path.clone(),
                source,
            })?;
            let info = read_info(std::io::BufReader::new(file), &package.name)?;
            let record = DebRecord {
                control: info.control.to_deb822(),
                sonames: info.sonames,
            };
            // Failing to record only means reading the .deb again next time.
            if let Ok(json) = serde_json::to_vec(&record) {
                let _ = crate::image::layout::write_atomic(&record_path(package), &json);
            }
            *slot = Some(record);
        }
    }
    Ok(records.into_iter().flatten().collect())
}

/// What [`resolve_requested`] found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requested {
    /// Requested packages the stack's archive does not have.
    pub missing: Vec<String>,
    /// The packages to add: those requested that the run image lacks and what they need that
    /// it lacks, sorted by name.
    pub install: Vec<LockedPackage>,
}

/// Resolves packages a buildpack asked for by name (`r-cran-jsonlite`) against the stack's
/// archive as it is now — its `InRelease` verified with the stack's keys, its `Packages`
/// indexes with the signed SHA-256, exactly as `kiln stack lock` reads them — on a run image
/// that has `run_packages` (name → version), `exclude` counting as present. The archive
/// serves one version of a package per suite, so the choice is the newest of the stack's
/// suites (security updates included), like a lock made now; the packages the run image has
/// keep their locked versions.
pub(crate) fn resolve_requested(
    source: &StackSource,
    arch: &str,
    run_packages: &BTreeMap<String, String>,
    exclude: &BTreeSet<String>,
    names: &[String],
    events: &dyn EventSink,
) -> Result<Requested, StackError> {
    use super::build::{discover_mirrors, fetch_indexes, keyring};
    let def = source.definition()?;
    let mirrors = discover_mirrors(&def, &super::StackOptions::default())?;
    let keys = keyring(source, &def, false, events)?;
    let fetcher = super::fetch::Fetcher::new()?;
    let index = fetch_indexes(&def, &mirrors, keys.as_ref(), arch, &fetcher, events)?;
    let mut result = Requested {
        missing: names
            .iter()
            .filter(|n| index.latest(n).is_none() && !run_packages.contains_key(*n))
            .cloned()
            .collect(),
        ..Requested::default()
    };
    if !result.missing.is_empty() {
        return Ok(result);
    }
    // The run image's packages as installed: the archive's record of that version, else the
    // archive's newest record with the locked version (its Provides still count: r-base-core
    // provides r-api-4.0, which every r-cran package depends on).
    let mut installed: BTreeMap<String, PackageRecord> = BTreeMap::new();
    for (name, version) in run_packages {
        let Ok(parsed) = Version::parse(version) else {
            continue;
        };
        let record = match index.latest(name) {
            Some(r) => PackageRecord {
                version: parsed,
                ..r.clone()
            },
            None => PackageRecord::installed(name, parsed, arch),
        };
        installed.insert(name.clone(), record);
    }
    let wanted: Vec<String> = names
        .iter()
        .filter(|n| !run_packages.contains_key(*n))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut install: Vec<LockedPackage> = index
        .resolve(&wanted, &installed, exclude)?
        .into_iter()
        .map(|record| LockedPackage {
            name: record.name.clone(),
            version: record.version.to_string(),
            architecture: record.architecture.clone(),
            arch: arch.to_string(),
            archive: def
                .archives
                .get(record.source)
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            filename: record.filename.clone(),
            size: record.size,
            sha256: record.sha256.clone(),
            layer: "packages".to_string(),
        })
        .collect();
    install.sort_by(|a, b| a.name.cmp(&b.name));
    result.install = install;
    Ok(result)
}

/// A native-libraries layer as recorded in `cache/native-layers/<key>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct LayerRecord {
    diff_id: String,
    digest: String,
    size: u64,
    uncompressed_size: u64,
}

/// The layer holding `packages` (made once, then found again by its package list).
pub(crate) fn packages_layer_for(
    store: &Store,
    source: &StackSource,
    packages: &[LockedPackage],
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<LayerBlob, StackError> {
    let def = source.definition()?;
    let mut sorted: Vec<&LockedPackage> = packages.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let key_text = std::iter::once(format!("format {FORMAT}"))
        .chain(
            sorted
                .iter()
                .map(|p| format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256)),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let key = sha256_digest(key_text.as_bytes()).digest().to_string();
    let dir = store.root().join("cache").join("native-layers");
    let record_path = dir.join(format!("{key}.json"));
    if let Some(blob) = recorded_layer(store, &record_path) {
        return Ok(blob);
    }
    cancel.check()?;
    let debs = locked_debs(store, &def, packages, events, cancel)?;
    let work = tempfile::Builder::new()
        .prefix("native-")
        .tempdir_in(store.work_dir())
        .map_err(|source| StackError::Io {
            path: store.work_dir(),
            source,
        })?;
    events.event(&Event::Step(format!(
        "Unpacking {} packages into one layer after the run image",
        sorted.len()
    )));
    let blob = packages_layer(store, &sorted, &debs, &work.path().join("root"))?;
    crate::image::diff_ids::DiffIds::in_home(store.root()).record(&blob.digest, &blob.diff_id);
    let record = LayerRecord {
        diff_id: blob.diff_id.to_string(),
        digest: blob.digest.to_string(),
        size: blob.size,
        uncompressed_size: blob.uncompressed_size,
    };
    if fs::create_dir_all(&dir).is_ok()
        && let Ok(json) = serde_json::to_vec(&record)
    {
        let _ = crate::image::layout::write_atomic(&record_path, &json);
    }
    Ok(blob)
}

/// The recorded layer at `path`, if its blob is still in the store.
fn recorded_layer(store: &Store, path: &Path) -> Option<LayerBlob> {
    let bytes =
        crate::untrusted::read_file(path, MAX_RECORD, crate::untrusted::Links::Refuse).ok()?;
    let record: LayerRecord = serde_json::from_slice(&bytes).ok()?;
    let digest: oci_spec::image::Digest = record.digest.parse().ok()?;
    let diff_id: oci_spec::image::Digest = record.diff_id.parse().ok()?;
    store.layout().has_blob(&digest).then_some(LayerBlob {
        diff_id,
        digest,
        size: record.size,
        uncompressed_size: record.uncompressed_size,
        existed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::definition::Lock;

    /// A stack `t` whose `build` lock has `(name, version, control fields, sonames)`, with
    /// what each `.deb` declares already recorded (so no `.deb` is needed).
    fn stack(store: &Store, dir: &Path, packages: &[(&str, &str, &str, &[&str])]) -> StackSource {
        fs::write(
            dir.join("stack.toml"),
            "[stack]\nname = \"t\"\ndistro = { name = \"debian\", version = \"13\" }\n\
             architectures = [\"amd64\"]\nexclude = [\"debconf\"]\n\
             [[archive]]\nname=\"main\"\nmirror=\"debian\"\nsuites=[\"t\"]\ncomponents=[\"main\"]\n\
             [user]\nname=\"cnb\"\nuid=1000\ngid=1000\nhome=\"/home/cnb\"\n\
             [flavours.base]\npackages = [\"libc6\"]\n\
             [flavours.build]\nextends = \"base\"\npackages = [\"libpq-dev\"]\n",
        )
        .unwrap();
        let source = StackSource::open(dir.to_str().unwrap()).unwrap();
        let def = source.definition().unwrap();
        let info = store.root().join("cache/deb-info");
        fs::create_dir_all(&info).unwrap();
        let mut locked = Vec::new();
        for (i, (name, version, fields, sonames)) in packages.iter().enumerate() {
            let sha256 = format!("{i:064x}");
            let control =
                format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\n{fields}");
            let record = DebRecord {
                control,
                sonames: sonames.iter().map(ToString::to_string).collect(),
            };
            fs::write(
                info.join(format!("{sha256}.json")),
                serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
            locked.push(LockedPackage {
                name: (*name).to_string(),
                version: (*version).to_string(),
                architecture: "amd64".into(),
                arch: "amd64".into(),
                archive: "main".into(),
                filename: format!("pool/{name}.deb"),
                size: 1,
                sha256,
                layer: "build".into(),
            });
        }
        source
            .write_lock(&Lock {
                stack: def.stack.name.clone(),
                flavour: "build".parse().unwrap(),
                definition: def.fingerprint("build").unwrap(),
                packages: locked,
            })
            .unwrap();
        source
    }

    #[test]
    fn sonames_map_to_packages_and_their_closure_minus_the_run_image() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path().join("home")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = stack(
            &store,
            dir.path(),
            &[
                ("libc6", "2.41-1", "", &["libc.so.6"]),
                ("libssl3t64", "3.5-1", "Depends: libc6\n", &["libssl.so.3"]),
                (
                    "libkrb5-3",
                    "1.21-1",
                    "Depends: libc6, debconf\n",
                    &["libkrb5.so.3"],
                ),
                (
                    "libpq5",
                    "17.12-0",
                    "Depends: libc6 (>= 2.38), libkrb5-3, libssl3t64 (>= 3.0)\n",
                    &["libpq.so.5"],
                ),
                ("libpq-dev", "17.12-0", "Depends: libpq5 (= 17.12-0)\n", &[]),
            ],
        );
        let run: BTreeMap<String, String> = [("libc6", "2.41-1"), ("libssl3t64", "3.5-1")]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let sonames: BTreeSet<String> = ["libpq.so.5", "libssl.so.3", "libvendor.so.4"]
            .into_iter()
            .map(str::to_string)
            .collect();
        let from = PackageSource {
            source: &source,
            flavour: "build",
            arch: "amd64",
        };
        let events = |_: &Event| {};
        let found =
            resolve_libraries(&store, &from, &run, &sonames, &events, &CancelToken::new()).unwrap();
        assert_eq!(found.providers["libpq.so.5"].name, "libpq5");
        assert_eq!(found.unmapped, ["libvendor.so.4"]);
        // libssl.so.3 is the run image's own package's: nothing to add for it.
        assert_eq!(found.in_run_image["libssl.so.3"], "libssl3t64");
        // libpq5 and what it needs that the run image lacks; debconf is excluded.
        let names: Vec<&str> = found.install.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libkrb5-3", "libpq5"]);
    }
}
