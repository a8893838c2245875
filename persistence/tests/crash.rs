//! Crash safety: a child process appends as fast as it can and reports every acknowledged
//! append; the test kills it with SIGKILL mid-stream, reopens the journal and checks that
//! every acknowledged append is there and that nothing torn is visible (appends are whole,
//! sequences and offsets have no gaps, every payload is intact).
//!
//! The child is this same test binary, re-run on the ignored `child_writer` test with the
//! journal URL in `CRASH_WRITER_URL`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tradefloor_persistence::{AppendRequest, Database, Filter, Journal, JournalConfig, NewEvent};

const STREAMS: u64 = 16;
const EVENTS_PER_APPEND: u64 = 3;
const ACKS_BEFORE_KILL: usize = 400;

fn payload(stream: u64, sequence: u64) -> Vec<u8> {
    format!("stream {stream} event {sequence}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash tests; run by them, not on its own"]
async fn child_writer() {
    let url = std::env::var("CRASH_WRITER_URL").expect("run by the crash tests");
    let schema = std::env::var("CRASH_WRITER_SCHEMA").ok();
    let config = JournalConfig::default();
    let database = match &schema {
        Some(schema) => Database::connect_postgres(&url, Some(schema), &config)
            .await
            .unwrap(),
        None => Database::connect(&url, &config).await.unwrap(),
    };
    let journal = Journal::open(database, config).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let journal = journal.clone();
        writers.spawn(async move {
            let mut head = 0;
            loop {
                let events = (1..=EVENTS_PER_APPEND)
                    .map(|index| NewEvent {
                        name: "written".to_owned(),
                        schema_version: 1,
                        payload: payload(stream, head + index),
                        tags: vec![format!("stream:{stream}")],
                        effective_at: None,
                    })
                    .collect();
                let request = AppendRequest {
                    stream: format!("crash|{stream}"),
                    kind: "crash".to_owned(),
                    expected_sequence: head,
                    events,
                    fence: None,
                };
                let outcome = journal.append(request).await.unwrap();
                head = outcome.last_sequence;
                // Acknowledged: only now may the parent count on it.
                println!("ack {stream} {head}");
            }
        });
    }
    // The writers append until the parent kills this process: one ending means it failed.
    let ended = writers.join_next().await;
    panic!("a writer stopped: {ended:?}");
}

/// Runs the child against `url`, kills it after enough acknowledgements, returns the highest
/// acknowledged sequence per stream.
async fn run_and_kill(url: &str, schema: Option<&str>) -> BTreeMap<u64, u64> {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CRASH_WRITER_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(schema) = schema {
        command.env("CRASH_WRITER_SCHEMA", schema);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = BTreeMap::new();
    let mut acks = 0;
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let mut words = line.split_whitespace();
            if words.next() != Some("ack") {
                continue;
            }
            let stream: u64 = words.next().unwrap().parse().unwrap();
            let head: u64 = words.next().unwrap().parse().unwrap();
            let known = acknowledged.entry(stream).or_insert(0);
            *known = head.max(*known);
            acks += 1;
            if acks == ACKS_BEFORE_KILL {
                return;
            }
        }
        panic!("the child stopped before {ACKS_BEFORE_KILL} acknowledgements");
    };
    tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the child acknowledges appends");
    // SIGKILL in the middle of appends: no chance to flush or roll back anything itself.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    acknowledged
}

async fn verify(journal: &Journal, acknowledged: &BTreeMap<u64, u64>) {
    let mut total = 0;
    for stream in 0..STREAMS {
        let events = journal
            .read_stream(&format!("crash|{stream}"), 1, 1_000_000)
            .await
            .unwrap();
        let acked = acknowledged.get(&stream).copied().unwrap_or(0);
        assert!(
            events.len() as u64 >= acked,
            "stream {stream}: {} stored, {acked} acknowledged",
            events.len()
        );
        assert_eq!(
            events.len() as u64 % EVENTS_PER_APPEND,
            0,
            "stream {stream}: a torn append is visible"
        );
        for (index, event) in events.iter().enumerate() {
            assert_eq!(
                event.sequence,
                index as u64 + 1,
                "stream {stream}: a gap in sequences"
            );
            assert_eq!(
                event.payload,
                payload(stream, event.sequence),
                "stream {stream}: a damaged payload"
            );
        }
        assert_eq!(
            journal
                .last_sequence(&format!("crash|{stream}"))
                .await
                .unwrap(),
            events.len() as u64
        );
        total += events.len() as u64;
    }
    let mut expected_offset = 1;
    loop {
        let batch = journal
            .read_all(expected_offset - 1, 10_000, &Filter::All)
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for event in batch {
            assert_eq!(
                event.global_offset, expected_offset,
                "a gap in global offsets"
            );
            expected_offset += 1;
        }
    }
    assert_eq!(expected_offset - 1, total);
    assert_eq!(journal.last_offset().await.unwrap(), total);
    // The journal still takes appends where each stream really ends.
    let head = journal.last_sequence("crash|0").await.unwrap();
    let request = AppendRequest {
        stream: "crash|0".to_owned(),
        kind: "crash".to_owned(),
        expected_sequence: head,
        events: vec![NewEvent {
            name: "written".to_owned(),
            schema_version: 1,
            payload: payload(0, head + 1),
            tags: Vec::new(),
            effective_at: None,
        }],
        fence: None,
    };
    journal.append(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_append_through_a_kill() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let acknowledged = run_and_kill(&url, None).await;
    let config = JournalConfig::default();
    let journal = Journal::open(Database::connect(&url, &config).await.unwrap(), config)
        .await
        .unwrap();
    verify(&journal, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_append_through_a_kill() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipped: DATABASE_URL is not set, so the PostgreSQL crash test did not run");
        return;
    };
    let schema = format!("crash_{}", std::process::id());
    let acknowledged = run_and_kill(&url, Some(&schema)).await;
    let config = JournalConfig::default();
    let database = Database::connect_postgres(&url, Some(&schema), &config)
        .await
        .unwrap();
    let journal = Journal::open(database.clone(), config).await.unwrap();
    verify(&journal, &acknowledged).await;
    if let Database::Postgres(pool) = &database {
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(pool)
            .await
            .unwrap();
    }
}
