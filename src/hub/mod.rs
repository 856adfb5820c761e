//! Stream registry and fan-out: publisher -> shared packets -> players.
//!
//! Two levels:
//! - [`Hub`] is shared by all shards (behind a `Mutex` touched only when a publisher or a
//!   shard's first player comes or goes, never per packet). It knows which shard publishes
//!   each stream and which shards have players of it.
//! - [`ShardHub`] is one shard's own view: its [`LocalStream`]s with their GOP caches and
//!   players. It is single-threaded (`Rc`, `RefCell`) like the shard that owns it.
//!
//! A packet from a publisher is pushed into every local player's queue and sent once to every
//! other shard with players (a [`ShardMessage::Relay`] over that shard's bounded channel),
//! where that shard's `LocalStream` fans it out in turn. Nothing here ever waits: a full
//! player queue drops to the next keyframe ([`player`]); a full relay channel makes that
//! shard skip to the next keyframe.

pub mod gop;
pub mod packet;
pub mod player;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

pub use gop::{GopCache, GopPush};
pub use packet::{Packet, PacketError, PacketKind, WireForm};
pub use player::{FlushQueue, Offer, Player, PlayerItem};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("stream {0} already has a publisher")]
    AlreadyPublishing(String),
}

/// A stream as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub key: String,
    /// The shard of its publisher; `None` while players wait for one.
    pub publisher_shard: Option<usize>,
    /// Players on every shard.
    pub players: usize,
}

/// Bounds and switches of the fan-out, from the config.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// The outgoing RTMP chunk size: a packet's footprint counts the chunked copy players
    /// make of it.
    pub chunk_size: u32,
    /// Builds the wire forms this server's players need (`Packet::wire_form`), once per
    /// packet on its publisher's shard, before it is shared.
    pub prepare: fn(&Packet),
    pub player_queue: usize,
    /// Footprint a player's queue may hold, beside the `player_queue` packet count.
    pub player_queue_bytes: usize,
    pub player_max_drops: u32,
    pub gop_cache: bool,
    /// Footprint of a stream's cached GOP.
    pub gop_cache_bytes: usize,
    /// Messages each shard's inbound channel holds. When full, relayed packets to that shard
    /// are skipped to the next keyframe (control messages wait instead).
    pub relay_capacity: usize,
    /// Footprint of relayed packets each shard's inbound channel may hold, beside its message
    /// count: past it, relayed packets to that shard skip to the next keyframe too.
    pub relay_capacity_bytes: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            chunk_size: 4096,
            prepare: |_| {},
            player_queue: 1024,
            player_queue_bytes: 32 << 20,
            player_max_drops: 3,
            gop_cache: true,
            gop_cache_bytes: 32 << 20,
            relay_capacity: 4096,
            relay_capacity_bytes: 64 << 20,
        }
    }
}

/// What one shard sends another.
#[derive(Debug)]
pub enum ShardMessage {
    /// `shard` has players of `stream`: send it the stream (to the publisher's shard).
    Subscribe {
        stream: Arc<str>,
        shard: usize,
    },
    /// `shard` has no players of `stream` any more.
    Unsubscribe {
        stream: Arc<str>,
        shard: usize,
    },
    Relay {
        stream: Arc<str>,
        item: RelayItem,
    },
}

#[derive(Debug)]
pub enum RelayItem {
    /// A publisher started: players already waiting are told, then it streams.
    Start,
    /// The answer to a Subscribe: the stream is already live, and what a player needs first
    /// (metadata, headers, GOP) comes along. The shard's players joined a live stream, so
    /// nobody is told "published" (players show such a notice as an extra data stream).
    Attach(Vec<Packet>),
    Packet(Packet),
    /// The publisher left.
    Stop,
}

/// Counters over all shards, for metrics and tests.
#[derive(Debug, Default)]
pub struct HubStats {
    pub packets_in: AtomicU64,
    pub malformed_packets: AtomicU64,
    pub relay_dropped: AtomicU64,
    pub players_kicked: AtomicU64,
    /// Requests (connect, publish, play) the protocol refused before any hook saw them: a field
    /// over its size cap, too many query arguments, a second connect. Counted by the sessions.
    pub requests_refused: AtomicU64,
    /// Players emptied to the next keyframe because their queue was full (packets or bytes).
    pub player_queue_drops: AtomicU64,
    /// GOPs too large for the cache (`gop_cache_bytes`): players joining then wait for the
    /// next keyframe.
    pub gop_cache_overflows: AtomicU64,
    /// Connections closed because their socket did not take a write within `send_timeout`, or
    /// their unsent output stayed above `max_pending_output` that long.
    pub send_timeouts: AtomicU64,
    /// Connections refused because incomplete messages had used up the shard's
    /// `partial_message_budget`.
    pub partial_budget_refusals: AtomicU64,
    /// Connections closed because a message stayed incomplete past `partial_message_timeout`.
    pub slow_messages: AtomicU64,
    /// Session journal records dropped because its writer fell behind.
    pub journal_dropped: AtomicU64,
    /// Connections refused at accept by `max_connections`, and by `max_connections_per_ip`.
    pub refused_connections: AtomicU64,
    pub refused_connections_per_ip: AtomicU64,
    /// Publishes and plays refused by `max_streams`, `max_players_per_stream` and
    /// `max_publishers_per_ip`.
    pub refused_streams: AtomicU64,
    pub refused_players: AtomicU64,
    pub refused_publishers_per_ip: AtomicU64,
    /// Connections closed for not finishing their handshake (or first request) within
    /// `handshake_timeout`, and for sending nothing within `idle_timeout` (or
    /// `rtsp_session_timeout`).
    pub handshake_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    /// Connections that hit a wire limit, by limit: an RTMP message over
    /// `max_rtmp_message_bytes`, one chunk stream too many (`max_rtmp_chunk_streams`), an
    /// HTTP-FLV head over `max_http_request_head_bytes`, an RTSP head or body over
    /// `max_rtsp_request_head_bytes` or `max_rtsp_body_bytes`.
    pub oversized_rtmp_messages: AtomicU64,
    pub rtmp_chunk_stream_refusals: AtomicU64,
    pub oversized_http_heads: AtomicU64,
    pub oversized_rtsp_heads: AtomicU64,
    pub oversized_rtsp_bodies: AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    publisher: Option<usize>,
    /// Set while `publisher` is: how a new publisher taking the stream over (`takeover`)
    /// tells the current one, wherever its shard, to leave.
    eviction: Option<Arc<Eviction>>,
    /// Shards that hold a `LocalStream` of this stream (players waiting or watching).
    shards: Vec<usize>,
    /// Players of the stream on every shard.
    players: usize,
}

/// A publisher's "you have been replaced" signal, raised from any shard's thread.
#[derive(Debug, Default)]
pub struct Eviction {
    raised: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Eviction {
    fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a new publisher took the stream over.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Resolves once a new publisher took the stream over.
    pub async fn raised(&self) {
        loop {
            // Created before the check: `notify_waiters` wakes a `Notified` made before it
            // even if not yet polled, so a raise between the check and the await is not lost.
            let notified = self.notify.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// How the registry changed when a publisher or player came or went; the caller turns it
/// into events (stream_create, subscriber_count, no_viewers, stream_delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamChange {
    /// The stream entered the registry with this call.
    pub created: bool,
    /// The stream left the registry with this call.
    pub deleted: bool,
    /// Players of the stream, server-wide, after the change.
    pub players: usize,
    /// Someone publishes the stream, after the change.
    pub live: bool,
}

/// The registry shared by every shard.
#[derive(Debug)]
pub struct Hub {
    streams: Mutex<HashMap<Arc<str>, Entry>>,
    senders: Vec<mpsc::Sender<ShardMessage>>,
    /// Per destination shard: footprint of the relayed packets in its inbound channel.
    relay_bytes: Vec<AtomicUsize>,
    settings: HubSettings,
    pub stats: HubStats,
}

impl Hub {
    /// How many shards the hub serves.
    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Creates the hub for `shards` shards and returns each shard's inbound channel.
    pub fn new(shards: usize, settings: HubSettings) -> (Arc<Hub>, Vec<mpsc::Receiver<ShardMessage>>) {
        let (senders, receivers) = (0..shards).map(|_| mpsc::channel(settings.relay_capacity.max(1))).unzip();
        let relay_bytes = (0..shards).map(|_| AtomicUsize::new(0)).collect();
        let hub =
            Hub { streams: Mutex::new(HashMap::new()), senders, relay_bytes, settings, stats: HubStats::default() };
        (Arc::new(hub), receivers)
    }

    /// Counts `bytes` into `shard`'s inbound channel if they fit its byte bound (an empty
    /// channel takes any one packet).
    fn reserve_relay(&self, shard: usize, bytes: usize) -> bool {
        let limit = self.settings.relay_capacity_bytes;
        self.relay_bytes[shard]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held == 0 || held + bytes <= limit).then_some(held + bytes)
            })
            .is_ok()
    }

    fn release_relay(&self, shard: usize, bytes: usize) {
        self.relay_bytes[shard].fetch_sub(bytes, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written (every update is
        // a single assignment), so a poisoned lock is still consistent.
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `shard` the publisher of `key`; returns the other shards with players.
    fn claim_publisher(
        &self,
        key: &Arc<str>,
        shard: usize,
    ) -> Result<(Vec<usize>, StreamChange, Arc<Eviction>), HubError> {
        let mut streams = self.lock();
        let created = !streams.contains_key(key);
        let entry = streams.entry(key.clone()).or_default();
        if entry.publisher.is_some() {
            return Err(HubError::AlreadyPublishing(key.to_string()));
        }
        entry.publisher = Some(shard);
        let eviction = Arc::new(Eviction::default());
        entry.eviction = Some(eviction.clone());
        let others = entry.shards.iter().copied().filter(|&s| s != shard).collect();
        let change = StreamChange { created, deleted: false, players: entry.players, live: true };
        Ok((others, change, eviction))
    }

    /// Tells the publisher of `key`, if any, that a new one takes the stream over; it leaves
    /// (and releases the stream) on its own shard. Whether there was one.
    pub fn evict_publisher(&self, key: &str) -> bool {
        let streams = self.lock();
        match streams.get(key).and_then(|entry| entry.eviction.as_ref()) {
            Some(eviction) => {
                eviction.raise();
                true
            }
            None => false,
        }
    }

    fn release_publisher(&self, key: &str) -> StreamChange {
        let mut streams = self.lock();
        let Some(entry) = streams.get_mut(key) else {
            return StreamChange::default();
        };
        entry.publisher = None;
        entry.eviction = None;
        let players = entry.players;
        let deleted = entry.shards.is_empty() && players == 0;
        if deleted {
            streams.remove(key);
        }
        StreamChange { created: false, deleted, players, live: false }
    }

    /// Counts a player in (`joined`) or out; returns the stream's state after it.
    fn count_player(&self, key: &Arc<str>, joined: bool) -> StreamChange {
        let mut streams = self.lock();
        let created = !streams.contains_key(key);
        let entry = streams.entry(key.clone()).or_default();
        if joined {
            entry.players += 1;
        } else {
            entry.players = entry.players.saturating_sub(1);
        }
        let live = entry.publisher.is_some();
        StreamChange { created, deleted: false, players: entry.players, live }
    }

    /// Records that `shard` holds `key`; returns the publisher's shard, if any.
    fn register_shard(&self, key: &Arc<str>, shard: usize) -> Option<usize> {
        let mut streams = self.lock();
        let entry = streams.entry(key.clone()).or_default();
        if !entry.shards.contains(&shard) {
            entry.shards.push(shard);
        }
        entry.publisher
    }

    /// Forgets that `shard` holds `key`; returns the publisher's shard and whether the stream
    /// left the registry.
    fn unregister_shard(&self, key: &str, shard: usize) -> (Option<usize>, bool) {
        let mut streams = self.lock();
        let Some(entry) = streams.get_mut(key) else {
            return (None, false);
        };
        entry.shards.retain(|&s| s != shard);
        let publisher = entry.publisher;
        let deleted = entry.shards.is_empty() && publisher.is_none() && entry.players == 0;
        if deleted {
            streams.remove(key);
        }
        (publisher, deleted)
    }

    /// Every stream in the registry, sorted by key (for the admin API).
    pub fn streams(&self) -> Vec<StreamInfo> {
        let mut streams: Vec<StreamInfo> = self
            .lock()
            .iter()
            .map(|(key, entry)| StreamInfo {
                key: key.to_string(),
                publisher_shard: entry.publisher,
                players: entry.players,
            })
            .collect();
        streams.sort_by(|a, b| a.key.cmp(&b.key));
        streams
    }
}

/// One relay destination of a locally published stream.
#[derive(Debug)]
struct RelayTarget {
    shard: usize,
    /// Set when a packet could not be sent: skip until the next keyframe.
    lagging: bool,
}

/// One shard's copy of a stream: its cache and its local players.
#[derive(Debug)]
pub struct LocalStream {
    pub key: Arc<str>,
    /// A publisher (here or on another shard) is sending.
    live: Cell<bool>,
    local_publisher: Cell<bool>,
    cache: RefCell<GopCache>,
    /// Whether a GOP overflow of this stream was logged (once per stream).
    gop_overflow_logged: Cell<bool>,
    players: RefCell<Vec<Rc<Player>>>,
    relay: RefCell<Vec<RelayTarget>>,
}

impl LocalStream {
    pub fn is_live(&self) -> bool {
        self.live.get()
    }

    /// What a player that starts now gets first: the cached sequence headers and GOP, and
    /// whether the stream has video (audio-only streams start on any frame).
    pub fn cached_start(&self) -> (Vec<Rc<Packet>>, bool) {
        let cache = self.cache.borrow();
        (cache.snapshot().cloned().collect(), cache.has_video())
    }

    /// The stream's latest video and audio sequence headers, as cached here.
    pub fn sequence_headers(&self) -> (Option<Rc<Packet>>, Option<Rc<Packet>>) {
        self.cache.borrow().sequence_headers()
    }
}

/// One shard's part of the hub.
pub struct ShardHub {
    shard: usize,
    hub: Arc<Hub>,
    streams: RefCell<HashMap<Arc<str>, Rc<LocalStream>>>,
    /// Per destination shard: messages waiting in spawned tasks for channel space. While any
    /// wait, later messages to that shard queue behind them (order matters: Start before
    /// packets before Stop), and relayed packets are skipped rather than queued.
    backlog: Rc<RefCell<Vec<usize>>>,
}

impl ShardHub {
    pub fn new(shard: usize, hub: Arc<Hub>) -> Rc<ShardHub> {
        let shards = hub.senders.len();
        Rc::new(ShardHub {
            shard,
            hub,
            streams: RefCell::new(HashMap::new()),
            backlog: Rc::new(RefCell::new(vec![0; shards])),
        })
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The server-wide counters.
    pub fn stats(&self) -> &HubStats {
        &self.hub.stats
    }

    /// Whether anyone, on any shard, publishes `key` now.
    /// Streams in the registry (published, or awaited by players), and the players of `key`
    /// when it is one of them: what `max_streams` and `max_players_per_stream` count.
    pub fn stream_counts(&self, key: &str) -> (usize, Option<usize>) {
        let streams = self.hub.lock();
        (streams.len(), streams.get(key).map(|entry| entry.players))
    }

    /// Tells the publisher of `key`, on whatever shard, that a new one takes the stream over.
    pub fn evict_publisher(&self, key: &str) -> bool {
        self.hub.evict_publisher(key)
    }

    pub fn is_published(&self, key: &str) -> bool {
        self.hub.lock().get(key).is_some_and(|entry| entry.publisher.is_some())
    }

    pub fn stream(&self, key: &str) -> Option<Rc<LocalStream>> {
        self.streams.borrow().get(key).cloned()
    }

    fn local_stream(&self, key: &str) -> Rc<LocalStream> {
        if let Some(stream) = self.stream(key) {
            return stream;
        }
        let key: Arc<str> = Arc::from(key);
        let stream = Rc::new(LocalStream {
            key: key.clone(),
            live: Cell::new(false),
            local_publisher: Cell::new(false),
            cache: RefCell::new(GopCache::new(self.hub.settings.gop_cache, self.hub.settings.gop_cache_bytes)),
            gop_overflow_logged: Cell::new(false),
            players: RefCell::new(Vec::new()),
            relay: RefCell::new(Vec::new()),
        });
        self.streams.borrow_mut().insert(key.clone(), stream.clone());
        if let Some(publisher) = self.hub.register_shard(&key, self.shard)
            && publisher != self.shard
        {
            self.send_ordered(publisher, ShardMessage::Subscribe { stream: key, shard: self.shard });
        }
        stream
    }

    /// Drops a stream this shard no longer needs (no publisher here, no players).
    fn release_if_unused(&self, stream: &LocalStream) -> bool {
        if stream.local_publisher.get() || !stream.players.borrow().is_empty() {
            return false;
        }
        self.streams.borrow_mut().remove(&stream.key);
        let (publisher, deleted) = self.hub.unregister_shard(&stream.key, self.shard);
        if let Some(publisher) = publisher
            && publisher != self.shard
        {
            self.send_ordered(publisher, ShardMessage::Unsubscribe { stream: stream.key.clone(), shard: self.shard });
        }
        deleted
    }

    /// Starts publishing `key` from this shard.
    pub fn publish(self: &Rc<Self>, key: &str) -> Result<(PublisherHandle, StreamChange), HubError> {
        let key_arc: Arc<str> = Arc::from(key);
        let (others, change, eviction) = self.hub.claim_publisher(&key_arc, self.shard)?;
        let stream = self.local_stream(key);
        stream.local_publisher.set(true);
        self.start_stream(&stream, &[], true);
        for shard in others {
            stream.relay.borrow_mut().push(RelayTarget { shard, lagging: false });
            self.send_ordered(shard, ShardMessage::Relay { stream: stream.key.clone(), item: RelayItem::Start });
        }
        let handle = PublisherHandle { shard_hub: self.clone(), stream, eviction, released: false };
        Ok((handle, change))
    }

    /// Marks a stream live with a fresh cache (filled from `snapshot`); `announce` tells the
    /// waiting players a publisher arrived.
    fn start_stream(&self, stream: &LocalStream, snapshot: &[Packet], announce: bool) {
        stream.live.set(true);
        stream.cache.borrow_mut().clear();
        if announce {
            for player in stream.players.borrow().iter() {
                player.notice(PlayerItem::Published);
            }
        }
        for packet in snapshot {
            self.distribute(stream, Rc::new(packet.clone()));
        }
    }

    fn stop_stream(&self, stream: &LocalStream) {
        stream.live.set(false);
        stream.cache.borrow_mut().clear();
        for player in stream.players.borrow().iter() {
            player.notice(PlayerItem::Unpublished);
        }
    }

    /// Adds a player of `key` (live or not yet): it gets the cached start of the stream now
    /// and every packet from then on.
    pub fn play(self: &Rc<Self>, key: &str, conn_id: u64) -> (PlayerHandle, StreamChange) {
        let change = self.hub.count_player(&Arc::from(key), true);
        (self.join(key, conn_id, true), change)
    }

    /// Adds a player of `key` that is not counted among its players: a relay forwarding the
    /// stream elsewhere is not a viewer (`max_players_per_stream`, `subscriber_count` and a
    /// pull's `linger` count viewers only).
    pub fn forward(self: &Rc<Self>, key: &str, conn_id: u64) -> PlayerHandle {
        self.join(key, conn_id, false)
    }

    fn join(self: &Rc<Self>, key: &str, conn_id: u64, counted: bool) -> PlayerHandle {
        let stream = self.local_stream(key);
        let settings = self.hub.settings;
        let player = Rc::new(Player::new(
            conn_id,
            settings.player_queue,
            settings.player_queue_bytes,
            settings.player_max_drops,
        ));
        {
            let cache = stream.cache.borrow();
            let has_video = cache.has_video();
            for packet in cache.snapshot() {
                player.offer(packet, has_video, &self.hub.stats.player_queue_drops);
            }
        }
        player.join(&mut stream.players.borrow_mut());
        PlayerHandle { shard_hub: self.clone(), stream, player, counted, released: false }
    }

    /// Caches a packet, queues it for every local player, relays it to other shards.
    fn distribute(&self, stream: &LocalStream, packet: Rc<Packet>) {
        if !stream.players.borrow().is_empty() || !stream.relay.borrow().is_empty() {
            // Build the shared wire forms here, once, before the packet is cloned to other
            // shards (each would otherwise build its own).
            (self.hub.settings.prepare)(&packet);
        }
        let has_video = {
            let mut cache = stream.cache.borrow_mut();
            if cache.push(&packet) == GopPush::Overflowed {
                self.hub.stats.gop_cache_overflows.fetch_add(1, Ordering::Relaxed);
                // Once per stream: a stream whose GOPs are all too large would say so every GOP;
                // the counter has every overflow.
                if !stream.gop_overflow_logged.replace(true) {
                    warn!(
                        stream = %stream.key,
                        limit = self.hub.settings.gop_cache_bytes,
                        "GOP too large to cache (gop_cache_bytes): new players wait for the next keyframe"
                    );
                }
            }
            cache.has_video()
        };
        let mut kicked = 0;
        let mut players = stream.players.borrow_mut();
        let mut i = 0;
        while i < players.len() {
            if players[i].offer(&packet, has_video, &self.hub.stats.player_queue_drops) == Offer::Kicked {
                player::remove_slot(&mut players, i);
                kicked += 1;
            } else {
                i += 1;
            }
        }
        drop(players);
        if kicked > 0 {
            self.hub.stats.players_kicked.fetch_add(kicked, Ordering::Relaxed);
        }
        let resumes = packet.keyframe || (!has_video && packet.kind == PacketKind::Audio);
        let backlog = self.backlog.borrow();
        for target in stream.relay.borrow_mut().iter_mut() {
            if target.lagging && !resumes {
                self.hub.stats.relay_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let footprint = packet.footprint();
            let sent = backlog[target.shard] == 0
                && self.hub.reserve_relay(target.shard, footprint)
                && (self.hub.senders[target.shard]
                    .try_send(ShardMessage::Relay {
                        stream: stream.key.clone(),
                        item: RelayItem::Packet((*packet).clone()),
                    })
                    .is_ok()
                    || {
                        self.hub.release_relay(target.shard, footprint);
                        false
                    });
            target.lagging = !sent;
            if !sent {
                self.hub.stats.relay_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a message that must arrive, after any earlier one to the same shard.
    fn send_ordered(&self, shard: usize, message: ShardMessage) {
        let Some(sender) = self.hub.senders.get(shard) else {
            return;
        };
        let message = if self.backlog.borrow()[shard] == 0 {
            match sender.try_send(message) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(message)) => message,
            }
        } else {
            message
        };
        self.backlog.borrow_mut()[shard] += 1;
        let sender = sender.clone();
        let backlog = self.backlog.clone();
        tokio::task::spawn_local(async move {
            // An error means the shard is gone (shutdown): nothing left to tell it.
            let _ = sender.send(message).await;
            backlog.borrow_mut()[shard] -= 1;
        });
    }

    /// Handles a message from another shard.
    pub fn handle_message(&self, message: ShardMessage) {
        match message {
            ShardMessage::Subscribe { stream, shard } => {
                let Some(local) = self.stream(&stream) else {
                    return;
                };
                if !local.local_publisher.get() || local.relay.borrow().iter().any(|t| t.shard == shard) {
                    return;
                }
                let snapshot: Vec<Packet> = local.cache.borrow().snapshot().map(|p| (**p).clone()).collect();
                local.relay.borrow_mut().push(RelayTarget { shard, lagging: false });
                self.send_ordered(shard, ShardMessage::Relay { stream, item: RelayItem::Attach(snapshot) });
            }
            ShardMessage::Unsubscribe { stream, shard } => {
                if let Some(local) = self.stream(&stream) {
                    local.relay.borrow_mut().retain(|t| t.shard != shard);
                }
            }
            ShardMessage::Relay { stream, item } => {
                if let RelayItem::Packet(packet) = &item {
                    self.hub.release_relay(self.shard, packet.footprint());
                }
                // The stream may be gone here already (last player left): nothing to do.
                let Some(local) = self.stream(&stream) else {
                    return;
                };
                if local.local_publisher.get() {
                    return;
                }
                match item {
                    RelayItem::Start => self.start_stream(&local, &[], true),
                    RelayItem::Attach(snapshot) => self.start_stream(&local, &snapshot, false),
                    RelayItem::Packet(packet) => self.distribute(&local, Rc::new(packet)),
                    RelayItem::Stop => self.stop_stream(&local),
                }
            }
        }
    }
}

/// Held by a publishing session; dropping it ends the publish.
pub struct PublisherHandle {
    shard_hub: Rc<ShardHub>,
    stream: Rc<LocalStream>,
    /// Raised when a new publisher takes the stream over.
    eviction: Arc<Eviction>,
    released: bool,
}

impl PublisherHandle {
    /// Takes one media message from the publisher and hands it to every player.
    /// Returns the packet as the hub parsed it, so the caller need not parse it again.
    pub fn push(&self, kind: PacketKind, timestamp: u32, payload: Bytes) -> Result<Rc<Packet>, PacketError> {
        let hub = &self.shard_hub.hub;
        let packet = Packet::new(kind, timestamp, payload, hub.settings.chunk_size).inspect_err(|_| {
            hub.stats.malformed_packets.fetch_add(1, Ordering::Relaxed);
        })?;
        hub.stats.packets_in.fetch_add(1, Ordering::Relaxed);
        let packet = Rc::new(packet);
        self.shard_hub.distribute(&self.stream, packet.clone());
        Ok(packet)
    }

    pub fn key(&self) -> &str {
        &self.stream.key
    }

    /// Raised when a new publisher takes the stream over (`takeover`).
    pub fn eviction(&self) -> &Arc<Eviction> {
        &self.eviction
    }
}

impl PublisherHandle {
    /// Ends the publish; returns how the registry changed.
    pub fn unpublish(mut self) -> StreamChange {
        self.release()
    }

    fn release(&mut self) -> StreamChange {
        if std::mem::replace(&mut self.released, true) {
            return StreamChange::default();
        }
        let shard_hub = &self.shard_hub;
        self.stream.local_publisher.set(false);
        shard_hub.stop_stream(&self.stream);
        let targets = std::mem::take(&mut *self.stream.relay.borrow_mut());
        for target in targets {
            shard_hub.send_ordered(
                target.shard,
                ShardMessage::Relay { stream: self.stream.key.clone(), item: RelayItem::Stop },
            );
        }
        let mut change = shard_hub.hub.release_publisher(&self.stream.key);
        change.deleted |= shard_hub.release_if_unused(&self.stream);
        change
    }
}

impl Drop for PublisherHandle {
    fn drop(&mut self) {
        self.release();
    }
}

/// Held by a playing session; dropping it detaches the player.
pub struct PlayerHandle {
    shard_hub: Rc<ShardHub>,
    stream: Rc<LocalStream>,
    player: Rc<Player>,
    /// Counted among the stream's players (a viewer), not a relay forwarding it.
    counted: bool,
    released: bool,
}

impl PlayerHandle {
    pub fn player(&self) -> &Rc<Player> {
        &self.player
    }

    pub fn is_live(&self) -> bool {
        self.stream.is_live()
    }

    pub fn key(&self) -> &str {
        &self.stream.key
    }
}

impl PlayerHandle {
    /// Detaches the player; returns how the registry changed.
    pub fn leave(mut self) -> StreamChange {
        self.release()
    }

    fn release(&mut self) -> StreamChange {
        if std::mem::replace(&mut self.released, true) {
            return StreamChange::default();
        }
        self.player.kick();
        self.player.depart(&mut self.stream.players.borrow_mut());
        let mut change = if self.counted {
            self.shard_hub.hub.count_player(&self.stream.key, false)
        } else {
            StreamChange::default()
        };
        change.created = false;
        change.deleted = self.shard_hub.release_if_unused(&self.stream);
        change
    }
}

impl Drop for PlayerHandle {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_does_not_drain_its_relay_holds_at_most_its_byte_bound() {
        let settings = HubSettings { relay_capacity_bytes: 1 << 20, ..HubSettings::default() };
        let (hub, mut receivers) = Hub::new(2, settings);
        let (publishing_shard, playing_shard) = (ShardHub::new(0, hub.clone()), ShardHub::new(1, hub.clone()));
        let (_player, _) = playing_shard.play("live/x", 1);
        let (publisher, _) = publishing_shard.publish("live/x").unwrap();
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.resize(100_000, 0);
        for n in 0..40 {
            publisher.push(PacketKind::Video, n * 40, Bytes::from(frame.clone())).unwrap();
        }
        // 40 frames of ~200 KB footprint: about 8 MB offered, at most 1 MiB in the channel.
        let held = hub.relay_bytes[1].load(Ordering::Relaxed);
        assert!(held > 0 && held <= 1 << 20, "{held}");
        assert!(hub.stats.relay_dropped.load(Ordering::Relaxed) > 0);
        while let Ok(message) = receivers[1].try_recv() {
            playing_shard.handle_message(message);
        }
        assert_eq!(hub.relay_bytes[1].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_eviction_reaches_the_current_publisher_only_and_frees_the_stream_when_it_leaves() {
        let (hub, _receivers) = Hub::new(2, HubSettings::default());
        let (first_shard, second_shard) = (ShardHub::new(0, hub.clone()), ShardHub::new(1, hub.clone()));
        assert!(!second_shard.evict_publisher("live/x"), "nobody publishes yet");
        let (first, _) = first_shard.publish("live/x").unwrap();
        assert!(!first.eviction().is_raised());
        assert!(second_shard.publish("live/x").is_err(), "busy");
        assert!(second_shard.evict_publisher("live/x"));
        assert!(first.eviction().is_raised(), "raised across shards");
        // The publisher leaves on its own shard; the stream is free from then on, and the new
        // publisher's signal starts lowered.
        assert!(second_shard.publish("live/x").is_err(), "still held until the old one leaves");
        first.unpublish();
        let (second, _) = second_shard.publish("live/x").unwrap();
        assert!(!second.eviction().is_raised());
    }

    #[test]
    fn a_forwarding_player_gets_the_stream_but_is_no_viewer() {
        let (hub, _receivers) = Hub::new(1, HubSettings::default());
        let shard = ShardHub::new(0, hub.clone());
        let (publisher, _) = shard.publish("live/x").unwrap();
        let (viewer, joined) = shard.play("live/x", 1);
        let forward = shard.forward("live/x", 2);
        assert_eq!(joined.players, 1);
        assert_eq!(shard.stream_counts("live/x").1, Some(1), "the forward is not counted");
        publisher.push(PacketKind::Video, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0, 1])).unwrap();
        let mut items = Vec::new();
        forward.player().take(&mut items);
        assert_eq!(items.len(), 1, "it is fed like any player");
        assert_eq!(forward.leave(), StreamChange::default(), "leaving counts nobody out");
        assert_eq!(viewer.leave().players, 0);
    }

    #[test]
    fn a_raised_eviction_wakes_its_waiter() {
        let eviction = Arc::new(Eviction::default());
        let waiter = eviction.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async move {
            let raising = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                eviction.raise();
            });
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter.raised()).await.expect("woken");
            raising.join().unwrap();
        });
    }
}
