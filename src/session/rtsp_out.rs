//! What RTSP players are sent: each stream's RTP form, built once per stream on this shard
//! and shared by every RTSP player of it, and a player's [`Framing`] around it.
//!
//! - [`StreamRtp`]: one stream's tracks (from its sequence headers) and a
//!   [`Packetizer`] per track. A hub packet's RTP packets are built by the first RTSP player
//!   that sends it and cached in the packet (`WireForm::RtpPackets`), so sequence numbers,
//!   SSRC and RTP times are the stream's, the same for every player.
//! - [`RtpStreams`]: the shard's `StreamRtp`s by stream, so players that join later reuse the
//!   numbering the cached packets already carry. Numbering is per shard: a packet relayed from
//!   another shard arrives without its RTP form (`hub::Packet`'s `Clone`) and is numbered here.
//! - [`RtspFraming`]: a player over TCP: before each shared RTP packet (which starts with its
//!   16-bit length), its two own bytes `$` and the track's channel; the connection's RTSP
//!   replies (keep-alives, TEARDOWN) before the media of a write; an RTCP sender report per
//!   track every [`SENDER_REPORT_INTERVAL`], none while the player is paused.
//! - [`rtp_info`]: where a player starts on each track (`RTP-Info`): the sequence number and
//!   RTP time of the first RTP packet of that track in its queue, read from the packet itself.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::player_writer::Framing;
use crate::hub::{LocalStream, Packet, PacketKind, Player, WireForm};
use crate::protocol::flv::MediaKind;
use crate::protocol::rtp::{self, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket, interleaved, rtcp};
use crate::protocol::rtsp::RtpInfo;
use crate::protocol::sdp::Track;

/// How often a player gets sender reports, so it can map every track onto one clock (RFC
/// 3550 suggests about 5 s for a session this small).
pub const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// One stream's tracks and their packetizers, shared by its RTSP players on this shard.
#[derive(Debug)]
pub struct StreamRtp {
    tracks: Vec<Track>,
    packetizers: Vec<Packetizer>,
    /// The media time (ms) of the last packet packetized, for sender reports.
    last_ms: Option<u32>,
}

impl StreamRtp {
    /// `random` draws the SSRCs and first numbers (RFC 3550, 5.1: they should be random; the
    /// driver draws them from the operating system, so one stream's numbers say nothing of
    /// another's).
    fn new(tracks: Vec<Track>, random: &mut dyn FnMut() -> u64) -> StreamRtp {
        let packetizers = tracks
            .iter()
            .enumerate()
            .map(|(index, track)| {
                let draw = random();
                let settings = PacketizerSettings {
                    payload_type: track.payload_type,
                    ssrc: draw as u32,
                    first_sequence: (draw >> 32) as u16,
                    first_timestamp: (draw >> 48) as u32 * 65_536,
                    mtu: rtp::DEFAULT_MTU,
                };
                // The channel most players set this track up on (2n, 2n + 1): they send the
                // shared list whole, one buffer per hub packet.
                Packetizer::new(&track.codec, settings).with_channel(usual_channel(index))
            })
            .collect();
        StreamRtp { tracks, packetizers, last_ms: None }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The track that carries packets of `kind`.
    pub fn track_of(&self, kind: PacketKind) -> Option<usize> {
        let kind = match kind {
            PacketKind::Audio => MediaKind::Audio,
            PacketKind::Video => MediaKind::Video,
            PacketKind::Data { .. } => return None,
        };
        self.tracks.iter().position(|track| track.codec.kind() == kind)
    }

    pub fn ssrc(&self, track: usize) -> Option<u32> {
        self.packetizers.get(track).map(Packetizer::ssrc)
    }

    /// Where track `track` stands now: the next sequence number and the RTP time of the last
    /// media time packetized (`RTP-Info`).
    pub fn position(&self, track: usize) -> Option<(u16, u32)> {
        let packetizer = self.packetizers.get(track)?;
        Some((packetizer.next_sequence(), packetizer.rtp_time(i64::from(self.last_ms.unwrap_or(0)))))
    }

    /// The RTP packets of `packet` (a `PacketList`); empty for a packet no track carries or
    /// one the packetizer refuses (a malformed frame is skipped, not sent).
    pub(super) fn build(&mut self, packet: &Packet) -> Bytes {
        let Some(track) = self.track_of(packet.kind) else { return Bytes::new() };
        let mut out = Vec::with_capacity(packet.payload.len() + packet.payload.len() / 64 + 32);
        match self.packetizers[track].packetize(packet.timestamp, &packet.payload, &mut out) {
            Ok(_) => {
                if !packet.sequence_header {
                    self.last_ms = Some(packet.timestamp);
                }
                Bytes::from(out)
            }
            Err(error) => {
                tracing::debug!(%error, "packet not packetized for RTSP");
                Bytes::new()
            }
        }
    }

    /// Appends track `track`'s sender report (an RTCP compound of one SR) as of `now` (wall
    /// clock); nothing before the stream's first media.
    pub(super) fn sender_report(&self, track: usize, now: SystemTime, out: &mut Vec<u8>) {
        let (Some(last_ms), Some(packetizer)) = (self.last_ms, self.packetizers.get(track)) else { return };
        let micros = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64);
        packetizer.sender_report(rtcp::ntp_from_unix_micros(micros), i64::from(last_ms), out);
    }

    /// Appends each set-up track's sender report, interleaved on its RTCP channel.
    fn sender_reports(&self, channels: &[Option<(u8, u8)>], now: SystemTime, out: &mut Vec<u8>) {
        for (track, channel) in channels.iter().enumerate() {
            let Some((_, rtcp_channel)) = channel else { continue };
            let mut report = Vec::with_capacity(28);
            self.sender_report(track, now, &mut report);
            if report.is_empty() {
                continue;
            }
            let len = u16::try_from(report.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&interleaved::header(*rtcp_channel, len));
            out.extend_from_slice(&report);
        }
    }
}

/// `packet`'s RTP packets (a [`PacketList`]), built on first use and then shared by every RTSP
/// player of the stream on this shard.
pub fn rtp_packets(rtp: &RefCell<StreamRtp>, packet: &Packet) -> Bytes {
    packet.wire_form(WireForm::RtpPackets, |packet| rtp.borrow_mut().build(packet)).clone()
}

/// `RTP-Info` for `player` on each track of `tracks`: the sequence number and RTP time of the
/// first RTP packet of that track in its queue, which is the first one its writer sends. The
/// queue's packets of the track are numbered up to it, in queue order (stream order). A track
/// with nothing queued yet is left out: its first packet is not numbered yet.
pub fn rtp_info(rtp: &RefCell<StreamRtp>, player: &Player, tracks: impl Iterator<Item = usize>) -> Vec<RtpInfo> {
    tracks
        .filter_map(|track| {
            let mut first = None;
            player.first_queued(|packet| {
                if rtp.borrow().track_of(packet.kind) != Some(track) {
                    return false;
                }
                let list = PacketList(rtp_packets(rtp, packet));
                first = list.packets().next().and_then(|bytes| {
                    RtpPacket::parse(&bytes).ok().map(|parsed| (parsed.header.sequence, parsed.header.timestamp))
                });
                first.is_some()
            })?;
            let (sequence, rtp_time) = first?;
            Some(RtpInfo { track, sequence, rtp_time })
        })
        .collect()
}

/// The tracks an RTSP description of a stream offers, from its cached sequence headers
/// (video first). Empty while it has none RTSP can carry.
pub fn stream_tracks(stream: &LocalStream) -> Vec<Track> {
    let (video, audio) = stream.sequence_headers();
    let mut codecs = Vec::new();
    for (kind, header) in [(MediaKind::Video, video), (MediaKind::Audio, audio)] {
        if let Some(header) = header
            && let Ok(Some(codec)) = RtpCodec::from_flv(kind, &header.payload)
        {
            codecs.push(codec);
        }
    }
    codecs.into_iter().enumerate().map(|(index, codec)| Track::new(codec, index)).collect()
}

/// The shard's [`StreamRtp`]s, by stream.
#[derive(Debug, Default)]
pub struct RtpStreams {
    streams: RefCell<HashMap<String, Rc<RefCell<StreamRtp>>>>,
}

impl RtpStreams {
    /// The RTP state of stream `key` with `tracks`: the existing one when its tracks are
    /// these (the cached packets carry its numbering), else a new one (the publisher
    /// changed codecs, or nobody played it over RTSP here yet). `alive` says whether a
    /// stream still exists on this shard: the others' states are dropped.
    pub fn get(
        &self,
        key: &str,
        tracks: Vec<Track>,
        random: &mut dyn FnMut() -> u64,
        alive: impl Fn(&str) -> bool,
    ) -> Rc<RefCell<StreamRtp>> {
        let mut streams = self.streams.borrow_mut();
        streams.retain(|stream, rtp| Rc::strong_count(rtp) > 1 || alive(stream));
        if let Some(rtp) = streams.get(key)
            && rtp.borrow().tracks == tracks
        {
            return rtp.clone();
        }
        let rtp = Rc::new(RefCell::new(StreamRtp::new(tracks, random)));
        streams.insert(key.to_owned(), rtp.clone());
        rtp
    }
}

/// What a player's session and its writer share: the RTSP replies waiting to go out, the
/// stream's end, whether the player is paused and what it was last sent.
#[derive(Debug, Default)]
pub struct RtspOutput {
    replies: RefCell<Vec<u8>>,
    pub stream_ended: Notify,
    ended: Cell<bool>,
    /// PAUSE: no sender reports either, so a paused player's connection is silent but for
    /// replies.
    paused: Cell<bool>,
    /// The media time of the last video and audio packet sent: a resumed player skips what
    /// it already has.
    sent: Cell<[Option<u32>; 2]>,
}

impl RtspOutput {
    /// Queues a reply; the caller pokes the writer.
    pub fn reply(&self, bytes: &[u8]) {
        self.replies.borrow_mut().extend_from_slice(bytes);
    }

    pub fn has_replies(&self) -> bool {
        !self.replies.borrow().is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.get()
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.set(paused);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// The writer sent `packet`.
    pub fn mark_sent(&self, packet: &Packet) {
        if let Some(slot) = media_slot(packet.kind) {
            let mut sent = self.sent.get();
            sent[slot] = Some(packet.timestamp);
            self.sent.set(sent);
        }
    }

    /// Whether the player was already sent `packet` (or a later packet of its track).
    pub fn was_sent(&self, packet: &Packet) -> bool {
        let last = media_slot(packet.kind).and_then(|slot| self.sent.get()[slot]);
        last.is_some_and(|last| packet.timestamp <= last)
    }

    /// The publisher left: the session ends.
    pub fn end(&self) {
        self.ended.set(true);
        self.stream_ended.notify_one();
    }
}

/// The interleaved RTP channel clients usually take for track `track` (ffmpeg, GStreamer, VLC:
/// `interleaved=0-1`, `2-3`, ...).
fn usual_channel(track: usize) -> u8 {
    u8::try_from(track * 2).unwrap_or(u8::MAX)
}

fn media_slot(kind: PacketKind) -> Option<usize> {
    match kind {
        PacketKind::Video => Some(0),
        PacketKind::Audio => Some(1),
        PacketKind::Data { .. } => None,
    }
}

/// An RTSP player over TCP: interleaved RTP and RTCP beside its replies.
pub struct RtspFraming {
    rtp: Rc<RefCell<StreamRtp>>,
    /// Per stream track: its interleaved (RTP, RTCP) channels, `None` when not set up.
    channels: Vec<Option<(u8, u8)>>,
    shared: Rc<RtspOutput>,
    next_report: Instant,
}

impl RtspFraming {
    pub fn new(rtp: Rc<RefCell<StreamRtp>>, channels: Vec<Option<(u8, u8)>>, shared: Rc<RtspOutput>) -> Self {
        RtspFraming { rtp, channels, shared, next_report: Instant::now() + Duration::from_millis(500) }
    }
}

impl Framing for RtspFraming {
    fn take_output(&mut self, bufs: &mut Vec<Bytes>) {
        let replies = std::mem::take(&mut *self.shared.replies.borrow_mut());
        if !replies.is_empty() {
            bufs.push(Bytes::from(replies));
        }
    }

    fn append_packet(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, packet: &Packet) {
        let Some(track) = self.rtp.borrow().track_of(packet.kind) else { return };
        let Some(Some((channel, _))) = self.channels.get(track) else { return };
        let list = packet.wire_form(WireForm::RtpPackets, |packet| self.rtp.borrow_mut().build(packet));
        if !packet.sequence_header {
            self.shared.mark_sent(packet);
        }
        if list.is_empty() {
            return;
        }
        if *channel == usual_channel(track) {
            bufs.push(list.clone());
            return;
        }
        // On a channel of its own: this player's `$` and channel, then each frame from its
        // length on.
        let mut at = 0;
        while let Some(frame) = list.get(at..).and_then(interleaved::check) {
            let end = at + frame.total_len();
            if end > list.len() {
                break;
            }
            headers.extend_from_slice(&[interleaved::MAGIC, *channel]);
            bufs.push(headers.split().freeze());
            bufs.push(list.slice(at + 2..end));
            at = end;
        }
    }

    fn unpublished(&mut self, _bufs: &mut Vec<Bytes>) {
        // RTSP has no in-band end of stream a player acts on: the session ends instead.
        self.shared.end();
    }

    fn published(&mut self, _bufs: &mut Vec<Bytes>) {}

    fn end_write(&mut self, bufs: &mut Vec<Bytes>, _headers: &mut BytesMut, _start: usize) {
        let now = Instant::now();
        if now < self.next_report || self.shared.is_paused() {
            return;
        }
        self.next_report = now + SENDER_REPORT_INTERVAL;
        let mut reports = Vec::new();
        self.rtp.borrow().sender_reports(&self.channels, SystemTime::now(), &mut reports);
        if !reports.is_empty() {
            bufs.push(Bytes::from(reports));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtp::RtpPacket;

    const PCMU_FRAME: &[u8] = &[0x82, 1, 2, 3];

    fn pcmu() -> Vec<Track> {
        vec![Track::new(RtpCodec::Pcmu { channels: 1 }, 0)]
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut state = 0x0102_0304_0506_0708u64;
        move || {
            state = state.rotate_left(13) ^ 0x9e37_79b9;
            state
        }
    }

    #[test]
    fn tcp_players_share_each_rtp_packet_behind_their_own_channel() {
        let streams = RtpStreams::default();
        let mut random = counter();
        let rtp = streams.get("live/a", pcmu(), &mut random, |_| true);
        assert!(Rc::ptr_eq(&rtp, &streams.get("live/a", pcmu(), &mut random, |_| true)), "one numbering per stream");
        let shared = Rc::new(RtspOutput::default());
        let mut first = RtspFraming::new(rtp.clone(), vec![Some((4, 5))], shared.clone());
        let mut second = RtspFraming::new(rtp.clone(), vec![Some((0, 1))], Rc::default());
        let packet = Packet::new(PacketKind::Audio, 20, Bytes::from_static(PCMU_FRAME), 4096).expect("G.711 frame");

        shared.reply(b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n");
        let (mut bufs, mut headers) = (Vec::new(), BytesMut::new());
        first.take_output(&mut bufs);
        first.append_packet(&mut bufs, &mut headers, &packet);
        assert_eq!(bufs.len(), 3, "{bufs:?}");
        assert_eq!(&bufs[0][..], b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n");
        // `$`, the channel, then the shared packet: its 16-bit length (12-byte header and the
        // 3 samples), then the packet.
        assert_eq!(&bufs[1][..], [b'$', 4]);
        assert_eq!(&bufs[2][..2], [0, 15]);
        let sent = RtpPacket::parse(&bufs[2][2..]).expect("an RTP packet");
        assert_eq!((sent.header.payload_type, sent.payload), (0, &PCMU_FRAME[1..]));
        assert_eq!(Some(sent.header.ssrc), rtp.borrow().ssrc(0));

        // On the track's usual channel: the shared frames as they are, one buffer.
        let mut other = Vec::new();
        second.append_packet(&mut other, &mut headers, &packet);
        assert_eq!(other.len(), 1, "{other:?}");
        assert_eq!(&other[0][..2], [b'$', 0]);
        assert_eq!(other[0][2..].as_ptr(), bufs[2].as_ptr(), "the second player sends the same bytes, not a copy");

        // Data and tracks the player did not set up send nothing.
        let metadata =
            Packet::new(PacketKind::Data { metadata: true }, 0, Bytes::from_static(b"x"), 4096).expect("data");
        let mut none = Vec::new();
        first.append_packet(&mut none, &mut headers, &metadata);
        RtspFraming::new(rtp.clone(), vec![None], Rc::default()).append_packet(&mut none, &mut headers, &packet);
        assert!(none.is_empty(), "{none:?}");

        // A sender report on the track's RTCP channel once due.
        first.next_report = Instant::now();
        let mut reports = Vec::new();
        first.end_write(&mut reports, &mut headers, 0);
        let report = &reports[0];
        assert_eq!(&report[..2], [b'$', 5]);
        assert_eq!(usize::from(u16::from_be_bytes([report[2], report[3]])), report.len() - 4);
        assert_eq!(report[5], 200, "RTCP SR");
        let mut again = Vec::new();
        first.end_write(&mut again, &mut headers, 0);
        assert!(again.is_empty(), "one report per interval");
    }

    #[test]
    fn rtp_info_names_the_first_queued_packet_of_each_track() {
        use std::sync::atomic::AtomicU64;
        let streams = RtpStreams::default();
        let rtp = streams.get("live/a", pcmu(), &mut counter(), |_| true);
        let frame =
            |ms| Rc::new(Packet::new(PacketKind::Audio, ms, Bytes::from_static(PCMU_FRAME), 4096).expect("G.711"));
        // Another player was sent the first frame: the stream's numbering has moved on.
        let earlier = frame(0);
        rtp_packets(&rtp, &earlier);
        let player = Rc::new(Player::new(1, 16, usize::MAX, 2));
        assert!(rtp_info(&rtp, &player, 0..1).is_empty(), "nothing queued, nothing named");
        let drops = AtomicU64::new(0);
        for ms in [40, 60] {
            player.offer(&frame(ms), false, &drops);
        }
        let info = rtp_info(&rtp, &player, 0..1);
        let mut queued = Vec::new();
        player.take(&mut queued);
        let Some(crate::hub::PlayerItem::Packet(first)) = queued.first() else { panic!("{queued:?}") };
        let sent = PacketList(rtp_packets(&rtp, first)).packets().next().expect("an RTP packet");
        let sent = RtpPacket::parse(&sent).expect("RTP");
        assert_eq!(info, [RtpInfo { track: 0, sequence: sent.header.sequence, rtp_time: sent.header.timestamp }]);
        let before = PacketList(rtp_packets(&rtp, &earlier)).packets().next().expect("an RTP packet");
        assert_eq!(sent.header.sequence, RtpPacket::parse(&before).expect("RTP").header.sequence.wrapping_add(1));
        assert_eq!(sent.header.timestamp.wrapping_sub(RtpPacket::parse(&before).expect("RTP").header.timestamp), 320);
    }

    #[test]
    fn a_stream_gets_new_numbering_when_its_tracks_change_and_unused_ones_are_dropped() {
        let streams = RtpStreams::default();
        let mut random = counter();
        let old = streams.get("live/a", pcmu(), &mut random, |_| true);
        let changed = vec![Track::new(RtpCodec::Pcma { channels: 1 }, 0)];
        let new = streams.get("live/a", changed, &mut random, |_| true);
        assert!(!Rc::ptr_eq(&old, &new));
        assert_ne!(old.borrow().ssrc(0), new.borrow().ssrc(0));
        drop((old, new));
        // Nobody holds it and the stream left the shard: dropped at the next lookup.
        streams.get("live/b", pcmu(), &mut random, |key| key != "live/a");
        assert_eq!(streams.streams.borrow().len(), 1);
        assert!(streams.streams.borrow().contains_key("live/b"));
    }
}
