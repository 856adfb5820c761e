//! One shard's callback lane: where its sessions ask and tell their callbacks.
//!
//! `http://` endpoints are called right here, as io_uring requests on the shard, over
//! keep-alive connections kept per endpoint. Nothing blocks: the asking session awaits its
//! reply and every other session keeps flowing. Up to `max_in_flight / shards` requests are
//! in flight on a shard; further ones wait for one to finish. This is what a connect storm
//! needs: 2000 players each waiting on a 50 ms endpoint cost one round trip, where a pool of
//! blocking workers cost 2000 x 50 ms / workers, and hundreds of worker threads waking at once
//! starved the shards of CPU (measured: p99 to first media 415-470 ms with up to 4096
//! workers, against about 200 ms without the callback).
//!
//! `https://` endpoints go to the blocking pool ([`super::callback_pool`]): a TLS handshake
//! is CPU work no shard may stall on.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell, Semaphore, oneshot};
use tokio_uring::net::TcpStream;

use tracing::debug;

use super::callback::{
    Answer, Call, CallbackRequest, Callbacks, ClientInfo, CurrentCallbacks, Decision, MAX_ANSWER_BODY, Outcome,
    Prepared,
};
use super::callback_pool::CallbackPool;
use super::dialect;
use crate::protocol::http::{Request, ResponseReader};

/// Idle keep-alive connections kept per endpoint on one shard.
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// Idle keep-alive connections kept by every shard's lane (`/metrics`): after a storm they are
/// hundreds of descriptors held for [`IDLE_KEEP`], which an operator (or a soak counting the
/// server's descriptors) should be able to tell from a leak.
static IDLE_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Keep-alive connections to plain-HTTP callback endpoints kept idle now, on every shard.
pub fn idle_connections() -> usize {
    IDLE_CONNECTIONS.load(Ordering::Relaxed)
}
/// An idle connection older than this is closed rather than reused: servers close idle
/// keep-alives after a while (nginx 75 s, Node.js 5 s), and a reused one they closed costs a
/// retry.
const IDLE_KEEP: Duration = Duration::from_secs(30);
/// How long a name's addresses are reused before it is looked up again.
const RESOLVED_KEEP: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered, so a storm does not look a broken name up 2000
/// times.
const FAILED_LOOKUP_KEEP: Duration = Duration::from_secs(1);
/// Bytes read at once; a callback's reply is a status line and a few headers.
const READ_CHUNK: usize = 4096;

/// Where to send a plain-HTTP callback.
#[derive(Debug)]
struct Endpoint {
    /// `host:port`: the `Host` header and the key of the idle connections.
    authority: String,
    host: String,
    port: u16,
    /// Path and query.
    target: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let shown = || crate::redact::url(url);
        let uri: ureq::http::Uri = url.parse().map_err(|e| format!("bad callback URL {}: {e}", shown()))?;
        let host = uri.host().ok_or_else(|| format!("callback URL {} has no host", shown()))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Endpoint { authority, host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, target })
    }
}

/// Why a round trip failed.
enum Failure {
    /// A reused connection that gave nothing back: the endpoint closed it while it was idle
    /// (the usual case), so the request goes again on a new connection.
    Stale,
    Other(String),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Other(error.to_string())
    }
}

/// Counts one callback in the in-flight gauge while it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn count(gauge: &'a AtomicU64) -> InFlight<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shuts a callback's socket down if the round trip on it is dropped halfway (timed out, or
/// the asking session went away). io_uring keeps a pending read's socket open until that read
/// completes, and a silent endpoint never completes it: without this, each such callback held
/// a descriptor (and the endpoint a connection) until the endpoint died. The shutdown ends the
/// read at once, and the descriptor is closed with it.
struct ShutDownIfAbandoned<'a>(&'a TcpStream);

impl Drop for ShutDownIfAbandoned<'_> {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for CallbackLane {
    fn drop(&mut self) {
        let kept: usize = self.idle.get_mut().values().map(Vec::len).sum();
        IDLE_CONNECTIONS.fetch_sub(kept, Ordering::Relaxed);
    }
}

/// A name's looked-up addresses, shared by every request that wanted them meanwhile.
struct Lookup {
    started: Instant,
    addresses: Rc<OnceCell<Result<Vec<SocketAddr>, String>>>,
}

pub struct CallbackLane {
    /// Taken anew for each callback: a reload (SIGHUP) changes them while sessions run.
    callbacks: Arc<CurrentCallbacks>,
    /// Where `https://` callbacks go: one pool per server, shared by every shard's lane.
    https_pool: Arc<CallbackPool>,
    /// Requests in flight on this shard.
    permits: Semaphore,
    idle: RefCell<HashMap<String, Vec<(TcpStream, Instant)>>>,
    lookups: RefCell<HashMap<String, Lookup>>,
    /// Told callbacks (done, update) still running, per call: shutdown lets them finish by
    /// its deadline and reports the rest.
    telling: RefCell<BTreeMap<&'static str, usize>>,
    told: Notify,
}

impl CallbackLane {
    /// The lane of one of `shards` shards.
    pub fn new(callbacks: Option<Arc<Callbacks>>, https_pool: Arc<CallbackPool>, shards: usize) -> Rc<CallbackLane> {
        CallbackLane::following(CurrentCallbacks::fixed(callbacks), https_pool, shards)
    }

    /// The lane of one of `shards` shards, calling whatever `callbacks` are current. Its
    /// share of `max_in_flight` is set here, from the callbacks current at start.
    pub fn following(
        callbacks: Arc<CurrentCallbacks>,
        https_pool: Arc<CallbackPool>,
        shards: usize,
    ) -> Rc<CallbackLane> {
        let max_in_flight =
            callbacks.get().map_or(crate::config::NotifyConfig::default().max_in_flight, |c| c.notify.max_in_flight);
        let in_flight = max_in_flight.div_ceil(shards.max(1)).max(1);
        Rc::new(CallbackLane {
            callbacks,
            https_pool,
            permits: Semaphore::new(in_flight),
            idle: RefCell::default(),
            lookups: RefCell::default(),
            telling: RefCell::default(),
            told: Notify::new(),
        })
    }

    /// Asks the callback for `call`, if one is configured; no callback allows. A decision
    /// remembered from an earlier reply's `Cache-Control: max-age` answers without a request.
    pub async fn decide(&self, call: Call, client: &ClientInfo, extra: &[(&str, String)]) -> Decision {
        // The client's app picks the set: its own under `[apps]`, else `[notify]`.
        let Some(callbacks) = self.callbacks.for_app(&client.app) else { return Decision::Allow };
        let Some(request) = dialect::request(&callbacks, call, client, extra) else { return Decision::Allow };
        let cache_key = callbacks.cache.is_enabled().then(|| request.cache_key());
        if let Some(key) = &cache_key {
            if let Some(decision) = callbacks.cache.get(key, Instant::now()) {
                callbacks.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                debug!(call = call.as_str(), ?decision, "callback decision from the cache");
                return decision;
            }
            callbacks.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        // Boxed: the request's state (connection, buffers, timers) would otherwise be part
        // of every session's future, asking or not: +1 KiB per idle connection, measured.
        Box::pin(self.call(&callbacks, request, cache_key)).await
    }

    /// Whether `call` is asked of a client of `app`: its callback set has an endpoint for it,
    /// in a dialect that sends it. A publish waits for `on_media` only then.
    pub fn asks(&self, call: Call, app: &str) -> bool {
        self.callbacks
            .for_app(app)
            .is_some_and(|callbacks| callbacks.url(call).is_some() && dialect::sends(callbacks.notify.dialect, call))
    }

    /// Tells the done callbacks that a publish or play ended.
    pub fn tell_done(self: &Rc<Self>, publish: bool, client: &ClientInfo, extra: &[(&str, String)]) {
        let specific = if publish { Call::PublishDone } else { Call::PlayDone };
        for call in [specific, Call::Done] {
            self.tell(call, client, extra);
        }
    }

    /// Sends a callback whose reply is not awaited.
    pub fn tell(self: &Rc<Self>, call: Call, client: &ClientInfo, extra: &[(&str, String)]) {
        let Some(callbacks) = self.callbacks.for_app(&client.app) else { return };
        if let Some(request) = dialect::request(&callbacks, call, client, extra) {
            self.spawn(callbacks, request, None);
        }
    }

    /// Sends an update callback; under `update_strict` the reply is returned to be awaited.
    pub fn update(
        self: &Rc<Self>,
        publish: bool,
        client: &ClientInfo,
        extra: &[(&str, String)],
    ) -> Option<oneshot::Receiver<Decision>> {
        let call = if publish { Call::UpdatePublish } else { Call::UpdatePlay };
        let callbacks = self.callbacks.for_app(&client.app)?;
        let request = dialect::request(&callbacks, call, client, extra)?;
        if callbacks.notify.update_strict {
            let (reply, receiver) = oneshot::channel();
            self.spawn(callbacks, request, Some(reply));
            Some(receiver)
        } else {
            self.spawn(callbacks, request, None);
            None
        }
    }

    /// Waits for the told callbacks still running, until `deadline`; returns those still
    /// running then, per call (they are abandoned with the shard).
    pub async fn drain(&self, deadline: Instant) -> Vec<(&'static str, usize)> {
        let waiting = async {
            while self.telling.borrow().values().any(|&n| n > 0) {
                self.told.notified().await;
            }
        };
        let _ = tokio::time::timeout_at(deadline.into(), waiting).await;
        self.telling.borrow().iter().filter(|(_, n)| **n > 0).map(|(call, n)| (*call, *n)).collect()
    }

    /// Runs `request` as its own task, so the session does not wait for it.
    fn spawn(
        self: &Rc<Self>,
        callbacks: Arc<Callbacks>,
        request: CallbackRequest,
        reply: Option<oneshot::Sender<Decision>>,
    ) {
        let lane = self.clone();
        let call = request.call.as_str();
        *self.telling.borrow_mut().entry(call).or_default() += 1;
        tokio::task::spawn_local(async move {
            let decision = lane.call(&callbacks, request, None).await;
            if let Some(reply) = reply {
                // The session may be gone; its answer no longer matters.
                let _ = reply.send(decision);
            }
            if let Some(running) = lane.telling.borrow_mut().get_mut(call) {
                *running -= 1;
            }
            lane.told.notify_waiters();
        });
    }

    /// Sends `request` and reads its answer; with a `cache_key`, a decision whose reply
    /// allows it is remembered for the reply's `max-age`.
    async fn call(&self, callbacks: &Callbacks, request: CallbackRequest, cache_key: Option<String>) -> Decision {
        let asked_at = Instant::now();
        callbacks.stats.requests.fetch_add(1, Ordering::Relaxed);
        // A guard, not a decrement at the end: a session that goes away while it waits drops
        // this future halfway, and the gauge must not keep counting it.
        let _in_flight = InFlight::count(&callbacks.stats.in_flight);
        let prepared = callbacks.prepare(&request);
        let outcome = if prepared.url.starts_with("http://") {
            match tokio::time::timeout(callbacks.notify.timeout, self.exchange(&prepared)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no reply within {:?}", callbacks.notify.timeout)),
            }
        } else {
            // The pool's agent holds the same timeout; a dropped reply means it stopped.
            self.https_pool.ask(prepared).await.unwrap_or_else(|_| Err("callback pool stopped".to_owned()))
        };
        let dialect = callbacks.notify.dialect;
        let decision = callbacks.settle(&request, &outcome, |answer| dialect::decide(dialect, answer), asked_at);
        if let (Some(key), Ok(Answer { max_age: Some(seconds), .. })) = (cache_key, &outcome) {
            callbacks.cache.insert(key, decision.clone(), Duration::from_secs(*seconds), Instant::now());
        }
        decision
    }

    /// One plain-HTTP request and its reply, on a kept connection when there is one.
    async fn exchange(&self, prepared: &Prepared) -> Outcome {
        let endpoint = Endpoint::parse(&prepared.url)?;
        let mut wire = Vec::with_capacity(256 + prepared.body.len());
        Request {
            method: prepared.method,
            target: &endpoint.target,
            host: &endpoint.authority,
            headers: &prepared.headers,
            body: &prepared.body,
        }
        .encode(&mut wire);
        // Never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        loop {
            let (stream, reused) = match self.take_idle(&endpoint.authority) {
                Some(stream) => (stream, true),
                None => (self.connect(&endpoint).await?, false),
            };
            let abandoned = ShutDownIfAbandoned(&stream);
            let (result, back) = round_trip(&stream, wire, prepared.method).await;
            // Whatever came back, nothing is in flight on the socket any more.
            std::mem::forget(abandoned);
            wire = back;
            match result {
                Ok((answer, reusable)) => {
                    if reusable {
                        self.keep_idle(&endpoint.authority, stream);
                    }
                    return Ok(answer);
                }
                Err(Failure::Stale) if reused => continue,
                Err(Failure::Stale) => return Err("connection closed before a reply".to_owned()),
                Err(Failure::Other(reason)) => return Err(reason),
            }
        }
    }

    fn take_idle(&self, authority: &str) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let kept = idle.get_mut(authority)?;
        while let Some((stream, since)) = kept.pop() {
            IDLE_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
            if since.elapsed() < IDLE_KEEP {
                return Some(stream);
            }
        }
        None
    }

    fn keep_idle(&self, authority: &str, stream: TcpStream) {
        let mut idle = self.idle.borrow_mut();
        let kept = idle.entry(authority.to_owned()).or_default();
        if kept.len() < MAX_IDLE_PER_ENDPOINT {
            kept.push((stream, Instant::now()));
            IDLE_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the kept connections unused for [`IDLE_KEEP`]. Without it, a server that went
    /// quiet after a storm would hold hundreds of them, long closed by the endpoint.
    fn sweep_idle(&self) {
        self.idle.borrow_mut().retain(|_, kept| {
            let before = kept.len();
            kept.retain(|(_, since)| since.elapsed() < IDLE_KEEP);
            IDLE_CONNECTIONS.fetch_sub(before - kept.len(), Ordering::Relaxed);
            !kept.is_empty()
        });
    }

    /// Sweeps the kept connections every [`IDLE_KEEP`] for as long as the lane lives. Call it
    /// once, on the shard's runtime.
    pub fn start_sweeping(self: &Rc<Self>) {
        let lane = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(IDLE_KEEP).await;
                match lane.upgrade() {
                    Some(lane) => lane.sweep_idle(),
                    None => return,
                }
            }
        });
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<TcpStream, String> {
        let addresses = self.resolve(&endpoint.host, endpoint.port).await?;
        let mut last_error = format!("{} resolved to no address", endpoint.host);
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    // A request is written whole at once; Nagle would only hold its tail.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(error) => last_error = format!("cannot connect to {address}: {error}"),
            }
        }
        Err(last_error)
    }

    /// The addresses of `host`: an IP literal at once, a name looked up off the shard (the
    /// system resolver blocks) and shared by every request that wants it meanwhile.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = format!("{host}:{port}");
        let addresses = {
            let mut lookups = self.lookups.borrow_mut();
            let stale = lookups.get(&key).is_none_or(|lookup| {
                let age = lookup.started.elapsed();
                let failed = matches!(lookup.addresses.get(), Some(Err(_)));
                age > RESOLVED_KEEP || (failed && age > FAILED_LOOKUP_KEEP)
            });
            if stale {
                lookups.insert(key.clone(), Lookup { started: Instant::now(), addresses: Rc::default() });
            }
            lookups.get(&key).map(|lookup| lookup.addresses.clone()).unwrap_or_default()
        };
        addresses
            .get_or_init(|| async move {
                let found = tokio::task::spawn_blocking(move || key.to_socket_addrs().map(Iterator::collect)).await;
                match found {
                    Ok(Ok(addresses)) => Ok(addresses),
                    Ok(Err(error)) => Err(format!("cannot resolve {host}: {error}")),
                    Err(error) => Err(format!("cannot resolve {host}: {error}")),
                }
            })
            .await
            .clone()
    }
}

/// Writes the request and reads its reply: the answer, and whether the connection can be
/// reused. Hands the request bytes back for a retry.
async fn round_trip(stream: &TcpStream, wire: Vec<u8>, method: &str) -> (Result<(Answer, bool), Failure>, Vec<u8>) {
    let (written, wire) = stream.write_all(wire).await;
    if let Err(error) = written {
        let failure = match error.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Failure::Stale,
            _ => Failure::Other(error.to_string()),
        };
        return (Err(failure), wire);
    }
    (read_reply(stream, method).await, wire)
}

async fn read_reply(stream: &TcpStream, method: &str) -> Result<(Answer, bool), Failure> {
    let mut reader = ResponseReader::new(method);
    let mut body = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut received = 0;
    loop {
        buf.clear();
        let (read, back) = stream.read(buf).await;
        buf = back;
        let n = match read {
            Ok(n) => n,
            Err(error) if received == 0 && error.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Failure::Stale);
            }
            Err(error) => return Err(error.into()),
        };
        if n == 0 {
            if received == 0 {
                return Err(Failure::Stale);
            }
            reader.handle_eof().map_err(|e| Failure::Other(e.to_string()))?;
        } else {
            received += n;
            pending.extend_from_slice(&buf[..n]);
            let used = reader
                .handle_input_with_body(&pending, |data| {
                    let room = MAX_ANSWER_BODY - body.len();
                    body.extend_from_slice(&data[..data.len().min(room)]);
                })
                .map_err(|e| Failure::Other(e.to_string()))?;
            pending.drain(..used);
        }
        if let Some(response) = reader.response() {
            // Bytes past the reply mean the endpoint is out of step with us: do not reuse. (A
            // reply ended by the close is never reusable: the reader says so.)
            let reusable = response.reusable && pending.is_empty();
            let answer = Answer {
                status: response.status,
                location: response.location.clone(),
                max_age: response.max_age,
                content_type: response.content_type.clone(),
                body,
            };
            return Ok((answer, reusable));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NotifyConfig;

    /// Whether the peer of `stream` has closed or shut down its side (unread data or not).
    fn peer_hung_up(stream: &std::net::TcpStream) -> bool {
        use std::os::fd::AsRawFd;
        let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready == 1 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
    }

    /// A session that goes away (kicked) while its callback waits drops the callback's future
    /// halfway: the in-flight gauge must count it while it waits and forget it once dropped,
    /// and its connection must close at once (the endpoint sees the hang-up while the shard
    /// still runs), or a silent endpoint would hold one descriptor per abandoned callback.
    #[test]
    fn an_abandoned_callback_is_forgotten_and_closes_its_connection() {
        // An endpoint that accepts (the kernel does, from the backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/on_play", silent.local_addr().unwrap());
        let notify = NotifyConfig { on_play: Some(url), timeout: Duration::from_secs(30), ..NotifyConfig::default() };
        let callbacks = Callbacks::new(&notify);
        let gauge = || callbacks.stats.in_flight.load(Ordering::Relaxed);
        let lane = CallbackLane::new(Some(callbacks.clone()), CallbackPool::new(notify.timeout, None), 1);
        tokio_uring::start(async {
            let client = ClientInfo::default();
            let asking = lane.decide(Call::Play, &client, &[]);
            let sent = async {
                while gauge() == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Connected and written: the request is on its way, the read pending.
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            tokio::select! {
                decision = asking => panic!("a silent endpoint decided: {decision:?}"),
                () = sent => {}
            }
            let (endpoint_side, _) = silent.accept().unwrap();
            let mut hung_up = false;
            for _ in 0..200 {
                hung_up = peer_hung_up(&endpoint_side);
                if hung_up {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(hung_up, "the abandoned callback's connection is still open");
        });
        assert_eq!(gauge(), 0, "the dropped callback is still counted in flight");
        assert_eq!(callbacks.stats.requests.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn endpoints_parse_with_default_port_and_path() {
        let e = Endpoint::parse("http://127.0.0.1:9000/on_play?x=1").unwrap();
        assert_eq!((e.authority.as_str(), e.port, e.target.as_str()), ("127.0.0.1:9000", 9000, "/on_play?x=1"));
        let e = Endpoint::parse("http://auth.local").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.host.as_str(), e.port, e.target.as_str()),
            ("auth.local", "auth.local", 80, "/")
        );
        let e = Endpoint::parse("http://[::1]:81/a").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 81));
        assert!(Endpoint::parse("not a url").is_err());
    }
}
