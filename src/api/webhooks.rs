//! Webhooks managed at run time (docs/hooks.md, "Admin API and metrics"; Dolby.io style CRUD
//! with secret rotation).
//!
//! The dispatcher runs the sinks; this registry adds what only the API knows about the ones it
//! made: a stable public id (`wh_<16 hex>`), creation and change times, and a secret rotation
//! in progress. It also keeps them in `state_dir` (see `store.rs`).
//!
//! Ids: the dispatcher numbers sinks at start-up, config-file sinks first, so its numbers
//! shift whenever the config file gains or loses a sink. API webhooks therefore get ids of
//! their own, kept in the state file and mapped to dispatcher sink ids in memory: an id an
//! operator wrote down stays valid across restarts and config edits. Config-file webhooks are
//! shown as `config_<sink id>`, read-only.
//!
//! Validation: a request body is read key by key into the config module's
//! [`WebhookFields`], with the validators `[[webhook]]` uses, and its cross-key rules are those
//! of `[[webhook]]` ([`WebhookFields::apply`]): the API accepts exactly what the config file
//! accepts, with the same messages (`key 'url': invalid URL ...`). Only the JSON reading is
//! here (`null` for "the default"). The state file is loaded through the same code.
//!
//! Every change holds the registry lock from validation to the dispatcher swap, and writes
//! the state file *before* touching the dispatcher: a webhook the API reports created or
//! changed is on disk, and a failed write changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tracing::{error, info, warn};

use super::dolby::{self, DolbyRequest};
use super::http::Response;
use super::store::{self, StateFile, StoredWebhook};
use super::{ApiError, rfc3339};
use crate::config::{
    CrossKeyError, DEFAULT_SIGNATURE_HEADER, EventFilter, Header, Secret, ValueError, WEBHOOK_KEYS, WebhookConfig,
    WebhookFields, check_header_count, check_retries, parse_events, parse_header_name, parse_headers, parse_url,
};
use crate::hooks::dispatch::{Dispatcher, Sink, SinkOrigin};
use crate::hooks::now_ms;
use crate::redact;

/// Random bytes in a generated secret (Standard Webhooks asks for 24 to 64).
pub const GENERATED_SECRET_BYTES: usize = 32;

/// What `POST /api/webhooks/{id}/secret` accepts.
const ROTATE_KEYS: &[&str] = &["secret"];

/// Prefix of the ids of API webhooks.
const API_ID_PREFIX: &str = "wh_";
/// Prefix of the ids under which config-file webhooks are shown.
const CONFIG_ID_PREFIX: &str = "config_";

/// An API webhook: its dispatcher sink and what only the API knows.
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    sink_id: u64,
    /// The settings as last accepted (the dispatcher holds the same, plus the rotation).
    config: WebhookConfig,
    created_ms: u64,
    updated_ms: u64,
    rotation: Option<Rotation>,
}

/// A rotation in progress: the previous secret signs beside the current one until `until_ms`.
#[derive(Clone, Debug)]
struct Rotation {
    previous: Secret,
    until_ms: u64,
}

impl Entry {
    fn previous_secret(&self) -> Option<&Secret> {
        self.rotation.as_ref().map(|r| &r.previous)
    }

    fn stored(&self) -> StoredWebhook {
        let config = &self.config;
        StoredWebhook {
            id: self.id.clone(),
            created_at_ms: self.created_ms,
            updated_at_ms: self.updated_ms,
            url: config.url.clone(),
            events: events_json(&config.events),
            headers: config.headers.iter().map(header_text).collect(),
            format: config.format.as_str().to_owned(),
            signature: config.signature.as_str().to_owned(),
            signature_header: config.signature_header.clone(),
            secret: config.secret.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            retries: u64::from(config.retries),
            previous_secret: self.rotation.as_ref().map(|r| r.previous.as_str().to_owned()),
            previous_secret_expires_at_ms: self.rotation.as_ref().map(|r| r.until_ms),
        }
    }
}

/// The API's webhooks, and where they are kept.
pub struct Registry {
    state_dir: PathBuf,
    rotation_grace: Duration,
    /// `api_max_webhooks`: creating one more is refused (409).
    max_webhooks: usize,
    entries: Mutex<Vec<Entry>>,
}

/// Which webhook an id names.
enum Target {
    /// Index into the entries.
    Api(usize),
    Config(Arc<Sink>),
}

type Result<T> = std::result::Result<T, Response>;

/// A webhook created by `POST /api/webhooks`, answered in the form its body was written in.
pub enum Created {
    /// ringcast's own: 201 with the webhook's view, secret shown.
    Webhook(Value),
    /// A Dolby.io-style body: 200 with Dolby's answer.
    Dolby(Value),
}

impl Registry {
    pub fn new(state_dir: PathBuf, rotation_grace: Duration, max_webhooks: usize) -> Registry {
        Registry { state_dir, rotation_grace, max_webhooks, entries: Mutex::new(Vec::new()) }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panic elsewhere (caught per request) must not take the API down with a poisoned lock;
        // every change completes its invariants before it can panic.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Public id per dispatcher sink id, for every API webhook (metrics labels).
    pub fn public_ids(&self) -> HashMap<u64, String> {
        self.lock().iter().map(|e| (e.sink_id, e.id.clone())).collect()
    }

    /// `GET /api/webhooks`: every webhook, config-file ones first, in dispatcher order.
    pub fn list(&self, dispatcher: &Dispatcher) -> Value {
        let entries = self.lock();
        let mut list = Vec::new();
        for sink in dispatcher.sinks() {
            let Some(config) = &sink.webhook else { continue };
            match sink.origin {
                SinkOrigin::Config => list.push(view(&config_id(sink.id), "config", config, &sink, None)),
                SinkOrigin::Api => {
                    if let Some(entry) = entries.iter().find(|e| e.sink_id == sink.id) {
                        list.push(view(&entry.id, "api", &entry.config, &sink, Some(entry)));
                    }
                }
            }
        }
        json!({ "webhooks": list })
    }

    /// `GET /api/webhooks/{id}`.
    pub fn get(&self, dispatcher: &Dispatcher, id: &str) -> Result<Value> {
        let entries = self.lock();
        match resolve(&entries, dispatcher, id)? {
            Target::Config(sink) => {
                let config = sink.webhook.as_ref().ok_or_else(|| not_found(id))?;
                Ok(view(id, "config", config, &sink, None))
            }
            Target::Api(index) => {
                let entry = &entries[index];
                let sink = dispatcher.sink(entry.sink_id).ok_or_else(|| vanished(id))?;
                Ok(view(&entry.id, "api", &entry.config, &sink, Some(entry)))
            }
        }
    }

    /// `POST /api/webhooks`: validates, saves, starts delivering; the view with the secret.
    /// A Dolby.io-style body (`dolby.rs`) gets Dolby's answer instead, with status 200.
    pub fn create(&self, dispatcher: &Dispatcher, body: &[u8]) -> Result<Created> {
        let map = body_object(body, false)?;
        if dolby::is_dolby_body(&map) {
            let request = DolbyRequest::parse(&map).map_err(bad_request)?;
            // Dolby's receivers decode the secret as base64 (`Buffer.from(secret, 'base64')`),
            // which a `whsec_` prefix would corrupt.
            let secret = generate_secret("")?;
            let (entry, _) = self.insert(dispatcher, request.config(secret.clone()))?;
            return Ok(Created::Dolby(request.answer(&entry.id, &secret)));
        }
        let fields = parse_fields(&map, WEBHOOK_KEYS).map_err(bad_request)?;
        let Some(url) = fields.url.clone() else {
            return Err(bad_request("missing required key 'url'".to_owned()));
        };
        let mut config = WebhookConfig::new(url, EventFilter::All);
        // An API webhook is always signed: without a secret of its own it gets one now, before
        // the rules that want a secret (`signature`, `signature_header`) are checked.
        if fields.secret.is_none() {
            config.secret = Some(generate_secret("whsec_")?);
        }
        apply(&fields, &mut config).map_err(bad_request)?;
        let (entry, sink) = self.insert(dispatcher, config)?;
        let mut out = view(&entry.id, "api", &entry.config, &sink, Some(&entry));
        reveal_secret(&mut out, &entry.config);
        Ok(Created::Webhook(out))
    }

    /// Adds a validated webhook: saved, then handed to the dispatcher.
    fn insert(&self, dispatcher: &Dispatcher, config: WebhookConfig) -> Result<(Entry, Arc<Sink>)> {
        let mut entries = self.lock();
        if entries.len() >= self.max_webhooks {
            return Err(Response::error(
                409,
                format!(
                    "{} webhooks were created over the API, the most api_max_webhooks allows; delete one first",
                    entries.len()
                ),
            ));
        }
        let id = loop {
            let id = generate_id()?;
            if !entries.iter().any(|e| e.id == id) {
                break id;
            }
        };
        let now = now_ms();
        let mut config = config;
        // Its outbox is named by its id, which outlives restarts and changes.
        config.id = Some(id.clone());
        let mut entry = Entry { id, sink_id: 0, config, created_ms: now, updated_ms: now, rotation: None };
        let mut next: Vec<Entry> = entries.clone();
        next.push(entry.clone());
        self.save(&next)?;
        let sink = dispatcher.add_webhook(entry.config.clone(), SinkOrigin::Api);
        entry.sink_id = sink.id;
        info!(webhook = %entry.id, url = %redact::url(&entry.config.url), "webhook created over the admin API");
        entries.push(entry.clone());
        Ok((entry, sink))
    }

    /// `PATCH /api/webhooks/{id}`: changes the keys given (`null` resets one to its default),
    /// and re-enables a webhook a 410 disabled.
    pub fn patch(&self, dispatcher: &Dispatcher, id: &str, body: &[u8]) -> Result<Value> {
        let map = body_object(body, true)?;
        if map.contains_key("secret") {
            return Err(bad_request(format!(
                "key 'secret': cannot be changed with PATCH; POST /api/webhooks/{id}/secret rotates it"
            )));
        }
        let fields = parse_fields(&map, WEBHOOK_KEYS).map_err(bad_request)?;
        let mut entries = self.lock();
        let index = self.api_target(&entries, dispatcher, id)?;
        let mut entry = entries[index].clone();
        apply(&fields, &mut entry.config).map_err(bad_request)?;
        entry.updated_ms = now_ms();
        let mut next = entries.clone();
        next[index] = entry.clone();
        self.save(&next)?;
        let sink = dispatcher
            .change_webhook(entry.sink_id, entry.config.clone(), entry.previous_secret())
            .ok_or_else(|| vanished(id))?;
        info!(webhook = %entry.id, url = %redact::url(&entry.config.url), "webhook changed over the admin API");
        let out = view(&entry.id, "api", &entry.config, &sink, Some(&entry));
        entries[index] = entry;
        Ok(out)
    }

    /// `DELETE /api/webhooks/{id}`: stops it (queued deliveries are dropped, counted).
    pub fn delete(&self, dispatcher: &Dispatcher, id: &str) -> Result<Value> {
        let mut entries = self.lock();
        let index = self.api_target(&entries, dispatcher, id)?;
        let mut next = entries.clone();
        let entry = next.remove(index);
        self.save(&next)?;
        dispatcher.remove_sink(entry.sink_id);
        *entries = next;
        info!(webhook = %entry.id, url = %redact::url(&entry.config.url), "webhook deleted over the admin API");
        Ok(json!({ "id": entry.id, "deleted": true }))
    }

    /// `POST /api/webhooks/{id}/secret`: a new secret (given, or generated); the current one
    /// keeps signing beside it for `rotation_grace`. Rotating again within the grace retires the
    /// oldest secret at once: at most two secrets sign.
    pub fn rotate(&self, dispatcher: &Dispatcher, id: &str, body: &[u8]) -> Result<Value> {
        let map = body_object(body, true)?;
        let fields = parse_fields(&map, ROTATE_KEYS).map_err(bad_request)?;
        let mut entries = self.lock();
        let index = self.api_target(&entries, dispatcher, id)?;
        let mut entry = entries[index].clone();
        let secret = match fields.secret {
            Some(secret) => secret,
            None => generate_secret("whsec_")?,
        };
        let previous = entry.config.secret.replace(secret.clone());
        if previous.as_ref().is_some_and(|p| p.key() == secret.key()) {
            return Err(bad_request("key 'secret': is the current secret; a rotation needs a new one".to_owned()));
        }
        let now = now_ms();
        entry.rotation = match previous {
            Some(previous) if !self.rotation_grace.is_zero() => {
                Some(Rotation { previous, until_ms: now.saturating_add(duration_ms(self.rotation_grace)) })
            }
            _ => None,
        };
        entry.updated_ms = now;
        let mut next = entries.clone();
        next[index] = entry.clone();
        self.save(&next)?;
        let sink = dispatcher
            .change_webhook(entry.sink_id, entry.config.clone(), entry.previous_secret())
            .ok_or_else(|| vanished(id))?;
        info!(webhook = %entry.id, grace = ?self.rotation_grace, "webhook secret rotated over the admin API");
        let mut out = view(&entry.id, "api", &entry.config, &sink, Some(&entry));
        reveal_secret(&mut out, &entry.config);
        entries[index] = entry;
        Ok(out)
    }

    /// Ends the rotations whose grace has passed: the previous secret stops signing. Cheap when
    /// there is nothing to do; called on every API request and by a periodic sweep.
    pub fn sweep(&self, dispatcher: &Dispatcher, now_ms: u64) {
        let mut entries = self.lock();
        let mut ended = false;
        for entry in entries.iter_mut() {
            if entry.rotation.as_ref().is_some_and(|r| r.until_ms <= now_ms) {
                entry.rotation = None;
                ended = true;
                dispatcher.change_webhook(entry.sink_id, entry.config.clone(), None);
                info!(webhook = %entry.id, "secret rotation over: the previous secret no longer signs");
            }
        }
        if ended {
            // Retired secrets should not linger on disk. Failing here loses nothing: on load an
            // expired previous secret is ignored.
            if let Err(e) = store::write(&self.state_dir, &state_file(&entries)) {
                warn!(file = %store::path(&self.state_dir).display(), error = %e, "cannot save webhooks after a rotation ended");
            }
        }
    }

    /// Re-creates the webhooks saved in `state_dir`; see [`super::ApiState::load_persisted`].
    pub fn load(&self, dispatcher: &Dispatcher) -> std::result::Result<usize, ApiError> {
        let path = store::path(&self.state_dir);
        let parsed = store::read(&self.state_dir).and_then(|file| match file {
            None => Ok(Vec::new()),
            Some(file) => restore_entries(file, now_ms()),
        });
        let restored = match parsed {
            Ok(restored) => restored,
            Err(reason) => {
                let reason = match store::set_aside(&self.state_dir, now_ms()) {
                    Ok(moved) => {
                        format!("{reason}; moved to {} and starting without API webhooks", moved.display())
                    }
                    Err(e) => {
                        format!("{reason}; cannot move it aside ({e}): it will be overwritten by the next change")
                    }
                };
                return Err(ApiError::State { path, reason });
            }
        };
        let mut entries = self.lock();
        for mut entry in restored {
            let sink = dispatcher.add_webhook(entry.config.clone(), SinkOrigin::Api);
            entry.sink_id = sink.id;
            if let Some(previous) = entry.previous_secret() {
                dispatcher.change_webhook(entry.sink_id, entry.config.clone(), Some(previous));
            }
            entries.push(entry);
        }
        if entries.len() > self.max_webhooks {
            // Kept, not dropped: the operator lowered the limit, which must not delete anything.
            warn!(
                count = entries.len(),
                api_max_webhooks = self.max_webhooks,
                "more API webhooks restored than api_max_webhooks allows; creating more is refused until some are deleted"
            );
        }
        Ok(entries.len())
    }

    /// An id that names an API webhook (config-file ones: 409).
    fn api_target(&self, entries: &[Entry], dispatcher: &Dispatcher, id: &str) -> Result<usize> {
        match resolve(entries, dispatcher, id)? {
            Target::Api(index) => Ok(index),
            Target::Config(_) => Err(Response::error(
                409,
                format!(
                    "webhook {id} is defined in the config file and is read-only here; change it there and restart"
                ),
            )),
        }
    }

    fn save(&self, entries: &[Entry]) -> Result<()> {
        store::write(&self.state_dir, &state_file(entries)).map_err(|e| {
            let path = store::path(&self.state_dir);
            error!(file = %path.display(), error = %e, "cannot save webhooks");
            Response::error(500, format!("cannot save webhooks to {}: {e}; nothing was changed", path.display()))
        })
    }
}

fn state_file(entries: &[Entry]) -> StateFile {
    StateFile { version: store::VERSION, webhooks: entries.iter().map(Entry::stored).collect() }
}

/// Validates a loaded file's webhooks as API requests are validated; all or nothing.
fn restore_entries(file: StateFile, now: u64) -> std::result::Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::with_capacity(file.webhooks.len());
    for (i, stored) in file.webhooks.into_iter().enumerate() {
        let entry = restore_entry(&stored, now).map_err(|e| format!("webhook {i} ({}): {e}", stored.id))?;
        if entries.iter().any(|e| e.id == entry.id) {
            return Err(format!("webhook {i}: id {} appears twice", entry.id));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn restore_entry(stored: &StoredWebhook, now: u64) -> std::result::Result<Entry, String> {
    if !is_api_id(&stored.id) {
        return Err(format!("invalid id '{}'", stored.id.escape_debug()));
    }
    let mut map = Map::new();
    map.insert("url".into(), json!(stored.url));
    map.insert("events".into(), json!(stored.events));
    map.insert("headers".into(), json!(stored.headers));
    map.insert("format".into(), json!(stored.format));
    map.insert("signature".into(), json!(stored.signature));
    if stored.signature_header != DEFAULT_SIGNATURE_HEADER {
        map.insert("signature_header".into(), json!(stored.signature_header));
    }
    map.insert("secret".into(), json!(stored.secret));
    map.insert("retries".into(), json!(stored.retries));
    let fields = parse_fields(&map, WEBHOOK_KEYS)?;
    let mut config = WebhookConfig::new(String::new(), EventFilter::All);
    apply(&fields, &mut config)?;
    config.id = Some(stored.id.clone());
    let rotation = match (&stored.previous_secret, stored.previous_secret_expires_at_ms) {
        (Some(previous), Some(until_ms)) if until_ms > now => {
            let previous = Secret::parse(previous).map_err(|e| format!("key 'previous_secret': {e}"))?;
            Some(Rotation { previous, until_ms })
        }
        _ => None,
    };
    Ok(Entry {
        id: stored.id.clone(),
        sink_id: 0,
        config,
        created_ms: stored.created_at_ms,
        updated_ms: stored.updated_at_ms,
        rotation,
    })
}

fn resolve(entries: &[Entry], dispatcher: &Dispatcher, id: &str) -> Result<Target> {
    if is_api_id(id) {
        return entries.iter().position(|e| e.id == id).map(Target::Api).ok_or_else(|| not_found(id));
    }
    let sink_id = id.strip_prefix(CONFIG_ID_PREFIX).and_then(|n| n.parse::<u64>().ok());
    match sink_id.and_then(|n| dispatcher.sink(n)) {
        Some(sink) if sink.origin == SinkOrigin::Config && sink.webhook.is_some() => Ok(Target::Config(sink)),
        _ => Err(not_found(id)),
    }
}

/// `wh_` and 16 lowercase hex digits.
fn is_api_id(id: &str) -> bool {
    id.strip_prefix(API_ID_PREFIX)
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The id under which a config-file sink is shown.
pub fn config_id(sink_id: u64) -> String {
    format!("{CONFIG_ID_PREFIX}{sink_id}")
}

fn not_found(id: &str) -> Response {
    Response::error(404, format!("no webhook '{}'", id.escape_debug()))
}

/// The registry knows the webhook but the dispatcher does not: only possible if something
/// other than this API removed the sink.
fn vanished(id: &str) -> Response {
    Response::error(500, format!("webhook {id} is no longer known to the dispatcher"))
}

fn bad_request(message: String) -> Response {
    Response::error(400, message)
}

/// The request body as a JSON object; an empty body is `{}` when `empty_ok`.
fn body_object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(Map::new())
        } else {
            Err(bad_request("the request body must be a JSON object".to_owned()))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(bad_request(format!("the request body must be a JSON object, got {}", type_name(&other)))),
        Err(e) => Err(bad_request(format!("invalid JSON: {e}"))),
    }
}

/// What a request body sets, each key checked as `[[webhook]]` checks it, in the order of
/// `allowed` (a subset of [`WEBHOOK_KEYS`]).
fn parse_fields(map: &Map<String, Value>, allowed: &[&str]) -> std::result::Result<WebhookFields, String> {
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown key '{}' (expected one of: {})", unknown.escape_debug(), allowed.join(", ")));
    }
    let mut fields = WebhookFields::default();
    for &key in allowed {
        let Some(value) = map.get(key) else { continue };
        let at = |message: String| format!("key '{key}': {message}");
        match key {
            "url" => fields.url = Some(parse_url(string(value).map_err(at)?).map_err(at)?),
            "events" => fields.events = Some(events(value)?),
            "headers" => fields.headers = Some(headers(value)?),
            "format" => fields.format = Some(nullable(value, |s| s.parse()).map_err(at)?.unwrap_or_default()),
            "signature" => {
                fields.signature = Some(nullable(value, |s| s.parse()).map_err(at)?.unwrap_or_default());
            }
            "signature_header" => fields.signature_header = Some(nullable(value, parse_header_name).map_err(at)?),
            "secret" => fields.secret = nullable(value, Secret::parse).map_err(at)?,
            "retries" => fields.retries = Some(retries(value).map_err(at)?),
            _ => {}
        }
    }
    Ok(fields)
}

/// Applies `fields` over `config` with the cross-key rules of `[[webhook]]`.
fn apply(fields: &WebhookFields, config: &mut WebhookConfig) -> std::result::Result<(), String> {
    fields.apply(config).map_err(|CrossKeyError { key, message }| format!("key '{key}': {message}"))
}

/// An array of strings run through a list validator, naming the element or the array.
fn list<T>(
    key: &str,
    value: &Value,
    validate: impl FnOnce(&[&str]) -> std::result::Result<T, ValueError>,
) -> std::result::Result<T, String> {
    let Value::Array(items) = value else {
        return Err(format!("key '{key}': expected an array, got {}", type_name(value)));
    };
    let texts = items
        .iter()
        .enumerate()
        .map(|(i, item)| string(item).map_err(|e| format!("key '{key}[{i}]': {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    validate(&texts).map_err(|ValueError { element, message }| match element {
        Some(i) => format!("key '{key}[{i}]': {message}"),
        None => format!("key '{key}': {message}"),
    })
}

/// `events`: a list of event names or `"*"`; `null` means every event (as omitting it does).
fn events(value: &Value) -> std::result::Result<EventFilter, String> {
    if value.is_null() {
        return Ok(EventFilter::All);
    }
    list("events", value, parse_events)
}

/// `headers`: a list of `"Name: value"`; `null` means none.
fn headers(value: &Value) -> std::result::Result<Vec<Header>, String> {
    match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => check_header_count(items.len()).map_err(|e| format!("key 'headers': {e}"))?,
        _ => {}
    }
    list("headers", value, parse_headers)
}

fn retries(value: &Value) -> std::result::Result<u32, String> {
    match value {
        Value::Null => Ok(WebhookConfig::new(String::new(), EventFilter::All).retries),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(v), _) => check_retries(i128::from(v)),
            (None, Some(v)) => check_retries(i128::from(v)),
            (None, None) => Err("expected an integer, got a float".to_owned()),
        },
        other => Err(format!("expected an integer, got {}", type_name(other))),
    }
}

fn string(value: &Value) -> std::result::Result<&str, String> {
    value.as_str().ok_or_else(|| format!("expected a string, got {}", type_name(value)))
}

/// A string run through `parse`, or `None` for `null`.
fn nullable<T>(
    value: &Value,
    parse: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> std::result::Result<Option<T>, String> {
    if value.is_null() { Ok(None) } else { parse(string(value)?).map(Some) }
}

/// Named as the config file's type errors name TOML types.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn events_json(filter: &EventFilter) -> Vec<String> {
    match filter {
        EventFilter::All => vec!["*".to_owned()],
        EventFilter::Only(list) => list.iter().map(|e| e.as_str().to_owned()).collect(),
    }
}

fn header_text(header: &Header) -> String {
    format!("{}: {}", header.name, header.value)
}

/// What a GET shows of a secret: its last four characters, enough to tell which one is
/// configured, useless for forging a signature.
fn secret_hint(secret: &Secret) -> String {
    let text = secret.as_str();
    let tail: String = text.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// The JSON of a webhook, secret masked, and so are the URL's password and query values and the
/// header values (`redact`): an API answer is as public as a log line.
fn view(id: &str, origin: &str, config: &WebhookConfig, sink: &Sink, entry: Option<&Entry>) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &sink.stats;
    let rotation = entry.and_then(|e| e.rotation.as_ref()).map(|r| {
        json!({
            "previous_secret_hint": secret_hint(&r.previous),
            "expires_at": rfc3339(r.until_ms),
        })
    });
    json!({
        "id": id,
        "origin": origin,
        "url": redact::url(&config.url),
        "events": events_json(&config.events),
        "headers": config.headers.iter().map(|h| redact::header(&h.name)).collect::<Vec<_>>(),
        "format": config.format.as_str(),
        "signature": config.signature.as_str(),
        "signature_header": config.signature_header,
        "retries": config.retries,
        "signed": config.secret.is_some(),
        "secret_hint": config.secret.as_ref().map(secret_hint),
        "rotation": rotation,
        "created_at": entry.map(|e| rfc3339(e.created_ms)),
        "updated_at": entry.map(|e| rfc3339(e.updated_ms)),
        "disabled": stats.disabled.load(Relaxed),
        // Its outbox in `GET /api/outbox` and `/metrics`.
        "outbox_id": sink.outbox_key,
        "stats": {
            "delivered": stats.delivered.load(Relaxed),
            "failed": stats.failed.load(Relaxed),
            "retried": stats.retried.load(Relaxed),
            "dropped": stats.dropped.load(Relaxed),
            "in_flight": stats.in_flight.load(Relaxed),
            "queued": stats.queued.load(Relaxed),
        },
    })
}

/// Adds the secret itself: only the create and rotate responses show it.
fn reveal_secret(view: &mut Value, config: &WebhookConfig) {
    if let (Value::Object(map), Some(secret)) = (view, &config.secret) {
        map.insert("secret".into(), json!(secret.as_str()));
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        error!(error = %e, "the system random source failed");
        Response::error(500, format!("cannot generate random bytes: {e}"))
    })?;
    Ok(bytes)
}

/// `whsec_` and the base64 of 32 random bytes (the Standard Webhooks form).
/// A new secret: `prefix` (`whsec_`, or none for Dolby's receivers) + base64 of random bytes.
fn generate_secret(prefix: &str) -> Result<Secret> {
    let text = format!("{prefix}{}", BASE64.encode(random::<GENERATED_SECRET_BYTES>()?));
    Secret::parse(&text).map_err(|e| Response::error(500, format!("generated secret refused: {e}")))
}

fn generate_id() -> Result<String> {
    let bytes = random::<8>()?;
    Ok(format!("{API_ID_PREFIX}{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
