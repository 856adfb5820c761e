//! Unit tests of the configuration layer: defaults, every validation, precedence, messages, and
//! the shipped example file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{NOTIFY_KEYS, ROOT_KEYS, SCRIPT_KEYS, STDIO_KEYS};
use super::webhook::WEBHOOK_KEYS;
use super::*;

const EXAMPLE: &str = include_str!("../../ringcast.example.toml");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn toml(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

fn toml_err(text: &str) -> String {
    let message = toml(text).expect_err(text).to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

fn args(list: &[&str]) -> Result<Loaded, ConfigError> {
    Config::from_args(std::iter::once("ringcast").chain(list.iter().copied()))
}

fn run(list: &[&str]) -> Config {
    match args(list) {
        Ok(Loaded::Run(config)) => config,
        other => panic!("{list:?}: {other:?}"),
    }
}

fn args_err(list: &[&str]) -> String {
    let message = args(list).expect_err(&list.join(" ")).to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A config file that is removed when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ringcast-config-test-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---- defaults -------------------------------------------------------------------------------

#[test]
fn defaults_are_those_of_the_issue() {
    let c = Config::default();
    assert_eq!(c.rtmp_listen, addr("0.0.0.0:1935"));
    assert_eq!(c.http_listen, addr("0.0.0.0:8080"));
    assert_eq!(c.rtsp_listen, addr("0.0.0.0:8554"));
    assert_eq!((c.rtsp_udp_ports, c.rtsp_auth), ((30000, 39999), crate::config::RtspAuth::None));
    assert_eq!(c.rtsp_session_timeout, Duration::from_secs(60));
    assert_eq!(c.api_listen, addr("127.0.0.1:8081"));
    assert_eq!(c.api_token, None);
    assert_eq!(c.api_max_webhooks, 100);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(c.shards, cpus.min(1024));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.chunk_size, 4096);
    assert_eq!(c.player_queue, 1024);
    assert_eq!(c.player_max_drops, 3);
    assert!(c.gop_cache);
    assert_eq!(c.max_connections, 100_000);
    assert_eq!(c.merge_write_ms, 100);
    assert_eq!(c.merge_write(), Some(Duration::from_millis(100)));
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.send_timeout, Duration::from_secs(30));
    assert_eq!(c.max_pending_output, 1 << 20);
    assert_eq!(c.partial_message_budget, 256 << 20);
    assert_eq!(c.partial_message_timeout, Duration::from_secs(10));
    assert_eq!(c.player_queue_bytes, 32 << 20);
    assert_eq!(c.gop_cache_bytes, 32 << 20);
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/ringcast"));
    assert_eq!(c.hook_timeout, Duration::from_secs(30));
    assert_eq!(c.hook_concurrency, 10);
    assert_eq!(c.hook_queue, 100_000);
    assert_eq!(c.hook_queue_bytes, 64 << 20);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.rotation_grace, Duration::from_secs(86_400));
    let n = &c.notify;
    assert_eq!(n.method, NotifyMethod::Post);
    assert!(!n.is_enabled());
    assert_eq!(n.update_interval, Duration::from_secs(30));
    assert!(!n.update_strict);
    assert_eq!(n.timeout, Duration::from_secs(5));
    assert_eq!(n.on_error, OnError::Deny);
    assert_eq!(n.secret, None);
    assert_eq!(n.signature, Signature::Standard);
    assert!(c.webhooks.is_empty() && c.scripts.is_empty());
    assert_eq!(c.stdio, None);
    c.validate().unwrap();
}

#[test]
fn no_arguments_runs_on_defaults() {
    assert_eq!(run(&[]), Config::default());
}

#[test]
fn empty_file_is_defaults() {
    assert_eq!(toml("").unwrap(), Config::default());
    assert_eq!(toml("# only a comment\n").unwrap(), Config::default());
}

// ---- help, version, check ------------------------------------------------------------------

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
fn help_exits_zero_and_documents_every_flag_and_its_default() {
    for flag in ["--help", "-h"] {
        let Ok(Loaded::Exit { message, code }) = args(&[flag]) else {
            panic!("{flag} must exit");
        };
        assert_eq!(code, 0);
        for flag in FLAGS {
            assert!(message.contains(flag), "help lacks {flag}");
        }
        // The defaults the help text states by hand must be the real ones.
        let c = Config::default();
        for default in [
            c.rtmp_listen.to_string(),
            c.http_listen.to_string(),
            c.rtsp_listen.to_string(),
            c.api_listen.to_string(),
            format!("[default: {}]", c.log_level),
            format!("[default: {}]", c.log_format),
            format!("[default: {}]", format_duration(c.hook_timeout)),
            format!("[default: {}]", c.hook_concurrency),
            format!("[default: {}]", c.notify.method),
        ] {
            assert!(message.contains(&default), "help lacks {default}");
        }
        assert!(!message.contains('\x1b'), "help must be plain text");
    }
}

#[test]
fn version_exits_zero() {
    let Ok(Loaded::Exit { message, code }) = args(&["--version"]) else {
        panic!("--version must exit");
    };
    assert_eq!(code, 0);
    assert_eq!(message, format!("ringcast {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_validates_then_exits_zero() {
    let Ok(Loaded::Exit { message, code }) = args(&["--check", "--shards", "2"]) else {
        panic!("--check must exit");
    };
    assert_eq!((message.as_str(), code), ("ringcast: configuration OK\n", 0));
    assert!(args_err(&["--check", "--shards", "0"]).contains("--shards"));
}

// ---- flags ----------------------------------------------------------------------------------

#[test]
fn flags_set_their_keys() {
    let c = run(&[
        "--rtmp-listen=:1936",
        "--http-listen",
        "127.0.0.1:8090",
        "--rtsp-listen",
        "[::1]:8555",
        "--api-listen",
        "localhost:9091",
        "--shards",
        "3",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "--hook-stdio-format",
        "env",
        "--hook-timeout",
        "1m30s",
        "--hook-concurrency",
        "64",
        "--on-connect",
        "http://a/connect",
        "--on-publish",
        "http://a/publish",
        "--on-play",
        "http://a/play",
        "--on-done",
        "http://a/done",
        "--notify-method",
        "get",
    ]);
    assert_eq!(c.rtmp_listen, addr("0.0.0.0:1936"));
    assert_eq!(c.http_listen, addr("127.0.0.1:8090"));
    assert_eq!(c.rtsp_listen, addr("[::1]:8555"));
    assert_eq!(c.api_listen, addr("127.0.0.1:9091"));
    assert_eq!(c.shards, 3);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.stdio, Some(StdioFormat::Env));
    assert_eq!(c.hook_timeout, Duration::from_secs(90));
    assert_eq!(c.hook_concurrency, 64);
    assert_eq!(c.notify.on_connect.as_deref(), Some("http://a/connect"));
    assert_eq!(c.notify.on_publish.as_deref(), Some("http://a/publish"));
    assert_eq!(c.notify.on_play.as_deref(), Some("http://a/play"));
    assert_eq!(c.notify.on_done.as_deref(), Some("http://a/done"));
    assert_eq!(c.notify.method, NotifyMethod::Get);
}

#[test]
fn hook_flags_repeat() {
    let c = run(&[
        "--hook-webhook",
        "publish_start=https://api.example.com/on-publish?a=b",
        "--hook-webhook",
        "*=http://all.example.com/",
        "--hook-script",
        "connection_accept=/opt/scripts/on-connect.sh",
        "--hook-script",
        "*=./log.sh",
    ]);
    assert_eq!(
        c.webhooks,
        vec![
            WebhookConfig::new(
                "https://api.example.com/on-publish?a=b".into(),
                EventFilter::Only(vec![EventType::PublishStart])
            ),
            WebhookConfig::new("http://all.example.com/".into(), EventFilter::All),
        ]
    );
    assert_eq!(c.webhooks[0].retries, 5);
    assert_eq!(c.webhooks[0].format, WebhookFormat::Envelope);
    assert_eq!(
        c.scripts,
        vec![
            ScriptConfig {
                event: EventFilter::Only(vec![EventType::ConnectionAccept]),
                path: "/opt/scripts/on-connect.sh".into()
            },
            ScriptConfig { event: EventFilter::All, path: "./log.sh".into() },
        ]
    );
}

#[test]
fn bad_flag_values_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--rtmp-listen", "abc"], "flag --rtmp-listen: invalid socket address 'abc' (expected host:port or :port)"),
        (&["--http-listen", "1.2.3.4:99999"], "flag --http-listen: invalid socket address"),
        (&["--rtsp-listen", "example.com:554"], "flag --rtsp-listen: invalid socket address"),
        (&["--api-listen", ""], "flag --api-listen: invalid socket address"),
        (&["--shards", "0"], "flag --shards: must be at least 1, got 0"),
        (&["--shards", "1025"], "flag --shards: must be at most 1024, got 1025"),
        (&["--shards", "two"], "flag --shards: expected a whole number, got 'two'"),
        (&["--shards=-1"], "flag --shards: must be at least 1, got -1"),
        (
            &["--log-level", "verbose"],
            "flag --log-level: invalid value 'verbose' (expected one of: error, warn, info, debug, trace)",
        ),
        (&["--log-format", "xml"], "flag --log-format: invalid value 'xml'"),
        (&["--hook-webhook", "publish_start"], "flag --hook-webhook: expected EVENT=URL"),
        (
            &["--hook-webhook", "publish_strat=http://a/"],
            "flag --hook-webhook: unknown event 'publish_strat' (did you mean 'publish_start'?)",
        ),
        (&["--hook-webhook", "publish_start=ftp://a/"], "flag --hook-webhook: invalid URL 'ftp://a/'"),
        (&["--hook-script", "publish_start"], "flag --hook-script: expected EVENT=PATH"),
        (&["--hook-script", "publish_start="], "flag --hook-script: the path is empty"),
        (&["--hook-script", "nope=/x"], "flag --hook-script: unknown event 'nope'"),
        (&["--hook-stdio-format", "yaml"], "flag --hook-stdio-format: invalid value 'yaml'"),
        (&["--hook-timeout", "30"], ""),
        (&["--hook-timeout", "0s"], "flag --hook-timeout: must be at least 1ms, got 0s"),
        (&["--hook-timeout", "soon"], "flag --hook-timeout: invalid duration 'soon'"),
        (&["--hook-concurrency", "0"], "flag --hook-concurrency: must be at least 1, got 0"),
        (&["--on-connect", "localhost:9000"], "flag --on-connect: invalid URL"),
        (&["--on-publish", "http://"], "flag --on-publish: invalid URL 'http://' (no host)"),
        (&["--on-play", "x"], "flag --on-play: invalid URL"),
        (&["--on-done", "x"], "flag --on-done: invalid URL"),
        (&["--notify-method", "put"], "flag --notify-method: invalid value 'put'"),
    ];
    for (list, expected) in cases {
        if expected.is_empty() {
            // A valid value in the middle of the table, to show the table tests the right thing.
            run(list);
            continue;
        }
        let message = args_err(list);
        assert!(message.starts_with(expected), "{list:?}: {message}");
    }
}

#[test]
fn usage_errors_are_one_line() {
    assert_eq!(
        args_err(&["--rtmp-listne", ":1935"]),
        "unexpected argument '--rtmp-listne' found (did you mean '--rtmp-listen'?); see --help"
    );
    assert_eq!(args_err(&["--shards"]), "a value is required for '--shards <N>' but none was supplied; see --help");
    assert_eq!(args_err(&["serve"]), "unexpected argument 'serve' found; see --help");
    let twice = args_err(&["--shards", "1", "--shards", "2"]);
    assert!(twice.contains("--shards"), "{twice}");
}

// ---- precedence -----------------------------------------------------------------------------

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let file = TempFile::new(
        "precedence",
        r#"
rtmp_listen = ":2935"
http_listen = ":9080"
shards = 2
log_level = "warn"
hook_timeout = "10s"

[notify]
url = "http://file/hooks"
on_play = "http://file/play"
method = "get"

[[webhook]]
url = "http://file/webhook"

[[script]]
event = "*"
path = "/file.sh"

[stdio]
format = "env"
"#,
    );
    let c = run(&[
        "--config",
        file.path(),
        "--rtmp-listen",
        ":3935",
        "--log-level",
        "error",
        "--on-publish",
        "http://flag/publish",
        "--notify-method",
        "post",
        "--hook-webhook",
        "*=http://flag/webhook",
        "--hook-script",
        "play_start=/flag.sh",
        "--hook-stdio-format",
        "json",
    ]);
    // Flag over file.
    assert_eq!(c.rtmp_listen, addr("0.0.0.0:3935"));
    assert_eq!(c.log_level, LogLevel::Error);
    assert_eq!(c.notify.on_publish.as_deref(), Some("http://flag/publish"));
    assert_eq!(c.notify.method, NotifyMethod::Post);
    assert_eq!(c.stdio, Some(StdioFormat::Json));
    // File over default.
    assert_eq!(c.http_listen, addr("0.0.0.0:9080"));
    assert_eq!(c.shards, 2);
    assert_eq!(c.hook_timeout, Duration::from_secs(10));
    assert_eq!(c.notify.on_play.as_deref(), Some("http://file/play"));
    assert_eq!(c.notify.on_connect.as_deref(), Some("http://file/hooks"));
    // Default where neither speaks.
    assert_eq!(c.rtsp_listen, Config::default().rtsp_listen);
    assert_eq!(c.chunk_size, 4096);
    // Lists: the file's first, then the flags'.
    let urls: Vec<&str> = c.webhooks.iter().map(|w| w.url.as_str()).collect();
    assert_eq!(urls, ["http://file/webhook", "http://flag/webhook"]);
    let paths: Vec<&Path> = c.scripts.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(paths, [Path::new("/file.sh"), Path::new("/flag.sh")]);

    // The file alone gives the file's values.
    let from_file = Config::from_file(&file.0).unwrap();
    assert_eq!(from_file.rtmp_listen, addr("0.0.0.0:2935"));
    assert_eq!(from_file.log_level, LogLevel::Warn);
}

#[test]
fn missing_file_names_the_path() {
    let message = args_err(&["--config", "/nonexistent/ringcast.toml"]);
    assert!(message.starts_with("config /nonexistent/ringcast.toml: cannot read: "), "{message}");
}

#[test]
fn errors_in_a_file_name_it_and_the_line() {
    let file = TempFile::new("bad-key", "# comment\n\nrtmp_listne = \":1935\"\n");
    assert_eq!(
        args_err(&["-c", file.path()]),
        format!("config {}:3: unknown key 'rtmp_listne' (did you mean 'rtmp_listen'?)", file.path())
    );
}

// ---- the file: every key --------------------------------------------------------------------

#[test]
fn every_root_key_is_read() {
    let c = toml(
        r#"
rtmp_listen = "10.0.0.1:1935"
http_listen = "*:80"
rtsp_listen = "554"
api_listen = "[::1]:8081"
api_token = "s3cr3t-token"
shards = 16
log_level = "trace"
log_format = "json"
chunk_size = 60000
player_queue = 16
player_max_drops = 1
gop_cache = false
max_connections = 1_000
merge_write_ms = 80
handshake_timeout = "500ms"
idle_timeout = 5
state_dir = "state"
hook_timeout = "2m"
hook_concurrency = 1024
hook_queue = 1
hook_queue_bytes = 65536
shutdown_timeout = "3s"
rotation_grace = "0s"
api_max_webhooks = 0
"#,
    )
    .unwrap();
    assert_eq!(c.rtmp_listen, addr("10.0.0.1:1935"));
    assert_eq!(c.http_listen, addr("0.0.0.0:80"));
    assert_eq!(c.rtsp_listen, addr("0.0.0.0:554"));
    assert_eq!(c.api_listen, addr("[::1]:8081"));
    assert_eq!(c.api_token.as_ref().map(ApiToken::expose), Some("s3cr3t-token"));
    assert_eq!(c.api_max_webhooks, 0);
    assert_eq!(c.shards, 16);
    assert_eq!(c.log_level, LogLevel::Trace);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.chunk_size, 60_000);
    assert_eq!(c.player_queue, 16);
    assert_eq!(c.player_max_drops, 1);
    assert!(!c.gop_cache);
    assert_eq!(c.max_connections, 1_000);
    assert_eq!(c.merge_write_ms, 80);
    assert_eq!(c.merge_write(), Some(Duration::from_millis(80)));
    assert_eq!(c.handshake_timeout, Duration::from_millis(500));
    assert_eq!(c.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.state_dir, PathBuf::from("state"));
    assert_eq!(c.hook_timeout, Duration::from_secs(120));
    assert_eq!(c.hook_concurrency, 1024);
    assert_eq!(c.hook_queue, 1);
    assert_eq!(c.hook_queue_bytes, 65_536);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(c.rotation_grace, Duration::ZERO);
}

#[test]
fn bad_root_values_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("rtmp_listen = \"abc\"", "key 'rtmp_listen': invalid socket address 'abc' (expected host:port or :port)"),
        ("http_listen = 8080", "key 'http_listen': expected a string, got an integer"),
        ("rtsp_listen = \":70000\"", "key 'rtsp_listen': invalid socket address"),
        ("api_listen = \"host:1\"", "key 'api_listen': invalid socket address"),
        ("api_token = \"\"", "key 'api_token': must not be empty"),
        ("api_token = \"a b\"", "key 'api_token': must be visible ASCII"),
        ("api_max_webhooks = 10001", "key 'api_max_webhooks': must be at most 10000, got 10001"),
        ("api_max_webhooks = -1", "key 'api_max_webhooks': must be at least 0, got -1"),
        ("shards = 0", "key 'shards': must be at least 1, got 0"),
        ("shards = 1025", "key 'shards': must be at most 1024, got 1025"),
        ("shards = -1", "key 'shards': must be at least 1, got -1"),
        ("shards = \"4\"", "key 'shards': expected an integer, got a string"),
        ("shards = 4.0", "key 'shards': expected an integer, got a float"),
        (
            "log_level = \"INFO\"",
            "key 'log_level': invalid value 'INFO' (expected one of: error, warn, info, debug, trace)",
        ),
        ("log_format = \"xml\"", "key 'log_format': invalid value 'xml' (expected one of: text, json)"),
        ("chunk_size = 127", "key 'chunk_size': must be at least 128, got 127"),
        ("chunk_size = 65537", "key 'chunk_size': must be at most 65536, got 65537"),
        ("player_queue = 15", "key 'player_queue': must be at least 16, got 15"),
        ("player_queue = 1048577", "key 'player_queue': must be at most 1048576, got 1048577"),
        ("player_max_drops = 0", "key 'player_max_drops': must be at least 1, got 0"),
        ("gop_cache = 1", "key 'gop_cache': expected true or false, got an integer"),
        ("max_connections = 0", "key 'max_connections': must be at least 1, got 0"),
        ("merge_write_ms = 1001", "key 'merge_write_ms': must be at most 1000, got 1001"),
        ("send_timeout = \"0s\"", "key 'send_timeout': must be at least 1ms, got 0s"),
        ("max_pending_output = 4095", "key 'max_pending_output': must be at least 4096, got 4095"),
        ("partial_message_budget = 1000", "key 'partial_message_budget': must be at least 1048576, got 1000"),
        ("partial_message_timeout = \"x\"", "key 'partial_message_timeout': invalid duration 'x'"),
        ("rtsp_session_timeout = \"0s\"", "key 'rtsp_session_timeout': must be at least 1ms, got 0s"),
        ("rtsp_udp_ports = \"30001-30010\"", "key 'rtsp_udp_ports': '30001-30010': the first port must be even"),
        ("rtsp_udp_ports = \"30000\"", "key 'rtsp_udp_ports': expected \"first-last\" UDP ports"),
        ("rtsp_udp_ports = \"30000-30000\"", "key 'rtsp_udp_ports': '30000-30000': the first port must be even"),
        ("rtsp_auth = \"always\"", "key 'rtsp_auth':"),
        ("max_rtmp_message_bytes = 4095", "key 'max_rtmp_message_bytes': must be at least 4096, got 4095"),
        ("max_rtmp_message_bytes = 16777216", "key 'max_rtmp_message_bytes': must be at most 16777215, got 16777216"),
        ("max_rtmp_chunk_streams = 1", "key 'max_rtmp_chunk_streams': must be at least 2, got 1"),
        ("max_http_request_head_bytes = 1023", "key 'max_http_request_head_bytes': must be at least 1024, got 1023"),
        (
            "max_rtsp_request_head_bytes = 1048577",
            "key 'max_rtsp_request_head_bytes': must be at most 1048576, got 1048577",
        ),
        ("max_rtsp_body_bytes = 100", "key 'max_rtsp_body_bytes': must be at least 1024, got 100"),
        ("player_queue_bytes = 1", "key 'player_queue_bytes': must be at least 65536, got 1"),
        ("gop_cache_bytes = 1", "key 'gop_cache_bytes': must be at least 65536, got 1"),
        ("merge_write_ms = \"10ms\"", "key 'merge_write_ms': expected an integer, got a string"),
        ("handshake_timeout = \"0s\"", "key 'handshake_timeout': must be at least 1ms, got 0s"),
        ("handshake_timeout = 0", "key 'handshake_timeout': must be at least 1ms, got 0s"),
        ("handshake_timeout = \"ten\"", "key 'handshake_timeout': invalid duration 'ten'"),
        ("idle_timeout = -5", "key 'idle_timeout': must not be negative, got -5"),
        ("idle_timeout = 1.5", "key 'idle_timeout': expected a duration such as \"30s\""),
        ("idle_timeout = \"400d\"", "key 'idle_timeout': duration '400d' is too long (at most 365d)"),
        ("state_dir = \"\"", "key 'state_dir': must not be empty"),
        ("state_dir = false", "key 'state_dir': expected a string, got a boolean"),
        ("hook_timeout = \"0ms\"", "key 'hook_timeout': must be at least 1ms, got 0s"),
        ("hook_concurrency = 1025", "key 'hook_concurrency': must be at most 1024, got 1025"),
        ("hook_queue = 0", "key 'hook_queue': must be at least 1, got 0"),
        ("hook_queue_bytes = 1000", "key 'hook_queue_bytes': must be at least 65536, got 1000"),
        ("shutdown_timeout = \"0s\"", "key 'shutdown_timeout': must be at least 1ms, got 0s"),
        ("rotation_grace = \"1y\"", "key 'rotation_grace': invalid duration '1y'"),
        ("notify = 1", "key 'notify': expected a table, got an integer"),
        ("webhook = \"x\"", "key 'webhook': expected an array, got a string"),
        ("stdio = \"json\"", "key 'stdio': expected a table, got a string"),
        (
            "[webhook]\nurl = \"http://a/\"",
            "key 'webhook': expected an array of tables (write [[webhook]], with double brackets), got a table",
        ),
        ("script = [1]", "key 'script[0]': expected a table, got an integer"),
    ];
    for (text, expected) in cases {
        let message = toml_err(text);
        let expected = format!("config test.toml:1: {expected}");
        assert!(message.starts_with(&expected), "{text}\n  got: {message}\n want: {expected}");
    }
}

#[test]
fn unknown_keys_are_refused_with_a_hint() {
    let cases: &[(&str, &str)] = &[
        ("rtmp_listne = \":1\"", "unknown key 'rtmp_listne' (did you mean 'rtmp_listen'?)"),
        ("chunksize = 1", "unknown key 'chunksize' (did you mean 'chunk_size'?)"),
        ("handshake = \"1s\"", "unknown key 'handshake' (did you mean 'handshake_timeout'?)"),
        ("frobnicate = 1", "unknown key 'frobnicate'"),
        ("on_publish = \"http://a/\"", "unknown key 'on_publish' (it belongs in a [notify] table)"),
        ("events = []", "unknown key 'events' (it belongs in a [[webhook]] table)"),
        ("[notify]\non_pubish = \"http://a/\"", "unknown key 'notify.on_pubish' (did you mean 'notify.on_publish'?)"),
        (
            "[notify]\nshards = 4",
            "unknown key 'notify.shards' (a top-level key: move it above the first [table] header)",
        ),
        (
            "[[webhook]]\nurl = \"http://a/\"\nretrys = 1",
            "unknown key 'webhook[0].retrys' (did you mean 'webhook[0].retries'?)",
        ),
        ("[[script]]\nevent = \"*\"\npath = \"/x\"\ncommand = \"x\"", "unknown key 'script[0].command'"),
        ("[stdio]\nformt = \"env\"", "unknown key 'stdio.formt' (did you mean 'stdio.format'?)"),
        ("[turbo]\nx = 1", "unknown key 'turbo'"),
    ];
    for (text, expected) in cases {
        let message = toml_err(text);
        assert!(message.ends_with(expected), "{text}\n  got: {message}\n want: {expected}");
    }
}

#[test]
fn the_first_unknown_key_in_the_file_is_reported() {
    // The parsed table is sorted by name; the report must follow the file.
    let message = toml_err("zzz = 1\naaa = 2\n");
    assert_eq!(message, "config test.toml:1: unknown key 'zzz'");
}

#[test]
fn syntax_errors_give_the_line() {
    assert_eq!(toml_err("shards = 2\nshards = 3\n"), "config test.toml:2: invalid TOML: duplicate key 'shards'");
    let message = toml_err("shards = 2\n\nlog_level = \n");
    assert!(message.starts_with("config test.toml:3: invalid TOML: "), "{message}");
    let message = toml_err("[notify\n");
    assert!(message.starts_with("config test.toml:1: invalid TOML: "), "{message}");
}

#[test]
fn value_errors_give_the_line_of_the_value() {
    let message = toml_err("shards = 2\n\n[notify]\nmethod = \"post\"\ntimeout = \"soon\"\n");
    assert!(message.starts_with("config test.toml:5: key 'notify.timeout': "), "{message}");
}

#[test]
fn control_characters_in_values_stay_escaped() {
    let message = toml_err("rtmp_listen = \"a\\nb\"");
    assert!(message.contains(r"'a\nb'"), "{message}");
}

// ---- the file: hooks ------------------------------------------------------------------------

#[test]
fn notify_reads_every_key() {
    let c = toml(&format!(
        r#"
[notify]
method = "get"
on_connect = "http://h/connect"
on_publish = "http://h/publish"
on_play = "http://h/play"
on_done = "http://h/done"
on_publish_done = "http://h/publish_done"
on_play_done = "http://h/play_done"
on_update = "http://h/update"
update_interval = "10s"
update_strict = true
timeout = "2s"
on_error = "allow"
secret = "{SECRET}"
signature = "sha256"
"#
    ))
    .unwrap();
    let n = c.notify;
    assert_eq!(n.method, NotifyMethod::Get);
    assert_eq!(n.on_connect.as_deref(), Some("http://h/connect"));
    assert_eq!(n.on_publish.as_deref(), Some("http://h/publish"));
    assert_eq!(n.on_play.as_deref(), Some("http://h/play"));
    assert_eq!(n.on_done.as_deref(), Some("http://h/done"));
    assert_eq!(n.on_publish_done.as_deref(), Some("http://h/publish_done"));
    assert_eq!(n.on_play_done.as_deref(), Some("http://h/play_done"));
    assert_eq!(n.on_update.as_deref(), Some("http://h/update"));
    assert_eq!(n.update_interval, Duration::from_secs(10));
    assert!(n.update_strict);
    assert_eq!(n.timeout, Duration::from_secs(2));
    assert_eq!(n.on_error, OnError::Allow);
    assert_eq!(n.secret.as_ref().map(Secret::as_str), Some(SECRET));
    assert_eq!(n.signature, Signature::Sha256);
}

#[test]
fn notify_url_is_a_shorthand_for_every_callback_without_its_own() {
    let n = toml("[notify]\nurl = \"http://one/\"\non_play = \"http://play/\"\n").unwrap().notify;
    assert!(n.is_enabled());
    for url in [&n.on_connect, &n.on_publish, &n.on_done, &n.on_publish_done, &n.on_play_done, &n.on_update] {
        assert_eq!(url.as_deref(), Some("http://one/"));
    }
    assert_eq!(n.on_play.as_deref(), Some("http://play/"));
}

#[test]
fn bad_notify_values_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("method = \"put\"", "key 'notify.method': invalid value 'put' (expected one of: post, get)"),
        (
            "on_connect = \"ws://a/\"",
            "key 'notify.on_connect': invalid URL 'ws://a/' (must start with http:// or https://)",
        ),
        ("on_publish = 1", "key 'notify.on_publish': expected a string, got an integer"),
        ("on_play = \"a\"", "key 'notify.on_play': invalid URL"),
        ("on_done = \"a\"", "key 'notify.on_done': invalid URL"),
        ("on_publish_done = \"a\"", "key 'notify.on_publish_done': invalid URL"),
        ("on_play_done = \"a\"", "key 'notify.on_play_done': invalid URL"),
        ("on_update = \"a\"", "key 'notify.on_update': invalid URL"),
        ("url = \"http:// x\"", "key 'notify.url': invalid URL"),
        ("update_interval = \"999ms\"", "key 'notify.update_interval': must be at least 1s, got 999ms"),
        ("update_strict = \"yes\"", "key 'notify.update_strict': expected true or false, got a string"),
        ("timeout = \"0s\"", "key 'notify.timeout': must be at least 1ms, got 0s"),
        ("on_error = \"ignore\"", "key 'notify.on_error': invalid value 'ignore' (expected one of: deny, allow)"),
        ("secret = \"!!\"", "key 'notify.secret': secret is not valid base64"),
        ("secret = \"c2hvcnQ=\"", "key 'notify.secret': secret is too short: 5 bytes"),
        ("signature = \"sha256\"", "key 'notify.signature': has no effect without 'secret'"),
        (
            "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nsignature = \"md5\"",
            "key 'notify.signature': invalid value 'md5' (expected one of: standard, sha256, sha1)",
        ),
    ];
    for (text, expected) in cases {
        let message = toml_err(&format!("[notify]\n{text}\n"));
        assert!(message.contains(expected), "{text}\n  got: {message}\n want: {expected}");
    }
}

#[test]
fn webhooks_read_every_key() {
    let c = toml(&format!(
        r#"
[[webhook]]
url = "https://api.example.com/events"

[[webhook]]
url = "http://dolby.example.com/hook"
events = ["publish_start", "no_viewers"]
headers = ["Authorization: Basic T1BF", "X-Env:  prod "]
format = "dolby"
secret = "{SECRET}"
signature = "sha1"
signature_header = "X-Millicast-Signature"
retries = 0
"#
    ))
    .unwrap();
    assert_eq!(c.webhooks[0], WebhookConfig::new("https://api.example.com/events".into(), EventFilter::All));
    let w = &c.webhooks[1];
    assert_eq!(w.url, "http://dolby.example.com/hook");
    assert_eq!(w.events, EventFilter::Only(vec![EventType::PublishStart, EventType::NoViewers]));
    assert_eq!(
        w.headers,
        vec![
            Header { name: "Authorization".into(), value: "Basic T1BF".into() },
            Header { name: "X-Env".into(), value: "prod".into() },
        ]
    );
    assert_eq!(w.format, WebhookFormat::Dolby);
    assert_eq!(w.secret.as_ref().map(|s| s.key().len()), Some(24));
    assert_eq!(w.signature, Signature::Sha1);
    assert_eq!(w.signature_header, "X-Millicast-Signature");
    assert_eq!(w.retries, 0);
    assert_eq!(c.webhooks[0].signature_header, DEFAULT_SIGNATURE_HEADER);
}

#[test]
fn inline_arrays_of_tables_work_too() {
    let c = toml("webhook = [{ url = \"http://a/\" }, { url = \"http://b/\", events = [\"*\"] }]").unwrap();
    assert_eq!(c.webhooks.len(), 2);
    assert_eq!(c.webhooks[1].events, EventFilter::All);
    assert_eq!(toml("webhook = []").unwrap().webhooks, vec![]);
}

#[test]
fn bad_webhook_values_name_the_key() {
    let url = "url = \"http://a/\"";
    let secret = format!("secret = \"{SECRET}\"");
    let cases: Vec<(String, &str)> = vec![
        ("events = []".into(), "key 'webhook[0]': missing required key 'url'"),
        ("url = \"a.b/c\"".into(), "key 'webhook[0].url': invalid URL 'a.b/c' (must start with http:// or https://)"),
        (
            format!("{url}\nevents = []"),
            "key 'webhook[0].events': must list at least one event (omit the key to receive every event)",
        ),
        (format!("{url}\nevents = \"publish_start\""), "key 'webhook[0].events': expected an array, got a string"),
        (
            format!("{url}\nevents = [\"publish_start\", \"play_strat\"]"),
            "key 'webhook[0].events[1]': unknown event 'play_strat' (did you mean 'play_start'?)",
        ),
        (format!("{url}\nevents = [1]"), "key 'webhook[0].events[0]': expected a string, got an integer"),
        (
            format!("{url}\nheaders = [\"NoColon\"]"),
            "key 'webhook[0].headers[0]': invalid header: no ':' (expected \"Name: value\")",
        ),
        (
            format!("{url}\nheaders = [\"Content-Type: text/plain\"]"),
            "key 'webhook[0].headers[0]': header 'Content-Type' is set by ringcast",
        ),
        (format!("{url}\nheaders = \"A: b\""), "key 'webhook[0].headers': expected an array, got a string"),
        (
            format!("{url}\nheaders = [\"Authorization Bearer abc:def\"]"),
            "key 'webhook[0].headers[0]': invalid header name: it has a space (expected \"Name: value\")",
        ),
        (
            format!("{url}\nheaders = [\"X-Big: {}\"]", "v".repeat(MAX_HEADER_BYTES)),
            "key 'webhook[0].headers[0]': header is 8199 bytes, at most 8192",
        ),
        (
            format!("{url}\nheaders = [{}]", vec!["\"X-A: b\""; MAX_HEADERS + 1].join(", ")),
            "key 'webhook[0].headers': at most 32 headers, got 33",
        ),
        (
            format!("{url}\nheaders = [{}]", vec![format!("\"X-A: {}\"", "v".repeat(4000)); 3].join(", ")),
            "key 'webhook[0].headers': at most 8192 bytes of header names and values, got 12009",
        ),
        (
            format!("{url}\nformat = \"xml\""),
            "key 'webhook[0].format': invalid value 'xml' (expected one of: envelope, flat, form, dolby)",
        ),
        (format!("{url}\nsecret = \"whsec_***\""), "key 'webhook[0].secret': secret is not valid base64"),
        (format!("{url}\nsignature = \"sha1\""), "key 'webhook[0].signature': has no effect without 'secret'"),
        (format!("{url}\n{secret}\nsignature = \"hmac\""), "key 'webhook[0].signature': invalid value 'hmac'"),
        (
            format!("{url}\n{secret}\nsignature_header = \"X-Sig\""),
            "key 'webhook[0].signature_header': applies to signature \"sha256\" or \"sha1\" only",
        ),
        (
            format!("{url}\nsignature_header = \"X-Sig\""),
            "key 'webhook[0].signature_header': has no effect without 'secret'",
        ),
        (
            format!("{url}\n{secret}\nsignature = \"sha256\"\nsignature_header = \"X Sig\""),
            "key 'webhook[0].signature_header': invalid header name 'X Sig'",
        ),
        (format!("{url}\nretries = 101"), "key 'webhook[0].retries': must be at most 100, got 101"),
        (format!("{url}\nretries = -1"), "key 'webhook[0].retries': must be at least 0, got -1"),
        (
            format!("{url}\nformat = \"dolby\"\nevents = [\"publish_start\", \"connect\"]"),
            "key 'webhook[0].events': format \"dolby\" cannot express 'connect' (it sends only publish_start, publish_stop, stream_unavailable, no_viewers)",
        ),
    ];
    for (body, expected) in &cases {
        let message = toml_err(&format!("[[webhook]]\n{body}\n"));
        assert!(message.contains(expected), "{body}\n  got: {message}\n want: {expected}");
    }
    // The index counts the blocks.
    let message = toml_err("[[webhook]]\nurl = \"http://a/\"\n[[webhook]]\nurl = \"b\"\n");
    assert!(message.starts_with("config test.toml:4: key 'webhook[1].url'"), "{message}");
}

#[test]
fn scripts_and_stdio() {
    let c = toml(
        "[[script]]\nevent = \"publish_start\"\npath = \"/a.sh\"\n\
         [[script]]\nevent = \"*\"\npath = \"b.sh\"\n[stdio]\n",
    )
    .unwrap();
    assert_eq!(
        c.scripts,
        vec![
            ScriptConfig { event: EventFilter::Only(vec![EventType::PublishStart]), path: "/a.sh".into() },
            ScriptConfig { event: EventFilter::All, path: "b.sh".into() },
        ]
    );
    // A bare [stdio] table turns it on with the default format.
    assert_eq!(c.stdio, Some(StdioFormat::Json));
    assert_eq!(toml("[stdio]\nformat = \"env\"").unwrap().stdio, Some(StdioFormat::Env));

    for (body, expected) in [
        ("path = \"/a\"", "key 'script[0]': missing required key 'event'"),
        ("event = \"*\"", "key 'script[0]': missing required key 'path'"),
        ("event = \"publish\"\npath = \"/a\"", "key 'script[0].event': unknown event 'publish'"),
        ("event = \"*\"\npath = \"\"", "key 'script[0].path': must not be empty"),
        ("event = [\"*\"]\npath = \"/a\"", "key 'script[0].event': expected a string, got an array"),
    ] {
        let message = toml_err(&format!("[[script]]\n{body}\n"));
        assert!(message.contains(expected), "{body}\n  got: {message}");
    }
    assert!(
        toml_err("[stdio]\nformat = \"yaml\"")
            .contains("key 'stdio.format': invalid value 'yaml' (expected one of: json, env)")
    );
}

// ---- cross-key validation -------------------------------------------------------------------

#[test]
fn listeners_may_not_share_a_port() {
    assert_eq!(
        args_err(&["--http-listen", ":1935"]),
        "invalid configuration: rtmp_listen 0.0.0.0:1935 and http_listen 0.0.0.0:1935 use the same port"
    );
    // A wildcard overlaps every address; distinct specific addresses do not.
    assert!(args_err(&["--api-listen", "127.0.0.1:8080"]).contains("http_listen"));
    run(&["--rtmp-listen", "127.0.0.1:7000", "--http-listen", "127.0.0.2:7000"]);
    // Port 0 (the kernel picks) never collides; tests rely on it.
    run(&["--rtmp-listen", ":0", "--http-listen", ":0", "--rtsp-listen", ":0", "--api-listen", "127.0.0.1:0"]);
    assert!(toml_err("rtsp_listen = \":1935\"").contains("rtmp_listen"));
}

// ---- small helpers --------------------------------------------------------------------------

#[test]
fn listen_addresses() {
    for (text, expected) in [
        ("0.0.0.0:1935", "0.0.0.0:1935"),
        (":1935", "0.0.0.0:1935"),
        ("*:1935", "0.0.0.0:1935"),
        ("1935", "0.0.0.0:1935"),
        ("localhost:1935", "127.0.0.1:1935"),
        ("[::]:1935", "[::]:1935"),
        ("[::1]:80", "[::1]:80"),
        (" 10.1.2.3:5 ", "10.1.2.3:5"),
    ] {
        assert_eq!(parse_listen(text), Ok(addr(expected)), "{text}");
    }
    for bad in ["abc", "", ":", "1.2.3.4", "1.2.3.4:", ":65536", "::1:80", "example.com:80", "1.2.3.4:-1"] {
        let message = parse_listen(bad).unwrap_err();
        assert!(message.starts_with("invalid socket address"), "{bad}: {message}");
    }
}

#[test]
fn suggestions() {
    assert_eq!(edit_distance("listne", "listen"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(suggest("rtmp_listne", ROOT_KEYS.iter().copied()), Some("rtmp_listen"));
    assert_eq!(suggest("shard", ROOT_KEYS.iter().copied()), Some("shards"));
    assert_eq!(suggest("zz", ROOT_KEYS.iter().copied()), None);
}

#[test]
fn debug_output_does_not_leak_secrets() {
    let c = toml(&format!(
        "api_token = \"tok-123456\"\n[notify]\nsecret = \"{SECRET}\"\n[[webhook]]\nurl = \"http://a/\"\nsecret = \"{SECRET}\"\n"
    ))
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("tok-123456") && !debug.contains("MfKQ9r8"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn log_level_converts_to_tracing() {
    assert_eq!(tracing::Level::from(LogLevel::Warn), tracing::Level::WARN);
    assert_eq!(tracing::Level::from(LogLevel::Trace), tracing::Level::TRACE);
}

// ---- the example file -----------------------------------------------------------------------

/// The example with every commented-out setting and table header switched on: lines `# key = ...`
/// whose key is a real one, and `# [table]` / `# [[array]]` header lines.
fn example_uncommented() -> String {
    let known = |key: &str| {
        [ROOT_KEYS, NOTIFY_KEYS, WEBHOOK_KEYS, SCRIPT_KEYS, STDIO_KEYS].iter().any(|keys| keys.contains(&key))
    };
    EXAMPLE
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else {
                return line;
            };
            let is_header = rest.starts_with('[') && rest.ends_with(']') && !rest.contains(' ');
            let is_setting = rest.split_once(" = ").is_some_and(|(key, _)| known(key));
            if is_header || is_setting { rest } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn wire_limits_default_to_the_protocol_constants_and_are_set_by_their_keys() {
    assert_eq!(Config::default().wire_limits(), crate::protocol::limits::WireLimits::default());
    let c = toml(
        "max_rtmp_message_bytes = 4096\nmax_rtmp_chunk_streams = 8\nmax_http_request_head_bytes = 1024\n\
         max_rtsp_request_head_bytes = 2048\nmax_rtsp_body_bytes = 4096\n",
    )
    .unwrap();
    let limits = c.wire_limits();
    assert_eq!(
        (
            limits.rtmp_message_bytes,
            limits.rtmp_chunk_streams,
            limits.http_request_head_bytes,
            limits.rtsp_request_head_bytes,
            limits.rtsp_body_bytes
        ),
        (4096, 8, 1024, 2048, 4096)
    );
}

#[test]
fn example_as_shipped_is_the_defaults() {
    assert_eq!(toml(EXAMPLE).unwrap(), Config::default());
}

#[test]
fn example_documents_every_key() {
    let on = example_uncommented();
    for key in [ROOT_KEYS, NOTIFY_KEYS, WEBHOOK_KEYS, SCRIPT_KEYS, STDIO_KEYS].concat() {
        let table = ["notify", "webhook", "script", "nats", "stdio", "apps", "relay"].contains(&key);
        let written = if table {
            on.contains(&format!("[{key}]\n")) || on.contains(&format!("[[{key}]]\n"))
        } else {
            on.contains(&format!("\n{key} = "))
        };
        assert!(written, "ringcast.example.toml does not document '{key}'");
    }
}

#[test]
fn example_with_everything_uncommented_is_valid_and_states_the_defaults() {
    let on = example_uncommented();
    let c = toml(&on).unwrap_or_else(|e| panic!("{e}\n{on}"));

    // Top-level settings show their defaults (shards shows an example: its default is per host).
    let mut expected = Config {
        shards: 8,
        api_token: Some(ApiToken::parse("change-me-to-a-long-random-string").unwrap()),
        ..Config::default()
    };
    // Hook tables show examples; their non-URL keys show defaults where they have one.
    let url = |path: &str| Some(format!("http://127.0.0.1:9000/{path}"));
    expected.notify = NotifyConfig {
        on_connect: url("on_connect"),
        on_publish: url("on_publish"),
        on_play: url("on_play"),
        on_done: url("on_done"),
        on_publish_done: url("on_publish_done"),
        on_play_done: url("on_play_done"),
        on_update: url("on_update"),
        on_media: url("on_media"),
        secret: Some(Secret::parse(SECRET).unwrap()),
        ..NotifyConfig::default()
    };
    let mut first = WebhookConfig::new(
        "https://api.example.com/events".into(),
        EventFilter::Only(vec![EventType::PublishStart, EventType::PublishStop]),
    );
    first.headers = vec![Header::parse("Authorization: Basic T1BFTlZJRFVBUFA6TVlfU0VDUkVU").unwrap()];
    first.secret = Some(Secret::parse(SECRET).unwrap());
    let mut dolby = WebhookConfig::new(
        "https://dolby-receiver.example.com/webhooks".into(),
        EventFilter::Only(EventType::DOLBY.to_vec()),
    );
    dolby.format = WebhookFormat::Dolby;
    dolby.secret = Some(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
    dolby.signature = Signature::Sha1;
    dolby.signature_header = "X-Millicast-Signature".into();
    expected.webhooks = vec![first, dolby];
    expected.scripts = vec![ScriptConfig {
        event: EventFilter::Only(vec![EventType::PublishStart]),
        path: "/opt/scripts/on-publish.sh".into(),
    }];
    // The NATS sink's keys outside [[webhook]]'s stay commented: url, events and retries show.
    let mut nats = NatsConfig::new("nats://127.0.0.1:4222".into());
    nats.events = EventFilter::Only(vec![EventType::PublishStart, EventType::PublishStop]);
    expected.nats = vec![nats];
    expected.stdio = Some(StdioFormat::Json);
    expected.tls_ca_file = Some("/etc/ringcast/hooks-ca.pem".into());
    // The example app: its own on_publish and dialect over [notify], one webhook, one script.
    let vip = &c.apps["vip"];
    assert_eq!(vip.notify.keys, ["on_publish", "dialect"]);
    assert_eq!(c.app_notify("vip").on_publish.as_deref(), Some("http://127.0.0.1:9000/vip/on_publish"));
    assert_eq!(c.app_notify("vip").on_play, c.notify.on_play);
    assert_eq!((vip.webhooks.len(), vip.scripts.len()), (1, 1));
    expected.apps = c.apps.clone();
    assert_eq!(c, expected);
}

#[test]
fn gop_cache_bytes_must_fit_a_player_queue() {
    let path = Path::new("t.toml");
    let error = Config::from_toml("gop_cache_bytes = 68719476736\n", path).unwrap_err().to_string();
    assert!(error.contains("key 'gop_cache_bytes': must not exceed player_queue_bytes (33554432)"), "{error}");
}

#[test]
fn merge_write_bytes_defaults_to_64_kib_and_is_bounded() {
    assert_eq!(toml("").unwrap().merge_write_bytes, 64 << 10);
    assert_eq!(toml("merge_write_bytes = 65536\n").unwrap().merge_write_bytes, 65_536);
    assert_eq!(toml("merge_write_bytes = 0\n").unwrap().merge_write_bytes, 0);
    let error = toml("merge_write_bytes = 16777217\n").unwrap_err().to_string();
    assert!(error.contains("key 'merge_write_bytes': must be at most 16777216, got 16777217"), "{error}");
    let error = toml("merge_write_bytes = \"32k\"\n").unwrap_err().to_string();
    assert!(error.contains("key 'merge_write_bytes': expected an integer, got a string"), "{error}");
}

#[test]
fn rtsp_keys_are_read() {
    let toml = "rtsp_udp_ports = \"40000-40099\"\nrtsp_auth = \"digest\"\nrtsp_session_timeout = \"15s\"\n";
    let c = Config::from_toml(toml, Path::new("t.toml")).unwrap();
    assert_eq!((c.rtsp_udp_ports, c.rtsp_auth), ((40000, 40099), crate::config::RtspAuth::Digest));
    assert_eq!(c.rtsp_session_timeout, Duration::from_secs(15));
}

#[test]
fn notify_dialect_and_cache_entries() {
    let config = toml("[notify]\ndialect = \"srs\"\ncache_entries = 0\n").unwrap();
    assert_eq!((config.notify.dialect, config.notify.cache_entries), (crate::config::Dialect::Srs, 0));
    assert_eq!(Config::default().notify.dialect, crate::config::Dialect::Nginx);
    let error = toml_err("[notify]\ndialect = \"red5\"\n");
    assert!(error.contains("'notify.dialect'") && error.contains("mediamtx"), "{error}");
    let error = toml_err("[notify]\nmethod = \"get\"\ndialect = \"zlmediakit\"\n");
    assert!(error.contains("'notify.dialect'") && error.contains("must be post"), "{error}");
    assert!(toml("[notify]\nmethod = \"get\"\ndialect = \"nginx\"\n").is_ok());
}

#[test]
fn admission_limits_and_the_journal_are_read_with_their_ranges_and_the_state_dir_flag_overrides() {
    let defaults = Config::default();
    assert_eq!((defaults.max_connections_per_ip, defaults.max_streams), (0, 10_000));
    assert_eq!((defaults.max_players_per_stream, defaults.max_publishers_per_ip), (0, 0));
    assert!(defaults.session_journal);
    let c = toml(
        "max_connections_per_ip = 5\nmax_streams = 0\nmax_players_per_stream = 7\nmax_publishers_per_ip = 2\nsession_journal = false\n",
    )
    .unwrap();
    assert_eq!(
        (c.max_connections_per_ip, c.max_streams, c.max_players_per_stream, c.max_publishers_per_ip),
        (5, 0, 7, 2)
    );
    assert!(!c.session_journal);
    assert!(toml_err("max_streams = -1\n").contains("max_streams"));
    assert!(toml_err("session_journal = 1\n").contains("session_journal"));
    let file = TempFile::new("state-dir", "state_dir = \"/from/file\"\n");
    assert_eq!(run(&["--config", file.path(), "--state-dir", "/from/flag"]).state_dir, PathBuf::from("/from/flag"));
    assert!(args_err(&["--state-dir", ""]).contains("--state-dir"));
}

#[test]
fn a_webhook_id_names_one_outbox_globally_and_across_apps() {
    let error =
        toml_err("[[webhook]]\nid = \"a\"\nurl = \"http://x/1\"\n[[webhook]]\nid = \"a\"\nurl = \"http://x/2\"\n");
    assert!(error.contains("\"a\" is given to another [[webhook]]"), "{error}");
    let error = toml_err(
        "[[webhook]]\nid = \"a\"\nurl = \"http://x/1\"\n[[apps.vip.webhook]]\nid = \"a\"\nurl = \"http://x/2\"\n",
    );
    assert!(error.contains("\"a\" is given to another [[webhook]]"), "{error}");
    let error = toml_err(
        "[[apps.live.webhook]]\nid = \"b\"\nurl = \"http://x/1\"\n[[apps.vip.webhook]]\nid = \"b\"\nurl = \"http://x/2\"\n",
    );
    assert!(error.contains("\"b\" is given to another [[webhook]]"), "{error}");
    assert!(
        toml("[[webhook]]\nid = \"a\"\nurl = \"http://x/1\"\n[[apps.vip.webhook]]\nid = \"b\"\nurl = \"http://x/1\"\n")
            .is_ok()
    );
}
