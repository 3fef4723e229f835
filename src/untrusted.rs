//! Names, files and archives that come from outside kiln: one place that checks them.
//!
//! Every name kiln takes from an image, a cache, a source tree or a buildpack (layer names,
//! buildpack ids, env file names, tar entry paths) is hostile until checked here; every
//! metadata file kiln reads is read with a size bound and, where it comes from a source tree,
//! without following symbolic links; every archive kiln unpacks is unpacked with [`Beneath`],
//! which resolves paths one component at a time with `O_NOFOLLOW` and so never follows a
//! symbolic link kiln did not resolve itself, within the directory.
//!
//! Nothing here quotes a file's contents: errors name the file, the line and the problem.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag};

/// The largest metadata file kiln reads from a buildpack or a source tree (`launch.toml`,
/// `build.toml`, `<layer>.toml`, `store.toml`, `plan.toml`, `buildpack.toml`,
/// `project.toml`, `.kilnignore`, `order.toml`, env files): 1 MiB. Real ones are a few KiB.
pub const MAX_METADATA: u64 = 1 << 20;

/// The largest JSON document kiln reads from an image, a layout or a registry (index,
/// manifest, config, kiln's own records): 8 MiB (registries commonly refuse manifests over
/// 4 MiB).
pub const MAX_DOCUMENT: u64 = 8 << 20;

/// A name from outside kiln that is not safe to use as a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?} is not allowed: {problem}")]
pub struct UnsafeName {
    /// What the name is (e.g. "layer name").
    pub what: &'static str,
    /// The name, lossily converted for display.
    pub name: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Checks that `name` is one path component: not empty, not `.` or `..`, no `/`, no NUL,
/// at most 255 bytes.
pub fn component<'a>(name: &'a str, what: &'static str) -> Result<&'a str, UnsafeName> {
    component_problem(name.as_bytes())
        .map_or(Ok(name), |problem| Err(unsafe_name(what, name, problem)))
}

fn component_problem(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name == b"." || name == b".." {
        Some("it is . or ..")
    } else if name.contains(&b'/') {
        Some("it contains /")
    } else if name.contains(&0) {
        Some("it contains a NUL byte")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else {
        None
    }
}

/// Checks that `path` is relative, not empty, and made only of ordinary components (no `..`,
/// no root, no NUL). `.` components are dropped.
pub fn relative(path: &Path, what: &'static str) -> Result<PathBuf, UnsafeName> {
    let display = || path.to_string_lossy().into_owned();
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(UnsafeName {
            what,
            name: display(),
            problem: "it contains a NUL byte",
        });
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => {
                if part.len() > 255 {
                    return Err(UnsafeName {
                        what,
                        name: display(),
                        problem: "a component is longer than 255 bytes",
                    });
                }
                out.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnsafeName {
                    what,
                    name: display(),
                    problem: "it contains ..",
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnsafeName {
                    what,
                    name: display(),
                    problem: "it is absolute",
                });
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(UnsafeName {
            what,
            name: display(),
            problem: "it is empty",
        });
    }
    Ok(out)
}

fn unsafe_name(what: &'static str, name: &str, problem: &'static str) -> UnsafeName {
    UnsafeName {
        what,
        name: name.to_string(),
        problem,
    }
}

/// Whether a read follows a symbolic link at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (files kiln or the user named, e.g. `--env-file`).
    Follow,
    /// Refuse it (files in a source tree or written by a buildpack).
    Refuse,
}

/// Reading a file with `read_file` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is a symbolic link and links are refused for it.
    #[error(
        "{path} is a symbolic link; kiln does not follow links for this file (put the file itself there)"
    )]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// The path is not a regular file (a FIFO, a device, a directory, a socket).
    #[error("{path} is a {kind}, not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The file is larger than the limit for it.
    #[error("{path} is larger than {max} bytes, kiln's limit for this file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading only if it is a regular file: without blocking (a FIFO is
/// refused, not waited on) and, with [`Links::Refuse`], without following a link at `path`.
pub(crate) fn open_regular(path: &Path, links: Links) -> Result<fs::File, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut flags = nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY;
    if links == Links::Refuse {
        flags |= nix::libc::O_NOFOLLOW;
    }
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if links == Links::Refuse && e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(ReadError::Symlink {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    let kind = file.metadata().map_err(io_err)?.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_name(kind),
        });
    }
    // O_NONBLOCK means nothing for a regular file; cleared all the same for whoever reads it.
    let fd = std::os::fd::AsFd::as_fd(&file);
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
        .map(OFlag::from_bits_truncate)
        .map_err(|e| io_err(e.into()))?;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))
        .map_err(|e| io_err(e.into()))?;
    Ok(file)
}

/// Reads a whole regular file of at most `max` bytes (opened as `open_regular` opens it, then
/// read with that bound).
pub fn read_file(path: &Path, max: u64, links: Links) -> Result<Vec<u8>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = open_regular(path, links)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

/// [`read_file`] for UTF-8 text.
pub fn read_text(path: &Path, max: u64, links: Links) -> Result<String, ReadError> {
    String::from_utf8(read_file(path, max, links)?).map_err(|_| ReadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Reads at most `max` bytes from a stream; more is an `InvalidData` error naming `what`.
pub fn read_limited(reader: impl Read, max: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is larger than {max} bytes, kiln's limit for it"),
        ));
    }
    Ok(bytes)
}

fn kind_name(kind: fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Describes a TOML parse error by line and column without quoting the file: the file may
/// not be what its name says (a link to `/proc/self/environ`, say), so no excerpt of it and
/// no quoted value from it is shown.
pub fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = redact_quoted(error.message());
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.split(|b| *b == b'\n').count();
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let column = before.len() - line_start + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Describes a JSON parse error without quoting the document (values in the message are
/// elided, as [`toml_problem`] does).
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    redact_quoted(&error.to_string())
}

/// Replaces the contents of every `"…"` in a message with `…` (keys in backticks stay: they
/// name what was expected).
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push_str("…\"");
    }
    out.lines().next().unwrap_or_default().to_string()
}

/// How [`Beneath`] treats a symbolic link met as a *parent* of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentLinks {
    /// Refuse the path (layer contents: a link made by the archive must not be written
    /// through).
    Refuse,
    /// Resolve the link as if the directory were `/` (a root file system being assembled:
    /// `chroot` semantics; absolute targets and `..` never leave the directory).
    InRoot,
}

/// Creates files, directories and links beneath a directory, never outside it.
///
/// Every path is checked with [`relative`]; parents are opened one component at a time with
/// `O_NOFOLLOW`, so a symbolic link (made by an earlier archive entry or anything else) is
/// never followed implicitly: it is refused, or resolved within the directory
/// ([`ParentLinks`]). The final component is created with `O_EXCL`/`*at` calls that do not
/// follow links either; an existing non-directory in the way is replaced.
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
    root_path: PathBuf,
    links: ParentLinks,
    /// The last parent directory opened (entries of an archive come grouped by directory).
    last: Option<(PathBuf, OwnedFd)>,
}

/// How many symbolic links [`ParentLinks::InRoot`] resolves for one path (Linux's limit).
const MAX_LINKS: usize = 40;

impl Beneath {
    /// Opens `root`, a directory kiln made (it may itself be reached through links).
    pub fn open(root: &Path, links: ParentLinks) -> io::Result<Self> {
        let root_fd = nix::fcntl::open(
            root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(Self {
            root: root_fd,
            root_path: root.to_path_buf(),
            links,
            last: None,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// Opens (creating what is missing, mode 0755) the parent directory of `rel` and returns
    /// it with the final component's name.
    fn parent(&mut self, rel: &Path) -> io::Result<(OwnedFd, OsString)> {
        let rel = checked(rel)?;
        let name = rel
            .file_name()
            .map(OsStr::to_os_string)
            .ok_or_else(|| refused(&rel, "it has no file name"))?;
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if let Some((path, fd)) = &self.last
            && *path == parent
        {
            return Ok((fd.try_clone()?, name));
        }
        let fd = self.open_dir(&parent, true)?;
        self.last = Some((parent, fd.try_clone()?));
        Ok((fd, name))
    }

    /// Opens the directory `rel` (relative, checked), creating missing components when asked.
    fn open_dir(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut pending: Vec<OsString> = rel
            .components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_os_string()),
                _ => None,
            })
            .collect();
        let mut resolved = 0;
        while let Some(part) = pending.pop() {
            let dir = stack.last().map_or(self.root.as_fd(), AsFd::as_fd);
            if part == ".." {
                // Only produced by resolving a link InRoot: clamp at the root.
                stack.pop();
                continue;
            }
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            match openat(dir, part.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => stack.push(fd),
                Err(Errno::ENOENT) if create => {
                    match nix::sys::stat::mkdirat(
                        dir,
                        part.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    pending.push(part);
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let stat = nix::sys::stat::fstatat(
                        dir,
                        part.as_os_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )?;
                    let is_link =
                        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK;
                    if !is_link || self.links == ParentLinks::Refuse {
                        return Err(refused(
                            rel,
                            if is_link {
                                "a parent is a symbolic link"
                            } else {
                                "a parent is not a directory"
                            },
                        ));
                    }
                    resolved += 1;
                    if resolved > MAX_LINKS {
                        return Err(refused(rel, "too many symbolic links"));
                    }
                    let target = nix::fcntl::readlinkat(dir, part.as_os_str())?;
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        stack.clear();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(p) => pending.push(p.to_os_string()),
                            Component::ParentDir => pending.push(OsString::from("..")),
                            _ => {}
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => self.root.try_clone(),
        }
    }

    /// Creates the directory `rel` (and its parents); an existing directory is kept.
    pub fn create_dir(&mut self, rel: &Path, mode: u32) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        match nix::sys::stat::mkdirat(
            &parent,
            name.as_os_str(),
            Mode::from_bits_truncate(mode & 0o7777),
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                let stat = nix::sys::stat::fstatat(
                    &parent,
                    name.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    Ok(())
                } else {
                    remove_entry(&parent, &name)?;
                    nix::sys::stat::mkdirat(
                        &parent,
                        name.as_os_str(),
                        Mode::from_bits_truncate(mode & 0o7777),
                    )
                    .map_err(io::Error::from)
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the regular file `rel` from `contents` (replacing a non-directory in the way);
    /// returns the bytes written.
    pub fn write_file(
        &mut self,
        rel: &Path,
        mode: u32,
        contents: &mut impl Read,
    ) -> io::Result<u64> {
        let (parent, name) = self.parent(rel)?;
        remove_entry(&parent, &name)?;
        let fd = openat(
            &parent,
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        let mut file = fs::File::from(fd);
        let written = io::copy(contents, &mut file)?;
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode & 0o7777))?;
        Ok(written)
    }

    /// Creates the symbolic link `rel` pointing at `target` (any target: it is never followed
    /// by [`Beneath`] except [`ParentLinks::InRoot`] resolution).
    pub fn symlink(&mut self, rel: &Path, target: &Path) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        remove_entry(&parent, &name)?;
        nix::unistd::symlinkat(target, &parent, name.as_os_str()).map_err(io::Error::from)
    }

    /// Makes `rel` a hard link to `existing` (both beneath the directory; a link at
    /// `existing` is linked itself, not followed).
    pub fn hard_link(&mut self, existing: &Path, rel: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(existing)?;
        let (to_dir, to_name) = self.parent(rel)?;
        remove_entry(&to_dir, &to_name)?;
        nix::unistd::linkat(
            &from_dir,
            from_name.as_os_str(),
            &to_dir,
            to_name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(io::Error::from)
    }

    /// Removes `rel` (a file, a link, or a whole directory tree, never following a link);
    /// a missing one is fine.
    pub fn remove(&mut self, rel: &Path) -> io::Result<()> {
        let (parent, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if is_dir_at(&parent, &name) {
            // Through the parent's descriptor, so no link on the way is followed;
            // `remove_dir_all` itself never follows links inside the tree.
            let path = Path::new("/proc/self/fd")
                .join(std::os::fd::AsRawFd::as_raw_fd(&parent).to_string())
                .join(&name);
            self.last = None;
            return match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        remove_entry(&parent, &name)
    }

    /// Sets the mode of `rel` (not through a link: a link's mode is left as it is).
    pub fn set_mode(&mut self, rel: &Path, mode: u32) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        let stat =
            nix::sys::stat::fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            return Ok(());
        }
        nix::sys::stat::fchmodat(
            &parent,
            name.as_os_str(),
            Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(io::Error::from)
    }
}

fn checked(rel: &Path) -> io::Result<PathBuf> {
    relative(rel, "archive path").map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn refused(rel: &Path, problem: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refusing {}: {problem}", rel.display()),
    )
}

/// Removes a non-directory entry (not following links); a missing one is fine, a directory
/// is left (the create that follows fails on it).
fn remove_entry(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT | Errno::EISDIR) => Ok(()),
        // Linux answers EISDIR; POSIX allows EPERM for a directory.
        Err(Errno::EPERM) if is_dir_at(dir, name) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_dir_at(dir: &OwnedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// A file name as bytes, for formats that carry raw bytes (tar) — never converted lossily.
pub fn name_bytes(name: &OsStr) -> Vec<u8> {
    name.to_os_string().into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn components_refuse_what_is_not_one_name() {
        for (name, problem) in [
            ("", "it is empty"),
            (".", "it is . or .."),
            ("..", "it is . or .."),
            ("a/b", "it contains /"),
            ("../x", "it contains /"),
            ("a\0b", "it contains a NUL byte"),
        ] {
            assert_eq!(
                component(name, "layer name").unwrap_err().problem,
                problem,
                "{name:?}"
            );
        }
        assert_eq!(component("web-1.2_x", "layer name").unwrap(), "web-1.2_x");
        assert!(component(&"x".repeat(256), "layer name").is_err());
    }

    #[test]
    fn relative_paths_refuse_escapes() {
        for path in ["/etc/passwd", "../x", "a/../../x", "", ".", "a/\0"] {
            assert!(relative(Path::new(path), "p").is_err(), "{path:?}");
        }
        assert_eq!(
            relative(Path::new("./a/./b"), "p").unwrap(),
            Path::new("a/b")
        );
    }

    #[test]
    fn bounded_reads_refuse_links_fifos_devices_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "hello").unwrap();
        assert_eq!(read_file(&file, 5, Links::Refuse).unwrap(), b"hello");
        assert!(matches!(
            read_file(&file, 4, Links::Refuse),
            Err(ReadError::TooLarge { max: 4, .. })
        ));
        let link = dir.path().join("l");
        symlink("/proc/self/environ", &link).unwrap();
        assert!(matches!(
            read_file(&link, 1 << 20, Links::Refuse),
            Err(ReadError::Symlink { .. })
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(
            read_file(&fifo, 10, Links::Follow),
            Err(ReadError::NotAFile { kind: "FIFO", .. })
        ));
        assert!(matches!(
            read_file(Path::new("/dev/zero"), 10, Links::Follow),
            Err(ReadError::NotAFile { kind: "device", .. })
        ));
        assert!(
            read_file(&dir.path().join("missing"), 10, Links::Follow)
                .unwrap_err()
                .is_not_found()
        );
        assert!(read_limited(io::repeat(0), 100, "x").is_err());
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        flag: bool,
    }

    #[test]
    fn toml_problems_never_quote_values() {
        let text = "a = 1\nsecret = \"KILN_REGISTRY_AUTH=u:p\" x\n";
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        let problem = toml_problem(text, &err);
        assert!(problem.starts_with("line 2,"), "{problem}");
        assert!(!problem.contains("u:p"), "{problem}");
        let text = "flag = \"hunter2\"\n";
        let problem = toml_problem(text, &toml::from_str::<T>(text).unwrap_err());
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    fn beneath_never_writes_through_a_link_it_met() {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let root = work.path().join("root");
        fs::create_dir(&root).unwrap();
        let mut dir = Beneath::open(&root, ParentLinks::Refuse).unwrap();
        dir.symlink(Path::new("link"), &outside).unwrap();
        let err = dir
            .write_file(Path::new("link/file"), 0o644, &mut &b"x"[..])
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        // A link as the final component is replaced, not written through.
        dir.write_file(Path::new("link"), 0o644, &mut &b"x"[..])
            .unwrap();
        assert!(fs::symlink_metadata(root.join("link")).unwrap().is_file());
        assert!(
            dir.write_file(Path::new("../x"), 0o644, &mut &b"x"[..])
                .is_err()
        );
        // Hard links to a link do not follow it.
        dir.symlink(Path::new("l2"), Path::new("/etc/passwd"))
            .unwrap();
        dir.hard_link(Path::new("l2"), Path::new("l3")).unwrap();
        assert!(fs::symlink_metadata(root.join("l3")).unwrap().is_symlink());
    }

    #[test]
    fn removing_never_follows_a_link() {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        fs::create_dir_all(outside.join("d")).unwrap();
        fs::write(outside.join("d/f"), "keep").unwrap();
        let root = work.path().join("root");
        fs::create_dir_all(root.join("tree/sub")).unwrap();
        fs::write(root.join("tree/sub/f"), "x").unwrap();
        let mut dir = Beneath::open(&root, ParentLinks::InRoot).unwrap();
        dir.symlink(Path::new("abs"), &outside).unwrap();
        dir.symlink(Path::new("tree/link"), &outside).unwrap();
        // A link is removed itself; a tree holding links is removed without following them.
        dir.remove(Path::new("abs")).unwrap();
        dir.remove(Path::new("tree")).unwrap();
        dir.remove(Path::new("missing/deeper")).unwrap();
        assert!(!root.join("abs").exists() && !root.join("tree").exists());
        assert_eq!(fs::read_to_string(outside.join("d/f")).unwrap(), "keep");
    }

    #[test]
    fn in_root_links_resolve_inside_the_root() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        let mut dir = Beneath::open(&root, ParentLinks::InRoot).unwrap();
        dir.symlink(Path::new("lib"), Path::new("usr/lib")).unwrap();
        dir.symlink(Path::new("abs"), Path::new("/usr/lib"))
            .unwrap();
        dir.symlink(Path::new("up"), Path::new("../../../../etc"))
            .unwrap();
        dir.write_file(Path::new("lib/a"), 0o644, &mut &b"a"[..])
            .unwrap();
        dir.write_file(Path::new("abs/b"), 0o644, &mut &b"b"[..])
            .unwrap();
        dir.write_file(Path::new("up/c"), 0o644, &mut &b"c"[..])
            .unwrap();
        assert_eq!(fs::read(root.join("usr/lib/a")).unwrap(), b"a");
        assert_eq!(fs::read(root.join("usr/lib/b")).unwrap(), b"b");
        assert_eq!(fs::read(root.join("etc/c")).unwrap(), b"c");
        assert!(!work.path().join("etc").exists());
    }
}
