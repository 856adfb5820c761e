//! The outbox: every event bound for a webhook sink is written to disk before its first attempt
//! and kept until it is delivered, so none is lost to a receiver that is down, a restart, a
//! SIGKILL or (up to `outbox_fsync`) a power failure (docs/hooks.md, "Delivery guarantees").
//!
//! # Layout
//!
//! - `mod.rs`: the settings ([`OutboxSettings`]), each sink's counters ([`OutboxStats`]) and
//!   [`Outboxes`], the dispatcher thread's set of open outboxes: which events of a sink are in
//!   memory and which wait on disk only, fsync timing, outboxes left by sinks no longer
//!   configured -> `sink`, `key`.
//! - [`sink`]: one sink's directory of segments: append, acknowledge, read on, replay after a
//!   restart, delete what is delivered (kept `outbox_retain` for replays) -> `record`, `stored`.
//! - [`replay`]: what `ringcast hooks replay` asks for (`since`/`until`) and what it got.
//! - [`key`]: a sink's stable name, the directory its outbox lives in.
//! - [`record`]: one record's bytes (checksummed; sans-IO).
//! - [`stored`]: an event as a record holds it.
//!
//! Only the dispatcher thread writes: shards hand events over a channel as before and never
//! touch a file. Memory stays bounded while a receiver is down for hours: a sink keeps at most its
//! share of `hook_queue`/`hook_queue_bytes` in memory, and what arrives past it is written only;
//! it is read back, in the order written, as deliveries free room. Reading in that order keeps
//! each stream's order, since a stream's events are written in their order.

pub mod key;
pub mod record;
pub mod replay;
pub mod sink;
pub mod stored;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::drop_log::{DropLog, DropReport};
use super::event::Event;
use crate::config::Config;
pub use replay::{ReplayError, ReplayOutcome};
use sink::{AppendError, SinkOutbox};

/// The directory under `state_dir`.
pub const DIR_NAME: &str = "outbox";

/// Segments are closed past this size, or `outbox_max_bytes / 8` when that is smaller: a
/// delivered segment is deleted whole, so smaller segments give disk back sooner, larger ones
/// make fewer files.
const SEGMENT_BYTES: u64 = 16 << 20;

/// Events read back from disk at once, per sink.
const READ_BATCH: usize = 512;

/// An outbox left by a sink no longer configured is reported this long after start-up: webhooks
/// made over the admin API are added back to the dispatcher after it starts.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// `outbox`, `outbox_fsync`, `outbox_max_bytes`, `outbox_retain`, resolved against `state_dir`.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `state_dir/outbox`: one directory per sink in it.
    pub dir: PathBuf,
    pub fsync: Duration,
    /// Per sink.
    pub max_bytes: u64,
    /// How long delivered events are kept for a replay (zero: deleted once delivered).
    pub retain: Duration,
}

impl OutboxSettings {
    /// The outbox settings of `config`: `Ok(None)` when it is off, by `outbox = false`, or by
    /// default because `state_dir` cannot be written (a warning says so). `Err` when
    /// `outbox = true` and `state_dir` cannot be written: the operator asked for durability.
    pub fn resolve(config: &Config) -> Result<Option<OutboxSettings>, String> {
        if config.outbox == Some(false) {
            return Ok(None);
        }
        let dir = config.state_dir.join(DIR_NAME);
        match probe(&dir) {
            Ok(()) => Ok(Some(OutboxSettings {
                dir,
                fsync: config.outbox_fsync,
                max_bytes: config.outbox_max_bytes as u64,
                retain: config.outbox_retain,
            })),
            Err(e) if config.outbox == Some(true) => {
                Err(format!("key 'outbox': cannot write {} ({e}); set outbox = false to run without it", dir.display()))
            }
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "state_dir is not writable: webhook events are kept in memory only and may be lost on a restart (the outbox is off; set outbox = true to refuse to start instead)");
                Ok(None)
            }
        }
    }
}

/// Creates `dir` (0700) if needed and writes and removes a file in it.
fn probe(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    fs::write(&probe, b"")?;
    fs::remove_file(&probe)
}

/// One outbox's counters, for `/metrics` and the API; shared by its sink's versions and kept
/// for an outbox whose sink is gone.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Events written and not delivered yet.
    pub entries: AtomicU64,
    /// Bytes of its segment files.
    pub bytes: AtomicU64,
    /// When its oldest undelivered event happened (unix ms); 0 with none.
    pub oldest_ms: AtomicU64,
    /// Events not written: the outbox was full (or the disk failed). Lost, so counted and logged.
    pub refused: AtomicU64,
    /// A configured sink's; false for an outbox kept after its sink went.
    pub configured: AtomicBool,
    /// Events queued again by replays (`ringcast hooks replay`).
    pub replayed: AtomicU64,
}

/// Every outbox known, by sink key (see [`key`]): what `/metrics` and the API show.
pub type OutboxRegistry = Arc<Mutex<BTreeMap<String, Arc<OutboxStats>>>>;

/// How much of a sink's outbox may be in memory (its share of the hook queue's bounds).
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub entries: usize,
    pub bytes: usize,
}

/// What became of an event handed to [`Outboxes::accept`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Written as event `number`, and queued in memory now.
    Resident(u64),
    /// Written; read back when the sink has room.
    OnDisk,
    /// Not written (full, or a disk error): dropped, counted and logged.
    Refused,
}

struct Open {
    outbox: SinkOutbox,
    stats: Arc<OutboxStats>,
    /// Events in memory (queued, in flight, or waiting for a retry) by number, with their weight.
    resident: HashMap<u64, usize>,
    resident_bytes: usize,
    /// Every undelivered event numbered below this is resident; the rest wait on disk.
    loaded_until: u64,
    refusals: DropLog,
}

/// The dispatcher thread's outboxes.
pub struct Outboxes {
    settings: OutboxSettings,
    open: HashMap<String, Open>,
    registry: OutboxRegistry,
    started: Instant,
    last_sync: Instant,
    /// Outboxes of sinks no longer configured, already reported.
    reported_orphans: Vec<String>,
    /// Keys of the configured sinks, as of the last [`Outboxes::configure`].
    configured: Vec<String>,
}

impl Outboxes {
    pub fn new(settings: OutboxSettings, registry: OutboxRegistry) -> Outboxes {
        let now = Instant::now();
        Outboxes {
            settings,
            open: HashMap::new(),
            registry,
            started: now,
            last_sync: now,
            reported_orphans: Vec::new(),
            configured: Vec::new(),
        }
    }

    /// Opens the outboxes of `keys` not open yet (replaying what an earlier run left) and closes
    /// those of sinks gone. A gone sink's outbox stays on disk, reported once `ORPHAN_GRACE`
    /// after start-up; `deleted` names the ones whose sink was deleted over the API, removed
    /// with everything in them.
    pub fn configure(&mut self, keys: &[String], deleted: &[String]) {
        for key in keys {
            if self.open.contains_key(key) {
                continue;
            }
            let dir = self.settings.dir.join(key);
            match SinkOutbox::open_retaining(&dir, self.settings.max_bytes, self.segment_bytes(), self.settings.retain)
            {
                Ok((outbox, replayed)) => {
                    if replayed.pending > 0 {
                        info!(sink = %key, events = replayed.pending, dir = %dir.display(), "outbox: undelivered events from an earlier run will be sent again");
                    }
                    let stats = self.stats_of(key);
                    stats.configured.store(true, Ordering::Relaxed);
                    let loaded_until = outbox.first_number();
                    let open = Open {
                        outbox,
                        stats,
                        resident: HashMap::new(),
                        resident_bytes: 0,
                        loaded_until,
                        refusals: DropLog::default(),
                    };
                    publish(&open.stats, &open.outbox);
                    self.open.insert(key.clone(), open);
                    self.reported_orphans.retain(|k| k != key);
                }
                Err(e) => {
                    error!(sink = %key, dir = %dir.display(), error = %e, "cannot open the outbox: this sink's events are kept in memory only");
                }
            }
        }
        let gone: Vec<String> = self.open.keys().filter(|k| !keys.contains(k)).cloned().collect();
        for key in gone {
            let Some(mut open) = self.open.remove(&key) else { continue };
            if let Err(e) = open.outbox.sync() {
                error!(sink = %key, error = %e, "outbox: cannot sync");
            }
            open.stats.configured.store(false, Ordering::Relaxed);
            if deleted.contains(&key) {
                let dir = self.settings.dir.join(&key);
                if open.outbox.pending() > 0 {
                    warn!(sink = %key, events = open.outbox.pending(), "outbox: webhook deleted; its undelivered events are deleted with it");
                }
                drop(open);
                if let Err(e) = fs::remove_dir_all(&dir) {
                    warn!(dir = %dir.display(), error = %e, "outbox: cannot delete a deleted webhook's outbox");
                }
                self.registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            }
        }
        self.configured = keys.to_vec();
        self.find_orphans();
    }

    fn segment_bytes(&self) -> u64 {
        SEGMENT_BYTES.min(self.settings.max_bytes / 8).max(4096)
    }

    fn stats_of(&self, key: &str) -> Arc<OutboxStats> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).entry(key.to_owned()).or_default().clone()
    }

    /// Registers the outboxes on disk that no configured sink owns, with what they hold.
    fn find_orphans(&mut self) {
        let Ok(entries) = fs::read_dir(&self.settings.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir() || !key::is_valid(&name) || self.configured.contains(&name) {
                continue;
            }
            let already = self.registry.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&name);
            if already {
                continue;
            }
            if let Ok((outbox, _)) = SinkOutbox::open_retaining(
                &entry.path(),
                self.settings.max_bytes,
                self.segment_bytes(),
                self.settings.retain,
            ) {
                let stats = self.stats_of(&name);
                stats.configured.store(false, Ordering::Relaxed);
                publish(&stats, &outbox);
            }
        }
    }

    /// Whether sink `key` has an outbox: its events go through [`accept`](Self::accept).
    pub fn has(&self, key: &str) -> bool {
        self.open.contains_key(key)
    }

    /// Writes `event` (weighing `bytes` in memory) to sink `key`'s outbox; `None` when it has
    /// none.
    pub fn accept(&mut self, key: &str, event: &Event, bytes: usize, room: Room) -> Option<Admission> {
        let open = self.open.get_mut(key)?;
        let caught_up = open.loaded_until == open.outbox.next_number();
        let number = match open.outbox.append(event) {
            Ok(number) => number,
            Err(e) => {
                open.stats.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(report) = open.refusals.record(event.event_type, &event.id, Instant::now()) {
                    log_refusals(key, &report, &e);
                }
                return Some(Admission::Refused);
            }
        };
        open.stats.entries.store(open.outbox.pending(), Ordering::Relaxed);
        open.stats.bytes.store(open.outbox.bytes(), Ordering::Relaxed);
        if open.stats.oldest_ms.load(Ordering::Relaxed) == 0 {
            open.stats.oldest_ms.store(event.timestamp_ms, Ordering::Relaxed);
        }
        if caught_up && open.resident.len() < room.entries && open.resident_bytes + bytes <= room.bytes {
            open.resident.insert(number, bytes);
            open.resident_bytes += bytes;
            open.loaded_until = number + 1;
            // Nothing before it is left to read: a later read starts past it, not at an old
            // position it would have to scan on from.
            open.outbox.skip_reading_to_end();
            Some(Admission::Resident(number))
        } else {
            Some(Admission::OnDisk)
        }
    }

    /// Events of sink `key` to queue in memory now, read back from disk in the order written:
    /// some once its memory is half free, none while it is all in memory already.
    pub fn refill(&mut self, key: &str, room: Room) -> Vec<(u64, Event)> {
        let Some(open) = self.open.get_mut(key) else { return Vec::new() };
        let next = open.outbox.next_number();
        if open.loaded_until >= next || open.resident.len() > room.entries / 2 || open.resident_bytes > room.bytes / 2 {
            return Vec::new();
        }
        let want = (room.entries - open.resident.len()).clamp(1, READ_BATCH);
        let read = match open.outbox.read(open.loaded_until, want) {
            Ok(read) => read,
            Err(e) => {
                error!(sink = %key, error = %e, "outbox: cannot read back undelivered events; trying again later");
                return Vec::new();
            }
        };
        // Fewer than asked for: everything written so far has been read.
        open.loaded_until = if read.len() < want { next } else { read.last().map_or(next, |(n, _)| n + 1) };
        read.into_iter()
            .filter(|(number, event)| {
                // Still in memory from before a rewind (in flight): not queued twice.
                if open.resident.contains_key(number) {
                    return false;
                }
                let bytes = event.weight();
                open.resident.insert(*number, bytes);
                open.resident_bytes += bytes;
                true
            })
            .collect()
    }

    /// Whether sink `key` has events on disk that are not in memory.
    pub fn has_unread(&self, key: &str) -> bool {
        self.open.get(key).is_some_and(|o| o.loaded_until < o.outbox.next_number())
    }

    /// Event `number` of sink `key` is done with (delivered, or refused for good): acknowledged
    /// on disk.
    pub fn done(&mut self, key: &str, number: u64) {
        let Some(open) = self.open.get_mut(key) else { return };
        if let Some(bytes) = open.resident.remove(&number) {
            open.resident_bytes -= bytes;
        }
        if let Err(e) = open.outbox.ack(number) {
            error!(sink = %key, number, error = %e, "outbox: cannot record a delivery; it will be sent again after a restart");
        }
        publish(&open.stats, &open.outbox);
    }

    /// Sink `key`'s events left memory unsent (the sink was disabled, or changed by a reload):
    /// they are read back from disk, from the oldest undelivered, when it may send again.
    pub fn unload(&mut self, key: &str) {
        let Some(open) = self.open.get_mut(key) else { return };
        open.resident.clear();
        open.resident_bytes = 0;
        open.outbox.rewind();
        open.loaded_until = open.outbox.first_number();
    }

    /// Writes again, behind what waits, the delivered events of sink `key` the outbox keeps
    /// that happened in `since_ms..until_ms`, in the order first written (so each stream's
    /// order holds), with their ids and bodies: read back and sent as any other.
    pub fn replay(&mut self, key: &str, since_ms: u64, until_ms: u64) -> Result<ReplayOutcome, ReplayError> {
        let open = self.open.get_mut(key).ok_or(ReplayError::UnknownSink)?;
        let mut outcome = ReplayOutcome { waiting: open.outbox.pending(), ..ReplayOutcome::default() };
        let mut cursor = open.outbox.scan_kept();
        loop {
            let batch = open.outbox.read_kept(&mut cursor, since_ms, until_ms, READ_BATCH).map_err(ReplayError::Io)?;
            if batch.is_empty() {
                break;
            }
            for event in &batch {
                match open.outbox.append_replay(event) {
                    Ok(_) => outcome.replayed += 1,
                    Err(AppendError::Full { .. }) => outcome.refused += 1,
                    Err(AppendError::Io(e)) => return Err(ReplayError::Io(e)),
                }
            }
        }
        open.outbox.flush().map_err(ReplayError::Io)?;
        open.stats.replayed.fetch_add(outcome.replayed, Ordering::Relaxed);
        publish(&open.stats, &open.outbox);
        if outcome.replayed > 0 {
            info!(sink = %key, events = outcome.replayed, refused = outcome.refused, since_ms, until_ms, "outbox: delivered events queued again by a replay");
        }
        if outcome.refused > 0 {
            error!(sink = %key, refused = outcome.refused, "outbox: a replay did not fit in outbox_max_bytes; the events past it were not queued");
        }
        Ok(outcome)
    }

    /// Undelivered events of sink `key`.
    pub fn pending(&self, key: &str) -> u64 {
        self.open.get(key).map_or(0, |o| o.outbox.pending())
    }

    /// Hands the events written to the kernel: done before any of them is attempted.
    pub fn flush(&mut self) {
        for (key, open) in &mut self.open {
            if let Err(e) = open.outbox.flush_events() {
                error!(sink = %key, error = %e, "outbox: cannot write");
            }
        }
    }

    /// Hands the events written to the kernel, fsyncs (acknowledgements too) every
    /// `outbox_fsync`, logs refusals due, reports orphans once; returns when to come back.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        let sync = now >= self.last_sync + self.settings.fsync;
        let mut next = None;
        let mut unsynced = false;
        let now_ms = super::clock::now_ms();
        for (key, open) in &mut self.open {
            open.outbox.expire(now_ms);
            if let Some(at) = open.outbox.next_expiry_ms() {
                // Wall-clock due time as an instant: a clock step only moves a deletion.
                let wait = Duration::from_millis(at.saturating_sub(now_ms).max(1000));
                next = next.into_iter().chain(Some(now + wait)).min();
            }
            publish(&open.stats, &open.outbox);
            let written = if sync { open.outbox.sync() } else { open.outbox.flush_events() };
            if let Err(e) = written {
                error!(sink = %key, error = %e, "outbox: cannot write");
            }
            unsynced |= open.outbox.is_unsynced();
            if let Some(report) = open.refusals.tick(now) {
                log_refusals(
                    key,
                    &report,
                    &AppendError::Full { bytes: open.outbox.bytes(), max: self.settings.max_bytes },
                );
            }
            next = next.into_iter().chain(open.refusals.next_report()).min();
        }
        if sync {
            self.last_sync = now;
        }
        if unsynced {
            next = next.into_iter().chain(Some(self.last_sync + self.settings.fsync)).min();
        }
        if now >= self.started + ORPHAN_GRACE {
            self.report_orphans();
        } else {
            next = next.into_iter().chain(Some(self.started + ORPHAN_GRACE)).min();
        }
        next
    }

    fn report_orphans(&mut self) {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for (key, stats) in registry.iter() {
            if stats.configured.load(Ordering::Relaxed) || self.reported_orphans.contains(key) {
                continue;
            }
            warn!(
                sink = %key,
                events = stats.entries.load(Ordering::Relaxed),
                dir = %self.settings.dir.join(key).display(),
                "outbox of a sink no longer configured: kept, not sent; configure a webhook with this id to send it, or delete the directory"
            );
            self.reported_orphans.push(key.clone());
        }
    }

    /// Flushes and fsyncs every outbox (the dispatcher is stopping); per key, what stays
    /// undelivered.
    pub fn close(&mut self) -> Vec<(String, u64)> {
        let mut left = Vec::new();
        for (key, open) in &mut self.open {
            if let Err(e) = open.outbox.sync() {
                error!(sink = %key, error = %e, "outbox: cannot sync");
            }
            if open.outbox.pending() > 0 {
                left.push((key.clone(), open.outbox.pending()));
            }
        }
        left.sort();
        left
    }
}

/// Shows an outbox's state on its counters.
fn publish(stats: &OutboxStats, outbox: &SinkOutbox) {
    stats.entries.store(outbox.pending(), Ordering::Relaxed);
    stats.bytes.store(outbox.bytes(), Ordering::Relaxed);
    stats.oldest_ms.store(outbox.oldest_timestamp_ms().unwrap_or(0), Ordering::Relaxed);
}

fn log_refusals(key: &str, report: &DropReport, cause: &AppendError) {
    error!(
        sink = %key,
        dropped = report.dropped,
        events = %report.events(),
        first_id = %report.first_id,
        last_id = %report.last_id,
        cause = %cause,
        "outbox: events not written, dropped (the outbox keeps the oldest undelivered events)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::event::connect_event;

    fn settings(name: &str) -> OutboxSettings {
        let dir = std::env::temp_dir().join(format!("ringcast-outboxes-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        OutboxSettings { dir, fsync: Duration::from_millis(200), max_bytes: 1 << 20, retain: Duration::ZERO }
    }

    fn event(n: u64, stream: &str) -> Event {
        let mut event = connect_event(&[]);
        event.id = format!("evt_{n:03}");
        event.stream_key = stream.to_owned();
        event
    }

    const ROOM: Room = Room { entries: 4, bytes: 1 << 20 };

    #[test]
    fn past_its_room_a_sink_waits_on_disk_and_is_read_back_in_order() {
        let settings = settings("spill");
        let mut outboxes = Outboxes::new(settings.clone(), OutboxRegistry::default());
        let key = "billing".to_owned();
        outboxes.configure(std::slice::from_ref(&key), &[]);
        let admissions: Vec<Admission> = (1..=10)
            .map(|n| outboxes.accept(&key, &event(n, if n % 2 == 0 { "a" } else { "b" }), 100, ROOM).unwrap())
            .collect();
        assert_eq!(&admissions[..4], &[1, 2, 3, 4].map(Admission::Resident));
        assert!(admissions[4..].iter().all(|a| *a == Admission::OnDisk), "{admissions:?}");
        assert!(outboxes.refill(&key, ROOM).is_empty(), "memory full: nothing read");
        for n in 1..=3 {
            outboxes.done(&key, n);
        }
        let read: Vec<String> = outboxes.refill(&key, ROOM).into_iter().map(|(_, e)| e.id).collect();
        assert_eq!(read, ["evt_005", "evt_006", "evt_007"], "the oldest waiting, up to the room");
        assert_eq!(
            outboxes.accept(&key, &event(11, "a"), 100, ROOM),
            Some(Admission::OnDisk),
            "behind the ones on disk"
        );
        assert_eq!(outboxes.pending(&key), 8);
        assert_eq!(outboxes.accept("nobody", &event(12, "a"), 100, ROOM), None, "no outbox: not this module's");
        let _ = fs::remove_dir_all(&settings.dir);
    }

    #[test]
    fn a_replay_queues_delivered_events_again_behind_what_waits() {
        let mut settings = settings("replay");
        settings.retain = Duration::from_secs(3600);
        let registry = OutboxRegistry::default();
        let mut outboxes = Outboxes::new(settings.clone(), registry.clone());
        let key = "billing".to_owned();
        outboxes.configure(std::slice::from_ref(&key), &[]);
        let now = super::super::clock::now_ms();
        let stamped = |n: u64, stream: &str| Event { timestamp_ms: now - 10_000 + n * 1_000, ..event(n, stream) };
        for n in 1..=4 {
            let Some(Admission::Resident(number)) = outboxes.accept(&key, &stamped(n, "a"), 100, ROOM) else {
                panic!("resident")
            };
            outboxes.done(&key, number);
        }
        outboxes.accept(&key, &stamped(5, "b"), 100, ROOM);
        assert_eq!(outboxes.pending(&key), 1);

        let outcome = outboxes.replay(&key, stamped(2, "a").timestamp_ms, now).unwrap();
        assert_eq!(outcome, ReplayOutcome { replayed: 3, refused: 0, waiting: 1 });
        assert_eq!(registry.lock().unwrap()[&key].replayed.load(Ordering::Relaxed), 3);
        assert!(outboxes.has_unread(&key));
        let read: Vec<Event> = outboxes.refill(&key, ROOM).into_iter().map(|(_, e)| e).collect();
        assert_eq!(read, [stamped(2, "a"), stamped(3, "a"), stamped(4, "a")], "the same events, in order");
        assert!(matches!(outboxes.replay("nobody", 0, now), Err(ReplayError::UnknownSink)));
        let _ = fs::remove_dir_all(&settings.dir);
    }

    #[test]
    fn an_outbox_whose_sink_went_is_kept_and_shown_unconfigured() {
        let settings = settings("orphan");
        let registry = OutboxRegistry::default();
        let mut outboxes = Outboxes::new(settings.clone(), registry.clone());
        let keys = ["gone".to_owned(), "deleted".to_owned()];
        outboxes.configure(&keys, &[]);
        for key in &keys {
            outboxes.accept(key, &event(1, "a"), 100, ROOM);
            outboxes.accept(key, &event(2, "a"), 100, ROOM);
        }
        outboxes.configure(&[], &["deleted".to_owned()]);
        assert!(!settings.dir.join("deleted").exists(), "a webhook deleted over the API takes its outbox");
        assert!(settings.dir.join("gone").exists());
        let stats = registry.lock().unwrap()["gone"].clone();
        assert!(!stats.configured.load(Ordering::Relaxed));
        assert_eq!(stats.entries.load(Ordering::Relaxed), 2);

        // The next start finds it on disk.
        let registry = OutboxRegistry::default();
        let mut outboxes = Outboxes::new(settings.clone(), registry.clone());
        outboxes.configure(&[], &[]);
        let stats = registry.lock().unwrap()["gone"].clone();
        assert_eq!((stats.entries.load(Ordering::Relaxed), stats.configured.load(Ordering::Relaxed)), (2, false));
        // Configured again: it is that sink's, with its events.
        outboxes.configure(&["gone".to_owned()], &[]);
        assert!(stats.configured.load(Ordering::Relaxed));
        let read: Vec<String> = outboxes.refill("gone", ROOM).into_iter().map(|(_, e)| e.id).collect();
        assert_eq!(read, ["evt_001", "evt_002"]);
        let _ = fs::remove_dir_all(&settings.dir);
    }
}
