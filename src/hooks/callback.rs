//! Blocking callbacks (`[notify]`, nginx-rtmp style): a form-encoded request whose reply
//! decides whether a client may connect, publish or play.
//!
//! Callbacks run on their own pool of blocking HTTP workers, apart from the event sinks', so
//! a backlog of event deliveries never delays a decision. The pool grows with demand: a storm
//! of players each waiting on a 50 ms auth endpoint needs as many requests in flight as the
//! endpoint can take, not `hook_concurrency` of them (2000 x 50 ms / 10 workers = 10 s). Idle
//! workers beyond the minimum exit after a while.
//!
//! A shard never waits on this pool: it sends the request over a channel and its session
//! awaits a oneshot reply, which suspends only that session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::event::Protocol;
use super::metrics::Histogram;
use super::sign;
use crate::config::{DEFAULT_SIGNATURE_HEADER, NotifyConfig, NotifyMethod, OnError, Secret, Signature};

/// Workers kept alive when idle: enough for steady traffic without a thread spawn per call.
const MIN_WORKERS: usize = 64;
/// Upper bound on callback workers (each is one request in flight). A 50 ms endpoint at this
/// concurrency answers ~10,000 calls a second.
const MAX_WORKERS: usize = 512;
/// A worker idle this long exits, if more than `MIN_WORKERS` are alive.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// Callback requests waiting for a worker; past it a request is answered by `on_error`.
const QUEUE_CAPACITY: usize = 65_536;
/// Small stacks: a worker only runs an HTTP request; 512 threads must not reserve 4 GiB.
const WORKER_STACK: usize = 256 * 1024;

/// Which callback, named as nginx-rtmp names it in the `call` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Connect,
    Publish,
    Play,
    Done,
    PublishDone,
    PlayDone,
    UpdatePublish,
    UpdatePlay,
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Connect => "connect",
            Call::Publish => "publish",
            Call::Play => "play",
            Call::Done => "done",
            Call::PublishDone => "publish_done",
            Call::PlayDone => "play_done",
            Call::UpdatePublish => "update_publish",
            Call::UpdatePlay => "update_play",
        }
    }
}

/// Field names a client's query arguments may never set (HOOKS.md: every field ringcast sends).
pub const RESERVED_FIELDS: &[&str] = &[
    "call",
    "protocol",
    "addr",
    "clientid",
    "app",
    "name",
    "url",
    "tcurl",
    "flashver",
    "swfurl",
    "pageurl",
    "type",
    "start",
    "duration",
    "reset",
    "bytes_in",
    "bytes_out",
    "time",
    "timestamp",
];

/// What ringcast knows of the client when it calls back.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub protocol: Option<Protocol>,
    pub addr: Option<SocketAddr>,
    pub conn_id: u64,
    pub app: String,
    /// The stream name without its query (empty for connect).
    pub name: String,
    /// The full URL the client asked for, query included.
    pub url: String,
    pub tc_url: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
    /// The client's query arguments, passed through (reserved names dropped).
    pub args: Vec<(String, String)>,
}

/// The form fields of a callback, in the order nginx-rtmp sends them, then the client's own
/// arguments minus any that would shadow a field ringcast sets.
pub fn form_fields(call: Call, client: &ClientInfo, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let protocol = client.protocol.map(Protocol::as_str).unwrap_or("rtmp");
    let addr = client.addr.map(|a| a.ip().to_string()).unwrap_or_default();
    let mut fields: Vec<(String, String)> = vec![
        ("call".into(), call.as_str().into()),
        ("protocol".into(), protocol.into()),
        ("addr".into(), addr),
        ("clientid".into(), client.conn_id.to_string()),
        ("app".into(), client.app.clone()),
        ("name".into(), client.name.clone()),
        ("url".into(), client.url.clone()),
        ("tcurl".into(), client.tc_url.clone()),
        ("flashver".into(), client.flash_ver.clone()),
        ("swfurl".into(), client.swf_url.clone()),
        ("pageurl".into(), client.page_url.clone()),
    ];
    fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let passed_through: Vec<(String, String)> = client
        .args
        .iter()
        .filter(|(k, _)| !RESERVED_FIELDS.contains(&k.as_str()) && !fields.iter().any(|(f, _)| f == k))
        .cloned()
        .collect();
    fields.extend(passed_through);
    fields
}

/// What a callback's reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed under another stream name (a 3xx with `Location`).
    Rename(String),
    Deny {
        reason: String,
    },
}

/// 2xx allows; 3xx with a Location renames to its last path segment; anything else denies.
pub fn interpret(status: u16, location: Option<&str>) -> Decision {
    match status {
        200..=299 => Decision::Allow,
        300..=399 => match location.and_then(last_path_segment) {
            Some(name) => Decision::Rename(name),
            None => Decision::Deny { reason: format!("callback answered {status} without a usable Location") },
        },
        _ => Decision::Deny { reason: format!("callback answered {status}") },
    }
}

/// `rtmp://host/app/cam2?x=1` -> `cam2`; nginx-rtmp takes the last segment the same way.
fn last_path_segment(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next().unwrap_or_default();
    let segment = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    (!segment.is_empty()).then(|| segment.to_owned())
}

/// One request for the pool.
#[derive(Debug)]
pub struct CallbackRequest {
    pub call: Call,
    pub url: String,
    pub fields: Vec<(String, String)>,
}

struct Job {
    request: CallbackRequest,
    reply: Option<oneshot::Sender<Decision>>,
    queued_at: Instant,
}

/// The callback lane's queue. A mutex and a condition variable rather than a channel: with
/// hundreds of idle workers, a channel's receivers spin before they park and a burst of
/// callbacks woke them all (measured: several CPU-seconds in a 2000-player storm);
/// `notify_one` wakes exactly one worker per request.
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

/// Counters of the callback lane.
#[derive(Debug, Default)]
pub struct CallbackStats {
    pub requests: AtomicU64,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    /// Timeouts, refused connections, a full queue: answered by `on_error`.
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
    /// Time from a session asking to its answer, queueing included.
    pub latency: Histogram,
}

/// The callback worker pool.
pub struct CallbackPool {
    jobs: JobQueue,
    agent: ureq::Agent,
    method: NotifyMethod,
    on_error: OnError,
    /// `[notify] secret`: every callback is then signed like a webhook (HOOKS.md, Signing).
    secret: Option<Secret>,
    signature: Signature,
    /// Numbers the signed requests' ids (`webhook-id`), unique for the process's life.
    signed: AtomicU64,
    workers: AtomicUsize,
    idle: AtomicUsize,
    pub stats: CallbackStats,
}

impl CallbackPool {
    pub fn new(notify: &NotifyConfig) -> Arc<CallbackPool> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(notify.timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .max_idle_connections(MAX_WORKERS)
            .max_idle_connections_per_host(MAX_WORKERS)
            .user_agent(concat!("ringcast/", env!("CARGO_PKG_VERSION")))
            .build();
        let pool = Arc::new(CallbackPool {
            jobs: JobQueue::default(),
            agent: super::resolver::agent(config),
            method: notify.method,
            on_error: notify.on_error,
            secret: notify.secret.clone(),
            signature: notify.signature,
            signed: AtomicU64::new(0),
            workers: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            stats: CallbackStats::default(),
        });
        for _ in 0..MIN_WORKERS {
            pool.spawn_worker();
        }
        pool
    }

    /// Sends a callback whose reply matters; the returned receiver yields the decision, with
    /// `on_error` already applied to failures.
    pub fn ask(self: &Arc<Self>, request: CallbackRequest) -> oneshot::Receiver<Decision> {
        let (reply, receiver) = oneshot::channel();
        self.submit(request, Some(reply));
        receiver
    }

    /// Sends a callback whose reply is not awaited (done, or update without update_strict).
    pub fn tell(self: &Arc<Self>, request: CallbackRequest) {
        self.submit(request, None);
    }

    fn submit(self: &Arc<Self>, request: CallbackRequest, reply: Option<oneshot::Sender<Decision>>) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let job = Job { request, reply, queued_at: Instant::now() };
        let waiting = match self.jobs.push(job) {
            Ok(waiting) => waiting,
            Err(job) => {
                // Full queue: answer now rather than block the shard.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                error!(call = job.request.call.as_str(), url = %job.request.url, "callback queue full; applying on_error");
                self.answer(job, Err("callback queue full".to_owned()));
                return;
            }
        };
        // Grow while requests wait for workers (not just while none is idle: a worker that
        // was just woken still counts as idle until it takes its job), so a storm gets as
        // many requests in flight as it needs, up to MAX_WORKERS.
        if waiting > self.idle.load(Ordering::Relaxed) && self.workers.load(Ordering::Relaxed) < MAX_WORKERS {
            self.spawn_worker();
        }
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
                    self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
                    let outcome = self.execute(&job.request);
                    self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                    self.answer(job, outcome);
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

    /// Performs the HTTP request: Ok((status, Location)) or the transport error.
    fn execute(&self, request: &CallbackRequest) -> Result<(u16, Option<String>), String> {
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&request.fields).finish();
        // Signed like a webhook: the signature covers the form (the body for POST, the query
        // string for GET, which carries the same fields).
        let signature = match &self.secret {
            Some(secret) => {
                let id = format!("cb_{:x}_{}", super::now_ms(), self.signed.fetch_add(1, Ordering::Relaxed));
                let now_secs = super::now_ms() / 1000;
                sign::signature_headers(
                    self.signature,
                    DEFAULT_SIGNATURE_HEADER,
                    &[secret],
                    &id,
                    now_secs,
                    encoded.as_bytes(),
                )
            }
            None => Vec::new(),
        };
        let response = match self.method {
            NotifyMethod::Post => {
                let mut builder =
                    self.agent.post(&request.url).header("Content-Type", "application/x-www-form-urlencoded");
                for (name, value) in &signature {
                    builder = builder.header(name, value);
                }
                builder.send(encoded.as_bytes())
            }
            NotifyMethod::Get => {
                let separator = if request.url.contains('?') { '&' } else { '?' };
                let mut builder = self.agent.get(format!("{}{separator}{encoded}", request.url));
                for (name, value) in &signature {
                    builder = builder.header(name, value);
                }
                builder.call()
            }
        };
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok((status, location))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    fn answer(&self, job: Job, outcome: Result<(u16, Option<String>), String>) {
        let call = job.request.call;
        let decision = match outcome {
            Ok((status, location)) => {
                let decision = interpret(status, location.as_deref());
                debug!(call = call.as_str(), url = %job.request.url, status, ?decision, "callback answered");
                decision
            }
            Err(reason) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                error!(call = call.as_str(), url = %job.request.url, error = %reason, on_error = %self.on_error, "callback failed");
                match self.on_error {
                    OnError::Allow => Decision::Allow,
                    OnError::Deny => Decision::Deny { reason: format!("callback failed: {reason}") },
                }
            }
        };
        match decision {
            Decision::Deny { .. } => self.stats.denied.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.allowed.fetch_add(1, Ordering::Relaxed),
        };
        self.stats.latency.record(job.queued_at.elapsed());
        if let Some(reply) = job.reply {
            // The session may have gone meanwhile (client hung up): nobody to tell.
            let _ = reply.send(decision);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interprets_replies_like_nginx_rtmp() {
        assert_eq!(interpret(200, None), Decision::Allow);
        assert_eq!(interpret(204, None), Decision::Allow);
        assert_eq!(interpret(302, Some("rtmp://host/live/cam2?x=1")), Decision::Rename("cam2".into()));
        assert_eq!(interpret(301, Some("cam3")), Decision::Rename("cam3".into()));
        assert!(matches!(interpret(302, None), Decision::Deny { .. }));
        assert!(matches!(interpret(403, None), Decision::Deny { .. }));
        assert!(matches!(interpret(500, None), Decision::Deny { .. }));
    }

    #[test]
    fn client_arguments_never_override_reserved_fields() {
        let client = ClientInfo {
            app: "live".into(),
            name: "cam1".into(),
            conn_id: 7,
            args: vec![
                ("call".into(), "play".into()),
                ("name".into(), "other".into()),
                ("addr".into(), "1.2.3.4".into()),
                ("token".into(), "abc".into()),
                ("type".into(), "record".into()),
            ],
            ..ClientInfo::default()
        };
        let fields = form_fields(Call::Publish, &client, &[("type", "live".into())]);
        let get = |k: &str| fields.iter().filter(|(f, _)| f == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("call"), ["publish"]);
        assert_eq!(get("name"), ["cam1"]);
        assert_eq!(get("addr"), [""]);
        assert_eq!(get("type"), ["live"]);
        assert_eq!(get("token"), ["abc"]);
        assert_eq!(get("clientid"), ["7"]);
    }
}
