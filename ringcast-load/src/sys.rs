//! CPU time and memory of a process, from /proc: the server's (`--server-pid`) and our own.
//!
//! On a small machine the load client and the server share the CPU, so wall-clock rates say
//! little about the server; CPU seconds it spent during the run do.

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub hwm_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads `/proc/<pid>` (or `/proc/self` for `None`); `None` if the process is gone or the
/// files do not parse.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 with the state (field 3) at index 0.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / ticks,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    })
}

/// What a process did between two readings.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcUsage {
    pub pid: Option<u32>,
    /// CPU seconds spent between the readings.
    pub cpu_s: f64,
    /// Average cores busy over the wall time between the readings.
    pub cores: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// The highest RSS reading taken during the run (sampled, not the kernel's peak).
    pub rss_max_kib: u64,
    pub hwm_kib: u64,
}

/// Tracks a process over a run: first reading, highest RSS seen, last reading.
#[derive(Debug, Clone, Copy)]
pub struct Tracker {
    pid: Option<u32>,
    start: Option<ProcSample>,
    started_at: std::time::Instant,
    rss_max: u64,
    last: Option<ProcSample>,
}

impl Tracker {
    pub fn start(pid: Option<u32>) -> Tracker {
        let start = sample(pid);
        Tracker {
            pid,
            start,
            started_at: std::time::Instant::now(),
            rss_max: start.map_or(0, |s| s.rss_kib),
            last: start,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Takes a reading (call it periodically to catch the highest RSS).
    pub fn poll(&mut self) -> Option<ProcSample> {
        let now = sample(self.pid);
        if let Some(s) = now {
            self.rss_max = self.rss_max.max(s.rss_kib);
            self.last = Some(s);
        }
        now
    }

    pub fn finish(&mut self) -> Option<ProcUsage> {
        self.poll();
        let (start, end) = (self.start?, self.last?);
        let cpu_s = (end.cpu_s - start.cpu_s).max(0.0);
        let wall = self.started_at.elapsed().as_secs_f64();
        Some(ProcUsage {
            pid: self.pid,
            cpu_s: crate::stats::round3(cpu_s),
            cores: if wall > 0.0 { crate::stats::round3(cpu_s / wall) } else { 0.0 },
            rss_start_kib: start.rss_kib,
            rss_end_kib: end.rss_kib,
            rss_max_kib: self.rss_max,
            hwm_kib: end.hwm_kib,
        })
    }
}

/// The open-files limit (soft, hard) of this process.
pub fn nofile_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft open-files limit to the hard one: every connection is a descriptor.
pub fn raise_nofile_limit() -> Option<u64> {
    let (_, hard) = nofile_limit()?;
    let limit = libc::rlimit { rlim_cur: hard, rlim_max: hard };
    // SAFETY: setrlimit reads the struct we own.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0;
    ok.then_some(hard)
}
