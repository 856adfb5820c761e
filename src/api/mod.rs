//! The admin HTTP API: health, Prometheus metrics, streams, clients, and webhooks managed at
//! run time (docs/hooks.md, "Admin API and metrics").
//!
//! # Shape
//!
//! A control plane sees a request now and then, so it stays off the io_uring shards: one
//! accept thread, a thread per connection with a small stack ([`CONNECTION_STACK`]), blocking
//! IO, HTTP/1.1 keep-alive. Requests are parsed with httparse and limited (head 64 KiB, 64
//! headers, body 1 MiB: 431 and 413 beyond; the head within 5 s of its first byte, the whole
//! request within 10 s: 408; 10 s idle between requests). Every answer is JSON (`{"error":
//! "..."}` for 4xx and 5xx) except `/metrics`. A handler that panicked answers 500; the server
//! keeps serving.
//!
//! At most [`MAX_CONNECTIONS`] are open. When a new one arrives at the limit, the connection
//! that has waited longest for its next request is closed to make room (`slots.rs`), so slow or
//! idle clients cannot lock out a health check; a newcomer gets 503 only if every connection is
//! being answered. Evictions, refusals and 408s are counted in `/metrics` and logged as one
//! summary line per 10 s at most.
//!
//! # Routes
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}`; never needs the token (load balancers, systemd checks) |
//! | `GET /`, `GET /ui/{file}` | the status page and its files (`page.rs`); never need the token (they hold no data) |
//! | `GET /metrics` | Prometheus text (see `metrics.rs`) |
//! | `GET /api/server` | `{version, uptime_sec, rtmp: {port}, http_flv: {port}}` (`streams.rs`) |
//! | `GET /api/streams` | `{"streams":[{key, live, publisher_shard, players, app, name, publisher, video, audio, bitrate_kbps, players_by_protocol, uptime_sec, play}]}` (`streams.rs`; the details need the shards behind the API, [`ApiState::with_control`]) |
//! | `GET /api/clients` | `{"clients":[{conn_id, shard, protocol, addr, role, stream, connected_at_ms}]}` |
//! | `DELETE /api/clients/{conn_id}` | kicks the session: `{"id", "kicked": true}`, or 404 |
//! | `GET /api/relays` | `{"relays":[{conn_id, direction, url, stream, shard, streaming, since_ms, bytes_in, bytes_out}]}`: pulls and pushes (docs/scaling-out.md); kicked like clients |
//! | `GET /api/webhooks` | `{"webhooks":[...]}`, config-file ones too (`"origin": "config"`) |
//! | `POST /api/webhooks` | 201, the webhook with its `secret` (generated when not given); a Dolby.io-style body gets Dolby's answer (`dolby.rs`) |
//! | `GET /api/webhooks/{id}` | the webhook, secret masked (`secret_hint`), stats, `disabled` |
//! | `PATCH /api/webhooks/{id}` | changes the keys given (`null`: back to the default); re-enables |
//! | `DELETE /api/webhooks/{id}` | `{"id", "deleted": true}` |
//! | `POST /api/webhooks/{id}/secret` | rotates: the new `secret` shown once; the previous one signs too until `rotation_grace` |
//! | `GET /api/outbox` | each webhook outbox: `{"outboxes":[{id, configured, entries, bytes, oldest_age_ms, refused, replayed}]}` |
//! | `POST /api/outbox/{id}/replay` | `{"since", "until"}`: delivered events kept sent again (`replay.rs`); 404 for an unknown outbox |
//!
//! `HEAD` works wherever `GET` does. A webhook's keys are those of `[[webhook]]`, validated by
//! the same code with the same messages. Config-file webhooks are read-only here (409).
//!
//! # Authentication
//!
//! With `api_token` configured, everything but `/healthz` wants `Authorization: Bearer
//! <token>`, `/metrics` included (Prometheus sends it with `authorization: {credentials: ...}`
//! in its scrape config); otherwise 401 with `WWW-Authenticate: Bearer`. The comparison takes
//! the same time wherever the tokens differ. Without a token the API is open and [`serve`]
//! logs a warning; it listens on loopback by default.
//!
//! # Persistence
//!
//! API webhooks are kept in `state_dir/webhooks.json` (0600; the directory is created 0700),
//! rewritten atomically on every change, before the change takes effect. [`ApiState::load_persisted`]
//! re-creates them at start-up with the same ids (the API's own ids, mapped to the
//! dispatcher's sink numbers) and any secret rotation still in its grace period.

mod dolby;
mod http;
mod metrics;
mod page;
mod replay;
mod slots;
mod store;
mod streams;
mod webhooks;

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{debug, error, info, warn};

use crate::config::{ApiToken, Config};
use crate::hooks::dispatch::Dispatcher;
use crate::hooks::{Hooks, now_ms};
use crate::hub::Hub;
use crate::session::ClientSummary;
use crate::session::activity::StreamActivity;
use http::{Connection, Next, Request, Response};
pub use streams::Listeners;
use webhooks::Registry;

/// Connections open at once. A further one takes the slot of the connection that has waited
/// longest for its next request (or gets 503 if every one is being answered), so the table
/// need not be large to keep the API reachable, only larger than its honest clients. Each
/// connection is a thread costing about 65 KB of RSS (mostly the 64 KiB mimalloc commits for a
/// thread's heap; measured with 1000 slow clients and no cap): 256 bound it to ~16 MB.
pub const MAX_CONNECTIONS: usize = 256;
/// Stack of a connection thread. A handler needs little: JSON of a few KiB, the metrics text,
/// a 16 KiB read buffer; serde_json limits nesting to 128 levels.
pub const CONNECTION_STACK: usize = 256 * 1024;
/// Longest wait to write a response to a client that does not read it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often rotations whose grace has passed are ended, and shutdown is noticed.
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);
/// How long a rejected request's unread bytes are drained before closing, so the client reads
/// the rejection instead of a connection reset.
const LINGER: Duration = Duration::from_millis(500);

/// The sessions, as the shards see them: lets the API list and kick clients without knowing
/// the server layer. The server implements it on its `ServerControl`.
pub trait SessionControl: Send + Sync {
    /// Every session on every shard.
    fn clients(&self) -> Vec<ClientSummary>;
    /// Closes session `conn_id`; false if no shard has it.
    fn kick(&self, conn_id: u64) -> bool;
    /// What every session publishes or plays now (stream details); none by default.
    fn activity(&self) -> Vec<StreamActivity> {
        Vec::new()
    }
}

/// What the API takes from the configuration.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// `None`: the API is open to whoever reaches it.
    pub token: Option<ApiToken>,
    /// Where `webhooks.json` lives.
    pub state_dir: PathBuf,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// `api_max_webhooks`: how many webhooks the API may create.
    pub max_webhooks: usize,
    /// Connections open at once ([`MAX_CONNECTIONS`] unless a test wants a small table).
    pub max_connections: usize,
}

impl ApiOptions {
    pub fn from_config(config: &Config) -> ApiOptions {
        ApiOptions {
            token: config.api_token.clone(),
            state_dir: config.state_dir.clone(),
            rotation_grace: config.rotation_grace,
            max_webhooks: config.api_max_webhooks,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Why persisted webhooks could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The state file is unreadable or invalid; `reason` says what and where it was moved.
    #[error("webhook state file {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
}

/// Everything the handlers read and change.
pub struct ApiState {
    hub: Arc<Hub>,
    hooks: Arc<Hooks>,
    dispatcher: Arc<Dispatcher>,
    control: Option<Arc<dyn SessionControl>>,
    token: Option<ApiToken>,
    started: Instant,
    /// Where players connect, for `/api/server` and the page's player URLs.
    listeners: Listeners,
    webhooks: Registry,
    /// The connection slots and what they did under pressure.
    slots: Arc<slots::Slots>,
    /// The server's pulls and pushes, for `/api/relays` and `/metrics`.
    relays: Option<Arc<crate::session::relay::Relays>>,
    /// The streams pulled from cameras, for `/api/sources` and `/metrics`.
    sources: Option<Arc<crate::session::rtsp_pull::Sources>>,
    /// What the admission limits count, for `/metrics`' open connections.
    admission: Option<Arc<crate::session::limits::Admission>>,
}

impl ApiState {
    pub fn new(hub: Arc<Hub>, hooks: Arc<Hooks>, dispatcher: Arc<Dispatcher>, options: ApiOptions) -> ApiState {
        ApiState {
            hub,
            hooks,
            dispatcher,
            control: None,
            token: options.token,
            started: Instant::now(),
            listeners: Listeners::default(),
            webhooks: Registry::new(options.state_dir, options.rotation_grace, options.max_webhooks),
            slots: slots::Slots::new(options.max_connections),
            relays: None,
            sources: None,
            admission: None,
        }
    }

    /// Enables `/api/relays` and the relay metrics.
    pub fn with_relays(mut self, relays: Arc<crate::session::relay::Relays>) -> ApiState {
        self.relays = Some(relays);
        self
    }

    /// Enables `/api/sources` and the sources' lines of `/metrics`.
    pub fn with_sources(mut self, sources: Arc<crate::session::rtsp_pull::Sources>) -> ApiState {
        self.sources = Some(sources);
        self
    }

    /// Enables `ringcast_connections` in `/metrics`.
    pub fn with_admission(mut self, admission: Arc<crate::session::limits::Admission>) -> ApiState {
        self.admission = Some(admission);
        self
    }

    /// Enables `/api/clients` (without it those routes answer 503).
    pub fn with_control(mut self, control: Arc<dyn SessionControl>) -> ApiState {
        self.control = Some(control);
        self
    }

    /// Tells `/api/server` (and so the page) where the media listeners are bound.
    pub fn with_listeners(mut self, listeners: Listeners) -> ApiState {
        self.listeners = listeners;
        self
    }

    /// Re-creates the webhooks saved in `state_dir/webhooks.json` on the dispatcher, with
    /// their ids; returns how many. Call once, at start-up, before [`serve`].
    ///
    /// A missing file (or `state_dir`) is no webhooks yet: `Ok(0)`; the directory is created
    /// (0700) on the first save. A file that cannot be read or fails validation is loaded not
    /// at all (never half): it is moved aside to `webhooks.json.corrupt-<unix ms>` so the next
    /// change cannot overwrite it, and the error names both files. The server should log it and
    /// keep running: media and config-file hooks do not depend on it.
    pub fn load_persisted(&self) -> Result<usize, ApiError> {
        let loaded = self.webhooks.load(&self.dispatcher)?;
        if loaded > 0 {
            info!(count = loaded, file = %store::path(self.webhooks.state_dir()).display(), "webhooks restored");
        }
        Ok(loaded)
    }

    /// Answers one request.
    fn handle(&self, request: &Request) -> Response {
        let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
        if segments == ["healthz"] {
            return match request.method.as_str() {
                "GET" | "HEAD" => Response::json(200, &json!({ "status": "ok" })),
                _ => method_not_allowed(request, &["GET", "HEAD"]),
            };
        }
        if page::is_asset(&request.path) {
            return match request.method.as_str() {
                "GET" | "HEAD" => page::serve(&request.path),
                _ => method_not_allowed(request, &["GET", "HEAD"]),
            };
        }
        if let Err(response) = self.authorize(request) {
            return response;
        }
        let Some(route) = Route::parse(&segments) else {
            return Response::error(404, format!("no such route: {} {}", request.method, shorten(&request.path)));
        };
        let allowed = route.methods();
        let method = match request.method.as_str() {
            "HEAD" if allowed.contains(&"GET") => "GET",
            other => other,
        };
        if !allowed.contains(&method) {
            return method_not_allowed(request, allowed);
        }
        // A rotation may have ended since the last sweep; answer with the current state.
        self.webhooks.sweep(&self.dispatcher, now_ms());
        let dispatcher = &self.dispatcher;
        let result = match (route, method) {
            (Route::Metrics, _) => {
                return Response::text(200, http::PROMETHEUS, metrics::render(self));
            }
            (Route::Streams, _) => Ok(self.streams()),
            (Route::Sources, _) => Ok(self.sources()),
            (Route::Server, _) => {
                Ok(streams::server(self.listeners, env!("CARGO_PKG_VERSION"), self.started.elapsed().as_secs_f64()))
            }
            (Route::Clients, _) => self.clients(),
            (Route::Relays, _) => {
                Ok(json!({ "relays": self.relays.as_ref().map(|relays| relays.list()).unwrap_or_default() }))
            }
            (Route::Client(id), _) => self.kick(id),
            (Route::Webhooks, "POST") => {
                return match self.webhooks.create(dispatcher, &request.body) {
                    Ok(webhooks::Created::Webhook(view)) => {
                        let location = format!("/api/webhooks/{}", view["id"].as_str().unwrap_or_default());
                        Response::json(201, &view).header("Location", location)
                    }
                    Ok(webhooks::Created::Dolby(answer)) => Response::json(200, &answer),
                    Err(response) => response,
                };
            }
            (Route::Webhooks, _) => Ok(self.webhooks.list(dispatcher)),
            (Route::Webhook(id), "PATCH") => self.webhooks.patch(dispatcher, id, &request.body),
            (Route::Webhook(id), "DELETE") => self.webhooks.delete(dispatcher, id),
            (Route::Webhook(id), _) => self.webhooks.get(dispatcher, id),
            (Route::WebhookSecret(id), _) => self.webhooks.rotate(dispatcher, id, &request.body),
            (Route::Outbox, _) => Ok(self.outbox()),
            (Route::OutboxReplay(id), _) => replay::replay(dispatcher, id, &request.body),
        };
        match result {
            Ok(value) => Response::json(200, &value),
            Err(response) => response,
        }
    }

    /// Checks the bearer token, if one is configured.
    fn authorize(&self, request: &Request) -> Result<(), Response> {
        let Some(token) = &self.token else { return Ok(()) };
        let challenge = "Bearer realm=\"ringcast\"";
        match request.header("authorization").and_then(bearer) {
            Some(given) if constant_time_eq(given, token.expose().as_bytes()) => Ok(()),
            Some(_) => Err(Response::error(401, "invalid API token")
                .header("WWW-Authenticate", format!("{challenge}, error=\"invalid_token\""))),
            None => Err(Response::error(401, "this API wants Authorization: Bearer <api_token>")
                .header("WWW-Authenticate", challenge)),
        }
    }

    /// `GET /api/outbox`: each webhook outbox (docs/hooks.md, "Delivery guarantees"), those
    /// kept for sinks no longer configured included.
    fn outbox(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::hooks::now_ms();
        let outboxes: Vec<serde_json::Value> = self
            .dispatcher
            .outboxes()
            .iter()
            .map(|(key, stats)| {
                let oldest = stats.oldest_ms.load(Relaxed);
                json!({
                    "id": key,
                    "configured": stats.configured.load(Relaxed),
                    "entries": stats.entries.load(Relaxed),
                    "bytes": stats.bytes.load(Relaxed),
                    "oldest_age_ms": (oldest > 0).then(|| now.saturating_sub(oldest)),
                    "refused": stats.refused.load(Relaxed),
                    "replayed": stats.replayed.load(Relaxed),
                })
            })
            .collect();
        json!({ "outboxes": outboxes })
    }

    fn sources(&self) -> serde_json::Value {
        let list = self.sources.as_ref().map(|sources| sources.list()).unwrap_or_default();
        json!({ "sources": list.iter().map(|source| source.summary()).collect::<Vec<_>>() })
    }

    fn streams(&self) -> serde_json::Value {
        let activity = self.control.as_ref().map(|control| control.activity());
        streams::render(self.hub.streams(), activity.as_deref(), now_ms())
    }

    fn clients(&self) -> Result<serde_json::Value, Response> {
        let control = self.control.as_ref().ok_or_else(no_control)?;
        Ok(json!({ "clients": control.clients() }))
    }

    fn kick(&self, id: &str) -> Result<serde_json::Value, Response> {
        let control = self.control.as_ref().ok_or_else(no_control)?;
        let conn_id = id.parse::<u64>().map_err(|_| Response::error(404, format!("no client '{}'", shorten(id))))?;
        if control.kick(conn_id) {
            info!(conn_id, "client kicked over the admin API");
            Ok(json!({ "id": conn_id, "kicked": true }))
        } else {
            Err(Response::error(404, format!("no client {conn_id}")))
        }
    }
}

/// The API's paths.
#[derive(Clone, Copy)]
enum Route<'a> {
    Metrics,
    Server,
    Streams,
    Sources,
    Clients,
    Client(&'a str),
    Relays,
    Webhooks,
    Webhook(&'a str),
    WebhookSecret(&'a str),
    Outbox,
    OutboxReplay(&'a str),
}

impl<'a> Route<'a> {
    fn parse(segments: &[&'a str]) -> Option<Route<'a>> {
        Some(match segments {
            ["metrics"] => Route::Metrics,
            ["api", "server"] => Route::Server,
            ["api", "streams"] => Route::Streams,
            ["api", "sources"] => Route::Sources,
            ["api", "clients"] => Route::Clients,
            ["api", "clients", id] => Route::Client(id),
            ["api", "relays"] => Route::Relays,
            ["api", "webhooks"] => Route::Webhooks,
            ["api", "webhooks", id] => Route::Webhook(id),
            ["api", "webhooks", id, "secret"] => Route::WebhookSecret(id),
            ["api", "outbox"] => Route::Outbox,
            ["api", "outbox", id, "replay"] => Route::OutboxReplay(id),
            _ => return None,
        })
    }

    fn methods(self) -> &'static [&'static str] {
        match self {
            Route::Metrics
            | Route::Server
            | Route::Streams
            | Route::Clients
            | Route::Relays
            | Route::Sources
            | Route::Outbox => &["GET", "HEAD"],
            Route::Client(_) => &["DELETE"],
            Route::Webhooks => &["GET", "HEAD", "POST"],
            Route::Webhook(_) => &["GET", "HEAD", "PATCH", "DELETE"],
            Route::WebhookSecret(_) | Route::OutboxReplay(_) => &["POST"],
        }
    }
}

fn method_not_allowed(request: &Request, allowed: &[&str]) -> Response {
    let list = allowed.join(", ");
    Response::error(
        405,
        format!("method {} is not allowed on {} (allowed: {list})", shorten(&request.method), shorten(&request.path)),
    )
    .header("Allow", list)
}

fn no_control() -> Response {
    Response::error(503, "client listing is not available in this server")
}

/// Request text echoed in a message, cut to keep the message one short line.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text.chars().take(MAX).collect::<String>().escape_debug().to_string();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// The credentials of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme.eq_ignore_ascii_case(b"bearer").then(|| rest.trim_ascii())
}

/// Compares in time that depends only on the lengths, not on where the bytes differ, so the
/// token cannot be guessed a byte at a time by timing 401s.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= usize::from(a ^ b);
    }
    std::hint::black_box(diff) == 0
}

/// Unix milliseconds as RFC 3339 UTC (`2024-05-01T12:00:00.000Z`).
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Serves the API on `listener` until `shutdown` is set (noticed within a fraction of a
/// second). Returns the accept thread; joining it waits for the accept loop and the rotation
/// sweeper, not for connections still open (each ends within [`http::IDLE_TIMEOUT`] or its
/// request's deadline).
///
/// Logs a warning when no `api_token` is configured.
pub fn serve(listener: TcpListener, state: Arc<ApiState>, shutdown: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(false)?;
    let addr = listener.local_addr()?;
    if state.token.is_none() {
        if addr.ip().is_loopback() {
            warn!(%addr, "admin API has no api_token: any local user can list and kick clients and change webhooks");
        } else {
            warn!(%addr, "admin API has no api_token and listens beyond loopback: anyone who can reach it can list and kick clients and change webhooks");
        }
    }
    info!(%addr, "admin API listening");
    let stopped = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (state, shutdown, stopped) = (state.clone(), shutdown.clone(), stopped.clone());
        thread::Builder::new().name("api-sweep".into()).spawn(move || sweep_loop(addr, &state, &shutdown, &stopped))?
    };
    let accept_stopped = stopped.clone();
    let accept = thread::Builder::new().name("api-accept".into()).spawn(move || {
        accept_loop(&listener, &state, &shutdown);
        accept_stopped.store(true, Ordering::SeqCst);
        let _ = sweeper.join();
    });
    if accept.is_err() {
        stopped.store(true, Ordering::SeqCst);
    }
    accept
}

/// Ends expired rotations; on shutdown, wakes the blocked accept with a connection of its own.
fn sweep_loop(addr: SocketAddr, state: &ApiState, shutdown: &AtomicBool, stopped: &AtomicBool) {
    loop {
        thread::sleep(SWEEP_INTERVAL);
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        if shutdown.load(Ordering::SeqCst) {
            let ip = match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), Duration::from_secs(1));
            return;
        }
        state.slots.tick(Instant::now());
        let swept = panic::catch_unwind(AssertUnwindSafe(|| state.webhooks.sweep(&state.dispatcher, now_ms())));
        if swept.is_err() {
            error!("admin API rotation sweep panicked");
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<ApiState>, shutdown: &Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: keep serving, without spinning.
                warn!(error = %e, "admin API accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(handle) = stream.try_clone() else { continue };
        let slot = match state.slots.take(handle, Instant::now()) {
            Ok(slot) => slot,
            Err(slots::Full) => {
                refuse_busy(stream);
                continue;
            }
        };
        let (state, shutdown) = (state.clone(), shutdown.clone());
        // If the spawn fails the closure, and with it the slot, is dropped: the table stays right.
        let spawned = thread::Builder::new()
            .name("api-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || serve_connection(stream, &slot, &state, &shutdown));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start an admin API connection thread");
        }
    }
}

fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let response =
        Response::error(503, "too many admin API connections; retry later").header("Retry-After", "1").closing();
    let _ = http::write_response(&mut stream, &response, false);
}

fn serve_connection(stream: TcpStream, slot: &slots::SlotGuard, state: &ApiState, shutdown: &AtomicBool) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(linger) = stream.try_clone() else { return };
    let mut connection = Connection::new(stream);
    loop {
        match connection.next_request() {
            Next::Closed => return,
            Next::Reject(response) => {
                debug!(status = response.status, "admin API request rejected");
                if response.status == 408 {
                    state.slots.timed_out(Instant::now());
                }
                if connection.write(&response, false).is_ok() {
                    linger_close(linger);
                }
                return;
            }
            Next::Request(request) => {
                slot.busy();
                let mut response =
                    panic::catch_unwind(AssertUnwindSafe(|| state.handle(&request))).unwrap_or_else(|_| {
                        error!(method = %request.method, path = %shorten(&request.path), "admin API handler panicked");
                        Response::error(500, "internal error (logged)")
                    });
                debug!(method = %request.method, path = %shorten(&request.path), status = response.status, "admin API request");
                if !request.keep_alive || shutdown.load(Ordering::SeqCst) {
                    response.close = true;
                }
                if connection.write(&response, request.method == "HEAD").is_err() || response.close {
                    return;
                }
                slot.waiting();
            }
        }
    }
}

/// After a rejection: stop writing and read (and discard) what the client is still sending for
/// a moment. Closing with unread bytes would make the kernel send a reset, which can destroy
/// the rejection before the client reads it.
fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER));
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0usize;
    while Instant::now() < deadline && drained < 4 * http::MAX_BODY {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn shorten_keeps_messages_one_line() {
        assert_eq!(shorten("a\nb"), "a\\nb");
        assert!(shorten(&"x".repeat(500)).ends_with('…'));
    }
}
