//! The life of one connection as hooks and the hub see it, whatever its protocol: who the
//! client is, what it asked for, what its callbacks decided, what it publishes or plays, the
//! events that tell the operator, and the periodic updates.
//!
//! A [`Lifecycle`] owns no socket and knows no wire format. A protocol driver (`rtmp.rs`)
//! reads its socket, turns requests into calls here (`admit_connect`, `admit_publish`,
//! `admit_play`, `media`, `end_publish`, `end_play`, `finish`), and maps each answer to its
//! own wire form: an [`Admission::Refused`] becomes RTMP's `_error`/onStatus, and later an
//! HTTP or RTSP status.
//!
//! The timers work like a sans-IO state machine's: [`Lifecycle::poll_timeout`] says when it
//! next needs the clock, [`Lifecycle::handle_timeout`] is given the time. The driver sleeps
//! beside its pending read; a test hands it any instant. Two kinds share them: the periodic
//! updates, and the terms a callback's JSON reply set (`terms.rs`: `max_duration`,
//! `max_bitrate_kbps`), which end the session when they are reached.
//!
//! A publisher whose connection drops may leave its stream parked for `republish_grace`
//! (`grace.rs`): [`Lifecycle::park`], then [`Lifecycle::end_parked`] once the grace ends or a
//! new publisher adopted the stream (its `admit_publish` then says `publish_resume`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::activity::{Activity, MediaMeter};
use super::grace::{Grace, Seam};
use super::journal::OpenSession;
use super::limits::LimitKind;
use super::media_gate::MediaGate;
use super::terms::Terms;
use super::{Role, SessionEntry, SessionGuard, SessionKind, ShardContext};
use crate::hooks::callback::{Call, ClientInfo, Decision};
use crate::hooks::event::{EventType, Protocol};
use crate::hooks::payload::{
    AuthFailed, CodecDetected, Connect, ConnectionAccept, ConnectionClose, EventPayload, HandshakeComplete, NoViewers,
    PlayStart, PlayStop, PlayUpdate, PublishResume, PublishStart, PublishStop, PublishUpdate, StreamCreate,
    StreamDelete, StreamUnavailable, SubscriberCount,
};
use crate::hooks::reply_terms::SessionTerms;
use crate::hooks::{Origin, now_ms};
use crate::hub::{Eviction, PacketKind, Parked, Player, PlayerHandle, PublisherHandle, StreamChange};
use crate::protocol::flv::{self, MediaKind};

/// A client's query arguments, in the order it sent them.
pub type Args = Vec<(String, String)>;

/// What a client sent to connect to an application. The RTMP-only fields (`tc_url`,
/// `flash_ver`, `swf_url`, `page_url`) stay empty for other protocols.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectRequest {
    pub app: String,
    /// The URL the client connected to; a stream's URL is this plus `/name?query`.
    pub url: String,
    pub tc_url: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
    pub args: Args,
}

/// A request to publish or play `name` in the connected application.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamRequest {
    pub name: String,
    pub args: Args,
    /// Protocol-specific callback fields (RTMP: a publish's `type`; a play's `start`,
    /// `duration` and `reset`).
    pub callback_fields: Vec<(&'static str, String)>,
}

/// The answer to a connect, publish or play.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Admission {
    Admitted,
    Refused(Refusal),
}

/// Why a request was refused; each protocol maps it to its own error reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The callback answered no, or failed and `on_error` denies (its reason says which).
    #[error("on_{} callback refused: {reason}", call.as_str())]
    Denied { call: Call, reason: String },
    /// Someone else publishes the stream.
    #[error("{0}")]
    StreamBusy(String),
    /// A server limit (`max_streams`, `max_players_per_stream`, `max_publishers_per_ip`).
    #[error("server limit reached: {}", .0.key())]
    Limit(LimitKind),
}

/// Why a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    Shutdown,
    /// A player stayed behind its stream after dropping to keyframes (`player_max_drops`).
    TooSlow,
    /// An operator kicked it over the admin API.
    AdminKick,
    /// A new publisher took its stream over (`takeover`).
    TakenOver,
    /// A limit a callback's reply set was reached; the lifecycle words which
    /// ([`Lifecycle::finish`]).
    TermReached,
    /// The stream of a publisher that dropped waited `republish_grace` for nobody.
    GraceExpired,
}

impl CloseReason {
    /// How `connection_close` words it.
    pub fn describe(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "closed by client",
            CloseReason::Shutdown => "server shutdown",
            CloseReason::TooSlow => "player too slow",
            CloseReason::AdminKick => "kicked by operator",
            CloseReason::TakenOver => TAKEN_OVER,
            CloseReason::TermReached => "session limit reached",
            CloseReason::GraceExpired => "republish grace expired",
        }
    }
}

/// How `publish_stop` and `connection_close` word a publisher replaced under `takeover`.
const TAKEN_OVER: &str = "taken over";

/// How long a publisher taking a stream over waits for the current one to leave: it is told
/// at once and leaves at its shard's next turn, so this only bounds a stuck shard.
const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// What a publishing connection counts for its events and callbacks.
struct Publishing {
    handle: PublisherHandle,
    name: String,
    args: Args,
    since: Instant,
    bytes_in_at_start: u64,
    last_timestamp: u32,
    /// The publish_stop event as it accumulates: packets, media bytes and codecs so far.
    totals: PublishStop,
    /// Places the publisher's timestamps on the stream's timeline: shifted when this
    /// publish continues a parked stream.
    seam: Seam,
    /// Set once the connection dropped and the stream is parked (`republish_grace`).
    parked: Option<Grace>,
    /// While the publish is held for `on_media`: what its media showed so far.
    media_gate: Option<Box<MediaGate>>,
    /// Counted among its address's publishers (`max_publishers_per_ip`) until
    /// [`Lifecycle::uncount_publisher`] gives the count back, once.
    counted: bool,
}

/// How a publisher got its stream.
enum Claim {
    Free,
    TookOver,
    /// It continues a parked stream.
    Adopted(Parked),
}

struct Playing {
    handle: PlayerHandle,
    name: String,
    args: Args,
    since: Instant,
    bytes_out_at_start: u64,
}

/// One connection's identity, role and counters, and its hub handle once it publishes or
/// plays.
pub struct Lifecycle {
    context: Rc<ShardContext>,
    /// Lists the connection in its shard's registry for as long as it lives.
    /// Also where the connection's id, address and protocol are kept.
    guard: SessionGuard,
    /// Set once the client asked to connect (before its callback answered).
    connect: Option<ConnectRequest>,
    /// Boxed: most connections play or idle, and their futures stay smaller without it.
    publishing: Option<Box<Publishing>>,
    playing: Option<Playing>,
    started: Instant,
    bytes_in: u64,
    /// Shared with a player's writer, which does most of the writing.
    bytes_out: Rc<Cell<u64>>,
    /// `update_interval` when a callback or sink wants updates; `None` never wakes.
    update_period: Option<Duration>,
    /// When the next publish_update/play_update (and on_update) is due: `update_interval`
    /// after the publish or play started, then every `update_interval`.
    next_update: Instant,
    /// An `on_update` reply awaited under `update_strict`.
    pending_update: Option<oneshot::Receiver<Decision>>,
    /// The limits callbacks' replies set (`max_duration`, `max_bitrate_kbps`). Boxed, and
    /// only once a reply sets one: every idle connection's task would otherwise carry it.
    terms: Option<Box<Terms>>,
    /// Why the terms ended the session, once they did: the reason its stop events and
    /// `connection_close` give.
    ended_by: Option<String>,
}

impl Lifecycle {
    /// Registers an accepted connection and says so (connection_accept).
    pub fn new(context: &Rc<ShardContext>, protocol: Protocol, addr: SocketAddr, conn_id: u64) -> Lifecycle {
        Lifecycle::with_kind(context, protocol, addr, conn_id, SessionKind::Client)
    }

    /// A relay session's lifecycle: an outbound connection to `addr` that publishes (a pull)
    /// or plays (a push) here. With `hooks` false (`relay_hooks` off) it asks no callback and
    /// fires no event.
    pub fn relay(context: &Rc<ShardContext>, addr: SocketAddr, conn_id: u64, hooks: bool) -> Lifecycle {
        Lifecycle::with_kind(context, Protocol::Rtmp, addr, conn_id, SessionKind::Relay { hooks })
    }

    fn with_kind(
        context: &Rc<ShardContext>,
        protocol: Protocol,
        addr: SocketAddr,
        conn_id: u64,
        kind: SessionKind,
    ) -> Lifecycle {
        let hooks_on = kind != SessionKind::Relay { hooks: false };
        let guard = SessionGuard::new(context, conn_id, addr, protocol, kind);
        let hooks = &context.hooks;
        let wants_updates = hooks_on
            && (hooks.update_interval().is_some()
                || hooks.wants(EventType::PublishUpdate)
                || hooks.wants(EventType::PlayUpdate));
        let now = Instant::now();
        let lifecycle = Lifecycle {
            context: context.clone(),
            guard,
            connect: None,
            publishing: None,
            playing: None,
            started: now,
            bytes_in: 0,
            bytes_out: Rc::new(Cell::new(0)),
            update_period: wants_updates.then_some(context.settings.update_interval),
            next_update: now,
            pending_update: None,
            terms: None,
            ended_by: None,
        };
        lifecycle.emit(|| ConnectionAccept { remote_addr: addr.to_string(), protocol: protocol.as_str() });
        lifecycle
    }

    /// What the connection's shard shares with its other sessions.
    pub(crate) fn context(&self) -> &Rc<ShardContext> {
        &self.context
    }

    /// This connection in its shard's registry (admin API listing and kicks).
    pub fn entry(&self) -> &Rc<SessionEntry> {
        &self.guard.entry
    }

    pub fn conn_id(&self) -> u64 {
        self.guard.entry.conn_id
    }

    pub fn addr(&self) -> SocketAddr {
        self.guard.entry.peer
    }

    /// When the connection was accepted: the zero of its protocol's clock.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the client asked to connect yet.
    pub fn has_connect(&self) -> bool {
        self.connect.is_some()
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// The player's queue, while playing.
    pub fn player(&self) -> Option<&Rc<Player>> {
        self.playing.as_ref().map(|p| p.handle.player())
    }

    /// The name of the stream being played, as admitted (after any 3xx rename).
    pub fn playing_name(&self) -> Option<&str> {
        self.playing.as_ref().map(|p| p.name.as_str())
    }

    /// Counts bytes read from the client.
    pub fn count_in(&mut self, bytes: usize) {
        self.bytes_in += bytes as u64;
    }

    /// Bytes written to the client, shared with whoever writes them.
    pub fn bytes_out(&self) -> &Rc<Cell<u64>> {
        &self.bytes_out
    }

    /// The protocol's handshake finished.
    pub fn handshake_complete(&self) {
        self.emit(|| HandshakeComplete {});
    }

    /// A client asks to connect: tells the sinks (connect), then asks `on_connect`.
    pub async fn admit_connect(&mut self, request: ConnectRequest) -> Admission {
        debug!(conn_id = self.conn_id(), app = %request.app, url = %request.url, "connect");
        self.emit(|| Connect {
            app: request.app.clone(),
            tcurl: request.tc_url.clone(),
            flashver: request.flash_ver.clone(),
            swfurl: request.swf_url.clone(),
            pageurl: request.page_url.clone(),
            args: request.args.clone(),
        });
        self.connect = Some(request);
        let client = self.client_info("", &[]);
        match self.decide(Call::Connect, &client, &[]).await {
            Decision::Allow | Decision::Rename(_) => Admission::Admitted,
            Decision::Limited(terms) => {
                // A connect has no stream to rename; its limits hold for the connection.
                self.accept_terms(Call::Connect, &terms);
                Admission::Admitted
            }
            Decision::Deny { reason } => self.refuse(Call::Connect, reason, ""),
        }
    }

    /// A client asks to publish: asks `on_publish` (a 3xx renames the stream), then takes the
    /// stream in the hub. Admitted, it is the stream's publisher until [`Self::end_publish`].
    pub async fn admit_publish(&mut self, request: StreamRequest) -> Admission {
        let (name, args, terms) = match self.ask(Call::Publish, request).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let key = self.stream_key(&name);
        if let Err(kind) = self.within_limits(&key, true) {
            return self.refuse_over_limit(kind, "publish", &key);
        }
        let app = self.connect.as_ref().map(|c| c.app.as_str()).unwrap_or_default();
        // A relay's pull is not asked: the origin admitted its media.
        let held = !self.is_relay() && self.context.callbacks.asks(Call::Media, app);
        let (handle, change, claim) = match self.take_stream(&key, held).await {
            Ok(taken) => taken,
            Err(error) => {
                self.uncount_publisher(&mut self.counts_as_publisher());
                warn!(conn_id = self.conn_id(), peer = %self.addr(), stream = %key, "publish refused: {error}");
                return Admission::Refused(Refusal::StreamBusy(error.to_string()));
            }
        };
        info!(shard = self.context.hub.shard(), conn_id = self.conn_id(), peer = %self.addr(), stream = %key, held, "publish start");
        let now = Instant::now();
        self.next_update = now + self.context.settings.update_interval;
        if let Some(terms) = &terms {
            self.accept_terms(Call::Publish, terms);
        }
        if let Some(terms) = &mut self.terms {
            terms.start_publish(now);
        }
        self.entry().role.set(Role::Publisher);
        *self.entry().stream.borrow_mut() = key;
        *self.entry().activity.borrow_mut() =
            Some(Activity { since_ms: now_ms(), media: Some(Box::new(MediaMeter::new(now))) });
        self.publishing = Some(Box::new(Publishing {
            handle,
            name,
            args,
            since: now,
            bytes_in_at_start: self.bytes_in,
            last_timestamp: 0,
            totals: PublishStop::default(),
            seam: match &claim {
                Claim::Adopted(parked) => Seam::after(parked.last_timestamp),
                _ => Seam::default(),
            },
            parked: None,
            // An adopted stream is live at once (its players are watching): the media of the
            // publish that started it was admitted.
            media_gate: (held && !matches!(claim, Claim::Adopted(_))).then(|| Box::new(MediaGate::new(now))),
            counted: self.counts_as_publisher(),
        }));
        if let Some(p) = &self.publishing {
            self.journal_started(true, &p.name, &p.args);
        }
        if change.created {
            self.emit(|| StreamCreate {});
        }
        // An adopted stream keeps its pushes: they are players of it.
        if let Some(relays) = self.context.relays.get().filter(|_| !self.is_relay())
            && !matches!(claim, Claim::Adopted(_))
        {
            relays.publish_started(&self.context, &self.current_stream());
        }
        let args = || self.publishing.as_ref().map(|p| p.args.clone()).unwrap_or_default();
        match claim {
            Claim::Adopted(parked) => {
                let gap_ms = now.saturating_duration_since(parked.at).as_millis() as u64;
                info!(conn_id = self.conn_id(), stream = %self.current_stream(), previous = parked.conn_id, gap_ms, "publisher resumed the stream (republish_grace)");
                self.emit(|| PublishResume { args: args(), gap_ms, previous_conn_id: parked.conn_id });
            }
            claim => {
                let takeover = matches!(claim, Claim::TookOver);
                if takeover {
                    info!(conn_id = self.conn_id(), stream = %self.current_stream(), "publisher took the stream over");
                }
                self.emit(|| PublishStart { args: args(), takeover });
            }
        }
        Admission::Admitted
    }

    /// Takes `key` in the hub for this publisher. A busy stream under `takeover` is taken
    /// over: the current publisher is told to leave, and this one waits (at most
    /// [`TAKEOVER_WAIT`]) for the stream to be free. A parked stream is adopted, takeover or
    /// not. Says how it got the stream.
    /// `held`: taken for `on_media`, live only once it allows ([`Self::admit_media`]); an
    /// adopted stream is never held.
    async fn take_stream(
        &self,
        key: &str,
        held: bool,
    ) -> Result<(PublisherHandle, StreamChange, Claim), crate::hub::HubError> {
        let app = self.connect.as_ref().map(|c| c.app.as_str()).unwrap_or_default();
        let takeover = self.context.takeover.get().is_some_and(|rule| rule.applies(app));
        let deadline = Instant::now() + TAKEOVER_WAIT;
        let mut evicted = false;
        loop {
            let taken = if held { self.context.hub.publish_held(key) } else { self.context.hub.publish(key) };
            match taken {
                Ok((handle, change)) => {
                    return Ok((handle, change, if evicted { Claim::TookOver } else { Claim::Free }));
                }
                Err(_) if let Some((handle, change, parked)) = self.context.hub.adopt(key) => {
                    return Ok((handle, change, Claim::Adopted(parked)));
                }
                Err(error) if !takeover || Instant::now() >= deadline => return Err(error),
                Err(_) => {
                    if !evicted {
                        evicted = self.context.hub.evict_publisher(key);
                    }
                    // The old publisher leaves on its own shard's turn; poll rather than
                    // wire a wake-up across shards for a once-per-takeover wait.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// While publishing: the signal a new publisher taking the stream over raises. A driver
    /// awaits it with [`taken_over`] and then ends the session with
    /// [`CloseReason::TakenOver`].
    pub fn eviction(&self) -> Option<Arc<Eviction>> {
        self.publishing.as_ref().map(|p| p.handle.eviction().clone())
    }

    /// A client asks to play: asks `on_play` (a 3xx renames the stream), then joins the
    /// stream's players, live or not yet. Admitted, [`Self::player`] is its queue.
    pub async fn admit_play(&mut self, request: StreamRequest) -> Admission {
        let (name, args, terms) = match self.ask(Call::Play, request).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let key = self.stream_key(&name);
        if let Err(kind) = self.within_limits(&key, false) {
            return self.refuse_over_limit(kind, "play", &key);
        }
        info!(shard = self.context.hub.shard(), conn_id = self.conn_id(), peer = %self.addr(), stream = %key, "play start");
        let (handle, mut change) = if self.is_relay() {
            let live = self.context.hub.is_published(&key);
            let players = self.context.hub.stream_counts(&key).1.unwrap_or(0);
            (self.context.hub.forward(&key, self.conn_id()), StreamChange { players, live, ..StreamChange::default() })
        } else {
            self.context.hub.play(&key, self.conn_id())
        };
        if !change.live && !self.is_relay() {
            // Fed on demand (a camera, or a pull from an origin the app has or the reply
            // named): the player wakes its feeder and waits for it to start.
            let named = terms.as_ref().and_then(|terms| terms.origin.as_ref());
            change.live = super::relay::await_source(&self.context, &key, named).await;
        }
        let now = Instant::now();
        self.next_update = now + self.context.settings.update_interval;
        if let Some(terms) = &terms {
            self.accept_terms(Call::Play, terms);
        }
        self.entry().role.set(Role::Player);
        *self.entry().stream.borrow_mut() = key;
        *self.entry().activity.borrow_mut() = Some(Activity { since_ms: now_ms(), media: None });
        self.journal_started(false, &name, &args);
        self.playing = Some(Playing { handle, name, args, since: now, bytes_out_at_start: self.bytes_out.get() });
        if change.created {
            self.emit(|| StreamCreate {});
        }
        if !change.live {
            self.emit(|| StreamUnavailable {});
        }
        self.emit(|| PlayStart { args: self.playing.as_ref().map(|p| p.args.clone()).unwrap_or_default() });
        self.emit(|| SubscriberCount { count: change.players });
        Admission::Admitted
    }

    /// Asks `call`'s callback about a publish or play: the stream name to use (after any 3xx
    /// or JSON rename), the client's arguments and the terms a JSON reply set (applied once
    /// admitted), or the refusal.
    async fn ask(
        &self,
        call: Call,
        request: StreamRequest,
    ) -> Result<(String, Args, Option<Box<SessionTerms>>), Admission> {
        let StreamRequest { mut name, args, callback_fields } = request;
        let client = self.client_info(&name, &args);
        let mut terms = None;
        match self.decide(call, &client, &callback_fields).await {
            Decision::Allow => {}
            Decision::Rename(renamed) => name = renamed,
            Decision::Limited(limited) => {
                if let Some(renamed) = &limited.name {
                    name = renamed.clone();
                }
                terms = Some(limited);
            }
            Decision::Deny { reason } => return Err(self.refuse(call, reason, &self.stream_key(&name))),
        }
        Ok((name, args, terms))
    }

    /// Takes on the limits an admitting reply to `call` set: a deadline from now, a bitrate
    /// cap for a publish (the lowest of all replies; a player's is ignored: it sends no media).
    fn accept_terms(&mut self, call: Call, terms: &SessionTerms) {
        let now = Instant::now();
        if let Some(max) = terms.max_duration {
            self.terms.get_or_insert_default().limit_duration(now, max);
        }
        if let Some(kbps) = terms.max_bitrate_kbps
            && call != Call::Play
        {
            self.terms.get_or_insert_default().cap_bitrate(kbps);
        }
        debug!(conn_id = self.conn_id(), call = call.as_str(), ?terms, "admitted under the reply's terms");
    }

    /// Checks the server's stream limits for a publish or play of `key`; a publish within
    /// them is counted for its address (given back by [`Self::end_publish`]).
    fn within_limits(&self, key: &str, publisher: bool) -> Result<(), LimitKind> {
        let Some(admission) = self.context.admission.get() else { return Ok(()) };
        let (streams, players) = self.context.hub.stream_counts(key);
        if players.is_none() && !admission.admits_new_stream(streams) {
            return Err(LimitKind::Streams);
        }
        // A relay session is no client: a push is not among a stream's viewers, and a pull's
        // address is its origin's, shared by every stream pulled from it.
        if !publisher && !self.is_relay() && !admission.admits_player(players.unwrap_or(0)) {
            return Err(LimitKind::PlayersPerStream);
        }
        if publisher && self.counts_as_publisher() && !admission.start_publishing(self.addr().ip()) {
            return Err(LimitKind::PublishersPerIp);
        }
        Ok(())
    }

    /// Whether a publish of this session counts among its address's publishers: a client's
    /// does when the server has admission limits; a relay's pull does not (its address is
    /// its origin's).
    fn counts_as_publisher(&self) -> bool {
        self.context.admission.get().is_some() && !self.is_relay()
    }

    /// Gives back the count [`Self::within_limits`] took for a publish, if `counted` still
    /// says it holds one (cleared here, so a count is given back once: at the publish's end,
    /// or earlier when it parks or its stream is refused).
    fn uncount_publisher(&self, counted: &mut bool) {
        if std::mem::take(counted)
            && let Some(admission) = self.context.admission.get()
        {
            admission.stop_publishing(self.addr().ip());
        }
    }

    fn refuse_over_limit(&self, kind: LimitKind, action: &str, stream: &str) -> Admission {
        if let Some(admission) = self.context.admission.get() {
            let what = format!("{action} of {stream} from {}", self.addr().ip());
            admission.refused(kind, self.context.hub.stats(), &what);
        }
        Admission::Refused(Refusal::Limit(kind))
    }

    /// A denied callback: the operator gets `auth_failed`; the driver tells the client.
    /// `stream` is the stream the client asked for (`app/name`), empty for connect.
    fn refuse(&self, call: Call, reason: String, stream: &str) -> Admission {
        let action = call.as_str();
        warn!(conn_id = self.conn_id(), peer = %self.addr(), action, %reason, "denied by callback");
        let origin = Origin { stream_key: stream.to_owned(), ..self.origin() };
        self.emit_at(&origin, || AuthFailed { action, error: reason.clone() });
        Admission::Refused(Refusal::Denied { call, reason })
    }

    /// A media message from the publisher: counted, handed to the hub, and its codec named
    /// (codec_detected) by the first sequence header of each kind. Ignored when not
    /// publishing.
    pub fn media(&mut self, kind: PacketKind, timestamp: u32, payload: Bytes) {
        let Some(publishing) = self.publishing.as_mut() else {
            return;
        };
        publishing.last_timestamp = timestamp;
        let timestamp = publishing.seam.map(timestamp);
        if let Some(terms) = &mut self.terms {
            terms.count(payload.len());
        }
        let totals = &mut publishing.totals;
        totals.total_bytes += payload.len() as u64;
        match kind {
            PacketKind::Audio => totals.audio_packets += 1,
            PacketKind::Video => totals.video_packets += 1,
            PacketKind::Data { .. } => {}
        }
        let packet = match publishing.handle.push(kind, timestamp, payload) {
            Ok(packet) => packet,
            Err(error) => {
                // Counted in the hub's stats; one bad frame is no reason to drop a publisher.
                debug!(conn_id = self.conn_id(), %error, "dropped malformed media message");
                return;
            }
        };
        if let Some(gate) = &mut publishing.media_gate {
            gate.observe(&packet);
        }
        if let Some(meter) = self.guard.entry.activity.borrow_mut().as_mut().and_then(|a| a.media.as_mut()) {
            meter.count(Instant::now(), kind, packet.payload.len(), !packet.sequence_header);
        }
        // The hub has already classified the packet, so only a new sequence header is parsed.
        let (media_kind, slot) = match kind {
            PacketKind::Audio => (MediaKind::Audio, &mut publishing.totals.audio_codec),
            PacketKind::Video => (MediaKind::Video, &mut publishing.totals.video_codec),
            PacketKind::Data { .. } => return,
        };
        if !packet.sequence_header || slot.is_some() {
            return;
        }
        let Ok(info) = flv::parse_codec_info(media_kind, &packet.payload) else { return };
        *slot = Some(info.codec.name());
        if let Some(meter) = self.guard.entry.activity.borrow_mut().as_mut().and_then(|a| a.media.as_mut()) {
            meter.describe(info.clone(), kind);
        }
        let (audio_codec, video_codec) = (publishing.totals.audio_codec, publishing.totals.video_codec);
        self.emit(|| CodecDetected {
            audio_codec,
            video_codec,
            width: info.width,
            height: info.height,
            sample_rate: info.sample_rate,
            channels: info.channels,
            profile: info.profile,
        });
    }

    /// Why the lifecycle itself ended the session (a reply's term, `on_media`'s refusal), once
    /// it did.
    pub fn ended_by(&self) -> Option<&str> {
        self.ended_by.as_deref()
    }

    /// The publisher declared the tracks it sends (an RTSP ANNOUNCE's media sections), so a
    /// publish held for `on_media` waits for those.
    pub fn declare_media(&mut self, video: bool, audio: bool) {
        if let Some(gate) = self.publishing.as_mut().and_then(|p| p.media_gate.as_mut()) {
            gate.declare(video, audio);
        }
    }

    /// Whether a publish held for `on_media` has shown enough of its media to ask: the driver
    /// then awaits [`Self::admit_media`] before it reads on.
    pub fn media_known(&self) -> bool {
        let gate = self.publishing.as_ref().and_then(|p| p.media_gate.as_ref());
        gate.is_some_and(|gate| gate.is_known(Instant::now()))
    }

    /// Asks `on_media` about the held publish's media. Allowed, the stream goes live: its
    /// players get what was held, from the sequence headers and the current GOP's keyframe on.
    /// Refused, nothing was ever shown to a player: `auth_failed` says why, and the driver
    /// ends the publish with the refusal (its `publish_stop` and `connection_close` give it).
    pub async fn admit_media(&mut self) -> Admission {
        let Some(gate) = self.publishing.as_mut().and_then(|p| p.media_gate.take()) else {
            return Admission::Admitted;
        };
        let fields = gate.describe().form_fields();
        let Some(p) = &self.publishing else { return Admission::Admitted };
        let client = self.client_info(&p.name, &p.args);
        let decision = self.context.callbacks.decide(Call::Media, &client, &fields).await;
        let terms = match decision {
            Decision::Deny { reason } => {
                let refusal = self.refuse(Call::Media, reason, "");
                if let Admission::Refused(refusal) = &refusal {
                    self.ended_by = Some(refusal.to_string());
                }
                return refusal;
            }
            Decision::Limited(terms) => Some(terms),
            Decision::Allow | Decision::Rename(_) => None,
        };
        if let Some(terms) = terms {
            // A publish already started has its name: only the limits apply.
            self.accept_terms(Call::Media, &terms);
            if let Some(held) = &mut self.terms
                && terms.max_bitrate_kbps.is_some()
            {
                held.start_publish(Instant::now());
            }
        }
        if let Some(p) = &self.publishing {
            info!(conn_id = self.conn_id(), stream = %p.handle.key(), "on_media allowed: the stream is live");
            p.handle.go_live();
        }
        Admission::Admitted
    }

    /// When the timers next want [`Self::handle_timeout`]: the next update (none while
    /// nothing is published or played, or nobody wants updates) or the reply's terms.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let terms = self.terms.as_ref().and_then(|terms| terms.poll_timeout());
        let grace = self.grace().map(Grace::poll_timeout);
        [self.update_due(), terms, grace].into_iter().flatten().min()
    }

    /// A parked publish's grace ([`Self::park`]).
    fn grace(&self) -> Option<&Grace> {
        self.publishing.as_ref().and_then(|p| p.parked.as_ref())
    }

    fn update_due(&self) -> Option<Instant> {
        self.update_period?;
        // A parked publish has no publisher to report on.
        let publishing = self.publishing.as_ref().is_some_and(|p| p.parked.is_none());
        (publishing || self.playing.is_some()).then_some(self.next_update)
    }

    /// Runs the timers due at `now`: sends the updates (publish_update/play_update,
    /// on_update) and sets the next deadline, and checks the reply's terms.
    /// [`CloseReason::TermReached`] when a term ends the session: the driver returns it.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<CloseReason> {
        if let Some(reason) = self.terms.as_mut().and_then(|terms| terms.handle_timeout(now)) {
            info!(conn_id = self.conn_id(), peer = %self.addr(), stream = %self.current_stream(), %reason, "session ended by the callback's terms");
            self.ended_by = Some(reason);
            return Some(CloseReason::TermReached);
        }
        if self.grace().is_some_and(|grace| grace.expired(now)) {
            return Some(CloseReason::GraceExpired);
        }
        if let Some(period) = self.update_period
            && self.update_due().is_some_and(|due| now >= due)
        {
            self.next_update = now + period;
            self.send_updates(now);
        }
        None
    }

    fn send_updates(&mut self, now: Instant) {
        let origin = self.origin();
        if let Some(p) = &self.publishing {
            let secs = now.saturating_duration_since(p.since).as_secs_f64();
            let bytes_in = self.bytes_in - p.bytes_in_at_start;
            let bitrate_kbps = if secs > 0.0 { (bytes_in as f64 * 8.0 / 1000.0 / secs).round() } else { 0.0 };
            let timestamp = p.last_timestamp;
            self.emit_at(&origin, || PublishUpdate { time: secs.round() as u64, timestamp, bytes_in, bitrate_kbps });
            let client = self.client_info(&p.name, &p.args);
            let fields = [("time", (secs as u64).to_string()), ("timestamp", timestamp.to_string())];
            if let Some(receiver) = self.context.callbacks.update(true, &client, &fields) {
                self.pending_update = Some(receiver);
            }
        }
        if let Some(p) = &self.playing {
            let secs = now.saturating_duration_since(p.since).as_secs_f64();
            let bytes_out = self.bytes_out.get() - p.bytes_out_at_start;
            let millis = (secs * 1000.0) as u64;
            self.emit_at(&origin, || PlayUpdate { time: secs.round() as u64, timestamp: millis, bytes_out });
            let client = self.client_info(&p.name, &p.args);
            let fields = [("time", (secs as u64).to_string()), ("timestamp", millis.to_string())];
            if let Some(receiver) = self.context.callbacks.update(false, &client, &fields) {
                self.pending_update = Some(receiver);
            }
        }
    }

    /// Resolves when an `on_update` reply awaited under `update_strict` arrives; with its
    /// reason when it denies, which ends the connection. Pending forever without one.
    pub async fn update_verdict(&mut self) -> Option<String> {
        let Some(receiver) = self.pending_update.as_mut() else {
            return std::future::pending().await;
        };
        let decision = receiver.await.ok();
        self.pending_update = None;
        match decision {
            Some(Decision::Deny { reason }) => Some(reason),
            _ => None,
        }
    }

    /// The publisher stopped (or left): frees the stream, tells the sinks (publish_stop)
    /// and `on_publish_done`. Does nothing when not publishing.
    pub fn end_publish(&mut self) {
        self.end_publish_with(None);
    }

    /// [`Self::end_publish`], publish_stop giving `reason` unless the publisher was taken
    /// over or a term ended it.
    fn end_publish_with(&mut self, reason: Option<String>) {
        let origin = self.origin();
        let Some(p) = self.publishing.take() else {
            return;
        };
        let reason = if p.handle.eviction().is_raised() {
            Some(TAKEN_OVER.to_owned())
        } else {
            self.ended_by.clone().or(reason)
        };
        if let Some(terms) = &mut self.terms {
            terms.stop_publish();
        }
        let change = p.handle.unpublish();
        self.journal_stopped(true);
        let mut counted = p.counted;
        self.uncount_publisher(&mut counted);
        self.entry().activity.take();
        info!(conn_id = self.conn_id(), stream = %origin.stream_key, "publish stop");
        // A parked publish ended when its connection dropped.
        let ended = p.parked.map_or_else(Instant::now, |grace| grace.since());
        let duration = ended.saturating_duration_since(p.since).as_secs_f64();
        let bytes_in = self.bytes_in - p.bytes_in_at_start;
        let bytes_out = self.bytes_out.get();
        let stop = PublishStop { bytes_in, bytes_out, duration_sec: round_ms(duration), reason, ..p.totals };
        self.emit_at(&origin, || stop);
        let client = self.client_info(&p.name, &p.args);
        let fields = [
            ("bytes_in", bytes_in.to_string()),
            ("bytes_out", bytes_out.to_string()),
            ("duration", (duration as u64).to_string()),
        ];
        if !self.is_quiet() {
            self.context.callbacks.tell_done(true, &client, &fields);
        }
        self.stream_left(&origin, change);
    }

    /// The publisher's connection dropped at `now`: parks its stream for its app's
    /// `republish_grace`, players attached and untold, for a new publisher to adopt. The
    /// connection no longer counts for `max_publishers_per_ip`. Whether it parked (false:
    /// no grace, not publishing, or already taken over); if so the driver holds the session
    /// (`grace::hold`) before [`Self::finish`].
    pub fn park(&mut self, now: Instant) -> bool {
        let app = self.connect.as_ref().map(|c| c.app.as_str()).unwrap_or_default();
        let period = self.context.republish_grace.get().map_or(Duration::ZERO, |rule| rule.get(app));
        let conn_id = self.conn_id();
        let Some(mut p) = self.publishing.take() else { return false };
        if period.is_zero() || !p.handle.park(conn_id, p.seam.last(), now) {
            self.publishing = Some(p);
            return false;
        }
        p.parked = Some(Grace::new(now, period));
        // The same encoder may come back from the same address within the grace.
        self.uncount_publisher(&mut p.counted);
        info!(conn_id, stream = %p.handle.key(), grace = ?period, "publisher dropped: its stream waits for a new publisher (republish_grace)");
        self.publishing = Some(p);
        true
    }

    /// Ends a parked publish by what ended its wait: adopted (the adopter's publish_resume
    /// said it all), its stream just changes hands; otherwise it ends as the drop would have
    /// ended it, publish_stop saying why (`republish grace expired`, a kick, shutdown).
    pub fn end_parked(&mut self, outcome: CloseReason) {
        let Some(p) = &self.publishing else { return };
        if p.handle.unpark() {
            return self.end_publish_with(Some(outcome.describe().to_owned()));
        }
        if let Some(p) = self.publishing.take() {
            info!(conn_id = self.conn_id(), stream = %p.handle.key(), "parked stream adopted by a new publisher");
            p.handle.unpublish();
        }
        self.journal_stopped(true);
        self.entry().activity.take();
    }

    /// The player stopped (or left): leaves the stream (which ends its writer), tells the
    /// sinks (play_stop, subscriber_count, no_viewers) and `on_play_done`. Does nothing when
    /// not playing.
    pub fn end_play(&mut self) {
        let origin = self.origin();
        let Some(p) = self.playing.take() else {
            return;
        };
        let dropped = p.handle.player().dropped_packets();
        debug!(conn_id = self.conn_id(), stream = %p.handle.key(), dropped, "play stop");
        let change = p.handle.leave();
        self.journal_stopped(false);
        self.entry().activity.take();
        let duration = p.since.elapsed().as_secs_f64();
        let bytes_out = self.bytes_out.get() - p.bytes_out_at_start;
        let reason = self.ended_by.clone();
        self.emit_at(&origin, || PlayStop {
            bytes_out,
            duration_sec: round_ms(duration),
            dropped_packets: dropped,
            reason,
        });
        self.emit_at(&origin, || SubscriberCount { count: change.players });
        if change.players == 0 && change.live {
            self.emit_at(&origin, || NoViewers {});
        }
        let client = self.client_info(&p.name, &p.args);
        let fields = [
            ("bytes_in", self.bytes_in.to_string()),
            ("bytes_out", bytes_out.to_string()),
            ("duration", (duration as u64).to_string()),
        ];
        if !self.is_quiet() {
            self.context.callbacks.tell_done(false, &client, &fields);
        }
        self.stream_left(&origin, change);
    }

    fn stream_left(&self, origin: &Origin, change: StreamChange) {
        if change.deleted {
            self.emit_at(origin, || StreamDelete {});
        }
    }

    /// Ends whatever the connection still does and says goodbye (connection_close). A
    /// session a term ended gives that term as its reason.
    pub fn finish(&mut self, reason: &str) {
        let reason = self.ended_by.clone().unwrap_or_else(|| reason.to_owned());
        // The role it had (kept after the publish or play ended).
        let role = self.entry().role.get().as_str();
        self.end_publish();
        self.end_play();
        let (bytes_in, bytes_out) = (self.bytes_in, self.bytes_out.get());
        let duration_sec = round_ms(self.started.elapsed().as_secs_f64());
        self.emit(|| ConnectionClose { role, duration_sec, bytes_in, bytes_out, reason });
    }

    /// The stream this connection publishes or plays, if any.
    fn current_stream(&self) -> String {
        if let Some(p) = &self.publishing {
            p.handle.key().to_owned()
        } else if let Some(p) = &self.playing {
            p.handle.key().to_owned()
        } else {
            String::new()
        }
    }

    fn origin(&self) -> Origin {
        Origin {
            conn_id: self.conn_id(),
            protocol: self.guard.entry.protocol,
            addr: self.addr(),
            stream_key: self.current_stream(),
        }
    }

    fn emit<P: EventPayload>(&self, build: impl FnOnce() -> P) {
        self.emit_at(&self.origin(), build);
    }

    fn is_relay(&self) -> bool {
        matches!(self.guard.entry.kind, SessionKind::Relay { .. })
    }

    /// A relay session without `relay_hooks`.
    fn is_quiet(&self) -> bool {
        self.guard.entry.kind == SessionKind::Relay { hooks: false }
    }

    /// Tells the sinks, unless this is a quiet relay session.
    fn emit_at<P: EventPayload>(&self, origin: &Origin, build: impl FnOnce() -> P) {
        if !self.is_quiet() {
            self.context.hooks.emit(origin, build);
        }
    }

    /// Asks `call`'s callback; a quiet relay session asks none and is allowed.
    async fn decide(&self, call: Call, client: &ClientInfo, extra: &[(&'static str, String)]) -> Decision {
        if self.is_quiet() {
            return Decision::Allow;
        }
        self.context.callbacks.decide(call, client, extra).await
    }

    /// What a callback is told of the client asking for `name` (empty for connect).
    fn client_info(&self, name: &str, args: &[(String, String)]) -> ClientInfo {
        let connect = self.connect.clone().unwrap_or_default();
        client_info(&connect, self.guard.entry.protocol, self.addr(), self.conn_id(), name, args)
    }

    /// Tells the journal a publish or play started, as callbacks would describe it.
    fn journal_started(&self, publisher: bool, name: &str, args: &Args) {
        // A quiet relay session has no stop events or done callbacks for a restart to send.
        let Some(journal) = self.context.journal.get().filter(|_| !self.is_quiet()) else { return };
        let connect = self.connect.clone().unwrap_or_default();
        let entry = self.entry();
        let recorded = journal.started(OpenSession {
            conn_id: entry.conn_id,
            publisher,
            protocol: entry.protocol.as_str().to_owned(),
            addr: entry.peer,
            stream: entry.stream.borrow().clone(),
            app: connect.app,
            name: name.to_owned(),
            url: connect.url,
            tc_url: connect.tc_url,
            flash_ver: connect.flash_ver,
            swf_url: connect.swf_url,
            page_url: connect.page_url,
            connect_args: connect.args,
            args: args.clone(),
            started_ms: now_ms(),
        });
        if !recorded {
            self.context.hub.stats().journal_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn journal_stopped(&self, publisher: bool) {
        if let Some(journal) = self.context.journal.get().filter(|_| !self.is_quiet())
            && !journal.stopped(self.conn_id(), publisher)
        {
            self.context.hub.stats().journal_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `app/name`: the stream key every layer uses.
    fn stream_key(&self, name: &str) -> String {
        let app = self.connect.as_ref().map(|c| c.app.as_str()).unwrap_or_default();
        format!("{app}/{name}")
    }
}

/// What a callback is told of a client of `connect` asking for `name` (empty for connect):
/// shared with the journal's recovery, which words a crashed session's done callbacks alike.
pub(crate) fn client_info(
    connect: &ConnectRequest,
    protocol: Protocol,
    addr: SocketAddr,
    conn_id: u64,
    name: &str,
    args: &[(String, String)],
) -> ClientInfo {
    let connect = connect.clone();
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(args).finish();
    let url = if name.is_empty() {
        connect.url.clone()
    } else if query.is_empty() {
        format!("{}/{name}", connect.url)
    } else {
        format!("{}/{name}?{query}", connect.url)
    };
    let mut all_args = connect.args;
    // An HTTP-FLV request is its connect and its play at once: its one query is given to
    // both, and passed once. RTMP passes both queries, whatever they hold.
    if protocol == Protocol::Rtmp || all_args != args {
        all_args.extend(args.iter().cloned());
    }
    ClientInfo {
        protocol: Some(protocol),
        addr: Some(addr),
        conn_id,
        app: connect.app,
        name: name.to_owned(),
        url,
        tc_url: connect.tc_url,
        flash_ver: connect.flash_ver,
        swf_url: connect.swf_url,
        page_url: connect.page_url,
        args: all_args,
    }
}

/// Resolves when `eviction` (a publisher's, [`Lifecycle::eviction`]) is raised; pending
/// forever without one.
pub async fn taken_over(eviction: Option<Arc<Eviction>>) {
    match eviction {
        Some(eviction) => eviction.raised().await,
        None => std::future::pending().await,
    }
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}
