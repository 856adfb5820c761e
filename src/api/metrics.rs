//! `GET /metrics`: counters and gauges in the Prometheus text exposition format (0.0.4).
//!
//! Names use the words of the code and config (one name per idea): `ringcast_sink_*` per
//! event sink, labelled `sink` (the API id: `wh_...`, or `config_<n>` for sinks of the config
//! file), `kind` (webhook, nats, script, stdio) and `target` (the URL with its password and query
//! values masked by `redact::url`, since they may hold tokens that have no business in a
//! metrics database; or the script path).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::ApiState;
use super::webhooks::config_id;
use crate::hooks::dispatch::SinkOrigin;
use crate::hooks::metrics::Histogram;

/// The whole exposition.
pub fn render(state: &ApiState) -> String {
    let mut out = Metrics::default();
    out.gauge(
        "ringcast_build_info",
        "ringcast version (always 1).",
        &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.gauge_f64(
        "ringcast_uptime_seconds",
        "Seconds since the server started.",
        state.started.elapsed().as_secs_f64(),
    );

    let hub = &state.hub.stats;
    out.counter("ringcast_packets_in_total", "Media packets received from publishers.", hub.packets_in.load(Relaxed));
    out.counter(
        "ringcast_malformed_packets_total",
        "Media packets refused as malformed.",
        hub.malformed_packets.load(Relaxed),
    );
    out.counter(
        "ringcast_relay_dropped_total",
        "Packets not relayed to a shard whose inbound channel was full (skipped to the next keyframe).",
        hub.relay_dropped.load(Relaxed),
    );
    out.counter(
        "ringcast_requests_refused_total",
        "Connect, publish or play requests refused before any hook: a field over its size cap, too many query arguments, or a second connect.",
        hub.requests_refused.load(Relaxed),
    );
    out.counter(
        "ringcast_players_kicked_total",
        "Players disconnected for falling behind too often.",
        hub.players_kicked.load(Relaxed),
    );
    if let Some(relays) = &state.relays {
        let (pulls, pushes) = relays.streaming();
        let name = "ringcast_relays";
        out.header(name, "Relay sessions streaming now, by direction (docs/scaling-out.md).", "gauge");
        out.sample(name, "direction=\"pull\"", pulls as u64);
        out.sample(name, "direction=\"push\"", pushes as u64);
        let stats = &relays.stats;
        for (name, help, pull, push) in [
            (
                "ringcast_relay_starts_total",
                "Relays that connected and started streaming, by direction.",
                &stats.pulls_started,
                &stats.pushes_started,
            ),
            (
                "ringcast_relay_failures_total",
                "Relay attempts that failed (resolve, connect, refusal, no start) and relays their peer ended with an error, by direction.",
                &stats.pull_failures,
                &stats.push_failures,
            ),
        ] {
            out.header(name, help, "counter");
            out.sample(name, "direction=\"pull\"", pull.load(Relaxed));
            out.sample(name, "direction=\"push\"", push.load(Relaxed));
        }
    }
    // Memory and time bounds of connections and streams.
    for (name, help, value) in [
        (
            "ringcast_player_queue_drops_total",
            "Player queues emptied to the next keyframe because full (player_queue or player_queue_bytes).",
            &hub.player_queue_drops,
        ),
        (
            "ringcast_gop_cache_overflows_total",
            "GOPs larger than gop_cache_bytes, not cached (new players waited for the next keyframe).",
            &hub.gop_cache_overflows,
        ),
        (
            "ringcast_send_timeouts_total",
            "Connections closed because their peer did not take a write within send_timeout (or left output above max_pending_output that long).",
            &hub.send_timeouts,
        ),
        (
            "ringcast_partial_budget_refusals_total",
            "Connections closed because incomplete messages had used up partial_message_budget.",
            &hub.partial_budget_refusals,
        ),
        (
            "ringcast_slow_messages_total",
            "Connections closed because a message stayed incomplete past partial_message_timeout.",
            &hub.slow_messages,
        ),
        (
            "ringcast_journal_dropped_total",
            "Session journal records dropped because its writer fell behind (docs/operations.md).",
            &hub.journal_dropped,
        ),
        (
            "ringcast_refused_connections_total",
            "Connections refused at accept: max_connections reached.",
            &hub.refused_connections,
        ),
        (
            "ringcast_refused_connections_per_ip_total",
            "Connections refused at accept: max_connections_per_ip reached for their address.",
            &hub.refused_connections_per_ip,
        ),
        (
            "ringcast_refused_streams_total",
            "Publishes and plays refused because they would create a stream past max_streams.",
            &hub.refused_streams,
        ),
        ("ringcast_refused_players_total", "Plays refused: max_players_per_stream reached.", &hub.refused_players),
        (
            "ringcast_refused_publishers_per_ip_total",
            "Publishes refused: max_publishers_per_ip reached for their address.",
            &hub.refused_publishers_per_ip,
        ),
        (
            "ringcast_handshake_timeouts_total",
            "Connections closed for not finishing their handshake or first request within handshake_timeout.",
            &hub.handshake_timeouts,
        ),
        (
            "ringcast_idle_timeouts_total",
            "Connections closed for sending nothing within idle_timeout (RTSP: rtsp_session_timeout).",
            &hub.idle_timeouts,
        ),
        (
            "ringcast_oversized_rtmp_messages_total",
            "RTMP connections closed for a message longer than max_rtmp_message_bytes.",
            &hub.oversized_rtmp_messages,
        ),
        (
            "ringcast_rtmp_chunk_stream_refusals_total",
            "RTMP connections closed for more than max_rtmp_chunk_streams chunk streams with an incomplete message.",
            &hub.rtmp_chunk_stream_refusals,
        ),
        (
            "ringcast_oversized_http_heads_total",
            "HTTP-FLV requests answered 431: a head over max_http_request_head_bytes.",
            &hub.oversized_http_heads,
        ),
        (
            "ringcast_oversized_rtsp_heads_total",
            "RTSP requests answered 413: a head over max_rtsp_request_head_bytes.",
            &hub.oversized_rtsp_heads,
        ),
        (
            "ringcast_oversized_rtsp_bodies_total",
            "RTSP requests answered 413: a body over max_rtsp_body_bytes.",
            &hub.oversized_rtsp_bodies,
        ),
    ] {
        out.counter(name, help, value.load(Relaxed));
    }
    let streams = state.hub.streams();
    let live = streams.iter().filter(|s| s.publisher_shard.is_some()).count();
    let players: usize = streams.iter().map(|s| s.players).sum();
    out.gauge(
        "ringcast_streams",
        "Streams in the registry (published or awaited by players).",
        &[],
        streams.len() as u64,
    );
    out.gauge("ringcast_streams_live", "Streams with a publisher.", &[], live as u64);
    out.gauge("ringcast_players", "Players of every stream.", &[], players as u64);
    if let Some(admission) = &state.admission {
        out.gauge(
            "ringcast_connections",
            "Client connections open on every protocol's port (what max_connections counts).",
            &[],
            admission.open_connections() as u64,
        );
    }
    source_metrics(&mut out, state);

    let ids = state.webhooks.public_ids();
    let sinks = state.dispatcher.sinks();
    let labelled: Vec<(String, &crate::hooks::dispatch::Sink)> = sinks
        .iter()
        .map(|sink| {
            let id = match (ids.get(&sink.id), sink.origin) {
                (Some(id), _) => id.clone(),
                (None, SinkOrigin::Config) => config_id(sink.id),
                (None, SinkOrigin::Api) => format!("sink_{}", sink.id),
            };
            let (kind, target) = match &sink.webhook {
                Some(webhook) => ("webhook", crate::redact::url(&webhook.url)),
                // Labels of the other kinds are printable already (credentials masked).
                None => (sink.kind_name(), sink.label.clone()),
            };
            (format!("sink=\"{}\",kind=\"{kind}\",target=\"{}\"", escape(&id), escape(&target)), &**sink)
        })
        .collect();
    type Read = fn(&crate::hooks::dispatch::SinkStats) -> u64;
    let per_sink: [(&str, &str, bool, Read); 8] = [
        ("ringcast_sink_delivered_total", "Deliveries that succeeded.", true, |s| s.delivered.load(Relaxed)),
        ("ringcast_sink_failed_total", "Deliveries that failed for good (retries exhausted).", true, |s| {
            s.failed.load(Relaxed)
        }),
        ("ringcast_sink_retried_total", "Attempts that failed and were scheduled again.", true, |s| {
            s.retried.load(Relaxed)
        }),
        (
            "ringcast_sink_dropped_total",
            "Deliveries dropped unsent (queue full, sink disabled or removed).",
            true,
            |s| s.dropped.load(Relaxed),
        ),
        ("ringcast_sink_in_flight", "Deliveries being attempted now.", false, |s| s.in_flight.load(Relaxed)),
        ("ringcast_sink_queued", "Deliveries waiting in the queue.", false, |s| s.queued.load(Relaxed)),
        (
            "ringcast_sink_queued_bytes",
            "Bytes of the deliveries waiting (queued or for a retry), as hook_queue_bytes counts them.",
            false,
            |s| s.queued_bytes.load(Relaxed),
        ),
        ("ringcast_sink_disabled", "1 when a 410 Gone disabled the sink until it is changed.", false, |s| {
            u64::from(s.disabled.load(Relaxed))
        }),
    ];
    for (name, help, counter, read) in per_sink {
        out.header(name, help, if counter { "counter" } else { "gauge" });
        for (labels, sink) in &labelled {
            out.sample(name, labels, read(&sink.stats));
        }
    }
    outbox_metrics(&mut out, state);
    out.counter(
        "ringcast_hook_dropped_inbound_total",
        "Events dropped before dispatch: the dispatcher's inbound queue was full.",
        state.dispatcher.stats.dropped_inbound.load(Relaxed),
    );
    out.gauge(
        "ringcast_hook_inbound_bytes",
        "Bytes of the events waiting to reach the dispatcher, as hook_queue_bytes counts them.",
        &[],
        state.dispatcher.stats.inbound_bytes.load(Relaxed),
    );

    let slots = &state.slots;
    out.gauge("ringcast_api_connections", "Admin API connections open.", &[], slots.open() as u64);
    out.counter(
        "ringcast_api_connections_evicted_total",
        "Admin API connections closed while waiting for a request, to make room for a new one.",
        slots.stats.evicted.load(Relaxed),
    );
    out.counter(
        "ringcast_api_connections_refused_total",
        "Admin API connections answered 503: every slot was busy answering.",
        slots.stats.refused.load(Relaxed),
    );
    out.counter(
        "ringcast_api_requests_timed_out_total",
        "Admin API requests that did not arrive within their deadline (408).",
        slots.stats.timed_out.load(Relaxed),
    );

    // Callback metrics are always present (zero without [notify]) so dashboards need no cases.
    let empty = Histogram::default();
    let current = state.hooks.callback_stats();
    let callbacks = current.as_deref();
    let read = |f: fn(&crate::hooks::callback::CallbackStats) -> u64| callbacks.map(f).unwrap_or(0);
    out.counter("ringcast_callback_requests_total", "Callbacks sent.", read(|s| s.requests.load(Relaxed)));
    out.counter("ringcast_callback_allowed_total", "Callbacks answered allow.", read(|s| s.allowed.load(Relaxed)));
    out.counter("ringcast_callback_denied_total", "Callbacks answered deny.", read(|s| s.denied.load(Relaxed)));
    out.counter(
        "ringcast_callback_errors_total",
        "Callbacks that timed out or failed (decided by on_error).",
        read(|s| s.errors.load(Relaxed)),
    );
    out.gauge(
        "ringcast_callback_in_flight",
        "Callbacks awaiting their reply.",
        &[],
        read(|s| s.in_flight.load(Relaxed)),
    );
    out.gauge(
        "ringcast_callback_connections_idle",
        "Keep-alive connections to plain-HTTP callback endpoints kept idle for the next callback, on every shard.",
        &[],
        crate::hooks::callback_lane::idle_connections() as u64,
    );
    out.counter(
        "ringcast_callback_cache_hits_total",
        "Callback decisions taken from the cache (a reply's Cache-Control: max-age), no request sent.",
        read(|s| s.cache_hits.load(Relaxed)),
    );
    out.counter(
        "ringcast_callback_cache_misses_total",
        "Connect, publish and play callbacks not found in the cache, asked of the endpoint.",
        read(|s| s.cache_misses.load(Relaxed)),
    );
    out.gauge(
        "ringcast_callback_cache_entries",
        "Callback decisions held in the cache.",
        &[],
        state.hooks.current_callbacks().cache_entries() as u64,
    );
    let latency = callbacks.map(|s| &s.latency).unwrap_or(&empty);
    out.histogram(
        "ringcast_callback_duration_seconds",
        "Time from a session asking a callback to its answer, queueing included.",
        latency,
    );
    out.text
}

#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: u64) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        self.sample(name, "", value);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[&str], value: u64) {
        self.header(name, help, "gauge");
        self.sample(name, &labels.join(","), value);
    }

    fn gauge_f64(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.text, "{name} {value:.3}");
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, help, "histogram");
        let mut count = 0;
        for (bound, cumulative) in histogram.cumulative() {
            let le = if bound.is_finite() { format!("{bound}") } else { "+Inf".to_owned() };
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            count = cumulative;
        }
        // `count` from the +Inf bucket rather than the separate counter: the two are updated
        // apart, and Prometheus expects them equal.
        let _ = writeln!(self.text, "{name}_sum {}", histogram.sum().as_secs_f64());
        let _ = writeln!(self.text, "{name}_count {count}");
    }
}

/// A label value per the exposition format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Each camera source (`[sources]`), labelled by its stream: whether media flows, what it
/// read, how often it connected again and failed.
fn source_metrics(out: &mut Metrics, state: &ApiState) {
    let Some(sources) = &state.sources else { return };
    let sources = sources.list();
    if sources.is_empty() {
        return;
    }
    let label = |source: &crate::session::rtsp_pull::Source| format!("stream=\"{}\"", escape(&source.config.stream));
    let up = "ringcast_source_up";
    out.header(up, "1 while a source's camera sends media into its stream, else 0.", "gauge");
    for source in sources {
        let playing = source.state() == crate::session::rtsp_pull::SourceState::Playing;
        out.sample(up, &label(source), u64::from(playing));
    }
    type Counter = fn(&crate::session::rtsp_pull::Source) -> u64;
    let series: [(&str, &str, Counter); 3] = [
        ("ringcast_source_bytes_in_total", "Bytes read from a source's camera.", |s| s.bytes_in()),
        ("ringcast_source_reconnects_total", "Connections to a source's camera after the first.", |s| s.reconnects()),
        ("ringcast_source_failures_total", "Pulls of a source that failed (refused, an RTSP error, silence).", |s| {
            s.failures()
        }),
    ];
    for (name, help, value) in series {
        out.header(name, help, "counter");
        for source in sources {
            out.sample(name, &label(source), value(source));
        }
    }
}

/// Each outbox, labelled by its sink key (`outbox`) and whether a configured sink owns it.
fn outbox_metrics(out: &mut Metrics, state: &ApiState) {
    let outboxes = state.dispatcher.outboxes();
    let now_ms = crate::hooks::now_ms();
    let labelled: Vec<(String, &crate::hooks::outbox::OutboxStats)> = outboxes
        .iter()
        .map(|(key, stats)| {
            (format!("outbox=\"{}\",configured=\"{}\"", escape(key), stats.configured.load(Relaxed)), &**stats)
        })
        .collect();
    type Read = fn(&crate::hooks::outbox::OutboxStats, u64) -> u64;
    let per_outbox: [(&str, &str, bool, Read); 5] = [
        ("ringcast_outbox_entries", "Events in the outbox not delivered yet.", false, |s, _| s.entries.load(Relaxed)),
        ("ringcast_outbox_bytes", "Bytes of the outbox's segment files.", false, |s, _| s.bytes.load(Relaxed)),
        (
            "ringcast_outbox_oldest_age_seconds",
            "Age of the oldest undelivered event in the outbox (0 with none).",
            false,
            |s, now| match s.oldest_ms.load(Relaxed) {
                0 => 0,
                oldest => now.saturating_sub(oldest) / 1000,
            },
        ),
        (
            "ringcast_outbox_refused_total",
            "Events not written to the outbox (full at outbox_max_bytes, or a disk error): dropped.",
            true,
            |s, _| s.refused.load(Relaxed),
        ),
        (
            "ringcast_outbox_replayed_total",
            "Delivered events queued again by a replay (ringcast hooks replay).",
            true,
            |s, _| s.replayed.load(Relaxed),
        ),
    ];
    for (name, help, counter, read) in per_outbox {
        out.header(name, help, if counter { "counter" } else { "gauge" });
        for (labels, stats) in &labelled {
            out.sample(name, labels, read(stats, now_ms));
        }
    }
    let orphaned = outboxes.iter().filter(|(_, s)| !s.configured.load(Relaxed)).count();
    out.gauge(
        "ringcast_outbox_orphaned",
        "Outboxes kept for sinks no longer configured (not sent; see the log).",
        &[],
        orphaned as u64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
