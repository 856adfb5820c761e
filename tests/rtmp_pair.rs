//! The RTMP client and server state machines talking to each other in memory: no sockets,
//! no clock, every byte accounted for (the shape of quinn-proto's `Pair` tests).

use ringcast::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};
use ringcast::protocol::rtmp::server::{Event, Rejection, Role, ServerConnection, ServerSettings};

struct Pair {
    client: ClientConnection,
    server: ServerConnection,
    client_events: Vec<ClientEvent>,
    server_events: Vec<Event>,
}

impl Pair {
    fn new(goal: Goal) -> Pair {
        Pair {
            client: ClientConnection::new("live", "rtmp://127.0.0.1/live", goal, [7; 32], 0),
            server: ServerConnection::new(ServerSettings::default(), [9; 32], 0),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Moves bytes both ways, `piece` bytes at a time, until neither side has anything to
    /// send. `decide` answers every pending request of the server.
    fn drive(&mut self, piece: usize, decide: &mut dyn FnMut(&Event) -> Option<Rejection>) {
        loop {
            let mut to_server = Vec::new();
            self.client.poll_transmit(&mut to_server);
            for part in to_server.chunks(piece) {
                self.server.handle_input(part).expect("server accepts client bytes");
            }
            while let Some(event) = self.server.poll_event() {
                if matches!(event, Event::Connect(_) | Event::Publish(_) | Event::Play(_)) {
                    match decide(&event) {
                        None => self.server.accept(),
                        Some(rejection) => self.server.reject(rejection, "refused by test"),
                    }
                    // Input deferred while the decision was pending is processed now.
                    self.server.handle_input(&[]).expect("deferred input");
                }
                self.server_events.push(event);
            }
            let mut to_client = Vec::new();
            self.server.poll_transmit(&mut to_client);
            for part in to_client.chunks(piece) {
                self.client.handle_input(part).expect("client accepts server bytes");
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
        }
    }

    fn status_codes(&self) -> Vec<String> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status { code, .. } => Some(code.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn publish_flow_delivers_commands_and_media_in_any_read_size() {
    for piece in [1, 3, 128, 100_000] {
        let mut pair = Pair::new(Goal::Publish("cam1?token=x&b=2".into()));
        pair.drive(piece, &mut |_| None);
        assert!(matches!(&pair.server_events[0], Event::HandshakeComplete));
        let Event::Connect(info) = &pair.server_events[1] else {
            panic!("expected connect, got {:?}", pair.server_events)
        };
        assert_eq!(info.app, "live");
        assert_eq!(info.tc_url, "rtmp://127.0.0.1/live");
        let publish = pair.server_events.iter().find_map(|e| match e {
            Event::Publish(p) => Some(p.clone()),
            _ => None,
        });
        let publish = publish.expect("publish event");
        assert_eq!(publish.name, "cam1");
        assert_eq!(publish.args, vec![("token".to_owned(), "x".to_owned()), ("b".to_owned(), "2".to_owned())]);
        assert_eq!(pair.status_codes(), vec!["NetStream.Publish.Start"]);
        assert_eq!(pair.server.role(), Role::Publisher { stream_id: publish.stream_id });

        let frame: Vec<u8> = [0x17, 1, 0, 0, 0].into_iter().chain((0..9000u32).map(|i| i as u8)).collect();
        pair.client.send_media(9, 40, &frame);
        pair.client.send_media(8, 43, &[0xAF, 1, 1, 2, 3]);
        pair.drive(piece, &mut |_| None);
        let media: Vec<_> = pair
            .server_events
            .iter()
            .filter_map(|e| match e {
                Event::Video { timestamp, payload } => Some((9, *timestamp, payload.to_vec())),
                Event::Audio { timestamp, payload } => Some((8, *timestamp, payload.to_vec())),
                _ => None,
            })
            .collect();
        assert_eq!(media, vec![(9, 40, frame.clone()), (8, 43, vec![0xAF, 1, 1, 2, 3])], "read size {piece}");
    }
}

#[test]
fn play_flow_gets_reset_and_start() {
    let mut pair = Pair::new(Goal::Play("cam1".into()));
    pair.drive(4096, &mut |_| None);
    let play = pair.server_events.iter().find_map(|e| match e {
        Event::Play(p) => Some(p.clone()),
        _ => None,
    });
    let play = play.expect("play event");
    assert_eq!(play.name, "cam1");
    assert_eq!(pair.status_codes(), vec!["NetStream.Play.Reset", "NetStream.Play.Start"]);
    assert_eq!(pair.server.role(), Role::Player { stream_id: play.stream_id });

    pair.server.notify_unpublish("cam1");
    pair.server.notify_publish("cam1");
    pair.drive(4096, &mut |_| None);
    assert_eq!(
        pair.status_codes()[2..],
        ["NetStream.Play.UnpublishNotify".to_owned(), "NetStream.Play.PublishNotify".to_owned()]
    );
}

#[test]
fn refused_publish_gets_bad_name_and_no_start() {
    let mut pair = Pair::new(Goal::Publish("cam1".into()));
    pair.drive(4096, &mut |event| matches!(event, Event::Publish(_)).then_some(Rejection::StreamBusy));
    assert_eq!(pair.status_codes(), vec!["NetStream.Publish.BadName"]);
    assert_eq!(pair.server.role(), Role::None);
}

#[test]
fn refused_connect_gets_an_error_and_goes_no_further() {
    let mut pair = Pair::new(Goal::Play("cam1".into()));
    pair.drive(4096, &mut |event| matches!(event, Event::Connect(_)).then_some(Rejection::Denied));
    assert!(pair.client_events.iter().any(
        |e| matches!(e, ClientEvent::CommandError { command: "connect", code, .. } if code == "NetConnection.Connect.Rejected")
    ));
    assert!(!pair.server_events.iter().any(|e| matches!(e, Event::Play(_))));
}

#[test]
fn a_command_before_connect_is_an_error() {
    let mut server = ServerConnection::new(ServerSettings::default(), [1; 32], 0);
    let mut client = ClientConnection::new("live", "rtmp://x/live", Goal::Connect, [2; 32], 0);
    let mut bytes = Vec::new();
    client.poll_transmit(&mut bytes);
    server.handle_input(&bytes).unwrap();
    let mut reply = Vec::new();
    server.poll_transmit(&mut reply);
    client.handle_input(&reply).unwrap();
    // Handshake done on both sides; now a createStream without connect.
    let mut c2_and_connect = Vec::new();
    client.poll_transmit(&mut c2_and_connect);
    // Replace the connect command's name so the server sees an unknown first command.
    let at = c2_and_connect.windows(7).position(|w| w == b"connect").expect("connect in bytes");
    c2_and_connect[at..at + 7].copy_from_slice(b"connecx");
    let error = server.handle_input(&c2_and_connect).unwrap_err();
    assert!(error.to_string().contains("before connect"), "{error}");
}

/// Acknowledgement amplification: a peer that announces a 1-byte acknowledgement window and
/// then floods tiny messages gets at most one acknowledgement per batch of input, so the
/// server's output cannot outgrow its input many times over.
#[test]
fn a_one_byte_ack_window_gets_one_ack_per_input_batch() {
    use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
    let mut pair = Pair::new(Goal::Connect);
    pair.drive(100_000, &mut |_| None);
    let mut flood = Vec::new();
    let window = 1u32.to_be_bytes();
    encode_message(&mut flood, 2, &RawMessageRef { timestamp: 0, type_id: 5, stream_id: 0, payload: &window }, 128);
    // 1,000 zero-length messages of an unknown type: one byte each after the first header.
    encode_message(&mut flood, 7, &RawMessageRef { timestamp: 0, type_id: 0x30, stream_id: 0, payload: &[] }, 128);
    flood.extend(std::iter::repeat_n(0xC7u8, 1_000));
    pair.server.handle_input(&flood).expect("valid chunks");
    let mut out = Vec::new();
    pair.server.poll_transmit(&mut out);
    // One Acknowledgement message: 12-byte header + 4-byte sequence number.
    assert_eq!(out.len(), 16, "server answered {} bytes to {} bytes", out.len(), flood.len());
}

/// A ping request's reply echoes its 4-byte timestamp only: one large "ping" must not turn
/// into as much output at once.
#[test]
fn a_ping_reply_echoes_only_the_timestamp() {
    use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
    let mut pair = Pair::new(Goal::Connect);
    pair.drive(100_000, &mut |_| None);
    let mut ping = 6u16.to_be_bytes().to_vec();
    ping.extend(std::iter::repeat_n(7u8, 100_000));
    // Our own chunk size first, whatever the client announced: the ping goes as one chunk.
    let mut wire = Vec::new();
    let size = 200_000u32.to_be_bytes();
    encode_message(&mut wire, 2, &RawMessageRef { timestamp: 0, type_id: 1, stream_id: 0, payload: &size }, 128);
    encode_message(&mut wire, 2, &RawMessageRef { timestamp: 0, type_id: 4, stream_id: 0, payload: &ping }, 200_000);
    pair.server.handle_input(&wire).expect("valid chunks");
    let mut out = Vec::new();
    pair.server.poll_transmit(&mut out);
    // The Ping Response alone: 12-byte header, event 7, the 4-byte timestamp (100 KB stays
    // below the acknowledgement window).
    assert_eq!(out.len(), 12 + 2 + 4, "server answered {} bytes", out.len());
    assert_eq!(&out[12..], &[0, 7, 7, 7, 7, 7]);
}

#[test]
fn a_client_announcing_another_chunk_size_is_read_at_that_size() {
    use ringcast::protocol::rtmp::chunk::{RawMessageRef, encode_message};
    let mut pair = Pair::new(Goal::Publish("cam1".into()));
    // What a server pushing its players' chunked media does: announce its own chunk size,
    // then send messages cut at it that it did not chunk through the client.
    pair.client.set_chunk_size(1000);
    pair.drive(100_000, &mut |_| None);
    assert_eq!(pair.status_codes(), vec!["NetStream.Publish.Start"]);
    let stream_id = pair.client.stream_id();
    assert_ne!(stream_id, 0);
    let frame: Vec<u8> = [0x17, 1, 0, 0, 0].into_iter().chain((0..9000u32).map(|i| i as u8)).collect();
    let mut wire = Vec::new();
    encode_message(&mut wire, 6, &RawMessageRef { timestamp: 40, type_id: 9, stream_id, payload: &frame }, 1000);
    pair.server.handle_input(&wire).expect("read at the announced size");
    let video = std::iter::from_fn(|| pair.server.poll_event()).find_map(|e| match e {
        Event::Video { timestamp, payload } => Some((timestamp, payload.to_vec())),
        _ => None,
    });
    assert_eq!(video, Some((40, frame)));
}
