//! Event sinks: every event to each webhook, script and stdio sink that wants it, with
//! retries, per-stream order and a bounded queue.
//!
//! Shards hand events to one dispatcher thread over a bounded crossbeam channel (never
//! waiting: when full, the oldest event in it is dropped and counted). Drops, there and from the
//! sinks' queue, are logged in summaries of at most one line a second ([`DropLog`]). The dispatcher
//! keeps, per sink, a FIFO per stream and lets at most one delivery of a stream be in flight
//! or waiting for a retry, which is what keeps a stream's events in order within a sink while
//! other streams proceed. Ready deliveries go to `hook_concurrency` blocking worker threads;
//! workers never sleep, retries wait in the dispatcher's timer heap instead.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use tracing::{error, info, warn};

use super::drop_log::{DropLog, DropReport};
use super::event::{Event, EventType};
use super::webhook::{self, Attempt, WebhookTarget};
use super::{EventSink, now_ms, script, stdio};
use crate::config::{Config, EventFilter, Secret, StdioFormat, WebhookConfig};

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
    /// Set by a 410 Gone: the sink receives nothing more until it is changed.
    pub disabled: AtomicBool,
}

#[derive(Debug)]
enum SinkKind {
    Webhook { target: WebhookTarget, agent: ureq::Agent, retries: u32 },
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
    kind: SinkKind,
    /// The webhook's settings as given (for the admin API), `None` for scripts and stdio.
    pub webhook: Option<WebhookConfig>,
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
            kind: SinkKind::Webhook {
                target: WebhookTarget::new(&config, previous_secret),
                agent,
                retries: config.retries,
            },
            webhook: Some(config),
            stats: Arc::default(),
        }
    }

    fn retries(&self) -> u32 {
        match &self.kind {
            SinkKind::Webhook { retries, .. } => *retries,
            _ => 0,
        }
    }
}

/// The sinks of a config. Their ids are 1, 2, 3...; API-made sinks are numbered after them.
pub fn sinks_from_config(config: &Config, agent: &ureq::Agent) -> Vec<Arc<Sink>> {
    let mut sinks = Vec::new();
    let mut id = 0;
    let mut next_id = || {
        id += 1;
        id
    };
    for hook in &config.webhooks {
        sinks.push(Arc::new(Sink::webhook(next_id(), SinkOrigin::Config, hook.clone(), None, agent.clone())));
    }
    for script in &config.scripts {
        sinks.push(Arc::new(Sink {
            id: next_id(),
            origin: SinkOrigin::Config,
            label: script.path.display().to_string(),
            filter: script.event.clone(),
            kind: SinkKind::Script { path: script.path.clone(), timeout: config.hook_timeout },
            webhook: None,
            stats: Arc::default(),
        }));
    }
    if let Some(format) = config.stdio {
        sinks.push(Arc::new(Sink {
            id: next_id(),
            origin: SinkOrigin::Config,
            label: "stdio".into(),
            filter: EventFilter::All,
            kind: SinkKind::Stdio { format },
            webhook: None,
            stats: Arc::default(),
        }));
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
}

/// The shards' handle on the dispatcher.
pub struct Dispatcher {
    input: Sender<Event>,
    /// Kept to drop the oldest queued event when the channel is full.
    input_oldest: Receiver<Event>,
    set: RwLock<Arc<SinkSet>>,
    next_id: AtomicU64,
    /// Shared by webhooks made at run time (keep-alive pool, timeouts, CA roots).
    agent: ureq::Agent,
    pub stats: Arc<DispatchStats>,
    /// Drops on the shards' channel, reported by the shards and by the dispatcher's timer.
    inbound_drops: Mutex<DropLog>,
    /// Set once the dispatcher thread is gone: nothing would flush a held-back drop any more.
    stopped: AtomicBool,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Dispatcher {
    /// Starts the dispatcher thread and `concurrency` workers.
    pub fn start(sinks: Vec<Arc<Sink>>, agent: ureq::Agent, concurrency: usize, queue: usize) -> Arc<Dispatcher> {
        let (input, input_rx) = crossbeam_channel::bounded(queue.max(1));
        let next_id = sinks.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let set = SinkSet::new(sinks);
        let stats = Arc::new(DispatchStats::default());
        let dispatcher = Arc::new(Dispatcher {
            input,
            input_oldest: input_rx.clone(),
            set: RwLock::new(set),
            next_id: AtomicU64::new(next_id),
            agent,
            stats,
            inbound_drops: Mutex::default(),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let core = Core::new(Arc::downgrade(&dispatcher), concurrency.max(1), queue.max(1));
        let handle = thread::Builder::new().name("hook-dispatch".into()).spawn(move || core.run(input_rx)).ok();
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

    /// Removes sink `id`; its queued deliveries are dropped (and counted).
    pub fn remove_sink(&self, id: u64) -> Option<Arc<Sink>> {
        let removed = self.sink(id)?;
        self.modify(|sinks| sinks.retain(|s| s.id != id));
        Some(removed)
    }

    fn modify(&self, change: impl FnOnce(&mut Vec<Arc<Sink>>)) {
        let mut guard = self.set.write().unwrap_or_else(|p| p.into_inner());
        let mut sinks = guard.sinks.clone();
        change(&mut sinks);
        *guard = SinkSet::new(sinks);
    }

    /// Recomputes which events are wanted (after a sink was disabled).
    fn refresh(&self) {
        self.modify(|_| {});
    }

    /// Stops taking events and waits (up to `grace`) for queued deliveries to finish.
    pub fn shutdown(&self, grace: Duration) {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        // Closing is signalled by a special empty-id event; the channel stays open for late
        // senders, whose events are then dropped and counted.
        let _ = self.input.send_timeout(shutdown_marker(grace), Duration::from_millis(100));
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.stopped.store(true, Ordering::Relaxed);
        self.flush_inbound_drops(Instant::now());
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

fn shutdown_marker(grace: Duration) -> Event {
    Event {
        id: String::new(),
        event_type: EventType::ConnectionClose,
        timestamp_ms: grace.as_millis() as u64,
        conn_id: 0,
        protocol: super::event::Protocol::Rtmp,
        addr: String::new(),
        stream_key: String::new(),
        seq: 0,
        data: Default::default(),
    }
}

impl EventSink for Dispatcher {
    fn wants(&self, event_type: EventType) -> bool {
        let index = EventType::ALL.iter().position(|t| *t == event_type);
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        index.is_some_and(|i| set.wanted[i])
    }

    fn send(&self, event: Event) {
        let mut event = event;
        // Never block a shard: make room by dropping the oldest queued event.
        for _ in 0..4 {
            match self.input.try_send(event) {
                Ok(()) => return,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    event = back;
                    if let Ok(oldest) = self.input_oldest.try_recv() {
                        self.drop_inbound(&oldest);
                    }
                }
                Err(crossbeam_channel::TrySendError::Disconnected(dropped)) => {
                    self.stats.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                    warn!(event = %dropped.event_type, "hook dispatcher stopped: event dropped");
                    return;
                }
            }
        }
        self.drop_inbound(&event);
    }
}

struct Job {
    sink: Arc<Sink>,
    event: Arc<Event>,
    attempt: u32,
}

struct Done {
    job: Job,
    outcome: Attempt,
}

/// A FIFO of one stream's deliveries to one sink.
#[derive(Default)]
struct StreamQueue {
    /// (enqueue number, event)
    items: VecDeque<(u64, Arc<Event>)>,
    /// A delivery of this stream is in flight or waiting to be retried.
    busy: bool,
}

/// The dispatcher thread's state. Sinks are named by id: they may change or go while their
/// deliveries wait.
struct Core {
    dispatcher: Weak<Dispatcher>,
    concurrency: usize,
    capacity: usize,
    /// Per sink id: stream (or connection) key -> its queue.
    queues: HashMap<u64, HashMap<String, StreamQueue>>,
    /// Every queued delivery by enqueue number: the first is the oldest, dropped when full.
    order: BTreeMap<u64, (u64, String)>,
    next_number: u64,
    /// (sink id, key) whose queue has items and nothing in flight.
    ready: VecDeque<(u64, String)>,
    in_flight: usize,
    retries: BinaryHeap<Reverse<(Instant, u64)>>,
    retry_jobs: HashMap<u64, Job>,
    /// Retries whose wait is over, sent before new deliveries.
    due: VecDeque<Job>,
    /// Per sink id, while its queue-full drops are being reported.
    drops: HashMap<u64, SinkDrops>,
    jitter: u64,
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
    fn new(dispatcher: Weak<Dispatcher>, concurrency: usize, capacity: usize) -> Core {
        Core {
            dispatcher,
            concurrency,
            capacity,
            queues: HashMap::new(),
            order: BTreeMap::new(),
            next_number: 0,
            ready: VecDeque::new(),
            in_flight: 0,
            retries: BinaryHeap::new(),
            retry_jobs: HashMap::new(),
            due: VecDeque::new(),
            drops: HashMap::new(),
            jitter: now_ms() | 1,
        }
    }

    /// The sink `id` as it is now, if it still exists.
    fn sink(&self, id: u64) -> Option<Arc<Sink>> {
        self.dispatcher.upgrade()?.sink(id)
    }

    fn run(mut self, input: Receiver<Event>) {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(self.concurrency);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let mut workers = Vec::new();
        for _ in 0..self.concurrency {
            let (jobs_rx, done_tx) = (jobs_rx.clone(), done_tx.clone());
            let spawned = thread::Builder::new()
                .name("hook-worker".into())
                .stack_size(512 * 1024)
                .spawn(move || worker(jobs_rx, done_tx));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => error!(error = %e, "cannot start a hook worker"),
            }
        }
        drop(done_tx);
        let mut deadline: Option<Instant> = None;
        let mut next_drop_report = None;
        loop {
            let next_retry = self.retries.peek().map(|Reverse((at, _))| *at);
            let wake = next_retry.into_iter().chain(next_drop_report).min();
            let timeout = wake.map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(Instant::now()));
            select! {
                recv(input) -> event => match event {
                    Ok(event) if event.id.is_empty() => {
                        deadline = Some(Instant::now() + Duration::from_millis(event.timestamp_ms));
                    }
                    Ok(event) => self.enqueue(event),
                    Err(_) => deadline = deadline.or(Some(Instant::now())),
                },
                recv(done_rx) -> done => if let Ok(done) = done { self.finish(done) },
                default(timeout) => {}
            }
            self.fire_retries();
            self.dispatch(&jobs_tx);
            // A shard that drops an inbound event also leaves one in the channel (or finds it
            // full), so this loop runs again after every inbound drop: none waits unseen.
            next_drop_report = self.report_drops(Instant::now());
            if let Some(deadline) = deadline {
                let idle =
                    self.in_flight == 0 && self.order.is_empty() && self.retries.is_empty() && self.due.is_empty();
                if idle || Instant::now() >= deadline {
                    let left = self.order.len() + self.retries.len() + self.due.len();
                    if left > 0 {
                        warn!(left, "hook dispatcher stopping with deliveries undone");
                    }
                    self.flush_drops();
                    break;
                }
            }
        }
        drop(jobs_tx);
        for handle in workers {
            // Workers finish their current attempt (bounded by hook_timeout) and exit.
            let _ = handle.join();
        }
    }

    fn enqueue(&mut self, event: Event) {
        let Some(dispatcher) = self.dispatcher.upgrade() else { return };
        let event = Arc::new(event);
        let key = ordering_key(&event);
        for sink in dispatcher.current().sinks.iter() {
            if !sink.filter.matches(event.event_type) || sink.stats.disabled.load(Ordering::Relaxed) {
                continue;
            }
            if self.order.len() >= self.capacity {
                self.drop_oldest();
            }
            let number = self.next_number;
            self.next_number += 1;
            self.order.insert(number, (sink.id, key.clone()));
            let queue = self.queues.entry(sink.id).or_default().entry(key.clone()).or_default();
            queue.items.push_back((number, event.clone()));
            sink.stats.queued.fetch_add(1, Ordering::Relaxed);
            if !queue.busy && queue.items.len() == 1 {
                self.ready.push_back((sink.id, key.clone()));
            }
        }
    }

    fn drop_oldest(&mut self) {
        let Some((number, (sink_id, key))) = self.order.pop_first() else { return };
        let Some(queue) = self.queues.get_mut(&sink_id).and_then(|q| q.get_mut(&key)) else { return };
        let Some(position) = queue.items.iter().position(|(n, _)| *n == number) else { return };
        let Some((_, event)) = queue.items.remove(position) else { return };
        if let Some(sink) = self.sink(sink_id) {
            sink.stats.queued.fetch_sub(1, Ordering::Relaxed);
            sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
            let drops = self
                .drops
                .entry(sink_id)
                .or_insert_with(|| SinkDrops { label: String::new(), log: DropLog::default() });
            if drops.label != sink.label {
                drops.label.clone_from(&sink.label);
            }
            if let Some(report) = drops.log.record(event.event_type, &event.id, Instant::now()) {
                log_sink_drops(&drops.label, &report);
            }
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

    fn dispatch(&mut self, jobs: &Sender<Job>) {
        while self.in_flight < self.concurrency {
            let Some(job) = self.due.pop_front() else { break };
            // The sink may have changed meanwhile: retry with its current settings.
            let Some(sink) = self.sink(job.sink.id).filter(|s| !s.stats.disabled.load(Ordering::Relaxed)) else {
                job.sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.release(job.sink.id, ordering_key(&job.event));
                continue;
            };
            sink.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            self.in_flight += 1;
            if jobs.send(Job { sink, ..job }).is_err() {
                return;
            }
        }
        while self.in_flight < self.concurrency {
            let Some((sink_id, key)) = self.ready.pop_front() else { return };
            let Some(queue) = self.queues.get_mut(&sink_id).and_then(|q| q.get_mut(&key)) else { continue };
            if queue.busy {
                continue;
            }
            let Some((number, event)) = queue.items.pop_front() else {
                if let Some(queues) = self.queues.get_mut(&sink_id) {
                    queues.remove(&key);
                }
                continue;
            };
            queue.busy = true;
            self.order.remove(&number);
            let Some(sink) = self.sink(sink_id) else {
                // The sink was removed: everything it still had queued goes.
                self.discard_sink(sink_id, None);
                continue;
            };
            sink.stats.queued.fetch_sub(1, Ordering::Relaxed);
            if sink.stats.disabled.load(Ordering::Relaxed) {
                sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.release(sink_id, key);
                continue;
            }
            sink.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            self.in_flight += 1;
            if jobs.send(Job { sink, event, attempt: 1 }).is_err() {
                return;
            }
        }
    }

    fn finish(&mut self, done: Done) {
        self.in_flight -= 1;
        let Done { job, outcome } = done;
        let sink = job.sink.clone();
        sink.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let event = &job.event;
        match outcome {
            Attempt::Delivered { .. } => {
                sink.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Attempt::Skipped => {}
            Attempt::Retry { reason, retry_after } if job.attempt <= sink.retries() => {
                sink.stats.retried.fetch_add(1, Ordering::Relaxed);
                self.jitter = self.jitter.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let wait =
                    retry_after.unwrap_or_else(|| webhook::backoff(job.attempt, self.jitter)).min(MAX_RETRY_WAIT);
                error!(sink = %sink.label, event = %event.event_type, id = %event.id, attempt = job.attempt, error = %reason, retry_in = ?wait, "hook delivery failed; will retry");
                let number = self.next_number;
                self.next_number += 1;
                self.retries.push(Reverse((Instant::now() + wait, number)));
                self.retry_jobs.insert(number, Job { attempt: job.attempt + 1, ..job });
                // The stream stays busy: its later events wait behind this one.
                return;
            }
            Attempt::Retry { reason, .. } | Attempt::Failed { reason } => {
                sink.stats.failed.fetch_add(1, Ordering::Relaxed);
                error!(sink = %sink.label, event = %event.event_type, id = %event.id, attempt = job.attempt, error = %reason, "hook delivery failed");
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
        let Some(queues) = self.queues.get_mut(&sink_id) else { return };
        if let Some(queue) = queues.get_mut(&key) {
            queue.busy = false;
            if queue.items.is_empty() {
                queues.remove(&key);
            } else {
                self.ready.push_back((sink_id, key));
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
        let queues = self.queues.remove(&sink_id).unwrap_or_default();
        let mut dropped = 0;
        for queue in queues.into_values() {
            for (number, _) in queue.items {
                self.order.remove(&number);
                dropped += 1;
            }
        }
        let retrying: Vec<u64> =
            self.retry_jobs.iter().filter(|(_, j)| j.sink.id == sink_id).map(|(n, _)| *n).collect();
        dropped += retrying.len() as u64;
        for number in retrying {
            self.retry_jobs.remove(&number);
        }
        if let Some(sink) = stats_of {
            sink.stats.queued.store(0, Ordering::Relaxed);
            sink.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if dropped > 0 {
            warn!(sink = sink_id, dropped, "queued hook deliveries dropped with their sink");
        }
    }

    /// Moves retries whose time has come to `due`; the stream is still busy with them.
    fn fire_retries(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, number))) = self.retries.peek().copied() {
            if at > now {
                break;
            }
            self.retries.pop();
            if let Some(job) = self.retry_jobs.remove(&number) {
                self.due.push_back(job);
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
