//! What a session is doing with a stream, as the admin API's stream details show it: since
//! when it publishes or plays, and for a publisher what it sends (codecs, picture size, frame
//! rate, bitrate over the last seconds).
//!
//! The session updates its [`Activity`] on its own shard as media arrives (a few integer adds
//! per packet); the API asks each shard for a [`StreamActivity`] snapshot over the same channel
//! as the client listing, so nothing here is shared across threads or locked.

use std::time::Instant;

use crate::hub::PacketKind;
use crate::protocol::codec::CodecInfo;

use super::ClientSummary;

/// Seconds of history kept for the bitrate and frame rate; the rate is taken over the complete
/// seconds among them, so it moves smoothly yet follows a change within a few seconds.
const WINDOW_SECS: usize = 5;

/// What one publishing or playing session does, kept in its registry entry.
#[derive(Debug)]
pub struct Activity {
    /// Unix milliseconds when the publish or play was admitted.
    pub since_ms: u64,
    /// Only for a publisher: what it sends.
    pub media: Option<Box<MediaMeter>>,
}

/// A publisher's codecs and a few seconds of its input, bucketed per second.
#[derive(Debug)]
pub struct MediaMeter {
    started: Instant,
    video: Option<CodecInfo>,
    audio: Option<CodecInfo>,
    /// Ring of per-second buckets, indexed by second since `started` modulo its length.
    buckets: [Bucket; WINDOW_SECS + 1],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which second since `started` this bucket counts; a bucket from an older lap is stale.
    second: u64,
    bytes: u64,
    video_frames: u32,
}

impl MediaMeter {
    pub fn new(started: Instant) -> MediaMeter {
        MediaMeter { started, video: None, audio: None, buckets: [Bucket::default(); WINDOW_SECS + 1] }
    }

    /// Counts one media message of `bytes` that arrived at `now`. Sequence headers and
    /// metadata count as bytes but not as frames.
    pub fn count(&mut self, now: Instant, kind: PacketKind, bytes: usize, frame: bool) {
        let second = now.saturating_duration_since(self.started).as_secs();
        let bucket = &mut self.buckets[second as usize % self.buckets.len()];
        if bucket.second != second {
            *bucket = Bucket { second, ..Bucket::default() };
        }
        bucket.bytes += bytes as u64;
        if frame && kind == PacketKind::Video {
            bucket.video_frames += 1;
        }
    }

    /// Records what a sequence header said; the first of each kind is kept.
    pub fn describe(&mut self, info: CodecInfo, kind: PacketKind) {
        let slot = match kind {
            PacketKind::Video => &mut self.video,
            PacketKind::Audio => &mut self.audio,
            PacketKind::Data { .. } => return,
        };
        slot.get_or_insert(info);
    }

    /// Bitrate (kbit/s) and video frame rate at `now`, over the last complete seconds (the
    /// running second alone while the publish is younger than one).
    pub fn rates(&self, now: Instant) -> (u64, Option<f64>) {
        let elapsed = now.saturating_duration_since(self.started);
        let current = elapsed.as_secs();
        let (first, span) = if current == 0 {
            (0, elapsed.as_secs_f64().max(0.001))
        } else {
            let span = current.min(WINDOW_SECS as u64);
            (current - span, span as f64)
        };
        let last = if current == 0 { 0 } else { current - 1 };
        let (bytes, frames) = self
            .buckets
            .iter()
            .filter(|b| b.second >= first && b.second <= last && (b.bytes > 0 || b.video_frames > 0))
            .fold((0u64, 0u64), |(bytes, frames), b| (bytes + b.bytes, frames + u64::from(b.video_frames)));
        let kbps = (bytes as f64 * 8.0 / 1000.0 / span).round() as u64;
        let fps = (self.video.is_some() && frames > 0).then(|| (frames as f64 / span * 100.0).round() / 100.0);
        (kbps, fps)
    }
}

/// One session's activity as the admin API receives it from a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamActivity {
    /// Who: its role and stream (`app/name`) say what it does.
    pub client: ClientSummary,
    pub since_ms: u64,
    /// A publisher's media; `None` for a player.
    pub media: Option<MediaSummary>,
}

/// What a publisher sends, at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSummary {
    pub video: Option<CodecInfo>,
    pub audio: Option<CodecInfo>,
    pub bitrate_kbps: u64,
    /// Video frames per second, measured; `None` before the first frame.
    pub fps: Option<f64>,
}

impl MediaMeter {
    pub fn summary(&self, now: Instant) -> MediaSummary {
        let (bitrate_kbps, fps) = self.rates(now);
        MediaSummary { video: self.video.clone(), audio: self.audio.clone(), bitrate_kbps, fps }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rates_cover_the_last_complete_seconds() {
        let start = Instant::now();
        let mut meter = MediaMeter::new(start);
        meter.describe(CodecInfo::codec_only(crate::protocol::codec::Codec::H264), PacketKind::Video);
        // 10 s of 25 frames of 5000 bytes a second: 1000 kbit/s.
        for tenth_of_frame in 0..250u64 {
            let at = start + Duration::from_millis(tenth_of_frame * 40);
            meter.count(at, PacketKind::Video, 5000, true);
        }
        let (kbps, fps) = meter.rates(start + Duration::from_millis(10_000));
        assert_eq!((kbps, fps), (1000, Some(25.0)));
        // A publisher that went quiet shows it within the window.
        let (kbps, fps) = meter.rates(start + Duration::from_millis(13_500));
        assert_eq!((kbps, fps), (400, Some(10.0)));
        assert_eq!(meter.rates(start + Duration::from_secs(60)), (0, None));
    }

    #[test]
    fn a_young_publish_reports_its_first_second() {
        let start = Instant::now();
        let mut meter = MediaMeter::new(start);
        meter.count(start, PacketKind::Audio, 1000, true);
        let (kbps, fps) = meter.rates(start + Duration::from_millis(500));
        assert_eq!((kbps, fps), (16, None));
    }
}
