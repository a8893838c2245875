//! One conformance suite, run against both backends: SQLite on a real file and the real
//! PostgreSQL server from `DATABASE_URL` (each test in its own schema; skipped, saying so,
//! when `DATABASE_URL` is not set).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tradefloor_persistence::codec::{self, EventCodec, Upcaster};
use tradefloor_persistence::{
    Advance, AppendRequest, Database, Error, Fence, Filter, Journal, JournalConfig, NewEvent,
    OffsetStore, Snapshot, SnapshotStore, SqlValue, Transaction,
};

/// A journal on a fresh database, and how to clean it up.
struct Harness {
    journal: Journal,
    cleanup: Option<(String, String)>,
    _directory: Option<tempfile::TempDir>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        let config = JournalConfig::default();
        let database = Database::connect(&url, &config).await.unwrap();
        let journal = Journal::open(database, config).await.unwrap();
        Harness {
            journal,
            cleanup: None,
            _directory: Some(directory),
        }
    }

    async fn postgres(test: &str) -> Option<Harness> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("skipped: DATABASE_URL is not set, so {test} did not run on PostgreSQL");
            return None;
        };
        let schema = format!("conformance_{test}_{}", std::process::id());
        let config = JournalConfig::default();
        let database = Database::connect_postgres(&url, Some(&schema), &config)
            .await
            .unwrap();
        let journal = Journal::open(database, config).await.unwrap();
        Some(Harness {
            journal,
            cleanup: Some((url, schema)),
            _directory: None,
        })
    }

    /// A second, independent journal (own pool, own group-commit writer) on the same
    /// database, as another node would have.
    async fn second_writer(&self) -> Journal {
        self.second_writer_with(JournalConfig::default()).await
    }

    /// A second writer with its own limits (e.g. a `batch_wait` that gathers one batch).
    async fn second_writer_with(&self, config: JournalConfig) -> Journal {
        let database = match (&self.cleanup, self.journal.database()) {
            (Some((url, schema)), _) => Database::connect_postgres(url, Some(schema), &config)
                .await
                .unwrap(),
            (None, Database::Sqlite(pool)) => {
                let path = pool.connect_options().get_filename().display().to_string();
                Database::connect(&format!("sqlite:{path}"), &config)
                    .await
                    .unwrap()
            }
            (None, Database::Postgres(_)) => unreachable!("postgres harnesses have a schema"),
        };
        Journal::open(database, config).await.unwrap()
    }

    async fn finish(self) {
        self.journal.database().close().await;
        if let Some((url, schema)) = self.cleanup {
            let config = JournalConfig::default();
            let database = Database::connect(&url, &config).await.unwrap();
            if let Database::Postgres(pool) = &database {
                sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            database.close().await;
        }
    }
}

fn event(name: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        name: name.to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
        tags: Vec::new(),
        effective_at: None,
    }
}

fn append(stream: &str, expected: u64, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.to_owned(),
        kind: stream.split('|').next().unwrap().to_owned(),
        expected_sequence: expected,
        events,
        fence: None,
    }
}

async fn ordering(harness: &Harness) {
    let journal = &harness.journal;
    let a1 = journal
        .append(append(
            "account|a",
            0,
            vec![event("e", b"a1"), event("e", b"a2"), event("e", b"a3")],
        ))
        .await
        .unwrap();
    assert_eq!(
        (a1.first_sequence, a1.last_sequence, a1.first_offset),
        (1, 3, 1)
    );
    let b1 = journal
        .append(append(
            "book|b",
            0,
            vec![event("e", b"b1"), event("e", b"b2")],
        ))
        .await
        .unwrap();
    assert_eq!((b1.first_sequence, b1.first_offset), (1, 4));
    journal
        .append(append(
            "account|a",
            3,
            vec![event("e", b"a4"), event("e", b"a5")],
        ))
        .await
        .unwrap();

    let stream = journal.read_stream("account|a", 1, 100).await.unwrap();
    let payloads: Vec<&[u8]> = stream
        .iter()
        .map(|stored| stored.payload.as_slice())
        .collect();
    assert_eq!(payloads, [b"a1", b"a2", b"a3", b"a4", b"a5"]);
    assert_eq!(
        stream
            .iter()
            .map(|stored| stored.sequence)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let tail = journal.read_stream("account|a", 4, 100).await.unwrap();
    assert_eq!(
        tail.iter()
            .map(|stored| stored.sequence)
            .collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(
        journal.read_stream("account|a", 1, 2).await.unwrap().len(),
        2,
        "limit respected"
    );

    let all = journal.read_all(0, 100, &Filter::All).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|stored| stored.global_offset)
            .collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(all[3].stream, "book|b");
    assert_eq!(
        journal.read_all(5, 100, &Filter::All).await.unwrap().len(),
        2
    );
    assert_eq!(journal.last_sequence("account|a").await.unwrap(), 5);
    assert_eq!(journal.last_sequence("account|none").await.unwrap(), 0);
    assert_eq!(journal.last_offset().await.unwrap(), 7);
    assert!(
        all.iter()
            .all(|stored| stored.recorded_at == stored.effective_at)
    );
}

async fn conflicts(harness: &Harness) {
    let journal = &harness.journal;
    journal
        .append(append("account|a", 0, vec![event("e", b"1")]))
        .await
        .unwrap();
    let stale = journal
        .append(append("account|a", 0, vec![event("e", b"x")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, Error::Conflict { stream, expected: 0, actual: 1 } if stream == "account|a"),
        "{stale:?}"
    );
    let ahead = journal
        .append(append("account|a", 5, vec![event("e", b"y")]))
        .await
        .unwrap_err();
    assert!(matches!(
        ahead,
        Error::Conflict {
            expected: 5,
            actual: 1,
            ..
        }
    ));
    assert_eq!(
        journal.read_stream("account|a", 1, 10).await.unwrap().len(),
        1,
        "refused appends wrote nothing"
    );
    assert_eq!(journal.last_offset().await.unwrap(), 1);

    // Many writers race for the same next sequence: exactly one wins each time.
    let mut racers = Vec::new();
    for writer in 0..16u8 {
        let journal = journal.clone();
        racers.push(tokio::spawn(async move {
            journal
                .append(append("account|race", 0, vec![event("e", &[writer])]))
                .await
        }));
    }
    let mut winners = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => winners += 1,
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(journal.last_sequence("account|race").await.unwrap(), 1);
}

async fn group_commit_keeps_every_stream_in_order(harness: &Harness) {
    let journal = &harness.journal;
    let streams = 40u64;
    let appends_per_stream = 25u64;
    let mut writers = Vec::new();
    for stream in 0..streams {
        let journal = journal.clone();
        writers.push(tokio::spawn(async move {
            let name = format!("account|{stream}");
            for sequence in 0..appends_per_stream {
                let payload = format!("{stream}:{sequence}");
                let outcome = journal
                    .append(append(
                        &name,
                        sequence,
                        vec![event("e", payload.as_bytes())],
                    ))
                    .await
                    .unwrap();
                assert_eq!(outcome.last_sequence, sequence + 1);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for stream in 0..streams {
        let events = journal
            .read_stream(&format!("account|{stream}"), 1, 1_000)
            .await
            .unwrap();
        let payloads: Vec<String> = events
            .iter()
            .map(|stored| String::from_utf8(stored.payload.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..appends_per_stream)
            .map(|sequence| format!("{stream}:{sequence}"))
            .collect();
        assert_eq!(payloads, expected);
    }
    let all = journal.read_all(0, 10_000, &Filter::All).await.unwrap();
    let offsets: Vec<u64> = all.iter().map(|stored| stored.global_offset).collect();
    assert_eq!(
        offsets,
        (1..=streams * appends_per_stream).collect::<Vec<_>>()
    );
}

async fn fencing(harness: &Harness) {
    let journal = &harness.journal;
    let fenced = |stream: &str, expected, epoch| AppendRequest {
        fence: Some(Fence {
            key: "shard-7".to_owned(),
            epoch,
        }),
        ..append(stream, expected, vec![event("e", b"f")])
    };
    journal.append(fenced("account|f", 0, 1)).await.unwrap();
    journal.claim_fence("shard-7", 2).await.unwrap();
    let stale = journal.append(fenced("account|f", 1, 1)).await.unwrap_err();
    assert!(
        matches!(&stale, Error::Fenced { epoch: 1, current: 2, fence, .. } if fence == "shard-7"),
        "{stale:?}"
    );
    assert_eq!(
        journal.last_sequence("account|f").await.unwrap(),
        1,
        "the stale owner wrote nothing"
    );
    journal.append(fenced("account|f", 1, 2)).await.unwrap();
    journal.append(fenced("account|g", 0, 3)).await.unwrap();
    assert_eq!(journal.fence_epoch("shard-7").await.unwrap(), Some(3));
    assert!(matches!(
        journal.append(fenced("account|f", 2, 2)).await,
        Err(Error::Fenced { current: 3, .. })
    ));
    assert!(matches!(
        journal.claim_fence("shard-7", 2).await,
        Err(Error::Fenced { current: 3, .. })
    ));
    journal.claim_fence("shard-7", 3).await.unwrap();
    assert_eq!(journal.fence_epoch("shard-other").await.unwrap(), None);
    // An unfenced append is not affected by fences.
    journal
        .append(append("account|f", 2, vec![event("e", b"u")]))
        .await
        .unwrap();
}

/// One group-commit batch that mixes good appends with every kind of refusal: a stale writer
/// (expected below the head), a writer ahead of the head (expected above it, which would leave
/// a gap), a second append to a stream already appended to in the batch, and a fenced writer.
/// Only the refused appends are refused; the others commit together, gap-free. Then a batch
/// whose only refusal is an append ahead of its stream.
async fn a_batch_refuses_only_its_bad_appends(harness: &Harness) {
    let journal = &harness.journal;
    journal
        .append(append("account|stale", 0, vec![event("e", b"s1")]))
        .await
        .unwrap();
    journal
        .append(append("account|twice", 0, vec![event("e", b"t1")]))
        .await
        .unwrap();
    journal.claim_fence("shard-9", 2).await.unwrap();
    let gathering = harness
        .second_writer_with(JournalConfig {
            batch_wait: std::time::Duration::from_millis(300),
            ..JournalConfig::default()
        })
        .await;
    let fenced = AppendRequest {
        fence: Some(Fence {
            key: "shard-9".to_owned(),
            epoch: 1,
        }),
        ..append("account|fenced", 0, vec![event("e", b"f")])
    };
    // `join!` polls in order, so the appends queue in this order, within one batch wait.
    let (new, stale, twice, twice_again, twice_stale, ahead, fenced, last) = tokio::join!(
        gathering.append(append("account|new", 0, vec![event("e", b"n1")])),
        gathering.append(append("account|stale", 0, vec![event("e", b"x")])),
        gathering.append(append("account|twice", 1, vec![event("e", b"t2")])),
        gathering.append(append(
            "account|twice",
            2,
            vec![event("e", b"t3"), event("e", b"t4")]
        )),
        gathering.append(append("account|twice", 2, vec![event("e", b"x")])),
        gathering.append(append("account|ahead", 3, vec![event("e", b"x")])),
        gathering.append(fenced),
        gathering.append(append("account|new", 1, vec![event("e", b"n2")])),
    );
    let (new, twice, twice_again, last) = (
        new.unwrap(),
        twice.unwrap(),
        twice_again.unwrap(),
        last.unwrap(),
    );
    assert!(
        matches!(&stale, Err(Error::Conflict { stream, expected: 0, actual: 1 }) if stream == "account|stale"),
        "{stale:?}"
    );
    assert!(
        matches!(
            &twice_stale,
            Err(Error::Conflict {
                expected: 2,
                actual: 4,
                ..
            })
        ),
        "{twice_stale:?}"
    );
    assert!(
        matches!(&ahead, Err(Error::Conflict { stream, expected: 3, actual: 0 }) if stream == "account|ahead"),
        "{ahead:?}"
    );
    assert!(
        matches!(
            &fenced,
            Err(Error::Fenced {
                epoch: 1,
                current: 2,
                ..
            })
        ),
        "{fenced:?}"
    );
    // One batch: one transaction time; offsets after the two set-up events, in queue order.
    assert!(
        [twice, twice_again, last]
            .iter()
            .all(|outcome| outcome.recorded_at == new.recorded_at),
        "the appends shared a batch"
    );
    assert_eq!(
        [new, twice, twice_again, last].map(|outcome| (
            outcome.first_sequence,
            outcome.last_sequence,
            outcome.first_offset
        )),
        [(1, 1, 3), (2, 2, 4), (3, 4, 5), (2, 2, 7)]
    );
    assert_eq!(journal.last_offset().await.unwrap(), 7);
    assert_eq!(journal.last_sequence("account|stale").await.unwrap(), 1);
    assert_eq!(journal.last_sequence("account|ahead").await.unwrap(), 0);
    assert_eq!(journal.last_sequence("account|fenced").await.unwrap(), 0);
    let payloads: Vec<Vec<u8>> = journal
        .read_all(0, 100, &Filter::All)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.payload)
        .collect();
    assert_eq!(
        payloads,
        [&b"s1"[..], b"t1", b"n1", b"t2", b"t3", b"t4", b"n2"].map(<[u8]>::to_vec)
    );

    // A batch whose only bad append is ahead of its stream: the stale-writer check on insert
    // does not see it, the check of expected predecessors must.
    let (first, ahead, second) = tokio::join!(
        gathering.append(append("account|p", 0, vec![event("e", b"p")])),
        gathering.append(append("account|new", 5, vec![event("e", b"x")])),
        gathering.append(append("account|q", 0, vec![event("e", b"q")])),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(
        matches!(&ahead, Err(Error::Conflict { stream, expected: 5, actual: 2 }) if stream == "account|new"),
        "{ahead:?}"
    );
    assert_eq!(first.recorded_at, second.recorded_at, "one batch");
    assert_eq!((first.first_offset, second.first_offset), (8, 9));
    assert_eq!(journal.last_sequence("account|new").await.unwrap(), 2);
    gathering.database().close().await;
}

/// Whatever bytes and text go in come back unchanged through every read: payloads with NUL,
/// spaces, digits and bytes that are not UTF-8; names and tags with spaces, digits and
/// non-ASCII text; negative and extreme times.
async fn any_bytes_round_trip(harness: &Harness) {
    let journal = &harness.journal;
    let payload: Vec<u8> = (0..=255u8).rev().chain([b' ', b'7', 0]).collect();
    let new_event = NewEvent {
        name: "1 2 Ünïcode name ".to_owned(),
        schema_version: u16::MAX,
        payload: payload.clone(),
        tags: vec!["t 1".to_owned(), "é 22".to_owned()],
        effective_at: Some(i64::MIN),
    };
    let request = AppendRequest {
        stream: "9 stream ✓|0".to_owned(),
        kind: "12 kind".to_owned(),
        expected_sequence: 0,
        events: vec![
            new_event.clone(),
            NewEvent {
                payload: Vec::new(),
                tags: Vec::new(),
                effective_at: Some(i64::MAX),
                ..new_event.clone()
            },
        ],
        fence: None,
    };
    journal.append(request.clone()).await.unwrap();
    let by_stream = journal.read_stream(&request.stream, 1, 10).await.unwrap();
    let global = journal.read_all(0, 10, &Filter::All).await.unwrap();
    let as_of = journal
        .read_stream_as_of(&request.stream, i64::MAX, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(by_stream, global);
    assert_eq!(as_of, global);
    for (stored, sent) in global.iter().zip(&request.events) {
        assert_eq!(
            (&stored.stream, &stored.kind, &stored.name, &stored.tags),
            (&request.stream, &request.kind, &sent.name, &sent.tags)
        );
        assert_eq!(stored.payload, sent.payload);
        assert_eq!(stored.schema_version, u16::MAX);
        assert_eq!(Some(stored.effective_at), sent.effective_at);
    }
    assert_eq!(global.len(), 2);
    assert_eq!(global[0].payload, payload);
}

/// Two independent writers (as two nodes) append while a reader tails the global log: every
/// batch the reader gets starts right after the last offset it saw, so it never skips an
/// event that commits later with a lower offset.
async fn readers_never_skip(harness: &Harness) {
    let other = harness.second_writer().await;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [harness.journal.clone(), other]
        .into_iter()
        .enumerate()
        .flat_map(|(node, journal)| {
            (0..8).map(move |stream| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let name = format!("account|{node}-{stream}");
                    for sequence in 0..30 {
                        journal
                            .append(append(
                                &name,
                                sequence * 2,
                                vec![event("e", b"x"), event("e", b"y")],
                            ))
                            .await
                            .unwrap();
                    }
                })
            })
        })
        .collect();
    let reader = {
        let journal = harness.journal.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = journal.read_all(seen, 500, &Filter::All).await.unwrap();
                for stored in &batch {
                    assert_eq!(
                        stored.global_offset,
                        seen + 1,
                        "the reader skipped an offset"
                    );
                    seen = stored.global_offset;
                }
                if finished && batch.is_empty() {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert_eq!(reader.await.unwrap(), 2 * 8 * 30 * 2);
}

async fn snapshots(harness: &Harness) {
    let journal = &harness.journal;
    let store = SnapshotStore::new(
        journal.database().clone(),
        journal.config().payload_bytes_max,
    );
    assert_eq!(store.load("account|s").await.unwrap(), None);
    let snapshot = |sequence: u64, payload: &[u8]| Snapshot {
        stream: "account|s".to_owned(),
        sequence,
        name: "account".to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
        recorded_at: 42,
    };
    store.save(&snapshot(5, b"five")).await.unwrap();
    assert_eq!(
        store.load("account|s").await.unwrap(),
        Some(snapshot(5, b"five"))
    );
    store.save(&snapshot(3, b"three")).await.unwrap();
    assert_eq!(
        store.load("account|s").await.unwrap().unwrap().sequence,
        5,
        "an older snapshot never replaces a newer"
    );
    store.save(&snapshot(9, b"nine")).await.unwrap();
    assert_eq!(
        store.load("account|s").await.unwrap().unwrap().payload,
        b"nine"
    );
    let huge = snapshot(10, &vec![0; journal.config().payload_bytes_max + 1]);
    assert!(matches!(
        store.save(&huge).await,
        Err(Error::InvalidRequest(_))
    ));
}

async fn execute(transaction: &mut Transaction, sql: &str) {
    transaction.execute(sql, &[]).await.unwrap();
}

async fn count_rows(database: &Database) -> i64 {
    let sql = "SELECT COUNT(*) FROM read_model";
    match database {
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

async fn offsets_commit_with_the_read_model(harness: &Harness) {
    let journal = &harness.journal;
    let database = journal.database();
    let offsets = OffsetStore::new(database.clone());
    let mut setup = database.begin().await.unwrap();
    execute(
        &mut setup,
        "CREATE TABLE read_model (id BIGINT PRIMARY KEY, value TEXT NOT NULL)",
    )
    .await;
    setup.commit().await.unwrap();
    assert_eq!(offsets.load("balances", 0).await.unwrap(), 0);

    // A projection that crashes before committing leaves neither its rows nor its offset.
    let mut crashed = database.begin().await.unwrap();
    execute(
        &mut crashed,
        "INSERT INTO read_model (id, value) VALUES (1, 'one')",
    )
    .await;
    OffsetStore::commit_in(&mut crashed, "balances", 0, 10)
        .await
        .unwrap();
    crashed.rollback().await.unwrap();
    assert_eq!(count_rows(database).await, 0);
    assert_eq!(offsets.load("balances", 0).await.unwrap(), 0);

    let mut committed = database.begin().await.unwrap();
    execute(
        &mut committed,
        "INSERT INTO read_model (id, value) VALUES (1, 'one')",
    )
    .await;
    OffsetStore::commit_in(&mut committed, "balances", 0, 10)
        .await
        .unwrap();
    committed.commit().await.unwrap();
    assert_eq!(count_rows(database).await, 1);
    assert_eq!(offsets.load("balances", 0).await.unwrap(), 10);

    offsets.commit("balances", 1, 3).await.unwrap();
    assert_eq!(
        offsets.load("balances", 1).await.unwrap(),
        3,
        "partitions are independent"
    );
    offsets.commit("balances", 0, 10).await.unwrap();
    let stale = offsets.commit("balances", 0, 9).await.unwrap_err();
    assert!(
        matches!(
            stale,
            Error::StaleOffset {
                current: 10,
                requested: 9,
                partition: 0,
                ..
            }
        ),
        "{stale:?}"
    );
}

/// The read models' transactions (on SQLite, their own write connection on a thread, with
/// writes buffered until a query or the commit): all or nothing with their offset, in order
/// with their queries, a refused offset or statement failing the whole transaction, and one
/// dropped unfinished leaving nothing behind.
async fn read_model_transactions(harness: &Harness) {
    let journal = &harness.journal;
    let database = journal.read_models();
    let offsets = OffsetStore::new(database.clone());
    let mut setup = journal.begin_read_models().await.unwrap();
    execute(
        &mut setup,
        "CREATE TABLE model (id BIGINT PRIMARY KEY, value TEXT, n BIGINT)",
    )
    .await;
    setup.commit().await.unwrap();

    // Values are bound by number, whatever order the placeholders come in.
    let mut first = journal.begin_read_models().await.unwrap();
    first
        .execute(
            "INSERT INTO model (n, value, id) VALUES ($3, $2, $1)",
            &[1.into(), "one".into(), 10.into()],
        )
        .await
        .unwrap();
    first
        .execute(
            "INSERT INTO model (id, value, n) VALUES ($1, $2, $3)",
            &[2.into(), SqlValue::NullText, SqlValue::Null],
        )
        .await
        .unwrap();
    // A query sees the writes before it.
    let rows = first
        .fetch("SELECT id, value, n FROM model ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![1.into(), "one".into(), 10.into()],
            vec![2.into(), SqlValue::Null, SqlValue::Null],
        ]
    );
    OffsetStore::commit_in(&mut first, "model", 0, 5)
        .await
        .unwrap();
    first.commit().await.unwrap();
    assert_eq!(offsets.load("model", 0).await.unwrap(), 5);
    assert_eq!(count("model", database).await, 2);

    // A stale offset fails the commit, and with it every write of the transaction.
    // (PostgreSQL refuses at once, the SQLite writer at the commit.)
    let refused = {
        let mut stale = journal.begin_read_models().await.unwrap();
        execute(&mut stale, "INSERT INTO model (id) VALUES (3)").await;
        match OffsetStore::commit_in(&mut stale, "model", 0, 4).await {
            Ok(()) => stale.commit().await,
            Err(error) => Err(error),
        }
    };
    assert!(
        matches!(
            refused,
            Err(Error::StaleOffset {
                current: 5,
                requested: 4,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(count("model", database).await, 2);

    // Two holders of one consumer that read the same offset and applied the same events:
    // the second to commit is refused whole (what it applied is not counted twice).
    let raced = {
        let mut second = journal.begin_read_models().await.unwrap();
        execute(&mut second, "INSERT INTO model (id) VALUES (3)").await;
        let read = Advance { from: 0, epoch: 0 };
        match OffsetStore::advance_in(&mut second, "model", 0, read, 5).await {
            Ok(()) => second.commit().await,
            Err(error) => Err(error),
        }
    };
    assert!(
        matches!(
            raced,
            Err(Error::StaleOffset {
                current: 5,
                requested: 5,
                ..
            })
        ),
        "{raced:?}"
    );
    assert_eq!(count("model", database).await, 2);
    // A holder of a later lease epoch moves it on from where it read it; from then on a
    // holder of the earlier epoch is fenced, even from the right position.
    let mut onwards = journal.begin_read_models().await.unwrap();
    OffsetStore::advance_in(&mut onwards, "model", 0, Advance { from: 5, epoch: 2 }, 6)
        .await
        .unwrap();
    onwards.commit().await.unwrap();
    assert_eq!(offsets.load_with_epoch("model", 0).await.unwrap(), (6, 2));
    let fenced = {
        let mut stale = journal.begin_read_models().await.unwrap();
        execute(&mut stale, "INSERT INTO model (id) VALUES (3)").await;
        let read = Advance { from: 6, epoch: 1 };
        match OffsetStore::advance_in(&mut stale, "model", 0, read, 7).await {
            Ok(()) => stale.commit().await,
            Err(error) => Err(error),
        }
    };
    assert!(
        matches!(
            fenced,
            Err(Error::OffsetFenced {
                epoch: 1,
                stored_epoch: 2,
                ..
            })
        ),
        "{fenced:?}"
    );
    assert_eq!(count("model", database).await, 2);
    assert_eq!(offsets.load_with_epoch("model", 0).await.unwrap(), (6, 2));
    // A consumer with no offset yet advances from 0 only.
    let fresh = {
        let mut fresh = journal.begin_read_models().await.unwrap();
        let read = Advance { from: 3, epoch: 0 };
        match OffsetStore::advance_in(&mut fresh, "other-model", 0, read, 4).await {
            Ok(()) => fresh.commit().await,
            Err(error) => Err(error),
        }
    };
    assert!(
        matches!(fresh, Err(Error::StaleOffset { current: 0, .. })),
        "{fresh:?}"
    );
    assert_eq!(offsets.load("other-model", 0).await.unwrap(), 0);

    // A statement the database refuses fails the transaction at its next query.
    let mut refused = journal.begin_read_models().await.unwrap();
    execute(&mut refused, "INSERT INTO model (id) VALUES (4)").await;
    let _ = refused
        .execute("INSERT INTO model (id) VALUES (1)", &[])
        .await;
    assert!(
        refused
            .fetch("SELECT COUNT(*) FROM model", &[])
            .await
            .is_err()
    );
    drop(refused);
    assert_eq!(count("model", database).await, 2);

    // Dropped after a query (its writes applied but not committed): rolled back, and the
    // next transaction starts clean.
    let mut dropped = journal.begin_read_models().await.unwrap();
    execute(&mut dropped, "INSERT INTO model (id) VALUES (5)").await;
    dropped
        .fetch("SELECT COUNT(*) FROM model", &[])
        .await
        .unwrap();
    drop(dropped);
    let mut next = journal.begin_read_models().await.unwrap();
    execute(&mut next, "INSERT INTO model (id) VALUES (6)").await;
    next.commit().await.unwrap();
    let ids = database
        .fetch("SELECT id FROM model ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(ids, vec![vec![1.into()], vec![2.into()], vec![6.into()]]);

    // Rolled back explicitly: nothing kept.
    let mut rolled_back = journal.begin_read_models().await.unwrap();
    execute(&mut rolled_back, "DELETE FROM model").await;
    rolled_back.rollback().await.unwrap();
    assert_eq!(count("model", database).await, 3);

    // Transactions committed at the same time (on SQLite, one group commit with a savepoint
    // each): the one that fails leaves the others in.
    let mut committing = tokio::task::JoinSet::new();
    for id in 100..132_i64 {
        let journal = journal.clone();
        committing.spawn(async move {
            let mut transaction = journal.begin_read_models().await?;
            // 113 also writes a row that exists: it alone must fail.
            let ids: &[i64] = if id == 113 { &[id, 1] } else { &[id] };
            for id in ids {
                transaction
                    .execute("INSERT INTO model (id) VALUES ($1)", &[(*id).into()])
                    .await?;
            }
            OffsetStore::commit_in(&mut transaction, &format!("model-{id}"), 0, 1).await?;
            transaction.commit().await.map(|()| id)
        });
    }
    let mut failed = Vec::new();
    while let Some(outcome) = committing.join_next().await {
        if let Err(error) = outcome.unwrap() {
            failed.push(error.to_string());
        }
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(count("model", database).await, 3 + 31);
    assert_eq!(offsets.load("model-113", 0).await.unwrap(), 0);
    assert_eq!(offsets.load("model-131", 0).await.unwrap(), 1);
}

async fn count(table: &str, database: &Database) -> i64 {
    let rows = database
        .fetch(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .unwrap();
    rows[0][0].integer().unwrap()
}

async fn bitemporal_reads(harness: &Harness) {
    let journal = &harness.journal;
    let at = |micros: i64, payload: &[u8]| NewEvent {
        effective_at: Some(micros),
        ..event("e", payload)
    };
    let first = journal
        .append(append("account|t", 0, vec![at(100, b"d100")]))
        .await
        .unwrap();
    let second = journal
        .append(append("account|t", 1, vec![event("e", b"now")]))
        .await
        .unwrap();
    // A correction recorded last, valid from before everything.
    let third = journal
        .append(append("account|t", 2, vec![at(50, b"fix50")]))
        .await
        .unwrap();
    assert!(first.recorded_at < second.recorded_at && second.recorded_at < third.recorded_at);

    let as_of = |valid_at, known_at| {
        let journal = journal.clone();
        async move {
            journal
                .read_stream_as_of("account|t", valid_at, known_at, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|stored| String::from_utf8(stored.payload).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let forever = i64::MAX;
    assert_eq!(
        as_of(forever, forever).await,
        ["fix50", "d100", "now"],
        "valid-time order"
    );
    assert_eq!(
        as_of(forever, second.recorded_at).await,
        ["d100", "now"],
        "the correction was not yet known"
    );
    assert_eq!(as_of(99, forever).await, ["fix50"]);
    assert_eq!(as_of(99, second.recorded_at).await, Vec::<String>::new());
    assert_eq!(as_of(100, first.recorded_at).await, ["d100"]);
}

#[derive(Serialize, Deserialize)]
enum EventV1 {
    Deposited { amount: u32 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum EventV2 {
    Deposited { amount: u64, asset: String },
    Withdrawn { amount: u64 },
}

fn name_v2(event: &EventV2) -> &'static str {
    match event {
        EventV2::Deposited { .. } => "deposited",
        EventV2::Withdrawn { .. } => "withdrawn",
    }
}

fn deposited_v1(bytes: &[u8]) -> Result<EventV2, String> {
    let EventV1::Deposited { amount } = codec::decode::<EventV1>(bytes)?;
    Ok(EventV2::Deposited {
        amount: u64::from(amount),
        asset: "USD".to_owned(),
    })
}

static UPCASTERS_V2: [Upcaster<EventV2>; 1] = [Upcaster {
    name: "deposited",
    version: 1,
    read: deposited_v1,
}];

fn codec_v2() -> EventCodec<EventV2> {
    EventCodec::new(2, name_v2, &["deposited", "withdrawn"]).with_upcasters(&UPCASTERS_V2)
}

async fn upcasting_and_bad_payloads(harness: &Harness) {
    let journal = &harness.journal;
    let codec = codec_v2();
    let v1 = NewEvent {
        name: "deposited".to_owned(),
        schema_version: 1,
        payload: codec::encode(&EventV1::Deposited { amount: 7 }).unwrap(),
        tags: Vec::new(),
        effective_at: None,
    };
    let v2 = codec
        .to_new_event(&EventV2::Withdrawn { amount: 3 }, vec![], None)
        .unwrap();
    let corrupt = NewEvent {
        payload: vec![0xff, 0xff, 0xff],
        ..codec
            .to_new_event(&EventV2::Withdrawn { amount: 1 }, vec![], None)
            .unwrap()
    };
    let unknown = NewEvent {
        name: "teleported".to_owned(),
        ..v2.clone()
    };
    let mislabelled = NewEvent {
        name: "deposited".to_owned(),
        ..v2.clone()
    };
    let unknown_version = NewEvent {
        schema_version: 9,
        ..v2.clone()
    };
    journal
        .append(append(
            "account|u",
            0,
            vec![v1, v2, corrupt, unknown, mislabelled, unknown_version],
        ))
        .await
        .unwrap();
    let stored = journal.read_stream("account|u", 1, 10).await.unwrap();
    assert_eq!(
        codec.decode(&stored[0]).unwrap(),
        EventV2::Deposited {
            amount: 7,
            asset: "USD".to_owned()
        }
    );
    assert_eq!(
        codec.decode(&stored[1]).unwrap(),
        EventV2::Withdrawn { amount: 3 }
    );
    let corrupt = codec.decode(&stored[2]).unwrap_err();
    assert!(
        matches!(&corrupt, Error::Decode { stream, sequence: 3, .. } if stream == "account|u"),
        "{corrupt:?}"
    );
    assert!(
        corrupt.to_string().contains("sequence 3 of account|u"),
        "{corrupt}"
    );
    let unknown = codec.decode(&stored[3]).unwrap_err();
    assert!(
        matches!(&unknown, Error::UnknownEvent { name, sequence: 4, .. } if name == "teleported"),
        "{unknown:?}"
    );
    assert!(
        matches!(
            codec.decode(&stored[4]),
            Err(Error::Decode { sequence: 5, .. })
        ),
        "name checked against payload"
    );
    assert!(matches!(
        codec.decode(&stored[5]),
        Err(Error::UnknownEvent { version: 9, .. })
    ));
}

async fn filters_and_limits(harness: &Harness) {
    let journal = &harness.journal;
    let tagged = |tags: &[&str]| NewEvent {
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        ..event("e", b"t")
    };
    journal
        .append(append(
            "account|a",
            0,
            vec![tagged(&["market:BTC-USD"]), tagged(&[])],
        ))
        .await
        .unwrap();
    journal
        .append(append(
            "book|BTC-USD",
            0,
            vec![tagged(&["market:BTC-USD", "halt"])],
        ))
        .await
        .unwrap();
    let by_tag = journal
        .read_all(0, 100, &Filter::Tag("market:BTC-USD".to_owned()))
        .await
        .unwrap();
    assert_eq!(
        by_tag
            .iter()
            .map(|stored| stored.global_offset)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(by_tag[1].tags, ["market:BTC-USD", "halt"]);
    assert_eq!(
        journal
            .read_all(1, 100, &Filter::Tag("market:BTC-USD".to_owned()))
            .await
            .unwrap()
            .len(),
        1
    );
    let by_kind = journal
        .read_all(0, 100, &Filter::Kind("account".to_owned()))
        .await
        .unwrap();
    assert_eq!(by_kind.len(), 2);

    let limits = journal.config().clone();
    let refused = [
        append("account|x", 0, vec![]),
        append("account|x", 0, vec![tagged(&["a,b"])]),
        append(
            "account|x",
            0,
            vec![NewEvent {
                payload: vec![0; limits.payload_bytes_max + 1],
                ..event("e", b"")
            }],
        ),
        append(
            "account|x",
            0,
            vec![event("e", b"x"); limits.append_events_max + 1],
        ),
        append("", 0, vec![event("e", b"x")]),
    ];
    for request in refused {
        assert!(matches!(
            journal.append(request).await,
            Err(Error::InvalidRequest(_))
        ));
    }
    assert_eq!(
        journal.last_offset().await.unwrap(),
        3,
        "refused appends wrote nothing"
    );
}

/// An event of `kind` on `stream` with `tags` and an optional valid time.
fn request(stream: &str, kind: &str, expected: u64, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        kind: kind.to_owned(),
        ..append(stream, expected, events)
    }
}

fn tagged_event(name: &str, tags: &[&str], effective_at: Option<i64>) -> NewEvent {
    NewEvent {
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        effective_at,
        ..event(name, name.as_bytes())
    }
}

async fn the_bus_publishes_what_reads_return(harness: &Harness) {
    let journal = &harness.journal;
    let mut bus = journal.subscribe();
    // Concurrent appends, so batches carry several appends; one of them is refused (a
    // conflict), and nothing of it may be published.
    let appends = (0..12u64).map(|index| {
        let journal = journal.clone();
        async move {
            let events = vec![
                tagged_event("e", &["market:BTC-USD", "halt"], None),
                tagged_event("f", &[], Some(1_000 + index as i64)),
                tagged_event("g", &["ü"], None),
            ];
            let expected = if index == 5 { 7 } else { 0 };
            journal
                .append(request(
                    &format!("account|{index}"),
                    "account",
                    expected,
                    events,
                ))
                .await
        }
    });
    let outcomes = futures_join_all(appends).await;
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_err()).count(),
        1
    );
    let last = journal.last_offset().await.unwrap();
    assert_eq!(last, 33);
    let mut published = Vec::new();
    while published.len() < last as usize {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), bus.recv())
            .await
            .expect("every committed batch is published")
            .unwrap();
        let offsets: Vec<u64> = batch.iter().map(|stored| stored.global_offset).collect();
        let first = offsets[0];
        assert_eq!(
            offsets,
            (first..first + offsets.len() as u64).collect::<Vec<_>>()
        );
        published.extend(
            batch
                .iter()
                .map(|stored| tradefloor_persistence::StoredEvent::clone(stored)),
        );
    }
    assert_eq!(
        published,
        journal.read_all(0, 1_000, &Filter::All).await.unwrap()
    );
    assert!(bus.try_recv().is_err(), "nothing else was published");
}

async fn a_lagging_subscriber_is_told(harness: &Harness) {
    let journal = harness
        .second_writer_with(JournalConfig {
            bus_batches_max: 2,
            ..JournalConfig::default()
        })
        .await;
    let mut bus = journal.subscribe();
    for sequence in 0..5 {
        journal
            .append(append("account|lag", sequence, vec![event("e", b"x")]))
            .await
            .unwrap();
    }
    assert!(matches!(
        bus.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Lagged(3))
    ));
    let next = bus.recv().await.unwrap();
    assert_eq!(
        next[0].global_offset, 4,
        "the oldest batches kept come next"
    );
    assert!(
        JournalConfig {
            bus_batches_max: 0,
            ..JournalConfig::default()
        }
        .validate()
        .is_err()
    );
}

async fn filters_match_in_memory_as_in_sql(harness: &Harness) {
    let journal = &harness.journal;
    let appends = [
        request(
            "a|1",
            "account",
            0,
            vec![tagged_event("e", &["market:BTC-USD", "halt"], None)],
        ),
        request(
            "a|2",
            "Account",
            0,
            vec![tagged_event("e", &["market:btc-usd"], None)],
        ),
        request(
            "b|1",
            "book",
            0,
            vec![
                tagged_event("e", &["market"], None),
                tagged_event("e", &[], None),
            ],
        ),
        request(
            "c|1",
            "accounts",
            0,
            vec![tagged_event("e", &["halt", "é"], None)],
        ),
        request(
            "d|1",
            "é",
            0,
            vec![tagged_event("e", &["market:BTC-USD "], None)],
        ),
    ];
    for append in appends {
        journal.append(append).await.unwrap();
    }
    let all = journal.read_all(0, 1_000, &Filter::All).await.unwrap();
    let filters = [
        Filter::All,
        Filter::Kind("account".into()),
        Filter::Kind("Account".into()),
        Filter::Kind("ACCOUNT".into()),
        Filter::Kind("acc".into()),
        Filter::Kind("é".into()),
        Filter::Kind("e".into()),
        Filter::Kind(String::new()),
        Filter::Tag("market:BTC-USD".into()),
        Filter::Tag("market:btc-usd".into()),
        Filter::Tag("market".into()),
        Filter::Tag("halt".into()),
        Filter::Tag("é".into()),
        Filter::Tag("nope".into()),
        Filter::Tag(String::new()),
    ];
    for filter in filters {
        let in_sql = journal.read_all(0, 1_000, &filter).await.unwrap();
        let in_memory: Vec<_> = all
            .iter()
            .filter(|stored| filter.matches(stored))
            .cloned()
            .collect();
        assert_eq!(in_memory, in_sql, "{filter:?}");
    }
}

/// Runs futures concurrently and collects their outputs in order.
/// A venue secret is made once: every caller, at once or later, gets the same bytes, and
/// another name another secret.
async fn venue_secrets_are_made_once(harness: &Harness) {
    use tradefloor_persistence::secret::venue_secret;
    let database = harness.journal.database().clone();
    let asks = (0..8).map(|_| {
        let database = database.clone();
        async move { venue_secret(&database, "order_ids").await.unwrap() }
    });
    let secrets = futures_join_all(asks).await;
    assert!(secrets.iter().all(|secret| *secret == secrets[0]));
    assert_ne!(secrets[0], [0_u8; 32], "random bytes");
    assert_eq!(
        venue_secret(&database, "order_ids").await.unwrap(),
        secrets[0]
    );
    assert_ne!(venue_secret(&database, "other").await.unwrap(), secrets[0]);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

/// Data the database refuses (a constraint) is told apart from a database that fails (a table
/// missing), through the read models' transactions and the pool alike: the first is an
/// event's fault, the second the reader's.
async fn refused_data_is_told_from_a_broken_database(harness: &Harness) {
    let journal = &harness.journal;
    journal
        .read_models()
        .execute("CREATE TABLE refusing (x BIGINT NOT NULL CHECK (x >= 0))")
        .await
        .unwrap();
    let mut transaction = journal.begin_read_models().await.unwrap();
    let refused = match transaction
        .execute(
            "INSERT INTO refusing (x) VALUES ($1)",
            &[SqlValue::Integer(-1)],
        )
        .await
    {
        // The read models' writer on SQLite says so at the commit.
        Ok(()) => transaction.commit().await.unwrap_err(),
        Err(error) => error,
    };
    assert!(refused.is_data_refused(), "{refused:?}");
    assert!(!refused.is_missing_table(), "{refused:?}");
    let mut transaction = journal.begin_read_models().await.unwrap();
    let missing = match transaction
        .execute(
            "INSERT INTO nowhere (x) VALUES ($1)",
            &[SqlValue::Integer(1)],
        )
        .await
    {
        Ok(()) => transaction.commit().await.unwrap_err(),
        Err(error) => error,
    };
    assert!(!missing.is_data_refused(), "{missing:?}");
    assert!(missing.is_missing_table(), "{missing:?}");
    let pooled = journal
        .read_models()
        .fetch("SELECT x FROM nowhere", &[])
        .await
        .unwrap_err();
    assert!(
        !pooled.is_data_refused() && pooled.is_missing_table(),
        "{pooled:?}"
    );
}

/// Every read the journal offers, of the streams and filters of [`archived_events_read_as_before`].
async fn every_read(journal: &Journal) -> Vec<Vec<tradefloor_persistence::StoredEvent>> {
    let mut reads = Vec::new();
    for stream in ["account|a", "account|b", "quotes|c"] {
        for (from, limit) in [(1, 4), (1, 100), (3, 2), (9, 100)] {
            reads.push(journal.read_stream(stream, from, limit).await.unwrap());
        }
        for limit in [3, 100] {
            let as_of = journal.read_stream_as_of(stream, 1_005, i64::MAX, limit);
            reads.push(as_of.await.unwrap());
        }
    }
    let filters = [
        Filter::All,
        Filter::Kind("account".to_owned()),
        Filter::Tag("even".to_owned()),
    ];
    for filter in &filters {
        for (after, limit) in [(0, 5), (0, 100), (4, 3), (12, 100)] {
            reads.push(journal.read_all(after, limit, filter).await.unwrap());
        }
    }
    reads
}

/// Archiving moves the events a snapshot covers (never a stream's last) out of `events` into
/// files, and every read returns what it returned before; the stream goes on where it was.
async fn archived_events_read_as_before(harness: &Harness) {
    let directory = tempfile::tempdir().unwrap();
    let archive_dir = directory.path().join("archive");
    let journal = harness
        .second_writer_with(JournalConfig {
            archive_dir: Some(archive_dir.clone()),
            archive_frame_events_max: 3,
            archive_file_events_max: 7,
            ..JournalConfig::default()
        })
        .await;
    let refused = harness.journal.archive(i64::MAX, |_| {}).await;
    assert!(matches!(refused, Err(Error::Archive(_))), "{refused:?}");
    for round in 0..10_u64 {
        let parity = if round % 2 == 0 { "even" } else { "odd" };
        let tagged = |name: &str| {
            let name = format!("{name}{round}");
            let effective_at = i64::try_from(1_000 + 10 - round).unwrap();
            tagged_event(&name, &[parity, "order:1"], Some(effective_at))
        };
        journal
            .append(append("account|a", round, vec![tagged("a")]))
            .await
            .unwrap();
        if round < 4 {
            journal
                .append(append("account|b", round, vec![tagged("b")]))
                .await
                .unwrap();
        }
        journal
            .append(append("quotes|c", round, vec![tagged("c")]))
            .await
            .unwrap();
    }
    let store = SnapshotStore::new(journal.database().clone(), 1 << 20);
    for (stream, sequence) in [("account|a", 8), ("account|b", 4)] {
        let snapshot = Snapshot {
            stream: stream.to_owned(),
            sequence,
            name: "account".to_owned(),
            schema_version: 1,
            payload: b"state".to_vec(),
            recorded_at: 42,
        };
        store.save(&snapshot).await.unwrap();
    }
    let before = every_read(&journal).await;
    assert_eq!(
        journal.archive(0, |_| {}).await.unwrap().events,
        0,
        "nothing that old"
    );

    let mut progress = Vec::new();
    let done = journal
        .archive(i64::MAX, |step| progress.push(*step))
        .await
        .unwrap();
    // a: 1..=8 (its snapshot); b: 1..=3 (4 is its last); c: none (no snapshot).
    assert_eq!((done.files, done.events), (2, 11), "{done:?}");
    assert_eq!(
        progress.iter().map(|step| step.events).collect::<Vec<_>>(),
        [7, 11]
    );
    assert_eq!(done.through_offset, 24);
    assert_eq!(count("events", journal.database()).await, 24 - 11);
    assert_eq!(std::fs::read_dir(&archive_dir).unwrap().count(), 2);
    let totals = journal.archive_totals().await.unwrap();
    assert_eq!((totals.files, totals.events), (2, 11));
    assert_eq!(totals.bytes, done.bytes);

    assert_eq!(
        every_read(&journal).await,
        before,
        "reads changed by archiving"
    );
    let elsewhere = harness.journal.read_stream("account|a", 1, 10).await;
    assert!(matches!(elsewhere, Err(Error::Archive(_))), "{elsewhere:?}");
    assert_eq!(journal.archive(i64::MAX, |_| {}).await.unwrap().events, 0);
    // The streams go on from their heads.
    journal
        .append(append("account|a", 10, vec![event("a10", b"")]))
        .await
        .unwrap();
    journal
        .append(append("account|b", 4, vec![event("b4", b"")]))
        .await
        .unwrap();
    let conflict = journal
        .append(append("account|b", 3, vec![event("x", b"")]))
        .await;
    assert!(
        matches!(conflict, Err(Error::Conflict { actual: 5, .. })),
        "{conflict:?}"
    );
    let a = journal.read_stream("account|a", 1, 100).await.unwrap();
    assert_eq!(
        a.iter().map(|event| event.sequence).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
}

macro_rules! conformance {
    ($($case:ident => $function:ident;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let harness = Harness::sqlite().await;
                    super::$function(&harness).await;
                    harness.finish().await;
                }
            )*
        }

        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(harness) = Harness::postgres(stringify!($case)).await else { return };
                    super::$function(&harness).await;
                    harness.finish().await;
                }
            )*
        }
    };
}

conformance! {
    ordering => ordering;
    conflicts => conflicts;
    mixed_batch => a_batch_refuses_only_its_bad_appends;
    round_trip => any_bytes_round_trip;
    group_commit => group_commit_keeps_every_stream_in_order;
    fencing => fencing;
    readers_never_skip => readers_never_skip;
    snapshots => snapshots;
    offsets => offsets_commit_with_the_read_model;
    read_model_transactions => read_model_transactions;
    bitemporal => bitemporal_reads;
    upcasting => upcasting_and_bad_payloads;
    filters => filters_and_limits;
    bus => the_bus_publishes_what_reads_return;
    bus_lag => a_lagging_subscriber_is_told;
    filter_matches => filters_match_in_memory_as_in_sql;
    venue_secrets => venue_secrets_are_made_once;
    refused_data => refused_data_is_told_from_a_broken_database;
    archive => archived_events_read_as_before;
}

#[tokio::test]
async fn sqlite_survives_reopening_and_migrations_are_idempotent() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let config = JournalConfig::default();
    {
        let journal = Journal::open(
            Database::connect(&url, &config).await.unwrap(),
            config.clone(),
        )
        .await
        .unwrap();
        journal
            .append(append("account|a", 0, vec![event("e", b"kept")]))
            .await
            .unwrap();
        journal.database().close().await;
    }
    let journal = Journal::open(Database::connect(&url, &config).await.unwrap(), config)
        .await
        .unwrap();
    assert_eq!(
        journal.read_stream("account|a", 1, 10).await.unwrap()[0].payload,
        b"kept"
    );
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let error = Database::connect("mysql://nope", &JournalConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
}
