//! HTTP/1.1 as a media server reads it: one request head per connection (HTTP-FLV and its
//! WebSocket upgrade), and the heads of the replies.
//!
//! Layout: [`check`] finds where a head ends without parsing it (a slow client's partial head
//! is scanned, not parsed, on every read); [`RequestHead::parse`] reads a complete head with
//! httparse into what the session needs (method, path and query, the few headers that
//! matter); [`StreamTarget::parse`] maps a path to `app` and stream `name`; [`ResponseHead`]
//! encodes a status line and headers. Bodies are never read: a player sends none.

use crate::protocol::rtmp::server::{Args, caps, parse_query};

/// Largest request head accepted by default (`max_http_request_head_bytes`); past it the client
/// gets `431`. A player's head is a request line and a dozen short headers (browsers send well
/// under 2 KiB).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Most header lines read from one head; more is `431` too.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head has not ended yet: read more.
    #[error("incomplete request head")]
    Incomplete,
    #[error("request head over the size limit or with more than {MAX_HEADERS} headers")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The status a client is answered with, if any (an incomplete head gets none).
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadError::Incomplete => None,
            HeadError::TooLarge => Some(431),
            HeadError::Malformed(_) => Some(400),
        }
    }
}

/// Where the head in `input` ends (the length of the head, blank line included), or
/// `Incomplete`, or `TooLarge` once `input` holds `max_head` bytes without an end. A cheap
/// scan for the blank line, before any parsing.
pub fn check(input: &[u8], max_head: usize) -> Result<usize, HeadError> {
    let window = &input[..input.len().min(max_head)];
    // httparse takes bare LF line ends too; so does this.
    let mut at = 0;
    while let Some(offset) = window[at..].iter().position(|&b| b == b'\n') {
        let lf = at + offset;
        let rest = &window[lf + 1..];
        if rest.first() == Some(&b'\n') {
            return Ok(lf + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Ok(lf + 3);
        }
        if rest.is_empty() || rest == b"\r" {
            break;
        }
        at = lf + 1;
    }
    if input.len() >= max_head { Err(HeadError::TooLarge) } else { Err(HeadError::Incomplete) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// Any other method: answered `405`.
    Other,
}

/// What a WebSocket upgrade request carries (RFC 6455 section 4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, as sent (validated: base64 of 16 bytes).
    pub key: String,
    /// `Sec-WebSocket-Version`: only 13 is spoken.
    pub version_13: bool,
}

/// A parsed request head: the request line and the headers the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The target's path, still percent-encoded (origin form: starts with `/`).
    pub path: String,
    /// The target's query, without `?`; empty when there is none.
    pub query: String,
    /// `Host`, empty if absent (HTTP/1.0).
    pub host: String,
    pub user_agent: String,
    /// `Referer`: the page a browser player runs on.
    pub referer: String,
    /// Set when the client asks for a WebSocket (`Upgrade: websocket` with `Connection:
    /// upgrade`); the key is checked by [`RequestHead::parse`].
    pub upgrade: Option<Upgrade>,
}

impl RequestHead {
    /// Parses the complete head at the start of `input` (its length is what [`check`]
    /// returned). What a client names is capped here, before any hook sees it: the target at
    /// [`caps::URL`] bytes, `User-Agent` at [`caps::NAME`], `Host` and `Referer` at
    /// [`caps::URL`].
    pub fn parse(input: &[u8]) -> Result<RequestHead, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(input) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HeadError::Incomplete),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x request head")),
        }
        let method = match request.method.unwrap_or_default() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        };
        let target = request.path.unwrap_or_default();
        if target.len() > caps::URL {
            return Err(HeadError::Malformed("request target too long"));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        // The fragment is never sent by a conforming client; drop it if one is.
        let query = query.split('#').next().unwrap_or_default();
        if !path.starts_with('/') && method != Method::Options {
            return Err(HeadError::Malformed("request target is not a path"));
        }
        let mut head = RequestHead {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            host: String::new(),
            user_agent: String::new(),
            referer: String::new(),
            upgrade: None,
        };
        let (mut wants_websocket, mut connection_upgrade, mut key, mut version_13) = (false, false, None, false);
        for header in request.headers.iter() {
            let name = header.name;
            let value = std::str::from_utf8(header.value).map_err(|_| HeadError::Malformed("header value not UTF-8"));
            if name.eq_ignore_ascii_case("host") {
                head.host = capped(value?, caps::URL, "Host too long")?;
                if !head.host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)) {
                    return Err(HeadError::Malformed("invalid Host"));
                }
            } else if name.eq_ignore_ascii_case("user-agent") {
                head.user_agent = capped(value?, caps::NAME, "User-Agent too long")?;
            } else if name.eq_ignore_ascii_case("referer") {
                head.referer = capped(value?, caps::URL, "Referer too long")?;
            } else if name.eq_ignore_ascii_case("upgrade") {
                wants_websocket |= tokens(value?).any(|t| t.eq_ignore_ascii_case("websocket"));
            } else if name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= tokens(value?).any(|t| t.eq_ignore_ascii_case("upgrade"));
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value?.trim().to_owned());
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                version_13 = value?.trim() == "13";
            }
        }
        if wants_websocket && connection_upgrade && method == Method::Get {
            let key = key.ok_or(HeadError::Malformed("WebSocket upgrade without Sec-WebSocket-Key"))?;
            if !super::websocket::valid_key(&key) {
                return Err(HeadError::Malformed("invalid Sec-WebSocket-Key"));
            }
            head.upgrade = Some(Upgrade { key, version_13 });
        }
        Ok(head)
    }
}

fn capped(value: &str, cap: usize, error: &'static str) -> Result<String, HeadError> {
    if value.len() > cap { Err(HeadError::Malformed(error)) } else { Ok(value.trim().to_owned()) }
}

fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim)
}

/// The stream a path names: `/{app}/{name}.flv`, the app possibly of several segments
/// (`/a/b/cam.flv` is app `a/b`, name `cam`), both percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    pub app: String,
    pub name: String,
    /// The query's arguments, decoded, in order.
    pub args: Args,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a path this server serves: `404`.
    #[error("no such path")]
    NotFound,
    /// A stream path whose parts are unusable (bad percent-encoding, over a cap): `400`.
    #[error("{0}")]
    Invalid(&'static str),
}

impl StreamTarget {
    pub fn parse(path: &str, query: &str) -> Result<StreamTarget, TargetError> {
        let stem = path.strip_prefix('/').and_then(|p| p.strip_suffix(".flv")).ok_or(TargetError::NotFound)?;
        let (app, name) = stem.rsplit_once('/').ok_or(TargetError::NotFound)?;
        if app.is_empty() || name.is_empty() || app.split('/').any(str::is_empty) {
            return Err(TargetError::NotFound);
        }
        let app = percent_decode(app)?;
        let name = percent_decode(name)?;
        if name.contains('/') || app.len() > caps::NAME || name.len() > caps::NAME {
            return Err(TargetError::Invalid("app or stream name too long, or a name with '/'"));
        }
        let args = parse_query(query);
        if args.len() > caps::ARGS {
            return Err(TargetError::Invalid("too many query arguments"));
        }
        Ok(StreamTarget { app, name, args })
    }
}

/// `%41` -> `A`; the result must be UTF-8 without control characters (a name reaches logs,
/// hook forms and file names of other tools).
fn percent_decode(text: &str) -> Result<String, TargetError> {
    let invalid = TargetError::Invalid("bad percent-encoding in the path");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(invalid.clone())?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid.clone())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| invalid.clone())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| invalid.clone())?;
    if decoded.chars().any(char::is_control) {
        return Err(invalid);
    }
    Ok(decoded)
}

/// A response head to encode: the status line and headers, then the blank line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub headers: &'a [(&'a str, &'a str)],
}

impl ResponseHead<'_> {
    /// Appends the head to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::xorshift;

    /// [`super::check`] with the default limit.
    fn check(input: &[u8]) -> Result<usize, HeadError> {
        super::check(input, MAX_REQUEST_HEAD)
    }

    const PLAYER: &[u8] = b"GET /live/cam1.flv?token=abc&x=1 HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\nUser-Agent: Lavf/59.27.100\r\nAccept: */*\r\nRange: bytes=0-\r\n\
Connection: close\r\nIcy-MetaData: 1\r\n\r\n";

    const BROWSER_WS: &[u8] = b"GET /live/cam1.flv HTTP/1.1\r\nHost: localhost:8080\r\n\
Connection: Upgrade\r\nPragma: no-cache\r\nUpgrade: websocket\r\n\
Origin: http://localhost:8081\r\nSec-WebSocket-Version: 13\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0\r\n\
Referer: http://localhost:8081/\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

    #[test]
    fn check_finds_the_end_of_a_head_fed_byte_by_byte() {
        for end in 0..PLAYER.len() {
            assert_eq!(check(&PLAYER[..end]), Err(HeadError::Incomplete), "at {end}");
        }
        assert_eq!(check(PLAYER), Ok(PLAYER.len()));
        let mut pipelined = PLAYER.to_vec();
        pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(check(&pipelined), Ok(PLAYER.len()));
        assert_eq!(check(b"GET / HTTP/1.0\n\nrest"), Ok(16));
    }

    #[test]
    fn check_refuses_a_head_past_the_limit() {
        let mut head = b"GET /live/x.flv HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_REQUEST_HEAD - 1, b'a');
        assert_eq!(check(&head), Err(HeadError::Incomplete));
        head.push(b'a');
        assert_eq!(check(&head), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status(), Some(431));
    }

    #[test]
    fn a_lowered_limit_refuses_a_head_the_default_takes() {
        let mut head = b"GET /live/x.flv HTTP/1.1\r\nX: ".to_vec();
        head.resize(2000, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(super::check(&head, 1024), Err(HeadError::TooLarge));
        assert_eq!(super::check(&head[..1023], 1024), Err(HeadError::Incomplete));
        assert_eq!(super::check(&head, MAX_REQUEST_HEAD), Ok(head.len()));
        assert_eq!(super::check(PLAYER, 1024), Ok(PLAYER.len()));
    }

    #[test]
    fn parses_an_ffmpeg_player_request() {
        let head = RequestHead::parse(PLAYER).expect("valid");
        assert_eq!(head.method, Method::Get);
        assert_eq!((head.path.as_str(), head.query.as_str()), ("/live/cam1.flv", "token=abc&x=1"));
        assert_eq!(head.host, "127.0.0.1:8080");
        assert_eq!(head.user_agent, "Lavf/59.27.100");
        assert_eq!(head.upgrade, None);
        let target = StreamTarget::parse(&head.path, &head.query).expect("a stream path");
        assert_eq!((target.app.as_str(), target.name.as_str()), ("live", "cam1"));
        assert_eq!(target.args, vec![("token".to_owned(), "abc".to_owned()), ("x".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn parses_a_browser_websocket_upgrade() {
        let head = RequestHead::parse(BROWSER_WS).expect("valid");
        let upgrade = head.upgrade.expect("an upgrade");
        assert_eq!(upgrade.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(upgrade.version_13);
        assert_eq!(head.referer, "http://localhost:8081/");
    }

    #[test]
    fn an_upgrade_without_a_valid_key_is_malformed() {
        let text = std::str::from_utf8(BROWSER_WS).unwrap();
        let no_key = text.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert!(matches!(RequestHead::parse(no_key.as_bytes()), Err(HeadError::Malformed(_))));
        let bad_key = text.replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        assert!(matches!(RequestHead::parse(bad_key.as_bytes()), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn other_methods_and_garbage() {
        assert_eq!(RequestHead::parse(b"POST /live/x.flv HTTP/1.1\r\n\r\n").unwrap().method, Method::Other);
        assert_eq!(RequestHead::parse(b"HEAD /live/x.flv HTTP/1.0\r\n\r\n").unwrap().method, Method::Head);
        assert_eq!(RequestHead::parse(b"OPTIONS * HTTP/1.1\r\n\r\n").unwrap().method, Method::Options);
        for garbage in [&b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..], b"GET\r\n\r\n", b"\x03\r\n\r\n"] {
            assert!(matches!(RequestHead::parse(garbage), Err(HeadError::Malformed(_))), "{garbage:?}");
        }
        assert!(matches!(
            RequestHead::parse(b"GET http://x/live/a.flv HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let bad_host = b"GET /live/a.flv HTTP/1.1\r\nHost: a b\r\n\r\n";
        assert!(matches!(RequestHead::parse(bad_host), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut head = b"GET /live/x.flv HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(RequestHead::parse(&head), Err(HeadError::TooLarge));
    }

    #[test]
    fn stream_paths() {
        let parse = |path: &str| StreamTarget::parse(path, "").map(|t| (t.app, t.name));
        assert_eq!(parse("/live/cam%201.flv"), Ok(("live".into(), "cam 1".into())));
        assert_eq!(parse("/a/b/cam.flv"), Ok(("a/b".into(), "cam".into())));
        for not_found in ["/", "/favicon.ico", "/cam.flv", "/live/.flv", "/live//x.flv", "//x.flv", "/live/x.mp4"] {
            assert_eq!(parse(not_found), Err(TargetError::NotFound), "{not_found}");
        }
        for invalid in ["/live/%zz.flv", "/live/%ff.flv", "/live/a%2Fb.flv", "/live/%0a.flv", "/live/%4.flv"] {
            assert!(matches!(parse(invalid), Err(TargetError::Invalid(_))), "{invalid}");
        }
        let long = format!("/live/{}.flv", "n".repeat(caps::NAME + 1));
        assert!(matches!(parse(&long), Err(TargetError::Invalid(_))));
        let many: Vec<String> = (0..=caps::ARGS).map(|i| format!("a{i}=1")).collect();
        assert!(matches!(StreamTarget::parse("/live/x.flv", &many.join("&")), Err(TargetError::Invalid(_))));
    }

    #[test]
    fn mutated_heads_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut head = if xorshift(&mut state).is_multiple_of(2) { PLAYER.to_vec() } else { BROWSER_WS.to_vec() };
            for _ in 0..(xorshift(&mut state) % 8) {
                let at = (xorshift(&mut state) as usize) % head.len();
                head[at] = xorshift(&mut state) as u8;
            }
            head.truncate((xorshift(&mut state) as usize) % (head.len() + 1));
            if let Ok(len) = check(&head) {
                assert!(len <= head.len());
                if let Ok(parsed) = RequestHead::parse(&head[..len]) {
                    let _ = StreamTarget::parse(&parsed.path, &parsed.query);
                }
            }
        }
    }

    #[test]
    fn encodes_a_response_head() {
        let mut out = Vec::new();
        ResponseHead { status: 200, headers: &[("Content-Type", "video/x-flv"), ("Connection", "close")] }
            .encode(&mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\n\r\n");
    }
}
