//! `GET /api/streams`: the registry's streams joined with what their sessions do (publisher,
//! codecs, bitrate, players per protocol, uptime), and `GET /api/server`: what a client needs
//! to build a player URL (the ports of the media listeners).
//!
//! The registry (the hub) says which streams exist and how many players each has; the shards
//! say, per session, who publishes or plays what ([`StreamActivity`], asked for like the client
//! listing). The two are read one after the other, not atomically: a session that came or
//! went in between shows in one and not the other for one answer, which a page refreshing every
//! second shows right on the next.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::hooks::event::Protocol;
use crate::hub::StreamInfo;
use crate::protocol::codec::CodecInfo;
use crate::session::Role;
use crate::session::activity::StreamActivity;

/// Every protocol a player may use, in the order the answer lists them.
const PLAYER_PROTOCOLS: [Protocol; 3] = [Protocol::Rtmp, Protocol::HttpFlv, Protocol::Rtsp];

/// The media listeners, as bound (a configured port 0 becomes the real one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners {
    pub rtmp: Option<SocketAddr>,
    /// `None` while this server does not serve HTTP-FLV.
    pub http_flv: Option<SocketAddr>,
}

/// `{"streams": [...]}`: each registry stream with its details. `activity` is every session's,
/// in any order; `None` where the API cannot ask the sessions (an API without the server's
/// shards behind it), which lists the registry's keys only. `now_ms` is Unix milliseconds.
pub fn render(streams: Vec<StreamInfo>, activity: Option<&[StreamActivity]>, now_ms: u64) -> Value {
    let Some(activity) = activity else {
        let streams: Vec<Value> = streams.into_iter().map(registry_keys).collect();
        return json!({ "streams": streams });
    };
    let mut by_stream: HashMap<&str, Vec<&StreamActivity>> = HashMap::new();
    for session in activity {
        by_stream.entry(session.client.stream.as_str()).or_default().push(session);
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|stream| {
            let sessions = by_stream.get(stream.key.as_str()).map(Vec::as_slice).unwrap_or_default();
            describe(stream, sessions, now_ms)
        })
        .collect();
    json!({ "streams": streams })
}

/// What the registry alone knows of a stream.
fn registry_keys(stream: StreamInfo) -> Value {
    json!({
        "key": stream.key,
        "live": stream.publisher_shard.is_some(),
        "publisher_shard": stream.publisher_shard,
        "players": stream.players,
    })
}

fn describe(stream: StreamInfo, sessions: &[&StreamActivity], now_ms: u64) -> Value {
    let publisher = sessions.iter().find(|s| s.client.role == Role::Publisher);
    let mut players: serde_json::Map<String, Value> =
        PLAYER_PROTOCOLS.iter().map(|p| (p.as_str().to_owned(), Value::from(0))).collect();
    for session in sessions.iter().filter(|s| s.client.role == Role::Player) {
        if let Some(count) = players.get_mut(session.client.protocol.as_str()) {
            *count = Value::from(count.as_u64().unwrap_or(0) + 1);
        }
    }
    let (app, name) = stream.key.split_once('/').unwrap_or(("", &stream.key));
    let (app, name) = (app.to_owned(), name.to_owned());
    let media = publisher.and_then(|p| p.media.as_ref());
    let details = json!({
        "app": app,
        "name": name,
        "publisher": publisher.map(|p| json!({
            "conn_id": p.client.conn_id,
            "protocol": p.client.protocol.as_str(),
            "addr": p.client.addr,
            "shard": p.client.shard,
        })),
        "uptime_sec": publisher.map(|p| round_tenths(now_ms.saturating_sub(p.since_ms) as f64 / 1000.0)),
        "video": media.and_then(|m| m.video.as_ref()).map(|v| json!({
            "codec": v.codec.name(),
            "profile": v.profile,
            "width": v.width,
            "height": v.height,
            "fps": media.and_then(|m| m.fps),
        })),
        "audio": media.and_then(|m| m.audio.as_ref()).map(audio),
        "bitrate_kbps": media.map(|m| m.bitrate_kbps),
        "players_by_protocol": players,
        "play": {
            "http_flv": format!("/{app}/{name}.flv"),
            "rtmp": format!("/{app}/{name}"),
        },
    });
    let mut all = registry_keys(stream);
    if let (Value::Object(all), Value::Object(details)) = (&mut all, details) {
        all.extend(details);
    }
    all
}

fn audio(info: &CodecInfo) -> Value {
    json!({
        "codec": info.codec.name(),
        "profile": info.profile,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
    })
}

/// `GET /api/server`: the ports a player connects to, so a page served from any host name can
/// build `http://{that host}:{port}/{app}/{name}.flv`.
pub fn server(listeners: Listeners, version: &str, uptime_sec: f64) -> Value {
    json!({
        "version": version,
        "uptime_sec": round_tenths(uptime_sec),
        "rtmp": listeners.rtmp.map(|a| json!({ "port": a.port() })),
        "http_flv": listeners.http_flv.map(|a| json!({ "port": a.port() })),
    })
}

fn round_tenths(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;
    use crate::session::ClientSummary;
    use crate::session::activity::MediaSummary;

    fn session(conn_id: u64, protocol: Protocol, role: Role, stream: &str) -> StreamActivity {
        let client = ClientSummary {
            conn_id,
            shard: 0,
            protocol,
            addr: format!("127.0.0.1:{}", 40000 + conn_id),
            role,
            stream: stream.to_owned(),
            connected_at_ms: 500,
        };
        StreamActivity { client, since_ms: 1_000, media: None }
    }

    #[test]
    fn a_stream_joins_its_publisher_media_and_players_per_protocol() {
        let mut video = CodecInfo::codec_only(Codec::H264);
        (video.width, video.height, video.profile) = (Some(1280), Some(720), Some("High"));
        let mut audio = CodecInfo::codec_only(Codec::Aac);
        (audio.sample_rate, audio.channels) = (Some(48_000), Some(2));
        let mut publisher = session(1, Protocol::Rtmp, Role::Publisher, "live/cam1");
        publisher.media =
            Some(MediaSummary { video: Some(video), audio: Some(audio), bitrate_kbps: 2500, fps: Some(25.0) });
        let activity = [
            publisher,
            session(2, Protocol::Rtmp, Role::Player, "live/cam1"),
            session(3, Protocol::HttpFlv, Role::Player, "live/cam1"),
            session(4, Protocol::HttpFlv, Role::Player, "live/cam1"),
            session(5, Protocol::Rtmp, Role::Player, "live/other"),
        ];
        let streams = vec![
            StreamInfo { key: "live/cam1".into(), publisher_shard: Some(0), players: 3 },
            StreamInfo { key: "live/waiting".into(), publisher_shard: None, players: 0 },
        ];
        let answer = render(streams.clone(), Some(&activity), 13_500);
        let cam = &answer["streams"][0];
        assert_eq!(cam["publisher"], json!({"conn_id": 1, "protocol": "rtmp", "addr": "127.0.0.1:40001", "shard": 0}));
        assert_eq!(
            cam["video"],
            json!({"codec": "h264", "profile": "High", "width": 1280, "height": 720, "fps": 25.0})
        );
        assert_eq!(cam["audio"], json!({"codec": "aac", "profile": null, "sample_rate": 48000, "channels": 2}));
        assert_eq!(cam["players_by_protocol"], json!({"rtmp": 1, "http-flv": 2, "rtsp": 0}));
        assert_eq!((cam["bitrate_kbps"].as_u64(), cam["uptime_sec"].as_f64()), (Some(2500), Some(12.5)));
        assert_eq!(cam["play"], json!({"http_flv": "/live/cam1.flv", "rtmp": "/live/cam1"}));
        assert_eq!(
            (cam["app"].as_str(), cam["name"].as_str(), cam["players"].as_u64()),
            (Some("live"), Some("cam1"), Some(3))
        );
        let waiting = &answer["streams"][1];
        assert!(waiting["publisher"].is_null() && waiting["video"].is_null() && waiting["uptime_sec"].is_null());
        assert_eq!(waiting["live"], false);
        // Without the sessions, the registry's keys only.
        let bare = render(streams, None, 0);
        assert_eq!(
            bare["streams"][1],
            json!({"key": "live/waiting", "live": false, "publisher_shard": null, "players": 0})
        );
    }

    #[test]
    fn the_server_answer_names_only_the_listeners_it_has() {
        let rtmp: SocketAddr = "0.0.0.0:1935".parse().unwrap();
        let answer = server(Listeners { rtmp: Some(rtmp), http_flv: None }, "1.2.3", 4.56);
        assert_eq!(answer, json!({"version": "1.2.3", "uptime_sec": 4.6, "rtmp": {"port": 1935}, "http_flv": null}));
    }
}
