//! H.264: the `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15, 5.3.3.1) and the fields of
//! its sequence parameter set (H.264 7.3.2.1.1) that describe the picture.

use super::bits::{BitReader, remove_emulation_prevention};
use super::crop::CropWindow;
use super::{CodecError, format_level, malformed};
use crate::protocol::cursor::Cursor;

/// An `AVCDecoderConfigurationRecord`: the payload of an H.264 sequence header (FLV, RTMP),
/// the `avcC` box (MP4), and what `sprop-parameter-sets` and `profile-level-id` say (RFC 6184).
///
/// Fields are crate-visible for the crate's own tests; elsewhere the accessors read them, so a
/// record always holds at least one SPS and `sps_info` is always its decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    pub(crate) profile_idc: u8,
    pub(crate) profile_compatibility: u8,
    pub(crate) level_idc: u8,
    /// Size in bytes of the length prefix of every NAL unit in coded frames (1, 2 or 4).
    pub(crate) nal_length_size: u8,
    /// Sequence parameter sets, NAL header included (what RTP and SDP carry).
    pub(crate) sps: Vec<Vec<u8>>,
    /// Picture parameter sets, NAL header included.
    pub(crate) pps: Vec<Vec<u8>>,
    /// The first SPS, decoded.
    pub(crate) sps_info: H264Sps,
}

/// `numOfSequenceParameterSets` has five bits.
const MAX_SPS_COUNT: usize = 0x1f;

impl AvcDecoderConfig {
    const WHAT: &'static str = "AVCDecoderConfigurationRecord";

    pub fn parse(record: &[u8]) -> Result<Self, CodecError> {
        let mut cursor = Cursor::new(record, malformed(Self::WHAT, "truncated"));
        let [version, profile_idc, profile_compatibility, level_idc, length_size, sps_count] = cursor.array()?;
        if version != 1 {
            return Err(malformed(Self::WHAT, "configurationVersion is not 1"));
        }
        let mut sps = Vec::new();
        for _ in 0..(sps_count & 0x1f) {
            let len = cursor.u16()?;
            sps.push(cursor.take(usize::from(len))?.to_vec());
        }
        let pps_count = cursor.u8()?;
        let mut pps = Vec::new();
        for _ in 0..pps_count {
            let len = cursor.u16()?;
            pps.push(cursor.take(usize::from(len))?.to_vec());
        }
        // Anything after the PPS (the High-profile chroma/bit-depth extension) repeats what the
        // SPS says, and some encoders omit it, so it is not read.
        let first_sps = sps.first().ok_or(malformed(Self::WHAT, "no sequence parameter set"))?;
        let sps_info = H264Sps::parse(first_sps)?;
        Ok(AvcDecoderConfig {
            profile_idc,
            profile_compatibility,
            level_idc,
            nal_length_size: (length_size & 0x03) + 1,
            sps,
            pps,
            sps_info,
        })
    }

    /// Builds a record from parameter sets as RTP delivers them (RFC 6184
    /// `sprop-parameter-sets`, or SPS and PPS NAL units in band), for a container that carries
    /// the record instead (FLV, MP4). Profile and level come from the first SPS; NAL units in
    /// coded frames will carry 4-byte length prefixes.
    pub fn from_parameter_sets(sps: Vec<Vec<u8>>, pps: Vec<Vec<u8>>) -> Result<Self, CodecError> {
        let first_sps = sps.first().ok_or(malformed(Self::WHAT, "no sequence parameter set"))?;
        let sps_info = H264Sps::parse(first_sps)?;
        if sps.len() > MAX_SPS_COUNT || pps.len() > usize::from(u8::MAX) {
            return Err(malformed(Self::WHAT, "more parameter sets than the record can count"));
        }
        if sps.iter().chain(&pps).any(|set| set.len() > usize::from(u16::MAX)) {
            return Err(malformed(Self::WHAT, "parameter set longer than 65535 bytes"));
        }
        Ok(AvcDecoderConfig {
            profile_idc: sps_info.profile_idc,
            profile_compatibility: sps_info.constraint_flags,
            level_idc: sps_info.level_idc,
            nal_length_size: 4,
            sps,
            pps,
            sps_info,
        })
    }

    /// Appends the record's bytes, as [`AvcDecoderConfig::parse`] reads them: the payload of
    /// an FLV/RTMP sequence header or an `avcC` box. For the profiles whose SPS states chroma
    /// format and bit depths, the record repeats them after the PPS, as ISO/IEC 14496-15 asks.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[1, self.profile_idc, self.profile_compatibility, self.level_idc]);
        out.push(0xfc | (self.nal_length_size.saturating_sub(1) & 0x03));
        // Counts and lengths fit: `parse` read them from fields this size, and
        // `from_parameter_sets` checked them.
        out.push(0xe0 | ((self.sps.len() as u8) & 0x1f));
        for sps in &self.sps {
            out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
            out.extend_from_slice(sps);
        }
        out.push(self.pps.len() as u8);
        for pps in &self.pps {
            out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
            out.extend_from_slice(pps);
        }
        if has_chroma_format_fields(self.profile_idc) {
            let sps = &self.sps_info;
            out.push(0xfc | (sps.chroma_format_idc & 0x03));
            out.push(0xf8 | (sps.bit_depth_luma.saturating_sub(8) & 0x07));
            out.push(0xf8 | (sps.bit_depth_chroma.saturating_sub(8) & 0x07));
            // numOfSequenceParameterSetExt: SPS extensions only matter for alpha planes.
            out.push(0);
        }
    }

    /// `AVCProfileIndication`, `profile_compatibility` and `AVCLevelIndication` as the record
    /// states them (normally a copy of the first SPS's).
    pub fn profile_indication(&self) -> (u8, u8, u8) {
        (self.profile_idc, self.profile_compatibility, self.level_idc)
    }

    /// RFC 6184's `profile-level-id`: `profile_idc`, the constraint flags byte and `level_idc`
    /// of the first SPS (SDP writes them as six hex digits).
    pub fn profile_level_id(&self) -> [u8; 3] {
        [self.sps_info.profile_idc, self.sps_info.constraint_flags, self.sps_info.level_idc]
    }

    /// Size in bytes of the length prefix of every NAL unit in coded frames (1, 2 or 4): what
    /// splits an AVCC frame into the NAL units RTP carries.
    pub fn nal_length_size(&self) -> u8 {
        self.nal_length_size
    }

    /// The sequence parameter sets, NAL header included; never empty.
    pub fn sps(&self) -> &[Vec<u8>] {
        &self.sps
    }

    /// The picture parameter sets, NAL header included.
    pub fn pps(&self) -> &[Vec<u8>] {
        &self.pps
    }

    /// Every SPS, then every PPS: the order `sprop-parameter-sets` lists them in and a decoder
    /// needs them before a keyframe.
    pub fn parameter_sets(&self) -> impl Iterator<Item = &[u8]> {
        self.sps.iter().chain(&self.pps).map(Vec::as_slice)
    }

    /// The first SPS, decoded.
    pub fn sps_info(&self) -> &H264Sps {
        &self.sps_info
    }
}

/// The fields of an H.264 sequence parameter set that describe the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Sps {
    pub profile_idc: u8,
    /// `constraint_set0_flag` .. `constraint_set5_flag` in the top six bits.
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// False for interlaced coding (fields or MBAFF); width and height are the frame's.
    pub frame_mbs_only: bool,
    /// Displayed width, after cropping.
    pub width: u32,
    /// Displayed frame height, after cropping.
    pub height: u32,
    /// `separate_colour_plane_flag`: slice headers then carry a `colour_plane_id`.
    pub separate_colour_plane: bool,
    /// `log2_max_frame_num_minus4` + 4: the width of a slice header's `frame_num`.
    pub log2_max_frame_num: u8,
    /// `pic_order_cnt_type`: 0 for a POC in every slice header, 1 for one derived from
    /// `frame_num` and offsets, 2 for output order = decode order (no reordering).
    pub pic_order_cnt_type: u8,
    /// `log2_max_pic_order_cnt_lsb_minus4` + 4 (POC type 0; else 0): the width of a slice
    /// header's `pic_order_cnt_lsb`.
    pub log2_max_pic_order_cnt_lsb: u8,
    /// `max_num_ref_frames`.
    pub max_num_ref_frames: u32,
    /// VUI `max_num_reorder_frames`, when the SPS has `bitstream_restriction`: how many frames
    /// at most precede a frame in decode order and follow it in output order.
    pub max_num_reorder_frames: Option<u32>,
    /// VUI `timing_info` as `(num_units_in_tick, time_scale)`, when the SPS states it
    /// (libx264 does): what [`Self::frame_rate`] is derived from.
    pub timing: Option<(u32, u32)>,
}

impl H264Sps {
    const WHAT: &'static str = "H.264 SPS";

    /// Parses an SPS NAL unit, header byte included, emulation-prevention bytes and all.
    pub fn parse(nal: &[u8]) -> Result<Self, CodecError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let rbsp = remove_emulation_prevention(nal.get(1..).ok_or(truncated)?);
        let mut bits = BitReader::new(&rbsp, truncated);
        let profile_idc = bits.u8()?;
        let constraint_flags = bits.u8()?;
        let level_idc = bits.u8()?;
        let _seq_parameter_set_id = bits.ue()?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        let mut bit_depth_chroma = 8;
        if has_chroma_format_fields(profile_idc) {
            chroma_format_idc = bits.ue()?;
            if chroma_format_idc > 3 {
                return Err(malformed(Self::WHAT, "chroma_format_idc above 3"));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = bits.flag()?;
            }
            let bit_depth_luma_minus8 = bits.ue()?;
            if bit_depth_luma_minus8 > 6 {
                return Err(malformed(Self::WHAT, "bit depth above 14"));
            }
            bit_depth_luma = 8 + bit_depth_luma_minus8;
            bit_depth_chroma = bits.ue()?.saturating_add(8);
            let _qpprime_y_zero_transform_bypass = bits.flag()?;
            if bits.flag()? {
                let list_count = if chroma_format_idc == 3 { 12 } else { 8 };
                for list_index in 0..list_count {
                    if bits.flag()? {
                        skip_scaling_list(&mut bits, if list_index < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        let log2_max_frame_num = bits.ue()?.saturating_add(4);
        let pic_order_cnt_type = bits.ue()?;
        let mut log2_max_pic_order_cnt_lsb = 0;
        match pic_order_cnt_type {
            0 => {
                log2_max_pic_order_cnt_lsb = bits.ue()?.saturating_add(4);
            }
            1 => {
                let _delta_pic_order_always_zero = bits.flag()?;
                let _offset_for_non_ref_pic = bits.se()?;
                let _offset_for_top_to_bottom_field = bits.se()?;
                let cycle_len = bits.ue()?;
                if cycle_len > 255 {
                    return Err(malformed(Self::WHAT, "POC cycle longer than 255"));
                }
                for _ in 0..cycle_len {
                    let _offset_for_ref_frame = bits.se()?;
                }
            }
            2 => {}
            _ => return Err(malformed(Self::WHAT, "pic_order_cnt_type above 2")),
        }
        let max_num_ref_frames = bits.ue()?;
        let _gaps_in_frame_num_allowed = bits.flag()?;
        let width_in_mbs = u64::from(bits.ue()?) + 1;
        let height_in_map_units = u64::from(bits.ue()?) + 1;
        let frame_mbs_only = bits.flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = bits.flag()?;
        }
        let _direct_8x8_inference = bits.flag()?;
        let crop = CropWindow::read(&mut bits)?;
        // A truncated or odd VUI costs only what it states, never the picture size.
        let vui = if bits.flag().unwrap_or(false) { read_vui(&mut bits).unwrap_or_default() } else { Vui::default() };
        let Vui { timing, max_num_reorder_frames } = vui;

        // Equations 7-18 to 7-22: cropping counts in chroma samples, and in field rows for
        // interlaced coding.
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (crop_unit_x, crop_unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let coded_width = width_in_mbs * 16;
        let coded_height = field_factor * height_in_map_units * 16;
        let width =
            crop.width(coded_width, crop_unit_x).ok_or(malformed(Self::WHAT, "cropping wider than the picture"))?;
        let height =
            crop.height(coded_height, crop_unit_y).ok_or(malformed(Self::WHAT, "cropping taller than the picture"))?;

        Ok(H264Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            chroma_format_idc: u8::try_from(chroma_format_idc).unwrap_or(u8::MAX),
            bit_depth_luma: u8::try_from(bit_depth_luma).unwrap_or(u8::MAX),
            bit_depth_chroma: u8::try_from(bit_depth_chroma).unwrap_or(u8::MAX),
            frame_mbs_only,
            width,
            height,
            separate_colour_plane,
            log2_max_frame_num: u8::try_from(log2_max_frame_num).unwrap_or(u8::MAX),
            pic_order_cnt_type: u8::try_from(pic_order_cnt_type).unwrap_or(u8::MAX),
            log2_max_pic_order_cnt_lsb: u8::try_from(log2_max_pic_order_cnt_lsb).unwrap_or(u8::MAX),
            max_num_ref_frames,
            max_num_reorder_frames,
            timing,
        })
    }

    /// Frames per second as the VUI timing states it: `time_scale / (2 * num_units_in_tick)`,
    /// two ticks a frame (H.264 E.2.1, as for progressive frames). `None` without timing.
    pub fn frame_rate(&self) -> Option<f64> {
        let (num_units_in_tick, time_scale) = self.timing.filter(|(units, scale)| *units > 0 && *scale > 0)?;
        Some(f64::from(time_scale) / (2.0 * f64::from(num_units_in_tick)))
    }

    /// The profile name of H.264 annex A, as ffprobe shows it.
    pub fn profile_name(&self) -> &'static str {
        let constraint_set = |n: u8| self.constraint_flags & (0x80 >> n) != 0;
        match self.profile_idc {
            66 if constraint_set(1) => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 if constraint_set(3) => "High 10 Intra",
            110 => "High 10",
            122 if constraint_set(3) => "High 4:2:2 Intra",
            122 => "High 4:2:2",
            244 if constraint_set(3) => "High 4:4:4 Intra",
            244 => "High 4:4:4 Predictive",
            44 => "CAVLC 4:4:4 Intra",
            83 => "Scalable Baseline",
            86 => "Scalable High",
            118 => "Multiview High",
            128 => "Stereo High",
            134 => "MFC High",
            135 => "MFC Depth High",
            138 => "Multiview Depth High",
            139 => "Enhanced Multiview Depth High",
            _ => "unknown",
        }
    }

    /// The level as annex A writes it: "3.1", "4", or "1b".
    pub fn level(&self) -> String {
        let constraint_set3 = self.constraint_flags & 0x10 != 0;
        // Level 1b is signalled two ways (A.3.1, A.3.2).
        if self.level_idc == 9 || (self.level_idc == 11 && constraint_set3 && matches!(self.profile_idc, 66 | 77 | 88))
        {
            return "1b".to_owned();
        }
        format_level(u32::from(self.level_idc / 10), u32::from(self.level_idc % 10))
    }
}

/// The fields of an H.264 slice header (7.3.3) that order pictures, up to
/// `pic_order_cnt_lsb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264SliceHeader {
    /// `nal_ref_idc` is not 0: the picture is a reference, and POC derivation (8.2.1.1)
    /// continues from it.
    pub reference: bool,
    /// An IDR picture: POC and frame numbering start over.
    pub idr: bool,
    pub slice_type: u32,
    pub frame_num: u32,
    /// A field (half a frame) rather than a frame.
    pub field_pic: bool,
    /// POC type 0 only.
    pub pic_order_cnt_lsb: Option<u32>,
}

impl H264SliceHeader {
    const WHAT: &'static str = "H.264 slice header";
    /// Enough of the slice for the fields read: a few exp-Golomb codes and two fields of at
    /// most 16 bits. Only this much is unescaped, not the whole slice.
    const HEAD_BYTES: usize = 32;

    /// Parses the start of a coded slice NAL unit (type 1 or 5), header byte included, with
    /// the SPS it refers to.
    pub fn parse(nal: &[u8], sps: &H264Sps) -> Result<Self, CodecError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let nal_header = *nal.first().ok_or(truncated)?;
        let nal_type = nal_header & 0x1f;
        if !matches!(nal_type, 1 | 5) {
            return Err(malformed(Self::WHAT, "not a coded slice"));
        }
        if sps.log2_max_frame_num > 16 || sps.log2_max_pic_order_cnt_lsb > 16 {
            return Err(malformed(H264Sps::WHAT, "frame number or POC wider than 16 bits"));
        }
        let head = &nal[1..nal.len().min(1 + Self::HEAD_BYTES)];
        let rbsp = remove_emulation_prevention(head);
        let mut bits = BitReader::new(&rbsp, truncated);
        let _first_mb_in_slice = bits.ue()?;
        let slice_type = bits.ue()?;
        let _pic_parameter_set_id = bits.ue()?;
        if sps.separate_colour_plane {
            let _colour_plane_id = bits.bits(2)?;
        }
        let frame_num = bits.bits(u32::from(sps.log2_max_frame_num))?;
        let mut field_pic = false;
        if !sps.frame_mbs_only {
            field_pic = bits.flag()?;
            if field_pic {
                let _bottom_field = bits.flag()?;
            }
        }
        let idr = nal_type == 5;
        if idr {
            let _idr_pic_id = bits.ue()?;
        }
        let pic_order_cnt_lsb = if sps.pic_order_cnt_type == 0 {
            Some(bits.bits(u32::from(sps.log2_max_pic_order_cnt_lsb))?)
        } else {
            None
        };
        Ok(H264SliceHeader {
            reference: nal_header & 0x60 != 0,
            idr,
            slice_type,
            frame_num,
            field_pic,
            pic_order_cnt_lsb,
        })
    }
}

/// What an SPS's VUI states that ringcast uses.
#[derive(Debug, Default)]
struct Vui {
    timing: Option<(u32, u32)>,
    max_num_reorder_frames: Option<u32>,
}

/// Reads `vui_parameters()` (H.264 E.1.1) up to `bitstream_restriction`: its timing and
/// `max_num_reorder_frames`, where it states them.
fn read_vui(bits: &mut BitReader<'_>) -> Result<Vui, CodecError> {
    let mut vui = Vui::default();
    if bits.flag()? {
        // aspect_ratio_idc; 255 is Extended_SAR with explicit width and height.
        if bits.u8()? == 255 {
            bits.skip(32)?;
        }
    }
    if bits.flag()? {
        let _overscan_appropriate = bits.flag()?;
    }
    if bits.flag()? {
        // video_format, video_full_range_flag, then colour description's three bytes.
        bits.skip(4)?;
        if bits.flag()? {
            bits.skip(24)?;
        }
    }
    if bits.flag()? {
        let _chroma_sample_loc_type_top = bits.ue()?;
        let _chroma_sample_loc_type_bottom = bits.ue()?;
    }
    if bits.flag()? {
        let num_units_in_tick = bits.bits(32)?;
        let time_scale = bits.bits(32)?;
        vui.timing = Some((num_units_in_tick, time_scale));
        let _fixed_frame_rate = bits.flag()?;
    }
    let nal_hrd = bits.flag()?;
    if nal_hrd {
        skip_hrd_parameters(bits)?;
    }
    let vcl_hrd = bits.flag()?;
    if vcl_hrd {
        skip_hrd_parameters(bits)?;
    }
    if nal_hrd || vcl_hrd {
        let _low_delay_hrd = bits.flag()?;
    }
    let _pic_struct_present = bits.flag()?;
    if !bits.flag()? {
        return Ok(vui);
    }
    let _motion_vectors_over_pic_boundaries = bits.flag()?;
    let _max_bytes_per_pic_denom = bits.ue()?;
    let _max_bits_per_mb_denom = bits.ue()?;
    let _log2_max_mv_length_horizontal = bits.ue()?;
    let _log2_max_mv_length_vertical = bits.ue()?;
    let max_num_reorder_frames = bits.ue()?;
    let _max_dec_frame_buffering = bits.ue()?;
    vui.max_num_reorder_frames = Some(max_num_reorder_frames);
    Ok(vui)
}

/// Reads past `hrd_parameters()` (H.264 E.1.2).
fn skip_hrd_parameters(bits: &mut BitReader<'_>) -> Result<(), CodecError> {
    let cpb_count = bits.ue()?.saturating_add(1);
    if cpb_count > 32 {
        return Err(malformed(H264Sps::WHAT, "more than 32 CPB specifications"));
    }
    // bit_rate_scale, cpb_size_scale.
    bits.skip(8)?;
    for _ in 0..cpb_count {
        let _bit_rate_value_minus1 = bits.ue()?;
        let _cpb_size_value_minus1 = bits.ue()?;
        let _cbr = bits.flag()?;
    }
    // Four 5-bit delay and length fields.
    bits.skip(20)
}

/// Profiles whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1), and
/// whose record therefore repeats the first two after the PPS.
fn has_chroma_format_fields(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135)
}

/// Reads past a `scaling_list()` (H.264 7.3.2.1.1.1); its values do not affect the picture size.
fn skip_scaling_list(bits: &mut BitReader<'_>, size: usize) -> Result<(), CodecError> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta_scale = bits.se()?;
            next_scale = (last_scale + delta_scale).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::HevcDecoderConfig;
    use crate::protocol::fixtures::{
        AVC_240P_BASELINE, AVC_426X240_444, AVC_576I_HIGH, AVC_720P_HIGH, AVC_1080P_MAIN, FLV_AVC_HEADER_LEN, hex,
    };
    use base64::Engine;

    /// An SPS NAL from its first four bytes and the rest written as a string of bits.
    fn sps_from_bits(first_bytes: [u8; 4], bit_string: &str) -> Vec<u8> {
        let bits: Vec<u8> = bit_string.bytes().filter(|b| *b == b'0' || *b == b'1').map(|b| b - b'0').collect();
        let mut nal = first_bytes.to_vec();
        for chunk in bits.chunks(8) {
            let mut byte = 0u8;
            for (i, bit) in chunk.iter().enumerate() {
                byte |= bit << (7 - i);
            }
            nal.push(byte);
        }
        nal
    }

    #[test]
    fn records_written_read_back_as_ffmpeg_wrote_them() {
        for body_hex in [AVC_720P_HIGH, AVC_240P_BASELINE, AVC_1080P_MAIN, AVC_576I_HIGH, AVC_426X240_444] {
            let body = hex(body_hex);
            let ffmpeg_record = &body[FLV_AVC_HEADER_LEN..];
            let parsed = AvcDecoderConfig::parse(ffmpeg_record).expect("parses");
            let mut written = Vec::new();
            parsed.write(&mut written);
            assert_eq!(written, ffmpeg_record, "{body_hex}");

            // What an RTP source hands over: just the parameter sets.
            let built =
                AvcDecoderConfig::from_parameter_sets(parsed.sps().to_vec(), parsed.pps().to_vec()).expect("builds");
            assert_eq!(built, parsed);
            let mut rebuilt = Vec::new();
            built.write(&mut rebuilt);
            assert_eq!(rebuilt, ffmpeg_record);
        }
    }

    #[test]
    fn reorder_depth_and_picture_order_fields() {
        // libx264 states its B-frame depth in the VUI: 2 with B-pyramid, 0 for Baseline.
        let high = *record(AVC_720P_HIGH).sps_info();
        assert_eq!((high.max_num_reorder_frames, high.pic_order_cnt_type, high.max_num_ref_frames), (Some(2), 0, 4));
        assert_eq!((high.log2_max_frame_num, high.log2_max_pic_order_cnt_lsb), (4, 6));
        let baseline = *record(AVC_240P_BASELINE).sps_info();
        assert_eq!((baseline.max_num_reorder_frames, baseline.pic_order_cnt_type), (Some(0), 2));
        // An SPS without VUI states no depth.
        let bit_string = "1 010 1 1 0 1 1 000010001 0000000 1 010 1 1 1 010 1 010 0 00100 011 1 1 1 1 010 1 011 0";
        let sps = H264Sps::parse(&sps_from_bits([0x67, 100, 0, 30], bit_string)).expect("parses");
        assert_eq!((sps.max_num_reorder_frames, sps.pic_order_cnt_type), (None, 1));
    }

    #[test]
    fn frame_rate_from_the_vui_timing() {
        // libx264 at 30 fps: num_units_in_tick 1, time_scale 60.
        let high = *record(AVC_720P_HIGH).sps_info();
        assert_eq!((high.timing, high.frame_rate()), (Some((1, 60)), Some(30.0)));
        let bit_string = "1 010 1 1 0 1 1 000010001 0000000 1 010 1 1 1 010 1 010 0 00100 011 1 1 1 1 010 1 011 0";
        let sps = H264Sps::parse(&sps_from_bits([0x67, 100, 0, 30], bit_string)).expect("parses");
        assert_eq!(sps.frame_rate(), None, "no VUI, no timing");
    }

    #[test]
    fn parameter_sets_that_cannot_make_a_record() {
        let sps = record(AVC_720P_HIGH).sps().to_vec();
        assert!(AvcDecoderConfig::from_parameter_sets(Vec::new(), vec![vec![0x68]]).is_err());
        assert!(AvcDecoderConfig::from_parameter_sets(vec![vec![0x67, 100]], Vec::new()).is_err());
        assert!(AvcDecoderConfig::from_parameter_sets(sps.clone(), vec![vec![0x68; 0x1_0000]]).is_err());
        assert!(AvcDecoderConfig::from_parameter_sets(vec![sps[0].clone(); 32], Vec::new()).is_err());
        assert!(AvcDecoderConfig::from_parameter_sets(sps, vec![vec![0x68]; 256]).is_err());
    }

    #[test]
    fn sps_with_scaling_matrices_and_poc_type_1() {
        // A hand-built High-profile SPS exercising the paths x264 never takes: a scaling list
        // (list 0 present, all deltas 0 after the first so next_scale sticks), POC type 1 and
        // frame cropping. Bits, in order:
        //   sps_id ue(0)=1, chroma_format_idc ue(1)=010, bit_depth_luma ue(0)=1,
        //   bit_depth_chroma ue(0)=1, bypass 0, seq_scaling_matrix_present 1,
        //   list0 present 1 + delta se(-8)=0001 0000 (next_scale 0: list ends), lists 1..7: 0,
        //   log2_max_frame_num ue(0)=1, poc_type ue(1)=010, always_zero 1, non_ref se(0)=1,
        //   top_to_bottom se(0)=1, cycle ue(1)=010, offset se(0)=1,
        //   max_ref ue(1)=010, gaps 0, width_mbs-1 ue(3)=00100, height_units-1 ue(2)=011,
        //   frame_mbs_only 1, direct_8x8 1, cropping 1, left ue(0)=1, right ue(1)=010,
        //   top ue(0)=1, bottom ue(2)=011
        let bit_string = "1 010 1 1 0 1 1 000010001 0000000 1 010 1 1 1 010 1 010 0 00100 011 1 1 1 1 010 1 011";
        let sps = H264Sps::parse(&sps_from_bits([0x67, 100, 0, 30], bit_string)).expect("parses");
        // 4 MBs = 64 wide minus 2 * (0 + 1); 3 map units = 48 high minus 2 * (0 + 2).
        assert_eq!((sps.width, sps.height), (62, 44));
        assert_eq!(sps.profile_name(), "High");
    }

    #[test]
    fn hostile_configs_are_errors() {
        let no_sps = [1, 100, 0, 31, 0xff, 0xe0, 0];
        assert!(matches!(AvcDecoderConfig::parse(&no_sps), Err(CodecError::Malformed { .. })));
        let wrong_version = [0, 100, 0, 31, 0xff, 0xe1, 0, 0];
        assert!(AvcDecoderConfig::parse(&wrong_version).is_err());
        // One MB (16 pixels) wide, cropped by 2 * 9 columns.
        let over_cropped = sps_from_bits([0x67, 66, 0xc0, 30], "1 1 011 1 0 1 1 1 1 1 0001010 1 1 1");
        assert!(matches!(H264Sps::parse(&over_cropped), Err(CodecError::Malformed { .. })));
        // The same, cropped by exactly the picture: a zero width is reported, not a panic.
        let fully_cropped = sps_from_bits([0x67, 66, 0xc0, 30], "1 1 011 1 0 1 1 1 1 1 0001001 1 1 1");
        assert_eq!(H264Sps::parse(&fully_cropped).map(|sps| sps.width), Ok(0));
        // The largest ue(v) as the width: no overflow, just a width too large for u32.
        let huge_width =
            sps_from_bits([0x67, 66, 0xc0, 30], &format!("1 1 011 1 0 {}1{} 1 1 1 0", "0".repeat(31), "1".repeat(31)));
        assert!(H264Sps::parse(&huge_width).is_err());
        // An hvcC cut right before numOfArrays.
        assert!(HevcDecoderConfig::parse(&[1; 22]).is_err());
    }

    /// What ffmpeg 5.1 wrote into the SDP (`-flags +global_header -f rtp -sdp_file`) for the
    /// same libx264 1280x720 encode as `AVC_720P_HIGH`.
    const FFMPEG_SPROP_720P_HIGH: &str = "Z2QAH6zZQFAFuwEQAAADABAAAAMDwPGDGWA=,aOvjyyLA";
    const FFMPEG_PROFILE_LEVEL_ID_720P_HIGH: &str = "64001F";

    fn record(body_hex: &str) -> AvcDecoderConfig {
        let body = hex(body_hex);
        AvcDecoderConfig::parse(&body[FLV_AVC_HEADER_LEN..]).expect("record parses")
    }

    #[test]
    fn accessors_give_what_sdp_carries() {
        let config = record(AVC_720P_HIGH);
        let sprop: Vec<Vec<u8>> = FFMPEG_SPROP_720P_HIGH
            .split(',')
            .map(|set| base64::engine::general_purpose::STANDARD.decode(set).expect("base64"))
            .collect();
        let parameter_sets: Vec<&[u8]> = config.parameter_sets().collect();
        assert_eq!(parameter_sets, sprop.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(config.sps(), &sprop[..1]);
        assert_eq!(config.pps(), &sprop[1..]);
        assert_eq!(hex(FFMPEG_PROFILE_LEVEL_ID_720P_HIGH), config.profile_level_id());
        assert_eq!(config.profile_indication(), (100, 0, 31));
        assert_eq!(config.nal_length_size(), 4);
        assert_eq!((config.sps_info().width, config.sps_info().height), (1280, 720));

        // Main profile with constraint_set1 (0x40): the flags byte is carried as is.
        let config = record(AVC_1080P_MAIN);
        assert_eq!(config.profile_level_id(), [77, 0x40, 40]);
        assert_eq!(config.sps_info().profile_name(), "Main");
    }
}
