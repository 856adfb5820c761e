//! The hook part of the configuration (docs/hooks.md, "Configuration reference"): callbacks
//! (`[notify]`), event sinks (`[[webhook]]`, `[[script]]`, `[stdio]`), and the validators of
//! single values they share with the admin API, which creates webhooks at run time and must
//! accept exactly what the config file accepts (the rules across a webhook's keys are in
//! `webhook.rs`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{quote, suggest};
use crate::redact;

choice! {
    /// An event type (docs/hooks.md, "Event types"), by its snake_case name (one name per
    /// idea: code, config, metrics and payloads all use these strings).
    pub enum EventType {
        ConnectionAccept = "connection_accept",
        HandshakeComplete = "handshake_complete",
        Connect = "connect",
        AuthFailed = "auth_failed",
        StreamCreate = "stream_create",
        StreamDelete = "stream_delete",
        PublishStart = "publish_start",
        PublishUpdate = "publish_update",
        PublishStop = "publish_stop",
        PublishResume = "publish_resume",
        PlayStart = "play_start",
        PlayUpdate = "play_update",
        PlayStop = "play_stop",
        CodecDetected = "codec_detected",
        SubscriberCount = "subscriber_count",
        StreamUnavailable = "stream_unavailable",
        NoViewers = "no_viewers",
        ConnectionClose = "connection_close",
        RelayStart = "relay_start",
        RelayStop = "relay_stop",
    }
}

impl EventType {
    /// The events the `dolby` webhook format can express (docs/hooks.md, "Formats"); the others
    /// are not sent in that format, so a dolby webhook that lists one is a mistake worth
    /// reporting.
    pub const DOLBY: &'static [EventType] =
        &[EventType::PublishStart, EventType::PublishStop, EventType::StreamUnavailable, EventType::NoViewers];
}

/// Which events a sink receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event (`events` omitted, or `"*"`).
    All,
    /// Only these, without duplicates, in the order first written.
    Only(Vec<EventType>),
}

impl EventFilter {
    /// Whether an event of this type goes to the sink.
    pub fn matches(&self, event: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(events) => events.contains(&event),
        }
    }

    /// Parses one event name or `"*"`.
    pub fn parse_one(name: &str) -> Result<Self, String> {
        if name == "*" { Ok(EventFilter::All) } else { Ok(EventFilter::Only(vec![parse_event(name)?])) }
    }

    /// Parses a list of event names; `"*"` anywhere means every event. An empty list is refused:
    /// a sink that receives nothing is a mistake (omit the list to receive every event).
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut events = Vec::new();
        let mut all = false;
        for name in names {
            if name == "*" {
                all = true;
                continue;
            }
            let event = parse_event(name)?;
            if !events.contains(&event) {
                events.push(event);
            }
        }
        match (all, events.is_empty()) {
            (true, _) => Ok(EventFilter::All),
            (false, true) => Err("must list at least one event (omit the key to receive every event)".to_owned()),
            (false, false) => Ok(EventFilter::Only(events)),
        }
    }
}

/// Parses an event name, suggesting the closest one on a typo.
pub fn parse_event(name: &str) -> Result<EventType, String> {
    name.parse::<EventType>().map_err(|_| {
        let names = EventType::ALL.iter().map(|e| e.as_str());
        match suggest(name, names) {
            Some(close) => format!("unknown event {} (did you mean '{close}'?)", quote(name)),
            None => format!(
                "unknown event {} (expected one of: {})",
                quote(name),
                EventType::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    })
}

choice! {
    /// How callbacks carry their form fields.
    #[derive(Default)]
    pub enum NotifyMethod {
        /// `application/x-www-form-urlencoded` body (nginx-rtmp's default).
        #[default]
        Post = "post",
        /// The same fields in the query string, for endpoints that read only the URL.
        Get = "get",
    }
}

choice! {
    /// Whose callback contract a callback set speaks: the request body and how the answer
    /// reads (docs/hooks.md, "Dialects").
    #[derive(Default)]
    pub enum Dialect {
        /// nginx-rtmp's form fields; 2xx allows, 3xx renames.
        #[default]
        Nginx = "nginx",
        /// SRS's `http_hooks` JSON; `0` or `{"code":0}` allows.
        Srs = "srs",
        /// MediaMTX's external authentication JSON; 2xx allows.
        Mediamtx = "mediamtx",
        /// ZLMediaKit's `on_publish`/`on_play` JSON; `{"code":0}` allows.
        Zlmediakit = "zlmediakit",
    }
}

choice! {
    /// What a callback decides when its endpoint times out or cannot be reached.
    #[derive(Default)]
    pub enum OnError {
        /// Refuse the client: an auth endpoint that is down must not open the door.
        #[default]
        Deny = "deny",
        /// Let the client in: for operators who prefer availability over enforcement.
        Allow = "allow",
    }
}

choice! {
    /// How requests are signed (docs/hooks.md, "Signing").
    #[derive(Default)]
    pub enum Signature {
        /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,...`.
        #[default]
        Standard = "standard",
        /// `X-Ringcast-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
        Sha256 = "sha256",
        /// `X-Ringcast-Signature: sha1=<hex HMAC-SHA1(key, body)>`, Dolby/Millicast compatible.
        Sha1 = "sha1",
    }
}

choice! {
    /// The body of a webhook request (docs/hooks.md, "Formats").
    #[derive(Default)]
    pub enum WebhookFormat {
        /// `{"id","type","timestamp",...,"data":{...}}`, go-rtmp style.
        #[default]
        Envelope = "envelope",
        /// The envelope with `event` for `type` and `data` merged in, OpenVidu style.
        Flat = "flat",
        /// The callback form fields with `call=<type>`, urlencoded.
        Form = "form",
        /// `{"type":"feeds"|"viewerConnection","event":...}`, Dolby.io style; only [`EventType::DOLBY`].
        Dolby = "dolby",
    }
}

choice! {
    /// The line `[stdio]` prints on stderr per event.
    #[derive(Default)]
    pub enum StdioFormat {
        /// One JSON envelope per line, for log pipelines (`jq`, Loki, Elasticsearch).
        #[default]
        Json = "json",
        /// `KEY=value` pairs, the script environment on one line.
        Env = "env",
    }
}

/// The header a `sha256`/`sha1` signature goes in unless `signature_header` renames it.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Ringcast-Signature";

/// Blocking callbacks (`[notify]`): the reply decides whether a client may connect, publish or
/// play. A callback whose URL is `None` is not made (and the action is allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Form body (`post`) or query string (`get`); default post.
    pub method: NotifyMethod,
    /// Asked when a client connects (RTMP `connect`, first RTSP request, HTTP-FLV request).
    pub on_connect: Option<String>,
    /// Asked before a publisher is admitted; the usual place to check a stream key.
    pub on_publish: Option<String>,
    /// Asked before a player is admitted.
    pub on_play: Option<String>,
    /// Told after any play or publish ends (status not checked).
    pub on_done: Option<String>,
    /// Told after a publish ends.
    pub on_publish_done: Option<String>,
    /// Told after a play ends.
    pub on_play_done: Option<String>,
    /// Told every `update_interval` while publishing or playing (`call=update_publish|update_play`).
    pub on_update: Option<String>,
    /// Asked once per publish when its media is known, before any player gets a frame
    /// (`call=media`). Not filled by `url`: it holds every publish until it answers.
    pub on_media: Option<String>,
    /// Period of `on_update`; at least 1s so a typo cannot turn it into a request flood.
    pub update_interval: Duration,
    /// `true`: a non-2xx reply to `on_update` ends the session (bintu style revocation).
    pub update_strict: bool,
    /// How long a session waits for a callback reply before `on_error` decides; bounds how long a
    /// client can be held suspended.
    pub timeout: Duration,
    /// The decision when the endpoint times out or is unreachable.
    pub on_error: OnError,
    /// Signs every callback like a webhook when set.
    pub secret: Option<Secret>,
    /// How `secret` signs.
    pub signature: Signature,
    /// Callback requests in flight at once, server-wide (split over the shards); further ones
    /// wait. A storm of players each waiting on a 50 ms endpoint needs as many in flight as
    /// the endpoint can take: 2000 x 50 ms at 10 in flight would be 10 s.
    pub max_in_flight: usize,
    /// Whose contract the callbacks speak; a property of the callback set, so every set
    /// (`[notify]` today) can talk to a different kind of endpoint.
    pub dialect: Dialect,
    /// Decisions remembered for their reply's `Cache-Control: max-age`, at most this many;
    /// 0 turns the cache off. Bounded because clients choose what the keys hold.
    pub cache_entries: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            method: NotifyMethod::Post,
            on_connect: None,
            on_publish: None,
            on_play: None,
            on_done: None,
            on_publish_done: None,
            on_play_done: None,
            on_update: None,
            on_media: None,
            update_interval: Duration::from_secs(30),
            update_strict: false,
            timeout: Duration::from_secs(5),
            on_error: OnError::Deny,
            secret: None,
            signature: Signature::Standard,
            max_in_flight: 4096,
            dialect: Dialect::Nginx,
            cache_entries: 10_000,
        }
    }
}

impl NotifyConfig {
    /// Whether any callback is configured, so callers can skip the machinery entirely.
    pub fn is_enabled(&self) -> bool {
        [
            &self.on_connect,
            &self.on_publish,
            &self.on_play,
            &self.on_done,
            &self.on_publish_done,
            &self.on_play_done,
            &self.on_update,
            &self.on_media,
        ]
        .iter()
        .any(|url| url.is_some())
    }
}

/// One `[[webhook]]` (or `--hook-webhook EVENT=URL`): events POSTed asynchronously to a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where events are POSTed.
    pub url: String,
    /// Which events are sent; [`EventFilter::All`] when `events` is omitted.
    pub events: EventFilter,
    /// Extra request headers (e.g. `Authorization`), in the order written.
    pub headers: Vec<Header>,
    /// The body format.
    pub format: WebhookFormat,
    /// Signs every request when set; unsigned otherwise.
    pub secret: Option<Secret>,
    /// How `secret` signs.
    pub signature: Signature,
    /// The header of a `sha256`/`sha1` signature (`X-Millicast-Signature` for Dolby receivers).
    pub signature_header: String,
    /// Attempts after the first on connection error, timeout, 5xx or 429 (backoff 1s, 2s, 4s...
    /// capped at 60s); at most 100 so a dead receiver cannot hold deliveries for days.
    pub retries: u32,
    /// `[[webhook]] id`, or the admin API's id: names the sink's outbox across restarts
    /// (`hooks::outbox::key`). `None`: named by its URL and events.
    pub id: Option<String>,
}

impl WebhookConfig {
    /// A webhook with the defaults of `[[webhook]]` (docs/hooks.md) for everything but the URL
    /// and events.
    pub fn new(url: String, events: EventFilter) -> Self {
        WebhookConfig {
            url,
            events,
            headers: Vec::new(),
            format: WebhookFormat::Envelope,
            secret: None,
            signature: Signature::Standard,
            signature_header: DEFAULT_SIGNATURE_HEADER.to_owned(),
            retries: 5,
            id: None,
        }
    }
}

/// One `[[script]]` (or `--hook-script EVENT=PATH`): a program run per event, with the event in
/// its environment, killed at `hook_timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptConfig {
    /// Which events run it (`event = "*"` for all).
    pub event: EventFilter,
    /// The program. Not checked for existence here: a deployment may install it after the
    /// config; the hook pool logs and counts a failing spawn.
    pub path: PathBuf,
}

/// A request header a webhook adds, from `"Name: value"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name as written (HTTP names are case-insensitive).
    pub name: String,
    /// The value, surrounding whitespace removed.
    pub value: String,
}

/// Most `headers` one webhook may add. Real receivers want one or two (an `Authorization`, a
/// tenant id); the bound keeps every delivery's request, and the admin API's input, small.
pub const MAX_HEADERS: usize = 32;
/// Most bytes of one webhook's `headers`, names and values together. Receivers commonly refuse
/// request heads over 8-16 KiB (nginx: 8 KiB per line), so more could never be delivered anyway.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Checks a webhook's header list as a whole: at most [`MAX_HEADERS`] headers of at most
/// [`MAX_HEADER_BYTES`] together.
pub fn check_headers(headers: &[Header]) -> Result<(), String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!("at most {MAX_HEADERS} headers, got {}", headers.len()));
    }
    let bytes: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(format!("at most {MAX_HEADER_BYTES} bytes of header names and values, got {bytes}"));
    }
    Ok(())
}

/// Headers ringcast itself sets to frame the request; a user copy would corrupt it.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "content-type", "transfer-encoding", "connection"];

impl Header {
    /// Parses `"Name: value"`; the name must be an HTTP token and not one ringcast sets itself,
    /// the value free of control characters (a CR or LF would inject headers). Messages never
    /// quote the value: it is usually a credential.
    pub fn parse(text: &str) -> Result<Header, String> {
        if text.len() > MAX_HEADER_BYTES {
            return Err(format!("header is {} bytes, at most {MAX_HEADER_BYTES}", text.len()));
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err("invalid header: no ':' (expected \"Name: value\")".to_owned());
        };
        let name = name.trim();
        if name.contains(char::is_whitespace) {
            // "Authorization Bearer abc:def": what stands before the ':' is part of a credential.
            return Err("invalid header name: it has a space (expected \"Name: value\")".to_owned());
        }
        let name = parse_header_name(name)?;
        let value = value.trim();
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("header {} has a control character in its value", quote(&name)));
        }
        Ok(Header { name, value: value.to_owned() })
    }
}

/// Validates a header name: an HTTP token, and not one ringcast sets itself.
pub fn parse_header_name(name: &str) -> Result<String, String> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_tchar) {
        return Err(format!("invalid header name {} (letters, digits and !#$%&'*+-.^_`|~ only)", quote(name)));
    }
    if RESERVED_HEADERS.iter().any(|reserved| name.eq_ignore_ascii_case(reserved)) {
        return Err(format!("header {} is set by ringcast and cannot be overridden", quote(name)));
    }
    Ok(name.to_owned())
}

/// A signing secret: base64, an optional `whsec_` prefix (Standard Webhooks) stripped.
///
/// `Debug` never prints it, so a logged `Config` does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

/// The shortest key accepted: HMAC with a short key is guessable, and every webhook service
/// whose signatures ringcast speaks generates at least this much (Standard Webhooks: 24 to 64
/// bytes).
const MIN_SECRET_BYTES: usize = 16;

impl Secret {
    /// Validates a secret as written in the config or sent to the admin API.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let body = text.strip_prefix("whsec_").unwrap_or(text);
        let key = decode_base64(body)
            .ok_or_else(|| "secret is not valid base64 (standard alphabet, optional whsec_ prefix)".to_owned())?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "secret is too short: {} bytes, at least {MIN_SECRET_BYTES} (base64 of {MIN_SECRET_BYTES} random bytes)",
                key.len()
            ));
        }
        Ok(Secret { text: text.to_owned(), key })
    }

    /// The secret as written, `whsec_` prefix included (what the API shows back).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The decoded key bytes the HMACs use.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Decodes standard base64 with or without `=` padding; `None` if it is not base64.
///
/// Hand-written because the crate has no base64 dependency yet; replace with the `base64` crate
/// when the signing code brings it in.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    let padding = text.len() - unpadded.len();
    if padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) || unpadded.len() % 4 == 1 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(unpadded.len() * 3 / 4);
    for group in unpadded.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for &c in group {
            acc = (acc << 6) | value(c)?;
        }
        // A final group of n < 4 chars carries n - 1 bytes in its top bits; align it to 24 bits.
        let acc = acc << (6 * (4 - group.len()));
        out.extend_from_slice(&acc.to_be_bytes()[1..group.len()]);
    }
    Some(out)
}

/// Validates a hook URL: `http://` or `https://`, a host, no whitespace or control characters
/// (which would break the request line). Messages show the URL redacted (`redact::url`): they
/// reach `--check`, logs and API answers.
pub fn parse_url(text: &str) -> Result<String, String> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &text[8..]
    } else if lower.starts_with("http://") {
        &text[7..]
    } else {
        return Err(format!("invalid URL {} (must start with http:// or https://)", quote(&redact::url(text))));
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid URL {} (spaces and control characters must be percent-encoded)",
            quote(&redact::url(text))
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("invalid URL {} (no host)", quote(&redact::url(text))));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_those_of_hooks_md() {
        let names: Vec<_> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        // The rows of the event table of docs/hooks.md, in order.
        let spec = "connection_accept handshake_complete connect auth_failed stream_create \
                    stream_delete publish_start publish_update publish_stop publish_resume play_start \
                    play_update play_stop codec_detected subscriber_count stream_unavailable \
                    no_viewers connection_close relay_start relay_stop";
        assert_eq!(names, spec.split_whitespace().collect::<Vec<_>>());
        for name in &names {
            assert_eq!(name.parse::<EventType>().unwrap().as_str(), *name);
        }
    }

    #[test]
    fn event_typos_are_suggested() {
        assert_eq!(
            parse_event("publish_strat").unwrap_err(),
            "unknown event 'publish_strat' (did you mean 'publish_start'?)"
        );
        let far = parse_event("zzz").unwrap_err();
        assert!(far.contains("expected one of: connection_accept,"), "{far}");
    }

    #[test]
    fn event_lists() {
        assert_eq!(
            EventFilter::parse_list(["publish_start", "publish_stop", "publish_start"]),
            Ok(EventFilter::Only(vec![EventType::PublishStart, EventType::PublishStop]))
        );
        assert_eq!(EventFilter::parse_list(["publish_start", "*"]), Ok(EventFilter::All));
        assert!(EventFilter::parse_list([]).unwrap_err().contains("at least one"));
        assert!(EventFilter::parse_list(["nope"]).is_err());
        assert_eq!(EventFilter::parse_one("*"), Ok(EventFilter::All));
        let only = EventFilter::parse_one("play_stop").unwrap();
        assert!(only.matches(EventType::PlayStop));
        assert!(!only.matches(EventType::PlayStart));
        assert!(EventFilter::All.matches(EventType::NoViewers));
    }

    #[test]
    fn headers() {
        assert_eq!(
            Header::parse("Authorization: Basic T1BF:x"),
            Ok(Header { name: "Authorization".into(), value: "Basic T1BF:x".into() })
        );
        assert_eq!(Header::parse("X-Empty:").unwrap().value, "");
        assert!(Header::parse("no colon").unwrap_err().contains("Name: value"));
        assert!(Header::parse(": value").unwrap_err().contains("header name"));
        assert!(Header::parse("Bad Name: v").unwrap_err().contains("header name"));
        assert!(Header::parse("X-A: a\r\nX-B: b").unwrap_err().contains("control"));
        assert!(Header::parse("content-length: 5").unwrap_err().contains("set by ringcast"));
        assert!(Header::parse("Host: x").unwrap_err().contains("set by ringcast"));
    }

    #[test]
    fn secrets() {
        // The secret of Standard Webhooks' test vectors (and docs/hooks.md's examples): 24 bytes.
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(s.key().len(), 24);
        assert_eq!(s.as_str(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap().key(), s.key());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(Secret::parse("not base64!").unwrap_err().contains("base64"));
        assert!(Secret::parse("c2hvcnQ=").unwrap_err().contains("too short"));
    }

    #[test]
    fn base64_decoding() {
        let cases: &[(&str, &[u8])] = &[
            ("", b""),
            ("Zg==", b"f"),
            ("Zg", b"f"),
            ("Zm8=", b"fo"),
            ("Zm8", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            ("+/+/", &[0xfb, 0xff, 0xbf]),
        ];
        for (text, bytes) in cases {
            assert_eq!(decode_base64(text).as_deref(), Some(*bytes), "{text}");
        }
        for bad in ["Z", "Zm9vY", "Zg=", "Zg===", "Zm9v-A==", "Zm 9v", "=Zm9"] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls() {
        for good in [
            "http://127.0.0.1:9000/on_publish",
            "https://api.example.com/events?x=1",
            "HTTPS://example.com",
            "http://user:pw@example.com/",
        ] {
            assert_eq!(parse_url(good).as_deref(), Ok(good));
        }
        assert!(parse_url("ftp://x").unwrap_err().contains("http:// or https://"));
        assert!(parse_url("example.com/x").unwrap_err().contains("http://"));
        assert!(parse_url("http://").unwrap_err().contains("no host"));
        assert!(parse_url("http:///path").unwrap_err().contains("no host"));
        assert!(parse_url("http://:80/").unwrap_err().contains("no host"));
        assert!(parse_url("http://a b/").unwrap_err().contains("spaces"));
        // Errors reach --check, logs and API answers: the URL in them is redacted.
        assert_eq!(
            parse_url("http://u:pw@a b/?key=k3y").unwrap_err(),
            "invalid URL 'http://u:***@a b/?key=***' (spaces and control characters must be percent-encoded)"
        );
        assert!(parse_url("http://a/\nb").unwrap_err().contains("control"));
    }
}
