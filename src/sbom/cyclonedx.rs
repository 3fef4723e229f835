//! The CycloneDX 1.6 JSON document (valid as 1.5 too): the image as
//! `metadata.component` (a container named by its manifest digest), kiln as the tool, one
//! `library` component per package (`application` for a runtime, `operating-system` for
//! the distribution), each with its purl, declared licence and locations as properties:
//! `kiln:layer:diffID` and Syft's `syft:location:N:layerID` / `syft:location:N:path`.

use serde_json::{Value, json};

use super::catalog::Ecosystem;
use super::{Component, Inventory, KILN_VERSION, license, uuid_of};

fn component(c: &Component) -> Value {
    let p = &c.package;
    let mut properties = Vec::new();
    let mut layers: Vec<&str> = c.locations.iter().map(|(l, _)| l.as_str()).collect();
    layers.dedup();
    for layer in layers {
        properties.push(json!({"name": "kiln:layer:diffID", "value": layer}));
    }
    for (i, (layer, path)) in c.locations.iter().enumerate() {
        properties.push(json!({"name": format!("syft:location:{i}:layerID"), "value": layer}));
        properties.push(json!({"name": format!("syft:location:{i}:path"), "value": path}));
    }
    let kind = match p.ecosystem {
        Ecosystem::Generic => "application",
        _ => "library",
    };
    let mut out = json!({
        "bom-ref": c.purl,
        "type": kind,
        "name": p.name,
        "purl": c.purl,
        "properties": properties,
    });
    if !p.version.is_empty() {
        out["version"] = json!(p.version);
    }
    if let Some(expression) = p.license.as_deref().filter(|l| license::is_expression(l)) {
        out["licenses"] = json!([{"expression": expression}]);
    } else if let Some(name) = p.license_name.as_deref().or(p.license.as_deref()) {
        out["licenses"] = json!([{"license": {"name": name}}]);
    }
    out
}

/// The document.
pub(super) fn document(inventory: &Inventory) -> Value {
    let mut components: Vec<Value> = inventory.components.iter().map(component).collect();
    let mut refs: Vec<String> = inventory
        .components
        .iter()
        .map(|c| c.purl.clone())
        .collect();
    if let Some((id, version)) = &inventory.os {
        let os_ref = format!("os:{id}-{version}");
        components.push(json!({
            "bom-ref": os_ref,
            "type": "operating-system",
            "name": id,
            "version": version,
        }));
        refs.push(os_ref);
    }
    let digest = inventory.digest.to_string();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "serialNumber": format!("urn:uuid:{}", uuid_of(&digest)),
        "metadata": {
            "timestamp": inventory.created,
            "tools": {"components": [{"type": "application", "name": "kiln", "version": KILN_VERSION}]},
            "component": {
                "bom-ref": "image",
                "type": "container",
                "name": inventory.name,
                "version": digest,
            },
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": refs}],
    })
}
