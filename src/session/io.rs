//! Socket reads and writes shaped by io_uring's ownership rules.
//!
//! tokio-uring 0.5 has no provided-buffer rings: a pending read owns its buffer for as long
//! as it waits. An idle connection therefore holds its whole read buffer, so the buffer
//! starts small, grows while reads fill it, and shrinks back when they no longer do.

use std::io;

use bytes::{Buf, Bytes};
use tokio_uring::net::TcpStream;

/// Smallest read buffer: what an idle connection holds while waiting.
pub const MIN_READ_BUFFER: usize = 512;
/// Largest read buffer, for a publisher sending at high bitrate.
pub const MAX_READ_BUFFER: usize = 64 * 1024;
/// Reads much smaller than the buffer this many times in a row shrink it.
const SHRINK_AFTER_SMALL_READS: u8 = 8;
/// Most iovecs one `writev` takes (Linux IOV_MAX).
const MAX_IOVECS: usize = 1024;

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

/// Writes every buffer, in order, with as few `writev` calls as the kernel allows. Returns
/// the bytes written.
pub async fn write_all_vectored(socket: &TcpStream, mut bufs: Vec<Bytes>) -> io::Result<usize> {
    bufs.retain(|b| !b.is_empty());
    let mut total = 0;
    while !bufs.is_empty() {
        let rest = if bufs.len() > MAX_IOVECS { bufs.split_off(MAX_IOVECS) } else { Vec::new() };
        let (result, written) = socket.writev(bufs).await;
        let mut n = result?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes"));
        }
        total += n;
        bufs = written;
        // Drop what was written whole, advance into the first partly written buffer.
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
        bufs.extend(rest);
    }
    Ok(total)
}

/// Writes one buffer whole.
pub async fn write_all(socket: &TcpStream, buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let (result, buf) = socket.write_all(buf).await;
    result?;
    Ok(buf)
}
