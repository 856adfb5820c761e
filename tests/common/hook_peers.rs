//! Peers and parsers for the end-to-end hook tests: an endpoint that accepts TCP and never
//! answers (to pile up webhook deliveries), a port nobody listens on, and readers for the three
//! text forms hooks arrive in (form fields, stdio `env` lines, `env` output of a script).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Accepts connections and holds them open without reading or writing a byte, until dropped:
/// every request sent to it waits for the client's own timeout. A webhook pointed here keeps
/// each of its workers busy for `hook_timeout`, so deliveries pile up in the queue.
pub struct BlackHole {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (thread_stop, thread_accepted, thread_held) = (stop.clone(), accepted.clone(), held.clone());
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    thread_accepted.fetch_add(1, Ordering::SeqCst);
                    // Kept, not dropped: a closed connection would answer the client (EOF).
                    thread_held.lock().unwrap().push(stream);
                }
            }
        });
        BlackHole { addr, stop, accepted, held, accept: Some(accept) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Accepted connections the client has not closed (or shut down) yet. Looks with
    /// `poll(POLLRDHUP)`, which sees a hang-up behind unread request bytes, and reads nothing.
    pub fn open_connections(&self) -> usize {
        use std::os::fd::AsRawFd;
        let held = self.held.lock().unwrap();
        let hung_up = |stream: &TcpStream| {
            let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, 0) };
            ready == 1 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
        };
        held.iter().filter(|stream| !hung_up(stream)).count()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.held.lock().unwrap().clear();
    }
}

/// `http://127.0.0.1:<port>/path` for a port nothing listens on: bound, then released, so a
/// connection to it is refused at once (unless another process grabs the port meanwhile,
/// which an ephemeral port makes unlikely).
pub fn closed_port_url(path: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}{path}")
}

/// `application/x-www-form-urlencoded` text as (name, value) pairs, in order, repeats kept.
pub fn parse_form(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text).into_owned().collect()
}

/// One stdio `env` line (docs/hooks.md, stdio; format in src/hooks/stdio.rs): `KEY=value` pairs separated by
/// one space, a value either bare or a JSON string. `Err` says where the line does not follow
/// that grammar.
pub fn parse_env_line(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = line.trim_end_matches(['\r', '\n']);
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            return Err(format!("no `=` in {rest:?}"));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
            return Err(format!("bad name {name:?}"));
        }
        let (value, after) = if after.starts_with('"') {
            let mut stream = serde_json::Deserializer::from_str(after).into_iter::<String>();
            match stream.next() {
                Some(Ok(value)) => (value, &after[stream.byte_offset()..]),
                other => return Err(format!("bad quoted value for {name}: {other:?}")),
            }
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let value = &after[..end];
            let bare = |b: u8| b.is_ascii_alphanumeric() || b"_.,:/@%+-".contains(&b);
            if value.is_empty() || !value.bytes().all(bare) {
                return Err(format!("value of {name} neither bare nor quoted: {value:?}"));
            }
            (value.to_owned(), &after[end..])
        };
        pairs.push((name.to_owned(), value));
        rest = match after.strip_prefix(' ') {
            Some(next) => next,
            None if after.is_empty() => after,
            None => return Err(format!("junk after the value of {name}: {after:?}")),
        };
    }
    Ok(pairs)
}

/// `KEY=value` lines (the output of `env`); a line without `=` continues the previous value.
pub fn parse_env_output(text: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some((name, value)) if !name.is_empty() && !name.contains(' ') => {
                vars.push((name.to_owned(), value.to_owned()))
            }
            _ => {
                if let Some((_, value)) = vars.last_mut() {
                    value.push('\n');
                    value.push_str(line);
                }
            }
        }
    }
    vars
}

/// HMAC (RFC 2104) built here from the bare hash, so a signature check does not share a
/// library call with the code it checks.
pub fn hmac(hash: fn(&[u8]) -> Vec<u8>, key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64; // SHA-1 and SHA-256 both
    let mut k = if key.len() > BLOCK { hash(key) } else { key.to_vec() };
    k.resize(BLOCK, 0);
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&hash(&inner));
    hash(&outer)
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).to_vec()
}

pub fn sha1(data: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).to_vec()
}

/// The Standard Webhooks `webhook-signature` value for a `whsec_...` secret.
pub fn standard_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.trim_start_matches("whsec_")).expect("secret is base64");
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!("v1,{}", engine.encode(hmac(sha256, &key, &message)))
}
