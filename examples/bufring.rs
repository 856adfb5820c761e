//! Experiment: does a provided-buffer ring (IORING_REGISTER_PBUF_RING through the `io-uring` crate) beat
//! tokio-uring 0.5's owned buffers for ringcast's socket reads? Results and method: docs/experiments/bufring.md.
//!
//! Server modes (the process measured):
//! - `owned --buf N`: tokio-uring, one task per connection reading into its own `Vec` of N bytes in a loop
//!   (what ringcast's `ReadBuffer` does; 512 B is its idle size, 64 KiB its publisher size).
//! - `raw-owned --buf N`: a raw io-uring event loop with one `Vec` per connection and a re-armed recv. Not
//!   asked for, but it separates the buffer strategy (vs `ring`) from tokio-uring's per-task cost (vs `owned`).
//! - `ring --bufs N --size S`: the same raw loop, one registered ring of N buffers of S bytes shared by all
//!   connections, one multishot recv per connection; each buffer goes back to the ring once counted. With
//!   `--oneshot`, a one-shot recv with buffer select, re-armed per completion, instead of the multishot one.
//!
//! Scenarios (`--scenario`): `idle` (C connections each send 64 bytes, which the server reads, then sit idle;
//! RSS growth per connection after settling) and `stream` (C connections send as fast as they can; server
//! CPU-seconds per GiB read and throughput). The load comes from a second process (this binary's hidden
//! `client` command), so the server can hold 15,000 connections under the 20,000 open-files cap and its
//! CPU time (getrusage) counts nothing of the sender's.
//!
//! `matrix --runs 3` runs every configuration in a fresh server process, interleaved, and prints the tables.
//!
//! cargo run --release --example bufring -- matrix --runs 3
//! cargo run --release --example bufring -- ring --bufs 256 --size 16384 --scenario idle --conns 15000

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use socket2::{Domain, SockRef, Socket, Type};

// ringcast's allocator, so per-connection allocations cost what they cost in ringcast.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What each idle connection sends once (about an RTMP control message).
const HELLO: [u8; 64] = [7; 64];
/// Each streaming write.
const CHUNK: usize = 64 * 1024;
/// Give up waiting for the client after this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Streaming: time after the last connection arrives before the measured window, so every sender is going.
const WARMUP: Duration = Duration::from_millis(500);

#[derive(Parser)]
#[command(about = "Provided-buffer ring vs tokio-uring owned buffers for socket reads")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// tokio-uring, one task per connection reading into its own Vec (what ringcast does).
    Owned {
        #[arg(long, default_value_t = 512)]
        buf: usize,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Raw io-uring loop, one Vec per connection, re-armed recv (control: no tokio-uring tasks).
    RawOwned {
        #[arg(long, default_value_t = 512)]
        buf: usize,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Raw io-uring loop, one provided-buffer ring shared by all connections, multishot recv.
    Ring {
        /// Buffers in the ring (a power of two, at most 32768).
        #[arg(long, default_value_t = 256)]
        bufs: u16,
        /// Bytes per buffer.
        #[arg(long, default_value_t = 16384)]
        size: u32,
        /// A one-shot recv with buffer select, re-armed per completion, instead of a multishot recv: at most
        /// one buffer per connection between two passes of the loop, so a deep socket cannot drain the ring.
        #[arg(long)]
        oneshot: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Every configuration, each run in a fresh server process, runs interleaved; prints Markdown tables.
    Matrix {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 15000)]
        idle_conns: usize,
        #[arg(long, default_value_t = 50)]
        stream_conns: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// The load generator; the server starts it and closes its stdin to stop it.
    #[command(hide = true)]
    Client {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_enum)]
        scenario: Scenario,
        #[arg(long)]
        conns: usize,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "idle")]
    scenario: Scenario,
    /// Connections (default: 15000 idle, 50 streaming).
    #[arg(long)]
    conns: Option<usize>,
    /// Streaming: seconds measured.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Idle: seconds between the last first message read and the RSS reading.
    #[arg(long, default_value_t = 2)]
    settle: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Idle,
    Stream,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Stream => "stream",
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Owned { buf: usize },
    RawOwned { buf: usize },
    Ring { bufs: u16, size: u32, oneshot: bool },
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Owned { buf } => format!("owned --buf {buf}"),
            Mode::RawOwned { buf } => format!("raw-owned --buf {buf}"),
            Mode::Ring { bufs, size, oneshot } => {
                format!("ring --bufs {bufs} --size {size}{}", if oneshot { " --oneshot" } else { "" })
            }
        }
    }
}

/// Counters the server thread bumps and the measuring thread reads. The same relaxed atomics in every mode,
/// so they cost every mode alike.
struct Stats {
    accepted: AtomicU64,
    first_reads: AtomicU64,
    bytes: AtomicU64,
    reads: AtomicU64,
    enobufs: AtomicU64,
}

static STATS: Stats = Stats {
    accepted: AtomicU64::new(0),
    first_reads: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    reads: AtomicU64::new(0),
    enobufs: AtomicU64::new(0),
};

fn count_read(n: usize, first: &mut bool) {
    STATS.bytes.fetch_add(n as u64, Ordering::Relaxed);
    STATS.reads.fetch_add(1, Ordering::Relaxed);
    if *first {
        *first = false;
        STATS.first_reads.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Owned { buf, run } => serve(Mode::Owned { buf }, run),
        Cmd::RawOwned { buf, run } => serve(Mode::RawOwned { buf }, run),
        Cmd::Ring { bufs, size, oneshot, run } => serve(Mode::Ring { bufs, size, oneshot }, run),
        Cmd::Matrix { runs, idle_conns, stream_conns, secs } => matrix(runs, idle_conns, stream_conns, secs),
        Cmd::Client { addr, scenario, conns } => client(addr, scenario, conns),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bufring: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Measuring side: start the server thread, start the client process, read RSS and CPU.

fn serve(mode: Mode, run: RunArgs) -> Result<(), String> {
    if matches!(mode, Mode::Owned { buf: 0 } | Mode::RawOwned { buf: 0 }) {
        return Err("--buf must be at least 1".into());
    }
    // As ringcast's main does: with THP a fresh heap's first touch can fault in a 2 MiB page, which would
    // swamp a per-connection RSS figure.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let conns = run.conns.unwrap_or(match run.scenario {
        Scenario::Idle => 15000,
        Scenario::Stream => 50,
    });
    let listener = listen().map_err(|e| format!("listen on 127.0.0.1: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let result = match mode {
                Mode::Owned { buf } => run_owned(listener, buf, ready_tx),
                Mode::RawOwned { buf } => run_raw(listener, Reads::Owned(buf), ready_tx),
                Mode::Ring { bufs, size, oneshot } => run_raw(listener, Reads::Ring { bufs, size, oneshot }, ready_tx),
            };
            // The loops only return on an error; the measurement is void then, and the client is ended by
            // its stdin closing with this process.
            if let Err(error) = result {
                eprintln!("bufring: server: {error}");
                std::process::exit(1);
            }
        })
        .map_err(|e| format!("start server thread: {e}"))?;
    ready_rx.recv_timeout(Duration::from_secs(10)).map_err(|_| "server thread did not start".to_string())?;
    // Baseline after the runtime or ring (and its buffer pool, still untouched) exists, before any connection.
    let rss_before = rss_kib()?;

    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut child = Command::new(exe)
        .args(["client", "--addr", &addr.to_string(), "--scenario", run.scenario.name(), "--conns"])
        .arg(conns.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("start client process: {e}"))?;
    let measured = match run.scenario {
        Scenario::Idle => measure_idle(&mut child, conns, rss_before, Duration::from_secs(run.settle)),
        Scenario::Stream => measure_stream(&mut child, conns, rss_before, Duration::from_secs(run.secs)),
    };
    // Closing its stdin tells the client to reset every connection and exit.
    drop(child.stdin.take());
    let status = child.wait().map_err(|e| format!("wait for client: {e}"))?;
    let mut fields = measured?;
    if !status.success() {
        return Err(format!("client failed: {status}"));
    }
    fields.insert(0, ("scenario".into(), run.scenario.name().into()));
    fields.insert(1, ("conns".into(), conns.to_string()));
    let label = mode.label();
    let pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    print_out(&format!("{label}, {}\nRESULT mode={} {}\n", human(&fields), label.replace(' ', "_"), pairs.join(" ")))?;
    // Returning ends the process and with it the server thread, still parked in its event loop.
    Ok(())
}

type Fields = Vec<(String, String)>;

fn human(fields: &Fields) -> String {
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("?");
    if get("scenario") == "idle" {
        format!(
            "idle, {} connections: RSS {} -> {} KiB, {} B per connection",
            get("conns"),
            get("rss_before_kib"),
            get("rss_after_kib"),
            get("rss_per_conn_b")
        )
    } else {
        format!(
            "stream, {} connections: {} GiB/s, {} server CPU-s per GiB ({}% of a core), {} KiB per read, \
             {} ENOBUFS, RSS +{} KiB",
            get("conns"),
            get("gib_per_s"),
            get("cpu_s_per_gib"),
            get("cpu_pct"),
            get("kib_per_read"),
            get("enobufs"),
            get("rss_delta_kib")
        )
    }
}

fn listen() -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    // somaxconn's default: a connect burst of 15,000 must not overflow the accept queue into SYN retries.
    socket.listen(4096)?;
    Ok(socket.into())
}

fn wait_until(child: &mut Child, what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("client exited ({status}) before {what}"));
        }
        if started.elapsed() > SETUP_TIMEOUT {
            return Err(format!(
                "timed out waiting for {what}: {} accepted, {} read from",
                STATS.accepted.load(Ordering::Relaxed),
                STATS.first_reads.load(Ordering::Relaxed)
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn measure_idle(child: &mut Child, conns: usize, rss_before: u64, settle: Duration) -> Result<Fields, String> {
    let started = Instant::now();
    wait_until(child, "every connection's first message", || {
        STATS.first_reads.load(Ordering::Relaxed) >= conns as u64
    })?;
    let setup = started.elapsed();
    thread::sleep(settle);
    let rss_after = rss_kib()?;
    let per_conn = (rss_after as f64 - rss_before as f64) * 1024.0 / conns as f64;
    Ok(vec![
        ("rss_before_kib".into(), rss_before.to_string()),
        ("rss_after_kib".into(), rss_after.to_string()),
        ("rss_per_conn_b".into(), format!("{per_conn:.0}")),
        ("setup_s".into(), format!("{:.2}", setup.as_secs_f64())),
    ])
}

fn measure_stream(child: &mut Child, conns: usize, rss_before: u64, window: Duration) -> Result<Fields, String> {
    wait_until(child, "every connection's first bytes", || STATS.first_reads.load(Ordering::Relaxed) >= conns as u64)?;
    thread::sleep(WARMUP);
    let (bytes0, reads0, enobufs0, cpu0) = (
        STATS.bytes.load(Ordering::Relaxed),
        STATS.reads.load(Ordering::Relaxed),
        STATS.enobufs.load(Ordering::Relaxed),
        cpu_seconds()?,
    );
    let started = Instant::now();
    thread::sleep(window);
    let cpu = cpu_seconds()? - cpu0;
    let wall = started.elapsed().as_secs_f64();
    let bytes = STATS.bytes.load(Ordering::Relaxed) - bytes0;
    let reads = STATS.reads.load(Ordering::Relaxed) - reads0;
    let enobufs = STATS.enobufs.load(Ordering::Relaxed) - enobufs0;
    let rss_delta = rss_kib()? as i64 - rss_before as i64;
    if bytes == 0 {
        return Err("no bytes read in the measured window".into());
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Ok(vec![
        ("gib".into(), format!("{gib:.2}")),
        ("gib_per_s".into(), format!("{:.2}", gib / wall)),
        ("cpu_s_per_gib".into(), format!("{:.3}", cpu / gib)),
        ("cpu_pct".into(), format!("{:.0}", cpu / wall * 100.0)),
        ("kib_per_read".into(), format!("{:.1}", bytes as f64 / reads.max(1) as f64 / 1024.0)),
        ("enobufs".into(), enobufs.to_string()),
        ("rss_delta_kib".into(), rss_delta.to_string()),
    ])
}

/// Writes to stdout, an error rather than a panic when stdout is gone (a closed pipe).
fn print_out(text: &str) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| format!("write stdout: {e}"))
}

fn rss_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_string())
}

/// User + system CPU of the whole server process: the event loop thread, io_uring's io-wq workers (threads
/// of this process) and the mostly sleeping measuring thread.
fn cpu_seconds() -> Result<f64, String> {
    // SAFETY: getrusage writes only into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(format!("getrusage: {}", io::Error::last_os_error()));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

// ---------------------------------------------------------------------------------------------------------
// Mode `owned`: tokio-uring as ringcast uses it.

fn run_owned(listener: TcpListener, buf: usize, ready: mpsc::Sender<()>) -> Result<(), String> {
    // Runtime::new rather than tokio_uring::start, which panics when io_uring cannot be set up. Default
    // builder: ringcast's shards use tokio_uring::start's defaults.
    let runtime = tokio_uring::Runtime::new(&tokio_uring::builder()).map_err(|e| format!("tokio-uring: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio_uring::net::TcpListener::from_std(listener);
        let _ = ready.send(());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    STATS.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio_uring::spawn(read_owned(stream, buf));
                }
                Err(error) if error.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(error) => return Err(format!("accept: {error}")),
            }
        }
    })
}

async fn read_owned(stream: tokio_uring::net::TcpStream, size: usize) {
    let mut buf = Vec::with_capacity(size);
    let mut first = true;
    loop {
        buf.clear();
        let (result, returned) = stream.read(buf).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => return,
            Ok(n) => count_read(n, &mut first),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Modes `raw-owned` and `ring`: one io-uring event loop on one thread.

const ACCEPT: u64 = 1 << 32;
const RECV: u64 = 2 << 32;
const KIND: u64 = 0xffff_ffff << 32;
const BUFFER_GROUP: u16 = 1;
const SQ_ENTRIES: u32 = 4096;
/// Multishot ops can post many completions per submission; a roomy CQ avoids the (lossless but slow)
/// overflow list.
const CQ_ENTRIES: u32 = 32768;

#[derive(Clone, Copy)]
enum Reads {
    Owned(usize),
    Ring { bufs: u16, size: u32, oneshot: bool },
}

/// Per connection, indexed by fd.
#[derive(Default)]
struct Conn {
    open: bool,
    first: bool,
    /// `raw-owned` only: the buffer the pending recv writes into. Its heap block does not move when the
    /// table grows, which keeps the pointer handed to the kernel valid.
    buf: Vec<u8>,
}

/// Fields drop in order: the ring (closing it cancels the pending recvs) before the pool and the connection
/// buffers those recvs point at. The loop only ends on an error, and the process exits then anyway.
struct RawServer {
    ring: IoUring,
    pool: Option<BufRing>,
    conns: Vec<Conn>,
    reads: Reads,
    listener: RawFd,
}

fn run_raw(listener: TcpListener, reads: Reads, ready: mpsc::Sender<()>) -> Result<(), String> {
    let ring =
        IoUring::builder().setup_cqsize(CQ_ENTRIES).build(SQ_ENTRIES).map_err(|e| format!("io_uring setup: {e}"))?;
    let pool = match reads {
        Reads::Ring { bufs, size, .. } => {
            Some(BufRing::new(&ring, bufs, size, BUFFER_GROUP).map_err(|e| format!("provided-buffer ring: {e}"))?)
        }
        Reads::Owned(_) => None,
    };
    let mut server = RawServer { ring, pool, conns: Vec::new(), reads, listener: listener.as_raw_fd() };
    server.event_loop(ready).map_err(|e| e.to_string())
}

impl RawServer {
    fn event_loop(&mut self, ready: mpsc::Sender<()>) -> io::Result<()> {
        let RawServer { ring, pool, conns, reads, listener } = self;
        let (submitter, mut sq, mut cq) = ring.split();
        push(&mut sq, &submitter, accept_entry(*listener))?;
        let _ = ready.send(());
        loop {
            sq.sync();
            match submitter.submit_and_wait(1) {
                Ok(_) => {}
                // EBUSY: completions are backed up; reaping them below is the cure.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            cq.sync();
            for cqe in &mut cq {
                let (data, result, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
                match data & KIND {
                    ACCEPT => {
                        if result >= 0 {
                            STATS.accepted.fetch_add(1, Ordering::Relaxed);
                            let fd = result;
                            let slot = fd as usize;
                            if conns.len() <= slot {
                                conns.resize_with(slot + 1, Conn::default);
                            }
                            let conn = &mut conns[slot];
                            *conn = Conn { open: true, first: true, buf: Vec::new() };
                            if let Reads::Owned(size) = *reads {
                                conn.buf = Vec::with_capacity(size);
                            }
                            push(&mut sq, &submitter, recv_entry(fd, conn, *reads))?;
                        } else if -result != libc::ECONNABORTED {
                            return Err(io::Error::from_raw_os_error(-result));
                        }
                        if !cqueue::more(flags) {
                            push(&mut sq, &submitter, accept_entry(*listener))?;
                        }
                    }
                    RECV => {
                        let fd = (data & !KIND) as RawFd;
                        let Some(conn) = conns.get_mut(fd as usize) else { continue };
                        // Nothing here looks at the bytes, so the buffer goes straight back. A real server
                        // would parse first, or copy out a partial message it has to keep (ringcast's chunk
                        // decoder keeps partial chunks across reads).
                        if let (Some(bid), Some(pool)) = (cqueue::buffer_select(flags), pool.as_mut()) {
                            pool.recycle(bid);
                        }
                        let armed = cqueue::more(flags);
                        if result > 0 {
                            count_read(result as usize, &mut conn.first);
                            if !armed {
                                push(&mut sq, &submitter, recv_entry(fd, conn, *reads))?;
                            }
                        } else if result == -libc::ENOBUFS || result == -libc::EINTR || result == -libc::EAGAIN {
                            // ENOBUFS: the ring ran dry and ended the multishot; buffers are back by the next
                            // submit (published below), so re-arming is enough.
                            if result == -libc::ENOBUFS {
                                STATS.enobufs.fetch_add(1, Ordering::Relaxed);
                            }
                            if !armed {
                                push(&mut sq, &submitter, recv_entry(fd, conn, *reads))?;
                            }
                        } else if !armed && conn.open {
                            // EOF or a socket error: no recv is pending any more, so the fd can go.
                            conn.open = false;
                            conn.buf = Vec::new();
                            // SAFETY: fd came from accept, is closed once (conn.open), and no op refers to it.
                            unsafe {
                                libc::close(fd);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(pool) = pool.as_mut() {
                pool.publish();
            }
            // Hands the consumed completions back: until then the kernel counts them as unread and the
            // next wait would return at once.
            cq.sync();
        }
    }
}

fn accept_entry(listener: RawFd) -> squeue::Entry {
    opcode::AcceptMulti::new(types::Fd(listener)).flags(libc::SOCK_CLOEXEC).build().user_data(ACCEPT)
}

fn recv_entry(fd: RawFd, conn: &mut Conn, reads: Reads) -> squeue::Entry {
    let entry = match reads {
        Reads::Owned(_) => opcode::Recv::new(types::Fd(fd), conn.buf.as_mut_ptr(), conn.buf.capacity() as u32).build(),
        Reads::Ring { oneshot: false, .. } => opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP).build(),
        // len 0: up to the selected buffer's length.
        Reads::Ring { oneshot: true, .. } => opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
            .buf_group(BUFFER_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT),
    };
    entry.user_data(RECV | fd as u64)
}

/// Queues one entry, submitting first when the queue is full.
fn push(
    sq: &mut io_uring::SubmissionQueue<'_>,
    submitter: &io_uring::Submitter<'_>,
    entry: squeue::Entry,
) -> io::Result<()> {
    loop {
        // SAFETY: what an entry points at outlives the op: a connection's Vec stays until its recv has
        // completed for the last time, the pool until the ring is gone (RawServer's field order).
        if unsafe { sq.push(&entry) }.is_ok() {
            return Ok(());
        }
        sq.sync();
        match submitter.submit() {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        sq.sync();
    }
}

/// A provided-buffer ring: `count` buffers of `size` bytes in one anonymous mapping, and the ring of
/// descriptors the kernel takes them from. Pages of the pool are only resident once the kernel has written
/// into them.
struct BufRing {
    entries: *mut types::BufRingEntry,
    entries_len: usize,
    pool: *mut u8,
    pool_len: usize,
    size: u32,
    mask: u16,
    /// Our tail, ahead of the published one until `publish`.
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16, size: u32, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--bufs must be a power of two up to 32768 and --size above 0",
            ));
        }
        let entries_len = count as usize * std::mem::size_of::<types::BufRingEntry>();
        let pool_len = count as usize * size as usize;
        // mmap for both: the ring must be page-aligned, and the pool should be untouched (not resident)
        // until the kernel fills a buffer.
        let entries = map_anonymous(entries_len)?;
        let pool = match map_anonymous(pool_len) {
            Ok(pool) => pool,
            Err(e) => {
                unmap(entries, entries_len);
                return Err(e);
            }
        };
        let mut bufs = BufRing { entries: entries.cast(), entries_len, pool, pool_len, size, mask: count - 1, tail: 0 };
        // SAFETY: the mapping is page-aligned, holds `count` entries and outlives the registration (dropped
        // after the ring, see RawServer).
        unsafe { ring.submitter().register_buf_ring_with_flags(bufs.entries as u64, count, group, 0)? };
        for bid in 0..count {
            bufs.recycle(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Puts buffer `bid` back; the kernel sees it after `publish`.
    fn recycle(&mut self, bid: u16) {
        // SAFETY: the index is masked into the mapping; the kernel reads only slots past the published tail.
        let slot = unsafe { &mut *self.entries.add((self.tail & self.mask) as usize) };
        slot.set_addr(self.pool as u64 + bid as u64 * self.size as u64);
        slot.set_len(self.size);
        slot.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is a u16 in the ring's first slot, shared with the kernel, which reads it
        // atomically; Release orders the slot writes before it.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        unmap(self.pool, self.pool_len);
        unmap(self.entries.cast(), self.entries_len);
    }
}

fn map_anonymous(len: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is involved.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED { Err(io::Error::last_os_error()) } else { Ok(addr.cast()) }
}

fn unmap(addr: *mut u8, len: usize) {
    // SAFETY: addr and len are exactly a mapping made by map_anonymous, unmapped once.
    unsafe {
        libc::munmap(addr.cast(), len);
    }
}

// ---------------------------------------------------------------------------------------------------------
// The client process.

fn client(addr: SocketAddr, scenario: Scenario, conns: usize) -> Result<(), String> {
    let mut streams = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("client connection {i}: {e}"))?;
        if scenario == Scenario::Idle {
            stream.write_all(&HELLO).map_err(|e| format!("client connection {i}: {e}"))?;
        }
        streams.push(stream);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    if scenario == Scenario::Stream {
        for (i, stream) in streams.drain(..).enumerate() {
            let stop = stop.clone();
            let sender = thread::Builder::new()
                .spawn(move || send_until(stream, &stop, i))
                .map_err(|e| format!("client thread {i}: {e}"))?;
            senders.push(sender);
        }
    }
    // The server closes our stdin when it has measured (or when it exits).
    let _ = io::stdin().read_to_end(&mut Vec::new());
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        let _ = sender.join();
    }
    for stream in &streams {
        reset(stream);
    }
    Ok(())
}

fn send_until(mut stream: TcpStream, stop: &AtomicBool, i: usize) {
    let chunk = vec![0x5a_u8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = stream.write_all(&chunk) {
            if !stop.load(Ordering::Relaxed) {
                eprintln!("bufring: client connection {i}: {e}");
            }
            break;
        }
    }
    reset(&stream);
}

/// Linger 0: close with a reset and leave no TIME_WAIT, so back-to-back runs of 15,000 connections do not
/// run out of loopback ports.
fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

// ---------------------------------------------------------------------------------------------------------
// matrix: every configuration, fresh processes, tables with min-max over the runs.

fn matrix(runs: usize, idle_conns: usize, stream_conns: usize, secs: u64) -> Result<(), String> {
    let idle: &[&[&str]] = &[
        &["owned", "--buf", "512"],
        &["owned", "--buf", "4096"],
        &["raw-owned", "--buf", "512"],
        &["ring", "--bufs", "256", "--size", "16384"],
    ];
    let stream: &[&[&str]] = &[
        &["owned", "--buf", "4096"],
        &["owned", "--buf", "65536"],
        &["raw-owned", "--buf", "4096"],
        &["raw-owned", "--buf", "65536"],
        &["ring", "--bufs", "1024", "--size", "4096"],
        &["ring", "--bufs", "256", "--size", "16384"],
        &["ring", "--bufs", "128", "--size", "65536"],
        &["ring", "--bufs", "256", "--size", "16384", "--oneshot"],
        &["ring", "--bufs", "128", "--size", "65536", "--oneshot"],
    ];
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut results: BTreeMap<(usize, usize), Vec<BTreeMap<String, String>>> = BTreeMap::new();
    // Interleaved (run 1 of everything, then run 2, ...) so load from others on the shared cores spreads
    // over the configurations instead of landing on one.
    for run in 1..=runs {
        for (table, configs, conns) in [(0, idle, idle_conns), (1, stream, stream_conns)] {
            for (i, config) in configs.iter().enumerate() {
                let scenario = if table == 0 { "idle" } else { "stream" };
                eprintln!("run {run}/{runs}: {} --scenario {scenario}", config.join(" "));
                let output = Command::new(&exe)
                    .args(config.iter())
                    .args(["--scenario", scenario, "--conns", &conns.to_string(), "--secs", &secs.to_string()])
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("start {}: {e}", config.join(" ")))?;
                let stdout = String::from_utf8_lossy(&output.stdout);
                let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
                    eprintln!("bufring: {} --scenario {scenario} failed ({})", config.join(" "), output.status);
                    continue;
                };
                eprintln!("  {}", stdout.lines().next().unwrap_or(""));
                let fields = line.split(' ').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into()));
                results.entry((table, i)).or_default().push(fields.collect());
            }
        }
    }
    let mut out = vec![
        format!("\nIdle: {idle_conns} connections, RSS growth per connection, {runs} runs (min-max)\n"),
        "| mode | RSS per connection (B) | RSS before -> after (MiB) |".into(),
        "| --- | --- | --- |".into(),
    ];
    for (i, config) in idle.iter().enumerate() {
        let rows = results.get(&(0, i)).map(Vec::as_slice).unwrap_or(&[]);
        out.push(format!(
            "| {} | {} | {} -> {} |",
            config.join(" "),
            range(rows, "rss_per_conn_b", 1.0, 0),
            range(rows, "rss_before_kib", 1.0 / 1024.0, 1),
            range(rows, "rss_after_kib", 1.0 / 1024.0, 1)
        ));
    }
    out.extend([
        format!("\nStreaming: {stream_conns} connections, {secs} s measured, {runs} runs (min-max)\n"),
        "| mode | GiB/s | server CPU-s per GiB | server CPU (% of a core) | KiB per read | ENOBUFS | RSS growth (MiB) |"
            .into(),
        "| --- | --- | --- | --- | --- | --- | --- |".into(),
    ]);
    for (i, config) in stream.iter().enumerate() {
        let rows = results.get(&(1, i)).map(Vec::as_slice).unwrap_or(&[]);
        out.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            config.join(" "),
            range(rows, "gib_per_s", 1.0, 2),
            range(rows, "cpu_s_per_gib", 1.0, 3),
            range(rows, "cpu_pct", 1.0, 0),
            range(rows, "kib_per_read", 1.0, 1),
            range(rows, "enobufs", 1.0, 0),
            range(rows, "rss_delta_kib", 1.0 / 1024.0, 1)
        ));
    }
    out.push(String::new());
    print_out(&out.join("\n"))
}

/// "min-max" of a field over the runs, scaled, or "min" when they agree at that precision.
fn range(rows: &[BTreeMap<String, String>], key: &str, scale: f64, decimals: usize) -> String {
    let values: Vec<f64> = rows.iter().filter_map(|r| r.get(key)?.parse::<f64>().ok()).map(|v| v * scale).collect();
    if values.is_empty() {
        return "-".into();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = (format!("{min:.decimals$}"), format!("{max:.decimals$}"));
    if lo == hi { lo } else { format!("{lo}-{hi}") }
}
