//! Front-end projects: a Node.js app whose `build` script writes a static site and that has
//! no server of its own (no `start` script, no `main` file, no `server.js`/`index.js`/
//! `app.js`/`main.js`). kiln/nodejs builds it and hands the output directory to kiln/static,
//! which serves it with lighttpd (the plan entry `static-site`, see the README, "Built-in
//! buildpacks"). Both buildpacks read the decision from here, so they agree on it.
//!
//! - **Output directory**, by framework: Vite and Astro → `dist/`, Create React App →
//!   `build/`, Next.js (`output: 'export'`) → `out/`; another build script → the first of
//!   `dist/`, `build/`, `out/` it made. A Staticfile's `root:` overrides it.
//! - **Single-page app fallback** (unknown paths answer with `index.html`, so client-side
//!   routes work on reload): when a client-side router is a dependency (react-router,
//!   vue-router, …), and by default for Vite and Create React App, whose builds are one
//!   `index.html` that routes in the browser. Astro and Next.js exports have a page per route,
//!   so an unknown path stays a 404. A Staticfile's `pushstate: enabled|disabled` overrides it.

use serde_json::Value;

use super::project;
use crate::common::Result;
use crate::common::files::App;

/// Where a build script may write a static site, in the order kiln looks.
pub(crate) const OUTPUT_DIRS: &[&str] = &["dist", "build", "out"];

/// Client-side routers: with one of them, unknown paths serve `index.html`.
const ROUTERS: &[&str] = &[
    "react-router",
    "react-router-dom",
    "@tanstack/react-router",
    "@reach/router",
    "vue-router",
    "@angular/router",
    "svelte-spa-router",
    "@solidjs/router",
    "preact-router",
    "wouter",
];

/// Frameworks by the dependency that names them: name, output directory, SPA by default.
const FRAMEWORKS: &[(&str, &str, &str, bool)] = &[
    ("next", "Next.js", "out", false),
    ("astro", "Astro", "dist", false),
    ("react-scripts", "Create React App", "build", true),
    ("vite", "Vite", "dist", true),
];

/// Framework config files, by the dependency they stand for.
const CONFIG_FILES: &[(&str, &str)] = &[
    ("vite.config.js", "vite"),
    ("vite.config.mjs", "vite"),
    ("vite.config.ts", "vite"),
    ("vite.config.mts", "vite"),
    ("astro.config.mjs", "astro"),
    ("astro.config.ts", "astro"),
];

/// A front-end project's static site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Frontend {
    /// The framework, when a dependency names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) framework: Option<&'static str>,
    /// The output directory the framework writes, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<&'static str>,
    /// Unknown paths serve `index.html`.
    pub(crate) spa: bool,
    /// Why (or why not) the fallback.
    #[serde(rename = "spa-reason")]
    pub(crate) spa_reason: String,
}

/// The front-end site of the app, or `None` when it is not a front-end project (not a
/// Node.js app, no `build` script, or a server to start).
pub(crate) fn analyze(app: &App) -> Result<Option<Frontend>> {
    let Some(project) = project::analyze(app)? else {
        return Ok(None);
    };
    if !project.has_package_json || !project.build_script || project.command.is_some() {
        return Ok(None);
    }
    let package = app.read_json("package.json")?.unwrap_or(Value::Null);
    let has = |name: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|section| package.get(section).and_then(|s| s.get(name)).is_some())
    };
    // The dependency names the framework; else its config file in the app root.
    let framework = FRAMEWORKS.iter().find(|(dep, ..)| has(dep)).or_else(|| {
        CONFIG_FILES
            .iter()
            .find(|(file, _)| app.is_file(file))
            .and_then(|(_, dep)| FRAMEWORKS.iter().find(|(d, ..)| d == dep))
    });
    let router = ROUTERS.iter().find(|r| has(r));
    let (spa, spa_reason) = match (router, framework) {
        (Some(router), _) => (true, format!("client-side routing ({router})")),
        (None, Some((_, name, _, true))) => (true, format!("a {name} single-page app")),
        (None, Some((_, name, _, false))) => (false, format!("{name} writes a page per route")),
        (None, None) => (false, "no client-side router".to_string()),
    };
    Ok(Some(Frontend {
        framework: framework.map(|f| f.1),
        output: framework.map(|f| f.2),
        spa,
        spa_reason,
    }))
}

/// The directory to serve after the build: the framework's, else the first of
/// [`OUTPUT_DIRS`] that exists.
pub(crate) fn output_dir(app: &App, frontend: &Frontend) -> Option<String> {
    match frontend.output {
        Some(dir) => app.is_dir(dir).then(|| dir.to_string()),
        None => OUTPUT_DIRS
            .iter()
            .find(|d| app.is_dir(d))
            .map(ToString::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn frontend(package: &str, files: &[&str]) -> Option<Frontend> {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("package.json"), package).unwrap();
        for f in files {
            fs::write(dir.path().join(f), "x").unwrap();
        }
        analyze(&App::new(dir.path())).unwrap()
    }

    #[test]
    fn build_scripts_without_servers_are_front_ends() {
        let vite = frontend(
            r#"{"scripts": {"build": "vite build"}, "devDependencies": {"vite": "^5"}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            (vite.framework, vite.output, vite.spa),
            (Some("Vite"), Some("dist"), true)
        );
        let cra = frontend(
            r#"{"scripts": {"build": "react-scripts build"}, "dependencies": {"react-scripts": "5"}}"#,
            &[],
        )
        .unwrap();
        assert_eq!((cra.output, cra.spa), (Some("build"), true));
        let astro = frontend(
            r#"{"scripts": {"build": "astro build"}, "dependencies": {"astro": "4"}}"#,
            &[],
        )
        .unwrap();
        assert_eq!((astro.output, astro.spa), (Some("dist"), false));
        let next = frontend(
            r#"{"scripts": {"build": "next build"}, "dependencies": {"next": "14", "react-router-dom": "6"}}"#,
            &[],
        )
        .unwrap();
        assert_eq!((next.output, next.spa), (Some("out"), true));
        assert!(next.spa_reason.contains("react-router-dom"));
        let config = frontend(
            r#"{"scripts": {"build": "node build.js"}}"#,
            &["vite.config.js"],
        );
        assert_eq!(config.unwrap().output, Some("dist"));
        let plain = frontend(r#"{"scripts": {"build": "node build.js"}}"#, &[]).unwrap();
        assert_eq!(
            (plain.framework, plain.output, plain.spa),
            (None, None, false)
        );
    }

    #[test]
    fn servers_and_projects_without_builds_are_not() {
        for (package, files) in [
            (
                r#"{"scripts": {"build": "vite build", "start": "vite preview"}}"#,
                &[][..],
            ),
            (
                r#"{"scripts": {"build": "tsc"}, "main": "lib.js"}"#,
                &["lib.js"][..],
            ),
            (r#"{"scripts": {"build": "tsc"}}"#, &["server.js"][..]),
            (
                r#"{"scripts": {"test": "jest"}, "devDependencies": {"vite": "5"}}"#,
                &[][..],
            ),
        ] {
            assert_eq!(frontend(package, files), None, "{package} {files:?}");
        }
    }
}
