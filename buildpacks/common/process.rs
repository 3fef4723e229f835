//! Launch processes and how they are shown.

use libcnb::data::launch::{Launch, LaunchBuilder, Process, ProcessBuilder, ProcessType};

use super::files::App;
use super::{Error, Result, say, warn};

/// A process of type `kind` running `command` (program and arguments, run directly).
pub(crate) fn process(kind: &str, command: &[String], default: bool) -> Result<Process> {
    let kind: ProcessType = kind.parse().map_err(|_| {
        Error::new(format!(
            "`{kind}` is not a valid process type: use letters, digits, '.', '_' and '-'"
        ))
    })?;
    Ok(ProcessBuilder::new(kind, command.iter().cloned())
        .default(default)
        .build())
}

/// The launch of a language buildpack: its start command as the default `web` process,
/// said in the build output with `reason`; without one, a warning with `advice` (unless a
/// Procfile will give the app its processes).
pub(crate) fn web_launch(
    app: &App,
    command: Option<&[String]>,
    reason: Option<&str>,
    advice: &str,
) -> Result<Launch> {
    let mut launch = LaunchBuilder::new();
    match command {
        Some(command) => {
            say(&format!(
                "process web: {} ({})",
                display(command),
                reason.unwrap_or("")
            ));
            launch.process(process("web", command, true)?);
        }
        None if !app.is_file("Procfile") => warn(&format!("no start command found: {advice}")),
        None => {}
    }
    Ok(launch.build())
}

/// A command line run by `sh -c`, so `$PORT` and other shell syntax work. A simple command
/// is `exec`ed, so the app, not the shell, is the container's main process and gets its
/// signals.
pub(crate) fn shell(command_line: &str) -> Vec<String> {
    let line = command_line.trim();
    let compound = line.contains(['\n', ';', '&', '|', '(', ')', '`']);
    let script = if compound || line.starts_with("exec ") {
        line.to_string()
    } else {
        format!("exec {line}")
    };
    vec!["sh".to_string(), "-c".to_string(), script]
}

/// How a command is shown in `kiln detect` (the plan's `start`) and build output: a shell
/// command shows its script, others their words.
pub(crate) fn display(command: &[String]) -> String {
    match command {
        [sh, c, script] if sh == "sh" && c == "-c" => {
            script.strip_prefix("exec ").unwrap_or(script).to_string()
        }
        words => words.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_commands_exec_when_simple() {
        assert_eq!(shell("gunicorn app:app")[2], "exec gunicorn app:app");
        assert_eq!(shell("./migrate && ./serve")[2], "./migrate && ./serve");
        assert_eq!(shell("exec ./serve")[2], "exec ./serve");
        assert_eq!(
            display(&shell("node x.js --port $PORT")),
            "node x.js --port $PORT"
        );
        assert_eq!(
            display(&["node".into(), "server.js".into()]),
            "node server.js"
        );
    }

    #[test]
    fn process_types_are_validated() {
        assert!(process("web", &["x".into()], true).is_ok());
        assert!(process("bad type", &["x".into()], true).is_err());
    }
}
