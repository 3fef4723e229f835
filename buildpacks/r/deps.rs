//! Which R packages an app needs, and the Debian packages that provide them.
//!
//! The sources, first match wins: `renv.lock` (its `Packages`, each with the version it
//! pins), `DESCRIPTION` (`Depends`, `Imports`, `LinkingTo`; version constraints are not
//! pins), else the `library()`, `require()`, `requireNamespace()` calls and `pkg::` uses of
//! the app's top-level `.R` files. R's base packages come with R itself; every other package
//! is Debian's `r-cran-<name in lower case>` (`r-bioc-…` for Bioconductor packages of a
//! `renv.lock`), which kiln adds to the image.

use std::collections::BTreeMap;

use crate::common::files::App;
use crate::common::{Error, Result};

/// The packages that ship with R (`r-base-core`): never installed separately.
const BASE: &[&str] = &[
    "R",
    "base",
    "compiler",
    "datasets",
    "graphics",
    "grDevices",
    "grid",
    "methods",
    "parallel",
    "splines",
    "stats",
    "stats4",
    "tcltk",
    "tools",
    "utils",
];

/// An R package the app needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RPackage {
    /// Its R name (`jsonlite`, `data.table`).
    pub(crate) name: String,
    /// The Debian package that provides it (`r-cran-jsonlite`).
    pub(crate) debian: String,
    /// Where the app names it (`DESCRIPTION Imports`).
    pub(crate) source: String,
    /// The version `renv.lock` pins, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pin: Option<String>,
}

/// The Debian package of CRAN package `name`: `r-cran-` and the name in lower case (dots
/// stay: `data.table` is `r-cran-data.table`).
pub(crate) fn debian_name(name: &str, bioconductor: bool) -> String {
    let prefix = if bioconductor { "r-bioc-" } else { "r-cran-" };
    format!("{prefix}{}", name.to_ascii_lowercase())
}

/// Whether `name` could be an R package name (letters, digits and dots, starting with a
/// letter, not ending with a dot).
fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
}

fn package(name: &str, source: &str, pin: Option<String>, bioconductor: bool) -> RPackage {
    RPackage {
        name: name.to_string(),
        debian: debian_name(name, bioconductor),
        source: source.to_string(),
        pin,
    }
}

/// The packages the app needs (see the module docs), plus `implied` (the package its start
/// command uses: plumber, shiny) when nothing names it; sorted by name.
pub(crate) fn needed(app: &App, implied: Option<&str>) -> Result<Vec<RPackage>> {
    let mut found: BTreeMap<String, RPackage> = BTreeMap::new();
    if let Some(text) = app.read("renv.lock")? {
        for p in renv_lock(&text)? {
            found.insert(p.name.clone(), p);
        }
    } else if let Some(text) = app.read("DESCRIPTION")? {
        for p in description(&text)? {
            found.entry(p.name.clone()).or_insert(p);
        }
    } else {
        let mut files = app.list("")?;
        files.retain(|f| {
            std::path::Path::new(f)
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("r"))
        });
        files.sort();
        for file in files {
            if let Some(text) = app.read(&file)? {
                for name in used_in_source(&text) {
                    found
                        .entry(name.clone())
                        .or_insert_with(|| package(&name, &file, None, false));
                }
            }
        }
    }
    if let Some(name) = implied
        && !found.contains_key(name)
    {
        found.insert(
            name.to_string(),
            package(name, "the start command", None, false),
        );
    }
    found.retain(|name, _| !BASE.contains(&name.as_str()) && name != "renv");
    Ok(found.into_values().collect())
}

/// The packages of a `DESCRIPTION` file's `Depends`, `Imports` and `LinkingTo` fields (a
/// Debian control file's format: `Field: value`, continued on indented lines).
pub(crate) fn description(text: &str) -> Result<Vec<RPackage>> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(field) = &current else {
                return Err(Error::new(format!(
                    "DESCRIPTION line {}: a continuation line before any field",
                    index + 1
                ))
                .hint("start the file with `Package: name`; indent only the lines that continue a field"));
            };
            if let Some(value) = fields.get_mut(field) {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(Error::new(format!(
                "DESCRIPTION line {}: expected `Field: value`, found `{}`",
                index + 1,
                line.trim()
            ))
            .hint("write each field as `Name: value` (see Writing R Extensions, section 1.1.1)"));
        };
        current = Some(field.trim().to_string());
        fields.insert(field.trim().to_string(), value.trim().to_string());
    }
    let mut packages = Vec::new();
    for field in ["Depends", "Imports", "LinkingTo"] {
        let Some(value) = fields.get(field) else {
            continue;
        };
        for item in value.split(',') {
            let name = item.split('(').next().unwrap_or_default().trim();
            if name.is_empty() {
                continue;
            }
            if !valid_name(name) && name != "R" {
                return Err(Error::new(format!(
                    "DESCRIPTION {field}: `{}` is not an R package name",
                    item.trim()
                ))
                .hint("list packages separated by commas, each optionally followed by a version in parentheses: `jsonlite (>= 1.8), plumber`"));
            }
            packages.push(package(name, &format!("DESCRIPTION {field}"), None, false));
        }
    }
    Ok(packages)
}

/// The packages of a `renv.lock` and the versions it pins.
pub(crate) fn renv_lock(text: &str) -> Result<Vec<RPackage>> {
    let lock: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::new(format!("renv.lock is not valid JSON: {e}"))
            .hint("write it again with `renv::snapshot()`")
    })?;
    let Some(entries) = lock.get("Packages").and_then(serde_json::Value::as_object) else {
        return Err(Error::new("renv.lock has no `Packages` object")
            .hint("write it again with `renv::snapshot()`"));
    };
    let mut packages = Vec::new();
    for (key, entry) in entries {
        let name = entry
            .get("Package")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(key);
        if !valid_name(name) {
            return Err(Error::new(format!(
                "renv.lock: `{name}` is not an R package name"
            )));
        }
        let field = |f: &str| entry.get(f).and_then(serde_json::Value::as_str);
        let source = field("Source").unwrap_or("Repository");
        let bioconductor = source == "Bioconductor";
        if !matches!(source, "Repository" | "Bioconductor") && name != "renv" {
            return Err(Error::new(format!(
                "renv.lock: package {name} comes from {source}, and kiln installs R packages only from Debian's r-cran-* and r-bioc-* packages"
            ))
            .hint(format!("install {name} from a package repository (CRAN) in your renv project, so renv.lock records it with `\"Source\": \"Repository\"`")));
        }
        packages.push(package(
            name,
            "renv.lock",
            field("Version").map(str::to_string),
            bioconductor,
        ));
    }
    Ok(packages)
}

/// Package names an R source uses: `library(x)`, `require(x)`, `requireNamespace("x")`,
/// `x::f`, `x:::f`, read from the text (comments skipped) without evaluating anything.
pub(crate) fn used_in_source(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or_default();
        for call in [
            "library(",
            "require(",
            "requireNamespace(",
            "loadNamespace(",
        ] {
            let mut rest = code;
            while let Some(at) = rest.find(call) {
                let before = rest[..at].chars().next_back();
                rest = &rest[at + call.len()..];
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                    continue;
                }
                let arg: String = rest
                    .trim_start()
                    .trim_start_matches(['"', '\''])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                    .collect();
                if valid_name(&arg) {
                    names.push(arg);
                }
            }
        }
        let mut rest = code;
        while let Some(at) = rest.find("::") {
            let name: String = rest[..at]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            rest = rest[at + 2..].trim_start_matches(':');
            if valid_name(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::files::temp_app;

    fn names(packages: &[RPackage]) -> Vec<&str> {
        packages.iter().map(|p| p.debian.as_str()).collect()
    }

    #[test]
    fn description_fields_give_debian_packages() {
        let text = "Package: report\nVersion: 0.1\nDepends: R (>= 4.1),\n    stats\nImports: jsonlite (>= 1.8),\n  data.table, Rcpp\nLinkingTo: Rcpp\nSuggests: testthat\n";
        let found = description(text).unwrap();
        assert_eq!(
            names(&found),
            [
                "r-cran-r",
                "r-cran-stats",
                "r-cran-jsonlite",
                "r-cran-data.table",
                "r-cran-rcpp",
                "r-cran-rcpp"
            ]
        );
        let (_d, app) = temp_app(&[("DESCRIPTION", text)]);
        let found = needed(&app, None).unwrap();
        assert_eq!(
            names(&found),
            ["r-cran-rcpp", "r-cran-data.table", "r-cran-jsonlite"]
        );
        assert_eq!(found[2].source, "DESCRIPTION Imports");
    }

    #[test]
    fn bad_descriptions_name_the_line() {
        for (text, problem) in [
            ("  Imports: x\n", "line 1: a continuation line"),
            ("Package x\n", "line 1: expected `Field: value`"),
            (
                "Imports: json lite\n",
                "`json lite` is not an R package name",
            ),
        ] {
            let err = description(text).unwrap_err().to_string();
            assert!(err.contains(problem), "{text:?}: {err}");
        }
    }

    #[test]
    fn renv_lock_pins_versions_and_knows_bioconductor() {
        let text = r#"{"R": {"Version": "4.5.0"}, "Packages": {
            "jsonlite": {"Package": "jsonlite", "Version": "1.8.9", "Source": "Repository", "Repository": "CRAN"},
            "Biobase": {"Package": "Biobase", "Version": "2.66.0", "Source": "Bioconductor"},
            "renv": {"Package": "renv", "Version": "1.1.4", "Source": "Repository"}}}"#;
        let (_d, app) = temp_app(&[("renv.lock", text), ("DESCRIPTION", "Imports: x1\n")]);
        let found = needed(&app, Some("plumber")).unwrap();
        assert_eq!(
            names(&found),
            ["r-bioc-biobase", "r-cran-jsonlite", "r-cran-plumber"]
        );
        assert_eq!(found[1].pin.as_deref(), Some("1.8.9"));
        assert_eq!(found[2].source, "the start command");
        let err = renv_lock(r#"{"Packages": {"x1": {"Package": "x1", "Source": "GitHub"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x1 comes from GitHub"), "{err}");
        assert!(renv_lock("{").is_err());
        assert!(renv_lock("{}").is_err());
    }

    #[test]
    fn sources_name_their_packages() {
        let text = "library(jsonlite)\nsuppressMessages(require(\"dplyr\"))\n# library(ignored)\nx <- data.table::fread(f); utils::head(x)\nmylibrary(nope)\n";
        assert_eq!(
            used_in_source(text),
            ["data.table", "dplyr", "jsonlite", "utils"]
        );
        let (_d, app) = temp_app(&[("main.R", text)]);
        assert_eq!(
            names(&needed(&app, None).unwrap()),
            ["r-cran-data.table", "r-cran-dplyr", "r-cran-jsonlite"]
        );
    }
}
