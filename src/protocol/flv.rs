//! FLV tag bodies, as carried in RTMP audio (type 8), video (type 9) and data (type 18)
//! messages, the codec configuration records inside them, and FLV file framing.
//!
//! References:
//! - Adobe Flash Video File Format Specification v10.1, annex E: the file header, tag header,
//!   `AUDIODATA`/`VIDEODATA` headers, `AACPacketType`, `AVCPacketType` and `CompositionTime`.
//! - Veovera "Enhanced RTMP" v2 (E-RTMP): `IsExHeader` video (bit 0x80 of the first byte) and
//!   audio (`SoundFormat` 9), a packet type in the low nibble, a FourCC (`avc1`, `hvc1`, `av01`,
//!   `vp09`, `mp4a`, `Opus`...), `ModEx` prefixes and multitrack framing.
//! - ISO/IEC 14496-15: `AVCDecoderConfigurationRecord` (5.3.3.1) and
//!   `HEVCDecoderConfigurationRecord` (8.3.3.1).
//! - ITU-T H.264 / ISO/IEC 14496-10, 7.3.2.1.1: the sequence parameter set (width, height,
//!   cropping, profile); ITU-T H.265, 7.3.2.2: the HEVC one.
//! - ISO/IEC 14496-3, 1.6.2.1: `AudioSpecificConfig`.
//!
//! Three levels of cost, for three moments:
//! - [`classify`] runs on every media packet: a few header bytes, no allocation.
//! - [`parse_video_tag`] / [`parse_audio_tag`] split a body into header fields and codec payload
//!   without allocating, for code that repackages the payload (RTP, HTTP-FLV).
//! - [`parse_codec_info`] runs once per sequence header and may allocate: it decodes the codec
//!   configuration (SPS, `AudioSpecificConfig`...) into a [`CodecInfo`].
//!
//! Nothing here panics on any input: every read is bounds-checked and arithmetic on
//! input-derived numbers is checked.

use std::fmt;

/// FLV tag type of an audio tag (and RTMP message type of audio).
pub const TAG_TYPE_AUDIO: u8 = 8;
/// FLV tag type of a video tag (and RTMP message type of video).
pub const TAG_TYPE_VIDEO: u8 = 9;
/// FLV tag type of script data such as `onMetaData` (and RTMP message type of AMF0 data).
pub const TAG_TYPE_SCRIPT_DATA: u8 = 18;

/// Length of the FLV file header, not counting the `PreviousTagSize0` that follows it.
pub const FILE_HEADER_LEN: usize = 9;
/// Length of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Length of the `PreviousTagSize` field after the header and after every tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Largest tag body the 24-bit `DataSize` field can describe.
pub const MAX_TAG_BODY_LEN: usize = 0x00FF_FFFF;

/// A `DataOffset` beyond this is not an FLV file anyone writes (version 1 says 9); refusing it
/// keeps the reader from waiting for gigabytes of "header".
const MAX_FILE_HEADER_DATA_OFFSET: u32 = 4096;

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
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: &'static str },
}

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

/// The codec of a packet, from the legacy FLV codec ids or an E-RTMP FourCC.
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
    /// Any other legacy `SoundFormat`.
    OtherAudio(u8),
    H264,
    Hevc,
    Av1,
    Vp9,
    Vp8,
    /// Any other legacy video `CodecID`.
    OtherVideo(u8),
    /// An E-RTMP FourCC this module does not know.
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

    fn from_sound_format(sound_format: u8) -> Self {
        match sound_format {
            2 | 14 => Codec::Mp3,
            7 => Codec::PcmAlaw,
            8 => Codec::PcmMulaw,
            SOUND_FORMAT_AAC => Codec::Aac,
            other => Codec::OtherAudio(other),
        }
    }

    fn from_video_codec_id(codec_id: u8) -> Self {
        match codec_id {
            CODEC_ID_AVC => Codec::H264,
            CODEC_ID_HEVC_LEGACY => Codec::Hevc,
            other => Codec::OtherVideo(other),
        }
    }

    fn from_fourcc(fourcc: [u8; 4]) -> Self {
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
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    let codec = Codec::from_sound_format(sound_format);
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

fn parse_enhanced_audio(first: u8, mut cursor: Cursor<'_>) -> Result<AudioTag<'_>, FlvError> {
    let mut packet_type = first & 0x0f;
    while packet_type == EX_MOD_EX {
        packet_type = cursor.skip_mod_ex()?;
    }
    let multitrack_layout = if packet_type == EX_AUDIO_MULTITRACK {
        let byte = cursor.u8()?;
        packet_type = byte & 0x0f;
        Some(byte >> 4)
    } else {
        None
    };
    // With or without multitrack, a FourCC comes next: for "many tracks, many codecs" it is the
    // first track's, which is the one described.
    let codec = Codec::from_fourcc(cursor.array()?);
    if let Some(layout) = multitrack_layout {
        cursor.enter_first_track(layout)?;
    }
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
    let codec = Codec::from_video_codec_id(first & 0x0f);
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

fn parse_enhanced_video(first: u8, mut cursor: Cursor<'_>) -> Result<VideoTag<'_>, FlvError> {
    let frame_type = VideoFrameType::from_bits((first >> 4) & 0x07);
    let mut packet_type = first & 0x0f;
    while packet_type == EX_MOD_EX {
        packet_type = cursor.skip_mod_ex()?;
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
    let multitrack_layout = if packet_type == EX_VIDEO_MULTITRACK {
        let byte = cursor.u8()?;
        packet_type = byte & 0x0f;
        Some(byte >> 4)
    } else {
        None
    };
    let codec = Codec::from_fourcc(cursor.array()?);
    if let Some(layout) = multitrack_layout {
        cursor.enter_first_track(layout)?;
    }
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

/// Bounds-checked reading from the front of a byte slice; every failure is `short_error`.
struct Cursor<'a> {
    rest: &'a [u8],
    short_error: FlvError,
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8], short_error: FlvError) -> Self {
        Cursor { rest, short_error }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], FlvError> {
        let (head, tail) = self.rest.split_at_checked(len).ok_or(self.short_error)?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FlvError> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| self.short_error)
    }

    fn u8(&mut self) -> Result<u8, FlvError> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, FlvError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u24(&mut self) -> Result<u32, FlvError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    fn u32(&mut self) -> Result<u32, FlvError> {
        self.array().map(u32::from_be_bytes)
    }

    /// SI24, as used for the composition time offset.
    fn i24(&mut self) -> Result<i32, FlvError> {
        let [a, b, c] = self.array()?;
        // Place the 24 bits at the top, then shift back arithmetically to extend the sign.
        Ok(i32::from_be_bytes([a, b, c, 0]) >> 8)
    }

    /// Skips one E-RTMP `ModEx` block and returns the packet type that follows it. The only
    /// defined modifier is a sub-millisecond timestamp offset, which a relay can ignore.
    fn skip_mod_ex(&mut self) -> Result<u8, FlvError> {
        let mut data_len = usize::from(self.u8()?) + 1;
        if data_len == 256 {
            data_len = usize::from(self.u16()?) + 1;
        }
        self.take(data_len)?;
        Ok(self.u8()? & 0x0f)
    }

    /// Moves past an E-RTMP multitrack track header (track id, and a size unless there is only
    /// one track) and narrows the cursor to that first track's payload.
    fn enter_first_track(&mut self, layout: u8) -> Result<(), FlvError> {
        let _track_id = self.u8()?;
        if layout != MULTITRACK_ONE_TRACK {
            let track_len = usize::try_from(self.u24()?).map_err(|_| self.short_error)?;
            self.rest = self.take(track_len)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Codec configuration
// ---------------------------------------------------------------------------------------------

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
    fn codec_only(codec: Codec) -> Self {
        CodecInfo { codec, profile: None, level: None, width: None, height: None, sample_rate: None, channels: None }
    }
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
    let mut info = CodecInfo::codec_only(tag.codec);
    let is_config = tag.packet_type == PacketType::SequenceHeader;
    match tag.codec {
        Codec::Aac if is_config => {
            let config = AacConfig::parse(tag.payload)?;
            info.profile = Some(config.profile_name());
            info.sample_rate = Some(config.sample_rate);
            info.channels = (config.channels != 0).then_some(config.channels);
        }
        Codec::Opus if is_config => {
            if let Some(head) = OpusHead::parse(tag.payload) {
                // Opus always decodes at 48 kHz; the header's rate is only the input's.
                info.sample_rate = Some(48_000);
                info.channels = Some(head.channels);
            }
        }
        Codec::Mp3 => {
            if let Some(frame) = Mp3FrameHeader::parse(tag.payload) {
                info.sample_rate = Some(frame.sample_rate);
                info.channels = Some(frame.channels);
            } else if let Some(legacy) = tag.legacy_format {
                info.sample_rate = Some(legacy.sample_rate);
                info.channels = Some(legacy.channels);
            }
        }
        Codec::PcmAlaw | Codec::PcmMulaw => {
            // G.711 in FLV is 8 kHz by definition; the rate flags cannot even say 8000.
            info.sample_rate = Some(8_000);
            info.channels = tag.legacy_format.map(|legacy| legacy.channels);
        }
        Codec::OtherAudio(_) => {
            if let Some(legacy) = tag.legacy_format {
                info.sample_rate = Some(legacy.sample_rate);
                info.channels = Some(legacy.channels);
            }
        }
        _ => {}
    }
    Ok(info)
}

fn video_codec_info(tag: &VideoTag<'_>) -> Result<CodecInfo, FlvError> {
    let mut info = CodecInfo::codec_only(tag.codec);
    if tag.packet_type != PacketType::SequenceHeader {
        return Ok(info);
    }
    match tag.codec {
        Codec::H264 => {
            let config = AvcDecoderConfig::parse(tag.payload)?;
            info.profile = Some(config.sps_info.profile_name());
            info.level = Some(config.sps_info.level());
            info.width = Some(config.sps_info.width);
            info.height = Some(config.sps_info.height);
        }
        Codec::Hevc => {
            let config = HevcDecoderConfig::parse(tag.payload)?;
            info.profile = Some(config.sps_info.profile_name());
            info.level = Some(config.sps_info.level());
            info.width = Some(config.sps_info.width);
            info.height = Some(config.sps_info.height);
        }
        Codec::Av1 => {
            // av1C: marker+version, then seq_profile (3 bits) and seq_level_idx_0 (5 bits).
            if let [0x81, profile_and_level, ..] = tag.payload {
                let profile = profile_and_level >> 5;
                let level_index = profile_and_level & 0x1f;
                info.profile = Some(match profile {
                    0 => "Main",
                    1 => "High",
                    2 => "Professional",
                    _ => "unknown",
                });
                // AV1 annex A.3: seq_level_idx = (major - 2) * 4 + minor; 31 means "no limit".
                if level_index < 24 {
                    info.level = Some(format!("{}.{}", 2 + level_index / 4, level_index % 4));
                }
            }
        }
        Codec::Vp9 => {
            // vpcC is a full box: version and flags (4 bytes), then profile and level.
            if let [1, _, _, _, profile, level, ..] = tag.payload {
                info.profile = Some(match profile {
                    0 => "Profile 0",
                    1 => "Profile 1",
                    2 => "Profile 2",
                    3 => "Profile 3",
                    _ => "unknown",
                });
                info.level = Some(format!("{}.{}", level / 10, level % 10));
            }
        }
        _ => {}
    }
    Ok(info)
}

fn malformed(what: &'static str, reason: &'static str) -> FlvError {
    FlvError::Malformed { what, reason }
}

/// An `AVCDecoderConfigurationRecord` (the payload of an H.264 sequence header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    pub profile_idc: u8,
    pub profile_compatibility: u8,
    pub level_idc: u8,
    /// Size in bytes of the length prefix of every NAL unit in coded frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets, NAL header included (what RTP and SDP carry).
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, NAL header included.
    pub pps: Vec<Vec<u8>>,
    /// The first SPS, decoded.
    pub sps_info: H264Sps,
}

impl AvcDecoderConfig {
    const WHAT: &'static str = "AVCDecoderConfigurationRecord";

    pub fn parse(record: &[u8]) -> Result<Self, FlvError> {
        let mut cursor = Cursor::new(record, malformed(Self::WHAT, "truncated"));
        let [version, profile_idc, profile_compatibility, level_idc, length_size, sps_count] = cursor.array()?;
        if version != 1 {
            return Err(malformed(Self::WHAT, "configurationVersion is not 1"));
        }
        let mut sps = Vec::new();
        for _ in 0..(sps_count & 0x1f) {
            let len = cursor.u16()?;
            sps.push(cursor.take(usize::from(len))?.to_vec());
        }
        let pps_count = cursor.u8()?;
        let mut pps = Vec::new();
        for _ in 0..pps_count {
            let len = cursor.u16()?;
            pps.push(cursor.take(usize::from(len))?.to_vec());
        }
        // Anything after the PPS (the High-profile chroma/bit-depth extension) repeats what the
        // SPS says, and some encoders omit it, so it is not read.
        let first_sps = sps.first().ok_or(malformed(Self::WHAT, "no sequence parameter set"))?;
        let sps_info = H264Sps::parse(first_sps)?;
        Ok(AvcDecoderConfig {
            profile_idc,
            profile_compatibility,
            level_idc,
            nal_length_size: (length_size & 0x03) + 1,
            sps,
            pps,
            sps_info,
        })
    }
}

/// The fields of an H.264 sequence parameter set that describe the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Sps {
    pub profile_idc: u8,
    /// `constraint_set0_flag` .. `constraint_set5_flag` in the top six bits.
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    /// False for interlaced coding (fields or MBAFF); width and height are the frame's.
    pub frame_mbs_only: bool,
    /// Displayed width, after cropping.
    pub width: u32,
    /// Displayed frame height, after cropping.
    pub height: u32,
}

impl H264Sps {
    const WHAT: &'static str = "H.264 SPS";

    /// Parses an SPS NAL unit, header byte included, emulation-prevention bytes and all.
    pub fn parse(nal: &[u8]) -> Result<Self, FlvError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let rbsp = remove_emulation_prevention(nal.get(1..).ok_or(truncated)?);
        let mut bits = BitReader::new(&rbsp, truncated);
        let profile_idc = bits.u8()?;
        let constraint_flags = bits.u8()?;
        let level_idc = bits.u8()?;
        let _seq_parameter_set_id = bits.ue()?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        // Profiles whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1).
        if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
            chroma_format_idc = bits.ue()?;
            if chroma_format_idc > 3 {
                return Err(malformed(Self::WHAT, "chroma_format_idc above 3"));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = bits.flag()?;
            }
            let bit_depth_luma_minus8 = bits.ue()?;
            if bit_depth_luma_minus8 > 6 {
                return Err(malformed(Self::WHAT, "bit depth above 14"));
            }
            bit_depth_luma = 8 + bit_depth_luma_minus8;
            let _bit_depth_chroma_minus8 = bits.ue()?;
            let _qpprime_y_zero_transform_bypass = bits.flag()?;
            if bits.flag()? {
                let list_count = if chroma_format_idc == 3 { 12 } else { 8 };
                for list_index in 0..list_count {
                    if bits.flag()? {
                        skip_scaling_list(&mut bits, if list_index < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        let _log2_max_frame_num_minus4 = bits.ue()?;
        match bits.ue()? {
            0 => {
                let _log2_max_pic_order_cnt_lsb_minus4 = bits.ue()?;
            }
            1 => {
                let _delta_pic_order_always_zero = bits.flag()?;
                let _offset_for_non_ref_pic = bits.se()?;
                let _offset_for_top_to_bottom_field = bits.se()?;
                let cycle_len = bits.ue()?;
                if cycle_len > 255 {
                    return Err(malformed(Self::WHAT, "POC cycle longer than 255"));
                }
                for _ in 0..cycle_len {
                    let _offset_for_ref_frame = bits.se()?;
                }
            }
            2 => {}
            _ => return Err(malformed(Self::WHAT, "pic_order_cnt_type above 2")),
        }
        let _max_num_ref_frames = bits.ue()?;
        let _gaps_in_frame_num_allowed = bits.flag()?;
        let width_in_mbs = u64::from(bits.ue()?) + 1;
        let height_in_map_units = u64::from(bits.ue()?) + 1;
        let frame_mbs_only = bits.flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = bits.flag()?;
        }
        let _direct_8x8_inference = bits.flag()?;
        let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0, 0, 0, 0);
        if bits.flag()? {
            crop_left = u64::from(bits.ue()?);
            crop_right = u64::from(bits.ue()?);
            crop_top = u64::from(bits.ue()?);
            crop_bottom = u64::from(bits.ue()?);
        }

        // Equations 7-18 to 7-22: cropping counts in chroma samples, and in field rows for
        // interlaced coding.
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (crop_unit_x, crop_unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let coded_width = width_in_mbs * 16;
        let coded_height = field_factor * height_in_map_units * 16;
        let width = coded_width
            .checked_sub(crop_unit_x * (crop_left + crop_right))
            .and_then(|width| u32::try_from(width).ok())
            .ok_or(malformed(Self::WHAT, "cropping wider than the picture"))?;
        let height = coded_height
            .checked_sub(crop_unit_y * (crop_top + crop_bottom))
            .and_then(|height| u32::try_from(height).ok())
            .ok_or(malformed(Self::WHAT, "cropping taller than the picture"))?;

        Ok(H264Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            chroma_format_idc: u8::try_from(chroma_format_idc).unwrap_or(u8::MAX),
            bit_depth_luma: u8::try_from(bit_depth_luma).unwrap_or(u8::MAX),
            frame_mbs_only,
            width,
            height,
        })
    }

    /// The profile name of H.264 annex A, as ffprobe shows it.
    pub fn profile_name(&self) -> &'static str {
        let constraint_set = |n: u8| self.constraint_flags & (0x80 >> n) != 0;
        match self.profile_idc {
            66 if constraint_set(1) => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 if constraint_set(3) => "High 10 Intra",
            110 => "High 10",
            122 if constraint_set(3) => "High 4:2:2 Intra",
            122 => "High 4:2:2",
            244 if constraint_set(3) => "High 4:4:4 Intra",
            244 => "High 4:4:4 Predictive",
            44 => "CAVLC 4:4:4 Intra",
            83 => "Scalable Baseline",
            86 => "Scalable High",
            118 => "Multiview High",
            128 => "Stereo High",
            134 => "MFC High",
            135 => "MFC Depth High",
            138 => "Multiview Depth High",
            139 => "Enhanced Multiview Depth High",
            _ => "unknown",
        }
    }

    /// The level as annex A writes it: "3.1", "4", or "1b".
    pub fn level(&self) -> String {
        let constraint_set3 = self.constraint_flags & 0x10 != 0;
        // Level 1b is signalled two ways (A.3.1, A.3.2).
        if self.level_idc == 9 || (self.level_idc == 11 && constraint_set3 && matches!(self.profile_idc, 66 | 77 | 88))
        {
            return "1b".to_owned();
        }
        format_level(u32::from(self.level_idc / 10), u32::from(self.level_idc % 10))
    }
}

fn format_level(major: u32, minor: u32) -> String {
    if minor == 0 { major.to_string() } else { format!("{major}.{minor}") }
}

/// Reads past a `scaling_list()` (H.264 7.3.2.1.1.1); its values do not affect the picture size.
fn skip_scaling_list(bits: &mut BitReader<'_>, size: usize) -> Result<(), FlvError> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta_scale = bits.se()?;
            next_scale = (last_scale + delta_scale).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// An `HEVCDecoderConfigurationRecord` (the payload of an HEVC sequence header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcDecoderConfig {
    /// Size in bytes of the length prefix of every NAL unit in coded frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// Video, sequence and picture parameter sets, NAL header included.
    pub vps: Vec<Vec<u8>>,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    /// The first SPS, decoded.
    pub sps_info: HevcSps,
}

impl HevcDecoderConfig {
    const WHAT: &'static str = "HEVCDecoderConfigurationRecord";
    /// The fixed part before `numOfArrays`.
    const FIXED_LEN: usize = 22;

    pub fn parse(record: &[u8]) -> Result<Self, FlvError> {
        let mut cursor = Cursor::new(record, malformed(Self::WHAT, "truncated"));
        let fixed: [u8; Self::FIXED_LEN] = cursor.array()?;
        if fixed.first() != Some(&1) {
            return Err(malformed(Self::WHAT, "configurationVersion is not 1"));
        }
        let length_size = fixed.last().map_or(0, |byte| byte & 0x03);
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let array_count = cursor.u8()?;
        for _ in 0..array_count {
            let nal_unit_type = cursor.u8()? & 0x3f;
            let nal_count = cursor.u16()?;
            for _ in 0..nal_count {
                let len = cursor.u16()?;
                let nal = cursor.take(usize::from(len))?;
                match nal_unit_type {
                    HEVC_NAL_VPS => vps.push(nal.to_vec()),
                    HEVC_NAL_SPS => sps.push(nal.to_vec()),
                    HEVC_NAL_PPS => pps.push(nal.to_vec()),
                    // SEI and others are not configuration a relay needs.
                    _ => {}
                }
            }
        }
        let first_sps = sps.first().ok_or(malformed(Self::WHAT, "no sequence parameter set"))?;
        let sps_info = HevcSps::parse(first_sps)?;
        Ok(HevcDecoderConfig { nal_length_size: length_size + 1, vps, sps, pps, sps_info })
    }
}

const HEVC_NAL_VPS: u8 = 32;
const HEVC_NAL_SPS: u8 = 33;
const HEVC_NAL_PPS: u8 = 34;

/// The fields of an HEVC sequence parameter set that describe the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    pub general_profile_idc: u8,
    /// False for Main tier, true for High tier.
    pub general_tier_flag: bool,
    pub general_level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    /// Displayed width, after the conformance window.
    pub width: u32,
    /// Displayed height, after the conformance window.
    pub height: u32,
}

impl HevcSps {
    const WHAT: &'static str = "HEVC SPS";
    /// A sub-layer's profile fields in `profile_tier_level()`, level excluded.
    const SUB_LAYER_PROFILE_BITS: u32 = 88;

    /// Parses an SPS NAL unit, two-byte header included, emulation-prevention bytes and all.
    pub fn parse(nal: &[u8]) -> Result<Self, FlvError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let rbsp = remove_emulation_prevention(nal.get(2..).ok_or(truncated)?);
        let mut bits = BitReader::new(&rbsp, truncated);
        let _vps_id = bits.bits(4)?;
        let max_sub_layers_minus1 = bits.bits(3)?;
        let _temporal_id_nesting = bits.flag()?;

        // profile_tier_level(1, max_sub_layers_minus1), H.265 7.3.3.
        let _general_profile_space = bits.bits(2)?;
        let general_tier_flag = bits.flag()?;
        let general_profile_idc = bits.bits(5)?;
        // Compatibility flags (32), source/constraint flags (4 + 43 + 1).
        bits.skip(32 + 48)?;
        let general_level_idc = bits.u8()?;
        let mut sub_layer_present = [(false, false); 8];
        for present in sub_layer_present.iter_mut().take(max_sub_layers_minus1 as usize) {
            *present = (bits.flag()?, bits.flag()?);
        }
        if max_sub_layers_minus1 > 0 {
            bits.skip(2 * (8 - max_sub_layers_minus1))?;
        }
        for (profile_present, level_present) in sub_layer_present.iter().take(max_sub_layers_minus1 as usize) {
            if *profile_present {
                bits.skip(Self::SUB_LAYER_PROFILE_BITS)?;
            }
            if *level_present {
                bits.skip(8)?;
            }
        }

        let _sps_id = bits.ue()?;
        let chroma_format_idc = bits.ue()?;
        if chroma_format_idc > 3 {
            return Err(malformed(Self::WHAT, "chroma_format_idc above 3"));
        }
        let separate_colour_plane = chroma_format_idc == 3 && bits.flag()?;
        let coded_width = u64::from(bits.ue()?);
        let coded_height = u64::from(bits.ue()?);
        let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
        if bits.flag()? {
            left = u64::from(bits.ue()?);
            right = u64::from(bits.ue()?);
            top = u64::from(bits.ue()?);
            bottom = u64::from(bits.ue()?);
        }
        let bit_depth_luma_minus8 = bits.ue()?;
        if bit_depth_luma_minus8 > 8 {
            return Err(malformed(Self::WHAT, "bit depth above 16"));
        }

        // The conformance window counts chroma samples (H.265 table 6-1, equation 7-1).
        let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let width = coded_width
            .checked_sub(sub_width * (left + right))
            .and_then(|width| u32::try_from(width).ok())
            .ok_or(malformed(Self::WHAT, "conformance window wider than the picture"))?;
        let height = coded_height
            .checked_sub(sub_height * (top + bottom))
            .and_then(|height| u32::try_from(height).ok())
            .ok_or(malformed(Self::WHAT, "conformance window taller than the picture"))?;

        Ok(HevcSps {
            general_profile_idc: u8::try_from(general_profile_idc).unwrap_or(u8::MAX),
            general_tier_flag,
            general_level_idc,
            chroma_format_idc: u8::try_from(chroma_format_idc).unwrap_or(u8::MAX),
            bit_depth_luma: u8::try_from(8 + bit_depth_luma_minus8).unwrap_or(u8::MAX),
            width,
            height,
        })
    }

    /// The profile name of H.265 annex A, as ffprobe shows it.
    pub fn profile_name(&self) -> &'static str {
        match self.general_profile_idc {
            1 => "Main",
            2 => "Main 10",
            3 => "Main Still Picture",
            4 => "Rext",
            5 => "High Throughput 4:4:4",
            9 => "Screen Content Coding",
            _ => "unknown",
        }
    }

    /// The level as annex A writes it ("4.1"): `general_level_idc` is 30 times the level.
    pub fn level(&self) -> String {
        let idc = u32::from(self.general_level_idc);
        format_level(idc / 30, (idc % 30) / 3)
    }
}

/// Strips the `0x03` of every `00 00 03` sequence: the encoder added it so the payload never
/// mimics a start code, and exp-Golomb parsing must not see it.
fn remove_emulation_prevention(escaped: &[u8]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(escaped.len());
    let mut zeros = 0;
    for &byte in escaped {
        if zeros >= 2 && byte == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        rbsp.push(byte);
    }
    rbsp
}

/// MSB-first bit reader with exp-Golomb codes (H.264 9.1), for parameter sets and the
/// `AudioSpecificConfig`.
struct BitReader<'a> {
    data: &'a [u8],
    bit_pos: usize,
    exhausted: FlvError,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], exhausted: FlvError) -> Self {
        BitReader { data, bit_pos: 0, exhausted }
    }

    fn bits_left(&self) -> usize {
        self.data.len().saturating_mul(8).saturating_sub(self.bit_pos)
    }

    fn flag(&mut self) -> Result<bool, FlvError> {
        let byte = self.data.get(self.bit_pos / 8).ok_or(self.exhausted)?;
        let bit = (byte >> (7 - self.bit_pos % 8)) & 1;
        self.bit_pos += 1;
        Ok(bit == 1)
    }

    /// Reads up to 32 bits as an unsigned number.
    fn bits(&mut self, count: u32) -> Result<u32, FlvError> {
        debug_assert!(count <= 32);
        let mut value: u64 = 0;
        for _ in 0..count {
            value = (value << 1) | u64::from(self.flag()?);
        }
        u32::try_from(value).map_err(|_| self.exhausted)
    }

    fn u8(&mut self) -> Result<u8, FlvError> {
        let value = self.bits(8)?;
        u8::try_from(value).map_err(|_| self.exhausted)
    }

    fn skip(&mut self, count: u32) -> Result<(), FlvError> {
        let count = count as usize;
        if count > self.bits_left() {
            return Err(self.exhausted);
        }
        self.bit_pos += count;
        Ok(())
    }

    /// ue(v): unsigned exp-Golomb.
    fn ue(&mut self) -> Result<u32, FlvError> {
        let mut leading_zeros = 0;
        while !self.flag()? {
            leading_zeros += 1;
            // 32 leading zeros would encode a value beyond u32; no valid stream has one.
            if leading_zeros > 31 {
                return Err(self.exhausted);
            }
        }
        let suffix = u64::from(self.bits(leading_zeros)?);
        let value = (1u64 << leading_zeros) - 1 + suffix;
        u32::try_from(value).map_err(|_| self.exhausted)
    }

    /// se(v): signed exp-Golomb, mapped 1, -1, 2, -2...
    fn se(&mut self) -> Result<i64, FlvError> {
        let code = i64::from(self.ue()?);
        Ok(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) })
    }
}

/// An AAC `AudioSpecificConfig` (the payload of an AAC sequence header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// The signalled audio object type: 2 for LC, 5 for SBR (HE-AAC), 29 for PS (HE-AACv2)...
    pub object_type: u8,
    /// Output sample rate: for HE-AAC the SBR rate, twice the core's.
    pub sample_rate: u32,
    /// Output channels; 0 when the layout is in a program config element this does not parse.
    /// Parametric stereo decodes to 2 channels from a mono core.
    pub channels: u8,
    /// Spectral band replication is present (explicitly or by backward-compatible signalling).
    pub sbr: bool,
    /// Parametric stereo is present.
    pub ps: bool,
}

const AOT_SBR: u32 = 5;
const AOT_PS: u32 = 29;
/// `syncExtensionType` values of backward-compatible SBR/PS signalling (14496-3, 1.6.5.2).
const SYNC_EXTENSION_SBR: u32 = 0x2b7;
const SYNC_EXTENSION_PS: u32 = 0x548;

impl AacConfig {
    const WHAT: &'static str = "AudioSpecificConfig";
    const SAMPLE_RATES: [u32; 13] =
        [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];

    pub fn parse(asc: &[u8]) -> Result<Self, FlvError> {
        let mut bits = BitReader::new(asc, malformed(Self::WHAT, "truncated"));
        let mut object_type = read_audio_object_type(&mut bits)?;
        let signalled_object_type = object_type;
        let core_rate = Self::read_sample_rate(&mut bits)?;
        let channel_config = bits.bits(4)?;
        let mut sample_rate = core_rate;
        let mut sbr = false;
        let mut ps = false;
        if object_type == AOT_SBR || object_type == AOT_PS {
            // Explicit hierarchical signalling: the extension rate, then the core object type.
            sbr = true;
            ps = object_type == AOT_PS;
            sample_rate = Self::read_sample_rate(&mut bits)?;
            object_type = read_audio_object_type(&mut bits)?;
        }
        if !sbr
            && channel_config != 0
            && let Some(extension) = Self::backward_compatible_extension(&mut bits, object_type)
        {
            sbr = extension.sbr;
            ps = extension.ps;
            if let Some(rate) = extension.sample_rate {
                sample_rate = rate;
            }
        }
        let channels = match channel_config {
            1 if ps => 2,
            1..=6 => channel_config,
            7 | 12 | 14 => 8,
            11 => 7,
            13 => 24,
            _ => 0,
        };
        Ok(AacConfig {
            object_type: u8::try_from(signalled_object_type).unwrap_or(u8::MAX),
            sample_rate,
            channels: u8::try_from(channels).unwrap_or(0),
            sbr,
            ps,
        })
    }

    /// The profile as ffprobe names it.
    pub fn profile_name(&self) -> &'static str {
        if self.ps {
            return "HE-AACv2";
        }
        if self.sbr {
            return "HE-AAC";
        }
        match self.object_type {
            1 => "Main",
            2 => "LC",
            3 => "SSR",
            4 => "LTP",
            23 => "LD",
            39 => "ELD",
            42 => "xHE-AAC",
            _ => "unknown",
        }
    }

    fn read_sample_rate(bits: &mut BitReader<'_>) -> Result<u32, FlvError> {
        match bits.bits(4)? {
            0x0f => bits.bits(24),
            index => Self::SAMPLE_RATES
                .get(index as usize)
                .copied()
                .ok_or(malformed(Self::WHAT, "reserved sampling frequency index")),
        }
    }

    /// Looks past the `GASpecificConfig` for the SBR/PS sync extensions some encoders append to
    /// a plain LC config. Anything unexpected means "no extension": it is optional data.
    fn backward_compatible_extension(bits: &mut BitReader<'_>, object_type: u32) -> Option<SbrExtension> {
        // GASpecificConfig (14496-3, 4.4.1) for the object types that have one.
        if !matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23) {
            return None;
        }
        let _frame_length_flag = bits.flag().ok()?;
        if bits.flag().ok()? {
            let _core_coder_delay = bits.bits(14).ok()?;
        }
        let extension_flag = bits.flag().ok()?;
        if matches!(object_type, 6 | 20) {
            let _layer_nr = bits.bits(3).ok()?;
        }
        if extension_flag {
            if object_type == 22 {
                bits.skip(5 + 11).ok()?;
            }
            if matches!(object_type, 17 | 19 | 20 | 23) {
                bits.skip(3).ok()?;
            }
            let _extension_flag3 = bits.flag().ok()?;
        }
        if bits.bits_left() < 16 || bits.bits(11).ok()? != SYNC_EXTENSION_SBR {
            return None;
        }
        if read_audio_object_type(bits).ok()? != AOT_SBR {
            return None;
        }
        let mut extension = SbrExtension { sbr: bits.flag().ok()?, ps: false, sample_rate: None };
        if extension.sbr {
            extension.sample_rate = Some(Self::read_sample_rate(bits).ok()?);
            if bits.bits_left() >= 12 && bits.bits(11).ok()? == SYNC_EXTENSION_PS {
                extension.ps = bits.flag().ok()?;
            }
        }
        Some(extension)
    }
}

struct SbrExtension {
    sbr: bool,
    ps: bool,
    sample_rate: Option<u32>,
}

/// GetAudioObjectType(): 5 bits, with 31 escaping to 32 + 6 more bits.
fn read_audio_object_type(bits: &mut BitReader<'_>) -> Result<u32, FlvError> {
    match bits.bits(5)? {
        31 => Ok(32 + bits.bits(6)?),
        object_type => Ok(object_type),
    }
}

/// The `OpusHead` identification header (RFC 7845, 5.1) an E-RTMP Opus sequence start carries.
struct OpusHead {
    channels: u8,
}

impl OpusHead {
    fn parse(payload: &[u8]) -> Option<Self> {
        match payload {
            [b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', _version, channels, ..] => {
                Some(OpusHead { channels: *channels })
            }
            _ => None,
        }
    }
}

/// The 4-byte header of an MPEG audio frame (ISO/IEC 11172-3, 2.4.1.3), for the real rate of an
/// MP3 stream: the FLV flags cannot say 48 kHz.
struct Mp3FrameHeader {
    sample_rate: u32,
    channels: u8,
}

impl Mp3FrameHeader {
    fn parse(payload: &[u8]) -> Option<Self> {
        let [0xff, second, third, fourth, ..] = *payload else {
            return None;
        };
        if second & 0xe0 != 0xe0 {
            return None;
        }
        let mpeg1_rate = match (third >> 2) & 0x03 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let sample_rate = match (second >> 3) & 0x03 {
            0b11 => mpeg1_rate,
            0b10 => mpeg1_rate / 2,
            0b00 => mpeg1_rate / 4,
            _ => return None,
        };
        let channels = if fourth >> 6 == 0b11 { 1 } else { 2 };
        Some(Mp3FrameHeader { sample_rate, channels })
    }
}

// ---------------------------------------------------------------------------------------------
// FLV file framing
// ---------------------------------------------------------------------------------------------

/// Appends the 9-byte FLV header and `PreviousTagSize0`.
pub fn write_file_header(has_audio: bool, has_video: bool, out: &mut Vec<u8>) {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    out.extend_from_slice(b"FLV");
    out.push(1);
    out.push(flags);
    out.extend_from_slice(&(FILE_HEADER_LEN as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// The bytes that frame a tag body: the 11-byte tag header before it and the `PreviousTagSize`
/// after it. Separate from the body so a writer can send header, shared body and trailer in one
/// vectored write without copying the body.
pub fn tag_framing(
    tag_type: u8,
    timestamp_ms: u32,
    body_len: usize,
) -> Result<([u8; TAG_HEADER_LEN], [u8; PREVIOUS_TAG_SIZE_LEN]), FlvError> {
    if body_len > MAX_TAG_BODY_LEN {
        return Err(FlvError::BodyTooLarge(body_len));
    }
    let [_, len_hi, len_mid, len_lo] = (body_len as u32).to_be_bytes();
    // The low 24 bits come first and the top 8 bits last ("TimestampExtended").
    let [ts_top, ts_hi, ts_mid, ts_lo] = timestamp_ms.to_be_bytes();
    let header = [tag_type, len_hi, len_mid, len_lo, ts_hi, ts_mid, ts_lo, ts_top, 0, 0, 0];
    let previous_tag_size = ((TAG_HEADER_LEN + body_len) as u32).to_be_bytes();
    Ok((header, previous_tag_size))
}

/// Appends one complete tag: header, body and `PreviousTagSize`.
pub fn write_tag(tag_type: u8, timestamp_ms: u32, body: &[u8], out: &mut Vec<u8>) -> Result<(), FlvError> {
    let (header, previous_tag_size) = tag_framing(tag_type, timestamp_ms, body.len())?;
    out.reserve(TAG_HEADER_LEN + body.len() + PREVIOUS_TAG_SIZE_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out.extend_from_slice(&previous_tag_size);
    Ok(())
}

/// The FLV file header's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvFileHeader {
    pub version: u8,
    pub has_audio: bool,
    pub has_video: bool,
}

/// One tag read from an FLV file, borrowing its body from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvTag<'a> {
    /// 8 audio, 9 video, 18 script data; other values are passed through.
    pub tag_type: u8,
    pub timestamp_ms: u32,
    /// The tag is encrypted (the `Filter` bit); its body is not a plain media body.
    pub filtered: bool,
    pub body: &'a [u8],
}

impl FlvTag<'_> {
    pub fn media_kind(&self) -> Option<MediaKind> {
        MediaKind::from_tag_type(self.tag_type)
    }
}

/// Streaming FLV file reader: the header first, then one tag per call.
#[derive(Debug, Default, Clone)]
pub struct FlvReader {
    header: Option<FlvFileHeader>,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The file header, once it has been read.
    pub fn header(&self) -> Option<&FlvFileHeader> {
        self.header.as_ref()
    }

    /// Reads the next tag from the front of `buf` (the file header first, on the first call
    /// that has it) and advances `buf` past what was consumed.
    ///
    /// - `Ok(Some(tag))`: a whole tag and its `PreviousTagSize` were consumed.
    /// - `Ok(None)`: `buf` is empty at a tag boundary; at end of file, a clean end.
    /// - `Err(FlvError::Incomplete)`: `buf` holds part of a header or tag; nothing was consumed.
    ///   Call again with more bytes appended (at end of file: a truncated file).
    ///
    /// `PreviousTagSize` is skipped, not checked: writers get it wrong and it is redundant.
    pub fn read_tag<'a>(&mut self, buf: &mut &'a [u8]) -> Result<Option<FlvTag<'a>>, FlvError> {
        if self.header.is_none() {
            if buf.is_empty() {
                return Ok(None);
            }
            let (header, rest) = parse_file_header(buf)?;
            self.header = Some(header);
            *buf = rest;
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let mut cursor = Cursor::new(buf, FlvError::Incomplete);
        let type_byte = cursor.u8()?;
        let body_len = usize::try_from(cursor.u24()?).map_err(|_| FlvError::Incomplete)?;
        let [ts_hi, ts_mid, ts_lo, ts_top] = cursor.array()?;
        let _stream_id = cursor.u24()?;
        let body = cursor.take(body_len)?;
        let _previous_tag_size = cursor.u32()?;
        *buf = cursor.rest;
        Ok(Some(FlvTag {
            tag_type: type_byte & 0x1f,
            timestamp_ms: u32::from_be_bytes([ts_top, ts_hi, ts_mid, ts_lo]),
            filtered: type_byte & 0x20 != 0,
            body,
        }))
    }
}

/// Parses the file header and `PreviousTagSize0`, returning what follows them.
fn parse_file_header(buf: &[u8]) -> Result<(FlvFileHeader, &[u8]), FlvError> {
    // Check the signature on whatever has arrived, so a non-FLV stream fails at once instead of
    // waiting for nine bytes.
    let signature_len = buf.len().min(3);
    if buf.get(..signature_len) != b"FLV".get(..signature_len) {
        return Err(FlvError::BadSignature);
    }
    let mut cursor = Cursor::new(buf, FlvError::Incomplete);
    let [_, _, _, version, flags] = cursor.array()?;
    let data_offset = cursor.u32()?;
    if data_offset < FILE_HEADER_LEN as u32 {
        return Err(FlvError::BadHeader("DataOffset is smaller than the header"));
    }
    if data_offset > MAX_FILE_HEADER_DATA_OFFSET {
        return Err(FlvError::BadHeader("DataOffset is implausibly large"));
    }
    cursor.take(data_offset as usize - FILE_HEADER_LEN)?;
    let _previous_tag_size0 = cursor.u32()?;
    let header = FlvFileHeader { version, has_audio: flags & 0x04 != 0, has_video: flags & 0x01 != 0 };
    Ok((header, cursor.rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| {
                let pair = std::str::from_utf8(pair).expect("ascii");
                u8::from_str_radix(pair, 16).expect("hex digit pair")
            })
            .collect()
    }

    // Sequence-header tag bodies as ffmpeg 5.1 + libx264 write them to FLV
    // (`ffmpeg -f lavfi -i testsrc=size=WxH:rate=30 -t 1 -pix_fmt yuv420p -c:v libx264 -f flv`),
    // cut from the files byte for byte.
    const AVC_720P_HIGH: &str =
        "17000000000164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
    const AVC_240P_BASELINE: &str =
        "17000000000142c00dffe100186742c00dd90141fb0110000003001000000303c0f142a48001000568cb83cb20";
    /// 1920x1080 is coded as 1088 rows and cropped by 8.
    const AVC_1080P_MAIN: &str =
        "1700000000014d4028ffe1001a674d4028eca03c0113f2e022000003000200000300781e30632c01000568ebe3cb20";
    /// 720x576 interlaced (`-flags +ildct+ilme`): frame_mbs_only_flag = 0.
    const AVC_576I_HIGH: &str =
        "17000000000164001effe100186764001eacd940b424d8088000000300800000190f8a14cb01000668fba3cb22c0fdf8f800";
    /// 426x240: coded 432 wide, cropped by 6 columns (3 chroma units at 4:2:0).
    const AVC_426X240_HIGH: &str =
        "170000000001640015ffe1001a67640015acd941b1fe4f0110000003001000000303c0f162d96001000668ebe3cb22c0fdf8f800";
    /// 426x240 at 4:4:4 (`-pix_fmt yuv444p`): crop unit of 1, scaling-matrix profile path.
    const AVC_426X240_444: &str =
        "170000000001f40015ffe1001a67f40015919b28363fcfe022000003000200000300781e2c5b2c01000668ebe3c44844fff8f800";

    // hvcC records written by ffmpeg 5.1 + libx265 into MP4, with the SEI array dropped.
    const HVCC_720P_MAIN: &str = "0101600000009000000000005df000fcfdf8f800000f03a00001001840010c01ffff01600000030090000003000003005d959809a10001002b42010101600000030090000003000003005da00280802d165959a4932bc05a020000030002000003003c10a2000100074401c172b46240";
    const HVCC_1080P_MAIN10: &str = "01022000000090000000000078f000fcfdfafa00000f03200001001840010c01ffff022000000300900000030000030078959809210001002c420101022000000300900000030000030078a003c08010e4d96566924caf016808000003000800000300f04022000100074401c172b46240";
    /// 426x240: coded 432 wide with a conformance window.
    const HVCC_426X240_MAIN: &str = "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002b42010101600000030090000003000003003ca00d880f1c9e5959a4932bc05a020000030002000003003c1022000100074401c172b46240";

    /// An SPS NAL from its first four bytes and the rest written as a string of bits.
    fn sps_from_bits(first_bytes: [u8; 4], bit_string: &str) -> Vec<u8> {
        let bits: Vec<u8> = bit_string.bytes().filter(|b| *b == b'0' || *b == b'1').map(|b| b - b'0').collect();
        let mut nal = first_bytes.to_vec();
        for chunk in bits.chunks(8) {
            let mut byte = 0u8;
            for (i, bit) in chunk.iter().enumerate() {
                byte |= bit << (7 - i);
            }
            nal.push(byte);
        }
        nal
    }

    fn video_info(body_hex: &str) -> CodecInfo {
        parse_codec_info(MediaKind::Video, &hex(body_hex)).expect("sequence header parses")
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
    fn sps_with_scaling_matrices_and_poc_type_1() {
        // A hand-built High-profile SPS exercising the paths x264 never takes: a scaling list
        // (list 0 present, all deltas 0 after the first so next_scale sticks), POC type 1 and
        // frame cropping. Bits, in order:
        //   sps_id ue(0)=1, chroma_format_idc ue(1)=010, bit_depth_luma ue(0)=1,
        //   bit_depth_chroma ue(0)=1, bypass 0, seq_scaling_matrix_present 1,
        //   list0 present 1 + delta se(-8)=0001 0000 (next_scale 0: list ends), lists 1..7: 0,
        //   log2_max_frame_num ue(0)=1, poc_type ue(1)=010, always_zero 1, non_ref se(0)=1,
        //   top_to_bottom se(0)=1, cycle ue(1)=010, offset se(0)=1,
        //   max_ref ue(1)=010, gaps 0, width_mbs-1 ue(3)=00100, height_units-1 ue(2)=011,
        //   frame_mbs_only 1, direct_8x8 1, cropping 1, left ue(0)=1, right ue(1)=010,
        //   top ue(0)=1, bottom ue(2)=011
        let bit_string = "1 010 1 1 0 1 1 000010001 0000000 1 010 1 1 1 010 1 010 0 00100 011 1 1 1 1 010 1 011";
        let sps = H264Sps::parse(&sps_from_bits([0x67, 100, 0, 30], bit_string)).expect("parses");
        // 4 MBs = 64 wide minus 2 * (0 + 1); 3 map units = 48 high minus 2 * (0 + 2).
        assert_eq!((sps.width, sps.height), (62, 44));
        assert_eq!(sps.profile_name(), "High");
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            remove_emulation_prevention(&[0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x00, 0x03]),
            [0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03]
        );
    }

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00111 -> ue 0, 1, 2, 3, 6
        let data = [0b1010_0110, 0b0100_0011, 0b1000_0000];
        let mut bits = BitReader::new(&data, FlvError::TooShort);
        let values: Vec<u32> = (0..5).map(|_| bits.ue().expect("code")).collect();
        assert_eq!(values, [0, 1, 2, 3, 6]);
        let data = [0b0100_1100, 0b1000_0000]; // se: 010 -> 1, 011 -> -1, 00100 -> 2
        let mut bits = BitReader::new(&data, FlvError::TooShort);
        assert_eq!(bits.se(), Ok(1));
        assert_eq!(bits.se(), Ok(-1));
        assert_eq!(bits.se(), Ok(2));
        // 32 leading zeros: refused rather than overflowing.
        let mut bits = BitReader::new(&[0, 0, 0, 0, 0xff], FlvError::TooShort);
        assert_eq!(bits.ue(), Err(FlvError::TooShort));
        // The largest representable code: 31 zeros, a one, 31 ones.
        let mut bits = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe], FlvError::TooShort);
        assert_eq!(bits.ue(), Ok(u32::MAX - 1));
    }

    #[test]
    fn hevc_records() {
        let config = HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).expect("parses");
        assert_eq!(config.nal_length_size, 4);
        assert_eq!((config.vps.len(), config.sps.len(), config.pps.len()), (1, 1, 1));
        assert_eq!(config.sps_info.profile_name(), "Main");
        assert_eq!(config.sps_info.level(), "3.1");
        assert_eq!((config.sps_info.width, config.sps_info.height), (1280, 720));

        let config = HevcDecoderConfig::parse(&hex(HVCC_1080P_MAIN10)).expect("parses");
        assert_eq!(config.sps_info.profile_name(), "Main 10");
        assert_eq!(config.sps_info.bit_depth_luma, 10);
        assert_eq!(config.sps_info.level(), "4");
        assert_eq!((config.sps_info.width, config.sps_info.height), (1920, 1080));

        let config = HevcDecoderConfig::parse(&hex(HVCC_426X240_MAIN)).expect("parses");
        assert_eq!(config.sps_info.level(), "2");
        assert_eq!((config.sps_info.width, config.sps_info.height), (426, 240));
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
    fn aac_configs() {
        let lc_44100_stereo = AacConfig::parse(&[0x12, 0x10]).expect("parses");
        assert_eq!(
            lc_44100_stereo,
            AacConfig { object_type: 2, sample_rate: 44_100, channels: 2, sbr: false, ps: false }
        );
        assert_eq!(lc_44100_stereo.profile_name(), "LC");

        // 00010 0011 0001 000: LC, 48 kHz, mono.
        let lc_48000_mono = AacConfig::parse(&[0x11, 0x88]).expect("parses");
        assert_eq!((lc_48000_mono.sample_rate, lc_48000_mono.channels), (48_000, 1));

        // Explicit HE-AAC: 00101 0110 (24 kHz core) 0010 0011 (48 kHz SBR) 00010 (LC core).
        let he_aac = AacConfig::parse(&[0x2b, 0x11, 0x88, 0x00]).expect("parses");
        assert_eq!(he_aac.profile_name(), "HE-AAC");
        assert_eq!((he_aac.sample_rate, he_aac.channels), (48_000, 2));

        // Explicit HE-AACv2: 11101 0110 0001 (mono core) 0011 00010 -> parametric stereo.
        let he_aac_v2 = AacConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).expect("parses");
        assert_eq!(he_aac_v2.profile_name(), "HE-AACv2");
        assert_eq!((he_aac_v2.sample_rate, he_aac_v2.channels), (48_000, 2));

        // Backward-compatible SBR: LC 24 kHz stereo, GASpecificConfig 000, then sync 0x2b7,
        // AOT 5, sbr 1, rate index 3 (48 kHz): 00010 0110 0010 000 | 01010110111 00101 1 0011
        let implicit = AacConfig::parse(&[0x13, 0x10, 0x56, 0xe5, 0x98]).expect("parses");
        assert!(implicit.sbr);
        assert_eq!(implicit.object_type, 2);
        assert_eq!(implicit.profile_name(), "HE-AAC");
        assert_eq!(implicit.sample_rate, 48_000);

        // Explicit 24-bit rate: 00010 1111 <8000 as 24 bits> 0001 (mono), zero padding.
        let explicit_rate = AacConfig::parse(&[0x17, 0x80, 0x0f, 0xa0, 0x08]).expect("parses");
        assert_eq!((explicit_rate.sample_rate, explicit_rate.channels), (8_000, 1));

        // 7.1 (channel configuration 7 is 8 channels).
        let surround = AacConfig::parse(&[0x11, 0xb8]).expect("parses");
        assert_eq!(surround.channels, 8);

        // Escaped object type 31 -> 32 + 10 = 42 (USAC): 11111 001010 0011 0010 ...
        let usac = AacConfig::parse(&[0xf9, 0x46, 0x40]).expect("parses");
        assert_eq!(usac.object_type, 42);
        assert_eq!(usac.profile_name(), "xHE-AAC");

        assert!(matches!(
            AacConfig::parse(&[0x16, 0x90]), // rate index 13 is reserved
            Err(FlvError::Malformed { .. })
        ));
        assert!(matches!(AacConfig::parse(&[0x12]), Err(FlvError::Malformed { .. })));
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

    #[test]
    fn hostile_configs_are_errors() {
        let no_sps = [1, 100, 0, 31, 0xff, 0xe0, 0];
        assert!(matches!(AvcDecoderConfig::parse(&no_sps), Err(FlvError::Malformed { .. })));
        let wrong_version = [0, 100, 0, 31, 0xff, 0xe1, 0, 0];
        assert!(AvcDecoderConfig::parse(&wrong_version).is_err());
        // One MB (16 pixels) wide, cropped by 2 * 9 columns.
        let over_cropped = sps_from_bits([0x67, 66, 0xc0, 30], "1 1 011 1 0 1 1 1 1 1 0001010 1 1 1");
        assert!(matches!(H264Sps::parse(&over_cropped), Err(FlvError::Malformed { .. })));
        // The same, cropped by exactly the picture: a zero width is reported, not a panic.
        let fully_cropped = sps_from_bits([0x67, 66, 0xc0, 30], "1 1 011 1 0 1 1 1 1 1 0001001 1 1 1");
        assert_eq!(H264Sps::parse(&fully_cropped).map(|sps| sps.width), Ok(0));
        // The largest ue(v) as the width: no overflow, just a width too large for u32.
        let huge_width =
            sps_from_bits([0x67, 66, 0xc0, 30], &format!("1 1 011 1 0 {}1{} 1 1 1 0", "0".repeat(31), "1".repeat(31)));
        assert!(H264Sps::parse(&huge_width).is_err());
        // An hvcC cut right before numOfArrays.
        assert!(HevcDecoderConfig::parse(&[1; 22]).is_err());
    }

    /// A small deterministic generator, so the garbage test needs no extra crate.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

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

    fn sample_file() -> Vec<u8> {
        let mut file = Vec::new();
        write_file_header(true, true, &mut file);
        write_tag(TAG_TYPE_SCRIPT_DATA, 0, &[0x02, 0x00, 0x00], &mut file).expect("fits");
        write_tag(TAG_TYPE_VIDEO, 0, &hex(AVC_720P_HIGH), &mut file).expect("fits");
        write_tag(TAG_TYPE_AUDIO, 0x0123_4567, &[0xaf, 0x01, 0x21], &mut file).expect("fits");
        file
    }

    #[test]
    fn file_header_and_tag_bytes() {
        let mut header = Vec::new();
        write_file_header(true, true, &mut header);
        assert_eq!(header, b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        let mut video_only = Vec::new();
        write_file_header(false, true, &mut video_only);
        assert_eq!(video_only[4], 0x01);

        let mut tag = Vec::new();
        write_tag(TAG_TYPE_AUDIO, 0x0123_4567, &[0xaf, 0x01, 0x21], &mut tag).expect("fits");
        assert_eq!(
            tag,
            [
                0x08, 0x00, 0x00, 0x03, // type, size
                0x23, 0x45, 0x67, 0x01, // low 24 bits, then the extended byte
                0x00, 0x00, 0x00, // stream id
                0xaf, 0x01, 0x21, // body
                0x00, 0x00, 0x00, 0x0e, // previous tag size 11 + 3
            ]
        );

        assert_eq!(
            tag_framing(TAG_TYPE_VIDEO, 0, MAX_TAG_BODY_LEN + 1),
            Err(FlvError::BodyTooLarge(MAX_TAG_BODY_LEN + 1))
        );
        assert!(tag_framing(TAG_TYPE_VIDEO, 0, MAX_TAG_BODY_LEN).is_ok());
    }

    #[test]
    fn reader_round_trip() {
        let file = sample_file();
        let mut reader = FlvReader::new();
        let mut buf = &file[..];
        let mut tags = Vec::new();
        while let Some(tag) = reader.read_tag(&mut buf).expect("reads") {
            tags.push(tag);
        }
        assert_eq!(reader.header(), Some(&FlvFileHeader { version: 1, has_audio: true, has_video: true }));
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[0].media_kind(), Some(MediaKind::Data));
        assert_eq!(tags[1].body, hex(AVC_720P_HIGH));
        assert_eq!(tags[2].timestamp_ms, 0x0123_4567);
        assert_eq!(tags[2].body, &[0xaf, 0x01, 0x21]);
        assert!(!tags[2].filtered);
    }

    #[test]
    fn reader_needs_more_bytes_at_every_cut() {
        let file = sample_file();
        let boundaries = [0, 13, 13 + 11 + 3 + 4, file.len() - (11 + 3 + 4), file.len()];
        for cut in 0..=file.len() {
            // Feed the file in two pieces, as a socket would.
            let mut reader = FlvReader::new();
            let mut first = &file[..cut];
            let mut tags = 0;
            loop {
                match reader.read_tag(&mut first) {
                    Ok(Some(_)) => tags += 1,
                    Ok(None) => {
                        assert!(boundaries.contains(&cut), "clean end at {cut}");
                        break;
                    }
                    Err(FlvError::Incomplete) => {
                        assert!(!boundaries.contains(&cut), "incomplete at {cut}");
                        break;
                    }
                    Err(other) => panic!("cut {cut}: {other}"),
                }
            }
            let mut pending = first.to_vec();
            pending.extend_from_slice(&file[cut..]);
            let mut rest = &pending[..];
            while reader.read_tag(&mut rest).expect("rest reads").is_some() {
                tags += 1;
            }
            assert_eq!(tags, 3, "cut {cut}");
        }
    }

    /// The first 279 bytes of the 1280x720 file ffmpeg wrote: header, `onMetaData`, and the
    /// AVC sequence header.
    const FFMPEG_FLV_START: &str = "
        464c5601010000000900000000120000b80000000000000002000a6f6e4d657461446174610800000008000864757261
        74696f6e003ff1126e978d4fdf000577696474680040940000000000000006686569676874004086800000000000000d
        766964656f646174617261746500000000000000000000096672616d657261746500403e000000000000000c76696465
        6f636f646563696400401c0000000000000007656e636f64657202000d4c61766635392e32372e313030000866696c65
        73697a650040d4a1c000000000000009000000c3090000340000000000000017000000000164001fffe1001a6764001f
        acd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f8000000003f";

    #[test]
    fn reader_reads_what_ffmpeg_writes() {
        use crate::protocol::amf0::{self, Amf0Value};

        let file = hex(FFMPEG_FLV_START);
        let mut reader = FlvReader::new();
        let mut buf = &file[..];
        let metadata = reader.read_tag(&mut buf).expect("reads").expect("a tag");
        assert_eq!(reader.header(), Some(&FlvFileHeader { version: 1, has_audio: false, has_video: true }));
        assert_eq!(metadata.media_kind(), Some(MediaKind::Data));
        let values = amf0::decode_all(metadata.body).expect("AMF0");
        assert_eq!(values.first().and_then(Amf0Value::as_str), Some("onMetaData"));
        let properties = values.get(1).expect("the metadata array");
        assert_eq!(properties.get("width").and_then(Amf0Value::as_f64), Some(1280.0));
        assert_eq!(properties.get("encoder").and_then(Amf0Value::as_str), Some("Lavf59.27.100"));

        let video = reader.read_tag(&mut buf).expect("reads").expect("a tag");
        assert_eq!(video.media_kind(), Some(MediaKind::Video));
        assert_eq!(video.body, hex(AVC_720P_HIGH));
        assert_eq!(reader.read_tag(&mut buf), Ok(None));
    }

    #[test]
    fn reader_rejects_bad_headers() {
        let mut reader = FlvReader::new();
        assert_eq!(reader.read_tag(&mut &b"RTMP"[..]), Err(FlvError::BadSignature));
        assert_eq!(reader.read_tag(&mut &b"FX"[..]), Err(FlvError::BadSignature));
        assert_eq!(reader.read_tag(&mut &b"FL"[..]), Err(FlvError::Incomplete));
        let small_offset = b"FLV\x01\x05\x00\x00\x00\x05\x00\x00\x00\x00";
        assert!(matches!(reader.read_tag(&mut &small_offset[..]), Err(FlvError::BadHeader(_))));
        let huge_offset = b"FLV\x01\x05\xff\xff\xff\xff";
        assert!(matches!(reader.read_tag(&mut &huge_offset[..]), Err(FlvError::BadHeader(_))));
        // A longer header (DataOffset 12) is skipped.
        let mut long_header = b"FLV\x01\x01\x00\x00\x00\x0c\xaa\xbb\xcc\x00\x00\x00\x00".to_vec();
        write_tag(TAG_TYPE_VIDEO, 7, &[0x17, 0x02], &mut long_header).expect("fits");
        let mut buf = &long_header[..];
        let tag = reader.read_tag(&mut buf).expect("reads").expect("a tag");
        assert_eq!(tag.timestamp_ms, 7);
        assert!(buf.is_empty());
    }
}
