//! A player's bounded queue: what the hub has handed it and its writer has not yet sent.
//!
//! The publisher (or the relay) pushes into every player's queue synchronously and never
//! waits. A queue that fills up means its player reads slower than the stream arrives: the
//! queue is emptied and the player skips to the next keyframe (it would otherwise fall ever
//! further behind). A player that has to skip `max_drops` times without ever catching up
//! is kicked, so one stalled viewer costs neither memory nor anyone else's latency.
//!
//! When its writer is woken is decided here too. Without a merge window, every queued packet
//! wakes it. With one, a packet only puts the player on its shard's [`FlushQueue`] (once per
//! window, whatever the packet count); when the window ends the shard's flush tick writes every
//! player on it itself ([`DirectWrite`]) and wakes a writer only for what its socket did not take,
//! and a player that gathered `merge_write_bytes` is woken at once. So a writer wakes at most
//! once per write, not once per packet, and no player keeps a timer of its own.
//!
//! Nor does a write: its deadline (`send_timeout`) is a time kept here while the write lasts
//! ([`Player::write_within`]), which the shard's sweep compares with the clock a few times a
//! second ([`Player::check_write_deadline`]); a timer per write cost a timer-wheel entry, and
//! the runtime's lock around it, twice per write of every player.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Instant;

use tokio::sync::Notify;

use super::flush_queue::FlushQueue;
use super::packet::{Packet, PacketKind};

/// An entry of a player's queue, in stream order.
#[derive(Debug, Clone)]
pub enum PlayerItem {
    Packet(Rc<Packet>),
    /// The publisher left; the player stays attached.
    Unpublished,
    /// A publisher (re)started; timestamps start afresh.
    Published,
}

/// Why a write given to [`Player::write_within`] was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCut {
    /// The hub kicked the player.
    Kicked,
    /// The write was not done by its deadline.
    TimedOut,
}

/// Outcome of offering a packet to a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Skipped while the player waits for a keyframe.
    Skipped,
    /// The player stayed behind too long and must be disconnected.
    Kicked,
}

/// What writes a player's queue to its socket straight from the shard's flush tick, with no
/// wake-up of its writer task: the window's end costs each waiting player one system call and
/// nothing more. Set by the player's writer ([`Player::write_directly`]); the writer task
/// keeps the writes the tick does not do (the first, replies, writes past `merge_write_bytes`,
/// and the rest of one the socket did not take whole).
pub trait DirectWrite {
    /// Takes what `player` has queued and writes it without waiting. False if the socket did
    /// not take all of it: the writer task must finish the write.
    fn write_queued(&self, player: &Player) -> bool;
}

/// The player's [`DirectWrite`], if its writer gave one.
#[derive(Default)]
struct DirectSlot(RefCell<Option<Rc<dyn DirectWrite>>>);

impl std::fmt::Debug for DirectSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.borrow().is_some() { "DirectSlot(set)" } else { "DirectSlot(none)" })
    }
}

#[derive(Debug)]
pub struct Player {
    pub conn_id: u64,
    queue: RefCell<VecDeque<PlayerItem>>,
    /// The writer task's waker, kept from its last wait (for its turn, or for a write to
    /// finish): the hub wakes the writer through it, and a waker kept is not cloned again.
    /// A `Notify` would take a lock and a list entry twice per write of every player.
    writer: RefCell<Option<Waker>>,
    /// Wakes whoever else waits for the kick (the session's reader).
    kick: Notify,
    /// Set when the writer should take the queue now: the window ended, enough bytes
    /// gathered, the session has replies to send, or there is no merge window. Starts set, so
    /// a new player's first write (the cached GOP and the play replies) goes out at once.
    due: Cell<bool>,
    /// On its shard's flush queue, waiting for the window's end.
    scheduled: Cell<bool>,
    /// The shard's merge window, once the writer is started with one; without it every
    /// queued packet makes the player due.
    flush: RefCell<Option<Rc<FlushQueue>>>,
    /// Writes the queue from the flush tick when the window ends (see [`DirectWrite`]).
    direct: DirectSlot,
    /// Payload bytes queued since the last take, against the flush queue's `merge_bytes`.
    gathered: Cell<usize>,
    /// True after a drop until the next keyframe: a decoder cannot start mid-GOP.
    waiting_keyframe: Cell<bool>,
    /// Drops since the player last emptied its queue.
    drops: Cell<u32>,
    dropped_packets: Cell<u64>,
    kicked: Cell<bool>,
    /// When the write in progress must be done by (`send_timeout` from its start); `None`
    /// between writes. Read by the shard's sweep.
    write_deadline: Cell<Option<Instant>>,
    /// The sweep found the write in progress past its deadline.
    write_timed_out: Cell<bool>,
    /// Paused by its client (RTSP PAUSE): offered packets are left out, neither queued nor
    /// counted as drops, so a paused player costs nothing and is never kicked for it.
    paused: Cell<bool>,
    limit: usize,
    /// Footprint of the queued packets, bounded by `byte_limit` as the count is by `limit`:
    /// a few hundred 4 MiB keyframes are within any packet count.
    queued_bytes: Cell<usize>,
    byte_limit: usize,
    max_drops: u32,
    /// Where the player sits in its stream's player list, so leaving is a swap-remove rather
    /// than a scan: 30,000 viewers leaving an ended stream took 270 ms of the shard by scan.
    slot: Cell<usize>,
}

impl Player {
    pub fn new(conn_id: u64, limit: usize, byte_limit: usize, max_drops: u32) -> Player {
        Player {
            conn_id,
            queue: RefCell::new(VecDeque::new()),
            writer: RefCell::new(None),
            kick: Notify::new(),
            due: Cell::new(true),
            scheduled: Cell::new(false),
            flush: RefCell::new(None),
            direct: DirectSlot::default(),
            gathered: Cell::new(0),
            waiting_keyframe: Cell::new(true),
            drops: Cell::new(0),
            dropped_packets: Cell::new(0),
            kicked: Cell::new(false),
            write_deadline: Cell::new(None),
            write_timed_out: Cell::new(false),
            paused: Cell::new(false),
            limit: limit.max(1),
            queued_bytes: Cell::new(0),
            byte_limit,
            max_drops: max_drops.max(1),
            slot: Cell::new(0),
        }
    }

    /// Appends the player to a stream's player list.
    pub(crate) fn join(self: &Rc<Self>, players: &mut Vec<Rc<Player>>) {
        self.slot.set(players.len());
        players.push(self.clone());
    }

    /// Removes the player from the list it joined, in constant time (the list's order means
    /// nothing). Does nothing if it is no longer there (the hub already dropped it as kicked).
    pub(crate) fn depart(self: &Rc<Self>, players: &mut Vec<Rc<Player>>) {
        let slot = self.slot.get();
        if players.get(slot).is_some_and(|p| Rc::ptr_eq(p, self)) {
            remove_slot(players, slot);
        }
    }

    /// Queues a packet, or skips it while waiting for a keyframe. `has_video` says whether the
    /// stream has video at all: an audio-only stream can start on any audio frame. A queue
    /// that is full by count or by bytes drops to the next keyframe (counted in `drops`).
    pub fn offer(self: &Rc<Self>, packet: &Rc<Packet>, has_video: bool, drops: &AtomicU64) -> Offer {
        if self.kicked.get() {
            return Offer::Kicked;
        }
        if self.paused.get() {
            return Offer::Skipped;
        }
        // A packet a decoder can start on, after none (a player that joined before its stream's
        // first keyframe, or after a drop or a new publish) is not held for the window: the
        // player has shown nothing yet, and a window more is a window more of black screen.
        let mut starts_decode = false;
        if self.waiting_keyframe.get() {
            let starts = match packet.kind {
                PacketKind::Video => packet.keyframe,
                PacketKind::Audio => !has_video && !packet.sequence_header,
                PacketKind::Data { .. } => false,
            };
            // Sequence headers and metadata are always delivered: they are what a decoder
            // needs before the keyframe.
            if !starts && !packet.sequence_header && !packet.is_metadata() {
                self.dropped_packets.set(self.dropped_packets.get() + 1);
                return Offer::Skipped;
            }
            if starts {
                self.waiting_keyframe.set(false);
            }
            starts_decode = starts;
        }
        let mut queue = self.queue.borrow_mut();
        let footprint = packet.footprint();
        // An empty queue takes any one packet: the bound is on what waits, not on frame size.
        let over_bytes = !queue.is_empty() && self.queued_bytes.get() + footprint > self.byte_limit;
        if queue.len() >= self.limit || over_bytes {
            drops.fetch_add(1, Ordering::Relaxed);
            self.dropped_packets.set(self.dropped_packets.get() + queue.len() as u64 + 1);
            queue.clear();
            self.queued_bytes.set(0);
            self.gathered.set(0);
            self.waiting_keyframe.set(!packet.keyframe);
            self.drops.set(self.drops.get() + 1);
            if self.drops.get() >= self.max_drops {
                drop(queue);
                self.kick();
                return Offer::Kicked;
            }
            if !packet.keyframe {
                return Offer::Skipped;
            }
        }
        queue.push_back(PlayerItem::Packet(packet.clone()));
        self.queued_bytes.set(self.queued_bytes.get() + footprint);
        drop(queue);
        self.schedule_write(packet.payload.len());
        if starts_decode {
            self.flush_now();
        }
        Offer::Queued
    }

    /// Stops the player's media until [`Player::resume`]: what is queued and not yet taken is
    /// dropped (stream notices stay), and nothing more is queued.
    pub fn pause(&self) {
        self.paused.set(true);
        self.queue.borrow_mut().retain(|item| !matches!(item, PlayerItem::Packet(_)));
        self.queued_bytes.set(0);
        self.gathered.set(0);
    }

    /// Takes packets again. `wait_keyframe`: the next packets start a new decode (a video
    /// stream's keyframe first), as after a drop; `false` when the player holds what the next
    /// packets depend on (it continues where it paused).
    pub fn resume(&self, wait_keyframe: bool) {
        self.paused.set(false);
        self.waiting_keyframe.set(wait_keyframe);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// The first queued packet `matches` accepts, in queue order (it sees each packet before
    /// it until then): what the player's writer will send first of it.
    pub fn first_queued(&self, mut matches: impl FnMut(&Packet) -> bool) -> Option<Rc<Packet>> {
        self.queue.borrow().iter().find_map(|item| match item {
            PlayerItem::Packet(packet) if matches(packet) => Some(packet.clone()),
            _ => None,
        })
    }

    /// Queues a stream notice (publisher left or came back).
    pub fn notice(self: &Rc<Self>, item: PlayerItem) {
        // Either way the next stream starts at its own keyframe.
        self.waiting_keyframe.set(true);
        self.queue.borrow_mut().push_back(item);
        self.schedule_write(0);
    }

    /// Something was queued: makes the writer due now, or schedules it for the window's end.
    fn schedule_write(self: &Rc<Self>, bytes: usize) {
        if self.due.get() {
            // Its writer takes this with what it is about to take anyway.
            return;
        }
        let flush = self.flush.borrow();
        let Some(flush) = flush.as_ref() else {
            return self.flush_now();
        };
        let gathered = self.gathered.get() + bytes;
        self.gathered.set(gathered);
        if gathered >= flush.merge_bytes {
            // Enough for an efficient write: waiting longer would only add latency. The
            // player stays on the list; the tick finds it with less, or nothing, queued.
            self.flush_now();
        } else if !self.scheduled.replace(true) {
            flush.schedule(self);
        }
    }

    /// Merges this player's writes over its shard's window (`FlushQueue`): from now on a
    /// packet waits for the window's end or for `merge_bytes` to gather.
    pub fn merge_writes(&self, flush: Rc<FlushQueue>) {
        *self.flush.borrow_mut() = Some(flush);
    }

    /// Lets the flush tick write this player's queue itself when the window ends (`None`: no
    /// more; the writer stopped).
    pub fn write_directly(&self, direct: Option<Rc<dyn DirectWrite>>) {
        *self.direct.0.borrow_mut() = direct;
    }

    /// Its window ended (the shard's flush tick took it off the queue): what waits is written
    /// now, by the tick itself where it can, else by the writer task.
    pub(super) fn window_ended(&self) {
        self.scheduled.set(false);
        if self.due.get() || self.queue.borrow().is_empty() {
            // The writer takes it with what it is about to take anyway, or nothing waits.
            return;
        }
        // Not while the writer's own write is in progress: its bytes go first.
        let direct = if self.write_deadline.get().is_none() { self.direct.0.borrow().clone() } else { None };
        match direct {
            Some(direct) => {
                if !direct.write_queued(self) {
                    // The socket took part of it: the writer finishes the write.
                    self.poke();
                }
            }
            None => self.flush_now(),
        }
    }

    /// Makes the writer due and wakes it, if anything waits for it.
    fn flush_now(&self) {
        if !self.due.get() && !self.queue.borrow().is_empty() {
            self.due.set(true);
            self.wake_writer();
        }
    }

    fn wake_writer(&self) {
        if let Some(waker) = self.writer.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Keeps the writer task's waker (a clone only when the task changed).
    fn park_writer(&self, waker: &Waker) {
        let mut kept = self.writer.borrow_mut();
        if !kept.as_ref().is_some_and(|kept| kept.will_wake(waker)) {
            *kept = Some(waker.clone());
        }
    }

    /// Moves everything queued into `out`. Emptying the queue counts as catching up.
    pub fn take(&self, out: &mut Vec<PlayerItem>) {
        self.take_each(|items| out.extend(items.drain(..)));
    }

    /// Hands the queue to `each`, which takes everything in it, in order (a writer frames
    /// straight from the queue, without moving it elsewhere first). Emptying the queue counts
    /// as catching up. `each` must not touch this player.
    pub fn take_each(&self, each: impl FnOnce(&mut VecDeque<PlayerItem>)) {
        let mut queue = self.queue.borrow_mut();
        each(&mut queue);
        queue.clear();
        drop(queue);
        self.queued_bytes.set(0);
        self.gathered.set(0);
        self.drops.set(0);
        self.due.set(false);
    }

    /// Waits until the writer is due to write (see `due`) or the player was kicked. For the
    /// player's one writer task.
    pub async fn ready(&self) {
        poll_fn(|cx| {
            if self.due.get() || self.kicked.get() {
                return Poll::Ready(());
            }
            self.park_writer(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Runs the writer's `work` (a write) until it is done, the player is kicked, or
    /// `deadline` passes (as the shard's sweep sees it: [`Player::check_write_deadline`]),
    /// whichever comes first; the work is dropped when cut short. For the player's one writer
    /// task.
    pub async fn write_within<T>(&self, deadline: Instant, work: impl Future<Output = T>) -> Result<T, WriteCut> {
        /// Clears the deadline however the write ends (a dropped writer included).
        struct InProgress<'a>(&'a Player);
        impl Drop for InProgress<'_> {
            fn drop(&mut self) {
                self.0.write_deadline.set(None);
            }
        }
        self.write_deadline.set(Some(deadline));
        self.write_timed_out.set(false);
        let _in_progress = InProgress(self);
        let mut work = pin!(work);
        poll_fn(|cx| {
            if self.kicked.get() {
                return Poll::Ready(Err(WriteCut::Kicked));
            }
            if self.write_timed_out.get() {
                return Poll::Ready(Err(WriteCut::TimedOut));
            }
            self.park_writer(cx.waker());
            work.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// The shard's sweep: cuts the write in progress short if it is past its deadline at
    /// `now`. True if it did.
    pub fn check_write_deadline(&self, now: Instant) -> bool {
        if self.write_deadline.get().is_some_and(|deadline| deadline <= now) && !self.write_timed_out.replace(true) {
            self.wake_writer();
            return true;
        }
        false
    }

    /// Whether the writer is due to write now.
    pub fn is_due(&self) -> bool {
        self.due.get()
    }

    /// Waits until the player is kicked.
    pub async fn kicked(&self) {
        while !self.kicked.get() {
            self.kick.notified().await;
        }
    }

    /// Wakes the writer although nothing was queued: the session has replies of its own to
    /// send, which do not wait for the window.
    pub fn poke(&self) {
        self.due.set(true);
        self.wake_writer();
    }

    pub fn kick(&self) {
        self.kicked.set(true);
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        self.wake_writer();
        self.kick.notify_waiters();
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.get()
    }

    pub fn dropped_packets(&self) -> u64 {
        self.dropped_packets.get()
    }

    pub fn queued(&self) -> usize {
        self.queue.borrow().len()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }
}

/// Swap-removes `players[slot]`, telling the player moved into the hole where it now sits.
pub(crate) fn remove_slot(players: &mut Vec<Rc<Player>>, slot: usize) {
    players.swap_remove(slot);
    if let Some(moved) = players.get(slot) {
        moved.slot.set(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    static DROPS: AtomicU64 = AtomicU64::new(0);

    fn video(keyframe: bool) -> Rc<Packet> {
        let body: &'static [u8] = if keyframe { &[0x17, 1, 0, 0, 0, 9] } else { &[0x27, 1, 0, 0, 0, 9] };
        Rc::new(Packet::new(PacketKind::Video, 0, Bytes::from_static(body), 4096).unwrap())
    }

    #[test]
    fn starts_on_a_keyframe() {
        let player = Rc::new(Player::new(1, 10, usize::MAX, 3));
        assert_eq!(player.offer(&video(false), true, &DROPS), Offer::Skipped);
        assert_eq!(player.offer(&video(true), true, &DROPS), Offer::Queued);
        assert_eq!(player.offer(&video(false), true, &DROPS), Offer::Queued);
        assert_eq!(player.queued(), 2);
    }

    #[test]
    fn a_full_queue_drops_to_the_next_keyframe_then_kicks() {
        let player = Rc::new(Player::new(1, 4, usize::MAX, 2));
        assert_eq!(player.offer(&video(true), true, &DROPS), Offer::Queued);
        for _ in 0..3 {
            assert_eq!(player.offer(&video(false), true, &DROPS), Offer::Queued);
        }
        // Full: the fifth packet empties the queue and waits for a keyframe.
        assert_eq!(player.offer(&video(false), true, &DROPS), Offer::Skipped);
        assert_eq!(player.queued(), 0);
        assert_eq!(player.offer(&video(false), true, &DROPS), Offer::Skipped);
        assert_eq!(player.offer(&video(true), true, &DROPS), Offer::Queued);
        for _ in 0..3 {
            player.offer(&video(false), true, &DROPS);
        }
        // Second overflow without ever catching up: kicked.
        assert_eq!(player.offer(&video(false), true, &DROPS), Offer::Kicked);
        assert!(player.is_kicked());
        assert!(player.dropped_packets() >= 8);
    }

    #[test]
    fn catching_up_forgives_earlier_drops() {
        let player = Rc::new(Player::new(1, 2, usize::MAX, 2));
        let mut out = Vec::new();
        for _ in 0..5 {
            player.offer(&video(true), true, &DROPS);
            player.offer(&video(true), true, &DROPS);
            player.offer(&video(true), true, &DROPS); // overflow once
            player.take(&mut out);
        }
        assert!(!player.is_kicked());
    }

    #[test]
    fn a_paused_player_queues_nothing_and_is_never_dropped_or_kicked() {
        let drops = AtomicU64::new(0);
        let player = Rc::new(Player::new(1, 2, usize::MAX, 1));
        assert_eq!(player.offer(&video(true), true, &drops), Offer::Queued);
        player.notice(PlayerItem::Unpublished);
        player.pause();
        assert_eq!(player.queued(), 1, "the notice stays, the packet goes");
        assert_eq!(player.queued_bytes(), 0);
        for _ in 0..10 {
            assert_eq!(player.offer(&video(true), true, &drops), Offer::Skipped);
        }
        assert_eq!((player.queued(), drops.load(Ordering::Relaxed), player.is_kicked()), (1, 0, false));
        assert_eq!(player.dropped_packets(), 0, "pausing is not dropping");

        // Resumed mid-GOP, continuing: the next frame is taken; starting afresh: a keyframe first.
        player.resume(false);
        assert_eq!(player.offer(&video(false), true, &drops), Offer::Queued);
        player.pause();
        player.resume(true);
        assert_eq!(player.offer(&video(false), true, &drops), Offer::Skipped);
        assert_eq!(player.offer(&video(true), true, &drops), Offer::Queued);
        let first = player.first_queued(|packet| packet.keyframe).expect("the keyframe is queued");
        assert!(first.keyframe);
        assert!(player.first_queued(|packet| packet.kind == PacketKind::Audio).is_none());
    }

    #[test]
    fn departing_swaps_the_last_player_in_and_keeps_every_slot_true() {
        let players: Vec<Rc<Player>> = (0..5).map(|id| Rc::new(Player::new(id, 8, usize::MAX, 2))).collect();
        let ids = |list: &[Rc<Player>]| list.iter().map(|p| p.conn_id).collect::<Vec<_>>();
        let mut list = Vec::new();
        for player in &players {
            player.join(&mut list);
        }
        players[1].depart(&mut list);
        assert_eq!(ids(&list), [0, 4, 2, 3]);
        // Departing twice, or after the hub already dropped the player, removes nobody else.
        players[1].depart(&mut list);
        remove_slot(&mut list, 0);
        players[0].depart(&mut list);
        assert_eq!(ids(&list), [3, 4, 2]);
        for (slot, player) in list.iter().enumerate() {
            assert_eq!(player.slot.get(), slot, "player {}", player.conn_id);
        }
        for player in &players[2..] {
            player.depart(&mut list);
        }
        assert!(list.is_empty());
    }

    /// A write that never finishes (a peer that stopped reading).
    async fn stuck_write() -> usize {
        std::future::pending().await
    }

    #[test]
    fn a_write_past_its_deadline_is_cut_when_the_sweep_sees_it_and_a_kick_cuts_it_at_once() {
        tokio_uring::start(async {
            let player = Rc::new(Player::new(1, 8, usize::MAX, 2));
            let started = Instant::now();
            let deadline = started + std::time::Duration::from_millis(30);
            let sweep = {
                let player = player.clone();
                tokio::task::spawn_local(async move {
                    assert!(!player.check_write_deadline(started), "not yet past its deadline");
                    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                    assert!(player.check_write_deadline(Instant::now()), "past its deadline");
                    assert!(!player.check_write_deadline(Instant::now()), "cut once");
                })
            };
            assert_eq!(player.write_within(deadline, stuck_write()).await, Err(WriteCut::TimedOut));
            assert!(started.elapsed() >= std::time::Duration::from_millis(40), "cut by the sweep, not before");
            sweep.await.expect("sweep");
            // Between writes there is no deadline to pass.
            assert!(!player.check_write_deadline(Instant::now() + std::time::Duration::from_secs(60)));
            // A write that finishes is not cut, and the next write starts with a fresh deadline.
            assert_eq!(player.write_within(deadline, async { 7 }).await, Ok(7));
            let kicker = player.clone();
            tokio::task::spawn_local(async move { kicker.kick() });
            let far = Instant::now() + std::time::Duration::from_secs(60);
            assert_eq!(player.write_within(far, stuck_write()).await, Err(WriteCut::Kicked));
        });
    }

    #[test]
    fn a_queue_full_by_bytes_drops_to_the_next_keyframe() {
        let big = |keyframe: bool| super::super::packet::test_video_frame(keyframe, 10_000);
        let footprint = big(true).footprint();
        assert!(footprint > 20_000, "payload and chunked copy: {footprint}");
        let drops = AtomicU64::new(0);
        // Room for three packets by bytes, a thousand by count.
        let player = Rc::new(Player::new(1, 1000, 3 * footprint, 10));
        assert_eq!(player.offer(&big(true), true, &drops), Offer::Queued);
        assert_eq!(player.offer(&big(false), true, &drops), Offer::Queued);
        assert_eq!(player.offer(&big(false), true, &drops), Offer::Queued);
        assert_eq!(player.queued_bytes(), 3 * footprint);
        assert_eq!(player.offer(&big(false), true, &drops), Offer::Skipped);
        assert_eq!((player.queued(), player.queued_bytes(), drops.load(Ordering::Relaxed)), (0, 0, 1));
        assert_eq!(player.offer(&big(true), true, &drops), Offer::Queued);
        // One packet larger than the whole bound still goes to an empty queue.
        let tiny = Rc::new(Player::new(2, 1000, 100, 10));
        assert_eq!(tiny.offer(&big(true), true, &drops), Offer::Queued);
    }
}
