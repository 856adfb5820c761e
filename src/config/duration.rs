//! Durations as operators write them: `"500ms"`, `"30s"`, `"5m"`, `"24h"`, `"2d"`, compounds such
//! as `"1h30m"`, or a bare number of seconds (`"30"`, or the TOML integer `30`).
//!
//! Hand-written because it is twenty lines and no crate in the tree parses this form.

use std::time::Duration;

/// The longest duration any key accepts. Consumers add durations to `Instant::now()`, which
/// panics on overflow; a year is far beyond any sensible timeout and far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

const EXPECTED: &str = "expected a number with a unit ms, s, m, h or d, e.g. \"30s\"";

/// Parses a duration such as `"30s"`, `"500ms"`, `"1h30m"` or `"30"` (seconds).
///
/// The error is a message without the key name (the caller adds it).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {} ({EXPECTED})", super::quote(text));
    let s = text.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| too_long(text))?;
        return check_max(Duration::from_secs(secs), text);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..].bytes().take_while(u8::is_ascii_alphabetic).count();
        if digits == 0 || letters == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_long(text))?;
        let unit_ms: u64 = match &rest[digits..digits + letters] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        let ms = number.checked_mul(unit_ms).ok_or_else(|| too_long(text))?;
        total = total.checked_add(Duration::from_millis(ms)).ok_or_else(|| too_long(text))?;
        rest = &rest[digits + letters..];
    }
    check_max(total, text)
}

/// Formats a duration the way [`parse_duration`] reads it back (`"1h30m"`, `"500ms"`), for help
/// text and messages.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

fn check_max(d: Duration, text: &str) -> Result<Duration, String> {
    if d > MAX_DURATION { Err(too_long(text)) } else { Ok(d) }
}

fn too_long(text: &str) -> String {
    format!("duration {} is too long (at most {})", super::quote(text), format_duration(MAX_DURATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 7 "), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn compounds_add_up() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1m30s250ms"), Ok(Duration::from_millis(90_250)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", " ", "s", "ms", "30x", "1.5s", "-5s", "30 s", "5m30", "m5", "30S", "1e3s"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.starts_with("invalid duration"), "{bad:?}: {err}");
            assert!(err.contains("\"30s\""), "the message shows the form: {err}");
        }
    }

    #[test]
    fn rejects_too_long_and_overflow() {
        assert!(parse_duration("366d").unwrap_err().contains("too long"));
        assert!(parse_duration("99999999999999999999").unwrap_err().contains("too long"));
        assert!(parse_duration("18446744073709551615h").unwrap_err().contains("too long"));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn format_round_trips() {
        for text in ["500ms", "30s", "5m", "12h", "1d", "1h30m", "1m30s250ms", "0s", "365d"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
