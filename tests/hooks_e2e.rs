//! Hooks end to end (docs/hooks.md is the contract): the real `ringcast` binary, real clients
//! (ffmpeg and ffprobe where a real encoder or player matters, ringcast's own RTMP client where
//! a test needs exact control over what is sent and when), and real HTTP receivers for
//! callbacks and webhooks. Every field, event and timing checked here is one a deployment
//! relies on: what an auth endpoint sees, what a webhook consumer can order and de-duplicate,
//! and that a slow or dead endpoint never stalls publishing.
//!
//! Needs ffmpeg and ffprobe with libx264 on PATH (`bash .ci/run` installs them), like the other
//! e2e tests. Each test bounds every wait; they run in parallel on a 2-core machine, so the
//! bounds are generous where nothing but latency is at stake and tight only where the timing is
//! the point (callback timeouts, retry backoff, the priority lane).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use common::hook_peers::{
    BlackHole, closed_port_url, parse_env_line, parse_env_output, parse_form, standard_signature,
};
use common::http_receiver::{HttpReceiver, Reply, Request};
use common::rtmp_client::{RtmpClient, media};
use common::{Client, TempFile, TestServer, assert_plays_h264_aac, eventually, ffmpeg_publish, metric_total};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};

/// ffmpeg connects and gets `Publish.Start` in well under a second; the rest is slack for a
/// 2-core machine running encoders in parallel tests.
const PUBLISH_START: Duration = Duration::from_secs(10);
const PROBE: Duration = Duration::from_secs(15);
const SMALL: (u32, u32) = (320, 240);
/// Callbacks and webhook deliveries arrive within milliseconds; this bounds the wait for ones
/// that must arrive, with room for a loaded machine.
const ARRIVAL: Duration = Duration::from_secs(10);
/// How long an RTMP client waits for the server's answer to publish or play.
const ANSWER: Duration = Duration::from_secs(10);

/// Fields every callback carries (docs/hooks.md, Callbacks, Form fields, row "all").
const BASE_FIELDS: &[&str] =
    &["call", "protocol", "addr", "clientid", "app", "name", "url", "tcurl", "flashver", "swfurl", "pageurl"];
/// Every field name of the callback table: a client argument of one of these names is dropped.
const RESERVED_FIELDS: &[&str] = &[
    "call",
    "protocol",
    "addr",
    "clientid",
    "app",
    "name",
    "url",
    "tcurl",
    "flashver",
    "swfurl",
    "pageurl",
    "type",
    "start",
    "duration",
    "reset",
    "bytes_in",
    "bytes_out",
    "time",
    "timestamp",
];
/// The `envelope` format's keys, exactly.
const ENVELOPE_KEYS: &[&str] =
    &["id", "type", "timestamp", "timestamp_ms", "conn_id", "stream_key", "seq", "protocol", "addr", "data"];

/// The `data` keys of each event type (docs/hooks.md, Events, Event types).
fn data_keys(event_type: &str) -> Option<&'static [&'static str]> {
    Some(match event_type {
        "connection_accept" => &["remote_addr", "protocol"],
        "handshake_complete" | "stream_create" | "stream_delete" | "stream_unavailable" | "no_viewers" => &[],
        "connect" => &["app", "tcurl", "flashver", "swfurl", "pageurl", "args"],
        "auth_failed" => &["action", "error"],
        "publish_start" | "play_start" => &["args"],
        "publish_update" => &["time", "timestamp", "bytes_in", "bitrate_kbps"],
        "publish_stop" => &[
            "audio_packets",
            "video_packets",
            "total_bytes",
            "bytes_in",
            "bytes_out",
            "audio_codec",
            "video_codec",
            "duration_sec",
        ],
        "play_update" => &["time", "timestamp", "bytes_out"],
        "play_stop" => &["bytes_out", "duration_sec", "dropped_packets"],
        "codec_detected" => &["audio_codec", "video_codec", "width", "height", "sample_rate", "channels", "profile"],
        "subscriber_count" => &["count"],
        "connection_close" => &["role", "duration_sec", "bytes_in", "bytes_out", "reason"],
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A callback's form fields: the query of a GET, the body of a POST.
fn form_of(request: &Request) -> Vec<(String, String)> {
    match request.method.as_str() {
        "GET" => parse_form(request.query.as_bytes()),
        "POST" => {
            assert_eq!(
                request.header("content-type"),
                Some("application/x-www-form-urlencoded"),
                "callback POST body type: {request:?}"
            );
            parse_form(&request.body)
        }
        other => panic!("callback with method {other}: {request:?}"),
    }
}

/// The form fields of every callback to `path`, in arrival order.
fn calls_to(receiver: &HttpReceiver, path: &str) -> Vec<Vec<(String, String)>> {
    receiver.requests().iter().filter(|r| r.path == path).map(form_of).collect()
}

fn count_to(receiver: &HttpReceiver, path: &str) -> usize {
    receiver.requests().iter().filter(|r| r.path == path).count()
}

/// The value of `name`, which must appear exactly once.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    let values: Vec<&str> = fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
    match values.as_slice() {
        [value] => value,
        _ => panic!("field {name:?} should appear exactly once, got {values:?} in {fields:?}"),
    }
}

fn number(fields: &[(String, String)], name: &str) -> u64 {
    let text = field(fields, name);
    text.parse().unwrap_or_else(|_| panic!("field {name}={text:?} is not an unsigned integer: {fields:?}"))
}

/// The callback has exactly these field names, each once.
fn assert_fields(fields: &[(String, String)], expected: &BTreeSet<String>, what: &str) {
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    let unique: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(unique.len(), names.len(), "{what}: a field repeats: {fields:?}");
    let missing: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{what}: missing {missing:?}, extra {extra:?}\n{fields:?}");
}

/// Waits until `ready(requests)` holds; returns the requests then, or panics with `what` and
/// the server log.
fn wait_requests(
    receiver: &HttpReceiver,
    server: &TestServer,
    what: &str,
    ready: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    eventually(ARRIVAL, || {
        let requests = receiver.requests();
        ready(&requests).then_some(requests)
    })
    .unwrap_or_else(|| {
        let got: Vec<String> = receiver
            .requests()
            .iter()
            .map(|r| format!("{} {} {}", r.path, r.query, String::from_utf8_lossy(&r.body)))
            .collect();
        panic!("{what} within {ARRIVAL:?}; received {got:#?}\n--- server log ---\n{}", server.log())
    })
}

/// A webhook request's JSON body.
fn body_json(request: &Request) -> Value {
    assert_eq!(request.method, "POST", "{request:?}");
    assert_eq!(request.header("content-type"), Some("application/json"), "{request:?}");
    serde_json::from_slice(&request.body)
        .unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", String::from_utf8_lossy(&request.body)))
}

fn events_of(requests: &[Request]) -> Vec<Value> {
    requests.iter().map(body_json).collect()
}

/// Waits until the envelopes received satisfy `ready`.
fn wait_events(
    receiver: &HttpReceiver,
    server: &TestServer,
    what: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let requests = wait_requests(receiver, server, what, |requests| ready(&events_of(requests)));
    events_of(&requests)
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}

fn u64_of(value: &Value, what: &str) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{what} is not an unsigned integer: {value}"))
}

/// Checks one envelope against docs/hooks.md: exactly its keys, their types, `seq` 0 exactly for
/// events of no stream, the client's address, and the data keys of its type.
fn check_envelope(event: &Value) {
    let object = event.as_object().unwrap_or_else(|| panic!("envelope is not an object: {event}"));
    let keys: BTreeSet<String> = object.keys().cloned().collect();
    assert_eq!(keys, set(ENVELOPE_KEYS), "envelope keys: {event}");
    let event_type = event["type"].as_str().unwrap_or_else(|| panic!("type: {event}"));
    assert!(event["id"].as_str().is_some_and(|id| !id.is_empty()), "id: {event}");
    let timestamp_ms = u64_of(&event["timestamp_ms"], "timestamp_ms");
    assert_eq!(u64_of(&event["timestamp"], "timestamp"), timestamp_ms / 1000, "timestamp is unix seconds: {event}");
    assert!(timestamp_ms.abs_diff(now_ms()) < 300_000, "timestamp_ms is not now: {event}");
    u64_of(&event["conn_id"], "conn_id");
    assert_eq!(event["protocol"], "rtmp", "{event}");
    let addr: SocketAddr =
        event["addr"].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("addr: {event}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "addr is the client's ip:port: {event}");
    let stream_key = event["stream_key"].as_str().unwrap_or_else(|| panic!("stream_key: {event}"));
    let seq = u64_of(&event["seq"], "seq");
    assert_eq!(seq == 0, stream_key.is_empty(), "seq is 0 exactly for events of no stream: {event}");
    let expected = data_keys(event_type).unwrap_or_else(|| panic!("unknown event type: {event}"));
    let data: BTreeSet<String> =
        event["data"].as_object().unwrap_or_else(|| panic!("data is not an object: {event}")).keys().cloned().collect();
    assert_eq!(data, set(expected), "data keys of {event_type}: {event}");
}

/// Starts ffmpeg publishing to `url` and waits until the server logged its `n`-th publish start.
fn publish_ffmpeg(server: &TestServer, url: &str, size: (u32, u32), n: usize) -> Client {
    let mut publisher = ffmpeg_publish(url, 60, size);
    if !server.wait_for_log_count("publish start", n, PUBLISH_START) {
        panic!(
            "{}\n--- server log ---\n{}",
            publisher.report(&format!("server logged no publish start #{n} for {url}")),
            server.log()
        );
    }
    publisher
}

/// Stops ffmpeg as ^C would: it ends the stream cleanly (FCUnpublish, deleteStream) and exits.
fn interrupt(client: &mut Client, server: &TestServer) {
    let pid = libc::pid_t::try_from(client.pid()).expect("pid fits pid_t");
    // SAFETY: plain syscall on a child we have not reaped yet, so the pid cannot be reused.
    unsafe { libc::kill(pid, libc::SIGINT) };
    if client.wait_timeout(Duration::from_secs(10)).is_none() {
        panic!("{}\n--- server log ---\n{}", client.report("ffmpeg still running 10 s after SIGINT"), server.log());
    }
}

/// The server's answer to an RTMP client's publish or play.
#[derive(Debug)]
struct Answer {
    /// The final `onStatus` code (`NetStream.Publish.Start`, `...BadName`, `NetStream.Play.Start`,
    /// `...Failed`), or `closed` / `timed out`.
    code: String,
    description: String,
    /// From the publish/play request going out (the createStream reply) to the answer: the time
    /// the callback took, plus the server's own work.
    waited: Duration,
    /// Status codes that came before the answer.
    before: Vec<String>,
}

const FINAL_CODES: &[&str] = &[
    "NetStream.Publish.Start",
    "NetStream.Publish.BadName",
    "NetStream.Play.Start",
    "NetStream.Play.Failed",
    "NetStream.Play.StreamNotFound",
];

fn await_answer(client: &mut RtmpClient) -> Answer {
    let deadline = Instant::now() + ANSWER;
    let mut sent = None;
    let mut before = Vec::new();
    let answer = |code: &str, description: String, sent: Option<Instant>, before| Answer {
        code: code.to_owned(),
        description,
        waited: sent.map(|s: Instant| s.elapsed()).unwrap_or_default(),
        before,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event(left) {
            Ok(Some(ClientEvent::StreamCreated { .. })) => sent = Some(Instant::now()),
            Ok(Some(ClientEvent::Status { code, description, level })) => {
                if FINAL_CODES.contains(&code.as_str()) || level == "error" {
                    return answer(&code, description, sent, before);
                }
                before.push(code);
            }
            Ok(Some(ClientEvent::CommandError { code, description, .. })) => {
                return answer(&code, description, sent, before);
            }
            Ok(Some(_)) => {}
            Ok(None) => return answer("timed out", String::new(), sent, before),
            Err(error) => return answer("closed", error.to_string(), sent, before),
        }
    }
}

fn rtmp_connect(server: &TestServer, goal: Goal) -> RtmpClient {
    RtmpClient::connect(server.rtmp_addr(), "live", goal)
        .unwrap_or_else(|e| panic!("connect: {e}\n--- server log ---\n{}", server.log()))
}

/// Connects and drives the client until its publish or play request is out (the server is then
/// deciding), without waiting for the answer.
fn rtmp_request_sent(server: &TestServer, goal: Goal, what: &str) -> RtmpClient {
    let mut client = rtmp_connect(server, goal);
    loop {
        match client.next_event(ANSWER) {
            Ok(Some(ClientEvent::StreamCreated { .. })) => return client,
            Ok(Some(_)) => {}
            other => panic!("{what}: {other:?}\n{}", server.log()),
        }
    }
}

/// Publishes `name` (query allowed) with the in-test client and asserts it is admitted.
fn rtmp_publish(server: &TestServer, name: &str) -> (RtmpClient, Answer) {
    let mut client = rtmp_connect(server, Goal::Publish(name.into()));
    let answer = await_answer(&mut client);
    assert_eq!(
        answer.code,
        "NetStream.Publish.Start",
        "publish {name}: {answer:?}\n--- server log ---\n{}",
        server.log()
    );
    (client, answer)
}

/// Waits until the server closes the client's connection; false if it is still open at `timeout`.
fn closed_by_server(client: &mut RtmpClient, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match client.next_event(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
    false
}

/// Opens and closes `n` raw TCP connections (no RTMP at all): each is one connection_accept and
/// one connection_close event.
fn touch_connections(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        drop(stream);
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// Callbacks ([notify])
// ---------------------------------------------------------------------------------------------

/// ffmpeg publishes with arguments, ffprobe plays with others; every callback's field set is
/// checked name by name against docs/hooks.md's table, and the values that are known exactly.
#[test]
fn callbacks_carry_exactly_the_documented_fields() {
    let receiver = HttpReceiver::start();
    let toml = format!(
        "[notify]\non_connect = \"{}\"\non_publish = \"{}\"\non_play = \"{}\"\non_done = \"{}\"\n\
         on_publish_done = \"{}\"\non_play_done = \"{}\"\n",
        receiver.url("/connect"),
        receiver.url("/publish"),
        receiver.url("/play"),
        receiver.url("/done"),
        receiver.url("/publish_done"),
        receiver.url("/play_done"),
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let tcurl = format!("rtmp://{}/live", server.rtmp_addr());
    let publish_url = format!("{tcurl}/cam1?token=abc&foo=bar");
    let play_url = format!("{tcurl}/cam1?viewer=v1&foo=baz");

    let mut publisher = publish_ffmpeg(&server, &publish_url, SMALL, 1);
    let probed = common::try_ffprobe_json(&play_url, PROBE)
        .unwrap_or_else(|e| panic!("{e}\n{}\n--- server log ---\n{}", publisher.report("publisher"), server.log()));
    assert_plays_h264_aac(&probed, SMALL, &server.log());
    wait_requests(&receiver, &server, "no play_done/done after ffprobe left", |r| {
        r.iter().any(|r| r.path == "/play_done") && r.iter().any(|r| r.path == "/done")
    });
    interrupt(&mut publisher, &server);
    wait_requests(&receiver, &server, "no publish_done and second done after the publisher left", |r| {
        r.iter().any(|r| r.path == "/publish_done") && r.iter().filter(|r| r.path == "/done").count() == 2
    });
    // Anything late (a duplicate) would show up now.
    thread::sleep(Duration::from_millis(300));
    let context = format!("--- server log ---\n{}", server.log());

    let base = set(BASE_FIELDS);
    let with = |extra: &[&str]| -> BTreeSet<String> { base.iter().cloned().chain(set(extra)).collect() };
    let publishes = calls_to(&receiver, "/publish");
    let plays = calls_to(&receiver, "/play");
    assert_eq!((publishes.len(), plays.len()), (1, 1), "one publish and one play callback\n{context}");
    let (publish, play) = (&publishes[0], &plays[0]);

    // Fields every call shares, with the values known in advance.
    let common_values = |fields: &[(String, String)], call: &str, name: &str| {
        assert_eq!(field(fields, "call"), call, "{fields:?}");
        assert_eq!(field(fields, "protocol"), "rtmp", "{fields:?}");
        assert_eq!(field(fields, "addr"), "127.0.0.1", "addr is the client's IP alone: {fields:?}");
        assert_eq!(field(fields, "app"), "live", "{fields:?}");
        assert_eq!(field(fields, "name"), name, "{fields:?}");
        assert_eq!(field(fields, "tcurl"), tcurl, "{fields:?}");
        assert!(!field(fields, "flashver").is_empty(), "ffmpeg sends a flashVer: {fields:?}");
        field(fields, "swfurl");
        field(fields, "pageurl");
        number(fields, "clientid")
    };

    assert_fields(publish, &with(&["type", "token", "foo"]), "publish");
    let publisher_id = common_values(publish, "publish", "cam1");
    assert_eq!(field(publish, "type"), "live");
    assert_eq!(field(publish, "url"), publish_url, "url is the full URL with its query");
    assert_eq!((field(publish, "token"), field(publish, "foo")), ("abc", "bar"), "arguments pass through");

    assert_fields(play, &with(&["start", "duration", "reset", "viewer", "foo"]), "play");
    let player_id = common_values(play, "play", "cam1");
    assert_ne!(player_id, publisher_id, "clientid names the connection");
    assert_eq!(field(play, "url"), play_url);
    for name in ["start", "duration"] {
        let value = field(play, name);
        assert!(value.parse::<f64>().is_ok(), "{name}={value:?} is not a number: {play:?}");
    }
    // ffmpeg sends no duration or reset: the RTMP defaults (-1, true) apply.
    assert_eq!(field(play, "duration"), "-1", "{play:?}");
    assert_eq!(field(play, "reset"), "1", "{play:?}");
    assert_eq!((field(play, "viewer"), field(play, "foo")), ("v1", "baz"));

    let connects = calls_to(&receiver, "/connect");
    assert_eq!(connects.len(), 2, "publisher and player each connect once\n{context}");
    for connect in &connects {
        assert_fields(connect, &base, "connect");
        let id = common_values(connect, "connect", "");
        assert!(id == publisher_id || id == player_id, "connect clientid {id} is the publisher's or the player's");
    }

    let done_fields = |extra: &[&str]| with(&[&["bytes_in", "bytes_out", "duration"][..], extra].concat());
    let publish_dones = calls_to(&receiver, "/publish_done");
    let play_dones = calls_to(&receiver, "/play_done");
    let dones = calls_to(&receiver, "/done");
    assert_eq!((publish_dones.len(), play_dones.len(), dones.len()), (1, 1, 2), "done callbacks\n{context}");
    let publish_done = &publish_dones[0];
    assert_fields(publish_done, &done_fields(&["token", "foo"]), "publish_done");
    assert_eq!(common_values(publish_done, "publish_done", "cam1"), publisher_id);
    assert_eq!(field(publish_done, "url"), publish_url);
    assert!(number(publish_done, "bytes_in") > 10_000, "a few seconds of video came in: {publish_done:?}");
    assert!(number(publish_done, "bytes_out") > 0, "the server answered the publisher: {publish_done:?}");
    number(publish_done, "duration");
    let play_done = &play_dones[0];
    assert_fields(play_done, &done_fields(&["viewer", "foo"]), "play_done");
    assert_eq!(common_values(play_done, "play_done", "cam1"), player_id);
    assert!(number(play_done, "bytes_out") > 10_000, "the player got video: {play_done:?}");
    assert!(number(play_done, "bytes_in") > 0, "{play_done:?}");
    number(play_done, "duration");

    // `done` is told for both, with the same numbers as the specific callback.
    for specific in [publish_done, play_done] {
        let id = field(specific, "clientid");
        let done = dones.iter().find(|d| field(d, "clientid") == id).unwrap_or_else(|| panic!("no done for {id}"));
        let args: &[&str] = if id == publisher_id.to_string() { &["token", "foo"] } else { &["viewer", "foo"] };
        assert_fields(done, &done_fields(args), "done");
        assert_eq!(field(done, "call"), "done");
        for name in ["bytes_in", "bytes_out", "duration", "name", "url", "addr"] {
            assert_eq!(field(done, name), field(specific, name), "done and its specific callback differ on {name}");
        }
    }

    // Last, as the least consequential check: at connect the client has asked for its tcUrl and
    // nothing more, so that is the full URL it asked for.
    for connect in &connects {
        assert_eq!(field(connect, "url"), tcurl, "connect url is the URL the client asked for: {connect:?}");
    }
}

/// A client argument named like a callback field never reaches the callback under that name:
/// `call`, `name`, `addr`... appear once each, with ringcast's values (GET method, so the
/// fields travel in the query string, where a naive append would put the client's second).
#[test]
fn client_arguments_cannot_override_callback_fields() {
    let receiver = HttpReceiver::start();
    // The file and the flags together: on_publish_done exists only in the file.
    let toml = format!("[notify]\non_publish_done = \"{}\"\n", receiver.url("/publish_done"));
    let on_publish = receiver.url("/publish?static=1");
    let server = TestServer::start_with_config(&toml, &["--notify-method", "get", "--on-publish", &on_publish]);
    let query: Vec<String> = RESERVED_FIELDS.iter().map(|name| format!("{name}=evil")).collect();
    let name = format!("cam6?{}&token=ok", query.join("&"));
    let (client, _) = rtmp_publish(&server, &name);
    drop(client);
    wait_requests(&receiver, &server, "no publish_done", |r| r.iter().any(|r| r.path == "/publish_done"));

    let publish = &calls_to(&receiver, "/publish")[0];
    let done = &calls_to(&receiver, "/publish_done")[0];
    let base = set(BASE_FIELDS);
    let publish_set: BTreeSet<String> = base.iter().cloned().chain(set(&["type", "token", "static"])).collect();
    let done_set: BTreeSet<String> =
        base.iter().cloned().chain(set(&["bytes_in", "bytes_out", "duration", "token"])).collect();
    assert_fields(publish, &publish_set, "publish");
    assert_fields(done, &done_set, "publish_done");
    for (fields, call) in [(publish, "publish"), (done, "publish_done")] {
        assert_eq!(field(fields, "call"), call);
        assert_eq!(field(fields, "name"), "cam6");
        assert_eq!(field(fields, "addr"), "127.0.0.1");
        assert_eq!(field(fields, "app"), "live");
        assert_eq!(field(fields, "token"), "ok", "other arguments still pass through");
        let overridden: Vec<_> = fields.iter().filter(|(_, v)| v == "evil").collect();
        assert!(overridden.is_empty(), "client arguments overrode {overridden:?} in {call}: {fields:?}");
    }
    assert_eq!(field(publish, "type"), "live");
    assert_eq!(field(publish, "static"), "1", "the callback URL's own query is kept");
}

/// A callback answering 403 refuses the connect (`NetConnection.Connect.Rejected`), the publish
/// (ffmpeg fails, the in-test client gets `Publish.BadName` naming the callback and never a
/// `Publish.Start`) and the play (ffprobe fails, `Play.Failed`), then the connection is closed;
/// each refusal is an `auth_failed` event with action and error. Configured by the CLI flags
/// alone.
#[test]
fn a_refusing_callback_stops_publish_and_play_and_emits_auth_failed() {
    let on_connect = HttpReceiver::start();
    on_connect.reply(Reply::status(403)); // the first client only
    let on_publish = HttpReceiver::start();
    on_publish.reply(Reply::status(403)); // ffmpeg
    on_publish.reply(Reply::status(403)); // the in-test client
    let on_play = HttpReceiver::start();
    on_play.set_default(Reply::status(403));
    let sink = HttpReceiver::start();
    let flags = [
        ("--on-connect", on_connect.url("/connect")),
        ("--on-publish", on_publish.url("/publish")),
        ("--on-play", on_play.url("/play")),
        ("--hook-webhook", format!("auth_failed={}", sink.url("/events"))),
    ];
    let args: Vec<&str> = flags.iter().flat_map(|(flag, value)| [*flag, value.as_str()]).collect();
    let server = TestServer::start_with(&args);

    let mut client = rtmp_connect(&server, Goal::Publish("never".into()));
    let answer = await_answer(&mut client);
    assert_eq!(answer.code, "NetConnection.Connect.Rejected", "{answer:?}\n{}", server.log());
    assert!(answer.description.contains("on_connect"), "the description names the callback: {answer:?}");
    assert!(closed_by_server(&mut client, Duration::from_secs(5)), "refused client's connection stays open");
    assert_eq!(on_publish.requests().len(), 0, "a refused connection never gets to publish");

    let mut refused = ffmpeg_publish(&server.rtmp_url("live/denied"), 30, SMALL);
    let status = refused.wait_timeout(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!("{}\n--- server log ---\n{}", refused.report("refused ffmpeg still running after 10 s"), server.log())
    });
    assert!(!status.success(), "{}", refused.report("ffmpeg succeeded although on_publish answered 403"));
    assert!(
        server.wait_for_line_with(&["denied by callback", "publish"], ARRIVAL),
        "no `denied by callback` for the publish\n{}",
        server.log()
    );

    let mut client = rtmp_connect(&server, Goal::Publish("denied2?token=t".into()));
    let answer = await_answer(&mut client);
    assert_eq!(answer.code, "NetStream.Publish.BadName", "{answer:?}");
    assert!(answer.description.contains("on_publish"), "the description names the callback: {answer:?}");
    assert!(!answer.before.iter().any(|c| c == "NetStream.Publish.Start"), "Start before the refusal: {answer:?}");
    assert!(closed_by_server(&mut client, Duration::from_secs(5)), "refused publisher's connection stays open");

    // An admitted publisher (the script is used up: 200), then players refused by on_play.
    let mut publisher = publish_ffmpeg(&server, &server.rtmp_url("live/ok"), SMALL, 1);
    let started = Instant::now();
    let probed = common::try_ffprobe_json(&server.rtmp_url("live/ok"), Duration::from_secs(10));
    assert!(probed.is_err(), "ffprobe played although on_play answered 403: {probed:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "ffprobe was not refused promptly: {probed:?}");
    assert!(
        server.wait_for_line_with(&["denied by callback", "play"], ARRIVAL),
        "no `denied by callback` for the play\n{}",
        server.log()
    );
    let mut player = rtmp_connect(&server, Goal::Play("ok".into()));
    let answer = await_answer(&mut player);
    assert_eq!(answer.code, "NetStream.Play.Failed", "{answer:?}");
    assert!(answer.description.contains("on_play"), "the description names the callback: {answer:?}");
    assert!(!answer.before.iter().any(|c| c == "NetStream.Play.Start"), "{answer:?}");
    assert!(closed_by_server(&mut player, Duration::from_secs(5)), "refused player's connection stays open");
    assert!(publisher.is_running(), "{}", publisher.report("refusing players stopped the publisher"));

    let events = wait_events(&sink, &server, "five auth_failed events", |e| e.len() >= 5);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.requests().len(), 5, "the sink wants auth_failed only: {:?}", events_of(&sink.requests()));
    let mut actions = Vec::new();
    for event in &events {
        check_envelope(event);
        assert_eq!(event["type"], "auth_failed", "{event}");
        let error = event["data"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("403"), "the error says what the callback answered: {event}");
        actions.push(event["data"]["action"].as_str().unwrap_or_default().to_owned());
    }
    actions.sort();
    assert_eq!(actions, ["connect", "play", "play", "publish", "publish"], "{events:#?}");
}

/// A 3xx with `Location` renames the stream to Location's last path segment, for publish and
/// for play: the publisher of `live/incoming` lands on `live/real`, and a player of
/// `live/alias` (another stream, of another size) is given `live/real`.
#[test]
fn a_redirecting_callback_renames_the_stream() {
    let on_publish = HttpReceiver::start();
    on_publish.reply(Reply::status(302).header("Location", "rtmp://x/live/real"));
    let on_play = HttpReceiver::start();
    on_play.set_default(Reply::status(302).header("Location", "rtmp://x/live/real?ignored=1"));
    let toml =
        format!("[notify]\non_publish = \"{}\"\non_play = \"{}\"\n", on_publish.url("/publish"), on_play.url("/play"));
    let server = TestServer::start_with_config(&toml, &[]);

    let _real = publish_ffmpeg(&server, &server.rtmp_url("live/incoming"), SMALL, 1);
    assert!(
        server.log_lines_with(&["publish start", "stream=live/real"]).len() == 1,
        "the publisher of live/incoming was not renamed to live/real\n{}",
        server.log()
    );
    let _alias = publish_ffmpeg(&server, &server.rtmp_url("live/alias"), (160, 120), 2);

    let probed = common::try_ffprobe_json(&server.rtmp_url("live/alias"), PROBE)
        .unwrap_or_else(|e| panic!("{e}\n--- server log ---\n{}", server.log()));
    let context = format!("player of live/alias, redirected to live/real\n--- server log ---\n{}", server.log());
    assert_plays_h264_aac(&probed, SMALL, &context);
    assert!(server.log_lines_with(&["play start", "stream=live/real"]).len() == 1, "{context}");
    let play = &calls_to(&on_play, "/play")[0];
    assert_eq!(field(play, "name"), "alias", "the callback is asked about the name the player gave");
}

/// A callback that does not answer within `timeout` is an error, and `on_error` (default deny)
/// decides: the publish is refused right after the timeout, not when the endpoint finally
/// answers. An endpoint that is down refuses at once.
#[test]
fn a_callback_that_times_out_or_is_down_denies_by_default() {
    let slow = HttpReceiver::start();
    slow.set_default(Reply::status(200).delay(Duration::from_secs(3)));
    let sink = HttpReceiver::start();
    let toml = format!(
        "[notify]\ntimeout = \"500ms\"\non_publish = \"{}\"\non_play = \"{}\"\n\n\
         [[webhook]]\nurl = \"{}\"\nevents = [\"auth_failed\"]\n",
        slow.url("/publish"),
        closed_port_url("/play"),
        sink.url("/events")
    );
    let server = TestServer::start_with_config(&toml, &[]);

    let mut client = rtmp_connect(&server, Goal::Publish("slow".into()));
    let answer = await_answer(&mut client);
    assert_eq!(answer.code, "NetStream.Publish.BadName", "{answer:?}\n{}", server.log());
    assert!(
        answer.waited >= Duration::from_millis(400) && answer.waited < Duration::from_millis(1500),
        "refused after {:?}; the timeout is 500ms",
        answer.waited
    );
    assert_eq!(slow.requests().len(), 1, "the slow endpoint was asked");
    assert!(server.wait_for_line_with(&["callback failed", "publish"], ARRIVAL), "{}", server.log());

    let mut player = rtmp_connect(&server, Goal::Play("slow".into()));
    let answer = await_answer(&mut player);
    assert_eq!(answer.code, "NetStream.Play.Failed", "{answer:?}\n{}", server.log());
    assert!(answer.waited < Duration::from_millis(1000), "a refused connection denies at once: {:?}", answer.waited);

    // auth_failed: "a callback denied, timed out or failed".
    let events = wait_events(&sink, &server, "two auth_failed", |e| e.len() >= 2);
    for event in &events {
        check_envelope(event);
    }
    let actions: Vec<&str> = events.iter().map(|e| e["data"]["action"].as_str().unwrap_or_default()).collect();
    assert_eq!(actions, ["publish", "play"], "{events:#?}");
    assert!(events.iter().all(|e| e["data"]["error"].as_str().is_some_and(|m| !m.is_empty())), "{events:#?}");
}

/// The descriptors the process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|dir| dir.count()).unwrap_or(0)
}

/// A callback that times out closes its connection: encoders retrying in a
/// loop against an auth endpoint that accepts and never answers used to leave one descriptor
/// open per attempt, in the server and at the endpoint, until the endpoint died. Here 40
/// attempts are each refused after the 300 ms timeout, and then neither side holds any of
/// their connections.
#[test]
fn a_callback_that_times_out_closes_its_connection() {
    const ATTEMPTS: usize = 40;
    let hole = BlackHole::start();
    let toml = format!("[notify]\ntimeout = \"300ms\"\non_publish = \"{}\"\n", hole.url("/on_publish"));
    let server = TestServer::start_with_config(&toml, &[]);
    let addr = server.rtmp_addr();
    let baseline = open_fds(server.pid());
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            thread::spawn(move || {
                let mut client = RtmpClient::connect(addr, "live", Goal::Publish(format!("hung{i}"))).expect("connect");
                await_answer(&mut client).code
            })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.join().unwrap(), "NetStream.Publish.BadName", "{}", server.log());
    }
    assert_eq!(hole.accepted(), ATTEMPTS, "one connection per attempt (none answered, none reused)");
    let still_open = || (hole.open_connections(), open_fds(server.pid()));
    let closed = eventually(Duration::from_secs(5), || {
        let (endpoint, server_fds) = still_open();
        (endpoint == 0 && server_fds <= baseline + 2).then_some(())
    });
    let (endpoint, server_fds) = still_open();
    assert!(
        closed.is_some(),
        "after {ATTEMPTS} timed-out callbacks: {endpoint} connections still open at the endpoint, the server holds \
         {server_fds} descriptors (baseline {baseline})"
    );
}

/// A session suspended on its callback still answers an operator's kick at once: the admin
/// API's DELETE ends it (and the callback's connection) without waiting for the callback's
/// 30 s timeout.
#[test]
fn a_session_waiting_for_its_callback_can_be_kicked() {
    let hole = BlackHole::start();
    let toml = format!("[notify]\ntimeout = \"30s\"\non_publish = \"{}\"\n", hole.url("/on_publish"));
    let server = TestServer::start_with_config(&toml, &[]);
    let addr = server.rtmp_addr();
    let client = thread::spawn(move || {
        let mut client = RtmpClient::connect(addr, "live", Goal::Publish("waiting".into())).expect("connect");
        let started = Instant::now();
        // The kick closes the connection: no answer comes, the read ends.
        while let Ok(Some(_)) = client.next_event(Duration::from_secs(20)) {}
        started.elapsed()
    });
    assert!(eventually(Duration::from_secs(5), || (hole.accepted() == 1).then_some(())).is_some(), "on_publish asked");
    let api = server.api_addr();
    let clients = api_request(api, "GET", "/api/clients");
    let conn_id = serde_json::from_str::<Value>(&clients).expect("JSON clients")["clients"][0]["conn_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("one client listed: {clients}"));
    let kicked_at = Instant::now();
    let answer = api_request(api, "DELETE", &format!("/api/clients/{conn_id}"));
    assert!(answer.contains("\"kicked\":true"), "{answer}");
    let waited = client.join().expect("client thread");
    assert!(kicked_at.elapsed() < Duration::from_secs(5), "the kick took {:?}", kicked_at.elapsed());
    assert!(waited < Duration::from_secs(10), "the client waited {waited:?} for its connection to close");
    let closed = eventually(Duration::from_secs(5), || (hole.open_connections() == 0).then_some(()));
    assert!(closed.is_some(), "the abandoned callback's connection is still open");
}

/// One request to the admin API (no token); the body of its answer.
fn api_request(addr: SocketAddr, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the admin API");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: ringcast\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the answer");
    reply.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(reply)
}

/// With `on_error = "allow"` the same timeout admits the publisher.
#[test]
fn on_error_allow_admits_when_the_callback_times_out() {
    let slow = HttpReceiver::start();
    slow.set_default(Reply::status(403).delay(Duration::from_secs(3)));
    let toml =
        format!("[notify]\ntimeout = \"500ms\"\non_error = \"allow\"\non_publish = \"{}\"\n", slow.url("/publish"));
    let server = TestServer::start_with_config(&toml, &[]);
    let (_client, answer) = rtmp_publish(&server, "slow");
    assert!(
        answer.waited >= Duration::from_millis(400) && answer.waited < Duration::from_millis(2500),
        "admitted after {:?}; the timeout is 500ms",
        answer.waited
    );
}

/// While a session waits for its callback, every other session keeps flowing: on a single
/// shard, two publishers wait 3 s on their on_publish while an admitted publisher's frames reach
/// two players within milliseconds; then the waiting two are admitted.
#[test]
fn a_pending_callback_suspends_only_its_own_session() {
    const HOLD: Duration = Duration::from_secs(3);
    let on_publish = HttpReceiver::start();
    on_publish.reply(Reply::status(200)); // the flowing publisher
    on_publish.set_default(Reply::status(200).delay(HOLD));
    let toml = format!("[notify]\non_publish = \"{}\"\n", on_publish.url("/publish"));
    // One shard: the waiting sessions share it with the flowing ones.
    let server = TestServer::start_with_config(&toml, &["--shards", "1"]);
    let (mut source, _) = rtmp_publish(&server, "flow");
    source.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    let mut players: Vec<RtmpClient> = (0..2)
        .map(|_| {
            let mut player = rtmp_connect(&server, Goal::Play("flow".into()));
            assert_eq!(await_answer(&mut player).code, "NetStream.Play.Start");
            player
        })
        .collect();
    // Publishers whose callback is outstanding: driven until their publish request is out.
    let mut waiting: Vec<RtmpClient> = (0..2)
        .map(|i| rtmp_request_sent(&server, Goal::Publish(format!("wait{i}")), &format!("waiting publisher {i}")))
        .collect();
    wait_requests(&on_publish, &server, "the waiting publishers' callbacks", |r| r.len() >= 3);
    let asked = Instant::now();

    let mut worst = Duration::ZERO;
    let mut seq = 0;
    while asked.elapsed() < HOLD / 2 {
        let sent = Instant::now();
        source.send_media(9, seq * 40, &media::video(seq, seq % 25 == 0, 500)).unwrap();
        for player in &mut players {
            loop {
                match player.next_event(Duration::from_secs(2)) {
                    Ok(Some(ClientEvent::Video { payload, .. })) if media::seq_of(&payload) == Some(seq) => break,
                    Ok(Some(_)) => {}
                    other => panic!("a player did not get frame {seq}: {other:?}\n{}", server.log()),
                }
            }
        }
        worst = worst.max(sent.elapsed());
        seq += 1;
        thread::sleep(Duration::from_millis(40));
    }
    assert!(seq > 10, "only {seq} frames went through");
    assert!(worst < Duration::from_millis(500), "a frame took {worst:?} to reach the players");
    for (i, client) in waiting.iter_mut().enumerate() {
        let answer = await_answer(client);
        assert_eq!(answer.code, "NetStream.Publish.Start", "waiting publisher {i}: {answer:?}");
    }
    assert!(asked.elapsed() >= HOLD - Duration::from_millis(300), "admitted before the endpoint answered");
}

/// A storm: 100 players arrive at once, each asking an on_play endpoint that takes 300 ms.
/// Their callbacks are all in flight together (a pool of a few blocking workers would take
/// 100 x 300 ms / workers), and a second wave rides the first wave's keep-alive connections.
#[test]
fn a_storm_of_callbacks_is_in_flight_at_once_on_kept_connections() {
    const DELAY: Duration = Duration::from_millis(300);
    const PLAYERS: usize = 100;
    let on_play = HttpReceiver::start();
    on_play.set_default(Reply::status(200).delay(DELAY));
    let toml = format!("[notify]\non_play = \"{}\"\n", on_play.url("/play"));
    let server = TestServer::start_with_config(&toml, &["--shards", "1"]);
    for wave in 0..2 {
        let started = Instant::now();
        // Each player is driven until its play request is out, then all wait together.
        let mut players: Vec<RtmpClient> = (0..PLAYERS)
            .map(|i| rtmp_request_sent(&server, Goal::Play("storm".into()), &format!("wave {wave} player {i}")))
            .collect();
        for (i, player) in players.iter_mut().enumerate() {
            let answer = await_answer(player);
            assert_eq!(answer.code, "NetStream.Play.Start", "wave {wave} player {i}: {answer:?}\n{}", server.log());
        }
        let took = started.elapsed();
        assert!(took < DELAY * 5, "wave {wave}: {PLAYERS} callbacks of {DELAY:?} took {took:?}");
    }
    assert_eq!(count_to(&on_play, "/play"), 2 * PLAYERS);
    // Seen from the endpoint: far more at once than a pool of hook_concurrency (10) workers
    // would send. The players' requests go out one after another from this test, so not all
    // 100 overlap on a slow machine.
    let most = on_play.most_in_flight();
    assert!(most >= 2 * 10, "at most {most} callbacks were in flight at once");
    let connections = on_play.connections();
    assert!(connections <= PLAYERS + PLAYERS / 10, "{connections} connections for two waves of {PLAYERS}");
    // Kept for the next callbacks, and shown as such: descriptors an operator can account for.
    let idle = common::metric_total(&server.metrics(), "ringcast_callback_connections_idle") as usize;
    assert!((1..=connections).contains(&idle), "{idle} idle callback connections kept of {connections} opened");
}

/// `on_update` every `update_interval` while publishing and playing: `call=update_publish` /
/// `update_play` with `time` and `timestamp` besides the common fields; without update_strict
/// its answer (403 here) changes nothing. The publish_update / play_update events come at the
/// same pace.
#[test]
fn on_update_reports_publishers_and_players_periodically() {
    let receiver = HttpReceiver::start();
    receiver.set_default(Reply::status(403));
    let sink = HttpReceiver::start();
    let toml = format!(
        "[notify]\non_update = \"{}\"\nupdate_interval = \"1s\"\n\n[[webhook]]\nurl = \"{}\"\n\
         events = [\"publish_update\", \"play_update\"]\n",
        receiver.url("/update"),
        sink.url("/events")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let (mut publisher, _) = rtmp_publish(&server, "u11?token=u");
    publisher.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    let mut player = rtmp_connect(&server, Goal::Play("u11".into()));
    assert_eq!(await_answer(&mut player).code, "NetStream.Play.Start");

    let started = Instant::now();
    let mut seq = 0;
    let mut last_sent = 0;
    let updates = |call: &str| calls_to(&receiver, "/update").into_iter().filter(|f| field(f, "call") == call).count();
    while updates("update_publish") < 3 || updates("update_play") < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "updates: {:?}\n{}", receiver.requests(), server.log());
        last_sent = started.elapsed().as_millis() as u32;
        publisher.send_media(9, last_sent, &media::video(seq, seq % 25 == 0, 300)).expect("publisher still connected");
        seq += 1;
        // Keep the player's socket drained.
        while let Ok(Some(_)) = player.next_event(Duration::from_millis(1)) {}
        thread::sleep(Duration::from_millis(40));
    }
    // 403s under update_strict = false: both still connected, media still flows.
    publisher.send_media(9, last_sent + 40, &media::video(seq, true, 300)).expect("publisher still connected");
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        match player.next_event(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(ClientEvent::Video { payload, .. })) if media::seq_of(&payload) == Some(seq) => break true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break false,
        }
    };
    assert!(got, "the player stopped getting media after 403 updates\n{}", server.log());

    let calls = calls_to(&receiver, "/update");
    let base = set(BASE_FIELDS);
    let mut publish_times = Vec::new();
    for fields in &calls {
        assert_eq!(field(fields, "name"), "u11");
        let expected: BTreeSet<String> = match field(fields, "call") {
            "update_publish" => base.iter().cloned().chain(set(&["time", "timestamp", "token"])).collect(),
            "update_play" => base.iter().cloned().chain(set(&["time", "timestamp"])).collect(),
            other => panic!("unexpected call {other}: {fields:?}"),
        };
        assert_fields(fields, &expected, field(fields, "call"));
        let (time, timestamp) = (number(fields, "time"), number(fields, "timestamp"));
        if field(fields, "call") == "update_publish" {
            assert_eq!(field(fields, "token"), "u");
            assert!(timestamp <= u64::from(last_sent), "timestamp {timestamp} is the last media timestamp");
            publish_times.push((time, timestamp));
        }
    }
    assert!(
        publish_times.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "time and timestamp advance: {publish_times:?}"
    );
    let (last_time, last_timestamp) = *publish_times.last().unwrap();
    assert!(last_time >= 2, "third update is >= 2 s into the publish: {publish_times:?}");
    assert!(last_timestamp >= 1500, "media timestamp of the third update: {publish_times:?}");

    let events = wait_events(&sink, &server, "update events", |e| {
        of_type(e, "publish_update").len() >= 3 && of_type(e, "play_update").len() >= 2
    });
    for event in &events {
        check_envelope(event);
        assert_eq!(event["stream_key"], "live/u11", "{event}");
    }
    let publish_updates = of_type(&events, "publish_update");
    let third = &publish_updates[2]["data"];
    assert!(third["time"].as_u64().is_some_and(|t| (2..=4).contains(&t)), "publish_update time: {third}");
    assert!(third["timestamp"].as_u64().is_some_and(|t| t >= 1500 && t <= u64::from(last_sent)), "{third}");
    assert!(third["bytes_in"].as_u64().is_some_and(|b| b > 10 * 300), "publish_update bytes_in: {third}");
    assert!(third["bitrate_kbps"].as_f64().is_some_and(|k| k > 0.0), "publish_update bitrate: {third}");
    let play_update = &of_type(&events, "play_update")[1]["data"];
    assert!(play_update["bytes_out"].as_u64().is_some_and(|b| b > 10 * 300), "play_update: {play_update}");
    assert!(play_update["time"].as_u64().is_some_and(|t| t >= 1), "play_update: {play_update}");
}

/// With `update_strict = true` a non-2xx answer to on_update ends the session: the first update
/// (200) keeps the publisher, the second (403) disconnects it.
#[test]
fn update_strict_disconnects_on_a_refused_update() {
    let receiver = HttpReceiver::start();
    receiver.reply(Reply::status(200));
    receiver.set_default(Reply::status(403));
    let toml = format!(
        "[notify]\non_update = \"{}\"\nupdate_interval = \"1s\"\nupdate_strict = true\n",
        receiver.url("/update")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let connected = Instant::now();
    let (mut publisher, _) = rtmp_publish(&server, "strict");
    let mut seq = 0;
    let closed_after = loop {
        let elapsed = connected.elapsed();
        assert!(elapsed < Duration::from_secs(8), "publisher not disconnected\n{}", server.log());
        if publisher.send_media(9, elapsed.as_millis() as u32, &media::video(seq, seq % 25 == 0, 300)).is_err() {
            break elapsed;
        }
        seq += 1;
        if let Err(_closed) = publisher.next_event(Duration::from_millis(40)) {
            break connected.elapsed();
        }
    };
    let updates = calls_to(&receiver, "/update");
    assert!(updates.len() >= 2, "disconnected before the refused update: {updates:?}");
    assert!(
        closed_after >= Duration::from_millis(1500),
        "disconnected after {closed_after:?}, before the second (refused) update\n{}",
        server.log()
    );
    assert!(server.wait_for_log("update_strict", ARRIVAL), "{}", server.log());
}

// ---------------------------------------------------------------------------------------------
// Event sinks
// ---------------------------------------------------------------------------------------------

/// A publish and a play through ffmpeg/ffprobe produce the documented events, each a valid
/// envelope with unique `id`s, and per stream a gap-free `seq` in the order they happened; a
/// filtered sink gets only its events, byte-identical; playing a stream nobody publishes gives
/// stream_unavailable. The filtered sink is also signed and sends a configured header.
#[test]
fn a_publish_and_a_play_produce_the_documented_events() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const AUTHORIZATION: &str = "Basic T1BFTlZJRFVBUFA6c2VjcmV0";
    let all = HttpReceiver::start();
    let some = HttpReceiver::start();
    let toml = format!(
        "[[webhook]]\nurl = \"{}\"\n\n[[webhook]]\nurl = \"{}\"\nevents = [\"publish_start\", \"publish_stop\"]\n\
         secret = \"{SECRET}\"\nheaders = [\"Authorization: {AUTHORIZATION}\"]\n",
        all.url("/all"),
        some.url("/some")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let tcurl = format!("rtmp://{}/live", server.rtmp_addr());

    let mut publisher = publish_ffmpeg(&server, &format!("{tcurl}/ev7?token=t7"), SMALL, 1);
    // Both codecs are seen before a player comes, so the stream's events have one possible order.
    wait_events(&all, &server, "two codec_detected", |e| of_type(e, "codec_detected").len() == 2);
    let probed = common::try_ffprobe_json(&format!("{tcurl}/ev7?viewer=v7"), PROBE)
        .unwrap_or_else(|e| panic!("{e}\n--- server log ---\n{}", server.log()));
    assert_plays_h264_aac(&probed, SMALL, &server.log());
    wait_events(&all, &server, "no_viewers after ffprobe left", |e| !of_type(e, "no_viewers").is_empty());
    interrupt(&mut publisher, &server);
    wait_events(&all, &server, "stream_delete and both connection_close", |e| {
        !of_type(e, "stream_delete").is_empty() && of_type(e, "connection_close").len() == 2
    });

    // A player of a stream nobody publishes.
    let mut waiting = rtmp_connect(&server, Goal::Play("never".into()));
    assert_eq!(await_answer(&mut waiting).code, "NetStream.Play.Start", "players may wait for a publisher");
    wait_events(&all, &server, "stream_unavailable", |e| !of_type(e, "stream_unavailable").is_empty());
    drop(waiting);
    let events = wait_events(&all, &server, "events of the waiting player's end", |e| {
        of_type(e, "stream_delete").len() == 2 && of_type(e, "connection_close").len() == 3
    });
    thread::sleep(Duration::from_millis(300));
    assert_eq!(all.requests().len(), events.len(), "late events: {:#?}", events_of(&all.requests()));
    let context = format!("{events:#?}\n--- server log ---\n{}", server.log());

    for event in &events {
        check_envelope(event);
    }
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique\n{context}");

    let stream = |key: &str| -> Vec<&Value> { events.iter().filter(|e| e["stream_key"] == key).collect() };
    let types =
        |list: &[&Value]| -> Vec<String> { list.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect() };
    let check_stream = |key: &str, expected: &[&str]| -> Vec<Value> {
        let arrived = stream(key);
        let seqs: Vec<u64> = arrived.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=arrived.len() as u64).collect::<Vec<_>>(),
            "{key}: seq is 1, 2, 3... in arrival order\n{context}"
        );
        assert_eq!(types(&arrived), expected, "{key}: events\n{context}");
        arrived.into_iter().cloned().collect()
    };
    let ev7 = check_stream(
        "live/ev7",
        &[
            "stream_create",
            "publish_start",
            "codec_detected",
            "codec_detected",
            "play_start",
            "subscriber_count",
            "play_stop",
            "subscriber_count",
            "no_viewers",
            "publish_stop",
            "stream_delete",
        ],
    );
    check_stream(
        "live/never",
        &[
            "stream_create",
            "stream_unavailable",
            "play_start",
            "subscriber_count",
            "play_stop",
            "subscriber_count",
            "stream_delete",
        ],
    );

    // Per connection, its stream-less events in order.
    let publisher_conn = ev7[1]["conn_id"].as_u64().unwrap();
    let player_conn = ev7[4]["conn_id"].as_u64().unwrap();
    assert_ne!(publisher_conn, player_conn);
    for (conn, role) in [(publisher_conn, "publisher"), (player_conn, "player")] {
        let own: Vec<&Value> = events.iter().filter(|e| e["conn_id"] == conn && e["seq"] == 0).collect();
        assert_eq!(
            types(&own),
            ["connection_accept", "handshake_complete", "connect", "connection_close"],
            "{role}'s connection events\n{context}"
        );
        assert_eq!(own[0]["data"]["remote_addr"], own[0]["addr"], "{}", own[0]);
        assert_eq!(own[0]["data"]["protocol"], "rtmp");
        let connect = &own[2]["data"];
        assert_eq!((connect["app"].as_str(), connect["tcurl"].as_str()), (Some("live"), Some(tcurl.as_str())));
        assert!(connect["flashver"].as_str().is_some_and(|f| !f.is_empty()), "{connect}");
        assert!(connect["args"].is_object(), "{connect}");
        let close = &own[3]["data"];
        assert_eq!(close["role"], role, "{close}");
        assert!(close["bytes_in"].as_u64().is_some_and(|b| b > 0) && close["reason"].is_string(), "{close}");
        let stream_events: Vec<&Value> = ev7.iter().filter(|e| e["conn_id"] == conn).collect();
        assert!(stream_events.iter().all(|e| e["addr"] == own[0]["addr"]), "addr is the connection's\n{context}");
    }

    let data = |i: usize| &ev7[i]["data"];
    assert_eq!(data(1)["args"], json!({"token": "t7"}), "publish_start args");
    let video = ev7.iter().find(|e| e["data"]["width"].is_u64()).unwrap_or_else(|| panic!("no video codec\n{context}"));
    assert_eq!(
        (&video["data"]["video_codec"], &video["data"]["width"], &video["data"]["height"]),
        (&json!("h264"), &json!(SMALL.0), &json!(SMALL.1)),
        "{video}"
    );
    assert_eq!((&data(3)["audio_codec"], &data(3)["video_codec"]), (&json!("aac"), &json!("h264")), "{}", ev7[3]);
    assert_eq!(data(4)["args"], json!({"viewer": "v7"}), "play_start args");
    assert_eq!((&data(5)["count"], &data(7)["count"]), (&json!(1), &json!(0)), "subscriber counts");
    assert!(data(6)["bytes_out"].as_u64().is_some_and(|b| b > 10_000), "play_stop: {}", ev7[6]);
    let stop = data(9);
    for counter in ["audio_packets", "video_packets", "total_bytes", "bytes_in"] {
        assert!(stop[counter].as_u64().is_some_and(|n| n > 0), "publish_stop {counter}: {stop}");
    }
    assert_eq!((&stop["audio_codec"], &stop["video_codec"]), (&json!("aac"), &json!("h264")), "{stop}");
    assert!(stop["duration_sec"].as_f64().is_some_and(|d| d > 0.5), "{stop}");

    // The filtered sink: those two events only, the same bodies (same id, same seq).
    let filtered = events_of(&some.requests());
    let expected: Vec<Value> =
        ev7.iter().filter(|e| e["type"] == "publish_start" || e["type"] == "publish_stop").cloned().collect();
    assert_eq!(filtered, expected, "filtered sink\n{context}");
    for request in some.requests() {
        let id = request.header("webhook-id").unwrap_or_else(|| panic!("no webhook-id: {request:?}"));
        assert_eq!(id, body_json(&request)["id"], "webhook-id is the event id");
        let timestamp = request.header("webhook-timestamp").expect("webhook-timestamp");
        let seconds: u64 = timestamp.parse().expect("webhook-timestamp is unix seconds");
        assert!(seconds.abs_diff(now_ms() / 1000) < 300, "webhook-timestamp {timestamp}");
        assert_eq!(
            request.header("webhook-signature"),
            Some(standard_signature(SECRET, id, timestamp, &request.body).as_str()),
            "signature of {}",
            String::from_utf8_lossy(&request.body)
        );
        assert_eq!(request.header("authorization"), Some(AUTHORIZATION), "configured header");
    }
    assert!(all.requests().iter().all(|r| r.header("webhook-signature").is_none()), "an unsigned sink signs nothing");
}

/// When each of the first `n` requests arrived (to within a condvar wake-up); fewer if they do
/// not all come within [`ARRIVAL`] each.
fn arrival_times(receiver: &HttpReceiver, n: usize) -> Vec<Instant> {
    let mut times = Vec::new();
    for k in 1..=n {
        if receiver.wait_for(k, ARRIVAL).len() < k {
            break;
        }
        times.push(Instant::now());
    }
    times
}

/// Webhook failures, each on its own sink of one server:
/// - 500 twice then 200: the same event (same `id`, same body) three times, after the backoff
///   (1 s, then 2 s, +-20% jitter), and the stream's later events only after it;
/// - 503 with `Retry-After: 3`: the retry waits 3 s, not the 1 s backoff;
/// - 302: a failure, never followed and not retried;
/// - 410: one event and no more, also from later streams.
#[test]
fn webhook_retries_keep_the_id_and_the_stream_order_and_410_disables() {
    let flaky = HttpReceiver::start();
    flaky.reply(Reply::status(500));
    flaky.reply(Reply::status(500));
    let polite = HttpReceiver::start();
    polite.reply(Reply::status(503).header("Retry-After", "3"));
    let elsewhere = HttpReceiver::start();
    let redirect = HttpReceiver::start();
    redirect.set_default(Reply::status(302).header("Location", &elsewhere.url("/stolen")));
    let gone = HttpReceiver::start();
    gone.set_default(Reply::status(410));
    // Only stream events: all go through one per-stream queue, so which event meets the
    // failures (the first, stream_create) and which must wait is certain.
    let events = r#"["stream_create", "publish_start", "publish_stop", "stream_delete"]"#;
    let mut toml = String::new();
    for (receiver, path) in [(&flaky, "/flaky"), (&polite, "/polite"), (&redirect, "/redirect"), (&gone, "/gone")] {
        toml.push_str(&format!("[[webhook]]\nurl = \"{}\"\nevents = {events}\nretries = 3\n\n", receiver.url(path)));
    }
    let server = TestServer::start_with_config(&toml, &[]);

    // Waiters first, so the first attempt's arrival is timed too.
    let (flaky_times, polite_times) = thread::scope(|scope| {
        let flaky_times = scope.spawn(|| arrival_times(&flaky, 3));
        let polite_times = scope.spawn(|| arrival_times(&polite, 2));
        let (publisher, _) = rtmp_publish(&server, "r8");
        drop(publisher);
        (flaky_times.join().unwrap(), polite_times.join().unwrap())
    });
    assert_eq!(flaky_times.len(), 3, "attempts to the 500 sink: {:?}\n{}", flaky.requests(), server.log());
    assert_eq!(polite_times.len(), 2, "attempts to the 503 sink: {:?}\n{}", polite.requests(), server.log());
    wait_requests(&flaky, &server, "all six deliveries to the 500 sink", |r| r.len() >= 6);
    wait_requests(&polite, &server, "all five deliveries to the 503 sink", |r| r.len() >= 5);
    // Anything extra (a fourth attempt, a duplicate) would show up now.
    thread::sleep(Duration::from_millis(300));
    let received = events_of(&flaky.requests());
    let context = format!("{received:#?}\n--- server log ---\n{}", server.log());
    assert_eq!(received.len(), 6, "3 attempts + 3 later events\n{context}");
    for event in &received {
        check_envelope(event);
    }
    let first_id = &received[0]["id"];
    assert!(received[..3].iter().all(|e| e == &received[0]), "the retried body is the same, id and all\n{context}");
    assert_eq!(received[0]["type"], "stream_create", "{context}");
    assert!(received[3..].iter().all(|e| &e["id"] != first_id), "{context}");
    let later: Vec<&str> = received[3..].iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(later, ["publish_start", "publish_stop", "stream_delete"], "the stream waited for the retried event");
    let (first_wait, second_wait) = (flaky_times[1] - flaky_times[0], flaky_times[2] - flaky_times[1]);
    assert!(
        first_wait >= Duration::from_millis(700) && first_wait <= Duration::from_millis(2500),
        "first backoff {first_wait:?}, expected 1 s +-20%"
    );
    assert!(
        second_wait >= Duration::from_millis(1500) && second_wait <= Duration::from_millis(3500),
        "second backoff {second_wait:?}, expected 2 s +-20%"
    );
    assert_eq!(server.log_lines_with(&["will retry", "HTTP 500"]).len(), 2, "{}", server.log());

    let polite_events = events_of(&polite.requests());
    assert_eq!(polite_events[0], polite_events[1], "the 503 retry resends the same event");
    let types: Vec<&str> = polite_events[2..].iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["publish_start", "publish_stop", "stream_delete"]);
    let waited = polite_times[1] - polite_times[0];
    assert!(
        waited >= Duration::from_millis(2800) && waited <= Duration::from_millis(4500),
        "retried after {waited:?}; the receiver asked for Retry-After: 3"
    );

    // 410: one request, the sink disabled, nothing more even for a new stream.
    assert!(server.wait_for_log("410 Gone", ARRIVAL), "{}", server.log());
    let (publisher, _) = rtmp_publish(&server, "r8b");
    drop(publisher);
    wait_requests(&flaky, &server, "the second stream's events", |r| r.len() >= 10);
    wait_requests(&redirect, &server, "the second stream's events at the 302 sink", |r| r.len() >= 8);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(gone.requests().len(), 1, "a 410 disables the sink: {:?}", events_of(&gone.requests()));

    // 302: every event once (a failure, not retried), the redirect never followed.
    let redirected = events_of(&redirect.requests());
    let ids: HashSet<&str> = redirected.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!((redirected.len(), ids.len()), (8, 8), "each event once: {redirected:#?}");
    assert!(elsewhere.requests().is_empty(), "the redirect was followed: {:?}", elsewhere.requests());
    assert!(!server.log_lines_with(&["not followed"]).is_empty(), "{}", server.log());
}

/// The priority lane: with the queue full of deliveries (the default `hook_queue`, 100,000,
/// past the 50,000 a busy deployment must absorb) behind ten webhooks that never answer (one
/// worker each, stuck for hook_timeout = 30 s), an on_publish callback to a fast endpoint still
/// answers in its usual time. The queue's first "full" error proves the backlog reached
/// `hook_queue`.
#[test]
fn callbacks_stay_fast_behind_a_full_queue_of_deliveries() {
    const SINKS: usize = 10;
    /// The default `hook_queue` (docs/hooks.md, Delivery, retries and queues).
    const BACKLOG: usize = 100_000;
    const SAMPLES: usize = 5;
    let hole = BlackHole::start();
    let fast = HttpReceiver::start();
    // The in-memory queue is what is measured: webhooks without an outbox.
    let mut toml = format!(
        "outbox = false\nhook_timeout = \"30s\"\nhook_concurrency = 2\n\n[notify]\non_publish = \"{}\"\n",
        fast.url("/publish")
    );
    // Every event is one delivery per sink: ten sinks make the backlog with a tenth of the events.
    for _ in 0..SINKS {
        toml.push_str(&format!("\n[[webhook]]\nurl = \"{}\"\n", hole.url("/events")));
    }
    let server = TestServer::start_with_config(&toml, &[]);
    let addr = server.rtmp_addr();
    let latencies = |label: &str| -> Vec<Duration> {
        (0..SAMPLES).map(|i| rtmp_publish(&server, &format!("{label}{i}")).1.waited).collect()
    };
    let baseline = latencies("before");

    // Raw connections (accept + close: two events each, so 2 * SINKS deliveries) from a few
    // threads: enough to overflow the queue by ~10%.
    let connections = BACKLOG / (2 * SINKS) * 11 / 10;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (next, failed) = (next.clone(), failed.clone());
            thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < connections {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                        Ok(stream) => drop(stream),
                        Err(_) => _ = failed.fetch_add(1, Ordering::Relaxed),
                    }
                }
            })
        })
        .collect();
    for flooder in flooders {
        flooder.join().unwrap();
    }
    let flood_time = started.elapsed();
    let failed = failed.load(Ordering::Relaxed);
    let full = server.wait_for_log("hook queue full: dropped the oldest deliveries", Duration::from_secs(30));
    let filled_in = started.elapsed();
    assert!(
        full,
        "the queue never reached {BACKLOG} deliveries: {connections} connections ({failed} failed, ~{} deliveries) \
         in {flood_time:?}",
        connections * 2 * SINKS
    );
    // hook_concurrency 2 shared by 10 sinks: each has its share of one worker, stuck.
    assert_eq!(hole.accepted(), SINKS, "one worker per sink, each stuck on the black hole");

    let behind = latencies("after");
    let (before, after) = (median(&baseline), median(&behind));
    println!(
        "priority lane: {connections} connections ({failed} failed) made in {flood_time:.1?} filled the \
         {BACKLOG}-delivery queue after {filled_in:.1?}; on_publish round trip: baseline {baseline:?} (median {before:?}), behind the backlog {behind:?} \
         (median {after:?}); drop lines so far: {:?}",
        server.log_field_values(&["hook queue full"], "dropped")
    );
    assert!(after < Duration::from_millis(500), "callback behind the backlog took {after:?}");
    // A floor absorbs scheduler noise on a loaded 2-core machine when the baseline is ~1 ms.
    let bound = (before * 10).max(Duration::from_millis(50));
    assert!(after < bound, "callback behind the backlog took {after:?}, baseline {before:?}");
    assert_eq!(count_to(&fast, "/publish"), 2 * SAMPLES, "every publish was decided by the endpoint");
}

/// A full queue drops its oldest deliveries, each counted and logged in a few summary lines
/// (not one per drop) that add up to the counters: one worker is held for 4 s by the first
/// delivery while 302 more arrive for a queue of 100; afterwards exactly the 100 newest are
/// delivered.
#[test]
fn a_full_hook_queue_drops_the_oldest_deliveries() {
    const QUEUE: usize = 100;
    const FLOOD: usize = 150;
    let receiver = HttpReceiver::start();
    receiver.reply(Reply::status(200).delay(Duration::from_secs(4)));
    // hook_queue exists only in the file; the rest by flags. One shard: "oldest" is the order
    // events were queued in, and connection ids only follow it when one thread accepts and runs
    // every session (with two, a session whose shard was descheduled emits its events late).
    let sink = format!("*={}", receiver.url("/events"));
    let server = TestServer::start_with_config(
        // Drop-oldest is the in-memory queue's: webhooks without an outbox.
        &format!("outbox = false\nhook_queue = {QUEUE}\n"),
        &["--shards", "1", "--hook-concurrency", "1", "--hook-timeout", "30s", "--hook-webhook", &sink],
    );
    let addr = server.rtmp_addr();

    let first = TcpStream::connect(addr).expect("connect");
    assert_eq!(receiver.wait_for(1, ARRIVAL).len(), 1, "first delivery\n{}", server.log());
    drop(first);
    let flood_start = Instant::now();
    touch_connections(addr, FLOOD);
    let flood = flood_start.elapsed();
    // 2 events per connection, the first of them in flight: the rest compete for 100 places.
    let total = 2 * (FLOOD + 1);
    let dropped = (total - 1 - QUEUE) as u64;
    // Drops are summed up in at most one line a second per sink and one for the shards' channel
    // (which drops instead of the sink when the dispatcher thread is slow to be scheduled), the
    // held-back ones flushed a second after the last line even though no event comes any more.
    assert!(
        server.wait_for_log_field_sum(&["hook queue full"], "dropped", dropped, ARRIVAL),
        "expected summaries of {dropped} drops, got {:?}\n{}",
        server.log_field_values(&["hook queue full"], "dropped"),
        server.log()
    );
    let requests = wait_requests(&receiver, &server, "the queue's 100 after the slow one", |r| r.len() > QUEUE);
    thread::sleep(Duration::from_millis(500));
    let received = events_of(&receiver.requests());
    assert_eq!(received.len(), QUEUE + 1, "{:#?}", events_of(&requests));
    let counts = server.log_field_values(&["hook queue full"], "dropped");
    assert_eq!(counts.iter().sum::<u64>(), dropped, "every drop in exactly one summary: {counts:?}\n{}", server.log());
    let metrics = server.metrics();
    let counted = metric_total(&metrics, "ringcast_sink_dropped_total")
        + metric_total(&metrics, "ringcast_hook_dropped_inbound_total");
    assert_eq!(counted, dropped, "the counters agree with the log\n{metrics}");
    // Per log: the first drop at once, one line per second of flood (and of the dispatcher's lag
    // behind it), the last flush.
    let most = 2 * (flood.as_secs() as usize + 3);
    assert!(counts.len() <= most, "{} summary lines for a {flood:?} flood: {counts:?}", counts.len());
    assert_eq!(received[0]["conn_id"], 1);
    for close in of_type(&received, "connection_close") {
        assert_eq!(close["data"]["role"], "none", "a connection that never published nor played: {close}");
    }
    // The newest survive: the last ~50 connections' events, nothing of the early ones.
    let newest = received[1..].iter().map(|e| e["conn_id"].as_u64().unwrap()).max().unwrap();
    assert_eq!(newest, (FLOOD + 1) as u64, "the last connection's events are delivered");
    let oldest_kept = received[1..].iter().map(|e| e["conn_id"].as_u64().unwrap()).min().unwrap();
    assert!(
        oldest_kept > newest - (QUEUE as u64 / 2) - 10,
        "delivered events of connection {oldest_kept}, older than the newest {QUEUE}\n{received:#?}"
    );
}

/// The hook queue is bounded in bytes, not only in events: with the receiver
/// down, every delivery waits for its retry and the connections keep coming. `hook_queue`
/// (100,000 events) would let them all wait; `hook_queue_bytes` (64 KiB here) drops the oldest,
/// counted, and the queued bytes in `/metrics` never pass it.
#[test]
fn the_hook_queue_is_bounded_in_bytes() {
    const BOUND: u64 = 64 * 1024;
    const CONNECTIONS: usize = 400;
    // The in-memory queue's bound: a webhook without an outbox.
    let toml = format!(
        "outbox = false\nhook_queue_bytes = {BOUND}\n\n[[webhook]]\nurl = \"{}\"\nretries = 10\n",
        closed_port_url("/down")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let mut most = 0;
    let mut sample = || {
        let metrics = server.metrics();
        let queued = metric_total(&metrics, "ringcast_sink_queued_bytes");
        let inbound = metric_total(&metrics, "ringcast_hook_inbound_bytes");
        most = most.max(queued);
        assert!(queued <= BOUND && inbound <= BOUND, "queued {queued} and inbound {inbound} bytes, bound {BOUND}");
        (queued, metric_total(&metrics, "ringcast_sink_dropped_total"))
    };
    for _ in 0..4 {
        touch_connections(server.rtmp_addr(), CONNECTIONS / 4);
        sample();
    }
    // Two events per connection (accept, close), one delivery each: far more than 64 KiB.
    let dropped = eventually(Duration::from_secs(10), || {
        let (_, dropped) = sample();
        (dropped > 0).then_some(dropped)
    });
    let dropped = dropped.unwrap_or_else(|| panic!("nothing dropped for room\n{}", server.metrics()));
    let (queued, _) = sample();
    assert!(queued > BOUND / 2, "the queue holds what fits ({queued} bytes): the receiver is down");
    assert!(
        server.wait_for_line_with(&["hook queue full: dropped the oldest deliveries"], ARRIVAL),
        "drops are logged\n{}",
        server.log()
    );
    println!("{dropped} deliveries dropped; at most {most} bytes queued (bound {BOUND})");
}

/// One hung receiver does not delay the other sinks: beside a webhook that
/// accepts and never answers (hook_timeout 30 s), a healthy one gets all of 100 events at once.
/// The hung sink holds its share of the workers (10 / 2 sinks = 5), no more.
#[test]
fn a_hung_sink_does_not_delay_the_others() {
    const EVENTS: usize = 100;
    let hole = BlackHole::start();
    let healthy = HttpReceiver::start();
    let toml = format!(
        "hook_timeout = \"30s\"\nhook_concurrency = 10\n\n[[webhook]]\nurl = \"{}\"\n\n[[webhook]]\nurl = \"{}\"\n",
        hole.url("/hung"),
        healthy.url("/events")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let started = Instant::now();
    // Two events (accept, close) per connection.
    touch_connections(server.rtmp_addr(), EVENTS / 2);
    let received = healthy.wait_for(EVENTS, Duration::from_secs(3)).len();
    let took = started.elapsed();
    assert_eq!(
        received,
        EVENTS,
        "the healthy sink got {received} of {EVENTS} events in {took:?} beside a hung one\n{}",
        server.metrics()
    );
    // Its connections are counted by the black hole's own thread: wait for them, then check
    // that no more came.
    let _ = eventually(Duration::from_secs(2), || (hole.accepted() >= 5).then_some(()));
    assert_eq!(hole.accepted(), 5, "the hung sink holds its share of the 10 workers");
    println!("healthy sink: {EVENTS} events in {took:?}; the hung sink holds {} connections", hole.accepted());
}

/// Shutdown has its own deadline: with 30 players whose done callbacks and
/// events all go to endpoints that never answer (timeouts 60 s), SIGTERM ends the process
/// within `shutdown_timeout` (2 s), and one line says what was left undone.
#[test]
fn shutdown_ends_by_its_deadline_and_says_what_it_left() {
    const PLAYERS: usize = 30;
    let hole = BlackHole::start();
    let toml = format!(
        "shutdown_timeout = \"2s\"\nhook_timeout = \"60s\"\n\n[notify]\ntimeout = \"60s\"\non_done = \"{}\"\n\n\
         [[webhook]]\nurl = \"{}\"\n",
        hole.url("/on_done"),
        hole.url("/events")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let players: Vec<RtmpClient> = (0..PLAYERS)
        .map(|i| {
            let mut player = rtmp_connect(&server, Goal::Play(format!("wait{i}")));
            assert_eq!(await_answer(&mut player).code, "NetStream.Play.Start", "{}", server.log());
            player
        })
        .collect();
    let stopping = Instant::now();
    let (status, log) = server.stop_and_log();
    let took = stopping.elapsed();
    drop(players);
    assert!(status.success(), "{status}\n{log}");
    assert!(took < Duration::from_millis(3500), "exited {took:?} after SIGTERM; shutdown_timeout is 2s\n{log}");
    let summary: Vec<&str> = log.lines().filter(|l| l.contains("shutdown deadline reached: left undone")).collect();
    assert_eq!(summary.len(), 1, "one summary line\n{log}");
    let field = |name: &str| -> u64 {
        let token = summary[0].split_whitespace().find_map(|t| t.strip_prefix(&format!("{name}="))).unwrap_or("0");
        token.trim_matches('"').parse().unwrap_or(0)
    };
    assert_eq!(field("callbacks"), PLAYERS as u64, "every player's on_done was abandoned: {}", summary[0]);
    assert!(summary[0].contains("done=30"), "{}", summary[0]);
    assert!(field("deliveries") > 0, "the hung webhook's deliveries are named: {}", summary[0]);
    assert!(summary[0].contains(&hole.url("/events")), "{}", summary[0]);
    println!("exited {took:?} after SIGTERM: {}", summary[0]);
}

/// `--hook-stdio-format json`: one envelope per event on stderr, one line each.
#[test]
fn stdio_json_prints_one_envelope_per_line() {
    let server = TestServer::start_with(&["--hook-stdio-format", "json"]);
    let (publisher, _) = rtmp_publish(&server, "s9?k=v");
    drop(publisher);
    // The last event of each ordering key (connection, stream): the two may come in either order.
    let last = ["\"type\":\"connection_close\"", "\"type\":\"stream_delete\""];
    assert!(last.iter().all(|text| server.wait_for_log(text, ARRIVAL)), "{}", server.log());
    let log = server.log();
    let events: Vec<Value> = log
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{log}")))
        .collect();
    for event in &events {
        check_envelope(event);
    }
    assert!(!log.lines().any(|l| l.contains("\"type\":\"") && !l.starts_with('{')), "an event line is garbled\n{log}");
    // Order holds per stream (and per connection for stream-less events), not across them.
    let types = |stream: bool| -> Vec<&str> {
        events.iter().filter(|e| (e["seq"] != 0) == stream).map(|e| e["type"].as_str().unwrap()).collect()
    };
    assert_eq!(types(false), ["connection_accept", "handshake_complete", "connect", "connection_close"], "{log}");
    assert_eq!(types(true), ["stream_create", "publish_start", "publish_stop", "stream_delete"], "{log}");
    let publish_start = of_type(&events, "publish_start")[0];
    assert_eq!(publish_start["data"]["args"], json!({"k": "v"}));
    assert_eq!(publish_start["stream_key"], "live/s9");
}

/// `--hook-stdio-format env`: one line of `KEY=value` pairs per event, the script variables.
#[test]
fn stdio_env_prints_key_value_lines() {
    let server = TestServer::start_with(&["--hook-stdio-format", "env"]);
    let (publisher, _) = rtmp_publish(&server, "s9e?k=v&note=two%20words");
    drop(publisher);
    let last = ["RTMP_EVENT_TYPE=connection_close", "RTMP_EVENT_TYPE=stream_delete"];
    assert!(last.iter().all(|text| server.wait_for_log(text, ARRIVAL)), "{}", server.log());
    let log = server.log();
    let lines: Vec<Vec<(String, String)>> = log
        .lines()
        .filter(|line| line.starts_with("RTMP_EVENT_TYPE="))
        .map(|line| parse_env_line(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    assert_eq!(lines.len(), 8, "one line per event\n{log}");
    let get = |pairs: &[(String, String)], name: &str| field(pairs, name).to_owned();
    for pairs in &lines {
        let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..5],
            ["RTMP_EVENT_TYPE", "RTMP_TIMESTAMP", "RTMP_CONN_ID", "RTMP_STREAM_KEY", "RTMP_PROTOCOL"],
            "{pairs:?}"
        );
        assert_eq!(get(pairs, "RTMP_PROTOCOL"), "rtmp");
        let timestamp: u64 = get(pairs, "RTMP_TIMESTAMP").parse().expect("RTMP_TIMESTAMP");
        assert!(timestamp.abs_diff(now_ms() / 1000) < 300, "{pairs:?}");
        get(pairs, "RTMP_CONN_ID").parse::<u64>().expect("RTMP_CONN_ID");
    }
    let publish_start =
        lines.iter().find(|p| get(p, "RTMP_EVENT_TYPE") == "publish_start").expect("publish_start line");
    assert_eq!(get(publish_start, "RTMP_STREAM_KEY"), "live/s9e");
    let args: Value = serde_json::from_str(&get(publish_start, "RTMP_ARGS")).expect("RTMP_ARGS is JSON");
    assert_eq!(args, json!({"k": "v", "note": "two words"}));
    let close = lines.iter().find(|p| get(p, "RTMP_EVENT_TYPE") == "connection_close").unwrap();
    for name in ["RTMP_ROLE", "RTMP_DURATION_SEC", "RTMP_BYTES_IN", "RTMP_BYTES_OUT", "RTMP_REASON"] {
        get(close, name);
    }
    assert_eq!(get(close, "RTMP_ROLE"), "publisher");
    assert_eq!(get(close, "RTMP_STREAM_KEY"), "", "connection_close concerns no stream");
}

/// `--hook-script publish_start=PATH` runs a real /bin/sh script once per publish, with the
/// event in its environment (go-rtmp style names: RTMP_EVENT_TYPE, RTMP_<FIELD>...).
#[test]
fn a_hook_script_gets_the_event_in_its_environment() {
    let output = TempFile::new("hook-script-env", "txt");
    let runs = TempFile::new("hook-script-runs", "txt");
    let script = TempFile::with_contents(
        "hook-script",
        "sh",
        &format!(
            "#!/bin/sh\necho \"$RTMP_EVENT_TYPE\" >> '{runs}'\nenv | grep '^RTMP_' > '{out}.tmp' && mv '{out}.tmp' '{out}'\n",
            runs = runs.path().display(),
            out = output.path().display()
        ),
    );
    std::fs::set_permissions(script.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = format!("publish_start={}", script.path().display());
    let server = TestServer::start_with(&["--hook-script", &spec]);
    let (publisher, _) = rtmp_publish(&server, "s10?token=abc");
    drop(publisher);
    assert!(server.wait_for_log("hook script done", ARRIVAL), "{}", server.log());
    // Time for wrongly run scripts (other events) to show up.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(runs.read(), "publish_start\n", "run once, for publish_start only\n{}", server.log());
    let vars = parse_env_output(&output.read());
    assert_eq!(field(&vars, "RTMP_EVENT_TYPE"), "publish_start", "{vars:?}");
    assert_eq!(field(&vars, "RTMP_STREAM_KEY"), "live/s10");
    assert_eq!(field(&vars, "RTMP_PROTOCOL"), "rtmp");
    field(&vars, "RTMP_CONN_ID").parse::<u64>().expect("RTMP_CONN_ID");
    let timestamp: u64 = field(&vars, "RTMP_TIMESTAMP").parse().expect("RTMP_TIMESTAMP");
    assert!(timestamp.abs_diff(now_ms() / 1000) < 300);
    let args: Value = serde_json::from_str(field(&vars, "RTMP_ARGS")).expect("RTMP_ARGS is JSON");
    assert_eq!(args, json!({"token": "abc"}));
}

/// `[notify] url` is the shorthand for every callback not given its own (connect, publish,
/// play, the done ones, update): each call arrives there with its own `call`.
#[test]
fn the_notify_url_shorthand_receives_every_callback() {
    let receiver = HttpReceiver::start();
    let toml = format!("[notify]\nurl = \"{}\"\nupdate_interval = \"1s\"\n", receiver.url("/all"));
    let server = TestServer::start_with_config(&toml, &[]);
    let (publisher, _) = rtmp_publish(&server, "short");
    let mut player = rtmp_connect(&server, Goal::Play("short".into()));
    assert_eq!(await_answer(&mut player).code, "NetStream.Play.Start");
    let calls_of =
        |r: &[Request]| -> Vec<String> { r.iter().map(|r| field(&form_of(r), "call").to_owned()).collect::<Vec<_>>() };
    wait_requests(&receiver, &server, "update_publish and update_play", |r| {
        let calls = calls_of(r);
        calls.iter().any(|c| c == "update_publish") && calls.iter().any(|c| c == "update_play")
    });
    drop(player);
    drop(publisher);
    let requests = wait_requests(&receiver, &server, "the done callbacks", |r| {
        calls_of(r).iter().filter(|c| c.ends_with("done")).count() == 4
    });
    assert!(requests.iter().all(|r| r.path == "/all"));
    let calls: BTreeSet<String> = calls_of(&requests).into_iter().collect();
    assert_eq!(
        calls,
        set(&["connect", "publish", "play", "update_publish", "update_play", "publish_done", "play_done", "done"]),
        "every callback goes to the one URL"
    );
}

/// `[notify] secret` signs every callback like a webhook (docs/hooks.md, Callbacks and Signing):
/// Standard Webhooks headers whose signature covers the form body.
#[test]
fn callbacks_are_signed_when_notify_has_a_secret() {
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let receiver = HttpReceiver::start();
    let toml = format!("[notify]\non_publish = \"{}\"\nsecret = \"{SECRET}\"\n", receiver.url("/publish"));
    let server = TestServer::start_with_config(&toml, &[]);
    let (_publisher, _) = rtmp_publish(&server, "signed?token=x");
    let request = &receiver.requests()[0];
    assert_eq!(field(&form_of(request), "call"), "publish");
    let headers = ["webhook-id", "webhook-timestamp", "webhook-signature"].map(|name| request.header(name));
    let [Some(id), Some(timestamp), Some(signature)] = headers else {
        panic!("callback not signed: headers {:?}", request.headers);
    };
    assert!(timestamp.parse::<u64>().is_ok_and(|t| t.abs_diff(now_ms() / 1000) < 300), "webhook-timestamp {timestamp}");
    assert_eq!(signature, standard_signature(SECRET, id, timestamp, &request.body), "signature over the form body");
}

/// `hook_timeout` bounds a stuck delivery: a webhook that never answers fails at 1 s and is
/// retried (after the 1 s backoff), a script that hangs is killed with what it started.
#[test]
fn hook_timeout_bounds_stuck_webhooks_and_scripts() {
    let hole = BlackHole::start();
    let pids = TempFile::new("hook-script-pids", "txt");
    let script = TempFile::with_contents(
        "hook-hang",
        "sh",
        &format!(
            "#!/bin/sh\nsleep 60 &\necho \"$$ $!\" > '{pids}.tmp' && mv '{pids}.tmp' '{pids}'\nwait\n",
            pids = pids.path().display()
        ),
    );
    std::fs::set_permissions(script.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let toml = format!(
        "hook_timeout = \"1s\"\n\n[[webhook]]\nurl = \"{}\"\nevents = [\"publish_start\"]\nretries = 1\n\n\
         [[script]]\nevent = \"publish_start\"\npath = \"{}\"\n",
        hole.url("/stuck"),
        script.path().display()
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let started = Instant::now();
    let (_publisher, _) = rtmp_publish(&server, "stuck");

    assert!(
        server.wait_for_line_with(&["hook delivery failed", "timed out and was killed"], Duration::from_secs(5)),
        "the hanging script was not killed\n{}",
        server.log()
    );
    let killed_after = started.elapsed();
    assert!(killed_after < Duration::from_millis(2500), "script killed after {killed_after:?}; hook_timeout is 1s");
    let text = pids.read();
    let pids: Vec<i32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    assert_eq!(pids.len(), 2, "the script wrote its pid and its child's: {text:?}");
    let alive = |pid: i32| {
        // A zombie (waiting for a reaper that is not ringcast's business) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"))
    };
    let gone = eventually(Duration::from_secs(2), || pids.iter().all(|pid| !alive(*pid)).then_some(()));
    assert!(gone.is_some(), "script or its child still running after the timeout: {pids:?}");

    let retried = eventually(Duration::from_secs(6), || (hole.accepted() >= 2).then_some(started.elapsed()));
    let retried = retried.unwrap_or_else(|| panic!("no retry of the stuck webhook\n{}", server.log()));
    assert!(retried >= Duration::from_millis(1700), "retried after {retried:?}: 1 s timeout + ~1 s backoff");
    assert!(server.wait_for_line_with(&["will retry", "timed out"], ARRIVAL), "{}", server.log());
}

/// Events of one stream emitted at the same moment on both shards (players of one stream
/// coming and going in parallel) still reach a sink in the order of their `seq`: "a stream's
/// events are never reordered within one sink". (Gap-free `seq` is checked on an unfiltered
/// sink in `a_publish_and_a_play_produce_the_documented_events`; this sink filters.)
#[test]
fn a_streams_events_keep_their_order_under_concurrency() {
    const PLAYERS: usize = 64;
    // The race this looks for is narrow: enough rounds to see it most runs (~5,000 events,
    // under a second), few enough to stay light.
    const ROUNDS: usize = 20;
    let sink = HttpReceiver::start();
    let toml = format!(
        "[[webhook]]\nurl = \"{}\"\nevents = [\"play_start\", \"subscriber_count\", \"play_stop\"]\n",
        sink.url("/events")
    );
    let server = TestServer::start_with_config(&toml, &[]);
    let (_source, _) = rtmp_publish(&server, "race");
    let addr = server.rtmp_addr();
    let together = Arc::new(std::sync::Barrier::new(PLAYERS));
    let players: Vec<_> = (0..PLAYERS)
        .map(|_| {
            let together = together.clone();
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let mut client = RtmpClient::connect(addr, "live", Goal::Play("race".into())).expect("connect");
                    together.wait();
                    let answer = await_answer(&mut client);
                    assert_eq!(answer.code, "NetStream.Play.Start", "{answer:?}");
                }
            })
        })
        .collect();
    for player in players {
        player.join().expect("player thread");
    }
    // Per player: play_start, subscriber_count, play_stop, subscriber_count.
    let expected = PLAYERS * ROUNDS * 4;
    let events = wait_events(&sink, &server, "the players' events", |e| e.len() >= expected);
    let seqs: Vec<u64> =
        events.iter().filter(|e| e["stream_key"] == "live/race").map(|e| e["seq"].as_u64().unwrap()).collect();
    let inversions: Vec<&[u64]> = seqs.windows(2).filter(|w| w[0] >= w[1]).collect();
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "seq is unique");
    assert!(
        inversions.is_empty(),
        "{} of {} events of live/race arrived out of seq order: {inversions:?}",
        inversions.len(),
        seqs.len()
    );
}

// The checkers in common::hook_peers, checked.

#[test]
fn standard_signature_matches_the_reference_vector() {
    // The first Standard Webhooks reference vector (docs/hooks.md, Signing): checks the checker.
    let signature = standard_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn env_lines() {
    let pairs = parse_env_line(r#"A=1 B="x y" C="" D={"k":"v"}"#);
    assert!(pairs.is_err(), "an unquoted brace value is not bare: {pairs:?}");
    let pairs = parse_env_line(r#"A=1 B="x \"y\"" C="" D=a:b/c"#).unwrap();
    assert_eq!(
        pairs,
        [("A", "1"), ("B", "x \"y\""), ("C", ""), ("D", "a:b/c")].map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
    );
}
