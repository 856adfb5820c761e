//! FLV tag bodies, as carried in RTMP audio (type 8), video (type 9) and data (type 18)
//! messages and in FLV files: the audio/video tag headers, sequence header and keyframe
//! detection, and the E-RTMP extended headers.
//!
//! References:
//! - Adobe Flash Video File Format Specification v10.1, annex E: the `AUDIODATA`/`VIDEODATA`
//!   headers, `AACPacketType`, `AVCPacketType` and `CompositionTime`.
//! - Veovera "Enhanced RTMP" v2 (E-RTMP): `IsExHeader` video (bit 0x80 of the first byte) and
//!   audio (`SoundFormat` 9), a packet type in the low nibble, a FourCC (`avc1`, `hvc1`, `av01`,
//!   `vp09`, `mp4a`, `Opus`...), `ModEx` prefixes and multitrack framing.
//!
//! Three levels of cost, for three moments:
//! - [`classify`] runs on every media packet: a few header bytes, no allocation.
//! - [`parse_video_tag`] / [`parse_audio_tag`] split a body into header fields and codec payload
//!   without allocating, for code that repackages the payload (RTP, HTTP-FLV).
//! - [`parse_codec_info`] runs once per sequence header and may allocate: it hands the codec
//!   configuration (SPS, `AudioSpecificConfig`...) to [`crate::protocol::codec`] for a
//!   [`CodecInfo`].
//!
//! Nothing here panics on any input: every read is bounds-checked.

use super::FlvError;
use crate::protocol::codec::{Codec, CodecInfo};
use crate::protocol::cursor::Cursor;

/// FLV tag type of an audio tag (and RTMP message type of audio).
pub const TAG_TYPE_AUDIO: u8 = 8;
/// FLV tag type of a video tag (and RTMP message type of video).
pub const TAG_TYPE_VIDEO: u8 = 9;
/// FLV tag type of script data such as `onMetaData` (and RTMP message type of AMF0 data).
pub const TAG_TYPE_SCRIPT_DATA: u8 = 18;

/// Which RTMP message (or FLV tag) type a body came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    Data,
}

impl MediaKind {
    /// The FLV tag type (equal to the RTMP message type for AMF0 data).
    pub fn tag_type(self) -> u8 {
        match self {
            MediaKind::Audio => TAG_TYPE_AUDIO,
            MediaKind::Video => TAG_TYPE_VIDEO,
            MediaKind::Data => TAG_TYPE_SCRIPT_DATA,
        }
    }

    pub fn from_tag_type(tag_type: u8) -> Option<Self> {
        match tag_type {
            TAG_TYPE_AUDIO => Some(MediaKind::Audio),
            TAG_TYPE_VIDEO => Some(MediaKind::Video),
            TAG_TYPE_SCRIPT_DATA => Some(MediaKind::Data),
            _ => None,
        }
    }
}

const SOUND_FORMAT_AAC: u8 = 10;
/// `SoundFormat` 9 was reserved in FLV 10.1; E-RTMP turned it into "an extended header follows".
const SOUND_FORMAT_EX_HEADER: u8 = 9;
const CODEC_ID_AVC: u8 = 7;
/// HEVC under a legacy codec id, as Chinese CDNs and some encoders sent it before E-RTMP.
const CODEC_ID_HEVC_LEGACY: u8 = 12;
const VIDEO_EX_HEADER_BIT: u8 = 0x80;

// E-RTMP packet types (shared numbering for audio and video where they overlap).
const EX_SEQUENCE_START: u8 = 0;
const EX_CODED_FRAMES: u8 = 1;
const EX_SEQUENCE_END: u8 = 2;
const EX_VIDEO_CODED_FRAMES_X: u8 = 3;
const EX_VIDEO_METADATA: u8 = 4;
const EX_VIDEO_MPEG2TS_SEQUENCE_START: u8 = 5;
const EX_VIDEO_MULTITRACK: u8 = 6;
const EX_AUDIO_MULTICHANNEL_CONFIG: u8 = 4;
const EX_AUDIO_MULTITRACK: u8 = 5;
const EX_MOD_EX: u8 = 7;
/// `AvMultitrackType` OneTrack: one track, so no per-track size field.
const MULTITRACK_ONE_TRACK: u8 = 0;

/// The codec a legacy `SoundFormat` names.
fn codec_of_sound_format(sound_format: u8) -> Codec {
    match sound_format {
        2 | 14 => Codec::Mp3,
        7 => Codec::PcmAlaw,
        8 => Codec::PcmMulaw,
        SOUND_FORMAT_AAC => Codec::Aac,
        other => Codec::OtherAudio(other),
    }
}

/// The codec a legacy video `CodecID` names.
fn codec_of_video_codec_id(codec_id: u8) -> Codec {
    match codec_id {
        CODEC_ID_AVC => Codec::H264,
        CODEC_ID_HEVC_LEGACY => Codec::Hevc,
        other => Codec::OtherVideo(other),
    }
}

/// The codec an E-RTMP FourCC names (the same FourCCs as MP4 sample entries).
fn codec_of_fourcc(fourcc: [u8; 4]) -> Codec {
    match &fourcc {
        b"avc1" => Codec::H264,
        b"hvc1" => Codec::Hevc,
        b"av01" => Codec::Av1,
        b"vp09" => Codec::Vp9,
        b"vp08" => Codec::Vp8,
        b"mp4a" => Codec::Aac,
        b".mp3" => Codec::Mp3,
        b"Opus" => Codec::Opus,
        b"fLaC" => Codec::Flac,
        b"ac-3" => Codec::Ac3,
        b"ec-3" => Codec::Eac3,
        _ => Codec::OtherFourCc(fourcc),
    }
}

/// What the rest of a body holds, unified over legacy `AACPacketType`/`AVCPacketType` and E-RTMP
/// packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Decoder configuration (AAC `AudioSpecificConfig`, `avcC`, `hvcC`, `av1C`, `OpusHead`...):
    /// what a late joiner needs before any frame.
    SequenceHeader,
    /// Coded audio or video: a frame (or frames) a decoder consumes.
    CodedFrames,
    /// End of sequence.
    SequenceEnd,
    /// E-RTMP video metadata (AMF-encoded, e.g. HDR colour info).
    Metadata,
    /// E-RTMP audio multichannel configuration (channel order).
    MultichannelConfig,
    /// A video info/command frame (`FrameType` 5): no picture.
    Command,
    /// A packet type this module does not know; the value is the raw field.
    Unknown(u8),
}

/// The legacy FLV video `FrameType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFrameType {
    Key,
    Inter,
    DisposableInter,
    /// A keyframe a server generated for seeking; decodable like a keyframe.
    GeneratedKey,
    Command,
    Reserved(u8),
}

impl VideoFrameType {
    fn from_bits(bits: u8) -> Self {
        match bits {
            1 => VideoFrameType::Key,
            2 => VideoFrameType::Inter,
            3 => VideoFrameType::DisposableInter,
            4 => VideoFrameType::GeneratedKey,
            5 => VideoFrameType::Command,
            other => VideoFrameType::Reserved(other),
        }
    }

    fn is_key(self) -> bool {
        matches!(self, VideoFrameType::Key | VideoFrameType::GeneratedKey)
    }
}

/// The header of a video tag body and the codec payload after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag<'a> {
    pub codec: Codec,
    pub frame_type: VideoFrameType,
    pub packet_type: PacketType,
    /// Presentation minus decoding time; 0 where the format has no such field.
    pub composition_time_ms: i32,
    /// The body used the E-RTMP extended header.
    pub enhanced: bool,
    /// What follows the header: the configuration record, length-prefixed NAL units, OBUs...
    /// For an E-RTMP multitrack body, the first track's payload only.
    pub payload: &'a [u8],
}

/// The legacy audio flags. For AAC the spec fixes them at 44 kHz stereo whatever the real
/// stream is; the `AudioSpecificConfig` is the truth there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyAudioFormat {
    pub sample_rate: u32,
    pub bits_per_sample: u8,
    pub channels: u8,
}

/// The header of an audio tag body and the codec payload after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTag<'a> {
    pub codec: Codec,
    pub packet_type: PacketType,
    /// The legacy rate/size/type flags; `None` for an E-RTMP body, which has none.
    pub legacy_format: Option<LegacyAudioFormat>,
    /// The body used the E-RTMP extended header.
    pub enhanced: bool,
    /// What follows the header: `AudioSpecificConfig`, raw AAC frame, MP3 frame, Opus packet...
    /// For an E-RTMP multitrack body, the first track's payload only.
    pub payload: &'a [u8],
}

/// What the hub needs to know about every media packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// A coded frame a decoder can start from: a video keyframe, or any audio frame. Never set
    /// together with `sequence_header`.
    pub keyframe: bool,
    /// Decoder configuration to keep and replay to late joiners.
    pub sequence_header: bool,
    pub codec: Codec,
    pub composition_time_ms: i32,
}

/// Classifies one RTMP media message body (or FLV tag body). Hot path: reads a few header
/// bytes, never allocates. Script data is not inspected beyond being non-empty; its `codec` is
/// [`Codec::ScriptData`].
pub fn classify(kind: MediaKind, body: &[u8]) -> Result<PacketInfo, FlvError> {
    match kind {
        MediaKind::Audio => {
            let tag = parse_audio_tag(body)?;
            Ok(PacketInfo {
                keyframe: tag.packet_type == PacketType::CodedFrames,
                sequence_header: tag.packet_type == PacketType::SequenceHeader,
                codec: tag.codec,
                composition_time_ms: 0,
            })
        }
        MediaKind::Video => {
            let tag = parse_video_tag(body)?;
            Ok(PacketInfo {
                keyframe: tag.frame_type.is_key() && tag.packet_type == PacketType::CodedFrames,
                sequence_header: tag.packet_type == PacketType::SequenceHeader,
                codec: tag.codec,
                composition_time_ms: tag.composition_time_ms,
            })
        }
        MediaKind::Data => {
            if body.is_empty() {
                return Err(FlvError::TooShort);
            }
            Ok(PacketInfo { keyframe: false, sequence_header: false, codec: Codec::ScriptData, composition_time_ms: 0 })
        }
    }
}

/// Splits an audio tag body into its header fields and payload, without allocating.
pub fn parse_audio_tag(body: &[u8]) -> Result<AudioTag<'_>, FlvError> {
    let mut cursor = Cursor::new(body, FlvError::TooShort);
    let first = cursor.u8()?;
    let sound_format = first >> 4;
    if sound_format == SOUND_FORMAT_EX_HEADER {
        return parse_enhanced_audio(first, cursor);
    }
    let legacy_format = LegacyAudioFormat {
        sample_rate: match (first >> 2) & 0x03 {
            0 => 5_512,
            1 => 11_025,
            2 => 22_050,
            _ => 44_100,
        },
        bits_per_sample: if first & 0x02 != 0 { 16 } else { 8 },
        channels: if first & 0x01 != 0 { 2 } else { 1 },
    };
    let codec = codec_of_sound_format(sound_format);
    let packet_type = if codec == Codec::Aac {
        match cursor.u8()? {
            0 => PacketType::SequenceHeader,
            1 => PacketType::CodedFrames,
            other => PacketType::Unknown(other),
        }
    } else {
        PacketType::CodedFrames
    };
    Ok(AudioTag { codec, packet_type, legacy_format: Some(legacy_format), enhanced: false, payload: cursor.rest })
}

fn parse_enhanced_audio(first: u8, mut cursor: Cursor<'_, FlvError>) -> Result<AudioTag<'_>, FlvError> {
    let mut packet_type = first & 0x0f;
    while packet_type == EX_MOD_EX {
        packet_type = skip_mod_ex(&mut cursor)?;
    }
    let (packet_type, codec) = read_fourcc_and_first_track(&mut cursor, packet_type, EX_AUDIO_MULTITRACK)?;
    let packet_type = match packet_type {
        EX_SEQUENCE_START => PacketType::SequenceHeader,
        EX_CODED_FRAMES => PacketType::CodedFrames,
        EX_SEQUENCE_END => PacketType::SequenceEnd,
        EX_AUDIO_MULTICHANNEL_CONFIG => PacketType::MultichannelConfig,
        other => PacketType::Unknown(other),
    };
    Ok(AudioTag { codec, packet_type, legacy_format: None, enhanced: true, payload: cursor.rest })
}

/// Splits a video tag body into its header fields and payload, without allocating.
pub fn parse_video_tag(body: &[u8]) -> Result<VideoTag<'_>, FlvError> {
    let mut cursor = Cursor::new(body, FlvError::TooShort);
    let first = cursor.u8()?;
    if first & VIDEO_EX_HEADER_BIT != 0 {
        return parse_enhanced_video(first, cursor);
    }
    let frame_type = VideoFrameType::from_bits(first >> 4);
    let codec = codec_of_video_codec_id(first & 0x0f);
    let mut tag = VideoTag {
        codec,
        frame_type,
        packet_type: PacketType::CodedFrames,
        composition_time_ms: 0,
        enhanced: false,
        payload: &[],
    };
    if frame_type == VideoFrameType::Command {
        // A one-byte command replaces the payload, and the AVC packet header is absent.
        tag.packet_type = PacketType::Command;
    } else if matches!(codec, Codec::H264 | Codec::Hevc) {
        tag.packet_type = match cursor.u8()? {
            0 => PacketType::SequenceHeader,
            1 => PacketType::CodedFrames,
            2 => PacketType::SequenceEnd,
            other => PacketType::Unknown(other),
        };
        // Some encoders end a stream with a bare two-byte end-of-sequence; nothing follows it
        // anyway, so a missing composition time there is not worth refusing.
        if !(tag.packet_type == PacketType::SequenceEnd && cursor.rest.is_empty()) {
            tag.composition_time_ms = cursor.i24()?;
        }
    }
    tag.payload = cursor.rest;
    Ok(tag)
}

fn parse_enhanced_video(first: u8, mut cursor: Cursor<'_, FlvError>) -> Result<VideoTag<'_>, FlvError> {
    let frame_type = VideoFrameType::from_bits((first >> 4) & 0x07);
    let mut packet_type = first & 0x0f;
    while packet_type == EX_MOD_EX {
        packet_type = skip_mod_ex(&mut cursor)?;
    }
    if frame_type == VideoFrameType::Command && packet_type != EX_VIDEO_METADATA {
        // E-RTMP: a command frame carries a one-byte VideoCommand and no FourCC.
        cursor.u8()?;
        return Ok(VideoTag {
            codec: Codec::Unknown,
            frame_type,
            packet_type: PacketType::Command,
            composition_time_ms: 0,
            enhanced: true,
            payload: cursor.rest,
        });
    }
    let (packet_type, codec) = read_fourcc_and_first_track(&mut cursor, packet_type, EX_VIDEO_MULTITRACK)?;
    let mut composition_time_ms = 0;
    // Only AVC and HEVC have B-frame reordering signalled here; CodedFramesX is the same packet
    // with the offset elided because it is zero.
    if packet_type == EX_CODED_FRAMES && matches!(codec, Codec::H264 | Codec::Hevc) {
        composition_time_ms = cursor.i24()?;
    }
    let packet_type = match packet_type {
        EX_SEQUENCE_START | EX_VIDEO_MPEG2TS_SEQUENCE_START => PacketType::SequenceHeader,
        EX_CODED_FRAMES | EX_VIDEO_CODED_FRAMES_X => PacketType::CodedFrames,
        EX_SEQUENCE_END => PacketType::SequenceEnd,
        EX_VIDEO_METADATA => PacketType::Metadata,
        other => PacketType::Unknown(other),
    };
    Ok(VideoTag { codec, frame_type, packet_type, composition_time_ms, enhanced: true, payload: cursor.rest })
}

/// Skips one E-RTMP `ModEx` block and returns the packet type that follows it. The only
/// defined modifier is a sub-millisecond timestamp offset, which a relay can ignore.
fn skip_mod_ex(cursor: &mut Cursor<'_, FlvError>) -> Result<u8, FlvError> {
    let mut data_len = usize::from(cursor.u8()?) + 1;
    if data_len == 256 {
        data_len = usize::from(cursor.u16()?) + 1;
    }
    cursor.take(data_len)?;
    Ok(cursor.u8()? & 0x0f)
}

/// Reads what follows an E-RTMP packet type: the multitrack header when `packet_type` is
/// `multitrack_type` (it carries the real packet type), the FourCC, and the first track's
/// header. Returns the packet type and codec, with the cursor on the (first track's) payload.
fn read_fourcc_and_first_track(
    cursor: &mut Cursor<'_, FlvError>,
    packet_type: u8,
    multitrack_type: u8,
) -> Result<(u8, Codec), FlvError> {
    let (packet_type, multitrack_layout) = if packet_type == multitrack_type {
        let byte = cursor.u8()?;
        (byte & 0x0f, Some(byte >> 4))
    } else {
        (packet_type, None)
    };
    // With or without multitrack, a FourCC comes next: for "many tracks, many codecs" it is the
    // first track's, which is the one described.
    let codec = codec_of_fourcc(cursor.array()?);
    if let Some(layout) = multitrack_layout {
        enter_first_track(cursor, layout)?;
    }
    Ok((packet_type, codec))
}

/// Moves past an E-RTMP multitrack track header (track id, and a size unless there is only
/// one track) and narrows the cursor to that first track's payload.
fn enter_first_track(cursor: &mut Cursor<'_, FlvError>, layout: u8) -> Result<(), FlvError> {
    let _track_id = cursor.u8()?;
    if layout != MULTITRACK_ONE_TRACK {
        let track_len = usize::try_from(cursor.u24()?).map_err(|_| cursor.short_error())?;
        cursor.rest = cursor.take(track_len)?;
    }
    Ok(())
}

/// Describes the stream from one packet. Call it on the sequence header; for codecs that have
/// none (MP3, G.711, legacy codecs), any frame will do. A packet that carries no configuration
/// yields just the codec; a configuration that is present but malformed is an error.
/// Runs once per stream and may allocate.
pub fn parse_codec_info(kind: MediaKind, body: &[u8]) -> Result<CodecInfo, FlvError> {
    match kind {
        MediaKind::Audio => audio_codec_info(&parse_audio_tag(body)?),
        MediaKind::Video => video_codec_info(&parse_video_tag(body)?),
        MediaKind::Data => Ok(CodecInfo::codec_only(Codec::ScriptData)),
    }
}

fn audio_codec_info(tag: &AudioTag<'_>) -> Result<CodecInfo, FlvError> {
    let mut info = match tag.codec {
        Codec::Aac | Codec::Opus if tag.packet_type == PacketType::SequenceHeader => {
            CodecInfo::from_audio_config(tag.codec, tag.payload)?
        }
        // Their frames say nothing the configuration did not.
        Codec::Aac | Codec::Opus => CodecInfo::codec_only(tag.codec),
        _ => CodecInfo::from_audio_frame(tag.codec, tag.payload),
    };
    // For codecs without a configuration record, the legacy flags say what the frame did not.
    // AAC's flags are fixed at 44 kHz stereo whatever the stream is, so they are never used.
    if matches!(tag.codec, Codec::Mp3 | Codec::PcmAlaw | Codec::PcmMulaw | Codec::OtherAudio(_))
        && let Some(legacy) = tag.legacy_format
    {
        info.sample_rate.get_or_insert(legacy.sample_rate);
        info.channels.get_or_insert(legacy.channels);
    }
    Ok(info)
}

fn video_codec_info(tag: &VideoTag<'_>) -> Result<CodecInfo, FlvError> {
    if tag.packet_type != PacketType::SequenceHeader {
        return Ok(CodecInfo::codec_only(tag.codec));
    }
    Ok(CodecInfo::from_video_config(tag.codec, tag.payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::{AvcDecoderConfig, H264Sps};
    use crate::protocol::fixtures::*;

    fn video_info(body_hex: &str) -> CodecInfo {
        parse_codec_info(MediaKind::Video, &hex(body_hex)).expect("sequence header parses")
    }

    #[test]
    fn media_kinds_round_trip_through_tag_types() {
        for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
            assert_eq!(MediaKind::from_tag_type(kind.tag_type()), Some(kind));
        }
        assert_eq!(MediaKind::from_tag_type(20), None);
    }

    #[test]
    fn avc_720p_high() {
        let body = hex(AVC_720P_HIGH);
        let info = classify(MediaKind::Video, &body).expect("classifies");
        assert_eq!(
            info,
            PacketInfo { keyframe: false, sequence_header: true, codec: Codec::H264, composition_time_ms: 0 }
        );
        let tag = parse_video_tag(&body).expect("parses");
        let config = AvcDecoderConfig::parse(tag.payload).expect("record parses");
        assert_eq!(config.nal_length_size, 4);
        assert_eq!((config.sps.len(), config.pps.len()), (1, 1));
        assert_eq!(config.sps[0].first(), Some(&0x67));
        assert_eq!(config.pps[0], hex("68ebe3cb22c0"));
        assert_eq!(config.sps_info.chroma_format_idc, 1);
        assert_eq!(config.sps_info.bit_depth_luma, 8);
        assert!(config.sps_info.frame_mbs_only);
        assert_eq!(
            video_info(AVC_720P_HIGH),
            CodecInfo {
                codec: Codec::H264,
                profile: Some("High"),
                level: Some("3.1".into()),
                width: Some(1280),
                height: Some(720),
                sample_rate: None,
                channels: None,
            }
        );
    }

    #[test]
    fn avc_240p_constrained_baseline() {
        let info = video_info(AVC_240P_BASELINE);
        assert_eq!(info.profile, Some("Constrained Baseline"));
        assert_eq!(info.level.as_deref(), Some("1.3"));
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
    }

    #[test]
    fn avc_1080p_is_cropped() {
        let info = video_info(AVC_1080P_MAIN);
        assert_eq!(info.profile, Some("Main"));
        assert_eq!(info.level.as_deref(), Some("4"));
        assert_eq!((info.width, info.height), (Some(1920), Some(1080)));
    }

    #[test]
    fn avc_interlaced_height_counts_both_fields() {
        let body = hex(AVC_576I_HIGH);
        let tag = parse_video_tag(&body).expect("parses");
        let config = AvcDecoderConfig::parse(tag.payload).expect("record parses");
        assert!(!config.sps_info.frame_mbs_only);
        assert_eq!((config.sps_info.width, config.sps_info.height), (720, 576));
        assert_eq!(config.sps_info.level(), "3");
    }

    #[test]
    fn avc_odd_width_cropping() {
        let info = video_info(AVC_426X240_HIGH);
        assert_eq!((info.width, info.height), (Some(426), Some(240)));
        let info = video_info(AVC_426X240_444);
        assert_eq!(info.profile, Some("High 4:4:4 Predictive"));
        assert_eq!((info.width, info.height), (Some(426), Some(240)));
    }

    #[test]
    fn hevc_legacy_codec_id_12() {
        let mut body = hex("1c00000000"); // keyframe, codec 12, sequence header, cto 0
        body.extend(hex(HVCC_720P_MAIN));
        let info = classify(MediaKind::Video, &body).expect("classifies");
        assert!(info.sequence_header);
        assert_eq!(info.codec, Codec::Hevc);
        let info = parse_codec_info(MediaKind::Video, &body).expect("parses");
        assert_eq!((info.width, info.height), (Some(1280), Some(720)));
    }

    #[test]
    fn enhanced_hevc_sequence_start_and_frames() {
        // 0x80 ex header | frame type 1 << 4 | SequenceStart, then the FourCC.
        let mut sequence_start = vec![0x90];
        sequence_start.extend_from_slice(b"hvc1");
        sequence_start.extend(hex(HVCC_720P_MAIN));
        let info = classify(MediaKind::Video, &sequence_start).expect("classifies");
        assert!(info.sequence_header && !info.keyframe);
        assert_eq!(info.codec, Codec::Hevc);
        let codec_info = parse_codec_info(MediaKind::Video, &sequence_start).expect("parses");
        assert_eq!(codec_info.profile, Some("Main"));
        assert_eq!(codec_info.width, Some(1280));

        // CodedFrames keyframe with a composition time of -2 (0xfffffe as SI24).
        let coded = [0x91, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x26];
        let info = classify(MediaKind::Video, &coded).expect("classifies");
        assert!(info.keyframe && !info.sequence_header);
        assert_eq!(info.composition_time_ms, -2);
        assert_eq!(parse_video_tag(&coded).expect("parses").payload, &[0, 0, 0, 1, 0x26]);

        // CodedFramesX inter frame: no composition time field.
        let coded_x = [0xa3, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x02];
        let tag = parse_video_tag(&coded_x).expect("parses");
        assert_eq!(tag.packet_type, PacketType::CodedFrames);
        assert_eq!(tag.frame_type, VideoFrameType::Inter);
        assert_eq!(tag.payload, &[0, 0, 0, 1, 0x02]);
        assert!(!classify(MediaKind::Video, &coded_x).expect("ok").keyframe);

        let end = [0x92, b'h', b'v', b'c', b'1'];
        let tag = parse_video_tag(&end).expect("parses");
        assert_eq!(tag.packet_type, PacketType::SequenceEnd);
    }

    #[test]
    fn enhanced_av1_and_vp9() {
        // av1C: marker/version 0x81, profile 0 level index 8 (4.0), then flags.
        let av1_start = [0x90, b'a', b'v', b'0', b'1', 0x81, 0x08, 0x0c, 0x00];
        let info = classify(MediaKind::Video, &av1_start).expect("classifies");
        assert!(info.sequence_header);
        assert_eq!(info.codec, Codec::Av1);
        let codec_info = parse_codec_info(MediaKind::Video, &av1_start).expect("parses");
        assert_eq!(codec_info.profile, Some("Main"));
        assert_eq!(codec_info.level.as_deref(), Some("4.0"));

        // AV1 CodedFrames has no composition time: the payload starts right after the FourCC.
        let av1_key = [0x91, b'a', b'v', b'0', b'1', 0x12, 0x00];
        let tag = parse_video_tag(&av1_key).expect("parses");
        assert_eq!(tag.payload, &[0x12, 0x00]);
        assert!(classify(MediaKind::Video, &av1_key).expect("ok").keyframe);

        let vp9_start = [0x90, b'v', b'p', b'0', b'9', 1, 0, 0, 0, 0, 31, 0x80];
        let codec_info = parse_codec_info(MediaKind::Video, &vp9_start).expect("parses");
        assert_eq!(codec_info.codec.name(), "vp9");
        assert_eq!(codec_info.profile, Some("Profile 0"));
        assert_eq!(codec_info.level.as_deref(), Some("3.1"));

        let unknown = [0x91, b'x', b'y', b'z', b'w'];
        let info = classify(MediaKind::Video, &unknown).expect("classifies");
        assert_eq!(info.codec, Codec::OtherFourCc(*b"xyzw"));
        assert_eq!(info.codec.name(), "unknown");
    }

    #[test]
    fn enhanced_mod_ex_and_multitrack() {
        // ModEx with 3 bytes of TimestampOffsetNano, then CodedFrames avc1 with cto 40.
        let mod_ex = [0x97, 0x02, 0x00, 0x01, 0x00, 0x01, b'a', b'v', b'c', b'1', 0x00, 0x00, 0x28, 0xaa];
        let info = classify(MediaKind::Video, &mod_ex).expect("classifies");
        assert!(info.keyframe);
        assert_eq!(info.codec, Codec::H264);
        assert_eq!(info.composition_time_ms, 40);

        // Multitrack, OneTrack, SequenceStart of hvc1 on track 0.
        let mut one_track = vec![0x96, 0x00];
        one_track.extend_from_slice(b"hvc1");
        one_track.push(0);
        one_track.extend(hex(HVCC_720P_MAIN));
        let info = classify(MediaKind::Video, &one_track).expect("classifies");
        assert!(info.sequence_header);
        assert_eq!(info.codec, Codec::Hevc);
        let codec_info = parse_codec_info(MediaKind::Video, &one_track).expect("parses");
        assert_eq!(codec_info.height, Some(720));

        // Multitrack, ManyTracks, CodedFrames of avc1: track 0 of 6 bytes (cto 1 + 3 bytes),
        // then track 1 which is not described.
        let many_tracks = [
            0x96, 0x11, b'a', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x01, 0xa, 0xb, 0xc, 0x01, 0x00,
            0x00, 0x01, 0xff,
        ];
        let tag = parse_video_tag(&many_tracks).expect("parses");
        assert_eq!(tag.composition_time_ms, 1);
        assert_eq!(tag.payload, &[0xa, 0xb, 0xc]);
        // A track size running past the body is malformed.
        let overlong = [0x96, 0x11, b'a', b'v', b'c', b'1', 0, 0, 0, 0x60, 0, 0, 0];
        assert_eq!(parse_video_tag(&overlong), Err(FlvError::TooShort));

        // Command frame (frame type 5): a command byte, no FourCC.
        let command = [0xd1, 0x00];
        let tag = parse_video_tag(&command).expect("parses");
        assert_eq!(tag.packet_type, PacketType::Command);
        assert_eq!(tag.codec, Codec::Unknown);
        let info = classify(MediaKind::Video, &command).expect("classifies");
        assert!(!info.keyframe && !info.sequence_header);
    }

    #[test]
    fn legacy_video_frames() {
        // AVC keyframe NALU with composition time 66.
        let key = [0x17, 0x01, 0x00, 0x00, 0x42, 0, 0, 0, 2, 0x65, 0x88];
        let info = classify(MediaKind::Video, &key).expect("classifies");
        assert_eq!(
            info,
            PacketInfo { keyframe: true, sequence_header: false, codec: Codec::H264, composition_time_ms: 66 }
        );
        // Inter frame with a negative composition time.
        let inter = [0x27, 0x01, 0xff, 0xff, 0xdf, 0, 0, 0, 2, 0x41, 0x9a];
        let info = classify(MediaKind::Video, &inter).expect("classifies");
        assert!(!info.keyframe);
        assert_eq!(info.composition_time_ms, -33);
        // End of sequence, with and without the composition time.
        for eos in [&[0x17, 0x02, 0, 0, 0][..], &[0x17, 0x02][..]] {
            let tag = parse_video_tag(eos).expect("parses");
            assert_eq!(tag.packet_type, PacketType::SequenceEnd);
        }
        // Video info frame: a command byte instead of an AVC packet header.
        let info_frame = [0x57, 0x00];
        assert_eq!(parse_video_tag(&info_frame).expect("parses").packet_type, PacketType::Command);
        // Sorenson H.263 keyframe: no packet type, every body is a frame.
        let h263 = [0x12, 0x00, 0x00];
        let info = classify(MediaKind::Video, &h263).expect("classifies");
        assert!(info.keyframe);
        assert_eq!(info.codec, Codec::OtherVideo(2));
        assert_eq!(info.codec.name(), "flv1");
    }

    #[test]
    fn legacy_aac_packets() {
        // From ffmpeg's FLV output: 0xaf = AAC, 44 kHz, 16-bit, stereo; then the packet type.
        let sequence_header = [0xaf, 0x00, 0x12, 0x10, 0x56, 0xe5, 0x00];
        let info = classify(MediaKind::Audio, &sequence_header).expect("classifies");
        assert_eq!(
            info,
            PacketInfo { keyframe: false, sequence_header: true, codec: Codec::Aac, composition_time_ms: 0 }
        );
        let codec_info = parse_codec_info(MediaKind::Audio, &sequence_header).expect("parses");
        assert_eq!(
            codec_info,
            CodecInfo {
                codec: Codec::Aac,
                profile: Some("LC"),
                level: None,
                width: None,
                height: None,
                sample_rate: Some(44_100),
                channels: Some(2),
            }
        );
        // The 48 kHz mono stream ffmpeg wrote still says "44 kHz stereo" in the flags.
        let mono = [0xaf, 0x00, 0x11, 0x88, 0x56, 0xe5, 0x00];
        let codec_info = parse_codec_info(MediaKind::Audio, &mono).expect("parses");
        assert_eq!((codec_info.sample_rate, codec_info.channels), (Some(48_000), Some(1)));

        let raw = [0xaf, 0x01, 0x21, 0x4c];
        let info = classify(MediaKind::Audio, &raw).expect("classifies");
        assert!(info.keyframe && !info.sequence_header);
        let tag = parse_audio_tag(&raw).expect("parses");
        assert_eq!(tag.payload, &[0x21, 0x4c]);
        // A raw frame carries no configuration: codec only.
        assert_eq!(parse_codec_info(MediaKind::Audio, &raw).expect("ok"), CodecInfo::codec_only(Codec::Aac));
    }

    #[test]
    fn mp3_and_g711() {
        // ffmpeg + libmp3lame at 48 kHz: flags say 44 kHz (0x2f), the MPEG header says 48.
        let mp3 = hex("2ffffb9464000001ee0850bd3c60");
        let info = classify(MediaKind::Audio, &mp3).expect("classifies");
        assert!(info.keyframe && !info.sequence_header);
        assert_eq!(info.codec, Codec::Mp3);
        let codec_info = parse_codec_info(MediaKind::Audio, &mp3).expect("parses");
        assert_eq!(codec_info.codec.name(), "mp3");
        assert_eq!((codec_info.sample_rate, codec_info.channels), (Some(48_000), Some(2)));
        // Without a recognisable frame header, fall back to the flags.
        let codec_info = parse_codec_info(MediaKind::Audio, &[0x2e, 0x00]).expect("parses");
        assert_eq!((codec_info.sample_rate, codec_info.channels), (Some(44_100), Some(1)));

        let alaw = [0x72, 0xd5, 0xd5];
        let codec_info = parse_codec_info(MediaKind::Audio, &alaw).expect("parses");
        assert_eq!(codec_info.codec.name(), "pcm_alaw");
        assert_eq!((codec_info.sample_rate, codec_info.channels), (Some(8_000), Some(1)));
    }

    #[test]
    fn enhanced_audio() {
        // SoundFormat 9 (ex header) | SequenceStart, "Opus", OpusHead for stereo 48 kHz.
        let mut opus_start = vec![0x90];
        opus_start.extend_from_slice(b"Opus");
        opus_start.extend_from_slice(b"OpusHead");
        opus_start.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        let info = classify(MediaKind::Audio, &opus_start).expect("classifies");
        assert!(info.sequence_header && !info.keyframe);
        assert_eq!(info.codec, Codec::Opus);
        let codec_info = parse_codec_info(MediaKind::Audio, &opus_start).expect("parses");
        assert_eq!((codec_info.sample_rate, codec_info.channels), (Some(48_000), Some(2)));

        let opus_frame = [0x91, b'O', b'p', b'u', b's', 0xfc, 0xff];
        let info = classify(MediaKind::Audio, &opus_frame).expect("classifies");
        assert!(info.keyframe);

        // AAC through E-RTMP: the AudioSpecificConfig follows the FourCC directly.
        let mp4a_start = [0x90, b'm', b'p', b'4', b'a', 0x11, 0x88];
        let codec_info = parse_codec_info(MediaKind::Audio, &mp4a_start).expect("parses");
        assert_eq!(codec_info.codec, Codec::Aac);
        assert_eq!(codec_info.sample_rate, Some(48_000));

        // Multichannel config is not a sequence header and not a frame.
        let multichannel = [0x94, b'O', b'p', b'u', b's', 0x00, 0x02];
        let info = classify(MediaKind::Audio, &multichannel).expect("classifies");
        assert!(!info.keyframe && !info.sequence_header);

        // Multitrack (ManyTracksManyCodecs = 2), CodedFrames; the first track's FourCC.
        let multitrack = [0x95, 0x21, b'f', b'L', b'a', b'C', 0x00, 0x00, 0x00, 0x01, 0x55];
        let tag = parse_audio_tag(&multitrack).expect("parses");
        assert_eq!(tag.codec, Codec::Flac);
        assert_eq!(tag.payload, &[0x55]);
        assert_eq!(tag.packet_type, PacketType::CodedFrames);
    }

    #[test]
    fn data_packets() {
        let info = classify(MediaKind::Data, &[0x02, 0x00]).expect("classifies");
        assert_eq!(info.codec, Codec::ScriptData);
        assert!(!info.keyframe && !info.sequence_header);
        assert_eq!(classify(MediaKind::Data, &[]), Err(FlvError::TooShort));
    }

    #[test]
    fn too_short_bodies_are_errors() {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            assert_eq!(classify(kind, &[]), Err(FlvError::TooShort));
        }
        assert_eq!(classify(MediaKind::Audio, &[0xaf]), Err(FlvError::TooShort));
        assert_eq!(classify(MediaKind::Video, &[0x17, 0x01, 0x00]), Err(FlvError::TooShort));
        assert_eq!(classify(MediaKind::Video, &[0x90, b'h', b'v']), Err(FlvError::TooShort));
    }

    #[test]
    fn every_truncation_is_handled() {
        let mut fixtures: Vec<(MediaKind, Vec<u8>)> =
            [AVC_720P_HIGH, AVC_240P_BASELINE, AVC_1080P_MAIN, AVC_576I_HIGH, AVC_426X240_444]
                .iter()
                .map(|h| (MediaKind::Video, hex(h)))
                .collect();
        for record in [HVCC_720P_MAIN, HVCC_1080P_MAIN10] {
            let mut body = b"\x90hvc1".to_vec();
            body.extend(hex(record));
            fixtures.push((MediaKind::Video, body));
        }
        fixtures.push((MediaKind::Audio, vec![0xaf, 0x00, 0x13, 0x10, 0x56, 0xe5, 0x98]));
        for (kind, body) in &fixtures {
            assert!(parse_codec_info(*kind, body).is_ok());
            for len in 0..body.len() {
                // The point is that nothing panics; most prefixes are errors, a few (a cut
                // after the SPS) still describe the stream.
                let _ = classify(*kind, &body[..len]);
                let _ = parse_codec_info(*kind, &body[..len]);
            }
        }
        // The SPS cut anywhere is an error or, once the size fields are in (the VUI after them
        // is not read), the right size: never a wrong one.
        let body = hex(AVC_720P_HIGH);
        let config = AvcDecoderConfig::parse(&body[5..]).expect("parses");
        let sps = &config.sps[0];
        for len in 0..sps.len() {
            if let Ok(info) = H264Sps::parse(&sps[..len]) {
                assert_eq!((info.width, info.height), (1280, 720), "len {len}");
            }
        }
    }
}
