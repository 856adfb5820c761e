//! `ringcast hooks replay --sink ID --since TIME [--until TIME]`: asks the running server to
//! send a webhook again the delivered events its outbox keeps (`outbox_retain`), through the
//! admin API (`POST /api/outbox/{id}/replay`): the server owns the outbox files. The API's
//! address and token come from `--config` (`api_listen`, `api_token`) or `--api`/`--token`
//! (docs/hooks.md, "Replaying events").
//!
//! Exit status: 0 when the events were queued, 1 when the server could not be asked or failed,
//! 2 for a bad command line or an unknown sink.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::outbox::replay::parse_time;
use super::{agent, clock};
use crate::config::Config;

/// How long to wait for the server: a replay of a full outbox takes seconds.
const TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The webhook's outbox id (its `id` key, its API id `wh_...`, or `url-...`: GET /api/outbox)
    #[arg(long, value_name = "ID")]
    sink: String,
    /// Events emitted since then: RFC 3339 (2026-12-06T09:00:00Z) or a duration ago (2h)
    #[arg(long, value_name = "TIME")]
    since: String,
    /// Events emitted until then, same forms [default: now]
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Take the admin API's address and token (api_listen, api_token) from this file
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The admin API's base URL [default: from --config, or http://127.0.0.1:8081]
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// The admin API's bearer token [default: from --config]
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// Why a replay did not happen: `Usage` exits 2, `Failed` 1.
pub enum ReplayFailure {
    Usage(String),
    Failed(String),
}

impl ReplayArgs {
    /// Asks for the replay; prints what was queued.
    pub fn run(&self) -> Result<(), ReplayFailure> {
        use ReplayFailure::{Failed, Usage};
        // Checked here too, so a typo is a command-line error before any request.
        let now = clock::now_ms();
        parse_time(&self.since, now).map_err(|e| Usage(format!("--since: {e}")))?;
        if let Some(until) = &self.until {
            parse_time(until, now).map_err(|e| Usage(format!("--until: {e}")))?;
        }
        let config = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| Usage(e.to_string()))?,
            None => Config::default(),
        };
        let base = match &self.api {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(config.api_listen)),
        };
        let token = self.token.clone().or_else(|| config.api_token.as_ref().map(|t| t.expose().to_owned()));
        let url = format!("{base}/api/outbox/{}/replay", percent_encode(&self.sink));
        let body = json!({ "since": self.since, "until": self.until }).to_string();
        let agent = agent::agent(TIMEOUT, config.tls_ca_file.as_deref()).map_err(|e| Usage(e.to_string()))?;
        let mut request = agent.post(&url).header("Content-Type", "application/json");
        if let Some(token) = &token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response =
            request.send(body.as_bytes()).map_err(|e| Failed(format!("cannot reach the admin API at {base}: {e}")))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = answer["error"].as_str().unwrap_or("(no message)").to_owned();
        match status {
            200 => {
                let count = |key: &str| answer[key].as_u64().unwrap_or(0);
                println!(
                    "replayed {} events to {} ({} not written: outbox full; {} undelivered ones were on their way already)",
                    count("replayed"),
                    self.sink,
                    count("refused"),
                    count("waiting"),
                );
                if count("refused") > 0 {
                    return Err(Failed(format!("{} events did not fit in outbox_max_bytes", count("refused"))));
                }
                Ok(())
            }
            400 | 404 => Err(Usage(message)),
            401 => Err(Failed(format!("{message} (give --token, or --config with api_token)"))),
            _ => Err(Failed(format!("HTTP {status}: {message}"))),
        }
    }
}

/// Where to reach a server listening on `addr`: a wildcard address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    addr
}

/// `id` as one path segment (an id is plain, but a typo should get a 404, not another route).
fn percent_encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0:8081".parse().unwrap()), "127.0.0.1:8081".parse().unwrap());
        assert_eq!(reachable("[::]:8081".parse().unwrap()), "[::1]:8081".parse().unwrap());
        assert_eq!(reachable("10.0.0.5:9".parse().unwrap()), "10.0.0.5:9".parse().unwrap());
    }

    #[test]
    fn an_id_stays_one_path_segment() {
        assert_eq!(percent_encode("wh_0a.b-c"), "wh_0a.b-c");
        assert_eq!(percent_encode("a/../b c"), "a%2F..%2Fb%20c");
    }
}
