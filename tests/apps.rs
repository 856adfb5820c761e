//! Per-application hooks with real receivers and real clients: `[apps.vip]` sets its own
//! `on_publish` (in the SRS dialect, on a receiver of its own) and turns `on_play` off, while
//! `live` uses `[notify]`; the app's webhook hears only vip's events, the global one every
//! app's; SIGHUP replaces the app's callbacks too; `--check` prints what applies per app.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::http_receiver::{HttpReceiver, Reply};
use common::{TempFile, TestServer, assert_plays_h264_aac, eventually, ffmpeg_publish, ffprobe_json, require_ffmpeg};

const WAIT: Duration = Duration::from_secs(20);

/// The receivers: `global` takes `[notify]`'s callbacks and the global webhook, `vip` the
/// app's callbacks, `vip_events` the app's webhook.
struct Receivers {
    global: HttpReceiver,
    vip: HttpReceiver,
    vip_events: HttpReceiver,
}

fn config(r: &Receivers, vip_play: &str) -> String {
    format!(
        r#"
[notify]
on_publish = "{global_publish}"
on_play = "{global_play}"

[[webhook]]
url = "{global_events}"

[apps.vip.notify]
on_publish = "{vip_publish}"
on_play = "{vip_play}"
dialect = "srs"

[[apps.vip.webhook]]
url = "{vip_events}"
"#,
        global_publish = r.global.url("/publish"),
        global_play = r.global.url("/play"),
        global_events = r.global.url("/events"),
        vip_publish = r.vip.url("/publish"),
        vip_events = r.vip_events.url("/events"),
    )
}

/// `(type, stream)` of every event `receiver` got at `/events`.
fn events(receiver: &HttpReceiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == "/events")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|e| {
            (e["type"].as_str().unwrap_or_default().to_owned(), e["stream_key"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn has_event(receiver: &HttpReceiver, event_type: &str, stream: &str) -> bool {
    events(receiver).iter().any(|(t, s)| t == event_type && s == stream)
}

/// The form fields (or JSON keys) of the callbacks `receiver` got at `path`, as text.
fn callback_bodies(receiver: &HttpReceiver, path: &str) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn an_app_has_its_own_callbacks_and_sinks_beside_the_global_ones() {
    require_ffmpeg();
    let r = Receivers { global: HttpReceiver::start(), vip: HttpReceiver::start(), vip_events: HttpReceiver::start() };
    // SRS's "deny": any code but 0.
    r.vip.set_default(Reply::status(200).header("Content-Type", "application/json").body(r#"{"code":1}"#));
    let file = TempFile::with_contents("apps", "toml", &config(&r, ""));
    let path = file.path().display().to_string();

    let check = Command::new(env!("CARGO_BIN_EXE_ringcast")).args(["--config", &path, "--check"]).output().unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{shown}");
    assert!(shown.contains("app vip:"), "{shown}");
    assert!(shown.contains(&format!("on_publish {} (app)", r.vip.url("/publish"))), "{shown}");
    assert!(!shown.contains("on_play "), "vip's on_play is off: {shown}");
    assert!(shown.contains("dialect srs"), "{shown}");
    assert!(shown.contains("sinks: 1 global + 1 own"), "{shown}");

    let server = TestServer::start_with(&["--config", &path]);

    // `live` is not listed: [notify] decides, in the nginx dialect.
    let mut live = ffmpeg_publish(&server.rtmp_url("live/cam"), 40, (320, 240));
    let started = eventually(WAIT, || has_event(&r.global, "publish_start", "live/cam").then_some(()));
    assert!(started.is_some(), "{}", live.report("live publisher"));
    let global_publish = callback_bodies(&r.global, "/publish");
    assert!(global_publish.iter().any(|b| b.contains("app=live") && b.contains("name=cam")), "{global_publish:?}");
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("live/cam"), WAIT), (320, 240), "live");
    assert!(callback_bodies(&r.global, "/play").iter().any(|b| b.contains("app=live")), "live's on_play is global");

    // vip's on_publish goes to its own receiver, in SRS's JSON, which denies.
    let mut denied = ffmpeg_publish(&server.rtmp_url("vip/cam"), 40, (320, 240));
    let refused = eventually(WAIT, || has_event(&r.vip_events, "auth_failed", "vip/cam").then_some(()));
    assert!(refused.is_some(), "vip's webhook hears its auth_failed: {:?}", events(&r.vip_events));
    assert!(denied.wait_timeout(WAIT).is_some(), "the denied publisher was not closed");
    let vip_publish = callback_bodies(&r.vip, "/publish");
    let body: Value = serde_json::from_str(vip_publish.first().expect("vip's on_publish was called")).unwrap();
    assert_eq!((body["action"].as_str(), body["app"].as_str()), (Some("on_publish"), Some("vip")), "{body}");
    assert!(
        !callback_bodies(&r.global, "/publish").iter().any(|b| b.contains("app=vip")),
        "[notify]'s on_publish is not asked for vip"
    );

    // Allowed now: vip publishes, and plays with no on_play at all (turned off for vip).
    r.vip.set_default(Reply::status(200).header("Content-Type", "application/json").body(r#"{"code":0}"#));
    let mut vip = ffmpeg_publish(&server.rtmp_url("vip/cam2"), 40, (320, 240));
    let started = eventually(WAIT, || has_event(&r.vip_events, "publish_start", "vip/cam2").then_some(()));
    assert!(started.is_some(), "{}", vip.report("vip publisher"));
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("vip/cam2"), WAIT), (320, 240), "vip");
    let play_seen = eventually(WAIT, || has_event(&r.vip_events, "play_start", "vip/cam2").then_some(()));
    assert!(play_seen.is_some(), "{:?}", events(&r.vip_events));
    assert!(!callback_bodies(&r.global, "/play").iter().any(|b| b.contains("app=vip")), "vip has no on_play");
    assert!(callback_bodies(&r.vip, "/play").is_empty());

    // Sinks add up: the global webhook hears both apps, vip's only its own.
    assert!(has_event(&r.global, "publish_start", "vip/cam2"), "the global webhook hears every app");
    assert!(has_event(&r.global, "auth_failed", "vip/cam"));
    // A connect names no stream: its own `app` field says whose it is.
    let foreign: Vec<_> =
        events(&r.vip_events).into_iter().filter(|(t, s)| t != "connect" && !s.starts_with("vip/")).collect();
    assert!(foreign.is_empty(), "vip's webhook got other apps' events: {foreign:?}");
    let connects: Vec<Value> = r
        .vip_events
        .requests()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|e| e["type"] == "connect")
        .collect();
    assert!(connects.len() >= 2, "{connects:?}");
    assert!(connects.iter().all(|e| e["data"]["app"] == "vip"), "{connects:?}");

    // SIGHUP replaces the app's set: vip gets an on_play of its own.
    std::fs::write(file.path(), config(&r, &r.vip.url("/play"))).unwrap();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    assert!(server.wait_for_log("reloaded the configuration", WAIT), "{}", server.log());
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("vip/cam2"), WAIT), (320, 240), "vip after the reload");
    let plays = callback_bodies(&r.vip, "/play");
    let body: Value = serde_json::from_str(plays.first().expect("vip's new on_play was called")).unwrap();
    assert_eq!((body["action"].as_str(), body["stream"].as_str()), (Some("on_play"), Some("cam2")), "{body}");

    for publisher in [&mut live, &mut vip] {
        assert!(publisher.is_running(), "{}", publisher.report("publisher"));
        publisher.kill();
    }
}
