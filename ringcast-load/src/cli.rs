//! The command line: global flags, one subcommand per scenario, and the stream URL.
//!
//! Everything a scenario needs is validated here, before any thread or socket exists, so a
//! typo fails in one line with exit status 2 instead of as a thousand connection errors.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Scenarios:
  play     N players of a stream (ramped); bytes, frames, gaps, lag, time to first keyframe
  publish  M publishers (name, name-1, ...) of generated media or an FLV file, in real time
  connect  a storm of K connections (handshake + connect, optionally play or publish)
  idle     C handshaken, connected RTMP connections held open
  floor    no server: one thread writing N loopback sockets in bursts, the kernel's cost of those writes

Durations: 10, 2.5, 500ms, 30s, 5m (a bare number is seconds).
Generated media embeds the send time and a sequence number in every frame, so players in the
same process, or any ringcast-load player on the same host, measure true lag and lost frames.
The load client shares the CPU with the server on a small machine: compare server CPU seconds
(--server-pid), not wall time alone.";

#[derive(Debug, Parser)]
#[command(
    name = "ringcast-load",
    version,
    about = "Load generator for ringcast (io_uring, like the server).",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// io_uring threads; connections are spread across them round-robin
    #[arg(long, short = 't', global = true, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,

    /// Print one JSON object with every number instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    /// Also write the JSON report to FILE (the table still goes to stdout)
    #[arg(long, global = true, value_name = "FILE")]
    pub json_out: Option<PathBuf>,

    /// Stream URL: rtmp://host[:port]/app/name (or http://host[:port]/app/name.flv, HTTP-FLV,
    /// or ws://host[:port]/app/name.flv, WebSocket-FLV, to play)
    #[arg(long, global = true, default_value = "rtmp://127.0.0.1:1935/live/load")]
    pub url: String,

    /// Time limit of each step (TCP connect, handshake + connect, play/publish start)
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Sample this process (the server) for CPU seconds and memory over the run
    #[arg(long, global = true, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Print a progress line on stderr every second
    #[arg(long, global = true)]
    pub progress: bool,

    /// Spread connections over N local addresses 127.0.0.1, .2, ... (loopback targets): the
    /// kernel's free-port search slows down past ~14,000 connections from one address
    /// [default: 16 for a 127.x target; 0: one address]
    #[arg(long, global = true, value_name = "N")]
    pub source_ips: Option<u8>,

    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N players of a stream: bytes, frames, gaps, lag, connect-to-first-keyframe
    Play(PlayArgs),
    /// M real-time publishers to name, name-1, ...: generated media or an FLV file
    Publish(PublishArgs),
    /// A storm of K connections and the rate they complete at
    Connect(ConnectArgs),
    /// Hold C open, handshaken and connected RTMP connections
    Idle(IdleArgs),
    /// No server: one thread writes N loopback sockets in bursts; Gbit per CPU-second of that
    /// thread, the kernel's floor under a server's fan-out at the same writes (--url unused)
    Floor(FloorArgs),
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// Players to start
    #[arg(short = 'n', long = "players", default_value_t = 1)]
    pub players: usize,

    /// Players started per second (0: all at once)
    #[arg(long, default_value_t = 200.0, value_parser = parse_rate)]
    pub ramp: f64,

    /// How long the test runs, counted from the first player's start
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Spread players over S streams: name, name-1, ... name-(S-1)
    #[arg(long, default_value_t = 1)]
    pub streams: usize,

    /// Measure steady state: once every player has started, wait --settle, then measure this
    /// long (bytes read, server CPU) and stop; --duration is then not used. The join before
    /// it is reported on its own
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<Duration>,

    /// With --window: time between the last player's start and the window, so every player
    /// is past its join burst (a server without a GOP cache starts a player at the next
    /// keyframe)
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Also publish the stream(s) from this process (generated media or --flv), so lag is
    /// measured against the publisher's own send clock
    #[arg(long)]
    pub publish: bool,

    /// With --publish and an http:// or ws:// --url: the RTMP URL to publish to (the same
    /// app and stream name; a server takes RTMP on a port of its own)
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,

    #[command(flatten)]
    pub media: MediaArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Publishers: to name, name-1, ... name-(M-1)
    #[arg(short = 'm', long = "publishers", default_value_t = 1)]
    pub publishers: usize,

    /// How long each publisher sends
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    #[command(flatten)]
    pub media: MediaArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Then {
    Play,
    Publish,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Connections to open
    #[arg(short = 'k', long = "connections", default_value_t = 1000)]
    pub connections: usize,

    /// Connections started per second (0: as fast as possible)
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Connections in progress at once at most (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,

    /// After connect, also play (until the first media packet) or publish (until the server
    /// accepts) the stream; each connection uses its own stream name when publishing
    #[arg(long, value_enum)]
    pub then: Option<Then>,

    /// Publish the stream from this process first, so `--then play` gets media
    #[arg(long)]
    pub publish: bool,

    /// With `--then play`, keep each player until its first video keyframe (the first
    /// picture a viewer sees), not just its first media packet
    #[arg(long)]
    pub until_keyframe: bool,

    #[command(flatten)]
    pub media: MediaArgs,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Connections to hold open
    #[arg(short = 'c', long = "connections", default_value_t = 1000)]
    pub connections: usize,

    /// Connections started per second (0: all at once)
    #[arg(long, default_value_t = 5000.0, value_parser = parse_rate)]
    pub ramp: f64,

    /// How long to hold them once all are open
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Hold until Ctrl-C (or SIGTERM) instead of for --duration
    #[arg(long)]
    pub hold: bool,
}

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Sockets the writer holds, one reader each
    #[arg(short = 'n', long = "connections", default_value_t = 2000)]
    pub connections: usize,

    /// Bytes of each write (a server's bytes per write, as its run reported them)
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    pub write_bytes: u32,

    /// Pieces of each write, one `writev` (a server's iovecs per write)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub iovecs: u16,

    /// Writes per second, all sockets together: a burst writes each socket once, a burst
    /// every N / this seconds [default: each socket at --kbit]
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub writes_per_second: Option<f64>,

    /// Without --writes-per-second: kbit/s each socket gets
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub kbit: u32,

    /// How long the steady window lasts
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub window: Duration,

    /// Writing before the window, not measured (the readers' buffers and the sockets' windows
    /// grow to their steady size)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,

    /// SO_SNDBUF of the writer's sockets in bytes [default: the kernel's autotuning]
    #[arg(long, value_name = "BYTES")]
    pub send_buffer: Option<usize>,

    /// How writes reach the kernel: a burst's writes submitted together to an io_uring (as a
    /// tokio-uring server's shard does), or a writev(2) call each
    #[arg(long, value_enum, default_value = "uring")]
    pub via: crate::floor::Via,
}

/// What a publisher sends.
#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// Publish this FLV file (looped, in real time by its timestamps) instead of generated media
    #[arg(long, value_name = "FILE")]
    pub flv: Option<PathBuf>,

    /// Generated video bitrate, kbit/s
    #[arg(long, default_value_t = 2200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub bitrate: u32,

    /// Generated audio bitrate, kbit/s (0: no audio)
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub audio_bitrate: u32,

    /// Generated video frames per second
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub fps: u32,

    /// Generated video frames per GOP (keyframe interval)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub gop: u32,
}

/// Which protocol a player reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtmp,
    HttpFlv,
    /// RTSP with RTP over the TCP connection (interleaved).
    Rtsp,
    /// HTTP-FLV's stream in WebSocket binary frames (the same path, upgraded).
    WsFlv,
}

/// The server and stream a URL names.
#[derive(Debug, Clone)]
pub struct Target {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// `host:port` as written, for `tcUrl` and `Host:`.
    pub authority: String,
    pub app: String,
    /// The stream name without its query string.
    pub name: String,
    /// `?...` (with the question mark) or empty: passed through on every stream name.
    pub query: String,
    /// Local loopback addresses to spread connections over; 0: the kernel picks.
    pub source_ips: u8,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (protocol, rest, default_port) = if let Some(rest) = url.strip_prefix("rtmp://") {
            (Protocol::Rtmp, rest, 1935)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Protocol::HttpFlv, rest, 80)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (Protocol::WsFlv, rest, 80)
        } else if let Some(rest) = url.strip_prefix("rtsp://") {
            (Protocol::Rtsp, rest, 554)
        } else {
            return Err(format!(
                "--url {url:?}: expected rtmp://host[:port]/app/name, http://host[:port]/app/name.flv, \
                 ws://host[:port]/app/name.flv or rtsp://host[:port]/app/name"
            ));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("--url {url:?}: no host"));
        }
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:{default_port}")
        } else {
            authority.to_owned()
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("--url {url:?}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {url:?}: {with_port} has no address"))?;
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (path, String::new()),
        };
        let (app, name) =
            path.split_once('/').ok_or_else(|| format!("--url {url:?}: expected /app/name after the host"))?;
        let name = match protocol {
            Protocol::Rtmp | Protocol::Rtsp => name,
            Protocol::HttpFlv | Protocol::WsFlv => name.strip_suffix(".flv").unwrap_or(name),
        };
        if app.is_empty() || name.is_empty() {
            return Err(format!("--url {url:?}: expected /app/name after the host (both non-empty)"));
        }
        Ok(Target {
            protocol,
            addr,
            authority: authority.to_owned(),
            app: app.to_owned(),
            name: name.to_owned(),
            query,
            source_ips: 0,
        })
    }

    /// Sets how many source addresses to use: `None` picks 16 for an IPv4 loopback target.
    pub fn with_source_ips(mut self, count: Option<u8>) -> Target {
        let loopback = matches!(self.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
        self.source_ips = match count {
            Some(n) if loopback => n,
            None if loopback => 16,
            _ => 0,
        };
        self
    }

    /// The local address connection `id` binds to, if any.
    pub fn source_for(&self, id: usize) -> Option<IpAddr> {
        (self.source_ips > 0)
            .then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (id % usize::from(self.source_ips)) as u8)))
    }

    /// `rtmp://host:port/app`, what RTMP `connect` announces.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.authority, self.app)
    }

    /// The `index`th stream of a multi-stream run: `name`, `name-1`, `name-2`...
    pub fn stream(&self, index: usize) -> String {
        if index == 0 { self.name.clone() } else { format!("{}-{index}", self.name) }
    }

    /// The stream name as sent in `play`/`publish`, query string included.
    pub fn stream_request(&self, index: usize) -> String {
        format!("{}{}", self.stream(index), self.query)
    }

    pub fn url(&self) -> String {
        match self.protocol {
            Protocol::Rtmp => format!("rtmp://{}/{}/{}", self.authority, self.app, self.name),
            Protocol::HttpFlv => format!("http://{}/{}/{}.flv", self.authority, self.app, self.name),
            Protocol::Rtsp => format!("rtsp://{}/{}/{}", self.authority, self.app, self.name),
            Protocol::WsFlv => format!("ws://{}/{}/{}.flv", self.authority, self.app, self.name),
        }
    }
}

/// `10`, `2.5`, `500ms`, `30s`, `5m`, `1h`: a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 =
        number.trim().parse().map_err(|_| format!("{text:?} is not a duration (10, 2.5, 500ms, 30s, 5m)"))?;
    let secs = value * scale;
    // A week bounds every loop in this program even when a user asks for "forever".
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("{text:?} is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?}: expected a rate >= 0 per second"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtmp_and_http_urls() {
        let t = Target::parse("rtmp://127.0.0.1:1936/live/cam?key=1").expect("valid");
        assert_eq!(t.protocol, Protocol::Rtmp);
        assert_eq!(t.addr.port(), 1936);
        assert_eq!((t.app.as_str(), t.name.as_str()), ("live", "cam"));
        assert_eq!(t.stream_request(2), "cam-2?key=1");
        assert_eq!(t.tc_url(), "rtmp://127.0.0.1:1936/live");
        let t = Target::parse("rtmp://127.0.0.1/live/cam").expect("valid");
        assert_eq!(t.addr.port(), 1935);
        let t = Target::parse("http://127.0.0.1:8080/live/cam.flv").expect("valid");
        assert_eq!((t.protocol, t.name.as_str()), (Protocol::HttpFlv, "cam"));
        let t = Target::parse("rtsp://127.0.0.1:8554/live/cam?k=v").expect("valid");
        assert_eq!(
            (t.protocol, t.app.as_str(), t.name.as_str(), t.query.as_str()),
            (Protocol::Rtsp, "live", "cam", "?k=v")
        );
        assert_eq!(t.url(), "rtsp://127.0.0.1:8554/live/cam");
        let t = Target::parse("ws://127.0.0.1:8080/live/cam.flv?k=v").expect("valid");
        assert_eq!((t.protocol, t.name.as_str(), t.query.as_str()), (Protocol::WsFlv, "cam", "?k=v"));
        assert_eq!(t.url(), "ws://127.0.0.1:8080/live/cam.flv");
        assert!(Target::parse("rtmp://127.0.0.1/live").is_err());
        assert!(Target::parse("srt://127.0.0.1/live/x").is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("abc").is_err());
    }
}
