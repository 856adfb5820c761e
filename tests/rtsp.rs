//! RTSP end to end against the real `ringcast` binary with real clients: ffmpeg publishes over
//! RTMP and RTSP (TCP and UDP), GStreamer publishes with `rtspclientsink`; ffprobe counts what
//! it plays over RTSP (TCP and UDP), RTMP and HTTP-FLV, GStreamer's `rtspsrc` plays over TCP
//! and UDP. Hooks are checked with real HTTP receivers; errors with raw sockets. Needs ffmpeg
//! and GStreamer (`bash .ci/run` installs them).

mod common;

use std::time::Duration;

use ringcast::protocol::rtsp::auth::{DigestCredentials, digest_response};
use serde_json::Value;

use common::http_flv_client::{exchange, status_and_head};
use common::http_receiver::{HttpReceiver, Reply as HookReply, Request};
use common::rtmp_client::RtmpClient;
use common::rtsp_client::{
    Counted, RtspConnection, assert_counted, count_frames, ffmpeg_publish_rtsp, ffmpeg_publish_rtsp_codecs,
    ffmpeg_publish_rtsp_with_b_frames, gst_play, gst_publish, video_packet_times,
};
use common::{Client, TestServer, eventually, ffmpeg_publish};
use ringcast::protocol::rtmp::client::ClientEvent;

const PUBLISH_START: Duration = Duration::from_secs(15);
const PROBE: Duration = Duration::from_secs(30);
const ANSWER: Duration = Duration::from_secs(10);
const SMALL: (u32, u32) = (320, 240);
/// ffprobe reads this many seconds of media: at 30 fps and 44.1 kHz AAC (43 frames a second)
/// at least the minimums below, whatever the GOP cache adds at the start.
const READ_SECONDS: u32 = 3;
const MIN_VIDEO_FRAMES: u64 = 60;
const MIN_AUDIO_FRAMES: u64 = 80;

/// Waits until the server logged its `n`-th publish start.
fn wait_publishing(server: &TestServer, publisher: &mut Client, n: usize) {
    if !server.wait_for_log_count("publish start", n, PUBLISH_START) {
        panic!("{}\n--- server log ---\n{}", publisher.report("no publish start"), server.log());
    }
}

/// A server with ffmpeg publishing `live/cam` over RTMP for a minute.
fn serve_rtmp_stream() -> (TestServer, Client) {
    let server = TestServer::start();
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, SMALL);
    wait_publishing(&server, &mut publisher, 1);
    (server, publisher)
}

#[test]
fn ffprobe_and_gstreamer_play_an_rtmp_stream_over_rtsp_tcp_and_udp() {
    let (server, _publisher) = serve_rtmp_stream();
    let url = server.rtsp_url("live/cam?token=x");
    for transport in ["tcp", "udp"] {
        let counted = count_frames(&url, Some(transport), READ_SECONDS, PROBE)
            .unwrap_or_else(|e| panic!("{e}\n--- server log ---\n{}", server.log()));
        let context = format!("ffprobe over RTSP/{transport}");
        assert_counted(&counted, SMALL, MIN_VIDEO_FRAMES, Some(MIN_AUDIO_FRAMES), &context);
    }
    for protocols in ["tcp", "udp"] {
        let play = || {
            gst_play(&url, protocols, Duration::from_secs(u64::from(READ_SECONDS) + 2))
                .unwrap_or_else(|e| panic!("rtspsrc over {protocols}: {e}\n--- server log ---\n{}", server.log()))
        };
        // Under a loaded CI run gst-launch has twice printed frames but no caps line with a
        // picture size (2 of about 8 full runs; never alone): asked once more before failing,
        // and the cause is still open.
        let mut played = play();
        if played.video_caps.is_empty() {
            eprintln!("rtspsrc over {protocols}: no video caps printed ({played:?}); playing once more");
            played = play();
        }
        let context = format!("rtspsrc over {protocols}: {played:?}");
        assert!(played.video_caps.contains("width=(int)320, height=(int)240"), "{context}");
        // Two seconds or more of each track, whatever the start took.
        assert!(played.video_frames >= 40 && played.audio_frames >= 60, "{context}");
    }
}

#[test]
fn ffmpeg_publishes_over_rtsp_and_rtmp_http_flv_and_rtsp_players_get_it() {
    let server = TestServer::start();
    for (n, transport) in ["tcp", "udp"].into_iter().enumerate() {
        let key = format!("live/{transport}");
        let mut publisher = ffmpeg_publish_rtsp(&server.rtsp_url(&key), transport, 30, SMALL);
        wait_publishing(&server, &mut publisher, n + 1);
        let context = format!("published over RTSP/{transport}");
        let rtmp = count_frames(&server.rtmp_url(&key), None, READ_SECONDS, PROBE)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", publisher.report(&context), server.log()));
        assert_counted(&rtmp, SMALL, MIN_VIDEO_FRAMES, Some(MIN_AUDIO_FRAMES), &format!("RTMP play, {context}"));
        let flv = format!("http://{}/{key}.flv", server.http_addr());
        let flv = count_frames(&flv, None, READ_SECONDS, PROBE).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert_counted(&flv, SMALL, MIN_VIDEO_FRAMES, Some(MIN_AUDIO_FRAMES), &format!("HTTP-FLV play, {context}"));
        let rtsp = count_frames(&server.rtsp_url(&key), Some("tcp"), READ_SECONDS, PROBE)
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert_counted(&rtsp, SMALL, MIN_VIDEO_FRAMES, Some(MIN_AUDIO_FRAMES), &format!("RTSP play, {context}"));
        drop(publisher);
    }
}

/// RTP carries presentation times only: a publisher's B-frames must reach RTMP and HTTP-FLV
/// players at decode times with composition offsets, as an RTMP publisher would send them.
#[test]
fn b_frames_published_over_rtsp_reach_flv_players_in_decode_order() {
    let server = TestServer::start();
    let key = "live/bframes";
    let mut publisher = ffmpeg_publish_rtsp_with_b_frames(&server.rtsp_url(key), "tcp", 30, SMALL, 2);
    wait_publishing(&server, &mut publisher, 1);
    for url in [server.rtmp_url(key), format!("http://{}/{key}.flv", server.http_addr())] {
        let counted = count_frames(&url, None, READ_SECONDS, PROBE).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert_counted(&counted, SMALL, MIN_VIDEO_FRAMES, Some(MIN_AUDIO_FRAMES), &format!("B-frames, {url}"));
        let times = video_packet_times(&url, READ_SECONDS, PROBE).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert!(times.len() as u64 >= MIN_VIDEO_FRAMES, "{url}: {} packets", times.len());
        assert!(times.windows(2).all(|w| w[0].1 <= w[1].1), "{url}: decode times go back: {times:?}");
        assert!(times.iter().all(|(pts, dts)| dts <= pts), "{url}: a frame decoded after it is shown: {times:?}");
        let reordered = times.iter().filter(|(pts, dts)| pts > dts).count();
        assert!(reordered * 4 >= times.len(), "{url}: only {reordered} of {} frames carry an offset", times.len());
    }
    drop(publisher);
}

#[test]
fn gstreamer_publishes_with_rtspclientsink() {
    let server = TestServer::start();
    for (n, protocols) in ["tcp", "udp"].into_iter().enumerate() {
        let key = format!("live/gst-{protocols}");
        let mut publisher = gst_publish(&server.rtsp_url(&key), protocols, 30);
        wait_publishing(&server, &mut publisher, n + 1);
        let counted = count_frames(&server.rtmp_url(&key), None, READ_SECONDS, PROBE)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", publisher.report("rtspclientsink"), server.log()));
        assert_counted(&counted, SMALL, MIN_VIDEO_FRAMES, None, &format!("rtspclientsink over {protocols}"));
    }
}

/// The form of a callback request as (name, value) pairs.
fn form_of(request: &Request) -> Vec<(String, String)> {
    common::hook_peers::parse_form(&request.body)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

const BASIC_CAM_PW: &str = "Basic Y2FtOnB3"; // cam:pw

#[test]
fn hooks_see_rtsp_clients_and_their_credentials() {
    let on_connect = HttpReceiver::start();
    let on_play = HttpReceiver::start();
    on_play.reply(HookReply::status(401)); // bad credentials
    on_play.reply(HookReply::status(403)); // denied
    let on_publish = HttpReceiver::start();
    let sink = HttpReceiver::start();
    let flags = [
        ("--on-connect", on_connect.url("/connect")),
        ("--on-play", on_play.url("/play")),
        ("--on-publish", on_publish.url("/publish")),
        ("--hook-webhook", format!("*={}", sink.url("/events"))),
    ];
    let args: Vec<&str> = flags.iter().flat_map(|(flag, value)| [*flag, value.as_str()]).collect();
    let server = TestServer::start_with_config("rtsp_auth = \"basic\"\n", &args);
    let addr = server.rtsp_addr();
    let mut publisher = ffmpeg_publish_rtsp(&format!("rtsp://enc:secret@{addr}/live/cam"), "tcp", 60, SMALL);
    wait_publishing(&server, &mut publisher, 1);
    let publish = form_of(&on_publish.wait_for(1, ANSWER)[0]);
    assert_eq!(field(&publish, "protocol"), "rtsp", "{publish:?}");
    assert_eq!(field(&publish, "call"), "publish");
    assert_eq!((field(&publish, "user"), field(&publish, "pass")), ("enc", "secret"), "ffmpeg answered the 401");

    let url = format!("rtsp://{addr}/live/cam?token=t");
    let mut rtsp = RtspConnection::connect(addr);
    let challenged = rtsp.request("DESCRIBE", &url, &[], "");
    assert_eq!(challenged.status, 401, "{}", challenged.head);
    assert!(challenged.header("WWW-Authenticate").is_some_and(|v| v.starts_with("Basic")), "{}", challenged.head);
    assert_eq!(on_play.requests().len(), 0, "no callback before credentials");
    let bad = rtsp.request("DESCRIBE", &url, &[("Authorization", BASIC_CAM_PW)], "");
    assert_eq!(bad.status, 401, "the callback's 401 is bad credentials: {}", bad.head);
    let denied = rtsp.request("DESCRIBE", &url, &[("Authorization", BASIC_CAM_PW)], "");
    assert_eq!(denied.status, 403, "another refusal is a denial: {}", denied.head);
    let described = rtsp.request("DESCRIBE", &url, &[("Authorization", BASIC_CAM_PW)], "");
    assert_eq!(described.status, 200, "{}\n{}", described.head, server.log());
    assert!(described.body.contains("m=video") && described.body.contains("H264/90000"), "{}", described.body);
    assert!(described.body.contains("m=audio") && described.body.contains("MPEG4-GENERIC"), "{}", described.body);

    let plays = on_play.wait_for(3, ANSWER);
    let form = form_of(&plays[2]);
    assert_eq!(field(&form, "protocol"), "rtsp");
    assert_eq!(field(&form, "call"), "play");
    assert_eq!(field(&form, "url"), url);
    assert_eq!((field(&form, "app"), field(&form, "name")), ("live", "cam"));
    assert_eq!((field(&form, "user"), field(&form, "pass")), ("cam", "pw"));
    assert_eq!(field(&form, "token"), "t");
    assert!(field(&form, "addr").starts_with("127.0.0.1"), "{form:?}");
    assert!(!field(&form, "clientid").is_empty(), "{form:?}");
    let connect = form_of(&on_connect.wait_for(2, ANSWER)[1]);
    assert_eq!(field(&connect, "protocol"), "rtsp", "{connect:?}");

    let events = eventually(ANSWER, || {
        let events: Vec<Value> = sink.requests().iter().filter_map(|r| serde_json::from_slice(&r.body).ok()).collect();
        let has = |kind: &str| events.iter().any(|e| e["type"] == kind && e["protocol"] == "rtsp");
        (has("publish_start") && has("play_start") && has("auth_failed") && has("connect")).then_some(events)
    })
    .unwrap_or_else(|| panic!("events missing: {} received\n{}", sink.requests().len(), server.log()));
    assert!(events.iter().any(|e| e["type"] == "play_start" && e["stream_key"] == "live/cam"), "{events:?}");
}

/// Sets a raw connection up to play `url` over TCP: DESCRIBE, SETUP of track 0, PLAY. Returns
/// the session and the SSRC the SETUP announced.
fn play_over_tcp(rtsp: &mut RtspConnection, url: &str) -> (String, u32) {
    let described = rtsp.request("DESCRIBE", url, &[], "");
    assert_eq!(described.status, 200, "{}", described.head);
    let setup = rtsp.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", "RTP/AVP/TCP;interleaved=0-1")], "");
    assert_eq!(setup.status, 200, "{}", setup.head);
    let session = setup.header("Session").unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
    let transport = setup.header("Transport").unwrap_or_default();
    let ssrc = transport.split("ssrc=").nth(1).and_then(|hex| u32::from_str_radix(hex.trim(), 16).ok());
    let ssrc = ssrc.unwrap_or_else(|| panic!("no ssrc in {transport}"));
    let played = rtsp.request("PLAY", url, &[("Session", &session)], "");
    assert_eq!(played.status, 200, "{}", played.head);
    (session, ssrc)
}

#[test]
fn errors_get_their_status_over_raw_sockets() {
    let server = TestServer::start_with_config("rtsp_session_timeout = \"2s\"\n", &[]);
    let addr = server.rtsp_addr();
    let url = format!("rtsp://{addr}/live/cam");

    let mut rtsp = RtspConnection::connect(addr);
    let options = rtsp.request("OPTIONS", &url, &[], "");
    assert_eq!(options.status, 200);
    assert!(options.header("Public").is_some_and(|p| p.contains("ANNOUNCE")), "{}", options.head);
    assert_eq!(rtsp.request("DESCRIBE", &url, &[], "").status, 404, "nobody publishes it");
    assert_eq!(rtsp.request("FLY", &url, &[], "").status, 501);
    assert_eq!(rtsp.request("PLAY", &url, &[], "").status, 455, "PLAY before SETUP");
    rtsp.send_raw(b"DESCRIBE rtsp://x/live/cam HTTP/1.1\r\nCSeq: 9\r\n\r\n");
    let malformed = rtsp.reply(ANSWER).expect("a reply to a malformed request");
    assert_eq!(malformed.status, 400, "{}", malformed.head);

    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, SMALL);
    wait_publishing(&server, &mut publisher, 1);
    let mut rtsp = RtspConnection::connect(addr);
    assert_eq!(rtsp.request("DESCRIBE", &url, &[], "").status, 200);
    let multicast = rtsp.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", "RTP/AVP;multicast")], "");
    assert_eq!(multicast.status, 461, "{}", multicast.head);

    // A second publisher of a published stream.
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=control:streamid=0\r\n";
    let mut second = RtspConnection::connect(addr);
    let busy = second.request("ANNOUNCE", &url, &[("Content-Type", "application/sdp")], sdp);
    assert_eq!(busy.status, 453, "{}", busy.head);

    // A player gets interleaved media on its channels, then goes silent past the session
    // timeout and is closed.
    let mut player = RtspConnection::connect(addr);
    play_over_tcp(&mut player, &url);
    let frames = player.read_frames(Duration::from_secs(1));
    let channels: Vec<u8> = frames.iter().map(|(channel, _)| *channel).collect();
    assert!(channels.iter().filter(|channel| **channel == 0).count() > 10, "RTP on channel 0: {channels:?}");
    assert!(channels.iter().all(|channel| *channel <= 1), "only the set-up track's channels: {channels:?}");
    assert!(
        server.wait_for_log("no request or media for 2s (session timeout)", Duration::from_secs(10)),
        "a silent session is closed\n{}",
        server.log()
    );
}

/// The Digest answer as an auth service gets it, checked the way it would check it.
fn digest_checks_out(form: &[(String, String)], password: &str) -> bool {
    let fields = DigestCredentials {
        user: field(form, "user").to_owned(),
        realm: field(form, "digest_realm").to_owned(),
        nonce: field(form, "digest_nonce").to_owned(),
        uri: field(form, "digest_uri").to_owned(),
        response: field(form, "digest_response").to_owned(),
        qop: Some(field(form, "digest_qop").to_owned()).filter(|v| !v.is_empty()),
        nc: Some(field(form, "digest_nc").to_owned()).filter(|v| !v.is_empty()),
        cnonce: Some(field(form, "digest_cnonce").to_owned()).filter(|v| !v.is_empty()),
    };
    fields.verify(field(form, "digest_method"), password)
}

#[test]
fn digest_answers_reach_the_callbacks_to_check() {
    let on_play = HttpReceiver::start();
    let on_publish = HttpReceiver::start();
    let flags = [("--on-play", on_play.url("/play")), ("--on-publish", on_publish.url("/publish"))];
    let args: Vec<&str> = flags.iter().flat_map(|(flag, value)| [*flag, value.as_str()]).collect();
    let server = TestServer::start_with_config("rtsp_auth = \"digest\"\n", &args);
    let addr = server.rtsp_addr();
    let mut publisher = ffmpeg_publish_rtsp(&format!("rtsp://enc:secret@{addr}/live/cam"), "tcp", 60, SMALL);
    wait_publishing(&server, &mut publisher, 1);
    let publish = form_of(&on_publish.wait_for(1, ANSWER)[0]);
    assert_eq!((field(&publish, "user"), field(&publish, "pass")), ("enc", ""), "{publish:?}");
    assert_eq!(field(&publish, "digest_method"), "ANNOUNCE");
    assert!(digest_checks_out(&publish, "secret"), "ffmpeg's Digest answer: {publish:?}");
    assert!(!digest_checks_out(&publish, "guess"));

    let url = format!("rtsp://{addr}/live/cam");
    let mut rtsp = RtspConnection::connect(addr);
    let challenged = rtsp.request("DESCRIBE", &url, &[], "");
    assert_eq!(challenged.status, 401);
    let offer = challenged.header("WWW-Authenticate").unwrap_or_default().to_owned();
    assert!(offer.starts_with("Digest realm=\"ringcast\""), "Digest first: {}", challenged.head);
    let nonce = offer.split("nonce=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default();
    let answer = |nonce: &str| {
        let fields = DigestCredentials {
            user: "cam".into(),
            realm: "ringcast".into(),
            nonce: nonce.into(),
            uri: url.clone(),
            ..Default::default()
        };
        let response = digest_response(&fields, "DESCRIBE", "pw");
        format!(
            "Digest username=\"cam\", realm=\"ringcast\", nonce=\"{nonce}\", uri=\"{url}\", response=\"{response}\""
        )
    };
    let stale = rtsp.request("DESCRIBE", &url, &[("Authorization", &answer("not-issued"))], "");
    assert_eq!(stale.status, 401, "a nonce this connection was not given");
    assert_eq!(on_play.requests().len(), 0);
    let challenged = rtsp.request("DESCRIBE", &url, &[], "");
    let offer = challenged.header("WWW-Authenticate").unwrap_or_default().to_owned();
    let nonce2 = offer.split("nonce=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default();
    assert_ne!(nonce, nonce2, "a fresh nonce per challenge");
    let described = rtsp.request("DESCRIBE", &url, &[("Authorization", &answer(nonce2))], "");
    assert_eq!(described.status, 200, "{}\n{}", described.head, server.log());
    let play = form_of(&on_play.wait_for(1, ANSWER)[0]);
    assert_eq!(field(&play, "protocol"), "rtsp");
    assert_eq!(field(&play, "digest_method"), "DESCRIBE");
    assert!(digest_checks_out(&play, "pw"), "{play:?}");
}

const PCMU_SDP: &str =
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=control:streamid=0\r\n";

/// A publisher over UDP whose media arrives, then goes silent: its session ends at
/// `rtsp_session_timeout`, its stream is free again, and what it sent was counted.
#[test]
fn a_silent_udp_publisher_is_cleaned_up_by_the_session_timeout() {
    let sink = HttpReceiver::start();
    let webhook = format!("*={}", sink.url("/events"));
    let server = TestServer::start_with_config("rtsp_session_timeout = \"2s\"\n", &["--hook-webhook", &webhook]);
    let addr = server.rtsp_addr();
    let url = format!("rtsp://{addr}/live/mic");
    let mut rtsp = RtspConnection::connect(addr);
    assert_eq!(rtsp.request("ANNOUNCE", &url, &[("Content-Type", "application/sdp")], PCMU_SDP).status, 200);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let port = udp.local_addr().expect("local addr").port();
    let transport = format!("RTP/AVP;unicast;client_port={port}-{};mode=record", port + 1);
    let setup = rtsp.request("SETUP", &format!("{url}/streamid=0"), &[("Transport", &transport)], "");
    assert_eq!(setup.status, 200, "{}", setup.head);
    let answered = setup.header("Transport").unwrap_or_default().to_owned();
    let server_port: u16 = answered
        .split("server_port=")
        .nth(1)
        .and_then(|ports| ports.split('-').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no server_port: {answered}"));
    let session = setup.header("Session").unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
    assert_eq!(rtsp.request("RECORD", &url, &[("Session", &session)], "").status, 200);
    for sequence in 0..50u16 {
        let mut packet = vec![0x80, 0, 0, 0];
        packet[2..4].copy_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        udp.send_to(&packet, ("127.0.0.1", server_port)).expect("send RTP");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Silent from here on, with the connection open.
    let stop = eventually(Duration::from_secs(15), || {
        sink.requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .find(|e| e["type"] == "publish_stop" && e["stream_key"] == "live/mic")
    })
    .unwrap_or_else(|| panic!("no publish_stop\n{}", server.log()));
    assert_eq!(stop["protocol"], "rtsp");
    assert!(stop["data"]["audio_packets"].as_u64().unwrap_or(0) >= 40, "the UDP media was taken: {stop}");
    assert!(stop["data"]["bytes_in"].as_u64().unwrap_or(0) >= 40 * 172, "{stop}");
    assert!(server.log().contains("session timeout"), "{}", server.log());
    let mut next = RtspConnection::connect(addr);
    assert_eq!(next.request("ANNOUNCE", &url, &[("Content-Type", "application/sdp")], PCMU_SDP).status, 200);
}

fn api_json(server: &TestServer, method: &str, path: &str) -> Value {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (response, _) = exchange(server.api_addr(), request.as_bytes(), ANSWER);
    let (_, head) = status_and_head(&response);
    serde_json::from_slice(&response[head.len()..]).unwrap_or(Value::Null)
}

/// An operator's kick ends an RTSP player, and so does its publisher leaving.
#[test]
fn kicks_and_the_publishers_end_close_rtsp_players() {
    let (server, mut publisher) = serve_rtmp_stream();
    let url = server.rtsp_url("live/cam");
    let mut kicked = RtspConnection::connect(server.rtsp_addr());
    play_over_tcp(&mut kicked, &url);
    let listed = eventually(ANSWER, || {
        let clients = api_json(&server, "GET", "/api/clients")["clients"].as_array().cloned()?;
        clients.into_iter().find(|c| c["protocol"] == "rtsp" && c["role"] == "player")
    })
    .unwrap_or_else(|| panic!("no rtsp player listed: {}", api_json(&server, "GET", "/api/clients")));
    assert_eq!(listed["stream"], "live/cam", "{listed}");
    let conn_id = listed["conn_id"].as_u64().expect("conn_id");
    assert!(!kicked.read_frames(Duration::from_millis(300)).is_empty(), "playing before the kick");
    assert_eq!(api_json(&server, "DELETE", &format!("/api/clients/{conn_id}"))["kicked"], true);
    assert!(kicked.closed_within(ANSWER), "the kicked player's connection stays open\n{}", server.log());

    let mut orphan = RtspConnection::connect(server.rtsp_addr());
    play_over_tcp(&mut orphan, &url);
    assert!(!orphan.read_frames(Duration::from_millis(300)).is_empty());
    publisher.kill();
    assert!(orphan.closed_within(ANSWER), "the player outlived its publisher\n{}", server.log());
}

/// RTP numbering is the stream's on each shard: whichever shard a player lands on (a stream
/// relayed from the publisher's shard too), it sees the SSRC its SETUP announced and sequence
/// numbers without a gap or a jump, also after other players came and went.
#[test]
fn every_rtsp_player_sees_one_numbering_whichever_shard_it_lands_on() {
    let (server, _publisher) = serve_rtmp_stream();
    let url = server.rtsp_url("live/cam");
    for n in 0..6 {
        let mut player = RtspConnection::connect(server.rtsp_addr());
        let (_, announced) = play_over_tcp(&mut player, &url);
        let rtp: Vec<(u32, u16)> = player
            .read_frames(Duration::from_millis(700))
            .iter()
            .filter(|(channel, packet)| *channel == 0 && packet.len() >= 12)
            .map(|(_, packet)| {
                let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
                (ssrc, u16::from_be_bytes([packet[2], packet[3]]))
            })
            .collect();
        assert!(rtp.len() > 10, "player {n} got video: {rtp:?}");
        assert!(rtp.iter().all(|(ssrc, _)| *ssrc == announced), "player {n}: SSRC {announced:08X} only: {rtp:?}");
        let consecutive = rtp.windows(2).all(|pair| pair[1].1 == pair[0].1.wrapping_add(1));
        assert!(consecutive, "player {n}: sequence numbers in order, no gap: {rtp:?}");
    }
}

/// `RTP-Info` of a PLAY reply: per track (`trackID=N` of its URL), the sequence number and RTP
/// time it states.
fn rtp_info(reply: &common::rtsp_client::Reply) -> Vec<(usize, u16, u32)> {
    let header = reply.header("RTP-Info").unwrap_or_else(|| panic!("no RTP-Info: {}", reply.head));
    header
        .split(',')
        .map(|entry| {
            let url = entry.split(';').next().unwrap_or_default();
            let track = url.rsplit("trackID=").next().and_then(|n| n.parse().ok());
            let value =
                |name: &str| entry.split(';').find_map(|field| field.trim().strip_prefix(name)?.parse::<u64>().ok());
            let (Some(track), Some(seq), Some(rtptime)) = (track, value("seq="), value("rtptime=")) else {
                panic!("RTP-Info entry {entry:?} of {header:?}");
            };
            (track, seq as u16, rtptime as u32)
        })
        .collect()
}

/// The (sequence number, RTP time) of each RTP packet on interleaved `channel`.
fn rtp_on(frames: &[(u8, Vec<u8>)], channel: u8) -> Vec<(u16, u32, Vec<u8>)> {
    frames
        .iter()
        .filter(|(on, packet)| *on == channel && packet.len() > 12)
        .map(|(_, packet)| {
            let seq = u16::from_be_bytes([packet[2], packet[3]]);
            let time = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
            (seq, time, packet[12..].to_vec())
        })
        .collect()
}

/// Checks that the first packet of each track after a PLAY is the one its `RTP-Info` named.
fn assert_rtp_info_names_the_first_packets(info: &[(usize, u16, u32)], frames: &[(u8, Vec<u8>)], context: &str) {
    assert_eq!(info.iter().map(|(track, ..)| *track).collect::<Vec<_>>(), [0, 1], "{context}: {info:?}");
    for (track, seq, rtptime) in info {
        let packets = rtp_on(frames, 2 * *track as u8);
        let first = packets.first().unwrap_or_else(|| panic!("{context}: nothing on track {track}"));
        assert_eq!((first.0, first.1), (*seq, *rtptime), "{context}: track {track}'s first packet");
    }
}

/// A video packet that starts a decode: H.264 parameter sets (alone or in a STAP-A), sent in
/// band before every keyframe.
fn starts_a_gop(payload: &[u8]) -> bool {
    payload.first().is_some_and(|header| matches!(header & 0x1f, 7 | 24))
}

/// PAUSE stops a player's media (nothing at all arrives, not even sender reports), PLAY
/// resumes it with `RTP-Info` naming the first packet of each track, and a resumed player is
/// sent nothing twice: after a short pause it continues with the next packet, after a long one
/// it starts on a keyframe.
#[test]
fn pause_stops_media_and_play_resumes_where_rtp_info_says() {
    let (server, _publisher) = serve_rtmp_stream();
    let url = server.rtsp_url("live/cam");
    let mut rtsp = RtspConnection::connect(server.rtsp_addr());
    assert_eq!(rtsp.request("DESCRIBE", &url, &[], "").status, 200);
    let setup = rtsp.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", "RTP/AVP/TCP;interleaved=0-1")], "");
    let session = setup.header("Session").unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
    let setup = rtsp.request(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[("Transport", "RTP/AVP/TCP;interleaved=2-3"), ("Session", &session)],
        "",
    );
    assert_eq!(setup.status, 200, "{}", setup.head);
    let session = [("Session", session.as_str())];

    let played = rtsp.request("PLAY", &url, &session, "");
    assert_eq!(played.status, 200, "{}", played.head);
    let frames = rtsp.read_frames(Duration::from_millis(1500));
    assert_rtp_info_names_the_first_packets(&rtp_info(&played), &frames, "first PLAY");

    let mut last_video = rtp_on(&frames, 0).last().map(|packet| packet.0).expect("video before the pause");
    for (pause, name) in [(Duration::from_millis(1500), "long"), (Duration::ZERO, "short")] {
        let paused = rtsp.request("PAUSE", &url, &session, "");
        assert_eq!(paused.status, 200, "{}", paused.head);
        // What the writer had taken before the PAUSE came before its reply; nothing after it.
        let silent = rtsp.read_frames(pause.max(Duration::from_secs(1)));
        assert!(silent.is_empty(), "{name} pause: {} interleaved frames while paused", silent.len());

        let resumed = rtsp.request("PLAY", &url, &session, "");
        assert_eq!(resumed.status, 200, "{}", resumed.head);
        let frames = rtsp.read_frames(Duration::from_millis(1500));
        let context = format!("PLAY after a {name} pause");
        assert_rtp_info_names_the_first_packets(&rtp_info(&resumed), &frames, &context);
        let video = rtp_on(&frames, 0);
        assert!(video.len() > 20, "{context}: video again: {} packets", video.len());
        assert!(rtp_on(&frames, 2).len() > 10, "{context}: audio again");
        let first = &video[0];
        let ahead = first.0.wrapping_sub(last_video);
        assert!((1..0x8000).contains(&ahead), "{context}: nothing sent twice: {} after {last_video}", first.0);
        assert!(ahead == 1 || starts_a_gop(&first.2), "{context}: the next packet, or a keyframe's: {first:?}");
        last_video = video.last().map(|packet| packet.0).unwrap_or(last_video);
    }
}

/// The one stream of `kind` ffprobe counted, checked for its codec and a frame count.
fn assert_stream(counted: &[Counted], kind: &str, codec: &str, min_frames: u64, context: &str) {
    let streams: Vec<_> = counted.iter().filter(|s| s.codec_type == kind).collect();
    assert_eq!(streams.len(), 1, "{context}: one {kind} stream: {counted:?}");
    assert_eq!(streams[0].codec_name, codec, "{context}: {counted:?}");
    assert!(streams[0].frames >= min_frames, "{context}: at least {min_frames} {kind} frames: {counted:?}");
}

/// ffmpeg publishes H.265 (RFC 7798) over RTSP; ffprobe plays it back over RTSP. RTMP carries it
/// as E-RTMP `hvc1` (this ffmpeg's FLV demuxer predates it): an in-test RTMP player checks the
/// sequence start and the frames that follow.
#[test]
fn h265_published_over_rtsp_plays_over_rtsp_and_reaches_rtmp_as_hvc1() {
    let server = TestServer::start();
    let key = "live/hevc";
    let mut publisher = ffmpeg_publish_rtsp_codecs(&server.rtsp_url(key), 30, SMALL, Some("libx265"), &["-c:a", "aac"]);
    wait_publishing(&server, &mut publisher, 1);
    for transport in ["tcp", "udp"] {
        let context = format!("H.265 over RTSP/{transport}");
        let counted = count_frames(&server.rtsp_url(key), Some(transport), READ_SECONDS, PROBE)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", publisher.report(&context), server.log()));
        assert_stream(&counted, "video", "hevc", MIN_VIDEO_FRAMES, &context);
        let video = counted.iter().find(|s| s.codec_type == "video").map(|s| (s.width, s.height));
        assert_eq!(video, Some((Some(u64::from(SMALL.0)), Some(u64::from(SMALL.1)))), "{context}");
        assert_stream(&counted, "audio", "aac", MIN_AUDIO_FRAMES, &context);
    }

    // E-RTMP video: the ExHeader bit, the packet type in the low nibble, then the FourCC.
    let mut player = RtmpClient::player(server.rtmp_addr(), "hevc");
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(READ_SECONDS));
    let mut video = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match player.next_event(left) {
            Ok(Some(ClientEvent::Video { payload, .. })) => video.push(payload),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let hvc1 = |body: &[u8]| body.len() > 5 && body[0] & 0x80 != 0 && &body[1..5] == b"hvc1";
    let first = video.first().unwrap_or_else(|| panic!("no video over RTMP\n{}", server.log()));
    assert!(hvc1(first) && first[0] & 0x0f == 0, "an hvc1 sequence start first: {:02x?}", &first[..first.len().min(8)]);
    let frames = video.iter().filter(|body| hvc1(body) && matches!(body[0] & 0x0f, 1 | 3)).count();
    assert!(frames as u64 >= MIN_VIDEO_FRAMES, "{frames} hvc1 frames over RTMP of {}", video.len());
}

/// G.711 published over RTSP (PCMU beside H.264, PCMA alone) plays over RTSP and over RTMP and
/// HTTP-FLV (FLV sound formats 8 and 7). ffmpeg sends 8 kHz G.711 in frames of at most a few
/// hundred milliseconds: three seconds are a dozen frames or more.
#[test]
fn g711_published_over_rtsp_plays_over_rtsp_rtmp_and_http_flv() {
    const MIN_G711_FRAMES: u64 = 12;
    let server = TestServer::start();
    let g711 = |codec: &'static str| ["-c:a", codec, "-ar", "8000", "-ac", "1"];
    let cases = [("live/pcmu", Some("libx264"), "pcm_mulaw"), ("live/pcma", None, "pcm_alaw")];
    for (n, (key, video, codec)) in cases.into_iter().enumerate() {
        let mut publisher = ffmpeg_publish_rtsp_codecs(&server.rtsp_url(key), 30, SMALL, video, &g711(codec));
        wait_publishing(&server, &mut publisher, n + 1);
        let urls = [
            (server.rtsp_url(key), Some("tcp")),
            (server.rtmp_url(key), None),
            (format!("http://{}/{key}.flv", server.http_addr()), None),
        ];
        for (url, transport) in urls {
            let context = format!("{codec} published over RTSP, played from {url}");
            let counted = count_frames(&url, transport, READ_SECONDS, PROBE)
                .unwrap_or_else(|e| panic!("{e}\n{}\n{}", publisher.report(&context), server.log()));
            assert_stream(&counted, "audio", codec, MIN_G711_FRAMES, &context);
            if video.is_some() {
                assert_stream(&counted, "video", "h264", MIN_VIDEO_FRAMES, &context);
            } else {
                assert!(counted.iter().all(|s| s.codec_type == "audio"), "{context}: audio only: {counted:?}");
            }
        }
        drop(publisher);
    }
}

/// A UDP session's RTCP counts only from the client RTCP port it set up: receiver reports from
/// any other port (even at the client's address) neither reach the session nor keep it alive.
#[test]
fn only_the_clients_set_up_ports_keep_a_udp_session_alive() {
    let server = TestServer::start_with_config("rtsp_session_timeout = \"2s\"\n", &[]);
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, SMALL);
    wait_publishing(&server, &mut publisher, 1);
    let url = server.rtsp_url("live/cam");
    // An RTCP receiver report with no report blocks.
    let report = [0x80, 201, 0, 1, 0, 0, 0, 1];
    for from_its_rtcp_port in [false, true] {
        let bind = || std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        let (rtp, rtcp, stranger) = (bind(), bind(), bind());
        let port = |socket: &std::net::UdpSocket| socket.local_addr().expect("bound").port();
        let mut rtsp = RtspConnection::connect(server.rtsp_addr());
        assert_eq!(rtsp.request("DESCRIBE", &url, &[], "").status, 200);
        let transport = format!("RTP/AVP;unicast;client_port={}-{}", port(&rtp), port(&rtcp));
        let setup = rtsp.request("SETUP", &format!("{url}/trackID=0"), &[("Transport", &transport)], "");
        assert_eq!(setup.status, 200, "{}", setup.head);
        let server_rtcp = setup
            .header("Transport")
            .and_then(|t| t.split("server_port=").nth(1))
            .and_then(|ports| ports.split(['-', ';']).nth(1))
            .and_then(|port| port.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no server_port: {}", setup.head));
        let session = setup.header("Session").unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
        assert_eq!(rtsp.request("PLAY", &url, &[("Session", &session)], "").status, 200);

        let sender = if from_its_rtcp_port { &rtcp } else { &stranger };
        let until = std::time::Instant::now() + Duration::from_secs(4);
        let mut closed = false;
        while !closed && std::time::Instant::now() < until {
            sender.send_to(&report, ("127.0.0.1", server_rtcp)).expect("send a receiver report");
            closed = rtsp.closed_within(Duration::from_millis(300));
        }
        let context = if from_its_rtcp_port { "reports from its RTCP port" } else { "reports from another port" };
        assert_eq!(closed, !from_its_rtcp_port, "{context}: closed {closed}\n{}", server.log());
    }
}
