//! Relays (`[relay]`, per app `[apps.<app>.relay]`; docs/scaling-out.md): where an edge pulls
//! the streams it does not have (`origins`), where every stream published here is forwarded
//! (`push`), how long a pull outlives its last player (`linger`), and whether relay sessions
//! fire the callbacks and events of a client (`relay_hooks`). The streams with an `rtmp://`
//! source of their own, pulled while they have players, come from the `[sources]` table
//! (`sources.rs`), where `rtsp://` cameras are named too: one table for every source.
//!
//! An app's table sets only the keys it names; the others come from `[relay]`, as its
//! `[apps.<app>.notify]` keys do from `[notify]`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Config;

/// How long a pull outlives its last player when `linger` is not set: long enough that a
/// player reloading its page finds the stream still here.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(10);

/// An `rtmp://host[:port][/app[/name]]` a relay connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayUrl {
    pub host: String,
    pub port: u16,
    /// The application to use there; `None`: the stream's own.
    pub app: Option<String>,
    /// The stream name to use there; `None`: the stream's own.
    pub name: Option<String>,
}

impl RelayUrl {
    /// Parses `rtmp://host[:port][/app[/name]]` (port 1935 when not given).
    pub fn parse(text: &str) -> Result<RelayUrl, String> {
        let rest = text.strip_prefix("rtmp://").ok_or_else(|| match text.split_once("://") {
            Some(("rtsp", _)) => format!("{text:?}: a relay speaks rtmp://; rtsp:// cameras go in [sources]"),
            _ => format!("{text:?}: expected rtmp://host[:port][/app[/name]]"),
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') || path.contains('?') || path.contains('#') {
            return Err(format!("{text:?}: credentials and query strings are not supported in a relay URL"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| format!("{text:?}: bad host or port"))?;
        let mut parts = path.split('/').filter(|part| !part.is_empty());
        let app = parts.next().map(str::to_owned);
        let name = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return Err(format!("{text:?}: at most an app and a stream name after the host"));
        }
        Ok(RelayUrl { host, port, app, name })
    }

    /// The URL of stream `app/name` there: `(tcUrl up to the app, app, name)`.
    pub fn target(&self, app: &str, name: &str) -> (String, String, String) {
        let app = self.app.clone().unwrap_or_else(|| app.to_owned());
        let name = self.name.clone().unwrap_or_else(|| name.to_owned());
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        (format!("rtmp://{host}:{}/{app}", self.port), app, name)
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "rtmp://{host}:{}", self.port)?;
        for part in [&self.app, &self.name].into_iter().flatten() {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().ok().filter(|&port| port != 0)?,
        None => 1935,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    (!host.is_empty() && host.chars().all(valid)).then(|| (host.to_owned(), port))
}

/// The relays of one app (or of every app, `[relay]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Where a play of a stream nobody publishes here pulls it from, each in turn on failure.
    pub origins: Vec<RelayUrl>,
    /// Where every stream published here by a client is forwarded.
    pub push: Vec<RelayUrl>,
    /// Streams (`app/name`) with an `rtmp://` source of their own (from `[sources]`), pulled
    /// while they have players.
    pub sources: BTreeMap<String, RelayUrl>,
    /// How long a pull stays after its last player left.
    pub linger: Duration,
    /// Relay sessions fire callbacks and publish/play events as a client would.
    pub relay_hooks: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            origins: Vec::new(),
            push: Vec::new(),
            sources: BTreeMap::new(),
            linger: DEFAULT_LINGER,
            relay_hooks: false,
        }
    }
}

impl RelayConfig {
    /// Whether this app relays anything at all.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty() && self.push.is_empty() && self.sources.is_empty()
    }
}

/// The `[relay]` keys an app's table sets, over the global ones (`None`: inherited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayOverlay {
    pub origins: Option<Vec<RelayUrl>>,
    pub push: Option<Vec<RelayUrl>>,
    pub linger: Option<Duration>,
    pub relay_hooks: Option<bool>,
}

impl RelayOverlay {
    /// `global` with this table's keys written over it.
    pub fn over(&self, global: &RelayConfig) -> RelayConfig {
        RelayConfig {
            origins: self.origins.clone().unwrap_or_else(|| global.origins.clone()),
            push: self.push.clone().unwrap_or_else(|| global.push.clone()),
            sources: global.sources.clone(),
            linger: self.linger.unwrap_or(global.linger),
            relay_hooks: self.relay_hooks.unwrap_or(global.relay_hooks),
        }
    }
}

impl Config {
    /// The relays of `app`: its own `[apps.<app>.relay]` keys over `[relay]`.
    pub fn app_relay(&self, app: &str) -> RelayConfig {
        match self.apps.get(app).and_then(|own| own.relay.as_ref()) {
            Some(own) => own.over(&self.relay),
            None => self.relay.clone(),
        }
    }

    /// Whether any app relays anything (so the server starts its relays at all).
    pub fn relays_anything(&self) -> bool {
        !self.relay.is_empty() || self.apps.keys().any(|app| !self.app_relay(app).is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::RelayUrl;
    use crate::config::Config;

    #[test]
    fn relay_urls_take_a_host_an_optional_port_app_and_name() {
        let url = RelayUrl::parse("rtmp://origin-a").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.app.as_deref()), ("origin-a", 1935, None));
        assert_eq!(url.target("live", "cam1").0, "rtmp://origin-a:1935/live");
        let url = RelayUrl::parse("rtmp://10.0.0.1:19350/backup/other").unwrap();
        assert_eq!(
            url.target("live", "cam1"),
            ("rtmp://10.0.0.1:19350/backup".into(), "backup".into(), "other".into())
        );
        assert_eq!(url.to_string(), "rtmp://10.0.0.1:19350/backup/other");
        let url = RelayUrl::parse("rtmp://[::1]:1936").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 1936));
        assert_eq!(url.to_string(), "rtmp://[::1]:1936");
        for bad in
            ["http://x", "rtmp://", "rtmp://h:0", "rtmp://h:x", "rtmp://u:p@h", "rtmp://h/a/b/c", "rtmp://h/a?x=1"]
        {
            assert!(RelayUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(RelayUrl::parse("rtsp://cam/1").unwrap_err().contains("[sources]"));
    }

    #[test]
    fn an_app_sets_its_own_relay_keys_over_the_global_ones() {
        let text = r#"
[relay]
origins = ["rtmp://a:1935", "rtmp://b"]
linger = "3s"
[sources."live/cam9"]
url = "rtmp://cams/live/nine"
on_demand = true
[apps.vod.relay]
origins = []
push = ["rtmp://backup"]
relay_hooks = true
"#;
        let config = Config::from_toml(text, Path::new("t.toml")).unwrap();
        let live = config.app_relay("live");
        assert_eq!(live.origins.len(), 2);
        assert_eq!(live.linger, Duration::from_secs(3));
        assert_eq!(live.sources["live/cam9"].name.as_deref(), Some("nine"));
        assert!(!live.relay_hooks);
        let vod = config.app_relay("vod");
        assert!(vod.origins.is_empty(), "the app's own empty list");
        assert_eq!(vod.push[0].host, "backup");
        assert_eq!(vod.linger, Duration::from_secs(3), "inherited");
        assert!(vod.relay_hooks);
        assert!(config.relays_anything());
        assert!(!Config::default().relays_anything());
    }

    #[test]
    fn bad_relay_keys_are_refused_with_their_key() {
        let error = |text: &str| Config::from_toml(text, Path::new("t.toml")).unwrap_err().to_string();
        let e = error("[relay]\norigins = [\"http://x\"]\n");
        assert!(e.contains("relay.origins[0]") && e.contains("rtmp://"), "{e}");
        let e = error("[relay]\norigin = []\n");
        assert!(e.contains("did you mean 'relay.origins'"), "{e}");
        let e = error("[relay.sources]\n\"live/c\" = \"rtmp://x\"\n");
        assert!(e.contains("relay.sources"), "{e}");
        let e = error("[sources.\"live/c\"]\nurl = \"rtmp://x\"\non_demand = false\n");
        assert!(e.contains("sources.\"live/c\"") || e.contains("on_demand"), "{e}");
        let e = error("[sources.\"live/c\"]\nurl = \"rtmp://x\"\non_demand = true\ntransport = \"tcp\"\n");
        assert!(e.contains("transport") && e.contains("rtsp://"), "{e}");
        let e = error("[apps.live.relay]\nlinger = \"x\"\n");
        assert!(e.contains("apps.live.relay.linger"), "{e}");
    }
}
