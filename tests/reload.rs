//! SIGHUP with real receivers: the webhook URL, the callbacks and a limit change in the file,
//! new events and callbacks go to the new receiver and the new limit applies, and the
//! publisher is never dropped; then a broken file is refused with one line and the
//! configuration in effect stays.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use common::http_flv_client::{FlvPlayer, read_until_closed, status_and_head};
use common::http_receiver::HttpReceiver;
use common::{TempFile, TestServer, assert_plays_h264_aac, eventually, ffmpeg_publish, ffprobe_json, require_ffmpeg};

const WAIT: Duration = Duration::from_secs(20);

fn config(receiver: &HttpReceiver, max_players: usize) -> String {
    format!(
        "max_players_per_stream = {max_players}\n[notify]\non_play = \"{}\"\n[[webhook]]\nurl = \"{}\"\nevents = [\"*\"]\n",
        receiver.url("/play"),
        receiver.url("/events"),
    )
}

fn event_types(receiver: &HttpReceiver) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == "/events")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn count(receiver: &HttpReceiver, path: &str) -> usize {
    receiver.requests().iter().filter(|r| r.path == path).count()
}

fn sighup(server: &TestServer) {
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
}

fn http_status(server: &TestServer, path: &str) -> u16 {
    let mut stream = TcpStream::connect(server.http_addr()).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let (reply, _) = read_until_closed(&mut stream, WAIT);
    status_and_head(&reply).0
}

#[test]
fn sighup_moves_hooks_and_limits_without_dropping_a_session_and_refuses_a_broken_file() {
    require_ffmpeg();
    let (old, new) = (HttpReceiver::start(), HttpReceiver::start());
    let file = TempFile::with_contents("reload", "toml", &config(&old, 0));
    let path = file.path().display().to_string();
    let server = TestServer::start_with(&["--config", &path]);

    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 40, (320, 240));
    let published = eventually(WAIT, || event_types(&old).iter().any(|t| t == "publish_start").then_some(()));
    assert!(published.is_some(), "{}", publisher.report("publisher"));
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url("live/cam"), WAIT), (320, 240), "before the reload");
    assert!(count(&old, "/play") >= 1);

    // The new receiver, and at most one player per stream.
    std::fs::write(file.path(), config(&new, 1)).unwrap();
    sighup(&server);
    assert!(server.wait_for_log("reloaded the configuration", WAIT), "{}", server.log());
    let old_requests = old.requests().len();

    let first = FlvPlayer::get(server.http_addr(), "/live/cam.flv", WAIT);
    assert_eq!(first.status, 200, "{}", first.head);
    assert_eq!(http_status(&server, "/live/cam.flv"), 503, "the new max_players_per_stream applies");
    let moved = eventually(WAIT, || {
        (event_types(&new).iter().any(|t| t == "play_start") && count(&new, "/play") >= 1).then_some(())
    });
    assert!(moved.is_some(), "events and callbacks reach the new receiver: {:?}", event_types(&new));
    assert_eq!(old.requests().len(), old_requests, "nothing more for the old receiver");
    drop(first);

    // A broken file: refused in one line, the configuration in effect stays.
    std::fs::write(file.path(), "max_players_per_stream = -1\n[[webhook]\n").unwrap();
    sighup(&server);
    assert!(server.wait_for_log("reload refused, configuration unchanged", WAIT), "{}", server.log());
    assert_eq!(server.log_count("reload refused"), 1);
    let plays_before = count(&new, "/play");
    let second = FlvPlayer::get(server.http_addr(), "/live/cam.flv", WAIT);
    assert_eq!(second.status, 200, "{}", second.head);
    assert_eq!(http_status(&server, "/live/cam.flv"), 503, "the limit in effect stays");
    assert!(eventually(WAIT, || (count(&new, "/play") > plays_before).then_some(())).is_some());
    assert_eq!(old.requests().len(), old_requests);

    // The publisher never dropped: still running, and no publish_stop anywhere.
    assert!(publisher.is_running(), "{}", publisher.report("publisher"));
    assert!(!event_types(&old).iter().chain(&event_types(&new)).any(|t| t == "publish_stop"));
    assert_eq!(server.log_count("publish stop"), 0);
    drop(second);
    assert!(server.stop().success());
}
