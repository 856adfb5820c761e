//! An RTMP session: one accepted connection, driven to its end.
//!
//! The reader loop is the session: read -> `handle_input` -> act on events -> write what the
//! protocol wants sent. A player also gets a writer task, the only writer of its socket from
//! then on: it sends the protocol's own output and the hub's packets in order, each packet as
//! a small per-player chunk header followed by the shared chunked payload, in one `writev`.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio_uring::net::TcpStream;
use tracing::{debug, info, warn};

use super::io::{ReadBuffer, write_all, write_all_vectored};
use super::{SessionGuard, ShardContext};
use crate::hub::{PacketKind, Player, PlayerHandle, PlayerItem, PublisherHandle};
use crate::protocol::rtmp::chunk;
use crate::protocol::rtmp::server::{self, ConnectInfo, Event, Rejection, ServerConnection};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("rtmp: {0}")]
    Protocol(#[from] server::Error),
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    #[error("publisher sent nothing for {0:?}")]
    IdleTimeout(std::time::Duration),
    #[error("{0}")]
    Refused(String),
}

/// Why a session ended without an error.
#[derive(Debug, Clone, Copy)]
pub enum CloseReason {
    PeerClosed,
    Shutdown,
    Kicked,
}

/// Runs one RTMP connection until it closes; logs how it ended.
pub async fn run(socket: TcpStream, peer: SocketAddr, conn_id: u64, context: Rc<ShardContext>) {
    let _guard = SessionGuard::new(&context);
    let _ = socket.set_nodelay(true);
    let socket = Rc::new(socket);
    let mut session = Session::new(socket.clone(), peer, conn_id, context);
    let started = Instant::now();
    let result = session.run().await;
    session.stop_playing();
    session.publisher = None;
    match result {
        Ok(CloseReason::Kicked) => {
            info!(conn_id, %peer, "player kicked: it stayed behind the stream after dropping to keyframes")
        }
        Ok(reason) => {
            debug!(conn_id, %peer, ?reason, secs = started.elapsed().as_secs_f64(), "rtmp session closed")
        }
        Err(error) => info!(conn_id, %peer, %error, "rtmp session closed"),
    }
    // Make sure a writer task blocked on this socket sees the end too.
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

struct Session {
    socket: Rc<TcpStream>,
    peer: SocketAddr,
    conn_id: u64,
    context: Rc<ShardContext>,
    conn: Rc<RefCell<ServerConnection>>,
    connect: Option<ConnectInfo>,
    publisher: Option<PublisherHandle>,
    player: Option<PlayerHandle>,
    /// Output buffer reused between writes while the reader is the writer.
    out: Vec<u8>,
    /// Set when the session should close once its output is flushed.
    closing: Option<String>,
}

impl Session {
    fn new(
        socket: Rc<TcpStream>,
        peer: SocketAddr,
        conn_id: u64,
        context: Rc<ShardContext>,
    ) -> Session {
        let mut seed = [0u8; crate::protocol::rtmp::handshake::SEED_LEN];
        context.fill_random(&mut seed);
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u32)
            .unwrap_or(0);
        let conn = ServerConnection::new(context.settings.rtmp, seed, epoch);
        Session {
            socket,
            peer,
            conn_id,
            context,
            conn: Rc::new(RefCell::new(conn)),
            connect: None,
            publisher: None,
            player: None,
            out: Vec::new(),
            closing: None,
        }
    }

    async fn run(&mut self) -> Result<CloseReason, SessionError> {
        let settings = self.context.settings;
        let mut reader = ReadBuffer::new(2048);
        let handshake_deadline = tokio::time::Instant::now() + settings.handshake_timeout;
        loop {
            let handshaking = self.conn.borrow().is_handshaking();
            let read = async {
                if handshaking {
                    match tokio::time::timeout_at(handshake_deadline, reader.read(&self.socket))
                        .await
                    {
                        Ok(read) => read.map_err(SessionError::from),
                        Err(_) => Err(SessionError::HandshakeTimeout(settings.handshake_timeout)),
                    }
                } else if self.publisher.is_some() {
                    match tokio::time::timeout(settings.idle_timeout, reader.read(&self.socket))
                        .await
                    {
                        Ok(read) => read.map_err(SessionError::from),
                        Err(_) => Err(SessionError::IdleTimeout(settings.idle_timeout)),
                    }
                } else {
                    reader.read(&self.socket).await.map_err(SessionError::from)
                }
            };
            let input = tokio::select! {
                input = read => input,
                _ = self.context.shutdown.wait() => return Ok(CloseReason::Shutdown),
            };
            // A kicked player's writer shuts the socket down, which ends this read too.
            if self.player.as_ref().is_some_and(|p| p.player().is_kicked()) {
                return Ok(CloseReason::Kicked);
            }
            let input = input?;
            if input.is_empty() {
                return Ok(CloseReason::PeerClosed);
            }
            let was_handshaking = handshaking;
            self.conn.borrow_mut().handle_input(input)?;
            if was_handshaking && !self.conn.borrow().is_handshaking() {
                // The handshake's large messages are done; idle from here on costs little.
                reader.shrink();
            }
            self.handle_events()?;
            self.flush().await?;
            if let Some(reason) = self.closing.take() {
                return Err(SessionError::Refused(reason));
            }
        }
    }

    fn handle_events(&mut self) -> Result<(), SessionError> {
        loop {
            // Take the event in its own statement: acting on it borrows the connection again.
            let event = self.conn.borrow_mut().poll_event();
            let Some(event) = event else {
                // Input that arrived while a decision was pending is processed once it is made.
                let mut conn = self.conn.borrow_mut();
                if conn.is_pending() || !conn.has_deferred_input() {
                    return Ok(());
                }
                conn.handle_input(&[])?;
                continue;
            };
            match event {
                Event::HandshakeComplete => {}
                Event::Connect(info) => {
                    debug!(conn_id = self.conn_id, app = %info.app, tc_url = %info.tc_url, "rtmp connect");
                    self.connect = Some(info);
                    self.conn.borrow_mut().accept();
                }
                Event::Publish(request) => {
                    let key = self.stream_key(&request.name);
                    match self.context.hub.publish(&key) {
                        Ok(handle) => {
                            info!(shard = self.context.hub.shard(), conn_id = self.conn_id, peer = %self.peer, stream = %key, "publish start");
                            self.publisher = Some(handle);
                            self.conn.borrow_mut().accept();
                        }
                        Err(error) => {
                            warn!(conn_id = self.conn_id, peer = %self.peer, stream = %key, "publish refused: {error}");
                            self.conn
                                .borrow_mut()
                                .reject(Rejection::StreamBusy, &format!("{error}"));
                            self.closing = Some(format!("publish refused: {error}"));
                        }
                    }
                }
                Event::Play(request) => {
                    let key = self.stream_key(&request.name);
                    info!(shard = self.context.hub.shard(), conn_id = self.conn_id, peer = %self.peer, stream = %key, "play start");
                    self.conn.borrow_mut().accept();
                    let handle = self.context.hub.play(&key, self.conn_id);
                    let writer = PlayerWriter {
                        socket: self.socket.clone(),
                        conn: self.conn.clone(),
                        player: handle.player().clone(),
                        name: request.name.clone(),
                        stream_id: request.stream_id,
                        chunk_size: self.context.settings.rtmp.chunk_size,
                    };
                    self.player = Some(handle);
                    tokio::task::spawn_local(writer.run());
                }
                Event::Audio { timestamp, payload } => {
                    self.push_media(PacketKind::Audio, timestamp, payload)
                }
                Event::Video { timestamp, payload } => {
                    self.push_media(PacketKind::Video, timestamp, payload)
                }
                Event::Data {
                    timestamp,
                    payload,
                    metadata,
                } => self.push_media(PacketKind::Data { metadata }, timestamp, payload),
                Event::Unpublish { .. } => {
                    if let Some(handle) = self.publisher.take() {
                        info!(conn_id = self.conn_id, stream = %handle.key(), "publish stop");
                    }
                }
                Event::StopPlay { .. } => self.stop_playing(),
            }
        }
    }

    fn push_media(&mut self, kind: PacketKind, timestamp: u32, payload: Bytes) {
        if let Some(publisher) = &self.publisher
            && let Err(error) = publisher.push(kind, timestamp, payload)
        {
            // Counted in the hub's stats; one bad frame is no reason to drop a publisher.
            debug!(conn_id = self.conn_id, %error, "dropped malformed media message");
        }
    }

    fn stop_playing(&mut self) {
        if let Some(handle) = self.player.take() {
            debug!(conn_id = self.conn_id, stream = %handle.key(), dropped = handle.player().dropped_packets(), "play stop");
            // Dropping the handle kicks the player, which ends its writer.
        }
    }

    /// `app/name`: the stream key every layer uses.
    fn stream_key(&self, name: &str) -> String {
        let app = self
            .connect
            .as_ref()
            .map(|c| c.app.as_str())
            .unwrap_or_default();
        format!("{app}/{name}")
    }

    /// Sends what the protocol produced. Once a writer task exists it is the only writer,
    /// so the reader only wakes it.
    async fn flush(&mut self) -> Result<(), SessionError> {
        if let Some(handle) = &self.player {
            if self.conn.borrow().has_transmit() {
                handle.player().poke();
            }
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        self.conn.borrow_mut().poll_transmit(&mut out);
        if out.is_empty() {
            self.out = out;
            return Ok(());
        }
        let mut out = write_all(&self.socket, out).await?;
        out.clear();
        // Keep a small buffer for replies; drop one that grew for a burst.
        if out.capacity() <= 4096 {
            self.out = out;
        }
        Ok(())
    }
}

/// Maps a publisher's timestamps to the player's own timeline: it starts at zero and keeps
/// going forward when a publisher restarts from zero.
#[derive(Debug, Default)]
struct Timeline {
    /// The publisher timestamp that maps to `offset`; set by the first audio/video frame.
    base: Option<u32>,
    offset: u32,
    last: u32,
}

impl Timeline {
    fn map(&mut self, timestamp: u32, sets_base: bool) -> u32 {
        let out = match self.base {
            Some(base) => self.offset.wrapping_add(timestamp.saturating_sub(base)),
            None if sets_base => {
                self.base = Some(timestamp);
                self.offset
            }
            None => self.offset,
        };
        self.last = self.last.max(out);
        out
    }

    /// A new publisher: continue just after the last timestamp sent.
    fn restart(&mut self) {
        self.base = None;
        self.offset = self.last.saturating_add(1);
    }
}

/// The writer task of a player: the only one writing to its socket.
struct PlayerWriter {
    socket: Rc<TcpStream>,
    conn: Rc<RefCell<ServerConnection>>,
    player: Rc<Player>,
    name: String,
    stream_id: u32,
    chunk_size: u32,
}

impl PlayerWriter {
    async fn run(self) {
        if let Err(error) = self.write_loop().await {
            debug!(conn_id = self.player.conn_id, %error, "player writer stopped");
        }
        // Wake the reader (blocked in read) so the session ends too.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    async fn write_loop(&self) -> io::Result<()> {
        let mut items = Vec::new();
        let mut timeline = Timeline::default();
        let mut headers = BytesMut::new();
        loop {
            self.player.ready().await;
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
                        let sets_base =
                            matches!(packet.kind, PacketKind::Audio | PacketKind::Video)
                                && !packet.sequence_header;
                        let timestamp = timeline.map(packet.timestamp, sets_base);
                        let csid = packet.kind.csid();
                        headers.reserve(16);
                        chunk::put_message_header(
                            &mut headers,
                            csid,
                            timestamp,
                            packet.payload.len() as u32,
                            packet.kind.rtmp_type(),
                            self.stream_id,
                        );
                        bufs.push(headers.split().freeze());
                        if timestamp >= 0x00FF_FFFF
                            && packet.payload.len() > self.chunk_size as usize
                        {
                            // Continuation headers must repeat an extended timestamp, so this
                            // rare case (a player past 4.6 hours) gets its own copy.
                            let mut body = BytesMut::new();
                            chunk::put_chunked_payload(
                                &mut body,
                                csid,
                                &packet.payload,
                                self.chunk_size,
                                Some(timestamp),
                            );
                            bufs.push(body.freeze());
                        } else {
                            bufs.push(packet.chunked.clone());
                        }
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
                result = write_all_vectored(&self.socket, bufs) => {
                    result?;
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
