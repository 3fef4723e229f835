//! `kiln/python`: installs a Python app's dependencies for the run image's Python and starts
//! it the way its framework expects.
//!
//! - **Detects** `requirements.txt`, `pyproject.toml` (PEP 621 with pip, Poetry, uv),
//!   `Pipfile`/`Pipfile.lock`, `setup.py`, or a lone `main.py`/`app.py`/`manage.py`.
//! - **Python** comes from the run image (the stack's `python` flavour: Debian's CPython,
//!   3.11 on bookworm, 3.13 on trixie). A version asked for in `.python-version`,
//!   `runtime.txt`, the Pipfile or `requires-python` is checked against it; a request it
//!   cannot meet fails, naming both and the kiln stacks that meet it.
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
mod uv;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::process::{self, display};
use crate::common::{
    CnbResult, Error, buildpack, check_runtime, inventory, pass, say, section, warn,
};
use project::{Project, analyze};

/// The buildpack.
pub(crate) struct PythonBuildpack;

buildpack!(PythonBuildpack);

/// The port apps listen on when `PORT` is not set.
const DEFAULT_PORT: &str = "8080";

#[derive(serde::Serialize)]
struct Decisions<'a> {
    #[serde(flatten)]
    project: &'a Project,
    /// The Python the run image provides, when kiln knows it.
    #[serde(rename = "python", skip_serializing_if = "Option::is_none")]
    provided: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
}

fn forced_manager(env: &libcnb::Env) -> Option<String> {
    env.get("KILN_PYTHON_PACKAGE_MANAGER")
        .map(|v| v.to_string_lossy().into_owned())
}

/// The requested Python checked against the run image's (see [`check_runtime`]).
fn checked_version(
    target: &libcnb::Target,
    project: &Project,
) -> crate::common::Result<Option<String>> {
    check_runtime(
        target,
        project.requested.as_ref(),
        "python3",
        "Python",
        project::check_version,
    )
}

fn detect(context: &DetectContext<PythonBuildpack>) -> CnbResult<DetectResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let forced = forced_manager(context.platform.env());
    let Some(project) = analyze(&app, forced.as_deref())? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    // A version the run image cannot provide fails here, before any run image is built.
    if let Some(warning) = checked_version(&context.target, &project)? {
        println!("warning: {warning}");
    }
    pass(
        "python",
        &Decisions {
            project: &project,
            provided: inventory::provided(&context.target, "python3"),
            start: project.command.as_deref().map(display),
        },
    )
}

fn build(context: &BuildContext<PythonBuildpack>) -> CnbResult<BuildResult> {
    use libcnb::Platform as _;
    let app = App::new(&context.app_dir);
    let forced = forced_manager(context.platform.env());
    let project = analyze(&app, forced.as_deref())?
        .ok_or_else(|| Error::new("the Python files disappeared between detect and build"))?;
    section("Python");
    let provided = inventory::provided(&context.target, "python3");
    if let Some(warning) = checked_version(&context.target, &project)? {
        warn(&warning);
    }
    if let Some(provided) = &provided {
        say(&format!("Python {provided} from the run image"));
    }

    install::install(context, &app, &project, provided.as_deref())?;

    let launch = process::web_launch(
        &app,
        project.command.as_deref(),
        project.start_reason.as_deref(),
        "add a Procfile (`web: python3 your_app.py`), a main.py, or an app object served by gunicorn or uvicorn",
    )?;
    BuildResultBuilder::new().launch(launch).build()
}
