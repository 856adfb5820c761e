//! ringcast as systemd runs it: the notify protocol (READY, STOPPING, WATCHDOG) seen from a
//! socket standing in for systemd's, the log formats journald and log pipelines read, the
//! io_uring check under a seccomp filter like a container runtime's, the unit file checked by
//! `systemd-analyze verify`, and scripts/install.sh into a scratch root.
//!
//! Every wait is bounded and every child is killed when its owner drops, so a server that
//! never becomes ready fails its test instead of hanging the suite.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringcast");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Generous: tests run in parallel on a 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Scratch directories and the server process
// ---------------------------------------------------------------------------------------------

/// A fresh directory under /tmp, removed on drop. Under /tmp rather than the target dir
/// because a unix socket path must fit in 108 bytes.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringcast-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the server wrote to stderr, appended line by line by a reader thread.
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    grew: Condvar,
}

impl Log {
    fn snapshot(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.text.lock().unwrap();
        loop {
            if done(&text) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = self.grew.wait_timeout(text, deadline - now).unwrap().0;
        }
    }
}

/// The real binary with the given flags and extra environment, stderr captured.
struct Server {
    child: Child,
    log: Arc<Log>,
}

impl Server {
    fn start(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(extra_args, env, |_| {})
    }

    /// `setup` adjusts the command (a `pre_exec` hook) before it is spawned.
    fn start_with(extra_args: &[&str], env: &[(&str, &str)], setup: impl FnOnce(&mut Command)) -> Server {
        let mut command = Command::new(BIN);
        command
            .args([
                "--rtmp-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--rtsp-listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--log-level",
                "info",
            ])
            .args(extra_args)
            // The caller's shell must not change what is logged or where systemd would be.
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // Dies with the test thread, so a killed test run leaves no server behind.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        setup(&mut command);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                sink.text.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
                sink.grew.notify_all();
                line.clear();
            }
        });
        Server { child, log }
    }

    fn log(&self) -> String {
        self.log.snapshot()
    }

    /// Waits for a stderr line containing `needle`; panics with the log if it never comes.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let found = self.log.wait_until(READY_TIMEOUT, |text| text.lines().any(|line| line.contains(needle)));
        let log = self.log();
        assert!(
            found,
            "no line with {needle:?} within {READY_TIMEOUT:?} (exited: {:?})\n--- log ---\n{log}",
            self.child.try_wait()
        );
        log.lines().find(|line| line.contains(needle)).unwrap_or_default().to_owned()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: a plain syscall on our own child, not yet reaped, so the pid is still ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Waits for the process to exit, and for its last log lines.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // EOF on stderr follows the exit; let the reader catch the last lines.
                self.log.wait_until(Duration::from_millis(200), |_| false);
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("ringcast still running after {timeout:?}\n--- log ---\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status.
    fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(STOP_TIMEOUT)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The RTMP address from a `ready: rtmp=IP:PORT ...` line.
fn ready_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("rtmp=")? + "rtmp=".len()..];
    rest.split(|c: char| c.is_whitespace() || c == '"').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// (a) sd_notify: READY=1, STOPPING=1, WATCHDOG=1
// ---------------------------------------------------------------------------------------------

/// A unix datagram socket playing systemd's notify socket.
struct FakeSystemd {
    _dir: TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    /// Every assignment received so far, one per line, in order.
    seen: Vec<String>,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = TempDir::new("notify");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("set a read timeout");
        FakeSystemd { _dir: dir, path, socket, seen: Vec::new() }
    }

    fn env_value(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }

    /// Collects datagrams until `done(seen)` holds, for at most `timeout`. Panics if the
    /// server dies meanwhile; returns whether `done` held.
    fn collect_until(
        &mut self,
        server: &mut Server,
        timeout: Duration,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if done(&self.seen) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    self.seen.extend(text.lines().map(str::to_owned));
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if !server.running() {
                        // A final datagram may still be queued; take it before giving up.
                        if let Ok(n) = self.socket.recv(&mut buf) {
                            let text = String::from_utf8_lossy(&buf[..n]);
                            self.seen.extend(text.lines().map(str::to_owned));
                            continue;
                        }
                        return done(&self.seen);
                    }
                }
                Err(e) => panic!("receiving on the notify socket: {e}"),
            }
        }
    }

    fn count(&self, assignment: &str) -> usize {
        self.seen.iter().filter(|line| *line == assignment).count()
    }
}

#[test]
fn notifies_ready_once_listening_and_stopping_on_sigterm() {
    let mut systemd = FakeSystemd::new();
    let mut server = Server::start(&[], &[("NOTIFY_SOCKET", systemd.env_value())]);

    let ready = systemd.collect_until(&mut server, READY_TIMEOUT, |seen| seen.iter().any(|l| l == "READY=1"));
    assert!(ready, "no READY=1 within {READY_TIMEOUT:?}; got {:?}\n--- log ---\n{}", systemd.seen, server.log());
    // READY=1 promises a listening server: the RTMP port accepts right away.
    let line = server.wait_for_line("ready:");
    let addr = ready_addr(&line).unwrap_or_else(|| panic!("no rtmp= address in {line:?}"));
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("READY=1 sent but {addr} refuses connections: {e}"));

    server.signal(libc::SIGTERM);
    let stopping = systemd.collect_until(&mut server, STOP_TIMEOUT, |seen| seen.iter().any(|l| l == "STOPPING=1"));
    let status = server.wait(STOP_TIMEOUT);
    // The server may already be gone when its last datagram is read.
    let stopping = stopping
        || systemd
            .collect_until(&mut server, Duration::from_millis(500), |seen| seen.iter().any(|l| l == "STOPPING=1"));
    assert!(stopping, "no STOPPING=1 after SIGTERM; got {:?}\n--- log ---\n{}", systemd.seen, server.log());
    assert!(status.success(), "exit {status}\n--- log ---\n{}", server.log());
    assert_eq!(systemd.count("READY=1"), 1, "READY=1 once: {:?}", systemd.seen);
    let ready_at = systemd.seen.iter().position(|l| l == "READY=1");
    let stopping_at = systemd.seen.iter().position(|l| l == "STOPPING=1");
    assert!(ready_at < stopping_at, "READY before STOPPING: {:?}", systemd.seen);
    assert_eq!(systemd.count("WATCHDOG=1"), 0, "no watchdog pings unless WATCHDOG_USEC asks: {:?}", systemd.seen);
}

#[test]
fn pings_the_watchdog_when_watchdog_usec_is_set() {
    let mut systemd = FakeSystemd::new();
    // 200 ms: pings every 100 ms; a handful must arrive within a couple of seconds.
    let mut server = Server::start(&[], &[("NOTIFY_SOCKET", systemd.env_value()), ("WATCHDOG_USEC", "200000")]);
    let pinged = systemd
        .collect_until(&mut server, READY_TIMEOUT, |seen| seen.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3);
    assert!(
        pinged,
        "fewer than 3 WATCHDOG=1 with WATCHDOG_USEC=200000; got {:?}\n--- log ---\n{}",
        systemd.seen,
        server.log()
    );
    assert!(systemd.count("READY=1") == 1, "{:?}", systemd.seen);
    let status = server.stop();
    assert!(status.success(), "exit {status}\n--- log ---\n{}", server.log());
}

#[test]
fn ignores_a_watchdog_meant_for_another_process() {
    let mut systemd = FakeSystemd::new();
    // WATCHDOG_PID names the process systemd watches; PID 1 is never ringcast here.
    let mut server = Server::start(
        &[],
        &[("NOTIFY_SOCKET", systemd.env_value()), ("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
    );
    let ready = systemd.collect_until(&mut server, READY_TIMEOUT, |seen| seen.iter().any(|l| l == "READY=1"));
    assert!(ready, "no READY=1; got {:?}\n--- log ---\n{}", systemd.seen, server.log());
    // Five ping periods' worth of silence.
    systemd.collect_until(&mut server, Duration::from_millis(500), |_| false);
    assert_eq!(systemd.count("WATCHDOG=1"), 0, "{:?}", systemd.seen);
    let status = server.stop();
    assert!(status.success(), "exit {status}\n--- log ---\n{}", server.log());
}

// ---------------------------------------------------------------------------------------------
// (b), (c) log formats
// ---------------------------------------------------------------------------------------------

#[test]
fn json_log_lines_all_parse() {
    let mut server = Server::start(&["--log-format", "json"], &[]);
    server.wait_for_line("ready:");
    let status = server.stop();
    assert!(status.success(), "exit {status}\n--- log ---\n{}", server.log());

    let log = server.log();
    let mut ready = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n--- log ---\n{log}"));
        assert!(value.get("level").is_some_and(|l| l.is_string()), "{line}");
        assert!(value.get("timestamp").is_some(), "{line}");
        let message = value
            .pointer("/fields/message")
            .and_then(|m| m.as_str())
            .unwrap_or_else(|| panic!("no fields.message in {line}"));
        if message.contains("ready:") {
            ready += 1;
            assert!(ready_addr(message).is_some(), "{line}");
        }
    }
    assert_eq!(ready, 1, "one ready line\n--- log ---\n{log}");
}

/// `2026-01-02T03:04:05...`: what tracing's text format starts a line with.
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-' && b[10] == b'T'
}

#[test]
fn journald_text_lines_carry_no_timestamp() {
    // Control: on a terminal the same line starts with a timestamp, so the check below means
    // something.
    let mut plain = Server::start(&[], &[]);
    let line = plain.wait_for_line("ready:");
    assert!(starts_with_timestamp(&line), "{line:?}");
    plain.stop();

    // systemd sets JOURNAL_STREAM (device:inode of the journal's stream) for stdout/stderr.
    let mut journal = Server::start(&[], &[("JOURNAL_STREAM", "8:123456")]);
    journal.wait_for_line("ready:");
    let status = journal.stop();
    assert!(status.success(), "exit {status}");
    let log = journal.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(!starts_with_timestamp(line.trim_start()), "timestamp in {line:?}");
        assert!(!line.contains('\x1b'), "ANSI escape in {line:?}");
        let level = line.split_whitespace().next().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "a journal line starts with its level: {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// io_uring refused, as under a container runtime's seccomp profile
// ---------------------------------------------------------------------------------------------

/// Installs, in the child, a seccomp filter that fails `io_uring_setup` with `errno`, as
/// Docker's and Podman's default profiles do.
fn block_io_uring(command: &mut Command, errno: u32) {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    // Classic BPF opcodes, from linux/bpf_common.h.
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
    const RET_K: u16 = 0x06; // BPF_RET (6) | BPF_K (0)
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let setup = libc::SYS_io_uring_setup as u32;
    // SAFETY: only prctl calls, async-signal-safe; the filter lives on the child's stack for
    // the duration of the call, and the kernel copies it.
    unsafe {
        command.pre_exec(move || {
            let filter = [
                // seccomp_data.nr is at offset 0.
                SockFilter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 },
                SockFilter { code: JEQ_K, jt: 0, jf: 1, k: setup },
                SockFilter { code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | errno },
                SockFilter { code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
            ];
            let program = SockFprog { len: filter.len() as u16, filter: filter.as_ptr() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_SECCOMP, 2, &program as *const SockFprog) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn assert_refused_with(errno: u32, errno_name: &str) {
    let mut server = Server::start_with(&[], &[], |command| block_io_uring(command, errno));
    let status = server.wait(READY_TIMEOUT);
    let log = server.log();
    assert!(!status.success(), "must fail without io_uring\n--- log ---\n{log}");
    assert!(!log.contains("ready:"), "never ready without io_uring\n--- log ---\n{log}");
    let want = format!("io_uring is unavailable: a seccomp filter blocks it (io_uring_setup: {errno_name})");
    assert!(log.contains(&want), "want {want:?}\n--- log ---\n{log}");
    assert!(
        log.contains("io_uring_setup, io_uring_enter and io_uring_register"),
        "the message names the fix\n--- log ---\n{log}"
    );
}

#[test]
fn exits_with_the_cause_when_seccomp_refuses_io_uring() {
    assert_refused_with(libc::EPERM as u32, "EPERM");
}

#[test]
fn exits_with_the_cause_when_seccomp_hides_io_uring() {
    assert_refused_with(libc::ENOSYS as u32, "ENOSYS");
}

// ---------------------------------------------------------------------------------------------
// (d) the unit file
// ---------------------------------------------------------------------------------------------

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(REPO).join("scripts/ringcast.service")).expect("read scripts/ringcast.service")
}

/// `Key=value` assignments of one section, comments and blank lines left out.
fn section(unit: &str, name: &str) -> Vec<(String, String)> {
    let header = format!("[{name}]");
    let mut inside = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            out.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

#[test]
fn unit_runs_notify_hardened_with_the_limits_a_server_needs() {
    let service = section(&unit_text(), "Service");
    let get = |key: &str| -> Vec<&str> { service.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect() };
    let one = |key: &str| -> String {
        let values = get(key);
        assert_eq!(values.len(), 1, "{key}= exactly once: {values:?}");
        values[0].to_owned()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecStart"), "/usr/local/bin/ringcast --config /etc/ringcast/ringcast.toml");
    assert!(one("ExecReload").contains("-HUP $MAINPID"));
    assert_eq!(one("LimitNOFILE"), "1048576");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("DynamicUser"), "yes");
    // state_dir's default, /var/lib/ringcast.
    assert_eq!(one("StateDirectory"), "ringcast");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert!(!one("WatchdogSec").is_empty());
    let install = section(&unit_text(), "Install");
    assert!(install.contains(&("WantedBy".into(), "multi-user.target".into())));
}

/// The unit's stop timeout leaves room above ringcast's own shutdown deadline: systemd's
/// SIGKILL must come after the shutdown has finished and logged what it left undone.
#[test]
fn the_unit_waits_longer_than_the_shutdown_deadline() {
    let service = section(&unit_text(), "Service");
    let stop: Vec<&str> = service.iter().filter(|(k, _)| k == "TimeoutStopSec").map(|(_, v)| v.as_str()).collect();
    assert_eq!(stop.len(), 1, "TimeoutStopSec= exactly once: {stop:?}");
    let stop = ringcast::config::parse_duration(stop[0]).unwrap_or_else(|e| panic!("TimeoutStopSec={}: {e}", stop[0]));
    let deadline = ringcast::config::Config::default().shutdown_timeout;
    // The deadline is checked between steps that each end promptly; this is their slack.
    let slack = Duration::from_secs(3);
    assert!(
        stop >= deadline + slack,
        "TimeoutStopSec={stop:?} leaves less than {slack:?} above shutdown_timeout's default {deadline:?}"
    );
}

/// `systemd-analyze`, installed with apt if missing and possible.
fn systemd_analyze() -> Result<(), String> {
    let present = || Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if present() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("systemd-analyze is missing and installing it needs root".into());
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", "systemd"];
    // A fresh container has no package lists yet: update only when needed.
    let installed = apt(&install) || (apt(&["update", "-q"]) && apt(&install));
    if !installed {
        return Err("systemd-analyze is missing and `apt-get install systemd` failed".into());
    }
    if present() { Ok(()) } else { Err("systemd-analyze still missing after installing systemd".into()) }
}

/// `systemd-analyze verify` on `unit` written as ringcast.service in a scratch dir; the
/// combined output, or an error if it failed or said anything at all. Warnings count:
/// verify exits 0 on an unknown key or an unparsable value ("..., ignoring"), which would let
/// a typo in the unit pass.
fn verify(unit: &str) -> Result<(), String> {
    let dir = TempDir::new("unit");
    let path = dir.path().join("ringcast.service");
    std::fs::write(&path, unit).expect("write the unit");
    let output: Output =
        Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().expect("run systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && said.trim().is_empty() { Ok(()) } else { Err(format!("{}: {said}", output.status)) }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if let Err(reason) = systemd_analyze() {
        // CI installs systemd-analyze: there a skip would be a test that cannot fail.
        assert!(std::env::var_os("CI").is_none(), "systemd-analyze is needed: {reason}");
        eprintln!("SKIPPED unit_passes_systemd_analyze_verify: {reason}");
        return;
    }
    // verify checks that ExecStart's binary exists and is executable: point it at the one
    // cargo just built instead of the installed path.
    let unit = unit_text();
    let exec = "ExecStart=/usr/local/bin/ringcast ";
    assert!(unit.contains(exec), "ExecStart as installed");
    let unit = unit.replace(exec, &format!("ExecStart={BIN} "));
    if let Err(said) = verify(&unit) {
        panic!("systemd-analyze verify complains about scripts/ringcast.service: {said}");
    }

    // And the check catches a broken unit: a misspelt key, a bad value, a missing binary.
    let broken = [
        unit.replace("ProtectSystem=strict", "ProtectSytem=strict"),
        unit.replace("Type=notify", "Type=notifyy"),
        unit.replace(&format!("ExecStart={BIN} "), "ExecStart=/nonexistent/ringcast "),
    ];
    for (i, unit) in broken.iter().enumerate() {
        assert!(verify(unit).is_err(), "broken unit #{i} passed verify");
    }
}

// ---------------------------------------------------------------------------------------------
// (e) scripts/install.sh
// ---------------------------------------------------------------------------------------------

fn install_sh(root: &Path, args: &[&str]) -> Output {
    let output = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/install.sh"))
        .args(args)
        .env("RINGCAST_ROOT", root)
        .output()
        .expect("run scripts/install.sh");
    eprintln!(
        "install.sh {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[test]
fn install_script_round_trip() {
    let dir = TempDir::new("install");
    let root = dir.path();
    let bin = root.join("usr/local/bin/ringcast");
    let conf = root.join("etc/ringcast/ringcast.toml");
    let example = root.join("etc/ringcast/ringcast.toml.example");
    let unit = root.join("etc/systemd/system/ringcast.service");
    let state = root.join("var/lib/ringcast");

    let first = install_sh(root, &["--binary", BIN]);
    assert!(first.status.success());
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&conf), 0o644);
    assert_eq!(mode(&example), 0o644);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(std::fs::read(&bin).expect("installed binary"), std::fs::read(BIN).expect("built binary"));
    assert_eq!(std::fs::read_to_string(&unit).expect("installed unit"), unit_text());
    let installed = Command::new(&bin).arg("--version").output().expect("run it");
    assert!(installed.status.success());

    // The operator edits the config; a second install (an upgrade) keeps the edit.
    let edited = "# edited by the operator\nshards = 1\n";
    std::fs::write(&conf, edited).expect("edit the config");
    let second = install_sh(root, &["--binary", BIN]);
    assert!(second.status.success());
    assert_eq!(std::fs::read_to_string(&conf).expect("config"), edited);
    assert!(example.exists());
    let expected = ["ringcast", "ringcast.toml", "ringcast.toml.example", "ringcast.service", "production.md"];
    let leftovers: Vec<_> = walk(root)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !expected.contains(&name)
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A config the new binary rejects fails the install, loudly.
    std::fs::write(&conf, "no_such_key = 1\n").expect("break the config");
    let bad = install_sh(root, &["--binary", BIN]);
    assert!(!bad.status.success(), "an invalid config must fail the install");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_key"));
    std::fs::write(&conf, edited).expect("fix the config");

    // Uninstall keeps configuration and state; twice is fine.
    std::fs::create_dir_all(&state).expect("state dir");
    for _ in 0..2 {
        assert!(install_sh(root, &["--uninstall"]).status.success());
        assert!(!bin.exists() && !unit.exists());
        assert_eq!(std::fs::read_to_string(&conf).expect("config kept"), edited);
        assert!(state.exists());
    }

    // Purge removes them too.
    assert!(install_sh(root, &["--uninstall", "--purge"]).status.success());
    assert!(!conf.exists() && !example.exists() && !state.exists());

    // Unknown flags are refused, not ignored.
    assert!(!install_sh(root, &["--frobnicate"]).status.success());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
