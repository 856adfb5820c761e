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

use serde_json::Value;

use common::http_flv_client::FlvPlayer;
use common::http_receiver::HttpReceiver;
use common::rtmp_client::RtmpClient;
use common::{TestServer, eventually, ffmpeg_publish, require_ffmpeg};
use ringcast::protocol::rtmp::client::ClientEvent;

const WAIT: Duration = Duration::from_secs(20);

fn events(receiver: &HttpReceiver) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == "/events")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .collect()
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

#[test]
fn a_publisher_back_within_the_grace_continues_the_stream_untold() {
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    let server = TestServer::start_with_config(&config(&receiver, "10s"), &[]);
    let mut first = ffmpeg_publish(&server.rtmp_url("live/cam"), 60, (320, 240));
    let started = eventually(WAIT, || find(&receiver, "publish_start", "live/cam").pop());
    let started = started.unwrap_or_else(|| panic!("{}", first.report("first publisher")));

    // Two RTMP players (each lands on either shard) and an HTTP-FLV one.
    let stop = Arc::new(AtomicBool::new(false));
    let players: Vec<_> =
        (0..2).map(|_| watch(RtmpClient::player(server.rtmp_addr(), "cam"), stop.clone())).collect();
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
    require_ffmpeg();
    let receiver = HttpReceiver::start();
    let server = TestServer::start_with_config(&config(&receiver, "3s"), &[]);
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/gone"), 60, (320, 240));
    let started = eventually(WAIT, || find(&receiver, "publish_start", "live/gone").pop());
    let started = started.unwrap_or_else(|| panic!("{}", publisher.report("publisher")));
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
