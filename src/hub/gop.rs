//! What a new player needs to start at once: metadata, sequence headers and the current GOP.

use std::rc::Rc;

use super::packet::{Packet, PacketKind};

/// A GOP longer than this is not cached whole (a 30 fps stream with a 10 s GOP is 300 video
/// frames plus ~430 audio frames); past it players wait for the next keyframe instead.
const MAX_GOP_PACKETS: usize = 4096;

/// What caching a packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GopPush {
    Cached,
    /// The GOP outgrew the cache and was dropped.
    Overflowed,
}

#[derive(Debug, Default)]
pub struct GopCache {
    metadata: Option<Rc<Packet>>,
    audio_header: Option<Rc<Packet>>,
    video_header: Option<Rc<Packet>>,
    /// The stream's first audio frame while it has no audio sequence header: a codec without
    /// one (G.711) is described by any of its frames.
    audio_frame: Option<Rc<Packet>>,
    /// From the last keyframe on, audio and video interleaved as received.
    gop: Vec<Rc<Packet>>,
    /// Footprint (payload and chunked form) of `gop`, bounded by `max_bytes`.
    gop_bytes: usize,
    max_bytes: usize,
    /// Whether the stream has carried video: audio-only streams have no GOP to wait for.
    has_video: bool,
    enabled: bool,
}

impl GopCache {
    pub fn new(enabled: bool, max_bytes: usize) -> GopCache {
        GopCache { enabled, max_bytes, ..GopCache::default() }
    }

    pub fn has_video(&self) -> bool {
        self.has_video
    }

    /// The latest video and audio sequence headers (for audio without one, its first frame):
    /// what an RTSP description is built from.
    pub fn sequence_headers(&self) -> (Option<Rc<Packet>>, Option<Rc<Packet>>) {
        (self.video_header.clone(), self.audio_header.clone().or_else(|| self.audio_frame.clone()))
    }

    /// Caches what a new player needs of `packet`. Returns `Overflowed` when the current GOP
    /// outgrew the cache: it is dropped and the cache stays empty until the next keyframe, so
    /// players joining meanwhile wait for it.
    pub fn push(&mut self, packet: &Rc<Packet>) -> GopPush {
        if packet.kind == PacketKind::Audio && self.audio_header.is_none() && self.audio_frame.is_none() {
            self.audio_frame = Some(packet.clone());
        }
        match packet.kind {
            PacketKind::Data { metadata: true } => self.metadata = Some(packet.clone()),
            PacketKind::Data { metadata: false } => {}
            PacketKind::Audio if packet.sequence_header => self.audio_header = Some(packet.clone()),
            PacketKind::Video if packet.sequence_header => {
                self.has_video = true;
                self.video_header = Some(packet.clone());
            }
            _ if !self.enabled => {}
            PacketKind::Video if packet.keyframe => {
                self.has_video = true;
                self.gop.clear();
                self.gop_bytes = 0;
                return self.append(packet);
            }
            PacketKind::Audio | PacketKind::Video => {
                if packet.kind == PacketKind::Video {
                    self.has_video = true;
                }
                // Only a GOP that starts with a keyframe is worth replaying.
                if !self.gop.is_empty() {
                    return self.append(packet);
                }
            }
        }
        GopPush::Cached
    }

    fn append(&mut self, packet: &Rc<Packet>) -> GopPush {
        let footprint = packet.footprint();
        if self.gop.len() >= MAX_GOP_PACKETS || self.gop_bytes + footprint > self.max_bytes {
            self.gop = Vec::new();
            self.gop_bytes = 0;
            return GopPush::Overflowed;
        }
        self.gop_bytes += footprint;
        self.gop.push(packet.clone());
        GopPush::Cached
    }

    /// Footprint of the cached GOP.
    pub fn gop_bytes(&self) -> usize {
        self.gop_bytes
    }

    /// Everything a new player is sent first, in the order it must receive it.
    pub fn snapshot(&self) -> impl Iterator<Item = &Rc<Packet>> {
        self.metadata.iter().chain(self.video_header.iter()).chain(self.audio_header.iter()).chain(self.gop.iter())
    }

    pub fn clear(&mut self) {
        *self = GopCache::new(self.enabled, self.max_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(kind: PacketKind, body: &'static [u8]) -> Rc<Packet> {
        Rc::new(Packet::new(kind, 0, Bytes::from_static(body), 4096).unwrap())
    }

    #[test]
    fn snapshot_is_headers_then_the_last_gop() {
        let mut cache = GopCache::new(true, usize::MAX);
        let avc_header = packet(PacketKind::Video, &[0x17, 0, 0, 0, 0, 1]);
        let aac_header = packet(PacketKind::Audio, &[0xAF, 0, 0x12, 0x10]);
        let key1 = packet(PacketKind::Video, &[0x17, 1, 0, 0, 0, 1]);
        let inter = packet(PacketKind::Video, &[0x27, 1, 0, 0, 0, 2]);
        let audio = packet(PacketKind::Audio, &[0xAF, 1, 5]);
        let key2 = packet(PacketKind::Video, &[0x17, 1, 0, 0, 0, 3]);
        for p in [&audio, &avc_header, &aac_header, &key1, &inter, &audio, &key2, &audio] {
            cache.push(p);
        }
        let snapshot: Vec<_> = cache.snapshot().cloned().collect();
        assert_eq!(snapshot.len(), 4);
        assert!(Rc::ptr_eq(&snapshot[0], &avc_header));
        assert!(Rc::ptr_eq(&snapshot[1], &aac_header));
        assert!(Rc::ptr_eq(&snapshot[2], &key2));
        assert!(Rc::ptr_eq(&snapshot[3], &audio));
    }

    #[test]
    fn audio_without_a_sequence_header_is_described_by_its_first_frame() {
        let mut cache = GopCache::new(true, usize::MAX);
        let first = packet(PacketKind::Audio, &[0x82, 1, 2]);
        for p in [&first, &packet(PacketKind::Audio, &[0x82, 3, 4])] {
            cache.push(p);
        }
        let (video, audio) = cache.sequence_headers();
        assert!(video.is_none() && audio.is_some_and(|audio| Rc::ptr_eq(&audio, &first)), "G.711: its first frame");
        assert_eq!(cache.snapshot().count(), 0, "and no player is sent it twice");
    }

    #[test]
    fn disabled_cache_keeps_only_headers() {
        let mut cache = GopCache::new(false, usize::MAX);
        cache.push(&packet(PacketKind::Video, &[0x17, 0, 0, 0, 0, 1]));
        cache.push(&packet(PacketKind::Video, &[0x17, 1, 0, 0, 0, 1]));
        assert_eq!(cache.snapshot().count(), 1);
    }

    #[test]
    fn a_gop_larger_than_the_cache_is_dropped_until_the_next_keyframe() {
        let frame = |keyframe: bool| super::super::packet::test_video_frame(keyframe, 10_000);
        let footprint = frame(true).footprint();
        let mut cache = GopCache::new(true, 2 * footprint);
        assert_eq!(cache.push(&frame(true)), GopPush::Cached);
        assert_eq!(cache.push(&frame(false)), GopPush::Cached);
        assert_eq!(cache.gop_bytes(), 2 * footprint);
        assert_eq!(cache.push(&frame(false)), GopPush::Overflowed);
        // Stays empty (no partial GOP to start from) until the next keyframe.
        assert_eq!((cache.snapshot().count(), cache.gop_bytes()), (0, 0));
        assert_eq!(cache.push(&frame(false)), GopPush::Cached);
        assert_eq!(cache.snapshot().count(), 0);
        assert_eq!(cache.push(&frame(true)), GopPush::Cached);
        assert_eq!(cache.snapshot().count(), 1);
    }
}
