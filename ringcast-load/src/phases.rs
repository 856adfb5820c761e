//! The `play` scenario's two phases, measured apart: the join (from the first player's start
//! until every player has started) and a steady window after it, when nobody is joining.
//!
//! A run measured as one block mixes them, and the mix flatters a server with a GOP cache: each
//! joining player gets the cached GOP in one large write, cheap per byte, while a server
//! without one sends a joining player nothing until the next keyframe. Bytes here are what
//! the players read (the clients' own counters); CPU is the `--server-pid` process's.

use std::time::Instant;

use serde::Serialize;

use crate::stats::round3;
use crate::sys;

/// The counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    at: Instant,
    bytes: u64,
    /// `None` without `--server-pid` or if the server is gone.
    server_cpu_s: Option<f64>,
}

impl Mark {
    pub fn now(bytes: u64, server_pid: Option<u32>) -> Mark {
        Mark {
            at: Instant::now(),
            bytes,
            server_cpu_s: server_pid.and_then(|pid| sys::sample(Some(pid))).map(|s| s.cpu_s),
        }
    }
}

/// The join phase: what every player's start cost, GOP bursts included.
#[derive(Debug, Serialize)]
pub struct Join {
    pub secs: f64,
    pub players: usize,
    pub bytes: u64,
    pub server_cpu_s: Option<f64>,
    pub bytes_per_player: u64,
    /// Server CPU milliseconds per joining player (the streaming to players already joined
    /// is in it too: the phase is measured, not modelled).
    pub server_cpu_ms_per_player: Option<f64>,
}

impl Join {
    pub fn between(start: Mark, end: Mark, players: usize) -> Join {
        let cpu = cpu_between(start, end);
        let bytes = bytes_between(start, end);
        let per = players.max(1);
        Join {
            secs: round3(end.at.duration_since(start.at).as_secs_f64()),
            players,
            bytes,
            server_cpu_s: cpu.map(round3),
            bytes_per_player: bytes / per as u64,
            server_cpu_ms_per_player: cpu.map(|c| round3(c * 1000.0 / per as f64)),
        }
    }

    pub fn line(&self) -> String {
        let mut line =
            format!("  join ({} players in {} s): {} bytes per player", self.players, self.secs, self.bytes_per_player);
        if let (Some(cpu), Some(ms)) = (self.server_cpu_s, self.server_cpu_ms_per_player) {
            line.push_str(&format!(", server {cpu} CPU-s ({ms} ms per player)"));
        }
        line.push('\n');
        line
    }
}

/// The steady window: every player joined, nobody joining.
#[derive(Debug, Serialize)]
pub struct Steady {
    pub secs: f64,
    pub bytes: u64,
    pub gbit_per_s: f64,
    pub server_cpu_s: Option<f64>,
    pub gbit_per_server_cpu_s: Option<f64>,
}

impl Steady {
    pub fn between(start: Mark, end: Mark) -> Steady {
        let secs = end.at.duration_since(start.at).as_secs_f64();
        let bytes = bytes_between(start, end);
        let gbit = bytes as f64 * 8.0 / 1e9;
        let cpu = cpu_between(start, end);
        Steady {
            secs: round3(secs),
            bytes,
            gbit_per_s: if secs > 0.0 { round3(gbit / secs) } else { 0.0 },
            server_cpu_s: cpu.map(round3),
            gbit_per_server_cpu_s: cpu.filter(|c| *c > 0.0).map(|c| round3(gbit / c)),
        }
    }

    pub fn line(&self) -> String {
        let mut line = format!("  steady window ({} s, every player joined): {} Gbit/s", self.secs, self.gbit_per_s);
        if let (Some(cpu), Some(g)) = (self.server_cpu_s, self.gbit_per_server_cpu_s) {
            line.push_str(&format!(", server {cpu} CPU-s, {g} Gbit per server CPU-second"));
        }
        line.push('\n');
        line
    }
}

fn bytes_between(start: Mark, end: Mark) -> u64 {
    end.bytes.saturating_sub(start.bytes)
}

fn cpu_between(start: Mark, end: Mark) -> Option<f64> {
    Some((end.server_cpu_s? - start.server_cpu_s?).max(0.0))
}
