//! Publisher takeover with a real receiver and ffmpeg publishers: under `takeover = true` a
//! second publisher of `live/cam` replaces the first (closed; `publish_stop` says `taken over`,
//! the new `publish_start` says `takeover`), and the stream plays from the new one; in an app
//! with `takeover = false` the second publisher is refused and the first keeps the stream.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::http_receiver::HttpReceiver;
use common::{TestServer, assert_plays_h264_aac, eventually, ffmpeg_publish, ffprobe_json, require_ffmpeg};

const WAIT: Duration = Duration::from_secs(20);

fn events(receiver: &HttpReceiver) -> Vec<Value> {
    receiver.requests().iter().filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()).collect()
}

fn find(receiver: &HttpReceiver, event_type: &str, stream: &str) -> Vec<Value> {
    events(receiver).into_iter().filter(|e| e["type"] == event_type && e["stream_key"] == stream).collect()
}

#[test]
fn a_new_publisher_takes_the_stream_over_where_takeover_is_on() {
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    let config = format!(
        "takeover = true\n[[webhook]]\nurl = \"{}\"\nevents = [\"publish_start\", \"publish_stop\"]\n\
         [apps.strict]\ntakeover = false\n",
        receiver.url("/events")
    );
    let server = TestServer::start_with_config(&config, &[]);

    let mut first = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, (320, 240));
    let started = eventually(WAIT, || (!find(&receiver, "publish_start", "live/cam").is_empty()).then_some(()));
    assert!(started.is_some(), "{}", first.report("first publisher"));
    assert!(find(&receiver, "publish_start", "live/cam")[0]["data"].get("takeover").is_none(), "not a takeover");

    let mut second = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, (640, 360));
    let replaced = eventually(WAIT, || {
        let starts = find(&receiver, "publish_start", "live/cam");
        let stops = find(&receiver, "publish_stop", "live/cam");
        (starts.len() == 2 && stops.len() == 1).then_some((starts, stops))
    });
    let (starts, stops) = replaced.unwrap_or_else(|| panic!("no takeover: {:?}\n{}", events(&receiver), server.log()));
    assert_eq!(stops[0]["data"]["reason"], "taken over", "{}", stops[0]);
    assert_eq!(stops[0]["conn_id"], starts[0]["conn_id"], "the first publisher stopped");
    assert_eq!(starts[1]["data"]["takeover"], true, "{}", starts[1]);
    assert!(first.wait_timeout(WAIT).is_some(), "the replaced publisher is still connected");
    assert!(second.is_running(), "{}", second.report("second publisher"));
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("live/cam"), WAIT), (640, 360), "the new publisher's");

    // Off for `strict`: the second publisher is refused, the first keeps the stream.
    let mut kept = ffmpeg_publish(&server.rtmp_url("strict/cam"), 60, (320, 240));
    let started = eventually(WAIT, || (!find(&receiver, "publish_start", "strict/cam").is_empty()).then_some(()));
    assert!(started.is_some(), "{}", kept.report("strict publisher"));
    let mut refused = ffmpeg_publish(&server.rtmp_url("strict/cam"), 60, (640, 360));
    assert!(refused.wait_timeout(WAIT).is_some(), "the second strict publisher was not refused");
    assert!(kept.is_running(), "{}", kept.report("strict publisher"));
    assert!(find(&receiver, "publish_stop", "strict/cam").is_empty(), "{:?}", events(&receiver));
    assert_eq!(find(&receiver, "publish_start", "strict/cam").len(), 1, "{:?}", events(&receiver));
    assert_plays_h264_aac(
        &ffprobe_json(&server.rtmp_url("strict/cam"), WAIT),
        (320, 240),
        "the first strict publisher's",
    );

    second.kill();
    kept.kill();
}
