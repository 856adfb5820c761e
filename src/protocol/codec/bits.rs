//! Reading bit fields: the MSB-first [`BitReader`] with exp-Golomb codes (H.264 9.1) that
//! parameter sets and the `AudioSpecificConfig` are written in, and the removal of the
//! emulation-prevention bytes that H.264 and H.265 insert into NAL units.

use super::CodecError;

/// Strips the `0x03` of every `00 00 03` sequence: the encoder added it so the payload never
/// mimics a start code, and exp-Golomb parsing must not see it.
pub fn remove_emulation_prevention(escaped: &[u8]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(escaped.len());
    let mut zeros = 0;
    for &byte in escaped {
        if zeros >= 2 && byte == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        rbsp.push(byte);
    }
    rbsp
}

/// MSB-first bit reader; every read past the end is `exhausted`, the caller's "truncated".
pub struct BitReader<'a> {
    data: &'a [u8],
    bit_pos: usize,
    exhausted: CodecError,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], exhausted: CodecError) -> Self {
        BitReader { data, bit_pos: 0, exhausted }
    }

    pub fn bits_left(&self) -> usize {
        self.data.len().saturating_mul(8).saturating_sub(self.bit_pos)
    }

    pub fn flag(&mut self) -> Result<bool, CodecError> {
        let byte = self.data.get(self.bit_pos / 8).ok_or(self.exhausted)?;
        let bit = (byte >> (7 - self.bit_pos % 8)) & 1;
        self.bit_pos += 1;
        Ok(bit == 1)
    }

    /// Reads up to 32 bits as an unsigned number.
    pub fn bits(&mut self, count: u32) -> Result<u32, CodecError> {
        debug_assert!(count <= 32);
        let mut value: u64 = 0;
        for _ in 0..count {
            value = (value << 1) | u64::from(self.flag()?);
        }
        u32::try_from(value).map_err(|_| self.exhausted)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let value = self.bits(8)?;
        u8::try_from(value).map_err(|_| self.exhausted)
    }

    pub fn skip(&mut self, count: u32) -> Result<(), CodecError> {
        let count = count as usize;
        if count > self.bits_left() {
            return Err(self.exhausted);
        }
        self.bit_pos += count;
        Ok(())
    }

    /// ue(v): unsigned exp-Golomb.
    pub fn ue(&mut self) -> Result<u32, CodecError> {
        let mut leading_zeros = 0;
        while !self.flag()? {
            leading_zeros += 1;
            // 32 leading zeros would encode a value beyond u32; no valid stream has one.
            if leading_zeros > 31 {
                return Err(self.exhausted);
            }
        }
        let suffix = u64::from(self.bits(leading_zeros)?);
        let value = (1u64 << leading_zeros) - 1 + suffix;
        u32::try_from(value).map_err(|_| self.exhausted)
    }

    /// se(v): signed exp-Golomb, mapped 1, -1, 2, -2...
    pub fn se(&mut self) -> Result<i64, CodecError> {
        let code = i64::from(self.ue()?);
        Ok(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the readers below report when they run out.
    const TOO_SHORT: CodecError = CodecError::Malformed { what: "test bits", reason: "truncated" };

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            remove_emulation_prevention(&[0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x00, 0x03]),
            [0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03]
        );
    }

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00111 -> ue 0, 1, 2, 3, 6
        let data = [0b1010_0110, 0b0100_0011, 0b1000_0000];
        let mut bits = BitReader::new(&data, TOO_SHORT);
        let values: Vec<u32> = (0..5).map(|_| bits.ue().expect("code")).collect();
        assert_eq!(values, [0, 1, 2, 3, 6]);
        let data = [0b0100_1100, 0b1000_0000]; // se: 010 -> 1, 011 -> -1, 00100 -> 2
        let mut bits = BitReader::new(&data, TOO_SHORT);
        assert_eq!(bits.se(), Ok(1));
        assert_eq!(bits.se(), Ok(-1));
        assert_eq!(bits.se(), Ok(2));
        // 32 leading zeros: refused rather than overflowing.
        let mut bits = BitReader::new(&[0, 0, 0, 0, 0xff], TOO_SHORT);
        assert_eq!(bits.ue(), Err(TOO_SHORT));
        // The largest representable code: 31 zeros, a one, 31 ones.
        let mut bits = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe], TOO_SHORT);
        assert_eq!(bits.ue(), Ok(u32::MAX - 1));
    }

    #[test]
    fn fixed_width_fields_and_skips() {
        let data = [0b1011_0011, 0xa5];
        let mut bits = BitReader::new(&data, TOO_SHORT);
        assert_eq!(bits.bits(3), Ok(0b101));
        assert_eq!(bits.bits_left(), 13);
        assert_eq!(bits.skip(5), Ok(()));
        assert_eq!(bits.u8(), Ok(0xa5));
        assert_eq!(bits.skip(1), Err(TOO_SHORT));
        assert_eq!(bits.flag(), Err(TOO_SHORT));
    }
}
