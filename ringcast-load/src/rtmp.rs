//! RTMP over an io_uring socket: ringcast's own sans-IO client state machine
//! ([`ClientConnection`]) driven by reads and writes, plus the failure vocabulary every
//! scenario reports in.
//!
//! Two io_uring rules shape this file. A pending read owns its buffer, so the buffer starts
//! small and grows only while reads fill it (thousands of idle connections each hold one).
//! And a pending read holds the socket's descriptor open: dropping the stream alone would
//! leave the connection up until the peer closes, so [`Conn`] shuts the socket down when
//! dropped, which completes the read and lets the descriptor close.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ringcast::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};
use tokio::time::Instant;
use tokio_uring::net::TcpStream;

use crate::cli::Target;

/// The server's handshake reply (S0 + S1 + S2) is 3073 bytes: read it in one go.
pub const HANDSHAKE_READ_BUFFER: usize = 4096;
/// Largest read buffer. Bigger saves few reads (the server sends frame by frame anyway) and
/// costs a lot: a thousand players measured 130 MiB of RSS at 64 KiB, 48 MiB at 16 KiB.
pub const MAX_READ_BUFFER: usize = 16 * 1024;

/// Why a connection did not do what it was asked: the step it was at and what happened.
/// Reports group failures by their `Display` text.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: &'static str,
    pub reason: String,
}

impl Failure {
    pub fn new(step: &'static str, reason: impl Into<String>) -> Failure {
        Failure { step, reason: reason.into() }
    }

    pub fn io(step: &'static str, error: &io::Error) -> Failure {
        Failure::new(step, describe_io(error))
    }

    pub fn timeout(step: &'static str, limit: Duration) -> Failure {
        Failure::new(step, format!("timed out after {limit:?}"))
    }

    pub fn closed(step: &'static str) -> Failure {
        Failure::new(step, "closed by server")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.reason)
    }
}

/// Short, stable names for the errors a load test meets, so they group well in reports.
fn describe_io(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::EPIPE) => "broken pipe".into(),
        Some(libc::ETIMEDOUT) => "TCP timeout".into(),
        Some(libc::EMFILE) => "too many open files (EMFILE: raise ulimit -n)".into(),
        Some(libc::ENFILE) => "too many open files in the system (ENFILE)".into(),
        Some(libc::EADDRNOTAVAIL) => "no free local port (EADDRNOTAVAIL)".into(),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "out of kernel memory".into(),
        _ => error.to_string(),
    }
}

/// A connected socket that is shut down when dropped (see the module comment).
pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects to `addr`, from `source` if given. With a source address the connection is
    /// only started here: it completes when the first write does (see [`connect_from`]).
    pub async fn open(addr: SocketAddr, source: Option<IpAddr>) -> Result<Conn, Failure> {
        let stream = match source {
            None => TcpStream::connect(addr).await.map_err(|e| Failure::io("tcp connect", &e))?,
            Some(source) => connect_from(addr, source).map_err(|e| Failure::io("tcp connect", &e))?,
        };
        // Small control messages must not wait for Nagle; media writes are large anyway.
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes all of `buf`; returns it (emptied) for reuse.
    pub async fn write_all(&self, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        let (result, returned) = self.stream.write_all(buf).await;
        buf = returned;
        buf.clear();
        result.map(|()| buf)
    }
}

/// Starts a non-blocking connect from `source` (port chosen at connect time, per destination,
/// thanks to `IP_BIND_ADDRESS_NO_PORT`). tokio-uring 0.5 cannot connect a socket it did not
/// create, so the connect is left in progress: io_uring parks the first write until the
/// socket is writable, that is until the connection is up (or fails with its error).
fn connect_from(addr: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor and a pointer to a c_int that outlives the call.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The server's adaptive read buffer, capped at 16 KiB: a load client holds thousands of
/// them, and players only receive.
pub struct ReadBuf(ringcast::session::io::ReadBuffer);

impl ReadBuf {
    pub fn new(capacity: usize) -> ReadBuf {
        ReadBuf(ringcast::session::io::ReadBuffer::with_limits(capacity, MAX_READ_BUFFER))
    }

    /// Reads once; an empty slice means the peer closed.
    pub async fn read(&mut self, conn: &Conn) -> io::Result<&[u8]> {
        self.0.read(&conn.stream).await
    }

    /// Drops to the smallest buffer now.
    pub fn shrink(&mut self) {
        self.0.shrink();
    }
}

/// One RTMP client connection: socket, protocol state and buffers.
pub struct Session {
    pub conn: Rc<Conn>,
    pub client: ClientConnection,
    pub reader: ReadBuf,
    out: Vec<u8>,
    /// Media that arrived while waiting for a status, handed out before anything newer.
    pending: VecDeque<ClientEvent>,
    /// Bytes read so far.
    pub bytes_in: u64,
    /// Bytes written so far.
    pub bytes_out: u64,
}

impl Session {
    /// Opens the TCP connection and sends C0 + C1.
    pub async fn open(target: &Target, goal: Goal, id: usize, epoch: u32) -> Result<Session, Failure> {
        let conn = Rc::new(Conn::open(target.addr, target.source_for(id)).await?);
        let seed = crate::runtime::seed(id);
        let client = ClientConnection::new(&target.app, &target.tc_url(), goal, seed, epoch);
        let mut session = Session {
            conn,
            client,
            reader: ReadBuf::new(HANDSHAKE_READ_BUFFER),
            out: Vec::new(),
            pending: VecDeque::new(),
            bytes_in: 0,
            bytes_out: 0,
        };
        // With a source address the TCP connect completes with this first write.
        session.flush("tcp connect").await?;
        Ok(session)
    }

    /// Sends whatever the protocol has queued.
    pub async fn flush(&mut self, step: &'static str) -> Result<usize, Failure> {
        self.client.poll_transmit(&mut self.out);
        if self.out.is_empty() {
            return Ok(0);
        }
        let len = self.out.len();
        let out = std::mem::take(&mut self.out);
        match self.conn.write_all(out).await {
            Ok(out) => {
                // Keep a small buffer for acknowledgements; drop one a burst grew.
                if out.capacity() <= 4096 {
                    self.out = out;
                }
                self.bytes_out += len as u64;
                Ok(len)
            }
            Err(e) => Err(Failure::io(step, &e)),
        }
    }

    /// Reads once and feeds the protocol; events are then in `client.poll_event()`. Returns
    /// the bytes read.
    pub async fn read_input(&mut self, step: &'static str) -> Result<usize, Failure> {
        let input = self.reader.read(&self.conn).await.map_err(|e| Failure::io(step, &e))?;
        if input.is_empty() {
            return Err(Failure::closed(step));
        }
        let n = input.len();
        self.bytes_in += n as u64;
        self.client.handle_input(input).map_err(|e| Failure::new(step, format!("protocol error: {e}")))?;
        self.flush(step).await?;
        Ok(n)
    }

    /// The next event, reading as needed.
    pub async fn next_event(&mut self, step: &'static str) -> Result<ClientEvent, Failure> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if let Some(event) = self.client.poll_event() {
                return Ok(event);
            }
            self.read_input(step).await?;
        }
    }

    /// An event already received, without reading.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.pending.pop_front().or_else(|| self.client.poll_event())
    }

    /// Waits for the events `done` accepts, failing on a rejection or at `deadline`. Media
    /// seen on the way is kept for later.
    pub async fn wait_for(
        &mut self,
        step: &'static str,
        deadline: Instant,
        limit: Duration,
        mut done: impl FnMut(&ClientEvent) -> bool,
    ) -> Result<(), Failure> {
        let mut media = Vec::new();
        let result = loop {
            let event = match tokio::time::timeout_at(deadline, self.next_event(step)).await {
                Ok(Ok(event)) => event,
                Ok(Err(failure)) => break Err(failure),
                Err(_) => break Err(Failure::timeout(step, limit)),
            };
            if done(&event) {
                break Ok(());
            }
            match event {
                ClientEvent::Status { level, code, .. } if level == "error" => {
                    break Err(Failure::new(step, format!("rejected: {code}")));
                }
                ClientEvent::CommandError { command, code, .. } => {
                    break Err(Failure::new(step, format!("{command} refused: {code}")));
                }
                ClientEvent::Audio { .. } | ClientEvent::Video { .. } | ClientEvent::Data { .. } => media.push(event),
                _ => {}
            }
        };
        for event in media.into_iter().rev() {
            self.pending.push_front(event);
        }
        result
    }

    /// Runs `connect` (after the handshake) to its `_result`.
    pub async fn wait_connected(&mut self, deadline: Instant, limit: Duration) -> Result<(), Failure> {
        self.wait_for("handshake+connect", deadline, limit, |e| matches!(e, ClientEvent::Connected)).await
    }

    /// Waits for `NetStream.Play.Start` or `NetStream.Publish.Start`.
    pub async fn wait_status(
        &mut self,
        step: &'static str,
        code: &str,
        deadline: Instant,
        limit: Duration,
    ) -> Result<(), Failure> {
        self.wait_for(step, deadline, limit, |e| matches!(e, ClientEvent::Status { code: got, .. } if got == code))
            .await
    }

    /// Keeps only the socket: a connection that will never speak again needs no protocol
    /// state (an idle connection's memory is mostly this).
    pub fn into_conn(self) -> Rc<Conn> {
        self.conn
    }

    /// Splits the session for a reader task and a writer task (a publisher).
    pub fn into_parts(self) -> (Rc<Conn>, ClientConnection, ReadBuf) {
        (self.conn, self.client, self.reader)
    }
}

/// Milliseconds since the Unix epoch, truncated, for the handshake's epoch field.
pub fn epoch_ms() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u32).unwrap_or(0)
}

/// How far [`establish`] takes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// `connect` answered.
    Connected,
    /// `NetStream.Play.Start`.
    Playing,
    /// `NetStream.Publish.Start`.
    Publishing,
}

/// When each step of [`establish`] completed, in microseconds after it began.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steps {
    pub tcp_us: u64,
    pub connected_us: u64,
    /// Play or publish start; equal to `connected_us` for [`Until::Connected`].
    pub started_us: u64,
}

/// Opens connection `id` and walks it to `until`, each step within `limit` of the previous one.
pub async fn establish(
    target: &Target,
    goal: Goal,
    until: Until,
    id: usize,
    began: Instant,
    limit: Duration,
) -> Result<(Session, Steps), Failure> {
    let since = |t: Instant| t.saturating_duration_since(began).as_micros() as u64;
    let opened = tokio::time::timeout_at(began + limit, Session::open(target, goal, id, epoch_ms())).await;
    let mut session = match opened {
        Ok(result) => result?,
        Err(_) => return Err(Failure::timeout("tcp connect", limit)),
    };
    let mut steps = Steps { tcp_us: since(Instant::now()), ..Steps::default() };
    session.wait_connected(Instant::now() + limit, limit).await?;
    steps.connected_us = since(Instant::now());
    let code = match until {
        Until::Connected => {
            steps.started_us = steps.connected_us;
            return Ok((session, steps));
        }
        Until::Playing => "NetStream.Play.Start",
        Until::Publishing => "NetStream.Publish.Start",
    };
    let step = if until == Until::Playing { "play" } else { "publish" };
    session.wait_status(step, code, Instant::now() + limit, limit).await?;
    steps.started_us = since(Instant::now());
    Ok((session, steps))
}
