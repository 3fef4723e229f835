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
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where buildpacks see their layers directory.
pub(crate) const LAYERS_DIR: &str = "/layers";
/// Where buildpacks (and the image) see the app.
pub(crate) const APP_DIR: &str = "/workspace";
/// Where buildpacks see the platform directory.
pub(crate) const PLATFORM_DIR: &str = "/platform";
/// Where buildpacks see buildpack directories.
pub(crate) const BUILDPACKS_DIR: &str = "/cnb/buildpacks";
/// Where buildpacks see the build's plan files (`plan.toml` of detect and build).
pub(crate) const PLANS_DIR: &str = "/cnb/plans";

/// The path inside the sandbox of `host`, a file under the build's plans directory
/// `plans` (bound at [`PLANS_DIR`]).
pub(crate) fn guest_plan_path(plans: &Path, host: &Path) -> PathBuf {
    host.strip_prefix(plans)
        .map_or_else(|_| host.to_path_buf(), |rel| Path::new(PLANS_DIR).join(rel))
}

/// How buildpack executables are run. See the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildEnvironment {
    /// On the host file system, in a private mount namespace that puts the build's
    /// directories at the CNB paths.
    Host,
    /// In a build image (`BuildOptions::build_image`, else the stack's build flavour with
    /// the group's toolchain), the default:
    /// buildpacks run with its file system, unpacked, as their root, read-only but for the
    /// CNB directories and a fresh `/tmp`. Nothing of the host is visible but the
    /// directories bound in, the DNS and CA files, and the kiln executable at
    /// `/cnb/kiln` (which runs the built-in buildpacks).
    #[default]
    Image,
}

/// Errors preparing the build environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildEnvError {
    /// The build image could not be made ready.
    #[error("cannot prepare the build image {reference}")]
    Image {
        /// The build image.
        reference: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
        "cannot set up the private mount namespace buildpacks run in; if unprivileged user namespaces are disabled here, enable them (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0; on Ubuntu 24.04, sysctl kernel.apparmor_restrict_unprivileged_userns=0) or run kiln as root; in a container or a CI pod that denies namespaces, run kiln in a builder image made by `kiln builder create`, where it runs buildpacks directly"
    )]
    Unavailable {
        /// The error creating it.
        #[source]
        source: io::Error,
    },
}

/// A bind mount made inside the namespace.
#[derive(Debug, Clone)]
struct Bind {
    source: CString,
    target: CString,
    /// The CNB directories must be there; a host entry that cannot be bound (a stale FUSE
    /// mount, say) is left empty rather than failing every buildpack.
    required: bool,
    /// Remounted read-only (a build image's tree).
    readonly: bool,
}

/// A host path covered inside the sandbox (see [`SandboxMounts::hidden`]).
#[derive(Debug, Clone)]
struct Hide {
    /// The path inside the sandbox root, as seen before `chroot`.
    target: CString,
    /// A directory (covered by a tmpfs) or a file (covered by `/dev/null`).
    dir: bool,
}

/// A prepared sandbox root; [`HostSandbox::command`] makes commands that run inside it.
#[derive(Debug)]
pub struct HostSandbox {
    root: CString,
    binds: Vec<Bind>,
    hides: Vec<Hide>,
    /// Where a fresh tmpfs goes (`/tmp` of a build image).
    tmp: Option<CString>,
    /// No namespaces: kiln runs in a builder image, whose file system is the build image and
    /// whose CNB directories are at their own paths ([`HostSandbox::direct`]).
    direct: bool,
}

/// What the sandbox maps: `(host directory, guest path)` pairs, and what it hides.
#[derive(Debug, Clone, Default)]
pub struct SandboxMounts {
    /// `(host, guest)` directory pairs; guests must be absolute.
    pub dirs: Vec<(PathBuf, PathBuf)>,
    /// Host paths buildpacks must not see (kiln's home, registry credential files): each
    /// directory is covered by an empty read-only tmpfs, each file by an empty one. Missing
    /// paths are skipped.
    pub hidden: Vec<PathBuf>,
    /// The root file system buildpacks run in (a build image, unpacked): its top-level
    /// entries are bound read-only in place of the host's, with `/tmp` a fresh tmpfs, the
    /// host's `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom` and
    /// `/dev/tty`, and the host's `/etc/resolv.conf`, `/etc/hosts` and CA bundle (where the
    /// image has them). `None`: the host's own.
    pub rootfs: Option<PathBuf>,
    /// `(host file, guest path)` pairs bound read-only (e.g. the kiln executable that runs
    /// the built-in buildpacks).
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// Host files a build image root gets, where the image has a file there.
const HOST_FILES: [&str; 9] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/ssl/certs/ca-certificates.crt",
];

impl SandboxMounts {
    /// Hides kiln's home (`home`: the store, caches and records) and every registry
    /// credential file kiln may read: `REGISTRY_AUTH_FILE`,
    /// `$XDG_RUNTIME_DIR/containers`, `~/.config/containers`, `$DOCKER_CONFIG` and
    /// `~/.docker`.
    pub fn hide_kiln_state(&mut self, home: &Path) {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        self.hidden.push(home.to_path_buf());
        self.hidden.extend(var("REGISTRY_AUTH_FILE"));
        self.hidden
            .extend(var("XDG_RUNTIME_DIR").map(|d| d.join("containers")));
        self.hidden.extend(var("DOCKER_CONFIG"));
        if let Some(user_home) = var("HOME") {
            self.hidden.push(user_home.join(".docker"));
            self.hidden.push(user_home.join(".config/containers"));
        }
    }
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
        let base = mounts.rootfs.as_deref().unwrap_or(Path::new("/"));
        let readonly = mounts.rootfs.is_some();
        let mut entries: Vec<_> = fs::read_dir(base)
            .map_err(prep(base))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            if reserved.contains(&name.as_os_str()) {
                continue;
            }
            // The host's /proc stays until each buildpack mounts its own over it: kiln writes
            // the id maps of the buildpack's user namespace through it.
            let host_proc = readonly && name == "proc";
            let host = if host_proc {
                PathBuf::from("/proc")
            } else {
                base.join(&name)
            };
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
                required: readonly,
                readonly: readonly && !host_proc,
            });
        }
        binds.extend(file_binds(root, mounts)?);
        for (host, guest) in &mounts.dirs {
            let relative = guest.strip_prefix("/").unwrap_or(guest);
            let inside = root.join(relative);
            fs::create_dir_all(&inside).map_err(prep(&inside))?;
            binds.push(Bind {
                source: cstring(host)?,
                target: cstring(&inside)?,
                required: true,
                readonly: false,
            });
        }
        // A build image shows nothing of the host to hide.
        let hides = if readonly {
            Vec::new()
        } else {
            covers(root, &mounts.hidden)?
        };
        let tmp = if readonly {
            Some(cstring(&root.join("tmp"))?)
        } else {
            None
        };
        let sandbox = Self {
            root: cstring(root)?,
            binds,
            hides,
            tmp,
            direct: false,
        };
        sandbox.probe(base)?;
        Ok(sandbox)
    }

    /// Runs `true` in the sandbox once, so that a host where the namespace cannot be made
    /// fails with an explanation instead of with every buildpack's spawn error.
    fn probe(&self, base: &Path) -> Result<(), BuildEnvError> {
        let program = ["/usr/bin/true", "/bin/true"]
            .into_iter()
            .map(Path::new)
            .find(|p| base.join(p.strip_prefix("/").unwrap_or(p)).exists());
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

    /// No sandbox: buildpacks run as kiln's own children, in kiln's file system. Only for a
    /// builder image (see `kiln builder create`), which *is* the build image and has the CNB
    /// directories at their paths; the container engine isolates the build from the host.
    pub fn direct() -> Self {
        Self {
            root: c"/".to_owned(),
            binds: Vec::new(),
            hides: Vec::new(),
            tmp: None,
            direct: true,
        }
    }

    /// A command running `program` (a path as seen inside the sandbox) with working
    /// directory `cwd` (also inside), with an empty environment.
    pub fn command(&self, program: &Path, cwd: &Path) -> Result<Command, BuildEnvError> {
        let mut command = Command::new(program);
        command.env_clear();
        if self.direct {
            command.current_dir(cwd);
            return Ok(command);
        }
        let is_root = nix::unistd::geteuid().is_root();
        let own_map = |id: u32| format!("{id} {id} 1\n").into_bytes();
        let plan = NamespacePlan {
            root: self.root.clone(),
            binds: self.binds.clone(),
            hides: self.hides.clone(),
            tmp: self.tmp.clone(),
            cwd: cstring(cwd)?,
            uid_map: own_map(nix::unistd::getuid().as_raw()),
            gid_map: own_map(nix::unistd::getgid().as_raw()),
            // As root, the inner user namespace maps every id to itself: buildpacks keep
            // root's view of file ownership (tar may chown), but their capabilities stop at
            // that namespace, so the mounts below are locked for them.
            inner_uid_map: if is_root {
                b"0 0 4294967295\n".to_vec()
            } else {
                own_map(nix::unistd::getuid().as_raw())
            },
            inner_gid_map: if is_root {
                b"0 0 4294967295\n".to_vec()
            } else {
                own_map(nix::unistd::getgid().as_raw())
            },
            is_root,
            tmpfs_options: c"mode=0755,size=4k,nr_inodes=2".to_owned(),
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
    binds: Vec<Bind>,
    hides: Vec<Hide>,
    tmp: Option<CString>,
    cwd: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    inner_uid_map: Vec<u8>,
    inner_gid_map: Vec<u8>,
    is_root: bool,
    tmpfs_options: CString,
}

impl NamespacePlan {
    /// Runs in the child (before `exec`), in three steps:
    ///
    /// 1. a mount namespace (in a user namespace unless kiln is root) where the sandbox root
    ///    gets the host's tree, the CNB directories and the covers over kiln's state, then
    ///    becomes the root (`pivot_root`, the host's root detached);
    /// 2. a second user namespace with new mount and PID namespaces: mounts copied into a
    ///    less privileged namespace are locked, so a buildpack cannot unmount the covers,
    ///    and kiln's process is not in its PID namespace;
    /// 3. a fork: the child becomes PID 1 of the new PID namespace, mounts a fresh `/proc`
    ///    (only its own processes are there) and returns to `exec` the buildpack; this
    ///    process waits for it and exits as it did. When PID 1 exits the kernel kills every
    ///    process left in the namespace, so nothing a buildpack starts outlives it, and if
    ///    this process is killed (cancellation), the child gets `SIGKILL`.
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
        // The root becomes a mount point of its own, so that it can be pivoted to.
        mount(
            Some(self.root.as_c_str()),
            self.root.as_c_str(),
            none,
            MsFlags::MS_BIND,
            none,
        )
        .map_err(errno)?;
        for bind in &self.binds {
            let bound = mount(
                Some(bind.source.as_c_str()),
                bind.target.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            );
            if bind.required {
                bound.map_err(errno)?;
            }
        }
        remount_readonly(&self.binds)?;
        // The fresh /tmp goes on top of the read-only tree.
        if let Some(tmp) = &self.tmp {
            mount(
                Some(c"tmpfs"),
                tmp.as_c_str(),
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(c"mode=1777"),
            )
            .map_err(errno)?;
        }
        for hide in &self.hides {
            let covered = if hide.dir {
                mount(
                    Some(c"kiln-hidden"),
                    hide.target.as_c_str(),
                    Some(c"tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some(self.tmpfs_options.as_c_str()),
                )
            } else {
                mount(
                    Some(c"/dev/null"),
                    hide.target.as_c_str(),
                    none,
                    MsFlags::MS_BIND,
                    none,
                )
            };
            // A cover that cannot be made must stop the build: buildpacks would see it.
            covered.map_err(errno)?;
        }
        // pivot_root, not chroot: the host's root is detached from this namespace, so
        // nothing (not even a process with CAP_SYS_CHROOT in its namespace) can walk back to
        // the uncovered paths; and a user namespace can only be made outside a chroot.
        nix::unistd::chdir(self.root.as_c_str()).map_err(errno)?;
        nix::unistd::pivot_root(c".", c".").map_err(errno)?;
        nix::mount::umount2(c".", nix::mount::MntFlags::MNT_DETACH).map_err(errno)?;
        nix::unistd::chdir(self.cwd.as_c_str()).map_err(errno)?;

        self.enter_inner()
    }

    /// Steps 2 and 3: this process (C1) forks C2, which makes the inner namespaces and
    /// waits while C1 writes its id maps from outside (mapping more than one's own id must
    /// be done from the parent namespace); C2 then forks C3, PID 1 of the new PID
    /// namespace, which returns to `exec` the buildpack. C1 and C2 close every descriptor
    /// but the standard ones (among them the pipe `Command::spawn` waits on for `exec`),
    /// wait for their child and exit as it did.
    fn enter_inner(&self) -> io::Result<()> {
        use nix::sched::{CloneFlags, unshare};
        use nix::unistd::{ForkResult, fork, pipe2};

        let errno = |e: nix::errno::Errno| io::Error::from_raw_os_error(e as i32);
        let (unshared_r, unshared_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno)?;
        let (mapped_r, mapped_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno)?;
        // SAFETY: this process is the single-threaded child of `Command::spawn`; both sides
        // of the fork only make system calls on data prepared before the first fork.
        #[allow(unsafe_code)]
        match unsafe { fork() }.map_err(errno)? {
            ForkResult::Child => {
                drop(unshared_r);
                drop(mapped_w);
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(errno)?;
                unshare(
                    CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID,
                )
                .map_err(errno)?;
                nix::unistd::write(&unshared_w, b"u").map_err(errno)?;
                drop(unshared_w);
                let mut byte = [0u8];
                if nix::unistd::read(&mapped_r, &mut byte).map_err(errno)? != 1 {
                    return Err(io::Error::other("the user namespace was not mapped"));
                }
                drop(mapped_r);
                let (signal_r, signal_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno)?;
                // SAFETY: as above.
                #[allow(unsafe_code)]
                match unsafe { fork() }.map_err(errno)? {
                    ForkResult::Child => {
                        // C3, PID 1 of the namespace: the buildpack runs as its child (PID 2),
                        // so that signals it sends itself work as anywhere else (PID 1
                        // ignores those it has no handler for). C3 passes a signal that
                        // killed the buildpack to C2 through `signal_w` (PID 1 cannot die
                        // of one it raises itself).
                        drop(signal_r);
                        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                            .map_err(errno)?;
                        hide_inherited_memory();
                        mount_fresh_proc();
                        // SAFETY: as above.
                        #[allow(unsafe_code)]
                        match unsafe { fork() }.map_err(errno)? {
                            ForkResult::Child => {
                                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                                    .map_err(errno)?;
                                Ok(())
                            }
                            ForkResult::Parent { child } => {
                                wait_and_exit_as(child, None, Some(signal_w.as_raw_fd()))
                            }
                        }
                    }
                    ForkResult::Parent { child } => {
                        drop(signal_w);
                        wait_and_exit_as(child, Some(signal_r.as_raw_fd()), None)
                    }
                }
            }
            ForkResult::Parent { child } => {
                drop(unshared_w);
                drop(mapped_r);
                let mut byte = [0u8];
                if nix::unistd::read(&unshared_r, &mut byte) == Ok(1) {
                    let mut path = ProcPath::new(child.as_raw());
                    if !self.is_root {
                        let _ = write_proc(path.file(b"setgroups"), b"deny");
                    }
                    if write_proc(path.file(b"uid_map"), &self.inner_uid_map).is_ok()
                        && write_proc(path.file(b"gid_map"), &self.inner_gid_map).is_ok()
                    {
                        let _ = nix::unistd::write(&mapped_w, b"m");
                    }
                }
                drop(mapped_w);
                drop(unshared_r);
                wait_and_exit_as(child, None, None)
            }
        }
    }
}

/// `/proc/<pid>/<file>` built without allocating (the forked child must not).
struct ProcPath {
    buf: [u8; 64],
    dir_len: usize,
}

impl ProcPath {
    fn new(pid: i32) -> Self {
        let mut buf = [0u8; 64];
        buf[..6].copy_from_slice(b"/proc/");
        let mut digits = [0u8; 12];
        let mut n = pid.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[6 + i] = digits[len - 1 - i];
        }
        buf[6 + len] = b'/';
        Self {
            buf,
            dir_len: 7 + len,
        }
    }

    /// The path of `file` (ASCII, short) in the process's directory, NUL-terminated.
    fn file(&mut self, file: &[u8]) -> &std::ffi::CStr {
        let end = self.dir_len + file.len();
        self.buf[self.dir_len..end].copy_from_slice(file);
        self.buf[end] = 0;
        std::ffi::CStr::from_bytes_with_nul(&self.buf[..=end]).unwrap_or(c"/proc/self/none")
    }
}

/// C3 is a fork of kiln and visible to the buildpack as PID 1: its memory (kiln's command
/// line with `--creds`, its environment with `KILN_REGISTRY_AUTH`, its heap) must not be
/// readable. Not dumpable, `/proc/1/environ`, `mem` and `fd` need `CAP_SYS_PTRACE` in kiln's
/// own user namespace, which buildpacks never have; `/proc/1/cmdline` is readable by anyone,
/// so the command line and environment strings are overwritten with zeros (this is the
/// fork's own copy; kiln's is untouched).
fn hide_inherited_memory() {
    let _ = nix::sys::prctl::set_dumpable(false);
    let mut buf = [0u8; 1024];
    let Ok(fd) = nix::fcntl::open(
        c"/proc/self/stat",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return;
    };
    let Ok(len) = nix::unistd::read(&fd, &mut buf) else {
        return;
    };
    drop(fd);
    let stat = &buf[..len];
    // Fields after the command name (which may hold spaces): `state` is field 3, then
    // arg_start, arg_end, env_start, env_end are fields 48 to 51 (proc_pid_stat(5)).
    let Some(close) = stat.iter().rposition(|b| *b == b')') else {
        return;
    };
    let mut fields = [0usize; 4];
    for (i, token) in stat[close + 1..]
        .split(|b| *b == b' ' || *b == b'\n')
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        if (45..49).contains(&i) {
            let mut n: usize = 0;
            for d in token {
                n = n
                    .saturating_mul(10)
                    .saturating_add(usize::from(d.wrapping_sub(b'0')));
            }
            fields[i - 45] = n;
        }
    }
    for (start, end) in [(fields[0], fields[1]), (fields[2], fields[3])] {
        if start != 0 && end > start && end - start < (1 << 24) {
            // SAFETY: the kernel reports these ranges as this process's argument and
            // environment strings, mapped and writable (they are on its stack).
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write_bytes(start as *mut u8, 0, end - start);
            }
        }
    }
}

/// The covers over `hidden` host paths inside `root` (see [`SandboxMounts::hidden`]).
fn covers(root: &Path, hidden: &[PathBuf]) -> Result<Vec<Hide>, BuildEnvError> {
    let mut hides = Vec::new();
    for host in hidden {
        // Only what exists is covered; a path through a link is covered where it leads
        // (the bind mounts show the host's tree, links and all).
        let Ok(host) = fs::canonicalize(host) else {
            continue;
        };
        let Ok(meta) = fs::metadata(&host) else {
            continue;
        };
        let relative = host.strip_prefix("/").unwrap_or(&host);
        hides.push(Hide {
            target: cstring(&root.join(relative))?,
            dir: meta.is_dir(),
        });
    }
    Ok(hides)
}

/// The binds of single files: the host's devices, DNS and CA files in a build image root
/// (where the image has a file there), and [`SandboxMounts::files`].
fn file_binds(root: &Path, mounts: &SandboxMounts) -> Result<Vec<Bind>, BuildEnvError> {
    let prep = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildEnvError::Prepare { path, source }
    };
    let mut binds = Vec::new();
    if let Some(rootfs) = &mounts.rootfs {
        for file in HOST_FILES {
            let relative = &file[1..];
            if Path::new(file).exists() && rootfs.join(relative).is_file() {
                binds.push(Bind {
                    source: cstring(Path::new(file))?,
                    target: cstring(&root.join(relative))?,
                    required: true,
                    readonly: false,
                });
            }
        }
    }
    for (host, guest) in &mounts.files {
        let relative = guest.strip_prefix("/").unwrap_or(guest);
        let inside = root.join(relative);
        if let Some(parent) = inside.parent() {
            fs::create_dir_all(parent).map_err(prep(parent))?;
        }
        if fs::symlink_metadata(&inside).is_err() {
            fs::write(&inside, b"").map_err(prep(&inside))?;
        }
        binds.push(Bind {
            source: cstring(host)?,
            target: cstring(&inside)?,
            required: true,
            readonly: true,
        });
    }
    Ok(binds)
}

/// Remounts the read-only binds (a build image's tree) read-only, after the binds that go
/// on top of them; the flags a mount already has (nosuid, nodev, noexec) must be kept, or
/// the kernel refuses the remount.
fn remount_readonly(binds: &[Bind]) -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    use nix::sys::statvfs::FsFlags;
    let none: Option<&std::ffi::CStr> = None;
    for bind in binds.iter().filter(|b| b.readonly) {
        let kept =
            nix::sys::statvfs::statvfs(bind.target.as_c_str()).map_or(MsFlags::empty(), |v| {
                let mut flags = MsFlags::empty();
                for (have, keep) in [
                    (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                    (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                    (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                ] {
                    if v.flags().contains(have) {
                        flags |= keep;
                    }
                }
                flags
            });
        mount(
            none,
            bind.target.as_c_str(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept,
            none,
        )
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    }
    Ok(())
}

/// Mounts a `/proc` showing only the new PID namespace. Where that is refused (a container
/// whose `/proc` has masked paths), an empty tmpfs covers the host's `/proc` instead, so
/// kiln's process is still out of sight.
fn mount_fresh_proc() {
    use nix::mount::{MsFlags, mount};
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let none: Option<&std::ffi::CStr> = None;
    if mount(Some(c"proc"), c"/proc", Some(c"proc"), flags, none).is_err() {
        let _ = mount(
            Some(c"kiln-hidden"),
            c"/proc",
            Some(c"tmpfs"),
            flags | MsFlags::MS_RDONLY,
            Some(c"mode=0555,size=4k"),
        );
    }
}

/// In an intermediate process: closes its copies of the output pipes and every other
/// descriptor but `signal_in`/`signal_out`, waits for `child` and exits as it did. A child
/// killed by a signal is re-raised here, or, with `signal_out` (PID 1, which cannot die of a
/// signal it raises), written there for the parent to raise; a child that exited reporting a
/// signal on `signal_in` is re-raised too.
fn wait_and_exit_as(
    child: nix::unistd::Pid,
    signal_in: Option<RawFd>,
    signal_out: Option<RawFd>,
) -> ! {
    use nix::sys::wait::{WaitStatus, waitpid};
    for fd in 0..3 {
        // SAFETY: closing a descriptor number takes no pointers.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::close(fd);
        }
    }
    let mut keep = [signal_in.unwrap_or(-1), signal_out.unwrap_or(-1)];
    keep.sort_unstable();
    let mut from = 3;
    for fd in keep.into_iter().filter(|fd| *fd >= 3) {
        close_range(from, fd - 1);
        from = fd + 1;
    }
    close_range(from, RawFd::MAX);
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                if let Some(byte) = signal_in.and_then(read_byte)
                    && let Ok(sig) = nix::sys::signal::Signal::try_from(i32::from(byte))
                {
                    raise(sig);
                }
                exit_now(code)
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                if let Some(fd) = signal_out {
                    write_byte(fd, u8::try_from(sig as i32).unwrap_or(0));
                    exit_now(128 + sig as i32);
                }
                raise(sig);
            }
            Err(nix::errno::Errno::EINTR) | Ok(_) => {}
            Err(_) => exit_now(127),
        }
    }
}

/// Reads one byte from the pipe `fd` (without allocating).
fn read_byte(fd: RawFd) -> Option<u8> {
    let mut byte = [0u8];
    // SAFETY: `fd` is this process's open pipe and `byte` outlives the call.
    #[allow(unsafe_code)]
    let read = unsafe { nix::libc::read(fd, byte.as_mut_ptr().cast(), 1) };
    (read == 1).then_some(byte[0])
}

/// Writes one byte to the pipe `fd` (without allocating).
fn write_byte(fd: RawFd, byte: u8) {
    let byte = [byte];
    // SAFETY: `fd` is this process's open pipe and `byte` outlives the call.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::write(fd, byte.as_ptr().cast(), 1);
    }
}

/// Ends this process with `sig` (its default action), else with `128 + sig`.
fn raise(sig: nix::sys::signal::Signal) -> ! {
    use nix::sys::signal::{SigHandler, kill, signal};
    // SAFETY: restoring the default action is async-signal-safe.
    #[allow(unsafe_code)]
    let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    let _ = kill(nix::unistd::getpid(), sig);
    exit_now(128 + sig as i32)
}

/// Closes the descriptors `first..=last` (nothing when `first > last`).
fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    let (Ok(lo), Ok(hi)) = (u32::try_from(first), u32::try_from(last)) else {
        return;
    };
    // SAFETY: close_range takes no pointers.
    #[allow(unsafe_code)]
    let closed = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, lo, hi, 0u32) };
    if closed != 0 {
        for fd in first..last.min(4096) {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::close(fd);
            }
        }
    }
}

/// `_exit(2)`: ends the forked process without running the parent's exit handlers.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::_exit(code)
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
pub(crate) fn buildpack_guest_dir(escaped_id: &str, version: &str) -> PathBuf {
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
                ..SandboxMounts::default()
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

    /// S5 and B8 of issue 12: buildpacks see only their own processes, not kiln's state,
    /// cannot uncover it, and leave nothing running behind them.
    #[test]
    fn commands_see_neither_kiln_nor_its_state_and_leave_nothing_behind() {
        let work = tempfile::tempdir().unwrap();
        let layers = work.path().join("layers");
        let secret = work.path().join("home");
        fs::create_dir_all(&layers).unwrap();
        fs::create_dir_all(&secret).unwrap();
        fs::write(secret.join("creds"), "secret-token").unwrap();
        let sandbox = HostSandbox::prepare(
            &work.path().join("root"),
            &SandboxMounts {
                dirs: vec![(layers.clone(), PathBuf::from(LAYERS_DIR))],
                hidden: vec![secret.clone()],
                ..SandboxMounts::default()
            },
        )
        .unwrap();
        let script = format!(
            "ls /proc | grep -c '^[0-9]'; cat {0}/creds; umount {0} 2>/dev/null || echo locked; \
             tr '\\0' ' ' < /proc/$$/cmdline; echo; cat /proc/1/cmdline /proc/1/environ 2>/dev/null | tr -d '\\0'; echo; (sleep 1; touch /layers/late) & exit 0",
            secret.display()
        );
        let start = std::time::Instant::now();
        let out = sandbox
            .command(Path::new("/bin/sh"), Path::new("/"))
            .unwrap()
            .args(["-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(!stdout.contains("secret-token"), "{stdout}");
        assert!(stdout.contains("locked"), "{stdout}");
        let mut lines = stdout.lines();
        let pids: usize = lines.next().unwrap().trim().parse().unwrap();
        assert!(pids <= 4, "the sandbox sees {pids} processes:\n{stdout}");
        assert!(
            stdout.contains("/bin/sh -c"),
            "PID 1 is the command: {stdout}"
        );
        assert!(start.elapsed() < std::time::Duration::from_millis(900));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            !layers.join("late").exists(),
            "a background process outlived the command"
        );
        assert_eq!(
            fs::read_to_string(secret.join("creds")).unwrap(),
            "secret-token"
        );
    }

    #[test]
    fn exit_codes_and_signals_pass_through() {
        let work = tempfile::tempdir().unwrap();
        let sandbox =
            HostSandbox::prepare(&work.path().join("root"), &SandboxMounts::default()).unwrap();
        let run = |script: &str| {
            sandbox
                .command(Path::new("/bin/sh"), Path::new("/"))
                .unwrap()
                .args(["-c", script])
                .status()
                .unwrap()
        };
        assert_eq!(run("exit 7").code(), Some(7));
        // Killing the process group (kiln's cancellation) ends the command at once.
        let mut child = sandbox
            .command(Path::new("/bin/sh"), Path::new("/"))
            .unwrap()
            .args(["-c", "sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let start = std::time::Instant::now();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&child.wait().unwrap()),
            Some(9)
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn an_unusable_sandbox_is_reported_when_prepared() {
        let work = tempfile::tempdir().unwrap();
        let err = HostSandbox::prepare(
            &work.path().join("root"),
            &SandboxMounts {
                dirs: vec![(work.path().join("missing"), PathBuf::from(LAYERS_DIR))],
                ..SandboxMounts::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, BuildEnvError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("user namespaces"));
    }
}
#[cfg(test)]
mod rootfs_tests {
    use super::*;

    #[test]
    fn commands_run_in_a_build_image_root() {
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        for d in ["bin", "dev", "proc", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        for f in [
            "dev/null",
            "dev/zero",
            "dev/full",
            "dev/random",
            "dev/urandom",
            "dev/tty",
            "etc/hosts",
            "etc/resolv.conf",
        ] {
            fs::write(rootfs.join(f), "").unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();

        let layers = work.path().join("layers");
        fs::create_dir_all(&layers).unwrap();
        let sandbox = HostSandbox::prepare(
            &work.path().join("root"),
            &SandboxMounts {
                dirs: vec![(layers.clone(), PathBuf::from(LAYERS_DIR))],
                rootfs: Some(rootfs.clone()),
                ..SandboxMounts::default()
            },
        )
        .unwrap();
        let out = sandbox
            .command(Path::new("/bin/sh"), Path::new("/"))
            .unwrap()
            .args(["-c", "echo hi > /layers/f; echo x > /tmp/x && echo tmp; touch /bin/no 2>/dev/null || echo ro; test -e /usr || test -e /work || echo hidden; ls /proc | grep -c '^[0-9]'"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[..3], ["tmp", "ro", "hidden"], "{stdout}");
        assert!(lines[3].parse::<usize>().unwrap() <= 4, "{stdout}");
        assert!(!rootfs.join("tmp/x").exists() && !rootfs.join("bin/no").exists());
        assert_eq!(fs::read_to_string(layers.join("f")).unwrap(), "hi\n");
    }
}
