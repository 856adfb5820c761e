//! The session terms a callback's JSON reply set (docs/hooks.md, "Limits in the reply"),
//! enforced: a deadline (`max_duration`) and a publisher's bitrate cap (`max_bitrate_kbps`),
//! both as sans-IO timers. [`Terms::poll_timeout`] says when they next need the clock,
//! [`Terms::handle_timeout`] is given the time and answers why the session must end, if it
//! must. The lifecycle owns one per connection and folds it into its own timer; a test hands
//! it any instant.
//!
//! The bitrate is the media a publisher sends (FLV tag bodies, audio, video and data), averaged
//! over consecutive windows of [`BITRATE_WINDOW`] from the publish's start: long enough that
//! a keyframe or the first GOP's burst does not trip it, short enough that an over-rate
//! publisher is gone within seconds.

use std::time::{Duration, Instant};

/// How long a publisher's bitrate is averaged over before it is compared with its cap.
pub const BITRATE_WINDOW: Duration = Duration::from_secs(5);

/// One connection's terms: none until a reply sets some.
#[derive(Debug, Default)]
pub struct Terms {
    /// When the session ends, and the `max_duration` that set it (for the reason).
    deadline: Option<(Instant, Duration)>,
    /// The lowest cap any reply set; applies to a publish from its start.
    max_kbps: Option<u64>,
    /// The current window, while a capped publish runs.
    window: Option<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    bytes: u64,
}

impl Terms {
    /// The session may last `max` from `now`; an earlier deadline already set stays.
    pub fn limit_duration(&mut self, now: Instant, max: Duration) {
        let end = now.checked_add(max).unwrap_or(now);
        if self.deadline.is_none_or(|(current, _)| end < current) {
            self.deadline = Some((end, max));
        }
    }

    /// A publisher may send at most `kbps`; a lower cap already set stays.
    pub fn cap_bitrate(&mut self, kbps: u64) {
        self.max_kbps = Some(self.max_kbps.map_or(kbps, |current| current.min(kbps)));
    }

    /// A publish starts at `now`: its first window opens when a cap is set.
    pub fn start_publish(&mut self, now: Instant) {
        self.window = self.max_kbps.map(|_| Window { start: now, bytes: 0 });
    }

    /// The publish ended: nothing more is metered.
    pub fn stop_publish(&mut self) {
        self.window = None;
    }

    /// Counts `bytes` of media from the publisher.
    pub fn count(&mut self, bytes: usize) {
        if let Some(window) = &mut self.window {
            window.bytes += bytes as u64;
        }
    }

    /// When [`Self::handle_timeout`] is next due: the deadline or the current window's end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadline.map(|(end, _)| end);
        let window_end = self.window.as_ref().map(|w| w.start + BITRATE_WINDOW);
        match (deadline, window_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Checks the terms at `now`: why the session must end (the deadline passed, or the
    /// window that ended averaged over the cap), or `None` and the next window opens.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<String> {
        if let Some((end, max)) = self.deadline
            && now >= end
        {
            return Some(format!("max_duration reached ({})", seconds(max)));
        }
        let (Some(window), Some(max_kbps)) = (&mut self.window, self.max_kbps) else { return None };
        // A late wake-up averages over the time that really passed.
        let elapsed = now.saturating_duration_since(window.start);
        if elapsed < BITRATE_WINDOW {
            return None;
        }
        let kbps = window.bytes as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64();
        if kbps > max_kbps as f64 {
            return Some(format!(
                "max_bitrate_kbps exceeded ({} kbit/s over {}, limit {max_kbps})",
                kbps.round(),
                seconds(elapsed)
            ));
        }
        *window = Window { start: now, bytes: 0 };
        None
    }
}

/// `2s`, `2.5s`: how a reason words a duration.
fn seconds(duration: Duration) -> String {
    let secs = (duration.as_secs_f64() * 10.0).round() / 10.0;
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_terms_never_wake() {
        let mut terms = Terms::default();
        terms.start_publish(Instant::now());
        terms.count(1_000_000);
        assert_eq!(terms.poll_timeout(), None);
        assert_eq!(terms.handle_timeout(Instant::now() + Duration::from_secs(3600)), None);
    }

    #[test]
    fn the_deadline_ends_the_session_when_it_passes() {
        let start = Instant::now();
        let mut terms = Terms::default();
        terms.limit_duration(start, Duration::from_secs(2));
        assert_eq!(terms.poll_timeout(), Some(start + Duration::from_secs(2)));
        assert_eq!(terms.handle_timeout(start + Duration::from_millis(1999)), None);
        let reason = terms.handle_timeout(start + Duration::from_secs(2)).expect("ended at 2 s");
        assert_eq!(reason, "max_duration reached (2s)");
    }

    #[test]
    fn the_earliest_deadline_and_the_lowest_cap_win() {
        let start = Instant::now();
        let mut terms = Terms::default();
        terms.limit_duration(start, Duration::from_secs(10));
        terms.limit_duration(start + Duration::from_secs(1), Duration::from_secs(3));
        terms.limit_duration(start + Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(terms.poll_timeout(), Some(start + Duration::from_secs(4)));
        terms.cap_bitrate(100);
        terms.cap_bitrate(500);
        assert_eq!(terms.max_kbps, Some(100));
    }

    #[test]
    fn a_publisher_over_its_cap_is_ended_after_a_window() {
        let start = Instant::now();
        let mut terms = Terms::default();
        terms.cap_bitrate(100);
        terms.start_publish(start);
        assert_eq!(terms.poll_timeout(), Some(start + BITRATE_WINDOW));
        // 50 kbit/s for the first window: within the cap, a new window opens.
        terms.count(50_000 * 5 / 8);
        let first_end = start + BITRATE_WINDOW;
        assert_eq!(terms.handle_timeout(first_end), None);
        assert_eq!(terms.poll_timeout(), Some(first_end + BITRATE_WINDOW));
        // A burst within a window is averaged, not judged alone: 120 kbit/s over 5 s trips it.
        terms.count(120_000 * 5 / 8);
        assert_eq!(terms.handle_timeout(first_end + Duration::from_secs(4)), None, "early wake-up");
        let reason = terms.handle_timeout(first_end + BITRATE_WINDOW).expect("over the cap");
        assert_eq!(reason, "max_bitrate_kbps exceeded (120 kbit/s over 5s, limit 100)");
    }

    #[test]
    fn a_late_wake_up_averages_over_the_time_that_passed() {
        let start = Instant::now();
        let mut terms = Terms::default();
        terms.cap_bitrate(100);
        terms.start_publish(start);
        // 150 kbit/s worth for 5 s, but judged at 10 s: 75 kbit/s, within the cap.
        terms.count(150_000 * 5 / 8);
        assert_eq!(terms.handle_timeout(start + Duration::from_secs(10)), None);
    }

    #[test]
    fn only_a_publish_is_metered() {
        let start = Instant::now();
        let mut terms = Terms::default();
        terms.cap_bitrate(1);
        terms.count(1_000_000);
        assert_eq!(terms.poll_timeout(), None, "no publish yet");
        terms.start_publish(start);
        terms.stop_publish();
        terms.count(1_000_000);
        assert_eq!(terms.poll_timeout(), None);
        assert_eq!(terms.handle_timeout(start + Duration::from_secs(60)), None);
    }
}
