//! HTTP-FLV and WebSocket-FLV end to end: ffmpeg publishes over RTMP, and real players read
//! `http://IP:PORT/live/x.flv` from the real `ringcast` binary: ffprobe (codec, size, frame
//! count), curl with `--no-buffer`, and the harness's own players that parse the stream tag by
//! tag over plain HTTP and WebSocket. Hooks are checked with real HTTP receivers; bad input
//! with raw sockets. Needs ffmpeg, ffprobe and curl (`bash .ci/run` installs them).

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::http_flv_client::{
    FlvPlayer, Tag, WS_ACCEPT, exchange, flv_url, header, read_until_closed, status_and_head,
};
use common::http_receiver::{HttpReceiver, Reply, Request};
use common::{Client, TestServer, assert_h264_aac, eventually, ffmpeg_publish, ffprobe_json};

const PUBLISH_START: Duration = Duration::from_secs(10);
const PROBE: Duration = Duration::from_secs(15);
/// How long a player waits for its response head and first tags: the server answers at once;
/// the rest is slack for a loaded 2-core machine.
const ANSWER: Duration = Duration::from_secs(10);
const SMALL: (u32, u32) = (320, 240);

const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
const TAG_SCRIPT: u8 = 18;

/// Starts a publisher on `key` and waits until the server accepted it (the `n`-th).
fn publish(server: &TestServer, key: &str, seconds: u32, n: usize) -> Client {
    let mut publisher = ffmpeg_publish(&server.rtmp_url(key), seconds, SMALL);
    if !server.wait_for_log_count("publish start", n, PUBLISH_START) {
        panic!("{}\n--- server log ---\n{}", publisher.report("no publish start"), server.log());
    }
    publisher
}

/// Asserts what every player must get first, and per-track monotonic timestamps: the file
/// header announcing both tracks, onMetaData, both sequence headers, and video that starts on
/// a keyframe.
fn assert_starts_like_a_flv_file(player: &FlvPlayer, context: &str) -> Vec<Tag> {
    let (header, tags, _) = player.tags();
    let header = header.unwrap_or_else(|| panic!("no FLV header\n{context}"));
    assert!(header.has_audio && header.has_video, "{header:?}\n{context}");
    assert!(tags.len() > 4, "only {} tags\n{context}", tags.len());
    assert_eq!(tags[0].tag_type, TAG_SCRIPT, "onMetaData first\n{context}");
    assert!(tags[0].body.windows(10).any(|w| w == b"onMetaData"), "{context}");
    let first_video = tags.iter().position(|t| t.tag_type == TAG_VIDEO).expect("video tags");
    let first_audio = tags.iter().position(|t| t.tag_type == TAG_AUDIO).expect("audio tags");
    // AVC sequence header: AVCPacketType 0; AAC sequence header: AACPacketType 0.
    assert_eq!(tags[first_video].body[..2], [0x17, 0], "video starts with its sequence header\n{context}");
    assert_eq!(tags[first_audio].body[..2], [0xAF, 0], "audio starts with its sequence header\n{context}");
    let frames: Vec<&Tag> = tags.iter().filter(|t| t.tag_type == TAG_VIDEO).skip(1).collect();
    assert_eq!(frames.first().map(|t| t.body[0] >> 4), Some(1), "the first frame is a keyframe\n{context}");
    for kind in [TAG_AUDIO, TAG_VIDEO] {
        let stamps: Vec<u32> = tags.iter().filter(|t| t.tag_type == kind).map(|t| t.timestamp).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "type {kind} timestamps go back: {stamps:?}\n{context}");
        assert!(stamps[0] < 1000, "timestamps start near 0 on the player's timeline: {stamps:?}");
    }
    tags
}

/// ffprobe (codec, size, frame count), curl `--no-buffer`, a HEAD, and the harness's player
/// parsing the stream tag by tag, all of one published stream.
#[test]
fn real_players_read_the_published_stream() {
    let server = TestServer::start();
    let mut publisher = publish(&server, "live/x", 40, 1);
    let url = flv_url(&server, "live/x");
    let context = || format!("--- server log ---\n{}", server.log());

    let json = ffprobe_json(&url, PROBE);
    assert_h264_aac(&json, SMALL, &context());
    // 3 seconds of the stream's time: 90 frames at 30 fps, starting at the cached keyframe.
    let counted = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v", "-read_intervals", "%+3"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "json", &url])
        .stdin(Stdio::null())
        .output()
        .expect("run ffprobe");
    let counted: Value = serde_json::from_slice(&counted.stdout).expect("ffprobe JSON");
    let frames: u64 = counted["streams"][0]["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((80..=100).contains(&frames), "ffprobe decoded {frames} frames in 3 s of a 30 fps stream");

    let mut player = FlvPlayer::get(server.http_addr(), "/live/x.flv", ANSWER);
    assert_eq!(player.status, 200, "{}\n{}", player.head, context());
    assert_eq!(header(&player.head, "Content-Type"), Some("video/x-flv"));
    assert_eq!(header(&player.head, "Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(header(&player.head, "Content-Length"), None, "a live body runs until the close");
    assert_eq!(header(&player.head, "Transfer-Encoding"), None, "not chunked");
    player.read_for(Duration::from_secs(2));
    let tags = assert_starts_like_a_flv_file(&player, &context());
    let video = tags.iter().filter(|t| t.tag_type == TAG_VIDEO).count();
    assert!(video >= 40, "{video} video tags in 2 s (30 fps, plus the cached GOP)");

    let curl = Command::new("curl")
        .args(["--silent", "--no-buffer", "--max-time", "2", &url])
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    // curl gives up at --max-time (exit 28): a live stream has no end.
    assert_eq!(curl.status.code(), Some(28), "{curl:?}");
    assert_eq!(&curl.stdout[..3], b"FLV");
    assert!(curl.stdout.len() > 20_000, "curl got {} bytes in 2 s", curl.stdout.len());

    let (head, closed) = exchange(server.http_addr(), b"HEAD /live/x.flv HTTP/1.1\r\nHost: x\r\n\r\n", ANSWER);
    let (status, text) = status_and_head(&head);
    assert_eq!((status, closed), (200, true), "{text}");
    assert_eq!(header(&text, "Content-Type"), Some("video/x-flv"));
    assert_eq!(head.len(), text.len(), "HEAD has no body");
    assert!(publisher.is_running(), "{}", publisher.report("publisher"));
}

/// The same URL as a WebSocket: a `101` with RFC 6455's accept value, then binary frames of
/// FLV; a ping is answered with its pong, a close with a close. The admin API lists an
/// HTTP-FLV player as `http-flv`, and an operator's kick ends it.
#[test]
fn websocket_players_get_flv_in_binary_frames() {
    let server = TestServer::start();
    let mut publisher = publish(&server, "live/ws", 40, 1);
    let addr = server.http_addr();
    let mut player = FlvPlayer::websocket(addr, "/live/ws.flv", ANSWER);
    assert_eq!(player.status, 101, "{}\n{}", player.head, server.log());
    assert_eq!(header(&player.head, "Sec-WebSocket-Accept"), Some(WS_ACCEPT));
    assert_eq!(header(&player.head, "Upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    player.read_for(Duration::from_secs(2));
    assert_starts_like_a_flv_file(&player, &server.log());

    player.send_frame(0x9, b"are you there");
    let ponged =
        player.read_until(ANSWER, |p| p.control_frames.iter().any(|(op, body)| *op == 0xA && body == b"are you there"));
    assert!(ponged, "no pong: {:?}", player.control_frames);
    let before = player.flv.len();
    player.read_for(Duration::from_millis(500));
    assert!(player.flv.len() > before, "the stream goes on after the ping");

    // A plain player, listed by the admin API as http-flv, then kicked.
    let mut plain = FlvPlayer::get(addr, "/live/ws.flv", ANSWER);
    assert_eq!(plain.status, 200);
    let clients = eventually(ANSWER, || {
        let clients = api_json(&server, "GET", "/api/clients")["clients"].as_array().cloned()?;
        let players: Vec<Value> =
            clients.into_iter().filter(|c| c["protocol"] == "http-flv" && c["role"] == "player").collect();
        (players.len() == 2).then_some(players)
    })
    .unwrap_or_else(|| panic!("two http-flv players not listed: {}", api_json(&server, "GET", "/api/clients")));
    assert!(clients.iter().all(|c| c["stream"] == "live/ws"), "{clients:?}");
    let newest = clients.iter().filter_map(|c| c["conn_id"].as_u64()).max().expect("conn ids");
    let kicked = api_json(&server, "DELETE", &format!("/api/clients/{newest}"));
    assert_eq!(kicked["kicked"], true, "{kicked}");
    plain.read_for(ANSWER);
    assert!(plain.closed, "the kicked player's connection stays open\n{}", server.log());

    player.send_frame(0x8, &1000u16.to_be_bytes());
    player.read_for(ANSWER);
    assert!(player.closed, "the server did not close after the client's close");
    assert!(player.control_frames.iter().any(|(op, _)| *op == 0x8), "no close frame back: {:?}", player.control_frames);
    assert!(publisher.is_running(), "{}", publisher.report("publisher"));
}

/// Callbacks see an HTTP-FLV player as they see an RTMP one, `protocol=http-flv`, its query
/// arguments passed through once; a refusal is a `403` and an `auth_failed` event; a stream
/// nobody publishes is a `404` only after `on_play` allowed it, so a client it denies learns
/// nothing of which streams exist.
#[test]
fn callbacks_admit_and_refuse_http_flv_players() {
    let on_connect = HttpReceiver::start();
    let on_play = HttpReceiver::start();
    on_play.reply(Reply::status(403)); // the first player
    on_play.reply(Reply::status(403)); // a player of a stream nobody publishes
    let sink = HttpReceiver::start();
    let flags = [
        ("--on-connect", on_connect.url("/connect")),
        ("--on-play", on_play.url("/play")),
        ("--hook-webhook", format!("*={}", sink.url("/events"))),
    ];
    let args: Vec<&str> = flags.iter().flat_map(|(flag, value)| [*flag, value.as_str()]).collect();
    let server = TestServer::start_with(&args);
    let _publisher = publish(&server, "live/cam", 40, 1);
    let addr = server.http_addr();

    let denied = FlvPlayer::get(addr, "/live/cam.flv?token=bad", ANSWER);
    assert_eq!(denied.status, 403, "{}\n{}", denied.head, server.log());
    let hidden = FlvPlayer::get(addr, "/live/nobody.flv?token=bad", ANSWER);
    assert_eq!(hidden.status, 403, "a denied client is not told the stream does not exist");
    let missing = FlvPlayer::get(addr, "/live/nobody.flv?token=good", ANSWER);
    assert_eq!(missing.status, 404, "{}", missing.head);
    assert_eq!(on_play.requests().len(), 3, "on_play was asked before the 404");

    let mut player = FlvPlayer::get(addr, "/live/cam.flv?token=good&room=7", ANSWER);
    assert_eq!(player.status, 200, "{}\n{}", player.head, server.log());
    player.read_for(Duration::from_millis(500));
    assert!(player.tags().1.len() > 3, "the admitted player gets the stream");

    let plays = on_play.wait_for(4, ANSWER);
    let form = form_of(&plays[3]);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    assert_eq!(field("call"), "play");
    assert_eq!(field("protocol"), "http-flv");
    assert_eq!((field("app"), field("name")), ("live", "cam"));
    assert_eq!(field("tcurl"), format!("http://{addr}/live"));
    assert_eq!(field("url"), format!("http://{addr}/live/cam?token=good&room=7"));
    assert_eq!(field("flashver"), "ringcast-test", "the User-Agent");
    assert_eq!(form.iter().filter(|(k, _)| k == "token").count(), 1, "the query is passed once: {form:?}");
    assert_eq!(field("room"), "7");
    let connects = on_connect.wait_for(4, ANSWER);
    let form = form_of(&connects[3]);
    assert!(form.iter().any(|(k, v)| k == "token" && v == "good"), "on_connect sees the query: {form:?}");
    assert!(form.iter().any(|(k, v)| k == "protocol" && v == "http-flv"), "{form:?}");

    let events = eventually(ANSWER, || {
        let events: Vec<Value> = sink.requests().iter().filter_map(|r| serde_json::from_slice(&r.body).ok()).collect();
        let has = |kind: &str| events.iter().any(|e| e["type"] == kind && e["protocol"] == "http-flv");
        let cam = events.iter().any(|e| e["type"] == "play_start" && e["stream_key"] == "live/cam");
        (has("auth_failed") && cam && has("play_stop") && has("connect")).then_some(events)
    })
    .unwrap_or_else(|| panic!("events missing: {:?}", sink.requests().len()));
    let failed: Vec<&Value> = events.iter().filter(|e| e["type"] == "auth_failed").collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0]["data"]["action"], "play");
    let start = events.iter().find(|e| e["type"] == "play_start" && e["stream_key"] == "live/cam").expect("play_start");
    assert_eq!(start["data"]["args"]["room"], "7", "{start}");
}

/// The form of a callback request as (name, value) pairs.
fn form_of(request: &Request) -> Vec<(String, String)> {
    common::hook_peers::parse_form(&request.body)
}

/// Bad input gets its status and closes only its own connection: other methods `405` (with
/// `Allow`), unknown paths `404`, an oversized head `431`, garbage `400`, a head that never
/// ends is closed at `handshake_timeout`; a CORS preflight gets `204`.
#[test]
fn bad_requests_get_their_status_and_touch_nothing_else() {
    let server = TestServer::start_with_config("handshake_timeout = \"3s\"\n", &[]);
    let addr = server.http_addr();
    // A player that stays connected through all of it (waiting in its head).
    let mut bystander = TcpStream::connect(addr).expect("connect");
    std::io::Write::write_all(&mut bystander, b"GET /live/x.flv HTTP/1.1\r\n").expect("send");

    let ask = |request: &[u8]| {
        let (response, closed) = exchange(addr, request, ANSWER);
        let (status, head) = status_and_head(&response);
        assert!(closed, "the connection stays open after {status}: {head}");
        (status, head)
    };
    let (status, head) = ask(b"POST /live/x.flv HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(status, 405, "{head}");
    assert_eq!(header(&head, "Allow"), Some("GET, HEAD, OPTIONS"));
    for path in ["/", "/favicon.ico", "/live/x.mp4", "/x.flv"] {
        let (status, head) = ask(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(status, 404, "{path}: {head}");
    }
    let (status, head) = ask(b"GET /live/nobody.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404, "a stream nobody publishes: {head}");
    let mut oversized = b"GET /live/x.flv HTTP/1.1\r\nCookie: ".to_vec();
    oversized.resize(20_000, b'a');
    assert_eq!(ask(&oversized).0, 431);
    let (status, head) = ask(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    assert_eq!(status, 400, "{head}");
    let (_, closed) = read_until_closed(&mut bystander, Duration::from_millis(10));
    assert!(!closed, "garbage on another connection closed the bystander");
    assert_eq!(ask(b"GET /live/%zz.flv HTTP/1.1\r\n\r\n").0, 400);
    let ws_v8 = b"GET /live/x.flv HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let (status, head) = ask(ws_v8);
    assert_eq!(status, 426, "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Version"), Some("13"));
    let (status, head) =
        ask(b"OPTIONS /live/x.flv HTTP/1.1\r\nOrigin: http://page.test\r\nAccess-Control-Request-Method: GET\r\n\r\n");
    assert_eq!(status, 204, "{head}");
    assert_eq!(header(&head, "Access-Control-Allow-Origin"), Some("*"));
    assert!(header(&head, "Access-Control-Allow-Methods").is_some_and(|m| m.contains("GET")), "{head}");

    // Slowloris: a byte a second, never the blank line.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).expect("connect");
    let mut closed = false;
    for byte in b"GET /live/x.flv HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaa".iter() {
        if std::io::Write::write_all(&mut slow, &[*byte]).is_err() {
            closed = true;
            break;
        }
        let (_, gone) = read_until_closed(&mut slow, Duration::from_millis(500));
        if gone {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a head trickled for {took:?} was never closed");
    assert!(took < Duration::from_secs(6), "closed after {took:?}, handshake_timeout is 3 s");

    let (_, closed) = read_until_closed(&mut bystander, Duration::from_millis(10));
    assert!(closed, "the bystander's incomplete head outlived handshake_timeout too");
    assert!(server.log_count("panicked") == 0, "the server panicked\n{}", server.log());
    let (status, _) = ask(b"GET /live/nobody.flv HTTP/1.0\r\n\r\n");
    assert_eq!(status, 404, "the server still serves");
}

/// The publisher leaving ends the response (the last tag's size closes the FLV; a WebSocket
/// gets a close frame), and a server shutdown ends a player too.
#[test]
fn the_response_ends_with_the_stream_and_at_shutdown() {
    let server = TestServer::start();
    let mut publisher = publish(&server, "live/short", 3, 1);
    let addr = server.http_addr();
    let mut plain = FlvPlayer::get(addr, "/live/short.flv", ANSWER);
    let mut ws = FlvPlayer::websocket(addr, "/live/short.flv", ANSWER);
    assert_eq!((plain.status, ws.status), (200, 101), "{}\n{}", plain.head, server.log());
    publisher.wait_timeout(Duration::from_secs(20));
    for player in [&mut plain, &mut ws] {
        player.read_for(Duration::from_secs(10));
        assert!(player.closed, "the response did not end with the stream\n{}", server.log());
        let (_, tags, left) = player.tags();
        assert!(tags.len() > 50, "{} tags", tags.len());
        assert_eq!(left, 0, "the FLV ends with the last tag's PreviousTagSize and nothing else");
        let last = tags.last().expect("tags");
        let trailer = u32::from_be_bytes(player.flv[player.flv.len() - 4..].try_into().unwrap());
        assert_eq!(trailer as usize, 11 + last.body.len());
    }
    let close = ws.control_frames.iter().find(|(op, _)| *op == 0x8).expect("a close frame");
    assert_eq!(close.1[..2], 1000u16.to_be_bytes());

    let _again = publish(&server, "live/short", 30, 2);
    let mut player = FlvPlayer::get(addr, "/live/short.flv", ANSWER);
    assert_eq!(player.status, 200);
    let stopper = thread::spawn(move || server.stop_and_log());
    player.read_for(Duration::from_secs(15));
    assert!(player.closed, "shutdown left the player connected");
    let (status, log) = stopper.join().expect("stop");
    assert!(status.success(), "{status:?}\n{log}");
}

/// One admin API request; the answer's JSON (the test servers have no token).
fn api_json(server: &TestServer, method: &str, path: &str) -> Value {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (response, _) = exchange(server.api_addr(), request.as_bytes(), ANSWER);
    let (_, head) = status_and_head(&response);
    serde_json::from_slice(&response[head.len()..]).unwrap_or(Value::Null)
}
