//! AAC over RTP as RFC 3640 `mpeg4-generic`, mode `AAC-hbr`: each packet starts with the
//! AU-headers-length (in bits), then one AU header per access unit (13-bit size, 3-bit index or
//! index delta, as SDP's `sizelength`, `indexlength`, `indexdeltalength` say), then the units.
//!
//! Packetizing: one raw AAC frame per packet; a frame larger than the MTU is fragmented, every
//! fragment with the same AU header (the whole frame's size) and the marker on the last.
//! RTP times count samples (1024 per frame) rather than re-deriving each from the rounded
//! millisecond timestamp, so players see an exact clock; a timestamp that jumps (a gap in the
//! stream) resynchronizes it.
//!
//! Depacketizing: several AUs per packet (each `1024` samples after the previous), or one AU in
//! fragments gathered up to the marker; a gap drops the fragmented AU.

use bytes::Bytes;

use super::clock::RtpClock;
use super::codec::{AacTrack, FLV_AAC_FLAGS};
use super::{Arrival, MediaFrame, Outgoing, RtpError, RtpHeader, payload_error};
use crate::protocol::codec::CodecError;
use crate::protocol::codec::bits::BitReader;
use crate::protocol::flv::{self, MediaKind, PacketType};

/// Samples in one AAC-LC frame (the core frame, for HE-AAC too).
pub const SAMPLES_PER_FRAME: u32 = 1024;
const WHAT: &str = "AAC (RFC 3640)";
/// The largest frame a 13-bit AU size can state.
const MAX_AU_SIZE: usize = (1 << 13) - 1;

/// Hub packets of one AAC track to RTP.
#[derive(Debug, Clone)]
pub struct AacPacketizer {
    mtu: usize,
    /// The RTP time the next frame gets if it follows the previous one without a gap.
    next_timestamp: Option<u32>,
}

impl AacPacketizer {
    pub fn new(mtu: usize) -> Self {
        AacPacketizer { mtu, next_timestamp: None }
    }

    pub(crate) fn packetize(&mut self, to: Outgoing<'_>, timestamp_ms: u32, body: &[u8]) -> Result<(), RtpError> {
        let Outgoing { sequencer, clock, out } = to;
        let tag = flv::parse_audio_tag(body)?;
        if tag.packet_type != PacketType::CodedFrames || tag.payload.is_empty() {
            return Ok(());
        }
        let frame = tag.payload;
        if frame.len() > MAX_AU_SIZE {
            return Err(payload_error(WHAT, "frame larger than a 13-bit AU size"));
        }
        let timestamp = smooth_timestamp(&mut self.next_timestamp, clock, timestamp_ms, SAMPLES_PER_FRAME);
        // AU-headers-length: one 16-bit header; the header: size, then index 0.
        let size = (frame.len() as u16) << 3;
        let headers = [0, 16, (size >> 8) as u8, size as u8];
        let max_data = self.mtu - RtpHeader::LEN - headers.len();
        let mut chunks = frame.chunks(max_data).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            sequencer.push(out, last, timestamp, &[&headers, chunk]);
        }
        Ok(())
    }
}

/// The RTP time of a frame at `timestamp_ms`: the previous frame's plus its duration when that
/// is within 1.5 frames of the millisecond timestamp (the rounding FLV's milliseconds cause),
/// else the millisecond timestamp's own (the stream jumped).
pub(crate) fn smooth_timestamp(next: &mut Option<u32>, clock: &RtpClock, timestamp_ms: u32, samples: u32) -> u32 {
    let exact = clock.rtp_time(i64::from(timestamp_ms));
    let timestamp = match *next {
        Some(expected)
            if (exact.wrapping_sub(expected) as i32).unsigned_abs() <= samples.saturating_add(samples / 2) =>
        {
            expected
        }
        _ => exact,
    };
    *next = Some(timestamp.wrapping_add(samples));
    timestamp
}

/// RTP packets of one AAC track to hub frames.
#[derive(Debug, Clone)]
pub struct AacDepacketizer {
    size_length: u32,
    index_length: u32,
    index_delta_length: u32,
    max_frame: usize,
    /// A fragmented AU being gathered, and its announced size.
    fragment: Option<(Vec<u8>, usize)>,
    /// The previous packet ended an AU (its marker), so this one starts one. Fragments carry no
    /// start flag: after a gap, packets are skipped until a marker says where the next AU
    /// begins.
    at_boundary: bool,
}

impl AacDepacketizer {
    pub fn new(track: &AacTrack, max_frame: usize) -> Self {
        AacDepacketizer {
            size_length: u32::from(track.size_length),
            index_length: u32::from(track.index_length),
            index_delta_length: u32::from(track.index_delta_length),
            max_frame,
            fragment: None,
            at_boundary: true,
        }
    }

    pub(crate) fn depacketize(&mut self, arrival: &Arrival<'_, '_>, out: &mut Vec<MediaFrame>) -> Result<(), RtpError> {
        let &Arrival { packet, ticks, lost, ref timing } = arrival;
        if lost {
            self.fragment = None;
            self.at_boundary = false;
        }
        let at_boundary = std::mem::replace(&mut self.at_boundary, packet.header.marker);
        let payload = packet.payload;
        let headers_bits = payload.get(..2).map(|len| usize::from(u16::from_be_bytes([len[0], len[1]])));
        let headers_bits = headers_bits.ok_or(payload_error(WHAT, "no AU-headers-length"))?;
        let headers_len = headers_bits.div_ceil(8);
        let headers = payload.get(2..2 + headers_len).ok_or(payload_error(WHAT, "AU headers past the end"))?;
        let mut data = &payload[2 + headers_len..];
        let sizes = self.au_sizes(headers, headers_bits)?;

        if let Some((mut frame, size)) = self.fragment.take() {
            // A continuation: one AU header whose size is the whole AU's.
            frame.extend_from_slice(data);
            if frame.len() > size || frame.len() > self.max_frame {
                return Err(payload_error(WHAT, "fragments larger than their AU"));
            }
            if packet.header.marker {
                if frame.len() == size {
                    out.push(aac_frame(timing.ms(ticks), &frame));
                }
            } else {
                self.fragment = Some((frame, size));
            }
            return Ok(());
        }
        if !at_boundary {
            // The rest of an AU whose start was lost.
            return Ok(());
        }
        for (index, size) in sizes.iter().enumerate() {
            if *size > data.len() {
                if sizes.len() == 1 && !packet.header.marker && *size <= self.max_frame {
                    // The first fragment of a large AU.
                    self.fragment = Some((data.to_vec(), *size));
                    return Ok(());
                }
                return Err(payload_error(WHAT, "AU past the end of the packet"));
            }
            let (frame, rest) = data.split_at(*size);
            data = rest;
            let au_ticks = ticks + i64::from(SAMPLES_PER_FRAME) * index as i64;
            out.push(aac_frame(timing.ms(au_ticks), frame));
        }
        Ok(())
    }

    /// The AU sizes the headers state (indexes and deltas are read and ignored: AUs arrive in
    /// order in this mode's non-interleaved use).
    fn au_sizes(&self, headers: &[u8], headers_bits: usize) -> Result<Vec<usize>, RtpError> {
        let mut bits = BitReader::new(headers, CodecError::Malformed { what: WHAT, reason: "AU header truncated" });
        let mut sizes = Vec::new();
        let mut read = 0usize;
        let first_len = (self.size_length + self.index_length) as usize;
        let next_len = (self.size_length + self.index_delta_length) as usize;
        // Zero-width headers would never advance; over 16 bits is no mode RFC 3640 defines.
        if self.size_length == 0 || self.size_length > 16 || self.index_length > 16 || self.index_delta_length > 16 {
            return Err(payload_error(WHAT, "AU header field lengths out of range"));
        }
        while read < headers_bits {
            let index_bits = if sizes.is_empty() { self.index_length } else { self.index_delta_length };
            let size = bits.bits(self.size_length)?;
            bits.bits(index_bits)?;
            read += if sizes.is_empty() { first_len } else { next_len };
            sizes.push(size as usize);
        }
        Ok(sizes)
    }
}

fn aac_frame(timestamp: u32, frame: &[u8]) -> MediaFrame {
    let mut body = Vec::with_capacity(2 + frame.len());
    body.extend_from_slice(&[FLV_AAC_FLAGS, 1]);
    body.extend_from_slice(frame);
    MediaFrame { kind: MediaKind::Audio, timestamp, body: Bytes::from(body) }
}

#[cfg(test)]
mod tests {
    use super::super::{Depacketizer, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket};
    use super::*;

    fn track() -> AacTrack {
        // LC, 48 kHz, stereo.
        AacTrack::from_config(&[0x11, 0x90]).unwrap()
    }

    fn settings(mtu: usize) -> PacketizerSettings {
        PacketizerSettings { payload_type: 97, ssrc: 9, first_sequence: 0, first_timestamp: 0, mtu }
    }

    fn flv_frame(frame: &[u8]) -> Vec<u8> {
        [&[0xaf, 1][..], frame].concat()
    }

    #[test]
    fn frames_get_au_headers_and_sample_exact_times() {
        let codec = RtpCodec::Aac(track());
        let mut packetizer = Packetizer::new(&codec, settings(1400));
        let mut out = Vec::new();
        // 21.33 ms frames as FLV rounds them: 0, 21, 43, 64.
        for ms in [0, 21, 43, 64] {
            packetizer.packetize(ms, &flv_frame(&[1, 2, 3]), &mut out).unwrap();
        }
        let packets: Vec<Bytes> = PacketList(Bytes::from(out)).packets().collect();
        let first = RtpPacket::parse(&packets[0]).unwrap();
        assert_eq!(first.payload, [0, 16, 0, 3 << 3, 1, 2, 3]);
        assert!(first.header.marker);
        let times: Vec<u32> = packets.iter().map(|p| RtpPacket::parse(p).unwrap().header.timestamp).collect();
        assert_eq!(times, [0, 1024, 2048, 3072]);
        // A jump of a second resynchronizes.
        let mut out = Vec::new();
        packetizer.packetize(1064, &flv_frame(&[4]), &mut out).unwrap();
        let packet = PacketList(Bytes::from(out)).packets().next().unwrap();
        assert_eq!(RtpPacket::parse(&packet).unwrap().header.timestamp, 51_072);
        // The sequence header yields nothing.
        assert_eq!(packetizer.packetize(0, &[0xaf, 0, 0x11, 0x90], &mut Vec::new()).unwrap(), 0);
    }

    #[test]
    fn several_aus_per_packet_are_split() {
        let codec = RtpCodec::Aac(track());
        let mut depacketizer = Depacketizer::new(&codec, 1 << 16);
        // Two AU headers (32 bits): sizes 2 and 3.
        let mut packet = Vec::new();
        RtpHeader { marker: true, payload_type: 97, sequence: 1, timestamp: 4800, ssrc: 1 }.write(&mut packet);
        packet.extend_from_slice(&[0, 32, 0, 2 << 3, 0, 3 << 3, 9, 9, 7, 7, 7]);
        let mut frames = Vec::new();
        depacketizer.depacketize(&RtpPacket::parse(&packet).unwrap(), &mut frames).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].body.as_ref(), [0xaf, 1, 9, 9]);
        assert_eq!(frames[1].body.as_ref(), [0xaf, 1, 7, 7, 7]);
        // 1024 samples at 48 kHz later: 21 ms.
        assert_eq!((frames[0].timestamp, frames[1].timestamp), (0, 21));
        // A header stating more data than the packet has is an error.
        let mut bad = Vec::new();
        RtpHeader { marker: true, payload_type: 97, sequence: 2, timestamp: 9600, ssrc: 1 }.write(&mut bad);
        bad.extend_from_slice(&[0, 16, 0, 9 << 3, 1]);
        assert!(depacketizer.depacketize(&RtpPacket::parse(&bad).unwrap(), &mut frames).is_err());
    }

    #[test]
    fn a_large_frame_is_fragmented_and_reassembled_and_a_gap_drops_it() {
        let codec = RtpCodec::Aac(track());
        let mut packetizer = Packetizer::new(&codec, settings(200));
        let frame: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        packetizer.packetize(0, &flv_frame(&frame), &mut out).unwrap();
        packetizer.packetize(21, &flv_frame(&frame), &mut out).unwrap();
        let packets: Vec<Bytes> = PacketList(Bytes::from(out)).packets().collect();
        assert!(packets.len() > 10);
        let mut depacketizer = Depacketizer::new(&codec, 1 << 16);
        let mut frames = Vec::new();
        for (index, packet) in packets.iter().enumerate() {
            if index == 2 {
                continue;
            }
            depacketizer.depacketize(&RtpPacket::parse(packet).unwrap(), &mut frames).unwrap();
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].body.as_ref(), flv_frame(&frame));
        assert_eq!(frames[0].timestamp, 21);
    }
}
