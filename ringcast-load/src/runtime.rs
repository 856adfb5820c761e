//! Worker threads (one tokio-uring runtime each), the state they share with the main thread,
//! and how a run stops.
//!
//! The main thread orchestrates: it decides when launches may begin (`go`), when the run ends
//! (`stop`), and samples counters for progress. Workers only poll those atomics (every
//! [`POLL`]), so no cross-thread waker or channel is needed and the hot path touches no lock.
//! Inside a worker, a [`LocalStop`] fans the stop out to every connection task.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How often workers look at the shared flags.
pub const POLL: Duration = Duration::from_millis(20);
/// How long a worker waits for its tasks to wind down after the stop.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Submission queue entries per ring: thousands of connections each keep an operation in
/// flight; a larger queue means fewer forced submits during a connection storm.
const RING_ENTRIES: u32 = 4096;

/// Set from the signal handler; read by the main thread.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: anything else is not async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM end the run cleanly (results are still printed) instead of killing it.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Counters and flags shared by every thread. Counters are totals over all connections;
/// per-connection detail lives in each worker's records.
pub struct Shared {
    epoch: Instant,
    stop: AtomicBool,
    /// Micros after `epoch` when launches start; `u64::MAX` until the main thread says go.
    go_us: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Connections that reached their goal (playing, publishing, connected).
    pub established: AtomicUsize,
    /// Connections that failed before their goal.
    pub failed: AtomicUsize,
    /// Connections that ended after their goal but before the stop.
    pub dropped: AtomicUsize,
    /// Connections finished (any outcome).
    pub finished: AtomicUsize,
    pub publishers_ready: AtomicUsize,
    pub publishers_failed: AtomicUsize,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            go_us: AtomicU64::new(u64::MAX),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            established: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            publishers_ready: AtomicUsize::new(0),
            publishers_failed: AtomicUsize::new(0),
        })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Lets launches begin, with `at` as time zero of every schedule.
    pub fn go(&self, at: Instant) {
        let us = at.saturating_duration_since(self.epoch).as_micros() as u64;
        self.go_us.store(us, Ordering::Relaxed);
    }

    pub fn go_time(&self) -> Option<Instant> {
        match self.go_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(self.epoch + Duration::from_micros(us)),
        }
    }

    /// Waits (polling) for `go`; `None` if the run stopped first.
    pub async fn wait_go(&self) -> Option<Instant> {
        loop {
            if self.stopped() {
                return None;
            }
            if let Some(at) = self.go_time() {
                return Some(at);
            }
            tokio::time::sleep(POLL / 4).await;
        }
    }
}

/// A worker's view of the stop: one flag and one wake-up for all its tasks.
#[derive(Default)]
pub struct LocalStop {
    flag: Cell<bool>,
    notify: Notify,
}

impl LocalStop {
    pub fn trigger(&self) {
        self.flag.set(true);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.flag.get()
    }

    pub async fn wait(&self) {
        loop {
            // Registered before the check, so a trigger in between is not missed.
            let notified = self.notify.notified();
            if self.flag.get() {
                return;
            }
            notified.await;
        }
    }
}

/// Waits for launch `id`'s turn in a launch paced at `rate` a second from `go` (all at once when
/// `rate` is 0). False once the run has stopped: launch nothing more.
pub async fn wait_turn(go: tokio::time::Instant, id: usize, rate: f64, stop: &LocalStop) -> bool {
    if rate > 0.0 {
        let at = go + Duration::from_secs_f64(id as f64 / rate);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => true,
            _ = stop.wait() => false,
        }
    } else {
        !stop.is_set()
    }
}

/// Live tasks of a worker, so it can wait for them to record their results.
#[derive(Default)]
pub struct Tasks {
    active: Cell<usize>,
    idle: Notify,
}

impl Tasks {
    /// Spawns a task that counts as live until it returns.
    pub fn spawn<F: Future<Output = ()> + 'static>(self: &Rc<Self>, future: F) {
        self.active.set(self.active.get() + 1);
        let tasks = self.clone();
        tokio::task::spawn_local(async move {
            future.await;
            tasks.active.set(tasks.active.get() - 1);
            if tasks.active.get() == 0 {
                tasks.idle.notify_waiters();
            }
        });
    }

    pub fn active(&self) -> usize {
        self.active.get()
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// What a worker's scenario code gets.
pub struct Worker {
    pub index: usize,
    pub threads: usize,
    pub shared: Arc<Shared>,
    pub stop: Rc<LocalStop>,
    pub tasks: Rc<Tasks>,
}

impl Worker {
    /// Starts this worker's share of `count` launches (ids `index`, `index + threads`, ...),
    /// paced at `rate` a second from the go signal (all at once when 0): `launch(id, go)` for
    /// each in turn, which may wait (a concurrency limit) and returns false to launch no more.
    pub fn launch_share<L, F>(&self, count: usize, rate: f64, mut launch: L)
    where
        L: FnMut(usize, tokio::time::Instant) -> F + 'static,
        F: Future<Output = bool>,
    {
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let (index, threads) = (self.index, self.threads);
        self.tasks.spawn(async move {
            let Some(go) = shared.wait_go().await else {
                return;
            };
            let go = tokio::time::Instant::from_std(go);
            for id in (index..count).step_by(threads) {
                if !wait_turn(go, id, rate, &stop).await || !launch(id, go).await {
                    return;
                }
            }
        });
    }

    /// Waits for the stop, then for the tasks to finish (bounded by a grace period).
    /// Returns the tasks still running when the grace ran out.
    pub async fn finish(&self) -> usize {
        self.stop.wait().await;
        let _ = tokio::time::timeout(STOP_GRACE, self.tasks.wait_idle()).await;
        self.tasks.active()
    }
}

/// Starts `threads` workers, each running `body` on its own tokio-uring runtime.
pub fn spawn_workers<F, Fut, R>(threads: usize, shared: &Arc<Shared>, body: F) -> Result<Vec<JoinHandle<R>>, String>
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    let body = Arc::new(body);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let body = body.clone();
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("load-{index}"))
            .spawn(move || {
                tokio_uring::builder().entries(RING_ENTRIES).start(async move {
                    let stop = Rc::new(LocalStop::default());
                    let watcher_stop = stop.clone();
                    let watcher_shared = shared.clone();
                    tokio::task::spawn_local(async move {
                        while !watcher_shared.stopped() {
                            tokio::time::sleep(POLL).await;
                        }
                        watcher_stop.trigger();
                    });
                    let worker = Worker { index, threads, shared, stop, tasks: Rc::new(Tasks::default()) };
                    body(worker).await
                })
            })
            .map_err(|e| format!("cannot start worker thread {index}: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Joins the workers; a worker that panicked (an io_uring runtime that could not start, say)
/// is reported, not propagated.
pub fn join_workers<R>(handles: Vec<JoinHandle<R>>) -> (Vec<R>, Vec<String>) {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (index, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(result) => results.push(result),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                errors.push(format!("worker {index} failed: {message}"));
            }
        }
    }
    (results, errors)
}

/// A small deterministic generator for handshake seeds and publisher ids: no need for
/// cryptographic randomness in a load client.
pub fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A per-connection seed that differs between runs and connections.
pub fn seed(global: usize) -> [u8; 32] {
    let base =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ (std::process::id() as u64) << 32;
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(base ^ (global as u64) << 8 ^ i as u64).to_le_bytes());
    }
    seed
}
