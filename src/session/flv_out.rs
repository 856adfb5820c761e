//! FLV's side of a player's output (HTTP-FLV): each packet is an FLV tag whose body is the
//! packet's payload itself, so players share the payload and nothing is copied.
//!
//! The per-player part is 15 bytes: the PreviousTagSize of the tag before (0 before the
//! first tag, as the FLV file format wants after its header) and the 11-byte tag header with
//! the timestamp on the player's timeline. Carrying each PreviousTagSize with the next tag
//! keeps the body shared; the stream's driver sends the 9-byte FLV file header first, and
//! the last tag's PreviousTagSize when it ends cleanly ([`FlvFraming::trailer`]).

use bytes::{BufMut, Bytes, BytesMut};

use super::player_writer::Framing;
use super::timeline::{Timeline, sets_base};
use crate::hub::{Packet, PacketKind};
use crate::protocol::flv::{TAG_HEADER_LEN, TAG_TYPE_AUDIO, TAG_TYPE_SCRIPT_DATA, TAG_TYPE_VIDEO};

/// An FLV player's framing.
#[derive(Debug, Default)]
pub struct FlvFraming {
    timeline: Timeline,
    /// Size of the last tag sent, header included: the next tag's PreviousTagSize.
    previous_tag_size: u32,
}

impl FlvFraming {
    /// The PreviousTagSize that closes the last tag sent.
    pub fn trailer(&self) -> Bytes {
        Bytes::copy_from_slice(&self.previous_tag_size.to_be_bytes())
    }
}

fn tag_type(kind: PacketKind) -> u8 {
    match kind {
        PacketKind::Audio => TAG_TYPE_AUDIO,
        PacketKind::Video => TAG_TYPE_VIDEO,
        PacketKind::Data { .. } => TAG_TYPE_SCRIPT_DATA,
    }
}

impl Framing for FlvFraming {
    fn take_output(&mut self, _bufs: &mut Vec<Bytes>) {}

    fn append_packet(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, packet: &Packet) {
        let timestamp = self.timeline.map(packet.timestamp, sets_base(packet));
        // A tag's data size field has 24 bits; the hub never holds a larger message than
        // RTMP's own 24-bit length allows.
        let size = (packet.payload.len() as u32) & 0x00FF_FFFF;
        headers.reserve(4 + TAG_HEADER_LEN);
        headers.put_u32(self.previous_tag_size);
        headers.put_u8(tag_type(packet.kind));
        headers.put_uint(u64::from(size), 3);
        headers.put_uint(u64::from(timestamp & 0x00FF_FFFF), 3);
        headers.put_u8((timestamp >> 24) as u8);
        headers.put_uint(0, 3);
        bufs.push(headers.split().freeze());
        bufs.push(packet.payload.clone());
        self.previous_tag_size = TAG_HEADER_LEN as u32 + size;
    }

    fn unpublished(&mut self, _bufs: &mut Vec<Bytes>) {}

    fn published(&mut self, _bufs: &mut Vec<Bytes>) {
        self.timeline.restart();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: PacketKind, timestamp: u32, body: &'static [u8]) -> Packet {
        Packet::new(kind, timestamp, Bytes::from_static(body), 4096).expect("a valid tag body")
    }

    #[test]
    fn tags_share_the_payload_and_carry_the_previous_tag_size() {
        let mut framing = FlvFraming::default();
        let (mut bufs, mut headers) = (Vec::new(), BytesMut::new());
        let header = packet(PacketKind::Video, 5000, &[0x17, 0, 0, 0, 0, 1]);
        let key = packet(PacketKind::Video, 5000, &[0x17, 1, 0, 0, 0, 9, 9]);
        let audio = packet(PacketKind::Audio, 5040, &[0xAF, 1, 3]);
        for p in [&header, &key, &audio] {
            framing.append_packet(&mut bufs, &mut headers, p);
        }
        assert_eq!(bufs.len(), 6);
        // First tag: PreviousTagSize0 = 0, video, 6 bytes, timestamp 0 (its timeline starts at
        // the first frame), stream id 0.
        assert_eq!(&bufs[0][..], &[0, 0, 0, 0, 9, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bufs[1].as_ptr(), header.payload.as_ptr(), "the body is the shared payload");
        assert_eq!(&bufs[2][..], &[0, 0, 0, 17, 9, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bufs[4][..], &[0, 0, 0, 18, 8, 0, 0, 3, 0, 0, 40, 0, 0, 0, 0]);
        assert_eq!(&framing.trailer()[..], &[0, 0, 0, 14]);
    }

    #[test]
    fn timestamps_past_24_bits_use_the_extension_byte() {
        let mut framing = FlvFraming::default();
        let (mut bufs, mut headers) = (Vec::new(), BytesMut::new());
        framing.append_packet(&mut bufs, &mut headers, &packet(PacketKind::Audio, 0, &[0xAF, 1]));
        framing.append_packet(&mut bufs, &mut headers, &packet(PacketKind::Audio, 0x0123_4567, &[0xAF, 1]));
        assert_eq!(&bufs[2][8..12], &[0x23, 0x45, 0x67, 0x01]);
    }
}
