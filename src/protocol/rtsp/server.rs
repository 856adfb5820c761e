//! The server side of one RTSP connection, as a deterministic state machine (RFC 2326,
//! appendix A.1: Init, Ready, Playing, Recording).
//!
//! Shape (as `rtmp::server`): [`ServerConnection::handle_input`] feeds bytes read from the
//! socket, [`ServerConnection::poll_event`] yields requests and interleaved frames,
//! [`ServerConnection::poll_transmit`] appends replies into the caller's buffer. A request that
//! needs a decision from above (DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE) is answered by
//! one of the `accept_*` methods or [`ServerConnection::reject`]; until then no further input
//! is processed, which is how a session waiting for a callback reads nothing more. OPTIONS,
//! GET_PARAMETER, SET_PARAMETER and TEARDOWN are answered here.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::{Message, Method, Version, headers};

use super::auth::{self, Challenge, Credentials};
use super::message::{self, Check, FrameError, Response, Status};
use super::transport::{self, Lower, TransportReply, TransportRequest};
use super::url::{self, Target, UrlError};
use crate::protocol::limits::WireLimits;
use crate::protocol::rtp::interleaved;
use crate::protocol::sdp::{self, Track};

/// Methods this server answers, for OPTIONS' `Public`.
const PUBLIC: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Seconds a session lives without a request or media; announced as `;timeout=`. The
    /// driver enforces it (this state machine has no clock).
    pub session_timeout_secs: u32,
    /// The `Server` header.
    pub server_name: String,
    /// Bounds of a request's head and body.
    pub limits: WireLimits,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { session_timeout_secs: 60, server_name: "ringcast".to_owned(), limits: WireLimits::default() }
    }
}

/// The connection's state (RFC 2326, A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Ready,
    Playing,
    Recording,
}

/// What the described or announced tracks are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing described or announced yet.
    None,
    /// DESCRIBE was answered: the client plays.
    Play,
    /// ANNOUNCE was accepted: the client publishes.
    Record,
}

/// What every request that reaches the driver carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub cseq: Option<u32>,
    /// The request URL as sent (capped at `caps::URL`).
    pub url: String,
    /// Stream, args, track and URL credentials.
    pub target: Target,
    /// From the `Authorization` header.
    pub credentials: Option<Credentials>,
    pub user_agent: Option<String>,
}

impl RequestInfo {
    /// The user and password the hooks get as `user` and `pass`: the URL's, else Basic's
    /// (Digest sends no password: its user only).
    pub fn user_pass(&self) -> (Option<&str>, Option<&str>) {
        match (&self.target.user, &self.credentials) {
            (Some(user), _) => (Some(user.as_str()), self.target.pass.as_deref()),
            (None, Some(Credentials::Basic { user, pass })) => (Some(user.as_str()), Some(pass.as_str())),
            (None, Some(Credentials::Digest(digest))) => (Some(digest.user.as_str()), None),
            (None, None) => (None, None),
        }
    }
}

/// What happened on the connection, for the driver to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Needs [`ServerConnection::accept_describe`] (with the stream's tracks) or a rejection.
    Describe(Box<RequestInfo>),
    /// Needs [`ServerConnection::accept`] or a rejection. `announced` holds the parsed SDP.
    Announce { info: Box<RequestInfo>, announced: sdp::Announced },
    /// Needs [`ServerConnection::accept_setup`] or a rejection. `track` indexes the described
    /// or announced tracks.
    Setup { info: Box<RequestInfo>, track: usize, transport: TransportRequest },
    /// Needs [`ServerConnection::accept_play`] or a rejection. `range` is the `Range` header.
    Play { info: Box<RequestInfo>, range: Option<String> },
    /// Needs [`ServerConnection::accept`] or a rejection.
    Record(Box<RequestInfo>),
    /// Needs [`ServerConnection::accept`]: the driver stops sending (playing) or taking media.
    Pause(Box<RequestInfo>),
    /// Answered already: the client ended the session. The driver flushes and closes.
    Teardown,
    /// Answered already: a request within the session (OPTIONS, GET_PARAMETER,
    /// SET_PARAMETER), which keeps it alive.
    KeepAlive,
    /// An interleaved frame: RTP or RTCP on `channel`.
    Interleaved { channel: u8, payload: Bytes },
    /// The request could not be served and its error reply is queued; further input is
    /// ignored. The driver flushes and closes.
    Refused(Refusal),
}

/// Why the connection refused to go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Framing(#[from] FrameError),
    #[error("malformed request")]
    Malformed,
    #[error("{0}")]
    Url(#[from] UrlError),
}

/// The request a pending decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Describe { cseq: Option<u32>, base: String, authority: String, stream: String },
    Announce { cseq: Option<u32>, tracks: Vec<Track> },
    Setup { cseq: Option<u32>, track: usize, transport: TransportRequest },
    Play { cseq: Option<u32>, base: String },
    Record { cseq: Option<u32> },
    Pause { cseq: Option<u32> },
}

impl Pending {
    fn cseq(&self) -> Option<u32> {
        match self {
            Pending::Describe { cseq, .. }
            | Pending::Announce { cseq, .. }
            | Pending::Setup { cseq, .. }
            | Pending::Play { cseq, .. }
            | Pending::Record { cseq }
            | Pending::Pause { cseq } => *cseq,
        }
    }
}

/// The driver's answer to a SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetupAnswer {
    /// The server's RTP and RTCP ports for a UDP transport (ignored for TCP).
    pub server_port: Option<(u16, u16)>,
    /// The SSRC the track is sent with, for a player.
    pub ssrc: Option<u32>,
}

/// Where a player's track starts, for `RTP-Info` (RFC 2326, 12.33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpInfo {
    pub track: usize,
    /// The sequence number of the first packet the player gets.
    pub sequence: u16,
    /// Its RTP time.
    pub rtp_time: u32,
}

/// A track set up on this connection, and how it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackTransport {
    pub track: usize,
    pub lower: Lower,
}

pub struct ServerConnection {
    settings: ServerSettings,
    /// Input not yet processed.
    input: BytesMut,
    transmit: Vec<u8>,
    events: VecDeque<Event>,
    pending: Option<Pending>,
    state: State,
    mode: Mode,
    /// The session id, from the caller's randomness; announced once a SETUP creates it.
    session_id: String,
    session_created: bool,
    tracks: Vec<Track>,
    setups: Vec<TrackTransport>,
    /// The URL of DESCRIBE or ANNOUNCE, for `Content-Base` and `RTP-Info`.
    base: String,
    /// An error reply or TEARDOWN ended the connection: input is ignored.
    closed: bool,
}

impl ServerConnection {
    /// `session_seed` is random (the driver draws it): it becomes the session id, which is the
    /// only thing that ties a request to a session.
    pub fn new(settings: ServerSettings, session_seed: u64) -> Self {
        ServerConnection {
            settings,
            input: BytesMut::new(),
            transmit: Vec::new(),
            events: VecDeque::new(),
            pending: None,
            state: State::Init,
            mode: Mode::None,
            session_id: format!("{session_seed:016X}"),
            session_created: false,
            tracks: Vec::new(),
            setups: Vec::new(),
            base: String::new(),
            closed: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The described (player) or announced (publisher) tracks.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The tracks set up so far and their transports.
    pub fn setups(&self) -> &[TrackTransport] {
        &self.setups
    }

    /// The track whose RTP (even channel) or RTCP (odd) travels on interleaved `channel`, and
    /// whether it is RTCP.
    pub fn track_of_channel(&self, channel: u8) -> Option<(usize, bool)> {
        self.setups.iter().find_map(|setup| match setup.lower {
            Lower::Tcp { interleaved: Some((rtp, rtcp)) } if rtp == channel || rtcp == channel => {
                Some((setup.track, channel == rtcp))
            }
            _ => None,
        })
    }

    /// A request waits for the driver's decision.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Bytes received but not processed (a decision is pending, or a request is incomplete).
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.transmit);
    }

    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// Feeds bytes read from the socket. Nothing is an error here: a request that cannot be
    /// served is answered, and one that ends the connection yields [`Event::Refused`].
    pub fn handle_input(&mut self, data: &[u8]) {
        if self.closed {
            return;
        }
        self.input.extend_from_slice(data);
        self.process();
    }

    fn process(&mut self) {
        while self.pending.is_none() && !self.closed && !self.input.is_empty() {
            if self.input[0] == interleaved::MAGIC {
                let Some(frame) = interleaved::check(&self.input) else { break };
                if self.input.len() < frame.total_len() {
                    break;
                }
                self.input.advance(interleaved::HEADER_LEN);
                let payload = self.input.split_to(frame.len).freeze();
                self.events.push_back(Event::Interleaved { channel: frame.channel, payload });
                continue;
            }
            // Blank lines between requests are tolerated (RFC 2326 allows a trailing CRLF).
            if matches!(self.input[0], b'\r' | b'\n') {
                self.input.advance(1);
                continue;
            }
            match message::check(&self.input, &self.settings.limits) {
                Ok(Check::Incomplete) => break,
                Ok(Check::Complete { len }) => {
                    let request = self.input.split_to(len);
                    self.handle_request(&request);
                }
                Err(error) => {
                    let (status, cseq) = match error {
                        FrameError::HeadTooLarge => (Status::REQUEST_ENTITY_TOO_LARGE, None),
                        FrameError::BodyTooLarge { cseq } => (Status::REQUEST_ENTITY_TOO_LARGE, cseq),
                        FrameError::BadContentLength { cseq } => (Status::BAD_REQUEST, cseq),
                    };
                    self.refuse(status, cseq, Refusal::Framing(error));
                }
            }
        }
    }

    fn reply(&mut self, response: Response) {
        let response = if self.session_created && !response.headers.iter().any(|(name, _)| *name == "Session") {
            let session = self.session_id.clone();
            response.header("Session", session)
        } else {
            response
        };
        response.write(&self.settings.server_name, &mut self.transmit);
    }

    fn refuse(&mut self, status: Status, cseq: Option<u32>, refusal: Refusal) {
        self.reply(Response::new(status, cseq));
        self.closed = true;
        self.input.clear();
        self.events.push_back(Event::Refused(refusal));
    }

    fn handle_request(&mut self, bytes: &[u8]) {
        let cseq_hint = message::header_value(bytes, "cseq").and_then(|value| value.trim().parse().ok());
        let request = match Message::<Vec<u8>>::parse(bytes) {
            Ok((Message::Request(request), _)) => request,
            // A response (to nothing this server asked) or a data frame in a request's place.
            Ok(_) => return,
            Err(_) => return self.refuse(Status::BAD_REQUEST, cseq_hint, Refusal::Malformed),
        };
        let header = |name: &rtsp_types::HeaderName| request.header(name).map(|value| value.as_str().trim().to_owned());
        let cseq = header(&headers::CSEQ).and_then(|value| value.parse::<u32>().ok());
        if cseq.is_none() {
            return self.reply(Response::new(Status::BAD_REQUEST, None));
        }
        if request.version() != Version::V1_0 {
            return self.reply(Response::new(Status::VERSION_NOT_SUPPORTED, cseq));
        }
        if let Some(session) = header(&headers::SESSION) {
            let id = session.split(';').next().unwrap_or_default().trim();
            if !self.session_created || id != self.session_id {
                return self.reply(Response::new(Status::SESSION_NOT_FOUND, cseq));
            }
        }
        let url = request.request_uri().map(|url| url.as_str().to_owned()).unwrap_or_default();
        let method = request.method().clone();
        let controls: Vec<String> = self.tracks.iter().map(|track| track.control.clone()).collect();
        let target = if url.is_empty() { Ok(Target::default()) } else { url::parse(&url, &controls) };
        let target = match target {
            Ok(target) => target,
            Err(error @ (UrlError::TooLong { .. } | UrlError::TooManyArgs { .. })) => {
                return self.refuse(Status::REQUEST_URI_TOO_LARGE, cseq, Refusal::Url(error));
            }
            Err(UrlError::Scheme) => return self.reply(Response::new(Status::BAD_REQUEST, cseq)),
        };
        if url.is_empty() && !matches!(method, Method::Options | Method::GetParameter | Method::SetParameter) {
            return self.reply(Response::new(Status::BAD_REQUEST, cseq));
        }
        let info = Box::new(RequestInfo {
            cseq,
            url: url.clone(),
            target,
            credentials: header(&headers::AUTHORIZATION).and_then(|value| auth::parse_authorization(&value)),
            user_agent: header(&headers::USER_AGENT),
        });
        match method {
            Method::Options => {
                self.reply(Response::new(Status::OK, cseq).header("Public", PUBLIC));
                if self.session_created {
                    self.events.push_back(Event::KeepAlive);
                }
            }
            Method::GetParameter | Method::SetParameter => {
                self.reply(Response::new(Status::OK, cseq));
                self.events.push_back(Event::KeepAlive);
            }
            Method::Describe => {
                if !matches!(self.state, State::Init | State::Ready) || self.mode == Mode::Record {
                    return self.reply(Response::new(Status::METHOD_NOT_VALID_IN_THIS_STATE, cseq));
                }
                let stream = info.target.stream.clone();
                let authority = info.target.authority.clone();
                self.pending = Some(Pending::Describe { cseq, base: url, authority, stream });
                self.events.push_back(Event::Describe(info));
            }
            Method::Announce => {
                if self.state != State::Init || self.mode != Mode::None || self.session_created {
                    return self.reply(Response::new(Status::METHOD_NOT_VALID_IN_THIS_STATE, cseq));
                }
                let is_sdp =
                    header(&headers::CONTENT_TYPE).is_some_and(|value| value.eq_ignore_ascii_case("application/sdp"));
                if !is_sdp {
                    return self.reply(Response::new(Status::UNSUPPORTED_MEDIA_TYPE, cseq));
                }
                let announced = match sdp::parse(request.body()) {
                    Ok(announced) => announced,
                    Err(_) => return self.reply(Response::new(Status::BAD_REQUEST, cseq)),
                };
                self.base = url;
                self.pending = Some(Pending::Announce { cseq, tracks: announced.tracks.clone() });
                self.events.push_back(Event::Announce { info, announced });
            }
            Method::Setup => self.handle_setup(info, header(&headers::TRANSPORT)),
            Method::Play => {
                let ready = self.mode == Mode::Play && !self.setups.is_empty();
                match self.state {
                    State::Ready if ready => {
                        let base = self.base.clone();
                        self.pending = Some(Pending::Play { cseq, base });
                        self.events.push_back(Event::Play { info, range: header(&headers::RANGE) });
                    }
                    // Already playing: nothing to seek in a live stream.
                    State::Playing => self.reply(Response::new(Status::OK, cseq).header("Range", "npt=0.000-")),
                    _ => self.reply(Response::new(Status::METHOD_NOT_VALID_IN_THIS_STATE, cseq)),
                }
            }
            Method::Record => {
                if self.state != State::Ready || self.mode != Mode::Record || self.setups.is_empty() {
                    return self.reply(Response::new(Status::METHOD_NOT_VALID_IN_THIS_STATE, cseq));
                }
                self.pending = Some(Pending::Record { cseq });
                self.events.push_back(Event::Record(info));
            }
            Method::Pause => match self.state {
                State::Playing | State::Recording => {
                    self.pending = Some(Pending::Pause { cseq });
                    self.events.push_back(Event::Pause(info));
                }
                State::Ready => self.reply(Response::new(Status::OK, cseq)),
                State::Init => self.reply(Response::new(Status::METHOD_NOT_VALID_IN_THIS_STATE, cseq)),
            },
            Method::Teardown => {
                self.reply(Response::new(Status::OK, cseq));
                self.state = State::Init;
                self.closed = true;
                self.input.clear();
                self.events.push_back(Event::Teardown);
            }
            Method::Redirect | Method::PlayNotify | Method::Extension(_) => {
                self.reply(Response::new(Status::NOT_IMPLEMENTED, cseq).header("Public", PUBLIC));
            }
        }
    }

    fn handle_setup(&mut self, info: Box<RequestInfo>, transport_header: Option<String>) {
        let cseq = info.cseq;
        if !matches!(self.state, State::Init | State::Ready) || self.mode == Mode::None {
            return self.reply(Response::new(Status::METHOD_NOT_VALID_IN_THIS_STATE, cseq));
        }
        // A URL without a control names the only track, when there is one.
        let track = info.target.track.or((self.tracks.len() == 1).then_some(0));
        let Some(track) = track else {
            return self.reply(Response::new(Status::NOT_FOUND, cseq));
        };
        let Some(transport_header) = transport_header else {
            return self.reply(Response::new(Status::BAD_REQUEST, cseq));
        };
        let Some(mut transport) = transport::parse(&transport_header) else {
            return self.reply(Response::new(Status::UNSUPPORTED_TRANSPORT, cseq));
        };
        if let Lower::Tcp { interleaved: None } = transport.lower {
            // Track n gets channels 2n and 2n+1, as clients that choose do.
            let rtp = u8::try_from(track * 2).unwrap_or(u8::MAX - 1);
            transport.lower = Lower::Tcp { interleaved: Some((rtp, rtp.saturating_add(1))) };
        }
        let used_elsewhere = |lower: Lower| {
            self.setups.iter().any(|setup| setup.track != track && matches!((setup.lower, lower), (Lower::Tcp { interleaved: Some(a) }, Lower::Tcp { interleaved: Some(b) }) if a.0 == b.0 || a.1 == b.1 || a.0 == b.1 || a.1 == b.0))
        };
        if used_elsewhere(transport.lower) {
            return self.reply(Response::new(Status::UNSUPPORTED_TRANSPORT, cseq));
        }
        self.pending = Some(Pending::Setup { cseq, track, transport });
        self.events.push_back(Event::Setup { info, track, transport });
    }

    /// Takes the pending request if it is of the kind `matches` accepts; a driver that answers
    /// with the wrong method gets a 500 sent to the client, never a panic.
    fn take_pending(&mut self, matches: fn(&Pending) -> bool) -> Option<Pending> {
        match self.pending.take() {
            Some(pending) if matches(&pending) => Some(pending),
            Some(other) => {
                self.reply(Response::new(Status::INTERNAL_SERVER_ERROR, other.cseq()));
                self.process();
                None
            }
            None => None,
        }
    }

    /// Answers a DESCRIBE with the stream's `tracks` (built with [`Track::new`]); `session_id`
    /// for the SDP's origin line (random or a time).
    pub fn accept_describe(&mut self, tracks: Vec<Track>, sdp_session_id: u64) {
        let Some(Pending::Describe { cseq, base, authority, stream }) =
            self.take_pending(|pending| matches!(pending, Pending::Describe { .. }))
        else {
            return;
        };
        let host = host_of(&authority);
        let description = sdp::build(&tracks, &stream, sdp_session_id, host);
        let content_base = if base.ends_with('/') { base.clone() } else { format!("{base}/") };
        let mut response = Response::new(Status::OK, cseq)
            .header("Content-Base", content_base)
            .header("Content-Type", "application/sdp");
        response.body = description.into_bytes();
        self.reply(response);
        self.base = base;
        self.tracks = tracks;
        self.mode = Mode::Play;
        self.process();
    }

    /// Answers ANNOUNCE, RECORD or PAUSE with 200.
    pub fn accept(&mut self) {
        let Some(pending) = self.take_pending(|pending| {
            matches!(pending, Pending::Announce { .. } | Pending::Record { .. } | Pending::Pause { .. })
        }) else {
            return;
        };
        match pending {
            Pending::Announce { cseq, tracks } => {
                self.tracks = tracks;
                self.mode = Mode::Record;
                self.reply(Response::new(Status::OK, cseq));
            }
            Pending::Record { cseq } => {
                self.state = State::Recording;
                self.reply(Response::new(Status::OK, cseq));
            }
            Pending::Pause { cseq } => {
                self.state = State::Ready;
                self.reply(Response::new(Status::OK, cseq));
            }
            _ => {}
        }
        self.process();
    }

    /// Answers a SETUP: the session exists from here, announced with its timeout.
    pub fn accept_setup(&mut self, answer: SetupAnswer) {
        let Some(Pending::Setup { cseq, track, transport }) =
            self.take_pending(|pending| matches!(pending, Pending::Setup { .. }))
        else {
            return;
        };
        self.setups.retain(|setup| setup.track != track);
        self.setups.push(TrackTransport { track, lower: transport.lower });
        self.session_created = true;
        self.state = State::Ready;
        let reply = TransportReply {
            lower: transport.lower,
            record: transport.record || self.mode == Mode::Record,
            server_port: answer.server_port,
            ssrc: answer.ssrc,
        };
        let session = format!("{};timeout={}", self.session_id, self.settings.session_timeout_secs);
        self.reply(Response::new(Status::OK, cseq).header("Transport", reply.header()).header("Session", session));
        self.process();
    }

    /// Answers a PLAY: `rtp_info` says where each set-up track starts.
    pub fn accept_play(&mut self, rtp_info: &[RtpInfo]) {
        let Some(Pending::Play { cseq, base }) = self.take_pending(|pending| matches!(pending, Pending::Play { .. }))
        else {
            return;
        };
        let base = base.trim_end_matches('/');
        let info: Vec<String> = rtp_info
            .iter()
            .filter_map(|info| {
                let control = &self.tracks.get(info.track)?.control;
                let url = if control.contains("://") { control.clone() } else { format!("{base}/{control}") };
                Some(format!("url={url};seq={};rtptime={}", info.sequence, info.rtp_time))
            })
            .collect();
        let mut response = Response::new(Status::OK, cseq).header("Range", "npt=0.000-");
        if !info.is_empty() {
            response = response.header("RTP-Info", info.join(","));
        }
        self.state = State::Playing;
        self.reply(response);
        self.process();
    }

    /// Refuses the pending request with `status` (404 unknown stream, 403 denied, 453 or 403
    /// stream already published, 401 see [`ServerConnection::reject_unauthorized`]).
    pub fn reject(&mut self, status: Status) {
        if let Some(pending) = self.pending.take() {
            self.reply(Response::new(status, pending.cseq()));
            self.process();
        }
    }

    /// Refuses the pending request with 401 and the `challenge`'s `WWW-Authenticate` headers.
    pub fn reject_unauthorized(&mut self, challenge: &Challenge) {
        if let Some(pending) = self.pending.take() {
            let mut response = Response::new(Status::UNAUTHORIZED, pending.cseq());
            for value in challenge.headers() {
                response = response.header("WWW-Authenticate", value);
            }
            self.reply(response);
            self.process();
        }
    }
}

/// The host of `host:port` or `[v6]:port`, for the SDP origin line.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("127.0.0.1");
    }
    let host = authority.split(':').next().unwrap_or_default();
    if host.is_empty() { "127.0.0.1" } else { host }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::*;
    use crate::protocol::flv::MediaKind;
    use crate::protocol::rtp::RtpCodec;

    fn connection() -> ServerConnection {
        ServerConnection::new(ServerSettings::default(), 0xfeed)
    }

    /// Feeds `request` and returns the reply bytes as text.
    fn exchange(conn: &mut ServerConnection, request: &str) -> String {
        conn.handle_input(request.as_bytes());
        transmitted(conn)
    }

    fn transmitted(conn: &mut ServerConnection) -> String {
        let mut out = Vec::new();
        conn.poll_transmit(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn stream_tracks() -> Vec<Track> {
        let video = RtpCodec::from_flv(MediaKind::Video, &hex(AVC_720P_HIGH)).unwrap().unwrap();
        let audio = RtpCodec::from_flv(MediaKind::Audio, &hex(AAC_48K_STEREO_LC)).unwrap().unwrap();
        vec![Track::new(video, 0), Track::new(audio, 1)]
    }

    const SDP: &str =
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=control:streamid=0\r\n";

    #[test]
    fn options_lists_the_methods() {
        let mut conn = connection();
        let reply = exchange(&mut conn, "OPTIONS rtsp://h:8554/live/a RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        assert_eq!(reply, format!("RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: ringcast\r\nPublic: {PUBLIC}\r\n\r\n"));
        assert_eq!(conn.poll_event(), None);
        // `OPTIONS *` too.
        assert!(
            exchange(&mut conn, "OPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n").starts_with("RTSP/1.0 200 OK\r\nCSeq: 2\r\n")
        );
    }

    #[test]
    fn play_over_tcp_from_describe_to_teardown() {
        let mut conn = connection();
        conn.handle_input(b"DESCRIBE rtsp://h:8554/live/cam1?token=x RTSP/1.0\r\nCSeq: 2\r\nUser-Agent: t\r\n\r\n");
        let Some(Event::Describe(info)) = conn.poll_event() else { panic!() };
        assert_eq!(
            (info.target.stream.as_str(), info.cseq, info.user_agent.as_deref()),
            ("live/cam1", Some(2), Some("t"))
        );
        assert_eq!(info.target.args, [("token".to_owned(), "x".to_owned())]);
        // Pending: a request that arrives now waits.
        conn.handle_input(b"OPTIONS * RTSP/1.0\r\nCSeq: 3\r\n\r\n");
        assert!(conn.is_pending() && !conn.has_transmit());
        conn.accept_describe(stream_tracks(), 7);
        let reply = transmitted(&mut conn);
        assert!(reply.starts_with("RTSP/1.0 200 OK\r\nCSeq: 2\r\n"), "{reply}");
        assert!(reply.contains("Content-Base: rtsp://h:8554/live/cam1?token=x/\r\n"), "{reply}");
        assert!(reply.contains("a=control:trackID=1\r\n") && reply.contains("o=- 7 1 IN IP4 h\r\n"), "{reply}");
        assert!(reply.contains("RTSP/1.0 200 OK\r\nCSeq: 3\r\n"), "the queued OPTIONS is answered: {reply}");

        conn.handle_input(b"SETUP rtsp://h:8554/live/cam1?token=x/trackID=0 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
        let Some(Event::Setup { track: 0, transport, .. }) = conn.poll_event() else { panic!() };
        assert_eq!(transport.lower, Lower::Tcp { interleaved: Some((0, 1)) });
        conn.accept_setup(SetupAnswer { server_port: None, ssrc: Some(0x1234) });
        let reply = transmitted(&mut conn);
        assert!(reply.contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=00001234\r\n"), "{reply}");
        assert!(reply.contains("Session: 000000000000FEED;timeout=60\r\n"), "{reply}");
        // The second track without interleaved channels gets 2-3.
        conn.handle_input(b"SETUP rtsp://h:8554/live/cam1/trackID=1?token=x RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP/TCP;unicast\r\nSession: 000000000000FEED\r\n\r\n");
        let Some(Event::Setup { track: 1, .. }) = conn.poll_event() else { panic!() };
        conn.accept_setup(SetupAnswer::default());
        assert!(transmitted(&mut conn).contains("interleaved=2-3"));
        assert_eq!(conn.track_of_channel(3), Some((1, true)));

        conn.handle_input(b"PLAY rtsp://h:8554/live/cam1?token=x/ RTSP/1.0\r\nCSeq: 6\r\nSession: 000000000000FEED\r\nRange: npt=0.000-\r\n\r\n");
        let Some(Event::Play { range, .. }) = conn.poll_event() else { panic!() };
        assert_eq!(range.as_deref(), Some("npt=0.000-"));
        conn.accept_play(&[
            RtpInfo { track: 0, sequence: 10, rtp_time: 900 },
            RtpInfo { track: 1, sequence: 3, rtp_time: 48 },
        ]);
        let reply = transmitted(&mut conn);
        assert!(reply.contains("RTP-Info: url=rtsp://h:8554/live/cam1?token=x/trackID=0;seq=10;rtptime=900,url=rtsp://h:8554/live/cam1?token=x/trackID=1;seq=3;rtptime=48\r\n"), "{reply}");
        assert_eq!(conn.state(), State::Playing);

        // A receiver report from the player, interleaved, then a keep-alive.
        conn.handle_input(&[b'$', 1, 0, 2, 0x81, 201]);
        assert_eq!(
            conn.poll_event(),
            Some(Event::Interleaved { channel: 1, payload: Bytes::from_static(&[0x81, 201]) })
        );
        conn.handle_input(
            b"GET_PARAMETER rtsp://h:8554/live/cam1 RTSP/1.0\r\nCSeq: 7\r\nSession: 000000000000FEED\r\n\r\n",
        );
        assert_eq!(conn.poll_event(), Some(Event::KeepAlive));
        assert!(transmitted(&mut conn).contains("Session: 000000000000FEED\r\n"));
        // Another session's id is not this one.
        let reply =
            exchange(&mut conn, "GET_PARAMETER rtsp://h/live/cam1 RTSP/1.0\r\nCSeq: 8\r\nSession: 1234\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 454 Session Not Found\r\n"), "{reply}");
        let reply =
            exchange(&mut conn, "TEARDOWN rtsp://h/live/cam1 RTSP/1.0\r\nCSeq: 9\r\nSession: 000000000000FEED\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 200 OK\r\nCSeq: 9\r\n"), "{reply}");
        assert_eq!(conn.poll_event(), Some(Event::Teardown));
        // Input after TEARDOWN is ignored.
        assert_eq!(exchange(&mut conn, "OPTIONS * RTSP/1.0\r\nCSeq: 10\r\n\r\n"), "");
    }

    #[test]
    fn publish_over_udp_and_tcp() {
        let mut conn = connection();
        let announce = format!(
            "ANNOUNCE rtsp://h/live/cam1 RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        );
        // In two pieces: the body arrives later.
        conn.handle_input(&announce.as_bytes()[..announce.len() - 10]);
        assert_eq!(conn.poll_event(), None);
        conn.handle_input(&announce.as_bytes()[announce.len() - 10..]);
        let Some(Event::Announce { info, announced }) = conn.poll_event() else { panic!() };
        assert_eq!(info.target.stream, "live/cam1");
        assert_eq!(announced.tracks.len(), 1);
        conn.accept();
        assert!(transmitted(&mut conn).starts_with("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"));
        // RECORD before SETUP is not valid in this state.
        let reply = exchange(&mut conn, "RECORD rtsp://h/live/cam1 RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 455 "), "{reply}");
        conn.handle_input(b"SETUP rtsp://h/live/cam1/streamid=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record\r\n\r\n");
        let Some(Event::Setup { track: 0, transport, .. }) = conn.poll_event() else { panic!() };
        assert_eq!(transport, TransportRequest { lower: Lower::Udp { client_port: (5000, 5001) }, record: true });
        conn.accept_setup(SetupAnswer { server_port: Some((30000, 30001)), ssrc: None });
        let reply = transmitted(&mut conn);
        assert!(
            reply.contains("Transport: RTP/AVP;unicast;client_port=5000-5001;server_port=30000-30001;mode=record\r\n"),
            "{reply}"
        );
        conn.handle_input(b"RECORD rtsp://h/live/cam1 RTSP/1.0\r\nCSeq: 4\r\nSession: 000000000000FEED\r\n\r\n");
        assert!(matches!(conn.poll_event(), Some(Event::Record(_))));
        conn.accept();
        assert_eq!(conn.state(), State::Recording);
        // A second ANNOUNCE on the same connection is not valid now.
        let reply = exchange(&mut conn, &announce);
        assert!(reply.contains("RTSP/1.0 455 "), "{reply}");
    }

    #[test]
    fn errors_have_their_codes() {
        let mut conn = connection();
        let reply = exchange(&mut conn, "FLY rtsp://h/live/a RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 501 Not Implemented\r\nCSeq: 1\r\n"), "{reply}");
        let reply = exchange(&mut conn, "PLAY rtsp://h/live/a RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 455 "), "{reply}");
        let reply = exchange(
            &mut conn,
            "SETUP rtsp://h/live/a/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP\r\n\r\n",
        );
        assert!(reply.starts_with("RTSP/1.0 455 "), "SETUP before DESCRIBE: {reply}");
        let reply = exchange(&mut conn, "DESCRIBE rtsp://h/live/a RTSP/1.0\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 400 "), "no CSeq: {reply}");
        let reply = exchange(&mut conn, "DESCRIBE rtsp://h/live/a HTTP/1.1\r\nCSeq: 4\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 400 Bad Request\r\nCSeq: 4\r\n"), "{reply}");
        assert!(matches!(conn.poll_event(), Some(Event::Refused(Refusal::Malformed))));
        assert_eq!(exchange(&mut conn, "OPTIONS * RTSP/1.0\r\nCSeq: 5\r\n\r\n"), "", "closed");

        // Rejections the driver chooses, and 461.
        let mut conn = connection();
        conn.handle_input(b"DESCRIBE rtsp://h/live/none RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        assert!(matches!(conn.poll_event(), Some(Event::Describe(_))));
        conn.reject(Status::NOT_FOUND);
        assert!(transmitted(&mut conn).starts_with("RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n"));
        conn.handle_input(b"DESCRIBE rtsp://h/live/a RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        conn.poll_event();
        conn.accept_describe(stream_tracks(), 1);
        transmitted(&mut conn);
        let reply = exchange(
            &mut conn,
            "SETUP rtsp://h/live/a/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;multicast\r\n\r\n",
        );
        assert!(reply.starts_with("RTSP/1.0 461 "), "{reply}");
        let reply = exchange(
            &mut conn,
            "SETUP rtsp://h/live/a/trackID=7 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP/TCP\r\n\r\n",
        );
        assert!(reply.starts_with("RTSP/1.0 404 "), "{reply}");
        // The wrong accept for the pending request is a 500, not a panic.
        conn.handle_input(b"SETUP rtsp://h/live/a/trackID=0 RTSP/1.0\r\nCSeq: 5\r\nTransport: RTP/AVP/TCP\r\n\r\n");
        conn.poll_event();
        conn.accept();
        assert!(transmitted(&mut conn).starts_with("RTSP/1.0 500 "));
    }

    #[test]
    fn the_framing_takes_the_wire_limits_of_the_settings() {
        let limits = WireLimits { rtsp_request_head_bytes: 1024, rtsp_body_bytes: 1024, ..WireLimits::default() };
        let settings = ServerSettings { limits, ..ServerSettings::default() };
        let padded = format!("OPTIONS rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\nX: {}\r\n\r\n", "a".repeat(1100));
        let mut conn = ServerConnection::new(settings.clone(), 1);
        assert!(exchange(&mut conn, &padded).starts_with("RTSP/1.0 413 "));
        assert!(matches!(conn.poll_event(), Some(Event::Refused(Refusal::Framing(FrameError::HeadTooLarge)))));
        let mut conn = ServerConnection::new(settings, 1);
        let reply = exchange(&mut conn, "ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 1025\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 413 Request Entity Too Large\r\nCSeq: 2\r\n"), "{reply}");
        assert!(exchange(&mut connection(), &padded).starts_with("RTSP/1.0 200 "), "the default takes it");
    }

    #[test]
    fn oversized_heads_bodies_and_urls_are_refused_and_close() {
        let mut conn = connection();
        conn.handle_input(&vec![b'A'; message::MAX_HEAD]);
        assert!(transmitted(&mut conn).starts_with("RTSP/1.0 413 "));
        assert!(matches!(conn.poll_event(), Some(Event::Refused(Refusal::Framing(FrameError::HeadTooLarge)))));

        let mut conn = connection();
        let reply = exchange(&mut conn, "ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999\r\n\r\n");
        assert!(reply.starts_with("RTSP/1.0 413 Request Entity Too Large\r\nCSeq: 1\r\n"), "{reply}");

        let mut conn = connection();
        let long = format!("DESCRIBE rtsp://h/{} RTSP/1.0\r\nCSeq: 1\r\n\r\n", "a".repeat(5000));
        assert!(exchange(&mut conn, &long).starts_with("RTSP/1.0 414 "));
        assert!(matches!(conn.poll_event(), Some(Event::Refused(Refusal::Url(_)))));
    }

    #[test]
    fn credentials_and_the_401_challenge() {
        let mut conn = connection();
        conn.handle_input(b"ANNOUNCE rtsp://cam:pw@h/live/a RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n");
        // An empty SDP is a bad request, with the connection kept.
        assert!(transmitted(&mut conn).starts_with("RTSP/1.0 400 "));
        conn.handle_input(b"DESCRIBE rtsp://cam:pw@h/live/a RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        let Some(Event::Describe(info)) = conn.poll_event() else { panic!() };
        assert_eq!(info.user_pass(), (Some("cam"), Some("pw")));
        let challenge = Challenge { realm: "ringcast".into(), nonce: "n0nce".into(), digest: true, basic: true };
        conn.reject_unauthorized(&challenge);
        let reply = transmitted(&mut conn);
        assert!(reply.contains("WWW-Authenticate: Digest realm=\"ringcast\", nonce=\"n0nce\"\r\nWWW-Authenticate: Basic realm=\"ringcast\"\r\n"), "{reply}");
        assert!(reply.starts_with("RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\n"));

        let fields = auth::DigestCredentials {
            user: "cam".into(),
            realm: "ringcast".into(),
            nonce: "n0nce".into(),
            uri: "rtsp://h/live/a".into(),
            ..Default::default()
        };
        let response = auth::digest_response(&fields, "DESCRIBE", "pw");
        let request = format!(
            "DESCRIBE rtsp://h/live/a RTSP/1.0\r\nCSeq: 3\r\nAuthorization: Digest username=\"cam\", realm=\"ringcast\", nonce=\"n0nce\", uri=\"rtsp://h/live/a\", response=\"{response}\"\r\n\r\n"
        );
        conn.handle_input(request.as_bytes());
        let Some(Event::Describe(info)) = conn.poll_event() else { panic!() };
        let Some(Credentials::Digest(digest)) = &info.credentials else { panic!() };
        assert!(digest.verify("DESCRIBE", "pw") && !digest.verify("DESCRIBE", "nope"));
        assert_eq!(info.user_pass(), (Some("cam"), None));
        conn.reject(Status::FORBIDDEN);
        assert!(transmitted(&mut conn).starts_with("RTSP/1.0 403 Forbidden\r\nCSeq: 3\r\n"));
    }

    /// Every prefix of a valid conversation, fed byte by byte, gives the same replies as whole.
    #[test]
    fn input_split_anywhere_gives_the_same_replies() {
        let input = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x00\x00\x03abcGET_PARAMETER * RTSP/1.0\r\nCSeq: 2\r\n\r\n";
        let mut whole = connection();
        let expected = exchange(&mut whole, std::str::from_utf8(input).unwrap());
        let mut split = connection();
        let mut replies = String::new();
        for byte in input {
            split.handle_input(&[*byte]);
            replies.push_str(&transmitted(&mut split));
        }
        assert_eq!(replies, expected);
        assert_eq!(split.poll_event(), Some(Event::Interleaved { channel: 0, payload: Bytes::from_static(b"abc") }));
    }
}
