//! HTTP-FLV's side of a player's output, over plain HTTP or in WebSocket binary frames: the
//! FLV tags of `flv_out.rs`, the FLV file header before the first of them, and the end of the
//! stream when its publisher leaves.
//!
//! The file header's audio/video flags come from the first write, which carries what a new
//! player is sent first (metadata, sequence headers, the cached GOP): flv.js and mpegts.js
//! wait for every track the flags announce. A write with neither (metadata alone) announces
//! both, as most servers do.
//!
//! Over WebSocket a write is one binary frame: its header goes before the write's media
//! buffers once they are all appended, so the per-packet cost stays the FLV tag header. The
//! client's pings are answered first in the write, outside the media frame; a close goes last.
//!
//! A publisher leaving ends the response (the last PreviousTagSize, then a WebSocket close):
//! an MSE player (mpegts.js, flv.js) cannot take a second FLV header in one stream, and
//! reconnects instead. The session hears of it through [`OutputShared::stream_ended`].

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::flv_out::FlvFraming;
use super::player_writer::Framing;
use crate::hub::{Packet, PacketKind};
use crate::protocol::flv::write_file_header;
use crate::protocol::websocket::{self, OPCODE_BINARY};

/// What the session and the writer's framing share.
#[derive(Debug, Default)]
pub struct OutputShared {
    /// Signalled (once) when the framing ended the stream: the session closes the connection
    /// when what was handed to the writer is sent.
    pub stream_ended: Notify,
    /// WebSocket control frames the session queued for the writer.
    control: RefCell<Control>,
}

#[derive(Debug, Default)]
struct Control {
    /// The pong answering the latest ping: RFC 6455 lets a server answer only the most recent,
    /// so a client pinging without reading holds one frame, not a queue.
    pong: Option<Bytes>,
    /// A close frame, the last thing the connection sends.
    close: Option<Bytes>,
}

impl OutputShared {
    /// Queues a pong for the writer (which the caller wakes).
    pub fn pong(&self, frame: Vec<u8>) {
        self.control.borrow_mut().pong = Some(frame.into());
    }

    /// Whether control frames wait for the writer.
    pub fn has_control(&self) -> bool {
        let control = self.control.borrow();
        control.pong.is_some() || control.close.is_some()
    }

    /// Queues a close frame for the writer: after it, no more media.
    pub fn close(&self, frame: Vec<u8>) {
        self.control.borrow_mut().close.get_or_insert(frame.into());
    }
}

/// An HTTP-FLV player's framing.
#[derive(Debug)]
pub struct HttpFlvFraming {
    flv: FlvFraming,
    shared: Rc<OutputShared>,
    websocket: bool,
    header_sent: bool,
    /// Tracks seen before the file header is sent: its flags.
    saw_audio: bool,
    saw_video: bool,
    /// Buffers `take_output` put at the start of the write being built (pongs): they stay
    /// outside the media frame.
    control_bufs: usize,
    /// The stream ended or a close frame went out: nothing more is sent.
    ended: bool,
}

impl HttpFlvFraming {
    pub fn new(shared: Rc<OutputShared>, websocket: bool) -> HttpFlvFraming {
        HttpFlvFraming {
            flv: FlvFraming::default(),
            shared,
            websocket,
            header_sent: false,
            saw_audio: false,
            saw_video: false,
            control_bufs: 0,
            ended: false,
        }
    }

    fn file_header(&mut self) -> Bytes {
        let (audio, video) = match (self.saw_audio, self.saw_video) {
            (false, false) => (true, true),
            seen => seen,
        };
        let mut header = Vec::with_capacity(9);
        write_file_header(audio, video, &mut header);
        // write_file_header ends with PreviousTagSize0; the first tag's header carries it.
        header.truncate(9);
        Bytes::from(header)
    }
}

impl Framing for HttpFlvFraming {
    fn take_output(&mut self, bufs: &mut Vec<Bytes>) {
        let before = bufs.len();
        if let Some(pong) = self.shared.control.borrow_mut().pong.take()
            && self.websocket
        {
            bufs.push(pong);
        }
        self.control_bufs = bufs.len() - before;
    }

    fn append_packet(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, packet: &Packet) {
        if self.ended {
            return;
        }
        if !self.header_sent {
            self.saw_audio |= packet.kind == PacketKind::Audio;
            self.saw_video |= packet.kind == PacketKind::Video;
        }
        self.flv.append_packet(bufs, headers, packet);
    }

    fn unpublished(&mut self, bufs: &mut Vec<Bytes>) {
        if self.ended {
            return;
        }
        self.ended = true;
        bufs.extend(self.flv.take_trailer());
        if self.websocket {
            self.shared.close(websocket::close_frame(websocket::CLOSE_NORMAL, "stream ended"));
        }
        self.shared.stream_ended.notify_one();
    }

    fn published(&mut self, bufs: &mut Vec<Bytes>) {
        if !self.ended {
            self.flv.published(bufs);
        }
    }

    fn end_write(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, start: usize) {
        let media_start = (start + std::mem::take(&mut self.control_bufs)).min(bufs.len());
        // The last tag's PreviousTagSize, inside the WebSocket frame with the tags.
        self.flv.end_write(bufs, headers, media_start);
        if !self.header_sent && bufs.len() > media_start {
            let header = self.file_header();
            bufs.insert(media_start, header);
            self.header_sent = true;
        }
        if self.websocket {
            let len: usize = bufs[media_start..].iter().map(Bytes::len).sum();
            if len > 0 {
                headers.reserve(websocket::MAX_HEADER_LEN);
                websocket::encode_header(OPCODE_BINARY, len as u64, headers);
                bufs.insert(media_start, headers.split().freeze());
            }
            if let Some(close) = self.shared.control.borrow_mut().close.take() {
                bufs.push(close);
                self.ended = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: PacketKind, timestamp: u32, body: &'static [u8]) -> Rc<Packet> {
        Rc::new(Packet::new(kind, timestamp, Bytes::from_static(body), 4096).expect("a valid tag body"))
    }

    /// One write as the player writer makes it.
    fn write(framing: &mut HttpFlvFraming, packets: &[&Rc<Packet>]) -> Vec<u8> {
        let (mut bufs, mut headers) = (Vec::new(), BytesMut::new());
        framing.take_output(&mut bufs);
        for p in packets {
            framing.append_packet(&mut bufs, &mut headers, p);
        }
        framing.end_write(&mut bufs, &mut headers, 0);
        bufs.concat()
    }

    #[test]
    fn the_first_write_starts_with_a_file_header_of_the_tracks_it_carries() {
        let shared = Rc::new(OutputShared::default());
        let mut framing = HttpFlvFraming::new(shared, false);
        let video = packet(PacketKind::Video, 0, &[0x17, 0, 0, 0, 0, 1]);
        let first = write(&mut framing, &[&video]);
        // Video only (flags 0x01), header length 9, then PreviousTagSize0 and the tag.
        assert_eq!(&first[..9], b"FLV\x01\x01\x00\x00\x00\x09");
        assert_eq!(&first[9..13], &[0, 0, 0, 0]);
        assert_eq!(first[13], 9);
        assert_eq!(&first[first.len() - 4..], &[0, 0, 0, 17], "the write ends with its tag's size");
        let second = write(&mut framing, &[&packet(PacketKind::Audio, 40, &[0xAF, 1, 3])]);
        assert_eq!(second[0], 8, "no second file header, no size before the tag: it went out already");
    }

    #[test]
    fn metadata_alone_announces_both_tracks() {
        let mut framing = HttpFlvFraming::new(Rc::new(OutputShared::default()), false);
        let metadata = packet(PacketKind::Data { metadata: true }, 0, &[2, 0, 10]);
        assert_eq!(&write(&mut framing, &[&metadata])[..5], b"FLV\x01\x05");
        assert!(write(&mut HttpFlvFraming::new(Rc::new(OutputShared::default()), false), &[]).is_empty());
    }

    #[test]
    fn a_websocket_write_is_one_binary_frame_after_the_pong() {
        let shared = Rc::new(OutputShared::default());
        let mut framing = HttpFlvFraming::new(shared.clone(), true);
        shared.pong(websocket::pong_frame(b"hi"));
        let audio = packet(PacketKind::Audio, 0, &[0xAF, 1, 3]);
        let out = write(&mut framing, &[&audio, &audio]);
        assert_eq!(&out[..4], &[0x8A, 2, b'h', b'i']);
        // 9 (file header) + 2 x (15 + 3) + 4 (the last tag's size) = 49 bytes of media in one
        // frame.
        assert_eq!(&out[4..6], &[0x82, 49]);
        assert_eq!(out.len(), 6 + 49);
        assert_eq!(&out[6..11], b"FLV\x01\x04");
    }

    #[test]
    fn the_publisher_leaving_ends_the_stream_with_the_last_tag_size_and_a_close() {
        let shared = Rc::new(OutputShared::default());
        let mut framing = HttpFlvFraming::new(shared.clone(), true);
        let audio = packet(PacketKind::Audio, 0, &[0xAF, 1, 3]);
        write(&mut framing, &[&audio]);
        let (mut bufs, mut headers) = (Vec::new(), BytesMut::new());
        framing.unpublished(&mut bufs);
        framing.published(&mut bufs);
        framing.append_packet(&mut bufs, &mut headers, &audio);
        framing.end_write(&mut bufs, &mut headers, 0);
        let out = bufs.concat();
        // The first write ended with its tag's size: only the close, nothing after it.
        assert_eq!(&out[..4], &[0x88, 14, 0x03, 0xE8]);
        assert_eq!(out.len(), 16);
        // The session was told; a permit waits for it.
        let ended = shared.stream_ended.notified();
        tokio::pin!(ended);
        assert!(futures_ready(ended.as_mut()));
    }

    /// Polls a future once.
    fn futures_ready<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        future.poll(&mut std::task::Context::from_waker(waker)).is_ready()
    }
}
