//! The buildpacks of a build: the catalog of every buildpack kiln can find (given
//! directories, search roots, the built-ins and siblings of composite buildpacks) and the
//! order of groups to try (`--buildpack`, `--order`, or kiln's default order).

use std::fs;
use std::path::{Path, PathBuf};

use super::order::{GroupEntry, Order, OrderGroup};
use super::{Buildpack, BuildpackError, Catalog};

/// Loading the buildpacks of a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A buildpack could not be loaded or found.
    #[error(transparent)]
    Buildpack(#[from] BuildpackError),
    /// The built-in buildpacks could not be written out.
    #[error(transparent)]
    Builtin(#[from] super::builtin::BuiltinError),
    /// Both a group and an order file were given.
    #[error("give either --buildpack or --order, not both")]
    OrderAndBuildpacks,
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
    /// A buildpack given as a directory went missing from the catalog (a bug).
    #[error("a buildpack given as a directory is missing from the catalog")]
    Internal,
}

/// Which buildpacks to use.
#[derive(Debug, Clone, Default)]
pub struct BuildpackSelection {
    /// Buildpacks forming one group, in order (`--buildpack`). Empty (with no
    /// [`order_file`](Self::order_file)) means kiln's default order of built-in buildpacks.
    /// Composite buildpacks find their members among these, the search roots, the built-ins
    /// and their own sibling directories.
    pub buildpacks: Vec<BuildpackRef>,
    /// An `order.toml` to use instead of a single group (`--order FILE`).
    pub order_file: Option<PathBuf>,
    /// Directories searched for buildpacks referenced by id (`--buildpacks-dir DIR`).
    pub search_roots: Vec<PathBuf>,
}

/// One `--buildpack`: a directory, or the id (and optional version) of a built-in buildpack
/// or of one under the search roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildpackRef {
    /// A buildpack directory.
    Dir(PathBuf),
    /// `id` or `id@version`.
    Id {
        /// Buildpack id (`kiln/python`).
        id: String,
        /// Version, if given.
        version: Option<String>,
    },
}

impl BuildpackRef {
    /// Reads a `--buildpack` value: an existing directory, or a path starting with `.`,
    /// `/` or `~`, is a directory; anything else is an id, with an optional `@version`.
    pub fn parse(value: &str) -> Self {
        let path = Path::new(value);
        if path.is_dir() || value.starts_with(['.', '/', '~']) {
            return Self::Dir(path.to_path_buf());
        }
        match value.split_once('@') {
            Some((id, version)) => Self::Id {
                id: id.to_string(),
                version: Some(version.to_string()),
            },
            None => Self::Id {
                id: value.to_string(),
                version: None,
            },
        }
    }
}

/// Loads the buildpacks `selection` names into a catalog (the built-ins written out under
/// `builtin_root`, run by `exe`) and returns it with the order of groups to try.
pub fn load(
    selection: &BuildpackSelection,
    builtin_root: &Path,
    exe: &Path,
) -> Result<(Catalog, Order), CatalogError> {
    let mut catalog = Catalog::new();
    for root in &selection.search_roots {
        catalog.add_search_root(root)?;
    }
    // Directories first, so a packaged copy of a built-in (`kiln buildpack package`) given
    // with --buildpack is the one that runs.
    let mut from_dirs = Vec::new();
    for reference in &selection.buildpacks {
        if let BuildpackRef::Dir(dir) = reference {
            from_dirs.push(catalog.add_dir(dir)?);
        }
    }
    for dir in super::builtin::materialize(builtin_root, exe)? {
        let buildpack = Buildpack::load(&dir)?;
        if catalog
            .lookup(buildpack.id().as_str(), Some(buildpack.version()))
            .is_err()
        {
            catalog.add_dir(&dir)?;
        }
    }
    let mut from_dirs = from_dirs.into_iter();
    let mut group = Vec::new();
    for reference in &selection.buildpacks {
        let buildpack = match reference {
            BuildpackRef::Dir(_) => from_dirs.next().ok_or(CatalogError::Internal)?,
            BuildpackRef::Id { id, version } => catalog.lookup(id, version.as_deref())?.clone(),
        };
        group.push(GroupEntry::required(
            buildpack.id().to_string(),
            Some(buildpack.version().to_string()),
        ));
    }
    // Members of composite buildpacks given as directories are looked up among their
    // siblings too (the layout of buildpack repositories such as buildpacks/samples).
    let mut scanned: Vec<PathBuf> = Vec::new();
    loop {
        let parents: Vec<PathBuf> = catalog
            .buildpacks()
            .iter()
            .filter(|b| b.is_composite())
            .filter_map(|b| b.dir().parent().map(Path::to_path_buf))
            .filter(|p| !scanned.contains(p))
            .collect();
        if parents.is_empty() {
            break;
        }
        for parent in parents {
            if let Ok(entries) = fs::read_dir(&parent) {
                let mut dirs: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.join("buildpack.toml").is_file())
                    .collect();
                dirs.sort();
                for dir in dirs {
                    // Siblings that are not valid buildpacks are skipped here; a group that
                    // needs one reports it as not found.
                    let _ = catalog.add_dir(&dir);
                }
            }
            scanned.push(parent);
        }
    }
    let order = match &selection.order_file {
        Some(path) => {
            if !group.is_empty() {
                return Err(CatalogError::OrderAndBuildpacks);
            }
            // Named by the user (links followed), but bounded, never blocking on a FIFO and
            // never quoted in errors.
            let text = crate::untrusted::read_text(
                path,
                crate::untrusted::MAX_METADATA,
                crate::untrusted::Links::Follow,
            )
            .map_err(|e| match e {
                crate::untrusted::ReadError::Io { path, source } => {
                    CatalogError::ReadOrder { path, source }
                }
                other => CatalogError::ParseOrder {
                    path: path.clone(),
                    problem: crate::env::read_problem(&other),
                },
            })?;
            let order: Order = toml::from_str(&text).map_err(|e| CatalogError::ParseOrder {
                path: path.clone(),
                problem: crate::untrusted::toml_problem(&text, &e),
            })?;
            if order.order.iter().all(|g| g.group.is_empty()) {
                return Err(CatalogError::ParseOrder {
                    path: path.clone(),
                    problem: "the order has no groups; add [[order]] [[order.group]] id = …"
                        .to_string(),
                });
            }
            order
        }
        None if group.is_empty() => super::builtin::default_order(),
        None => Order {
            order: vec![OrderGroup { group }],
        },
    };
    Ok((catalog, order))
}
