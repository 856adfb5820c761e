//! An HTTP-FLV session: one accepted connection on `http_listen`, one request, driven to its
//! end.
//!
//! The session reads one request head (within `handshake_timeout`: a head that never ends is
//! a slowloris), routes it, and asks the connection's [`Lifecycle`] exactly as an RTMP
//! player's connect and play would (`on_connect`, `on_play`, their events). Admitted and live,
//! it answers `200` (or `101` for a WebSocket) and hands the socket's writing to a
//! [`PlayerWriter`] over `http_flv_out.rs`'s framing; the session keeps reading only to see
//! the client leave and to answer its WebSocket pings and close.
//!
//! Every other request gets its status and the connection closes: `403` denied by a callback,
//! `404` unknown path or a stream nobody publishes (after `on_play`, so a client it denies
//! learns nothing of which streams exist), `405` other methods, `400` malformed, `431` an
//! oversized head, `204` a CORS preflight. One request per connection: players hold theirs for
//! the stream's life, and nothing else is served here.
//!
//! The body runs until the connection closes (no `Content-Length`, not chunked): chunked
//! encoding would cost a size line per write and buys nothing, as the stream has no end to
//! announce. A publisher leaving ends the response.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_uring::net::TcpStream;

use super::http_flv_out::{HttpFlvFraming, OutputShared};
use super::io::{MIN_READ_BUFFER, PendingOutput, ReadBuffer, write_all};
use super::lifecycle::{Admission, CloseReason, ConnectRequest, Lifecycle, Refusal, StreamRequest};
use super::limits::WireLimit;
use super::player_writer::PlayerWriter;
use super::rtmp::sleep_until_some;
use super::{SessionEnd, SessionFailure, ShardContext};
use crate::hooks::event::Protocol;
use crate::hub::HubStats;
use crate::protocol::http_server::{self, HeadError, Method, RequestHead, ResponseHead, StreamTarget, TargetError};
use crate::protocol::websocket::{self, ClientFrame, FrameError};

/// How long a refused client's remaining input is read after its answer, so closing with
/// unread bytes does not reset the connection before the answer is read.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read while lingering.
const LINGER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpFlvError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("request head not complete within {0:?}")]
    HeadTimeout(Duration),
    #[error("websocket: {0}")]
    WebSocket(#[from] FrameError),
    #[error("on_update (update_strict): {0}")]
    UpdateDenied(String),
}

impl SessionFailure for HttpFlvError {
    fn count(&self, stats: &HubStats) {
        match self {
            HttpFlvError::Io(error) => super::count_send_timeout(error, stats),
            HttpFlvError::HeadTimeout(_) => drop(stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed)),
            _ => {}
        }
    }
}

/// How a session ended without an error.
#[derive(Debug)]
enum Ending {
    Closed(CloseReason),
    /// The request got its whole answer (a refusal, an error, a HEAD, a preflight).
    Answered {
        status: u16,
        why: String,
    },
    /// The publisher left, so the response ended.
    StreamEnded,
}

impl SessionEnd for Ending {
    fn describe(&self) -> String {
        match self {
            Ending::Closed(reason) => reason.describe().to_owned(),
            Ending::Answered { status, why } => format!("answered {status}: {why}"),
            Ending::StreamEnded => "stream ended".to_owned(),
        }
    }

    fn too_slow(&self) -> bool {
        matches!(self, Ending::Closed(CloseReason::TooSlow))
    }
}

/// Runs one HTTP-FLV connection until it closes; logs how it ended.
pub async fn run(socket: TcpStream, peer: SocketAddr, conn_id: u64, context: Rc<ShardContext>) {
    let _ = socket.set_nodelay(true);
    let socket = Rc::new(socket);
    let lifecycle = Lifecycle::new(&context, Protocol::HttpFlv, peer, conn_id);
    let mut session = Session { socket: socket.clone(), context, lifecycle, output: None, shared: Rc::default() };
    let result = session.run().await;
    super::end_session(&mut session.lifecycle, &socket, session.context.hub.stats(), result);
}

struct Session {
    socket: Rc<TcpStream>,
    context: Rc<ShardContext>,
    lifecycle: Lifecycle,
    /// The writer's unsent bytes, drained before the session ends on its own, and why the
    /// writer stopped if it failed. `None` until the stream starts.
    output: Option<Rc<PendingOutput>>,
    /// Shared with the writer's framing: the stream's end, WebSocket control frames.
    shared: Rc<OutputShared>,
}

/// A request head read whole, and any bytes the client sent after it.
struct Request {
    head: RequestHead,
    rest: Vec<u8>,
}

impl Session {
    async fn run(&mut self) -> Result<Ending, HttpFlvError> {
        let request = match self.read_request().await? {
            Ok(request) => request,
            Err(ending) => return Ok(ending),
        };
        self.lifecycle.handshake_complete();
        let Request { head, rest } = request;
        match head.method {
            Method::Options => return self.answer_preflight().await,
            Method::Other => {
                let allow = [("Allow", "GET, HEAD, OPTIONS")];
                return self.answer(405, &allow, "method not allowed").await;
            }
            Method::Get | Method::Head => {}
        }
        let target = match StreamTarget::parse(&head.path, &head.query) {
            Ok(target) => target,
            Err(TargetError::NotFound) => return self.answer(404, &[], "not found").await,
            Err(TargetError::Invalid(why)) => return self.answer(400, &[], why).await,
        };
        if head.upgrade.as_ref().is_some_and(|upgrade| !upgrade.version_13) {
            return self.answer(426, &[("Sec-WebSocket-Version", "13")], "WebSocket version 13 only").await;
        }
        if let Some(ending) = self.admit(&head, target).await {
            return Ok(ending);
        }
        if head.method == Method::Head {
            self.write(&success_head(None)).await?;
            return Ok(Ending::Answered { status: 200, why: "HEAD".to_owned() });
        }
        let accept = head.upgrade.as_ref().map(|upgrade| websocket::accept_key(&upgrade.key));
        self.write(&success_head(accept.as_deref())).await?;
        self.start_writer(accept.is_some());
        self.play(accept.is_some(), rest).await
    }

    /// Reads until a whole request head arrived, within `handshake_timeout`. `Err` inside:
    /// the session ended meanwhile (the client left, was answered, shutdown, a kick).
    async fn read_request(&mut self) -> Result<Result<Request, Ending>, HttpFlvError> {
        let timeout = self.context.settings.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        // A read never needs to be larger than a whole head may be.
        let max_head = self.context.settings.wire.http_request_head_bytes;
        let mut reader = ReadBuffer::with_limits(MIN_READ_BUFFER * 2, max_head);
        let mut input = Vec::new();
        let entry = self.lifecycle.entry().clone();
        loop {
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, reader.read(&self.socket)) => read,
                _ = self.context.shutdown.wait() => return Ok(Err(Ending::Closed(CloseReason::Shutdown))),
                _ = entry.kicked() => return Ok(Err(Ending::Closed(CloseReason::AdminKick))),
            };
            let Ok(read) = read else { return Err(HttpFlvError::HeadTimeout(timeout)) };
            let read = read?;
            if read.is_empty() {
                return Ok(Err(Ending::Closed(CloseReason::PeerClosed)));
            }
            self.lifecycle.count_in(read.len());
            input.extend_from_slice(read);
            let len = match http_server::check(&input, max_head) {
                Ok(len) => len,
                Err(HeadError::Incomplete) => continue,
                Err(HeadError::TooLarge) => {
                    self.context.wire_limit_reached(WireLimit::HttpRequestHeadBytes, "HTTP-FLV request head");
                    return self.answer_head_error(HeadError::TooLarge).await.map(Err);
                }
                Err(error) => return self.answer_head_error(error).await.map(Err),
            };
            return match RequestHead::parse(&input[..len]) {
                Ok(head) => Ok(Ok(Request { head, rest: input.split_off(len) })),
                Err(error) => self.answer_head_error(error).await.map(Err),
            };
        }
    }

    async fn answer_head_error(&mut self, error: HeadError) -> Result<Ending, HttpFlvError> {
        let status = error.status().unwrap_or(400);
        self.answer(status, &[], &error.to_string()).await
    }

    /// Asks `on_connect` and `on_play` as for an RTMP player, and checks that someone
    /// publishes the stream. `Some` when the session ends here instead of playing.
    async fn admit(&mut self, head: &RequestHead, target: StreamTarget) -> Option<Ending> {
        let scheme = if head.upgrade.is_some() { "ws" } else { "http" };
        // HTTP/1.0 may omit Host; the URL then says `localhost`.
        let host = if head.host.is_empty() { "localhost" } else { head.host.as_str() };
        let tc_url = format!("{scheme}://{host}/{}", target.app);
        let connect = ConnectRequest {
            app: target.app,
            url: tc_url.clone(),
            tc_url,
            flash_ver: head.user_agent.clone(),
            swf_url: String::new(),
            page_url: head.referer.clone(),
            args: target.args.clone(),
        };
        // An HTTP player cannot be told "not yet" in-band, so the defaults of an RTMP play
        // that names no position: live, to the end.
        let play = StreamRequest {
            name: target.name,
            args: target.args,
            callback_fields: vec![("start", "-2".into()), ("duration", "-1".into()), ("reset", "1".into())],
        };
        let (context, entry) = (self.context.clone(), self.lifecycle.entry().clone());
        let admitted = async {
            if let Admission::Refused(refusal) = self.lifecycle.admit_connect(connect).await {
                return Some(refusal);
            }
            match self.lifecycle.admit_play(play).await {
                Admission::Refused(refusal) => Some(refusal),
                Admission::Admitted => None,
            }
        };
        // A callback can take its whole timeout; shutdown and kicks do not wait for it (the
        // dropped callback shuts its own socket).
        let refused = tokio::select! {
            refused = admitted => refused,
            _ = context.shutdown.wait() => return Some(Ending::Closed(CloseReason::Shutdown)),
            _ = entry.kicked() => return Some(Ending::Closed(CloseReason::AdminKick)),
        };
        if let Some(refusal) = refused {
            context.hub.stats().requests_refused.fetch_add(1, Ordering::Relaxed);
            // A server limit is the server's state, not the client's fault: 503, as at accept.
            let status = if matches!(refusal, Refusal::Limit(_)) { 503 } else { 403 };
            return Some(self.answer(status, &[], &refusal.to_string()).await.unwrap_or_else(|error| {
                Ending::Answered { status, why: format!("{refusal} (answer not sent: {error})") }
            }));
        }
        let stream = entry.stream.borrow().clone();
        if !context.hub.is_published(&stream) {
            let why = format!("stream {stream} is not published");
            return Some(self.answer(404, &[], &why).await.unwrap_or(Ending::Answered { status: 404, why }));
        }
        None
    }

    /// Hands the socket's writing to the player's writer task.
    fn start_writer(&mut self, websocket: bool) {
        let Some(player) = self.lifecycle.player().cloned() else { return };
        let output = Rc::new(PendingOutput::default());
        let settings = &self.context.settings;
        let writer = PlayerWriter {
            socket: self.socket.clone(),
            player,
            framing: HttpFlvFraming::new(self.shared.clone(), websocket),
            bytes_out: self.lifecycle.bytes_out().clone(),
            send_timeout: settings.limits.send_timeout,
            output: output.clone(),
        };
        writer.spawn(&self.context.flush);
        self.output = Some(output);
    }

    /// While the writer streams: reads the client (to see it leave, and its WebSocket control
    /// frames), runs the update timer, and ends on shutdown, a kick or the stream's end.
    async fn play(&mut self, websocket: bool, mut pending: Vec<u8>) -> Result<Ending, HttpFlvError> {
        let entry = self.lifecycle.entry().clone();
        let mut reader = ReadBuffer::with_limits(MIN_READ_BUFFER, 16 * 1024);
        if !websocket {
            pending.clear();
        }
        loop {
            if websocket && let Some(ending) = self.handle_frames(&mut pending).await? {
                return Ok(ending);
            }
            let socket = self.socket.clone();
            // The read must never be dropped while in flight: timers are handled beside it.
            let input = {
                let read = reader.read(&socket);
                tokio::pin!(read);
                loop {
                    let update_due = self.lifecycle.poll_timeout().map(tokio::time::Instant::from_std);
                    tokio::select! {
                        input = &mut read => break input,
                        _ = self.context.shutdown.wait() => return Ok(Ending::Closed(CloseReason::Shutdown)),
                        _ = entry.kicked() => return Ok(Ending::Closed(CloseReason::AdminKick)),
                        _ = self.shared.stream_ended.notified() => {
                            self.drain().await;
                            return Ok(Ending::StreamEnded);
                        }
                        _ = sleep_until_some(update_due) => {
                            if let Some(ended) = self.lifecycle.handle_timeout(std::time::Instant::now()) {
                                return Ok(Ending::Closed(ended));
                            }
                        }
                        denied = self.lifecycle.update_verdict() => {
                            if let Some(reason) = denied {
                                return Err(HttpFlvError::UpdateDenied(reason));
                            }
                        }
                    }
                }
            };
            let input = match super::read_result(&mut self.lifecycle, self.output.as_ref(), input)? {
                Ok(input) => input,
                Err(reason) => return Ok(Ending::Closed(reason)),
            };
            // A plain HTTP client has nothing more to say; what it sends is read and dropped.
            if websocket {
                pending.extend_from_slice(input);
            }
        }
    }

    /// Acts on the complete client frames in `pending` and removes them. `Some` when the
    /// session ends (the client closed).
    async fn handle_frames(&mut self, pending: &mut Vec<u8>) -> Result<Option<Ending>, HttpFlvError> {
        let mut consumed = 0;
        let result = loop {
            match websocket::decode(&pending[consumed..]) {
                Ok((frame, len)) => {
                    consumed += len;
                    match frame {
                        ClientFrame::Ping(payload) => self.shared.pong(websocket::pong_frame(&payload)),
                        ClientFrame::Close { .. } => {
                            self.shared.close(websocket::close_frame(websocket::CLOSE_NORMAL, ""));
                            break Ok(Some(Ending::Closed(CloseReason::PeerClosed)));
                        }
                        ClientFrame::Ignored => {}
                    }
                }
                Err(FrameError::Incomplete) => break Ok(None),
                Err(error) => {
                    self.shared.close(websocket::close_frame(error.close_code(), &error.to_string()));
                    break Err(error.into());
                }
            }
        };
        pending.drain(..consumed);
        if let Some(player) = self.lifecycle.player()
            && consumed > 0
        {
            player.poke();
        }
        if !matches!(result, Ok(None)) {
            self.drain().await;
        }
        result
    }

    /// Waits (at most `send_timeout`) until the writer has sent what it was handed, queued
    /// control frames included, so the connection's last bytes are not cut off.
    async fn drain(&self) {
        let Some(output) = &self.output else { return };
        let deadline = tokio::time::Instant::now() + self.context.settings.limits.send_timeout;
        let player = self.lifecycle.player();
        // Polled: this runs once per connection, at its end, and the writer's own wake-ups
        // belong to the writer.
        while (self.shared.has_control() || output.unsent() > 0)
            && !player.is_some_and(|player| player.is_kicked())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn write(&self, out: &[u8]) -> io::Result<()> {
        let bytes_out = self.lifecycle.bytes_out();
        bytes_out.set(bytes_out.get() + out.len() as u64);
        write_all(&self.socket, out.to_vec(), self.context.settings.limits.send_timeout).await.map(drop)
    }

    /// Answers `status` with a short text body and ends the exchange.
    async fn answer(&mut self, status: u16, headers: &[(&str, &str)], why: &str) -> Result<Ending, HttpFlvError> {
        let body = format!("{status} {}\n", http_server::reason(status));
        let length = body.len().to_string();
        let mut all = vec![
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", length.as_str()),
            ("Access-Control-Allow-Origin", "*"),
            ("Connection", "close"),
        ];
        all.extend_from_slice(headers);
        let mut out = Vec::with_capacity(256);
        ResponseHead { status, headers: &all }.encode(&mut out);
        out.extend_from_slice(body.as_bytes());
        self.write(&out).await?;
        self.linger().await;
        Ok(Ending::Answered { status, why: why.to_owned() })
    }

    /// A CORS preflight: any origin may play (a player page is usually served elsewhere).
    async fn answer_preflight(&mut self) -> Result<Ending, HttpFlvError> {
        let mut out = Vec::with_capacity(256);
        let headers = [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
            ("Access-Control-Allow-Headers", "*"),
            ("Access-Control-Max-Age", "86400"),
            ("Connection", "close"),
        ];
        ResponseHead { status: 204, headers: &headers }.encode(&mut out);
        self.write(&out).await?;
        self.linger().await;
        Ok(Ending::Answered { status: 204, why: "CORS preflight".to_owned() })
    }

    /// Closes the sending side and reads what the client still sends, briefly, so the
    /// answer is not lost to a reset (a close with unread input sends RST).
    async fn linger(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        let mut reader = ReadBuffer::with_limits(MIN_READ_BUFFER, 4096);
        let mut read = 0;
        let deadline = tokio::time::Instant::now() + LINGER;
        while read < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, reader.read(&self.socket)).await {
                Ok(Ok(input)) if !input.is_empty() => read += input.len(),
                _ => break,
            }
        }
    }
}

/// The head of a `200` stream (`accept`: none) or a `101` WebSocket upgrade.
fn success_head(accept: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match accept {
        None => ResponseHead {
            status: 200,
            headers: &[
                ("Content-Type", "video/x-flv"),
                ("Cache-Control", "no-cache"),
                ("Access-Control-Allow-Origin", "*"),
                ("Connection", "close"),
            ],
        }
        .encode(&mut out),
        Some(accept) => ResponseHead {
            status: 101,
            headers: &[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)],
        }
        .encode(&mut out),
    }
    out
}
