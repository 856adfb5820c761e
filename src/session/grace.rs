//! Publisher reconnect grace (`republish_grace`, docs/hooks.md "Publisher reconnect grace"):
//! a publisher whose connection drops (closed without unpublishing, an error, silence past
//! `idle_timeout`) leaves its stream parked in the hub, players attached and untold, and the
//! next admitted publisher of the stream, on any shard, continues it (`hub::ShardHub::adopt`).
//! An unpublish, a kick, a refusal or a reply's limit ends the stream at once, as without a
//! grace.
//!
//! - [`Grace`]: the parked publish's deadline, one more timer of the lifecycle's
//!   (`Lifecycle::poll_timeout` and `handle_timeout`, `now` a parameter).
//! - [`Seam`]: the timestamps of a publisher that continues a parked stream, shifted so its
//!   first packet follows the last one the stream carried.
//! - [`hold`]: what the dropped publisher's session does meanwhile: it waits for the
//!   deadline, an adoption, a kick or shutdown, then ends the parked publish accordingly.

use std::time::{Duration, Instant};

use super::lifecycle::{CloseReason, Lifecycle, taken_over};
use super::rtmp::sleep_until_some;

/// A parked publish's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// When the connection dropped: the publish's end, should nobody continue it.
    since: Instant,
    deadline: Instant,
}

impl Grace {
    /// Parked at `now` for `period`.
    pub fn new(now: Instant, period: Duration) -> Grace {
        Grace { since: now, deadline: now + period }
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    /// When the grace ends with nobody back.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }
}

/// How far below the stream's last timestamp a resumed publisher's packet would be pulled
/// up to it, at most: past this much progress the seam is behind it, and a comparison on the
/// wrapping 32-bit clock would turn around after about 24 days.
const SEAM_SETTLED_MS: u32 = 10_000;

/// Where a publisher's timestamps land on its stream's timeline. A new publish keeps them; a
/// publish that adopted a parked stream shifts them so its first packet comes 1 ms after the
/// last one the stream carried, whatever its encoder's clock starts at, and none lands
/// before that last one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seam {
    /// Added to every timestamp (wrapping, as RTMP's 32-bit milliseconds do).
    offset: u32,
    /// Until the first packet of a resumed publish: the stream's last timestamp, which that
    /// packet follows.
    resume_after: Option<u32>,
    /// While the resumed publish is near the seam: the stream's last timestamp before it,
    /// which none of its packets may go below (audio and video arrive slightly out of order).
    floor: Option<u32>,
    /// The latest timestamp mapped: where the next seam starts.
    last: u32,
}

impl Seam {
    /// A publish that continues a stream whose last timestamp was `last`.
    pub fn after(last: u32) -> Seam {
        Seam { offset: 0, resume_after: Some(last), floor: Some(last), last }
    }

    /// The stream timestamp of the publisher's `timestamp`.
    pub fn map(&mut self, timestamp: u32) -> u32 {
        if let Some(last) = self.resume_after.take() {
            self.offset = last.wrapping_add(1).wrapping_sub(timestamp);
        }
        let mut mapped = timestamp.wrapping_add(self.offset);
        if let Some(floor) = self.floor {
            let ahead = mapped.wrapping_sub(floor) as i32;
            if ahead < 0 {
                mapped = floor;
            } else if ahead as u32 > SEAM_SETTLED_MS {
                self.floor = None;
            }
        }
        if (mapped.wrapping_sub(self.last) as i32) > 0 {
            self.last = mapped;
        }
        mapped
    }

    /// The latest stream timestamp so far.
    pub fn last(&self) -> u32 {
        self.last
    }
}

/// Holds a parked publish ([`Lifecycle::park`]) until its grace ends, a new publisher adopts
/// it, an operator kicks the session or the server shuts down, and ends it accordingly
/// ([`Lifecycle::end_parked`]). The reply's limits keep running meanwhile: `max_duration`
/// still ends the publish when it is reached.
pub(crate) async fn hold(lifecycle: &mut Lifecycle) {
    let context = lifecycle.context().clone();
    let entry = lifecycle.entry().clone();
    // Raised by the publisher that adopts the stream.
    let adopted = lifecycle.eviction();
    let outcome = loop {
        let due = lifecycle.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = sleep_until_some(due) => {
                if let Some(ended) = lifecycle.handle_timeout(Instant::now()) {
                    break ended;
                }
            }
            _ = taken_over(adopted.clone()) => break CloseReason::TakenOver,
            _ = context.shutdown.wait() => break CloseReason::Shutdown,
            _ = entry.kicked() => break CloseReason::AdminKick,
        }
    };
    lifecycle.end_parked(outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_expires_at_its_deadline_on_the_clock_it_is_given() {
        let t0 = Instant::now();
        let grace = Grace::new(t0, Duration::from_secs(10));
        assert_eq!((grace.since(), grace.poll_timeout()), (t0, t0 + Duration::from_secs(10)));
        assert!(!grace.expired(t0 + Duration::from_millis(9_999)));
        assert!(grace.expired(t0 + Duration::from_secs(10)));
        assert!(grace.expired(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn a_new_publish_keeps_its_timestamps() {
        let mut seam = Seam::default();
        assert_eq!([0, 40, 33, 80].map(|t| seam.map(t)), [0, 40, 33, 80]);
        assert_eq!(seam.last(), 80, "the latest, not the last to arrive");
    }

    #[test]
    fn a_resumed_publish_follows_the_streams_last_timestamp_whatever_its_clock() {
        // An encoder restarted from zero, and one whose clock kept running far ahead.
        for first in [0, 3_600_000] {
            let mut seam = Seam::after(5_000);
            let mapped: Vec<u32> = [0, 0, 40, 23, 80].iter().map(|t| seam.map(first + t)).collect();
            assert_eq!(mapped, [5_001, 5_001, 5_041, 5_024, 5_081], "first {first}");
            assert_eq!(seam.last(), 5_081);
        }
    }

    #[test]
    fn a_resumed_publish_never_goes_below_the_seam_and_settles_past_it() {
        let mut seam = Seam::after(5_000);
        assert_eq!(seam.map(100), 5_001);
        // Audio from before the first video frame: pulled up to the seam, not before it.
        assert_eq!(seam.map(50), 5_000);
        assert_eq!(seam.map(20_100), 25_001);
        // Far past the seam a lower timestamp is the publisher's own business.
        assert_eq!(seam.map(80), 4_981);
    }

    #[test]
    fn timestamps_wrap_around_the_32_bit_clock_across_a_seam() {
        let mut seam = Seam::after(u32::MAX - 10);
        assert_eq!(seam.map(0), u32::MAX - 9);
        assert_eq!(seam.map(20), 10);
        assert_eq!(seam.last(), 10);
        let mut next = Seam::after(seam.last());
        assert_eq!(next.map(7), 11);
    }
}
