//! An RTSP session: one accepted connection on `rtsp_listen`, driven through
//! `protocol::rtsp::ServerConnection` and the connection's [`Lifecycle`], as RTMP and HTTP-FLV
//! connections are.
//!
//! Loop: read (beside shutdown, kicks, the session timeout and the update timer) ->
//! `handle_input` -> act on each event (asking hooks, joining the hub) -> write the replies.
//! While an event waits for a callback nothing more is read: the state machine holds further
//! input, and the session does not read until the decision is made.
//!
//! - **Admission.** DESCRIBE is a player's connect and play, ANNOUNCE a publisher's connect
//!   and publish: `on_connect` then `on_play` / `on_publish`, with `protocol=rtsp`, the request
//!   URL and the stream `app/name` (`rtsp://host:8554/live/cam1?token=x` is stream `live/cam1`,
//!   args `token=x`, the same stream RTMP and HTTP-FLV see). The credentials the client sent
//!   (`rtsp://user:pass@` or an `Authorization` header) go to `on_play` / `on_publish` as
//!   `user` and `pass`; how and when the server asks for them is `rtsp_auth` (docs/rtsp.md).
//!   A refusal by a callback answers `403` (`401` when the request carried credentials and
//!   `rtsp_auth` challenges: bad credentials); a stream nobody publishes `404`; a stream
//!   someone else publishes `453`.
//! - **Play.** The description is built from the stream's cached sequence headers (waiting up
//!   to [`DESCRIBE_WAIT`] for them on a stream just published or relayed from another shard).
//!   At PLAY the player's writer takes over the socket, with [`RtspFraming`]: the stream's
//!   shared RTP packets behind this player's interleaved bytes, and its replies between them.
//!   The session keeps reading (keep-alives, RTCP receiver reports, TEARDOWN). The publisher
//!   leaving ends the session.
//! - **Publish.** ANNOUNCE's tracks give a depacketizer each and the sequence headers the hub
//!   gets at RECORD; interleaved RTP then becomes hub packets (`Lifecycle::media`).
//! - **Timeout.** A session that sends nothing for `ServerSettings::session_timeout_secs` is
//!   closed: that is how a vanished client is cleaned up.
//!
//! Transports: RTP over the RTSP connection (interleaved), or over UDP to and from a port
//! pair of the session's own (`rtsp_udp.rs`: how ports are allocated and received). When no
//! pair is free the SETUP is answered `461`, and clients fall back to TCP.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::protocol::flv::MediaKind;

use bytes::Bytes;
use tokio_uring::net::TcpStream;

use super::io::{MIN_READ_BUFFER, PendingOutput, ReadBuffer, write_all};
use super::lifecycle::{Admission, CloseReason, ConnectRequest, Lifecycle, Refusal, StreamRequest};
use super::limits::WireLimit;
use super::player_writer::PlayerWriter;
use super::rtmp::sleep_until_some;
use super::rtp_ingest::RtpIngest;
use super::rtsp_out::{RtspFraming, RtspOutput, StreamRtp, rtp_info, stream_tracks};
use super::rtsp_udp::{UdpInbox, UdpPair, UdpPlayerWriter};
use super::{SessionEnd, SessionFailure, ShardContext};
use crate::config::RtspAuth;
use crate::hooks::event::Protocol;
use crate::hub::{HubStats, PacketKind, Player};
use crate::protocol::rtp;
use crate::protocol::rtsp::Status;
use crate::protocol::rtsp::auth::{Challenge, Credentials};
use crate::protocol::rtsp::message::FrameError;
use crate::protocol::rtsp::server::{self, Event, RequestInfo, ServerConnection, ServerSettings, SetupAnswer};
use crate::protocol::rtsp::transport::{Lower, TransportRequest};
use crate::protocol::rtsp::url;
use crate::protocol::sdp::{Announced, Track};

/// How long a DESCRIBE waits for a published stream's sequence headers: a stream published
/// a moment ago, or relayed from another shard, may not have them here yet.
pub const DESCRIBE_WAIT: Duration = Duration::from_secs(3);
/// Largest read: an interleaved frame is at most 64 KiB plus its header.
const MAX_READ: usize = 64 * 1024 + 4;

#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("no request or media for {0:?} (session timeout)")]
    SessionTimeout(Duration),
    #[error("no request within {0:?} (handshake_timeout)")]
    FirstRequestTimeout(Duration),
    #[error("refused: {0}")]
    Refused(String),
    #[error("on_update (update_strict): {0}")]
    UpdateDenied(String),
}

impl SessionFailure for RtspError {
    fn count(&self, stats: &HubStats) {
        match self {
            RtspError::Io(error) => super::count_send_timeout(error, stats),
            RtspError::SessionTimeout(_) => drop(stats.idle_timeouts.fetch_add(1, Ordering::Relaxed)),
            RtspError::FirstRequestTimeout(_) => drop(stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed)),
            _ => {}
        }
    }

    fn dropped(&self) -> bool {
        !matches!(self, RtspError::Refused(_) | RtspError::UpdateDenied(_))
    }
}

/// How a session ended without an error.
#[derive(Debug)]
enum Ending {
    Closed(CloseReason),
    Teardown,
    StreamEnded,
}

impl SessionEnd for Ending {
    fn describe(&self) -> String {
        match self {
            Ending::Closed(reason) => reason.describe().to_owned(),
            Ending::Teardown => "teardown".to_owned(),
            Ending::StreamEnded => "stream ended".to_owned(),
        }
    }

    fn too_slow(&self) -> bool {
        matches!(self, Ending::Closed(CloseReason::TooSlow))
    }

    fn dropped(&self) -> bool {
        matches!(self, Ending::Closed(CloseReason::PeerClosed))
    }
}

/// Runs one RTSP connection until it closes; logs how it ended.
pub async fn run(socket: TcpStream, peer: SocketAddr, conn_id: u64, context: Rc<ShardContext>) {
    let _ = socket.set_nodelay(true);
    let socket = Rc::new(socket);
    let lifecycle = Lifecycle::new(&context, Protocol::Rtsp, peer, conn_id);
    let mut seed = [0u8; 8];
    // The session id: drawn from the operating system, so it says nothing of other sessions'.
    if getrandom::fill(&mut seed).is_err() {
        context.fill_random(&mut seed);
    }
    let settings = ServerSettings {
        session_timeout_secs: context.settings.rtsp_session_timeout.as_secs().max(1) as u32,
        limits: context.settings.wire,
        ..ServerSettings::default()
    };
    let mut session = Session {
        socket: socket.clone(),
        connection: ServerConnection::new(settings, u64::from_le_bytes(seed)),
        context,
        lifecycle,
        connected: false,
        playing: None,
        publishing: None,
        output: None,
        udp_output: None,
        shared: Rc::default(),
        udp: None,
        nonce: None,
    };
    let result = session.run().await;
    if let Some(udp) = &session.udp {
        udp.close();
    }
    super::end_or_hold(session.lifecycle, socket, result);
}

/// The realm of the 401 challenge.
const REALM: &str = "ringcast";

/// What admission decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Admitted,
    Refused(Status),
    /// Answered 401 with a challenge: no credentials, or bad ones.
    Unauthorized,
}

/// What `on_play` and `on_publish` get of the client's credentials: `user` and `pass` (the
/// URL's or Basic's). A Digest answer carries no password: `pass` is empty, and the Digest
/// fields come as `digest_*` (with `method`), so the auth service recomputes the response
/// from the password it keeps (RFC 2617) and answers 2xx or 401.
fn credential_fields(info: &RequestInfo, method: &str) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    let (user, pass) = info.user_pass();
    let Some(user) = user else { return fields };
    fields.push(("user", user.to_owned()));
    fields.push(("pass", pass.unwrap_or_default().to_owned()));
    if info.target.user.is_none()
        && let Some(Credentials::Digest(digest)) = &info.credentials
    {
        fields.push(("digest_realm", digest.realm.clone()));
        fields.push(("digest_nonce", digest.nonce.clone()));
        fields.push(("digest_uri", digest.uri.clone()));
        fields.push(("digest_response", digest.response.clone()));
        fields.push(("digest_method", method.to_owned()));
        for (name, value) in [("digest_qop", &digest.qop), ("digest_nc", &digest.nc), ("digest_cnonce", &digest.cnonce)]
        {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
    }
    fields
}

/// The request's query arguments, without any that would pass for the credential fields.
fn client_args(info: &RequestInfo) -> Vec<(String, String)> {
    let credential = |name: &str| name == "user" || name == "pass" || name.starts_with("digest_");
    info.target.args.iter().filter(|(name, _)| !credential(name)).cloned().collect()
}

/// A player's stream state between DESCRIBE and PLAY.
struct Playing {
    rtp: Rc<RefCell<StreamRtp>>,
    /// The player's writer runs.
    started: bool,
}

/// A publisher's tracks.
struct Publishing {
    ingest: RtpIngest,
    recording: bool,
}

struct Session {
    socket: Rc<TcpStream>,
    connection: ServerConnection,
    context: Rc<ShardContext>,
    lifecycle: Lifecycle,
    /// `on_connect` allowed this connection.
    connected: bool,
    playing: Option<Playing>,
    publishing: Option<Box<Publishing>>,
    /// The writer's unsent bytes and failure, once the writer runs.
    output: Option<Rc<PendingOutput>>,
    /// A UDP player's writer's failure (its replies go out here, not through it).
    udp_output: Option<Rc<PendingOutput>>,
    shared: Rc<RtspOutput>,
    /// The session's UDP port pair, once a track is set up over UDP.
    udp: Option<UdpPair>,
    /// The nonce of the last Digest challenge: a Digest answer must carry it.
    nonce: Option<String>,
}

impl Session {
    async fn run(&mut self) -> Result<Ending, RtspError> {
        let timeout = self.context.settings.rtsp_session_timeout;
        let entry = self.lifecycle.entry().clone();
        let mut reader = ReadBuffer::with_limits(MIN_READ_BUFFER * 2, MAX_READ);
        let socket = self.socket.clone();
        self.lifecycle.handshake_complete();
        // A connection that never sends a request gets `handshake_timeout`, like every
        // protocol's, not the session's whole timeout.
        let first_request = self.context.settings.handshake_timeout.min(timeout);
        let mut requested = false;
        loop {
            let silence = if requested { timeout } else { first_request };
            let mut deadline = tokio::time::Instant::now() + silence;
            // The read must never be dropped while in flight: timers are handled beside it.
            let input = {
                let read = reader.read(&socket);
                tokio::pin!(read);
                let eviction = self.lifecycle.eviction();
                loop {
                    let update_due = self.lifecycle.poll_timeout().map(tokio::time::Instant::from_std);
                    let inbox = self.udp.as_ref().map(|udp| udp.inbox.clone());
                    tokio::select! {
                        input = &mut read => break input,
                        _ = udp_ready(inbox.as_deref()) => {
                            // A datagram from a port the client set up keeps the session alive.
                            if self.datagrams() {
                                deadline = tokio::time::Instant::now() + timeout;
                            }
                        }
                        _ = self.context.shutdown.wait() => return Ok(Ending::Closed(CloseReason::Shutdown)),
                        _ = entry.kicked() => return Ok(Ending::Closed(CloseReason::AdminKick)),
                        _ = super::lifecycle::taken_over(eviction.clone()) => {
                            return Ok(Ending::Closed(CloseReason::TakenOver));
                        }
                        _ = tokio::time::sleep_until(deadline) => {
                            return Err(if requested {
                                RtspError::SessionTimeout(timeout)
                            } else {
                                RtspError::FirstRequestTimeout(first_request)
                            });
                        }
                        _ = self.shared.stream_ended.notified() => return Ok(Ending::StreamEnded),
                        _ = sleep_until_some(update_due) => {
                            if let Some(ended) = self.lifecycle.handle_timeout(Instant::now()) {
                                return Ok(Ending::Closed(ended));
                            }
                        }
                        denied = self.lifecycle.update_verdict() => {
                            if let Some(reason) = denied {
                                return Err(RtspError::UpdateDenied(reason));
                            }
                        }
                    }
                }
            };
            requested = true;
            if self.shared.is_ended() {
                return Ok(Ending::StreamEnded);
            }
            let writer = self.output.as_ref().or(self.udp_output.as_ref());
            let input = match super::read_result(&mut self.lifecycle, writer, input)? {
                Ok(input) => input,
                Err(reason) => return Ok(Ending::Closed(reason)),
            };
            self.connection.handle_input(input);
            if let Some(ending) = self.handle_events().await? {
                return Ok(ending);
            }
        }
    }

    /// Acts on every event the input produced, answering as it goes. `Some` ends the session.
    async fn handle_events(&mut self) -> Result<Option<Ending>, RtspError> {
        while let Some(event) = self.connection.poll_event() {
            let ending = match event {
                Event::Interleaved { channel, payload } => {
                    self.interleaved(channel, payload);
                    None
                }
                Event::KeepAlive => None,
                Event::Describe(info) => self.describe(info).await,
                Event::Announce { info, announced } => self.announce(info, announced).await,
                Event::Setup { info: _, track, transport } => {
                    self.setup(track, transport).await;
                    None
                }
                Event::Play { .. } => {
                    self.play().await?;
                    None
                }
                Event::Record(_) => self.record().await?,
                Event::Pause(_) => {
                    self.pause();
                    self.connection.accept();
                    None
                }
                Event::Teardown => Some(Ending::Teardown),
                Event::Refused(refusal) => {
                    let hit = match refusal {
                        server::Refusal::Framing(FrameError::HeadTooLarge) => Some(WireLimit::RtspRequestHeadBytes),
                        server::Refusal::Framing(FrameError::BodyTooLarge { .. }) => Some(WireLimit::RtspBodyBytes),
                        _ => None,
                    };
                    if let Some(limit) = hit {
                        self.context.wire_limit_reached(limit, "RTSP request");
                    }
                    self.flush().await?;
                    return Err(RtspError::Refused(refusal.to_string()));
                }
            };
            self.flush().await?;
            if let Some(ending) = ending {
                self.drain().await;
                return Ok(Some(ending));
            }
        }
        self.flush().await?;
        Ok(None)
    }

    /// Asks for credentials when `rtsp_auth` wants them and the request has none (or a
    /// Digest answer to another nonce); else asks `on_connect` (once per connection) and
    /// `on_play` or `on_publish`, beside shutdown and kicks. `Err` ends the session.
    async fn admit(&mut self, info: &RequestInfo, publish: bool) -> Result<Verdict, Ending> {
        let auth = self.context.settings.rtsp_auth;
        let digest_nonce_ok = match &info.credentials {
            Some(Credentials::Digest(digest)) => self.nonce.as_deref() == Some(digest.nonce.as_str()),
            _ => true,
        };
        if !digest_nonce_ok || (auth != RtspAuth::None && info.user_pass().0.is_none()) {
            return Ok(Verdict::Unauthorized);
        }
        let (app, name) = match info.target.stream.split_once('/') {
            Some((app, name)) => (app.to_owned(), name.to_owned()),
            None => (String::new(), info.target.stream.clone()),
        };
        // The credentials reach the callbacks as `user`/`pass`, never inside a URL that is
        // logged, sent in events and listed by the API.
        let shown_url = url::without_credentials(&info.url);
        let base = shown_url.split('?').next().unwrap_or_default();
        let base = base.trim_end_matches('/');
        let app_url = base.strip_suffix(&format!("/{name}")).unwrap_or(base).to_owned();
        let connect = ConnectRequest {
            app,
            url: app_url.clone(),
            tc_url: app_url,
            flash_ver: info.user_agent.clone().unwrap_or_default(),
            args: client_args(info),
            ..ConnectRequest::default()
        };
        let method = if publish { "ANNOUNCE" } else { "DESCRIBE" };
        let request =
            StreamRequest { name, args: info.target.args.clone(), callback_fields: credential_fields(info, method) };
        let connected = self.connected;
        let (context, entry) = (self.context.clone(), self.lifecycle.entry().clone());
        let lifecycle = &mut self.lifecycle;
        let admitted = async {
            if !connected && let Admission::Refused(refusal) = lifecycle.admit_connect(connect).await {
                return Err(refusal);
            }
            let admission =
                if publish { lifecycle.admit_publish(request).await } else { lifecycle.admit_play(request).await };
            match admission {
                Admission::Admitted => Ok(()),
                Admission::Refused(refusal) => Err(refusal),
            }
        };
        // A callback can take its whole timeout; shutdown and kicks do not wait for it.
        let result = tokio::select! {
            result = admitted => result,
            _ = context.shutdown.wait() => return Err(Ending::Closed(CloseReason::Shutdown)),
            _ = entry.kicked() => return Err(Ending::Closed(CloseReason::AdminKick)),
        };
        let refusal = match result {
            Ok(()) => {
                self.connected = true;
                return Ok(Verdict::Admitted);
            }
            Err(refusal) => refusal,
        };
        context.hub.stats().requests_refused.fetch_add(1, Ordering::Relaxed);
        Ok(match refusal {
            // The auth service's own "bad credentials": the client may try others.
            Refusal::Denied { reason, .. } if reason.ends_with("answered 401") => Verdict::Unauthorized,
            Refusal::Denied { .. } => Verdict::Refused(Status::FORBIDDEN),
            Refusal::StreamBusy(_) => Verdict::Refused(Status::NOT_ENOUGH_BANDWIDTH),
            Refusal::Limit(_) => Verdict::Refused(Status::SERVICE_UNAVAILABLE),
        })
    }

    /// Answers the pending request as `verdict` says; `true` when admitted.
    fn answer_refusal(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Admitted => return true,
            Verdict::Refused(status) => self.connection.reject(status),
            Verdict::Unauthorized => {
                let nonce = format!("{:016x}", self.random());
                let challenge = Challenge {
                    realm: REALM.to_owned(),
                    nonce: nonce.clone(),
                    digest: self.context.settings.rtsp_auth != RtspAuth::Basic,
                    basic: true,
                };
                self.nonce = Some(nonce);
                self.connection.reject_unauthorized(&challenge);
            }
        }
        false
    }

    async fn describe(&mut self, info: Box<RequestInfo>) -> Option<Ending> {
        if self.lifecycle.is_playing() || self.publishing.is_some() {
            // A second DESCRIBE on a connection that plays: the description of what it plays.
            let tracks = self.playing.as_ref().map(|p| p.rtp.borrow().tracks().to_vec()).unwrap_or_default();
            self.connection.accept_describe(tracks, self.random());
            return None;
        }
        match self.admit(&info, false).await {
            Err(ending) => return Some(ending),
            Ok(verdict) if !self.answer_refusal(verdict) => return None,
            Ok(_) => {}
        }
        let key = self.lifecycle.entry().stream.borrow().clone();
        let tracks = self.wait_tracks(&key).await;
        if tracks.is_empty() {
            // Not published (or nothing RTSP carries): the player leaves the stream again.
            self.lifecycle.end_play();
            self.connection.reject(Status::NOT_FOUND);
            return None;
        }
        let hub = self.context.hub.clone();
        let mut random = || self.context_random();
        let rtp = self.context.rtp_streams.get(&key, tracks.clone(), &mut random, |key| hub.stream(key).is_some());
        self.playing = Some(Playing { rtp, started: false });
        let id = self.random();
        self.connection.accept_describe(tracks, id);
        None
    }

    /// The stream's tracks once its sequence headers are here, within [`DESCRIBE_WAIT`];
    /// empty when nobody publishes it. A stream fed on demand (a camera source, a relay
    /// pull) was waited for by the play already (`relay::await_source`, up to the camera's
    /// `start_timeout`): this player is what started it, and a feeder that did not start in
    /// time gets the answer of an unpublished stream.
    async fn wait_tracks(&self, key: &str) -> Vec<Track> {
        if !self.context.hub.is_published(key) {
            return Vec::new();
        }
        // This shard's copy of the stream: no registry lock per look. A publisher that
        // leaves meanwhile takes its sequence headers with it.
        let deadline = Instant::now() + DESCRIBE_WAIT;
        loop {
            let tracks = self.context.hub.stream(key).map(|stream| stream_tracks(&stream)).unwrap_or_default();
            // Video and audio, or whatever arrived by the deadline.
            if tracks.len() >= 2 || Instant::now() >= deadline {
                return tracks;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn announce(&mut self, info: Box<RequestInfo>, announced: Announced) -> Option<Ending> {
        for skipped in &announced.skipped {
            tracing::info!(conn_id = self.lifecycle.conn_id(), "{skipped}");
        }
        match self.admit(&info, true).await {
            Err(ending) => return Some(ending),
            Ok(verdict) if !self.answer_refusal(verdict) => return None,
            Ok(_) => {}
        }
        self.publishing = Some(Box::new(Publishing { ingest: RtpIngest::new(announced.tracks), recording: false }));
        self.connection.accept();
        None
    }

    async fn setup(&mut self, track: usize, transport: TransportRequest) {
        let mut server_port = None;
        if let Lower::Udp { .. } = transport.lower {
            if self.udp.is_none() {
                match UdpPair::bind(&self.context.udp_ports, self.lifecycle.addr().ip()).await {
                    Ok(pair) => self.udp = Some(pair),
                    Err(error) => {
                        tracing::warn!(conn_id = self.lifecycle.conn_id(), %error, "no UDP port pair for RTSP; answering 461");
                        self.connection.reject(Status::UNSUPPORTED_TRANSPORT);
                        return;
                    }
                }
            }
            server_port = self.udp.as_ref().map(|udp| udp.ports);
        }
        let ssrc = self.playing.as_ref().and_then(|playing| playing.rtp.borrow().ssrc(track));
        self.connection.accept_setup(SetupAnswer { server_port, ssrc });
    }

    /// Answers PLAY, then hands the socket's writing to the player's writer. A paused
    /// player resumes instead (its writer still runs).
    async fn play(&mut self) -> Result<(), RtspError> {
        let (Some(playing), Some(player)) = (self.playing.as_mut(), self.lifecycle.player().cloned()) else {
            self.connection.reject(Status::METHOD_NOT_VALID_IN_THIS_STATE);
            return Ok(());
        };
        let rtp = playing.rtp.clone();
        let started = std::mem::replace(&mut playing.started, true);
        let track_count = rtp.borrow().tracks().len();
        let mut channels = vec![None; track_count];
        let mut destinations = vec![None; track_count];
        let client = self.lifecycle.addr().ip();
        for setup in self.connection.setups() {
            match setup.lower {
                Lower::Tcp { interleaved: Some(pair) } => {
                    if let Some(slot) = channels.get_mut(setup.track) {
                        *slot = Some(pair);
                    }
                }
                Lower::Udp { client_port: (rtp_port, rtcp_port) } => {
                    if let Some(slot) = destinations.get_mut(setup.track) {
                        *slot = Some((SocketAddr::new(client, rtp_port), SocketAddr::new(client, rtcp_port)));
                    }
                }
                Lower::Tcp { interleaved: None } => {}
            }
        }
        if player.is_paused() {
            self.resume(&player);
        }
        // The first packet of each set-up track the player gets is at the head of its queue
        // now: the cached GOP (a new player's, or a resumed one's), else the next live packet.
        let set_up = (0..track_count).filter(|&track| channels[track].is_some() || destinations[track].is_some());
        let info = rtp_info(&rtp, &player, set_up);
        self.connection.accept_play(&info);
        if started {
            return self.flush().await;
        }
        self.flush().await?;
        if let Some(udp) = &self.udp
            && destinations.iter().any(Option::is_some)
        {
            let output = Rc::new(PendingOutput::default());
            let writer = UdpPlayerWriter {
                rtp_socket: udp.rtp.clone(),
                rtcp_socket: udp.rtcp.clone(),
                player,
                rtp,
                destinations,
                bytes_out: self.lifecycle.bytes_out().clone(),
                shared: self.shared.clone(),
                send_timeout: self.context.settings.limits.send_timeout,
                output: output.clone(),
                control: self.socket.clone(),
            };
            writer.spawn(&self.context.flush);
            self.udp_output = Some(output);
            return Ok(());
        }
        let output = Rc::new(PendingOutput::default());
        let settings = &self.context.settings;
        let writer = PlayerWriter {
            socket: self.socket.clone(),
            player,
            framing: RtspFraming::new(rtp, channels, self.shared.clone()),
            bytes_out: self.lifecycle.bytes_out().clone(),
            send_timeout: settings.limits.send_timeout,
            output: output.clone(),
        };
        writer.spawn(&self.context.flush);
        self.output = Some(output);
        Ok(())
    }

    /// PAUSE of a playing player: its queue is emptied and it is offered nothing until PLAY.
    /// The reply is the last thing it gets, after what its writer had already taken.
    fn pause(&mut self) {
        if let (Some(Playing { started: true, .. }), Some(player)) = (&self.playing, self.lifecycle.player()) {
            player.pause();
            self.shared.set_paused(true);
        }
    }

    /// PLAY after PAUSE: the player starts again from the cached GOP, less what it was
    /// already sent. Paused for less than a GOP, it continues with the packet after the last
    /// one it got (it holds the frames the next ones depend on); paused longer, it starts on
    /// the GOP's keyframe, as a new player does. Either way the picture is back at once, and
    /// what it gets first is in its queue, for `RTP-Info`.
    fn resume(&self, player: &Rc<Player>) {
        self.shared.set_paused(false);
        let key = self.lifecycle.entry().stream.borrow().clone();
        let Some(stream) = self.context.hub.stream(&key) else {
            player.resume(true);
            return;
        };
        let (start, has_video) = stream.cached_start();
        let continues = start
            .iter()
            .any(|packet| packet.kind == PacketKind::Video && packet.keyframe && self.shared.was_sent(packet));
        player.resume(!continues);
        let drops = &self.context.hub.stats().player_queue_drops;
        for packet in start.iter().filter(|packet| packet.sequence_header || !self.shared.was_sent(packet)) {
            player.offer(packet, has_video, drops);
        }
    }

    /// RECORD: the hub gets the announced sequence headers first. A publish held for
    /// `on_media` is asked then, before RECORD is answered, with what the ANNOUNCE declared
    /// (its tracks, and the sequence headers its SDP carries): a refusal is RECORD's `403`.
    async fn record(&mut self) -> Result<Option<Ending>, RtspError> {
        let Some(publishing) = self.publishing.as_mut() else {
            self.connection.reject(Status::METHOD_NOT_VALID_IN_THIS_STATE);
            return Ok(None);
        };
        if !publishing.recording {
            publishing.recording = true;
            let ingest = &publishing.ingest;
            let (video, audio) = (ingest.carries(MediaKind::Video), ingest.carries(MediaKind::Audio));
            let headers = ingest.sequence_headers();
            self.lifecycle.declare_media(video, audio);
            for (kind, header) in headers {
                self.lifecycle.media(kind, 0, header);
            }
            if let Some(ending) = Box::pin(self.decide_media()).await? {
                return Ok(Some(ending));
            }
        }
        self.connection.accept();
        Ok(None)
    }

    /// Asks `on_media` about a held publish (nothing for one that is not held), beside
    /// shutdown and kicks; boxed by its caller, as the admissions are, so that no session's
    /// future carries the callback's state. Refused, RECORD is answered `403` and the session
    /// ends.
    async fn decide_media(&mut self) -> Result<Option<Ending>, RtspError> {
        let (context, entry) = (self.context.clone(), self.lifecycle.entry().clone());
        let admission = tokio::select! {
            admission = self.lifecycle.admit_media() => admission,
            _ = context.shutdown.wait() => return Ok(Some(Ending::Closed(CloseReason::Shutdown))),
            _ = entry.kicked() => return Ok(Some(Ending::Closed(CloseReason::AdminKick))),
        };
        let Admission::Refused(refusal) = admission else { return Ok(None) };
        self.connection.reject(Status::FORBIDDEN);
        self.flush().await?;
        Err(RtspError::Refused(refusal.to_string()))
    }

    /// An interleaved frame: a publisher's RTP becomes hub packets; RTCP (receiver reports
    /// from players, sender reports from publishers) is checked and otherwise ignored.
    fn interleaved(&mut self, channel: u8, payload: Bytes) {
        let Some((track, is_rtcp)) = self.connection.track_of_channel(channel) else { return };
        if is_rtcp {
            let _ = rtp::rtcp::check_compound(&payload);
            return;
        }
        self.rtp_in(track, &payload);
    }

    /// The datagrams that arrived on the session's UDP pair (all from the client's IP): RTP
    /// goes to the track whose client RTP port sent it; RTCP (receiver reports) is taken only
    /// from a track's client RTCP port. `true` when any came from a port the client set up:
    /// only those keep the session alive.
    fn datagrams(&mut self) -> bool {
        let Some(inbox) = self.udp.as_ref().map(|udp| udp.inbox.clone()) else { return false };
        let mut alive = false;
        while let Some(datagram) = inbox.pop() {
            self.lifecycle.count_in(datagram.data.len());
            let port = datagram.from.port();
            let track = self.connection.setups().iter().find_map(|setup| match setup.lower {
                Lower::Udp { client_port: (rtp_port, rtcp_port) } => {
                    let from = if datagram.rtcp { rtcp_port } else { rtp_port };
                    (from == port).then_some(setup.track)
                }
                Lower::Tcp { .. } => None,
            });
            let Some(track) = track else { continue };
            alive = true;
            if datagram.rtcp {
                let _ = rtp::rtcp::check_compound(&datagram.data);
            } else {
                self.rtp_in(track, &datagram.data);
            }
        }
        alive
    }

    /// One RTP packet of a published track: depacketized into hub packets.
    fn rtp_in(&mut self, track: usize, payload: &[u8]) {
        let Some(publishing) = self.publishing.as_mut().filter(|publishing| publishing.recording) else { return };
        let lifecycle = &mut self.lifecycle;
        let (stats, conn_id) = (self.context.hub.stats(), lifecycle.conn_id());
        publishing.ingest.packet(track, payload, Instant::now(), stats, conn_id, |kind, timestamp, body| {
            lifecycle.media(kind, timestamp, body)
        });
    }

    /// Sends the connection's replies: written here before the writer runs, handed to the
    /// writer after.
    async fn flush(&mut self) -> Result<(), RtspError> {
        if !self.connection.has_transmit() {
            return Ok(());
        }
        let mut out = Vec::new();
        self.connection.poll_transmit(&mut out);
        if self.output.is_some()
            && let Some(player) = self.lifecycle.player()
        {
            self.shared.reply(&out);
            player.poke();
            return Ok(());
        }
        let bytes_out = self.lifecycle.bytes_out();
        bytes_out.set(bytes_out.get() + out.len() as u64);
        write_all(&self.socket, out, self.context.settings.limits.send_timeout).await?;
        Ok(())
    }

    /// Waits (at most `send_timeout`) until the writer sent the last replies.
    async fn drain(&self) {
        let Some(output) = &self.output else { return };
        let deadline = tokio::time::Instant::now() + self.context.settings.limits.send_timeout;
        let player = self.lifecycle.player();
        while (self.shared.has_replies() || output.unsent() > 0)
            && !player.is_some_and(|player| player.is_kicked())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn random(&self) -> u64 {
        self.context_random()
    }

    /// Random bits from the operating system: SSRCs, first sequence numbers and nonces must
    /// not be guessable from what other sessions were told (the shard's fast generator is
    /// predictable from one output).
    fn context_random(&self) -> u64 {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            self.context.fill_random(&mut bytes);
        }
        u64::from_le_bytes(bytes)
    }
}

/// Resolves when `inbox` has a datagram; never without one.
async fn udp_ready(inbox: Option<&UdpInbox>) {
    match inbox {
        Some(inbox) => inbox.ready().await,
        None => std::future::pending().await,
    }
}
