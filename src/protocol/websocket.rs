//! WebSocket (RFC 6455) as a streaming server speaks it: the handshake's accept key, frame
//! headers for what the server sends (unmasked), and a decoder of what a client sends
//! (masked), sans-IO.
//!
//! The server only streams: its media goes out as binary frames, a header before buffers it
//! does not copy ([`encode_header`]). From a client it takes only control frames: a ping is
//! answered with a pong, a close with a close; data frames are read past and ignored. Sizes
//! are bounded: a control frame carries at most 125 bytes (the RFC's own limit) and a data
//! frame at most [`MAX_CLIENT_FRAME`], so a client cannot make the server hold more.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest data frame payload a client may send. Players send none; this only bounds what is
/// skipped.
pub const MAX_CLIENT_FRAME: u64 = 64 * 1024;
/// Largest control frame payload (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Close status codes the server sends.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Largest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed for the frame.
    #[error("incomplete frame")]
    Incomplete,
    #[error("client frame not masked")]
    Unmasked,
    #[error("reserved bits set without an extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("control frame fragmented or over {MAX_CONTROL_PAYLOAD} bytes")]
    BadControl,
    #[error("frame of {0} bytes, over the {MAX_CLIENT_FRAME}-byte limit")]
    TooBig(u64),
}

impl FrameError {
    /// The close code that tells the client why.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig(_) => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes.
pub fn valid_key(key: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|decoded| decoded.len() == 16)
}

/// The `Sec-WebSocket-Accept` value for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut hash = Sha1::new();
    hash.update(key.as_bytes());
    hash.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hash.finalize())
}

/// Appends an unmasked, final frame header of `opcode` for a payload of `len` bytes.
pub fn encode_header(opcode: u8, len: u64, out: &mut impl Extend<u8>) {
    let first = 0x80 | (opcode & 0x0F);
    if len < 126 {
        out.extend([first, len as u8]);
    } else if len <= u64::from(u16::MAX) {
        let [hi, lo] = (len as u16).to_be_bytes();
        out.extend([first, 126, hi, lo]);
    } else {
        out.extend([first, 127]);
        out.extend(len.to_be_bytes());
    }
}

/// A whole close frame: `code` and a reason cut to fit a control frame.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut reason = &reason.as_bytes()[..reason.len().min(MAX_CONTROL_PAYLOAD - 2)];
    // Never cut a UTF-8 character in two: the reason must stay valid UTF-8.
    while std::str::from_utf8(reason).is_err() {
        reason = &reason[..reason.len() - 1];
    }
    let mut frame = Vec::with_capacity(4 + reason.len());
    encode_header(OPCODE_CLOSE, 2 + reason.len() as u64, &mut frame);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

/// A pong frame answering a ping's payload (at most 125 bytes, as the ping's was).
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut frame = Vec::with_capacity(2 + payload.len());
    encode_header(OPCODE_PONG, payload.len() as u64, &mut frame);
    frame.extend_from_slice(payload);
    frame
}

/// What a client's frame asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// The client closes; `code` is absent when its close frame had no body.
    Close { code: Option<u16> },
    /// A data frame, continuation or pong: nothing to do.
    Ignored,
}

/// A client frame's header, once complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    len: u64,
    header_len: usize,
}

/// Reads the header at the start of `input`: a cheap look before the payload is touched.
fn check(input: &[u8]) -> Result<Header, FrameError> {
    let &[first, second] = input.first_chunk::<2>().ok_or(FrameError::Incomplete)?;
    let rest = &input[2..];
    if first & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, len_bytes) = match second & 0x7F {
        126 => (u64::from(u16::from_be_bytes(*rest.first_chunk::<2>().ok_or(FrameError::Incomplete)?)), 2),
        127 => (u64::from_be_bytes(*rest.first_chunk::<8>().ok_or(FrameError::Incomplete)?), 8),
        short => (u64::from(short), 0),
    };
    match opcode {
        OPCODE_CONTINUATION | OPCODE_TEXT | OPCODE_BINARY if len > MAX_CLIENT_FRAME => {
            return Err(FrameError::TooBig(len));
        }
        OPCODE_CONTINUATION | OPCODE_TEXT | OPCODE_BINARY => {}
        OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG if !fin || len > MAX_CONTROL_PAYLOAD as u64 => {
            return Err(FrameError::BadControl);
        }
        OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG => {}
        other => return Err(FrameError::Opcode(other)),
    }
    let mask = *rest[len_bytes..].first_chunk::<4>().ok_or(FrameError::Incomplete)?;
    Ok(Header { opcode, fin, mask, len, header_len: 2 + len_bytes + 4 })
}

/// Decodes one client frame at the start of `input`: the frame and the bytes it took, or
/// `Incomplete` (nothing consumed: call again with more bytes), or why the client broke the
/// protocol.
pub fn decode(input: &[u8]) -> Result<(ClientFrame, usize), FrameError> {
    let header = check(input)?;
    // `check` bounded the length, so it fits in memory and in usize.
    let total = header.header_len + header.len as usize;
    let payload = input.get(header.header_len..total).ok_or(FrameError::Incomplete)?;
    let frame = match header.opcode {
        OPCODE_PING => ClientFrame::Ping(unmask(payload, header.mask)),
        OPCODE_CLOSE => {
            let body = unmask(payload, header.mask);
            let code = body.first_chunk::<2>().map(|code| u16::from_be_bytes(*code));
            ClientFrame::Close { code }
        }
        _ => ClientFrame::Ignored,
    };
    Ok((frame, total))
}

fn unmask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_the_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key("dGhlIHNhbXBsZQ=="));
        assert!(!valid_key("not base64!"));
    }

    #[test]
    fn header_lengths_take_the_shortest_form() {
        let header = |len| {
            let mut out = Vec::new();
            encode_header(OPCODE_BINARY, len, &mut out);
            out
        };
        assert_eq!(header(5), [0x82, 5]);
        assert_eq!(header(125), [0x82, 125]);
        assert_eq!(header(126), [0x82, 126, 0, 126]);
        assert_eq!(header(65535), [0x82, 126, 0xFF, 0xFF]);
        assert_eq!(header(65536), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn decodes_the_rfc_masked_ping_and_close() {
        // RFC 6455 section 5.7: a masked "Hello" as a ping.
        let ping = [0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for end in 0..ping.len() {
            assert_eq!(decode(&ping[..end]), Err(FrameError::Incomplete), "at {end}");
        }
        assert_eq!(decode(&ping), Ok((ClientFrame::Ping(b"Hello".to_vec()), ping.len())));
        assert_eq!(pong_frame(b"Hello"), [0x8A, 5, b'H', b'e', b'l', b'l', b'o']);
        // A close with status 1000, masked with zeros; then an empty one.
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8, 0x88, 0x80, 1, 2, 3, 4];
        assert_eq!(decode(&close), Ok((ClientFrame::Close { code: Some(1000) }, 8)));
        assert_eq!(decode(&close[8..]), Ok((ClientFrame::Close { code: None }, 6)));
    }

    #[test]
    fn data_frames_are_read_past() {
        let mut text = vec![0x81, 0xFE, 0x01, 0x00, 9, 9, 9, 9];
        text.resize(8 + 256, 0);
        assert_eq!(decode(&text), Ok((ClientFrame::Ignored, text.len())));
        assert_eq!(decode(&text[..text.len() - 1]), Err(FrameError::Incomplete));
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(decode(&[0x89, 0x00]), Err(FrameError::Unmasked));
        assert_eq!(decode(&[0xC9, 0x80, 0, 0, 0, 0]), Err(FrameError::ReservedBits));
        assert_eq!(decode(&[0x83, 0x80, 0, 0, 0, 0]), Err(FrameError::Opcode(3)));
        assert_eq!(decode(&[0x09, 0x80, 0, 0, 0, 0]), Err(FrameError::BadControl));
        assert_eq!(decode(&[0x89, 0xFE, 0, 126, 0, 0, 0, 0]), Err(FrameError::BadControl));
        let huge = [0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(decode(&huge), Err(FrameError::TooBig(0x7FFF_FFFF_FFFF_FFFF)));
        assert_eq!(FrameError::TooBig(1).close_code(), CLOSE_TOO_BIG);
    }

    #[test]
    fn close_frames_keep_their_reason_valid_utf8() {
        assert_eq!(close_frame(CLOSE_NORMAL, "bye"), [0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
        let long = "é".repeat(100);
        let frame = close_frame(CLOSE_GOING_AWAY, &long);
        assert!(frame.len() <= 2 + MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
