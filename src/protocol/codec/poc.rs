//! Picture order counts: where each picture of an H.264 or H.265 stream goes in output order,
//! derived from its slice header and the pictures before it (H.264 8.2.1, H.265 8.3.1).
//!
//! Only what ordering frames needs: H.264 POC type 0 (a POC lsb in every slice; what libx264
//! and most cameras use) and type 2 (output order is decode order), H.265 from the slice POC lsb
//! and the wrap of its most significant part. H.264 type 1 (offsets by `frame_num`) is rare
//! and reports no order. Memory-management resets (H.264 `mmco` 5) are not followed: a relay
//! only needs the order within a group of pictures, which the next IDR restarts anyway.

use super::avc::{H264SliceHeader, H264Sps};
use super::hevc::{HevcPps, HevcSliceHeader, HevcSps};

/// The parameter sets a slice header is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sets {
    H264(H264Sps),
    H265(HevcSps, HevcPps),
}

/// Derives picture order counts for one H.264 or H.265 stream, in decode order.
#[derive(Debug, Clone, Default)]
pub struct PictureOrder {
    /// `None` until parameter sets that could be read are given.
    sets: Option<Sets>,
    /// The POC lsb and msb of the previous picture POC derivation continues from (H.264: the
    /// previous reference picture; H.265: the previous temporal-layer-0 picture that is not a
    /// leading or sub-layer non-reference picture).
    prev_lsb: i64,
    prev_msb: i64,
    /// An H.265 CRA is a fresh start (POC msb 0) only as the first picture seen.
    seen_picture: bool,
}

/// One picture's place in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PicturePosition {
    /// Output-order count, in the stream's units (H.264 counts fields: a frame is 2).
    pub poc: i64,
    /// The POC starts over here: the picture is an IDR (or an H.265 IRAP that begins a
    /// sequence), and no later picture is output before an earlier one.
    pub restart: bool,
    /// An intra picture (H.264: its first slice is I or SI; H.265: an IRAP): decoding can
    /// start here, though pictures decoded after it and shown before it may refer to earlier
    /// ones (an open GOP).
    pub intra: bool,
}

impl PictureOrder {
    /// H.264 with `sps`, as read from the stream's SPS.
    pub fn set_h264(&mut self, sps: H264Sps) {
        self.sets = Some(Sets::H264(sps));
    }

    pub fn set_h265(&mut self, sps: HevcSps, pps: HevcPps) {
        self.sets = Some(Sets::H265(sps, pps));
    }

    /// Forgets the parameter sets (they could not be read): no positions until new ones.
    pub fn clear(&mut self) {
        self.sets = None;
    }

    /// The position of the picture whose first coded slice is `slice` (NAL header included);
    /// `None` when it cannot be derived (no parameter sets, an unreadable slice, POC type 1).
    pub fn position(&mut self, slice: &[u8]) -> Option<PicturePosition> {
        let position = match self.sets? {
            Sets::H264(sps) => self.h264(slice, &sps),
            Sets::H265(sps, pps) => self.h265(slice, &sps, &pps),
        };
        self.seen_picture |= position.is_some();
        position
    }

    fn h264(&mut self, slice: &[u8], sps: &H264Sps) -> Option<PicturePosition> {
        let header = H264SliceHeader::parse(slice, sps).ok()?;
        let lsb = i64::from(header.pic_order_cnt_lsb?);
        if header.idr {
            (self.prev_lsb, self.prev_msb) = (0, 0);
        }
        let max_lsb = 1i64 << sps.log2_max_pic_order_cnt_lsb;
        let msb = self.next_msb(lsb, max_lsb);
        if header.reference {
            (self.prev_lsb, self.prev_msb) = (lsb, msb);
        }
        let intra = matches!(header.slice_type % 5, 2 | 4);
        Some(PicturePosition { poc: msb.saturating_add(lsb), restart: header.idr, intra })
    }

    fn h265(&mut self, slice: &[u8], sps: &HevcSps, pps: &HevcPps) -> Option<PicturePosition> {
        let header = HevcSliceHeader::parse(slice, sps, pps).ok()?;
        let lsb = i64::from(header.pic_order_cnt_lsb);
        let nal_type = header.nal_unit_type;
        // IDR and BLA always start a coded video sequence; a CRA when decoding starts there.
        let restart = matches!(nal_type, 16..=20) || (nal_type == 21 && !self.seen_picture);
        let max_lsb = 1i64 << sps.log2_max_pic_order_cnt_lsb;
        let msb = if restart { 0 } else { self.next_msb(lsb, max_lsb) };
        let leading = matches!(nal_type, 6..=9);
        let sub_layer_non_reference = nal_type <= 14 && nal_type % 2 == 0;
        if header.temporal_id == 0 && !leading && !sub_layer_non_reference {
            (self.prev_lsb, self.prev_msb) = (lsb, msb);
        }
        Some(PicturePosition { poc: msb.saturating_add(lsb), restart, intra: (16..=23).contains(&nal_type) })
    }

    /// The POC msb of a picture with `lsb`: the previous msb, moved by a wrap of the lsb
    /// counter in whichever direction is closer (H.264 8-3, H.265 8-1).
    fn next_msb(&self, lsb: i64, max_lsb: i64) -> i64 {
        let (prev_lsb, prev_msb) = (self.prev_lsb, self.prev_msb);
        // Saturating: a hostile stream wrapping one way forever must not overflow.
        if lsb < prev_lsb && prev_lsb - lsb >= max_lsb / 2 {
            prev_msb.saturating_add(max_lsb)
        } else if lsb > prev_lsb && lsb - prev_lsb > max_lsb / 2 {
            prev_msb.saturating_sub(max_lsb)
        } else {
            prev_msb
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::hex;

    /// libx264 `-bf 2` (B-pyramid), 64x48: the SPS and the first 12 bytes of the first slice
    /// of six frames in decode order. ffprobe shows them at 0, 120, 40, 80, 200 and 160 ms.
    const X264_SPS: &str = "6764000aacd9447b011000000300100000030320f1225960";
    const X264_SLICES: [&str; 6] = [
        "6588840067ccff9e30df03ef",
        "419a236c421fccd478bf941d",
        "419e417884bff814d5",
        "019e626a42dff85c6c",
        "419a6549a84168994c14f0b7",
        "019e846a42df7bc1",
    ];
    /// libx265 `bframes=3`, 64x48: SPS, PPS and slice starts; shown at 0, 80, 40, 200, 160
    /// and 120 ms.
    const X265_SPS: &str = "42010101600000030090000003000003001ea020831659596e4caf016808000003000800000300c840";
    const X265_PPS: &str = "4401c173d089";
    const X265_SLICES: [&str; 6] = [
        "2801af1d80627e12e67953b6",
        "0201d0115784318e40b6a717",
        "0001e024bf8614c08a7e80",
        "0201d029dd7d44306390fe60",
        "0201e086957f5184b0f68fff",
        "0001e066f5ff48b0a2f68fff",
    ];

    #[test]
    fn libx264_pictures_are_ordered_as_ffprobe_shows_them() {
        let sps = H264Sps::parse(&hex(X264_SPS)).unwrap();
        assert_eq!((sps.pic_order_cnt_type, sps.max_num_reorder_frames), (0, Some(2)));
        let mut order = PictureOrder::default();
        order.set_h264(sps);
        let positions: Vec<PicturePosition> =
            X264_SLICES.iter().map(|slice| order.position(&hex(slice)).unwrap()).collect();
        // Two POC units per frame: 0, 120, 40, 80, 200, 160 ms are frames 0, 3, 1, 2, 5, 4.
        assert_eq!(positions.iter().map(|at| at.poc).collect::<Vec<_>>(), [0, 6, 2, 4, 10, 8]);
        assert!(positions[0].restart && positions[0].intra);
        assert!(positions[1..].iter().all(|at| !at.restart && !at.intra));
    }

    #[test]
    fn libx265_pictures_are_ordered_as_ffprobe_shows_them() {
        let sps = HevcSps::parse(&hex(X265_SPS)).unwrap();
        assert!(sps.max_num_reorder_pics.is_some_and(|depth| depth >= 1), "{sps:?}");
        let mut order = PictureOrder::default();
        order.set_h265(sps, HevcPps::parse(&hex(X265_PPS)).unwrap());
        let positions: Vec<PicturePosition> =
            X265_SLICES.iter().map(|slice| order.position(&hex(slice)).unwrap()).collect();
        assert_eq!(positions.iter().map(|at| at.poc).collect::<Vec<_>>(), [0, 2, 1, 5, 4, 3]);
        assert!(positions[0].restart && positions[0].intra);
    }

    #[test]
    fn the_lsb_wraps_into_the_msb() {
        // POC type 0 with a 4-bit lsb (log2_max_pic_order_cnt_lsb_minus4 = 0): lsb 14 then 2
        // is 18, not 2. Slices are P (type 0), frame_num 4 bits, made bit by bit: first_mb
        // ue(0) = 1, slice_type ue(0) = 1, pps_id ue(0) = 1, frame_num, lsb.
        let mut sps = H264Sps::parse(&hex(X264_SPS)).unwrap();
        (sps.log2_max_frame_num, sps.log2_max_pic_order_cnt_lsb) = (4, 4);
        let slice = |lsb: u16| {
            let bits: u16 = (0b111 << 13) | (0b0001 << 9) | (lsb << 5) | (1 << 4);
            [&[0x41][..], &bits.to_be_bytes()].concat()
        };
        let mut order = PictureOrder::default();
        order.set_h264(sps);
        let pocs: Vec<i64> = [6, 14, 2, 10, 2].iter().map(|&lsb| order.position(&slice(lsb)).unwrap().poc).collect();
        assert_eq!(pocs, [6, 14, 18, 26, 34]);
    }

    #[test]
    fn unreadable_slices_have_no_position() {
        let mut order = PictureOrder::default();
        assert_eq!(order.position(&hex(X264_SLICES[0])), None);
        order.set_h264(H264Sps::parse(&hex(X264_SPS)).unwrap());
        for slice in [&[][..], &[0x65], &[0x67, 0, 0], &[0x41, 0x00, 0x00]] {
            assert_eq!(order.position(slice), None, "{slice:02x?}");
        }
        order.clear();
        assert_eq!(order.position(&hex(X264_SLICES[1])), None);
    }
}
