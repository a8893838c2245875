//! The broker sink: the global log published to NATS JetStream, every event once.
//!
//! A supervised consumer of the whole log (a [`LogTail`] with its offset in the journal's own
//! database, `sink.nats`) that publishes each event to the subject
//! `{prefix}.{event name}.{entity}` (e.g. `tradefloor.book.traded.BTC-USD`,
//! `tradefloor.account.deposited.alice`) of a JetStream stream it creates if missing
//! (subjects `{prefix}.>`). The body is JSON: the envelope (offset, stream, sequence, name,
//! schema version, times, tags) and the decoded event.
//!
//! **Duplicate-free across restarts.** Each message carries `Nats-Msg-Id` = the event's global
//! offset, so JetStream drops a repeat within its duplicate window; and the sink resumes after
//! the larger of its committed offset and the offset of the stream's last message (publishes
//! are acknowledged in offset order), so a crash between JetStream's acknowledgement and the
//! offset's commit repeats nothing even past the window. A batch is published as a pipeline:
//! every message is sent, then every acknowledgement awaited, then the offset committed.
//!
//! An event that cannot be decoded is published with `"event": null` and its `decode_error`
//! (counted in `tradefloor_sink_undecodable_total`): the log goes on. A broker that is down or
//! a batch it did not acknowledge does not fail the actor (an outage must not stop the node):
//! the sink drops the connection, goes back to its committed offset and tries again every
//! `retry_interval`, saying so in its log and in `tradefloor_sink_connected`.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tradefloor_persistence::{Filter, Journal, OffsetStore, StoredEvent};

use super::event_json;
use crate::error::Error;
use crate::hosting::log_tail::{LogTail, TailWaker};
use crate::runtime::registry::Registry;
use crate::runtime::supervisor::{
    ChildContext, ChildSpec, Progress, SupervisionConfig, Supervisor, SupervisorArgs,
    SupervisorMessage,
};

/// The sink's name as a supervised child and in the actor tree.
pub const SERVICE_NAME: &str = "sink-nats";
/// The sink's key in the offset store (in the journal's database).
pub const OFFSET_NAME: &str = "sink.nats";

/// Where and how the log is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSinkConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream (created if missing; no `.`, spaces or wildcards).
    pub stream: String,
    /// The first token of every subject.
    pub subject_prefix: String,
    /// Most events published per batch (one pipeline, one offset commit).
    pub batch_events_max: usize,
    /// How long JetStream remembers message ids to drop repeats.
    pub duplicate_window: Duration,
    /// How long connecting, or one batch's acknowledgements, may take before the sink fails
    /// (and is restarted).
    pub timeout: Duration,
    /// The longest a caught-up sink waits for the log bus before it reads the database.
    pub poll_interval: Duration,
    /// The shortest time between two wake-ups by the log bus.
    pub batch_interval_min: Duration,
    /// The pause before connecting again after a failure.
    pub retry_interval: Duration,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: "TRADEFLOOR".to_owned(),
            subject_prefix: "tradefloor".to_owned(),
            batch_events_max: 1_024,
            duplicate_window: Duration::from_secs(120),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(100),
            batch_interval_min: crate::hosting::log_tail::BATCH_INTERVAL_MIN_DEFAULT,
            retry_interval: Duration::from_secs(1),
        }
    }
}

impl NatsSinkConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let token = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !token(&self.stream) {
            return Err(format!(
                "sink stream {:?}: letters, digits, _ and - only",
                self.stream
            ));
        }
        if !self.subject_prefix.split('.').all(token) {
            return Err(format!(
                "sink subject_prefix {:?}: dot-separated tokens of letters, digits, _ and -",
                self.subject_prefix
            ));
        }
        if self.batch_events_max == 0
            || self.timeout.is_zero()
            || self.poll_interval.is_zero()
            || self.retry_interval.is_zero()
        {
            return Err(
                "sink batch_events_max, timeout, poll_interval and retry_interval must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What the sink actor answers to.
#[derive(Debug)]
pub enum SinkMessage {
    /// Internal: publish the next batch, if any.
    #[doc(hidden)]
    Poll,
    /// Internal: the log bus has a batch, or the poll interval passed.
    #[doc(hidden)]
    Wake,
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for SinkMessage {}

/// What the sink is started with.
pub struct SinkArgs {
    journal: Journal,
    config: NatsSinkConfig,
    progress: Option<Progress>,
}

/// The state of a running sink.
pub struct SinkState {
    journal: Journal,
    config: NatsSinkConfig,
    progress: Option<Progress>,
    /// `None` until connected, and again after a failure.
    jetstream: Option<jetstream::Context>,
    tail: LogTail,
    /// The last offset published and committed.
    offset: u64,
    waker: Option<TailWaker>,
    /// When the lag was last measured (it costs a read of the journal's head).
    lag_sampled: Option<Instant>,
    /// After a failure, no attempt before this (wake-ups by the log bus meanwhile wait).
    retry_at: Option<Instant>,
}

/// How often the sink measures its lag behind the journal's head.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The sink actor.
#[derive(Debug, Default)]
pub struct NatsSink;

impl NatsSink {
    /// A child spec for a supervisor; each start connects and resumes.
    pub fn spec(journal: Journal, config: NatsSinkConfig) -> ChildSpec {
        ChildSpec::new(SERVICE_NAME, "sink", move |context: ChildContext| {
            let arguments = SinkArgs {
                journal: journal.clone(),
                config: config.clone(),
                progress: Some(context.progress),
            };
            async move {
                let (actor, _join) =
                    Self::spawn_linked(None, NatsSink, arguments, context.supervisor).await?;
                Ok(actor.get_cell())
            }
        })
    }
}

/// A sink running under a supervisor of its own (`/sink`, in the actor tree).
pub struct RunningSink {
    supervisor: ActorRef<SupervisorMessage>,
    join: JoinHandle<()>,
}

impl RunningSink {
    /// Starts the sink on `journal`'s log.
    pub async fn start(
        journal: &Journal,
        config: NatsSinkConfig,
        registry: &Registry,
    ) -> Result<Self, Error> {
        config.validate().map_err(failed)?;
        let spec = NatsSink::spec(journal.clone(), config);
        let arguments = SupervisorArgs::new("/sink", SupervisionConfig::default(), vec![spec])
            .with_registry(registry.clone());
        let (supervisor, join) =
            Actor::spawn(None, Supervisor, arguments)
                .await
                .map_err(|error| Error::StartFailed {
                    actor: "/sink".to_owned(),
                    reason: error.to_string(),
                })?;
        Ok(Self { supervisor, join })
    }

    /// Stops it; what it published and committed stays.
    pub async fn stop(self) {
        self.supervisor.stop(None);
        let _ = self.join.await;
    }
}

fn failed(reason: impl std::fmt::Display) -> Error {
    Error::Failed {
        actor: SERVICE_NAME.to_owned(),
        reason: reason.to_string(),
    }
}

/// Connects and makes sure the stream exists.
async fn connect(config: &NatsSinkConfig) -> Result<(jetstream::Context, stream::Stream), Error> {
    let client = tokio::time::timeout(config.timeout, async_nats::connect(&config.url))
        .await
        .map_err(|_| {
            failed(format!(
                "no answer from {} within {:?}",
                config.url, config.timeout
            ))
        })?
        .map_err(|error| failed(format!("connecting to {}: {error}", config.url)))?;
    let context = jetstream::new(client);
    let stream = context
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            duplicate_window: config.duplicate_window,
            ..stream::Config::default()
        })
        .await
        .map_err(|error| failed(format!("stream {}: {error}", config.stream)))?;
    Ok((context, stream))
}

/// The offset of the stream's last message (0 if it has none, or none of ours).
async fn last_published(stream: &mut stream::Stream) -> Result<u64, Error> {
    let last = stream.info().await.map_err(failed)?.state.last_sequence;
    if last == 0 {
        return Ok(0);
    }
    let message = stream.get_raw_message(last).await.map_err(failed)?;
    Ok(message
        .headers
        .get(NATS_MESSAGE_ID)
        .and_then(|id| id.as_str().parse().ok())
        .unwrap_or(0))
}

/// The subject of `stored`: the prefix, the event's name, its entity (the stream's id, with
/// what a subject token cannot hold replaced by `_`).
fn subject_of(prefix: &str, stored: &StoredEvent) -> String {
    let entity = stored.stream.split_once('|').map_or("", |(_, id)| id);
    let entity: String = entity
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    let entity = if entity.is_empty() { "_" } else { &entity };
    format!("{prefix}.{}.{entity}", stored.name)
}

/// The subject and the body the sink publishes for `stored` under `prefix`.
pub fn message_of(prefix: &str, stored: &StoredEvent) -> (String, Vec<u8>) {
    let body = event_json::envelope(stored);
    if body["event"].is_null() {
        metrics::counter!("tradefloor_sink_undecodable_total", "sink" => "nats").increment(1);
    }
    let body = serde_json::to_vec(&body).expect("a JSON value serializes");
    (subject_of(prefix, stored), body)
}

impl SinkState {
    /// Connects if not connected, and resumes after the larger of the committed offset and
    /// the stream's last message: the connection.
    async fn connected(&mut self) -> Result<jetstream::Context, Error> {
        if let Some(jetstream) = &self.jetstream {
            return Ok(jetstream.clone());
        }
        let (jetstream, mut stream) = connect(&self.config).await?;
        let published = last_published(&mut stream).await?;
        let offset = self.offset.max(published);
        if offset != self.tail.cursor() {
            self.tail.seek(offset);
        }
        tracing::info!(committed = self.offset, published, offset,
            stream = %self.config.stream, "sink connected; resumes");
        self.offset = offset;
        metrics::gauge!("tradefloor_sink_connected", "sink" => "nats").set(1.0);
        self.jetstream = Some(jetstream.clone());
        Ok(jetstream)
    }

    /// Sets `tradefloor_sink_lag_events` (the journal's head minus the committed offset), at
    /// most every [`LAG_SAMPLE_INTERVAL`].
    async fn sample_lag(&mut self) {
        if self
            .lag_sampled
            .is_some_and(|sampled| sampled.elapsed() < LAG_SAMPLE_INTERVAL)
        {
            return;
        }
        self.lag_sampled = Some(Instant::now());
        if let Ok(head) = self.journal.last_offset().await {
            let lag = head.saturating_sub(self.offset);
            metrics::gauge!("tradefloor_sink_lag_events", "sink" => "nats").set(lag as f64);
        }
    }

    /// Forgets the connection and goes back to the committed offset: the batch in hand was
    /// not acknowledged, so it is taken again.
    fn disconnect(&mut self, error: &Error) {
        tracing::warn!(%error, retry_in = ?self.config.retry_interval, "sink failed; retrying");
        self.jetstream = None;
        self.tail.seek(self.offset);
        self.retry_at = Some(Instant::now() + self.config.retry_interval);
        metrics::gauge!("tradefloor_sink_connected", "sink" => "nats").set(0.0);
        metrics::counter!("tradefloor_sink_failures_total", "sink" => "nats").increment(1);
    }

    /// Publishes the tail's next batch as one pipeline and commits its offset; its size.
    async fn step(&mut self) -> Result<usize, Error> {
        let jetstream = self.connected().await?;
        let events = self.tail.next().await.map_err(failed)?;
        let Some(last) = events.last().map(|event| event.global_offset) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(events.len());
        for stored in &events {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, stored.global_offset.to_string().as_str());
            let (subject, body) = message_of(&self.config.subject_prefix, stored);
            let message = PublishMessage::build()
                .payload(body.into())
                .headers(headers);
            let ack = jetstream
                .send_publish(subject, message)
                .await
                .map_err(failed)?;
            acks.push(ack);
        }
        let duplicates = tokio::time::timeout(self.config.timeout, async {
            let mut duplicates = 0;
            for ack in acks {
                duplicates += u64::from(ack.await.map_err(failed)?.duplicate);
            }
            Ok::<_, Error>(duplicates)
        })
        .await
        .map_err(|_| failed("JetStream did not acknowledge a batch in time"))??;
        OffsetStore::new(self.journal.database().clone())
            .commit(OFFSET_NAME, 0, last)
            .await
            .map_err(failed)?;
        let count = events.len() as u64;
        self.offset = last;
        metrics::counter!("tradefloor_sink_published_total", "sink" => "nats").increment(count);
        metrics::counter!("tradefloor_sink_duplicates_total", "sink" => "nats")
            .increment(duplicates);
        metrics::gauge!("tradefloor_sink_offset", "sink" => "nats").set(last as f64);
        Ok(events.len())
    }
}

impl Actor for NatsSink {
    type Msg = SinkMessage;
    type State = SinkState;
    type Arguments = SinkArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SinkMessage>,
        arguments: SinkArgs,
    ) -> Result<SinkState, ActorProcessingErr> {
        arguments.config.validate().map_err(failed)?;
        let offset = OffsetStore::new(arguments.journal.database().clone())
            .load(OFFSET_NAME, 0)
            .await?;
        let batch = arguments.config.batch_events_max;
        Ok(SinkState {
            tail: LogTail::new(arguments.journal.clone(), Filter::All, offset, batch),
            journal: arguments.journal,
            config: arguments.config,
            progress: arguments.progress,
            jetstream: None,
            offset,
            waker: None,
            lag_sampled: None,
            retry_at: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SinkMessage>,
        state: &mut SinkState,
    ) -> Result<(), ActorProcessingErr> {
        state.waker = Some(TailWaker::spawn(
            &state.journal,
            myself.clone(),
            state.config.poll_interval,
            state.config.batch_interval_min,
            None,
            || SinkMessage::Wake,
        ));
        myself.send_message(SinkMessage::Poll)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SinkMessage>,
        message: SinkMessage,
        state: &mut SinkState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SinkMessage::Wake | SinkMessage::Poll => {
                if let (SinkMessage::Wake, Some(waker)) = (&message, &state.waker) {
                    waker.woken(&mut state.tail);
                }
                if let Some(progress) = &state.progress {
                    progress.record();
                }
                state.sample_lag().await;
                if state.retry_at.is_some_and(|at| Instant::now() < at) {
                    // Failed lately: the Poll sent after `retry_interval` tries again.
                    return Ok(());
                }
                state.retry_at = None;
                match state.step().await {
                    Ok(_) if state.tail.has_more() => myself.send_message(SinkMessage::Poll)?,
                    Ok(_) => {}
                    Err(error) => {
                        state.disconnect(&error);
                        myself.send_after(state.config.retry_interval, || SinkMessage::Poll);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tradefloor_persistence::Decoded;

    use super::*;

    fn stored(stream: &str, name: &str) -> StoredEvent {
        StoredEvent {
            global_offset: 9,
            stream: stream.to_owned(),
            kind: stream.split('|').next().unwrap_or_default().to_owned(),
            sequence: 1,
            name: name.to_owned(),
            schema_version: 1,
            payload: vec![0xff],
            tags: Vec::new(),
            recorded_at: 0,
            effective_at: 0,
            decoded: Decoded::default(),
        }
    }

    #[test]
    fn a_subject_names_the_event_and_its_entity_in_tokens() {
        let traded = stored("order_book|BTC-USD", "book.traded");
        assert_eq!(
            subject_of("tradefloor", &traded),
            "tradefloor.book.traded.BTC-USD"
        );
        let odd = stored("account|a.b:c*>", "account.deposited");
        assert_eq!(subject_of("tf.x", &odd), "tf.x.account.deposited.a_b_c__");
    }

    #[test]
    fn an_undecodable_event_is_published_with_its_error() {
        let (_, body) = message_of("tf", &stored("account|alice", "account.deposited"));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["offset"], 9);
        assert!(body["event"].is_null());
        assert!(
            body["decode_error"]
                .as_str()
                .is_some_and(|reason| !reason.is_empty())
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let config = |stream: &str, prefix: &str| NatsSinkConfig {
            stream: stream.to_owned(),
            subject_prefix: prefix.to_owned(),
            ..NatsSinkConfig::default()
        };
        assert!(config("TRADEFLOOR", "tradefloor.live").validate().is_ok());
        assert!(config("TRADE.FLOOR", "tradefloor").validate().is_err());
        assert!(config("TF", "trade..floor").validate().is_err());
        assert!(config("TF", "trade.>").validate().is_err());
    }
}
