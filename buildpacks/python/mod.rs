//! `kiln/python`: installs a Python app's dependencies for the run image's Python and starts
//! it the way its framework expects.
//!
//! - **Detects** `requirements.txt`, `pyproject.toml` (PEP 621 with pip, Poetry, uv),
//!   `Pipfile`/`Pipfile.lock`, `setup.py`, or a lone `main.py`/`app.py`/`manage.py`.
//! - **Python** comes from the run image (the stack's `python` flavour: Debian's CPython,
//!   3.11 on bookworm, 3.13 on trixie). A version asked for in `.python-version`,
//!   `runtime.txt`, the Pipfile or `requires-python` is checked against it. A request it
//!   cannot meet is installed instead when the user configured a mirror of standalone CPython
//!   builds (`KILN_PYTHON_STANDALONE_MIRROR`, see [`standalone`]): detect picks the build
//!   and records it in the plan (`python`, `python-from = "standalone CPython"`,
//!   `python-asset`); build installs it into a cached build+launch layer `python` whose
//!   `bin` is on `PATH`, installs the dependencies and compiles the bytecode with it, and the
//!   run image then needs only the C runtime (the stack's `cc` flavour, or `shell` when the
//!   start command runs with `sh`). Without a mirror, or with one that lacks the version, the
//!   request fails naming it, the stacks' and the mirror's versions and the setting. The
//!   image carries the label `io.github.kiln-build.python.version` either way.
//! - **Dependencies** are installed with uv (pinned; see `uv.rs`), for the run image's Python
//!   and platform (wheels for the run image when the build's Python differs), into a
//!   `packages` layer found through `PYTHONUSERBASE` (so `.pth` files work and the standard
//!   library keeps precedence). Lockfiles are honoured exactly: `uv.lock` through `uv export`,
//!   `poetry.lock` and `Pipfile.lock` converted to pinned, hash-checked requirements; other
//!   requirements are resolved with `uv pip compile`. The layer is reused while the dependency
//!   files, the Python version and the platform stay the same, and synced in place
//!   (`uv pip sync`) when only the files changed.
//! - **Bytecode**: hash-based `.pyc` files for the packages and the standard library in a
//!   `bytecode` layer named by `PYTHONPYCACHEPREFIX`, so containers start without compiling
//!   (see `bytecode.rs`).
//! - **The project itself** is installed too when it is a package (a build system in
//!   pyproject.toml, or setup.py). A Poetry project in package mode with no package of its
//!   name gets its dependencies only, with a warning, as `poetry install` does.
//! - **Start**: Django (`manage.py`) under gunicorn, an app object (`app = Flask(…)`,
//!   `app = FastAPI()`) under gunicorn (WSGI) or uvicorn (ASGI), else `python3 main.py` or
//!   `app.py`, else the project's only script. A Procfile overrides it (`kiln/procfile`).
//!   `PORT` defaults to 8080; gunicorn reads it itself.

mod bytecode;
mod install;
mod locks;
mod pip;
pub(crate) mod project;
mod standalone;
mod uv;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::Label;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::process::{self, display};
use crate::common::{
    CnbResult, Error, Requested, buildpack, check_runtime, inventory, pass, say, section, setting,
    warn,
};
use project::{Project, analyze};
use standalone::{Asset, MIRROR_SETTING, Mirror};

/// The buildpack.
pub(crate) struct PythonBuildpack;

buildpack!(PythonBuildpack);

/// The port apps listen on when `PORT` is not set.
const DEFAULT_PORT: &str = "8080";

/// The label that records the Python version an image runs on.
pub(crate) const VERSION_LABEL: &str = "io.github.kiln-build.python.version";

#[derive(serde::Serialize)]
struct Decisions<'a> {
    #[serde(flatten)]
    project: &'a Project,
    /// The Python the app runs on: the run image's (when kiln knows it), or the standalone
    /// build kiln installs.
    #[serde(rename = "python", skip_serializing_if = "Option::is_none")]
    python: Option<String>,
    /// Where it comes from: `stack`, `run image` (one kiln has no inventory for) or
    /// `standalone CPython`.
    #[serde(rename = "python-from")]
    python_from: &'static str,
    /// The standalone build kiln installs (its file name on the mirror).
    #[serde(rename = "python-asset", skip_serializing_if = "Option::is_none")]
    asset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    /// The run image's packages when kiln installs Python: kiln reads this instead of the
    /// buildpack.toml's list.
    #[serde(rename = "run-image-mixins", skip_serializing_if = "Option::is_none")]
    run_image_mixins: Option<Vec<String>>,
}

fn forced_manager(env: &libcnb::Env) -> Option<String> {
    env.get("KILN_PYTHON_PACKAGE_MANAGER")
        .map(|v| v.to_string_lossy().into_owned())
}

/// Where the app's Python comes from.
enum Python {
    /// The stack's (the run image's): its version when kiln knows the run image.
    Stack(Option<String>),
    /// A standalone CPython build from the mirror.
    Standalone { mirror: Mirror, asset: Asset },
}

impl Python {
    fn version(&self) -> Option<&str> {
        match self {
            Self::Stack(v) => v.as_deref(),
            Self::Standalone { asset, .. } => Some(&asset.version),
        }
    }

    fn from(&self) -> &'static str {
        match self {
            Self::Stack(Some(_)) => "stack",
            Self::Stack(None) => "run image",
            Self::Standalone { .. } => standalone::FROM,
        }
    }
}

/// Decides where the app's Python comes from: the stack's when there is no request or the
/// run image meets it (see [`check_runtime`]), else a standalone build from the mirror the
/// user configured — the build `pinned` (what detect chose, read back from the plan) or the
/// best one for the request. The second value is a warning.
fn decide(
    target: &libcnb::Target,
    env: &libcnb::Env,
    project: &Project,
    pinned: Option<&str>,
) -> crate::common::Result<(Python, Option<String>)> {
    let provided = inventory::provided(target, "python3");
    let refused = match check_runtime(
        target,
        project.requested.as_ref(),
        "python3",
        "Python",
        project::check_version,
    ) {
        Ok(warning) => return Ok((Python::Stack(provided), warning)),
        Err(refused) => refused,
    };
    let Some(requested) = &project.requested else {
        return Err(refused);
    };
    // A request kiln cannot read is not one to download for.
    if standalone::meets(requested, &pep440_rs::Version::new([0])).is_err() {
        return Err(refused);
    }
    let stacks = stack_pythons(&target.arch);
    let Some(value) = setting(env, MIRROR_SETTING).filter(|v| !v.trim().is_empty()) else {
        return Err(refused
            .detail(format!(
                "kiln's stacks have {stacks}, and no standalone CPython mirror is configured ({MIRROR_SETTING})"
            ))
            .or_hint(format!(
                "set {MIRROR_SETTING} to the base URL of a mirror of standalone CPython builds (python-build-standalone's install_only tarballs and their SHA256SUMS) to install Python {} (kiln build --env {MIRROR_SETTING}=https://…)",
                requested.version
            )));
    };
    let mirror = Mirror::new(&value)?;
    let triple = standalone::triple(&target.arch)?;
    let wanted = format!(
        "Python {} ({}; kiln's stacks have {stacks})",
        requested.version, requested.source
    );
    let assets = mirror.assets(triple).map_err(|e| {
        e.context(format!(
            "cannot list the standalone CPython builds of {} ({MIRROR_SETTING}) for {wanted}",
            mirror.base()
        ))
    })?;
    let Some(asset) = standalone::choose(requested, &assets, pinned)?.cloned() else {
        let what = pinned.map_or_else(
            || {
                format!(
                    "no standalone CPython build for {triple} matches `{}`",
                    requested.version
                )
            },
            |p| format!("{p}, which detect chose, is gone"),
        );
        return Err(Error::new(format!(
            "{what} on the mirror {} ({MIRROR_SETTING}), asked for by {}; the mirror has {}, kiln's stacks have {stacks}",
            mirror.base(),
            requested.source,
            standalone::summary(&assets)
        ))
        .hint(format!(
            "ask for one of those in {}, or add the build to the mirror (its tarball and its SHA256SUMS line)",
            requested.source
        )));
    };
    Ok((Python::Standalone { mirror, asset }, None))
}

/// The Python of each kiln stack for `arch`: `Python 3.11.2 (bookworm), 3.13.5 (trixie)`.
fn stack_pythons(arch: &str) -> String {
    let list: Vec<String> = inventory::stacks_providing(arch, "python3")
        .into_iter()
        .map(|(stack, version)| format!("{version} ({stack})"))
        .collect();
    if list.is_empty() {
        "no Python".to_string()
    } else {
        format!("Python {}", list.join(", "))
    }
}

/// The run image's packages when kiln installs Python: the C runtime (a standalone CPython
/// needs glibc only; extension modules' other libraries are added by kiln's native library
/// check), and the shell and coreutils when a start command or Procfile runs with `sh`.
fn own_python_mixins(app: &App, project: &Project) -> Vec<String> {
    let mut mixins = vec!["libc6", "libgcc-s1", "libstdc++6"];
    let shell = project
        .command
        .as_ref()
        .is_some_and(|c| c.first().is_some_and(|p| p == "sh"))
        || app.is_file("Procfile");
    if shell {
        mixins.extend(["dash", "coreutils"]);
    }
    mixins.into_iter().map(str::to_string).collect()
}

/// The standalone build detect chose, from the build plan.
fn planned_asset(plan: &libcnb::data::buildpack_plan::BuildpackPlan) -> Option<String> {
    plan.entries.iter().find_map(|e| {
        (e.metadata.get("python-from")?.as_str()? == standalone::FROM)
            .then(|| e.metadata.get("python-asset")?.as_str().map(str::to_string))?
    })
}

fn detect(context: &DetectContext<PythonBuildpack>) -> CnbResult<DetectResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let env = context.platform.env();
    let forced = forced_manager(env);
    let Some(project) = analyze(&app, forced.as_deref())? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    // A version nothing provides fails here, before any run image is built.
    let (python, warning) = decide(&context.target, env, &project, None)?;
    if let Some(warning) = warning {
        println!("warning: {warning}");
    }
    let standalone = match &python {
        Python::Standalone { asset, .. } => Some(asset.name.clone()),
        Python::Stack(_) => None,
    };
    pass(
        "python",
        &Decisions {
            project: &project,
            python: python.version().map(str::to_string),
            python_from: python.from(),
            run_image_mixins: standalone
                .is_some()
                .then(|| own_python_mixins(&app, &project)),
            asset: standalone,
            start: project.command.as_deref().map(display),
        },
    )
}

fn build(context: &BuildContext<PythonBuildpack>) -> CnbResult<BuildResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let env = context.platform.env();
    let forced = forced_manager(env);
    let project = analyze(&app, forced.as_deref())?
        .ok_or_else(|| Error::new("the Python files disappeared between detect and build"))?;
    section("Python");
    let (python, warning) = decide(
        &context.target,
        env,
        &project,
        planned_asset(&context.buildpack_plan).as_deref(),
    )?;
    if let Some(warning) = warning {
        warn(&warning);
    }
    let interpreter = match &python {
        Python::Stack(provided) => {
            if let Some(provided) = provided {
                say(&format!("Python {provided} from the run image"));
            }
            None
        }
        Python::Standalone { mirror, asset } => Some(install::standalone_layer(
            context,
            mirror,
            asset,
            &requested(&project),
        )?),
    };

    install::install(
        context,
        &app,
        &project,
        python.version(),
        interpreter.as_deref(),
    )?;

    let mut launch = process::web_launch(
        &app,
        project.command.as_deref(),
        project.start_reason.as_deref(),
        "add a Procfile (`web: python3 your_app.py`), a main.py, or an app object served by gunicorn or uvicorn",
    )?;
    if let Some(version) = python.version() {
        launch.labels.push(Label {
            key: VERSION_LABEL.to_string(),
            value: version.to_string(),
        });
    }
    BuildResultBuilder::new().launch(launch).build()
}

/// The request, for messages (`3.12 in .python-version`).
fn requested(project: &Project) -> String {
    project
        .requested
        .as_ref()
        .map_or_else(String::new, |r: &Requested| {
            format!("{} in {}", r.version, r.source)
        })
}
