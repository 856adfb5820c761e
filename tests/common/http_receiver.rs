//! A tiny real HTTP/1.1 server for tests, std only: records every request (method, path,
//! query, headers, body, and which connection carried it) and answers each with the next
//! scripted [`Reply`] (status, headers, body, delay), or the default reply once the script runs
//! out. Connections are kept alive unless the client asks otherwise, so a test can see whether
//! its client reuses them.
//!
//! [`HttpsReceiver`] is the HTTPS counterpart, a python3 `http.server` behind `ssl` (std has no
//! TLS server, and the crate must not grow a dev-dependency for one): it answers every POST
//! with 204.
//!
//! Request bodies must carry `Content-Length` (chunked uploads are not supported; the clients
//! under test send sized bodies).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle kept-alive connection is held before the server closes it. Long enough
/// for a test's consecutive requests, short enough that stray threads end soon after a test.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (empty if none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which connection carried it: 0 for the first accepted, 1 for the next...
    pub connection: usize,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// How many headers of that name arrived.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waited before answering (after the request is recorded).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Vec::new(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.as_bytes().to_vec();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Decides a request's answer from what it carries; `None` leaves it to the script.
type Decider = Arc<dyn Fn(&Request) -> Option<Reply> + Send + Sync>;

struct State {
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    decider: Mutex<Option<Decider>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    connections: AtomicUsize,
    /// Requests read and not yet answered, and the most there ever were at once.
    busy: AtomicUsize,
    most_busy: AtomicUsize,
    stop: AtomicBool,
}

/// The running server; stops accepting when dropped.
pub struct HttpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl HttpReceiver {
    /// Starts on an ephemeral loopback port; answers 200 by default.
    pub fn start() -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            decider: Mutex::new(None),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200)),
            connections: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            most_busy: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&accept_state);
                thread::spawn(move || serve(stream, id, &state));
            }
        });
        HttpReceiver { addr, state, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Queues the answer to the next request not yet answered.
    pub fn reply(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    /// Answers each request `decide` has an answer for, before the queue and the default: a
    /// receiver whose answer depends on what it is told.
    pub fn decide(&self, decide: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static) {
        *self.state.decider.lock().unwrap() = Some(Arc::new(decide));
    }

    /// The answer once the queue is empty.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or `timeout`), then returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = self.state.requests.lock().unwrap();
        while requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            requests = self.state.arrived.wait_timeout(requests, left).unwrap().0;
        }
        requests.clone()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were ever waiting for their replies at the same time: what a
    /// client had in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_busy.load(Ordering::SeqCst)
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serves one connection: request after request until the client closes, asks to close, sends
/// garbage, or stays idle past [`IDLE_TIMEOUT`].
fn serve(stream: TcpStream, connection: usize, state: &State) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let Ok(Some(request)) = read_request(&mut reader, connection) else {
            return;
        };
        let close = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let decider = state.decider.lock().unwrap().clone();
        let decided = decider.and_then(|decide| decide(&request));
        {
            let mut requests = state.requests.lock().unwrap();
            requests.push(request);
            state.arrived.notify_all();
        }
        let busy = state.busy.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_busy.fetch_max(busy, Ordering::SeqCst);
        let reply = decided.unwrap_or_else(|| {
            state.script.lock().unwrap().pop_front().unwrap_or_else(|| state.default.lock().unwrap().clone())
        });
        if !reply.delay.is_zero() {
            thread::sleep(reply.delay);
        }
        let written = write_reply(&mut writer, &reply, close);
        state.busy.fetch_sub(1, Ordering::SeqCst);
        if written.is_err() || close {
            return;
        }
    }
}

/// `Ok(None)` on a clean end of stream before a new request.
fn read_request(reader: &mut impl BufRead, connection: usize) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        if head.is_empty() && (line == b"\r\n" || line == b"\n") {
            // Tolerated between requests (RFC 9112 section 2.2).
            continue;
        }
        let end = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
    let text = String::from_utf8(head).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(io::ErrorKind::InvalidData.into());
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(io::ErrorKind::InvalidData.into());
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
        connection,
    };
    let length: usize = match request.header("content-length") {
        Some(v) => v.parse().map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?,
        None => 0,
    };
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(Some(request))
}

fn write_reply(writer: &mut impl Write, reply: &Reply, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} Scripted\r\nContent-Length: {}\r\n", reply.status, reply.body.len());
    if close {
        head.push_str("Connection: close\r\n");
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&reply.body);
    writer.write_all(&bytes)?;
    writer.flush()
}

/// An HTTPS server (python3 `http.server` + `ssl`) on an ephemeral loopback port that answers
/// every POST with 204 and prints `POST <path> <body length>` per request; killed on drop.
pub struct HttpsReceiver {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
cert, key = sys.argv[1], sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sys.stdout.write("POST %s %d\n" % (self.path, len(body)))
        sys.stdout.flush()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl HttpsReceiver {
    /// Starts the server with this certificate chain and key (PEM files); `None` if python3 is
    /// not installed or does not start within a few seconds.
    pub fn start(cert: &Path, key: &Path) -> Option<HttpsReceiver> {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HTTPS_SERVER)
            .arg(cert)
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Failed handshakes (the "untrusted CA" test) print tracebacks: not interesting.
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader_lines = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            if reader.read_line(&mut first).is_ok() {
                let _ = port_tx.send(first.trim().parse::<u16>().ok());
            }
            for line in reader.lines() {
                let Ok(line) = line else { break };
                reader_lines.lock().unwrap().push(line);
            }
        });
        let port = port_rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
        match port {
            Some(port) => Some(HttpsReceiver { child, port, lines }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.port, path)
    }

    /// The `POST <path> <length>` lines printed so far.
    pub fn requests(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for HttpsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
