//! Streams ringcast pulls from elsewhere (`[sources."<app>/<name>"]`, docs/sources.md): an
//! RTSP camera published under a stream key, as if an encoder published it there.
//!
//! ```toml
//! [sources."live/cam1"]
//! url = "rtsp://user:pass@192.168.1.20:554/stream1"
//! on_demand = true   # pull only while the stream has players
//! transport = "tcp"  # RTP interleaved on the RTSP connection
//! ```
//!
//! The URL's credentials are the camera's: [`SourceConfig`]'s `Debug` and every message about
//! a source show the URL without them (`rtsp::url::without_credentials`).

use std::time::Duration;

use crate::protocol::rtsp::url;
use crate::redact;

/// Keys of a `[sources."<stream>"]` table.
pub(super) const SOURCE_KEYS: &[&str] = &["url", "on_demand", "transport", "linger", "start_timeout", "hooks"];

/// How long an on-demand pull goes on after its last player left, by default: a player that
/// reconnects (a page reload, a player's retry) finds the stream still live.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(10);
/// How long a player of an on-demand stream waits for the camera by default, before it is
/// answered as for a stream nobody publishes.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// How the camera's RTP travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceTransport {
    /// Interleaved on the RTSP connection: one TCP connection, through any NAT or firewall.
    #[default]
    Tcp,
}

/// One pulled stream.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The stream key it is published under, `app/name`.
    pub stream: String,
    /// `rtsp://[user[:pass]@]host[:port]/path`, credentials included: never print it as is.
    pub url: String,
    /// Pull only while the stream has players (`true`), or always, reconnecting (`false`).
    pub on_demand: bool,
    pub transport: SourceTransport,
    /// How long an on-demand pull outlives its last player.
    pub linger: Duration,
    /// How long a player of an on-demand stream waits for the camera.
    pub start_timeout: Duration,
    /// The pull is a session hooks see (`on_publish`, `publish_start`...), as a publisher of
    /// the stream would be; `false`: an internal one, which fires nothing.
    pub hooks: bool,
}

impl SourceConfig {
    /// The URL as logs, events and the API may show it.
    pub fn display_url(&self) -> String {
        shown_url(&self.url)
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("stream", &self.stream)
            .field("url", &self.display_url())
            .field("on_demand", &self.on_demand)
            .field("transport", &self.transport)
            .field("linger", &self.linger)
            .field("start_timeout", &self.start_timeout)
            .field("hooks", &self.hooks)
            .finish()
    }
}

/// A source URL fit to print: without its userinfo, query values masked (some cameras take
/// their login as `?user=...&password=...`).
pub fn shown_url(text: &str) -> String {
    redact::url(&url::without_credentials(text))
}

/// A source's stream key: `app/name`, both parts non-empty.
pub(super) fn parse_stream_key(key: &str) -> Result<(), String> {
    match key.split_once('/') {
        Some((app, name)) if !app.is_empty() && !name.is_empty() && !key.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(format!("a source is named by its stream key, \"app/name\" (like \"live/cam1\"), got '{key}'")),
    }
}

/// A source's URL: `rtsp://` with a host. Messages show it without credentials.
pub(super) fn parse_source_url(text: &str) -> Result<String, String> {
    let shown = shown_url(text);
    let target = url::parse(text, &[]).map_err(|error| format!("'{shown}': {error}"))?;
    if !text.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("rtsp://")) {
        return Err(format!("'{shown}': only rtsp:// sources are pulled"));
    }
    if target.authority.is_empty() || target.authority.starts_with(':') {
        return Err(format!("'{shown}': no host"));
    }
    Ok(text.to_owned())
}

pub(super) fn parse_transport(text: &str) -> Result<SourceTransport, String> {
    match text {
        "tcp" => Ok(SourceTransport::Tcp),
        "udp" => Err("\"udp\" is not supported yet: use \"tcp\" (RTP interleaved on the RTSP connection)".to_owned()),
        other => Err(format!("expected \"tcp\", got '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert!(parse_source_url("rtsp://u:p@10.0.0.2:554/s1").is_ok());
        assert_eq!(shown_url("rtsp://u:p@10.0.0.2/s?password=p&ch=1"), "rtsp://10.0.0.2/s?password=***&ch=***");
        let error = parse_source_url("rtmp://u:secret@10.0.0.2/live").unwrap_err();
        assert!(error.contains("not an rtsp:// URL") && !error.contains("secret"), "{error}");
        let error = parse_source_url("rtsps://u:secret@10.0.0.2/live").unwrap_err();
        assert!(error.contains("only rtsp://") && !error.contains("secret"), "{error}");
        assert!(parse_source_url("rtsp:///live").is_err());
        assert!(parse_stream_key("live/cam1").is_ok());
        for bad in ["cam1", "/cam1", "live/", "live/c m"] {
            assert!(parse_stream_key(bad).is_err(), "{bad}");
        }
        assert!(parse_transport("udp").unwrap_err().contains("not supported yet"));
    }

    #[test]
    fn tables_of_the_file() {
        let path = std::path::Path::new("t.toml");
        let text = "[sources.\"live/cam1\"]\nurl = \"rtsp://u:p@10.0.0.2/s1\"\non_demand = true\ntransport = \"tcp\"\nlinger = \"3s\"\n\n[sources.\"live/cam2\"]\nurl = \"rtsp://10.0.0.3/s\"\nhooks = true\n";
        let config = crate::config::Config::from_toml(text, path).unwrap();
        let [cam1, cam2] = &config.sources[..] else { panic!("{:?}", config.sources) };
        assert_eq!((cam1.stream.as_str(), cam1.url.as_str()), ("live/cam1", "rtsp://u:p@10.0.0.2/s1"));
        assert!(cam1.on_demand && !cam1.hooks);
        assert_eq!((cam1.linger, cam1.start_timeout), (Duration::from_secs(3), DEFAULT_START_TIMEOUT));
        assert!(!cam2.on_demand && cam2.hooks);
        for (text, expected) in [
            ("[sources.cam1]\nurl = \"rtsp://h/s\"\n", "'sources.cam1': a source is named by its stream key"),
            ("[sources.\"live/a\"]\non_demand = true\n", "a source needs its 'url'"),
            ("[sources.\"live/a\"]\nurl = \"rtsp://h/s\"\ntransport = \"udp\"\n", "not supported yet"),
            (
                "[sources.\"live/a\"]\nurl = \"rtsp://h/s\"\nondemand = true\n",
                "did you mean 'sources.live/a.on_demand'",
            ),
            ("[sources.\"live/a\"]\nurl = \"http://u:hunter2@h/s\"\n", "not an rtsp:// URL"),
        ] {
            let error = crate::config::Config::from_toml(text, path).unwrap_err().to_string();
            assert!(error.contains(expected) && !error.contains("hunter2"), "{text}: {error}");
        }
    }

    #[test]
    fn debug_hides_the_credentials() {
        let source = SourceConfig {
            stream: "live/cam1".into(),
            url: "rtsp://admin:hunter2@10.0.0.2/s".into(),
            on_demand: true,
            transport: SourceTransport::Tcp,
            linger: DEFAULT_LINGER,
            start_timeout: DEFAULT_START_TIMEOUT,
            hooks: false,
        };
        let shown = format!("{source:?}");
        assert!(shown.contains("rtsp://10.0.0.2/s") && !shown.contains("hunter2"), "{shown}");
    }
}
