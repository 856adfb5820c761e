//! The shard's flush tick: one timer per shard for every player's merge window, instead of
//! one per player.
//!
//! A player with packets waiting is on its shard's [`FlushQueue`] (the hub puts it there on
//! its first packet since its last write). The tick wakes when the queue stops being empty,
//! sleeps one window, and then writes every queued player's packets itself, together (why one
//! burst and not writes spread over the window: `hub::flush_queue`): a non-blocking `sendmsg`
//! per player straight from the tick (`Player::write_directly`, set by the player's writer),
//! so a window's end wakes no writer task and submits no io_uring operation. Only what a
//! socket does not take at once is left to the player's writer task, which finishes it over
//! io_uring under `send_timeout`. On a busy shard the next window ends one window after the
//! last burst began, so each player is written once per window and a packet waits about the
//! window at most (not the window plus the burst; see [`window_end`] for the bound when bursts
//! grow long), and a shard with thousands of players runs one timer, not thousands. A player
//! that gathers `merge_write_bytes` before the window ends is woken by the hub straight away,
//! and its writer task writes it.
//!
//! Beside the tick, the shard's sweep (one task, started with the shard's first player
//! writer, merging or not) holds every writer's `send_timeout` to account: each
//! [`SWEEP_EVERY`] it cuts the writes past their deadline (`Player::check_write_deadline`),
//! so a write costs no timer of its own and a stuck write ends at most [`SWEEP_EVERY`] after
//! its deadline. It also reports the shard's write sizes at debug level ([`WriteStats`]), every
//! [`REPORT_EVERY`].

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::io::WriteStats;
use crate::hub::{FlushQueue, Player};

/// How often the sweep reports the shard's write sizes (at debug level).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often the sweep checks the writes' deadlines: how late past `send_timeout` (seconds
/// at least) a stuck write may end.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// A shard's merge window and the players waiting for its end.
#[derive(Debug)]
pub struct ShardFlush {
    /// `merge_write_ms`; `None` writes every packet at once and keeps no list.
    window: Option<Duration>,
    queue: Rc<FlushQueue>,
    /// The tick task is started with the shard's first merging player, so a shard (or a
    /// test) that never plays runs no timer.
    ticking: Rc<Cell<bool>>,
    /// Every player writer of the shard, for the sweep (weak: a player that is gone is
    /// dropped from the list at the next sweep).
    watched: Rc<RefCell<Vec<Weak<Player>>>>,
    /// The sweep task is started with the shard's first player writer, like the tick.
    sweeping: Rc<Cell<bool>>,
}

impl ShardFlush {
    /// `merge_bytes`: gathered payload bytes that make a player write before the window ends.
    pub fn new(window: Option<Duration>, merge_bytes: usize) -> ShardFlush {
        ShardFlush {
            window,
            queue: FlushQueue::new(merge_bytes),
            ticking: Rc::new(Cell::new(false)),
            watched: Rc::default(),
            sweeping: Rc::new(Cell::new(false)),
        }
    }

    /// Puts a player's writes under the shard's sweep (their `send_timeout`), starting the
    /// sweep if it is not running. Call from the shard's runtime.
    pub fn watch(&self, player: &Rc<Player>) {
        self.watched.borrow_mut().push(Rc::downgrade(player));
        if !self.sweeping.replace(true) {
            tokio::task::spawn_local(sweep(self.watched.clone(), self.sweeping.clone()));
        }
    }

    /// Puts a player's writes on this shard's window (if it has one; true then), starting the
    /// tick if it is not running. Call from the shard's runtime.
    pub fn attach(&self, player: &Player) -> bool {
        let Some(window) = self.window else {
            return false;
        };
        player.merge_writes(self.queue.clone());
        if !self.ticking.replace(true) {
            tokio::task::spawn_local(tick(self.queue.clone(), window, self.ticking.clone()));
        }
        true
    }

    /// Players waiting for their window's end.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

/// Clears the flush list and the `ticking` mark when the tick task ends (its runtime is
/// dropped): waiting players and the list would otherwise hold each other.
struct TickGuard {
    queue: Rc<FlushQueue>,
    ticking: Rc<Cell<bool>>,
}

impl Drop for TickGuard {
    fn drop(&mut self) {
        self.ticking.set(false);
        self.queue.clear();
    }
}

async fn tick(queue: Rc<FlushQueue>, window: Duration, ticking: Rc<Cell<bool>>) {
    let _guard = TickGuard { queue: queue.clone(), ticking };
    let mut spare: Vec<Rc<Player>> = Vec::new();
    let mut last_burst = None;
    loop {
        queue.filled().await;
        tokio::time::sleep_until(window_end(last_burst, Instant::now(), window)).await;
        let started = Instant::now();
        queue.flush(&mut spare);
        last_burst = Some((started, Instant::now()));
    }
}

/// When a window whose first packet waits at `now` ends, after the last burst of writes ran
/// from `.0` to `.1`. On a busy shard, one window after the last burst began: a player is
/// written once per window, so no packet waits much longer than the window (ending it a
/// window after the burst ended instead, the burst's length was added to every period and to
/// the lag). Never sooner than half a window after the burst ended, though: the shard reads
/// its publishers between bursts, and a shard whose bursts take longer than the window would
/// otherwise do nothing but write. On an idle shard, one window after the first packet.
fn window_end(last_burst: Option<(Instant, Instant)>, now: Instant, window: Duration) -> Instant {
    match last_burst.map(|(began, ended)| (began + window).max(ended + window / 2)) {
        Some(end) if end > now => end,
        _ => now + window,
    }
}

/// Clears the `sweeping` mark when the sweep task ends with its runtime.
struct SweepGuard(Rc<Cell<bool>>);

impl Drop for SweepGuard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

async fn sweep(watched: Rc<RefCell<Vec<Weak<Player>>>>, sweeping: Rc<Cell<bool>>) {
    let _guard = SweepGuard(sweeping);
    let mut reported = Instant::now();
    let mut next = Instant::now();
    loop {
        next += SWEEP_EVERY;
        tokio::time::sleep_until(next).await;
        let now = std::time::Instant::now();
        watched.borrow_mut().retain(|player| match player.upgrade() {
            Some(player) => {
                player.check_write_deadline(now);
                true
            }
            None => false,
        });
        if reported.elapsed() >= REPORT_EVERY {
            report(reported.elapsed());
            reported = Instant::now();
        }
    }
}

/// Logs the shard's writes since the last report.
fn report(over: Duration) {
    let stats = WriteStats::take();
    if stats.writes == 0 {
        return;
    }
    debug!(
        over_ms = over.as_millis() as u64,
        writes = stats.writes,
        bytes_per_write = stats.bytes_per_write(),
        iovecs_per_write_x100 = stats.iovecs_per_write_x100(),
        under_4k = stats.by_size[0],
        under_16k = stats.by_size[1],
        under_64k = stats.by_size[2],
        from_64k = stats.by_size[3],
        "shard writes"
    );
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};

    use super::{SWEEP_EVERY, ShardFlush};
    use crate::hub::packet::test_video_frame;
    use crate::hub::{Packet, PacketKind, Player};
    use crate::session::io::PendingOutput;
    use crate::session::player_writer::{Framing, PlayerWriter};

    static DROPS: AtomicU64 = AtomicU64::new(0);

    /// A player attached to `flush`, its first write (due at once) already taken.
    fn merging_player(flush: &ShardFlush) -> Rc<Player> {
        let player = Rc::new(Player::new(1, 1000, usize::MAX, 3));
        flush.attach(&player);
        player.offer(&test_video_frame(true, 100), true, &DROPS);
        assert!(player.is_due(), "a new player's first write goes out at once");
        player.take(&mut Vec::new());
        player
    }

    #[test]
    fn a_players_packets_go_out_when_the_window_ends() {
        tokio_uring::start(async {
            let window = Duration::from_millis(40);
            let flush = ShardFlush::new(Some(window), 1 << 20);
            let player = merging_player(&flush);
            let queued = Instant::now();
            player.offer(&test_video_frame(false, 100), true, &DROPS);
            player.offer(&test_video_frame(false, 100), true, &DROPS);
            assert!(!player.is_due(), "packets wait for the window");
            assert_eq!(flush.waiting(), 1, "on the list once, whatever the packet count");
            tokio::time::timeout(window * 5, player.ready()).await.expect("due when the window ends");
            let waited = queued.elapsed();
            assert!(waited >= window, "written after {waited:?}, before the window ended");
            assert!(waited < window * 3, "written after {waited:?}, far past the window");
            let mut items = Vec::new();
            player.take(&mut items);
            assert_eq!(items.len(), 2, "one write takes both packets");
            assert_eq!(flush.waiting(), 0);
        });
    }

    #[test]
    fn a_window_starts_with_the_first_waiting_packet_and_ends_for_every_player() {
        tokio_uring::start(async {
            let window = Duration::from_millis(60);
            let flush = ShardFlush::new(Some(window), 1 << 20);
            let [first, second] = [merging_player(&flush), merging_player(&flush)];
            let started = Instant::now();
            first.offer(&test_video_frame(false, 100), true, &DROPS);
            tokio::time::sleep(window / 2).await;
            let second_started = Instant::now();
            second.offer(&test_video_frame(false, 100), true, &DROPS);
            assert_eq!(flush.waiting(), 2);
            tokio::time::timeout(window * 5, first.ready()).await.expect("the window ends");
            let first_at = started.elapsed();
            assert!(first_at >= window, "written after {first_at:?}, before the window ended");
            assert!(second.is_due(), "the window ended for the second player too");
            let second_at = second_started.elapsed();
            assert!(second_at < window, "the second player waited {second_at:?}, longer than the window");
            assert_eq!(flush.waiting(), 0);
            // A packet soon after: its window ends one window after the last one did, so the
            // player is written once per window.
            let last_end = Instant::now();
            first.take(&mut Vec::new());
            tokio::time::sleep(window / 3).await;
            first.offer(&test_video_frame(false, 100), true, &DROPS);
            tokio::time::timeout(window * 5, first.ready()).await.expect("the next window ends");
            let period = last_end.elapsed();
            assert!(period >= window - window / 10, "written {period:?} after the last window ended");
            assert!(period < window + window / 2, "written {period:?} after the last window ended, a window late");
            // After a quiet spell, the window starts with the next waiting packet.
            first.take(&mut Vec::new());
            tokio::time::sleep(window * 2).await;
            let next_started = Instant::now();
            first.offer(&test_video_frame(false, 100), true, &DROPS);
            tokio::time::timeout(window * 5, first.ready()).await.expect("the next window ends");
            let next_at = next_started.elapsed();
            assert!(next_at >= window, "written after {next_at:?}, before the next window ended");
            assert!(next_at < window * 2, "written after {next_at:?}, a window late");
        });
    }

    #[test]
    fn on_a_busy_shard_a_window_ends_one_window_after_the_last_burst_began() {
        let window = Duration::from_millis(100);
        let began = tokio::time::Instant::now();
        let at = |ms| began + Duration::from_millis(ms);
        // No burst yet: one window after the first waiting packet.
        assert_eq!(super::window_end(None, at(5), window), at(105));
        // A 20 ms burst, a packet waiting right after it: one window after the burst began.
        assert_eq!(super::window_end(Some((at(0), at(20))), at(21), window), at(100));
        // A burst longer than half a window: half a window after it, for the shard to read.
        assert_eq!(super::window_end(Some((at(0), at(80))), at(81), window), at(130));
        // A quiet shard: the packet waits a whole window.
        assert_eq!(super::window_end(Some((at(0), at(20))), at(150), window), at(250));
    }

    #[test]
    fn gathering_merge_write_bytes_writes_before_the_window_ends() {
        tokio_uring::start(async {
            let flush = ShardFlush::new(Some(Duration::from_secs(60)), 2000);
            let player = merging_player(&flush);
            player.offer(&test_video_frame(false, 1200), true, &DROPS);
            assert!(!player.is_due(), "1200 of 2000 bytes gathered");
            player.offer(&test_video_frame(false, 1200), true, &DROPS);
            assert!(player.is_due(), "2400 bytes gathered: due without waiting for the window");
            tokio::time::timeout(Duration::from_millis(100), player.ready()).await.expect("woken at once");
            let mut items = Vec::new();
            player.take(&mut items);
            assert_eq!(items.len(), 2);
            // The count starts again after the write.
            player.offer(&test_video_frame(false, 1200), true, &DROPS);
            assert!(!player.is_due());
        });
    }

    #[test]
    fn without_a_window_every_packet_is_due_at_once() {
        let flush = ShardFlush::new(None, 2000);
        let player = merging_player(&flush);
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        assert!(player.is_due());
        assert_eq!(flush.waiting(), 0);
    }

    /// Frames nothing of its own: the packet's payload only.
    struct PayloadOnly;

    impl Framing for PayloadOnly {
        fn take_output(&mut self, _: &mut Vec<Bytes>) {}
        fn append_packet(&mut self, bufs: &mut Vec<Bytes>, _: &mut BytesMut, packet: &Packet) {
            bufs.push(packet.payload.clone());
        }
        fn unpublished(&mut self, _: &mut Vec<Bytes>) {}
        fn published(&mut self, _: &mut Vec<Bytes>) {}
    }

    /// A writer of a fresh player over a loopback socket, framing payloads only, with a
    /// `send_timeout` of 30 s; and the socket's other end.
    async fn payload_writer() -> (PlayerWriter<PayloadOnly>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let socket = tokio_uring::net::TcpStream::connect(addr).await.expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        let writer = PlayerWriter {
            socket: Rc::new(socket),
            player: Rc::new(Player::new(7, 1000, usize::MAX, 3)),
            framing: PayloadOnly,
            bytes_out: Rc::new(Cell::new(0)),
            send_timeout: Duration::from_secs(30),
            output: Rc::new(PendingOutput::default()),
        };
        (writer, peer)
    }

    #[test]
    fn the_sweep_ends_a_write_its_peer_never_takes_within_send_timeout() {
        tokio_uring::start(async {
            // The peer never reads: the writes fill both socket buffers and then wait.
            let (writer, _peer) = payload_writer().await;
            let (player, output) = (writer.player.clone(), writer.output.clone());
            let flush = ShardFlush::new(None, 1 << 20);
            let send_timeout = Duration::from_millis(300);
            let writer = PlayerWriter { send_timeout, ..writer };
            flush.watch(&writer.player);
            let started = Instant::now();
            let run = tokio::task::spawn_local(writer.run());
            // More than loopback's socket buffers hold (4 MiB to send, 128 KiB to receive at
            // first), a keyframe first.
            player.offer(&test_video_frame(true, 1 << 20), true, &DROPS);
            for _ in 0..15 {
                player.offer(&test_video_frame(false, 1 << 20), true, &DROPS);
                tokio::task::yield_now().await;
            }
            tokio::time::timeout(Duration::from_secs(5), run).await.expect("the writer ends").expect("no panic");
            let took = started.elapsed();
            assert!(took >= send_timeout, "ended after {took:?}, before send_timeout");
            assert!(took < send_timeout + SWEEP_EVERY * 3, "ended after {took:?}, long past send_timeout");
            let failure = output.take_failure().expect("the writer failed");
            assert_eq!(failure.kind(), std::io::ErrorKind::TimedOut, "{failure}");
        });
    }

    #[test]
    fn a_window_the_socket_takes_in_part_is_finished_by_the_writer_in_order() {
        tokio_uring::start(async {
            let (writer, mut peer) = payload_writer().await;
            let (player, bytes_out) = (writer.player.clone(), writer.bytes_out.clone());
            let flush = ShardFlush::new(Some(Duration::from_millis(10)), 0);
            writer.spawn(&flush);
            // The first write (at once, by the writer task), then more than loopback's
            // socket buffers take, for the window's end to write from the tick: each packet's
            // bytes its own number, to check the order they arrive in.
            player.offer(&test_video_frame(true, 100), true, &DROPS);
            tokio::task::yield_now().await;
            let (packets, size) = (16u8, 1 << 20);
            let mut expected = vec![0u8; 100];
            expected[..5].copy_from_slice(&[0x17, 1, 0, 0, 0]);
            for n in 0..packets {
                let mut body = vec![n; size];
                body[..5].copy_from_slice(&[0x27, 1, 0, 0, 0]);
                expected.extend_from_slice(&body);
                let packet = Packet::new(PacketKind::Video, 0, Bytes::from(body), 4096).expect("a valid frame");
                player.offer(&Rc::new(packet), true, &DROPS);
            }
            // The peer starts reading well after the window ended.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let took_part = bytes_out.get();
            assert!(took_part > 100, "the window's end wrote {took_part} bytes");
            assert!(took_part < expected.len() as u64, "the socket took everything at once");
            let total = expected.len();
            let reader = std::thread::spawn(move || {
                let mut received = vec![0u8; total];
                std::io::Read::read_exact(&mut peer, &mut received).expect("read");
                received
            });
            let started = Instant::now();
            while bytes_out.get() < total as u64 && started.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(bytes_out.get(), total as u64, "the writer finished the write");
            let received = reader.join().expect("the reader");
            assert!(received == expected, "the bytes arrived out of order or changed");
        });
    }

    #[test]
    fn a_kicked_players_writer_ends_and_leaves_the_list() {
        tokio_uring::start(async {
            let (writer, mut peer) = payload_writer().await;
            let (player, bytes_out) = (writer.player.clone(), writer.bytes_out.clone());
            let flush = ShardFlush::new(Some(Duration::from_millis(20)), 1 << 20);
            player.offer(&test_video_frame(true, 500), true, &DROPS);
            flush.attach(&writer.player);
            let run = tokio::task::spawn_local(writer.run());
            // The first write (the keyframe) goes out at once; then one packet waits for
            // the window, and the player is kicked before it ends.
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(bytes_out.get(), 500);
            player.offer(&test_video_frame(false, 300), true, &DROPS);
            assert_eq!(flush.waiting(), 1);
            player.kick();
            tokio::time::timeout(Duration::from_secs(1), run).await.expect("the writer ends").expect("no panic");
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert_eq!(flush.waiting(), 0, "the tick dropped the kicked player");
            assert_eq!(bytes_out.get(), 500, "nothing written after the kick");
            // The writer shut the socket down: the peer reads the keyframe, then the end.
            let mut received = Vec::new();
            std::io::Read::read_to_end(&mut peer, &mut received).expect("read");
            assert_eq!(received.len(), 500);
        });
    }
}
