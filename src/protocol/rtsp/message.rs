//! RTSP messages on the wire: the cheap [`check`] that finds where a request ends (its head,
//! then `Content-Length` bytes of body) before `rtsp-types` parses it, the status codes this
//! server answers with, and the response writer.

use std::fmt::Write as _;

use crate::protocol::limits::WireLimits;

/// The largest request head (request line and headers) by default
/// (`max_rtsp_request_head_bytes`). Real clients send well under 2 KiB; a URL may be up to
/// 4 KiB (`caps::URL`), and a Digest `Authorization` repeats it.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest request body by default (`max_rtsp_body_bytes`): an ANNOUNCE's SDP (a few
/// hundred bytes to a few KiB in practice).
pub const MAX_BODY: usize = 64 * 1024;

/// Where a request at the front of a buffer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not all of it has arrived.
    Incomplete,
    /// The request is the first `len` bytes.
    Complete { len: usize },
}

/// Why a request cannot even be framed; the connection answers with the status and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("request head over the size limit")]
    HeadTooLarge,
    #[error("request body over the size limit")]
    BodyTooLarge { cseq: Option<u32> },
    #[error("malformed Content-Length")]
    BadContentLength { cseq: Option<u32> },
}

/// Finds the end of the request at the front of `buf` without parsing it: the blank line that
/// ends the head, then the body `Content-Length` announces (bounded before any of it is
/// waited for). The head and body are bounded by `limits`.
pub fn check(buf: &[u8], limits: &WireLimits) -> Result<Check, FrameError> {
    let window = &buf[..buf.len().min(limits.rtsp_request_head_bytes)];
    let Some(head_len) = window.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4) else {
        return if buf.len() >= limits.rtsp_request_head_bytes {
            Err(FrameError::HeadTooLarge)
        } else {
            Ok(Check::Incomplete)
        };
    };
    let head = &buf[..head_len];
    let cseq = header_value(head, "cseq").and_then(|value| value.trim().parse().ok());
    let body_len = match header_value(head, "content-length") {
        Some(value) => value.trim().parse::<usize>().map_err(|_| FrameError::BadContentLength { cseq })?,
        None => 0,
    };
    if body_len > limits.rtsp_body_bytes {
        return Err(FrameError::BodyTooLarge { cseq });
    }
    let len = head_len + body_len;
    Ok(if buf.len() >= len { Check::Complete { len } } else { Check::Incomplete })
}

/// The value of the first header `name` (lowercase) in a head, without parsing the rest.
pub fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    head.split(|byte| *byte == b'\n').skip(1).find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim_end_matches('\r'))
    })
}

/// A status code with its reason phrase (RFC 2326, 7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

impl Status {
    pub const OK: Status = Status(200, "OK");
    pub const BAD_REQUEST: Status = Status(400, "Bad Request");
    pub const UNAUTHORIZED: Status = Status(401, "Unauthorized");
    pub const FORBIDDEN: Status = Status(403, "Forbidden");
    pub const NOT_FOUND: Status = Status(404, "Not Found");
    pub const REQUEST_ENTITY_TOO_LARGE: Status = Status(413, "Request Entity Too Large");
    pub const REQUEST_URI_TOO_LARGE: Status = Status(414, "Request-URI Too Large");
    pub const UNSUPPORTED_MEDIA_TYPE: Status = Status(415, "Unsupported Media Type");
    pub const NOT_ENOUGH_BANDWIDTH: Status = Status(453, "Not Enough Bandwidth");
    pub const SESSION_NOT_FOUND: Status = Status(454, "Session Not Found");
    pub const METHOD_NOT_VALID_IN_THIS_STATE: Status = Status(455, "Method Not Valid in This State");
    pub const UNSUPPORTED_TRANSPORT: Status = Status(461, "Unsupported transport");
    pub const INTERNAL_SERVER_ERROR: Status = Status(500, "Internal Server Error");
    pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
    pub const SERVICE_UNAVAILABLE: Status = Status(503, "Service Unavailable");
    pub const VERSION_NOT_SUPPORTED: Status = Status(505, "RTSP Version not supported");
}

/// A response being written: status line, `CSeq`, headers, then the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub cseq: Option<u32>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: Status, cseq: Option<u32>) -> Self {
        Response { status, cseq, headers: Vec::new(), body: Vec::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the response's bytes. Header values come from this server or were parsed from
    /// one header line, so none holds a line break.
    pub fn write(&self, server: &str, out: &mut Vec<u8>) {
        let mut head = format!("RTSP/1.0 {} {}\r\n", self.status.0, self.status.1);
        if let Some(cseq) = self.cseq {
            let _ = write!(head, "CSeq: {cseq}\r\n");
        }
        let _ = write!(head, "Server: {server}\r\n");
        for (name, value) in &self.headers {
            let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !self.body.is_empty() {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::check`] with the default limits.
    fn check(buf: &[u8]) -> Result<Check, FrameError> {
        super::check(buf, &WireLimits::default())
    }

    #[test]
    fn check_frames_head_and_body() {
        let request = b"ANNOUNCE rtsp://h/live/a RTSP/1.0\r\nCSeq: 2\r\ncontent-length: 5\r\n\r\nv=0\r\nOPTIONS";
        assert_eq!(check(&request[..20]), Ok(Check::Incomplete));
        assert_eq!(check(&request[..68]), Ok(Check::Incomplete));
        let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(check(request), Ok(Check::Complete { len: head_len + 5 }));
        assert_eq!(check(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"), Ok(Check::Complete { len: 31 }));
    }

    #[test]
    fn oversized_and_malformed_framing_is_refused() {
        let endless = vec![b'A'; MAX_HEAD];
        assert_eq!(check(&endless), Err(FrameError::HeadTooLarge));
        assert_eq!(check(&endless[..MAX_HEAD - 1]), Ok(Check::Incomplete));
        let big = format!("ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 9\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(check(big.as_bytes()), Err(FrameError::BodyTooLarge { cseq: Some(9) }));
        let bad = b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(check(bad), Err(FrameError::BadContentLength { cseq: None }));
    }

    #[test]
    fn lowered_limits_refuse_what_the_defaults_take() {
        let limits = WireLimits { rtsp_request_head_bytes: 1024, rtsp_body_bytes: 2048, ..WireLimits::default() };
        let long_head = format!("OPTIONS rtsp://h/{} RTSP/1.0\r\nCSeq: 1\r\n\r\n", "a".repeat(1100));
        assert_eq!(super::check(long_head.as_bytes(), &limits), Err(FrameError::HeadTooLarge));
        assert_eq!(check(long_head.as_bytes()), Ok(Check::Complete { len: long_head.len() }));
        let announce = "ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 4\r\nContent-Length: 2049\r\n\r\n";
        assert_eq!(super::check(announce.as_bytes(), &limits), Err(FrameError::BodyTooLarge { cseq: Some(4) }));
        assert_eq!(check(announce.as_bytes()), Ok(Check::Incomplete));
    }

    #[test]
    fn response_bytes() {
        let mut out = Vec::new();
        Response::new(Status::OK, Some(3)).header("Session", "ab;timeout=60").write("ringcast", &mut out);
        assert_eq!(out, b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nServer: ringcast\r\nSession: ab;timeout=60\r\n\r\n");
        let mut out = Vec::new();
        let mut response = Response::new(Status::NOT_FOUND, None).header("X", "a\r\nInjected: 1");
        response.body = b"hi".to_vec();
        response.write("s", &mut out);
        assert_eq!(out, b"RTSP/1.0 404 Not Found\r\nServer: s\r\nX: aInjected: 1\r\nContent-Length: 2\r\n\r\nhi");
    }
}
