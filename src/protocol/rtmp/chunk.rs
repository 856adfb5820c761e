//! RTMP chunk stream: splitting messages into chunks and reassembling them (RTMP spec 5.3).
//!
//! A message travels as one or more chunks. Each chunk starts with a basic header (format +
//! chunk stream id, 1-3 bytes), a message header whose size depends on the format (11, 7, 3
//! or 0 bytes: formats 1-3 reuse fields of the previous chunk on the same chunk stream), an
//! optional 4-byte extended timestamp, then up to `chunk_size` bytes of payload.
//!
//! The decoder is streaming: it parses headers as soon as they are whole and copies payload
//! bytes straight into the message being assembled, so a large video frame is copied once
//! from the read buffer into its own `Bytes`, never re-buffered. Only a header split across
//! two reads is stashed (at most 18 bytes).
//!
//! The encoder never compresses headers: every message starts with a format 0 header and
//! continues with format 3 headers. That costs 11 bytes per message and makes every encoded
//! message independent of what was sent before on its chunk stream, which is what lets the
//! hub build a packet's chunked form once and hand it to every player.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

/// Largest message the decoder assembles by default (`max_rtmp_message_bytes`). The length
/// field is 24 bits (16 MiB); real video frames stay far below this, and the bound keeps a
/// hostile peer from making us reserve more.
pub const MAX_MESSAGE_LEN: u32 = 0x00FF_FFFF;

/// Chunk streams that may hold a partly assembled message at once, by default
/// (`max_rtmp_chunk_streams`). Encoders use a handful (2 for control, 3-8 for commands and
/// media); the bound caps per-connection memory.
pub const MAX_OPEN_CHUNK_STREAMS: usize = 64;

/// Bytes of incomplete messages one connection may hold, across all its chunk streams.
const MAX_BUFFERED_BYTES: usize = 32 << 20;

/// Space reserved for a message's first chunks before its payload proves the declared length:
/// a peer that declares 16 MiB and sends 10 bytes must not cost 16 MiB.
const FIRST_RESERVATION: usize = 64 * 1024;

/// Timestamps at or above this value move to the 4-byte extended timestamp field.
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;

/// Largest chunk header: 3-byte basic header + 11-byte message header + 4-byte extended timestamp.
const MAX_HEADER_LEN: usize = 18;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk stream {csid} starts with format {fmt} but has no previous header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("message of {0} bytes exceeds the limit")]
    MessageTooLarge(u32),
    #[error("too many chunk streams with incomplete messages")]
    TooManyChunkStreams,
    #[error("too many bytes buffered in incomplete messages")]
    TooMuchBuffered,
    #[error(
        "partial-message budget: {wanted} more bytes wanted on top of {holding} held, {left} left for all connections"
    )]
    PartialBudgetExhausted { wanted: usize, holding: usize, left: usize },
    #[error("message on chunk stream {csid} still incomplete after {age_ms} ms (slow body)")]
    SlowMessage { csid: u32, age_ms: u64 },
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
}

/// A whole message, as reassembled from its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// What the previous chunk header said on one chunk stream: formats 1-3 inherit from it.
#[derive(Debug, Default)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// Added for a format 3 chunk that starts a new message (spec 5.3.1.2.4).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last format 0-2 header used the extended field: format 3 chunks then carry
    /// it too (spec 5.3.1.3; ffmpeg and Flash both write it).
    extended: bool,
    /// The message being assembled; empty (no allocation) between messages.
    partial: BytesMut,
    /// Bytes reserved for `partial` (its capacity, drawn from the budget).
    reserved: usize,
    /// When the message being assembled got its first bytes (the caller's clock, ms).
    started_ms: u64,
}

/// Where the decoder is inside the byte stream.
#[derive(Debug)]
enum ReadState {
    /// Waiting for a whole chunk header; `stash` holds a header split across reads.
    Header,
    /// Copying up to `remaining` bytes of the current chunk into the message of `stream`.
    Payload { stream: usize, remaining: u32 },
}

/// Reassembles messages from the bytes a peer sends.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    state: ReadState,
    stash: Vec<u8>,
    /// Bytes reserved by all partial messages of this connection.
    reserved: usize,
    /// Shared with the other connections of a shard; `None`: only the per-connection cap.
    budget: Option<Arc<PartialBudget>>,
    /// The caller's clock (ms), as last told: stamps when a message starts.
    now_ms: u64,
    /// A declared length above this closes the connection.
    max_message_len: u32,
    /// Chunk streams with an incomplete message past this close the connection.
    max_chunk_streams: usize,
}

impl Drop for ChunkDecoder {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.reserved);
        }
    }
}

/// Bytes that incomplete messages may reserve, shared by every decoder of one shard (one per
/// shard, so uncontended; atomic only so that decoders stay `Send`): many connections each
/// trickling a large message must not add up without limit.
///
/// No connection may hold more than what is left after its draw: what is left then always
/// covers the largest holder, so connections that squat with big trickled messages are
/// refused first while everyone else's ordinary frames still fit.
#[derive(Debug)]
pub struct PartialBudget {
    left: AtomicUsize,
}

impl PartialBudget {
    pub fn new(bytes: usize) -> Arc<PartialBudget> {
        Arc::new(PartialBudget { left: AtomicUsize::new(bytes) })
    }

    pub fn left(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }

    fn take(&self, wanted: usize, holding: usize) -> Result<(), ChunkError> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (wanted <= left && holding + wanted <= left - wanted).then(|| left - wanted)
            })
            .map(drop)
            .map_err(|left| ChunkError::PartialBudgetExhausted { wanted, holding, left })
    }

    /// Counts `bytes` as used although not drawn through `take` (space reserved before the
    /// decoder joined the budget).
    fn charge(&self, bytes: usize) {
        let _ = self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left.saturating_sub(bytes)));
    }

    fn give_back(&self, bytes: usize) {
        self.left.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Result of trying to parse a chunk header from the front of some bytes.
enum Header {
    /// Not enough bytes yet; nothing consumed.
    Incomplete,
    /// Header parsed: its length and the chunk stream index it selected.
    Parsed { len: usize, stream: usize },
}

impl ChunkDecoder {
    /// A decoder with the default limits ([`MAX_MESSAGE_LEN`], [`MAX_OPEN_CHUNK_STREAMS`]).
    pub fn new() -> Self {
        Self::with_limits(MAX_MESSAGE_LEN, MAX_OPEN_CHUNK_STREAMS)
    }

    /// A decoder that refuses messages longer than `max_message_len` and more than
    /// `max_chunk_streams` chunk streams with an incomplete message.
    pub fn with_limits(max_message_len: u32, max_chunk_streams: usize) -> Self {
        ChunkDecoder {
            chunk_size: 128,
            streams: Vec::new(),
            state: ReadState::Header,
            stash: Vec::new(),
            reserved: 0,
            budget: None,
            now_ms: 0,
            max_message_len,
            max_chunk_streams,
        }
    }

    /// Makes partial messages draw their space from `budget` too.
    pub fn set_budget(&mut self, budget: Arc<PartialBudget>) {
        // Space reserved before now is counted from now on; it fits the per-connection cap.
        budget.charge(self.reserved);
        if let Some(old) = self.budget.replace(budget) {
            old.give_back(self.reserved);
        }
    }

    /// Tells the decoder the time (ms, any fixed origin) before it is given input.
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// When the oldest incomplete message got its first bytes, if one is incomplete.
    pub fn oldest_partial_ms(&self) -> Option<(u32, u64)> {
        self.streams.iter().filter(|s| s.reserved > 0).map(|s| (s.csid, s.started_ms)).min_by_key(|&(_, t)| t)
    }

    /// Bytes reserved by this connection's incomplete messages.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Frees a chunk stream's partial message and its reservation.
    fn release(&mut self, index: usize) {
        let stream = &mut self.streams[index];
        let freed = std::mem::take(&mut stream.reserved);
        stream.partial = BytesMut::new();
        self.reserved -= freed;
        if let Some(budget) = &self.budget {
            budget.give_back(freed);
        }
    }

    /// The peer's chunk size, changed by its Set Chunk Size message.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        // The spec's top bit must be zero; below 1 nothing could ever be decoded.
        if size == 0 || size > 0x7FFF_FFFF {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Drops the partly assembled message of a chunk stream (the Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(index) = self.streams.iter().position(|s| s.csid == csid) {
            self.release(index);
        }
    }

    /// Consumes bytes from `input`, stopping after the first whole message. Returns how many
    /// bytes were consumed and the message, if one completed. All of `input` is consumed
    /// when no message completes (a split header is stashed internally).
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<RawMessage>), ChunkError> {
        let mut consumed = 0;
        loop {
            match self.state {
                ReadState::Header => {
                    let available = &input[consumed..];
                    if available.is_empty() {
                        return Ok((consumed, None));
                    }
                    if self.stash.is_empty() {
                        match self.parse_header(available)? {
                            Header::Parsed { len, stream } => {
                                consumed += len;
                                self.start_payload(stream)?;
                            }
                            Header::Incomplete => {
                                self.stash.extend_from_slice(available);
                                return Ok((input.len(), None));
                            }
                        }
                    } else {
                        // Complete the stashed header with as few new bytes as needed.
                        let before = self.stash.len();
                        let take = available.len().min(MAX_HEADER_LEN - before);
                        self.stash.extend_from_slice(&available[..take]);
                        let stash = std::mem::take(&mut self.stash);
                        match self.parse_header(&stash)? {
                            Header::Parsed { len, stream } => {
                                consumed += len - before;
                                self.start_payload(stream)?;
                            }
                            Header::Incomplete => {
                                self.stash = stash;
                                return Ok((input.len(), None));
                            }
                        }
                    }
                }
                ReadState::Payload { stream, remaining } => {
                    let available = &input[consumed..];
                    let take = available.len().min(remaining as usize);
                    self.reserve(stream, take)?;
                    // Within the space just reserved: never reallocates.
                    self.streams[stream].partial.extend_from_slice(&available[..take]);
                    consumed += take;
                    let remaining = remaining - take as u32;
                    if remaining > 0 {
                        self.state = ReadState::Payload { stream, remaining };
                        return Ok((consumed, None));
                    }
                    self.state = ReadState::Header;
                    let chunk_stream = &mut self.streams[stream];
                    if chunk_stream.partial.len() as u32 == chunk_stream.length {
                        let payload = std::mem::take(&mut chunk_stream.partial).freeze();
                        self.release(stream);
                        let chunk_stream = &self.streams[stream];
                        let message = RawMessage {
                            csid: chunk_stream.csid,
                            timestamp: chunk_stream.timestamp,
                            type_id: chunk_stream.type_id,
                            stream_id: chunk_stream.stream_id,
                            payload,
                        };
                        return Ok((consumed, Some(message)));
                    }
                }
            }
        }
    }

    /// After a header: how much payload this chunk carries. A zero-length message completes
    /// at once (it has no payload chunk).
    fn start_payload(&mut self, stream: usize) -> Result<(), ChunkError> {
        let chunk_stream = &self.streams[stream];
        let left = chunk_stream.length - chunk_stream.partial.len() as u32;
        let remaining = left.min(self.chunk_size);
        self.state = ReadState::Payload { stream, remaining };
        Ok(())
    }

    /// Makes room for `take` more payload bytes of a chunk stream's message. Space grows by
    /// doubling as bytes arrive, never to the declared length (or the chunk size) up front: a
    /// peer that declares 16 MiB and sends 10 bytes must not cost 16 MiB. Growth is drawn from
    /// this connection's cap and the shard's budget first.
    fn reserve(&mut self, stream: usize, take: usize) -> Result<(), ChunkError> {
        let chunk_stream = &self.streams[stream];
        let needed = chunk_stream.partial.len() + take;
        if take == 0 || needed <= chunk_stream.reserved {
            return Ok(());
        }
        let length = chunk_stream.length as usize;
        let grown = needed.max(chunk_stream.reserved * 2).max(FIRST_RESERVATION).min(length);
        let wanted = grown - chunk_stream.reserved;
        if self.reserved + wanted > MAX_BUFFERED_BYTES {
            return Err(ChunkError::TooMuchBuffered);
        }
        if let Some(budget) = &self.budget {
            budget.take(wanted, self.reserved)?;
        }
        self.reserved += wanted;
        let now_ms = self.now_ms;
        let chunk_stream = &mut self.streams[stream];
        if chunk_stream.reserved == 0 {
            chunk_stream.started_ms = now_ms;
        }
        let mut partial = BytesMut::with_capacity(grown);
        partial.extend_from_slice(&chunk_stream.partial);
        chunk_stream.partial = partial;
        chunk_stream.reserved = grown;
        Ok(())
    }

    /// Parses one chunk header from the front of `bytes` and updates its chunk stream.
    fn parse_header(&mut self, bytes: &[u8]) -> Result<Header, ChunkError> {
        let Some(&first) = bytes.first() else {
            return Ok(Header::Incomplete);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3F {
            0 => match bytes.get(1) {
                Some(&b) => (64 + b as u32, 2),
                None => return Ok(Header::Incomplete),
            },
            1 => match (bytes.get(1), bytes.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + lo as u32 + 256 * hi as u32, 3),
                _ => return Ok(Header::Incomplete),
            },
            id => (id as u32, 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        let Some(fields) = bytes.get(pos..pos + header_len) else {
            return Ok(Header::Incomplete);
        };
        pos += header_len;

        let index = match self.streams.iter().position(|s| s.csid == csid) {
            Some(index) => index,
            None if fmt != 0 => return Err(ChunkError::NoPreviousHeader { csid, fmt }),
            None => {
                if self.streams.len() >= self.max_chunk_streams {
                    // Reuse a chunk stream that holds no partial message before refusing.
                    match self.streams.iter().position(|s| s.reserved == 0) {
                        Some(idle) => {
                            self.streams.swap_remove(idle);
                        }
                        None => return Err(ChunkError::TooManyChunkStreams),
                    }
                }
                self.streams.push(ChunkStream { csid, ..ChunkStream::default() });
                self.streams.len() - 1
            }
        };
        let stream = &self.streams[index];
        let continuing = !stream.partial.is_empty();

        let mut timestamp_field = 0;
        let mut length = stream.length;
        let mut type_id = stream.type_id;
        let mut stream_id = stream.stream_id;
        if fmt <= 2 {
            timestamp_field = u24(&fields[0..3]);
        }
        if fmt <= 1 {
            length = u24(&fields[3..6]);
            type_id = fields[6];
        }
        if fmt == 0 {
            stream_id = u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]);
        }
        let extended = if fmt <= 2 { timestamp_field == EXTENDED_TIMESTAMP } else { stream.extended };
        if extended {
            let Some(ext) = bytes.get(pos..pos + 4) else {
                return Ok(Header::Incomplete);
            };
            pos += 4;
            if fmt <= 2 {
                timestamp_field = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            }
        }
        if length > self.max_message_len {
            return Err(ChunkError::MessageTooLarge(length));
        }

        // Everything needed is here: commit the header to the chunk stream.
        let stream = &mut self.streams[index];
        if fmt <= 2 {
            stream.extended = extended;
        }
        match fmt {
            0 => {
                stream.timestamp = timestamp_field;
                stream.delta = 0;
            }
            1 | 2 => {
                stream.delta = timestamp_field;
                stream.timestamp = stream.timestamp.wrapping_add(timestamp_field);
            }
            _ if !continuing => stream.timestamp = stream.timestamp.wrapping_add(stream.delta),
            _ => {}
        }
        if continuing && fmt <= 1 && length != stream.length {
            // A new length mid-message: the old partial message can never complete.
            self.release(index);
        }
        let stream = &mut self.streams[index];
        stream.length = length;
        stream.type_id = type_id;
        stream.stream_id = stream_id;
        Ok(Header::Parsed { len: pos, stream: index })
    }
}

fn u24(b: &[u8]) -> u32 {
    (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32
}

/// Appends a chunk basic header (format + chunk stream id) to `out`.
fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8(fmt << 6 | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid.saturating_sub(64).min(0xFFFF);
            out.put_u8(fmt << 6 | 1);
            out.put_u16_le(id as u16);
        }
    }
}

/// Appends the format 0 header that starts a message: everything a decoder needs, relative to
/// nothing sent before.
pub fn put_message_header(out: &mut impl BufMut, csid: u32, timestamp: u32, length: u32, type_id: u8, stream_id: u32) {
    put_basic_header(out, 0, csid);
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    let field = if extended { EXTENDED_TIMESTAMP } else { timestamp };
    out.put_uint(field as u64, 3);
    out.put_uint(length as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
}

/// Appends the payload of a message, cut into `chunk_size` pieces with a format 3 header
/// between them. `extended_timestamp` is the timestamp when the message header used the
/// extended field (format 3 headers must then repeat it).
pub fn put_chunked_payload(
    out: &mut impl BufMut,
    csid: u32,
    payload: &[u8],
    chunk_size: u32,
    extended_timestamp: Option<u32>,
) {
    let chunk_size = chunk_size.max(1) as usize;
    for (i, piece) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            put_basic_header(out, 3, csid);
            if let Some(ts) = extended_timestamp {
                out.put_u32(ts);
            }
        }
        out.put_slice(piece);
    }
}

/// Length of `put_chunked_payload`'s output, to size buffers exactly.
pub fn chunked_payload_len(csid: u32, payload_len: usize, chunk_size: u32, extended: bool) -> usize {
    let pieces = payload_len.div_ceil(chunk_size.max(1) as usize);
    let basic = match csid {
        2..=63 => 1,
        64..=319 => 2,
        _ => 3,
    };
    let per_continuation = basic + if extended { 4 } else { 0 };
    payload_len + pieces.saturating_sub(1) * per_continuation
}

/// Builds the shared, chunked form of a payload once, for every player of a packet.
pub fn chunked_payload(csid: u32, payload: &[u8], chunk_size: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(chunked_payload_len(csid, payload.len(), chunk_size, false));
    put_chunked_payload(&mut out, csid, payload, chunk_size, None);
    out.freeze()
}

/// Writes a whole message (header and chunked payload) to `out`.
pub fn encode_message(out: &mut Vec<u8>, csid: u32, message: &RawMessageRef<'_>, chunk_size: u32) {
    put_message_header(out, csid, message.timestamp, message.payload.len() as u32, message.type_id, message.stream_id);
    let extended = (message.timestamp >= EXTENDED_TIMESTAMP).then_some(message.timestamp);
    put_chunked_payload(out, csid, message.payload, chunk_size, extended);
}

/// A message to encode, borrowing its payload.
#[derive(Debug, Clone, Copy)]
pub struct RawMessageRef<'a> {
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: &'a [u8],
}

/// Counts received bytes and says when an Acknowledgement is due (spec 5.4.3): every time
/// `window` more bytes arrived than at the last one. Both connection sides use it.
#[derive(Debug, Default)]
pub struct Acknowledger {
    received: u64,
    last_ack: u64,
    /// 0 means no acknowledgements (the peer announced no window).
    window: u32,
}

impl Acknowledger {
    pub fn new(window: u32) -> Acknowledger {
        Acknowledger { window, ..Acknowledger::default() }
    }

    /// The peer's Window Acknowledgement Size.
    pub fn set_window(&mut self, window: u32) {
        self.window = window;
    }

    /// Records `n` bytes received; returns the sequence number to acknowledge, if one is due.
    /// It wraps at 32 bits by design of the field.
    pub fn received(&mut self, n: usize) -> Option<u32> {
        self.received += n as u64;
        if self.window == 0 || self.received - self.last_ack < u64::from(self.window) {
            return None;
        }
        self.last_ack = self.received;
        Some(self.received as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut ChunkDecoder, mut input: &[u8]) -> Vec<RawMessage> {
        let mut messages = Vec::new();
        while !input.is_empty() {
            let (used, message) = decoder.decode(input).expect("valid chunks");
            input = &input[used..];
            messages.extend(message);
        }
        messages
    }

    #[test]
    fn decodes_a_single_chunk_message_from_fixture() {
        // fmt 0, csid 3, ts 1000, len 4, type 20, stream 0, payload.
        let bytes = [0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x04, 0x14, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut decoder = ChunkDecoder::new();
        let messages = decode_all(&mut decoder, &bytes);
        assert_eq!(
            messages,
            vec![RawMessage {
                csid: 3,
                timestamp: 1000,
                type_id: 20,
                stream_id: 0,
                payload: Bytes::from_static(&[1, 2, 3, 4])
            }]
        );
    }

    #[test]
    fn follows_the_spec_example_of_compressed_headers() {
        // Spec 5.3.2.1: audio on csid 3, type 0 then type 2 then type 3 (deltas of 33 ms).
        let mut bytes = vec![0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x02, 0x08, 0x01, 0, 0, 0, 0xAA, 0xBB];
        bytes.extend([0x83, 0x00, 0x00, 0x21, 0xCC, 0xDD]); // fmt 2, delta 33
        bytes.extend([0xC3, 0xEE, 0xFF]); // fmt 3: same length, timestamp += 33
        let mut decoder = ChunkDecoder::new();
        let messages = decode_all(&mut decoder, &bytes);
        let stamps: Vec<u32> = messages.iter().map(|m| m.timestamp).collect();
        assert_eq!(stamps, vec![1000, 1033, 1066]);
        assert!(messages.iter().all(|m| m.type_id == 8 && m.stream_id == 1));
        assert_eq!(&messages[2].payload[..], &[0xEE, 0xFF]);
    }

    #[test]
    fn round_trips_large_messages_across_chunk_sizes_and_split_reads() {
        for chunk_size in [1u32, 128, 4096, 60000] {
            for timestamp in [0u32, 40, 0x00FF_FFFE, 0x00FF_FFFF, 0x0123_4567] {
                let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
                let mut wire = Vec::new();
                let message = RawMessageRef { timestamp, type_id: 9, stream_id: 1, payload: &payload };
                encode_message(&mut wire, 6, &message, chunk_size);
                encode_message(&mut wire, 6, &message, chunk_size);
                for split in [1usize, 7, 17, 4096, wire.len()] {
                    let mut decoder = ChunkDecoder::new();
                    decoder.set_chunk_size(chunk_size).unwrap();
                    let mut messages = Vec::new();
                    for piece in wire.chunks(split) {
                        messages.extend(decode_all(&mut decoder, piece));
                    }
                    assert_eq!(messages.len(), 2, "chunk size {chunk_size}, split {split}");
                    for m in &messages {
                        assert_eq!(m.timestamp, timestamp);
                        assert_eq!(&m.payload[..], &payload[..]);
                    }
                }
            }
        }
    }

    #[test]
    fn chunked_payload_len_matches_output() {
        for (csid, len, size, ext) in
            [(6, 0, 128, false), (6, 1, 128, false), (6, 129, 128, true), (300, 9000, 100, true), (70, 256, 128, false)]
        {
            let payload = vec![0u8; len];
            let mut out = Vec::new();
            put_chunked_payload(&mut out, csid, &payload, size, ext.then_some(0x0100_0000));
            assert_eq!(out.len(), chunked_payload_len(csid, len, size, ext));
        }
    }

    #[test]
    fn two_and_three_byte_chunk_stream_ids_round_trip() {
        for csid in [64u32, 319, 320, 65599] {
            let mut wire = Vec::new();
            let message = RawMessageRef { timestamp: 5, type_id: 8, stream_id: 1, payload: &[9; 300] };
            encode_message(&mut wire, csid, &message, 128);
            let messages = decode_all(&mut ChunkDecoder::new(), &wire);
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].csid, csid);
        }
    }

    #[test]
    fn format_one_without_previous_header_is_an_error() {
        let mut decoder = ChunkDecoder::new();
        let err = decoder.decode(&[0x43, 0, 0, 0, 0, 0, 1, 8, 0]).unwrap_err();
        assert_eq!(err, ChunkError::NoPreviousHeader { csid: 3, fmt: 1 });
    }

    #[test]
    fn a_partial_header_is_not_an_error() {
        let bytes = [0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x04, 0x14, 0, 0, 0, 0, 1, 2, 3, 4];
        for cut in 0..bytes.len() {
            let mut decoder = ChunkDecoder::new();
            let (used, message) = decoder.decode(&bytes[..cut]).unwrap();
            assert_eq!(used, cut);
            assert!(message.is_none());
            let messages = decode_all(&mut decoder, &bytes[cut..]);
            assert_eq!(messages.len(), 1, "cut at {cut}");
        }
    }

    #[test]
    fn too_many_open_chunk_streams_is_an_error() {
        let mut decoder = ChunkDecoder::new();
        let mut result = Ok((0, None));
        for csid in 3..200u8 {
            // Each declares a 100-byte message and sends 1 byte of it (chunk size 1).
            decoder.set_chunk_size(1).unwrap();
            let header = [csid.min(63), 0, 0, 0, 0, 0, 100, 8, 0, 0, 0, 0, 0xAB];
            let header = if csid >= 64 { [&[0u8, csid - 64][..], &header[1..]].concat() } else { header.to_vec() };
            result = decoder.decode(&header);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.unwrap_err(), ChunkError::TooManyChunkStreams);
    }

    #[test]
    fn a_lowered_message_limit_refuses_a_longer_declared_length_before_any_payload() {
        let mut decoder = ChunkDecoder::with_limits(4096, MAX_OPEN_CHUNK_STREAMS);
        decoder.set_chunk_size(0x7FFF_FFFF).unwrap();
        assert_eq!(feed(&mut decoder, &large_message_start(4096, 4096)).unwrap().len(), 1);
        // The header alone is refused: nothing of the 4097 bytes is waited for or reserved.
        assert_eq!(feed(&mut decoder, &large_message_start(4097, 0)), Err(ChunkError::MessageTooLarge(4097)));
        assert_eq!(decoder.reserved(), 0);
    }

    #[test]
    fn a_lowered_chunk_stream_limit_refuses_the_next_incomplete_message() {
        let mut decoder = ChunkDecoder::with_limits(MAX_MESSAGE_LEN, 2);
        decoder.set_chunk_size(1).unwrap();
        // Chunk streams 3 and 4 each start a 100-byte message and send 1 byte of it.
        for csid in [3u8, 4] {
            decoder.decode(&[csid, 0, 0, 0, 0, 0, 100, 8, 0, 0, 0, 0, 0xAB]).unwrap();
        }
        assert_eq!(decoder.decode(&[5, 0, 0, 0, 0, 0, 100, 8, 0, 0, 0, 0, 0xAB]), Err(ChunkError::TooManyChunkStreams));
        // A chunk stream whose message completed is reused instead.
        let mut decoder = ChunkDecoder::with_limits(MAX_MESSAGE_LEN, 2);
        for csid in [3u8, 4, 5, 6] {
            let (_, message) = decoder.decode(&[csid, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0xAB]).unwrap();
            assert!(message.is_some(), "chunk stream {csid}");
        }
    }

    #[test]
    fn acknowledges_once_per_window() {
        let mut acks = Acknowledger::new(100);
        assert_eq!(acks.received(60), None);
        assert_eq!(acks.received(60), Some(120));
        assert_eq!(acks.received(99), None);
        assert_eq!(acks.received(1), Some(220));
        assert_eq!(Acknowledger::default().received(1 << 20), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let mut decoder = ChunkDecoder::new();
            let mut input = &bytes[..];
            while let Ok((used, _)) = decoder.decode(input) {
                if used == 0 || used >= input.len() {
                    break;
                }
                input = &input[used..];
            }
        }
    }

    /// The start of a video message on chunk stream 6 declaring `declared` bytes, as one chunk
    /// (the chunk size must be large), with `sent` payload bytes.
    fn large_message_start(declared: u32, sent: usize) -> Vec<u8> {
        let mut bytes = vec![6, 0, 0, 0];
        bytes.extend_from_slice(&declared.to_be_bytes()[1..]);
        bytes.extend_from_slice(&[9, 1, 0, 0, 0]);
        bytes.extend(std::iter::repeat_n(0x17u8, sent));
        bytes
    }

    fn feed(decoder: &mut ChunkDecoder, mut input: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut messages = Vec::new();
        while !input.is_empty() {
            let (used, message) = decoder.decode(input)?;
            input = &input[used..];
            messages.extend(message);
        }
        Ok(messages)
    }

    fn big_chunks(budget: &Arc<PartialBudget>) -> ChunkDecoder {
        let mut decoder = ChunkDecoder::new();
        decoder.set_chunk_size(0x7FFF_FFFF).unwrap();
        decoder.set_budget(budget.clone());
        decoder
    }

    #[test]
    fn reserves_space_as_the_payload_arrives_not_as_declared() {
        let budget = PartialBudget::new(64 << 20);
        let mut decoder = big_chunks(&budget);
        feed(&mut decoder, &large_message_start(MAX_MESSAGE_LEN, 10)).unwrap();
        assert_eq!(decoder.reserved(), FIRST_RESERVATION);
        feed(&mut decoder, &vec![0; 200_000]).unwrap();
        // Grown by doubling to cover what arrived, far below the declared 16 MiB.
        assert!(decoder.reserved() >= 200_010 && decoder.reserved() <= 2 * 200_010, "{}", decoder.reserved());
        assert_eq!(budget.left(), (64 << 20) - decoder.reserved());
    }

    #[test]
    fn a_completed_aborted_or_dropped_message_gives_its_space_back() {
        let budget = PartialBudget::new(64 << 20);
        let mut decoder = big_chunks(&budget);
        let messages = feed(&mut decoder, &large_message_start(100_000, 100_000)).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!((decoder.reserved(), budget.left()), (0, 64 << 20));
        feed(&mut decoder, &large_message_start(100_000, 50_000)).unwrap();
        assert!(budget.left() < 64 << 20);
        decoder.abort(6);
        assert_eq!((decoder.reserved(), budget.left()), (0, 64 << 20));
        feed(&mut decoder, &large_message_start(100_000, 50_000)).unwrap();
        drop(decoder);
        assert_eq!(budget.left(), 64 << 20);
    }

    #[test]
    fn connections_share_the_budget_and_a_squatter_is_refused_first() {
        let budget = PartialBudget::new(32 << 20);
        let mut squatters = Vec::new();
        let mut refused = 0;
        for _ in 0..10 {
            let mut decoder = big_chunks(&budget);
            match feed(&mut decoder, &large_message_start(MAX_MESSAGE_LEN, 4 << 20)) {
                Ok(_) => squatters.push(decoder),
                Err(ChunkError::PartialBudgetExhausted { .. }) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert!(refused > 0 && !squatters.is_empty(), "{refused} refused");
        // What is left always covers the largest holder: an ordinary frame still fits.
        let largest = squatters.iter().map(ChunkDecoder::reserved).max().unwrap();
        assert!(budget.left() >= largest, "left {} < largest {largest}", budget.left());
        let mut publisher = ChunkDecoder::new();
        publisher.set_budget(budget.clone());
        let frame = RawMessageRef { timestamp: 0, type_id: 9, stream_id: 1, payload: &[7; 50_000] };
        let mut wire = Vec::new();
        encode_message(&mut wire, 6, &frame, 128);
        assert_eq!(feed(&mut publisher, &wire).unwrap().len(), 1);
    }

    #[test]
    fn stamps_when_a_message_started() {
        let budget = PartialBudget::new(64 << 20);
        let mut decoder = big_chunks(&budget);
        assert_eq!(decoder.oldest_partial_ms(), None);
        decoder.set_time(1_000);
        feed(&mut decoder, &large_message_start(100_000, 10)).unwrap();
        decoder.set_time(5_000);
        feed(&mut decoder, &[0; 10]).unwrap();
        assert_eq!(decoder.oldest_partial_ms(), Some((6, 1_000)));
        feed(&mut decoder, &vec![0; 100_000 - 20]).unwrap();
        assert_eq!(decoder.oldest_partial_ms(), None);
    }
}
