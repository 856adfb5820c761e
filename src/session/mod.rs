//! Per-protocol IO glue: drives a sans-IO protocol state machine over an io_uring socket,
//! talks to the hub, and (later) asks hooks for decisions.
//!
//! A session is the only place where a protocol error becomes a closed connection: the
//! error ends that session's task and nothing else.

pub mod io;
pub mod rtmp;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::hooks::Hooks;
use crate::hub::ShardHub;
use crate::protocol::rtmp::server::ServerSettings;

/// Session limits and protocol settings, from the config.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub rtmp: ServerSettings,
    /// A client that has not finished the handshake by then is dropped: it holds a socket
    /// and buffers without ever becoming useful.
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing for this long is dropped, so its stream key is freed.
    pub idle_timeout: Duration,
    /// Period of publish_update/play_update events and on_update callbacks.
    pub update_interval: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            rtmp: ServerSettings::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            update_interval: Duration::from_secs(30),
        }
    }
}

/// A shard-wide "stop now" that every session can await without a per-session allocation.
#[derive(Debug, Default)]
pub struct Shutdown {
    notify: Notify,
    triggered: Cell<bool>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.triggered.set(true);
        self.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.triggered.get()
    }

    pub async fn wait(&self) {
        while !self.triggered.get() {
            self.notify.notified().await;
        }
    }
}

/// What every session on a shard shares.
pub struct ShardContext {
    pub hub: Rc<ShardHub>,
    pub hooks: Arc<Hooks>,
    pub settings: SessionSettings,
    pub shutdown: Shutdown,
    /// Sessions alive on this shard; shutdown waits for it to reach zero.
    pub active_sessions: Cell<usize>,
    pub sessions_done: Notify,
    random: Cell<u64>,
}

impl ShardContext {
    pub fn new(hub: Rc<ShardHub>, hooks: Arc<Hooks>, settings: SessionSettings, seed: u64) -> Rc<ShardContext> {
        Rc::new(ShardContext {
            hub,
            hooks,
            settings,
            shutdown: Shutdown::default(),
            active_sessions: Cell::new(0),
            sessions_done: Notify::new(),
            random: Cell::new(seed | 1),
        })
    }

    /// Fills `out` with fast pseudo-random bytes. The RTMP handshake's random field has no
    /// security role; a syscall per connection would cost more than it is worth.
    pub fn fill_random(&self, out: &mut [u8]) {
        let mut state = self.random.get();
        for chunk in out.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        self.random.set(state);
    }
}

/// Counts a session as alive for as long as the guard lives.
pub struct SessionGuard(Rc<ShardContext>);

impl SessionGuard {
    pub fn new(context: &Rc<ShardContext>) -> SessionGuard {
        context.active_sessions.set(context.active_sessions.get() + 1);
        SessionGuard(context.clone())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let left = self.0.active_sessions.get() - 1;
        self.0.active_sessions.set(left);
        if left == 0 {
            self.0.sessions_done.notify_waiters();
        }
    }
}
