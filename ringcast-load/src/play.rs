//! Players and the `play` scenario: per-player bytes, frames, gaps and lag, and the time from
//! TCP connect to the first keyframe.
//!
//! What a player measures does not depend on how it gets the stream: [`PlayerStats::on_media`]
//! takes one FLV-style media message at a time, from the RTMP reader here or from the
//! HTTP-FLV reader in `http_flv.rs`, or the RTSP reader in `rtsp.rs`.
//!
//! Lag and gaps, two ways:
//! - frames made by a ringcast-load publisher carry a probe (publisher id, sequence number,
//!   send time): lag is receive time minus send time (one host, one clock), a gap is a jump
//!   in the sequence. Frames sent before the player started (the GOP burst a server replays)
//!   are counted as `cached_frames` and left out of lag, which would otherwise only measure
//!   their age.
//! - other streams: a gap is a timestamp jump over twice the usual frame interval of its
//!   track; lag is drift, (receive time - media timestamp) minus its smallest value so far.
//!   It is zero while the player keeps up and grows when it falls behind the live edge.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringcast::protocol::flv::{self, MediaKind};
use ringcast::protocol::rtmp::client::{ClientEvent, Goal};
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::{Protocol, Target};
use crate::media::{TYPE_AUDIO, TYPE_DATA, TYPE_VIDEO, find_probe, wall_us};
use crate::rtmp::{self, Conn, Failure, Until};
use crate::runtime::{LocalStop, Shared, Worker};
use crate::stats::{Dist, Grid, Histogram, Reasons, Table, gbit_per_s, round2, us_to_ms};

/// Lag samples of one worker's players, merged into the report.
#[derive(Default, Clone)]
pub struct LagHistograms {
    /// Probe lag (true end-to-end), microseconds.
    pub wall: Histogram,
    /// Drift of streams without probes, microseconds.
    pub drift: Histogram,
}

/// One player's outcome.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PlayerRecord {
    pub id: usize,
    pub stream: String,
    /// TCP connect to `NetStream.Play.Start` (or HTTP response headers).
    pub start_ms: Option<f64>,
    /// TCP connect to the first video keyframe.
    pub first_keyframe_ms: Option<f64>,
    /// TCP connect to the first audio or video frame.
    pub first_media_ms: Option<f64>,
    pub bytes: u64,
    pub video_frames: u64,
    pub keyframes: u64,
    pub audio_frames: u64,
    pub data_messages: u64,
    /// Frames from before the player started (the server's GOP cache).
    pub cached_frames: u64,
    pub gaps: u64,
    /// Frames known lost: exact with probes, estimated from timestamps otherwise.
    pub missing_frames: u64,
    /// Frames older than one already seen.
    pub reordered: u64,
    /// Times a different publisher's frames started arriving (a republish).
    pub publisher_changes: u64,
    pub lag_mean_ms: f64,
    pub lag_max_ms: f64,
    pub lag_last_ms: f64,
    /// Why it never started.
    pub failure: Option<String>,
    /// Why it stopped before the end of the run.
    pub ended: Option<String>,
    #[serde(skip)]
    pub track: Track,
}

/// A player's running state for gap and lag detection.
#[derive(Debug, Default, Clone)]
pub struct Track {
    began: Option<Instant>,
    /// Wall-clock time the player started playing: probes sent before it are cached frames.
    play_wall_us: u64,
    publisher: Option<u32>,
    next_seq: u64,
    /// Per track (audio, video): last timestamp and usual interval.
    last_ts: [Option<u32>; 2],
    interval: [f64; 2],
    min_offset_us: Option<i64>,
    lag_sum_us: u64,
    lag_count: u64,
    lag_max_us: u64,
}

impl PlayerRecord {
    pub fn begin(&mut self, began: Instant) {
        self.track.began = Some(began);
    }

    pub fn started(&mut self, start_us: u64) {
        self.start_ms = Some(us_to_ms(start_us));
        self.track.play_wall_us = wall_us();
    }

    /// One media message arrived at `now` (`wall` microseconds since the epoch).
    pub fn on_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
        wall: u64,
        lag: &mut LagHistograms,
    ) {
        let kind = match type_id {
            TYPE_AUDIO => MediaKind::Audio,
            TYPE_VIDEO => MediaKind::Video,
            TYPE_DATA => {
                self.data_messages += 1;
                return;
            }
            _ => return,
        };
        let Ok(info) = flv::classify(kind, payload) else {
            return;
        };
        if info.sequence_header {
            return;
        }
        match kind {
            MediaKind::Video => {
                self.video_frames += 1;
                if info.keyframe {
                    self.keyframes += 1;
                }
            }
            _ => self.audio_frames += 1,
        }
        if let Some(began) = self.track.began {
            let since = || us_to_ms(now.saturating_duration_since(began).as_micros() as u64);
            if self.first_media_ms.is_none() {
                self.first_media_ms = Some(since());
            }
            if kind == MediaKind::Video && info.keyframe && self.first_keyframe_ms.is_none() {
                self.first_keyframe_ms = Some(since());
            }
        }
        // A player starts at a keyframe: frames a server holds back before the first one (as
        // nginx-rtmp does without a GOP cache) are not gaps.
        let before_first_keyframe = self.keyframes == 0;
        match find_probe(type_id, payload) {
            Some(probe)
                if before_first_keyframe || (kind == MediaKind::Video && self.keyframes == 1 && info.keyframe) =>
            {
                // Resynchronise on this frame: on_probe then finds it in sequence.
                self.track.publisher = Some(probe.publisher);
                self.track.next_seq = probe.seq;
                self.on_probe(probe, wall, lag)
            }
            Some(probe) => self.on_probe(probe, wall, lag),
            None => self.on_timestamp(kind, timestamp, now, lag),
        }
    }

    fn on_probe(&mut self, probe: crate::media::Probe, wall: u64, lag: &mut LagHistograms) {
        let track = &mut self.track;
        if track.publisher != Some(probe.publisher) {
            // A (new) publisher: its sequence starts wherever it is.
            if track.publisher.is_some() {
                self.publisher_changes += 1;
            }
            track.publisher = Some(probe.publisher);
            track.next_seq = probe.seq + 1;
        } else if probe.seq > track.next_seq {
            self.gaps += 1;
            self.missing_frames += probe.seq - track.next_seq;
            track.next_seq = probe.seq + 1;
        } else if probe.seq < track.next_seq {
            self.reordered += 1;
        } else {
            track.next_seq += 1;
        }
        if probe.sent_us < track.play_wall_us {
            self.cached_frames += 1;
            return;
        }
        let us = wall.saturating_sub(probe.sent_us);
        lag.wall.record(us);
        self.record_lag(us);
    }

    fn on_timestamp(&mut self, kind: MediaKind, timestamp: u32, now: Instant, lag: &mut LagHistograms) {
        let track = &mut self.track;
        let i = usize::from(kind == MediaKind::Video);
        if let Some(last) = track.last_ts[i] {
            let delta = timestamp.wrapping_sub(last) as i32;
            if delta < 0 {
                self.reordered += 1;
            } else {
                let delta = f64::from(delta);
                let usual = track.interval[i];
                if usual > 0.0 && delta > 2.0 * usual {
                    self.gaps += 1;
                    self.missing_frames += (delta / usual).round().max(1.0) as u64 - 1;
                } else if usual == 0.0 {
                    track.interval[i] = delta;
                } else {
                    // A slow average: one odd interval must not redefine "usual".
                    track.interval[i] = usual * 0.875 + delta * 0.125;
                }
            }
        }
        if track.last_ts[i].is_none_or(|last| (timestamp.wrapping_sub(last) as i32) > 0) {
            track.last_ts[i] = Some(timestamp);
        }
        let Some(began) = track.began else {
            return;
        };
        let offset = now.saturating_duration_since(began).as_micros() as i64 - i64::from(timestamp) * 1000;
        let min = *track.min_offset_us.get_or_insert(offset);
        let min = min.min(offset);
        track.min_offset_us = Some(min);
        let us = (offset - min) as u64;
        lag.drift.record(us);
        self.record_lag(us);
    }

    fn record_lag(&mut self, us: u64) {
        let track = &mut self.track;
        track.lag_sum_us += us;
        track.lag_count += 1;
        track.lag_max_us = track.lag_max_us.max(us);
        self.lag_last_ms = us_to_ms(us);
    }

    fn finish(&mut self) {
        let track = &self.track;
        if let Some(mean) = track.lag_sum_us.checked_div(track.lag_count) {
            self.lag_mean_ms = us_to_ms(mean);
            self.lag_max_ms = us_to_ms(track.lag_max_us);
        }
    }
}

/// What every player of a run shares.
pub struct PlaySetup {
    pub target: Target,
    pub timeout: Duration,
}

/// Runs one player until the run stops or the connection ends.
pub async fn run_player(
    setup: Arc<PlaySetup>,
    id: usize,
    stream: usize,
    record: Rc<RefCell<PlayerRecord>>,
    lag: Rc<RefCell<LagHistograms>>,
    shared: Arc<Shared>,
    stop: Rc<LocalStop>,
) {
    let name = setup.target.stream(stream);
    {
        let mut r = record.borrow_mut();
        r.id = id;
        r.stream = name;
    }
    let player = Player { setup: &setup, id, stream, record: &record, lag: &lag, shared: &shared, stop: &stop };
    let result = match setup.target.protocol {
        Protocol::Rtmp => play_rtmp(player).await,
        Protocol::HttpFlv | Protocol::WsFlv => crate::http_flv::play(player).await,
        Protocol::Rtsp => crate::rtsp::play(player).await,
    };
    let mut r = record.borrow_mut();
    r.finish();
    match result {
        Err(Outcome::Failed(failure)) => {
            r.failure = Some(failure.to_string());
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        Err(Outcome::Ended(failure)) => {
            if !stop.is_set() {
                r.ended = Some(failure.to_string());
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(()) => {}
    }
    shared.finished.fetch_add(1, Ordering::Relaxed);
}

/// How a player that did not play to the end stopped.
pub enum Outcome {
    /// Before playing started.
    Failed(Failure),
    /// After.
    Ended(Failure),
}

/// One player of a run, as every protocol's player takes it: what it plays, where it
/// records what it got, and when to stop.
#[derive(Clone, Copy)]
pub struct Player<'a> {
    pub setup: &'a PlaySetup,
    pub id: usize,
    /// Which of the run's streams (`Target::stream`).
    pub stream: usize,
    pub record: &'a RefCell<PlayerRecord>,
    pub lag: &'a RefCell<LagHistograms>,
    pub shared: &'a Shared,
    pub stop: &'a LocalStop,
}

impl Player<'_> {
    /// Marks the player begun (its lag and time to first frame count from here) and says when.
    pub fn begin(&self) -> Instant {
        let began = Instant::now();
        self.record.borrow_mut().begin(began);
        began
    }

    /// Opens the player's TCP connection within the step's time limit: `None` when the run
    /// stopped first.
    pub async fn connect(&self) -> Result<Option<Conn>, Outcome> {
        let (limit, target) = (self.setup.timeout, &self.setup.target);
        let connect = tokio::select! {
            conn = tokio::time::timeout(limit, Conn::open(target.addr, target.source_for(self.id))) => conn,
            _ = self.stop.wait() => return Ok(None),
        };
        match connect {
            Ok(conn) => conn.map(Some).map_err(Outcome::Failed),
            Err(_) => Err(Outcome::Failed(Failure::timeout("tcp connect", limit))),
        }
    }
}

async fn play_rtmp(player: Player<'_>) -> Result<(), Outcome> {
    let Player { setup, id, stream, record, lag, shared, stop } = player;
    let began = player.begin();
    // Boxed: the setup's state machine is large and only lives until playing starts.
    let established = tokio::select! {
        result = Box::pin(rtmp::establish(
            &setup.target,
            Goal::Play(setup.target.stream_request(stream)),
            Until::Playing,
            id,
            began,
            setup.timeout,
        )) => result,
        _ = stop.wait() => return Ok(()),
    };
    let (mut session, steps) = established.map_err(Outcome::Failed)?;
    record.borrow_mut().started(steps.started_us);
    shared.established.fetch_add(1, Ordering::Relaxed);
    shared.bytes_in.fetch_add(session.bytes_in, Ordering::Relaxed);
    let mut counted = session.bytes_in;
    let result = loop {
        {
            let now = Instant::now();
            let wall = wall_us();
            let mut r = record.borrow_mut();
            let mut lag = lag.borrow_mut();
            while let Some(event) = session.poll_event() {
                match event {
                    ClientEvent::Audio { timestamp, payload } => {
                        r.on_media(TYPE_AUDIO, timestamp, &payload, now, wall, &mut lag)
                    }
                    ClientEvent::Video { timestamp, payload } => {
                        r.on_media(TYPE_VIDEO, timestamp, &payload, now, wall, &mut lag)
                    }
                    ClientEvent::Data { timestamp, payload } => {
                        r.on_media(TYPE_DATA, timestamp, &payload, now, wall, &mut lag)
                    }
                    _ => {}
                }
            }
            r.bytes = session.bytes_in;
        }
        let read = tokio::select! {
            read = session.read_input("playing") => read,
            _ = stop.wait() => break Ok(()),
        };
        match read {
            Ok(_) => {
                shared.bytes_in.fetch_add(session.bytes_in - counted, Ordering::Relaxed);
                counted = session.bytes_in;
            }
            Err(failure) => break Err(Outcome::Ended(failure)),
        }
    };
    record.borrow_mut().bytes = session.bytes_in;
    result
}

/// The `play` scenario's report.
#[derive(Debug, Serialize)]
pub struct PlaySummary {
    pub requested: usize,
    /// Started by the ramp before the run ended.
    pub launched: usize,
    /// Reached play start.
    pub playing: usize,
    pub failed: usize,
    pub failures: Reasons,
    /// Ended before the run did (closed by the server, reset...).
    pub disconnected: usize,
    pub disconnects: Reasons,
    /// Players that lost frames (gaps) at least once.
    pub with_drops: usize,
    pub without_media: usize,
    pub bytes: u64,
    /// Over the run's duration.
    pub gbit_per_s: f64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub keyframes: u64,
    pub cached_frames: u64,
    pub gaps: u64,
    pub missing_frames: u64,
    pub reordered: u64,
    pub publisher_changes: u64,
    pub start: Dist,
    pub first_keyframe: Dist,
    /// "probe" (true lag against the publisher's send clock) or "drift".
    pub lag_method: &'static str,
    pub lag: Dist,
    pub players: Vec<PlayerRecord>,
}

impl PlaySummary {
    pub fn new(requested: usize, mut records: Vec<PlayerRecord>, lag: &LagHistograms, secs: f64) -> PlaySummary {
        records.sort_by_key(|r| r.id);
        let mut failures = Reasons::default();
        let mut disconnects = Reasons::default();
        let mut start_us = Vec::new();
        let mut keyframe_us = Vec::new();
        for r in &records {
            if let Some(f) = &r.failure {
                failures.add(f.clone());
            }
            if let Some(e) = &r.ended {
                disconnects.add(e.clone());
            }
            if let Some(ms) = r.start_ms {
                start_us.push((ms * 1000.0) as u64);
            }
            if let Some(ms) = r.first_keyframe_ms {
                keyframe_us.push((ms * 1000.0) as u64);
            }
        }
        let (lag_method, lag) = if lag.wall.count() > 0 || lag.drift.count() == 0 {
            ("probe", lag.wall.dist_ms())
        } else {
            ("drift", lag.drift.dist_ms())
        };
        let bytes = records.iter().map(|r| r.bytes).sum();
        let sum = |f: fn(&PlayerRecord) -> u64| records.iter().map(f).sum::<u64>();
        PlaySummary {
            requested,
            launched: records.len(),
            playing: records.iter().filter(|r| r.start_ms.is_some()).count(),
            failed: records.iter().filter(|r| r.failure.is_some()).count(),
            failures,
            disconnected: records.iter().filter(|r| r.ended.is_some()).count(),
            disconnects,
            with_drops: records.iter().filter(|r| r.gaps > 0).count(),
            without_media: records
                .iter()
                .filter(|r| r.start_ms.is_some() && r.video_frames + r.audio_frames == 0)
                .count(),
            bytes,
            gbit_per_s: gbit_per_s(bytes, secs),
            video_frames: sum(|r| r.video_frames),
            audio_frames: sum(|r| r.audio_frames),
            keyframes: sum(|r| r.keyframes),
            cached_frames: sum(|r| r.cached_frames),
            gaps: sum(|r| r.gaps),
            missing_frames: sum(|r| r.missing_frames),
            reordered: sum(|r| r.reordered),
            publisher_changes: sum(|r| r.publisher_changes),
            start: Dist::of_us(&mut start_us),
            first_keyframe: Dist::of_us(&mut keyframe_us),
            lag_method,
            lag,
            players: records,
        }
    }

    pub fn table(&self, secs: f64) -> String {
        let mut t = Table::new("players");
        t.row(
            "players",
            format!(
                "{} playing of {} requested ({} launched, {} failed to start)",
                self.playing, self.requested, self.launched, self.failed
            ),
        )
        .row("start failures", self.failures.show())
        .row("disconnected early", format!("{} ({})", self.disconnected, self.disconnects.show()))
        .row("players with drops", self.with_drops)
        .row("players without media", self.without_media)
        .row("received", format!("{:.1} MB in {:.1} s = {} Gbit/s", self.bytes as f64 / 1e6, secs, self.gbit_per_s))
        .row(
            "frames",
            format!(
                "{} video ({} keyframes), {} audio; {} from the GOP cache",
                self.video_frames, self.keyframes, self.audio_frames, self.cached_frames
            ),
        )
        .row("gaps", format!("{} ({} frames missing, {} out of order)", self.gaps, self.missing_frames, self.reordered))
        .row("publisher changes seen", self.publisher_changes)
        .row("connect to play start", self.start.show())
        .row("connect to first keyframe", self.first_keyframe.show())
        .row(format!("lag ({})", self.lag_method), self.lag.show());
        let mut out = t.render();
        // Every player when there are few; otherwise the ones worth a look.
        let mut shown: Vec<&PlayerRecord> = self.players.iter().collect();
        if shown.len() > 20 {
            shown.sort_by(|a, b| {
                let bad = |r: &PlayerRecord| {
                    (r.failure.is_some() || r.ended.is_some(), r.gaps, (r.lag_max_ms * 100.0) as u64)
                };
                bad(b).cmp(&bad(a))
            });
            shown.truncate(10);
            out.push_str("  worst 10 players (failures, gaps, lag):\n");
        }
        let mut grid = Grid::new(&[
            "id", "stream", "start_ms", "key_ms", "MB", "video", "audio", "gaps", "missing", "lag_avg", "lag_max",
            "status",
        ]);
        for p in shown {
            grid.row(vec![
                p.id.to_string(),
                p.stream.clone(),
                p.start_ms.map_or("-".into(), |v| v.to_string()),
                p.first_keyframe_ms.map_or("-".into(), |v| v.to_string()),
                format!("{:.1}", p.bytes as f64 / 1e6),
                p.video_frames.to_string(),
                p.audio_frames.to_string(),
                p.gaps.to_string(),
                p.missing_frames.to_string(),
                round2(p.lag_mean_ms).to_string(),
                round2(p.lag_max_ms).to_string(),
                p.failure.clone().or_else(|| p.ended.clone()).unwrap_or_else(|| "ok".into()),
            ]);
        }
        out.push_str(&grid.render());
        out
    }
}

/// A worker's players' records, filled in as they are launched and as they play.
pub type Records = Rc<RefCell<Vec<Rc<RefCell<PlayerRecord>>>>>;

/// Spawns this worker's players: player `i` (of `count`) starts at `go + i / ramp` and
/// plays stream `i % streams`.
pub fn spawn_launcher(
    worker: &Worker,
    setup: Arc<PlaySetup>,
    count: usize,
    ramp: f64,
    streams: usize,
) -> (Records, Rc<RefCell<LagHistograms>>) {
    let records: Records = Rc::default();
    let lag: Rc<RefCell<LagHistograms>> = Rc::default();
    let (shared, stop, tasks) = (worker.shared.clone(), worker.stop.clone(), worker.tasks.clone());
    let launched = records.clone();
    let lag_for_players = lag.clone();
    worker.launch_share(count, ramp, move |id, _go| {
        let record = Rc::new(RefCell::new(PlayerRecord::default()));
        launched.borrow_mut().push(record.clone());
        tasks.spawn(run_player(
            setup.clone(),
            id,
            id % streams.max(1),
            record,
            lag_for_players.clone(),
            shared.clone(),
            stop.clone(),
        ));
        std::future::ready(true)
    });
    (records, lag)
}

pub fn collect(records: &RefCell<Vec<Rc<RefCell<PlayerRecord>>>>) -> Vec<PlayerRecord> {
    records
        .borrow()
        .iter()
        .map(|r| {
            let mut r = std::mem::take(&mut *r.borrow_mut());
            r.finish();
            r
        })
        .collect()
}
