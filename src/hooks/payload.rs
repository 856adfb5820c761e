//! The data of each event type (the per-event fields of docs/hooks.md), one type per event.
//!
//! A session builds one of these; `Hooks::emit` turns it into the event's JSON `data` only
//! when some sink wants that type. The field names are the wire contract: every sink
//! format (JSON bodies, script environments, stdio lines) reads them from that `data`.

use serde::{Serialize, Serializer};

use super::event::EventType;

/// The data of one event type.
pub trait EventPayload: Serialize {
    const TYPE: EventType;
}

/// A client's query arguments as a JSON object of strings (a repeated name keeps its last value).
fn args_object<S: Serializer>(args: &[(String, String)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(args.iter().map(|(name, value)| (name, value)))
}

macro_rules! payload {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize)]
        pub struct $name { $($(#[$field_doc])* pub $field: $ty),* }

        impl EventPayload for $name {
            const TYPE: EventType = EventType::$name;
        }
    };
}

payload!(
    /// A TCP connection was accepted.
    ConnectionAccept { remote_addr: String, protocol: &'static str }
);
payload!(
    /// The protocol's handshake finished.
    HandshakeComplete {}
);
payload!(
    /// The client asked to connect to an application. The RTMP-only fields are empty for
    /// other protocols.
    Connect {
        app: String,
        tcurl: String,
        flashver: String,
        swfurl: String,
        pageurl: String,
        #[serde(serialize_with = "args_object")]
        args: Vec<(String, String)>,
    }
);
payload!(
    /// A callback refused a connect, publish or play.
    AuthFailed { action: &'static str, error: String }
);
payload!(
    /// The stream entered the registry (first publisher or player).
    StreamCreate {}
);
payload!(
    /// The stream left the registry (no publisher and no player left).
    StreamDelete {}
);
payload!(
    /// A player joined a stream nobody publishes.
    StreamUnavailable {}
);
payload!(
    /// The last player of a live stream left.
    NoViewers {}
);
payload!(
    PublishStart {
        #[serde(serialize_with = "args_object")]
        args: Vec<(String, String)>,
        /// This publisher took the stream over from another (`takeover`); only then present.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        takeover: bool,
    }
);
payload!(
    PlayStart {
        #[serde(serialize_with = "args_object")]
        args: Vec<(String, String)>,
    }
);
payload!(
    /// Players of the stream, server-wide, after one joined or left.
    SubscriberCount { count: usize }
);
payload!(
    /// The first sequence header of a kind named its codec; both slots as known so far.
    CodecDetected {
        audio_codec: Option<&'static str>,
        video_codec: Option<&'static str>,
        width: Option<u32>,
        height: Option<u32>,
        sample_rate: Option<u32>,
        channels: Option<u8>,
        profile: Option<&'static str>,
    }
);
payload!(PublishUpdate {
    /// Whole seconds since the publish started, rounded.
    time: u64,
    /// The publisher's last media timestamp, in milliseconds.
    timestamp: u32,
    bytes_in: u64,
    bitrate_kbps: f64,
});
payload!(PlayUpdate {
    /// Whole seconds since the play started, rounded.
    time: u64,
    /// Milliseconds since the play started.
    timestamp: u64,
    bytes_out: u64,
});
payload!(
    PublishStop {
        audio_packets: u64,
        video_packets: u64,
        /// Media payload bytes received.
        total_bytes: u64,
        bytes_in: u64,
        bytes_out: u64,
        audio_codec: Option<&'static str>,
        video_codec: Option<&'static str>,
        duration_sec: f64,
        /// Why the publish ended when not by the publisher (`taken over`, a limit a callback's
        /// reply set); only then present.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    }
);
payload!(
    /// A new publisher continued a stream whose publisher had dropped, within
    /// `republish_grace`: instead of the old one's publish_stop and the new one's
    /// publish_start.
    PublishResume {
        #[serde(serialize_with = "args_object")]
        args: Vec<(String, String)>,
        /// Milliseconds between the old publisher's drop and this publish.
        gap_ms: u64,
        /// The session (`conn_id`) whose publish this one continues.
        previous_conn_id: u64,
    }
);
payload!(PlayStop {
    bytes_out: u64,
    duration_sec: f64,
    dropped_packets: u64,
    /// Why the play ended when a limit a callback's reply set ended it; only then present.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
});
payload!(
    /// The connection ended; `role` is what it was last (publisher, player or none).
    ConnectionClose { role: &'static str, duration_sec: f64, bytes_in: u64, bytes_out: u64, reason: String }
);
payload!(
    /// A relay connected: a pull from an origin or source (`direction` "pull"), or a push of a
    /// stream published here (`direction` "push"). `url` is the stream's URL there.
    RelayStart { direction: &'static str, url: String }
);
payload!(
    /// A relay ended; `reason` says why (no players after `linger`, the publisher left, the
    /// peer closed or failed, shutdown). Bytes are the relay connection's, media included.
    RelayStop { direction: &'static str, url: String, reason: String, bytes_in: u64, bytes_out: u64, duration_sec: f64 }
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_serialize_to_the_documented_fields() {
        let connect = Connect {
            app: "live".into(),
            tcurl: "rtmp://h/live".into(),
            flashver: "FMLE".into(),
            swfurl: String::new(),
            pageurl: String::new(),
            args: vec![("token".into(), "a".into()), ("token".into(), "b".into())],
        };
        assert_eq!(
            serde_json::to_value(&connect).unwrap(),
            json!({"app": "live", "tcurl": "rtmp://h/live", "flashver": "FMLE", "swfurl": "", "pageurl": "", "args": {"token": "b"}})
        );
        assert_eq!(serde_json::to_value(StreamCreate {}).unwrap(), json!({}));
        let stop = PlayStop { bytes_out: 5, duration_sec: 1.25, dropped_packets: 0, reason: None };
        assert_eq!(
            serde_json::to_value(stop).unwrap(),
            json!({"bytes_out": 5, "duration_sec": 1.25, "dropped_packets": 0})
        );
        assert_eq!(
            serde_json::to_value(PublishUpdate { time: 3, timestamp: 7, bytes_in: 9, bitrate_kbps: 0.0 }).unwrap(),
            json!({"time": 3, "timestamp": 7, "bytes_in": 9, "bitrate_kbps": 0.0})
        );
    }
}
