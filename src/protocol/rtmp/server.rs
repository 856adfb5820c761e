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
use crate::protocol::limits::WireLimits;

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
    /// Bounds of incoming messages (`rtmp_message_bytes`, `rtmp_chunk_streams`).
    pub limits: WireLimits,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { chunk_size: 4096, window_ack_size: 2_500_000, limits: WireLimits::default() }
    }
}

/// A query string split into its arguments, in order.
pub type Args = Vec<(String, String)>;

/// Size caps on what a client names in `connect`, `publish` and `play`. Every value reaches
/// hooks (events, callbacks) and some are kept for the connection's life, so an unbounded one
/// is memory a client chooses: one connection re-sent `connect` with a 1 MiB tcUrl and each
/// event carried it. The caps are far above anything a real client sends (OBS, ffmpeg and
/// Flash send tcUrls of well under 200 bytes) and the refusal names the field.
pub mod caps {
    /// tcUrl, swfUrl, pageUrl, and an app or stream name with its query string.
    pub const URL: usize = 4096;
    /// app and stream name without their query string, flashVer.
    pub const NAME: usize = 1024;
    /// Query arguments of one request.
    pub const ARGS: usize = 64;
}

/// A request refused by the protocol itself, before any hook sees it: the client got its
/// error reply and the session should close the connection once that is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A field longer than its cap (in bytes).
    #[error("{command}: {field} is {len} bytes, over the {cap}-byte limit")]
    TooLong { command: &'static str, field: &'static str, len: usize, cap: usize },
    /// More query arguments than [`caps::ARGS`].
    #[error("{command}: {count} query arguments, over the limit of {cap}")]
    TooManyArgs { command: &'static str, count: usize, cap: usize },
    /// `connect` on a connection that already sent one. Hooks, events and the session's
    /// identity all hang on the first; a second would restart them mid-connection (and was
    /// how one connection re-sent a 1 MiB tcUrl again and again).
    #[error("connect: the connection already sent connect")]
    Reconnect,
}

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
    /// A request was refused by the protocol (see [`Refusal`]); its error reply is queued and
    /// further input is ignored. The session should flush and close.
    Refused(Refusal),
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
    /// `connect` was received (answered or not): a second one is refused.
    connect_seen: bool,
    /// A request was refused: input is ignored from then on, until the session closes.
    refused: bool,
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
            decoder: ChunkDecoder::with_limits(settings.limits.rtmp_message_bytes, settings.limits.rtmp_chunk_streams),
            transmit: Vec::new(),
            events: VecDeque::new(),
            deferred: Vec::new(),
            pending: None,
            connect_seen: false,
            refused: false,
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
            if self.refused {
                return Ok(());
            }
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
                if std::mem::replace(&mut self.connect_seen, true) {
                    self.refuse_connect(tid, Refusal::Reconnect);
                    return Ok(());
                }
                match connect_info(&command) {
                    Ok(info) => {
                        self.pending = Some(Pending::Connect { transaction_id: tid });
                        self.events.push_back(Event::Connect(Box::new(info)));
                    }
                    Err(refusal) => self.refuse_connect(tid, refusal),
                }
            }
            _ if !self.connected => return Err(Error::NotConnected("command")),
            "releaseStream" | "FCPublish" | "FCSubscribe" | "getStreamLength" | "checkBandwidth" | "_checkbw" => {
                if command.name == "FCPublish" {
                    // Echoed in the reply: held to the cap of the publish that follows.
                    let name = capped("FCPublish", "stream name", command.arg_str(0).unwrap_or_default(), caps::URL);
                    let Some(name) = self.unless_refused(0, "NetStream.Publish.BadName", name) else {
                        return Ok(());
                    };
                    let status = status_object("status", "NetStream.Publish.Start", "FCPublish", Some(name));
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
                let stream_id = command.stream_id;
                let bad_name = "NetStream.Publish.BadName";
                let parsed = stream_name("publish", command.arg_str(0).unwrap_or_default());
                let Some((name, args)) = self.unless_refused(stream_id, bad_name, parsed) else {
                    return Ok(());
                };
                let publish_type = capped("publish", "type", command.arg_str(1).unwrap_or("live"), caps::NAME);
                let Some(publish_type) = self.unless_refused(stream_id, bad_name, publish_type) else {
                    return Ok(());
                };
                let publish_type = publish_type.to_owned();
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
                let stream_id = command.stream_id;
                let parsed = stream_name("play", command.arg_str(0).unwrap_or_default());
                let Some((name, args)) = self.unless_refused(stream_id, "NetStream.Play.Failed", parsed) else {
                    return Ok(());
                };
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

    /// Answers a refused `connect` with `_error` NetConnection.Connect.Rejected.
    fn refuse_connect(&mut self, transaction_id: f64, refusal: Refusal) {
        let info = status_object("error", "NetConnection.Connect.Rejected", &refusal.to_string(), None);
        self.send_command(0, "_error", transaction_id, &[Amf0Value::Null, info]);
        self.refuse(refusal);
    }

    /// The value of `checked`, or `None` once a refusal was answered with an error `onStatus`
    /// of `code` on `stream_id` (a `publish` or `play` whose name is over its cap).
    fn unless_refused<T>(&mut self, stream_id: u32, code: &str, checked: Result<T, Refusal>) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(refusal) => {
                self.send_status(stream_id, "error", code, &refusal.to_string(), None);
                self.refuse(refusal);
                None
            }
        }
    }

    /// Ends the connection's useful life: nothing more is read, the session is told.
    fn refuse(&mut self, refusal: Refusal) {
        self.refused = true;
        self.events.push_back(Event::Refused(refusal));
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

    /// Withdraws an accepted publish that a later decision refused (`on_media`, once the
    /// publisher's media is known): the client gets what a refused publish gets
    /// (onStatus error `NetStream.Publish.BadName` with `description`), and nothing it sends
    /// is read any more; the session flushes and closes.
    pub fn revoke_publish(&mut self, name: &str, description: &str) {
        if let Role::Publisher { stream_id } = self.role {
            self.send_status(stream_id, "error", "NetStream.Publish.BadName", description, Some(name));
            self.role = Role::None;
            self.refused = true;
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

/// `value` if it is at most `cap` bytes.
fn capped<'a>(command: &'static str, field: &'static str, value: &'a str, cap: usize) -> Result<&'a str, Refusal> {
    if value.len() > cap { Err(Refusal::TooLong { command, field, len: value.len(), cap }) } else { Ok(value) }
}

/// The fields of `connect`, each within its cap.
fn connect_info(command: &Command) -> Result<ConnectInfo, Refusal> {
    let field = |name: &'static str, cap: usize| -> Result<String, Refusal> {
        let value = command.object.get(name).and_then(Amf0Value::as_str).unwrap_or_default();
        capped("connect", name, value, cap).map(str::to_owned)
    };
    let app_with_query = field("app", caps::URL)?;
    let tc_url = field("tcUrl", caps::URL)?;
    let flash_ver = field("flashVer", caps::NAME)?;
    let swf_url = field("swfUrl", caps::URL)?;
    let page_url = field("pageUrl", caps::URL)?;
    let (app, mut args) = split_query(&app_with_query);
    capped("connect", "app", &app, caps::NAME)?;
    if args.is_empty() {
        // Some clients put the query on tcUrl only.
        if let Some((_, query)) = tc_url.split_once('?') {
            args = parse_query(query);
        }
    }
    if args.len() > caps::ARGS {
        return Err(Refusal::TooManyArgs { command: "connect", count: args.len(), cap: caps::ARGS });
    }
    let object_encoding = command.object.get("objectEncoding").and_then(Amf0Value::as_f64).unwrap_or(0.0);
    Ok(ConnectInfo { app, tc_url, flash_ver, swf_url, page_url, object_encoding, args })
}

/// A `publish` or `play` stream name split from its query, each within its cap.
fn stream_name(command: &'static str, text: &str) -> Result<(String, Args), Refusal> {
    let (name, args) = split_query(capped(command, "stream name", text, caps::URL)?);
    capped(command, "stream name", &name, caps::NAME)?;
    if args.len() > caps::ARGS {
        return Err(Refusal::TooManyArgs { command, count: args.len(), cap: caps::ARGS });
    }
    Ok((name, args))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection past a simple handshake (C0, then C1 and C2 of zeros).
    fn handshaken() -> ServerConnection {
        handshaken_with(ServerSettings::default())
    }

    fn handshaken_with(settings: ServerSettings) -> ServerConnection {
        let mut conn = ServerConnection::new(settings, [7; SEED_LEN], 0);
        let mut c0c1c2 = vec![3u8];
        c0c1c2.resize(1 + 2 * 1536, 0);
        conn.handle_input(&c0c1c2).unwrap();
        assert_eq!(conn.poll_event(), Some(Event::HandshakeComplete));
        let mut s0s1s2 = Vec::new();
        conn.poll_transmit(&mut s0s1s2);
        conn
    }

    /// The bytes of a command as a client sends it (128-byte chunks on csid 3).
    fn command_bytes(stream_id: u32, name: &str, transaction_id: f64, values: &[Amf0Value]) -> Vec<u8> {
        let payload = command_payload(name, transaction_id, values);
        let mut out = Vec::new();
        let message = RawMessageRef { timestamp: 0, type_id: TYPE_COMMAND_AMF0, stream_id, payload: &payload };
        chunk::encode_message(&mut out, 3, &message, 128);
        out
    }

    fn connect_bytes(fields: &[(&str, String)]) -> Vec<u8> {
        let object = Amf0Value::object(fields.iter().map(|(k, v)| (*k, Amf0Value::from(v.as_str()))));
        command_bytes(0, "connect", 1.0, &[object])
    }

    fn typical_connect() -> Vec<(&'static str, String)> {
        vec![
            ("app", "live".to_owned()),
            ("tcUrl", "rtmp://127.0.0.1:1935/live".to_owned()),
            ("flashVer", "FMLE/3.0 (compatible; Lavf59.27.100)".to_owned()),
            ("swfUrl", String::new()),
            ("pageUrl", String::new()),
        ]
    }

    /// The commands the server sent, in order.
    fn sent_commands(conn: &mut ServerConnection) -> Vec<Command> {
        let mut out = Vec::new();
        conn.poll_transmit(&mut out);
        let mut decoder = ChunkDecoder::new();
        if conn.connected {
            // Its Set Chunk Size went out with the connect reply, read by an earlier call.
            decoder.set_chunk_size(conn.settings.chunk_size).unwrap();
        }
        let mut input = &out[..];
        let mut commands = Vec::new();
        while !input.is_empty() {
            let (used, message) = decoder.decode(input).unwrap();
            input = &input[used..];
            match message.map(|raw| Message::parse(raw).unwrap()) {
                Some(Message::SetChunkSize(size)) => decoder.set_chunk_size(size).unwrap(),
                Some(Message::Command(command)) => commands.push(command),
                _ => {}
            }
        }
        commands
    }

    /// `(command name, info code, info description)` of the last command sent.
    fn last_reply(conn: &mut ServerConnection) -> (String, String, String) {
        let command = sent_commands(conn).pop().expect("a reply");
        let info = command.args.last().cloned().unwrap_or(Amf0Value::Null);
        let text = |key: &str| info.get(key).and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
        (command.name, text("code"), text("description"))
    }

    #[test]
    fn the_decoder_takes_the_wire_limits_of_the_settings() {
        let limits = WireLimits { rtmp_message_bytes: 4096, ..WireLimits::default() };
        let mut conn = handshaken_with(ServerSettings { limits, ..ServerSettings::default() });
        let mut wire = Vec::new();
        let frame = RawMessageRef { timestamp: 0, type_id: 9, stream_id: 1, payload: &[0x17; 4097] };
        chunk::encode_message(&mut wire, 6, &frame, 128);
        assert!(matches!(conn.handle_input(&wire), Err(Error::Chunk(ChunkError::MessageTooLarge(4097)))));
        // The default takes it.
        assert!(handshaken().handle_input(&wire).is_ok());
    }

    fn connected() -> ServerConnection {
        let mut conn = handshaken();
        conn.handle_input(&connect_bytes(&typical_connect())).unwrap();
        assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
        conn.accept();
        sent_commands(&mut conn);
        conn
    }

    fn refused(conn: &mut ServerConnection) -> Refusal {
        match conn.poll_event() {
            Some(Event::Refused(refusal)) => refusal,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_connect_field_over_its_cap_is_rejected_and_named() {
        let cases: [(&str, usize, usize); 5] = [
            ("tcUrl", caps::URL + 1, caps::URL),
            ("swfUrl", caps::URL + 1, caps::URL),
            ("pageUrl", caps::URL + 1, caps::URL),
            ("flashVer", caps::NAME + 1, caps::NAME),
            ("app", caps::NAME + 1, caps::NAME),
        ];
        for (field, len, cap) in cases {
            let mut conn = handshaken();
            let mut fields = typical_connect();
            fields.retain(|(name, _)| *name != field);
            fields.push((field, "x".repeat(len)));
            conn.handle_input(&connect_bytes(&fields)).unwrap();
            let refusal = refused(&mut conn);
            assert_eq!(refusal, Refusal::TooLong { command: "connect", field, len, cap });
            assert!(!conn.is_pending(), "{field}: no decision is asked for");
            let (name, code, description) = last_reply(&mut conn);
            assert_eq!((name.as_str(), code.as_str()), ("_error", "NetConnection.Connect.Rejected"), "{field}");
            assert_eq!(description, format!("connect: {field} is {len} bytes, over the {cap}-byte limit"));
            // Nothing more is read: not even a valid connect.
            conn.handle_input(&connect_bytes(&typical_connect())).unwrap();
            assert_eq!(conn.poll_event(), None, "{field}");
        }
    }

    #[test]
    fn a_megabyte_tc_url_is_refused() {
        // The attack that found the missing caps: a 1 MiB tcUrl, once per connect.
        let mut conn = handshaken();
        let mut fields = typical_connect();
        fields[1].1 = format!("rtmp://h/live?{}", "a".repeat(1 << 20));
        conn.handle_input(&connect_bytes(&fields)).unwrap();
        assert!(matches!(refused(&mut conn), Refusal::TooLong { field: "tcUrl", .. }));
        assert_eq!(last_reply(&mut conn).1, "NetConnection.Connect.Rejected");
    }

    #[test]
    fn fields_at_their_caps_are_accepted() {
        let mut conn = handshaken();
        let query: Vec<String> = (0..caps::ARGS).map(|i| format!("k{i}=v")).collect();
        let app = format!("{}?{}", "a".repeat(caps::NAME), query.join("&"));
        let fields = vec![
            ("app", app),
            ("tcUrl", "t".repeat(caps::URL)),
            ("flashVer", "f".repeat(caps::NAME)),
            ("swfUrl", "s".repeat(caps::URL)),
            ("pageUrl", "p".repeat(caps::URL)),
        ];
        conn.handle_input(&connect_bytes(&fields)).unwrap();
        let Some(Event::Connect(info)) = conn.poll_event() else { panic!("no connect") };
        assert_eq!((info.app.len(), info.args.len(), info.tc_url.len()), (caps::NAME, caps::ARGS, caps::URL));
    }

    #[test]
    fn too_many_connect_args_are_refused() {
        let mut conn = handshaken();
        let query: Vec<String> = (0..=caps::ARGS).map(|i| format!("k{i}=v")).collect();
        let mut fields = typical_connect();
        fields[1].1 = format!("rtmp://h/live?{}", query.join("&"));
        conn.handle_input(&connect_bytes(&fields)).unwrap();
        assert_eq!(
            refused(&mut conn),
            Refusal::TooManyArgs { command: "connect", count: caps::ARGS + 1, cap: caps::ARGS }
        );
        assert_eq!(last_reply(&mut conn).1, "NetConnection.Connect.Rejected");
    }

    #[test]
    fn a_second_connect_is_refused() {
        let mut conn = connected();
        conn.handle_input(&connect_bytes(&typical_connect())).unwrap();
        assert_eq!(refused(&mut conn), Refusal::Reconnect);
        let (name, code, description) = last_reply(&mut conn);
        assert_eq!((name.as_str(), code.as_str()), ("_error", "NetConnection.Connect.Rejected"));
        assert_eq!(description, "connect: the connection already sent connect");

        // Also while the first one still waits for its decision (the second is deferred).
        let mut conn = handshaken();
        let mut twice = connect_bytes(&typical_connect());
        twice.extend(connect_bytes(&typical_connect()));
        conn.handle_input(&twice).unwrap();
        assert!(matches!(conn.poll_event(), Some(Event::Connect(_))));
        conn.accept();
        conn.handle_input(&[]).unwrap();
        assert_eq!(refused(&mut conn), Refusal::Reconnect);
    }

    #[test]
    fn publish_and_play_names_over_their_caps_are_refused() {
        let long_name = "n".repeat(caps::NAME + 1);
        let many_args = format!("cam?{}", (0..=caps::ARGS).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&"));
        let long_query = format!("cam?token={}", "t".repeat(caps::URL));
        let cases = [
            (
                "publish",
                long_name.clone(),
                "NetStream.Publish.BadName",
                "publish: stream name is 1025 bytes, over the 1024-byte limit",
            ),
            (
                "publish",
                many_args.clone(),
                "NetStream.Publish.BadName",
                "publish: 65 query arguments, over the limit of 64",
            ),
            (
                "play",
                long_query.clone(),
                "NetStream.Play.Failed",
                "play: stream name is 4106 bytes, over the 4096-byte limit",
            ),
            ("play", many_args, "NetStream.Play.Failed", "play: 65 query arguments, over the limit of 64"),
        ];
        for (command, name, code, description) in cases {
            let mut conn = connected();
            conn.handle_input(&command_bytes(1, command, 0.0, &[Amf0Value::Null, name.as_str().into()])).unwrap();
            assert_eq!(refused(&mut conn).to_string(), description);
            assert!(!conn.is_pending());
            let (reply, got_code, got_description) = last_reply(&mut conn);
            assert_eq!((reply.as_str(), got_code.as_str(), got_description.as_str()), ("onStatus", code, description));
        }
        // At the caps: asked for.
        let mut conn = connected();
        let name = format!(
            "{}?{}",
            "n".repeat(caps::NAME),
            (0..caps::ARGS).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&")
        );
        conn.handle_input(&command_bytes(1, "play", 0.0, &[Amf0Value::Null, name.as_str().into()])).unwrap();
        assert!(matches!(conn.poll_event(), Some(Event::Play(_))));
    }

    #[test]
    fn a_long_fc_publish_name_is_not_echoed() {
        let mut conn = connected();
        let name = "n".repeat(caps::URL + 1);
        conn.handle_input(&command_bytes(0, "FCPublish", 2.0, &[Amf0Value::Null, name.as_str().into()])).unwrap();
        assert!(matches!(refused(&mut conn), Refusal::TooLong { command: "FCPublish", .. }));
        let commands = sent_commands(&mut conn);
        assert!(commands.iter().all(|c| c.name != "onFCPublish"), "{commands:?}");
    }

    #[test]
    fn a_revoked_publish_gets_the_publish_refusal_and_is_read_no_more() {
        let mut conn = connected();
        conn.handle_input(&command_bytes(1, "publish", 0.0, &[Amf0Value::Null, "cam".into(), "live".into()])).unwrap();
        assert!(matches!(conn.poll_event(), Some(Event::Publish(_))));
        conn.accept();
        assert_eq!(last_reply(&mut conn).1, "NetStream.Publish.Start");
        let mut wire = Vec::new();
        let frame = RawMessageRef { timestamp: 0, type_id: 9, stream_id: 1, payload: &[0x17, 1, 0, 0, 0] };
        chunk::encode_message(&mut wire, 6, &frame, 128);
        conn.handle_input(&wire).unwrap();
        assert!(matches!(conn.poll_event(), Some(Event::Video { .. })));

        conn.revoke_publish("cam", "on_media callback refused: callback answered 403");
        let (reply, code, description) = last_reply(&mut conn);
        assert_eq!((reply.as_str(), code.as_str()), ("onStatus", "NetStream.Publish.BadName"));
        assert_eq!(description, "on_media callback refused: callback answered 403");
        assert_eq!(conn.role(), Role::None);
        conn.handle_input(&wire).unwrap();
        assert_eq!(conn.poll_event(), None, "media after the refusal is not read");
        // Not publishing (any more): nothing to revoke, nothing sent.
        conn.revoke_publish("cam", "again");
        assert!(sent_commands(&mut conn).is_empty());
    }
}
