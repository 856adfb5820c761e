//! A media packet as the hub stores it: parsed once, stored once, shared by every player.
//!
//! Its one canonical payload is the FLV tag body (what RTMP messages carry too). The forms a
//! protocol sends it in are built from that payload by the protocol's side (`session/`), on
//! first use, and cached here so every player of that protocol shares one copy.

use std::cell::OnceCell;

use bytes::Bytes;

use crate::protocol::flv::{self, MediaKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Audio,
    Video,
    /// A data message; `onMetaData` is cached, other data (cue points, text) is only relayed.
    Data {
        metadata: bool,
    },
}

/// A wire form of a packet that needs its own copy of the payload, shared by every player of
/// its protocol. A form that is a per-player header before the payload itself (FLV tags)
/// needs no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireForm {
    /// RTMP: the payload cut into chunks of the server's one outgoing chunk size, with the
    /// one-byte headers between them.
    RtmpChunks,
    /// RTSP: the packet's RTP packets, each behind its 16-bit length
    /// (`protocol::rtp::PacketList`), numbered by the stream's packetizer; a player adds its
    /// interleaved header or sends each to its UDP port.
    RtpPackets,
}

impl WireForm {
    const COUNT: usize = 2;

    fn slot(self) -> usize {
        match self {
            WireForm::RtmpChunks => 0,
            WireForm::RtpPackets => 1,
        }
    }
}

/// One audio, video or data message of a stream. Cloning copies `Bytes` handles, never the
/// media; a clone is what crosses to another shard, so it leaves behind the forms numbered by
/// the shard that built them (see the `Clone` impl).
#[derive(Debug)]
pub struct Packet {
    pub kind: PacketKind,
    /// The publisher's timestamp, in milliseconds.
    pub timestamp: u32,
    /// A video keyframe: where a player may start or resume.
    pub keyframe: bool,
    /// An AAC/AVC/HEVC sequence header: players need the latest one before any frame.
    pub sequence_header: bool,
    /// The FLV tag body: the one canonical form of the media.
    pub payload: Bytes,
    /// Wire forms built on first use, so a stream nobody watches (or a cached GOP) holds no
    /// second copy.
    wire_forms: [OnceCell<Bytes>; WireForm::COUNT],
    /// The size RTMP chunks are cut to, so the footprint counts that copy before it exists.
    chunk_size: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PacketError {
    #[error("malformed {kind} tag: {source}")]
    Malformed { kind: &'static str, source: flv::FlvError },
}

/// Packets are cloned only to cross shards (relay, snapshots). RTMP chunks are the same on
/// every shard and go along; RTP packets carry the sequence numbers and SSRC of the shard's own
/// packetizer for the stream, so they stay behind and the receiving shard numbers the packet
/// in its own sequence (a player must never see two numberings).
impl Clone for Packet {
    fn clone(&self) -> Self {
        let wire_forms = std::array::from_fn(|slot| {
            if slot == WireForm::RtpPackets.slot() { OnceCell::new() } else { self.wire_forms[slot].clone() }
        });
        Packet {
            kind: self.kind,
            timestamp: self.timestamp,
            keyframe: self.keyframe,
            sequence_header: self.sequence_header,
            payload: self.payload.clone(),
            wire_forms,
            chunk_size: self.chunk_size,
        }
    }
}

impl Packet {
    pub fn new(kind: PacketKind, timestamp: u32, payload: Bytes, chunk_size: u32) -> Result<Packet, PacketError> {
        let (keyframe, sequence_header) = match kind {
            PacketKind::Audio => {
                let info = flv::classify(MediaKind::Audio, &payload)
                    .map_err(|source| PacketError::Malformed { kind: "audio", source })?;
                (false, info.sequence_header)
            }
            PacketKind::Video => {
                let info = flv::classify(MediaKind::Video, &payload)
                    .map_err(|source| PacketError::Malformed { kind: "video", source })?;
                (info.keyframe && !info.sequence_header, info.sequence_header)
            }
            PacketKind::Data { .. } => (false, false),
        };
        Ok(Packet { kind, timestamp, keyframe, sequence_header, payload, wire_forms: Default::default(), chunk_size })
    }

    /// The packet's `form`, built by `build` on first use and shared from then on.
    pub fn wire_form(&self, form: WireForm, build: impl FnOnce(&Packet) -> Bytes) -> &Bytes {
        self.wire_forms[form.slot()].get_or_init(|| build(self))
    }

    /// The outgoing RTMP chunk size this packet's chunked form is cut to.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes this packet holds once a player has it: the payload and, when it spans several
    /// chunks, RTMP's chunked copy (counted whether or not built yet, as any player builds
    /// it): the payload plus a one-byte header per further chunk (the media chunk streams are
    /// below 64). `session::rtmp_out` checks this against the copy it builds.
    pub fn footprint(&self) -> usize {
        let len = self.payload.len();
        let chunk = self.chunk_size.max(1) as usize;
        if len <= chunk { len } else { 2 * len + (len - 1) / chunk }
    }

    pub fn is_metadata(&self) -> bool {
        self.kind == PacketKind::Data { metadata: true }
    }
}

/// A video frame of `size` bytes for the hub's tests: big enough to span chunks.
#[cfg(test)]
pub(crate) fn test_video_frame(keyframe: bool, size: usize) -> std::rc::Rc<Packet> {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.resize(size, 0);
    std::rc::Rc::new(Packet::new(PacketKind::Video, 0, Bytes::from(body), 4096).expect("a valid frame"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_for_another_shard_keeps_rtmp_chunks_and_leaves_rtp_numbering_behind() {
        let packet = test_video_frame(true, 10_000);
        packet.wire_form(WireForm::RtmpChunks, |_| Bytes::from_static(b"chunks"));
        packet.wire_form(WireForm::RtpPackets, |_| Bytes::from_static(b"numbered here"));
        let copy = (*packet).clone();
        assert_eq!(copy.payload.as_ptr(), packet.payload.as_ptr(), "the media is shared, not copied");
        assert_eq!(&copy.wire_form(WireForm::RtmpChunks, |_| Bytes::new())[..], b"chunks");
        assert_eq!(&copy.wire_form(WireForm::RtpPackets, |_| Bytes::from_static(b"renumbered"))[..], b"renumbered");
        assert_eq!((copy.kind, copy.keyframe, copy.chunk_size()), (packet.kind, packet.keyframe, packet.chunk_size()));
    }
}
