//! G.711 A-law (PCMA) and mu-law (PCMU) over RTP (RFC 3551, 4.5.14): one byte per sample per
//! channel at 8 kHz, no payload header. FLV carries the same bytes (SoundFormat 7 and 8).

use bytes::Bytes;

use super::aac::smooth_timestamp;
use super::{Arrival, MediaFrame, Outgoing, RtpError, RtpHeader};
use crate::protocol::flv::{self, MediaKind};

/// FLV audio flags: SoundFormat 7 (A-law) or 8 (mu-law), 16-bit, mono or stereo. The rate
/// bits cannot say 8 kHz; readers take G.711 as 8 kHz whatever they say.
fn flv_flags(alaw: bool, channels: u8) -> u8 {
    let format = if alaw { 7 } else { 8 };
    (format << 4) | 0x02 | u8::from(channels > 1)
}

/// Hub packets of one G.711 track to RTP.
#[derive(Debug, Clone)]
pub struct G711Packetizer {
    mtu: usize,
    next_timestamp: Option<u32>,
}

impl G711Packetizer {
    pub fn new(mtu: usize) -> Self {
        G711Packetizer { mtu, next_timestamp: None }
    }

    pub(crate) fn packetize(&mut self, to: Outgoing<'_>, timestamp_ms: u32, body: &[u8]) -> Result<(), RtpError> {
        let Outgoing { sequencer, clock, out } = to;
        let tag = flv::parse_audio_tag(body)?;
        let channels = tag.legacy_format.map_or(1, |format| usize::from(format.channels.max(1)));
        let samples = tag.payload;
        if samples.is_empty() {
            return Ok(());
        }
        let frames = u32::try_from(samples.len() / channels).unwrap_or(u32::MAX);
        let mut timestamp = smooth_timestamp(&mut self.next_timestamp, clock, timestamp_ms, frames);
        // Cut at whole sample frames so every packet's timestamp counts samples exactly.
        let max_payload = ((self.mtu - RtpHeader::LEN) / channels * channels).max(channels);
        for chunk in samples.chunks(max_payload) {
            sequencer.push(out, false, timestamp, &[chunk]);
            timestamp = timestamp.wrapping_add((chunk.len() / channels) as u32);
        }
        Ok(())
    }
}

/// RTP packets of one G.711 track to hub frames: one frame per packet.
#[derive(Debug, Clone)]
pub struct G711Depacketizer {
    flags: u8,
}

impl G711Depacketizer {
    pub fn new(alaw: bool, channels: u8) -> Self {
        G711Depacketizer { flags: flv_flags(alaw, channels) }
    }

    pub(crate) fn depacketize(&mut self, arrival: &Arrival<'_, '_>, out: &mut Vec<MediaFrame>) -> Result<(), RtpError> {
        let &Arrival { packet, ticks, ref timing, .. } = arrival;
        if packet.payload.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(1 + packet.payload.len());
        body.push(self.flags);
        body.extend_from_slice(packet.payload);
        out.push(MediaFrame { kind: MediaKind::Audio, timestamp: timing.ms(ticks), body: Bytes::from(body) });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Depacketizer, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket};
    use super::*;

    #[test]
    fn samples_round_trip_with_times_in_samples() {
        let codec = RtpCodec::Pcmu { channels: 1 };
        let settings = PacketizerSettings { payload_type: 0, ssrc: 3, first_sequence: 7, first_timestamp: 0, mtu: 100 };
        let mut packetizer = Packetizer::new(&codec, settings);
        let samples: Vec<u8> = (0..160u8).collect();
        let body = [&[flv_flags(false, 1)][..], &samples].concat();
        let mut out = Vec::new();
        assert_eq!(packetizer.packetize(0, &body, &mut out).unwrap(), 2);
        packetizer.packetize(20, &body, &mut out).unwrap();
        let packets: Vec<Bytes> = PacketList(Bytes::from(out)).packets().collect();
        let times: Vec<u32> = packets.iter().map(|p| RtpPacket::parse(p).unwrap().header.timestamp).collect();
        assert_eq!(times, [0, 88, 160, 248]);

        let mut depacketizer = Depacketizer::new(&codec, 1 << 16);
        let mut frames = Vec::new();
        for packet in &packets {
            depacketizer.depacketize(&RtpPacket::parse(packet).unwrap(), &mut frames).unwrap();
        }
        let joined: Vec<u8> = frames[..2].iter().flat_map(|frame| frame.body[1..].to_vec()).collect();
        assert_eq!(joined, samples);
        assert_eq!(frames[0].body[0], 0x82);
        assert_eq!(frames.iter().map(|f| f.timestamp).collect::<Vec<_>>(), [0, 11, 20, 31]);
    }
}
