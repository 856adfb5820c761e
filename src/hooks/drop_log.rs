//! Rate-limited reporting of dropped hook deliveries.
//!
//! A hanging receiver behind a busy server drops deliveries by the hundred thousand; one log line
//! each would bury everything else. [`DropLog`] folds the drops of one sink (or of the shards'
//! channel) into at most one report per [`INTERVAL`]: the first drop after a quiet interval is
//! reported at once, later ones wait for the next report, which the owner asks for with
//! [`DropLog::tick`] (or [`DropLog::flush`] when the sink goes). Every drop is in exactly one
//! report, so the reports add up to the `dropped` counters. The clock is a parameter: the owner
//! logs, this only decides when and what.

use std::fmt;
use std::time::{Duration, Instant};

use super::event::EventType;

/// At most one report per this long, per log.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Drops not reported yet, or just taken for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropReport {
    pub dropped: u64,
    /// Per event type, in the order each type was first dropped in the window.
    pub by_type: Vec<(EventType, u64)>,
    pub first_id: String,
    pub last_id: String,
}

impl DropReport {
    fn starting_at(id: &str) -> DropReport {
        DropReport { dropped: 0, by_type: Vec::new(), first_id: id.to_owned(), last_id: String::new() }
    }

    fn add(&mut self, event_type: EventType, id: &str) {
        self.dropped += 1;
        match self.by_type.iter_mut().find(|(t, _)| *t == event_type) {
            Some((_, count)) => *count += 1,
            None => self.by_type.push((event_type, 1)),
        }
        // Reuses the buffer: this runs once per drop.
        self.last_id.clear();
        self.last_id.push_str(id);
    }

    /// `type:count,type:count`: one token, so text logs stay `key=value` splittable.
    pub fn events(&self) -> impl fmt::Display + '_ {
        EventCounts(&self.by_type)
    }
}

struct EventCounts<'a>(&'a [(EventType, u64)]);

impl fmt::Display for EventCounts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (event_type, count)) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{event_type}:{count}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct DropLog {
    last_report: Option<Instant>,
    pending: Option<DropReport>,
}

impl DropLog {
    /// Counts one drop; returns a report when one is due now.
    pub fn record(&mut self, event_type: EventType, id: &str, now: Instant) -> Option<DropReport> {
        self.pending.get_or_insert_with(|| DropReport::starting_at(id)).add(event_type, id);
        self.tick(now)
    }

    /// The drops held back, once an interval has passed since the last report.
    pub fn tick(&mut self, now: Instant) -> Option<DropReport> {
        if self.pending.is_some() && self.interval_over(now) { self.flush(now) } else { None }
    }

    /// The drops held back, now, whatever the interval: the sink or the dispatcher is going.
    pub fn flush(&mut self, now: Instant) -> Option<DropReport> {
        let report = self.pending.take()?;
        self.last_report = Some(now);
        Some(report)
    }

    /// When [`DropLog::tick`] will have a report, if drops are held back.
    pub fn next_report(&self) -> Option<Instant> {
        self.pending.as_ref()?;
        self.last_report?.checked_add(INTERVAL)
    }

    /// Nothing held back and the next drop would be reported at once: the same as a new
    /// `DropLog`, so the owner may forget this one.
    pub fn is_quiet(&self, now: Instant) -> bool {
        self.pending.is_none() && self.interval_over(now)
    }

    fn interval_over(&self, now: Instant) -> bool {
        self.last_report.is_none_or(|at| now.saturating_duration_since(at) >= INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn id(n: u64) -> String {
        format!("evt_{n}")
    }

    #[test]
    fn the_first_drop_is_reported_at_once() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        let report = log.record(EventType::PublishStart, "evt_a", t0).expect("reported at once");
        assert_eq!(report.dropped, 1);
        assert_eq!(report.by_type, [(EventType::PublishStart, 1)]);
        assert_eq!((report.first_id.as_str(), report.last_id.as_str()), ("evt_a", "evt_a"));
        assert_eq!(report.events().to_string(), "publish_start:1");
        assert_eq!(log.next_report(), None);
        assert_eq!(log.tick(t0 + ms(5000)), None);
    }

    #[test]
    fn a_burst_within_a_second_makes_two_reports_that_add_up() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        let mut reports = Vec::new();
        for n in 0..10_000u64 {
            let event_type = if n % 2 == 0 { EventType::ConnectionAccept } else { EventType::ConnectionClose };
            // 10,000 drops spread over 0.9 s.
            reports.extend(log.record(event_type, &id(n), t0 + Duration::from_micros(n * 90)));
            if n % 100 == 0 {
                reports.extend(log.tick(t0 + Duration::from_micros(n * 90)));
            }
        }
        assert_eq!(reports.len(), 1, "only the first so far: {reports:?}");
        assert_eq!(log.next_report(), Some(t0 + INTERVAL));
        assert_eq!(log.tick(t0 + ms(999)), None);
        reports.extend(log.tick(t0 + INTERVAL));
        assert_eq!(reports.len(), 2);
        assert_eq!(reports.iter().map(|r| r.dropped).sum::<u64>(), 10_000);
        let rest = &reports[1];
        assert_eq!(rest.by_type, [(EventType::ConnectionClose, 5000), (EventType::ConnectionAccept, 4999)]);
        assert_eq!((rest.first_id.clone(), rest.last_id.clone()), (id(1), id(9999)));
        assert_eq!(rest.events().to_string(), "connection_close:5000,connection_accept:4999");
        assert_eq!(log.next_report(), None);
    }

    #[test]
    fn sustained_drops_are_reported_once_per_interval() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        let mut reports = Vec::new();
        // 5.5 s of one drop per millisecond, with no ticks: each due report rides on a drop.
        for n in 0..5500u64 {
            reports.extend(log.record(EventType::PlayUpdate, &id(n), t0 + ms(n)));
        }
        assert_eq!(reports.len(), 6);
        reports.extend(log.flush(t0 + ms(5500)));
        assert_eq!(reports.len(), 7);
        assert_eq!(reports.iter().map(|r| r.dropped).sum::<u64>(), 5500);
    }

    #[test]
    fn held_drops_are_flushed_after_a_quiet_interval() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        assert!(log.record(EventType::Connect, "evt_1", t0).is_some());
        assert!(log.record(EventType::Connect, "evt_2", t0 + ms(100)).is_none());
        assert!(log.record(EventType::AuthFailed, "evt_3", t0 + ms(200)).is_none());
        assert!(!log.is_quiet(t0 + ms(2000)), "drops are held back");
        assert_eq!(log.tick(t0 + ms(500)), None);
        let report = log.tick(t0 + ms(1300)).expect("flushed once the interval is over");
        assert_eq!(report.dropped, 2);
        assert_eq!(report.events().to_string(), "connect:1,auth_failed:1");
        assert_eq!((report.first_id.as_str(), report.last_id.as_str()), ("evt_2", "evt_3"));
        // The flush was a report: a drop right after it waits for the next interval.
        assert!(log.record(EventType::Connect, "evt_4", t0 + ms(1400)).is_none());
        assert_eq!(log.next_report(), Some(t0 + ms(2300)));
        assert_eq!(log.tick(t0 + ms(2300)).map(|r| r.dropped), Some(1));
        assert!(!log.is_quiet(t0 + ms(2400)));
        assert!(log.is_quiet(t0 + ms(3300)));
        // Quiet again: the next drop is reported at once.
        assert_eq!(log.record(EventType::Connect, "evt_5", t0 + ms(3300)).map(|r| r.dropped), Some(1));
    }

    #[test]
    fn flush_reports_what_is_held_back_whatever_the_time() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        assert_eq!(log.flush(t0), None, "nothing to report");
        assert!(log.record(EventType::StreamCreate, "evt_1", t0).is_some());
        assert!(log.record(EventType::StreamDelete, "evt_2", t0 + ms(1)).is_none());
        assert!(log.record(EventType::StreamDelete, "evt_3", t0 + ms(2)).is_none());
        let report = log.flush(t0 + ms(3)).expect("held drops");
        assert_eq!(report.dropped, 2);
        assert_eq!(report.by_type, [(EventType::StreamDelete, 2)]);
        assert_eq!(log.flush(t0 + ms(4)), None, "each drop is reported once");
        assert_eq!(log.next_report(), None);
    }
}
