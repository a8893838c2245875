//! The log's broker sink against the real nats-server (JetStream): a node publishes every
//! event of its journal to a stream, each exactly once and in offset order, across a SIGKILL
//! in the middle of a flow of commands and across a lost offset commit (it resumes after the
//! stream's last message, whatever JetStream's duplicate window); subjects name the event
//! and its entity; a broker that cannot be reached leaves the node serving. Needs `NATS_URL` (`.ci/run` sets it and starts
//! nats-server if it is down); skipped, saying so, without it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use serde_json::Value;
use tradefloor_persistence::{Database, Filter, Journal, JournalConfig, OffsetStore};
use tradefloor_tests::{Http, Node, NodeOptions, deposit, limit_order, list_market, place};

/// How long the sink may take to publish what the journal holds.
const CATCH_UP: Duration = Duration::from_secs(60);

fn nats_url() -> Option<String> {
    let url = std::env::var("NATS_URL").ok();
    if url.is_none() {
        eprintln!("NATS_URL is not set: the JetStream sink test is skipped");
    }
    url
}

/// A stream name and subject prefix of this test's own.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos();
    format!("{prefix}{}{nanos}", std::process::id())
}

fn config(url: &str, stream: &str, subjects: &str) -> String {
    format!(
        "[sink.nats]\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject_prefix = \"{subjects}\"\n\
         batch_events_max = 64\n"
    )
}

/// A stopped node's journal.
async fn journal_of(node: &Node) -> Journal {
    let config = JournalConfig::default();
    let url = format!("sqlite:{}", node.data_dir.join("journal.sqlite").display());
    let database = Database::connect(&url, &config).await.expect("opens");
    Journal::open(database, config).await.expect("opens")
}

/// Every event offset of a stopped node's journal, in order.
async fn journal_offsets(node: &Node) -> Vec<u64> {
    let journal = journal_of(node).await;
    let mut offsets = Vec::new();
    loop {
        let after = offsets.last().copied().unwrap_or(0);
        let page = journal
            .read_all(after, 1_000, &Filter::All)
            .await
            .expect("reads");
        if page.is_empty() {
            return offsets;
        }
        offsets.extend(page.iter().map(|event| event.global_offset));
    }
}

/// The log's last offset, as `GET /v1/events` pages it.
async fn log_head(http: &Http) -> u64 {
    let mut after = 0;
    loop {
        let (status, page) = http
            .get(&format!("/v1/events?after={after}&limit=1000"))
            .await;
        assert_eq!(status, 200, "{page}");
        let next = page["next_after"].as_u64().expect("next_after");
        if next == after {
            return after;
        }
        after = next;
    }
}

/// Every message of the stream: its `Nats-Msg-Id`, subject and body, in stream order.
async fn messages(stream: &jetstream::stream::Stream) -> Vec<(u64, String, Value)> {
    let mut stream = stream.clone();
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.expect("a message");
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .and_then(|id| id.as_str().parse().ok())
            .expect("every message carries its offset as Nats-Msg-Id");
        let body = serde_json::from_slice(&message.payload).expect("a JSON body");
        messages.push((id, message.subject.to_string(), body));
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_jetstream_once_across_a_kill() {
    let Some(url) = nats_url() else { return };
    let (stream_name, subjects) = (unique("TFSINK"), unique("tfsink"));
    let mut options = NodeOptions::with_config(config(&url, &stream_name, &subjects));
    options.capture_logs = true;
    options.env = vec![
        ("TRADEFLOOR_LOG_FORMAT".to_owned(), "json".to_owned()),
        (
            "TRADEFLOOR_LOG_FILTER".to_owned(),
            "warn,tradefloor_actors::trading::sink=info".to_owned(),
        ),
    ];
    let mut node = Node::start(options).await;
    let http = node.http(None);
    list_market(&http).await;
    deposit(&http, "alice", "USD", 1_000_000).await;
    deposit(&http, "bob", "BTC", 1_000).await;
    place(&http, &limit_order("bob", "sell", 100, 10)).await;
    place(&http, &limit_order("alice", "buy", 100, 4)).await;

    // Commands keep flowing while the node is killed: the sink is mid-batch at some point.
    let flow = {
        let http = http.clone();
        tokio::spawn(async move {
            for round in 0..400_u64 {
                let body = serde_json::json!({"asset": "USD", "amount": 1 + round});
                if http
                    .try_call(
                        tradefloor_tests::Method::POST,
                        "/v1/accounts/carol/deposits",
                        Some(&body),
                    )
                    .await
                    .is_err()
                {
                    return round;
                }
            }
            400
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    node.kill().await;
    let sent = flow.await.expect("the flow ends");
    assert!(sent > 0, "some deposits went through before the kill");
    node.restart().await;
    let http = node.http(None);
    place(&http, &limit_order("alice", "buy", 100, 3)).await;
    deposit(&http, "dave", "USD", 5).await;

    let client = async_nats::connect(&url).await.expect("NATS answers");
    let context = jetstream::new(client);
    let stream = context
        .get_stream(&stream_name)
        .await
        .expect("the sink made its stream");
    // Caught up once dave's deposit, the last command, is in the stream (settlements of
    // alice's order may follow it in the log).
    let started = Instant::now();
    while !messages(&stream)
        .await
        .iter()
        .any(|(_, _, body)| body["stream"] == "account|dave")
    {
        assert!(
            started.elapsed() < CATCH_UP,
            "the sink did not catch up: {}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(node.stop().await, Some(0));

    // The sink's offset commit lost (as if the node died between JetStream's acknowledgement
    // and the commit): it resumes after the stream's last message, not from the start.
    let last_published = messages(&stream).await.last().expect("some").0;
    let journal = journal_of(&node).await;
    let mut transaction = journal.database().begin().await.expect("a transaction");
    OffsetStore::reset_in(&mut transaction, "sink.nats", 0)
        .await
        .expect("reset");
    transaction.commit().await.expect("committed");
    drop(journal);
    node.restart().await;
    let resumed =
        format!("\"committed\":0,\"published\":{last_published},\"offset\":{last_published}");
    let started = Instant::now();
    while !node.logs().contains(&resumed) {
        assert!(
            started.elapsed() < CATCH_UP,
            "no resume after the stream: {}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything the journal holds now (the log's head, read through the node) goes out.
    let http = node.http(None);
    let head = log_head(&http).await;
    let started = Instant::now();
    while messages(&stream).await.last().map(|(id, _, _)| *id) < Some(head) {
        assert!(
            started.elapsed() < CATCH_UP,
            "the sink did not reach {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.stop().await, Some(0));

    // Every event once, in offset order, up to the last published (a stop may append after
    // its sink stopped: those go out at the next start).
    let offsets = journal_offsets(&node).await;
    let published = messages(&stream).await;
    let ids: Vec<u64> = published.iter().map(|(id, _, _)| *id).collect();
    let last = *ids.last().expect("published");
    assert!(last >= head, "{last} < {head}");
    let journaled: Vec<u64> = offsets
        .into_iter()
        .take_while(|offset| *offset <= last)
        .collect();
    assert_eq!(ids, journaled, "every event once, in offset order");
    for (id, subject, body) in &published {
        assert_eq!(body["offset"], *id);
        let name = body["name"].as_str().expect("a name");
        let entity = body["stream"]
            .as_str()
            .and_then(|stream| stream.split_once('|'))
            .map(|(_, entity)| entity)
            .expect("a stream");
        assert_eq!(*subject, format!("{subjects}.{name}.{entity}"));
        assert!(body["event"].is_object(), "decoded: {body}");
    }
    let traded = published
        .iter()
        .filter(|(_, subject, _)| *subject == format!("{subjects}.book.traded.BTC-USD"))
        .count();
    assert_eq!(traded, 2, "two trades, each once");
    context
        .delete_stream(&stream_name)
        .await
        .expect("cleaned up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_out_of_reach_leaves_the_node_serving() {
    // Nothing listens on port 9 (discard) here: every connection is refused.
    let options = NodeOptions::with_config(config("nats://127.0.0.1:9", "TFDOWN", "tfdown"));
    let mut node = Node::start(options).await;
    let http = node.http(None);
    list_market(&http).await;
    deposit(&http, "alice", "USD", 10).await;
    let started = Instant::now();
    loop {
        let (_, metrics) = http.get("/metrics").await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        // Failures counted, not connected, and the market and the deposit waiting.
        let lag = text
            .lines()
            .find_map(|line| line.strip_prefix("tradefloor_sink_lag_events{sink=\"nats\"} "))
            .and_then(|value| value.trim().parse::<f64>().ok());
        if text.contains("tradefloor_sink_failures_total") && lag.is_some_and(|lag| lag >= 2.0) {
            assert!(
                text.contains("tradefloor_sink_connected{sink=\"nats\"} 0"),
                "{text}"
            );
            break;
        }
        assert!(
            started.elapsed() < CATCH_UP,
            "no sink failure or lag: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(http.get("/health/ready").await.0, 200);
    assert_eq!(node.stop().await, Some(0));
}
