//! Faults with real clients: hostile and broken peers on every port and at every hook
//! endpoint, while ffmpeg publishes and players play. What each test proves is what a
//! deployment relies on: one misbehaving peer touches nothing but its own connection, a
//! publisher that vanishes is noticed and its players end cleanly, a broken callback endpoint
//! gets the configured `on_error` outcome within its timeout (docs/hooks.md, Reply), and no
//! credential reaches the log.
//!
//! What `tests/hooks_e2e.rs` already covers is not repeated here: an endpoint that accepts and
//! never answers (timeout, its socket closed), a refused connection, `on_error = "allow"` on a
//! timeout, a slow callback suspending only its own session.
//!
//! Needs ffmpeg with libx264 on PATH (`bash .ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::http_flv_client::{FlvPlayer, Tag};
use common::http_receiver::HttpReceiver;
use common::rtmp_client::{RtmpClient, media};
use common::{TestServer, eventually, ffmpeg_publish, metric_total, pseudo_random_bytes, set_linger_zero};
use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};

const SMALL: (u32, u32) = (320, 240);
const PUBLISH_START: Duration = Duration::from_secs(10);
const ANSWER: Duration = Duration::from_secs(10);
const ARRIVAL: Duration = Duration::from_secs(10);
/// The longest a player may go without a frame while others misbehave: the test pattern sends
/// 30 frames a second, so a second of silence is a stall, not jitter.
const MAX_GAP: Duration = Duration::from_secs(1);

/// What a player saw: how many arrivals and the longest silence between two.
#[derive(Debug, Default)]
struct Arrivals {
    count: usize,
    longest_gap: Duration,
}

impl Arrivals {
    fn arrived(&mut self, last: &mut Instant) {
        self.silent_since(*last);
        *last = Instant::now();
        self.count += 1;
    }

    /// Nothing arrived since `last` (a read that timed out or a closed connection counts too).
    fn silent_since(&mut self, last: Instant) {
        if self.count > 0 {
            self.longest_gap = self.longest_gap.max(last.elapsed());
        }
    }
}

/// Plays `key` over RTMP until `stop`, timing every video frame.
fn rtmp_player(addr: SocketAddr, key: &str, stop: Arc<AtomicBool>) -> thread::JoinHandle<Arrivals> {
    let key = key.to_owned();
    thread::spawn(move || {
        let mut player = RtmpClient::player(addr, &key);
        let (mut arrivals, mut last) = (Arrivals::default(), Instant::now());
        while !stop.load(Ordering::Relaxed) {
            match player.next_event(MAX_GAP * 2) {
                Ok(Some(ClientEvent::Video { .. })) => arrivals.arrived(&mut last),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    arrivals.silent_since(last);
                    break;
                }
            }
        }
        arrivals
    })
}

/// Plays `path` over HTTP-FLV until `stop`, timing every read that brought bytes; its count
/// is the video tags received (a read may bring several: the server merges writes).
fn flv_player(addr: SocketAddr, path: &str, stop: Arc<AtomicBool>) -> thread::JoinHandle<Arrivals> {
    let path = path.to_owned();
    thread::spawn(move || {
        let mut player = FlvPlayer::get(addr, &path, ANSWER);
        assert_eq!(player.status, 200, "{}", player.head);
        let (mut arrivals, mut last) = (Arrivals::default(), Instant::now());
        while !stop.load(Ordering::Relaxed) {
            let had = player.flv.len();
            if !player.read_until(MAX_GAP * 2, |p| p.flv.len() > had) {
                arrivals.silent_since(last);
                break;
            }
            arrivals.arrived(&mut last);
        }
        arrivals.count = player.tags().1.iter().filter(|tag| tag.tag_type == 9).count();
        arrivals
    })
}

/// What one hostile connection sends to a port before it goes.
#[derive(Debug, Clone, Copy)]
enum Misdeed {
    /// Random bytes, then a normal close.
    Garbage,
    /// The first part of a valid opening, then a close.
    Truncated,
    /// The first part of a valid opening, then a reset (SO_LINGER 0).
    TruncatedReset,
}

/// A valid opening for each port, to be cut short: a C0C1, a request head, an RTSP request.
fn valid_opening(port: &str, server: &TestServer) -> Vec<u8> {
    match port {
        "rtmp" => [&[3u8][..], &[0; 1536]].concat(),
        "http" => b"GET /live/faults.flv HTTP/1.1\r\nHost: x\r\nUser-Agent: faults\r\n\r\n".to_vec(),
        "rtsp" => format!(
            "DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n",
            server.rtsp_url("live/faults")
        )
        .into_bytes(),
        _ => b"GET /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    }
}

fn misbehave(addr: SocketAddr, opening: &[u8], misdeed: Misdeed, seed: u64) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return };
    let bytes = match misdeed {
        Misdeed::Garbage => {
            let mut bytes = pseudo_random_bytes(seed, 1 + (seed as usize % 3000));
            // A first byte of 3 would be a C0 the RTMP port rightly waits on: not garbage.
            if bytes[0] == 3 {
                bytes[0] = 0xfe;
            }
            bytes
        }
        Misdeed::Truncated | Misdeed::TruncatedReset => opening[..opening.len() * (1 + seed as usize % 3) / 4].to_vec(),
    };
    // The server may close as soon as it has seen enough: a failed write is expected.
    let _ = stream.write_all(&bytes);
    if matches!(misdeed, Misdeed::TruncatedReset) {
        set_linger_zero(&stream);
    }
}

/// Garbage, truncated openings and resets on every port (RTMP, HTTP-FLV, RTSP, API), hundreds
/// of them over a few seconds, while ffmpeg publishes and an RTMP and an HTTP-FLV player play:
/// neither player goes a second without frames, the publisher keeps publishing, the server
/// never panics, and every port still serves afterwards.
#[test]
fn garbage_and_truncated_input_on_every_port_leave_the_stream_playing() {
    let server = TestServer::start();
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/faults"), 30, SMALL);
    assert!(server.wait_for_log("publish start", PUBLISH_START), "{}\n{}", publisher.report("publisher"), server.log());
    let stop = Arc::new(AtomicBool::new(false));
    let rtmp = rtmp_player(server.rtmp_addr(), "faults", stop.clone());
    let flv = flv_player(server.http_addr(), "/live/faults.flv", stop.clone());
    // Both players are past their start before the misbehaving begins.
    thread::sleep(Duration::from_secs(2));

    let ports = [
        ("rtmp", server.rtmp_addr()),
        ("http", server.http_addr()),
        ("rtsp", server.rtsp_addr()),
        ("api", server.api_addr()),
    ];
    let misdeeds = [Misdeed::Garbage, Misdeed::Truncated, Misdeed::TruncatedReset];
    // A few half-open connections stay open the whole time, as stalled clients would.
    let mut held: Vec<TcpStream> = Vec::new();
    for (port, addr) in ports {
        let opening = valid_opening(port, &server);
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.write_all(&opening[..opening.len() / 2]);
            held.push(stream);
        }
    }
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        for (port, addr) in ports {
            let opening = valid_opening(port, &server);
            for misdeed in misdeeds {
                misbehave(addr, &opening, misdeed, sent);
                sent += 1;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    // The players keep going a little past the last misdeed.
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (rtmp, flv) = (rtmp.join().expect("RTMP player"), flv.join().expect("HTTP-FLV player"));
    let seconds = started.elapsed().as_secs_f64() + 2.0;
    for (what, arrivals) in [("RTMP", &rtmp), ("HTTP-FLV", &flv)] {
        assert!(
            arrivals.longest_gap < MAX_GAP,
            "the {what} player went {:?} without media during {sent} hostile connections\n{}",
            arrivals.longest_gap,
            server.log()
        );
        // 30 frames a second; half of that is a player that kept up.
        assert!(
            arrivals.count as f64 > 15.0 * seconds,
            "the {what} player got {} arrivals in {seconds:.1} s\n{}",
            arrivals.count,
            server.log()
        );
    }
    assert!(publisher.is_running(), "{}\n{}", publisher.report("the publisher died"), server.log());
    assert_eq!(server.log_count("panicked"), 0, "{}", server.log());
    drop(held);
    // Every port still serves a well-behaved client.
    let mut player = FlvPlayer::get(server.http_addr(), "/live/faults.flv", ANSWER);
    assert!(player.read_until(ANSWER, |p| p.flv.len() > 13), "HTTP-FLV after the faults: {}", player.head);
    let mut rtmp_player = RtmpClient::player(server.rtmp_addr(), "faults");
    assert!(matches!(rtmp_player.next_event(ANSWER), Ok(Some(_))), "RTMP after the faults");
    let metrics = server.metrics();
    assert!(metrics.contains("ringcast_"), "the API after the faults: {metrics}");
}

/// After its publisher went: `publish_stop` reached the webhook, and the HTTP-FLV player's
/// response ended on a whole tag and its PreviousTagSize. The tags it got.
fn assert_stream_ended(sink: &HttpReceiver, server: &TestServer, flv: &mut FlvPlayer) -> Vec<Tag> {
    let stops = sink.wait_for(1, ARRIVAL);
    assert!(
        stops.iter().any(|request| String::from_utf8_lossy(&request.body).contains("publish_stop")),
        "no publish_stop within {ARRIVAL:?}\n{}",
        server.log()
    );
    flv.read_for(ANSWER);
    assert!(flv.closed, "the HTTP-FLV response did not end with the stream\n{}", server.log());
    let (_, tags, left) = flv.tags();
    assert_eq!(left, 0, "the FLV ends on a whole tag and its PreviousTagSize");
    tags
}

/// A publisher killed with SIGKILL in the middle of a GOP (no FCUnpublish, no close
/// handshake): `publish_stop` fires, the HTTP-FLV player's response ends on a whole tag, and the
/// RTMP player is told the stream is gone.
#[test]
fn a_publisher_killed_mid_gop_stops_its_stream_and_ends_its_players() {
    let sink = HttpReceiver::start();
    let toml = format!("[[webhook]]\nurl = \"{}\"\nevents = [\"publish_stop\"]\n", sink.url("/events"));
    let server = TestServer::start_with_config(&toml, &[]);
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/killed"), 60, SMALL);
    assert!(server.wait_for_log("publish start", PUBLISH_START), "{}\n{}", publisher.report("publisher"), server.log());
    let mut flv = FlvPlayer::get(server.http_addr(), "/live/killed.flv", ANSWER);
    assert_eq!(flv.status, 200, "{}", flv.head);
    let mut rtmp = RtmpClient::player(server.rtmp_addr(), "killed");
    // Mid-GOP: a keyframe every second, killed 1.5 s in.
    flv.read_for(Duration::from_millis(1500));
    publisher.kill();

    let tags = assert_stream_ended(&sink, &server, &mut flv);
    assert!(tags.len() > 10, "{} tags before the kill", tags.len());
    let told = rtmp.wait_status("NetStream.Play.UnpublishNotify", ANSWER);
    assert!(told.is_ok(), "the RTMP player was not told the stream ended: {told:?}\n{}", server.log());
}

/// A raw publisher that stops in the middle of a message and resets its connection: the
/// partial message is dropped, `publish_stop` fires, and the player ends.
#[test]
fn a_publisher_gone_mid_message_stops_its_stream() {
    let sink = HttpReceiver::start();
    let toml = format!("[[webhook]]\nurl = \"{}\"\nevents = [\"publish_stop\"]\n", sink.url("/events"));
    let server = TestServer::start_with_config(&toml, &[]);
    let mut publisher = RtmpClient::publisher(server.rtmp_addr(), "partial");
    publisher.send_media(9, 0, media::AVC_SEQUENCE_HEADER).expect("sequence header");
    publisher.send_media(9, 0, &media::video(0, true, 2000)).expect("keyframe");
    let mut flv = FlvPlayer::get(server.http_addr(), "/live/partial.flv", ANSWER);
    assert_eq!(flv.status, 200, "{}", flv.head);
    for seq in 1..10 {
        publisher.send_media(9, seq * 40, &media::video(seq, false, 500)).expect("frame");
    }
    // The first of the chunks of a 20 KB frame (the client's chunk size is 4096), then gone.
    let mut wire = Vec::new();
    let big = media::video(10, false, 20_000);
    encode_message(&mut wire, 6, &RawMessageRef { timestamp: 400, type_id: 9, stream_id: 1, payload: &big }, 4096);
    publisher.stream.write_all(&wire[..4096 + 12]).expect("a partial message");
    thread::sleep(Duration::from_millis(200));
    set_linger_zero(&publisher.stream);
    drop(publisher);

    let tags = assert_stream_ended(&sink, &server, &mut flv);
    let seqs: Vec<u32> =
        tags.iter().filter(|tag| tag.tag_type == 9).filter_map(|tag| media::seq_of(&tag.body)).collect();
    assert!(!seqs.contains(&10), "the partial frame reached the player: {seqs:?}");
}

/// A callback endpoint that misbehaves in one way on every connection it accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BadEndpoint {
    /// Accepts and closes at once, before reading the request.
    ClosesAtOnce,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers with a 10 MB head that never ends.
    TenMegabytes,
    /// Answers 302 to its own URL (a loop, if anything followed it).
    RedirectsToItself,
}

/// A listener that treats every connection as `how` says, on its own thread; counts them.
struct BadPeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl BadPeer {
    fn start(how: BadEndpoint) -> BadPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a bad peer");
        let addr = listener.local_addr().expect("its address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || BadPeer::serve(stream, how, addr));
            }
        });
        BadPeer { addr, accepted }
    }

    fn serve(mut stream: TcpStream, how: BadEndpoint, addr: SocketAddr) {
        if how == BadEndpoint::ClosesAtOnce {
            set_linger_zero(&stream);
            return;
        }
        stream.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = match how {
            BadEndpoint::Garbage => stream.write_all(&pseudo_random_bytes(7, 2000)),
            BadEndpoint::TenMegabytes => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Filler: ");
                let filler = vec![b'a'; 64 * 1024];
                (0..160).try_for_each(|_| stream.write_all(&filler))
            }
            BadEndpoint::RedirectsToItself => stream.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/loop\r\nContent-Length: 0\r\n\r\n").as_bytes(),
            ),
            BadEndpoint::ClosesAtOnce => Ok(()),
        };
    }

    fn url(&self) -> String {
        format!("http://{}/loop", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// How a play request ended for the in-test RTMP player.
fn play_answer(server: &TestServer, key: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut player = RtmpClient::connect(server.rtmp_addr(), "live", Goal::Play(key.into())).expect("connect");
    loop {
        match player.next_event(ANSWER) {
            Ok(Some(ClientEvent::Status { code, .. })) if code != "NetStream.Play.Reset" => {
                return (code, started.elapsed());
            }
            Ok(Some(_)) => {}
            Ok(None) => return ("timed out".into(), started.elapsed()),
            Err(error) => return (format!("closed: {error}"), started.elapsed()),
        }
    }
}

/// `on_play` at each broken endpoint, under both `on_error` settings: every play gets the
/// configured outcome within the timeout, a `callback failed` line and an error counted, while
/// the publisher (no callback of its own) keeps publishing. A 302 to itself is a decision, not
/// a failure (docs/hooks.md: redirects are never followed; a 3xx renames): asked once, and the
/// player is renamed to the `Location`'s last segment.
#[test]
fn broken_callback_endpoints_get_the_on_error_outcome_in_time() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    for on_error in ["deny", "allow"] {
        for how in [BadEndpoint::ClosesAtOnce, BadEndpoint::Garbage, BadEndpoint::TenMegabytes] {
            let peer = BadPeer::start(how);
            let toml = format!("[notify]\ntimeout = \"2s\"\non_error = \"{on_error}\"\non_play = \"{}\"\n", peer.url());
            let server = TestServer::start_with_config(&toml, &[]);
            let mut publisher = RtmpClient::publisher(server.rtmp_addr(), "cam");
            publisher.send_media(9, 0, media::AVC_SEQUENCE_HEADER).expect("sequence header");
            publisher.send_media(9, 0, &media::video(0, true, 1000)).expect("keyframe");
            let context = format!("{how:?} with on_error = {on_error}");

            let (code, waited) = play_answer(&server, "cam");
            let expected = if on_error == "deny" { "NetStream.Play.Failed" } else { "NetStream.Play.Start" };
            assert_eq!(code, expected, "{context}\n{}", server.log());
            assert!(waited < TIMEOUT + Duration::from_secs(1), "{context}: answered after {waited:?}");
            assert_eq!(peer.accepted(), 1, "{context}: the endpoint was asked once");
            assert!(
                server.wait_for_line_with(&["callback failed", "play"], ARRIVAL),
                "{context}: no `callback failed` line\n{}",
                server.log()
            );
            let errors = eventually(ARRIVAL, || {
                let errors = metric_total(&server.metrics(), "ringcast_callback_errors_total");
                (errors >= 1).then_some(errors)
            });
            assert!(errors.is_some(), "{context}: no callback error counted\n{}", server.metrics());
            // The publisher's session is untouched: it still sends, and the server still reads.
            publisher.send_media(9, 40, &media::video(1, false, 500)).expect("the publisher still sends");
            assert!(!server.log().contains("publish stop"), "{context}: the publisher was dropped\n{}", server.log());
        }
    }

    let peer = BadPeer::start(BadEndpoint::RedirectsToItself);
    let toml = format!("[notify]\ntimeout = \"2s\"\non_play = \"{}\"\n", peer.url());
    let server = TestServer::start_with_config(&toml, &[]);
    let _publisher = RtmpClient::publisher(server.rtmp_addr(), "loop");
    let (code, _) = play_answer(&server, "cam");
    assert_eq!(code, "NetStream.Play.Start", "renamed to `loop`, which is published\n{}", server.log());
    thread::sleep(Duration::from_millis(500));
    assert_eq!(peer.accepted(), 1, "the redirect was not followed");
}

/// A webhook that redirects to itself, answers garbage or closes at once: each delivery fails
/// (redirects are never followed, docs/hooks.md), is logged and counted, and the other sink
/// still gets every event.
#[test]
fn broken_webhook_receivers_fail_their_deliveries_alone() {
    let peers: Vec<BadPeer> =
        [BadEndpoint::RedirectsToItself, BadEndpoint::Garbage, BadEndpoint::ClosesAtOnce].map(BadPeer::start).into();
    let good = HttpReceiver::start();
    // Without the outbox, so a failed delivery ends after its retries (none) and is counted as
    // failed: with it, the same failures are kept and retried until delivered
    // (tests/hooks_outbox.rs).
    let mut toml = String::from("hook_timeout = \"2s\"\noutbox = false\n");
    for peer in &peers {
        toml.push_str(&format!("[[webhook]]\nurl = \"{}\"\nevents = [\"publish_start\"]\nretries = 0\n", peer.url()));
    }
    toml.push_str(&format!("[[webhook]]\nurl = \"{}\"\nevents = [\"publish_start\"]\n", good.url("/good")));
    let server = TestServer::start_with_config(&toml, &[]);
    let _publisher = RtmpClient::publisher(server.rtmp_addr(), "hooked");
    assert_eq!(good.wait_for(1, ARRIVAL).len(), 1, "the good sink got publish_start\n{}", server.log());
    assert!(
        server.wait_for_log_count("hook delivery failed", peers.len(), ARRIVAL),
        "one failure line per broken sink\n{}",
        server.log()
    );
    for peer in &peers {
        assert_eq!(peer.accepted(), 1, "delivered once, not followed or retried\n{}", server.log());
    }
    let failed = eventually(ARRIVAL, || {
        let failed = metric_total(&server.metrics(), "ringcast_sink_failed_total");
        (failed >= peers.len() as u64).then_some(failed)
    });
    assert!(failed.is_some(), "failures counted\n{}", server.metrics());
}

/// Secrets never reach the log, at debug level: a webhook's signing secret, the API token, a
/// webhook URL's password and query token, a webhook header's credential, a callback URL's
/// query token, an RTSP client's user:pass (in the URL and as Basic credentials) and a stream
/// key in the publish query. Traffic runs through every one of them first.
#[test]
fn secrets_never_reach_the_log() {
    // base64 of "faults-signing-key-7c1d8e5a".
    const WEBHOOK_SECRET: &str = "ZmF1bHRzLXNpZ25pbmcta2V5LTdjMWQ4ZTVh";
    const API_TOKEN: &str = "apitoken-44b1c2d3e4f5a6b7";
    const URL_PASSWORD: &str = "urlpass-9a8b7c6d5e";
    const URL_TOKEN: &str = "urltoken-1f2e3d4c5b";
    const HEADER_CREDENTIAL: &str = "hdrcred-0a1b2c3d4e5f";
    const CALLBACK_TOKEN: &str = "cbtoken-6d5c4b3a29";
    const RTSP_PASSWORD: &str = "rtsppass-5e6f7a8b";
    const STREAM_KEY: &str = "streamkey-3c4d5e6f7a";

    let receiver = HttpReceiver::start();
    let hook_url =
        receiver.url(&format!("/hook?token={URL_TOKEN}")).replace("http://", &format!("http://user:{URL_PASSWORD}@"));
    let toml = format!(
        "api_token = \"{API_TOKEN}\"\n\
         [notify]\non_publish = \"{}\"\non_play = \"{}\"\n\
         [[webhook]]\nurl = \"{hook_url}\"\nsecret = \"whsec_{WEBHOOK_SECRET}\"\n\
         headers = [\"Authorization: Bearer {HEADER_CREDENTIAL}\"]\n",
        receiver.url(&format!("/on_publish?token={CALLBACK_TOKEN}")),
        receiver.url(&format!("/on_play?token={CALLBACK_TOKEN}")),
    );
    let server = TestServer::start_with_config(&toml, &["--log-level", "debug"]);

    let mut publisher = RtmpClient::publisher(server.rtmp_addr(), &format!("cam?key={STREAM_KEY}"));
    publisher.send_media(9, 0, media::AVC_SEQUENCE_HEADER).expect("sequence header");
    publisher.send_media(9, 0, &media::video(0, true, 1000)).expect("keyframe");
    let mut player = RtmpClient::player(server.rtmp_addr(), &format!("cam?key={STREAM_KEY}"));
    let _ = player.next_event(Duration::from_secs(2));
    let mut flv = FlvPlayer::get(server.http_addr(), &format!("/live/cam.flv?key={STREAM_KEY}"), ANSWER);
    flv.read_for(Duration::from_millis(500));

    // RTSP with the password in the URL and in Basic credentials.
    let rtsp_url = server.rtsp_url("live/cam").replace("rtsp://", &format!("rtsp://viewer:{RTSP_PASSWORD}@"));
    let basic = base64_encode(format!("viewer:{RTSP_PASSWORD}").as_bytes());
    let mut rtsp = common::rtsp_client::RtspConnection::connect(server.rtsp_addr());
    let _ = rtsp.request("DESCRIBE", &rtsp_url, &[("Authorization", &format!("Basic {basic}"))], "");

    // The API with and without the token.
    for token in [Some(API_TOKEN), None, Some("wrong-token")] {
        let mut stream = TcpStream::connect(server.api_addr()).expect("connect to the API");
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!("GET /api/streams HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let _ = stream.read_to_end(&mut Vec::new());
    }
    // Every secret was used: the callbacks were asked, the webhook got signed deliveries with its
    // header.
    let delivered = eventually(ARRIVAL, || {
        let requests = receiver.requests();
        let hook = requests.iter().find(|r| r.path == "/hook" && r.header("authorization").is_some())?;
        let callbacks = requests.iter().filter(|r| r.path.starts_with("/on_")).count();
        (callbacks >= 3 && hook.header("webhook-signature").is_some()).then_some(())
    });
    assert!(delivered.is_some(), "{:#?}\n{}", receiver.requests(), server.log());
    drop((publisher, player, flv, rtsp));
    thread::sleep(Duration::from_millis(500));
    let (_, log) = server.stop_and_log();

    assert!(log.contains("DEBUG"), "the server logged at debug level");
    let leaks: Vec<&str> = [
        WEBHOOK_SECRET,
        API_TOKEN,
        URL_PASSWORD,
        URL_TOKEN,
        HEADER_CREDENTIAL,
        CALLBACK_TOKEN,
        RTSP_PASSWORD,
        &basic,
        STREAM_KEY,
    ]
    .iter()
    .flat_map(|secret| log.lines().filter(move |line| line.contains(secret)))
    .collect();
    assert!(leaks.is_empty(), "secrets in the log:\n{}", leaks.join("\n"));
}

/// Standard base64 with padding, for a Basic `Authorization` value.
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
