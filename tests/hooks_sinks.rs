//! The event sinks' delivery functions against real peers: webhook attempts against a real HTTP
//! server (and an HTTPS one with a private CA made by the `openssl` CLI), scripts run by a real
//! `/bin/sh`, and the stdio lines parsed back. Bodies are checked field by field against
//! docs/hooks.md and signatures against an HMAC computed here from the bare hash functions, so
//! a bug in the signing code cannot hide behind the same library call on both sides.

mod common;

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use common::hook_peers::{hmac, sha1, sha256};
use common::http_receiver::{self, HttpReceiver, HttpsReceiver, Reply};
use ringcast::config::NotifyConfig;
use ringcast::config::{EventFilter, EventType, Header, Secret, Signature, StdioFormat, WebhookConfig, WebhookFormat};
use ringcast::hooks::callback::{Call, Callbacks, ClientInfo, Decision};
use ringcast::hooks::callback_lane::CallbackLane;
use ringcast::hooks::callback_pool::CallbackPool;
use ringcast::hooks::event::{Event, Protocol};
use ringcast::hooks::format;
use ringcast::hooks::script::{self, CAPTURE_LIMIT, ScriptStatus};
use ringcast::hooks::stdio;
use ringcast::hooks::webhook::{self, Attempt, WebhookTarget};

const NOW: u64 = 1_700_000_100;
const TIMEOUT: Duration = Duration::from_secs(5);

fn event(event_type: EventType, data: Value) -> Event {
    Event {
        id: "evt_018bcfe568800000000000002a".into(),
        event_type,
        timestamp_ms: 1_700_000_000_123,
        conn_id: 42,
        protocol: Protocol::Rtmp,
        addr: "192.0.2.7:50123".into(),
        stream_key: "live/cam1".into(),
        seq: 3,
        data: match data {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

fn target(url: String, format: WebhookFormat) -> WebhookTarget {
    let mut config = WebhookConfig::new(url, EventFilter::All);
    config.format = format;
    WebhookTarget::from(&config)
}

fn agent() -> ureq::Agent {
    webhook::agent(TIMEOUT, None).unwrap()
}

/// Sends `event` in `format` and returns the one request the receiver got.
fn deliver(event: &Event, format: WebhookFormat) -> http_receiver::Request {
    let receiver = HttpReceiver::start();
    let outcome = webhook::attempt(&agent(), &target(receiver.url("/hook"), format), event, NOW);
    assert_eq!(outcome, Attempt::Delivered { status: 200 });
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    requests.into_iter().next().unwrap()
}

fn json_body(request: &http_receiver::Request) -> Map<String, Value> {
    assert_eq!(request.header("content-type"), Some("application/json"));
    match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => map,
        other => panic!("body is not a JSON object: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Formats

#[test]
fn envelope_request_and_body() {
    let receiver = HttpReceiver::start();
    let mut config = WebhookConfig::new(receiver.url("/events?k=v"), EventFilter::All);
    config.headers = vec![
        Header::parse("Authorization: Basic T1BFTlZJRFVBUFA6TVlfU0VDUkVU").unwrap(),
        Header::parse("X-Tenant: a b").unwrap(),
    ];
    let e = event(EventType::PublishStart, json!({"args": {"token": "x"}}));
    let outcome = webhook::attempt(&agent(), &WebhookTarget::from(&config), &e, NOW);
    assert_eq!(outcome, Attempt::Delivered { status: 200 });

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/events");
    assert_eq!(r.query, "k=v");
    let ua = format!("ringcast/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(r.header("user-agent"), Some(ua.as_str()));
    assert_eq!(r.header_count("user-agent"), 1);
    assert_eq!(r.header("authorization"), Some("Basic T1BFTlZJRFVBUFA6TVlfU0VDUkVU"));
    assert_eq!(r.header("x-tenant"), Some("a b"));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    // Unsigned sink: no signature headers.
    assert_eq!(r.header("webhook-signature"), None);
    assert_eq!(r.header("x-ringcast-signature"), None);

    let body = json_body(r);
    let keys: Vec<&str> = body.keys().map(String::as_str).collect();
    let mut expected =
        vec!["id", "type", "timestamp", "timestamp_ms", "conn_id", "stream_key", "seq", "protocol", "addr", "data"];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(body["id"], "evt_018bcfe568800000000000002a");
    assert_eq!(body["type"], "publish_start");
    assert_eq!(body["timestamp"], 1_700_000_000u64);
    assert_eq!(body["timestamp_ms"], 1_700_000_000_123u64);
    assert_eq!(body["conn_id"], 42);
    assert_eq!(body["stream_key"], "live/cam1");
    assert_eq!(body["seq"], 3);
    assert_eq!(body["protocol"], "rtmp");
    assert_eq!(body["addr"], "192.0.2.7:50123");
    assert_eq!(body["data"], json!({"args": {"token": "x"}}));
    // The documented key order, on the wire.
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(text.starts_with(r#"{"id":"#) && text.contains(r#""addr":"192.0.2.7:50123","data":"#));
}

#[test]
fn flat_body() {
    let e = event(
        EventType::PublishUpdate,
        json!({"time": 60, "timestamp": 59_980, "bytes_in": 4_500_000, "bitrate_kbps": 600}),
    );
    let body = json_body(&deliver(&e, WebhookFormat::Flat));
    assert_eq!(body["event"], "publish_update");
    assert!(!body.contains_key("type") && !body.contains_key("data"));
    assert_eq!(body["id"], "evt_018bcfe568800000000000002a");
    // OpenVidu's timestamp: unix milliseconds.
    assert_eq!(body["timestamp"], 1_700_000_000_123u64);
    assert_eq!(body["timestamp_ms"], 1_700_000_000_123u64);
    assert_eq!(body["conn_id"], 42);
    assert_eq!(body["stream_key"], "live/cam1");
    assert_eq!(body["seq"], 3);
    assert_eq!(body["protocol"], "rtmp");
    assert_eq!(body["addr"], "192.0.2.7:50123");
    assert_eq!(body["time"], 60);
    assert_eq!(body["bytes_in"], 4_500_000);
    assert_eq!(body["bitrate_kbps"], 600);
    // The media timestamp clashes with the event's and is renamed, not lost.
    assert_eq!(body["data_timestamp"], 59_980);
    assert_eq!(body.len(), 13);
}

#[test]
fn form_body() {
    let e = event(
        EventType::PublishStop,
        json!({
            "bytes_in": 1000, "bytes_out": 0, "duration_sec": 12, "audio_codec": "aac",
            "video_codec": "h264", "audio_packets": 5, "video_packets": 6, "total_bytes": 1000,
        }),
    );
    let r = deliver(&e, WebhookFormat::Form);
    assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
    let fields: Vec<(String, String)> = form_urlencoded::parse(&r.body).into_owned().collect();
    let get = |k: &str| {
        let found: Vec<&str> = fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect();
        assert!(found.len() <= 1, "{k} repeated: {fields:?}");
        found.first().copied()
    };
    assert_eq!(fields[0], ("call".to_owned(), "publish_stop".to_owned()));
    assert_eq!(get("id"), Some("evt_018bcfe568800000000000002a"));
    assert_eq!(get("seq"), Some("3"));
    assert_eq!(get("timestamp_ms"), Some("1700000000123"));
    assert_eq!(get("protocol"), Some("rtmp"));
    assert_eq!(get("addr"), Some("192.0.2.7"));
    assert_eq!(get("clientid"), Some("42"));
    assert_eq!(get("app"), Some("live"));
    assert_eq!(get("name"), Some("cam1"));
    assert_eq!(get("bytes_in"), Some("1000"));
    assert_eq!(get("bytes_out"), Some("0"));
    assert_eq!(get("duration_sec"), Some("12"));
    assert_eq!(get("video_codec"), Some("h264"));

    // Client arguments pass through, but never over a field ringcast sets.
    let e = event(
        EventType::PlayStart,
        json!({"args": {"token": "s3cr=t&x", "call": "publish", "name": "other", "foo": "bar"}}),
    );
    let r = deliver(&e, WebhookFormat::Form);
    let fields: HashMap<String, Vec<String>> =
        form_urlencoded::parse(&r.body).into_owned().fold(HashMap::new(), |mut m, (k, v)| {
            m.entry(k).or_default().push(v);
            m
        });
    assert_eq!(fields["call"], ["play_start"]);
    assert_eq!(fields["name"], ["cam1"]);
    assert_eq!(fields["token"], ["s3cr=t&x"]);
    assert_eq!(fields["foo"], ["bar"]);
    assert!(!fields.contains_key("args"));
}

#[test]
fn dolby_bodies() {
    let cases = [
        (EventType::PublishStart, json!({"args": {}}), "feeds", "started"),
        (EventType::PublishStop, json!({"duration_sec": 30}), "feeds", "stopped"),
        (EventType::StreamUnavailable, json!({}), "viewerConnection", "viewerAttempt"),
        (EventType::NoViewers, json!({}), "viewerConnection", "noActiveViewers"),
    ];
    for (event_type, data, hook_type, name) in cases {
        let e = event(event_type, data.clone());
        let body = json_body(&deliver(&e, WebhookFormat::Dolby));
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert_eq!(body["type"], hook_type);
        assert_eq!(body["event"], name);
        assert_eq!(body["timestamp"], 1_700_000_000_123u64);
        let d = &body["data"];
        assert_eq!(d["streamId"], "live/cam1");
        assert_eq!(d["name"], "cam1");
        if hook_type == "feeds" {
            assert_eq!(d["feedId"], "42");
            assert_eq!(d["active"], event_type == EventType::PublishStart);
        }
        for (k, v) in data.as_object().unwrap() {
            assert_eq!(&d[k], v, "{k}");
        }
    }

    // Events the format cannot express are not sent at all.
    let receiver = HttpReceiver::start();
    let t = target(receiver.url("/"), WebhookFormat::Dolby);
    let e = event(EventType::Connect, json!({"app": "live"}));
    assert_eq!(webhook::attempt(&agent(), &t, &e, NOW), Attempt::Skipped);
    assert!(receiver.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Signatures, verified with an HMAC built from the bare hash (`common::hook_peers::hmac`).

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

#[test]
fn hmac_helper_matches_the_standard_webhooks_vector() {
    // Checks the checker: the first Standard Webhooks reference vector (docs/hooks.md, Signing),
    // computed with the helper alone.
    let key = b64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let message = br#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#;
    assert_eq!(format!("v1,{}", b64(&hmac(sha256, &key, message))), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn standard_signature_with_rotation() {
    let receiver = HttpReceiver::start();
    let current_text = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let previous_text = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let mut config = WebhookConfig::new(receiver.url("/signed"), EventFilter::All);
    config.secret = Some(Secret::parse(current_text).unwrap());
    // A user header named like a signature header never replaces the real one.
    config.headers = vec![Header::parse("webhook-id: forged").unwrap()];
    let previous = Secret::parse(previous_text).unwrap();
    let t = WebhookTarget::new(&config, Some(&previous));
    let e = event(EventType::PublishStart, json!({"args": {}}));
    assert_eq!(webhook::attempt(&agent(), &t, &e, NOW), Attempt::Delivered { status: 200 });
    let r = &receiver.requests()[0];
    assert_eq!(r.header("webhook-id"), Some(e.id.as_str()));
    assert_eq!(r.header_count("webhook-id"), 1);
    assert_eq!(r.header("webhook-timestamp"), Some(NOW.to_string().as_str()));
    let signed = [e.id.as_bytes(), b".", NOW.to_string().as_bytes(), b".", &r.body].concat();
    let expected: Vec<String> = [current_text, previous_text]
        .iter()
        .map(|s| {
            let key = b64_decode(s.trim_start_matches("whsec_"));
            format!("v1,{}", b64(&hmac(sha256, &key, &signed)))
        })
        .collect();
    assert_eq!(r.header("webhook-signature"), Some(expected.join(" ").as_str()));
}

#[test]
fn sha256_and_sha1_signatures() {
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let secret_text = b64(&key); // Dolby style: plain base64, no prefix
    for (signature, header, hash, prefix) in [
        (Signature::Sha256, "X-Ringcast-Signature", sha256 as fn(&[u8]) -> Vec<u8>, "sha256="),
        (Signature::Sha1, "X-Millicast-Signature", sha1, "sha1="),
    ] {
        let receiver = HttpReceiver::start();
        let mut config = WebhookConfig::new(receiver.url("/"), EventFilter::All);
        config.format = WebhookFormat::Dolby;
        config.secret = Some(Secret::parse(&secret_text).unwrap());
        config.signature = signature;
        config.signature_header = header.into();
        let e = event(EventType::PublishStop, json!({"duration_sec": 1}));
        assert_eq!(
            webhook::attempt(&agent(), &WebhookTarget::from(&config), &e, NOW),
            Attempt::Delivered { status: 200 }
        );
        let r = &receiver.requests()[0];
        // The Dolby.io style signature: hmac(base64-decoded secret, raw body), hex, with the prefix.
        let expected = format!("{prefix}{}", hex(&hmac(hash, &b64_decode(&secret_text), &r.body)));
        assert_eq!(r.header(header), Some(expected.as_str()), "{signature}");
        assert_eq!(r.header("webhook-signature"), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes

fn outcome_of(reply: Reply, now: u64) -> (Attempt, Vec<http_receiver::Request>) {
    let receiver = HttpReceiver::start();
    receiver.reply(reply);
    let e = event(EventType::PublishStart, json!({}));
    let t = target(receiver.url("/hook"), WebhookFormat::Envelope);
    let outcome = webhook::attempt(&agent(), &t, &e, now);
    (outcome, receiver.requests())
}

#[test]
fn statuses_map_to_outcomes() {
    let (o, _) = outcome_of(Reply::status(204), NOW);
    assert_eq!(o, Attempt::Delivered { status: 204 });

    let (o, _) = outcome_of(Reply::status(500).body("db down"), NOW);
    match o {
        Attempt::Retry { reason, retry_after: None } => {
            assert!(reason.contains("500") && reason.contains("db down"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Retry-After only counts on 429 and 503.
    let (o, _) = outcome_of(Reply::status(502).header("Retry-After", "9"), NOW);
    assert!(matches!(o, Attempt::Retry { retry_after: None, .. }), "{o:?}");
    let (o, _) = outcome_of(Reply::status(503).header("Retry-After", "7"), NOW);
    assert!(matches!(o, Attempt::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(7)), "{o:?}");
    // An HTTP-date, two minutes after `now`.
    let (o, _) =
        outcome_of(Reply::status(429).header("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"), 784_111_777 - 120);
    assert!(matches!(o, Attempt::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(120)), "{o:?}");
    let (o, _) = outcome_of(Reply::status(429), NOW);
    assert!(matches!(o, Attempt::Retry { retry_after: None, .. }), "{o:?}");

    let (o, _) = outcome_of(Reply::status(404), NOW);
    assert!(matches!(&o, Attempt::Failed { reason } if reason.contains("404")), "{o:?}");
    let (o, _) = outcome_of(Reply::status(400).body("bad\r\npayload"), NOW);
    assert!(matches!(&o, Attempt::Failed { reason } if reason.contains("bad  payload")), "{o:?}");
    let (o, _) = outcome_of(Reply::status(410), NOW);
    assert_eq!(o, Attempt::Gone);
}

#[test]
fn redirects_fail_and_are_not_followed() {
    let receiver = HttpReceiver::start();
    let elsewhere = receiver.url("/elsewhere");
    receiver.reply(Reply::status(301).header("Location", &elsewhere));
    let t = target(receiver.url("/hook"), WebhookFormat::Envelope);
    let o = webhook::attempt(&agent(), &t, &event(EventType::PublishStart, json!({})), NOW);
    match o {
        Attempt::Failed { reason } => {
            assert!(reason.contains("301") && reason.contains(&elsewhere), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Give a wrongly followed redirect time to show up.
    let requests = receiver.wait_for(2, Duration::from_millis(300));
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hook");
}

#[test]
fn slow_receiver_times_out_into_retry() {
    let receiver = HttpReceiver::start();
    receiver.reply(Reply::status(200).delay(Duration::from_secs(3)));
    let agent = webhook::agent(Duration::from_millis(300), None).unwrap();
    let t = target(receiver.url("/slow"), WebhookFormat::Envelope);
    let start = Instant::now();
    let o = webhook::attempt(&agent, &t, &event(EventType::PublishStart, json!({})), NOW);
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
    match o {
        Attempt::Retry { reason, retry_after: None } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn receiver_down_is_retried_quickly() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let t = target(format!("http://127.0.0.1:{port}/x"), WebhookFormat::Envelope);
    let start = Instant::now();
    let o = webhook::attempt(&agent(), &t, &event(EventType::PublishStart, json!({})), NOW);
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert!(matches!(o, Attempt::Retry { retry_after: None, .. }), "{o:?}");
}

#[test]
fn connections_are_kept_alive() {
    let receiver = HttpReceiver::start();
    let agent = agent();
    let t = target(receiver.url("/ka"), WebhookFormat::Envelope);
    for status in [200, 404, 500, 200] {
        receiver.reply(Reply::status(status).body("some body"));
        webhook::attempt(&agent, &t, &event(EventType::PublishStart, json!({})), NOW);
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(receiver.connections(), 1);
    assert!(requests.iter().all(|r| r.connection == 0));
}

// ---------------------------------------------------------------------------------------------
// HTTPS with a private CA

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringcast-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl").args(args).current_dir(dir).output().is_ok_and(|o| {
        if !o.status.success() {
            eprintln!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        o.status.success()
    })
}

/// A CA and a server certificate for 127.0.0.1 signed by it: `ca.pem`, `server.pem`,
/// `server.key`. `false` if the openssl CLI is missing.
fn make_certs(dir: &Path) -> bool {
    fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ringcast test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    ) && openssl(
        dir,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
    ) && openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    )
}

#[test]
fn https_with_private_ca() {
    let dir = TempDir::new("tls");
    if !make_certs(&dir.0) {
        // CI installs openssl: there a skip would be a test that cannot fail.
        assert!(std::env::var_os("CI").is_none(), "the openssl CLI is needed for the HTTPS test");
        eprintln!("SKIPPED: the openssl CLI is not available");
        return;
    }
    let Some(server) = HttpsReceiver::start(&dir.path("server.pem"), &dir.path("server.key")) else {
        assert!(std::env::var_os("CI").is_none(), "python3 is needed to run the HTTPS receiver");
        eprintln!("SKIPPED: python3 could not run the HTTPS receiver");
        return;
    };
    let t = target(server.url("/tls"), WebhookFormat::Envelope);
    let e = event(EventType::PublishStart, json!({}));

    // The system roots do not know the private CA.
    let untrusting = webhook::agent(TIMEOUT, None).unwrap();
    match webhook::attempt(&untrusting, &t, &e, NOW) {
        Attempt::Retry { reason, .. } => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let trusting = webhook::agent(TIMEOUT, Some(&dir.path("ca.pem"))).unwrap();
    assert_eq!(webhook::attempt(&trusting, &t, &e, NOW), Attempt::Delivered { status: 204 });
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with("POST /tls "), "{requests:?}");

    // An https callback goes through the blocking pool and trusts the same CA; without it,
    // the certificate failure is an error that on_error (deny) decides.
    let notify = NotifyConfig { on_publish: Some(server.url("/on_publish")), timeout: TIMEOUT, ..Default::default() };
    let client = ClientInfo { app: "live".into(), name: "cam1".into(), ..ClientInfo::default() };
    let decide = |ca: Option<&Path>| {
        let lane = CallbackLane::new(Some(Callbacks::new(&notify)), CallbackPool::new(notify.timeout, ca), 1);
        tokio_uring::start(async { lane.decide(Call::Publish, &client, &[]).await })
    };
    assert_eq!(decide(Some(&dir.path("ca.pem"))), Decision::Allow);
    match decide(None) {
        Decision::Deny { reason } => assert!(reason.to_lowercase().contains("certificate"), "{reason}"),
        other => panic!("an untrusted certificate was accepted: {other:?}"),
    }
    assert!(server.requests().iter().any(|r| r.starts_with("POST /on_publish ")), "{:?}", server.requests());
}

#[test]
fn bad_ca_files_are_refused() {
    let dir = TempDir::new("badca");
    assert!(matches!(webhook::agent(TIMEOUT, Some(&dir.path("missing.pem"))), Err(webhook::Error::CaFileRead { .. })));
    fs::write(dir.path("empty.pem"), "no certificates here\n").unwrap();
    let err = webhook::agent(TIMEOUT, Some(&dir.path("empty.pem"))).unwrap_err();
    assert!(matches!(err, webhook::Error::CaFileEmpty { .. }), "{err}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Scripts

fn write_script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn script_sees_the_event() {
    let dir = TempDir::new("script-env");
    let env_out = dir.path("env.txt");
    let stdin_out = dir.path("stdin.json");
    let script = write_script(
        &dir,
        "hook.sh",
        &format!("env | grep '^RTMP_' > '{}'\ncat > '{}'\necho ok\n", env_out.display(), stdin_out.display()),
    );
    let e = event(
        EventType::PublishUpdate,
        json!({"timestamp": 59_980, "bytes_in": 10, "args": {"token": "a b"}, "x-y": "z"}),
    );
    let outcome = script::run(&script, &e, TIMEOUT);
    assert!(outcome.success(), "{} {:?}", outcome.status, outcome.stderr.text());
    assert_eq!(outcome.stdout.text(), "ok\n");
    assert!(!outcome.stdout.truncated);

    let env: HashMap<String, String> = fs::read_to_string(&env_out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("RTMP_EVENT_TYPE"), Some("publish_update"));
    assert_eq!(get("RTMP_TIMESTAMP"), Some("1700000000"));
    assert_eq!(get("RTMP_CONN_ID"), Some("42"));
    assert_eq!(get("RTMP_STREAM_KEY"), Some("live/cam1"));
    assert_eq!(get("RTMP_PROTOCOL"), Some("rtmp"));
    assert_eq!(get("RTMP_EVENT_ID"), Some("evt_018bcfe568800000000000002a"));
    assert_eq!(get("RTMP_TIMESTAMP_MS"), Some("1700000000123"));
    assert_eq!(get("RTMP_SEQ"), Some("3"));
    assert_eq!(get("RTMP_ADDR"), Some("192.0.2.7:50123"));
    assert_eq!(get("RTMP_BYTES_IN"), Some("10"));
    assert_eq!(get("RTMP_DATA_TIMESTAMP"), Some("59980"));
    assert_eq!(get("RTMP_ARGS"), Some(r#"{"token":"a b"}"#));
    assert_eq!(get("RTMP_X_Y"), Some("z"));
    // Exactly the variables format::env_vars promises, no more.
    let expected: HashMap<String, String> = format::env_vars(&e).into_iter().collect();
    assert_eq!(env, expected);

    let stdin: Value = serde_json::from_str(&fs::read_to_string(&stdin_out).unwrap()).unwrap();
    assert_eq!(stdin, serde_json::from_str::<Value>(&format::envelope_json(&e)).unwrap());
}

fn process_gone(pid: &str) -> bool {
    // Gone, or a zombie waiting for init: either way no longer running.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn script_is_killed_at_the_timeout() {
    let dir = TempDir::new("script-timeout");
    let sh_pid = dir.path("sh.pid");
    let sleep_pid = dir.path("sleep.pid");
    let script = write_script(
        &dir,
        "slow.sh",
        &format!(
            "echo $$ > '{}'\necho started\necho oops >&2\nsleep 30 &\necho $! > '{}'\nwait\n",
            sh_pid.display(),
            sleep_pid.display()
        ),
    );
    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let outcome = script::run(&script, &event(EventType::PublishStart, json!({})), timeout);
    let took = start.elapsed();
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
    assert!(took >= timeout, "took {took:?}");
    assert!(matches!(outcome.status, ScriptStatus::TimedOut), "{}", outcome.status);
    assert_eq!(outcome.stdout.text(), "started\n");
    assert_eq!(outcome.stderr.text(), "oops\n");

    // The script was reaped (no zombie of ours) and its background child killed with it.
    let sh = fs::read_to_string(&sh_pid).unwrap();
    assert!(!Path::new(&format!("/proc/{}", sh.trim())).exists(), "script {sh} still exists");
    let sleep = fs::read_to_string(&sleep_pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !process_gone(sleep.trim()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(process_gone(sleep.trim()), "sleep {sleep} survived");
}

#[test]
fn script_exit_status_and_bounded_output() {
    let dir = TempDir::new("script-out");
    let script = write_script(&dir, "chatty.sh", "head -c 100000 /dev/zero | tr '\\0' x\necho fail >&2\nexit 3\n");
    let outcome = script::run(&script, &event(EventType::PublishStart, json!({})), TIMEOUT);
    match &outcome.status {
        ScriptStatus::Exited(status) => assert_eq!(status.code(), Some(3)),
        other => panic!("{other}"),
    }
    assert!(!outcome.success());
    assert_eq!(outcome.status.to_string(), "exited with status 3");
    assert_eq!(outcome.stdout.bytes.len(), CAPTURE_LIMIT);
    assert!(outcome.stdout.bytes.iter().all(|&b| b == b'x'));
    assert!(outcome.stdout.truncated);
    assert_eq!(outcome.stderr.text(), "fail\n");
    assert!(!outcome.stderr.truncated);
}

#[test]
fn script_background_child_does_not_hold_the_worker() {
    let dir = TempDir::new("script-bg");
    // The background sleep inherits stdout; run must not wait for it to close.
    let script = write_script(&dir, "bg.sh", "sleep 3 &\necho done\n");
    let start = Instant::now();
    let outcome = script::run(&script, &event(EventType::PublishStart, json!({})), TIMEOUT);
    assert!(outcome.success(), "{}", outcome.status);
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert_eq!(outcome.stdout.text(), "done\n");
}

#[test]
fn script_that_cannot_start() {
    let dir = TempDir::new("script-spawn");
    let path = dir.path("not-executable.sh");
    fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let outcome = script::run(&path, &event(EventType::PublishStart, json!({})), TIMEOUT);
    match &outcome.status {
        ScriptStatus::SpawnFailed(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied)
        }
        other => panic!("{other}"),
    }
    let missing = script::run(&dir.path("missing"), &event(EventType::PublishStart, json!({})), TIMEOUT);
    assert!(matches!(missing.status, ScriptStatus::SpawnFailed(_)));
}

// ---------------------------------------------------------------------------------------------
// stdio

/// Parses an `env` line as documented in `stdio`: pairs separated by one space, a value bare
/// or a JSON string.
fn parse_env_line(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').expect("NAME=");
        assert!(name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'), "{name}");
        let (value, after) = if after.starts_with('"') {
            // The shortest prefix that is a complete JSON string.
            let mut de = serde_json::Deserializer::from_str(after).into_iter::<String>();
            let value = de.next().expect("a quoted value").expect("valid JSON string");
            (value, &after[de.byte_offset()..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        pairs.push((name.to_owned(), value));
        rest = match after.strip_prefix(' ') {
            Some(next) => next,
            None => {
                assert!(after.is_empty(), "junk after a value: {after:?}");
                after
            }
        };
    }
    pairs
}

#[test]
fn stdio_lines_parse_back() {
    let e = event(
        EventType::AuthFailed,
        json!({
            "action": "publish",
            "error": "callback said \"no\" = 403\nbye\ttab \\ é",
            "empty": "",
            "args": {"token": "a=b c"},
        }),
    );
    let json_line = stdio::line(&e, StdioFormat::Json);
    assert!(!json_line.contains('\n'));
    let v: Value = serde_json::from_str(&json_line).unwrap();
    assert_eq!(v["type"], "auth_failed");
    assert_eq!(v["data"]["error"], e.data["error"]);
    assert_eq!(v, serde_json::from_str::<Value>(&format::envelope_json(&e)).unwrap());

    let env_line = stdio::line(&e, StdioFormat::Env);
    assert!(!env_line.contains('\n'));
    assert_eq!(parse_env_line(&env_line), format::env_vars(&e));
    assert!(env_line.starts_with("RTMP_EVENT_TYPE=auth_failed "), "{env_line}");
}
