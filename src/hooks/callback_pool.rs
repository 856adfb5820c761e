//! Blocking workers for `https://` callbacks (plain-HTTP ones run on the shards, see
//! [`super::callback_lane`], which is handed this pool).
//!
//! A TLS handshake is a millisecond of CPU: on a shard it would stall every session there, so
//! these requests go over a channel to ureq workers, and the asking session awaits a oneshot
//! reply, which suspends only that session. The pool grows while requests wait for a worker,
//! up to [`MAX_WORKERS`] requests in flight; idle workers beyond the minimum exit after a
//! while. Nothing starts before the first `https://` callback: a server whose endpoints are all
//! plain HTTP runs no callback threads at all.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{error, warn};
use ureq::tls::RootCerts;

use super::agent;
use super::callback::{Answer, MAX_ANSWER_BODY, Outcome, Prepared};
use crate::protocol::http::cache_max_age;

/// Workers kept alive when idle: enough for steady traffic without a thread spawn per call.
const MIN_WORKERS: usize = 8;
/// Upper bound on workers (each is one request in flight). A 50 ms endpoint at this
/// concurrency answers ~10,000 calls a second.
const MAX_WORKERS: usize = 512;
/// A worker idle this long exits, if more than `MIN_WORKERS` are alive.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// Requests waiting for a worker; past it a request fails at once (and `on_error` decides).
const QUEUE_CAPACITY: usize = 65_536;
/// Small stacks: a worker only runs an HTTP request; 512 threads must not reserve 4 GiB.
const WORKER_STACK: usize = 256 * 1024;

struct Job {
    request: Prepared,
    reply: oneshot::Sender<Outcome>,
}

/// The pool's queue. A mutex and a condition variable rather than a channel: with hundreds of
/// idle workers, a channel's receivers spin before they park and a burst of callbacks woke
/// them all (measured: several CPU-seconds in a 2000-player storm); `notify_one` wakes
/// exactly one worker per request.
#[derive(Default)]
struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

impl JobQueue {
    /// Queues a job and returns how many wait now, or gives it back when the queue is full.
    fn push(&self, job: Job) -> Result<usize, Job> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= QUEUE_CAPACITY {
            return Err(job);
        }
        jobs.push_back(job);
        let waiting = jobs.len();
        drop(jobs);
        self.ready.notify_one();
        Ok(waiting)
    }

    /// The next job, waiting up to `timeout` for one.
    fn pop(&self, timeout: Duration) -> Option<Job> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let (mut jobs, _) =
            self.ready.wait_timeout_while(jobs, timeout, |jobs| jobs.is_empty()).unwrap_or_else(|p| p.into_inner());
        jobs.pop_front()
    }
}

/// The pool of one server, shared by every shard's callback lane.
pub struct CallbackPool {
    /// `[notify] timeout`, held by the agent for a whole request.
    timeout: Duration,
    /// `tls_ca_file`: https callbacks trust what webhooks trust.
    tls_ca_file: Option<PathBuf>,
    workers: OnceLock<Arc<Workers>>,
}

impl CallbackPool {
    /// A pool whose agent will trust what webhooks trust (the system roots, plus
    /// `tls_ca_file`). Starts nothing yet.
    pub fn new(timeout: Duration, tls_ca_file: Option<&Path>) -> Arc<CallbackPool> {
        Arc::new(CallbackPool { timeout, tls_ca_file: tls_ca_file.map(Path::to_owned), workers: OnceLock::new() })
    }

    /// Sends `request`; the receiver yields what came back.
    pub fn ask(&self, request: Prepared) -> oneshot::Receiver<Outcome> {
        self.workers.get_or_init(|| Workers::start(self.timeout, self.tls_ca_file.as_deref())).ask(request)
    }
}

/// The started pool: its queue, its agent and its threads.
struct Workers {
    jobs: JobQueue,
    agent: ureq::Agent,
    workers: AtomicUsize,
    idle: AtomicUsize,
}

impl Workers {
    fn start(timeout: Duration, tls_ca_file: Option<&Path>) -> Arc<Workers> {
        let roots = agent::trust(tls_ca_file).unwrap_or_else(|error| {
            // Checked at startup; only a CA file changed since then gets here.
            error!(%error, "callbacks fall back to the system trust store");
            RootCerts::PlatformVerifier
        });
        let agent = agent::agent_with(timeout, roots, MAX_WORKERS, MAX_WORKERS);
        let pool = Arc::new(Workers {
            jobs: JobQueue::default(),
            agent,
            workers: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        });
        for _ in 0..MIN_WORKERS {
            pool.spawn_worker();
        }
        pool
    }

    fn ask(self: &Arc<Self>, request: Prepared) -> oneshot::Receiver<Outcome> {
        let (reply, receiver) = oneshot::channel();
        let waiting = match self.jobs.push(Job { request, reply }) {
            Ok(waiting) => waiting,
            Err(job) => {
                // Full queue: answer now rather than block the shard.
                error!(url = %crate::redact::url(&job.request.url), "callback queue full");
                let _ = job.reply.send(Err("callback queue full".to_owned()));
                return receiver;
            }
        };
        // Grow while requests wait for workers (not just while none is idle: a worker that
        // was just woken still counts as idle until it takes its job), so a burst gets as
        // many requests in flight as it needs, up to MAX_WORKERS.
        if waiting > self.idle.load(Ordering::Relaxed) && self.workers.load(Ordering::Relaxed) < MAX_WORKERS {
            self.spawn_worker();
        }
        receiver
    }

    fn spawn_worker(self: &Arc<Self>) {
        self.workers.fetch_add(1, Ordering::Relaxed);
        let pool = self.clone();
        let spawned =
            thread::Builder::new().name("hook-callback".into()).stack_size(WORKER_STACK).spawn(move || pool.work());
        if let Err(error) = spawned {
            self.workers.fetch_sub(1, Ordering::Relaxed);
            warn!(%error, "cannot start a callback worker");
        }
    }

    fn work(self: Arc<Self>) {
        loop {
            self.idle.fetch_add(1, Ordering::Relaxed);
            let received = self.jobs.pop(IDLE_EXIT);
            self.idle.fetch_sub(1, Ordering::Relaxed);
            match received {
                Some(job) => {
                    let outcome = self.execute(&job.request);
                    // The session may have gone meanwhile (client hung up): nobody to tell.
                    let _ = job.reply.send(outcome);
                }
                None => {
                    let workers = self.workers.load(Ordering::Relaxed);
                    if workers > MIN_WORKERS
                        && self
                            .workers
                            .compare_exchange(workers, workers - 1, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        return;
                    }
                }
            }
        }
    }

    fn execute(&self, request: &Prepared) -> Outcome {
        let response = if request.method == "POST" {
            let mut builder = self.agent.post(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            builder.send(&request.body[..])
        } else {
            let mut builder = self.agent.get(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            builder.call()
        };
        match response {
            Ok(mut response) => {
                let headers = response.headers();
                let location = headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let max_age = cache_max_age(headers.get_all("cache-control").iter().filter_map(|v| v.to_str().ok()));
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let status = response.status().as_u16();
                let mut body = Vec::new();
                // A body that fails halfway still decided by its status; the dialects that
                // read it refuse what they cannot parse.
                let _ = response.body_mut().as_reader().take(MAX_ANSWER_BODY as u64).read_to_end(&mut body);
                Ok(Answer { status, location, max_age, content_type, body })
            }
            Err(error) => Err(error.to_string()),
        }
    }
}
