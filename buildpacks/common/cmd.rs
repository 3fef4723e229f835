//! Running build tools: each command is printed before it runs, its output goes straight to
//! the platform, and a failure names the command and how it ended.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Error, Result, hints};

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

/// Lines of a tool's output kept to explain its failure.
const KEPT_LINES: usize = 200;

/// Runs `command`, printing it first; its output goes to the build log as it comes (once:
/// the error does not repeat it). When it fails and it is a tool kiln knows (pip, npm, go,
/// cargo), the error carries a hint read from its last lines ([`hints`]).
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let line = describe(command);
    println!("  $ {line}");
    let _ = std::io::stdout().flush();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let tool = hints::Tool::of(&command.get_program().to_string_lossy(), &args);
    let pipe_error = |e: std::io::Error| Error::new(format!("could not run `{line}`: {e}"));
    let (reader, writer) = std::io::pipe().map_err(pipe_error)?;
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(pipe_error)?)
        .stderr(writer);
    let spawned = command.spawn();
    // The command keeps its copies of the write end until they are replaced: without this
    // the reader would never see the end of the output.
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = spawned.map_err(|e| spawn_error(command, &e))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(reader);
        loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(buf).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut kept: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
    let mut status = None;
    let mut exited_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(bytes) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&bytes);
                if !bytes.ends_with(b"\n") {
                    let _ = out.write_all(b"\n");
                }
                let _ = out.flush();
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(String::from_utf8_lossy(&bytes).trim_end().to_string());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if status.is_none() {
            status = child.try_wait().map_err(|e| spawn_error(command, &e))?;
            if status.is_some() {
                exited_at = Some(Instant::now());
            }
        }
        // A background process that inherited the pipe may keep it open after the tool
        // exits; don't wait for it.
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait().map_err(|e| spawn_error(command, &e))?,
    };
    if status.success() {
        return Ok(());
    }
    let error = Error::new(format!("`{line}` failed ({status})"));
    let kept: Vec<String> = kept.into_iter().collect();
    Err(match tool.and_then(|tool| hints::hint(tool, &kept)) {
        Some(hint) => error.hint(hint),
        None => error,
    })
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

    #[test]
    fn failures_of_known_tools_carry_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let npm = dir.path().join("npm");
        std::fs::write(
            &npm,
            "#!/bin/sh\necho 'npm ERR! code ERESOLVE' >&2\necho 'npm ERR! ERESOLVE unable to resolve dependency tree' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&npm, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = run(Command::new(&npm).arg("ci")).unwrap_err().to_string();
        assert!(err.contains("npm ci` failed"), "{err}");
        assert!(err.contains("\nhint: npm cannot reconcile"), "{err}");
        // Its output went to the log, not into the error.
        assert!(!err.contains("npm ERR!"), "{err}");
        let err = run(Command::new("sh").args(["-c", "echo nope; exit 2"]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hint:"), "{err}");
    }
}
