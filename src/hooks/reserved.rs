//! The field names ringcast sets itself, which a client's query arguments may never set: a
//! client that could send `name=other` or `addr=1.2.3.4` would lie to the operator's endpoint.
//! Callbacks and event sinks both pass client arguments through, so both filter with these.

/// Every field a callback's form sends (docs/hooks.md, "Form fields").
pub const CALLBACK_FIELDS: &[&str] = &[
    "call",
    "protocol",
    "addr",
    "clientid",
    "app",
    "name",
    "url",
    "tcurl",
    "flashver",
    "swfurl",
    "pageurl",
    "type",
    "start",
    "duration",
    "reset",
    "bytes_in",
    "bytes_out",
    "time",
    "timestamp",
];

/// Fields only event sinks send (the `form` format and the envelope), on top of
/// [`CALLBACK_FIELDS`].
pub const EVENT_ONLY_FIELDS: &[&str] = &["id", "seq", "timestamp_ms"];

/// Whether a client argument named `name` would shadow a field an event sink sends.
pub fn is_event_field(name: &str) -> bool {
    CALLBACK_FIELDS.contains(&name) || EVENT_ONLY_FIELDS.contains(&name)
}
