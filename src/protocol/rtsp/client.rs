//! RTSP 1.0 (RFC 2326), the client side, sans-IO: how ringcast pulls a camera's stream.
//!
//! One [`ClientConnection`] is one TCP connection to a camera (or any RTSP server), playing
//! one stream: OPTIONS, DESCRIBE, a SETUP of each track it keeps, PLAY, keep-alives while
//! the media flows, TEARDOWN at the end. Media comes interleaved on the same connection
//! (`RTP/AVP/TCP`), each track on the channel pair its SETUP asked for.
//!
//! # What the driver does
//!
//! Connect, then loop: [`ClientConnection::poll_transmit`] and write, read and
//! [`ClientConnection::handle_input`], drain [`ClientConnection::poll_event`]
//! ([`Event::Described`] gives the tracks and so the sequence headers; [`Event::Rtp`] a
//! track's packet for its `rtp::Depacketizer`), and sleep until
//! [`ClientConnection::poll_timeout`] (every time here is a `Duration` since an origin the
//! driver chose) to call [`ClientConnection::handle_timeout`] (a
//! response that never came, a keep-alive due). An error ends the connection: the driver
//! closes it and, if it wants, starts a new one. [`ClientConnection::teardown`] queues the
//! TEARDOWN a polite end sends; nothing waits for its answer.
//!
//! # Decisions the RFC leaves open
//!
//! - Tracks: the first video and the first audio track the hub can carry (H.264, H.265,
//!   AAC, G.711; `sdp::parse` says which); the others are skipped and said.
//! - Credentials come from the URL (`rtsp://user:pass@host/...`) and are sent only after a
//!   401 asked for them: Digest when offered (the password never travels), else Basic. A
//!   second 401 for the same request is [`ClientError::Unauthorized`].
//! - Keep-alive: GET_PARAMETER when OPTIONS listed it (what cameras expect), else OPTIONS,
//!   every half of the session's timeout (`Session: id;timeout=N`, 60 s when unsaid).
//! - A response must come within `response_timeout`; media has no such deadline here (the
//!   driver decides how long a silent camera is kept).

use std::collections::VecDeque;
use std::fmt::Write as _;
// Time is a parameter: `now` is how long since an origin the driver keeps (an `Instant` of
// its own), so this module needs no clock.
use core::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};

use super::auth::{self, DigestCredentials, Offered};
use super::message::{self, Check, FrameError};
use super::transport::{self, Lower};
use super::url::{self, UrlError};
use crate::protocol::flv::MediaKind;
use crate::protocol::limits::WireLimits;
use crate::protocol::rtp::interleaved;
use crate::protocol::sdp::{self, SdpError, Track};

/// The session timeout RFC 2326 (12.37) gives a server that names none.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest keep-alive period, whatever timeout a server announces.
const MIN_KEEPALIVE: Duration = Duration::from_secs(1);

/// What the client is told to pull, and how patient it is.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The stream's URL without credentials: what every request names.
    pub url: String,
    /// The URL's credentials, sent only when a 401 asks for them.
    pub user: Option<String>,
    pub pass: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How long a request waits for its response before the connection is given up.
    pub response_timeout: Duration,
    /// Bounds of a response's head and body (an SDP is a few KiB at most).
    pub limits: WireLimits,
}

impl ClientSettings {
    /// Settings for `url` (`rtsp://[user[:pass]@]host[:port]/path`), its credentials taken
    /// out of what requests name.
    pub fn for_url(url: &str) -> Result<ClientSettings, UrlError> {
        let target = url::parse(url, &[])?;
        Ok(ClientSettings {
            url: url::without_credentials(url),
            user: target.user,
            pass: target.pass,
            user_agent: "ringcast".to_owned(),
            response_timeout: Duration::from_secs(10),
            limits: WireLimits::default(),
        })
    }
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// DESCRIBE answered: the tracks SETUP asks for (indexes of [`Event::Rtp`]), and the media
    /// lines skipped, as "media N: why".
    Described { tracks: Vec<Track>, skipped: Vec<String> },
    /// PLAY answered: media follows.
    Playing,
    /// An RTP packet of track `track`.
    Rtp { track: usize, payload: Bytes },
    /// An RTCP packet (sender reports) of track `track`.
    Rtcp { track: usize, payload: Bytes },
}

/// Why the connection cannot go on. None of them carries the URL's credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{method} answered {status} {reason}")]
    Status { method: &'static str, status: u16, reason: String },
    #[error("{method} answered 401: credentials missing or refused")]
    Unauthorized { method: &'static str },
    #[error("no answer to {method} within {timeout:?}")]
    Timeout { method: &'static str, timeout: Duration },
    #[error("response: {0}")]
    Framing(#[from] FrameError),
    #[error("malformed response")]
    Malformed,
    #[error("{0}")]
    Sdp(#[from] SdpError),
    #[error("SETUP answered without a Session header")]
    NoSession,
}

/// The methods this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Options,
    Describe,
    Setup {
        track: usize,
    },
    Play,
    /// A keep-alive: GET_PARAMETER or OPTIONS.
    KeepAlive {
        get_parameter: bool,
    },
    Teardown,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Options | Method::KeepAlive { get_parameter: false } => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Setup { .. } => "SETUP",
            Method::Play => "PLAY",
            Method::KeepAlive { get_parameter: true } => "GET_PARAMETER",
            Method::Teardown => "TEARDOWN",
        }
    }
}

/// The request waiting for its response.
#[derive(Debug, Clone)]
struct Pending {
    method: Method,
    cseq: u32,
    url: String,
    /// Headers of its own (`Transport`, `Range`, `Accept`), sent again if a 401 asks.
    headers: Vec<(&'static str, String)>,
    deadline: Duration,
    /// Already sent again with credentials after a 401.
    authorized: bool,
}

/// How requests prove who sends them, once a 401 said how.
#[derive(Debug, Clone)]
enum Authorization {
    Basic(String),
    /// Boxed: the fields are most of the client's size, and only Digest cameras need them.
    Digest {
        fields: Box<DigestCredentials>,
        opaque: Option<String>,
        password: String,
        count: u32,
    },
}

/// One parsed response.
struct Response<'a> {
    status: u16,
    reason: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl<'a> Response<'a> {
    /// The status line, headers and body of a framed response; `None` when it is no
    /// RTSP/1.0 response.
    fn parse(message: &'a [u8]) -> Option<Response<'a>> {
        let head_len = message.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&message[..head_len]).ok()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let rest = status_line.strip_prefix("RTSP/1.0 ")?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = code.parse().ok()?;
        let headers = lines
            .filter(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim(), value.trim()))
            .collect();
        Some(Response { status, reason, headers, body: &message[head_len..] })
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| *value)
    }

    fn headers_named(&self, name: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.headers.iter().filter(move |(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| *value)
    }
}

pub struct ClientConnection {
    settings: ClientSettings,
    input: BytesMut,
    transmit: Vec<u8>,
    events: VecDeque<Event>,
    cseq: u32,
    pending: Option<Pending>,
    authorization: Option<Authorization>,
    /// The cnonces' generator, from the caller's randomness.
    random: u64,
    /// The aggregate URL (`Content-Base`), once described.
    base: String,
    tracks: Vec<Track>,
    /// Per kept track, its interleaved (RTP, RTCP) channels as the server confirmed them.
    channels: Vec<Option<(u8, u8)>>,
    session: Option<String>,
    session_timeout: Duration,
    /// OPTIONS listed GET_PARAMETER: the keep-alive that does not look like a new client.
    get_parameter: bool,
    /// When the next keep-alive goes out, while playing.
    next_keepalive: Option<Duration>,
    playing: bool,
    /// An error ended the connection: input is ignored.
    failed: bool,
}

impl ClientConnection {
    /// A connection about to pull `settings.url`; its OPTIONS is queued. `seed` is random
    /// (the driver draws it): Digest cnonces come from it.
    pub fn new(settings: ClientSettings, now: Duration, seed: u64) -> ClientConnection {
        let mut connection = ClientConnection {
            settings,
            input: BytesMut::new(),
            transmit: Vec::new(),
            events: VecDeque::new(),
            cseq: 0,
            pending: None,
            authorization: None,
            random: seed | 1,
            base: String::new(),
            tracks: Vec::new(),
            channels: Vec::new(),
            session: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            get_parameter: false,
            next_keepalive: None,
            playing: false,
            failed: false,
        };
        let url = connection.settings.url.clone();
        connection.send(now, Method::Options, url, Vec::new());
        connection
    }

    /// The tracks kept, once described.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// PLAY was answered: media flows.
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Requests wait to be sent.
    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// Appends the requests to send.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.transmit);
    }

    /// What happened, in order: the description, PLAY's answer, then media.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] wants to run next: the pending response's deadline, or the
    /// next keep-alive.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.failed {
            return None;
        }
        match (self.pending.as_ref().map(|pending| pending.deadline), self.next_keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: a response past its deadline ends the connection; a due
    /// keep-alive is queued.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), ClientError> {
        if self.failed {
            return Ok(());
        }
        if let Some(pending) = &self.pending
            && now >= pending.deadline
        {
            self.failed = true;
            return Err(ClientError::Timeout {
                method: pending.method.as_str(),
                timeout: self.settings.response_timeout,
            });
        }
        if let Some(due) = self.next_keepalive
            && now >= due
        {
            self.next_keepalive = Some(now + self.keepalive_period());
            // A keep-alive still unanswered is enough: its deadline is the check.
            if self.pending.is_none() {
                let (method, url) = (Method::KeepAlive { get_parameter: self.get_parameter }, self.base.clone());
                self.send(now, method, url, Vec::new());
            }
        }
        Ok(())
    }

    /// Queues TEARDOWN (when a session exists); the connection is done after it.
    pub fn teardown(&mut self, now: Duration) {
        if self.session.is_some() && !self.failed {
            let url = self.base.clone();
            self.send(now, Method::Teardown, url, Vec::new());
        }
        self.failed = true;
        self.next_keepalive = None;
    }

    /// Feeds bytes read from the connection: responses and interleaved media.
    pub fn handle_input(&mut self, now: Duration, data: &[u8]) -> Result<(), ClientError> {
        if self.failed {
            return Ok(());
        }
        self.input.extend_from_slice(data);
        let result = self.process(now);
        if result.is_err() {
            self.failed = true;
            self.next_keepalive = None;
        }
        result
    }

    fn process(&mut self, now: Duration) -> Result<(), ClientError> {
        while let Some(&first) = self.input.first() {
            if first == interleaved::MAGIC {
                let Some(frame) = interleaved::check(&self.input) else { return Ok(()) };
                if self.input.len() < frame.total_len() {
                    return Ok(());
                }
                let payload = self.input.split_to(frame.total_len()).freeze().slice(interleaved::HEADER_LEN..);
                self.interleaved(frame.channel, payload);
                continue;
            }
            let Check::Complete { len } = message::check(&self.input, &self.settings.limits)? else { return Ok(()) };
            let message = self.input.split_to(len).freeze();
            if message.starts_with(b"RTSP/") {
                self.response(now, &message)?;
            } else {
                self.server_request(&message)?;
            }
        }
        Ok(())
    }

    fn interleaved(&mut self, channel: u8, payload: Bytes) {
        let found = self.channels.iter().enumerate().find_map(|(track, channels)| match channels {
            Some((rtp, _)) if *rtp == channel => Some((track, false)),
            Some((_, rtcp)) if *rtcp == channel => Some((track, true)),
            _ => None,
        });
        match found {
            Some((track, false)) => self.events.push_back(Event::Rtp { track, payload }),
            Some((track, true)) => self.events.push_back(Event::Rtcp { track, payload }),
            // A channel nobody set up (some servers send RTCP of their own): ignored.
            None => {}
        }
    }

    /// A request from the server (some send OPTIONS or GET_PARAMETER as their keep-alive):
    /// those two are answered 200, anything else 501.
    fn server_request(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let line_end = message.iter().position(|byte| *byte == b'\r').ok_or(ClientError::Malformed)?;
        if !message[..line_end].ends_with(b" RTSP/1.0") {
            return Err(ClientError::Malformed);
        }
        let method = message[..line_end].split(|byte| *byte == b' ').next().unwrap_or_default();
        let cseq = message::header_value(message, "cseq").and_then(|value| value.trim().parse::<u32>().ok());
        let status = match method {
            b"OPTIONS" | b"GET_PARAMETER" => super::Status::OK,
            _ => super::Status::NOT_IMPLEMENTED,
        };
        let reply = message::Response::new(status, cseq);
        let mut out = Vec::new();
        reply.write(&self.settings.user_agent, &mut out);
        // `Response::write` names the sender `Server:`; a client says `User-Agent:`.
        let text = String::from_utf8_lossy(&out).replacen("\r\nServer: ", "\r\nUser-Agent: ", 1);
        self.transmit.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn response(&mut self, now: Duration, message: &[u8]) -> Result<(), ClientError> {
        let response = Response::parse(message).ok_or(ClientError::Malformed)?;
        let cseq = response.header("CSeq").and_then(|value| value.parse::<u32>().ok());
        let Some(pending) = self.pending.take_if(|pending| Some(pending.cseq) == cseq) else {
            // An answer to nothing this client waits for (a late keep-alive's): ignored.
            return Ok(());
        };
        let method = pending.method;
        if response.status == 401 && self.authorize(&pending, &response) {
            let Pending { method, url, headers, .. } = pending;
            self.send(now, method, url, headers);
            if let Some(resent) = &mut self.pending {
                resent.authorized = true;
            }
            return Ok(());
        }
        if let Method::KeepAlive { .. } | Method::Teardown = method {
            // A server that does not know the keep-alive still saw the session used; only a
            // session it forgot ends it.
            return match response.status {
                454 => Err(status_error(method, &response)),
                _ => Ok(()),
            };
        }
        match response.status {
            200..=299 => {}
            401 => return Err(ClientError::Unauthorized { method: method.as_str() }),
            _ => return Err(status_error(method, &response)),
        }
        match method {
            Method::Options => {
                self.get_parameter = response
                    .header("Public")
                    .is_some_and(|public| public.split(',').any(|m| m.trim().eq_ignore_ascii_case("GET_PARAMETER")));
                let url = self.settings.url.clone();
                self.send(now, Method::Describe, url, vec![("Accept", "application/sdp".to_owned())]);
            }
            Method::Describe => self.described(now, &response)?,
            Method::Setup { track } => {
                let session = response.header("Session").ok_or(ClientError::NoSession)?;
                let mut parts = session.split(';');
                self.session = Some(parts.next().unwrap_or_default().trim().to_owned());
                if let Some(secs) = parts.find_map(|part| part.trim().strip_prefix("timeout="))
                    && let Ok(secs) = secs.trim().parse::<u64>()
                {
                    self.session_timeout = Duration::from_secs(secs.max(1));
                }
                // The server may move the track to other channels; it says so.
                let confirmed =
                    response.header("Transport").and_then(transport::parse).and_then(|reply| match reply.lower {
                        Lower::Tcp { interleaved } => interleaved,
                        Lower::Udp { .. } => None,
                    });
                if let (Some(pair), Some(slot)) = (confirmed, self.channels.get_mut(track)) {
                    *slot = Some(pair);
                }
                self.setup_next(now, track + 1);
            }
            Method::Play => {
                self.playing = true;
                self.next_keepalive = Some(now + self.keepalive_period());
                self.events.push_back(Event::Playing);
            }
            Method::KeepAlive { .. } | Method::Teardown => {}
        }
        Ok(())
    }

    /// Keeps the first video and first audio track of the description and sets the first up.
    fn described(&mut self, now: Duration, response: &Response<'_>) -> Result<(), ClientError> {
        let base = response.header("Content-Base").or_else(|| response.header("Content-Location"));
        self.base = base.map_or_else(|| self.settings.url.clone(), url::without_credentials);
        let announced = sdp::parse(response.body)?;
        let mut skipped = announced.skipped;
        let (mut video, mut audio) = (false, false);
        for (index, track) in announced.tracks.into_iter().enumerate() {
            let seen = match track.codec.kind() {
                MediaKind::Video => &mut video,
                _ => &mut audio,
            };
            if std::mem::replace(seen, true) {
                skipped.push(format!("media {index}: a second track of its kind"));
                continue;
            }
            self.tracks.push(track);
        }
        self.channels = (0..self.tracks.len()).map(|track| Some(channel_pair(track))).collect();
        self.events.push_back(Event::Described { tracks: self.tracks.clone(), skipped });
        self.setup_next(now, 0);
        Ok(())
    }

    /// SETUP of track `track`, or PLAY once every kept track is set up.
    fn setup_next(&mut self, now: Duration, track: usize) {
        let Some(kept) = self.tracks.get(track) else {
            let base = self.base.clone();
            self.send(now, Method::Play, base, vec![("Range", "npt=0.000-".to_owned())]);
            return;
        };
        let url = control_url(&self.base, &kept.control);
        let (rtp, rtcp) = channel_pair(track);
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}");
        self.send(now, Method::Setup { track }, url, vec![("Transport", transport)]);
    }

    /// Takes the 401's challenge for the requests to come; `false` when the request cannot
    /// be sent again (no credentials, already sent with them, nothing this client answers).
    fn authorize(&mut self, pending: &Pending, response: &Response<'_>) -> bool {
        let (Some(user), false) = (self.settings.user.clone(), pending.authorized) else { return false };
        let pass = self.settings.pass.clone().unwrap_or_default();
        let offers: Vec<Offered> =
            response.headers_named("WWW-Authenticate").filter_map(auth::parse_challenge).collect();
        let digest = offers.iter().find_map(|offer| match offer {
            Offered::Digest { realm, nonce, opaque, qop_auth } => Some((realm, nonce, opaque, qop_auth)),
            Offered::Basic => None,
        });
        self.authorization = match digest {
            Some((realm, nonce, opaque, qop_auth)) => Some(Authorization::Digest {
                fields: Box::new(DigestCredentials {
                    user,
                    realm: realm.clone(),
                    nonce: nonce.clone(),
                    qop: qop_auth.then(|| "auth".to_owned()),
                    ..Default::default()
                }),
                opaque: opaque.clone(),
                password: pass,
                count: 0,
            }),
            None if offers.contains(&Offered::Basic) => {
                Some(Authorization::Basic(BASE64.encode(format!("{user}:{pass}"))))
            }
            None => return false,
        };
        true
    }

    fn send(&mut self, now: Duration, method: Method, url: String, headers: Vec<(&'static str, String)>) {
        self.cseq += 1;
        let cseq = self.cseq;
        let name = method.as_str();
        // Values a line break in which would split the request (the configured URL and user
        // agent, a server's realm and nonce echoed) lose their CR and LF.
        let clean = |value: &str| value.replace(['\r', '\n'], "");
        let mut head = format!("{name} {} RTSP/1.0\r\nCSeq: {cseq}\r\n", clean(&url));
        let _ = write!(head, "User-Agent: {}\r\n", clean(&self.settings.user_agent));
        if let Some(authorization) = self.authorization_header(name, &url) {
            let _ = write!(head, "Authorization: {}\r\n", clean(&authorization));
        }
        if let (Some(session), false) = (&self.session, matches!(method, Method::Options | Method::Describe)) {
            let _ = write!(head, "Session: {}\r\n", clean(session));
        }
        for (header, value) in &headers {
            let _ = write!(head, "{header}: {}\r\n", clean(value));
        }
        head.push_str("\r\n");
        self.transmit.extend_from_slice(head.as_bytes());
        let deadline = now + self.settings.response_timeout;
        self.pending = Some(Pending { method, cseq, url, headers, deadline, authorized: false });
    }

    /// The `Authorization` value for `method` on `uri`, once a 401 said how.
    fn authorization_header(&mut self, method: &str, uri: &str) -> Option<String> {
        match self.authorization.as_mut()? {
            Authorization::Basic(encoded) => Some(format!("Basic {encoded}")),
            Authorization::Digest { fields, opaque, password, count } => {
                fields.uri = uri.to_owned();
                if fields.qop.is_some() {
                    *count += 1;
                    self.random ^= self.random << 13;
                    self.random ^= self.random >> 7;
                    self.random ^= self.random << 17;
                    fields.nc = Some(format!("{count:08x}"));
                    fields.cnonce = Some(format!("{:016x}", self.random));
                }
                let response = auth::digest_response(fields, method, password);
                let quoted = |value: &str| value.replace('"', "");
                let mut value = format!(
                    "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\"",
                    quoted(&fields.user),
                    quoted(&fields.realm),
                    quoted(&fields.nonce),
                    quoted(uri),
                );
                if let (Some(qop), Some(nc), Some(cnonce)) = (&fields.qop, &fields.nc, &fields.cnonce) {
                    let _ = write!(value, ", qop={qop}, nc={nc}, cnonce=\"{cnonce}\"");
                }
                if let Some(opaque) = opaque {
                    let _ = write!(value, ", opaque=\"{}\"", quoted(opaque));
                }
                Some(value)
            }
        }
    }

    /// Every half of the session's timeout, so one lost keep-alive still leaves time.
    fn keepalive_period(&self) -> Duration {
        (self.session_timeout / 2).max(MIN_KEEPALIVE)
    }
}

fn status_error(method: Method, response: &Response<'_>) -> ClientError {
    ClientError::Status { method: method.as_str(), status: response.status, reason: response.reason.to_owned() }
}

/// The interleaved channels track `track` asks for: 0-1, 2-3...
fn channel_pair(track: usize) -> (u8, u8) {
    let rtp = (track * 2).min(254) as u8;
    (rtp, rtp + 1)
}

/// A track's SETUP URL: its control, absolute, or relative to the aggregate URL.
fn control_url(base: &str, control: &str) -> String {
    if control.contains("://") {
        url::without_credentials(control)
    } else if control.is_empty() || control == "*" {
        base.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::*;
    use crate::protocol::rtp::RtpCodec;
    use crate::protocol::rtsp::auth::{Challenge, Credentials};
    use crate::protocol::rtsp::server::{self, ServerConnection, ServerSettings, SetupAnswer};

    const URL: &str = "rtsp://cam:secret@127.0.0.1:8554/live/cam1";

    fn client(url: &str, now: Duration) -> ClientConnection {
        ClientConnection::new(ClientSettings::for_url(url).unwrap(), now, 42)
    }

    fn stream_tracks() -> Vec<Track> {
        let video = RtpCodec::from_flv(MediaKind::Video, &hex(AVC_720P_HIGH)).unwrap().unwrap();
        let audio = RtpCodec::from_flv(MediaKind::Audio, &hex(AAC_48K_STEREO_LC)).unwrap().unwrap();
        vec![Track::new(video, 0), Track::new(audio, 1)]
    }

    /// ringcast's own RTSP server state machine as the camera, its driver's decisions made
    /// here: a stream with H.264 and AAC, and a Digest password when `password` is set.
    struct Camera {
        server: ServerConnection,
        password: Option<&'static str>,
        nonce: &'static str,
        /// Requests that reached the driver, by method.
        seen: Vec<&'static str>,
    }

    impl Camera {
        fn new(password: Option<&'static str>) -> Camera {
            Camera {
                server: ServerConnection::new(ServerSettings::default(), 7),
                password,
                nonce: "n0nce",
                seen: Vec::new(),
            }
        }

        /// Whether a request's credentials answer this camera's challenge.
        fn authorized(&self, info: &server::RequestInfo, method: &str) -> bool {
            let Some(password) = self.password else { return true };
            matches!(&info.credentials, Some(Credentials::Digest(digest))
                if digest.nonce == self.nonce && digest.verify(method, password))
        }

        fn answer(&mut self) {
            let challenge = Challenge { realm: "cam".into(), nonce: self.nonce.into(), digest: true, basic: false };
            while let Some(event) = self.server.poll_event() {
                match event {
                    server::Event::Describe(info) => {
                        self.seen.push("DESCRIBE");
                        if self.authorized(&info, "DESCRIBE") {
                            self.server.accept_describe(stream_tracks(), 1);
                        } else {
                            self.server.reject_unauthorized(&challenge);
                        }
                    }
                    server::Event::Setup { info, .. } => {
                        self.seen.push("SETUP");
                        if self.authorized(&info, "SETUP") {
                            self.server.accept_setup(SetupAnswer::default());
                        } else {
                            self.server.reject_unauthorized(&challenge);
                        }
                    }
                    server::Event::Play { .. } => {
                        self.seen.push("PLAY");
                        self.server.accept_play(&[]);
                    }
                    server::Event::KeepAlive => self.seen.push("keep-alive"),
                    server::Event::Teardown => self.seen.push("TEARDOWN"),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    /// Runs the client against the camera until neither has anything to say; returns the
    /// client's events, or its error.
    fn converse(client: &mut ClientConnection, camera: &mut Camera, now: Duration) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        loop {
            let mut request = Vec::new();
            client.poll_transmit(&mut request);
            camera.server.handle_input(&request);
            camera.answer();
            let mut reply = Vec::new();
            camera.server.poll_transmit(&mut reply);
            if request.is_empty() && reply.is_empty() {
                return Ok(events);
            }
            // Byte by byte: framing must not depend on how reads split.
            for byte in reply.chunks(1) {
                client.handle_input(now, byte)?;
            }
            events.extend(std::iter::from_fn(|| client.poll_event()));
        }
    }

    fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = interleaved::header(channel, payload.len() as u16).to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn pulls_both_tracks_from_ringcast_server() {
        let now = Duration::from_secs(1000);
        let mut client = client("rtsp://127.0.0.1:8554/live/cam1", now);
        let mut camera = Camera::new(None);
        let events = converse(&mut client, &mut camera, now).unwrap();
        assert_eq!(camera.seen, ["DESCRIBE", "SETUP", "SETUP", "PLAY"]);
        let [Event::Described { tracks, skipped }, Event::Playing] = &events[..] else { panic!("{events:?}") };
        assert_eq!(tracks, &stream_tracks());
        assert!(skipped.is_empty());
        assert_eq!(tracks[0].codec.sequence_header(), Some(hex(AVC_720P_HIGH)), "the camera's SPS and PPS arrive");
        assert!(client.is_playing());
        assert_eq!(camera.server.state(), server::State::Playing);
        // The server confirmed the channels asked for: 0-1 video, 2-3 audio.
        assert_eq!(camera.server.setups().len(), 2);
        let mut media = frame(0, b"\x80\x60video");
        media.extend(frame(3, b"\x80\xc8rtcp"));
        media.extend(frame(9, b"nobody's"));
        client.handle_input(now, &media).unwrap();
        assert_eq!(client.poll_event(), Some(Event::Rtp { track: 0, payload: Bytes::from_static(b"\x80\x60video") }));
        assert_eq!(client.poll_event(), Some(Event::Rtcp { track: 1, payload: Bytes::from_static(b"\x80\xc8rtcp") }));
        assert_eq!(client.poll_event(), None);

        // Keep-alive at half the announced 60 s: OPTIONS, as this server's Public lists
        // GET_PARAMETER it is GET_PARAMETER.
        assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(30)));
        client.handle_timeout(now + Duration::from_secs(29)).unwrap();
        assert!(!client.has_transmit());
        client.handle_timeout(now + Duration::from_secs(30)).unwrap();
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        let request = String::from_utf8(out.clone()).unwrap();
        assert!(
            request.starts_with("GET_PARAMETER rtsp://127.0.0.1:8554/live/cam1/ RTSP/1.0\r\nCSeq: 6\r\n"),
            "{request}"
        );
        assert!(request.contains("Session: 0000000000000007\r\n"), "{request}");
        camera.server.handle_input(&out);
        camera.answer();
        assert_eq!(camera.seen.last(), Some(&"keep-alive"));
        client.teardown(now);
        converse(&mut client, &mut camera, now).unwrap();
        assert_eq!(camera.seen.last(), Some(&"TEARDOWN"));
    }

    #[test]
    fn answers_a_digest_challenge_with_the_url_credentials() {
        let now = Duration::from_secs(1000);
        let mut client = client(URL, now);
        let mut camera = Camera::new(Some("secret"));
        let events = converse(&mut client, &mut camera, now).unwrap();
        // DESCRIBE twice (401, then answered); every later request carries credentials.
        assert_eq!(camera.seen, ["DESCRIBE", "DESCRIBE", "SETUP", "SETUP", "PLAY"]);
        assert!(matches!(events.last(), Some(Event::Playing)));

        let mut client = self::client("rtsp://cam:wrong@127.0.0.1:8554/live/cam1", now);
        let mut camera = Camera::new(Some("secret"));
        assert_eq!(
            converse(&mut client, &mut camera, now).unwrap_err(),
            ClientError::Unauthorized { method: "DESCRIBE" }
        );
        assert_eq!(camera.seen, ["DESCRIBE", "DESCRIBE"], "one retry, no more");
        // Without credentials there is nothing to retry with.
        let mut client = self::client("rtsp://127.0.0.1:8554/live/cam1", now);
        let mut camera = Camera::new(Some("secret"));
        assert!(converse(&mut client, &mut camera, now).is_err());
        assert_eq!(camera.seen, ["DESCRIBE"]);
    }

    /// Splits transmitted requests for raw-byte exchanges.
    fn sent(client: &mut ClientConnection) -> String {
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn raw_camera_with_basic_qop_digest_and_absolute_controls() {
        let now = Duration::from_secs(1000);
        let mut client = client("rtsp://admin:pw@10.0.0.2/Streaming/Channels/101", now);
        assert_eq!(
            sent(&mut client),
            "OPTIONS rtsp://10.0.0.2/Streaming/Channels/101 RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: ringcast\r\n\r\n"
        );
        // A camera that asks for credentials already at OPTIONS, Basic only.
        client
            .handle_input(now, b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"c\"\r\n\r\n")
            .unwrap();
        let retry = sent(&mut client);
        assert!(retry.starts_with("OPTIONS rtsp://10.0.0.2/Streaming/Channels/101 RTSP/1.0\r\nCSeq: 2\r\n"));
        assert!(retry.contains("Authorization: Basic YWRtaW46cHc=\r\n"), "{retry}");
        client
            .handle_input(now, b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY\r\n\r\n")
            .unwrap();
        let describe = sent(&mut client);
        assert!(describe.starts_with("DESCRIBE rtsp://10.0.0.2/Streaming/Channels/101 RTSP/1.0\r\nCSeq: 3\r\n"));
        assert!(describe.contains("Accept: application/sdp\r\n") && describe.contains("Authorization: Basic"));
        // Now Digest with qop=auth (the realm's nonce changed), as some firmware does.
        client
            .handle_input(
                now,
                b"RTSP/1.0 401 Unauthorized\r\nCSeq: 3\r\nWWW-Authenticate: Basic realm=\"c\"\r\nWWW-Authenticate: Digest realm=\"c\", nonce=\"abc\", qop=\"auth\", opaque=\"op\"\r\n\r\n",
            )
            .unwrap();
        let retry = sent(&mut client);
        let header = retry.lines().find_map(|line| line.strip_prefix("Authorization: ")).unwrap();
        assert!(header.contains("opaque=\"op\"") && header.contains("nc=00000001"), "{header}");
        let Some(Credentials::Digest(digest)) = auth::parse_authorization(header) else { panic!("{header}") };
        assert!(digest.verify("DESCRIBE", "pw"));
        assert_eq!(digest.uri, "rtsp://10.0.0.2/Streaming/Channels/101");
        // Three media: H.264 with an absolute control, a second video, and PCMU.
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=Media\r\nt=0 0\r\n\
            m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:rtsp://10.0.0.2/Streaming/Channels/101/trackID=1\r\n\
            m=video 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=control:trackID=9\r\n\
            m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:trackID=2\r\n";
        let reply = format!(
            "RTSP/1.0 200 OK\r\nCSeq: 4\r\nContent-Type: application/sdp\r\nContent-Base: rtsp://10.0.0.2/Streaming/Channels/101/\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        client.handle_input(now, reply.as_bytes()).unwrap();
        let Some(Event::Described { tracks, skipped }) = client.poll_event() else { panic!() };
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[1].codec, RtpCodec::Pcmu { channels: 1 });
        assert_eq!(skipped, ["media 1: a second track of its kind"]);
        let setup = sent(&mut client);
        assert!(
            setup.starts_with("SETUP rtsp://10.0.0.2/Streaming/Channels/101/trackID=1 RTSP/1.0\r\nCSeq: 5\r\n"),
            "{setup}"
        );
        assert!(setup.contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"), "{setup}");
        assert!(setup.contains("nc=00000002"), "the Digest count goes on: {setup}");
        client
            .handle_input(now, b"RTSP/1.0 200 OK\r\nCSeq: 5\r\nSession: 5A1B;timeout=10\r\nTransport: RTP/AVP/TCP;unicast;interleaved=4-5\r\n\r\n")
            .unwrap();
        let setup = sent(&mut client);
        assert!(setup.starts_with("SETUP rtsp://10.0.0.2/Streaming/Channels/101/trackID=2 RTSP/1.0\r\n"), "{setup}");
        assert!(setup.contains("Session: 5A1B\r\n") && setup.contains("interleaved=2-3"), "{setup}");
        client.handle_input(now, b"RTSP/1.0 200 OK\r\nCSeq: 6\r\nSession: 5A1B\r\n\r\n").unwrap();
        let play = sent(&mut client);
        assert!(play.starts_with("PLAY rtsp://10.0.0.2/Streaming/Channels/101/ RTSP/1.0\r\n"), "{play}");
        assert!(play.contains("Range: npt=0.000-\r\n"), "{play}");
        client.handle_input(now, b"RTSP/1.0 200 OK\r\nCSeq: 7\r\nSession: 5A1B\r\n\r\n").unwrap();
        assert_eq!(client.poll_event(), Some(Event::Playing));
        // Video moved to 4-5 as the camera said; no GET_PARAMETER in Public: OPTIONS every 5 s.
        client.handle_input(now, &frame(4, b"v")).unwrap();
        assert_eq!(client.poll_event(), Some(Event::Rtp { track: 0, payload: Bytes::from_static(b"v") }));
        client.handle_timeout(now + Duration::from_secs(5)).unwrap();
        assert!(
            sent(&mut client).starts_with("OPTIONS rtsp://10.0.0.2/Streaming/Channels/101/ RTSP/1.0\r\nCSeq: 8\r\n")
        );
        // A keep-alive the camera does not know is no reason to stop; a forgotten session is.
        client.handle_input(now, b"RTSP/1.0 501 Not Implemented\r\nCSeq: 8\r\n\r\n").unwrap();
        // The server's own keep-alive request is answered.
        client.handle_input(now, b"GET_PARAMETER rtsp://10.0.0.2/ RTSP/1.0\r\nCSeq: 77\r\n\r\n").unwrap();
        assert_eq!(sent(&mut client), "RTSP/1.0 200 OK\r\nCSeq: 77\r\nUser-Agent: ringcast\r\n\r\n");
        client.handle_timeout(now + Duration::from_secs(10)).unwrap();
        let _ = sent(&mut client);
        assert_eq!(
            client.handle_input(now, b"RTSP/1.0 454 Session Not Found\r\nCSeq: 9\r\n\r\n"),
            Err(ClientError::Status { method: "OPTIONS", status: 454, reason: "Session Not Found".into() })
        );
    }

    #[test]
    fn errors_end_the_connection() {
        let now = Duration::from_secs(1000);
        // A stream the camera does not have.
        let mut c = client("rtsp://10.0.0.2/nothing", now);
        let _ = sent(&mut c);
        c.handle_input(now, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n").unwrap();
        assert_eq!(
            c.handle_input(now, b"RTSP/1.0 404 Stream Not Found\r\nCSeq: 2\r\n\r\n"),
            Err(ClientError::Status { method: "DESCRIBE", status: 404, reason: "Stream Not Found".into() })
        );
        assert_eq!(c.handle_input(now, b"anything"), Ok(()), "nothing more is read");
        assert_eq!(c.poll_timeout(), None);
        // A camera that never answers.
        let mut c = client("rtsp://10.0.0.2/x", now);
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(10)));
        assert_eq!(c.handle_timeout(now + Duration::from_secs(9)), Ok(()));
        assert!(matches!(
            c.handle_timeout(now + Duration::from_secs(10)),
            Err(ClientError::Timeout { method: "OPTIONS", .. })
        ));
        // Not RTSP at all, and an SDP with nothing the hub carries.
        let mut c = client("rtsp://10.0.0.2/x", now);
        assert_eq!(c.handle_input(now, b"HTTP/1.1 200 OK\r\n\r\n"), Err(ClientError::Malformed));
        let mut c = client("rtsp://10.0.0.2/x", now);
        c.handle_input(now, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n").unwrap();
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let reply = format!("RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len());
        assert_eq!(c.handle_input(now, reply.as_bytes()), Err(ClientError::Sdp(SdpError::NoTracks)));
        // A response head past the limit.
        let mut c = client("rtsp://10.0.0.2/x", now);
        let huge = format!("RTSP/1.0 200 OK\r\nX: {}", "a".repeat(message::MAX_HEAD));
        assert_eq!(c.handle_input(now, huge.as_bytes()), Err(ClientError::Framing(FrameError::HeadTooLarge)));
    }

    #[test]
    fn credentials_stay_out_of_requests_until_asked_and_out_of_errors() {
        let now = Duration::from_secs(1000);
        let mut c = client("rtsp://u%40x:p%3Ass@10.0.0.2/x", now);
        let request = sent(&mut c);
        assert!(!request.contains("p:ss") && !request.contains("u@x") && !request.contains('@'), "{request}");
        assert!(!request.contains("Authorization"));
        let error = c.handle_input(now, b"RTSP/1.0 403 Forbidden\r\nCSeq: 1\r\n\r\n").unwrap_err();
        assert!(!error.to_string().contains("p:ss"));
    }

    #[test]
    fn control_urls() {
        assert_eq!(control_url("rtsp://h/a/", "trackID=0"), "rtsp://h/a/trackID=0");
        assert_eq!(control_url("rtsp://h/a", "trackID=0"), "rtsp://h/a/trackID=0");
        assert_eq!(control_url("rtsp://h/a", "*"), "rtsp://h/a");
        assert_eq!(control_url("rtsp://h/a", "rtsp://u:p@h/b/1"), "rtsp://h/b/1");
    }
}
