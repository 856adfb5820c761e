//! A pull: one outbound RTMP play of a stream from its origins (or its own source), whose
//! media enters the hub through a publishing [`Lifecycle`] exactly as a client's would.
//!
//! A round tries each origin in turn: an origin fails by not resolving, not connecting, an
//! error reply, no first frame within `START_TIMEOUT`, or by dropping the stream later. After
//! a round the pull waits (1 s, doubling to 30 s; back to 1 s after a round that streamed)
//! and tries again, for as long as the stream has players. Streaming, it ends `linger` after
//! the last player left, at shutdown, when an operator kicks it, or when a client publishes
//! the stream first.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::outbound::{Outbound, RelayError, refusal, resolve};
use super::{BACKOFF_MAX, BACKOFF_MIN, Direction, Listed, PullState, Relays, TICK, backoff};
use crate::config::RelayUrl;
use crate::hub::PacketKind;
use crate::protocol::rtmp::client::{ClientEvent, Goal};
use crate::protocol::rtmp::handshake::SEED_LEN;
use crate::session::ShardContext;
use crate::session::lifecycle::{Admission, ConnectRequest, Lifecycle, StreamRequest};

/// What a relay says it is in `connect` (and what `relay_hooks` callbacks see as `flashver`).
pub(super) const FLASH_VER: &str = "ringcast relay";
/// The AMF0 start of an `onMetaData` data message: a string of length 10.
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";
/// The data message a server sends at play start for Flash's sake: not the stream's.
const SAMPLE_ACCESS: &[u8] = b"\x02\x00\x11|RtmpSampleAccess";

/// One stream's pull.
pub(super) struct Pull {
    pub key: String,
    pub app: String,
    pub name: String,
    pub sources: Vec<RelayUrl>,
    pub linger: Duration,
    pub hooks: bool,
    pub state: Arc<PullState>,
}

/// How one attempt at one origin ended.
enum Attempt {
    /// The pull is over (no players, shutdown, kicked, the stream taken by a client).
    Over,
    /// This origin failed; `streamed` if it had streamed first.
    Failed { streamed: bool },
}

pub(super) async fn run(context: Rc<ShardContext>, relays: Arc<Relays>, pull: Pull) {
    let mut wait = BACKOFF_MIN;
    'rounds: loop {
        let mut streamed_this_round = false;
        for url in &pull.sources {
            match attempt(&context, &relays, &pull, url).await {
                Attempt::Over => break 'rounds,
                Attempt::Failed { streamed } => streamed_this_round |= streamed,
            }
            if players(&context, &pull.key) == 0 {
                break 'rounds;
            }
        }
        pull.state.failed_rounds.fetch_add(1, Ordering::Release);
        if streamed_this_round {
            wait = BACKOFF_MIN;
        }
        if players(&context, &pull.key) == 0 || backoff(&context, wait).await {
            break;
        }
        wait = (wait * 2).min(BACKOFF_MAX);
    }
    relays.pull_ended(&pull.key, &pull.state);
}

/// Viewers of `key` on every shard.
fn players(context: &ShardContext, key: &str) -> usize {
    context.hub.stream_counts(key).1.unwrap_or(0)
}

async fn attempt(context: &Rc<ShardContext>, relays: &Arc<Relays>, pull: &Pull, url: &RelayUrl) -> Attempt {
    let (tc_url, app_there, name_there) = url.target(&pull.app, &pull.name);
    let conn_id = relays.next_conn_id();
    let listed =
        relays.register(conn_id, Direction::Pull, &format!("{tc_url}/{name_there}"), &pull.key, context.hub.shard());
    let mut seed = [0u8; SEED_LEN];
    context.fill_random(&mut seed);
    let settings = &context.settings;
    let connecting = async {
        let addr = resolve(url).await?;
        let goal = Goal::Play(name_there.clone());
        let mut out = Outbound::connect(
            addr,
            &tc_url,
            &app_there,
            goal,
            settings.rtmp.chunk_size,
            seed,
            settings.limits.send_timeout,
        )
        .await?;
        let (early, read) =
            out.start(|event| matches!(event, ClientEvent::Audio { .. } | ClientEvent::Video { .. })).await?;
        Ok::<_, RelayError>((addr, out, early, read))
    };
    let (addr, mut out, early, read) = tokio::select! {
        connected = connecting => match connected {
            Ok(connected) => connected,
            Err(error) => {
                listed.failed(&error);
                return Attempt::Failed { streamed: false };
            }
        },
        _ = context.shutdown.wait() => return Attempt::Over,
    };
    let mut lifecycle = Lifecycle::relay(context, addr, conn_id, pull.hooks);
    lifecycle.count_in(read as usize);
    listed.count_in(read as usize);
    let connect = ConnectRequest {
        app: pull.app.clone(),
        url: tc_url.clone(),
        tc_url: tc_url.clone(),
        flash_ver: FLASH_VER.to_owned(),
        ..ConnectRequest::default()
    };
    let publish =
        StreamRequest { name: pull.name.clone(), args: Vec::new(), callback_fields: vec![("type", "live".into())] };
    let refused = match lifecycle.admit_connect(connect).await {
        Admission::Refused(refusal) => Some(refusal),
        Admission::Admitted => match lifecycle.admit_publish(publish).await {
            Admission::Refused(refusal) => Some(refusal),
            Admission::Admitted => None,
        },
    };
    if let Some(refusal) = refused {
        // A client publishes the stream now, or `relay_hooks` callbacks said no: either way
        // the players have their answer without this pull.
        tracing::info!(conn_id, stream = %pull.key, %refusal, "pull not admitted");
        lifecycle.finish(&refusal.to_string());
        return Attempt::Over;
    }
    listed.started(context, addr);
    let since = Instant::now();
    let mut early = early;
    let fed = early.drain(..).try_for_each(|event| feed(&mut lifecycle, event));
    let ended = match fed {
        Ok(()) => stream(context, pull, &mut lifecycle, &mut out, &listed).await,
        Err(error) => Err(error),
    };
    let (attempt, reason) = match ended {
        Ok(reason) => (Attempt::Over, reason.to_owned()),
        Err(error) => {
            listed.failed(&error);
            (Attempt::Failed { streamed: true }, error.to_string())
        }
    };
    lifecycle.finish(&reason);
    listed.stopped(context, addr, &reason, since);
    let _ = out.socket.shutdown(std::net::Shutdown::Both);
    attempt
}

/// Moves the origin's media into the hub until the pull ends (`Ok`, why) or the origin
/// fails (`Err`).
async fn stream(
    context: &ShardContext,
    pull: &Pull,
    lifecycle: &mut Lifecycle,
    out: &mut Outbound,
    listed: &Listed,
) -> Result<&'static str, RelayError> {
    let entry = lifecycle.entry().clone();
    // One timer for the relay's life: a sleep made anew beside each read would never fire
    // while media arrives faster than it.
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since: Option<Instant> = None;
    loop {
        {
            let socket = out.socket.clone();
            // The read stays pending across the ticks: io_uring may have filled its buffer.
            let read = out.reader.read(&socket);
            tokio::pin!(read);
            let input = loop {
                tokio::select! {
                    input = &mut read => break input?,
                    _ = context.shutdown.wait() => return Ok("server shutdown"),
                    _ = entry.kicked() => return Ok("kicked by operator"),
                    _ = tick.tick() => {
                        let now = Instant::now();
                        if lifecycle.handle_timeout(now).is_some() {
                            return Ok("session limit reached");
                        }
                        if players(context, &pull.key) > 0 {
                            idle_since = None;
                        } else if now.duration_since(*idle_since.get_or_insert(now)) >= pull.linger {
                            return Ok("no players");
                        }
                    }
                }
            };
            if input.is_empty() {
                return Err(RelayError::Closed);
            }
            lifecycle.count_in(input.len());
            listed.count_in(input.len());
            out.client.borrow_mut().handle_input(input)?;
        }
        loop {
            let event = out.client.borrow_mut().poll_event();
            let Some(event) = event else { break };
            feed(lifecycle, event)?;
        }
        out.flush().await?;
    }
}

/// Hands one thing the origin sent to the hub through the lifecycle; its error replies end
/// the pull.
fn feed(lifecycle: &mut Lifecycle, event: ClientEvent) -> Result<(), RelayError> {
    refusal(&event)?;
    match event {
        ClientEvent::Audio { timestamp, payload } => lifecycle.media(PacketKind::Audio, timestamp, payload),
        ClientEvent::Video { timestamp, payload } => lifecycle.media(PacketKind::Video, timestamp, payload),
        ClientEvent::Data { timestamp, payload } if !payload.starts_with(SAMPLE_ACCESS) => {
            let metadata = is_metadata(&payload);
            lifecycle.media(PacketKind::Data { metadata }, timestamp, payload)
        }
        _ => {}
    }
    Ok(())
}

fn is_metadata(payload: &Bytes) -> bool {
    payload.starts_with(ON_METADATA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::amf0::{self, Amf0Value};

    #[test]
    fn metadata_and_flash_notices_are_told_apart_by_their_first_value() {
        let encode = |values: &[Amf0Value]| {
            let mut body = Vec::new();
            for value in values {
                amf0::encode(value, &mut body);
            }
            Bytes::from(body)
        };
        let metadata =
            encode(&["onMetaData".into(), Amf0Value::Object(vec![("width".into(), Amf0Value::Number(320.0))])]);
        assert!(is_metadata(&metadata));
        let cue = encode(&["onCuePoint".into()]);
        assert!(!is_metadata(&cue));
        let sample_access = encode(&["|RtmpSampleAccess".into(), Amf0Value::Boolean(false), Amf0Value::Boolean(false)]);
        assert!(sample_access.starts_with(SAMPLE_ACCESS));
    }
}
