//! HTTP/1.1 as a hook client speaks it: a request encoder, and a response reader that finds
//! the status, the `Location` and the end of the body, so the connection can carry the next
//! request.
//!
//! Bodies are skipped, not kept: a callback's answer is its status (and `Location` for a
//! rename). The reader still has to know where a body ends (`Content-Length`, chunked, or the
//! connection's close) to reuse the connection, which is what makes a storm of callbacks to
//! one endpoint cheap. A client whose reply body is the point (an HTTP-FLV player: the body is
//! the stream, and may never end) reads the same way and has the body's bytes handed to it,
//! de-chunked, with [`ResponseReader::handle_input_with_body`].

/// Largest response head accepted. A hook reply is a status line and a few headers.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunked,
    #[error("connection closed before the response was complete")]
    Truncated,
}

/// A request to encode. `target` is the origin-form path and query (`/auth?x=1`).
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// The `Host` header: the URL's authority.
    pub host: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    /// Appends the request's bytes to `out`. Header lines carrying CR or LF are left out: a
    /// configured value must never be able to inject a header or a second request.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let clean = |s: &str| !s.contains(['\r', '\n']);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(if clean(self.target) { self.target } else { "/" }.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(if clean(self.host) { self.host } else { "" }.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in self.headers.iter().filter(|(n, v)| clean(n) && clean(v)) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
    }
}

/// What a response said, once it has been read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    /// How long the answer may be reused, from `Cache-Control: max-age=N`; `None` when the
    /// header is absent or says `no-store`/`no-cache` (a callback is then asked every time).
    pub max_age: Option<u64>,
    /// The `Content-Type` header: a callback's JSON reply may set session limits.
    pub content_type: Option<String>,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// What `Cache-Control` header values (all of a response's, in order) allow: seconds from
/// `max-age`, unless a `no-store` or `no-cache` forbids reuse.
pub fn cache_max_age<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    let mut max_age = None;
    for directive in values.into_iter().flat_map(|value| value.split(',')).map(str::trim) {
        let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return None;
        }
        if name.eq_ignore_ascii_case("max-age") {
            max_age = argument.trim().trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.filter(|&seconds| seconds > 0)
}

/// Where the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    /// Neither length nor chunked: the body runs to the connection's close.
    UntilClose,
}

#[derive(Debug)]
enum State {
    Head,
    Body(Response, Body),
    Done(Response),
}

/// Reads one response from a connection's bytes.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// A HEAD response has no body whatever its headers say.
    head_request: bool,
}

impl ResponseReader {
    pub fn new(method: &str) -> ResponseReader {
        ResponseReader { state: State::Head, head_request: method == "HEAD" }
    }

    /// Feeds the bytes received and not yet consumed; returns how many it consumed. A head is
    /// consumed only once complete, so a partial head consumes nothing: keep the bytes and
    /// call again with more.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        self.handle_input_with_body(input, |_| {})
    }

    /// [`handle_input`](Self::handle_input) that hands the body's bytes to `on_body` as they
    /// are consumed, with any chunked framing removed.
    pub fn handle_input_with_body(&mut self, input: &[u8], mut on_body: impl FnMut(&[u8])) -> Result<usize, HttpError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match &mut self.state {
                State::Done(_) => return Ok(consumed),
                State::Head => {
                    let Some((len, parsed)) = self.parse_head(rest)? else {
                        return Ok(consumed);
                    };
                    consumed += len;
                    if let Some((response, body)) = parsed {
                        self.state = match body {
                            Body::Length(0) => State::Done(response),
                            body => State::Body(response, body),
                        };
                    }
                }
                State::Body(_, body) => {
                    let (used, finished) = match body {
                        Body::Length(left) => {
                            let used = (*left).min(rest.len() as u64);
                            *left -= used;
                            on_body(&rest[..used as usize]);
                            (used as usize, *left == 0)
                        }
                        Body::Chunked(chunked) => chunked.read(rest, &mut on_body)?,
                        Body::UntilClose => {
                            on_body(rest);
                            (rest.len(), false)
                        }
                    };
                    consumed += used;
                    if finished {
                        self.finish();
                    } else {
                        return Ok(consumed);
                    }
                }
            }
        }
    }

    /// The peer closed the connection: ends a body that runs to the close, or fails.
    pub fn handle_eof(&mut self) -> Result<(), HttpError> {
        match &self.state {
            State::Done(_) => Ok(()),
            State::Body(_, Body::UntilClose) => {
                self.finish();
                Ok(())
            }
            _ => Err(HttpError::Truncated),
        }
    }

    /// The response, once it has been read to its end.
    pub fn response(&self) -> Option<&Response> {
        match &self.state {
            State::Done(response) => Some(response),
            _ => None,
        }
    }

    /// The response once its head has been read, its body perhaps still coming: a streamed
    /// body's status is known long before the body ends, if it ever does.
    pub fn head(&self) -> Option<&Response> {
        match &self.state {
            State::Body(response, _) | State::Done(response) => Some(response),
            State::Head => None,
        }
    }

    fn finish(&mut self) {
        if let State::Body(response, _) = std::mem::replace(&mut self.state, State::Head) {
            self.state = State::Done(response);
        }
    }

    /// `Ok(None)`: incomplete. `Ok(Some((len, None)))`: an interim 1xx head to skip.
    #[allow(clippy::type_complexity)]
    fn parse_head(&self, input: &[u8]) -> Result<Option<(usize, Option<(Response, Body)>)>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => return Err(HttpError::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(HttpError::Head(error)),
        };
        if len > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        let status = parsed.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            return Ok(Some((len, None)));
        }
        let http10 = parsed.version == Some(0);
        let (mut length, mut chunked, mut close, mut keep_alive, mut location) = (None, false, http10, false, None);
        let mut content_type = None;
        let mut cache_control = Vec::new();
        for header in parsed.headers.iter() {
            let value = String::from_utf8_lossy(header.value);
            let value = value.trim();
            if header.name.eq_ignore_ascii_case("content-length") {
                let n: u64 = value.parse().map_err(|_| HttpError::ContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::ContentLength);
                }
                length = Some(n);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            } else if header.name.eq_ignore_ascii_case("location") {
                location = Some(value.to_owned());
            } else if header.name.eq_ignore_ascii_case("cache-control") {
                cache_control.push(value.to_owned());
            } else if header.name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_owned());
            }
        }
        let max_age = cache_max_age(cache_control.iter().map(String::as_str));
        let no_body = self.head_request || status == 204 || status == 304 || (100..200).contains(&status);
        let body = if no_body {
            Body::Length(0)
        } else if chunked {
            Body::Chunked(Chunked::Size { value: 0, digits: 0, extension: false })
        } else if let Some(n) = length {
            Body::Length(n)
        } else {
            Body::UntilClose
        };
        let reusable = !(close && !(http10 && keep_alive)) && body != Body::UntilClose && status != 101;
        Ok(Some((len, Some((Response { status, location, max_age, content_type, reusable }, body)))))
    }
}

/// Where a chunked body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// In a chunk-size line; past a `;` or whitespace, in its extension (ignored).
    Size {
        value: u64,
        digits: u8,
        extension: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `empty` while the current line has no bytes yet.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
}

impl Chunked {
    /// Reads body bytes, handing the chunks' data to `on_data`; returns how many it used and
    /// whether the body ended.
    fn read(&mut self, input: &[u8], on_data: &mut impl FnMut(&[u8])) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            *self = match *self {
                Chunked::Data(left) => {
                    let used = left.min((input.len() - i) as u64);
                    on_data(&input[i..i + used as usize]);
                    i += used as usize;
                    if left == used { Chunked::DataCr } else { Chunked::Data(left - used) }
                }
                Chunked::Size { value, digits, extension } => {
                    i += 1;
                    match (byte, extension) {
                        (b'\r', _) if digits > 0 => Chunked::SizeLf { value },
                        (_, true) => Chunked::Size { value, digits, extension },
                        (b';' | b' ' | b'\t', false) if digits > 0 => Chunked::Size { value, digits, extension: true },
                        (_, false) => {
                            let digit = (byte as char).to_digit(16).ok_or(HttpError::Chunked)?;
                            // 15 hex digits is already a petabyte.
                            if digits >= 15 {
                                return Err(HttpError::Chunked);
                            }
                            Chunked::Size { value: value * 16 + digit as u64, digits: digits + 1, extension }
                        }
                    }
                }
                Chunked::SizeLf { value } => {
                    i += 1;
                    match (byte, value) {
                        (b'\n', 0) => Chunked::Trailer { empty: true },
                        (b'\n', n) => Chunked::Data(n),
                        _ => return Err(HttpError::Chunked),
                    }
                }
                Chunked::DataCr | Chunked::DataLf => {
                    i += 1;
                    match (*self, byte) {
                        (Chunked::DataCr, b'\r') => Chunked::DataLf,
                        (Chunked::DataLf, b'\n') => Chunked::Size { value: 0, digits: 0, extension: false },
                        _ => return Err(HttpError::Chunked),
                    }
                }
                Chunked::Trailer { empty } => {
                    i += 1;
                    if byte == b'\r' { Chunked::TrailerLf { empty } } else { Chunked::Trailer { empty: false } }
                }
                Chunked::TrailerLf { empty } => {
                    i += 1;
                    match (byte, empty) {
                        (b'\n', true) => return Ok((i, true)),
                        (b'\n', false) => Chunked::Trailer { empty: true },
                        _ => return Err(HttpError::Chunked),
                    }
                }
            };
        }
        Ok((i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes the way a socket might deliver it; returns the
    /// response and the bytes left after it.
    fn read(wire: &[u8], step: usize) -> (Result<Option<Response>, HttpError>, usize) {
        let mut reader = ResponseReader::new("POST");
        let (mut pending, mut offset) = (Vec::new(), 0);
        while reader.response().is_none() && offset < wire.len() {
            let end = (offset + step).min(wire.len());
            pending.extend_from_slice(&wire[offset..end]);
            offset = end;
            match reader.handle_input(&pending) {
                Ok(used) => drop(pending.drain(..used)),
                Err(error) => return (Err(error), 0),
            }
        }
        if reader.response().is_none()
            && offset == wire.len()
            && let Err(error) = reader.handle_eof()
        {
            return (Err(error), 0);
        }
        (Ok(reader.response().cloned()), pending.len() + wire.len() - offset)
    }

    #[test]
    fn encodes_a_form_post() {
        let headers = vec![("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned())];
        let request =
            Request { method: "POST", target: "/on_play", host: "127.0.0.1:9000", headers: &headers, body: b"a=1" };
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(
            out,
            b"POST /on_play HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 3\r\n\r\na=1"
        );
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let headers = vec![("X-Evil".to_owned(), "a\r\nX-Other: b".to_owned())];
        let request = Request { method: "GET", target: "/x", host: "h", headers: &headers, body: b"" };
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(out, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[test]
    fn reads_a_keep_alive_response_byte_by_byte() {
        let wire = b"HTTP/1.1 302 Found\r\nLocation: rtmp://h/live/cam2\r\nContent-Length: 5\r\n\r\nhelloNEXT";
        for step in [1, 3, wire.len()] {
            let (response, left) = read(wire, step);
            let response = response.unwrap().unwrap();
            assert_eq!(response.status, 302);
            assert_eq!(response.location.as_deref(), Some("rtmp://h/live/cam2"));
            assert!(response.reusable);
            assert_eq!(left, 4, "the next response's bytes stay unconsumed (step {step})");
        }
    }

    #[test]
    fn skips_a_chunked_body_with_extensions_and_trailers() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n";
        for step in [1, 2, 7, wire.len()] {
            let (response, left) = read(wire, step);
            let response = response.unwrap().unwrap();
            assert_eq!((response.status, response.reusable, left), (200, true, 0), "step {step}");
        }
    }

    #[test]
    fn reads_how_long_an_answer_may_be_reused() {
        let (response, _) =
            read(b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=30\r\nContent-Length: 0\r\n\r\n", 7);
        assert_eq!(response.unwrap().unwrap().max_age, Some(30));
        let (response, _) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 7);
        assert_eq!(response.unwrap().unwrap().max_age, None);
        assert_eq!(cache_max_age(["max-age=30", "no-store"]), None);
        assert_eq!(cache_max_age(["no-cache, max-age=30"]), None);
        assert_eq!(cache_max_age(["MAX-AGE = \"12\""]), Some(12));
        assert_eq!(cache_max_age(["max-age=0"]), None);
        assert_eq!(cache_max_age(["max-age=soon"]), None);
    }

    #[test]
    fn skips_interim_responses() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (response, left) = read(wire, 4);
        assert_eq!(response.unwrap().unwrap().status, 204);
        assert_eq!(left, 0);
    }

    #[test]
    fn a_body_to_the_close_ends_at_eof_and_is_not_reusable() {
        let (response, _) = read(b"HTTP/1.1 200 OK\r\n\r\nsome body", 5);
        let response = response.unwrap().unwrap();
        assert_eq!(response.status, 200);
        assert!(!response.reusable);
    }

    #[test]
    fn connection_close_and_http10_are_not_reusable() {
        let (close, _) = read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 64);
        assert!(!close.unwrap().unwrap().reusable);
        let (http10, _) = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 64);
        assert!(!http10.unwrap().unwrap().reusable);
        let (kept, _) = read(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 64);
        assert!(kept.unwrap().unwrap().reusable);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(read(b"garbage\r\n\r\n", 64).0, Err(HttpError::Head(_))));
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 64).0, Err(HttpError::ContentLength));
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 64).0,
            Err(HttpError::ContentLength)
        );
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 64).0, Err(HttpError::Chunked));
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n", 64).0,
            Err(HttpError::Chunked)
        );
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 64).0, Err(HttpError::Truncated));
        assert_eq!(read(b"HTTP/1.1 200 O", 64).0, Err(HttpError::Truncated));
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'a'; MAX_HEAD + 1]].concat();
        assert_eq!(read(&huge, 4096).0, Err(HttpError::HeadTooLarge));
    }

    /// Feeds `wire` in pieces of `step` bytes, keeping the body; returns the status once the
    /// head is read, the body, and whether the response ended.
    fn read_body(wire: &[u8], step: usize) -> (Option<u16>, Vec<u8>, bool) {
        let mut reader = ResponseReader::new("GET");
        let (mut pending, mut body) = (Vec::new(), Vec::new());
        for piece in wire.chunks(step) {
            pending.extend_from_slice(piece);
            let used = reader.handle_input_with_body(&pending, |data| body.extend_from_slice(data)).unwrap();
            pending.drain(..used);
        }
        (reader.head().map(|head| head.status), body, reader.response().is_some())
    }

    #[test]
    fn hands_a_chunked_body_over_without_its_framing() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        for step in 1..wire.len() {
            assert_eq!(read_body(wire, step), (Some(200), b"hello world".to_vec(), true), "step {step}");
        }
    }

    #[test]
    fn hands_over_a_body_by_length_or_to_the_close() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT";
        assert_eq!(read_body(by_length, 3), (Some(200), b"hello".to_vec(), true));
        let streamed = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01";
        assert_eq!(
            read_body(streamed, 4),
            (Some(200), b"FLV\x01".to_vec(), false),
            "a streamed body never ends by itself"
        );
    }

    #[test]
    fn the_head_is_known_before_the_body_ends() {
        assert_eq!(read_body(b"HTTP/1.1 200 OK\r\n", 64), (None, Vec::new(), false));
        assert_eq!(
            read_body(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot", 64),
            (Some(404), b"not".to_vec(), false)
        );
        assert_eq!(read_body(b"HTTP/1.1 100 Continue\r\n\r\n", 64).0, None, "an interim head is not the response's");
    }

    /// Mutated and truncated replies, fed in random pieces: the reader answers or errs, it never
    /// panics, and never claims more bytes than it was given.
    #[test]
    fn mutated_replies_never_panic() {
        let samples: [&[u8]; 3] = [
            b"HTTP/1.1 302 Found\r\nLocation: rtmp://h/live/cam2\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut wire = samples[round % samples.len()].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % wire.len();
                match next() % 3 {
                    0 => wire[at] = next() as u8,
                    1 => wire.truncate(at.max(1)),
                    _ => wire.insert(at, b"\r\n:0;"[(next() % 5) as usize]),
                }
            }
            let mut reader = ResponseReader::new(if round % 7 == 0 { "HEAD" } else { "POST" });
            let mut pending = Vec::new();
            let mut offset = 0;
            while offset < wire.len() && reader.response().is_none() {
                let end = (offset + 1 + (next() as usize) % 16).min(wire.len());
                pending.extend_from_slice(&wire[offset..end]);
                offset = end;
                match reader.handle_input(&pending) {
                    Ok(used) => {
                        assert!(used <= pending.len());
                        pending.drain(..used);
                    }
                    Err(_) => break,
                }
            }
            let _ = reader.handle_eof();
        }
    }
}
