//! Journal benchmarks, each reported as a ratio against a baseline measured in the same run.
//!
//! - Appends: `CONCURRENT_STREAMS` (as many as `batch_events_max`, so a group-commit batch can
//!   fill up like a baseline transaction) appending one event at a time through the journal
//!   against a raw batched sqlx insert of the same rows into the same schema
//!   (`batch_events_max` rows per transaction, in the statement form the journal uses on that
//!   backend: multi-row `INSERT … VALUES` on SQLite, `UNNEST` arrays on PostgreSQL).
//!   Target ≥ 0.5.
//! - Replay: reading one stream and the global log back from SQLite. Target ≥ 1 M events/s.
//!   Reported next to the ceiling of sqlx itself on the same data: `fetch_all` of one integer
//!   column, no decoding.
//!
//! Run: `cargo bench -p tradefloor-persistence --bench journal` (PostgreSQL too when
//! `DATABASE_URL` is set; `-- append` or `-- replay` for one part). Not criterion: every figure is a paired measurement against its
//! baseline on a fresh database, repeated, and the median reported.

use std::time::{Duration, Instant};

use sqlx::QueryBuilder;
use tradefloor_persistence::{AppendRequest, Database, Filter, Journal, JournalConfig, NewEvent};

const APPEND_EVENTS: u64 = 65_536;
const CONCURRENT_STREAMS: u64 = 1_024;
const REPLAY_EVENTS: u64 = 200_000;
const REPETITIONS: usize = 3;
const PAYLOAD_BYTES: usize = 64;

fn new_event(index: u64) -> NewEvent {
    NewEvent {
        name: "account.deposited".to_owned(),
        schema_version: 1,
        payload: vec![(index % 251) as u8; PAYLOAD_BYTES],
        tags: Vec::new(),
        effective_at: None,
    }
}

struct Backend {
    name: &'static str,
    url: String,
}

impl Backend {
    /// A fresh, migrated database, and how to clean it up.
    async fn fresh(
        &self,
        label: &str,
        config: &JournalConfig,
    ) -> (Database, Option<tempfile::TempDir>) {
        if self.name == "sqlite" {
            let directory = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", directory.path().join("bench.db").display());
            let database = Database::connect(&url, config).await.unwrap();
            database.migrate().await.unwrap();
            (database, Some(directory))
        } else {
            let schema = format!("bench_{label}_{}", std::process::id());
            let database = Database::connect_postgres(&self.url, Some(&schema), config)
                .await
                .unwrap();
            if let Database::Postgres(pool) = &database {
                for table in [
                    "events",
                    "event_tags",
                    "streams",
                    "fences",
                    "snapshots",
                    "offsets",
                    "journal_head",
                    "_sqlx_migrations",
                ] {
                    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                        .execute(pool)
                        .await
                        .unwrap();
                }
            }
            database.migrate().await.unwrap();
            (database, None)
        }
    }
}

/// The baseline: the same rows, `batch` rows a transaction, in the statement form the journal
/// itself uses on that backend (multi-row `INSERT … VALUES` on SQLite, `UNNEST` arrays on
/// PostgreSQL).
async fn raw_insert(database: &Database, events: u64, batch: u64) -> Duration {
    let started = Instant::now();
    let mut offset = 0u64;
    while offset < events {
        let rows: Vec<u64> = (offset + 1..=(offset + batch).min(events)).collect();
        macro_rules! insert {
            ($pool:expr, $database:ty) => {{
                let mut transaction = $pool.begin().await.unwrap();
                for chunk in rows.chunks(batch as usize) {
                    let mut query = QueryBuilder::<$database>::new(
                        "INSERT INTO events (global_offset, stream, kind, sequence, event_name, \
                         schema_version, payload, tags, recorded_at, effective_at) ",
                    );
                    query.push_values(chunk, |mut values, index| {
                        let stream = index % CONCURRENT_STREAMS;
                        let event = new_event(*index);
                        values
                            .push_bind(*index as i64)
                            .push_bind(format!("account|{stream}"))
                            .push_bind("account")
                            .push_bind((*index / CONCURRENT_STREAMS + 1) as i64)
                            .push_bind(event.name)
                            .push_bind(1i32)
                            .push_bind(event.payload)
                            .push_bind("")
                            .push_bind(1i64)
                            .push_bind(1i64);
                    });
                    query.build().execute(&mut *transaction).await.unwrap();
                }
                transaction.commit().await.unwrap();
            }};
        }
        match database {
            Database::Sqlite(pool) => insert!(pool, sqlx::Sqlite),
            // The same array insert the journal uses on PostgreSQL, so the ratio measures the
            // journal's own work and not a faster statement form.
            Database::Postgres(pool) => raw_insert_unnest(pool, &rows).await,
        }
        offset += rows.len() as u64;
    }
    started.elapsed()
}

/// One transaction inserting `rows` with a single `INSERT … SELECT FROM UNNEST(arrays)`.
async fn raw_insert_unnest(pool: &sqlx::PgPool, rows: &[u64]) {
    let mut columns = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for index in rows {
        let event = new_event(*index);
        columns.0.push(*index as i64);
        columns
            .1
            .push(format!("account|{}", index % CONCURRENT_STREAMS));
        columns.2.push((*index / CONCURRENT_STREAMS + 1) as i64);
        columns.3.push(event.name);
        columns.4.push(event.payload);
        columns.5.push(1i64);
    }
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (global_offset, stream, kind, sequence, event_name, schema_version, \
         payload, tags, recorded_at, effective_at) \
         SELECT global_offset, stream, 'account', sequence, event_name, 1, payload, '', 1, \
         effective_at FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], \
         $5::bytea[], $6::bigint[]) AS row(global_offset, stream, sequence, event_name, payload, \
         effective_at)",
    )
    .bind(columns.0)
    .bind(columns.1)
    .bind(columns.2)
    .bind(columns.3)
    .bind(columns.4)
    .bind(columns.5)
    .execute(&mut *transaction)
    .await
    .unwrap();
    transaction.commit().await.unwrap();
}

/// The journal: `CONCURRENT_STREAMS` writers, one event per append, awaiting each.
async fn journal_appends(journal: &Journal, events: u64) -> Duration {
    let per_stream = events / CONCURRENT_STREAMS;
    let started = Instant::now();
    let writers: Vec<_> = (0..CONCURRENT_STREAMS)
        .map(|stream| {
            let journal = journal.clone();
            tokio::spawn(async move {
                for sequence in 0..per_stream {
                    let request = AppendRequest {
                        stream: format!("account|{stream}"),
                        kind: "account".to_owned(),
                        expected_sequence: sequence,
                        events: vec![new_event(sequence)],
                        fence: None,
                    };
                    journal.append(request).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    started.elapsed()
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn appends(backend: &Backend) {
    let config = JournalConfig::default();
    assert_eq!(CONCURRENT_STREAMS, config.batch_events_max as u64);
    let events = APPEND_EVENTS / CONCURRENT_STREAMS * CONCURRENT_STREAMS;
    let (mut raw_rates, mut journal_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for repetition in 0..REPETITIONS {
        let (raw_database, _raw_directory) =
            backend.fresh(&format!("raw{repetition}"), &config).await;
        let raw = rate(
            events,
            raw_insert(&raw_database, events, config.batch_events_max as u64).await,
        );
        raw_database.close().await;
        let (database, _directory) = backend
            .fresh(&format!("journal{repetition}"), &config)
            .await;
        let journal = Journal::open(database, config.clone()).await.unwrap();
        let appended = rate(events, journal_appends(&journal, events).await);
        journal.database().close().await;
        raw_rates.push(raw);
        journal_rates.push(appended);
        ratios.push(appended / raw);
    }
    println!(
        "append {:8}: raw batched insert {:>9.0} events/s, journal ({CONCURRENT_STREAMS} streams, group commit) {:>9.0} events/s, ratio {:.2} (median of {REPETITIONS}, {events} events)",
        backend.name,
        median(raw_rates),
        median(journal_rates),
        median(ratios)
    );
}

async fn replay(backend: &Backend) {
    let config = JournalConfig {
        read_rows_max: 50_000,
        ..JournalConfig::default()
    };
    let (database, _directory) = backend.fresh("replay", &config).await;
    let journal = Journal::open(database, config.clone()).await.unwrap();
    // One long stream, written in big appends.
    let mut head = 0;
    while head < REPLAY_EVENTS {
        let events = (0..config.append_events_max as u64)
            .map(|index| new_event(head + index))
            .collect();
        let request = AppendRequest {
            stream: "book|BTC-USD".to_owned(),
            kind: "book".to_owned(),
            expected_sequence: head,
            events,
            fence: None,
        };
        head = journal.append(request).await.unwrap().last_sequence;
    }
    let (mut stream_rates, mut global_rates) = (Vec::new(), Vec::new());
    for _ in 0..REPETITIONS {
        let started = Instant::now();
        let mut next = 1;
        loop {
            let page = journal
                .read_stream("book|BTC-USD", next, config.read_rows_max)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            next = last.sequence + 1;
        }
        stream_rates.push(rate(next - 1, started.elapsed()));
        let started = Instant::now();
        let mut after = 0;
        loop {
            let page = journal
                .read_all(after, config.read_rows_max, &Filter::All)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.global_offset;
        }
        global_rates.push(rate(after, started.elapsed()));
    }
    let ceiling = sqlx_ceiling(journal.database(), head).await;
    println!(
        "replay {:8}: sqlx ceiling (fetch_all, one integer column) {ceiling:>9.0} rows/s",
        backend.name
    );
    println!(
        "replay {:8}: one stream {:>9.0} events/s, global log {:>9.0} events/s (median of {REPETITIONS}, {head} events of {PAYLOAD_BYTES} bytes)",
        backend.name,
        median(stream_rates),
        median(global_rates)
    );
    journal.database().close().await;
}

/// What sqlx can return at all: every `global_offset`, in pages like the replays, in rows/s.
async fn sqlx_ceiling(database: &Database, events: u64) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..REPETITIONS {
        let started = Instant::now();
        let mut after = 0i64;
        loop {
            let sql = "SELECT global_offset FROM events WHERE global_offset > $1 ORDER BY global_offset LIMIT 50000";
            let page: Vec<i64> = match database {
                Database::Sqlite(pool) => sqlx::query_scalar(sql)
                    .bind(after)
                    .fetch_all(pool)
                    .await
                    .unwrap(),
                Database::Postgres(pool) => sqlx::query_scalar(sql)
                    .bind(after)
                    .fetch_all(pool)
                    .await
                    .unwrap(),
            };
            let Some(last) = page.last() else { break };
            after = *last;
        }
        assert_eq!(after as u64, events);
        rates.push(rate(events, started.elapsed()));
    }
    median(rates)
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: stay quick there.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut backends = vec![Backend {
        name: "sqlite",
        url: String::new(),
    }];
    match std::env::var("DATABASE_URL") {
        Ok(url) => backends.push(Backend {
            name: "postgres",
            url,
        }),
        Err(_) => println!("DATABASE_URL not set: PostgreSQL figures skipped"),
    }
    // `cargo bench … -- replay` (or `append`) runs that part only, e.g. under a profiler.
    let only = std::env::args()
        .skip(1)
        .find(|argument| !argument.starts_with("--"));
    let runs = |part: &str| only.as_deref().is_none_or(|only| part.contains(only));
    runtime.block_on(async {
        for backend in &backends {
            if runs("append") {
                appends(backend).await;
            }
            if runs("replay") {
                replay(backend).await;
            }
        }
    });
}
