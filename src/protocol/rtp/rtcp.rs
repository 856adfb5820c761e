//! RTCP (RFC 3550, 6): the sender report this server sends players, so they can line audio
//! up with video (each track's RTP time against one wall clock), and the compound packets
//! peers send (receiver reports, SDES, BYE), which are checked and otherwise ignored.

use super::RtpError;

const VERSION: u8 = 2;
/// RTCP packet type of a sender report.
pub const SENDER_REPORT: u8 = 200;
/// RTCP packet type of a receiver report.
pub const RECEIVER_REPORT: u8 = 201;
/// A sender report without report blocks: header, SSRC, NTP time, RTP time, two counts.
pub const SENDER_REPORT_LEN: usize = 28;

/// Appends a sender report without report blocks (this server receives nothing from players
/// to report on). `ntp` is the 64-bit NTP time (seconds since 1900 in the high 32 bits) of
/// the same instant as `rtp_time`.
pub fn sender_report(ssrc: u32, ntp: u64, rtp_time: u32, packets: u32, octets: u32, out: &mut Vec<u8>) {
    out.push(VERSION << 6);
    out.push(SENDER_REPORT);
    // Length in 32-bit words, minus one.
    out.extend_from_slice(&((SENDER_REPORT_LEN / 4 - 1) as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_time.to_be_bytes());
    out.extend_from_slice(&packets.to_be_bytes());
    out.extend_from_slice(&octets.to_be_bytes());
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    pub packet_type: u8,
    /// The five bits after version and padding: report count, SDES chunk count...
    pub count: u8,
    /// What follows the 4-byte header.
    pub body: &'a [u8],
}

/// Splits a compound RTCP packet into its packets, checking each header and length (RFC 3550,
/// A.2). A peer's reports are only counted and skipped; this is what makes that safe.
pub fn check_compound(mut data: &[u8]) -> Result<Vec<RtcpPacket<'_>>, RtpError> {
    let mut packets = Vec::new();
    if data.is_empty() {
        return Err(RtpError::Rtcp("empty packet"));
    }
    while !data.is_empty() {
        let header = data.get(..4).ok_or(RtpError::Rtcp("truncated header"))?;
        if header[0] >> 6 != VERSION {
            return Err(RtpError::Rtcp("version is not 2"));
        }
        let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let len = 4 * (words + 1);
        let packet = data.get(..len).ok_or(RtpError::Rtcp("length past the end"))?;
        packets.push(RtcpPacket { packet_type: header[1], count: header[0] & 0x1f, body: &packet[4..] });
        data = &data[len..];
    }
    Ok(packets)
}

/// The NTP time (RFC 5905's 64-bit format) of a Unix time in microseconds, for
/// [`sender_report`]: the driver reads the wall clock, this only converts.
pub fn ntp_from_unix_micros(micros: u64) -> u64 {
    /// Seconds from 1900 to 1970.
    const UNIX_EPOCH_IN_NTP: u64 = 2_208_988_800;
    let seconds = micros / 1_000_000 + UNIX_EPOCH_IN_NTP;
    let fraction = ((micros % 1_000_000) << 32) / 1_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_report_bytes_and_parse_back() {
        let mut out = Vec::new();
        sender_report(0x0102_0304, 0xe000_0000_8000_0000, 90_000, 10, 1000, &mut out);
        assert_eq!(out.len(), SENDER_REPORT_LEN);
        assert_eq!(&out[..8], [0x80, 200, 0, 6, 1, 2, 3, 4]);
        assert_eq!(&out[8..16], [0xe0, 0, 0, 0, 0x80, 0, 0, 0]);
        let packets = check_compound(&out).unwrap();
        assert_eq!(packets.len(), 1);
        assert_eq!((packets[0].packet_type, packets[0].body.len()), (SENDER_REPORT, 24));
    }

    #[test]
    fn compound_receiver_report_and_sdes_are_split_and_bad_ones_refused() {
        // ffmpeg's receiver report (one block) then an SDES with a CNAME.
        let mut compound = vec![0x81, 201, 0, 7];
        compound.extend_from_slice(&[0; 28]);
        compound.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'a', 0]);
        let packets = check_compound(&compound).unwrap();
        assert_eq!(packets.iter().map(|p| (p.packet_type, p.count)).collect::<Vec<_>>(), [(201, 1), (202, 1)]);
        assert!(check_compound(&compound[..compound.len() - 1]).is_err());
        assert!(check_compound(&[0x40, 201, 0, 0]).is_err());
        assert!(check_compound(&[]).is_err());
    }

    #[test]
    fn ntp_time_of_the_unix_epoch_and_a_half_second() {
        assert_eq!(ntp_from_unix_micros(0), 2_208_988_800 << 32);
        assert_eq!(ntp_from_unix_micros(1_500_000), ((2_208_988_801) << 32) | 0x8000_0000);
    }
}
