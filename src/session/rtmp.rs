//! An RTMP session: one accepted connection, driven to its end.
//!
//! The reader loop is the session: read -> `handle_input` -> hand each event to the
//! connection's [`Lifecycle`] (hooks and hub) -> map its answer to RTMP replies -> write what
//! the protocol wants sent. While a callback is outstanding the session awaits it and reads
//! nothing; other sessions on the shard keep running.
//!
//! A player also gets a writer task, the only writer of its socket from then on
//! ([`PlayerWriter`] with the RTMP framing of `rtmp_out.rs`).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_uring::net::TcpStream;

use super::io::{PendingOutput, ReadBuffer, write_all};
use super::lifecycle::{Admission, CloseReason, ConnectRequest, Lifecycle, Refusal, StreamRequest};
use super::limits::WireLimit;
use super::player_writer::PlayerWriter;
use super::rtmp_out::RtmpFraming;
use super::{SessionFailure, ShardContext};
use crate::hooks::event::Protocol;
use crate::hub::{HubStats, PacketKind};
use crate::protocol::rtmp::chunk::ChunkError;
use crate::protocol::rtmp::server::{
    self, ConnectInfo, Event, PlayRequest, PublishRequest, Rejection, ServerConnection,
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("rtmp: {0}")]
    Protocol(#[from] server::Error),
    #[error("handshake and connect not completed within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("client sent nothing for {0:?} (neither playing nor publishing, or a silent publisher)")]
    IdleTimeout(Duration),
    #[error("{0}")]
    Refused(String),
    #[error("more than {limit} bytes of output stayed unsent for {waited:?}: the peer does not read")]
    OutputFull { limit: usize, waited: Duration },
}

impl SessionFailure for SessionError {
    fn count(&self, stats: &HubStats) {
        let counter = match self {
            SessionError::Io(error) if error.kind() == io::ErrorKind::TimedOut => &stats.send_timeouts,
            SessionError::OutputFull { .. } => &stats.send_timeouts,
            SessionError::Protocol(server::Error::Chunk(ChunkError::PartialBudgetExhausted { .. })) => {
                &stats.partial_budget_refusals
            }
            SessionError::Protocol(server::Error::Chunk(ChunkError::SlowMessage { .. })) => &stats.slow_messages,
            SessionError::HandshakeTimeout(_) => &stats.handshake_timeouts,
            SessionError::IdleTimeout(_) => &stats.idle_timeouts,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn dropped(&self) -> bool {
        !matches!(self, SessionError::Refused(_))
    }
}

/// Runs one RTMP connection until it closes; logs how it ended.
pub async fn run(socket: TcpStream, peer: SocketAddr, conn_id: u64, context: Rc<ShardContext>) {
    let _ = socket.set_nodelay(true);
    let socket = Rc::new(socket);
    let lifecycle = Lifecycle::new(&context, Protocol::Rtmp, peer, conn_id);
    let mut session = Session::new(socket.clone(), context, lifecycle);
    let result = session.run().await;
    if let Err(SessionError::Protocol(server::Error::Chunk(error))) = &result {
        let hit = match error {
            ChunkError::MessageTooLarge(_) => Some(WireLimit::RtmpMessageBytes),
            ChunkError::TooManyChunkStreams => Some(WireLimit::RtmpChunkStreams),
            _ => None,
        };
        if let Some(limit) = hit {
            session.context.wire_limit_reached(limit, "RTMP message");
        }
    }
    super::end_or_hold(session.lifecycle, socket, result);
}

struct Session {
    socket: Rc<TcpStream>,
    context: Rc<ShardContext>,
    lifecycle: Lifecycle,
    conn: Rc<RefCell<ServerConnection>>,
    /// While playing: output handed to the player's writer and not yet sent; also how the
    /// writer says why it stopped.
    output: Option<Rc<PendingOutput>>,
    /// Output buffer reused between writes while the reader is the writer.
    out: Vec<u8>,
    /// Set when the session should close once its output is flushed.
    closing: Option<String>,
}

impl Session {
    fn new(socket: Rc<TcpStream>, context: Rc<ShardContext>, lifecycle: Lifecycle) -> Session {
        let mut seed = [0u8; crate::protocol::rtmp::handshake::SEED_LEN];
        context.fill_random(&mut seed);
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u32).unwrap_or(0);
        let mut conn = ServerConnection::new(context.settings.rtmp, seed, epoch);
        conn.set_partial_budget(context.partial_budget.clone());
        Session {
            socket,
            context,
            lifecycle,
            conn: Rc::new(RefCell::new(conn)),
            output: None,
            out: Vec::new(),
            closing: None,
        }
    }

    async fn run(&mut self) -> Result<CloseReason, SessionError> {
        let settings = self.context.settings;
        let mut reader = ReadBuffer::new(2048);
        let handshake_deadline = tokio::time::Instant::now() + settings.handshake_timeout;
        let entry = self.lifecycle.entry().clone();
        loop {
            if self.output.is_some()
                && let Some(reason) = self.wait_for_room().await?
            {
                return Ok(reason);
            }
            let slow_body = self.slow_body_deadline();
            let handshaking = self.conn.borrow().is_handshaking();
            // Until `connect` is done the handshake deadline applies; after it, a connection
            // that neither plays nor publishes (or a publisher gone quiet) has `idle_timeout`.
            // Players send nothing while they watch, so they have no read timeout.
            let connecting = !self.lifecycle.has_connect();
            let idle_limited = !self.lifecycle.is_playing();
            // The read must never be dropped while in flight: io_uring may already have filled
            // its buffer, and those bytes would be lost mid-chunk. Timers and update replies
            // are handled beside it, in an inner loop, while the same read stays pending.
            let socket = self.socket.clone();
            let input = {
                let read = async {
                    if connecting {
                        match tokio::time::timeout_at(handshake_deadline, reader.read(&socket)).await {
                            Ok(read) => read.map_err(SessionError::from),
                            Err(_) => Err(SessionError::HandshakeTimeout(settings.handshake_timeout)),
                        }
                    } else if idle_limited {
                        match tokio::time::timeout(settings.idle_timeout, reader.read(&socket)).await {
                            Ok(read) => read.map_err(SessionError::from),
                            Err(_) => Err(SessionError::IdleTimeout(settings.idle_timeout)),
                        }
                    } else {
                        reader.read(&socket).await.map_err(SessionError::from)
                    }
                };
                tokio::pin!(read);
                let eviction = self.lifecycle.eviction();
                loop {
                    let update_due = self.lifecycle.poll_timeout().map(tokio::time::Instant::from_std);
                    tokio::select! {
                        input = &mut read => break input,
                        // Ending the session: dropping the read is harmless now.
                        _ = self.context.shutdown.wait() => return Ok(CloseReason::Shutdown),
                        _ = entry.kicked() => return Ok(CloseReason::AdminKick),
                        _ = super::lifecycle::taken_over(eviction.clone()) => return Ok(CloseReason::TakenOver),
                        _ = sleep_until_some(update_due) => {
                            if let Some(ended) = self.lifecycle.handle_timeout(std::time::Instant::now()) {
                                return Ok(ended);
                            }
                        }
                        _ = sleep_until_some(slow_body) => {
                            let limit = settings.limits.partial_message_timeout.as_millis() as u64;
                            self.conn.borrow().check_partial_age(self.now_ms(), limit)?;
                        }
                        denied = self.lifecycle.update_verdict() => {
                            if let Some(reason) = denied {
                                return Err(SessionError::Refused(format!("on_update (update_strict): {reason}")));
                            }
                        }
                    }
                }
            };
            let input = match super::read_result(&mut self.lifecycle, self.output.as_ref(), input)? {
                Ok(input) => input,
                Err(reason) => return Ok(reason),
            };
            let now_ms = self.now_ms();
            {
                let mut conn = self.conn.borrow_mut();
                conn.set_time(now_ms);
                conn.handle_input(input)?;
            }
            if handshaking && !self.conn.borrow().is_handshaking() {
                // The handshake's large messages are done; idle from here on costs little.
                reader.shrink();
            }
            if let Some(reason) = self.handle_events().await? {
                return Ok(reason);
            }
            self.flush().await?;
            if let Some(reason) = self.closing.take() {
                if self.lifecycle.ended_by().is_some() {
                    // A publish refused under way (`on_media`); boxed, as the admissions are.
                    Box::pin(self.drain_before_close()).await;
                }
                return Err(SessionError::Refused(reason));
            }
        }
    }

    /// Milliseconds since the session started: the protocol's clock.
    fn now_ms(&self) -> u64 {
        self.lifecycle.started().elapsed().as_millis() as u64
    }

    /// When the oldest incomplete incoming message has been incomplete too long.
    fn slow_body_deadline(&self) -> Option<tokio::time::Instant> {
        let started_ms = self.conn.borrow().oldest_partial_ms()?;
        let at = self.lifecycle.started()
            + Duration::from_millis(started_ms)
            + self.context.settings.limits.partial_message_timeout;
        Some(tokio::time::Instant::from_std(at))
    }

    /// Backpressure: reads nothing while the connection's unsent output is at or above
    /// `max_pending_output`, and gives up on a peer that leaves it there for `send_timeout`.
    async fn wait_for_room(&self) -> Result<Option<CloseReason>, SessionError> {
        let limits = self.context.settings.limits;
        let deadline = tokio::time::Instant::now() + limits.send_timeout;
        let (Some(player), Some(output)) = (self.lifecycle.player(), &self.output) else { return Ok(None) };
        let entry = self.lifecycle.entry();
        loop {
            if let Some(error) = output.take_failure() {
                return Err(error.into());
            }
            let unsent = output.unsent() + self.conn.borrow().transmit_len();
            if unsent < limits.max_pending_output {
                return Ok(None);
            }
            tokio::select! {
                _ = output.drained() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(SessionError::OutputFull { limit: limits.max_pending_output, waited: limits.send_timeout });
                }
                _ = self.context.shutdown.wait() => return Ok(Some(CloseReason::Shutdown)),
                _ = entry.kicked() => return Ok(Some(CloseReason::AdminKick)),
                _ = player.kicked() => return Ok(Some(CloseReason::TooSlow)),
            }
        }
    }

    /// Acts on what the protocol produced. `Some` when the session must end meanwhile: an
    /// admission awaits its callback (up to the callback's timeout), and shutdown or an
    /// operator's kick do not wait for it; the dropped callback shuts its own socket.
    async fn handle_events(&mut self) -> Result<Option<CloseReason>, SessionError> {
        let (context, entry) = (self.context.clone(), self.lifecycle.entry().clone());
        loop {
            // Take the event in its own statement: acting on it borrows the connection again.
            let event = self.conn.borrow_mut().poll_event();
            let Some(event) = event else {
                // Input that arrived while a decision was pending is processed once it is made.
                let mut conn = self.conn.borrow_mut();
                if conn.is_pending() || !conn.has_deferred_input() || self.closing.is_some() {
                    return Ok(None);
                }
                conn.handle_input(&[])?;
                continue;
            };
            if let Some(admission) = self.act(event) {
                tokio::select! {
                    () = admission => {}
                    _ = context.shutdown.wait() => return Ok(Some(CloseReason::Shutdown)),
                    _ = entry.kicked() => return Ok(Some(CloseReason::AdminKick)),
                }
            }
            if self.closing.is_some() {
                return Ok(None);
            }
        }
    }

    /// Acts on one event. A connect, publish or play is returned as the admission to await
    /// (it asks a callback), as is the media that makes a held publish's media known
    /// (`on_media`); everything else is done at once. The admissions hold a request
    /// while they wait: boxed, they cost an allocation per request instead of a larger future
    /// for every connection, idle ones included (mimalloc rounds a task up to its size class).
    fn act(&mut self, event: Event) -> Option<Pin<Box<dyn Future<Output = ()> + '_>>> {
        match event {
            Event::Connect(info) => return Some(Box::pin(self.on_connect(*info))),
            Event::Publish(request) => return Some(Box::pin(self.on_publish(*request))),
            Event::Play(request) => return Some(Box::pin(self.on_play(*request))),
            Event::HandshakeComplete => self.lifecycle.handshake_complete(),
            Event::Audio { timestamp, payload } => self.lifecycle.media(PacketKind::Audio, timestamp, payload),
            Event::Video { timestamp, payload } => self.lifecycle.media(PacketKind::Video, timestamp, payload),
            Event::Data { timestamp, payload, metadata } => {
                self.lifecycle.media(PacketKind::Data { metadata }, timestamp, payload)
            }
            Event::Unpublish { .. } => self.lifecycle.end_publish(),
            Event::StopPlay { .. } => {
                self.lifecycle.end_play();
                self.output = None;
            }
            Event::Refused(refusal) => {
                // The client has its error reply queued; it goes out before the close.
                self.context.hub.stats().requests_refused.fetch_add(1, Ordering::Relaxed);
                self.closing = Some(format!("refused: {refusal}"));
            }
        }
        // A publish held for `on_media` asks once its media is known; nothing more is read
        // (it waits in the socket) until the answer.
        self.lifecycle.media_known().then(|| Box::pin(self.on_media()) as Pin<Box<dyn Future<Output = ()> + '_>>)
    }

    /// Asks `on_media`; a refusal withdraws the publish as a refused publish is refused.
    async fn on_media(&mut self) {
        if let Admission::Refused(refusal) = self.lifecycle.admit_media().await {
            let key = self.lifecycle.entry().stream.borrow().clone();
            let name = key.split_once('/').map_or(key.as_str(), |(_, name)| name);
            self.conn.borrow_mut().revoke_publish(name, &refusal.to_string());
            self.closing = Some(refusal.to_string());
        }
    }

    async fn on_connect(&mut self, info: ConnectInfo) {
        let request = ConnectRequest {
            app: info.app,
            url: info.tc_url.clone(),
            tc_url: info.tc_url,
            flash_ver: info.flash_ver,
            swf_url: info.swf_url,
            page_url: info.page_url,
            args: info.args,
        };
        match self.lifecycle.admit_connect(request).await {
            Admission::Admitted => self.conn.borrow_mut().accept(),
            Admission::Refused(refusal) => self.refuse(refusal),
        }
    }

    async fn on_publish(&mut self, request: PublishRequest) {
        let request = StreamRequest {
            name: request.name,
            args: request.args,
            callback_fields: vec![("type", request.publish_type)],
        };
        match self.lifecycle.admit_publish(request).await {
            Admission::Admitted => self.conn.borrow_mut().accept(),
            Admission::Refused(refusal) => self.refuse(refusal),
        }
    }

    async fn on_play(&mut self, request: PlayRequest) {
        let stream_id = request.stream_id;
        let play = StreamRequest {
            name: request.name,
            args: request.args,
            callback_fields: vec![
                ("start", request.start.to_string()),
                ("duration", request.duration.to_string()),
                ("reset", u8::from(request.reset).to_string()),
            ],
        };
        if let Admission::Refused(refusal) = self.lifecycle.admit_play(play).await {
            return self.refuse(refusal);
        }
        let (Some(player), Some(name)) = (self.lifecycle.player().cloned(), self.lifecycle.playing_name()) else {
            return;
        };
        let name = name.to_owned();
        // Queued before the writer's first turn, so the play replies precede any media.
        self.conn.borrow_mut().accept();
        let output = Rc::new(PendingOutput::default());
        let settings = &self.context.settings;
        let writer = PlayerWriter {
            socket: self.socket.clone(),
            player,
            framing: RtmpFraming::new(self.conn.clone(), name, stream_id, settings.rtmp.chunk_size),
            bytes_out: self.lifecycle.bytes_out().clone(),
            send_timeout: settings.limits.send_timeout,
            output: output.clone(),
        };
        writer.spawn(&self.context.flush);
        self.output = Some(output);
    }

    /// Tells the client why, in RTMP's words (`_error` and onStatus), and closes the session
    /// once the reply is out.
    fn refuse(&mut self, refusal: Refusal) {
        let (rejection, closing) = match &refusal {
            Refusal::Denied { .. } => (Rejection::Denied, refusal.to_string()),
            Refusal::StreamBusy(error) => (Rejection::StreamBusy, format!("publish refused: {error}")),
            Refusal::Limit(_) => (Rejection::Denied, refusal.to_string()),
        };
        self.conn.borrow_mut().reject(rejection, &refusal.to_string());
        self.closing = Some(closing);
    }

    /// Reads and drops what a publisher whose publish was refused mid-stream still sends, until
    /// it closes or [`REVOKED_LINGER`] passes. Closing with its media unread would reset the
    /// connection, and the reset can destroy the refusal before the encoder reads it (ffmpeg
    /// looks for server messages between its writes): it would see a broken pipe, not why.
    async fn drain_before_close(&mut self) {
        let (socket, mut reader) = (self.socket.clone(), ReadBuffer::new(MIN_DRAIN_READ));
        let deadline = tokio::time::Instant::now() + REVOKED_LINGER;
        while let Ok(Ok(input)) = tokio::time::timeout_at(deadline, reader.read(&socket)).await {
            if input.is_empty() {
                return;
            }
            self.lifecycle.count_in(input.len());
        }
    }

    /// Sends what the protocol produced. Once a writer task exists it is the only writer,
    /// so the reader only wakes it.
    async fn flush(&mut self) -> Result<(), SessionError> {
        if let Some(player) = self.lifecycle.player() {
            if self.conn.borrow().has_transmit() {
                player.poke();
            }
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        self.conn.borrow_mut().poll_transmit(&mut out);
        if out.is_empty() {
            self.out = out;
            return Ok(());
        }
        let bytes_out = self.lifecycle.bytes_out();
        bytes_out.set(bytes_out.get() + out.len() as u64);
        let mut out = write_all(&self.socket, out, self.context.settings.limits.send_timeout).await?;
        out.clear();
        // Keep a small buffer for replies; drop one that grew for a burst.
        if out.capacity() <= SMALL_OUTPUT {
            self.out = out;
        }
        Ok(())
    }
}

/// How long a publisher refused mid-stream is read (and ignored) before its connection closes:
/// long enough for an encoder to read the refusal between two of its writes.
const REVOKED_LINGER: Duration = Duration::from_secs(2);
/// First read size of that draining: the media it reads is dropped.
const MIN_DRAIN_READ: usize = 16 * 1024;

/// Largest reply buffer a session keeps between writes: an idle connection holds it, so the
/// 3 KiB handshake reply's buffer must not stay.
const SMALL_OUTPUT: usize = 512;

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
