//! The client side of an RTMP connection, as a deterministic state machine: what the tests'
//! in-process players and the load generator speak.
//!
//! It walks the usual sequence (handshake, `connect`, `createStream`, then `play` or
//! `releaseStream`/`FCPublish`/`publish`) on its own and reports what the server says.

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunk::{self, Acknowledger, ChunkDecoder, RawMessageRef};
use super::handshake::{Buffered, ClientHandshake, SEED_LEN};
use super::message::*;
use super::server::Error;
use crate::protocol::amf0::Amf0Value;

const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
/// What the client announces as its outgoing chunk size.
const CLIENT_CHUNK_SIZE: u32 = 4096;

const TID_CONNECT: f64 = 1.0;
const TID_CREATE_STREAM: f64 = 2.0;

/// What the client is connecting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Play `name` (may carry a query string).
    Play(String),
    /// Publish as `name` (may carry a query string).
    Publish(String),
    /// Stop after `connect` succeeds (idle connections in load tests).
    Connect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// The message stream for play or publish exists and the request went out.
    StreamCreated {
        stream_id: u32,
    },
    /// An `onStatus` from the server (`NetStream.Play.Start`, `...Publish.BadName`, ...).
    Status {
        level: String,
        code: String,
        description: String,
    },
    /// The server answered a command with `_error`.
    CommandError {
        command: &'static str,
        code: String,
        description: String,
    },
    Audio {
        timestamp: u32,
        payload: Bytes,
    },
    Video {
        timestamp: u32,
        payload: Bytes,
    },
    Data {
        timestamp: u32,
        payload: Bytes,
    },
}

pub struct ClientConnection {
    handshake: Option<Box<Buffered<ClientHandshake>>>,
    decoder: ChunkDecoder,
    transmit: Vec<u8>,
    events: VecDeque<ClientEvent>,
    app: String,
    tc_url: String,
    goal: Goal,
    stream_id: u32,
    out_chunk_size: u32,
    /// The chunk size announced once the handshake is done.
    announced_chunk_size: u32,
    /// Acknowledges what the server sends, per the window it announces.
    acks: Acknowledger,
}

impl ClientConnection {
    /// `tc_url` is the URL up to the app (`rtmp://host:port/live`).
    pub fn new(app: &str, tc_url: &str, goal: Goal, seed: [u8; SEED_LEN], epoch: u32) -> ClientConnection {
        let mut handshake = ClientHandshake::new(seed, epoch, None);
        let mut transmit = Vec::new();
        handshake.poll_transmit(&mut transmit);
        ClientConnection {
            handshake: Some(Box::new(Buffered::new(handshake))),
            decoder: ChunkDecoder::new(),
            transmit,
            events: VecDeque::new(),
            app: app.to_owned(),
            tc_url: tc_url.to_owned(),
            goal,
            stream_id: 0,
            out_chunk_size: 128,
            announced_chunk_size: CLIENT_CHUNK_SIZE,
            acks: Acknowledger::default(),
        }
    }

    /// Announces `size` as the outgoing chunk size instead of the default (4096), before the
    /// handshake ends: a server relaying its players' chunked media to another server sends
    /// it cut at its own chunk size. Sizes outside RTMP's 1..=0x7FFF_FFFF are clamped.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.announced_chunk_size = size.clamp(1, 0x7FFF_FFFF);
    }

    /// The message stream `play` or `publish` went out on, once created (0 before).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.transmit);
    }

    pub fn handle_input(&mut self, input: &[u8]) -> Result<(), Error> {
        if let Some(handshake) = self.handshake.as_mut() {
            let Some(rest) = handshake.feed(input, &mut self.transmit)? else {
                return Ok(());
            };
            self.handshake = None;
            self.send_message(CSID_CONTROL, TYPE_SET_CHUNK_SIZE, 0, &self.announced_chunk_size.to_be_bytes());
            self.out_chunk_size = self.announced_chunk_size;
            let object = Amf0Value::Object(vec![
                ("app".into(), self.app.as_str().into()),
                ("flashVer".into(), "FMLE/3.0 (compatible; ringcast-load)".into()),
                ("tcUrl".into(), self.tc_url.as_str().into()),
                ("type".into(), "nonprivate".into()),
                ("fpad".into(), Amf0Value::Boolean(false)),
                ("capabilities".into(), Amf0Value::Number(15.0)),
                ("audioCodecs".into(), Amf0Value::Number(4071.0)),
                ("videoCodecs".into(), Amf0Value::Number(252.0)),
                ("videoFunction".into(), Amf0Value::Number(1.0)),
            ]);
            self.send_command(0, "connect", TID_CONNECT, &[object]);
            return self.handle_chunks(&rest);
        }
        self.handle_chunks(input)
    }

    fn handle_chunks(&mut self, mut input: &[u8]) -> Result<(), Error> {
        while !input.is_empty() {
            let (used, message) = self.decoder.decode(input)?;
            input = &input[used..];
            if let Some(sequence) = self.acks.received(used) {
                self.send_message(CSID_CONTROL, TYPE_ACKNOWLEDGEMENT, 0, &sequence.to_be_bytes());
            }
            if let Some(raw) = message {
                self.handle_message(Message::parse(raw)?);
            }
        }
        Ok(())
    }

    fn handle_message(&mut self, message: Message) {
        match message {
            Message::SetChunkSize(size) => {
                // Already range-checked by the parser's mask; a zero size is ignored.
                let _ = self.decoder.set_chunk_size(size);
            }
            Message::WindowAckSize(size) => self.acks.set_window(size),
            Message::UserControl { event: USER_PING_REQUEST, data } => {
                let mut reply = USER_PING_RESPONSE.to_be_bytes().to_vec();
                reply.extend_from_slice(&data);
                self.send_message(CSID_CONTROL, TYPE_USER_CONTROL, 0, &reply);
            }
            Message::Audio { timestamp, payload, .. } => {
                self.events.push_back(ClientEvent::Audio { timestamp, payload })
            }
            Message::Video { timestamp, payload, .. } => {
                self.events.push_back(ClientEvent::Video { timestamp, payload })
            }
            Message::Data { timestamp, payload, .. } => self.events.push_back(ClientEvent::Data { timestamp, payload }),
            Message::Command(command) => self.handle_command(command),
            _ => {}
        }
    }

    fn handle_command(&mut self, command: Command) {
        let info = command.args.first();
        let field =
            |name: &str| info.and_then(|i| i.get(name)).and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
        match command.name.as_str() {
            "_result" if command.transaction_id == TID_CONNECT => {
                self.events.push_back(ClientEvent::Connected);
                match &self.goal {
                    Goal::Connect => {}
                    Goal::Play(_) => self.send_command(0, "createStream", TID_CREATE_STREAM, &[]),
                    Goal::Publish(name) => {
                        let name = name.clone();
                        self.send_command(0, "releaseStream", 3.0, &[name.as_str().into()]);
                        self.send_command(0, "FCPublish", 4.0, &[name.as_str().into()]);
                        self.send_command(0, "createStream", TID_CREATE_STREAM, &[]);
                    }
                }
            }
            "_result" if command.transaction_id == TID_CREATE_STREAM => {
                let stream_id = command.arg_f64(0).unwrap_or(1.0) as u32;
                self.stream_id = stream_id;
                self.events.push_back(ClientEvent::StreamCreated { stream_id });
                match self.goal.clone() {
                    Goal::Play(name) => {
                        self.send_command(stream_id, "play", 0.0, &[name.as_str().into(), Amf0Value::Number(-1000.0)]);
                        let mut buffer = USER_SET_BUFFER_LENGTH.to_be_bytes().to_vec();
                        buffer.extend_from_slice(&stream_id.to_be_bytes());
                        buffer.extend_from_slice(&3000u32.to_be_bytes());
                        self.send_message(CSID_CONTROL, TYPE_USER_CONTROL, 0, &buffer);
                    }
                    Goal::Publish(name) => {
                        self.send_command(stream_id, "publish", 5.0, &[name.as_str().into(), "live".into()]);
                    }
                    Goal::Connect => {}
                }
            }
            "_error" => {
                let command_name = match command.transaction_id {
                    t if t == TID_CONNECT => "connect",
                    t if t == TID_CREATE_STREAM => "createStream",
                    _ => "other",
                };
                self.events.push_back(ClientEvent::CommandError {
                    command: command_name,
                    code: field("code"),
                    description: field("description"),
                });
            }
            "onStatus" => self.events.push_back(ClientEvent::Status {
                level: field("level"),
                code: field("code"),
                description: field("description"),
            }),
            _ => {}
        }
    }

    /// Sends one media message of a publish (`type_id` 8 audio, 9 video, 18 data).
    pub fn send_media(&mut self, type_id: u8, timestamp: u32, payload: &[u8]) {
        let csid = match type_id {
            TYPE_AUDIO => 4,
            TYPE_VIDEO => 6,
            _ => 5,
        };
        self.send_timed(csid, type_id, self.stream_id, timestamp, payload);
    }

    fn send_command(&mut self, stream_id: u32, name: &str, transaction_id: f64, args: &[Amf0Value]) {
        let mut values = Vec::with_capacity(args.len() + 1);
        if name != "connect" {
            values.push(Amf0Value::Null);
        }
        values.extend_from_slice(args);
        let body = command_payload(name, transaction_id, &values);
        self.send_message(CSID_COMMAND, TYPE_COMMAND_AMF0, stream_id, &body);
    }

    fn send_message(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.send_timed(csid, type_id, stream_id, 0, payload);
    }

    fn send_timed(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) {
        let message = RawMessageRef { timestamp, type_id, stream_id, payload };
        chunk::encode_message(&mut self.transmit, csid, &message, self.out_chunk_size);
    }
}
