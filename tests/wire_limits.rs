//! The wire limits set lower than their defaults, on the real binary: a raw-byte client past
//! each gets its protocol's answer (RTMP: closed; HTTP-FLV: `431`; RTSP: `413`), is counted in
//! `/metrics` and logged once, and real clients (ffmpeg publishing, ffprobe playing) on the
//! same server are unaffected, their messages and heads being well under even the lowered
//! limits.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http_flv_client::{exchange, status_and_head};
use common::rtmp_client::RtmpClient;
use common::rtsp_client::RtspConnection;
use common::{Client, TestServer, assert_plays_h264_aac, ffmpeg_publish, ffprobe_json, metric_total, wait_closed};
use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};

const WAIT: Duration = Duration::from_secs(15);
const PROBE: Duration = Duration::from_secs(30);
const SMALL: (u32, u32) = (320, 240);

/// ffmpeg publishing `live/cam` over RTMP, once the server says it publishes.
fn publish(server: &TestServer) -> Client {
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, SMALL);
    if !server.wait_for_line_with(&["publish start", "live/cam"], WAIT) {
        panic!("{}\n--- server log ---\n{}", publisher.report("no publish start"), server.log());
    }
    publisher
}

/// An RTMP client past `connect`, which has set its chunk size to `chunk_size`.
fn connected_with_chunk_size(addr: SocketAddr, chunk_size: u32) -> RtmpClient {
    let mut client = RtmpClient::connect(addr, "live", Goal::Connect).expect("connect");
    let deadline = Instant::now() + WAIT;
    loop {
        match client.next_event(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(ClientEvent::Connected)) => break,
            Ok(Some(_)) => {}
            other => panic!("no connect: {other:?}"),
        }
    }
    let mut bytes = Vec::new();
    let size = chunk_size.to_be_bytes();
    encode_message(&mut bytes, 2, &RawMessageRef { timestamp: 0, type_id: 1, stream_id: 0, payload: &size }, 128);
    client.stream.write_all(&bytes).expect("set chunk size");
    client
}

/// A format 0 chunk header on chunk stream `csid` (3..=63) declaring `declared` bytes of video,
/// and `sent` bytes of it.
fn message_start(csid: u8, declared: u32, sent: usize) -> Vec<u8> {
    let mut bytes = vec![csid, 0, 0, 0];
    bytes.extend_from_slice(&declared.to_be_bytes()[1..]);
    bytes.extend_from_slice(&[9, 1, 0, 0, 0]);
    bytes.extend(std::iter::repeat_n(0x17u8, sent));
    bytes
}

/// `max_rtmp_message_bytes` and `max_rtmp_chunk_streams` lowered: a message declared longer,
/// and one incomplete message too many, each close their connection and are counted, while
/// ffmpeg publishes and ffprobe plays.
#[test]
fn rtmp_messages_and_chunk_streams_past_their_limits_close_the_connection() {
    common::require_ffmpeg();
    let server = TestServer::start_with_config("max_rtmp_message_bytes = 1048576\nmax_rtmp_chunk_streams = 4\n", &[]);
    let _publisher = publish(&server);

    // A message of exactly the limit is taken; one byte more closes the connection as soon as
    // its header arrives. Each is one chunk.
    let mut client = connected_with_chunk_size(server.rtmp_addr(), 0x7FFF_FFFF);
    client.stream.write_all(&message_start(6, 1 << 20, 1 << 20)).expect("a message at the limit");
    assert!(wait_closed(&mut client.stream, Duration::from_millis(500)).is_err(), "a message at the limit closed");
    client.stream.write_all(&message_start(6, (1 << 20) + 1, 0)).expect("send");
    let closed = wait_closed(&mut client.stream, WAIT);
    assert!(closed.is_ok(), "a message over max_rtmp_message_bytes left the connection open");

    // Four chunk streams may hold an incomplete message; a fifth closes the connection. Chunks
    // of one byte: each message's first chunk ends with its first byte.
    let mut client = connected_with_chunk_size(server.rtmp_addr(), 1);
    for csid in 3..7 {
        client.stream.write_all(&message_start(csid, 100, 1)).expect("an incomplete message");
    }
    assert!(wait_closed(&mut client.stream, Duration::from_millis(500)).is_err(), "closed within the limit");
    let _ = client.stream.write_all(&message_start(7, 100, 1));
    assert!(wait_closed(&mut client.stream, WAIT).is_ok(), "a fifth incomplete message left the connection open");

    let metrics = server.metrics();
    assert_eq!(metric_total(&metrics, "ringcast_oversized_rtmp_messages_total"), 1, "{metrics}");
    assert_eq!(metric_total(&metrics, "ringcast_rtmp_chunk_stream_refusals_total"), 1, "{metrics}");
    assert!(server.wait_for_line_with(&["max_rtmp_message_bytes reached", "max=1048576"], WAIT), "{}", server.log());
    assert!(server.wait_for_line_with(&["max_rtmp_chunk_streams reached", "max=4"], WAIT), "{}", server.log());

    let json = ffprobe_json(&server.rtmp_url("live/cam"), PROBE);
    assert_plays_h264_aac(&json, SMALL, "ffprobe over RTMP beside the refused clients");
}

/// `max_http_request_head_bytes` lowered to 1 KiB: a 2 KiB head (which the default 8 KiB
/// takes) is answered `431` and counted, one under the limit is served, and ffprobe plays.
#[test]
fn an_http_flv_head_past_the_limit_is_answered_431() {
    common::require_ffmpeg();
    let server = TestServer::start_with_config("max_http_request_head_bytes = 1024\n", &[]);
    let _publisher = publish(&server);
    let head = |total: usize| {
        let mut head = b"GET /live/nobody.flv HTTP/1.1\r\nHost: x\r\nCookie: ".to_vec();
        head.resize(total - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        head
    };
    let (response, closed) = exchange(server.http_addr(), &head(2048), WAIT);
    let (status, answer) = status_and_head(&response);
    assert_eq!(status, 431, "{answer}");
    assert!(closed, "the connection stays open after 431");
    let (response, _) = exchange(server.http_addr(), &head(1000), WAIT);
    assert_eq!(status_and_head(&response).0, 404, "a head under the limit reaches the stream lookup");

    let metrics = server.metrics();
    assert_eq!(metric_total(&metrics, "ringcast_oversized_http_heads_total"), 1, "{metrics}");
    assert!(server.wait_for_line_with(&["max_http_request_head_bytes reached", "max=1024"], WAIT), "{}", server.log());

    let url = format!("http://{}/live/cam.flv", server.http_addr());
    assert_plays_h264_aac(&ffprobe_json(&url, PROBE), SMALL, "ffprobe over HTTP-FLV");
}

/// `max_rtsp_request_head_bytes` and `max_rtsp_body_bytes` lowered to 1 KiB: a longer head,
/// and an ANNOUNCE declaring a longer body, are answered `413` and counted, and ffprobe plays
/// over RTSP.
#[test]
fn an_rtsp_head_or_body_past_its_limit_is_answered_413() {
    common::require_ffmpeg();
    let server = TestServer::start_with_config("max_rtsp_request_head_bytes = 1024\nmax_rtsp_body_bytes = 1024\n", &[]);
    let _publisher = publish(&server);
    let url = server.rtsp_url("live/cam");

    let mut rtsp = RtspConnection::connect(server.rtsp_addr());
    let padding = "a".repeat(2000);
    let reply = rtsp.request("OPTIONS", &url, &[("X-Padding", &padding)], "");
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert!(rtsp.closed_within(WAIT), "the connection stays open after 413");

    let mut rtsp = RtspConnection::connect(server.rtsp_addr());
    rtsp.send_raw(format!("ANNOUNCE {url} RTSP/1.0\r\nCSeq: 7\r\nContent-Length: 2048\r\n\r\n").as_bytes());
    let reply = rtsp.reply(WAIT).expect("an answer before the body");
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert_eq!(reply.header("CSeq"), Some("7"));
    assert!(rtsp.closed_within(WAIT), "the connection stays open after 413");

    let mut rtsp = RtspConnection::connect(server.rtsp_addr());
    let padding = "a".repeat(800);
    assert_eq!(rtsp.request("OPTIONS", &url, &[("X-Padding", &padding)], "").status, 200, "a head under the limit");

    let metrics = server.metrics();
    assert_eq!(metric_total(&metrics, "ringcast_oversized_rtsp_heads_total"), 1, "{metrics}");
    assert_eq!(metric_total(&metrics, "ringcast_oversized_rtsp_bodies_total"), 1, "{metrics}");
    assert!(server.wait_for_line_with(&["max_rtsp_request_head_bytes reached", "max=1024"], WAIT), "{}", server.log());
    assert!(server.wait_for_line_with(&["max_rtsp_body_bytes reached", "max=1024"], WAIT), "{}", server.log());

    assert_plays_h264_aac(&ffprobe_json(&url, PROBE), SMALL, "ffprobe over RTSP");
}
