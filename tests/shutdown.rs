//! Graceful shutdown under load: 500 players (ringcast-load) and a webhook and a done callback
//! that hang. SIGTERM ends every session with its events, gives the hooks what is left of
//! `shutdown_timeout`, and the server exits 0 within it (plus a margin), having emitted every
//! player's play_stop (counted by a healthy receiver beside the hanging one). What the hanging
//! webhook never took stays in its outbox: the next start delivers it.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::hook_peers::BlackHole;
use common::http_receiver::HttpReceiver;
use common::{TempDir, TestServer, eventually, metric_total};

const PLAYERS: usize = 500;
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);
/// Process exit and scheduling on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(3);

/// `ringcast-load`, built beside the server binary (both are default members of the workspace).
fn load_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ringcast")).with_file_name("ringcast-load");
    assert!(bin.exists(), "{} missing: build the workspace (cargo test at the root builds it)", bin.display());
    bin
}

fn play_stops(receiver: &HttpReceiver) -> HashSet<u64> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|e| e["type"] == "play_stop")
        .filter_map(|e| e["conn_id"].as_u64())
        .collect()
}

#[test]
fn sigterm_with_500_players_and_hanging_hooks_exits_0_in_time_with_every_play_stop_kept() {
    let hanging = BlackHole::start();
    let receiver = HttpReceiver::start();
    let state_dir = TempDir::new("shutdown-state");
    let state_flag = ["--state-dir", state_dir.path().to_str().expect("a UTF-8 temp path")];
    let toml = format!(
        "shutdown_timeout = \"{}s\"\nhook_concurrency = 20\n\
         [notify]\non_play_done = \"{}\"\ntimeout = \"30s\"\n\
         [[webhook]]\nid = \"all-events\"\nurl = \"{}\"\nevents = [\"*\"]\n\
         [[webhook]]\nurl = \"{}\"\nevents = [\"play_stop\"]\n",
        SHUTDOWN_TIMEOUT.as_secs(),
        hanging.url("/play_done"),
        hanging.url("/events"),
        receiver.url("/events"),
    );
    let server = TestServer::start_with_config(&toml, &state_flag);
    let mut load = Command::new(load_bin())
        .args(["play", "--publish", "--players", &PLAYERS.to_string(), "--ramp", "0", "--duration", "120s"])
        .args(["--url", &server.rtmp_url("live/load"), "--timeout", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringcast-load");
    let joined = eventually(Duration::from_secs(60), || {
        (metric_total(&server.metrics(), "ringcast_players") as usize == PLAYERS).then_some(())
    });
    if joined.is_none() {
        let _ = load.kill();
        panic!("{PLAYERS} players did not join: {}", server.metrics());
    }

    let asked = Instant::now();
    let (status, log) = server.stop_and_log();
    let took = asked.elapsed();
    let _ = load.kill();
    let _ = load.wait();
    assert!(status.success(), "{status}\n{log}");
    assert!(took <= SHUTDOWN_TIMEOUT + MARGIN, "shutdown took {took:?}\n{log}");
    // The hanging receivers were abandoned at the deadline, and said so.
    assert!(log.contains("shutdown deadline reached: left undone"), "{log}");

    let stops = eventually(Duration::from_secs(2), || {
        let stops = play_stops(&receiver);
        (stops.len() >= PLAYERS).then_some(stops)
    });
    let stops = stops.expect("every player's play_stop reached the healthy receiver");
    assert_eq!(stops.len(), PLAYERS);
    assert!(hanging.accepted() > 0, "the hanging peers were asked");

    // Nothing lost: the hanging webhook's events wait in its outbox, and the next start (its
    // receiver now answering) delivers them, every player's play_stop among them.
    let recovered = HttpReceiver::start();
    let toml = format!("[[webhook]]\nid = \"all-events\"\nurl = \"{}\"\nevents = [\"*\"]\n", recovered.url("/events"));
    let next = TestServer::start_with_config(&toml, &state_flag);
    let delivered = eventually(Duration::from_secs(30), || {
        let got = play_stops(&recovered);
        stops.is_subset(&got).then_some(got)
    });
    assert!(
        delivered.is_some(),
        "the outbox kept every play_stop the hanging webhook never took: {} of {}\n{}",
        play_stops(&recovered).intersection(&stops).count(),
        PLAYERS,
        next.log()
    );
}
