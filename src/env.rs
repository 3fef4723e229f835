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

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Variables passed through from kiln's own environment to buildpacks, besides the path
/// variables below (the lifecycle's `BuildEnvIncludelist`).
pub const BUILD_ENV_PASSTHROUGH: [&str; 9] = [
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
pub const HOST_TOOL_PASSTHROUGH: [&str; 23] = [
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
    "GOPROXY",
    "GONOPROXY",
    "GOPRIVATE",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOSUMDB",
    "GOINSECURE",
    "GOFLAGS",
    "COREPACK_HOME",
];

/// Prefixes of host tool settings passed through (pip, uv, npm, Yarn, pnpm, Cargo
/// registries and network settings).
pub const HOST_TOOL_PREFIXES: [&str; 9] = [
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

/// Layer sub-directories that extend path variables while buildpacks run.
pub const BUILD_ROOT_DIRS: [(&str, &[&str]); 4] = [
    ("bin", &["PATH"]),
    ("lib", &["LD_LIBRARY_PATH", "LIBRARY_PATH"]),
    ("include", &["CPATH"]),
    ("pkgconfig", &["PKG_CONFIG_PATH"]),
];

/// Layer sub-directories that extend path variables when the app runs.
pub const LAUNCH_ROOT_DIRS: [(&str, &[&str]); 2] =
    [("bin", &["PATH"]), ("lib", &["LD_LIBRARY_PATH"])];

/// What an env file without a suffix does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// Buildpack layers: override.
    Override,
    /// The operator's build-config env: default.
    Default,
}

/// Errors reading env files.
#[derive(Debug, thiserror::Error)]
#[error("failed to apply env files from {dir}")]
pub struct EnvDirError {
    /// The directory.
    pub dir: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// A set of environment variables, ordered by name so that everything derived from it is
/// deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The build environment's starting point: only the pass-through variables (the
    /// lifecycle's, then the host tools'), and the path variables of `host` survive.
    pub fn for_build<I, K, V>(host: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let keep = |k: &str| {
            BUILD_ENV_PASSTHROUGH.contains(&k)
                || HOST_TOOL_PASSTHROUGH.contains(&k)
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

    /// Parses `NAME=value` entries (an image config's `Env`). Entries without `=` are kept
    /// with an empty value.
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Self {
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
    pub fn get(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", String::as_str)
    }

    /// Whether `name` is set (possibly to the empty string).
    pub fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Sets `name`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `NAME=value` strings in name order (an image config's `Env`).
    pub fn to_list(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// For each `(sub-directory, variables)` in `roots` that exists under `host_dir`, prepends
    /// `guest_dir/<sub-directory>` to the variables with `:`.
    ///
    /// `host_dir` is where kiln sees the layer; `guest_dir` is where buildpacks and the app
    /// see it (`/layers/<buildpack>/<layer>`).
    pub fn add_root_dir(&mut self, host_dir: &Path, guest_dir: &Path, roots: &[(&str, &[&str])]) {
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
    pub fn add_env_dir(&mut self, dir: &Path, default: DefaultAction) -> Result<(), EnvDirError> {
        let err = |source| EnvDirError {
            dir: dir.to_path_buf(),
            source,
        };
        for (file_name, value) in read_env_files(dir).map_err(err)? {
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
                    let delim = read_delim(dir, name).map_err(err)?.unwrap_or_default();
                    let v = join_prefix(&value, &delim, self.get(name));
                    self.set(name, v);
                }
                "append" => {
                    let delim = read_delim(dir, name).map_err(err)?.unwrap_or_default();
                    let v = join_suffix(self.get(name), &delim, &value);
                    self.set(name, v);
                }
                "override" => self.set(name, value),
                "default" if self.get(name).is_empty() => self.set(name, value),
                "" => {
                    let delim = read_delim(dir, name)
                        .map_err(err)?
                        .unwrap_or_else(|| ":".to_string());
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
    pub fn with_user_env(&self, user: &BTreeMap<String, String>, roots: &[(&str, &[&str])]) -> Env {
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

fn read_delim(dir: &Path, name: &str) -> io::Result<Option<String>> {
    match fs::read(dir.join(format!("{name}.delim"))) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads the files of an env directory in file-name order, skipping directories and
/// symlinks to directories. A missing directory yields nothing.
fn read_env_files(dir: &Path) -> io::Result<Vec<(String, String)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        // `metadata` follows symlinks: a symlink to a directory is skipped like a directory.
        if fs::metadata(&path)?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let value = String::from_utf8_lossy(&fs::read(&path)?).into_owned();
        files.push((name, value));
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(files)
}

#[cfg(test)]
mod tests {
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
