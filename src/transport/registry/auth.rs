//! Registry credentials, looked up as the Docker and podman tools look them up.
//!
//! For a registry host, in order:
//!
//! 1. credentials given to kiln (`--creds USER:PASSWORD` or `KILN_REGISTRY_AUTH`), for the
//!    registries of that command;
//! 2. `REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json` (podman's and
//!    skopeo's `auths`);
//! 3. Docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`): `credHelpers` for that
//!    host, else `credsStore`, else `auths` — helpers run as `docker-credential-<name> get`;
//! 4. anonymous access.
//!
//! Credentials are never printed, logged, or written into images, labels or reports:
//! [`Credentials`] shows only the user name.

use std::fmt;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

/// `--creds` / `KILN_REGISTRY_AUTH` text that is not `USER:PASSWORD` (with a user name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credentials are written USER:PASSWORD")]
pub struct NotUserPassword;

/// Credentials for a registry host that could not be looked up. (Messages name the host and
/// file, never a credential.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The credentials file could not be read as a bounded regular file.
    #[error("cannot read credentials for {host}: {problem}")]
    UnreadableFile {
        /// The registry host.
        host: String,
        /// Why (part of the message, not a separate cause).
        problem: crate::untrusted::ReadError,
    },
    /// The credential helper the file names failed.
    #[error(
        "the credential helper docker-credential-{helper} (named in {}) failed for {host}",
        path.display()
    )]
    HelperFailed {
        /// The helper, as the credential library names it.
        helper: String,
        /// The file naming it.
        path: PathBuf,
        /// The registry host.
        host: String,
    },
    /// The file's credentials for the host could not be read.
    #[error("cannot read credentials for {host} from {}: {problem}", path.display())]
    Unreadable {
        /// The registry host.
        host: String,
        /// The file.
        path: PathBuf,
        /// Why (part of the message, not a separate cause).
        problem: CredentialRetrievalError,
    },
    /// The file holds an OAuth identity token, which kiln cannot exchange.
    #[error(
        "{origin} holds an identity token (from an OAuth login), which kiln cannot exchange; log in with a user name and password or token instead (docker login -u …)"
    )]
    IdentityToken {
        /// Where it came from (the file).
        origin: String,
    },
}

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses `USER:PASSWORD` (the password may contain `:`).
    pub fn parse(text: &str) -> Result<Self, NotUserPassword> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Self::new(user, password)),
            _ => Err(NotUserPassword),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn to_auth(&self) -> RegistryAuth {
        RegistryAuth::Basic(self.username.clone(), self.password.clone())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}:<redacted>)", self.username)
    }
}

/// How kiln will authenticate to a registry, and where that came from (for messages).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) auth: RegistryAuth,
    /// `anonymously`, `with --creds`, `with credentials from /root/.docker/config.json`…
    pub(crate) how: String,
}

/// The key Docker's files use for `host`: Docker Hub is `index.docker.io`.
fn config_key(host: &str) -> &str {
    match host {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => "index.docker.io",
        other => other,
    }
}

fn from_file(path: &Path, host: &str) -> Result<Option<Resolved>, CredentialsError> {
    // Bounded, and never waiting on a FIFO; a file that cannot be read holds nothing.
    let bytes = match crate::untrusted::read_file(
        path,
        crate::untrusted::MAX_DOCUMENT,
        crate::untrusted::Links::Follow,
    ) {
        Ok(bytes) => bytes,
        // Missing or unreadable: no credentials there (as before bounded reads).
        Err(crate::untrusted::ReadError::Io { .. }) => return Ok(None),
        Err(problem) => {
            return Err(CredentialsError::UnreadableFile {
                host: host.to_string(),
                problem,
            });
        }
    };
    match docker_credential::get_credential_from_reader(&bytes[..], config_key(host)) {
        Ok(credential) => to_resolved(credential, &path.display().to_string()).map(Some),
        Err(
            CredentialRetrievalError::NoCredentialConfigured
            | CredentialRetrievalError::ConfigNotFound,
        ) => Ok(None),
        // Helpers answer "credentials not found" for hosts they hold nothing for.
        Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. })
            if format!("{stdout}{stderr}")
                .to_ascii_lowercase()
                .contains("not found") =>
        {
            Ok(None)
        }
        Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
            Err(CredentialsError::HelperFailed {
                helper,
                path: path.to_path_buf(),
                host: host.to_string(),
            })
        }
        Err(problem) => Err(CredentialsError::Unreadable {
            host: host.to_string(),
            path: path.to_path_buf(),
            problem,
        }),
    }
}

fn to_resolved(credential: DockerCredential, origin: &str) -> Result<Resolved, CredentialsError> {
    match credential {
        DockerCredential::UsernamePassword(user, password) => Ok(Resolved {
            auth: RegistryAuth::Basic(user, password),
            how: format!("with credentials from {origin}"),
        }),
        DockerCredential::IdentityToken(_) => Err(CredentialsError::IdentityToken {
            origin: origin.to_string(),
        }),
    }
}

/// The credentials to use for `host`.
pub(crate) fn resolve(
    host: &str,
    given: Option<&Credentials>,
) -> Result<Resolved, CredentialsError> {
    if let Some(credentials) = given {
        return Ok(Resolved {
            auth: credentials.to_auth(),
            how: format!("as {} (given to kiln)", credentials.username()),
        });
    }
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let podman = var("REGISTRY_AUTH_FILE")
        .or_else(|| var("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    if let Some(path) = podman
        && let Some(found) = from_file(&path, host)?
    {
        return Ok(found);
    }
    let docker = var("DOCKER_CONFIG")
        .or_else(|| var("HOME").map(|h| h.join(".docker")))
        .map(|d| d.join("config.json"));
    if let Some(path) = docker
        && let Some(found) = from_file(&path, host)?
    {
        return Ok(found);
    }
    Ok(Resolved {
        auth: RegistryAuth::Anonymous,
        how: "anonymously".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_never_show_the_password() {
        let c = Credentials::parse("ci:s3cr:et").unwrap();
        assert_eq!(c.username(), "ci");
        assert!(!format!("{c:?}").contains("s3cr"));
        assert!(Credentials::parse("nocolon").is_err());
        assert!(Credentials::parse(":pw").is_err());
    }

    #[test]
    fn auth_files_are_read_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        // "ci:pw" in base64.
        std::fs::write(
            &path,
            r#"{"auths": {"127.0.0.1:5001": {"auth": "Y2k6cHc="}, "https://index.docker.io/v1/": {"auth": "aHViOnB3"}}}"#,
        )
        .unwrap();
        let found = from_file(&path, "127.0.0.1:5001").unwrap().unwrap();
        assert!(matches!(found.auth, RegistryAuth::Basic(ref u, ref p) if u == "ci" && p == "pw"));
        assert!(found.how.contains("auth.json"));
        // The password shows nowhere (the temporary path may contain "pw" by chance).
        let shown = found.how.replace(&path.display().to_string(), "");
        assert!(!shown.contains("pw") && !shown.contains("Y2k6cHc="));
        let hub = from_file(&path, "docker.io").unwrap().unwrap();
        assert!(matches!(hub.auth, RegistryAuth::Basic(ref u, _) if u == "hub"));
        assert!(from_file(&path, "other.example").unwrap().is_none());
        assert!(
            from_file(&dir.path().join("missing.json"), "x")
                .unwrap()
                .is_none()
        );
    }
}
