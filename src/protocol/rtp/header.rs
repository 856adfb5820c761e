//! The RTP fixed header (RFC 3550, 5.1), written by the packetizers and read, with its
//! CSRC list, extension and padding skipped, by the depacketizers.

use super::RtpError;

/// What of an RTP header this server uses. CSRCs and header extensions are skipped when read
/// and never written: a relay has no mixer to name and no extension to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Set on the last packet of an access unit (video) or of a fragmented audio frame.
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed RTP packet: its header and the payload with padding removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub payload: &'a [u8],
}

impl RtpHeader {
    /// The fixed header's length, which is all this server writes.
    pub const LEN: usize = 12;
    const VERSION: u8 = 2;

    /// Appends the 12-byte header (version 2, no padding, extension or CSRCs).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(Self::VERSION << 6);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

impl<'a> RtpPacket<'a> {
    /// Parses one whole RTP packet (a UDP datagram or an interleaved frame's payload).
    pub fn parse(packet: &'a [u8]) -> Result<Self, RtpError> {
        let fixed: &[u8; RtpHeader::LEN] =
            packet.get(..RtpHeader::LEN).and_then(|h| h.try_into().ok()).ok_or(RtpError::TooShort)?;
        let version = fixed[0] >> 6;
        if version != RtpHeader::VERSION {
            return Err(RtpError::Version(version));
        }
        let padding = fixed[0] & 0x20 != 0;
        let extension = fixed[0] & 0x10 != 0;
        let csrc_count = usize::from(fixed[0] & 0x0f);
        let header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7f,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };
        let mut start = RtpHeader::LEN + 4 * csrc_count;
        if extension {
            // 16-bit profile, then the extension's length in 32-bit words.
            let words = packet.get(start + 2..start + 4).ok_or(RtpError::TooShort)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = packet.len();
        if padding {
            // The last byte counts the padding, itself included.
            let count = usize::from(*packet.last().ok_or(RtpError::TooShort)?);
            end = end.checked_sub(count).filter(|_| count > 0).ok_or(RtpError::BadPadding)?;
        }
        let payload = packet.get(start..end).ok_or(RtpError::TooShort)?;
        Ok(RtpPacket { header, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = RtpHeader { marker: true, payload_type: 96, sequence: 0xfffe, timestamp: 0x8000_0001, ssrc: 7 };
        let mut bytes = Vec::new();
        header.write(&mut bytes);
        assert_eq!(bytes, [0x80, 0xe0, 0xff, 0xfe, 0x80, 0, 0, 1, 0, 0, 0, 7]);
        bytes.extend_from_slice(b"abc");
        assert_eq!(RtpPacket::parse(&bytes), Ok(RtpPacket { header, payload: b"abc" }));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        // CC=1, X=1, P=1: one CSRC, a one-word extension, payload "hi", 2 bytes of padding.
        let bytes = [
            0xb1, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, // fixed header
            9, 9, 9, 9, // CSRC
            0xbe, 0xde, 0, 1, 1, 2, 3, 4, // extension: profile, 1 word
            b'h', b'i', 0, 2, // payload and padding
        ];
        let packet = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(packet.payload, b"hi");
        assert_eq!(packet.header.payload_type, 0x60);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(RtpPacket::parse(&[0x80, 0x60, 0, 1]), Err(RtpError::TooShort));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        // Padding longer than the packet, and a zero padding count.
        let mut padded = vec![0xa0, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 200];
        assert_eq!(RtpPacket::parse(&padded), Err(RtpError::BadPadding));
        *padded.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&padded), Err(RtpError::BadPadding));
        // An extension that runs past the end.
        let extended = [0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 9];
        assert_eq!(RtpPacket::parse(&extended), Err(RtpError::TooShort));
    }
}
