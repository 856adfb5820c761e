//! The event model: one struct for every event type of HOOKS.md, whatever the sink.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

pub use crate::config::EventType;

/// The protocol a connection speaks, as events and callbacks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The event type's own fields (HOOKS.md table), as JSON values.
    pub data: Map<String, Value>,
}

impl Event {
    pub fn timestamp_secs(&self) -> u64 {
        self.timestamp_ms / 1000
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

#[cfg(test)]
mod tests {
    use super::*;

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
