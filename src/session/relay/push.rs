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

use bytes::{Bytes, BytesMut};

use super::attempt::{self, Attempt, Opened, Target};
use super::backoff::{Backoff, Retry, retry_after};
use super::outbound::{RelayError, refusal};
use super::{Direction, Relays, ticker};
use crate::config::RelayUrl;
use crate::hub::Packet;
use crate::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};
use crate::session::ShardContext;
use crate::session::io::PendingOutput;
use crate::session::lifecycle::CloseReason;
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

pub(super) async fn run(context: Rc<ShardContext>, relays: Arc<Relays>, push: Push) {
    let mut backoff = Backoff::default();
    while serves(&context, &relays, &push) {
        let streamed = match attempt(&context, &relays, &push).await {
            Attempt::Over => break,
            Attempt::Failed { streamed } => streamed,
        };
        if retry_after(&context.shutdown, backoff.failed(streamed), None).await != Retry::Now {
            break;
        }
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
    let target = Target {
        direction: Direction::Push,
        url: &push.url,
        key: &push.key,
        app: &push.app,
        name: &push.name,
        hooks: push.hooks,
    };
    let publishing =
        |event: &ClientEvent| matches!(event, ClientEvent::Status { code, .. } if code == "NetStream.Publish.Start");
    let mut opened = match attempt::open(context, relays, &target, Goal::Publish, publishing).await {
        Ok(opened) => opened,
        Err(attempt) => return attempt,
    };
    if let Err(attempt) = opened.admit(&target).await {
        return attempt;
    }
    let Some(player) = opened.lifecycle.player().cloned() else {
        // Admitted to play, a session has its player: nothing to push without one.
        opened.lifecycle.finish("not playing");
        return Attempt::Over;
    };
    let output = Rc::new(PendingOutput::default());
    let settings = &context.settings;
    let client = opened.out.client.clone();
    let stream_id = client.borrow().stream_id();
    let framing =
        PushFraming { client, stream_id, chunk_size: settings.rtmp.chunk_size, timeline: Timeline::default() };
    PlayerWriter {
        socket: opened.out.socket.clone(),
        player,
        framing,
        bytes_out: opened.lifecycle.bytes_out().clone(),
        send_timeout: settings.limits.send_timeout,
        output: output.clone(),
    }
    .spawn(&context.flush);
    opened.started(context);
    let ended = stream(context, relays, push, &mut opened, &output).await;
    opened.close(context, ended)
}

/// Reads the target until the push ends (`Ok`, why) or the target fails (`Err`).
async fn stream(
    context: &ShardContext,
    relays: &Relays,
    push: &Push,
    opened: &mut Opened,
    output: &Rc<PendingOutput>,
) -> Result<&'static str, RelayError> {
    let Opened { lifecycle, out, listed, .. } = opened;
    let entry = lifecycle.entry().clone();
    let mut tick = ticker();
    // Its own handle: the input read is borrowed from `out` while the client takes it.
    let client = out.client.clone();
    loop {
        let ticked = || {
            listed.set_out(lifecycle.bytes_out().get());
            (!serves(context, relays, push)).then_some("publisher left")
        };
        let input = match out.read_beside(context, &entry, &mut tick, ticked, std::future::pending()).await {
            Ok(input) => input,
            Err(over) => return Ok(over),
        };
        let input = match crate::session::read_result(lifecycle, Some(output), input)? {
            Ok(input) => input,
            Err(CloseReason::PeerClosed) => return Err(RelayError::Closed),
            Err(reason) => return Err(RelayError::Ended(reason.describe())),
        };
        listed.count_in(input.len());
        let mut client = client.borrow_mut();
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
