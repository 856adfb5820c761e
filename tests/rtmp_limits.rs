//! Memory and time bounds of connections and streams against hostile clients, on
//! the real binary. Each attack is scaled down to run in seconds; each test
//! stops attacking once the server's memory passes its bound, so a regression fails the test
//! instead of exhausting the machine.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::rtmp_client::{RtmpClient, media};
use common::{TestServer, eventually, metric_total, wait_closed};
use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};

const MIB: u64 = 1 << 20;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// Samples the server's RSS until `done` or `duration`; raises `over` (which attackers watch)
/// as soon as it grows past `bound` above `baseline`. Returns the peak growth.
fn watch_rss(pid: u32, baseline: u64, bound: u64, duration: Duration, over: &AtomicBool, done: &AtomicBool) -> u64 {
    let deadline = Instant::now() + duration;
    let mut peak = 0;
    while Instant::now() < deadline && !done.load(Ordering::Relaxed) {
        let growth = rss(pid).saturating_sub(baseline);
        peak = peak.max(growth);
        if growth > bound {
            over.store(true, Ordering::Relaxed);
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    peak
}

/// `count` ping requests (User Control event 6), as one buffer.
fn pings(count: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..count {
        let mut payload = 6u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&n.to_be_bytes());
        let message = RawMessageRef { timestamp: 0, type_id: 4, stream_id: 0, payload: &payload };
        encode_message(&mut out, 2, &message, 128);
    }
    out
}

/// Ping flood: a player that never reads while flooding ping requests. Its replies must not
/// pile up (the server stops reading it), it is closed with a logged reason once its socket
/// accepted nothing for `send_timeout`, and another player on the same shard keeps receiving
/// media.
#[test]
fn a_player_that_never_reads_but_floods_pings_is_bounded_and_closed() {
    const BOUND: u64 = 48 * MIB;
    let config = "send_timeout = \"2s\"\nmax_pending_output = 65536\nmerge_write_ms = 0\n";
    let server = TestServer::start_with_config(config, &["--shards", "1"]);
    let addr = server.rtmp_addr();

    let mut source = RtmpClient::publisher(addr, "cam");
    source.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    let mut good = RtmpClient::player(addr, "cam");
    let mut hostile = RtmpClient::player(addr, "cam");

    let stop = Arc::new(AtomicBool::new(false));
    // The publisher: 50 frames a second, a keyframe a second.
    let publishing = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let frame = media::video(seq, seq % 50 == 0, 1_000);
                if source.send_media(9, seq * 20, &frame).is_err() {
                    break;
                }
                seq += 1;
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The good player records when each frame arrives.
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let watching = {
        let (stop, arrivals) = (stop.clone(), arrivals.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match good.next_event(Duration::from_millis(200)) {
                    Ok(Some(ClientEvent::Video { .. })) => arrivals.lock().unwrap().push(Instant::now()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || (arrivals.lock().unwrap().len() > 5).then_some(())).is_some(),
        "the good player receives media before the attack"
    );

    let pid = server.pid();
    let baseline = rss(pid);
    let over = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let attack_started = Instant::now();
    let attacking = {
        let (over, closed, sent) = (over.clone(), closed.clone(), sent.clone());
        thread::spawn(move || {
            let batch = pings(2_000);
            hostile.stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
            while !over.load(Ordering::Relaxed) && attack_started.elapsed() < Duration::from_secs(15) {
                match hostile.stream.write(&batch) {
                    Ok(n) => {
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => {
                        closed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    };
    let peak = watch_rss(pid, baseline, BOUND, Duration::from_secs(8), &over, &closed);
    over.store(true, Ordering::Relaxed);
    attacking.join().unwrap();
    let attack = attack_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    publishing.join().unwrap();
    watching.join().unwrap();

    let sent = sent.load(Ordering::Relaxed);
    assert!(
        peak <= BOUND,
        "server RSS grew {} MiB (bound {}) while a non-reading player sent {} MiB of pings",
        peak / MIB,
        BOUND / MIB,
        sent / MIB
    );
    assert!(
        server.wait_for_line_with(&["rtmp session closed", "send timeout"], Duration::from_secs(5))
            || server.wait_for_line_with(&["rtmp session closed", "stayed unsent"], Duration::from_secs(1)),
        "the non-reading player is closed with its reason:\n{}",
        server.log()
    );
    assert!(metric_total(&server.metrics(), "ringcast_send_timeouts_total") >= 1);
    // The other player on the shard kept receiving: no gap of a second during the attack.
    let arrivals = arrivals.lock().unwrap();
    let during: Vec<_> = arrivals.iter().filter(|t| t.duration_since(attack_started) < attack).collect();
    let longest = during.windows(2).map(|w| w[1].duration_since(*w[0])).max().unwrap_or_default();
    assert!(during.len() > 20, "the good player got {} frames in {attack:?} of attack", during.len());
    assert!(longest < Duration::from_secs(1), "the good player waited {longest:?} for a frame");
}

/// Player queue bound: a stalled player of a stream of big frames holds at most
/// `player_queue_bytes` (payload and chunked form), although the packet count (`player_queue`)
/// would allow far more; the GOP cache likewise stops at `gop_cache_bytes`, counted.
#[test]
fn a_stalled_player_of_big_frames_holds_at_most_player_queue_bytes() {
    const BOUND: u64 = 48 * MIB;
    const FRAME: usize = 512 * 1024;
    let config = "player_queue = 1024\nplayer_queue_bytes = 4194304\nplayer_max_drops = 1000\n\
                  gop_cache_bytes = 1048576\nsend_timeout = \"60s\"\nmerge_write_ms = 0\n";
    let server = TestServer::start_with_config(config, &["--shards", "1"]);
    let addr = server.rtmp_addr();
    let mut source = RtmpClient::publisher(addr, "big");
    source.send_media(9, 0, media::AVC_SEQUENCE_HEADER).unwrap();
    // Stalled: plays, then never reads again.
    let _stalled = RtmpClient::player(addr, "big");

    let pid = server.pid();
    let baseline = rss(pid);
    let over = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let publishing = {
        let (over, done) = (over.clone(), done.clone());
        thread::spawn(move || {
            // 200 frames of 512 KiB: 100 MiB of media, 200 MiB with the chunked copies.
            for seq in 0..200 {
                if over.load(Ordering::Relaxed) {
                    break;
                }
                let frame = media::video(seq, seq % 4 == 0, FRAME);
                source.send_media(9, seq * 40, &frame).expect("publisher sends");
            }
            // Let the server take in the last frames before the peak is read.
            thread::sleep(Duration::from_millis(500));
            done.store(true, Ordering::Relaxed);
        })
    };
    let peak = watch_rss(pid, baseline, BOUND, Duration::from_secs(30), &over, &done);
    publishing.join().unwrap();
    assert!(
        peak <= BOUND,
        "server RSS grew {} MiB (bound {}) holding a stalled player's frames",
        peak / MIB,
        BOUND / MIB
    );
    let metrics = server.metrics();
    assert!(metric_total(&metrics, "ringcast_player_queue_drops_total") >= 1, "{metrics}");
    assert!(metric_total(&metrics, "ringcast_gop_cache_overflows_total") >= 1, "{metrics}");
    assert!(server.log_count("GOP too large to cache") >= 1, "{}", server.log());
}

/// Sends a handshake and `connect`, then the start of a `declared`-byte video message of which
/// `sent` bytes go out now. Returns the client, still connected.
fn start_large_message(addr: SocketAddr, declared: u32, sent: usize) -> Option<RtmpClient> {
    let mut client = RtmpClient::connect(addr, "live", Goal::Connect).ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.next_event(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(ClientEvent::Connected)) => break,
            Ok(Some(_)) => {}
            _ => return None,
        }
    }
    let mut bytes = Vec::new();
    // Set Chunk Size to the largest: the whole message is one chunk, trickled byte by byte.
    let size = 0x7FFF_FFFFu32.to_be_bytes();
    encode_message(&mut bytes, 2, &RawMessageRef { timestamp: 0, type_id: 1, stream_id: 0, payload: &size }, 128);
    // A format 0 header on chunk stream 6 declaring `declared` bytes of video.
    bytes.extend_from_slice(&[6, 0, 0, 0]);
    bytes.extend_from_slice(&declared.to_be_bytes()[1..]);
    bytes.extend_from_slice(&[9, 1, 0, 0, 0]);
    bytes.extend(std::iter::repeat_n(0x17u8, sent));
    client.stream.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    client.stream.write_all(&bytes).ok()?;
    Some(client)
}

/// Trickled messages: many connections each start a large message and trickle it. Together they
/// may hold no more than the shard's partial-message budget (the ones that would take more are
/// refused at once), the rest are closed by the slow-body timeout, and a real encoder
/// publishing on the same shard meanwhile is unaffected.
#[test]
fn trickled_partial_messages_share_a_budget_and_time_out() {
    const ATTACKERS: usize = 40;
    const SENT: usize = 4 << 20;
    const BOUND: u64 = 64 * MIB;
    common::require_ffmpeg();
    let config = "partial_message_budget = 33554432\npartial_message_timeout = \"3s\"\n";
    let server = TestServer::start_with_config(config, &["--shards", "1"]);
    let addr = server.rtmp_addr();
    let pid = server.pid();
    let baseline = rss(pid);

    let over = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let attacking = {
        let (over, done) = (over.clone(), done.clone());
        thread::spawn(move || {
            let mut clients = Vec::new();
            for _ in 0..ATTACKERS {
                if over.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(client) = start_large_message(addr, 0x00FF_FFFF, SENT) {
                    clients.push(client);
                }
            }
            // Trickle one byte per connection every 100 ms, as a slowloris attacker does.
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(6) && !over.load(Ordering::Relaxed) {
                for client in &mut clients {
                    let _ = client.stream.write(&[0x17]);
                }
                thread::sleep(Duration::from_millis(100));
            }
            done.store(true, Ordering::Relaxed);
            clients
        })
    };
    // A real encoder publishes on the same (only) shard during the attack.
    let mut encoder = common::ffmpeg_publish(&server.rtmp_url("live/real"), 20, (320, 240));
    let peak = watch_rss(pid, baseline, BOUND, Duration::from_secs(30), &over, &done);
    let clients = attacking.join().unwrap();
    assert!(
        peak <= BOUND,
        "server RSS grew {} MiB (bound {}) under {ATTACKERS} trickled messages",
        peak / MIB,
        BOUND / MIB
    );

    // Every attacker is gone: refused at once, or closed by the slow-body timeout.
    for (index, mut client) in clients.into_iter().enumerate() {
        assert!(
            wait_closed(&mut client.stream, Duration::from_secs(5)).is_ok(),
            "attacker {index} still connected\n{}",
            server.log()
        );
    }
    let metrics = server.metrics();
    assert!(metric_total(&metrics, "ringcast_partial_budget_refusals_total") >= 1, "{metrics}");
    assert!(metric_total(&metrics, "ringcast_slow_messages_total") >= 1, "{metrics}");
    assert!(server.log_count("slow body") >= 1, "{}", server.log());

    // The encoder published all along and plays.
    let json = common::try_ffprobe_json(&server.rtmp_url("live/real"), Duration::from_secs(15))
        .unwrap_or_else(|error| panic!("{error}\n{}\n{}", encoder.report("encoder"), server.log()));
    common::assert_h264_aac(&json, (320, 240), &server.log());
    assert!(encoder.is_running(), "{}", encoder.report("encoder stopped during the attack"));
    assert_eq!(server.log_count("publish start"), 1, "{}", server.log());
}
