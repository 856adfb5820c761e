//! Which codec a stream uses ([`Codec`]) and what its configuration says about it
//! ([`CodecInfo`]: the content of a `codec_detected` event), from whichever record the codec
//! has.

use std::fmt;

use super::CodecError;
use super::aac::AacConfig;
use super::av1::Av1Config;
use super::avc::AvcDecoderConfig;
use super::hevc::HevcDecoderConfig;
use super::mpeg_audio::MpegAudioHeader;
use super::opus::OpusHead;
use super::vp9::Vp9Config;

/// Which codec a stream or packet uses, whatever container named it (an FLV codec id, an
/// E-RTMP or MP4 FourCC, an RTP encoding name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Aac,
    Mp3,
    Opus,
    Flac,
    Ac3,
    Eac3,
    PcmAlaw,
    PcmMulaw,
    /// Any other audio codec FLV names by number: the value is its `SoundFormat`.
    OtherAudio(u8),
    H264,
    Hevc,
    Av1,
    Vp9,
    Vp8,
    /// Any other video codec FLV names by number: the value is its `CodecID`.
    OtherVideo(u8),
    /// A FourCC no variant above stands for.
    OtherFourCc([u8; 4]),
    /// No codec is signalled: an E-RTMP video command frame carries no FourCC.
    Unknown,
    /// Script data (`onMetaData` and friends), not a codec but a kind of packet.
    ScriptData,
}

impl Codec {
    /// A short lowercase name for events and metrics, following ffmpeg's codec names.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Aac => "aac",
            Codec::Mp3 => "mp3",
            Codec::Opus => "opus",
            Codec::Flac => "flac",
            Codec::Ac3 => "ac3",
            Codec::Eac3 => "eac3",
            Codec::PcmAlaw => "pcm_alaw",
            Codec::PcmMulaw => "pcm_mulaw",
            Codec::OtherAudio(sound_format) => match sound_format {
                0 | 3 => "pcm",
                1 => "adpcm",
                4..=6 => "nellymoser",
                11 => "speex",
                _ => "unknown",
            },
            Codec::H264 => "h264",
            Codec::Hevc => "hevc",
            Codec::Av1 => "av1",
            Codec::Vp9 => "vp9",
            Codec::Vp8 => "vp8",
            Codec::OtherVideo(codec_id) => match codec_id {
                2 => "flv1",
                3 => "flashsv",
                4 => "vp6f",
                5 => "vp6a",
                6 => "flashsv2",
                _ => "unknown",
            },
            Codec::OtherFourCc(_) | Codec::Unknown => "unknown",
            Codec::ScriptData => "script_data",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a sequence header (or, for codecs without one, a frame) says about a stream: the
/// content of a `codec_detected` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecInfo {
    pub codec: Codec,
    /// Profile name as ffprobe shows it ("High", "Main 10", "LC", "HE-AAC"...).
    pub profile: Option<&'static str>,
    /// Level as the codec spec writes it ("3.1", "4", "1b").
    pub level: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u8>,
}

impl CodecInfo {
    /// Just the codec: what a packet without configuration says.
    pub fn codec_only(codec: Codec) -> Self {
        CodecInfo { codec, profile: None, level: None, width: None, height: None, sample_rate: None, channels: None }
    }

    /// Describes a video stream from its decoder configuration record (`avcC`, `hvcC`, `av1C`,
    /// `vpcC`). A record that is present but malformed is an error where the codec's record is
    /// parsed whole (H.264, HEVC); the others only name a profile and level when they can.
    pub fn from_video_config(codec: Codec, record: &[u8]) -> Result<Self, CodecError> {
        let mut info = CodecInfo::codec_only(codec);
        match codec {
            Codec::H264 => {
                let sps = *AvcDecoderConfig::parse(record)?.sps_info();
                info.describe_picture(sps.profile_name(), sps.level(), sps.width, sps.height);
            }
            Codec::Hevc => {
                let sps = *HevcDecoderConfig::parse(record)?.sps_info();
                info.describe_picture(sps.profile_name(), sps.level(), sps.width, sps.height);
            }
            Codec::Av1 => {
                if let Some(config) = Av1Config::parse(record) {
                    info.profile = Some(config.profile_name());
                    info.level = config.level();
                }
            }
            Codec::Vp9 => {
                if let Some(config) = Vp9Config::parse(record) {
                    info.profile = Some(config.profile_name());
                    info.level = Some(config.level());
                }
            }
            _ => {}
        }
        Ok(info)
    }

    /// What a decoded SPS says: every field of a video description.
    fn describe_picture(&mut self, profile: &'static str, level: String, width: u32, height: u32) {
        self.profile = Some(profile);
        self.level = Some(level);
        self.width = Some(width);
        self.height = Some(height);
    }

    /// Describes an audio stream from its decoder configuration (AAC `AudioSpecificConfig`,
    /// `OpusHead`). A malformed `AudioSpecificConfig` is an error; an unreadable `OpusHead`
    /// leaves just the codec.
    pub fn from_audio_config(codec: Codec, config: &[u8]) -> Result<Self, CodecError> {
        let mut info = CodecInfo::codec_only(codec);
        match codec {
            Codec::Aac => {
                let config = AacConfig::parse(config)?;
                info.profile = Some(config.profile_name());
                info.sample_rate = Some(config.sample_rate);
                info.channels = (config.channels != 0).then_some(config.channels);
            }
            Codec::Opus => {
                if let Some(head) = OpusHead::parse(config) {
                    info.sample_rate = Some(OpusHead::OUTPUT_SAMPLE_RATE);
                    info.channels = Some(head.channels);
                }
            }
            _ => {}
        }
        Ok(info)
    }

    /// Describes an audio stream from one frame, for codecs that have no configuration record:
    /// an MP3 frame header states its rate and channels, and G.711 is 8 kHz by definition.
    pub fn from_audio_frame(codec: Codec, frame: &[u8]) -> Self {
        let mut info = CodecInfo::codec_only(codec);
        match codec {
            Codec::Mp3 => {
                if let Some(header) = MpegAudioHeader::parse(frame) {
                    info.sample_rate = Some(header.sample_rate);
                    info.channels = Some(header.channels);
                }
            }
            Codec::PcmAlaw | Codec::PcmMulaw => info.sample_rate = Some(8_000),
            _ => {}
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::{AVC_720P_HIGH, FLV_AVC_HEADER_LEN, HVCC_1080P_MAIN10, hex};

    #[test]
    fn video_configs() {
        let avc = hex(AVC_720P_HIGH);
        let info = CodecInfo::from_video_config(Codec::H264, &avc[FLV_AVC_HEADER_LEN..]).expect("parses");
        assert_eq!((info.profile, info.level.as_deref()), (Some("High"), Some("3.1")));
        assert_eq!((info.width, info.height), (Some(1280), Some(720)));
        let info = CodecInfo::from_video_config(Codec::Hevc, &hex(HVCC_1080P_MAIN10)).expect("parses");
        assert_eq!((info.profile, info.level.as_deref()), (Some("Main 10"), Some("4")));
        assert!(matches!(CodecInfo::from_video_config(Codec::H264, &[1, 2, 3]), Err(CodecError::Malformed { .. })));
        // av1C with "no level limit" (31): a profile and no level.
        let info = CodecInfo::from_video_config(Codec::Av1, &[0x81, 0x3f]).expect("parses");
        assert_eq!((info.profile, info.level), (Some("High"), None));
        // Not a vpcC: just the codec.
        assert_eq!(CodecInfo::from_video_config(Codec::Vp9, &[0]), Ok(CodecInfo::codec_only(Codec::Vp9)));
    }

    #[test]
    fn audio_configs_and_frames() {
        let info = CodecInfo::from_audio_config(Codec::Aac, &[0x11, 0x90, 0x56, 0xe5, 0x00]).expect("parses");
        assert_eq!((info.profile, info.sample_rate, info.channels), (Some("LC"), Some(48_000), Some(2)));
        assert!(CodecInfo::from_audio_config(Codec::Aac, &[0x12]).is_err());
        let info = CodecInfo::from_audio_config(Codec::Opus, b"OpusHead\x01\x06").expect("parses");
        assert_eq!((info.sample_rate, info.channels), (Some(48_000), Some(6)));
        let info = CodecInfo::from_audio_frame(Codec::Mp3, &[0xff, 0xfb, 0x94, 0x64]);
        assert_eq!((info.sample_rate, info.channels), (Some(48_000), Some(2)));
        let info = CodecInfo::from_audio_frame(Codec::PcmMulaw, &[0xff]);
        assert_eq!((info.sample_rate, info.channels), (Some(8_000), None));
        assert_eq!(CodecInfo::from_audio_frame(Codec::Flac, &[0xff, 0xf8]), CodecInfo::codec_only(Codec::Flac));
    }
}
