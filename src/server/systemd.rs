//! systemd's notify protocol (`sd_notify`): tell the service manager when ringcast is ready,
//! when it is stopping, and that it is still alive (the watchdog).
//!
//! Under `Type=notify` systemd passes a datagram socket in `$NOTIFY_SOCKET` (a path, or `@name`
//! in the abstract namespace) and waits for `READY=1` before it counts the service as started,
//! so units ordered after ringcast start only once its listeners accept. With `WatchdogSec=`
//! it also sets `$WATCHDOG_USEC` and restarts the service if no `WATCHDOG=1` arrives within
//! that interval; pinging at half the interval leaves room for one late ping.
//!
//! Written with std alone rather than libsystemd: the protocol is one datagram of `KEY=VALUE`
//! lines. Every failure here is logged and otherwise ignored: ringcast serves just as well
//! when systemd cannot be told about it.
//!
//! The variables are read once at start-up and then removed from the environment
//! ([`Notifier::take_from_env`]), as sd_notify(3) advises: ringcast starts hook scripts, and a
//! script that runs a systemd-aware program would otherwise see `NOTIFY_SOCKET` and report
//! readiness or liveness in ringcast's name (with `NotifyAccess=all`), or get its messages
//! refused and logged as noise by systemd (with the default `NotifyAccess=main`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{debug, warn};

/// The environment variables systemd uses for this protocol; all are cleared by
/// [`Notifier::take_from_env`].
pub const ENV_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Why `$NOTIFY_SOCKET` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET is empty")]
    Empty,
    #[error("NOTIFY_SOCKET {0:?} is neither a path nor an abstract socket (@name); this build speaks only AF_UNIX")]
    Unsupported(OsString),
    #[error("NOTIFY_SOCKET {value:?}: {source}")]
    Address { value: OsString, source: io::Error },
    #[error("cannot create the notify socket: {0}")]
    Socket(io::Error),
}

/// A handle on systemd's notify socket. `Send + Sync`: share it (in an `Arc`) between the
/// thread that reports readiness and the watchdog thread.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for, or `None` when ringcast was not started by systemd
    /// (`$NOTIFY_SOCKET` unset) or the socket is unusable (logged). Leaves the environment as
    /// it is; see [`Notifier::take_from_env`].
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = parse_watchdog(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        match Notifier::new(&value, watchdog) {
            Ok(notifier) => Some(notifier),
            Err(error) => {
                warn!(%error, "systemd notifications disabled");
                None
            }
        }
    }

    /// [`Notifier::from_env`], then removes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`
    /// from the environment so hook scripts do not inherit them.
    ///
    /// # Safety
    ///
    /// Changes the process environment: call it while no other thread exists that could read
    /// or write the environment, that is first thing in `main`, before any shard, signal or
    /// logging thread starts (the rule of [`std::env::remove_var`]).
    pub unsafe fn take_from_env() -> Option<Notifier> {
        let notifier = Notifier::from_env();
        for name in ENV_VARS {
            // SAFETY: the caller guarantees no other thread is running.
            unsafe { std::env::remove_var(name) };
        }
        notifier
    }

    /// A notifier for the socket named like `$NOTIFY_SOCKET` (`/path` or `@abstract`), with the
    /// given watchdog interval. Tests use it directly; ringcast goes through `from_env`.
    pub fn new(notify_socket: &OsStr, watchdog: Option<Duration>) -> Result<Notifier, NotifyError> {
        let target = parse_notify_socket(notify_socket)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        // A datagram send blocks while the receiver's queue is full; systemd drains it quickly,
        // but a status line is never worth stalling a shard or the signal thread for.
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier { socket, target, watchdog })
    }

    /// `READY=1`: every listener is bound and accepting. Send it once.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STOPPING=1`: shutdown has begun (systemd then shows the unit as deactivating).
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `STATUS=...`: one line shown by `systemctl status`. Newlines would start new
    /// assignments in the datagram, so they become spaces.
    pub fn status(&self, status: &str) {
        let line: String = status.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
        self.send(&format!("STATUS={line}"));
    }

    /// `WATCHDOG=1`: ringcast is alive. Send it every half [`Notifier::watchdog_interval`].
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// The watchdog interval systemd enforces (`WatchdogSec=`), if any and if it is meant for
    /// this process (`$WATCHDOG_PID`, when set, is our PID). Ping at half of it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one datagram; a failure is logged, never returned: ringcast runs the same whether
    /// or not systemd hears about it.
    fn send(&self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.target) {
            Ok(_) => debug!(message, "sent to systemd"),
            Err(error) => warn!(%error, message, "cannot notify systemd"),
        }
    }
}

/// Starts a thread that sends `WATCHDOG=1` every half `interval` for as long as the process
/// runs, skipping a ping (with a warning) whenever `healthy()` returns false, so that systemd
/// restarts a ringcast whose shards have stopped making progress.
///
/// `healthy` is called once per ping period; [`Heartbeats::all_beating`] is meant for it.
pub fn spawn_watchdog(
    notifier: Arc<Notifier>,
    interval: Duration,
    mut healthy: impl FnMut() -> bool + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let period = ping_period(interval);
    thread::Builder::new().name("watchdog".into()).spawn(move || {
        loop {
            if healthy() {
                notifier.watchdog();
            } else {
                warn!(?interval, "a shard has made no progress; withholding the systemd watchdog ping");
            }
            thread::sleep(period);
        }
    })
}

/// Half the watchdog interval, never zero (a zero sleep would spin).
pub fn ping_period(interval: Duration) -> Duration {
    (interval / 2).max(Duration::from_millis(1))
}

/// One counter per shard that the shard bumps from a timer task, so the watchdog thread can
/// tell a live shard from one stuck in a loop or a blocking call: the watchdog is only worth
/// having if a hung reactor stops the pings.
#[derive(Debug)]
pub struct Heartbeats {
    beats: Box<[AtomicU64]>,
    /// What the last [`Heartbeats::all_beating`] saw; only the watchdog thread touches it.
    seen: std::sync::Mutex<Vec<u64>>,
    tick: Duration,
}

impl Heartbeats {
    /// Counters for `shards` shards under a watchdog of `interval`.
    pub fn new(shards: usize, interval: Duration) -> Heartbeats {
        Heartbeats {
            beats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            seen: std::sync::Mutex::new(vec![0; shards]),
            // Two beats per ping period, so a shard that is merely busy still beats at least
            // once between two checks.
            tick: (interval / 4).max(Duration::from_millis(1)),
        }
    }

    /// How often each shard should call [`Heartbeats::beat`].
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Shard `shard` is alive. Cheap: one relaxed atomic add.
    pub fn beat(&self, shard: usize) {
        if let Some(counter) = self.beats.get(shard) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether every shard has beaten since the previous call (the first call compares with
    /// zero, so a shard that never beat at all counts as stuck).
    pub fn all_beating(&self) -> bool {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            // Only this method takes the lock and it cannot panic while holding it; recover
            // rather than take the watchdog down.
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut all = true;
        for (counter, last) in self.beats.iter().zip(seen.iter_mut()) {
            let now = counter.load(Ordering::Relaxed);
            if now == *last {
                all = false;
            }
            *last = now;
        }
        all
    }
}

/// `$NOTIFY_SOCKET` as an address: an absolute path, or `@name` for the abstract namespace
/// (the `@` stands for the leading NUL byte).
fn parse_notify_socket(value: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = value.as_bytes();
    let address = |source| NotifyError::Address { value: value.to_owned(), source };
    match bytes.first() {
        None => Err(NotifyError::Empty),
        Some(b'/') => SocketAddr::from_pathname(value).map_err(address),
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).map_err(address),
        // Newer systemd may hand out vsock: addresses (VMs); nothing ringcast runs under.
        Some(_) => Err(NotifyError::Unsupported(value.to_owned())),
    }
}

/// The watchdog interval from `$WATCHDOG_USEC`, if it is set, a positive number, and meant
/// for us: `$WATCHDOG_PID`, when present, names the process that must ping (a wrapper script
/// would otherwise make its child ping for a PID systemd does not watch).
fn parse_watchdog(usec: Option<&OsStr>, pid: Option<&OsStr>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn watchdog_interval_from_usec() {
        assert_eq!(parse_watchdog(Some(os("30000000")), None, 7), Some(Duration::from_secs(30)));
        assert_eq!(parse_watchdog(Some(os("200000")), Some(os("7")), 7), Some(Duration::from_millis(200)));
    }

    #[test]
    fn watchdog_for_another_pid_or_malformed_is_ignored() {
        assert_eq!(parse_watchdog(Some(os("200000")), Some(os("8")), 7), None);
        assert_eq!(parse_watchdog(Some(os("200000")), Some(os("x")), 7), None);
        assert_eq!(parse_watchdog(Some(os("0")), None, 7), None);
        assert_eq!(parse_watchdog(Some(os("-5")), None, 7), None);
        assert_eq!(parse_watchdog(Some(os("soon")), None, 7), None);
        assert_eq!(parse_watchdog(None, Some(os("7")), 7), None);
    }

    #[test]
    fn ping_period_is_half_and_never_zero() {
        assert_eq!(ping_period(Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(ping_period(Duration::ZERO), Duration::from_millis(1));
    }

    #[test]
    fn notify_socket_forms() {
        assert!(parse_notify_socket(os("/run/systemd/notify")).is_ok());
        let abstract_addr = parse_notify_socket(os("@ringcast/notify")).expect("abstract");
        assert_eq!(abstract_addr.as_abstract_name(), Some(&b"ringcast/notify"[..]));
        assert!(matches!(parse_notify_socket(os("")), Err(NotifyError::Empty)));
        assert!(matches!(parse_notify_socket(os("vsock:2:1234")), Err(NotifyError::Unsupported(_))));
        let too_long = format!("/{}", "x".repeat(200));
        assert!(matches!(parse_notify_socket(os(&too_long)), Err(NotifyError::Address { .. })));
    }

    fn receiver_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("rc-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let path = receiver_path("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind receiver");
        receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let notifier = Notifier::new(path.as_os_str(), None).expect("notifier");
        notifier.ready();
        notifier.status("serving\nrtmp=127.0.0.1:1935");
        notifier.watchdog();
        notifier.stopping();
        assert_eq!(recv(&receiver), "READY=1");
        assert_eq!(recv(&receiver), "STATUS=serving rtmp=127.0.0.1:1935");
        assert_eq!(recv(&receiver), "WATCHDOG=1");
        assert_eq!(recv(&receiver), "STOPPING=1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("ringcast-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let receiver = UnixDatagram::bind_addr(&addr).expect("bind abstract receiver");
        receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let notifier = Notifier::new(os(&format!("@{name}")), None).expect("notifier");
        notifier.ready();
        assert_eq!(recv(&receiver), "READY=1");
    }

    #[test]
    fn a_missing_receiver_is_not_fatal() {
        let path = receiver_path("nobody");
        let notifier = Notifier::new(path.as_os_str(), None).expect("notifier");
        // Nothing listens there: the send fails, is logged, and returns.
        notifier.ready();
        notifier.stopping();
    }

    #[test]
    fn watchdog_thread_pings_only_while_healthy() {
        let path = receiver_path("watchdog");
        let receiver = UnixDatagram::bind(&path).expect("bind receiver");
        receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let interval = Duration::from_millis(40);
        let notifier = Arc::new(Notifier::new(path.as_os_str(), Some(interval)).expect("notifier"));
        let beats = Arc::new(Heartbeats::new(1, interval));
        let shard = beats.clone();
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        // Healthy for the first three checks, then the shard "hangs": no more beats.
        let _thread = spawn_watchdog(notifier, interval, move || {
            if counted.fetch_add(1, Ordering::Relaxed) < 3 {
                shard.beat(0);
            }
            shard.all_beating()
        })
        .expect("spawn watchdog");
        for _ in 0..3 {
            assert_eq!(recv(&receiver), "WATCHDOG=1");
        }
        // Stuck from now on: nothing more arrives although the thread keeps checking.
        receiver.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let mut buf = [0u8; 64];
        assert!(receiver.recv(&mut buf).is_err(), "no ping from a hung shard");
        assert!(calls.load(Ordering::Relaxed) > 4);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn heartbeats_notice_a_silent_shard() {
        let beats = Heartbeats::new(2, Duration::from_secs(30));
        assert_eq!(beats.tick(), Duration::from_millis(7500));
        assert!(!beats.all_beating(), "no beat yet");
        beats.beat(0);
        beats.beat(1);
        assert!(beats.all_beating());
        beats.beat(0);
        assert!(!beats.all_beating(), "shard 1 went quiet");
        beats.beat(0);
        beats.beat(1);
        assert!(beats.all_beating());
        beats.beat(5); // out of range: ignored, not a panic
    }
}
