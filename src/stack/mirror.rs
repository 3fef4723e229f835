//! Which Debian mirrors to use.
//!
//! The main archive comes from `--mirror URL`, else `KILN_DEBIAN_MIRROR`, else the host's apt
//! sources (`/etc/apt/sources.list`, `/etc/apt/sources.list.d/*.list` one-line entries and
//! `*.sources` deb822 entries) — the first `deb` entry serving the stack's suite, else the
//! first whose URI ends in `/debian` (a Debian mirror serves every release, so a bookworm host
//! can lock and build a trixie stack). The security archive likewise from `--security-mirror`,
//! `KILN_DEBIAN_SECURITY_MIRROR`, the host entry serving `<suite>-security`, the main mirror
//! with `/debian` replaced by `/debian-security`, or the first entry whose URI ends in
//! `/debian-security`. No mirror is an error that says how to give one.

use std::fs;
use std::path::Path;

use super::control::parse_stanzas;

/// The mirrors of the two Debian archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirrors {
    /// The main archive (`…/debian`).
    pub debian: String,
    /// The security archive (`…/debian-security`), if one is known.
    pub security: Option<String>,
}

impl Mirrors {
    /// The base URL of archive kind `kind` (`debian` or `debian-security`).
    pub(crate) fn url(&self, kind: &str) -> Option<&str> {
        match kind {
            "debian-security" => self.security.as_deref(),
            _ => Some(&self.debian),
        }
    }
}

/// One `deb` source from apt's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AptSource {
    /// Base URI.
    pub uri: String,
    /// Suites it serves.
    pub suites: Vec<String>,
}

/// No Debian mirror is configured for a suite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no Debian mirror: give --mirror URL (a Debian mirror's URL, e.g. http://mirror.example/debian), set KILN_DEBIAN_MIRROR, or configure apt sources for {suite}"
)]
pub(crate) struct NoMirror {
    /// The suite that needs one.
    pub suite: String,
}

/// Finds the mirrors for `suite`. `main` and `security` are the command-line values.
///
/// # Errors
///
/// [`NoMirror`] when neither the options, the environment nor apt name a mirror.
pub(crate) fn discover(
    main: Option<&str>,
    security: Option<&str>,
    suite: &str,
) -> Result<Mirrors, NoMirror> {
    discover_with(main, security, suite, &env_var, &host_apt_sources())
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// [`discover`] with the environment and apt sources given (for tests).
pub(crate) fn discover_with(
    main: Option<&str>,
    security: Option<&str>,
    suite: &str,
    env: &dyn Fn(&str) -> Option<String>,
    apt: &[AptSource],
) -> Result<Mirrors, NoMirror> {
    let serving = |s: &str| {
        apt.iter()
            .find(|a| a.suites.iter().any(|x| x == s))
            .map(|a| a.uri.clone())
    };
    // A mirror of the archive serves every suite, whichever ones the host's entry names.
    let archive = |path: &str| {
        apt.iter()
            .find(|a| a.uri.trim_end_matches('/').ends_with(path))
            .map(|a| a.uri.clone())
    };
    let debian = main
        .map(str::to_string)
        .or_else(|| env("KILN_DEBIAN_MIRROR"))
        .or_else(|| serving(suite))
        .or_else(|| archive("/debian"))
        .ok_or_else(|| NoMirror {
            suite: suite.to_string(),
        })?;
    let debian = debian.trim_end_matches('/').to_string();
    let security = security
        .map(str::to_string)
        .or_else(|| env("KILN_DEBIAN_SECURITY_MIRROR"))
        .or_else(|| serving(&format!("{suite}-security")))
        .or_else(|| {
            debian
                .strip_suffix("/debian")
                .map(|base| format!("{base}/debian-security"))
        })
        .or_else(|| archive("/debian-security"))
        .map(|s| s.trim_end_matches('/').to_string());
    Ok(Mirrors { debian, security })
}

/// Reads the host's apt sources; unreadable files are skipped, and so are files in
/// `sources.list.d` that apt itself ignores (other names than `*.list` and `*.sources`).
pub(crate) fn host_apt_sources() -> Vec<AptSource> {
    let mut files: Vec<(String, String)> = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), text));
    }
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.retain(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"));
        paths.sort();
        for path in paths {
            if let Ok(text) = fs::read_to_string(&path) {
                files.push((path.display().to_string(), text));
            }
        }
    }
    files
        .iter()
        .flat_map(|(name, text)| parse_apt_sources(Path::new(name), text))
        .collect()
}

/// Parses one apt sources file: deb822 if its name ends in `.sources`, else one-line.
pub(crate) fn parse_apt_sources(name: &Path, text: &str) -> Vec<AptSource> {
    let is_deb822 = name.extension().is_some_and(|e| e == "sources");
    if is_deb822 {
        let Ok(stanzas) = parse_stanzas(text) else {
            return Vec::new();
        };
        return stanzas
            .iter()
            .filter(|s| {
                s.get("Enabled")
                    .is_none_or(|v| !v.eq_ignore_ascii_case("no"))
            })
            .filter(|s| {
                s.get("Types")
                    .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
            })
            .flat_map(|s| {
                let suites: Vec<String> = s
                    .get("Suites")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                s.get("URIs")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(|uri| AptSource {
                        uri: uri.to_string(),
                        suites: suites.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            // Skip an options block: [arch=amd64 signed-by=…].
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut parts = rest.split_whitespace();
            let uri = parts.next()?.to_string();
            let suite = parts.next()?.to_string();
            Some(AptSource {
                uri,
                suites: vec![suite],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\nEnabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n";
        let sources = parse_apt_sources(Path::new("debian.sources"), deb822);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].uri, "http://mirror.example/debian");
        assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
        let one_line = "# comment\ndeb [arch=amd64 signed-by=/x.gpg] http://mirror.example/debian bookworm main\ndeb-src http://src.example bookworm main\ndeb http://sec.example/debian-security bookworm-security main # trailing\n";
        let sources = parse_apt_sources(Path::new("sources.list"), one_line);
        assert_eq!(
            sources,
            [
                AptSource {
                    uri: "http://mirror.example/debian".into(),
                    suites: vec!["bookworm".into()]
                },
                AptSource {
                    uri: "http://sec.example/debian-security".into(),
                    suites: vec!["bookworm-security".into()]
                },
            ]
        );
    }

    #[test]
    fn discovery_order_is_flag_env_apt_then_error() {
        let apt = vec![
            AptSource {
                uri: "http://apt.example/debian".into(),
                suites: vec!["bookworm".into()],
            },
            AptSource {
                uri: "http://apt.example/debian-security/".into(),
                suites: vec!["bookworm-security".into()],
            },
        ];
        let no_env = |_: &str| None;
        let env = |name: &str| {
            (name == "KILN_DEBIAN_MIRROR").then(|| "http://env.example/debian/".into())
        };
        let m = discover_with(
            Some("http://flag.example/debian"),
            None,
            "bookworm",
            &env,
            &apt,
        )
        .unwrap();
        assert_eq!(m.debian, "http://flag.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://apt.example/debian-security")
        );
        let m = discover_with(None, None, "bookworm", &env, &apt).unwrap();
        assert_eq!(m.debian, "http://env.example/debian");
        let m = discover_with(None, None, "bookworm", &no_env, &apt).unwrap();
        assert_eq!(m.debian, "http://apt.example/debian");
        // Without an apt entry for security, /debian becomes /debian-security.
        let m = discover_with(None, None, "bookworm", &env, &[]).unwrap();
        assert_eq!(
            m.security.as_deref(),
            Some("http://env.example/debian-security")
        );
        let err = discover_with(None, None, "bookworm", &no_env, &[]).unwrap_err();
        assert!(err.to_string().contains("--mirror"), "{err}");
    }

    #[test]
    fn a_debian_mirror_serves_suites_its_apt_entry_does_not_name() {
        let apt = vec![
            AptSource {
                uri: "http://other.example/apt".into(),
                suites: vec!["stable".into()],
            },
            AptSource {
                uri: "http://apt.example/debian".into(),
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
            },
            AptSource {
                uri: "http://sec.example/debian-security/".into(),
                suites: vec!["bookworm-security".into()],
            },
        ];
        let no_env = |_: &str| None;
        let m = discover_with(None, None, "trixie", &no_env, &apt).unwrap();
        assert_eq!(m.debian, "http://apt.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://apt.example/debian-security")
        );
        // Only a security entry: the main archive is still unknown.
        let err = discover_with(None, None, "trixie", &no_env, &apt[2..]).unwrap_err();
        assert!(err.to_string().contains("trixie"), "{err}");
        // A main mirror not ending in /debian: the host's security mirror.
        let m = discover_with(
            Some("http://snap.example/archive/20250101"),
            None,
            "trixie",
            &no_env,
            &apt,
        )
        .unwrap();
        assert_eq!(
            m.security.as_deref(),
            Some("http://sec.example/debian-security")
        );
    }
}
