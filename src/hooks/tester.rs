//! `ringcast hooks test URL ...`: sends one realistic sample to a receiver, as the running
//! server would, and prints what went, what came back and what ringcast would make of it
//! (docs/hooks.md, "Testing a receiver"). Either an event (`--event TYPE`, in a webhook
//! `--format`, signed with `--secret`) through the webhook sink's own delivery attempt, or a
//! callback (`--callback CALL`, in the configured or `--dialect` dialect) through the
//! callback pool and the dialect's reading of the answer. No server starts.
//!
//! Exit status: 0 when ringcast would count the delivery done or the client allowed, 1 when
//! not, 2 for a bad command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};

use super::callback::{Answer, Call, Callbacks, ClientInfo, Decision};
use super::callback_pool::CallbackPool;
use super::event::{Event, EventIds, EventType, Protocol};
use super::media::{MediaDescription, TrackDescription};
use super::replay_command::{ReplayArgs, ReplayFailure};
use super::webhook::{self, Attempt, WebhookTarget};
use super::{clock, dialect, format};
use crate::config::{Config, NotifyConfig, Secret, Signature, WebhookConfig, WebhookFormat, parse_duration, parse_url};
use crate::protocol::codec::{Codec, CodecInfo};

#[derive(Debug, Parser)]
#[command(
    name = "ringcast hooks",
    bin_name = "ringcast hooks",
    about = "Try a hook receiver with one realistic, signed sample, or replay what a webhook was sent."
)]
struct HooksCli {
    #[command(subcommand)]
    command: HooksCommand,
}

#[derive(Debug, Subcommand)]
enum HooksCommand {
    /// Send one sample event (--event) or callback (--callback) to URL and print the answer
    Test(TestArgs),
    /// Send a webhook again the delivered events its outbox keeps, through the running server
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["event", "callback"]))]
struct TestArgs {
    /// The receiver's URL (http:// or https://)
    url: String,
    /// An event type to send as a webhook would (publish_start, connection_close, ...)
    #[arg(long, value_name = "TYPE")]
    event: Option<String>,
    /// A callback to ask: connect, publish, play, publish_done, play_done, done, update_publish, update_play, media
    #[arg(long, value_name = "CALL")]
    callback: Option<String>,
    /// Webhook body format: envelope, flat, form or dolby [default: envelope]
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Sign as a webhook or [notify] with this secret (base64, optional whsec_)
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// Signature scheme: standard, sha256 or sha1 [default: standard]
    #[arg(long, value_name = "SCHEME")]
    signature: Option<String>,
    /// Header of a sha256/sha1 signature [default: X-Ringcast-Signature]
    #[arg(long, value_name = "NAME")]
    signature_header: Option<String>,
    /// Callback dialect: nginx, srs, mediamtx or zlmediakit [default: the config's, or nginx]
    #[arg(long, value_name = "DIALECT")]
    dialect: Option<String>,
    /// Take [notify] (dialect, method, secret, timeout) and tls_ca_file from this file
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long to wait for the answer [default: the config's timeout]
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
}

/// Runs `ringcast hooks ...` (`args` from the program name on); returns the exit status.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    let cli = match HooksCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    let test = match cli.command {
        HooksCommand::Test(test) => test,
        HooksCommand::Replay(replay) => {
            return match replay.run() {
                Ok(()) => 0,
                Err(ReplayFailure::Failed(message)) => {
                    eprintln!("ringcast hooks replay: {message}");
                    1
                }
                Err(ReplayFailure::Usage(message)) => {
                    eprintln!("ringcast hooks replay: {message}");
                    2
                }
            };
        }
    };
    match test.run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(message) => {
            eprintln!("ringcast hooks test: {message}");
            2
        }
    }
}

impl TestArgs {
    /// Sends the sample; whether ringcast would count it a success.
    fn run(&self) -> Result<bool, String> {
        let url = parse_url(&self.url)?;
        let config = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        let secret = self.secret.as_deref().map(Secret::parse).transpose()?;
        let signature: Option<Signature> = self.signature.as_deref().map(str::parse).transpose()?;
        let timeout = match &self.timeout {
            Some(text) => Some(parse_duration(text)?),
            None => None,
        };
        match (&self.event, &self.callback) {
            (Some(event), _) => {
                let event_type: EventType = event.parse()?;
                let mut webhook = WebhookConfig::new(url, crate::config::EventFilter::All);
                webhook.format = self.format.as_deref().map(str::parse).transpose()?.unwrap_or(WebhookFormat::Envelope);
                webhook.secret = secret;
                webhook.signature = signature.unwrap_or_default();
                if let Some(header) = &self.signature_header {
                    webhook.signature_header = header.clone();
                }
                send_event(&webhook, event_type, timeout.unwrap_or(config.hook_timeout), &config)
            }
            (None, Some(call)) => {
                let call = parse_call(call)?;
                let mut notify = config.notify.clone();
                set_url(&mut notify, call, url);
                if let Some(dialect) = &self.dialect {
                    notify.dialect = dialect.parse()?;
                }
                if secret.is_some() {
                    notify.secret = secret;
                }
                if let Some(signature) = signature {
                    notify.signature = signature;
                }
                if let Some(timeout) = timeout {
                    notify.timeout = timeout;
                }
                ask_callback(notify, call, &config)
            }
            (None, None) => Err("give --event TYPE or --callback CALL".to_owned()),
        }
    }
}

fn send_event(
    webhook: &WebhookConfig,
    event_type: EventType,
    timeout: Duration,
    config: &Config,
) -> Result<bool, String> {
    let event = sample_event(event_type);
    let Some(body) = format::encode(&event, webhook.format) else {
        println!("not sent: the {} format has no {} event", webhook.format, event_type);
        return Ok(false);
    };
    let signed = match &webhook.secret {
        Some(_) => format!("signed {}", webhook.signature),
        None => "unsigned".to_owned(),
    };
    println!("sent: POST {} ({event_type}, {} format, {signed})", crate::redact::url(&webhook.url), webhook.format);
    println!("body: {}", String::from_utf8_lossy(&body.bytes));
    let agent = webhook::agent(timeout, config.tls_ca_file.as_deref()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let attempt = webhook::attempt(&agent, &WebhookTarget::from(webhook), &event, clock::now_ms() / 1000);
    println!("answer: {attempt} after {} ms", started.elapsed().as_millis());
    let verdict = match &attempt {
        Attempt::Delivered { .. } => "count it delivered",
        Attempt::Retry { .. } => "retry it (with backoff, up to `retries` times)",
        Attempt::Failed { .. } => "count it failed, not retried",
        Attempt::Gone => "disable this sink until it is changed",
        Attempt::Skipped => "skip it",
    };
    println!("ringcast would: {verdict}");
    Ok(matches!(attempt, Attempt::Delivered { .. }))
}

fn ask_callback(notify: NotifyConfig, call: Call, config: &Config) -> Result<bool, String> {
    let callbacks = Callbacks::new(&notify);
    let (client, extra) = sample_client(call);
    let extra: Vec<(&str, String)> = extra.iter().map(|(name, value)| (*name, value.clone())).collect();
    let Some(request) = dialect::request(&callbacks, call, &client, &extra) else {
        println!("not sent: the {} dialect has no {} callback; ringcast would allow", notify.dialect, call.as_str());
        return Ok(true);
    };
    let prepared = callbacks.prepare(&request);
    println!(
        "sent: {} {} ({} callback, {} dialect, {})",
        prepared.method,
        crate::redact::url(&prepared.url),
        call.as_str(),
        notify.dialect,
        if notify.secret.is_some() { "signed" } else { "unsigned" },
    );
    if !prepared.body.is_empty() {
        println!("body: {}", String::from_utf8_lossy(&prepared.body));
    }
    let pool = CallbackPool::new(notify.timeout, config.tls_ca_file.as_deref());
    let started = Instant::now();
    let outcome = pool.ask(prepared).blocking_recv().unwrap_or_else(|_| Err("callback pool stopped".to_owned()));
    let answer = match outcome {
        Ok(answer) => answer,
        Err(reason) => {
            println!("answer: none: {reason}");
            let allowed = notify.on_error == crate::config::OnError::Allow;
            println!("ringcast would: {} (on_error = \"{}\")", if allowed { "allow" } else { "deny" }, notify.on_error);
            return Ok(false);
        }
    };
    print_answer(&answer, started.elapsed());
    let decision = dialect::decide(notify.dialect, &answer);
    let cached = match answer.max_age {
        Some(seconds) if notify.cache_entries > 0 && matches!(call, Call::Connect | Call::Publish | Call::Play) => {
            format!(", and remember it for {seconds} s")
        }
        _ => String::new(),
    };
    match &decision {
        Decision::Allow => println!("ringcast would: allow{cached}"),
        Decision::Rename(name) => println!("ringcast would: allow, renamed to {name}{cached}"),
        Decision::Limited(terms) => println!("ringcast would: allow under {terms:?}{cached}"),
        Decision::Deny { reason } => println!("ringcast would: deny ({reason}){cached}"),
    }
    Ok(!matches!(decision, Decision::Deny { .. }))
}

fn print_answer(answer: &Answer, took: Duration) {
    println!("answer: HTTP {} after {} ms", answer.status, took.as_millis());
    if let Some(location) = &answer.location {
        println!("location: {location}");
    }
    if let Some(seconds) = answer.max_age {
        println!("cache-control: max-age={seconds}");
    }
    if !answer.body.is_empty() {
        println!("body: {}", String::from_utf8_lossy(&answer.body).trim_end());
    }
}

fn parse_call(text: &str) -> Result<Call, String> {
    const CALLS: [Call; 9] = [
        Call::Connect,
        Call::Publish,
        Call::Play,
        Call::PublishDone,
        Call::PlayDone,
        Call::Done,
        Call::UpdatePublish,
        Call::UpdatePlay,
        Call::Media,
    ];
    CALLS.into_iter().find(|call| call.as_str() == text).ok_or_else(|| {
        let names: Vec<&str> = CALLS.iter().map(|call| call.as_str()).collect();
        format!("unknown callback '{}' (expected one of: {})", text.escape_debug(), names.join(", "))
    })
}

/// Points `call`'s callback at `url`, whatever the config said.
fn set_url(notify: &mut NotifyConfig, call: Call, url: String) {
    let slot = match call {
        Call::Connect => &mut notify.on_connect,
        Call::Publish => &mut notify.on_publish,
        Call::Play => &mut notify.on_play,
        Call::Done => &mut notify.on_done,
        Call::PublishDone => &mut notify.on_publish_done,
        Call::PlayDone => &mut notify.on_play_done,
        Call::UpdatePublish | Call::UpdatePlay => &mut notify.on_update,
        Call::Media => &mut notify.on_media,
    };
    *slot = Some(url);
}

/// The sample client: ffmpeg publishing or playing `rtmp://127.0.0.1:1935/live/test?token=x`
/// (docs/hooks.md's examples), with the fields `call` adds.
fn sample_client(call: Call) -> (ClientInfo, Vec<(&'static str, String)>) {
    let streamless = call == Call::Connect;
    let client = ClientInfo {
        protocol: Some(Protocol::Rtmp),
        addr: Some(SocketAddr::from(([127, 0, 0, 1], 43088))),
        conn_id: 1,
        app: "live".into(),
        name: if streamless { String::new() } else { "test".into() },
        url: if streamless {
            "rtmp://127.0.0.1:1935/live/".into()
        } else {
            "rtmp://127.0.0.1:1935/live/test?token=x".into()
        },
        tc_url: "rtmp://127.0.0.1:1935/live".into(),
        flash_ver: "FMLE/3.0 (compatible; Lavf59.27.100)".into(),
        swf_url: String::new(),
        page_url: String::new(),
        args: if streamless { Vec::new() } else { vec![("token".into(), "x".into())] },
    };
    let done = || vec![("bytes_in", "68437".into()), ("bytes_out", "3725".into()), ("duration", "2".into())];
    let extra = match call {
        Call::Connect => Vec::new(),
        Call::Publish => vec![("type", "live".into())],
        Call::Play => vec![("start", "-2000".into()), ("duration", "-1".into()), ("reset", "1".into())],
        Call::Done | Call::PublishDone | Call::PlayDone => done(),
        Call::UpdatePublish => vec![("time", "30".into()), ("timestamp", "29960".into())],
        Call::UpdatePlay => vec![("time", "30".into()), ("timestamp", "30012".into())],
        Call::Media => sample_media().form_fields(),
    };
    (client, extra)
}

/// The media of the sample publisher: what `ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=30
/// -c:v libx264 -b:v 2500k -c:a aac -b:a 128k` sends, as onMetaData and its headers say it.
fn sample_media() -> MediaDescription {
    let video = CodecInfo {
        profile: Some("High"),
        level: Some("3.1".into()),
        width: Some(1280),
        height: Some(720),
        ..CodecInfo::codec_only(Codec::H264)
    };
    let audio = CodecInfo {
        profile: Some("LC"),
        sample_rate: Some(44_100),
        channels: Some(2),
        ..CodecInfo::codec_only(Codec::Aac)
    };
    MediaDescription {
        video: Some(TrackDescription { info: video, frame_rate: Some(30.0), bitrate_kbps: Some(2500) }),
        audio: Some(TrackDescription { info: audio, frame_rate: None, bitrate_kbps: Some(128) }),
    }
}

/// A sample event of `event_type`, its data the examples of docs/hooks.md.
fn sample_event(event_type: EventType) -> Event {
    let ids = EventIds::new(clock::now_ms());
    let (stream_key, data) = match event_type {
        EventType::ConnectionAccept => ("", json!({"remote_addr": "127.0.0.1:43088", "protocol": "rtmp"})),
        EventType::HandshakeComplete => ("", json!({})),
        EventType::Connect => (
            "",
            json!({"app": "live", "args": {}, "flashver": "FMLE/3.0 (compatible; Lavf59.27.100)",
                   "pageurl": "", "swfurl": "", "tcurl": "rtmp://127.0.0.1:1935/live"}),
        ),
        EventType::AuthFailed => ("", json!({"action": "publish", "error": "callback answered 403"})),
        EventType::PublishStart | EventType::PlayStart => ("live/test", json!({"args": {"token": "x"}})),
        EventType::PublishUpdate => {
            ("live/test", json!({"bitrate_kbps": 505.0, "bytes_in": 1893123, "time": 30, "timestamp": 29960}))
        }
        EventType::PlayUpdate => ("live/test", json!({"bytes_out": 1904211, "time": 30, "timestamp": 30012})),
        EventType::PublishStop => (
            "live/test",
            json!({"audio_codec": "aac", "audio_packets": 96, "bytes_in": 68479, "bytes_out": 3725,
                   "duration_sec": 2.064, "total_bytes": 67937, "video_codec": "h264", "video_packets": 52}),
        ),
        EventType::PublishResume => {
            ("live/test", json!({"args": {"token": "x"}, "gap_ms": 1840, "previous_conn_id": 1}))
        }
        EventType::PlayStop => ("live/test", json!({"bytes_out": 69273, "dropped_packets": 0, "duration_sec": 2.409})),
        EventType::CodecDetected => (
            "live/test",
            json!({"audio_codec": null, "channels": null, "height": 240, "profile": "High",
                   "sample_rate": null, "video_codec": "h264", "width": 320}),
        ),
        EventType::SubscriberCount => ("live/test", json!({"count": 1})),
        EventType::StreamCreate | EventType::StreamDelete | EventType::StreamUnavailable | EventType::NoViewers => {
            ("live/test", json!({}))
        }
        EventType::ConnectionClose => (
            "",
            json!({"bytes_in": 71902, "bytes_out": 3725, "duration_sec": 2.202,
                   "reason": "closed by client", "role": "publisher"}),
        ),
        EventType::RelayStart => ("live/test", json!({"direction": "pull", "url": "rtmp://10.0.0.1:1935/live/test"})),
        EventType::RelayStop => (
            "live/test",
            json!({"bytes_in": 1893123, "bytes_out": 3521, "direction": "pull", "duration_sec": 31.250,
                   "reason": "no players", "url": "rtmp://10.0.0.1:1935/live/test"}),
        ),
    };
    let data = match data {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    Event {
        id: ids.next(),
        event_type,
        timestamp_ms: clock::now_ms(),
        conn_id: 1,
        protocol: Protocol::Rtmp,
        addr: "127.0.0.1:43088".into(),
        stream_key: stream_key.into(),
        seq: if stream_key.is_empty() { 0 } else { 2 },
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event type has a sample whose data has the fields docs/hooks.md lists for it (the
    /// payload types are the contract: a sample that drifted from them would mislead).
    #[test]
    fn samples_have_each_types_fields() {
        use crate::hooks::payload::*;
        fn fields<P: super::super::payload::EventPayload + Default>() -> Vec<String> {
            match serde_json::to_value(P::default()) {
                Ok(Value::Object(map)) => map.keys().cloned().collect(),
                _ => Vec::new(),
            }
        }
        let expected: Vec<(EventType, Vec<String>)> = vec![
            (EventType::ConnectionAccept, fields::<ConnectionAccept>()),
            (EventType::Connect, fields::<Connect>()),
            (EventType::AuthFailed, fields::<AuthFailed>()),
            (EventType::PublishStart, fields::<PublishStart>()),
            (EventType::PublishUpdate, fields::<PublishUpdate>()),
            (EventType::PublishStop, fields::<PublishStop>()),
            (EventType::PublishResume, fields::<PublishResume>()),
            (EventType::PlayStart, fields::<PlayStart>()),
            (EventType::PlayUpdate, fields::<PlayUpdate>()),
            (EventType::PlayStop, fields::<PlayStop>()),
            (EventType::CodecDetected, fields::<CodecDetected>()),
            (EventType::SubscriberCount, fields::<SubscriberCount>()),
            (EventType::ConnectionClose, fields::<ConnectionClose>()),
            (EventType::RelayStart, fields::<RelayStart>()),
            (EventType::RelayStop, fields::<RelayStop>()),
        ];
        for (event_type, fields) in expected {
            let sample: Vec<String> = sample_event(event_type).data.keys().cloned().collect();
            let mut fields = fields;
            fields.sort();
            assert_eq!(sample, fields, "{event_type}");
        }
    }

    #[test]
    fn calls_parse_by_their_form_name() {
        assert_eq!(parse_call("play").unwrap(), Call::Play);
        assert_eq!(parse_call("update_publish").unwrap(), Call::UpdatePublish);
        assert!(parse_call("unpublish").unwrap_err().contains("publish_done"));
        assert_eq!(parse_call("media").unwrap(), Call::Media);
    }

    #[test]
    fn the_media_sample_describes_both_tracks() {
        let (client, extra) = sample_client(Call::Media);
        let fields = super::super::callback::form_fields(Call::Media, &client, &extra);
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(
            (get("call"), get("name"), get("width"), get("frame_rate")),
            (Some("media"), Some("test"), Some("1280"), Some("30"))
        );
        assert_eq!(
            (get("audio_codec"), get("sample_rate"), get("audio_bitrate_kbps")),
            (Some("aac"), Some("44100"), Some("128"))
        );
    }

    #[test]
    fn the_sample_client_sends_the_documented_form() {
        let (client, extra) = sample_client(Call::Publish);
        let extra: Vec<(&str, String)> = extra.iter().map(|(n, v)| (*n, v.clone())).collect();
        let fields = super::super::callback::form_fields(Call::Publish, &client, &extra);
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        assert_eq!(
            encoded,
            "call=publish&protocol=rtmp&addr=127.0.0.1&clientid=1&app=live&name=test&url=rtmp%3A%2F%2F127.0.0.1%3A1935%2Flive%2Ftest%3Ftoken%3Dx&tcurl=rtmp%3A%2F%2F127.0.0.1%3A1935%2Flive&flashver=FMLE%2F3.0+%28compatible%3B+Lavf59.27.100%29&swfurl=&pageurl=&type=live&token=x"
        );
    }
}
