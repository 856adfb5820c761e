//! HTTP-FLV clients for tests, std only: a raw HTTP exchange for the answers that are not a
//! stream, and a player that reads a stream over plain HTTP or WebSocket and parses it tag by
//! tag with the library's FLV reader. The WebSocket side is written here from RFC 6455 (not
//! with the server's codec), so a server bug cannot hide behind a shared one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringcast::protocol::flv::{FlvError, FlvFileHeader, FlvReader};

use super::TestServer;

/// The key of RFC 6455's example handshake, and the accept value it must get back.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// `http://IP:PORT/{key}.flv`.
pub fn flv_url(server: &TestServer, key: &str) -> String {
    format!("http://{}/{key}.flv", server.http_addr())
}

/// Sends `bytes` and reads until the server closes or `timeout` passes. Returns what was read
/// and whether the server closed.
pub fn exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP-FLV port");
    // The server may answer and close before it read everything (a 431): a failed write is
    // fine, what it answered is what matters.
    let _ = stream.write_all(bytes);
    read_until_closed(&mut stream, timeout)
}

/// Reads until the peer closes or `timeout` passes; whether it closed.
pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (out, false);
            }
            // A reset is the server closing too.
            Err(_) => return (out, true),
        }
    }
}

/// The status of a response, and its head as text.
pub fn status_and_head(response: &[u8]) -> (u16, String) {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

/// The value of header `name` in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One FLV tag as a player received it.
#[derive(Debug, Clone)]
pub struct Tag {
    pub tag_type: u8,
    pub timestamp: u32,
    pub body: Vec<u8>,
}

/// A player of one stream: its connection, the response head, and the FLV bytes received.
pub struct FlvPlayer {
    stream: TcpStream,
    pub status: u16,
    pub head: String,
    websocket: bool,
    /// Bytes received after the head, not yet taken apart (WebSocket frames).
    raw: Vec<u8>,
    /// The FLV stream's bytes (the body, or the binary frames' payloads).
    pub flv: Vec<u8>,
    /// Frames received other than binary ones: (opcode, payload).
    pub control_frames: Vec<(u8, Vec<u8>)>,
    /// The server closed the connection.
    pub closed: bool,
}

impl FlvPlayer {
    /// `GET path` over plain HTTP; returns once the head has arrived (or `timeout`).
    pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> FlvPlayer {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ringcast-test\r\n\r\n");
        FlvPlayer::open(addr, &request, false, timeout)
    }

    /// The same URL as a WebSocket (RFC 6455's example key).
    pub fn websocket(addr: SocketAddr, path: &str, timeout: Duration) -> FlvPlayer {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.test\r\n\r\n"
        );
        FlvPlayer::open(addr, &request, true, timeout)
    }

    fn open(addr: SocketAddr, request: &str, websocket: bool, timeout: Duration) -> FlvPlayer {
        let mut stream = TcpStream::connect(addr).expect("connect to the HTTP-FLV port");
        stream.write_all(request.as_bytes()).expect("send the request");
        let mut player = FlvPlayer {
            stream,
            status: 0,
            head: String::new(),
            websocket,
            raw: Vec::new(),
            flv: Vec::new(),
            control_frames: Vec::new(),
            closed: false,
        };
        let deadline = Instant::now() + timeout;
        while player.status == 0 && !player.closed && Instant::now() < deadline {
            player.read_some(deadline);
            if let Some(end) = player.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, head) = status_and_head(&player.raw[..end + 4]);
                player.status = status;
                player.head = head;
                player.raw.drain(..end + 4);
            }
        }
        player.take_apart();
        player
    }

    fn read_some(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).expect("read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
    }

    /// Reads for `duration` or until the server closes.
    pub fn read_for(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.closed && Instant::now() < deadline {
            self.read_some(deadline);
            self.take_apart();
        }
    }

    /// Reads until `done` holds for what has arrived, the server closes, or `timeout` passes;
    /// whether `done` held.
    pub fn read_until(&mut self, timeout: Duration, mut done: impl FnMut(&FlvPlayer) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if self.closed || Instant::now() >= deadline {
                return false;
            }
            self.read_some(deadline);
            self.take_apart();
        }
        true
    }

    /// Moves what arrived into `flv` (and `control_frames`).
    fn take_apart(&mut self) {
        if self.status == 0 {
            return;
        }
        if !self.websocket {
            self.flv.append(&mut self.raw);
            return;
        }
        while let Some((opcode, payload, len)) = server_frame(&self.raw) {
            if opcode == 0x2 {
                self.flv.extend_from_slice(&payload);
            } else {
                self.control_frames.push((opcode, payload));
            }
            self.raw.drain(..len);
        }
    }

    /// Sends a masked client frame.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        assert!(payload.len() < 126, "test frames are small");
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).expect("send a frame");
    }

    /// Sends raw bytes on the connection.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The FLV file header and every whole tag received so far; panics on bytes that are not
    /// FLV.
    pub fn tags(&self) -> (Option<FlvFileHeader>, Vec<Tag>, usize) {
        let mut reader = FlvReader::new();
        let mut rest: &[u8] = &self.flv;
        let mut tags = Vec::new();
        loop {
            match reader.read_tag(&mut rest) {
                Ok(Some(tag)) => {
                    tags.push(Tag { tag_type: tag.tag_type, timestamp: tag.timestamp_ms, body: tag.body.to_vec() })
                }
                Ok(None) | Err(FlvError::Incomplete) => break,
                Err(e) => panic!("not FLV: {e} after {} tags", tags.len()),
            }
        }
        (reader.header().copied(), tags, rest.len())
    }
}

/// One unmasked server frame at the start of `input`: opcode, payload, length taken.
fn server_frame(input: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (first, second) = (*input.first()?, *input.get(1)?);
    assert_eq!(first & 0x80, 0x80, "the server sends every frame whole (FIN)");
    assert_eq!(second & 0x80, 0, "server frames are not masked");
    let (len, at) = match second & 0x7F {
        126 => (u16::from_be_bytes(input.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(input.get(2..10)?.try_into().ok()?) as usize, 10),
        short => (short as usize, 2),
    };
    let payload = input.get(at..at + len)?;
    Some((first & 0x0F, payload.to_vec(), at + len))
}
