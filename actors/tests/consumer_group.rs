//! Consumer groups on a real SQLite journal: partitions shared by the members, handed over
//! when members join, leave or die, every event handled in order per partition, at least
//! once, without gaps.
//!
//! Handlers record `(member, partition, offset)`. The checks compare each partition's
//! record with the partition's events read back from the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tradefloor_actors::{
    ConsumerConfig, ConsumerGroup, ConsumerHandler, ConsumerMember, ConsumerMemberArgs,
    ConsumerMessage, SupervisionConfig, Supervisor, SupervisorArgs, partition_of,
};
use tradefloor_persistence::{
    AppendRequest, Database, Filter, Journal, JournalConfig, NewEvent, OffsetStore, StoredEvent,
};

const WAIT: Duration = Duration::from_secs(20);
const GROUP: &str = "billing";

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

struct Fixture {
    journal: Journal,
    heads: HashMap<String, u64>,
    _directory: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let config = JournalConfig {
            sqlite_synchronous_full: false,
            ..JournalConfig::default()
        };
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        let database = Database::connect(&url, &config).await.unwrap();
        Fixture {
            journal: Journal::open(database, config).await.unwrap(),
            heads: HashMap::new(),
            _directory: directory,
        }
    }

    /// Appends `rounds` times one event to each of `streams` streams, interleaved.
    async fn append(&mut self, streams: usize, rounds: usize) {
        for _ in 0..rounds {
            for stream in 0..streams {
                let stream = format!("account|user-{stream}");
                let head = self.heads.entry(stream.clone()).or_default();
                let outcome = self
                    .journal
                    .append(AppendRequest {
                        stream,
                        kind: "account".to_owned(),
                        expected_sequence: *head,
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
                *head = outcome.last_sequence;
            }
        }
    }

    /// Every event's offset, by partition, in order.
    async fn partitions(&self, partition_count: u32) -> BTreeMap<u32, Vec<u64>> {
        let events = self
            .journal
            .read_all(0, 10_000, &Filter::All)
            .await
            .unwrap();
        let mut partitions: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for event in events {
            let partition = partition_of(&event.stream, partition_count);
            partitions
                .entry(partition)
                .or_default()
                .push(event.global_offset);
        }
        partitions
    }
}

type Record = Arc<Mutex<Vec<(String, u32, u64)>>>;

/// Records what it handles; can be told to hang on its n-th event (and record nothing).
struct Recorder {
    member: String,
    record: Record,
    hang_at: Option<u64>,
    handled: Arc<AtomicU64>,
    hanging: Arc<AtomicBool>,
}

impl Recorder {
    fn new(member: &str, record: &Record) -> Self {
        Self {
            member: member.to_owned(),
            record: record.clone(),
            hang_at: None,
            handled: Arc::default(),
            hanging: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

impl ConsumerHandler for Recorder {
    type Error = Injected;

    async fn handle(&mut self, partition: u32, event: &StoredEvent) -> Result<(), Injected> {
        let count = self.handled.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hang_at == Some(count) {
            self.hanging.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        // Let other members run in between, as real handlers would.
        tokio::task::yield_now().await;
        let entry = (self.member.clone(), partition, event.global_offset);
        self.record.lock().unwrap().push(entry);
        Ok(())
    }
}

fn config(poll_interval: Duration) -> ConsumerConfig {
    ConsumerConfig {
        filter: Filter::All,
        batch_events_max: 16,
        poll_interval,
        batch_interval_min: Duration::ZERO,
    }
}

async fn spawn(
    group: &ConsumerGroup,
    journal: &Journal,
    handler: Recorder,
    config: ConsumerConfig,
) -> (ActorRef<ConsumerMessage>, JoinHandle<()>) {
    let arguments = ConsumerMemberArgs {
        group: group.clone(),
        member: handler.member.clone(),
        journal: journal.clone(),
        config,
        handler,
        progress: None,
    };
    Actor::spawn(None, ConsumerMember::new(), arguments)
        .await
        .unwrap()
}

/// Every event of every partition recorded at least once.
fn all_handled(record: &Record, partitions: &BTreeMap<u32, Vec<u64>>) -> bool {
    let seen: BTreeSet<u64> = record.lock().unwrap().iter().map(|r| r.2).collect();
    partitions
        .values()
        .flatten()
        .all(|offset| seen.contains(offset))
}

/// Checks each partition's record against its events: handled in order from its first
/// event, without gaps. With `exactly_once`, each event once; otherwise a member may go
/// back (a new holder starting from a committed offset below what its predecessor handled)
/// but never skip ahead. Returns the offsets handled more than once.
fn check(
    record: &Record,
    partitions: &BTreeMap<u32, Vec<u64>>,
    exactly_once: bool,
) -> BTreeSet<u64> {
    let record = record.lock().unwrap();
    let mut duplicates = BTreeSet::new();
    for (partition, events) in partitions {
        let index: HashMap<u64, usize> = events.iter().enumerate().map(|(i, o)| (*o, i)).collect();
        let mut next = 0;
        let mut seen = BTreeSet::new();
        for (member, _, offset) in record.iter().filter(|r| r.1 == *partition) {
            let at = index[offset];
            assert!(
                at <= next,
                "partition {partition}: {member} skipped to {offset}"
            );
            if at < next {
                assert!(
                    !exactly_once,
                    "partition {partition}: {offset} again ({member})"
                );
            }
            if !seen.insert(*offset) {
                duplicates.insert(*offset);
            }
            next = at + 1;
        }
        assert_eq!(
            next,
            events.len(),
            "partition {partition} handled to its end"
        );
    }
    duplicates
}

/// Each partition held by exactly one live member, which is its target.
fn assert_settled(group: &ConsumerGroup, members: &[&str]) {
    let stats = group.stats();
    assert_eq!(stats.members, members);
    assert!(stats.is_settled(), "{stats:?}");
    assert!(stats.holders.iter().all(Option::is_some), "{stats:?}");
}

async fn committed(journal: &Journal, partitions: &BTreeMap<u32, Vec<u64>>) -> Vec<u64> {
    let store = OffsetStore::new(journal.database().clone());
    let mut offsets = Vec::new();
    for partition in partitions.keys() {
        offsets.push(store.load(GROUP, *partition).await.unwrap());
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_partitions_and_hand_them_over() {
    const PARTITIONS: u32 = 8;
    let mut fixture = Fixture::new().await;
    let group = ConsumerGroup::new(GROUP, PARTITIONS);
    let record = Record::default();
    let poll = config(Duration::from_millis(5));
    fixture.append(24, 5).await;

    // Two members: each partition processed by exactly one, every event exactly once.
    let (a, a_join) = spawn(
        &group,
        &fixture.journal,
        Recorder::new("a", &record),
        poll.clone(),
    )
    .await;
    let (b, b_join) = spawn(
        &group,
        &fixture.journal,
        Recorder::new("b", &record),
        poll.clone(),
    )
    .await;
    let partitions = fixture.partitions(PARTITIONS).await;
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "every partition has events"
    );
    wait_until!(
        "two members to handle everything",
        group.stats().is_settled() && all_handled(&record, &partitions)
    );
    assert_settled(&group, &["a", "b"]);
    let a_owns = ConsumerMember::<Recorder>::stats(&a)
        .await
        .unwrap()
        .partitions;
    let b_owns = ConsumerMember::<Recorder>::stats(&b)
        .await
        .unwrap()
        .partitions;
    assert_eq!(a_owns.len() + b_owns.len(), PARTITIONS as usize);
    assert!(
        a_owns
            .keys()
            .all(|partition| !b_owns.contains_key(partition))
    );
    check(&record, &partitions, true);

    // A third member joins while events arrive: partitions move, nothing skipped or repeated.
    let (c, c_join) = spawn(
        &group,
        &fixture.journal,
        Recorder::new("c", &record),
        poll.clone(),
    )
    .await;
    fixture.append(24, 3).await;
    let partitions = fixture.partitions(PARTITIONS).await;
    wait_until!(
        "three members to handle everything",
        group.stats().is_settled() && all_handled(&record, &partitions)
    );
    assert_settled(&group, &["a", "b", "c"]);
    let c_owns = ConsumerMember::<Recorder>::stats(&c)
        .await
        .unwrap()
        .partitions;
    assert!(c_owns.len() >= 2, "{c_owns:?}");
    check(&record, &partitions, true);

    // A member leaves gracefully: its partitions go on from where it committed.
    b.stop(None);
    b_join.await.unwrap();
    fixture.append(24, 3).await;
    let partitions = fixture.partitions(PARTITIONS).await;
    wait_until!(
        "two members to handle everything",
        group.stats().is_settled() && all_handled(&record, &partitions)
    );
    assert_settled(&group, &["a", "c"]);
    check(&record, &partitions, true);
    let lasts: Vec<u64> = partitions
        .values()
        .map(|events| *events.last().unwrap())
        .collect();
    wait_until!(
        "every offset to be committed",
        committed(&fixture.journal, &partitions).await == lasts
    );

    // A member is killed: the survivor takes everything, from the committed offsets.
    a.kill();
    a_join.await.unwrap();
    fixture.append(24, 2).await;
    let partitions = fixture.partitions(PARTITIONS).await;
    wait_until!(
        "the survivor to handle everything",
        group.stats().is_settled() && all_handled(&record, &partitions)
    );
    assert_settled(&group, &["c"]);
    let c_owns = ConsumerMember::<Recorder>::stats(&c)
        .await
        .unwrap()
        .partitions;
    assert_eq!(c_owns.len(), PARTITIONS as usize);
    // Everything was committed before the kill, so nothing comes twice.
    check(&record, &partitions, true);
    c.stop(None);
    c_join.await.unwrap();
    assert!(group.stats().members.is_empty());
}

/// A member hangs in its handler mid-batch and is killed: the events it handled after its
/// last commit are handled again by the member taking over — those and nothing else — in
/// order and without gaps. (How many of its events were committed first depends on how its
/// reads split the appended events into batches, so the commits are read, not assumed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_s_uncommitted_work_is_handled_again() {
    const PARTITIONS: u32 = 4;
    let mut fixture = Fixture::new().await;
    let group = ConsumerGroup::new(GROUP, PARTITIONS);
    let record = Record::default();
    // Members read the database at start, when the group changes and when woken, and take
    // what is published on the log bus: never on their own.
    let idle = ConsumerConfig {
        batch_events_max: 100,
        ..config(Duration::from_secs(3_600))
    };
    let mut hanging_handler = Recorder::new("a", &record);
    hanging_handler.hang_at = Some(5);
    let hanging = hanging_handler.hanging.clone();
    let (a, a_join) = spawn(&group, &fixture.journal, hanging_handler, idle.clone()).await;
    wait_until!("a to hold everything", group.stats().is_settled());
    let (b, b_join) = spawn(&group, &fixture.journal, Recorder::new("b", &record), idle).await;
    wait_until!(
        "a and b to settle",
        group.stats().is_settled() && group.stats().members.len() == 2
    );

    // Asked before the append: a takes the appended events from the log bus at once and
    // hangs, and a hanging member answers nothing.
    let a_partitions: BTreeSet<u32> = ConsumerMember::<Recorder>::stats(&a)
        .await
        .unwrap()
        .partitions
        .into_keys()
        .collect();
    fixture.append(8, 6).await;
    let partitions = fixture.partitions(PARTITIONS).await;
    let a_events: usize = a_partitions.iter().map(|p| partitions[p].len()).sum();
    assert!(a_events >= 5, "a has {a_events} events");
    b.cast(ConsumerMessage::Wake).unwrap();
    a.cast(ConsumerMessage::Wake).unwrap();
    wait_until!("a to hang", hanging.load(Ordering::SeqCst));
    // What a committed before it hung: the survivor starts after these.
    let committed_before_kill: BTreeMap<u32, u64> = partitions
        .keys()
        .copied()
        .zip(committed(&fixture.journal, &partitions).await)
        .collect();

    a.kill();
    a_join.await.unwrap();
    wait_until!(
        "b to handle everything",
        group.stats().is_settled() && all_handled(&record, &partitions)
    );
    assert_settled(&group, &["b"]);
    let duplicates = check(&record, &partitions, false);
    let handled_by_a: BTreeSet<u64> = record
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == "a")
        .map(|r| r.2)
        .collect();
    assert_eq!(handled_by_a.len(), 4, "a hung at its fifth event");
    let partition_of: BTreeMap<u64, u32> = partitions
        .iter()
        .flat_map(|(partition, offsets)| offsets.iter().map(move |offset| (*offset, *partition)))
        .collect();
    let uncommitted: BTreeSet<u64> = handled_by_a
        .iter()
        .copied()
        .filter(|offset| *offset > committed_before_kill[&partition_of[offset]])
        .collect();
    assert_eq!(
        duplicates, uncommitted,
        "exactly a's uncommitted work comes again"
    );
    b.stop(None);
    b_join.await.unwrap();
}

/// A handler that fails restarts its member (under a supervisor); what it handled before the
/// failure was committed, so the events come once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_member_restarts_and_resumes_from_its_committed_offsets() {
    const PARTITIONS: u32 = 6;
    let mut fixture = Fixture::new().await;
    fixture.append(12, 6).await;
    let group = ConsumerGroup::new(GROUP, PARTITIONS);
    let record = Record::default();
    let failures = Arc::new(AtomicU64::new(0));

    /// Fails on the 7th event of an incarnation, until it has failed twice.
    struct Flaky {
        inner: Recorder,
        calls: u64,
        failures: Arc<AtomicU64>,
    }
    impl ConsumerHandler for Flaky {
        type Error = Injected;
        async fn handle(&mut self, partition: u32, event: &StoredEvent) -> Result<(), Injected> {
            self.calls += 1;
            if self.calls == 7 && self.failures.load(Ordering::SeqCst) < 2 {
                self.failures.fetch_add(1, Ordering::SeqCst);
                return Err(Injected);
            }
            self.inner.handle(partition, event).await
        }
    }

    let supervision = SupervisionConfig {
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        jitter: 0.0,
        ..SupervisionConfig::default()
    };
    let poll = config(Duration::from_millis(5));
    let flaky = {
        let (record, failures) = (record.clone(), failures.clone());
        ConsumerMember::spec(
            "flaky",
            group.clone(),
            "flaky",
            fixture.journal.clone(),
            poll.clone(),
            move || Flaky {
                inner: Recorder::new("flaky", &record),
                calls: 0,
                failures: failures.clone(),
            },
        )
    };
    let steady = {
        let record = record.clone();
        ConsumerMember::spec(
            "steady",
            group.clone(),
            "steady",
            fixture.journal.clone(),
            poll,
            move || Recorder::new("steady", &record),
        )
    };
    let arguments = SupervisorArgs::new("/test/consumers", supervision, vec![flaky, steady]);
    let (supervisor, join) = Actor::spawn(None, Supervisor, arguments).await.unwrap();
    let partitions = fixture.partitions(PARTITIONS).await;
    wait_until!(
        "both members to handle everything",
        group.stats().is_settled()
            && group.stats().members.len() == 2
            && all_handled(&record, &partitions)
    );
    assert_eq!(failures.load(Ordering::SeqCst), 2);
    check(&record, &partitions, true);
    let stats = Supervisor::stats(&supervisor).await.unwrap();
    assert_eq!(stats.children[0].restarts, 2, "{stats:?}");
    supervisor.stop(None);
    join.await.unwrap();
    assert!(group.stats().members.is_empty());
}
