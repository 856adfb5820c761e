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
