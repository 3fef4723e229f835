//! Downloading from Debian mirrors: retries on transient failures, verified streaming into
//! the content-addressed cache.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Errors fetching from a mirror.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The mirror answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The mirror could not be reached.
    #[error("cannot reach {url}")]
    Network {
        /// The URL.
        url: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
    /// Downloaded content does not match its expected size or SHA-256.
    #[error("{url} has the wrong content: expected {expected}, got {found}")]
    Mismatch {
        /// The URL.
        url: String,
        /// Expected `size sha256`.
        expected: String,
        /// Found `size sha256`.
        found: String,
    },
    /// Something is larger than allowed.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A local file could not be written.
    #[error("failed to write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// Whether the mirror said the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Status {
                status: 404 | 410,
                ..
            }
        )
    }
}

/// An HTTP client for mirrors. Proxies come from `HTTP_PROXY`/`HTTPS_PROXY`; HTTPS is verified
/// against the system's trust store.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::blocking::Client,
}

const ATTEMPTS: u32 = 4;

impl Fetcher {
    /// A fetcher with kiln's user agent and timeouts.
    pub(crate) fn new() -> Result<Self, FetchError> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_mins(10))
            .build()
            .map_err(|source| FetchError::Network {
                url: String::new(),
                source,
            })?;
        Ok(Self { client })
    }

    /// Calls `f` with a successful response for `url`, retrying connection failures, 429 and
    /// 5xx answers (and failures of `f` caused by the connection) with backoff.
    fn with_response<T>(
        &self,
        url: &str,
        mut f: impl FnMut(reqwest::blocking::Response) -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry = match self.client.get(url).send() {
                Ok(response) if response.status().is_success() => match f(response) {
                    Ok(v) => return Ok(v),
                    Err(e @ (FetchError::Network { .. } | FetchError::Io { .. }))
                        if attempt < ATTEMPTS =>
                    {
                        Some(e)
                    }
                    Err(e) => return Err(e),
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = FetchError::Status {
                        url: url.to_string(),
                        status,
                    };
                    if (status == 429 || status >= 500) && attempt < ATTEMPTS {
                        Some(error)
                    } else {
                        return Err(error);
                    }
                }
                Err(source) if attempt < ATTEMPTS => Some(FetchError::Network {
                    url: url.to_string(),
                    source,
                }),
                Err(source) => {
                    return Err(FetchError::Network {
                        url: url.to_string(),
                        source,
                    });
                }
            };
            drop(retry);
            std::thread::sleep(Duration::from_millis(250 << attempt));
        }
    }

    /// Fetches `url` into memory (at most `limit` bytes).
    pub(crate) fn bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        self.with_response(url, |response| {
            let mut body = Vec::new();
            response
                .take(limit + 1)
                .read_to_end(&mut body)
                .map_err(|e| FetchError::Io {
                    path: PathBuf::from(url),
                    source: e,
                })?;
            if body.len() as u64 > limit {
                return Err(FetchError::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
            Ok(body)
        })
    }

    /// Downloads `url` to `dest`, verifying `size` and `sha256` (hex) before renaming it into
    /// place. A file already at `dest` is trusted (the cache only ever holds verified files).
    pub(crate) fn download_verified(
        &self,
        url: &str,
        dest: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), FetchError> {
        if dest.is_file() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(Path::new("."));
        let io_err = |source| FetchError::Io {
            path: dest.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        self.with_response(url, |mut response| {
            let mut temp = crate::image::layout::publishable_temp(dir).map_err(io_err)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = response.read(&mut buf).map_err(|e| FetchError::Io {
                    path: PathBuf::from(url),
                    source: e,
                })?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > size {
                    break;
                }
                hasher.update(&buf[..n]);
                temp.write_all(&buf[..n]).map_err(io_err)?;
            }
            let found = hex(&hasher.finalize());
            if total != size || found != sha256 {
                return Err(FetchError::Mismatch {
                    url: url.to_string(),
                    expected: format!("{size} bytes, sha256 {sha256}"),
                    found: format!("{total} bytes, sha256 {found}"),
                });
            }
            temp.persist(dest).map_err(|e| io_err(e.error))?;
            Ok(())
        })
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of `bytes`, as hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
