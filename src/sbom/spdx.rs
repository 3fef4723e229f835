//! The SPDX 2.3 JSON document: the document `DESCRIBES` the image (a `CONTAINER` package
//! named by its manifest digest), which `CONTAINS` one package per component, each with its
//! purl as a `PACKAGE-MANAGER` reference and its layer and path in `comment`. Files are not
//! analysed (`filesAnalyzed: false`). `licenseDeclared` is an expression only when it names
//! licences of the SPDX list kiln knows ([`super::license`]); otherwise `NOASSERTION`,
//! with the declared text in `licenseComments`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::catalog::Ecosystem;
use super::{Component, Inventory, KILN_VERSION, license};

/// `SPDXRef-` and `text` with every character outside `[A-Za-z0-9.-]` as `-`.
fn spdx_id(parts: &[&str]) -> String {
    let text = parts.join("-");
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{clean}")
}

fn package(c: &Component, id: &str) -> Value {
    let p = &c.package;
    let purpose = match p.ecosystem {
        Ecosystem::Generic => "APPLICATION",
        _ => "LIBRARY",
    };
    let comment = c
        .locations
        .iter()
        .map(|(layer, path)| format!("{path} in layer {layer}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = json!({
        "SPDXID": id,
        "name": p.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": purpose,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": c.purl,
        }],
        "comment": comment,
    });
    if !p.version.is_empty() {
        out["versionInfo"] = json!(p.version);
    }
    match (&p.license, &p.license_name) {
        (Some(expression), _) if license::is_known_expression(expression) => {
            out["licenseDeclared"] = json!(expression);
        }
        (Some(text), _) | (None, Some(text)) => {
            out["licenseComments"] = json!(format!("declared licence: {text}"));
        }
        (None, None) => {}
    }
    out
}

/// The document.
pub(super) fn document(inventory: &Inventory) -> Value {
    let digest = inventory.digest.to_string();
    let mut used = BTreeSet::from(["SPDXRef-DOCUMENT".to_string(), "SPDXRef-image".to_string()]);
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-image",
        "name": inventory.name,
        "versionInfo": digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-image",
    })];
    let ecosystem = |e: Ecosystem| {
        serde_json::to_value(e)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    for c in &inventory.components {
        let base = spdx_id(&[
            "Package",
            &ecosystem(c.package.ecosystem),
            &c.package.name,
            &c.package.version,
        ]);
        let mut id = base.clone();
        let mut n = 1;
        while !used.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        packages.push(package(c, &id));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    if let Some((os_id, version)) = &inventory.os {
        let id = spdx_id(&["OperatingSystem", os_id, version]);
        packages.push(json!({
            "SPDXID": id,
            "name": os_id,
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{digest}", inventory.name),
        "documentNamespace": format!(
            "https://kiln-build.github.io/spdx/{}",
            digest.replace(':', "/")
        ),
        "creationInfo": {
            "created": inventory.created,
            "creators": [format!("Tool: kiln-{KILN_VERSION}")],
        },
        "packages": packages,
        "relationships": relationships,
    })
}
