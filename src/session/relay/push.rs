//! A push: one outbound RTMP publish of a stream a client publishes here, fed by a player of
//! the stream that the hub does not count as a viewer ([`crate::hub::ShardHub::forward`]).
//! Once the target answers `Publish.Start`, the one player writer takes the socket over with
//! [`PushFraming`]: the same 12-byte chunk headers before the same shared chunked media as
//! an RTMP player's (the connection announced the server's chunk size, so the shared form
//! fits it), and the client state machine's replies between them. The push keeps reading
//! the target (acknowledgements, pings, an error status) until the publisher leaves.
//!
//! A target that refuses, drops or cannot be reached is tried again (1 s, doubling to 30 s)
//! while the stream is published.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::outbound::{Outbound, RelayError, refusal, resolve};
use super::pull::FLASH_VER;
use super::{BACKOFF_MAX, BACKOFF_MIN, Direction, Listed, Relays, TICK, backoff};
use crate::config::RelayUrl;
use crate::hub::Packet;
use crate::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};
use crate::protocol::rtmp::handshake::SEED_LEN;
use crate::session::ShardContext;
use crate::session::io::PendingOutput;
use crate::session::lifecycle::{Admission, CloseReason, ConnectRequest, Lifecycle, StreamRequest};
use crate::session::player_writer::{Framing, PlayerWriter};
use crate::session::rtmp_out;
use crate::session::timeline::Timeline;

/// One stream's push to one target.
pub(super) struct Push {
    pub key: String,
    pub app: String,
    pub name: String,
    pub url: RelayUrl,
    pub hooks: bool,
    /// Which publish of the stream this push serves (`Relays::publish_started`).
    pub publish: u64,
}

/// How one attempt ended.
enum Attempt {
    /// The push is over (the publisher left, shutdown, kicked).
    Over,
    /// The target failed; `streamed` if it had taken media first.
    Failed { streamed: bool },
}

pub(super) async fn run(context: Rc<ShardContext>, relays: Arc<Relays>, push: Push) {
    let mut wait = BACKOFF_MIN;
    while serves(&context, &relays, &push) {
        match attempt(&context, &relays, &push).await {
            Attempt::Over => break,
            Attempt::Failed { streamed: true } => wait = BACKOFF_MIN,
            Attempt::Failed { streamed: false } => {}
        }
        if backoff(&context, wait).await {
            break;
        }
        wait = (wait * 2).min(BACKOFF_MAX);
    }
    if !context.hub.is_published(&push.key) {
        relays.push_ended(&push.key, push.publish);
    }
}

/// Whether the publish this push serves is still on.
fn serves(context: &ShardContext, relays: &Relays, push: &Push) -> bool {
    relays.push_current(&push.key, push.publish) && context.hub.stream(&push.key).is_some_and(|s| s.is_live())
}

async fn attempt(context: &Rc<ShardContext>, relays: &Arc<Relays>, push: &Push) -> Attempt {
    let (tc_url, app_there, name_there) = push.url.target(&push.app, &push.name);
    let conn_id = relays.next_conn_id();
    let listed =
        relays.register(conn_id, Direction::Push, &format!("{tc_url}/{name_there}"), &push.key, context.hub.shard());
    let mut seed = [0u8; SEED_LEN];
    context.fill_random(&mut seed);
    let settings = &context.settings;
    let chunk_size = settings.rtmp.chunk_size;
    let connecting = async {
        let addr = resolve(&push.url).await?;
        let goal = Goal::Publish(name_there.clone());
        let mut out =
            Outbound::connect(addr, &tc_url, &app_there, goal, chunk_size, seed, settings.limits.send_timeout).await?;
        let (_, read) = out
            .start(|event| matches!(event, ClientEvent::Status { code, .. } if code == "NetStream.Publish.Start"))
            .await?;
        Ok::<_, RelayError>((addr, out, read))
    };
    let (addr, mut out, read) = tokio::select! {
        connected = connecting => match connected {
            Ok(connected) => connected,
            Err(error) => {
                listed.failed(&error);
                return Attempt::Failed { streamed: false };
            }
        },
        _ = context.shutdown.wait() => return Attempt::Over,
    };
    listed.count_in(read as usize);
    let mut lifecycle = Lifecycle::relay(context, addr, conn_id, push.hooks);
    lifecycle.count_in(read as usize);
    let connect = ConnectRequest {
        app: push.app.clone(),
        url: tc_url.clone(),
        tc_url: tc_url.clone(),
        flash_ver: FLASH_VER.to_owned(),
        ..ConnectRequest::default()
    };
    let play = StreamRequest { name: push.name.clone(), args: Vec::new(), callback_fields: Vec::new() };
    let refused = match lifecycle.admit_connect(connect).await {
        Admission::Refused(refusal) => Some(refusal),
        Admission::Admitted => match lifecycle.admit_play(play).await {
            Admission::Refused(refusal) => Some(refusal),
            Admission::Admitted => None,
        },
    };
    let player = lifecycle.player().cloned();
    let (None, Some(player)) = (&refused, player) else {
        let reason = refused.map_or_else(|| "not admitted".to_owned(), |refusal| refusal.to_string());
        tracing::info!(conn_id, stream = %push.key, %reason, "push not admitted");
        lifecycle.finish(&reason);
        return Attempt::Over;
    };
    let output = Rc::new(PendingOutput::default());
    let stream_id = out.client.borrow().stream_id();
    let framing = PushFraming { client: out.client.clone(), stream_id, chunk_size, timeline: Timeline::default() };
    PlayerWriter {
        socket: out.socket.clone(),
        player,
        framing,
        bytes_out: lifecycle.bytes_out().clone(),
        send_timeout: settings.limits.send_timeout,
        output: output.clone(),
    }
    .spawn(&context.flush);
    listed.started(context, addr);
    let since = Instant::now();
    let ended = stream(context, relays, push, &mut lifecycle, &mut out, &output, &listed).await;
    listed.set_out(lifecycle.bytes_out().get());
    let (attempt, reason) = match ended {
        Ok(reason) => (Attempt::Over, reason.to_owned()),
        Err(error) => {
            listed.failed(&error);
            (Attempt::Failed { streamed: true }, error.to_string())
        }
    };
    // Leaving the stream stops the writer, which shuts the socket down.
    lifecycle.finish(&reason);
    listed.stopped(context, addr, &reason, since);
    let _ = out.socket.shutdown(std::net::Shutdown::Both);
    attempt
}

/// Reads the target until the push ends (`Ok`, why) or the target fails (`Err`).
async fn stream(
    context: &ShardContext,
    relays: &Relays,
    push: &Push,
    lifecycle: &mut Lifecycle,
    out: &mut Outbound,
    output: &Rc<PendingOutput>,
    listed: &Listed,
) -> Result<&'static str, RelayError> {
    let entry = lifecycle.entry().clone();
    // One timer for the relay's life: a sleep made anew beside each read would never fire
    // while media arrives faster than it.
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let socket = out.socket.clone();
        // The read stays pending across the ticks: io_uring may have filled its buffer.
        let read = out.reader.read(&socket);
        tokio::pin!(read);
        let input = loop {
            tokio::select! {
                input = &mut read => break input,
                _ = context.shutdown.wait() => return Ok("server shutdown"),
                _ = entry.kicked() => return Ok("kicked by operator"),
                _ = tick.tick() => {
                    listed.set_out(lifecycle.bytes_out().get());
                    if !serves(context, relays, push) {
                        return Ok("publisher left");
                    }
                }
            }
        };
        let input = match crate::session::read_result(lifecycle, Some(output), input)? {
            Ok(input) => input,
            Err(CloseReason::PeerClosed) => return Err(RelayError::Closed),
            Err(reason) => return Err(RelayError::Ended(reason.describe())),
        };
        listed.count_in(input.len());
        let mut client = out.client.borrow_mut();
        client.handle_input(input)?;
        while let Some(event) = client.poll_event() {
            refusal(&event)?;
        }
    }
}

/// A push's framing: an RTMP player's chunk headers on the message stream the target created
/// for the publish, and the client's own replies between them.
struct PushFraming {
    client: Rc<RefCell<ClientConnection>>,
    stream_id: u32,
    chunk_size: u32,
    timeline: Timeline,
}

impl Framing for PushFraming {
    fn take_output(&mut self, bufs: &mut Vec<Bytes>) {
        let mut out = Vec::new();
        self.client.borrow_mut().poll_transmit(&mut out);
        if !out.is_empty() {
            bufs.push(Bytes::from(out));
        }
    }

    fn append_packet(&mut self, bufs: &mut Vec<Bytes>, headers: &mut BytesMut, packet: &Packet) {
        rtmp_out::append_packet(bufs, headers, &mut self.timeline, packet, self.stream_id, self.chunk_size);
    }

    /// The push ends when its publisher leaves (its task sees the stream stop): nothing to
    /// tell the target meanwhile.
    fn unpublished(&mut self, _bufs: &mut Vec<Bytes>) {}

    fn published(&mut self, _bufs: &mut Vec<Bytes>) {
        self.timeline.restart();
    }
}
