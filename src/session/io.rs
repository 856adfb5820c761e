//! Socket reads and writes shaped by io_uring's ownership rules.
//!
//! tokio-uring 0.5 has no provided-buffer rings: a pending read owns its buffer for as long
//! as it waits. An idle connection therefore holds its whole read buffer, so the buffer
//! starts small, grows while reads fill it, and shrinks back when they no longer do.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::Notify;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

/// Smallest read buffer: what an idle connection holds while waiting.
pub const MIN_READ_BUFFER: usize = 512;
/// Largest read buffer, for a publisher sending at high bitrate.
pub const MAX_READ_BUFFER: usize = 64 * 1024;
/// Reads much smaller than the buffer this many times in a row shrink it.
const SHRINK_AFTER_SMALL_READS: u8 = 8;
/// Most iovecs one `writev` takes (Linux IOV_MAX).
const MAX_IOVECS: usize = 1024;

/// What a shard's `writev` calls looked like since [`WriteStats::take`] last ran: the kernel's
/// cost per byte falls steeply with the size of a write (PERFORMANCE.md, "Where the fan-out
/// time goes"), and every iovec is one more copy from user memory, so these say what a fan-out
/// costs without a profiler. Counted per shard thread (no atomics on the write path), reported
/// at debug level by the shard's flush tick.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub writes: u64,
    pub iovecs: u64,
    pub bytes: u64,
    /// Writes by size: under 4 KiB, under 16 KiB, under 64 KiB, 64 KiB and up (the steps of
    /// the kernel's cost curve).
    pub by_size: [u64; 4],
}

thread_local! {
    static WRITE_STATS: Cell<WriteStats> = const { Cell::new(WriteStats { writes: 0, iovecs: 0, bytes: 0, by_size: [0; 4] }) };
}

impl WriteStats {
    fn record(iovecs: usize, bytes: usize) {
        WRITE_STATS.with(|stats| {
            let mut s = stats.get();
            s.writes += 1;
            s.iovecs += iovecs as u64;
            s.bytes += bytes as u64;
            let bucket = match bytes {
                0..4096 => 0,
                4096..16384 => 1,
                16384..65536 => 2,
                _ => 3,
            };
            s.by_size[bucket] += 1;
            stats.set(s);
        });
    }

    /// This thread's figures since the last call, which starts them again.
    pub fn take() -> WriteStats {
        WRITE_STATS.with(|stats| stats.take())
    }

    pub fn bytes_per_write(&self) -> u64 {
        self.bytes.checked_div(self.writes).unwrap_or(0)
    }

    /// Iovecs per write, in hundredths (integer logs).
    pub fn iovecs_per_write_x100(&self) -> u64 {
        (self.iovecs * 100).checked_div(self.writes).unwrap_or(0)
    }
}

#[derive(Debug)]
pub struct ReadBuffer {
    buf: Vec<u8>,
    capacity: usize,
    /// Largest capacity the buffer grows to.
    max: usize,
    small_reads: u8,
}

impl ReadBuffer {
    pub fn new(capacity: usize) -> ReadBuffer {
        ReadBuffer::with_limits(capacity, MAX_READ_BUFFER)
    }

    /// A buffer that starts at `capacity` and grows to at most `max` (a player that only
    /// receives needs less than a publisher).
    pub fn with_limits(capacity: usize, max: usize) -> ReadBuffer {
        let max = max.max(MIN_READ_BUFFER);
        ReadBuffer { buf: Vec::new(), capacity: capacity.clamp(MIN_READ_BUFFER, max), max, small_reads: 0 }
    }

    /// Reads once; an empty slice means the peer closed.
    pub async fn read(&mut self, socket: &TcpStream) -> io::Result<&[u8]> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() != self.capacity {
            buf = Vec::with_capacity(self.capacity);
        }
        buf.clear();
        let (result, buf) = socket.read(buf).await;
        self.buf = buf;
        let n = result?;
        self.adapt(n);
        Ok(&self.buf[..n])
    }

    fn adapt(&mut self, n: usize) {
        if n == self.capacity && self.capacity < self.max {
            self.capacity = (self.capacity * 2).min(self.max);
            self.small_reads = 0;
        } else if n < self.capacity / 4 && self.capacity > MIN_READ_BUFFER {
            self.small_reads += 1;
            if self.small_reads >= SHRINK_AFTER_SMALL_READS {
                self.capacity /= 2;
                self.small_reads = 0;
            }
        } else {
            self.small_reads = 0;
        }
    }

    /// Drops to the smallest buffer now (after the handshake, whose messages are large).
    pub fn shrink(&mut self) {
        self.capacity = MIN_READ_BUFFER;
        self.buf = Vec::new();
    }
}

/// A connection's output handed to its writer but not yet accepted by the socket, shared by
/// the reader (which stops reading while it is above `max_pending_output`) and the writer.
#[derive(Debug, Default)]
pub struct PendingOutput {
    unsent: Cell<usize>,
    /// Signalled whenever the socket accepts bytes, and when the writer stops.
    drained: Notify,
    /// Readers waiting on `drained`: almost always none, and then a write signals nobody
    /// (a `notify_waiters` takes a lock, twice per write of every player).
    waiting: Cell<usize>,
    /// Why the writer stopped, if it failed: the reader reports it as the session's end.
    failure: RefCell<Option<io::Error>>,
}

impl PendingOutput {
    pub fn unsent(&self) -> usize {
        self.unsent.get()
    }

    /// Waits until the socket accepted bytes or the writer stopped.
    pub async fn drained(&self) {
        let _waiting = Waiting::count(&self.waiting);
        self.drained.notified().await;
    }

    fn add(&self, n: usize) {
        self.unsent.set(self.unsent.get() + n);
    }

    fn sent(&self, n: usize) {
        self.unsent.set(self.unsent.get().saturating_sub(n));
        if self.waiting.get() > 0 {
            self.drained.notify_waiters();
        }
    }

    /// Records why the writer stopped and wakes a reader waiting for room.
    pub fn fail(&self, error: io::Error) {
        self.failure.borrow_mut().get_or_insert(error);
        self.drained.notify_waiters();
    }

    pub fn take_failure(&self) -> Option<io::Error> {
        self.failure.borrow_mut().take()
    }
}

/// One reader counted in `PendingOutput::waiting` for as long as its wait lasts (a dropped
/// wait included).
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a Cell<usize>) -> Waiting<'a> {
        waiting.set(waiting.get() + 1);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Bytes of one write not yet sent, counted in its connection's [`PendingOutput`] until sent,
/// failed or abandoned (a kicked player's write is dropped mid-way).
struct Unsent<'a> {
    pending: &'a PendingOutput,
    left: usize,
}

impl<'a> Unsent<'a> {
    fn count(pending: &'a PendingOutput, bytes: usize) -> Unsent<'a> {
        pending.add(bytes);
        Unsent { pending, left: bytes }
    }

    fn sent(&mut self, n: usize) {
        self.left -= n;
        self.pending.sent(n);
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        self.pending.sent(self.left);
    }
}

/// The error of a write the socket did not take whole within `send_timeout`: its peer stopped
/// reading (or vanished without a reset, or reads a byte now and then), and holding its output
/// would only cost memory. A whole write, not each syscall, has the deadline: a peer trickling
/// reads must not keep old media alive either, and delivery time stays bounded.
pub fn send_timed_out(send_timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("send timeout: the peer did not take its data within {send_timeout:?}"),
    )
}

/// Writes every buffer, in order, with as few `writev` calls as the kernel allows. Returns
/// the bytes written and the emptied vector, for the caller's next write (a player's writer
/// keeps one for its life). `pending` counts what is not yet written. No deadline of its own:
/// the caller bounds the whole write (a player's writer through `Player::write_within`, which
/// the shard's sweep cuts at `send_timeout`, with no timer per write).
pub async fn write_all_vectored(
    socket: &TcpStream,
    mut bufs: Vec<Bytes>,
    pending: &PendingOutput,
) -> io::Result<(usize, Vec<Bytes>)> {
    bufs.retain(|b| !b.is_empty());
    let mut unsent = Unsent::count(pending, bufs.iter().map(Bytes::len).sum());
    let mut total = 0;
    while !bufs.is_empty() {
        let rest = if bufs.len() > MAX_IOVECS { bufs.split_off(MAX_IOVECS) } else { Vec::new() };
        let iovecs = bufs.len();
        let (result, written) = socket.writev(bufs).await;
        let n = result?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes"));
        }
        WriteStats::record(iovecs, n);
        total += n;
        unsent.sent(n);
        bufs = written;
        drop_written(&mut bufs, n);
        bufs.extend(rest);
    }
    Ok((total, bufs))
}

/// Drops the buffers a write of `n` bytes took whole and advances into the first one it took
/// in part.
fn drop_written(bufs: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for buf in bufs.iter_mut() {
        if n >= buf.len() {
            n -= buf.len();
            done += 1;
        } else {
            buf.advance(n);
            break;
        }
    }
    bufs.drain(..done);
}

thread_local! {
    /// The iovecs of [`write_now`]'s calls, kept by each shard thread: writes from the flush
    /// tick allocate nothing.
    static IOVECS: RefCell<Vec<libc::iovec>> = const { RefCell::new(Vec::new()) };
}

/// Writes as much of `bufs` as the socket takes without waiting, in non-blocking `sendmsg`
/// calls straight from the shard's thread (no io_uring operation, no task to wake), and
/// drops what it wrote from `bufs`. Returns the bytes written: the socket took everything if
/// `bufs` is empty after, or its send buffer is full (an error is returned only if nothing
/// was written; what failed is left in `bufs` for the caller's io_uring write, which reports
/// it). For the flush tick, which writes every due player of a window this way.
pub fn write_now(fd: RawFd, bufs: &mut Vec<Bytes>) -> io::Result<usize> {
    bufs.retain(|b| !b.is_empty());
    let mut total = 0;
    IOVECS.with(|iovecs| {
        let mut iovecs = iovecs.borrow_mut();
        while !bufs.is_empty() {
            iovecs.clear();
            iovecs.extend(
                bufs.iter()
                    .take(MAX_IOVECS)
                    .map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() }),
            );
            // SAFETY: an all-zero msghdr is a valid empty one; its iovecs point into `bufs`,
            // which outlive the call and are only read by it.
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            message.msg_iov = iovecs.as_mut_ptr();
            message.msg_iovlen = iovecs.len() as _;
            // SAFETY: `message` is initialized and its pointers valid for the call;
            // MSG_DONTWAIT keeps the shard from blocking, MSG_NOSIGNAL a closed peer from
            // raising SIGPIPE.
            let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if sent < 0 {
                let error = io::Error::last_os_error();
                if total > 0 || error.kind() == io::ErrorKind::WouldBlock {
                    return Ok(total);
                }
                return Err(error);
            }
            let (sent, before) = (sent as usize, bufs.len());
            WriteStats::record(iovecs.len(), sent);
            total += sent;
            drop_written(bufs, sent);
            if before - bufs.len() < iovecs.len() {
                // A buffer handed to the call is left: the send buffer is full, the rest waits
                // for room.
                return Ok(total);
            }
        }
        Ok(total)
    })
}

/// Writes one buffer whole; fails when that takes longer than `send_timeout`.
pub async fn write_all(socket: &TcpStream, mut buf: Vec<u8>, send_timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + send_timeout;
    let mut written = 0;
    while written < buf.len() {
        let slice = buf.slice(written..);
        let Ok((result, slice)) = tokio::time::timeout_at(deadline, socket.write(slice).submit()).await else {
            return Err(send_timed_out(send_timeout));
        };
        buf = slice.into_inner();
        match result? {
            0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes")),
            n => written += n,
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::WriteStats;

    #[test]
    fn write_stats_count_per_thread_by_size_and_start_again_when_taken() {
        WriteStats::take();
        WriteStats::record(3, 100);
        WriteStats::record(9, 20_000);
        WriteStats::record(1, 65_536);
        // Another thread (another shard) counts its own writes.
        std::thread::spawn(|| WriteStats::record(1, 1)).join().expect("no panic");
        let stats = WriteStats::take();
        assert_eq!((stats.writes, stats.iovecs, stats.bytes), (3, 13, 85_636));
        assert_eq!(stats.by_size, [1, 0, 1, 1]);
        assert_eq!((stats.bytes_per_write(), stats.iovecs_per_write_x100()), (28_545, 433));
        assert_eq!(WriteStats::take(), WriteStats::default());
        assert_eq!(WriteStats::default().bytes_per_write(), 0, "no writes, no division by zero");
    }
}

/// Why [`resolve`] found no address.
#[derive(Debug)]
pub enum ResolveError {
    /// The system resolver did not answer within the deadline.
    TimedOut,
    /// It answered with an error, or with no address.
    Failed(String),
}

/// The address of `host` at `port` for an outbound connection (a relay's origin, a camera):
/// an IP literal at once; a name on a short-lived thread of its own, as the system resolver
/// blocks and nothing on a shard may, given up after `timeout`.
pub async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<std::net::SocketAddr, ResolveError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, port));
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let target = (host.to_owned(), port);
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let found = std::net::ToSocketAddrs::to_socket_addrs(&target).map(|mut addrs| addrs.next());
            let _ = reply.send(found);
        })
        .map_err(|error| ResolveError::Failed(error.to_string()))?;
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(Ok(Some(addr)))) => Ok(addr),
        Ok(Ok(Ok(None))) => Err(ResolveError::Failed("no address".into())),
        Ok(Ok(Err(error))) => Err(ResolveError::Failed(error.to_string())),
        Ok(Err(_)) => Err(ResolveError::Failed("resolver thread failed".into())),
        Err(_) => Err(ResolveError::TimedOut),
    }
}
