//! Connections, from accept to close.
//!
//! - `lifecycle.rs`: what every protocol's connection does with hooks and the hub (identity,
//!   callbacks, publish/play, events, the update timer), with no socket and no wire format.
//! - `rtmp.rs`: the RTMP driver: drives `protocol::rtmp::server` over an io_uring socket and
//!   maps its requests to the lifecycle and the lifecycle's answers to RTMP replies.
//! - `http_flv.rs`: the HTTP-FLV driver (plain HTTP and WebSocket): reads one request head
//!   (`protocol::http_server`), admits it through the lifecycle as an RTMP connect and play,
//!   and answers with a status or the stream; `http_flv_out.rs` is its framing (the FLV file
//!   header, WebSocket frames, the stream's end) around `flv_out.rs`.
//! - `flush.rs`: the shard's flush tick, one timer for every player's merge window.
//! - `rtsp.rs`: the RTSP driver: drives `protocol::rtsp::server` over an io_uring socket,
//!   admits DESCRIBE and ANNOUNCE through the lifecycle, depacketizes a publisher's RTP into
//!   hub packets; `rtsp_out.rs` is each stream's shared RTP form and a TCP player's framing,
//!   `rtsp_udp.rs` the UDP port pairs and the UDP player's writer.
//! - `rtsp_pull.rs`: the pulls of RTSP cameras (`[sources]`): internal publishers driving
//!   `protocol::rtsp::client`; `rtp_ingest.rs` is the RTP -> hub path they share with
//!   `rtsp.rs`'s RECORD sessions.
//! - `player_writer.rs`: a player's writer task, one for every protocol, over a per-protocol
//!   `Framing`: `rtmp_out.rs` (chunk headers before the shared chunked form),
//!   `flv_out.rs` (FLV tag headers before the shared payload) and `rtsp_out.rs` (interleaved
//!   bytes before the shared RTP packets); `timeline.rs` rebases a
//!   player's timestamps.
//! - `io.rs`: the adaptive read buffer, the vectored write loop and output backpressure.
//! - `journal.rs`: the session journal in `state_dir` (which sessions publish or play now,
//!   written by one thread off the shards); `recovery.rs` sends, at the next start after a
//!   crash, the stop events and done callbacks of the sessions it still holds.
//! - `limits.rs`: the counted admission limits all shards share (connections in total and
//!   per address, streams, players per stream, publishers per address), and the counting
//!   and paced log of the wire limits the protocol state machines enforce.
//! - `media_gate.rs`: a publish held for `on_media`: what its media showed so far, and when
//!   it is known enough to ask.
//! - `terms.rs`: the session terms a callback's JSON reply set (`max_duration`,
//!   `max_bitrate_kbps`) as timers the lifecycle drives.
//! - `grace.rs`: publisher reconnect grace (`republish_grace`): the parked stream's timer,
//!   the timestamp seam of the publisher that continues it, and what the dropped
//!   publisher's session does until then.
//! - `relay/`: sessions without an inbound socket: pulls from origins and sources, pushes
//!   to other servers, over outbound RTMP (`relay/mod.rs` says how).
//! - `activity.rs`: what a session publishes or plays right now (codecs, bitrate, since
//!   when), kept in its registry entry for the admin API's stream details.
//!
//! A session is the only place where a protocol error becomes a closed connection: the
//! error ends that session's task and nothing else.

pub mod activity;
pub mod flush;
pub mod flv_out;
pub mod grace;
pub mod http_flv;
pub mod http_flv_out;
pub mod io;
pub mod journal;
pub mod lifecycle;
pub mod limits;
pub mod media_gate;
pub mod player_writer;
pub mod recovery;
pub mod relay;
pub mod rtmp;
pub mod rtmp_out;
pub(crate) mod rtp_ingest;
pub mod rtsp;
pub mod rtsp_out;
pub mod rtsp_pull;
pub mod rtsp_udp;
pub mod terms;
pub mod timeline;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use self::flush::ShardFlush;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::hooks::callback_lane::CallbackLane;
use crate::hooks::event::Protocol;
use crate::hub::ShardHub;
use crate::protocol::limits::WireLimits;
use crate::protocol::rtmp::chunk::PartialBudget;
use crate::protocol::rtmp::server::ServerSettings;

/// Session limits and protocol settings, from the config.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub rtmp: ServerSettings,
    /// A client that has not finished the handshake by then is dropped: it holds a socket
    /// and buffers without ever becoming useful.
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing for this long is dropped, so its stream key is freed.
    pub idle_timeout: Duration,
    /// Period of publish_update/play_update events and on_update callbacks.
    pub update_interval: Duration,
    /// How long a player's packets may gather before they are written together.
    pub merge_write: Option<Duration>,
    /// Payload bytes whose gathering ends a player's window early (`merge_write_bytes`).
    pub merge_write_bytes: usize,
    /// Output bounds, per connection and per shard.
    pub limits: ConnectionLimits,
    /// An RTSP session silent (no request, no media, no RTCP) for this long is closed: how a
    /// vanished client, UDP especially, is cleaned up. Announced in `Session: ;timeout=`.
    pub rtsp_session_timeout: Duration,
    /// The UDP ports RTSP sessions take their RTP/RTCP pairs from (`rtsp_udp.rs`).
    pub rtsp_udp_ports: (u16, u16),
    /// When RTSP clients are asked for credentials.
    pub rtsp_auth: crate::config::RtspAuth,
    /// How large a message, request head or body may be (the RTMP ones are in `rtmp` too).
    pub wire: WireLimits,
}

/// What one connection may hold in memory and for how long: bounded by bytes and time, not
/// by counts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A write the socket does not take whole within this long closes the connection (its
    /// peer is dead or too slow for live media). Also how long a reader waits for room under
    /// `max_pending_output`.
    pub send_timeout: Duration,
    /// Unsent output (protocol replies and media handed to the writer) above which the
    /// connection's input is no longer read: a peer that sends requests but never reads the
    /// replies must not make them pile up.
    pub max_pending_output: usize,
    /// Bytes all incomplete incoming messages of this shard may reserve together (the
    /// process-wide `partial_message_budget` split across shards).
    pub partial_budget: usize,
    /// A message still incomplete after this long closes its connection (slow body).
    pub partial_message_timeout: Duration,
}

/// Smallest share of `partial_message_budget` a shard gets: twice the largest RTMP message.
const MIN_PARTIAL_BUDGET_PER_SHARD: usize = 32 << 20;

impl ConnectionLimits {
    /// The bounds each shard applies, from the config.
    pub fn from_config(config: &Config) -> ConnectionLimits {
        ConnectionLimits {
            send_timeout: config.send_timeout,
            max_pending_output: config.max_pending_output,
            // One message of the largest size must always fit a shard that holds nothing else:
            // the budget refuses a draw leaving less than the drawer holds (chunk::PartialBudget).
            partial_budget: (config.partial_message_budget / config.shards.max(1)).max(MIN_PARTIAL_BUDGET_PER_SHARD),
            partial_message_timeout: config.partial_message_timeout,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            send_timeout: Duration::from_secs(30),
            max_pending_output: 1 << 20,
            partial_budget: 256 << 20,
            partial_message_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            rtmp: ServerSettings::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            update_interval: Duration::from_secs(30),
            merge_write: None,
            merge_write_bytes: 64 << 10,
            limits: ConnectionLimits::default(),
            rtsp_session_timeout: Duration::from_secs(60),
            rtsp_udp_ports: rtsp_udp::DEFAULT_PORTS,
            rtsp_auth: crate::config::RtspAuth::None,
            wire: WireLimits::default(),
        }
    }
}

/// What a session's read ended with, once what ended the session meanwhile is ruled out: a
/// kicked player's writer shuts the socket down, which ends the read too (`TooSlow`), and a
/// writer that failed first (a send timeout) is the error, not the shutdown the read saw.
/// `Ok(Ok(input))` is counted in; `Ok(Err(PeerClosed))` is the peer's close.
pub(crate) fn read_result<'a, E: From<std::io::Error>>(
    lifecycle: &mut lifecycle::Lifecycle,
    output: Option<&Rc<io::PendingOutput>>,
    input: Result<&'a [u8], E>,
) -> Result<Result<&'a [u8], lifecycle::CloseReason>, E> {
    if lifecycle.player().is_some_and(|player| player.is_kicked()) {
        return Ok(Err(lifecycle::CloseReason::TooSlow));
    }
    if let Some(error) = output.and_then(|output| output.take_failure()) {
        return Err(error.into());
    }
    let input = input?;
    if input.is_empty() {
        return Ok(Err(lifecycle::CloseReason::PeerClosed));
    }
    lifecycle.count_in(input.len());
    Ok(Ok(input))
}

/// Counts an IO error that is a write not taken within `send_timeout`: the one IO failure
/// that means "this connection hit a time bound".
pub(crate) fn count_send_timeout(error: &std::io::Error, stats: &crate::hub::HubStats) {
    if error.kind() == std::io::ErrorKind::TimedOut {
        stats.send_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How a driver's session ended without an error.
pub(crate) trait SessionEnd {
    /// How `connection_close` words it.
    fn describe(&self) -> String;
    /// A player kicked for staying behind its stream.
    fn too_slow(&self) -> bool;
    /// The connection went away without the client ending its publish: what parks a
    /// stream under `republish_grace`.
    fn dropped(&self) -> bool {
        false
    }
}

impl SessionEnd for lifecycle::CloseReason {
    fn describe(&self) -> String {
        lifecycle::CloseReason::describe(*self).to_owned()
    }

    fn too_slow(&self) -> bool {
        *self == lifecycle::CloseReason::TooSlow
    }

    fn dropped(&self) -> bool {
        *self == lifecycle::CloseReason::PeerClosed
    }
}

/// The error that ended a driver's session.
pub(crate) trait SessionFailure: std::fmt::Display {
    /// Counts the errors that mean "this connection hit a memory or time bound".
    fn count(&self, stats: &crate::hub::HubStats);
    /// The connection was lost (an IO or protocol error, silence): what parks a stream under
    /// `republish_grace`. A refusal is not: it ends the stream at once.
    fn dropped(&self) -> bool {
        true
    }
}

/// Ends a publisher's or player's session ([`end_session`]). A publisher whose connection
/// dropped first parks its stream under `republish_grace` and holds it (`grace.rs`), its
/// socket shut down meanwhile, in a task of its own: the drivers' futures, which every idle
/// connection holds, do not grow by it.
pub(crate) fn end_or_hold<E: SessionEnd + 'static, F: SessionFailure + 'static>(
    mut lifecycle: lifecycle::Lifecycle,
    socket: Rc<tokio_uring::net::TcpStream>,
    result: Result<E, F>,
) {
    let context = lifecycle.context().clone();
    let dropped = match &result {
        Ok(end) => end.dropped(),
        Err(error) => error.dropped(),
    };
    if !dropped || !lifecycle.park(std::time::Instant::now()) {
        return end_session(&mut lifecycle, &socket, context.hub.stats(), result);
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
    tokio::task::spawn_local(async move {
        grace::hold(&mut lifecycle).await;
        end_session(&mut lifecycle, &socket, context.hub.stats(), result);
    });
}

/// Ends a session's connection: says goodbye through its lifecycle, logs how it ended (a
/// player kicked as too slow and an error at INFO, a clean end at DEBUG), and shuts the socket
/// down so a writer task blocked on it sees the end too.
pub(crate) fn end_session(
    lifecycle: &mut lifecycle::Lifecycle,
    socket: &tokio_uring::net::TcpStream,
    stats: &crate::hub::HubStats,
    result: Result<impl SessionEnd, impl SessionFailure>,
) {
    let (conn_id, peer, protocol) = (lifecycle.conn_id(), lifecycle.addr(), lifecycle.entry().protocol.as_str());
    match result {
        Ok(end) => {
            let reason = end.describe();
            lifecycle.finish(&reason);
            if end.too_slow() {
                tracing::info!(conn_id, %peer, "player kicked: it stayed behind the stream after dropping to keyframes")
            } else {
                tracing::debug!(conn_id, %peer, %reason, "{protocol} session closed")
            }
        }
        Err(error) => {
            error.count(stats);
            lifecycle.finish(&error.to_string());
            tracing::info!(conn_id, %peer, %error, "{protocol} session closed")
        }
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// A shard-wide "stop now" that every session can await without a per-session allocation.
#[derive(Debug, Default)]
pub struct Shutdown {
    notify: Notify,
    triggered: Cell<bool>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.triggered.set(true);
        self.notify.notify_waiters();
    }

    pub async fn wait(&self) {
        while !self.triggered.get() {
            self.notify.notified().await;
        }
    }
}

/// What every session on a shard shares.
pub struct ShardContext {
    pub hub: Rc<ShardHub>,
    pub hooks: Arc<Hooks>,
    /// Where this shard's sessions ask and tell their callbacks.
    pub callbacks: Rc<CallbackLane>,
    pub settings: SessionSettings,
    pub shutdown: Shutdown,
    /// Sessions alive on this shard; shutdown waits for it to reach zero.
    pub active_sessions: Cell<usize>,
    pub sessions_done: Notify,
    /// Live sessions by connection id, for the admin API.
    pub sessions: std::cell::RefCell<std::collections::HashMap<u64, Rc<SessionEntry>>>,
    /// What incomplete incoming messages of this shard's connections may still reserve.
    pub partial_budget: Arc<PartialBudget>,
    /// The merge window of this shard's players.
    pub flush: ShardFlush,
    /// Each stream's RTP numbering, shared by its RTSP players on this shard.
    pub rtp_streams: rtsp_out::RtpStreams,
    /// Where this shard's RTSP sessions look for a free UDP port pair.
    pub udp_ports: rtsp_udp::PortRange,
    /// The session journal, when the server keeps one (set once, before any session).
    pub journal: std::cell::OnceCell<Arc<journal::Journal>>,
    /// The server's admission limits (set once, before any session); unset: none.
    pub admission: std::cell::OnceCell<Arc<limits::Admission>>,
    /// Where a new publisher takes a busy stream over (set once, before any session);
    /// unset: nowhere.
    pub takeover: std::cell::OnceCell<Arc<crate::config::TakeoverRule>>,
    /// How long a stream whose publisher dropped waits for a new one (set once, before any
    /// session); unset: it ends at once.
    pub republish_grace: std::cell::OnceCell<Arc<crate::config::GraceRule>>,
    /// The server's relays (set once, before any session); unset: none.
    pub relays: std::cell::OnceCell<Arc<relay::Relays>>,
    /// The streams pulled from cameras (set once, before any session); unset: none.
    pub sources: std::cell::OnceCell<Arc<rtsp_pull::Sources>>,
    random: Cell<u64>,
}

impl ShardContext {
    pub fn new(
        hub: Rc<ShardHub>,
        hooks: Arc<Hooks>,
        callbacks: Rc<CallbackLane>,
        settings: SessionSettings,
        seed: u64,
    ) -> Rc<ShardContext> {
        Rc::new(ShardContext {
            hub,
            hooks,
            callbacks,
            settings,
            shutdown: Shutdown::default(),
            active_sessions: Cell::new(0),
            sessions_done: Notify::new(),
            sessions: Default::default(),
            partial_budget: PartialBudget::new(settings.limits.partial_budget),
            flush: ShardFlush::new(settings.merge_write, settings.merge_write_bytes),
            rtp_streams: Default::default(),
            udp_ports: rtsp_udp::PortRange::new(settings.rtsp_udp_ports, seed),
            journal: std::cell::OnceCell::new(),
            admission: std::cell::OnceCell::new(),
            takeover: std::cell::OnceCell::new(),
            republish_grace: std::cell::OnceCell::new(),
            relays: std::cell::OnceCell::new(),
            sources: std::cell::OnceCell::new(),
            random: Cell::new(seed | 1),
        })
    }

    /// Counts, and logs through the admission limits' pacing (counts only when the server set
    /// none), that a connection of this shard hit a wire limit.
    pub(crate) fn wire_limit_reached(&self, limit: limits::WireLimit, what: &str) {
        let stats = self.hub.stats();
        match self.admission.get() {
            Some(admission) => admission.wire_limit_reached(limit, stats, what),
            None => drop(limit.counter(stats).fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        }
    }

    /// Fills `out` with fast pseudo-random bytes. The RTMP handshake's random field has no
    /// security role; a syscall per connection would cost more than it is worth.
    pub fn fill_random(&self, out: &mut [u8]) {
        let mut state = self.random.get();
        for chunk in out.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        self.random.set(state);
    }
}

/// What a connection does with a stream. It keeps its last role after the publish or play
/// ended: `connection_close` reports what the connection was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    None,
    Publisher,
    Player,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Publisher => "publisher",
            Role::Player => "player",
        }
    }
}

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A client that connected to this server.
    Client,
    /// A relay session (`relay/`): its play forwards the stream (not a viewer), and its
    /// publish is not pushed on (no relay loops through this server). `hooks` false
    /// (`relay_hooks` off): it asks no callback and fires no event, so an operator's hooks
    /// see real clients only.
    Relay { hooks: bool },
}

/// What the admin API shows of a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientSummary {
    pub conn_id: u64,
    pub shard: usize,
    pub protocol: Protocol,
    pub addr: String,
    pub role: Role,
    /// `app/name` once publishing or playing, else empty.
    pub stream: String,
    pub connected_at_ms: u64,
}

/// A live session as its shard's registry keeps it: enough to list and to kick it.
#[derive(Debug)]
pub struct SessionEntry {
    pub conn_id: u64,
    pub peer: std::net::SocketAddr,
    pub protocol: Protocol,
    /// Kept here, not in the lifecycle: every RTMP session's future holds the lifecycle, in a
    /// size class it must not outgrow.
    pub kind: SessionKind,
    pub connected_at_ms: u64,
    pub role: Cell<Role>,
    pub stream: std::cell::RefCell<String>,
    /// While publishing or playing: since when, and a publisher's media (`activity.rs`).
    pub activity: std::cell::RefCell<Option<activity::Activity>>,
    kicked: Cell<bool>,
    kick: Notify,
}

impl SessionEntry {
    /// What the admin API shows of it.
    fn summary(&self, shard: usize) -> ClientSummary {
        ClientSummary {
            conn_id: self.conn_id,
            shard,
            protocol: self.protocol,
            addr: self.peer.to_string(),
            role: self.role.get(),
            stream: self.stream.borrow().clone(),
            connected_at_ms: self.connected_at_ms,
        }
    }

    /// Resolves once an operator kicked the session.
    pub async fn kicked(&self) {
        while !self.kicked.get() {
            self.kick.notified().await;
        }
    }
}

impl ShardContext {
    /// Lists this shard's sessions.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let shard = self.hub.shard();
        self.sessions.borrow().values().map(|entry| entry.summary(shard)).collect()
    }

    /// What this shard's sessions publish and play now, for the admin API's stream details.
    pub fn activity(&self) -> Vec<activity::StreamActivity> {
        let shard = self.hub.shard();
        let now = std::time::Instant::now();
        self.sessions
            .borrow()
            .values()
            .filter_map(|entry| {
                let activity = entry.activity.borrow();
                let activity = activity.as_ref()?;
                Some(activity::StreamActivity {
                    client: entry.summary(shard),
                    since_ms: activity.since_ms,
                    media: activity.media.as_ref().map(|meter| meter.summary(now)),
                })
            })
            .collect()
    }

    /// Ends session `conn_id` if it lives on this shard.
    pub fn kick(&self, conn_id: u64) -> bool {
        let Some(entry) = self.sessions.borrow().get(&conn_id).cloned() else { return false };
        entry.kicked.set(true);
        entry.kick.notify_waiters();
        true
    }
}

/// Counts a session as alive, and lists it, for as long as the guard lives.
pub struct SessionGuard {
    context: Rc<ShardContext>,
    pub entry: Rc<SessionEntry>,
}

impl SessionGuard {
    pub fn new(
        context: &Rc<ShardContext>,
        conn_id: u64,
        peer: std::net::SocketAddr,
        protocol: Protocol,
        kind: SessionKind,
    ) -> SessionGuard {
        context.active_sessions.set(context.active_sessions.get() + 1);
        let entry = Rc::new(SessionEntry {
            conn_id,
            peer,
            protocol,
            kind,
            connected_at_ms: crate::hooks::now_ms(),
            role: Cell::new(Role::None),
            stream: std::cell::RefCell::new(String::new()),
            activity: std::cell::RefCell::new(None),
            kicked: Cell::new(false),
            kick: Notify::new(),
        });
        context.sessions.borrow_mut().insert(conn_id, entry.clone());
        SessionGuard { context: context.clone(), entry }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let context = &self.context;
        context.sessions.borrow_mut().remove(&self.entry.conn_id);
        let left = context.active_sessions.get() - 1;
        context.active_sessions.set(left);
        if left == 0 {
            context.sessions_done.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::{ConnectionLimits, Role};
    use crate::config::Config;

    #[test]
    fn roles_serialize_as_the_api_and_events_name_them() {
        for role in [Role::None, Role::Publisher, Role::Player] {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
    }

    #[test]
    fn connection_limits_split_the_partial_budget_across_shards_with_a_floor() {
        let path = Path::new("t.toml");
        let c =
            Config::from_toml("shards = 4\npartial_message_budget = 536870912\nsend_timeout = \"5s\"\n", path).unwrap();
        let limits = ConnectionLimits::from_config(&c);
        assert_eq!(limits.partial_budget, 128 << 20);
        assert_eq!(limits.send_timeout, Duration::from_secs(5));
        let c = Config::from_toml("shards = 64\n", path).unwrap();
        // 256 MiB over 64 shards is 4 MiB: raised so a 16 MiB message always fits a shard.
        assert_eq!(ConnectionLimits::from_config(&c).partial_budget, 32 << 20);
    }
}
