//! Buildpack ids as values: [`BuildpackId`] and [`VersionedBuildpackId`] (`id@version`).
//!
//! On the ground floor so that events, labels, reports and build records can name
//! buildpacks without importing the buildpack loader; re-exported from
//! [`crate::buildpack`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a [`BuildpackId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildpackIdError {
    /// The id is empty.
    #[error("a buildpack id must not be empty")]
    Empty,
    /// The id holds a character ids may not hold.
    #[error(
        "buildpack id {id:?} contains {character:?}; ids use letters, digits, '.', '/' and '-'"
    )]
    InvalidCharacter {
        /// The id.
        id: String,
        /// The first character it may not hold.
        character: char,
    },
    /// The id is a name the platform reserves (`app`, `config`, `generated`, `sbom`).
    #[error("buildpack id {id:?} is reserved")]
    Reserved {
        /// The id.
        id: String,
    },
}

/// A buildpack ID: `[A-Za-z0-9./-]+`, not one of the reserved names.
///
/// Serialized as the id's string; deserializing validates it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BuildpackId(String);

impl BuildpackId {
    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ID with `/` replaced by `_`: the buildpack's directory name under `/layers`.
    pub fn escaped(&self) -> String {
        self.0.replace('/', "_")
    }
}

impl FromStr for BuildpackId {
    type Err = BuildpackIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(BuildpackIdError::Empty);
        }
        if let Some(character) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-')))
        {
            return Err(BuildpackIdError::InvalidCharacter {
                id: s.to_string(),
                character,
            });
        }
        if ["app", "config", "generated", "sbom"]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(s))
        {
            return Err(BuildpackIdError::Reserved { id: s.to_string() });
        }
        Ok(Self(s.to_string()))
    }
}

impl TryFrom<String> for BuildpackId {
    type Error = BuildpackIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BuildpackId> for String {
    fn from(id: BuildpackId) -> Self {
        id.0
    }
}

impl AsRef<str> for BuildpackId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for BuildpackId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for BuildpackId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for BuildpackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a [`VersionedBuildpackId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionedBuildpackIdError {
    /// There is no `@version` after the id.
    #[error("{text:?} is not id@version")]
    MissingVersion {
        /// The text.
        text: String,
    },
    /// The part before `@` is not a buildpack id.
    #[error(transparent)]
    Id(#[from] BuildpackIdError),
}

/// A buildpack of a group as reports, build records and events name it: its id and version,
/// written `id@version`.
///
/// Serialized as that string; deserializing splits it at the first `@` (ids hold none) and
/// validates the id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VersionedBuildpackId {
    /// The buildpack's id.
    pub id: BuildpackId,
    /// Its version (as its `buildpack.toml` gives it).
    pub version: String,
}

impl VersionedBuildpackId {
    /// `id` at `version`.
    pub fn new(id: BuildpackId, version: impl Into<String>) -> Self {
        Self {
            id,
            version: version.into(),
        }
    }
}

impl FromStr for VersionedBuildpackId {
    type Err = VersionedBuildpackIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((id, version)) = s.split_once('@') else {
            return Err(VersionedBuildpackIdError::MissingVersion {
                text: s.to_string(),
            });
        };
        Ok(Self {
            id: id.parse()?,
            version: version.to_string(),
        })
    }
}

impl TryFrom<String> for VersionedBuildpackId {
    type Error = VersionedBuildpackIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<VersionedBuildpackId> for String {
    fn from(id: VersionedBuildpackId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for VersionedBuildpackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!("heroku/python".parse::<BuildpackId>().is_ok());
        assert!("a.b-c/d".parse::<BuildpackId>().is_ok());
        for bad in ["", "app", "SBOM", "a b", "a_b", "a:b"] {
            assert!(bad.parse::<BuildpackId>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "kiln/python".parse::<BuildpackId>().unwrap().escaped(),
            "kiln_python"
        );
        assert_eq!(
            "a_b".parse::<BuildpackId>().unwrap_err().to_string(),
            r#"buildpack id "a_b" contains '_'; ids use letters, digits, '.', '/' and '-'"#
        );
        assert_eq!(
            "".parse::<BuildpackId>().unwrap_err().to_string(),
            "a buildpack id must not be empty"
        );
        assert_eq!(
            "App".parse::<BuildpackId>().unwrap_err().to_string(),
            r#"buildpack id "App" is reserved"#
        );
    }

    #[test]
    fn ids_serialize_as_their_strings() {
        let id: BuildpackId = "kiln/python".parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""kiln/python""#);
        assert_eq!(
            serde_json::from_str::<BuildpackId>(r#""kiln/python""#).unwrap(),
            id
        );
        assert!(serde_json::from_str::<BuildpackId>(r#""a b""#).is_err());

        let versioned = VersionedBuildpackId::new(id, "0.1.0");
        assert_eq!(versioned.to_string(), "kiln/python@0.1.0");
        let json = serde_json::to_string(&versioned).unwrap();
        assert_eq!(json, r#""kiln/python@0.1.0""#);
        assert_eq!(
            serde_json::from_str::<VersionedBuildpackId>(&json).unwrap(),
            versioned
        );
        for bad in [r#""kiln/python""#, r#""a b@1""#, r#""@1""#] {
            assert!(
                serde_json::from_str::<VersionedBuildpackId>(bad).is_err(),
                "{bad}"
            );
        }
        // Versions may hold anything after the first `@`.
        let odd: VersionedBuildpackId = "x@1@2".parse().unwrap();
        assert_eq!((odd.id.as_str(), odd.version.as_str()), ("x", "1@2"));
    }
}
