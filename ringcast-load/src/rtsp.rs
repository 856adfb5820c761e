//! An RTSP player over TCP (interleaved): DESCRIBE, SETUP of every track on channels 2n and
//! 2n+1, PLAY, then RTP frames depacketized with the library's depacketizers into FLV bodies,
//! each handed to [`PlayerRecord::on_media`] like an RTMP message, so every frame is counted
//! and checked as for the other protocols. The PLAY reply stands for play-start.

use std::sync::atomic::Ordering;

use ringcast::protocol::flv::MediaKind;
use ringcast::protocol::rtp::{self, Depacketizer, MediaFrame, RtpPacket, interleaved};
use ringcast::protocol::sdp;
use tokio::time::Instant;

use crate::media::{TYPE_AUDIO, TYPE_VIDEO, wall_us};
use crate::play::{Outcome, Player};
use crate::rtmp::{Failure, ReadBuf};

/// Input buffered while a reply or frame is incomplete: a reply head and SDP, or one frame.
const MAX_PENDING: usize = 256 * 1024;

/// A reply read off the connection.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    session: Option<String>,
    body: Vec<u8>,
}

/// What arrives on the connection: replies and interleaved frames, in order.
#[derive(Default)]
struct Incoming {
    pending: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    Reply(Reply),
    Frame { channel: u8, start: usize, end: usize },
}

impl Incoming {
    fn feed(&mut self, input: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(input);
        if self.pending.len() > MAX_PENDING {
            return Err("more than 256 KiB without a whole reply or frame".into());
        }
        Ok(())
    }

    /// The next whole item at the front, if any; `consume` drops it after use.
    fn next(&self) -> Result<Option<(Item, usize)>, String> {
        if self.pending.first() == Some(&interleaved::MAGIC) {
            let Some(frame) = interleaved::check(&self.pending) else { return Ok(None) };
            if self.pending.len() < frame.total_len() {
                return Ok(None);
            }
            let start = interleaved::HEADER_LEN;
            let item = Item::Frame { channel: frame.channel, start, end: start + frame.len };
            return Ok(Some((item, frame.total_len())));
        }
        let Some(head_end) = self.pending.windows(4).position(|window| window == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&self.pending[..head_end]).map_err(|_| "reply head not UTF-8")?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.strip_prefix("RTSP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("not an RTSP reply: {:?}", head.lines().next().unwrap_or_default()))?;
        let (mut length, mut session) = (0usize, None);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("Content-Length") {
                length = value.parse().map_err(|_| "bad Content-Length")?;
            } else if name.eq_ignore_ascii_case("Session") {
                session = value.split(';').next().map(str::to_owned);
            }
        }
        let total = head_end + 4 + length;
        if self.pending.len() < total {
            return Ok(None);
        }
        let body = self.pending[head_end + 4..total].to_vec();
        Ok(Some((Item::Reply(Reply { status, session, body }), total)))
    }

    fn consume(&mut self, len: usize) {
        self.pending.drain(..len);
    }
}

fn request(method: &str, url: &str, cseq: u32, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\nUser-Agent: ringcast-load\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub async fn play(player: Player<'_>) -> Result<(), Outcome> {
    let Player { setup, stream, record, lag, shared, stop, .. } = player;
    let began = player.begin();
    let limit = setup.timeout;
    let target = &setup.target;
    let Some(conn) = player.connect().await? else { return Ok(()) };
    let url = format!("rtsp://{}/{}/{}{}", target.authority, target.app, target.stream(stream), target.query);
    let mut reader = ReadBuf::new(crate::rtmp::HANDSHAKE_READ_BUFFER);
    let mut incoming = Incoming::default();
    let deadline = Instant::now() + limit;
    let mut cseq = 0;

    // One request at a time until PLAY is answered.
    let mut exchange = async |request: Vec<u8>, step: &'static str| -> Result<Reply, Outcome> {
        conn.write_all(request).await.map_err(|e| Outcome::Failed(Failure::io(step, &e)))?;
        loop {
            match incoming.next().map_err(|reason| Outcome::Failed(Failure::new(step, reason)))? {
                Some((Item::Reply(reply), len)) => {
                    incoming.consume(len);
                    if reply.status != 200 {
                        return Err(Outcome::Failed(Failure::new(step, format!("RTSP {}", reply.status))));
                    }
                    return Ok(reply);
                }
                Some((Item::Frame { .. }, len)) => incoming.consume(len),
                None => {}
            }
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, reader.read(&conn)) => read,
                _ = stop.wait() => return Err(Outcome::Failed(Failure::closed("stopped"))),
            };
            let input = match read {
                Err(_) => return Err(Outcome::Failed(Failure::timeout(step, limit))),
                Ok(Err(e)) => return Err(Outcome::Failed(Failure::io(step, &e))),
                Ok(Ok([])) => return Err(Outcome::Failed(Failure::closed(step))),
                Ok(Ok(input)) => input,
            };
            record.borrow_mut().bytes += input.len() as u64;
            shared.bytes_in.fetch_add(input.len() as u64, Ordering::Relaxed);
            incoming.feed(input).map_err(|reason| Outcome::Failed(Failure::new(step, reason)))?;
        }
    };

    cseq += 1;
    let described = exchange(request("DESCRIBE", &url, cseq, &[("Accept", "application/sdp")]), "describe").await?;
    let announced =
        sdp::parse(&described.body).map_err(|e| Outcome::Failed(Failure::new("describe", e.to_string())))?;
    let mut session: Option<String> = None;
    let mut kinds = Vec::new();
    let mut depacketizers = Vec::new();
    for (index, track) in announced.tracks.iter().enumerate() {
        let channel = index * 2;
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", channel, channel + 1);
        let track_url = format!("{url}/{}", track.control);
        let mut headers = vec![("Transport", transport.as_str())];
        if let Some(session) = &session {
            headers.push(("Session", session.as_str()));
        }
        cseq += 1;
        let reply = exchange(request("SETUP", &track_url, cseq, &headers), "setup").await?;
        session = session.or(reply.session);
        kinds.push(track.codec.kind());
        depacketizers.push(Depacketizer::new(&track.codec, rtp::DEFAULT_MAX_FRAME));
    }
    let session = session.unwrap_or_default();
    cseq += 1;
    exchange(request("PLAY", &url, cseq, &[("Session", &session), ("Range", "npt=0.000-")]), "play").await?;
    let started_us = began.elapsed().as_micros() as u64;
    record.borrow_mut().started(started_us);
    shared.established.fetch_add(1, Ordering::Relaxed);

    // The first sequence headers come from the SDP, as a server publishing them would.
    {
        let (now, wall) = (Instant::now(), wall_us());
        for track in &announced.tracks {
            if let Some(header) = track.codec.sequence_header() {
                let type_id = if track.codec.kind() == MediaKind::Video { TYPE_VIDEO } else { TYPE_AUDIO };
                record.borrow_mut().on_media(type_id, 0, &header, now, wall, &mut lag.borrow_mut());
            }
        }
    }
    let mut frames: Vec<MediaFrame> = Vec::new();
    loop {
        let (now, wall) = (Instant::now(), wall_us());
        while let Some((item, len)) =
            incoming.next().map_err(|reason| Outcome::Ended(Failure::new("playing", reason)))?
        {
            if let Item::Frame { channel, start, end } = item
                && channel % 2 == 0
                && let Some(depacketizer) = depacketizers.get_mut(usize::from(channel / 2))
                && let Ok(packet) = RtpPacket::parse(&incoming.pending[start..end])
            {
                let _ = depacketizer.depacketize(&packet, &mut frames);
                for frame in frames.drain(..) {
                    let type_id = if frame.kind == MediaKind::Video { TYPE_VIDEO } else { TYPE_AUDIO };
                    record.borrow_mut().on_media(
                        type_id,
                        frame.timestamp,
                        &frame.body,
                        now,
                        wall,
                        &mut lag.borrow_mut(),
                    );
                }
            }
            incoming.consume(len);
        }
        let read = tokio::select! {
            read = reader.read(&conn) => read,
            _ = stop.wait() => return Ok(()),
        };
        match read {
            Ok([]) => return Err(Outcome::Ended(Failure::closed("playing"))),
            Ok(data) => {
                record.borrow_mut().bytes += data.len() as u64;
                shared.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                incoming.feed(data).map_err(|reason| Outcome::Ended(Failure::new("playing", reason)))?;
            }
            Err(e) => return Err(Outcome::Ended(Failure::io("playing", &e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_frames_are_read_in_order_whatever_the_split() {
        let mut wire = b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: ABC;timeout=60\r\nContent-Length: 2\r\n\r\nhi".to_vec();
        wire.extend_from_slice(&[b'$', 2, 0, 3, 7, 8, 9]);
        for step in [1, 4, wire.len()] {
            let mut incoming = Incoming::default();
            let mut items = Vec::new();
            for piece in wire.chunks(step) {
                incoming.feed(piece).expect("bounded");
                while let Some((item, len)) = incoming.next().expect("valid") {
                    if let Item::Frame { start, end, .. } = item {
                        assert_eq!(&incoming.pending[start..end], [7, 8, 9]);
                    }
                    items.push(item);
                    incoming.consume(len);
                }
            }
            let reply = Reply { status: 200, session: Some("ABC".into()), body: b"hi".to_vec() };
            assert_eq!(items, vec![Item::Reply(reply), Item::Frame { channel: 2, start: 4, end: 7 }], "step {step}");
        }
        assert!(Incoming { pending: b"HTTP/1.1 200 OK\r\n\r\n".to_vec() }.next().is_err());
    }
}
