//! `on_media` with a real HTTP receiver and real ffmpeg publishers (docs/hooks.md, "Media
//! admission"): the receiver refuses video wider than 1000 pixels. A 1280x720 publish is
//! refused once its media is known, and a player waiting for it never gets a frame; a
//! 640x360 one is allowed and plays, its first GOP whole. The fields are checked against what
//! ffmpeg was told to send. An RTSP publisher is asked too, and an endpoint that is down
//! follows `on_error`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::http_receiver::{HttpReceiver, Reply, Request};
use common::rtmp_client::RtmpClient;
use common::{Client, TestServer, assert_plays_h264_aac, eventually, ffprobe_json, test_pattern_args};
use ringcast::protocol::rtmp::client::ClientEvent;

const WAIT: Duration = Duration::from_secs(20);

/// Bitrates and formats ffmpeg is told to send, and so what on_media must report. CABAC makes
/// the Main profile x264 writes (the test pattern's `ultrafast` alone makes it Constrained
/// Baseline, whatever `-profile:v` allows).
const TOLD: [&str; 14] = [
    "-profile:v",
    "main",
    "-x264-params",
    "cabac=1",
    "-level",
    "3.1",
    "-b:v",
    "500k",
    "-ar",
    "48000",
    "-ac",
    "2",
    "-b:a",
    "64k",
];

/// ffmpeg publishing the test pattern of `size` as [`TOLD`] to `url`, over RTMP or, with
/// `rtsp`, RTSP over TCP.
fn publish(url: &str, size: (u32, u32), rtsp: bool) -> Client {
    let mut args = test_pattern_args(30, size);
    args.extend(TOLD.map(str::to_owned));
    let output: &[&str] = if rtsp { &["-rtsp_transport", "tcp", "-f", "rtsp", url] } else { &["-f", "flv", url] };
    args.extend(output.iter().map(|a| a.to_string()));
    Client::spawn("ffmpeg", &args, format!("publisher of {url}"))
}

fn form(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

/// A callback receiver whose `/media` refuses video wider than 1000 pixels, as
/// docs/hooks.md's `media_plan.py` does; every other call is allowed.
fn media_receiver() -> HttpReceiver {
    let receiver = HttpReceiver::start();
    receiver.decide(|request| {
        let width = form(request).get("width").and_then(|width| width.parse::<u32>().ok());
        Some(Reply::status(if width.is_some_and(|width| width > 1000) { 403 } else { 200 }))
    });
    receiver
}

fn server(on_media: &str, events: &HttpReceiver, notify: &str) -> TestServer {
    let config = format!(
        "[notify]\non_media = \"{on_media}\"\n{notify}\
         [[webhook]]\nurl = \"{}\"\nevents = [\"auth_failed\", \"publish_start\", \"publish_stop\", \"connection_close\"]\n",
        events.url("/events")
    );
    TestServer::start_with_config(&config, &[])
}

/// The media callback asked for stream `name`, waited for.
fn media_call(receiver: &HttpReceiver, name: &str) -> HashMap<String, String> {
    let asked = eventually(WAIT, || {
        receiver
            .requests()
            .iter()
            .map(form)
            .find(|fields| fields.get("call").map(String::as_str) == Some("media") && fields["name"] == name)
    });
    asked.unwrap_or_else(|| panic!("on_media was not asked for {name}: {:?}", receiver.requests()))
}

/// The first `event_type` event of connection or stream `matching`, waited for.
fn event(events: &HttpReceiver, event_type: &str, matching: impl Fn(&Value) -> bool) -> Value {
    let found = eventually(WAIT, || {
        events
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .find(|e| e["type"] == event_type && matching(e))
    });
    found.unwrap_or_else(|| panic!("no {event_type}: {:?}", events.requests()))
}

/// Asserts the fields on_media got are what ffmpeg was told ([`TOLD`], 30 fps, `size`).
fn assert_told(fields: &HashMap<String, String>, size: (u32, u32), protocol: &str) {
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_else(|| panic!("no {name}: {fields:?}"));
    let expected = [
        ("protocol", protocol),
        ("app", "live"),
        ("video_codec", "h264"),
        ("video_profile", "Main"),
        ("video_level", "3.1"),
        ("width", &size.0.to_string()),
        ("height", &size.1.to_string()),
        ("frame_rate", "30"),
        ("audio_codec", "aac"),
        ("audio_profile", "LC"),
        ("sample_rate", "48000"),
        ("channels", "2"),
    ];
    for (name, value) in expected {
        assert_eq!(field(name), value, "{name}: {fields:?}");
    }
    if protocol == "rtmp" {
        // onMetaData states ffmpeg's rates in its units (bit/s / 1024): 500k is 488, 64k 62.5.
        assert_eq!((field("video_bitrate_kbps"), field("audio_bitrate_kbps")), ("488", "63"), "{fields:?}");
    }
}

/// What a player got over `within`: media packets, and the status codes.
fn player_gets(player: &mut RtmpClient, within: Duration) -> (Vec<ClientEvent>, Vec<String>) {
    let deadline = Instant::now() + within;
    let (mut media, mut statuses) = (Vec::new(), Vec::new());
    while let Ok(Some(event)) = player.next_event(deadline.saturating_duration_since(Instant::now())) {
        match event {
            ClientEvent::Status { code, .. } => statuses.push(code),
            // Sent with every play's start, not the stream's.
            ClientEvent::Data { payload, .. } if payload.windows(17).any(|w| w == b"|RtmpSampleAccess") => {}
            event @ (ClientEvent::Audio { .. } | ClientEvent::Video { .. } | ClientEvent::Data { .. }) => {
                media.push(event)
            }
            _ => {}
        }
    }
    (media, statuses)
}

#[test]
fn wide_video_is_refused_before_any_player_sees_a_frame_and_narrow_video_plays() {
    let (receiver, events) = (media_receiver(), HttpReceiver::start());
    let server = server(&receiver.url("/media"), &events, "");

    // Refused: a player waiting for the stream gets nothing of it, the publisher the usual
    // publish refusal.
    let mut waiting = RtmpClient::player(server.rtmp_addr(), "wide");
    let mut wide = publish(&server.rtmp_url("live/wide"), (1280, 720), false);
    assert_told(&media_call(&receiver, "wide"), (1280, 720), "rtmp");
    assert!(wide.wait_timeout(WAIT).is_some(), "{}", wide.report("refused publisher"));
    assert!(
        wide.output().contains("on_media callback refused: callback answered 403"),
        "{}",
        wide.report("refused publisher")
    );
    let refused = event(&events, "auth_failed", |e| e["data"]["action"] == "media");
    assert_eq!(refused["data"]["error"], "callback answered 403", "{refused}");
    let stop = event(&events, "publish_stop", |e| e["stream_key"] == "live/wide");
    assert_eq!(stop["data"]["reason"], "on_media callback refused: callback answered 403", "{stop}");
    let close = event(&events, "connection_close", |e| e["conn_id"] == refused["conn_id"]);
    assert_eq!(close["data"]["reason"], "on_media callback refused: callback answered 403", "{close}");
    let (media, statuses) = player_gets(&mut waiting, Duration::from_secs(2));
    assert!(media.is_empty(), "the waiting player got {} media messages: {media:?}", media.len());
    assert!(statuses.is_empty(), "the waiting player was told {statuses:?}");

    // Allowed: a player that waited gets the stream from its headers and a keyframe on, and
    // a new one plays it.
    let mut waiting = RtmpClient::player(server.rtmp_addr(), "narrow");
    let mut narrow = publish(&server.rtmp_url("live/narrow"), (640, 360), false);
    assert_told(&media_call(&receiver, "narrow"), (640, 360), "rtmp");
    let (media, statuses) = player_gets(&mut waiting, Duration::from_secs(3));
    assert_eq!(statuses, ["NetStream.Play.PublishNotify"], "{}", server.log());
    let video: Vec<&[u8]> = media
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Video { payload, .. } => Some(&payload[..]),
            _ => None,
        })
        .collect();
    assert!(video.len() > 10, "{} video messages in 3 s", video.len());
    assert_eq!((video[0][0], video[0][1]), (0x17, 0), "the AVC sequence header first: {:02x?}", &video[0][..2]);
    assert_eq!((video[1][0], video[1][1]), (0x17, 1), "then a keyframe: {:02x?}", &video[1][..2]);
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("live/narrow"), WAIT), (640, 360), &server.log());
    assert!(narrow.is_running(), "{}", narrow.report("allowed publisher"));
    narrow.kill();
}

#[test]
fn an_rtsp_publisher_is_asked_too_and_refused_at_record() {
    let (receiver, events) = (media_receiver(), HttpReceiver::start());
    let server = server(&receiver.url("/media"), &events, "");

    let mut wide = publish(&server.rtsp_url("live/wide"), (1280, 720), true);
    assert_told(&media_call(&receiver, "wide"), (1280, 720), "rtsp");
    assert!(wide.wait_timeout(WAIT).is_some(), "{}", wide.report("refused RTSP publisher"));
    assert!(wide.output().contains("403"), "{}", wide.report("refused RTSP publisher"));
    let stop = event(&events, "publish_stop", |e| e["stream_key"] == "live/wide");
    assert_eq!(stop["data"]["reason"], "on_media callback refused: callback answered 403", "{stop}");

    let mut narrow = publish(&server.rtsp_url("live/narrow"), (640, 360), true);
    assert_told(&media_call(&receiver, "narrow"), (640, 360), "rtsp");
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("live/narrow"), WAIT), (640, 360), &server.log());
    narrow.kill();
}

#[test]
fn an_on_media_endpoint_that_is_down_follows_on_error() {
    // A port nothing listens on: bound, then closed.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/media", listener.local_addr().expect("addr"))
    };
    let events = HttpReceiver::start();
    let denying = server(&down, &events, "");
    let mut refused = publish(&denying.rtmp_url("live/cam"), (640, 360), false);
    assert!(refused.wait_timeout(WAIT).is_some(), "{}", refused.report("publisher under on_error = deny"));
    let failed = event(&events, "auth_failed", |e| e["data"]["action"] == "media");
    let error = failed["data"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("callback failed: "), "{failed}");

    let allowing = server(&down, &events, "on_error = \"allow\"\n");
    let mut allowed = publish(&allowing.rtmp_url("live/cam"), (640, 360), false);
    assert_plays_h264_aac(&ffprobe_json(&allowing.rtmp_url("live/cam"), WAIT), (640, 360), &allowing.log());
    assert!(allowed.is_running(), "{}", allowed.report("publisher under on_error = allow"));
    allowed.kill();
}
