//! H.265: the `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15, 8.3.3.1) and the fields of
//! its sequence parameter set (H.265 7.3.2.2) that describe the picture.

use super::bits::{BitReader, remove_emulation_prevention};
use super::crop::CropWindow;
use super::{CodecError, format_level, malformed};
use crate::protocol::cursor::Cursor;

/// An `HEVCDecoderConfigurationRecord`: the payload of an HEVC sequence header (E-RTMP, or FLV
/// codec id 12), the `hvcC` box (MP4), and what `sprop-vps`, `sprop-sps` and `sprop-pps` say
/// (RFC 7798).
///
/// Fields are crate-visible for the crate's own tests; elsewhere the accessors read them, so a
/// record always holds at least one SPS and `sps_info` is always its decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcDecoderConfig {
    /// Size in bytes of the length prefix of every NAL unit in coded frames (1, 2 or 4).
    pub(crate) nal_length_size: u8,
    /// Video, sequence and picture parameter sets, NAL header included.
    pub(crate) vps: Vec<Vec<u8>>,
    pub(crate) sps: Vec<Vec<u8>>,
    pub(crate) pps: Vec<Vec<u8>>,
    /// The first SPS, decoded.
    pub(crate) sps_info: HevcSps,
}

impl HevcDecoderConfig {
    const WHAT: &'static str = "HEVCDecoderConfigurationRecord";
    /// The fixed part before `numOfArrays`.
    const FIXED_LEN: usize = 22;

    pub fn parse(record: &[u8]) -> Result<Self, CodecError> {
        let mut cursor = Cursor::new(record, malformed(Self::WHAT, "truncated"));
        let fixed: [u8; Self::FIXED_LEN] = cursor.array()?;
        if fixed.first() != Some(&1) {
            return Err(malformed(Self::WHAT, "configurationVersion is not 1"));
        }
        let length_size = fixed.last().map_or(0, |byte| byte & 0x03);
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let array_count = cursor.u8()?;
        for _ in 0..array_count {
            let nal_unit_type = cursor.u8()? & 0x3f;
            let nal_count = cursor.u16()?;
            for _ in 0..nal_count {
                let len = cursor.u16()?;
                let nal = cursor.take(usize::from(len))?;
                match nal_unit_type {
                    NAL_VPS => vps.push(nal.to_vec()),
                    NAL_SPS => sps.push(nal.to_vec()),
                    NAL_PPS => pps.push(nal.to_vec()),
                    // SEI and others are not configuration a relay needs.
                    _ => {}
                }
            }
        }
        // Several arrays of one type are merged here, into what `write` must fit in one.
        check_writable([&vps, &sps, &pps])?;
        let first_sps = sps.first().ok_or(malformed(Self::WHAT, "no sequence parameter set"))?;
        let sps_info = HevcSps::parse(first_sps)?;
        Ok(HevcDecoderConfig { nal_length_size: length_size + 1, vps, sps, pps, sps_info })
    }

    /// Builds a record from parameter sets as RTP delivers them (RFC 7798 `sprop-vps`,
    /// `sprop-sps`, `sprop-pps`, or the NAL units in band), for a container that carries the
    /// record instead (FLV, MP4). NAL units in coded frames will carry 4-byte length prefixes.
    pub fn from_parameter_sets(vps: Vec<Vec<u8>>, sps: Vec<Vec<u8>>, pps: Vec<Vec<u8>>) -> Result<Self, CodecError> {
        let first_sps = sps.first().ok_or(malformed(Self::WHAT, "no sequence parameter set"))?;
        let sps_info = HevcSps::parse(first_sps)?;
        check_writable([&vps, &sps, &pps])?;
        Ok(HevcDecoderConfig { nal_length_size: 4, vps, sps, pps, sps_info })
    }

    /// Appends the record's bytes, as [`HevcDecoderConfig::parse`] reads them: the payload of
    /// an HEVC sequence header or an `hvcC` box. Profile, tier, level, chroma format, bit depths
    /// and temporal layers are the first SPS's; what needs the VUI or the PPS
    /// (`min_spatial_segmentation_idc`, `parallelismType`, frame rates) is written as
    /// "unknown", 0, as ffmpeg does when the stream does not state it. Arrays are not marked
    /// complete: parameter sets may also come in band.
    pub fn write(&self, out: &mut Vec<u8>) {
        let sps = &self.sps_info;
        out.push(1);
        out.extend_from_slice(&sps.general_profile_tier_level);
        out.extend_from_slice(&[0xf0, 0x00, 0xfc]);
        out.push(0xfc | (sps.chroma_format_idc & 0x03));
        out.push(0xf8 | (sps.bit_depth_luma.saturating_sub(8) & 0x07));
        out.push(0xf8 | (sps.bit_depth_chroma.saturating_sub(8) & 0x07));
        out.extend_from_slice(&[0, 0]);
        let temporal_layers = sps.max_sub_layers.min(7);
        out.push(
            (temporal_layers << 3)
                | (u8::from(sps.temporal_id_nesting) << 2)
                | (self.nal_length_size.saturating_sub(1) & 0x03),
        );
        let arrays = [(NAL_VPS, &self.vps), (NAL_SPS, &self.sps), (NAL_PPS, &self.pps)];
        out.push(arrays.iter().filter(|(_, sets)| !sets.is_empty()).count() as u8);
        // Counts and lengths fit: `parse` read them from fields this size, and
        // `from_parameter_sets` checked them.
        for (nal_unit_type, sets) in arrays.into_iter().filter(|(_, sets)| !sets.is_empty()) {
            out.push(nal_unit_type);
            out.extend_from_slice(&(sets.len() as u16).to_be_bytes());
            for set in sets {
                out.extend_from_slice(&(set.len() as u16).to_be_bytes());
                out.extend_from_slice(set);
            }
        }
    }

    /// Size in bytes of the length prefix of every NAL unit in coded frames (1, 2 or 4).
    pub fn nal_length_size(&self) -> u8 {
        self.nal_length_size
    }

    /// The video parameter sets, NAL header included (`sprop-vps`).
    pub fn vps(&self) -> &[Vec<u8>] {
        &self.vps
    }

    /// The sequence parameter sets, NAL header included (`sprop-sps`); never empty.
    pub fn sps(&self) -> &[Vec<u8>] {
        &self.sps
    }

    /// The picture parameter sets, NAL header included (`sprop-pps`).
    pub fn pps(&self) -> &[Vec<u8>] {
        &self.pps
    }

    /// Every VPS, SPS, then PPS: the order a decoder needs them in before a keyframe.
    pub fn parameter_sets(&self) -> impl Iterator<Item = &[u8]> {
        self.vps.iter().chain(&self.sps).chain(&self.pps).map(Vec::as_slice)
    }

    /// The first SPS, decoded: its profile, tier and level are RFC 7798's `profile-id`,
    /// `tier-flag` and `level-id`.
    pub fn sps_info(&self) -> &HevcSps {
        &self.sps_info
    }
}

/// Fails unless `write` can write these sets: each kind counted in one array's 16-bit field,
/// each set's length in 16 bits.
fn check_writable(kinds: [&Vec<Vec<u8>>; 3]) -> Result<(), CodecError> {
    let max = usize::from(u16::MAX);
    if kinds.iter().any(|sets| sets.len() > max) {
        return Err(malformed(HevcDecoderConfig::WHAT, "more parameter sets than one array can count"));
    }
    if kinds.iter().flat_map(|sets| sets.iter()).any(|set| set.len() > max) {
        return Err(malformed(HevcDecoderConfig::WHAT, "parameter set longer than 65535 bytes"));
    }
    Ok(())
}

const NAL_VPS: u8 = 32;
const NAL_SPS: u8 = 33;
const NAL_PPS: u8 = 34;

/// The fields of an HEVC sequence parameter set that describe the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    pub general_profile_idc: u8,
    /// False for Main tier, true for High tier.
    pub general_tier_flag: bool,
    pub general_level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// `sps_max_sub_layers_minus1` + 1: the temporal layers a record announces.
    pub max_sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// The general part of `profile_tier_level()` as coded: profile space, tier and profile
    /// (1 byte), compatibility flags (4), constraint flags (6), level (1). An `hvcC` record
    /// repeats these bytes, and RFC 7798's `profile-compatibility-indicator` and
    /// `interop-constraints` are parts of them.
    pub general_profile_tier_level: [u8; 12],
    /// Displayed width, after the conformance window.
    pub width: u32,
    /// Displayed height, after the conformance window.
    pub height: u32,
    /// `separate_colour_plane_flag`: slice headers then carry a `colour_plane_id`.
    pub separate_colour_plane: bool,
    /// `log2_max_pic_order_cnt_lsb_minus4` + 4: the width of a slice header's
    /// `slice_pic_order_cnt_lsb`; 0 when the SPS ends before stating it.
    pub log2_max_pic_order_cnt_lsb: u8,
    /// `sps_max_num_reorder_pics` of the highest temporal layer: how many pictures at most
    /// precede a picture in decode order and follow it in output order. `None` when the SPS
    /// ends before stating it.
    pub max_num_reorder_pics: Option<u32>,
}

impl HevcSps {
    const WHAT: &'static str = "HEVC SPS";
    /// A sub-layer's profile fields in `profile_tier_level()`, level excluded.
    const SUB_LAYER_PROFILE_BITS: u32 = 88;

    /// Parses an SPS NAL unit, two-byte header included, emulation-prevention bytes and all.
    pub fn parse(nal: &[u8]) -> Result<Self, CodecError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let rbsp = remove_emulation_prevention(nal.get(2..).ok_or(truncated)?);
        // It starts on a byte boundary, after VPS id, sub-layer count and nesting flag.
        let general_profile_tier_level: [u8; 12] =
            rbsp.get(1..13).and_then(|bytes| bytes.try_into().ok()).ok_or(truncated)?;
        let mut bits = BitReader::new(&rbsp, truncated);
        let _vps_id = bits.bits(4)?;
        let max_sub_layers_minus1 = bits.bits(3)?;
        let temporal_id_nesting = bits.flag()?;

        // profile_tier_level(1, max_sub_layers_minus1), H.265 7.3.3.
        let _general_profile_space = bits.bits(2)?;
        let general_tier_flag = bits.flag()?;
        let general_profile_idc = bits.bits(5)?;
        // Compatibility flags (32), source/constraint flags (4 + 43 + 1).
        bits.skip(32 + 48)?;
        let general_level_idc = bits.u8()?;
        let mut sub_layer_present = [(false, false); 8];
        for present in sub_layer_present.iter_mut().take(max_sub_layers_minus1 as usize) {
            *present = (bits.flag()?, bits.flag()?);
        }
        if max_sub_layers_minus1 > 0 {
            bits.skip(2 * (8 - max_sub_layers_minus1))?;
        }
        for (profile_present, level_present) in sub_layer_present.iter().take(max_sub_layers_minus1 as usize) {
            if *profile_present {
                bits.skip(Self::SUB_LAYER_PROFILE_BITS)?;
            }
            if *level_present {
                bits.skip(8)?;
            }
        }

        let _sps_id = bits.ue()?;
        let chroma_format_idc = bits.ue()?;
        if chroma_format_idc > 3 {
            return Err(malformed(Self::WHAT, "chroma_format_idc above 3"));
        }
        let separate_colour_plane = chroma_format_idc == 3 && bits.flag()?;
        let coded_width = u64::from(bits.ue()?);
        let coded_height = u64::from(bits.ue()?);
        let conformance_window = CropWindow::read(&mut bits)?;
        let bit_depth_luma_minus8 = bits.ue()?;
        if bit_depth_luma_minus8 > 8 {
            return Err(malformed(Self::WHAT, "bit depth above 16"));
        }
        let bit_depth_chroma_minus8 = bits.ue()?;
        let (log2_max_pic_order_cnt_lsb, max_num_reorder_pics) =
            match read_picture_order(&mut bits, max_sub_layers_minus1) {
                Ok((log2, depth)) => (log2, Some(depth)),
                Err(_) => (0, None),
            };

        // The conformance window counts chroma samples (H.265 table 6-1, equation 7-1).
        let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let width = conformance_window
            .width(coded_width, sub_width)
            .ok_or(malformed(Self::WHAT, "conformance window wider than the picture"))?;
        let height = conformance_window
            .height(coded_height, sub_height)
            .ok_or(malformed(Self::WHAT, "conformance window taller than the picture"))?;

        Ok(HevcSps {
            general_profile_idc: u8::try_from(general_profile_idc).unwrap_or(u8::MAX),
            general_tier_flag,
            general_level_idc,
            chroma_format_idc: u8::try_from(chroma_format_idc).unwrap_or(u8::MAX),
            bit_depth_luma: u8::try_from(8 + bit_depth_luma_minus8).unwrap_or(u8::MAX),
            bit_depth_chroma: u8::try_from(bit_depth_chroma_minus8.saturating_add(8)).unwrap_or(u8::MAX),
            // Three bits: at most 8.
            max_sub_layers: max_sub_layers_minus1 as u8 + 1,
            temporal_id_nesting,
            general_profile_tier_level,
            width,
            height,
            separate_colour_plane,
            log2_max_pic_order_cnt_lsb,
            max_num_reorder_pics,
        })
    }

    /// The profile name of H.265 annex A, as ffprobe shows it.
    pub fn profile_name(&self) -> &'static str {
        match self.general_profile_idc {
            1 => "Main",
            2 => "Main 10",
            3 => "Main Still Picture",
            4 => "Rext",
            5 => "High Throughput 4:4:4",
            9 => "Screen Content Coding",
            _ => "unknown",
        }
    }

    /// The level as annex A writes it ("4.1"): `general_level_idc` is 30 times the level.
    pub fn level(&self) -> String {
        let idc = u32::from(self.general_level_idc);
        format_level(idc / 30, (idc % 30) / 3)
    }
}

/// Reads `log2_max_pic_order_cnt_lsb_minus4` and the sub-layer ordering info (H.265
/// 7.3.2.2.1), returning the POC lsb width and `sps_max_num_reorder_pics` of the highest
/// sub-layer: the one that bounds the whole stream.
fn read_picture_order(bits: &mut BitReader<'_>, max_sub_layers_minus1: u32) -> Result<(u8, u32), CodecError> {
    let log2_max_pic_order_cnt_lsb_minus4 = bits.ue()?;
    if log2_max_pic_order_cnt_lsb_minus4 > 12 {
        return Err(malformed(HevcSps::WHAT, "log2_max_pic_order_cnt_lsb above 16"));
    }
    let per_sub_layer = bits.flag()?;
    let first = if per_sub_layer { 0 } else { max_sub_layers_minus1 };
    let mut max_num_reorder_pics = 0;
    for _ in first..=max_sub_layers_minus1 {
        let _max_dec_pic_buffering_minus1 = bits.ue()?;
        max_num_reorder_pics = bits.ue()?;
        let _max_latency_increase_plus1 = bits.ue()?;
    }
    // At most 12 + 4.
    Ok((log2_max_pic_order_cnt_lsb_minus4 as u8 + 4, max_num_reorder_pics))
}

/// The fields of an HEVC picture parameter set (H.265 7.3.2.3.1) that a slice header's layout
/// depends on, up to the POC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcPps {
    /// Slice headers carry a `pic_output_flag`.
    pub output_flag_present: bool,
    /// Bits a slice header reserves before its `slice_type`.
    pub num_extra_slice_header_bits: u8,
}

impl HevcPps {
    const WHAT: &'static str = "HEVC PPS";

    /// Parses a PPS NAL unit, two-byte header included.
    pub fn parse(nal: &[u8]) -> Result<Self, CodecError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let head = nal.get(2..).ok_or(truncated)?;
        let rbsp = remove_emulation_prevention(&head[..head.len().min(16)]);
        let mut bits = BitReader::new(&rbsp, truncated);
        let _pps_id = bits.ue()?;
        let _sps_id = bits.ue()?;
        let _dependent_slice_segments_enabled = bits.flag()?;
        let output_flag_present = bits.flag()?;
        // Three bits: at most 7.
        let num_extra_slice_header_bits = bits.bits(3)? as u8;
        Ok(HevcPps { output_flag_present, num_extra_slice_header_bits })
    }
}

/// The fields of an HEVC slice segment header (H.265 7.3.6.1) that order pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSliceHeader {
    pub nal_unit_type: u8,
    /// `nuh_temporal_id_plus1` - 1.
    pub temporal_id: u8,
    /// `slice_pic_order_cnt_lsb`; 0 for IDR pictures, which do not carry it.
    pub pic_order_cnt_lsb: u32,
}

impl HevcSliceHeader {
    const WHAT: &'static str = "HEVC slice header";
    /// Enough of the segment for the fields read (a few flags, two exp-Golomb codes, seven
    /// extra bits and a POC of at most 16 bits).
    const HEAD_BYTES: usize = 32;

    /// Parses the start of the first slice segment of a picture (VCL NAL types 0-21), header
    /// included. Later segments need the picture size to be read and are refused.
    pub fn parse(nal: &[u8], sps: &HevcSps, pps: &HevcPps) -> Result<Self, CodecError> {
        let truncated = malformed(Self::WHAT, "truncated");
        let header = nal.get(..2).ok_or(truncated)?;
        let nal_unit_type = (header[0] >> 1) & 0x3f;
        let temporal_id = (header[1] & 0x07).saturating_sub(1);
        if nal_unit_type > 21 {
            return Err(malformed(Self::WHAT, "not a coded slice"));
        }
        if sps.log2_max_pic_order_cnt_lsb == 0 {
            return Err(malformed(HevcSps::WHAT, "no POC width"));
        }
        let head = &nal[2..nal.len().min(2 + Self::HEAD_BYTES)];
        let rbsp = remove_emulation_prevention(head);
        let mut bits = BitReader::new(&rbsp, truncated);
        if !bits.flag()? {
            return Err(malformed(Self::WHAT, "not the first slice segment of its picture"));
        }
        if (16..=23).contains(&nal_unit_type) {
            let _no_output_of_prior_pics = bits.flag()?;
        }
        let _slice_pic_parameter_set_id = bits.ue()?;
        bits.skip(u32::from(pps.num_extra_slice_header_bits))?;
        let _slice_type = bits.ue()?;
        if pps.output_flag_present {
            let _pic_output = bits.flag()?;
        }
        if sps.separate_colour_plane {
            let _colour_plane_id = bits.bits(2)?;
        }
        let idr = matches!(nal_unit_type, 19 | 20);
        let pic_order_cnt_lsb = if idr { 0 } else { bits.bits(u32::from(sps.log2_max_pic_order_cnt_lsb))? };
        Ok(HevcSliceHeader { nal_unit_type, temporal_id, pic_order_cnt_lsb })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::{HVCC_426X240_MAIN, HVCC_720P_MAIN, HVCC_1080P_MAIN10, hex};
    use base64::Engine;

    #[test]
    fn hevc_records() {
        let config = HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).expect("parses");
        assert_eq!(config.nal_length_size, 4);
        assert_eq!((config.vps.len(), config.sps.len(), config.pps.len()), (1, 1, 1));
        assert_eq!(config.sps_info.profile_name(), "Main");
        assert_eq!(config.sps_info.level(), "3.1");
        assert_eq!((config.sps_info.width, config.sps_info.height), (1280, 720));

        // libx265's default: B-pyramid, two pictures reordered; POC lsb of 8 bits.
        assert_eq!((config.sps_info.max_num_reorder_pics, config.sps_info.log2_max_pic_order_cnt_lsb), (Some(2), 8));

        let config = HevcDecoderConfig::parse(&hex(HVCC_1080P_MAIN10)).expect("parses");
        assert_eq!(config.sps_info.profile_name(), "Main 10");
        assert_eq!(config.sps_info.bit_depth_luma, 10);
        assert_eq!(config.sps_info.level(), "4");
        assert_eq!((config.sps_info.width, config.sps_info.height), (1920, 1080));

        let config = HevcDecoderConfig::parse(&hex(HVCC_426X240_MAIN)).expect("parses");
        assert_eq!(config.sps_info.level(), "2");
        assert_eq!((config.sps_info.width, config.sps_info.height), (426, 240));
    }

    /// What ffmpeg 5.1 wrote into the SDP (`-flags +global_header -f rtp -sdp_file`) for the
    /// same libx265 1280x720 encode as `HVCC_720P_MAIN`.
    const FFMPEG_SPROP_VPS: &str = "QAEMAf//AWAAAAMAkAAAAwAAAwBdlZgJ";
    const FFMPEG_SPROP_SPS: &str = "QgEBAWAAAAMAkAAAAwAAAwBdoAKAgC0WWVmkkyvAWgIAAAMAAgAAAwA8EA==";
    const FFMPEG_SPROP_PPS: &str = "RAHBcrRiQA==";

    #[test]
    fn accessors_give_what_sdp_carries() {
        let decode = |set: &str| base64::engine::general_purpose::STANDARD.decode(set).expect("base64");
        let config = HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).expect("parses");
        assert_eq!(config.vps(), [decode(FFMPEG_SPROP_VPS)]);
        assert_eq!(config.sps(), [decode(FFMPEG_SPROP_SPS)]);
        assert_eq!(config.pps(), [decode(FFMPEG_SPROP_PPS)]);
        let in_order: Vec<Vec<u8>> = config.parameter_sets().map(<[u8]>::to_vec).collect();
        assert_eq!(in_order, [decode(FFMPEG_SPROP_VPS), decode(FFMPEG_SPROP_SPS), decode(FFMPEG_SPROP_PPS)]);
        assert_eq!(config.nal_length_size(), 4);
        let sps = config.sps_info();
        // profile-id=1, tier-flag=0, level-id=93: what RFC 7798 would put in the SDP.
        assert_eq!((sps.general_profile_idc, sps.general_tier_flag, sps.general_level_idc), (1, false, 93));
    }

    #[test]
    fn records_written_read_back_as_ffmpeg_wrote_them() {
        for record_hex in [HVCC_720P_MAIN, HVCC_1080P_MAIN10, HVCC_426X240_MAIN] {
            let ffmpeg_record = hex(record_hex);
            let parsed = HevcDecoderConfig::parse(&ffmpeg_record).expect("parses");
            let mut written = Vec::new();
            parsed.write(&mut written);
            let mut expected = ffmpeg_record.clone();
            if record_hex == HVCC_720P_MAIN {
                // ffmpeg's MP4 muxer marked these arrays complete; written ones never are.
                for array_start in [23, 23 + 3 + 2 + 24, 23 + 3 + 2 + 24 + 3 + 2 + 43] {
                    expected[array_start] &= 0x3f;
                }
            }
            assert_eq!(written, expected, "{record_hex}");
            assert_eq!(HevcDecoderConfig::parse(&written), Ok(parsed.clone()));

            // What an RTP source hands over: just the parameter sets.
            let built = HevcDecoderConfig::from_parameter_sets(
                parsed.vps().to_vec(),
                parsed.sps().to_vec(),
                parsed.pps().to_vec(),
            )
            .expect("builds");
            assert_eq!(built, parsed);
        }
        let config = HevcDecoderConfig::parse(&hex(HVCC_1080P_MAIN10)).expect("parses");
        assert_eq!(config.sps_info().bit_depth_chroma, 10);
        assert_eq!((config.sps_info().max_sub_layers, config.sps_info().temporal_id_nesting), (1, true));
        assert!(HevcDecoderConfig::from_parameter_sets(Vec::new(), Vec::new(), Vec::new()).is_err());
    }

    #[test]
    fn other_arrays_are_skipped() {
        // The 720p record with a fourth array: one prefix SEI (type 39), as x265 writes its
        // version string, here cut to 4 bytes.
        let mut record = hex(HVCC_720P_MAIN);
        record[22] = 4;
        record.extend(hex("27 0001 0004 4e01 05ff"));
        let config = HevcDecoderConfig::parse(&record).expect("parses");
        assert_eq!(config.parameter_sets().count(), 3);
        assert_eq!(config.sps_info().width, 1280);
    }
}
