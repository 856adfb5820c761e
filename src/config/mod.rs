//! Configuration: built-in defaults, a TOML file and command-line flags, merged into one
//! validated [`Config`], with a clear one-line error for bad input.
//!
//! # Interface
//!
//! [`Config::from_args`] is the whole entry point for `main`:
//!
//! ```no_run
//! use ringcast::config::{Config, Loaded};
//!
//! match Config::from_args(std::env::args_os()) {
//!     Ok(Loaded::Run(config)) => { /* start the server with `config` */ }
//!     Ok(Loaded::Exit { message, code }) => {
//!         print!("{message}"); // --help, --version, --check
//!         std::process::exit(code)
//!     }
//!     Err(e) => {
//!         eprintln!("ringcast: {e}");
//!         std::process::exit(2)
//!     }
//! }
//! ```
//!
//! - Precedence: defaults < `--config FILE` < flags. The repeatable flags `--hook-webhook` and
//!   `--hook-script` add sinks to the file's `[[webhook]]`/`[[script]]` lists instead of
//!   replacing them.
//! - Every failure is one [`ConfigError`] whose `Display` is a single line naming where (file
//!   and line, or flag), the key, and what is wrong, e.g.
//!   `config /etc/ringcast.toml:3: key 'shards': must be at least 1, got 0`.
//! - `--help`, `--version` and `--check` (validate, then exit) come back as [`Loaded::Exit`] with
//!   status 0 and the text to print on stdout.
//! - [`Config`] fields are named after their TOML keys (except `webhooks`/`scripts` for the
//!   `[[webhook]]`/`[[script]]` arrays); `ringcast.example.toml` documents every key.
//!
//! # Layout
//!
//! - `duration`: `"30s"`-style durations.
//! - `hooks`: the hook settings (`[notify]`, `[[webhook]]`, `[[script]]`, `[stdio]`; docs/hooks.md)
//!   and the validators of single values the admin API shares.
//! - `webhook`: a webhook definition checked key by key and across keys, once for the config
//!   file, the admin API and its state file.
//! - `nats`: a `[[nats]]` sink's keys (URL, subject template, stream name).
//! - `file`: the TOML reader. It walks the parsed document by hand instead of using serde derive
//!   so that every error, unknown keys included, names its full key and line in one line.
//! - `cli`: the clap flags and how they override.
//! - `go_flags`: go-rtmp's single-dash flags, rewritten to ringcast's before clap reads them.
//! - `relay`: the `[relay]` table (docs/scaling-out.md) and an app's keys over it.
//! - `sources`: streams pulled from RTSP cameras (`[sources."<app>/<name>"]`).

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::limits::WireLimits;

/// Defines a closed set of names (`log_level = "info"`, `format = "json"`): the enum, `ALL`,
/// `as_str`, `Display`, and a `FromStr` whose error lists the accepted names.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in the config file, flags and payloads.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!(
                        "invalid value '{}' (expected one of: {})",
                        s.escape_debug(),
                        names.join(", ")
                    )
                })
            }
        }
    };
}

mod apps;
mod cli;
mod duration;
mod file;
mod go_flags;
mod hooks;
mod nats;
mod relay;
mod sources;
#[cfg(test)]
mod tests;
mod webhook;

choice! {
    /// When the RTSP server asks a client for credentials (`rtsp_auth`, docs/rtsp.md).
    #[derive(Default)]
    pub enum RtspAuth {
        /// Never asks first: a client's credentials reach the callbacks when it sends them
        /// unasked, and a callback answering 401 makes the client ask again.
        #[default]
        None = "none",
        /// A DESCRIBE or ANNOUNCE without credentials gets a 401 offering Basic.
        Basic = "basic",
        /// As `basic`, offering Digest first (the password never crosses the network).
        Digest = "digest",
    }
}

pub use apps::{AppConfig, AppRule, Apps, GraceRule, NotifyOverlay, SERVER_WIDE_NOTIFY_KEYS, TakeoverRule};
pub use duration::{MAX_DURATION, format_duration, parse_duration};
pub use hooks::{
    DEFAULT_SIGNATURE_HEADER, Dialect, EventFilter, EventType, Header, MAX_HEADER_BYTES, MAX_HEADERS, NotifyConfig,
    NotifyMethod, OnError, ScriptConfig, Secret, Signature, StdioFormat, WebhookConfig, WebhookFormat, check_headers,
    parse_event, parse_header_name, parse_url,
};
pub use nats::{DEFAULT_SUBJECT, NatsConfig, SubjectPart, SubjectTemplate};
pub use relay::{DEFAULT_LINGER, RelayConfig, RelayOverlay, RelayUrl};
pub use sources::{DEFAULT_START_TIMEOUT, SourceConfig, SourceTransport, shown_url};
pub use webhook::{
    CrossKeyError, ValueError, WEBHOOK_KEYS, WebhookFields, check_header_count, check_retries, is_plain_id,
    parse_events, parse_headers,
};

choice! {
    /// The most verbose level logged.
    #[derive(Default)]
    pub enum LogLevel {
        Error = "error",
        Warn = "warn",
        #[default]
        Info = "info",
        Debug = "debug",
        Trace = "trace",
    }
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

choice! {
    /// How log lines are written.
    #[derive(Default)]
    pub enum LogFormat {
        /// Human-readable lines, for a terminal or journald.
        #[default]
        Text = "text",
        /// One JSON object per line, for log pipelines.
        Json = "json",
    }
}

/// Whole-number limits, shared by the TOML reader and the flags so the two cannot disagree.
mod limits {
    pub const SHARDS: (u64, u64) = (1, 1024);
    pub const CHUNK_SIZE: (u64, u64) = (128, 65_536);
    pub const PLAYER_QUEUE: (u64, u64) = (16, 1 << 20);
    pub const PLAYER_MAX_DROPS: (u64, u64) = (1, 1_000_000);
    pub const MAX_CONNECTIONS: (u64, u64) = (1, 10_000_000);
    /// The counted admission limits below the total; 0 turns one off.
    pub const ADMISSION_LIMIT: (u64, u64) = (0, 10_000_000);
    pub const MERGE_WRITE_MS: (u64, u64) = (0, 1000);
    pub const MERGE_WRITE_BYTES: (u64, u64) = (0, 16 << 20);
    pub const HOOK_CONCURRENCY: (u64, u64) = (1, 1024);
    pub const HOOK_QUEUE: (u64, u64) = (1, 10_000_000);
    pub const HOOK_QUEUE_BYTES: (u64, u64) = (64 * 1024, 1 << 40);
    pub const OUTBOX_MAX_BYTES: (u64, u64) = (64 * 1024, 1 << 44);
    pub const CALLBACKS_IN_FLIGHT: (u64, u64) = (1, 1_000_000);
    pub const CALLBACK_CACHE_ENTRIES: (u64, u64) = (0, 10_000_000);
    pub const RETRIES: (u64, u64) = (0, 100);
    pub const API_MAX_WEBHOOKS: (u64, u64) = (0, 10_000);
    // Memory bounds of connections and streams, in bytes.
    pub const MAX_PENDING_OUTPUT: (u64, u64) = (4096, 1 << 30);
    pub const PARTIAL_MESSAGE_BUDGET: (u64, u64) = (1 << 20, 1 << 40);
    pub const PLAYER_QUEUE_BYTES: (u64, u64) = (64 << 10, 1 << 40);
    pub const GOP_CACHE_BYTES: (u64, u64) = (64 << 10, 1 << 40);
    // Wire limits, per connection: a message or request past them is refused.
    /// Up to the RTMP length field's 24-bit ceiling.
    pub const RTMP_MESSAGE_BYTES: (u64, u64) = (4096, 0x00FF_FFFF);
    /// The chunk stream ids a peer can name (2 to 65599).
    pub const RTMP_CHUNK_STREAMS: (u64, u64) = (2, 65_598);
    pub const REQUEST_HEAD_BYTES: (u64, u64) = (1024, 1 << 20);
    pub const RTSP_BODY_BYTES: (u64, u64) = (1024, 16 << 20);
}

/// Duration floors. A zero timeout would fail every handshake or callback at once; an update
/// interval under a second would flood the receiver.
mod floors {
    use std::time::Duration;
    pub const TIMEOUT: Duration = Duration::from_millis(1);
    pub const UPDATE_INTERVAL: Duration = Duration::from_secs(1);
}

/// The whole validated configuration. Field names are the TOML keys; every value here has passed
/// the checks its doc names, so consumers never re-validate.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// RTMP listener (publishers and players). Default `0.0.0.0:1935`, the port every RTMP client
    /// assumes. Flag `--rtmp-listen`.
    pub rtmp_listen: SocketAddr,
    /// HTTP-FLV listener (players). Default `0.0.0.0:8080`. Flag `--http-listen`.
    pub http_listen: SocketAddr,
    /// RTSP listener. Default `0.0.0.0:8554`, the usual unprivileged RTSP port. Flag
    /// `--rtsp-listen`.
    pub rtsp_listen: SocketAddr,
    /// Admin API listener. Default `127.0.0.1:8081`: the API kicks clients and edits webhooks, so
    /// it is reachable from this host only unless the operator says otherwise. Flag `--api-listen`.
    pub api_listen: SocketAddr,
    /// The bearer token the admin API requires (`Authorization: Bearer <token>`, docs/hooks.md). `None`:
    /// whoever reaches `api_listen` may use the API. TOML only, so it never shows in `ps`.
    pub api_token: Option<ApiToken>,
    /// Webhooks the admin API may create (config-file ones do not count); one more is answered
    /// 409. Default 100; 0..=10000 (0: the API cannot create webhooks). Every sink gets a copy of
    /// every event it wants, so each one multiplies the hook queue's work and memory.
    pub api_max_webhooks: usize,
    /// Number of shards: single-threaded io_uring reactors, one per core. Default: the number of
    /// CPUs (at most 1024). 1..=1024; more shards than cores only adds context switches. Flag
    /// `--shards`.
    pub shards: usize,
    /// Most verbose level logged. Default `info`. Flag `--log-level`.
    pub log_level: LogLevel,
    /// Log line format. Default `text`. Flag `--log-format`.
    pub log_format: LogFormat,
    /// Outgoing RTMP chunk size in bytes, announced with Set Chunk Size. Default 4096; 128..=65536.
    /// Bigger chunks mean fewer chunk headers and larger writes (the fan-out cost is per write).
    pub chunk_size: u32,
    /// Packets queued per player before it is skipped ahead to the next keyframe. Default 1024;
    /// 16..=1048576. Bounds a slow player's memory; too small drops on every bitrate spike.
    pub player_queue: usize,
    /// Drops to the next keyframe a player may need without catching up in between before it is
    /// disconnected. Default 3; at least 1. Stops a player that cannot keep up from cycling forever.
    pub player_max_drops: u32,
    /// Keep the current group of pictures so a new player starts at once on a keyframe. Default
    /// true; false saves a GOP of memory per stream at the cost of start-up delay.
    pub gop_cache: bool,
    /// Simultaneous connections, all protocols and shards together; past it new ones are closed at
    /// accept. Default 100000; 1..=10000000. Bounds memory and file descriptors.
    pub max_connections: usize,
    /// Simultaneous connections from one client IP address, all protocols together; past it
    /// new ones from that address are refused at accept (HTTP gets a 503). Default 0 (no
    /// limit: viewers behind one NAT, and load generators, share an address); 0..=10000000.
    pub max_connections_per_ip: usize,
    /// Streams in the registry (published, or awaited by players); a publish or play that would
    /// create one more is refused. Default 10000; 0 = no limit. Bounds what clients naming
    /// random streams can make the server hold.
    pub max_streams: usize,
    /// Players of one stream, server-wide; one more is refused. Default 0 (no limit).
    pub max_players_per_stream: usize,
    /// Streams one client IP address may publish at once; one more is refused. Default 0 (no
    /// limit).
    pub max_publishers_per_ip: usize,
    /// Keep `state_dir/sessions.journal` of the sessions publishing or playing, so the start
    /// after a crash sends their stop events and done callbacks (docs/operations.md). Default
    /// true; without a usable `state_dir` the journal is off and a warning says so.
    pub session_journal: bool,
    /// Merged-write window in milliseconds: a player's packets are coalesced this long into one
    /// write (fewer syscalls and segments: fan-out costs per write, not per byte), and a busy
    /// shard writes each player once per window. Default 100 (0 = off); at most 1000.
    pub merge_write_ms: u64,
    /// Payload bytes that end a player's merge window early: a player that has gathered this
    /// much writes at once, so high-bitrate streams get large writes without waiting for the
    /// window and low-bitrate ones still go out at its end. Default 65536; 0 = time only; at
    /// most 16 MiB.
    pub merge_write_bytes: usize,
    /// Time a client has to complete the protocol handshake; bounds connections that never speak.
    /// Default 10s.
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing this long is disconnected, freeing its stream name. Default
    /// 30s.
    pub idle_timeout: Duration,
    /// A write the socket does not take whole within this long closes its connection (its peer
    /// stopped reading, or reads too slowly for a live stream); so does unsent output that stays
    /// above `max_pending_output` this long. Bounds delivery delay and what a stalled player
    /// keeps alive. Default 30s.
    pub send_timeout: Duration,
    /// Unsent output bytes per connection (protocol replies and media handed to its writer)
    /// above which its input is not read until the peer reads. Default 1 MiB; 4096..=1 GiB.
    pub max_pending_output: usize,
    /// Bytes all incomplete incoming messages may reserve together, split evenly across shards
    /// (at least 32 MiB per shard, so a 16 MiB message always fits); a connection whose message
    /// would take more than its shard's share leaves to the others is closed. Default 256 MiB;
    /// at least 1 MiB.
    pub partial_message_budget: usize,
    /// A message still incomplete after this long closes its connection (slow body). Default 10s.
    pub partial_message_timeout: Duration,
    /// An RTSP session that sends nothing (no request, media or RTCP) for this long is closed;
    /// announced to clients as `Session: id;timeout=N`. Default 60s.
    pub rtsp_session_timeout: Duration,
    /// `rtsp_udp_ports = "30000-39999"`: the UDP ports RTSP sessions take their RTP/RTCP pairs
    /// from (an even first port, at least one pair).
    pub rtsp_udp_ports: (u16, u16),
    /// `rtsp_auth`: when RTSP clients are asked for credentials. Default `none`.
    pub rtsp_auth: RtspAuth,
    /// Largest RTMP message a client may send; a longer one closes its connection. Default
    /// 16777215 (the format's 24-bit length field); 4096..=16777215.
    pub max_rtmp_message_bytes: u32,
    /// RTMP chunk streams of one connection that may hold an incomplete message at once; one
    /// more closes it. Default 64; 2..=65598.
    pub max_rtmp_chunk_streams: usize,
    /// Largest HTTP-FLV (and WebSocket-FLV) request head; past it `431`. Default 8192;
    /// 1024..=1048576.
    pub max_http_request_head_bytes: usize,
    /// Largest RTSP request head; past it `413`. Default 16384; 1024..=1048576.
    pub max_rtsp_request_head_bytes: usize,
    /// Largest RTSP request body (an ANNOUNCE's SDP); past it `413`. Default 65536;
    /// 1024..=16777216.
    pub max_rtsp_body_bytes: usize,
    /// Bytes (payload and chunked form) queued per player before it is skipped ahead to the next
    /// keyframe, beside the `player_queue` packet count. Default 32 MiB; at least 64 KiB and at
    /// least `gop_cache_bytes`, so a new player's cached start fits.
    pub player_queue_bytes: usize,
    /// Bytes (payload and chunked form) of a stream's cached GOP; a longer GOP is not cached and
    /// new players wait for the next keyframe. Default 32 MiB; at least 64 KiB.
    pub gop_cache_bytes: usize,
    /// Where state that survives a restart lives (webhooks created over the API). Default
    /// `/var/lib/ringcast`.
    pub state_dir: PathBuf,
    /// Time limit per event-sink delivery; scripts are killed at it. Default 30s. Flag
    /// `--hook-timeout`.
    pub hook_timeout: Duration,
    /// Event-sink deliveries executing at once (blocking HTTP workers); further ones queue.
    /// Shared equally by the sinks, at least one each (so at most `max(this, sinks)` run at
    /// once): a hung receiver holds only its own share. Default 10; 1..=1024. Flag
    /// `--hook-concurrency`.
    pub hook_concurrency: usize,
    /// Queued event-sink deliveries; past it the oldest is dropped, counted and logged. Default
    /// 100000; 1..=10000000. Bounds hook memory when a receiver is slow.
    pub hook_queue: usize,
    /// Bytes of queued event-sink deliveries (their events' data, counted per sink, retries
    /// waiting included), and separately of events waiting in the channel from the shards;
    /// past it the oldest is dropped, counted and logged. Default 64 MiB; 64 KiB..=1 TiB.
    /// Bounds hook memory whatever the events carry (`hook_queue` only counts them).
    pub hook_queue_bytes: usize,
    /// `outbox`: every event bound for a webhook is written to `state_dir/outbox/` before its
    /// first attempt and kept until delivered (docs/hooks.md, "Delivery guarantees"). `None`
    /// (`"auto"`, the default): on when `state_dir` is writable, else off with a warning;
    /// `Some(true)`: start-up fails when it is not writable.
    pub outbox: Option<bool>,
    /// How often outbox writes are fsynced: on a power failure, at most this much of the
    /// newest events may be lost (a killed process loses none). Default 200ms.
    pub outbox_fsync: Duration,
    /// Bytes one webhook's outbox may hold on disk; past it new events are dropped, counted and
    /// logged (the oldest undelivered are kept). Default 1 GiB; 64 KiB..=16 TiB.
    pub outbox_max_bytes: usize,
    /// How long delivered webhook events stay in the outbox, so `ringcast hooks replay` can
    /// send them again; still within `outbox_max_bytes`, where they are the first to go.
    /// Default 24h; "0s" deletes them once delivered.
    pub outbox_retain: Duration,
    /// How long a graceful shutdown (SIGTERM, SIGINT) may take: sessions close, then done
    /// callbacks and queued deliveries get what is left; at the deadline the rest is abandoned
    /// and logged in one summary. Default 10s, under the systemd unit's `TimeoutStopSec=15s`
    /// so the summary is written before a SIGKILL. Independent of `hook_timeout`.
    pub shutdown_timeout: Duration,
    /// After a webhook secret is rotated over the API, the previous secret keeps signing (next to
    /// the new one) this long, so receivers can switch over. Default 24h.
    pub rotation_grace: Duration,
    /// A PEM file of extra CA certificates trusted for `https://` hook endpoints, next to the
    /// system roots: for receivers behind a private CA. Default: none.
    pub tls_ca_file: Option<PathBuf>,
    /// Blocking callbacks (`[notify]`).
    pub notify: NotifyConfig,
    /// Asynchronous webhooks (`[[webhook]]`, then `--hook-webhook`), in order.
    pub webhooks: Vec<WebhookConfig>,
    /// Scripts run per event (`[[script]]`, then `--hook-script`), in order.
    pub scripts: Vec<ScriptConfig>,
    /// NATS JetStream sinks (`[[nats]]`), in order.
    pub nats: Vec<NatsConfig>,
    /// One line per event on stderr (`[stdio]`, `--hook-stdio-format`); `None`: off.
    pub stdio: Option<StdioFormat>,
    /// Per-application hooks (`[apps.<app>]`): callbacks over `[notify]` key by key, sinks
    /// beside the global ones (`apps.rs` states the rule).
    pub apps: Apps,
    /// `takeover = true`: a new publisher of a busy stream, once its callbacks admitted it,
    /// replaces the current one (closed, `publish_stop` reason `taken over`) instead of being
    /// refused. Default false; `[apps.<app>] takeover` per app.
    pub takeover: bool,
    /// How long a stream whose publisher's connection dropped keeps its players for a new
    /// publisher to continue it (docs/hooks.md "Publisher reconnect grace"). Default zero: the
    /// stream ends with the connection. `[apps.<app>] republish_grace` per app.
    pub republish_grace: Duration,
    /// Edge pulls, pushes and RTMP sources on demand (`[relay]`, per app
    /// `[apps.<app>.relay]`; docs/scaling-out.md).
    pub relay: RelayConfig,
    /// Streams pulled from RTSP cameras (`[sources."<app>/<name>"]`, `sources.rs`), in file
    /// order.
    pub sources: Vec<SourceConfig>,
}

/// The number of shards when none is configured: one per CPU, within the shard limits.
pub fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.min(limits::SHARDS.1 as usize)
}

const fn any_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rtmp_listen: any_addr(1935),
            http_listen: any_addr(8080),
            rtsp_listen: any_addr(8554),
            api_listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081)),
            api_token: None,
            api_max_webhooks: 100,
            shards: default_shards(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            chunk_size: 4096,
            player_queue: 1024,
            player_max_drops: 3,
            gop_cache: true,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            max_streams: 10_000,
            max_players_per_stream: 0,
            max_publishers_per_ip: 0,
            session_journal: true,
            merge_write_ms: 100,
            merge_write_bytes: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_pending_output: 1 << 20,
            partial_message_budget: 256 << 20,
            partial_message_timeout: Duration::from_secs(10),
            rtsp_session_timeout: Duration::from_secs(60),
            rtsp_udp_ports: (30000, 39999),
            rtsp_auth: RtspAuth::None,
            max_rtmp_message_bytes: WireLimits::default().rtmp_message_bytes,
            max_rtmp_chunk_streams: WireLimits::default().rtmp_chunk_streams,
            max_http_request_head_bytes: WireLimits::default().http_request_head_bytes,
            max_rtsp_request_head_bytes: WireLimits::default().rtsp_request_head_bytes,
            max_rtsp_body_bytes: WireLimits::default().rtsp_body_bytes,
            player_queue_bytes: 32 << 20,
            gop_cache_bytes: 32 << 20,
            state_dir: PathBuf::from("/var/lib/ringcast"),
            hook_timeout: Duration::from_secs(30),
            hook_concurrency: 10,
            hook_queue: 100_000,
            hook_queue_bytes: 64 << 20,
            outbox: None,
            outbox_fsync: Duration::from_millis(200),
            outbox_max_bytes: 1 << 30,
            outbox_retain: Duration::from_secs(24 * 3600),
            shutdown_timeout: Duration::from_secs(10),
            rotation_grace: Duration::from_secs(24 * 3600),
            tls_ca_file: None,
            notify: NotifyConfig::default(),
            webhooks: Vec::new(),
            scripts: Vec::new(),
            nats: Vec::new(),
            stdio: None,
            apps: Apps::new(),
            takeover: false,
            republish_grace: Duration::ZERO,
            relay: RelayConfig::default(),
            sources: Vec::new(),
        }
    }
}

/// What [`Config::from_args`] asks `main` to do.
#[derive(Debug)]
// Built once at start-up and moved straight into the server: boxing the big variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Loaded {
    /// Start the server with this configuration.
    Run(Config),
    /// Print `message` on stdout and exit with `code` (0): `--help`, `--version`, `--check`.
    Exit { message: String, code: i32 },
}

/// A configuration error. `Display` is one line: where, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, not UTF-8).
    #[error("config {}: cannot read: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key, or a bad value.
    #[error("config {}{}: {message}", .path.display(), LineSuffix(*.line))]
    File {
        path: PathBuf,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        message: String,
    },
    /// A flag has a bad value (`flag` includes the dashes).
    #[error("flag {flag}: {message}")]
    Flag { flag: String, message: String },
    /// The command line does not parse (unknown flag, missing value); clap's message, one line.
    #[error("{0}")]
    Usage(String),
    /// Each value is fine but together they are not (two listeners on one port).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// The admin API bearer token. `Debug` never prints it, so a logged `Config` does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Accepts a token that can travel in an `Authorization` header: visible ASCII, no spaces.
    pub fn parse(text: &str) -> Result<ApiToken, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII without spaces (it is sent in a header)".to_owned());
        }
        Ok(ApiToken(text.to_owned()))
    }

    /// The token, for comparing with a request's.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl Config {
    /// Parses the command line (the program name first, as `std::env::args_os()` yields it),
    /// reads `--config FILE` if given, applies the flags over it and validates the result.
    pub fn from_args<I, T>(args: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = match cli::Cli::parse_args(go_flags::rewrite(args))? {
            cli::Parsed::Flags(cli) => cli,
            cli::Parsed::Exit(message) => return Ok(Loaded::Exit { message, code: 0 }),
        };
        let mut config = Config::default();
        if let Some(path) = &cli.config {
            config.apply_file(path)?;
        }
        cli.apply(&mut config)?;
        config.validate()?;
        if cli.check {
            let source = match &cli.config {
                Some(path) => format!(" ({})", path.display()),
                None => String::new(),
            };
            let apps = config.apps_summary();
            return Ok(Loaded::Exit { message: format!("ringcast: configuration OK{source}\n{apps}"), code: 0 });
        }
        Ok(Loaded::Run(config))
    }

    /// Defaults overridden by the TOML file at `path`, validated.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_file(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults overridden by the TOML document `text`, validated; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        file::apply(&mut config, path, text)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        file::apply(self, path, &text)
    }

    /// Checks what no single key can: listeners that would share a port. With SO_REUSEPORT two
    /// listeners on one port would both bind and silently split connections between protocols,
    /// so this must be caught here rather than left to `bind`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listeners = [
            ("rtmp_listen", self.rtmp_listen),
            ("http_listen", self.http_listen),
            ("rtsp_listen", self.rtsp_listen),
            ("api_listen", self.api_listen),
        ];
        if self.gop_cache_bytes > self.player_queue_bytes {
            return Err(ConfigError::Invalid(format!(
                "key 'gop_cache_bytes': must not exceed player_queue_bytes ({}), got {}: a new player's cached start must fit its queue",
                self.player_queue_bytes, self.gop_cache_bytes
            )));
        }
        for name in self.apps.keys() {
            let notify = self.app_notify(name);
            if notify.dialect != Dialect::Nginx && notify.method == NotifyMethod::Get {
                return Err(ConfigError::Invalid(format!(
                    "apps.{name}.notify: the {} dialect sends a JSON body, so 'method' must be post",
                    notify.dialect
                )));
            }
            if notify.secret.is_none() && self.apps[name].notify.keys.contains(&"signature") {
                return Err(ConfigError::Invalid(format!(
                    "apps.{name}.notify: 'signature' has no effect without 'secret' (here or in [notify])"
                )));
            }
        }
        for (i, (name_a, a)) in listeners.iter().enumerate() {
            for (name_b, b) in &listeners[i + 1..] {
                if a.port() != 0 && a.port() == b.port() && overlaps(a.ip(), b.ip()) {
                    return Err(ConfigError::Invalid(format!("{name_a} {a} and {name_b} {b} use the same port")));
                }
            }
        }
        Ok(())
    }

    /// The merged-write window, `None` when merging is off.
    pub fn merge_write(&self) -> Option<Duration> {
        (self.merge_write_ms > 0).then(|| Duration::from_millis(self.merge_write_ms))
    }

    /// The wire limits the protocol state machines are built with.
    pub fn wire_limits(&self) -> WireLimits {
        WireLimits {
            rtmp_message_bytes: self.max_rtmp_message_bytes,
            rtmp_chunk_streams: self.max_rtmp_chunk_streams,
            http_request_head_bytes: self.max_http_request_head_bytes,
            rtsp_request_head_bytes: self.max_rtsp_request_head_bytes,
            rtsp_body_bytes: self.max_rtsp_body_bytes,
        }
    }
}

/// Whether two listening IPs can receive the same connection: equal, or either a wildcard
/// (`[::]` also takes IPv4 unless IPV6_V6ONLY, so wildcards overlap across families).
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Parses a listen address: `host:port` (IP literal or `localhost`, `[v6]:port`), `:port` or
/// `*:port` (all IPv4 interfaces), or a bare `port`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let invalid = || format!("invalid socket address {} (expected host:port or :port)", quote(text));
    let t = text.trim();
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => ("", t),
    };
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return Err(invalid()),
    };
    let port: u16 = port.parse().map_err(|_| invalid())?;
    Ok(SocketAddr::new(ip, port))
}

/// Parses a whole number written as text (a flag value) within `limit`.
fn parse_number<T: TryFrom<u64>>(text: &str, limit: (u64, u64)) -> Result<T, String> {
    let value: i128 = text.trim().parse().map_err(|_| format!("expected a whole number, got {}", quote(text)))?;
    check_range(value, limit)
}

/// Checks a whole number against `(min, max)` and converts it.
fn check_range<T: TryFrom<u64>>(value: i128, (min, max): (u64, u64)) -> Result<T, String> {
    if value < i128::from(min) {
        return Err(format!("must be at least {min}, got {value}"));
    }
    if value > i128::from(max) {
        return Err(format!("must be at most {max}, got {value}"));
    }
    u64::try_from(value)
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| format!("{value} does not fit this platform"))
}

/// Checks a duration against its floor (the ceiling, [`MAX_DURATION`], the parser enforces).
fn check_duration(value: Duration, floor: Duration) -> Result<Duration, String> {
    if value < floor {
        Err(format!("must be at least {}, got {}", format_duration(floor), format_duration(value)))
    } else {
        Ok(value)
    }
}

/// Quotes user input for a message, escaping control characters so the message stays one line.
fn quote(text: &str) -> String {
    format!("'{}'", text.escape_debug())
}

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo. A
/// truncated or extended name (`retry` for `retries`) counts as close.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let distance = |c: &str| {
        let (short, long) = if c.len() < word.len() { (c, word) } else { (word, c) };
        if short.len() >= 4 && long.starts_with(short) { 1 } else { edit_distance(word, c) }
    };
    candidates
        .into_iter()
        .map(|c| (distance(c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, with a transposition counting as one edit (`listne` -> `listen`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back for transpositions, one back, current.
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
