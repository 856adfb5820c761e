//! `ringcast-load`: a load generator for ringcast, on io_uring like the server.
//!
//! Scenarios (`play`, `publish`, `connect`, `idle`) run on `--threads` worker threads, each a
//! tokio-uring runtime owning its share of the connections (see `runtime.rs`). The main
//! thread only orchestrates: it starts the workers, says when launches begin and when the run
//! ends, samples counters (and the server's CPU and memory with `--server-pid`), then merges
//! the workers' records into one report, printed as tables or, with `--json`, one JSON object.
//!
//! Every connection's failure is counted by reason, never fatal to the run; every wait is
//! bounded by `--timeout` or the scenario's duration; Ctrl-C ends the run early and still
//! prints what was measured.

mod cli;
mod floor;
mod http_flv;
mod idle;
mod media;
mod phases;
mod play;
mod publish;
mod rtmp;
mod rtsp;
mod runtime;
mod stats;
mod storm;
mod sys;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

use crate::cli::{Cli, ConnectArgs, FloorArgs, IdleArgs, PlayArgs, Protocol, PublishArgs, Scenario, Target, Then};
use crate::media::MediaPlan;
use crate::runtime::{POLL, Shared};
use crate::stats::{Table, round2, round3};
use crate::sys::{ProcUsage, Tracker};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let target = match Target::parse(&cli.url) {
        Ok(target) => target.with_source_ips(cli.source_ips),
        Err(message) => {
            eprintln!("ringcast-load: {message}");
            return ExitCode::from(2);
        }
    };
    runtime::install_signal_handlers();
    // Every connection is a descriptor; the soft limit is often far below the hard one.
    let _ = sys::raise_nofile_limit();
    let result = match &cli.scenario {
        Scenario::Play(args) => run_play(&cli, target, args),
        Scenario::Publish(args) => run_publish(&cli, target, args),
        Scenario::Connect(args) => run_connect(&cli, target, args),
        Scenario::Idle(args) => run_idle(&cli, target, args),
        Scenario::Floor(args) => run_floor(&cli, args),
    };
    match result {
        Ok((output, complete)) => {
            print!("{output}");
            // A report with errors (publishers that never started, a worker that died)
            // describes a run that did not happen as asked.
            if complete { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(RunError::Usage(message)) => {
            eprintln!("ringcast-load: {message}");
            ExitCode::from(2)
        }
        Err(RunError::Failed(message)) => {
            eprintln!("ringcast-load: {message}");
            ExitCode::from(1)
        }
    }
}

enum RunError {
    /// Bad arguments: exit status 2.
    Usage(String),
    /// The run could not happen (no io_uring, publishers refused...): exit status 1.
    Failed(String),
}

/// What every report has, around the scenario's own numbers.
#[derive(Serialize)]
struct Report<T: Serialize> {
    scenario: &'static str,
    url: String,
    threads: usize,
    /// CPUs this machine has: the load client and a local server share them.
    cpus: usize,
    pid: u32,
    /// Seconds the measured part of the run lasted.
    secs: f64,
    interrupted: bool,
    #[serde(flatten)]
    result: T,
    /// This process over the measured part.
    client: Option<ProcUsage>,
    /// The `--server-pid` process over the measured part.
    server: Option<ProcUsage>,
    /// Per-second throughput, Mbit/s (received for play, sent for publish).
    timeline_mbit_s: Vec<f64>,
    notes: Vec<String>,
    errors: Vec<String>,
}

/// What the monitor measured over a run: seconds, this process, the `--server-pid` process.
type Measured = (f64, Option<ProcUsage>, Option<ProcUsage>);

impl<T: Serialize> Report<T> {
    /// A run's report, its notes and errors still empty.
    fn new(
        scenario: &'static str,
        target: &Target,
        threads: usize,
        monitor: &Monitor,
        measured: Measured,
        result: T,
    ) -> Report<T> {
        let (secs, client, server) = measured;
        Report {
            scenario,
            url: target.url(),
            threads,
            cpus: cpus(),
            pid: std::process::id(),
            secs,
            interrupted: monitor.interrupted,
            result,
            client,
            server,
            timeline_mbit_s: monitor.timeline.clone(),
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The report as printed, and whether the run had no errors (the exit status).
    fn finish(&self, cli: &Cli, body: String) -> (String, bool) {
        (self.render(cli, body), self.errors.is_empty())
    }

    fn json(&self) -> String {
        match serde_json::to_string_pretty(self) {
            Ok(text) => format!("{text}\n"),
            Err(e) => format!("{{\"error\": \"cannot encode report: {e}\"}}\n"),
        }
    }

    /// The report as the user asked for it; with `--json-out`, also as JSON in that file.
    fn render(&self, cli: &Cli, body: String) -> String {
        if let Some(path) = &cli.json_out
            && let Err(e) = std::fs::write(path, self.json())
        {
            eprintln!("ringcast-load: cannot write {}: {e}", path.display());
        }
        if cli.json {
            return self.json();
        }
        let mut t = Table::new(format!("ringcast-load {}", self.scenario));
        t.row("url", &self.url)
            .row("threads", format!("{} (machine has {} CPUs)", self.threads, self.cpus))
            .row("measured", format!("{:.2} s{}", self.secs, if self.interrupted { " (interrupted)" } else { "" }));
        if let Some(c) = &self.client {
            t.row(
                "load client",
                format!("{} CPU-s ({} cores), RSS {} MiB (pid {})", c.cpu_s, c.cores, c.rss_end_kib / 1024, self.pid),
            );
        }
        if let Some(s) = &self.server {
            t.row(
                "server",
                format!(
                    "{} CPU-s ({} cores), RSS {} -> {} MiB (max {}) (pid {})",
                    s.cpu_s,
                    s.cores,
                    s.rss_start_kib / 1024,
                    s.rss_end_kib / 1024,
                    s.rss_max_kib / 1024,
                    s.pid.unwrap_or(0)
                ),
            );
        }
        let mut out = t.render();
        out.push_str(&body);
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for error in &self.errors {
            out.push_str(&format!("error: {error}\n"));
        }
        out
    }
}

/// The main thread's loop: polls the shared counters, samples processes, handles Ctrl-C.
struct Monitor {
    shared: Arc<Shared>,
    progress: bool,
    server: Option<Tracker>,
    client: Tracker,
    window_start: Instant,
    last_tick: Instant,
    last_bytes: u64,
    /// Which counter the timeline follows.
    outbound: bool,
    timeline: Vec<f64>,
    interrupted: bool,
}

impl Monitor {
    fn new(shared: &Arc<Shared>, cli: &Cli, outbound: bool) -> Monitor {
        let now = Instant::now();
        Monitor {
            shared: shared.clone(),
            progress: cli.progress,
            server: cli.server_pid.map(|pid| Tracker::start(Some(pid))),
            client: Tracker::start(None),
            window_start: now,
            last_tick: now,
            last_bytes: 0,
            outbound,
            timeline: Vec::new(),
            interrupted: false,
        }
    }

    fn bytes(&self) -> u64 {
        if self.outbound {
            self.shared.bytes_out.load(Ordering::Relaxed)
        } else {
            self.shared.bytes_in.load(Ordering::Relaxed)
        }
    }

    /// Starts the measured window now: CPU and throughput count from here.
    fn start_window(&mut self) {
        let now = Instant::now();
        self.window_start = now;
        self.last_tick = now;
        self.last_bytes = self.bytes();
        self.timeline.clear();
        self.server = self.server.map(|t| Tracker::start(t.pid()));
        self.client = Tracker::start(None);
    }

    /// Polls until `done` says so, `until` passes, or Ctrl-C. Returns false on Ctrl-C.
    fn wait(&mut self, until: Option<Instant>, mut done: impl FnMut(&Shared) -> bool) -> bool {
        loop {
            if runtime::interrupted() {
                self.interrupted = true;
                return false;
            }
            if done(&self.shared) || until.is_some_and(|t| Instant::now() >= t) {
                return true;
            }
            std::thread::sleep(POLL);
            if self.last_tick.elapsed() >= Duration::from_secs(1) {
                self.tick();
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_tick).as_secs_f64();
        let bytes = self.bytes();
        let mbit = (bytes - self.last_bytes.min(bytes)) as f64 * 8.0 / secs / 1e6;
        self.timeline.push(round2(mbit));
        self.last_tick = now;
        self.last_bytes = bytes;
        let server = self.server.as_mut().and_then(Tracker::poll);
        self.client.poll();
        if self.progress {
            let s = &self.shared;
            let mut line = format!(
                "[{:6.1}s] established {} failed {} dropped {} finished {} | {} {:.1} Mbit/s",
                now.duration_since(self.window_start).as_secs_f64(),
                s.established.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
                s.finished.load(Ordering::Relaxed),
                if self.outbound { "tx" } else { "rx" },
                mbit
            );
            if let Some(server) = server {
                line.push_str(&format!(" | server RSS {} MiB", server.rss_kib / 1024));
            }
            eprintln!("{line}");
        }
    }

    /// Ends the measured window: seconds, client usage, server usage.
    fn finish(&mut self) -> Measured {
        let secs = self.window_start.elapsed().as_secs_f64();
        let client = self.client.finish();
        let server = self.server.as_mut().and_then(Tracker::finish);
        (round3(secs), client, server)
    }
}

/// Descriptors kept for the runtime, stdio and files besides connections.
const SPARE_DESCRIPTORS: usize = 64;

/// Refuses a run that would open more sockets at once than the open-files limit allows: it
/// would only measure EMFILE.
fn check_descriptors(scenario: &str, sockets: usize, advice: &str) -> Result<(), RunError> {
    match sys::nofile_limit() {
        Some((soft, hard)) if sockets as u64 + SPARE_DESCRIPTORS as u64 > soft => Err(RunError::Usage(format!(
            "{scenario}: {sockets} sockets open at once need more descriptors than the open-files \
             limit allows ({soft}, hard limit {hard}); {advice}, or raise ulimit -n"
        ))),
        _ => Ok(()),
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn shared_cpu_note(cli: &Cli) -> Option<String> {
    let cpus = cpus();
    (cpus <= 4).then(|| {
        format!(
            "this machine has {cpus} CPUs: the load client (this process, {} thread(s)) and a local \
             server share them, so rates are lower bounds; {}",
            cli.threads,
            if cli.server_pid.is_some() {
                "judge the server by its CPU seconds above"
            } else {
                "pass --server-pid to report the server's CPU seconds"
            }
        )
    })
}

/// Waits for the in-process publishers to send their first keyframe. Errors if any failed.
fn wait_publishers(monitor: &mut Monitor, shared: &Shared, count: usize, timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout * 2;
    let ok = monitor.wait(Some(until), |s| {
        s.publishers_ready.load(Ordering::Relaxed) + s.publishers_failed.load(Ordering::Relaxed) >= count
    });
    let ready = shared.publishers_ready.load(Ordering::Relaxed);
    if !ok {
        return Err("interrupted while publishers were starting".into());
    }
    if ready < count {
        return Err(format!(
            "{} of {count} publishers started ({} failed)",
            ready,
            shared.publishers_failed.load(Ordering::Relaxed)
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct PlayResult {
    play: play::PlaySummary,
    /// Average over the seconds after every player had started.
    steady_gbit_per_s: Option<f64>,
    /// Gbit delivered to players per CPU-second the server spent, over the whole run (the
    /// join included).
    server_gbit_per_cpu_s: Option<f64>,
    /// With `--window`: the players' start, measured on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    join: Option<phases::Join>,
    /// With `--window`: every player joined, nobody joining.
    #[serde(skip_serializing_if = "Option::is_none")]
    steady: Option<phases::Steady>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<publish::PublishSummary>,
}

/// Where `play --publish` publishes: the players' own URL for RTMP; for HTTP-FLV and
/// WebSocket-FLV players, `--publish-url`, which must name the same stream.
fn publish_target(target: &Target, args: &PlayArgs) -> Result<Target, RunError> {
    match (target.protocol, &args.publish_url) {
        (Protocol::Rtmp, None) => Ok(target.clone()),
        (Protocol::Rtmp, Some(_)) => Err(RunError::Usage(
            "play --publish-url is for http://, ws:// and rtsp:// players; --url is RTMP already".into(),
        )),
        (_, None) => Err(RunError::Usage(
            "play --publish with an http://, ws:// or rtsp:// --url publishes over RTMP: give --publish-url \
             rtmp://HOST:PORT/app/name"
                .into(),
        )),
        (_, Some(url)) => {
            let publish = Target::parse(url).map_err(RunError::Usage)?.with_source_ips(Some(0));
            if publish.protocol != Protocol::Rtmp {
                return Err(RunError::Usage(format!("--publish-url {url:?}: expected rtmp://")));
            }
            if (&publish.app, &publish.name) != (&target.app, &target.name) {
                return Err(RunError::Usage(format!(
                    "--publish-url {url:?} names {}/{}, the players play {}/{}",
                    publish.app, publish.name, target.app, target.name
                )));
            }
            Ok(publish)
        }
    }
}

fn run_play(cli: &Cli, target: Target, args: &PlayArgs) -> Result<(String, bool), RunError> {
    if args.players == 0 {
        return Err(RunError::Usage("play: -n must be at least 1".into()));
    }
    let streams = args.streams.max(1);
    let publish_target = if args.publish { Some(publish_target(&target, args)?) } else { None };
    let plan = if args.publish { Some(MediaPlan::new(&args.media).map_err(RunError::Usage)?) } else { None };
    let threads = usize::from(cli.threads);
    let shared = Shared::new();
    let setup = Arc::new(play::PlaySetup { target: target.clone(), timeout: cli.timeout });
    let publish_setup = plan
        .zip(publish_target)
        .map(|(plan, target)| Arc::new(publish::PublishSetup { target, timeout: cli.timeout, plan }));
    let (players, ramp) = (args.players, args.ramp);
    let worker_publish = publish_setup.clone();
    let handles = runtime::spawn_workers(threads, &shared, move |worker| {
        let setup = setup.clone();
        let publish_setup = worker_publish.clone();
        async move {
            let publishers = match &publish_setup {
                Some(p) => publish::spawn_publishers(&worker, p, streams),
                None => Vec::new(),
            };
            let (records, lag) = play::spawn_launcher(&worker, setup, players, ramp, streams);
            worker.finish().await;
            let lag = lag.borrow().clone();
            (play::collect(&records), lag, publish::collect(publishers))
        }
    })
    .map_err(RunError::Failed)?;
    let mut monitor = Monitor::new(&shared, cli, false);
    let mut errors = Vec::new();
    let mut started = true;
    if publish_setup.is_some()
        && let Err(e) = wait_publishers(&mut monitor, &shared, streams, cli.timeout)
    {
        errors.push(e);
        started = false;
    }
    let mut secs = 0.0;
    let (mut client, mut server) = (None, None);
    let (mut join, mut steady) = (None, None);
    if started {
        monitor.start_window();
        let go = Instant::now();
        shared.go(go);
        match args.window {
            None => {
                monitor.wait(Some(go + args.duration), |s| s.finished.load(Ordering::Relaxed) >= players);
            }
            Some(window) => {
                (join, steady) = measure_phases(&mut monitor, &shared, cli.server_pid, players, window, args.settle);
            }
        }
        (secs, client, server) = monitor.finish();
    }
    shared.stop();
    let (results, worker_errors) = runtime::join_workers(handles);
    errors.extend(worker_errors);
    let mut records = Vec::new();
    let mut lag = play::LagHistograms::default();
    let mut publishers = Vec::new();
    for (r, l, p) in results {
        records.extend(r);
        lag.wall.merge(&l.wall);
        lag.drift.merge(&l.drift);
        publishers.extend(p);
    }
    let summary = play::PlaySummary::new(players, records, &lag, secs);
    let ramp_secs = if ramp > 0.0 { players as f64 / ramp } else { 0.0 };
    let after_ramp: Vec<f64> = monitor.timeline.iter().skip(ramp_secs.ceil() as usize + 1).copied().collect();
    let steady_gbit_per_s =
        (!after_ramp.is_empty()).then(|| round3(after_ramp.iter().sum::<f64>() / after_ramp.len() as f64 / 1000.0));
    let server_gbit_per_cpu_s =
        server.filter(|s: &ProcUsage| s.cpu_s > 0.0).map(|s| round3(summary.bytes as f64 * 8.0 / 1e9 / s.cpu_s));
    let publish = publish_setup.map(|p| publish::PublishSummary::new(&p.plan, publishers, secs));
    let mut notes: Vec<String> = shared_cpu_note(cli).into_iter().collect();
    if args.window.is_none() && ramp_secs > args.duration.as_secs_f64() {
        notes.push(format!(
            "the ramp ({ramp_secs:.1} s for {players} players at {ramp}/s) is longer than --duration: not every player started"
        ));
    }
    if summary.lag_method == "drift" {
        notes.push(
            "no probes in the stream (not a ringcast-load publisher): lag is drift against media timestamps".into(),
        );
    }
    let mut body = summary.table(secs);
    if let Some(rate) = steady_gbit_per_s {
        body.push_str(&format!("  after the ramp: {rate} Gbit/s\n"));
    }
    if let Some(g) = server_gbit_per_cpu_s {
        body.push_str(&format!("  whole run (join included): {g} Gbit delivered per server CPU-second\n"));
    }
    if let Some(j) = &join {
        body.push_str(&j.line());
    }
    if let Some(s) = &steady {
        body.push_str(&s.line());
    }
    if let Some(p) = &publish {
        body.push_str(&p.table("in-process publishers"));
    }
    let measured = (secs, client, server);
    let report = Report::new(
        "play",
        &target,
        threads,
        &monitor,
        measured,
        PlayResult { play: summary, steady_gbit_per_s, server_gbit_per_cpu_s, join, steady, publish },
    );
    Ok(Report { notes, errors, ..report }.finish(cli, body))
}

/// The join (until every player has started or failed), then `settle`, then the steady
/// window; `None`s when the run was interrupted or the players never all started in time.
fn measure_phases(
    monitor: &mut Monitor,
    shared: &Shared,
    server_pid: Option<u32>,
    players: usize,
    window: Duration,
    settle: Duration,
) -> (Option<phases::Join>, Option<phases::Steady>) {
    let bytes = || shared.bytes_in.load(Ordering::Relaxed);
    let start = phases::Mark::now(bytes(), server_pid);
    let all_started = |s: &Shared| s.established.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed) >= players;
    // A ramp still going after an hour is stuck, not slow: measure what there is.
    if !monitor.wait(Some(Instant::now() + Duration::from_secs(3600)), all_started) {
        return (None, None);
    }
    let joined = phases::Mark::now(bytes(), server_pid);
    let join = phases::Join::between(start, joined, players);
    if !monitor.wait(Some(Instant::now() + settle), |_| false) {
        return (Some(join), None);
    }
    let from = phases::Mark::now(bytes(), server_pid);
    if !monitor.wait(Some(Instant::now() + window), |_| false) {
        return (Some(join), None);
    }
    let to = phases::Mark::now(bytes(), server_pid);
    (Some(join), Some(phases::Steady::between(from, to)))
}

#[derive(Serialize)]
struct PublishResult {
    publish: publish::PublishSummary,
}

fn run_publish(cli: &Cli, target: Target, args: &PublishArgs) -> Result<(String, bool), RunError> {
    if target.protocol != Protocol::Rtmp {
        return Err(RunError::Usage("publish needs an rtmp:// URL".into()));
    }
    if args.publishers == 0 {
        return Err(RunError::Usage("publish: -m must be at least 1".into()));
    }
    let plan = MediaPlan::new(&args.media).map_err(RunError::Usage)?;
    let threads = usize::from(cli.threads);
    let shared = Shared::new();
    let setup = Arc::new(publish::PublishSetup { target: target.clone(), timeout: cli.timeout, plan });
    let count = args.publishers;
    let worker_setup = setup.clone();
    let handles = runtime::spawn_workers(threads, &shared, move |worker| {
        let setup = worker_setup.clone();
        async move {
            let records = publish::spawn_publishers(&worker, &setup, count);
            worker.finish().await;
            publish::collect(records)
        }
    })
    .map_err(RunError::Failed)?;
    let mut monitor = Monitor::new(&shared, cli, true);
    monitor.start_window();
    let go = Instant::now();
    shared.go(go);
    monitor.wait(Some(go + args.duration), |s| s.publishers_failed.load(Ordering::Relaxed) >= count);
    let (secs, client, server) = monitor.finish();
    shared.stop();
    let (results, errors) = runtime::join_workers(handles);
    let summary = publish::PublishSummary::new(&setup.plan, results.into_iter().flatten().collect(), secs);
    let body = summary.table("publishers");
    let measured = (secs, client, server);
    let report = Report::new("publish", &target, threads, &monitor, measured, PublishResult { publish: summary });
    Ok(Report { notes: shared_cpu_note(cli).into_iter().collect(), errors, ..report }.finish(cli, body))
}

#[derive(Serialize)]
struct ConnectResult {
    connect: storm::StormSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<publish::PublishSummary>,
}

fn run_connect(cli: &Cli, target: Target, args: &ConnectArgs) -> Result<(String, bool), RunError> {
    if target.protocol != Protocol::Rtmp {
        return Err(RunError::Usage("connect needs an rtmp:// URL".into()));
    }
    if args.connections == 0 {
        return Err(RunError::Usage("connect: -k must be at least 1".into()));
    }
    if args.publish && args.then != Some(Then::Play) {
        return Err(RunError::Usage("connect: --publish only makes sense with --then play".into()));
    }
    let plan = if args.publish { Some(MediaPlan::new(&args.media).map_err(RunError::Usage)?) } else { None };
    let open_at_once = match args.concurrency {
        0 => args.connections,
        n => n.min(args.connections),
    };
    check_descriptors("connect", open_at_once + 1, "pass --concurrency")?;
    let threads = usize::from(cli.threads);
    let shared = Shared::new();
    let setup = Arc::new(storm::StormSetup {
        target: target.clone(),
        timeout: cli.timeout,
        connections: args.connections,
        rate: args.rate,
        concurrency: args.concurrency,
        then: args.then,
        until_keyframe: args.until_keyframe,
    });
    let publish_setup =
        plan.map(|plan| Arc::new(publish::PublishSetup { target: target.clone(), timeout: cli.timeout, plan }));
    let worker_setup = setup.clone();
    let worker_publish = publish_setup.clone();
    let handles = runtime::spawn_workers(threads, &shared, move |worker| {
        let setup = worker_setup.clone();
        let publish_setup = worker_publish.clone();
        async move {
            let publishers = match &publish_setup {
                Some(p) => publish::spawn_publishers(&worker, p, 1),
                None => Vec::new(),
            };
            let part = storm::spawn(&worker, setup);
            worker.finish().await;
            (storm::take(&part), publish::collect(publishers))
        }
    })
    .map_err(RunError::Failed)?;
    let mut monitor = Monitor::new(&shared, cli, false);
    let mut errors = Vec::new();
    let mut started = true;
    if publish_setup.is_some()
        && let Err(e) = wait_publishers(&mut monitor, &shared, 1, cli.timeout)
    {
        errors.push(e);
        started = false;
    }
    let (mut secs, mut client, mut server) = (0.0, None, None);
    if started {
        monitor.start_window();
        let go = Instant::now();
        shared.go(go);
        // Bounded even if something never finishes: the schedule, then every step's limit.
        let schedule = if args.rate > 0.0 { args.connections as f64 / args.rate } else { 0.0 };
        let cap = go + Duration::from_secs_f64(schedule) + cli.timeout * 5 + Duration::from_secs(5);
        let connections = args.connections;
        monitor.wait(Some(cap), |s| storm::done(s, connections));
        (secs, client, server) = monitor.finish();
    }
    shared.stop();
    let (results, worker_errors) = runtime::join_workers(handles);
    errors.extend(worker_errors);
    let mut parts = Vec::new();
    let mut publishers = Vec::new();
    for (part, p) in results {
        parts.push(part);
        publishers.extend(p);
    }
    let summary = storm::StormSummary::new(&setup, parts);
    let publish = publish_setup.map(|p| publish::PublishSummary::new(&p.plan, publishers, secs));
    let mut body = summary.table();
    if let Some(s) = &server
        && s.cpu_s > 0.0
    {
        body.push_str(&format!(
            "  server: {} connections completed per server CPU-second\n",
            round2(summary.completed as f64 / s.cpu_s)
        ));
    }
    if let Some(p) = &publish {
        body.push_str(&p.table("in-process publisher"));
    }
    let measured = (secs, client, server);
    let report =
        Report::new("connect", &target, threads, &monitor, measured, ConnectResult { connect: summary, publish });
    Ok(Report { notes: shared_cpu_note(cli).into_iter().collect(), errors, ..report }.finish(cli, body))
}

#[derive(Serialize)]
struct IdleResult {
    idle: idle::IdleSummary,
    /// This process's RSS growth per held connection, bytes.
    client_bytes_per_conn: Option<u64>,
    /// The server's RSS growth per held connection, bytes (`--server-pid`).
    server_bytes_per_conn: Option<u64>,
    /// RSS readings taken once every connection was open.
    client_rss_at_hold_kib: Option<u64>,
    server_rss_at_hold_kib: Option<u64>,
}

fn run_idle(cli: &Cli, target: Target, args: &IdleArgs) -> Result<(String, bool), RunError> {
    if target.protocol != Protocol::Rtmp {
        return Err(RunError::Usage("idle needs an rtmp:// URL".into()));
    }
    if args.connections == 0 {
        return Err(RunError::Usage("idle: -c must be at least 1".into()));
    }
    check_descriptors("idle", args.connections, "lower -c")?;
    let threads = usize::from(cli.threads);
    let shared = Shared::new();
    let setup = Arc::new(idle::IdleSetup {
        target: target.clone(),
        timeout: cli.timeout,
        connections: args.connections,
        ramp: args.ramp,
    });
    let worker_setup = setup.clone();
    let handles = runtime::spawn_workers(threads, &shared, move |worker| {
        let setup = worker_setup.clone();
        async move {
            let part = idle::spawn(&worker, setup);
            worker.finish().await;
            idle::take(&part)
        }
    })
    .map_err(RunError::Failed)?;
    // Let the rings come up so the baseline reading includes them.
    std::thread::sleep(Duration::from_millis(200));
    let mut monitor = Monitor::new(&shared, cli, false);
    monitor.start_window();
    let client_base = sys::sample(None).map(|s| s.rss_kib);
    let server_base = cli.server_pid.and_then(|p| sys::sample(Some(p))).map(|s| s.rss_kib);
    let go = Instant::now();
    shared.go(go);
    let connections = args.connections;
    let all_tried =
        |s: &Shared| s.established.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed) >= connections;
    let mut open_secs = 0.0;
    let mut hold_secs = 0.0;
    let mut at_hold = (None, None);
    if monitor.wait(None, all_tried) {
        open_secs = go.elapsed().as_secs_f64();
        // Let the last handshakes' buffers go before reading memory.
        std::thread::sleep(Duration::from_millis(500));
        let held = shared.established.load(Ordering::Relaxed) - shared.dropped.load(Ordering::Relaxed);
        at_hold = (
            sys::sample(None).map(|s| s.rss_kib),
            cli.server_pid.and_then(|p| sys::sample(Some(p))).map(|s| s.rss_kib),
        );
        // Scripts wait for this line before measuring the server.
        eprintln!(
            "ringcast-load: holding {held} connections (pid {}){}",
            std::process::id(),
            if args.hold { "; Ctrl-C to stop" } else { "" }
        );
        let hold_start = Instant::now();
        let until = (!args.hold).then(|| hold_start + args.duration);
        monitor.wait(until, |_| false);
        hold_secs = hold_start.elapsed().as_secs_f64();
    }
    let (secs, client, server) = monitor.finish();
    shared.stop();
    let (results, errors) = runtime::join_workers(handles);
    let summary = idle::IdleSummary::new(&setup, results, open_secs, hold_secs);
    let per_conn = |base: Option<u64>, now: Option<u64>| match (base, now) {
        (Some(base), Some(now)) if summary.connected > 0 => {
            Some(now.saturating_sub(base) * 1024 / summary.connected as u64)
        }
        _ => None,
    };
    let result = IdleResult {
        client_bytes_per_conn: per_conn(client_base, at_hold.0),
        server_bytes_per_conn: per_conn(server_base, at_hold.1),
        client_rss_at_hold_kib: at_hold.0,
        server_rss_at_hold_kib: at_hold.1,
        idle: summary,
    };
    let mut body = result.idle.table();
    if let Some(b) = result.client_bytes_per_conn {
        body.push_str(&format!("  load client memory: {b} bytes per connection\n"));
    }
    if let Some(b) = result.server_bytes_per_conn {
        body.push_str(&format!("  server memory: {b} bytes per connection\n"));
    }
    let measured = (secs, client, server);
    let report = Report::new("idle", &target, threads, &monitor, measured, result);
    Ok(Report { notes: shared_cpu_note(cli).into_iter().collect(), errors, ..report }.finish(cli, body))
}

#[derive(Serialize)]
struct FloorReport {
    scenario: &'static str,
    threads: usize,
    cpus: usize,
    floor: floor::FloorSummary,
    /// This whole process (readers included) over the run.
    client: Option<ProcUsage>,
    errors: Vec<String>,
}

fn run_floor(cli: &Cli, args: &FloorArgs) -> Result<(String, bool), RunError> {
    if args.connections == 0 {
        return Err(RunError::Usage("floor: -n must be at least 1".into()));
    }
    // Both ends of every socket are in this process.
    check_descriptors("floor", args.connections * 2 + 1, "lower -n")?;
    let write_bytes = args.write_bytes as usize;
    let writes_per_second = args
        .writes_per_second
        .unwrap_or(args.connections as f64 * f64::from(args.kbit) * 1000.0 / 8.0 / write_bytes as f64);
    if writes_per_second <= 0.0 {
        return Err(RunError::Usage("floor: --writes-per-second must be above 0".into()));
    }
    let setup = floor::FloorSetup {
        connections: args.connections,
        write_bytes,
        iovecs: usize::from(args.iovecs),
        writes_per_second,
        settle: args.settle,
        window: args.window,
        send_buffer: args.send_buffer,
        timeout: cli.timeout,
        via: args.via,
    };
    let threads = usize::from(cli.threads);
    let mut client = Tracker::start(None);
    let (summary, errors) = floor::run(setup, threads).map_err(RunError::Failed)?;
    let report =
        FloorReport { scenario: "floor", threads, cpus: cpus(), floor: summary, client: client.finish(), errors };
    let json = match serde_json::to_string_pretty(&report) {
        Ok(text) => format!("{text}\n"),
        Err(e) => format!("{{\"error\": \"cannot encode report: {e}\"}}\n"),
    };
    if let Some(path) = &cli.json_out
        && let Err(e) = std::fs::write(path, &json)
    {
        eprintln!("ringcast-load: cannot write {}: {e}", path.display());
    }
    let mut out = if cli.json { json } else { report.floor.table() };
    if !cli.json {
        for error in &report.errors {
            out.push_str(&format!("error: {error}\n"));
        }
    }
    Ok((out, report.errors.is_empty()))
}
