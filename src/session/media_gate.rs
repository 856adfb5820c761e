//! A publish held for `on_media` (docs/hooks.md, "Media admission"): what its media has shown
//! so far, and whether it is known enough to ask.
//!
//! Sans-IO, like the lifecycle's timers: [`MediaGate::observe`] is given each packet the hub
//! parsed and when it arrived, [`MediaGate::is_known`] says whether to ask now, and
//! [`MediaGate::describe`] is what the callback is told. The packets themselves wait in the
//! hub (the held stream's GOP cache), not here.
//!
//! "Known" is the first of:
//! - every track the publisher declared (onMetaData's `videocodecid`/`audiocodecid`, an
//!   ANNOUNCE's media sections; video and audio when it declared nothing) has its sequence
//!   header, or for a codec without one (MP3, G.711, legacy FLV video) a frame;
//! - a publisher that declared nothing sent a video keyframe after one track's header: FLV
//!   muxers send every header before the first frame, so no other track is coming;
//! - [`MEDIA_WAIT`] passed since the publish started: ask with what is there.

use std::time::{Duration, Instant};

use crate::hooks::media::{MediaDescription, TrackDescription};
use crate::hub::{Packet, PacketKind};
use crate::protocol::amf0::{self, Amf0Value};
use crate::protocol::codec::{AvcDecoderConfig, Codec, CodecInfo};
use crate::protocol::flv::{self, MediaKind};

/// How long a publish whose declared tracks have not all shown up is held before `on_media`
/// is asked with the tracks it has. Checked as media arrives.
pub const MEDIA_WAIT: Duration = Duration::from_secs(2);

/// What a held publish has shown of its media.
#[derive(Debug)]
pub struct MediaGate {
    started: Instant,
    /// The tracks the publisher said it sends (video, audio); `None` until it says.
    declared: Option<(bool, bool)>,
    /// What onMetaData stated: frame rate, video and audio kbit/s (values above 0 only).
    stated: Stated,
    video: Track,
    audio: Track,
    /// A video keyframe arrived.
    keyframe: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stated {
    frame_rate: Option<f64>,
    video_kbps: Option<f64>,
    audio_kbps: Option<f64>,
}

/// One kind of media as it arrived.
#[derive(Debug, Default)]
struct Track {
    /// From its sequence header, else from its first frame (codec only, for codecs that
    /// have a header).
    info: Option<CodecInfo>,
    /// What an H.264 sequence header's SPS timing states.
    sps_frame_rate: Option<f64>,
    /// Its configuration is here: a sequence header, or a frame of a codec that has none.
    configured: bool,
    frames: u64,
    /// Payload bytes of the frames after the first: what the time between the first and the
    /// last frame carried.
    bytes_after_first: u64,
    first_timestamp: Option<u32>,
    last_timestamp: u32,
}

impl Track {
    fn observe(&mut self, kind: MediaKind, packet: &Packet) {
        if packet.sequence_header {
            if let Ok(info) = flv::parse_codec_info(kind, &packet.payload) {
                self.sps_frame_rate = sps_frame_rate(info.codec, &packet.payload);
                self.info = Some(info);
                self.configured = true;
            }
            return;
        }
        if self.info.is_none()
            && let Ok(info) = flv::parse_codec_info(kind, &packet.payload)
        {
            self.configured = !has_sequence_header(info.codec);
            self.info = Some(info);
        }
        self.frames += 1;
        match self.first_timestamp {
            None => self.first_timestamp = Some(packet.timestamp),
            Some(_) => self.bytes_after_first += packet.payload.len() as u64,
        }
        self.last_timestamp = packet.timestamp;
    }

    /// Milliseconds of media time between the first and the last frame, when over zero.
    fn span_ms(&self) -> Option<u64> {
        let span = self.last_timestamp.saturating_sub(self.first_timestamp?);
        (self.frames >= 2 && span > 0).then_some(u64::from(span))
    }

    fn measured_frame_rate(&self) -> Option<f64> {
        self.span_ms().map(|span| (self.frames - 1) as f64 * 1000.0 / span as f64)
    }

    /// Bits per millisecond are kbit/s.
    fn measured_kbps(&self) -> Option<u64> {
        self.span_ms().map(|span| (self.bytes_after_first as f64 * 8.0 / span as f64).round() as u64)
    }

    fn describe(&self, frame_rate: Option<f64>, stated_kbps: Option<f64>) -> Option<TrackDescription> {
        let bitrate_kbps = stated_kbps.map(|kbps| kbps.round() as u64).or_else(|| self.measured_kbps());
        Some(TrackDescription { info: self.info.clone()?, frame_rate, bitrate_kbps })
    }
}

/// The frame rate an H.264 sequence header's SPS states in its VUI timing.
fn sps_frame_rate(codec: Codec, header: &[u8]) -> Option<f64> {
    if codec != Codec::H264 {
        return None;
    }
    let tag = flv::parse_video_tag(header).ok()?;
    AvcDecoderConfig::parse(tag.payload).ok()?.sps_info().frame_rate()
}

/// Codecs whose frames need a configuration record first: a frame of one says only its codec.
fn has_sequence_header(codec: Codec) -> bool {
    matches!(codec, Codec::Aac | Codec::Opus | Codec::H264 | Codec::Hevc | Codec::Av1 | Codec::Vp9)
}

impl MediaGate {
    pub fn new(started: Instant) -> MediaGate {
        MediaGate {
            started,
            declared: None,
            stated: Stated::default(),
            video: Track::default(),
            audio: Track::default(),
            keyframe: false,
        }
    }

    /// The publisher declared which tracks it sends (an RTSP ANNOUNCE's media sections).
    pub fn declare(&mut self, video: bool, audio: bool) {
        self.declared = Some((video, audio));
    }

    /// Takes in one packet of the publish, as the hub parsed it.
    pub fn observe(&mut self, packet: &Packet) {
        match packet.kind {
            PacketKind::Video => {
                self.keyframe |= packet.keyframe;
                self.video.observe(MediaKind::Video, packet);
            }
            PacketKind::Audio => self.audio.observe(MediaKind::Audio, packet),
            PacketKind::Data { metadata: true } => self.read_metadata(&packet.payload),
            PacketKind::Data { metadata: false } => {}
        }
    }

    /// `onMetaData`: the tracks it names and the rates it states. Unreadable metadata is
    /// ignored; the headers and the measurement remain.
    fn read_metadata(&mut self, payload: &[u8]) {
        let Ok(values) = amf0::decode_all(payload) else { return };
        let Some(properties) = values.get(1) else { return };
        let positive = |key: &str| properties.get(key).and_then(Amf0Value::as_f64).filter(|value| *value > 0.0);
        let (video, audio) = (properties.get("videocodecid").is_some(), properties.get("audiocodecid").is_some());
        if video || audio {
            self.declared = Some((video, audio));
        }
        self.stated = Stated {
            frame_rate: positive("framerate").or_else(|| positive("videoframerate")),
            video_kbps: positive("videodatarate"),
            audio_kbps: positive("audiodatarate"),
        };
    }

    /// Whether `on_media` is to be asked now (the module doc's rule).
    pub fn is_known(&self, now: Instant) -> bool {
        let (video, audio) = (&self.video, &self.audio);
        let (want_video, want_audio) = self.declared.unwrap_or((true, true));
        let complete = (!want_video || video.configured) && (!want_audio || audio.configured);
        if complete && (video.configured || audio.configured) {
            return true;
        }
        let one_track_then_keyframe = self.declared.is_none() && self.keyframe && video.configured;
        one_track_then_keyframe || now.saturating_duration_since(self.started) >= MEDIA_WAIT
    }

    /// What `on_media` is told: each track that showed up, its frame rate as onMetaData or
    /// else the SPS states it, or else measured over the frames that arrived, and its bitrate
    /// as onMetaData states it or else measured.
    pub fn describe(&self) -> MediaDescription {
        let frame_rate =
            (self.stated.frame_rate).or(self.video.sps_frame_rate).or_else(|| self.video.measured_frame_rate());
        MediaDescription {
            video: self.video.describe(frame_rate, self.stated.video_kbps),
            audio: self.audio.describe(None, self.stated.audio_kbps),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::fixtures::{AVC_720P_HIGH, hex};

    fn packet(kind: PacketKind, timestamp: u32, body: Vec<u8>) -> Packet {
        Packet::new(kind, timestamp, Bytes::from(body), 4096).expect("a valid tag body")
    }

    fn avc_header() -> Packet {
        packet(PacketKind::Video, 0, hex(AVC_720P_HIGH))
    }

    /// AAC LC, 48 kHz, stereo: `AudioSpecificConfig` 0x11 0x90 behind the FLV audio header.
    fn aac_header() -> Packet {
        packet(PacketKind::Audio, 0, vec![0xAF, 0x00, 0x11, 0x90])
    }

    fn video_frame(timestamp: u32, keyframe: bool, size: usize) -> Packet {
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.resize(size, 0);
        packet(PacketKind::Video, timestamp, body)
    }

    fn metadata(properties: Vec<(&str, Amf0Value)>) -> Packet {
        let mut body = Vec::new();
        amf0::encode_all(&["onMetaData".into(), Amf0Value::ecma_array(properties)], &mut body);
        packet(PacketKind::Data { metadata: true }, 0, body)
    }

    #[test]
    fn known_once_both_headers_are_in_and_described_as_they_and_onmetadata_say() {
        let start = Instant::now();
        let mut gate = MediaGate::new(start);
        gate.observe(&metadata(vec![
            ("videocodecid", 7.0.into()),
            ("audiocodecid", 10.0.into()),
            ("framerate", 30.0.into()),
            ("videodatarate", 781.25.into()),
            ("audiodatarate", 0.0.into()),
        ]));
        gate.observe(&avc_header());
        assert!(!gate.is_known(start), "audio was declared and has not come");
        gate.observe(&aac_header());
        assert!(gate.is_known(start));
        let described = gate.describe();
        let video = described.video.expect("video");
        assert_eq!((video.info.width, video.info.height, video.info.profile), (Some(1280), Some(720), Some("High")));
        assert_eq!((video.frame_rate, video.bitrate_kbps), (Some(30.0), Some(781)));
        let audio = described.audio.expect("audio");
        assert_eq!((audio.info.sample_rate, audio.info.channels), (Some(48_000), Some(2)));
        assert_eq!(audio.bitrate_kbps, None, "0 states nothing, and no audio frame was measured");
    }

    /// A gate started now that saw the publisher declare `declared` (if it did) and then its
    /// H.264 sequence header.
    fn after_video_header(declared: Option<(bool, bool)>) -> (Instant, MediaGate) {
        let start = Instant::now();
        let mut gate = MediaGate::new(start);
        if let Some((video, audio)) = declared {
            gate.declare(video, audio);
        }
        gate.observe(&avc_header());
        (start, gate)
    }

    #[test]
    fn a_declared_single_track_needs_only_its_header_and_its_sps_gives_the_frame_rate() {
        let (start, gate) = after_video_header(Some((true, false)));
        assert!(gate.is_known(start));
        let described = gate.describe();
        assert_eq!(described.audio, None);
        assert_eq!(described.video.and_then(|video| video.frame_rate), Some(30.0), "libx264's VUI timing");
    }

    #[test]
    fn undeclared_video_only_is_known_at_its_first_keyframe_and_measured() {
        let (start, mut gate) = after_video_header(None);
        assert!(!gate.is_known(start), "audio may follow until a frame shows it will not");
        gate.observe(&video_frame(0, true, 5000));
        assert!(gate.is_known(start));
        // 25 fps, 5000 bytes a frame: 1000 kbit/s over the frames after the first.
        for n in 1..=25 {
            gate.observe(&video_frame(n * 40, false, 5000));
        }
        let video = gate.describe().video.expect("video");
        assert_eq!(video.bitrate_kbps, Some(1000));
        assert_eq!(video.frame_rate, Some(30.0), "the SPS's timing before a measurement");
        assert_eq!(gate.video.measured_frame_rate(), Some(25.0));
    }

    #[test]
    fn the_wait_ends_with_what_is_there() {
        let (start, mut gate) = after_video_header(Some((true, true)));
        gate.observe(&video_frame(0, true, 100));
        assert!(!gate.is_known(start + Duration::from_millis(1999)), "declared audio is waited for");
        assert!(gate.is_known(start + MEDIA_WAIT));
        let described = gate.describe();
        assert_eq!(described.video.map(|v| v.info.codec), Some(Codec::H264), "what is there is told");
        assert_eq!(described.audio, None, "the declared audio that never came is not");
        // A codec without a sequence header is configured by its first frame (G.711 A-law).
        let mut gate = MediaGate::new(start);
        gate.declare(false, true);
        gate.observe(&packet(PacketKind::Audio, 0, vec![0x72, 0xd5, 0xd5]));
        assert!(gate.is_known(start));
        assert_eq!(gate.describe().audio.map(|a| a.info.codec), Some(Codec::PcmAlaw));
    }
}
