//! `[[nats]]` end to end (docs/hooks.md, "NATS JetStream"): a real `nats-server -js` on an
//! ephemeral port with its store in a temp dir, ffmpeg publishing and ffprobe playing, and a
//! JetStream consumer (async-nats, as the server uses) reading what arrived.
//!
//! Ground truth is the server's own `[stdio]` sink: a line per event, as in
//! `tests/hooks_outbox.rs`. Every event it printed must reach the stream once, under the subject
//! the template names, including those produced while the NATS server was down.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use futures::StreamExt;
use serde_json::Value;

use common::{TempDir, TestServer, assert_plays_h264_aac, ffmpeg_publish, ffprobe_json, metric_total, require_ffmpeg};

const WAIT: Duration = Duration::from_secs(30);

/// A `nats-server -js` child, killed on drop.
struct NatsServer {
    child: Child,
    addr: SocketAddr,
}

impl NatsServer {
    /// Starts JetStream with its store in `store`, on `port` (`None`: an ephemeral one, read
    /// back from the server's log).
    fn start(store: &Path, port: Option<u16>) -> NatsServer {
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let program = if Path::new("/usr/sbin/nats-server").exists() { "/usr/sbin/nats-server" } else { "nats-server" };
        let mut child = Command::new(program)
            .args(["-js", "-sd"])
            .arg(store)
            .args(["-a", "127.0.0.1", "-p", &port_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nats-server not runnable ({e}): `apt-get install -y nats-server`, or run `bash .ci/run`")
            });
        let stderr = child.stderr.take().expect("nats-server's stderr");
        let (found, listening) = mpsc::channel();
        // Reads the log to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                    let _ = found.send(addr.trim().parse::<SocketAddr>());
                }
                if line.contains("Server is ready") {
                    let _ = found.send("ready".parse());
                }
            }
        });
        let addr = listening.recv_timeout(WAIT).expect("nats-server listening").expect("its address");
        // JetStream is up once the server says it is ready.
        let _ = listening.recv_timeout(WAIT);
        NatsServer { child, addr }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops it gracefully (SIGTERM) and waits for it to exit.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let exited = common::wait_child(&mut self.child, WAIT);
        assert!(exited.is_some(), "nats-server did not stop on SIGTERM");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the test's consumer received it.
#[derive(Debug, Clone)]
struct Received {
    subject: String,
    msg_id: String,
    event: Value,
}

/// A durable pull consumer on `stream`, read in a current-thread runtime of the test's own.
struct Consumer {
    runtime: tokio::runtime::Runtime,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Every message received so far, in arrival order.
    received: Vec<Received>,
}

impl Consumer {
    /// A consumer `name` reading `stream` from its first message.
    fn new(url: &str, stream: &str, name: &str) -> Consumer {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let consumer = runtime.block_on(async {
            let client = async_nats::connect(url).await.expect("the test's NATS connection");
            let context = jetstream::new(client);
            let deadline = Instant::now() + WAIT;
            // ringcast makes the stream at its first publish.
            let stream = loop {
                match context.get_stream(stream).await {
                    Ok(stream) => break stream,
                    Err(e) if Instant::now() > deadline => panic!("no stream {stream}: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let config = pull::Config {
                durable_name: Some(name.into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(300),
                ..Default::default()
            };
            stream.create_consumer(config).await.expect("a pull consumer")
        });
        Consumer { runtime, consumer, received: Vec::new() }
    }

    /// Takes what is waiting (for at most half a second), acknowledging each message.
    fn poll(&mut self) {
        let new = self.runtime.block_on(async {
            let mut new = Vec::new();
            let Ok(mut batch) =
                self.consumer.batch().max_messages(1000).expires(Duration::from_millis(500)).messages().await
            else {
                return new;
            };
            while let Some(Ok(message)) = batch.next().await {
                let msg_id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                let event = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                new.push(Received { subject: message.subject.to_string(), msg_id, event });
                message.ack().await.expect("ack");
            }
            new
        });
        self.received.extend(new);
    }

    /// Polls until every id of `ids` was received, or `WAIT` passes.
    fn wait_for(&mut self, ids: &[String]) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            self.poll();
            if ids.iter().all(|id| self.received.iter().any(|r| &r.msg_id == id)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }
}

/// The events a server printed on its `[stdio]` sink (JSON lines).
fn printed_events(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| line.starts_with("{\"id\":\"evt_"))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

fn id_of(event: &Value) -> String {
    event["id"].as_str().unwrap_or_default().to_owned()
}

/// The subject `ringcast.{type}.{app}.{name}` names, as docs/hooks.md says names map.
fn default_subject(event: &Value) -> String {
    let key = event["stream_key"].as_str().unwrap_or_default();
    let (app, name) = key.split_once('/').unwrap_or(("", ""));
    let app = if app.is_empty() { event["data"]["app"].as_str().unwrap_or_default() } else { app };
    let token = |value: &str| if value.is_empty() { "_".to_owned() } else { value.replace('.', "%2E") };
    format!("ringcast.{}.{}.{}", event["type"].as_str().unwrap_or_default(), token(app), token(name))
}

fn config(nats: &NatsServer, state_dir: &TempDir) -> String {
    format!(
        r#"
state_dir = "{state}"
outbox = true
# An attempt while NATS is down ends here; the event waits in the outbox for its retry.
hook_timeout = "2s"
[[nats]]
id = "bus"
url = "{url}"
stream = "RINGCAST"
[[nats]]
id = "starts"
url = "{url}"
subject = "filtered.{{type}}.{{name}}"
events = ["publish_start", "publish_stop"]
stream = "FILTERED"
[stdio]
format = "json"
"#,
        state = state_dir.path().display(),
        url = nats.url(),
    )
}

/// Publishes `key` for `seconds` with ffmpeg while ffprobe plays it, and waits for the stream's
/// end in the server's events.
fn publish_and_play(server: &TestServer, key: &str, seconds: u32) {
    let mut publisher = ffmpeg_publish(&server.rtmp_url(key), seconds, (160, 120));
    assert_plays_h264_aac(&ffprobe_json(&server.rtmp_url(key), WAIT), (160, 120), key);
    assert!(publisher.wait_timeout(WAIT).is_some(), "{}", publisher.report("publisher"));
    let ended = common::eventually(WAIT, || {
        printed_events(&server.log())
            .iter()
            .any(|e| e["type"] == "stream_delete" && e["stream_key"] == key)
            .then_some(())
    });
    assert!(ended.is_some(), "no stream_delete of {key}\n{}", server.log());
}

#[test]
fn every_event_reaches_jetstream_once_across_a_nats_restart() {
    require_ffmpeg();
    let store = TempDir::new("nats-store");
    let nats = NatsServer::start(store.path(), None);
    let state_dir = TempDir::new("nats-state");
    let server = TestServer::start_with_config(&config(&nats, &state_dir), &[]);

    // 1. NATS up: a stream published and played.
    publish_and_play(&server, "live/cam1", 3);
    let mut consumer = Consumer::new(&nats.url(), "RINGCAST", "before");
    let before: Vec<String> = printed_events(&server.log()).iter().map(id_of).collect();
    assert!(consumer.wait_for(&before), "events before the restart: {:?}\n{}", consumer.received, server.log());

    // 2. NATS down: events are produced and wait in the outbox. The name holds a '.', which a
    //    subject token cannot.
    let port = nats.addr.port();
    let retried_before = metric_total(&server.metrics(), "ringcast_sink_retried_total");
    drop(consumer);
    nats.stop();
    publish_and_play(&server, "live/cam.2", 3);
    let waiting = common::eventually(WAIT, || {
        let metrics = server.metrics();
        (metric_total(&metrics, "ringcast_sink_retried_total") > retried_before).then_some(())
    });
    assert!(waiting.is_some(), "attempts failed and were retried while NATS was down:\n{}", server.metrics());

    // 3. NATS back, same store and port: what waited arrives.
    let nats = NatsServer::start(store.path(), Some(port));
    // A consumer of its own: it reads the whole stream, from before the restart too.
    let mut consumer = Consumer::new(&nats.url(), "RINGCAST", "after");
    let printed = printed_events(&server.log());
    let ids: Vec<String> = printed.iter().map(id_of).collect();
    assert!(consumer.wait_for(&ids), "every event, after the restart: {:?}\n{}", consumer.received, server.log());
    // Give a late duplicate (a publish sent twice across the outage) its chance to show.
    std::thread::sleep(Duration::from_secs(1));
    consumer.poll();

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for received in &consumer.received {
        *seen.entry(received.msg_id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "received more than once: {twice:?}");
    assert_eq!(seen.len(), ids.len(), "only the events the server printed: {:?}", consumer.received);
    for event in &printed {
        let id = id_of(event);
        let received = consumer.received.iter().find(|r| r.msg_id == id).expect("received");
        assert_eq!(received.subject, default_subject(event), "{event}");
        assert_eq!(received.event["id"], event["id"], "the body is the event's envelope");
        assert_eq!(received.event["type"], event["type"]);
    }
    assert!(
        consumer.received.iter().any(|r| r.subject == "ringcast.publish_start.live.cam%2E2"),
        "the '.' in cam.2 is percent-encoded: {:?}",
        consumer.received.iter().map(|r| &r.subject).collect::<Vec<_>>()
    );
    let after_restart = consumer.received.iter().filter(|r| r.event["stream_key"] == "live/cam.2").count();
    assert!(after_restart >= 4, "cam.2's events (made while NATS was down) arrived: {after_restart}");

    // The filtered sink: publish_start and publish_stop only, under its own template.
    let mut filtered = Consumer::new(&nats.url(), "FILTERED", "filtered");
    let wanted: Vec<&Value> =
        printed.iter().filter(|e| e["type"] == "publish_start" || e["type"] == "publish_stop").collect();
    assert_eq!(wanted.len(), 4, "two streams, a start and a stop each");
    assert!(filtered.wait_for(&wanted.iter().map(|e| id_of(e)).collect::<Vec<_>>()), "{:?}", filtered.received);
    std::thread::sleep(Duration::from_millis(500));
    filtered.poll();
    assert_eq!(filtered.received.len(), 4, "nothing else, nothing twice: {:?}", filtered.received);
    for event in wanted {
        let name = event["stream_key"].as_str().unwrap_or_default().split_once('/').map_or("", |(_, n)| n);
        let subject = format!("filtered.{}.{}", event["type"].as_str().unwrap_or_default(), name.replace('.', "%2E"));
        assert!(filtered.received.iter().any(|r| r.msg_id == id_of(event) && r.subject == subject), "{subject}");
    }

    // `/metrics` counts NATS deliveries as it counts webhooks'.
    let metrics = server.metrics();
    let delivered: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("ringcast_sink_delivered_total{") && l.contains("kind=\"nats\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(delivered >= (ids.len() + 4) as u64, "{delivered} delivered of {}:\n{metrics}", ids.len() + 4);
}

/// A `[[nats]]` sink's bad value stops the start with one line naming the key.
#[test]
fn a_bad_nats_sink_value_is_a_one_line_config_error() {
    for (table, key, says) in [
        ("url = \"http://127.0.0.1:4222\"", "nats[0].url", "nats://"),
        ("url = \"nats://\"", "nats[0].url", "no host"),
        ("url = \"nats://127.0.0.1:4222\"\nsubject = \"a.{nope}\"", "nats[0].subject", "unknown placeholder"),
        ("url = \"nats://127.0.0.1:4222\"\nstream = \"a.b\"", "nats[0].stream", "stream name"),
        ("subject = \"a.{type}\"", "nats[0]", "missing required key 'url'"),
    ] {
        let file = common::TempFile::with_contents("nats-config", "toml", &format!("[[nats]]\n{table}\n"));
        let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["--config", file.path().to_str().unwrap(), "--check"])
            .output()
            .expect("run ringcast");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{table}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{table}: one line: {stderr}");
        assert!(stderr.contains(&format!("'{key}'")) && stderr.contains(says), "{table}: {stderr}");
    }
}
