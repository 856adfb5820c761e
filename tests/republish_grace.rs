//! Publisher reconnect grace (`republish_grace`) with real clients: an ffmpeg publisher is
//! killed (as a crashed encoder goes) while in-test RTMP players and an HTTP-FLV player
//! watch, and a real receiver hears the hooks. Restarted within the grace, the new ffmpeg
//! continues the stream: the players see no end and timestamps that go on, the receiver
//! gets one `publish_resume` and no `publish_stop`/`on_publish_done`. Nobody back: the
//! stream ends when the grace does, with every stop the drop would have sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use common::http_flv_client::FlvPlayer;
use common::http_receiver::HttpReceiver;
use common::recorder::Recorder;
use common::rtmp_client::RtmpClient;
use common::{Client, TestServer, eventually, ffmpeg_publish, require_ffmpeg};
use ringcast::config::{Config, EventType};
use ringcast::hooks::Hooks;
use ringcast::hooks::callback_lane::CallbackLane;
use ringcast::hooks::event::Protocol;
use ringcast::hub::{Hub, HubSettings, PacketKind, PlayerItem, ShardHub};
use ringcast::protocol::rtmp::client::ClientEvent;
use ringcast::session::lifecycle::{Admission, CloseReason, ConnectRequest, Lifecycle, StreamRequest};
use ringcast::session::{SessionSettings, ShardContext};

const WAIT: Duration = Duration::from_secs(20);

fn events(receiver: &HttpReceiver) -> Vec<Value> {
    let requests = receiver.requests();
    requests.iter().filter(|r| r.path == "/events").filter_map(|r| serde_json::from_slice(&r.body).ok()).collect()
}

fn find(receiver: &HttpReceiver, event_type: &str, stream: &str) -> Vec<Value> {
    events(receiver).into_iter().filter(|e| e["type"] == event_type && e["stream_key"] == stream).collect()
}

/// The `on_publish_done` callbacks received, by the `clientid` they name.
fn publish_done(receiver: &HttpReceiver) -> Vec<String> {
    let requests = receiver.requests();
    let done = requests.iter().filter(|r| r.path == "/publish_done");
    done.filter_map(|r| common::hook_peers::parse_form(&r.body).into_iter().find(|(k, _)| k == "clientid"))
        .map(|(_, id)| id)
        .collect()
}

fn config(receiver: &HttpReceiver, grace: &str) -> String {
    format!(
        "republish_grace = \"{grace}\"\n\
         [notify]\non_publish = \"{}\"\non_publish_done = \"{}\"\n\
         [[webhook]]\nurl = \"{}\"\n",
        receiver.url("/publish"),
        receiver.url("/publish_done"),
        receiver.url("/events"),
    )
}

/// What one player received: media as (video?, timestamp, sequence header?), and statuses.
#[derive(Debug, Default)]
struct Seen {
    media: Vec<(bool, u32, bool)>,
    statuses: Vec<String>,
    closed: bool,
}

impl Seen {
    /// Timestamps of one kind, in arrival order.
    fn timestamps(&self, video: bool) -> Vec<u32> {
        self.media.iter().filter(|(v, _, header)| *v == video && !header).map(|(_, t, _)| *t).collect()
    }

    fn video_headers(&self) -> usize {
        self.media.iter().filter(|(video, _, header)| *video && *header).count()
    }

    /// Frames of the kind after the last video sequence header (the new publisher's).
    fn after_last_header(&self, video: bool) -> usize {
        let Some(at) = self.media.iter().rposition(|(v, _, header)| *v && *header) else { return 0 };
        self.media[at..].iter().filter(|(v, _, header)| *v == video && !header).count()
    }
}

/// Reads an RTMP player until `stop` (or the server closes it), in a thread of its own.
fn watch(mut player: RtmpClient, stop: Arc<AtomicBool>) -> JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::SeqCst) {
            match player.next_event(Duration::from_millis(200)) {
                Ok(Some(ClientEvent::Video { timestamp, payload })) => {
                    seen.media.push((true, timestamp, payload.get(1) == Some(&0)))
                }
                Ok(Some(ClientEvent::Audio { timestamp, payload })) => {
                    seen.media.push((false, timestamp, payload.get(1) == Some(&0)))
                }
                Ok(Some(ClientEvent::Status { code, .. })) => seen.statuses.push(code),
                Ok(_) => {}
                Err(_) => {
                    seen.closed = true;
                    break;
                }
            }
        }
        seen
    })
}

/// What an HTTP-FLV player received, as [`Seen`].
fn flv_seen(player: &FlvPlayer) -> Seen {
    let (_, tags, _) = player.tags();
    let media = tags
        .iter()
        .filter(|tag| tag.tag_type == 8 || tag.tag_type == 9)
        .map(|tag| (tag.tag_type == 9, tag.timestamp, tag.body.get(1) == Some(&0)))
        .collect();
    Seen { media, statuses: Vec::new(), closed: player.closed }
}

fn assert_monotonic(seen: &Seen, who: &str) {
    for video in [true, false] {
        let timestamps = seen.timestamps(video);
        let back = timestamps.windows(2).find(|pair| pair[1] < pair[0]);
        assert!(back.is_none(), "{who}: {} timestamps went back at {back:?}", if video { "video" } else { "audio" });
    }
}

/// A server under `republish_grace = grace` whose hooks go to a receiver, and an ffmpeg
/// publisher of `live/<name>` with its `publish_start`.
fn publishing(grace: &str, name: &str) -> (HttpReceiver, TestServer, Client, Value) {
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    let server = TestServer::start_with_config(&config(&receiver, grace), &[]);
    let key = format!("live/{name}");
    let mut publisher = ffmpeg_publish(&server.rtmp_url(&key), 60, (320, 240));
    let started = eventually(WAIT, || find(&receiver, "publish_start", &key).pop());
    let started = started.unwrap_or_else(|| panic!("{}", publisher.report("publisher")));
    (receiver, server, publisher, started)
}

#[test]
fn a_publisher_back_within_the_grace_continues_the_stream_untold() {
    let (receiver, server, mut first, started) = publishing("10s", "cam");

    // Two RTMP players (each lands on either shard) and an HTTP-FLV one.
    let stop = Arc::new(AtomicBool::new(false));
    let players: Vec<_> = (0..2).map(|_| watch(RtmpClient::player(server.rtmp_addr(), "cam"), stop.clone())).collect();
    let mut flv = FlvPlayer::get(server.http_addr(), "/live/cam.flv", WAIT);
    assert_eq!(flv.status, 200, "{}", flv.head);
    flv.read_for(Duration::from_secs(2));

    first.kill();
    let killed = Instant::now();
    flv.read_for(Duration::from_millis(1500));
    let mut second = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, (320, 240));
    let resumed = eventually(WAIT, || find(&receiver, "publish_resume", "live/cam").pop());
    let resumed = resumed.unwrap_or_else(|| panic!("no publish_resume: {:?}\n{}", events(&receiver), server.log()));
    // Frames of the new publisher reach every player.
    flv.read_for(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<Seen> = players.into_iter().map(|p| p.join().expect("player thread")).collect();

    // The hooks: one resume naming the dropped session, no stop, no done callback.
    assert_eq!(resumed["data"]["previous_conn_id"], started["conn_id"], "{resumed}");
    assert_ne!(resumed["conn_id"], started["conn_id"]);
    let gap = resumed["data"]["gap_ms"].as_u64().expect("gap_ms");
    assert!(gap >= 1000 && (gap as u128) <= killed.elapsed().as_millis(), "gap_ms {gap}");
    assert_eq!(resumed["data"]["args"], serde_json::json!({}));
    assert_eq!(find(&receiver, "publish_start", "live/cam").len(), 1, "{:?}", events(&receiver));
    assert!(find(&receiver, "publish_stop", "live/cam").is_empty(), "{:?}", events(&receiver));
    assert!(publish_done(&receiver).is_empty(), "on_publish_done was called");
    let asked = receiver.requests().iter().filter(|r| r.path == "/publish").count();
    assert_eq!(asked, 2, "on_publish asks every publisher, the returning one too");
    // The old connection is gone: its connection_close comes once the stream changed hands.
    let closed = eventually(WAIT, || {
        events(&receiver).into_iter().find(|e| e["type"] == "connection_close" && e["conn_id"] == started["conn_id"])
    });
    assert_eq!(closed.expect("the dropped publisher's connection_close")["data"]["role"], "publisher");

    // The players: no end, the new sequence headers, frames after them, time going on.
    let flv = flv_seen(&flv);
    for (who, seen) in [("rtmp player 1", &seen[0]), ("rtmp player 2", &seen[1]), ("http-flv player", &flv)] {
        assert!(!seen.closed, "{who} was closed");
        assert!(!seen.statuses.iter().any(|s| s.contains("Unpublish")), "{who}: {:?}", seen.statuses);
        assert!(seen.video_headers() >= 2, "{who} did not get the new publisher's headers");
        assert!(seen.after_last_header(true) >= 20, "{who}: few new video frames: {:?}", seen.media);
        assert!(seen.after_last_header(false) >= 20, "{who}: few new audio frames");
        assert_monotonic(seen, who);
        // The new publisher's first frame follows the last one the stream carried.
        let at = seen.media.iter().rposition(|(video, _, header)| *video && *header).unwrap_or(0);
        let before = seen.media[..at].iter().filter(|(v, _, h)| *v && !h).map(|m| m.1).max().unwrap_or(0);
        let after = seen.media[at..].iter().find(|(v, _, h)| *v && !h).map_or(0, |m| m.1);
        assert!(after >= before && after - before < 1000, "{who}: {before} ms, then {after} ms");
    }
    assert!(second.is_running(), "{}", second.report("second publisher"));
    second.kill();
}

#[test]
fn a_stream_nobody_continues_ends_when_the_grace_does() {
    let (receiver, server, mut publisher, started) = publishing("3s", "gone");
    let published = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let player = watch(RtmpClient::player(server.rtmp_addr(), "gone"), stop.clone());
    let mut flv = FlvPlayer::get(server.http_addr(), "/live/gone.flv", WAIT);
    flv.read_for(Duration::from_secs(1));

    publisher.kill();
    let killed = Instant::now();
    let ran = killed.duration_since(published);
    // Within the grace: nothing ends.
    flv.read_for(Duration::from_millis(1500));
    assert!(!flv.closed, "the HTTP-FLV player was ended within the grace");
    assert!(find(&receiver, "publish_stop", "live/gone").is_empty(), "{:?}", events(&receiver));
    assert!(publish_done(&receiver).is_empty());

    // Then everything the drop would have sent, the reason saying why.
    let stopped = eventually(WAIT, || find(&receiver, "publish_stop", "live/gone").pop());
    let waited = killed.elapsed();
    let stopped = stopped.unwrap_or_else(|| panic!("no publish_stop: {:?}", events(&receiver)));
    assert!(waited >= Duration::from_millis(2800), "stopped after {waited:?}, before the grace ended");
    assert_eq!(stopped["data"]["reason"], "republish grace expired", "{stopped}");
    assert_eq!(stopped["conn_id"], started["conn_id"]);
    let duration = stopped["data"]["duration_sec"].as_f64().expect("duration_sec");
    assert!(duration < ran.as_secs_f64() + 1.5, "the publish ended at the drop, not the grace: {duration} s");
    let done = eventually(WAIT, || publish_done(&receiver).pop());
    assert_eq!(done, Some(started["conn_id"].to_string()), "on_publish_done for the dropped publisher");
    let closed = eventually(WAIT, || {
        events(&receiver).into_iter().find(|e| e["type"] == "connection_close" && e["conn_id"] == started["conn_id"])
    });
    assert!(closed.is_some(), "no connection_close for the dropped publisher");
    assert!(flv.read_until(WAIT, |player| player.closed), "the HTTP-FLV player's stream did not end");
    // The RTMP player is told the publish ended, and stays.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let seen = player.join().expect("player thread");
    assert!(seen.statuses.iter().any(|s| s == "NetStream.Play.UnpublishNotify"), "{:?}", seen.statuses);
    assert!(!seen.closed, "the RTMP player stays attached");
}

/// A lifecycle of connection `conn_id` that connected to `live` and was admitted to publish
/// (or play) `cam`.
async fn admitted(context: &std::rc::Rc<ShardContext>, conn_id: u64, publish: bool) -> Lifecycle {
    let addr = format!("192.0.2.7:{}", 40000 + conn_id).parse().unwrap();
    let mut lifecycle = Lifecycle::new(context, Protocol::Rtmp, addr, conn_id);
    let connect = ConnectRequest { app: "live".into(), url: "rtmp://example.com/live".into(), ..Default::default() };
    assert_eq!(lifecycle.admit_connect(connect).await, Admission::Admitted);
    let request = StreamRequest { name: "cam".into(), ..Default::default() };
    let admission = if publish { lifecycle.admit_publish(request).await } else { lifecycle.admit_play(request).await };
    assert_eq!(admission, Admission::Admitted);
    lifecycle
}

/// The timestamps of the packets a player was handed.
fn handed(lifecycle: &Lifecycle) -> Vec<u32> {
    let mut items = Vec::new();
    lifecycle.player().expect("playing").take(&mut items);
    items
        .iter()
        .filter_map(|item| match item {
            PlayerItem::Packet(packet) => Some(packet.timestamp),
            _ => None,
        })
        .collect()
}

const KEYFRAME: &[u8] = &[0x17, 1, 0, 0, 0, 9];

/// The grace on a clock of the test's own: parked, the stream waits until the deadline and
/// not a millisecond less; an adopter continues the timeline and is announced once; the
/// adopted publish ends without a stop; the adopter's own drop expires into the stops.
#[test]
fn the_grace_runs_on_the_clock_it_is_given_and_an_adopter_continues_the_timeline() {
    let recorder = Recorder::default();
    tokio_uring::start(async {
        let config = Config { republish_grace: Duration::from_secs(10), ..Config::default() };
        let hooks = Hooks::new(&config, Some(Box::new(recorder.clone())));
        let (hub, _inboxes) = Hub::new(1, HubSettings::default());
        let callbacks = CallbackLane::new(hooks.callbacks(), hooks.https_pool().clone(), 1);
        let context = ShardContext::new(ShardHub::new(0, hub), hooks, callbacks, SessionSettings::default(), 1);
        let _ = context.republish_grace.set(Arc::new(config.grace_rule()));

        let player = admitted(&context, 1, false).await;
        let mut old = admitted(&context, 2, true).await;
        old.media(PacketKind::Video, 1000, Bytes::from_static(KEYFRAME));
        old.media(PacketKind::Video, 1040, Bytes::from_static(KEYFRAME));
        assert_eq!(handed(&player), [1000, 1040]);

        let t0 = Instant::now();
        assert!(old.park(t0));
        assert_eq!(old.poll_timeout(), Some(t0 + Duration::from_secs(10)), "no update while parked");
        assert_eq!(old.handle_timeout(t0 + Duration::from_millis(9_999)), None);

        // A new publisher, its encoder's clock back at zero, continues the stream.
        let mut new = admitted(&context, 3, true).await;
        let resumed = recorder.of(3, EventType::PublishResume);
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].data["previous_conn_id"], 2);
        assert!(recorder.of(3, EventType::PublishStart).is_empty(), "a resume, not a start");
        new.media(PacketKind::Video, 0, Bytes::from_static(KEYFRAME));
        new.media(PacketKind::Video, 40, Bytes::from_static(KEYFRAME));
        assert_eq!(handed(&player), [1041, 1081]);

        // The old session's wait ends as adopted: no stop, no done.
        old.end_parked(CloseReason::TakenOver);
        old.finish("closed by client");
        assert!(recorder.of(2, EventType::PublishStop).is_empty());
        assert_eq!(recorder.of(2, EventType::ConnectionClose).len(), 1);

        // The new publisher drops too, and nobody comes back.
        let t1 = t0 + Duration::from_secs(20);
        assert!(new.park(t1));
        assert_eq!(new.handle_timeout(t1 + Duration::from_secs(10)), Some(CloseReason::GraceExpired));
        new.end_parked(CloseReason::GraceExpired);
        let stops = recorder.of(3, EventType::PublishStop);
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].data["reason"], "republish grace expired");
        assert_eq!(stops[0].data["video_packets"], 2, "the new publisher's own counts");
        assert_eq!(new.poll_timeout(), None, "nothing left to time");
    });
}
