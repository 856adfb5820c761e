//! RTMP end to end with the reference client: ffmpeg publishes, ffprobe plays, through the real
//! `ringcast` binary. Needs ffmpeg and ffprobe with libx264 on PATH (`bash .ci/run` installs
//! them).

mod common;

use std::time::{Duration, Instant};

use common::{
    Client, TestServer, assert_h264_aac, assert_plays_h264_aac, describe_status, ffmpeg_publish, ffprobe_json,
    try_ffprobe_json,
};

/// Publishing connects, handshakes and gets `Publish.Start` in well under a second; the rest is
/// slack for a 2-core machine running several encoders at once.
const PUBLISH_START: Duration = Duration::from_secs(10);
const PROBE: Duration = Duration::from_secs(15);
const SMALL: (u32, u32) = (320, 240);

/// Starts a publisher on `key` and waits until the server has accepted it (the `n`-th
/// `publish start` in the log), failing with both logs if it does not.
fn publish(server: &TestServer, key: &str, seconds: u32, size: (u32, u32), n: usize) -> Client {
    let mut publisher = ffmpeg_publish(&server.rtmp_url(key), seconds, size);
    if !server.wait_for_log_count("publish start", n, PUBLISH_START) {
        panic!(
            "{}\n--- server log ---\n{}",
            publisher.report(&format!("server logged no publish start #{n} for {key}")),
            server.log()
        );
    }
    publisher
}

fn probe(server: &TestServer, key: &str, publisher: &mut Client) -> serde_json::Value {
    try_ffprobe_json(&server.rtmp_url(key), PROBE).unwrap_or_else(|error| {
        panic!("{error}\n{}\n--- server log ---\n{}", publisher.report("publisher"), server.log())
    })
}

#[test]
fn ffprobe_sees_the_published_h264_and_aac() {
    let server = TestServer::start();
    let mut publisher = publish(&server, "live/test", 20, (1280, 720), 1);
    let json = probe(&server, "live/test", &mut publisher);
    let context = format!("--- server log ---\n{}", server.log());
    assert_h264_aac(&json, (1280, 720), &context);
    assert!(publisher.is_running(), "{}", publisher.report("publisher stopped while being played"));
}

#[test]
fn a_second_publisher_on_the_same_key_is_refused() {
    let server = TestServer::start();
    let mut first = publish(&server, "live/test", 25, SMALL, 1);

    let mut second = ffmpeg_publish(&server.rtmp_url("live/test"), 25, SMALL);
    // Refusal comes right after connect; the second ffmpeg must give up long before its 25 s.
    let status = second.wait_timeout(Duration::from_secs(10));
    let Some(status) = status else {
        panic!("{}\n--- server log ---\n{}", second.report("second publisher not refused within 10 s"), server.log());
    };
    assert!(
        !status.success(),
        "{}\n--- server log ---\n{}",
        second.report("second publisher exited successfully"),
        server.log()
    );
    // ffmpeg prints the status description of an `error`-level onStatus this way; a dropped
    // connection or a handshake failure would read differently.
    assert!(
        second.output().contains("Server error"),
        "{}",
        second.report("second publisher failed, but not on a refusal from the server")
    );
    assert!(
        server.wait_for_line_with(&["publish refused", "live/test"], Duration::from_secs(5)),
        "server log shows no refusal for live/test\n{}",
        server.log()
    );
    assert_eq!(server.log_count("publish start"), 1, "the refused publisher was started anyway\n{}", server.log());

    assert!(
        first.is_running(),
        "{}\n--- server log ---\n{}",
        first.report("first publisher died when the second was refused"),
        server.log()
    );
    let json = probe(&server, "live/test", &mut first);
    assert_plays_h264_aac(&json, SMALL, &server.log());
    assert!(first.is_running(), "{}", first.report("first publisher"));
}

#[test]
fn the_key_is_free_again_after_the_publisher_goes_away() {
    let server = TestServer::start();
    let mut first = publish(&server, "live/test", 25, SMALL, 1);
    let json = probe(&server, "live/test", &mut first);
    assert_plays_h264_aac(&json, SMALL, &server.log());

    // SIGKILL: no deleteStream, no FCUnpublish, just a dead socket, the hardest case for the
    // server to notice.
    first.kill();
    let republished = (640, 360);
    // Retried: the server may take a moment to see the dead socket; a refused attempt exits
    // at once, so each try is short. Never more than ~15 s in all.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempts = Vec::new();
    let mut second = loop {
        let mut candidate = ffmpeg_publish(&server.rtmp_url("live/test"), 25, republished);
        if server.wait_for_log_count("publish start", 2, Duration::from_secs(5)) {
            break candidate;
        }
        let status = candidate.wait_timeout(Duration::from_millis(100));
        attempts.push(candidate.report(&format!(
            "attempt {} ({})",
            attempts.len() + 1,
            status.map_or("running".into(), describe_status)
        )));
        drop(candidate);
        if Instant::now() >= deadline {
            panic!(
                "no new publisher accepted on live/test within 15 s of killing the first\n{}\n--- server log ---\n{}",
                attempts.join("\n"),
                server.log()
            );
        }
    };
    let json = probe(&server, "live/test", &mut second);
    // The new size proves ffprobe sees the new publisher, not a leftover GOP of the old one.
    assert_plays_h264_aac(&json, republished, &server.log());
}

#[test]
fn stop_after_publishing_exits_cleanly() {
    let server = TestServer::start();
    let mut publisher = publish(&server, "live/test", 25, SMALL, 1);
    let json = ffprobe_json(&server.rtmp_url("live/test"), PROBE);
    assert_plays_h264_aac(&json, SMALL, &server.log());

    let started = Instant::now();
    let (status, log) = server.stop_and_log();
    let took = started.elapsed();
    assert!(status.success(), "ringcast exited with {} on SIGTERM\n--- server log ---\n{log}", describe_status(status));
    // The contract says ~5 s; stop() itself allows 10 before failing.
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with a publisher connected\n--- server log ---\n{log}"
    );
    // Its server gone, the encoder fails on its next write instead of running out its 25 s.
    let ended = publisher.wait_timeout(Duration::from_secs(10));
    assert!(ended.is_some(), "{}", publisher.report("publisher still running 10 s after the server stopped"));
}

#[test]
fn a_player_waiting_for_the_publisher_gets_the_stream() {
    let server = TestServer::start();
    let url = server.rtmp_url("live/later");
    let player = std::thread::spawn(move || try_ffprobe_json(&url, Duration::from_secs(20)));
    assert!(
        server.wait_for_log("play start", Duration::from_secs(10)),
        "player of an unpublished stream not accepted\n--- server log ---\n{}",
        server.log()
    );
    // Long enough that the player is surely parked, waiting, when the publisher comes.
    std::thread::sleep(Duration::from_millis(500));
    let mut publisher = publish(&server, "live/later", 20, SMALL, 1);
    let json = player.join().expect("player thread").unwrap_or_else(|error| {
        panic!("{error}\n{}\n--- server log ---\n{}", publisher.report("publisher"), server.log())
    });
    assert_h264_aac(&json, SMALL, &server.log());
}

/// SO_REUSEPORT spreads players over the shards by a hash of their address, so a stream's
/// players land on the publisher's shard and on others (relayed). Both must see the same thing.
#[test]
fn players_on_every_shard_see_the_same_streams() {
    let server = TestServer::start_with(&["--shards", "2"]);
    let mut publisher = publish(&server, "live/test", 25, SMALL, 1);
    let mut probes = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Rounds of three parallel players until both shards have had one; with two shards, a
    // round lands on a single shard only one time in four.
    loop {
        let players: Vec<_> = (0..3)
            .map(|_| {
                let url = server.rtmp_url("live/test");
                std::thread::spawn(move || try_ffprobe_json(&url, PROBE))
            })
            .collect();
        for player in players {
            let json = player.join().expect("player thread").unwrap_or_else(|error| {
                panic!("{error}\n{}\n--- server log ---\n{}", publisher.report("publisher"), server.log())
            });
            probes += 1;
            assert_h264_aac(&json, SMALL, &format!("player #{probes}\n{}", server.log()));
        }
        let shards_played: Vec<bool> = ["shard=0", "shard=1"]
            .iter()
            .map(|shard| !server.log_lines_with(&["play start", shard]).is_empty())
            .collect();
        if shards_played.iter().all(|&played| played) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {probes} players, not every shard has had one (can't test the relay)\n{}",
            server.log()
        );
    }
}
