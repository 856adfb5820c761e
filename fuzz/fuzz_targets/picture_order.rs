//! Slice headers and decode times: the input is an SPS and a PPS (each a length byte then that
//! many bytes), then access units, each a flags byte (bit 0: keyframe, bit 1: H.265), a signed
//! presentation step in milliseconds and a length-prefixed first slice. The slices go through
//! [`PictureOrder`] and the times through [`DtsExtractor`]: never a panic, and decode times
//! never go back but on a restarted time line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::codec::hevc::HevcPps;
use ringcast::protocol::codec::poc::PictureOrder;
use ringcast::protocol::codec::{H264Sps, HevcSps};
use ringcast::protocol::rtp::dts::{DtsExtractor, RESTART_GAP};

fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&len, tail) = rest.split_first()?;
    let len = usize::from(len).min(tail.len());
    let (taken, tail) = tail.split_at(len);
    *rest = tail;
    Some(taken)
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let (Some(sps), Some(pps)) = (take(&mut rest), take(&mut rest)) else { return };
    let mut h264 = PictureOrder::default();
    if let Ok(sps) = H264Sps::parse(sps) {
        h264.set_h264(sps);
    }
    let mut h265 = PictureOrder::default();
    if let (Ok(sps), Ok(pps)) = (HevcSps::parse(sps), HevcPps::parse(pps)) {
        h265.set_h265(sps, pps);
    }
    let mut extractor = DtsExtractor::new(usize::from(sps.first().copied().unwrap_or(0) % 20), 2);
    let (mut pts, mut last_dts): (i64, Option<i64>) = (0, None);
    // The lowest presentation time since the last decode time given: a restart shows there.
    let mut lowest_pts = i64::MAX;
    while let Some((&flags, tail)) = rest.split_first() {
        let Some((&step, tail)) = tail.split_first() else { return };
        rest = tail;
        let Some(slice) = take(&mut rest) else { return };
        pts += i64::from(step as i8) * 90;
        lowest_pts = lowest_pts.min(pts);
        let order = if flags & 2 != 0 { &mut h265 } else { &mut h264 };
        let position = order.position(slice);
        let sync_point = flags & 1 != 0 || position.is_some_and(|at| at.intra);
        if let Some(dts) = extractor.decode_time(pts, sync_point, position.map(|at| at.poc)) {
            if let Some(last) = last_dts {
                assert!(dts >= last || lowest_pts < last - RESTART_GAP, "{dts} after {last}");
            }
            last_dts = Some(dts);
            lowest_pts = i64::MAX;
        }
    }
});
