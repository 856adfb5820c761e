//! ringcast: a live media server (RTMP now; RTSP and HTTP-FLV next) on io_uring shards,
//! whose operators' own web services decide who may connect, publish and play.
//!
//! # Layout
//!
//! Each layer knows only the ones below it (see ARCHITECTURE.md):
//!
//! - [`config`]: CLI flags and the TOML file, merged and validated into one [`config::Config`].
//! - [`server`]: one tokio-uring runtime per shard thread, SO_REUSEPORT listeners, accept
//!   loops, connection limits, signals and graceful shutdown.
//! - [`session`]: per-protocol IO glue: drives a sans-IO protocol state machine over an
//!   io_uring socket and joins the hub.
//! - [`hooks`]: the event model, callbacks (blocking decisions on their own worker pool) and
//!   event sinks (webhook, script, stdio) behind one dispatcher thread.
//! - [`api`]: the admin HTTP API (streams, clients, kicks, webhooks, metrics) on its own threads.
//! - [`hub`]: stream registry and fan-out: publisher -> shared packets -> players, GOP cache,
//!   bounded per-player queues, cross-shard relay.
//! - [`protocol`]: sans-IO codecs (AMF0, FLV, RTMP handshake, chunks, messages, the server
//!   and client connection state machines). No sockets, no clock, no runtime.
//! - [`redact`]: what of a hook URL or header may be printed (logs, metrics, API answers,
//!   config errors); used by every layer that prints one.

pub mod api;
pub mod config;
pub mod hooks;
pub mod hub;
pub mod logging;
pub mod protocol;
pub mod redact;
pub mod server;
pub mod session;
