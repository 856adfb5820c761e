//! The `connect` scenario: a storm of connections, each walked through handshake and
//! `connect` (and optionally play to the first media packet, or publish to its start), then
//! closed. Reports the rate they complete at and how long each step took.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringcast::protocol::flv::{self, MediaKind};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::{Target, Then};
use crate::rtmp::{self, Failure, Until};
use crate::runtime::{Shared, Worker};
use crate::stats::{Dist, Reasons, Table, round2};

pub struct StormSetup {
    pub target: Target,
    pub timeout: Duration,
    pub connections: usize,
    pub rate: f64,
    pub concurrency: usize,
    pub then: Option<Then>,
    /// Players wait on to their first video keyframe.
    pub until_keyframe: bool,
}

/// One connection's timings, in microseconds after it began; `None` where it did not get.
#[derive(Debug, Default, Clone, Copy)]
struct Record {
    began_us: u64,
    ended_us: u64,
    tcp_us: Option<u64>,
    connected_us: Option<u64>,
    started_us: Option<u64>,
    media_us: Option<u64>,
    keyframe_us: Option<u64>,
    ok: bool,
}

/// What one worker returns.
#[derive(Default)]
pub struct StormPart {
    records: Vec<Record>,
    failures: Reasons,
}

/// Starts this worker's share of the storm (once the main thread says go).
pub fn spawn(worker: &Worker, setup: Arc<StormSetup>) -> Rc<RefCell<StormPart>> {
    let part: Rc<RefCell<StormPart>> = Rc::default();
    let (shared, stop, tasks) = (worker.shared.clone(), worker.stop.clone(), worker.tasks.clone());
    let launched = part.clone();
    // The limit is split evenly: each worker runs 1/threads of the connections.
    let permits = match setup.concurrency {
        0 => Semaphore::MAX_PERMITS,
        n => n.div_ceil(worker.threads).max(1),
    };
    let limit = Arc::new(Semaphore::new(permits));
    let (count, rate) = (setup.connections, setup.rate);
    worker.launch_share(count, rate, move |id, go| {
        let (limit, stop, tasks) = (limit.clone(), stop.clone(), tasks.clone());
        let (setup, part, shared) = (setup.clone(), launched.clone(), shared.clone());
        async move {
            let permit = tokio::select! {
                permit = limit.acquire_owned() => permit,
                _ = stop.wait() => return false,
            };
            let Ok(permit) = permit else {
                return false;
            };
            tasks.spawn(async move {
                let (record, failure) = one(&setup, id, go).await;
                drop(permit);
                let mut part = part.borrow_mut();
                part.records.push(record);
                match failure {
                    Some(failure) => {
                        part.failures.add(failure.to_string());
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        shared.established.fetch_add(1, Ordering::Relaxed);
                    }
                }
                shared.finished.fetch_add(1, Ordering::Relaxed);
            });
            true
        }
    });
    part
}

/// This worker's results, once its tasks are done.
pub fn take(part: &RefCell<StormPart>) -> StormPart {
    std::mem::take(&mut *part.borrow_mut())
}

async fn one(setup: &StormSetup, id: usize, go: Instant) -> (Record, Option<Failure>) {
    let began = Instant::now();
    let mut record = Record { began_us: began.saturating_duration_since(go).as_micros() as u64, ..Record::default() };
    let target = &setup.target;
    let (goal, until) = match setup.then {
        None => (Goal::Connect, Until::Connected),
        Some(Then::Play) => (Goal::Play(target.stream_request(0)), Until::Playing),
        // Each its own stream: one name can have only one publisher.
        Some(Then::Publish) => (Goal::Publish(format!("{}-c{id}{}", target.name, target.query)), Until::Publishing),
    };
    let failure = match rtmp::establish(target, goal, until, id, began, setup.timeout).await {
        Ok((session, steps)) => {
            record.tcp_us = Some(steps.tcp_us);
            record.connected_us = Some(steps.connected_us);
            if setup.then.is_some() {
                record.started_us = Some(steps.started_us);
            }
            match setup.then {
                Some(Then::Play) => watch_play(setup, session, began, &mut record).await.err(),
                _ => None,
            }
        }
        Err(failure) => Some(failure),
    };
    record.ok = failure.is_none();
    record.ended_us = (began.elapsed().as_micros() as u64).saturating_add(record.began_us);
    (record, failure)
}

/// A player's wait for its first media packet and, with `--until-keyframe`, its first video
/// keyframe, each time recorded in `record`.
async fn watch_play(
    setup: &StormSetup,
    mut session: rtmp::Session,
    began: Instant,
    record: &mut Record,
) -> Result<(), Failure> {
    let deadline = Instant::now() + setup.timeout;
    let since_began = || Some(began.elapsed().as_micros() as u64);
    session
        .wait_for("first media", deadline, setup.timeout, |e| {
            matches!(e, ClientEvent::Audio { .. } | ClientEvent::Video { .. })
        })
        .await?;
    record.media_us = since_began();
    if setup.until_keyframe {
        session
            .wait_for("first keyframe", deadline, setup.timeout, |e| {
                let ClientEvent::Video { payload, .. } = e else { return false };
                flv::classify(MediaKind::Video, payload).is_ok_and(|info| info.keyframe && !info.sequence_header)
            })
            .await?;
        record.keyframe_us = since_began();
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct StormSummary {
    pub requested: usize,
    pub completed: usize,
    pub failed: u64,
    pub failures: Reasons,
    pub then: Option<&'static str>,
    /// From the first connection's start to the last one's end.
    pub storm_secs: f64,
    /// Completed connections per second over `storm_secs`.
    pub completed_per_sec: f64,
    pub tcp_connect: Dist,
    pub connected: Dist,
    pub play_or_publish_start: Dist,
    pub first_media: Dist,
    pub first_keyframe: Dist,
}

impl StormSummary {
    pub fn new(setup: &StormSetup, parts: Vec<StormPart>) -> StormSummary {
        let mut failures = Reasons::default();
        let mut records = Vec::new();
        for part in parts {
            failures.merge(&part.failures);
            records.extend(part.records);
        }
        let first = records.iter().map(|r| r.began_us).min().unwrap_or(0);
        let last = records.iter().map(|r| r.ended_us).max().unwrap_or(0);
        let secs = last.saturating_sub(first) as f64 / 1e6;
        let completed = records.iter().filter(|r| r.ok).count();
        let pick = |f: fn(&Record) -> Option<u64>| {
            let mut v: Vec<u64> = records.iter().filter(|r| r.ok).filter_map(f).collect();
            Dist::of_us(&mut v)
        };
        StormSummary {
            requested: setup.connections,
            completed,
            failed: failures.total(),
            then: setup.then.map(|t| match t {
                Then::Play => "play",
                Then::Publish => "publish",
            }),
            storm_secs: round2(secs),
            completed_per_sec: if secs > 0.0 { round2(completed as f64 / secs) } else { 0.0 },
            tcp_connect: pick(|r| r.tcp_us),
            connected: pick(|r| r.connected_us),
            play_or_publish_start: pick(|r| r.started_us),
            first_media: pick(|r| r.media_us),
            first_keyframe: pick(|r| r.keyframe_us),
            failures,
        }
    }

    pub fn table(&self) -> String {
        let mut t = Table::new("connection storm");
        t.row("connections", format!("{} completed of {} ({} failed)", self.completed, self.requested, self.failed))
            .row("failures", self.failures.show())
            .row(
                "completion rate",
                format!("{} /s ({} s from first start to last end)", self.completed_per_sec, self.storm_secs),
            )
            .row("TCP connect", self.tcp_connect.show())
            .row("to connected", self.connected.show());
        match self.then {
            Some("play") => {
                t.row("to play start", self.play_or_publish_start.show())
                    .row("to first media", self.first_media.show());
                if self.first_keyframe.count > 0 {
                    t.row("to first keyframe", self.first_keyframe.show());
                }
            }
            Some(_) => {
                t.row("to publish start", self.play_or_publish_start.show());
            }
            None => {}
        }
        t.render()
    }
}

/// Whether every connection of the storm has finished.
pub fn done(shared: &Shared, connections: usize) -> bool {
    shared.finished.load(Ordering::Relaxed) >= connections
}
