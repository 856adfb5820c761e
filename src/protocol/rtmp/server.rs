//! The server side of one RTMP connection, as a deterministic state machine.
//!
//! Shape (after quinn-proto): [`ServerConnection::handle_input`] feeds bytes read from the
//! socket, [`ServerConnection::poll_event`] yields what the peer asked for or sent,
//! [`ServerConnection::poll_transmit`] appends the bytes to send into the caller's buffer.
//! Requests that need a decision from above (connect, publish, play) are answered by
//! [`ServerConnection::accept`] / [`ServerConnection::reject`]; until then the connection
//! processes no further input, which is how a session "reads nothing more" while a hook
//! decides.
//!
//! Media sent to players does not pass through here: the hub builds each packet's chunked
//! form once and the session writes it. This type only writes its own control and command
//! messages, on chunk streams 2 and 3, which the media chunk streams never share.

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunk::{self, Acknowledger, ChunkDecoder, ChunkError, PartialBudget, RawMessageRef};
use super::handshake::{Buffered, HandshakeError, SEED_LEN, ServerHandshake};
use super::message::*;
use crate::protocol::amf0::{self, Amf0Value};

/// Chunk stream for protocol control messages (spec 5.4: csid 2, stream 0).
const CSID_CONTROL: u32 = 2;
/// Chunk stream for command replies and status messages.
const CSID_COMMAND: u32 = 3;
/// Chunk streams on which media is sent to players (shared by the hub's prebuilt chunks).
pub const CSID_AUDIO: u32 = 4;
pub const CSID_DATA: u32 = 5;
pub const CSID_VIDEO: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("message: {0}")]
    Message(#[from] MessageError),
    #[error("{0} before connect")]
    NotConnected(&'static str),
}

/// Settings the server announces to every peer.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// Our outgoing chunk size; the hub chunks media with the same value.
    pub chunk_size: u32,
    /// Window acknowledgement size announced to the peer, and used for our own acks when
    /// the peer announces none.
    pub window_ack_size: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { chunk_size: 4096, window_ack_size: 2_500_000 }
    }
}

/// A query string split into its arguments, in order.
pub type Args = Vec<(String, String)>;

/// What the peer sent in `connect` (the command object's fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectInfo {
    /// The application, without any query string (`live` for `rtmp://host/live?x=1`).
    pub app: String,
    pub tc_url: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
    pub object_encoding: f64,
    /// Query arguments given on the app or tcUrl.
    pub args: Args,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    pub stream_id: u32,
    /// The stream name without its query string (`cam1` for `cam1?token=x`).
    pub name: String,
    pub args: Args,
    /// `live`, `record` or `append`, as the client asked.
    pub publish_type: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlayRequest {
    pub stream_id: u32,
    pub name: String,
    pub args: Args,
    /// Start position in seconds: -2 live or recorded, -1 live only (spec 7.2.2.1).
    pub start: f64,
    pub duration: f64,
    pub reset: bool,
}

/// What happened on the connection, for the session to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    HandshakeComplete,
    /// Needs [`ServerConnection::accept`] or [`ServerConnection::reject`].
    Connect(Box<ConnectInfo>),
    /// Needs [`ServerConnection::accept`] or [`ServerConnection::reject`].
    Publish(Box<PublishRequest>),
    /// Needs [`ServerConnection::accept`] or [`ServerConnection::reject`].
    Play(Box<PlayRequest>),
    Audio {
        timestamp: u32,
        payload: Bytes,
    },
    Video {
        timestamp: u32,
        payload: Bytes,
    },
    /// A data message to forward to players: `@setDataFrame` is already stripped, so
    /// `payload` starts with `onMetaData` when `metadata` is true.
    Data {
        timestamp: u32,
        payload: Bytes,
        metadata: bool,
    },
    /// The publisher ended its stream (FCUnpublish, closeStream or deleteStream).
    Unpublish {
        stream_id: u32,
    },
    /// The player stopped playing (closeStream, deleteStream or play with an empty name).
    StopPlay {
        stream_id: u32,
    },
}

/// The request a pending decision is about; it says which reply to send.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Connect { transaction_id: f64 },
    Publish { stream_id: u32, name: String },
    Play { stream_id: u32, name: String, reset: bool },
}

/// Why a request was refused; chooses the status code the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not allowed (a hook said no): NetConnection.Connect.Rejected, NetStream.Publish.BadName
    /// or NetStream.Play.Failed.
    Denied,
    /// Someone already publishes this stream: NetStream.Publish.BadName.
    StreamBusy,
    /// Nobody publishes it: NetStream.Play.StreamNotFound.
    NotFound,
}

/// What the connection is used for once a publish or play was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    None,
    Publisher { stream_id: u32 },
    Player { stream_id: u32 },
}

pub struct ServerConnection {
    settings: ServerSettings,
    /// Present until the handshake is done, then dropped to free its buffers.
    handshake: Option<Box<Buffered<ServerHandshake>>>,
    decoder: ChunkDecoder,
    transmit: Vec<u8>,
    events: VecDeque<Event>,
    /// Input that arrived while a decision was pending; processed after it.
    deferred: Vec<u8>,
    pending: Option<Pending>,
    connected: bool,
    role: Role,
    next_stream_id: u32,
    /// Acknowledges received bytes per the peer's Window Ack Size, else our own (some
    /// encoders stall without acks and announce no window).
    acks: Acknowledger,
}

impl ServerConnection {
    /// `seed` makes S1's random bytes; `epoch` is S1's time field. Both come from the caller so that this
    /// type stays deterministic.
    pub fn new(settings: ServerSettings, seed: [u8; SEED_LEN], epoch: u32) -> Self {
        ServerConnection {
            settings,
            handshake: Some(Box::new(Buffered::new(ServerHandshake::new(seed, epoch)))),
            decoder: ChunkDecoder::new(),
            transmit: Vec::new(),
            events: VecDeque::new(),
            deferred: Vec::new(),
            pending: None,
            connected: false,
            role: Role::None,
            next_stream_id: 1,
            acks: Acknowledger::new(settings.window_ack_size),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_handshaking(&self) -> bool {
        self.handshake.is_some()
    }

    /// Whether a connect, publish or play awaits [`Self::accept`] or [`Self::reject`].
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether input arrived during a decision and waits for `handle_input(&[])`.
    pub fn has_deferred_input(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Feeds bytes received from the peer. Bytes arriving while a decision is pending are
    /// kept and processed once it is made.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(), Error> {
        if self.pending.is_some() {
            self.deferred.extend_from_slice(input);
            return Ok(());
        }
        if let Some(handshake) = self.handshake.as_mut() {
            let Some(rest) = handshake.feed(input, &mut self.transmit)? else {
                return Ok(());
            };
            self.handshake = None;
            self.events.push_back(Event::HandshakeComplete);
            return self.handle_chunks(&rest);
        }
        if !self.deferred.is_empty() {
            // Keep arrival order: older deferred bytes first.
            let mut deferred = std::mem::take(&mut self.deferred);
            deferred.extend_from_slice(input);
            return self.handle_chunks(&deferred);
        }
        self.handle_chunks(input)
    }

    fn handle_chunks(&mut self, input: &[u8]) -> Result<(), Error> {
        let mut consumed = 0;
        let result = self.decode_chunks(input, &mut consumed);
        // One acknowledgement per batch of input at most: a peer that announces a tiny window
        // (1 byte) must not get an ack per chunk, which would make our output outgrow its input.
        if let Some(sequence) = self.acks.received(consumed) {
            self.send_control(TYPE_ACKNOWLEDGEMENT, &sequence.to_be_bytes());
        }
        result
    }

    fn decode_chunks(&mut self, mut input: &[u8], consumed: &mut usize) -> Result<(), Error> {
        while !input.is_empty() {
            if self.pending.is_some() {
                self.deferred.extend_from_slice(input);
                return Ok(());
            }
            let (used, message) = self.decoder.decode(input)?;
            *consumed += used;
            input = &input[used..];
            if let Some(raw) = message {
                self.handle_message(Message::parse(raw)?)?;
            }
        }
        Ok(())
    }

    /// Makes this connection's incomplete messages draw from a budget shared with others.
    pub fn set_partial_budget(&mut self, budget: std::sync::Arc<PartialBudget>) {
        self.decoder.set_budget(budget);
    }

    /// Tells the connection the time (ms, any fixed origin) before it is given input: it
    /// stamps when each incomplete message started.
    pub fn set_time(&mut self, now_ms: u64) {
        self.decoder.set_time(now_ms);
    }

    /// When the oldest incomplete message started (ms on the `set_time` clock), if any.
    pub fn oldest_partial_ms(&self) -> Option<u64> {
        self.decoder.oldest_partial_ms().map(|(_, started)| started)
    }

    /// Fails when a message has stayed incomplete for `limit_ms` or more at `now_ms`: a peer
    /// trickling a body keeps its reserved space (and a slot of the shard's budget) forever.
    pub fn check_partial_age(&self, now_ms: u64, limit_ms: u64) -> Result<(), Error> {
        match self.decoder.oldest_partial_ms() {
            Some((csid, started)) if now_ms.saturating_sub(started) >= limit_ms => {
                Err(ChunkError::SlowMessage { csid, age_ms: now_ms - started }.into())
            }
            _ => Ok(()),
        }
    }

    /// Bytes waiting in [`Self::poll_transmit`]: the reader stops reading while too many wait.
    pub fn transmit_len(&self) -> usize {
        self.transmit.len()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes waiting to be sent to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.transmit);
        } else {
            out.append(&mut self.transmit);
        }
    }

    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    fn handle_message(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            Message::Abort { csid } => self.decoder.abort(csid),
            Message::WindowAckSize(size) => self.acks.set_window(size),
            Message::Acknowledgement { .. } | Message::SetPeerBandwidth { .. } | Message::Other { .. } => {}
            Message::UserControl { event, data } => {
                if event == USER_PING_REQUEST {
                    let mut reply = USER_PING_RESPONSE.to_be_bytes().to_vec();
                    // The request carries a 4-byte timestamp (spec 7.1.7); echoing more would
                    // let one 16 MiB "ping" become 16 MiB of output in one go.
                    reply.extend_from_slice(&data[..data.len().min(4)]);
                    self.send_control(TYPE_USER_CONTROL, &reply);
                }
            }
            Message::Audio { timestamp, payload, .. } => {
                if self.is_publishing() {
                    self.events.push_back(Event::Audio { timestamp, payload });
                }
            }
            Message::Video { timestamp, payload, .. } => {
                if self.is_publishing() {
                    self.events.push_back(Event::Video { timestamp, payload });
                }
            }
            Message::Data { timestamp, values, payload, .. } => {
                if self.is_publishing() {
                    self.handle_data(timestamp, values, payload);
                }
            }
            Message::Command(command) => self.handle_command(command)?,
        }
        Ok(())
    }

    /// Media is taken on any message stream id: some encoders send it on stream 0 or another
    /// id than the one they published on, and there is one publish per connection.
    fn is_publishing(&self) -> bool {
        matches!(self.role, Role::Publisher { .. })
    }

    fn handle_data(&mut self, timestamp: u32, values: Vec<Amf0Value>, payload: Bytes) {
        let first = values.first().and_then(Amf0Value::as_str);
        if first == Some("@setDataFrame") {
            // Players want `onMetaData, {..}` without the setter: re-encode the rest.
            let mut body = Vec::with_capacity(payload.len());
            for value in &values[1..] {
                amf0::encode(value, &mut body);
            }
            let metadata = values.get(1).and_then(Amf0Value::as_str) == Some("onMetaData");
            self.events.push_back(Event::Data { timestamp, payload: Bytes::from(body), metadata });
        } else if first != Some("@clearDataFrame") {
            // (`@clearDataFrame` only tells a recording server to forget the metadata.)
            let metadata = first == Some("onMetaData");
            self.events.push_back(Event::Data { timestamp, payload, metadata });
        }
    }

    fn handle_command(&mut self, command: Command) -> Result<(), Error> {
        let tid = command.transaction_id;
        match command.name.as_str() {
            "connect" => {
                let field =
                    |name: &str| command.object.get(name).and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
                let (app, mut args) = split_query(&field("app"));
                let tc_url = field("tcUrl");
                if args.is_empty() {
                    // Some clients put the query on tcUrl only.
                    if let Some((_, query)) = tc_url.split_once('?') {
                        args = parse_query(query);
                    }
                }
                let object_encoding = command.object.get("objectEncoding").and_then(Amf0Value::as_f64).unwrap_or(0.0);
                let info = ConnectInfo {
                    app,
                    tc_url,
                    flash_ver: field("flashVer"),
                    swf_url: field("swfUrl"),
                    page_url: field("pageUrl"),
                    object_encoding,
                    args,
                };
                self.pending = Some(Pending::Connect { transaction_id: tid });
                self.events.push_back(Event::Connect(Box::new(info)));
            }
            _ if !self.connected => return Err(Error::NotConnected("command")),
            "releaseStream" | "FCPublish" | "FCSubscribe" | "getStreamLength" | "checkBandwidth" | "_checkbw" => {
                if command.name == "FCPublish" {
                    let name = command.arg_str(0).unwrap_or_default().to_owned();
                    let status = status_object("status", "NetStream.Publish.Start", "FCPublish", Some(&name));
                    self.send_command(0, "onFCPublish", 0.0, &[Amf0Value::Null, status]);
                }
                if tid > 0.0 {
                    let result =
                        if command.name == "getStreamLength" { Amf0Value::Number(0.0) } else { Amf0Value::Undefined };
                    self.send_command(0, "_result", tid, &[Amf0Value::Null, result]);
                }
            }
            "createStream" => {
                let stream_id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.send_command(0, "_result", tid, &[Amf0Value::Null, Amf0Value::Number(stream_id as f64)]);
            }
            "publish" => {
                let (name, args) = split_query(command.arg_str(0).unwrap_or_default());
                let publish_type = command.arg_str(1).unwrap_or("live").to_owned();
                let stream_id = command.stream_id;
                if self.role != Role::None {
                    self.send_status(
                        stream_id,
                        "error",
                        "NetStream.Publish.BadConnection",
                        "connection already publishes or plays",
                        None,
                    );
                    return Ok(());
                }
                self.pending = Some(Pending::Publish { stream_id, name: name.clone() });
                self.events.push_back(Event::Publish(Box::new(PublishRequest { stream_id, name, args, publish_type })));
            }
            "play" => {
                let (name, args) = split_query(command.arg_str(0).unwrap_or_default());
                let stream_id = command.stream_id;
                if name.is_empty() {
                    if let Role::Player { stream_id } = self.role {
                        self.role = Role::None;
                        self.events.push_back(Event::StopPlay { stream_id });
                    }
                    return Ok(());
                }
                if self.role != Role::None {
                    self.send_status(
                        stream_id,
                        "error",
                        "NetStream.Play.Failed",
                        "connection already publishes or plays",
                        None,
                    );
                    return Ok(());
                }
                let start = command.arg_f64(1).unwrap_or(-2.0);
                let duration = command.arg_f64(2).unwrap_or(-1.0);
                let reset = command.args.get(3).and_then(Amf0Value::as_bool).unwrap_or(true);
                self.pending = Some(Pending::Play { stream_id, name: name.clone(), reset });
                self.events.push_back(Event::Play(Box::new(PlayRequest {
                    stream_id,
                    name,
                    args,
                    start,
                    duration,
                    reset,
                })));
            }
            "FCUnpublish" | "closeStream" | "deleteStream" => {
                let target = if command.name == "deleteStream" {
                    command.arg_f64(0).map(|id| id as u32).unwrap_or(command.stream_id)
                } else {
                    command.stream_id
                };
                match self.role {
                    Role::Publisher { stream_id }
                        if command.name == "FCUnpublish" || target == stream_id || target == 0 =>
                    {
                        self.role = Role::None;
                        self.events.push_back(Event::Unpublish { stream_id });
                    }
                    Role::Player { stream_id } if target == stream_id || target == 0 => {
                        self.role = Role::None;
                        self.events.push_back(Event::StopPlay { stream_id });
                    }
                    _ => {}
                }
            }
            // Everything else (pause, receiveAudio, seek, onBWDone, ...) has no meaning for a
            // live server; answering nothing is what peers expect.
            _ => {}
        }
        Ok(())
    }

    /// Accepts the pending connect, publish or play, sending the success replies.
    pub fn accept(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending {
            Pending::Connect { transaction_id } => {
                self.connected = true;
                self.send_control(TYPE_WINDOW_ACK_SIZE, &self.settings.window_ack_size.to_be_bytes());
                let mut bandwidth = self.settings.window_ack_size.to_be_bytes().to_vec();
                bandwidth.push(2);
                self.send_control(TYPE_SET_PEER_BANDWIDTH, &bandwidth);
                self.send_control(TYPE_SET_CHUNK_SIZE, &self.settings.chunk_size.to_be_bytes());
                let properties = Amf0Value::Object(vec![
                    ("fmsVer".into(), "FMS/3,0,1,123".into()),
                    ("capabilities".into(), Amf0Value::Number(31.0)),
                ]);
                let mut info = status_object("status", "NetConnection.Connect.Success", "Connection succeeded.", None);
                if let Amf0Value::Object(fields) = &mut info {
                    fields.push(("objectEncoding".into(), Amf0Value::Number(0.0)));
                }
                self.send_command(0, "_result", transaction_id, &[properties, info]);
            }
            Pending::Publish { stream_id, name } => {
                self.role = Role::Publisher { stream_id };
                self.send_user_control(USER_STREAM_BEGIN, stream_id);
                self.send_status(
                    stream_id,
                    "status",
                    "NetStream.Publish.Start",
                    &format!("{name} is now published."),
                    Some(&name),
                );
            }
            Pending::Play { stream_id, name, reset } => {
                self.role = Role::Player { stream_id };
                self.send_user_control(USER_STREAM_BEGIN, stream_id);
                if reset {
                    self.send_status(
                        stream_id,
                        "status",
                        "NetStream.Play.Reset",
                        &format!("Playing and resetting {name}."),
                        Some(&name),
                    );
                }
                self.send_status(
                    stream_id,
                    "status",
                    "NetStream.Play.Start",
                    &format!("Started playing {name}."),
                    Some(&name),
                );
                // |RtmpSampleAccess is a data message with two booleans, not a command (no
                // transaction id).
                let mut body = Vec::with_capacity(32);
                let values = ["|RtmpSampleAccess".into(), Amf0Value::Boolean(true), Amf0Value::Boolean(true)];
                amf0::encode_all(&values, &mut body);
                self.send_message(CSID_COMMAND, TYPE_DATA_AMF0, stream_id, &body);
            }
        }
    }

    /// Refuses the pending request. `description` reaches the client (name the hook, say why).
    /// After a rejected connect the session should flush and close; a rejected publish or play
    /// leaves the connection up to the session (nginx-rtmp closes it).
    pub fn reject(&mut self, rejection: Rejection, description: &str) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending {
            Pending::Connect { transaction_id } => {
                let info = status_object("error", "NetConnection.Connect.Rejected", description, None);
                self.send_command(0, "_error", transaction_id, &[Amf0Value::Null, info]);
            }
            Pending::Publish { stream_id, name } => {
                // BadName for every refusal: it is what nginx-rtmp sends and what encoders
                // (OBS, ffmpeg) report as a refused stream key without retrying in a loop.
                let _ = rejection;
                self.send_status(stream_id, "error", "NetStream.Publish.BadName", description, Some(&name));
            }
            Pending::Play { stream_id, name, .. } => {
                let code = match rejection {
                    Rejection::NotFound => "NetStream.Play.StreamNotFound",
                    Rejection::Denied | Rejection::StreamBusy => "NetStream.Play.Failed",
                };
                self.send_status(stream_id, "error", code, description, Some(&name));
            }
        }
    }

    /// Tells a player its stream's publisher left (it stays attached for a return).
    pub fn notify_unpublish(&mut self, name: &str) {
        if let Role::Player { stream_id } = self.role {
            self.send_user_control(USER_STREAM_EOF, stream_id);
            self.send_status(
                stream_id,
                "status",
                "NetStream.Play.UnpublishNotify",
                &format!("{name} is now unpublished."),
                Some(name),
            );
        }
    }

    /// Tells a player a publisher (re)started its stream.
    pub fn notify_publish(&mut self, name: &str) {
        if let Role::Player { stream_id } = self.role {
            self.send_user_control(USER_STREAM_BEGIN, stream_id);
            self.send_status(
                stream_id,
                "status",
                "NetStream.Play.PublishNotify",
                &format!("{name} is now published."),
                Some(name),
            );
        }
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str, details: Option<&str>) {
        let info = status_object(level, code, description, details);
        self.send_command(stream_id, "onStatus", 0.0, &[Amf0Value::Null, info]);
    }

    fn send_user_control(&mut self, event: u16, stream_id: u32) {
        let mut body = event.to_be_bytes().to_vec();
        body.extend_from_slice(&stream_id.to_be_bytes());
        self.send_control(TYPE_USER_CONTROL, &body);
    }

    fn send_control(&mut self, type_id: u8, body: &[u8]) {
        self.send_message(CSID_CONTROL, type_id, 0, body);
    }

    fn send_command(&mut self, stream_id: u32, name: &str, transaction_id: f64, values: &[Amf0Value]) {
        let body = command_payload(name, transaction_id, values);
        self.send_message(CSID_COMMAND, TYPE_COMMAND_AMF0, stream_id, &body);
    }

    fn send_message(&mut self, csid: u32, type_id: u8, stream_id: u32, body: &[u8]) {
        // Before our Set Chunk Size reaches the peer it reads with 128-byte chunks.
        let chunk_size = if self.connected { self.settings.chunk_size } else { 128 };
        let message = RawMessageRef { timestamp: 0, type_id, stream_id, payload: body };
        chunk::encode_message(&mut self.transmit, csid, &message, chunk_size);
    }
}

fn status_object(level: &str, code: &str, description: &str, details: Option<&str>) -> Amf0Value {
    let mut fields = vec![
        ("level".to_owned(), Amf0Value::from(level)),
        ("code".to_owned(), Amf0Value::from(code)),
        ("description".to_owned(), Amf0Value::from(description)),
    ];
    if let Some(details) = details {
        fields.push(("details".to_owned(), Amf0Value::from(details)));
    }
    Amf0Value::Object(fields)
}

/// Splits `cam1?token=x&a=b` into `cam1` and its decoded arguments.
pub fn split_query(s: &str) -> (String, Args) {
    match s.split_once('?') {
        Some((name, query)) => (name.to_owned(), parse_query(query)),
        None => (s.to_owned(), Vec::new()),
    }
}

pub fn parse_query(query: &str) -> Args {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}
