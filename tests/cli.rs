//! The command line as users meet it: the real binary, its exit status and its output.
//!
//! Most runs here end before the server starts (`--help`, `--version`, `--check`, or an error),
//! so they open no sockets; go-rtmp's command line is run for real, with a receiver.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::http_receiver::{HttpReceiver, Reply};
use common::rtmp_client::RtmpClient;
use common::{TempFile, TestServer};

fn ringcast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringcast")).args(args).output().expect("run the ringcast binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the run failed with status 2 and exactly one line on stderr, and returns that line.
fn one_error_line(args: &[&str]) -> String {
    let output = ringcast(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: stderr {err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: want one stderr line, got {err:?}");
    assert!(stdout(&output).is_empty(), "{args:?}: nothing on stdout");
    lines[0].to_owned()
}

/// A config file in cargo's per-test scratch directory.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}.toml"));
    std::fs::write(&path, text).expect("write a config file");
    path
}

const FLAGS: &[&str] = &[
    "--config",
    "--check",
    "--rtmp-listen",
    "--http-listen",
    "--rtsp-listen",
    "--api-listen",
    "--shards",
    "--state-dir",
    "--log-level",
    "--log-format",
    "--hook-webhook",
    "--hook-script",
    "--hook-stdio-format",
    "--hook-timeout",
    "--hook-concurrency",
    "--on-connect",
    "--on-publish",
    "--on-play",
    "--on-done",
    "--notify-method",
    "--help",
    "--version",
];

#[test]
fn help_exits_zero_and_mentions_every_flag() {
    let output = ringcast(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for flag in FLAGS {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
    assert!(help.contains("0.0.0.0:1935"), "--help states the defaults");
    assert!(stderr(&output).is_empty());
}

#[test]
fn version_exits_zero() {
    let output = ringcast(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), format!("ringcast {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_flag_value_exits_2_naming_the_flag() {
    let line = one_error_line(&["--rtmp-listen", "abc"]);
    assert!(line.contains("--rtmp-listen"), "{line}");
    assert!(line.contains("'abc'"), "{line}");

    let line = one_error_line(&["--shards", "0"]);
    assert!(line.contains("--shards") && line.contains("at least 1"), "{line}");

    let line = one_error_line(&["--hook-timeout", "forever"]);
    assert!(line.contains("--hook-timeout"), "{line}");
}

#[test]
fn unknown_flag_exits_2_on_one_line() {
    let line = one_error_line(&["--rtmp-listne", ":1935"]);
    assert!(line.contains("--rtmp-listne"), "{line}");
    assert!(line.contains("--rtmp-listen"), "suggests the real flag: {line}");

    let line = one_error_line(&["--shards"]);
    assert!(line.contains("--shards"), "{line}");
}

#[test]
fn config_with_a_bad_key_exits_2_naming_the_key() {
    let path = config_file("bad-key", "shards = 2\nrtmp_listne = \":1935\"\n");
    let line = one_error_line(&["--config", path.to_str().unwrap()]);
    assert!(line.contains(path.to_str().unwrap()), "names the file: {line}");
    assert!(line.contains("'rtmp_listne'"), "names the key: {line}");
    assert!(line.contains(":2:"), "names the line: {line}");
}

#[test]
fn config_with_a_bad_value_exits_2_naming_the_key() {
    let path = config_file("bad-value", "[notify]\non_publish = \"localhost:9000\"\n");
    let line = one_error_line(&["-c", path.to_str().unwrap()]);
    assert!(line.contains("'notify.on_publish'"), "{line}");
    assert!(line.contains("http://"), "says what is expected: {line}");
}

#[test]
fn config_with_a_syntax_error_exits_2_with_the_line() {
    let path = config_file("syntax", "shards = 2\nlog_level = info\n");
    let line = one_error_line(&["-c", path.to_str().unwrap()]);
    assert!(line.contains(":2:") && line.contains("invalid TOML"), "{line}");
}

#[test]
fn missing_config_file_exits_2_naming_the_path() {
    let line = one_error_line(&["--config", "/nonexistent/ringcast.toml"]);
    assert!(line.contains("/nonexistent/ringcast.toml"), "{line}");
}

#[test]
fn shipped_example_config_checks_ok() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/ringcast.example.toml");
    let output = ringcast(&["--config", example, "--check"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("configuration OK"));
}

#[test]
fn flags_override_the_config_file() {
    // The file alone is refused (two listeners on one port); the flag moves one away.
    let path = config_file("override", "http_listen = \":1935\"\n");
    let file = path.to_str().unwrap();
    let line = one_error_line(&["-c", file, "--check"]);
    assert!(line.contains("http_listen") && line.contains("same port"), "{line}");
    let output = ringcast(&["-c", file, "--http-listen", ":8080", "--check"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// README's set-up commands, as a new user runs them: the first one is a bare `cargo run
/// --release`, which only works while the server's package names the binary `cargo run`
/// should pick (the workspace builds two: the server and `ringcast-load`).
#[test]
fn readme_setup_commands_work_as_written() {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{manifest_dir}/README.md")).expect("read README.md");
    let block =
        readme.split("```sh\n").nth(1).and_then(|rest| rest.split("```").next()).expect("README.md has a sh block");
    let commands: Vec<&str> =
        block.lines().map(|line| line.split('#').next().unwrap_or("").trim()).filter(|c| !c.is_empty()).collect();
    assert_eq!(commands, ["cargo run --release", "bash .ci/run"], "README's two set-up commands");
    assert!(std::path::Path::new(manifest_dir).join(".ci/run").is_file(), ".ci/run exists");

    let metadata = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline", "--manifest-path"])
        .arg(format!("{manifest_dir}/Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(metadata.status.success(), "cargo metadata: {}", stderr(&metadata));
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("cargo metadata is JSON");
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == "ringcast"))
        .expect("the workspace has the ringcast package");
    let binaries: Vec<&str> = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
        .filter_map(|t| t["name"].as_str())
        .collect();
    let default_run = package["default_run"].as_str();
    assert!(
        binaries.len() == 1 || default_run == Some("ringcast"),
        "`cargo run` must pick the server: binaries {binaries:?}, default-run {default_run:?}"
    );
    // In the workspace, `cargo run` follows `default-run` only while one default member has it.
    let other_default_runs: Vec<&str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] != "ringcast")
        .filter_map(|p| p["default_run"].as_str())
        .collect();
    assert!(other_default_runs.is_empty(), "only the server names a default-run: {other_default_runs:?}");
}

/// go-rtmp's own "Combining Hooks" command line (docs/hooks.md), flag for flag, with the
/// receiver's URLs and a real script: ringcast starts (clap does not read `-hook-webhook` as
/// `-h`), a publish reaches the `publish_start` webhook, the script runs on
/// `connection_accept` and stdio prints JSON lines. The file only moves the listeners go-rtmp
/// does not have onto ephemeral ports.
#[test]
fn go_rtmp_command_line_runs_unchanged() {
    let receiver = HttpReceiver::start();
    let ran = TempFile::new("go-rtmp-script", "log");
    let script = TempFile::with_contents(
        "go-rtmp-on-connect",
        "sh",
        &format!("#!/bin/sh\necho \"$RTMP_EVENT_TYPE $RTMP_CONN_ID\" >> {}\n", ran.path().display()),
    );
    std::fs::set_permissions(script.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let publish_url = format!("publish_start={}", receiver.url("/on-publish"));
    let auth_url = format!("auth_failed={}", receiver.url("/auth"));
    let script_spec = format!("connection_accept={}", script.path().display());
    let toml =
        "http_listen = \"127.0.0.1:0\"\nrtsp_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nshards = 1\n";
    #[rustfmt::skip]
    let server = TestServer::start_exact(toml, &[
        "-listen", ":0",
        "-hook-stdio-format", "json",
        "-hook-webhook", &publish_url,
        "-hook-webhook", &auth_url,
        "-hook-script", &script_spec,
        "-hook-timeout", "30s",
        "-hook-concurrency", "10",
    ]);
    let rtmp = std::net::SocketAddr::from(([127, 0, 0, 1], server.rtmp_addr().port()));
    let _publisher = RtmpClient::publisher(rtmp, "test");

    let requests = receiver.wait_for(1, Duration::from_secs(10));
    assert_eq!(requests.len(), 1, "one publish_start webhook");
    assert_eq!(requests[0].path, "/on-publish");
    let event: serde_json::Value = serde_json::from_slice(&requests[0].body).expect("a JSON event");
    assert_eq!(event["type"], "publish_start");
    assert_eq!(event["stream_key"], "live/test");
    assert!(server.wait_for_log("{\"id\":\"evt_", Duration::from_secs(5)), "stdio prints JSON events");
    let script_ran =
        common::eventually(Duration::from_secs(10), || ran.read().starts_with("connection_accept ").then_some(()));
    assert!(script_ran.is_some(), "the connection_accept script ran: {:?}", ran.read());
}

/// `ringcast hooks test` sends one signed sample event to a real receiver and says what
/// ringcast would make of the answer; with `--callback` it asks in a dialect and reads the
/// answer that dialect's way, allowing (exit 0) and refusing (exit 1).
#[test]
fn hooks_test_sends_a_sample_and_reads_the_answer() {
    let receiver = HttpReceiver::start();
    let url = receiver.url("/events");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let output = ringcast(&["hooks", "test", &url, "--event", "publish_start", "--secret", secret]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("ringcast would: count it delivered"), "{}", stdout(&output));
    let requests = receiver.wait_for(1, Duration::from_secs(5));
    let event: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!((event["type"].as_str(), event["stream_key"].as_str()), (Some("publish_start"), Some("live/test")));
    assert!(requests[0].header("webhook-signature").is_some_and(|s| s.starts_with("v1,")), "{:?}", requests[0]);

    receiver.reply(Reply::status(200).header("Cache-Control", "max-age=30").body("{\"code\":0}"));
    let output = ringcast(&["hooks", "test", &url, "--callback", "play", "--dialect", "srs"]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("ringcast would: allow, and remember it for 30 s"), "{}", stdout(&output));
    let asked: serde_json::Value =
        serde_json::from_slice(&receiver.wait_for(2, Duration::from_secs(5))[1].body).unwrap();
    assert_eq!(asked["action"], "on_play");

    receiver.reply(Reply::status(200).body("{\"code\":1}"));
    let output = ringcast(&["hooks", "test", &url, "--callback", "play", "--dialect", "srs"]);
    assert_eq!(output.status.code(), Some(1), "{}{}", stdout(&output), stderr(&output));
    assert!(
        stdout(&output).contains("ringcast would: deny (callback answered 200 with code 1)"),
        "{}",
        stdout(&output)
    );

    let output = ringcast(&["hooks", "test", &url]);
    assert_eq!(output.status.code(), Some(2), "neither --event nor --callback");
}
