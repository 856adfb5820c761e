//! Start-up checks of the host limits that decide how far ringcast can go: io_uring (without
//! it nothing runs), the open files limit (one descriptor per connection) and the kernel's
//! cap on listen backlogs.
//!
//! A missing io_uring is an error with the cause and the fix in one message, instead of the
//! first shard dying with a bare `Operation not permitted`. A low limit is a [`Warning`]:
//! ringcast still runs, but the operator learns at start, not at the 1,025th viewer, which
//! knob to turn.
//!
//! The decisions are pure functions of the values read (tested with injected values); only
//! [`check`] touches the system.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use tracing::{debug, info};

/// The listen backlog ringcast asks for on each listener (server's `LISTEN_BACKLOG`); the
/// kernel silently caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// The io_uring operations ringcast's sockets go through (tokio-uring's accept, read, write,
/// writev, close, and cancel for a dropped read).
const REQUIRED_OPS: [(u8, &str); 6] = [
    (io_uring::opcode::Accept::CODE, "ACCEPT"),
    (io_uring::opcode::Read::CODE, "READ"),
    (io_uring::opcode::Write::CODE, "WRITE"),
    (io_uring::opcode::Writev::CODE, "WRITEV"),
    (io_uring::opcode::Close::CODE, "CLOSE"),
    (io_uring::opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];

/// File descriptors ringcast holds besides its connections: per shard a ring, its eventfd and
/// a listener per protocol; then hook HTTP connections, scripts' pipes, logs. Generous on
/// purpose: running out costs a refused viewer, spare descriptors cost nothing.
const FD_SLACK: u64 = 256;
const FD_PER_SHARD: u64 = 16;

/// Something on this host that will limit ringcast, with how to fix it. `Display` is one line:
/// the problem, its consequence, then `fix:` and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The open files limit (after raising the soft limit to the hard one) is below what the
    /// expected connections need.
    NofileLow { limit: u64, needed: u64, connections: usize },
    /// `net.core.somaxconn` caps the listen backlog below what ringcast asks for.
    SomaxconnLow { somaxconn: u32, backlog: u32 },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NofileLow { limit, needed, connections } => write!(
                f,
                "the open files limit is {limit}, below the ~{needed} that {connections} \
                 connections (max_connections) need: connections past it are refused (EMFILE); \
                 fix: LimitNOFILE=1048576 in the systemd unit, or `ulimit -n 1048576` (and the \
                 hard limit in /etc/security/limits.conf) before starting ringcast, or lower \
                 max_connections"
            ),
            Warning::SomaxconnLow { somaxconn, backlog } => write!(
                f,
                "net.core.somaxconn is {somaxconn}, below the listen backlog of {backlog} ringcast \
                 asks for: bursts of new connections (every viewer reconnecting after a restart) \
                 overflow the accept queue and wait for SYN retries; fix: `sysctl -w \
                 net.core.somaxconn={backlog}` and persist it in /etc/sysctl.d/90-ringcast.conf"
            ),
        }
    }
}

/// Why ringcast cannot run on this host. The message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "io_uring is unavailable: this kernel ({kernel}) does not provide it (io_uring_setup: \
         {errno}); fix: run ringcast on Linux 5.11 or later built with CONFIG_IO_URING=y"
    )]
    NoIoUring { kernel: String, errno: &'static str },
    #[error(
        "io_uring is unavailable: a seccomp filter blocks it (io_uring_setup: {errno}); container \
         runtimes (Docker, Podman, containerd) block io_uring by default; fix: allow the \
         io_uring_setup, io_uring_enter and io_uring_register system calls (for example `docker \
         run --security-opt seccomp=PROFILE.json` with a profile that allows them), or remove \
         them from a systemd SystemCallFilter="
    )]
    Seccomp { errno: &'static str },
    #[error(
        "io_uring is unavailable: it is disabled on this host (sysctl kernel.io_uring_disabled=2); \
         fix: `sysctl -w kernel.io_uring_disabled=0` and persist it in /etc/sysctl.d/"
    )]
    DisabledBySysctl,
    #[error(
        "io_uring is unavailable: sysctl kernel.io_uring_disabled=1 allows it only to root and to \
         {group}; fix: add ringcast's user to that group (SupplementaryGroups= in the systemd \
         unit) or `sysctl -w kernel.io_uring_disabled=0`"
    )]
    RestrictedToGroup { group: String },
    #[error(
        "io_uring is unavailable: permission denied (io_uring_setup: EPERM) without a seccomp \
         filter or the kernel.io_uring_disabled sysctl, so a security module (SELinux, AppArmor) \
         refuses it; fix: allow io_uring for ringcast in that module's policy"
    )]
    Denied,
    #[error(
        "io_uring is unavailable: the ring does not fit the locked-memory limit ({memlock}); \
         kernels before 5.12 charge io_uring rings to it; fix: LimitMEMLOCK=infinity in the \
         systemd unit or `ulimit -l unlimited`, or a kernel 5.12 or later"
    )]
    Memlock { memlock: String },
    #[error(
        "io_uring on this kernel ({kernel}) lacks what ringcast needs ({missing}); fix: run \
         ringcast on Linux 5.11 or later"
    )]
    TooOld { kernel: String, missing: String },
    #[error("io_uring is unavailable: cannot create a ring: {0}")]
    Other(io::Error),
}

/// Checks the host. Raises the soft open files limit to the hard limit on the way (as nginx's
/// `worker_rlimit_nofile` and Go's runtime do): the soft limit exists for programs that cannot
/// handle many descriptors, and ringcast is built for them.
///
/// `expected_connections` is `max_connections`; `shards` the number of shards.
pub fn check(expected_connections: usize, shards: usize) -> Result<Vec<Warning>, PreflightError> {
    probe_io_uring()?;
    let mut warnings = Vec::new();
    let needed = needed_fds(expected_connections, shards);
    if let Some(limit) = raise_nofile() {
        warnings.extend(nofile_warning(limit, needed, expected_connections));
    }
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok();
    warnings.extend(somaxconn_warning(somaxconn.as_deref(), LISTEN_BACKLOG));
    Ok(warnings)
}

/// The soft open files limit ringcast was started with, before [`check`] raised it. Hook
/// scripts should get it back (in `pre_exec`, with `setrlimit`): some programs walk every
/// descriptor up to the limit, which takes long at a million, and `select` breaks past 1024.
pub fn original_nofile_soft_limit() -> Option<u64> {
    ORIGINAL_NOFILE_SOFT.get().copied()
}

static ORIGINAL_NOFILE_SOFT: OnceLock<u64> = OnceLock::new();

/// Descriptors for `connections` connections: 10% over, for connections still closing while
/// new ones arrive, plus the fixed ones.
fn needed_fds(connections: usize, shards: usize) -> u64 {
    let connections = connections as u64;
    connections
        .saturating_add(connections / 10)
        .saturating_add(FD_SLACK)
        .saturating_add((shards as u64).saturating_mul(FD_PER_SHARD))
}

/// The soft limit to set, if raising is possible: the hard limit, but never above
/// `fs.nr_open`, which setrlimit refuses (a hard limit of "unlimited" means up to it).
fn raise_target(soft: u64, hard: u64, nr_open: Option<u64>) -> Option<u64> {
    let target = match nr_open {
        Some(nr_open) => hard.min(nr_open),
        None => hard,
    };
    (target > soft).then_some(target)
}

fn nofile_warning(limit: u64, needed: u64, connections: usize) -> Option<Warning> {
    (limit < needed).then_some(Warning::NofileLow { limit, needed, connections })
}

/// A warning when `somaxconn` (the text of /proc/sys/net/core/somaxconn) is below `backlog`.
/// Unreadable or odd values give none: a check that cannot read the value has nothing true to
/// say about it.
fn somaxconn_warning(somaxconn: Option<&str>, backlog: u32) -> Option<Warning> {
    let somaxconn: u32 = somaxconn?.trim().parse().ok()?;
    (somaxconn < backlog).then_some(Warning::SomaxconnLow { somaxconn, backlog })
}

/// Raises the soft RLIMIT_NOFILE as far as allowed; returns the soft limit now in force.
fn raise_nofile() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        debug!(error = %io::Error::last_os_error(), "getrlimit(RLIMIT_NOFILE) failed");
        return None;
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    let _ = ORIGINAL_NOFILE_SOFT.set(soft);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|text| text.trim().parse().ok());
    let Some(target) = raise_target(soft, hard, nr_open) else {
        return Some(soft);
    };
    let raised = libc::rlimit { rlim_cur: target, rlim_max: hard };
    // SAFETY: setrlimit reads one rlimit we own; it changes only this process's limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        debug!(
            error = %io::Error::last_os_error(),
            soft, target, "cannot raise the open files limit"
        );
        return Some(soft);
    }
    info!(from = soft, to = target, "raised the open files limit");
    Some(target)
}

/// Creates (and drops) a small ring, the only test that covers every way io_uring can be
/// missing or refused, then checks it can do what ringcast asks of it.
fn probe_io_uring() -> Result<(), PreflightError> {
    let ring = match io_uring::IoUring::new(8) {
        Ok(ring) => ring,
        Err(error) => return Err(diagnose(&error, &UringFacts::read())),
    };
    let mut probe = io_uring::Probe::new();
    let probed = ring.submitter().register_probe(&mut probe).is_ok();
    let missing = missing_features(probed, ring.params().is_feature_fast_poll(), |op| probe.is_supported(op));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::TooOld { kernel: UringFacts::read().kernel_text(), missing: missing.join(", ") })
    }
}

/// What an io_uring lacks: the probe itself (Linux 5.6), fast poll (5.7; without it every
/// pending socket read parks a kernel worker thread, one per idle viewer), or an operation.
fn missing_features(probed: bool, fast_poll: bool, supported: impl Fn(u8) -> bool) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !probed {
        missing.push("IORING_REGISTER_PROBE");
    }
    if !fast_poll {
        missing.push("IORING_FEAT_FAST_POLL");
    }
    if probed {
        missing.extend(REQUIRED_OPS.iter().filter(|(code, _)| !supported(*code)).map(|(_, name)| *name));
    }
    missing
}

/// What the host says about io_uring, read only when creating a ring failed.
#[derive(Clone, Debug, Default, PartialEq)]
struct UringFacts {
    /// `kernel.io_uring_disabled` (Linux 6.6+): 0 allowed, 1 root and a group only, 2 off.
    disabled: Option<u32>,
    /// `kernel.io_uring_group`: the group allowed when `disabled` is 1; -1 for none.
    group: Option<i64>,
    /// The `Seccomp:` mode of /proc/self/status; 2 is a filter.
    seccomp_filter: bool,
    /// `uname -r`.
    kernel: Option<String>,
    /// RLIMIT_MEMLOCK soft limit in bytes; `None` if unlimited or unknown.
    memlock: Option<u64>,
}

impl UringFacts {
    fn read() -> UringFacts {
        let sysctl = |name: &str| std::fs::read_to_string(format!("/proc/sys/kernel/{name}")).ok();
        let seccomp_filter =
            std::fs::read_to_string("/proc/self/status").ok().is_some_and(|status| seccomp_filtered(&status));
        let mut memlock = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        let memlock = (unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut memlock) } == 0
            && memlock.rlim_cur != libc::RLIM_INFINITY)
            .then_some(memlock.rlim_cur);
        UringFacts {
            disabled: sysctl("io_uring_disabled").and_then(|t| t.trim().parse().ok()),
            group: sysctl("io_uring_group").and_then(|t| t.trim().parse().ok()),
            seccomp_filter,
            kernel: sysctl("osrelease").map(|t| t.trim().to_owned()),
            memlock,
        }
    }

    fn kernel_text(&self) -> String {
        self.kernel.clone().unwrap_or_else(|| "unknown".into())
    }

    /// The kernel's major and minor version, from a release such as `6.1.0-18-amd64`.
    fn kernel_version(&self) -> Option<(u32, u32)> {
        let mut parts = self.kernel.as_deref()?.split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
}

/// Whether /proc/self/status says a seccomp filter is installed (`Seccomp:` mode 2).
fn seccomp_filtered(status: &str) -> bool {
    status.lines().find_map(|line| line.strip_prefix("Seccomp:")).is_some_and(|mode| mode.trim() == "2")
}

/// Turns a failed io_uring_setup into the cause an operator can act on.
fn diagnose(error: &io::Error, facts: &UringFacts) -> PreflightError {
    let Some(errno) = error.raw_os_error() else {
        return PreflightError::Other(io::Error::new(error.kind(), error.to_string()));
    };
    match errno {
        libc::EPERM | libc::EACCES => {
            let name = if errno == libc::EPERM { "EPERM" } else { "EACCES" };
            match facts.disabled {
                Some(2) => PreflightError::DisabledBySysctl,
                Some(1) => PreflightError::RestrictedToGroup {
                    group: match facts.group {
                        Some(gid) if gid >= 0 => {
                            format!("members of group {gid} (kernel.io_uring_group)")
                        }
                        _ => "no group (kernel.io_uring_group=-1)".into(),
                    },
                },
                _ if facts.seccomp_filter => PreflightError::Seccomp { errno: name },
                _ => PreflightError::Denied,
            }
        }
        libc::ENOSYS => {
            // io_uring arrived in 5.1; on an older kernel ENOSYS is the kernel's own answer
            // even under a filter.
            let predates = facts.kernel_version().is_some_and(|v| v < (5, 1));
            if facts.seccomp_filter && !predates {
                PreflightError::Seccomp { errno: "ENOSYS" }
            } else {
                PreflightError::NoIoUring { kernel: facts.kernel_text(), errno: "ENOSYS" }
            }
        }
        libc::ENOMEM => PreflightError::Memlock {
            memlock: match facts.memlock {
                Some(bytes) => format!("RLIMIT_MEMLOCK is {} KiB", bytes / 1024),
                None => "RLIMIT_MEMLOCK".into(),
            },
        },
        _ => PreflightError::Other(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> UringFacts {
        UringFacts {
            disabled: Some(0),
            group: Some(-1),
            seccomp_filter: false,
            kernel: Some("6.1.0-18-amd64".into()),
            memlock: Some(8 << 20),
        }
    }

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn fds_needed_cover_connections_with_slack() {
        assert_eq!(needed_fds(100_000, 8), 110_000 + 256 + 128);
        assert_eq!(needed_fds(0, 1), 256 + 16);
        assert_eq!(needed_fds(usize::MAX, usize::MAX), u64::MAX);
    }

    #[test]
    fn soft_limit_is_raised_to_hard_but_not_past_nr_open() {
        assert_eq!(raise_target(1024, 524_288, Some(1_048_576)), Some(524_288));
        assert_eq!(raise_target(1024, libc::RLIM_INFINITY, Some(1_048_576)), Some(1_048_576));
        assert_eq!(raise_target(1024, 4096, None), Some(4096));
        assert_eq!(raise_target(4096, 4096, Some(1_048_576)), None);
        assert_eq!(raise_target(2_000_000, 2_000_000, Some(1_048_576)), None);
    }

    #[test]
    fn nofile_warns_only_below_need_and_names_the_fix() {
        assert_eq!(nofile_warning(1_048_576, 110_384, 100_000), None);
        let warning = nofile_warning(1024, 110_384, 100_000).expect("a warning");
        let line = warning.to_string();
        assert!(line.contains("open files limit is 1024"), "{line}");
        assert!(line.contains("100000 connections"), "{line}");
        assert!(line.contains("LimitNOFILE=1048576"), "{line}");
        assert!(line.contains("ulimit -n"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn somaxconn_below_backlog_warns_with_the_sysctl() {
        assert_eq!(somaxconn_warning(Some("4096\n"), 4096), None);
        assert_eq!(somaxconn_warning(Some("65535\n"), 4096), None);
        let warning = somaxconn_warning(Some("128\n"), 4096).expect("a warning");
        assert_eq!(warning, Warning::SomaxconnLow { somaxconn: 128, backlog: 4096 });
        let line = warning.to_string();
        assert!(line.contains("net.core.somaxconn is 128"), "{line}");
        assert!(line.contains("sysctl -w net.core.somaxconn=4096"), "{line}");
        assert_eq!(somaxconn_warning(None, 4096), None);
        assert_eq!(somaxconn_warning(Some("lots"), 4096), None);
    }

    #[test]
    fn seccomp_mode_from_proc_status() {
        let status = "Name:\tringcast\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert!(seccomp_filtered(status));
        assert!(!seccomp_filtered("Name:\tringcast\nSeccomp:\t0\n"));
        assert!(!seccomp_filtered("Name:\tringcast\n"));
    }

    #[test]
    fn eperm_under_a_filter_is_seccomp() {
        let facts = UringFacts { seccomp_filter: true, ..facts() };
        let error = diagnose(&errno(libc::EPERM), &facts);
        assert!(matches!(error, PreflightError::Seccomp { errno: "EPERM" }));
        let message = error.to_string();
        assert!(message.starts_with("io_uring is unavailable: a seccomp filter"));
        assert!(message.contains("io_uring_setup, io_uring_enter and io_uring_register"));
        assert!(message.contains("fix:"));
    }

    #[test]
    fn eperm_from_the_sysctl_names_it() {
        let off = UringFacts { disabled: Some(2), seccomp_filter: true, ..facts() };
        let message = diagnose(&errno(libc::EPERM), &off).to_string();
        assert!(message.contains("kernel.io_uring_disabled=2"), "{message}");
        assert!(message.contains("sysctl -w kernel.io_uring_disabled=0"), "{message}");

        let group = UringFacts { disabled: Some(1), group: Some(998), ..facts() };
        let message = diagnose(&errno(libc::EPERM), &group).to_string();
        assert!(message.contains("kernel.io_uring_disabled=1"), "{message}");
        assert!(message.contains("group 998"), "{message}");
        assert!(message.contains("SupplementaryGroups="), "{message}");

        let nobody = UringFacts { disabled: Some(1), group: Some(-1), ..facts() };
        let message = diagnose(&errno(libc::EPERM), &nobody).to_string();
        assert!(message.contains("no group"), "{message}");
    }

    #[test]
    fn eperm_with_nothing_else_is_a_security_module() {
        let message = diagnose(&errno(libc::EPERM), &facts()).to_string();
        assert!(message.contains("SELinux"), "{message}");
        let older = UringFacts { disabled: None, ..facts() };
        assert!(matches!(diagnose(&errno(libc::EPERM), &older), PreflightError::Denied));
    }

    #[test]
    fn enosys_is_the_kernel_unless_a_filter_says_otherwise() {
        let message = diagnose(&errno(libc::ENOSYS), &facts()).to_string();
        assert_eq!(
            message,
            "io_uring is unavailable: this kernel (6.1.0-18-amd64) does not provide it \
             (io_uring_setup: ENOSYS); fix: run ringcast on Linux 5.11 or later built with \
             CONFIG_IO_URING=y"
        );
        let filtered = UringFacts { seccomp_filter: true, ..facts() };
        assert!(matches!(diagnose(&errno(libc::ENOSYS), &filtered), PreflightError::Seccomp { errno: "ENOSYS" }));
        let ancient = UringFacts { seccomp_filter: true, kernel: Some("4.19.0-26-amd64".into()), ..facts() };
        assert!(matches!(diagnose(&errno(libc::ENOSYS), &ancient), PreflightError::NoIoUring { .. }));
    }

    #[test]
    fn enomem_points_at_memlock() {
        let message = diagnose(&errno(libc::ENOMEM), &facts()).to_string();
        assert!(message.contains("RLIMIT_MEMLOCK is 8192 KiB"), "{message}");
        assert!(message.contains("LimitMEMLOCK=infinity"), "{message}");
    }

    #[test]
    fn other_errors_keep_the_os_message() {
        let message = diagnose(&errno(libc::EINVAL), &facts()).to_string();
        assert!(message.starts_with("io_uring is unavailable: cannot create a ring: "));
    }

    #[test]
    fn kernel_version_parsing() {
        let with = |k: &str| UringFacts { kernel: Some(k.into()), ..facts() };
        assert_eq!(with("6.18.44-fc-v669").kernel_version(), Some((6, 18)));
        assert_eq!(with("5.4.0-150-generic").kernel_version(), Some((5, 4)));
        assert_eq!(with("6.8").kernel_version(), Some((6, 8)));
        assert_eq!(with("weird").kernel_version(), None);
        assert_eq!(UringFacts::default().kernel_version(), None);
    }

    #[test]
    fn missing_features_lists_what_an_old_kernel_lacks() {
        assert!(missing_features(true, true, |_| true).is_empty());
        assert_eq!(missing_features(false, false, |_| true), ["IORING_REGISTER_PROBE", "IORING_FEAT_FAST_POLL"]);
        let no_accept = missing_features(true, true, |op| op != io_uring::opcode::Accept::CODE);
        assert_eq!(no_accept, ["ACCEPT"]);
    }

    #[test]
    fn this_host_has_a_working_io_uring() {
        // ringcast runs only on io_uring, so the machines it is built and tested on must have a
        // working one; if this fails, the message says why.
        if let Err(error) = probe_io_uring() {
            panic!("{error}");
        }
    }
}
