//! Pulls of RTSP cameras (`[sources."<app>/<name>"]`, docs/sources.md): each source is a
//! publisher of its stream that ringcast itself runs, driving `protocol::rtsp::client` over an
//! io_uring socket and handing the depacketized media to the hub (`rtp_ingest.rs`, as the RTSP
//! server's RECORD sessions do). Players of the stream (RTMP, HTTP-FLV, RTSP) see an ordinary
//! published stream.
//!
//! - **Where.** [`Sources`] is shared by every shard and the admin API; source `i` runs on
//!   shard `i % shards` ([`spawn`]), as one task that lives as long as the shard.
//! - **When.** `on_demand = false`: always, reconnecting. `on_demand = true`: while the stream
//!   has players anywhere, and for `linger` after the last one left: the on-demand mechanism
//!   relays' pulls share (`relay/demand.rs`). The source's task sleeps on the hub's demand
//!   watch of its stream ([`crate::hub::Watch`]), which the first player's count in the hub
//!   wakes, whatever its shard and protocol, and which the last one leaving wakes again for
//!   the linger. A camera that fails is tried again after the shared backoff (1 s, doubling
//!   up to 30 s, `relay/backoff.rs`) while it is wanted.
//! - **Hooks.** By default the pull is internal: it fires no callback and no event, and is no
//!   client in `/api/clients` (its own state is in `/api/sources` and `/metrics`).
//!   `hooks = true` makes it a session like any publisher's: `connection_accept`,
//!   `on_connect` and `on_publish` (which may refuse it), `publish_start`, `publish_stop`, with
//!   `protocol=rtsp` and the camera's address.
//! - **Players while the camera is down** wait for it `start_timeout` ([`Sources::start_timeout`],
//!   `relay::await_source`), then get what players of a stream nobody publishes get: RTMP
//!   players stay and wait, HTTP-FLV and RTSP are answered 404.
//! - **Credentials** stay in the URL given to the client state machine; logs, events and the
//!   API show [`crate::config::shown_url`].

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_uring::net::TcpStream;

use super::ShardContext;
use super::io::{MIN_READ_BUFFER, ReadBuffer, write_all};
use super::lifecycle::{Admission, ConnectRequest, Lifecycle, StreamRequest};
use super::relay::backoff::{Backoff, Retry, retry_after};
use super::rtmp::sleep_until_some;
use super::rtp_ingest::RtpIngest;
use crate::config::{SourceConfig, shown_url};
use crate::hooks::event::Protocol;
use crate::hooks::now_ms;
use crate::hub::{PacketKind, PublisherHandle, Watch};
use crate::protocol::flv::MediaKind;
use crate::protocol::rtsp::client::{ClientConnection, ClientError, ClientSettings, Event};
use crate::protocol::rtsp::url;

/// The port of `rtsp://` URLs that name none (RFC 2326, 3.2).
const DEFAULT_PORT: u16 = 554;
/// Largest read: an interleaved frame is at most 64 KiB plus its header.
const MAX_READ: usize = 64 * 1024 + 4;
/// Connection ids of hooked pulls start here, far above any the accept loops reach, so one
/// never names an accepted connection (and stays an exact number in JSON).
const CONN_ID_BASE: u64 = 1 << 52;

/// Where a source is, for the API and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// On demand, and nobody plays the stream.
    Idle,
    /// Connecting, or between the first request and PLAY's answer.
    Connecting,
    /// Media flows into the hub.
    Playing,
    /// The last try failed; the next waits its backoff.
    Retrying,
}

impl SourceState {
    fn from_u8(value: u8) -> SourceState {
        match value {
            1 => SourceState::Connecting,
            2 => SourceState::Playing,
            3 => SourceState::Retrying,
            _ => SourceState::Idle,
        }
    }
}

/// One configured source and what it did, shared by its shard's task and the API.
#[derive(Debug)]
pub struct Source {
    pub config: SourceConfig,
    state: AtomicU8,
    /// Bytes read from the camera, every connection together.
    bytes_in: AtomicU64,
    /// Tries that failed (connection refused, an RTSP error, a camera gone silent).
    failures: AtomicU64,
    /// Connections made after the first.
    reconnects: AtomicU64,
    /// When media started flowing (ms since the epoch), 0 when it does not.
    playing_since_ms: AtomicU64,
    /// Why the last try failed, without credentials. A std mutex: held for one copy, never
    /// across an await, and only by this source's task and the API.
    last_error: Mutex<String>,
}

impl Source {
    pub fn state(&self) -> SourceState {
        SourceState::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, state: SourceState) {
        self.state.store(state as u8, Ordering::Relaxed);
        if state != SourceState::Playing {
            self.playing_since_ms.store(0, Ordering::Relaxed);
        }
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// What `/api/sources` shows of it.
    pub fn summary(&self) -> serde_json::Value {
        let last_error = self.last_error.lock().map(|error| error.clone()).unwrap_or_default();
        let since = self.playing_since_ms.load(Ordering::Relaxed);
        serde_json::json!({
            "stream": self.config.stream,
            "url": shown_url(&self.config.url),
            "on_demand": self.config.on_demand,
            "hooks": self.config.hooks,
            "state": self.state(),
            "playing_since_ms": (since > 0).then_some(since),
            "bytes_in": self.bytes_in(),
            "reconnects": self.reconnects(),
            "failures": self.failures(),
            "last_error": (!last_error.is_empty()).then_some(last_error),
        })
    }
}

/// Every configured source.
#[derive(Debug, Default)]
pub struct Sources {
    list: Vec<Arc<Source>>,
    /// The next hooked pull's connection id.
    next_conn_id: AtomicU64,
}

impl Sources {
    pub fn new(configs: &[SourceConfig]) -> Arc<Sources> {
        let list = configs
            .iter()
            .map(|config| {
                Arc::new(Source {
                    config: config.clone(),
                    state: AtomicU8::new(SourceState::Idle as u8),
                    bytes_in: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    reconnects: AtomicU64::new(0),
                    playing_since_ms: AtomicU64::new(0),
                    last_error: Mutex::new(String::new()),
                })
            })
            .collect();
        Arc::new(Sources { list, next_conn_id: AtomicU64::new(CONN_ID_BASE) })
    }

    pub fn list(&self) -> &[Arc<Source>] {
        &self.list
    }

    /// How long a player of `key` should wait for it to be published: a source's
    /// `start_timeout`; `None` for a stream no source feeds.
    pub fn start_timeout(&self, key: &str) -> Option<Duration> {
        self.list.iter().find(|source| source.config.stream == key).map(|source| source.config.start_timeout)
    }
}

/// Starts the tasks of the sources shard `context` runs (source `i` on shard `i % shards`).
pub fn spawn(context: &Rc<ShardContext>, sources: &Arc<Sources>, shards: usize) {
    let shard = context.hub.shard();
    for (index, source) in sources.list.iter().enumerate() {
        if index % shards.max(1) == shard {
            let (context, source, sources) = (context.clone(), source.clone(), sources.clone());
            tokio::task::spawn_local(async move { run(context, source, sources).await });
        }
    }
}

/// Why a pull ended.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("{0}")]
    Rtsp(#[from] ClientError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the camera closed the connection")]
    Closed,
    #[error("no media for {0:?}")]
    Silent(Duration),
    #[error("stream refused: {0}")]
    Refused(String),
}

/// How a pull that did not fail ended.
enum Ended {
    Shutdown,
    /// On demand: nobody played it for `linger`.
    NoPlayers,
    /// Kicked, or taken over by another publisher: tried again after the backoff.
    Interrupted(&'static str),
}

/// One source's life on its shard: wait to be wanted, pull, and try again after a failure.
async fn run(context: Rc<ShardContext>, source: Arc<Source>, sources: Arc<Sources>) {
    let key = source.config.stream.clone();
    // On demand: held for the task's life, the one watch of the stream's viewers it sleeps on.
    let demand = source.config.on_demand.then(|| context.hub.watch(&key));
    let mut backoff = Backoff::default();
    let mut tries = 0u64;
    loop {
        if let Some(demand) = &demand {
            source.set_state(SourceState::Idle);
            tokio::select! {
                _ = demand.demand(true) => {}
                _ = context.shutdown.wait() => return,
            }
        }
        source.set_state(SourceState::Connecting);
        if tries > 0 {
            source.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        tries += 1;
        let mut played = false;
        let reason = match pull(&context, &source, &sources, demand.as_ref(), &mut played).await {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::NoPlayers) => {
                tracing::info!(stream = %key, "source stopped: no players");
                backoff.reset();
                continue;
            }
            Ok(Ended::Interrupted(why)) => why.to_owned(),
            Err(error) => {
                source.failures.fetch_add(1, Ordering::Relaxed);
                error.to_string()
            }
        };
        let wait = backoff.failed(played);
        tracing::warn!(stream = %key, url = %shown_url(&source.config.url), error = %reason, retry_in = ?wait, "source failed");
        if let Ok(mut last) = source.last_error.lock() {
            *last = reason;
        }
        source.set_state(SourceState::Retrying);
        // While it waits, an on-demand source that loses its players goes idle at once.
        if retry_after(&context.shutdown, wait, demand.as_ref()).await == Retry::Shutdown {
            return;
        }
    }
}

/// Where the stream's media goes once PLAY is answered.
enum Publisher {
    /// Straight into the hub: no hooks.
    Internal(PublisherHandle),
    /// Through a session's lifecycle, which fires the hooks (`hooks = true`).
    Session(Box<Lifecycle>),
}

impl Publisher {
    fn media(&mut self, kind: PacketKind, timestamp: u32, payload: Bytes) {
        match self {
            // A malformed frame is counted by the hub; the camera goes on.
            Publisher::Internal(handle) => drop(handle.push(kind, timestamp, payload)),
            Publisher::Session(lifecycle) => lifecycle.media(kind, timestamp, payload),
        }
    }

    /// The tracks the camera described, and their sequence headers, before any frame.
    fn declare(&mut self, ingest: &RtpIngest) {
        if let Publisher::Session(lifecycle) = self {
            lifecycle.declare_media(ingest.carries(MediaKind::Video), ingest.carries(MediaKind::Audio));
        }
        for (kind, header) in ingest.sequence_headers() {
            self.media(kind, 0, header);
        }
    }

    /// A hooked pull held for `on_media` is asked now; an internal one never is.
    async fn admit_media(&mut self) -> Result<(), String> {
        match self {
            Publisher::Internal(_) => Ok(()),
            Publisher::Session(lifecycle) => match lifecycle.admit_media().await {
                Admission::Admitted => Ok(()),
                Admission::Refused(refusal) => Err(refusal.to_string()),
            },
        }
    }

    fn count_in(&mut self, bytes: usize) {
        if let Publisher::Session(lifecycle) = self {
            lifecycle.count_in(bytes);
        }
    }

    /// Leaves the stream; a hooked pull says goodbye with `reason`.
    fn finish(self, reason: &str) {
        match self {
            Publisher::Internal(handle) => drop(handle.unpublish()),
            Publisher::Session(mut lifecycle) => lifecycle.finish(reason),
        }
    }
}

/// One connection to the camera, from connect to the end of its media. `played` is set once
/// PLAY was answered.
async fn pull(
    context: &Rc<ShardContext>,
    source: &Source,
    sources: &Sources,
    demand: Option<&Watch>,
    played: &mut bool,
) -> Result<Ended, PullError> {
    let config = &source.config;
    let settings = ClientSettings::for_url(&config.url).map_err(|error| PullError::Resolve(error.to_string()))?;
    let response_timeout = settings.response_timeout;
    let camera = resolve(&config.url, response_timeout).await?;
    let socket = tokio::select! {
        connected = tokio::time::timeout(response_timeout, TcpStream::connect(camera)) => {
            connected.map_err(|_| PullError::ConnectTimeout(response_timeout))??
        }
        _ = context.shutdown.wait() => return Ok(Ended::Shutdown),
    };
    let _ = socket.set_nodelay(true);
    // The client's time line: durations since this connection began.
    let origin = Instant::now();
    let mut client = ClientConnection::new(settings, origin.elapsed(), random(context));
    let mut publisher: Option<Publisher> = None;
    let result =
        converse(context, source, sources, &socket, camera, origin, &mut client, &mut publisher, demand, played).await;
    let reason = match &result {
        Ok(Ended::Shutdown) => "server shutdown".to_owned(),
        Ok(Ended::NoPlayers) => "no players".to_owned(),
        Ok(Ended::Interrupted(why)) => (*why).to_owned(),
        Err(error) => error.to_string(),
    };
    if let Some(publisher) = publisher.take() {
        publisher.finish(&reason);
    }
    // A polite end when the connection still works: the camera frees the session at once.
    if !matches!(result, Err(PullError::Io(_) | PullError::Closed)) {
        client.teardown(origin.elapsed());
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        if !out.is_empty() {
            let _ = write_all(&socket, out, Duration::from_secs(1)).await;
        }
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
    result
}

/// The loop of one connection: write the client's requests, read (beside its timers, the
/// media deadline, the linger, shutdown, kicks and takeovers), feed, act on its events.
#[allow(clippy::too_many_arguments)]
async fn converse(
    context: &Rc<ShardContext>,
    source: &Source,
    sources: &Sources,
    socket: &TcpStream,
    camera: SocketAddr,
    origin: Instant,
    client: &mut ClientConnection,
    publisher: &mut Option<Publisher>,
    demand: Option<&Watch>,
    played: &mut bool,
) -> Result<Ended, PullError> {
    let config = &source.config;
    let key = config.stream.as_str();
    // A camera that stops sending media without closing is given up after this long: its
    // players would otherwise watch a frozen stream forever.
    let silence = context.settings.idle_timeout;
    let mut reader = ReadBuffer::with_limits(MIN_READ_BUFFER * 4, MAX_READ);
    let mut ingest: Option<RtpIngest> = None;
    let mut last_media = Instant::now();
    // One for the connection's life: each read would otherwise start the linger over.
    let lingered = async {
        match demand {
            Some(demand) => demand.idle_for(config.linger).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lingered);
    let conn_id = sources.next_conn_id.fetch_add(1, Ordering::Relaxed);
    loop {
        let input = {
            let read = reader.read(socket);
            tokio::pin!(read);
            loop {
                if client.has_transmit() {
                    let mut out = Vec::new();
                    client.poll_transmit(&mut out);
                    write_all(socket, out, context.settings.limits.send_timeout).await?;
                }
                let media_due = client.is_playing().then_some(last_media + silence);
                let due = [client.poll_timeout().map(|due| origin + due), media_due].into_iter().flatten().min();
                let (kicked, eviction) = match publisher.as_ref() {
                    Some(Publisher::Session(lifecycle)) => (Some(lifecycle.entry().clone()), lifecycle.eviction()),
                    Some(Publisher::Internal(handle)) => (None, Some(handle.eviction().clone())),
                    None => (None, None),
                };
                tokio::select! {
                    input = &mut read => break input,
                    _ = context.shutdown.wait() => return Ok(Ended::Shutdown),
                    _ = kicked_or_pending(kicked.as_deref()) => return Ok(Ended::Interrupted("kicked by operator")),
                    _ = super::lifecycle::taken_over(eviction) => return Ok(Ended::Interrupted("taken over")),
                    _ = &mut lingered => return Ok(Ended::NoPlayers),
                    _ = sleep_until_some(due.map(tokio::time::Instant::from_std)) => {
                        let now = Instant::now();
                        client.handle_timeout(now.duration_since(origin))?;
                        if client.is_playing() && now >= last_media + silence {
                            return Err(PullError::Silent(silence));
                        }
                    }
                }
            }
        };
        let input = input?;
        if input.is_empty() {
            return Err(PullError::Closed);
        }
        source.bytes_in.fetch_add(input.len() as u64, Ordering::Relaxed);
        if let Some(publisher) = publisher.as_mut() {
            publisher.count_in(input.len());
        }
        let now = Instant::now();
        client.handle_input(now.duration_since(origin), input)?;
        while let Some(event) = client.poll_event() {
            match event {
                Event::Described { tracks, skipped } => {
                    for skipped in skipped {
                        tracing::info!(stream = %key, "source track skipped: {skipped}");
                    }
                    ingest = Some(RtpIngest::new(tracks));
                }
                Event::Playing => {
                    let mut started = start_publishing(context, source, camera, conn_id).await?;
                    if let Some(ingest) = ingest.as_ref() {
                        started.declare(ingest);
                    }
                    // A hooked source is asked `on_media` like an RTSP publisher at RECORD.
                    if let Err(refusal) = started.admit_media().await {
                        started.finish(&refusal);
                        return Err(PullError::Refused(refusal));
                    }
                    *publisher = Some(started);
                    *played = true;
                    last_media = Instant::now();
                    source.set_state(SourceState::Playing);
                    source.playing_since_ms.store(now_ms(), Ordering::Relaxed);
                    tracing::info!(stream = %key, url = %shown_url(&config.url), "source playing");
                }
                Event::Rtp { track, payload } => {
                    last_media = now;
                    if let (Some(ingest), Some(publisher)) = (ingest.as_mut(), publisher.as_mut()) {
                        let stats = context.hub.stats();
                        ingest.packet(track, &payload, now, stats, conn_id, |kind, timestamp, body| {
                            publisher.media(kind, timestamp, body)
                        });
                    }
                }
                // Sender reports: the depacketizers time media by their own clocks.
                Event::Rtcp { .. } => {}
            }
        }
    }
}

/// Takes the stream in the hub, straight or through a lifecycle that asks the hooks.
async fn start_publishing(
    context: &Rc<ShardContext>,
    source: &Source,
    camera: SocketAddr,
    conn_id: u64,
) -> Result<Publisher, PullError> {
    let config = &source.config;
    if !config.hooks {
        let (handle, _) = context.hub.publish(&config.stream).map_err(|error| PullError::Refused(error.to_string()))?;
        return Ok(Publisher::Internal(handle));
    }
    let mut lifecycle = Box::new(Lifecycle::new(context, Protocol::Rtsp, camera, conn_id));
    lifecycle.handshake_complete();
    let (app, name) = config.stream.split_once('/').unwrap_or_default();
    let shown = shown_url(&config.url);
    let connect = ConnectRequest {
        app: app.to_owned(),
        url: shown.clone(),
        tc_url: shown,
        flash_ver: "ringcast source".to_owned(),
        ..ConnectRequest::default()
    };
    let request = StreamRequest { name: name.to_owned(), ..StreamRequest::default() };
    let admitted = async {
        if let Admission::Refused(refusal) = lifecycle.admit_connect(connect).await {
            return Err(refusal);
        }
        match lifecycle.admit_publish(request).await {
            Admission::Admitted => Ok(()),
            Admission::Refused(refusal) => Err(refusal),
        }
    };
    let refused = tokio::select! {
        result = admitted => result.err(),
        _ = context.shutdown.wait() => Some(super::lifecycle::Refusal::StreamBusy("server shutdown".to_owned())),
    };
    match refused {
        None => Ok(Publisher::Session(lifecycle)),
        Some(refusal) => {
            lifecycle.finish(&refusal.to_string());
            Err(PullError::Refused(refusal.to_string()))
        }
    }
}

/// Resolves once the session entry is kicked; never without one.
async fn kicked_or_pending(entry: Option<&super::SessionEntry>) {
    match entry {
        Some(entry) => entry.kicked().await,
        None => std::future::pending().await,
    }
}

/// The camera's address: an IP literal at once; a name off the shard
/// ([`io::resolve`](super::io::resolve)), given up after `timeout`.
async fn resolve(source_url: &str, timeout: Duration) -> Result<SocketAddr, PullError> {
    let authority = url::parse(source_url, &[]).map_err(|error| PullError::Resolve(error.to_string()))?.authority;
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = authority.trim_start_matches('[').trim_end_matches(']');
    let (host, port) = match authority.rsplit_once(':') {
        _ if bare.parse::<IpAddr>().is_ok() => (bare, DEFAULT_PORT),
        Some((host, port)) => (host, port.parse().map_err(|_| PullError::Resolve(authority.clone()))?),
        None => (bare, DEFAULT_PORT),
    };
    super::io::resolve(host, port, timeout).await.map_err(|_| PullError::Resolve(host.to_owned()))
}

/// Random bits for the client's Digest cnonces, from the operating system.
fn random(context: &ShardContext) -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        context.fill_random(&mut bytes);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_show_no_credentials() {
        let config = SourceConfig {
            stream: "live/cam1".into(),
            url: "rtsp://admin:hunter2@10.0.0.2/s".into(),
            on_demand: true,
            transport: Default::default(),
            linger: Duration::from_secs(1),
            start_timeout: Duration::from_secs(2),
            hooks: false,
        };
        let sources = Sources::new(&[config]);
        let summary = sources.list()[0].summary();
        assert_eq!(summary["url"], "rtsp://10.0.0.2/s");
        assert_eq!(summary["state"], "idle");
        assert!(!summary.to_string().contains("hunter2"));
        assert_eq!(sources.start_timeout("live/cam1"), Some(Duration::from_secs(2)));
        assert_eq!(sources.start_timeout("live/other"), None);
    }
}
