//! The hook dispatch path as a shard sees it: `Hooks::emit` building an event for a sink that
//! wants it (or skipping one it does not), then what a hook worker does with it: encode the
//! webhook body and sign it.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::config::{Config, DEFAULT_SIGNATURE_HEADER, Secret, Signature, WebhookFormat};
use ringcast::hooks::event::{Event, EventType, Protocol};
use ringcast::hooks::payload::PublishUpdate;
use ringcast::hooks::{EventSink, Hooks, Origin, format, sign};
use serde_json::{Map, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A sink that counts what it is sent and drops it: the cost measured is building the event.
struct CountingSink {
    wanted: bool,
    sent: Arc<AtomicU64>,
}

impl EventSink for CountingSink {
    fn wants(&self, _event_type: EventType) -> bool {
        self.wanted
    }

    fn send(&self, event: Event) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        black_box(event);
    }
}

fn origin() -> Origin {
    Origin {
        conn_id: 4711,
        protocol: Protocol::Rtmp,
        addr: "203.0.113.7:50312".parse().expect("valid address"),
        stream_key: "live/cam1".to_owned(),
    }
}

/// The data of a `publish_update`, as a session builds it.
fn publish_update() -> PublishUpdate {
    let secs = black_box(61.2f64);
    PublishUpdate { time: secs.round() as u64, timestamp: 61_200, bytes_in: 19_125_000, bitrate_kbps: 2_500.0 }
}

/// The same data as the event carries it.
fn publish_update_data() -> Map<String, Value> {
    match serde_json::to_value(publish_update()) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    }
}

fn sample_event() -> Event {
    Event {
        id: "evt_018c2f0a1b2c3000000000002a".to_owned(),
        event_type: EventType::PublishUpdate,
        timestamp_ms: 1_760_000_000_123,
        conn_id: 4711,
        protocol: Protocol::Rtmp,
        addr: "203.0.113.7:50312".to_owned(),
        stream_key: "live/cam1".to_owned(),
        seq: 42,
        data: publish_update_data(),
    }
}

fn emit_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("hooks_emit");
    group.throughput(Throughput::Elements(1));
    let origin = origin();
    for (name, wanted) in [("wanted", true), ("filtered", false)] {
        let sent = Arc::new(AtomicU64::new(0));
        let hooks = Hooks::new(&Config::default(), Some(Box::new(CountingSink { wanted, sent: sent.clone() })));
        group.bench_function(BenchmarkId::new("publish_update", name), |b| {
            b.iter(|| hooks.emit(black_box(&origin), publish_update))
        });
        assert_eq!(sent.load(Ordering::Relaxed) > 0, wanted);
    }
    let hooks = Hooks::disabled();
    group.bench_function(BenchmarkId::new("publish_update", "no_sink"), |b| {
        b.iter(|| hooks.emit(black_box(&origin), publish_update))
    });
    group.finish();
}

fn format_benches(c: &mut Criterion) {
    let event = sample_event();
    let mut group = c.benchmark_group("hooks_format");
    group.throughput(Throughput::Elements(1));
    for (name, format) in
        [("envelope", WebhookFormat::Envelope), ("flat", WebhookFormat::Flat), ("form", WebhookFormat::Form)]
    {
        group.bench_function(name, |b| b.iter(|| format::encode(black_box(&event), format).expect("format sends it")));
    }
    group.finish();
}

fn sign_benches(c: &mut Criterion) {
    let event = sample_event();
    let body = format::encode(&event, WebhookFormat::Envelope).expect("envelope").bytes;
    // The Standard Webhooks example secret (24 bytes) and a second one, as during rotation.
    let current = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
    let previous = Secret::parse("whsec_c2VjcmV0LXByZXZpb3VzLTEyMzQ1Njc4").expect("valid secret");
    let mut group = c.benchmark_group("hooks_sign");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (name, signature, secrets) in [
        ("standard", Signature::Standard, vec![&current]),
        ("standard_rotating", Signature::Standard, vec![&current, &previous]),
        ("sha256", Signature::Sha256, vec![&current]),
        ("sha1", Signature::Sha1, vec![&current]),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                sign::signature_headers(
                    signature,
                    DEFAULT_SIGNATURE_HEADER,
                    &secrets,
                    &event.id,
                    event.timestamp_secs(),
                    black_box(&body),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .without_plots();
    targets = emit_benches, format_benches, sign_benches
}
criterion_main!(benches);
