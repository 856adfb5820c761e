//! An HTTP-FLV player: `GET /app/name.flv`, then FLV tags from the response body (plain,
//! until close, or chunked), each handed to [`PlayerRecord::on_media`] like an RTMP message.
//!
//! ringcast does not serve HTTP-FLV yet; this reader exists so `play` works against it the
//! day it does (and against other servers today). HTTP-FLV has no play-start message: the
//! response headers stand for it.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use ringcast::protocol::flv::{FlvError, FlvReader};
use tokio::time::Instant;

use crate::media::wall_us;
use crate::play::{LagHistograms, Outcome, PlaySetup, PlayerRecord};
use crate::rtmp::{Conn, Failure, ReadBuf};
use crate::runtime::{LocalStop, Shared};

/// Response headers larger than this are not an FLV stream worth waiting for.
const MAX_HEADER_BYTES: usize = 16 * 1024;
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
    let connect = tokio::select! {
        conn = tokio::time::timeout(limit, Conn::open(target.addr, target.source_for(id))) => conn,
        _ = stop.wait() => return Ok(()),
    };
    let conn = match connect {
        Ok(conn) => conn.map_err(Outcome::Failed)?,
        Err(_) => return Err(Outcome::Failed(Failure::timeout("tcp connect", limit))),
    };
    let request = format!(
        "GET /{}/{}.flv{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringcast-load\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.app,
        target.stream(stream),
        target.query,
        target.authority
    );
    if let Err(e) = conn.write_all(request.into_bytes()).await {
        return Err(Outcome::Failed(Failure::io("http request", &e)));
    }
    let mut reader = ReadBuf::new(crate::rtmp::HANDSHAKE_READ_BUFFER);
    let mut head = Vec::new();
    let deadline = Instant::now() + limit;
    let (chunked, rest) = loop {
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
        head.extend_from_slice(input);
        record.borrow_mut().bytes += input.len() as u64;
        shared.bytes_in.fetch_add(input.len() as u64, Ordering::Relaxed);
        match parse_head(&head) {
            Ok(Some((len, chunked))) => break (chunked, head.split_off(len)),
            Ok(None) if head.len() < MAX_HEADER_BYTES => continue,
            Ok(None) => {
                return Err(Outcome::Failed(Failure::new("http response", "headers too large")));
            }
            Err(reason) => return Err(Outcome::Failed(Failure::new("http response", reason))),
        }
    };
    let started_us = began.elapsed().as_micros() as u64;
    record.borrow_mut().started(started_us);
    shared.established.fetch_add(1, Ordering::Relaxed);

    let mut body = Body { dechunk: chunked.then(Dechunker::default), flv: FlvReader::new(), pending: Vec::new() };
    let mut input = rest;
    loop {
        let now = Instant::now();
        let wall = wall_us();
        if let Err(reason) = body.feed(&input, |tag_type, timestamp, payload| {
            record.borrow_mut().on_media(tag_type, timestamp, payload, now, wall, &mut lag.borrow_mut())
        }) {
            return Err(Outcome::Ended(Failure::new("playing", reason)));
        }
        if body.finished() {
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
                input.clear();
                input.extend_from_slice(data);
            }
            Err(e) => return Err(Outcome::Ended(Failure::io("playing", &e))),
        }
    }
}

/// Parses a complete response head: its length and whether the body is chunked. `None` while
/// incomplete; an error for anything but a 200.
fn parse_head(head: &[u8]) -> Result<Option<(usize, bool)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP response: {e}")),
    };
    match response.code {
        Some(200) => {}
        Some(code) => {
            return Err(format!("HTTP {code} {}", response.reason.unwrap_or_default()));
        }
        None => return Err("HTTP response without a status".into()),
    }
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).to_ascii_lowercase().contains("chunked")
    });
    Ok(Some((len, chunked)))
}

/// The response body: optional chunked framing, then FLV.
struct Body {
    dechunk: Option<Dechunker>,
    flv: FlvReader,
    pending: Vec<u8>,
}

impl Body {
    fn feed(&mut self, input: &[u8], mut on_tag: impl FnMut(u8, u32, &[u8])) -> Result<(), String> {
        match &mut self.dechunk {
            Some(dechunk) => dechunk.feed(input, &mut self.pending)?,
            None => self.pending.extend_from_slice(input),
        }
        let mut rest: &[u8] = &self.pending;
        loop {
            match self.flv.read_tag(&mut rest) {
                Ok(Some(tag)) => on_tag(tag.tag_type, tag.timestamp_ms, tag.body),
                Ok(None) | Err(FlvError::Incomplete) => break,
                Err(e) => return Err(format!("bad FLV: {e}")),
            }
        }
        let used = self.pending.len() - rest.len();
        self.pending.drain(..used);
        if self.pending.len() > MAX_PENDING {
            return Err("FLV tag larger than 32 MiB".into());
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.dechunk.as_ref().is_some_and(|d| d.state == Chunk::Done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Chunk {
    /// Reading the hex size line.
    #[default]
    Size,
    /// Skipping chunk extensions up to the end of the size line.
    Extension,
    /// The `\n` ending the size line.
    SizeLf,
    Data(usize),
    /// The `\r\n` after the data.
    DataCr,
    DataLf,
    Done,
}

/// Removes HTTP/1.1 chunked framing (RFC 9112, 7.1). Trailers after the last chunk are
/// ignored: the stream is over then anyway.
#[derive(Debug, Default)]
struct Dechunker {
    state: Chunk,
    size: usize,
    digits: u8,
}

impl Dechunker {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while let Some((&byte, rest)) = input.split_first() {
            match self.state {
                Chunk::Data(left) => {
                    let take = left.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.state = if take == left { Chunk::DataCr } else { Chunk::Data(left - take) };
                    continue;
                }
                Chunk::Size => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 8 {
                            return Err("chunk size too large".into());
                        }
                        let digit = (byte as char).to_digit(16).unwrap_or(0) as usize;
                        self.size = self.size * 16 + digit;
                    }
                    b';' | b' ' | b'\t' => self.state = Chunk::Extension,
                    b'\r' => self.state = Chunk::SizeLf,
                    b'\n' => self.end_size_line(),
                    _ => return Err("bad chunk size".into()),
                },
                Chunk::Extension => match byte {
                    b'\r' => self.state = Chunk::SizeLf,
                    b'\n' => self.end_size_line(),
                    _ => {}
                },
                Chunk::SizeLf => {
                    if byte != b'\n' {
                        return Err("bad chunk size line".into());
                    }
                    self.end_size_line();
                }
                Chunk::DataCr => match byte {
                    b'\r' => self.state = Chunk::DataLf,
                    b'\n' => self.state = Chunk::Size,
                    _ => return Err("missing CRLF after chunk".into()),
                },
                Chunk::DataLf => {
                    if byte != b'\n' {
                        return Err("missing CRLF after chunk".into());
                    }
                    self.state = Chunk::Size;
                }
                Chunk::Done => return Ok(()),
            }
            input = rest;
        }
        Ok(())
    }

    fn end_size_line(&mut self) {
        if self.digits == 0 {
            // An empty line where a size belongs: tolerate, keep reading sizes.
            self.state = Chunk::Size;
            return;
        }
        self.state = if self.size == 0 { Chunk::Done } else { Chunk::Data(self.size) };
        self.size = 0;
        self.digits = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast::protocol::flv::{write_file_header, write_tag};

    #[test]
    fn dechunks_across_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            d.feed(&body[..split], &mut out).expect("valid");
            d.feed(&body[split..], &mut out).expect("valid");
            assert_eq!(out, b"hello world");
            assert_eq!(d.state, Chunk::Done);
        }
    }

    #[test]
    fn reads_tags_from_a_chunked_flv_body() {
        let mut flv = Vec::new();
        write_file_header(true, true, &mut flv);
        write_tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3], &mut flv).expect("tag");
        write_tag(8, 23, &[0xaf, 1, 9, 9], &mut flv).expect("tag");
        let mut chunked = Vec::new();
        for piece in flv.chunks(7) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        let mut body = Body { dechunk: Some(Dechunker::default()), flv: FlvReader::new(), pending: Vec::new() };
        let mut tags = Vec::new();
        for piece in chunked.chunks(5) {
            body.feed(piece, |t, ts, _| tags.push((t, ts))).expect("valid");
        }
        assert_eq!(tags, vec![(9, 0), (8, 23)]);
    }

    #[test]
    fn head_needs_a_200() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFLV";
        assert_eq!(parse_head(head), Ok(Some((head.len() - 3, true))));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert!(parse_head(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }
}
