//! A publisher's RTP turned into hub packets, whoever receives it: the RTSP server's RECORD
//! sessions (`rtsp.rs`) and the pulls of RTSP cameras (`rtsp_pull.rs`).
//!
//! One [`RtpIngest`] holds a depacketizer per track and the time line they share: each
//! track's timestamps start where its own first packet falls after the session's first
//! packet, so audio and video stay aligned however late one of them starts. What to do with
//! a finished frame (a lifecycle's `media`, a bare `PublisherHandle::push`) is the caller's.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use crate::hub::{HubStats, PacketKind};
use crate::protocol::flv::MediaKind;
use crate::protocol::rtp::{self, Depacketizer, MediaFrame, RtpPacket};
use crate::protocol::sdp::Track;

pub(crate) struct RtpIngest {
    tracks: Vec<Track>,
    depacketizers: Vec<Depacketizer>,
    /// When the first RTP packet arrived: each track's time line starts where its own first
    /// packet falls after it.
    first_packet: Option<Instant>,
    /// Reused for every packet: most packets finish no frame, some one.
    frames: Vec<MediaFrame>,
}

impl RtpIngest {
    pub(crate) fn new(tracks: Vec<Track>) -> RtpIngest {
        let depacketizers =
            tracks.iter().map(|track| Depacketizer::new(&track.codec, rtp::DEFAULT_MAX_FRAME)).collect();
        RtpIngest { tracks, depacketizers, first_packet: None, frames: Vec::new() }
    }

    /// Whether the description carries a track of `kind`.
    pub(crate) fn carries(&self, kind: MediaKind) -> bool {
        self.tracks.iter().any(|track| track.codec.kind() == kind)
    }

    /// The sequence headers the description carried, which the hub gets before any frame.
    pub(crate) fn sequence_headers(&self) -> Vec<(PacketKind, Bytes)> {
        self.tracks
            .iter()
            .filter_map(|track| Some((packet_kind(track.codec.kind()), Bytes::from(track.codec.sequence_header()?))))
            .collect()
    }

    /// One RTP packet of track `track` (an index of the tracks given): each frame it finishes
    /// goes to `deliver`. A malformed packet is counted (`malformed_packets`) and dropped.
    pub(crate) fn packet(
        &mut self,
        track: usize,
        payload: &[u8],
        now: Instant,
        stats: &HubStats,
        conn_id: u64,
        mut deliver: impl FnMut(PacketKind, u32, Bytes),
    ) {
        let Ok(packet) = RtpPacket::parse(payload) else {
            stats.malformed_packets.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(depacketizer) = self.depacketizers.get_mut(track) else { return };
        let first = *self.first_packet.get_or_insert(now);
        if !depacketizer.started() {
            depacketizer.set_offset_ms(now.duration_since(first).as_millis() as u32);
        }
        if let Err(error) = depacketizer.depacketize(&packet, &mut self.frames) {
            tracing::debug!(conn_id, %error, "RTP packet dropped");
            stats.malformed_packets.fetch_add(1, Ordering::Relaxed);
        }
        for frame in self.frames.drain(..) {
            deliver(packet_kind(frame.kind), frame.timestamp, frame.body);
        }
    }
}

pub(crate) fn packet_kind(kind: MediaKind) -> PacketKind {
    match kind {
        MediaKind::Audio => PacketKind::Audio,
        MediaKind::Video => PacketKind::Video,
        MediaKind::Data => PacketKind::Data { metadata: false },
    }
}
