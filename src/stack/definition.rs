//! Stack definitions (`stacks/<name>/stack.toml`), lock files, and where they are read from.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StackError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/stacks.rs"));
}

/// A parsed `stack.toml`. Unknown keys are errors: a typo must not silently change an image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackDefinition {
    /// The `[stack]` table.
    pub stack: StackInfo,
    /// Package archives, in order of preference.
    #[serde(rename = "archive")]
    pub archives: Vec<ArchiveDef>,
    /// The CNB user.
    pub user: UserDef,
    /// Flavours by name.
    pub flavours: BTreeMap<String, FlavourDef>,
}

/// The `[stack]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackInfo {
    /// Stack name (`bookworm`).
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// The distribution, as `/etc/os-release` names it.
    pub distro: DistroDef,
    /// Architectures it can be built for.
    pub architectures: Vec<String>,
    /// Keyring files (relative to the stack directory) that sign the archives.
    #[serde(default)]
    pub keyring: Vec<String>,
    /// Packages assumed present but never installed.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A distribution.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistroDef {
    /// `ID` (`debian`).
    pub name: String,
    /// `VERSION_ID` (`12`).
    pub version: String,
}

/// A package archive.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveDef {
    /// Name used in lock files (`main`, `security`).
    pub name: String,
    /// Which mirror serves it: `debian` or `debian-security`.
    pub mirror: String,
    /// Suites.
    pub suites: Vec<String>,
    /// Components.
    pub components: Vec<String>,
}

/// The CNB user of the images.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserDef {
    /// User name.
    pub name: String,
    /// User ID.
    pub uid: u64,
    /// Group ID.
    pub gid: u64,
    /// Home directory.
    pub home: String,
}

/// A flavour: packages on top of another flavour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlavourDef {
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The flavour it builds on (its layers are shared).
    #[serde(default)]
    pub extends: Option<String>,
    /// Packages to install (with their dependencies).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Also install every `Essential: yes` package (a shell, coreutils, …).
    #[serde(default, rename = "include-essential")]
    pub include_essential: bool,
    /// Replaces the stack's exclude list for this flavour's layer.
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
}

impl StackDefinition {
    /// The flavours from the bottom (`base`) up to `flavour`.
    pub fn chain(&self, flavour: &str) -> Result<Vec<(&str, &FlavourDef)>, StackError> {
        let mut chain = Vec::new();
        let mut current = Some(flavour);
        while let Some(name) = current {
            let (key, def) =
                self.flavours
                    .get_key_value(name)
                    .ok_or_else(|| StackError::UnknownFlavour {
                        stack: self.stack.name.clone(),
                        flavour: name.to_string(),
                        available: self.flavours.keys().cloned().collect(),
                    })?;
            if chain.iter().any(|(n, _)| *n == key.as_str()) {
                return Err(StackError::Definition {
                    stack: self.stack.name.clone(),
                    problem: format!("flavour {flavour} extends itself (through {name})"),
                });
            }
            chain.push((key.as_str(), def));
            current = def.extends.as_deref();
        }
        chain.reverse();
        Ok(chain)
    }

    /// A fingerprint of everything in the definition that decides `flavour`'s packages, so a
    /// lock made from an older definition is noticed.
    pub fn fingerprint(&self, flavour: &str) -> Result<String, StackError> {
        #[derive(Serialize)]
        struct Inputs<'a> {
            exclude: &'a [String],
            archives: &'a [ArchiveDef],
            chain: Vec<(&'a str, &'a FlavourDef)>,
        }
        let inputs = Inputs {
            exclude: &self.stack.exclude,
            archives: &self.archives,
            chain: self.chain(flavour)?,
        };
        let json =
            crate::reproducible::canonical_json(&inputs).map_err(|e| StackError::Definition {
                stack: self.stack.name.clone(),
                problem: e.to_string(),
            })?;
        Ok(format!("sha256:{}", super::fetch::sha256_hex(&json)))
    }
}

/// A lock file: exactly which package files make a flavour, per architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Stack name.
    pub stack: String,
    /// Flavour name.
    pub flavour: String,
    /// [`StackDefinition::fingerprint`] of the definition it was made from.
    pub definition: String,
    /// The packages.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// One package file of a lock.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The package's own architecture (`amd64`, `all`).
    pub architecture: String,
    /// The image architecture this entry is for.
    pub arch: String,
    /// Which archive (by name) serves it.
    pub archive: String,
    /// Path on the mirror.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// The flavour level (layer) it belongs to.
    pub layer: String,
}

impl Lock {
    /// The lock file's text.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        Ok(format!(
            "# Generated by `kiln stack lock`; commit it. It pins every package file of the\n# {} {} images, so the same lock gives the same image digest anywhere.\n\n{}",
            self.stack,
            self.flavour,
            toml::to_string(self)?
        ))
    }
}

/// Where a stack's files are read from: a directory, or the built-in copy of one.
#[derive(Debug, Clone)]
pub struct StackSource {
    label: String,
    files: Files,
}

#[derive(Debug, Clone)]
enum Files {
    Dir(PathBuf),
    Embedded(BTreeMap<String, &'static [u8]>),
}

impl StackSource {
    /// The names of the built-in stacks.
    pub fn builtin_names() -> Vec<String> {
        let mut names: Vec<String> = embedded::EMBEDDED_STACK_FILES
            .iter()
            .filter_map(|(path, _)| path.strip_suffix("/stack.toml"))
            .map(str::to_string)
            .collect();
        names.dedup();
        names
    }

    /// A stack by built-in name (`bookworm`) or by directory (anything with a `/`, or an
    /// existing directory).
    pub fn open(name_or_dir: &str) -> Result<Self, StackError> {
        let path = Path::new(name_or_dir);
        if name_or_dir.contains('/') || path.is_dir() {
            if !path.join("stack.toml").is_file() {
                return Err(StackError::NotFound {
                    stack: name_or_dir.to_string(),
                    builtin: Self::builtin_names(),
                });
            }
            return Ok(Self {
                label: path.display().to_string(),
                files: Files::Dir(path.to_path_buf()),
            });
        }
        let prefix = format!("{name_or_dir}/");
        let files: BTreeMap<String, &'static [u8]> = embedded::EMBEDDED_STACK_FILES
            .iter()
            .filter_map(|(p, bytes)| p.strip_prefix(&prefix).map(|rel| (rel.to_string(), *bytes)))
            .collect();
        if !files.contains_key("stack.toml") {
            return Err(StackError::NotFound {
                stack: name_or_dir.to_string(),
                builtin: Self::builtin_names(),
            });
        }
        Ok(Self {
            label: format!("built-in stack {name_or_dir}"),
            files: Files::Embedded(files),
        })
    }

    /// How to name this source in messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The stack's directory, if it is on disk.
    pub fn dir(&self) -> Option<&Path> {
        match &self.files {
            Files::Dir(d) => Some(d),
            Files::Embedded(_) => None,
        }
    }

    /// Reads a file of the stack (`None` if it does not exist).
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, StackError> {
        match &self.files {
            Files::Embedded(files) => Ok(files.get(rel).map(|b| b.to_vec())),
            Files::Dir(dir) => match fs::read(dir.join(rel)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StackError::Io {
                    path: dir.join(rel),
                    source,
                }),
            },
        }
    }

    /// Parses `stack.toml`.
    pub fn definition(&self) -> Result<StackDefinition, StackError> {
        let bytes = self
            .read("stack.toml")?
            .ok_or_else(|| StackError::NotFound {
                stack: self.label.clone(),
                builtin: Self::builtin_names(),
            })?;
        let text = String::from_utf8_lossy(&bytes);
        toml::from_str(&text).map_err(|e| StackError::Definition {
            stack: format!("{} (stack.toml)", self.label),
            problem: e.to_string(),
        })
    }

    /// The lock of `flavour`, if there is one.
    pub fn lock(&self, flavour: &str) -> Result<Option<Lock>, StackError> {
        let rel = format!("{flavour}.lock");
        let Some(bytes) = self.read(&rel)? else {
            return Ok(None);
        };
        toml::from_str(&String::from_utf8_lossy(&bytes))
            .map(Some)
            .map_err(|e| StackError::Definition {
                stack: format!("{} ({rel})", self.label),
                problem: e.to_string(),
            })
    }

    /// Writes the lock of its flavour into the stack directory (atomically).
    pub fn write_lock(&self, lock: &Lock) -> Result<PathBuf, StackError> {
        let Files::Dir(dir) = &self.files else {
            return Err(StackError::ReadOnly {
                stack: self.label.clone(),
            });
        };
        let path = dir.join(format!("{}.lock", lock.flavour));
        let text = lock.to_toml().map_err(|e| StackError::Definition {
            stack: self.label.clone(),
            problem: e.to_string(),
        })?;
        crate::image::layout::write_atomic(&path, text.as_bytes()).map_err(|e| StackError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_bookworm_stack_parses() {
        assert!(StackSource::builtin_names().contains(&"bookworm".to_string()));
        let source = StackSource::open("bookworm").unwrap();
        let def = source.definition().unwrap();
        assert_eq!(def.stack.distro.name, "debian");
        let chain: Vec<&str> = def
            .chain("nodejs")
            .unwrap()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(chain, ["base", "cc", "nodejs"]);
        assert_ne!(
            def.fingerprint("python").unwrap(),
            def.fingerprint("nodejs").unwrap()
        );
        assert!(matches!(
            def.chain("rust"),
            Err(StackError::UnknownFlavour { .. })
        ));
        assert!(
            source
                .read("keys/debian-archive-bookworm-automatic.gpg")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn unknown_stacks_and_typos_are_errors() {
        assert!(matches!(
            StackSource::open("nope"),
            Err(StackError::NotFound { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("stack.toml"),
            "[stack]\nname = \"x\"\ndistro = { name = \"d\", version = \"1\" }\narchitectures = []\nexlcude = []\n[user]\nname=\"u\"\nuid=1\ngid=1\nhome=\"/h\"\n[flavours]\n",
        )
        .unwrap();
        let source = StackSource::open(dir.path().to_str().unwrap()).unwrap();
        let err = source.definition().unwrap_err().to_string();
        assert!(err.contains("exlcude"), "{err}");
    }

    #[test]
    fn flavour_cycles_are_errors() {
        let def: StackDefinition = toml::from_str(
            "[stack]\nname = \"x\"\ndistro = { name = \"d\", version = \"1\" }\narchitectures = []\n[[archive]]\nname=\"m\"\nmirror=\"debian\"\nsuites=[]\ncomponents=[]\n[user]\nname=\"u\"\nuid=1\ngid=1\nhome=\"/h\"\n[flavours.a]\nextends = \"b\"\n[flavours.b]\nextends = \"a\"\n",
        )
        .unwrap();
        assert!(
            def.chain("a")
                .unwrap_err()
                .to_string()
                .contains("extends itself")
        );
    }
}
