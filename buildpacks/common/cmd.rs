//! Running build tools: each command is printed before it runs, its output goes straight to
//! the platform, and a failure names the command and how it ended.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Error, Result};

/// `program arg …` as a user would type it.
pub(crate) fn describe(command: &Command) -> String {
    let mut parts = vec![quote(command.get_program())];
    parts.extend(command.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `command`, printing it first; its output goes to the build log.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let line = describe(command);
    println!("  $ {line}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| spawn_error(command, &e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!("`{line}` failed ({status})")))
    }
}

/// Runs `command` quietly and returns its standard output (standard error goes to the log).
pub(crate) fn output(command: &mut Command) -> Result<String> {
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| spawn_error(command, &e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::new(format!(
            "`{}` failed ({})",
            describe(command),
            out.status
        )))
    }
}

fn spawn_error(command: &Command, error: &std::io::Error) -> Error {
    let program = command.get_program().to_string_lossy().into_owned();
    if error.kind() == std::io::ErrorKind::NotFound {
        Error::new(format!("`{program}` is not installed on the build host"))
            .hint("kiln builds with the build host's tools; install it and put it on PATH")
    } else {
        Error::new(format!("could not run `{program}`: {error}"))
    }
}

/// Where `name` is on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An error for a tool the build needs that is not on `PATH`.
pub(crate) fn missing(tool: &str, why: &str, install: &str) -> Error {
    Error::new(format!("`{tool}` is not on the build host's PATH; {why}")).hint(format!(
        "kiln builds with the build host's tools: {install}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_quoted() {
        let mut c = Command::new("pip");
        c.args(["install", "-r", "requirements.txt", "a b", "it's"]);
        assert_eq!(
            describe(&c),
            r"pip install -r requirements.txt 'a b' 'it'\''s'"
        );
    }

    #[test]
    fn failures_name_the_command() {
        let err = run(Command::new("false").arg("x")).unwrap_err();
        assert!(err.to_string().contains("`false x` failed"), "{err}");
        let err = run(&mut Command::new("kiln-no-such-tool")).unwrap_err();
        assert!(err.to_string().contains("not installed"), "{err}");
        assert_eq!(output(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }
}
