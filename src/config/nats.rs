//! `[[nats]]` (and `[[apps.<app>.nats]]`): an event sink that publishes to NATS JetStream
//! (docs/hooks.md, "NATS JetStream"). What each key may hold is checked here; `file.rs` reads
//! the table and blames the key.
//!
//! The subject is a template of literal tokens and placeholders (`{type}`, `{app}`, `{name}`),
//! parsed once here into [`SubjectTemplate`]; the sink fills it per event, mapping what a
//! client named onto a valid token (`hooks::nats`).

use std::fmt;

use super::hooks::EventFilter;
use super::quote;
use crate::redact;

/// The keys of a `[[nats]]` table, in the order they are read.
pub const NATS_KEYS: &[&str] = &["id", "url", "user", "password", "token", "subject", "events", "stream", "retries"];

/// The subject when `subject` is omitted.
pub const DEFAULT_SUBJECT: &str = "ringcast.{type}.{app}.{name}";

/// Attempts after the first when `retries` is omitted (as `[[webhook]]`).
pub const DEFAULT_RETRIES: u32 = 5;

/// One `[[nats]]` sink.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Names the sink's outbox across restarts (`hooks::outbox::key`); `None`: named by its
    /// URL, subject and events.
    pub id: Option<String>,
    /// One server, or several separated by commas (`nats://` or `tls://`); may carry
    /// `user:password@` or `token@`, so it is printed only through `redact::url`.
    pub url: String,
    /// `user` and `password`, given together; over credentials in the URL.
    pub user: Option<(String, String)>,
    /// `token`; over one in the URL.
    pub token: Option<String>,
    pub subject: SubjectTemplate,
    pub events: EventFilter,
    /// The JetStream stream made at connect when missing, capturing the subject's pattern;
    /// `None`: the operator made one that captures the subjects.
    pub stream: Option<String>,
    /// Attempts after the first; with an outbox, what follows them is its endless retry.
    pub retries: u32,
}

impl NatsConfig {
    /// A sink with the defaults for everything but the URL.
    pub fn new(url: String) -> NatsConfig {
        NatsConfig {
            id: None,
            url,
            user: None,
            token: None,
            subject: SubjectTemplate::default(),
            events: EventFilter::All,
            stream: None,
            retries: DEFAULT_RETRIES,
        }
    }

    /// `url` as logs, metrics and errors may show it: each server's credentials masked
    /// (`redact::url` alone would miss those of the servers after the first).
    pub fn redacted_url(&self) -> String {
        self.url.split(',').map(redact::url).collect::<Vec<_>>().join(",")
    }
}

// Credentials never reach a log line or an error through `{:?}`.
impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("id", &self.id)
            .field("url", &self.redacted_url())
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("token", &self.token.as_ref().map(|_| redact::MASK))
            .field("subject", &self.subject.to_string())
            .field("events", &self.events)
            .field("stream", &self.stream)
            .field("retries", &self.retries)
            .finish()
    }
}

/// A piece of a subject template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectPart {
    /// Written as is: checked to be valid subject text.
    Literal(String),
    /// The event type's name (`publish_start`).
    Type,
    /// The event's application.
    App,
    /// The stream's name (after `app/`).
    Name,
}

/// A subject with placeholders, parsed from `subject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectTemplate {
    parts: Vec<SubjectPart>,
}

impl SubjectTemplate {
    pub fn parts(&self) -> &[SubjectPart] {
        &self.parts
    }

    /// The subject pattern every subject of this template matches: each token holding a
    /// placeholder becomes `*` (a filled placeholder never holds a `.`, so it stays one token).
    pub fn wildcard(&self) -> String {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                SubjectPart::Literal(literal) => text.push_str(literal),
                // A character no literal holds marks the tokens to widen.
                _ => text.push('*'),
            }
        }
        text.split('.').map(|token| if token.contains('*') { "*" } else { token }).collect::<Vec<_>>().join(".")
    }

    /// Parses `text`: placeholders in braces, the rest literal. Tokens (between dots) must not
    /// be empty, and literals hold no space, control character, `*` or `>`: publishing to a
    /// wildcard is refused by NATS.
    pub fn parse(text: &str) -> Result<SubjectTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            literal.push_str(&rest[..open]);
            if rest[open..].starts_with('}') {
                return Err(format!("{}: '}}' without '{{'", quote(text)));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("{}: '{{' without '}}'", quote(text)));
            };
            let part = match &rest[open + 1..open + close] {
                "type" => SubjectPart::Type,
                "app" => SubjectPart::App,
                "name" => SubjectPart::Name,
                other => {
                    return Err(format!(
                        "{}: unknown placeholder {} (known: {{type}}, {{app}}, {{name}})",
                        quote(text),
                        quote(&format!("{{{other}}}"))
                    ));
                }
            };
            if !literal.is_empty() {
                parts.push(SubjectPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(SubjectPart::Literal(literal));
        }
        let template = SubjectTemplate { parts };
        template.check(text)?;
        Ok(template)
    }

    fn check(&self, text: &str) -> Result<(), String> {
        for part in &self.parts {
            if let SubjectPart::Literal(literal) = part
                && let Some(bad) =
                    literal.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
            {
                return Err(format!(
                    "{}: {} is not allowed in a subject (NATS keeps '*' and '>' for wildcards)",
                    quote(text),
                    quote(&bad.to_string())
                ));
            }
        }
        if self.wildcard().split('.').any(str::is_empty) {
            return Err(format!("{}: empty token (a subject is tokens separated by single dots)", quote(text)));
        }
        Ok(())
    }
}

impl Default for SubjectTemplate {
    fn default() -> SubjectTemplate {
        SubjectTemplate {
            parts: vec![
                SubjectPart::Literal("ringcast.".into()),
                SubjectPart::Type,
                SubjectPart::Literal(".".into()),
                SubjectPart::App,
                SubjectPart::Literal(".".into()),
                SubjectPart::Name,
            ],
        }
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                SubjectPart::Literal(literal) => f.write_str(literal)?,
                SubjectPart::Type => f.write_str("{type}")?,
                SubjectPart::App => f.write_str("{app}")?,
                SubjectPart::Name => f.write_str("{name}")?,
            }
        }
        Ok(())
    }
}

/// `url`: one or more `nats://` or `tls://` URLs separated by commas, each with a host. Errors
/// print the URL with its credentials masked.
pub fn parse_nats_url(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    for server in text.split(',') {
        let shown = || quote(&redact::url(server));
        let lower = server.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix("nats://").or_else(|| lower.strip_prefix("tls://")) else {
            return Err(format!("invalid URL {} (must start with nats:// or tls://)", shown()));
        };
        if server.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("invalid URL {} (no spaces or control characters)", shown()));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("invalid URL {} (no host)", shown()));
        }
        if let Err(e) = server.parse::<async_nats::ServerAddr>() {
            // The client's reason names no credential: it is about the URL's shape.
            return Err(format!("invalid URL {} ({e})", shown()));
        }
    }
    Ok(text.to_owned())
}

/// `stream`: a JetStream stream name, 1 to 64 of `A-Z a-z 0-9 _ -` (NATS forbids spaces, `.`,
/// `*`, `>` and path separators in one).
pub fn parse_stream_name(name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(format!("{} is not a stream name: 1 to 64 of A-Z a-z 0-9 _ -", quote(name)));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_subject_is_the_documented_one() {
        assert_eq!(SubjectTemplate::parse(DEFAULT_SUBJECT).unwrap(), SubjectTemplate::default());
        assert_eq!(SubjectTemplate::default().to_string(), DEFAULT_SUBJECT);
        assert_eq!(SubjectTemplate::default().wildcard(), "ringcast.*.*.*");
    }

    #[test]
    fn a_token_mixing_text_and_a_placeholder_widens_to_one_wildcard() {
        let template = SubjectTemplate::parse("media.cam-{name}.{type}.x").unwrap();
        assert_eq!(template.wildcard(), "media.*.*.x");
        assert_eq!(template.to_string(), "media.cam-{name}.{type}.x");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (text, reason) in [
            ("a.{nope}", "unknown placeholder '{nope}'"),
            ("a.{type", "'{' without '}'"),
            ("a.type}", "'}' without '{'"),
            ("a..{type}", "empty token"),
            ("a.{type}.", "empty token"),
            ("", "empty token"),
            ("a.>", "'>' is not allowed"),
            ("a.*.{type}", "'*' is not allowed"),
            ("a b.{type}", "' ' is not allowed"),
        ] {
            let error = SubjectTemplate::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn urls_are_nats_or_tls_with_a_host_and_errors_mask_credentials() {
        for good in ["nats://127.0.0.1:4222", "tls://nats.example:4443", "nats://u:p@h:1,nats://h2:2", "NATS://h"] {
            assert!(parse_nats_url(good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("http://127.0.0.1:4222", "must start with nats:// or tls://"),
            ("127.0.0.1:4222", "must start with"),
            ("nats://", "no host"),
            ("nats://:4222", "no host"),
            ("nats://h:99999", "invalid URL"),
            ("nats://h 1", "no spaces"),
            ("", "must not be empty"),
        ] {
            let error = parse_nats_url(bad).unwrap_err();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
        let error = parse_nats_url("http://user:hunter2@h").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        let config = NatsConfig::new("nats://a:hunter2@h1,nats://b:hunter3@h2".into());
        let shown = format!("{} {config:?}", config.redacted_url());
        assert!(!shown.contains("hunter") && shown.contains("h2"), "{shown}");
    }

    fn read(text: &str) -> Result<super::super::Config, String> {
        super::super::Config::from_toml(text, std::path::Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_nats_table_is_read_key_by_key() {
        let config = read(
            "[[nats]]\nid = \"bus\"\nurl = \"nats://127.0.0.1:4222\"\nuser = \"u\"\npassword = \"p\"\n\
             subject = \"x.{name}\"\nevents = [\"publish_start\"]\nstream = \"S\"\nretries = 0\n\
             [[apps.vip.nats]]\nurl = \"nats://127.0.0.1:4222\"\ntoken = \"t\"\n",
        )
        .unwrap();
        let bus = &config.nats[0];
        assert_eq!(bus.id.as_deref(), Some("bus"));
        assert_eq!(bus.user, Some(("u".into(), "p".into())));
        assert_eq!(bus.subject.to_string(), "x.{name}");
        assert_eq!((bus.stream.as_deref(), bus.retries), (Some("S"), 0));
        assert_eq!(config.apps["vip"].nats[0].token.as_deref(), Some("t"));
        assert_eq!(config.apps["vip"].nats[0].subject, SubjectTemplate::default());
        assert!(!format!("{config:?}").contains("\"p\""), "the password is not in Debug");
    }

    #[test]
    fn a_bad_nats_table_is_one_line_naming_the_key() {
        let url = "url = \"nats://127.0.0.1:4222\"";
        for (table, says) in [
            (format!("{url}\nuser = \"u\""), "key 'nats[0].user': 'user' and 'password' go together"),
            (format!("{url}\nuser = \"u\"\npassword = \"p\"\ntoken = \"t\""), "key 'nats[0].token': give 'token'"),
            (format!("{url}\nsubjet = \"x\""), "unknown key 'nats[0].subjet' (did you mean 'nats[0].subject'?)"),
            (format!("{url}\nevents = [\"publish_strat\"]"), "key 'nats[0].events[0]'"),
            (format!("{url}\nid = \"wh_1\""), "ringcast's own"),
            ("url = \"redis://h\"".to_owned(), "key 'nats[0].url': invalid URL 'redis://h'"),
        ] {
            let error = read(&format!("[[nats]]\n{table}\n")).unwrap_err();
            assert!(error.contains(says) && !error.contains('\n'), "{table}: {error}");
        }
        let shared = "[[webhook]]\nid = \"bus\"\nurl = \"http://h/\"\n[[nats]]\nid = \"bus\"\nurl = \"nats://h\"\n";
        assert!(read(shared).unwrap_err().contains("given to another sink"), "ids name outboxes: never shared");
        let app =
            "[[nats]]\nid = \"bus\"\nurl = \"nats://h\"\n[[apps.vip.webhook]]\nid = \"bus\"\nurl = \"http://h/\"\n";
        assert!(read(app).unwrap_err().contains("given to another sink"), "nor with an app's webhook");
    }

    #[test]
    fn stream_names_are_plain() {
        assert!(parse_stream_name("RINGCAST_events-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", &"x".repeat(65)] {
            assert!(parse_stream_name(bad).is_err(), "{bad}");
        }
    }
}
