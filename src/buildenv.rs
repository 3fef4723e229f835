//! Where buildpack executables run.
//!
//! Buildpacks write absolute paths everywhere — into env files (`$CNB_LAYERS_DIR/...`),
//! `launch.toml` commands, script shebangs, virtualenvs — and those paths must be the ones
//! the image will have: `/layers/<buildpack>/<layer>` and `/workspace`. kiln's default
//! [`BuildEnvironment::Host`] therefore runs each buildpack process on the host's own file
//! system (its compilers, runtimes and caches, as ko and jib do) but inside a private mount
//! namespace whose root is a fresh directory holding:
//!
//! - a recursive bind mount of every top-level entry of the host's `/` (symlinks such as
//!   `/bin -> usr/bin` are recreated), except the CNB names below;
//! - `/layers`, `/workspace` and `/platform` bound to the build's scratch directories;
//! - `/cnb/buildpacks/<escaped id>/<version>` bound to each buildpack's directory.
//!
//! This needs no privileges: as an ordinary user kiln creates a user namespace that maps
//! only the caller's own uid and gid (so buildpacks run as the caller); as root it creates
//! just the mount namespace, falling back to a user namespace if `CAP_SYS_ADMIN` is missing.
//! Unprivileged user namespaces must be enabled (they are by default on Debian, Ubuntu,
//! Fedora and in GitHub Actions runners). A hermetic mode that runs the build inside the
//! stack's build image is a later addition to [`BuildEnvironment`].

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where buildpacks see their layers directory.
pub const LAYERS_DIR: &str = "/layers";
/// Where buildpacks (and the image) see the app.
pub const APP_DIR: &str = "/workspace";
/// Where buildpacks see the platform directory.
pub const PLATFORM_DIR: &str = "/platform";
/// Where buildpacks see buildpack directories.
pub const BUILDPACKS_DIR: &str = "/cnb/buildpacks";

/// How buildpack executables are run. See the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildEnvironment {
    /// On the host file system, in a private mount namespace that puts the build's
    /// directories at the CNB paths.
    #[default]
    Host,
}

/// Errors preparing the build environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildEnvError {
    /// The sandbox root could not be prepared.
    #[error("failed to prepare the build sandbox at {path}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A path contains a NUL byte.
    #[error("path {path} contains a NUL byte")]
    NulInPath {
        /// The path.
        path: PathBuf,
    },
    /// The namespace buildpacks run in cannot be created here.
    #[error(
        "cannot set up the private mount namespace buildpacks run in; if unprivileged user namespaces are disabled here, enable them (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0; in a container, allow the unshare system call) or run kiln as root"
    )]
    Unavailable {
        /// The error creating it.
        #[source]
        source: io::Error,
    },
}

/// A bind mount made inside the namespace.
#[derive(Debug)]
struct Bind {
    source: CString,
    target: CString,
    /// The CNB directories must be there; a host entry that cannot be bound (a stale FUSE
    /// mount, say) is left empty rather than failing every buildpack.
    required: bool,
}

/// A prepared sandbox root; [`HostSandbox::command`] makes commands that run inside it.
#[derive(Debug)]
pub struct HostSandbox {
    root: CString,
    binds: Vec<Bind>,
}

/// What the sandbox maps: `(host directory, guest path)` pairs.
#[derive(Debug, Clone, Default)]
pub struct SandboxMounts {
    /// `(host, guest)` directory pairs; guests must be absolute.
    pub dirs: Vec<(PathBuf, PathBuf)>,
}

impl HostSandbox {
    /// Prepares `root` (an empty directory kiln owns) as the root of the sandbox.
    ///
    /// Only directories are created here; the mounts happen in each child process, in its
    /// own namespace, and vanish with it.
    pub fn prepare(root: &Path, mounts: &SandboxMounts) -> Result<Self, BuildEnvError> {
        let prep = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildEnvError::Prepare { path, source }
        };
        fs::create_dir_all(root).map_err(prep(root))?;
        let reserved: Vec<&OsStr> = mounts
            .dirs
            .iter()
            .filter_map(|(_, guest)| {
                guest
                    .components()
                    .nth(1)
                    .map(std::path::Component::as_os_str)
            })
            .collect();
        let mut binds = Vec::new();
        let mut entries: Vec<_> = fs::read_dir("/")
            .map_err(prep(Path::new("/")))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            if reserved.contains(&name.as_os_str()) {
                continue;
            }
            let host = Path::new("/").join(&name);
            let inside = root.join(&name);
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_symlink() {
                let target = fs::read_link(&host).map_err(prep(&host))?;
                if fs::symlink_metadata(&inside).is_err() {
                    std::os::unix::fs::symlink(&target, &inside).map_err(prep(&inside))?;
                }
                continue;
            }
            if file_type.is_dir() {
                fs::create_dir_all(&inside).map_err(prep(&inside))?;
            } else {
                fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&inside)
                    .map_err(prep(&inside))?;
            }
            binds.push(Bind {
                source: cstring(&host)?,
                target: cstring(&inside)?,
                required: false,
            });
        }
        for (host, guest) in &mounts.dirs {
            let relative = guest.strip_prefix("/").unwrap_or(guest);
            let inside = root.join(relative);
            fs::create_dir_all(&inside).map_err(prep(&inside))?;
            binds.push(Bind {
                source: cstring(host)?,
                target: cstring(&inside)?,
                required: true,
            });
        }
        let sandbox = Self {
            root: cstring(root)?,
            binds,
        };
        sandbox.probe()?;
        Ok(sandbox)
    }

    /// Runs `true` in the sandbox once, so that a host where the namespace cannot be made
    /// fails with an explanation instead of with every buildpack's spawn error.
    fn probe(&self) -> Result<(), BuildEnvError> {
        let program = ["/usr/bin/true", "/bin/true"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists());
        let Some(program) = program else {
            return Ok(());
        };
        let status = self
            .command(program, Path::new("/"))?
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|source| BuildEnvError::Unavailable { source })?;
        if status.success() {
            Ok(())
        } else {
            Err(BuildEnvError::Unavailable {
                source: io::Error::other(format!("the probe exited with {status}")),
            })
        }
    }

    /// A command running `program` (a path as seen inside the sandbox) with working
    /// directory `cwd` (also inside), with an empty environment.
    pub fn command(&self, program: &Path, cwd: &Path) -> Result<Command, BuildEnvError> {
        let mut command = Command::new(program);
        command.env_clear();
        let plan = NamespacePlan {
            root: self.root.clone(),
            binds: self
                .binds
                .iter()
                .map(|b| (b.source.clone(), b.target.clone(), b.required))
                .collect(),
            cwd: cstring(cwd)?,
            uid_map: format!("{0} {0} 1\n", nix::unistd::getuid()).into_bytes(),
            gid_map: format!("{0} {0} 1\n", nix::unistd::getgid()).into_bytes(),
            is_root: nix::unistd::geteuid().is_root(),
        };
        // SAFETY: the closure runs in the forked child before exec. It only makes system
        // calls on data prepared above (no allocation, no locks), which is what `pre_exec`
        // requires.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || plan.enter());
        }
        Ok(command)
    }
}

/// Everything the child needs, prepared before `fork`.
struct NamespacePlan {
    root: CString,
    binds: Vec<(CString, CString, bool)>,
    cwd: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    is_root: bool,
}

impl NamespacePlan {
    /// Runs in the child: new namespaces, the bind mounts, `chroot`, `chdir`.
    fn enter(&self) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        use nix::sched::{CloneFlags, unshare};

        let errno = |e: nix::errno::Errno| io::Error::from_raw_os_error(e as i32);
        let mount_ns_only = self.is_root && unshare(CloneFlags::CLONE_NEWNS).is_ok();
        if !mount_ns_only {
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(errno)?;
            write_proc(c"/proc/self/setgroups", b"deny")?;
            write_proc(c"/proc/self/uid_map", &self.uid_map)?;
            write_proc(c"/proc/self/gid_map", &self.gid_map)?;
        }
        let none: Option<&std::ffi::CStr> = None;
        mount(
            none,
            c"/",
            none,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            none,
        )
        .map_err(errno)?;
        for (source, target, required) in &self.binds {
            let bound = mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            );
            if *required {
                bound.map_err(errno)?;
            }
        }
        nix::unistd::chroot(self.root.as_c_str()).map_err(errno)?;
        nix::unistd::chdir(self.cwd.as_c_str()).map_err(errno)?;
        Ok(())
    }
}

fn write_proc(path: &std::ffi::CStr, content: &[u8]) -> io::Result<()> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    let errno = |e: nix::errno::Errno| io::Error::from_raw_os_error(e as i32);
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(errno)?;
    nix::unistd::write(&fd, content).map_err(errno)?;
    Ok(())
}

fn cstring(path: &Path) -> Result<CString, BuildEnvError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| BuildEnvError::NulInPath {
        path: path.to_path_buf(),
    })
}

/// The guest path of a buildpack's directory.
pub fn buildpack_guest_dir(escaped_id: &str, version: &str) -> PathBuf {
    Path::new(BUILDPACKS_DIR).join(escaped_id).join(version)
}

/// Converts an env var list to what `Command::envs` takes.
pub(crate) fn os_pairs<'a>(
    vars: impl Iterator<Item = (&'a str, &'a str)>,
) -> impl Iterator<Item = (OsString, OsString)> {
    vars.map(|(k, v)| (OsString::from(k), OsString::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_see_the_mapped_directories() {
        let work = tempfile::tempdir().unwrap();
        let layers = work.path().join("layers");
        fs::create_dir_all(&layers).unwrap();
        fs::write(layers.join("marker"), "here").unwrap();
        let sandbox = HostSandbox::prepare(
            &work.path().join("root"),
            &SandboxMounts {
                dirs: vec![(layers, PathBuf::from(LAYERS_DIR))],
            },
        )
        .unwrap();
        let out = sandbox
            .command(Path::new("/bin/cat"), Path::new(LAYERS_DIR))
            .unwrap()
            .arg("marker")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "here");
    }

    #[test]
    fn an_unusable_sandbox_is_reported_when_prepared() {
        let work = tempfile::tempdir().unwrap();
        let err = HostSandbox::prepare(
            &work.path().join("root"),
            &SandboxMounts {
                dirs: vec![(work.path().join("missing"), PathBuf::from(LAYERS_DIR))],
            },
        )
        .unwrap_err();
        assert!(matches!(err, BuildEnvError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("user namespaces"));
    }
}
