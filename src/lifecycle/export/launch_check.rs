//! The launch check: before the image is written, every process's program — and, for a
//! script, the interpreter on its `#!` line — must exist in the image that will run it.
//!
//! The image's files are the run image's layers (read as a stream of tar entries, whiteouts
//! applied), the launch layers at `/layers/<buildpack>/<layer>` and the app at `/workspace`
//! (both read from their host directories when asked about, entry by entry, without
//! following host links). Paths are resolved as the kernel would inside the container:
//! symbolic links are followed *within* the image (an absolute target starts again at the
//! image's root, `..` stops at the root), at most [`MAX_LINKS`] of them per lookup.
//!
//! A program without `/` is searched in the process's launch `PATH` (the run image's `Env`
//! `PATH` with the launch layers' `bin` directories in front, and the layers' env files);
//! `#!/usr/bin/env node` needs both `/usr/bin/env` and `node` on that `PATH`. A simple
//! `sh -c 'exec prog …'` (how kiln's buildpacks run shell commands) also checks `prog`.
//!
//! The run image's file list costs one pass over its compressed layers (about 0.3 s for the
//! 40 MB `nodejs` flavour with the optimised decompressor), less than compressing the app
//! layer, so it is not cached.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::image::layout::OciLayout;
use crate::launch::Process;

/// Symbolic links followed in one lookup before it is called a loop (the kernel's limit).
pub(crate) const MAX_LINKS: usize = 40;

/// Nested `#!` interpreters followed (the kernel allows 4 levels).
const MAX_INTERPRETERS: usize = 4;

/// The first bytes of an executable read for its `#!` line.
const SHEBANG_BYTES: u64 = 256;

/// What a path is in the image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Node {
    /// A directory.
    Dir,
    /// A regular file: whether any execute bit is set, and its `#!` line (without `#!`).
    File {
        /// Any execute bit is set.
        executable: bool,
        /// The `#!` line, if it starts with one.
        shebang: Option<String>,
    },
    /// A symbolic link and its target.
    Link(String),
    /// A device, FIFO or socket.
    Other,
}

/// Where a directory of the image comes from.
#[derive(Debug, Clone)]
enum Mount {
    /// A host directory (a launch layer, the app).
    Host(PathBuf),
    /// Contents kiln cannot see (a launch layer reused from the previous image): anything
    /// under it is assumed present.
    Unknown,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// The path resolves to this node (links followed), at this path.
    Node(String, Node),
    /// It lies in a part of the image kiln cannot see.
    Unknown,
    /// Nothing is there.
    Missing,
    /// Too many links (a loop).
    Loop,
}

/// One entry of a layer's tar, as the launch check needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum LayerEntry {
    /// A file, directory or link at a path (relative to the root).
    Node(String, Node),
    /// A hard link to an earlier path.
    HardLink(String, String),
    /// `.wh.NAME`: the path is deleted.
    Whiteout(String),
    /// `.wh..wh..opq`: the directory's lower contents are deleted.
    Opaque(String),
}

/// Reads a layer (a tar, possibly gzip- or zstd-compressed) as a stream: its entries, with
/// each executable's first bytes for its `#!` line. Nothing else is kept.
pub(crate) fn read_layer(blob: impl Read) -> io::Result<Vec<LayerEntry>> {
    let decoded = crate::image::layout::decompressed(blob)?;
    let mut archive = tar::Archive::new(decoded);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        if path.is_empty() {
            continue;
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            out.push(LayerEntry::Opaque(parent.to_string()));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            out.push(LayerEntry::Whiteout(join(parent, hidden)));
            continue;
        }
        let link = entry
            .link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default();
        let header = entry.header();
        let kind = header.entry_type();
        let node = if kind.is_dir() {
            Node::Dir
        } else if kind.is_symlink() {
            Node::Link(link)
        } else if kind.is_hard_link() {
            out.push(LayerEntry::HardLink(path, normalize(&link)));
            continue;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let executable = header.mode().is_ok_and(|m| m & 0o111 != 0);
            let shebang = if executable {
                read_shebang(&mut entry)?
            } else {
                None
            };
            Node::File {
                executable,
                shebang,
            }
        } else {
            Node::Other
        };
        out.push(LayerEntry::Node(path, node));
    }
    Ok(out)
}

/// `path` relative to the root, without empty or `.` components.
fn normalize(path: &str) -> String {
    components(path).collect::<Vec<_>>().join("/")
}

/// The files of the image to be: the run image's, with host directories on top.
#[derive(Debug, Default)]
pub(crate) struct ImageFiles {
    /// Run image entries by path relative to the root (`usr/bin/env`).
    entries: BTreeMap<String, Node>,
    /// Directories (relative to the root) whose contents come from elsewhere; later ones win.
    mounts: Vec<(String, Mount)>,
}

/// A path relative to the image root, from an absolute or relative one: no empty
/// components, no `.`; `..` is kept for the resolver.
fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

impl ImageFiles {
    /// Adds one layer of the run image, applying its whiteouts.
    pub(crate) fn add_layer(&mut self, entries: &[LayerEntry]) {
        for entry in entries {
            match entry {
                LayerEntry::Opaque(dir) => self.remove_under(dir),
                LayerEntry::Whiteout(path) => {
                    self.entries.remove(path);
                    self.remove_under(path);
                }
                LayerEntry::HardLink(path, target) => {
                    let node = self.entries.get(target).cloned().unwrap_or(Node::Other);
                    self.put(path.clone(), node);
                }
                LayerEntry::Node(path, node) => self.put(path.clone(), node.clone()),
            }
        }
    }

    /// A new entry replaces what a lower layer had at its path; a directory keeps the lower
    /// layer's contents.
    fn put(&mut self, path: String, node: Node) {
        if node != Node::Dir {
            self.remove_under(&path);
        }
        self.entries.insert(path, node);
    }

    /// Removes every entry below `dir` (not `dir` itself).
    fn remove_under(&mut self, dir: &str) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let below: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in below {
            self.entries.remove(&key);
        }
    }

    /// Puts the host directory `host` at `guest` (absolute), over the run image.
    pub(crate) fn mount_host(&mut self, guest: &str, host: &Path) {
        self.mounts.push((
            components(guest).collect::<Vec<_>>().join("/"),
            Mount::Host(host.to_path_buf()),
        ));
    }

    /// Marks `guest` as a directory whose contents kiln cannot see.
    pub(crate) fn mount_unknown(&mut self, guest: &str) {
        self.mounts.push((
            components(guest).collect::<Vec<_>>().join("/"),
            Mount::Unknown,
        ));
    }

    /// The node at `path` (relative to the root, already free of links in its parents).
    fn node(&self, path: &str) -> Found {
        for (prefix, mount) in self.mounts.iter().rev() {
            let rest = if path == prefix {
                ""
            } else if let Some(rest) = path
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                rest
            } else {
                continue;
            };
            let Mount::Host(host) = mount else {
                return Found::Unknown;
            };
            // `rest` has no `..` and every parent was checked not to be a link.
            let host_path = if rest.is_empty() {
                host.clone()
            } else {
                host.join(rest)
            };
            return match host_node(&host_path) {
                Some(node) => Found::Node(path.to_string(), node),
                None => Found::Missing,
            };
        }
        if path.is_empty() {
            return Found::Node(String::new(), Node::Dir);
        }
        if let Some(node) = self.entries.get(path) {
            return Found::Node(path.to_string(), node.clone());
        }
        // A directory a layer never listed but whose files it has.
        let prefix = format!("{path}/");
        let implied = self
            .entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
            || self.mounts.iter().any(|(m, _)| m.starts_with(&prefix));
        if implied {
            Found::Node(path.to_string(), Node::Dir)
        } else {
            Found::Missing
        }
    }

    /// Resolves `path` (absolute, or relative to `cwd`) inside the image, following links
    /// within it: an absolute link target starts again at the root, `..` stops at the root.
    pub(crate) fn resolve(&self, cwd: &str, path: &str) -> Found {
        let mut pending: Vec<String> = Vec::new();
        let start = if path.starts_with('/') { "" } else { cwd };
        // `pending` is a stack: the next component is last.
        push_components(&mut pending, path);
        push_components(&mut pending, start);
        // The components of `start` came last onto the stack, so they are resolved first.
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            if component == ".." {
                current.pop();
                continue;
            }
            let candidate = join(&current.join("/"), &component);
            match self.node(&candidate) {
                Found::Node(_, Node::Link(target)) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Found::Loop;
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    push_components(&mut pending, &target);
                }
                Found::Node(found, node) => {
                    if pending.is_empty() {
                        return Found::Node(found, node);
                    }
                    if node != Node::Dir {
                        return Found::Missing;
                    }
                    current.push(component);
                }
                other => return other,
            }
        }
        Found::Node(current.join("/"), Node::Dir)
    }
}

/// Pushes the components of `path` onto the stack `pending` so the first is popped first.
fn push_components(pending: &mut Vec<String>, path: &str) {
    let parts: Vec<&str> = components(path).collect();
    pending.extend(parts.into_iter().rev().map(str::to_string));
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The node of a host path, without following a link there.
fn host_node(path: &Path) -> Option<Node> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let kind = meta.file_type();
    Some(if kind.is_symlink() {
        Node::Link(
            std::fs::read_link(path)
                .ok()?
                .to_string_lossy()
                .into_owned(),
        )
    } else if kind.is_dir() {
        Node::Dir
    } else if kind.is_file() {
        let executable = meta.permissions().mode() & 0o111 != 0;
        let shebang = if executable {
            std::fs::File::open(path)
                .and_then(|mut f| read_shebang(&mut f))
                .ok()
                .flatten()
        } else {
            None
        };
        Node::File {
            executable,
            shebang,
        }
    } else {
        Node::Other
    })
}

/// The `#!` line of a file's first bytes, without `#!` and surrounding blanks.
fn read_shebang(file: &mut impl Read) -> io::Result<Option<String>> {
    let mut head = Vec::new();
    file.take(SHEBANG_BYTES).read_to_end(&mut head)?;
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(Some(String::from_utf8_lossy(line).trim().to_string()))
}

/// Why a process cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingProgram {
    /// The process type.
    pub process_type: String,
    /// The program that is missing (as the process or the `#!` line names it).
    pub program: String,
    /// What is wrong, with where kiln looked.
    pub problem: String,
    /// How to fix it (which stack flavour or Debian package has the program), if known.
    pub hint: Option<String>,
}

impl fmt::Display for MissingProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {}: {}", self.process_type, self.problem)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Shell words that are not programs (`sh -c 'cd app && …'` is not checked past them).
const SHELL_BUILTINS: &[&str] = &[
    ".", ":", "[", "alias", "break", "cd", "command", "continue", "eval", "exec", "exit", "export",
    "false", "getopts", "hash", "if", "for", "while", "until", "case", "read", "readonly",
    "return", "set", "shift", "source", "test", "times", "trap", "true", "type", "ulimit", "umask",
    "unset", "wait", "echo", "printf", "{", "!",
];

/// Checks one process against `files` with the launch `path` (`PATH`'s value); returns
/// the first thing missing.
pub(crate) fn check_process(
    files: &ImageFiles,
    process: &Process,
    path: &str,
) -> Option<(String, String)> {
    let cwd = process.working_dir.as_str();
    let program = process.command.first()?;
    if let Some(problem) = check_program(files, cwd, path, program, 0) {
        return Some(problem);
    }
    // `sh -c 'exec prog args'`: the program the shell will run.
    let shell = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| matches!(n, "sh" | "dash" | "bash"));
    if shell
        && process.command.get(1).map(String::as_str) == Some("-c")
        && let Some(script) = process.command.get(2)
        && let Some(inner) = simple_program(script)
    {
        return check_program(files, cwd, path, inner, 0);
    }
    None
}

/// The program a one-command shell script runs, when the script is that simple: no
/// operators, quoting, expansions or assignments, and not a builtin.
fn simple_program(script: &str) -> Option<&str> {
    let script = script.trim();
    if script.contains([
        '\n', ';', '&', '|', '(', ')', '`', '$', '\'', '"', '\\', '<', '>', '*', '?', '[', '~',
        '{', '#',
    ]) {
        return None;
    }
    let mut words = script.split_whitespace();
    let mut first = words.next()?;
    if first == "exec" {
        first = words.next()?;
    }
    if first.contains('=') || first.starts_with('-') || SHELL_BUILTINS.contains(&first) {
        return None;
    }
    Some(first)
}

/// Checks that `program` runs: found (on `path` when it has no `/`), an executable file,
/// and its `#!` interpreter likewise. Returns `(program, problem)`.
fn check_program(
    files: &ImageFiles,
    cwd: &str,
    path: &str,
    program: &str,
    depth: usize,
) -> Option<(String, String)> {
    let found = if program.contains('/') {
        files.resolve(cwd, program)
    } else {
        match search_path(files, cwd, path, program) {
            Some(found) => found,
            None => {
                return Some((
                    program.to_string(),
                    format!("`{program}` is not in the image (searched PATH={path})"),
                ));
            }
        }
    };
    let shebang = match found {
        Found::Unknown => return None,
        Found::Missing => {
            return Some((
                program.to_string(),
                format!("`{program}` does not exist in the image"),
            ));
        }
        Found::Loop => {
            return Some((
                program.to_string(),
                format!("`{program}` is a loop of symbolic links (more than {MAX_LINKS})"),
            ));
        }
        Found::Node(
            at,
            Node::File {
                executable,
                shebang,
            },
        ) => {
            if !executable {
                return Some((
                    program.to_string(),
                    format!("`{program}` (/{at}) is not executable (no execute permission)"),
                ));
            }
            shebang
        }
        Found::Node(at, _) => {
            return Some((
                program.to_string(),
                format!("`{program}` (/{at}) is not a file"),
            ));
        }
    };
    let line = shebang?;
    let mut words = line.splitn(2, [' ', '\t']);
    let interpreter = words.next().unwrap_or_default();
    let argument = words.next().unwrap_or_default().trim();
    if interpreter.is_empty() {
        return Some((
            program.to_string(),
            format!("`{program}` starts with `#!` but names no interpreter"),
        ));
    }
    if depth >= MAX_INTERPRETERS {
        return Some((
            program.to_string(),
            format!("`{program}` nests `#!` interpreters more than {MAX_INTERPRETERS} deep"),
        ));
    }
    let within = |(missing, problem): (String, String)| {
        (
            missing,
            format!("{problem} (the `#!{line}` line of `{program}` needs it)"),
        )
    };
    if let Some(problem) = check_program(files, cwd, path, interpreter, depth + 1) {
        return Some(within(problem));
    }
    let is_env = Path::new(interpreter).file_name().and_then(|n| n.to_str()) == Some("env");
    if is_env && let Some(target) = env_program(argument) {
        return check_program(files, cwd, path, target, depth + 1).map(within);
    }
    None
}

/// The program `env ARGUMENT` runs: the first word that is not an option or an
/// assignment (`-S` splits the rest, as the kernel passes it as one argument).
fn env_program(argument: &str) -> Option<&str> {
    argument
        .split_whitespace()
        .find(|w| !w.starts_with('-') && !w.contains('='))
}

/// `program` searched in `path`'s directories, in order: the first executable file, else
/// the first thing found, else `None`.
fn search_path(files: &ImageFiles, cwd: &str, path: &str, program: &str) -> Option<Found> {
    let mut first = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let found = files.resolve(cwd, &format!("{dir}/{program}"));
        match &found {
            Found::Node(
                _,
                Node::File {
                    executable: true, ..
                },
            )
            | Found::Unknown => {
                return Some(found);
            }
            Found::Missing => {}
            _ => {
                first.get_or_insert(found);
            }
        }
    }
    first
}

/// Reads the run image's layers from `layout` into a file list. Each layer's entries are
/// kept in `cache` (`$KILN_HOME/cache/layer-files/<blob hex>.json`) after the first read:
/// a blob's content is fixed by its digest, so the record never goes stale.
pub(crate) fn run_image_files(
    layout: &OciLayout,
    layers: &[oci_spec::image::Descriptor],
    cache: Option<&Path>,
) -> Result<ImageFiles, (PathBuf, io::Error)> {
    let mut files = ImageFiles::default();
    for layer in layers {
        let record = cache.map(|dir| dir.join(format!("{}.json", layer.digest().digest())));
        let recorded = record.as_ref().and_then(|path| {
            let bytes = crate::untrusted::read_file(
                path,
                MAX_RECORD_BYTES,
                crate::untrusted::Links::Refuse,
            )
            .ok()?;
            serde_json::from_slice::<Vec<LayerEntry>>(&bytes).ok()
        });
        let entries = if let Some(entries) = recorded {
            entries
        } else {
            let path = layout.blob_path(layer.digest());
            let blob = std::fs::File::open(&path).map_err(|e| (path.clone(), e))?;
            let entries = read_layer(blob).map_err(|e| (path.clone(), e))?;
            // Failing to record only means reading the layer again next time.
            if let (Some(record), Ok(json)) = (&record, serde_json::to_vec(&entries))
                && record
                    .parent()
                    .is_some_and(|dir| std::fs::create_dir_all(dir).is_ok())
            {
                let _ = crate::image::layout::write_atomic(record, &json);
            }
            entries
        };
        files.add_layer(&entries);
    }
    Ok(files)
}

/// The largest layer record read back (a 100 MB image lists about a megabyte).
const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// The Debian package that usually provides `program` (by its file name), for hints.
pub(crate) fn debian_package(program: &str) -> Option<&'static str> {
    let name = Path::new(program).file_name()?.to_str()?;
    Some(match name {
        "sh" | "dash" => "dash",
        "bash" => "bash",
        "node" | "nodejs" => "nodejs",
        "python3" | "python3.11" => "python3",
        "python" => "python-is-python3",
        "lighttpd" => "lighttpd",
        "perl" => "perl",
        "ruby" => "ruby",
        "php" => "php-cli",
        "java" => "default-jre-headless",
        "busybox" => "busybox",
        "curl" => "curl",
        "env" | "cat" | "ls" | "sleep" | "echo" | "cp" | "mv" | "rm" | "mkdir" | "test"
        | "true" | "false" | "printf" | "head" | "tail" | "tee" | "nohup" | "timeout" => {
            "coreutils"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `(path, kind)` entries: `"f"` file, `"x"` executable, `"d"` dir, `"l:T"`
    /// link to T, `"x:#!…"` executable with content.
    fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind) in entries {
            let mut header = tar::Header::new_gnu();
            let (kind, content) = kind.split_once(':').unwrap_or((kind, ""));
            match kind {
                "d" => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder.append_data(&mut header, path, io::empty()).unwrap();
                }
                "l" => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, path, content).unwrap();
                }
                _ => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if kind == "x" { 0o755 } else { 0o644 });
                    header.set_size(content.len() as u64);
                    builder
                        .append_data(&mut header, path, content.as_bytes())
                        .unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn files(layers: &[&[(&str, &str)]]) -> ImageFiles {
        let mut files = ImageFiles::default();
        for l in layers {
            files.add_layer(&read_layer(&layer(l)[..]).unwrap());
        }
        files
    }

    fn found(files: &ImageFiles, path: &str) -> Option<String> {
        match files.resolve("/workspace", path) {
            Found::Node(at, _) => Some(at),
            _ => None,
        }
    }

    #[test]
    fn links_resolve_within_the_image() {
        let f = files(&[&[
            ("bin", "l:usr/bin"),
            ("usr/bin/dash", "x"),
            ("usr/bin/sh", "l:dash"),
            ("usr/local/bin/node", "l:/usr/lib/node/bin/node"),
            ("usr/lib/node/bin/node", "x"),
            ("etc/alternatives/up", "l:../../usr/bin/dash"),
        ]]);
        assert_eq!(found(&f, "/bin/sh").as_deref(), Some("usr/bin/dash"));
        assert_eq!(
            found(&f, "/usr/local/bin/node").as_deref(),
            Some("usr/lib/node/bin/node")
        );
        assert_eq!(
            found(&f, "/etc/alternatives/up").as_deref(),
            Some("usr/bin/dash")
        );
        assert_eq!(found(&f, "/bin/bash"), None);
    }

    #[test]
    fn dot_dot_stops_at_the_root_and_host_links_are_not_followed() {
        let f = files(&[&[
            ("usr/bin/dash", "x"),
            // Far more `..` than the depth: clamped at the image root, never the host's.
            ("usr/bin/escape", "l:../../../../../../usr/bin/dash"),
            ("usr/bin/abs", "l:/../../usr/bin/dash"),
            // A target that exists on every host but not in the image.
            ("usr/bin/hostsh", "l:../../../../bin/sh"),
        ]]);
        assert_eq!(
            found(&f, "/usr/bin/escape").as_deref(),
            Some("usr/bin/dash")
        );
        assert_eq!(found(&f, "/usr/bin/abs").as_deref(), Some("usr/bin/dash"));
        assert_eq!(f.resolve("/", "/usr/bin/hostsh"), Found::Missing);
        assert!(
            matches!(f.resolve("/usr/bin", "../../../../usr/bin/dash"), Found::Node(at, _) if at == "usr/bin/dash")
        );
    }

    #[test]
    fn link_loops_are_bounded() {
        let f = files(&[&[("a", "l:b"), ("b", "l:/a"), ("self", "l:self/x")]]);
        assert_eq!(f.resolve("/", "/a"), Found::Loop);
        assert_eq!(f.resolve("/", "/self"), Found::Loop);
        // A long chain under the limit resolves.
        let chain: Vec<(String, String)> = (0..30)
            .map(|i| (format!("l{i}"), format!("l:l{}", i + 1)))
            .chain([("l30".to_string(), "x".to_string())])
            .collect();
        let entries: Vec<(&str, &str)> = chain
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let f = files(&[&entries]);
        assert_eq!(found(&f, "/l0").as_deref(), Some("l30"));
    }

    #[test]
    fn whiteouts_remove_lower_files() {
        let f = files(&[
            &[("usr/bin/node", "x"), ("opt/x/a", "x"), ("opt/x/b", "x")],
            &[
                ("usr/bin/.wh.node", "f"),
                ("opt/x/.wh..wh..opq", "f"),
                ("opt/x/c", "x"),
            ],
        ]);
        assert_eq!(found(&f, "/usr/bin/node"), None);
        assert_eq!(found(&f, "/opt/x/a"), None);
        assert_eq!(found(&f, "/opt/x/c").as_deref(), Some("opt/x/c"));
    }

    fn process(command: &[&str]) -> Process {
        Process {
            process_type: "web".parse().unwrap(),
            command: command.iter().map(ToString::to_string).collect(),
            args: vec![],
            working_dir: "/workspace".into(),
            buildpack_id: "bp".into(),
            exec_env: vec![],
        }
    }

    #[test]
    fn programs_and_interpreters_are_checked() {
        let app = tempfile::tempdir().unwrap();
        let script = app.path().join("start");
        std::fs::write(&script, "#!/usr/bin/env node\nconsole.log(1)\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(app.path().join("data.txt"), "x").unwrap();
        // A host link pointing at a host file that exists: it must resolve in the image.
        std::os::unix::fs::symlink("/etc/passwd", app.path().join("hostlink")).unwrap();
        let base: &[(&str, &str)] = &[
            ("bin", "l:usr/bin"),
            ("usr/bin/dash", "x"),
            ("usr/bin/sh", "l:dash"),
        ];
        let mut without_env = files(&[base]);
        without_env.mount_host("/workspace", app.path());
        let check =
            |f: &ImageFiles, command: &[&str]| check_process(f, &process(command), "/usr/bin:/bin");
        let (missing, problem) = check(&without_env, &["./start"]).unwrap();
        assert_eq!(missing, "/usr/bin/env");
        assert!(problem.contains("#!/usr/bin/env node"), "{problem}");
        let mut with_env = files(&[base, &[("usr/bin/env", "x")]]);
        with_env.mount_host("/workspace", app.path());
        let (missing, _) = check(&with_env, &["/workspace/start"]).unwrap();
        assert_eq!(missing, "node");
        let mut with_node = files(&[base, &[("usr/bin/env", "x"), ("usr/bin/node", "x")]]);
        with_node.mount_host("/workspace", app.path());
        assert_eq!(check(&with_node, &["./start"]), None);
        assert_eq!(
            check(&with_node, &["sh", "-c", "exec ./start --port 8080"]),
            None
        );
        assert_eq!(check(&with_node, &["sh", "-c", "cd x && ./nothing"]), None);
        let (missing, _) = check(&with_node, &["bash", "-c", "./start"]).unwrap();
        assert_eq!(missing, "bash");
        let (missing, _) = check(&with_node, &["sh", "-c", "exec gunicorn app:app"]).unwrap();
        assert_eq!(missing, "gunicorn");
        let (_, problem) = check(&with_node, &["./data.txt"]).unwrap();
        assert!(problem.contains("not executable"), "{problem}");
        let (_, problem) = check(&with_node, &["./hostlink"]).unwrap();
        assert!(problem.contains("does not exist"), "{problem}");
        let mut unknown = files(&[base]);
        unknown.mount_unknown("/layers/bp/reused");
        assert_eq!(
            check_process(
                &unknown,
                &process(&["tool"]),
                "/layers/bp/reused/bin:/usr/bin"
            ),
            None
        );
    }

    #[test]
    fn env_options_and_assignments_are_skipped() {
        assert_eq!(env_program("-S node --max-old-space-size=10"), Some("node"));
        assert_eq!(env_program("NODE_ENV=production node"), Some("node"));
        assert_eq!(env_program(""), None);
        assert_eq!(simple_program("exec node server.js"), Some("node"));
        assert_eq!(simple_program("python3 -m http.server $PORT"), None);
        assert_eq!(simple_program("echo hi"), None);
    }
}
