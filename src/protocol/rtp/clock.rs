//! Between the hub's millisecond timestamps and RTP's media clocks (90 kHz for video, the
//! sample rate for audio, RFC 3551), both ways.

/// Millisecond timestamps to an RTP clock that starts at a random offset (RFC 3550, 5.1: the
/// initial timestamp is random).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpClock {
    pub rate: u32,
    pub offset: u32,
}

impl RtpClock {
    pub fn new(rate: u32, offset: u32) -> Self {
        RtpClock { rate, offset }
    }

    /// The RTP time of `ms`. The product is taken in 64 bits and wraps to 32 as RTP time does,
    /// so a timestamp past 2^32 / rate seconds continues modulo 2^32 like any RTP clock.
    pub fn rtp_time(&self, ms: i64) -> u32 {
        let ticks = ms.wrapping_mul(i64::from(self.rate)).div_euclid(1000);
        self.offset.wrapping_add(ticks as u32)
    }
}

/// RTP timestamps of one source back to milliseconds from its first packet, across the 32-bit
/// wraparound. A packet a little older than the first (reordering) maps to 0 rather than
/// wrapping to a huge timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Unwrapper {
    rate: u32,
    /// The first timestamp seen, and the extended (64-bit) value of the last one.
    first: Option<u32>,
    last: u32,
    extended: i64,
}

impl Unwrapper {
    pub fn new(rate: u32) -> Self {
        Unwrapper { rate: rate.max(1), first: None, last: 0, extended: 0 }
    }

    /// The clock's ticks since the first packet, extended to 64 bits.
    pub fn ticks(&mut self, timestamp: u32) -> i64 {
        if self.first.is_none() {
            self.first = Some(timestamp);
            self.last = timestamp;
            return 0;
        }
        // The shorter way round the circle: forward up to 2^31 ticks, else backward.
        self.extended += i64::from(timestamp.wrapping_sub(self.last) as i32);
        self.last = timestamp;
        self.extended
    }

    /// `ticks` in milliseconds, clamped to the u32 the hub carries.
    pub fn to_ms(&self, ticks: i64) -> u32 {
        let ms = ticks.max(0).saturating_mul(1000) / i64::from(self.rate);
        // Wraps like the FLV/RTMP timestamps it becomes, after 49 days.
        ms as u32
    }

    /// Milliseconds since the first packet for `timestamp`.
    pub fn ms(&mut self, timestamp: u32) -> u32 {
        let ticks = self.ticks(timestamp);
        self.to_ms(ticks)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_to_rtp_time_wraps() {
        let clock = RtpClock::new(90_000, u32::MAX - 89);
        assert_eq!(clock.rtp_time(0), u32::MAX - 89);
        assert_eq!(clock.rtp_time(1), 0);
        assert_eq!(clock.rtp_time(-1), u32::MAX - 179);
        assert_eq!(RtpClock::new(44_100, 0).rtp_time(1000), 44_100);
    }

    #[test]
    fn unwrapping_crosses_the_wrap_and_tolerates_reordering() {
        let mut unwrap = Unwrapper::new(90_000);
        assert_eq!(unwrap.ms(u32::MAX - 8_999), 0);
        assert_eq!(unwrap.ms((u32::MAX - 8_999).wrapping_add(90_000)), 1000);
        // Older than the first packet: clamped, not wrapped.
        let mut reordered = Unwrapper::new(90_000);
        reordered.ms(1_000_000);
        assert_eq!(reordered.ms(1_000_000 - 900), 0);
        assert_eq!(reordered.ms(1_000_000 + 9_000), 100);
    }

    #[test]
    fn round_trip_through_the_clock() {
        let clock = RtpClock::new(48_000, 0x7fff_ff00);
        let mut unwrap = Unwrapper::new(48_000);
        for ms in [0i64, 20, 40, 1_000, 100_000, 10_000_000] {
            assert_eq!(i64::from(unwrap.ms(clock.rtp_time(ms))), ms);
        }
    }
}
