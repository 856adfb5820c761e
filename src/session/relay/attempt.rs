//! One attempt at one peer, the part pulls and pushes share: the session listed, the
//! connection opened up to the peer's start (`outbound.rs`), the session admitted here as a
//! client's connect and publish (a pull) or play (a push) would be, and, once it streamed,
//! its end told (`relay_stop`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::outbound::{Early, Outbound, RelayError, resolve};
use super::{Direction, Listed, Relays};
use crate::config::RelayUrl;
use crate::protocol::rtmp::client::{ClientEvent, Goal};
use crate::protocol::rtmp::handshake::SEED_LEN;
use crate::session::ShardContext;
use crate::session::lifecycle::{Admission, ConnectRequest, Lifecycle, StreamRequest};

/// What a relay says it is in `connect` (and what `relay_hooks` callbacks see as `flashver`).
const FLASH_VER: &str = "ringcast relay";

/// How one attempt at one peer ended.
pub(super) enum Attempt {
    /// The relay is over (no players, the publisher left, shutdown, kicked, not admitted).
    Over,
    /// This peer failed; `streamed` if it had streamed first.
    Failed { streamed: bool },
}

/// A relay's peer and its stream here.
pub(super) struct Target<'a> {
    pub direction: Direction,
    pub url: &'a RelayUrl,
    /// `app/name` here, and its parts.
    pub key: &'a str,
    pub app: &'a str,
    pub name: &'a str,
    pub hooks: bool,
}

/// A relay connection whose peer started, and its session here.
pub(super) struct Opened {
    pub addr: SocketAddr,
    pub out: Outbound,
    /// What the peer sent up to and including its start.
    pub early: Early,
    pub lifecycle: Lifecycle,
    pub listed: Listed,
    tc_url: String,
    since: Instant,
}

/// Lists the session, connects to the peer for `goal` (given the stream's name there) and
/// waits for `started`. `Err`: what the attempt came to (the failure is counted and logged).
pub(super) async fn open(
    context: &Rc<ShardContext>,
    relays: &Arc<Relays>,
    target: &Target<'_>,
    goal: fn(String) -> Goal,
    started: fn(&ClientEvent) -> bool,
) -> Result<Opened, Attempt> {
    let (tc_url, app_there, name_there) = target.url.target(target.app, target.name);
    let conn_id = relays.next_conn_id();
    let shown = format!("{tc_url}/{name_there}");
    let listed = relays.register(conn_id, target.direction, &shown, target.key, context.hub.shard());
    let mut seed = [0u8; SEED_LEN];
    context.fill_random(&mut seed);
    let settings = &context.settings;
    let (chunk_size, send_timeout) = (settings.rtmp.chunk_size, settings.limits.send_timeout);
    let connecting = async {
        let addr = resolve(target.url).await?;
        let mut out =
            Outbound::connect(addr, &tc_url, &app_there, goal(name_there), chunk_size, seed, send_timeout).await?;
        let (early, read) = out.start(started).await?;
        Ok::<_, RelayError>((addr, out, early, read))
    };
    let (addr, out, early, read) = tokio::select! {
        connected = connecting => connected.map_err(|error| {
            listed.failed(&error);
            Attempt::Failed { streamed: false }
        })?,
        _ = context.shutdown.wait() => return Err(Attempt::Over),
    };
    listed.count_in(read as usize);
    let mut lifecycle = Lifecycle::relay(context, addr, conn_id, target.hooks);
    lifecycle.count_in(read as usize);
    Ok(Opened { addr, out, early, lifecycle, listed, tc_url, since: Instant::now() })
}

impl Opened {
    /// Admits the session here as a publisher (a pull) or a player (a push). A refusal (a
    /// client publishes the stream now, or `relay_hooks` callbacks said no) ends the relay:
    /// the players have their answer without it.
    pub async fn admit(&mut self, target: &Target<'_>) -> Result<(), Attempt> {
        let connect = ConnectRequest {
            app: target.app.to_owned(),
            url: self.tc_url.clone(),
            tc_url: self.tc_url.clone(),
            flash_ver: FLASH_VER.to_owned(),
            ..ConnectRequest::default()
        };
        let request = StreamRequest { name: target.name.to_owned(), args: Vec::new(), callback_fields: Vec::new() };
        let lifecycle = &mut self.lifecycle;
        let admission = match lifecycle.admit_connect(connect).await {
            Admission::Admitted => match target.direction {
                Direction::Pull => {
                    let publish = StreamRequest { callback_fields: vec![("type", "live".into())], ..request };
                    lifecycle.admit_publish(publish).await
                }
                Direction::Push => lifecycle.admit_play(request).await,
            },
            refused => refused,
        };
        let Admission::Refused(refusal) = admission else { return Ok(()) };
        tracing::info!(conn_id = lifecycle.conn_id(), stream = %target.key, %refusal, "relay not admitted");
        lifecycle.finish(&refusal.to_string());
        Err(Attempt::Over)
    }

    /// The relay streams from now on (relay_start).
    pub fn started(&mut self, context: &ShardContext) {
        self.listed.started(context, self.addr);
        self.since = Instant::now();
    }

    /// Ends a relay that streamed, as `ended` says (`Ok`: why it is over; `Err`: its peer
    /// failed), and tells it (relay_stop).
    pub fn close(mut self, context: &ShardContext, ended: Result<&'static str, RelayError>) -> Attempt {
        let (attempt, reason) = match ended {
            Ok(reason) => (Attempt::Over, reason.to_owned()),
            Err(error) => {
                self.listed.failed(&error);
                (Attempt::Failed { streamed: true }, error.to_string())
            }
        };
        self.listed.set_out(self.lifecycle.bytes_out().get());
        // A push leaving the stream stops its writer, which shuts the socket down too.
        self.lifecycle.finish(&reason);
        self.listed.stopped(context, self.addr, &reason, self.since);
        let _ = self.out.socket.shutdown(std::net::Shutdown::Both);
        attempt
    }
}
