//! The TOML reader: applies a config file over a [`Config`].
//!
//! It walks the span-carrying document of `toml::de::DeTable` by hand rather than deriving serde
//! `Deserialize`: that way every error names the full key (`webhook[1].url`) and its line, type
//! errors say which key wanted what, and an unknown key comes with the likely intended one.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::apps::{AppConfig, SERVER_WIDE_NOTIFY_KEYS, parse_app_name};
use super::hooks::{Dialect, EventFilter, NotifyConfig, NotifyMethod, ScriptConfig, WebhookConfig, parse_header_name};
use super::nats::{self, NATS_KEYS, NatsConfig, SubjectTemplate};
use super::relay::{RelayOverlay, RelayUrl};
use super::sources::{self, SOURCE_KEYS, SourceConfig};
use super::webhook::{self, CrossKeyError, ValueError, WEBHOOK_KEYS, WebhookFields};
use super::{
    ApiToken, Config, ConfigError, Secret, check_duration, check_range, floors, limits, parse_duration, parse_listen,
    parse_url, quote, suggest,
};

pub(super) const ROOT_KEYS: &[&str] = &[
    "rtmp_listen",
    "http_listen",
    "rtsp_listen",
    "api_listen",
    "api_token",
    "api_max_webhooks",
    "shards",
    "log_level",
    "log_format",
    "chunk_size",
    "player_queue",
    "player_max_drops",
    "gop_cache",
    "max_connections",
    "max_connections_per_ip",
    "max_streams",
    "max_players_per_stream",
    "max_publishers_per_ip",
    "session_journal",
    "merge_write_ms",
    "merge_write_bytes",
    "handshake_timeout",
    "idle_timeout",
    "send_timeout",
    "max_pending_output",
    "partial_message_budget",
    "partial_message_timeout",
    "rtsp_session_timeout",
    "rtsp_udp_ports",
    "rtsp_auth",
    "max_rtmp_message_bytes",
    "max_rtmp_chunk_streams",
    "max_http_request_head_bytes",
    "max_rtsp_request_head_bytes",
    "max_rtsp_body_bytes",
    "player_queue_bytes",
    "gop_cache_bytes",
    "state_dir",
    "hook_timeout",
    "hook_concurrency",
    "hook_queue",
    "hook_queue_bytes",
    "outbox",
    "outbox_fsync",
    "outbox_max_bytes",
    "outbox_retain",
    "shutdown_timeout",
    "rotation_grace",
    "tls_ca_file",
    "notify",
    "webhook",
    "script",
    "nats",
    "stdio",
    "apps",
    "takeover",
    "republish_grace",
    "relay",
    "sources",
];

pub(super) const NOTIFY_KEYS: &[&str] = &[
    "method",
    "on_connect",
    "on_publish",
    "on_play",
    "on_done",
    "on_publish_done",
    "on_play_done",
    "on_update",
    "on_media",
    "update_interval",
    "update_strict",
    "url",
    "timeout",
    "on_error",
    "secret",
    "signature",
    "max_in_flight",
    "dialect",
    "cache_entries",
];

/// What an `[apps.<app>]` table may hold.
pub(super) const APP_KEYS: &[&str] = &["notify", "webhook", "script", "nats", "takeover", "republish_grace", "relay"];

/// What a `[relay]` table (or an app's) may hold.
pub(super) const RELAY_KEYS: &[&str] = &["origins", "push", "linger", "relay_hooks"];

pub(super) const SCRIPT_KEYS: &[&str] = &["event", "path"];

pub(super) const STDIO_KEYS: &[&str] = &["format"];

/// Where each table's keys belong, to point a root-level stray (`on_publish = ...` above any
/// header) at its table.
const TABLES: &[(&str, &[&str])] = &[
    ("[notify]", NOTIFY_KEYS),
    ("[[webhook]]", WEBHOOK_KEYS),
    ("[[script]]", SCRIPT_KEYS),
    ("[[nats]]", NATS_KEYS),
    ("[stdio]", STDIO_KEYS),
];

type Result<T> = std::result::Result<T, ConfigError>;

/// Applies the TOML document `text` (read from `path`) over `config`.
pub(super) fn apply(config: &mut Config, path: &Path, text: &str) -> Result<()> {
    let doc = Doc { path, text };
    let parsed = DeTable::parse(text).map_err(|e| doc.syntax_error(&e))?;
    let root = Section { doc: &doc, prefix: String::new(), table: parsed.get_ref() };
    root.check_keys(ROOT_KEYS)?;

    if let Some(item) = root.get("rtmp_listen") {
        config.rtmp_listen = item.parse(parse_listen)?;
    }
    if let Some(item) = root.get("http_listen") {
        config.http_listen = item.parse(parse_listen)?;
    }
    if let Some(item) = root.get("rtsp_listen") {
        config.rtsp_listen = item.parse(parse_listen)?;
    }
    if let Some(item) = root.get("api_listen") {
        config.api_listen = item.parse(parse_listen)?;
    }
    if let Some(item) = root.get("api_token") {
        config.api_token = Some(item.parse(ApiToken::parse)?);
    }
    if let Some(item) = root.get("api_max_webhooks") {
        config.api_max_webhooks = item.integer(limits::API_MAX_WEBHOOKS)?;
    }
    if let Some(item) = root.get("shards") {
        config.shards = item.integer(limits::SHARDS)?;
    }
    if let Some(item) = root.get("log_level") {
        config.log_level = item.parse(str::parse)?;
    }
    if let Some(item) = root.get("log_format") {
        config.log_format = item.parse(str::parse)?;
    }
    if let Some(item) = root.get("chunk_size") {
        config.chunk_size = item.integer(limits::CHUNK_SIZE)?;
    }
    if let Some(item) = root.get("player_queue") {
        config.player_queue = item.integer(limits::PLAYER_QUEUE)?;
    }
    if let Some(item) = root.get("player_max_drops") {
        config.player_max_drops = item.integer(limits::PLAYER_MAX_DROPS)?;
    }
    if let Some(item) = root.get("gop_cache") {
        config.gop_cache = item.boolean()?;
    }
    if let Some(item) = root.get("max_connections") {
        config.max_connections = item.integer(limits::MAX_CONNECTIONS)?;
    }
    for (key, slot) in [
        ("max_connections_per_ip", &mut config.max_connections_per_ip),
        ("max_streams", &mut config.max_streams),
        ("max_players_per_stream", &mut config.max_players_per_stream),
        ("max_publishers_per_ip", &mut config.max_publishers_per_ip),
    ] {
        if let Some(item) = root.get(key) {
            *slot = item.integer(limits::ADMISSION_LIMIT)?;
        }
    }
    if let Some(item) = root.get("session_journal") {
        config.session_journal = item.boolean()?;
    }
    if let Some(item) = root.get("merge_write_ms") {
        config.merge_write_ms = item.integer(limits::MERGE_WRITE_MS)?;
    }
    if let Some(item) = root.get("merge_write_bytes") {
        config.merge_write_bytes = item.integer(limits::MERGE_WRITE_BYTES)?;
    }
    if let Some(item) = root.get("handshake_timeout") {
        config.handshake_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("idle_timeout") {
        config.idle_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("send_timeout") {
        config.send_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("max_pending_output") {
        config.max_pending_output = item.integer(limits::MAX_PENDING_OUTPUT)?;
    }
    if let Some(item) = root.get("partial_message_budget") {
        config.partial_message_budget = item.integer(limits::PARTIAL_MESSAGE_BUDGET)?;
    }
    if let Some(item) = root.get("partial_message_timeout") {
        config.partial_message_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("rtsp_session_timeout") {
        config.rtsp_session_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("rtsp_udp_ports") {
        config.rtsp_udp_ports = item.parse(parse_port_range)?;
    }
    if let Some(item) = root.get("rtsp_auth") {
        config.rtsp_auth = item.parse(str::parse)?;
    }
    if let Some(item) = root.get("max_rtmp_message_bytes") {
        config.max_rtmp_message_bytes = item.integer(limits::RTMP_MESSAGE_BYTES)?;
    }
    if let Some(item) = root.get("max_rtmp_chunk_streams") {
        config.max_rtmp_chunk_streams = item.integer(limits::RTMP_CHUNK_STREAMS)?;
    }
    for (key, slot) in [
        ("max_http_request_head_bytes", &mut config.max_http_request_head_bytes),
        ("max_rtsp_request_head_bytes", &mut config.max_rtsp_request_head_bytes),
    ] {
        if let Some(item) = root.get(key) {
            *slot = item.integer(limits::REQUEST_HEAD_BYTES)?;
        }
    }
    if let Some(item) = root.get("max_rtsp_body_bytes") {
        config.max_rtsp_body_bytes = item.integer(limits::RTSP_BODY_BYTES)?;
    }
    if let Some(item) = root.get("player_queue_bytes") {
        config.player_queue_bytes = item.integer(limits::PLAYER_QUEUE_BYTES)?;
    }
    if let Some(item) = root.get("gop_cache_bytes") {
        config.gop_cache_bytes = item.integer(limits::GOP_CACHE_BYTES)?;
    }
    if let Some(item) = root.get("state_dir") {
        config.state_dir =
            item.parse(|s| if s.is_empty() { Err("must not be empty".to_owned()) } else { Ok(s.into()) })?;
    }
    if let Some(item) = root.get("hook_timeout") {
        config.hook_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("hook_concurrency") {
        config.hook_concurrency = item.integer(limits::HOOK_CONCURRENCY)?;
    }
    if let Some(item) = root.get("hook_queue") {
        config.hook_queue = item.integer(limits::HOOK_QUEUE)?;
    }
    if let Some(item) = root.get("hook_queue_bytes") {
        config.hook_queue_bytes = item.integer(limits::HOOK_QUEUE_BYTES)?;
    }
    if let Some(item) = root.get("outbox") {
        // "auto", the default, spelled out: on when state_dir is writable.
        config.outbox = match item.value.get_ref() {
            DeValue::String(s) if s == "auto" => None,
            DeValue::String(_) => return Err(item.error("expected true, false or \"auto\"")),
            _ => Some(item.boolean()?),
        };
    }
    if let Some(item) = root.get("outbox_fsync") {
        config.outbox_fsync = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("outbox_max_bytes") {
        config.outbox_max_bytes = item.integer(limits::OUTBOX_MAX_BYTES)?;
    }
    if let Some(item) = root.get("outbox_retain") {
        config.outbox_retain = item.duration(Duration::ZERO)?;
    }
    if let Some(item) = root.get("shutdown_timeout") {
        config.shutdown_timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = root.get("rotation_grace") {
        config.rotation_grace = item.duration(Duration::ZERO)?;
    }
    if let Some(item) = root.get("tls_ca_file") {
        config.tls_ca_file =
            Some(item.parse(|s| if s.is_empty() { Err("must not be empty".to_owned()) } else { Ok(s.into()) })?);
    }
    if let Some(item) = root.get("notify") {
        read_notify(&mut config.notify, &item.table()?, false)?;
    }
    if let Some(item) = root.get("webhook") {
        for element in item.array_of_tables()? {
            let webhook = read_webhook(&element)?;
            check_unique_id(config.webhooks.iter(), &webhook, &element)?;
            config.webhooks.push(webhook);
        }
    }
    if let Some(item) = root.get("script") {
        for element in item.array_of_tables()? {
            config.scripts.push(read_script(&element)?);
        }
    }
    if let Some(item) = root.get("nats") {
        for element in item.array_of_tables()? {
            let nats = read_nats(&element)?;
            check_unique_sink_id(config, None, nats.id.as_deref(), &element)?;
            config.nats.push(nats);
        }
    }
    if let Some(item) = root.get("takeover") {
        config.takeover = item.boolean()?;
    }
    if let Some(item) = root.get("republish_grace") {
        config.republish_grace = item.duration(Duration::ZERO)?;
    }
    if let Some(item) = root.get("relay") {
        config.relay = read_relay(&item)?.over(&config.relay);
    }
    if let Some(item) = root.get("apps") {
        read_apps(config, &item)?;
    }
    if let Some(item) = root.get("sources") {
        read_sources(config, &item)?;
    }
    if let Some(item) = root.get("stdio") {
        let table = item.table()?;
        table.check_keys(STDIO_KEYS)?;
        config.stdio = Some(match table.get("format") {
            Some(format) => format.parse(str::parse)?,
            None => Default::default(),
        });
    }
    Ok(())
}

/// Reads a `[notify]` table into `notify`; returns the keys it set (`url` counted as the
/// callbacks it filled). `per_app`: an `[apps.<app>.notify]` table, where an empty URL turns a
/// global callback off, the server-wide keys are refused, and the checks across keys wait
/// for the merge with `[notify]` (`Config::validate`).
fn read_notify(notify: &mut NotifyConfig, table: &Section<'_>, per_app: bool) -> Result<Vec<&'static str>> {
    table.check_keys(NOTIFY_KEYS)?;
    let mut set: Vec<&'static str> = NOTIFY_KEYS.iter().copied().filter(|key| table.get(key).is_some()).collect();
    if per_app && let Some(key) = SERVER_WIDE_NOTIFY_KEYS.iter().find(|key| set.contains(key)) {
        let item = table.get(key).expect("listed because present");
        return Err(item.error("is server-wide: set it in [notify]"));
    }
    if let Some(item) = table.get("method") {
        notify.method = item.parse(str::parse)?;
    }
    let url = |key: &str| -> Result<Option<String>> {
        let Some(item) = table.get(key) else { return Ok(None) };
        if per_app && item.string()?.is_empty() {
            return Ok(None);
        }
        item.parse(parse_url).map(Some)
    };
    notify.on_connect = url("on_connect")?;
    notify.on_publish = url("on_publish")?;
    notify.on_play = url("on_play")?;
    notify.on_done = url("on_done")?;
    notify.on_publish_done = url("on_publish_done")?;
    notify.on_play_done = url("on_play_done")?;
    notify.on_update = url("on_update")?;
    // Not among what `url` fills: a shared endpoint written before on_media existed would
    // start holding every publish, and be asked a call it does not know.
    notify.on_media = url("on_media")?;
    // `url` is the bintu-style shorthand: one endpoint for every callback not given its own.
    if let Some(shared) = url("url")? {
        for (key, slot) in [
            ("on_connect", &mut notify.on_connect),
            ("on_publish", &mut notify.on_publish),
            ("on_play", &mut notify.on_play),
            ("on_done", &mut notify.on_done),
            ("on_publish_done", &mut notify.on_publish_done),
            ("on_play_done", &mut notify.on_play_done),
            ("on_update", &mut notify.on_update),
        ] {
            if !set.contains(&key) {
                set.push(key);
            }
            slot.get_or_insert_with(|| shared.clone());
        }
    }
    if let Some(item) = table.get("update_interval") {
        notify.update_interval = item.duration(floors::UPDATE_INTERVAL)?;
    }
    if let Some(item) = table.get("update_strict") {
        notify.update_strict = item.boolean()?;
    }
    if let Some(item) = table.get("timeout") {
        notify.timeout = item.duration(floors::TIMEOUT)?;
    }
    if let Some(item) = table.get("on_error") {
        notify.on_error = item.parse(str::parse)?;
    }
    if let Some(item) = table.get("max_in_flight") {
        notify.max_in_flight = item.integer(limits::CALLBACKS_IN_FLIGHT)?;
    }
    if let Some(item) = table.get("cache_entries") {
        notify.cache_entries = item.integer(limits::CALLBACK_CACHE_ENTRIES)?;
    }
    if let Some(item) = table.get("dialect") {
        notify.dialect = item.parse(str::parse)?;
        if !per_app && notify.dialect != Dialect::Nginx && notify.method == NotifyMethod::Get {
            return Err(
                item.error(format!("the {} dialect sends a JSON body, so 'method' must be post", notify.dialect))
            );
        }
    }
    if let Some(item) = table.get("secret") {
        notify.secret = Some(item.parse(Secret::parse)?);
    }
    if let Some(item) = table.get("signature") {
        notify.signature = item.parse(str::parse)?;
        if !per_app && notify.secret.is_none() {
            return Err(item.error("has no effect without 'secret'"));
        }
    }
    set.retain(|key| *key != "url");
    Ok(set)
}

/// Reads `[apps.<app>]` tables: each app's `notify` over the defaults (merged with
/// `[notify]` when asked, `apps.rs`), and its own webhooks and scripts.
fn read_apps(config: &mut Config, item: &Item<'_>) -> Result<()> {
    let apps = item.table()?;
    for (name, app_item) in apps.entries() {
        parse_app_name(&name).map_err(|message| app_item.error(message))?;
        let table = app_item.table()?;
        table.check_keys(APP_KEYS)?;
        let mut app = AppConfig::default();
        if let Some(notify) = table.get("notify") {
            app.notify.keys = read_notify(&mut app.notify.values, &notify.table()?, true)?;
        }
        if let Some(hooks) = table.get("webhook") {
            for element in hooks.array_of_tables()? {
                let webhook = read_webhook(&element)?;
                let taken = config.webhooks.iter().chain(config.apps.values().flat_map(|a| &a.webhooks));
                check_unique_id(taken.chain(&app.webhooks), &webhook, &element)?;
                // The global `[[nats]]` sinks are read by now: their ids are taken too.
                check_unique_sink_id(config, Some(&app), webhook.id.as_deref(), &element)?;
                app.webhooks.push(webhook);
            }
        }
        if let Some(takeover) = table.get("takeover") {
            app.takeover = Some(takeover.boolean()?);
        }
        if let Some(grace) = table.get("republish_grace") {
            app.republish_grace = Some(grace.duration(Duration::ZERO)?);
        }
        if let Some(scripts) = table.get("script") {
            for element in scripts.array_of_tables()? {
                app.scripts.push(read_script(&element)?);
            }
        }
        if let Some(sinks) = table.get("nats") {
            for element in sinks.array_of_tables()? {
                let nats = read_nats(&element)?;
                check_unique_sink_id(config, Some(&app), nats.id.as_deref(), &element)?;
                app.nats.push(nats);
            }
        }
        if let Some(relay) = table.get("relay") {
            app.relay = Some(read_relay(&relay)?);
        }
        config.apps.insert(name, app);
    }
    Ok(())
}

/// Reads a `[relay]` table: the keys it sets (`relay.rs`).
fn read_relay(item: &Item<'_>) -> Result<RelayOverlay> {
    let table = item.table()?;
    table.check_keys(RELAY_KEYS)?;
    let urls = |key: &str| -> Result<Option<Vec<RelayUrl>>> {
        let Some(list) = table.get(key) else { return Ok(None) };
        list.array()?.iter().map(|element| element.parse(RelayUrl::parse)).collect::<Result<_>>().map(Some)
    };
    let mut overlay = RelayOverlay { origins: urls("origins")?, push: urls("push")?, ..RelayOverlay::default() };
    if let Some(linger) = table.get("linger") {
        overlay.linger = Some(linger.duration(Duration::ZERO)?);
    }
    if let Some(hooks) = table.get("relay_hooks") {
        overlay.relay_hooks = Some(hooks.boolean()?);
    }
    Ok(overlay)
}

/// Reads `[sources."<app>/<name>"]` tables (`sources.rs`).
fn read_sources(config: &mut Config, item: &Item<'_>) -> Result<()> {
    for (stream, source_item) in item.table()?.entries() {
        sources::parse_stream_key(&stream).map_err(|message| source_item.error(message))?;
        let table = source_item.table()?;
        table.check_keys(SOURCE_KEYS)?;
        let Some(url_item) = table.get("url") else {
            return Err(source_item.error("a source needs its 'url' (rtsp://... or rtmp://...)"));
        };
        // An rtmp:// source is a relay's pull (`relay.rs`): on demand, under `[relay]`'s
        // `linger` and `relay_hooks`; the other keys are a camera's.
        if url_item.string()?.starts_with("rtmp://") {
            let url = url_item.parse(RelayUrl::parse)?;
            for (key, value) in table.entries() {
                match key.as_str() {
                    "url" => {}
                    "on_demand" if value.boolean()? => {}
                    "on_demand" => {
                        return Err(
                            value.error("an rtmp:// source is pulled while the stream has players: on_demand = true")
                        );
                    }
                    _ => {
                        return Err(value.error(
                            "applies to rtsp:// cameras; an rtmp:// source follows [relay] (linger, relay_hooks)",
                        ));
                    }
                }
            }
            config.relay.sources.insert(stream, url);
            continue;
        }
        let url = url_item.parse(sources::parse_source_url)?;
        let mut source = SourceConfig {
            stream,
            url,
            on_demand: false,
            transport: Default::default(),
            linger: sources::DEFAULT_LINGER,
            start_timeout: sources::DEFAULT_START_TIMEOUT,
            hooks: false,
        };
        if let Some(on_demand) = table.get("on_demand") {
            source.on_demand = on_demand.boolean()?;
        }
        if let Some(transport) = table.get("transport") {
            source.transport = transport.parse(sources::parse_transport)?;
        }
        if let Some(linger) = table.get("linger") {
            source.linger = linger.duration(Duration::ZERO)?;
        }
        if let Some(start_timeout) = table.get("start_timeout") {
            source.start_timeout = start_timeout.duration(Duration::from_millis(100))?;
        }
        if let Some(hooks) = table.get("hooks") {
            source.hooks = hooks.boolean()?;
        }
        config.sources.push(source);
    }
    Ok(())
}

/// A webhook's `id` names its outbox, so no two webhooks, global or of an app, may share one.
fn check_unique_id<'a>(
    mut taken: impl Iterator<Item = &'a WebhookConfig>,
    webhook: &WebhookConfig,
    element: &Item<'_>,
) -> Result<()> {
    if let Some(id) = &webhook.id
        && taken.any(|w| w.id.as_ref() == Some(id))
        && let Ok(table) = element.table()
        && let Some(value) = table.get("id")
    {
        return Err(value.error(format!("id {id:?} is given to another [[webhook]] already")));
    }
    Ok(())
}

/// A `[[nats]]` sink's `id` names its outbox, as a webhook's does: none may share one with
/// another sink (webhook or NATS, global or of an app; `app` is the one being read).
fn check_unique_sink_id(config: &Config, app: Option<&AppConfig>, id: Option<&str>, element: &Item<'_>) -> Result<()> {
    let Some(id) = id else { return Ok(()) };
    let apps = config.apps.values().chain(app);
    let webhooks = config.webhooks.iter().chain(apps.clone().flat_map(|a| &a.webhooks)).filter_map(|w| w.id.as_deref());
    let nats = config.nats.iter().chain(apps.flat_map(|a| &a.nats)).filter_map(|n| n.id.as_deref());
    if webhooks.chain(nats).any(|taken| taken == id)
        && let Ok(table) = element.table()
        && let Some(value) = table.get("id")
    {
        return Err(value.error(format!("id {id:?} is given to another sink already")));
    }
    Ok(())
}

/// A `[[nats]]` table (docs/hooks.md, "NATS JetStream").
fn read_nats(item: &Item<'_>) -> Result<NatsConfig> {
    let table = item.table()?;
    table.check_keys(NATS_KEYS)?;
    let Some(url) = table.get("url") else {
        return Err(item.error("missing required key 'url'"));
    };
    let mut config = NatsConfig::new(url.parse(nats::parse_nats_url)?);
    if let Some(value) = table.get("id") {
        config.id = Some(value.parse(parse_webhook_id)?);
    }
    let not_empty = |s: &str| if s.is_empty() { Err("must not be empty".to_owned()) } else { Ok(s.to_owned()) };
    match (table.get("user"), table.get("password")) {
        (Some(user), Some(password)) => config.user = Some((user.parse(not_empty)?, password.parse(not_empty)?)),
        (Some(alone), None) | (None, Some(alone)) => {
            return Err(alone.error("'user' and 'password' go together"));
        }
        (None, None) => {}
    }
    if let Some(token) = table.get("token") {
        if config.user.is_some() {
            return Err(token.error("give 'token' or 'user' and 'password', not both"));
        }
        config.token = Some(token.parse(not_empty)?);
    }
    if let Some(subject) = table.get("subject") {
        config.subject = subject.parse(SubjectTemplate::parse)?;
    }
    if let Some(events) = table.get("events") {
        config.events = read_list(&events, webhook::parse_events)?;
    }
    if let Some(stream) = table.get("stream") {
        config.stream = Some(stream.parse(nats::parse_stream_name)?);
    }
    if let Some(retries) = table.get("retries") {
        config.retries = retries.integer_with(webhook::check_retries)?;
    }
    Ok(config)
}

fn read_webhook(item: &Item<'_>) -> Result<WebhookConfig> {
    let table = item.table()?;
    table.check_keys(&[WEBHOOK_KEYS, &["id"]].concat())?;
    if table.get("url").is_none() {
        return Err(item.error("missing required key 'url'"));
    }
    // Only the file names its webhooks: the API gives its own ids.
    let id = match table.get("id") {
        Some(value) => Some(value.parse(parse_webhook_id)?),
        None => None,
    };
    let mut fields = WebhookFields::default();
    for &key in WEBHOOK_KEYS {
        let Some(value) = table.get(key) else { continue };
        match key {
            "url" => fields.url = Some(value.parse(parse_url)?),
            "events" => fields.events = Some(read_list(&value, webhook::parse_events)?),
            "headers" => {
                let count = value.array()?.len();
                webhook::check_header_count(count).map_err(|message| value.error(message))?;
                fields.headers = Some(read_list(&value, webhook::parse_headers)?);
            }
            "format" => fields.format = Some(value.parse(str::parse)?),
            "secret" => fields.secret = Some(value.parse(Secret::parse)?),
            "signature" => fields.signature = Some(value.parse(str::parse)?),
            "signature_header" => fields.signature_header = Some(Some(value.parse(parse_header_name)?)),
            "retries" => fields.retries = Some(value.integer_with(webhook::check_retries)?),
            _ => {}
        }
    }
    let mut config = WebhookConfig::new(String::new(), EventFilter::All);
    config.id = id;
    fields.apply(&mut config).map_err(|CrossKeyError { key, message }| match table.get(key) {
        Some(value) => value.error(message),
        None => item.error(message),
    })?;
    Ok(config)
}

/// `[[webhook]] id`: a plain name (it names the webhook's outbox directory), not one the
/// admin API could give.
fn parse_webhook_id(id: &str) -> std::result::Result<String, String> {
    if !webhook::is_plain_id(id) {
        return Err(format!("{id:?} is not an id: 1 to 64 of A-Z a-z 0-9 _ - . (not starting with a dot)"));
    }
    if id.starts_with("wh_") || id.starts_with("url-") || id.starts_with("config_") {
        return Err(format!("{id:?}: ids starting with wh_, url- or config_ are ringcast's own"));
    }
    Ok(id.to_owned())
}

/// An array of strings run through a list validator, blaming the element or the array.
fn read_list<T>(item: &Item<'_>, validate: impl FnOnce(&[&str]) -> std::result::Result<T, ValueError>) -> Result<T> {
    let elements = item.array()?;
    let texts = elements.iter().map(Item::string).collect::<Result<Vec<_>>>()?;
    validate(&texts).map_err(|ValueError { element, message }| match element.and_then(|i| elements.get(i)) {
        Some(element) => element.error(message),
        None => item.error(message),
    })
}

fn read_script(item: &Item<'_>) -> Result<ScriptConfig> {
    let table = item.table()?;
    table.check_keys(SCRIPT_KEYS)?;
    let event = match table.get("event") {
        Some(event) => event.parse(EventFilter::parse_one)?,
        None => return Err(item.error("missing required key 'event' (an event name or \"*\")")),
    };
    let path = match table.get("path") {
        Some(path) => path.parse(|s| if s.is_empty() { Err("must not be empty".to_owned()) } else { Ok(s.into()) })?,
        None => return Err(item.error("missing required key 'path'")),
    };
    Ok(ScriptConfig { event, path })
}

/// The file being read: its name and text, to turn spans into line numbers.
struct Doc<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Doc<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn error(&self, span: Option<&Range<usize>>, message: String) -> ConfigError {
        ConfigError::File { path: self.path.to_owned(), line: span.map(|s| self.line(s.start)), message }
    }

    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        // The parser's message is one line already; join defensively so the error stays one.
        let mut message = error.message().split_whitespace().collect::<Vec<_>>().join(" ");
        // toml says only "duplicate key"; the span holds the key, which is what the user needs.
        if let Some(key) = error.span().and_then(|span| self.text.get(span))
            && message == "duplicate key"
        {
            message = format!("duplicate key {}", quote(key));
        }
        self.error(error.span().as_ref(), format!("invalid TOML: {message}"))
    }
}

/// A table of the document and the key path leading to it (`""`, `"notify."`, `"webhook[0]."`).
struct Section<'a> {
    doc: &'a Doc<'a>,
    prefix: String,
    table: &'a DeTable<'a>,
}

impl<'a> Section<'a> {
    /// Refuses the first unknown key in file order, with the likely intended one.
    fn check_keys(&self, known: &[&str]) -> Result<()> {
        let unknown = self
            .table
            .iter()
            .filter(|(key, _)| !known.contains(&key.get_ref().as_ref()))
            .min_by_key(|(key, _)| key.span().start);
        let Some((key, _)) = unknown else {
            return Ok(());
        };
        let name: &str = key.get_ref();
        let full = format!("{}{name}", self.prefix);
        let hint = if let Some(close) = suggest(name, known.iter().copied()) {
            format!(" (did you mean '{}{close}'?)", self.prefix)
        } else if self.prefix.is_empty() {
            match TABLES.iter().find(|(_, keys)| keys.contains(&name)) {
                Some((table, _)) => format!(" (it belongs in a {table} table)"),
                None => String::new(),
            }
        } else if ROOT_KEYS.contains(&name) {
            " (a top-level key: move it above the first [table] header)".to_owned()
        } else {
            String::new()
        };
        Err(self.doc.error(Some(&key.span()), format!("unknown key {}{hint}", quote(&full))))
    }

    /// Every key and its value, in file order.
    fn entries(&self) -> Vec<(String, Item<'a>)> {
        let mut entries: Vec<_> = self.table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        entries
            .into_iter()
            .map(|(key, value)| {
                let name = key.get_ref().to_string();
                (name.clone(), Item { doc: self.doc, key: format!("{}{name}", self.prefix), value })
            })
            .collect()
    }

    fn get(&self, key: &str) -> Option<Item<'a>> {
        self.table.get(key).map(|value| Item { doc: self.doc, key: format!("{}{key}", self.prefix), value })
    }
}

/// A value of the document and its full key, for messages.
struct Item<'a> {
    doc: &'a Doc<'a>,
    key: String,
    value: &'a Spanned<DeValue<'a>>,
}

impl<'a> Item<'a> {
    fn error(&self, message: impl std::fmt::Display) -> ConfigError {
        self.doc.error(Some(&self.value.span()), format!("key '{}': {message}", self.key))
    }

    fn type_error(&self, expected: &str) -> ConfigError {
        let got = match self.value.get_ref() {
            DeValue::String(_) => "a string",
            DeValue::Integer(_) => "an integer",
            DeValue::Float(_) => "a float",
            DeValue::Boolean(_) => "a boolean",
            DeValue::Datetime(_) => "a date-time",
            DeValue::Array(_) => "an array",
            DeValue::Table(_) => "a table",
        };
        self.error(format!("expected {expected}, got {got}"))
    }

    fn string(&self) -> Result<&'a str> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s),
            _ => Err(self.type_error("a string")),
        }
    }

    /// A string value run through one of the validators the flags share.
    fn parse<T>(&self, validate: impl FnOnce(&str) -> std::result::Result<T, String>) -> Result<T> {
        validate(self.string()?).map_err(|message| self.error(message))
    }

    fn boolean(&self) -> Result<bool> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.type_error("true or false")),
        }
    }

    fn integer<T: TryFrom<u64>>(&self, limit: (u64, u64)) -> Result<T> {
        self.integer_with(|value| check_range(value, limit))
    }

    /// An integer run through `validate`.
    fn integer_with<T>(&self, validate: impl FnOnce(i128) -> std::result::Result<T, String>) -> Result<T> {
        let DeValue::Integer(int) = self.value.get_ref() else {
            return Err(self.type_error("an integer"));
        };
        let value = i128::from_str_radix(int.as_str(), int.radix())
            .map_err(|_| self.error(format!("integer {int} is out of range")))?;
        validate(value).map_err(|message| self.error(message))
    }

    /// A duration: a string such as `"30s"`, or an integer number of seconds.
    fn duration(&self, floor: Duration) -> Result<Duration> {
        let value = match self.value.get_ref() {
            DeValue::String(s) => parse_duration(s),
            DeValue::Integer(int) => match i128::from_str_radix(int.as_str(), int.radix()) {
                Ok(secs) if secs < 0 => Err(format!("must not be negative, got {secs}")),
                // Through the parser, so integer and string share the ceiling and messages.
                Ok(secs) => parse_duration(&secs.to_string()),
                Err(_) => Err(format!("integer {int} is out of range")),
            },
            _ => {
                return Err(self.type_error("a duration such as \"30s\" or \"500ms\", or whole seconds"));
            }
        };
        value.and_then(|d| check_duration(d, floor)).map_err(|message| self.error(message))
    }

    fn table(&self) -> Result<Section<'a>> {
        match self.value.get_ref() {
            DeValue::Table(table) => Ok(Section { doc: self.doc, prefix: format!("{}.", self.key), table }),
            _ => Err(self.type_error("a table")),
        }
    }

    fn array(&self) -> Result<Vec<Item<'a>>> {
        match self.value.get_ref() {
            DeValue::Array(array) => Ok(array
                .iter()
                .enumerate()
                .map(|(i, value)| Item { doc: self.doc, key: format!("{}[{i}]", self.key), value })
                .collect()),
            _ => Err(self.type_error("an array")),
        }
    }

    /// `[[name]]` blocks (or an inline array of tables). A single `[name]` is the common slip.
    fn array_of_tables(&self) -> Result<Vec<Item<'a>>> {
        match self.value.get_ref() {
            DeValue::Table(_) => {
                Err(self.type_error(&format!("an array of tables (write [[{}]], with double brackets)", self.key)))
            }
            _ => self.array(),
        }
    }
}

/// `"first-last"`: an even first port (RTP takes the even port of a pair) and room for one
/// pair at least.
fn parse_port_range(text: &str) -> std::result::Result<(u16, u16), String> {
    let invalid = || format!("expected \"first-last\" UDP ports, like \"30000-39999\", got '{text}'");
    let (first, last) = text.split_once('-').ok_or_else(invalid)?;
    let first: u16 = first.trim().parse().map_err(|_| invalid())?;
    let last: u16 = last.trim().parse().map_err(|_| invalid())?;
    if first == 0 || !first.is_multiple_of(2) || last <= first {
        return Err(format!("'{text}': the first port must be even and not 0, and the last above it"));
    }
    Ok((first, last))
}
