//! What a player's writer sends for each packet: a chunk header of its own (timestamps on the
//! player's timeline) followed by the packet's shared chunked payload. Public so that benches
//! measure the very code the writer runs.

use bytes::{Bytes, BytesMut};

use crate::hub::{Packet, PacketKind};
use crate::protocol::rtmp::chunk;

/// Maps a publisher's timestamps to the player's own timeline: it starts at zero and keeps
/// going forward when a publisher restarts from zero.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The publisher timestamp that maps to `offset`; set by the first audio/video frame.
    base: Option<u32>,
    offset: u32,
    last: u32,
}

impl Timeline {
    pub fn map(&mut self, timestamp: u32, sets_base: bool) -> u32 {
        let out = match self.base {
            Some(base) => self.offset.wrapping_add(timestamp.saturating_sub(base)),
            None if sets_base => {
                self.base = Some(timestamp);
                self.offset
            }
            None => self.offset,
        };
        self.last = self.last.max(out);
        out
    }

    /// A new publisher: continue just after the last timestamp sent. A player that was sent
    /// nothing yet starts at zero: players read a first metadata tag at a non-zero time as an
    /// extra data stream.
    pub fn restart(&mut self) {
        if self.base.is_some() {
            self.offset = self.last.saturating_add(1);
        }
        self.base = None;
    }
}

/// Appends one packet to a player's pending writev: its own 12-byte (or 16) chunk header,
/// split off `headers` without allocating per packet, then the shared chunked payload.
pub fn append_packet(
    bufs: &mut Vec<Bytes>,
    headers: &mut BytesMut,
    timeline: &mut Timeline,
    packet: &Packet,
    stream_id: u32,
    chunk_size: u32,
) {
    let sets_base = matches!(packet.kind, PacketKind::Audio | PacketKind::Video) && !packet.sequence_header;
    let timestamp = timeline.map(packet.timestamp, sets_base);
    let csid = packet.kind.csid();
    headers.reserve(16);
    chunk::put_message_header(
        headers,
        csid,
        timestamp,
        packet.payload.len() as u32,
        packet.kind.rtmp_type(),
        stream_id,
    );
    bufs.push(headers.split().freeze());
    if timestamp >= 0x00FF_FFFF && packet.payload.len() > chunk_size as usize {
        // Continuation headers must repeat an extended timestamp, so this rare case (a player
        // past 4.6 hours) gets its own copy.
        let mut body = BytesMut::new();
        chunk::put_chunked_payload(&mut body, csid, &packet.payload, chunk_size, Some(timestamp));
        bufs.push(body.freeze());
    } else {
        bufs.push(packet.chunked().clone());
    }
}
