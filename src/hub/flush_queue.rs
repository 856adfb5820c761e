//! One shard's players whose queues got something since their last write: the merge window's
//! bookkeeping, kept per shard so that every player's window costs one timer for all of them.
//! The tick itself (the timer) is the session layer's (`session/flush.rs`).
//!
//! One window for the whole shard: it starts when the tick sees a first player waiting and
//! ends for every waiting player at once, so the shard's writes leave in one burst per window.
//! Measured against a window cut into per-player slots and against each player's own window
//! (PERFORMANCE.md, "The merge window's shape"), the burst sent the largest writes and the
//! most bytes per CPU-second: while the burst's writes go out the shard reads nothing, so the
//! next window starts after it, and the receiving side is woken once per burst rather than
//! again and again.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::Notify;

use super::player::Player;

#[derive(Debug)]
pub struct FlushQueue {
    /// The waiting players, in the order their windows' first packets came.
    waiting: RefCell<Vec<Rc<Player>>>,
    /// Wakes the tick when the queue stops being empty: an idle shard keeps no timer running.
    filled: Notify,
    /// Gathered payload bytes that make a player write before the window ends
    /// (`merge_write_bytes`; `usize::MAX` when only the window counts).
    pub(super) merge_bytes: usize,
}

impl FlushQueue {
    /// `merge_bytes` 0: only the window's end flushes.
    pub fn new(merge_bytes: usize) -> Rc<FlushQueue> {
        let merge_bytes = if merge_bytes == 0 { usize::MAX } else { merge_bytes };
        Rc::new(FlushQueue { waiting: RefCell::new(Vec::new()), filled: Notify::new(), merge_bytes })
    }

    /// A player has something waiting for the window's end.
    pub(super) fn schedule(&self, player: &Rc<Player>) {
        let mut waiting = self.waiting.borrow_mut();
        if waiting.is_empty() {
            self.filled.notify_one();
        }
        waiting.push(player.clone());
    }

    /// Waits until some player has something waiting.
    pub async fn filled(&self) {
        while self.is_empty() {
            self.filled.notified().await;
        }
    }

    /// The window ended: writes what every waiting player has queued (from here, through the
    /// player's [`DirectWrite`](super::player::DirectWrite), or by waking its writer) and
    /// empties the queue through `spare` (a vector kept by the caller, so the tick allocates
    /// nothing). A player whose writer the hub woke early (`merge_bytes`) has nothing, or
    /// less, queued by now, and is not woken for nothing.
    pub fn flush(&self, spare: &mut Vec<Rc<Player>>) {
        std::mem::swap(&mut *self.waiting.borrow_mut(), spare);
        for player in spare.drain(..) {
            player.window_ended();
        }
    }

    /// Players waiting for the window's end.
    pub fn len(&self) -> usize {
        self.waiting.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.borrow().is_empty()
    }

    /// Forgets every waiting player (the tick ended with its shard): the queue holds players
    /// and they hold the queue.
    pub fn clear(&self) {
        self.waiting.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::rc::Rc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use super::FlushQueue;
    use crate::hub::packet::test_video_frame;
    use crate::hub::{DirectWrite, Player};

    static DROPS: AtomicU64 = AtomicU64::new(0);

    /// A player merging over `queue`, its first write (due at once) already taken.
    fn merging_player(queue: &Rc<FlushQueue>, id: u64) -> Rc<Player> {
        let player = Rc::new(Player::new(id, 8, usize::MAX, 2));
        player.merge_writes(queue.clone());
        player.offer(&test_video_frame(true, 100), true, &DROPS);
        player.take(&mut Vec::new());
        player
    }

    #[test]
    fn a_window_ends_for_every_waiting_player_and_each_waits_once() {
        let queue = FlushQueue::new(usize::MAX);
        let [first, second, idle] = [merging_player(&queue, 1), merging_player(&queue, 2), merging_player(&queue, 3)];
        first.offer(&test_video_frame(false, 100), true, &DROPS);
        second.offer(&test_video_frame(false, 100), true, &DROPS);
        // A second packet does not queue its player twice.
        first.offer(&test_video_frame(false, 100), true, &DROPS);
        assert_eq!(queue.len(), 2);
        assert!(!first.is_due() && !second.is_due(), "packets wait for the window");

        let mut spare = Vec::new();
        queue.flush(&mut spare);
        assert!(first.is_due() && second.is_due(), "the window ended for both");
        assert!(!idle.is_due(), "nothing waited for the idle player");
        assert!(queue.is_empty() && spare.is_empty());

        // After its write a player's next packet queues it for the next window.
        let mut items = Vec::new();
        first.take(&mut items);
        assert_eq!(items.len(), 2, "one write takes both packets");
        first.offer(&test_video_frame(false, 100), true, &DROPS);
        assert_eq!(queue.len(), 1);
        assert!(!first.is_due());
    }

    #[test]
    fn a_players_first_keyframe_is_not_held_for_the_window() {
        let queue = FlushQueue::new(usize::MAX);
        // A player of a stream nobody publishes yet: its first write was its play replies.
        let player = Rc::new(Player::new(1, 8, usize::MAX, 2));
        player.merge_writes(queue.clone());
        player.poke();
        player.take(&mut Vec::new());
        // Before the keyframe, nothing a decoder can start on: merged as usual.
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        assert!(!player.is_due());
        player.offer(&test_video_frame(true, 100), true, &DROPS);
        assert!(player.is_due(), "the first keyframe goes out at once");
        let mut items = Vec::new();
        player.take(&mut items);
        assert_eq!(items.len(), 1, "the frame before the keyframe was left out");
        // Playing now: the next frames wait for the window again.
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        assert!(!player.is_due());
        queue.flush(&mut Vec::new());
        assert!(player.is_due());
    }

    /// Writes from the tick as a player's writer would, taking the whole queue; says the
    /// socket took all of it unless told otherwise.
    #[derive(Default)]
    struct RecordingWrite {
        writes: Cell<usize>,
        items: Cell<usize>,
        socket_full: Cell<bool>,
    }

    impl DirectWrite for RecordingWrite {
        fn write_queued(&self, player: &Player) -> bool {
            let mut items = Vec::new();
            player.take(&mut items);
            self.writes.set(self.writes.get() + 1);
            self.items.set(self.items.get() + items.len());
            !self.socket_full.get()
        }
    }

    /// A merging player (as [`merging_player`]) whose window's end the tick writes through a
    /// [`RecordingWrite`].
    fn directly_written_player(queue: &Rc<FlushQueue>, id: u64) -> (Rc<Player>, Rc<RecordingWrite>) {
        let player = merging_player(queue, id);
        let direct = Rc::new(RecordingWrite::default());
        player.write_directly(Some(direct.clone()));
        (player, direct)
    }

    #[test]
    fn the_windows_end_writes_from_the_tick_and_leaves_the_writer_asleep() {
        let queue = FlushQueue::new(usize::MAX);
        let (player, direct) = directly_written_player(&queue, 1);
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        queue.flush(&mut Vec::new());
        assert_eq!((direct.writes.get(), direct.items.get()), (1, 2), "one write of both packets");
        assert!(!player.is_due(), "nothing left for the writer task");
        assert_eq!(player.queued(), 0);

        // The socket takes part of the next one: the writer task finishes it.
        direct.socket_full.set(true);
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        queue.flush(&mut Vec::new());
        assert_eq!(direct.writes.get(), 2);
        assert!(player.is_due(), "the writer task is due for the rest");
    }

    #[test]
    fn the_tick_does_not_write_past_a_write_in_progress_or_a_due_writer() {
        let queue = FlushQueue::new(usize::MAX);
        let (player, direct) = directly_written_player(&queue, 1);
        // The writer task's own write is in progress (never done here).
        let mut write =
            Box::pin(player.write_within(Instant::now() + Duration::from_secs(30), std::future::pending::<()>()));
        let waker = std::task::Waker::noop();
        assert!(write.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_pending());
        player.offer(&test_video_frame(false, 100), true, &DROPS);
        queue.flush(&mut Vec::new());
        assert_eq!(direct.writes.get(), 0, "its bytes would go before the write in progress");
        assert!(player.is_due(), "the writer takes it after its write");
        drop(write);

        // A player its session poked (replies to send) is the writer task's too.
        let (poked, poked_direct) = directly_written_player(&queue, 2);
        poked.offer(&test_video_frame(false, 100), true, &DROPS);
        poked.poke();
        queue.flush(&mut Vec::new());
        assert_eq!(poked_direct.writes.get(), 0);
        assert_eq!(poked.queued(), 1, "the packet waits for the writer task");

        // A writer that stopped takes its direct write away: the tick wakes the task instead.
        let (stopped, stopped_direct) = directly_written_player(&queue, 3);
        stopped.write_directly(None);
        stopped.offer(&test_video_frame(false, 100), true, &DROPS);
        queue.flush(&mut Vec::new());
        assert_eq!(stopped_direct.writes.get(), 0);
        assert!(stopped.is_due());
    }

    #[test]
    fn a_player_that_wrote_early_is_not_woken_for_nothing() {
        let queue = FlushQueue::new(1000);
        let player = merging_player(&queue, 1);
        player.offer(&test_video_frame(false, 600), true, &DROPS);
        assert!(!player.is_due());
        player.offer(&test_video_frame(false, 600), true, &DROPS);
        assert!(player.is_due(), "1200 of 1000 bytes gathered: due before the window ends");
        player.take(&mut Vec::new());
        assert_eq!(queue.len(), 1, "still queued: the window's end takes it off");
        queue.flush(&mut Vec::new());
        assert!(!player.is_due(), "nothing queued since its write");
        assert!(queue.is_empty());
    }
}
