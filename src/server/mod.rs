//! Shards: one tokio-uring runtime per thread, each with its own SO_REUSEPORT listener and
//! the connections it accepts; signals and graceful shutdown.
//!
//! Listeners are bound on the main thread before any shard starts, so a port in use is
//! reported (and the process exits 2) before anything runs. Binding port 0 picks a port with
//! the first socket and binds the other shards to that same port.

pub mod preflight;
pub mod systemd;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::api::{self, ApiOptions, ApiState};
use crate::config::Config;
use crate::hooks::callback_lane::CallbackLane;
use crate::hooks::dispatch::{self, DispatchLimits, Dispatcher};
use crate::hooks::event::Protocol as MediaProtocol;
use crate::hooks::outbox::OutboxSettings;
use crate::hooks::webhook;
use crate::hooks::{EventSink, Hooks};
use crate::hub::{Hub, HubSettings, ShardHub, ShardMessage};
use crate::protocol::rtmp::server::ServerSettings;
use crate::session::activity::StreamActivity;
use crate::session::journal::Journal;
use crate::session::limits::{Admission, ConnectionPermit};
use crate::session::{self, ClientSummary, SessionSettings, ShardContext};

/// Accepts in flight per shard listener. One accept loop takes one connection per turn of the
/// shard's event loop, which in a storm of 2000 players made the accept the pace (p99 to first
/// media 164-305 ms with one, 150-165 ms with eight, same runs). Past a few, more only cost
/// idle operations.
const ACCEPTORS: usize = 8;
/// Connections waiting in the kernel to be accepted, per shard listener.
const LISTEN_BACKLOG: i32 = preflight::LISTEN_BACKLOG as i32;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot start shard {shard}: {source}")]
    Shard { shard: usize, source: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("shard {0} panicked")]
    ShardPanicked(usize),
    #[error("a shard failed to start its io_uring runtime (see the log above)")]
    ShardStart,
    #[error("cannot start the admin API: {0}")]
    Api(std::io::Error),
    #[error("hooks: {0}")]
    Hooks(#[from] crate::hooks::webhook::Error),
    /// `outbox = true` and `state_dir` cannot be written: a bad config (exit 2).
    #[error("{0}")]
    Outbox(String),
}

/// Process-wide state the shards share.
struct Shared {
    /// Beats for the systemd watchdog, when it is on.
    heartbeats: Option<Arc<systemd::Heartbeats>>,
    hub: Arc<Hub>,
    hooks: Arc<Hooks>,
    settings: SessionSettings,
    /// Shared with the relays, whose sessions are connections too.
    next_conn_id: Arc<AtomicU64>,
    /// Pulls and pushes (`[relay]`).
    relays: Arc<session::relay::Relays>,
    /// Connection, stream and publisher limits, reloaded by SIGHUP.
    admission: Arc<Admission>,
    /// The session journal every shard's sessions write to, when kept.
    journal: Option<Arc<Journal>>,
    /// Where a new publisher takes a busy stream over (`takeover`).
    takeover: Arc<crate::config::TakeoverRule>,
    /// How long a dropped publisher's stream waits for a new one (`republish_grace`).
    republish_grace: Arc<crate::config::GraceRule>,
    /// The streams pulled from cameras (`[sources]`), each run by one shard.
    sources: Arc<session::rtsp_pull::Sources>,
}

/// A request from the admin API to one shard.
enum AdminRequest {
    Clients(std::sync::mpsc::Sender<Vec<ClientSummary>>),
    Activity(std::sync::mpsc::Sender<Vec<StreamActivity>>),
    Kick(u64, std::sync::mpsc::Sender<bool>),
}

/// How long the admin API waits for a shard's answer.
const ADMIN_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The admin API's handle on the shards: list and kick sessions. Its methods block (briefly):
/// call them from the API's own threads, never from a shard.
pub struct ServerControl {
    shards: Vec<mpsc::Sender<AdminRequest>>,
}

impl ServerControl {
    /// Every session on every shard, by connection id.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let mut clients = self.gather(AdminRequest::Clients);
        clients.sort_by_key(|c| c.conn_id);
        clients
    }

    /// What every session publishes or plays now, by connection id.
    pub fn activity(&self) -> Vec<StreamActivity> {
        let mut activity = self.gather(AdminRequest::Activity);
        activity.sort_by_key(|a| a.client.conn_id);
        activity
    }

    /// Asks every shard for its list and joins the answers that come within the timeout.
    fn gather<T>(&self, ask: fn(std::sync::mpsc::Sender<Vec<T>>) -> AdminRequest) -> Vec<T> {
        let (reply, replies) = std::sync::mpsc::channel();
        let asked = self.shards.iter().filter(|s| s.try_send(ask(reply.clone())).is_ok()).count();
        drop(reply);
        let mut all = Vec::new();
        for _ in 0..asked {
            match replies.recv_timeout(ADMIN_REPLY_TIMEOUT) {
                Ok(list) => all.extend(list),
                Err(_) => break,
            }
        }
        all
    }

    /// Closes session `conn_id`; false if no shard has it.
    pub fn kick(&self, conn_id: u64) -> bool {
        let (reply, replies) = std::sync::mpsc::channel();
        let asked =
            self.shards.iter().filter(|s| s.try_send(AdminRequest::Kick(conn_id, reply.clone())).is_ok()).count();
        drop(reply);
        (0..asked).any(|_| replies.recv_timeout(ADMIN_REPLY_TIMEOUT).unwrap_or(false))
    }
}

impl api::SessionControl for ServerControl {
    fn clients(&self) -> Vec<ClientSummary> {
        ServerControl::clients(self)
    }

    fn kick(&self, conn_id: u64) -> bool {
        ServerControl::kick(self, conn_id)
    }

    fn activity(&self) -> Vec<StreamActivity> {
        ServerControl::activity(self)
    }
}

/// Starts a graceful shutdown: the shards see its deadline (`shutdown_timeout` from the
/// moment it is asked), by which everything is done or abandoned.
#[derive(Clone)]
struct Shutdown {
    deadline: watch::Sender<Option<Instant>>,
    timeout: Duration,
}

impl Shutdown {
    /// Asks for the shutdown; a second ask keeps the first deadline.
    fn start(&self) {
        let deadline = Instant::now() + self.timeout;
        self.deadline.send_if_modified(|current| current.is_none() && current.replace(deadline).is_none());
    }

    /// The deadline, starting the shutdown if nobody has.
    fn deadline(&self) -> Instant {
        self.start();
        self.deadline.borrow().unwrap_or_else(Instant::now)
    }
}

/// Told callbacks a shard abandoned at the deadline, per call.
type Abandoned = Vec<(&'static str, usize)>;

/// A running server: its bound addresses, and the handle that stops it.
pub struct Server {
    pub rtmp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub rtsp_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub control: Arc<ServerControl>,
    pub hooks: Arc<Hooks>,
    pub dispatcher: Arc<Dispatcher>,
    journal: Option<Arc<Journal>>,
    admission: Arc<Admission>,
    shutdown: Shutdown,
    shards: Vec<thread::JoinHandle<Abandoned>>,
    api_shutdown: Arc<AtomicBool>,
    api_thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Binds every listener and starts the shards.
    pub fn start(config: &Config) -> Result<Server, ServerError> {
        Server::start_with(config, None)
    }

    /// Like [`Server::start`]; with `heartbeats`, each shard beats for the systemd watchdog.
    /// Returns once every shard's runtime is up (so READY=1 is never premature).
    pub fn start_with(config: &Config, heartbeats: Option<Arc<systemd::Heartbeats>>) -> Result<Server, ServerError> {
        let shard_count = config.shards.max(1);
        let rtmp_listeners = bind_reuseport("rtmp_listen", config.rtmp_listen, shard_count)?;
        let rtmp_addr = bound_addr("rtmp_listen", config.rtmp_listen, &rtmp_listeners[0])?;
        let http_listeners = bind_reuseport("http_listen", config.http_listen, shard_count)?;
        let http_addr = bound_addr("http_listen", config.http_listen, &http_listeners[0])?;
        let rtsp_listeners = bind_reuseport("rtsp_listen", config.rtsp_listen, shard_count)?;
        let rtsp_addr = bound_addr("rtsp_listen", config.rtsp_listen, &rtsp_listeners[0])?;
        // Bound here with the other listeners, so a busy API port fails before anything runs.
        let api_listener = StdListener::bind(config.api_listen).map_err(|source| ServerError::Bind {
            key: "api_listen",
            addr: config.api_listen,
            source,
        })?;
        let api_addr = bound_addr("api_listen", config.api_listen, &api_listener)?;
        let hub_settings = HubSettings {
            chunk_size: config.chunk_size,
            prepare: session::rtmp_out::prepare,
            player_queue: config.player_queue,
            player_queue_bytes: config.player_queue_bytes,
            player_max_drops: config.player_max_drops,
            gop_cache: config.gop_cache,
            gop_cache_bytes: config.gop_cache_bytes,
            ..HubSettings::default()
        };
        // Locked before anything runs: a second server on this state_dir must not take it.
        let journal = if config.session_journal { session::journal::open_for_server(&config.state_dir) } else { None };
        let (hub, receivers) = Hub::new(shard_count, hub_settings);
        let settings = SessionSettings {
            rtmp: ServerSettings {
                chunk_size: config.chunk_size,
                limits: config.wire_limits(),
                ..ServerSettings::default()
            },
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            update_interval: config.notify.update_interval,
            merge_write: config.merge_write(),
            merge_write_bytes: config.merge_write_bytes,
            limits: session::ConnectionLimits::from_config(config),
            rtsp_session_timeout: config.rtsp_session_timeout,
            rtsp_udp_ports: config.rtsp_udp_ports,
            rtsp_auth: config.rtsp_auth,
            wire: config.wire_limits(),
        };
        // Always running, even with no sink yet: the admin API can add webhooks at run time.
        let agent = webhook::agent(config.hook_timeout, config.tls_ca_file.as_deref())?;
        let sinks = dispatch::sinks_from_config(config, &agent);
        let outbox = OutboxSettings::resolve(config).map_err(ServerError::Outbox)?;
        let dispatcher = Dispatcher::start_with_outbox(sinks, agent, DispatchLimits::from_config(config), outbox);
        let event_sink: Box<dyn EventSink> = Box::new(dispatcher.clone());
        let hooks = Hooks::new(config, Some(event_sink));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<usize>();
        let (admin_senders, admin_receivers): (Vec<_>, Vec<_>) = (0..shard_count).map(|_| mpsc::channel(64)).unzip();
        let mut admin_receivers = admin_receivers.into_iter();
        let control = Arc::new(ServerControl { shards: admin_senders });
        let conn_ids = Arc::new(AtomicU64::new(1));
        let relays = session::relay::Relays::new(config, conn_ids.clone());
        let sources = session::rtsp_pull::Sources::new(&config.sources);
        let admission = Admission::new(config);
        let api_state = ApiState::new(hub.clone(), hooks.clone(), dispatcher.clone(), ApiOptions::from_config(config))
            .with_control(control.clone())
            .with_relays(relays.clone())
            .with_sources(sources.clone())
            .with_admission(admission.clone())
            .with_listeners(api::Listeners { rtmp: Some(rtmp_addr), http_flv: Some(http_addr) });
        // Before the first connection, so its events reach the webhooks made over the API too.
        // A bad state file is set aside and logged; media and config-file hooks do not need it.
        if let Err(error) = api_state.load_persisted() {
            error!("{error}");
        }
        // Before any shard accepts: the sessions a crash left open are ended first, so a
        // receiver sees their stops before any new session's start.
        let journal = journal.and_then(|(file, recovered)| {
            if session::recovery::end_recovered(&recovered, &hooks, config.notify.timeout) > 0 {
                wait_delivered(&dispatcher, config.shutdown_timeout);
            }
            file.start().map_err(|error| warn!("{error}; running without a session journal")).ok()
        });
        let shared = Arc::new(Shared {
            journal,
            hub,
            hooks: hooks.clone(),
            settings,
            next_conn_id: conn_ids,
            relays: relays.clone(),
            admission,
            heartbeats,
            takeover: Arc::new(config.takeover_rule()),
            republish_grace: Arc::new(config.grace_rule()),
            sources,
        });
        let (deadline, shutdown_rx) = watch::channel(None);
        let shutdown = Shutdown { deadline, timeout: config.shutdown_timeout };
        let mut shards = Vec::with_capacity(shard_count);
        // Each shard gets one listener per protocol.
        let per_shard = rtmp_listeners.into_iter().zip(http_listeners).zip(rtsp_listeners).zip(receivers);
        for (shard, (((rtmp, http), rtsp), inbox)) in per_shard.enumerate() {
            let listeners = vec![
                Listener { protocol: MediaProtocol::Rtmp, socket: rtmp },
                Listener { protocol: MediaProtocol::HttpFlv, socket: http },
                Listener { protocol: MediaProtocol::Rtsp, socket: rtsp },
            ];
            let shared = shared.clone();
            let shutdown_rx = shutdown_rx.clone();
            let started_tx = started_tx.clone();
            let admin = admin_receivers.next();
            let handle = thread::Builder::new()
                .name(format!("shard-{shard}"))
                .spawn(move || {
                    tokio_uring::start(async move {
                        let _ = started_tx.send(shard);
                        run_shard(shard, listeners, inbox, admin, shared, shutdown_rx).await
                    })
                })
                .map_err(|source| ServerError::Shard { shard, source })?;
            shards.push(handle);
        }
        drop(started_tx);
        for _ in 0..shard_count {
            // A shard whose io_uring cannot start panics before it reports: its sender is
            // dropped and this fails instead of announcing a server that does not serve.
            if started_rx.recv_timeout(Duration::from_secs(10)).is_err() {
                shutdown.start();
                return Err(ServerError::ShardStart);
            }
        }
        let api_shutdown = Arc::new(AtomicBool::new(false));
        let api_thread = match api::serve(api_listener, Arc::new(api_state), api_shutdown.clone()) {
            Ok(thread) => thread,
            Err(error) => {
                shutdown.start();
                return Err(ServerError::Api(error));
            }
        };
        info!("ready: rtmp={rtmp_addr} api={api_addr} http={http_addr} rtsp={rtsp_addr} shards={shard_count}");
        Ok(Server {
            rtmp_addr,
            http_addr,
            rtsp_addr,
            api_addr,
            hub: shared.hub.clone(),
            control,
            hooks,
            dispatcher,
            journal: shared.journal.clone(),
            admission: shared.admission.clone(),
            shutdown,
            shards,
            api_shutdown,
            api_thread: Some(api_thread),
        })
    }

    /// Asks every shard to stop accepting and close its sessions, by `shutdown_timeout`.
    pub fn stop(&self) {
        self.shutdown.start();
    }

    /// Waits for every shard to finish, then for the hook deliveries until the shutdown's
    /// deadline, and logs what was left undone.
    pub fn join(self) -> Result<(), ServerError> {
        let mut result = Ok(());
        let mut abandoned: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (shard, handle) in self.shards.into_iter().enumerate() {
            match handle.join() {
                Ok(left) => {
                    for (call, count) in left {
                        *abandoned.entry(call).or_default() += count;
                    }
                }
                Err(_) => {
                    self.shutdown.start();
                    result = Err(ServerError::ShardPanicked(shard));
                }
            }
        }
        let deadline = self.shutdown.deadline();
        // Every session has ended (or was abandoned at the deadline, and stays journaled for
        // the next start to end).
        if let Some(journal) = &self.journal {
            journal.close();
        }
        // The API stops within its sweep interval; connections still open end on their own.
        self.api_shutdown.store(true, Ordering::SeqCst);
        if let Some(api) = self.api_thread {
            let _ = api.join();
        }
        // The sessions' last events (publish_stop, connection_close) still go out, in what is
        // left of the deadline.
        let undone = self.dispatcher.shutdown(deadline.saturating_duration_since(Instant::now()));
        log_left_undone(&undone, &abandoned);
        result
    }
}

/// Waits, at most `limit`, until the dispatcher has nothing queued, waiting for a retry or in
/// flight: the recovered sessions' stops reach their receivers before a new session starts.
fn wait_delivered(dispatcher: &Dispatcher, limit: Duration) {
    let idle = || {
        dispatcher.stats.inbound_bytes.load(Ordering::Relaxed) == 0
            && dispatcher.sinks().iter().all(|sink| {
                let stats = &sink.stats;
                stats.queued_bytes.load(Ordering::Relaxed) == 0 && stats.in_flight.load(Ordering::Relaxed) == 0
            })
    };
    let deadline = Instant::now() + limit;
    // Idle twice in a row: an event the dispatcher has taken from its channel but not queued
    // yet looks idle for an instant.
    let mut idle_checks = 0;
    while idle_checks < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        idle_checks = if idle() { idle_checks + 1 } else { 0 };
    }
    if idle_checks < 2 {
        warn!(waited = ?limit, "recovered sessions' events not all delivered yet; accepting clients anyway");
    }
}

/// One line for everything a shutdown abandoned at its deadline: deliveries per sink (queued,
/// waiting for a retry or in flight) and told callbacks per call. Nothing when all went out.
fn log_left_undone(undone: &[(String, u64)], abandoned: &BTreeMap<&'static str, usize>) {
    if undone.is_empty() && abandoned.is_empty() {
        return;
    }
    let deliveries: u64 = undone.iter().map(|(_, count)| count).sum();
    let per_sink: Vec<String> = undone.iter().map(|(sink, count)| format!("{sink}={count}")).collect();
    let callbacks: usize = abandoned.values().sum();
    let per_call: Vec<String> = abandoned.iter().map(|(call, count)| format!("{call}={count}")).collect();
    error!(
        deliveries,
        sinks = %per_sink.join(","),
        callbacks,
        calls = %per_call.join(","),
        "shutdown deadline reached: left undone"
    );
}

/// Runs the server until SIGINT or SIGTERM, then shuts down cleanly.
///
/// `notifier` (from `$NOTIFY_SOCKET`) hears READY=1 once every shard runs, STOPPING=1 on a
/// stop signal, and WATCHDOG=1 while every shard keeps beating, when systemd asks for it.
pub fn run(config: &Config, notifier: Option<systemd::Notifier>) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(ServerError::Signals)?;
    let notifier = notifier.map(Arc::new);
    let watchdog = notifier.as_ref().and_then(|n| n.watchdog_interval());
    let heartbeats = watchdog.map(|interval| Arc::new(systemd::Heartbeats::new(config.shards.max(1), interval)));
    let server = Server::start_with(config, heartbeats.clone())?;
    if let Some(notifier) = &notifier {
        notifier.ready();
        notifier.status(&format!("serving rtmp={}", server.rtmp_addr));
        if let (Some(interval), Some(beats)) = (watchdog, heartbeats) {
            systemd::spawn_watchdog(notifier.clone(), interval, move || beats.all_beating())
                .map_err(ServerError::Signals)?;
        }
    }
    let stop_notifier = notifier.clone();
    let mut reloadable = Reloadable {
        dispatcher: server.dispatcher.clone(),
        hooks: server.hooks.clone(),
        admission: server.admission.clone(),
        config: config.clone(),
    };
    let stopper = server.shutdown.clone();
    let signal_thread = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reload(&mut reloadable);
                    continue;
                }
                info!(signal, "shutting down");
                if let Some(notifier) = &stop_notifier {
                    notifier.stopping();
                }
                stopper.start();
                break;
            }
        })
        .map_err(ServerError::Signals)?;
    let result = server.join();
    drop(signal_thread);
    result
}

/// What SIGHUP changes in a running server.
struct Reloadable {
    dispatcher: Arc<Dispatcher>,
    hooks: Arc<Hooks>,
    admission: Arc<Admission>,
    /// The configuration in effect, to say which changes wait for a restart.
    config: Config,
}

/// SIGHUP: reads the configuration again (same flags, same file) and applies what can change
/// while sessions run: the event sinks (`[[webhook]]`, `[[script]]`, `[stdio]`, `--hook-*`),
/// the callbacks (`[notify]`) and the admission limits (`max_connections`, `max_*_per_ip`,
/// `max_streams`, `max_players_per_stream`). No session is dropped; a limit lowered below
/// what is open refuses new clients only. Other changed keys wait for a restart, which the log
/// says. A file that does not validate changes nothing: one line says why.
fn reload(running: &mut Reloadable) {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(crate::config::Loaded::Run(config)) => config,
        Ok(crate::config::Loaded::Exit { .. }) => return,
        Err(error) => {
            error!("reload refused, configuration unchanged: {error}");
            return;
        }
    };
    let sinks = dispatch::sinks_from_config(&config, &running.dispatcher.agent());
    let count = sinks.len();
    running.dispatcher.replace_config_sinks(sinks);
    running.hooks.current_callbacks().replace_all(&config);
    running.admission.apply(&config);
    let waiting = restart_only_changes(&running.config, &config);
    if waiting.is_empty() {
        info!(sinks = count, "reloaded the configuration: event sinks, callbacks and limits");
    } else {
        warn!(
            sinks = count,
            restart_needed = %waiting.join(","),
            "reloaded the configuration: event sinks, callbacks and limits; the other changed keys take effect at restart"
        );
    }
    running.config = config;
}

/// The keys that differ between `old` and `new` which a reload does not apply.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    // Everything SIGHUP applies taken from `old`: what still differs waits for a restart.
    // `takeover` and `republish_grace` (top level and per app) are read once per shard at start.
    let takeover_changed = old.takeover_rule() != new.takeover_rule();
    let grace_changed = old.grace_rule() != new.grace_rule();
    let applied = Config {
        notify: old.notify.clone(),
        apps: old.apps.clone(),
        takeover: old.takeover,
        republish_grace: old.republish_grace,
        webhooks: old.webhooks.clone(),
        scripts: old.scripts.clone(),
        stdio: old.stdio,
        max_connections: old.max_connections,
        max_connections_per_ip: old.max_connections_per_ip,
        max_streams: old.max_streams,
        max_players_per_stream: old.max_players_per_stream,
        max_publishers_per_ip: old.max_publishers_per_ip,
        ..new.clone()
    };
    if applied == *old {
        let changed = [(takeover_changed, "takeover"), (grace_changed, "republish_grace")];
        return changed.into_iter().filter_map(|(changed, key)| changed.then_some(key)).collect();
    }
    let named: Vec<&'static str> = [
        (applied.rtmp_listen == old.rtmp_listen, "rtmp_listen"),
        (applied.http_listen == old.http_listen, "http_listen"),
        (applied.rtsp_listen == old.rtsp_listen, "rtsp_listen"),
        (applied.api_listen == old.api_listen, "api_listen"),
        (applied.shards == old.shards, "shards"),
        (applied.state_dir == old.state_dir, "state_dir"),
        (applied.handshake_timeout == old.handshake_timeout, "handshake_timeout"),
        (applied.idle_timeout == old.idle_timeout, "idle_timeout"),
        (applied.hook_timeout == old.hook_timeout, "hook_timeout"),
        (applied.hook_concurrency == old.hook_concurrency, "hook_concurrency"),
        (!takeover_changed, "takeover"),
        (!grace_changed, "republish_grace"),
        (applied.max_rtmp_message_bytes == old.max_rtmp_message_bytes, "max_rtmp_message_bytes"),
        (applied.max_rtmp_chunk_streams == old.max_rtmp_chunk_streams, "max_rtmp_chunk_streams"),
        (applied.max_http_request_head_bytes == old.max_http_request_head_bytes, "max_http_request_head_bytes"),
        (applied.max_rtsp_request_head_bytes == old.max_rtsp_request_head_bytes, "max_rtsp_request_head_bytes"),
        (applied.max_rtsp_body_bytes == old.max_rtsp_body_bytes, "max_rtsp_body_bytes"),
    ]
    .into_iter()
    .filter_map(|(same, key)| (!same).then_some(key))
    .collect();
    if named.is_empty() { vec!["others"] } else { named }
}

fn bind_reuseport(key: &'static str, addr: SocketAddr, count: usize) -> Result<Vec<StdListener>, ServerError> {
    if addr.port() != 0 {
        // SO_REUSEPORT would let a second ringcast (same user) share the port and silently
        // split connections with this one. A socket without it cannot bind a port anyone
        // listens on: probe with one first, so a busy port is an error as it should be.
        probe_free(addr).map_err(|source| ServerError::Bind { key, addr, source })?;
    }
    let mut listeners = Vec::with_capacity(count);
    let mut addr_to_bind = addr;
    for _ in 0..count {
        let listener = bind_one(addr_to_bind).map_err(|source| ServerError::Bind { key, addr, source })?;
        if addr_to_bind.port() == 0 {
            // Port 0 picks a free port; every other shard must share that one.
            addr_to_bind = listener.local_addr().map_err(|source| ServerError::Bind { key, addr, source })?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The address `listener` (bound for config key `key`) listens on: the port chosen for port 0.
fn bound_addr(key: &'static str, addr: SocketAddr, listener: &StdListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind { key, addr, source })
}

fn probe_free(addr: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

fn bind_one(addr: SocketAddr) -> std::io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A bound listening socket and the protocol its connections speak.
struct Listener {
    protocol: MediaProtocol,
    socket: StdListener,
}

async fn run_shard(
    shard: usize,
    listeners: Vec<Listener>,
    mut inbox: mpsc::Receiver<ShardMessage>,
    admin: Option<mpsc::Receiver<AdminRequest>>,
    shared: Arc<Shared>,
    shutdown_rx: watch::Receiver<Option<Instant>>,
) -> Abandoned {
    let shard_hub = ShardHub::new(shard, shared.hub.clone());
    let seed = (shard as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
    let callbacks = CallbackLane::following(
        shared.hooks.current_callbacks().clone(),
        shared.hooks.https_pool().clone(),
        shared.hub.shard_count(),
    );
    callbacks.start_sweeping();
    let context = ShardContext::new(shard_hub.clone(), shared.hooks.clone(), callbacks, shared.settings, seed);
    if let Some(journal) = &shared.journal {
        let _ = context.journal.set(journal.clone());
    }
    let _ = context.admission.set(shared.admission.clone());
    let _ = context.takeover.set(shared.takeover.clone());
    let _ = context.republish_grace.set(shared.republish_grace.clone());
    let _ = context.relays.set(shared.relays.clone());
    let _ = context.sources.set(shared.sources.clone());
    session::rtsp_pull::spawn(&context, &shared.sources, shared.hub.shard_count());
    if let Some(beats) = shared.heartbeats.clone() {
        tokio::task::spawn_local(async move {
            loop {
                beats.beat(shard);
                tokio::time::sleep(beats.tick()).await;
            }
        });
    }

    if let Some(mut admin) = admin {
        let context = context.clone();
        tokio::task::spawn_local(async move {
            while let Some(request) = admin.recv().await {
                // A reply nobody waits for any more (timed out) is simply dropped.
                match request {
                    AdminRequest::Clients(reply) => drop(reply.send(context.clients())),
                    AdminRequest::Activity(reply) => drop(reply.send(context.activity())),
                    AdminRequest::Kick(conn_id, reply) => drop(reply.send(context.kick(conn_id))),
                }
            }
        });
    }

    // Messages from other shards: relayed packets and subscriptions.
    let inbox_hub = shard_hub.clone();
    tokio::task::spawn_local(async move {
        while let Some(message) = inbox.recv().await {
            inbox_hub.handle_message(message);
        }
    });

    let mut acceptors = Vec::with_capacity(listeners.len() * ACCEPTORS);
    for Listener { protocol, socket } in listeners {
        let socket = Rc::new(tokio_uring::net::TcpListener::from_std(socket));
        for _ in 0..ACCEPTORS {
            let (socket, context, shared, shutdown_rx) =
                (socket.clone(), context.clone(), shared.clone(), shutdown_rx.clone());
            acceptors.push(tokio::task::spawn_local(accept_loop(
                shard,
                protocol,
                socket,
                context,
                shared,
                shutdown_rx,
            )));
        }
    }
    // The last acceptor of a listener drops it: no new connection once shutdown begins.
    for acceptor in acceptors {
        let _ = acceptor.await;
    }

    let deadline = shutdown_rx.borrow().unwrap_or_else(Instant::now);
    context.shutdown.trigger();
    let drained = tokio::time::timeout_at(deadline.into(), wait_sessions(&context)).await;
    if drained.is_err() {
        error!(shard, left = context.active_sessions.get(), "sessions still open at the shutdown deadline");
    }
    // The closed sessions' done callbacks still go out, until the deadline.
    context.callbacks.drain(deadline).await
}

/// Accepts connections and hands each to its protocol's driver, until shutdown.
async fn accept_loop(
    shard: usize,
    protocol: MediaProtocol,
    listener: Rc<tokio_uring::net::TcpListener>,
    context: Rc<ShardContext>,
    shared: Arc<Shared>,
    mut shutdown_rx: watch::Receiver<Option<Instant>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown_rx.wait_for(Option::is_some) => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: log, pause briefly so we do not spin, keep serving.
                warn!(shard, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match shared.admission.connect(peer.ip()) {
            Ok(permit) => permit,
            Err(kind) => {
                shared.admission.refused(
                    kind,
                    &shared.hub.stats,
                    &format!("{} connection from {peer}", protocol.as_str()),
                );
                refuse_at_accept(protocol, socket);
                continue;
            }
        };
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let context = context.clone();
        // One task type per protocol, not one future matching on the protocol: a task is as
        // large as its future, and an idle RTMP connection must not carry the larger state of
        // an RTSP session (an idle connection's whole cost is this task and its buffers).
        match protocol {
            MediaProtocol::Rtmp => spawn_session(move || session::rtmp::run(socket, peer, conn_id, context), permit),
            MediaProtocol::HttpFlv => {
                spawn_session(move || session::http_flv::run(socket, peer, conn_id, context), permit)
            }
            MediaProtocol::Rtsp => spawn_session(move || session::rtsp::run(socket, peer, conn_id, context), permit),
        }
    }
}

/// Runs one accepted connection's driver as a task of its own, and counts the connection
/// closed when it ends. The driver's future is made inside the task from `start`: a future
/// passed in whole would be stored twice in the task (once as the task's capture, once where
/// it is awaited), doubling what every idle connection holds.
fn spawn_session<F: Future<Output = ()>>(start: impl FnOnce() -> F + 'static, permit: ConnectionPermit) {
    tokio::task::spawn_local(async move {
        start().await;
        drop(permit);
    });
}

/// How long a refused HTTP client gets to take its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes a connection a limit refused at accept. HTTP gets its 503 first (it needs nothing of
/// the request); RTMP and RTSP cannot be answered before their handshake or a request's
/// `CSeq`, so they are closed.
fn refuse_at_accept(protocol: MediaProtocol, socket: tokio_uring::net::TcpStream) {
    if protocol != MediaProtocol::HttpFlv {
        return;
    }
    tokio::task::spawn_local(async move {
        let mut reply = Vec::with_capacity(160);
        let headers = [("Content-Length", "0"), ("Retry-After", "5"), ("Connection", "close")];
        crate::protocol::http_server::ResponseHead { status: 503, headers: &headers }.encode(&mut reply);
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, socket.write_all(reply)).await;
        let _ = socket.shutdown(std::net::Shutdown::Both);
    });
}

async fn wait_sessions(context: &Rc<ShardContext>) {
    while context.active_sessions.get() > 0 {
        context.sessions_done.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_wire_limit_waits_for_a_restart_and_is_named() {
        let old = Config::default();
        let new = Config { max_rtsp_body_bytes: 4096, max_rtmp_message_bytes: 1 << 20, max_streams: 5, ..old.clone() };
        assert_eq!(restart_only_changes(&old, &new), vec!["max_rtmp_message_bytes", "max_rtsp_body_bytes"]);
        assert!(restart_only_changes(&old, &Config { max_streams: 5, ..old.clone() }).is_empty());
    }
}
