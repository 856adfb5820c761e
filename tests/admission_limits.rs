//! The admission limits with real clients: a flood of half-open and slow connections from one
//! address while ffmpeg publishes and ffprobe plays from another, and the stream limits
//! answered in each protocol's words (RTMP onStatus, HTTP 503, RTSP 503), and the gauge of open
//! connections they are counted against.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use common::http_flv_client::{FlvPlayer, status_and_head};
use common::rtmp_client::RtmpClient;
use common::rtsp_client::RtspConnection;
use common::{
    TestServer, assert_plays_h264_aac, eventually, ffmpeg_publish, ffprobe_json, metric_total, require_ffmpeg,
};
use ringcast::protocol::rtmp::client::Goal;

const WAIT: Duration = Duration::from_secs(20);
/// The flood's own loopback address: the real clients use 127.0.0.1.
const FLOOD_FROM: &str = "127.0.0.2:0";

/// A connection to `addr` from [`FLOOD_FROM`].
fn connect_from_flood(addr: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.bind(&FLOOD_FROM.parse::<SocketAddr>().unwrap().into()).ok()?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(1)).ok()?;
    Some(socket.into())
}

/// What a slow client sends, a byte at a time, on each port: never a whole handshake or head.
fn slow_bytes(port: usize) -> &'static [u8] {
    match port {
        0 => b"\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        1 => b"GET /live/flood.flv HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890",
        _ => b"OPTIONS rtsp://127.0.0.1/live/flood RTSP/1.0\r\nCSeq: 1\r\nX-Slow: 12345",
    }
}

#[test]
fn a_flood_of_half_open_and_slow_connections_leaves_real_clients_served() {
    require_ffmpeg();
    let server = TestServer::start_with_config("handshake_timeout = \"2s\"\nmax_connections_per_ip = 60\n", &[]);
    if connect_from_flood(server.rtmp_addr()).is_none() {
        eprintln!("skipped: cannot connect from {FLOOD_FROM} on this host");
        return;
    }
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 30, (320, 240));
    assert!(server.wait_for_line_with(&["publish start", "live/cam"], WAIT), "{}", publisher.report("publisher"));

    let ports = [server.rtmp_addr(), server.http_addr(), server.rtsp_addr()];
    let flooding = Arc::new(AtomicBool::new(true));
    let answered_503 = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..3)
        .map(|flooder| {
            let (flooding, answered_503) = (flooding.clone(), answered_503.clone());
            thread::spawn(move || {
                // Half-open ones say nothing; slow ones send a byte every 300 ms.
                let mut held: Vec<(TcpStream, usize, usize)> = Vec::new();
                let mut next_byte = Instant::now();
                while flooding.load(Ordering::Relaxed) {
                    for (port, addr) in ports.iter().enumerate() {
                        if held.len() < 100
                            && let Some(stream) = connect_from_flood(*addr)
                        {
                            stream.set_nonblocking(true).unwrap();
                            held.push((stream, port, if flooder == 0 { usize::MAX } else { 0 }));
                        }
                    }
                    if Instant::now() >= next_byte {
                        next_byte = Instant::now() + Duration::from_millis(300);
                        held.retain_mut(|(stream, port, sent)| {
                            let mut buf = [0u8; 512];
                            match stream.read(&mut buf) {
                                Ok(0) => return false,
                                Ok(n) => {
                                    if buf[..n].starts_with(b"HTTP/1.1 503") {
                                        answered_503.fetch_add(1, Ordering::Relaxed);
                                    }
                                    return false;
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(_) => return false,
                            }
                            let bytes = slow_bytes(*port);
                            if *sent < bytes.len() {
                                let _ = stream.write(&bytes[*sent..*sent + 1]);
                                *sent += 1;
                            }
                            true
                        });
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();

    // Real clients, from 127.0.0.1, meanwhile.
    thread::sleep(Duration::from_secs(1));
    let rtmp = ffprobe_json(&server.rtmp_url("live/cam"), WAIT);
    assert_plays_h264_aac(&rtmp, (320, 240), "RTMP player during the flood");
    let flv = ffprobe_json(&format!("http://{}/live/cam.flv", server.http_addr()), WAIT);
    assert_plays_h264_aac(&flv, (320, 240), "HTTP-FLV player during the flood");
    // Past the handshake timeout, so the slow ones have been closed and replaced.
    thread::sleep(Duration::from_secs(3));
    flooding.store(false, Ordering::Relaxed);
    for flooder in flood {
        flooder.join().unwrap();
    }
    assert!(publisher.is_running(), "the publisher survived the flood\n{}", publisher.report("publisher"));

    let metrics = server.metrics();
    assert!(metric_total(&metrics, "ringcast_refused_connections_per_ip_total") > 0, "{metrics}");
    assert!(metric_total(&metrics, "ringcast_handshake_timeouts_total") > 0, "{metrics}");
    assert!(answered_503.load(Ordering::Relaxed) > 0, "refused HTTP clients are answered 503");
    // Paced: far fewer lines than refusals.
    let lines = server.log_count("max_connections_per_ip reached");
    let refused = metric_total(&metrics, "ringcast_refused_connections_per_ip_total") as usize;
    assert!((1..=10).contains(&lines) && lines < refused, "{lines} lines for {refused} refusals");
}

/// `ringcast_connections` counts the connections open on the media ports (every protocol's),
/// whether or not they ever get as far as playing, and falls back when they close: what an
/// operator compares with `max_connections`, and what a soak subtracts from the descriptors.
#[test]
fn open_connections_are_a_gauge_of_every_protocols_port() {
    let server = TestServer::start_with_config("handshake_timeout = \"30s\"\n", &[]);
    let open = || metric_total(&server.metrics(), "ringcast_connections");
    assert_eq!(open(), 0, "{}", server.metrics());
    let ports = [server.rtmp_addr(), server.http_addr(), server.rtsp_addr()];
    let held: Vec<TcpStream> = (0..12).map(|i| TcpStream::connect(ports[i % 3]).expect("connect")).collect();
    let counted = eventually(WAIT, || (open() == 12).then_some(()));
    assert!(counted.is_some(), "12 open connections, the gauge says {}", open());
    drop(held);
    let fell = eventually(WAIT, || (open() == 0).then_some(()));
    assert!(fell.is_some(), "all closed, the gauge says {}", open());
}

#[test]
fn stream_limits_are_answered_in_each_protocols_words() {
    let server =
        TestServer::start_with_config("max_streams = 2\nmax_players_per_stream = 1\nmax_publishers_per_ip = 1\n", &[]);
    let addr = server.rtmp_addr();
    let _publisher = RtmpClient::publisher(addr, "a");

    // A second publish from the same address: RTMP's refusal.
    let mut second = RtmpClient::connect(addr, "live", Goal::Publish("b".into())).unwrap();
    second.wait_status("NetStream.Publish.BadName", WAIT).expect("max_publishers_per_ip refuses in onStatus");

    // One player per stream: the second HTTP-FLV player of live/a gets 503.
    let first = FlvPlayer::get(server.http_addr(), "/live/a.flv", WAIT);
    assert_eq!(first.status, 200, "{}", first.head);
    let mut refused = TcpStream::connect(server.http_addr()).unwrap();
    refused.write_all(b"GET /live/a.flv HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (reply, _) = common::http_flv_client::read_until_closed(&mut refused, WAIT);
    assert_eq!(status_and_head(&reply).0, 503, "{}", String::from_utf8_lossy(&reply));

    // Two streams at most: live/a and one awaited by an RTMP player.
    let _waiting = RtmpClient::player(addr, "c");
    let mut rtsp = RtspConnection::connect(server.rtsp_addr());
    let reply = rtsp.request("DESCRIBE", &server.rtsp_url("live/d"), &[("Accept", "application/sdp")], "");
    assert_eq!(reply.status, 503, "{reply:?}");
    let mut third = RtmpClient::connect(addr, "live", Goal::Play("e".into())).unwrap();
    third.wait_status("NetStream.Play.Failed", WAIT).expect("max_streams refuses a play in onStatus");

    let counted = eventually(WAIT, || {
        let metrics = server.metrics();
        let all = [
            "ringcast_refused_publishers_per_ip_total",
            "ringcast_refused_players_total",
            "ringcast_refused_streams_total",
        ]
        .map(|name| metric_total(&metrics, name));
        (all == [1, 1, 2]).then_some(())
    });
    assert!(counted.is_some(), "{}", server.metrics());
    for key in ["max_publishers_per_ip reached", "max_players_per_stream reached", "max_streams reached"] {
        assert!(server.log_count(key) >= 1, "{key}\n{}", server.log());
    }
}
