//! A webhook definition checked key by key, wherever it comes from: a `[[webhook]]` table of
//! the config file, a request body of the admin API, or the API's state file.
//!
//! Each source reads its own syntax (TOML values and their lines; JSON, where `null` means "the
//! default") and blames a key its own way (`config FILE:LINE: key 'webhook[0].url': ...`,
//! `key 'url': ...`). What a key may hold and the rules across keys are written here once, so
//! the API accepts exactly what the config file accepts, with the same one-line messages.

use super::hooks::{DEFAULT_SIGNATURE_HEADER, EventFilter, EventType, Header, MAX_HEADERS, Secret, Signature};
use super::hooks::{WebhookConfig, WebhookFormat, check_headers, parse_event};
use super::{check_range, limits};

/// The keys of a webhook definition, in the order they are checked.
pub const WEBHOOK_KEYS: &[&str] =
    &["url", "events", "headers", "format", "secret", "signature", "signature_header", "retries"];

/// What a definition sets, each key valid on its own. `None`: the key is absent.
#[derive(Debug, Default)]
pub struct WebhookFields {
    pub url: Option<String>,
    pub events: Option<EventFilter>,
    pub headers: Option<Vec<Header>>,
    pub format: Option<WebhookFormat>,
    pub secret: Option<Secret>,
    pub signature: Option<Signature>,
    /// `Some(None)`: back to the default name (the API's `null`).
    pub signature_header: Option<Option<String>>,
    pub retries: Option<u32>,
}

/// A value refused, and which part of it to blame.
#[derive(Debug, PartialEq, Eq)]
pub struct ValueError {
    /// The element of a list at fault; `None` blames the value as a whole.
    pub element: Option<usize>,
    pub message: String,
}

impl ValueError {
    fn whole(message: String) -> ValueError {
        ValueError { element: None, message }
    }

    fn element(index: usize, message: String) -> ValueError {
        ValueError { element: Some(index), message }
    }
}

/// A rule across keys broken: the key to blame (one of [`WEBHOOK_KEYS`]) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct CrossKeyError {
    pub key: &'static str,
    pub message: String,
}

impl WebhookFields {
    /// Applies the keys given over `config`, then checks the rules across keys on the result
    /// (so a change is checked against what it leaves, not just against itself).
    pub fn apply(&self, config: &mut WebhookConfig) -> Result<(), CrossKeyError> {
        let refuse = |key, message: &str| Err(CrossKeyError { key, message: message.to_owned() });
        if let Some(url) = &self.url {
            config.url = url.clone();
        }
        if let Some(events) = &self.events {
            config.events = events.clone();
        }
        if let Some(headers) = &self.headers {
            config.headers = headers.clone();
        }
        if let Some(format) = self.format {
            config.format = format;
        }
        if let Some(secret) = &self.secret {
            config.secret = Some(secret.clone());
        }
        if let Some(retries) = self.retries {
            config.retries = retries;
        }
        if let Some(signature) = self.signature {
            if config.secret.is_none() {
                return refuse("signature", "has no effect without 'secret'");
            }
            config.signature = signature;
        }
        match (&self.signature_header, config.signature) {
            (Some(Some(_)), _) if config.secret.is_none() => {
                return refuse("signature_header", "has no effect without 'secret'");
            }
            (Some(Some(_)), Signature::Standard) => {
                return refuse(
                    "signature_header",
                    "applies to signature \"sha256\" or \"sha1\" only (\"standard\" uses the webhook-* headers)",
                );
            }
            (Some(Some(name)), _) => config.signature_header = name.clone(),
            // `standard` never uses it: back to the default, so a later switch to sha256/sha1
            // does not revive a name set long ago.
            (Some(None), _) | (None, Signature::Standard) => {
                config.signature_header = DEFAULT_SIGNATURE_HEADER.to_owned();
            }
            (None, _) => {}
        }
        if let (WebhookFormat::Dolby, EventFilter::Only(list)) = (config.format, &config.events)
            && let Some(event) = list.iter().find(|e| !EventType::DOLBY.contains(e))
        {
            let sendable: Vec<&str> = EventType::DOLBY.iter().map(|e| e.as_str()).collect();
            return Err(CrossKeyError {
                key: "events",
                message: format!("format \"dolby\" cannot express '{event}' (it sends only {})", sendable.join(", ")),
            });
        }
        Ok(())
    }
}

/// `events`: event names or `"*"`; a bad name is blamed on its element, an empty list on the
/// whole.
pub fn parse_events(names: &[&str]) -> Result<EventFilter, ValueError> {
    for (index, &name) in names.iter().enumerate() {
        if name != "*" {
            parse_event(name).map_err(|message| ValueError::element(index, message))?;
        }
    }
    EventFilter::parse_list(names.iter().copied()).map_err(ValueError::whole)
}

/// How many `headers` a list may hold, checked before any is read: a list of 10,000 is refused
/// without building it.
pub fn check_header_count(count: usize) -> Result<(), String> {
    if count > MAX_HEADERS {
        return Err(format!("at most {MAX_HEADERS} headers, got {count}"));
    }
    Ok(())
}

/// `headers`: `"Name: value"` texts, each valid, together within the bounds of
/// [`check_headers`].
pub fn parse_headers(texts: &[&str]) -> Result<Vec<Header>, ValueError> {
    let headers = texts
        .iter()
        .enumerate()
        .map(|(index, &text)| Header::parse(text).map_err(|message| ValueError::element(index, message)))
        .collect::<Result<Vec<_>, _>>()?;
    check_headers(&headers).map_err(ValueError::whole)?;
    Ok(headers)
}

/// Whether `id` may name a webhook's outbox (a directory): 1 to 64 of `A-Z a-z 0-9 _ - .`, not
/// starting with a dot.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `retries`: attempts after the first, at most 100 so a dead receiver cannot hold deliveries
/// for days.
pub fn check_retries(value: i128) -> Result<u32, String> {
    check_range(value, limits::RETRIES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    fn blamed(fields: WebhookFields) -> (&'static str, String) {
        let mut config = WebhookConfig::new("http://127.0.0.1:9/x".into(), EventFilter::All);
        let error = fields.apply(&mut config).unwrap_err();
        (error.key, error.message)
    }

    #[test]
    fn cross_key_rules_blame_one_key() {
        let (key, _) = blamed(WebhookFields { signature: Some(Signature::Sha1), ..Default::default() });
        assert_eq!(key, "signature");
        let (key, message) = blamed(WebhookFields {
            secret: Some(secret()),
            signature_header: Some(Some("X-Sig".into())),
            ..Default::default()
        });
        assert_eq!(key, "signature_header");
        assert!(message.starts_with("applies to signature"), "{message}");
        let (key, message) = blamed(WebhookFields {
            format: Some(WebhookFormat::Dolby),
            events: Some(EventFilter::Only(vec![EventType::PlayStart])),
            ..Default::default()
        });
        assert_eq!(key, "events");
        assert!(message.contains("cannot express 'play_start'"), "{message}");
    }

    #[test]
    fn a_reset_header_name_returns_to_the_default() {
        let mut config = WebhookConfig::new("http://127.0.0.1:9/x".into(), EventFilter::All);
        let sha1 = WebhookFields {
            secret: Some(secret()),
            signature: Some(Signature::Sha1),
            signature_header: Some(Some("X-Millicast-Signature".into())),
            ..Default::default()
        };
        sha1.apply(&mut config).unwrap();
        assert_eq!(config.signature_header, "X-Millicast-Signature");
        WebhookFields { signature_header: Some(None), ..Default::default() }.apply(&mut config).unwrap();
        assert_eq!(config.signature_header, DEFAULT_SIGNATURE_HEADER);
    }

    #[test]
    fn lists_blame_the_element_at_fault() {
        assert_eq!(parse_events(&["publish_start", "zzz"]).unwrap_err().element, Some(1));
        assert_eq!(parse_events(&[]).unwrap_err().element, None);
        assert_eq!(parse_headers(&["X-A: a", "no colon"]).unwrap_err().element, Some(1));
        assert!(check_header_count(MAX_HEADERS + 1).is_err());
        assert_eq!(check_retries(100), Ok(100));
        assert_eq!(check_retries(101).unwrap_err(), "must be at most 100, got 101");
    }
}
