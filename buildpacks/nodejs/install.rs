//! Installing dependencies, running the build script, pruning to production dependencies.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use libcnb::build::BuildContext;
use libcnb::data::layer_name;
use libcnb::layer_env::{ModificationBehavior, Scope};

use super::NodejsBuildpack;
use super::project::{Manager, Project};
use super::registry::Npm;
use super::runtime;
use crate::common::files::{App, digest_files};
use crate::common::{CnbResult, Error, Result, cmd, layers, say, setting, warn};

/// The port apps listen on when `PORT` is not set.
const DEFAULT_PORT: &str = "8080";

/// What the dependency layers were installed from; reused while all of it stays the same.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ModulesKey {
    manager: String,
    lock: String,
    dependencies: String,
    node_major: String,
    arch: String,
}

/// Which dependencies an install brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deps {
    /// Development ones too, for the build script.
    All,
    /// Production only, for the image.
    Production,
}

/// Where `name` is on the search path `path`.
fn which_in(path: &OsStr, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The package manager's command, found on `path` (the build environment's, or kiln's
/// `package_manager` layer first, see [`manager_layer`]).
///
/// Never corepack: corepack may fetch Yarn 2+ from Yarn's own host rather than the npm
/// registry the user configured (trixie's does, whatever `COREPACK_NPM_REGISTRY` says), and
/// kiln installs the pinned version itself from that registry, checked the same way.
fn tool(project: &Project, path: &OsStr) -> Result<Command> {
    let manager = project.manager;
    let program = manager.program();
    if let Some(found) = which_in(path, program) {
        return Ok(Command::new(found));
    }
    Err(cmd::missing(
        program,
        "the app's lockfile names it as the package manager",
        &match manager {
            Manager::Npm => {
                "install Node.js and npm (Debian: apt-get install nodejs npm)".to_string()
            }
            Manager::Bun => "install Bun (https://bun.sh) and put it on PATH".to_string(),
            _ => format!("install {program}, or pin it in package.json's packageManager"),
        },
    ))
}

/// The arguments of an install.
fn install_args(manager: Manager, locked: bool, scope: Deps) -> Vec<&'static str> {
    let prod = scope == Deps::Production;
    match manager {
        Manager::Npm => {
            let mut args = if locked { vec!["ci"] } else { vec!["install"] };
            args.extend(["--no-audit", "--no-fund"]);
            args.push(if prod { "--omit=dev" } else { "--include=dev" });
            if !locked {
                args.push("--no-package-lock");
            }
            args
        }
        Manager::YarnClassic => {
            let mut args = vec!["install", "--non-interactive"];
            if locked {
                args.push("--frozen-lockfile");
            }
            args.push(if prod {
                "--production=true"
            } else {
                "--production=false"
            });
            args
        }
        Manager::YarnBerry if prod => vec!["workspaces", "focus", "--all", "--production"],
        Manager::YarnBerry => {
            if locked {
                vec!["install", "--immutable"]
            } else {
                vec!["install"]
            }
        }
        Manager::Pnpm => {
            let mut args = vec!["install"];
            if locked {
                args.push("--frozen-lockfile");
            }
            args.push(if prod { "--prod" } else { "--prod=false" });
            args
        }
        Manager::Bun => {
            let mut args = vec!["install"];
            if locked {
                args.push("--frozen-lockfile");
            }
            if prod {
                args.push("--production");
            }
            args
        }
    }
}

/// The arguments that prune an installed tree to production dependencies.
fn prune_args(manager: Manager, locked: bool) -> Vec<&'static str> {
    match manager {
        Manager::Npm => vec!["prune", "--omit=dev", "--no-audit", "--no-fund"],
        Manager::Pnpm => vec!["prune", "--prod"],
        other => install_args(other, locked, Deps::Production),
    }
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::new(format!("cannot {what} {}: {e}", path.display()))
}

/// Moves a directory, copying when it crosses file systems.
fn move_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| io_error("remove", to, &e))?;
    }
    if fs::rename(from, to).is_err() {
        copy_dir(from, to)?;
        fs::remove_dir_all(from).map_err(|e| io_error("remove", from, &e))?;
    }
    Ok(())
}

/// `path` with `.` and `..` components resolved lexically (links are not followed).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Makes the links of the dependency tree at `app_modules` (`/workspace/node_modules`, a
/// real directory at this point) safe to move into a layer, and returns what it changed:
///
/// - a link that leads back to a directory containing it (`node_modules/shop -> ..`, which
///   npm makes for a `"shop": "file:."` dependency) is removed: file walkers that follow
///   links (Nuxt's, bundlers' globbing) go round it forever, and once the tree lives in a
///   layer reached through the `node_modules` link, it also loops inside the layer;
/// - a relative link out of the tree into the app (`node_modules/ui -> ../packages/ui`, a
///   workspace package) is made absolute, as it would otherwise point into the layer after
///   the move.
fn fix_links(app_modules: &Path) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    let mut dirs = vec![app_modules.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| io_error("read", &dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &dir, &e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| io_error("read", &path, &e))?;
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            if !kind.is_symlink() {
                continue;
            }
            let target = fs::read_link(&path).map_err(|e| io_error("read", &path, &e))?;
            let resolved = normalize(&dir.join(&target));
            let shown = path
                .strip_prefix(app_modules.parent().unwrap_or(app_modules))
                .unwrap_or(&path)
                .display()
                .to_string();
            if path.starts_with(&resolved) {
                fs::remove_file(&path).map_err(|e| io_error("remove", &path, &e))?;
                changes.push(format!(
                    "removed the link {shown} -> {}: it leads back to a directory that contains it, so tools that walk the app following links would never finish",
                    target.display()
                ));
            } else if target.is_relative() && !resolved.starts_with(app_modules) {
                fs::remove_file(&path).map_err(|e| io_error("remove", &path, &e))?;
                std::os::unix::fs::symlink(&resolved, &path)
                    .map_err(|e| io_error("link", &path, &e))?;
            }
        }
    }
    Ok(changes)
}

/// Moves the dependency tree installed at `app_modules` into the layer directory `dest`,
/// its links made safe first ([`fix_links`]).
fn store_modules(app_modules: &Path, dest: &Path) -> Result<()> {
    for change in fix_links(app_modules)? {
        warn(&change);
    }
    move_dir(app_modules, dest)
}

/// Copies a tree, keeping symlinks and modes (`cp -a`).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    cmd::output(Command::new("cp").arg("-a").arg(from).arg(to)).map(|_| ())
}

/// Makes `/workspace/node_modules` a link to `target`.
fn link_modules(app_modules: &Path, target: &Path) -> Result<()> {
    remove_modules(app_modules)?;
    std::os::unix::fs::symlink(target, app_modules).map_err(|e| io_error("link", app_modules, &e))
}

fn remove_modules(app_modules: &Path) -> Result<()> {
    match fs::symlink_metadata(app_modules) {
        Ok(m) if m.file_type().is_symlink() || m.is_file() => {
            fs::remove_file(app_modules).map_err(|e| io_error("remove", app_modules, &e))
        }
        Ok(_) => fs::remove_dir_all(app_modules).map_err(|e| io_error("remove", app_modules, &e)),
        Err(_) => Ok(()),
    }
}

fn host_node() -> Result<String> {
    if cmd::which("node").is_none() {
        return Err(cmd::missing(
            "node",
            "the Node.js buildpack installs dependencies with it",
            "install Node.js (Debian: apt-get install nodejs npm)",
        ));
    }
    Ok(cmd::output(Command::new("node").arg("--version"))?
        .trim()
        .trim_start_matches('v')
        .to_string())
}

/// Runs the package manager in the app directory.
struct Installer<'a> {
    project: &'a Project,
    /// `PATH` for the package manager and the build script: the bins of the Node.js and
    /// package manager kiln installed first.
    path: OsString,
    app: &'a App,
    /// The package manager's download cache.
    cache: PathBuf,
    /// `/workspace/node_modules`.
    app_modules: PathBuf,
    /// Whether a lockfile pins the dependencies.
    locked: bool,
    /// `CI` for the package manager and the build script: the user's (`--env CI=false`),
    /// else `true`.
    ci: String,
}

impl Installer<'_> {
    /// Runs the package manager with `args`; `NODE_ENV=production` only for build scripts
    /// (during installs it would drop the development dependencies).
    fn run(&self, args: &[&str], production_env: bool) -> Result<()> {
        let mut c = tool(self.project, &self.path)?;
        c.current_dir(self.app.dir())
            .args(args)
            .env("CI", &self.ci)
            .env("PATH", &self.path);
        let cache = &self.cache;
        match self.project.manager {
            Manager::Npm => c
                .env("npm_config_cache", cache.join("npm"))
                .env("npm_config_update_notifier", "false"),
            Manager::YarnClassic => c.env("YARN_CACHE_FOLDER", cache.join("yarn")),
            // Yarn 2+ defaults to Plug'n'Play (no node_modules, a .pnp.cjs loader the run
            // command would have to require); kiln images run plain `node`, so install a
            // node_modules tree.
            Manager::YarnBerry => c
                .env("YARN_CACHE_FOLDER", cache.join("yarn"))
                .env("YARN_ENABLE_GLOBAL_CACHE", "false")
                .env("YARN_NODE_LINKER", "node-modules"),
            Manager::Pnpm => c.env("npm_config_store_dir", cache.join("pnpm-store")),
            Manager::Bun => c.env("BUN_INSTALL_CACHE_DIR", cache.join("bun")),
        };
        if production_env {
            c.env("NODE_ENV", "production");
        } else {
            c.env_remove("NODE_ENV");
        }
        cmd::run(&mut c)
    }

    /// Installs `deps` in the app directory and moves the tree to `dest`.
    fn install_into(&self, deps: Deps, dest: &Path) -> Result<()> {
        self.run(
            &install_args(self.project.manager, self.locked, deps),
            false,
        )?;
        ensure_dir(&self.app_modules)?;
        store_modules(&self.app_modules, dest)
    }

    /// Installs everything, runs the build script against it, and leaves the production
    /// dependencies in `modules` (unless `modules_reused`). The full tree is kept in the
    /// cache layer `dev` for the next build.
    fn build_script(&self, dev: (&Path, bool), modules: (&Path, bool)) -> Result<()> {
        let (dev_dir, dev_reused) = dev;
        let (modules_dir, modules_reused) = modules;
        if dev_reused && dev_dir.is_dir() {
            say("reusing the development dependencies for the build script");
        } else {
            self.install_into(Deps::All, dev_dir)?;
        }
        link_modules(&self.app_modules, dev_dir)?;
        say("running the build script");
        self.run(&["run", "build"], true)?;
        remove_modules(&self.app_modules)?;
        if modules_reused && modules_dir.is_dir() {
            say("reusing the production dependencies (lockfile unchanged)");
            return Ok(());
        }
        copy_dir(dev_dir, &self.app_modules)?;
        if let Some(why) = typescript_at_start(self.app)? {
            say(&format!("keeping the development dependencies: {why}"));
        } else {
            self.run(&prune_args(self.project.manager, self.locked), false)?;
        }
        store_modules(&self.app_modules, modules_dir)
    }
}

/// Why the app needs its development dependencies at run time, if it does: `next start`
/// loads a TypeScript `next.config.ts` (the default of `create-next-app`) with the
/// `typescript` package, which the starter lists as a development dependency — pruned, Next.js
/// tries to `npm install` it when the app starts, and fails in the image.
fn typescript_at_start(app: &App) -> Result<Option<String>> {
    let Some(config) = ["next.config.ts", "next.config.mts"]
        .into_iter()
        .find(|f| app.is_file(f))
    else {
        return Ok(None);
    };
    let package = app.read_json("package.json")?.unwrap_or_default();
    let section = |name: &str, dep: &str| package.get(name).and_then(|s| s.get(dep)).is_some();
    let next = section("dependencies", "next");
    let dev_typescript =
        section("devDependencies", "typescript") && !section("dependencies", "typescript");
    Ok((next && dev_typescript)
        .then(|| format!("next start loads {config} with TypeScript, a development dependency")))
}

/// Warns about what makes an install less reproducible or less likely to run.
fn preflight(app: &App, project: &Project, host: &str, provided: Option<&str>) -> Result<()> {
    let host_major = host.split('.').next().unwrap_or_default();
    if let Some(provided) = provided {
        let run_major = provided.split('.').next().unwrap_or_default();
        if run_major != host_major && lock_has_install_scripts(app)? {
            warn(&format!(
                "the build host's Node.js {host} is not the run image's {provided}: packages with install scripts (native addons) are built for Node.js {host_major} and may not load at run time; build on a host with Node.js {run_major} if they fail"
            ));
        }
    }
    if project.lockfile.is_none() && project.install {
        warn(
            "no lockfile: dependency versions are resolved now; commit your package manager's lockfile for reproducible builds",
        );
    }
    Ok(())
}

/// The Node.js kiln installed for the build: its `bin` directory and version.
pub(super) struct Toolchain {
    bin: PathBuf,
    version: String,
}

/// What the Node.js layer was installed from; reused while it stays the same.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct NodeKey {
    node: String,
    arch: String,
    /// The npm asked for (`packageManager`'s npm pin, else `engines.npm`).
    npm: Option<String>,
}

/// Installs Node.js `version` (and npm) from the npm registry into the cached layer `node`,
/// a build layer (its `bin` on `PATH` for later buildpacks) and, unless `launch` is false
/// (a front-end site that does not run on Node.js), a launch layer. Checks that the
/// installed `node` runs and reports `version`.
pub(super) fn node_layer(
    context: &BuildContext<NodejsBuildpack>,
    project: &Project,
    version: &str,
    launch: bool,
) -> CnbResult<Toolchain> {
    let arch = &context.target.arch;
    let package = runtime::node_package(arch)?;
    let npm_request = match (&project.manager, &project.pin) {
        (Manager::Npm, Some(pin)) => Some(pin.version.to_string()),
        _ => project.npm_engine.clone(),
    };
    let key = NodeKey {
        node: version.to_string(),
        arch: arch.clone(),
        npm: npm_request.clone(),
    };
    let (layer, reused) = layers::keyed(context, &layer_name!("node"), true, launch, &key)?;
    let prefix = layer.path();
    let bin = prefix.join("bin");
    if reused && bin.join("node").is_file() && bin.join("npm").exists() {
        say(&format!(
            "reusing Node.js {version} ({package}) and its npm from the cache"
        ));
    } else {
        let npm = Npm::new()?;
        say(&format!(
            "installing Node.js {version} from the npm registry {} ({package})",
            npm.registry()
        ));
        let npm_version =
            runtime::install_node(&npm, &prefix, version, arch, npm_request.as_deref())?;
        say(&format!("installed npm {npm_version} beside it"));
    }
    // A cross-architecture build cannot run the target's node.
    if runtime::node_package(std::env::consts::ARCH).ok() == Some(package) {
        let reported = cmd::output(Command::new(bin.join("node")).arg("--version"))?;
        let reported = reported.trim().trim_start_matches('v');
        if reported != version {
            return Err(Error::new(format!(
                "the Node.js installed from {package}@{version} reports version {reported}"
            ))
            .hint("the registry's package is not the release it names; check the registry")
            .into());
        }
        say(&format!("node --version: v{reported}"));
    }
    Ok(Toolchain {
        bin,
        version: version.to_string(),
    })
}

/// What a package manager layer holds.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ManagerKey {
    package: String,
    version: String,
    /// `packageManager`'s hash: a new one is checked against a fresh download.
    hash: Option<String>,
}

/// Installs the package manager from the npm registry into the cached build layer
/// `package_manager`: the version a `packageManager` pin names, or for an unpinned manager
/// the build environment lacks, the newest release of the line its lockfile's format
/// belongs to. Returns its `bin`.
fn manager_layer(
    context: &BuildContext<NodejsBuildpack>,
    app: &App,
    project: &Project,
    path: &OsStr,
) -> CnbResult<Option<PathBuf>> {
    let manager = project.manager;
    if matches!(manager, Manager::Npm | Manager::Bun) {
        return Ok(None);
    }
    if project.pin.is_none() && which_in(path, manager.program()).is_some() {
        return Ok(None);
    }
    let npm = Npm::new()?;
    let version = if let Some(pin) = &project.pin {
        pin.version.clone()
    } else {
        let lock = match &project.lockfile {
            Some(file) => app.read(file)?,
            None => None,
        };
        let range = runtime::manager_range(manager, lock.as_deref());
        let package = runtime::manager_package(manager.program(), &range.1)
            .ok_or_else(|| Error::new("no npm registry package for this manager"))?;
        let requested = crate::common::Requested {
            version: range.0.to_string(),
            source: format!("the {} lockfile format", manager.program()),
        };
        let available = npm.versions(package)?;
        let from = format!("the npm registry {} ({package})", npm.registry());
        runtime::pick(&requested, &available, &from)?
    };
    let package = runtime::manager_package(manager.program(), &version)
        .ok_or_else(|| Error::new("no npm registry package for this manager"))?;
    let key = ManagerKey {
        package: package.to_string(),
        version: version.to_string(),
        hash: project
            .pin
            .as_ref()
            .and_then(|p| p.hash.as_ref())
            .map(|h| format!("{h:?}")),
    };
    let (layer, reused) =
        layers::keyed(context, &layer_name!("package_manager"), true, false, &key)?;
    let bin = layer.path().join("bin");
    if reused && which_in(bin.as_os_str(), manager.program()).is_some() {
        say(&format!(
            "reusing {} {version} ({package}) from the cache",
            manager.program()
        ));
    } else {
        say(&format!(
            "installing {} {version} from the npm registry {} ({package}){}",
            manager.program(),
            npm.registry(),
            if project.pin.as_ref().is_some_and(|p| p.hash.is_some()) {
                ", checked against packageManager's hash"
            } else {
                ""
            }
        ));
        let hash = project.pin.as_ref().and_then(|p| p.hash.as_ref());
        runtime::install_package(&npm, &layer.path(), package, &version.to_string(), hash)?;
    }
    Ok(Some(bin))
}

/// `PATH` with `first` ahead of the build environment's own.
fn search_path(first: &[&Path]) -> Result<OsString> {
    let own = std::env::var_os("PATH").unwrap_or_default();
    let dirs = first
        .iter()
        .map(|p| p.to_path_buf())
        .chain(std::env::split_paths(&own));
    std::env::join_paths(dirs).map_err(|e| Error::new(format!("cannot build PATH: {e}")))
}

/// Installs what the app needs and sets up its environment.
pub(super) fn install(
    context: &BuildContext<NodejsBuildpack>,
    app: &App,
    project: &Project,
    provided: Option<&str>,
    toolchain: Option<&Toolchain>,
) -> CnbResult<()> {
    let app_modules = context.app_dir.join("node_modules");
    // The launch environment: `PORT`, `NODE_ENV`, and the app's `node_modules/.bin` on
    // `PATH` (as `npm start` would have it).
    layers::launch_env(
        context,
        &layer_name!("env"),
        &layers::launch_defaults(&[("PORT", DEFAULT_PORT), ("NODE_ENV", "production")])
            .chainable_insert(
                Scope::Launch,
                ModificationBehavior::Append,
                "PATH",
                app_modules.join(".bin"),
            )
            .chainable_insert(Scope::Launch, ModificationBehavior::Delimiter, "PATH", ":"),
    )?;
    if !project.install && !project.build_script {
        say("no dependencies to install");
        return Ok(());
    }
    let node_bin: Vec<&Path> = toolchain.iter().map(|t| t.bin.as_path()).collect();
    let path = search_path(&node_bin)?;
    let path = match manager_layer(context, app, project, &path)? {
        Some(manager_bin) => {
            search_path(&[node_bin.as_slice(), &[manager_bin.as_path()]].concat())?
        }
        None => path,
    };
    let host = if let Some(t) = toolchain {
        say(&format!(
            "using {} with Node.js {}",
            project.manager.program(),
            t.version
        ));
        t.version.clone()
    } else {
        let host = host_node()?;
        say(&format!(
            "using {} with the build host's Node.js {host}",
            project.manager.program()
        ));
        host
    };
    preflight(app, project, &host, provided)?;
    if fs::symlink_metadata(&app_modules).is_ok() {
        warn(
            "the source's node_modules is not used (add node_modules to .kilnignore to skip copying it)",
        );
        remove_modules(&app_modules)?;
    }

    let (cache, _) = layers::keyed(
        context,
        &layer_name!("cache"),
        false,
        false,
        &layers::FIRST_GENERATION,
    )?;
    let lockfiles: Vec<&str> = project.lockfile.iter().map(String::as_str).collect();
    let key = ModulesKey {
        manager: project.manager.program().to_string(),
        lock: digest_files(app, &lockfiles)?,
        dependencies: project.dependency_json.clone(),
        node_major: host.split('.').next().unwrap_or_default().to_string(),
        arch: context.target.arch.clone(),
    };
    let (modules, modules_reused) =
        layers::keyed(context, &layer_name!("modules"), false, true, &key)?;
    let modules_dir = modules.path().join("node_modules");
    let installer = Installer {
        project,
        path,
        app,
        cache: cache.path(),
        app_modules: app_modules.clone(),
        locked: project.lockfile.is_some(),
        ci: ci_value(&context.platform),
    };
    if project.build_script {
        let (dev, dev_reused) =
            layers::keyed(context, &layer_name!("dev_modules"), false, false, &key)?;
        installer.build_script(
            (&dev.path().join("node_modules"), dev_reused),
            (&modules_dir, modules_reused),
        )?;
    } else if modules_reused && modules_dir.is_dir() {
        say("reusing the production dependencies (lockfile unchanged)");
    } else {
        installer.install_into(Deps::Production, &modules_dir)?;
    }
    link_modules(&app_modules, &modules_dir)?;
    Ok(())
}

/// `CI` as the user set it for the build (`kiln build --env CI=false`, which reaches the
/// buildpack as `<platform>/env/CI`), else `true`: package managers and build tools then run
/// without prompts, progress animations or watchers.
fn ci_value(platform: &impl libcnb::Platform) -> String {
    setting(platform.env(), "CI").unwrap_or_else(|| "true".to_string())
}

fn ensure_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| io_error("create", path, &e))
}

/// Whether npm's lockfile marks a package as running install scripts (native addons).
fn lock_has_install_scripts(app: &App) -> Result<bool> {
    Ok(app
        .read("package-lock.json")?
        .is_some_and(|text| text.contains("\"hasInstallScript\": true")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_installs() {
        assert_eq!(
            install_args(Manager::Npm, true, Deps::Production),
            ["ci", "--no-audit", "--no-fund", "--omit=dev"]
        );
        assert_eq!(
            install_args(Manager::Npm, false, Deps::All),
            [
                "install",
                "--no-audit",
                "--no-fund",
                "--include=dev",
                "--no-package-lock"
            ]
        );
        assert!(install_args(Manager::YarnClassic, true, Deps::All).contains(&"--frozen-lockfile"));
        assert!(install_args(Manager::YarnBerry, true, Deps::All).contains(&"--immutable"));
        assert!(install_args(Manager::Pnpm, true, Deps::Production).contains(&"--prod"));
        assert_eq!(prune_args(Manager::Npm, true)[0], "prune");
    }

    #[test]
    fn a_typescript_next_config_keeps_typescript() {
        use crate::common::files::temp_app as app;
        let next =
            r#"{"dependencies": {"next": "15.5.4"}, "devDependencies": {"typescript": "^5"}}"#;
        let (_d, a) = app(&[("package.json", next), ("next.config.ts", "")]);
        assert!(
            typescript_at_start(&a)
                .unwrap()
                .unwrap()
                .contains("next.config.ts")
        );
        let (_d, a) = app(&[("package.json", next), ("next.config.mjs", "")]);
        assert_eq!(typescript_at_start(&a).unwrap(), None);
        let prod = r#"{"dependencies": {"next": "15.5.4", "typescript": "^5"}}"#;
        let (_d, a) = app(&[("package.json", prod), ("next.config.ts", "")]);
        assert_eq!(typescript_at_start(&a).unwrap(), None);
    }

    #[test]
    fn the_users_ci_wins_over_the_default() {
        use libcnb::Platform as _;
        let d = tempfile::tempdir().unwrap();
        let none = libcnb::generic::GenericPlatform::from_path(d.path()).unwrap();
        assert_eq!(ci_value(&none), "true");
        fs::create_dir_all(d.path().join("env")).unwrap();
        fs::write(d.path().join("env/CI"), "false").unwrap();
        let set = libcnb::generic::GenericPlatform::from_path(d.path()).unwrap();
        assert_eq!(ci_value(&set), "false");
    }

    #[test]
    fn links_back_to_an_ancestor_are_removed_and_links_into_the_app_made_absolute() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("workspace");
        let modules = app.join("node_modules");
        fs::create_dir_all(app.join("packages/ui")).unwrap();
        fs::create_dir_all(modules.join("express/node_modules")).unwrap();
        fs::create_dir_all(modules.join(".bin")).unwrap();
        symlink("..", modules.join("shop")).unwrap();
        symlink("../../..", modules.join("express/node_modules/up")).unwrap();
        symlink("../packages/ui", modules.join("ui")).unwrap();
        symlink("../express/index.js", modules.join(".bin/express")).unwrap();
        symlink("/usr/lib/node_modules/npm", modules.join("npm")).unwrap();
        let changes = fix_links(&modules).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes
                .iter()
                .any(|c| c.contains("node_modules/shop -> ..")),
            "{changes:?}"
        );
        assert!(fs::symlink_metadata(modules.join("shop")).is_err());
        assert!(fs::symlink_metadata(modules.join("express/node_modules/up")).is_err());
        assert_eq!(
            fs::read_link(modules.join("ui")).unwrap(),
            app.join("packages/ui")
        );
        assert_eq!(
            fs::read_link(modules.join(".bin/express")).unwrap(),
            Path::new("../express/index.js")
        );
        assert_eq!(
            fs::read_link(modules.join("npm")).unwrap(),
            Path::new("/usr/lib/node_modules/npm")
        );
    }

    #[test]
    fn modules_move_and_link() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("app/node_modules");
        fs::create_dir_all(from.join("express")).unwrap();
        fs::write(from.join("express/index.js"), "x").unwrap();
        let to = d.path().join("layer/node_modules");
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        move_dir(&from, &to).unwrap();
        assert!(to.join("express/index.js").is_file());
        link_modules(&from, &to).unwrap();
        assert!(from.join("express/index.js").is_file());
        assert!(
            fs::symlink_metadata(&from)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        remove_modules(&from).unwrap();
        assert!(to.join("express/index.js").is_file());
    }
}
