//! Camera sources (`[sources]`, docs/sources.md) end to end: GStreamer's RTSP server is the IP
//! camera (`scripts/gst-rtsp-relay.py` as a camera), ringcast pulls it, and ffprobe plays the stream over RTMP,
//! HTTP-FLV and RTSP: the right codecs, picture size and frame counts. On demand, the pull
//! starts with the first player and stops after the last one left; a camera that wants Digest
//! credentials gets the URL's; a camera that is down answers players as a stream nobody
//! publishes, and is tried again while they wait. The URL's password never reaches the log or
//! the API. An on-demand camera is started by its first player whatever it plays over:
//! HTTP-FLV and RTMP as well as RTSP.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::http_receiver::HttpReceiver;
use common::rtsp_client::{assert_counted, count_frames, gst_camera};
use common::{TestServer, eventually, metric_total};

/// The camera's picture.
const SIZE: (u32, u32) = (320, 240);
const PASSWORD: &str = "s3cret-Pa55";

/// A port nobody listens on now (the camera binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).map(|addr| addr.port()).unwrap()
}

/// `GET path` on the admin API: the body.
fn api_get(server: &TestServer, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&server.api_addr(), Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP reply: {reply:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

/// `/api/sources`' entry for `stream`.
fn source(server: &TestServer, stream: &str) -> serde_json::Value {
    let sources: serde_json::Value = serde_json::from_str(&api_get(server, "/api/sources")).unwrap();
    sources["sources"].as_array().unwrap().iter().find(|s| s["stream"] == stream).cloned().unwrap()
}

fn wait_state(server: &TestServer, stream: &str, state: &str, timeout: Duration) -> serde_json::Value {
    eventually(timeout, || Some(source(server, stream)).filter(|s| s["state"] == state))
        .unwrap_or_else(|| panic!("{stream} never {state}: {}\n{}", source(server, stream), server.log()))
}

fn config(sources: &str) -> String {
    // stdio prints every event: what an internal source must not fire shows up there.
    format!("[stdio]\nformat = \"json\"\n\n{sources}")
}

#[test]
fn a_camera_plays_over_rtmp_http_flv_and_rtsp_without_hooks() {
    let port = free_port();
    let _camera = gst_camera(port, None);
    // Allows every call: on_media is asked of the hooked source only.
    let callbacks = HttpReceiver::start();
    let server = TestServer::start_with_config(
        &config(&format!(
            "[notify]\non_media = \"{}\"\n\n\
             [sources.\"live/cam1\"]\nurl = \"rtsp://127.0.0.1:{port}/stream1\"\non_demand = false\n\n\
             [sources.\"live/hooked\"]\nurl = \"rtsp://127.0.0.1:{port}/stream1\"\nhooks = true\n",
            callbacks.url("/on_media")
        )),
        &[],
    );
    let playing = wait_state(&server, "live/cam1", "playing", Duration::from_secs(20));
    assert_eq!(playing["url"], format!("rtsp://127.0.0.1:{port}/stream1"));
    let context = server.log();
    for (url, transport) in [
        (server.rtmp_url("live/cam1"), None),
        (format!("http://{}/live/cam1.flv", server.http_addr()), None),
        (server.rtsp_url("live/cam1"), Some("tcp")),
    ] {
        let counted =
            count_frames(&url, transport, 3, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{url}: {e}"));
        // 3 s of 30 fps video and 44.1 kHz AAC (43 frames a second), less a start-up margin.
        assert_counted(&counted, SIZE, 60, Some(80), &format!("{url}\n{context}"));
    }
    let metrics = server.metrics();
    assert!(metrics.contains("ringcast_source_up{stream=\"live/cam1\"} 1"), "{metrics}");
    assert!(metric_total(&metrics, "ringcast_source_bytes_in_total") > 100_000, "{metrics}");
    wait_state(&server, "live/hooked", "playing", Duration::from_secs(20));
    let log = server.log();
    // The players' events are there; the internal publisher fired none.
    assert!(log.contains("\"play_start\""), "stdio prints events: {log}");
    let camera_addr = format!("\"addr\":\"127.0.0.1:{port}\"");
    let accepted = |line: &&str| line.contains(&camera_addr) && line.contains("\"connection_accept\"");
    assert_eq!(log.lines().filter(accepted).count(), 1, "only the hooked source's: {log}");
    // `hooks = true`: the pull is a publisher hooks see, protocol rtsp, from the camera's address.
    let publish_start = log.lines().find(|line| line.contains("\"publish_start\"")).unwrap_or_else(|| panic!("{log}"));
    assert!(publish_start.contains(&camera_addr) && publish_start.contains("\"protocol\":\"rtsp\""), "{publish_start}");
    assert!(publish_start.contains("\"stream_key\":\"live/hooked\""), "{publish_start}");
    assert_eq!(log.matches("\"publish_start\"").count(), 1, "only the hooked source's: {log}");
    // The hooked camera was asked on_media with what its DESCRIBE declared; the internal one not.
    let asked = callbacks.requests();
    assert_eq!(asked.len(), 1, "{:?}", asked.iter().map(|r| String::from_utf8_lossy(&r.body)).collect::<Vec<_>>());
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&asked[0].body).into_owned().collect();
    assert_eq!(
        (form["call"].as_str(), form["name"].as_str(), form["video_codec"].as_str(), form["audio_codec"].as_str()),
        ("media", "hooked", "h264", "aac"),
        "{form:?}"
    );
    assert_eq!((form["width"].as_str(), form["height"].as_str()), ("320", "240"), "{form:?}");
}

#[test]
fn on_demand_with_digest_credentials_starts_with_players_and_stops_after_linger() {
    let port = free_port();
    let camera = gst_camera(port, Some(("cam", PASSWORD)));
    let server = TestServer::start_with_config(
        &config(&format!(
            "[sources.\"live/door\"]\nurl = \"rtsp://cam:{PASSWORD}@127.0.0.1:{port}/stream1\"\non_demand = true\nlinger = \"1s\"\n\n\
             [sources.\"live/wrong\"]\nurl = \"rtsp://cam:nope@127.0.0.1:{port}/stream1\"\n"
        )),
        &[],
    );
    // Nobody plays: nothing is pulled.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(source(&server, "live/door")["state"], "idle");
    // The first player starts the pull and gets the stream (RTSP waits for it at DESCRIBE).
    let counted = count_frames(&server.rtsp_url("live/door"), Some("tcp"), 3, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_counted(&counted, SIZE, 60, Some(80), &server.log());
    let counted = count_frames(&server.rtmp_url("live/door"), None, 2, Duration::from_secs(30)).unwrap();
    assert_counted(&counted, SIZE, 40, Some(50), &server.log());
    // The last player left: the pull stops after the linger.
    wait_state(&server, "live/door", "idle", Duration::from_secs(10));
    assert!(server.log().contains("source stopped: no players"));
    // Wrong credentials: refused by the camera, tried again.
    let wrong = eventually(Duration::from_secs(20), || {
        Some(source(&server, "live/wrong")).filter(|s| s["failures"].as_u64() >= Some(2))
    })
    .unwrap_or_else(|| panic!("{}", source(&server, "live/wrong")));
    assert!(wrong["last_error"].as_str().unwrap().contains("401"), "{wrong}");
    assert!(wrong["reconnects"].as_u64() >= Some(1), "{wrong}");
    // The password is nowhere to be read.
    let everything = format!("{}{}{}", server.log(), api_get(&server, "/api/sources"), server.metrics());
    assert!(!everything.contains(PASSWORD) && !everything.contains("nope@"), "{everything}");
    assert!(camera.output().lines().filter(|line| *line == "client").count() >= 3, "{}", camera.output());
}

#[test]
fn a_camera_that_is_down_answers_like_an_unpublished_stream_and_is_retried() {
    let port = free_port();
    let server = TestServer::start_with_config(
        &config(&format!(
            "[sources.\"live/down\"]\nurl = \"rtsp://127.0.0.1:{port}/stream1\"\non_demand = true\nstart_timeout = \"2s\"\nlinger = \"1s\"\n"
        )),
        &[],
    );
    // RTSP: 404 after the start timeout, as for a stream nobody publishes.
    let error = count_frames(&server.rtsp_url("live/down"), Some("tcp"), 1, Duration::from_secs(20)).unwrap_err();
    assert!(error.contains("404"), "{error}");
    let down = source(&server, "live/down");
    assert!(down["failures"].as_u64() >= Some(1), "{down}");
    assert!(down["last_error"].as_str().unwrap().contains("refused"), "{down}");
    // An RTMP player waits, as for any unpublished stream; the camera comes up meanwhile and
    // the retry finds it.
    let player = std::thread::spawn({
        let url = server.rtmp_url("live/down");
        move || count_frames(&url, None, 2, Duration::from_secs(40))
    });
    eventually(Duration::from_secs(10), || {
        Some(()).filter(|_| source(&server, "live/down")["reconnects"].as_u64() >= Some(2))
    })
    .unwrap_or_else(|| panic!("not retried: {}", source(&server, "live/down")));
    let _camera = gst_camera(port, None);
    let counted = player.join().unwrap().unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_counted(&counted, SIZE, 40, Some(50), &server.log());
    wait_state(&server, "live/down", "idle", Duration::from_secs(10));
}

#[test]
fn an_on_demand_camera_starts_for_an_http_flv_or_rtmp_player_first() {
    let port = free_port();
    let _camera = gst_camera(port, None);
    let server = TestServer::start_with_config(
        &config(&format!(
            "[sources.\"live/porch\"]\nurl = \"rtsp://127.0.0.1:{port}/stream1\"\non_demand = true\nlinger = \"1s\"\n"
        )),
        &[],
    );
    std::thread::sleep(Duration::from_secs(1));
    for url in [format!("http://{}/live/porch.flv", server.http_addr()), server.rtmp_url("live/porch")] {
        // Idle: this player is the one that starts the pull.
        wait_state(&server, "live/porch", "idle", Duration::from_secs(10));
        let counted = count_frames(&url, None, 2, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{url}: {e}\n{}", server.log()));
        assert_counted(&counted, SIZE, 40, Some(50), &format!("{url}\n{}", server.log()));
    }
    wait_state(&server, "live/porch", "idle", Duration::from_secs(10));
    let log = server.log();
    assert_eq!(log.matches("source stopped: no players").count(), 2, "{log}");
    // The players waited for the camera: none was told the stream was unavailable.
    assert!(log.contains("\"play_start\""), "stdio prints events: {log}");
    assert!(!log.contains("\"stream_unavailable\""), "{log}");
}
