//! An event as an outbox keeps it: every field of [`Event`], as JSON. Read back, it is the same
//! event, so its body in any format is the same bytes and its `id` the same id: a receiver
//! de-duplicates a delivery sent again after a restart, and a signature over it is the same
//! signature but for its timestamp.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::hooks::event::{Event, EventType, Protocol};

/// Written: borrows the event.
#[derive(Serialize)]
struct Stored<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp_ms: u64,
    conn_id: u64,
    protocol: &'a str,
    addr: &'a str,
    stream_key: &'a str,
    seq: u64,
    data: &'a Map<String, Value>,
    /// A replay's copy of an event delivered before: a later replay skips it, so one replay
    /// after another sends each event once. Left out otherwise (older versions ignore it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replay: bool,
}

/// Read: owns its strings, since a string with escapes (a stream name with a quote in it)
/// cannot be borrowed from the JSON.
#[derive(Deserialize)]
struct Read {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    timestamp_ms: u64,
    conn_id: u64,
    protocol: String,
    addr: String,
    stream_key: String,
    seq: u64,
    data: Map<String, Value>,
    #[serde(default)]
    replay: bool,
}

/// The stored form of `event`.
pub fn encode(event: &Event) -> Vec<u8> {
    encode_marked(event, false)
}

/// The stored form of `event` written again by a replay.
pub fn encode_replay(event: &Event) -> Vec<u8> {
    encode_marked(event, true)
}

fn encode_marked(event: &Event, replay: bool) -> Vec<u8> {
    let stored = Stored {
        id: &event.id,
        event_type: event.event_type.as_str(),
        timestamp_ms: event.timestamp_ms,
        conn_id: event.conn_id,
        protocol: event.protocol.as_str(),
        addr: &event.addr,
        stream_key: &event.stream_key,
        seq: event.seq,
        data: &event.data,
        replay,
    };
    // Plain strings, numbers and a JSON map: serializing cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The event a stored form holds; `None` when it is not one (a record from another version).
pub fn decode(bytes: &[u8]) -> Option<Event> {
    decode_kept(bytes).map(|(event, _)| event)
}

/// The event a stored form holds, and whether a replay wrote it.
pub fn decode_kept(bytes: &[u8]) -> Option<(Event, bool)> {
    let stored: Read = serde_json::from_slice(bytes).ok()?;
    let protocol =
        [Protocol::Rtmp, Protocol::Rtsp, Protocol::HttpFlv].into_iter().find(|p| p.as_str() == stored.protocol)?;
    let event = Event {
        id: stored.id,
        event_type: stored.event_type.parse::<EventType>().ok()?,
        timestamp_ms: stored.timestamp_ms,
        conn_id: stored.conn_id,
        protocol,
        addr: stored.addr,
        stream_key: stored.stream_key,
        seq: stored.seq,
        data: stored.data,
    };
    Some((event, stored.replay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookFormat;
    use crate::hooks::event::connect_event;
    use crate::hooks::format;

    #[test]
    fn an_event_reads_back_as_the_same_event_and_the_same_bodies() {
        let mut event = connect_event(&[("app", "live"), ("tcurl", "rtmp://h/live?a=\"q\"\\é")]);
        event.stream_key = "live/\"cam\"\\é\u{1}".into();
        event.seq = 42;
        event.protocol = Protocol::HttpFlv;
        event.data.insert("bitrate".into(), serde_json::json!(1234.5678));
        event.data.insert("args".into(), serde_json::json!({ "z": 1, "a": [true, null] }));
        let back = decode(&encode(&event)).expect("decodes");
        assert_eq!(back, event);
        for format in [WebhookFormat::Envelope, WebhookFormat::Flat, WebhookFormat::Form, WebhookFormat::Dolby] {
            let before = format::encode(&event, format).map(|b| b.bytes);
            let after = format::encode(&back, format).map(|b| b.bytes);
            assert_eq!(before, after, "{format:?}");
        }
    }

    #[test]
    fn a_replay_copy_is_the_same_event_marked() {
        let event = connect_event(&[("app", "live")]);
        assert_eq!(decode_kept(&encode(&event)), Some((event.clone(), false)));
        assert!(!String::from_utf8_lossy(&encode(&event)).contains("replay"), "unmarked events as before");
        assert_eq!(decode_kept(&encode_replay(&event)), Some((event.clone(), true)));
        assert_eq!(decode(&encode_replay(&event)), Some(event));
    }

    #[test]
    fn something_else_is_not_an_event() {
        assert_eq!(decode(b"{}"), None);
        assert_eq!(decode(b"not json"), None);
        let mut bytes = encode(&connect_event(&[]));
        bytes.truncate(bytes.len() - 1);
        assert_eq!(decode(&bytes), None);
    }
}
