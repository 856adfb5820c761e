//! The load generator's command line, run as a process: a mistake in the arguments fails in one
//! line with status 2 before any socket exists, and players that cannot connect are counted as
//! failures with their cause, not lost.
//!
//! These tests also make `cargo test` at the root build the `ringcast-load` binary, which the
//! server's own end-to-end tests (tests/shutdown.rs) drive as their player fleet: cargo builds
//! a package's binaries only when an integration test of that package is selected.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringcast-load")).args(args).output().expect("run ringcast-load")
}

#[test]
fn a_url_of_an_unknown_scheme_fails_in_one_line_with_status_2() {
    let output = run(&["--url", "gopher://127.0.0.1/live/x", "play", "-n", "1"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("ringcast-load: "), "{stderr}");
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let output = run(&["play", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn players_of_a_port_nobody_listens_on_are_reported_as_refused() {
    // A port that was free a moment ago: bound, read, released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("rtmp://127.0.0.1:{port}/live/none");
    let started = Instant::now();
    let output = run(&["--url", &url, "--timeout", "2s", "--json", "play", "-n", "3", "--duration", "1s"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let play = &report["play"];
    assert_eq!(play["requested"], 3, "{report}");
    assert_eq!(play["playing"], 0, "{report}");
    assert_eq!(play["failed"], 3, "{report}");
    assert_eq!(play["failures"]["tcp connect: connection refused"], 3, "{report}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}
