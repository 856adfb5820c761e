//! The command line as users meet it: the real binary, its exit status and its output.
//!
//! Every run here ends before the server starts (`--help`, `--version`, `--check`, or an error),
//! so these tests open no sockets.

use std::path::PathBuf;
use std::process::{Command, Output};

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
