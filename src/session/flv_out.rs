//! FLV's side of a player's output (HTTP-FLV): each packet is an FLV tag whose body is the
//! packet's payload itself, so players share the payload and nothing is copied.
//!
//! The per-player part is 15 bytes: the PreviousTagSize of the tag before (0 before the
//! first tag, as the FLV file format wants after its header) and the 11-byte tag header with
//! the timestamp on the player's timeline. Carrying each PreviousTagSize with the next tag
//! keeps the body shared; the stream's driver sends the 9-byte FLV file header first.
//!
//! Every write ends with its last tag's PreviousTagSize ([`FlvFraming::take_trailer`]), so the
//! next write's first tag goes without one: flv.js and mpegts.js (and ffmpeg's reader) take a
//! tag only once its PreviousTagSize is in, and a size left for the next write would hold each
//! write's last frame back until the next one (a whole second on a stream of one frame a second).

use bytes::{BufMut, Bytes, BytesMut};

use super::player_writer::Framing;
use super::timeline::{Timeline, sets_base};
use crate::hub::{Packet, PacketKind};
use crate::protocol::flv::{TAG_HEADER_LEN, TAG_TYPE_AUDIO, TAG_TYPE_SCRIPT_DATA, TAG_TYPE_VIDEO};

/// An FLV player's framing.
#[derive(Debug)]
pub struct FlvFraming {
    timeline: Timeline,
    /// The PreviousTagSize not sent yet: PreviousTagSize0 (0) before the first tag, then the
    /// last tag's size (header included) until its write ends; `None` once it is sent.
    unsent_size: Option<u32>,
}

impl Default for FlvFraming {
    fn default() -> FlvFraming {
        FlvFraming { timeline: Timeline::default(), unsent_size: Some(0) }
    }
}

impl FlvFraming {
    /// The PreviousTagSize that closes the last tag sent, unless it went out already (or no
    /// tag did).
    pub fn take_trailer(&mut self) -> Option<Bytes> {
        self.take_unsent_size().map(|size| Bytes::copy_from_slice(&size.to_be_bytes()))
    }

    fn take_unsent_size(&mut self) -> Option<u32> {
        match self.unsent_size {
            // A tag is at least its 11-byte header: 0 is PreviousTagSize0, before any tag.
            Some(size) if size > 0 => {
                self.unsent_size = None;
                Some(size)
            }
            _ => None,
        }
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
        if let Some(previous) = self.unsent_size {
            headers.put_u32(previous);
        }
        headers.put_u8(tag_type(packet.kind));
        headers.put_uint(u64::from(size), 3);
        headers.put_uint(u64::from(timestamp & 0x00FF_FFFF), 3);
        headers.put_u8((timestamp >> 24) as u8);
        headers.put_uint(0, 3);
        bufs.push(headers.split().freeze());
        bufs.push(packet.payload.clone());
        self.unsent_size = Some(TAG_HEADER_LEN as u32 + size);
    }

    fn unpublished(&mut self, _bufs: &mut Vec<Bytes>) {}

    fn published(&mut self, _bufs: &mut Vec<Bytes>) {
        self.timeline.restart();
    }

    fn end_write(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, _start: usize) {
        if let Some(size) = self.take_unsent_size() {
            headers.put_u32(size);
            bufs.push(headers.split().freeze());
        }
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
        assert_eq!(framing.take_trailer().as_deref(), Some(&[0, 0, 0, 14][..]));
        assert_eq!(framing.take_trailer(), None, "sent once");
    }

    #[test]
    fn a_write_ends_with_its_last_tag_size_so_players_can_take_that_tag() {
        let mut framing = FlvFraming::default();
        let (mut bufs, mut headers) = (Vec::new(), BytesMut::new());
        framing.end_write(&mut bufs, &mut headers, 0);
        assert!(bufs.is_empty(), "no tag yet: nothing to close");
        let audio = packet(PacketKind::Audio, 0, &[0xAF, 1, 3]);
        framing.append_packet(&mut bufs, &mut headers, &audio);
        framing.end_write(&mut bufs, &mut headers, 0);
        let first = bufs.concat();
        // PreviousTagSize0, the tag, and its own size: a reader that wants the size after
        // each tag (flv.js, mpegts.js, ringcast's own FlvReader) has the whole tag now.
        assert_eq!(first.len(), 4 + 11 + 3 + 4);
        assert_eq!(&first[first.len() - 4..], &[0, 0, 0, 14]);
        let mut reader = crate::protocol::flv::FlvReader::new();
        let mut stream = b"FLV\x01\x04\x00\x00\x00\x09".to_vec();
        stream.extend_from_slice(&first);
        let mut rest = &stream[..];
        let tag = reader.read_tag(&mut rest).expect("a valid tag").expect("the tag is whole");
        assert_eq!((tag.tag_type, tag.body), (8, &[0xAF, 1, 3][..]));
        bufs.clear();
        framing.append_packet(&mut bufs, &mut headers, &audio);
        framing.end_write(&mut bufs, &mut headers, 0);
        assert_eq!(bufs.concat(), [&[8, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0xAF, 1, 3][..], &[0, 0, 0, 14]].concat());
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
