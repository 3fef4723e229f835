//! Stack definitions (`stacks/<name>/stack.toml`), lock files, and where they are read from.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StackError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/stacks.rs"));
}

/// A name is invalid as a stack or flavour name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} name {name:?} is not valid: it names the image kiln/stacks/<stack>-<flavour>, so it must use lowercase letters and digits, with single '.', '_' or '-' between them (e.g. {suggestion:?})"
)]
pub struct InvalidName {
    /// `stack` or `flavour`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// A valid name close to it.
    pub suggestion: String,
}

/// Whether `name` is a valid image name component: lowercase letters and digits, separated by
/// one `.`, one or two `_`, or any number of `-`, starting and ending with a letter or digit.
/// Two such names joined by `-` are one again, so `<stack>-<flavour>` is always valid.
fn valid_component(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut separator: Option<(u8, usize)> = None;
    for &b in bytes {
        if alnum(b) {
            separator = None;
            continue;
        }
        separator = match (separator, b) {
            (None, b'.' | b'_' | b'-') => Some((b, 1)),
            (Some((b'_', 1)), b'_') => Some((b'_', 2)),
            (Some((b'-', n)), b'-') => Some((b'-', n + 1)),
            _ => return false,
        };
    }
    true
}

/// `name` made valid: lowercased, anything else than letters, digits and separators dropped.
fn suggest(name: &str) -> String {
    let lower: String = name
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-').then_some(c)
        })
        .collect();
    let trimmed = lower.trim_matches('-');
    if trimmed.is_empty() {
        "name".to_string()
    } else {
        trimmed.to_string()
    }
}

macro_rules! component_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if valid_component(s) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(InvalidName {
                        what: $what,
                        name: s.to_string(),
                        suggestion: suggest(s),
                    })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> Self {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

component_name!(
    /// A stack's name (`bookworm`), as `stack.toml` gives it: a valid image name component,
    /// since it names the stack's images (`kiln/stacks/<stack>-<flavour>`).
    StackName,
    "stack"
);

component_name!(
    /// A flavour's name (`python`): a valid image name component, since it names the
    /// flavour's image (`kiln/stacks/<stack>-<flavour>`).
    FlavourName,
    "flavour"
);

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
    pub flavours: BTreeMap<FlavourName, FlavourDef>,
}

/// The `[stack]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackInfo {
    /// Stack name (`bookworm`).
    pub name: StackName,
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
    pub extends: Option<FlavourName>,
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
    /// The flavour called `name`.
    pub fn flavour(&self, name: &str) -> Result<&FlavourName, StackError> {
        self.flavour_entry(name).map(|(key, _)| key)
    }

    fn flavour_entry(&self, name: &str) -> Result<(&FlavourName, &FlavourDef), StackError> {
        self.flavours
            .get_key_value(name)
            .ok_or_else(|| StackError::UnknownFlavour {
                stack: self.stack.name.to_string(),
                flavour: name.to_string(),
                available: self.flavours.keys().map(ToString::to_string).collect(),
            })
    }

    /// The flavours from the bottom (`base`) up to `flavour`.
    pub fn chain(&self, flavour: &str) -> Result<Vec<(&FlavourName, &FlavourDef)>, StackError> {
        let mut chain: Vec<(&FlavourName, &FlavourDef)> = Vec::new();
        let mut current = Some(flavour);
        while let Some(name) = current {
            let (key, def) = self.flavour_entry(name)?;
            if chain.iter().any(|(n, _)| *n == key) {
                return Err(StackError::Definition {
                    stack: self.stack.name.to_string(),
                    problem: format!("flavour {flavour} extends itself (through {name})"),
                });
            }
            chain.push((key, def));
            current = def.extends.as_ref().map(FlavourName::as_str);
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
            chain: Vec<(&'a FlavourName, &'a FlavourDef)>,
        }
        let inputs = Inputs {
            exclude: &self.stack.exclude,
            archives: &self.archives,
            chain: self.chain(flavour)?,
        };
        let json =
            crate::reproducible::canonical_json(&inputs).map_err(|e| StackError::Definition {
                stack: self.stack.name.to_string(),
                problem: e.to_string(),
            })?;
        Ok(format!("sha256:{}", super::fetch::sha256_hex(&json)))
    }
}

/// A lock file: exactly which package files make a flavour, per architecture.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Stack name.
    pub stack: StackName,
    /// Flavour name.
    pub flavour: FlavourName,
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
            .map(|(n, _)| n.as_str())
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

    /// trixie has bookworm's flavours, and R's (`r`, `build-r`), which bookworm lacks.
    #[test]
    fn the_builtin_trixie_stack_has_bookworms_flavours() {
        let trixie = StackSource::open("trixie").unwrap().definition().unwrap();
        let bookworm = StackSource::open("bookworm").unwrap().definition().unwrap();
        assert_eq!(trixie.stack.distro.version, "13");
        let only_trixie = ["build-r", "r"];
        assert_eq!(
            trixie
                .flavours
                .keys()
                .filter(|f| !only_trixie.contains(&f.as_str()))
                .collect::<Vec<_>>(),
            bookworm.flavours.keys().collect::<Vec<_>>()
        );
        assert_eq!(trixie.stack.architectures, bookworm.stack.architectures);
        for flavour in bookworm.flavours.keys() {
            assert_eq!(
                trixie.chain(flavour.as_str()).unwrap().len(),
                bookworm.chain(flavour.as_str()).unwrap().len(),
                "{flavour}"
            );
        }
    }

    /// Every built-in stack's flavours have a lock made from the current `stack.toml`, for
    /// every architecture, pinning the runtime each flavour is for.
    #[test]
    fn builtin_locks_are_current_for_every_flavour_and_architecture() {
        for name in StackSource::builtin_names() {
            let source = StackSource::open(&name).unwrap();
            let def = source.definition().unwrap();
            for flavour in def.flavours.keys() {
                let lock = source
                    .lock(flavour.as_str())
                    .unwrap()
                    .unwrap_or_else(|| panic!("{name}/{flavour} has no lock"));
                assert_eq!(
                    lock.definition,
                    def.fingerprint(flavour.as_str()).unwrap(),
                    "{name}/{flavour}.lock is stale: run kiln stack lock stacks/{name}"
                );
                for arch in &def.stack.architectures {
                    assert!(
                        lock.packages.iter().any(|p| &p.arch == arch),
                        "{name}/{flavour}.lock has nothing for {arch}"
                    );
                }
            }
        }
        let version = |flavour: &str, package: &str| {
            StackSource::open("trixie")
                .unwrap()
                .lock(flavour)
                .unwrap()
                .unwrap()
                .packages
                .into_iter()
                .find(|p| p.name == package)
                .map_or_else(
                    || panic!("trixie/{flavour} has no {package}"),
                    |p| p.version,
                )
        };
        assert!(version("python", "python3").starts_with("3.13."));
        assert!(version("nodejs", "nodejs").starts_with("20."));
        assert!(version("build-go", "golang-go").starts_with("2:1.24"));
        assert!(version("build-rust", "rustc").starts_with("1.85."));
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
    fn stack_and_flavour_names_are_image_name_components() {
        for good in [
            "bookworm",
            "a",
            "x1",
            "my-stack",
            "my--stack",
            "a.b",
            "a_b",
            "a__b",
        ] {
            assert!(good.parse::<StackName>().is_ok(), "{good}");
            assert!(good.parse::<FlavourName>().is_ok(), "{good}");
        }
        for bad in [
            "", "MyStack", "-a", "a-", ".a", "a.", "a..b", "a___b", "a._b", "a b", "a/b", "a:b",
            "ä",
        ] {
            assert!(bad.parse::<StackName>().is_err(), "{bad:?}");
            assert!(bad.parse::<FlavourName>().is_err(), "{bad:?}");
        }
        let err = "MyStack".parse::<StackName>().unwrap_err().to_string();
        assert!(
            err.contains("stack name \"MyStack\"") && err.contains("\"mystack\""),
            "{err}"
        );
        // Any two valid names make a valid store name.
        let name = super::super::store_name(&"my.stack".parse().unwrap(), &"a__b".parse().unwrap())
            .unwrap();
        assert_eq!(name.to_string(), "kiln/stacks/my.stack-a__b:latest");
    }

    #[test]
    fn an_invalid_stack_name_is_an_error_naming_stack_toml() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("stack.toml"),
            "[stack]\nname = \"MyStack\"\ndistro = { name = \"d\", version = \"1\" }\narchitectures = []\n[[archive]]\nname=\"m\"\nmirror=\"debian\"\nsuites=[]\ncomponents=[]\n[user]\nname=\"u\"\nuid=1\ngid=1\nhome=\"/h\"\n[flavours.base]\n",
        )
        .unwrap();
        let source = StackSource::open(dir.path().to_str().unwrap()).unwrap();
        let err = source.definition().unwrap_err().to_string();
        assert!(
            err.contains("stack.toml") && err.contains("MyStack") && err.contains("mystack"),
            "{err}"
        );
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
