//! `POST /api/outbox/{id}/replay`: sends a webhook the delivered events its outbox still
//! keeps again (docs/hooks.md, "Replaying events"). The body names the time range:
//! `{"since": "2h"}` or `{"since": "2026-12-06T09:00:00Z", "until": "2026-12-06T10:00:00Z"}`
//! (RFC 3339, or a duration meaning that long ago; `until` defaults to now). The dispatcher
//! thread, which owns the outbox files, writes them again behind what waits; the answer says
//! how many: `{"id", "replayed", "refused", "waiting", "since_ms", "until_ms"}`.

use serde_json::{Value, json};

use super::http::Response;
use crate::hooks::dispatch::Dispatcher;
use crate::hooks::now_ms;
use crate::hooks::outbox::ReplayError;
use crate::hooks::outbox::replay::parse_time;

/// Answers a replay of outbox `id` asked with `body`.
pub fn replay(dispatcher: &Dispatcher, id: &str, body: &[u8]) -> Result<Value, Response> {
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(Response::error(400, "the request body must be a JSON object with \"since\"")),
        Err(e) => return Err(Response::error(400, format!("invalid JSON: {e}"))),
    };
    if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "since" | "until")) {
        return Err(Response::error(400, format!("unknown key '{}' (expected since, until)", unknown.escape_debug())));
    }
    let now = now_ms();
    let time = |key: &str| -> Result<Option<u64>, Response> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                parse_time(text, now).map(Some).map_err(|e| Response::error(400, format!("key '{key}': {e}")))
            }
            Some(_) => Err(Response::error(400, format!("key '{key}': expected a string"))),
        }
    };
    let since = time("since")?.ok_or_else(|| Response::error(400, "key 'since' is required"))?;
    // Events stamped this very millisecond are in: the range ends just past `until`.
    let until = time("until")?.unwrap_or(now).saturating_add(1);
    if until <= since {
        return Err(Response::error(400, "key 'until': must be after 'since'"));
    }
    match dispatcher.replay(id, since, until) {
        Ok(outcome) => Ok(json!({
            "id": id,
            "replayed": outcome.replayed,
            "refused": outcome.refused,
            "waiting": outcome.waiting,
            "since_ms": since,
            "until_ms": until - 1,
        })),
        Err(ReplayError::UnknownSink) => Err(Response::error(
            404,
            format!("no webhook outbox '{}' (GET /api/outbox lists them)", super::shorten(id)),
        )),
        Err(e @ ReplayError::OutboxOff) => Err(Response::error(409, e.to_string())),
        Err(e @ ReplayError::NoAnswer) => Err(Response::error(503, e.to_string())),
        Err(e @ ReplayError::Io(_)) => {
            tracing::error!(outbox = %super::shorten(id), error = %e, "outbox replay failed");
            Err(Response::error(500, e.to_string()))
        }
    }
}
