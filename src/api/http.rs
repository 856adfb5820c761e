//! The admin API's HTTP/1.1 framing over a blocking std socket: read one request (httparse for
//! the head, `Content-Length` for the body), write one response.
//!
//! Every limit turns into a status and a closed connection rather than an error the caller
//! must interpret: a head past [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers is 431, a
//! body past [`MAX_BODY`] is 413, a head httparse refuses is 400, chunked bodies are 501, a head
//! still incomplete [`HEAD_DEADLINE`] after its first byte, or a request [`REQUEST_DEADLINE`]
//! after it, is 408. After any of these the framing of what follows is unknown, so the
//! connection is closed.
//!
//! Deadlines are enforced by the socket's read timeout, set before each read to what is left:
//! a client trickling a byte a second is cut at the deadline, not at its next byte.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest request body. A webhook definition is well under a KiB; a MiB leaves room for long
/// header lists without letting a client make the API buffer much.
pub const MAX_BODY: usize = 1024 * 1024;
/// The longest a request head may take to arrive once its first byte has. Every real client
/// sends its head in one packet; a slowloris client trickles it to hold a connection slot.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a whole request (head and body) may take once its first byte has arrived: a
/// MiB body at 100 KB/s.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes read at a time.
const READ_STEP: usize = 2048;
/// The longest a connection may wait for the first byte of a request (keep-alive idle time).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

/// One response. The body is JSON unless `content_type` says otherwise.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
}

pub const JSON: &str = "application/json";
/// The Prometheus text exposition format, version 0.0.4.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        // Serializing a `Value` cannot fail (its map keys are strings).
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        Response { status, content_type: JSON, headers: Vec::new(), body, close: false }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response { status, content_type, headers: Vec::new(), body: body.into_bytes(), close: false }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }
}

/// What reading the next request came to.
#[derive(Debug)]
pub enum Next {
    Request(Request),
    /// The client closed, went idle past the read timeout, or the socket failed: nothing to
    /// answer.
    Closed,
    /// The request is unacceptable; answer this and close.
    Reject(Response),
}

/// A connection: the socket and the bytes read past the previous request (pipelining).
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        Connection { stream, buf: Vec::new() }
    }

    /// Reads the next request: waits up to [`IDLE_TIMEOUT`] for its first byte, then up to
    /// [`HEAD_DEADLINE`] for the rest of its head and [`REQUEST_DEADLINE`] for its body.
    pub fn next_request(&mut self) -> Next {
        // Pipelined bytes already here start the clock at once; otherwise the first read does.
        let mut first_byte = (!self.buf.is_empty()).then(Instant::now);
        let (head_len, mut request, content_length, expect_continue) = loop {
            match self.parse_head() {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(response) => return Next::Reject(response),
            }
            if self.buf.len() > MAX_HEAD {
                return Next::Reject(Response::error(431, "request head too large").closing());
            }
            match self.fill(first_byte.map(|t| t + HEAD_DEADLINE)) {
                Ok(true) => {}
                Ok(false) => return Next::Closed,
                Err(e) if is_timeout(&e) && !self.buf.is_empty() => return too_slow(),
                Err(_) => return Next::Closed,
            }
            first_byte.get_or_insert_with(Instant::now);
        };
        if expect_continue && self.buf.len() < head_len + content_length {
            // curl waits a second for this before sending a body over 1 KiB.
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let deadline = first_byte.unwrap_or_else(Instant::now) + REQUEST_DEADLINE;
        while self.buf.len() < head_len + content_length {
            match self.fill(Some(deadline)) {
                Ok(true) => {}
                Ok(false) => return Next::Closed,
                Err(e) if is_timeout(&e) => return too_slow(),
                Err(_) => return Next::Closed,
            }
        }
        request.body = self.buf[head_len..head_len + content_length].to_vec();
        self.buf.drain(..head_len + content_length);
        Next::Request(request)
    }

    /// Parses the head if it is complete: `(head length, request without body, body length,
    /// Expect: 100-continue)`.
    #[allow(clippy::type_complexity)]
    fn parse_head(&self) -> Result<Option<(usize, Request, usize, bool)>, Response> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                return Err(Response::error(431, "request head too large").closing());
            }
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Response::error(431, format!("more than {MAX_HEADERS} request headers")).closing());
            }
            Err(e) => return Err(Response::error(400, format!("malformed HTTP request: {e}")).closing()),
        };
        let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
            return Err(Response::error(400, "malformed HTTP request").closing());
        };
        let mut content_length: Option<usize> = None;
        let mut connection_close = false;
        let mut connection_keep_alive = false;
        let mut expect_continue = false;
        for header in parsed.headers.iter() {
            let value = header.value;
            if header.name.eq_ignore_ascii_case("content-length") {
                let length = std::str::from_utf8(value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok());
                let Some(length) = length else {
                    return Err(Response::error(400, "invalid Content-Length").closing());
                };
                if length > MAX_BODY as u64 {
                    return Err(Response::error(413, format!("request body over {MAX_BODY} bytes")).closing());
                }
                let length = length as usize;
                if content_length.is_some_and(|previous| previous != length) {
                    return Err(Response::error(400, "conflicting Content-Length headers").closing());
                }
                content_length = Some(length);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Response::error(501, "Transfer-Encoding is not supported; send Content-Length").closing());
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in String::from_utf8_lossy(value).split(',') {
                    let token = token.trim();
                    connection_close |= token.eq_ignore_ascii_case("close");
                    connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            } else if header.name.eq_ignore_ascii_case("expect") {
                expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        // HTTP/1.1 keeps the connection by default, HTTP/1.0 only when asked.
        let keep_alive = !connection_close && (version >= 1 || connection_keep_alive);
        let path = target.split(['?', '#']).next().unwrap_or_default().to_owned();
        let request = Request {
            method: method.to_owned(),
            path,
            headers: parsed.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
            body: Vec::new(),
            keep_alive,
        };
        Ok(Some((head_len, request, content_length.unwrap_or(0), expect_continue)))
    }

    /// Reads more bytes; `Ok(false)` at end of stream. Without a `deadline` the read waits up
    /// to [`IDLE_TIMEOUT`]; with one, until then (a `TimedOut` error once it has passed).
    fn fill(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        let wait = match deadline {
            None => IDLE_TIMEOUT,
            Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(IDLE_TIMEOUT),
        };
        if wait.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(wait))?;
        // Straight into the buffer, a small step at a time: a connection that trickles its head
        // should cost a few KiB, not a 16 KiB read buffer (1000 slow clients = 1000 of them).
        let filled = self.buf.len();
        self.buf.resize(filled + READ_STEP, 0);
        let read = loop {
            match self.stream.read(&mut self.buf[filled..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(filled + *read.as_ref().unwrap_or(&0));
        if self.buf.is_empty() {
            // Idle between requests: give the memory back.
            self.buf = Vec::new();
        }
        read.map(|n| n > 0)
    }

    /// Writes `response`; `head_only` leaves the body out (a HEAD request).
    pub fn write(&mut self, response: &Response, head_only: bool) -> io::Result<()> {
        write_response(&mut self.stream, response, head_only)
    }
}

/// Writes `response` on `out` in one buffer (one syscall for small responses).
pub fn write_response(out: &mut impl Write, response: &Response, head_only: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if response.close {
        head.push_str("Connection: close\r\n");
    }
    for (name, value) in &response.headers {
        // Values are built by the API itself, never copied from a request; dropping control
        // characters anyway keeps a future mistake from splitting the response.
        let value: String = value.chars().filter(|c| !c.is_control()).collect();
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    out.write_all(&bytes)?;
    out.flush()
}

fn too_slow() -> Next {
    Next::Reject(Response::error(408, "request not received in time").closing())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
