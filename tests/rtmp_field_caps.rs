//! Field caps: client-supplied strings are capped at protocol level. A `connect` with a 1 MiB
//! tcUrl (which every hook event used to carry, and a hung webhook receiver used to hold by the
//! gigabyte) is refused with `NetConnection.Connect.Rejected` naming the field, counted, and
//! its connection closed before any hook hears of it; so is a second `connect`.

mod common;

use std::time::Duration;

use common::http_receiver::HttpReceiver;
use common::rtmp_client::RtmpClient;
use common::{TestServer, eventually, metric_total, wait_closed};
use ringcast::protocol::amf0::Amf0Value;
use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};
use ringcast::protocol::rtmp::message::{TYPE_COMMAND_AMF0, command_payload};

const WAIT: Duration = Duration::from_secs(10);

fn server_with_webhook(receiver: &HttpReceiver) -> TestServer {
    let toml = format!("[[webhook]]\nurl = \"{}\"\nretries = 0\n", receiver.url("/events"));
    TestServer::start_with_config(&toml, &[])
}

/// The events the receiver got, by type, with the largest body seen.
fn delivered(receiver: &HttpReceiver) -> (Vec<String>, usize) {
    let requests = receiver.requests();
    let largest = requests.iter().map(|r| r.body.len()).max().unwrap_or(0);
    let types = requests
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|event| event["type"].as_str().map(str::to_owned))
        .collect();
    (types, largest)
}

/// Reads events until `connect` is answered; returns that answer.
fn connect_answer(client: &mut RtmpClient) -> ClientEvent {
    loop {
        match client.next_event(WAIT) {
            Ok(Some(event @ (ClientEvent::Connected | ClientEvent::CommandError { .. }))) => return event,
            Ok(Some(_)) => continue,
            other => panic!("no answer to connect: {other:?}"),
        }
    }
}

#[test]
fn a_megabyte_tc_url_is_refused_before_any_hook() {
    let receiver = HttpReceiver::start();
    let server = server_with_webhook(&receiver);
    let addr = server.rtmp_addr();
    let tc_url = format!("rtmp://{addr}/live?pad={}", "a".repeat(1 << 20));
    let mut client = RtmpClient::connect_with_tc_url(addr, "live", &tc_url, Goal::Connect).unwrap();
    match connect_answer(&mut client) {
        ClientEvent::CommandError { command, code, description } => {
            assert_eq!((command, code.as_str()), ("connect", "NetConnection.Connect.Rejected"));
            assert!(
                description.starts_with("connect: tcUrl is 104") && description.ends_with("over the 4096-byte limit"),
                "{description}"
            );
        }
        other => panic!("a 1 MiB tcUrl was answered {other:?}\n--- log ---\n{}", server.log()),
    }
    let closed = wait_closed(&mut client.stream, WAIT);
    assert!(closed.is_ok(), "the connection stayed open\n--- log ---\n{}", server.log());
    let counted =
        eventually(WAIT, || (metric_total(&server.metrics(), "ringcast_requests_refused_total") == 1).then_some(()));
    assert!(counted.is_some(), "not counted:\n{}", server.metrics());

    // The webhook heard of the connection, not of its tcUrl.
    let closed = eventually(WAIT, || delivered(&receiver).0.iter().any(|t| t == "connection_close").then_some(()));
    assert!(closed.is_some(), "no connection_close delivered: {:?}", delivered(&receiver));
    let (types, largest) = delivered(&receiver);
    assert!(!types.iter().any(|t| t == "connect"), "a refused connect reached the hooks: {types:?}");
    assert!(largest < 4096, "a delivery of {largest} bytes");
    assert!(server.log().contains("refused: connect: tcUrl is"), "{}", server.log());
}

#[test]
fn a_second_connect_closes_the_connection() {
    let receiver = HttpReceiver::start();
    let server = server_with_webhook(&receiver);
    let mut client = RtmpClient::connect(server.rtmp_addr(), "live", Goal::Connect).unwrap();
    assert!(matches!(connect_answer(&mut client), ClientEvent::Connected));
    // The same connect again, as raw chunks (the client state machine sends it once; its
    // chunk size is 4096 by now).
    let object = Amf0Value::object([("app", Amf0Value::from("live")), ("tcUrl", Amf0Value::from("rtmp://h/live"))]);
    let payload = command_payload("connect", 2.0, &[object]);
    let mut bytes = Vec::new();
    let message = RawMessageRef { timestamp: 0, type_id: TYPE_COMMAND_AMF0, stream_id: 0, payload: &payload };
    encode_message(&mut bytes, 3, &message, 4096);
    use std::io::Write as _;
    client.stream.write_all(&bytes).unwrap();
    match connect_answer(&mut client) {
        ClientEvent::CommandError { code, description, .. } => {
            assert_eq!(code, "NetConnection.Connect.Rejected");
            assert_eq!(description, "connect: the connection already sent connect");
        }
        other => panic!("a second connect was answered {other:?}\n--- log ---\n{}", server.log()),
    }
    assert!(wait_closed(&mut client.stream, WAIT).is_ok(), "the connection stayed open");
    let closed = eventually(WAIT, || delivered(&receiver).0.iter().any(|t| t == "connection_close").then_some(()));
    assert!(closed.is_some(), "no connection_close delivered: {:?}", delivered(&receiver));
    let connects = delivered(&receiver).0.iter().filter(|t| *t == "connect").count();
    assert_eq!(connects, 1, "one connect event per connection");
}
