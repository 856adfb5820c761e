//! RTMP's side of a player's output: the packet's shared chunked form (cached in the
//! `Packet`), the per-player chunk header before it, and the [`Framing`] the player writer
//! uses. Public so that benches measure the very code the writer runs.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::player_writer::Framing;
use super::timeline::{Timeline, sets_base};
use crate::hub::{Packet, PacketKind, WireForm};
use crate::protocol::rtmp::chunk;
use crate::protocol::rtmp::message::{TYPE_AUDIO, TYPE_DATA_AMF0, TYPE_VIDEO};
use crate::protocol::rtmp::server::{CSID_AUDIO, CSID_DATA, CSID_VIDEO, ServerConnection};

/// The RTMP message type of a packet.
pub fn message_type(kind: PacketKind) -> u8 {
    match kind {
        PacketKind::Audio => TYPE_AUDIO,
        PacketKind::Video => TYPE_VIDEO,
        PacketKind::Data { .. } => TYPE_DATA_AMF0,
    }
}

/// The chunk stream a packet travels on towards players.
pub fn chunk_stream(kind: PacketKind) -> u32 {
    match kind {
        PacketKind::Audio => CSID_AUDIO,
        PacketKind::Video => CSID_VIDEO,
        PacketKind::Data { .. } => CSID_DATA,
    }
}

/// The packet's chunked form, built once (the first caller pays). A payload that fits one
/// chunk needs no copy: its chunked form is itself.
pub fn chunked(packet: &Packet) -> &Bytes {
    packet.wire_form(WireForm::RtmpChunks, |packet| {
        if packet.payload.len() <= packet.chunk_size() as usize {
            packet.payload.clone()
        } else {
            chunk::chunked_payload(chunk_stream(packet.kind), &packet.payload, packet.chunk_size())
        }
    })
}

/// Builds what RTMP players share of a packet (the hub's `prepare`).
pub fn prepare(packet: &Packet) {
    chunked(packet);
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
    let timestamp = timeline.map(packet.timestamp, sets_base(packet));
    let csid = chunk_stream(packet.kind);
    headers.reserve(16);
    chunk::put_message_header(
        headers,
        csid,
        timestamp,
        packet.payload.len() as u32,
        message_type(packet.kind),
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
        bufs.push(chunked(packet).clone());
    }
}

/// An RTMP player's framing: its chunk headers, and the connection's own replies and
/// stream notices (onStatus) in between.
pub struct RtmpFraming {
    conn: Rc<RefCell<ServerConnection>>,
    /// The stream name the player's notices carry (after any 3xx rename).
    name: String,
    stream_id: u32,
    chunk_size: u32,
    timeline: Timeline,
}

impl RtmpFraming {
    pub fn new(conn: Rc<RefCell<ServerConnection>>, name: String, stream_id: u32, chunk_size: u32) -> RtmpFraming {
        RtmpFraming { conn, name, stream_id, chunk_size, timeline: Timeline::default() }
    }
}

impl Framing for RtmpFraming {
    fn take_output(&mut self, bufs: &mut Vec<Bytes>) {
        let mut out = Vec::new();
        self.conn.borrow_mut().poll_transmit(&mut out);
        if !out.is_empty() {
            bufs.push(Bytes::from(out));
        }
    }

    fn append_packet(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, packet: &Packet) {
        append_packet(bufs, headers, &mut self.timeline, packet, self.stream_id, self.chunk_size);
    }

    fn unpublished(&mut self, bufs: &mut Vec<Bytes>) {
        self.conn.borrow_mut().notify_unpublish(&self.name);
        self.take_output(bufs);
    }

    fn published(&mut self, bufs: &mut Vec<Bytes>) {
        self.timeline.restart();
        self.conn.borrow_mut().notify_publish(&self.name);
        self.take_output(bufs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footprint_counts_the_chunked_copy_exactly() {
        for (kind, len) in [
            (PacketKind::Video, 10_000),
            (PacketKind::Video, 4096),
            (PacketKind::Video, 4097),
            (PacketKind::Audio, 9000),
        ] {
            let mut body = vec![if kind == PacketKind::Video { 0x17 } else { 0xAF }, 1];
            body.resize(len, 0);
            let packet = Packet::new(kind, 0, Bytes::from(body), 4096).expect("a valid frame");
            let copy = if len > 4096 { chunked(&packet).len() } else { 0 };
            assert_eq!(packet.footprint(), len + copy, "{kind:?} of {len} bytes");
        }
    }

    #[test]
    fn the_chunked_form_is_built_once_and_shared() {
        let mut body = vec![0x17, 1];
        body.resize(9000, 7);
        let packet = Packet::new(PacketKind::Video, 0, Bytes::from(body), 4096).expect("a valid frame");
        let first = chunked(&packet).clone();
        assert_eq!(first.as_ptr(), chunked(&packet).as_ptr());
        assert_eq!(first.len(), chunk::chunked_payload_len(CSID_VIDEO, 9000, 4096, false));
    }
}
