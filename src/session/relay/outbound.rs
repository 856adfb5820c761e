//! An outbound RTMP connection, the one thing pulls and pushes share: the origin's address
//! (a name resolved off the shard), the TCP connect, and `protocol::rtmp::client` driven
//! through its handshake, `connect` and `play` or `publish` until the peer starts, over the
//! shard's io_uring socket. What flows afterwards is the pull's and the push's own.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_uring::net::TcpStream;

use crate::config::RelayUrl;
use crate::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};
use crate::protocol::rtmp::handshake::SEED_LEN;
use crate::protocol::rtmp::server;
use crate::session::io::{MIN_READ_BUFFER, ReadBuffer, ResolveError, write_all};
use crate::session::{SessionEntry, ShardContext};

/// How long resolving a name and the TCP connect may take together: an origin that does not
/// answer by then is skipped for the next one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connected peer has to start: a pull's first media, a push's `Publish.Start`.
/// An origin that accepts the play of a stream it does not have answers `Play.Start` and then
/// sends nothing, which only this deadline tells from a slow start.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a relay connection failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("rtmp: {0}")]
    Protocol(#[from] server::Error),
    /// The peer answered `_error` or an error-level `onStatus`.
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("closed by the peer")]
    Closed,
    /// The session ended on its own side (a push whose writer fell behind or failed).
    #[error("{0}")]
    Ended(&'static str),
}

/// The address of `url`'s host ([`io::resolve`](crate::session::io::resolve): a name off the
/// shard, within [`CONNECT_TIMEOUT`]).
pub async fn resolve(url: &RelayUrl) -> Result<SocketAddr, RelayError> {
    crate::session::io::resolve(&url.host, url.port, CONNECT_TIMEOUT).await.map_err(|error| match error {
        ResolveError::TimedOut => RelayError::Timeout("resolving"),
        ResolveError::Failed(why) => RelayError::Resolve { host: url.host.clone(), why },
    })
}

/// One outbound RTMP connection and its client state machine.
pub struct Outbound {
    pub socket: Rc<TcpStream>,
    /// Shared with a push's writer, which sends the client's replies (acknowledgements, ping
    /// answers) between media.
    pub client: Rc<RefCell<ClientConnection>>,
    pub reader: ReadBuffer,
    send_timeout: Duration,
}

/// What the peer said before it started, in order (a pull keeps the metadata that comes
/// before the first frame).
pub type Early = VecDeque<ClientEvent>;

impl Outbound {
    /// Connects to `addr` and starts the handshake towards `app` at `tc_url`, for `goal`.
    /// `chunk_size` is announced as the connection's outgoing chunk size.
    pub async fn connect(
        addr: SocketAddr,
        tc_url: &str,
        app: &str,
        goal: Goal,
        chunk_size: u32,
        seed: [u8; SEED_LEN],
        send_timeout: Duration,
    ) -> Result<Outbound, RelayError> {
        let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| RelayError::Timeout("connecting"))??;
        let mut client = ClientConnection::new(app, tc_url, goal, seed, 0);
        client.set_chunk_size(chunk_size);
        let mut outbound = Outbound {
            socket: Rc::new(socket),
            client: Rc::new(RefCell::new(client)),
            reader: ReadBuffer::new(MIN_READ_BUFFER * 4),
            send_timeout,
        };
        outbound.flush().await?;
        Ok(outbound)
    }

    /// Writes what the client state machine has to send.
    pub async fn flush(&mut self) -> Result<(), RelayError> {
        let mut out = Vec::new();
        self.client.borrow_mut().poll_transmit(&mut out);
        if !out.is_empty() {
            write_all(&self.socket, out, self.send_timeout).await?;
        }
        Ok(())
    }

    /// Feeds bytes read from the peer to the client state machine.
    pub fn handle_input(&self, input: &[u8]) -> Result<(), RelayError> {
        if input.is_empty() {
            return Err(RelayError::Closed);
        }
        self.client.borrow_mut().handle_input(input)?;
        Ok(())
    }

    /// Reads and answers until `started` holds for an event, within [`START_TIMEOUT`];
    /// returns the events up to and including that one, and the bytes read. Dropping the
    /// pending read at the deadline is harmless: the connection is abandoned with it.
    pub async fn start(&mut self, started: impl Fn(&ClientEvent) -> bool) -> Result<(Early, u64), RelayError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut early = Early::new();
        let mut read = 0u64;
        loop {
            while let Some(event) = self.client.borrow_mut().poll_event() {
                refusal(&event)?;
                let done = started(&event);
                early.push_back(event);
                if done {
                    return Ok((early, read));
                }
            }
            let input = tokio::time::timeout_at(deadline, self.reader.read(&self.socket))
                .await
                .map_err(|_| RelayError::Timeout("starting"))??;
            read += input.len() as u64;
            let input = input.to_vec();
            self.handle_input(&input)?;
            self.flush().await?;
        }
    }
}

impl Outbound {
    /// Reads the peer once while streaming, the read pending across the ticks (io_uring may
    /// have filled its buffer), `ticked` looking at the stream on every tick. `Err(why)`
    /// when the relay is over meanwhile: shutdown, a kick, what `ticked` says, or `over`
    /// resolving (a pull's linger).
    pub async fn read_beside(
        &mut self,
        context: &ShardContext,
        entry: &SessionEntry,
        tick: &mut tokio::time::Interval,
        mut ticked: impl FnMut() -> Option<&'static str>,
        mut over: impl std::future::Future<Output = &'static str> + Unpin,
    ) -> Result<io::Result<&[u8]>, &'static str> {
        let socket = self.socket.clone();
        let read = self.reader.read(&socket);
        tokio::pin!(read);
        loop {
            tokio::select! {
                input = &mut read => return Ok(input),
                _ = context.shutdown.wait() => return Err("server shutdown"),
                _ = entry.kicked() => return Err("kicked by operator"),
                over = &mut over => return Err(over),
                _ = tick.tick() => {
                    if let Some(over) = ticked() {
                        return Err(over);
                    }
                }
            }
        }
    }
}

/// The peer's `_error`, or an `onStatus` of level `error` (`Play.StreamNotFound`,
/// `Publish.BadName`...), as a refusal.
pub fn refusal(event: &ClientEvent) -> Result<(), RelayError> {
    match event {
        ClientEvent::CommandError { command, code, description } => {
            Err(RelayError::Refused(format!("{command}: {code} {description}")))
        }
        ClientEvent::Status { level, code, description } if level == "error" => {
            Err(RelayError::Refused(format!("{code} {description}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_the_peer_are_refusals_and_the_rest_is_not() {
        let error = ClientEvent::Status {
            level: "error".into(),
            code: "NetStream.Play.StreamNotFound".into(),
            description: "no such stream".into(),
        };
        assert!(matches!(refusal(&error), Err(RelayError::Refused(why)) if why.contains("StreamNotFound")));
        let command = ClientEvent::CommandError { command: "connect", code: "x".into(), description: "denied".into() };
        assert!(refusal(&command).is_err());
        let start = ClientEvent::Status {
            level: "status".into(),
            code: "NetStream.Play.Start".into(),
            description: String::new(),
        };
        assert!(refusal(&start).is_ok());
    }
}
