//! RTSP clients for the end-to-end tests: ffmpeg publishing over RTSP, ffprobe counting the
//! frames it plays (any URL), GStreamer's `rtspclientsink` and `rtspsrc`, and raw RTSP
//! exchanges over a socket for the error and hook cases.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Client, describe_status, die_with_parent, drain, kill_and_reap, require_ffmpeg, wait_child};

/// Publishes a test pattern (H.264 + AAC, a keyframe a second, in real time) to `url` over
/// RTSP, with `-rtsp_transport transport` (`tcp` or `udp`). Without B-frames (`zerolatency`):
/// the RTP depacketizer gives presentation times (composition offset 0) until decode
/// timestamps are derived from the stream.
pub fn ffmpeg_publish_rtsp(url: &str, transport: &str, seconds: u32, size: (u32, u32)) -> Client {
    let mut args = super::test_pattern_args(seconds, size);
    args.extend(["-rtsp_transport", transport, "-f", "rtsp", url].map(str::to_owned));
    Client::spawn("ffmpeg", &args, format!("RTSP ({transport}) publisher of {url}"))
}

/// Publishes the test pattern over RTSP/TCP with other codecs: `video` replaces libx264
/// (`None`: audio only), `audio` replaces the AAC encoder's arguments (e.g. `-c:a pcm_mulaw
/// -ar 8000 -ac 1`).
pub fn ffmpeg_publish_rtsp_codecs(
    url: &str,
    seconds: u32,
    size: (u32, u32),
    video: Option<&str>,
    audio: &[&str],
) -> Client {
    let mut args = super::test_pattern_args(seconds, size);
    let aac = args.iter().position(|a| a == "-c:a").expect("the test pattern sets -c:a");
    args.splice(aac..aac + 4, audio.iter().map(|a| a.to_string()));
    match video {
        Some(codec) => {
            let x264 = args.iter().position(|a| a == "libx264").expect("the test pattern uses libx264");
            args[x264] = codec.to_owned();
            if codec == "libx265" {
                args.extend(["-x265-params", "log-level=error"].map(str::to_owned));
            }
        }
        None => args.extend(["-map", "1:a"].map(str::to_owned)),
    }
    args.extend(["-rtsp_transport", "tcp", "-f", "rtsp", url].map(str::to_owned));
    Client::spawn("ffmpeg", &args, format!("RTSP publisher of {url} ({video:?}, {audio:?})"))
}

/// Publishes as [`ffmpeg_publish_rtsp`] does, but with `b_frames` B-frames between references
/// (libx264's habit outside `-tune zerolatency`): RTP then carries frames out of decode order.
pub fn ffmpeg_publish_rtsp_with_b_frames(
    url: &str,
    transport: &str,
    seconds: u32,
    size: (u32, u32),
    b_frames: u32,
) -> Client {
    let mut args = super::test_pattern_args(seconds, size);
    let tune = args.iter().position(|a| a == "-tune").expect("the test pattern sets -tune");
    args.splice(tune..tune + 2, ["-bf".to_owned(), b_frames.to_string()]);
    args.extend(["-rtsp_transport", transport, "-f", "rtsp", url].map(str::to_owned));
    Client::spawn("ffmpeg", &args, format!("RTSP ({transport}) publisher with B-frames of {url}"))
}

/// The video packets ffprobe reads from `url` in `seconds`: (pts, dts) in the stream's time
/// base, in the order they arrived.
pub fn video_packet_times(url: &str, seconds: u32, timeout: Duration) -> Result<Vec<(i64, i64)>, String> {
    require_ffmpeg();
    let args: Vec<String> = ["-v", "error", "-select_streams", "v", "-show_packets", "-of", "json", "-read_intervals"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("%+{seconds}"), url.to_owned()])
        .collect();
    let stdout = run_tool("ffprobe", &args, timeout)?;
    let json: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| format!("ffprobe JSON: {e}: {stdout}"))?;
    let packets = json["packets"].as_array().ok_or_else(|| format!("no packets: {json}"))?;
    Ok(packets.iter().filter_map(|p| Some((p["pts"].as_i64()?, p["dts"].as_i64()?))).collect())
}

/// Publishes a test pattern (H.264 only) with GStreamer's `rtspclientsink` over `protocols`
/// (`tcp` or `udp`) for about `seconds`.
pub fn gst_publish(url: &str, protocols: &str, seconds: u32) -> Client {
    require_tool_gst();
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers={} ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         x264enc tune=zerolatency bframes=0 key-int-max=30 ! h264parse ! \
         rtspclientsink location={url} protocols={protocols}",
        seconds * 30
    );
    let args: Vec<String> =
        std::iter::once("-q".to_owned()).chain(pipeline.split_whitespace().map(str::to_owned)).collect();
    Client::spawn("gst-launch-1.0", &args, format!("rtspclientsink ({protocols}) publisher of {url}"))
}

fn require_tool_gst() {
    let found = Command::new("gst-inspect-1.0")
        .args(["rtspclientsink"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|status| status.success()),
        "GStreamer with rtspclientsink is needed: apt-get install -y gstreamer1.0-tools \
         gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-rtsp \
         (or run `bash .ci/run`, which installs them)"
    );
}

/// What `rtspsrc` played: buffers through each track's parser, and the video caps.
#[derive(Debug, Clone, Default)]
pub struct GstPlayed {
    pub video_frames: usize,
    pub audio_frames: usize,
    /// The first H.264 caps with a picture size gst-launch printed (`width=(int)320, ...`).
    pub video_caps: String,
}

/// Plays `url` with GStreamer's `rtspsrc` over `protocols` for `duration`, both tracks linked
/// (over TCP one unlinked track stops them all), and counts what went through each parser.
/// It plays until stopped, so ending it is not a failure; ending early is.
pub fn gst_play(url: &str, protocols: &str, duration: Duration) -> Result<GstPlayed, String> {
    require_tool_gst();
    let pipeline = format!(
        "rtspsrc location={url} protocols={protocols} name=src \
         src. ! rtph264depay ! h264parse ! identity name=video silent=false ! fakesink \
         src. ! rtpmp4gdepay ! aacparse ! identity name=audio silent=false ! fakesink"
    );
    let args: Vec<String> =
        std::iter::once("-v".to_owned()).chain(pipeline.split_whitespace().map(str::to_owned)).collect();
    let mut command = Command::new("gst-launch-1.0");
    command.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = die_with_parent(&mut command).spawn().map_err(|e| format!("cannot start gst-launch-1.0: {e}"))?;
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let early = wait_child(&mut child, duration);
    if early.is_none() {
        // SIGINT: gst-launch stops the pipeline and exits, its output flushed.
        super::signal(&child, libc::SIGINT);
        wait_child(&mut child, Duration::from_secs(5));
    }
    kill_and_reap(&mut child);
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    if let Some(status) = early {
        return Err(format!(
            "gst-launch-1.0 {} ended early ({})\nstderr: {stderr}\nstdout: {stdout}",
            args.join(" "),
            describe_status(status)
        ));
    }
    let count = |name: &str| {
        stdout.lines().filter(|line| line.contains(&format!("GstIdentity:{name}: last-message = chain"))).count()
    };
    let video_caps = stdout
        .lines()
        .find(|line| line.contains("caps = video/x-h264") && line.contains("width=(int)"))
        .unwrap_or_default()
        .to_owned();
    Ok(GstPlayed { video_frames: count("video"), audio_frames: count("audio"), video_caps })
}

/// What ffprobe counted of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub frames: u64,
}

/// Reads `seconds` of `url` with ffprobe `-count_frames` (over RTSP with `-rtsp_transport
/// transport` when given) and says what each stream held.
pub fn count_frames(
    url: &str,
    transport: Option<&str>,
    seconds: u32,
    timeout: Duration,
) -> Result<Vec<Counted>, String> {
    require_ffmpeg();
    let mut args: Vec<String> =
        ["-v", "error", "-count_frames", "-show_streams", "-of", "json"].iter().map(|s| s.to_string()).collect();
    if let Some(transport) = transport {
        args.extend(["-rtsp_transport".to_owned(), transport.to_owned()]);
    }
    args.extend(["-read_intervals".to_owned(), format!("%+{seconds}"), url.to_owned()]);
    let stdout = run_tool("ffprobe", &args, timeout)?;
    let json: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| format!("ffprobe JSON: {e}: {stdout}"))?;
    let streams = json["streams"].as_array().ok_or_else(|| format!("no streams: {json}"))?;
    Ok(streams
        .iter()
        .map(|s| Counted {
            codec_type: s["codec_type"].as_str().unwrap_or_default().to_owned(),
            codec_name: s["codec_name"].as_str().unwrap_or_default().to_owned(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
            frames: s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
        })
        .collect())
}

/// Asserts H.264 of `size` with at least `video_frames` frames and, when `audio_frames` is
/// not `None`, AAC with at least that many.
pub fn assert_counted(
    counted: &[Counted],
    size: (u32, u32),
    video_frames: u64,
    audio_frames: Option<u64>,
    context: &str,
) {
    let video: Vec<_> = counted.iter().filter(|s| s.codec_type == "video").collect();
    assert_eq!(video.len(), 1, "one video stream: {counted:?}\n{context}");
    assert_eq!(video[0].codec_name, "h264", "{counted:?}\n{context}");
    assert_eq!((video[0].width, video[0].height), (Some(u64::from(size.0)), Some(u64::from(size.1))), "{context}");
    assert!(video[0].frames >= video_frames, "at least {video_frames} video frames: {counted:?}\n{context}");
    if let Some(audio_frames) = audio_frames {
        let audio: Vec<_> = counted.iter().filter(|s| s.codec_type == "audio").collect();
        assert_eq!(audio.len(), 1, "one audio stream: {counted:?}\n{context}");
        assert_eq!(audio[0].codec_name, "aac", "{counted:?}\n{context}");
        assert!(audio[0].frames >= audio_frames, "at least {audio_frames} audio frames: {counted:?}\n{context}");
    }
}

/// Runs `program` to its end within `timeout`; its stdout, or why it failed.
fn run_tool(program: &str, args: &[String], timeout: Duration) -> Result<String, String> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = die_with_parent(&mut command).spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        kill_and_reap(&mut child);
    }
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    let line = format!("{program} {}", args.join(" "));
    match status {
        Some(status) if status.success() => Ok(stdout),
        Some(status) => Err(format!("{line}: {}\nstderr: {stderr}\nstdout: {stdout}", describe_status(status))),
        None => Err(format!("{line}: still running after {timeout:?}\nstderr: {stderr}\nstdout: {stdout}")),
    }
}

/// An RTSP reply as read off a raw socket.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// A header's value (the first of that name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A raw RTSP connection: send a request, read its reply.
pub struct RtspConnection {
    pub stream: TcpStream,
    cseq: u32,
    buffered: Vec<u8>,
}

impl RtspConnection {
    pub fn connect(addr: SocketAddr) -> RtspConnection {
        let stream = super::tcp_connect(addr);
        stream.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        RtspConnection { stream, cseq: 0, buffered: Vec::new() }
    }

    /// Sends `method url` with `headers` (and a body), numbered with the next CSeq.
    pub fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) {
        self.cseq += 1;
        let mut request = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.write_all(request.as_bytes()).expect("send the request");
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.send(method, url, headers, body);
        self.reply(Duration::from_secs(10)).unwrap_or_else(|| panic!("no reply to {method} {url}"))
    }

    /// The next reply (interleaved frames before it are skipped); `None` when none came
    /// within `timeout` or the connection closed.
    pub fn reply(&mut self, timeout: Duration) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.buffered.first() == Some(&b'$') && self.buffered.len() >= 4 {
                let len = 4 + usize::from(u16::from_be_bytes([self.buffered[2], self.buffered[3]]));
                if self.buffered.len() < len {
                    break;
                }
                self.buffered.drain(..len);
            }
            if self.buffered.first() != Some(&b'$')
                && let Some(end) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let head = String::from_utf8_lossy(&self.buffered[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if self.buffered.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&self.buffered[end + 4..end + 4 + length]).into_owned();
                    self.buffered.drain(..end + 4 + length);
                    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    return Some(Reply { status, head, body });
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.buffered.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads for `duration` and returns the interleaved frames seen: (channel, payload).
    pub fn read_frames(&mut self, duration: Duration) -> Vec<(u8, Vec<u8>)> {
        let deadline = Instant::now() + duration;
        let mut frames = Vec::new();
        while Instant::now() < deadline {
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.buffered.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
            while self.buffered.first() == Some(&b'$') && self.buffered.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buffered[2], self.buffered[3]]));
                if self.buffered.len() < 4 + len {
                    break;
                }
                frames.push((self.buffered[1], self.buffered[4..4 + len].to_vec()));
                self.buffered.drain(..4 + len);
            }
        }
        frames
    }

    /// Reads (and drops) whatever comes until the server closes the connection: `true`, or
    /// `false` when it is still open after `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 64 * 1024];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// An IP camera: GStreamer's RTSP server (`scripts/gst-rtsp-relay.py` without a source)
/// serving a live H.264 320x240 30 fps + AAC test pattern at `rtsp://127.0.0.1:{port}/stream1` over TCP, wanting Digest
/// credentials when `login` is given. Returns once it listens; it prints "client" per
/// connection it accepts.
pub fn gst_camera(port: u16, login: Option<(&str, &str)>) -> Client {
    require_tool_gst();
    // Debian's interpreter: python3-gi is installed for it, not for a virtualenv's.
    let python = if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gst-rtsp-relay.py").to_owned();
    let mut args = vec![script, "--port".to_owned(), port.to_string(), "--path".to_owned(), "/stream1".to_owned()];
    if let Some((user, password)) = login {
        args.extend(["--user".to_owned(), user.to_owned(), "--password".to_owned(), password.to_owned()]);
    }
    let mut camera = Client::spawn(python, &args, format!("camera on port {port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !camera.output().lines().any(|line| line == "ready") {
        assert!(camera.is_running() && Instant::now() < deadline, "{}", camera.report("the camera did not start"));
        std::thread::sleep(Duration::from_millis(50));
    }
    camera
}
