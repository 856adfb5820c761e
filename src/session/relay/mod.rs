//! Relays: sessions without an inbound socket (docs/scaling-out.md).
//!
//! - **Pull** (`pull.rs`): a play of a stream nobody publishes here, in an app with `origins`
//!   (or a stream with a `sources` entry), starts one pull for the whole server, on the
//!   shard of that first player: an outbound RTMP play whose media enters the hub as a
//!   publisher's would, fanned out to every shard's players. Origins are tried in turn,
//!   rounds repeated with a growing backoff while players remain; the pull ends `linger`
//!   after its last player left. An origin the first player's `on_play` reply named (a 3xx
//!   to `rtmp://host/app/name`, or JSON `origin`) is tried first, in any app. How a play
//!   wakes it and waits, its linger and its backoff are the on-demand mechanism it shares
//!   with camera sources (`demand.rs`, `backoff.rs`).
//! - **Push** (`push.rs`): every stream a client publishes, in an app with `push` targets, is
//!   forwarded to each: an outbound RTMP publish fed by a player of the stream that the hub
//!   does not count as a viewer, over the one player writer (the shared chunked media, no
//!   copy per push). Reconnected with backoff while the stream is published.
//! - `outbound.rs`: the connection both drive (resolve, connect, the client state machine
//!   up to the peer's start); `attempt.rs`: one attempt at one peer (listed, opened,
//!   admitted here, closed with its `relay_stop`).
//!
//! A relay session goes through a [`Lifecycle`] like a client, so it is listed by the admin
//! API (`/api/clients`, and `/api/relays` from here) and counted in the hub; but without
//! `relay_hooks` it asks no callback and fires no event of a client's. Its own events are
//! `relay_start` and `relay_stop`, always sent.
//!
//! [`Relays`] is server-wide (shared by the shards): which streams have a pull (one per
//! stream however many shards have players), the relay sessions for the API, the counters
//! for `/metrics`.

mod attempt;
pub(crate) mod backoff;
mod demand;
mod outbound;
mod pull;
mod push;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::ShardContext;
use crate::config::{Config, RelayConfig, RelayUrl};
use crate::hooks::event::Protocol;
use crate::hooks::payload::{RelayStart, RelayStop};
use crate::hooks::{Origin, now_ms};

pub use demand::await_source;
pub use outbound::RelayError;

/// How long a play waits for its stream's pull to start (or its first round of origins to
/// fail) before it is answered as for a stream nobody publishes: HTTP-FLV and RTSP answer
/// `404` then, where RTMP players keep waiting.
pub const SOURCE_WAIT: Duration = Duration::from_secs(12);
/// How often a relay runs its session's timers, and a push looks for its publisher.
const TICK: Duration = Duration::from_millis(250);

/// Which way a relay moves a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Pull,
    Push,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Pull => "pull",
            Direction::Push => "push",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Relays that connected and started streaming, by direction.
    pub pulls_started: AtomicU64,
    pub pushes_started: AtomicU64,
    /// Attempts that failed before streaming (resolve, connect, refusal, no start), and
    /// relays that stopped on an error of their peer, by direction.
    pub pull_failures: AtomicU64,
    pub push_failures: AtomicU64,
}

impl RelayStats {
    fn started(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Pull => &self.pulls_started,
            Direction::Push => &self.pushes_started,
        }
    }

    fn failures(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Pull => &self.pull_failures,
            Direction::Push => &self.push_failures,
        }
    }
}

/// What the admin API shows of a relay session (`/api/relays`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelaySummary {
    pub conn_id: u64,
    pub direction: Direction,
    /// The stream's URL at the peer.
    pub url: String,
    /// `app/name` here.
    pub stream: String,
    pub shard: usize,
    /// Streaming, or still connecting.
    pub streaming: bool,
    pub since_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One relay session as the registry lists it; its task updates the counters.
#[derive(Debug)]
struct RelayRecord {
    conn_id: u64,
    direction: Direction,
    url: String,
    stream: String,
    shard: usize,
    since_ms: u64,
    streaming: AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// A pull as the players of its stream see it, on any shard.
#[derive(Debug, Default)]
struct PullState {
    /// Rounds of origins that all failed: a waiting player stops waiting when it grows.
    failed_rounds: AtomicU64,
    /// The pull task ended; a new player starts another.
    ended: AtomicBool,
    /// Wakes the waiting players, on any shard, when a round failed or the pull ended.
    changed: tokio::sync::Notify,
}

impl PullState {
    fn round_failed(&self) {
        self.failed_rounds.fetch_add(1, Ordering::Release);
        self.changed.notify_waiters();
    }
}

/// The server's relays, shared by every shard.
#[derive(Debug)]
pub struct Relays {
    global: RelayConfig,
    apps: BTreeMap<String, RelayConfig>,
    /// The server's connection ids, shared with the accept loops: a relay session is a
    /// connection like the others in the API and in events.
    conn_ids: Arc<AtomicU64>,
    /// Streams with a pull running, whatever shard runs it.
    pulls: Mutex<HashMap<String, Arc<PullState>>>,
    /// Per stream, which publish its pushes serve: a new publish starts new pushes and the
    /// old ones stop.
    pushes: Mutex<HashMap<String, u64>>,
    next_publish: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Arc<RelayRecord>>>,
    pub stats: RelayStats,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert or remove: a panic cannot leave one half-done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Relays {
    pub fn new(config: &Config, conn_ids: Arc<AtomicU64>) -> Arc<Relays> {
        let apps = config.apps.keys().map(|app| (app.clone(), config.app_relay(app))).collect();
        Arc::new(Relays {
            global: config.relay.clone(),
            apps,
            conn_ids,
            pulls: Mutex::default(),
            pushes: Mutex::default(),
            next_publish: AtomicU64::new(1),
            sessions: Mutex::default(),
            stats: RelayStats::default(),
        })
    }

    fn config(&self, app: &str) -> &RelayConfig {
        self.apps.get(app).unwrap_or(&self.global)
    }

    /// The relay sessions now, by connection id.
    pub fn list(&self) -> Vec<RelaySummary> {
        lock(&self.sessions)
            .values()
            .map(|record| RelaySummary {
                conn_id: record.conn_id,
                direction: record.direction,
                url: record.url.clone(),
                stream: record.stream.clone(),
                shard: record.shard,
                streaming: record.streaming.load(Ordering::Relaxed),
                since_ms: record.since_ms,
                bytes_in: record.bytes_in.load(Ordering::Relaxed),
                bytes_out: record.bytes_out.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Relay sessions streaming now: (pulls, pushes).
    pub fn streaming(&self) -> (usize, usize) {
        let sessions = lock(&self.sessions);
        let count = |direction| {
            sessions.values().filter(|r| r.direction == direction && r.streaming.load(Ordering::Relaxed)).count()
        };
        (count(Direction::Pull), count(Direction::Push))
    }

    /// A play of `key` found nobody publishing it: starts its pull if its app pulls, or its
    /// `on_play` reply `named` an origin (one per stream, server-wide) and waits, at most
    /// [`SOURCE_WAIT`], for the stream to be published or for a round of origins to fail.
    /// Whether it is published now.
    async fn await_pull(self: &Arc<Self>, context: &Rc<ShardContext>, key: &str, named: Option<&RelayUrl>) -> bool {
        let Some((app, name)) = key.split_once('/') else { return false };
        let config = self.config(app);
        // The named origin first, then the configured ones; a pull already running is
        // shared as it is, whatever this reply named.
        let mut sources: Vec<RelayUrl> = named.cloned().into_iter().collect();
        match config.sources.get(key) {
            Some(source) => sources.push(source.clone()),
            None => sources.extend(config.origins.iter().cloned()),
        }
        if sources.is_empty() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + SOURCE_WAIT;
        let watch = context.hub.watch(key);
        let mut pull = self.ensure_pull(context, key, app, name, &sources, config);
        let mut rounds = pull.failed_rounds.load(Ordering::Acquire);
        loop {
            // Enabled before the look: a round failing between the look and the wait wakes it.
            let current = pull.clone();
            let changed = current.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if pull.failed_rounds.load(Ordering::Acquire) > rounds {
                return watch.is_published();
            }
            if pull.ended.load(Ordering::Acquire) {
                // It ended without this player (its viewers had left when it looked, or a
                // client published first): this player starts another, unless published, and
                // within its wait (a pull refused at once must not be restarted in a loop).
                if watch.is_published() {
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                pull = self.ensure_pull(context, key, app, name, &sources, config);
                rounds = pull.failed_rounds.load(Ordering::Acquire);
                continue;
            }
            tokio::select! {
                _ = watch.published() => return true,
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => return watch.is_published(),
            }
        }
    }

    /// The pull of `key`, started on this shard if none runs.
    fn ensure_pull(
        self: &Arc<Self>,
        context: &Rc<ShardContext>,
        key: &str,
        app: &str,
        name: &str,
        sources: &[RelayUrl],
        config: &RelayConfig,
    ) -> Arc<PullState> {
        let mut pulls = lock(&self.pulls);
        if let Some(state) = pulls.get(key) {
            return state.clone();
        }
        let state = Arc::new(PullState::default());
        pulls.insert(key.to_owned(), state.clone());
        let pull = pull::Pull {
            key: key.to_owned(),
            app: app.to_owned(),
            name: name.to_owned(),
            sources: sources.to_vec(),
            linger: config.linger,
            hooks: config.relay_hooks,
            state: state.clone(),
            watch: context.hub.watch(key),
        };
        tokio::task::spawn_local(pull::run(context.clone(), self.clone(), pull));
        state
    }

    fn pull_ended(&self, key: &str, state: &Arc<PullState>) {
        let mut pulls = lock(&self.pulls);
        state.ended.store(true, Ordering::Release);
        if pulls.get(key).is_some_and(|current| Arc::ptr_eq(current, state)) {
            pulls.remove(key);
        }
        drop(pulls);
        state.changed.notify_waiters();
    }

    /// A client started publishing `key` on this shard: starts a push to each of its app's
    /// targets, and ends the pushes of any earlier publish of it.
    pub fn publish_started(self: &Arc<Self>, context: &Rc<ShardContext>, key: &str) {
        let Some((app, name)) = key.split_once('/') else { return };
        let config = self.config(app);
        if config.push.is_empty() {
            return;
        }
        let publish = self.next_publish.fetch_add(1, Ordering::Relaxed);
        lock(&self.pushes).insert(key.to_owned(), publish);
        for url in &config.push {
            let push = push::Push {
                key: key.to_owned(),
                app: app.to_owned(),
                name: name.to_owned(),
                url: url.clone(),
                hooks: config.relay_hooks,
                publish,
            };
            tokio::task::spawn_local(push::run(context.clone(), self.clone(), push));
        }
    }

    /// Whether the pushes of publish `publish` of `key` still serve it.
    fn push_current(&self, key: &str, publish: u64) -> bool {
        lock(&self.pushes).get(key) == Some(&publish)
    }

    fn push_ended(&self, key: &str, publish: u64) {
        let mut pushes = lock(&self.pushes);
        if pushes.get(key) == Some(&publish) {
            pushes.remove(key);
        }
    }

    fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Lists a relay session until the returned guard is dropped.
    fn register(self: &Arc<Self>, conn_id: u64, direction: Direction, url: &str, stream: &str, shard: usize) -> Listed {
        let record = Arc::new(RelayRecord {
            conn_id,
            direction,
            url: url.to_owned(),
            stream: stream.to_owned(),
            shard,
            since_ms: now_ms(),
            streaming: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        });
        lock(&self.sessions).insert(conn_id, record.clone());
        Listed { relays: self.clone(), record }
    }
}

/// A relay session listed in [`Relays`], and what its events say of it.
struct Listed {
    relays: Arc<Relays>,
    record: Arc<RelayRecord>,
}

impl Listed {
    fn origin(&self, addr: std::net::SocketAddr) -> Origin {
        Origin { conn_id: self.record.conn_id, protocol: Protocol::Rtmp, addr, stream_key: self.record.stream.clone() }
    }

    /// The relay started streaming: counted, listed so, and told (relay_start).
    fn started(&self, context: &ShardContext, addr: std::net::SocketAddr) {
        let record = &self.record;
        record.streaming.store(true, Ordering::Relaxed);
        self.relays.stats.started(record.direction).fetch_add(1, Ordering::Relaxed);
        tracing::info!(conn_id = record.conn_id, direction = record.direction.as_str(), url = %record.url, stream = %record.stream, "relay start");
        context
            .hooks
            .emit(&self.origin(addr), || RelayStart { direction: record.direction.as_str(), url: record.url.clone() });
    }

    /// The relay ended after it started: told (relay_stop) with its reason and bytes.
    fn stopped(&self, context: &ShardContext, addr: std::net::SocketAddr, reason: &str, since: Instant) {
        let record = &self.record;
        record.streaming.store(false, Ordering::Relaxed);
        let (bytes_in, bytes_out) = (record.bytes_in.load(Ordering::Relaxed), record.bytes_out.load(Ordering::Relaxed));
        tracing::info!(conn_id = record.conn_id, direction = record.direction.as_str(), url = %record.url, stream = %record.stream, %reason, "relay stop");
        let duration_sec = (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        context.hooks.emit(&self.origin(addr), || RelayStop {
            direction: record.direction.as_str(),
            url: record.url.clone(),
            reason: reason.to_owned(),
            bytes_in,
            bytes_out,
            duration_sec,
        });
    }

    /// An attempt that failed before streaming, or a relay its peer ended with an error.
    fn failed(&self, error: &RelayError) {
        let record = &self.record;
        self.relays.stats.failures(record.direction).fetch_add(1, Ordering::Relaxed);
        tracing::warn!(conn_id = record.conn_id, direction = record.direction.as_str(), url = %record.url, stream = %record.stream, %error, "relay failed");
    }

    fn count_in(&self, bytes: usize) {
        self.record.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn set_out(&self, bytes: u64) {
        self.record.bytes_out.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock(&self.relays.sessions).remove(&self.record.conn_id);
    }
}

/// The timer a streaming relay runs its session's timers by, every [`TICK`]: one for the relay's
/// life, as a sleep made anew beside each read would never fire while media arrives faster.
fn ticker() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
