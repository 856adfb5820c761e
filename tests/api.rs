//! The admin API over real HTTP: a real hub, hooks and dispatcher behind `api::serve` on an
//! ephemeral loopback port, spoken to with raw `TcpStream`s (so malformed requests are
//! possible), and webhooks delivered to a real local receiver. The last test runs the binary.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use common::http_receiver::{self, HttpReceiver};
use common::rtmp_client;
use ringcast::api::{self, ApiOptions, ApiState, SessionControl};
use ringcast::config::{ApiToken, Config, EventFilter, WebhookConfig};
use ringcast::hooks::dispatch::{self, DispatchLimits, Dispatcher};
use ringcast::hooks::event::Protocol;
use ringcast::hooks::payload::ConnectionAccept;
use ringcast::hooks::{Hooks, Origin, webhook};
use ringcast::hub::{Hub, HubSettings, ShardHub};
use ringcast::protocol::rtmp::client::Goal;
use ringcast::session::{ClientSummary, Role};

const TOKEN: &str = "test-token-0123456789";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A served API
// ---------------------------------------------------------------------------------------------

/// A fresh state directory under cargo's per-target temp dir (not created: the API must).
fn temp_state_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("api-{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir.join("state")
}

struct Setup {
    token: Option<&'static str>,
    grace: Duration,
    state_dir: PathBuf,
    config: Config,
    control: Option<Arc<dyn SessionControl>>,
    max_webhooks: usize,
    max_connections: usize,
}

impl Setup {
    fn new(name: &str) -> Setup {
        Setup {
            token: Some(TOKEN),
            grace: Duration::from_secs(3600),
            state_dir: temp_state_dir(name),
            config: Config::default(),
            control: None,
            max_webhooks: Config::default().api_max_webhooks,
            max_connections: api::MAX_CONNECTIONS,
        }
    }
}

struct Api {
    addr: SocketAddr,
    token: Option<&'static str>,
    hub: Arc<Hub>,
    hooks: Arc<Hooks>,
    dispatcher: Arc<Dispatcher>,
    state_dir: PathBuf,
    loaded: Result<usize, String>,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Api {
    fn start(setup: Setup) -> Api {
        let (hub, _inboxes) = Hub::new(1, HubSettings::default());
        let agent = webhook::agent(Duration::from_secs(5), None).unwrap();
        let sinks = dispatch::sinks_from_config(&setup.config, &agent);
        let limits = DispatchLimits { concurrency: 2, queue: 1000, ..DispatchLimits::default() };
        let dispatcher = Dispatcher::start(sinks, agent, limits);
        let hooks = Hooks::new(&setup.config, Some(Box::new(dispatcher.clone())));
        let options = ApiOptions {
            token: setup.token.map(|t| ApiToken::parse(t).unwrap()),
            state_dir: setup.state_dir.clone(),
            rotation_grace: setup.grace,
            max_webhooks: setup.max_webhooks,
            max_connections: setup.max_connections,
        };
        let mut state = ApiState::new(hub.clone(), hooks.clone(), dispatcher.clone(), options);
        if let Some(control) = setup.control {
            state = state.with_control(control);
        }
        let loaded = state.load_persisted().map_err(|e| e.to_string());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let thread = api::serve(listener, Arc::new(state), shutdown.clone()).unwrap();
        Api {
            addr,
            token: setup.token,
            hub,
            hooks,
            dispatcher,
            state_dir: setup.state_dir,
            loaded,
            shutdown,
            thread: Some(thread),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        request(self.addr, method, path, self.token, body.map(|b| b.to_string()).as_deref())
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    fn create(&self, body: Value) -> Value {
        let reply = self.call("POST", "/api/webhooks", Some(body));
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()
    }

    /// Emits a connection_accept event, as a shard would.
    fn emit_accept(&self, conn_id: u64) {
        let origin = Origin {
            conn_id,
            protocol: Protocol::Rtmp,
            addr: "192.0.2.1:50000".parse().unwrap(),
            stream_key: String::new(),
        };
        let remote_addr = origin.addr.to_string();
        self.hooks.emit(&origin, || ConnectionAccept { remote_addr, protocol: "rtmp" });
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.dispatcher.shutdown(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error message: {}", self.text())).to_owned()
    }
}

/// Sends `bytes` and reads until the server closes (or 10 s pass).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // The server may answer and close before it read everything (a 413): a failed write is
    // fine, what it answered is what matters.
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Splits a byte stream into the responses it holds.
fn parse_replies(mut bytes: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("content-length"))
            .unwrap_or(0);
        let start = end + 4;
        let body = bytes[start..(start + length).min(bytes.len())].to_vec();
        bytes = &bytes[(start + length).min(bytes.len())..];
        replies.push(Reply { status, headers, body });
    }
    replies
}

fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(token) = token {
        text.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        text.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        text.push_str("\r\n");
    }
    let bytes = exchange(addr, text.as_bytes());
    let mut replies = parse_replies(&bytes);
    assert_eq!(replies.len(), 1, "one response expected, got: {}", String::from_utf8_lossy(&bytes));
    replies.remove(0)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Health, auth, routes
// ---------------------------------------------------------------------------------------------

#[test]
fn healthz_is_open_and_everything_else_wants_the_token() {
    let api = Api::start(Setup::new("auth"));
    let health = request(api.addr, "GET", "/healthz", None, None);
    assert_eq!((health.status, health.json()), (200, json!({ "status": "ok" })));
    assert_eq!(health.header("content-type"), Some("application/json"));

    for path in ["/metrics", "/api/streams", "/api/webhooks", "/api/webhooks/wh_0000000000000000", "/nope"] {
        let none = request(api.addr, "GET", path, None, None);
        assert_eq!(none.status, 401, "{path}");
        assert!(none.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{path}");
        let wrong = request(api.addr, "GET", path, Some("test-token-0123456788"), None);
        assert_eq!(wrong.status, 401, "{path}");
        assert!(wrong.header("www-authenticate").unwrap().contains("invalid_token"));
        let longer = request(api.addr, "GET", path, Some(&format!("{TOKEN}x")), None);
        assert_eq!(longer.status, 401, "{path}");
    }
    let basic =
        exchange(api.addr, b"GET /api/streams HTTP/1.1\r\nAuthorization: Basic dGVzdA==\r\nConnection: close\r\n\r\n");
    assert_eq!(parse_replies(&basic)[0].status, 401);
    assert_eq!(api.get("/api/streams").status, 200);
    assert_eq!(api.get("/metrics").status, 200);
    let lower = exchange(
        api.addr,
        format!("GET /api/streams HTTP/1.1\r\nauthorization: bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(parse_replies(&lower)[0].status, 200);
}

#[test]
fn no_token_means_open() {
    let api = Api::start(Setup { token: None, ..Setup::new("open") });
    assert_eq!(request(api.addr, "GET", "/api/webhooks", None, None).status, 200);
}

#[test]
fn unknown_routes_and_wrong_methods() {
    let api = Api::start(Setup::new("routes"));
    let missing = api.get("/api/nothing");
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("/api/nothing"));
    let wrong = api.call("PUT", "/api/webhooks", Some(json!({})));
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(api.call("DELETE", "/healthz", None).status, 405);
    assert_eq!(api.call("POST", "/api/streams", Some(json!({}))).status, 405);
    assert_eq!(api.get("/api/webhooks/wh_0123456789abcdef").status, 404);
    assert_eq!(api.get("/api/webhooks/config_99").status, 404);
    assert_eq!(api.get("/api/webhooks/../../etc/passwd").status, 404);
    // HEAD: the GET's headers, no body.
    let head = exchange(
        api.addr,
        format!("HEAD /api/streams HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "HEAD must have no body: {text}");
    // No session control wired: 503, not a crash.
    assert_eq!(api.get("/api/clients").status, 503);
}

// ---------------------------------------------------------------------------------------------
// Streams and clients
// ---------------------------------------------------------------------------------------------

#[test]
fn streams_are_listed() {
    let api = Api::start(Setup::new("streams"));
    assert_eq!(api.get("/api/streams").json(), json!({ "streams": [] }));
    let shard = ShardHub::new(0, api.hub.clone());
    let (publisher, _) = shard.publish("live/cam1").unwrap();
    let (player, _) = shard.play("live/cam1", 7);
    let (waiting, _) = shard.play("live/later", 8);
    let streams = api.get("/api/streams").json();
    assert_eq!(
        streams,
        json!({ "streams": [
            { "key": "live/cam1", "live": true, "publisher_shard": 0, "players": 1 },
            { "key": "live/later", "live": false, "publisher_shard": null, "players": 1 },
        ]})
    );
    let metrics = api.get("/metrics").text();
    assert!(metrics.contains("\nringcast_streams 2\n"), "{metrics}");
    assert!(metrics.contains("\nringcast_streams_live 1\n"), "{metrics}");
    assert!(metrics.contains("\nringcast_players 2\n"), "{metrics}");
    drop((player, waiting, publisher));
}

struct FakeControl {
    kicked: Mutex<Vec<u64>>,
}

impl SessionControl for FakeControl {
    fn clients(&self) -> Vec<ClientSummary> {
        vec![ClientSummary {
            conn_id: 7,
            shard: 1,
            protocol: Protocol::Rtmp,
            addr: "192.0.2.9:4000".into(),
            role: Role::Publisher,
            stream: "live/cam1".into(),
            connected_at_ms: 1_700_000_000_000,
        }]
    }

    fn kick(&self, conn_id: u64) -> bool {
        self.kicked.lock().unwrap().push(conn_id);
        conn_id == 7
    }
}

#[test]
fn clients_are_listed_and_kicked() {
    let control = Arc::new(FakeControl { kicked: Mutex::new(Vec::new()) });
    let api = Api::start(Setup { control: Some(control.clone()), ..Setup::new("clients") });
    let clients = api.get("/api/clients").json();
    assert_eq!(clients["clients"][0]["conn_id"], 7);
    assert_eq!(clients["clients"][0]["role"], "publisher");
    assert_eq!(clients["clients"][0]["stream"], "live/cam1");
    let kicked = api.call("DELETE", "/api/clients/7", None);
    assert_eq!((kicked.status, kicked.json()), (200, json!({ "id": 7, "kicked": true })));
    assert_eq!(api.call("DELETE", "/api/clients/8", None).status, 404);
    assert_eq!(api.call("DELETE", "/api/clients/x", None).status, 404);
    assert_eq!(*control.kicked.lock().unwrap(), vec![7, 8]);
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

#[test]
fn webhook_crud_round_trip() {
    let api = Api::start(Setup::new("crud"));
    assert_eq!(api.get("/api/webhooks").json(), json!({ "webhooks": [] }));

    let created = api.create(json!({
        "url": "http://127.0.0.1:9/events",
        "events": ["publish_start", "publish_stop"],
        "headers": ["Authorization: Basic T1BF"],
        "retries": 2,
    }));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_") && id.len() == 19, "{id}");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(BASE64.decode(&secret[6..]).unwrap().len(), 32);
    assert_eq!(created["origin"], "api");
    assert_eq!(created["url"], "http://127.0.0.1:9/events");
    assert_eq!(created["events"], json!(["publish_start", "publish_stop"]));
    // Header values are write-only: an API answer is as public as a log line.
    assert_eq!(created["headers"], json!(["Authorization: ***"]));
    assert_eq!(created["format"], "envelope");
    assert_eq!(created["signature"], "standard");
    assert_eq!(created["retries"], 2);
    assert_eq!(created["disabled"], false);
    assert_eq!(created["stats"]["delivered"], 0);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    // It runs on the dispatcher.
    let sinks = api.dispatcher.sinks();
    assert_eq!(sinks.len(), 1);
    assert_eq!(sinks[0].webhook.as_ref().unwrap().url, "http://127.0.0.1:9/events");

    // GET never shows the secret, only a hint of it.
    let got = api.get(&format!("/api/webhooks/{id}"));
    assert_eq!(got.status, 200);
    let got = got.json();
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["secret_hint"].as_str().unwrap(), format!("…{}", &secret[secret.len() - 4..]));
    assert_eq!(got["signed"], true);
    let listed = api.get("/api/webhooks").json();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(listed["webhooks"][0]["id"], id.as_str());
    assert!(!api.get("/api/webhooks").text().contains(secret));

    // PATCH changes what is given; null resets to the default.
    let patched = api.call(
        "PATCH",
        &format!("/api/webhooks/{id}"),
        Some(json!({ "events": ["*"], "format": "flat", "retries": null, "signature": "sha1", "signature_header": "X-Millicast-Signature" })),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    let patched = patched.json();
    assert_eq!(patched["events"], json!(["*"]));
    assert_eq!(patched["format"], "flat");
    assert_eq!(patched["retries"], 5);
    assert_eq!(patched["signature_header"], "X-Millicast-Signature");
    assert_eq!(patched["headers"], json!(["Authorization: ***"]));
    assert_eq!(patched["url"], "http://127.0.0.1:9/events");
    assert_eq!(patched["id"], id.as_str());
    assert!(patched.get("secret").is_none());
    let sink = api.dispatcher.sinks().into_iter().next().unwrap();
    assert_eq!(sink.webhook.as_ref().unwrap().events, EventFilter::All);
    // Back to standard: the sha1 header name is dropped with it.
    let back = api.call("PATCH", &format!("/api/webhooks/{id}"), Some(json!({ "signature": "standard" }))).json();
    assert_eq!(back["signature_header"], "X-Ringcast-Signature");

    let deleted = api.call("DELETE", &format!("/api/webhooks/{id}"), None);
    assert_eq!((deleted.status, deleted.json()), (200, json!({ "id": id, "deleted": true })));
    assert_eq!(api.get(&format!("/api/webhooks/{id}")).status, 404);
    assert_eq!(api.call("DELETE", &format!("/api/webhooks/{id}"), None).status, 404);
    assert!(api.dispatcher.sinks().is_empty());

    // A given secret is kept as given.
    let given =
        api.create(json!({ "url": "http://127.0.0.1:9/x", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }));
    assert_eq!(given["secret"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(given["events"], json!(["*"]));
}

/// The message the config file gives for `[[webhook]]` with these keys, without its location
/// and `webhook[0].` prefix: what the API must answer for the same values.
fn config_message(keys: &str) -> String {
    let toml = format!("[[webhook]]\n{keys}\n");
    let error = Config::from_toml(&toml, Path::new("t.toml")).expect_err(&toml).to_string();
    let (_, rest) = error.split_once("key 'webhook[0].").unwrap_or_else(|| panic!("unexpected: {error}"));
    format!("key '{rest}")
}

#[test]
fn validation_errors_are_those_of_the_config_file() {
    let api = Api::start(Setup::new("validation"));
    let url = r#"url = "http://127.0.0.1:9/x""#;
    let secret = r#"secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#;
    let cases: Vec<(String, Value)> = vec![
        (r#"url = "ftp://x""#.into(), json!({ "url": "ftp://x" })),
        (r#"url = "http://""#.into(), json!({ "url": "http://" })),
        ("url = 5".into(), json!({ "url": 5 })),
        (format!("{url}\nevents = [\"publish_strat\"]"), json!({ "events": ["publish_strat"] })),
        (format!("{url}\nevents = [\"zzz\"]"), json!({ "events": ["zzz"] })),
        (format!("{url}\nevents = []"), json!({ "events": [] })),
        (format!("{url}\nevents = [1]"), json!({ "events": [1] })),
        (format!("{url}\nevents = \"publish_start\""), json!({ "events": "publish_start" })),
        (format!("{url}\nheaders = [\"no colon\"]"), json!({ "headers": ["no colon"] })),
        (format!("{url}\nheaders = [\"Content-Length: 5\"]"), json!({ "headers": ["Content-Length: 5"] })),
        (format!("{url}\nheaders = [\"X-A: a\\r\\nX-B: b\"]"), json!({ "headers": ["X-A: a\r\nX-B: b"] })),
        (format!("{url}\nformat = \"xml\""), json!({ "format": "xml" })),
        (format!("{url}\n{secret}\nsignature = \"md5\""), json!({ "signature": "md5" })),
        (format!("{url}\nsecret = \"c2hvcnQ=\""), json!({ "secret": "c2hvcnQ=" })),
        (format!("{url}\nsecret = \"not base64!\""), json!({ "secret": "not base64!" })),
        (format!("{url}\nretries = 101"), json!({ "retries": 101 })),
        (format!("{url}\nretries = -1"), json!({ "retries": -1 })),
        (format!("{url}\nretries = \"5\""), json!({ "retries": "5" })),
        (format!("{url}\n{secret}\nsignature_header = \"X-Sig\""), json!({ "signature_header": "X-Sig" })),
        (
            format!("{url}\n{secret}\nsignature = \"sha1\"\nsignature_header = \"Bad Name\""),
            json!({ "signature": "sha1", "signature_header": "Bad Name" }),
        ),
        (
            format!("{url}\nformat = \"dolby\"\nevents = [\"play_start\"]"),
            json!({ "format": "dolby", "events": ["play_start"] }),
        ),
    ];
    for (toml, mut body) in cases {
        let expected = config_message(&toml);
        if body.get("url").is_none() {
            body["url"] = json!("http://127.0.0.1:9/x");
        }
        let reply = api.call("POST", "/api/webhooks", Some(body.clone()));
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_eq!(reply.error(), expected, "{body}");
    }

    // What only the API can get wrong.
    let api_only: Vec<(Value, &str)> = vec![
        (json!({}), "missing required key 'url'"),
        (json!([1]), "the request body must be a JSON object, got an array"),
        (json!({ "url": "http://127.0.0.1:9/x", "retry": 3 }), "unknown key 'retry' (expected one of: url, events,"),
        (json!({ "url": "http://127.0.0.1:9/x", "retries": 1.5 }), "key 'retries': expected an integer, got a float"),
    ];
    for (body, expected) in api_only {
        let reply = api.call("POST", "/api/webhooks", Some(body.clone()));
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.error().starts_with(expected), "{body}: {}", reply.error());
    }
    let bad_json = request(api.addr, "POST", "/api/webhooks", Some(TOKEN), Some("{\"url\": "));
    assert_eq!(bad_json.status, 400);
    assert!(bad_json.error().starts_with("invalid JSON: "), "{}", bad_json.error());
    let empty = request(api.addr, "POST", "/api/webhooks", Some(TOKEN), Some(""));
    assert_eq!((empty.status, empty.error().as_str()), (400, "the request body must be a JSON object"));
    assert!(api.dispatcher.sinks().is_empty(), "nothing invalid was created");

    // PATCH validates the merged result, and the secret has its own route.
    let id = api.create(json!({ "url": "http://127.0.0.1:9/x", "events": ["play_start"] }))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/webhooks/{id}");
    let dolby = api.call("PATCH", &path, Some(json!({ "format": "dolby" })));
    assert_eq!(dolby.status, 400);
    assert!(
        dolby.error().starts_with("key 'events': format \"dolby\" cannot express 'play_start'"),
        "{}",
        dolby.error()
    );
    let secret = api.call("PATCH", &path, Some(json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" })));
    assert_eq!(secret.status, 400);
    assert!(secret.error().contains(&format!("POST /api/webhooks/{id}/secret")), "{}", secret.error());
    assert_eq!(api.call("PATCH", &path, Some(json!({ "url": "nope" }))).status, 400);
    assert_eq!(api.get(&path).json()["url"], "http://127.0.0.1:9/x", "a refused PATCH changes nothing");
}

#[test]
fn config_file_webhooks_are_listed_read_only() {
    let mut config = Config::default();
    config.webhooks.push(WebhookConfig::new("http://127.0.0.1:9/from-config".into(), EventFilter::All));
    let api = Api::start(Setup { config, ..Setup::new("config-hooks") });
    let listed = api.get("/api/webhooks").json();
    let first = &listed["webhooks"][0];
    assert_eq!(first["id"], "config_1");
    assert_eq!(first["origin"], "config");
    assert_eq!(first["url"], "http://127.0.0.1:9/from-config");
    assert_eq!(first["signed"], false);
    assert_eq!(first["created_at"], Value::Null);
    assert_eq!(api.get("/api/webhooks/config_1").status, 200);
    for (method, path, body) in [
        ("PATCH", "/api/webhooks/config_1", Some(json!({ "retries": 1 }))),
        ("DELETE", "/api/webhooks/config_1", None),
        ("POST", "/api/webhooks/config_1/secret", None),
    ] {
        let reply = api.call(method, path, body);
        assert_eq!(reply.status, 409, "{method} {path}");
        assert!(reply.error().contains("config file"), "{}", reply.error());
    }
    // API webhooks are numbered after it by the dispatcher but keep their own ids.
    let created = api.create(json!({ "url": "http://127.0.0.1:9/api" }));
    let listed = api.get("/api/webhooks").json();
    assert_eq!(listed["webhooks"][1]["id"], created["id"]);
}

#[test]
fn webhooks_survive_a_restart() {
    let setup = Setup::new("persist");
    let state_dir = setup.state_dir.clone();
    assert!(!state_dir.exists());
    let (kept, rotated) = {
        let api = Api::start(setup);
        assert_eq!(api.loaded, Ok(0));
        let kept =
            api.create(json!({ "url": "http://127.0.0.1:9/kept", "events": ["publish_start"], "format": "dolby" }));
        let gone = api.create(json!({ "url": "http://127.0.0.1:9/gone" }));
        let rotated = api.create(json!({ "url": "http://127.0.0.1:9/rotated", "signature": "sha256" }));
        let kept_id = kept["id"].as_str().unwrap();
        api.call("PATCH", &format!("/api/webhooks/{kept_id}"), Some(json!({ "retries": 9 })));
        api.call("DELETE", &format!("/api/webhooks/{}", gone["id"].as_str().unwrap()), None);
        let rotation = api.call("POST", &format!("/api/webhooks/{}/secret", rotated["id"].as_str().unwrap()), None);
        assert_eq!(rotation.status, 200);
        (api.get(&format!("/api/webhooks/{kept_id}")).json(), rotation.json())
    };

    // The file: 0600 in a directory made 0700, holding exactly the two left.
    let file = state_dir.join("webhooks.json");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777, 0o700);
    let leftovers: Vec<_> = fs::read_dir(&state_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("webhooks.json")], "no temp files left behind");

    let api = Api::start(Setup { state_dir: state_dir.clone(), ..Setup::new("persist-2") });
    assert_eq!(api.loaded, Ok(2));
    let listed = api.get("/api/webhooks").json();
    let hooks = listed["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    let again = &hooks[0];
    for key in ["id", "url", "events", "format", "retries", "secret_hint", "created_at", "updated_at"] {
        assert_eq!(again[key], kept[key], "{key}");
    }
    assert_eq!(again["retries"], 9);
    // The rotation in progress survived too: both secrets still sign.
    let restored = &hooks[1];
    assert_eq!(restored["id"], rotated["id"]);
    assert_eq!(restored["rotation"], rotated["rotation"]);
    assert!(restored["rotation"]["expires_at"].is_string());
    let sink = api.dispatcher.sinks().into_iter().nth(1).unwrap();
    assert_eq!(sink.webhook.as_ref().unwrap().secret.as_ref().unwrap().as_str(), rotated["secret"].as_str().unwrap());
    assert_eq!(sink.webhook.as_ref().unwrap().signature.as_str(), "sha256");
}

#[test]
fn a_corrupt_state_file_is_set_aside() {
    let state_dir = temp_state_dir("corrupt");
    fs::create_dir_all(&state_dir).unwrap();
    fs::write(state_dir.join("webhooks.json"), "{ not json").unwrap();
    let api = Api::start(Setup { state_dir: state_dir.clone(), ..Setup::new("corrupt") });
    let error = api.loaded.clone().unwrap_err();
    assert!(error.contains(&state_dir.join("webhooks.json").display().to_string()), "{error}");
    assert!(error.contains("webhooks.json.corrupt-"), "{error}");
    let aside: Vec<_> = fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("webhooks.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(fs::read_to_string(state_dir.join(&aside[0])).unwrap(), "{ not json");
    // The API works, and the next change writes a fresh file.
    api.create(json!({ "url": "http://127.0.0.1:9/x" }));
    assert!(fs::read_to_string(state_dir.join("webhooks.json")).unwrap().contains("http://127.0.0.1:9/x"));
    drop(api);

    // A valid file with an invalid webhook (hand-edited) is refused whole, naming the webhook.
    let text = fs::read_to_string(state_dir.join("webhooks.json")).unwrap().replace("http://127.0.0.1:9/x", "ftp://x");
    fs::write(state_dir.join("webhooks.json"), text).unwrap();
    let api = Api::start(Setup { state_dir: state_dir.clone(), ..Setup::new("corrupt-2") });
    let error = api.loaded.clone().unwrap_err();
    assert!(error.contains("webhook 0 (wh_") && error.contains("key 'url': invalid URL 'ftp://x'"), "{error}");
    assert!(api.dispatcher.sinks().is_empty());
}

#[test]
fn an_unwritable_state_dir_changes_nothing() {
    let base = temp_state_dir("unwritable");
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    // A file where the directory should be: creating the directory fails, even as root.
    fs::write(&base, "not a directory").unwrap();
    let api = Api::start(Setup { state_dir: base.join("sub"), ..Setup::new("unwritable") });
    let reply = api.call("POST", "/api/webhooks", Some(json!({ "url": "http://127.0.0.1:9/x" })));
    assert_eq!(reply.status, 500);
    assert!(reply.error().contains("cannot save webhooks"), "{}", reply.error());
    assert!(api.dispatcher.sinks().is_empty());
    assert_eq!(api.get("/api/webhooks").json(), json!({ "webhooks": [] }));
}

// ---------------------------------------------------------------------------------------------
// Secret rotation, checked on the wire
// ---------------------------------------------------------------------------------------------

fn standard_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = BASE64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` entries of a request, each checked against the secrets given, in
/// order.
fn check_signatures(request: &http_receiver::Request, secrets: &[&str]) {
    let header = request.header("webhook-signature").expect("signed");
    let entries: Vec<&str> = header.split(' ').collect();
    let (id, timestamp) = (request.header("webhook-id").unwrap(), request.header("webhook-timestamp").unwrap());
    let expected: Vec<String> = secrets.iter().map(|s| standard_signature(s, id, timestamp, &request.body)).collect();
    assert_eq!(entries, expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn rotation_signs_with_both_secrets_during_the_grace() {
    let receiver = HttpReceiver::start();
    let grace = Duration::from_millis(1500);
    let api = Api::start(Setup { grace, ..Setup::new("rotation") });
    let created = api.create(json!({ "url": receiver.url("/hook"), "events": ["connection_accept"] }));
    let id = created["id"].as_str().unwrap();
    let first = created["secret"].as_str().unwrap().to_owned();

    api.emit_accept(1);
    let requests = receiver.wait_for(1, WAIT);
    assert_eq!(requests.len(), 1);
    check_signatures(&requests[0], &[&first]);

    let rotated = api.call("POST", &format!("/api/webhooks/{id}/secret"), None);
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(rotated["rotation"]["expires_at"].is_string());
    assert_eq!(
        rotated["rotation"]["previous_secret_hint"].as_str().unwrap(),
        format!("…{}", &first[first.len() - 4..])
    );

    api.emit_accept(2);
    let requests = receiver.wait_for(2, WAIT);
    assert_eq!(requests.len(), 2);
    check_signatures(&requests[1], &[&second, &first]);

    // After the grace the sweep retires the previous secret.
    wait_until("the rotation to end", || api.get(&format!("/api/webhooks/{id}")).json()["rotation"].is_null());
    api.emit_accept(3);
    let requests = receiver.wait_for(3, WAIT);
    assert_eq!(requests.len(), 3);
    check_signatures(&requests[2], &[&second]);
    assert!(!fs::read_to_string(api.state_dir.join("webhooks.json")).unwrap().contains(&first));

    // A given secret; the current one is refused as "new".
    let given = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let again = api.call("POST", &format!("/api/webhooks/{id}/secret"), Some(json!({ "secret": given })));
    assert_eq!(again.json()["secret"], given);
    let same = api.call("POST", &format!("/api/webhooks/{id}/secret"), Some(json!({ "secret": given })));
    assert_eq!(same.status, 400);
    let bad = api.call("POST", &format!("/api/webhooks/{id}/secret"), Some(json!({ "secret": "short" })));
    assert_eq!(bad.status, 400);
    assert!(bad.error().starts_with("key 'secret': "), "{}", bad.error());
    assert_eq!(api.call("POST", "/api/webhooks/wh_0123456789abcdef/secret", None).status, 404);

    let stats = api.get(&format!("/api/webhooks/{id}")).json()["stats"].clone();
    assert_eq!(stats["in_flight"], 0);
}

#[test]
fn a_disabled_webhook_is_shown_and_a_patch_re_enables_it() {
    let receiver = HttpReceiver::start();
    receiver.set_default(http_receiver::Reply::status(410));
    let api = Api::start(Setup::new("gone"));
    let id = api.create(json!({ "url": receiver.url("/gone"), "events": ["connection_accept"] }))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.emit_accept(1);
    wait_until("the 410 to disable the webhook", || api.get(&format!("/api/webhooks/{id}")).json()["disabled"] == true);
    let metrics = api.get("/metrics").text();
    assert!(
        metrics.lines().any(|l| l.starts_with("ringcast_sink_disabled{") && l.contains(&id) && l.ends_with(" 1")),
        "{metrics}"
    );
    receiver.set_default(http_receiver::Reply::status(200));
    let patched = api.call("PATCH", &format!("/api/webhooks/{id}"), Some(json!({})));
    assert_eq!(patched.json()["disabled"], false);
    api.emit_accept(2);
    assert_eq!(receiver.wait_for(2, WAIT).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// One sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses one sample line, `name{labels} value`, strictly.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"").ok_or("label without =\"")?;
            let label = &rest[..eq];
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {label:?}"));
            }
            rest = &rest[eq + 2..];
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape".into()),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            };
            labels.push((label.to_owned(), value));
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok((name.to_owned(), labels, value))
}

#[test]
fn metrics_are_prometheus_text() {
    let mut config = Config::default();
    config.webhooks.push(WebhookConfig::new("http://user:pw@127.0.0.1:9/cfg?token=secret".into(), EventFilter::All));
    let api = Api::start(Setup { config, ..Setup::new("metrics") });
    let created = api.create(json!({ "url": "http://127.0.0.1:9/api\"quoted" }));
    let id = created["id"].as_str().unwrap();
    let reply = api.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = reply.text();
    assert!(!text.contains("pw@") && !text.contains("token=secret"), "credentials leaked into metrics:\n{text}");

    let mut typed: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let parts: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match parts.as_slice() {
                ["TYPE", name, kind] => typed.push((name.to_string(), kind.to_string())),
                ["HELP", _, _] => {}
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| sample.0.strip_suffix(s).filter(|f| typed.iter().any(|(n, k)| n == f && k == "histogram")))
            .unwrap_or(&sample.0)
            .to_owned();
        assert!(typed.iter().any(|(n, _)| *n == family), "sample before its # TYPE: {line}");
        samples.push(sample);
    }
    let find = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|(n, labels, _)| {
                n == name && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
    };
    for name in [
        "ringcast_packets_in_total",
        "ringcast_malformed_packets_total",
        "ringcast_relay_dropped_total",
        "ringcast_players_kicked_total",
        "ringcast_streams",
        "ringcast_players",
        "ringcast_hook_dropped_inbound_total",
        "ringcast_callback_requests_total",
        "ringcast_callback_duration_seconds_sum",
        "ringcast_callback_duration_seconds_count",
    ] {
        assert_eq!(find(name, None), Some(0.0), "{name}");
    }
    assert_eq!(find("ringcast_callback_duration_seconds_bucket", Some(("le", "+Inf"))), Some(0.0));
    for name in ["ringcast_sink_delivered_total", "ringcast_sink_queued", "ringcast_sink_disabled"] {
        assert_eq!(find(name, Some(("sink", id))), Some(0.0), "{name}");
        assert_eq!(find(name, Some(("sink", "config_1"))), Some(0.0), "{name}");
    }
    assert_eq!(find("ringcast_sink_failed_total", Some(("target", "http://127.0.0.1:9/api\"quoted"))), Some(0.0));
    assert_eq!(
        find("ringcast_sink_failed_total", Some(("target", "http://user:***@127.0.0.1:9/cfg?token=***"))),
        Some(0.0)
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input and limits
// ---------------------------------------------------------------------------------------------

fn assert_healthy(api: &Api) {
    assert_eq!(request(api.addr, "GET", "/healthz", None, None).status, 200);
}

#[test]
fn garbage_gets_clear_errors_and_the_server_keeps_serving() {
    let api = Api::start(Setup::new("garbage"));
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let status_of = |bytes: &[u8]| parse_replies(&exchange(api.addr, bytes)).first().map(|r| r.status);

    assert_eq!(status_of(b"\x00\x01\x02 garbage\r\n\r\n"), Some(400));
    assert_eq!(status_of(b"GET / HTTP/9.9\r\n\r\n"), Some(400));
    let huge_header = format!("GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    assert_eq!(status_of(huge_header.as_bytes()), Some(431));
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(status_of(format!("GET /healthz HTTP/1.1\r\n{many_headers}\r\n").as_bytes()), Some(431));
    let too_big =
        format!("POST /api/webhooks HTTP/1.1\r\n{auth}Content-Length: {}\r\n\r\n{}", 2 << 20, "x".repeat(64 * 1024));
    assert_eq!(status_of(too_big.as_bytes()), Some(413));
    let chunked =
        format!("POST /api/webhooks HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(status_of(chunked.as_bytes()), Some(501));
    assert_eq!(status_of(b"POST /api/webhooks HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), Some(400));
    assert_eq!(
        status_of(b"POST /api/webhooks HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
        Some(400)
    );
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = request(api.addr, "POST", "/api/webhooks", Some(TOKEN), Some(&nested));
    assert_eq!(deep.status, 400);
    assert!(deep.error().contains("invalid JSON"), "{}", deep.error());
    let mut not_utf8 =
        format!("POST /api/webhooks HTTP/1.1\r\n{auth}Content-Length: 4\r\nConnection: close\r\n\r\n").into_bytes();
    not_utf8.extend_from_slice(b"\xff\xfe\x00\x01");
    assert_eq!(status_of(&not_utf8), Some(400));

    // Pseudo-random bytes: a 4xx or a closed connection, never a crash.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..50 {
        let blob: Vec<u8> = (0..(64 + round * 97))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut stream = TcpStream::connect(api.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = stream.write_all(&blob);
        let _ = stream.write_all(b"\r\n\r\n");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        for reply in parse_replies(&out) {
            assert!((400..500).contains(&reply.status) || reply.status == 501, "round {round}: {}", reply.status);
        }
    }
    assert_healthy(&api);
    assert_eq!(api.get("/api/webhooks").status, 200);
}

#[test]
fn keep_alive_and_pipelining() {
    let api = Api::start(Setup::new("keepalive"));
    let body = json!({ "url": "http://127.0.0.1:9/x" }).to_string();
    let text = format!(
        "GET /healthz HTTP/1.1\r\n\r\n\
         POST /api/webhooks HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}\
         POST /api/webhooks HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 3\r\n\r\n{{]}}\
         GET /api/webhooks HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let replies = parse_replies(&exchange(api.addr, text.as_bytes()));
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 201, 400, 200], "a bad body does not end the connection");
    assert_eq!(replies[3].json()["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(replies[3].header("connection"), Some("close"));

    // Expect: 100-continue is honoured.
    let mut stream = TcpStream::connect(api.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST /api/webhooks HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    assert_eq!(parse_replies(&out)[0].status, 201);

    // HTTP/1.0 closes by default.
    let old = exchange(api.addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(parse_replies(&old)[0].status, 200);
}

#[test]
fn a_full_table_evicts_the_longest_waiting_connection() {
    let api = Api::start(Setup { max_connections: 8, ..Setup::new("cap") });
    let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(api.addr).unwrap()).collect();
    // Accepts happen in order: the ninth connection finds the table full and takes the slot
    // of the first, which has waited longest.
    let answered = exchange(api.addr, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(parse_replies(&answered)[0].status, 200);
    let oldest = &mut idle[0];
    oldest.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(oldest.read(&mut [0u8; 64]).unwrap_or(0), 0, "the oldest idle connection was closed");
    let metrics = api.get("/metrics").text();
    assert!(common::metric_total(&metrics, "ringcast_api_connections_evicted_total") >= 1, "{metrics}");
}

/// Opens `count` connections to `addr` that trickle a request head a byte at a time and never
/// finish it (slowloris), reconnecting whenever the server closes one, until dropped.
struct Slowloris {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Slowloris {
    fn start(addr: SocketAddr, count: usize) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let open = || -> Option<TcpStream> {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
                stream.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").ok()?;
                Some(stream)
            };
            let mut streams: Vec<Option<TcpStream>> = (0..count).map(|_| open()).collect();
            let mut reconnects = 0;
            while !stopped.load(Ordering::SeqCst) {
                for slot in streams.iter_mut() {
                    let alive = slot.as_mut().is_some_and(|s| s.write_all(b"a").is_ok());
                    if !alive {
                        *slot = open();
                        reconnects += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            reconnects
        });
        Slowloris { stop, thread: Some(thread) }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `/healthz` every 200 ms for `period`; returns the statuses (0: no answer) and the
/// slowest answer.
fn poll_health(addr: SocketAddr, period: Duration) -> (Vec<u16>, Duration) {
    let started = Instant::now();
    let (mut statuses, mut slowest) = (Vec::new(), Duration::ZERO);
    while started.elapsed() < period {
        let asked = Instant::now();
        let reply = exchange(addr, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        slowest = slowest.max(asked.elapsed());
        statuses.push(parse_replies(&reply).first().map_or(0, |r| r.status));
        std::thread::sleep(Duration::from_millis(200));
    }
    (statuses, slowest)
}

/// Slowloris, in one process: more slowloris connections than slots; every health check is
/// answered at once, because the slow connections are the ones evicted.
#[test]
fn slowloris_cannot_lock_out_health_checks() {
    let api = Api::start(Setup { max_connections: 16, ..Setup::new("slowloris") });
    let attack = Slowloris::start(api.addr, 40);
    std::thread::sleep(Duration::from_millis(500));
    let (statuses, slowest) = poll_health(api.addr, Duration::from_secs(3));
    drop(attack);
    assert!(statuses.iter().all(|&s| s == 200), "health checks during the attack: {statuses:?}");
    assert!(slowest < Duration::from_secs(1), "slowest health check took {slowest:?}");
    let metrics = api.get("/metrics").text();
    assert!(common::metric_total(&metrics, "ringcast_api_connections_evicted_total") > 0, "{metrics}");
}

/// Slowloris, through the binary: 100 slowloris connections (more than the 64 slots the API
/// had) that reconnect as soon as they are cut. Every health check succeeds quickly, the
/// trickled heads are cut at the head deadline, and the log gets a summary line, not a line per
/// connection.
#[test]
fn the_binary_api_survives_slowloris_with_a_quiet_log() {
    let server = common::TestServer::start();
    let addr = server.api_addr();
    let attack = Slowloris::start(addr, 100);
    std::thread::sleep(Duration::from_millis(500));
    let (statuses, slowest) = poll_health(addr, Duration::from_secs(7));
    let refused = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(refused, 0, "{refused} of {} health checks failed during the attack: {statuses:?}", statuses.len());
    assert!(slowest < Duration::from_secs(1), "slowest health check took {slowest:?}");
    let metrics = server.metrics();
    drop(attack);
    let log = server.log();
    // The heads were cut at the 5 s head deadline, not the old 30 s.
    assert!(common::metric_total(&metrics, "ringcast_api_requests_timed_out_total") >= 100, "{metrics}");
    let api_lines = log.lines().filter(|l| l.contains("admin API") && (l.contains("WARN") || l.contains("ERROR")));
    let api_lines: Vec<&str> = api_lines.filter(|l| !l.contains("has no api_token")).collect();
    assert!(api_lines.len() <= 2, "{} admin API warnings:\n{}", api_lines.len(), api_lines.join("\n"));
}

#[test]
fn serve_stops_on_shutdown() {
    let mut api = Api::start(Setup::new("shutdown"));
    assert_healthy(&api);
    api.shutdown.store(true, Ordering::SeqCst);
    let thread = api.thread.take().unwrap();
    let started = Instant::now();
    while !thread.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(5), "serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    thread.join().unwrap();
    assert!(TcpStream::connect(api.addr).is_err(), "the listener is closed");
}

// ---------------------------------------------------------------------------------------------
// Through the binary (needs the API wired into the server: `api=IP:PORT` in the ready line)
// ---------------------------------------------------------------------------------------------

#[test]
fn the_binary_serves_the_api_and_keeps_webhooks_across_restarts() {
    let receiver = HttpReceiver::start();
    let state_dir = temp_state_dir("binary");
    let toml = format!("api_token = \"{TOKEN}\"\nstate_dir = \"{}\"\n", state_dir.display());
    let server = common::TestServer::start_with_config(&toml, &[]);
    let addr = server.api_addr();
    assert_eq!(request(addr, "GET", "/healthz", None, None).status, 200);
    assert_eq!(request(addr, "GET", "/api/webhooks", None, None).status, 401);

    let body = json!({ "url": receiver.url("/events"), "events": ["connection_accept"] }).to_string();
    let created = request(addr, "POST", "/api/webhooks", Some(TOKEN), Some(&body));
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    // A TCP connection to the RTMP port is an event the new webhook wants.
    drop(TcpStream::connect(server.rtmp_addr()).unwrap());
    let requests = receiver.wait_for(1, WAIT);
    assert_eq!(requests.len(), 1, "no delivery\n--- log ---\n{}", server.log());
    check_signatures(&requests[0], &[created["secret"].as_str().unwrap()]);
    let metrics = request(addr, "GET", "/metrics", Some(TOKEN), None).text();
    assert!(metrics.contains(created["id"].as_str().unwrap()), "{metrics}");
    server.stop();

    let server = common::TestServer::start_with_config(&toml, &[]);
    let addr = server.api_addr();
    let listed = request(addr, "GET", "/api/webhooks", Some(TOKEN), None).json();
    assert_eq!(listed["webhooks"][0]["id"], created["id"]);
    drop(TcpStream::connect(server.rtmp_addr()).unwrap());
    assert_eq!(receiver.wait_for(2, WAIT).len(), 2, "no delivery after the restart\n--- log ---\n{}", server.log());
    server.stop();
}

/// Credential redaction: a run that creates webhooks (config and API), fails deliveries and a
/// callback, answers bad requests and checks its config must not show a password, a query
/// secret or a header value anywhere: not in the log, not in any API answer, not from
/// `--check`.
#[test]
fn credentials_never_reach_logs_or_api_answers() {
    // A port nobody listens on: every delivery and callback to it fails at once.
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let secrets = [
        "CfgPassw0rd",
        "CfgQueryT0ken",
        "CfgHeaderVa1ue",
        "CbQueryKey",
        "ApiPassw0rd",
        "ApiQueryKey",
        "ApiHeaderVa1ue",
        "BadPassw0rd",
        "PatchPassw0rd",
    ];
    let state_dir = temp_state_dir("redaction");
    let toml = format!(
        "api_token = \"{TOKEN}\"\nstate_dir = \"{}\"\n\
         [notify]\non_connect = \"http://{dead}/auth?key=CbQueryKey\"\ntimeout = \"2s\"\n\
         [[webhook]]\nurl = \"http://ops:CfgPassw0rd@{dead}/events?token=CfgQueryT0ken\"\n\
         headers = [\"Authorization: Bearer CfgHeaderVa1ue\"]\nretries = 0\n",
        state_dir.display()
    );
    let mut shown = String::new();

    // --check: a valid file, then one whose URL is wrong (its error quotes the URL).
    let config = common::TempFile::with_contents("redaction", "toml", &toml);
    let broken = toml.replace("/events?", "/ev ents?");
    let broken = common::TempFile::with_contents("redaction-broken", "toml", &broken);
    for file in [&config, &broken] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["--check", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        shown.push_str(&String::from_utf8_lossy(&out.stdout));
        shown.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(shown.contains("configuration OK") && shown.contains("invalid URL"), "--check said: {shown}");

    let server = common::TestServer::start_with_config(&toml, &[]);
    let addr = server.api_addr();
    let body = json!({
        "url": format!("http://api:ApiPassw0rd@{dead}/x?key=ApiQueryKey"),
        "headers": ["X-Api-Key: ApiHeaderVa1ue"],
        "retries": 0,
    })
    .to_string();
    let created = request(addr, "POST", "/api/webhooks", Some(TOKEN), Some(&body));
    assert_eq!(created.status, 201, "{}", created.text());
    shown.push_str(&created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let patch = json!({ "url": format!("http://api:PatchPassw0rd@{dead}/y?key=ApiQueryKey") }).to_string();
    let patched = request(addr, "PATCH", &format!("/api/webhooks/{id}"), Some(TOKEN), Some(&patch));
    assert_eq!(patched.status, 200, "{}", patched.text());
    shown.push_str(&patched.text());
    let bad = json!({ "url": "http://u:BadPassw0rd@ho st/" }).to_string();
    let refused = request(addr, "POST", "/api/webhooks", Some(TOKEN), Some(&bad));
    assert_eq!(refused.status, 400, "{}", refused.text());
    shown.push_str(&refused.text());

    // A connection is an event for both webhooks (both fail), and its connect asks the dead
    // callback.
    let mut client = rtmp_client::RtmpClient::connect(server.rtmp_addr(), "live", Goal::Connect).unwrap();
    let _ = client.next_event(WAIT);
    assert!(server.wait_for_log("callback failed", WAIT), "no failed callback\n--- log ---\n{}", server.log());
    assert!(
        server.wait_for_log_count("hook delivery failed", 2, WAIT),
        "no failed deliveries\n--- log ---\n{}",
        server.log()
    );
    for path in ["/api/webhooks", &format!("/api/webhooks/{id}"), "/api/webhooks/config_1", "/metrics"] {
        let reply = request(addr, "GET", path, Some(TOKEN), None);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        shown.push_str(&reply.text());
    }
    let deleted = request(addr, "DELETE", &format!("/api/webhooks/{id}"), Some(TOKEN), None);
    shown.push_str(&deleted.text());
    drop(client);
    let (_, log) = server.stop_and_log();
    shown.push_str(&log);

    let leaked: Vec<&str> = secrets.iter().copied().filter(|s| shown.contains(s)).collect();
    assert!(leaked.is_empty(), "secrets {leaked:?} were shown:\n{shown}");
    // What is left is still useful: which sink, which key, which header.
    for kept in ["http://ops:***@", "token=***", "key=***", "Authorization: ***", "X-Api-Key: ***"] {
        assert!(shown.contains(kept), "'{kept}' missing from what was shown:\n{shown}");
    }
}

/// A webhook's headers are bounded in count and size, over the API as in the config file
/// (10,000 headers were accepted).
#[test]
fn webhook_headers_are_bounded() {
    let api = Api::start(Setup::new("header-bounds"));
    let url = "http://127.0.0.1:9/events";
    let many: Vec<String> = (0..10_000).map(|i| format!("X-H{i}: v")).collect();
    let reply = api.call("POST", "/api/webhooks", Some(json!({ "url": url, "headers": many })));
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.error(), "key 'headers': at most 32 headers, got 10000");
    let one_too_many: Vec<String> = (0..33).map(|i| format!("X-H{i}: v")).collect();
    let reply = api.call("POST", "/api/webhooks", Some(json!({ "url": url, "headers": one_too_many })));
    assert_eq!(reply.status, 400, "{}", reply.text());
    let huge = format!("X-Big: {}", "v".repeat(9000));
    let reply = api.call("POST", "/api/webhooks", Some(json!({ "url": url, "headers": [huge] })));
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.error().starts_with("key 'headers[0]': header is 9007 bytes, at most 8192"), "{}", reply.error());
    let big: Vec<String> = (0..3).map(|i| format!("X-B{i}: {}", "v".repeat(3000))).collect();
    let reply = api.call("POST", "/api/webhooks", Some(json!({ "url": url, "headers": big })));
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.error().contains("at most 8192 bytes of header names and values"), "{}", reply.error());
    assert!(api.dispatcher.sinks().is_empty(), "a refused webhook was added");
    // The limits themselves are fine, and PATCH is held to them too.
    let max: Vec<String> = (0..32).map(|i| format!("X-H{i}: v")).collect();
    let created = api.create(json!({ "url": url, "headers": max }));
    let id = created["id"].as_str().unwrap();
    let reply = api.call("PATCH", &format!("/api/webhooks/{id}"), Some(json!({ "headers": one_too_many })));
    assert_eq!(reply.status, 400, "{}", reply.text());

    let toml = format!(
        "[[webhook]]\nurl = \"{url}\"\nheaders = [{}]\n",
        one_too_many.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ")
    );
    let error = Config::from_toml(&toml, Path::new("t.toml")).unwrap_err().to_string();
    assert_eq!(error, "config t.toml:3: key 'webhook[0].headers': at most 32 headers, got 33");
}

/// The number of API-created webhooks is bounded (`api_max_webhooks`); one more is a 409 that
/// names the key, and deleting one makes room again.
#[test]
fn api_created_webhooks_are_capped() {
    let api = Api::start(Setup { max_webhooks: 2, ..Setup::new("webhook-cap") });
    let first = api.create(json!({ "url": "http://127.0.0.1:9/a" }));
    api.create(json!({ "url": "http://127.0.0.1:9/b" }));
    let reply = api.call("POST", "/api/webhooks", Some(json!({ "url": "http://127.0.0.1:9/c" })));
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(reply.error().contains("api_max_webhooks"), "{}", reply.error());
    assert_eq!(api.dispatcher.sinks().len(), 2);
    let id = first["id"].as_str().unwrap();
    assert_eq!(api.call("DELETE", &format!("/api/webhooks/{id}"), None).status, 200);
    api.create(json!({ "url": "http://127.0.0.1:9/c" }));

    let closed = Api::start(Setup { max_webhooks: 0, ..Setup::new("webhook-cap-zero") });
    let reply = closed.call("POST", "/api/webhooks", Some(json!({ "url": "http://127.0.0.1:9/a" })));
    assert_eq!(reply.status, 409, "{}", reply.text());
}

// ---------------------------------------------------------------------------------------------
// Dolby.io-style provisioning
// ---------------------------------------------------------------------------------------------

/// A provisioning script written for Dolby.io's `POST /api/webhooks` gets Dolby's answer, and
/// its receiver gets Dolby-shaped hooks that verify as Dolby's sample verifies them
/// (`X-Millicast-Signature: sha1=<hex HMAC-SHA1(base64-decoded secret, body)>`).
#[test]
fn dolby_style_bodies_provision_dolby_hooks() {
    use ringcast::hooks::payload::{NoViewers, PublishStart, StreamUnavailable};
    use sha1::Sha1;

    let receiver = HttpReceiver::start();
    let api = Api::start(Setup::new("dolby"));
    let body = json!({
        "url": receiver.url("/dolby"),
        "isFeedHooks": true,
        "isViewerConnectionHooks": true,
        "isRecordingHooks": true,
        "isThumbnailHooks": false,
        "isTranscoderHooks": true,
    });
    let reply = api.call("POST", "/api/webhooks", Some(body));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["status"], "success", "{answer}");
    let data = &answer["data"];
    let (id, secret) = (data["id"].as_str().unwrap(), data["secret"].as_str().unwrap());
    assert_eq!(data["url"], receiver.url("/dolby"));
    assert_eq!((data["isFeedHooks"].as_bool(), data["isViewerConnectionHooks"].as_bool()), (Some(true), Some(true)));
    assert_eq!(data["isRecordingHooks"], false);
    assert_eq!(data["unsupported"], json!(["isRecordingHooks", "isTranscoderHooks"]));
    let key = BASE64.decode(secret).expect("Dolby's receivers decode the secret as plain base64");
    assert!(key.len() >= 24);
    // Managed like any API webhook afterwards.
    let shown = api.get(&format!("/api/webhooks/{id}")).json();
    assert_eq!((shown["format"].as_str(), shown["signature"].as_str()), (Some("dolby"), Some("sha1")));

    let origin = |conn_id| Origin {
        conn_id,
        protocol: Protocol::Rtmp,
        addr: "192.0.2.1:50000".parse().unwrap(),
        stream_key: "live/cam1".into(),
    };
    api.hooks.emit(&origin(7), || PublishStart { args: vec![], ..Default::default() });
    api.emit_accept(8);
    api.hooks.emit(&origin(9), || StreamUnavailable {});
    api.hooks.emit(&origin(9), || NoViewers {});
    let requests = receiver.wait_for(3, WAIT);
    let mut seen = Vec::new();
    for request in &requests {
        let mut mac = Hmac::<Sha1>::new_from_slice(&key).unwrap();
        mac.update(&request.body);
        let expected =
            format!("sha1={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(request.header("X-Millicast-Signature"), Some(expected.as_str()));
        let hook: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(hook["data"]["streamId"], "live/cam1", "{hook}");
        assert!(hook["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        seen.push(format!("{}/{}", hook["type"].as_str().unwrap(), hook["event"].as_str().unwrap()));
    }
    seen.sort();
    assert_eq!(seen, ["feeds/started", "viewerConnection/noActiveViewers", "viewerConnection/viewerAttempt"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.requests().len(), 3, "connection_accept is no Dolby hook");

    // Feed hooks alone: no viewer hooks. Recording alone: nothing ringcast could send, refused.
    let feeds = api.call("POST", "/api/webhooks", Some(json!({ "url": receiver.url("/f"), "isFeedHooks": true })));
    assert_eq!(feeds.json()["data"]["events"], json!(["publish_start", "publish_stop"]));
    let nothing =
        api.call("POST", "/api/webhooks", Some(json!({ "url": receiver.url("/r"), "isRecordingHooks": true })));
    assert_eq!(nothing.status, 400);
    assert!(nothing.error().contains("isFeedHooks or isViewerConnectionHooks"), "{}", nothing.error());
    let typo = api.call("POST", "/api/webhooks", Some(json!({ "url": receiver.url("/t"), "isFeedHooks": 1 })));
    assert_eq!((typo.status, typo.error().as_str()), (400, "key 'isFeedHooks': expected true or false"));
}
