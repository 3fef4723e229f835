//! Packages from the npm registry the user configured (`npm_config_registry`, `.npmrc`),
//! fetched with npm itself so that npm's own settings apply (registry, CA, proxy, auth):
//! `npm view` for the versions and their `dist.integrity`, `npm pack` for the tarball. kiln
//! checks every tarball against the registry's sha512 integrity (or the `+sha512.…` /
//! `+sha224.…` hash of a `packageManager` field) itself before unpacking it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nodejs_semver::Version;
use serde::Deserialize;
use sha2::Digest as _;

use crate::common::{Error, Result, cmd};

/// What a package's tarball must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    /// The registry's Subresource Integrity string (`sha512-<base64>`; other algorithms
    /// in it are ignored).
    Integrity(String),
    /// A hex sha512 digest (`packageManager`'s `+sha512.<hex>`).
    Sha512(String),
    /// A hex sha224 digest (`packageManager`'s `+sha224.<hex>`).
    Sha224(String),
}

/// One version's manifest, as `npm view NAME@VERSION --json` shows it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    /// The version.
    pub(crate) version: String,
    /// `engines` (`node`, `npm` ranges).
    #[serde(default)]
    pub(crate) engines: Option<serde_json::Value>,
    /// `dist`.
    #[serde(default)]
    pub(crate) dist: Option<Dist>,
}

/// A manifest's `dist`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Dist {
    /// `sha512-<base64>` (and possibly other algorithms).
    #[serde(default)]
    pub(crate) integrity: Option<String>,
}

impl Manifest {
    /// `engines.<name>`, when it is a string.
    pub(crate) fn engine(&self, name: &str) -> Option<&str> {
        self.engines.as_ref()?.get(name)?.as_str()
    }
}

/// The npm registry npm is configured with (`npm_config_registry`, else `npm config get
/// registry`), without a trailing `/`; `None` when neither says.
pub(crate) fn configured() -> Option<String> {
    let from_env = ["npm_config_registry", "NPM_CONFIG_REGISTRY"]
        .iter()
        .find_map(|name| std::env::var(name).ok());
    registry_from(from_env, || {
        let out = Command::new("npm")
            .args(["config", "get", "registry"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// The registry from the environment's setting, else from npm's answer: an `http(s)` URL
/// without a trailing `/`.
pub(crate) fn registry_from(
    env: Option<String>,
    npm: impl FnOnce() -> Option<String>,
) -> Option<String> {
    let registry = env.filter(|v| !v.trim().is_empty()).or_else(npm)?;
    let registry = registry.trim().trim_end_matches('/');
    (registry.starts_with("http://") || registry.starts_with("https://"))
        .then(|| registry.to_string())
}

/// npm, run with a private cache directory (removed on drop) so that no stale packument
/// decides a version and nothing is written to the user's own cache.
pub(crate) struct Npm {
    cache: PathBuf,
    registry: String,
}

impl Npm {
    /// The build environment's npm; an error naming what is missing without one.
    pub(crate) fn new() -> Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        if cmd::which("npm").is_none() {
            return Err(cmd::missing(
                "npm",
                "kiln fetches Node.js and package managers from the npm registry with it",
                "install npm (Debian: apt-get install npm)",
            ));
        }
        // Its own new directory: sandboxes share /tmp but not PIDs, so the name alone is
        // not enough to keep two builds apart.
        let cache = loop {
            let candidate = std::env::temp_dir().join(format!(
                "kiln-npm-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(
                        Error::new(format!("cannot create {}: {e}", candidate.display()))
                            .hint("kiln/nodejs needs a writable temporary directory (TMPDIR)"),
                    );
                }
            }
        };
        let registry =
            configured().unwrap_or_else(|| "the npm registry npm is configured with".to_string());
        Ok(Self { cache, registry })
    }

    /// The registry, for messages.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("npm");
        c.args(args)
            .env("npm_config_cache", &self.cache)
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false")
            .current_dir(&self.cache);
        c
    }

    /// Runs npm quietly: its standard output, or an error naming the command, the registry
    /// and npm's last words.
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = self.command(args);
        let out = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::new(format!("could not run npm: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = said[said.len().saturating_sub(8)..].join("\n    ");
        Err(Error::new(format!(
            "`{}` failed ({}) with the npm registry {}:\n    {tail}",
            cmd::describe(&command),
            out.status,
            self.registry
        ))
        .hint("check npm's registry settings (npm_config_registry, .npmrc, `npm config get registry`) and that the registry is reachable; kiln fetches Node.js and package managers only from that registry"))
    }

    /// Every published version of `package` (prereleases included; ranges skip them).
    pub(crate) fn versions(&self, package: &str) -> Result<Vec<Version>> {
        let out = self.run(&["view", package, "versions", "--json"])?;
        let value: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
            Error::new(format!(
                "`npm view {package} versions` did not answer JSON: {e}"
            ))
        })?;
        let listed = match value {
            serde_json::Value::Array(list) => list,
            one @ serde_json::Value::String(_) => vec![one],
            _ => Vec::new(),
        };
        Ok(listed
            .iter()
            .filter_map(serde_json::Value::as_str)
            .filter_map(|v| Version::parse(v).ok())
            .collect())
    }

    /// The manifests (version, engines, dist) of the versions of `package` in `range`.
    pub(crate) fn manifests(&self, package: &str, range: &str) -> Result<Vec<Manifest>> {
        let spec = format!("{package}@{range}");
        let out = self.run(&["view", &spec, "version", "engines", "dist", "--json"])?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        let value: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| Error::new(format!("`npm view {spec}` did not answer JSON: {e}")))?;
        let list = match value {
            serde_json::Value::Array(list) => list,
            one => vec![one],
        };
        list.into_iter()
            .map(|m| {
                serde_json::from_value(m).map_err(|e| {
                    Error::new(format!("`npm view {spec}` answered an odd manifest: {e}"))
                })
            })
            .collect()
    }

    /// The manifest of `package@version` exactly.
    pub(crate) fn manifest(&self, package: &str, version: &str) -> Result<Manifest> {
        self.manifests(package, version)?
            .into_iter()
            .find(|m| m.version == version)
            .ok_or_else(|| {
                Error::new(format!(
                    "the npm registry {} has no {package}@{version}",
                    self.registry
                ))
            })
    }

    /// Downloads `package@version` with `npm pack` into `dir` and checks it against
    /// `expected`; returns the tarball's path.
    pub(crate) fn fetch(
        &self,
        package: &str,
        version: &str,
        dir: &Path,
        expected: &Expected,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
        let spec = format!("{package}@{version}");
        let dest = dir.display().to_string();
        let out = self.run(&[
            "pack",
            &spec,
            "--pack-destination",
            &dest,
            "--ignore-scripts",
            "--json",
        ])?;
        let packed: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| Error::new(format!("`npm pack {spec}` did not answer JSON: {e}")))?;
        let filename = packed
            .get(0)
            .and_then(|p| p.get("filename"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::new(format!("`npm pack {spec}` did not name its tarball")))?;
        // npm names scoped packages' tarballs `scope-name-1.0.0.tgz`; keep only the name.
        let name = Path::new(filename)
            .file_name()
            .ok_or_else(|| Error::new(format!("`npm pack {spec}` named no file")))?;
        let tarball = dir.join(name);
        let bytes = std::fs::read(&tarball)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", tarball.display())))?;
        verify(&bytes, expected).map_err(|problem| {
            Error::new(format!(
                "{spec} from the npm registry {} does not match {problem}",
                self.registry
            ))
            .hint("the download was altered or the registry serves another file than it lists; check the registry (and a proxy between), or fix the hash in package.json's packageManager")
        })?;
        Ok(tarball)
    }
}

impl Drop for Npm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.cache);
    }
}

/// Checks `bytes` against `expected`; the error says which hash it did not match.
pub(crate) fn verify(bytes: &[u8], expected: &Expected) -> std::result::Result<(), String> {
    match expected {
        Expected::Integrity(integrity) => {
            let wanted: Vec<&str> = integrity
                .split_whitespace()
                .filter_map(|h| h.strip_prefix("sha512-"))
                .map(|h| h.split('?').next().unwrap_or(h))
                .collect();
            if wanted.is_empty() {
                return Err(format!(
                    "any sha512 integrity: the registry lists only `{integrity}`, which kiln does not trust"
                ));
            }
            let found = base64(&sha2::Sha512::digest(bytes));
            if wanted.contains(&found.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "the registry's integrity sha512-{} (the download's is sha512-{found})",
                    wanted[0]
                ))
            }
        }
        Expected::Sha512(hex) => compare_hex(
            "sha512",
            hex,
            &crate::common::files::hex(&sha2::Sha512::digest(bytes)),
        ),
        Expected::Sha224(hex) => compare_hex(
            "sha224",
            hex,
            &crate::common::files::hex(&sha2::Sha224::digest(bytes)),
        ),
    }
}

fn compare_hex(algorithm: &str, wanted: &str, found: &str) -> std::result::Result<(), String> {
    if wanted.eq_ignore_ascii_case(found) {
        Ok(())
    } else {
        Err(format!(
            "packageManager's {algorithm} {wanted} (the download's is {found})"
        ))
    }
}

/// Standard base64 with padding (what integrity strings use).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Unpacks an npm tarball into `dir` without its top directory (`package/`).
pub(crate) fn extract(tarball: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    cmd::output(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(dir)
            .args(["--strip-components=1", "--no-same-owner"]),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_registry_comes_from_the_environment_then_npm() {
        let none = || None;
        assert_eq!(
            registry_from(Some("https://npm.example/".into()), none).as_deref(),
            Some("https://npm.example")
        );
        assert_eq!(
            registry_from(None, || Some("https://mirror.example/npm/\n".into())).as_deref(),
            Some("https://mirror.example/npm")
        );
        // The environment wins over npm's configuration files.
        assert_eq!(
            registry_from(Some("http://a.example".into()), || Some(
                "https://b.example".into()
            ))
            .as_deref(),
            Some("http://a.example")
        );
        assert_eq!(
            registry_from(Some(" ".into()), || Some("undefined".into())),
            None
        );
        assert_eq!(registry_from(None, none), None);
    }

    #[test]
    fn base64_matches_known_answers() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn tarballs_are_checked_against_the_integrity_or_the_pinned_hash() {
        let data = b"a tarball";
        let sri = format!("sha512-{}", base64(&sha2::Sha512::digest(data)));
        assert_eq!(verify(data, &Expected::Integrity(sri.clone())), Ok(()));
        // Other algorithms beside it are ignored.
        assert_eq!(
            verify(data, &Expected::Integrity(format!("sha1-abc {sri}"))),
            Ok(())
        );
        let err = verify(b"another", &Expected::Integrity(sri)).unwrap_err();
        assert!(err.contains("the registry's integrity sha512-"), "{err}");
        let err = verify(data, &Expected::Integrity("sha1-abc".into())).unwrap_err();
        assert!(err.contains("does not trust"), "{err}");
        let hex = crate::common::files::hex(&sha2::Sha512::digest(data));
        assert_eq!(verify(data, &Expected::Sha512(hex.to_uppercase())), Ok(()));
        assert!(verify(b"x", &Expected::Sha512(hex)).is_err());
        let hex224 = crate::common::files::hex(&sha2::Sha224::digest(data));
        assert_eq!(hex224.len(), 56);
        assert_eq!(verify(data, &Expected::Sha224(hex224)), Ok(()));
    }
}
