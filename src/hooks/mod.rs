//! Hooks: the event model, dispatch to sinks, the blocking worker pools, webhook / notify /
//! script / stdio sinks, signing and retries. `docs/hooks.md` is the contract: every field,
//! format, signature and rule cited here is written there.
//!
//! Two kinds of hook share one event model:
//! - callbacks ([`callback`]): a session asks and waits for the decision (connect, publish,
//!   play), or tells (done, update), through its shard's [`callback_lane`]: plain-HTTP
//!   endpoints as io_uring requests on the shard, `https://` ones on a blocking pool;
//! - event sinks ([`dispatch`]): every event goes, asynchronously, to each webhook, NATS
//!   JetStream, script and stdio sink that wants it, with retries and per-stream order.
//!
//! Nothing here blocks a shard: a shard either awaits an io_uring request or hands work over
//! (a channel send); every blocking call runs on hook threads.
//!
//! # Layout
//!
//! Each file imports only the ones listed after it (`a -> b`: `a` uses `b`); the graph has no
//! cycle, so each file can be read knowing only what is below it.
//!
//! - [`tester`]: `ringcast hooks test`, one sample event or callback sent from the command
//!   line, and the `hooks` command line -> `replay_command`, `callback_pool`, `dialect`,
//!   `callback`, `media`, `webhook`, `format`, `event`, `clock`.
//! - [`replay_command`]: `ringcast hooks replay`, asked of the running server's admin API
//!   -> `outbox` (the time forms), `agent`, `clock`.
//! - [`dispatch`]: the sink dispatcher thread, its queues and retry timers -> `mod.rs`
//!   (the [`EventSink`] it implements), `outbox`, `nats`, `webhook`, `script`, `stdio`,
//!   `drop_log`, `event`, `clock`.
//! - [`outbox`]: webhook events on disk until delivered (its own module doc lists its files)
//!   -> `drop_log`, `event`, `clock`, `format` (in tests).
//! - `mod.rs` ([`Hooks`], [`EventSink`], [`Origin`]): the one way an event leaves a session
//!   -> `callback`, `callback_pool`, `payload`, `event`, `clock`.
//! - [`payload`]: one data type per event, serialized here, never built as JSON in sessions
//!   -> `event`.
//! - [`callback_lane`]: one shard's callbacks, plain HTTP on its ring, and the decision
//!   cache's lookups -> `dialect`, `callback`, `callback_pool` (handed to it: one pool per
//!   server).
//! - [`dialect`]: a callback's body and the meaning of its answer in each dialect (nginx,
//!   SRS, MediaMTX, ZLMediaKit) -> `reply_terms`, `callback`, `event`.
//! - [`callback_pool`]: blocking workers for `https://` callbacks -> `callback`, `agent`.
//! - [`callback`]: the form, the reply's meaning, signing, `on_error`, counters -> `reserved`,
//!   `reply_terms` (the terms a decision carries),
//!   `agent` (its `User-Agent`), `callback_cache`, `sign`, `metrics`, `event`, `clock`.
//! - [`nats`]: one publish to NATS JetStream, on the sink's own connection thread (a
//!   current-thread tokio runtime: `async-nats` needs one) -> `webhook` (its `Attempt`),
//!   `format`, `event`.
//! - [`webhook`]: one delivery attempt -> `format`, `sign`, `agent`, `event`, `clock`.
//! - [`script`], [`stdio`]: one run, one line -> `format`, `event`.
//! - [`format`]: an event's body in each format -> `reserved`, `event`.
//! - [`drop_log`]: the drop counts logged once a second -> `event`.
//! - [`media`]: what `on_media` is told of a publisher's media, and its form fields (a
//!   leaf; its codec descriptions are `protocol::codec`'s).
//! - [`agent`]: the HTTP agent blocking requests share (`User-Agent`, TLS trust) -> `resolver`.
//! - Leaves: [`reply_terms`] (session terms a JSON reply sets), [`callback_cache`] (decisions kept for their `max-age`), [`event`] (the event model), [`reserved`] (field names a client may not set),
//!   [`sign`], [`resolver`], [`metrics`] (latency histogram), [`clock`].
//!
//! Outside `hooks/`, this layer imports `config` (the hook settings), `protocol::http` (the
//! plain-HTTP callback codec), `protocol::codec` (what `on_media` describes) and `redact`.

pub mod agent;
pub mod callback;
pub mod callback_cache;
pub mod callback_lane;
pub mod callback_pool;
pub mod clock;
pub mod dialect;
pub mod dispatch;
pub mod drop_log;
pub mod event;
pub mod format;
pub mod media;
pub mod metrics;
pub mod nats;
pub mod outbox;
pub mod payload;
pub mod replay_command;
pub mod reply_terms;
pub mod reserved;
pub mod resolver;
pub mod script;
pub mod sign;
pub mod stdio;
pub mod tester;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::config::Config;
use callback::{Callbacks, CurrentCallbacks};
use callback_pool::CallbackPool;
pub use clock::now_ms;
use event::{Event, EventIds, EventType, Protocol};
use payload::EventPayload;

/// Where an event comes from: the connection and stream it concerns.
#[derive(Debug, Clone)]
pub struct Origin {
    pub conn_id: u64,
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// `app/name`, or empty.
    pub stream_key: String,
}

/// Receives events (the sink dispatcher; a test may plug in its own).
pub trait EventSink: Send + Sync {
    /// Whether any sink wants this type: events nobody wants are never built.
    fn wants(&self, event_type: EventType) -> bool;
    fn send(&self, event: Event);
}

/// The hooks of one server.
pub struct Hooks {
    callbacks: Arc<CurrentCallbacks>,
    /// Where every shard's lane sends `https://` callbacks; starts no thread until one is made.
    https_pool: Arc<CallbackPool>,
    sink: Option<Box<dyn EventSink>>,
    ids: EventIds,
    /// Per stream: the `seq` of its last event. Events are rare (not per packet), so a lock is
    /// fine here.
    seqs: Mutex<HashMap<String, u64>>,
}

impl Hooks {
    pub fn new(config: &Config, sink: Option<Box<dyn EventSink>>) -> Arc<Hooks> {
        let callbacks = CurrentCallbacks::from_config(config);
        let https_pool = CallbackPool::new(config.notify.timeout, config.tls_ca_file.as_deref());
        Arc::new(Hooks { callbacks, https_pool, sink, ids: EventIds::new(now_ms()), seqs: Mutex::new(HashMap::new()) })
    }

    /// Hooks that do nothing (no callbacks, no sinks).
    pub fn disabled() -> Arc<Hooks> {
        Hooks::new(&Config::default(), None)
    }

    /// The callbacks' configuration and counters, when any callback is configured.
    pub fn callbacks(&self) -> Option<Arc<Callbacks>> {
        self.callbacks.get()
    }

    /// The callbacks of a client of `app` (`[apps.<app>.notify]` over `[notify]`, or
    /// `[notify]`), when any is configured for it.
    pub fn callbacks_for(&self, app: &str) -> Option<Arc<Callbacks>> {
        self.callbacks.for_app(app)
    }

    /// The counters every callback set adds to, when any set is configured.
    pub fn callback_stats(&self) -> Option<Arc<callback::CallbackStats>> {
        self.callbacks.stats()
    }

    /// The callbacks as SIGHUP replaces them, for the shards' lanes to follow.
    pub fn current_callbacks(&self) -> &Arc<CurrentCallbacks> {
        &self.callbacks
    }

    /// The blocking pool `https://` callbacks go to, handed to each shard's lane.
    pub fn https_pool(&self) -> &Arc<CallbackPool> {
        &self.https_pool
    }

    /// Whether `on_update` is configured (globally or for an app), and how often it fires
    /// (`update_interval` is server-wide).
    pub fn update_interval(&self) -> Option<std::time::Duration> {
        if !self.callbacks.any_on_update() {
            return None;
        }
        let interval = self.callbacks.get().map(|c| c.notify.update_interval);
        Some(interval.unwrap_or(crate::config::NotifyConfig::default().update_interval))
    }

    /// Whether an event of this type would reach any sink.
    pub fn wants(&self, event_type: EventType) -> bool {
        self.sink.as_ref().is_some_and(|s| s.wants(event_type))
    }

    /// Emits an event. Its data is built, and turned into the event's JSON fields, only when
    /// a sink wants the type.
    pub fn emit<P: EventPayload>(&self, origin: &Origin, build: impl FnOnce() -> P) {
        let Some(sink) = &self.sink else { return };
        let event_type = P::TYPE;
        let wanted = sink.wants(event_type);
        let data = if wanted { payload_fields(&build()) } else { Map::new() };
        // The seq counter's lock is held until the event is in the dispatcher's channel:
        // two shards emitting for one stream must hand their events over in seq order, or a
        // sink would see 1113 before 1112. The send never blocks (drop-oldest when full).
        let mut seqs = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        let seq = next_seq(&mut seqs, &origin.stream_key, event_type);
        if !wanted {
            // Still counted, so `seq` gaps mean "filtered", never "lost".
            return;
        }
        sink.send(Event {
            id: self.ids.next(),
            event_type,
            timestamp_ms: now_ms(),
            conn_id: origin.conn_id,
            protocol: origin.protocol,
            addr: origin.addr.to_string(),
            stream_key: origin.stream_key.clone(),
            seq,
            data,
        });
    }
}

/// A payload's fields as the event's JSON `data`.
fn payload_fields(payload: &impl EventPayload) -> Map<String, Value> {
    match serde_json::to_value(payload) {
        Ok(Value::Object(fields)) => fields,
        // Every payload is a struct of plain fields: this is not reached.
        _ => Map::new(),
    }
}

/// The next `seq` of `stream_key` (0 for events of no stream).
fn next_seq(seqs: &mut HashMap<String, u64>, stream_key: &str, event_type: EventType) -> u64 {
    if stream_key.is_empty() {
        return 0;
    }
    // Look up before inserting: most events belong to a stream already counted, and `entry`
    // would allocate the key every time.
    let value = match seqs.get_mut(stream_key) {
        Some(seq) => {
            *seq += 1;
            *seq
        }
        None => {
            seqs.insert(stream_key.to_owned(), 1);
            1
        }
    };
    if event_type == EventType::StreamDelete {
        // The stream is gone: a new one under this key starts again at 1. Keeping every key
        // ever seen would grow without bound (clients choose the names).
        seqs.remove(stream_key);
    }
    value
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn wants(&self, event_type: EventType) -> bool {
        (**self).wants(event_type)
    }

    fn send(&self, event: Event) {
        (**self).send(event)
    }
}
