//! Relays end to end (docs/scaling-out.md), with real ffmpeg and ffprobe.
//!
//! - Edges: an origin and two edges, each in a network namespace of its own joined to the
//!   origin by a veth pair. ffmpeg publishes to the origin; ffprobe plays from both edges
//!   over RTMP, HTTP-FLV and RTSP; however many players an edge has, the origin sees one
//!   player from it (its pull); killing an edge loses only its own players; the pull of the
//!   other ends `linger` after its last player left.
//! - Edge hooks (loopback): the edge's sinks see its real players and the pull's
//!   `relay_start`, and no publish of the pull's own; a stream no origin has is answered `404`
//!   over HTTP-FLV and RTSP, as a stream nobody publishes.
//! - Push (loopback): a server forwards what is published on it to a second one, again after
//!   that one restarts.
//! - An origin named by `on_play` (loopback): the edge's callback answers JSON `origin`
//!   naming origin B while `[relay] origins` lists only A, which lacks the stream; the play
//!   is served from B, tried first, and A is never asked. And the 3xx form: a `302` whose
//!   `Location` is `rtmp://origin/app/name`, on an edge with no `[relay]` at all, renames the
//!   play and pulls it from there.
//! - A burst (loopback): 200 RTMP players (`ringcast-load`) join a stream the edge does not
//!   pull yet, all at once; every one plays, from one pull.
//! - An rtmp:// source (loopback): `[sources]` names another server's stream; it is pulled
//!   when a player comes and dropped `linger` after the last one left.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::http_flv_client::{exchange, status_and_head};
use common::http_receiver::{HttpReceiver, Reply};
use common::netns::{Namespaces, api_json};
use common::{
    TestServer, assert_plays_h264_aac, eventually, ffmpeg_play, ffmpeg_publish, ffprobe_json, metric_total,
    require_ffmpeg, try_ffprobe_json, try_ffprobe_json_launched,
};

const WAIT: Duration = Duration::from_secs(20);
const SIZE: (u32, u32) = (320, 240);
/// The edges' `linger`.
const LINGER: Duration = Duration::from_secs(3);

/// The players an origin's API lists, by address.
fn players(launcher: &[&str], server: &TestServer) -> Vec<String> {
    let clients = api_json(launcher, server.api_addr(), "/api/clients");
    let list = clients["clients"].as_array().cloned().unwrap_or_default();
    list.iter().filter(|c| c["role"] == "player").filter_map(|c| c["addr"].as_str().map(str::to_owned)).collect()
}

fn from(addrs: &[String], host: &str) -> usize {
    addrs.iter().filter(|addr| addr.starts_with(&format!("{host}:"))).count()
}

#[test]
fn edges_pull_once_each_and_serve_every_protocol_until_they_go() {
    require_ffmpeg();
    let ns = Namespaces::new(3);
    ns.link(0, 1, "10.201.1");
    ns.link(0, 2, "10.201.2");
    let origin = TestServer::start_launched(&ns.launcher(0), "", &["--rtmp-listen", "0.0.0.0:1935"]);
    // The first origin refuses (nothing listens there): each edge fails over to the second.
    let edge_config = |subnet: &str| {
        format!(
            "[relay]\norigins = [\"rtmp://{subnet}.1:1936\", \"rtmp://{subnet}.1:1935\"]\nlinger = \"{}s\"\n",
            LINGER.as_secs()
        )
    };
    let mut edges =
        [1, 2].map(|i| Some(TestServer::start_launched(&ns.launcher(i), &edge_config(&format!("10.201.{i}")), &[])));
    let mut publisher = ns.publish(0, "rtmp://127.0.0.1:1935/live/cam", 120);
    assert!(origin.wait_for_log("publish start", WAIT), "{}", publisher.report("no publish"));

    for (i, edge) in edges.iter().enumerate() {
        let edge = edge.as_ref().expect("running");
        let launcher = ns.launcher(i + 1);
        for url in
            [edge.rtmp_url("live/cam"), format!("http://{}/live/cam.flv", edge.http_addr()), edge.rtsp_url("live/cam")]
        {
            let probed = try_ffprobe_json_launched(&launcher, &url, WAIT)
                .unwrap_or_else(|e| panic!("edge {} {url}: {e}\n--- edge log ---\n{}", i + 1, edge.log()));
            assert_plays_h264_aac(&probed, SIZE, &url);
        }
    }

    // Three viewers per edge, RTMP and HTTP-FLV: the origin sees one player per edge.
    let mut viewers: Vec<Vec<common::Client>> = edges
        .iter()
        .enumerate()
        .map(|(i, edge)| {
            let edge = edge.as_ref().expect("running");
            let flv = format!("http://{}/live/cam.flv", edge.http_addr());
            [edge.rtmp_url("live/cam"), edge.rtmp_url("live/cam"), flv].iter().map(|url| ns.play(i + 1, url)).collect()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    for (i, players) in viewers.iter_mut().enumerate() {
        for player in players.iter_mut() {
            assert!(player.is_running(), "{}", player.report(&format!("edge {} viewer stopped", i + 1)));
        }
    }
    let launcher = ns.launcher(0);
    let seen = players(&launcher, &origin);
    assert_eq!((seen.len(), from(&seen, "10.201.1.2"), from(&seen, "10.201.2.2")), (2, 1, 1), "{seen:?}");
    for (i, edge) in edges.iter().enumerate() {
        let edge = edge.as_ref().expect("running");
        let relays = api_json(&ns.launcher(i + 1), edge.api_addr(), "/api/relays");
        let relays = relays["relays"].as_array().cloned().unwrap_or_default();
        assert_eq!(relays.len(), 1, "edge {}: {relays:?}", i + 1);
        assert_eq!((relays[0]["direction"].as_str(), relays[0]["streaming"].as_bool()), (Some("pull"), Some(true)));
    }

    // Edge 1 goes: its viewers end, edge 2's keep playing through their own pull.
    let log = edges[0].take().expect("running").kill();
    for player in viewers[0].iter_mut() {
        assert!(player.wait_timeout(WAIT).is_some(), "{}", player.report("a viewer of the killed edge still runs"));
    }
    let left = eventually(WAIT, || {
        let seen = players(&launcher, &origin);
        (from(&seen, "10.201.1.2") == 0).then_some(seen)
    });
    let left = left.unwrap_or_else(|| panic!("the origin still serves the killed edge\n--- edge 1 ---\n{log}"));
    assert_eq!(from(&left, "10.201.2.2"), 1, "{left:?}");
    std::thread::sleep(Duration::from_secs(2));
    for player in viewers[1].iter_mut() {
        assert!(player.is_running(), "{}", player.report("edge 2 lost a viewer when edge 1 went"));
    }

    // Edge 2's viewers leave: its pull stays `linger`, then goes.
    let edge = edges[1].as_ref().expect("running");
    for player in viewers[1].iter_mut() {
        player.kill();
    }
    let gone = std::time::Instant::now();
    std::thread::sleep(LINGER / 2);
    assert_eq!(from(&players(&launcher, &origin), "10.201.2.2"), 1, "the pull left before its linger");
    let ended = eventually(WAIT, || (players(&launcher, &origin).is_empty()).then_some(gone.elapsed()));
    let ended = ended.unwrap_or_else(|| panic!("the pull stayed\n--- edge 2 ---\n{}", edge.log()));
    assert!(ended >= LINGER, "ended {ended:?} after its last player");
    assert!(edge.wait_for_line_with(&["relay stop", "reason=no players"], WAIT), "{}", edge.log());
    assert!(publisher.is_running(), "{}", publisher.report("the publisher stopped"));
}

fn events(receiver: &HttpReceiver) -> Vec<Value> {
    receiver.requests().iter().filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()).collect()
}

fn of_type(receiver: &HttpReceiver, event_type: &str) -> Vec<Value> {
    events(receiver).into_iter().filter(|e| e["type"] == event_type).collect()
}

/// A server on loopback that ffmpeg publishes `live/cam` to for `seconds`, once it is
/// published; the publisher goes with the returned client.
fn publishing_origin(seconds: u32) -> (TestServer, common::Client) {
    let origin = TestServer::start();
    let publisher = ffmpeg_publish(&origin.rtmp_url("live/cam"), seconds, SIZE);
    assert!(origin.wait_for_log("publish start", WAIT), "{}", origin.log());
    (origin, publisher)
}

/// An edge on loopback with `hooks` (TOML tables) whose `[relay] origins` is `origin` alone.
fn loopback_edge(hooks: &str, origin: &TestServer, linger: &str) -> TestServer {
    let relay = format!("[relay]\norigins = [\"rtmp://{}\"]\nlinger = \"{linger}\"\n", origin.rtmp_addr());
    TestServer::start_with_config(&format!("{hooks}{relay}"), &[])
}

/// ffprobe plays `live/cam` from `edge` over HTTP-FLV.
fn assert_edge_plays_cam(edge: &TestServer) {
    let url = format!("http://{}/live/cam.flv", edge.http_addr());
    let probed = try_ffprobe_json(&url, WAIT).unwrap_or_else(|e| panic!("{e}\n--- edge ---\n{}", edge.log()));
    assert_plays_h264_aac(&probed, SIZE, &url);
}

#[test]
fn an_edges_hooks_see_its_viewers_and_the_pull_as_a_relay_only() {
    require_ffmpeg();
    let (origin, _publisher) = publishing_origin(60);
    let receiver = HttpReceiver::start();
    let callbacks = HttpReceiver::start();
    let hooks = format!(
        "[notify]\non_publish = \"{}\"\non_play = \"{}\"\n[[webhook]]\nurl = \"{}\"\n",
        callbacks.url("/on_publish"),
        callbacks.url("/on_play"),
        receiver.url("/events"),
    );
    let edge = loopback_edge(&hooks, &origin, "1s");
    assert_edge_plays_cam(&edge);
    assert!(edge.wait_for_line_with(&["relay stop", "reason=no players"], WAIT), "{}", edge.log());
    let started = eventually(WAIT, || of_type(&receiver, "relay_stop").pop());
    let stop = started.unwrap_or_else(|| panic!("no relay_stop: {:?}", events(&receiver)));
    let start = of_type(&receiver, "relay_start");
    assert_eq!(start.len(), 1, "{start:?}");
    assert_eq!(
        (start[0]["data"]["direction"].as_str(), start[0]["stream_key"].as_str()),
        (Some("pull"), Some("live/cam"))
    );
    assert_eq!(start[0]["data"]["url"], format!("rtmp://{}/live/cam", origin.rtmp_addr()));
    assert_eq!(stop["data"]["reason"], "no players");
    assert!(stop["data"]["bytes_in"].as_u64().unwrap_or(0) > 10_000, "{stop}");
    // The viewer is the edge's one client: one play, no publish, one on_play and no on_publish.
    assert_eq!(of_type(&receiver, "play_start").len(), 1, "{:?}", events(&receiver));
    assert!(of_type(&receiver, "publish_start").is_empty(), "{:?}", events(&receiver));
    assert!(of_type(&receiver, "connection_accept").iter().all(|e| e["conn_id"] != start[0]["conn_id"]));
    let paths: Vec<String> = callbacks.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/on_play"], "callbacks");

    // A stream no origin has: the pull's round fails, and the answer is a stream nobody
    // publishes'.
    let request = b"GET /live/nothing.flv HTTP/1.1\r\nHost: edge\r\n\r\n";
    let (answer, _) = exchange(edge.http_addr(), request, WAIT);
    assert_eq!(status_and_head(&answer).0, 404, "{}", edge.log());
    let rtsp = try_ffprobe_json(&edge.rtsp_url("live/nothing"), WAIT);
    assert!(rtsp.is_err_and(|e| e.contains("404")), "{}", edge.log());
}

#[test]
fn a_server_pushes_what_is_published_on_it_and_again_after_the_target_restarts() {
    require_ffmpeg();
    let target = TestServer::start();
    let target_addr = target.rtmp_addr();
    let receiver = HttpReceiver::start();
    let source = TestServer::start_with_config(
        &format!("[[webhook]]\nurl = \"{}\"\n[relay]\npush = [\"rtmp://{target_addr}\"]\n", receiver.url("/events")),
        &[],
    );
    let mut publisher = ffmpeg_publish(&source.rtmp_url("live/pushed"), 120, SIZE);
    assert!(target.wait_for_log("publish start", WAIT), "{}\n{}", source.log(), publisher.report("no push"));
    assert_plays_h264_aac(&ffprobe_json(&target.rtmp_url("live/pushed"), WAIT), SIZE, "the first target");
    let _viewer = ffmpeg_play(&target.rtmp_url("live/pushed"));

    let log = target.kill();
    assert!(source.wait_for_line_with(&["relay stop", "direction=\"push\""], WAIT), "{}\n{log}", source.log());
    let target = TestServer::start_with(&["--rtmp-listen", &target_addr.to_string()]);
    assert!(target.wait_for_log("publish start", WAIT), "no push after the restart\n{}", source.log());
    assert_plays_h264_aac(&ffprobe_json(&target.rtmp_url("live/pushed"), WAIT), SIZE, "the restarted target");
    assert!(publisher.is_running(), "{}", publisher.report("the publisher stopped"));

    let starts = eventually(WAIT, || Some(of_type(&receiver, "relay_start")).filter(|s| s.len() >= 2));
    let starts = starts.unwrap_or_else(|| panic!("{:?}", events(&receiver)));
    assert!(starts.iter().all(|e| e["data"]["direction"] == "push" && e["stream_key"] == "live/pushed"), "{starts:?}");
    // The pushes are no viewers of the source: its hooks saw one publisher and nobody playing.
    assert_eq!(of_type(&receiver, "publish_start").len(), 1);
    assert!(of_type(&receiver, "play_start").is_empty(), "{:?}", events(&receiver));
    assert!(of_type(&receiver, "subscriber_count").is_empty(), "{:?}", events(&receiver));
    let metrics = source.metrics();
    assert!(metrics.contains("ringcast_relays{direction=\"push\"} 1"), "{metrics}");
}

#[test]
fn a_stream_with_an_rtmp_source_pulls_it_only_while_it_has_players() {
    require_ffmpeg();
    let (encoder, _publisher) = publishing_origin(60);
    let server = TestServer::start_with_config(
        &format!(
            "[relay]\nlinger = \"1s\"\n[sources.\"live/lobby\"]\nurl = \"rtmp://{}/live/cam\"\non_demand = true\n",
            encoder.rtmp_addr()
        ),
        &[],
    );
    // Nobody watches yet: nothing is pulled.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!server.log().contains("relay start"), "{}", server.log());
    let url = server.rtmp_url("live/lobby");
    let probed = try_ffprobe_json(&url, WAIT).unwrap_or_else(|e| panic!("{e}\n--- server ---\n{}", server.log()));
    assert_plays_h264_aac(&probed, SIZE, &url);
    assert!(
        server.wait_for_line_with(&["relay start", "direction=\"pull\"", "live/cam"], WAIT),
        "the pull names its source\n{}",
        server.log()
    );
    assert!(server.wait_for_line_with(&["relay stop", "reason=no players"], WAIT), "{}", server.log());
}

#[test]
fn an_origin_named_by_on_play_is_pulled_from_first() {
    require_ffmpeg();
    let origin_a = TestServer::start();
    let origin_b = TestServer::start();
    let _publisher = ffmpeg_publish(&origin_b.rtmp_url("live/cam"), 60, SIZE);
    assert!(origin_b.wait_for_log("publish start", WAIT), "{}", origin_b.log());
    let callbacks = HttpReceiver::start();
    let body = format!(r#"{{"origin": "rtmp://{}"}}"#, origin_b.rtmp_addr());
    callbacks.set_default(Reply::status(200).header("Content-Type", "application/json").body(&body));
    let edge = loopback_edge(&format!("[notify]\non_play = \"{}\"\n", callbacks.url("/on_play")), &origin_a, "5s");
    assert_edge_plays_cam(&edge);
    // Origin B lists the edge's pull as its one player, while it lingers.
    let pulled = eventually(WAIT, || Some(players(&[], &origin_b)).filter(|p| from(p, "127.0.0.1") == 1));
    assert!(pulled.is_some(), "origin B has no player\n{}", edge.log());
    let pull_url = format!("rtmp://{}/live/cam", origin_b.rtmp_addr());
    assert!(edge.log_lines_with(&["relay start", &pull_url]).len() == 1, "{}", edge.log());
    // The named origin was tried first: origin A, the configured one, was never asked.
    assert!(!origin_a.log().contains("play start"), "{}", origin_a.log());
    assert_eq!(callbacks.requests().len(), 1, "one on_play");
}

#[test]
fn an_origin_named_by_an_on_play_redirect_is_pulled_from_without_any_origins() {
    require_ffmpeg();
    let (origin, _publisher) = publishing_origin(60);
    let callbacks = HttpReceiver::start();
    let location = format!("rtmp://{}/live/cam", origin.rtmp_addr());
    callbacks.set_default(Reply::status(302).header("Location", &location));
    // No [relay] at all: the redirect alone says where the stream comes from.
    let edge = TestServer::start_with_config(&format!("[notify]\non_play = \"{}\"\n", callbacks.url("/on_play")), &[]);
    let url = edge.rtmp_url("live/alias");
    let probed = try_ffprobe_json(&url, WAIT).unwrap_or_else(|e| panic!("{e}\n--- edge ---\n{}", edge.log()));
    assert_plays_h264_aac(&probed, SIZE, &url);
    // The play was renamed to the Location's stream, and that is pulled from the server it names.
    let asked = callbacks.requests();
    assert_eq!(asked.len(), 1, "one on_play");
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&asked[0].body).into_owned().collect();
    assert_eq!(form["name"], "alias", "{form:?}");
    let started = edge.log_lines_with(&["relay start", &location]);
    assert_eq!(started.len(), 1, "{}", edge.log());
    assert!(started[0].contains("stream=live/cam"), "{}", started[0]);
    let pulled = eventually(WAIT, || Some(players(&[], &origin)).filter(|p| from(p, "127.0.0.1") == 1));
    assert!(pulled.is_some(), "the origin has no player\n{}", edge.log());
}

/// `ringcast-load`, built beside the server binary (both are default members of the workspace).
fn load_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ringcast")).with_file_name("ringcast-load");
    assert!(bin.exists(), "{} missing: build the workspace (cargo test at the root builds it)", bin.display());
    bin
}

#[test]
fn a_burst_of_players_onto_a_stream_not_pulled_yet_all_play_from_one_pull() {
    const PLAYERS: u64 = 200;
    require_ffmpeg();
    let (origin, _publisher) = publishing_origin(90);
    let edge = loopback_edge("", &origin, "10s");
    // All at once (no ramp), each checking every frame it gets.
    let output = Command::new(load_bin())
        .args(["play", "--json", "-n", &PLAYERS.to_string(), "--ramp", "0", "--duration", "8s", "--timeout", "20s"])
        .args(["--url", &edge.rtmp_url("live/cam")])
        .output()
        .expect("run ringcast-load");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("ringcast-load: {e}\n{}\n{}", String::from_utf8_lossy(&output.stderr), edge.log()));
    let play = &report["play"];
    let counts = ["playing", "failed", "without_media", "disconnected"].map(|key| play[key].as_u64());
    assert_eq!(counts, [Some(PLAYERS), Some(0), Some(0), Some(0)], "{}\n{}", play["failures"], edge.log());
    assert_eq!(play["first_keyframe"]["count"].as_u64(), Some(PLAYERS), "{}", play["first_keyframe"]);
    // One pull served them all: one start on the edge, one player at the origin.
    assert_eq!(metric_total(&edge.metrics(), "ringcast_relay_starts_total"), 1, "{}", edge.log());
    assert_eq!(edge.log_lines_with(&["relay start"]).len(), 1, "{}", edge.log());
    assert_eq!(from(&players(&[], &origin), "127.0.0.1"), 1, "{}", origin.log());
}
