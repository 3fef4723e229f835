//! The Docker Engine API (Docker, or podman's `podman system service`): loading a docker
//! archive into the daemon and saving an image out of it. kiln needs three calls
//! (`/_ping`, `POST /images/load`, `GET /images/get?names=…`), made with the same HTTP client
//! as everything else, over the daemon's unix socket or TCP.
//!
//! The daemon is found at `DOCKER_HOST` (`unix:///path` or `tcp://host:port`), else at
//! `unix:///var/run/docker.sock`. TLS to a TCP daemon (`DOCKER_TLS_VERIFY`) is not supported:
//! use its unix socket, or an SSH tunnel to it.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Engine API version kiln speaks (Docker 20.10+, podman 3+).
const API: &str = "v1.41";

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// `DOCKER_HOST` cannot be used.
    #[error("DOCKER_HOST={host} is not supported: {problem}")]
    BadHost {
        /// The value.
        host: String,
        /// Why.
        problem: String,
    },
    /// The daemon did not answer.
    #[error(
        "cannot reach the Docker daemon at {host}: {message}; start it (or podman system service), or point DOCKER_HOST at it"
    )]
    Unreachable {
        /// Where kiln looked.
        host: String,
        /// What failed.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("the Docker daemon at {host} refused to {operation}: {message}")]
    Api {
        /// The daemon.
        host: String,
        /// What kiln asked.
        operation: String,
        /// The daemon's message.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("failed to use {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A connection to a Docker Engine API.
#[derive(Debug, Clone)]
pub struct Daemon {
    host: String,
    base: String,
    client: reqwest::blocking::Client,
}

impl Daemon {
    /// The daemon at `host` (a `DOCKER_HOST` value), else `DOCKER_HOST`, else the default
    /// socket.
    pub fn connect(host: Option<&str>) -> Result<Self, DaemonError> {
        let host = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let bad = |problem: &str| DaemonError::BadHost {
            host: host.clone(),
            problem: problem.to_string(),
        };
        if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty() && v != "0") {
            return Err(bad(
                "DOCKER_TLS_VERIFY is set, and kiln speaks to daemons over a unix socket or plain TCP only; use the daemon's unix socket or an SSH tunnel",
            ));
        }
        let builder = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Loading a large image takes a while.
            .timeout(Duration::from_hours(1));
        let (client, base) = if let Some(path) = host.strip_prefix("unix://") {
            (
                builder.unix_socket(PathBuf::from(path)),
                "http://docker".to_string(),
            )
        } else if let Some(address) = host.strip_prefix("tcp://") {
            (builder, format!("http://{}", address.trim_end_matches('/')))
        } else {
            return Err(bad("write it as unix:///path/to/socket or tcp://host:port"));
        };
        let client = client.build().map_err(|e| bad(&e.to_string()))?;
        Ok(Self { host, base, client })
    }

    /// Where the daemon is.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn unreachable(&self, e: &reqwest::Error) -> DaemonError {
        DaemonError::Unreachable {
            host: self.host.clone(),
            message: e.to_string(),
        }
    }

    fn api_error(&self, operation: &str, response: reqwest::blocking::Response) -> DaemonError {
        let status = response.status();
        // Only the start of an error body is read: a daemon's message is short.
        let body = crate::untrusted::read_limited(response.take(64 * 1024), 64 * 1024, "")
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("HTTP {status}: {}", body.trim()));
        DaemonError::Api {
            host: self.host.clone(),
            operation: operation.to_string(),
            message,
        }
    }

    /// Checks that the daemon answers.
    pub fn ping(&self) -> Result<(), DaemonError> {
        let response = self
            .client
            .get(format!("{}/_ping", self.base))
            .send()
            .map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.api_error("answer a ping", response))
        }
    }

    /// Loads the docker archive at `archive` (streamed from the file); returns the daemon's
    /// messages (`Loaded image: …`).
    pub fn load(&self, archive: &Path) -> Result<Vec<String>, DaemonError> {
        let file = File::open(archive).map_err(|source| DaemonError::File {
            path: archive.to_path_buf(),
            source,
        })?;
        let response = self
            .client
            .post(format!("{}/{API}/images/load?quiet=1", self.base))
            .header("Content-Type", "application/x-tar")
            .body(reqwest::blocking::Body::new(file))
            .send()
            .map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            return Err(self.api_error("load the image", response));
        }
        // A stream of JSON messages; an error arrives as {"error": …} with status 200. Read
        // with a bound: a daemon has a few lines to say, not gigabytes.
        let body = crate::untrusted::read_limited(
            response,
            crate::untrusted::MAX_DOCUMENT,
            "the daemon's answer to the load",
        )
        .map_err(|e| DaemonError::Unreachable {
            host: self.host.clone(),
            message: e.to_string(),
        })?;
        let mut messages = Vec::new();
        for line in body.lines() {
            let line = line.map_err(|e| DaemonError::Unreachable {
                host: self.host.clone(),
                message: e.to_string(),
            })?;
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
                return Err(DaemonError::Api {
                    host: self.host.clone(),
                    operation: "load the image".to_string(),
                    message: error.to_string(),
                });
            }
            if let Some(text) = value.get("stream").and_then(|s| s.as_str()) {
                messages.push(text.trim().to_string());
            }
        }
        Ok(messages)
    }

    /// Saves the image `name` as a docker archive into `into` (streamed to the file).
    pub fn save(&self, name: &str, into: &Path) -> Result<(), DaemonError> {
        let mut response = self
            .client
            .get(format!("{}/{API}/images/get", self.base))
            .query(&[("names", name)])
            .send()
            .map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            return Err(self.api_error(&format!("export {name}"), response));
        }
        let file_err = |source| DaemonError::File {
            path: into.to_path_buf(),
            source,
        };
        let mut file = File::create(into).map_err(file_err)?;
        response
            .copy_to(&mut file)
            .map_err(|e| DaemonError::Unreachable {
                host: self.host.clone(),
                message: e.to_string(),
            })?;
        file.sync_all().map_err(file_err)?;
        Ok(())
    }
}

impl From<DaemonError> for crate::transport::publish::PublishError {
    fn from(error: DaemonError) -> Self {
        Self::Transport(Box::new(error))
    }
}

impl From<DaemonError> for crate::image::ImageError {
    fn from(error: DaemonError) -> Self {
        Self::Transport(Box::new(error))
    }
}

impl Daemon {
    /// The daemon `transports` name (`DOCKER_HOST` or the default socket otherwise).
    pub fn for_transports(
        transports: &crate::transport::context::Transports,
    ) -> Result<Self, DaemonError> {
        Self::connect(transports.docker_host.as_deref())
    }
}

/// An image in the Docker daemon (`docker-daemon:NAME`): read by saving it to a docker
/// archive and importing that, written by loading a docker archive into the daemon.
#[derive(Debug, Clone)]
pub struct DaemonImage {
    /// Its name in the daemon.
    pub name: crate::image::reference::ImageName,
    /// The reference it was named by.
    pub reference: crate::image::reference::ImageReference,
}

impl DaemonImage {
    fn temp_archive(
        store: &crate::store::Store,
    ) -> Result<tempfile::NamedTempFile, std::io::Error> {
        tempfile::Builder::new()
            .prefix("daemon-")
            .suffix(".tar")
            .tempfile_in(store.work_dir())
    }
}

impl super::context::Transport for DaemonImage {
    fn read(
        &self,
        cx: &super::context::Context<'_>,
        platform: &crate::image::TargetPlatform,
    ) -> Result<crate::image::LoadedImage, crate::image::ImageError> {
        let daemon = Daemon::for_transports(cx.transports)?;
        cx.events.event(&crate::event::Event::Step(format!(
            "Saving {} from the Docker daemon at {}",
            self.name,
            daemon.host()
        )));
        let temp =
            Self::temp_archive(cx.store).map_err(|source| crate::image::ImageError::Archive {
                path: cx.store.work_dir(),
                source,
            })?;
        daemon.save(&self.name.to_string(), temp.path())?;
        let archive = super::docker_archive::DockerArchive {
            path: temp.path().to_path_buf(),
            name: None,
            reference: crate::image::reference::ImageReference::DockerArchive {
                path: temp.path().to_path_buf(),
                name: None,
            },
        };
        let mut loaded = super::context::Transport::read(&archive, cx, platform)?;
        loaded.reference = self.reference.clone();
        Ok(loaded)
    }

    fn write(
        &self,
        cx: &super::context::Context<'_>,
        image: super::publish::Publishable<'_>,
    ) -> Result<super::publish::Published, super::publish::PublishError> {
        let write_err = |source| super::publish::PublishError::Write {
            destination: self.reference.to_string(),
            source,
        };
        let daemon = Daemon::for_transports(cx.transports)?;
        daemon.ping()?;
        let temp = Self::temp_archive(cx.store).map_err(|source| {
            write_err(crate::image::layout::LayoutError::Write {
                path: cx.store.work_dir(),
                source,
            })
        })?;
        super::docker_archive::write_docker_archive(
            temp.path(),
            cx.store.layout(),
            image.manifest,
            &self.name.to_string(),
        )
        .map_err(write_err)?;
        Ok(super::publish::Published::Loaded {
            messages: daemon.load(temp.path())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_parsed() {
        assert!(Daemon::connect(Some("unix:///run/x.sock")).is_ok());
        assert_eq!(
            Daemon::connect(Some("tcp://127.0.0.1:2375/")).unwrap().base,
            "http://127.0.0.1:2375"
        );
        let err = Daemon::connect(Some("ssh://host")).unwrap_err();
        assert!(err.to_string().contains("unix:///"), "{err}");
    }

    #[test]
    fn a_missing_daemon_is_named() {
        let daemon = Daemon::connect(Some("unix:///nonexistent/kiln-test.sock")).unwrap();
        let err = daemon.ping().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/kiln-test.sock"), "{err}");
        assert!(err.contains("DOCKER_HOST"), "{err}");
    }
}
