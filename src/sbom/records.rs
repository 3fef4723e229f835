//! Parsers of the package records [`super::catalog`] finds: each takes the record's text
//! and the path it was found at, and returns the packages it declares (none when it does
//! not parse: hostile or unusual files are skipped, never an error).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which ecosystem a package belongs to (its purl type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ecosystem {
    /// A Debian package.
    Deb,
    /// A Python distribution.
    Pypi,
    /// An npm package.
    Npm,
    /// A Go module (or the Go standard library, `stdlib`).
    Golang,
    /// A Rust crate.
    Cargo,
    /// A language runtime kiln installed (`node`, `python`).
    Generic,
}

/// One package found in a layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Package {
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// Its name as the ecosystem writes it (`libc6`, `Flask`, `@scope/name`, a module path).
    pub name: String,
    /// Its version (empty when unknown, as a Go main module built from a checkout).
    pub version: String,
    /// The file it was found by, relative to the image root (`var/lib/dpkg/status.d/libc6`).
    pub path: String,
    /// A declared SPDX licence expression, if the record has one.
    pub license: Option<String>,
    /// A licence the record names in prose (`BSD License`), when it has no expression.
    pub license_name: Option<String>,
    /// Debian: `arch` and `upstream` (source package) purl qualifiers.
    pub qualifiers: BTreeMap<String, String>,
}

fn package(ecosystem: Ecosystem, name: &str, version: &str, path: &str) -> Package {
    Package {
        ecosystem,
        name: name.to_string(),
        version: version.to_string(),
        path: path.to_string(),
        license: None,
        license_name: None,
        qualifiers: BTreeMap::new(),
    }
}

/// Names and versions are one line of printable text, not absurdly long.
fn plausible(text: &str) -> bool {
    !text.is_empty() && text.len() <= 512 && !text.chars().any(char::is_control)
}

/// The installed packages of a dpkg status file or `status.d` record.
pub(crate) fn dpkg(text: &str, path: &str) -> Vec<Package> {
    let Ok(stanzas) = crate::stack::control::parse_stanzas(text) else {
        return Vec::new();
    };
    stanzas
        .iter()
        .filter(|s| {
            s.get("Status")
                .is_none_or(|st| st.split_whitespace().nth(2) == Some("installed"))
        })
        .filter_map(|s| {
            let name = s.get("Package")?;
            let version = s.get("Version")?;
            if !plausible(name) || !plausible(version) {
                return None;
            }
            let mut p = package(Ecosystem::Deb, name, version, path);
            if let Some(arch) = s.get("Architecture").filter(|a| plausible(a)) {
                p.qualifiers.insert("arch".to_string(), arch.to_string());
            }
            // `Source: glibc` or `Source: glibc (2.41-12)`.
            if let Some(source) = s
                .get("Source")
                .and_then(|src| src.split_whitespace().next())
                .filter(|src| plausible(src) && *src != name)
            {
                p.qualifiers
                    .insert("upstream".to_string(), source.to_string());
            }
            Some(p)
        })
        .collect()
}

/// `ID` and `VERSION_ID` (else `VERSION_CODENAME`) of an `os-release` file.
pub(crate) fn os_release(text: &str) -> Option<(String, String)> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            fields.insert(k.trim(), v.trim().trim_matches(['"', '\'']));
        }
    }
    let id = fields.get("ID").filter(|v| plausible(v))?;
    let version = fields
        .get("VERSION_ID")
        .or_else(|| fields.get("VERSION_CODENAME"))
        .filter(|v| plausible(v))?;
    Some(((*id).to_string(), (*version).to_string()))
}

/// A Python distribution's `METADATA` headers: `Name`, `Version`, `License-Expression`
/// (else `License` or a `License ::` classifier, as prose).
pub(crate) fn python_metadata(headers: &str, path: &str) -> Vec<Package> {
    let mut fields: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim());
        }
    }
    let first = |k: &str| fields.get(k).and_then(|v| v.first()).copied();
    let (Some(name), Some(version)) = (first("name"), first("version")) else {
        return Vec::new();
    };
    if !plausible(name) || !plausible(version) {
        return Vec::new();
    }
    let mut p = package(Ecosystem::Pypi, name, version, path);
    p.license = first("license-expression")
        .filter(|l| plausible(l))
        .map(str::to_string);
    if p.license.is_none() {
        let classifier = fields.get("classifier").and_then(|cs| {
            cs.iter()
                .filter_map(|c| c.strip_prefix("License ::"))
                .map(|c| c.rsplit("::").next().unwrap_or(c).trim())
                .find(|c| plausible(c))
        });
        p.license_name = first("license")
            .filter(|l| plausible(l) && l.len() <= 80 && *l != "UNKNOWN")
            .or(classifier)
            .map(str::to_string);
    }
    vec![p]
}

/// An installed npm package's `package.json`: `name`, `version`, `license`.
pub(crate) fn package_json(text: &str, path: &str) -> Vec<Package> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let (Some(name), Some(version)) = (json["name"].as_str(), json["version"].as_str()) else {
        return Vec::new();
    };
    if !plausible(name) || !plausible(version) {
        return Vec::new();
    }
    let mut p = package(Ecosystem::Npm, name, version, path);
    let license = json["license"]
        .as_str()
        .or_else(|| json["license"]["type"].as_str())
        .filter(|l| plausible(l));
    if let Some(license) = license {
        if super::license::is_expression(license) {
            p.license = Some(license.to_string());
        } else {
            p.license_name = Some(license.to_string());
        }
    }
    vec![p]
}

/// The crates of a `Cargo.lock` that come from a registry (not the workspace's own, not
/// git or path dependencies, which have no registry version to name).
pub(crate) fn cargo_lock(text: &str, path: &str) -> Vec<Package> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<Crate>,
    }
    #[derive(serde::Deserialize)]
    struct Crate {
        name: String,
        version: String,
        source: Option<String>,
    }
    let Ok(lock) = toml::from_str::<Lock>(text) else {
        return Vec::new();
    };
    lock.package
        .iter()
        .filter(|c| {
            c.source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
        })
        .filter(|c| plausible(&c.name) && plausible(&c.version))
        .map(|c| package(Ecosystem::Cargo, &c.name, &c.version, path))
        .collect()
}

/// The modules of a Go binary's build information: the main module, its dependencies
/// (a `=>` line replaces the one before it) and the standard library (`stdlib`).
pub(crate) fn go_modules(go: &str, modinfo: &str, path: &str) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    for line in modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", module, version, ..] => {
                let version = if *version == "(devel)" { "" } else { version };
                if plausible(module) {
                    out.push(package(Ecosystem::Golang, module, version, path));
                }
            }
            ["=>", module, version, ..] => {
                if let Some(last) = out.last_mut()
                    && plausible(module)
                {
                    last.name = (*module).to_string();
                    last.version = (*version).to_string();
                }
            }
            _ => {}
        }
    }
    // `go1.24.1` or `go1.24.1 X:boringcrypto`.
    if let Some(version) = go
        .split_whitespace()
        .next()
        .and_then(|v| v.strip_prefix("go"))
        .filter(|v| plausible(v))
    {
        out.push(package(Ecosystem::Golang, "stdlib", version, path));
    }
    out
}

/// Node.js's version from its `node_version.h`.
pub(crate) fn node_version_h(text: &str, path: &str) -> Vec<Package> {
    let define = |name: &str| {
        text.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("#define") && words.next() == Some(name))
                .then(|| words.next())
                .flatten()
                .filter(|v| v.chars().all(|c| c.is_ascii_digit()))
        })
    };
    match (
        define("NODE_MAJOR_VERSION"),
        define("NODE_MINOR_VERSION"),
        define("NODE_PATCH_VERSION"),
    ) {
        (Some(major), Some(minor), Some(patch_level)) => vec![package(
            Ecosystem::Generic,
            "node",
            &format!("{major}.{minor}.{patch_level}"),
            path,
        )],
        _ => Vec::new(),
    }
}

/// CPython's version from its `patchlevel.h` (`#define PY_VERSION "3.13.5"`).
pub(crate) fn python_patchlevel_h(text: &str, path: &str) -> Vec<Package> {
    text.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("#define") && words.next() == Some("PY_VERSION"))
                .then(|| words.next())
                .flatten()
                .map(|v| v.trim_matches('"'))
                .filter(|v| plausible(v))
        })
        .map(|v| vec![package(Ecosystem::Generic, "python", v, path)])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_keeps_installed_packages_with_arch_and_source() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1:2.0-1+b1\nArchitecture: amd64\nSource: asrc (2.0-1)\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 1\n";
        let found = dpkg(text, "var/lib/dpkg/status");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].version, "1:2.0-1+b1");
        assert_eq!(found[0].qualifiers["upstream"], "asrc");
        assert!(dpkg("not: [a stanza\n broken", "x").len() <= 1);
    }

    #[test]
    fn python_metadata_prefers_the_expression_then_prose() {
        let p = &python_metadata(
            "Name: gunicorn\nVersion: 23.0.0\nLicense: MIT\nClassifier: License :: OSI Approved :: MIT License\n",
            "x",
        )[0];
        assert_eq!(
            (p.license.as_deref(), p.license_name.as_deref()),
            (None, Some("MIT"))
        );
        let p = &python_metadata(
            "Name: x\nVersion: 1\nClassifier: License :: OSI Approved :: BSD License\n",
            "x",
        )[0];
        assert_eq!(p.license_name.as_deref(), Some("BSD License"));
        assert!(python_metadata("Name: x\n", "x").is_empty());
    }

    #[test]
    fn go_replacements_and_stdlib() {
        let found = go_modules(
            "go1.24.1 X:nocoverageredesign",
            "path\tm\nmod\tm\t(devel)\t\ndep\ta\tv1.0.0\th1:x\n=>\tb\tv2.0.0\th1:y\n",
            "app",
        );
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("m", ""), ("b", "v2.0.0"), ("stdlib", "1.24.1")]);
    }

    #[test]
    fn runtimes_from_headers() {
        let h = "#define NODE_MAJOR_VERSION 22\n#define NODE_MINOR_VERSION 12\n#define NODE_PATCH_VERSION 0\n";
        assert_eq!(node_version_h(h, "x")[0].version, "22.12.0");
        let h = "#define PY_VERSION              \"3.13.5\"\n";
        assert_eq!(python_patchlevel_h(h, "x")[0].version, "3.13.5");
    }

    #[test]
    fn cargo_lock_lists_registry_crates_only() {
        let lock = "version = 4\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\nsource = \"registry+https://example.invalid/index\"\n";
        let found = cargo_lock(lock, "workspace/Cargo.lock");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "serde");
    }
}
