//! One `[[script]]` run (docs/hooks.md, "Scripts"; go-rtmp style shell hook): spawn the program
//! with the event in its environment, wait at most `hook_timeout`, kill it there, and report
//! what happened with the start of its output for the log.
//!
//! What the program gets:
//! - the environment of ringcast, minus any inherited `RTMP_*` variable (a stale one would read
//!   as event data), plus the event's variables ([`format::env_vars`]: `RTMP_EVENT_TYPE`,
//!   `RTMP_STREAM_KEY`, ...);
//! - on stdin, the event's envelope JSON (the webhook `envelope` body) as one line, then end
//!   of file: an extra over go-rtmp's hooks for scripts that would rather `jq` than parse variables.
//!   A script that ignores stdin loses nothing;
//! - the working directory of ringcast; no arguments.
//!
//! The program runs in a process group of its own, and the timeout kills the whole group with
//! SIGKILL, so `sleep 100 &` in a shell script does not outlive it. The program itself is
//! always reaped (no zombies), and [`run`] returns within the timeout plus a fraction of a
//! second whatever the program does: output still held open by an escaped grandchild is given
//! up on, not waited for. A program that exits normally keeps any background children it
//! started on purpose.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::event::Event;
use super::format;

/// The most of each of stdout and stderr kept for the log; the rest is read and discarded so a
/// chatty program never blocks on a full pipe.
pub const CAPTURE_LIMIT: usize = 4 * 1024;

/// How long output readers may take to finish once the program is gone: normally they see end
/// of file at once; longer means a grandchild holds the pipe, and it is not waited for.
const READER_GRACE: Duration = Duration::from_millis(250);

/// Longest sleep between checks of whether the program has exited: bounds how late an exit or
/// the timeout is noticed.
const MAX_POLL: Duration = Duration::from_millis(20);

/// How a run ended.
#[derive(Debug)]
pub enum ScriptStatus {
    /// The program exited (or was killed by a signal it did not get from us).
    Exited(ExitStatus),
    /// Still running at the timeout: killed, with its process group, and reaped.
    TimedOut,
    /// The program could not be started (missing, not executable, bad interpreter line...).
    SpawnFailed(io::Error),
}

impl fmt::Display for ScriptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptStatus::Exited(status) => match (status.code(), status.signal()) {
                (Some(code), _) => write!(f, "exited with status {code}"),
                (None, Some(signal)) => write!(f, "killed by signal {signal}"),
                (None, None) => write!(f, "ended: {status}"),
            },
            ScriptStatus::TimedOut => f.write_str("timed out and was killed"),
            ScriptStatus::SpawnFailed(e) => write!(f, "could not be started: {e}"),
        }
    }
}

/// The start of one output stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    /// At most [`CAPTURE_LIMIT`] bytes.
    pub bytes: Vec<u8>,
    /// Whether the program wrote more than was kept.
    pub truncated: bool,
}

impl Captured {
    /// The captured bytes as text for a log line (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct ScriptOutcome {
    pub status: ScriptStatus,
    pub stdout: Captured,
    pub stderr: Captured,
    /// From spawn to the end of [`run`].
    pub elapsed: Duration,
}

impl ScriptOutcome {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        matches!(&self.status, ScriptStatus::Exited(s) if s.success())
    }
}

/// Runs `path` for `event`, killing it at `timeout` (module documentation).
pub fn run(path: &Path, event: &Event, timeout: Duration) -> ScriptOutcome {
    let start = Instant::now();
    let mut command = Command::new(path);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"RTMP_") {
            command.env_remove(name);
        }
    }
    command
        .envs(format::env_vars(event))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so the timeout can kill what it spawned too.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ScriptOutcome {
                status: ScriptStatus::SpawnFailed(e),
                stdout: Captured::default(),
                stderr: Captured::default(),
                elapsed: start.elapsed(),
            };
        }
    };

    if let Some(mut stdin) = child.stdin.take() {
        let mut line = format::envelope_json(event);
        line.push('\n');
        // A thread, because a program that never reads could leave a large write blocked; it
        // ends when the program exits (EPIPE), and nobody waits for it.
        let spawned = thread::Builder::new().name("hook-script-stdin".into()).spawn(move || {
            let _ = stdin.write_all(line.as_bytes());
        });
        if spawned.is_err() {
            tracing::warn!(script = %path.display(), "no thread to write the event on stdin");
        }
    }
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(Captured::default()));
    let stderr = Arc::new(Mutex::new(Captured::default()));
    let mut readers = 0;
    if let Some(pipe) = child.stdout.take() {
        readers += usize::from(spawn_reader(Pipe::Out(pipe), &stdout, &done_tx));
    }
    if let Some(pipe) = child.stderr.take() {
        readers += usize::from(spawn_reader(Pipe::Err(pipe), &stderr, &done_tx));
    }
    drop(done_tx);

    let status = match wait_until(&mut child, start + timeout) {
        Some(status) => ScriptStatus::Exited(status),
        None => {
            kill_group(&mut child);
            // SIGKILL cannot be ignored, so this returns at once; it reaps the program.
            let _ = child.wait();
            ScriptStatus::TimedOut
        }
    };

    let grace_end = Instant::now() + READER_GRACE;
    for _ in 0..readers {
        let left = grace_end.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let snapshot = |c: &Arc<Mutex<Captured>>| c.lock().map(|c| c.clone()).unwrap_or_default();
    ScriptOutcome { status, stdout: snapshot(&stdout), stderr: snapshot(&stderr), elapsed: start.elapsed() }
}

/// Waits for the program until `deadline`; `None` if it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    // std has no wait-with-timeout: poll, starting fast so a quick script costs little latency.
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // Only possible if the child was reaped elsewhere; treat as still running, and the
            // timeout path kills and reaps what can be.
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    }
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) touches no memory of ours. `-pid` is the process group the child
        // leads (`process_group(0)`); the id cannot have been reused, since the child is not
        // reaped yet.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    // In case the group kill failed (it cannot, short of a kernel refusing): the child itself.
    let _ = child.kill();
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Pipe::Out(p) => p.read(buf),
            Pipe::Err(p) => p.read(buf),
        }
    }
}

/// Starts a thread that keeps the first [`CAPTURE_LIMIT`] bytes of `pipe` and discards the rest
/// until end of file; `false` if no thread could be started (the pipe is then closed, and a
/// program writing to it gets EPIPE rather than blocking).
fn spawn_reader(mut pipe: Pipe, into: &Arc<Mutex<Captured>>, done: &mpsc::Sender<()>) -> bool {
    let into = Arc::clone(into);
    let done = done.clone();
    thread::Builder::new()
        .name("hook-script-output".into())
        .spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let Ok(mut captured) = into.lock() else { break };
                        let room = CAPTURE_LIMIT - captured.bytes.len();
                        captured.bytes.extend_from_slice(&chunk[..n.min(room)]);
                        captured.truncated |= n > room;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::event::{EventType, Protocol};

    fn event() -> Event {
        Event {
            id: "evt_s".into(),
            event_type: EventType::PublishStart,
            timestamp_ms: 1_000,
            conn_id: 7,
            protocol: Protocol::Rtmp,
            addr: "127.0.0.1:1".into(),
            stream_key: "live/x".into(),
            seq: 1,
            data: serde_json::Map::new(),
        }
    }

    #[test]
    fn exit_status_and_output() {
        let outcome = run(Path::new("/bin/sh"), &event(), Duration::from_secs(10));
        // /bin/sh with no arguments reads its script from stdin: the JSON line is not a valid
        // command, so it fails, which shows stdin arrived.
        assert!(matches!(outcome.status, ScriptStatus::Exited(_)), "{:?}", outcome.status);
        assert!(!outcome.success());
        assert!(!outcome.stderr.bytes.is_empty());
    }

    #[test]
    fn missing_program() {
        let outcome = run(Path::new("/nonexistent/ringcast-hook"), &event(), Duration::from_secs(1));
        match &outcome.status {
            ScriptStatus::SpawnFailed(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        assert!(outcome.status.to_string().contains("could not be started"));
    }
}
