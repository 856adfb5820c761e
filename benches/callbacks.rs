//! Callback round trips through a shard's callback lane to a local keep-alive HTTP server: how
//! many per second, and how much latency the lane adds over a plain blocking request to the
//! same receiver (p50/p99). Percentiles are what matter here, so this bench measures them
//! itself rather than through criterion's mean-oriented statistics.
//!
//! `cargo bench --bench callbacks` (a few seconds). On a small shared VM, where the receiver
//! thread sits decides the numbers (a wake-up across cores costs ~60 µs here): pin the bench to
//! one core for comparable runs, `taskset -c 0 cargo bench --bench callbacks`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use std::rc::Rc;

use ringcast::config::NotifyConfig;
use ringcast::hooks::callback::{Call, Callbacks, ClientInfo, Decision};
use ringcast::hooks::callback_lane::CallbackLane;
use ringcast::hooks::callback_pool::CallbackPool;

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

fn client() -> ClientInfo {
    ClientInfo {
        app: "live".into(),
        name: "bench".into(),
        addr: Some("127.0.0.1:5000".parse().expect("address")),
        args: vec![("token".into(), "x".into())],
        ..ClientInfo::default()
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run either way.
    let url = start_receiver();
    let notify =
        NotifyConfig { on_play: Some(url.clone()), timeout: Duration::from_secs(5), ..NotifyConfig::default() };
    let callbacks = Callbacks::new(&notify);

    // The receiver's own latency, as a caller sees it: one blocking keep-alive request at a
    // time carrying the same form, so the difference is the lane itself (encoding, signing
    // none, io_uring submission, the reply's parse).
    let prepared = callbacks.prepare(&callbacks.request(Call::Play, &client(), &[]).expect("on_play is set"));
    let authority = url.trim_start_matches("http://").split('/').next().expect("authority").to_owned();
    let mut wire = Vec::new();
    ringcast::protocol::http::Request {
        method: prepared.method,
        target: "/on_play",
        host: &authority,
        headers: &prepared.headers,
        body: &prepared.body,
    }
    .encode(&mut wire);
    let mut direct_stream = TcpStream::connect(&authority).expect("connect receiver");
    direct_stream.set_nodelay(true).expect("nodelay");
    let mut reply = [0u8; 256];
    let mut direct_once = move || {
        let started = Instant::now();
        direct_stream.write_all(&wire).expect("direct request");
        let n = direct_stream.read(&mut reply).expect("direct reply");
        assert!(reply[..n].starts_with(b"HTTP/1.1 200"));
        started.elapsed()
    };

    tokio_uring::start(async move {
        let lane: Rc<CallbackLane> = CallbackLane::new(Some(callbacks), CallbackPool::new(notify.timeout, None), 1);
        let client = client();
        let lane_once = || async {
            let started = Instant::now();
            assert_eq!(lane.decide(Call::Play, &client, &[]).await, Decision::Allow);
            started.elapsed()
        };

        // Warm both paths (connections open, caches hot), then interleave them so that
        // whatever else the machine does falls on both alike.
        for _ in 0..500 {
            direct_once();
            lane_once().await;
        }
        let mut direct = Vec::with_capacity(SEQUENTIAL);
        let mut through_lane = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            direct.push(direct_once());
            through_lane.push(lane_once().await);
        }

        // Throughput: batches of CONCURRENT callbacks in flight at once.
        let started = Instant::now();
        for _ in 0..BATCHES {
            let asks: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let (lane, client) = (lane.clone(), client.clone());
                    tokio::task::spawn_local(async move { lane.decide(Call::Play, &client, &[]).await })
                })
                .collect();
            for ask in asks {
                assert_eq!(ask.await.expect("callback task"), Decision::Allow);
            }
        }
        let elapsed = started.elapsed();
        let rate = (CONCURRENT * BATCHES) as f64 / elapsed.as_secs_f64();

        direct.sort();
        through_lane.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("callback round trips to a local keep-alive HTTP receiver ({SEQUENTIAL} sequential each)");
        println!("{:<34} {:>10} {:>10}", "", "p50 (us)", "p99 (us)");
        for (name, sorted) in
            [("receiver, direct blocking request", &direct), ("through the callback lane", &through_lane)]
        {
            println!("{:<34} {:>10.1} {:>10.1}", name, us(percentile(sorted, 0.5)), us(percentile(sorted, 0.99)));
        }
        println!(
            "{:<34} {:>10.1} {:>10.1}",
            "added by the lane",
            us(percentile(&through_lane, 0.5)) - us(percentile(&direct, 0.5)),
            us(percentile(&through_lane, 0.99)) - us(percentile(&direct, 0.99))
        );
        println!(
            "throughput, {CONCURRENT} in flight on one shard: {rate:.0} callbacks/s ({} in {:.2} s)",
            CONCURRENT * BATCHES,
            elapsed.as_secs_f64()
        );
    });
}
