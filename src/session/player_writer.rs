//! A player's writer, the same for every protocol: the only writer of its socket once play
//! starts. It has two hands on one framing ([`Outgoing`]), and never both at once:
//! - the shard's flush tick: when a merge window ends, the tick frames each waiting player's
//!   queue and writes it with a non-blocking `sendmsg` there and then ([`DirectWrite`]), which
//!   in steady state is every media write: no task wakes, no io_uring operation, no allocation;
//! - the writer task: it sleeps until its player is due (the hub's `Player` decides: the first
//!   write, the session's replies, `merge_write_bytes` gathered, no merge window at all, or
//!   the rest of a write the socket did not take whole from the tick), frames what is queued
//!   after that rest, and writes it in one `writev` over io_uring with the connection's
//!   [`PendingOutput`] backpressure. Its `send_timeout` is a deadline the player keeps and the
//!   shard's sweep checks (`flush.rs`), not a timer per write.
//!
//! The tick does not write while the task's write is in progress or the task is due, so bytes
//! leave in the order they were framed. The hub's queue bound (drop to the next keyframe, then
//! kick) lives in `hub::Player`.
//!
//! What differs per protocol is its [`Framing`]: the small per-player buffer before each
//! packet's shared wire form (RTMP's chunk header, FLV's tag header, RTSP's interleaved
//! header), and the protocol's own output and stream notices. The writer is generic over it,
//! so framing a packet is a static call.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio_uring::net::TcpStream;
use tracing::debug;

use super::flush::ShardFlush;
use super::io::{PendingOutput, send_timed_out, write_all_vectored, write_now};
use crate::hub::{DirectWrite, Packet, Player, PlayerItem, WriteCut};

/// Room a write's own headers are given per packet (RTMP's largest chunk header, 16 bytes, is
/// the largest) and once per write (a WebSocket frame header and FLV's closing
/// PreviousTagSize), so a write's headers take one buffer.
const HEADER_ROOM_PER_PACKET: usize = 16;
const HEADER_ROOM_PER_WRITE: usize = 32;
/// Largest header buffer a writer keeps between writes: the first write (a whole cached GOP)
/// needs a few KiB once, and an idle player should not hold them.
const KEEP_HEADER_ROOM: usize = 1024;

/// The header room a write of `packets` packets reserves before framing them.
pub fn header_room(packets: usize) -> usize {
    packets * HEADER_ROOM_PER_PACKET + HEADER_ROOM_PER_WRITE
}

/// How one protocol puts a player's packets and notices on the wire.
pub trait Framing {
    /// Appends the protocol's own pending output (replies to the client's commands), which
    /// goes out before the media of the same write.
    fn take_output(&mut self, bufs: &mut Vec<Bytes>);
    /// Appends one packet: its per-player header, split off `headers` (no allocation per
    /// packet), then the packet's shared wire form.
    fn append_packet(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, packet: &Packet);
    /// The publisher left; the player stays attached.
    fn unpublished(&mut self, bufs: &mut Vec<Bytes>);
    /// A publisher (re)started: its timestamps start afresh.
    fn published(&mut self, bufs: &mut Vec<Bytes>);
    /// Ends a write whose buffers start at `start` (a WebSocket frame header goes before them,
    /// FLV's last PreviousTagSize after them). What it adds is split off `headers`, like the
    /// packets' headers: no allocation per write.
    fn end_write(&mut self, _bufs: &mut Vec<Bytes>, _headers: &mut BytesMut, _start: usize) {}
}

/// The writer task of a player.
pub struct PlayerWriter<F> {
    pub socket: Rc<TcpStream>,
    pub player: Rc<Player>,
    pub framing: F,
    pub bytes_out: Rc<Cell<u64>>,
    pub send_timeout: Duration,
    /// Shared with the session's reader, which stops reading while too much is unsent.
    pub output: Rc<PendingOutput>,
}

/// A player's framing and the buffers of its writes, shared by its writer task and the
/// shard's flush tick (which writes through it when a window ends: [`DirectWrite`]).
struct Outgoing<F> {
    framing: F,
    /// The writes' own headers, split off per packet. Reserved for the whole write at its
    /// start: once the last write's buffers are dropped nobody else holds this memory, so the
    /// reservation takes it back instead of allocating (two allocations per packet per player
    /// before: the bytes and their shared count).
    headers: BytesMut,
    /// Framed and not yet written: empty between writes, but for the rest of a write from the
    /// tick that the socket did not take whole, which the writer task sends before anything
    /// newer. Its allocation is kept for the writer's life.
    bufs: Vec<Bytes>,
    /// The header room the last framing reserved.
    room: usize,
}

impl<F: Framing> Outgoing<F> {
    /// Frames everything the player has queued (and the protocol's own output) after what is
    /// left of the last write.
    fn frame(&mut self, player: &Player) {
        let Outgoing { framing, headers, bufs, room } = self;
        let start = bufs.len();
        framing.take_output(bufs);
        player.take_each(|items| {
            *room = header_room(items.len());
            headers.reserve(*room);
            bufs.reserve(items.len() * 2 + 1);
            for item in items.drain(..) {
                match item {
                    PlayerItem::Packet(packet) => framing.append_packet(bufs, headers, &packet),
                    PlayerItem::Unpublished => framing.unpublished(bufs),
                    PlayerItem::Published => framing.published(bufs),
                }
            }
        });
        framing.end_write(bufs, headers, start);
    }

    /// A write is done: an unusually large header buffer (a cached GOP's) is let go.
    fn written(&mut self) {
        if self.room > KEEP_HEADER_ROOM {
            self.headers = BytesMut::new();
        }
    }
}

/// What a player's writer task and the flush tick share: the framing and buffers, and what the
/// tick needs of the socket (its descriptor, kept here so a write from the tick reads one
/// allocation, not the socket's two).
struct SharedWriter<F> {
    outgoing: RefCell<Outgoing<F>>,
    fd: RawFd,
    bytes_out: Rc<Cell<u64>>,
}

impl<F: Framing> DirectWrite for SharedWriter<F> {
    fn write_queued(&self, player: &Player) -> bool {
        let mut outgoing = self.outgoing.borrow_mut();
        outgoing.frame(player);
        // An error leaves the buffers for the writer task, whose write reports it.
        let written = write_now(self.fd, &mut outgoing.bufs).unwrap_or(0);
        self.bytes_out.set(self.bytes_out.get() + written as u64);
        if !outgoing.bufs.is_empty() {
            return false;
        }
        outgoing.written();
        true
    }
}

impl<F: Framing + 'static> PlayerWriter<F> {
    /// Starts the writer task on this shard, its writes merged over the shard's window
    /// (`flush`, which writes a window's end itself) and their deadlines watched by the
    /// shard's sweep. The one way a driver starts a player's writer.
    pub fn spawn(self, flush: &ShardFlush) {
        let merging = flush.attach(&self.player);
        flush.watch(&self.player);
        let task = self.into_task();
        if merging {
            task.player.write_directly(Some(task.shared.clone()));
        }
        tokio::task::spawn_local(task.run());
    }

    /// Runs the writer here, without the shard's window or sweep (tests).
    #[cfg(test)]
    pub async fn run(self) {
        self.into_task().run().await
    }

    fn into_task(self) -> WriterTask<F> {
        let PlayerWriter { socket, player, framing, bytes_out, send_timeout, output } = self;
        let outgoing = Outgoing { framing, headers: BytesMut::new(), bufs: Vec::new(), room: 0 };
        let shared = Rc::new(SharedWriter { outgoing: RefCell::new(outgoing), fd: socket.as_raw_fd(), bytes_out });
        WriterTask { socket, player, shared, send_timeout, output }
    }
}

/// The writer task itself: every write the flush tick does not do.
struct WriterTask<F> {
    socket: Rc<TcpStream>,
    player: Rc<Player>,
    shared: Rc<SharedWriter<F>>,
    send_timeout: Duration,
    output: Rc<PendingOutput>,
}

impl<F: Framing> WriterTask<F> {
    /// Writes until the player is kicked or leaves, or a write fails; then shuts the socket
    /// down so the session's pending read ends too.
    async fn run(self) {
        if let Err(error) = self.write_loop().await {
            debug!(conn_id = self.player.conn_id, %error, "player writer stopped");
            // The session reports it when its read ends (the shutdown below ends it).
            self.output.fail(error);
        }
        // The tick writes to this socket no more (and lets go of the framing).
        self.player.write_directly(None);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    async fn write_loop(&self) -> io::Result<()> {
        loop {
            self.player.ready().await;
            if self.player.is_kicked() {
                return Ok(());
            }
            let bufs = {
                let mut outgoing = self.shared.outgoing.borrow_mut();
                outgoing.frame(&self.player);
                std::mem::take(&mut outgoing.bufs)
            };
            // The write may block on a player that stopped reading: give up on it when the
            // hub kicks the player or `send_timeout` passes, instead of waiting forever.
            let write = write_all_vectored(&self.socket, bufs, &self.output);
            let deadline = std::time::Instant::now() + self.send_timeout;
            let (written, emptied) = match self.player.write_within(deadline, write).await {
                Ok(result) => result?,
                Err(WriteCut::Kicked) => return Ok(()),
                Err(WriteCut::TimedOut) => return Err(send_timed_out(self.send_timeout)),
            };
            let bytes_out = &self.shared.bytes_out;
            bytes_out.set(bytes_out.get() + written as u64);
            let mut outgoing = self.shared.outgoing.borrow_mut();
            outgoing.bufs = emptied;
            outgoing.written();
        }
    }
}
