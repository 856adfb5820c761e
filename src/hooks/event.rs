//! The event model: one struct for every event type of docs/hooks.md, whatever the sink; each
//! type's own fields are in `payload.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

pub use crate::config::EventType;

/// The protocol a connection speaks, as events and callbacks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Rtmp,
    Rtsp,
    HttpFlv,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Rtsp => "rtsp",
            Protocol::HttpFlv => "http-flv",
        }
    }
}

/// One thing that happened, with everything any sink needs to describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique across the process's life and stable across retries: receivers de-duplicate on it.
    pub id: String,
    pub event_type: EventType,
    /// Unix time in milliseconds when the event happened (not when it is delivered).
    pub timestamp_ms: u64,
    pub conn_id: u64,
    pub protocol: Protocol,
    /// The client's `ip:port`.
    pub addr: String,
    /// `app/name`; empty for events that concern no stream.
    pub stream_key: String,
    /// Position among the events of `stream_key`, server-wide (1, 2, 3, ...); 0 without a stream.
    pub seq: u64,
    /// The event type's own fields (its `payload` type), as JSON values.
    pub data: Map<String, Value>,
}

impl Event {
    pub fn timestamp_secs(&self) -> u64 {
        self.timestamp_ms / 1000
    }

    /// The application the event concerns: its stream's (`app/name`), or a `connect`'s own
    /// `app`; `None` for connection events that name neither (connection_accept,
    /// handshake_complete, a connection_close after no publish or play). An app's own sinks
    /// receive only events of their app.
    pub fn app(&self) -> Option<&str> {
        if let Some((app, _)) = self.stream_key.split_once('/') {
            return Some(app);
        }
        match self.event_type {
            EventType::Connect => self.data.get("app").and_then(Value::as_str),
            _ => None,
        }
    }

    /// The memory this event holds, its strings and data included: what the hook queues'
    /// byte bounds count. A client controls much of it (a connect's tcUrl, its arguments), so
    /// it is measured, not assumed. Allocator slack is not counted.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Event>()
            + self.id.capacity()
            + self.addr.capacity()
            + self.stream_key.capacity()
            + map_weight(&self.data)
    }
}

/// A JSON map's entries: per entry its key, its value and the map's node overhead (a B-tree
/// node per few entries, rounded to a word pair per entry).
fn map_weight(map: &Map<String, Value>) -> usize {
    map.iter().map(|(key, value)| 2 * std::mem::size_of::<usize>() + key.capacity() + value_weight(value)).sum()
}

fn value_weight(value: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match value {
            Value::String(text) => text.capacity(),
            Value::Array(items) => items.iter().map(value_weight).sum(),
            Value::Object(map) => map_weight(map),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

/// Makes event ids: `evt_` + 13 hex digits of start time + 12 hex digits of a counter. Sortable
/// in creation order within one process, unique across restarts (the start time differs).
#[derive(Debug)]
pub struct EventIds {
    prefix: String,
    counter: AtomicU64,
}

impl EventIds {
    pub fn new(process_start_ms: u64) -> EventIds {
        EventIds { prefix: format!("evt_{process_start_ms:013x}"), counter: AtomicU64::new(0) }
    }

    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:012x}", self.prefix)
    }
}

/// A `connect` event of connection 1 whose `data` holds `(key, text)` fields, for tests.
#[cfg(test)]
pub(crate) fn connect_event(fields: &[(&str, &str)]) -> Event {
    Event {
        id: "evt_1".into(),
        event_type: EventType::Connect,
        timestamp_ms: 0,
        conn_id: 1,
        protocol: Protocol::Rtmp,
        addr: "127.0.0.1:1".into(),
        stream_key: String::new(),
        seq: 0,
        data: fields.iter().map(|(key, text)| ((*key).to_owned(), Value::String((*text).to_owned()))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_counts_what_clients_put_in_the_data() {
        let small = connect_event(&[("app", "live")]);
        let mut big = small.clone();
        let args = serde_json::json!({ "token": "x".repeat(10_000), "list": ["y".repeat(5_000)] });
        big.data.insert("tcurl".into(), Value::String("z".repeat(1 << 20)));
        big.data.insert("args".into(), args);
        assert!(small.weight() < 1024, "{}", small.weight());
        assert!(big.weight() >= small.weight() + (1 << 20) + 15_000, "{}", big.weight());
        assert!(big.weight() < small.weight() + (1 << 20) + 16_000, "{}", big.weight());
    }

    #[test]
    fn protocols_serialize_as_events_name_them() {
        for protocol in [Protocol::Rtmp, Protocol::Rtsp, Protocol::HttpFlv] {
            assert_eq!(serde_json::to_value(protocol).unwrap(), protocol.as_str());
        }
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids = EventIds::new(1_700_000_000_000);
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(a < b);
        assert!(a.starts_with("evt_"));
        assert_eq!(a.len(), 4 + 13 + 12);
    }
}
