//! A pull: one outbound RTMP play of a stream from its origins (or its own source), whose
//! media enters the hub through a publishing [`Lifecycle`] exactly as a client's would.
//!
//! A round tries each origin in turn: an origin fails by not resolving, not connecting, an
//! error reply, no first frame within `START_TIMEOUT`, or by dropping the stream later. After
//! a round the pull waits ([`Backoff`]: 1 s, doubling to 30 s; back to 1 s after a round that
//! streamed) and tries again, for as long as the stream has players: the last one leaving
//! ends the wait and the pull. Streaming, it ends `linger` after the last player left (the
//! hub's demand watch, `Watch::idle_for`), at shutdown, when an operator kicks it, or when a
//! client publishes the stream first.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::attempt::{self, Attempt, Opened, Target};
use super::backoff::{Backoff, Retry, retry_after};
use super::outbound::{RelayError, refusal};
use super::{Direction, PullState, Relays, ticker};
use crate::config::RelayUrl;
use crate::hub::{PacketKind, Watch};
use crate::protocol::rtmp::client::{ClientEvent, Goal};
use crate::session::ShardContext;
use crate::session::lifecycle::Lifecycle;

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
    /// The stream's viewers, for the linger and the backoff.
    pub watch: Watch,
}

pub(super) async fn run(context: Rc<ShardContext>, relays: Arc<Relays>, pull: Pull) {
    let mut backoff = Backoff::default();
    'rounds: loop {
        let mut streamed_this_round = false;
        for url in &pull.sources {
            match attempt(&context, &relays, &pull, url).await {
                Attempt::Over => break 'rounds,
                Attempt::Failed { streamed } => streamed_this_round |= streamed,
            }
            if pull.watch.players() == 0 {
                break 'rounds;
            }
        }
        pull.state.round_failed();
        let wait = backoff.failed(streamed_this_round);
        if retry_after(&context.shutdown, wait, Some(&pull.watch)).await != Retry::Now {
            break;
        }
    }
    relays.pull_ended(&pull.key, &pull.state);
}

async fn attempt(context: &Rc<ShardContext>, relays: &Arc<Relays>, pull: &Pull, url: &RelayUrl) -> Attempt {
    let target =
        Target { direction: Direction::Pull, url, key: &pull.key, app: &pull.app, name: &pull.name, hooks: pull.hooks };
    let first_frame = |event: &ClientEvent| matches!(event, ClientEvent::Audio { .. } | ClientEvent::Video { .. });
    let mut opened = match attempt::open(context, relays, &target, Goal::Play, first_frame).await {
        Ok(opened) => opened,
        Err(attempt) => return attempt,
    };
    if let Err(attempt) = opened.admit(&target).await {
        return attempt;
    }
    opened.started(context);
    let early = std::mem::take(&mut opened.early);
    let ended = match early.into_iter().try_for_each(|event| feed(&mut opened.lifecycle, event)) {
        Ok(()) => stream(context, pull, &mut opened).await,
        Err(error) => Err(error),
    };
    opened.close(context, ended)
}

/// Moves the origin's media into the hub until the pull ends (`Ok`, why) or the origin
/// fails (`Err`).
async fn stream(context: &ShardContext, pull: &Pull, opened: &mut Opened) -> Result<&'static str, RelayError> {
    let Opened { lifecycle, out, listed, .. } = opened;
    let entry = lifecycle.entry().clone();
    let mut tick = ticker();
    // Its own handle: the input read is borrowed from `out` while the client takes it.
    let client = out.client.clone();
    // One for the pull's life: each read would otherwise start the linger over.
    let mut lingered: Pin<Box<dyn Future<Output = &'static str> + '_>> = Box::pin(async {
        pull.watch.idle_for(pull.linger).await;
        "no players"
    });
    loop {
        {
            let ticked = || lifecycle.handle_timeout(Instant::now()).map(|_| "session limit reached");
            let input = match out.read_beside(context, &entry, &mut tick, ticked, lingered.as_mut()).await {
                Ok(input) => input?,
                Err(over) => return Ok(over),
            };
            if input.is_empty() {
                return Err(RelayError::Closed);
            }
            lifecycle.count_in(input.len());
            listed.count_in(input.len());
            client.borrow_mut().handle_input(input)?;
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
