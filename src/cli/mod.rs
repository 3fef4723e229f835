//! The `kiln` command line: clap definitions, one file per subcommand, and the exit codes.

// Doc comments here are `--help` text, where Markdown backticks would show literally.
#![allow(clippy::doc_markdown)]

/// Writes a line of results to stdout, returning the error (a closed pipe, typically) to
/// the caller instead of panicking as `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod build;
mod builder;
mod buildpack;
mod detect;
mod images;
mod inspect;
mod output;
mod rebase;
mod sbom;
mod stack;
mod store;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use self::output::Printer;

/// kiln turns a source tree into a reproducible OCI image with Cloud Native Buildpacks:
/// no Dockerfile, no daemon, no privileges.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Print only errors and the result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Print more: each buildpack's detect output (-v), debug details (-vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// kiln's home: the local image store and build scratch space
    /// [default: $KILN_HOME, else $XDG_DATA_HOME/kiln, else ~/.local/share/kiln].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build an image from source with buildpacks.
    Build(build::BuildArgs),
    /// Show which buildpacks apply to the source and their build plan.
    Detect(detect::DetectArgs),
    /// Show an image's base, layers, buildpacks, processes and environment.
    Inspect(inspect::InspectArgs),
    /// List the images in kiln's local store.
    Images(images::ImagesArgs),
    /// Remove images from kiln's local store.
    Rmi(images::RmiArgs),
    /// Build and lock run images from Debian packages.
    Stack(stack::StackArgs),
    /// Make builder images: kiln and a stack's build image, for CI pods.
    Builder(builder::BuilderArgs),
    /// List kiln's built-in buildpacks, or package one as a standalone buildpack.
    Buildpack(buildpack::BuildpackArgs),
    /// Copy an image to a registry (or any other destination).
    Push(transfer::PushArgs),
    /// Pull an image from a registry (or the Docker daemon) into kiln's store.
    Pull(transfer::PullArgs),
    /// Check kiln's local store.
    Store(store::StoreArgs),
    /// Manage the build caches in kiln's store.
    Cache(store::CacheArgs),
    /// Put an app image on a new run image without rebuilding it.
    Rebase(rebase::RebaseArgs),
    /// Print the SBOM (CycloneDX or SPDX JSON) attached to an image.
    Sbom(sbom::SbomArgs),
    /// Print the build's provenance (an in-toto statement, SLSA Provenance v1) attached to an
    /// image.
    Provenance(sbom::ProvenanceArgs),
}

/// Output format of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    #[default]
    Human,
    /// One JSON document on stdout (logs stay on stderr).
    Json,
}

/// How registries and the Docker daemon are reached (build, detect, push, pull, inspect).
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// Credentials for the registries of this command, USER:PASSWORD (before any credentials
    /// file; never printed).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "KILN_REGISTRY_AUTH",
        hide_env_values = true
    )]
    pub(crate) creds: Option<String>,
    /// A registry (host[:port]) to reach over plain HTTP; loopback registries always are
    /// (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub(crate) insecure_registries: Vec<String>,
    /// When to pull a registry image kiln's store already has: always (ask the registry),
    /// missing, or never.
    #[arg(long, value_name = "POLICY")]
    pub(crate) pull_policy: Option<String>,
}

impl TransportArgs {
    /// Library settings; `default_policy` applies without `--pull-policy`.
    pub(crate) fn to_transports(
        &self,
        default_policy: kiln::transport::registry::PullPolicy,
    ) -> anyhow::Result<kiln::transport::Transports> {
        let mut transports = kiln::transport::Transports::default();
        transports
            .registry
            .insecure
            .clone_from(&self.insecure_registries);
        transports.registry.credentials = self
            .creds
            .as_deref()
            .map(kiln::transport::registry::Credentials::parse)
            .transpose()
            .map_err(|e| UsageError(format!("invalid --creds / KILN_REGISTRY_AUTH: {e}")))?;
        transports.pull_policy = match &self.pull_policy {
            Some(p) => p
                .parse()
                .map_err(|e: kiln::transport::registry::InvalidPullPolicy| {
                    UsageError(format!("invalid --pull-policy: {e}"))
                })?,
            None => default_policy,
        };
        Ok(transports)
    }
}

/// Arguments shared by `build` and `detect`.
#[derive(Debug, Args)]
pub(crate) struct SourceArgs {
    /// The app's source directory.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub(crate) path: PathBuf,
    /// A buildpack: a directory, or the id[@version] of a built-in (kiln/python) or of one
    /// under --buildpacks-dir; repeat to build a group, in order [default: kiln's built-in
    /// order, see `kiln buildpack list`].
    #[arg(short, long = "buildpack", value_name = "DIR|ID")]
    pub(crate) buildpacks: Vec<String>,
    /// An order.toml of buildpack groups to try (instead of --buildpack).
    #[arg(long, value_name = "FILE", conflicts_with = "buildpacks")]
    pub(crate) order: Option<PathBuf>,
    /// A directory searched for buildpacks referenced by id (repeatable).
    #[arg(long = "buildpacks-dir", value_name = "DIR")]
    pub(crate) buildpacks_dirs: Vec<PathBuf>,
    /// A build-time environment variable for buildpacks: NAME=VALUE, or NAME to pass
    /// kiln's own value through (repeatable).
    #[arg(short, long = "env", value_name = "NAME[=VALUE]")]
    pub(crate) env: Vec<String>,
    /// A file of NAME=VALUE lines (blank lines and # comments ignored; a bare NAME passes
    /// kiln's own value through).
    #[arg(long = "env-file", value_name = "FILE")]
    pub(crate) env_files: Vec<PathBuf>,
    /// The image the app runs on: a registry image (HOST/REPO:TAG, docker://NAME), a name in
    /// kiln's store, oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE[:NAME],
    /// docker-daemon:NAME or scratch [default: the flavour of --stack the buildpacks need,
    /// built on first use].
    #[arg(long, value_name = "REF")]
    pub(crate) run_image: Option<String>,
    /// The stack default run images come from (a built-in stack or a stack directory)
    /// [default: trixie, or the built-in stack with the Python or Node.js version the app asks
    /// for].
    #[arg(long, value_name = "STACK")]
    pub(crate) stack: Option<String>,
    /// Platform of the run image to use (os/arch[/variant]) [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub(crate) platform: Option<String>,
    /// CNB execution environment (CNB_EXEC_ENV).
    #[arg(long, default_value = "production", value_name = "ENV")]
    pub(crate) exec_env: String,
    /// Where buildpacks run: `image` (a build image as their root file system:
    /// --build-image, else the stack's build flavour with their toolchain) or `host` (the
    /// host's tools, in a private namespace).
    #[arg(
        long,
        value_enum,
        default_value_t = BuildEnvArg::Image,
        env = "KILN_BUILD_ENV",
        value_name = "ENV"
    )]
    pub(crate) build_env: BuildEnvArg,
    /// The build image buildpacks run in, by any reference [default: the build flavour of
    /// --stack with the buildpacks' toolchain, built on first use].
    #[arg(long, value_name = "REF")]
    pub(crate) build_image: Option<String>,
    /// A CA bundle (PEM) buildpacks trust instead of the host's, for a proxy or a private
    /// package index.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_certs: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
}

/// `--build-env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BuildEnvArg {
    /// A build image as the buildpacks' root file system.
    Image,
    /// The host's tools, in a private namespace.
    Host,
}

impl SourceArgs {
    /// Library options for `kiln detect`, which publishes nothing.
    pub(crate) fn to_detect_options(&self) -> anyhow::Result<kiln::BuildOptions> {
        self.to_options(|path| Ok(kiln::BuildOptions::for_detect(path)))
    }

    /// Converts to library options: `make` makes them from the app's directory (with the
    /// destination, for a build) once these arguments are known to be valid, so their
    /// mistakes are reported before the caller's.
    pub(crate) fn to_options(
        &self,
        make: impl FnOnce(&std::path::Path) -> anyhow::Result<kiln::BuildOptions>,
    ) -> anyhow::Result<kiln::BuildOptions> {
        let buildpacks = kiln::BuildpackSelection {
            buildpacks: self
                .buildpacks
                .iter()
                .map(|b| kiln::BuildpackRef::parse(b))
                .collect(),
            order_file: self.order.clone(),
            search_roots: self.buildpacks_dirs.clone(),
        };
        let run_image = self
            .run_image
            .as_deref()
            .map(|r| {
                r.parse()
                    .with_context(|| format!("invalid --run-image {r:?}"))
            })
            .transpose()?;
        let platform = self
            .platform
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: kiln::image::InvalidPlatform| {
                UsageError(format!("invalid --platform: {e}"))
            })?;
        if self.exec_env.is_empty() || self.exec_env.contains('/') {
            return Err(UsageError(format!(
                "invalid --exec-env {:?}: it must be non-empty and contain no '/'",
                self.exec_env
            ))
            .into());
        }
        let mut env = std::collections::BTreeMap::new();
        for file in &self.env_files {
            let text = kiln::read_env_file(file)
                .with_context(|| format!("failed to read env file {}", file.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (name, value) =
                    parse_env(line).with_context(|| format!("{}:{}", file.display(), n + 1))?;
                env.insert(name, value);
            }
        }
        for entry in &self.env {
            let (name, value) =
                parse_env(entry).map_err(|e| UsageError(format!("invalid --env: {e:#}")))?;
            env.insert(name, value);
        }
        let source_date_epoch = source_date_epoch()?;
        let build_image = self
            .build_image
            .as_deref()
            .map(|r| {
                r.parse()
                    .with_context(|| format!("invalid --build-image {r:?}"))
            })
            .transpose()?;
        if build_image.is_some() && self.build_env != BuildEnvArg::Image {
            return Err(UsageError("--build-image needs --build-env image".to_string()).into());
        }
        let transports = self
            .transport
            .to_transports(kiln::transport::registry::PullPolicy::Always)?;
        let mut options = make(&self.path)?;
        options.buildpacks = buildpacks;
        options.run_image = run_image;
        // A stack the user names always wins; without one kiln may pick the stack with the
        // runtime the app asks for.
        if let Some(stack) = &self.stack {
            options.stack.clone_from(stack);
            options.auto_stack = false;
        }
        options.platform = platform;
        options.exec_env.clone_from(&self.exec_env);
        options.env = env;
        options.source_date_epoch = source_date_epoch;
        options.transports = transports;
        options.build_environment = match self.build_env {
            BuildEnvArg::Host => kiln::BuildEnvironment::Host,
            BuildEnvArg::Image => kiln::BuildEnvironment::Image,
        };
        options.build_image = build_image;
        if let Some(ca) = &self.ca_certs {
            if !ca.is_file() {
                return Err(UsageError(format!(
                    "--ca-certs {}: not a file; give a PEM CA bundle",
                    ca.display()
                ))
                .into());
            }
            options.ca_certs = Some(std::path::absolute(ca).unwrap_or_else(|_| ca.clone()));
        }
        Ok(options)
    }
}

/// A mistake in the command line; exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// Parses `NAME=VALUE` or `NAME` (whose value comes from kiln's environment).
fn parse_env(entry: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = match entry.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (entry, None),
    };
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(UsageError(format!(
            "{entry:?}: a variable name must be non-empty and contain no '/'"
        ))
        .into());
    }
    let value = match value {
        Some(v) => v,
        None => std::env::var(name).with_context(|| {
            format!("{name} is not set in kiln's environment; write {name}=VALUE")
        })?,
    };
    Ok((name.to_string(), value))
}

/// `SOURCE_DATE_EPOCH` from the environment; an invalid value is an error (a build that
/// silently ignored it would not be the build the user asked for).
pub(crate) fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => kiln::reproducible::parse_source_date_epoch(&v)
            .map(Some)
            .ok_or_else(|| {
                UsageError(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970; unset it or fix it"
                ))
                .into()
            }),
        Err(_) => Ok(None),
    }
}

/// Opens kiln's store at `--home`/`KILN_HOME` or the default place.
pub(crate) fn open_store(home: Option<&PathBuf>) -> anyhow::Result<kiln::Store> {
    let root = match home {
        Some(h) => h.clone(),
        None => kiln::Store::default_root()?,
    };
    let root = std::path::absolute(&root)
        .with_context(|| format!("invalid kiln home {}", root.display()))?;
    Ok(kiln::Store::open(root)?)
}

/// Opens the store for a command that writes blobs to it (pulls, pushes, stack builds),
/// holding the guard that keeps `kiln cache prune` away meanwhile.
pub(crate) fn open_store_guarded(
    home: Option<&PathBuf>,
) -> anyhow::Result<(kiln::Store, kiln::cache::gc::BuildGuard)> {
    let store = open_store(home)?;
    let guard = kiln::cache::gc::BuildGuard::acquire(&store)?;
    Ok((store, guard))
}

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let printer = Printer::new(cli.quiet, cli.verbose);
    let cancel = kiln::CancelToken::new();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while cancelling exits at once with the conventional code.
        signal_hook::flag::register_conditional_shutdown(signal, 130, cancel.flag())?;
        signal_hook::flag::register(signal, cancel.flag())?;
    }
    let result = match cli.command {
        Command::Build(args) => build::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Detect(args) => detect::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Inspect(args) => inspect::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Images(args) => images::run_images(&args, cli.home.as_ref()),
        Command::Rmi(args) => images::run_rmi(&args, cli.home.as_ref()),
        Command::Stack(args) => stack::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Builder(args) => builder::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Buildpack(args) => buildpack::run(&args),
        Command::Push(args) => transfer::run_push(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Pull(args) => transfer::run_pull(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Store(args) => store::run(&args, cli.home.as_ref()),
        Command::Cache(args) => store::run_cache(&args, cli.home.as_ref(), &printer),
        Command::Rebase(args) => rebase::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Sbom(args) => sbom::run(&args, cli.home.as_ref(), &printer, &cancel),
        Command::Provenance(args) => {
            sbom::run_provenance(&args, cli.home.as_ref(), &printer, &cancel)
        }
    };
    // However deeply a module wrapped it, a cancellation is reported as one thing:
    // "cancelled" (exit code 130), not as the chain of the errors carrying it.
    result.map_err(|error| {
        if kiln::is_cancelled(error.as_ref()) {
            kiln::Cancelled.into()
        } else {
            error
        }
    })
}

/// Exit codes. kiln follows the CNB lifecycle's codes where one exists.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success |
/// | 1 | any other failure (I/O, store, internal) |
/// | 2 | invalid command line or options |
/// | 3 | invalid input: source directory (also one deeper than kiln's limit), buildpack directory or descriptor, order or project file (also a `project.toml` or `.kilnignore` that is a link, a FIFO or too large), image reference |
/// | 12 | a buildpack declares an unsupported Buildpack API |
/// | 20 | no buildpack group passed detection |
/// | 21 | a required buildpack's detect errored (detection stops there), or an optional one errored and no group passed |
/// | 30 | the run image (or an image to inspect, pull or push) is missing, invalid, corrupt or unreachable |
/// | 40 | a stack cannot be built: its definition, lock or options are wrong |
/// | 41 | a stack's mirror is missing, unreachable or no longer serves a locked package |
/// | 42 | a stack's archive failed verification (signature or checksum) |
/// | 51 | a buildpack's build failed |
/// | 52 | a buildpack wrote invalid output (layer, launch, build or store TOML, a metadata file over 1 MiB, a layer name that is not one path component, an env file that names no variable) |
/// | 53 | a process cannot start: its program, or its script's `#!` interpreter, is not in the image (launch check) |
/// | 62 | the image could not be exported |
/// | 63 | the image could not be written to its destination (file, daemon, registry) |
/// | 130 | cancelled (Ctrl-C / SIGTERM), whatever was running: build, detect, stack build, pull, push, rebase |
///
/// Cancellation is checked first: an error caused by [`kiln::Cancelled`] anywhere in its
/// chain is 130, whichever module's error carries it.
pub(crate) fn exit_code(error: &anyhow::Error) -> u8 {
    use kiln::buildpack::BuildpackError;
    use kiln::lifecycle::BuildError;
    if kiln::is_cancelled(error.as_ref()) {
        return 130;
    }
    let usage = error
        .chain()
        .any(|e| e.is::<UsageError>() || e.is::<kiln::image::reference::ReferenceError>());
    if usage {
        return 2;
    }
    if let Some(error) = error.downcast_ref::<kiln::rebase::RebaseError>() {
        use kiln::rebase::RebaseError as R;
        return match error {
            R::Image { .. } | R::RunImage(_) => 30,
            R::NotRebasable { .. } | R::Incompatible { .. } => 31,
            R::Write(_) => 62,
            R::Publish(_) => 63,
            _ => 1,
        };
    }
    if let Some(error) = error.downcast_ref::<kiln::builder::BuilderError>() {
        use kiln::builder::BuilderError as B;
        return match error {
            B::NotBuildFlavour { .. } => 2,
            B::Stack(e) => stack_exit_code(e),
            B::Image(_) => 30,
            B::Publish(_) => 63,
            _ => 1,
        };
    }
    let Some(error) = error.downcast_ref::<kiln::Error>() else {
        return 1;
    };
    match error {
        kiln::Error::InvalidOptions(_) => 2,
        kiln::Error::Buildpack(BuildpackError::UnsupportedApi { .. })
        | kiln::Error::Detect(kiln::lifecycle::DetectError::Buildpack(
            BuildpackError::UnsupportedApi { .. },
        )) => 12,
        kiln::Error::App(_)
        | kiln::Error::Catalog(_)
        | kiln::Error::Buildpack(_)
        | kiln::Error::Detect(kiln::lifecycle::DetectError::Buildpack(_)) => 3,
        kiln::Error::NothingDetected { .. } => 20,
        kiln::Error::Detect(kiln::lifecycle::DetectError::BuildpackErrored { .. }) => 21,
        kiln::Error::Analyze(_) | kiln::Error::Image(_) => 30,
        kiln::Error::Build(BuildError::BuildpackFailed { .. } | BuildError::Spawn { .. }) => 51,
        kiln::Error::Build(BuildError::InvalidOutput { .. })
        | kiln::Error::Export(kiln::lifecycle::ExportError::EnvFiles(
            kiln::EnvDirError::Invalid { .. },
        )) => 52,
        kiln::Error::Export(
            kiln::lifecycle::ExportError::ProgramMissing { .. }
            | kiln::lifecycle::ExportError::LibraryMissing { .. }
            | kiln::lifecycle::ExportError::DebianPackagesMissing { .. },
        ) => 53,
        kiln::Error::Export(_) => 62,
        kiln::Error::Publish(_) => 63,
        kiln::Error::Stack(e) => stack_exit_code(e),
        _ => 1,
    }
}

/// 42: verification failed (signature, checksum); 41: the mirror failed or is missing;
/// 40: anything else about the stack (definition, lock, options).
fn stack_exit_code(error: &kiln::stack::StackError) -> u8 {
    use kiln::stack::FetchError;
    use kiln::stack::StackError as E;
    match error {
        E::Release(kiln::stack::ReleaseError::BadSignature { .. })
        | E::IndexMismatch { .. }
        | E::Fetch(FetchError::Mismatch { .. }) => 42,
        E::Fetch(_) | E::NoMirror(_) | E::NotServed { .. } => 41,
        _ => 40,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cancellation_exits_130_whichever_error_carries_it() {
        use kiln::Cancelled;
        use kiln::transport::publish::PublishError;
        use kiln::transport::registry::RegistryError;
        let errors: Vec<anyhow::Error> = vec![
            Cancelled.into(),
            kiln::Error::Cancelled(Cancelled).into(),
            kiln::Error::from(kiln::lifecycle::BuildError::from(Cancelled)).into(),
            kiln::Error::from(kiln::lifecycle::DetectError::from(Cancelled)).into(),
            kiln::Error::from(kiln::lifecycle::ExportError::from(Cancelled)).into(),
            kiln::Error::from(kiln::stack::StackError::from(Cancelled)).into(),
            kiln::Error::from(kiln::image::ImageError::from(RegistryError::from(
                Cancelled,
            )))
            .into(),
            kiln::Error::from(PublishError::from(RegistryError::from(Cancelled))).into(),
            kiln::rebase::RebaseError::from(PublishError::from(RegistryError::from(Cancelled)))
                .into(),
            anyhow::Error::from(kiln::Error::from(kiln::stack::StackError::from(Cancelled)))
                .context("while building the run image"),
        ];
        for error in &errors {
            assert_eq!(exit_code(error), 130, "{error:#}");
        }
        let other: anyhow::Error =
            kiln::Error::from(kiln::stack::StackError::NoMirror("cancelled".to_string())).into();
        assert_eq!(exit_code(&other), 41);
    }

    #[test]
    fn env_entries_parse() {
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert_eq!(parse_env("EMPTY=").unwrap().1, "");
        assert!(parse_env("=x").is_err());
        assert!(parse_env("a/b=x").is_err());
        assert!(parse_env("KILN_SURELY_UNSET_VARIABLE").is_err());
    }
}
