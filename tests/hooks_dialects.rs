//! Callback dialects and cached decisions end to end (docs/hooks.md, "Dialects" and "Cached
//! decisions"): the real binary, ringcast's own RTMP client, and receivers written from each
//! peer's documentation, which check every JSON key the peer documents (no more, no fewer)
//! and answer the way that peer's auth services answer, allowing and refusing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use common::http_receiver::{HttpReceiver, Reply, Request};
use common::rtmp_client::RtmpClient;
use common::{TestServer, metric_total};
use ringcast::protocol::rtmp::client::Goal;

/// Callbacks arrive within milliseconds; this bounds the wait on a loaded machine.
const ARRIVAL: Duration = Duration::from_secs(10);
/// How long a client waits for its publish or play to be answered.
const ANSWER: Duration = Duration::from_secs(10);

fn server_with_notify(notify: &str) -> TestServer {
    TestServer::start_with_config(&format!("[notify]\n{notify}"), &[])
}

/// A client of `live/<name>` (query allowed); whether its publish or play was admitted.
fn admitted(server: &TestServer, goal: Goal) -> (RtmpClient, bool) {
    let code = match goal {
        Goal::Publish(_) => "NetStream.Publish.Start",
        Goal::Play(_) | Goal::Connect => "NetStream.Play.Start",
    };
    let mut client = RtmpClient::connect(server.rtmp_addr(), "live", goal).expect("connect");
    // A refusal is an error status or `_error`, then the close: either way no `code` comes.
    let started = client.wait_status(code, ANSWER).is_ok();
    (client, started)
}

fn json(request: &Request) -> Value {
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("Content-Type"), Some("application/json"), "{request:?}");
    serde_json::from_slice(&request.body).unwrap_or_else(|e| panic!("not JSON ({e}): {request:?}"))
}

fn keys(body: &Value) -> BTreeSet<String> {
    body.as_object().expect("a JSON object").keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// SRS `http_hooks` (SRS's HTTP callback documentation): one JSON object per hook, the hook in
/// `action`; HTTP 200 with `0` or `{"code":0}` allows, anything else refuses.
#[test]
fn srs_dialect_speaks_srs_http_hooks() {
    let receiver = HttpReceiver::start();
    receiver.set_default(Reply::status(200).body("0"));
    let server = server_with_notify(&format!("dialect = \"srs\"\nurl = \"{}\"\n", receiver.url("/api/v1/hooks")));

    receiver.reply(Reply::status(200).body("0"));
    receiver.reply(Reply::status(200).body("{\"code\": 0, \"msg\": \"ok\"}"));
    let (publisher, started) = admitted(&server, Goal::Publish("cam1?token=x".into()));
    assert!(started, "{{\"code\":0}} allows\n{}", server.log());

    receiver.reply(Reply::status(200).body("0"));
    receiver.reply(Reply::status(200).body("{\"code\": 403}"));
    let (_player, started) = admitted(&server, Goal::Play("cam1".into()));
    assert!(!started, "a non-zero code refuses");
    receiver.reply(Reply::status(200).body("0"));
    receiver.reply(Reply::status(200).body("1"));
    let (_player, started) = admitted(&server, Goal::Play("cam1".into()));
    assert!(!started, "a bare non-zero refuses");

    drop(publisher);
    let requests = receiver.wait_for(8, ARRIVAL);
    let bodies: Vec<Value> = requests.iter().map(json).collect();
    let action = |name: &str| {
        bodies.iter().find(|b| b["action"] == name).unwrap_or_else(|| panic!("no {name} in {bodies:#?}")).clone()
    };
    let common = ["server_id", "action", "client_id", "ip", "vhost", "app"];
    let with = |more: &[&str]| set(&[&common[..], more].concat());

    let connect = action("on_connect");
    assert_eq!(keys(&connect), with(&["tcUrl", "pageUrl"]));
    assert_eq!(connect["ip"], "127.0.0.1");
    assert_eq!(connect["vhost"], "__defaultVhost__");
    assert_eq!(connect["app"], "live");
    assert!(connect["client_id"].is_string() && connect["server_id"].is_string(), "{connect}");

    let stream = ["tcUrl", "stream", "param", "stream_url", "stream_id"];
    let publish = action("on_publish");
    assert_eq!(keys(&publish), with(&stream));
    assert_eq!((publish["stream"].as_str(), publish["param"].as_str()), (Some("cam1"), Some("?token=x")));
    assert_eq!(publish["stream_url"], "/live/cam1");
    assert_eq!(publish["tcUrl"], format!("rtmp://{}/live", server.rtmp_addr()));

    let play = action("on_play");
    assert_eq!(keys(&play), with(&[&stream[..], &["pageUrl"]].concat()));
    assert_eq!(play["param"], "");

    let unpublish = action("on_unpublish");
    assert_eq!(keys(&unpublish), with(&stream));
    assert_eq!(unpublish["client_id"], publish["client_id"]);
    let close = action("on_close");
    assert_eq!(keys(&close), with(&["send_bytes", "recv_bytes"]));
    assert!(close["send_bytes"].as_u64().is_some_and(|n| n > 0), "{close}");
    assert!(close["recv_bytes"].is_u64(), "{close}");
    assert!(bodies.iter().all(|b| b["action"] != "on_stop"), "refused plays never started, so never stop");
}

/// MediaMTX external authentication (`authHTTPAddress`): one JSON body per access, `action`
/// `publish` or `read`; a 2xx allows. It has no connect or done hooks, so none are sent.
#[test]
fn mediamtx_dialect_speaks_mediamtx_external_auth() {
    let receiver = HttpReceiver::start();
    let server = server_with_notify(&format!("dialect = \"mediamtx\"\nurl = \"{}\"\n", receiver.url("/auth")));

    receiver.reply(Reply::status(200));
    let (publisher, started) = admitted(&server, Goal::Publish("cam1?user=alice&pass=s3cret&jwt=tok".into()));
    assert!(started, "2xx allows\n{}", server.log());
    receiver.reply(Reply::status(401));
    let (_player, started) = admitted(&server, Goal::Play("cam1".into()));
    assert!(!started, "401 refuses");
    drop(publisher);

    let requests = receiver.wait_for(2, ARRIVAL);
    let documented = set(&["user", "password", "token", "ip", "action", "path", "protocol", "id", "query"]);
    let publish = json(&requests[0]);
    assert_eq!(keys(&publish), documented);
    assert_eq!(publish["action"], "publish");
    assert_eq!((publish["user"].as_str(), publish["password"].as_str()), (Some("alice"), Some("s3cret")));
    assert_eq!(publish["token"], "tok");
    assert_eq!(publish["path"], "live/cam1");
    assert_eq!(publish["protocol"], "rtmp");
    assert_eq!(publish["ip"], "127.0.0.1");
    assert_eq!(publish["query"], "user=alice&pass=s3cret&jwt=tok");
    let read = json(&requests[1]);
    assert_eq!(keys(&read), documented);
    assert_eq!(read["action"], "read");
    assert_eq!(read["user"], "");

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.requests().len(), 2, "no connect, done or close hook: {:?}", receiver.requests());
}

/// ZLMediaKit web hooks: `on_publish` and `on_play` JSON, `{"code":0}` allows; a publish or
/// play that ends sends `on_flow_report`.
#[test]
fn zlmediakit_dialect_speaks_zlmediakit_hooks() {
    let receiver = HttpReceiver::start();
    receiver.set_default(Reply::status(200).body("{\"code\":0,\"msg\":\"success\"}"));
    let server = server_with_notify(&format!("dialect = \"zlmediakit\"\nurl = \"{}\"\n", receiver.url("/index/hook")));

    let (publisher, started) = admitted(&server, Goal::Publish("cam1?secret=k".into()));
    assert!(started, "{{\"code\":0}} allows\n{}", server.log());
    receiver.reply(Reply::status(200).body("{\"code\":-1,\"msg\":\"denied\"}"));
    let (_player, started) = admitted(&server, Goal::Play("cam1".into()));
    assert!(!started, "a non-zero code refuses");
    drop(publisher);

    let requests = receiver.wait_for(3, ARRIVAL);
    let media = ["mediaServerId", "app", "id", "ip", "params", "port", "schema", "stream", "vhost"];
    let with = |more: &[&str]| set(&[&media[..], more].concat());
    let publish = json(&requests[0]);
    assert_eq!(keys(&publish), with(&["originType", "originTypeStr", "originUrl"]));
    assert_eq!((publish["app"].as_str(), publish["stream"].as_str()), (Some("live"), Some("cam1")));
    assert_eq!(publish["params"], "secret=k");
    assert_eq!(publish["schema"], "rtmp");
    assert_eq!(publish["vhost"], "__defaultVhost__");
    assert_eq!(publish["originType"], 1);
    assert!(publish["port"].as_u64().is_some_and(|port| port > 0), "{publish}");
    let play = json(&requests[1]);
    assert_eq!(keys(&play), with(&[]));
    let flow = json(&requests[2]);
    assert_eq!(keys(&flow), with(&["totalBytes", "duration", "player"]));
    assert_eq!(flow["player"], false);
    assert_eq!(flow["id"], publish["id"]);
}

/// A reply with `Cache-Control: max-age` is remembered: 100 reconnecting players ask once.
/// Another token is another question; `no-store` (or no header) asks every time.
#[test]
fn a_reconnect_storm_asks_a_cached_callback_once() {
    let receiver = HttpReceiver::start();
    receiver.set_default(Reply::status(200).header("Cache-Control", "max-age=60"));
    let server = server_with_notify(&format!("on_play = \"{}\"\n", receiver.url("/on_play")));

    for attempt in 0..100 {
        let (player, started) = admitted(&server, Goal::Play("cam1?token=x".into()));
        assert!(started, "reconnect {attempt}\n{}", server.log());
        drop(player);
    }
    assert_eq!(receiver.requests().len(), 1, "100 reconnects, one callback");
    let (_player, started) = admitted(&server, Goal::Play("cam1?token=y".into()));
    assert!(started);
    assert_eq!(receiver.requests().len(), 2, "other client arguments are another question");

    // A cached refusal refuses without asking, too.
    receiver.reply(Reply::status(403).header("Cache-Control", "public, max-age=60"));
    for _ in 0..3 {
        assert!(!admitted(&server, Goal::Play("cam2".into())).1);
    }
    assert_eq!(receiver.requests().len(), 3);

    receiver.set_default(Reply::status(200).header("Cache-Control", "no-store"));
    for _ in 0..3 {
        assert!(admitted(&server, Goal::Play("cam3".into())).1);
    }
    assert_eq!(receiver.requests().len(), 6, "no-store asks every time");

    let metrics = server.metrics();
    assert_eq!(metric_total(&metrics, "ringcast_callback_cache_hits_total"), 99 + 2);
    assert_eq!(metric_total(&metrics, "ringcast_callback_cache_misses_total"), 6);
    assert_eq!(metric_total(&metrics, "ringcast_callback_requests_total"), 6);
    assert_eq!(metric_total(&metrics, "ringcast_callback_cache_entries"), 3);
}
