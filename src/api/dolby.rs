//! `POST /api/webhooks` with Dolby.io's (Millicast's) body, so a provisioning script written for
//! `https://api.millicast.com/api/webhooks` works with only its base URL changed
//! (docs/hooks.md, "Dolby.io-style provisioning").
//!
//! Dolby's body is `{"url", "isFeedHooks", "isViewerConnectionHooks", "isRecordingHooks",
//! "isThumbnailHooks", "isTranscoderHooks"}`: one boolean per kind of hook. A body with any of
//! those flags is read here; any other body is a ringcast webhook definition. The flags become
//! a webhook in the `dolby` format, signed as Dolby signs (`X-Millicast-Signature: sha1=<hex>`,
//! keyed with the base64-decoded secret), with the events of each enabled kind:
//!
//! | flag | events (their `dolby` names) |
//! |---|---|
//! | `isFeedHooks` | publish_start, publish_stop (`feeds` `started`, `stopped`) |
//! | `isViewerConnectionHooks` | stream_unavailable, no_viewers (`viewerConnection` `viewerAttempt`, `noActiveViewers`) |
//!
//! Dolby's viewer connection hooks tell only of a viewer arriving at a stream nobody publishes
//! and of the last viewer leaving; a play start (to a stream not live) and a play stop (of the
//! last player) are what raise them here. Recording, thumbnail and transcoder hooks are things
//! ringcast does not do: those flags are accepted and listed as `unsupported` in the answer,
//! never an error, so a script that asks for everything still provisions what can be had.
//!
//! The answer has Dolby's shape, `{"status": "success", "data": {"id", "url", "secret", "is...":
//! bool}}` with status 200, where `is...` says what this webhook will really send.

use serde_json::{Map, Value, json};

use crate::config::{EventFilter, EventType, Secret, Signature, WebhookConfig, WebhookFormat, parse_url};
use crate::redact;

/// Dolby's header for its `sha1=<hex>` signature.
pub const SIGNATURE_HEADER: &str = "X-Millicast-Signature";

/// The kinds of hook a Dolby body can ask for, and the events each is here (empty: not done).
const KINDS: [(&str, &[EventType]); 5] = [
    ("isFeedHooks", &[EventType::PublishStart, EventType::PublishStop]),
    ("isViewerConnectionHooks", &[EventType::StreamUnavailable, EventType::NoViewers]),
    ("isRecordingHooks", &[]),
    ("isThumbnailHooks", &[]),
    ("isTranscoderHooks", &[]),
];

/// Whether `body` is Dolby's form of a webhook (it names one of Dolby's flags).
pub fn is_dolby_body(body: &Map<String, Value>) -> bool {
    KINDS.iter().any(|(flag, _)| body.contains_key(*flag))
}

/// A Dolby-style request, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DolbyRequest {
    pub url: String,
    /// Per entry of `KINDS`: whether the body asked for it.
    enabled: [bool; KINDS.len()],
}

impl DolbyRequest {
    /// Reads Dolby's body: `url` (required) and the flags (booleans; missing or `null` is
    /// false, as Dolby defaults them). The message names the key at fault.
    pub fn parse(body: &Map<String, Value>) -> Result<DolbyRequest, String> {
        if let Some(unknown) = body.keys().find(|k| *k != "url" && !KINDS.iter().any(|(flag, _)| flag == k)) {
            let keys: Vec<&str> = std::iter::once("url").chain(KINDS.iter().map(|(flag, _)| *flag)).collect();
            return Err(format!(
                "unknown key '{}' in a Dolby.io-style body (expected one of: {})",
                unknown.escape_debug(),
                keys.join(", ")
            ));
        }
        let url = match body.get("url") {
            Some(Value::String(url)) => parse_url(url).map_err(|e| format!("key 'url': {e}"))?,
            Some(_) => return Err("key 'url': expected a string".to_owned()),
            None => return Err("missing required key 'url'".to_owned()),
        };
        let mut enabled = [false; KINDS.len()];
        for (slot, (flag, _)) in enabled.iter_mut().zip(KINDS) {
            *slot = match body.get(flag) {
                None | Some(Value::Null) => false,
                Some(Value::Bool(on)) => *on,
                Some(_) => return Err(format!("key '{flag}': expected true or false")),
            };
        }
        let request = DolbyRequest { url, enabled };
        if request.events().is_empty() {
            return Err(
                "no hook kind ringcast sends is enabled: set isFeedHooks or isViewerConnectionHooks (recording, \
                 thumbnail and transcoder hooks are not done by ringcast)"
                    .to_owned(),
            );
        }
        Ok(request)
    }

    /// The events the enabled kinds send.
    pub fn events(&self) -> Vec<EventType> {
        self.kinds().flat_map(|(_, events)| events.iter().copied()).collect()
    }

    /// The flags asked for that ringcast does not do.
    pub fn unsupported(&self) -> Vec<&'static str> {
        self.kinds().filter(|(_, events)| events.is_empty()).map(|(flag, _)| flag).collect()
    }

    fn kinds(&self) -> impl Iterator<Item = (&'static str, &'static [EventType])> + '_ {
        KINDS.into_iter().zip(self.enabled).filter(|(_, on)| *on).map(|(kind, _)| kind)
    }

    /// The webhook: `dolby` format, Dolby's signature and header, signed with `secret`.
    pub fn config(&self, secret: Secret) -> WebhookConfig {
        let mut config = WebhookConfig::new(self.url.clone(), EventFilter::Only(self.events()));
        config.format = WebhookFormat::Dolby;
        config.secret = Some(secret);
        config.signature = Signature::Sha1;
        config.signature_header = SIGNATURE_HEADER.to_owned();
        config
    }

    /// Dolby's answer for the webhook created as `id`.
    pub fn answer(&self, id: &str, secret: &Secret) -> Value {
        let mut data = Map::new();
        data.insert("id".into(), json!(id));
        data.insert("url".into(), json!(redact::url(&self.url)));
        data.insert("secret".into(), json!(secret.as_str()));
        for (flag, events) in KINDS {
            let sends = !events.is_empty() && self.kinds().any(|(enabled, _)| enabled == flag);
            data.insert(flag.into(), json!(sends));
        }
        data.insert("unsupported".into(), json!(self.unsupported()));
        data.insert("events".into(), json!(self.events().iter().map(|e| e.as_str()).collect::<Vec<_>>()));
        json!({ "status": "success", "data": data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn flags_map_to_event_sets_and_unsupported_ones_are_reported() {
        let map = body(json!({
            "url": "https://hooks.example.com/dolby",
            "isFeedHooks": true,
            "isViewerConnectionHooks": true,
            "isRecordingHooks": true,
            "isThumbnailHooks": false,
        }));
        assert!(is_dolby_body(&map));
        let request = DolbyRequest::parse(&map).unwrap();
        assert_eq!(request.events(), EventType::DOLBY);
        assert_eq!(request.unsupported(), ["isRecordingHooks"]);
        let secret = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let config = request.config(secret.clone());
        assert_eq!((config.format, config.signature), (WebhookFormat::Dolby, Signature::Sha1));
        assert_eq!(config.signature_header, "X-Millicast-Signature");
        let answer = request.answer("wh_1", &secret);
        assert_eq!(answer["status"], "success");
        let data = &answer["data"];
        assert_eq!((data["id"].as_str(), data["secret"].as_str()), (Some("wh_1"), Some(secret.as_str())));
        assert_eq!((data["isFeedHooks"].as_bool(), data["isRecordingHooks"].as_bool()), (Some(true), Some(false)));
        assert_eq!(data["unsupported"], json!(["isRecordingHooks"]));
    }

    #[test]
    fn feed_hooks_alone_send_feed_events_only() {
        let request = DolbyRequest::parse(&body(json!({"url": "http://127.0.0.1:9/x", "isFeedHooks": true}))).unwrap();
        assert_eq!(request.events(), [EventType::PublishStart, EventType::PublishStop]);
        assert!(request.unsupported().is_empty());
    }

    #[test]
    fn bad_bodies_name_the_key() {
        let cases = [
            (json!({"isFeedHooks": true}), "missing required key 'url'"),
            (json!({"url": "http://h/x", "isFeedHooks": "yes"}), "key 'isFeedHooks'"),
            (json!({"url": "http://h/x", "isFeedHooks": true, "events": []}), "unknown key 'events'"),
            (json!({"url": "http://h/x", "isRecordingHooks": true}), "no hook kind ringcast sends"),
            (json!({"url": "ftp://h/x", "isFeedHooks": true}), "key 'url'"),
        ];
        for (value, expected) in cases {
            let error = DolbyRequest::parse(&body(value.clone())).unwrap_err();
            assert!(error.contains(expected), "{value}: {error}");
        }
        assert!(!is_dolby_body(&body(json!({"url": "http://h/x", "format": "dolby"}))));
    }
}
