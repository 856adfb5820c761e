//! FLV: the tag bodies RTMP and FLV files carry ([`tag`]) and the file framing around them
//! ([`file`]). The codec configuration records inside sequence headers are
//! [`crate::protocol::codec`]'s.
//!
//! What callers use is re-exported here, so `flv::classify`, `flv::FlvReader` and the rest read
//! the same wherever they are defined.

pub mod file;
pub mod tag;

pub use crate::protocol::codec::{Codec, CodecInfo};
pub use file::{
    FILE_HEADER_LEN, FlvFileHeader, FlvReader, FlvTag, MAX_TAG_BODY_LEN, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
    tag_framing, write_file_header, write_tag,
};
pub use tag::{
    AudioTag, LegacyAudioFormat, MediaKind, PacketInfo, PacketType, TAG_TYPE_AUDIO, TAG_TYPE_SCRIPT_DATA,
    TAG_TYPE_VIDEO, VideoFrameType, VideoTag, classify, parse_audio_tag, parse_codec_info, parse_video_tag,
};

use crate::protocol::codec::CodecError;

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// More bytes are needed; not a failure of the data seen so far.
    #[error("incomplete FLV data")]
    Incomplete,
    #[error("media packet too short for its header")]
    TooShort,
    #[error("not an FLV file (signature is not \"FLV\")")]
    BadSignature,
    #[error("invalid FLV file header: {0}")]
    BadHeader(&'static str),
    #[error("tag body of {0} bytes exceeds the 24-bit FLV size field")]
    BodyTooLarge(usize),
    /// A sequence header whose codec configuration record is malformed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::{AacConfig, H264Sps, HevcSps};
    use crate::protocol::fixtures::{AVC_426X240_444, AVC_720P_HIGH, HVCC_1080P_MAIN10, hex, xorshift};

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1d;
        let seeds: Vec<Vec<u8>> = [AVC_720P_HIGH, AVC_426X240_444]
            .iter()
            .map(|h| hex(h))
            .chain([
                {
                    let mut body = b"\x90hvc1".to_vec();
                    body.extend(hex(HVCC_1080P_MAIN10));
                    body
                },
                vec![0xaf, 0x00, 0x13, 0x10, 0x56, 0xe5, 0x98],
            ])
            .collect();
        for round in 0..20_000 {
            // Half pure noise, half mutated real headers so the deep parsers get exercised.
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = (xorshift(&mut state) % 48) as usize;
                (0..len).map(|_| xorshift(&mut state) as u8).collect()
            } else {
                let seed = &seeds[round % seeds.len()];
                let mut bytes = seed.clone();
                for _ in 0..1 + xorshift(&mut state) % 4 {
                    let at = (xorshift(&mut state) % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (xorshift(&mut state) % 8);
                }
                bytes
            };
            for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
                let _ = classify(kind, &bytes);
                let _ = parse_codec_info(kind, &bytes);
            }
            let _ = AacConfig::parse(&bytes);
            let _ = H264Sps::parse(&bytes);
            let _ = HevcSps::parse(&bytes);
            let mut reader = FlvReader::new();
            let mut buf = &bytes[..];
            while let Ok(Some(_)) = reader.read_tag(&mut buf) {}
            let mut flv = Vec::new();
            write_file_header(true, true, &mut flv);
            flv.extend_from_slice(&bytes);
            let mut reader = FlvReader::new();
            let mut buf = &flv[..];
            while let Ok(Some(_)) = reader.read_tag(&mut buf) {}
        }
    }
}
