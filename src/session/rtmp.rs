//! An RTMP session: one accepted connection, driven to its end.
//!
//! The reader loop is the session: read -> `handle_input` -> act on events (ask hooks, talk
//! to the hub) -> write what the protocol wants sent. While a callback is outstanding the
//! session awaits it and reads nothing; other sessions on the shard keep running.
//!
//! A player also gets a writer task, the only writer of its socket from then on: it sends
//! the protocol's own output and the hub's packets in order, each packet as a small
//! per-player chunk header followed by the shared chunked payload, in one `writev`.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio_uring::net::TcpStream;
use tracing::{debug, info, warn};

use super::io::{PendingOutput, ReadBuffer, write_all, write_all_vectored};
use super::rtmp_out::{Timeline, append_packet};
use super::{SessionEntry, SessionGuard, ShardContext};
use crate::hooks::callback::{Call, ClientInfo, Decision};
use crate::hooks::event::{EventType, Protocol};
use crate::hooks::{Hooks, Origin};
use crate::hub::{HubStats, PacketKind, Player, PlayerHandle, PlayerItem, PublisherHandle, StreamChange};
use crate::protocol::flv::{self, MediaKind};
use crate::protocol::rtmp::chunk::ChunkError;
use crate::protocol::rtmp::server::{
    self, Args, ConnectInfo, Event, PlayRequest, PublishRequest, Rejection, ServerConnection,
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

impl SessionError {
    /// Counts the errors that mean "this connection hit a memory or time bound".
    fn count(&self, stats: &HubStats) {
        let counter = match self {
            SessionError::Io(error) if error.kind() == io::ErrorKind::TimedOut => &stats.send_timeouts,
            SessionError::OutputFull { .. } => &stats.send_timeouts,
            SessionError::Protocol(server::Error::Chunk(ChunkError::PartialBudgetExhausted { .. })) => {
                &stats.partial_budget_refusals
            }
            SessionError::Protocol(server::Error::Chunk(ChunkError::SlowMessage { .. })) => &stats.slow_messages,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a session ended without an error.
#[derive(Debug, Clone, Copy)]
pub enum CloseReason {
    PeerClosed,
    Shutdown,
    Kicked,
    /// An operator kicked it over the admin API.
    AdminKick,
}

/// Runs one RTMP connection until it closes; logs how it ended.
pub async fn run(socket: TcpStream, peer: SocketAddr, conn_id: u64, context: Rc<ShardContext>) {
    let guard = SessionGuard::new(&context, conn_id, peer, "rtmp");
    let _ = socket.set_nodelay(true);
    let socket = Rc::new(socket);
    let mut session = Session::new(socket.clone(), peer, conn_id, context, guard.entry.clone());
    session.emit(EventType::ConnectionAccept, || data(json!({"remote_addr": peer.to_string(), "protocol": "rtmp"})));
    let result = session.run().await;
    let reason = match &result {
        Ok(CloseReason::PeerClosed) => "closed by client".to_owned(),
        Ok(CloseReason::Shutdown) => "server shutdown".to_owned(),
        Ok(CloseReason::Kicked) => "player too slow".to_owned(),
        Ok(CloseReason::AdminKick) => "kicked by operator".to_owned(),
        Err(error) => {
            error.count(session.context.hub.stats());
            error.to_string()
        }
    };
    session.finish(&reason);
    match result {
        Ok(CloseReason::Kicked) => {
            info!(conn_id, %peer, "player kicked: it stayed behind the stream after dropping to keyframes")
        }
        Ok(reason) => debug!(conn_id, %peer, ?reason, "rtmp session closed"),
        Err(error) => info!(conn_id, %peer, %error, "rtmp session closed"),
    }
    // Make sure a writer task blocked on this socket sees the end too.
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn args_json(args: &Args) -> Value {
    Value::Object(args.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// What a publishing session counts for its events and callbacks.
struct Publishing {
    handle: PublisherHandle,
    name: String,
    args: Args,
    since: Instant,
    bytes_in_at_start: u64,
    audio_packets: u64,
    video_packets: u64,
    media_bytes: u64,
    last_timestamp: u32,
    audio_codec: Option<&'static str>,
    video_codec: Option<&'static str>,
}

struct Playing {
    handle: PlayerHandle,
    /// Output handed to the player's writer and not yet sent; also how the writer says why
    /// it stopped.
    output: Rc<PendingOutput>,
    name: String,
    args: Args,
    since: Instant,
    bytes_out_at_start: u64,
}

struct Session {
    socket: Rc<TcpStream>,
    peer: SocketAddr,
    conn_id: u64,
    context: Rc<ShardContext>,
    hooks: std::sync::Arc<Hooks>,
    conn: Rc<RefCell<ServerConnection>>,
    connect: Option<ConnectInfo>,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    started: Instant,
    bytes_in: u64,
    /// Shared with the player's writer task, which does most of the writing.
    bytes_out: Rc<Cell<u64>>,
    /// Output buffer reused between writes while the reader is the writer.
    out: Vec<u8>,
    /// Set when the session should close once its output is flushed.
    closing: Option<String>,
    /// An `on_update` reply awaited under `update_strict`.
    pending_update: Option<oneshot::Receiver<Decision>>,
    /// This session in its shard's registry (admin API listing and kicks).
    entry: Rc<SessionEntry>,
    /// When the next publish_update/play_update (and on_update) is due: `update_interval`
    /// after the publish or play started, then every `update_interval`.
    next_update: tokio::time::Instant,
}

impl Session {
    fn new(
        socket: Rc<TcpStream>,
        peer: SocketAddr,
        conn_id: u64,
        context: Rc<ShardContext>,
        entry: Rc<SessionEntry>,
    ) -> Session {
        let mut seed = [0u8; crate::protocol::rtmp::handshake::SEED_LEN];
        context.fill_random(&mut seed);
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u32).unwrap_or(0);
        let mut conn = ServerConnection::new(context.settings.rtmp, seed, epoch);
        conn.set_partial_budget(context.partial_budget.clone());
        Session {
            socket,
            peer,
            conn_id,
            hooks: context.hooks.clone(),
            context,
            conn: Rc::new(RefCell::new(conn)),
            connect: None,
            publishing: None,
            playing: None,
            started: Instant::now(),
            bytes_in: 0,
            bytes_out: Rc::new(Cell::new(0)),
            out: Vec::new(),
            closing: None,
            pending_update: None,
            entry,
            next_update: tokio::time::Instant::now(),
        }
    }

    async fn run(&mut self) -> Result<CloseReason, SessionError> {
        let settings = self.context.settings;
        let mut reader = ReadBuffer::new(2048);
        let handshake_deadline = tokio::time::Instant::now() + settings.handshake_timeout;
        let update_period = self.update_period();
        let period = update_period.unwrap_or(Duration::from_secs(3600));
        loop {
            if self.playing.is_some()
                && let Some(reason) = self.wait_for_room().await?
            {
                return Ok(reason);
            }
            let slow_body = self.slow_body_deadline();
            let handshaking = self.conn.borrow().is_handshaking();
            // Until `connect` is done the handshake deadline applies; after it, a connection
            // that neither plays nor publishes (or a publisher gone quiet) has `idle_timeout`.
            // Players send nothing while they watch, so they have no read timeout.
            let connecting = self.connect.is_none();
            let idle_limited = self.playing.is_none();
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
                loop {
                    let updates_due = update_period.is_some() && (self.publishing.is_some() || self.playing.is_some());
                    let pending_update = async {
                        match self.pending_update.as_mut() {
                            Some(receiver) => receiver.await.ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        input = &mut read => break input,
                        // Ending the session: dropping the read is harmless now.
                        _ = self.context.shutdown.wait() => return Ok(CloseReason::Shutdown),
                        _ = self.entry.kicked() => return Ok(CloseReason::AdminKick),
                        _ = tokio::time::sleep_until(self.next_update), if updates_due => {
                            self.next_update = tokio::time::Instant::now() + period;
                            self.send_updates();
                        }
                        _ = sleep_until_some(slow_body) => {
                            let limit = settings.limits.partial_message_timeout.as_millis() as u64;
                            self.conn.borrow().check_partial_age(self.now_ms(), limit)?;
                        }
                        decision = pending_update => {
                            self.pending_update = None;
                            if let Some(Decision::Deny { reason }) = decision {
                                return Err(SessionError::Refused(format!("on_update (update_strict): {reason}")));
                            }
                        }
                    }
                }
            };
            // A kicked player's writer shuts the socket down, which ends this read too.
            if self.playing.as_ref().is_some_and(|p| p.handle.player().is_kicked()) {
                return Ok(CloseReason::Kicked);
            }
            if let Some(error) = self.playing.as_ref().and_then(|p| p.output.take_failure()) {
                // The writer failed first (a send timeout); the read only saw the shutdown.
                return Err(error.into());
            }
            let input = input?;
            if input.is_empty() {
                return Ok(CloseReason::PeerClosed);
            }
            self.bytes_in += input.len() as u64;
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
            self.handle_events().await?;
            self.flush().await?;
            if let Some(reason) = self.closing.take() {
                return Err(SessionError::Refused(reason));
            }
        }
    }

    /// Milliseconds since the session started: the protocol's clock.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// When the oldest incomplete incoming message has been incomplete too long.
    fn slow_body_deadline(&self) -> Option<tokio::time::Instant> {
        let started_ms = self.conn.borrow().oldest_partial_ms()?;
        let at =
            self.started + Duration::from_millis(started_ms) + self.context.settings.limits.partial_message_timeout;
        Some(tokio::time::Instant::from_std(at))
    }

    /// Backpressure: reads nothing while the connection's unsent output is at or above
    /// `max_pending_output`, and gives up on a peer that leaves it there for `send_timeout`.
    async fn wait_for_room(&self) -> Result<Option<CloseReason>, SessionError> {
        let limits = self.context.settings.limits;
        let deadline = tokio::time::Instant::now() + limits.send_timeout;
        let Some(playing) = &self.playing else { return Ok(None) };
        let (player, output) = (playing.handle.player(), &playing.output);
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
                _ = self.entry.kicked() => return Ok(Some(CloseReason::AdminKick)),
                _ = player.kicked() => return Ok(Some(CloseReason::Kicked)),
            }
        }
    }

    fn update_period(&self) -> Option<Duration> {
        let wanted = self.hooks.update_interval().is_some()
            || self.hooks.wants(EventType::PublishUpdate)
            || self.hooks.wants(EventType::PlayUpdate);
        wanted.then(|| self.context.settings.update_interval)
    }

    async fn handle_events(&mut self) -> Result<(), SessionError> {
        loop {
            // Take the event in its own statement: acting on it borrows the connection again.
            let event = self.conn.borrow_mut().poll_event();
            let Some(event) = event else {
                // Input that arrived while a decision was pending is processed once it is made.
                let mut conn = self.conn.borrow_mut();
                if conn.is_pending() || !conn.has_deferred_input() || self.closing.is_some() {
                    return Ok(());
                }
                conn.handle_input(&[])?;
                continue;
            };
            match event {
                Event::HandshakeComplete => self.emit(EventType::HandshakeComplete, Map::new),
                Event::Connect(info) => self.on_connect(*info).await,
                Event::Publish(request) => self.on_publish(*request).await,
                Event::Play(request) => self.on_play(*request).await,
                Event::Audio { timestamp, payload } => self.push_media(PacketKind::Audio, timestamp, payload),
                Event::Video { timestamp, payload } => self.push_media(PacketKind::Video, timestamp, payload),
                Event::Data { timestamp, payload, metadata } => {
                    self.push_media(PacketKind::Data { metadata }, timestamp, payload)
                }
                Event::Unpublish { .. } => self.end_publish(),
                Event::StopPlay { .. } => self.end_play(),
                Event::Refused(refusal) => {
                    // The client has its error reply queued; it goes out before the close.
                    self.context.hub.stats().requests_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.closing = Some(format!("refused: {refusal}"));
                }
            }
            if self.closing.is_some() {
                return Ok(());
            }
        }
    }

    async fn on_connect(&mut self, info: ConnectInfo) {
        debug!(conn_id = self.conn_id, app = %info.app, tc_url = %info.tc_url, "rtmp connect");
        self.emit(EventType::Connect, || {
            data(json!({
                "app": info.app, "tcurl": info.tc_url, "flashver": info.flash_ver,
                "swfurl": info.swf_url, "pageurl": info.page_url, "args": args_json(&info.args),
            }))
        });
        self.connect = Some(info);
        let client = self.client_info("", &[]);
        match self.context.callbacks.decide(Call::Connect, &client, &[]).await {
            Decision::Allow | Decision::Rename(_) => self.conn.borrow_mut().accept(),
            Decision::Deny { reason } => self.refuse("connect", Call::Connect, &reason, ""),
        }
    }

    async fn on_publish(&mut self, request: PublishRequest) {
        let mut name = request.name.clone();
        let client = self.client_info(&name, &request.args);
        let extra = [("type", request.publish_type.clone())];
        match self.context.callbacks.decide(Call::Publish, &client, &extra).await {
            Decision::Allow => {}
            Decision::Rename(renamed) => name = renamed,
            Decision::Deny { reason } => {
                let stream = self.stream_key(&name);
                return self.refuse("publish", Call::Publish, &reason, &stream);
            }
        }
        let key = self.stream_key(&name);
        match self.context.hub.publish(&key) {
            Ok((handle, change)) => {
                info!(shard = self.context.hub.shard(), conn_id = self.conn_id, peer = %self.peer, stream = %key, "publish start");
                self.publishing = Some(Publishing {
                    handle,
                    name,
                    args: request.args,
                    since: Instant::now(),
                    bytes_in_at_start: self.bytes_in,
                    audio_packets: 0,
                    video_packets: 0,
                    media_bytes: 0,
                    last_timestamp: 0,
                    audio_codec: None,
                    video_codec: None,
                });
                self.next_update = tokio::time::Instant::now() + self.context.settings.update_interval;
                self.entry.role.set("publisher");
                *self.entry.stream.borrow_mut() = key.clone();
                if change.created {
                    self.emit(EventType::StreamCreate, Map::new);
                }
                self.conn.borrow_mut().accept();
                let args = self.publishing.as_ref().map(|p| args_json(&p.args)).unwrap_or_default();
                self.emit(EventType::PublishStart, || data(json!({ "args": args })));
            }
            Err(error) => {
                warn!(conn_id = self.conn_id, peer = %self.peer, stream = %key, "publish refused: {error}");
                self.conn.borrow_mut().reject(Rejection::StreamBusy, &error.to_string());
                self.closing = Some(format!("publish refused: {error}"));
            }
        }
    }

    async fn on_play(&mut self, request: PlayRequest) {
        let mut name = request.name.clone();
        let client = self.client_info(&name, &request.args);
        let extra = [
            ("start", request.start.to_string()),
            ("duration", request.duration.to_string()),
            ("reset", u8::from(request.reset).to_string()),
        ];
        match self.context.callbacks.decide(Call::Play, &client, &extra).await {
            Decision::Allow => {}
            Decision::Rename(renamed) => name = renamed,
            Decision::Deny { reason } => {
                let stream = self.stream_key(&name);
                return self.refuse("play", Call::Play, &reason, &stream);
            }
        }
        let key = self.stream_key(&name);
        info!(shard = self.context.hub.shard(), conn_id = self.conn_id, peer = %self.peer, stream = %key, "play start");
        self.conn.borrow_mut().accept();
        let (handle, change) = self.context.hub.play(&key, self.conn_id);
        let output = Rc::new(PendingOutput::default());
        let writer = PlayerWriter {
            socket: self.socket.clone(),
            conn: self.conn.clone(),
            player: handle.player().clone(),
            name: name.clone(),
            stream_id: request.stream_id,
            chunk_size: self.context.settings.rtmp.chunk_size,
            bytes_out: self.bytes_out.clone(),
            merge_write: self.context.settings.merge_write,
            send_timeout: self.context.settings.limits.send_timeout,
            output: output.clone(),
        };
        tokio::task::spawn_local(writer.run());
        self.next_update = tokio::time::Instant::now() + self.context.settings.update_interval;
        self.entry.role.set("player");
        *self.entry.stream.borrow_mut() = key.clone();
        self.playing = Some(Playing {
            handle,
            output,
            name,
            args: request.args,
            since: Instant::now(),
            bytes_out_at_start: self.bytes_out.get(),
        });
        let origin = self.origin();
        if change.created {
            self.hooks.emit(EventType::StreamCreate, &origin, Map::new);
        }
        if !change.live {
            self.hooks.emit(EventType::StreamUnavailable, &origin, Map::new);
        }
        let args = self.playing.as_ref().map(|p| args_json(&p.args)).unwrap_or_default();
        self.hooks.emit(EventType::PlayStart, &origin, || data(json!({ "args": args })));
        self.hooks.emit(EventType::SubscriberCount, &origin, || data(json!({ "count": change.players })));
    }

    /// Answers a denied callback: the client gets its error status before anything else, the
    /// operator an `auth_failed` event, and the session closes.
    /// `stream` is the stream the client asked for (`app/name`), empty for connect.
    fn refuse(&mut self, action: &str, call: Call, reason: &str, stream: &str) {
        let description = format!("on_{} callback refused: {reason}", call.as_str());
        warn!(conn_id = self.conn_id, peer = %self.peer, action, %reason, "denied by callback");
        self.conn.borrow_mut().reject(Rejection::Denied, &description);
        let origin = Origin { stream_key: stream.to_owned(), ..self.origin() };
        self.hooks.emit(EventType::AuthFailed, &origin, || data(json!({ "action": action, "error": reason })));
        self.closing = Some(description);
    }

    fn push_media(&mut self, kind: PacketKind, timestamp: u32, payload: Bytes) {
        let Some(publishing) = self.publishing.as_mut() else {
            return;
        };
        publishing.last_timestamp = timestamp;
        publishing.media_bytes += payload.len() as u64;
        match kind {
            PacketKind::Audio => publishing.audio_packets += 1,
            PacketKind::Video => publishing.video_packets += 1,
            PacketKind::Data { .. } => {}
        }
        let packet = match publishing.handle.push(kind, timestamp, payload) {
            Ok(packet) => packet,
            Err(error) => {
                // Counted in the hub's stats; one bad frame is no reason to drop a publisher.
                debug!(conn_id = self.conn_id, %error, "dropped malformed media message");
                return;
            }
        };
        // The first sequence header of each kind names the codec (codec_detected); the hub
        // has already classified the packet, so only a new sequence header is parsed here.
        let (media_kind, slot) = match kind {
            PacketKind::Audio => (MediaKind::Audio, &mut publishing.audio_codec),
            PacketKind::Video => (MediaKind::Video, &mut publishing.video_codec),
            PacketKind::Data { .. } => return,
        };
        let mut detected = None;
        if packet.sequence_header
            && slot.is_none()
            && let Ok(info) = flv::parse_codec_info(media_kind, &packet.payload)
        {
            *slot = Some(info.codec.name());
            detected = Some(info);
        }
        if let Some(info) = detected {
            let (audio, video) = (publishing.audio_codec, publishing.video_codec);
            self.emit(EventType::CodecDetected, || {
                data(json!({
                    "audio_codec": audio, "video_codec": video,
                    "width": info.width, "height": info.height,
                    "sample_rate": info.sample_rate, "channels": info.channels,
                    "profile": info.profile,
                }))
            });
        }
    }

    /// Periodic publish_update/play_update events and on_update callbacks.
    fn send_updates(&mut self) {
        let origin = self.origin();
        if let Some(p) = &self.publishing {
            let secs = p.since.elapsed().as_secs_f64();
            let bytes_in = self.bytes_in - p.bytes_in_at_start;
            let bitrate_kbps = if secs > 0.0 { (bytes_in as f64 * 8.0 / 1000.0 / secs).round() } else { 0.0 };
            let timestamp = p.last_timestamp;
            self.hooks.emit(EventType::PublishUpdate, &origin, || {
                data(json!({ "time": secs.round() as u64, "timestamp": timestamp, "bytes_in": bytes_in, "bitrate_kbps": bitrate_kbps }))
            });
            let client = self.client_info(&p.name, &p.args);
            let extra = [("time", (secs as u64).to_string()), ("timestamp", timestamp.to_string())];
            if let Some(receiver) = self.context.callbacks.update(true, &client, &extra) {
                self.pending_update = Some(receiver);
            }
        }
        if let Some(p) = &self.playing {
            let secs = p.since.elapsed().as_secs_f64();
            let bytes_out = self.bytes_out.get() - p.bytes_out_at_start;
            self.hooks.emit(EventType::PlayUpdate, &origin, || {
                data(
                    json!({ "time": secs.round() as u64, "timestamp": (secs * 1000.0) as u64, "bytes_out": bytes_out }),
                )
            });
            let client = self.client_info(&p.name, &p.args);
            let extra = [("time", (secs as u64).to_string()), ("timestamp", ((secs * 1000.0) as u64).to_string())];
            if let Some(receiver) = self.context.callbacks.update(false, &client, &extra) {
                self.pending_update = Some(receiver);
            }
        }
    }

    fn end_publish(&mut self) {
        let origin = self.origin();
        let Some(p) = self.publishing.take() else {
            return;
        };
        let key = p.handle.key().to_owned();
        let change = p.handle.unpublish();
        info!(conn_id = self.conn_id, stream = %key, "publish stop");
        let duration = p.since.elapsed().as_secs_f64();
        let bytes_in = self.bytes_in - p.bytes_in_at_start;
        let bytes_out = self.bytes_out.get();
        self.hooks.emit(EventType::PublishStop, &origin, || {
            data(json!({
                "audio_packets": p.audio_packets, "video_packets": p.video_packets,
                "total_bytes": p.media_bytes, "bytes_in": bytes_in, "bytes_out": bytes_out,
                "audio_codec": p.audio_codec, "video_codec": p.video_codec,
                "duration_sec": round_ms(duration),
            }))
        });
        let client = self.client_info(&p.name, &p.args);
        let extra = [
            ("bytes_in", bytes_in.to_string()),
            ("bytes_out", bytes_out.to_string()),
            ("duration", (duration as u64).to_string()),
        ];
        self.context.callbacks.tell_done(true, &client, &extra);
        self.stream_left(&origin, change);
    }

    fn end_play(&mut self) {
        let origin = self.origin();
        let Some(p) = self.playing.take() else {
            return;
        };
        let dropped = p.handle.player().dropped_packets();
        debug!(conn_id = self.conn_id, stream = %p.handle.key(), dropped, "play stop");
        // Leaving kicks the player, which ends its writer.
        let change = p.handle.leave();
        let duration = p.since.elapsed().as_secs_f64();
        let bytes_out = self.bytes_out.get() - p.bytes_out_at_start;
        self.hooks.emit(EventType::PlayStop, &origin, || {
            data(json!({ "bytes_out": bytes_out, "duration_sec": round_ms(duration), "dropped_packets": dropped }))
        });
        self.hooks.emit(EventType::SubscriberCount, &origin, || data(json!({ "count": change.players })));
        if change.players == 0 && change.live {
            self.hooks.emit(EventType::NoViewers, &origin, Map::new);
        }
        let client = self.client_info(&p.name, &p.args);
        let extra = [
            ("bytes_in", self.bytes_in.to_string()),
            ("bytes_out", bytes_out.to_string()),
            ("duration", (duration as u64).to_string()),
        ];
        self.context.callbacks.tell_done(false, &client, &extra);
        self.stream_left(&origin, change);
    }

    fn stream_left(&self, origin: &Origin, change: StreamChange) {
        if change.deleted {
            self.hooks.emit(EventType::StreamDelete, origin, Map::new);
        }
    }

    /// Ends whatever the session still does and says goodbye (connection_close).
    fn finish(&mut self, reason: &str) {
        // The role the session had (kept after the publish or play ended), for connection_close.
        let role = self.entry.role.get();
        self.end_publish();
        self.end_play();
        let (bytes_in, bytes_out) = (self.bytes_in, self.bytes_out.get());
        let duration = round_ms(self.started.elapsed().as_secs_f64());
        self.emit(EventType::ConnectionClose, || {
            data(json!({ "role": role, "duration_sec": duration, "bytes_in": bytes_in, "bytes_out": bytes_out, "reason": reason }))
        });
    }

    /// The stream this session publishes or plays, if any.
    fn current_stream(&self) -> String {
        if let Some(p) = &self.publishing {
            p.handle.key().to_owned()
        } else if let Some(p) = &self.playing {
            p.handle.key().to_owned()
        } else {
            String::new()
        }
    }

    fn origin(&self) -> Origin {
        Origin { conn_id: self.conn_id, protocol: Protocol::Rtmp, addr: self.peer, stream_key: self.current_stream() }
    }

    fn emit(&self, event_type: EventType, data: impl FnOnce() -> Map<String, Value>) {
        self.hooks.emit(event_type, &self.origin(), data);
    }

    fn client_info(&self, name: &str, args: &[(String, String)]) -> ClientInfo {
        let connect = self.connect.clone().unwrap_or_default();
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(args).finish();
        let url = if name.is_empty() {
            // connect: the client asked for the application URL only.
            connect.tc_url.clone()
        } else if query.is_empty() {
            format!("{}/{name}", connect.tc_url)
        } else {
            format!("{}/{name}?{query}", connect.tc_url)
        };
        let mut all_args = connect.args.clone();
        all_args.extend(args.iter().cloned());
        ClientInfo {
            protocol: Some(Protocol::Rtmp),
            addr: Some(self.peer),
            conn_id: self.conn_id,
            app: connect.app,
            name: name.to_owned(),
            url,
            tc_url: connect.tc_url,
            flash_ver: connect.flash_ver,
            swf_url: connect.swf_url,
            page_url: connect.page_url,
            args: all_args,
        }
    }

    /// `app/name`: the stream key every layer uses.
    fn stream_key(&self, name: &str) -> String {
        let app = self.connect.as_ref().map(|c| c.app.as_str()).unwrap_or_default();
        format!("{app}/{name}")
    }

    /// Sends what the protocol produced. Once a writer task exists it is the only writer,
    /// so the reader only wakes it.
    async fn flush(&mut self) -> Result<(), SessionError> {
        if let Some(playing) = &self.playing {
            if self.conn.borrow().has_transmit() {
                playing.handle.player().poke();
            }
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        self.conn.borrow_mut().poll_transmit(&mut out);
        if out.is_empty() {
            self.out = out;
            return Ok(());
        }
        self.bytes_out.set(self.bytes_out.get() + out.len() as u64);
        let mut out = write_all(&self.socket, out, self.context.settings.limits.send_timeout).await?;
        out.clear();
        // Keep a small buffer for replies; drop one that grew for a burst.
        if out.capacity() <= SMALL_OUTPUT {
            self.out = out;
        }
        Ok(())
    }
}

/// Largest reply buffer a session keeps between writes: an idle connection holds it, so the
/// 3 KiB handshake reply's buffer must not stay.
const SMALL_OUTPUT: usize = 512;

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// The writer task of a player: the only one writing to its socket.
struct PlayerWriter {
    socket: Rc<TcpStream>,
    conn: Rc<RefCell<ServerConnection>>,
    player: Rc<Player>,
    name: String,
    stream_id: u32,
    chunk_size: u32,
    bytes_out: Rc<Cell<u64>>,
    /// `merge_write_ms`: how long packets may gather before a write; `None` writes at once.
    merge_write: Option<Duration>,
    send_timeout: Duration,
    /// Shared with the session's reader, which stops reading while too much is unsent.
    output: Rc<PendingOutput>,
}

impl PlayerWriter {
    async fn run(self) {
        if let Err(error) = self.write_loop().await {
            debug!(conn_id = self.player.conn_id, %error, "player writer stopped");
            // The session reports it when its read ends (the shutdown below ends it).
            self.output.fail(error);
        }
        // Wake the reader (blocked in read) so the session ends too.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    async fn write_loop(&self) -> io::Result<()> {
        let mut items = Vec::new();
        let mut timeline = Timeline::default();
        let mut headers = BytesMut::new();
        let mut last_write: Option<tokio::time::Instant> = None;
        loop {
            self.player.ready().await;
            if let (Some(window), Some(last)) = (self.merge_write, last_write) {
                // Merged writes: let packets gather for up to `window` after the previous
                // write, so one writev carries several (fewer syscalls and TCP segments).
                tokio::select! {
                    _ = tokio::time::sleep_until(last + window) => {}
                    _ = self.player.kicked() => return Ok(()),
                }
            }
            if self.player.is_kicked() {
                return Ok(());
            }
            items.clear();
            self.player.take(&mut items);
            let mut bufs: Vec<Bytes> = Vec::with_capacity(items.len() * 2 + 1);
            self.take_transmit(&mut bufs);
            for item in items.drain(..) {
                match item {
                    PlayerItem::Packet(packet) => {
                        append_packet(&mut bufs, &mut headers, &mut timeline, &packet, self.stream_id, self.chunk_size);
                    }
                    PlayerItem::Unpublished => {
                        self.conn.borrow_mut().notify_unpublish(&self.name);
                        self.take_transmit(&mut bufs);
                    }
                    PlayerItem::Published => {
                        timeline.restart();
                        self.conn.borrow_mut().notify_publish(&self.name);
                        self.take_transmit(&mut bufs);
                    }
                }
            }
            // The write may block on a player that stopped reading: give up on it when the
            // hub kicks the player, instead of waiting forever.
            tokio::select! {
                result = write_all_vectored(&self.socket, bufs, self.send_timeout, &self.output) => {
                    let written = result?;
                    self.bytes_out.set(self.bytes_out.get() + written as u64);
                    last_write = Some(tokio::time::Instant::now());
                }
                _ = self.player.kicked() => return Ok(()),
            }
        }
    }

    fn take_transmit(&self, bufs: &mut Vec<Bytes>) {
        let mut out = Vec::new();
        self.conn.borrow_mut().poll_transmit(&mut out);
        if !out.is_empty() {
            bufs.push(Bytes::from(out));
        }
    }
}
