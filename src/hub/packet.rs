//! A media packet as the hub stores it: parsed once, chunked once, shared by every player.

use std::cell::OnceCell;

use bytes::Bytes;

use crate::protocol::flv::{self, MediaKind};
use crate::protocol::rtmp::chunk;
use crate::protocol::rtmp::message::{TYPE_AUDIO, TYPE_DATA_AMF0, TYPE_VIDEO};
use crate::protocol::rtmp::server::{CSID_AUDIO, CSID_DATA, CSID_VIDEO};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Audio,
    Video,
    /// A data message; `onMetaData` is cached, other data (cue points, text) is only relayed.
    Data {
        metadata: bool,
    },
}

impl PacketKind {
    pub fn rtmp_type(self) -> u8 {
        match self {
            PacketKind::Audio => TYPE_AUDIO,
            PacketKind::Video => TYPE_VIDEO,
            PacketKind::Data { .. } => TYPE_DATA_AMF0,
        }
    }

    /// The chunk stream the packet travels on towards players.
    pub fn csid(self) -> u32 {
        match self {
            PacketKind::Audio => CSID_AUDIO,
            PacketKind::Video => CSID_VIDEO,
            PacketKind::Data { .. } => CSID_DATA,
        }
    }
}

/// One audio, video or data message of a stream. Cloning copies two `Bytes` handles, never
/// the media.
#[derive(Debug, Clone)]
pub struct Packet {
    pub kind: PacketKind,
    /// The publisher's timestamp, in milliseconds.
    pub timestamp: u32,
    /// A video keyframe: where a player may start or resume.
    pub keyframe: bool,
    /// An AAC/AVC/HEVC sequence header: players need the latest one before any frame.
    pub sequence_header: bool,
    pub payload: Bytes,
    /// `payload` cut into chunks of the server's outgoing chunk size, with format 3 headers
    /// between them: what every RTMP player is sent after its own message header. Built on
    /// first use, so a stream nobody watches (or a cached GOP) holds no second copy.
    chunked: OnceCell<Bytes>,
    chunk_size: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PacketError {
    #[error("malformed {kind} tag: {source}")]
    Malformed { kind: &'static str, source: flv::FlvError },
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
        Ok(Packet { kind, timestamp, keyframe, sequence_header, payload, chunked: OnceCell::new(), chunk_size })
    }

    /// The chunked form, built once (the first caller pays). A payload that fits one chunk
    /// needs no copy: its chunked form is itself.
    pub fn chunked(&self) -> &Bytes {
        self.chunked.get_or_init(|| {
            if self.payload.len() <= self.chunk_size as usize {
                self.payload.clone()
            } else {
                chunk::chunked_payload(self.kind.csid(), &self.payload, self.chunk_size)
            }
        })
    }

    /// Bytes this packet holds once a player has it: the payload and, when it spans several
    /// chunks, its chunked copy (counted whether or not built yet, as any player builds it).
    pub fn footprint(&self) -> usize {
        let len = self.payload.len();
        if len <= self.chunk_size as usize {
            len
        } else {
            len + chunk::chunked_payload_len(self.kind.csid(), len, self.chunk_size, false)
        }
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
