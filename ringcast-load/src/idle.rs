//! The `idle` scenario: C connections, each handshaken and `connect`ed, then held open doing
//! nothing; reports how many stay open and what they cost.
//!
//! Per-connection memory is the point here (up to ~15,000 connections in one process under a
//! 20,000 open-files cap), so a held connection keeps only its socket and a 64-byte read
//! buffer: the protocol state is dropped once `connect` is answered (the server sends nothing
//! an idle client must answer), and the setup's larger state machine is boxed and freed.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringcast::protocol::rtmp::client::Goal;
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::Target;
use crate::rtmp::{self, Conn, Until};
use crate::runtime::{LocalStop, Shared, Worker};
use crate::stats::{Dist, Reasons, Table};

/// What a held connection reads into (and discards).
const HOLD_BUFFER: usize = 64;

pub struct IdleSetup {
    pub target: Target,
    pub timeout: Duration,
    pub connections: usize,
    pub ramp: f64,
}

/// One worker's tallies; connections add to them as they go, no per-connection record.
#[derive(Default)]
pub struct IdlePart {
    connect_us: Vec<u64>,
    failures: Reasons,
    /// Held connections that ended before the stop, by reason.
    dropped: Reasons,
}

pub fn spawn(worker: &Worker, setup: Arc<IdleSetup>) -> Rc<RefCell<IdlePart>> {
    let part: Rc<RefCell<IdlePart>> = Rc::default();
    let (shared, stop, tasks) = (worker.shared.clone(), worker.stop.clone(), worker.tasks.clone());
    let launched = part.clone();
    let (count, ramp) = (setup.connections, setup.ramp);
    worker.launch_share(count, ramp, move |id, _go| {
        tasks.spawn(one(setup.clone(), id, launched.clone(), shared.clone(), stop.clone()));
        std::future::ready(true)
    });
    part
}

pub fn take(part: &RefCell<IdlePart>) -> IdlePart {
    std::mem::take(&mut *part.borrow_mut())
}

async fn one(setup: Arc<IdleSetup>, id: usize, part: Rc<RefCell<IdlePart>>, shared: Arc<Shared>, stop: Rc<LocalStop>) {
    let conn = tokio::select! {
        conn = Box::pin(connect(&setup.target, id, setup.timeout)) => conn,
        _ = stop.wait() => return,
    };
    let conn = match conn {
        Ok((conn, connected_us)) => {
            part.borrow_mut().connect_us.push(connected_us);
            shared.established.fetch_add(1, Ordering::Relaxed);
            conn
        }
        Err(failure) => {
            part.borrow_mut().failures.add(failure.to_string());
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.finished.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut buf = Vec::with_capacity(HOLD_BUFFER);
    loop {
        let read = tokio::select! {
            read = conn.stream().read(buf) => read,
            _ = stop.wait() => break,
        };
        let (result, returned) = read;
        buf = returned;
        buf.clear();
        let reason = match result {
            Ok(0) => "closed by server".to_owned(),
            Ok(_) => continue,
            Err(e) => rtmp::Failure::io("held", &e).reason,
        };
        part.borrow_mut().dropped.add(format!("held: {reason}"));
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        break;
    }
    shared.finished.fetch_add(1, Ordering::Relaxed);
}

/// Handshake + connect; returns the bare socket and the microseconds it took.
async fn connect(target: &Target, id: usize, limit: Duration) -> Result<(Rc<Conn>, u64), rtmp::Failure> {
    let began = Instant::now();
    let (session, steps) = rtmp::establish(target, Goal::Connect, Until::Connected, id, began, limit).await?;
    Ok((session.into_conn(), steps.connected_us))
}

#[derive(Debug, Serialize)]
pub struct IdleSummary {
    pub requested: usize,
    pub connected: usize,
    pub failed: u64,
    pub failures: Reasons,
    /// Open at the end of the hold.
    pub held: usize,
    pub dropped: u64,
    pub drops: Reasons,
    pub connect: Dist,
    /// Seconds from the first start until every connection was open (or had failed).
    pub open_secs: f64,
    pub hold_secs: f64,
}

impl IdleSummary {
    pub fn new(setup: &IdleSetup, parts: Vec<IdlePart>, open_secs: f64, hold_secs: f64) -> IdleSummary {
        let mut failures = Reasons::default();
        let mut drops = Reasons::default();
        let mut connect_us = Vec::new();
        for part in parts {
            failures.merge(&part.failures);
            drops.merge(&part.dropped);
            connect_us.extend(part.connect_us);
        }
        let connected = connect_us.len();
        let dropped = drops.total();
        IdleSummary {
            requested: setup.connections,
            connected,
            failed: failures.total(),
            failures,
            held: connected.saturating_sub(dropped as usize),
            dropped,
            drops,
            connect: Dist::of_us(&mut connect_us),
            open_secs: crate::stats::round2(open_secs),
            hold_secs: crate::stats::round2(hold_secs),
        }
    }

    pub fn table(&self) -> String {
        let mut t = Table::new("idle connections");
        t.row(
            "connections",
            format!(
                "{} connected of {} ({} failed) in {} s",
                self.connected, self.requested, self.failed, self.open_secs
            ),
        )
        .row("failures", self.failures.show())
        .row("held to the end", format!("{} for {} s", self.held, self.hold_secs))
        .row("closed while held", format!("{} ({})", self.dropped, self.drops.show()))
        .row("handshake + connect", self.connect.show());
        t.render()
    }
}
