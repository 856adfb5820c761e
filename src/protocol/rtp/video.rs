//! H.264 (RFC 6184) and H.265 (RFC 7798) over RTP, both ways. The two differ only in their
//! NAL unit header (one byte or two), the types that mean parameter set, keyframe,
//! aggregation and fragment, and how those payloads are headed; [`NalFormat`] holds that, and
//! one packetizer and one depacketizer serve both.
//!
//! Packetizing (packetization-mode 1, non-interleaved): each NAL unit of an access unit in one
//! packet when it fits the MTU, else fragments (FU-A, FU); before a keyframe that does not
//! carry them, the stream's parameter sets in one aggregation packet (STAP-A, AP). The marker
//! bit ends the access unit.
//!
//! Depacketizing: single NAL units, aggregation packets and fragments are gathered into an
//! access unit, which ends at the marker bit or when the timestamp changes. A lost packet (a
//! gap in sequence numbers) drops the access unit it falls in, and a fragment whose start was
//! lost is never glued onto another. Parameter sets are taken out of the access unit; when
//! they differ from the configuration in force, a new sequence header is emitted before the
//! frame. Frames before any configuration is known are dropped: no player could decode them.
//!
//! Timestamps: RTP carries presentation times only; FLV wants decode times and a composition
//! offset. The depacketizer rebuilds decode times with a [`DtsExtractor`] sized by the reorder
//! depth the SPS declares (see [`super::dts`]), and emits each frame at its decode time with
//! `presentation - decode` as the composition offset: the packets an RTMP publisher of the same
//! stream sends. A stream without B-frames gets offsets of 0. The packetizer does the reverse:
//! RTP time = timestamp + composition offset.

use bytes::Bytes;

use super::codec::{
    self, FLV_AVC_INTER, FLV_AVC_KEY, FLV_EX_CODED_FRAMES, FLV_EX_CODED_FRAMES_X, FLV_EX_HEADER, FOURCC_HEVC,
};
use super::dts::DtsExtractor;
use super::{Arrival, FrameTiming, MediaFrame, Outgoing, RtpError, RtpHeader, Sequencer, payload_error};
use crate::protocol::codec::hevc::HevcPps;
use crate::protocol::codec::poc::PictureOrder;
use crate::protocol::codec::{AvcDecoderConfig, H264Sps, HevcDecoderConfig, HevcSps};
use crate::protocol::flv::{self, MediaKind, PacketType};

/// What differs between H.264 and H.265 on RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalFormat {
    H264,
    H265,
}

/// A parameter set's role, for the sets a configuration record is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParameterSet {
    Vps,
    Sps,
    Pps,
}

impl NalFormat {
    fn name(self) -> &'static str {
        match self {
            NalFormat::H264 => "H.264",
            NalFormat::H265 => "H.265",
        }
    }

    fn header_len(self) -> usize {
        match self {
            NalFormat::H264 => 1,
            NalFormat::H265 => 2,
        }
    }

    /// The NAL unit type; `None` for a unit shorter than its header.
    fn nal_type(self, nal: &[u8]) -> Option<u8> {
        match self {
            NalFormat::H264 => nal.first().map(|byte| byte & 0x1f),
            NalFormat::H265 => nal.get(..2).map(|header| (header[0] >> 1) & 0x3f),
        }
    }

    fn parameter_set(self, nal_type: u8) -> Option<ParameterSet> {
        match (self, nal_type) {
            (NalFormat::H264, 7) | (NalFormat::H265, 33) => Some(ParameterSet::Sps),
            (NalFormat::H264, 8) | (NalFormat::H265, 34) => Some(ParameterSet::Pps),
            (NalFormat::H265, 32) => Some(ParameterSet::Vps),
            _ => None,
        }
    }

    /// An IDR picture (H.264) or an IRAP picture (H.265, types 16-21): a decoder can start here.
    fn is_keyframe(self, nal_type: u8) -> bool {
        match self {
            NalFormat::H264 => nal_type == 5,
            NalFormat::H265 => (16..=21).contains(&nal_type),
        }
    }

    /// A coded slice (VCL NAL unit): H.264 types 1-5, H.265 types 0-31.
    fn is_slice(self, nal_type: u8) -> bool {
        match self {
            NalFormat::H264 => (1..=5).contains(&nal_type),
            NalFormat::H265 => nal_type < 32,
        }
    }

    /// POC units per frame: H.264 counts fields (libx264 and cameras step by 2), H.265 frames.
    fn poc_per_frame(self) -> i64 {
        match self {
            NalFormat::H264 => 2,
            NalFormat::H265 => 1,
        }
    }

    /// STAP-A (24) or AP (48).
    fn aggregation_type(self) -> u8 {
        match self {
            NalFormat::H264 => 24,
            NalFormat::H265 => 48,
        }
    }

    /// FU-A (28) or FU (49).
    fn fragment_type(self) -> u8 {
        match self {
            NalFormat::H264 => 28,
            NalFormat::H265 => 49,
        }
    }

    /// The payload header of an aggregation or fragment packet carrying units like `nal`:
    /// H.264 keeps the F and NRI bits, H.265 the layer id and temporal id.
    fn payload_header(self, nal: &[u8], packet_type: u8) -> [u8; 2] {
        match self {
            NalFormat::H264 => [(nal.first().copied().unwrap_or(0) & 0xe0) | packet_type, 0],
            NalFormat::H265 => {
                let [first, second] = [nal.first().copied().unwrap_or(0), nal.get(1).copied().unwrap_or(1)];
                [(first & 0x81) | (packet_type << 1), second]
            }
        }
    }

    /// The NAL unit header a fragmented unit had, from the fragment's payload header and FU
    /// header.
    fn rebuild_header(self, payload_header: &[u8], fu_header: u8) -> [u8; 2] {
        match self {
            NalFormat::H264 => [(payload_header[0] & 0xe0) | (fu_header & 0x1f), 0],
            NalFormat::H265 => [(payload_header[0] & 0x81) | ((fu_header & 0x3f) << 1), payload_header[1]],
        }
    }

    /// The FU header's type bits (five for H.264, six for H.265).
    fn fu_type_bits(self, nal_type: u8) -> u8 {
        match self {
            NalFormat::H264 => nal_type & 0x1f,
            NalFormat::H265 => nal_type & 0x3f,
        }
    }
}

/// Splits length-prefixed NAL units (AVCC/HVCC) into the units.
fn split_length_prefixed(mut data: &[u8], length_size: usize) -> Result<Vec<&[u8]>, RtpError> {
    let mut units = Vec::new();
    while !data.is_empty() {
        let prefix = data.get(..length_size).ok_or(payload_error("length-prefixed frame", "truncated length"))?;
        let len = prefix.iter().fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        let unit = data
            .get(length_size..length_size + len)
            .ok_or(payload_error("length-prefixed frame", "NAL unit past the end"))?;
        units.push(unit);
        data = &data[length_size + len..];
    }
    Ok(units)
}

/// The first coded slice of an access unit gathered with 4-byte length prefixes: the one
/// whose header states the picture's order.
fn first_slice(format: NalFormat, mut unit: &[u8]) -> Option<&[u8]> {
    while let Some(prefix) = unit.get(..4) {
        let len = usize::try_from(u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]])).ok()?;
        let nal = unit.get(4..4 + len)?;
        if format.nal_type(nal).is_some_and(|nal_type| format.is_slice(nal_type)) {
            return Some(nal);
        }
        unit = &unit[4 + len..];
    }
    None
}

/// The parameter sets a stream's configuration record holds, in the order they are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ParameterSets {
    vps: Vec<Vec<u8>>,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

impl ParameterSets {
    fn from_avc(config: &AvcDecoderConfig) -> Self {
        ParameterSets { vps: Vec::new(), sps: config.sps().to_vec(), pps: config.pps().to_vec() }
    }

    fn from_hevc(config: &HevcDecoderConfig) -> Self {
        ParameterSets { vps: config.vps().to_vec(), sps: config.sps().to_vec(), pps: config.pps().to_vec() }
    }

    fn all(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.vps.iter().chain(&self.sps).chain(&self.pps)
    }

    fn is_empty(&self) -> bool {
        self.sps.is_empty()
    }

    /// Replaces the sets of `role` with `nal` (a stream in band sends one of each).
    fn set(&mut self, role: ParameterSet, nal: &[u8]) -> bool {
        let slot = match role {
            ParameterSet::Vps => &mut self.vps,
            ParameterSet::Sps => &mut self.sps,
            ParameterSet::Pps => &mut self.pps,
        };
        if slot.len() == 1 && slot[0] == nal {
            return false;
        }
        *slot = vec![nal.to_vec()];
        true
    }

    /// The reorder depth the first SPS declares; `None` without a readable SPS.
    ///
    /// H.264 states it only in the VUI's `bitstream_restriction`. Without it: POC type 2 and
    /// the Baseline profile cannot reorder (0); otherwise the number of reference frames, the
    /// most pictures an encoder that sized its buffer by its references holds back (H.264
    /// would infer the whole DPB, up to 16, which costs players that much latency).
    fn reorder_depth(&self, format: NalFormat) -> Option<usize> {
        let sps = self.sps.first()?;
        let depth = match format {
            NalFormat::H264 => {
                let sps = H264Sps::parse(sps).ok()?;
                match sps.max_num_reorder_frames {
                    Some(depth) => depth,
                    None if sps.pic_order_cnt_type == 2 || sps.profile_idc == 66 => 0,
                    None => sps.max_num_ref_frames,
                }
            }
            NalFormat::H265 => HevcSps::parse(sps).ok()?.max_num_reorder_pics.unwrap_or(0),
        };
        Some(usize::try_from(depth).unwrap_or(usize::MAX))
    }

    /// Slice headers are read with the first SPS (and PPS): a stream in band sends one of
    /// each, and an SDP that lists several rarely uses the others.
    fn picture_order(&self, format: NalFormat) -> PictureOrder {
        let mut order = PictureOrder::default();
        let sps = self.sps.first().map(Vec::as_slice).unwrap_or_default();
        match format {
            NalFormat::H264 => {
                if let Ok(sps) = H264Sps::parse(sps) {
                    order.set_h264(sps);
                }
            }
            NalFormat::H265 => {
                let pps = self.pps.first().map(Vec::as_slice).unwrap_or_default();
                if let (Ok(sps), Ok(pps)) = (HevcSps::parse(sps), HevcPps::parse(pps)) {
                    order.set_h265(sps, pps);
                }
            }
        }
        order
    }

    /// The FLV sequence header these sets make, if they are complete and valid.
    fn sequence_header(&self, format: NalFormat) -> Option<Vec<u8>> {
        if self.sps.is_empty() || self.pps.is_empty() {
            return None;
        }
        match format {
            NalFormat::H264 => AvcDecoderConfig::from_parameter_sets(self.sps.clone(), self.pps.clone())
                .ok()
                .map(|config| codec::avc_sequence_header(&config)),
            NalFormat::H265 if !self.vps.is_empty() => {
                HevcDecoderConfig::from_parameter_sets(self.vps.clone(), self.sps.clone(), self.pps.clone())
                    .ok()
                    .map(|config| codec::hevc_sequence_header(&config))
            }
            NalFormat::H265 => None,
        }
    }
}

/// What a configuration record (SDP's, or a sequence header's) gives a packetizer or
/// depacketizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Configuration {
    parameter_sets: ParameterSets,
    /// The length prefix of NAL units in the stream's FLV frames.
    nal_length_size: usize,
}

impl Configuration {
    pub(crate) fn avc(config: &AvcDecoderConfig) -> Self {
        Configuration {
            parameter_sets: ParameterSets::from_avc(config),
            nal_length_size: config.nal_length_size().into(),
        }
    }

    pub(crate) fn hevc(config: &HevcDecoderConfig) -> Self {
        Configuration {
            parameter_sets: ParameterSets::from_hevc(config),
            nal_length_size: config.nal_length_size().into(),
        }
    }

    fn parse(format: NalFormat, record: &[u8]) -> Result<Self, RtpError> {
        Ok(match format {
            NalFormat::H264 => Self::avc(&AvcDecoderConfig::parse(record)?),
            NalFormat::H265 => Self::hevc(&HevcDecoderConfig::parse(record)?),
        })
    }
}

/// Hub packets of one H.264 or H.265 track to RTP.
#[derive(Debug, Clone)]
pub struct VideoPacketizer {
    format: NalFormat,
    mtu: usize,
    /// From the latest sequence header: its parameter sets are sent before keyframes that
    /// lack them. Before any, frames are taken as 4-byte length-prefixed.
    configuration: Configuration,
}

impl VideoPacketizer {
    pub(crate) fn new(format: NalFormat, configuration: Option<Configuration>, mtu: usize) -> Self {
        let configuration =
            configuration.unwrap_or(Configuration { parameter_sets: ParameterSets::default(), nal_length_size: 4 });
        VideoPacketizer { format, mtu, configuration }
    }

    pub(crate) fn packetize(&mut self, to: Outgoing<'_>, timestamp_ms: u32, body: &[u8]) -> Result<(), RtpError> {
        let Outgoing { sequencer, clock, out } = to;
        let tag = flv::parse_video_tag(body)?;
        match tag.packet_type {
            PacketType::SequenceHeader => {
                self.configuration = Configuration::parse(self.format, tag.payload)?;
                return Ok(());
            }
            PacketType::CodedFrames => {}
            // End of sequence, metadata, commands: nothing a player of RTP decodes.
            _ => return Ok(()),
        }
        let units = split_length_prefixed(tag.payload, self.configuration.nal_length_size)?;
        let units: Vec<&[u8]> = units.into_iter().filter(|unit| unit.len() > self.format.header_len()).collect();
        if units.is_empty() {
            return Ok(());
        }
        let timestamp = clock.rtp_time(i64::from(timestamp_ms) + i64::from(tag.composition_time_ms));
        let has_keyframe =
            units.iter().any(|unit| self.format.nal_type(unit).is_some_and(|t| self.format.is_keyframe(t)));
        let carries_sets =
            units.iter().any(|unit| self.format.nal_type(unit).is_some_and(|t| self.format.parameter_set(t).is_some()));
        if has_keyframe && !carries_sets && !self.configuration.parameter_sets.is_empty() {
            self.push_parameter_sets(sequencer, timestamp, out);
        }
        let last = units.len() - 1;
        for (index, unit) in units.iter().enumerate() {
            self.push_unit(sequencer, timestamp, unit, index == last, out);
        }
        Ok(())
    }

    /// The parameter sets in one aggregation packet, or one packet each when they do not fit.
    fn push_parameter_sets(&self, sequencer: &mut Sequencer, timestamp: u32, out: &mut Vec<u8>) {
        let max_payload = self.mtu - RtpHeader::LEN;
        let header_len = self.format.header_len();
        let aggregated: usize =
            header_len + self.configuration.parameter_sets.all().map(|set| 2 + set.len()).sum::<usize>();
        if aggregated <= max_payload {
            let first = self.configuration.parameter_sets.all().next().map(Vec::as_slice).unwrap_or_default();
            let mut payload = self.format.payload_header(first, self.format.aggregation_type())[..header_len].to_vec();
            for set in self.configuration.parameter_sets.all() {
                // Each set fits a u16: the record's own length fields are 16 bits.
                payload.extend_from_slice(&(set.len() as u16).to_be_bytes());
                payload.extend_from_slice(set);
            }
            sequencer.push(out, false, timestamp, &[&payload]);
        } else {
            for set in self.configuration.parameter_sets.all() {
                self.push_unit(sequencer, timestamp, set, false, out);
            }
        }
    }

    /// One NAL unit as a single packet, or as fragments when it does not fit.
    fn push_unit(
        &self,
        sequencer: &mut Sequencer,
        timestamp: u32,
        unit: &[u8],
        last_of_frame: bool,
        out: &mut Vec<u8>,
    ) {
        let max_payload = self.mtu - RtpHeader::LEN;
        if unit.len() <= max_payload {
            sequencer.push(out, last_of_frame, timestamp, &[unit]);
            return;
        }
        let header_len = self.format.header_len();
        let nal_type = self.format.nal_type(unit).unwrap_or(0);
        let payload_header = self.format.payload_header(unit, self.format.fragment_type());
        let payload_header = &payload_header[..header_len];
        let fu_type = self.format.fu_type_bits(nal_type);
        // The unit's own header is not sent: the payload and FU headers restate it.
        let chunk_len = max_payload - header_len - 1;
        let mut chunks = unit[header_len..].chunks(chunk_len).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let end = chunks.peek().is_none();
            let fu_header = (u8::from(first) << 7) | (u8::from(end) << 6) | fu_type;
            sequencer.push(out, end && last_of_frame, timestamp, &[payload_header, &[fu_header], chunk]);
            first = false;
        }
    }
}

/// RTP packets of one H.264 or H.265 track to hub frames.
#[derive(Debug, Clone)]
pub struct VideoDepacketizer {
    format: NalFormat,
    max_frame: usize,
    /// The access unit being gathered: NAL units with 4-byte length prefixes.
    unit: Vec<u8>,
    unit_ticks: Option<i64>,
    unit_keyframe: bool,
    /// A packet of this access unit was lost, or it outgrew `max_frame`: it is dropped.
    unit_broken: bool,
    /// The NAL unit a fragment started, until its end fragment.
    fragment: Option<Vec<u8>>,
    parameter_sets: ParameterSets,
    /// The parameter sets changed since the last sequence header was emitted (or given).
    parameter_sets_changed: bool,
    /// A configuration is known (from SDP or in band): frames may be emitted.
    configured: bool,
    /// Decode times from the access units' presentation times.
    dts: DtsExtractor,
    /// Picture order counts from the slice headers, which the decode times start from.
    order: PictureOrder,
}

impl VideoDepacketizer {
    pub(crate) fn new(format: NalFormat, configuration: Option<Configuration>, max_frame: usize) -> Self {
        let configured = configuration.is_some();
        let parameter_sets: ParameterSets =
            configuration.map(|configuration| configuration.parameter_sets).unwrap_or_default();
        let dts = DtsExtractor::new(parameter_sets.reorder_depth(format).unwrap_or(0), format.poc_per_frame());
        let order = parameter_sets.picture_order(format);
        VideoDepacketizer {
            format,
            max_frame,
            unit: Vec::new(),
            unit_ticks: None,
            unit_keyframe: false,
            unit_broken: false,
            fragment: None,
            parameter_sets,
            parameter_sets_changed: false,
            configured,
            dts,
            order,
        }
    }

    pub(crate) fn depacketize(&mut self, arrival: &Arrival<'_, '_>, out: &mut Vec<MediaFrame>) -> Result<(), RtpError> {
        let &Arrival { packet, ticks, lost, ref timing } = arrival;
        if lost {
            // Whatever was lost belonged to the unit in progress or to this packet's: neither
            // is whole. A fragment in progress can never be completed.
            self.fragment = None;
            self.unit_broken = true;
        }
        if self.unit_ticks.is_some_and(|current| current != ticks) {
            // A new timestamp ends the previous unit even without its marker (lost or absent).
            self.flush(timing, out);
            self.unit_broken = lost;
        }
        self.unit_ticks = Some(ticks);
        let result = self.take_payload(packet.payload);
        if result.is_err() {
            self.fragment = None;
            self.unit_broken = true;
        }
        if packet.header.marker {
            self.flush(timing, out);
        }
        result
    }

    fn take_payload(&mut self, payload: &[u8]) -> Result<(), RtpError> {
        let what = self.format.name();
        let header_len = self.format.header_len();
        let packet_type = self.format.nal_type(payload).ok_or(payload_error(what, "shorter than a NAL unit header"))?;
        if packet_type == self.format.aggregation_type() {
            let mut rest = &payload[header_len..];
            while !rest.is_empty() {
                let len = rest.get(..2).map(|len| usize::from(u16::from_be_bytes([len[0], len[1]])));
                let unit = len
                    .and_then(|len| rest.get(2..2 + len))
                    .ok_or(payload_error(what, "aggregated unit past the end"))?;
                rest = &rest[2 + unit.len()..];
                self.take_unit(unit);
            }
            Ok(())
        } else if packet_type == self.format.fragment_type() {
            let fu_header = *payload.get(header_len).ok_or(payload_error(what, "fragment without FU header"))?;
            let data = &payload[header_len + 1..];
            let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
            if start {
                if self.fragment.is_some() {
                    // The previous fragmented unit never ended: part of it is missing.
                    self.unit_broken = true;
                }
                let header = self.format.rebuild_header(payload, fu_header);
                let mut unit = header[..header_len].to_vec();
                unit.extend_from_slice(data);
                self.fragment = Some(unit);
            } else if let Some(unit) = &mut self.fragment {
                unit.extend_from_slice(data);
                if unit.len() > self.max_frame {
                    self.fragment = None;
                    self.unit_broken = true;
                    return Ok(());
                }
            } else {
                // A middle or end whose start was lost: nothing to glue it to.
                self.unit_broken = true;
                return Ok(());
            }
            if end && let Some(unit) = self.fragment.take() {
                self.take_unit(&unit);
            }
            Ok(())
        } else if self.is_unsupported(packet_type) {
            Err(payload_error(what, "interleaved-mode packet type"))
        } else {
            self.take_unit(payload);
            Ok(())
        }
    }

    /// STAP-B, MTAP and FU-B (H.264), PACI (H.265): interleaved mode or extensions, which
    /// the SDP this server answers (packetization-mode 1) never asks for.
    fn is_unsupported(&self, packet_type: u8) -> bool {
        match self.format {
            NalFormat::H264 => matches!(packet_type, 0 | 25..=27 | 29..=31),
            NalFormat::H265 => packet_type >= 50,
        }
    }

    fn take_unit(&mut self, unit: &[u8]) {
        let Some(nal_type) = self.format.nal_type(unit) else { return };
        if let Some(role) = self.format.parameter_set(nal_type) {
            if self.parameter_sets.set(role, unit) {
                self.parameter_sets_changed = true;
            }
            return;
        }
        if self.unit_broken {
            return;
        }
        if self.unit.len() + 4 + unit.len() > self.max_frame {
            self.unit = Vec::new();
            self.unit_broken = true;
            return;
        }
        self.unit_keyframe |= self.format.is_keyframe(nal_type);
        // A NAL unit within max_frame fits 32 bits.
        self.unit.extend_from_slice(&(unit.len() as u32).to_be_bytes());
        self.unit.extend_from_slice(unit);
    }

    /// Ends the access unit: emits a new sequence header if the parameter sets changed, then
    /// the frame, unless it is broken or no configuration is known yet.
    fn flush(&mut self, timing: &FrameTiming, out: &mut Vec<MediaFrame>) {
        let unit = std::mem::take(&mut self.unit);
        let keyframe = std::mem::replace(&mut self.unit_keyframe, false);
        let broken = std::mem::replace(&mut self.unit_broken, false);
        let Some(pts_ticks) = self.unit_ticks.take() else { return };
        let pts = timing.ms(pts_ticks);
        let sequence_header =
            if self.parameter_sets_changed { self.parameter_sets.sequence_header(self.format) } else { None };
        if sequence_header.is_some() {
            self.parameter_sets_changed = false;
            self.configured = true;
            if let Some(depth) = self.parameter_sets.reorder_depth(self.format) {
                self.dts.set_depth(depth);
            }
            self.order = self.parameter_sets.picture_order(self.format);
        }
        let mut frame = !unit.is_empty() && !broken && self.configured;
        // Only frames that are emitted take a place in the decode order.
        let mut timestamp = pts;
        if frame {
            let position = first_slice(self.format, &unit).and_then(|slice| self.order.position(slice));
            let sync_point = keyframe || position.is_some_and(|at| at.intra);
            match self.dts.decode_time(pts_ticks, sync_point, position.map(|at| at.poc)) {
                Some(dts) => timestamp = timing.ms(dts),
                // A leading picture of the open GOP the stream was joined at: undecodable.
                None => frame = false,
            }
        }
        if let Some(body) = sequence_header {
            out.push(MediaFrame { kind: MediaKind::Video, timestamp, body: Bytes::from(body) });
        }
        if !frame {
            return;
        }
        // Non-negative unless the stream reordered deeper than it declared (then 0: the frame is
        // shown when decoded); an SI24 holds over two hours of it.
        let composition_ms = (pts.wrapping_sub(timestamp) as i32).clamp(0, 0x7f_ffff);
        let cts = composition_ms.to_be_bytes();
        let mut body = match self.format {
            NalFormat::H264 => vec![if keyframe { FLV_AVC_KEY } else { FLV_AVC_INTER }, 1, cts[1], cts[2], cts[3]],
            NalFormat::H265 => {
                let frame_type = if keyframe { 1 } else { 2 };
                let packet_type = if composition_ms == 0 { FLV_EX_CODED_FRAMES_X } else { FLV_EX_CODED_FRAMES };
                let mut header = vec![FLV_EX_HEADER | (frame_type << 4) | packet_type];
                header.extend_from_slice(FOURCC_HEVC);
                if composition_ms != 0 {
                    header.extend_from_slice(&cts[1..]);
                }
                header
            }
        };
        body.extend_from_slice(&unit);
        out.push(MediaFrame { kind: MediaKind::Video, timestamp, body: Bytes::from(body) });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Depacketizer, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket};
    use super::*;
    use crate::protocol::fixtures::*;

    fn settings(mtu: usize) -> PacketizerSettings {
        PacketizerSettings { payload_type: 96, ssrc: 0x1234_5678, first_sequence: 65_530, first_timestamp: 1000, mtu }
    }

    fn avc_config() -> AvcDecoderConfig {
        AvcDecoderConfig::parse(&hex(AVC_720P_HIGH)[FLV_AVC_HEADER_LEN..]).unwrap()
    }

    /// An FLV H.264 frame body of the given NAL units.
    fn avc_frame(keyframe: bool, cts: i32, units: &[&[u8]]) -> Vec<u8> {
        let cts = cts.to_be_bytes();
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, cts[1], cts[2], cts[3]];
        for unit in units {
            body.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            body.extend_from_slice(unit);
        }
        body
    }

    fn packets(list: Vec<u8>) -> Vec<Vec<u8>> {
        PacketList(Bytes::from(list)).packets().map(|packet| packet.to_vec()).collect()
    }

    #[test]
    fn small_units_go_whole_and_a_keyframe_gets_the_parameter_sets() {
        let config = avc_config();
        let mut packetizer = Packetizer::new(&RtpCodec::H264 { config: Some(config.clone()) }, settings(1400));
        let idr = [0x65, 1, 2, 3];
        let mut out = Vec::new();
        assert_eq!(packetizer.packetize(40, &avc_frame(true, 80, &[&idr]), &mut out).unwrap(), 2);
        let packets = packets(out);
        let stap = RtpPacket::parse(&packets[0]).unwrap();
        // STAP-A: NRI of the SPS, type 24, then each set behind its 16-bit length.
        assert_eq!(stap.payload[0], (config.sps()[0][0] & 0x60) | 24);
        let sps_len = config.sps()[0].len();
        assert_eq!(&stap.payload[1..3], &(sps_len as u16).to_be_bytes());
        assert_eq!(&stap.payload[3..3 + sps_len], config.sps()[0].as_slice());
        assert!(!stap.header.marker);
        let frame = RtpPacket::parse(&packets[1]).unwrap();
        assert_eq!(frame.payload, idr);
        assert!(frame.header.marker);
        // (40 ms + 80 ms composition offset) at 90 kHz, from the first timestamp.
        assert_eq!(frame.header.timestamp, 1000 + 120 * 90);
        assert_eq!((stap.header.sequence, frame.header.sequence), (65_530, 65_531));
        // A non-key frame gets no parameter sets.
        let mut out = Vec::new();
        assert_eq!(packetizer.packetize(80, &avc_frame(false, 0, &[&[0x41, 9]]), &mut out).unwrap(), 1);
    }

    #[test]
    fn a_large_unit_is_cut_into_fu_a_fragments_and_reassembled() {
        let mut unit = vec![0x65];
        unit.extend((0..5000u32).map(|i| (i % 251) as u8));
        let codec = RtpCodec::H264 { config: Some(avc_config()) };
        let mut packetizer = Packetizer::new(&codec, settings(500));
        let mut out = Vec::new();
        let count = packetizer.packetize(0, &avc_frame(true, 0, &[&[0x06, 5, 1], &unit]), &mut out).unwrap();
        let packets = packets(out);
        assert_eq!(packets.len(), count);
        // STAP-A, the SEI whole, then fragments no larger than the MTU.
        assert!(packets.iter().all(|packet| packet.len() <= 500));
        let first_fu = RtpPacket::parse(&packets[2]).unwrap();
        assert_eq!(first_fu.payload[..2], [0x60 | 28, 0x80 | 5]);
        let last = RtpPacket::parse(packets.last().unwrap()).unwrap();
        assert_eq!(last.payload[1], 0x40 | 5);
        assert!(last.header.marker);

        let mut depacketizer = Depacketizer::new(&codec, 1 << 20);
        let mut frames = Vec::new();
        for packet in &packets {
            depacketizer.depacketize(&RtpPacket::parse(packet).unwrap(), &mut frames).unwrap();
        }
        // The parameter sets equal the SDP's: no new sequence header, one keyframe.
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].body.as_ref(), avc_frame(true, 0, &[&[0x06, 5, 1], &unit]));
        assert_eq!(frames[0].timestamp, 0);
    }

    #[test]
    fn a_lost_fragment_drops_the_frame_and_the_next_one_is_whole() {
        let codec = RtpCodec::H264 { config: Some(avc_config()) };
        let mut packetizer = Packetizer::new(&codec, settings(200));
        let big = [vec![0x41u8], vec![7; 1000]].concat();
        let mut out = Vec::new();
        packetizer.packetize(0, &avc_frame(false, 0, &[&big]), &mut out).unwrap();
        packetizer.packetize(40, &avc_frame(false, 0, &[&big]), &mut out).unwrap();
        let mut packets = packets(out);
        packets.remove(2);
        let mut depacketizer = Depacketizer::new(&codec, 1 << 20);
        let mut frames = Vec::new();
        for packet in &packets {
            depacketizer.depacketize(&RtpPacket::parse(packet).unwrap(), &mut frames).unwrap();
        }
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].timestamp, 40);
        assert_eq!(frames[0].body.as_ref(), avc_frame(false, 0, &[&big]));
    }

    #[test]
    fn in_band_parameter_sets_make_a_sequence_header() {
        let config = avc_config();
        let (sps, pps) = (config.sps()[0].clone(), config.pps()[0].clone());
        let codec = RtpCodec::H264 { config: None };
        let mut depacketizer = Depacketizer::new(&codec, 1 << 20);
        let mut frames = Vec::new();
        let rtp = |sequence: u16, timestamp: u32, marker: bool, payload: &[u8]| {
            let mut bytes = Vec::new();
            RtpHeader { marker, payload_type: 96, sequence, timestamp, ssrc: 1 }.write(&mut bytes);
            bytes.extend_from_slice(payload);
            bytes
        };
        // A P frame before any configuration: dropped.
        let early = rtp(1, 0, true, &[0x41, 1]);
        depacketizer.depacketize(&RtpPacket::parse(&early).unwrap(), &mut frames).unwrap();
        assert!(frames.is_empty());
        // A STAP-A with SPS and PPS, then an IDR.
        let mut stap = vec![0x78];
        for set in [&sps, &pps] {
            stap.extend_from_slice(&(set.len() as u16).to_be_bytes());
            stap.extend_from_slice(set);
        }
        for packet in [rtp(2, 9000, false, &stap), rtp(3, 9000, true, &[0x65, 1, 2])] {
            depacketizer.depacketize(&RtpPacket::parse(&packet).unwrap(), &mut frames).unwrap();
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].body.as_ref(), codec::avc_sequence_header(&config));
        assert_eq!(frames[1].body.as_ref(), avc_frame(true, 0, &[&[0x65, 1, 2]]));
        assert_eq!(frames[1].timestamp, 100);
        // A malformed aggregation is an error, and the depacketizer goes on.
        let bad = rtp(4, 18000, true, &[0x78, 0, 9, 1]);
        assert!(depacketizer.depacketize(&RtpPacket::parse(&bad).unwrap(), &mut frames).is_err());
        let next = rtp(5, 21000, true, &[0x41, 3]);
        depacketizer.depacketize(&RtpPacket::parse(&next).unwrap(), &mut frames).unwrap();
        assert_eq!(frames.last().unwrap().body.as_ref(), avc_frame(false, 0, &[&[0x41, 3]]));
    }

    /// A NAL unit of `header` then `bit_string` ('0' and '1', others ignored), padded with
    /// a stop bit and zeros.
    fn nal_from_bits(header: &[u8], bit_string: &str) -> Vec<u8> {
        let mut bits: Vec<u8> = bit_string.bytes().filter(|b| *b == b'0' || *b == b'1').map(|b| b - b'0').collect();
        bits.push(1);
        let mut nal = header.to_vec();
        nal.extend(
            bits.chunks(8).map(|chunk| chunk.iter().enumerate().fold(0, |byte, (i, bit)| byte | (bit << (7 - i)))),
        );
        nal
    }

    #[test]
    fn b_frames_come_out_at_decode_times_with_composition_offsets() {
        // The 720p SPS declares two frames of reordering, 4-bit frame_num and 6-bit POC lsb.
        // Slices: first_mb 0, slice_type (I 7, P 5, B 6), pps 0, frame_num, [idr_pic_id 0],
        // POC lsb. Decode order I0 P3 B1 B2 P6 at 40 ms a frame (POC 2 a frame).
        let frames = [
            (&[0x65][..], "1 0001000 1 0000 1 000000", 0u32),
            (&[0x41][..], "1 00110 1 0001 000110", 3),
            (&[0x01][..], "1 00111 1 0010 000010", 1),
            (&[0x01][..], "1 00111 1 0010 000100", 2),
            (&[0x41][..], "1 00110 1 0010 001100", 6),
        ];
        let codec = RtpCodec::H264 { config: Some(avc_config()) };
        let mut depacketizer = Depacketizer::new(&codec, 1 << 20);
        let mut out = Vec::new();
        for (sequence, (header, bits, frame)) in frames.iter().enumerate() {
            let mut packet = Vec::new();
            let header_fields = RtpHeader {
                marker: true,
                payload_type: 96,
                sequence: sequence as u16,
                timestamp: frame * 3600,
                ssrc: 1,
            };
            header_fields.write(&mut packet);
            packet.extend_from_slice(&nal_from_bits(header, bits));
            depacketizer.depacketize(&RtpPacket::parse(&packet).unwrap(), &mut out).unwrap();
        }
        let times: Vec<(u32, i32)> = out
            .iter()
            .map(|frame| (frame.timestamp, flv::parse_video_tag(&frame.body).unwrap().composition_time_ms))
            .collect();
        // I0 at 0; P3 leaves room for the two frames shown before it; then the buffer is
        // full and releases 0, 40, 80: decode times trail by two frames, as libx264's do.
        assert_eq!(times, [(0, 0), (1, 119), (2, 38), (40, 40), (80, 160)]);
    }

    #[test]
    fn hevc_frames_shown_later_carry_their_offset_in_coded_frames() {
        let config = HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).unwrap();
        let codec = RtpCodec::H265 { config: Some(config) };
        let mut depacketizer = Depacketizer::new(&codec, 1 << 20);
        let mut out = Vec::new();
        // IDR_W_RADL (first slice, no_output_of_prior_pics 0, pps 0, I) then TRAIL_R (first
        // slice, pps 0, P, 8-bit POC lsb 2) shown two frames later: one frame is still to
        // come before it, so it is decoded a millisecond after the IDR, 79 ms before shown.
        let slices =
            [(nal_from_bits(&[19 << 1, 1], "1 0 1 011"), 0u32), (nal_from_bits(&[1 << 1, 1], "1 1 010 00000010"), 2)];
        for (sequence, (slice, frame)) in slices.iter().enumerate() {
            let mut packet = Vec::new();
            RtpHeader { marker: true, payload_type: 96, sequence: sequence as u16, timestamp: frame * 3600, ssrc: 1 }
                .write(&mut packet);
            packet.extend_from_slice(slice);
            depacketizer.depacketize(&RtpPacket::parse(&packet).unwrap(), &mut out).unwrap();
        }
        // CodedFramesX (3) without an offset, CodedFrames (1) with its SI24 after the FourCC.
        assert_eq!(out[0].body[0] & 0x0f, FLV_EX_CODED_FRAMES_X);
        assert_eq!(out[1].body[0] & 0x0f, FLV_EX_CODED_FRAMES);
        let tag = flv::parse_video_tag(&out[1].body).unwrap();
        assert_eq!((out[1].timestamp, tag.composition_time_ms), (1, 79));
        assert_eq!(split_length_prefixed(tag.payload, 4).unwrap(), [&slices[1].0[..]]);
    }

    #[test]
    fn reorder_depth_without_bitstream_restriction() {
        let sets = |sps: Vec<u8>| ParameterSets { sps: vec![sps], ..ParameterSets::default() };
        // libx264 states it: 2 for the 720p High encode, 0 for Baseline.
        assert_eq!(sets(avc_config().sps()[0].clone()).reorder_depth(NalFormat::H264), Some(2));
        // High profile, POC type 1, one reference frame, no VUI: the references bound it.
        let no_vui = "1 010 1 1 0 0 1 010 1 1 1 010 1 010 0 00100 011 1 1 0 0";
        assert_eq!(sets(nal_from_bits(&[0x67, 100, 0, 30], no_vui)).reorder_depth(NalFormat::H264), Some(1));
        // The same as POC type 2: output order is decode order.
        let poc_type_2 = "1 010 1 1 0 0 1 011 010 0 00100 011 1 1 0 0";
        assert_eq!(sets(nal_from_bits(&[0x67, 100, 0, 30], poc_type_2)).reorder_depth(NalFormat::H264), Some(0));
        assert_eq!(ParameterSets::default().reorder_depth(NalFormat::H265), None);
    }

    #[test]
    fn a_frame_past_the_cap_is_dropped() {
        let codec = RtpCodec::H264 { config: Some(avc_config()) };
        let mut packetizer = Packetizer::new(&codec, settings(1400));
        let big = [vec![0x41u8], vec![1; 10_000]].concat();
        let mut out = Vec::new();
        packetizer.packetize(0, &avc_frame(false, 0, &[&big]), &mut out).unwrap();
        packetizer.packetize(40, &avc_frame(false, 0, &[&[0x41, 2]]), &mut out).unwrap();
        let mut depacketizer = Depacketizer::new(&codec, 4096);
        let mut frames = Vec::new();
        for packet in packets(out) {
            depacketizer.depacketize(&RtpPacket::parse(&packet).unwrap(), &mut frames).unwrap();
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].timestamp, 40);
    }

    #[test]
    fn hevc_round_trips_with_ap_and_fu() {
        let config = HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).unwrap();
        let codec = RtpCodec::H265 { config: Some(config.clone()) };
        let mut packetizer = Packetizer::new(&codec, settings(300));
        // An IDR_W_RADL (type 19) of 2000 bytes and a trailing TRAIL_R (type 1).
        let idr = [vec![19 << 1, 1], vec![3; 2000]].concat();
        let mut body = vec![0x80 | (1 << 4) | 1];
        body.extend_from_slice(b"hvc1");
        body.extend_from_slice(&[0, 0, 0]);
        for unit in [&idr[..], &[2, 1, 9]] {
            body.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            body.extend_from_slice(unit);
        }
        let mut out = Vec::new();
        packetizer.packetize(1000, &body, &mut out).unwrap();
        let packets = packets(out);
        let ap = RtpPacket::parse(&packets[0]).unwrap();
        assert_eq!((ap.payload[0] >> 1) & 0x3f, 48);
        let fu = RtpPacket::parse(&packets[1]).unwrap();
        assert_eq!(((fu.payload[0] >> 1) & 0x3f, fu.payload[2]), (49, 0x80 | 19));

        let mut depacketizer = Depacketizer::new(&codec, 1 << 20);
        let mut frames = Vec::new();
        for packet in &packets {
            depacketizer.depacketize(&RtpPacket::parse(packet).unwrap(), &mut frames).unwrap();
        }
        assert_eq!(frames.len(), 1);
        let tag = flv::parse_video_tag(&frames[0].body).unwrap();
        assert_eq!(
            (tag.codec, tag.frame_type, tag.packet_type),
            (crate::protocol::codec::Codec::Hevc, flv::VideoFrameType::Key, PacketType::CodedFrames)
        );
        assert_eq!(split_length_prefixed(tag.payload, 4).unwrap(), vec![&idr[..], &[2, 1, 9]]);
    }
}
