//! Decode times for video whose RTP timestamps are presentation times.
//!
//! RTP carries one time per access unit, its presentation time (RFC 6184 5.1, RFC 7798 4.1).
//! FLV and RTMP carry the decode time and a composition offset (presentation minus decode). For
//! a stream that reorders pictures (B-frames), the frames arrive in decode order with
//! presentation times that go back and forth, so the decode times must be rebuilt.
//!
//! How: a decoder outputs pictures through a reorder buffer that holds at most `depth`
//! pictures (the SPS's `max_num_reorder_frames`, `sps_max_num_reorder_pics`). Once it is full,
//! every decoded picture pushes out the one with the smallest presentation time. That
//! picture's presentation time is the decode time of the picture just decoded, which is the
//! convention encoders use (libx264: the i-th decode time is the (i - depth)-th presentation
//! time). It is causal, never later than the frame's own presentation time (the smallest of a
//! set that holds it) and, for a stream that respects its depth, non-decreasing; a stream
//! without reordering (depth 0) gets its presentation times back. It needs no frame rate and
//! survives lost frames: a missing picture only makes the buffer release the next one sooner.
//!
//! While the buffer fills (the first `depth` frames of a time line), encoders start decode
//! times before the first presentation time, which the track's time line cannot go below. The
//! picture order count (POC, [`crate::protocol::codec::poc`]) tells these frames apart: one
//! whose POC is the next after those seen since the keyframe is decoded when presented; one
//! with gaps below it (pictures still to come are shown before it) gets a decode time one
//! millisecond after the previous one, leaving room for them. A frame of unknown POC counts as
//! next.
//!
//! A stream that reorders deeper than it declared (or than the fallback guessed, for an H.264
//! SPS without `bitstream_restriction`) shows up as a presentation time below a decode time
//! already given out: that frame's decode time stays the previous one (the caller clamps its
//! composition offset to 0) and the depth grows by one, up to [`MAX_DEPTH`].
//!
//! Joins: the time line starts at the first sync point (an IDR or IRAP picture, or an H.264
//! intra picture, the random access point of an open GOP). Frames before it get their
//! presentation time, kept monotonic: no player can decode them anyway. Frames after it that
//! are shown before it (the leading pictures of an open GOP, by their POC) refer to pictures
//! before the join: they are reported as undecodable, for the caller to drop, as decoders do
//! (RASL pictures, H.265 8.1.3). A presentation time more than a second before the last decode
//! time is a new time line (the publisher restarted its clock): the buffer starts over.

/// The largest reorder depth: H.264 and H.265 bound the decoded picture buffer to 16.
pub const MAX_DEPTH: usize = 16;

/// One millisecond at the 90 kHz video clock: the smallest step between decode times that
/// survives the conversion to FLV's milliseconds.
const ONE_MS: i64 = 90;

/// How far a presentation time may fall behind the last decode time and still be the same
/// time line (a frame presented before its decoding is a stream error, not a restart).
pub const RESTART_GAP: i64 = 90_000;

/// Rebuilds decode times from presentation times, for one video track (90 kHz ticks).
#[derive(Debug, Clone)]
pub struct DtsExtractor {
    /// How many pictures the reorder buffer holds before it releases one.
    depth: usize,
    /// POC units per frame: 2 for H.264 (it counts fields), 1 for H.265.
    poc_step: i64,
    /// Presentation times of pictures decoded and not yet released, ascending; at most
    /// `depth` between frames.
    pending: Vec<i64>,
    last_dts: Option<i64>,
    /// A sync point (keyframe or intra picture) started the time line. Frames before it (a
    /// stream joined mid-GOP) get their presentation time, kept monotonic, and teach nothing
    /// about the depth.
    synced: bool,
    /// The POC of the sync point the time line started at, until the next sync point: frames
    /// shown before it are leading pictures of an open GOP that refer to pictures before the
    /// join, which no player has.
    joined_at: Option<i64>,
    /// While the buffer fills: the POC of the keyframe and of the frames since, to tell a
    /// frame that is next in output order from one that frames still to come precede.
    filling: Vec<i64>,
    /// The stream reordered deeper than declared once: a frame of unknown order is no longer
    /// assumed to be next in output order.
    learned: bool,
}

impl DtsExtractor {
    /// `poc_step`: POC units per frame (2 for H.264, 1 for H.265).
    pub fn new(depth: usize, poc_step: i64) -> Self {
        DtsExtractor {
            depth: depth.min(MAX_DEPTH),
            poc_step: poc_step.max(1),
            pending: Vec::with_capacity(MAX_DEPTH + 1),
            last_dts: None,
            synced: false,
            joined_at: None,
            filling: Vec::with_capacity(MAX_DEPTH + 1),
            learned: false,
        }
    }

    /// The reorder depth in force (the declared one, or more if the stream showed more).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// A new SPS declared `depth`. A smaller depth releases the surplus at the next frame.
    pub fn set_depth(&mut self, depth: usize) {
        self.depth = depth.min(MAX_DEPTH);
    }

    /// The decode time of the next access unit in decode order, presented at `pts`;
    /// `sync_point` for a keyframe (IDR, IRAP) or intra picture, `poc` its picture order count
    /// if known. It is never below the previous decode time and, unless the stream reorders
    /// deeper than its depth or was joined mid-GOP, never above `pts`. `None`: a leading
    /// picture of the open GOP the stream was joined at, which refers to pictures before the
    /// join; decoders skip it, and so should the caller.
    pub fn decode_time(&mut self, pts: i64, sync_point: bool, poc: Option<i64>) -> Option<i64> {
        if self.last_dts.is_some_and(|last| pts < last.saturating_sub(RESTART_GAP)) {
            self.last_dts = None;
            self.synced = false;
            self.joined_at = None;
        }
        if sync_point {
            self.joined_at = if self.synced { None } else { poc };
            if !self.synced {
                // Whatever was pending belongs to a time line no longer followed.
                self.pending.clear();
            }
            self.synced = true;
            self.filling.clear();
        } else if let (Some(joined_at), Some(poc)) = (self.joined_at, poc)
            && poc < joined_at
        {
            return None;
        }
        if !self.synced {
            let dts = self.last_dts.map_or(pts, |last| pts.max(last));
            self.last_dts = Some(dts);
            return Some(dts);
        }
        let at = self.pending.partition_point(|&pending| pending <= pts);
        self.pending.insert(at, pts);
        let mut released = None;
        while self.pending.len() > self.depth {
            released = Some(self.pending.remove(0));
        }
        if released.is_some() {
            self.filling.clear();
        }
        let Some(last) = self.last_dts else {
            // The first frame of a time line: nothing to order it against.
            let dts = released.unwrap_or(pts);
            self.remember_filling(poc);
            self.last_dts = Some(dts);
            return Some(dts);
        };
        let candidate = match released {
            Some(released) => released,
            // Filling: a frame next in output order may be decoded when presented; one that
            // frames still to come are presented before must leave room for them.
            None if self.frames_missing_before(poc) == 0 => pts,
            None => last,
        };
        if released.is_none() {
            self.remember_filling(poc);
        }
        let dts = candidate.max(last.saturating_add(ONE_MS)).min(pts).max(last);
        if pts < last {
            // Presented before a frame already decoded: the buffer was one picture short.
            self.depth = (self.depth + 1).min(MAX_DEPTH);
            self.learned = true;
        }
        self.last_dts = Some(dts);
        Some(dts)
    }

    fn remember_filling(&mut self, poc: Option<i64>) {
        if let Some(poc) = poc
            && self.filling.len() <= MAX_DEPTH
        {
            self.filling.push(poc);
        }
    }

    /// How many frames between the keyframe and `poc` in output order have not been seen:
    /// they come later in decode order and earlier in output order. Unknown order counts as
    /// none (no evidence of reordering) until the stream has shown reordering it did not
    /// declare.
    fn frames_missing_before(&self, poc: Option<i64>) -> i64 {
        let (Some(poc), Some(&first)) = (poc, self.filling.first()) else { return i64::from(self.learned) };
        if poc <= first {
            return 0;
        }
        let slots = poc.saturating_sub(first) / self.poc_step;
        if slots > MAX_DEPTH as i64 * 4 {
            // Far beyond any buffer: certainly not next.
            return slots;
        }
        let seen = self.filling.iter().filter(|&&seen| seen >= first && seen < poc).count() as i64;
        (slots - seen).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode times for presentation times given in frames of 40 ms (3600 ticks), each
    /// frame's POC its frame number (step 1), the first frame a keyframe.
    fn run(depth: usize, pts_frames: &[i64]) -> Vec<i64> {
        let mut extractor = DtsExtractor::new(depth, 1);
        pts_frames
            .iter()
            .enumerate()
            .map(|(i, &frame)| extractor.decode_time(frame * 3600, i == 0, Some(frame)).expect("no join"))
            .collect()
    }

    fn frames(ticks: &[i64]) -> Vec<i64> {
        ticks.iter().map(|tick| tick / 3600).collect()
    }

    fn assert_valid(pts_frames: &[i64], dts: &[i64]) {
        assert!(dts.windows(2).all(|pair| pair[0] <= pair[1]), "not monotonic: {dts:?}");
        assert!(dts.iter().zip(pts_frames).all(|(dts, pts)| *dts <= pts * 3600), "after pts: {dts:?}");
    }

    #[test]
    fn no_reordering_gives_presentation_times_back() {
        let pts: Vec<i64> = (0..10).collect();
        assert_eq!(frames(&run(0, &pts)), pts);
        // A declared depth with no reordering in fact: decode times lag, but stay valid.
        assert_valid(&pts, &run(2, &pts));
    }

    #[test]
    fn b_pyramid_gets_libx264_decode_order() {
        // I0 P4 B2 b1 b3 P8 B6 b5 b7: libx264's decode times are the presentation times two
        // frames back, from the third frame on.
        let pts = [0, 4, 2, 1, 3, 8, 6, 5, 7];
        let dts = run(2, &pts);
        assert_eq!(frames(&dts[2..]), [0, 1, 2, 3, 4, 5, 6]);
        // The first three: the keyframe's presentation time, then a millisecond apart: P4
        // must leave room for the three frames its POC says are still to come.
        assert_eq!(dts[..3], [0, 90, 180]);
    }

    #[test]
    fn a_frame_next_in_output_order_is_decoded_when_presented() {
        // Depth 2 declared: I0 P1 then B-frames. P1 has no frame missing before it.
        let dts = run(2, &[0, 1, 3, 2, 5, 4]);
        assert_eq!(frames(&dts[..2]), [0, 1]);
        assert_valid(&[0, 1, 3, 2, 5, 4], &dts);
    }

    #[test]
    fn a_lost_frame_keeps_order() {
        // b1 lost: the buffer releases the next picture one frame early, still in order.
        let pts = [0, 4, 2, 3, 8, 6, 5, 7, 12, 10, 9, 11];
        assert_valid(&pts, &run(2, &pts));
    }

    #[test]
    fn an_undeclared_depth_is_learned() {
        // Declared 0, reorders 1 deep: one frame is late, then the depth is right.
        let pts = [0, 2, 1, 4, 3, 6, 5];
        let mut extractor = DtsExtractor::new(0, 1);
        let dts: Vec<i64> = pts
            .iter()
            .enumerate()
            .map(|(i, frame)| extractor.decode_time(frame * 3600, i == 0, None).unwrap())
            .collect();
        assert_eq!(extractor.depth(), 1);
        assert!(dts.windows(2).all(|pair| pair[0] <= pair[1]));
        let late: Vec<usize> = (0..pts.len()).filter(|&i| dts[i] > pts[i] * 3600).collect();
        assert_eq!(late, [2]);
    }

    #[test]
    fn frames_before_the_first_keyframe_teach_nothing() {
        // Joined mid-GOP: P8 B6 b5 b7, then the keyframe at 9 and its group.
        let mut extractor = DtsExtractor::new(2, 1);
        for pts in [8, 6, 5, 7] {
            extractor.decode_time(pts * 3600, false, Some(pts));
        }
        assert_eq!(extractor.depth(), 2);
        let group = [9, 13, 11, 10, 12, 17, 15, 14, 16];
        let dts: Vec<i64> = group
            .iter()
            .enumerate()
            .map(|(i, &pts)| extractor.decode_time(pts * 3600, i == 0, Some(pts - 9)).unwrap())
            .collect();
        assert_valid(&group, &dts);
        assert_eq!(frames(&dts[2..]), [9, 10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn leading_pictures_of_the_open_gop_joined_at_are_skipped() {
        // Joined at a CRA (POC 8) whose RASL pictures (POC 6, 7) refer to the GOP before.
        let mut extractor = DtsExtractor::new(2, 1);
        assert_eq!(extractor.decode_time(8 * 3600, true, Some(8)), Some(8 * 3600));
        assert_eq!(extractor.decode_time(6 * 3600, false, Some(6)), None);
        assert_eq!(extractor.decode_time(7 * 3600, false, Some(7)), None);
        let after: Vec<i64> =
            [12, 10, 9, 11].iter().map(|&pts| extractor.decode_time(pts * 3600, false, Some(pts)).unwrap()).collect();
        assert_valid(&[12, 10, 9, 11], &after);
        // The next CRA's leading pictures refer to this GOP, which the player has.
        extractor.decode_time(16 * 3600, true, Some(16));
        assert!(extractor.decode_time(14 * 3600, false, Some(14)).is_some());
    }

    #[test]
    fn a_restarted_clock_starts_over() {
        let mut extractor = DtsExtractor::new(1, 1);
        for pts in [900_000, 907_200, 903_600] {
            extractor.decode_time(pts, pts == 900_000, None);
        }
        assert_eq!(extractor.decode_time(0, true, Some(0)), Some(0));
        // Hostile times and counts: no overflow, no panic.
        for (pts, poc) in [(i64::MAX, i64::MIN), (i64::MIN, i64::MAX), (0, 0), (i64::MAX, i64::MAX)] {
            extractor.decode_time(pts, poc == 0, Some(poc));
        }
    }
}
