//! The `floor` scenario: the kernel's cost of a fan-out's writes, with nothing of a server
//! around them. What a server spends above it is its own; the floor is what no server on this
//! machine can go below at those writes.
//!
//! One writer thread (a bare "shard": no runtime, no queues, no timers but one sleep per
//! burst) holds N loopback sockets and writes each of them once per burst: `--write-bytes` in
//! `--iovecs` pieces with one `writev`, bursts `N / --writes-per-second` apart, which is the
//! pattern a merged-write server's shard has (one burst of writes per window, one write per
//! player). `--via uring` (the default) submits a burst's writes to an io_uring of the thread's
//! own, all in one `io_uring_enter`, as a tokio-uring shard submits the writes its tasks queued
//! in one round; `--via write` makes one `writev` system call per write, as a classic
//! event-loop server does. The readers are like the players: tokio-uring tasks on `--threads` worker threads
//! that read with the players' adaptive buffer, count and discard. The figure is Gbit the
//! writer's sockets took per CPU-second of the writer thread alone (`getrusage(RUSAGE_THREAD)`,
//! what `/proc/self/task/<tid>/stat` holds, in microseconds), over a steady window after a
//! settle: on loopback that thread also pays for delivering each segment to its reader and for
//! waking it, as a server's shard does.
//!
//! A write the socket does not take whole is counted (`partial`, `blocked`) and its rest is
//! dropped, not retried: the floor measures what the kernel takes, and a run with many of
//! them says the readers fell behind, not that the writes were cheap.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::rtmp::{Conn, ReadBuf};
use crate::runtime::{self, Shared, Worker};
use crate::stats::{Table, round3};

/// How large a reader's buffer starts: it grows to the players' 16 KiB while reads fill it.
const READ_BUFFER: usize = 4096;
/// Pending connections the writer's listener holds: every reader connects at once.
const BACKLOG: i32 = 4096;
/// Submission queue entries of the writer's ring: a burst of up to this many writes goes in
/// one submission.
const RING_ENTRIES: u32 = 4096;

/// What the writer does.
#[derive(Debug, Clone, Copy)]
pub struct FloorSetup {
    pub connections: usize,
    pub write_bytes: usize,
    pub iovecs: usize,
    /// Writes per second, all sockets together.
    pub writes_per_second: f64,
    pub settle: Duration,
    pub window: Duration,
    /// `SO_SNDBUF` of the writer's sockets; `None` leaves the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// Longest wait for every reader to connect.
    pub timeout: Duration,
    pub via: Via,
}

/// How the writer hands its writes to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A `writev` system call per write.
    Write,
    /// A burst's writes as io_uring `WRITEV` operations, submitted together.
    Uring,
}

impl FloorSetup {
    /// Time between two bursts (each socket's write period).
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(self.connections as f64 / self.writes_per_second)
    }
}

/// The writer's steady window.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FloorSummary {
    pub via: Option<Via>,
    pub connections: usize,
    pub write_bytes: usize,
    pub iovecs: usize,
    pub writes_per_second_asked: f64,
    pub secs: f64,
    pub bursts: u64,
    pub writes: u64,
    /// Writes the socket took only part of.
    pub partial: u64,
    /// Writes the socket took nothing of (its send buffer was full).
    pub blocked: u64,
    pub bytes: u64,
    /// CPU seconds of the writer thread over the window.
    pub writer_cpu_s: f64,
    pub gbit_per_s: f64,
    /// The floor: Gbit the sockets took per CPU-second of the writer thread.
    pub gbit_per_writer_cpu_s: Option<f64>,
    /// Bursts that took longer than the period (the writer could not keep the rate).
    pub late_bursts: u64,
}

impl FloorSummary {
    pub fn table(&self) -> String {
        let mut t = Table::new("floor: one writer thread, one burst of writes per period");
        t.row("sockets", format!("{} (each written every {:.1} ms)", self.connections, self.period_ms()))
            .row(
                "asked",
                format!(
                    "{} bytes in {} iovec(s), {} writes/s, via {}",
                    self.write_bytes,
                    self.iovecs,
                    self.writes_per_second_asked,
                    match self.via {
                        Some(Via::Uring) => "io_uring",
                        _ => "writev(2)",
                    }
                ),
            )
            .row(
                "steady window",
                format!(
                    "{} s: {} bursts ({} late), {} writes, {} partial, {} blocked",
                    self.secs, self.bursts, self.late_bursts, self.writes, self.partial, self.blocked
                ),
            )
            .row("delivered", format!("{} bytes, {} Gbit/s", self.bytes, self.gbit_per_s))
            .row("writer thread", format!("{} CPU-s", self.writer_cpu_s));
        if let Some(g) = self.gbit_per_writer_cpu_s {
            t.row("floor", format!("{g} Gbit per writer CPU-second"));
        }
        t.render()
    }

    fn period_ms(&self) -> f64 {
        if self.writes_per_second_asked > 0.0 {
            self.connections as f64 / self.writes_per_second_asked * 1000.0
        } else {
            0.0
        }
    }
}

/// Runs the floor: readers on `threads` worker threads, the writer on a thread of its own.
/// Returns the writer's summary and the errors met.
pub fn run(setup: FloorSetup, threads: usize) -> Result<(FloorSummary, Vec<String>), String> {
    let listener = listen().map_err(|e| format!("floor: cannot listen on loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("floor: {e}"))?;
    let shared = Shared::new();
    let connections = setup.connections;
    let handles = runtime::spawn_workers(threads, &shared, move |worker| async move {
        spawn_readers(&worker, addr, connections);
        worker.finish().await;
    })?;
    shared.go(Instant::now());
    let writer = std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || write(listener, setup))
        .map_err(|e| format!("floor: cannot start the writer thread: {e}"))?;
    let result = writer.join().map_err(|_| "floor: the writer thread panicked".to_owned())?;
    shared.stop();
    let (_, mut errors) = runtime::join_workers(handles);
    match result {
        Ok(summary) => Ok((summary, errors)),
        Err(e) => {
            errors.push(e);
            Ok((FloorSummary::default(), errors))
        }
    }
}

fn listen() -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// This worker's share of the readers: each connects, then reads and discards until the
/// writer closes its socket.
fn spawn_readers(worker: &Worker, addr: SocketAddr, connections: usize) {
    let (shared, tasks) = (worker.shared.clone(), worker.tasks.clone());
    worker.launch_share(connections, 0.0, move |_, _| {
        let shared = shared.clone();
        tasks.spawn(async move {
            let Ok(conn) = Conn::open(addr, None).await else {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            shared.established.fetch_add(1, Ordering::Relaxed);
            let mut reader = ReadBuf::new(READ_BUFFER);
            while let Ok(input) = reader.read(&conn).await {
                if input.is_empty() {
                    break;
                }
                shared.bytes_in.fetch_add(input.len() as u64, Ordering::Relaxed);
            }
        });
        std::future::ready(true)
    });
}

/// The writer thread: accepts every reader, then writes bursts until the window ends.
fn write(listener: std::net::TcpListener, setup: FloorSetup) -> Result<FloorSummary, String> {
    let sockets = accept_all(&listener, &setup).map_err(|e| format!("floor: accepting the readers: {e}"))?;
    let buffer = vec![0u8; setup.write_bytes];
    let piece = setup.write_bytes.div_ceil(setup.iovecs.max(1));
    let iovecs: Vec<libc::iovec> = buffer
        .chunks(piece.max(1))
        .map(|chunk| libc::iovec { iov_base: chunk.as_ptr() as *mut libc::c_void, iov_len: chunk.len() })
        .collect();
    let fds: Vec<i32> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
    let mut ring = match setup.via {
        Via::Uring => {
            Some(io_uring::IoUring::new(RING_ENTRIES).map_err(|e| format!("floor: cannot set up an io_uring: {e}"))?)
        }
        Via::Write => None,
    };
    let mut burst = |counts: &mut Counts| match ring.as_mut() {
        Some(ring) => burst_uring(ring, &fds, &iovecs, counts),
        None => {
            burst_write(&fds, &iovecs, counts);
            Ok(())
        }
    };
    let period = setup.period();
    let mut counts = Counts::default();
    let mut next = Instant::now();
    let settle_end = next + setup.settle;
    while Instant::now() < settle_end {
        burst(&mut counts)?;
        next = pace(next, period, &mut counts);
    }
    let (start, cpu_start) = (Instant::now(), thread_cpu_s());
    counts = Counts::default();
    let window_end = start + setup.window;
    while Instant::now() < window_end {
        burst(&mut counts)?;
        next = pace(next, period, &mut counts);
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), (thread_cpu_s() - cpu_start).max(0.0));
    // Closing the sockets ends the readers.
    drop(sockets);
    let gbit = counts.bytes as f64 * 8.0 / 1e9;
    Ok(FloorSummary {
        via: Some(setup.via),
        connections: setup.connections,
        write_bytes: setup.write_bytes,
        iovecs: iovecs.len(),
        writes_per_second_asked: round3(setup.writes_per_second),
        secs: round3(secs),
        bursts: counts.bursts,
        writes: counts.writes,
        partial: counts.partial,
        blocked: counts.blocked,
        bytes: counts.bytes,
        writer_cpu_s: round3(cpu),
        gbit_per_s: if secs > 0.0 { round3(gbit / secs) } else { 0.0 },
        gbit_per_writer_cpu_s: (cpu > 0.0).then(|| round3(gbit / cpu)),
        late_bursts: counts.late,
    })
}

#[derive(Debug, Default)]
struct Counts {
    bursts: u64,
    writes: u64,
    partial: u64,
    blocked: u64,
    bytes: u64,
    late: u64,
}

impl Counts {
    /// One write's outcome: bytes taken, or a negative result (nothing taken).
    fn write(&mut self, result: isize, total: usize) {
        self.writes += 1;
        match usize::try_from(result) {
            Ok(n) if n == total => self.bytes += n as u64,
            Ok(n) => {
                self.partial += 1;
                self.bytes += n as u64;
            }
            Err(_) => self.blocked += 1,
        }
    }
}

/// One write to every socket, a system call each.
fn burst_write(fds: &[i32], iovecs: &[libc::iovec], counts: &mut Counts) {
    let total: usize = iovecs.iter().map(|v| v.iov_len).sum();
    for &fd in fds {
        // SAFETY: `fd` is an open socket the caller owns; the iovecs point into a buffer that
        // outlives the call and the kernel only reads from them.
        let n = unsafe { libc::writev(fd, iovecs.as_ptr(), iovecs.len() as libc::c_int) };
        counts.write(n, total);
    }
    counts.bursts += 1;
}

/// One write to every socket through the ring: as many as its queue holds per submission,
/// each submission waited for whole. The sockets are non-blocking, so a full one completes
/// with `EAGAIN` (counted as blocked) instead of waiting in the ring.
fn burst_uring(
    ring: &mut io_uring::IoUring,
    fds: &[i32],
    iovecs: &[libc::iovec],
    counts: &mut Counts,
) -> Result<(), String> {
    let total: usize = iovecs.iter().map(|v| v.iov_len).sum();
    for batch in fds.chunks(RING_ENTRIES as usize) {
        for &fd in batch {
            let entry =
                io_uring::opcode::Writev::new(io_uring::types::Fd(fd), iovecs.as_ptr(), iovecs.len() as u32).build();
            // SAFETY: the iovecs and the buffer they point into outlive the submission (it is
            // waited for below), and the batch is no larger than the queue.
            unsafe { ring.submission().push(&entry) }.map_err(|_| "floor: the ring's queue is full".to_owned())?;
        }
        ring.submit_and_wait(batch.len()).map_err(|e| format!("floor: io_uring_enter: {e}"))?;
        for completion in ring.completion() {
            counts.write(completion.result() as isize, total);
        }
    }
    counts.bursts += 1;
    Ok(())
}

/// Sleeps until the next burst is due; a burst that overran its period starts the next at
/// once (no catching up with bursts in a row, as a server's next window would not either).
fn pace(previous: Instant, period: Duration, counts: &mut Counts) -> Instant {
    let now = Instant::now();
    let next = previous + period;
    if next > now {
        std::thread::sleep(next - now);
        next
    } else {
        counts.late += 1;
        now
    }
}

/// Accepts `setup.connections` readers within `setup.timeout`, non-blocking, `TCP_NODELAY`
/// as a server's player sockets are.
fn accept_all(listener: &std::net::TcpListener, setup: &FloorSetup) -> io::Result<Vec<TcpStream>> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + setup.timeout;
    let mut sockets = Vec::with_capacity(setup.connections);
    while sockets.len() < setup.connections {
        match listener.accept() {
            Ok((socket, _)) => {
                socket.set_nonblocking(true)?;
                socket.set_nodelay(true)?;
                if let Some(size) = setup.send_buffer {
                    socket2::SockRef::from(&socket).set_send_buffer_size(size)?;
                }
                sockets.push(socket);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{} of {} readers connected in {:?}", sockets.len(), setup.connections, setup.timeout),
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sockets)
}

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD reads the calling thread's figures.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{FloorSetup, Via, run};

    #[test]
    fn a_short_floor_writes_every_socket_once_per_burst_and_measures_its_thread() {
        let setup = FloorSetup {
            connections: 20,
            write_bytes: 3000,
            iovecs: 3,
            // A burst every 20 ms.
            writes_per_second: 1000.0,
            settle: Duration::from_millis(100),
            window: Duration::from_millis(400),
            send_buffer: None,
            timeout: Duration::from_secs(10),
            via: Via::Write,
        };
        assert_eq!(setup.period(), Duration::from_millis(20));
        for via in [Via::Write, Via::Uring] {
            let (summary, errors) = run(FloorSetup { via, ..setup }, 1).expect("runs");
            assert!(errors.is_empty(), "{via:?}: {errors:?}");
            assert_eq!(summary.iovecs, 3);
            assert!(summary.bursts >= 10, "{via:?}: {} bursts in 400 ms at one per 20 ms", summary.bursts);
            assert_eq!(summary.writes, summary.bursts * 20, "{via:?}: one write per socket per burst");
            assert_eq!(summary.partial + summary.blocked, 0, "{via:?}: readers keep up with 1.2 Mbit/s each");
            assert_eq!(summary.bytes, summary.writes * 3000, "{via:?}");
            assert!(summary.writer_cpu_s < summary.secs, "{via:?}: the writer's own thread, not the process");
        }
    }
}
