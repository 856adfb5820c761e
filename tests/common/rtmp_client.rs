//! A blocking RTMP client for tests: ringcast's own client state machine over a std socket.
//! It lets a test see every packet a player receives, with its arrival time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringcast::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};

pub struct RtmpClient {
    pub stream: TcpStream,
    conn: ClientConnection,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<ClientEvent>,
}

impl RtmpClient {
    pub fn connect(addr: SocketAddr, app: &str, goal: Goal) -> io::Result<RtmpClient> {
        RtmpClient::connect_with_tc_url(addr, app, &format!("rtmp://{addr}/{app}"), goal)
    }

    /// Like [`RtmpClient::connect`], with the tcUrl given rather than derived.
    pub fn connect_with_tc_url(addr: SocketAddr, app: &str, tc_url: &str, goal: Goal) -> io::Result<RtmpClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(Instant::now().elapsed().as_nanos() as u64).to_le_bytes());
        let conn = ClientConnection::new(app, tc_url, goal, seed, 0);
        let mut client = RtmpClient { stream, conn, buf: vec![0; 64 * 1024], pending: Default::default() };
        client.flush()?;
        Ok(client)
    }

    /// A publisher of `live/name` whose publish the server accepted.
    pub fn publisher(addr: SocketAddr, name: &str) -> RtmpClient {
        let mut client = RtmpClient::connect(addr, "live", Goal::Publish(name.into())).expect("publisher connects");
        client.wait_status("NetStream.Publish.Start", Duration::from_secs(10)).expect("publish starts");
        client
    }

    /// A player of `live/name` whose play the server accepted.
    pub fn player(addr: SocketAddr, name: &str) -> RtmpClient {
        let mut client = RtmpClient::connect(addr, "live", Goal::Play(name.into())).expect("player connects");
        client.wait_status("NetStream.Play.Start", Duration::from_secs(10)).expect("play starts");
        client
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        self.conn.poll_transmit(&mut out);
        if !out.is_empty() {
            self.stream.write_all(&out)?;
        }
        Ok(())
    }

    /// The next event, reading from the socket as needed; `None` on timeout or close.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<ClientEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if let Some(event) = self.conn.poll_event() {
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
                }
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let input = self.buf[..n].to_vec();
            self.conn.handle_input(&input).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.flush()?;
        }
    }

    /// Waits for an `onStatus` with `code`; other events before it are kept for later.
    pub fn wait_status(&mut self, code: &str, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left)? {
                Some(ClientEvent::Status { code: got, .. }) if got == code => break Ok(()),
                Some(other) => skipped.push(other),
                None => {
                    break Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no {code} within {timeout:?}; got {skipped:?}"),
                    ));
                }
            }
        };
        let media: Vec<_> = skipped
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Audio { .. } | ClientEvent::Video { .. } | ClientEvent::Data { .. }))
            .collect();
        for event in media.into_iter().rev() {
            self.pending.push_front(event);
        }
        result
    }

    pub fn send_media(&mut self, type_id: u8, timestamp: u32, payload: &[u8]) -> io::Result<()> {
        self.conn.send_media(type_id, timestamp, payload);
        self.flush()
    }
}

/// Synthetic media whose payloads carry a sequence number, so a player can check it got
/// every packet, in order, unmodified.
pub mod media {
    pub const AVC_SEQUENCE_HEADER: &[u8] = &[
        0x17, 0x00, 0, 0, 0, // keyframe, AVC, sequence header, cts 0
        0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1F, 0x01, 0x00, 0x02, 0x68, 0xEE,
    ];
    pub const AAC_SEQUENCE_HEADER: &[u8] = &[0xAF, 0x00, 0x12, 0x10];

    /// A video frame: keyframe or not, tagged with `seq`, `size` bytes long.
    pub fn video(seq: u32, keyframe: bool, size: usize) -> Vec<u8> {
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend((0..size.saturating_sub(body.len())).map(|i| (i as u32 ^ seq) as u8));
        body
    }

    pub fn audio(seq: u32) -> Vec<u8> {
        let mut body = vec![0xAF, 0x01];
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend([0x21; 200]);
        body
    }

    /// The sequence number of a frame made by `video` or `audio`.
    pub fn seq_of(payload: &[u8]) -> Option<u32> {
        let at = if payload.first() == Some(&0xAF) { 2 } else { 5 };
        payload.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
