//! Projections on a real journal: SQLite on a temporary file, and PostgreSQL from
//! `DATABASE_URL` (each test in its own schema; skipped, saying so, when it is not set).
//!
//! The read model counts events per stream and remembers the last sequence it saw, counting
//! every event that does not follow the previous one of its stream: a skipped or doubled
//! event shows up as a wrong count or as an out-of-order event. Each check compares the
//! table with a recount from the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef, ActorStatus};
use tokio::time::Instant;
use tradefloor_actors::hosting::dead_letter_table::{
    DeadLetterPolicy, DeadLetterTable, LetterQuery,
};
use tradefloor_actors::{
    Projection, ProjectionActor, ProjectionArgs, ProjectionConfig, ProjectionMessage,
    SupervisionConfig, Supervisor, SupervisorArgs, rebuild,
};
use tradefloor_persistence::{
    AppendRequest, Database, Error as StorageError, Journal, JournalConfig, NewEvent, OffsetStore,
    StoredEvent, Transaction,
};

const WAIT: Duration = Duration::from_secs(20);
const NAME: &str = "counts";

/// Polls `$condition` every 2 ms until it holds, failing after [`WAIT`].
macro_rules! wait_until {
    ($what:expr, $condition:expr) => {{
        let deadline = Instant::now() + WAIT;
        loop {
            if $condition {
                break;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }};
}

/// A journal on a fresh database, and how to clean it up.
struct Harness {
    journal: Journal,
    /// Each stream's last sequence, for appends.
    heads: HashMap<String, u64>,
    schema: Option<(String, String)>,
    _directory: Option<tempfile::TempDir>,
}

fn journal_config() -> JournalConfig {
    JournalConfig {
        // Tests check crash consistency of the projection, not of the disk.
        sqlite_synchronous_full: false,
        ..JournalConfig::default()
    }
}

impl Harness {
    async fn sqlite() -> Harness {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        let database = Database::connect(&url, &journal_config()).await.unwrap();
        Harness::open(database, None, Some(directory)).await
    }

    async fn postgres(test: &str) -> Option<Harness> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("skipped: DATABASE_URL is not set, so {test} did not run on PostgreSQL");
            return None;
        };
        let schema = format!("projection_{test}_{}", std::process::id());
        let database = Database::connect_postgres(&url, Some(&schema), &journal_config())
            .await
            .unwrap();
        Some(Harness::open(database, Some((url, schema)), None).await)
    }

    async fn open(
        database: Database,
        schema: Option<(String, String)>,
        directory: Option<tempfile::TempDir>,
    ) -> Harness {
        let journal = Journal::open(database, journal_config()).await.unwrap();
        execute(
            journal.database(),
            "CREATE TABLE counts (stream TEXT PRIMARY KEY, events BIGINT NOT NULL, \
             last_sequence BIGINT NOT NULL, out_of_order BIGINT NOT NULL)",
        )
        .await;
        Harness {
            journal,
            heads: HashMap::new(),
            schema,
            _directory: directory,
        }
    }

    /// Appends `rounds` times `events_per_append` events to each of `streams` streams,
    /// interleaving the streams.
    async fn append(&mut self, streams: usize, rounds: usize, events_per_append: usize) {
        for _ in 0..rounds {
            for stream in 0..streams {
                let stream = format!("account|user-{stream}");
                let head = self.heads.entry(stream.clone()).or_default();
                let event = NewEvent {
                    name: "account.touched".to_owned(),
                    schema_version: 1,
                    payload: vec![1],
                    tags: vec![],
                    effective_at: None,
                };
                let outcome = self
                    .journal
                    .append(AppendRequest {
                        stream,
                        kind: "account".to_owned(),
                        expected_sequence: *head,
                        events: vec![event; events_per_append],
                        fence: None,
                    })
                    .await
                    .unwrap();
                *head = outcome.last_sequence;
            }
        }
    }

    async fn finish(self) {
        self.journal.database().close().await;
        if let Some((url, schema)) = self.schema {
            let database = Database::connect(&url, &journal_config()).await.unwrap();
            execute(&database, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
            database.close().await;
        }
    }
}

async fn execute(database: &Database, sql: &str) {
    match database {
        Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    }
    .unwrap();
}

type Row = (String, i64, i64, i64);

/// The read model's rows, by stream.
async fn table(database: &Database) -> Vec<Row> {
    const SELECT: &str =
        "SELECT stream, events, last_sequence, out_of_order FROM counts ORDER BY stream";
    match database {
        Database::Sqlite(pool) => sqlx::query_as(SELECT).fetch_all(pool).await,
        Database::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(pool).await,
    }
    .unwrap()
}

/// What the table must hold after the events up to `through`: recounted from the journal.
async fn recount(journal: &Journal, through: u64) -> Vec<Row> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let events = journal
            .read_all(after, 1_000, &Default::default())
            .await
            .unwrap();
        let Some(last) = events.last() else { break };
        after = last.global_offset;
        for event in events.iter().filter(|e| e.global_offset <= through) {
            *counts.entry(event.stream.clone()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(stream, events)| (stream, events, events, 0))
        .collect()
}

async fn stored_offset(journal: &Journal) -> u64 {
    OffsetStore::new(journal.database().clone())
        .load(NAME, 0)
        .await
        .unwrap()
}

/// A failure to inject into the read model, at a batch counted across incarnations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// An error before writing anything.
    Error,
    /// An error after writing half of the batch.
    ErrorMidBatch,
    /// A panic after writing the whole batch, before the host commits it.
    Panic,
}

#[derive(Default)]
struct Faults {
    batches: AtomicU64,
    planned: Mutex<HashMap<u64, Fault>>,
}

impl Faults {
    fn plan(faults: &[(u64, Fault)]) -> Arc<Faults> {
        Arc::new(Faults {
            batches: AtomicU64::new(0),
            planned: Mutex::new(faults.iter().copied().collect()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum CountError {
    #[error("injected failure")]
    Injected,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Counts events per stream.
struct Counts {
    faults: Arc<Faults>,
    /// Offsets it fails on every time, until taken out (the fix).
    poison: Arc<Mutex<BTreeSet<u64>>>,
    /// Whether a stream's events must apply in order (its order key).
    ordered: bool,
}

impl Counts {
    fn new() -> Self {
        Self {
            faults: Arc::default(),
            poison: Arc::default(),
            ordered: false,
        }
    }
}

const UPSERT: &str = "INSERT INTO counts (stream, events, last_sequence, out_of_order) \
    VALUES ($1, 1, $2, $3) ON CONFLICT (stream) DO UPDATE SET events = counts.events + 1, \
    last_sequence = excluded.last_sequence, out_of_order = counts.out_of_order + \
    CASE WHEN excluded.last_sequence = counts.last_sequence + 1 THEN 0 ELSE 1 END";

async fn count(transaction: &mut Transaction, event: &StoredEvent) -> Result<(), StorageError> {
    let sequence = i64::try_from(event.sequence).unwrap();
    let out_of_order = i64::from(sequence != 1);
    let values = [
        event.stream.as_str().into(),
        sequence.into(),
        out_of_order.into(),
    ];
    transaction.execute(UPSERT, &values).await
}

impl Projection for Counts {
    type Error = CountError;

    fn name(&self) -> &str {
        NAME
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[Arc<StoredEvent>],
    ) -> Result<(), CountError> {
        let poisoned = {
            let poison = self.poison.lock().unwrap();
            events
                .iter()
                .any(|event| poison.contains(&event.global_offset))
        };
        if poisoned {
            return Err(CountError::Injected);
        }
        let batch = self.faults.batches.fetch_add(1, Ordering::SeqCst) + 1;
        let fault = self.faults.planned.lock().unwrap().remove(&batch);
        if fault == Some(Fault::Error) {
            return Err(CountError::Injected);
        }
        for (index, event) in events.iter().enumerate() {
            if fault == Some(Fault::ErrorMidBatch) && index == events.len() / 2 {
                return Err(CountError::Injected);
            }
            count(transaction, event).await?;
        }
        assert!(
            fault != Some(Fault::Panic),
            "injected panic in batch {batch}"
        );
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), CountError> {
        transaction.execute("DELETE FROM counts", &[]).await?;
        Ok(())
    }

    fn order_key(&self, event: &StoredEvent) -> Option<String> {
        self.ordered.then(|| event.stream.clone())
    }
}

fn config(batch_events_max: usize) -> ProjectionConfig {
    ProjectionConfig {
        batch_events_max,
        poll_interval: Duration::from_millis(5),
        batch_interval_min: Duration::ZERO,
        dead_letters: DeadLetterPolicy {
            attempts_max: 3,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
        },
    }
}

async fn spawn(
    journal: &Journal,
    projection: Counts,
    config: ProjectionConfig,
) -> (ActorRef<ProjectionMessage>, tokio::task::JoinHandle<()>) {
    let arguments = ProjectionArgs {
        projection,
        journal: journal.clone(),
        config,
        progress: None,
        epoch: None,
    };
    Actor::spawn(None, ProjectionActor::new(), arguments)
        .await
        .unwrap()
}

/// [`spawn`] for a holder of the projection's lease at `epoch`.
async fn spawn_at(
    journal: &Journal,
    config: ProjectionConfig,
    epoch: u64,
) -> (ActorRef<ProjectionMessage>, tokio::task::JoinHandle<()>) {
    let arguments = ProjectionArgs {
        projection: Counts::new(),
        journal: journal.clone(),
        config,
        progress: None,
        epoch: Some(epoch),
    };
    Actor::spawn(None, ProjectionActor::new(), arguments)
        .await
        .unwrap()
}

async fn caught_up(journal: &Journal) -> bool {
    stored_offset(journal).await == journal.last_offset().await.unwrap()
}

async fn applies_every_event_once_in_order(mut harness: Harness) {
    harness.append(8, 10, 3).await;
    let (actor, join) = spawn(&harness.journal, Counts::new(), config(32)).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    // Events appended while it runs are picked up after the poll interval.
    harness.append(5, 4, 2).await;
    let last = harness.journal.last_offset().await.unwrap();
    assert_eq!(last, 8 * 10 * 3 + 5 * 4 * 2);
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    let database = harness.journal.database();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    let stats = ProjectionActor::<Counts>::stats(&actor).await.unwrap();
    assert_eq!((stats.name.as_str(), stats.offset), (NAME, last));
    assert_eq!((stats.lag, stats.events), (0, last));
    assert!(stats.batches >= last.div_ceil(32), "{stats:?}");
    assert!(stats.last_batch > 0 && stats.last_batch <= 32, "{stats:?}");
    actor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_applies_every_event_once_in_order_on_sqlite() {
    applies_every_event_once_in_order(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_applies_every_event_once_in_order_on_postgres() {
    if let Some(harness) = Harness::postgres("applies").await {
        applies_every_event_once_in_order(harness).await;
    }
}

/// A batch that fails half-way keeps none of its rows: it is applied again event by event,
/// in place (no restart), and the table ends exactly right, nothing parked.
async fn a_failing_batch_leaves_neither_rows_nor_offset(mut harness: Harness) {
    harness.append(6, 10, 2).await;
    let faults = Faults::plan(&[(3, Fault::ErrorMidBatch), (5, Fault::Error)]);
    let projection = Counts {
        faults: faults.clone(),
        ..Counts::new()
    };
    let (actor, join) = spawn(&harness.journal, projection, config(16)).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    let last = harness.journal.last_offset().await.unwrap();
    let database = harness.journal.database();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    assert!(faults.planned.lock().unwrap().is_empty(), "both faults hit");
    let stats = ProjectionActor::<Counts>::stats(&actor).await.unwrap();
    assert_eq!((stats.events, stats.dead_letters), (last, 0), "{stats:?}");
    assert_eq!(actor.get_status(), ActorStatus::Running);
    actor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_leaves_neither_rows_nor_offset_on_sqlite() {
    a_failing_batch_leaves_neither_rows_nor_offset(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_leaves_neither_rows_nor_offset_on_postgres() {
    if let Some(harness) = Harness::postgres("failing_batch").await {
        a_failing_batch_leaves_neither_rows_nor_offset(harness).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_projection_that_fails_or_crashes_neither_skips_nor_doubles() {
    let mut harness = Harness::sqlite().await;
    harness.append(8, 6, 3).await;
    let faults = Faults::plan(&[
        (2, Fault::Error),
        (4, Fault::ErrorMidBatch),
        (6, Fault::Panic),
    ]);
    let supervision = SupervisionConfig {
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        jitter: 0.0,
        ..SupervisionConfig::default()
    };
    let spec = {
        let faults = faults.clone();
        ProjectionActor::spec(
            "counts",
            harness.journal.clone(),
            config(10),
            None,
            move || Counts {
                faults: faults.clone(),
                ..Counts::new()
            },
        )
    };
    let arguments = SupervisorArgs::new("/test/projections", supervision, vec![spec]);
    let (supervisor, join) = Actor::spawn(None, Supervisor, arguments).await.unwrap();
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    // More events while it runs, after its restarts.
    harness.append(3, 5, 1).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    let last = harness.journal.last_offset().await.unwrap();
    let database = harness.journal.database();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    let stats = Supervisor::stats(&supervisor).await.unwrap();
    // The errors are tried again in place; only the panic restarts the projection.
    assert_eq!(stats.children[0].restarts, 1, "{stats:?}");
    assert!(faults.planned.lock().unwrap().is_empty());
    supervisor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

/// Resetting the read model and replaying from offset 0 gives the same table and offset,
/// whatever the table held before; the projection then goes on from there.
async fn rebuild_gives_identical_tables(mut harness: Harness) {
    harness.append(7, 8, 2).await;
    let (actor, join) = spawn(&harness.journal, Counts::new(), config(25)).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    actor.stop(None);
    join.await.unwrap();
    let database = &harness.journal.database().clone();
    let before = table(database).await;
    let offset = stored_offset(&harness.journal).await;
    // Damage the read model: the rebuild must not depend on what is there.
    execute(database, "UPDATE counts SET events = events * 2").await;
    execute(
        database,
        "INSERT INTO counts VALUES ('account|ghost', 1, 1, 0)",
    )
    .await;

    let reached = rebuild(&harness.journal, &mut Counts::new(), &config(9))
        .await
        .unwrap();
    assert_eq!(reached, offset);
    assert_eq!(stored_offset(&harness.journal).await, offset);
    assert_eq!(table(database).await, before);

    harness.append(2, 3, 1).await;
    let (actor, join) = spawn(&harness.journal, Counts::new(), config(25)).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    let last = harness.journal.last_offset().await.unwrap();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    actor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_gives_identical_tables_on_sqlite() {
    rebuild_gives_identical_tables(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_gives_identical_tables_on_postgres() {
    if let Some(harness) = Harness::postgres("rebuild").await {
        rebuild_gives_identical_tables(harness).await;
    }
}

/// Events appended through this process's journal reach a caught-up projection on the log
/// bus at once, without a database read; events another process appends (another journal on
/// the same database, which publishes on no bus here) wait for the poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_projection_reads_the_database_only_at_its_poll_interval() {
    let mut harness = Harness::sqlite().await;
    harness.append(2, 5, 1).await;
    let config = ProjectionConfig {
        batch_events_max: 100,
        poll_interval: Duration::from_secs(3_600),
        batch_interval_min: Duration::ZERO,
        ..ProjectionConfig::default()
    };
    let (actor, join) = spawn(&harness.journal, Counts::new(), config).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    harness.append(1, 5, 1).await;
    wait_until!(
        "the projection to apply the events published on the bus",
        ProjectionActor::<Counts>::stats(&actor)
            .await
            .unwrap()
            .offset
            == 15
    );
    let stats = ProjectionActor::<Counts>::stats(&actor).await.unwrap();
    // One read at start, none since.
    assert_eq!(
        (stats.polls, stats.offset, stats.lag),
        (1, 15, 0),
        "{stats:?}"
    );

    let path = harness
        ._directory
        .as_ref()
        .unwrap()
        .path()
        .join("journal.db");
    let url = format!("sqlite:{}", path.display());
    let database = Database::connect(&url, &journal_config()).await.unwrap();
    let other = Journal::open(database, journal_config()).await.unwrap();
    other
        .append(AppendRequest {
            stream: "account|elsewhere".to_owned(),
            kind: "account".to_owned(),
            expected_sequence: 0,
            events: vec![NewEvent {
                name: "account.touched".to_owned(),
                schema_version: 1,
                payload: vec![1],
                tags: vec![],
                effective_at: None,
            }],
            fence: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = ProjectionActor::<Counts>::stats(&actor).await.unwrap();
    // It sleeps until the interval is over.
    assert_eq!(
        (stats.polls, stats.offset, stats.lag),
        (1, 15, 1),
        "{stats:?}"
    );
    other.database().close().await;
    actor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_does_not_start() {
    let harness = Harness::sqlite().await;
    let arguments = ProjectionArgs {
        projection: Counts::new(),
        journal: harness.journal.clone(),
        config: ProjectionConfig {
            batch_events_max: 0,
            ..ProjectionConfig::default()
        },
        progress: None,
        epoch: None,
    };
    let started = Actor::spawn(None, ProjectionActor::new(), arguments).await;
    assert!(started.is_err());
    harness.finish().await;
}

/// Two holders of one projection's lease at once (the lease taken over while its holder
/// still ran): the new holder (a later epoch) may be refused while the old one moves the
/// offset (it starts again from the stored offset), but once it has committed, the old
/// holder's batches are refused whole: it is fenced, and no event is counted twice.
async fn a_stale_holder_is_fenced_and_nothing_is_counted_twice(mut harness: Harness) {
    harness.append(4, 10, 2).await;
    // The old holder takes the log's new batches at most every 100 ms: without that it could
    // win every race for a new event (CI saw 200 in a row on PostgreSQL), and the new holder,
    // refused each time, would never commit; in a cluster the old one's node stops it.
    let slow = ProjectionConfig {
        batch_interval_min: Duration::from_millis(100),
        ..config(8)
    };
    let (old, old_join) = spawn_at(&harness.journal, slow, 1).await;
    wait_until!(
        "the old holder to catch up",
        caught_up(&harness.journal).await
    );
    let supervision = SupervisionConfig {
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        jitter: 0.0,
        ..SupervisionConfig::default()
    };
    let spec = ProjectionActor::spec(
        "counts",
        harness.journal.clone(),
        config(8),
        Some(2),
        Counts::new,
    );
    let arguments = SupervisorArgs::new("/test/projections", supervision, vec![spec]);
    let (supervisor, join) = Actor::spawn(None, Supervisor, arguments).await.unwrap();
    let offsets = OffsetStore::new(harness.journal.database().clone());
    // Both race for every new event until the new holder wins one.
    for round in 0.. {
        assert!(round < 200, "the new holder never committed");
        harness.append(2, 1, 1).await;
        wait_until!("both to catch up", caught_up(&harness.journal).await);
        if offsets.load_with_epoch(NAME, 0).await.unwrap().1 == 2 {
            break;
        }
    }
    // From now on the old holder is refused.
    harness.append(3, 4, 2).await;
    wait_until!(
        "the old holder to be fenced",
        ProjectionActor::<Counts>::stats(&old).await.unwrap().fenced
    );
    wait_until!(
        "the new holder to catch up",
        caught_up(&harness.journal).await
    );
    let last = harness.journal.last_offset().await.unwrap();
    let database = harness.journal.database();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    assert_eq!(offsets.load_with_epoch(NAME, 0).await.unwrap(), (last, 2));
    old.stop(None);
    old_join.await.unwrap();
    supervisor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_is_fenced_and_nothing_is_counted_twice_on_sqlite() {
    a_stale_holder_is_fenced_and_nothing_is_counted_twice(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_is_fenced_and_nothing_is_counted_twice_on_postgres() {
    if let Some(harness) = Harness::postgres("fenced_holder").await {
        a_stale_holder_is_fenced_and_nothing_is_counted_twice(harness).await;
    }
}

/// Every letter the projection parked, in offset order.
async fn letters(
    journal: &Journal,
) -> Vec<tradefloor_actors::hosting::dead_letter_table::DeadLetter> {
    let table = DeadLetterTable::new(journal.read_models().clone());
    let query = LetterQuery {
        consumer: Some(NAME.to_owned()),
        after: None,
        limit: 1_000,
    };
    table.list(&query).await.unwrap()
}

/// An event the projection fails on every time is tried `attempts_max` times, then parked
/// with the offset moved past it, and the projection goes on with the other streams; the
/// later events of its stream are parked behind it (the projection keeps a stream's order),
/// across a restart too. A retry before the fix fails again and changes nothing; after the
/// fix, a retry applies the stream's letters in order and the table is what a projection
/// that never failed would hold.
async fn a_poison_event_is_parked_and_retried_after_a_fix(mut harness: Harness) {
    harness.append(4, 3, 1).await;
    // The second event of user-1: offsets go round the four streams.
    let poisoned = 6;
    let poison = Arc::new(Mutex::new(BTreeSet::from([poisoned])));
    let make = || Counts {
        poison: poison.clone(),
        ordered: true,
        ..Counts::new()
    };
    let (actor, join) = spawn(&harness.journal, make(), config(16)).await;
    wait_until!(
        "the projection to go past the poison",
        caught_up(&harness.journal).await
    );
    let parked = letters(&harness.journal).await;
    let offsets: Vec<u64> = parked.iter().map(|l| l.event.global_offset).collect();
    assert_eq!(
        offsets,
        [6, 10],
        "the poison and the next event of its stream"
    );
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(parked[0].error, "injected failure");
    assert_eq!(parked[0].order_key.as_deref(), Some("account|user-1"));
    assert_eq!((parked[1].attempts, parked[1].held_by), (0, Some(6)));
    let database = &harness.journal.database().clone();
    let rows = table(database).await;
    let user_1 = rows.iter().find(|row| row.0 == "account|user-1").unwrap();
    assert_eq!(
        (user_1.1, user_1.3),
        (1, 0),
        "only its first event, none out of order"
    );
    let expected = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .filter(|row| row.0 != "account|user-1")
            .cloned()
            .collect()
    };
    let last = harness.journal.last_offset().await.unwrap();
    let full = recount(&harness.journal, last).await;
    assert_eq!(
        expected(&rows),
        expected(&full),
        "the other streams went on"
    );
    let stats = ProjectionActor::<Counts>::stats(&actor).await.unwrap();
    assert_eq!(stats.dead_letters, 2, "{stats:?}");
    actor.stop(None);
    join.await.unwrap();

    // Restarted, it still holds the stream.
    let (actor, join) = spawn(&harness.journal, make(), config(16)).await;
    harness.append(2, 1, 1).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    assert_eq!(letters(&harness.journal).await.len(), 3);

    // A retry before the fix fails again: one more attempt, nothing applied.
    let table_of_letters = DeadLetterTable::new(harness.journal.read_models().clone());
    assert_eq!(
        table_of_letters.request_retry(NAME, 10).await.unwrap(),
        3,
        "the whole stream"
    );
    wait_until!(
        "the retry to fail",
        letters(&harness.journal)
            .await
            .iter()
            .all(|letter| !letter.retry_requested)
    );
    let after_failed_retry = letters(&harness.journal).await;
    assert_eq!(after_failed_retry.len(), 3);
    assert_eq!(after_failed_retry[0].attempts, 4);
    assert!(
        after_failed_retry[1].error.contains("held behind offset 6"),
        "{after_failed_retry:?}"
    );

    // Fixed, a retry applies the stream's letters in order.
    poison.lock().unwrap().clear();
    assert_eq!(table_of_letters.request_retry(NAME, 6).await.unwrap(), 3);
    wait_until!(
        "the letters to be applied",
        letters(&harness.journal).await.is_empty()
    );
    let last = harness.journal.last_offset().await.unwrap();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    // And the stream is no longer held.
    harness.append(2, 1, 1).await;
    wait_until!(
        "the projection to catch up",
        caught_up(&harness.journal).await
    );
    let last = harness.journal.last_offset().await.unwrap();
    assert_eq!(table(database).await, recount(&harness.journal, last).await);
    assert!(letters(&harness.journal).await.is_empty());
    actor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_and_retried_after_a_fix_on_sqlite() {
    a_poison_event_is_parked_and_retried_after_a_fix(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_and_retried_after_a_fix_on_postgres() {
    if let Some(harness) = Harness::postgres("poison").await {
        a_poison_event_is_parked_and_retried_after_a_fix(harness).await;
    }
}
