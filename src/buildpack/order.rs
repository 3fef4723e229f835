//! Orders and groups: which buildpacks are tried together, and in what order.
//!
//! Used both in `order.toml` (`kiln build --order`) and in the `[[order]]` of composite
//! buildpacks. See the platform spec's [order.toml](https://github.com/buildpacks/spec/blob/main/platform.md#ordertoml-toml).

use serde::{Deserialize, Serialize};

/// An `order.toml` file: groups tried in order, the first passing group wins.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Order {
    /// The groups.
    #[serde(default)]
    pub order: Vec<OrderGroup>,
}

/// One `[[order]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct OrderGroup {
    /// Its members, in build order.
    #[serde(default)]
    pub group: Vec<GroupEntry>,
}

/// A reference to a buildpack from a group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupEntry {
    /// Buildpack ID.
    pub id: String,
    /// Buildpack version; when absent, the only known version of `id` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the group may pass without this buildpack.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl GroupEntry {
    /// A required member.
    pub fn required(id: impl Into<String>, version: Option<String>) -> Self {
        Self {
            id: id.into(),
            version,
            optional: false,
        }
    }
}
