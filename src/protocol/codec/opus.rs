//! Opus: the `OpusHead` identification header (RFC 7845, 5.1) an E-RTMP Opus sequence start
//! and an MP4 `dOps` box carry.

/// What an `OpusHead` says that a stream description needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u8,
}

impl OpusHead {
    /// Opus always decodes at this rate, whatever the input was.
    pub const OUTPUT_SAMPLE_RATE: u32 = 48_000;

    /// `None` when the bytes do not start with an `OpusHead`: a description is optional data.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        match payload {
            [b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', _version, channels, ..] => {
                Some(OpusHead { channels: *channels })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_head() {
        // Version 1, stereo, pre-skip 312, input 48 kHz, gain 0, mapping family 0.
        let head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";
        assert_eq!(OpusHead::parse(head), Some(OpusHead { channels: 2 }));
        assert_eq!(OpusHead::parse(b"OpusTags"), None);
        assert_eq!(OpusHead::parse(b"OpusHead\x01"), None);
    }
}
