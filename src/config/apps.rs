//! Per-application hooks (`[apps.<app>]`, docs/hooks.md "Per-application hooks"), as
//! nginx-rtmp's `application {}` blocks, SRS's vhosts and MediaMTX's paths allow.
//!
//! The rule is nginx-rtmp's, because that is what its operators already expect:
//! - callbacks inherit **key by key**: an app's `[apps.<app>.notify]` sets only the keys it
//!   names, every other key (URLs, `timeout`, `dialect`, `secret`...) comes from `[notify]`;
//!   an empty URL (`on_play = ""`) turns a global callback off for that app;
//! - sinks **add up**: an app's `[[apps.<app>.webhook]]` and `[[apps.<app>.script]]` receive
//!   that app's events, and the global sinks keep receiving every app's events.
//!
//! Apps not listed use the globals alone. The merge is done when asked
//! ([`Config::app_notify`]), after flags have changed `[notify]`, so a flag reaches every
//! app that does not set the key itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::hooks::{NotifyConfig, ScriptConfig, WebhookConfig};
use super::nats::NatsConfig;
use super::{Config, EventFilter};
use crate::redact;

/// One application's own hooks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppConfig {
    /// The `[notify]` keys this app sets itself.
    pub notify: NotifyOverlay,
    /// Webhooks that receive this app's events, beside the global ones.
    pub webhooks: Vec<WebhookConfig>,
    /// Scripts run for this app's events, beside the global ones.
    pub scripts: Vec<ScriptConfig>,
    /// NATS sinks that receive this app's events, beside the global ones.
    pub nats: Vec<NatsConfig>,
    /// `takeover` for this app; `None`: the top-level `takeover`.
    pub takeover: Option<bool>,
    /// `republish_grace` for this app; `None`: the top-level `republish_grace`.
    pub republish_grace: Option<Duration>,
    /// The `[relay]` keys this app sets itself (`relay.rs`); `None`: `[relay]` alone.
    pub relay: Option<super::relay::RelayOverlay>,
}

/// A publisher setting read at start, top level and per app: each app's own value, else the
/// top-level one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppRule<T> {
    default: T,
    apps: BTreeMap<String, T>,
}

impl<T: Copy> AppRule<T> {
    /// The value for a stream of `app`.
    pub fn get(&self, app: &str) -> T {
        self.apps.get(app).copied().unwrap_or(self.default)
    }
}

/// Which streams a new, admitted publisher may take over from the current one (`takeover`,
/// top level and per app; docs/hooks.md "Publisher takeover").
pub type TakeoverRule = AppRule<bool>;

impl TakeoverRule {
    /// Whether a publisher of `app` takes a busy stream over instead of being refused.
    pub fn applies(&self, app: &str) -> bool {
        self.get(app)
    }
}

/// How long a stream whose publisher dropped waits for a new one (`republish_grace`, top
/// level and per app; docs/hooks.md "Publisher reconnect grace"); zero: it ends at once.
pub type GraceRule = AppRule<Duration>;

/// The `[notify]` keys an app sets, over the global ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyOverlay {
    /// The keys written in `[apps.<app>.notify]` (`url` expanded to the callbacks it fills);
    /// only these are taken from [`Self::values`].
    pub keys: Vec<&'static str>,
    /// The app's table read over the defaults; keys not in [`Self::keys`] mean nothing.
    pub values: NotifyConfig,
}

/// `[notify]` keys that hold for the whole server and so cannot be set per app: the lanes'
/// share of requests in flight is sized once, and the update timer ticks for every session
/// alike.
pub const SERVER_WIDE_NOTIFY_KEYS: &[&str] = &["max_in_flight", "update_interval"];

impl NotifyOverlay {
    /// `global` with this app's keys written over it.
    pub fn over(&self, global: &NotifyConfig) -> NotifyConfig {
        let mut merged = global.clone();
        let app = &self.values;
        for key in &self.keys {
            match *key {
                "method" => merged.method = app.method,
                "on_connect" => merged.on_connect = app.on_connect.clone(),
                "on_publish" => merged.on_publish = app.on_publish.clone(),
                "on_play" => merged.on_play = app.on_play.clone(),
                "on_done" => merged.on_done = app.on_done.clone(),
                "on_publish_done" => merged.on_publish_done = app.on_publish_done.clone(),
                "on_play_done" => merged.on_play_done = app.on_play_done.clone(),
                "on_update" => merged.on_update = app.on_update.clone(),
                "on_media" => merged.on_media = app.on_media.clone(),
                "update_strict" => merged.update_strict = app.update_strict,
                "timeout" => merged.timeout = app.timeout,
                "on_error" => merged.on_error = app.on_error,
                "secret" => merged.secret = app.secret.clone(),
                "signature" => merged.signature = app.signature,
                "dialect" => merged.dialect = app.dialect,
                "cache_entries" => merged.cache_entries = app.cache_entries,
                // The reader refuses the server-wide keys and expands `url`.
                _ => {}
            }
        }
        merged
    }
}

impl Config {
    /// Where `takeover` holds: the top-level value, and each app's own.
    pub fn takeover_rule(&self) -> TakeoverRule {
        let apps = self.apps.iter().filter_map(|(name, app)| Some((name.clone(), app.takeover?))).collect();
        TakeoverRule { default: self.takeover, apps }
    }

    /// Where `republish_grace` holds: the top-level value, and each app's own.
    pub fn grace_rule(&self) -> GraceRule {
        let apps = self.apps.iter().filter_map(|(name, app)| Some((name.clone(), app.republish_grace?))).collect();
        GraceRule { default: self.republish_grace, apps }
    }

    /// The callbacks of `app`: its own keys over `[notify]`, or `[notify]` for an app not
    /// listed.
    pub fn app_notify(&self, app: &str) -> NotifyConfig {
        match self.apps.get(app) {
            Some(own) => own.notify.over(&self.notify),
            None => self.notify.clone(),
        }
    }

    /// What `--check` prints of the apps: per listed app, which callbacks and sinks apply to
    /// it; empty without `[apps]`.
    pub fn apps_summary(&self) -> String {
        let mut out = String::new();
        if self.apps.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "apps: callbacks inherit [notify] key by key; sinks add to the global ones; other apps use the globals"
        );
        let global_sinks =
            self.webhooks.len() + self.scripts.len() + self.nats.len() + usize::from(self.stdio.is_some());
        for (name, app) in &self.apps {
            let notify = app.notify.over(&self.notify);
            let _ = writeln!(out, "app {name}:");
            let callbacks = callback_lines(&notify, &app.notify.keys);
            if callbacks.is_empty() {
                let _ = writeln!(out, "  callbacks: none");
            }
            for line in callbacks {
                let _ = writeln!(out, "  {line}");
            }
            let _ = writeln!(
                out,
                "  dialect {} (timeout {:?}, on_error {})",
                notify.dialect, notify.timeout, notify.on_error
            );
            let _ = writeln!(out, "  takeover {}", app.takeover.unwrap_or(self.takeover));
            let grace = app.republish_grace.unwrap_or(self.republish_grace);
            let _ = writeln!(out, "  republish_grace {}", super::duration::format_duration(grace));
            let own = app.webhooks.len() + app.scripts.len() + app.nats.len();
            let _ = writeln!(out, "  sinks: {global_sinks} global + {own} own");
            for hook in &app.webhooks {
                let _ = writeln!(out, "    webhook {} ({})", redact::url(&hook.url), filter_text(&hook.events));
            }
            for script in &app.scripts {
                let _ = writeln!(out, "    script {} ({})", script.path.display(), filter_text(&script.event));
            }
            for nats in &app.nats {
                let _ = writeln!(out, "    nats {} ({})", nats.redacted_url(), filter_text(&nats.events));
            }
        }
        out
    }
}

/// One line per configured callback: its name, URL (redacted) and where it comes from.
fn callback_lines(notify: &NotifyConfig, own: &[&str]) -> Vec<String> {
    let slots = [
        ("on_connect", &notify.on_connect),
        ("on_publish", &notify.on_publish),
        ("on_play", &notify.on_play),
        ("on_done", &notify.on_done),
        ("on_publish_done", &notify.on_publish_done),
        ("on_play_done", &notify.on_play_done),
        ("on_update", &notify.on_update),
        ("on_media", &notify.on_media),
    ];
    slots
        .iter()
        .filter_map(|(key, url)| {
            let from = if own.contains(key) { "app" } else { "global" };
            url.as_ref().map(|url| format!("{key} {} ({from})", redact::url(url)))
        })
        .collect()
}

fn filter_text(filter: &EventFilter) -> String {
    match filter {
        EventFilter::All => "all events".to_owned(),
        EventFilter::Only(events) => events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", "),
    }
}

/// The apps of a config by name.
pub type Apps = BTreeMap<String, AppConfig>;

/// Checks an app's name: what a client's `app` must equal for the app's hooks to apply.
pub fn parse_app_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an app name must not be empty".to_owned());
    }
    if name.contains('/') || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("app name '{name}' must not contain '/', spaces or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, Dialect};

    // Dotted keys and inline tables: the same tables as `[apps.vip.notify]` headers.
    const FILE: &str = r#"
webhook = [{ url = "http://all/events" }]
notify = { on_connect = "http://auth/connect", on_publish = "http://auth/publish", on_play = "http://auth/play", timeout = "3s" }
apps.vip.notify = { on_publish = "http://vip/publish", on_play = "", dialect = "srs" }
apps.vip.webhook = [{ url = "http://vip/events", events = ["publish_start"] }]
apps.vip.script = [{ event = "*", path = "/bin/true" }]
"#;

    #[test]
    fn an_app_inherits_notify_key_by_key() {
        let config = Config::from_toml(FILE, Path::new("t.toml")).unwrap();
        let vip = config.app_notify("vip");
        assert_eq!(vip.on_connect.as_deref(), Some("http://auth/connect"), "inherited");
        assert_eq!(vip.on_publish.as_deref(), Some("http://vip/publish"), "its own");
        assert_eq!(vip.on_play, None, "turned off by an empty URL");
        assert_eq!(vip.dialect, Dialect::Srs);
        assert_eq!(vip.timeout, Duration::from_secs(3), "inherited");
        let other = config.app_notify("live");
        assert_eq!(other, config.notify, "an app not listed uses [notify]");
        assert_eq!(config.apps["vip"].webhooks.len(), 1);
        assert_eq!(config.apps["vip"].scripts.len(), 1);
    }

    #[test]
    fn the_summary_names_each_callback_and_where_it_comes_from() {
        let config = Config::from_toml(FILE, Path::new("t.toml")).unwrap();
        let summary = config.apps_summary();
        assert!(summary.contains("app vip:"), "{summary}");
        assert!(summary.contains("on_connect http://auth/connect (global)"), "{summary}");
        assert!(summary.contains("on_publish http://vip/publish (app)"), "{summary}");
        assert!(!summary.contains("on_play "), "{summary}");
        assert!(summary.contains("sinks: 1 global + 2 own"), "{summary}");
        assert!(summary.contains("webhook http://vip/events (publish_start)"), "{summary}");
        assert!(Config::default().apps_summary().is_empty());
    }

    #[test]
    fn takeover_holds_per_app_over_the_top_level() {
        let text = "takeover = true\n[apps.strict]\ntakeover = false\n[apps.vip.notify]\n";
        let config = Config::from_toml(text, Path::new("t.toml")).unwrap();
        let rule = config.takeover_rule();
        assert!(rule.applies("live") && rule.applies("vip"), "the top level");
        assert!(!rule.applies("strict"), "the app's own");
        assert!(config.apps_summary().contains("takeover false"));
        assert!(!Config::default().takeover_rule().applies("live"), "off by default");
    }

    #[test]
    fn republish_grace_holds_per_app_over_the_top_level() {
        let text =
            "republish_grace = \"10s\"\n[apps.strict]\nrepublish_grace = 0\n[apps.slow]\nrepublish_grace = \"1m\"\n";
        let config = Config::from_toml(text, Path::new("t.toml")).unwrap();
        let rule = config.grace_rule();
        assert_eq!(rule.get("live"), Duration::from_secs(10), "the top level");
        assert_eq!((rule.get("strict"), rule.get("slow")), (Duration::ZERO, Duration::from_secs(60)), "the apps' own");
        let summary = config.apps_summary();
        assert!(summary.contains("republish_grace 0s") && summary.contains("republish_grace 1m"), "{summary}");
        assert_eq!(Config::default().grace_rule().get("live"), Duration::ZERO, "off by default");
        let error = Config::from_toml("republish_grace = -1\n", Path::new("t.toml")).unwrap_err().to_string();
        assert!(error.contains("republish_grace"), "{error}");
        let error =
            Config::from_toml("[apps.a]\nrepublish_grace = true\n", Path::new("t.toml")).unwrap_err().to_string();
        assert!(error.contains("apps.a.republish_grace"), "{error}");
    }

    #[test]
    fn bad_apps_are_refused_with_their_key() {
        let error = |text: &str| Config::from_toml(text, Path::new("t.toml")).unwrap_err().to_string();
        let e = error("[apps.vip.notify]\nmax_in_flight = 3\n");
        assert!(e.contains("apps.vip.notify.max_in_flight") && e.contains("server-wide"), "{e}");
        let e = error("[apps.vip.notify]\non_plya = \"http://x/\"\n");
        assert!(e.contains("did you mean 'apps.vip.notify.on_play'"), "{e}");
        let e = error("[apps.vip]\nwebhooks = []\n");
        assert!(e.contains("apps.vip.webhooks"), "{e}");
        let e = error("[apps]\nvip = 3\n");
        assert!(e.contains("apps.vip") && e.contains("table"), "{e}");
        let e = error("[notify]\nmethod = \"get\"\n[apps.vip.notify]\ndialect = \"srs\"\n");
        assert!(e.contains("apps.vip") && e.contains("post"), "{e}");
        let e = error("[apps.\"a/b\".notify]\non_play = \"http://x/\"\n");
        assert!(e.contains("must not contain '/'"), "{e}");
    }
}
