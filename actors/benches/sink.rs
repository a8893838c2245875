//! Events per second from the journal to NATS JetStream through the sink, against a raw
//! pipelined publish of the very same messages to the same server in the same run.
//!
//! ```sh
//! NATS_URL=nats://127.0.0.1:4222 cargo bench -p tradefloor-actors --bench sink
//! NATS_URL=… EVENTS=200000 cargo bench -p tradefloor-actors --bench sink
//! ```
//!
//! `harness = false`, one run, one fixed workload: a fresh SQLite journal holding `EVENTS`
//! account deposits over 1 000 accounts (written first, not measured). *Raw*: those events'
//! subjects and bodies, built beforehand, published with their `Nats-Msg-Id` in pipelined
//! batches of 1 024 (send all, then await every acknowledgement) to a fresh stream: what this
//! server takes at this message size. *Sink*: a [`RunningSink`] started on the journal,
//! publishing to another fresh stream from offset 0, timed until the stream holds every event
//! (reading the journal, decoding, JSON, publishing and its offset commits included).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use tradefloor_actors::Persistent;
use tradefloor_actors::runtime::registry::Registry;
use tradefloor_actors::trading::sink::{NatsSinkConfig, RunningSink, message_of};
use tradefloor_domain::account::{Account, AccountEvent, CommandRef};
use tradefloor_domain::{Amount, Asset, CommandId, Timestamp};
use tradefloor_persistence::{
    AppendRequest, Database, Filter, Journal, JournalConfig, StoredEvent,
};

const ACCOUNTS: usize = 1_000;
const PIPELINE: usize = 1_024;

fn events() -> usize {
    std::env::var("EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

/// Writes deposits over [`ACCOUNTS`] accounts, `count` rounded up to a multiple of them,
/// 100 per append.
async fn fill(journal: &Journal, count: usize) {
    let codec = Account::codec();
    let per_account = count.div_ceil(ACCOUNTS);
    let mut appends = tokio::task::JoinSet::new();
    for account in 0..ACCOUNTS {
        let journal = journal.clone();
        let deposits: Vec<_> = (0..per_account)
            .map(|index| {
                let event = AccountEvent::Deposited {
                    command: CommandRef {
                        id: CommandId::new(&format!("d-{index}")).expect("an id"),
                        fingerprint: index as u64,
                    },
                    asset: Asset::new("USD").expect("an asset"),
                    amount: Amount(1 + index as u64),
                    effective_at: Timestamp(1_764_547_200_000_000),
                    at: Timestamp(1_764_547_200_000_000),
                };
                codec
                    .to_new_event(&event, Vec::new(), None)
                    .expect("encodes")
            })
            .collect();
        appends.spawn(async move {
            let mut sequence = 0;
            for chunk in deposits.chunks(100) {
                let request = AppendRequest {
                    stream: format!("account|acct-{account}"),
                    kind: "account".to_owned(),
                    expected_sequence: sequence,
                    events: chunk.to_vec(),
                    fence: None,
                };
                journal.append(request).await.expect("appends");
                sequence += chunk.len() as u64;
            }
        });
    }
    while appends.join_next().await.is_some() {}
}

async fn read_everything(journal: &Journal) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |event: &StoredEvent| event.global_offset);
        let page = journal
            .read_all(after, 10_000, &Filter::All)
            .await
            .expect("reads");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

async fn fresh_stream(context: &jetstream::Context, name: &str) -> stream::Stream {
    let _ = context.delete_stream(name).await;
    context
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            ..stream::Config::default()
        })
        .await
        .expect("a stream")
}

async fn stored_count(stream: &mut stream::Stream) -> u64 {
    stream.info().await.expect("info").state.messages
}

fn main() {
    let Ok(url) = std::env::var("NATS_URL") else {
        println!("NATS_URL is not set: the sink bench is skipped");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(url));
}

async fn run(url: String) {
    let count = events();
    let dir = tempfile::tempdir().expect("a directory");
    let config = JournalConfig::default();
    let database_url = format!("sqlite:{}", dir.path().join("journal.sqlite").display());
    let database = Database::connect(&database_url, &config)
        .await
        .expect("opens");
    let journal = Journal::open(database, config).await.expect("opens");
    fill(&journal, count).await;
    let stored = read_everything(&journal).await;
    let count = stored.len();
    let context = jetstream::new(async_nats::connect(&url).await.expect("NATS answers"));

    // Raw: the same messages, pipelined.
    let raw_name = "TFBENCHRAW";
    let mut raw = fresh_stream(&context, raw_name).await;
    let messages: Vec<(String, Vec<u8>, u64)> = stored
        .iter()
        .map(|event| {
            let (subject, body) = message_of(&raw_name.to_lowercase(), event);
            (subject, body, event.global_offset)
        })
        .collect();
    let bytes: usize = messages.iter().map(|(_, body, _)| body.len()).sum();
    let started = Instant::now();
    for batch in messages.chunks(PIPELINE) {
        let mut acks = Vec::with_capacity(batch.len());
        for (subject, body, offset) in batch {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, offset.to_string().as_str());
            let message = PublishMessage::build()
                .payload(body.clone().into())
                .headers(headers);
            acks.push(
                context
                    .send_publish(subject.clone(), message)
                    .await
                    .expect("sent"),
            );
        }
        for ack in acks {
            ack.await.expect("acknowledged");
        }
    }
    let raw_seconds = started.elapsed().as_secs_f64();
    assert_eq!(stored_count(&mut raw).await, count as u64);

    // The sink, from offset 0 of the journal.
    let sink_name = "TFBENCHSINK";
    let mut sink_stream = fresh_stream(&context, sink_name).await;
    let sink_config = NatsSinkConfig {
        url: url.clone(),
        stream: sink_name.to_owned(),
        subject_prefix: sink_name.to_lowercase(),
        ..NatsSinkConfig::default()
    };
    let started = Instant::now();
    let sink = RunningSink::start(&journal, sink_config, &Registry::default())
        .await
        .expect("the sink starts");
    while stored_count(&mut sink_stream).await < count as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sink_seconds = started.elapsed().as_secs_f64();
    sink.stop().await;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("| events | bytes per body | raw pipelined publish | sink | sink / raw | load |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {count} | {} | {:.0} events/s | {:.0} events/s | **{:.2}** | {} |",
        bytes / count.max(1),
        count as f64 / raw_seconds,
        count as f64 / sink_seconds,
        raw_seconds / sink_seconds,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = context.delete_stream(raw_name).await;
    let _ = context.delete_stream(sink_name).await;
}
