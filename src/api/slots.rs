//! The admin API's connection slots, and how a full table makes room: by closing the connection
//! that has waited longest for its next request, not by refusing the newcomer.
//!
//! A slowloris client opens connections and trickles bytes to keep each one waiting for the
//! rest of its head. Refusing new connections when every slot is taken hands the API to whoever
//! opened connections first: 35 of 40 `/healthz` checks got 503 during such an attack. Evicting
//! the oldest waiting connection instead means a client that sends its request at once (a
//! health check, Prometheus, curl) always gets a slot: the attacker's connections are older.
//! Only connections that are being answered are safe from eviction; when every slot is busy
//! answering, a newcomer gets 503.
//!
//! What happens under pressure is counted (`/metrics`) and logged as one summary line per
//! [`REPORT_INTERVAL`] at most, never a line per connection.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::warn;

/// At most one pressure summary line per this long.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Counters of what the slots did under pressure, for `/metrics`.
#[derive(Debug, Default)]
pub struct SlotStats {
    /// Waiting connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// New connections answered 503 because every slot was busy answering.
    pub refused: AtomicU64,
    /// Requests that did not arrive within their deadline (408).
    pub timed_out: AtomicU64,
}

/// One open connection.
struct Slot {
    id: u64,
    /// Since when it has been waiting for (or reading) its next request.
    waiting_since: Instant,
    /// Being answered: not evictable.
    busy: bool,
    /// A handle to shut the socket down from the accept thread, which ends the connection's
    /// blocked read at once.
    socket: TcpStream,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: Vec<Slot>,
}

/// What the last summary line has not reported yet.
#[derive(Default)]
struct Unreported {
    last_report: Option<Instant>,
    evicted: u64,
    refused: u64,
    timed_out: u64,
}

/// The slot table: at most `capacity` connections.
pub struct Slots {
    capacity: usize,
    table: Mutex<Table>,
    unreported: Mutex<Unreported>,
    pub stats: SlotStats,
}

/// Why a connection could not get a slot.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Slots {
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots { capacity, table: Mutex::default(), unreported: Mutex::default(), stats: SlotStats::default() })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing that holds the lock can panic half-way through a change.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `socket` (a clone of the connection's stream), closing the connection
    /// that has waited longest if the table is full. `Err(Full)` when every slot is busy.
    pub fn take(self: &Arc<Self>, socket: TcpStream, now: Instant) -> Result<SlotGuard, Full> {
        let mut table = self.table();
        if table.open.len() >= self.capacity {
            let oldest = table
                .open
                .iter()
                .enumerate()
                .filter(|(_, slot)| !slot.busy)
                .min_by_key(|(_, slot)| slot.waiting_since)
                .map(|(index, _)| index);
            let Some(index) = oldest else {
                drop(table);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.note(now, |u| u.refused += 1);
                return Err(Full);
            };
            let evicted = table.open.swap_remove(index);
            let _ = evicted.socket.shutdown(Shutdown::Both);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            self.note(now, |u| u.evicted += 1);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.open.push(Slot { id, waiting_since: now, busy: false, socket });
        Ok(SlotGuard { slots: self.clone(), id })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.table().open.len()
    }

    /// Counts a request that missed its deadline.
    pub fn timed_out(&self, now: Instant) {
        self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        self.note(now, |u| u.timed_out += 1);
    }

    fn note(&self, now: Instant, count: impl FnOnce(&mut Unreported)) {
        let mut unreported = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
        count(&mut unreported);
        report_if_due(&mut unreported, now);
    }

    /// Logs what is unreported once the interval has passed; the API's sweeper calls it so a
    /// burst's last counts are logged even if nothing follows.
    pub fn tick(&self, now: Instant) {
        let mut unreported = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
        report_if_due(&mut unreported, now);
    }

    fn set(&self, id: u64, busy: bool, now: Instant) {
        if let Some(slot) = self.table().open.iter_mut().find(|slot| slot.id == id) {
            slot.busy = busy;
            slot.waiting_since = now;
        }
    }
}

fn report_if_due(unreported: &mut Unreported, now: Instant) {
    let pending = unreported.evicted + unreported.refused + unreported.timed_out;
    let due = unreported.last_report.is_none_or(|at| now.saturating_duration_since(at) >= REPORT_INTERVAL);
    if pending == 0 || !due {
        return;
    }
    warn!(
        evicted = unreported.evicted,
        refused = unreported.refused,
        timed_out = unreported.timed_out,
        "admin API under connection pressure (slow or idle clients); counts since the last such line"
    );
    *unreported = Unreported { last_report: Some(now), ..Unreported::default() };
}

/// A connection's slot; dropping it frees the slot (if an eviction has not already).
pub struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
}

impl SlotGuard {
    /// A request arrived whole: answering it must not be cut short by an eviction.
    pub fn busy(&self) {
        self.slots.set(self.id, true, Instant::now());
    }

    /// Answered: the connection waits for its next request, evictable, from now.
    pub fn waiting(&self) {
        self.slots.set(self.id, false, Instant::now());
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.table().open.retain(|slot| slot.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (the server's end, the client's end).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn a_full_table_evicts_the_longest_waiting_idle_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(2);
        let t0 = Instant::now();
        let (a, mut a_client) = pair(&listener);
        let (b, _b_client) = pair(&listener);
        let guard_a = slots.take(a.try_clone().unwrap(), t0).unwrap();
        let guard_b = slots.take(b.try_clone().unwrap(), t0 + Duration::from_millis(1)).unwrap();
        assert_eq!(slots.open(), 2);

        let (c, _c_client) = pair(&listener);
        let guard_c = slots.take(c.try_clone().unwrap(), t0 + Duration::from_millis(2)).unwrap();
        assert_eq!(slots.open(), 2);
        assert_eq!(slots.stats.evicted.load(Ordering::Relaxed), 1);
        // The oldest, a, was shut down: its peer sees the end.
        a_client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(a_client.read(&mut [0u8; 8]).unwrap(), 0);
        // Its guard going later does not free someone else's slot.
        drop(guard_a);
        assert_eq!(slots.open(), 2);

        // Busy connections are never evicted; when all are busy, the newcomer is refused.
        guard_b.busy();
        guard_c.busy();
        let (d, _d_client) = pair(&listener);
        assert_eq!(slots.take(d, t0 + Duration::from_millis(3)).err(), Some(Full));
        assert_eq!(slots.stats.refused.load(Ordering::Relaxed), 1);
        guard_c.waiting();
        let (e, _e_client) = pair(&listener);
        let _guard_e = slots.take(e, Instant::now()).unwrap();
        assert_eq!(slots.stats.evicted.load(Ordering::Relaxed), 2);
        drop(guard_b);
        assert_eq!(slots.open(), 1);
    }
}
