//! `kiln/nodejs`: installs a Node.js app's dependencies, runs its build script and starts it
//! on the run image's Node.js.
//!
//! - **Detects** `package.json`, or a lone `server.js`/`index.js`.
//! - **Node.js** comes from the run image (the stack's `nodejs` flavour: Debian's Node.js,
//!   18 on bookworm, 20 on trixie). `engines.node`, `.nvmrc` or `.node-version` is checked
//!   against it; a request it cannot meet fails, naming both and the kiln stacks that meet it.
//! - **Package manager**: `packageManager` in package.json, else the lockfile
//!   (`package-lock.json`/`npm-shrinkwrap.json` → npm, `yarn.lock` → Yarn 1 or Yarn 2+,
//!   `pnpm-lock.yaml` → pnpm, `bun.lock`/`bun.lockb` → Bun), else npm. Lockfiles of two
//!   different managers are an error. The build host's tool runs it (through `corepack` when
//!   only that is installed); installs are frozen to the lockfile (`npm ci`, `--frozen-lockfile`,
//!   `--immutable`). Yarn 2+ installs a `node_modules` tree (`YARN_NODE_LINKER=node-modules`):
//!   the image runs plain `node`, without Plug'n'Play's loader.
//! - **Layers**: the production dependencies live in a `modules` layer (its path must not end in `node_modules`, which Node.js skips when resolving) linked from
//!   `/workspace/node_modules`, reused while the lockfile and package.json's dependency
//!   sections stay the same. With a `build` script, the full dependencies (dev included) are
//!   installed into a cache layer, the script runs, and the launch layer gets them pruned to
//!   production ones. Installs and the build script run with `CI=true` unless the user set
//!   `CI` for the build (`kiln build --env CI=false`).
//! - **Start**: `scripts.start` (run directly when it is `node file …`, else with `sh -c` and
//!   `node_modules/.bin` on `PATH`), else `main`, else `server.js`/`index.js`/`app.js`/`main.js`.
//!   A Procfile overrides it. `PORT` defaults to 8080, `NODE_ENV` to `production`.

mod install;
pub(crate) mod project;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::process::{self, display};
use crate::common::{
    CnbResult, Error, buildpack, check_runtime, inventory, pass, say, section, warn,
};
use project::{Project, analyze};

/// The buildpack.
pub(crate) struct NodejsBuildpack;

buildpack!(NodejsBuildpack);

#[derive(serde::Serialize)]
struct Decisions<'a> {
    #[serde(flatten)]
    project: &'a Project,
    /// The Node.js the run image provides, when kiln knows it.
    #[serde(rename = "node", skip_serializing_if = "Option::is_none")]
    provided: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
}

/// The requested Node.js checked against the run image's (see [`check_runtime`]).
fn checked_version(
    target: &libcnb::Target,
    project: &Project,
) -> crate::common::Result<Option<String>> {
    check_runtime(
        target,
        project.requested.as_ref(),
        "nodejs",
        "Node.js",
        project::check_version,
    )
}

fn detect(context: &DetectContext<NodejsBuildpack>) -> CnbResult<DetectResult> {
    let app = App::new(&context.app_dir);
    let Some(project) = analyze(&app)? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    // A version the run image cannot provide fails here, before any run image is built.
    if let Some(warning) = checked_version(&context.target, &project)? {
        println!("warning: {warning}");
    }
    pass(
        "node",
        &Decisions {
            project: &project,
            provided: inventory::provided(&context.target, "nodejs"),
            start: project.command.as_deref().map(display),
        },
    )
}

fn build(context: &BuildContext<NodejsBuildpack>) -> CnbResult<BuildResult> {
    let app = App::new(&context.app_dir);
    let project = analyze(&app)?
        .ok_or_else(|| Error::new("package.json disappeared between detect and build"))?;
    section("Node.js");
    let provided = inventory::provided(&context.target, "nodejs");
    if let Some(warning) = checked_version(&context.target, &project)? {
        warn(&warning);
    }
    if let Some(provided) = &provided {
        say(&format!("Node.js {provided} from the run image"));
    }

    install::install(context, &app, &project, provided.as_deref())?;

    let launch = process::web_launch(
        &app,
        project.command.as_deref(),
        project.start_reason.as_deref(),
        "add scripts.start or main to package.json, a server.js, or a Procfile",
    )?;
    BuildResultBuilder::new().launch(launch).build()
}
