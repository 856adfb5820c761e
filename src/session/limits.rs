//! The counted admission limits every shard shares: connections in total and per client
//! address (checked at accept, `server/`), streams, players per stream and publishers per
//! address (checked by the lifecycle once a publish or play is allowed). Each refusal is
//! counted in the hub's stats (`/metrics`) and logged at most once a second per limit.
//!
//! The values are atomics so SIGHUP can change them while sessions run (`Admission::apply`);
//! what is counted never changes with them, so a lowered limit refuses new clients and
//! leaves those already in alone.
//!
//! The wire limits ([`WireLimit`]: an RTMP message, a request head or body) are enforced by
//! the protocol state machines, built with them at accept; here they are only counted and
//! logged the same way. They take effect at restart (SIGHUP leaves them as they were).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::config::Config;
use crate::hooks::now_ms;
use crate::hub::HubStats;

/// At most one "refused" line per limit this often.
const LOG_INTERVAL_MS: u64 = 1000;

/// One limit: its value (0: none, except `max_connections`, which is at least 1) and its
/// log's pacing.
#[derive(Debug, Default)]
struct Limit {
    max: AtomicUsize,
    last_logged_ms: AtomicU64,
    /// Refusals since the last line.
    unlogged: AtomicU64,
}

impl Limit {
    fn new(max: usize) -> Limit {
        Limit { max: AtomicUsize::new(max), ..Limit::default() }
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Whether `count` more would go past the limit.
    fn reached(&self, count: usize) -> bool {
        let max = self.max();
        max != 0 && count >= max
    }

    /// Logs a refusal, or counts it into the next line when one was logged within the
    /// interval.
    fn log_refusal(&self, name: &str, what: &str) {
        let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_INTERVAL_MS
            && self.last_logged_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.unlogged.store(0, Ordering::Relaxed);
            warn!(limit = name, max = self.max(), refused = unlogged, "{name} reached: {what} refused");
        }
    }
}

/// Counts per client address; an address leaves the map when its count drops to 0, so the
/// map holds only addresses with something open.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Counts one more for `ip` unless `limit` is reached; false when refused.
    fn take(&self, ip: IpAddr, limit: &Limit) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_default();
        if limit.reached(*count) {
            if *count == 0 {
                counts.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Connections,
    ConnectionsPerIp,
    Streams,
    PlayersPerStream,
    PublishersPerIp,
}

impl LimitKind {
    /// The config key.
    pub fn key(self) -> &'static str {
        match self {
            LimitKind::Connections => "max_connections",
            LimitKind::ConnectionsPerIp => "max_connections_per_ip",
            LimitKind::Streams => "max_streams",
            LimitKind::PlayersPerStream => "max_players_per_stream",
            LimitKind::PublishersPerIp => "max_publishers_per_ip",
        }
    }
}

/// A wire limit a connection hit: its protocol answered and closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireLimit {
    RtmpMessageBytes,
    RtmpChunkStreams,
    HttpRequestHeadBytes,
    RtspRequestHeadBytes,
    RtspBodyBytes,
}

impl WireLimit {
    const ALL: [WireLimit; 5] = [
        WireLimit::RtmpMessageBytes,
        WireLimit::RtmpChunkStreams,
        WireLimit::HttpRequestHeadBytes,
        WireLimit::RtspRequestHeadBytes,
        WireLimit::RtspBodyBytes,
    ];

    /// The config key.
    pub fn key(self) -> &'static str {
        match self {
            WireLimit::RtmpMessageBytes => "max_rtmp_message_bytes",
            WireLimit::RtmpChunkStreams => "max_rtmp_chunk_streams",
            WireLimit::HttpRequestHeadBytes => "max_http_request_head_bytes",
            WireLimit::RtspRequestHeadBytes => "max_rtsp_request_head_bytes",
            WireLimit::RtspBodyBytes => "max_rtsp_body_bytes",
        }
    }

    /// Its `/metrics` counter.
    pub fn counter(self, stats: &HubStats) -> &AtomicU64 {
        match self {
            WireLimit::RtmpMessageBytes => &stats.oversized_rtmp_messages,
            WireLimit::RtmpChunkStreams => &stats.rtmp_chunk_stream_refusals,
            WireLimit::HttpRequestHeadBytes => &stats.oversized_http_heads,
            WireLimit::RtspRequestHeadBytes => &stats.oversized_rtsp_heads,
            WireLimit::RtspBodyBytes => &stats.oversized_rtsp_bodies,
        }
    }

    fn value(self, config: &Config) -> usize {
        match self {
            WireLimit::RtmpMessageBytes => config.max_rtmp_message_bytes as usize,
            WireLimit::RtmpChunkStreams => config.max_rtmp_chunk_streams,
            WireLimit::HttpRequestHeadBytes => config.max_http_request_head_bytes,
            WireLimit::RtspRequestHeadBytes => config.max_rtsp_request_head_bytes,
            WireLimit::RtspBodyBytes => config.max_rtsp_body_bytes,
        }
    }
}

/// The server's admission limits and what they count.
#[derive(Debug)]
pub struct Admission {
    connections: Limit,
    connections_per_ip: Limit,
    streams: Limit,
    players_per_stream: Limit,
    publishers_per_ip: Limit,
    /// The wire limits' values at start (for the log line) and their log's pacing, in
    /// [`WireLimit::ALL`]'s order.
    wire: [Limit; 5],
    open: AtomicUsize,
    open_per_ip: PerAddress,
    publishing_per_ip: PerAddress,
}

impl Admission {
    pub fn new(config: &Config) -> Arc<Admission> {
        let admission = Arc::new(Admission {
            connections: Limit::new(config.max_connections),
            connections_per_ip: Limit::default(),
            streams: Limit::default(),
            players_per_stream: Limit::default(),
            publishers_per_ip: Limit::default(),
            wire: WireLimit::ALL.map(|limit| Limit::new(limit.value(config))),
            open: AtomicUsize::new(0),
            open_per_ip: PerAddress::default(),
            publishing_per_ip: PerAddress::default(),
        });
        admission.apply(config);
        admission
    }

    /// Takes the limits of `config` (at start and on SIGHUP).
    pub fn apply(&self, config: &Config) {
        for (limit, max) in [
            (&self.connections, config.max_connections),
            (&self.connections_per_ip, config.max_connections_per_ip),
            (&self.streams, config.max_streams),
            (&self.players_per_stream, config.max_players_per_stream),
            (&self.publishers_per_ip, config.max_publishers_per_ip),
        ] {
            limit.max.store(max, Ordering::Relaxed);
        }
    }

    fn limit(&self, kind: LimitKind) -> &Limit {
        match kind {
            LimitKind::Connections => &self.connections,
            LimitKind::ConnectionsPerIp => &self.connections_per_ip,
            LimitKind::Streams => &self.streams,
            LimitKind::PlayersPerStream => &self.players_per_stream,
            LimitKind::PublishersPerIp => &self.publishers_per_ip,
        }
    }

    /// The current value of a limit (0: none).
    pub fn max(&self, kind: LimitKind) -> usize {
        self.limit(kind).max()
    }

    /// Counts (`/metrics`) and logs (paced) that `kind` refused `what`.
    pub fn refused(&self, kind: LimitKind, stats: &HubStats, what: &str) {
        let counter = match kind {
            LimitKind::Connections => &stats.refused_connections,
            LimitKind::ConnectionsPerIp => &stats.refused_connections_per_ip,
            LimitKind::Streams => &stats.refused_streams,
            LimitKind::PlayersPerStream => &stats.refused_players,
            LimitKind::PublishersPerIp => &stats.refused_publishers_per_ip,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.limit(kind).log_refusal(kind.key(), what);
    }

    /// Counts (`/metrics`) and logs (paced) that a connection hit `limit`; `what` names what
    /// was refused (`"HTTP-FLV request head"`).
    pub fn wire_limit_reached(&self, limit: WireLimit, stats: &HubStats, what: &str) {
        limit.counter(stats).fetch_add(1, Ordering::Relaxed);
        self.wire[limit as usize].log_refusal(limit.key(), what);
    }

    /// Admits an accepted connection from `ip`: the permit counts it until dropped. Refused
    /// with the limit that says no.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, LimitKind> {
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        if self.connections.reached(open) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(LimitKind::Connections);
        }
        if !self.open_per_ip.take(ip, &self.connections_per_ip) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(LimitKind::ConnectionsPerIp);
        }
        Ok(ConnectionPermit { admission: self.clone(), ip })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a publisher from `ip` unless `max_publishers_per_ip` is reached.
    pub fn start_publishing(&self, ip: IpAddr) -> bool {
        self.publishing_per_ip.take(ip, &self.publishers_per_ip)
    }

    /// A publisher counted by [`Self::start_publishing`] stopped.
    pub fn stop_publishing(&self, ip: IpAddr) {
        self.publishing_per_ip.give_back(ip);
    }

    /// Whether a stream with `streams` in the registry may gain one more.
    pub fn admits_new_stream(&self, streams: usize) -> bool {
        !self.streams.reached(streams)
    }

    /// Whether a stream with `players` may gain one more.
    pub fn admits_player(&self, players: usize) -> bool {
        !self.players_per_stream.reached(players)
    }
}

/// An admitted connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        self.admission.open_per_ip.give_back(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(toml: &str) -> Arc<Admission> {
        Admission::new(&Config::from_toml(toml, std::path::Path::new("t.toml")).unwrap())
    }

    #[test]
    fn connections_are_counted_in_total_and_per_address_until_their_permit_drops() {
        let admission = admission("max_connections = 3\nmax_connections_per_ip = 2\n");
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.connect(a).unwrap();
        let _second = admission.connect(a).unwrap();
        assert_eq!(admission.connect(a).unwrap_err(), LimitKind::ConnectionsPerIp);
        let _third = admission.connect(b).unwrap();
        assert_eq!(admission.connect(b).unwrap_err(), LimitKind::Connections);
        assert_eq!(admission.open_connections(), 3);
        drop(first);
        let _again = admission.connect(a).unwrap();
        assert_eq!(admission.open_connections(), 3);
    }

    #[test]
    fn zero_is_no_limit_and_a_reload_applies_to_new_clients_only() {
        let admission = admission("max_publishers_per_ip = 0\nmax_streams = 0\n");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert!(admission.start_publishing(ip));
        }
        assert!(admission.admits_new_stream(1_000_000));
        admission.apply(&Config::from_toml("max_publishers_per_ip = 1\nmax_streams = 5\n", "t.toml".as_ref()).unwrap());
        assert!(!admission.start_publishing(ip), "100 publish already");
        for _ in 0..100 {
            admission.stop_publishing(ip);
        }
        assert!(admission.start_publishing(ip));
        assert!(!admission.start_publishing(ip));
        assert!(admission.admits_new_stream(4) && !admission.admits_new_stream(5));
        assert!(admission.admits_player(1_000_000), "max_players_per_stream defaults to none");
    }

    #[test]
    fn a_wire_limit_is_counted_each_time_under_its_own_counter() {
        let admission = admission("max_http_request_head_bytes = 2048\n");
        let stats = HubStats::default();
        for _ in 0..3 {
            admission.wire_limit_reached(WireLimit::HttpRequestHeadBytes, &stats, "HTTP-FLV request head");
        }
        admission.wire_limit_reached(WireLimit::RtmpMessageBytes, &stats, "RTMP message");
        assert_eq!(stats.oversized_http_heads.load(Ordering::Relaxed), 3);
        assert_eq!(stats.oversized_rtmp_messages.load(Ordering::Relaxed), 1);
        assert_eq!(stats.oversized_rtsp_heads.load(Ordering::Relaxed), 0);
        // The value logged is the configured one; the two lines after the first wait a second.
        let http = &admission.wire[WireLimit::HttpRequestHeadBytes as usize];
        assert_eq!((http.max(), http.unlogged.load(Ordering::Relaxed)), (2048, 2));
    }
}
