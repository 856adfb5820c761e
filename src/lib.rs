//! ringcast: a live media server (RTMP, RTSP, HTTP-FLV and WebSocket-FLV) on io_uring shards,
//! whose operators' own web services decide who may connect, publish and play.
//!
//! # Layout
//!
//! Listed from the top: each layer imports only layers listed after it (see ARCHITECTURE.md;
//! `tests/layering.rs` checks it). So the hub knows nothing of hooks, sessions or the
//! configuration; hooks know nothing of sessions or the hub; `protocol` and `redact`
//! import nothing of the crate.
//!
//! - [`server`]: one tokio-uring runtime per shard thread, SO_REUSEPORT listeners, accept
//!   loops, connection limits, signals and graceful shutdown. Imports every layer below.
//! - [`api`]: the admin HTTP API (streams, clients, kicks, webhooks, metrics) on its own
//!   threads. Imports `session` (client summaries), `hooks`, `hub`, `config`, `redact`.
//! - [`session`]: per-protocol IO glue: drives a sans-IO protocol state machine over an
//!   io_uring socket and joins the hub. Imports `hooks`, `hub`, `protocol`.
//! - [`hooks`]: the event model, callbacks (on the shard's ring, or a blocking pool for
//!   `https://`) and event sinks (webhook, script, stdio) behind one dispatcher thread.
//!   Imports `config` (hook settings), `protocol::http` (the callback codec), `redact`.
//! - [`hub`]: stream registry and fan-out: publisher -> shared packets -> players, GOP cache,
//!   bounded per-player queues, cross-shard relay. Imports `protocol`.
//! - [`config`]: CLI flags and the TOML file, merged and validated into one [`config::Config`].
//!   Imports `redact`.
//! - [`protocol`]: sans-IO codecs: codec records (AVC, HEVC, AAC...), AMF0, FLV tags and
//!   files, RTMP (handshake, chunks, messages, the server and client connection state
//!   machines), RTSP (the server and client connection state machines), SDP, RTP (packetizers and
//!   depacketizers, RTCP), the hook client's HTTP, HTTP-FLV's request heads and WebSocket
//!   frames. No sockets, no clock, no runtime.
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
