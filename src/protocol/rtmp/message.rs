//! RTMP messages: what a reassembled chunk-stream message means (RTMP spec 5.4, 6, 7).
//!
//! Protocol control messages (types 1-6) carry small integers; audio (8), video (9) and data
//! (18, 15) carry media and metadata; commands (20, 17) are AMF0-encoded calls such as
//! `connect` or `publish`. Media payloads are kept as the `Bytes` the chunk decoder produced,
//! so they reach the hub without another copy.

use bytes::{Buf, Bytes};

use super::chunk::RawMessage;
use crate::protocol::amf0::{self, Amf0Error, Amf0Value};

pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub const TYPE_ABORT: u8 = 2;
pub const TYPE_ACKNOWLEDGEMENT: u8 = 3;
pub const TYPE_USER_CONTROL: u8 = 4;
pub const TYPE_WINDOW_ACK_SIZE: u8 = 5;
pub const TYPE_SET_PEER_BANDWIDTH: u8 = 6;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA_AMF3: u8 = 15;
pub const TYPE_COMMAND_AMF3: u8 = 17;
pub const TYPE_DATA_AMF0: u8 = 18;
pub const TYPE_COMMAND_AMF0: u8 = 20;
pub const TYPE_AGGREGATE: u8 = 22;

/// User control event types (spec 7.1.7).
pub const USER_STREAM_BEGIN: u16 = 0;
pub const USER_STREAM_EOF: u16 = 1;
pub const USER_STREAM_DRY: u16 = 2;
pub const USER_SET_BUFFER_LENGTH: u16 = 3;
pub const USER_STREAM_IS_RECORDED: u16 = 4;
pub const USER_PING_REQUEST: u16 = 6;
pub const USER_PING_RESPONSE: u16 = 7;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("{name} message too short ({len} bytes)")]
    TooShort { name: &'static str, len: usize },
    #[error("malformed AMF in {context}: {source}")]
    Amf { context: &'static str, source: Amf0Error },
    #[error("command message without a name")]
    CommandWithoutName,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    SetChunkSize(u32),
    Abort {
        csid: u32,
    },
    Acknowledgement {
        sequence: u32,
    },
    UserControl {
        event: u16,
        data: Bytes,
    },
    WindowAckSize(u32),
    SetPeerBandwidth {
        size: u32,
        limit: u8,
    },
    Audio {
        timestamp: u32,
        stream_id: u32,
        payload: Bytes,
    },
    Video {
        timestamp: u32,
        stream_id: u32,
        payload: Bytes,
    },
    /// A data message (`@setDataFrame`, `onMetaData`, ...). `payload` is the AMF0 body as
    /// sent, kept whole so it can be forwarded untouched.
    Data {
        timestamp: u32,
        stream_id: u32,
        values: Vec<Amf0Value>,
        payload: Bytes,
    },
    Command(Command),
    /// A message type we do not act on (aggregate, shared object, ...); ignored, not an error.
    Other {
        type_id: u8,
    },
}

/// An AMF command: name, transaction id, command object, then arguments (spec 7.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub stream_id: u32,
    pub name: String,
    pub transaction_id: f64,
    pub object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

impl Command {
    pub fn arg_str(&self, index: usize) -> Option<&str> {
        self.args.get(index).and_then(Amf0Value::as_str)
    }

    pub fn arg_f64(&self, index: usize) -> Option<f64> {
        self.args.get(index).and_then(Amf0Value::as_f64)
    }
}

fn be_u32(name: &'static str, payload: &Bytes) -> Result<u32, MessageError> {
    match payload.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(MessageError::TooShort { name, len: payload.len() }),
    }
}

impl Message {
    pub fn parse(raw: RawMessage) -> Result<Message, MessageError> {
        let RawMessage { timestamp, type_id, stream_id, payload, .. } = raw;
        Ok(match type_id {
            TYPE_SET_CHUNK_SIZE => Message::SetChunkSize(be_u32("set chunk size", &payload)? & 0x7FFF_FFFF),
            TYPE_ABORT => Message::Abort { csid: be_u32("abort", &payload)? },
            TYPE_ACKNOWLEDGEMENT => Message::Acknowledgement { sequence: be_u32("acknowledgement", &payload)? },
            TYPE_WINDOW_ACK_SIZE => Message::WindowAckSize(be_u32("window ack size", &payload)?),
            TYPE_SET_PEER_BANDWIDTH => {
                let size = be_u32("set peer bandwidth", &payload)?;
                // The limit type is often omitted by lax encoders; default to dynamic (2).
                Message::SetPeerBandwidth { size, limit: payload.get(4).copied().unwrap_or(2) }
            }
            TYPE_USER_CONTROL => {
                if payload.len() < 2 {
                    return Err(MessageError::TooShort { name: "user control", len: payload.len() });
                }
                let mut data = payload;
                let event = data.get_u16();
                Message::UserControl { event, data }
            }
            TYPE_AUDIO => Message::Audio { timestamp, stream_id, payload },
            TYPE_VIDEO => Message::Video { timestamp, stream_id, payload },
            TYPE_DATA_AMF0 | TYPE_DATA_AMF3 => {
                // AMF3 data messages from Flash start with a format byte, then AMF0 values.
                let payload =
                    if type_id == TYPE_DATA_AMF3 && !payload.is_empty() { payload.slice(1..) } else { payload };
                let values = amf0::decode_all(&payload)
                    .map_err(|source| MessageError::Amf { context: "data message", source })?;
                Message::Data { timestamp, stream_id, values, payload }
            }
            TYPE_COMMAND_AMF0 | TYPE_COMMAND_AMF3 => {
                let body =
                    if type_id == TYPE_COMMAND_AMF3 && !payload.is_empty() { &payload[1..] } else { &payload[..] };
                let mut values = amf0::decode_all(body)
                    .map_err(|source| MessageError::Amf { context: "command", source })?
                    .into_iter();
                let name = match values.next() {
                    Some(Amf0Value::String(name)) => name,
                    _ => return Err(MessageError::CommandWithoutName),
                };
                let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
                let object = values.next().unwrap_or(Amf0Value::Null);
                Message::Command(Command { stream_id, name, transaction_id, object, args: values.collect() })
            }
            other => Message::Other { type_id: other },
        })
    }
}

/// Encodes an AMF0 command body: name, transaction id, then the values.
pub fn command_payload(name: &str, transaction_id: f64, values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    amf0::encode(&Amf0Value::String(name.to_owned()), &mut out);
    amf0::encode(&Amf0Value::Number(transaction_id), &mut out);
    for value in values {
        amf0::encode(value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(type_id: u8, payload: &[u8]) -> RawMessage {
        RawMessage { csid: 3, timestamp: 7, type_id, stream_id: 1, payload: Bytes::copy_from_slice(payload) }
    }

    #[test]
    fn parses_control_messages_from_bytes() {
        assert_eq!(Message::parse(raw(1, &[0, 0, 0x10, 0])).unwrap(), Message::SetChunkSize(4096));
        assert_eq!(Message::parse(raw(5, &[0, 0x4C, 0x4B, 0x40])).unwrap(), Message::WindowAckSize(5_000_000));
        assert_eq!(
            Message::parse(raw(6, &[0, 0x4C, 0x4B, 0x40, 2])).unwrap(),
            Message::SetPeerBandwidth { size: 5_000_000, limit: 2 }
        );
        assert_eq!(
            Message::parse(raw(4, &[0, 6, 0, 0, 0, 9])).unwrap(),
            Message::UserControl { event: USER_PING_REQUEST, data: Bytes::from_static(&[0, 0, 0, 9]) }
        );
    }

    #[test]
    fn short_control_messages_are_errors() {
        assert!(matches!(Message::parse(raw(1, &[0, 0])), Err(MessageError::TooShort { .. })));
        assert!(matches!(Message::parse(raw(4, &[0])), Err(MessageError::TooShort { .. })));
    }

    #[test]
    fn parses_a_command_round_trip() {
        let payload = command_payload("publish", 5.0, &[Amf0Value::Null, "cam1?token=x".into(), "live".into()]);
        let Message::Command(command) = Message::parse(raw(20, &payload)).unwrap() else {
            panic!("not a command");
        };
        assert_eq!(command.name, "publish");
        assert_eq!(command.transaction_id, 5.0);
        assert_eq!(command.object, Amf0Value::Null);
        assert_eq!(command.arg_str(0), Some("cam1?token=x"));
        assert_eq!(command.arg_str(1), Some("live"));
    }

    #[test]
    fn amf3_command_skips_the_format_byte() {
        let mut payload = vec![0];
        payload.extend(command_payload("play", 0.0, &[Amf0Value::Null, "x".into()]));
        let Message::Command(command) = Message::parse(raw(17, &payload)).unwrap() else {
            panic!("not a command");
        };
        assert_eq!(command.name, "play");
    }

    #[test]
    fn command_without_name_is_an_error() {
        let mut payload = Vec::new();
        amf0::encode(&Amf0Value::Number(1.0), &mut payload);
        assert_eq!(Message::parse(raw(20, &payload)).unwrap_err(), MessageError::CommandWithoutName);
    }
}
