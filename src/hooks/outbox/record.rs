//! One record of an outbox segment, as bytes: sans-IO, the segment files are `sink.rs`'s.
//!
//! ```text
//! len u32 LE | crc32 u32 LE | kind u8 | number u64 LE | payload (len bytes)
//! ```
//!
//! `crc32` (IEEE) covers `kind`, `number` and the payload, so a record half written when the
//! process or the machine died (a torn tail) reads as [`Error::Corrupt`] or
//! [`Error::Incomplete`], never as a different record. `kind` is an event (its number, the
//! event's stored form as payload) or an acknowledgement (the number delivered, no payload).

use thiserror::Error;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 4 + 4 + 1 + 8;

/// The largest payload accepted: events are a few KiB (clients' strings are capped before any
/// event sees them), so a larger length is damage, not a record.
pub const MAX_PAYLOAD: usize = 16 << 20;

const KIND_EVENT: u8 = 1;
const KIND_ACK: u8 = 2;

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// Event `number`, in its stored form (`stored.rs`).
    Event { number: u64, payload: &'a [u8] },
    /// Event `number` is done with: delivered, or refused for good by the receiver.
    Ack { number: u64 },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// More bytes are needed; at the end of a file, a torn tail.
    #[error("incomplete record")]
    Incomplete,
    /// Not a record: a torn or damaged tail, or not an outbox file at all.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// Appends the record to `out`.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let (kind, number, payload): (u8, u64, &[u8]) = match record {
        Record::Event { number, payload } => (KIND_EVENT, *number, payload),
        Record::Ack { number } => (KIND_ACK, *number, &[]),
    };
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The whole length of the record at the start of `bytes`, from its header alone (a cheap check
/// before [`parse`]: how much to read).
pub fn check(bytes: &[u8]) -> Result<usize, Error> {
    let Some(len) = bytes.get(..4) else { return Err(Error::Incomplete) };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(Error::Corrupt("length past the largest record"));
    }
    Ok(HEADER_LEN + len)
}

/// The record at the start of `bytes` and its length.
pub fn parse(bytes: &[u8]) -> Result<(Record<'_>, usize), Error> {
    let total = check(bytes)?;
    let Some(record) = bytes.get(..total) else { return Err(Error::Incomplete) };
    let stored_crc = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    if crc32(&record[8..]) != stored_crc {
        return Err(Error::Corrupt("checksum mismatch"));
    }
    let mut number = [0; 8];
    number.copy_from_slice(&record[9..HEADER_LEN]);
    let number = u64::from_le_bytes(number);
    let payload = &record[HEADER_LEN..];
    match record[8] {
        KIND_EVENT => Ok((Record::Event { number, payload }, total)),
        KIND_ACK if payload.is_empty() => Ok((Record::Ack { number }, total)),
        _ => Err(Error::Corrupt("unknown record kind")),
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and gzip compute it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The check value of CRC-32/ISO-HDLC over "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn an_event_record_has_this_wire_form() {
        let mut out = Vec::new();
        encode(&Record::Event { number: 7, payload: b"ab" }, &mut out);
        let crc = crc32(&[1, 7, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']).to_le_bytes();
        let expected = [&[2, 0, 0, 0][..], &crc, &[1], &[7, 0, 0, 0, 0, 0, 0, 0], b"ab"].concat();
        assert_eq!(out, expected);
        assert_eq!(check(&out), Ok(HEADER_LEN + 2));
        assert_eq!(parse(&out), Ok((Record::Event { number: 7, payload: &b"ab"[..] }, HEADER_LEN + 2)));
    }

    #[test]
    fn records_read_back_one_after_another() {
        let mut out = Vec::new();
        encode(&Record::Event { number: 1, payload: b"{}" }, &mut out);
        encode(&Record::Ack { number: 1 }, &mut out);
        let (first, used) = parse(&out).unwrap();
        assert_eq!(first, Record::Event { number: 1, payload: b"{}" });
        assert_eq!(parse(&out[used..]), Ok((Record::Ack { number: 1 }, HEADER_LEN)));
    }

    #[test]
    fn every_cut_of_a_record_is_incomplete() {
        let mut out = Vec::new();
        encode(&Record::Event { number: 3, payload: b"payload" }, &mut out);
        for cut in 0..out.len() {
            assert_eq!(parse(&out[..cut]), Err(Error::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_after_the_length_is_corrupt() {
        let mut out = Vec::new();
        encode(&Record::Event { number: 3, payload: b"payload" }, &mut out);
        for byte in 4..out.len() {
            let mut damaged = out.clone();
            damaged[byte] ^= 0x10;
            assert!(matches!(parse(&damaged), Err(Error::Corrupt(_))), "byte {byte}");
        }
    }

    #[test]
    fn an_absurd_length_is_corrupt_before_any_payload_is_awaited() {
        let bytes = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        assert_eq!(check(&bytes), Err(Error::Corrupt("length past the largest record")));
        // An all-zero tail (a file extended but never written) is no record either.
        assert!(matches!(parse(&[0; HEADER_LEN]), Err(Error::Corrupt(_))));
    }
}
