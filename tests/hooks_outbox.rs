//! The outbox end to end (docs/hooks.md, "Delivery guarantees"): a webhook receiver is down
//! while streams come and go and the server is restarted, once by SIGTERM and once by SIGKILL
//! in the middle of a publish; when the receiver comes back, every event that was emitted
//! arrives, each id at least once, each stream's events in order.
//!
//! Ground truth is the server's own `[stdio]` sink: a line per event on stderr, written after the
//! event went through the outbox's write, so an event a killed server printed is one it had
//! to keep. Event ids sort in the order they were made, across restarts too (they begin with the
//! process's start time), so "in order" is "in id order".

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::http_flv_client::exchange;
use common::http_receiver::{HttpReceiver, Reply, Request};
use common::{TempDir, TempFile, TestServer, ffmpeg_publish, metric_total, require_ffmpeg};
use serde_json::Value;

/// The events a server printed on its `[stdio]` sink (JSON lines): (id, stream key).
fn printed_events(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|line| line.starts_with("{\"id\":\"evt_"))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| {
            (v["id"].as_str().unwrap_or_default().to_owned(), v["stream_key"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn body_json(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

fn config(receiver: &HttpReceiver, state_dir: &TempDir) -> String {
    format!(
        r#"
state_dir = "{}"
outbox = true
# A small share of memory per sink (32 deliveries): most events wait on disk and are read back.
hook_queue = 64
[[webhook]]
url = "{}"
# Fails for good after one retry: from then on only the outbox keeps it.
retries = 1
[stdio]
format = "json"
"#,
        state_dir.path().display(),
        receiver.url("/events"),
    )
}

/// Publishes `names` at once for about `seconds`, and waits for every publisher to end.
fn publish_all(server: &TestServer, names: &[&str], seconds: u32) {
    let mut publishers: Vec<_> = names
        .iter()
        .map(|name| ffmpeg_publish(&server.rtmp_url(&format!("live/{name}")), seconds, (160, 120)))
        .collect();
    for publisher in &mut publishers {
        publisher.wait_timeout(Duration::from_secs(u64::from(seconds) + 20));
    }
}

#[test]
fn every_event_reaches_a_receiver_that_was_down_across_restarts() {
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    // Down: every delivery fails, and asks to be tried again in a second.
    receiver.set_default(Reply::status(503).header("Retry-After", "1"));
    let state_dir = TempDir::new("outbox-e2e");
    let toml = config(&receiver, &state_dir);
    let mut printed = Vec::new();

    // 1. Streams come and go; a graceful stop.
    let server = TestServer::start_with_config(&toml, &[]);
    publish_all(&server, &["a", "b", "c"], 2);
    assert!(server.wait_for_log_count("\"type\":\"stream_delete\"", 3, Duration::from_secs(10)), "{}", server.log());
    let (status, log) = server.stop_and_log();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("outbox: undelivered events kept for the next start"), "{log}");
    printed.extend(printed_events(&log));

    // 2. Killed in the middle of a publish, one stream of the same name as before.
    let server = TestServer::start_with_config(&toml, &[]);
    assert!(
        server.wait_for_log("undelivered events from an earlier run will be sent again", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let mut publishers: Vec<_> = ["a", "d"]
        .iter()
        .map(|name| ffmpeg_publish(&server.rtmp_url(&format!("live/{name}")), 30, (160, 120)))
        .collect();
    assert!(server.wait_for_log_count("\"type\":\"publish_start\"", 2, Duration::from_secs(20)), "{}", server.log());
    std::thread::sleep(Duration::from_millis(1500));
    for publisher in &mut publishers {
        assert!(publisher.is_running(), "still publishing when the server is killed");
    }
    let log = server.kill();
    printed.extend(printed_events(&log));
    drop(publishers);

    // 3. One more stream, then the receiver comes back.
    let server = TestServer::start_with_config(&toml, &[]);
    publish_all(&server, &["e"], 2);
    assert!(server.wait_for_log("\"stream_key\":\"live/e\"", Duration::from_secs(10)));
    // What waits is shown: on /metrics, and per outbox on the API.
    assert!(metric_total(&server.metrics(), "ringcast_outbox_entries") > 20, "{}", server.metrics());
    let request = b"GET /api/outbox HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n";
    let (reply, _) = exchange(server.api_addr(), request, Duration::from_secs(5));
    let reply = String::from_utf8_lossy(&reply);
    let body: Value = serde_json::from_str(reply.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or(Value::Null);
    let outbox = &body["outboxes"][0];
    assert_eq!(outbox["configured"], true, "{reply}");
    assert!(outbox["id"].as_str().is_some_and(|id| id.starts_with("url-")), "{reply}");
    assert!(outbox["entries"].as_u64() > Some(20) && outbox["bytes"].as_u64() > Some(0), "{reply}");
    assert!(outbox["oldest_age_ms"].as_u64() > Some(1000), "{reply}");

    let before = receiver.requests().len();
    receiver.set_default(Reply::status(204));
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected: BTreeSet<String> = printed.iter().map(|(id, _)| id.clone()).collect();
    loop {
        let log = server.log();
        let mut all: BTreeSet<String> = expected.clone();
        all.extend(printed_events(&log).into_iter().map(|(id, _)| id));
        let received: BTreeSet<String> = receiver.requests()[before..]
            .iter()
            .filter_map(|r| body_json(r)["id"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<&String> = all.difference(&received).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events never arrived: {missing:?}\n{log}",
            missing.len(),
            all.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    printed.extend(printed_events(&server.log()));
    let streams: BTreeSet<&str> = printed.iter().map(|(_, key)| key.as_str()).filter(|k| !k.is_empty()).collect();
    for stream in ["live/a", "live/b", "live/c", "live/d", "live/e"] {
        assert!(streams.contains(stream), "{stream} emitted events: {streams:?}");
    }

    // Per stream, first arrivals are in the order the events were made.
    let mut arrivals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for request in &receiver.requests()[before..] {
        let body = body_json(request);
        let (Some(id), Some(key)) = (body["id"].as_str(), body["stream_key"].as_str()) else { continue };
        if !key.is_empty() && seen.insert(id.to_owned()) {
            arrivals.entry(key.to_owned()).or_default().push(id.to_owned());
        }
    }
    for (stream, ids) in &arrivals {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "{stream}'s events out of order");
    }
    assert!(arrivals["live/a"].len() > 4, "live/a's events of both runs: {:?}", arrivals["live/a"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_total(&server.metrics(), "ringcast_outbox_entries") > 0 {
        assert!(Instant::now() < deadline, "acknowledged: {}", server.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = server.stop_and_log();
    assert!(status.success(), "{log}");
    assert!(!log.contains("undelivered events kept"), "everything was delivered: {log}");
}

/// `ringcast hooks replay ...`, run as an operator runs it; (exit code, stdout, stderr).
fn hooks_replay(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["hooks", "replay"])
        .args(args)
        .output()
        .expect("run ringcast hooks replay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Now, as RFC 3339 with milliseconds (as an operator would copy it from a log), and in ms.
fn rfc3339_now() -> (String, u64) {
    let output =
        std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ|%s%3N"]).output().expect("date");
    let text = String::from_utf8_lossy(&output.stdout);
    let (time, ms) = text.trim().split_once('|').expect("date's output");
    (time.to_owned(), ms.parse().expect("unix ms"))
}

/// `/metrics` of a server with `api_token = token`.
fn metrics_with_token(server: &TestServer, token: &str) -> String {
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: ringcast\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let (reply, _) = exchange(server.api_addr(), request.as_bytes(), Duration::from_secs(5));
    String::from_utf8_lossy(&reply).into_owned()
}

/// Waits until the receiver's requests hold a `stream_delete` of `stream` and the outbox has
/// nothing left to deliver.
fn wait_delivered(server: &TestServer, receiver: &HttpReceiver, token: &str, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let deleted = receiver.requests().iter().any(|r| {
            let body = body_json(r);
            body["type"] == "stream_delete" && body["stream_key"] == stream
        });
        if deleted && metric_total(&metrics_with_token(server, token), "ringcast_outbox_entries") == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{stream}'s events not delivered\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hooks_replay_sends_delivered_events_again_with_their_ids_and_bodies() {
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    receiver.set_default(Reply::status(204));
    let state_dir = TempDir::new("outbox-replay");
    let token = "replay-t0ken";
    let toml = format!(
        r#"
state_dir = "{}"
outbox = true
api_token = "{token}"
[[webhook]]
id = "billing"
url = "{}"
"#,
        state_dir.path().display(),
        receiver.url("/events"),
    );
    let server = TestServer::start_with_config(&toml, &[]);
    publish_all(&server, &["early"], 1);
    wait_delivered(&server, &receiver, token, "live/early");
    std::thread::sleep(Duration::from_millis(20));
    let (since, since_ms) = rfc3339_now();
    std::thread::sleep(Duration::from_millis(20));
    publish_all(&server, &["late"], 1);
    wait_delivered(&server, &receiver, token, "live/late");

    // What the receiver got the first time, by id: the body bytes, and whether it is late.
    let first = receiver.requests();
    let bodies: BTreeMap<String, (Vec<u8>, bool)> = first
        .iter()
        .map(|r| {
            let body = body_json(r);
            let late = body["timestamp_ms"].as_u64().is_some_and(|t| t >= since_ms);
            (body["id"].as_str().unwrap_or_default().to_owned(), (r.body.clone(), late))
        })
        .collect();
    let late: BTreeSet<&String> = bodies.iter().filter(|(_, (_, late))| *late).map(|(id, _)| id).collect();
    assert!(late.len() >= 4 && late.len() < bodies.len(), "late {late:?} of {}", bodies.len());

    // Replayed from the API's address and token on the command line.
    let api = format!("http://{}", server.api_addr());
    let (code, stdout, stderr) =
        hooks_replay(&["--sink", "billing", "--since", &since, "--api", &api, "--token", token]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with(&format!("replayed {} events to billing", late.len())), "{stdout}");
    receiver.wait_for(first.len() + late.len(), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let again = &receiver.requests()[first.len()..];
    assert_eq!(again.len(), late.len(), "exactly the late events, once each");
    // Per stream (events of no stream: per connection), in the order they were emitted.
    let mut replayed_late: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in again {
        let body = body_json(request);
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let (first_body, was_late) = &bodies[&id];
        assert!(was_late, "{id} was emitted before --since");
        assert_eq!(&request.body, first_body, "{id}: the same body bytes");
        let order = match body["stream_key"].as_str() {
            Some(key) if !key.is_empty() => key.to_owned(),
            _ => format!("conn {}", body["conn_id"]),
        };
        replayed_late.entry(order).or_default().push(id);
    }
    assert!(replayed_late.contains_key("live/late"), "{replayed_late:?}");
    for (order, ids) in &replayed_late {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "{order}: in the order emitted");
    }
    let metrics = metrics_with_token(&server, token);
    assert_eq!(metric_total(&metrics, "ringcast_outbox_replayed_total"), late.len() as u64, "{metrics}");

    // From a config file's api_listen and api_token, up to --until: the early ones only
    // (the replay's own copies are not replayed again).
    let cli_config = TempFile::with_contents(
        "replay-cli",
        "toml",
        &format!("api_listen = \"{}\"\napi_token = \"{token}\"\n", server.api_addr()),
    );
    let config_path = cli_config.path().to_string_lossy().into_owned();
    let before = receiver.requests().len();
    let (code, stdout, stderr) =
        hooks_replay(&["--sink", "billing", "--since", "1h", "--until", &since, "--config", &config_path]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let early = bodies.len() - late.len();
    assert!(stdout.starts_with(&format!("replayed {early} events to billing")), "{stdout}");
    receiver.wait_for(before + early, Duration::from_secs(20));
    for request in &receiver.requests()[before..] {
        let id = body_json(request)["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!((&request.body, false), (&bodies[&id].0, bodies[&id].1), "{id}: an early one, as sent");
    }

    // An unknown sink, and a bad time: one line each, exit 2, nothing sent.
    let before = receiver.requests().len();
    let (code, stdout, stderr) = hooks_replay(&["--sink", "nobody", "--since", "2h", "--api", &api, "--token", token]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no webhook outbox 'nobody'"), "{stderr}");
    let (code, _, stderr) = hooks_replay(&["--sink", "billing", "--since", "yesterday", "--api", &api]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("ringcast hooks replay: --since: invalid time") && stderr.lines().count() == 1,
        "{stderr}"
    );
    // Without the token: refused.
    let (code, _, stderr) = hooks_replay(&["--sink", "billing", "--since", "2h", "--api", &api]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("api_token"), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.requests().len(), before, "nothing more sent");
    let (status, log) = server.stop_and_log();
    assert!(status.success(), "{log}");
}
