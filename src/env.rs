//! Environment variables for buildpacks and for the launched app, and the CNB env-file rules.
//!
//! A directory of env files (`<layer>/env/`, `env.build/`, `env.launch/`,
//! `env.launch/<process>/`) modifies variables by file name: `NAME` or `NAME.override` sets,
//! `NAME.default` sets only when the variable is unset or empty, `NAME.append` /
//! `NAME.prepend` join with the contents of `NAME.delim` from the same directory. Where the
//! spec and the reference lifecycle differ, kiln does what the lifecycle does
//! (`buildpacks/lifecycle:env/env.go`):
//!
//! - files are applied in file-name order, so `FOO.append` runs before `FOO.override`;
//! - `.append` / `.prepend` without a `.delim` file concatenate with **no** delimiter;
//! - unknown suffixes (including `.delim` itself) are ignored; directories, and symlinks to
//!   directories, are skipped;
//! - a name ending in a bare `.` (`PATH.`) prepends with the `.delim` or `:`.
//!
//! Env files are buildpack output, so untrusted: each is read with
//! [`untrusted::read_file`] (at most [`MAX_METADATA`] bytes, not through a symbolic link —
//! a link to a directory is skipped like a directory — never blocking on a FIFO), and the
//! one directory's files together may hold at most [`MAX_METADATA`] bytes. The variable
//! name of every file that sets a variable (no suffix, `.override`, `.default`, `.append`,
//! `.prepend`, the bare `.`) must be a name the image config can carry: UTF-8, not empty,
//! without `=` or NUL ([`check_var_name`]); its value must not contain NUL. `.delim` files
//! and files with unknown suffixes set nothing, so their names are not checked (the
//! lifecycle ignores them too); a file name that is not UTF-8 is refused whatever its
//! suffix, since kiln cannot tell what it would set.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::untrusted::{self, Links, MAX_METADATA, ReadError};

/// Variables passed through from kiln's own environment to buildpacks, besides the path
/// variables below (the lifecycle's `BuildEnvIncludelist`).
pub(crate) const BUILD_ENV_PASSTHROUGH: [&str; 9] = [
    "CNB_STACK_ID",
    "HOSTNAME",
    "HOME",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Variables of the build host's own tools, also passed through: kiln builds with the host's
/// toolchains (design.md, decision 3), and they need to find their installation, their
/// certificate bundle (a TLS-intercepting proxy's CA) and their package registry settings.
pub(crate) const HOST_TOOL_PASSTHROUGH: [&str; 15] = [
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_HOME",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "GOROOT",
    "GOPATH",
    "COREPACK_HOME",
];

/// Prefixes of host tool settings passed through (pip, uv, npm, Yarn, pnpm, Cargo
/// registries and network settings).
pub(crate) const HOST_TOOL_PREFIXES: [&str; 9] = [
    "PIP_",
    "UV_",
    "npm_config_",
    "NPM_CONFIG_",
    "YARN_",
    "PNPM_",
    "CARGO_REGISTRIES_",
    "CARGO_HTTP_",
    "CARGO_NET_",
];

/// The Go module proxy and checksum database settings, passed through to buildpacks on the
/// host and in a build image alike.
const GO_NETWORK_SETTINGS: [&str; 8] = [
    "GOPROXY",
    "GONOPROXY",
    "GOPRIVATE",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOSUMDB",
    "GOINSECURE",
    "GOFLAGS",
];

/// `PATH` in a build image (Debian's default for root).
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a build image's CA bundle is (Debian's place).
pub(crate) const IMAGE_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The variables that name a CA bundle for the tools buildpacks run.
pub(crate) const CA_VARIABLES: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Layer sub-directories that extend path variables while buildpacks run.
pub(crate) const BUILD_ROOT_DIRS: [(&str, &[&str]); 4] = [
    ("bin", &["PATH"]),
    ("lib", &["LD_LIBRARY_PATH", "LIBRARY_PATH"]),
    ("include", &["CPATH"]),
    ("pkgconfig", &["PKG_CONFIG_PATH"]),
];

/// Layer sub-directories that extend path variables when the app runs.
pub(crate) const LAUNCH_ROOT_DIRS: [(&str, &[&str]); 2] =
    [("bin", &["PATH"]), ("lib", &["LD_LIBRARY_PATH"])];

/// What an env file without a suffix does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultAction {
    /// Buildpack layers: override.
    Override,
    /// The operator's build-config env: default.
    Default,
}

/// Errors reading env files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvDirError {
    /// The directory could not be listed.
    #[error("failed to apply env files from {dir}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An env file is not one kiln accepts (a buildpack wrote invalid output).
    #[error("invalid env file {path}: {problem}")]
    Invalid {
        /// The file (or the directory, when the directory as a whole is too large).
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// Checks an environment variable name taken from outside kiln (an env file's name): not
/// empty, no `=`, no NUL. Returns what is wrong.
pub(crate) fn check_var_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("the variable name (the file name up to its first '.') is empty")
    } else if name.contains('=') {
        Err("the variable name contains '=', which no environment variable name can")
    } else if name.contains('\0') {
        Err("the variable name contains a NUL byte")
    } else {
        Ok(())
    }
}

/// What a file that could not be read by [`untrusted::read_text`] is, without its path.
pub(crate) fn read_problem(error: &ReadError) -> String {
    match error {
        ReadError::Io { source, .. } => format!("it cannot be read ({source})"),
        ReadError::Symlink { .. } => {
            "it is a symbolic link; kiln does not follow links in buildpack output (write the file itself)".to_string()
        }
        ReadError::NotAFile { kind, .. } => format!("it is a {kind}, not a regular file"),
        ReadError::TooLarge { max, .. } => format!(
            "it is larger than {max} bytes, kiln's limit for buildpack metadata files (keep large data in a layer's files)"
        ),
        ReadError::NotUtf8 { .. } => "it is not UTF-8 text".to_string(),
    }
}

/// Checks every env directory of a layer (`env/`, `env.build/`, `env.launch/` and
/// `env.launch/<process>/`) as [`Env::add_env_dir`] would read it, without applying it.
pub(crate) fn check_layer_env(layer_dir: &Path) -> Result<(), EnvDirError> {
    for sub in ["env", "env.build"] {
        read_env_files(&layer_dir.join(sub))?;
    }
    let launch = layer_dir.join("env.launch");
    read_env_files(&launch)?;
    if !launch.is_dir() {
        return Ok(());
    }
    let entries = fs::read_dir(&launch).map_err(|source| EnvDirError::Io {
        dir: launch.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| EnvDirError::Io {
            dir: launch.clone(),
            source,
        })?;
        // Process directories, and links to directories (which the read refuses).
        if entry.path().is_dir() {
            read_env_files(&entry.path())?;
        }
    }
    Ok(())
}

/// A set of environment variables, ordered by name so that everything derived from it is
/// deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// An empty environment.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The build environment's starting point: only the pass-through variables (the
    /// lifecycle's, then the host tools'), and the path variables of `host` survive.
    pub(crate) fn for_build<I, K, V>(host: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let keep = |k: &str| {
            BUILD_ENV_PASSTHROUGH.contains(&k)
                || HOST_TOOL_PASSTHROUGH.contains(&k)
                || GO_NETWORK_SETTINGS.contains(&k)
                || HOST_TOOL_PREFIXES.iter().any(|p| k.starts_with(p))
                || BUILD_ROOT_DIRS.iter().any(|(_, vars)| vars.contains(&k))
        };
        Self {
            vars: host
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| keep(k))
                .collect(),
        }
    }

    /// The build environment's starting point in a build image: the host's proxy and
    /// package-index settings only (nothing naming a host path or a host tool's
    /// installation), the image's standard `PATH`, `HOME=/tmp` (the one writable place),
    /// `LANG=C.UTF-8`, and every CA bundle variable naming the bundle bound at Debian's path.
    pub(crate) fn for_build_image<I, K, V>(host: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let keep = |k: &str| {
            (BUILD_ENV_PASSTHROUGH.contains(&k) && k != "HOME" && k != "HOSTNAME")
                || GO_NETWORK_SETTINGS.contains(&k)
                || HOST_TOOL_PREFIXES.iter().any(|p| k.starts_with(p))
        };
        let mut env = Self {
            vars: host
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| keep(k))
                .collect(),
        };
        env.set("PATH", IMAGE_PATH);
        env.set("HOME", "/tmp");
        env.set("LANG", "C.UTF-8");
        for var in CA_VARIABLES {
            env.set(var, IMAGE_CA_BUNDLE);
        }
        env
    }

    /// Parses `NAME=value` entries (an image config's `Env`). Entries without `=` are kept
    /// with an empty value.
    pub(crate) fn from_list<S: AsRef<str>>(list: &[S]) -> Self {
        Self {
            vars: list
                .iter()
                .map(|e| {
                    let (k, v) = e.as_ref().split_once('=').unwrap_or((e.as_ref(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
        }
    }

    /// The value of `name`, or `""` if unset (the lifecycle treats both alike).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", String::as_str)
    }

    /// Whether `name` is set (possibly to the empty string).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Sets `name`.
    pub(crate) fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Removes `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// Iterates over `(name, value)` in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `NAME=value` strings in name order (an image config's `Env`).
    pub(crate) fn to_list(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// For each `(sub-directory, variables)` in `roots` that exists under `host_dir`, prepends
    /// `guest_dir/<sub-directory>` to the variables with `:`.
    ///
    /// `host_dir` is where kiln sees the layer; `guest_dir` is where buildpacks and the app
    /// see it (`/layers/<buildpack>/<layer>`).
    pub(crate) fn add_root_dir(
        &mut self,
        host_dir: &Path,
        guest_dir: &Path,
        roots: &[(&str, &[&str])],
    ) {
        for (sub, vars) in roots {
            if !host_dir.join(sub).is_dir() {
                continue;
            }
            let path = guest_dir.join(sub).to_string_lossy().into_owned();
            for var in *vars {
                let value = join_prefix(&path, ":", self.get(var));
                self.set(*var, value);
            }
        }
    }

    /// Applies the env files in `dir` (see the module docs). A missing directory is fine.
    pub(crate) fn add_env_dir(
        &mut self,
        dir: &Path,
        default: DefaultAction,
    ) -> Result<(), EnvDirError> {
        let files = read_env_files(dir)?;
        let delim = |name: &str| -> Option<String> {
            files
                .iter()
                .find(|(file, _)| file.strip_suffix(".delim") == Some(name))
                .map(|(_, value)| value.clone())
        };
        for (file_name, value) in &files {
            let value = value.clone();
            let (name, action) = match file_name.split_once('.') {
                Some((name, action)) => (name, Some(action)),
                None => (file_name.as_str(), None),
            };
            let action = match (action, default) {
                (Some(a), _) => a,
                (None, DefaultAction::Override) => "override",
                (None, DefaultAction::Default) => "default",
            };
            match action {
                "prepend" => {
                    let delim = delim(name).unwrap_or_default();
                    let v = join_prefix(&value, &delim, self.get(name));
                    self.set(name, v);
                }
                "append" => {
                    let delim = delim(name).unwrap_or_default();
                    let v = join_suffix(self.get(name), &delim, &value);
                    self.set(name, v);
                }
                "override" => self.set(name, value),
                "default" if self.get(name).is_empty() => self.set(name, value),
                "" => {
                    let delim = delim(name).unwrap_or_else(|| ":".to_string());
                    let v = join_prefix(&value, &delim, self.get(name));
                    self.set(name, v);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies user-provided variables the way the lifecycle applies `<platform>/env/`: a
    /// path variable named in `roots` gets the user value prepended with `:`, anything else is
    /// replaced.
    #[must_use]
    pub(crate) fn with_user_env(
        &self,
        user: &BTreeMap<String, String>,
        roots: &[(&str, &[&str])],
    ) -> Env {
        let mut env = self.clone();
        for (name, value) in user {
            if roots.iter().any(|(_, vars)| vars.contains(&name.as_str())) {
                let v = join_prefix(value, ":", env.get(name));
                env.set(name, v);
            } else {
                env.set(name, value);
            }
        }
        env
    }
}

/// `value + delim + existing`, or just `value` when `existing` is empty.
fn join_prefix(value: &str, delim: &str, existing: &str) -> String {
    if existing.is_empty() {
        value.to_string()
    } else {
        format!("{value}{delim}{existing}")
    }
}

/// `existing + delim + value`, or just `value` when `existing` is empty.
fn join_suffix(existing: &str, delim: &str, value: &str) -> String {
    if existing.is_empty() {
        value.to_string()
    } else {
        format!("{existing}{delim}{value}")
    }
}

/// Whether an env file with this suffix (the part after the variable name's first `.`)
/// sets a variable.
fn sets_variable(action: Option<&str>) -> bool {
    matches!(
        action,
        None | Some("" | "override" | "default" | "append" | "prepend")
    )
}

/// Reads the files of an env directory in file-name order, skipping directories and
/// symlinks to directories, checking names and sizes (see the module docs). A missing
/// directory yields nothing.
fn read_env_files(dir: &Path) -> Result<Vec<(String, String)>, EnvDirError> {
    let io_err = |source| EnvDirError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    // The directory itself must be a directory of the layer, not a link: kiln reads it
    // outside the build sandbox, so a link could show it files the buildpack cannot see.
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) => {
            return Err(EnvDirError::Invalid {
                path: dir.to_path_buf(),
                problem: if meta.file_type().is_symlink() {
                    "the env directory is a symbolic link; write the env files into a directory"
                } else {
                    "it is not a directory; env files go in a directory"
                }
                .to_string(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    }
    let entries = fs::read_dir(dir).map_err(io_err)?;
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let invalid = |problem: String| EnvDirError::Invalid {
            path: path.clone(),
            problem,
        };
        let file_type = entry.file_type().map_err(io_err)?;
        // A symlink to a directory is skipped like a directory (the lifecycle does); any
        // other link is refused below, by the read.
        if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            return Err(invalid(
                "its name is not UTF-8, so it names no environment variable an image can carry; rename it".to_string(),
            ));
        };
        let (var, action) = match name.split_once('.') {
            Some((var, action)) => (var, Some(action)),
            None => (name.as_str(), None),
        };
        if sets_variable(action) {
            check_var_name(var).map_err(|problem| {
                invalid(format!(
                    "{problem}; name env files after the variable they set (e.g. PATH.prepend)"
                ))
            })?;
        }
        // Values that are not UTF-8 are converted lossily, as before (the image config is
        // JSON text).
        let bytes = untrusted::read_file(&path, MAX_METADATA, Links::Refuse)
            .map_err(|e| invalid(read_problem(&e)))?;
        let value = String::from_utf8_lossy(&bytes).into_owned();
        if sets_variable(action) && value.contains('\0') {
            return Err(invalid(
                "its value contains a NUL byte, which no environment variable can hold".to_string(),
            ));
        }
        total += value.len() as u64;
        if total > MAX_METADATA {
            return Err(EnvDirError::Invalid {
                path: dir.to_path_buf(),
                problem: format!(
                    "its env files hold more than {MAX_METADATA} bytes together, kiln's limit for one env directory"
                ),
            });
        }
        files.push((name, value));
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_build_image_gets_the_hosts_network_settings_and_nothing_else() {
        let env = Env::for_build_image([
            ("PATH", "/root/.cargo/bin:/usr/bin"),
            ("HOME", "/root"),
            ("HOSTNAME", "laptop"),
            ("RUSTUP_HOME", "/root/.rustup"),
            ("PYENV_ROOT", "/root/.pyenv"),
            ("LD_LIBRARY_PATH", "/opt/lib"),
            ("SSL_CERT_FILE", "/home/me/proxy.pem"),
            ("LANG", "de_DE.UTF-8"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("PIP_INDEX_URL", "https://pypi.example/simple"),
            ("npm_config_registry", "https://npm.example/"),
            ("GOPROXY", "https://go.example"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]);
        let vars: Vec<(&str, &str)> = env.iter().collect();
        assert_eq!(
            vars,
            [
                ("CURL_CA_BUNDLE", IMAGE_CA_BUNDLE),
                ("GIT_SSL_CAINFO", IMAGE_CA_BUNDLE),
                ("GOPROXY", "https://go.example"),
                ("HOME", "/tmp"),
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("LANG", "C.UTF-8"),
                ("NODE_EXTRA_CA_CERTS", IMAGE_CA_BUNDLE),
                ("PATH", IMAGE_PATH),
                ("PIP_CERT", IMAGE_CA_BUNDLE),
                ("PIP_INDEX_URL", "https://pypi.example/simple"),
                ("REQUESTS_CA_BUNDLE", IMAGE_CA_BUNDLE),
                ("SSL_CERT_FILE", IMAGE_CA_BUNDLE),
                ("npm_config_registry", "https://npm.example/"),
            ]
        );
    }

    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    fn apply(start: &[(&str, &str)], files: &[(&str, &str)], default: DefaultAction) -> Env {
        let mut env = Env::new();
        for (k, v) in start {
            env.set(*k, *v);
        }
        let dir = dir_with(files);
        env.add_env_dir(dir.path(), default).unwrap();
        env
    }

    #[test]
    fn suffix_rules() {
        let env = apply(
            &[("P", "old"), ("A", "old"), ("D", "set"), ("E", "")],
            &[
                ("O", "o"),
                ("X.override", "x"),
                ("P.prepend", "new"),
                ("P.delim", ":"),
                ("A.append", "new"),
                ("D.default", "ignored"),
                ("E.default", "filled"),
                ("U.unknown", "nope"),
            ],
            DefaultAction::Override,
        );
        assert_eq!(env.get("O"), "o");
        assert_eq!(env.get("X"), "x");
        assert_eq!(env.get("P"), "new:old");
        // Without a .delim file the lifecycle concatenates with no delimiter.
        assert_eq!(env.get("A"), "oldnew");
        assert_eq!(env.get("D"), "set");
        assert_eq!(env.get("E"), "filled");
        assert!(!env.contains("U"));
    }

    #[test]
    fn files_apply_in_name_order() {
        // FOO.append sorts before FOO.override, so the override wins.
        let env = apply(
            &[("FOO", "a")],
            &[("FOO.append", "b"), ("FOO.override", "c")],
            DefaultAction::Override,
        );
        assert_eq!(env.get("FOO"), "c");
        // FOO.default sorts before FOO.prepend: default sees "a" and does nothing.
        let env = apply(
            &[("FOO", "a")],
            &[("FOO.default", "z"), ("FOO.prepend", "p")],
            DefaultAction::Override,
        );
        assert_eq!(env.get("FOO"), "pa");
    }

    #[test]
    fn unsuffixed_follows_default_action() {
        let env = apply(&[("V", "keep")], &[("V", "new")], DefaultAction::Default);
        assert_eq!(env.get("V"), "keep");
        let env = apply(&[("V", "keep")], &[("V", "new")], DefaultAction::Override);
        assert_eq!(env.get("V"), "new");
    }

    #[test]
    fn trailing_dot_prepends_with_colon() {
        let env = apply(
            &[("PATH", "/bin")],
            &[("PATH.", "/x")],
            DefaultAction::Override,
        );
        assert_eq!(env.get("PATH"), "/x:/bin");
    }

    #[test]
    fn append_to_empty_has_no_leading_delimiter() {
        let env = apply(
            &[],
            &[("L.append", "v"), ("L.delim", ",")],
            DefaultAction::Override,
        );
        assert_eq!(env.get("L"), "v");
    }

    #[test]
    fn directories_are_skipped() {
        let dir = dir_with(&[("A", "1")]);
        fs::create_dir(dir.path().join("web")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("web"), dir.path().join("LINK")).unwrap();
        let mut env = Env::new();
        env.add_env_dir(dir.path(), DefaultAction::Override)
            .unwrap();
        assert_eq!(env.to_list(), ["A=1"]);
        env.add_env_dir(&dir.path().join("missing"), DefaultAction::Override)
            .unwrap();
    }

    fn refused(files: &[(&str, &str)]) -> String {
        let dir = dir_with(files);
        let err = Env::new()
            .add_env_dir(dir.path(), DefaultAction::Override)
            .unwrap_err();
        assert!(matches!(err, EnvDirError::Invalid { .. }), "{err}");
        err.to_string()
    }

    #[test]
    fn invalid_variable_names_are_refused() {
        for (file, needle) in [
            ("=X", "'='"),
            ("A=B", "'='"),
            ("A=B.append", "'='"),
            (".override", "empty"),
            (".prepend", "empty"),
        ] {
            let err = refused(&[(file, "v")]);
            assert!(err.contains(needle) && err.contains(file), "{file}: {err}");
        }
        // Files that set nothing are not checked, as the lifecycle ignores them.
        let env = apply(
            &[],
            &[("A=B.delim", ":"), ("=X.unknown", "v"), ("OK", "1")],
            DefaultAction::Override,
        );
        assert_eq!(env.to_list(), ["OK=1"]);
    }

    #[test]
    fn non_utf8_names_and_nul_values_are_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(std::ffi::OsStr::from_bytes(b"A\xff")), "v").unwrap();
        let err = Env::new()
            .add_env_dir(dir.path(), DefaultAction::Override)
            .unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert!(refused(&[("A", "x\0y")]).contains("NUL"));
    }

    #[test]
    fn env_files_are_bounded_and_not_followed() {
        let big = "x".repeat(usize::try_from(MAX_METADATA).unwrap() + 1);
        assert!(refused(&[("BIG", &big)]).contains("larger than"));
        // Several files under the limit that are over it together.
        let half = "y".repeat(usize::try_from(MAX_METADATA / 2).unwrap() + 1);
        assert!(refused(&[("A", &half), ("B", &half)]).contains("together"));

        let dir = dir_with(&[]);
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "secret-value").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("S")).unwrap();
        let err = Env::new()
            .add_env_dir(dir.path(), DefaultAction::Override)
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!err.to_string().contains("secret-value"));

        let dir = dir_with(&[]);
        nix::unistd::mkfifo(&dir.path().join("F"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = Env::new()
            .add_env_dir(dir.path(), DefaultAction::Override)
            .unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn linked_env_directories_are_refused() {
        let outside = dir_with(&[("SECRET", "secret-value")]);
        let layer = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), layer.path().join("env")).unwrap();
        let err = check_layer_env(layer.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let mut env = Env::new();
        assert!(
            env.add_env_dir(&layer.path().join("env"), DefaultAction::Override)
                .is_err()
        );
        assert!(!env.contains("SECRET"));

        let layer = tempfile::tempdir().unwrap();
        fs::create_dir(layer.path().join("env.launch")).unwrap();
        std::os::unix::fs::symlink(outside.path(), layer.path().join("env.launch/web")).unwrap();
        let err = check_layer_env(layer.path()).unwrap_err();
        assert!(err.to_string().contains("env.launch/web"), "{err}");
    }

    #[test]
    fn layer_env_check_covers_process_directories() {
        let layer = tempfile::tempdir().unwrap();
        fs::create_dir_all(layer.path().join("env.launch/web")).unwrap();
        fs::write(layer.path().join("env.launch/web/OK"), "1").unwrap();
        check_layer_env(layer.path()).unwrap();
        fs::write(layer.path().join("env.launch/web/A=B"), "1").unwrap();
        let err = check_layer_env(layer.path()).unwrap_err();
        assert!(err.to_string().contains("env.launch/web/A=B"), "{err}");
    }

    #[test]
    fn build_env_is_filtered() {
        let env = Env::for_build([
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("SECRET_TOKEN", "x"),
            ("LIBRARY_PATH", "/l"),
            ("PIP_INDEX_URL", "https://mirror/simple"),
            ("SSL_CERT_FILE", "/ca.pem"),
            ("PYTHONPATH", "/host/lib"),
        ]);
        assert_eq!(
            env.to_list(),
            [
                "HOME=/root",
                "LIBRARY_PATH=/l",
                "PATH=/usr/bin",
                "PIP_INDEX_URL=https://mirror/simple",
                "SSL_CERT_FILE=/ca.pem"
            ]
        );
    }

    #[test]
    fn user_env_prepends_path_vars() {
        let env = Env::for_build([("PATH", "/usr/bin")]);
        let user = BTreeMap::from([
            ("PATH".to_string(), "/opt/bin".to_string()),
            ("FOO".to_string(), "bar".to_string()),
        ]);
        let env = env.with_user_env(&user, &BUILD_ROOT_DIRS);
        assert_eq!(env.get("PATH"), "/opt/bin:/usr/bin");
        assert_eq!(env.get("FOO"), "bar");
    }

    #[test]
    fn root_dirs_use_guest_paths() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::create_dir(dir.path().join("lib")).unwrap();
        let mut env = Env::new();
        env.set("PATH", "/usr/bin");
        env.add_root_dir(dir.path(), Path::new("/layers/bp/l"), &BUILD_ROOT_DIRS);
        assert_eq!(env.get("PATH"), "/layers/bp/l/bin:/usr/bin");
        assert_eq!(env.get("LD_LIBRARY_PATH"), "/layers/bp/l/lib");
        assert_eq!(env.get("LIBRARY_PATH"), "/layers/bp/l/lib");
        assert!(!env.contains("CPATH"));
    }
}
