//! `kiln/r`: R apps — a batch script, a plumber API or a Shiny app — on the stack's R.
//!
//! - **Detects** `renv.lock`, `DESCRIPTION`, or an entry point: `plumber.R`, `app.R`,
//!   `server.R` with `ui.R`, `main.R`, `run.R`.
//! - **Starts**, as the default `web` process: a plumber API (`plumber.R`, or an `app.R`
//!   with `#*` plumber annotations) served on `$PORT` by `plumber::pr_run`; a Shiny app
//!   (`app.R` calling `shinyApp`, or `server.R` + `ui.R`) by `shiny::runApp` on `$PORT`;
//!   else `Rscript main.R` / `app.R` / `run.R` — a batch script, whose exit status is the
//!   container's.
//! - **Packages** ([`deps`]): R comes from the run image (the stack's `r` flavour); the R
//!   packages the app names are Debian's `r-cran-*` packages, which the buildpack asks kiln
//!   for in `kiln-debian-packages.toml` in its layers directory. kiln resolves them against
//!   the stack's archive and adds them, with what they depend on and the run image lacks, as
//!   one layer at the image's root, where R looks (`/usr/lib/R/site-library`).
//!
//! The request file is kiln's own: another CNB platform ignores it, and the image then has
//! only what its run image has.

pub(crate) mod deps;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::{CnbResult, Error, Result, buildpack, layers, pass, process, say, section};
use deps::RPackage;

/// The buildpack.
pub(crate) struct RBuildpack;

buildpack!(RBuildpack);

/// The port a web process listens on unless `PORT` says otherwise.
const DEFAULT_PORT: &str = "8080";

/// The file kiln reads the buildpack's Debian packages from (never part of the image).
pub(crate) const REQUEST_FILE: &str = "kiln-debian-packages.toml";

/// What kind of app it is, and its entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A plumber API file.
    Plumber(String),
    /// A Shiny app directory (`.`).
    Shiny,
    /// A script run to completion.
    Script(String),
}

impl Entry {
    /// The package the start command needs.
    fn package(&self) -> Option<&'static str> {
        match self {
            Self::Plumber(_) => Some("plumber"),
            Self::Shiny => Some("shiny"),
            Self::Script(_) => None,
        }
    }

    /// The start command.
    pub(crate) fn command(&self) -> Vec<String> {
        let port = "port = as.integer(Sys.getenv(\"PORT\", \"8080\"))";
        let words = |w: &[&str]| w.iter().map(ToString::to_string).collect();
        match self {
            Self::Plumber(file) => words(&[
                "Rscript",
                "-e",
                &format!("plumber::pr_run(plumber::pr(\"{file}\"), host = \"0.0.0.0\", {port})"),
            ]),
            Self::Shiny => words(&[
                "Rscript",
                "-e",
                &format!(
                    "shiny::runApp(\".\", host = \"0.0.0.0\", {port}, launch.browser = FALSE)"
                ),
            ]),
            Self::Script(file) => words(&["Rscript", file]),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Plumber(file) => format!("the plumber API {file}, served on $PORT"),
            Self::Shiny => "the Shiny app, served on $PORT".to_string(),
            Self::Script(file) => format!("the script {file}, run to completion"),
        }
    }
}

/// The app's entry point (see the module docs), if it has one.
pub(crate) fn entry(app: &App) -> Result<Option<Entry>> {
    if app.is_file("plumber.R") {
        return Ok(Some(Entry::Plumber("plumber.R".to_string())));
    }
    if let Some(text) = app.read("app.R")? {
        if text.lines().any(|l| l.trim_start().starts_with("#* @")) {
            return Ok(Some(Entry::Plumber("app.R".to_string())));
        }
        if text.contains("shinyApp(") || text.contains("library(shiny)") {
            return Ok(Some(Entry::Shiny));
        }
    }
    if app.is_file("server.R") && app.is_file("ui.R") {
        return Ok(Some(Entry::Shiny));
    }
    Ok(["main.R", "app.R", "run.R"]
        .into_iter()
        .find(|f| app.is_file(f))
        .map(|f| Entry::Script(f.to_string())))
}

/// Whether the app is an R app.
fn detected(app: &App) -> Result<bool> {
    Ok(app.is_file("renv.lock") || is_description(app)? || entry(app)?.is_some())
}

/// A `DESCRIPTION` file that is an R package description (it has a `Package:`, `Imports:` or
/// `Depends:` field), not some other project's file of that name.
fn is_description(app: &App) -> Result<bool> {
    Ok(app.read("DESCRIPTION")?.is_some_and(|text| {
        text.lines().any(|l| {
            ["Package:", "Imports:", "Depends:"]
                .iter()
                .any(|f| l.starts_with(f))
        })
    }))
}

#[derive(serde::Serialize)]
struct Decisions {
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    packages: Vec<RPackage>,
}

fn detect(context: &DetectContext<RBuildpack>) -> CnbResult<DetectResult> {
    let app = App::new(&context.app_dir);
    if !detected(&app)? {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    }
    let entry = entry(&app)?;
    let packages = deps::needed(&app, entry.as_ref().and_then(Entry::package))?;
    pass(
        "r",
        &Decisions {
            start: entry.map(|e| process::display(&e.command())),
            packages,
        },
    )
}

/// The request kiln reads: `[[package]]` tables with `name` (the Debian package), `for` (why)
/// and `pin` (the version the app pins, if any).
fn request(packages: &[RPackage]) -> Result<String> {
    #[derive(serde::Serialize)]
    struct Package<'a> {
        name: &'a str,
        #[serde(rename = "for")]
        why: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pin: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct Request<'a> {
        package: Vec<Package<'a>>,
    }
    let request = Request {
        package: packages
            .iter()
            .map(|p| Package {
                name: &p.debian,
                why: format!("R package {} ({})", p.name, p.source),
                pin: p.pin.as_deref(),
            })
            .collect(),
    };
    let body = toml::to_string(&request)
        .map_err(|e| Error::new(format!("cannot write {REQUEST_FILE}: {e}")))?;
    Ok(format!(
        "# Written by kiln/r: the Debian packages kiln adds to the image for this app.\n{body}"
    ))
}

fn build(context: &BuildContext<RBuildpack>) -> CnbResult<BuildResult> {
    let app = App::new(&context.app_dir);
    let entry = entry(&app)?;
    let packages = deps::needed(&app, entry.as_ref().and_then(Entry::package))?;
    section("R packages");
    if packages.is_empty() {
        say("none beyond R's own");
    }
    for p in &packages {
        let pin = p
            .pin
            .as_deref()
            .map(|v| format!(", pinned to {v}"))
            .unwrap_or_default();
        say(&format!(
            "{} from Debian's {} ({}{pin})",
            p.name, p.debian, p.source
        ));
    }
    let path = context.layers_dir.join(REQUEST_FILE);
    std::fs::write(&path, request(&packages)?)
        .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))?;
    // `PORT` for servers; renv's project autoloader (a renv project's `.Rprofile` sources
    // `renv/activate.R`, which would look for a renv library the image does not have) off,
    // since the packages come from the image.
    layers::launch_env(
        context,
        &layer_name!("env"),
        &layers::launch_defaults(&[("PORT", DEFAULT_PORT), ("RENV_ACTIVATE_PROJECT", "FALSE")]),
    )?;
    section("Start");
    let launch = process::web_launch(
        &app,
        entry.as_ref().map(Entry::command).as_deref(),
        entry.as_ref().map(Entry::describe).as_deref(),
        "add a main.R (a script), a plumber.R (an API), an app.R, or a Procfile (`web: Rscript your_script.R`)",
    )?;
    BuildResultBuilder::new().launch(launch).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::files::temp_app;

    #[test]
    fn entry_points_in_order() {
        type Files<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Files<'_>, Option<Entry>)] = &[
            (
                &[("plumber.R", "#* @get /\n"), ("main.R", "")],
                Some(Entry::Plumber("plumber.R".into())),
            ),
            (
                &[("app.R", "#* @get /hello\nfunction() 1\n")],
                Some(Entry::Plumber("app.R".into())),
            ),
            (
                &[("app.R", "library(shiny)\nshinyApp(ui, server)\n")],
                Some(Entry::Shiny),
            ),
            (&[("server.R", ""), ("ui.R", "")], Some(Entry::Shiny)),
            (
                &[("main.R", "print(1)\n"), ("run.R", "")],
                Some(Entry::Script("main.R".into())),
            ),
            (
                &[("app.R", "print(1)\n")],
                Some(Entry::Script("app.R".into())),
            ),
            (&[("ui.R", "")], None),
            (&[("DESCRIPTION", "Package: x\n")], None),
        ];
        for (files, want) in cases {
            let (_d, app) = temp_app(files);
            assert_eq!(&entry(&app).unwrap(), want, "{files:?}");
        }
    }

    #[test]
    fn detection_needs_an_r_file() {
        for (files, want) in [
            (&[("renv.lock", "{}")][..], true),
            (
                &[("DESCRIPTION", "Package: x\nImports: jsonlite\n")][..],
                true,
            ),
            (&[("DESCRIPTION", "A tool that does things.\n")][..], false),
            (&[("run.R", "")][..], true),
            (&[("helpers.R", "")][..], false),
        ] {
            let (_d, app) = temp_app(files);
            assert_eq!(detected(&app).unwrap(), want, "{files:?}");
        }
    }

    #[test]
    fn commands_listen_on_port() {
        let plumber = Entry::Plumber("plumber.R".into()).command();
        assert_eq!(plumber[..2], ["Rscript", "-e"]);
        assert!(
            plumber[2].contains("host = \"0.0.0.0\"") && plumber[2].contains("Sys.getenv(\"PORT\""),
            "{plumber:?}"
        );
        assert_eq!(
            Entry::Script("main.R".into()).command(),
            ["Rscript", "main.R"]
        );
    }

    #[test]
    fn the_request_lists_debian_packages_with_pins() {
        let packages = vec![RPackage {
            name: "jsonlite".into(),
            debian: "r-cran-jsonlite".into(),
            source: "renv.lock".into(),
            pin: Some("1.8.9".into()),
        }];
        let text = request(&packages).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let first = &parsed["package"].as_array().unwrap()[0];
        assert_eq!(first["name"].as_str(), Some("r-cran-jsonlite"));
        assert_eq!(first["pin"].as_str(), Some("1.8.9"));
        assert_eq!(
            first["for"].as_str(),
            Some("R package jsonlite (renv.lock)")
        );
    }
}
