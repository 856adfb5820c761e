//! The status page and the stream details behind it, with real clients: the binary, ffmpeg
//! publishing over RTMP, plain HTTP for the API, and headless Chromium (Debian's `chromium`,
//! driven by playwright-core from `web/package-lock.json`, script in `tests/browser/`) opening
//! the page, playing a stream and showing moving pictures.
//!
//! The browser tests, and the check that `web/vendor/mpegts.js` is what npm installs for the
//! lockfile, need node, npm and chromium; where one is absent they say so and pass (`bash
//! .ci/run` installs them, so CI always runs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use common::TestServer;
use common::rtmp_client::RtmpClient;

const TOKEN: &str = "page-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `GET http://{addr}{path}`: status, `Content-Type` and body.
fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = response.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
    (response.status().as_u16(), content_type, body)
}

fn get_json(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> Value {
    let (status, _, body) = get(addr, path, token);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// The stream `key` in `/api/streams` once `ready` holds for it.
fn wait_for_stream(server: &TestServer, token: Option<&str>, key: &str, ready: impl Fn(&Value) -> bool) -> Value {
    common::eventually(WAIT, || {
        let streams = get_json(server.api_addr(), "/api/streams", token);
        streams["streams"].as_array()?.iter().find(|s| s["key"] == key && ready(s)).cloned()
    })
    .unwrap_or_else(|| {
        let last = get_json(server.api_addr(), "/api/streams", token);
        panic!("{key} never got ready in /api/streams; last answer: {last}\n--- log ---\n{}", server.log())
    })
}

#[test]
fn stream_details_name_the_publisher_codecs_bitrate_and_players() {
    let server = TestServer::start();
    let _publisher = common::ffmpeg_publish(&server.rtmp_url("live/details"), 30, (640, 360));
    let stream = wait_for_stream(&server, None, "live/details", |s| {
        s["video"]["fps"].as_f64().is_some() && s["audio"].is_object() && s["uptime_sec"].as_f64() > Some(2.0)
    });
    assert_eq!(
        (stream["live"].as_bool(), stream["app"].as_str(), stream["name"].as_str()),
        (Some(true), Some("live"), Some("details"))
    );
    let publisher = &stream["publisher"];
    assert_eq!(publisher["protocol"], "rtmp", "{stream}");
    assert!(publisher["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{stream}");
    assert!(publisher["conn_id"].as_u64().is_some(), "{stream}");
    let video = &stream["video"];
    assert_eq!(
        (video["codec"].as_str(), video["width"].as_u64(), video["height"].as_u64()),
        (Some("h264"), Some(640), Some(360))
    );
    // ffmpeg sends 30 frames a second in real time; a loaded machine may bunch them a little.
    let fps = video["fps"].as_f64().unwrap();
    assert!((20.0..=40.0).contains(&fps), "fps {fps}: {stream}");
    let audio = &stream["audio"];
    assert_eq!(
        (audio["codec"].as_str(), audio["sample_rate"].as_u64(), audio["channels"].as_u64()),
        (Some("aac"), Some(44100), Some(1))
    );
    let bitrate = stream["bitrate_kbps"].as_u64().unwrap();
    assert!((50..20_000).contains(&bitrate), "bitrate {bitrate}: {stream}");
    assert_eq!(stream["play"]["http_flv"], "/live/details.flv");

    // Players are counted per protocol: one RTMP, one HTTP-FLV at the URL the answers give.
    let about = get_json(server.api_addr(), "/api/server", None);
    assert_eq!(about["rtmp"]["port"].as_u64(), Some(u64::from(server.rtmp_addr().port())), "{about}");
    let http_port = about["http_flv"]["port"].as_u64().expect("an HTTP-FLV port") as u16;
    assert!(server.log().contains(&format!("http=127.0.0.1:{http_port} ")), "{about}\n{}", server.log());
    let _rtmp_player = RtmpClient::player(server.rtmp_addr(), "details");
    let mut http_player = common::tcp_connect(std::net::SocketAddr::from(([127, 0, 0, 1], http_port)));
    let path = stream["play"]["http_flv"].as_str().unwrap();
    common::tcp_send(&mut http_player, format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).unwrap();
    let stream = wait_for_stream(&server, None, "live/details", |s| {
        s["players_by_protocol"]["rtmp"] == 1 && s["players_by_protocol"]["http-flv"] == 1
    });
    assert_eq!((stream["players"].as_u64(), stream["players_by_protocol"]["rtsp"].as_u64()), (Some(2), Some(0)));
    assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_page_needs_no_token_and_its_data_does() {
    let server = TestServer::start_with_config(&format!("api_token = \"{TOKEN}\"\n"), &[]);
    let api = server.api_addr();
    let (status, content_type, html) = get(api, "/", None);
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    assert!(html.contains("<script src=\"/ui/mpegts.js\">"), "{html}");
    let (status, content_type, script) = get(api, "/ui/mpegts.js", None);
    assert_eq!((status, content_type.as_str()), (200, "text/javascript; charset=utf-8"));
    assert_eq!(script.as_bytes(), std::fs::read(repo().join("web/vendor/mpegts.js")).unwrap());
    assert_eq!(get(api, "/ui/app.js", None).0, 200);
    assert_eq!(get(api, "/ui/style.css", None).0, 200);
    assert_eq!(get(api, "/ui/missing.js", None).0, 401, "only the page's own files are open");
    assert_eq!(get(api, "/api/streams", None).0, 401);
    assert_eq!(get(api, "/api/server", None).0, 401);
    assert_eq!(get(api, "/api/streams", Some(TOKEN)).0, 200);
}

// ---------------------------------------------------------------------------------------------
// npm and the browser
// ---------------------------------------------------------------------------------------------

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `web/`'s packages as `npm ci` installs them from the lockfile, into a directory of this test
/// run (the repository's `web/node_modules` may be stale or absent); `Err` says why not.
fn npm_ci() -> &'static Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if !runs("node", "--version") || !runs("npm", "--version") {
            return Err("node and npm are not installed (Debian: apt-get install nodejs npm; bash .ci/run does)".into());
        }
        // One directory however often the tests run: `npm ci` starts by emptying node_modules.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-npm");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(repo().join("web").join(file), dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        }
        let out = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        // npm is there, so a failing install is a failure, not a reason to skip.
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(dir.join("node_modules"))
    })
}

#[test]
fn vendored_mpegts_js_is_what_the_lockfile_installs() {
    let node_modules = match npm_ci() {
        Ok(dir) => dir,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let lock: Value = serde_json::from_slice(&std::fs::read(repo().join("web/package-lock.json")).unwrap()).unwrap();
    let version = lock["packages"]["node_modules/mpegts.js"]["version"].as_str().unwrap();
    let installed: Value =
        serde_json::from_slice(&std::fs::read(node_modules.join("mpegts.js/package.json")).unwrap()).unwrap();
    assert_eq!(installed["version"], version);
    let from_npm = std::fs::read(node_modules.join("mpegts.js/dist/mpegts.js")).unwrap();
    let vendored = std::fs::read(repo().join("web/vendor/mpegts.js")).unwrap();
    assert!(
        from_npm == vendored,
        "web/vendor/mpegts.js ({} bytes) differs from mpegts.js {version} as npm installs it ({} bytes): copy \
         node_modules/mpegts.js/dist/mpegts.js there again (README, \"The status page\")",
        vendored.len(),
        from_npm.len()
    );
}

/// Runs the driver script with `options`; its report lines, or why the browser test is skipped.
fn drive_browser(options: &Value) -> Result<Vec<Value>, String> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!("{CHROMIUM} is not installed (Debian: apt-get install chromium; bash .ci/run does)"));
    }
    let node_modules = npm_ci().as_ref().map_err(Clone::clone)?;
    let mut child = Command::new("node")
        .arg(repo().join("tests/browser/status_page.cjs"))
        .arg(options.to_string())
        .env("NODE_PATH", node_modules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    // Every step of the driver is bounded; this bounds the whole run on a loaded machine.
    let status = common::wait_child(&mut child, Duration::from_secs(120));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("driver output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let ok = lines.last().is_some_and(|l| l["ok"] == true);
    assert!(ok, "the browser driver failed ({status:?}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(lines)
}

fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines.iter().find(|l| l["step"] == name).unwrap_or_else(|| panic!("no step {name}: {lines:?}"))
}

#[test]
fn a_browser_asks_for_the_token_lists_the_stream_and_plays_it() {
    let server = TestServer::start_with_config(&format!("api_token = \"{TOKEN}\"\n"), &[]);
    let _publisher = common::ffmpeg_publish(&server.rtmp_url("live/browser"), 60, (640, 360));
    wait_for_stream(&server, Some(TOKEN), "live/browser", |s| s["video"].is_object());
    let about = get_json(server.api_addr(), "/api/server", Some(TOKEN));
    assert!(about["http_flv"]["port"].as_u64().is_some(), "the page plays over HTTP-FLV: {about}");
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("status-page-{}.png", std::process::id()));
    let options = serde_json::json!({
        "page": format!("http://{}/", server.api_addr()),
        "stream": "live/browser",
        "token": TOKEN,
        "play": true,
        "screenshot": screenshot,
        "chromium": CHROMIUM,
    });
    let lines = match drive_browser(&options) {
        Ok(lines) => lines,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    assert_eq!(step(&lines, "asked_for_token")["status"], "token needed");
    let row = step(&lines, "listed");
    assert_eq!(row["key"], "live/browser");
    assert!(row["publisher"].as_str().unwrap().starts_with("rtmp 127.0.0.1:"), "{row}");
    assert!(row["video"].as_str().unwrap().starts_with("h264 640x360"), "{row}");
    assert!(row["audio"].as_str().unwrap().starts_with("aac 44100 Hz"), "{row}");
    assert!(row["bitrate"].as_str().unwrap().ends_with("kbit/s"), "{row}");
    assert!(row["players"].as_str().unwrap().contains("rtmp 0 · http-flv 0 · rtsp 0"), "{row}");
    let fragment = step(&lines, "fragment_token");
    assert_eq!(fragment["key"], "live/browser");
    assert!(!fragment["url"].as_str().unwrap().contains("token"), "the token stays in the address bar: {fragment}");
    assert_eq!(step(&lines, "page_errors")["errors"], serde_json::json!([]));
    let playing = step(&lines, "playing");
    let (first, later) = (playing["first"].as_f64().unwrap(), playing["later"].as_f64().unwrap());
    assert!(later > first + 1.0, "currentTime did not advance: {playing}");
    assert_eq!((playing["width"].as_u64(), playing["height"].as_u64()), (Some(640), Some(360)));
    // testsrc2 is a colourful pattern: a blank or black video area has almost no variance.
    let pixels = step(&lines, "screenshot");
    assert!(pixels["variance"].as_f64().unwrap() > 200.0, "the video looks blank: {pixels} ({})", screenshot.display());
    assert!(step(&lines, "counted")["players"].as_str().unwrap().contains("http-flv 1"));
}
