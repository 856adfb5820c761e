//! How an event is written for each sink (docs/hooks.md, "Formats"): the webhook bodies (`envelope`,
//! `flat`, `form`, `dolby`) and the environment variables of scripts and stdio `env`.
//!
//! Everything here is pure: an [`Event`] in, bytes or strings out, so the same event always
//! encodes to the same bytes (a retry re-sends exactly what the first attempt sent, apart from
//! the signature timestamp).
//!
//! # Name clashes
//!
//! Some data fields share a name with an envelope field (`publish_update` has a `timestamp`,
//! the media timestamp; `connection_accept` has a `protocol`). Where data is merged into the
//! same namespace as the envelope fields (`flat`, `form`, the environment), the envelope field
//! keeps its name and the data field is renamed, never dropped:
//! - `flat`: `data_<key>` (so `data_timestamp` is the media timestamp);
//! - environment: `RTMP_DATA_<KEY>` (so `RTMP_DATA_TIMESTAMP`);
//! - `form` follows the callbacks instead: `timestamp` *is* the media timestamp there, as
//!   nginx-rtmp sends it, and the event time is `timestamp_ms`.
//!
//! # `dolby` event names
//!
//! | ringcast event | `type` | `event` |
//! |---|---|---|
//! | publish_start | feeds | started |
//! | publish_stop | feeds | stopped |
//! | stream_unavailable | viewerConnection | viewerAttempt |
//! | no_viewers | viewerConnection | noActiveViewers |
//!
//! `viewerAttempt` and `noActiveViewers` are the names Dolby.io sends for the same situations,
//! so an existing Dolby receiver understands them. `data` holds `streamId` (`app/name`), `name`
//! (the stream name, its last path segment), for feeds also `feedId` (the connection id, the
//! same on a feed's start and stop) and `active`, then the event's own data.
//!
//! # Environment variables
//!
//! The go-rtmp style names: `RTMP_EVENT_TYPE`, `RTMP_TIMESTAMP` (unix seconds), `RTMP_CONN_ID`,
//! `RTMP_STREAM_KEY`, `RTMP_PROTOCOL`; then `RTMP_EVENT_ID`, `RTMP_TIMESTAMP_MS`, `RTMP_SEQ` and
//! `RTMP_ADDR` so a script sees everything the envelope has; then `RTMP_<KEY>` per data field.
//! A data key is uppercased and every character outside `A-Z0-9_` becomes `_` (so
//! `x-token` -> `RTMP_X_TOKEN`, non-ASCII letters too). Values: strings as they are, numbers
//! and booleans as JSON writes them, `null` as an empty string, objects and arrays (the `args`
//! of connect/publish/play) as compact JSON text (`{"token":"x"}`), which `jq` reads. NUL
//! characters are removed from values: the environment cannot carry them and a client must not
//! be able to make a script fail to start by putting `%00` in its URL.

use serde::Serialize;
use serde_json::{Map, Value};

use super::event::{Event, EventType};
use super::reserved::is_event_field;
use crate::config::WebhookFormat;

/// `Content-Type` of the JSON formats.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of the `form` format.
pub const CONTENT_TYPE_FORM: &str = "application/x-www-form-urlencoded";

/// A request body and its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Encodes `event` as a webhook body; `None` when `format` does not send this event type
/// (`dolby` sends only [`EventType::DOLBY`]).
pub fn encode(event: &Event, format: WebhookFormat) -> Option<Body> {
    let (content_type, bytes) = match format {
        WebhookFormat::Envelope => (CONTENT_TYPE_JSON, to_json(&Envelope::of(event))),
        WebhookFormat::Flat => (CONTENT_TYPE_JSON, to_json(&flat(event))),
        WebhookFormat::Form => (CONTENT_TYPE_FORM, form(event).into_bytes()),
        WebhookFormat::Dolby => (CONTENT_TYPE_JSON, to_json(&dolby(event)?)),
    };
    Some(Body { content_type, bytes })
}

/// The envelope as one JSON line (no newline inside: JSON escapes control characters).
pub fn envelope_json(event: &Event) -> String {
    // Serializing these types (strings, integers, a string-keyed map) cannot fail; an empty
    // object is only a defensive fallback, never expected.
    serde_json::to_string(&Envelope::of(event)).unwrap_or_else(|_| "{}".to_owned())
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// Seed 001's object; a struct rather than a `Map` so the keys keep the documented order.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    timestamp: u64,
    timestamp_ms: u64,
    conn_id: u64,
    stream_key: &'a str,
    seq: u64,
    protocol: &'static str,
    addr: &'a str,
    data: &'a Map<String, Value>,
}

impl<'a> Envelope<'a> {
    fn of(event: &'a Event) -> Self {
        Envelope {
            id: &event.id,
            event_type: event.event_type.as_str(),
            timestamp: event.timestamp_secs(),
            timestamp_ms: event.timestamp_ms,
            conn_id: event.conn_id,
            stream_key: &event.stream_key,
            seq: event.seq,
            protocol: event.protocol.as_str(),
            addr: &event.addr,
            data: &event.data,
        }
    }
}

/// Seed 002's shape: `event` first, as OpenVidu sends it, then the envelope keys, then data.
#[derive(Serialize)]
struct Flat<'a> {
    event: &'static str,
    id: &'a str,
    /// Unix milliseconds, as OpenVidu's `timestamp`.
    timestamp: u64,
    timestamp_ms: u64,
    conn_id: u64,
    stream_key: &'a str,
    seq: u64,
    protocol: &'static str,
    addr: &'a str,
    #[serde(flatten)]
    data: Map<String, Value>,
}

const FLAT_KEYS: &[&str] =
    &["event", "id", "timestamp", "timestamp_ms", "conn_id", "stream_key", "seq", "protocol", "addr"];

fn flat(event: &Event) -> Flat<'_> {
    let mut data = Map::new();
    for (key, value) in &event.data {
        let mut name = key.clone();
        // A clash is renamed, not dropped: `data_timestamp` is publish_update's media timestamp.
        while FLAT_KEYS.contains(&name.as_str()) || data.contains_key(&name) {
            name = format!("data_{name}");
        }
        data.insert(name, value.clone());
    }
    Flat {
        event: event.event_type.as_str(),
        id: &event.id,
        timestamp: event.timestamp_ms,
        timestamp_ms: event.timestamp_ms,
        conn_id: event.conn_id,
        stream_key: &event.stream_key,
        seq: event.seq,
        protocol: event.protocol.as_str(),
        addr: &event.addr,
        data,
    }
}

/// The form fields of `form`, in order: `call`, `id`, `seq`, `timestamp_ms`, `protocol`, `addr`
/// (client ip, no port, as callbacks send it), `clientid`, `app`, `name`, then every data field
/// except `args` (objects and arrays as JSON text), then the client's arguments passed through
/// as is, minus any whose name is taken. A field appears at most once: the first writer wins.
pub fn form_fields(event: &Event) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    fn push(fields: &mut Vec<(String, String)>, name: &str, value: String) {
        if !fields.iter().any(|(n, _)| n == name) {
            fields.push((name.to_owned(), value));
        }
    }
    let addr =
        event.addr.parse::<std::net::SocketAddr>().map(|a| a.ip().to_string()).unwrap_or_else(|_| event.addr.clone());
    push(&mut fields, "call", event.event_type.as_str().to_owned());
    push(&mut fields, "id", event.id.clone());
    push(&mut fields, "seq", event.seq.to_string());
    push(&mut fields, "timestamp_ms", event.timestamp_ms.to_string());
    push(&mut fields, "protocol", event.protocol.as_str().to_owned());
    push(&mut fields, "addr", addr);
    push(&mut fields, "clientid", event.conn_id.to_string());
    if !event.stream_key.is_empty() {
        let (app, name) = split_stream(&event.stream_key);
        push(&mut fields, "app", app.to_owned());
        push(&mut fields, "name", name.to_owned());
    }
    for (key, value) in &event.data {
        if key != "args" {
            push(&mut fields, key, value_text(value));
        }
    }
    match event.data.get("args") {
        Some(Value::Object(args)) => {
            for (key, value) in args {
                if !is_event_field(key) {
                    push(&mut fields, key, value_text(value));
                }
            }
        }
        Some(other) => push(&mut fields, "args", value_text(other)),
        None => {}
    }
    fields
}

fn form(event: &Event) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_fields(event) {
        serializer.append_pair(&name, &value);
    }
    serializer.finish()
}

/// `app/name` -> (`app`, `name`). The name is the last path segment, as callbacks and
/// redirects treat it (an RTMP app may itself contain `/`); a key without `/` is all name.
fn split_stream(stream_key: &str) -> (&str, &str) {
    stream_key.rsplit_once('/').unwrap_or(("", stream_key))
}

#[derive(Serialize)]
struct Dolby {
    #[serde(rename = "type")]
    hook_type: &'static str,
    event: &'static str,
    timestamp: u64,
    data: Map<String, Value>,
}

/// The `dolby` (type, event) names of an event, if that format sends it (table in the module
/// documentation).
pub fn dolby_names(event_type: EventType) -> Option<(&'static str, &'static str)> {
    match event_type {
        EventType::PublishStart => Some(("feeds", "started")),
        EventType::PublishStop => Some(("feeds", "stopped")),
        EventType::StreamUnavailable => Some(("viewerConnection", "viewerAttempt")),
        EventType::NoViewers => Some(("viewerConnection", "noActiveViewers")),
        _ => None,
    }
}

fn dolby(event: &Event) -> Option<Dolby> {
    let (hook_type, name) = dolby_names(event.event_type)?;
    let mut data = Map::new();
    data.insert("streamId".into(), event.stream_key.clone().into());
    data.insert("name".into(), split_stream(&event.stream_key).1.into());
    if hook_type == "feeds" {
        data.insert("feedId".into(), event.conn_id.to_string().into());
        data.insert("active".into(), (event.event_type == EventType::PublishStart).into());
    }
    for (key, value) in &event.data {
        // The Dolby fields above are what a Dolby receiver keys on: event data never replaces
        // them.
        if !data.contains_key(key) {
            data.insert(key.clone(), value.clone());
        }
    }
    Some(Dolby { hook_type, event: name, timestamp: event.timestamp_ms, data })
}

/// A JSON value as a form field or environment value (see the module documentation).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The event as environment variables, in a fixed order (module documentation). Every name
/// matches `[A-Z0-9_]+` and is unique; no value contains NUL.
pub fn env_vars(event: &Event) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("RTMP_EVENT_TYPE".into(), event.event_type.as_str().into()),
        ("RTMP_TIMESTAMP".into(), event.timestamp_secs().to_string()),
        ("RTMP_CONN_ID".into(), event.conn_id.to_string()),
        ("RTMP_STREAM_KEY".into(), without_nul(&event.stream_key)),
        ("RTMP_PROTOCOL".into(), event.protocol.as_str().into()),
        ("RTMP_EVENT_ID".into(), without_nul(&event.id)),
        ("RTMP_TIMESTAMP_MS".into(), event.timestamp_ms.to_string()),
        ("RTMP_SEQ".into(), event.seq.to_string()),
        ("RTMP_ADDR".into(), without_nul(&event.addr)),
    ];
    for (key, value) in &event.data {
        let base = env_name(key);
        let taken = |name: &str| vars.iter().any(|(n, _)| n == name);
        let mut name = format!("RTMP_{base}");
        if taken(&name) {
            name = format!("RTMP_DATA_{base}");
        }
        // Two keys that sanitize alike (`a-b`, `a_b`) still both get through, numbered.
        let mut n = 2;
        let first = name.clone();
        while taken(&name) {
            name = format!("{first}_{n}");
            n += 1;
        }
        vars.push((name, without_nul(&value_text(value))));
    }
    vars
}

/// A data key as the tail of an environment variable name.
fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

fn without_nul(text: &str) -> String {
    text.replace('\0', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::event::Protocol;
    use serde_json::json;

    fn event(event_type: EventType, data: Value) -> Event {
        Event {
            id: "evt_1".into(),
            event_type,
            timestamp_ms: 1_700_000_000_123,
            conn_id: 42,
            protocol: Protocol::Rtmp,
            addr: "10.0.0.5:50000".into(),
            stream_key: "live/cam1".into(),
            seq: 3,
            data: match data {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    fn json_of(body: &Body) -> Value {
        assert_eq!(body.content_type, CONTENT_TYPE_JSON);
        serde_json::from_slice(&body.bytes).unwrap()
    }

    #[test]
    fn envelope_has_every_field_in_order() {
        let e = event(EventType::PublishStart, json!({"args": {"token": "x"}}));
        let body = encode(&e, WebhookFormat::Envelope).unwrap();
        let text = String::from_utf8(body.bytes.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"id":"evt_1","type":"publish_start","timestamp":1700000000,"timestamp_ms":1700000000123,"conn_id":42,"stream_key":"live/cam1","seq":3,"protocol":"rtmp","addr":"10.0.0.5:50000","data":{"args":{"token":"x"}}}"#
        );
        assert_eq!(envelope_json(&e), text);
    }

    #[test]
    fn flat_merges_data_and_renames_clashes() {
        let e = event(
            EventType::PublishUpdate,
            json!({"timestamp": 5000, "bytes_in": 10, "data_timestamp": "pre-existing"}),
        );
        let v = json_of(&encode(&e, WebhookFormat::Flat).unwrap());
        assert_eq!(v["event"], "publish_update");
        assert_eq!(v["timestamp"], 1_700_000_000_123u64);
        assert_eq!(v["timestamp_ms"], 1_700_000_000_123u64);
        assert_eq!(v["bytes_in"], 10);
        assert!(v.get("type").is_none() && v.get("data").is_none());
        // Both the media timestamp and a data key that already had the prefixed name survive.
        let values: Vec<&Value> =
            v.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("data_")).map(|(_, v)| v).collect();
        assert_eq!(values.len(), 2, "{v}");
        assert!(values.contains(&&json!(5000)));
        assert!(values.contains(&&json!("pre-existing")));
    }

    #[test]
    fn form_fields_follow_callbacks() {
        let e = event(EventType::PlayStart, json!({"args": {"token": "a b", "call": "evil", "addr": "1.2.3.4"}}));
        let fields = form_fields(&e);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("call"), Some("play_start"));
        assert_eq!(get("addr"), Some("10.0.0.5"));
        assert_eq!(get("clientid"), Some("42"));
        assert_eq!(get("app"), Some("live"));
        assert_eq!(get("name"), Some("cam1"));
        assert_eq!(get("token"), Some("a b"));
        assert_eq!(fields.iter().filter(|(n, _)| n == "call").count(), 1);
        assert_eq!(fields.iter().filter(|(n, _)| n == "addr").count(), 1);
        let body = encode(&e, WebhookFormat::Form).unwrap();
        assert_eq!(body.content_type, CONTENT_TYPE_FORM);
        assert!(String::from_utf8(body.bytes).unwrap().contains("token=a+b"));
    }

    #[test]
    fn dolby_sends_only_its_events() {
        for &t in EventType::ALL {
            let sent = encode(&event(t, json!({})), WebhookFormat::Dolby).is_some();
            assert_eq!(sent, EventType::DOLBY.contains(&t), "{t}");
        }
        let v = json_of(
            &encode(&event(EventType::PublishStop, json!({"streamId": "x", "bytes_in": 9})), WebhookFormat::Dolby)
                .unwrap(),
        );
        assert_eq!(v["type"], "feeds");
        assert_eq!(v["event"], "stopped");
        assert_eq!(v["timestamp"], 1_700_000_000_123u64);
        assert_eq!(v["data"]["streamId"], "live/cam1");
        assert_eq!(v["data"]["feedId"], "42");
        assert_eq!(v["data"]["active"], false);
        assert_eq!(v["data"]["bytes_in"], 9);
    }

    #[test]
    fn env_names_are_sanitized_and_unique() {
        let e = event(
            EventType::PublishUpdate,
            json!({
                "timestamp": 5000,
                "x-token": "a\0b",
                "x_token": "second",
                "args": {"k": "v"},
                "none": null,
                "flag": true,
                "über": 1,
            }),
        );
        let vars = env_vars(&e);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RTMP_TIMESTAMP"), Some("1700000000"));
        assert_eq!(get("RTMP_DATA_TIMESTAMP"), Some("5000"));
        assert_eq!(get("RTMP_ARGS"), Some(r#"{"k":"v"}"#));
        assert_eq!(get("RTMP_NONE"), Some(""));
        assert_eq!(get("RTMP_FLAG"), Some("true"));
        assert_eq!(get("RTMP__BER"), Some("1"));
        let tokens: Vec<&str> = vars.iter().filter(|(n, _)| n.contains("X_TOKEN")).map(|(_, v)| v.as_str()).collect();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.contains(&"ab") && tokens.contains(&"second"));
        let mut names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.iter().all(|n| { n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), vars.len());
    }

    #[test]
    fn stream_split() {
        assert_eq!(split_stream("live/cam1"), ("live", "cam1"));
        assert_eq!(split_stream("app/inst/cam1"), ("app/inst", "cam1"));
        assert_eq!(split_stream("cam1"), ("", "cam1"));
    }
}
