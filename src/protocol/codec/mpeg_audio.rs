//! MPEG audio (MP3): the 4-byte frame header (ISO/IEC 11172-3, 2.4.1.3), the only place an MP3
//! stream states its real rate and channel mode; it has no configuration record.

/// What an MPEG audio frame header says that a stream description needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegAudioHeader {
    pub sample_rate: u32,
    pub channels: u8,
}

impl MpegAudioHeader {
    /// `None` when the bytes do not start with a frame header (sync word, a known version and
    /// rate): a description is optional data.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let [0xff, second, third, fourth, ..] = *frame else {
            return None;
        };
        if second & 0xe0 != 0xe0 {
            return None;
        }
        let mpeg1_rate = match (third >> 2) & 0x03 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let sample_rate = match (second >> 3) & 0x03 {
            0b11 => mpeg1_rate,
            0b10 => mpeg1_rate / 2,
            0b00 => mpeg1_rate / 4,
            _ => return None,
        };
        let channels = if fourth >> 6 == 0b11 { 1 } else { 2 };
        Some(MpegAudioHeader { sample_rate, channels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers() {
        // libmp3lame at 48 kHz, joint stereo.
        assert_eq!(
            MpegAudioHeader::parse(&[0xff, 0xfb, 0x94, 0x64]),
            Some(MpegAudioHeader { sample_rate: 48_000, channels: 2 })
        );
        // MPEG-2 (half rate), mono.
        assert_eq!(
            MpegAudioHeader::parse(&[0xff, 0xf3, 0x80, 0xc4]),
            Some(MpegAudioHeader { sample_rate: 22_050, channels: 1 })
        );
        // No sync word, reserved rate, reserved version.
        assert_eq!(MpegAudioHeader::parse(&[0x00, 0xfb, 0x94, 0x64]), None);
        assert_eq!(MpegAudioHeader::parse(&[0xff, 0xfb, 0x9c, 0x64]), None);
        assert_eq!(MpegAudioHeader::parse(&[0xff, 0xeb, 0x94, 0x64]), None);
        assert_eq!(MpegAudioHeader::parse(&[0xff, 0xfb]), None);
    }
}
