//! Running buildpack executables: output streamed line by line, a tail kept for error
//! messages, and cancellation.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::event::CancelToken;

/// Lines of output kept for error messages.
const TAIL_LINES: usize = 40;
/// Longest line forwarded in one piece.
const MAX_LINE: usize = 64 * 1024;

/// How a process ended.
#[derive(Debug)]
pub(crate) struct ProcessOutcome {
    /// Exit code, if it exited normally.
    pub(crate) code: Option<i32>,
    /// Signal that killed it, if any.
    pub(crate) signal: Option<i32>,
    /// Whether kiln killed it because the build was cancelled.
    pub(crate) cancelled: bool,
    /// The last lines of its output.
    pub(crate) tail: Vec<String>,
}

impl ProcessOutcome {
    /// A human description of how it ended: "exit code 3", "signal 9".
    pub(crate) fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "an unknown status".to_string(),
        }
    }
}

/// The default of [`quiet_notice_interval`].
const QUIET_NOTICE: Duration = Duration::from_mins(1);

/// How long a buildpack's build may print nothing before kiln says it is still running (and
/// again after each further interval): `KILN_QUIET_NOTICE_SECS` (read once; `0` turns the
/// notice off, an unreadable value keeps the default), else a minute.
pub(crate) fn quiet_notice_interval() -> Option<Duration> {
    static INTERVAL: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *INTERVAL.get_or_init(|| {
        match std::env::var("KILN_QUIET_NOTICE_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => Some(QUIET_NOTICE),
        }
    })
}

/// Told when the process has printed nothing for `every`, and after each further `every`
/// of silence, with how long it has been silent.
pub(crate) struct QuietNotice<'a> {
    /// The interval.
    pub(crate) every: Duration,
    /// Called with the silence so far (a multiple of `every`).
    pub(crate) notify: &'a mut dyn FnMut(Duration),
}

/// Runs `command` with stdin closed, passing each line of its stdout and stderr (merged,
/// in arrival order) to `on_line`, and telling `quiet` about long silences. The process
/// gets its own process group so cancellation stops everything it started.
pub(crate) fn run(
    mut command: Command,
    cancel: &CancelToken,
    on_line: &mut dyn FnMut(String),
    mut quiet: Option<QuietNotice<'_>>,
) -> io::Result<ProcessOutcome> {
    // stdout and stderr share one pipe (the lifecycle gives both the same writer), so lines
    // keep the order the buildpack wrote them in.
    let (reader, writer) = std::io::pipe()?;
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let mut child = command.spawn()?;
    // Drop our copies of the write end, or the reader would never see end-of-file.
    drop(command);
    let (tx, rx) = mpsc::channel::<String>();
    let forwarder = thread::spawn(move || forward_lines(Box::new(reader), &tx));

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut cancelled = false;
    let mut exited_at: Option<Instant> = None;
    let mut status = None;
    let mut last_poll = Instant::now();
    let mut last_output = Instant::now();
    let mut notices: u32 = 0;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                last_output = Instant::now();
                notices = 0;
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                on_line(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(quiet) = quiet.as_mut()
                    && status.is_none()
                    && last_output.elapsed() >= quiet.every * (notices + 1)
                {
                    notices += 1;
                    (quiet.notify)(quiet.every * notices);
                }
            }
        }
        if !cancelled && cancel.is_cancelled() {
            cancelled = true;
            kill_group(child.id());
        }
        if status.is_none() && last_poll.elapsed() >= Duration::from_millis(50) {
            last_poll = Instant::now();
            status = child.try_wait()?;
            if status.is_some() {
                exited_at = Some(Instant::now());
            }
        }
        // A background process that inherited the pipes may keep them open after the
        // buildpack exits; don't wait for it forever.
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    if forwarder.is_finished() {
        let _ = forwarder.join();
    }
    Ok(ProcessOutcome {
        code: status.code(),
        signal: status.signal(),
        cancelled,
        tail: tail.into_iter().collect(),
    })
}

fn forward_lines(mut stream: Box<dyn Read + Send>, tx: &mpsc::Sender<String>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if tx.send(to_line(&line[..line.len() - 1])).is_err() {
                return;
            }
        }
        if pending.len() > MAX_LINE {
            let line: Vec<u8> = std::mem::take(&mut pending);
            if tx.send(to_line(&line)).is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(to_line(&pending));
    }
}

fn to_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn merges_lines_in_order_and_reports_exit_code() {
        let mut lines = Vec::new();
        let out = run(
            sh("echo one; echo two >&2; echo three; echo four >&2; printf 'five'; exit 3"),
            &CancelToken::new(),
            &mut |l| lines.push(l),
            None,
        )
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.describe(), "exit code 3");
        assert_eq!(lines, ["one", "two", "three", "four", "five"]);
        assert_eq!(out.tail, lines);
    }

    #[test]
    fn cancellation_kills_the_process() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let start = Instant::now();
        let out = run(sh("sleep 30"), &cancel, &mut |_| {}, None).unwrap();
        assert!(out.cancelled);
        assert_eq!(out.signal, Some(9));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn background_children_do_not_hang_the_caller() {
        let start = Instant::now();
        let out = run(
            sh("sleep 20 & echo started"),
            &CancelToken::new(),
            &mut |_| {},
            None,
        )
        .unwrap();
        assert_eq!(out.code, Some(0));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn long_silences_are_noticed_each_interval() {
        let mut notices = Vec::new();
        let mut lines = Vec::new();
        let out = run(
            sh("echo start; sleep 1; echo tick; sleep 1"),
            &CancelToken::new(),
            &mut |l| lines.push(l),
            Some(QuietNotice {
                every: Duration::from_millis(400),
                notify: &mut |d| notices.push(d),
            }),
        )
        .unwrap();
        assert_eq!(out.code, Some(0));
        assert_eq!(lines, ["start", "tick"]);
        // Every 400 ms of a silent second (a loaded machine may add one late), counted
        // afresh after "tick".
        let ms: Vec<u128> = notices.iter().map(Duration::as_millis).collect();
        assert_eq!(ms[..2], [400, 800], "{ms:?}");
        assert!(ms[2..].contains(&400), "{ms:?}");
        assert!(ms.iter().all(|m| m % 400 == 0), "{ms:?}");
    }
}
