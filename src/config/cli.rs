//! The command line: clap parses the flags as text; the values go through the same validators as
//! the TOML keys, so a flag and its key accept the same things and fail with the same words.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::hooks::{EventFilter, ScriptConfig, WebhookConfig};
use super::{
    Config, ConfigError, check_duration, floors, limits, parse_duration, parse_listen, parse_number, parse_url, quote,
};

const ABOUT: &str = "Live media server: RTMP, RTSP and HTTP-FLV in and out, with HTTP hooks.";

const AFTER_HELP: &str = "\
Settings come from built-in defaults, then the --config file, then these flags (each overrides
the one before). --hook-webhook and --hook-script add to the file's [[webhook]] and [[script]]
lists. Every key, flag or not, is documented in ringcast.example.toml.

Durations: 500ms, 30s, 5m, 24h, 2d, 1h30m, or a whole number of seconds.
Addresses: host:port (IP or localhost, [::1]:port for IPv6), :port, or port (all interfaces).
Events: connection_accept, handshake_complete, connect, auth_failed, stream_create,
stream_delete, publish_start, publish_update, publish_stop, publish_resume, play_start,
play_update, play_stop, codec_detected, subscriber_count, stream_unavailable, no_viewers,
connection_close, or * for all.

Exit status: 0 on success, 2 for a bad flag or configuration (one line on stderr says which).";

/// The flags. Values are kept as text: [`Cli::apply`] validates them with the shared validators.
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about = ABOUT, after_help = AFTER_HELP)]
pub(super) struct Cli {
    /// Read settings from this TOML file; flags override its keys
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration (file and flags), print "configuration OK" and exit
    #[arg(long)]
    pub check: bool,

    /// RTMP listen address [default: 0.0.0.0:1935]
    #[arg(long, value_name = "ADDR")]
    rtmp_listen: Option<String>,

    /// HTTP-FLV listen address [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,

    /// RTSP listen address [default: 0.0.0.0:8554]
    #[arg(long, value_name = "ADDR")]
    rtsp_listen: Option<String>,

    /// Admin API listen address; keep it private [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<String>,

    /// Shards (io_uring reactor threads), 1 to 1024 [default: number of CPUs]
    #[arg(long, value_name = "N")]
    shards: Option<String>,

    /// Where state that survives a restart lives (API webhooks, the webhooks' outboxes, the
    /// session journal) [default: /var/lib/ringcast]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<String>,

    /// Log verbosity: error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,

    /// Log line format: text or json [default: text]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,

    /// POST events of type EVENT (or * for all) to URL as JSON; repeatable
    #[arg(long, value_name = "EVENT=URL", help_heading = "Hooks")]
    hook_webhook: Vec<String>,

    /// Run the program at PATH on events of type EVENT (or *); repeatable
    #[arg(long, value_name = "EVENT=PATH", help_heading = "Hooks")]
    hook_script: Vec<String>,

    /// Print one line per event on stderr, as json or env [default: off]
    #[arg(long, value_name = "FORMAT", help_heading = "Hooks")]
    hook_stdio_format: Option<String>,

    /// Time limit per webhook or script delivery [default: 30s]
    #[arg(long, value_name = "DURATION", help_heading = "Hooks")]
    hook_timeout: Option<String>,

    /// Webhook and script deliveries executing at once, 1 to 1024 [default: 10]
    #[arg(long, value_name = "N", help_heading = "Hooks")]
    hook_concurrency: Option<String>,

    /// Callback asked before a client connects; a 2xx reply allows it
    #[arg(long, value_name = "URL", help_heading = "Hooks")]
    on_connect: Option<String>,

    /// Callback asked before a publisher is admitted; a 2xx reply allows it
    #[arg(long, value_name = "URL", help_heading = "Hooks")]
    on_publish: Option<String>,

    /// Callback asked before a player is admitted; a 2xx reply allows it
    #[arg(long, value_name = "URL", help_heading = "Hooks")]
    on_play: Option<String>,

    /// Callback told when a publish or play ends
    #[arg(long, value_name = "URL", help_heading = "Hooks")]
    on_done: Option<String>,

    /// How callbacks send their fields: post (form body) or get (query) [default: post]
    #[arg(long, value_name = "METHOD", help_heading = "Hooks")]
    notify_method: Option<String>,
}

/// What the command line asks for before any configuration is read.
pub(super) enum Parsed {
    Flags(Box<Cli>),
    /// `--help` or `--version`: the text to print before exiting with status 0.
    Exit(String),
}

impl Cli {
    pub(super) fn parse_args<I, T>(args: I) -> Result<Parsed, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match Cli::try_parse_from(args) {
            Ok(cli) => Ok(Parsed::Flags(Box::new(cli))),
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                Ok(Parsed::Exit(e.to_string()))
            }
            Err(e) => Err(usage_error(&e)),
        }
    }

    /// Applies the flags over `config` (defaults, then the file, already in it).
    pub(super) fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        set(&self.rtmp_listen, "rtmp-listen", &mut config.rtmp_listen, parse_listen)?;
        set(&self.http_listen, "http-listen", &mut config.http_listen, parse_listen)?;
        set(&self.rtsp_listen, "rtsp-listen", &mut config.rtsp_listen, parse_listen)?;
        set(&self.api_listen, "api-listen", &mut config.api_listen, parse_listen)?;
        set(&self.shards, "shards", &mut config.shards, |s| parse_number(s, limits::SHARDS))?;
        set(&self.state_dir, "state-dir", &mut config.state_dir, |s| {
            if s.is_empty() { Err("must not be empty".to_owned()) } else { Ok(s.into()) }
        })?;
        set(&self.log_level, "log-level", &mut config.log_level, str::parse)?;
        set(&self.log_format, "log-format", &mut config.log_format, str::parse)?;

        for spec in &self.hook_webhook {
            let (event, url) = split_pair(spec, "hook-webhook", "EVENT=URL")?;
            let events = EventFilter::parse_one(event).map_err(|m| flag("hook-webhook", m))?;
            let url = parse_url(url).map_err(|m| flag("hook-webhook", m))?;
            config.webhooks.push(WebhookConfig::new(url, events));
        }
        for spec in &self.hook_script {
            let (event, path) = split_pair(spec, "hook-script", "EVENT=PATH")?;
            let event = EventFilter::parse_one(event).map_err(|m| flag("hook-script", m))?;
            if path.is_empty() {
                return Err(flag("hook-script", "the path is empty".to_owned()));
            }
            config.scripts.push(ScriptConfig { event, path: PathBuf::from(path) });
        }
        if let Some(text) = &self.hook_stdio_format {
            config.stdio = Some(text.parse().map_err(|m| flag("hook-stdio-format", m))?);
        }
        set(&self.hook_timeout, "hook-timeout", &mut config.hook_timeout, |s| {
            parse_duration(s).and_then(|d| check_duration(d, floors::TIMEOUT))
        })?;
        set(&self.hook_concurrency, "hook-concurrency", &mut config.hook_concurrency, |s| {
            parse_number(s, limits::HOOK_CONCURRENCY)
        })?;

        let notify = &mut config.notify;
        for (value, name, slot) in [
            (&self.on_connect, "on-connect", &mut notify.on_connect),
            (&self.on_publish, "on-publish", &mut notify.on_publish),
            (&self.on_play, "on-play", &mut notify.on_play),
            (&self.on_done, "on-done", &mut notify.on_done),
        ] {
            if let Some(text) = value {
                *slot = Some(parse_url(text).map_err(|m| flag(name, m))?);
            }
        }
        set(&self.notify_method, "notify-method", &mut notify.method, str::parse)
    }
}

/// Overwrites `slot` with the validated flag value, if the flag was given.
fn set<T>(
    value: &Option<String>,
    name: &str,
    slot: &mut T,
    validate: impl FnOnce(&str) -> Result<T, String>,
) -> Result<(), ConfigError> {
    if let Some(text) = value {
        *slot = validate(text).map_err(|message| flag(name, message))?;
    }
    Ok(())
}

fn flag(name: &str, message: String) -> ConfigError {
    ConfigError::Flag { flag: format!("--{name}"), message }
}

/// Splits `EVENT=VALUE` at the first `=` (a URL may contain more).
fn split_pair<'a>(spec: &'a str, name: &str, form: &str) -> Result<(&'a str, &'a str), ConfigError> {
    spec.split_once('=').ok_or_else(|| flag(name, format!("expected {form}, got {}", quote(spec))))
}

/// Clap's usage error as one line: its first line without the `error: ` prefix, plus the flag it
/// suggests, which clap would otherwise print on a later line.
fn usage_error(error: &clap::Error) -> ConfigError {
    let rendered = error.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if let Some(ContextValue::String(suggested)) = error.get(ContextKind::SuggestedArg) {
        message.push_str(&format!(" (did you mean '{suggested}'?)"));
    }
    if message.is_empty() {
        message = "invalid command line".to_owned();
    }
    message.push_str("; see --help");
    ConfigError::Usage(message)
}
