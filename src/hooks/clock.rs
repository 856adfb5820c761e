//! Wall-clock time as hooks report it: events' `timestamp`, signatures' timestamps, the
//! admin API's dates. Kept apart so every hook module can read it without importing the
//! module that assembles the hooks.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is set before it.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
