//! A sink's stable name: what its outbox directory is called, so that the events an earlier run
//! left are found again by the same sink after a restart or a config edit.
//!
//! - A `[[webhook]]` with `id = "..."`: that id.
//! - A `[[webhook]]` without one: `url-` and 16 hex digits of SHA-256 over its URL and its
//!   events, so that reordering the config file keeps each webhook's outbox, and changing where
//!   or what it sends starts a new one (the old one is kept and reported).
//! - An app's `[[apps.<app>.webhook]]` without one: the same, with the app's name in the hash,
//!   so it never shares an outbox with a global webhook or another app's of the same URL.
//! - A webhook made over the admin API: its API id (`wh_...`), kept in `state_dir` with it.
//! - A `[[nats]]` sink (global or an app's): its `id`, or `url-` and a hash as above over
//!   `nats`, the app, its URL, subject and events, so it never shares an outbox with a webhook.

use sha2::{Digest, Sha256};

use crate::config::{EventFilter, NatsConfig, WebhookConfig};

/// Whether `key` may name a sink (and so a directory): 1 to 64 of `A-Z a-z 0-9 _ - .`, not
/// starting with a dot.
pub fn is_valid(key: &str) -> bool {
    crate::config::is_plain_id(key)
}

/// The key of a global webhook: its `id`, or one made from its URL and events.
pub fn of_webhook(config: &WebhookConfig) -> String {
    of_webhook_in(None, config)
}

/// The key of a webhook of `app` (`None`: a global one).
pub fn of_webhook_in(app: Option<&str>, config: &WebhookConfig) -> String {
    if let Some(id) = &config.id {
        return id.clone();
    }
    hashed_key(hash_of(b"", app, &config.url), &config.events)
}

/// The key of a NATS sink of `app` (`None`: a global one).
pub fn of_nats_in(app: Option<&str>, config: &NatsConfig) -> String {
    if let Some(id) = &config.id {
        return id.clone();
    }
    let mut hash = hash_of(b"nats\n", app, &config.url);
    hash.update(config.subject.to_string().as_bytes());
    hash.update(b"\n");
    hashed_key(hash, &config.events)
}

/// A hash begun with the sink's kind (nothing for a webhook, whose keys predate the others),
/// its app and its URL.
fn hash_of(kind: &[u8], app: Option<&str>, url: &str) -> Sha256 {
    let mut hash = Sha256::new();
    hash.update(kind);
    if let Some(app) = app {
        hash.update(b"app ");
        hash.update(app.as_bytes());
        hash.update(b"\n");
    }
    hash.update(url.as_bytes());
    hash.update(b"\n");
    hash
}

/// `url-` and 16 hex digits of `hash` finished with `events` (in any order written).
fn hashed_key(mut hash: Sha256, events: &EventFilter) -> String {
    match events {
        EventFilter::All => hash.update(b"*"),
        EventFilter::Only(events) => {
            let mut names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
            names.sort_unstable();
            hash.update(names.join(",").as_bytes());
        }
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("url-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventType;

    #[test]
    fn an_apps_webhook_has_an_outbox_of_its_own() {
        let hook = WebhookConfig::new("http://127.0.0.1:9/x".into(), EventFilter::All);
        let (global, vip, live) =
            (of_webhook(&hook), of_webhook_in(Some("vip"), &hook), of_webhook_in(Some("live"), &hook));
        assert!(global != vip && vip != live && is_valid(&vip), "{global} {vip} {live}");
        let named = WebhookConfig { id: Some("mine".into()), ..hook };
        assert_eq!(of_webhook_in(Some("vip"), &named), "mine");
    }

    #[test]
    fn a_webhook_without_id_is_named_by_its_url_and_events() {
        let a = WebhookConfig::new("http://127.0.0.1:9/x".into(), EventFilter::All);
        let key = of_webhook(&a);
        assert!(key.starts_with("url-") && key.len() == 20 && is_valid(&key), "{key}");
        assert_eq!(of_webhook(&a.clone()), key, "stable");
        let other_url = WebhookConfig::new("http://127.0.0.1:9/y".into(), EventFilter::All);
        assert_ne!(of_webhook(&other_url), key);
        let one = EventFilter::Only(vec![EventType::Connect, EventType::PlayStart]);
        let same = EventFilter::Only(vec![EventType::PlayStart, EventType::Connect]);
        let b = WebhookConfig::new("http://127.0.0.1:9/x".into(), one);
        let c = WebhookConfig::new("http://127.0.0.1:9/x".into(), same);
        assert_ne!(of_webhook(&b), key);
        assert_eq!(of_webhook(&b), of_webhook(&c), "the order events are listed in does not matter");
    }

    #[test]
    fn a_nats_sink_never_shares_a_webhooks_outbox() {
        let nats = NatsConfig::new("nats://127.0.0.1:4222".into());
        let hook = WebhookConfig::new("nats://127.0.0.1:4222".into(), EventFilter::All);
        let key = of_nats_in(None, &nats);
        assert!(key.starts_with("url-") && is_valid(&key), "{key}");
        assert_ne!(key, of_webhook(&hook));
        assert_ne!(key, of_nats_in(Some("vip"), &nats));
        let other_subject = NatsConfig { subject: crate::config::SubjectTemplate::parse("x.{type}").unwrap(), ..nats };
        assert_ne!(key, of_nats_in(None, &other_subject));
        assert_eq!(of_nats_in(None, &NatsConfig { id: Some("bus".into()), ..other_subject }), "bus");
    }

    #[test]
    fn an_id_names_the_webhook() {
        let mut config = WebhookConfig::new("http://127.0.0.1:9/x".into(), EventFilter::All);
        config.id = Some("billing".into());
        assert_eq!(of_webhook(&config), "billing");
    }

    #[test]
    fn keys_are_plain_directory_names() {
        for good in ["billing", "wh_0123456789abcdef", "a.b-c_d", &"x".repeat(64)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
