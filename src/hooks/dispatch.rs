//! Event sinks: every event to each webhook, NATS, script and stdio sink that wants it, with
//! retries, per-stream order and a bounded queue.
//!
//! Shards hand events to one dispatcher thread over a crossbeam channel bounded in events and
//! in bytes (never waiting: when full, the oldest event in it is dropped and counted). The
//! sinks' queue is bounded the same way, retries waiting included in its bytes. Drops, there
//! and from the sinks' queue, are logged in summaries of at most one line a second
//! ([`DropLog`]). The dispatcher keeps, per sink, a FIFO per stream and lets at most one
//! delivery of a stream be in flight or waiting for a retry, which is what keeps a stream's
//! events in order within a sink while other streams proceed. Ready deliveries go to blocking
//! worker threads, each sink up to its equal share of `hook_concurrency`, so a receiver that
//! hangs holds only its own share; workers never sleep, retries wait in the dispatcher's
//! timer heap instead. Shutdown has a deadline: what is still undone then is abandoned and
//! reported, not waited for.
//!
//! A webhook or NATS sink with an outbox ([`super::outbox`]) takes its events from there instead: each
//! is written before it is queued, is never dropped for room (its memory share full, it waits on
//! disk), is retried with backoff for as long as its receiver is down, and is acknowledged on
//! disk once done with. Its deliveries are outside `hook_queue`'s drop-oldest.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use tracing::{error, info, warn};

use super::clock::now_ms;
use super::drop_log::{DropLog, DropReport};
use super::event::{Event, EventType};
use super::nats::NatsTarget;
use super::outbox::{self, Admission, OutboxRegistry, OutboxSettings, Outboxes, ReplayError, ReplayOutcome, Room};
use super::webhook::{self, Attempt, WebhookTarget};
use super::{EventSink, script, stdio};
use crate::config::{Config, EventFilter, NatsConfig, Secret, StdioFormat, WebhookConfig};

/// Retries never wait longer than this, whatever `Retry-After` asks.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// Counters of one sink, for metrics, the API and tests.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    /// Deliveries that failed for good (after their retries).
    pub failed: AtomicU64,
    /// Attempts that failed and were scheduled again.
    pub retried: AtomicU64,
    /// Deliveries dropped unsent: queue full, or the sink was disabled by a 410.
    pub dropped: AtomicU64,
    pub in_flight: AtomicU64,
    pub queued: AtomicU64,
    /// Bytes its waiting deliveries hold (queued, or waiting for a retry), as
    /// `hook_queue_bytes` counts them.
    pub queued_bytes: AtomicU64,
    /// Set by a 410 Gone: the sink receives nothing more until it is changed.
    pub disabled: AtomicBool,
}

#[derive(Debug)]
enum SinkKind {
    Webhook { target: WebhookTarget, agent: ureq::Agent, retries: u32 },
    Nats { target: NatsTarget, retries: u32 },
    Script { path: PathBuf, timeout: Duration },
    Stdio { format: StdioFormat },
}

/// Where a sink was defined: the config file (and flags) or the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOrigin {
    Config,
    Api,
}

#[derive(Debug)]
pub struct Sink {
    /// Stable for the sink's life, across changes; the admin API names webhooks by it.
    pub id: u64,
    pub origin: SinkOrigin,
    /// How logs name the sink: its URL with credentials masked (`redact::url`), or its path.
    pub label: String,
    filter: EventFilter,
    /// An app's own sink (`[[apps.<app>.webhook]]`, `[[apps.<app>.script]]`) receives only
    /// that app's events; `None`: every event it filters in.
    pub app: Option<String>,
    kind: SinkKind,
    /// The webhook's settings as given (for the admin API), `None` for scripts and stdio.
    pub webhook: Option<WebhookConfig>,
    /// Names the sink's outbox across restarts (`outbox::key`): webhooks' and NATS sinks';
    /// `None` for scripts and stdio.
    pub outbox_key: Option<String>,
    /// Shared by the sink's versions: a change (PATCH, rotation) keeps its counters, and
    /// deliveries queued before the change are accounted where they were counted.
    pub stats: Arc<SinkStats>,
}

impl Sink {
    /// A webhook sink. `previous_secret` keeps signing beside the new one during a rotation.
    pub fn webhook(
        id: u64,
        origin: SinkOrigin,
        config: WebhookConfig,
        previous_secret: Option<&Secret>,
        agent: ureq::Agent,
    ) -> Sink {
        Sink {
            id,
            origin,
            label: crate::redact::url(&config.url),
            filter: config.events.clone(),
            app: None,
            kind: SinkKind::Webhook {
                target: WebhookTarget::new(&config, previous_secret),
                agent,
                retries: config.retries,
            },
            outbox_key: Some(outbox::key::of_webhook(&config)),
            webhook: Some(config),
            stats: Arc::default(),
        }
    }

    /// A NATS JetStream sink of `app` (`None`: a global one); starts its connection thread.
    pub fn nats(id: u64, config: &NatsConfig, app: Option<&str>, settings: &Config) -> Sink {
        let label = config.redacted_url();
        let target = NatsTarget::start(config, label.clone(), settings.hook_timeout, settings.tls_ca_file.as_deref());
        Sink {
            id,
            origin: SinkOrigin::Config,
            label,
            filter: config.events.clone(),
            app: app.map(str::to_owned),
            kind: SinkKind::Nats { target, retries: config.retries },
            webhook: None,
            outbox_key: Some(outbox::key::of_nats_in(app, config)),
            stats: Arc::default(),
        }
    }

    /// What kind of sink this is, as `/metrics` labels it.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Nats { .. } => "nats",
            SinkKind::Script { .. } => "script",
            SinkKind::Stdio { .. } => "stdio",
        }
    }

    /// Whether `event` is one this sink receives: of a type it filters in and, for an app's
    /// sink, of its app.
    fn takes(&self, event: &Event) -> bool {
        self.filter.matches(event.event_type) && self.app.as_deref().is_none_or(|app| event.app() == Some(app))
    }

    fn retries(&self) -> u32 {
        match &self.kind {
            SinkKind::Webhook { retries, .. } | SinkKind::Nats { retries, .. } => *retries,
            _ => 0,
        }
    }
}

/// The sinks of a config: the global ones, then each app's (`[apps]`, in name order). Their
/// ids are 1, 2, 3...; API-made sinks are numbered after them.
pub fn sinks_from_config(config: &Config, agent: &ureq::Agent) -> Vec<Arc<Sink>> {
    let mut sinks = Vec::new();
    let mut id = 0;
    let mut next_id = || {
        id += 1;
        id
    };
    let script_sink = |id: u64, script: &crate::config::ScriptConfig, app: Option<&String>| Sink {
        id,
        origin: SinkOrigin::Config,
        label: script.path.display().to_string(),
        filter: script.event.clone(),
        app: app.cloned(),
        kind: SinkKind::Script { path: script.path.clone(), timeout: config.hook_timeout },
        webhook: None,
        outbox_key: None,
        stats: Arc::default(),
    };
    for hook in &config.webhooks {
        sinks.push(Arc::new(Sink::webhook(next_id(), SinkOrigin::Config, hook.clone(), None, agent.clone())));
    }
    for script in &config.scripts {
        sinks.push(Arc::new(script_sink(next_id(), script, None)));
    }
    for nats in &config.nats {
        sinks.push(Arc::new(Sink::nats(next_id(), nats, None, config)));
    }
    if let Some(format) = config.stdio {
        sinks.push(Arc::new(Sink {
            id: next_id(),
            origin: SinkOrigin::Config,
            label: "stdio".into(),
            filter: EventFilter::All,
            app: None,
            kind: SinkKind::Stdio { format },
            webhook: None,
            outbox_key: None,
            stats: Arc::default(),
        }));
    }
    for (app, own) in &config.apps {
        for hook in &own.webhooks {
            let mut sink = Sink::webhook(next_id(), SinkOrigin::Config, hook.clone(), None, agent.clone());
            sink.outbox_key = Some(outbox::key::of_webhook_in(Some(app), hook));
            sink.app = Some(app.clone());
            sinks.push(Arc::new(sink));
        }
        for script in &own.scripts {
            sinks.push(Arc::new(script_sink(next_id(), script, Some(app))));
        }
        for nats in &own.nats {
            sinks.push(Arc::new(Sink::nats(next_id(), nats, Some(app), config)));
        }
    }
    sinks
}

/// The current sinks and which event types any of them wants, swapped whole on a change.
struct SinkSet {
    sinks: Vec<Arc<Sink>>,
    /// By `EventType::ALL` index.
    wanted: Vec<bool>,
}

impl SinkSet {
    fn new(sinks: Vec<Arc<Sink>>) -> Arc<SinkSet> {
        let wanted = EventType::ALL
            .iter()
            .map(|t| sinks.iter().any(|s| s.filter.matches(*t) && !s.stats.disabled.load(Ordering::Relaxed)))
            .collect();
        Arc::new(SinkSet { sinks, wanted })
    }
}

/// Counters of the dispatcher as a whole.
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Events dropped before reaching the dispatcher (its inbound channel was full).
    pub dropped_inbound: AtomicU64,
    /// Bytes of the events waiting in the inbound channel ([`Event::weight`]).
    pub inbound_bytes: AtomicU64,
}

/// How much the dispatcher may hold and run at once (`hook_concurrency`, `hook_queue`,
/// `hook_queue_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct DispatchLimits {
    /// Deliveries in flight, shared equally by the sinks (see [`Core::share`]).
    pub concurrency: usize,
    /// Queued deliveries, counted; also the inbound channel's length.
    pub queue: usize,
    /// Bytes of queued deliveries (retries waiting included), and separately of the events in
    /// the inbound channel.
    pub queue_bytes: usize,
}

impl DispatchLimits {
    pub fn from_config(config: &Config) -> DispatchLimits {
        DispatchLimits {
            concurrency: config.hook_concurrency,
            queue: config.hook_queue,
            queue_bytes: config.hook_queue_bytes,
        }
    }
}

impl Default for DispatchLimits {
    fn default() -> DispatchLimits {
        DispatchLimits::from_config(&Config::default())
    }
}

/// What a dispatcher stopped by its deadline left undone, per sink label: deliveries queued,
/// waiting for a retry, or in flight.
pub type Undone = Vec<(String, u64)>;

/// Replays waiting for the dispatcher thread; the API's connection limit bounds the askers.
const REPLAY_QUEUE: usize = 16;

/// How long an API thread waits for a replay to be queued: reading back a full outbox
/// (`outbox_max_bytes`) takes seconds, not minutes.
const REPLAY_WAIT: Duration = Duration::from_secs(60);

/// A replay asked of the dispatcher thread, and where its answer goes.
struct ReplayRequest {
    key: String,
    since_ms: u64,
    until_ms: u64,
    answer: Sender<Result<ReplayOutcome, ReplayError>>,
}

/// An event on its way from a shard to the dispatcher, with its weight measured once.
struct Inbound {
    event: Event,
    bytes: usize,
}

/// The shards' handle on the dispatcher.
pub struct Dispatcher {
    input: Sender<Inbound>,
    /// Kept to drop the oldest queued event when the channel is full.
    input_oldest: Receiver<Inbound>,
    /// Bytes the inbound channel may hold.
    inbound_capacity_bytes: usize,
    /// The shutdown deadline, on a channel of its own: the shards' channel may be full, and
    /// its drop-oldest must never take a shutdown with it.
    stop: Sender<Instant>,
    /// Tells the dispatcher thread the sinks changed: a sink with an outbox may have events
    /// waiting on disk since an earlier run.
    changed: Sender<()>,
    /// Replays asked over the admin API, answered by the dispatcher thread (the outboxes'
    /// only writer).
    replays: Sender<ReplayRequest>,
    set: RwLock<Arc<SinkSet>>,
    next_id: AtomicU64,
    /// Shared by webhooks made at run time (keep-alive pool, timeouts, CA roots).
    agent: ureq::Agent,
    pub stats: Arc<DispatchStats>,
    /// Drops on the shards' channel, reported by the shards and by the dispatcher's timer.
    inbound_drops: Mutex<DropLog>,
    /// Set once the dispatcher thread is gone: nothing would flush a held-back drop any more.
    stopped: AtomicBool,
    /// Every outbox, by sink key, for `/metrics` and the API (empty with the outbox off).
    outboxes: OutboxRegistry,
    /// Keys of the webhooks deleted over the API since the dispatcher thread last looked: their
    /// outboxes are deleted with them.
    deleted_keys: Mutex<Vec<String>>,
    thread: Mutex<Option<thread::JoinHandle<Undone>>>,
}

impl Dispatcher {
    /// Starts the dispatcher thread, without outbox; its workers start as deliveries need them.
    pub fn start(sinks: Vec<Arc<Sink>>, agent: ureq::Agent, limits: DispatchLimits) -> Arc<Dispatcher> {
        Dispatcher::start_with_outbox(sinks, agent, limits, None)
    }

    /// Starts the dispatcher thread; with `outbox`, webhook sinks deliver through their outboxes.
    pub fn start_with_outbox(
        sinks: Vec<Arc<Sink>>,
        agent: ureq::Agent,
        limits: DispatchLimits,
        outbox: Option<OutboxSettings>,
    ) -> Arc<Dispatcher> {
        let (input, input_rx) = crossbeam_channel::bounded(limits.queue.max(1));
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let (changed, changed_rx) = crossbeam_channel::bounded(1);
        let (replays, replays_rx) = crossbeam_channel::bounded(REPLAY_QUEUE);
        let next_id = sinks.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let set = SinkSet::new(sinks);
        let stats = Arc::new(DispatchStats::default());
        let dispatcher = Arc::new(Dispatcher {
            input,
            input_oldest: input_rx.clone(),
            inbound_capacity_bytes: limits.queue_bytes,
            stop,
            changed,
            replays,
            set: RwLock::new(set),
            next_id: AtomicU64::new(next_id),
            agent,
            stats,
            inbound_drops: Mutex::default(),
            stopped: AtomicBool::new(false),
            outboxes: OutboxRegistry::default(),
            deleted_keys: Mutex::default(),
            thread: Mutex::new(None),
        });
        let mut core = Core::new(Arc::downgrade(&dispatcher), limits);
        core.outboxes = outbox.map(|settings| Outboxes::new(settings, dispatcher.outboxes.clone()));
        let handle = thread::Builder::new()
            .name("hook-dispatch".into())
            .spawn(move || core.run(input_rx, stop_rx, changed_rx, replays_rx))
            .ok();
        if handle.is_none() {
            error!("cannot start the hook dispatcher thread: events will be dropped");
        }
        *dispatcher.thread.lock().unwrap_or_else(|p| p.into_inner()) = handle;
        dispatcher
    }

    fn current(&self) -> Arc<SinkSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every sink, in definition order.
    pub fn sinks(&self) -> Vec<Arc<Sink>> {
        self.current().sinks.clone()
    }

    pub fn sink(&self, id: u64) -> Option<Arc<Sink>> {
        self.current().sinks.iter().find(|s| s.id == id).cloned()
    }

    /// Adds a webhook; returns it (with its new id).
    pub fn add_webhook(&self, config: WebhookConfig, origin: SinkOrigin) -> Arc<Sink> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sink = Arc::new(Sink::webhook(id, origin, config, None, self.agent.clone()));
        self.modify(|sinks| sinks.push(sink.clone()));
        sink
    }

    /// Replaces webhook `id`'s settings (this also re-enables a sink disabled by a 410). Queued
    /// deliveries stay queued and go out with the new settings.
    pub fn change_webhook(
        &self,
        id: u64,
        config: WebhookConfig,
        previous_secret: Option<&Secret>,
    ) -> Option<Arc<Sink>> {
        let old = self.sink(id)?;
        old.webhook.as_ref()?;
        let mut sink = Sink::webhook(id, old.origin, config, previous_secret, self.agent.clone());
        sink.stats = old.stats.clone();
        sink.app = old.app.clone();
        // A change is how an operator re-enables a sink a 410 disabled.
        sink.stats.disabled.store(false, Ordering::Relaxed);
        let sink = Arc::new(sink);
        self.modify(|sinks| {
            if let Some(slot) = sinks.iter_mut().find(|s| s.id == id) {
                *slot = sink.clone();
            }
        });
        Some(sink)
    }

    /// Replaces every sink that came from the configuration (a reload); sinks made over the
    /// admin API stay. The new sinks get fresh ids; the old ones' queued deliveries are dropped
    /// (and counted) as for a removed sink.
    pub fn replace_config_sinks(&self, sinks: Vec<Arc<Sink>>) {
        let renumbered: Vec<Arc<Sink>> = sinks
            .into_iter()
            .filter_map(|sink| Arc::try_unwrap(sink).ok())
            .map(|mut sink| {
                sink.id = self.next_id.fetch_add(1, Ordering::Relaxed);
                Arc::new(sink)
            })
            .collect();
        self.modify(|current| {
            let api: Vec<Arc<Sink>> = current.drain(..).filter(|s| s.origin == SinkOrigin::Api).collect();
            current.extend(renumbered);
            current.extend(api);
        });
    }

    /// The HTTP agent webhooks share (keep-alive pool, timeouts, CA roots).
    pub fn agent(&self) -> ureq::Agent {
        self.agent.clone()
    }

    /// Queues again the delivered events outbox `key` keeps that happened in
    /// `since_ms..until_ms` (docs/hooks.md, "Replaying events"). Blocks the caller (an admin
    /// API thread) until the dispatcher thread has written them.
    pub fn replay(&self, key: &str, since_ms: u64, until_ms: u64) -> Result<ReplayOutcome, ReplayError> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let request = ReplayRequest { key: key.to_owned(), since_ms, until_ms, answer };
        self.replays.send_timeout(request, REPLAY_WAIT).map_err(|_| ReplayError::NoAnswer)?;
        answered.recv_timeout(REPLAY_WAIT).map_err(|_| ReplayError::NoAnswer)?
    }

    /// Every outbox (configured sinks' and those left by sinks gone), by sink key.
    pub fn outboxes(&self) -> Vec<(String, Arc<outbox::OutboxStats>)> {
        let registry = self.outboxes.lock().unwrap_or_else(|p| p.into_inner());
        registry.iter().map(|(key, stats)| (key.clone(), stats.clone())).collect()
    }

    /// Removes sink `id`; its queued deliveries are dropped (and counted). A webhook made over
    /// the API takes its outbox with it; a config-file one's is kept (the file may bring it
    /// back).
    pub fn remove_sink(&self, id: u64) -> Option<Arc<Sink>> {
        let removed = self.sink(id)?;
        if removed.origin == SinkOrigin::Api
            && let Some(key) = &removed.outbox_key
        {
            self.deleted_keys.lock().unwrap_or_else(|p| p.into_inner()).push(key.clone());
        }
        self.modify(|sinks| sinks.retain(|s| s.id != id));
        Some(removed)
    }

    fn modify(&self, change: impl FnOnce(&mut Vec<Arc<Sink>>)) {
        let mut guard = self.set.write().unwrap_or_else(|p| p.into_inner());
        let mut sinks = guard.sinks.clone();
        change(&mut sinks);
        *guard = SinkSet::new(sinks);
        // Full: a wake-up is pending already, and it will see this set.
        let _ = self.changed.try_send(());
    }

    /// Recomputes which events are wanted (after a sink was disabled).
    fn refresh(&self) {
        self.modify(|_| {});
    }

    /// Stops taking events and lets queued and in-flight deliveries go on for at most `grace`;
    /// returns what was left undone then. Deliveries still in flight are abandoned, not waited
    /// for: their worker threads are blocked for up to `hook_timeout`, which may be longer than
    /// the whole shutdown may take.
    pub fn shutdown(&self, grace: Duration) -> Undone {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        // Late events still reach the channel, where they are dropped and counted.
        let _ = self.stop.try_send(Instant::now() + grace);
        let undone = handle.and_then(|handle| handle.join().ok()).unwrap_or_default();
        self.stopped.store(true, Ordering::Relaxed);
        self.flush_inbound_drops(Instant::now());
        undone
    }

    /// Counts and reports (maybe later) one event dropped on the shards' channel.
    fn drop_inbound(&self, event: &Event) {
        self.stats.dropped_inbound.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let report = {
            let mut drops = self.inbound_drops.lock().unwrap_or_else(|p| p.into_inner());
            let report = drops.record(event.event_type, &event.id, now);
            if self.stopped.load(Ordering::Relaxed) { report.or_else(|| drops.flush(now)) } else { report }
        };
        if let Some(report) = report {
            log_inbound_drops(&report);
        }
    }

    /// Takes the oldest event out of the inbound channel and drops it; false if it was empty.
    fn drop_oldest_inbound(&self) -> bool {
        let Ok(oldest) = self.input_oldest.try_recv() else { return false };
        self.stats.inbound_bytes.fetch_sub(oldest.bytes as u64, Ordering::Relaxed);
        self.drop_inbound(&oldest.event);
        true
    }

    fn tick_inbound_drops(&self, now: Instant) -> Option<Instant> {
        let (report, next) = {
            let mut drops = self.inbound_drops.lock().unwrap_or_else(|p| p.into_inner());
            (drops.tick(now), drops.next_report())
        };
        if let Some(report) = report {
            log_inbound_drops(&report);
        }
        next
    }

    fn flush_inbound_drops(&self, now: Instant) {
        let report = self.inbound_drops.lock().unwrap_or_else(|p| p.into_inner()).flush(now);
        if let Some(report) = report {
            log_inbound_drops(&report);
        }
    }
}

fn log_inbound_drops(report: &DropReport) {
    error!(
        dropped = report.dropped,
        events = %report.events(),
        first_id = %report.first_id,
        last_id = %report.last_id,
        "hook queue full: events dropped before dispatch"
    );
}

fn log_sink_drops(sink: &str, report: &DropReport) {
    error!(
        sink = %sink,
        dropped = report.dropped,
        events = %report.events(),
        first_id = %report.first_id,
        last_id = %report.last_id,
        "hook queue full: dropped the oldest deliveries"
    );
}

impl EventSink for Dispatcher {
    fn wants(&self, event_type: EventType) -> bool {
        let index = EventType::ALL.iter().position(|t| *t == event_type);
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        index.is_some_and(|i| set.wanted[i])
    }

    fn send(&self, event: Event) {
        let bytes = event.weight();
        if bytes > self.inbound_capacity_bytes {
            // Alone bigger than the whole channel may hold: it would only push out everything
            // else and then be dropped itself.
            self.drop_inbound(&event);
            return;
        }
        // Never block a shard: make room by dropping the oldest queued events, for bytes and
        // then for count. The bytes are reserved only while they fit, so the bound holds even
        // with several shards sending at once; when what holds the room is still on its way
        // in from another shard (nothing left to drop), this event is the one dropped.
        let capacity = self.inbound_capacity_bytes as u64;
        loop {
            let held = self.stats.inbound_bytes.load(Ordering::Relaxed);
            if held + bytes as u64 <= capacity {
                let reserved = self.stats.inbound_bytes.compare_exchange_weak(
                    held,
                    held + bytes as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if reserved.is_ok() {
                    break;
                }
            } else if !self.drop_oldest_inbound() {
                self.drop_inbound(&event);
                return;
            }
        }
        let mut inbound = Inbound { event, bytes };
        for _ in 0..4 {
            match self.input.try_send(inbound) {
                Ok(()) => return,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    inbound = back;
                    self.drop_oldest_inbound();
                }
                Err(crossbeam_channel::TrySendError::Disconnected(dropped)) => {
                    self.stats.inbound_bytes.fetch_sub(dropped.bytes as u64, Ordering::Relaxed);
                    self.stats.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                    warn!(event = %dropped.event.event_type, "hook dispatcher stopped: event dropped");
                    return;
                }
            }
        }
        self.stats.inbound_bytes.fetch_sub(inbound.bytes as u64, Ordering::Relaxed);
        self.drop_inbound(&inbound.event);
    }
}

struct Job {
    sink: Arc<Sink>,
    event: Arc<Event>,
    attempt: u32,
    /// Its number in the sink's outbox; `None` for a delivery held in memory only.
    record: Option<u64>,
    /// What this delivery counts against `hook_queue_bytes` while it waits (for a retry).
    bytes: usize,
}

struct Done {
    job: Job,
    outcome: Attempt,
}

/// A queued delivery: its enqueue number, event and weight.
struct Queued {
    number: u64,
    event: Arc<Event>,
    bytes: usize,
    /// Its number in the sink's outbox: such a delivery is outside `order` and `queued_bytes`.
    record: Option<u64>,
}

/// A FIFO of one stream's deliveries to one sink.
#[derive(Default)]
struct StreamQueue {
    items: VecDeque<Queued>,
    /// A delivery of this stream is in flight or waiting to be retried.
    busy: bool,
}

/// One sink's deliveries.
#[derive(Default)]
struct SinkQueues {
    /// Stream (or connection) key -> its queue.
    streams: HashMap<String, StreamQueue>,
    /// Keys whose queue has items and nothing in flight.
    ready: VecDeque<String>,
    /// Retries whose wait is over (their numbers in `Core::retry_jobs`), sent before new
    /// deliveries.
    due: VecDeque<u64>,
    /// Deliveries of this sink on the workers now: at most its share.
    in_flight: usize,
}

impl SinkQueues {
    fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.ready.is_empty() && self.due.is_empty() && self.in_flight == 0
    }
}

/// Inbound events taken in one round beyond the first (one outbox write batch).
const INBOUND_BATCH: usize = 1024;

/// What each queued delivery costs beyond its event: its entry in the oldest-first index and
/// in its stream's queue, with the key they repeat.
const DELIVERY_OVERHEAD: usize = 96;

/// The dispatcher thread's state. Sinks are named by id: they may change or go while their
/// deliveries wait.
struct Core {
    dispatcher: Weak<Dispatcher>,
    limits: DispatchLimits,
    /// Per sink id, while it has deliveries queued, waiting or in flight.
    sinks: HashMap<u64, SinkQueues>,
    /// Every queued delivery by enqueue number: the first is the oldest, dropped when full.
    order: BTreeMap<u64, (u64, String)>,
    next_number: u64,
    /// Bytes of the deliveries queued or waiting for a retry.
    queued_bytes: usize,
    in_flight: usize,
    retries: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Deliveries waiting for a retry (or due and waiting for their sink's share), by number:
    /// the first was scheduled first.
    retry_jobs: BTreeMap<u64, Job>,
    /// Per sink id, while its queue-full drops are being reported.
    drops: HashMap<u64, SinkDrops>,
    jitter: u64,
    /// The workers started so far: one more whenever every one is busy (each sink's share
    /// bounds how many can be).
    workers: usize,
    jobs: (Sender<Job>, Receiver<Job>),
    done: (Sender<Done>, Receiver<Done>),
    /// The sinks' outboxes; `None` with the outbox off.
    outboxes: Option<Outboxes>,
    /// The sink set the outboxes were last opened for.
    outbox_set: Option<Arc<SinkSet>>,
    /// Outbox key per sink id, kept while deliveries of a sink gone may still finish.
    outbox_keys: HashMap<u64, String>,
    /// Set once shutdown began: nothing more is read back from the outboxes.
    stopping: bool,
}

struct SinkDrops {
    /// The sink's label as of its last drop (a change may rename it, a removal forget it).
    label: String,
    log: DropLog,
}

fn ordering_key(event: &Event) -> String {
    if event.stream_key.is_empty() {
        // Events of no stream keep their order per connection.
        format!("#conn{}", event.conn_id)
    } else {
        event.stream_key.clone()
    }
}

impl Core {
    fn new(dispatcher: Weak<Dispatcher>, limits: DispatchLimits) -> Core {
        Core {
            dispatcher,
            limits: DispatchLimits {
                concurrency: limits.concurrency.max(1),
                queue: limits.queue.max(1),
                queue_bytes: limits.queue_bytes,
            },
            sinks: HashMap::new(),
            order: BTreeMap::new(),
            next_number: 0,
            queued_bytes: 0,
            in_flight: 0,
            retries: BinaryHeap::new(),
            retry_jobs: BTreeMap::new(),
            drops: HashMap::new(),
            jitter: now_ms() | 1,
            workers: 0,
            // Unbounded, but never longer than the deliveries in flight, which the shares bound.
            jobs: crossbeam_channel::unbounded(),
            done: crossbeam_channel::unbounded(),
            outboxes: None,
            outbox_set: None,
            outbox_keys: HashMap::new(),
            stopping: false,
        }
    }

    /// The sink `id` as it is now, if it still exists.
    fn sink(&self, id: u64) -> Option<Arc<Sink>> {
        self.dispatcher.upgrade()?.sink(id)
    }

    /// How many deliveries one sink may have in flight: an equal share of `hook_concurrency`
    /// (at least one). A receiver that hangs holds its share of the workers, never another
    /// sink's: the pool grows by a worker whenever all are busy, and the shares add up to at
    /// most `max(hook_concurrency, sinks)`.
    fn share(&self, sinks: usize) -> usize {
        (self.limits.concurrency / sinks.max(1)).max(1)
    }

    fn run(
        mut self,
        input: Receiver<Inbound>,
        stop: Receiver<Instant>,
        changed: Receiver<()>,
        replays: Receiver<ReplayRequest>,
    ) -> Undone {
        let done_rx = self.done.1.clone();
        let mut deadline: Option<Instant> = None;
        let mut next_drop_report = None;
        // What an earlier run left in the outboxes goes without waiting for a new event.
        self.sync_outboxes();
        self.dispatch();
        loop {
            let next_retry = self.retries.peek().map(|Reverse((at, _))| *at);
            let next_outbox = self.outboxes.as_mut().and_then(|o| o.tick(Instant::now()));
            let wake = next_retry.into_iter().chain(next_drop_report).chain(deadline).chain(next_outbox).min();
            let timeout = wake.map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(Instant::now()));
            select! {
                recv(input) -> inbound => match inbound {
                    Ok(first) => {
                        // What else is waiting goes in the same round: the outbox writes it as
                        // one batch.
                        for Inbound { event, bytes } in std::iter::once(first).chain(input.try_iter().take(INBOUND_BATCH)) {
                            if let Some(dispatcher) = self.dispatcher.upgrade() {
                                dispatcher.stats.inbound_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
                            }
                            self.enqueue(event, bytes);
                        }
                    }
                    Err(_) => deadline = deadline.or(Some(Instant::now())),
                },
                recv(stop) -> at => deadline = deadline.or(Some(at.unwrap_or_else(|_| Instant::now()))),
                recv(changed) -> _ => {}
                recv(replays) -> request => if let Ok(request) = request { self.replay(request) },
                recv(done_rx) -> done => if let Ok(done) = done { self.finish(done) },
                default(timeout) => {}
            }
            self.stopping = deadline.is_some();
            self.sync_outboxes();
            self.fire_retries();
            if let Some(outboxes) = self.outboxes.as_mut() {
                // Written events reach the kernel before their first attempt: from here a
                // killed process does not lose them.
                outboxes.flush();
            }
            self.dispatch();
            // A shard that drops an inbound event also leaves one in the channel (or finds it
            // full), so this loop runs again after every inbound drop: none waits unseen.
            next_drop_report = self.report_drops(Instant::now());
            if let Some(deadline) = deadline {
                // Deliveries in an outbox waiting for a retry do not hold shutdown up: they are
                // sent after the restart.
                let idle = self.in_flight == 0
                    && self.order.is_empty()
                    && self.retry_jobs.values().all(|job| job.record.is_some())
                    && self.sinks.values().all(|q| q.ready.is_empty() && q.due.is_empty());
                if idle || Instant::now() >= deadline {
                    self.flush_drops();
                    if let Some(outboxes) = self.outboxes.as_mut() {
                        for (sink, events) in outboxes.close() {
                            info!(sink = %sink, events, "outbox: undelivered events kept for the next start");
                        }
                    }
                    // Idle workers see the channel close and exit; busy ones are abandoned
                    // with their attempt (the process is about to exit).
                    return self.undone();
                }
            }
        }
    }

    /// Per sink label, the deliveries queued, waiting for a retry or in flight.
    fn undone(&self) -> Undone {
        let mut undone: BTreeMap<u64, u64> = BTreeMap::new();
        // What an outbox holds is not undone: it goes after the restart.
        for (sink_id, queues) in &self.sinks {
            let queued = queues.streams.values().flat_map(|q| &q.items).filter(|item| item.record.is_none()).count();
            *undone.entry(*sink_id).or_default() += (queued + queues.in_flight) as u64;
        }
        for job in self.retry_jobs.values().filter(|job| job.record.is_none()) {
            *undone.entry(job.sink.id).or_default() += 1;
        }
        undone
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(id, count)| (self.sink(id).map_or_else(|| format!("sink {id}"), |s| s.label.clone()), count))
            .collect()
    }

    fn enqueue(&mut self, event: Event, bytes: usize) {
        let Some(dispatcher) = self.dispatcher.upgrade() else { return };
        let event = Arc::new(event);
        let key = ordering_key(&event);
        // Each delivery counts the whole event, though the sinks share one copy: the bound
        // holds however many sinks want it.
        let bytes = bytes + DELIVERY_OVERHEAD + key.len();
        let set = dispatcher.current();
        let room = self.room(set.sinks.len());
        for sink in set.sinks.iter() {
            if !sink.takes(&event) || sink.stats.disabled.load(Ordering::Relaxed) {
                continue;
            }
            if let (Some(outboxes), Some(outbox_key)) = (self.outboxes.as_mut(), sink.outbox_key.as_deref())
                && let Some(admission) = outboxes.accept(outbox_key, &event, bytes, room)
            {
                match admission {
                    Admission::Resident(record) => {
                        let queued =
                            Queued { number: self.take_number(), event: event.clone(), bytes, record: Some(record) };
                        self.push_queued(sink, key.clone(), queued);
                    }
                    // Read back once the sink has room in memory.
                    Admission::OnDisk => {}
                    Admission::Refused => {
                        sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            // Room first, then the delivery: `/metrics` reads the queued bytes from another
            // thread at any moment, and must never see them past the bound, even in between.
            while self.order.len() >= self.limits.queue || self.queued_bytes + bytes > self.limits.queue_bytes {
                if !self.drop_oldest() {
                    break;
                }
            }
            let number = self.take_number();
            self.order.insert(number, (sink.id, key.clone()));
            self.push_queued(sink, key.clone(), Queued { number, event: event.clone(), bytes, record: None });
            sink.stats.queued_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            self.queued_bytes += bytes;
            while self.order.len() > self.limits.queue || self.queued_bytes > self.limits.queue_bytes {
                if !self.drop_oldest() {
                    break;
                }
            }
        }
    }

    fn take_number(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number - 1
    }

    /// Appends a delivery to its stream's FIFO in its sink's queues.
    fn push_queued(&mut self, sink: &Sink, key: String, queued: Queued) {
        let queues = self.sinks.entry(sink.id).or_default();
        let queue = queues.streams.entry(key.clone()).or_default();
        queue.items.push_back(queued);
        if !queue.busy && queue.items.len() == 1 {
            queues.ready.push_back(key);
        }
        sink.stats.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// How much of its outbox a sink may hold in memory: an equal share of the hook queue's
    /// bounds.
    fn room(&self, sinks: usize) -> Room {
        let sinks = sinks.max(1);
        Room { entries: (self.limits.queue / sinks).max(1), bytes: (self.limits.queue_bytes / sinks).max(64 * 1024) }
    }

    /// Opens the outboxes of webhook sinks new in the set and closes those of sinks gone; a
    /// sink that took over a key (a reload renumbers sinks) reads its outbox again from disk.
    fn sync_outboxes(&mut self) {
        let Some(outboxes) = self.outboxes.as_mut() else { return };
        let Some(dispatcher) = self.dispatcher.upgrade() else { return };
        let set = dispatcher.current();
        if self.outbox_set.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, &set)) {
            return;
        }
        let deleted = std::mem::take(&mut *dispatcher.deleted_keys.lock().unwrap_or_else(|p| p.into_inner()));
        let keys: Vec<String> = set.sinks.iter().filter_map(|s| s.outbox_key.clone()).collect();
        outboxes.configure(&keys, &deleted);
        for sink in &set.sinks {
            let Some(key) = &sink.outbox_key else { continue };
            let previous: Vec<u64> =
                self.outbox_keys.iter().filter(|(id, k)| *k == key && **id != sink.id).map(|(id, _)| *id).collect();
            if !previous.is_empty() {
                outboxes.unload(key);
            }
            for id in previous {
                self.outbox_keys.remove(&id);
            }
            self.outbox_keys.insert(sink.id, key.clone());
        }
        self.outbox_set = Some(set);
    }

    /// Queues what each outbox sink has room for in memory, read back from disk.
    fn refill(&mut self, sinks: &[Arc<Sink>]) {
        let room = self.room(sinks.len());
        let Some(outboxes) = self.outboxes.as_mut() else { return };
        if self.stopping {
            return;
        }
        let mut read = Vec::new();
        for sink in sinks {
            if let Some(key) = &sink.outbox_key
                && !sink.stats.disabled.load(Ordering::Relaxed)
                && outboxes.has_unread(key)
            {
                read.extend(
                    outboxes.refill(key, room).into_iter().map(|(record, event)| (sink.clone(), record, event)),
                );
            }
        }
        for (sink, record, event) in read {
            let key = ordering_key(&event);
            let bytes = event.weight() + DELIVERY_OVERHEAD + key.len();
            let queued = Queued { number: self.take_number(), event: Arc::new(event), bytes, record: Some(record) };
            self.push_queued(&sink, key, queued);
        }
    }

    /// Writes a replay's events into the sink's outbox, behind what waits there; the next
    /// `dispatch` reads them back as any other.
    fn replay(&mut self, request: ReplayRequest) {
        let result = match self.outboxes.as_mut() {
            None => Err(ReplayError::OutboxOff),
            Some(outboxes) if !outboxes.has(&request.key) => Err(ReplayError::UnknownSink),
            Some(outboxes) => outboxes.replay(&request.key, request.since_ms, request.until_ms),
        };
        // The asker may have given up waiting; nothing is lost, the events are queued.
        let _ = request.answer.send(result);
    }

    /// A delivery from an outbox is done with: acknowledged there.
    fn outbox_done(&mut self, job: &Job) {
        if let (Some(record), Some(key), Some(outboxes)) = (job.record, &job.sink.outbox_key, self.outboxes.as_mut()) {
            outboxes.done(key, record);
        }
    }

    /// Drops the oldest queued delivery or, with none queued, the oldest waiting for a retry
    /// (never one from an outbox); false when there is neither.
    fn drop_oldest(&mut self) -> bool {
        if let Some((number, (sink_id, key))) = self.order.pop_first() {
            let Some(queue) = self.sinks.get_mut(&sink_id).and_then(|q| q.streams.get_mut(&key)) else { return true };
            let Some(position) = queue.items.iter().position(|q| q.number == number) else { return true };
            let Some(dropped) = queue.items.remove(position) else { return true };
            self.queued_bytes -= dropped.bytes;
            if let Some(sink) = self.sink(sink_id) {
                sink.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.count_drop(&sink, &dropped.event, dropped.bytes);
            }
            return true;
        }
        let oldest = self.retry_jobs.iter().find(|(_, job)| job.record.is_none()).map(|(number, _)| *number);
        let Some(job) = oldest.and_then(|number| self.retry_jobs.remove(&number)) else { return false };
        self.queued_bytes -= job.bytes;
        self.count_drop(&job.sink, &job.event, job.bytes);
        // The stream was waiting for this retry: its next delivery may go.
        self.release(job.sink.id, ordering_key(&job.event));
        true
    }

    fn count_drop(&mut self, sink: &Sink, event: &Event, bytes: usize) {
        sink.stats.queued_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
        let drops =
            self.drops.entry(sink.id).or_insert_with(|| SinkDrops { label: String::new(), log: DropLog::default() });
        if drops.label != sink.label {
            drops.label.clone_from(&sink.label);
        }
        if let Some(report) = drops.log.record(event.event_type, &event.id, Instant::now()) {
            log_sink_drops(&drops.label, &report);
        }
    }

    /// Logs the drop summaries that are due; returns when the next one will be.
    fn report_drops(&mut self, now: Instant) -> Option<Instant> {
        let mut next = self.dispatcher.upgrade().and_then(|d| d.tick_inbound_drops(now));
        for drops in self.drops.values_mut() {
            if let Some(report) = drops.log.tick(now) {
                log_sink_drops(&drops.label, &report);
            }
            next = next.into_iter().chain(drops.log.next_report()).min();
        }
        // Forgetting a quiet log loses nothing, and keeps removed sinks from piling up.
        self.drops.retain(|_, drops| !drops.log.is_quiet(now));
        next
    }

    /// Logs every drop not reported yet: the dispatcher is stopping.
    fn flush_drops(&mut self) {
        let now = Instant::now();
        for (_, mut drops) in self.drops.drain() {
            if let Some(report) = drops.log.flush(now) {
                log_sink_drops(&drops.label, &report);
            }
        }
        if let Some(dispatcher) = self.dispatcher.upgrade() {
            dispatcher.flush_inbound_drops(now);
        }
    }

    /// Sends what may go: per sink, due retries then ready streams, up to the sink's share.
    fn dispatch(&mut self) {
        let Some(dispatcher) = self.dispatcher.upgrade() else { return };
        let set = dispatcher.current();
        self.refill(&set.sinks);
        let share = self.share(set.sinks.len());
        let with_room: Vec<u64> = self.sinks.iter().filter(|(_, q)| q.in_flight < share).map(|(id, _)| *id).collect();
        for sink_id in with_room {
            while let Some(job) = self.next_job(sink_id, share) {
                self.start(job);
            }
            if self.sinks.get(&sink_id).is_some_and(SinkQueues::is_idle) {
                self.sinks.remove(&sink_id);
            }
        }
    }

    /// The next delivery of sink `sink_id`, if it has one and room in its share.
    fn next_job(&mut self, sink_id: u64, share: usize) -> Option<Job> {
        loop {
            let queues = self.sinks.get_mut(&sink_id)?;
            if queues.in_flight >= share {
                return None;
            }
            if let Some(number) = queues.due.pop_front() {
                // Gone if it was dropped for room meanwhile.
                let Some(job) = self.retry_jobs.remove(&number) else { continue };
                if job.record.is_none() {
                    self.queued_bytes -= job.bytes;
                    job.sink.stats.queued_bytes.fetch_sub(job.bytes as u64, Ordering::Relaxed);
                }
                // The sink may have changed meanwhile: retry with its current settings.
                match self.sink(sink_id).filter(|s| !s.stats.disabled.load(Ordering::Relaxed)) {
                    Some(sink) => return Some(Job { sink, ..job }),
                    None => {
                        // One from an outbox stays there, read again when the sink may send.
                        if job.record.is_none() {
                            job.sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        self.release(sink_id, ordering_key(&job.event));
                        continue;
                    }
                }
            }
            let key = queues.ready.pop_front()?;
            let Some(queue) = queues.streams.get_mut(&key) else { continue };
            if queue.busy {
                continue;
            }
            let Some(Queued { number, event, bytes, record }) = queue.items.pop_front() else {
                queues.streams.remove(&key);
                continue;
            };
            queue.busy = true;
            if record.is_none() {
                self.order.remove(&number);
                self.queued_bytes -= bytes;
            }
            let Some(sink) = self.sink(sink_id) else {
                // The sink was removed: everything it still had queued goes.
                self.discard_sink(sink_id, None);
                return None;
            };
            sink.stats.queued.fetch_sub(1, Ordering::Relaxed);
            if record.is_none() {
                sink.stats.queued_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
            }
            if sink.stats.disabled.load(Ordering::Relaxed) {
                if record.is_none() {
                    sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.release(sink_id, key);
                continue;
            }
            return Some(Job { sink, event, attempt: 1, bytes, record });
        }
    }

    /// Hands `job` to a worker, starting one if every worker is busy.
    fn start(&mut self, job: Job) {
        if self.in_flight >= self.workers {
            let (jobs, done) = (self.jobs.1.clone(), self.done.0.clone());
            let spawned = thread::Builder::new()
                .name("hook-worker".into())
                .stack_size(512 * 1024)
                .spawn(move || worker(jobs, done));
            match spawned {
                Ok(_) => self.workers += 1,
                // The job still goes: it waits for a worker that is there.
                Err(e) => error!(error = %e, "cannot start a hook worker"),
            }
        }
        job.sink.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight += 1;
        self.sinks.entry(job.sink.id).or_default().in_flight += 1;
        // Cannot fail: the receiving end lives in `self`.
        let _ = self.jobs.0.send(job);
    }

    fn finish(&mut self, done: Done) {
        self.in_flight -= 1;
        let Done { job, outcome } = done;
        if let Some(queues) = self.sinks.get_mut(&job.sink.id) {
            queues.in_flight -= 1;
        }
        let sink = job.sink.clone();
        sink.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let event = &job.event;
        match outcome {
            Attempt::Delivered { .. } => {
                sink.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.outbox_done(&job);
            }
            Attempt::Skipped => self.outbox_done(&job),
            // One from an outbox is retried for as long as its receiver fails.
            Attempt::Retry { reason, retry_after } if job.attempt <= sink.retries() || job.record.is_some() => {
                sink.stats.retried.fetch_add(1, Ordering::Relaxed);
                self.jitter = self.jitter.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let wait =
                    retry_after.unwrap_or_else(|| webhook::backoff(job.attempt, self.jitter)).min(MAX_RETRY_WAIT);
                if job.attempt <= sink.retries() {
                    error!(sink = %sink.label, event = %event.event_type, id = %event.id, attempt = job.attempt, error = %reason, retry_in = ?wait, "hook delivery failed; will retry");
                } else if job.attempt == sink.retries() + 1 {
                    // Once per delivery: a receiver down for hours would otherwise log a line
                    // per stream every minute.
                    error!(sink = %sink.label, event = %event.event_type, id = %event.id, attempt = job.attempt, error = %reason, retry_in = ?wait, "hook delivery failed after its retries; kept in the outbox and retried until delivered");
                }
                let number = self.take_number();
                self.retries.push(Reverse((Instant::now() + wait, number)));
                if job.record.is_some() {
                    // Outside the queue's bytes: its memory is the outbox's share.
                    self.retry_jobs.insert(number, Job { attempt: job.attempt.saturating_add(1), ..job });
                    return;
                }
                // Room first, as in `enqueue`: the metric never passes the bound.
                while self.queued_bytes + job.bytes > self.limits.queue_bytes {
                    if !self.drop_oldest() {
                        break;
                    }
                }
                // Waiting, it holds its event again: counted until it goes or is dropped.
                self.queued_bytes += job.bytes;
                sink.stats.queued_bytes.fetch_add(job.bytes as u64, Ordering::Relaxed);
                self.retry_jobs.insert(number, Job { attempt: job.attempt + 1, ..job });
                // The stream stays busy: its later events wait behind this one.
                while self.queued_bytes > self.limits.queue_bytes {
                    if !self.drop_oldest() {
                        break;
                    }
                }
                return;
            }
            Attempt::Retry { reason, .. } | Attempt::Failed { reason } => {
                sink.stats.failed.fetch_add(1, Ordering::Relaxed);
                error!(sink = %sink.label, event = %event.event_type, id = %event.id, attempt = job.attempt, error = %reason, "hook delivery failed");
                // Refused for good: the same request would get the same answer.
                self.outbox_done(&job);
            }
            Attempt::Gone => {
                sink.stats.failed.fetch_add(1, Ordering::Relaxed);
                sink.stats.disabled.store(true, Ordering::Relaxed);
                error!(sink = %sink.label, event = %event.event_type, id = %event.id, "webhook answered 410 Gone: sink disabled until it is changed");
                if let Some(dispatcher) = self.dispatcher.upgrade() {
                    dispatcher.refresh();
                }
                self.discard_sink(sink.id, Some(&sink));
                return;
            }
        }
        self.release(sink.id, ordering_key(event));
    }

    /// The stream's delivery is over: its next event may go.
    fn release(&mut self, sink_id: u64, key: String) {
        let Some(queues) = self.sinks.get_mut(&sink_id) else { return };
        if let Some(queue) = queues.streams.get_mut(&key) {
            queue.busy = false;
            if queue.items.is_empty() {
                queues.streams.remove(&key);
            } else {
                queues.ready.push_back(key);
            }
        }
    }

    /// Drops everything queued for a sink (disabled or removed), counting it on `stats_of`.
    fn discard_sink(&mut self, sink_id: u64, stats_of: Option<&Sink>) {
        // Its queue-full drops are reported before the line about the rest.
        if let Some(mut drops) = self.drops.remove(&sink_id)
            && let Some(report) = drops.log.flush(Instant::now())
        {
            log_sink_drops(&drops.label, &report);
        }
        let mut dropped = 0;
        if let Some(queues) = self.sinks.get_mut(&sink_id) {
            for queue in std::mem::take(&mut queues.streams).into_values() {
                // Those from an outbox stay there.
                for item in queue.items.into_iter().filter(|item| item.record.is_none()) {
                    self.order.remove(&item.number);
                    self.queued_bytes -= item.bytes;
                    dropped += 1;
                }
            }
            queues.ready.clear();
            queues.due.clear();
        }
        let retrying: Vec<u64> =
            self.retry_jobs.iter().filter(|(_, j)| j.sink.id == sink_id).map(|(n, _)| *n).collect();
        for number in retrying {
            if let Some(job) = self.retry_jobs.remove(&number)
                && job.record.is_none()
            {
                self.queued_bytes -= job.bytes;
                dropped += 1;
            }
        }
        if let Some(key) = self.outbox_keys.get(&sink_id)
            && let Some(outboxes) = self.outboxes.as_mut()
        {
            // Read again from disk once the sink may send (re-enabled, or its next version).
            outboxes.unload(key);
        }
        if let Some(sink) = stats_of {
            sink.stats.queued.store(0, Ordering::Relaxed);
            sink.stats.queued_bytes.store(0, Ordering::Relaxed);
            sink.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if dropped > 0 {
            warn!(sink = sink_id, dropped, "queued hook deliveries dropped with their sink");
        }
    }

    /// Moves retries whose time has come to their sink's `due`; the stream is still busy with
    /// them.
    fn fire_retries(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, number))) = self.retries.peek().copied() {
            if at > now {
                break;
            }
            self.retries.pop();
            if let Some(job) = self.retry_jobs.get(&number) {
                self.sinks.entry(job.sink.id).or_default().due.push_back(number);
            }
        }
    }
}

/// A worker: runs one delivery attempt at a time, blocking, and reports back.
fn worker(jobs: Receiver<Job>, done: Sender<Done>) {
    for job in jobs {
        let sink = &job.sink;
        let outcome = match &sink.kind {
            SinkKind::Webhook { target, agent, .. } => webhook::attempt(agent, target, &job.event, now_ms() / 1000),
            SinkKind::Nats { target, .. } => target.attempt(&job.event),
            SinkKind::Script { path, timeout } => {
                let outcome = script::run(path, &job.event, *timeout);
                let (stdout, stderr) = (outcome.stdout.text(), outcome.stderr.text());
                if outcome.success() {
                    info!(script = %sink.label, event = %job.event.event_type, %stdout, %stderr, "hook script done");
                    Attempt::Delivered { status: 0 }
                } else {
                    Attempt::Failed {
                        reason: format!("script {}; stdout: {stdout:?}; stderr: {stderr:?}", outcome.status),
                    }
                }
            }
            SinkKind::Stdio { format } => match stdio::emit(&job.event, *format) {
                Ok(()) => Attempt::Delivered { status: 0 },
                Err(e) => Attempt::Failed { reason: format!("stderr: {e}") },
            },
        };
        if done.send(Done { job, outcome }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::event::connect_event;

    fn event_carrying(bytes: usize) -> Event {
        connect_event(&[("tcurl", &"x".repeat(bytes))])
    }

    /// The channel from the shards holds at most `queue_bytes` of events, whatever their count:
    /// a shard makes room by dropping the oldest, and an event bigger than the whole bound is
    /// dropped at once. (The dispatcher thread is stopped first, so nothing drains the channel.)
    #[test]
    fn the_inbound_channel_is_bounded_in_bytes() {
        const BOUND: usize = 64 * 1024;
        let agent = webhook::agent(Duration::from_secs(1), None).unwrap();
        let limits = DispatchLimits { concurrency: 1, queue: 1000, queue_bytes: BOUND };
        let dispatcher = Dispatcher::start(Vec::new(), agent, limits);
        assert!(dispatcher.shutdown(Duration::ZERO).is_empty());
        let weight = event_carrying(4096).weight();
        for _ in 0..100 {
            dispatcher.send(event_carrying(4096));
            let held = dispatcher.stats.inbound_bytes.load(Ordering::Relaxed) as usize;
            assert!(held <= BOUND, "{held} bytes held, bound {BOUND}");
        }
        let kept = BOUND / weight;
        assert_eq!(dispatcher.input_oldest.len(), kept, "as many {weight}-byte events as fit");
        assert_eq!(dispatcher.stats.dropped_inbound.load(Ordering::Relaxed), 100 - kept as u64);
        dispatcher.send(event_carrying(BOUND));
        assert_eq!(dispatcher.input_oldest.len(), kept, "too big for the bound: dropped, not let in");
        assert_eq!(dispatcher.stats.dropped_inbound.load(Ordering::Relaxed), 101 - kept as u64);
    }
}
