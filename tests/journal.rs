//! The session journal across a crash: an ffmpeg publisher (RTMP) and an ffmpeg player
//! (HTTP-FLV) are live, the server is SIGKILLed, and the next start sends their stops
//! (`publish_stop`, `play_stop`, `connection_close` with reason `server restarted`) and done
//! callbacks, under the original sessions' identity, before it accepts a client.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::hook_peers::parse_form;
use common::http_receiver::{HttpReceiver, Request};
use common::{TestServer, eventually, ffmpeg_play, ffmpeg_publish, require_ffmpeg};

const WAIT: Duration = Duration::from_secs(20);

fn events(receiver: &HttpReceiver) -> Vec<(usize, Value)> {
    receiver
        .requests()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.path == "/events")
        .filter_map(|(index, r)| serde_json::from_slice(&r.body).ok().map(|event| (index, event)))
        .collect()
}

fn find<'a>(events: &'a [(usize, Value)], event_type: &str, conn_id: u64) -> Option<&'a (usize, Value)> {
    events.iter().find(|(_, e)| e["type"] == event_type && e["conn_id"] == conn_id)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn config(receiver: &HttpReceiver, state_dir: &std::path::Path) -> String {
    format!(
        "state_dir = \"{}\"\n[notify]\non_publish_done = \"{}\"\non_play_done = \"{}\"\non_done = \"{}\"\n\
         [[webhook]]\nurl = \"{}\"\nevents = [\"*\"]\n",
        state_dir.display(),
        receiver.url("/publish_done"),
        receiver.url("/play_done"),
        receiver.url("/done"),
        receiver.url("/events"),
    )
}

fn form(request: &Request) -> Vec<(String, String)> {
    parse_form(&request.body)
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn a_restart_after_sigkill_ends_the_open_sessions_before_accepting_a_client() {
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    let state_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("journal-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let toml = config(&receiver, &state_dir);

    let mut server = TestServer::start_with_config(&toml, &[]);
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam?token=abc"), 120, (320, 240));
    let publishing =
        eventually(WAIT, || events(&receiver).iter().any(|(_, e)| e["type"] == "publish_start").then_some(()));
    assert!(publishing.is_some(), "no publish_start\n{}", publisher.report("publisher"));
    let mut player = ffmpeg_play(&format!("http://{}/live/cam.flv?viewer=7", server.http_addr()));
    let started = eventually(WAIT, || {
        let events = events(&receiver);
        let publish = events.iter().find(|(_, e)| e["type"] == "publish_start")?.1.clone();
        let play = events.iter().find(|(_, e)| e["type"] == "play_start")?.1.clone();
        Some((publish, play))
    });
    let (publish_start, play_start) = started.unwrap_or_else(|| panic!("no play_start\n{}", player.report("player")));
    let publisher_id = publish_start["conn_id"].as_u64().unwrap();
    let player_id = play_start["conn_id"].as_u64().unwrap();
    assert_eq!(play_start["protocol"], "http-flv");

    // The crash. Nothing the server does after this reaches the receiver.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    assert!(eventually(WAIT, || (!server.is_running()).then_some(())).is_some());
    publisher.kill();
    player.kill();
    let before_restart = receiver.requests().len();
    // The old server's events may arrive again after the restart (its outbox resends what it
    // had not recorded as delivered: at least once), so the new server's accept is the first
    // one stamped after the crash, not the first to arrive.
    let crashed_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;

    // A client knocking from the moment the new server binds its port: the stops must reach
    // the receiver before this client is accepted (its connection_accept).
    let rtmp = free_port();
    let knocking = Arc::new(AtomicBool::new(true));
    let knocker = {
        let knocking = knocking.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            while knocking.load(Ordering::Relaxed) {
                if let Ok(stream) = TcpStream::connect_timeout(&rtmp, Duration::from_millis(100)) {
                    held.push(stream);
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let restarted = TestServer::start_with_config(&toml, &["--rtmp-listen", &rtmp.to_string()]);

    let everything = eventually(WAIT, || {
        let events: Vec<(usize, Value)> = events(&receiver).into_iter().filter(|(i, _)| *i >= before_restart).collect();
        let publish_stop = find(&events, "publish_stop", publisher_id)?.clone();
        let play_stop = find(&events, "play_stop", player_id)?.clone();
        let publisher_close = find(&events, "connection_close", publisher_id)?.clone();
        let player_close = find(&events, "connection_close", player_id)?.clone();
        let accepted = events
            .iter()
            .find(|(_, e)| {
                e["type"] == "connection_accept" && e["timestamp_ms"].as_u64().is_some_and(|t| t >= crashed_at_ms)
            })?
            .clone();
        Some((publish_stop, play_stop, publisher_close, player_close, accepted))
    });
    knocking.store(false, Ordering::Relaxed);
    knocker.join().unwrap();
    let (publish_stop, play_stop, publisher_close, player_close, accepted) = everything
        .unwrap_or_else(|| panic!("stops missing\n{:#?}\n--- log ---\n{}", events(&receiver), restarted.log()));

    // The original sessions' identity.
    assert_eq!(publish_stop.1["stream_key"], "live/cam");
    assert_eq!(publish_stop.1["protocol"], "rtmp");
    assert_eq!(publish_stop.1["addr"], publish_start["addr"]);
    assert_eq!(play_stop.1["stream_key"], "live/cam");
    assert_eq!(play_stop.1["protocol"], "http-flv");
    assert_eq!(play_stop.1["addr"], play_start["addr"]);
    for close in [&publisher_close, &player_close] {
        assert_eq!(close.1["data"]["reason"], "server restarted", "{close:?}");
    }
    assert_eq!(publisher_close.1["data"]["role"], "publisher");
    assert_eq!(player_close.1["data"]["role"], "player");
    // A duration up to when the crashed server was last alive, not up to the restart.
    assert!(publish_stop.1["data"]["duration_sec"].as_f64().unwrap() >= 0.0);

    // Before the new server accepted anyone.
    for (name, (index, _)) in [
        ("publish_stop", &publish_stop),
        ("play_stop", &play_stop),
        ("close", &publisher_close),
        ("close", &player_close),
    ] {
        assert!(index < &accepted.0, "{name} arrived after the new server's first connection_accept");
    }

    // The done callbacks, with what the clients sent, also before the first accept.
    let requests = receiver.requests();
    let done_of = |path: &str, id: u64| {
        requests
            .iter()
            .enumerate()
            .skip(before_restart)
            .find(|(_, r)| r.path == path && field(&form(r), "clientid") == Some(id.to_string().as_str()))
    };
    let (index, publish_done) = done_of("/publish_done", publisher_id).expect("on_publish_done");
    assert!(index < accepted.0);
    let fields = form(publish_done);
    assert_eq!(field(&fields, "call"), Some("publish_done"));
    assert_eq!(field(&fields, "name"), Some("cam"));
    assert_eq!(field(&fields, "token"), Some("abc"));
    let (index, play_done) = done_of("/play_done", player_id).expect("on_play_done");
    assert!(index < accepted.0);
    let fields = form(play_done);
    assert_eq!(field(&fields, "protocol"), Some("http-flv"));
    assert_eq!(field(&fields, "viewer"), Some("7"));
    assert!(done_of("/done", publisher_id).is_some() && done_of("/done", player_id).is_some());
    assert!(restarted.wait_for_log("ended the sessions a crash left open", WAIT));

    // A clean stop leaves nothing for the next start.
    let status = restarted.stop();
    assert!(status.success(), "{status}");
    let journal = std::fs::read(state_dir.join("sessions.journal")).unwrap();
    assert!(journal.is_empty(), "{}", String::from_utf8_lossy(&journal));
    let _ = std::fs::remove_dir_all(&state_dir);
}
