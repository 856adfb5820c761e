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
use common::{TempDir, TestServer, ffmpeg_publish, metric_total, require_ffmpeg};
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
