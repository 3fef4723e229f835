//! Installing the dependencies (and, for packaged projects, the project) with pip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr as _;

use libcnb::build::BuildContext;
use libcnb::data::layer_name;
use libcnb::layer::UncachedLayerDefinition;
use libcnb::layer_env::{LayerEnv, ModificationBehavior, Scope};

use super::pip::{self, Pip};
use super::project::{Manager, Project};
use super::uv::{self, Uv};
use super::{DEFAULT_PORT, PythonBuildpack, bytecode, locks, standalone};
use crate::common::files::{App, digest_files};
use crate::common::layers::Reuse;
use crate::common::{CnbResult, Error, Result, cmd, inventory, layers, say, warn};

/// The uv release kiln installs the dependencies with (and reads `uv.lock` with).
const UV_VERSION: &str = "0.13.9";

/// The SHA-256 of every Linux wheel of [`UV_VERSION`] kiln's stacks can use (manylinux and
/// musllinux, amd64 and arm64), as `PyPI` serves them: pip checks the wheel it downloads —
/// from whatever index the user configured — against these (`--require-hashes`).
const UV_WHEEL_SHA256: [&str; 3] = [
    // uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    // uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl
    "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
    // uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
];

/// The Python the build installs with: the build environment's `python3`, or the standalone
/// CPython kiln installed for the app (when it runs on this machine).
struct BuildPython {
    /// Its executable (`python3` from `PATH`, or the `python` layer's `bin/python3`).
    exe: PathBuf,
    /// `3.11.7`.
    version: String,
    /// `3.11`.
    minor: String,
    /// `x86_64`.
    machine: String,
    /// Its standard library (`/usr/lib/python3.11`).
    stdlib: PathBuf,
    /// Whether it has pip.
    has_pip: bool,
    /// Whether it is the standalone CPython in kiln's `python` layer: the app's own
    /// interpreter, so its standard library is the one the image runs.
    standalone: bool,
}

impl BuildPython {
    /// The standalone CPython at `standalone` when it runs on this machine (it is built for
    /// the run image's architecture), else the build environment's `python3` (which must have
    /// pip).
    fn find(standalone: Option<&Path>, target_arch: &str) -> Result<Self> {
        if let Some(exe) = standalone.filter(|_| runs_here(target_arch)) {
            return Self::probe(exe, true);
        }
        if cmd::which("python3").is_none() {
            return Err(cmd::missing(
                "python3",
                "the Python buildpack installs dependencies with its pip",
                "install Python 3 and pip (Debian: apt-get install python3 python3-pip)",
            ));
        }
        let found = Self::probe(Path::new("python3"), false)?;
        if !found.has_pip {
            return Err(cmd::missing(
                "pip",
                "the Python buildpack installs dependencies with it",
                "install pip for the host's python3 (Debian: apt-get install python3-pip)",
            ));
        }
        Ok(found)
    }

    fn probe(exe: &Path, standalone: bool) -> Result<Self> {
        // One interpreter start for all the facts (`pip --version` alone takes longer than
        // a whole rebuild should).
        let out = cmd::output(Command::new(exe).args([
            "-c",
            "import sys, platform, sysconfig, importlib.util as u; print('%d.%d.%d' % sys.version_info[:3], platform.machine(), u.find_spec('pip') is not None, sysconfig.get_path('stdlib'))",
        ]))?;
        let mut words = out.trim().splitn(4, ' ');
        let version = words.next().unwrap_or_default().to_string();
        let machine = words.next().unwrap_or_default().to_string();
        let has_pip = words.next() == Some("True");
        let stdlib = PathBuf::from(words.next().unwrap_or_default());
        let minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
        Ok(Self {
            exe: exe.to_path_buf(),
            version,
            minor,
            machine,
            stdlib,
            has_pip,
            standalone,
        })
    }

    /// Its standard library, when it is the one the run image's Python `minor` has (same
    /// path, same version): Debian's, in the stack's build image, or the standalone
    /// CPython's, which is in the image itself.
    fn shared_stdlib(&self, minor: &str) -> Option<&Path> {
        let debian = Path::new("/usr/lib").join(format!("python{minor}"));
        (self.minor == minor && (self.standalone || self.stdlib == debian))
            .then_some(self.stdlib.as_path())
    }

    /// The Python that installs uv with pip: this one when it has pip, else the build
    /// environment's `python3`.
    fn pip_python(&self) -> &Path {
        if self.has_pip {
            &self.exe
        } else {
            Path::new("python3")
        }
    }
}

/// Whether a program built for the run image's architecture (`target_arch`, a CNB one) runs
/// on this machine.
pub(super) fn runs_here(target_arch: &str) -> bool {
    machine(target_arch) == std::env::consts::ARCH
}

/// What the dependency layer was built for; it is reused while all of it stays the same.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct PackagesKey {
    /// `uv 0.13.9`.
    installer: String,
    manager: String,
    files: String,
    python: String,
    platform: String,
    host_python: String,
}

/// The Python platform (`platform.machine()`) of a CNB architecture.
fn machine(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    }
}

fn write_error(path: &Path, e: &std::io::Error) -> Error {
    Error::new(format!("cannot write {}: {e}", path.display()))
}

/// Moves pip's `bin/` out of a `--target` directory and makes the scripts run the run
/// image's `python3` (pip wrote the build host's interpreter into them).
fn relocate_scripts(site: &Path, bin: &Path) -> Result<()> {
    let from = site.join("bin");
    if !from.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(bin).map_err(|e| write_error(bin, &e))?;
    let mut entries: Vec<PathBuf> = fs::read_dir(&from)
        .map_err(|e| write_error(&from, &e))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        let dest = bin.join(name);
        fs::rename(&path, &dest).map_err(|e| write_error(&dest, &e))?;
        rewrite_shebang(&dest)?;
    }
    fs::remove_dir_all(&from).map_err(|e| write_error(&from, &e))
}

/// A script whose first line runs Python gets a `/bin/sh` trampoline that runs `python3`
/// from `PATH` instead (the form pip itself uses for long interpreter paths).
fn rewrite_shebang(path: &Path) -> Result<()> {
    if path.is_symlink() || !path.is_file() {
        return Ok(());
    }
    let bytes = fs::read(path).map_err(|e| write_error(path, &e))?;
    let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
        return Ok(());
    };
    let Ok(first) = std::str::from_utf8(&bytes[..end]) else {
        return Ok(());
    };
    if !first.starts_with("#!") || !first.contains("python") {
        return Ok(());
    }
    let mut out = b"#!/bin/sh\n'''exec' python3 \"$0\" \"$@\"\n' '''\n".to_vec();
    out.extend_from_slice(&bytes[end + 1..]);
    fs::write(path, out).map_err(|e| write_error(path, &e))
}

/// Writes requirement lines for pip.
fn write_requirements(
    context: &BuildContext<PythonBuildpack>,
    lines: &[String],
) -> Result<PathBuf> {
    let path = context.layers_dir.join("requirements.lock.txt");
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(&path, text).map_err(|e| write_error(&path, &e))?;
    Ok(path)
}

/// Installs uv into a cached build layer (once per uv version) and returns its executable,
/// or `None` when the package index has no uv (a private index with only the app's
/// packages).
fn uv(context: &BuildContext<PythonBuildpack>, host: &BuildPython) -> CnbResult<Option<PathBuf>> {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct UvKey {
        version: String,
        machine: String,
    }
    let (layer, reused) = layers::keyed(
        context,
        &layer_name!("uv"),
        false,
        false,
        &UvKey {
            version: UV_VERSION.to_string(),
            machine: host.machine.clone(),
        },
    )?;
    let target = layer.path().join("tool");
    let exe = target.join("bin").join("uv");
    if reused && exe.is_file() {
        say(&format!("reusing uv {UV_VERSION}"));
        return Ok(Some(exe));
    }
    say(&format!("installing uv {UV_VERSION}"));
    // Pinned by version and by the hashes of its wheels, whichever index serves it.
    let pin = layer.path().join("uv-requirements.txt");
    let hashes = UV_WHEEL_SHA256.iter().fold(String::new(), |mut all, h| {
        all.push_str(" --hash=sha256:");
        all.push_str(h);
        all
    });
    fs::write(&pin, format!("uv=={UV_VERSION}{hashes}\n")).map_err(|e| write_error(&pin, &e))?;
    let mut pip = Command::new(host.pip_python());
    pip.args(["-m", "pip", "install", "--target"])
        .arg(&target)
        .args([
            "--no-compile",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "--quiet",
            "--require-hashes",
            "--only-binary=:all:",
            "--no-deps",
            "-r",
        ])
        .arg(&pin)
        .env("PIP_ROOT_USER_ACTION", "ignore");
    println!("  $ {}", cmd::describe(&pip));
    let out = pip
        .output()
        .map_err(|e| Error::new(format!("could not run pip: {e}")))?;
    if out.status.success() {
        return Ok(Some(exe));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No matching distribution found for uv") {
        warn(&format!(
            "the package index has no uv {UV_VERSION}: installing the dependencies with pip instead (no in-place updates); make uv available on the index (PIP_INDEX_URL) for faster builds"
        ));
        return Ok(None);
    }
    print!("{stderr}");
    Err(Error::new(format!(
        "installing uv {UV_VERSION} with pip failed ({})",
        out.status
    ))
    .hint("check that the package index (PIP_INDEX_URL) is reachable from the build")
    .into())
}

/// What installs the dependencies: uv, or pip when the package index has no uv.
enum Installer {
    Uv(Uv),
    Pip(Pip),
}

/// The files that make a directory a Python project (`pip install .`).
const PROJECT_FILES: [&str; 3] = ["pyproject.toml", "setup.py", "setup.cfg"];

/// What to install.
enum Wanted {
    /// Requirements every package of which is pinned (a lockfile's): installed as they are.
    Pinned(PathBuf),
    /// Files to resolve first (`requirements.txt`, `pyproject.toml`, `setup.py`).
    Resolve(Vec<String>),
}

/// What the project's dependency files ask to install.
fn requirements(
    context: &BuildContext<PythonBuildpack>,
    app: &App,
    project: &Project,
    uv: Option<&Path>,
) -> CnbResult<Wanted> {
    Ok(match project.manager {
        // Hash-checking requirements pin everything already (pip demands it).
        Manager::Pip if app.is_file("requirements.txt") => {
            let text = app.read("requirements.txt")?.unwrap_or_default();
            if text.contains("--hash") {
                Wanted::Pinned(app.dir().join("requirements.txt"))
            } else {
                Wanted::Resolve(vec!["requirements.txt".to_string()])
            }
        }
        Manager::Pip => Wanted::Resolve(vec![
            PROJECT_FILES
                .into_iter()
                .find(|f| app.is_file(f))
                .unwrap_or("setup.py")
                .to_string(),
        ]),
        Manager::Uv => {
            let uv =
                uv.ok_or_else(|| Error::new("uv.lock is read with uv, which is not installed"))?;
            let path = context.layers_dir.join("requirements.lock.txt");
            cmd::run(
                Command::new(uv)
                    .current_dir(app.dir())
                    .args([
                        "export",
                        "--quiet",
                        "--frozen",
                        "--no-dev",
                        "--no-emit-project",
                        "--no-header",
                        "--no-annotate",
                        "--format",
                        "requirements-txt",
                        "--output-file",
                    ])
                    .arg(&path)
                    .env("UV_PYTHON_DOWNLOADS", "never")
                    .env("UV_NO_PROGRESS", "1"),
            )?;
            Wanted::Pinned(path)
        }
        Manager::Poetry => {
            let pyproject = app.read_toml("pyproject.toml")?.unwrap_or_default();
            let lock = app.read_toml("poetry.lock")?.unwrap_or_default();
            let lines = locks::poetry(&pyproject, &lock)?;
            say(&format!("packages pinned by poetry.lock: {}", lines.len()));
            Wanted::Pinned(write_requirements(context, &lines)?)
        }
        Manager::Pipenv => {
            if let Some(lock) = app.read_json("Pipfile.lock")? {
                let lines = locks::pipfile_lock(&lock)?;
                say(&format!("packages pinned by Pipfile.lock: {}", lines.len()));
                Wanted::Pinned(write_requirements(context, &lines)?)
            } else {
                warn(
                    "no Pipfile.lock: pip resolves the Pipfile's packages now; commit Pipfile.lock (`pipenv lock`) for reproducible builds",
                );
                let pipfile = app.read_toml("Pipfile")?.unwrap_or_default();
                let lines = locks::pipfile(&pipfile)?;
                Wanted::Resolve(vec![
                    write_requirements(context, &lines)?
                        .to_string_lossy()
                        .into_owned(),
                ])
            }
        }
        Manager::None => Wanted::Resolve(Vec::new()),
    })
}

/// Installs everything the app needs and sets up its environment.
pub(super) fn install(
    context: &BuildContext<PythonBuildpack>,
    app: &App,
    project: &Project,
    provided: Option<&str>,
    standalone: Option<&Path>,
) -> CnbResult<()> {
    // Every Python app gets a `PORT` and unbuffered output.
    layers::launch_env(
        context,
        &layer_name!("env"),
        &layers::launch_defaults(&[("PORT", DEFAULT_PORT), ("PYTHONUNBUFFERED", "1")]),
    )?;
    let run_minor = |host: &BuildPython| {
        provided.map_or_else(
            || host.minor.clone(),
            |p| p.split('.').take(2).collect::<Vec<_>>().join("."),
        )
    };
    if project.manager == Manager::None && !project.install_app {
        say("no dependencies to install");
        // The standard library's bytecode still saves every start its compiling.
        if let Ok(host) = BuildPython::find(standalone, &context.target.arch) {
            compile_bytecode(context, &host, &run_minor(&host), None, false)?;
        }
        return Ok(());
    }

    let host = BuildPython::find(standalone, &context.target.arch)?;
    let minor = run_minor(&host);
    let target_machine = machine(&context.target.arch).to_string();
    let cross = host.minor != minor || host.machine != target_machine;
    say(&format!(
        "installing with the build's Python {}{}",
        host.version,
        if cross {
            format!(" for Python {minor} on {target_machine} (binary wheels only)")
        } else {
            String::new()
        }
    ));
    let cache = |name: libcnb::data::layer::LayerName| {
        layers::keyed(context, &name, false, false, &layers::FIRST_GENERATION)
            .map(|(layer, _)| layer.path())
    };
    let glibc = inventory::provided(&context.target, "libc6");
    let pip = || -> CnbResult<Pip> {
        if !host.has_pip {
            return Err(no_pip(&host, project).into());
        }
        Ok(Pip {
            python: host.exe.clone(),
            cross: pip::cross_options(cross, &minor, &target_machine, glibc.as_deref()),
            cache: cache(layer_name!("pip-cache"))?,
        })
    };
    let installer = match uv(context, &host)? {
        Some(exe) => Installer::Uv(Uv::new(
            exe,
            cache(layer_name!("uv-cache"))?,
            uv::target_options(cross, &minor, &target_machine, glibc.as_deref(), &host.exe),
        )),
        None if project.manager == Manager::Uv => {
            return Err(Error::new(format!(
                "uv.lock is read with uv, and the package index has no uv {UV_VERSION}"
            ))
            .hint("make uv available on the package index (PIP_INDEX_URL), or set PIP_EXTRA_INDEX_URL to an index that has it")
            .into());
        }
        None => Installer::Pip(pip()?),
    };
    let key = PackagesKey {
        installer: match &installer {
            Installer::Uv(_) => format!("uv {UV_VERSION}"),
            Installer::Pip(_) => "pip".to_string(),
        },
        manager: format!("{:?}", project.manager).to_ascii_lowercase(),
        files: digest_files(
            app,
            &project
                .dependency_files
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?,
        python: minor.clone(),
        platform: target_machine.clone(),
        host_python: host.version.clone(),
    };
    let (site, fresh) = install_dependencies(context, app, project, &installer, &minor, &key)?;
    let key = serde_json::to_string(&key)
        .map_err(|e| Error::new(format!("cannot serialize the packages key: {e}")))?;
    compile_bytecode(context, &host, &minor, Some((&site, key)), fresh)?;
    if let Some(why) = &project.install_skipped {
        warn(why);
    }
    if project.install_app {
        let pip = match installer {
            Installer::Pip(pip) => pip,
            Installer::Uv(_) => pip()?,
        };
        install_app(context, app, &pip)?;
    }
    Ok(())
}

/// The error when pip is needed and the standalone CPython `host` has none.
fn no_pip(host: &BuildPython, project: &Project) -> Error {
    Error::new(format!(
        "the standalone CPython {} ({}) has no pip, which kiln/python needs to install {}",
        host.version,
        host.exe.display(),
        if project.install_app {
            "the app's own package"
        } else {
            "the dependencies when the package index has no uv"
        }
    ))
    .hint("mirror python-build-standalone's install_only builds, which include pip")
}

/// The `bytecode` layer for the run image's Python `minor` (see [`bytecode`]): the standard
/// library's and the installed packages' (`site-packages` and its layer's key), when the
/// build's Python can compile for it.
fn compile_bytecode(
    context: &BuildContext<PythonBuildpack>,
    host: &BuildPython,
    minor: &str,
    packages: Option<(&Path, String)>,
    fresh: bool,
) -> CnbResult<()> {
    if host.minor != minor {
        say(&format!(
            "no compiled bytecode: the build's Python {} cannot compile for the run image's Python {minor}",
            host.version
        ));
        return Ok(());
    }
    bytecode::compile(
        context,
        &bytecode::Sources {
            python: &host.version,
            interpreter: &host.exe,
            stdlib: host.shared_stdlib(minor),
            packages,
            fresh,
        },
    )
}

/// The `packages` layer: the dependencies, reused while `key` holds, updated in place when
/// only the dependency files changed. Returns its `site-packages` and whether this build
/// installed anything.
fn install_dependencies(
    context: &BuildContext<PythonBuildpack>,
    app: &App,
    project: &Project,
    installer: &Installer,
    minor: &str,
    key: &PackagesKey,
) -> CnbResult<(PathBuf, bool)> {
    let (packages, reuse) = layers::keyed_incremental(
        context,
        &layer_name!("packages"),
        true,
        true,
        key,
        |old: &PackagesKey, new| {
            (&old.installer, &old.python, &old.platform, &old.host_python)
                == (&new.installer, &new.python, &new.platform, &new.host_python)
        },
    )?;
    let site = packages
        .path()
        .join("lib")
        .join(format!("python{minor}"))
        .join("site-packages");
    let files = project.dependency_files.join(", ");
    if reuse == Reuse::All {
        say(&format!(
            "reusing the installed dependencies ({files} unchanged)"
        ));
    } else {
        if reuse == Reuse::InPlace {
            say(&format!(
                "updating the installed dependencies in place ({files} changed)"
            ));
        }
        match installer {
            Installer::Uv(uv) => {
                fs::create_dir_all(&site).map_err(|e| write_error(&site, &e))?;
                let pinned = match requirements(context, app, project, Some(&uv.exe))? {
                    Wanted::Pinned(path) => path,
                    Wanted::Resolve(inputs) if inputs.is_empty() => {
                        write_requirements(context, &[])?
                    }
                    Wanted::Resolve(inputs) => {
                        let out = context.layers_dir.join("requirements.resolved.txt");
                        uv.compile(app, &inputs, &out)?;
                        out
                    }
                };
                uv.sync(app, &pinned, &site)?;
            }
            Installer::Pip(pip) => {
                // pip cannot update in place: start from an empty layer.
                for dir in [packages.path().join("lib"), packages.path().join("bin")] {
                    if fs::symlink_metadata(&dir).is_ok() {
                        fs::remove_dir_all(&dir)
                            .or_else(|_| fs::remove_file(&dir))
                            .map_err(|e| write_error(&dir, &e))?;
                    }
                }
                fs::create_dir_all(&site).map_err(|e| write_error(&site, &e))?;
                let mut command = pip.install_for_run_image(app, &site);
                match requirements(context, app, project, None)? {
                    Wanted::Pinned(path) => command.arg("--no-deps").arg("-r").arg(path),
                    Wanted::Resolve(inputs) => inputs.iter().fold(&mut command, |c, input| {
                        if PROJECT_FILES.contains(&input.as_str()) {
                            c.arg(".")
                        } else {
                            c.arg("-r").arg(input)
                        }
                    }),
                };
                cmd::run(&mut command)?;
            }
        }
        script_shebangs(&site.join("bin"))?;
    }
    // Scripts stay where uv put them (it removes them with their package); `bin` is on
    // `PATH`.
    let bin = packages.path().join("bin");
    if site.join("bin").is_dir() && fs::symlink_metadata(&bin).is_err() {
        let target = Path::new("lib")
            .join(format!("python{minor}"))
            .join("site-packages")
            .join("bin");
        std::os::unix::fs::symlink(&target, &bin).map_err(|e| write_error(&bin, &e))?;
    }
    packages.write_env(LayerEnv::new().chainable_insert(
        Scope::All,
        ModificationBehavior::Override,
        "PYTHONUSERBASE",
        packages.path(),
    ))?;
    Ok((site, reuse != Reuse::All))
}

/// Makes the Python scripts in `bin` run the run image's `python3` (see [`rewrite_shebang`]).
fn script_shebangs(bin: &Path) -> Result<()> {
    if !bin.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(bin)
        .map_err(|e| write_error(bin, &e))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.iter().try_for_each(|path| rewrite_shebang(path))
}

/// The `project` layer: the app itself, when it is a package (a build system in
/// pyproject.toml, or setup.py), installed every build so the dependency layer stays
/// reusable while the code changes. It comes first on `PYTHONPATH`, ahead of the copy a
/// lock-less `pip install .` also put among the dependencies.
fn install_app(context: &BuildContext<PythonBuildpack>, app: &App, pip: &Pip) -> CnbResult<()> {
    let layer = context.uncached_layer(
        layer_name!("project"),
        UncachedLayerDefinition {
            build: true,
            launch: true,
        },
    )?;
    let site = layer.path().join("site-packages");
    fs::create_dir_all(&site).map_err(|e| write_error(&site, &e))?;
    say("installing the app's own package");
    cmd::run(pip.install(app, &site).args(["--no-deps", "."]))?;
    relocate_scripts(&site, &layer.path().join("bin"))?;
    layer.write_env(
        LayerEnv::new()
            .chainable_insert(
                Scope::All,
                ModificationBehavior::Prepend,
                "PYTHONPATH",
                &site,
            )
            .chainable_insert(
                Scope::All,
                ModificationBehavior::Delimiter,
                "PYTHONPATH",
                ":",
            ),
    )?;
    Ok(())
}

/// The cached build and launch layer `python` with the standalone CPython `asset` from
/// `mirror` (for the request `requested`, in messages): reused while the asset and its hash
/// stay the same. Its `bin` is on `PATH` in the image and for later buildpacks. Returns its
/// `bin/python3`, checked to report the asset's version when it runs on this machine.
pub(super) fn standalone_layer(
    context: &BuildContext<PythonBuildpack>,
    mirror: &standalone::Mirror,
    asset: &standalone::Asset,
    requested: &str,
) -> CnbResult<PathBuf> {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct PythonKey {
        asset: String,
        sha256: String,
    }
    let (layer, reused) = layers::keyed(
        context,
        &layer_name!("python"),
        true,
        true,
        &PythonKey {
            asset: asset.name.clone(),
            sha256: asset.sha256.clone(),
        },
    )?;
    let exe = layer.path().join("bin").join("python3");
    if reused && exe.exists() {
        say(&format!(
            "reusing the standalone CPython {} from the cache",
            asset.version
        ));
    } else {
        say(&format!(
            "installing standalone CPython {} from {} ({requested}; no kiln stack has it)",
            asset.version,
            mirror.base()
        ));
        standalone::install(mirror, asset, &layer.path())?;
    }
    if runs_here(&context.target.arch) {
        let reported = standalone::reported_version(&exe)?;
        let release = pep440_rs::Version::from_str(&asset.version)
            .map(|v| {
                v.release()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .unwrap_or_default();
        if reported != release {
            return Err(Error::new(format!(
                "the standalone CPython {} reports Python {reported}, not {}: the mirror's file is not what its name says",
                asset.name, asset.version
            ))
            .hint("refresh the mirror from upstream")
            .into());
        }
    }
    say(&format!("using Python {} ({})", asset.version, asset.name));
    Ok(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_run_the_run_images_python() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        fs::create_dir_all(site.join("bin")).unwrap();
        fs::write(
            site.join("bin/gunicorn"),
            "#!/root/.pyenv/versions/3.11.7/bin/python3.11\nimport sys\n",
        )
        .unwrap();
        fs::write(site.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        relocate_scripts(&site, &dir.path().join("bin")).unwrap();
        let script = fs::read_to_string(dir.path().join("bin/gunicorn")).unwrap();
        assert!(script.starts_with("#!/bin/sh\n'''exec' python3 \"$0\" \"$@\"\n' '''\nimport sys"));
        assert_eq!(
            fs::read_to_string(dir.path().join("bin/tool")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        assert!(!site.join("bin").exists());
    }
}
