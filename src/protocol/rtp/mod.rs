//! RTP (RFC 3550) as RTSP carries media: packetizers that turn the hub's packets (FLV tag
//! bodies, millisecond timestamps) into RTP packets, depacketizers that turn a publisher's RTP
//! packets back into FLV tag bodies, RTCP sender reports, and RTSP's interleaved framing.
//!
//! # Layout
//!
//! - [`header`]: the RTP header, written and parsed.
//! - [`clock`]: milliseconds to RTP clock ticks and back, across the 32-bit wrap.
//! - [`interleaved`]: the `$`, channel, length frame of RTP over the RTSP TCP connection.
//! - [`rtcp`]: the sender report built for players, compound packets from peers checked and
//!   skipped.
//! - [`codec`]: [`RtpCodec`], a track's codec with the parameters SDP states (parameter sets,
//!   `AudioSpecificConfig`), and the FLV tag bodies the depacketizers emit.
//! - [`dts`]: decode times rebuilt from the presentation times RTP carries, for video with
//!   B-frames.
//! - [`video`]: H.264 (RFC 6184: single NAL unit, STAP-A, FU-A) and H.265 (RFC 7798: single,
//!   AP, FU), both ways; one implementation with the two NAL header formats as a parameter.
//! - [`aac`]: AAC, RFC 3640 `mpeg4-generic` in `AAC-hbr` mode, both ways.
//! - [`g711`]: PCMA and PCMU (RFC 3551), both ways.
//!
//! # What the RTSP driver does with this
//!
//! **Playing** (hub -> RTSP players). Per stream and track, one [`Packetizer`]: each hub packet
//! of the track goes through [`Packetizer::packetize`] once, into a [`PacketList`] that every
//! player of the stream shares (the hub's `WireForm::RtpPackets` slot). Sequence numbers, SSRC
//! and RTP times are therefore the stream's, the same for every player. The list holds
//! interleaved frames on the track's usual channel ([`Packetizer::with_channel`]): a TCP player
//! on that channel sends it whole, one on another channel its own `$` and channel before each
//! frame's length; a UDP player sends each packet alone, to its destination.
//! A sequence header packetizes to nothing but is remembered: H.264/H.265 parameter sets are
//! sent in band before every keyframe, so a player that joins at a keyframe can decode.
//! `RTP-Info` for a player that starts at hub packet `p`: the sequence number of the first RTP
//! packet of `p` and [`Packetizer::rtp_time`] of `p`'s timestamp. Every few seconds the driver
//! sends each player [`Packetizer::sender_report`] per track (NTP wall time from the driver's
//! clock, and the media time the stream was at then).
//!
//! **Publishing** (RTSP publisher -> hub). Per track, one [`Depacketizer`] built from the
//! ANNOUNCE's SDP. Each RTP packet (interleaved frame or UDP datagram) is parsed with
//! [`RtpPacket::parse`] and fed to [`Depacketizer::depacketize`], which appends finished
//! [`MediaFrame`]s: FLV tag bodies with millisecond timestamps, ready for `hub::Packet::new`.
//! The SDP's sequence header ([`RtpCodec::sequence_header`]) goes to the hub first; a new one
//! built from parameter sets that arrive in band is emitted as a frame before the keyframe
//! that uses it. Errors from `depacketize` are one bad packet: count them, do not close. RTCP
//! from the publisher (receiver or sender reports) goes to [`rtcp::check_compound`] and is
//! otherwise ignored.
//!
//! Nothing here reads a clock: RTP times are computed from the media timestamps, and the NTP
//! time of a sender report is the caller's.

pub mod aac;
pub mod clock;
pub mod codec;
pub mod dts;
pub mod g711;
pub mod header;
pub mod interleaved;
pub mod rtcp;
pub mod video;

use bytes::Bytes;

pub use codec::RtpCodec;
pub use header::{RtpHeader, RtpPacket};

use crate::protocol::codec::CodecError;
use crate::protocol::flv::{FlvError, MediaKind};
use video::{Configuration, NalFormat, VideoDepacketizer, VideoPacketizer};

/// The default largest RTP packet, header included: fits a 1500-byte Ethernet MTU with IP, UDP
/// (or TCP and the interleaved header) and room for tunnels.
pub const DEFAULT_MTU: usize = 1400;
/// The smallest MTU a packetizer accepts: room for the header, an FU header and some payload.
pub const MIN_MTU: usize = 64;
/// The largest access unit (video) or audio frame a depacketizer assembles. A publisher that
/// sends more without a marker or timestamp change loses that frame, not memory.
pub const DEFAULT_MAX_FRAME: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet shorter than its header says")]
    TooShort,
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("RTP padding count is 0 or longer than the packet")]
    BadPadding,
    #[error("malformed {what} payload: {reason}")]
    Payload { what: &'static str, reason: &'static str },
    #[error("FLV body: {0}")]
    Flv(#[from] FlvError),
    #[error("codec configuration: {0}")]
    Codec(#[from] CodecError),
    #[error("RTCP: {0}")]
    Rtcp(&'static str),
}

pub(crate) fn payload_error(what: &'static str, reason: &'static str) -> RtpError {
    RtpError::Payload { what, reason }
}

/// A frame a depacketizer finished: what `hub::Packet::new` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    pub kind: MediaKind,
    /// Milliseconds since the track's first RTP packet, plus the depacketizer's offset: for
    /// video the decode time, rebuilt from the RTP presentation times ([`dts`]).
    pub timestamp: u32,
    /// The FLV tag body: a sequence header, or a frame.
    pub body: Bytes,
}

/// The shared RTP form of one hub packet: each RTP packet as an interleaved frame (`$`, the
/// track's channel, its 16-bit length, the packet). Built once per stream, shared by every
/// player: a TCP player on the track's channel sends it whole, one on another channel sends
/// its own `$` and channel before each frame's length, a UDP player each packet alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketList(pub Bytes);

impl PacketList {
    /// The RTP packets, each a slice of the shared bytes. A list this module built is well
    /// formed; a truncated tail is not yielded.
    pub fn packets(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let frame = interleaved::check(self.0.get(at..)?)?;
            let start = at + interleaved::HEADER_LEN;
            let packet = self.0.get(start..start + frame.len).map(|_| self.0.slice(start..start + frame.len))?;
            at = start + frame.len;
            Some(packet)
        })
    }
}

/// What numbers a stream's packets for one track: the payload type, SSRC, next sequence number
/// and the counts a sender report states.
#[derive(Debug, Clone)]
pub(crate) struct Sequencer {
    /// The interleaved channel the shared frames name.
    channel: u8,
    payload_type: u8,
    ssrc: u32,
    next_sequence: u16,
    packets: u32,
    octets: u32,
}

impl Sequencer {
    pub(crate) fn new(payload_type: u8, ssrc: u32, first_sequence: u16) -> Self {
        Sequencer { channel: 0, payload_type, ssrc, next_sequence: first_sequence, packets: 0, octets: 0 }
    }

    /// Appends one RTP packet, as an interleaved frame, whose payload is the concatenation of
    /// `parts`.
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, marker: bool, timestamp: u32, parts: &[&[u8]]) {
        let payload_len: usize = parts.iter().map(|part| part.len()).sum();
        // Packetizers bound every payload by the MTU, itself far below 64 KiB.
        let len = u16::try_from(RtpHeader::LEN + payload_len).unwrap_or(u16::MAX);
        out.extend_from_slice(&interleaved::header(self.channel, len));
        let header = RtpHeader {
            marker,
            payload_type: self.payload_type,
            sequence: self.next_sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        header.write(out);
        for part in parts {
            out.extend_from_slice(part);
        }
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }
}

/// Turns one track's hub packets into RTP packets. One per stream and track.
#[derive(Debug, Clone)]
pub struct Packetizer {
    sequencer: Sequencer,
    clock: clock::RtpClock,
    format: PacketizerFormat,
}

#[derive(Debug, Clone)]
enum PacketizerFormat {
    Video(video::VideoPacketizer),
    Aac(aac::AacPacketizer),
    G711(g711::G711Packetizer),
}

/// The numbers a packetizer starts from. The SSRC and the initial sequence number and
/// timestamp should be random (RFC 3550, 5.1): the driver draws them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketizerSettings {
    pub payload_type: u8,
    pub ssrc: u32,
    pub first_sequence: u16,
    pub first_timestamp: u32,
    /// The largest RTP packet, header included; clamped up to [`MIN_MTU`].
    pub mtu: usize,
}

impl Packetizer {
    pub fn new(codec: &RtpCodec, settings: PacketizerSettings) -> Self {
        let mtu = settings.mtu.max(MIN_MTU);
        let format = match codec {
            RtpCodec::H264 { config } => PacketizerFormat::Video(VideoPacketizer::new(
                NalFormat::H264,
                config.as_ref().map(Configuration::avc),
                mtu,
            )),
            RtpCodec::H265 { config } => PacketizerFormat::Video(VideoPacketizer::new(
                NalFormat::H265,
                config.as_ref().map(Configuration::hevc),
                mtu,
            )),
            RtpCodec::Aac(_) => PacketizerFormat::Aac(aac::AacPacketizer::new(mtu)),
            RtpCodec::Pcma { .. } | RtpCodec::Pcmu { .. } => PacketizerFormat::G711(g711::G711Packetizer::new(mtu)),
        };
        Packetizer {
            sequencer: Sequencer::new(settings.payload_type, settings.ssrc, settings.first_sequence),
            clock: clock::RtpClock::new(codec.clock_rate(), settings.first_timestamp),
            format,
        }
    }

    /// Appends the RTP packets of one hub packet (`body` is its FLV tag body) to `out`, as a
    /// [`PacketList`]; returns how many. A sequence header yields none (it is remembered).
    pub fn packetize(&mut self, timestamp_ms: u32, body: &[u8], out: &mut Vec<u8>) -> Result<usize, RtpError> {
        let before = self.sequencer.next_sequence;
        let to = Outgoing { sequencer: &mut self.sequencer, clock: &self.clock, out };
        match &mut self.format {
            PacketizerFormat::Video(video) => video.packetize(to, timestamp_ms, body)?,
            PacketizerFormat::Aac(aac) => aac.packetize(to, timestamp_ms, body)?,
            PacketizerFormat::G711(g711) => g711.packetize(to, timestamp_ms, body)?,
        }
        Ok(usize::from(self.sequencer.next_sequence.wrapping_sub(before)))
    }

    /// Names `channel` in the interleaved frames of the lists it builds (RTSP players usually
    /// take channel `2n` for the n-th track; those on it send a list as it is).
    pub fn with_channel(mut self, channel: u8) -> Self {
        self.sequencer.channel = channel;
        self
    }

    /// The interleaved channel its lists name.
    pub fn channel(&self) -> u8 {
        self.sequencer.channel
    }

    /// The sequence number the next packet will carry (`RTP-Info: seq=`).
    pub fn next_sequence(&self) -> u16 {
        self.sequencer.next_sequence
    }

    /// The RTP time of a media time in milliseconds (`RTP-Info: rtptime=`, sender reports).
    pub fn rtp_time(&self, ms: i64) -> u32 {
        self.clock.rtp_time(ms)
    }

    pub fn ssrc(&self) -> u32 {
        self.sequencer.ssrc
    }

    /// Packets and payload octets sent so far, as a sender report counts them.
    pub fn counts(&self) -> (u32, u32) {
        (self.sequencer.packets, self.sequencer.octets)
    }

    /// Appends this track's RTCP sender report: `ntp` (wall time, [`rtcp::ntp_from_unix_micros`])
    /// is the instant the stream was at `media_ms` (its millisecond timestamps), so a player
    /// maps every track's RTP time onto one clock.
    pub fn sender_report(&self, ntp: u64, media_ms: i64, out: &mut Vec<u8>) {
        let (packets, octets) = self.counts();
        rtcp::sender_report(self.ssrc(), ntp, self.rtp_time(media_ms), packets, octets, out);
    }
}

/// Turns one track's RTP packets back into FLV tag bodies. One per published track.
#[derive(Debug, Clone)]
pub struct Depacketizer {
    unwrap: clock::Unwrapper,
    offset_ms: u32,
    /// The sequence number expected next; a different one means packets were lost (or
    /// reordered, which a relay over TCP or a LAN rarely sees and treats alike).
    expected_sequence: Option<u16>,
    format: DepacketizerFormat,
}

#[derive(Debug, Clone)]
enum DepacketizerFormat {
    /// Boxed: with its reorder buffer and picture order state it is several times the others.
    Video(Box<video::VideoDepacketizer>),
    Aac(aac::AacDepacketizer),
    G711(g711::G711Depacketizer),
}

impl Depacketizer {
    /// `max_frame` bounds what one access unit or audio frame may grow to.
    pub fn new(codec: &RtpCodec, max_frame: usize) -> Self {
        let format = match codec {
            RtpCodec::H264 { config } => DepacketizerFormat::Video(Box::new(VideoDepacketizer::new(
                NalFormat::H264,
                config.as_ref().map(Configuration::avc),
                max_frame,
            ))),
            RtpCodec::H265 { config } => DepacketizerFormat::Video(Box::new(VideoDepacketizer::new(
                NalFormat::H265,
                config.as_ref().map(Configuration::hevc),
                max_frame,
            ))),
            RtpCodec::Aac(config) => DepacketizerFormat::Aac(aac::AacDepacketizer::new(config, max_frame)),
            RtpCodec::Pcma { channels } => DepacketizerFormat::G711(g711::G711Depacketizer::new(true, *channels)),
            RtpCodec::Pcmu { channels } => DepacketizerFormat::G711(g711::G711Depacketizer::new(false, *channels)),
        };
        Depacketizer {
            unwrap: clock::Unwrapper::new(codec.clock_rate()),
            offset_ms: 0,
            expected_sequence: None,
            format,
        }
    }

    /// Milliseconds added to every timestamp: where this track's first packet falls on the
    /// session's time line (the driver's arrival time of it, relative to the session's first
    /// packet of any track), so that tracks that start apart stay apart.
    pub fn set_offset_ms(&mut self, offset_ms: u32) {
        self.offset_ms = offset_ms;
    }

    /// Whether the first packet was seen (so the offset is fixed).
    pub fn started(&self) -> bool {
        self.expected_sequence.is_some()
    }

    /// Feeds one RTP packet of this track; finished frames are appended to `out`. An error
    /// means this packet was malformed; the depacketizer goes on with the next.
    pub fn depacketize(&mut self, packet: &RtpPacket<'_>, out: &mut Vec<MediaFrame>) -> Result<(), RtpError> {
        let sequence = packet.header.sequence;
        let lost = self.expected_sequence.is_some_and(|expected| expected != sequence);
        self.expected_sequence = Some(sequence.wrapping_add(1));
        let ticks = self.unwrap.ticks(packet.header.timestamp);
        let arrival =
            Arrival { packet, ticks, lost, timing: FrameTiming { unwrap: self.unwrap, offset_ms: self.offset_ms } };
        match &mut self.format {
            DepacketizerFormat::Video(video) => video.depacketize(&arrival, out),
            DepacketizerFormat::Aac(aac) => aac.depacketize(&arrival, out),
            DepacketizerFormat::G711(g711) => g711.depacketize(&arrival, out),
        }
    }
}

/// Where a codec's packetizer writes: the stream's numbering and clock, and the list being
/// built.
pub(crate) struct Outgoing<'a> {
    sequencer: &'a mut Sequencer,
    clock: &'a clock::RtpClock,
    out: &'a mut Vec<u8>,
}

/// One packet as a codec's depacketizer gets it: its clock ticks since the track's first
/// packet, and whether packets were lost just before it.
pub(crate) struct Arrival<'p, 'a> {
    packet: &'p RtpPacket<'a>,
    ticks: i64,
    lost: bool,
    timing: FrameTiming,
}

/// Ticks to a frame's millisecond timestamp, for the codec depacketizers.
pub(crate) struct FrameTiming {
    unwrap: clock::Unwrapper,
    offset_ms: u32,
}

impl FrameTiming {
    pub(crate) fn ms(&self, ticks: i64) -> u32 {
        self.unwrap.to_ms(ticks).wrapping_add(self.offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_report_states_the_stream_clock_and_counts() {
        let codec = RtpCodec::Pcmu { channels: 1 };
        let settings =
            PacketizerSettings { payload_type: 0, ssrc: 77, first_sequence: 0, first_timestamp: 100, mtu: 200 };
        let mut packetizer = Packetizer::new(&codec, settings);
        packetizer.packetize(0, &[0x82, 1, 2, 3], &mut Vec::new()).unwrap();
        let mut report = Vec::new();
        packetizer.sender_report(0x0102_0304_0506_0708, 1000, &mut report);
        let packets = rtcp::check_compound(&report).unwrap();
        let body = packets[0].body;
        assert_eq!(&body[..4], 77u32.to_be_bytes());
        // RTP time of 1 s at 8 kHz from the first timestamp (8100), then 1 packet of 3 octets.
        assert_eq!(&body[12..24], [0, 0, 0x1f, 0xa4, 0, 0, 0, 1, 0, 0, 0, 3]);
    }

    #[test]
    fn packet_list_slices_each_packet() {
        let mut sequencer = Sequencer::new(96, 5, 65535);
        sequencer.channel = 2;
        let mut out = Vec::new();
        sequencer.push(&mut out, false, 10, &[b"ab"]);
        sequencer.push(&mut out, true, 10, &[b"c", b"de"]);
        let list = PacketList(Bytes::from(out));
        let packets: Vec<Bytes> = list.packets().collect();
        assert_eq!(packets.len(), 2);
        let second = RtpPacket::parse(&packets[1]).unwrap();
        assert_eq!(second.payload, b"cde");
        assert_eq!(second.header.sequence, 0);
        assert!(second.header.marker);
        assert_eq!(RtpPacket::parse(&packets[0]).unwrap().header.sequence, 65535);
        assert_eq!((sequencer.packets, sequencer.octets), (2, 5));
        assert_eq!(&list.0[..4], [b'$', 2, 0, 14], "interleaved on the track's channel");
        // A truncated tail is not yielded.
        let cut = PacketList(list.0.slice(..list.0.len() - 1));
        assert_eq!(cut.packets().count(), 1);
    }
}
