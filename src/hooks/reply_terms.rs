//! Session terms in a callback's reply (docs/hooks.md, "Limits in the reply"): a 2xx to
//! `on_connect`, `on_publish` or `on_play` whose body is JSON (`Content-Type:
//! application/json`) may cap the session's length (`max_duration`), rename the stream
//! (`name`, as a 3xx would), cap a publisher's bitrate (`max_bitrate_kbps`) and name the
//! origin a play's pull tries first (`origin`, as a 3xx to an `rtmp://` URL does).
//!
//! Only the reading is here; the session enforces the terms (`session/terms.rs`).
//! A known key with a value that cannot be read denies: the receiver meant to limit the
//! session, and admitting it unlimited would fail open. Unknown keys are ignored and logged
//! once per key for the process's life.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::warn;

use crate::config::{MAX_DURATION, RelayUrl, parse_duration};

/// The longest stream name a reply may rename to: the cap a client's own names have.
const MAX_NAME: usize = 1024;

/// How many distinct unknown keys are remembered as already logged: a receiver choosing
/// its keys must not grow the set without bound.
const MAX_LOGGED_KEYS: usize = 256;

/// Keys the JSON dialects answer with beside the terms (SRS's and ZLMediaKit's `code` and
/// `msg`, ZLMediaKit's `data`): known, so never logged as unknown.
const DIALECT_KEYS: [&str; 3] = ["code", "msg", "data"];

/// What a reply set for the session it admits; `None` fields were not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTerms {
    /// The stream's new name (publish and play; ignored for connect, like a 3xx).
    pub name: Option<String>,
    /// How long the session may last from its admission.
    pub max_duration: Option<Duration>,
    /// The highest average media bitrate a publisher may send, in kbit/s.
    pub max_bitrate_kbps: Option<u64>,
    /// The server a play's pull of this stream tries before the configured origins, when
    /// the stream is not here and no pull of it runs yet (docs/scaling-out.md); ignored for
    /// connect and publish, which pull nothing.
    pub origin: Option<RelayUrl>,
}

impl SessionTerms {
    pub fn is_empty(&self) -> bool {
        *self == SessionTerms::default()
    }
}

/// Reads the terms of an allowing answer's `Content-Type` and body: `Ok(None)` when the body
/// is not JSON (by its `Content-Type`), not an object, or sets none; `Err` with the reason
/// when a term's value cannot be read.
pub fn read(content_type: Option<&str>, body: &[u8]) -> Result<Option<SessionTerms>, String> {
    let is_json = content_type.is_some_and(|value| {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => from_fields(&fields).map(|terms| (!terms.is_empty()).then_some(terms)),
        _ => Ok(None),
    }
}

fn from_fields(fields: &Map<String, Value>) -> Result<SessionTerms, String> {
    let mut terms = SessionTerms::default();
    for (key, value) in fields {
        match key.as_str() {
            "max_duration" => terms.max_duration = Some(duration(value)?),
            "name" => terms.name = Some(name(value)?),
            "max_bitrate_kbps" => terms.max_bitrate_kbps = Some(bitrate(value)?),
            "origin" => terms.origin = Some(origin(value)?),
            key if DIALECT_KEYS.contains(&key) => {}
            key => log_unknown(key),
        }
    }
    Ok(terms)
}

/// Seconds as a JSON number (`30`, `2.5`), or a duration string (`"30s"`, `"1h30m"`).
fn duration(value: &Value) -> Result<Duration, String> {
    let invalid = || format!("callback reply: invalid max_duration {value}");
    let parsed = match value {
        Value::Number(n) => n.as_f64().and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
        Value::String(text) => parse_duration(text).ok(),
        _ => None,
    };
    parsed.filter(|d| *d <= MAX_DURATION).ok_or_else(invalid)
}

/// A plain stream name: what a client could have asked for, no path or query in it.
fn name(value: &Value) -> Result<String, String> {
    let plain = |s: &&str| {
        !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(|c| matches!(c, '/' | '?' | '#') || c.is_control())
    };
    value.as_str().filter(plain).map(str::to_owned).ok_or_else(|| format!("callback reply: invalid name {value}"))
}

fn bitrate(value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|&kbps| kbps > 0)
        .ok_or_else(|| format!("callback reply: invalid max_bitrate_kbps {value} (a positive integer)"))
}

/// `rtmp://host[:port][/app[/name]]`, as `[relay] origins` takes it.
fn origin(value: &Value) -> Result<RelayUrl, String> {
    let text = value.as_str().ok_or_else(|| format!("callback reply: invalid origin {value} (an rtmp:// URL)"))?;
    RelayUrl::parse(text).map_err(|reason| format!("callback reply: invalid origin {reason}"))
}

fn log_unknown(key: &str) {
    static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    let logged = logged.get_or_insert_with(HashSet::new);
    if logged.len() >= MAX_LOGGED_KEYS || logged.contains(key) {
        return;
    }
    logged.insert(key.to_owned());
    let shown: String = key.chars().take(64).collect();
    warn!(key = %shown, "callback reply: unknown key ignored (logged once per key)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(body: &str) -> Result<Option<SessionTerms>, String> {
        read(Some("application/json; charset=utf-8"), body.as_bytes())
    }

    #[test]
    fn reads_each_term() {
        let terms = read_json(r#"{"max_duration": 2, "name": "other", "max_bitrate_kbps": 500}"#).unwrap();
        assert_eq!(
            terms,
            Some(SessionTerms {
                name: Some("other".into()),
                max_duration: Some(Duration::from_secs(2)),
                max_bitrate_kbps: Some(500),
                origin: None,
            })
        );
        let terms = read_json(r#"{"max_duration": "1m30s"}"#).unwrap().unwrap();
        assert_eq!(terms.max_duration, Some(Duration::from_secs(90)));
        let terms = read_json(r#"{"max_duration": 0.5}"#).unwrap().unwrap();
        assert_eq!(terms.max_duration, Some(Duration::from_millis(500)));
        let terms = read_json(r#"{"origin": "rtmp://origin-b:1936/live"}"#).unwrap().unwrap();
        let origin = terms.origin.unwrap();
        assert_eq!((origin.host.as_str(), origin.port, origin.app.as_deref()), ("origin-b", 1936, Some("live")));
        assert_eq!(origin.name, None, "the stream's own name there");
    }

    #[test]
    fn only_a_json_object_sets_terms() {
        let body = br#"{"max_duration": 2}"#;
        assert_eq!(read(Some("text/plain"), body), Ok(None));
        assert_eq!(read(None, body), Ok(None));
        assert!(read(Some("Application/JSON"), body).unwrap().is_some());
        assert_eq!(read_json("[1, 2]"), Ok(None));
        assert_eq!(read_json("not json"), Ok(None));
        assert_eq!(read_json(r#"{"code": 0, "msg": "ok"}"#), Ok(None));
        assert_eq!(read_json(r#"{"surprise": true}"#), Ok(None), "unknown keys are ignored");
    }

    #[test]
    fn a_term_it_cannot_read_is_an_error() {
        for body in [
            r#"{"max_duration": -1}"#,
            r#"{"max_duration": "soon"}"#,
            r#"{"max_duration": true}"#,
            r#"{"max_duration": 1e30}"#,
            r#"{"name": ""}"#,
            r#"{"name": "a/b"}"#,
            r#"{"name": 7}"#,
            r#"{"max_bitrate_kbps": 0}"#,
            r#"{"max_bitrate_kbps": 1.5}"#,
            r#"{"max_bitrate_kbps": "fast"}"#,
            r#"{"origin": "http://origin-b/live"}"#,
            r#"{"origin": "rtmp://user:pw@origin-b/live"}"#,
            r#"{"origin": "rtmp://origin-b/live/cam/extra"}"#,
            r#"{"origin": 7}"#,
        ] {
            assert!(read_json(body).is_err(), "{body} was read");
        }
    }
}
