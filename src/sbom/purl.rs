//! Package URLs (purl) of the packages an SBOM lists.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::catalog::{Ecosystem, Package};

/// Percent-encodes everything but RFC 3986's unreserved characters (so `+` is `%2B`, `:`
/// `%3A` and `@` `%40`, as the purl spec asks of names, versions and qualifier values).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The purl of `package`; `distro` is `<ID>-<VERSION_ID>` of the image's `os-release`
/// (Debian packages), if known.
pub(crate) fn purl(package: &Package, distro: Option<&(String, String)>) -> String {
    let mut qualifiers = BTreeMap::new();
    let path = match package.ecosystem {
        Ecosystem::Deb => {
            for (k, v) in &package.qualifiers {
                qualifiers.insert(k.clone(), v.clone());
            }
            let namespace = distro.map_or("debian", |(id, _)| id.as_str());
            if let Some((id, version)) = distro {
                qualifiers.insert("distro".to_string(), format!("{id}-{version}"));
            }
            format!("deb/{}/{}", encode(namespace), encode(&package.name))
        }
        Ecosystem::Pypi => format!(
            "pypi/{}",
            encode(&package.name.to_ascii_lowercase().replace(['_', '.'], "-"))
        ),
        Ecosystem::Npm => match package.name.split_once('/') {
            Some((scope, name)) if scope.starts_with('@') => {
                format!("npm/{}/{}", encode(scope), encode(name))
            }
            _ => format!("npm/{}", encode(&package.name)),
        },
        Ecosystem::Golang => format!(
            "golang/{}",
            package
                .name
                .split('/')
                .map(encode)
                .collect::<Vec<_>>()
                .join("/")
        ),
        Ecosystem::Cargo => format!("cargo/{}", encode(&package.name)),
        Ecosystem::Generic => format!("generic/{}", encode(&package.name)),
    };
    let mut out = format!("pkg:{path}");
    if !package.version.is_empty() {
        out.push('@');
        out.push_str(&encode(&package.version));
    }
    let mut separator = '?';
    for (k, v) in &qualifiers {
        let _ = write!(out, "{separator}{k}={}", encode(v));
        separator = '&';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
        Package {
            ecosystem,
            name: name.to_string(),
            version: version.to_string(),
            path: String::new(),
            license: None,
            license_name: None,
            qualifiers: BTreeMap::new(),
        }
    }

    #[test]
    fn purls_follow_each_type_s_rules() {
        let mut deb = pkg(Ecosystem::Deb, "libc6", "2.41-12+deb13u1");
        deb.qualifiers
            .insert("arch".to_string(), "amd64".to_string());
        deb.qualifiers
            .insert("upstream".to_string(), "glibc".to_string());
        let debian = ("debian".to_string(), "13".to_string());
        assert_eq!(
            purl(&deb, Some(&debian)),
            "pkg:deb/debian/libc6@2.41-12%2Bdeb13u1?arch=amd64&distro=debian-13&upstream=glibc"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Pypi, "Django_Allauth", "12.23"), None),
            "pkg:pypi/django-allauth@12.23"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Npm, "@angular/animation", "12.3.1"), None),
            "pkg:npm/%40angular/animation@12.3.1"
        );
        assert_eq!(
            purl(
                &pkg(
                    Ecosystem::Golang,
                    "github.com/coreos/go-systemd/v22",
                    "v22.1.0"
                ),
                None
            ),
            "pkg:golang/github.com/coreos/go-systemd/v22@v22.1.0"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Cargo, "rand", "0.7.2"), None),
            "pkg:cargo/rand@0.7.2"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Golang, "example.com/app", ""), None),
            "pkg:golang/example.com/app"
        );
    }
}
