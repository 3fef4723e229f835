//! The reproducibility contract, kept in one module.
//!
//! Everything that decides the bytes of an image lives here: the fixed file time, the image
//! `created` time, file-mode normalisation, the canonical JSON writer and the one pinned
//! compressor. Same inputs give the same digest, whatever the source folder's path, its
//! mtimes, the umask or the hour (see the README, "Reproducibility").

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

/// Modification time of every entry of every layer kiln writes: 1980-01-01T00:00:01Z.
///
/// The CNB lifecycle uses the same value (`archive.NormalizedModTime`); one second after the
/// epoch of the ZIP format so that tools which treat 1980-01-01T00:00:00 as "no time" still
/// see a time.
pub const NORMALIZED_MTIME: u64 = 315_532_801;

/// gzip level used for every layer kiln compresses. Part of the digest contract: changing it
/// (or the flate2 backend, pinned by `Cargo.lock`) changes blob digests, never `diff_ids`.
pub const GZIP_LEVEL: u32 = 6;

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

/// Wraps `inner` in the one gzip encoder kiln uses for layers: fixed level, no file name,
/// no modification time in the header.
pub fn gzip_encoder<W: Write>(inner: W) -> GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(inner, Compression::new(GZIP_LEVEL))
}

#[cfg(test)]
mod tests {
    use super::*;

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
