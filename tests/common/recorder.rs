//! An event sink that keeps every event, for tests that drive a lifecycle without a server.

use std::sync::{Arc, Mutex};

use ringcast::config::EventType;
use ringcast::hooks::EventSink;
use ringcast::hooks::event::Event;

/// Keeps every event, as a sink that wants them all.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl EventSink for Recorder {
    fn wants(&self, _event_type: EventType) -> bool {
        true
    }

    fn send(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    /// The events of connection `conn_id`, by type, in order.
    pub fn types_of(&self, conn_id: u64) -> Vec<EventType> {
        self.0.lock().unwrap().iter().filter(|e| e.conn_id == conn_id).map(|e| e.event_type).collect()
    }

    /// The events of one type of connection `conn_id`, in order.
    pub fn of(&self, conn_id: u64, event_type: EventType) -> Vec<Event> {
        let events = self.0.lock().unwrap();
        events.iter().filter(|e| e.conn_id == conn_id && e.event_type == event_type).cloned().collect()
    }

    pub fn last(&self, conn_id: u64, event_type: EventType) -> Event {
        let found = self.of(conn_id, event_type).pop();
        found.unwrap_or_else(|| panic!("no {event_type:?} of connection {conn_id}"))
    }
}
