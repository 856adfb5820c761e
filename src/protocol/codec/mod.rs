//! Codec configuration records, independent of the container or protocol that carries them:
//! FLV and RTMP carry them in sequence headers, MP4 in sample entries, RTP in SDP parameters.
//!
//! References:
//! - ISO/IEC 14496-15: `AVCDecoderConfigurationRecord` (5.3.3.1) and
//!   `HEVCDecoderConfigurationRecord` (8.3.3.1).
//! - ITU-T H.264 / ISO/IEC 14496-10, 7.3.2.1.1: the sequence parameter set (width, height,
//!   cropping, profile); ITU-T H.265, 7.3.2.2: the HEVC one.
//! - ISO/IEC 14496-3, 1.6.2.1: `AudioSpecificConfig`.
//! - RFC 6184 (`sprop-parameter-sets`, `profile-level-id`), RFC 7798 (`sprop-vps/sps/pps`) and
//!   RFC 3640 (`config=`): what SDP carries of these records, hence the accessors.
//!
//! # Layout
//!
//! - [`info`]: which codec ([`Codec`]) and what its configuration says ([`CodecInfo`], the
//!   content of a `codec_detected` event), built from any of the records below.
//! - [`avc`]: the `AVCDecoderConfigurationRecord` and the H.264 SPS.
//! - [`hevc`]: the `HEVCDecoderConfigurationRecord` and the HEVC SPS.
//! - [`aac`]: the AAC `AudioSpecificConfig`.
//! - [`av1`], [`vp9`], [`opus`], [`mpeg_audio`]: the few bytes of `av1C`, `vpcC`, `OpusHead`
//!   and an MPEG audio frame header that name a profile, level, rate or channel count.
//! - [`poc`]: picture order counts from H.264 and H.265 slice headers: the output order of
//!   pictures that arrive in decode order.
//! - `crop`: the window H.264 and H.265 crop the coded picture by.
//! - [`bits`]: the MSB-first bit reader with exp-Golomb codes, and emulation-prevention
//!   removal, that the parameter sets and the `AudioSpecificConfig` are read with.
//!
//! The other way, [`AvcDecoderConfig`] and [`HevcDecoderConfig`] are built from bare parameter
//! sets (what an RTP source gives) and written to the bytes FLV, RTMP and MP4 carry.
//!
//! Parsing records runs once per stream and may allocate; slice headers ([`poc`]) are read
//! per frame, from their first few bytes only. Nothing here panics on any input: every
//! read is bounds-checked and arithmetic on input-derived numbers is checked.

pub mod aac;
pub mod av1;
pub mod avc;
pub mod bits;
mod crop;
pub mod hevc;
pub mod info;
pub mod mpeg_audio;
pub mod opus;
pub mod poc;
pub mod vp9;

pub use aac::AacConfig;
pub use avc::{AvcDecoderConfig, H264Sps};
pub use hevc::{HevcDecoderConfig, HevcSps};
pub use info::{Codec, CodecInfo};

/// A configuration record that is present but cannot be what it claims to be.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// `what` names the record ("H.264 SPS"), `reason` the first thing found wrong, or
    /// "truncated" for a record that ends early.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: &'static str },
}

pub(crate) fn malformed(what: &'static str, reason: &'static str) -> CodecError {
    CodecError::Malformed { what, reason }
}

/// A level as the H.264 and H.265 annexes write it: "3.1", or "4" for a whole level.
pub(crate) fn format_level(major: u32, minor: u32) -> String {
    if minor == 0 { major.to_string() } else { format!("{major}.{minor}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::*;

    /// Whether `bytes` parse; if they do, asserts the record writes back to bytes that parse to
    /// the same record.
    fn writes_back<T: PartialEq + std::fmt::Debug>(
        bytes: &[u8],
        parse: fn(&[u8]) -> Result<T, CodecError>,
        write: fn(&T, &mut Vec<u8>),
    ) -> bool {
        let Ok(record) = parse(bytes) else {
            return false;
        };
        let mut written = Vec::new();
        write(&record, &mut written);
        assert_eq!(parse(&written).as_ref(), Ok(&record), "{bytes:02x?}");
        true
    }

    /// Records that still parse after a few bit flips (most flips land in parameter-set bytes
    /// the SPS parser skips or in fields it tolerates) write back to bytes that parse to the
    /// same record.
    #[test]
    fn mutated_records_that_parse_write_back() {
        let avc: Vec<Vec<u8>> = [AVC_720P_HIGH, AVC_240P_BASELINE, AVC_576I_HIGH, AVC_426X240_444]
            .iter()
            .map(|body| hex(body)[FLV_AVC_HEADER_LEN..].to_vec())
            .collect();
        let hevc: Vec<Vec<u8>> = [HVCC_720P_MAIN, HVCC_1080P_MAIN10].iter().map(|record| hex(record)).collect();
        let mut state = 0x853c_49e6_748f_ea9b;
        let (mut avc_parsed, mut hevc_parsed) = (0, 0);
        for round in 0..20_000 {
            let mutate = |seed: &[u8], state: &mut u64| {
                let mut bytes = seed.to_vec();
                for _ in 0..1 + xorshift(state) % 3 {
                    let at = (xorshift(state) % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (xorshift(state) % 8);
                }
                bytes
            };
            let bytes = mutate(&avc[round % avc.len()], &mut state);
            avc_parsed += usize::from(writes_back(&bytes, AvcDecoderConfig::parse, AvcDecoderConfig::write));
            let bytes = mutate(&hevc[round % hevc.len()], &mut state);
            hevc_parsed += usize::from(writes_back(&bytes, HevcDecoderConfig::parse, HevcDecoderConfig::write));
        }
        // The property was checked on many records, not vacuously.
        assert!(avc_parsed > 1_000 && hevc_parsed > 1_000, "{avc_parsed} {hevc_parsed}");
    }
}
