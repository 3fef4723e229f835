//! `kiln/procfile`: a `Procfile` (`type: command` per line, Heroku's format) makes each entry
//! a launch process run by `sh -c`; `web` is the default, or the only entry when there is one.
//! It provides and requires `procfile`, recording the entries and the start command in the
//! plan, so `kiln detect` shows them.

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::LaunchBuilder;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::process::{self, shell};
use crate::common::{CnbResult, Error, Result, buildpack, pass};

/// The buildpack.
pub(crate) struct ProcfileBuildpack;

buildpack!(ProcfileBuildpack);

/// A parsed Procfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Procfile {
    /// `(type, command)` in file order.
    pub(crate) entries: Vec<(String, String)>,
}

impl Procfile {
    /// Reads the app's `Procfile`, if it has one.
    pub(crate) fn read(app: &App) -> Result<Option<Self>> {
        app.read("Procfile")?.map(|text| parse(&text)).transpose()
    }

    /// The default process type: `web`, or the only entry.
    pub(crate) fn default_type(&self) -> Option<&str> {
        if let Some((kind, _)) = self.entries.iter().find(|(k, _)| k == "web") {
            return Some(kind);
        }
        match self.entries.as_slice() {
            [(kind, _)] => Some(kind),
            _ => None,
        }
    }

    /// The command of the default process.
    pub(crate) fn start(&self) -> Option<&str> {
        let kind = self.default_type()?;
        self.entries
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, c)| c.as_str())
    }
}

/// Parses a Procfile: `type: command` lines; blank lines and `#` comments are skipped.
pub(crate) fn parse(text: &str) -> Result<Procfile> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: &str| {
            Error::new(format!("Procfile line {}: {problem}", index + 1))
                .hint("write each process as `type: command`, for example `web: ./server`")
        };
        let Some((kind, command)) = line.split_once(':') else {
            return Err(bad("expected `type: command`"));
        };
        let (kind, command) = (kind.trim(), command.trim());
        if kind.is_empty()
            || !kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad(&format!(
                "`{kind}` is not a process type (letters, digits, '.', '_', '-')"
            )));
        }
        if command.is_empty() {
            return Err(bad(&format!("process `{kind}` has no command")));
        }
        if entries.iter().any(|(k, _)| k == kind) {
            return Err(bad(&format!("process `{kind}` is defined twice")));
        }
        entries.push((kind.to_string(), command.to_string()));
    }
    if entries.is_empty() {
        return Err(Error::new("the Procfile has no processes")
            .hint("add a line such as `web: ./server`, or delete the Procfile"));
    }
    Ok(Procfile { entries })
}

#[derive(serde::Serialize)]
struct Decisions<'a> {
    processes: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<&'a str>,
}

fn detect(context: &DetectContext<ProcfileBuildpack>) -> CnbResult<DetectResult> {
    let app = App::new(&context.app_dir);
    let Some(procfile) = Procfile::read(&app)? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    pass(
        "procfile",
        &Decisions {
            processes: procfile.entries.iter().map(|(k, _)| k.as_str()).collect(),
            start: procfile.start(),
        },
    )
}

fn build(context: &BuildContext<ProcfileBuildpack>) -> CnbResult<BuildResult> {
    let app = App::new(&context.app_dir);
    let procfile = Procfile::read(&app)?
        .ok_or_else(|| Error::new("the Procfile disappeared between detect and build"))?;
    let default = procfile.default_type();
    let mut launch = LaunchBuilder::new();
    for (kind, command) in &procfile.entries {
        println!("  process {kind}: {command}");
        launch.process(process::process(
            kind,
            &shell(command),
            default == Some(kind.as_str()),
        )?);
    }
    BuildResultBuilder::new().launch(launch.build()).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_default() {
        let p =
            parse("# comment\n\nworker: ./work\nweb: gunicorn app:app --bind :$PORT\n").unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.default_type(), Some("web"));
        assert_eq!(p.start(), Some("gunicorn app:app --bind :$PORT"));
        let single = parse("clock: ./tick").unwrap();
        assert_eq!(single.default_type(), Some("clock"));
        let none = parse("a: x\nb: y\n").unwrap();
        assert_eq!(none.default_type(), None);
    }

    #[test]
    fn bad_procfiles_say_which_line() {
        for (text, problem) in [
            ("web ./x\n", "line 1: expected"),
            ("web: x\nweb: y\n", "line 2: process `web` is defined twice"),
            ("web:\n", "has no command"),
            ("we b: x\n", "not a process type"),
            ("# nothing\n", "no processes"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(problem), "{text:?}: {err}");
        }
    }
}
