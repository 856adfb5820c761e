//! A replay: delivered events an outbox still keeps (`outbox_retain`) sent again to their
//! webhook, with their ids and bodies (docs/hooks.md, "Replaying events"). What it asks for
//! (a time range, as an operator writes it) and what it got. The outbox does the work
//! ([`super::Outboxes::replay`]); the admin API and `ringcast hooks replay` speak this.

use std::io;

use crate::config::parse_duration;
use crate::hooks::clock::days_from_civil;

/// What a replay queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Delivered events written again, to be sent behind what waits.
    pub replayed: u64,
    /// Events of the range not written again: the outbox was full (`outbox_max_bytes`).
    pub refused: u64,
    /// Events undelivered before the replay, on their way anyway (so not replayed).
    pub waiting: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No configured webhook has that outbox.
    #[error("no webhook outbox with this id")]
    UnknownSink,
    /// The server runs without outboxes (`outbox = false`, or `state_dir` not writable).
    #[error("the outbox is off: nothing is kept to replay")]
    OutboxOff,
    #[error("cannot read the outbox: {0}")]
    Io(io::Error),
    /// The dispatcher did not answer in time (stopping, or a very large replay).
    #[error("the hook dispatcher did not answer")]
    NoAnswer,
}

/// A point in time as a replay's `since`/`until` is written: RFC 3339
/// (`2026-12-06T09:00:00Z`, `2026-12-06T10:00:00.5+01:00`), or a duration meaning that long
/// before `now_ms` (`2h`, `90m`, `1h30m`). Unix milliseconds.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if text.contains(['-', ':']) {
        return parse_rfc3339(text)
            .ok_or_else(|| format!("invalid time {text:?} (expected RFC 3339, e.g. \"2026-12-06T09:00:00Z\", or a duration ago, e.g. \"2h\")"));
    }
    let ago = parse_duration(text).map_err(|_| {
        format!(
            "invalid time {text:?} (expected a duration ago, e.g. \"2h\", or RFC 3339, e.g. \"2026-12-06T09:00:00Z\")"
        )
    })?;
    Ok(now_ms.saturating_sub(ago.as_millis() as u64))
}

/// `YYYY-MM-DD(T| )HH:MM:SS[.fraction](Z|±HH:MM)` as unix milliseconds; `None` if it is not
/// one, or before 1970.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 {
        return None;
    }
    // 60: a leap second, counted as the next second's start.
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if bytes[at] == b'.' {
        let digits = bytes[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let fraction = &text[at + 1..at + 1 + digits.min(3)];
        millis = fraction.parse::<i64>().ok()? * 10i64.pow(3 - fraction.len() as u32);
        at += 1 + digits;
    }
    let offset_minutes = match &bytes[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(at + 1..at + 3)?, number(at + 4..at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_unix_milliseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z", 0), Ok(0));
        // `date -u -d 2026-12-06T09:00:00Z +%s`: 1796547600.
        assert_eq!(parse_time("2026-12-06T09:00:00Z", 0), Ok(1_796_547_600_000));
        assert_eq!(parse_time("2026-12-06T10:00:00.25+01:00", 0), Ok(1_796_547_600_250));
        assert_eq!(parse_time("2026-12-06 04:30:00.123456-04:30", 0), Ok(1_796_547_600_123));
        assert_eq!(parse_time("2024-02-29T00:00:00Z", 0), Ok(1_709_164_800_000), "a leap day");
    }

    #[test]
    fn a_duration_means_that_long_ago() {
        let now = 1_796_547_600_000;
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("1h30m", now), Ok(now - 5_400_000));
        assert_eq!(parse_time("0s", now), Ok(now));
    }

    #[test]
    fn anything_else_is_an_error_that_shows_the_forms() {
        for bad in [
            "",
            "yesterday",
            "2026-12-06",
            "2026-12-06T09:00:00",
            "2026-02-30T09:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T09:00:00.Z",
            "2026-12-06T09:00:00+1:00",
            "1969-12-31T23:59:59Z",
        ] {
            let error = parse_time(bad, 0).expect_err(bad);
            assert!(error.contains("RFC 3339") && error.contains("2h"), "{bad}: {error}");
        }
    }
}
