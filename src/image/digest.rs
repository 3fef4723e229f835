//! Hashing while writing and reading.

use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::str::FromStr;

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

/// A writer that passes bytes through to `inner` while computing their SHA-256 and length.
#[derive(Debug)]
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Returns the inner writer, the digest of everything written and its length.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, digest_of(self.hasher), self.len)
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Borrows the inner writer.
    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Returns the digest and length of everything read so far.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (digest_of(self.hasher), self.len)
    }

    /// Returns the inner reader, with the digest and length of everything read so far.
    pub(crate) fn into_parts(self) -> (R, Digest, u64) {
        (self.inner, digest_of(self.hasher), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Hashes the uncompressed content of a gzip stream given to it piece by piece — a layer
/// being downloaded or copied — so that its `diff_id` is known when the copy ends, without a
/// second pass over the blob and without holding it in memory. Content that is not gzip
/// (told by its first bytes), or that does not decompress, gives no `diff_id`.
pub(crate) struct GzipContentHasher {
    state: GzipState,
}

enum GzipState {
    /// Nothing seen yet.
    Start,
    /// Decompressing.
    Gzip(Box<flate2::write::MultiGzDecoder<HashingWriter<io::Sink>>>),
    /// Not gzip, or it failed to decompress.
    Unknown,
}

impl fmt::Debug for GzipContentHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GzipContentHasher").finish_non_exhaustive()
    }
}

impl Default for GzipContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl GzipContentHasher {
    /// A hasher that has seen nothing.
    pub(crate) fn new() -> Self {
        Self {
            state: GzipState::Start,
        }
    }

    /// Feeds the next bytes of the blob.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.state, GzipState::Start) {
            // A gzip magic split across two pieces is not worth handling: no diff_id then.
            self.state = if bytes.starts_with(&[0x1f, 0x8b]) {
                GzipState::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                    HashingWriter::new(io::sink()),
                )))
            } else {
                GzipState::Unknown
            };
        }
        if let GzipState::Gzip(decoder) = &mut self.state
            && decoder.write_all(bytes).is_err()
        {
            self.state = GzipState::Unknown;
        }
    }

    /// The digest of the uncompressed content, if the blob was gzip and decompressed whole.
    pub(crate) fn finish(self) -> Option<Digest> {
        match self.state {
            GzipState::Gzip(decoder) => decoder.finish().ok().map(|w| w.finish().1),
            GzipState::Start | GzipState::Unknown => None,
        }
    }
}

/// The SHA-256 digest of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    digest_of(hasher)
}

fn digest_of(hasher: Sha256) -> Digest {
    let hex = hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    Digest::from_str(&format!("sha256:{hex}")).expect("a sha256 hex string is a valid digest")
}

/// The hex part of a digest (`sha256:<hex>` → `<hex>`).
pub(crate) fn hex(digest: &Digest) -> &str {
    digest.digest()
}

/// Serde for an optional digest written as its string, or as an empty string for none (as
/// build records and the CNB labels hold "no layer"): `#[serde(with = "…::empty_is_none")]`.
pub(crate) mod empty_is_none {
    use oci_spec::image::Digest;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the digest, or `""` for none.
    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(crate) fn serialize<S: Serializer>(
        digest: &Option<Digest>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(digest.as_ref().map_or("", Digest::as_ref))
    }

    /// Reads a digest, `""` as none; anything else that is not a digest is an error.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Digest>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_known_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (inner, digest, len) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(len, 3);
        assert_eq!(
            digest.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_digest(b"abc"), digest);
    }

    #[test]
    fn gzip_content_is_hashed_piece_by_piece() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&b"layer content ".repeat(1000)).unwrap();
        let gzip = encoder.finish().unwrap();
        let mut hasher = GzipContentHasher::new();
        for piece in gzip.chunks(7) {
            hasher.update(piece);
        }
        assert_eq!(
            hasher.finish(),
            Some(sha256_digest(&b"layer content ".repeat(1000)))
        );
        let mut plain = GzipContentHasher::new();
        plain.update(b"{\"not\": \"gzip\"}");
        assert_eq!(plain.finish(), None);
        let mut broken = GzipContentHasher::new();
        broken.update(&gzip[..gzip.len() / 2]);
        assert_eq!(broken.finish(), None);
    }

    #[test]
    fn hashing_reader_counts() {
        let mut r = HashingReader::new(&b"hello"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let (digest, len) = r.finish();
        assert_eq!(len, 5);
        assert_eq!(digest, sha256_digest(b"hello"));
    }
}
