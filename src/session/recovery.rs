//! Ending what a crashed run left open: for each session the journal (`journal.rs`) still
//! holds, the events and done callbacks its own end would have sent, so that a receiver
//! counting live streams or viewers is never left counting a session that is gone.
//!
//! Each session gets `publish_stop` or `play_stop`, its done callbacks (`on_publish_done` or
//! `on_play_done`, and `on_done`), and each connection one `connection_close` with the reason
//! [`REASON`], all under the original connection's id, protocol, address and stream. What the
//! journal does not keep (bytes, packets, codecs) is 0; durations run from the start to when
//! the crashed server was last alive (the journal's modification time). The server does this
//! before it accepts a client (`server/mod.rs`).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::journal::{OpenSession, Recovered};
use super::lifecycle::{ConnectRequest, client_info};
use crate::hooks::callback::{Call, Callbacks, ClientInfo};
use crate::hooks::event::Protocol;
use crate::hooks::payload::{ConnectionClose, PlayStop, PublishStop};
use crate::hooks::{Hooks, Origin};

/// `connection_close`'s reason for a session a crash ended.
pub const REASON: &str = "server restarted";

/// Sends the stop events of every recovered session, and makes their done callbacks, waiting
/// for those at most `callback_wait` (they run on the hook pool: nothing accepts clients yet).
/// Returns how many sessions were ended.
pub fn end_recovered(recovered: &Recovered, hooks: &Hooks, callback_wait: Duration) -> usize {
    let mut pending = Vec::new();
    let mut closed_conns: Vec<u64> = Vec::new();
    for (index, session) in recovered.sessions.iter().enumerate() {
        let ended_ms = recovered.last_alive_ms.max(session.started_ms);
        let duration_sec = (ended_ms - session.started_ms) as f64 / 1000.0;
        let protocol = protocol(&session.protocol);
        let origin =
            Origin { conn_id: session.conn_id, protocol, addr: session.addr, stream_key: session.stream.clone() };
        if session.publisher {
            hooks.emit(&origin, || PublishStop { duration_sec, ..PublishStop::default() });
        } else {
            hooks.emit(&origin, || PlayStop { bytes_out: 0, duration_sec, dropped_packets: 0, reason: None });
        }
        if let Some(callbacks) = hooks.callbacks_for(&session.app) {
            let client = client_of(session, protocol);
            let fields = [
                ("bytes_in", "0".to_owned()),
                ("bytes_out", "0".to_owned()),
                ("duration", (duration_sec as u64).to_string()),
            ];
            let specific = if session.publisher { Call::PublishDone } else { Call::PlayDone };
            for call in [specific, Call::Done] {
                if let Some(request) = crate::hooks::dialect::request(&callbacks, call, &client, &fields) {
                    let reply = hooks.https_pool().ask(callbacks.prepare(&request));
                    pending.push((callbacks.clone(), request, reply, Instant::now()));
                }
            }
        }
        // One connection_close per connection, after its last stop (a connection may have
        // published and played).
        let later = recovered.sessions[index + 1..].iter().any(|s| s.conn_id == session.conn_id);
        if !later && !closed_conns.contains(&session.conn_id) {
            closed_conns.push(session.conn_id);
            let role = if session.publisher { "publisher" } else { "player" };
            let origin = Origin { stream_key: String::new(), ..origin };
            hooks.emit(&origin, || ConnectionClose {
                role,
                duration_sec,
                bytes_in: 0,
                bytes_out: 0,
                reason: REASON.to_owned(),
            });
        }
    }
    settle_all(pending, Instant::now() + callback_wait);
    let ended = recovered.sessions.len();
    if ended > 0 {
        info!(sessions = ended, connections = closed_conns.len(), "ended the sessions a crash left open");
    }
    ended
}

/// A done callback sent, with the set (global or its app's) that settles its answer.
type Pending = (
    std::sync::Arc<Callbacks>,
    crate::hooks::callback::CallbackRequest,
    tokio::sync::oneshot::Receiver<crate::hooks::callback::Outcome>,
    Instant,
);

/// Waits for the done callbacks' replies until `deadline`, settling each (counted, failures
/// logged); those still running then are logged and left to finish on their own.
fn settle_all(mut pending: Vec<Pending>, deadline: Instant) {
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain_mut(|(callbacks, request, reply, asked_at)| match reply.try_recv() {
            Ok(outcome) => {
                let dialect = callbacks.notify.dialect;
                callbacks.settle(request, &outcome, |answer| crate::hooks::dialect::decide(dialect, answer), *asked_at);
                false
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => true,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => false,
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    if !pending.is_empty() {
        warn!(callbacks = pending.len(), "done callbacks of recovered sessions still running; not waiting longer");
    }
}

fn protocol(name: &str) -> Protocol {
    [Protocol::Rtmp, Protocol::Rtsp, Protocol::HttpFlv]
        .into_iter()
        .find(|p| p.as_str() == name)
        .unwrap_or(Protocol::Rtmp)
}

/// The callbacks' view of a recovered session, as its lifecycle would have built it.
fn client_of(session: &OpenSession, protocol: Protocol) -> ClientInfo {
    let connect = ConnectRequest {
        app: session.app.clone(),
        url: session.url.clone(),
        tc_url: session.tc_url.clone(),
        flash_ver: session.flash_ver.clone(),
        swf_url: session.swf_url.clone(),
        page_url: session.page_url.clone(),
        args: session.connect_args.clone(),
    };
    client_info(&connect, protocol, session.addr, session.conn_id, &session.name, &session.args)
}
