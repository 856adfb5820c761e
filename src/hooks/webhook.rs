//! One webhook delivery attempt, as a worker thread makes it (docs/hooks.md, "Delivery, retries and queues"): encode,
//! sign, POST, and say what the dispatcher should do next ([`Attempt`]). Queues, retry timers
//! and ordering are the dispatcher's; nothing here sleeps or loops.
//!
//! Outcomes, as Standard Webhooks advises:
//! - any 2xx: delivered;
//! - 410 Gone: the receiver wants no more; the dispatcher disables the sink;
//! - connection errors, timeouts, 5xx and 429: retry (`Retry-After` is honoured on 429 and
//!   503, as delta-seconds or an HTTP-date);
//! - 3xx (never followed: a receiver must not be able to bounce signed events elsewhere) and
//!   every other status: failed, not retried, since sending the same request again would get the
//!   same answer.

use std::fmt;
use std::time::Duration;

use super::agent::USER_AGENT;
use super::clock::days_from_civil;
use super::event::Event;
use super::format;
use super::sign;
use crate::config::{Header, Secret, Signature, WebhookConfig, WebhookFormat};

/// Deliveries go out on this agent; callers that build one for a webhook sink find it here.
pub use super::agent::{Error, agent};

/// The most of a response body read: enough to log why a receiver refused, little enough that a
/// receiver cannot make a worker download a file. Reading the body at all lets the connection
/// go back to the keep-alive pool.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// How much of a refusal's body goes into the log line.
const REASON_BODY_CHARS: usize = 200;

/// The backoff ceiling (docs/hooks.md, "Delivery, retries and queues").
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a delivery needs from a webhook's config, plus the secrets of a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    pub format: WebhookFormat,
    pub headers: Vec<Header>,
    pub signature: Signature,
    /// Header of a `sha256`/`sha1` signature.
    pub signature_header: String,
    /// The current secret first, then the previous one while its rotation grace lasts; empty
    /// for an unsigned sink.
    pub secrets: Vec<Secret>,
}

impl WebhookTarget {
    /// The target of `config`; `previous_secret` is the secret being rotated out, if its grace
    /// period still runs. A sink whose secret was removed stops signing altogether.
    pub fn new(config: &WebhookConfig, previous_secret: Option<&Secret>) -> WebhookTarget {
        let secrets = match &config.secret {
            Some(current) => {
                std::iter::once(current).chain(previous_secret.filter(|p| *p != current)).cloned().collect()
            }
            None => Vec::new(),
        };
        WebhookTarget {
            url: config.url.clone(),
            format: config.format,
            headers: config.headers.clone(),
            signature: config.signature,
            signature_header: config.signature_header.clone(),
            secrets,
        }
    }
}

impl From<&WebhookConfig> for WebhookTarget {
    fn from(config: &WebhookConfig) -> Self {
        WebhookTarget::new(config, None)
    }
}

/// What one attempt came to, and so what the dispatcher does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx: done.
    Delivered { status: u16 },
    /// Try again later (if retries remain): after `retry_after` when the receiver said so,
    /// else after [`backoff`]. `retry_after` is the receiver's wish, unclamped.
    Retry { reason: String, retry_after: Option<Duration> },
    /// Refused for good (3xx, 4xx other than 410 and 429, or a request that cannot be made).
    Failed { reason: String },
    /// 410: disable the sink until it is changed.
    Gone,
    /// The sink's format does not send this event type; nothing was sent.
    Skipped,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attempt::Delivered { status } => write!(f, "delivered (HTTP {status})"),
            Attempt::Retry { reason, retry_after: Some(after) } => {
                write!(f, "{reason} (receiver asks to retry after {after:?})")
            }
            Attempt::Retry { reason, .. } | Attempt::Failed { reason } => f.write_str(reason),
            Attempt::Gone => f.write_str("HTTP 410 Gone: the receiver asks for no more events"),
            Attempt::Skipped => f.write_str("not sent: the format has no such event"),
        }
    }
}

/// Makes one delivery attempt of `event` to `target`; `now_secs` is the Standard Webhooks
/// signature timestamp (the attempt's time, not the event's: receivers reject stale ones).
pub fn attempt(agent: &ureq::Agent, target: &WebhookTarget, event: &Event, now_secs: u64) -> Attempt {
    let Some(body) = format::encode(event, target.format) else {
        return Attempt::Skipped;
    };
    let secrets: Vec<&Secret> = target.secrets.iter().collect();
    let signature =
        sign::signature_headers(target.signature, &target.signature_header, &secrets, &event.id, now_secs, &body.bytes);
    let mut request = agent.post(&target.url).header("Content-Type", body.content_type);
    let overrides_agent = target.headers.iter().any(|h| h.name.eq_ignore_ascii_case("user-agent"));
    if !overrides_agent {
        // Also set per request: the agent may not be one built by `agent`.
        request = request.header("User-Agent", USER_AGENT);
    }
    for header in &target.headers {
        // A user header must not shadow the signature a receiver checks.
        if !signature.iter().any(|(name, _)| name.eq_ignore_ascii_case(&header.name)) {
            request = request.header(header.name.as_str(), header.value.as_str());
        }
    }
    for (name, value) in &signature {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.send(&body.bytes[..]) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let retry_after = header("retry-after");
            let location = header("location");
            let excerpt = read_excerpt(&mut response);
            classify(status, retry_after.as_deref(), location.as_deref(), &excerpt, now_secs)
        }
        Err(e) => error_attempt(e, &target.url),
    }
}

/// Reads (and so drains, for connection reuse) a bounded part of the response body; returns a
/// printable excerpt for the log.
fn read_excerpt(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let bytes = response.body_mut().with_config().limit(MAX_RESPONSE_BODY).read_to_vec().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_BODY_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The outcome of a response, from its status and the headers that matter.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    location: Option<&str>,
    body_excerpt: &str,
    now_secs: u64,
) -> Attempt {
    let mut reason = format!("HTTP {status}");
    if let Some(text) = ureq::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()) {
        reason = format!("{reason} {text}");
    }
    if (300..400).contains(&status) {
        let to = location.map_or_else(|| "(no Location)".to_owned(), crate::redact::url);
        reason = format!("{reason}: redirect to {to} not followed");
    } else if !body_excerpt.is_empty() {
        reason = format!("{reason}: {body_excerpt}");
    }
    match status {
        200..=299 => Attempt::Delivered { status },
        410 => Attempt::Gone,
        429 | 500..=599 => {
            let retry_after = match status {
                429 | 503 => retry_after.and_then(|v| parse_retry_after(v, now_secs)),
                _ => None,
            };
            Attempt::Retry { reason, retry_after }
        }
        _ => Attempt::Failed { reason },
    }
}

/// `url` is the request's, kept out of the reason (which is logged) in clear.
fn error_attempt(error: ureq::Error, url: &str) -> Attempt {
    use ureq::Error as E;
    let reason = match &error {
        E::Timeout(_) => format!("timed out ({error})"),
        _ => error.to_string(),
    };
    let reason = crate::redact::in_text(&reason, url);
    match error {
        // Requests that cannot be made as configured: the same request fails the same way.
        E::BadUri(_) | E::Http(_) | E::RequireHttpsOnly(_) | E::InvalidProxyUrl => Attempt::Failed { reason },
        // Timeouts, refused or reset connections, DNS, TLS handshakes, garbled responses:
        // possibly transient.
        _ => Attempt::Retry { reason, retry_after: None },
    }
}

/// Parses `Retry-After`: delta-seconds, or an HTTP-date (IMF-fixdate, and the obsolete RFC 850
/// and asctime forms RFC 9110 says to accept) turned into a delay from `now_secs` (zero if
/// already past).
pub fn parse_retry_after(value: &str, now_secs: u64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_secs(at.saturating_sub(now_secs)))
}

/// An HTTP-date as unix seconds. The three forms share an order once the weekday is skipped:
/// the numbers are day then year, one token is the month and one is `hh:mm:ss`:
/// `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`, `Sun Nov  6 08:49:37 1994`.
fn parse_http_date(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let tokens = text.split([' ', ',', '-']).filter(|t| !t.is_empty()).skip(1);
    let (mut month, mut time, mut numbers) = (None, None, Vec::new());
    for token in tokens {
        if token.contains(':') {
            time = Some(token);
        } else if let Some(m) = MONTHS.iter().position(|m| token.eq_ignore_ascii_case(m)) {
            month = Some(m as u64 + 1);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            numbers.push(token);
        } else if !token.eq_ignore_ascii_case("GMT") && !token.eq_ignore_ascii_case("UTC") {
            return None;
        }
    }
    let [day, year] = numbers.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let mut year: u64 = year.parse().ok()?;
    if year < 100 {
        // RFC 850 two-digit years: read as the closest past or near-future year.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = time?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Before 1970: none.
    let days = u64::try_from(days_from_civil(i64::try_from(year).ok()?, month? as i64, day as i64)).ok()?;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

/// The delay before retry number `attempt` (1 for the first retry): 1s, 2s, 4s, ... capped at
/// 60s, each scaled by a factor in [0.8, 1.2] drawn from `jitter_seed` (so receivers coming
/// back from an outage are not hit by every sink in the same second), never above 60s. The
/// caller supplies the randomness; the same seed gives the same delay.
pub fn backoff(attempt: u32, jitter_seed: u64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(6);
    let base_ms = (1_000u64 << exponent).min(MAX_BACKOFF.as_millis() as u64);
    // splitmix64: a poor seed (0, 1, 2, ...) still spreads over the whole range.
    let mut z = jitter_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let permille = 800 + z % 401;
    Duration::from_millis(base_ms * permille / 1_000).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for (attempt, nominal) in [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60)] {
            for seed in 0..200 {
                let d = backoff(attempt, seed).as_millis() as u64;
                let nominal = nominal * 1_000;
                assert!(d >= nominal * 8 / 10, "{attempt} {seed} {d}");
                assert!(d <= (nominal * 12 / 10).min(60_000), "{attempt} {seed} {d}");
            }
        }
        assert!(backoff(u32::MAX, 7) <= MAX_BACKOFF);
        assert_eq!(backoff(3, 42), backoff(3, 42));
        let distinct: std::collections::HashSet<_> = (0..50).map(|s| backoff(5, s)).collect();
        assert!(distinct.len() > 25, "jitter spreads: {}", distinct.len());
    }

    #[test]
    fn retry_after_forms() {
        let now = 784_111_777 - 60; // a minute before Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        for date in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(60)), "{date}");
        }
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + 3_600), Some(Duration::ZERO));
        for bad in ["", "-5", "soon", "1.5", "Sun, 06 Nov 1994 GMT", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"), Some(1_835_438_400));
    }

    #[test]
    fn statuses() {
        let c = |status, retry_after| classify(status, retry_after, None, "", 0);
        assert_eq!(c(200, None), Attempt::Delivered { status: 200 });
        assert_eq!(c(204, None), Attempt::Delivered { status: 204 });
        assert_eq!(c(410, None), Attempt::Gone);
        assert!(matches!(c(404, None), Attempt::Failed { .. }));
        assert!(matches!(c(400, Some("5")), Attempt::Failed { .. }));
        assert!(matches!(c(500, Some("5")), Attempt::Retry { retry_after: None, .. }));
        assert_eq!(
            c(503, Some("5")),
            Attempt::Retry { reason: "HTTP 503 Service Unavailable".into(), retry_after: Some(Duration::from_secs(5)) }
        );
        assert!(matches!(
            c(429, Some("7")),
            Attempt::Retry {
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(7)
        ));
        match classify(301, None, Some("http://elsewhere/"), "moved", 0) {
            Attempt::Failed { reason } => {
                assert!(reason.contains("301") && reason.contains("http://elsewhere/"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match classify(403, None, None, "bad token", 0) {
            Attempt::Failed { reason } => assert_eq!(reason, "HTTP 403 Forbidden: bad token"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn target_secrets() {
        let mut config = WebhookConfig::new("http://x/".into(), crate::config::EventFilter::All);
        let current = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let previous = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert!(WebhookTarget::from(&config).secrets.is_empty());
        assert!(WebhookTarget::new(&config, Some(&previous)).secrets.is_empty());
        config.secret = Some(current.clone());
        assert_eq!(WebhookTarget::new(&config, Some(&previous)).secrets, vec![current.clone(), previous]);
        assert_eq!(WebhookTarget::new(&config, Some(&current)).secrets, vec![current]);
    }
}
