//! What `on_media` is told of a publisher's media (docs/hooks.md, "Media admission"): per
//! track, the codec and what its configuration says, a frame rate and a bitrate, as form
//! fields beside the callback's usual ones.
//!
//! Sessions gather it (`session/media_gate.rs`); this file is only its shape and its form,
//! so `ringcast hooks test --callback media` sends the same fields the server does.

use crate::protocol::codec::CodecInfo;

/// One track of a publish.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackDescription {
    /// The codec and what its sequence header (or, without one, a frame) says.
    pub info: CodecInfo,
    /// Frames per second (video): from onMetaData, else the SPS's timing, else measured.
    pub frame_rate: Option<f64>,
    /// kbit/s: from onMetaData, else measured over what arrived.
    pub bitrate_kbps: Option<u64>,
}

/// A publisher's media as known when `on_media` is asked: a track absent is one it does not
/// send (or had not sent by the end of the wait).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaDescription {
    pub video: Option<TrackDescription>,
    pub audio: Option<TrackDescription>,
}

/// The fields `on_media` adds, in the order they are sent. A client argument of one of these
/// names is dropped from this call, as any argument naming a field ringcast sets.
pub const MEDIA_FIELDS: [&str; 12] = [
    "video_codec",
    "video_profile",
    "video_level",
    "width",
    "height",
    "frame_rate",
    "video_bitrate_kbps",
    "audio_codec",
    "audio_profile",
    "sample_rate",
    "channels",
    "audio_bitrate_kbps",
];

impl MediaDescription {
    /// The form fields of [`MEDIA_FIELDS`], each present; empty when unknown or the track is
    /// absent.
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        let text = |value: Option<String>| value.unwrap_or_default();
        let video = self.video.as_ref();
        let audio = self.audio.as_ref();
        let values = [
            text(video.map(|t| t.info.codec.name().to_owned())),
            text(video.and_then(|t| t.info.profile).map(str::to_owned)),
            text(video.and_then(|t| t.info.level.clone())),
            text(video.and_then(|t| t.info.width).map(|w| w.to_string())),
            text(video.and_then(|t| t.info.height).map(|h| h.to_string())),
            text(video.and_then(|t| t.frame_rate).map(frame_rate_text)),
            text(video.and_then(|t| t.bitrate_kbps).map(|k| k.to_string())),
            text(audio.map(|t| t.info.codec.name().to_owned())),
            text(audio.and_then(|t| t.info.profile).map(str::to_owned)),
            text(audio.and_then(|t| t.info.sample_rate).map(|r| r.to_string())),
            text(audio.and_then(|t| t.info.channels).map(|c| c.to_string())),
            text(audio.and_then(|t| t.bitrate_kbps).map(|k| k.to_string())),
        ];
        MEDIA_FIELDS.into_iter().zip(values).collect()
    }
}

/// `30`, `29.97`: two decimals at most, none when whole.
fn frame_rate_text(fps: f64) -> String {
    let rounded = (fps * 100.0).round() / 100.0;
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;

    #[test]
    fn every_field_is_sent_and_unknowns_are_empty() {
        let video = TrackDescription {
            info: CodecInfo {
                profile: Some("High"),
                level: Some("3.1".into()),
                width: Some(1280),
                height: Some(720),
                ..CodecInfo::codec_only(Codec::H264)
            },
            frame_rate: Some(30000.0 / 1001.0),
            bitrate_kbps: None,
        };
        let fields = MediaDescription { video: Some(video), audio: None }.form_fields();
        let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, MEDIA_FIELDS);
        let get = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!((get("video_codec"), get("video_level"), get("width")), (Some("h264"), Some("3.1"), Some("1280")));
        assert_eq!(get("frame_rate"), Some("29.97"));
        assert_eq!((get("video_bitrate_kbps"), get("audio_codec"), get("sample_rate")), (Some(""), Some(""), Some("")));
        assert_eq!(frame_rate_text(30.0), "30");
    }
}
