//! Fan-out: the per-packet cost of `PublisherHandle::push` to 1, 100 and 10,000 players on one
//! shard, the cross-shard relay, and a player writer's per-packet work before its `writev`.
//!
//! How draining is accounted: players' queues are bounded (`player_queue`, 1024 here), so the
//! benches push `BATCH` packets under the clock, then stop the clock and empty every player's
//! queue (`Player::take`, what the writer task does) before the next batch. The reported time
//! is push only; freeing packets when the last queue lets go of them happens in the untimed
//! drain (or, for the GOP cache, inside push when a keyframe clears it). Players never drop or
//! get kicked; the benches assert it.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::hub::{
    Hub, HubSettings, Packet, PacketKind, PlayerHandle, PlayerItem, PublisherHandle, ShardHub, ShardMessage,
};
use ringcast::session::flv_out::FlvFraming;
use ringcast::session::player_writer::{Framing, header_room};
use ringcast::session::rtmp_out::append_packet;
use ringcast::session::timeline::Timeline;
use tokio::sync::mpsc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STREAM: &str = "live/x";
/// Packets pushed between two drains of every player's queue (below `player_queue`).
const BATCH: u64 = 64;
const VIDEO_FRAME_LEN: usize = 9_000;
const AUDIO_FRAME_LEN: usize = 370;
/// Video frames per GOP (a keyframe every 2 s at 30 fps): a keyframe resets the GOP cache.
const GOP_FRAMES: usize = 60;

fn settings() -> HubSettings {
    HubSettings { player_queue: 1024, prepare: ringcast::session::rtmp_out::prepare, ..HubSettings::default() }
}

fn video_frame(keyframe: bool, len: usize) -> Bytes {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.extend((0..len - body.len()).map(|i| (i * 7) as u8));
    Bytes::from(body)
}

fn audio_frame(len: usize) -> Bytes {
    let mut body = vec![0xAF, 1];
    body.extend((0..len - body.len()).map(|i| (i * 13) as u8));
    Bytes::from(body)
}

/// An AVC sequence header (its content does not matter to the hub) and an AAC one.
fn sequence_headers() -> [(PacketKind, Bytes); 2] {
    [
        (PacketKind::Video, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff])),
        (PacketKind::Audio, Bytes::from_static(&[0xAF, 0, 0x12, 0x10])),
    ]
}

/// What gets pushed, in a loop: a GOP of 9 KB video frames (payload larger than the chunk size,
/// so `Packet::new` builds a chunked copy) or 370-byte AAC frames (one chunk: no copy, so the
/// time is fan-out and bookkeeping only).
#[derive(Clone, Copy)]
enum Load {
    Video,
    Audio,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Video => "video_9k",
            Load::Audio => "audio_370b",
        }
    }

    fn cycle(self) -> Vec<(PacketKind, Bytes)> {
        match self {
            Load::Video => (0..GOP_FRAMES).map(|i| (PacketKind::Video, video_frame(i == 0, VIDEO_FRAME_LEN))).collect(),
            Load::Audio => vec![(PacketKind::Audio, audio_frame(AUDIO_FRAME_LEN))],
        }
    }
}

fn drain(players: &[PlayerHandle], scratch: &mut Vec<PlayerItem>) {
    for handle in players {
        handle.player().take(scratch);
        scratch.clear();
    }
}

fn assert_no_losses(hub: &Hub, players: &[PlayerHandle]) {
    assert_eq!(hub.stats.players_kicked.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(hub.stats.relay_dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    for handle in players {
        assert!(!handle.player().is_kicked());
        assert_eq!(handle.player().dropped_packets(), 0);
    }
}

/// Pushes `iters` packets from `cycle` (continuing at `*next`), `BATCH` at a time; `after_push`
/// runs inside the clock after each push (the relay hop), `drain` outside it after each batch.
fn timed_pushes(
    iters: u64,
    publisher: &PublisherHandle,
    cycle: &[(PacketKind, Bytes)],
    next: &mut usize,
    timestamp: &mut u32,
    mut after_push: impl FnMut(),
    mut drain: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let batch = (iters - done).min(BATCH);
        let start = Instant::now();
        for _ in 0..batch {
            let (kind, payload) = &cycle[*next % cycle.len()];
            *next += 1;
            *timestamp = timestamp.wrapping_add(33);
            publisher.push(*kind, *timestamp, payload.clone()).expect("valid packet");
            after_push();
        }
        total += start.elapsed();
        drain();
        done += batch;
    }
    total
}

fn push_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_push");
    group.throughput(Throughput::Elements(1));
    for load in [Load::Audio, Load::Video] {
        for players_n in [1usize, 100, 10_000] {
            let (hub, _receivers) = Hub::new(1, settings());
            let shard = ShardHub::new(0, hub.clone());
            let players: Vec<PlayerHandle> = (0..players_n as u64).map(|id| shard.play(STREAM, id).0).collect();
            let (publisher, _) = shard.publish(STREAM).expect("first publisher");
            for (kind, payload) in sequence_headers() {
                publisher.push(kind, 0, payload).expect("valid header");
            }
            // Players start on a keyframe; from here on every packet reaches every player.
            publisher.push(PacketKind::Video, 0, video_frame(true, VIDEO_FRAME_LEN)).expect("valid keyframe");
            let mut scratch = Vec::new();
            drain(&players, &mut scratch);

            let cycle = load.cycle();
            let (mut next, mut timestamp) = (1, 0);
            group.bench_function(BenchmarkId::new(load.name(), format!("{players_n}_players")), |b| {
                b.iter_custom(|iters| {
                    timed_pushes(
                        iters,
                        &publisher,
                        &cycle,
                        &mut next,
                        &mut timestamp,
                        || {},
                        || drain(&players, &mut scratch),
                    )
                })
            });
            assert_no_losses(&hub, &players);
        }
    }
    group.finish();
}

/// Moves everything waiting in a shard's inbox into that shard, as its inbox task would.
fn pump(shard: &ShardHub, inbox: &mut mpsc::Receiver<ShardMessage>) -> usize {
    let mut handled = 0;
    while let Ok(message) = inbox.try_recv() {
        shard.handle_message(message);
        handled += 1;
    }
    handled
}

fn relay_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_relay");
    group.throughput(Throughput::Elements(1));
    for load in [Load::Audio, Load::Video] {
        for players_n in [1usize, 100] {
            let (hub, receivers) = Hub::new(2, settings());
            let mut receivers = receivers.into_iter();
            let (mut inbox0, mut inbox1) = (receivers.next().expect("shard 0"), receivers.next().expect("shard 1"));
            let shard0 = ShardHub::new(0, hub.clone());
            let shard1 = ShardHub::new(1, hub.clone());
            let (publisher, _) = shard0.publish(STREAM).expect("first publisher");
            let players: Vec<PlayerHandle> = (0..players_n as u64).map(|id| shard1.play(STREAM, id).0).collect();
            // Shard 1 asked shard 0 for the stream; shard 0 answers with its start.
            assert_eq!(pump(&shard0, &mut inbox0), 1, "one Subscribe");
            assert_eq!(pump(&shard1, &mut inbox1), 1, "one Start");
            for (kind, payload) in sequence_headers() {
                publisher.push(kind, 0, payload).expect("valid header");
            }
            publisher.push(PacketKind::Video, 0, video_frame(true, VIDEO_FRAME_LEN)).expect("valid keyframe");
            assert_eq!(pump(&shard1, &mut inbox1), 3);
            let mut scratch = Vec::new();
            drain(&players, &mut scratch);
            assert!(players.iter().all(|p| p.is_live()));

            let cycle = load.cycle();
            let (mut next, mut timestamp) = (1, 0);
            group.bench_function(BenchmarkId::new(load.name(), format!("{players_n}_players_on_shard_1")), |b| {
                b.iter_custom(|iters| {
                    timed_pushes(
                        iters,
                        &publisher,
                        &cycle,
                        &mut next,
                        &mut timestamp,
                        || {
                            let handled = pump(&shard1, &mut inbox1);
                            debug_assert_eq!(handled, 1);
                        },
                        || drain(&players, &mut scratch),
                    )
                })
            });
            assert_no_losses(&hub, &players);
            let delivered: usize = players.iter().map(|p| p.player().queued()).sum();
            assert_eq!(delivered, 0, "drained after every batch");
        }
    }
    group.finish();
}

/// One second of packets as the hub stores them (30 video, 43 audio, in timestamp order).
fn one_second_packets() -> Vec<Rc<Packet>> {
    let mut media = Vec::new();
    for i in 0..30u32 {
        media.push((PacketKind::Video, i * 1000 / 30, video_frame(i == 0, VIDEO_FRAME_LEN)));
    }
    for i in 0..43u32 {
        media.push((PacketKind::Audio, i * 1024 * 1000 / 44_100, audio_frame(AUDIO_FRAME_LEN)));
    }
    media.sort_by_key(|(_, ts, _)| *ts);
    let chunk_size = settings().chunk_size;
    media
        .into_iter()
        .map(|(kind, ts, payload)| Rc::new(Packet::new(kind, ts, payload, chunk_size).expect("valid packet")))
        .collect()
}

/// One write's framing as an RTMP player's writer does it: `reserve` says whether the write's
/// header room is reserved first (the writer's way) or each header reserves its own.
fn rtmp_write(
    packets: &[Rc<Packet>],
    at: &mut usize,
    batch: usize,
    headers: &mut BytesMut,
    timeline: &mut Timeline,
    reserve: bool,
) -> Vec<Bytes> {
    if reserve {
        headers.reserve(header_room(batch));
    }
    let mut bufs: Vec<Bytes> = Vec::with_capacity(batch * 2 + 1);
    for _ in 0..batch {
        let packet = &packets[*at % packets.len()];
        *at += 1;
        append_packet(&mut bufs, headers, timeline, packet, 1, settings().chunk_size);
    }
    black_box(&bufs);
    bufs
}

fn write_prep_benches(c: &mut Criterion) {
    let packets = one_second_packets();
    let mut group = c.benchmark_group("player_write_prep");
    // 1: a writer woken per packet; 8: ~100 ms of this stream (a merge window); 64: ~1 s.
    // Each iteration is the writer's loop body for one wake-up: the write's header room
    // reserved once, one header of its own per packet, then the shared form, all gathered for
    // one writev; the buffers dropped after it (as the writev's completion does), so the next
    // reservation takes the same memory back.
    for batch in [1usize, 8, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("rtmp", format!("batch_{batch}")), |b| {
            let (mut timeline, mut headers, mut at) = (Timeline::default(), BytesMut::new(), 0);
            b.iter(|| rtmp_write(&packets, &mut at, batch, &mut headers, &mut timeline, true))
        });
        group.bench_function(BenchmarkId::new("flv", format!("batch_{batch}")), |b| {
            let (mut framing, mut headers, mut at) = (FlvFraming::default(), BytesMut::new(), 0);
            b.iter(|| {
                headers.reserve(header_room(batch));
                let mut bufs: Vec<Bytes> = Vec::with_capacity(batch * 2 + 1);
                for _ in 0..batch {
                    framing.append_packet(&mut bufs, &mut headers, &packets[at % packets.len()]);
                    at += 1;
                }
                framing.end_write(&mut bufs, &mut headers, 0);
                black_box(&bufs);
                bufs
            })
        });
    }
    // As the writer did before it reserved a write's room: each packet's header reserved on
    // its own, while the write's earlier headers still hold the buffer (so it allocates).
    group.throughput(Throughput::Elements(8));
    group.bench_function(BenchmarkId::new("rtmp_reserved_per_packet", "batch_8"), |b| {
        let (mut timeline, mut headers, mut at) = (Timeline::default(), BytesMut::new(), 0);
        b.iter(|| rtmp_write(&packets, &mut at, 8, &mut headers, &mut timeline, false))
    });
    group.finish();
}

/// Every player of a stream leaving, as when a popular stream ends and its viewers go: what
/// the hub spends detaching them, per player. Constant per player is the goal; a linear scan
/// per departure would make the whole a quadratic stall of the shard.
fn leave_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("players_leave");
    for players_n in [1_000usize, 10_000, 30_000] {
        group.throughput(Throughput::Elements(players_n as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{players_n}_players")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (hub, _receivers) = Hub::new(1, settings());
                    let shard = ShardHub::new(0, hub.clone());
                    let players: Vec<PlayerHandle> = (0..players_n as u64).map(|id| shard.play(STREAM, id).0).collect();
                    let started = Instant::now();
                    for player in players {
                        player.leave();
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .without_plots();
    targets = push_benches, relay_benches, write_prep_benches, leave_benches
}
criterion_main!(benches);
