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
//!
//! A publisher that dropped may leave its stream *parked* (`republish_grace`): the stream stays
//! live with its players while the session layer holds the old [`PublisherHandle`], and the
//! next admitted publisher, on any shard, adopts it ([`ShardHub::adopt`]) without a stop and
//! start: the shards with players are sent [`RelayItem::Resume`] instead, and the old
//! publisher's shard hands its role over without telling its players anything.
//!
//! A task on any shard can await a key's publish, or its viewers' coming and going, on a
//! [`Watch`] (`watch.rs`) instead of polling the registry.

pub mod flush_queue;
pub mod gop;
pub mod packet;
pub mod player;
pub mod watch;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

pub use flush_queue::FlushQueue;
pub use gop::{GopCache, GopPush};
pub use packet::{Packet, PacketError, PacketKind, WireForm};
pub use player::{DirectWrite, Offer, Player, PlayerItem, WriteCut};
pub use watch::Watch;

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
    /// A new publisher adopted the parked stream: its players stay and are told nothing, the
    /// cache restarts with the new publisher's (a shard whose copy was not live yet takes it
    /// as a [`RelayItem::Start`]). To the shard that parked it: hand the publisher role over.
    Resume,
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
    /// Set while the publisher's connection is gone and its stream waits for a new one
    /// (`republish_grace`): what the adopter needs of the old publish.
    parked: Option<Parked>,
}

/// What a new publisher adopting a parked stream learns of the publish it continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    /// The session whose connection dropped.
    pub conn_id: u64,
    /// The last timestamp the stream carried: the adopter's timestamps follow it.
    pub last_timestamp: u32,
    /// When the stream was parked.
    pub at: std::time::Instant,
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
    /// Who awaits a key's publish or a change of its demand ([`watch`]).
    watches: watch::Watches,
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
        let hub = Hub {
            streams: Mutex::new(HashMap::new()),
            senders,
            relay_bytes,
            settings,
            stats: HubStats::default(),
            watches: watch::Watches::default(),
        };
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

    /// Makes `shard` the publisher of `key`.
    fn claim_publisher(&self, key: &Arc<str>, shard: usize) -> Result<(StreamChange, Arc<Eviction>), HubError> {
        let mut streams = self.lock();
        let created = !streams.contains_key(key);
        let entry = streams.entry(key.clone()).or_default();
        if entry.publisher.is_some() {
            return Err(HubError::AlreadyPublishing(key.to_string()));
        }
        entry.publisher = Some(shard);
        let eviction = Arc::new(Eviction::default());
        entry.eviction = Some(eviction.clone());
        let change = StreamChange { created, deleted: false, players: entry.players, live: true };
        drop(streams);
        self.watches.published(key);
        Ok((change, eviction))
    }

    /// The shards besides `shard` that hold `key` (players waiting or watching).
    fn other_shards(&self, key: &str, shard: usize) -> Vec<usize> {
        let streams = self.lock();
        streams.get(key).map(|entry| entry.shards.iter().copied().filter(|&s| s != shard).collect()).unwrap_or_default()
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

    /// Makes `shard` the publisher of the parked stream `key`, and tells the old publisher
    /// (its eviction raised); `None` when `key` is not parked. Returns the other shards that
    /// hold the stream, as [`Self::claim_publisher`] does, and what was parked.
    fn claim_parked(&self, key: &str, shard: usize) -> Option<(Vec<usize>, StreamChange, Arc<Eviction>, Parked)> {
        let mut streams = self.lock();
        let entry = streams.get_mut(key)?;
        let parked = entry.parked.take()?;
        if let Some(old) = entry.eviction.take() {
            old.raise();
        }
        entry.publisher = Some(shard);
        let eviction = Arc::new(Eviction::default());
        entry.eviction = Some(eviction.clone());
        let others = entry.shards.iter().copied().filter(|&s| s != shard).collect();
        let change = StreamChange { created: false, deleted: false, players: entry.players, live: true };
        drop(streams);
        self.watches.published(key);
        Some((others, change, eviction, parked))
    }

    /// Whether the publisher holding `eviction` still owns `key`'s entry: not once another
    /// adopted the stream.
    fn owns(streams: &HashMap<Arc<str>, Entry>, key: &str, eviction: &Arc<Eviction>) -> bool {
        streams.get(key).and_then(|entry| entry.eviction.as_ref()).is_some_and(|own| Arc::ptr_eq(own, eviction))
    }

    /// Releases `key`'s publisher if it is still the one holding `eviction`; an adopted
    /// stream belongs to its new publisher and is left alone.
    fn release_publisher(&self, key: &str, eviction: &Arc<Eviction>) -> StreamChange {
        let mut streams = self.lock();
        if !Hub::owns(&streams, key, eviction) {
            return StreamChange { live: true, ..StreamChange::default() };
        }
        let Some(entry) = streams.get_mut(key) else {
            return StreamChange::default();
        };
        entry.publisher = None;
        entry.eviction = None;
        entry.parked = None;
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
        let before = entry.players;
        if joined {
            entry.players += 1;
        } else {
            entry.players = entry.players.saturating_sub(1);
        }
        let change = StreamChange { created, deleted: false, players: entry.players, live: entry.publisher.is_some() };
        drop(streams);
        if (before == 0) != (change.players == 0) {
            self.watches.demand_changed(key);
        }
        change
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
    /// Counts the local publishers this copy has had: a handle acts on the stream only while
    /// it is the current one (a parked stream adopted here or elsewhere outlives its handle).
    publisher_epoch: Cell<u64>,
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
        if !self.is_live() {
            // A held publish's cache is for after its go-live, not for players now.
            return (Vec::new(), false);
        }
        let cache = self.cache.borrow();
        (cache.snapshot().cloned().collect(), cache.has_video())
    }

    /// The stream's latest video and audio sequence headers, as cached here.
    pub fn sequence_headers(&self) -> (Option<Rc<Packet>>, Option<Rc<Packet>>) {
        if !self.is_live() {
            return (None, None);
        }
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
            publisher_epoch: Cell::new(0),
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
        let (handle, change) = self.publish_held(key)?;
        handle.go_live();
        Ok((handle, change))
    }

    /// Takes `key` for a publisher from this shard without making it live yet: a second
    /// publisher is refused (or takes it over) as usual, but what this one sends is only
    /// cached (metadata, sequence headers and the current GOP, within `gop_cache_bytes`)
    /// until [`PublisherHandle::go_live`]. Players of the stream, here or on other shards,
    /// see nothing of it meanwhile: no "published" notice, no packet, no cached start.
    pub fn publish_held(self: &Rc<Self>, key: &str) -> Result<(PublisherHandle, StreamChange), HubError> {
        let key_arc: Arc<str> = Arc::from(key);
        let (change, eviction) = self.hub.claim_publisher(&key_arc, self.shard)?;
        let stream = self.local_stream(key);
        stream.cache.borrow_mut().clear();
        Ok((self.take_publisher_role(stream, eviction), change))
    }

    /// Adopts `key` from its parked publisher (on any shard) for a new one on this shard, if
    /// it is parked: players everywhere stay attached and are told nothing, the cache restarts
    /// with the new publisher's packets. Returns the handle, how the registry changed and
    /// what was parked. An adopted stream is live at once: its players are already watching.
    pub fn adopt(self: &Rc<Self>, key: &str) -> Option<(PublisherHandle, StreamChange, Parked)> {
        let (others, change, eviction, parked) = self.hub.claim_parked(key, self.shard)?;
        let stream = self.local_stream(key);
        // Parked here, the stream keeps its local publisher role, under a new epoch.
        stream.relay.borrow_mut().clear();
        self.resume_stream(&stream);
        for shard in others {
            stream.relay.borrow_mut().push(RelayTarget { shard, lagging: false });
            self.send_ordered(shard, ShardMessage::Relay { stream: stream.key.clone(), item: RelayItem::Resume });
        }
        Some((self.take_publisher_role(stream, eviction), change, parked))
    }

    /// Makes this shard's copy of `stream` the one its packets come from, under a new epoch
    /// (a handle acts on the stream only while its epoch is the stream's).
    fn take_publisher_role(self: &Rc<Self>, stream: Rc<LocalStream>, eviction: Arc<Eviction>) -> PublisherHandle {
        stream.local_publisher.set(true);
        let epoch = stream.publisher_epoch.get() + 1;
        stream.publisher_epoch.set(epoch);
        PublisherHandle { shard_hub: self.clone(), stream, eviction, epoch, released: false }
    }

    /// A stream continues from a new publisher: a live copy keeps its players untold and
    /// drops the old publisher's cache; one not live yet starts as for a new publisher.
    fn resume_stream(&self, stream: &LocalStream) {
        if stream.is_live() {
            stream.cache.borrow_mut().clear();
        } else {
            self.start_stream(stream, &[], true);
        }
    }

    /// This shard's copy of `stream` stops being its publisher's, silently: a new publisher
    /// (here or on another shard) adopted it. Its players keep it.
    fn hand_over(&self, stream: &LocalStream) {
        stream.local_publisher.set(false);
        stream.publisher_epoch.set(stream.publisher_epoch.get() + 1);
        stream.relay.borrow_mut().clear();
    }

    /// Makes a locally published stream live: its players are told a publisher arrived and
    /// get what it cached meanwhile; every other shard with players is sent the same.
    fn go_live(&self, stream: &LocalStream) {
        stream.live.set(true);
        let snapshot: Vec<Rc<Packet>> = stream.cache.borrow().snapshot().cloned().collect();
        let has_video = stream.cache.borrow().has_video();
        for packet in &snapshot {
            (self.hub.settings.prepare)(packet);
        }
        for player in stream.players.borrow().iter() {
            player.notice(PlayerItem::Published);
            for packet in &snapshot {
                player.offer(packet, has_video, &self.hub.stats.player_queue_drops);
            }
        }
        for shard in self.hub.other_shards(&stream.key, self.shard) {
            stream.relay.borrow_mut().push(RelayTarget { shard, lagging: false });
            self.send_ordered(shard, ShardMessage::Relay { stream: stream.key.clone(), item: RelayItem::Start });
            if !snapshot.is_empty() {
                let cached = snapshot.iter().map(|packet| (**packet).clone()).collect();
                let item = RelayItem::Attach(cached);
                self.send_ordered(shard, ShardMessage::Relay { stream: stream.key.clone(), item });
            }
        }
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
        // A held publish that never went live told its players nothing to take back.
        let was_live = stream.live.replace(false);
        stream.cache.borrow_mut().clear();
        for player in stream.players.borrow().iter().filter(|_| was_live) {
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
        if stream.is_live() {
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
        let live = stream.is_live();
        if live && (!stream.players.borrow().is_empty() || !stream.relay.borrow().is_empty()) {
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
        if !live {
            // Held: cached for the go-live, shown to nobody yet.
            return;
        }
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
                // A held stream is sent to every shard holding it when it goes live.
                if !local.local_publisher.get()
                    || !local.is_live()
                    || local.relay.borrow().iter().any(|t| t.shard == shard)
                {
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
                if let RelayItem::Resume = item
                    && local.local_publisher.get()
                {
                    // Parked here and adopted elsewhere: the new publisher's packets follow.
                    self.hand_over(&local);
                    local.cache.borrow_mut().clear();
                    self.release_if_unused(&local);
                    return;
                }
                if local.local_publisher.get() {
                    return;
                }
                match item {
                    RelayItem::Start => self.start_stream(&local, &[], true),
                    RelayItem::Resume => self.resume_stream(&local),
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
    /// Raised when a new publisher takes the stream over, or adopts it once parked.
    eviction: Arc<Eviction>,
    /// The stream's `publisher_epoch` this handle published under.
    epoch: u64,
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

    /// Makes a publish taken with [`ShardHub::publish_held`] live: its players get what it
    /// sent meanwhile, from its sequence headers and the current GOP's keyframe on.
    pub fn go_live(&self) {
        if !self.stream.is_live() {
            self.shard_hub.go_live(&self.stream);
        }
    }

    /// Raised when a new publisher takes the stream over (`takeover`), or adopts it once
    /// parked.
    pub fn eviction(&self) -> &Arc<Eviction> {
        &self.eviction
    }

    /// Parks the stream: its publisher's connection is gone, the stream stays live for the
    /// next publisher to [`ShardHub::adopt`]. False when a new publisher already took it over
    /// (its eviction is raised): then it ends as taken over.
    pub fn park(&self, conn_id: u64, last_timestamp: u32, at: std::time::Instant) -> bool {
        let mut streams = self.shard_hub.hub.lock();
        if self.eviction.is_raised() || !Hub::owns(&streams, &self.stream.key, &self.eviction) {
            return false;
        }
        let Some(entry) = streams.get_mut(&*self.stream.key) else { return false };
        entry.parked = Some(Parked { conn_id, last_timestamp, at });
        true
    }

    /// Ends the parked state so that no publisher can adopt the stream any more: it is
    /// about to end. False when one already did.
    pub fn unpark(&self) -> bool {
        let mut streams = self.shard_hub.hub.lock();
        if !Hub::owns(&streams, &self.stream.key, &self.eviction) {
            return false;
        }
        if let Some(entry) = streams.get_mut(&*self.stream.key) {
            entry.parked = None;
        }
        true
    }

    /// Whether another publisher adopted the stream this handle published.
    pub fn is_adopted(&self) -> bool {
        !Hub::owns(&self.shard_hub.hub.lock(), &self.stream.key, &self.eviction)
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
        let adopted = self.is_adopted();
        if self.stream.publisher_epoch.get() == self.epoch {
            if adopted {
                // Adopted on another shard, whose Resume has not arrived yet.
                shard_hub.hand_over(&self.stream);
            } else {
                self.stream.local_publisher.set(false);
                shard_hub.stop_stream(&self.stream);
                let targets = std::mem::take(&mut *self.stream.relay.borrow_mut());
                for target in targets {
                    shard_hub.send_ordered(
                        target.shard,
                        ShardMessage::Relay { stream: self.stream.key.clone(), item: RelayItem::Stop },
                    );
                }
            }
        }
        let mut change = shard_hub.hub.release_publisher(&self.stream.key, &self.eviction);
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

    /// What a player was handed: `P` per packet (with its timestamp), `U` and `S` for the
    /// publisher's end and start.
    fn drained(player: &Player) -> Vec<String> {
        let mut items = Vec::new();
        player.take(&mut items);
        items
            .iter()
            .map(|item| match item {
                PlayerItem::Packet(packet) => format!("P{}", packet.timestamp),
                PlayerItem::Unpublished => "U".to_owned(),
                PlayerItem::Published => "S".to_owned(),
            })
            .collect()
    }

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn keyframe(publisher: &PublisherHandle, timestamp: u32) {
        publisher.push(PacketKind::Video, timestamp, Bytes::from_static(&[0x17, 1, 0, 0, 0, 9])).unwrap();
    }

    fn deliver(shard: &ShardHub, inbox: &mut mpsc::Receiver<ShardMessage>) {
        while let Ok(message) = inbox.try_recv() {
            shard.handle_message(message);
        }
    }

    #[test]
    fn a_parked_stream_adopted_on_its_shard_keeps_its_players_untold() {
        let (hub, _receivers) = Hub::new(1, HubSettings::default());
        let shard = ShardHub::new(0, hub.clone());
        let (player, _) = shard.play("live/x", 1);
        let (old, _) = shard.publish("live/x").unwrap();
        keyframe(&old, 40);
        assert_eq!(drained(player.player()), ["S", "P40"]);
        let at = std::time::Instant::now();
        assert!(shard.adopt("live/x").is_none(), "not parked yet");
        assert!(old.park(2, 40, at));
        assert!(shard.publish("live/x").is_err(), "a parked stream is still held");
        let (new, change, parked) = shard.adopt("live/x").expect("adopted");
        assert_eq!(parked, Parked { conn_id: 2, last_timestamp: 40, at });
        assert_eq!((change.created, change.live, change.players), (false, true, 1));
        assert!(old.eviction().is_raised() && old.is_adopted() && !new.is_adopted());
        // The old handle lets go without a word to the players, and the new one streams.
        assert_eq!(old.unpublish(), StreamChange { live: true, ..StreamChange::default() });
        keyframe(&new, 41);
        assert_eq!(drained(player.player()), ["P41"]);
        let (cached, _) = shard.stream("live/x").unwrap().cached_start();
        assert_eq!(cached.iter().map(|p| p.timestamp).collect::<Vec<_>>(), [41], "the new publisher's GOP only");
        assert!(shard.adopt("live/x").is_none(), "adopted once");
        new.unpublish();
        assert_eq!(drained(player.player()), ["U"]);
    }

    #[test]
    fn a_parked_stream_adopted_on_another_shard_is_handed_over_silently_in_either_order() {
        for resume_first in [true, false] {
            let (hub, mut receivers) = Hub::new(3, HubSettings::default());
            let shards: Vec<_> = (0..3).map(|n| ShardHub::new(n, hub.clone())).collect();
            let (here, elsewhere) = (shards[0].play("live/x", 1).0, shards[2].play("live/x", 2).0);
            let (old, _) = shards[0].publish("live/x").unwrap();
            keyframe(&old, 40);
            deliver(&shards[2], &mut receivers[2]);
            assert_eq!((drained(here.player()), drained(elsewhere.player())), (s(&["S", "P40"]), s(&["S", "P40"])));
            assert!(old.park(3, 40, std::time::Instant::now()));
            let (new, _, _) = shards[1].adopt("live/x").expect("adopted across shards");
            keyframe(&new, 41);
            if resume_first {
                deliver(&shards[0], &mut receivers[0]);
                old.unpublish();
            } else {
                old.unpublish();
                deliver(&shards[0], &mut receivers[0]);
            }
            deliver(&shards[2], &mut receivers[2]);
            assert_eq!(drained(here.player()), ["P41"], "resume first: {resume_first}");
            assert_eq!(drained(elsewhere.player()), ["P41"]);
            assert_eq!(hub.streams()[0].publisher_shard, Some(1));
            // The new publisher's end reaches every player as any end does.
            new.unpublish();
            deliver(&shards[0], &mut receivers[0]);
            deliver(&shards[2], &mut receivers[2]);
            assert_eq!((drained(here.player()), drained(elsewhere.player())), (s(&["U"]), s(&["U"])));
        }
    }

    #[test]
    fn a_parked_stream_nobody_adopts_ends_as_any_publish_does() {
        let (hub, _receivers) = Hub::new(1, HubSettings::default());
        let shard = ShardHub::new(0, hub.clone());
        let (publisher, _) = shard.publish("live/x").unwrap();
        assert!(publisher.park(1, 0, std::time::Instant::now()));
        assert!(publisher.unpublish().deleted, "no players: the stream leaves the registry");
        assert!(shard.adopt("live/x").is_none());
        let (publisher, _) = shard.publish("live/x").unwrap();
        // Unparked on its way out, it can no longer be adopted.
        assert!(publisher.park(1, 0, std::time::Instant::now()));
        assert!(publisher.unpark());
        assert!(shard.adopt("live/x").is_none());
        // A stream already taken over is not parked: it ends as taken over.
        let (hub, _receivers) = Hub::new(1, HubSettings::default());
        let shard = ShardHub::new(0, hub);
        let (publisher, _) = shard.publish("live/y").unwrap();
        assert!(shard.evict_publisher("live/y"));
        assert!(!publisher.park(1, 0, std::time::Instant::now()));
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

    /// What a player was queued, as `H` (sequence header), `K` (keyframe), `F` (other
    /// frame), `P` (published), `U` (unpublished).
    fn queued(player: &PlayerHandle) -> String {
        let mut items = Vec::new();
        player.player().take(&mut items);
        items
            .iter()
            .map(|item| match item {
                PlayerItem::Packet(p) if p.sequence_header => 'H',
                PlayerItem::Packet(p) if p.keyframe => 'K',
                PlayerItem::Packet(_) => 'F',
                PlayerItem::Published => 'P',
                PlayerItem::Unpublished => 'U',
            })
            .collect()
    }

    #[test]
    fn a_held_publish_shows_no_player_anything_until_it_goes_live_then_its_headers_and_gop() {
        let (hub, mut receivers) = Hub::new(3, HubSettings::default());
        let shards: Vec<Rc<ShardHub>> = (0..3).map(|n| ShardHub::new(n, hub.clone())).collect();
        let (waiting, _) = shards[0].play("live/x", 1);
        let (remote, _) = shards[1].play("live/x", 2);
        let (publisher, change) = shards[0].publish_held("live/x").unwrap();
        assert!(change.live && shards[2].is_published("live/x"), "the key is taken");
        assert!(shards[1].publish("live/x").is_err());
        let header =
            Rc::new(Packet::new(PacketKind::Video, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]), 4096).unwrap());
        publisher.push(PacketKind::Video, 0, header.payload.clone()).unwrap();
        for (keyframe, size) in [(true, 9000), (false, 3000), (true, 9000), (false, 3000)] {
            let frame = packet::test_video_frame(keyframe, size);
            publisher.push(PacketKind::Video, 40, frame.payload.clone()).unwrap();
        }
        // A player arriving meanwhile on a third shard subscribes; the held stream ignores it.
        let (late, _) = shards[2].play("live/x", 3);
        deliver(&shards[0], &mut receivers[0]);
        for shard in 1..3 {
            deliver(&shards[shard], &mut receivers[shard]);
        }
        assert_eq!((queued(&waiting), queued(&remote), queued(&late)), (String::new(), String::new(), String::new()));
        let newcomer = shards[0].stream("live/x").unwrap();
        let (video_header, audio_header) = newcomer.sequence_headers();
        assert!(newcomer.cached_start().0.is_empty() && video_header.is_none() && audio_header.is_none());

        publisher.go_live();
        for shard in 1..3 {
            deliver(&shards[shard], &mut receivers[shard]);
        }
        // The header, then the current GOP from its keyframe: the older GOP is not replayed.
        for player in [&waiting, &remote, &late] {
            assert_eq!(queued(player), "PHKF", "player {}", player.player().queued());
        }
        publisher.push(PacketKind::Video, 80, packet::test_video_frame(false, 100).payload.clone()).unwrap();
        deliver(&shards[1], &mut receivers[1]);
        assert_eq!((queued(&waiting), queued(&remote)), ("F".into(), "F".into()), "and live from then on");
    }

    #[test]
    fn a_held_publish_that_ends_takes_back_nothing_it_never_said() {
        let (hub, _receivers) = Hub::new(1, HubSettings::default());
        let shard = ShardHub::new(0, hub.clone());
        let (waiting, _) = shard.play("live/x", 1);
        let (publisher, _) = shard.publish_held("live/x").unwrap();
        publisher.push(PacketKind::Video, 0, packet::test_video_frame(true, 100).payload.clone()).unwrap();
        let change = publisher.unpublish();
        assert!(!change.live && !change.deleted, "its player still waits");
        assert_eq!(queued(&waiting), "", "no published, no unpublished, no frame");
        let (publisher, _) = shard.publish("live/x").unwrap();
        publisher.push(PacketKind::Video, 0, packet::test_video_frame(true, 100).payload.clone()).unwrap();
        assert_eq!(queued(&waiting), "PK", "a plain publish is live at once");
    }
}
