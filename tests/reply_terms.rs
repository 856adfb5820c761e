//! Limits in a callback's reply, with a real HTTP receiver and ffmpeg: a 2xx JSON body to
//! `on_publish` that sets `max_duration` ends the publish when it passes, `name` renames the
//! stream, and `max_bitrate_kbps` below ffmpeg's rate drops the publisher; `publish_stop` and
//! `connection_close` say why (docs/hooks.md, "Limits in the reply").

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::http_receiver::{HttpReceiver, Reply};
use common::{TestServer, assert_plays_h264_aac, eventually, ffmpeg_publish, ffprobe_json, require_ffmpeg};

const WAIT: Duration = Duration::from_secs(20);

/// A server whose `on_publish` (and `on_play`, when `play` is set) is `auth`, and whose events
/// go to `events`.
fn server(auth: &HttpReceiver, events: &HttpReceiver, play: bool) -> TestServer {
    let on_play = if play { format!("on_play = \"{}\"\n", auth.url("/play")) } else { String::new() };
    let config = format!(
        "[notify]\non_publish = \"{}\"\non_publish_done = \"{}\"\n{on_play}\
         [[webhook]]\nurl = \"{}\"\nevents = [\"publish_start\", \"publish_stop\", \"connection_close\"]\n",
        auth.url("/publish"),
        auth.url("/publish_done"),
        events.url("/events")
    );
    TestServer::start_with_config(&config, &[])
}

fn json_reply(body: &str) -> Reply {
    Reply::status(200).header("Content-Type", "application/json").body(body)
}

fn find(receiver: &HttpReceiver, event_type: &str) -> Vec<Value> {
    let events =
        receiver.requests().iter().filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()).collect::<Vec<_>>();
    events.into_iter().filter(|e| e["type"] == event_type).collect()
}

/// The first `event_type` event, waited for.
fn wait_event(receiver: &HttpReceiver, event_type: &str, server: &TestServer) -> Value {
    let found = eventually(WAIT, || find(receiver, event_type).into_iter().next());
    found.unwrap_or_else(|| panic!("no {event_type}: {:?}\n{}", receiver.requests(), server.log()))
}

#[test]
fn max_duration_ends_a_publish_when_it_passes() {
    require_ffmpeg();
    let (auth, events) = (HttpReceiver::start(), HttpReceiver::start());
    auth.set_default(json_reply(r#"{"max_duration": 2}"#));
    let server = server(&auth, &events, false);

    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 30, (320, 240));
    wait_event(&events, "publish_start", &server);
    let started = Instant::now();
    let stop = wait_event(&events, "publish_stop", &server);
    assert_eq!(stop["data"]["reason"], "max_duration reached (2s)", "{stop}");
    let duration = stop["data"]["duration_sec"].as_f64().expect("duration_sec");
    assert!((1.9..4.0).contains(&duration), "the publish lasted {duration} s, not about 2: {stop}");
    assert!(started.elapsed() < Duration::from_secs(6), "publish_stop came {:?} after the start", started.elapsed());
    let close = wait_event(&events, "connection_close", &server);
    assert_eq!(close["data"]["reason"], "max_duration reached (2s)", "{close}");
    assert!(publisher.wait_timeout(WAIT).is_some(), "{}", publisher.report("publisher past its max_duration"));
    // The done callback is told, as for any publish's end.
    let done = eventually(WAIT, || auth.requests().into_iter().find(|r| r.path == "/publish_done"));
    assert!(done.is_some(), "no on_publish_done: {:?}", auth.requests());
}

#[test]
fn a_name_in_the_reply_renames_the_stream_and_unknown_keys_are_logged_once() {
    require_ffmpeg();
    let (auth, events) = (HttpReceiver::start(), HttpReceiver::start());
    auth.set_default(json_reply(r#"{"name": "other", "colour": "blue"}"#));
    let server = server(&auth, &events, true);

    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 30, (320, 240));
    let start = wait_event(&events, "publish_start", &server);
    assert_eq!(start["stream_key"], "live/other", "{start}");
    // The player asks for `cam` too, and its own reply renames it to `other` alike.
    let probed = ffprobe_json(&server.rtmp_url("live/cam"), WAIT);
    assert_plays_h264_aac(&probed, (320, 240), "the renamed stream");
    assert!(auth.requests().iter().any(|r| r.path == "/play"), "on_play was not asked");
    assert_eq!(server.log_count("unknown key ignored"), 1, "{}", server.log());
    assert!(server.log().contains("colour"), "{}", server.log());
    assert!(publisher.is_running(), "{}", publisher.report("renamed publisher"));
    publisher.kill();
}

#[test]
fn max_bitrate_kbps_below_the_publishers_rate_drops_it() {
    require_ffmpeg();
    let (auth, events) = (HttpReceiver::start(), HttpReceiver::start());
    // ffmpeg's 320x240 test pattern with AAC sends far more than 10 kbit/s.
    auth.set_default(json_reply(r#"{"max_bitrate_kbps": 10}"#));
    let server = server(&auth, &events, false);

    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 30, (320, 240));
    wait_event(&events, "publish_start", &server);
    let stop = wait_event(&events, "publish_stop", &server);
    let reason = stop["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("max_bitrate_kbps exceeded ("), "{stop}");
    assert!(reason.ends_with("limit 10)"), "{stop}");
    let duration = stop["data"]["duration_sec"].as_f64().expect("duration_sec");
    assert!((4.9..9.0).contains(&duration), "dropped after {duration} s, not one window: {stop}");
    assert!(publisher.wait_timeout(WAIT).is_some(), "{}", publisher.report("publisher over its bitrate"));

    // A cap above the rate keeps the publisher.
    auth.set_default(json_reply(r#"{"max_bitrate_kbps": 100000}"#));
    let mut within = ffmpeg_publish(&server.rtmp_url("live/cam2"), 30, (320, 240));
    let started = eventually(WAIT, || {
        find(&events, "publish_start").into_iter().find(|e| e["stream_key"] == "live/cam2").map(|_| ())
    });
    assert!(started.is_some(), "{}", within.report("publisher within its cap"));
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        find(&events, "publish_stop").iter().all(|e| e["stream_key"] != "live/cam2"),
        "a publisher within its cap was dropped: {:?}",
        find(&events, "publish_stop")
    );
    assert!(within.is_running(), "{}", within.report("publisher within its cap"));
    within.kill();
}
