//! The reproducibility contract, kept in one module.
//!
//! Everything that decides the bytes of an image lives here: the fixed file time, the image
//! `created` time, file-mode normalisation, the canonical JSON writer and the one pinned
//! compressor. Same inputs give the same digest, whatever the source folder's path, its
//! mtimes, the umask or the hour (see the README, "Reproducibility").

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;

use serde::Serialize;

/// Modification time of every entry of every layer kiln writes: 1980-01-01T00:00:01Z.
///
/// The CNB lifecycle uses the same value (`archive.NormalizedModTime`); one second after the
/// epoch of the ZIP format so that tools which treat 1980-01-01T00:00:00 as "no time" still
/// see a time.
pub const NORMALIZED_MTIME: u64 = 315_532_801;

/// Compression level of every layer kiln compresses (libdeflate's scale, like gzip's).
pub const GZIP_LEVEL: i32 = 6;

/// Uncompressed bytes per gzip member of a layer blob (the last member holds the rest).
pub const GZIP_MEMBER_SIZE: usize = 4 << 20;

/// Names the layer compression: part of the digest contract. Changing the level, the member
/// size or the libdeflate version (pinned by `Cargo.lock`) changes blob digests, never
/// `diff_ids`, so this string is recorded wherever a blob is reused by `diff_id` and a
/// different one means "compress again".
pub const COMPRESSION: &str = "gzip members of 4 MiB, libdeflate 1.26 level 6";

/// Returns the `created` timestamp of an image in RFC 3339 form.
///
/// `source_date_epoch` is the value of `SOURCE_DATE_EPOCH` (seconds since the Unix epoch) if
/// the user set one; otherwise the CNB constant 1980-01-01T00:00:01Z is used. The wall clock
/// is never read.
pub fn created_timestamp(source_date_epoch: Option<i64>) -> String {
    #[allow(clippy::cast_possible_wrap)] // the constant fits comfortably in i64
    let secs = source_date_epoch.unwrap_or(NORMALIZED_MTIME as i64);
    format_rfc3339(secs)
}

/// Parses a `SOURCE_DATE_EPOCH` value: a non-negative integer number of seconds.
pub fn parse_source_date_epoch(value: &str) -> Option<i64> {
    let secs: i64 = value.trim().parse().ok()?;
    // Dates past year 9999 cannot be written in RFC 3339.
    (0..=253_402_300_799).contains(&secs).then_some(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Normalises a file mode so that the umask and stray permission bits don't reach the image.
///
/// Directories become `0755`; regular files `0755` when their owner may execute them, else
/// `0644`; set-id and sticky bits are dropped. Symlinks are always `0777`.
pub fn normalize_mode(mode: u32, kind: EntryKind) -> u32 {
    match kind {
        EntryKind::Directory => 0o755,
        EntryKind::Symlink => 0o777,
        EntryKind::File if mode & 0o100 != 0 => 0o755,
        EntryKind::File => 0o644,
    }
}

/// The kinds of file-system entries kiln writes into layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file (or a hard link to one).
    File,
    /// A symbolic link.
    Symlink,
}

/// Serialises `value` as canonical JSON (RFC 8785: sorted keys, no insignificant whitespace).
///
/// Every JSON document that becomes part of an image (config, manifest, index, labels) goes
/// through here, so no hash-map order can reach a digest.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    use canon_json::CanonJsonSerialize;
    value
        .to_canon_json_vec()
        .map_err(|e| serde_json::Error::io(std::io::Error::other(e)))
}

/// The one gzip writer kiln compresses layers with.
///
/// The stream is cut every [`GZIP_MEMBER_SIZE`] uncompressed bytes and each piece is written
/// as one gzip member (RFC 1952 §2.2: a gzip file is a series of members; every gzip reader
/// of the container world — Go's `compress/gzip`, GNU gzip, Python — reads them as one
/// stream, which is also what eStargz layers rely on). Each member is compressed with
/// libdeflate at [`GZIP_LEVEL`]: no file name, modification time 0. Member boundaries depend
/// only on the byte count, so the output is a function of the input alone.
///
/// A layer of more than one member has its members compressed on rayon's global thread pool,
/// a few at a time, and written in order: memory stays at a few members' input and output
/// whatever the layer's size. (Used from a rayon worker thread, it compresses inline rather
/// than wait on its own pool.)
pub struct LayerCompressor<W: Write> {
    inner: W,
    pending: Vec<u8>,
    /// Members handed out so far; the next one gets this number.
    handed_out: u64,
    /// Members written to `inner` so far.
    written: u64,
    /// Compressed members that came back before their turn, by number.
    finished: BTreeMap<u64, Vec<u8>>,
    results: mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    reply: mpsc::Sender<(u64, io::Result<Vec<u8>>)>,
}

impl<W: Write> LayerCompressor<W> {
    /// A compressor writing its blob to `inner`.
    pub fn new(inner: W) -> Self {
        let (reply, results) = mpsc::channel();
        Self {
            inner,
            pending: Vec::with_capacity(GZIP_MEMBER_SIZE),
            handed_out: 0,
            written: 0,
            finished: BTreeMap::new(),
            results,
            reply,
        }
    }

    /// Writes the last member (an empty stream is one empty member), waits for all members
    /// and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let input = std::mem::take(&mut self.pending);
        if self.handed_out == 0 {
            // A layer of one member: no thread to wait for.
            self.inner.write_all(&compress_member(&input)?)?;
        } else {
            if !input.is_empty() {
                self.hand_out(input)?;
            }
            while self.written < self.handed_out {
                self.write_next()?;
            }
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Members compressed at once by one layer: enough to keep every core busy.
    fn in_flight_limit() -> u64 {
        u64::try_from(rayon::current_num_threads())
            .unwrap_or(1)
            .clamp(1, 8)
            + 1
    }

    fn hand_out(&mut self, input: Vec<u8>) -> io::Result<()> {
        while self.handed_out - self.written >= Self::in_flight_limit() {
            self.write_next()?;
        }
        let number = self.handed_out;
        self.handed_out += 1;
        if rayon::current_thread_index().is_some() {
            let _ = self.reply.send((number, compress_member(&input)));
        } else {
            let reply = self.reply.clone();
            rayon::spawn(move || {
                let _ = reply.send((number, compress_member(&input)));
            });
        }
        Ok(())
    }

    /// Waits for the next member in order and writes it.
    fn write_next(&mut self) -> io::Result<()> {
        let member = loop {
            if let Some(member) = self.finished.remove(&self.written) {
                break member;
            }
            let (number, result) = self
                .results
                .recv()
                .map_err(|_| io::Error::other("a gzip compression thread stopped"))?;
            self.finished.insert(number, result?);
        };
        self.inner.write_all(&member)?;
        self.written += 1;
        Ok(())
    }
}

/// One member: `input` compressed as a whole gzip file with libdeflate.
fn compress_member(input: &[u8]) -> io::Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<libdeflater::Compressor>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = slot.get_or_insert_with(|| {
            let level = libdeflater::CompressionLvl::new(GZIP_LEVEL)
                .unwrap_or_else(|_| libdeflater::CompressionLvl::default());
            libdeflater::Compressor::new(level)
        });
        let mut out = vec![0; compressor.gzip_compress_bound(input.len())];
        let size = compressor
            .gzip_compress(input, &mut out)
            .map_err(|e| io::Error::other(format!("gzip compression failed: {e}")))?;
        out.truncate(size);
        Ok(out)
    })
}

impl<W: Write> Write for LayerCompressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_MEMBER_SIZE - self.pending.len();
        let taken = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..taken]);
        if self.pending.len() == GZIP_MEMBER_SIZE {
            let input = std::mem::replace(&mut self.pending, Vec::with_capacity(GZIP_MEMBER_SIZE));
            self.hand_out(input)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A member is only written whole: flushing mid-member would make the output depend
        // on when callers flush.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress_in_writes(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut compressor = LayerCompressor::new(Vec::new());
        for piece in data.chunks(write_size.max(1)) {
            compressor.write_all(piece).unwrap();
        }
        compressor.finish().unwrap()
    }

    fn decompress(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(blob), &mut out).unwrap();
        out
    }

    #[test]
    fn layer_compression_depends_on_the_bytes_only() {
        // Two and a half members of not-too-compressible bytes.
        let data: Vec<u8> = (0..GZIP_MEMBER_SIZE * 5 / 2)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect();
        let whole = compress_in_writes(&data, data.len());
        assert_eq!(compress_in_writes(&data, 512), whole);
        assert_eq!(compress_in_writes(&data, 1_000_003), whole);
        assert_eq!(decompress(&whole), data);
        // Exactly the members libdeflate makes of each 4 MiB piece, in order.
        let members: Vec<u8> = data
            .chunks(GZIP_MEMBER_SIZE)
            .flat_map(|piece| compress_member(piece).unwrap())
            .collect();
        assert_eq!(whole, members);
        // Three members, each a gzip header with no name and mtime 0.
        let headers = whole
            .windows(8)
            .filter(|w| w == &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert!(headers.count() >= 3);
    }

    #[test]
    fn an_empty_layer_is_one_empty_member() {
        let blob = compress_in_writes(&[], 1);
        assert_eq!(&blob[..3], &[0x1f, 0x8b, 8]);
        assert!(decompress(&blob).is_empty());
    }

    #[test]
    fn created_defaults_to_cnb_constant() {
        assert_eq!(created_timestamp(None), "1980-01-01T00:00:01Z");
    }

    #[test]
    fn created_follows_source_date_epoch() {
        assert_eq!(created_timestamp(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            created_timestamp(Some(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(created_timestamp(Some(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(
            created_timestamp(Some(253_402_300_799)),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn source_date_epoch_rejects_garbage() {
        for bad in ["", "abc", "-1", "1.5", "99999999999999"] {
            assert_eq!(parse_source_date_epoch(bad), None, "{bad:?}");
        }
        assert_eq!(parse_source_date_epoch(" 42\n"), Some(42));
    }

    #[test]
    fn modes_are_normalized() {
        assert_eq!(normalize_mode(0o700, EntryKind::Directory), 0o755);
        assert_eq!(normalize_mode(0o600, EntryKind::File), 0o644);
        assert_eq!(normalize_mode(0o4711, EntryKind::File), 0o755);
        assert_eq!(normalize_mode(0o664, EntryKind::File), 0o644);
        assert_eq!(normalize_mode(0, EntryKind::Symlink), 0o777);
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes_controls() {
        let mut map = std::collections::HashMap::new();
        map.insert("b", "line\nbreak");
        map.insert("a", "x");
        let out = String::from_utf8(canonical_json(&map).unwrap()).unwrap();
        assert_eq!(out, r#"{"a":"x","b":"line\nbreak"}"#);
    }
}
