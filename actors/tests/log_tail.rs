//! The log tail, on SQLite and PostgreSQL: it yields every matching event once, in order,
//! whether the events came on this process's log bus, from another journal on the same
//! database (a gap on the bus), or after the tail lagged.

use tradefloor_actors::LogTail;
use tradefloor_persistence::{
    AppendRequest, Database, Filter, Journal, JournalConfig, NewEvent, StoredEvent,
};

/// Two journals on one fresh database (this process's and "another process's"), and how to
/// clean up.
struct Harness {
    ours: Journal,
    theirs: Journal,
    schema: Option<(String, String)>,
    _directory: Option<tempfile::TempDir>,
}

fn config() -> JournalConfig {
    JournalConfig {
        sqlite_synchronous_full: false,
        // Small, so that a test can make a tail lag.
        bus_batches_max: 4,
        ..JournalConfig::default()
    }
}

impl Harness {
    async fn sqlite() -> Harness {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        Harness {
            ours: open(Database::connect(&url, &config()).await.unwrap()).await,
            theirs: open(Database::connect(&url, &config()).await.unwrap()).await,
            schema: None,
            _directory: Some(directory),
        }
    }

    async fn postgres(test: &str) -> Option<Harness> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("skipped: DATABASE_URL is not set, so {test} did not run on PostgreSQL");
            return None;
        };
        let schema = format!("log_tail_{test}_{}", std::process::id());
        let config = config();
        let connect = || Database::connect_postgres(&url, Some(&schema), &config);
        Some(Harness {
            ours: open(connect().await.unwrap()).await,
            theirs: open(connect().await.unwrap()).await,
            schema: Some((url.clone(), schema.clone())),
            _directory: None,
        })
    }

    async fn finish(self) {
        self.ours.database().close().await;
        self.theirs.database().close().await;
        if let Some((url, schema)) = self.schema
            && let Database::Postgres(pool) = Database::connect(&url, &config()).await.unwrap()
        {
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

async fn open(database: Database) -> Journal {
    Journal::open(database, config()).await.unwrap()
}

/// Appends `count` events of `kind` to a new stream `name` through `journal`.
async fn append(journal: &Journal, name: &str, kind: &str, count: usize) {
    let event = NewEvent {
        name: "e".to_owned(),
        schema_version: 1,
        payload: name.as_bytes().to_vec(),
        tags: vec![],
        effective_at: None,
    };
    journal
        .append(AppendRequest {
            stream: name.to_owned(),
            kind: kind.to_owned(),
            expected_sequence: 0,
            events: vec![event; count],
            fence: None,
        })
        .await
        .unwrap();
}

/// Everything the tail has now, batch by batch, checking each batch's size.
async fn drain(tail: &mut LogTail, into: &mut Vec<StoredEvent>) {
    loop {
        let batch = tail.next().await.unwrap();
        assert!(batch.len() <= tail.limit());
        if batch.is_empty() && !tail.has_more() {
            return;
        }
        into.extend(batch.iter().map(|stored| StoredEvent::clone(stored)));
    }
}

async fn every_matching_event_once_in_order(harness: Harness) {
    let filter = Filter::Kind("account".to_owned());
    append(&harness.ours, "before", "account", 5).await;
    let mut tail = LogTail::new(harness.ours.clone(), filter.clone(), 0, 3);
    let mut seen = Vec::new();
    drain(&mut tail, &mut seen).await;
    let reads_after_catching_up = tail.database_reads();

    // On the bus, in step: no database read.
    append(&harness.ours, "ours-1", "account", 2).await;
    append(&harness.ours, "ours-book", "book", 4).await;
    append(&harness.ours, "ours-2", "account", 4).await;
    drain(&mut tail, &mut seen).await;
    assert_eq!(tail.database_reads(), reads_after_catching_up);

    // Another process appends: the next batch on the bus does not follow on.
    append(&harness.theirs, "theirs-1", "account", 2).await;
    append(&harness.ours, "ours-3", "account", 1).await;
    drain(&mut tail, &mut seen).await;
    assert!(
        tail.database_reads() > reads_after_catching_up,
        "the gap was read"
    );

    // Another process appends and nothing follows here: found by a database check.
    append(&harness.theirs, "theirs-2", "account", 1).await;
    tail.check_database();
    drain(&mut tail, &mut seen).await;

    // More batches than the bus keeps: the tail lagged and reads the database.
    for index in 0..10 {
        append(&harness.ours, &format!("burst-{index}"), "account", 1).await;
    }
    drain(&mut tail, &mut seen).await;

    let expected = harness.ours.read_all(0, 1_000, &filter).await.unwrap();
    assert_eq!(seen, expected);
    assert_eq!(tail.cursor(), harness.ours.last_offset().await.unwrap());

    // Back to an earlier offset: the events after it again, from the database.
    tail.seek(expected[3].global_offset);
    let mut again = Vec::new();
    drain(&mut tail, &mut again).await;
    assert_eq!(again, expected[4..]);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_event_once_in_order_on_sqlite() {
    every_matching_event_once_in_order(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_event_once_in_order_on_postgres() {
    if let Some(harness) = Harness::postgres("order").await {
        every_matching_event_once_in_order(harness).await;
    }
}

/// Counts the wake-ups a [`TailWaker`] sends, letting each next one be sent.
struct Counter;

/// The wake-up message.
struct Wake;

// Sent within this process only.
impl ractor::Message for Wake {}

struct CounterState {
    wakes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    waker: std::sync::Arc<std::sync::Mutex<Option<tradefloor_actors::TailWaker>>>,
    tail: LogTail,
}

impl ractor::Actor for Counter {
    type Msg = Wake;
    type State = CounterState;
    type Arguments = CounterState;

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<Wake>,
        state: CounterState,
    ) -> Result<CounterState, ractor::ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<Wake>,
        _message: Wake,
        state: &mut CounterState,
    ) -> Result<(), ractor::ActorProcessingErr> {
        state
            .wakes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(waker) = state.waker.lock().unwrap().as_ref() {
            waker.woken(&mut state.tail);
        }
        Ok(())
    }
}

/// A waker paced at `pace` wakes its actor at most once per `pace` however many batches are
/// published meanwhile (they are taken together), and at least once after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_waker_wakes_at_most_once_per_pace() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let harness = Harness::sqlite().await;
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let state = CounterState {
        wakes: wakes.clone(),
        waker: slot.clone(),
        tail: LogTail::new(harness.ours.clone(), Filter::All, 0, 100),
    };
    let (actor, join) = ractor::Actor::spawn(None, Counter, state).await.unwrap();
    let pace = Duration::from_millis(300);
    let waker = tradefloor_actors::TailWaker::spawn(
        &harness.ours,
        actor.clone(),
        Duration::from_secs(3_600),
        pace,
        None,
        || Wake,
    );
    *slot.lock().unwrap() = Some(waker);
    let started = Instant::now();
    for index in 0..20 {
        append(&harness.ours, &format!("s{index}"), "account", 1).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(pace * 2).await;
    let woken = wakes.load(Ordering::SeqCst);
    let bound = (elapsed.as_millis() / pace.as_millis()) as usize + 2;
    assert!(woken >= 1, "the last batch wakes the actor");
    assert!(
        woken <= bound,
        "{woken} wake-ups for 20 batches in {elapsed:?} at one per {pace:?}"
    );
    slot.lock().unwrap().take();
    actor.stop(None);
    join.await.unwrap();
    harness.finish().await;
}
