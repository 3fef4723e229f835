//! `kiln/nodejs`: installs a Node.js app's dependencies, runs its build script and starts it
//! on the run image's Node.js.
//!
//! - **Detects** `package.json`, or a lone `server.js`/`index.js`.
//! - **Node.js** comes from the run image (the stack's `nodejs` flavour: Debian's Node.js 18).
//!   `engines.node`, `.nvmrc` or `.node-version` is checked against it; a request it cannot
//!   meet fails, naming both.
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
//! - **Front-end projects** (a `build` script and no server, see [`frontend`]): kiln/nodejs
//!   builds the site and provides the plan entry `static-site`, which kiln/static (the next
//!   member of kiln's default group) requires: kiln/static then serves the output directory
//!   with lighttpd, and kiln/nodejs asks for no run-image packages (`run-image-mixins = []`
//!   in its requirement's metadata), so the image is the small `static` flavour without
//!   Node.js. Without kiln/static in the group the plan falls back to the ordinary one.

pub(crate) mod frontend;
mod install;
pub(crate) mod project;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::build_plan::{BuildPlanBuilder, Require};
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
    /// A front-end project handed to kiln/static: what it serves.
    #[serde(rename = "static-site", skip_serializing_if = "Option::is_none")]
    site: Option<&'a frontend::Frontend>,
    /// The run image needs none of kiln/nodejs's packages (the site is served by
    /// kiln/static): kiln reads this instead of the buildpack.toml's list.
    #[serde(rename = "run-image-mixins", skip_serializing_if = "Option::is_none")]
    run_image_mixins: Option<Vec<String>>,
}

/// The plan entry a front-end project's build provides for kiln/static.
pub(crate) const STATIC_SITE: &str = "static-site";

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
    let decisions = Decisions {
        project: &project,
        provided: inventory::provided(&context.target, "nodejs"),
        start: project.command.as_deref().map(display),
        site: None,
        run_image_mixins: None,
    };
    let Some(site) = frontend::analyze(&app)? else {
        return pass("node", &decisions);
    };
    // First choice: hand the built site to kiln/static; else the ordinary plan.
    let mut handover = Require::new("node");
    let mut plain = Require::new("node");
    let record = |e: toml::ser::Error| Error::new(format!("cannot record the plan: {e}"));
    plain.metadata(&decisions).map_err(record)?;
    handover
        .metadata(&Decisions {
            site: Some(&site),
            run_image_mixins: Some(Vec::new()),
            ..decisions
        })
        .map_err(record)?;
    DetectResultBuilder::pass()
        .build_plan(
            BuildPlanBuilder::new()
                .provides("node")
                .provides(STATIC_SITE)
                .requires(handover)
                .or()
                .provides("node")
                .requires(plain)
                .build(),
        )
        .build()
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

    let handed_over = context
        .buildpack_plan
        .entries
        .iter()
        .any(|e| e.name == STATIC_SITE);
    if handed_over {
        say("the built site is served by kiln/static (no start command: a front-end project)");
        return BuildResultBuilder::new().build();
    }
    let launch = process::web_launch(
        &app,
        project.command.as_deref(),
        project.start_reason.as_deref(),
        "add scripts.start or main to package.json, a server.js, or a Procfile",
    )?;
    BuildResultBuilder::new().launch(launch).build()
}
