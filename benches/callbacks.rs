//! Callback round trips through the hook pool to a local keep-alive HTTP server: how many per
//! second, and how much latency the pool adds over a plain request to the same receiver
//! (p50/p99). Percentiles are what matter here, so this bench measures them itself rather than
//! through criterion's mean-oriented statistics.
//!
//! `cargo bench --bench callbacks` (about 10 s).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringcast::config::NotifyConfig;
use ringcast::hooks::callback::{Call, CallbackPool, CallbackRequest, Decision};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEQUENTIAL: usize = 5_000;
const CONCURRENT: usize = 64;
const BATCHES: usize = 100;

/// A keep-alive HTTP/1.1 server answering every request `200` with an empty body, one thread
/// per connection: the cheapest receiver there is, so what is measured is the caller's side.
fn start_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    format!("http://{addr}/on_play")
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // One request: headers, then Content-Length bytes of body.
        let (head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = request.parse(&buf) {
                let body_len = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (head_len, body_len);
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_len + body_len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_len + body_len);
        if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

fn request(url: &str) -> CallbackRequest {
    let fields = [("call", "play"), ("app", "live"), ("name", "bench"), ("addr", "127.0.0.1"), ("token", "x")];
    CallbackRequest {
        call: Call::Play,
        url: url.to_owned(),
        fields: fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run either way.
    let url = start_receiver();

    // The receiver's own latency, as the caller sees it: one keep-alive ureq request at a time.
    // Built like the pool's agent (same resolver, same settings), so the difference between
    // the two is the pool itself: the queue, the worker's wake-up and the reply channel.
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .max_redirects(0)
        .http_status_as_error(false)
        .build();
    let agent = ringcast::hooks::resolver::agent(config);
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&request(&url).fields).finish();
    let direct_once = || {
        let started = Instant::now();
        let response = agent
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body.as_bytes())
            .expect("direct request");
        assert_eq!(response.status().as_u16(), 200);
        started.elapsed()
    };

    // The same through the callback pool: a session's ask, the worker's request, the reply.
    let notify =
        NotifyConfig { on_play: Some(url.clone()), timeout: Duration::from_secs(5), ..NotifyConfig::default() };
    let pool: Arc<CallbackPool> = CallbackPool::new(&notify);
    let pooled_once = || {
        let started = Instant::now();
        let decision = pool.ask(request(&url)).blocking_recv().expect("pool answers");
        assert_eq!(decision, Decision::Allow);
        started.elapsed()
    };

    // Warm both paths (connections open, caches hot), then interleave them so that whatever
    // else the machine does falls on both alike.
    for _ in 0..500 {
        direct_once();
        pooled_once();
    }
    let mut direct = Vec::with_capacity(SEQUENTIAL);
    let mut pooled = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        direct.push(direct_once());
        pooled.push(pooled_once());
    }

    // Throughput: batches of CONCURRENT callbacks in flight at once.
    let started = Instant::now();
    for _ in 0..BATCHES {
        let replies: Vec<_> = (0..CONCURRENT).map(|_| pool.ask(request(&url))).collect();
        for reply in replies {
            assert_eq!(reply.blocking_recv().expect("pool answers"), Decision::Allow);
        }
    }
    let elapsed = started.elapsed();
    let rate = (CONCURRENT * BATCHES) as f64 / elapsed.as_secs_f64();

    direct.sort();
    pooled.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("callback round trips to a local keep-alive HTTP receiver ({SEQUENTIAL} sequential each)");
    println!("{:<34} {:>10} {:>10}", "", "p50 (us)", "p99 (us)");
    for (name, sorted) in [("receiver, direct ureq request", &direct), ("through the callback pool", &pooled)] {
        println!("{:<34} {:>10.1} {:>10.1}", name, us(percentile(sorted, 0.5)), us(percentile(sorted, 0.99)));
    }
    println!(
        "{:<34} {:>10.1} {:>10.1}",
        "added by the pool",
        us(percentile(&pooled, 0.5)) - us(percentile(&direct, 0.5)),
        us(percentile(&pooled, 0.99)) - us(percentile(&direct, 0.99))
    );
    println!(
        "throughput, {CONCURRENT} in flight: {rate:.0} callbacks/s ({} in {:.2} s)",
        CONCURRENT * BATCHES,
        elapsed.as_secs_f64()
    );
}
