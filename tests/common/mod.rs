//! End-to-end test harness: runs the real `ringcast` binary and real clients (ffmpeg, ffprobe,
//! raw sockets) against it.
//!
//! Every wait here is bounded and every child process is killed when its owner drops, so a
//! broken server fails a test instead of hanging the suite or leaking processes. Failures carry
//! the server's log (and the client's, where there is one), since that is usually the only clue.
//!
//! Set `RINGCAST_TEST_LOG=1` to echo the server's stderr as it arrives (visible with
//! `--nocapture` or when a test fails).
//!
//! Every test file takes the harness with `mod common;`. Beside the server and process helpers
//! here, it has:
//! - [`rtmp_client`]: a blocking RTMP client (the library's client state machine over a std
//!   socket), for tests that need exact control over what is sent and received.
//! - [`http_receiver`]: real HTTP and HTTPS servers that record requests and answer scripted
//!   replies, standing in for callback and webhook endpoints.
//! - [`hook_peers`]: endpoints that never answer or are not there, and readers for the text
//!   forms hooks arrive in.
//! - [`http_flv_client`]: HTTP-FLV players over plain HTTP and WebSocket that parse what they
//!   receive tag by tag, and raw HTTP exchanges.
//! - [`rtsp_client`]: ffmpeg and GStreamer publishing and playing over RTSP, ffprobe frame
//!   counts, and raw RTSP exchanges.
//! - [`recorder`]: an event sink that keeps every event, for lifecycles driven without a
//!   server.
//! - [`netns`]: network namespaces joined by veth pairs, for servers on separate hosts.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod hook_peers;
pub mod http_flv_client;
pub mod http_receiver;
pub mod netns;
pub mod recorder;
pub mod rtmp_client;
pub mod rtsp_client;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long the server may take to print its ready line. Generous: tests run in parallel on a
/// 2-core machine, next to ffmpeg encoders.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop` waits after SIGTERM. The contract is ~5 s; the rest is slack for a loaded
/// machine.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

// ---------------------------------------------------------------------------------------------
// Small process and file utilities
// ---------------------------------------------------------------------------------------------

/// Makes the child die with the thread that spawned it, so a test process killed outright (a
/// CI timeout, ^C) does not leave servers and encoders running. A test's children live exactly
/// as long as its thread, so tying them to the thread rather than the process costs nothing.
fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(error) => panic!("waiting for child {}: {error}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL and reap; a child that already exited is only reaped.
fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: plain syscall on a pid we own and have not reaped yet, so it cannot be reused.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", io::Error::last_os_error());
}

/// A file under cargo's per-target temp dir, removed on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// A fresh, unique, not yet existing path.
    pub fn new(prefix: &str, extension: &str) -> TempFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(dir).expect("create CARGO_TARGET_TMPDIR");
        let path = dir.join(format!("{prefix}-{}-{n}.{extension}", std::process::id()));
        let _ = fs::remove_file(&path);
        TempFile { path }
    }

    pub fn with_contents(prefix: &str, extension: &str, contents: &str) -> TempFile {
        let file = TempFile::new(prefix, extension);
        fs::write(&file.path, contents).expect("write temp file");
        file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents so far, lossily decoded; empty if the file does not exist (yet).
    pub fn read(&self) -> String {
        fs::read(&self.path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A directory under cargo's per-target temp dir, removed with what it holds on drop.
pub struct TempDir {
    file: TempFile,
}

impl TempDir {
    /// A fresh, unique, not yet existing path.
    pub fn new(prefix: &str) -> TempDir {
        TempDir { file: TempFile::new(prefix, "d") }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.file.path());
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------------

/// Everything the server wrote to stderr (and stdout), appended by reader threads.
#[derive(Default)]
struct LogBuffer {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    text: String,
    /// Pipes whose reader has not yet seen EOF.
    open_pipes: usize,
}

impl LogBuffer {
    fn append(&self, line: &str) {
        self.state.lock().unwrap().text.push_str(line);
        self.changed.notify_all();
    }

    fn pipe_opened(&self) {
        self.state.lock().unwrap().open_pipes += 1;
    }

    fn pipe_closed(&self) {
        self.state.lock().unwrap().open_pipes -= 1;
        self.changed.notify_all();
    }

    fn snapshot(&self) -> String {
        self.state.lock().unwrap().text.clone()
    }

    /// Waits until `done(text)` holds or `timeout` passes; returns whether it held.
    fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> bool {
        self.wait_state(timeout, |state| done(&state.text))
    }

    fn wait_state(&self, timeout: Duration, mut done: impl FnMut(&LogState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// After the process exited: waits (bounded) until its last lines are in.
    fn wait_drained(&self) {
        self.wait_state(Duration::from_secs(2), |state| state.open_pipes == 0);
    }
}

/// Drains `pipe` line by line into `log` until EOF. Draining continuously matters: a server
/// blocked on a full stderr pipe would look like a server bug.
fn spawn_reader(pipe: impl Read + Send + 'static, log: Arc<LogBuffer>, echo: Option<String>) {
    log.pipe_opened();
    thread::Builder::new()
        .name("ringcast-log".into())
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        if let Some(prefix) = &echo {
                            eprint!("{prefix} {text}");
                        }
                        log.append(&text);
                    }
                }
            }
            log.pipe_closed();
        })
        .expect("spawn log reader thread");
}

/// The `ringcast` binary, started on 127.0.0.1 with an ephemeral port for every listener.
///
/// The process is killed when this drops, and also when the thread that started it exits (see
/// `die_with_parent`): start it on the thread that uses it.
pub struct TestServer {
    child: Option<Child>,
    rtmp: SocketAddr,
    log: Arc<LogBuffer>,
    _config: Option<TempFile>,
    /// A `state_dir` of its own, unless the test gave one: webhook outboxes live there, and
    /// must not reach another test's receiver on a recycled port.
    _state_dir: Option<TempDir>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts the server with `extra` flags after the defaults. A flag given in `extra` replaces
    /// the default one (clap refuses a flag given twice).
    pub fn start_with(extra: &[&str]) -> TestServer {
        TestServer::spawn(extra, None, true, &[])
    }

    /// Starts the server with `toml` as its `--config` file. Some settings (handshake_timeout)
    /// exist only in the file; the listen flags still override whatever the file says.
    pub fn start_with_config(toml: &str, extra: &[&str]) -> TestServer {
        let file = TempFile::with_contents("ringcast-config", "toml", toml);
        TestServer::spawn(extra, Some(file), true, &[])
    }

    /// Starts the server with `toml` as its `--config` file and exactly `args` after it: no
    /// default flags, so the file must set every listener (to `127.0.0.1:0`) that `args` does
    /// not. For a command line that must be run as its users write it.
    pub fn start_exact(toml: &str, args: &[&str]) -> TestServer {
        let file = TempFile::with_contents("ringcast-config", "toml", toml);
        TestServer::spawn(args, Some(file), false, &[])
    }

    /// Like [`TestServer::start_with_config`], the binary run by `launcher` (such as
    /// `ip netns exec NS`, which execs it: the server is still the child the harness kills).
    pub fn start_launched(launcher: &[&str], toml: &str, extra: &[&str]) -> TestServer {
        let file = TempFile::with_contents("ringcast-config", "toml", toml);
        TestServer::spawn(extra, Some(file), true, launcher)
    }

    fn spawn(extra: &[&str], config: Option<TempFile>, defaults: bool, launcher: &[&str]) -> TestServer {
        let state_given = extra.iter().any(|a| a.starts_with("--state-dir"))
            || config.as_ref().is_some_and(|file| file.read().lines().any(|l| l.trim_start().starts_with("state_dir")));
        let state_dir = (!state_given).then(|| TempDir::new("ringcast-state"));
        const DEFAULTS: &[(&str, &str)] = &[
            ("--rtmp-listen", "127.0.0.1:0"),
            ("--http-listen", "127.0.0.1:0"),
            ("--rtsp-listen", "127.0.0.1:0"),
            ("--api-listen", "127.0.0.1:0"),
            // Two shards, so cross-shard paths run even on a 2-core machine.
            ("--shards", "2"),
            ("--log-level", "info"),
        ];
        let mut args: Vec<String> = Vec::new();
        if let Some(file) = &config {
            args.push("--config".into());
            args.push(file.path().display().to_string());
        }
        for (flag, value) in DEFAULTS.iter().filter(|_| defaults) {
            let overridden = extra.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
            if !overridden {
                args.push((*flag).into());
                args.push((*value).into());
            }
        }
        if let Some(dir) = &state_dir {
            args.push("--state-dir".into());
            args.push(dir.path().display().to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));

        let mut command = launched(launcher, BIN);
        command
            .args(&args)
            // The tests rely on INFO lines (ready, session closed); a RUST_LOG from the caller's
            // shell would override --log-level. Journal mode only drops timestamps, but keep
            // the format predictable.
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            // A test run under systemd (a CI runner unit) must not have its servers report
            // readiness or watchdog pings to the runner's own manager.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = die_with_parent(&mut command).spawn().unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));

        let log = Arc::new(LogBuffer::default());
        let echo = std::env::var_os("RINGCAST_TEST_LOG")
            .filter(|v| !v.is_empty())
            .map(|_| format!("[ringcast {}]", child.id()));
        spawn_reader(child.stderr.take().unwrap(), log.clone(), echo.clone());
        spawn_reader(child.stdout.take().unwrap(), log.clone(), echo);

        let deadline = Instant::now() + READY_TIMEOUT;
        let rtmp = loop {
            if let Some(addr) = parse_ready(&log.snapshot()) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                log.wait_drained();
                panic!(
                    "ringcast exited ({status}) before it was ready\nargs: {args:?}\n--- log ---\n{}",
                    log.snapshot()
                );
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                panic!(
                    "ringcast printed no `ready: rtmp=` line within {READY_TIMEOUT:?}\nargs: {args:?}\n--- log ---\n{}",
                    log.snapshot()
                );
            }
            log.wait_until(Duration::from_millis(100), |t| parse_ready(t).is_some());
        };
        TestServer { child: Some(child), rtmp, log, _config: config, _state_dir: state_dir }
    }

    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp
    }

    /// `rtmp://IP:PORT/app/name` for a stream key `app/name`.
    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/{}", self.rtmp, key.trim_start_matches('/'))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Whether the process is still running (it never exits on its own).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        self.log.snapshot()
    }

    /// How many times `substr` appears in the log so far.
    pub fn log_count(&self, substr: &str) -> usize {
        self.log.snapshot().matches(substr).count()
    }

    /// Log lines that contain every one of `parts`.
    pub fn log_lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.log.snapshot().lines().filter(|line| parts.iter().all(|p| line.contains(p))).map(str::to_owned).collect()
    }

    /// The admin API's address, from the first `ready: ... api=IP:PORT` line.
    pub fn api_addr(&self) -> SocketAddr {
        self.ready_addr("api")
    }

    /// The HTTP-FLV address, from the first `ready: ... http=IP:PORT` line.
    pub fn http_addr(&self) -> SocketAddr {
        self.ready_addr("http")
    }

    /// The RTSP address, from the first `ready: ... rtsp=IP:PORT` line.
    pub fn rtsp_addr(&self) -> SocketAddr {
        self.ready_addr("rtsp")
    }

    /// `rtsp://IP:PORT/app/name` for a stream key `app/name`.
    pub fn rtsp_url(&self, key: &str) -> String {
        format!("rtsp://{}/{}", self.rtsp_addr(), key.trim_start_matches('/'))
    }

    /// The `listener=IP:PORT` address of the first `ready` line.
    fn ready_addr(&self, listener: &str) -> SocketAddr {
        let log = self.log();
        let prefix = format!("{listener}=");
        log.lines()
            .filter(|line| line.contains("ready"))
            .find_map(|line| {
                let token = line.split_whitespace().find_map(|t| t.strip_prefix(prefix.as_str()))?;
                token.trim_matches(|c: char| c == '"' || c == ',' || c == ';').parse().ok()
            })
            .unwrap_or_else(|| panic!("no `{prefix}` in the ready line\n--- log ---\n{log}"))
    }

    /// The admin API's `/metrics` text (the test servers have no `api_token`).
    pub fn metrics(&self) -> String {
        let addr = self.api_addr();
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the admin API");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n")
            .expect("send the request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read /metrics");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP reply: {reply:?}"));
        assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
        body.to_owned()
    }

    /// The integer field `field` of each log line that contains every one of `parts` (a line
    /// without the field counts as 0, so a format change shows as a wrong sum, not a hang).
    pub fn log_field_values(&self, parts: &[&str], field: &str) -> Vec<u64> {
        field_values(&self.log.snapshot(), parts, field)
    }

    /// Waits until the [`TestServer::log_field_values`] add up to at least `sum`.
    pub fn wait_for_log_field_sum(&self, parts: &[&str], field: &str, sum: u64, timeout: Duration) -> bool {
        self.log.wait_until(timeout, |text| field_values(text, parts, field).iter().sum::<u64>() >= sum)
    }

    /// Waits until the log contains `substr`.
    pub fn wait_for_log(&self, substr: &str, timeout: Duration) -> bool {
        self.log.wait_until(timeout, |text| text.contains(substr))
    }

    /// Waits until the log contains `substr` at least `count` times.
    pub fn wait_for_log_count(&self, substr: &str, count: usize, timeout: Duration) -> bool {
        self.log.wait_until(timeout, |text| text.matches(substr).count() >= count)
    }

    /// Waits until one log line contains every one of `parts`.
    pub fn wait_for_line_with(&self, parts: &[&str], timeout: Duration) -> bool {
        self.log.wait_until(timeout, |text| text.lines().any(|line| parts.iter().all(|p| line.contains(p))))
    }

    /// SIGTERM, then waits for the exit. A server still running after `STOP_TIMEOUT` is
    /// SIGKILLed and the test fails.
    pub fn stop(self) -> ExitStatus {
        self.stop_and_log().0
    }

    /// SIGKILL, as a crash or an impatient service manager would; returns the log up to it.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().expect("server running");
        kill_and_reap(&mut child);
        self.log.wait_drained();
        self.log()
    }

    /// [`TestServer::stop`], also returning the complete log for assertions on the shutdown.
    pub fn stop_and_log(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("server running");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ringcast had already exited ({status}) before stop\n--- log ---\n{}", self.log());
        }
        signal(&child, libc::SIGTERM);
        match wait_child(&mut child, STOP_TIMEOUT) {
            Some(status) => {
                self.log.wait_drained();
                (status, self.log())
            }
            None => {
                kill_and_reap(&mut child);
                panic!(
                    "ringcast still running {STOP_TIMEOUT:?} after SIGTERM (SIGKILLed)\n--- log ---\n{}",
                    self.log()
                );
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill_and_reap(child);
        }
    }
}

/// The sum of every series of metric `name` in a Prometheus text exposition.
pub fn metric_total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap_or_default();
            value.parse::<u64>().unwrap_or_else(|e| panic!("{name}: not a count ({e}): {line:?}"))
        })
        .sum()
}

fn field_values(log: &str, parts: &[&str], field: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| parts.iter().all(|p| line.contains(p)))
        .map(|line| field_u64(line, field).unwrap_or(0))
        .collect()
}

/// `field=N` (text logs) or `"field":N` (JSON logs) in one line.
fn field_u64(line: &str, field: &str) -> Option<u64> {
    let (text, json) = (format!("{field}="), format!("\"{field}\":"));
    let value = line.split_whitespace().find_map(|token| token.strip_prefix(&text)).or_else(|| {
        let at = line.find(&json)?;
        Some(&line[at + json.len()..])
    })?;
    let digits = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    value[..digits].parse().ok()
}

/// The RTMP address from the first `ready: ... rtmp=IP:PORT` line.
fn parse_ready(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let after = &line[line.find("ready")?..];
        let token = after.split_whitespace().find_map(|t| t.strip_prefix("rtmp="))?;
        token.trim_matches(|c: char| c == '"' || c == ',' || c == ';').parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------------------------

/// Panics with install instructions unless `tool` (ffmpeg, ffprobe) runs.
pub fn require_tool(tool: &str) {
    let found =
        Command::new(tool).arg("-version").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    match found {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`{tool} -version` failed ({status}); is {tool} installed correctly?"),
        Err(error) => panic!(
            "`{tool}` not runnable ({error}). These tests need ffmpeg and ffprobe with libx264 on \
             PATH: `apt-get install -y ffmpeg` (Debian/Ubuntu), or run `bash .ci/run`, which \
             installs it."
        ),
    }
}

/// ffmpeg, ffprobe and ffmpeg's libx264 and aac encoders, checked once per test process.
pub fn require_ffmpeg() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        require_tool("ffmpeg");
        require_tool("ffprobe");
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-encoders"])
            .stdin(Stdio::null())
            .output()
            .expect("ffmpeg -encoders");
        let list = String::from_utf8_lossy(&out.stdout);
        for encoder in ["libx264", "aac"] {
            assert!(
                list.split_whitespace().any(|w| w == encoder),
                "this ffmpeg has no {encoder} encoder; install a full build (Debian: apt-get install -y ffmpeg)"
            );
        }
    });
}

/// A running ffmpeg (or other client), killed on drop, its output kept in a temp file.
pub struct Client {
    child: Option<Child>,
    output: TempFile,
    description: String,
    started: Instant,
}

impl Client {
    /// Starts `program` with `args`; `description` names it in reports.
    pub fn spawn(program: &str, args: &[String], description: String) -> Client {
        let output = TempFile::new(program, "log");
        let file = File::create(output.path()).expect("create client log");
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(file.try_clone().expect("dup client log")).stderr(file);
        let child = die_with_parent(&mut command).spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Client {
            child: Some(child),
            output,
            description: format!("{description}: {program} {}", args.join(" ")),
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("client not reaped").id()
    }

    /// Its command line, for failure messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// What it printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        self.output.read()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("client not reaped");
        child.try_wait().expect("try_wait client")
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for it to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(self.child.as_mut().expect("client not reaped"), timeout)
    }

    /// SIGKILL (abrupt, as a crashed encoder would go) and reap.
    pub fn kill(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("client not reaped");
        kill_and_reap(child);
        child.wait().expect("reaped")
    }

    /// A panic message with its command line, exit status and output.
    pub fn report(&mut self, what: &str) -> String {
        let status = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => describe_status(status),
            Some(Ok(None)) => "still running".into(),
            _ => "unknown".into(),
        };
        format!(
            "{what}\n{} ({status}, after {:.1?})\n--- output ---\n{}",
            self.description,
            self.elapsed(),
            self.output()
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill_and_reap(child);
        }
    }
}

pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("{status}"),
    }
}

/// Publishes a test pattern (H.264 + AAC, a keyframe every second, in real time) to `url` for
/// `seconds`, as an encoder like OBS would.
pub fn ffmpeg_publish(url: &str, seconds: u32, size: (u32, u32)) -> Client {
    let mut args = test_pattern_args(seconds, size);
    args.extend(["-f", "flv", url].map(str::to_owned));
    Client::spawn("ffmpeg", &args, format!("publisher of {url}"))
}

/// Plays `url` (any protocol ffmpeg reads) with ffmpeg until killed or the stream ends,
/// decoding nothing it does not need: a viewer that stays.
pub fn ffmpeg_play(url: &str) -> Client {
    require_ffmpeg();
    let args = ["-hide_banner", "-loglevel", "error", "-i", url, "-c", "copy", "-f", "null", "-"].map(str::to_owned);
    Client::spawn("ffmpeg", &args, format!("player of {url}"))
}

/// ffmpeg's input and encoding arguments for a test pattern: H.264 (no B-frames: `zerolatency`)
/// and AAC, a keyframe every second, in real time, for `seconds`; the caller adds the output.
pub fn test_pattern_args(seconds: u32, size: (u32, u32)) -> Vec<String> {
    require_ffmpeg();
    let (width, height) = size;
    [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "info",
        // -re per input: both sources are paced, so neither races ahead of the other.
        "-re",
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={width}x{height}:rate=30"),
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Plays `url` with ffprobe and returns its `-show_streams` JSON, or why it failed. ffprobe is
/// killed after `timeout` (its own `-rw_timeout` only covers a silent socket, not a server that
/// trickles bytes without ever giving it what it needs).
pub fn try_ffprobe_json(url: &str, timeout: Duration) -> Result<serde_json::Value, String> {
    try_ffprobe_json_launched(&[], url, timeout)
}

/// A command running `program` through `launcher` (such as `ip netns exec NS`, which execs
/// it), or directly when `launcher` is empty.
pub fn launched(launcher: &[&str], program: &str) -> Command {
    match launcher.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// [`try_ffprobe_json`] with ffprobe run by `launcher` (such as `ip netns exec NS`).
pub fn try_ffprobe_json_launched(launcher: &[&str], url: &str, timeout: Duration) -> Result<serde_json::Value, String> {
    require_ffmpeg();
    let rw_timeout_us = timeout.as_micros().to_string();
    let mut command = launched(launcher, "ffprobe");
    command
        .args(["-v", "error", "-rw_timeout", &rw_timeout_us, "-show_streams", "-of", "json", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = die_with_parent(&mut command).spawn().unwrap_or_else(|e| panic!("cannot start ffprobe: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        kill_and_reap(&mut child);
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let elapsed = started.elapsed();
    let status = match status {
        Some(status) if status.success() => status,
        Some(status) => {
            return Err(format!(
                "ffprobe {url} failed ({}, after {elapsed:.1?})\nstderr: {stderr}\nstdout: {stdout}",
                describe_status(status)
            ));
        }
        None => {
            return Err(format!(
                "ffprobe {url} still running after {timeout:?} (killed)\nstderr: {stderr}\nstdout: {stdout}"
            ));
        }
    };
    serde_json::from_str(&stdout)
        .map_err(|e| format!("ffprobe {url} ({status}) printed no JSON ({e})\nstdout: {stdout}\nstderr: {stderr}"))
}

/// Like [`try_ffprobe_json`], and panics with the reason (and the server log) on failure.
pub fn ffprobe_json(url: &str, timeout: Duration) -> serde_json::Value {
    try_ffprobe_json(url, timeout).unwrap_or_else(|e| panic!("{e}"))
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What ffprobe said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u64>,
    pub height: Option<u64>,
}

/// The streams in ffprobe's `-show_streams` JSON; panics if the JSON has no `streams` array.
pub fn probed_streams(json: &serde_json::Value) -> Vec<ProbedStream> {
    let streams = json["streams"].as_array().unwrap_or_else(|| panic!("ffprobe JSON has no streams array: {json}"));
    streams
        .iter()
        .map(|s| ProbedStream {
            codec_type: s["codec_type"].as_str().unwrap_or("").to_owned(),
            codec_name: s["codec_name"].as_str().unwrap_or("").to_owned(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
        })
        .collect()
}

/// Asserts ffprobe saw exactly one H.264 video stream of `size`, one AAC audio stream, and
/// nothing else.
pub fn assert_h264_aac(json: &serde_json::Value, size: (u32, u32), context: &str) {
    assert_plays_h264_aac(json, size, context);
    let streams = probed_streams(json);
    assert_eq!(streams.len(), 2, "expected only a video and an audio stream: {streams:?}\n{context}");
}

/// Asserts ffprobe saw exactly one H.264 video stream of `size` and one AAC audio stream,
/// whatever else (data streams) it saw: for tests about something else than stream fidelity,
/// which should not fail on a stray data stream.
pub fn assert_plays_h264_aac(json: &serde_json::Value, size: (u32, u32), context: &str) {
    let streams = probed_streams(json);
    let video: Vec<_> = streams.iter().filter(|s| s.codec_type == "video").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s.codec_type == "audio").collect();
    assert_eq!((video.len(), audio.len()), (1, 1), "expected one video and one audio stream: {streams:?}\n{context}");
    assert_eq!(video[0].codec_name, "h264", "{streams:?}\n{context}");
    assert_eq!(
        (video[0].width, video[0].height),
        (Some(u64::from(size.0)), Some(u64::from(size.1))),
        "video size: {streams:?}\n{context}"
    );
    assert_eq!(audio[0].codec_name, "aac", "{streams:?}\n{context}");
}

// ---------------------------------------------------------------------------------------------
// Raw TCP
// ---------------------------------------------------------------------------------------------

/// Connects with a bounded timeout.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream.set_write_timeout(Some(Duration::from_secs(5))).expect("write timeout");
    stream
}

/// Writes `bytes`; a server that already closed the connection makes this fail, which callers
/// that send garbage expect and ignore.
pub fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}

/// How a connection ended, from the client's side.
#[derive(Debug)]
pub struct Closed {
    /// When the server closed it, counted from the call.
    pub after: Duration,
    /// Bytes the server sent before closing.
    pub received: usize,
    /// Whether it ended in a reset rather than a clean EOF.
    pub reset: bool,
}

/// Reads (and discards) until the server closes the connection; `Err` with the byte count if it
/// is still open after `timeout`.
pub fn wait_closed(stream: &mut TcpStream, timeout: Duration) -> Result<Closed, usize> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut received = 0;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(received);
        }
        let slice = (deadline - now).min(Duration::from_millis(200));
        stream.set_read_timeout(Some(slice.max(Duration::from_millis(1)))).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ok(Closed { after: started.elapsed(), received, reset: false });
            }
            Ok(n) => received += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                return Ok(Closed { after: started.elapsed(), received, reset: true });
            }
        }
    }
}

/// Makes `close` send a RST instead of a FIN, as a crashing client would.
pub fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid fd owned by `stream`, and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failing garbage test can be replayed.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Retries `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}
