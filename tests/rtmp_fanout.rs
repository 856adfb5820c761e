//! Fan-out through the real server: many in-test players (ringcast's own client state
//! machine over plain sockets) check every packet they receive against what the publisher
//! sent.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::TestServer;
use common::rtmp_client::{RtmpClient, media};
use ringcast::protocol::rtmp::client::ClientEvent;

/// What a player saw: message type and the frame's sequence number (`u32::MAX` for a
/// sequence header, which carries none).
type Seen = Vec<(u8, u32)>;

fn describe(event: &ClientEvent) -> Option<(u8, u32)> {
    match event {
        ClientEvent::Video { payload, .. } if payload.get(1) == Some(&0) => Some((9, u32::MAX)),
        ClientEvent::Audio { payload, .. } if payload.get(1) == Some(&0) => Some((8, u32::MAX)),
        ClientEvent::Video { payload, .. } => Some((9, media::seq_of(payload)?)),
        ClientEvent::Audio { payload, .. } => Some((8, media::seq_of(payload)?)),
        _ => None,
    }
}

#[test]
fn fifty_players_on_two_shards_receive_identical_streams_from_a_keyframe() {
    const PLAYERS: usize = 50;
    const FRAMES: u32 = 300;
    let server = TestServer::start_with(&["--shards", "2"]);
    let addr = server.rtmp_addr();

    let ready = Arc::new(Barrier::new(PLAYERS + 1));
    let (results_tx, results_rx) = mpsc::channel();
    for _ in 0..PLAYERS {
        let ready = ready.clone();
        let results_tx = results_tx.clone();
        thread::spawn(move || {
            let mut client = RtmpClient::player(addr, "fanout");
            ready.wait();
            let mut seen = Seen::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                match client.next_event(Duration::from_secs(5)) {
                    Ok(Some(event)) => {
                        if let Some(item) = describe(&event) {
                            seen.push(item);
                            if item == (8, FRAMES - 1) {
                                break;
                            }
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = results_tx.send(seen);
        });
    }
    ready.wait();

    let mut source = RtmpClient::publisher(addr, "fanout");
    let mut sent = Seen::new();
    source.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    sent.push((9, u32::MAX));
    source.send_media(8, 0, media::AAC_SEQUENCE_HEADER).unwrap();
    sent.push((8, u32::MAX));
    for seq in 0..FRAMES {
        let keyframe = seq % 30 == 0;
        let size = if keyframe { 20_000 } else { 3_000 };
        source.send_media(9, seq * 33, &media::video(seq, keyframe, size)).unwrap();
        source.send_media(8, seq * 33, &media::audio(seq)).unwrap();
        sent.push((9, seq));
        sent.push((8, seq));
        if seq % 10 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }

    let results: Vec<Seen> =
        (0..PLAYERS).map(|_| results_rx.recv_timeout(Duration::from_secs(90)).expect("player finished")).collect();
    for (index, seen) in results.iter().enumerate() {
        assert_eq!(seen.len(), sent.len(), "player {index} got {} of {} packets", seen.len(), sent.len());
        assert_eq!(seen, &sent, "player {index} saw a different stream");
    }
    // Both shards served players (SO_REUSEPORT spreads connections by hash).
    let log = server.log();
    for shard in 0..2 {
        assert!(log.contains(&format!("play start shard={shard}")), "no player on shard {shard}:\n{log}");
    }
}

#[test]
fn a_late_player_starts_with_headers_then_a_keyframe() {
    let server = TestServer::start_with(&["--shards", "2"]);
    let addr = server.rtmp_addr();
    let mut source = RtmpClient::publisher(addr, "late");
    source.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    source.send_media(8, 0, media::AAC_SEQUENCE_HEADER).unwrap();
    // Two GOPs of 30, then stop in the middle of the third.
    for seq in 0..75 {
        source.send_media(9, seq * 33, &media::video(seq, seq % 30 == 0, 2_000)).unwrap();
        source.send_media(8, seq * 33, &media::audio(seq)).unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    let mut late = RtmpClient::player(addr, "late");
    let mut seen = Seen::new();
    while let Ok(Some(event)) = late.next_event(Duration::from_secs(2)) {
        if let Some(item) = describe(&event) {
            seen.push(item);
        }
        if seen.len() >= 3 {
            break;
        }
    }
    // The cached GOP: headers first, then the last keyframe (frame 60), not frame 74.
    assert_eq!(seen, vec![(9, u32::MAX), (8, u32::MAX), (9, 60)]);
}

#[test]
fn a_stalled_player_is_dropped_without_delaying_the_others() {
    let server = TestServer::start_with_config("player_queue = 64\nplayer_max_drops = 2\n", &["--shards", "1"]);
    let addr = server.rtmp_addr();

    const FRAMES: u32 = 400;
    let sent_at: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let ready = Arc::new(Barrier::new(5));
    let (lags_tx, lags_rx) = mpsc::channel();
    for _ in 0..4 {
        let ready = ready.clone();
        let sent_at = sent_at.clone();
        let lags_tx = lags_tx.clone();
        thread::spawn(move || {
            let mut client = RtmpClient::player(addr, "stall");
            ready.wait();
            let mut lags = Vec::new();
            while let Ok(Some(event)) = client.next_event(Duration::from_secs(5)) {
                if let ClientEvent::Video { payload, .. } = &event
                    && let Some(seq) = media::seq_of(payload)
                    && payload[1] == 1
                {
                    let arrived = Instant::now();
                    if let Some(sent) = sent_at.lock().unwrap().get(&seq) {
                        lags.push(arrived.duration_since(*sent));
                    }
                    if seq == FRAMES - 1 {
                        break;
                    }
                }
            }
            let _ = lags_tx.send(lags);
        });
    }
    // The stalled player: plays, then never reads again.
    let stalled = RtmpClient::player(addr, "stall");
    ready.wait();

    let mut source = RtmpClient::publisher(addr, "stall");
    source.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    let started = Instant::now();
    for seq in 0..FRAMES {
        let frame = media::video(seq, seq % 25 == 0, 60_000);
        sent_at.lock().unwrap().insert(seq, Instant::now());
        source.send_media(9, seq * 20, &frame).unwrap();
        // 50 frames a second of 60 kB: 3 MB/s, enough to fill the stalled player's socket
        // buffers within a few seconds.
        let due = started + Duration::from_millis(20 * (seq as u64 + 1));
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }

    let mut worst = Duration::ZERO;
    for index in 0..4 {
        let mut lags = lags_rx.recv_timeout(Duration::from_secs(60)).expect("player finished");
        assert!(lags.len() >= FRAMES as usize - 1, "player {index} got only {} frames", lags.len());
        lags.sort();
        let p99 = lags[lags.len() * 99 / 100];
        worst = worst.max(p99);
        eprintln!(
            "player {index}: {} frames, p50 lag {:?}, p99 lag {:?}, max {:?}",
            lags.len(),
            lags[lags.len() / 2],
            p99,
            lags[lags.len() - 1]
        );
    }
    assert!(worst < Duration::from_millis(500), "normal players lagged {worst:?} (p99) behind the stalled one");
    assert!(
        server.wait_for_log("player kicked", Duration::from_secs(10)),
        "the stalled player was never disconnected:\n{}",
        server.log()
    );
    drop(stalled);
}
