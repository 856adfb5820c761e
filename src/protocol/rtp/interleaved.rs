//! RTSP's interleaved framing (RFC 2326, 10.12): on the RTSP TCP connection each RTP or RTCP
//! packet is sent as `$`, a one-byte channel, a 16-bit length, then the packet.
//!
//! The stream's shared packets are built as interleaved frames on each track's usual channel
//! (see [`super::PacketList`]); a player on another channel replaces the first two bytes.

/// The byte that starts an interleaved frame where a request line would otherwise start.
pub const MAGIC: u8 = b'$';
/// `$`, channel, 16-bit length.
pub const HEADER_LEN: usize = 4;

/// The 4 bytes before a packet of `len` bytes on `channel`. `len` is at most 65535 by
/// construction: every packet this server builds is bounded by its MTU.
pub fn header(channel: u8, len: u16) -> [u8; HEADER_LEN] {
    let [high, low] = len.to_be_bytes();
    [MAGIC, channel, high, low]
}

/// An interleaved frame at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub channel: u8,
    /// The packet's length, after the 4-byte header.
    pub len: usize,
}

impl Frame {
    /// The frame's whole length, header included.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Reads the frame header at the front of `buf` (which starts with [`MAGIC`]): `None` until
/// the 4 header bytes are there. Whether the packet itself has arrived is the caller's check
/// against [`Frame::total_len`].
pub fn check(buf: &[u8]) -> Option<Frame> {
    match buf {
        [MAGIC, channel, high, low, ..] => {
            Some(Frame { channel: *channel, len: usize::from(u16::from_be_bytes([*high, *low])) })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let bytes = header(3, 0x1234);
        assert_eq!(bytes, [b'$', 3, 0x12, 0x34]);
        let frame = check(&bytes).unwrap();
        assert_eq!(frame, Frame { channel: 3, len: 0x1234 });
        assert_eq!(frame.total_len(), 0x1238);
        assert_eq!(check(&bytes[..3]), None);
    }
}
