//! An HTTP-FLV player: `GET /app/name.flv`, then FLV tags from the response body (plain,
//! until close, or chunked), each handed to [`PlayerRecord::on_media`] like an RTMP message.
//!
//! ringcast does not serve HTTP-FLV yet; this reader exists so `play` works against it the
//! day it does (and against other servers today). HTTP-FLV has no play-start message: the
//! response headers stand for it.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use ringcast::protocol::flv::{FlvError, FlvReader};
use ringcast::protocol::http::{Request, ResponseReader};
use tokio::time::Instant;

use crate::media::wall_us;
use crate::play::{LagHistograms, Outcome, PlaySetup, PlayerRecord};
use crate::rtmp::{Failure, ReadBuf};
use crate::runtime::{LocalStop, Shared};

/// Body bytes buffered while a tag is incomplete: two maximal FLV tags.
const MAX_PENDING: usize = 32 << 20;

pub async fn play(
    setup: &PlaySetup,
    id: usize,
    stream: usize,
    record: &RefCell<PlayerRecord>,
    lag: &RefCell<LagHistograms>,
    shared: &Shared,
    stop: &LocalStop,
) -> Result<(), Outcome> {
    let began = Instant::now();
    record.borrow_mut().begin(began);
    let limit = setup.timeout;
    let target = &setup.target;
    let Some(conn) = crate::play::connect(setup, id, stop).await? else { return Ok(()) };
    let path = format!("/{}/{}.flv{}", target.app, target.stream(stream), target.query);
    let headers = [("User-Agent", "ringcast-load"), ("Accept", "*/*"), ("Connection", "close")]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let mut request = Vec::new();
    Request { method: "GET", target: &path, host: &target.authority, headers: &headers, body: b"" }
        .encode(&mut request);
    if let Err(e) = conn.write_all(request).await {
        return Err(Outcome::Failed(Failure::io("http request", &e)));
    }
    let mut reader = ReadBuf::new(crate::rtmp::HANDSHAKE_READ_BUFFER);
    let mut response = FlvResponse::new();
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
            Some(200) => break,
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
}

impl FlvResponse {
    fn new() -> FlvResponse {
        FlvResponse { http: ResponseReader::new("GET"), unread: Vec::new(), flv: FlvReader::new(), body: Vec::new() }
    }

    fn feed(&mut self, input: &[u8]) -> Result<(), String> {
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

    /// Whether the body ended (its length, or the last chunk): a live stream never ends so.
    fn ended(&self) -> bool {
        self.http.response().is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast::protocol::flv::{write_file_header, write_tag};

    #[test]
    fn reads_tags_from_a_chunked_flv_body() {
        let mut flv = Vec::new();
        write_file_header(true, true, &mut flv);
        write_tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3], &mut flv).expect("tag");
        write_tag(8, 23, &[0xaf, 1, 9, 9], &mut flv).expect("tag");
        let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in flv.chunks(7) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        for step in [1, 5, wire.len()] {
            let mut response = FlvResponse::new();
            let mut tags = Vec::new();
            for piece in wire.chunks(step) {
                response.feed(piece).expect("valid");
                response.take_tags(|t, ts, _| tags.push((t, ts))).expect("valid");
            }
            assert_eq!(response.status(), Some(200));
            assert_eq!(tags, vec![(9, 0), (8, 23)], "step {step}");
        }
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
