//! Callbacks (`[notify]`, nginx-rtmp style): a form-encoded request whose reply decides
//! whether a client may connect, publish or play, or that tells an endpoint that something
//! ended or goes on.
//!
//! This file holds what every callback shares, whatever carries it: the form fields, how a
//! reply reads, signing, the `on_error` rule and the counters. Two transports carry them
//! (the session asks [`super::callback_lane::CallbackLane`], which picks):
//! - `http://` endpoints: io_uring requests on the shard that asks, over keep-alive
//!   connections, as many in flight as `max_in_flight` allows. A storm of 2000 players each
//!   waiting on a 50 ms endpoint then costs one round trip, not 2000 x 50 ms / workers.
//! - `https://` endpoints: a growing pool of blocking ureq workers
//!   ([`super::callback_pool`]), because TLS handshakes are CPU work no shard may stall on.
//!
//! Callbacks never share a queue with the event sinks, so a backlog of event deliveries
//! never delays a decision.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tracing::{debug, error};

use super::agent::USER_AGENT;
use super::callback_cache::DecisionCache;
use super::clock;
use super::event::Protocol;
use super::metrics::Histogram;
use super::reply_terms::SessionTerms;
use super::reserved::CALLBACK_FIELDS;
use super::sign;
use crate::config::{Config, DEFAULT_SIGNATURE_HEADER, NotifyConfig, NotifyMethod, OnError, RelayUrl};
use crate::redact;

/// Which callback, named as nginx-rtmp names it in the `call` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Connect,
    Publish,
    Play,
    Done,
    PublishDone,
    PlayDone,
    UpdatePublish,
    UpdatePlay,
    /// A publisher's media is known: may players have it? (docs/hooks.md, "Media admission")
    Media,
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Connect => "connect",
            Call::Publish => "publish",
            Call::Play => "play",
            Call::Done => "done",
            Call::PublishDone => "publish_done",
            Call::PlayDone => "play_done",
            Call::UpdatePublish => "update_publish",
            Call::UpdatePlay => "update_play",
            Call::Media => "media",
        }
    }
}

/// What ringcast knows of the client when it calls back.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub protocol: Option<Protocol>,
    pub addr: Option<SocketAddr>,
    pub conn_id: u64,
    pub app: String,
    /// The stream name without its query (empty for connect).
    pub name: String,
    /// The full URL the client asked for, query included.
    pub url: String,
    pub tc_url: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
    /// The client's query arguments, passed through (reserved names dropped).
    pub args: Vec<(String, String)>,
}

/// The form fields of a callback, in the order nginx-rtmp sends them, then the client's own
/// arguments minus any that would shadow a field ringcast sets.
pub fn form_fields(call: Call, client: &ClientInfo, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let protocol = client.protocol.map(Protocol::as_str).unwrap_or("rtmp");
    let addr = client.addr.map(|a| a.ip().to_string()).unwrap_or_default();
    let mut fields: Vec<(String, String)> = vec![
        ("call".into(), call.as_str().into()),
        ("protocol".into(), protocol.into()),
        ("addr".into(), addr),
        ("clientid".into(), client.conn_id.to_string()),
        ("app".into(), client.app.clone()),
        ("name".into(), client.name.clone()),
        ("url".into(), client.url.clone()),
        ("tcurl".into(), client.tc_url.clone()),
        ("flashver".into(), client.flash_ver.clone()),
        ("swfurl".into(), client.swf_url.clone()),
        ("pageurl".into(), client.page_url.clone()),
    ];
    fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let passed_through: Vec<(String, String)> = client
        .args
        .iter()
        .filter(|(k, _)| !CALLBACK_FIELDS.contains(&k.as_str()) && !fields.iter().any(|(f, _)| f == k))
        .cloned()
        .collect();
    fields.extend(passed_through);
    fields
}

/// What a callback's reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed under another stream name (a 3xx with `Location`).
    Rename(String),
    /// Allowed under the terms a JSON reply set (a rename, a time or bitrate limit).
    Limited(Box<SessionTerms>),
    Deny {
        reason: String,
    },
}

/// 2xx allows; 3xx with a Location renames to its last path segment (and a Location that is
/// a whole `rtmp://host[:port]/app/name` also names the origin a play pulls from); anything
/// else denies.
pub fn interpret(status: u16, location: Option<&str>) -> Decision {
    match status {
        200..=299 => Decision::Allow,
        300..=399 => match location.and_then(last_path_segment) {
            Some(name) => match location.and_then(redirect_origin) {
                Some(origin) => Decision::Limited(Box::new(SessionTerms {
                    name: Some(name),
                    origin: Some(origin),
                    ..SessionTerms::default()
                })),
                None => Decision::Rename(name),
            },
            None => Decision::Deny { reason: format!("callback answered {status} without a usable Location") },
        },
        _ => Decision::Deny { reason: format!("callback answered {status}") },
    }
}

/// The server a 3xx's `rtmp://` Location names, as SRS's and nginx-rtmp's redirects to
/// another server do: only a whole `rtmp://host[:port]/app/name`, so that the pull asks that
/// server for the stream the Location names. Anything else is a rename only, as it always
/// was; an `rtmp://` Location that cannot be pulled from (a query string, credentials) is
/// logged at DEBUG, not WARN: a rename to `rtmp://h/live/cam2?x=1` is documented and may come
/// with every play.
fn redirect_origin(location: &str) -> Option<RelayUrl> {
    if !location.starts_with("rtmp://") {
        return None;
    }
    match RelayUrl::parse(location) {
        Ok(origin) if origin.app.is_some() && origin.name.is_some() => Some(origin),
        // The reason would quote the Location whole, query values and all: it is redacted.
        _ => {
            debug!(location = %redact::url(location), "callback reply: a 3xx Location that is not rtmp://host[:port]/app/name (no credentials or query) names no origin; renamed only");
            None
        }
    }
}

/// `rtmp://host/app/cam2?x=1` -> `cam2`; nginx-rtmp takes the last segment the same way.
fn last_path_segment(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next().unwrap_or_default();
    let segment = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    (!segment.is_empty()).then(|| segment.to_owned())
}

/// One callback to make: which, where, and its form.
#[derive(Debug)]
pub struct CallbackRequest {
    pub call: Call,
    pub url: String,
    /// The nginx-rtmp form: the body in the `nginx` dialect, and what the decision cache keys
    /// on in every dialect.
    pub fields: Vec<(String, String)>,
    /// The JSON body of the other dialects ([`super::dialect`]); sent instead of the form.
    pub json: Option<serde_json::Value>,
}

impl CallbackRequest {
    /// What makes two requests ask the same question: the endpoint and every field but the
    /// connection id (a reconnecting client gets a new one, and must still hit the cache).
    /// So the call, the stream, the client's arguments, its credentials (`user`/`pass` and
    /// the Digest fields ride in the form) and its address are all in it.
    pub fn cache_key(&self) -> String {
        let mut key = self.url.clone();
        for (name, value) in self.fields.iter().filter(|(name, _)| name != "clientid") {
            // NUL cannot occur in a URL or an encoded field, so the parts cannot run together.
            key.push('\0');
            key.push_str(name);
            key.push('\0');
            key.push_str(value);
        }
        key
    }
}

/// A callback ready for the wire: signed, its fields in the body (POST) or the URL (GET).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reply bytes kept for the dialects that read the body (SRS, ZLMediaKit answer `{"code":0}`);
/// the rest of a longer body is read past and dropped.
pub const MAX_ANSWER_BODY: usize = 4096;

/// What an endpoint answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    /// `Cache-Control: max-age`, in seconds: how long the decision may be reused.
    pub max_age: Option<u64>,
    /// `Content-Type`: `application/json` lets a 2xx body set session terms
    /// ([`super::reply_terms`]).
    pub content_type: Option<String>,
    /// At most [`MAX_ANSWER_BODY`] bytes of the body.
    pub body: Vec<u8>,
}

/// What came back: the answer, or why nothing usable did.
pub type Outcome = Result<Answer, String>;

/// Counters of the callbacks.
#[derive(Debug, Default)]
pub struct CallbackStats {
    pub requests: AtomicU64,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    /// Timeouts, refused connections, a full queue: answered by `on_error`.
    pub errors: AtomicU64,
    /// Asked and not answered yet, waiting for a connection included.
    pub in_flight: AtomicU64,
    /// Time from a session asking to its answer, queueing included.
    pub latency: Histogram,
    /// Decisions taken from the cache, no request sent.
    pub cache_hits: AtomicU64,
    /// Decisions the cache could have held and did not: asked of the endpoint.
    pub cache_misses: AtomicU64,
}

/// The server's callback configuration and counters, shared by every shard's lane.
pub struct Callbacks {
    pub notify: NotifyConfig,
    /// Shared with the callbacks a reload replaces these with, so the counters run on.
    pub stats: Arc<CallbackStats>,
    /// Decisions whose reply said `Cache-Control: max-age`, shared by every shard: a
    /// reconnect storm lands on every shard (SO_REUSEPORT hashes each new connection), and a
    /// per-shard cache would ask the endpoint once per shard. A reload starts an empty one.
    pub cache: DecisionCache<Decision>,
    /// This server in the dialects that name it (SRS `server_id`, ZLMediaKit
    /// `mediaServerId`): fixed for the process's life, across reloads.
    pub server_id: String,
    /// Numbers the signed requests' ids (`webhook-id`), unique for the process's life.
    signed: AtomicU64,
}

impl Callbacks {
    pub fn new(notify: &NotifyConfig) -> Arc<Callbacks> {
        Callbacks::with_stats(notify, Arc::default())
    }

    fn with_stats(notify: &NotifyConfig, stats: Arc<CallbackStats>) -> Arc<Callbacks> {
        static SERVER_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        Arc::new(Callbacks {
            notify: notify.clone(),
            stats,
            cache: DecisionCache::new(notify.cache_entries),
            server_id: SERVER_ID.get_or_init(|| format!("ringcast-{:x}", clock::now_ms())).clone(),
            signed: AtomicU64::new(0),
        })
    }

    /// The configured endpoint of `call`.
    pub fn url(&self, call: Call) -> Option<&str> {
        let notify = &self.notify;
        let url = match call {
            Call::Connect => &notify.on_connect,
            Call::Publish => &notify.on_publish,
            Call::Play => &notify.on_play,
            Call::Done => &notify.on_done,
            Call::PublishDone => &notify.on_publish_done,
            Call::PlayDone => &notify.on_play_done,
            Call::UpdatePublish | Call::UpdatePlay => &notify.on_update,
            Call::Media => &notify.on_media,
        };
        url.as_deref()
    }

    /// The request for `call`, if an endpoint is configured for it.
    pub fn request(&self, call: Call, client: &ClientInfo, extra: &[(&str, String)]) -> Option<CallbackRequest> {
        let url = self.url(call)?;
        Some(CallbackRequest { call, url: url.to_owned(), fields: form_fields(call, client, extra), json: None })
    }

    /// Encodes the form and signs it like a webhook when `[notify] secret` is set; the
    /// signature covers the form (the body for POST, the query string for GET, which carries
    /// the same fields).
    pub fn prepare(&self, request: &CallbackRequest) -> Prepared {
        let encoded = match &request.json {
            Some(json) => json.to_string(),
            None => form_urlencoded::Serializer::new(String::new()).extend_pairs(&request.fields).finish(),
        };
        let mut headers = match &self.notify.secret {
            Some(secret) => {
                let id = format!("cb_{:x}_{}", clock::now_ms(), self.signed.fetch_add(1, Ordering::Relaxed));
                let now_secs = clock::now_ms() / 1000;
                sign::signature_headers(
                    self.notify.signature,
                    DEFAULT_SIGNATURE_HEADER,
                    &[secret],
                    &id,
                    now_secs,
                    encoded.as_bytes(),
                )
            }
            None => Vec::new(),
        };
        headers.push(("User-Agent".to_owned(), USER_AGENT.to_owned()));
        if request.json.is_some() {
            // Config refuses `method = "get"` with a JSON dialect: a body it must be.
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            return Prepared { method: "POST", url: request.url.clone(), headers, body: encoded.into_bytes() };
        }
        match self.notify.method {
            NotifyMethod::Post => {
                headers.push(("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned()));
                Prepared { method: "POST", url: request.url.clone(), headers, body: encoded.into_bytes() }
            }
            NotifyMethod::Get => {
                let separator = if request.url.contains('?') { '&' } else { '?' };
                Prepared {
                    method: "GET",
                    url: format!("{}{separator}{encoded}", request.url),
                    headers,
                    body: Vec::new(),
                }
            }
        }
    }

    /// Turns what came back into the decision (`read` says what an answer means, per
    /// dialect): logs, counts, and lets `on_error` decide failures.
    pub fn settle(
        &self,
        request: &CallbackRequest,
        outcome: &Outcome,
        read: impl FnOnce(&Answer) -> Decision,
        asked_at: Instant,
    ) -> Decision {
        let call = request.call;
        let decision = match outcome {
            Ok(answer) => {
                let decision = read(answer);
                let status = answer.status;
                debug!(call = call.as_str(), url = %redact::url(&request.url), status, ?decision, "callback answered");
                decision
            }
            Err(reason) => {
                // An HTTP client's error may quote the URL, `?key=` secret and all.
                let reason = redact::in_text(reason, &request.url);
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let on_error = self.notify.on_error;
                error!(call = call.as_str(), url = %redact::url(&request.url), error = %reason, %on_error, "callback failed");
                match on_error {
                    OnError::Allow => Decision::Allow,
                    OnError::Deny => Decision::Deny { reason: format!("callback failed: {reason}") },
                }
            }
        };
        match decision {
            Decision::Deny { .. } => self.stats.denied.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.allowed.fetch_add(1, Ordering::Relaxed),
        };
        self.stats.latency.record(asked_at.elapsed());
        decision
    }
}

/// The server's callbacks as they are now: SIGHUP replaces them while sessions run. A
/// session takes them once per callback (an `Arc` clone under a read lock held for no await).
#[derive(Default)]
pub struct CurrentCallbacks {
    current: RwLock<CallbackSets>,
    /// The counters every configuration in turn adds to.
    stats: Arc<CallbackStats>,
}

/// `[notify]`'s callbacks and each listed app's (docs/hooks.md, "Per-application hooks").
#[derive(Default)]
struct CallbackSets {
    global: Option<Arc<Callbacks>>,
    /// An app listed in `[apps]`, with its `[notify]` merged; `None` when the merge configures
    /// no endpoint (every callback off for that app).
    apps: HashMap<String, Option<Arc<Callbacks>>>,
}

impl CurrentCallbacks {
    /// The callbacks of `config`: `[notify]` and each app's.
    pub fn from_config(config: &Config) -> Arc<CurrentCallbacks> {
        let current = CurrentCallbacks::default();
        current.replace_all(config);
        Arc::new(current)
    }

    /// Fixed callbacks (a test's, a bench's): never replaced.
    pub fn fixed(callbacks: Option<Arc<Callbacks>>) -> Arc<CurrentCallbacks> {
        let sets = CallbackSets { global: callbacks, apps: HashMap::new() };
        Arc::new(CurrentCallbacks { current: RwLock::new(sets), stats: Arc::default() })
    }

    /// `[notify]`'s callbacks.
    pub fn get(&self) -> Option<Arc<Callbacks>> {
        self.read().global.clone()
    }

    /// The callbacks of a client of `app`: its own set when `[apps]` lists it, else `[notify]`'s.
    pub fn for_app(&self, app: &str) -> Option<Arc<Callbacks>> {
        let sets = self.read();
        match sets.apps.get(app) {
            Some(own) => own.clone(),
            None => sets.global.clone(),
        }
    }

    /// Whether any set (global or an app's) has `on_update`.
    pub fn any_on_update(&self) -> bool {
        let sets = self.read();
        sets.global.iter().chain(sets.apps.values().flatten()).any(|c| c.notify.on_update.is_some())
    }

    /// The counters every set adds to, when any set is configured.
    pub fn stats(&self) -> Option<Arc<CallbackStats>> {
        let sets = self.read();
        let any = sets.global.is_some() || sets.apps.values().any(Option::is_some);
        any.then(|| self.stats.clone())
    }

    /// From now on, `config`'s callbacks, every app's included (SIGHUP replaces the per-app
    /// sets with the global one); callbacks in flight finish under the old ones.
    pub fn replace_all(&self, config: &Config) {
        let global = self.build(&config.notify);
        let apps = config.apps.keys().map(|app| (app.clone(), self.build(&config.app_notify(app)))).collect();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = CallbackSets { global, apps };
    }

    /// Decisions held in every set's cache (`[notify]`'s and each app's).
    pub fn cache_entries(&self) -> usize {
        let sets = self.read();
        sets.global.iter().chain(sets.apps.values().flatten()).map(|c| c.cache.len()).sum()
    }

    fn build(&self, notify: &NotifyConfig) -> Option<Arc<Callbacks>> {
        notify.is_enabled().then(|| Callbacks::with_stats(notify, self.stats.clone()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CallbackSets> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interprets_replies_like_nginx_rtmp() {
        assert_eq!(interpret(200, None), Decision::Allow);
        assert_eq!(interpret(204, None), Decision::Allow);
        assert_eq!(interpret(302, Some("rtmp://host/live/cam2?x=1")), Decision::Rename("cam2".into()));
        assert_eq!(interpret(301, Some("cam3")), Decision::Rename("cam3".into()));
        // A whole rtmp://host/app/name also names the server to pull from.
        let Decision::Limited(terms) = interpret(302, Some("rtmp://origin-b:1936/live/cam2")) else { panic!() };
        let origin = terms.origin.as_ref().map(ToString::to_string);
        assert_eq!((terms.name.as_deref(), origin.as_deref()), (Some("cam2"), Some("rtmp://origin-b:1936/live/cam2")));
        assert_eq!(interpret(302, Some("rtmp://origin-b/cam2")), Decision::Rename("cam2".into()));
        assert!(matches!(interpret(302, None), Decision::Deny { .. }));
        assert!(matches!(interpret(403, None), Decision::Deny { .. }));
        assert!(matches!(interpret(500, None), Decision::Deny { .. }));
    }

    #[test]
    fn client_arguments_never_override_reserved_fields() {
        let client = ClientInfo {
            app: "live".into(),
            name: "cam1".into(),
            conn_id: 7,
            args: vec![
                ("call".into(), "play".into()),
                ("name".into(), "other".into()),
                ("addr".into(), "1.2.3.4".into()),
                ("token".into(), "abc".into()),
                ("type".into(), "record".into()),
            ],
            ..ClientInfo::default()
        };
        let fields = form_fields(Call::Publish, &client, &[("type", "live".into())]);
        let get = |k: &str| fields.iter().filter(|(f, _)| f == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("call"), ["publish"]);
        assert_eq!(get("name"), ["cam1"]);
        assert_eq!(get("addr"), [""]);
        assert_eq!(get("type"), ["live"]);
        assert_eq!(get("token"), ["abc"]);
        assert_eq!(get("clientid"), ["7"]);
    }
}
