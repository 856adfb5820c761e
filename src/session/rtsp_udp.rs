//! RTP and RTCP over UDP for RTSP sessions (RFC 2326, `client_port`/`server_port`).
//!
//! **Ports.** A session that sets up a track over UDP gets one pair of sockets, RTP on an
//! even port and RTCP on the next, taken from `rtsp_udp_ports` (default 30000-39999) and
//! bound on the wildcard address of the client's family. Every track of the session shares
//! the pair: what arrives is told apart by its source port, each track's `client_port`. Each
//! shard starts its search in its own part of the range, and a port in use (another shard,
//! another program) is skipped; a range with no free pair answers the SETUP `461`.
//!
//! **Receiving.** The pair lives on the session's shard: one task per socket receives on that
//! shard's ring and queues datagrams from the client's IP (others are dropped: nobody else
//! may inject into a stream) in the session's bounded [`UdpInbox`], which the session reads
//! beside its RTSP connection. A publisher's RTP becomes hub packets there, as interleaved
//! frames do; every datagram keeps the session alive. Datagrams over [`MAX_DATAGRAM`] bytes
//! are cut and then dropped as malformed (RTP senders keep packets below the MTU).
//!
//! **Sending.** A UDP player's writer ([`UdpPlayerWriter`]) sends each of the stream's shared
//! RTP packets (without their length prefix) to the track's client RTP port, and sender
//! reports to its RTCP port: what one write of the player gathered (its shard's merge window)
//! goes out in one `sendmmsg`, within `send_timeout`. The RTSP replies still go over the TCP
//! connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use std::os::fd::{AsRawFd, RawFd};

use bytes::Bytes;
use socket2::SockAddr;
use tokio::sync::Notify;
use tokio_uring::net::{TcpStream, UdpSocket};

use super::flush::ShardFlush;
use super::io::{PendingOutput, send_timed_out};
use super::rtsp_out::{RtspOutput, SENDER_REPORT_INTERVAL, StreamRtp, rtp_packets};
use crate::hub::{Player, PlayerItem, WriteCut};
use crate::protocol::rtp::PacketList;

/// Largest datagram taken whole.
pub const MAX_DATAGRAM: usize = 2048;
/// Datagrams a session's inbox holds before it drops new ones (a session that cannot keep up
/// loses packets, as UDP would).
const INBOX_DATAGRAMS: usize = 1024;
/// Pairs tried per allocation before giving up.
const BIND_ATTEMPTS: usize = 64;

/// The UDP ports sessions may use, and where this shard looks next.
#[derive(Debug)]
pub struct PortRange {
    first: u16,
    last: u16,
    next: Cell<u16>,
}

impl PortRange {
    /// `first..=last` (`first` even), searched from a pair `seed` picks: shards seeded apart
    /// start apart, and seldom try a port another shard holds.
    pub fn new((first, last): (u16, u16), seed: u64) -> PortRange {
        let pairs = u64::from(last.saturating_sub(first) / 2 + 1);
        let start = first + 2 * (seed % pairs) as u16;
        PortRange { first, last, next: Cell::new(start) }
    }

    fn take(&self) -> u16 {
        let port = self.next.get();
        let next = if port.saturating_add(3) > self.last { self.first } else { port + 2 };
        self.next.set(next);
        port
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::new(DEFAULT_PORTS, 0)
    }
}

/// `rtsp_udp_ports`' default.
pub const DEFAULT_PORTS: (u16, u16) = (30000, 39999);

/// A datagram from the client.
#[derive(Debug)]
pub struct Datagram {
    /// It came to the RTCP port.
    pub rtcp: bool,
    pub from: SocketAddr,
    pub data: Bytes,
}

/// Datagrams waiting for their session.
#[derive(Debug, Default)]
pub struct UdpInbox {
    queue: RefCell<VecDeque<Datagram>>,
    notify: Notify,
    closed: Cell<bool>,
    /// Dropped because the inbox was full.
    pub dropped: Cell<u64>,
}

impl UdpInbox {
    fn push(&self, datagram: Datagram) {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= INBOX_DATAGRAMS {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        queue.push_back(datagram);
        self.notify.notify_one();
    }

    /// Waits for a datagram (cancel-safe: nothing is taken until it resolves).
    pub async fn ready(&self) {
        while self.queue.borrow().is_empty() {
            self.notify.notified().await;
        }
    }

    pub fn pop(&self) -> Option<Datagram> {
        self.queue.borrow_mut().pop_front()
    }
}

/// A session's RTP and RTCP sockets.
pub struct UdpPair {
    pub rtp: Rc<UdpSocket>,
    pub rtcp: Rc<UdpSocket>,
    pub ports: (u16, u16),
    pub inbox: Rc<UdpInbox>,
    /// Bound on the IPv6 wildcard: its own wake-up goes to `::1`.
    v6: bool,
}

impl UdpPair {
    /// Binds a free pair from `range` for a client at `client`, and starts receiving from it.
    pub async fn bind(range: &PortRange, client: IpAddr) -> io::Result<UdpPair> {
        let wildcard = match client {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free UDP port pair in rtsp_udp_ports");
        for _ in 0..BIND_ATTEMPTS {
            let port = range.take();
            let rtp = match UdpSocket::bind(SocketAddr::new(wildcard, port)).await {
                Ok(socket) => socket,
                Err(error) => {
                    last_error = error;
                    continue;
                }
            };
            let rtcp = match UdpSocket::bind(SocketAddr::new(wildcard, port + 1)).await {
                Ok(socket) => socket,
                Err(error) => {
                    last_error = error;
                    continue;
                }
            };
            let pair = UdpPair {
                rtp: Rc::new(rtp),
                rtcp: Rc::new(rtcp),
                ports: (port, port + 1),
                inbox: Rc::default(),
                v6: client.is_ipv6(),
            };
            for (socket, rtcp) in [(pair.rtp.clone(), false), (pair.rtcp.clone(), true)] {
                tokio::task::spawn_local(receive(socket, client, rtcp, pair.inbox.clone()));
            }
            return Ok(pair);
        }
        Err(last_error)
    }

    /// Stops the receive tasks: each socket gets an empty datagram from the other, which ends
    /// its pending receive (an abandoned receive would keep the port bound until a datagram
    /// came).
    pub fn close(&self) {
        self.inbox.closed.set(true);
        let (rtp, rtcp, ports) = (self.rtp.clone(), self.rtcp.clone(), self.ports);
        let loopback = if self.v6 { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) };
        tokio::task::spawn_local(async move {
            let loopback = |port| SocketAddr::new(loopback, port);
            let _ = rtcp.send_to(Vec::<u8>::new(), loopback(ports.0)).await;
            let _ = rtp.send_to(Vec::<u8>::new(), loopback(ports.1)).await;
        });
    }
}

/// Receives on `socket` until the session closes its pair.
async fn receive(socket: Rc<UdpSocket>, client: IpAddr, rtcp: bool, inbox: Rc<UdpInbox>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (result, returned) = socket.recv_from(buf).await;
        buf = returned;
        if inbox.closed.get() {
            return;
        }
        match result {
            Ok((len, from)) if from.ip() == client && len > 0 => {
                inbox.push(Datagram { rtcp, from, data: Bytes::copy_from_slice(&buf[..len]) });
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "RTSP UDP receive failed");
                // An ICMP error from a closed client port surfaces here; keep receiving.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A UDP player's writer: the stream's RTP packets to each track's client RTP port, one
/// `sendmmsg` per write (the player's queue as its merge window gathered it), bounded by
/// `send_timeout` as a TCP player's writes are.
pub struct UdpPlayerWriter {
    pub rtp_socket: Rc<UdpSocket>,
    pub rtcp_socket: Rc<UdpSocket>,
    pub player: Rc<Player>,
    pub rtp: Rc<RefCell<StreamRtp>>,
    /// Per stream track: the client's RTP and RTCP addresses, `None` when not set up.
    pub destinations: Vec<Option<(SocketAddr, SocketAddr)>>,
    pub bytes_out: Rc<Cell<u64>>,
    pub shared: Rc<RtspOutput>,
    pub send_timeout: Duration,
    /// Where a failed send is reported to the session, whose RTSP connection (`control`) is
    /// then shut down so its pending read ends.
    pub output: Rc<PendingOutput>,
    pub control: Rc<TcpStream>,
}

impl UdpPlayerWriter {
    /// Starts the writer on this shard, its writes merged over the shard's window (`flush`)
    /// and their deadlines watched by the shard's sweep, as a TCP player's writer is.
    pub fn spawn(self, flush: &ShardFlush) {
        flush.attach(&self.player);
        flush.watch(&self.player);
        tokio::task::spawn_local(self.run());
    }

    /// Sends until the player is kicked or leaves, or a send fails or times out.
    async fn run(self) {
        if let Err(error) = self.send_loop().await {
            tracing::debug!(conn_id = self.player.conn_id, %error, "UDP player writer stopped");
            self.output.fail(error);
            let _ = self.control.shutdown(std::net::Shutdown::Both);
        }
    }

    async fn send_loop(&self) -> io::Result<()> {
        let mut items = Vec::new();
        let mut rtp = Vec::new();
        let mut rtcp = Vec::new();
        let mut next_report = Instant::now() + Duration::from_millis(500);
        loop {
            self.player.ready().await;
            if self.player.is_kicked() {
                return Ok(());
            }
            items.clear();
            self.player.take(&mut items);
            for item in items.drain(..) {
                match item {
                    PlayerItem::Packet(packet) => {
                        let Some(track) = self.rtp.borrow().track_of(packet.kind) else { continue };
                        let Some(Some((destination, _))) = self.destinations.get(track) else { continue };
                        let list = rtp_packets(&self.rtp, &packet);
                        if !packet.sequence_header {
                            self.shared.mark_sent(&packet);
                        }
                        rtp.extend(PacketList(list).packets().map(|packet| (packet, *destination)));
                    }
                    PlayerItem::Unpublished => self.shared.end(),
                    PlayerItem::Published => {}
                }
            }
            let now = Instant::now();
            if now >= next_report && !self.shared.is_paused() {
                next_report = now + SENDER_REPORT_INTERVAL;
                for (track, destination) in self.destinations.iter().enumerate() {
                    let Some((_, to)) = destination else { continue };
                    let mut report = Vec::new();
                    self.rtp.borrow().sender_report(track, SystemTime::now(), &mut report);
                    if !report.is_empty() {
                        rtcp.push((Bytes::from(report), *to));
                    }
                }
            }
            let sending = async {
                let sent = send_all(&self.rtp_socket, &mut rtp).await? + send_all(&self.rtcp_socket, &mut rtcp).await?;
                self.bytes_out.set(self.bytes_out.get() + sent as u64);
                Ok::<(), io::Error>(())
            };
            // The same bound as a TCP player's write: the player keeps the deadline and the
            // shard's sweep cuts it, so a send costs no timer of its own.
            match self.player.write_within(Instant::now() + self.send_timeout, sending).await {
                Ok(result) => result?,
                Err(WriteCut::Kicked) => return Ok(()),
                Err(WriteCut::TimedOut) => return Err(send_timed_out(self.send_timeout)),
            }
        }
    }
}

/// Sends every datagram of `datagrams` (emptied), each to its address; returns the bytes
/// sent. As many as the socket takes go in one `sendmmsg` without waiting; past a full send
/// buffer the rest wait on the ring one by one. A datagram the network refuses (an ICMP error
/// from a closed client port) is lost, as UDP loses it: that is not the player's failure.
async fn send_all(socket: &UdpSocket, datagrams: &mut Vec<(Bytes, SocketAddr)>) -> io::Result<usize> {
    let mut bytes = 0;
    let mut at = 0;
    while at < datagrams.len() {
        match send_now(socket.as_raw_fd(), &datagrams[at..]) {
            Ok(0) | Err(_) => {
                let (data, to) = datagrams[at].clone();
                let len = data.len();
                match socket.send_to(data, to).await.0 {
                    Ok(_) => bytes += len,
                    Err(error) if is_network_refusal(&error) => {}
                    Err(error) => return Err(error),
                }
                at += 1;
            }
            Ok(sent) => {
                bytes += datagrams[at..at + sent].iter().map(|(data, _)| data.len()).sum::<usize>();
                at += sent;
            }
        }
    }
    datagrams.clear();
    Ok(bytes)
}

/// Errors that are the network's answer about one datagram, not the socket's failure.
fn is_network_refusal(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EMSGSIZE))
}

/// Datagrams handed to one `sendmmsg` at most.
const BATCH: usize = 64;

/// One non-blocking `sendmmsg` of the first datagrams of `datagrams`: how many the kernel
/// took (0 when the send buffer is full).
fn send_now(fd: RawFd, datagrams: &[(Bytes, SocketAddr)]) -> io::Result<usize> {
    let batch = &datagrams[..datagrams.len().min(BATCH)];
    let addresses: Vec<SockAddr> = batch.iter().map(|(_, to)| SockAddr::from(*to)).collect();
    let mut iovecs: Vec<libc::iovec> = batch
        .iter()
        .map(|(data, _)| libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() })
        .collect();
    let mut messages: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(&addresses)
        .map(|(iovec, address)| {
            // SAFETY: an all-zero msghdr is a valid empty one; the fields set point into
            // `addresses` and `iovecs`, which outlive the call.
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            header.msg_name = address.as_ptr() as *mut libc::c_void;
            header.msg_namelen = address.len();
            header.msg_iov = iovec;
            header.msg_iovlen = 1;
            libc::mmsghdr { msg_hdr: header, msg_len: 0 }
        })
        .collect();
    // SAFETY: `messages` holds `messages.len()` initialized headers whose pointers are valid
    // for the call; MSG_DONTWAIT keeps the shard from blocking.
    let sent = unsafe { libc::sendmmsg(fd, messages.as_mut_ptr(), messages.len() as libc::c_uint, libc::MSG_DONTWAIT) };
    if sent >= 0 {
        return Ok(sent as usize);
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs_are_even_and_wrap_around_the_range() {
        let range = PortRange::new((30000, 30005), 4);
        // Three pairs: 30000, 30002, 30004; seed 4 starts at the second.
        let taken: Vec<u16> = (0..4).map(|_| range.take()).collect();
        assert_eq!(taken, [30002, 30004, 30000, 30002]);
        let single = PortRange::new((40000, 40001), 99);
        assert_eq!((single.take(), single.take()), (40000, 40000));
    }
}
