//! Standalone CPython builds (python-build-standalone's `install_only` layout) from a mirror
//! the user configures, for a Python version no kiln stack has.
//!
//! **The mirror** (`KILN_PYTHON_STANDALONE_MIRROR`, a base URL) holds the release assets under
//! their upstream names, `cpython-{version}+{date}-{triple}-install_only_stripped.tar.gz` (or
//! `…-install_only.tar.gz`), and one `SHA256SUMS` file listing them as `sha256sum` prints
//! (`<hex>  <name>`). That file is both the index and the trust anchor: the versions a mirror
//! has are the assets it lists for this architecture, and a download is used only when its
//! SHA-256 is the one listed. (Upstream publishes one `SHA256SUMS` per release; a mirror of
//! several releases concatenates them.)
//!
//! **Choice**: the highest listed version that meets the request — a bare `3.12` any 3.12.x,
//! `3.12.8` exactly that, a specifier (`>=3.12,<3.14`) what it contains; pre-releases only when
//! the request names one. Of the builds of that version, the newest release date, stripped
//! (no debug symbols) before unstripped.
//!
//! **Install**: the tarball is downloaded (size-bounded, hashed while it streams), checked,
//! and unpacked (see `common::untar`) into the cached `python` layer (`bin/python3`,
//! `lib/python3.X/`). Its `_sysconfigdata` module and pkg-config files still name the build
//! machine's prefix (`/install`) and compilers (`clang`, `llvm-ar`): kiln rewrites those to
//! the layer and to `cc`/`c++`/`ar`, so sdists with C extensions build against it with the
//! build image's compilers. The builds' own `__pycache__` directories are dropped: the image
//! reads bytecode from `PYTHONPYCACHEPREFIX` only (see `bytecode.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr as _;

use pep440_rs::{Version, VersionSpecifiers};

use crate::common::untar::{self, Limits};
use crate::common::{Error, Requested, Result, cmd, download, say};

/// The setting that names the mirror.
pub(crate) const MIRROR_SETTING: &str = "KILN_PYTHON_STANDALONE_MIRROR";

/// `python-from` in the plan when kiln installs a standalone CPython.
pub(crate) const FROM: &str = "standalone CPython";

/// The index file of a mirror.
const SUMS: &str = "SHA256SUMS";

/// The largest `SHA256SUMS` kiln reads (upstream's is about 200 KiB per release).
const SUMS_LIMIT: u64 = 16 * 1024 * 1024;

/// The largest tarball kiln downloads (an `install_only_stripped` build is about 30 MB,
/// an unstripped one about 70 MB).
const TARBALL_LIMIT: u64 = 512 * 1024 * 1024;

/// What a tarball may unpack to (about 120 MB and 6,000 entries for 3.13).
const UNPACK_LIMITS: Limits = Limits {
    bytes: 2 * 1024 * 1024 * 1024,
    entries: 100_000,
};

/// One build the mirror lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asset {
    /// Its file name.
    pub(crate) name: String,
    /// Its CPython version (`3.12.8`).
    pub(crate) version: String,
    /// The release date (`20250106`).
    date: String,
    /// Whether it is the `install_only_stripped` flavour.
    stripped: bool,
    /// Its SHA-256 from `SHA256SUMS`, lowercase hex.
    pub(crate) sha256: String,
}

impl Asset {
    fn parsed_version(&self) -> Option<Version> {
        Version::from_str(&self.version).ok()
    }
}

/// The build triple of a CNB architecture (glibc builds only: kiln's stacks are Debian's).
pub(crate) fn triple(arch: &str) -> Result<&'static str> {
    match arch {
        "amd64" | "x86_64" => Ok("x86_64-unknown-linux-gnu"),
        "arm64" | "aarch64" => Ok("aarch64-unknown-linux-gnu"),
        other => Err(Error::new(format!(
            "kiln installs standalone CPython for amd64 and arm64 only, not for {other}"
        ))
        .hint("build for amd64 or arm64 (--platform linux/amd64), or ask for a Python version a kiln stack has")),
    }
}

/// The builds listed in a `SHA256SUMS` text for `triple`. Lines that are not `<sha256>
/// <name>` of an `install_only` tarball are ignored (a release lists many other assets).
pub(crate) fn parse_sums(text: &str, triple: &str) -> Vec<Asset> {
    text.lines()
        .filter_map(|line| {
            let (hash, name) = line.trim().split_once(char::is_whitespace)?;
            let sha256 = download::parse_sha256(hash)?;
            let name = name.trim().trim_start_matches('*');
            parse_name(name, triple, sha256)
        })
        .collect()
}

/// An asset name read as `cpython-{version}+{date}-{triple}-install_only[_stripped].tar.gz`.
fn parse_name(name: &str, triple: &str, sha256: String) -> Option<Asset> {
    // The name becomes a URL path component and a file name: nothing but these characters.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    {
        return None;
    }
    let rest = name.strip_prefix("cpython-")?.strip_suffix(".tar.gz")?;
    let (rest, stripped) = match rest.strip_suffix("-install_only_stripped") {
        Some(rest) => (rest, true),
        None => (rest.strip_suffix("-install_only")?, false),
    };
    let (version, rest) = rest.split_once('+')?;
    let (date, found_triple) = rest.split_once('-')?;
    if found_triple != triple || date.len() != 8 || !date.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Version::from_str(version).ok()?;
    Some(Asset {
        name: name.to_string(),
        version: version.to_string(),
        date: date.to_string(),
        stripped,
        sha256,
    })
}

/// Whether `version` meets the request (see the module docs).
pub(crate) fn meets(requested: &Requested, version: &Version) -> Result<bool> {
    let wanted = requested.version.trim();
    let bad = |why: String| {
        Error::new(format!(
            "{}: `{wanted}` is not a Python version kiln understands: {why}",
            requested.source
        ))
        .hint(format!(
            "write a version such as `3.12` or `3.12.8`, or a specifier such as `>=3.12`, in {}",
            requested.source
        ))
    };
    let names_prerelease = wanted.chars().any(|c| c.is_ascii_alphabetic());
    if version.any_prerelease() && !names_prerelease {
        return Ok(false);
    }
    let is_bare = wanted
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '*');
    if is_bare {
        let parts: Vec<u64> = wanted
            .split('.')
            .filter(|p| *p != "*")
            .map(|p| p.parse::<u64>().map_err(|e| bad(e.to_string())))
            .collect::<Result<_>>()?;
        if parts.is_empty() {
            return Err(bad("no version number".to_string()));
        }
        let release = version.release();
        return Ok(parts
            .iter()
            .enumerate()
            .all(|(i, part)| release.get(i).copied().unwrap_or(0) == *part));
    }
    if let Ok(exact) = Version::from_str(wanted) {
        return Ok(&exact == version);
    }
    let specifiers = VersionSpecifiers::from_str(wanted).map_err(|e| bad(e.to_string()))?;
    Ok(specifiers.contains(version))
}

/// The build to install: the asset named `pinned` (what detect chose) if given, else the
/// highest version that meets the request, newest date, stripped first.
pub(crate) fn choose<'a>(
    requested: &Requested,
    assets: &'a [Asset],
    pinned: Option<&str>,
) -> Result<Option<&'a Asset>> {
    if let Some(pinned) = pinned {
        return Ok(assets.iter().find(|a| a.name == pinned));
    }
    let mut best: Option<(Version, &Asset)> = None;
    for asset in assets {
        let Some(version) = asset.parsed_version() else {
            continue;
        };
        if !meets(requested, &version)? {
            continue;
        }
        let better = best.as_ref().is_none_or(|(v, b)| {
            (&version, &asset.date, asset.stripped) > (v, &b.date, b.stripped)
        });
        if better {
            best = Some((version, asset));
        }
    }
    Ok(best.map(|(_, a)| a))
}

/// The newest version of each minor line the mirror has, newest first: `3.13.1, 3.12.8`.
pub(crate) fn summary(assets: &[Asset]) -> String {
    let mut versions: Vec<Version> = assets
        .iter()
        .filter_map(Asset::parsed_version)
        .filter(|v| !v.any_prerelease())
        .collect();
    versions.sort();
    versions.reverse();
    let mut lines: Vec<&Version> = Vec::new();
    for v in &versions {
        let minor = |v: &Version| v.release().iter().take(2).copied().collect::<Vec<_>>();
        if lines.last().is_none_or(|last| minor(last) != minor(v)) {
            lines.push(v);
        }
    }
    if lines.is_empty() {
        return "no CPython builds for this architecture".to_string();
    }
    let shown: Vec<String> = lines.iter().take(10).map(ToString::to_string).collect();
    format!(
        "Python {}{}",
        shown.join(", "),
        if lines.len() > 10 { ", and older" } else { "" }
    )
}

/// A mirror of standalone CPython builds.
pub(crate) struct Mirror {
    base: String,
    client: reqwest::blocking::Client,
}

impl Mirror {
    /// The mirror the setting's `value` names.
    pub(crate) fn new(value: &str) -> Result<Self> {
        let base = value.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::new(format!(
                "{MIRROR_SETTING}=`{value}` is not an HTTP(S) URL"
            ))
            .hint(format!(
                "set {MIRROR_SETTING} to the base URL of a mirror of standalone CPython builds, where {SUMS} and the tarballs are (kiln build --env {MIRROR_SETTING}=https://…)"
            )));
        }
        Ok(Self {
            base,
            client: download::client()?,
        })
    }

    /// Its base URL, for messages.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The builds it lists for `triple`.
    pub(crate) fn assets(&self, triple: &str) -> Result<Vec<Asset>> {
        let url = format!("{}/{SUMS}", self.base);
        let text = download::text(&self.client, &url, SUMS_LIMIT)?.ok_or_else(|| {
            Error::new(format!("the standalone CPython mirror has no {url}")).hint(format!(
                "point {MIRROR_SETTING} at the directory that holds {SUMS} and the tarballs"
            ))
        })?;
        Ok(parse_sums(&text, triple))
    }

    /// The URL of an asset (`+` escaped, as upstream's release URLs have it).
    fn url(&self, asset: &Asset) -> String {
        format!("{}/{}", self.base, asset.name.replace('+', "%2B"))
    }
}

/// Installs `asset` from `mirror` into the layer directory `prefix` (emptied first): downloads
/// it, checks its SHA-256, unpacks it, drops its bytecode and relocates its build
/// configuration. Returns its `bin/python3`.
pub(crate) fn install(mirror: &Mirror, asset: &Asset, prefix: &Path) -> Result<PathBuf> {
    for entry in fs::read_dir(prefix)
        .map_err(|e| Error::new(format!("cannot read {}: {e}", prefix.display())))?
        .flatten()
    {
        remove(&entry.path())?;
    }
    let url = mirror.url(asset);
    let download = prefix
        .parent()
        .unwrap_or(prefix)
        .join(format!(".{}", asset.name));
    say(&format!("downloading {url}"));
    let fetched =
        download::to_file(&mirror.client, &url, &download, TARBALL_LIMIT)?.ok_or_else(|| {
            Error::new(format!(
                "the standalone CPython mirror lists {} in its {SUMS} but has no {url}",
                asset.name
            ))
            .hint("check that the mirror holds every tarball its SHA256SUMS lists")
        })?;
    if fetched.sha256 != asset.sha256 {
        let _ = fs::remove_file(&download);
        return Err(Error::new(format!(
            "the standalone CPython {url} has SHA-256 {}, not the {} that {}/{SUMS} lists: refused",
            fetched.sha256,
            asset.sha256,
            mirror.base()
        ))
        .hint("the mirror's copy is damaged or was replaced; refresh the mirror (both the tarball and SHA256SUMS) from upstream"));
    }
    say(&format!(
        "checked {}: SHA-256 {}, as {SUMS} lists",
        asset.name, fetched.sha256
    ));
    let unpacked = untar::unpack_tar_gz(
        &download,
        "python",
        prefix,
        UNPACK_LIMITS,
        &format!("the standalone CPython {}", asset.name),
    );
    let _ = fs::remove_file(&download);
    unpacked?;
    let python = prefix.join("bin/python3");
    if !fs::symlink_metadata(&python).is_ok_and(|m| !m.is_dir()) {
        return Err(Error::new(format!(
            "the standalone CPython {} has no python/bin/python3: it is not an install_only build",
            asset.name
        ))
        .hint("mirror the `install_only` or `install_only_stripped` tarballs"));
    }
    drop_bytecode(prefix)?;
    relocate_build_config(prefix)?;
    Ok(python)
}

/// Removes every `__pycache__` directory under `dir`.
fn drop_bytecode(dir: &Path) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::new(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if entry.file_name() == "__pycache__" {
                remove(&path)?;
            } else {
                drop_bytecode(&path)?;
            }
        }
    }
    Ok(())
}

/// The build machine's prefix in a standalone build's configuration files.
const BUILD_PREFIX: &str = "/install";

/// Points the build configuration (`lib/python3.X/_sysconfigdata_*.py`,
/// `lib/pkgconfig/*.pc`) of the build at `prefix` at that prefix and at the build
/// environment's compilers.
fn relocate_build_config(prefix: &Path) -> Result<()> {
    let to = prefix.to_string_lossy();
    let lib = prefix.join("lib");
    let mut files = Vec::new();
    for entry in fs::read_dir(&lib).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("python3") && entry.path().is_dir() {
            for module in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                let file = module.file_name().to_string_lossy().into_owned();
                if file.starts_with("_sysconfigdata")
                    && module.path().extension().is_some_and(|e| e == "py")
                {
                    files.push((module.path(), true));
                }
            }
        }
    }
    for entry in fs::read_dir(lib.join("pkgconfig"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "pc") {
            files.push((entry.path(), false));
        }
    }
    for (path, is_sysconfig) in files {
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
        let mut patched = relocate(&text, BUILD_PREFIX, &to);
        if is_sysconfig {
            patched = local_compilers(&patched);
        }
        if patched != text {
            fs::write(&path, patched)
                .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// `text` with every path `from` (`/install`, `/install/lib`, in quotes, after `-I`, `-L` or
/// `=`) made `to`: a match counts only as a whole path element (`/installer` and
/// `/opt/install` stay).
pub(crate) fn relocate(text: &str, from: &str, to: &str) -> String {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(from) {
        let mut before = text[..at].chars().rev();
        let starts_path = match before.next() {
            None => true,
            // `-I/install/include`, `-L/install/lib`
            Some('I' | 'L') => before.next() == Some('-'),
            Some(c) => !path_char(c),
        };
        let ends_element = text[at + from.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == '/' || !path_char(c));
        if starts_path && ends_element {
            out.push_str(&text[copied..at]);
            out.push_str(to);
            copied = at + from.len();
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The compiler settings of a `_sysconfigdata` module (`'CC': 'clang -pthread'`, wherever
/// they stand in the dictionary) with the build machine's compilers replaced by the build
/// environment's: `clang` → `cc`, `clang++` → `c++`, `llvm-ar` → `ar` (also given as
/// absolute paths). Other words stay.
fn local_compilers(text: &str) -> String {
    const KEYS: [&str; 9] = [
        "AR",
        "CC",
        "CXX",
        "CPP",
        "LDSHARED",
        "LDCXXSHARED",
        "BLDSHARED",
        "LINKCC",
        "MAINCC",
    ];
    let mut out = text.to_string();
    for key in KEYS {
        for quote in ['\'', '"'] {
            let start = format!("{quote}{key}{quote}: ");
            let mut from = 0;
            while let Some(found) = out[from..].find(&start) {
                let value_start = from + found + start.len();
                let Some(rest) = out[value_start..].strip_prefix(['\'', '"']) else {
                    from = value_start;
                    continue;
                };
                let open = &out[value_start..=value_start];
                let Some(len) = rest.find(open) else {
                    break;
                };
                let value = &rest[..len];
                let replaced = value
                    .split(' ')
                    .map(|word| match word.rsplit('/').next().unwrap_or(word) {
                        "clang" => "cc",
                        "clang++" => "c++",
                        "llvm-ar" => "ar",
                        _ => word,
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                let body = value_start + 1;
                out.replace_range(body..body + len, &replaced);
                from = body + replaced.len();
            }
        }
    }
    out
}

/// The version `python` reports (`3.12.8`), when it can run here.
pub(crate) fn reported_version(python: &Path) -> Result<String> {
    cmd::output(Command::new(python).args([
        "-I",
        "-c",
        "import sys; print('%d.%d.%d' % sys.version_info[:3])",
    ]))
    .map(|s| s.trim().to_string())
}

fn remove(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    result.map_err(|e| Error::new(format!("cannot remove {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str = "x86_64-unknown-linux-gnu";

    fn sums() -> String {
        let h = |c: char| c.to_string().repeat(64);
        [
            format!("{}  cpython-3.12.7+20241016-{X86}-install_only.tar.gz", h('a')),
            format!("{}  cpython-3.12.7+20241016-{X86}-install_only_stripped.tar.gz", h('b')),
            format!("{}  cpython-3.12.8+20250106-{X86}-install_only_stripped.tar.gz", h('c')),
            format!("{} *cpython-3.13.1+20250106-{X86}-install_only_stripped.tar.gz", h('d')),
            format!("{}  cpython-3.14.0rc1+20250801-{X86}-install_only_stripped.tar.gz", h('e')),
            format!("{}  cpython-3.11.11+20250106-{X86}-install_only_stripped.tar.gz", h('f')),
            format!("{}  cpython-3.12.8+20250106-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz", h('1')),
            format!("{}  cpython-3.12.8+20250106-{X86}-debug-full.tar.zst", h('2')),
            format!("{}  cpython-3.12.8+20250106-x86_64_v3-unknown-linux-gnu-install_only_stripped.tar.gz", h('3')),
            format!("{}  cpython-3.12.9+20250106-{X86}/../evil-install_only.tar.gz", h('4')),
            "not a line".to_string(),
        ]
        .join("\n")
    }

    fn pick(request: &str) -> Option<String> {
        let assets = parse_sums(&sums(), X86);
        choose(&Requested::new(request, ".python-version"), &assets, None)
            .unwrap()
            .map(|a| a.name.clone())
    }

    #[test]
    fn sha256sums_lists_the_install_only_builds_of_this_architecture() {
        let assets = parse_sums(&sums(), X86);
        let names: Vec<&str> = assets.iter().map(|a| a.version.as_str()).collect();
        assert_eq!(
            names,
            [
                "3.12.7",
                "3.12.7",
                "3.12.8",
                "3.13.1",
                "3.14.0rc1",
                "3.11.11"
            ]
        );
        assert_eq!(assets[3].sha256, "d".repeat(64));
        assert_eq!(summary(&assets), "Python 3.13.1, 3.12.8, 3.11.11");
        assert_eq!(parse_sums(&sums(), "aarch64-unknown-linux-gnu").len(), 1);
    }

    #[test]
    fn the_highest_matching_build_is_chosen_stripped_first() {
        let name = |v: &str, d: &str| format!("cpython-{v}+{d}-{X86}-install_only_stripped.tar.gz");
        assert_eq!(pick("3.12"), Some(name("3.12.8", "20250106")));
        assert_eq!(pick("3.12.7"), Some(name("3.12.7", "20241016")));
        assert_eq!(pick(">=3.12"), Some(name("3.13.1", "20250106")));
        assert_eq!(pick(">=3.11,<3.12"), Some(name("3.11.11", "20250106")));
        assert_eq!(pick("3.12.*"), Some(name("3.12.8", "20250106")));
        assert_eq!(pick("3.14"), None);
        assert_eq!(pick("3.14.0rc1"), Some(name("3.14.0rc1", "20250801")));
        assert_eq!(pick("3.10"), None);
        let assets = parse_sums(&sums(), X86);
        let err = choose(&Requested::new("banana!", "runtime.txt"), &assets, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runtime.txt: `banana!` is not a Python version"),
            "{err}"
        );
        // What detect chose is what build installs.
        let pinned = name("3.12.7", "20241016");
        let chosen = choose(&Requested::new("3.12", "x"), &assets, Some(&pinned)).unwrap();
        assert_eq!(chosen.unwrap().sha256, "b".repeat(64));
    }

    #[test]
    fn build_paths_become_the_layer_and_compilers_the_build_environments() {
        let to = "/layers/kiln_python/python";
        let text = "'INCLUDEPY': '/install/include/python3.12',\n 'LIBDIR': '/install/lib',\n 'prefix': '/install',\n 'CONFIG_ARGS': \"'--prefix=/install' '--x=/installer' '/opt/install/y'\",\n 'CFLAGS': '-I/install/include -L/install/lib',\n";
        let out = relocate(text, "/install", to);
        assert_eq!(
            out,
            format!(
                "'INCLUDEPY': '{to}/include/python3.12',\n 'LIBDIR': '{to}/lib',\n 'prefix': '{to}',\n 'CONFIG_ARGS': \"'--prefix={to}' '--x=/installer' '/opt/install/y'\",\n 'CFLAGS': '-I{to}/include -L{to}/lib',\n"
            )
        );
        assert_eq!(
            relocate("prefix=/install\n", "/install", to),
            format!("prefix={to}\n")
        );
        let config = " 'AR': '/tools/llvm/bin/llvm-ar',\n 'CC': 'clang -pthread',\n 'CXX': 'clang++ -pthread',\n 'LDSHARED': 'clang -pthread -shared -L/tools/deps/lib',\n 'CFLAGS': 'clang-ish',\n";
        assert_eq!(
            local_compilers(
                "build_time_vars = {'CC': 'clang -pthread', 'CFLAGS': '-O2', \"CXX\": \"/tools/bin/clang++\"}"
            ),
            "build_time_vars = {'CC': 'cc -pthread', 'CFLAGS': '-O2', \"CXX\": \"c++\"}"
        );
        assert_eq!(
            local_compilers(config),
            " 'AR': 'ar',\n 'CC': 'cc -pthread',\n 'CXX': 'c++ -pthread',\n 'LDSHARED': 'cc -pthread -shared -L/tools/deps/lib',\n 'CFLAGS': 'clang-ish',\n"
        );
    }

    #[test]
    fn only_glibc_architectures_kiln_builds_for() {
        assert_eq!(triple("amd64").unwrap(), X86);
        assert_eq!(triple("arm64").unwrap(), "aarch64-unknown-linux-gnu");
        assert!(triple("s390x").is_err());
    }
}
