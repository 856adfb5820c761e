//! Hostile and broken clients on the RTMP port: each must cost only its own connection, never
//! the server or another client's stream. Uses ffmpeg/ffprobe as the well-behaved bystanders.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Client, TestServer, assert_plays_h264_aac, ffmpeg_publish, pseudo_random_bytes, set_linger_zero, tcp_connect,
    tcp_send, try_ffprobe_json, wait_closed,
};

const SMALL: (u32, u32) = (320, 240);
const PROBE: Duration = Duration::from_secs(15);
const HTTP_GET: &[u8] = b"GET /live/test HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n";

/// Garbage that cannot be mistaken for a handshake: its first byte is not version 3 (a
/// garbage C0 of 3 would make the server wait, legitimately, for the rest of C1).
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = pseudo_random_bytes(seed, len);
    if bytes[0] == 3 {
        bytes[0] = 0xfe;
    }
    bytes
}

/// A publisher on `live/test`, accepted by the server.
fn start_publisher(server: &TestServer, seconds: u32) -> Client {
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/test"), seconds, SMALL);
    if !server.wait_for_log("publish start", Duration::from_secs(10)) {
        panic!("{}\n--- server log ---\n{}", publisher.report("server logged no publish start"), server.log());
    }
    publisher
}

/// Plays `live/test` with ffprobe on another thread while the caller misbehaves on this one.
fn probe_in_background(server: &TestServer) -> thread::JoinHandle<Result<serde_json::Value, String>> {
    let url = server.rtmp_url("live/test");
    thread::spawn(move || try_ffprobe_json(&url, PROBE))
}

fn join_probe(
    probe: thread::JoinHandle<Result<serde_json::Value, String>>,
    server: &TestServer,
    publisher: &mut Client,
) {
    let json = probe.join().expect("probe thread panicked").unwrap_or_else(|error| {
        panic!("{error}\n{}\n--- server log ---\n{}", publisher.report("publisher"), server.log())
    });
    assert_plays_h264_aac(&json, SMALL, &server.log());
}

/// The server's `rtmp session closed` line for the client socket at `client`, once it appears.
fn closed_line_for(server: &TestServer, client: SocketAddr, timeout: Duration) -> Option<String> {
    let token = format!("peer={client}");
    common::eventually(timeout, || {
        server
            .log_lines_with(&["rtmp session closed"])
            .into_iter()
            .find(|line| line.split_whitespace().any(|t| t == token))
    })
}

fn assert_logged_as_error(server: &TestServer, client: SocketAddr, what: &str) -> String {
    let line = closed_line_for(server, client, Duration::from_secs(5)).unwrap_or_else(|| {
        panic!("no `rtmp session closed` line for {what} (peer={client})\n--- server log ---\n{}", server.log())
    });
    assert!(
        line.contains(" INFO ") && line.contains("error="),
        "{what}: closing line should be INFO and carry the error: {line}"
    );
    line
}

#[test]
fn garbage_and_http_get_close_only_their_own_connection() {
    let server = TestServer::start();
    let mut publisher = start_publisher(&server, 25);
    let probe = probe_in_background(&server);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", garbage(0x5eed, 4096)),
        ("an HTTP GET", HTTP_GET.to_vec()),
        ("a single zero byte", vec![0]),
    ];
    let mut sockets: Vec<(&str, TcpStream)> = Vec::new();
    for (what, bytes) in &cases {
        let mut stream = tcp_connect(server.rtmp_addr());
        // The server may close as soon as it sees the first byte, so the rest can fail to send.
        let _ = tcp_send(&mut stream, bytes);
        sockets.push((what, stream));
    }
    for (what, stream) in &mut sockets {
        let client = stream.local_addr().unwrap();
        let closed = wait_closed(stream, Duration::from_secs(5)).unwrap_or_else(|received| {
            panic!(
                "connection that sent {what} still open after 5 s ({received} bytes received)\n--- server log ---\n{}",
                server.log()
            )
        });
        assert_eq!(
            closed.received, 0,
            "{what}: the server answered garbage with {} bytes before closing",
            closed.received
        );
        let line = assert_logged_as_error(&server, client, what);
        assert!(line.to_lowercase().contains("version"), "{what}: expected a version error: {line}");
    }

    join_probe(probe, &server, &mut publisher);
    assert!(
        publisher.is_running(),
        "{}\n--- server log ---\n{}",
        publisher.report("publisher died while garbage was sent"),
        server.log()
    );
}

#[test]
fn a_truncated_handshake_times_out_alone() {
    let server = TestServer::start_with_config("handshake_timeout = \"2s\"\n", &[]);
    let mut publisher = start_publisher(&server, 25);

    let mut half = tcp_connect(server.rtmp_addr());
    let mut c0_c1_half = vec![3u8];
    c0_c1_half.extend(pseudo_random_bytes(7, 768));
    tcp_send(&mut half, &c0_c1_half).expect("send C0 + half of C1");
    let mut silent = tcp_connect(server.rtmp_addr());
    let started = Instant::now();

    // The bystander plays while both connections hang in their handshakes.
    let probe = probe_in_background(&server);

    for (what, stream) in [("C0 + half of C1", &mut half), ("nothing", &mut silent)] {
        let client = stream.local_addr().unwrap();
        let remaining = Duration::from_secs(8).saturating_sub(started.elapsed());
        let closed = wait_closed(stream, remaining).unwrap_or_else(|received| {
            panic!(
                "connection that sent {what} still open {:?} after connecting, with a 2 s handshake timeout ({received} bytes received)\n--- server log ---\n{}",
                started.elapsed(),
                server.log()
            )
        });
        let after = started.elapsed();
        // Closed early would mean the server gave up on a handshake that may yet complete.
        assert!(
            after >= Duration::from_millis(1500),
            "{what}: closed after {after:?}, before the 2 s handshake timeout ({closed:?})"
        );
        assert!(after <= Duration::from_secs(6), "{what}: closed only after {after:?} with a 2 s handshake timeout");
        assert_eq!(closed.received, 0, "{what}: the server sent {} bytes for an incomplete C0+C1", closed.received);
        let line = assert_logged_as_error(&server, client, what);
        assert!(line.contains("handshake"), "{what}: expected a handshake timeout: {line}");
    }

    join_probe(probe, &server, &mut publisher);
    assert!(publisher.is_running(), "{}", publisher.report("publisher died while handshakes timed out"));
}

#[test]
fn a_burst_of_garbage_connections_does_not_hurt_the_server() {
    const CONNECTIONS: usize = 200;
    let mut server = TestServer::start();
    let mut publisher = start_publisher(&server, 25);
    let closed_before = server.log_count("rtmp session closed");

    // Four kinds, interleaved: an HTTP request, random bytes, RTMPE's C0 (6, which ringcast
    // does not speak), and random bytes followed by an abrupt reset (the client gone before the
    // server even reads).
    let mut open = Vec::new();
    let mut reset = 0;
    for i in 0..CONNECTIONS {
        let mut stream = tcp_connect(server.rtmp_addr());
        let bytes = match i % 4 {
            0 => HTTP_GET.to_vec(),
            1 => garbage(i as u64 + 1, 1 + i * 37 % 3000),
            2 => {
                let mut b = vec![6];
                b.extend(pseudo_random_bytes(i as u64 + 1, 1536));
                b
            }
            _ => garbage(i as u64 + 1, 512),
        };
        let _ = tcp_send(&mut stream, &bytes);
        if i % 4 == 3 {
            set_linger_zero(&stream);
            drop(stream);
            reset += 1;
        } else {
            open.push(stream);
        }
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut still_open = 0;
    for stream in &mut open {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if wait_closed(stream, remaining.max(Duration::from_millis(1))).is_err() {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "{still_open} of {} garbage connections still open 10 s after the burst\n--- server log ---\n{}",
        open.len(),
        server.log()
    );
    assert!(server.is_running(), "ringcast died during the burst\n--- server log ---\n{}", server.log());
    // Every connection that the server read garbage from is an error worth a line; the reset
    // ones may read as a clean EOF, so they are not counted.
    let expected = closed_before + open.len();
    assert!(
        server.wait_for_log_count("rtmp session closed", expected, Duration::from_secs(5)),
        "expected at least {} `rtmp session closed` lines after the burst ({reset} resets not counted), got {}\n--- server log ---\n{}",
        open.len(),
        server.log_count("rtmp session closed") - closed_before,
        server.log()
    );

    // Still serving: the publisher that was there all along, to a new player.
    let probe = probe_in_background(&server);
    join_probe(probe, &server, &mut publisher);
    assert!(publisher.is_running(), "{}", publisher.report("publisher died during the burst"));
    assert!(server.is_running(), "ringcast died after the burst");
}
