//! An HTTP-FLV player: `GET /app/name.flv`, then FLV tags from the response body (plain,
//! until close, or chunked), each handed to [`PlayerRecord::on_media`] like an RTMP message.
//! The WebSocket-FLV player is the same with the request upgraded: a `101` head, then the FLV
//! bytes in the payloads of the server's binary frames ([`WsFrames`] takes the framing off).
//!
//! HTTP-FLV has no play-start message: the response headers stand for it.

use std::sync::atomic::Ordering;

use ringcast::protocol::flv::{FlvError, FlvReader};
use ringcast::protocol::http::{Request, ResponseReader};
use tokio::time::Instant;

use crate::cli::Protocol;
use crate::media::wall_us;
use crate::play::{Outcome, Player};
use crate::rtmp::{Failure, ReadBuf};

/// Body bytes buffered while a tag is incomplete: two maximal FLV tags.
const MAX_PENDING: usize = 32 << 20;

pub async fn play(player: Player<'_>) -> Result<(), Outcome> {
    let Player { setup, stream, record, lag, shared, stop, .. } = player;
    let began = player.begin();
    let limit = setup.timeout;
    let target = &setup.target;
    let Some(conn) = player.connect().await? else { return Ok(()) };
    let path = format!("/{}/{}.flv{}", target.app, target.stream(stream), target.query);
    let websocket = target.protocol == Protocol::WsFlv;
    let headers: &[(&str, &str)] = if websocket {
        &[
            ("User-Agent", "ringcast-load"),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            // Any 16 bytes in base64: the load client does not check the accept hash.
            ("Sec-WebSocket-Key", "cmluZ2Nhc3QtbG9hZC1rZQ=="),
        ]
    } else {
        &[("User-Agent", "ringcast-load"), ("Accept", "*/*"), ("Connection", "close")]
    };
    let headers: Vec<(String, String)> =
        headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    let mut request = Vec::new();
    Request { method: "GET", target: &path, host: &target.authority, headers: &headers, body: b"" }
        .encode(&mut request);
    if let Err(e) = conn.write_all(request).await {
        return Err(Outcome::Failed(Failure::io("http request", &e)));
    }
    let mut reader = ReadBuf::new(crate::rtmp::HANDSHAKE_READ_BUFFER);
    let mut response = if websocket { FlvResponse::websocket() } else { FlvResponse::new() };
    let deadline = Instant::now() + limit;
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, reader.read(&conn)) => read,
            _ = stop.wait() => return Ok(()),
        };
        let input = match read {
            Err(_) => return Err(Outcome::Failed(Failure::timeout("http response", limit))),
            Ok(Err(e)) => return Err(Outcome::Failed(Failure::io("http response", &e))),
            Ok(Ok([])) => return Err(Outcome::Failed(Failure::closed("http response"))),
            Ok(Ok(input)) => input,
        };
        record.borrow_mut().bytes += input.len() as u64;
        shared.bytes_in.fetch_add(input.len() as u64, Ordering::Relaxed);
        response.feed(input).map_err(|reason| Outcome::Failed(Failure::new("http response", reason)))?;
        match response.status() {
            None => continue,
            Some(200) if !websocket => break,
            Some(101) if websocket => break,
            Some(status) => return Err(Outcome::Failed(Failure::new("http response", format!("HTTP {status}")))),
        }
    }
    let started_us = began.elapsed().as_micros() as u64;
    record.borrow_mut().started(started_us);
    shared.established.fetch_add(1, Ordering::Relaxed);

    loop {
        let now = Instant::now();
        let wall = wall_us();
        if let Err(reason) = response.take_tags(|tag_type, timestamp, payload| {
            record.borrow_mut().on_media(tag_type, timestamp, payload, now, wall, &mut lag.borrow_mut())
        }) {
            return Err(Outcome::Ended(Failure::new("playing", reason)));
        }
        if response.ended() {
            return Err(Outcome::Ended(Failure::new("playing", "response ended")));
        }
        let read = tokio::select! {
            read = reader.read(&conn) => read,
            _ = stop.wait() => return Ok(()),
        };
        match read {
            Ok([]) => return Err(Outcome::Ended(Failure::closed("playing"))),
            Ok(data) => {
                record.borrow_mut().bytes += data.len() as u64;
                shared.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                response.feed(data).map_err(|reason| Outcome::Ended(Failure::new("playing", reason)))?;
            }
            Err(e) => return Err(Outcome::Ended(Failure::io("playing", &e))),
        }
    }
}

/// The response as it arrives: the library's HTTP reply reader (head, then the body with any
/// chunked framing removed), then FLV tags from the body.
struct FlvResponse {
    http: ResponseReader,
    /// Bytes the HTTP reader has not consumed yet: an incomplete head. Empty once in the body,
    /// which the reader consumes whole.
    unread: Vec<u8>,
    flv: FlvReader,
    /// Body bytes not yet a whole FLV tag.
    body: Vec<u8>,
    /// WebSocket-FLV: the frames after the `101` head, unwrapped into `body`.
    websocket: Option<WsFrames>,
}

impl FlvResponse {
    fn new() -> FlvResponse {
        FlvResponse {
            http: ResponseReader::new("GET"),
            unread: Vec::new(),
            flv: FlvReader::new(),
            body: Vec::new(),
            websocket: None,
        }
    }

    fn websocket() -> FlvResponse {
        FlvResponse { websocket: Some(WsFrames::default()), ..FlvResponse::new() }
    }

    fn feed(&mut self, input: &[u8]) -> Result<(), String> {
        if let Some(frames) = &mut self.websocket {
            match self.http.head().map(|head| head.status) {
                Some(101) => return frames.feed(input, &mut self.body),
                // A refusal: its status is the outcome, its body is not frames.
                Some(_) => return Ok(()),
                None => {}
            }
            // The head is one ordinary response head (a 101 has no body): what follows it in
            // the same read is the first frames.
            self.unread.extend_from_slice(input);
            let used = self.http.handle_input(&self.unread).map_err(|e| format!("bad HTTP response: {e}"))?;
            self.unread.drain(..used);
            if self.http.head().is_some_and(|head| head.status == 101) {
                let rest = std::mem::take(&mut self.unread);
                return frames.feed(&rest, &mut self.body);
            }
            return Ok(());
        }
        let body = &mut self.body;
        let on_body = |data: &[u8]| body.extend_from_slice(data);
        let failed = |e| format!("bad HTTP response: {e}");
        if self.unread.is_empty() {
            let used = self.http.handle_input_with_body(input, on_body).map_err(failed)?;
            self.unread.extend_from_slice(&input[used..]);
        } else {
            self.unread.extend_from_slice(input);
            let used = self.http.handle_input_with_body(&self.unread, on_body).map_err(failed)?;
            self.unread.drain(..used);
        }
        Ok(())
    }

    /// The status, once the head has been read.
    fn status(&self) -> Option<u16> {
        self.http.head().map(|head| head.status)
    }

    /// Whether the body ended (its length, the last chunk, or a WebSocket close): a live
    /// stream never ends so.
    fn ended(&self) -> bool {
        match &self.websocket {
            Some(frames) => frames.closed,
            None => self.http.response().is_some(),
        }
    }

    /// Hands every whole tag buffered to `on_tag`.
    fn take_tags(&mut self, mut on_tag: impl FnMut(u8, u32, &[u8])) -> Result<(), String> {
        let mut rest: &[u8] = &self.body;
        loop {
            match self.flv.read_tag(&mut rest) {
                Ok(Some(tag)) => on_tag(tag.tag_type, tag.timestamp_ms, tag.body),
                Ok(None) | Err(FlvError::Incomplete) => break,
                Err(e) => return Err(format!("bad FLV: {e}")),
            }
        }
        let used = self.body.len() - rest.len();
        self.body.drain(..used);
        if self.body.len() > MAX_PENDING {
            return Err("FLV tag larger than 32 MiB".into());
        }
        Ok(())
    }
}

/// The payloads of a server's WebSocket frames, as one byte stream. Server frames are not
/// masked; data frames (binary, text, continuation) add to the stream, control frames are
/// read past (a ping needs no answer from a player that only measures), a close ends it.
#[derive(Default)]
struct WsFrames {
    /// An incomplete frame header: at most 14 bytes.
    header: Vec<u8>,
    /// Payload bytes left of the frame being read.
    left: u64,
    /// Whether that payload is stream data (not a control frame's).
    data: bool,
    closed: bool,
}

/// Data frame opcodes: continuation, text, binary.
const WS_DATA: [u8; 3] = [0, 1, 2];
const WS_CLOSE: u8 = 8;

impl WsFrames {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() && !self.closed {
            if self.left > 0 {
                let take = self.left.min(input.len() as u64) as usize;
                if self.data {
                    out.extend_from_slice(&input[..take]);
                }
                self.left -= take as u64;
                input = &input[take..];
                continue;
            }
            let need = Self::header_len(&self.header);
            let take = need.saturating_sub(self.header.len()).min(input.len());
            self.header.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.header.len() < Self::header_len(&self.header) {
                continue;
            }
            self.start_frame()?;
        }
        Ok(())
    }

    /// The header's whole length as far as its first two bytes tell (2 until they are in).
    fn header_len(header: &[u8]) -> usize {
        match header.get(1).map(|b| b & 0x7f) {
            None => 2,
            Some(126) => 4,
            Some(127) => 10,
            Some(_) => 2,
        }
    }

    fn start_frame(&mut self) -> Result<(), String> {
        let header = std::mem::take(&mut self.header);
        let (first, second) = (header[0], header[1]);
        if second & 0x80 != 0 {
            return Err("bad WebSocket frame: a server frame is masked".into());
        }
        let len = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => header[2..10].iter().fold(0u64, |n, b| n << 8 | u64::from(*b)),
            n => u64::from(n),
        };
        let opcode = first & 0x0f;
        self.data = WS_DATA.contains(&opcode);
        self.closed = opcode == WS_CLOSE;
        self.left = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast::protocol::flv::{write_file_header, write_tag};

    /// An FLV stream: a keyframe at 0 and an audio frame at 23, then `more` (a 300-byte
    /// inter frame at 33).
    fn flv_stream(more: bool) -> Vec<u8> {
        let mut flv = Vec::new();
        write_file_header(true, true, &mut flv);
        write_tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3], &mut flv).expect("tag");
        write_tag(8, 23, &[0xaf, 1, 9, 9], &mut flv).expect("tag");
        if more {
            write_tag(9, 33, &[0x27; 300], &mut flv).expect("tag");
        }
        flv
    }

    #[test]
    fn reads_tags_from_a_chunked_flv_body() {
        let flv = flv_stream(false);
        let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in flv.chunks(7) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        for step in [1, 5, wire.len()] {
            let mut response = FlvResponse::new();
            assert_eq!(feed_in_pieces(&mut response, &wire, step), vec![(9, 0), (8, 23)], "step {step}");
            assert_eq!(response.status(), Some(200));
        }
    }

    /// Feeds `wire` `step` bytes at a time; the (type, timestamp) of every tag read.
    fn feed_in_pieces(response: &mut FlvResponse, wire: &[u8], step: usize) -> Vec<(u8, u32)> {
        let mut tags = Vec::new();
        for piece in wire.chunks(step) {
            response.feed(piece).expect("valid");
            response.take_tags(|t, ts, _| tags.push((t, ts))).expect("valid");
        }
        tags
    }

    #[test]
    fn reads_tags_from_websocket_frames_after_the_upgrade() {
        let flv = flv_stream(true);
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        // A ping among the data frames, and one frame long enough for a 16-bit length.
        let (head, tail) = flv.split_at(30);
        ringcast::protocol::websocket::encode_header(2, head.len() as u64, &mut wire);
        wire.extend_from_slice(head);
        wire.extend_from_slice(&[0x89, 2, b'h', b'i']);
        ringcast::protocol::websocket::encode_header(2, tail.len() as u64, &mut wire);
        wire.extend_from_slice(tail);
        for step in [1, 3, wire.len()] {
            let mut response = FlvResponse::websocket();
            let tags = feed_in_pieces(&mut response, &wire, step);
            assert_eq!(tags, vec![(9, 0), (8, 23), (9, 33)], "step {step}");
            assert_eq!(response.status(), Some(101));
            assert!(!response.ended());
            response.feed(&[0x88, 0]).expect("a close");
            assert!(response.ended(), "step {step}");
        }
        let mut masked = FlvResponse::websocket();
        masked.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").expect("valid");
        assert!(masked.feed(&[0x82, 0x81, 1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn the_status_is_known_once_the_head_is_whole() {
        let mut response = FlvResponse::new();
        response.feed(b"HTTP/1.1 200 OK\r\n").expect("valid so far");
        assert_eq!(response.status(), None);
        response.feed(b"Content-Type: video/x-flv\r\n\r\nFLV").expect("valid");
        assert_eq!(response.status(), Some(200));
        assert!(!response.ended(), "a body without length runs until the close");
        let mut refused = FlvResponse::new();
        refused.feed(b"HTTP/1.1 404 Not Found\r\n\r\n").expect("valid");
        assert_eq!(refused.status(), Some(404));
        assert!(FlvResponse::new().feed(b"garbage\r\n\r\n").is_err());
    }
}
