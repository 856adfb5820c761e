//! One delivery attempt to a NATS JetStream sink (`[[nats]]`, docs/hooks.md "NATS
//! JetStream"): the event's envelope JSON published to the subject its template names, with
//! the event id as `Nats-Msg-Id` (JetStream drops a second copy within its duplicate window),
//! done only once JetStream acknowledged storing it (its PubAck).
//!
//! The client is `async-nats` (Synadia's, the maintained one), which needs a tokio runtime.
//! The dispatcher and its workers are plain threads, so each sink keeps its connection on a
//! thread of its own running a current-thread tokio runtime ([`NatsTarget::start`]). A worker
//! hands it one publish and blocks on the answer, as it blocks on a webhook's HTTP request;
//! everything else (retries, per-stream order, the outbox, counters) is the dispatcher's, the
//! same as for webhooks. The client reconnects by itself, with the backoff below, for as long
//! as the sink exists; attempts made meanwhile time out and their events wait for their retry
//! (in the outbox, when on).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishError, context::PublishErrorKind, message::PublishMessage};
use async_nats::{ConnectOptions, ServerAddr};
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::event::Event;
use super::format;
use super::webhook::Attempt;
use crate::config::{NatsConfig, SubjectPart, SubjectTemplate};

/// The first reconnection waits this long, each next one twice as long, up to
/// [`MAX_RECONNECT_WAIT`].
const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(100);

/// A server down for long is tried this often: soon back in service, without flooding its log.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// A sink's handle on its connection thread; dropping it (the sink removed or replaced)
/// ends the thread and closes the connection.
pub struct NatsTarget {
    subject: SubjectTemplate,
    requests: mpsc::UnboundedSender<Publish>,
    /// One attempt's bound (`hook_timeout`), stream creation and PubAck included.
    timeout: Duration,
}

impl std::fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTarget").field("subject", &self.subject.to_string()).finish_non_exhaustive()
    }
}

/// One publish asked of the connection thread.
struct Publish {
    subject: String,
    id: String,
    body: Bytes,
    answer: crossbeam_channel::Sender<Attempt>,
}

impl NatsTarget {
    /// Starts the sink's connection thread; it connects in the background (and keeps
    /// reconnecting), so a server that is down does not hold up the start. `label` names the
    /// sink in logs (credentials masked); `ca_file` adds trusted CAs for `tls://`.
    pub fn start(config: &NatsConfig, label: String, timeout: Duration, ca_file: Option<&Path>) -> NatsTarget {
        let (requests, inbox) = mpsc::unbounded_channel();
        let connection = Connection {
            servers: config.url.split(',').filter_map(|server| server.parse().ok()).collect(),
            options: connect_options(config, &label, timeout, ca_file),
            stream: config.stream.clone().map(|name| (name, config.subject.wildcard())),
            timeout,
            label: label.clone(),
        };
        let spawned =
            thread::Builder::new().name("hook-nats".into()).stack_size(512 * 1024).spawn(move || connection.run(inbox));
        if let Err(e) = spawned {
            // Attempts find the channel closed and are retried (the outbox keeps them).
            error!(sink = %label, error = %e, "cannot start the NATS connection thread");
        }
        NatsTarget { subject: config.subject.clone(), requests, timeout }
    }

    /// Publishes `event` and waits for JetStream's acknowledgement, at most `hook_timeout`.
    pub fn attempt(&self, event: &Event) -> Attempt {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let publish = Publish {
            subject: subject(&self.subject, event),
            id: event.id.clone(),
            body: Bytes::from(format::envelope_json(event)),
            answer,
        };
        if self.requests.send(publish).is_err() {
            return retry("the NATS connection thread is gone".to_owned());
        }
        // The thread answers by the timeout itself; the margin covers a thread that is slow to.
        answered
            .recv_timeout(self.timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| retry(format!("no answer from NATS within {:?}", self.timeout)))
    }
}

fn retry(reason: String) -> Attempt {
    Attempt::Retry { reason, retry_after: None }
}

/// The client's settings: credentials, TLS roots, endless reconnection with backoff, and the
/// connection's ups and downs logged under the sink's label.
fn connect_options(config: &NatsConfig, label: &str, timeout: Duration, ca_file: Option<&Path>) -> ConnectOptions {
    let mut options = ConnectOptions::new()
        .name("ringcast")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(timeout.min(MAX_RECONNECT_WAIT))
        .reconnect_delay_callback(reconnect_wait);
    // Credentials in the URL are the client's convention (`user:password@`, `token@`), but
    // async-nats reads them from its options only.
    let in_url =
        config.url.split(',').find_map(|server| server.parse::<ServerAddr>().ok().filter(ServerAddr::has_user_pass));
    if let Some((user, password)) = &config.user {
        options = options.user_and_password(user.clone(), password.clone());
    } else if let Some(token) = &config.token {
        options = options.token(token.clone());
    } else if let Some(server) = in_url {
        match (server.username(), server.password()) {
            (Some(user), Some(password)) => options = options.user_and_password(user.into(), password.into()),
            (Some(token), None) => options = options.token(token.into()),
            _ => {}
        }
    }
    if let Some(ca_file) = ca_file {
        options = options.add_root_certificates(ca_file.to_path_buf());
    }
    let label = label.to_owned();
    options.event_callback(move |event| {
        let label = label.clone();
        async move {
            match event {
                async_nats::Event::Connected => info!(sink = %label, "NATS connected"),
                async_nats::Event::Disconnected => warn!(sink = %label, "NATS disconnected; reconnecting"),
                // async-nats logs every event itself (a failed reconnection as a client error).
                _ => {}
            }
        }
    })
}

/// The wait before reconnection attempt `attempts` (0 the first): doubling from
/// [`FIRST_RECONNECT_WAIT`] to [`MAX_RECONNECT_WAIT`].
fn reconnect_wait(attempts: usize) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let doublings = (attempts - 1).min(16) as u32;
    FIRST_RECONNECT_WAIT.saturating_mul(1 << doublings).min(MAX_RECONNECT_WAIT)
}

/// What the connection thread owns.
struct Connection {
    servers: Vec<ServerAddr>,
    options: ConnectOptions,
    /// The stream to make when missing, and the subjects it captures.
    stream: Option<(String, String)>,
    timeout: Duration,
    label: String,
}

impl Connection {
    /// Serves publishes until the sink's handle is dropped.
    fn run(self, mut inbox: mpsc::UnboundedReceiver<Publish>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                error!(sink = %self.label, error = %e, "cannot start the NATS sink's runtime");
                return;
            }
        };
        let Connection { servers, options, stream, timeout, label } = self;
        runtime.block_on(async move {
            // With `retry_on_initial_connect` this returns at once and connects in the
            // background; it fails only on addresses the config already checked.
            let client = match options.connect(servers).await {
                Ok(client) => client,
                Err(e) => {
                    error!(sink = %label, error = %e, "NATS client not started");
                    while let Some(publish) = inbox.recv().await {
                        let _ = publish.answer.send(retry(format!("NATS client not started: {e}")));
                    }
                    return;
                }
            };
            let mut context = jetstream::new(client);
            context.set_timeout(timeout);
            let stream_ready = AtomicBool::new(false);
            let publisher = Arc::new(Publisher { context, stream, stream_ready, timeout, label });
            // The stream exists from the start, not from the first event: consumers can bind
            // to it before anything happened.
            tokio::spawn(publisher.clone().prepare_stream());
            while let Some(publish) = inbox.recv().await {
                let publisher = publisher.clone();
                // Each publish on its own task: the sink's share of workers may wait on
                // several PubAcks at once.
                tokio::spawn(async move {
                    let outcome = tokio::time::timeout(timeout, publisher.publish(&publish))
                        .await
                        .unwrap_or_else(|_| retry(format!("no PubAck within {timeout:?} (NATS down or slow?)")));
                    // The worker may have stopped waiting; the event then goes again (same id).
                    let _ = publish.answer.send(outcome);
                });
            }
        });
    }
}

/// JetStream publishing, shared by the connection thread's tasks.
struct Publisher {
    context: jetstream::Context,
    stream: Option<(String, String)>,
    /// The stream was made (or found) since the last time JetStream said it had none.
    stream_ready: AtomicBool,
    timeout: Duration,
    label: String,
}

impl Publisher {
    /// Makes the stream (when one is configured) as soon as the server answers, trying again
    /// with the reconnection backoff.
    async fn prepare_stream(self: Arc<Self>) {
        let mut attempts = 0;
        while let Err(reason) = self.ensure_stream().await {
            attempts += 1;
            if attempts == 1 {
                warn!(sink = %self.label, %reason, "NATS stream not ready yet; trying again");
            }
            tokio::time::sleep(reconnect_wait(attempts).max(FIRST_RECONNECT_WAIT)).await;
        }
    }

    /// Finds or creates the configured stream, unless done since JetStream last said it had
    /// none.
    async fn ensure_stream(&self) -> Result<(), String> {
        let Some((name, subjects)) = &self.stream else { return Ok(()) };
        if self.stream_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let config =
            jetstream::stream::Config { name: name.clone(), subjects: vec![subjects.clone()], ..Default::default() };
        match tokio::time::timeout(self.timeout, self.context.get_or_create_stream(config)).await {
            Ok(Ok(_)) => {
                self.stream_ready.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("cannot find or create JetStream stream {name:?}: {e}")),
            Err(_) => Err(format!("cannot find or create JetStream stream {name:?}: no answer")),
        }
    }

    async fn publish(&self, publish: &Publish) -> Attempt {
        if let Err(reason) = self.ensure_stream().await {
            return retry(reason);
        }
        let message = PublishMessage::build().payload(publish.body.clone()).message_id(&publish.id);
        let acked = match self.context.send_publish(publish.subject.clone(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            // A duplicate is stored already (an earlier attempt's PubAck was lost): done too.
            Ok(_) => Attempt::Delivered { status: 0 },
            Err(e) => self.refused(&publish.subject, &e),
        }
    }

    fn refused(&self, subject: &str, error: &PublishError) -> Attempt {
        match error.kind() {
            // The same message would be refused again.
            PublishErrorKind::MaxPayloadExceeded => Attempt::Failed { reason: format!("NATS: {error}") },
            PublishErrorKind::StreamNotFound => {
                // Deleted, or a server that lost its store: made again on the next attempt.
                self.stream_ready.store(false, Ordering::Relaxed);
                retry(format!("no JetStream stream captures subject {subject:?}"))
            }
            _ => retry(format!("NATS: {error}")),
        }
    }
}

/// The subject `template` names for `event`: its placeholders filled with the event's type,
/// app and stream name, each made a valid token by [`push_token`].
pub fn subject(template: &SubjectTemplate, event: &Event) -> String {
    let name = event.stream_key.split_once('/').map_or("", |(_, name)| name);
    let mut out = String::with_capacity(64);
    for part in template.parts() {
        match part {
            SubjectPart::Literal(literal) => out.push_str(literal),
            SubjectPart::Type => out.push_str(event.event_type.as_str()),
            SubjectPart::App => push_token(&mut out, event.app().unwrap_or("")),
            SubjectPart::Name => push_token(&mut out, name),
        }
    }
    out
}

/// Appends `value` as (part of) one subject token. NATS forbids whitespace, `.`, `*` and `>`
/// in a token; those bytes, control characters and `%` itself are written as `%XX` (so two
/// names never share a token), and an empty value (an event of no app or stream) as `_`.
fn push_token(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    for c in value.chars() {
        if c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '%') {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_SUBJECT, EventType};
    use crate::hooks::event::connect_event;

    fn event_of(event_type: EventType, stream_key: &str) -> Event {
        Event { event_type, stream_key: stream_key.to_owned(), ..connect_event(&[("app", "live")]) }
    }

    #[test]
    fn the_default_template_names_type_app_and_stream() {
        let template = SubjectTemplate::parse(DEFAULT_SUBJECT).unwrap();
        assert_eq!(
            subject(&template, &event_of(EventType::PublishStart, "live/cam1")),
            "ringcast.publish_start.live.cam1"
        );
        // A name may hold `/`: it stays in the one token.
        assert_eq!(subject(&template, &event_of(EventType::PlayStop, "live/a/b")), "ringcast.play_stop.live.a/b");
    }

    #[test]
    fn forbidden_characters_are_percent_encoded_and_missing_values_are_underscores() {
        let template = SubjectTemplate::parse("x.{app}.{name}").unwrap();
        assert_eq!(
            subject(&template, &event_of(EventType::PublishStart, "live/cam 1.hd*>%")),
            "x.live.cam%201%2Ehd%2A%3E%25"
        );
        assert_eq!(subject(&template, &event_of(EventType::PublishStart, "live/tab\there")), "x.live.tab%09here");
        assert_eq!(subject(&template, &event_of(EventType::PublishStart, "live/ü")), "x.live.ü");
        // A connect has an app and no stream; a connection_accept has neither.
        assert_eq!(subject(&template, &event_of(EventType::Connect, "")), "x.live._");
        assert_eq!(subject(&template, &event_of(EventType::ConnectionAccept, "")), "x._._");
        // Distinct names stay distinct.
        assert_ne!(
            subject(&template, &event_of(EventType::PublishStart, "live/a.b")),
            subject(&template, &event_of(EventType::PublishStart, "live/a%2Eb"))
        );
    }

    #[test]
    fn reconnection_backs_off_to_its_ceiling() {
        let waits: Vec<u128> = (0..10).map(|n| reconnect_wait(n).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(reconnect_wait(usize::MAX), MAX_RECONNECT_WAIT);
    }
}
