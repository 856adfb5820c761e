//! Logging to stderr: human-readable text or JSON lines, journald-friendly.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a tracing filter (`info`, `ringcast=debug`, ...);
/// `RUST_LOG`, when set, wins. Under systemd (`JOURNAL_STREAM` set) timestamps are left out:
/// the journal adds its own.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // A second init (tests that start several servers in one process) is harmless.
    let _ = match (json, under_journal) {
        (true, _) => builder.json().try_init(),
        (false, true) => builder.without_time().with_ansi(false).try_init(),
        (false, false) => builder.with_ansi(false).try_init(),
    };
}
