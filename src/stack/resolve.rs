//! Package indexes and dependency resolution.
//!
//! The closure of a package list over `Depends` and `Pre-Depends`, the way apt would pick:
//! a clause already satisfied by a chosen (or lower-layer, or excluded) package needs
//! nothing; otherwise its alternatives are tried in order, each by the highest version of a
//! real package that satisfies it, else by a package that `Provides` it (versioned provides
//! satisfy versioned relations). Excluded packages count as present without being
//! installed — the distroless way to keep `dpkg`, `debconf` and friends out of a runtime
//! image. `Conflicts` and `Breaks` are not evaluated.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::control::{Relation, Version, parse_relations, parse_stanzas};

/// Errors building an index or resolving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// A Packages index is malformed.
    #[error("{index}: {problem}")]
    BadIndex {
        /// Which index.
        index: String,
        /// What is wrong.
        problem: String,
    },
    /// Nothing satisfies a relation.
    #[error("cannot install {relation}, needed by {chain}: no package in the archive satisfies it")]
    Unsatisfiable {
        /// The relation (with alternatives).
        relation: String,
        /// Who needed it, outermost first.
        chain: String,
    },
}

/// One package of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: Version,
    /// Architecture (`amd64`, `all`, …).
    pub architecture: String,
    /// `Pre-Depends` then `Depends`, as clauses of alternatives.
    pub depends: Vec<Vec<Relation>>,
    /// What it provides (names with optional `= version`).
    pub provides: Vec<Relation>,
    /// Path of the `.deb` relative to the archive root.
    pub filename: String,
    /// Size of the `.deb`.
    pub size: u64,
    /// SHA-256 of the `.deb` (hex).
    pub sha256: String,
    /// `Priority` (used to choose among providers).
    pub priority: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// Which archive (index into the stack's sources) it comes from.
    pub source: usize,
}

impl PackageRecord {
    /// A package known only as installed, `name` at `version` for `architecture`: no
    /// dependencies, provides nothing, no file to fetch.
    pub(crate) fn installed(name: &str, version: Version, architecture: &str) -> Self {
        Self {
            name: name.to_string(),
            version,
            architecture: architecture.to_string(),
            depends: Vec::new(),
            provides: Vec::new(),
            filename: String::new(),
            size: 0,
            sha256: String::new(),
            priority: String::new(),
            essential: false,
            source: 0,
        }
    }
}

/// All packages available for one architecture.
#[derive(Debug, Default)]
pub struct PackageIndex {
    by_name: HashMap<String, Vec<PackageRecord>>,
    providers: HashMap<String, Vec<(String, Option<Version>)>>,
}

impl PackageIndex {
    /// Adds the packages of one `Packages` file (for `arch`, from archive `source`).
    pub fn add_packages_file(
        &mut self,
        text: &str,
        arch: &str,
        source: usize,
        index_name: &str,
    ) -> Result<usize, ResolveError> {
        let bad = |problem: String| ResolveError::BadIndex {
            index: index_name.to_string(),
            problem,
        };
        let stanzas = parse_stanzas(text).map_err(|e| bad(e.to_string()))?;
        let count = stanzas.len();
        for stanza in stanzas {
            let field = |name: &str| {
                stanza.get(name).ok_or_else(|| {
                    bad(format!(
                        "package {:?} has no {name} field",
                        stanza.get("Package").unwrap_or("?")
                    ))
                })
            };
            let name = field("Package")?.to_string();
            let architecture = field("Architecture")?.to_string();
            if architecture != arch && architecture != "all" {
                continue;
            }
            let version = Version::parse(field("Version")?)
                .map_err(|e| bad(format!("package {name}: {e}")))?;
            let mut depends = Vec::new();
            for key in ["Pre-Depends", "Depends"] {
                if let Some(value) = stanza.get(key) {
                    depends.extend(
                        parse_relations(value, arch)
                            .map_err(|e| bad(format!("package {name} {key}: {e}")))?,
                    );
                }
            }
            let provides: Vec<Relation> = match stanza.get("Provides") {
                Some(value) => parse_relations(value, arch)
                    .map_err(|e| bad(format!("package {name} Provides: {e}")))?
                    .into_iter()
                    .flatten()
                    .collect(),
                None => Vec::new(),
            };
            let record = PackageRecord {
                name: name.clone(),
                version,
                architecture,
                depends,
                provides,
                filename: field("Filename")?.to_string(),
                size: field("Size")?
                    .parse()
                    .map_err(|_| bad(format!("package {name} has a bad Size")))?,
                sha256: field("SHA256")?.to_ascii_lowercase(),
                priority: stanza.get("Priority").unwrap_or("optional").to_string(),
                essential: stanza.get("Essential") == Some("yes"),
                source,
            };
            for p in &record.provides {
                let provided_version = p.constraint.as_ref().map(|(_, v)| v.clone());
                self.providers
                    .entry(p.name.clone())
                    .or_default()
                    .push((name.clone(), provided_version));
            }
            self.by_name.entry(name).or_default().push(record);
        }
        for records in self.by_name.values_mut() {
            records.sort_by(|a, b| b.version.cmp(&a.version));
            records.dedup_by(|a, b| a.version == b.version);
        }
        Ok(count)
    }

    /// Number of distinct package names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The names of all `Essential: yes` packages, sorted.
    pub fn essential(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_name
            .iter()
            .filter(|(_, records)| records.first().is_some_and(|r| r.essential))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The highest version of `name`.
    pub fn latest(&self, name: &str) -> Option<&PackageRecord> {
        self.by_name.get(name)?.first()
    }

    /// Resolves the closure of `wanted`, given packages already installed below
    /// (`installed`) and names assumed present (`exclude`). Returns the new packages,
    /// sorted by name.
    pub fn resolve(
        &self,
        wanted: &[String],
        installed: &BTreeMap<String, PackageRecord>,
        exclude: &BTreeSet<String>,
    ) -> Result<Vec<PackageRecord>, ResolveError> {
        let mut chosen: BTreeMap<String, PackageRecord> = BTreeMap::new();
        let mut queue: VecDeque<(Vec<Relation>, Vec<String>)> = wanted
            .iter()
            .map(|name| {
                (
                    vec![Relation {
                        name: name.clone(),
                        constraint: None,
                    }],
                    vec!["the stack definition".to_string()],
                )
            })
            .collect();
        while let Some((clause, chain)) = queue.pop_front() {
            if clause.iter().any(|r| {
                exclude.contains(&r.name) || satisfied(r, &chosen) || satisfied(r, installed)
            }) {
                continue;
            }
            let Some(record) = clause.iter().find_map(|r| self.candidate(r)) else {
                return Err(ResolveError::Unsatisfiable {
                    relation: clause
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" | "),
                    chain: chain.join(" -> "),
                });
            };
            // Choosing what is already chosen adds nothing: its dependencies are queued.
            // (Without this, a hostile index can make the queue grow forever.)
            if chosen
                .get(&record.name)
                .is_some_and(|c| c.version == record.version)
            {
                continue;
            }
            let mut next_chain = chain.clone();
            next_chain.push(format!("{} {}", record.name, record.version));
            for dep in &record.depends {
                queue.push_back((dep.clone(), next_chain.clone()));
            }
            chosen.insert(record.name.clone(), record.clone());
        }
        Ok(chosen.into_values().collect())
    }

    /// The package that best satisfies `relation`: the highest satisfying version of a real
    /// package, else a provider (higher priority first, then by name).
    fn candidate(&self, relation: &Relation) -> Option<&PackageRecord> {
        if let Some(found) = self
            .by_name
            .get(&relation.name)
            .and_then(|records| records.iter().find(|r| relation.accepts(Some(&r.version))))
        {
            return Some(found);
        }
        let mut providers: Vec<&PackageRecord> = self
            .providers
            .get(&relation.name)?
            .iter()
            .filter(|(_, provided)| relation.accepts(provided.as_ref()))
            .filter_map(|(name, _)| {
                // The newest version of that package that does provide it (a newer one
                // may have dropped the Provides).
                self.by_name.get(name)?.iter().find(|r| {
                    r.provides.iter().any(|p| {
                        p.name == relation.name
                            && relation.accepts(p.constraint.as_ref().map(|(_, v)| v))
                    })
                })
            })
            .collect();
        providers.sort_by(|a, b| {
            priority_rank(&a.priority)
                .cmp(&priority_rank(&b.priority))
                .then_with(|| a.name.cmp(&b.name))
        });
        providers.into_iter().next()
    }
}

fn satisfied(relation: &Relation, set: &BTreeMap<String, PackageRecord>) -> bool {
    if let Some(record) = set.get(&relation.name)
        && relation.accepts(Some(&record.version))
    {
        return true;
    }
    set.values().any(|record| {
        record.provides.iter().any(|p| {
            p.name == relation.name && relation.accepts(p.constraint.as_ref().map(|(_, v)| v))
        })
    })
}

fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{name}_{version}.deb\nSize: 10\nSHA256: {}\n{extra}\n",
            "a".repeat(64)
        )
    }

    fn index(text: &str) -> PackageIndex {
        let mut index = PackageIndex::default();
        index.add_packages_file(text, "amd64", 0, "test").unwrap();
        index
    }

    fn names(records: &[PackageRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{}={}", r.name, r.version))
            .collect()
    }

    fn resolve(
        index: &PackageIndex,
        wanted: &[&str],
        exclude: &[&str],
    ) -> Result<Vec<String>, ResolveError> {
        index
            .resolve(
                &wanted.iter().map(ToString::to_string).collect::<Vec<_>>(),
                &BTreeMap::new(),
                &exclude.iter().map(ToString::to_string).collect(),
            )
            .map(|r| names(&r))
    }

    #[test]
    fn closure_follows_depends_and_pre_depends() {
        let text = [
            stanza("app", "1", "Depends: liba (>= 2), libb\nPre-Depends: libc6"),
            stanza("liba", "2", "Depends: libc6"),
            stanza("libb", "1", ""),
            stanza("libc6", "2.36", ""),
            stanza("unrelated", "1", ""),
        ]
        .join("\n");
        assert_eq!(
            resolve(&index(&text), &["app"], &[]).unwrap(),
            ["app=1", "liba=2", "libb=1", "libc6=2.36"]
        );
    }

    #[test]
    fn highest_satisfying_version_wins() {
        let text = [
            stanza("lib", "1.0", ""),
            stanza("lib", "1.2", ""),
            stanza("lib", "1.1", ""),
            stanza("app", "1", "Depends: lib (<< 1.2)"),
        ]
        .join("\n");
        let idx = index(&text);
        assert_eq!(resolve(&idx, &["lib"], &[]).unwrap(), ["lib=1.2"]);
        assert_eq!(resolve(&idx, &["app"], &[]).unwrap(), ["app=1", "lib=1.1"]);
    }

    #[test]
    fn alternatives_prefer_what_is_already_chosen_then_the_first() {
        let text = [
            stanza("app", "1", "Depends: awk-a | awk-b, helper"),
            stanza("helper", "1", "Depends: awk-b"),
            stanza("awk-a", "1", ""),
            stanza("awk-b", "1", ""),
        ]
        .join("\n");
        // awk-a is first, so it is chosen for app; helper then needs awk-b too.
        assert_eq!(
            resolve(&index(&text), &["app"], &[]).unwrap(),
            ["app=1", "awk-a=1", "awk-b=1", "helper=1"]
        );
        // Asking for awk-b first satisfies app's clause without awk-a.
        assert_eq!(
            resolve(&index(&text), &["awk-b", "app"], &[]).unwrap(),
            ["app=1", "awk-b=1", "helper=1"]
        );
    }

    #[test]
    fn virtual_packages_resolve_through_provides() {
        let text = [
            stanza(
                "app",
                "1",
                "Depends: mail-transport-agent, libfoo-abi (>= 2)",
            ),
            stanza(
                "zmta",
                "1",
                "Provides: mail-transport-agent\nPriority: optional",
            ),
            stanza(
                "amta",
                "1",
                "Provides: mail-transport-agent\nPriority: extra",
            ),
            stanza("foo", "1", "Provides: libfoo-abi (= 1)"),
            stanza("foo2", "1", "Provides: libfoo-abi (= 2)"),
        ]
        .join("\n");
        assert_eq!(
            resolve(&index(&text), &["app"], &[]).unwrap(),
            ["app=1", "foo2=1", "zmta=1"],
            "higher priority provider, and the versioned provide that satisfies"
        );
    }

    #[test]
    fn excluded_packages_count_as_present() {
        let text = [
            stanza("python3", "3.11", "Depends: dpkg (>= 1.13), libpython"),
            stanza("libpython", "3.11", ""),
            stanza("dpkg", "1.21", "Depends: tar, perl-base"),
        ]
        .join("\n");
        assert_eq!(
            resolve(&index(&text), &["python3"], &["dpkg"]).unwrap(),
            ["libpython=3.11", "python3=3.11"]
        );
    }

    #[test]
    fn lower_layer_packages_are_not_repeated() {
        let text = [
            stanza("python3", "3.11", "Depends: libc6"),
            stanza("libc6", "2.36", ""),
        ]
        .join("\n");
        let idx = index(&text);
        let base = idx
            .resolve(&["libc6".into()], &BTreeMap::new(), &BTreeSet::new())
            .unwrap();
        let installed = base.into_iter().map(|r| (r.name.clone(), r)).collect();
        let upper = idx
            .resolve(&["python3".into()], &installed, &BTreeSet::new())
            .unwrap();
        assert_eq!(names(&upper), ["python3=3.11"]);
    }

    #[test]
    fn unsatisfiable_relations_name_the_chain() {
        let text = [
            stanza("app", "1", "Depends: lib"),
            stanza("lib", "1", "Depends: missing (>= 2) | also-missing"),
        ]
        .join("\n");
        let err = resolve(&index(&text), &["app"], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing (>= 2) | also-missing"), "{err}");
        assert!(
            err.contains("the stack definition -> app 1 -> lib 1"),
            "{err}"
        );
        assert!(resolve(&index(&text), &["nope"], &[]).is_err());
    }

    #[test]
    fn malformed_indexes_are_errors() {
        let mut idx = PackageIndex::default();
        assert!(
            idx.add_packages_file("Package: x\nVersion: 1\n", "amd64", 0, "t")
                .is_err()
        );
        assert!(idx.add_packages_file("garbage\n", "amd64", 0, "t").is_err());
        let other_arch =
            "Package: x\nVersion: 1\nArchitecture: arm64\nFilename: f\nSize: 1\nSHA256: aa\n";
        assert_eq!(
            idx.add_packages_file(other_arch, "amd64", 0, "t").unwrap(),
            1
        );
        assert!(idx.is_empty());
    }
}
