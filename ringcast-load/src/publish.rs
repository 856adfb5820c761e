//! A real-time publisher, and the `publish` scenario.
//!
//! After `NetStream.Publish.Start` the connection splits in two tasks: a writer that sends
//! each frame when it is due, and a reader that feeds the server's messages (acknowledgement
//! windows, status) to the protocol. They cannot be one task: a read cannot be abandoned
//! to wake up for the next frame without losing the bytes it may have read, and io_uring
//! reads own their buffer until they complete. The writer is the socket's only writer, so
//! the protocol's own replies (acknowledgements) go out in order with the media.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringcast::protocol::rtmp::client::{ClientConnection, ClientEvent, Goal};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cli::Target;
use crate::media::{MediaPlan, TYPE_AUDIO, TYPE_VIDEO};
use crate::rtmp::{self, Conn, Failure, ReadBuf, Until};
use crate::runtime::{LocalStop, Shared, Worker};
use crate::stats::{Dist, Grid, Reasons, Table, gbit_per_s, round2, us_to_ms};

/// Frames sent in one go at most, so a publisher far behind schedule still yields.
const MAX_BATCH: usize = 256;
/// A frame sent later than this after its due time counts as late.
const LATE: Duration = Duration::from_millis(100);

/// What every publisher of a run shares.
pub struct PublishSetup {
    pub target: Target,
    pub timeout: Duration,
    pub plan: MediaPlan,
}

/// One publisher's outcome.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PublisherRecord {
    pub id: usize,
    pub stream: String,
    /// From TCP connect to `NetStream.Publish.Start`.
    pub start_ms: Option<f64>,
    pub audio_frames: u64,
    pub video_frames: u64,
    pub bytes_out: u64,
    pub publish_secs: f64,
    /// Frames handed to the socket more than 100 ms after they were due (the socket was full:
    /// the server did not read fast enough, or this process had no CPU).
    pub late_frames: u64,
    pub max_late_ms: f64,
    /// Why it never published.
    pub failure: Option<String>,
    /// Why it stopped before the end of the run.
    pub ended: Option<String>,
}

/// Runs publisher `id` to stream `stream` until the run stops.
pub async fn run_publisher(
    setup: Arc<PublishSetup>,
    id: usize,
    stream: String,
    record: Rc<RefCell<PublisherRecord>>,
    shared: Arc<Shared>,
    stop: Rc<LocalStop>,
) {
    {
        let mut r = record.borrow_mut();
        r.id = id;
        r.stream = stream.clone();
    }
    let began = Instant::now();
    let request = format!("{stream}{}", setup.target.query);
    let established = tokio::select! {
        result = Box::pin(rtmp::establish(
            &setup.target,
            Goal::Publish(request),
            Until::Publishing,
            usize::MAX - id,
            began,
            setup.timeout,
        )) => result,
        _ = stop.wait() => Err(Failure::new("publish", "stopped before publishing")),
    };
    let (session, steps) = match established {
        Ok(ok) => ok,
        Err(failure) => {
            record.borrow_mut().failure = Some(failure.to_string());
            shared.publishers_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    record.borrow_mut().start_ms = Some(us_to_ms(steps.started_us));
    let bytes_before = session.bytes_out;
    let (conn, client, reader) = session.into_parts();
    let client = Rc::new(RefCell::new(client));
    let wake = Rc::new(Notify::new());
    let ended: Rc<RefCell<Option<Failure>>> = Rc::default();
    tokio::task::spawn_local(read_loop(
        conn.clone(),
        client.clone(),
        reader,
        wake.clone(),
        ended.clone(),
        stop.clone(),
    ));
    let publisher_id = crate::runtime::mix(id as u64 ^ crate::media::wall_us()) as u32;
    let mut writer = Writer {
        conn,
        client,
        shared,
        record: record.clone(),
        out: Vec::new(),
        scratch: Vec::new(),
        bytes_out: bytes_before,
    };
    let started = Instant::now();
    let result = writer.run(setup.plan.source(publisher_id), &wake, &ended, &stop).await;
    let mut r = record.borrow_mut();
    r.publish_secs = round2(started.elapsed().as_secs_f64());
    r.bytes_out = writer.bytes_out;
    if let Err(failure) = result {
        r.ended = Some(failure.to_string());
    }
    // Dropping the last `Conn` shuts the socket down, which also ends the reader task.
}

struct Writer {
    conn: Rc<Conn>,
    client: Rc<RefCell<ClientConnection>>,
    shared: Arc<Shared>,
    record: Rc<RefCell<PublisherRecord>>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    bytes_out: u64,
}

impl Writer {
    async fn run(
        &mut self,
        mut source: crate::media::Source,
        wake: &Notify,
        ended: &RefCell<Option<Failure>>,
        stop: &LocalStop,
    ) -> Result<(), Failure> {
        {
            let mut client = self.client.borrow_mut();
            for (type_id, body) in source.headers() {
                client.send_media(type_id, 0, &body);
            }
        }
        let start = Instant::now();
        let mut ready_signalled = false;
        loop {
            if let Some(failure) = ended.borrow_mut().take() {
                return Err(failure);
            }
            let due_at = start + Duration::from_millis(source.peek().due_ms);
            tokio::select! {
                _ = tokio::time::sleep_until(due_at) => {}
                // The reader saw input: the protocol may have an acknowledgement to send.
                _ = wake.notified() => {}
                _ = stop.wait() => return Ok(()),
            }
            let now = Instant::now();
            let mut keyframe_sent = false;
            {
                let mut client = self.client.borrow_mut();
                let mut record = self.record.borrow_mut();
                for _ in 0..MAX_BATCH {
                    let due_at = start + Duration::from_millis(source.peek().due_ms);
                    if due_at > now {
                        break;
                    }
                    let (due, payload) = source.emit(&mut self.scratch);
                    client.send_media(due.type_id, due.timestamp, payload.as_slice());
                    match due.type_id {
                        TYPE_VIDEO => record.video_frames += 1,
                        TYPE_AUDIO => record.audio_frames += 1,
                        _ => {}
                    }
                    keyframe_sent |= due.keyframe;
                    let late = now.saturating_duration_since(due_at);
                    if late > LATE {
                        record.late_frames += 1;
                    }
                    let late_ms = late.as_secs_f64() * 1000.0;
                    if late_ms > record.max_late_ms {
                        record.max_late_ms = round2(late_ms);
                    }
                }
                client.poll_transmit(&mut self.out);
            }
            if !self.out.is_empty() {
                let len = self.out.len() as u64;
                let out = std::mem::take(&mut self.out);
                let written = tokio::select! {
                    result = self.conn.write_all(out) => result,
                    _ = stop.wait() => return Ok(()),
                };
                self.out = written.map_err(|e| Failure::io("publishing", &e))?;
                self.bytes_out += len;
                self.shared.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            if keyframe_sent && !ready_signalled {
                // Players started from now on find a keyframe in the server's GOP cache.
                ready_signalled = true;
                self.shared.publishers_ready.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn read_loop(
    conn: Rc<Conn>,
    client: Rc<RefCell<ClientConnection>>,
    mut reader: ReadBuf,
    wake: Rc<Notify>,
    ended: Rc<RefCell<Option<Failure>>>,
    stop: Rc<LocalStop>,
) {
    reader.shrink();
    loop {
        let failure = tokio::select! {
            read = reader.read(&conn) => match read {
                Ok([]) => Some(Failure::closed("publishing")),
                Ok(input) => {
                    let mut client = client.borrow_mut();
                    match client.handle_input(input) {
                        Err(e) => Some(Failure::new("publishing", format!("protocol error: {e}"))),
                        Ok(()) => {
                            let mut rejected = None;
                            while let Some(event) = client.poll_event() {
                                if let ClientEvent::Status { level, code, .. } = event
                                    && level == "error"
                                {
                                    rejected = Some(Failure::new("publishing", format!("server said {code}")));
                                }
                            }
                            rejected
                        }
                    }
                }
                Err(e) => Some(Failure::io("publishing", &e)),
            },
            _ = stop.wait() => return,
        };
        let done = failure.is_some();
        if let Some(failure) = failure {
            *ended.borrow_mut() = Some(failure);
        }
        wake.notify_one();
        if done {
            return;
        }
    }
}

/// Starts the publishers this worker owns (stream `s` on worker `s % threads`).
pub fn spawn_publishers(worker: &Worker, setup: &Arc<PublishSetup>, count: usize) -> Vec<Rc<RefCell<PublisherRecord>>> {
    let mut records = Vec::new();
    for index in (worker.index..count).step_by(worker.threads) {
        let record = Rc::new(RefCell::new(PublisherRecord::default()));
        records.push(record.clone());
        worker.tasks.spawn(run_publisher(
            setup.clone(),
            index,
            setup.target.stream(index),
            record,
            worker.shared.clone(),
            worker.stop.clone(),
        ));
    }
    records
}

/// Takes the records out of their cells (tasks that outlived the grace keep empty ones).
pub fn collect(records: Vec<Rc<RefCell<PublisherRecord>>>) -> Vec<PublisherRecord> {
    records.into_iter().map(|r| std::mem::take(&mut *r.borrow_mut())).collect()
}

/// The publishers' part of a report.
#[derive(Debug, Serialize)]
pub struct PublishSummary {
    pub media: String,
    pub requested: usize,
    pub publishing: usize,
    pub failed: usize,
    pub failures: Reasons,
    pub ended_early: usize,
    pub ended: Reasons,
    pub audio_frames: u64,
    pub video_frames: u64,
    pub bytes_out: u64,
    pub gbit_per_s: f64,
    pub late_frames: u64,
    pub max_late_ms: f64,
    pub start: Dist,
    pub publishers: Vec<PublisherRecord>,
}

impl PublishSummary {
    pub fn new(plan: &MediaPlan, mut records: Vec<PublisherRecord>, secs: f64) -> PublishSummary {
        records.sort_by_key(|r| r.id);
        let mut failures = Reasons::default();
        let mut ended = Reasons::default();
        let mut start_us = Vec::new();
        for r in &records {
            if let Some(f) = &r.failure {
                failures.add(f.clone());
            }
            if let Some(e) = &r.ended {
                ended.add(e.clone());
            }
            if let Some(ms) = r.start_ms {
                start_us.push((ms * 1000.0) as u64);
            }
        }
        let bytes_out = records.iter().map(|r| r.bytes_out).sum();
        PublishSummary {
            media: plan.describe(),
            requested: records.len(),
            publishing: records.iter().filter(|r| r.start_ms.is_some()).count(),
            failed: records.iter().filter(|r| r.failure.is_some()).count(),
            failures,
            ended_early: records.iter().filter(|r| r.ended.is_some()).count(),
            ended,
            audio_frames: records.iter().map(|r| r.audio_frames).sum(),
            video_frames: records.iter().map(|r| r.video_frames).sum(),
            bytes_out,
            gbit_per_s: gbit_per_s(bytes_out, secs),
            late_frames: records.iter().map(|r| r.late_frames).sum(),
            max_late_ms: records.iter().map(|r| r.max_late_ms).fold(0.0, f64::max),
            start: Dist::of_us(&mut start_us),
            publishers: records,
        }
    }

    pub fn table(&self, title: &str) -> String {
        let mut t = Table::new(title);
        t.row("media", &self.media)
            .row(
                "publishers",
                format!(
                    "{} publishing of {} ({} failed, {} ended early)",
                    self.publishing, self.requested, self.failed, self.ended_early
                ),
            )
            .row("failures", self.failures.show())
            .row("ended early", self.ended.show())
            .row("connect to publish start", self.start.show())
            .row("frames sent", format!("{} video, {} audio", self.video_frames, self.audio_frames))
            .row("bytes sent", format!("{} ({} Gbit/s)", self.bytes_out, self.gbit_per_s))
            .row("late frames (>100 ms)", format!("{} (worst {} ms)", self.late_frames, self.max_late_ms));
        let mut out = t.render();
        if self.publishers.len() <= 20 {
            let mut grid = Grid::new(&["id", "stream", "start_ms", "video", "audio", "MB", "late", "status"]);
            for p in &self.publishers {
                grid.row(vec![
                    p.id.to_string(),
                    p.stream.clone(),
                    p.start_ms.map_or("-".into(), |v| v.to_string()),
                    p.video_frames.to_string(),
                    p.audio_frames.to_string(),
                    format!("{:.1}", p.bytes_out as f64 / 1e6),
                    p.late_frames.to_string(),
                    p.failure.clone().or_else(|| p.ended.clone()).unwrap_or_else(|| "ok".into()),
                ]);
            }
            out.push_str(&grid.render());
        }
        out
    }
}
