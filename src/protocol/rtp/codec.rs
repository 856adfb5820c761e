//! A track's codec as RTP and SDP describe it, and the FLV tag bodies that carry the same
//! media in the hub: built from the hub's sequence headers (to describe a stream to players)
//! and turned back into sequence headers (for a stream an RTSP client publishes).

use crate::protocol::codec::{AacConfig, AvcDecoderConfig, Codec, HevcDecoderConfig};
use crate::protocol::flv::{self, MediaKind, PacketType};

use super::RtpError;

/// FLV audio flags of AAC: SoundFormat 10, 44 kHz, 16-bit, stereo (fixed by the FLV spec; the
/// `AudioSpecificConfig` states the truth).
pub(crate) const FLV_AAC_FLAGS: u8 = 0xaf;
/// FLV video flags of an H.264 keyframe and inter frame (CodecID 7).
pub(crate) const FLV_AVC_KEY: u8 = 0x17;
pub(crate) const FLV_AVC_INTER: u8 = 0x27;
/// E-RTMP: the extended-header bit, packet types and the FourCC HEVC is sent under.
pub(crate) const FLV_EX_HEADER: u8 = 0x80;
pub(crate) const FLV_EX_SEQUENCE_START: u8 = 0;
/// Coded frames with a composition time (SI24 after the FourCC), for frames decoded before
/// they are presented.
pub(crate) const FLV_EX_CODED_FRAMES: u8 = 1;
/// Coded frames without a composition time (zero): frames presented when decoded.
pub(crate) const FLV_EX_CODED_FRAMES_X: u8 = 3;
pub(crate) const FOURCC_HEVC: &[u8; 4] = b"hvc1";

/// AAC as RFC 3640 `mpeg4-generic` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacTrack {
    /// The `AudioSpecificConfig` bytes (SDP's `config=`, the FLV sequence header's payload).
    pub config: Vec<u8>,
    /// The RTP clock: the sampling frequency the config's first rate field names (for
    /// implicitly signalled HE-AAC, the core rate, which is what encoders count samples in).
    pub clock_rate: u32,
    pub channels: u8,
    /// AU-header field widths in bits (`AAC-hbr`: 13, 3, 3).
    pub size_length: u8,
    pub index_length: u8,
    pub index_delta_length: u8,
}

impl AacTrack {
    /// The AAC-hbr layout for `config`.
    pub fn from_config(config: &[u8]) -> Result<Self, RtpError> {
        let parsed = AacConfig::parse(config)?;
        Ok(AacTrack {
            config: config.to_vec(),
            clock_rate: core_sample_rate(config).unwrap_or(parsed.sample_rate),
            channels: parsed.channels,
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
        })
    }
}

/// The rate of the `AudioSpecificConfig`'s first `samplingFrequencyIndex` (14496-3, 1.6.2.1),
/// which an escape (index 15) replaces by 24 explicit bits.
fn core_sample_rate(config: &[u8]) -> Option<u32> {
    const RATES: [u32; 13] =
        [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];
    let bits = u64::from_be_bytes([0, 0, 0, *config.first()?, *config.get(1)?, *config.get(2).unwrap_or(&0), 0, 0]);
    // Object type: 5 bits, or 31 then 6 more bits.
    let (object_type, mut at) = (((bits >> 35) & 0x1f) as u32, 5u32);
    if object_type == 31 {
        at += 6;
    }
    let index = ((bits >> (40 - at - 4)) & 0x0f) as usize;
    if index == 15 {
        let explicit = config.get(..6)?;
        let wide =
            u64::from_be_bytes([0, 0, explicit[0], explicit[1], explicit[2], explicit[3], explicit[4], explicit[5]]);
        return Some(((wide >> (48 - at - 4 - 24)) & 0xff_ffff) as u32);
    }
    RATES.get(index).copied()
}

/// A track's codec and the parameters RTP and SDP state for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtpCodec {
    /// RFC 6184. `config` is absent when SDP gave no `sprop-parameter-sets` (they come in band).
    H264 {
        config: Option<AvcDecoderConfig>,
    },
    /// RFC 7798, without DONL (`sprop-max-don-diff` 0, as every camera and encoder sends).
    H265 {
        config: Option<HevcDecoderConfig>,
    },
    /// RFC 3640 `AAC-hbr`.
    Aac(AacTrack),
    /// G.711 A-law and mu-law at 8 kHz (RFC 3551, static payload types 8 and 0).
    Pcma {
        channels: u8,
    },
    Pcmu {
        channels: u8,
    },
}

impl RtpCodec {
    pub fn kind(&self) -> MediaKind {
        match self {
            RtpCodec::H264 { .. } | RtpCodec::H265 { .. } => MediaKind::Video,
            _ => MediaKind::Audio,
        }
    }

    /// The RTP clock rate: 90 kHz for video, the sample rate for audio.
    pub fn clock_rate(&self) -> u32 {
        match self {
            RtpCodec::H264 { .. } | RtpCodec::H265 { .. } => 90_000,
            RtpCodec::Aac(aac) => aac.clock_rate,
            RtpCodec::Pcma { .. } | RtpCodec::Pcmu { .. } => 8_000,
        }
    }

    /// The codec a stream's sequence header (or, for G.711, which has none, any audio frame)
    /// describes; `None` for a body that is neither, or a codec RTSP does not carry here.
    pub fn from_flv(kind: MediaKind, body: &[u8]) -> Result<Option<Self>, RtpError> {
        match kind {
            MediaKind::Video => {
                let tag = flv::parse_video_tag(body)?;
                if tag.packet_type != PacketType::SequenceHeader {
                    return Ok(None);
                }
                Ok(match tag.codec {
                    Codec::H264 => Some(RtpCodec::H264 { config: Some(AvcDecoderConfig::parse(tag.payload)?) }),
                    Codec::Hevc => Some(RtpCodec::H265 { config: Some(HevcDecoderConfig::parse(tag.payload)?) }),
                    _ => None,
                })
            }
            MediaKind::Audio => {
                let tag = flv::parse_audio_tag(body)?;
                let channels = tag.legacy_format.map_or(1, |format| format.channels);
                Ok(match (tag.codec, tag.packet_type) {
                    (Codec::Aac, PacketType::SequenceHeader) => {
                        Some(RtpCodec::Aac(AacTrack::from_config(tag.payload)?))
                    }
                    (Codec::PcmAlaw, _) => Some(RtpCodec::Pcma { channels }),
                    (Codec::PcmMulaw, _) => Some(RtpCodec::Pcmu { channels }),
                    _ => None,
                })
            }
            MediaKind::Data => Ok(None),
        }
    }

    /// The FLV sequence header for this track, when its configuration is known: what the hub
    /// gets before the first frame of a stream published over RTSP.
    pub fn sequence_header(&self) -> Option<Vec<u8>> {
        match self {
            RtpCodec::H264 { config } => config.as_ref().map(avc_sequence_header),
            RtpCodec::H265 { config } => config.as_ref().map(hevc_sequence_header),
            RtpCodec::Aac(aac) => {
                let mut body = vec![FLV_AAC_FLAGS, 0];
                body.extend_from_slice(&aac.config);
                Some(body)
            }
            RtpCodec::Pcma { .. } | RtpCodec::Pcmu { .. } => None,
        }
    }
}

pub(crate) fn avc_sequence_header(config: &AvcDecoderConfig) -> Vec<u8> {
    let mut body = vec![FLV_AVC_KEY, 0, 0, 0, 0];
    config.write(&mut body);
    body
}

pub(crate) fn hevc_sequence_header(config: &HevcDecoderConfig) -> Vec<u8> {
    let mut body = vec![FLV_EX_HEADER | (1 << 4) | FLV_EX_SEQUENCE_START];
    body.extend_from_slice(FOURCC_HEVC);
    config.write(&mut body);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::*;

    #[test]
    fn codecs_from_sequence_headers_and_back() {
        let avc = hex(AVC_720P_HIGH);
        let codec = RtpCodec::from_flv(MediaKind::Video, &avc).unwrap().unwrap();
        assert_eq!(codec.clock_rate(), 90_000);
        let header = codec.sequence_header().unwrap();
        assert_eq!(RtpCodec::from_flv(MediaKind::Video, &header).unwrap(), Some(codec));

        let aac = hex(AAC_48K_STEREO_LC);
        let codec = RtpCodec::from_flv(MediaKind::Audio, &aac).unwrap().unwrap();
        let RtpCodec::Aac(track) = &codec else { panic!("{codec:?}") };
        assert_eq!((track.clock_rate, track.channels), (48_000, 2));
        assert_eq!(codec.sequence_header().unwrap(), aac);

        let hevc_header = hevc_sequence_header(&HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).unwrap());
        let codec = RtpCodec::from_flv(MediaKind::Video, &hevc_header).unwrap().unwrap();
        assert!(matches!(codec, RtpCodec::H265 { config: Some(_) }));

        // G.711 has no sequence header: any frame names it. A frame of H.264 names nothing.
        assert_eq!(RtpCodec::from_flv(MediaKind::Audio, &[0x72, 0xd5]).unwrap(), Some(RtpCodec::Pcma { channels: 1 }));
        assert_eq!(RtpCodec::from_flv(MediaKind::Video, &[0x27, 1, 0, 0, 0]).unwrap(), None);
    }

    #[test]
    fn core_rate_of_implicit_and_escaped_configs() {
        // LC 44.1 kHz stereo; HE-AAC explicit (object type 5) at core 24 kHz; an escaped rate.
        assert_eq!(core_sample_rate(&[0x12, 0x10]), Some(44_100));
        assert_eq!(core_sample_rate(&[0x2b, 0x11, 0x88]), Some(24_000));
        // Object type 2, index 15, then 24 bits of 0x00_1f40 (8000), channels 1.
        assert_eq!(core_sample_rate(&[0x17, 0x80, 0x0f, 0xa0, 0x08, 0x00]), Some(8_000));
        assert_eq!(core_sample_rate(&[0x12]), None);
    }
}
