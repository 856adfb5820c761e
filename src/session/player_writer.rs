//! A player's writer task, the same for every protocol: the only writer of its socket once
//! play starts. It sleeps until its player is due to write (the hub's `Player` decides: at
//! once without a merge window; with one, when the shard's flush tick ends the window or
//! `merge_write_bytes` have gathered, see `flush.rs`), frames what is queued, and writes it in
//! one `writev` with the connection's [`PendingOutput`] backpressure. The write's
//! `send_timeout` is a deadline the player keeps and the shard's sweep checks (`flush.rs`), not
//! a timer per write; the hub's queue bound (drop to the next keyframe, then kick) lives in
//! `hub::Player` too.
//!
//! What differs per protocol is its [`Framing`]: the small per-player buffer before each
//! packet's shared wire form (RTMP's chunk header, FLV's tag header, RTSP's interleaved
//! header), and the protocol's own output and stream notices. The writer is generic over it,
//! so framing a packet is a static call.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio_uring::net::TcpStream;
use tracing::debug;

use super::flush::ShardFlush;
use super::io::{PendingOutput, send_timed_out, write_all_vectored};
use crate::hub::{Packet, Player, PlayerItem, WriteCut};

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

impl<F: Framing + 'static> PlayerWriter<F> {
    /// Starts the writer task on this shard, its writes merged over the shard's window
    /// (`flush`) and their deadlines watched by the shard's sweep. The one way a driver starts
    /// a player's writer.
    pub fn spawn(self, flush: &ShardFlush) {
        flush.attach(&self.player);
        flush.watch(&self.player);
        tokio::task::spawn_local(self.run());
    }

    /// Writes until the player is kicked or leaves, or a write fails; then shuts the socket
    /// down so the session's pending read ends too.
    pub async fn run(mut self) {
        if let Err(error) = self.write_loop().await {
            debug!(conn_id = self.player.conn_id, %error, "player writer stopped");
            // The session reports it when its read ends (the shutdown below ends it).
            self.output.fail(error);
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    async fn write_loop(&mut self) -> io::Result<()> {
        let mut items = Vec::new();
        // The write's own headers, split off per packet. Reserved for the whole write at its
        // start: once the last write's buffers are dropped nobody else holds this memory, so
        // the reservation takes it back instead of allocating (two allocations per packet
        // per player before: the bytes and their shared count).
        let mut headers = BytesMut::new();
        // Handed to every writev and handed back by it: one allocation for the writer's life.
        let mut bufs: Vec<Bytes> = Vec::new();
        loop {
            self.player.ready().await;
            if self.player.is_kicked() {
                return Ok(());
            }
            items.clear();
            self.player.take(&mut items);
            let room = header_room(items.len());
            headers.reserve(room);
            bufs.clear();
            bufs.reserve(items.len() * 2 + 1);
            self.framing.take_output(&mut bufs);
            for item in items.drain(..) {
                match item {
                    PlayerItem::Packet(packet) => self.framing.append_packet(&mut bufs, &mut headers, &packet),
                    PlayerItem::Unpublished => self.framing.unpublished(&mut bufs),
                    PlayerItem::Published => self.framing.published(&mut bufs),
                }
            }
            self.framing.end_write(&mut bufs, &mut headers, 0);
            // The write may block on a player that stopped reading: give up on it when the
            // hub kicks the player or `send_timeout` passes, instead of waiting forever.
            let write = write_all_vectored(&self.socket, std::mem::take(&mut bufs), &self.output);
            let deadline = std::time::Instant::now() + self.send_timeout;
            let (written, emptied) = match self.player.write_within(deadline, write).await {
                Ok(result) => result?,
                Err(WriteCut::Kicked) => return Ok(()),
                Err(WriteCut::TimedOut) => return Err(send_timed_out(self.send_timeout)),
            };
            bufs = emptied;
            self.bytes_out.set(self.bytes_out.get() + written as u64);
            if room > KEEP_HEADER_ROOM {
                headers = BytesMut::new();
            }
        }
    }
}
