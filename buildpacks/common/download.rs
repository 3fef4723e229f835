//! Downloading a runtime no stack has (a Go toolchain, a standalone CPython) from the source
//! the user configured: one HTTP(S) GET at a time, streamed to a file while it is hashed, with
//! a size limit, so a hostile or broken server can neither fill the disk nor hand over bytes
//! that were not checked. Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`; HTTPS is verified
//! against the build environment's trust store (`--ca-certs` replaces it).

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use sha2::Digest as _;

use super::{Error, Result};

/// What a download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// Its SHA-256, lowercase hex.
    pub(crate) sha256: String,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// An HTTP client with kiln's user agent and timeouts.
pub(crate) fn client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .user_agent(concat!("kiln-buildpacks/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_mins(20))
        .build()
        .map_err(|e| Error::new(format!("cannot set up an HTTP client: {e}")))
}

/// GETs `url`: `Ok(None)` when the server says it has no such file (404, 410), else the
/// response; any other failure is an error naming the URL.
fn get(
    client: &reqwest::blocking::Client,
    url: &str,
) -> Result<Option<reqwest::blocking::Response>> {
    let response = client
        .get(url)
        .send()
        .map_err(|e| Error::new(format!("cannot download {url}: {}", chain(&e))))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(Error::new(format!("{url} answered HTTP {status}")));
    }
    Ok(Some(response))
}

/// An error and its causes on one line (reqwest's own message omits the cause).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Downloads `url` into the file `dest` (replaced), at most `limit` bytes; returns its hash
/// and size, or `None` when the server has no such file.
pub(crate) fn to_file(
    client: &reqwest::blocking::Client,
    url: &str,
    dest: &Path,
    limit: u64,
) -> Result<Option<Fetched>> {
    let Some(response) = get(client, url)? else {
        return Ok(None);
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_big(url, limit));
    }
    let io = |e: std::io::Error| Error::new(format!("cannot write {}: {e}", dest.display()));
    let mut file = std::fs::File::create(dest).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut size: u64 = 0;
    // One more byte than allowed tells a file at the limit from a longer one.
    let mut body = response.take(limit.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| Error::new(format!("the download of {url} broke off: {e}")))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            drop(file);
            let _ = std::fs::remove_file(dest);
            return Err(too_big(url, limit));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io)?;
    }
    file.flush().map_err(io)?;
    Ok(Some(Fetched {
        sha256: super::files::hex(&hasher.finalize()),
        size,
    }))
}

/// The body of `url` as text, at most `limit` bytes; `None` when the server has no such
/// file.
pub(crate) fn text(
    client: &reqwest::blocking::Client,
    url: &str,
    limit: u64,
) -> Result<Option<String>> {
    let Some(response) = get(client, url)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    response
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::new(format!("the download of {url} broke off: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(url, limit));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::new(format!("{url} is not UTF-8 text")))
}

fn too_big(url: &str, limit: u64) -> Error {
    Error::new(format!(
        "{url} is larger than {} MiB, more than kiln accepts for it",
        limit / (1024 * 1024)
    ))
    .hint("check that the configured source serves what its name says")
}

/// A SHA-256 the user pinned, as lowercase hex: `sha256:<hex>` or bare `<hex>`.
pub(crate) fn parse_sha256(text: &str) -> Option<String> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_hashes_are_64_hex_digits_with_or_without_their_algorithm() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_sha256(&hex), Some("ab".repeat(32)));
        assert_eq!(
            parse_sha256(&format!(" sha256:{hex}\n")),
            Some("ab".repeat(32))
        );
        assert_eq!(parse_sha256("sha512:abc"), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
        assert_eq!(parse_sha256(""), None);
    }
}
