//! kiln's built-in buildpacks (`kiln/python`, `kiln/nodejs`, `kiln/go`, `kiln/rust`,
//! `kiln/static`, `kiln/procfile`; their code is the `kiln-buildpacks` crate in
//! `buildpacks/`), written out as ordinary buildpack directories.
//!
//! Each directory holds the buildpack's real `buildpack.toml`, and `bin/detect` and
//! `bin/build` linking to the kiln executable, which runs the buildpack when started under
//! those names ([`run_if_invoked`]). So built-in buildpacks run exactly as third-party ones
//! do: same sandbox, environment, arguments and output files.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::buildpack::order::{GroupEntry, Order, OrderGroup};

pub use kiln_buildpacks::{BUILTINS, Builtin, run_if_invoked};

/// Errors writing built-in buildpacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuiltinError {
    /// No built-in buildpack has this id.
    #[error("there is no built-in buildpack {id}; the built-ins are {}", known())]
    Unknown {
        /// The id asked for.
        id: String,
    },
    /// kiln's own executable could not be found.
    #[error("cannot find the kiln executable that runs the built-in buildpacks")]
    Executable(#[source] io::Error),
    /// A file could not be written.
    #[error("failed to write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The package destination is in use.
    #[error("{path} already exists and is not empty; give a new directory")]
    DestinationExists {
        /// The directory.
        path: PathBuf,
    },
}

fn known() -> String {
    BUILTINS.iter().map(|b| b.id).collect::<Vec<_>>().join(", ")
}

/// The built-in buildpack with this id.
pub fn find(id: &str) -> Result<&'static Builtin, BuiltinError> {
    kiln_buildpacks::builtin(id).ok_or_else(|| BuiltinError::Unknown { id: id.to_string() })
}

/// The executable that runs built-in buildpacks: `exe`, else the running program (which must
/// call [`run_if_invoked`] first thing in `main`, as the `kiln` binary does).
pub fn executable(exe: Option<&Path>) -> Result<PathBuf, BuiltinError> {
    match exe {
        Some(path) => std::path::absolute(path).map_err(BuiltinError::Executable),
        None => std::env::current_exe().map_err(BuiltinError::Executable),
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<(), BuiltinError> {
    fs::write(path, contents).map_err(|source| BuiltinError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), BuiltinError> {
    fs::create_dir_all(path).map_err(|source| BuiltinError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn symlink(target: &Path, link: &Path) -> Result<(), BuiltinError> {
    std::os::unix::fs::symlink(target, link).map_err(|source| BuiltinError::Write {
        path: link.to_path_buf(),
        source,
    })
}

/// Writes every built-in buildpack under `root` (`root/<escaped id>/<version>/`), with
/// `bin/detect` and `bin/build` linking to `exe`. Returns their directories.
pub fn materialize(root: &Path, exe: &Path) -> Result<Vec<PathBuf>, BuiltinError> {
    let mut dirs = Vec::new();
    for builtin in BUILTINS {
        let dir = root
            .join(builtin.id.replace('/', "_"))
            .join(builtin.version);
        mkdir(&dir.join("bin"))?;
        write(&dir.join("buildpack.toml"), builtin.descriptor.as_bytes())?;
        for name in ["detect", "build"] {
            symlink(exe, &dir.join("bin").join(name))?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Writes the built-in buildpack `id` to `dest` as a standalone buildpack directory that
/// any CNB platform runs: its `buildpack.toml`, a copy of `exe` as `bin/kiln`, and
/// `bin/detect` and `bin/build` linking to it. `dest` must not exist or be empty; the
/// directory appears complete or not at all.
pub fn package(id: &str, dest: &Path, exe: &Path) -> Result<PathBuf, BuiltinError> {
    let builtin = find(id)?;
    if fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BuiltinError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    mkdir(&parent)?;
    let temp = tempfile::Builder::new()
        .prefix(".kiln-package-")
        .tempdir_in(&parent)
        .map_err(|source| BuiltinError::Write {
            path: parent.clone(),
            source,
        })?;
    let bin = temp.path().join("bin");
    mkdir(&bin)?;
    write(
        &temp.path().join("buildpack.toml"),
        builtin.descriptor.as_bytes(),
    )?;
    fs::copy(exe, bin.join("kiln")).map_err(|source| BuiltinError::Write {
        path: bin.join("kiln"),
        source,
    })?;
    for name in ["detect", "build"] {
        symlink(Path::new("kiln"), &bin.join(name))?;
    }
    // A fresh temp dir is 0700; a buildpack directory is read by other users too.
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755)).map_err(|source| {
        BuiltinError::Write {
            path: temp.path().to_path_buf(),
            source,
        }
    })?;
    if dest.exists() {
        fs::remove_dir(dest).map_err(|source| BuiltinError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
    }
    let kept = temp.keep();
    fs::rename(&kept, dest).map_err(|source| BuiltinError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    Ok(dest.to_path_buf())
}

/// kiln's default order: each language buildpack with its helpers
/// (`kiln_buildpacks::HELPERS`: kiln/static after kiln/nodejs) and `kiln/procfile` as
/// optional members, then `kiln/procfile` alone (see `kiln_buildpacks::DEFAULT_ORDER` for
/// the precedence).
pub fn default_order() -> Order {
    let version = Some(kiln_buildpacks::VERSION.to_string());
    let procfile = GroupEntry {
        id: kiln_buildpacks::PROCFILE.to_string(),
        version: version.clone(),
        optional: true,
    };
    let mut order: Vec<OrderGroup> = kiln_buildpacks::DEFAULT_ORDER
        .iter()
        .map(|id| {
            let mut group = vec![GroupEntry::required(*id, version.clone())];
            group.extend(
                kiln_buildpacks::HELPERS
                    .iter()
                    .filter(|(member, _)| member == id)
                    .map(|(_, helper)| GroupEntry {
                        id: (*helper).to_string(),
                        version: version.clone(),
                        optional: true,
                    }),
            );
            group.push(procfile.clone());
            OrderGroup { group }
        })
        .collect();
    order.push(OrderGroup {
        group: vec![GroupEntry::required(kiln_buildpacks::PROCFILE, version)],
    });
    Order { order }
}

/// What kiln's built-in buildpacks recognise (from their `buildpack.toml`s) and how to bring
/// another buildpack: the hint kiln gives when no buildpack group passed detection.
pub fn nothing_detected_hint() -> String {
    let mut text =
        String::from("hint: kiln's built-in buildpacks recognise an app by these files:");
    for line in kiln_buildpacks::detection_summary().lines() {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text.push_str(
        "\nfor another kind of app, add a buildpack that builds it: --buildpack DIR|ID (a buildpack directory, or an id found under --buildpacks-dir; repeat it to build a group), or a whole order of groups with --order FILE (order.toml)",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildpack::Buildpack;

    #[test]
    fn materialized_builtins_load_as_buildpacks() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let dirs = materialize(dir.path(), &exe).unwrap();
        assert_eq!(dirs.len(), BUILTINS.len());
        for d in dirs {
            let bp = Buildpack::load(&d).unwrap();
            assert!(bp.id().as_str().starts_with("kiln/"));
            assert_eq!(fs::read_link(d.join("bin/detect")).unwrap(), exe);
        }
    }

    #[test]
    fn default_order_ends_with_procfile_alone() {
        let order = default_order();
        assert_eq!(order.order.len(), kiln_buildpacks::DEFAULT_ORDER.len() + 1);
        assert!(order.order[0].group[1].optional);
        assert_eq!(order.order.last().unwrap().group[0].id, "kiln/procfile");
    }

    #[test]
    fn package_refuses_a_used_directory_and_unknown_ids() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("exe");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        let dest = dir.path().join("out/python");
        package("kiln/python", &dest, &exe).unwrap();
        assert!(dest.join("buildpack.toml").is_file());
        assert_eq!(
            fs::read_link(dest.join("bin/build")).unwrap(),
            Path::new("kiln")
        );
        assert!(matches!(
            package("kiln/python", &dest, &exe),
            Err(BuiltinError::DestinationExists { .. })
        ));
        assert!(matches!(
            package("kiln/cobol", &dir.path().join("x"), &exe),
            Err(BuiltinError::Unknown { .. })
        ));
    }
}
