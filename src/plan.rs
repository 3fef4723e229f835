//! Build plans: what buildpacks `provide` and `require` at detection, and how a group's
//! contributions are resolved into the plan handed to each buildpack at build time.
//!
//! Resolution follows the reference lifecycle (`phase/detector.go`): each passing member
//! contributes one *option* (its top-level provides/requires, or one of its `[[or]]`
//! alternatives); options are tried left to right, depth first, and the first trial that
//! resolves wins. Within a trial, a member that requires a name no earlier-or-same member
//! provides, or provides a name no later-or-same member requires, fails the trial if it is
//! required and is dropped (and the trial re-evaluated) if it is optional. A member's own
//! provides count before its requires. Only a member's *last* option may drop it.
//!
//! See [Phase #1: Detection](https://github.com/buildpacks/spec/blob/main/buildpack.md#phase-1-detection).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a buildpack writes to `$CNB_BUILD_PLAN_PATH` during detection.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct BuildPlan {
    /// Names this buildpack provides.
    #[serde(default)]
    pub provides: Vec<Provide>,
    /// Names this buildpack requires.
    #[serde(default)]
    pub requires: Vec<Require>,
    /// Alternative provides/requires pairs.
    #[serde(default)]
    pub or: Vec<PlanSections>,
}

/// One provides/requires pair.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PlanSections {
    /// Names provided.
    #[serde(default)]
    pub provides: Vec<Provide>,
    /// Names required.
    #[serde(default)]
    pub requires: Vec<Require>,
}

/// A `[[provides]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Provide {
    /// The dependency name.
    pub name: String,
}

/// A `[[requires]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Require {
    /// The dependency name.
    pub name: String,
    /// Rejected: versions belong in `metadata.version` (the lifecycle errors on this key).
    #[serde(default, skip_serializing)]
    pub version: Option<toml::Value>,
    /// Free-form metadata for the provider.
    #[serde(default)]
    pub metadata: toml::Table,
}

/// A build plan the lifecycle would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A require has a top-level `version` key.
    #[error(
        "requires {name:?} has a \"version\" key, which is not supported; use \"metadata.version\""
    )]
    Version {
        /// The required dependency.
        name: String,
    },
    /// A require has both a top-level `version` and a `metadata.version`.
    #[error(
        "requires {name:?} has a \"version\" key and a \"metadata.version\", which cannot be specified together; use \"metadata.version\""
    )]
    VersionAndMetadataVersion {
        /// The required dependency.
        name: String,
    },
}

impl BuildPlan {
    /// The options this plan offers: the top-level pair, then each `[[or]]`.
    pub fn options(&self) -> Vec<PlanSections> {
        let mut out = vec![PlanSections {
            provides: self.provides.clone(),
            requires: self.requires.clone(),
        }];
        out.extend(self.or.iter().cloned());
        out
    }

    /// The lifecycle's check: a top-level `version` key in a require is an error.
    ///
    /// # Errors
    ///
    /// [`PlanError`] naming the first require with a `version` key.
    pub fn validate(&self) -> Result<(), PlanError> {
        let all = std::iter::once(&self.requires).chain(self.or.iter().map(|o| &o.requires));
        for requires in all {
            for r in requires {
                if r.version.is_some() {
                    return Err(if r.metadata.contains_key("version") {
                        PlanError::VersionAndMetadataVersion {
                            name: r.name.clone(),
                        }
                    } else {
                        PlanError::Version {
                            name: r.name.clone(),
                        }
                    });
                }
            }
        }
        Ok(())
    }
}

/// A member of a group that passed detection, as seen by the resolver.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Position of the member in the group (identifies it).
    pub index: usize,
    /// Buildpack ID.
    pub id: String,
    /// Buildpack version.
    pub version: String,
    /// Whether the group may pass without it.
    pub optional: bool,
    /// Its options (see [`BuildPlan::options`]).
    pub options: Vec<PlanSections>,
}

/// A buildpack that provides an entry of the resolved plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// Buildpack ID.
    pub id: String,
    /// Buildpack version.
    pub version: String,
}

/// One entry of the resolved plan (`plan.toml`): a dependency name, who provides it and
/// every requirement of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The providers, in group order.
    pub providers: Vec<Provider>,
    /// The requirements, in group order.
    pub requires: Vec<Require>,
}

impl PlanEntry {
    /// The dependency name.
    pub fn name(&self) -> &str {
        self.requires.first().map_or("", |r| r.name.as_str())
    }
}

/// The outcome of resolving a group.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Indexes (into the group) of the members that take part, in group order.
    pub members: Vec<usize>,
    /// The plan, sorted by dependency name.
    pub entries: Vec<PlanEntry>,
}

/// Resolves a group's build plan, or returns `None` when no trial resolves.
pub fn resolve(candidates: &[Candidate]) -> Option<Resolution> {
    let mut prefix = Vec::with_capacity(candidates.len());
    resolve_from(candidates, &mut prefix)
}

#[derive(Debug, Clone)]
struct Choice<'a> {
    candidate: &'a Candidate,
    sections: &'a PlanSections,
    optional: bool,
}

fn resolve_from<'a>(rest: &'a [Candidate], prefix: &mut Vec<Choice<'a>>) -> Option<Resolution> {
    let Some((first, rest)) = rest.split_first() else {
        return run_trial(prefix.clone());
    };
    let last = first.options.len().saturating_sub(1);
    for (i, sections) in first.options.iter().enumerate() {
        prefix.push(Choice {
            candidate: first,
            sections,
            optional: first.optional && i == last,
        });
        let result = resolve_from(rest, prefix);
        prefix.pop();
        if result.is_some() {
            return result;
        }
    }
    None
}

#[derive(Default)]
struct Dep<'a> {
    providers: Vec<usize>,
    extra_provides: Vec<usize>,
    early_requires: Vec<usize>,
    requires: Vec<&'a Require>,
}

fn run_trial(mut trial: Vec<Choice<'_>>) -> Option<Resolution> {
    loop {
        let deps = dep_map(&trial);
        let mut retry = false;
        let mut drop = Vec::new();
        // Unmet requires first, then unmet provides, both against this round's map.
        for pass in [Pass::Requires, Pass::Provides] {
            for dep in deps.values() {
                let unmet = match pass {
                    Pass::Requires => &dep.early_requires,
                    Pass::Provides => &dep.extra_provides,
                };
                for &pos in unmet {
                    retry = true;
                    if !trial[pos].optional {
                        return None;
                    }
                    drop.push(trial[pos].candidate.index);
                }
            }
        }
        if !retry {
            if trial.is_empty() {
                return None;
            }
            let entries = deps
                .into_values()
                .map(|dep| PlanEntry {
                    providers: dep
                        .providers
                        .iter()
                        .map(|&pos| Provider {
                            id: trial[pos].candidate.id.clone(),
                            version: trial[pos].candidate.version.clone(),
                        })
                        .collect(),
                    requires: dep.requires.into_iter().cloned().collect(),
                })
                .collect();
            return Some(Resolution {
                members: trial.iter().map(|c| c.candidate.index).collect(),
                entries,
            });
        }
        trial.retain(|c| !drop.contains(&c.candidate.index));
    }
}

#[derive(Clone, Copy)]
enum Pass {
    Requires,
    Provides,
}

fn dep_map<'a>(trial: &[Choice<'a>]) -> BTreeMap<&'a str, Dep<'a>> {
    let mut deps: BTreeMap<&str, Dep<'_>> = BTreeMap::new();
    for (pos, choice) in trial.iter().enumerate() {
        for p in &choice.sections.provides {
            deps.entry(p.name.as_str())
                .or_default()
                .extra_provides
                .push(pos);
        }
        for r in &choice.sections.requires {
            let dep = deps.entry(r.name.as_str()).or_default();
            let extra = std::mem::take(&mut dep.extra_provides);
            dep.providers.extend(extra);
            if dep.providers.is_empty() {
                dep.early_requires.push(pos);
            } else {
                dep.requires.push(r);
            }
        }
    }
    deps
}

/// The buildpack plan (`$CNB_BP_PLAN_PATH`) for one buildpack: every requirement of every
/// entry it provides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildpackPlan {
    /// The entries.
    #[serde(default)]
    pub entries: Vec<Require>,
}

/// Selects the buildpack plan of `id` from the remaining plan entries.
pub fn buildpack_plan(entries: &[PlanEntry], id: &str) -> BuildpackPlan {
    BuildpackPlan {
        entries: entries
            .iter()
            .filter(|e| e.providers.iter().any(|p| p.id == id))
            .flat_map(|e| e.requires.iter().cloned())
            .collect(),
    }
}

/// Removes from `entries` those a buildpack met (all names it was given minus those it
/// listed as `[[unmet]]` in `build.toml`), so later providers don't see them.
pub fn remove_met(entries: &mut Vec<PlanEntry>, met: &[String]) {
    entries.retain(|e| !e.requires.iter().any(|r| met.contains(&r.name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(provides: &[&str], requires: &[&str]) -> PlanSections {
        PlanSections {
            provides: provides
                .iter()
                .map(|n| Provide {
                    name: (*n).to_string(),
                })
                .collect(),
            requires: requires
                .iter()
                .map(|n| Require {
                    name: (*n).to_string(),
                    version: None,
                    metadata: toml::Table::new(),
                })
                .collect(),
        }
    }

    fn cand(index: usize, optional: bool, options: Vec<PlanSections>) -> Candidate {
        Candidate {
            index,
            id: format!("bp{index}"),
            version: "1.0.0".into(),
            optional,
            options,
        }
    }

    #[test]
    fn empty_plans_pass() {
        let r = resolve(&[cand(0, false, vec![sections(&[], &[])])]).unwrap();
        assert_eq!(r.members, [0]);
        assert!(r.entries.is_empty());
    }

    #[test]
    fn self_provide_and_require() {
        let r = resolve(&[cand(0, false, vec![sections(&["node"], &["node"])])]).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].name(), "node");
        assert_eq!(r.entries[0].providers[0].id, "bp0");
    }

    #[test]
    fn require_before_provide_fails_required() {
        // bp0 requires what only bp1 (later) provides.
        let group = [
            cand(0, false, vec![sections(&[], &["x"])]),
            cand(1, false, vec![sections(&["x"], &[])]),
        ];
        assert!(resolve(&group).is_none());
    }

    #[test]
    fn unused_provide_fails_required_drops_optional() {
        let group = [
            cand(0, false, vec![sections(&[], &[])]),
            cand(1, false, vec![sections(&["x"], &[])]),
        ];
        assert!(resolve(&group).is_none());
        let group = [
            cand(0, false, vec![sections(&[], &[])]),
            cand(1, true, vec![sections(&["x"], &[])]),
        ];
        assert_eq!(resolve(&group).unwrap().members, [0]);
    }

    #[test]
    fn or_alternatives_are_tried_in_order() {
        // bp0 provides jdk or jre; bp1 requires jre.
        let group = [
            cand(
                0,
                false,
                vec![sections(&["jdk"], &[]), sections(&["jre"], &[])],
            ),
            cand(1, false, vec![sections(&[], &["jre"])]),
        ];
        let r = resolve(&group).unwrap();
        assert_eq!(r.members, [0, 1]);
        assert_eq!(r.entries[0].name(), "jre");
    }

    #[test]
    fn only_last_option_may_drop_an_optional_member() {
        // Optional bp1: first option provides unused "a" (not droppable there), second
        // provides unused "b" (droppable). Resolution drops bp1 via its second option.
        let group = [
            cand(0, false, vec![sections(&[], &[])]),
            cand(1, true, vec![sections(&["a"], &[]), sections(&["b"], &[])]),
        ];
        let r = resolve(&group).unwrap();
        assert_eq!(r.members, [0]);
    }

    #[test]
    fn dropping_cascades() {
        // Optional bp1 requires "y" nobody provides; it also requires "x" from bp0. Dropping
        // bp1 leaves bp0's "x" unused; bp0 is optional too, so it is dropped; bp2 remains.
        let group = [
            cand(0, true, vec![sections(&["x"], &[])]),
            cand(1, true, vec![sections(&[], &["x", "y"])]),
            cand(2, false, vec![sections(&[], &[])]),
        ];
        assert_eq!(resolve(&group).unwrap().members, [2]);
    }

    #[test]
    fn all_dropped_fails() {
        let group = [cand(0, true, vec![sections(&[], &["nothing"])])];
        assert!(resolve(&group).is_none());
    }

    #[test]
    fn several_providers_and_requirers() {
        let group = [
            cand(0, false, vec![sections(&["n"], &[])]),
            cand(1, false, vec![sections(&["n"], &["n"])]),
            cand(2, false, vec![sections(&[], &["n"])]),
        ];
        let r = resolve(&group).unwrap();
        assert_eq!(r.entries.len(), 1);
        let ids: Vec<_> = r.entries[0]
            .providers
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(ids, ["bp0", "bp1"]);
        assert_eq!(r.entries[0].requires.len(), 2);
    }

    #[test]
    fn buildpack_plans_and_unmet() {
        let group = [
            cand(0, false, vec![sections(&["a", "b"], &[])]),
            cand(1, false, vec![sections(&["b"], &["a", "b"])]),
        ];
        let r = resolve(&group).unwrap();
        let plan0 = buildpack_plan(&r.entries, "bp0");
        assert_eq!(
            plan0
                .entries
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        // bp0 leaves "b" unmet; it met "a".
        let mut remaining = r.entries.clone();
        remove_met(&mut remaining, &["a".to_string()]);
        let plan1 = buildpack_plan(&remaining, "bp1");
        assert_eq!(
            plan1
                .entries
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn top_level_version_is_rejected() {
        let plan: BuildPlan =
            toml::from_str("[[requires]]\nname = \"ruby\"\nversion = \"3\"\n").unwrap();
        assert!(
            plan.validate()
                .unwrap_err()
                .to_string()
                .contains("metadata.version")
        );
        let plan: BuildPlan =
            toml::from_str("[[requires]]\nname = \"ruby\"\n[requires.metadata]\nversion = \"3\"\n")
                .unwrap();
        plan.validate().unwrap();
    }
}
