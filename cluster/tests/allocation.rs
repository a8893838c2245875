//! The shard table on both backends: the hand-off lifecycle, stale epochs refused at every
//! step, and coordinators racing on the same rows.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Backend, Random};
use tokio::sync::Barrier;
use tradefloor_cluster::{Allocation, Assignment, Error, HandOff, Timestamp, fence_key};

on_both_backends!(
    hand_off_lifecycle,
    stale_epochs_are_refused_at_every_step,
    racing_coordinators_win_each_step_once,
    any_interleaving_leaves_one_owner_per_shard,
);

const T0: Timestamp = Timestamp::from_unix_ms(1_700_000_000_000);

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0.unix_ms() + offset_ms)
}

fn row(shard: u32, owner: &str, epoch: u64, handoff: HandOff) -> Assignment {
    Assignment {
        shard,
        owner: owner.to_owned(),
        epoch,
        handoff,
    }
}

fn draining(target: &str) -> HandOff {
    HandOff::Draining {
        target: target.to_owned(),
    }
}

fn released(target: &str) -> HandOff {
    HandOff::Released {
        target: target.to_owned(),
    }
}

async fn only_row(allocation: &Allocation) -> Assignment {
    let mut rows = allocation.assignments().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

async fn hand_off_lifecycle(backend: &Backend) {
    let allocation = Allocation::open(backend.database.clone()).await.unwrap();
    assert_eq!(allocation.assignments().await.unwrap(), []);
    assert_eq!(fence_key(7), "shard-7");

    // Created once, at epoch 1; a second creator does not overwrite it.
    assert!(allocation.create(7, "a", at(0)).await.unwrap());
    assert!(!allocation.create(7, "b", at(1)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(7, "a", 1, HandOff::Active));

    // A graceful hand-off a → b: drain, release by the old owner, complete at epoch 2.
    assert!(
        !allocation.begin_move(7, 1, "a", at(2)).await.unwrap(),
        "to its owner"
    );
    assert!(allocation.begin_move(7, 1, "b", at(2)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(7, "a", 1, draining("b")));
    assert!(
        !allocation.complete_move(7, 1, at(3)).await.unwrap(),
        "not released yet"
    );
    assert!(
        !allocation.release(7, "b", 1, at(3)).await.unwrap(),
        "not the owner"
    );
    assert!(allocation.release(7, "a", 1, at(3)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(7, "a", 1, released("b")));
    assert!(
        !allocation.cancel_move(7, 1, at(4)).await.unwrap(),
        "released: must complete"
    );
    assert!(allocation.complete_move(7, 1, at(4)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(7, "b", 2, HandOff::Active));

    // A cancelled hand-off leaves owner and epoch as they were.
    assert!(allocation.begin_move(7, 2, "c", at(5)).await.unwrap());
    assert!(allocation.cancel_move(7, 2, at(6)).await.unwrap());
    assert!(!allocation.cancel_move(7, 2, at(6)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(7, "b", 2, HandOff::Active));

    // Reassignment works in any state, at the next epoch.
    assert!(allocation.begin_move(7, 2, "c", at(7)).await.unwrap());
    assert!(allocation.reassign(7, 2, "d", at(8)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(7, "d", 3, HandOff::Active));

    // Shards are listed in order.
    assert!(allocation.create(0, "a", at(9)).await.unwrap());
    let shards: Vec<u32> = allocation
        .assignments()
        .await
        .unwrap()
        .iter()
        .map(|row| row.shard)
        .collect();
    assert_eq!(shards, [0, 7]);

    for result in [
        allocation.create(1, "", at(10)).await,
        allocation.create(u32::MAX, "a", at(10)).await,
        allocation.begin_move(7, u64::MAX, "b", at(10)).await,
        allocation.reassign(7, 3, "", at(10)).await,
    ] {
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{result:?}"
        );
    }
}

async fn stale_epochs_are_refused_at_every_step(backend: &Backend) {
    let allocation = Allocation::open(backend.database.clone()).await.unwrap();
    assert!(allocation.create(1, "a", at(0)).await.unwrap());
    assert!(allocation.reassign(1, 1, "b", at(1)).await.unwrap());
    // Epoch 2 now; 1 is stale and 3 never issued.
    for epoch in [1, 3] {
        assert!(!allocation.begin_move(1, epoch, "c", at(2)).await.unwrap());
        assert!(!allocation.reassign(1, epoch, "c", at(2)).await.unwrap());
    }
    assert_eq!(only_row(&allocation).await, row(1, "b", 2, HandOff::Active));

    assert!(allocation.begin_move(1, 2, "c", at(3)).await.unwrap());
    for epoch in [1, 3] {
        assert!(!allocation.release(1, "b", epoch, at(4)).await.unwrap());
        assert!(!allocation.cancel_move(1, epoch, at(4)).await.unwrap());
    }
    assert_eq!(only_row(&allocation).await, row(1, "b", 2, draining("c")));

    assert!(allocation.release(1, "b", 2, at(5)).await.unwrap());
    for epoch in [1, 3] {
        assert!(!allocation.complete_move(1, epoch, at(6)).await.unwrap());
    }
    assert_eq!(only_row(&allocation).await, row(1, "b", 2, released("c")));
    assert!(allocation.complete_move(1, 2, at(6)).await.unwrap());

    // Every step of the finished hand-off, repeated (a retry, a deposed coordinator), is
    // refused: the epoch moved on.
    assert!(!allocation.begin_move(1, 2, "c", at(7)).await.unwrap());
    assert!(!allocation.release(1, "b", 2, at(7)).await.unwrap());
    assert!(!allocation.complete_move(1, 2, at(7)).await.unwrap());
    assert!(!allocation.reassign(1, 2, "b", at(7)).await.unwrap());
    assert_eq!(only_row(&allocation).await, row(1, "c", 3, HandOff::Active));
}

/// One step of a hand-off, as a coordinator (or the old owner) takes it.
#[derive(Clone, Copy, Debug)]
enum Step {
    Create,
    BeginMove,
    Release,
    CompleteMove,
    Reassign,
    CancelMove,
}

impl Step {
    /// Takes the step on `shard` as racer `racer`, from the row as read at `epoch` with
    /// owner `owner`; returns whether it applied.
    async fn take(
        self,
        allocation: &Allocation,
        shard: u32,
        epoch: u64,
        owner: &str,
        racer: &str,
        now: Timestamp,
    ) -> bool {
        let result = match self {
            Step::Create => allocation.create(shard, racer, now).await,
            Step::BeginMove => allocation.begin_move(shard, epoch, racer, now).await,
            Step::Release => allocation.release(shard, owner, epoch, now).await,
            Step::CompleteMove => allocation.complete_move(shard, epoch, now).await,
            Step::Reassign => allocation.reassign(shard, epoch, racer, now).await,
            Step::CancelMove => allocation.cancel_move(shard, epoch, now).await,
        };
        result.unwrap()
    }

    fn changes_owner(self) -> bool {
        matches!(self, Step::CompleteMove | Step::Reassign)
    }
}

/// Racers on their own connection pools take the same step at the same time, shard after
/// shard, from the same read of the row: exactly one wins each step, and the epoch grows by
/// exactly one per change of owner.
async fn racing_coordinators_win_each_step_once(backend: &Backend) {
    const RACERS: usize = 6;
    const SHARDS: u32 = 4;
    const STEPS: [Step; 8] = [
        Step::Create,
        Step::BeginMove,
        Step::CancelMove,
        Step::BeginMove,
        Step::Release,
        Step::CompleteMove,
        Step::Reassign,
        Step::Reassign,
    ];
    let mut databases = Vec::new();
    let mut allocations = Vec::new();
    for _ in 0..RACERS {
        let database = backend.another_node().await;
        databases.push(database.clone());
        allocations.push(Allocation::open(database).await.unwrap());
    }
    let barrier = Arc::new(Barrier::new(RACERS));
    for shard in 0..SHARDS {
        let mut expected_epoch = 1;
        for (index, step) in STEPS.into_iter().enumerate() {
            let before = allocations[0].assignments().await.unwrap();
            let before = before.iter().find(|row| row.shard == shard);
            let (epoch, owner) =
                before.map_or((0, String::new()), |row| (row.epoch, row.owner.clone()));
            let mut tasks = Vec::new();
            for (racer, allocation) in allocations.iter().enumerate() {
                let (allocation, barrier, owner) =
                    (allocation.clone(), barrier.clone(), owner.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let name = format!("n{racer}");
                    step.take(&allocation, shard, epoch, &owner, &name, at(index as i64))
                        .await
                }));
            }
            let mut winners = 0;
            for task in tasks {
                winners += usize::from(task.await.unwrap());
            }
            assert_eq!(winners, 1, "shard {shard}, step {index} ({step:?})");
            if step.changes_owner() {
                expected_epoch += 1;
            }
            let after = allocations[0].assignments().await.unwrap();
            let after = after.iter().find(|row| row.shard == shard).unwrap();
            assert_eq!(after.epoch, expected_epoch, "shard {shard}, step {step:?}");
        }
    }
    let rows = allocations[0].assignments().await.unwrap();
    assert_eq!(rows.len(), SHARDS as usize);
    assert!(
        rows.iter()
            .all(|row| row.epoch == 4 && row.handoff == HandOff::Active)
    );
    for database in databases {
        database.close().await;
    }
}

/// Racers take random steps on random shards from whatever they last read (often stale).
/// Afterwards each shard has one row, every change of owner applied to a distinct epoch, and
/// the final epoch counts them: 1 + the changes of owner that won.
async fn any_interleaving_leaves_one_owner_per_shard(backend: &Backend) {
    const RACERS: u64 = 5;
    const SHARDS: u64 = 6;
    const ACTIONS: usize = 60;
    const STEPS: [Step; 6] = [
        Step::Create,
        Step::BeginMove,
        Step::Release,
        Step::CompleteMove,
        Step::Reassign,
        Step::CancelMove,
    ];
    let seed = common::seed();
    let mut tasks = Vec::new();
    let mut databases = Vec::new();
    for racer in 0..RACERS {
        let database = backend.another_node().await;
        databases.push(database.clone());
        let allocation = Allocation::open(database).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut random = Random::new(seed.wrapping_add(racer));
            let name = format!("n{racer}");
            // Per shard, per epoch read: the changes of owner this racer won.
            let mut won = Vec::new();
            let mut view: BTreeMap<u32, Assignment> = BTreeMap::new();
            for action in 0..ACTIONS {
                if random.below(3) == 0 {
                    view = allocation
                        .assignments()
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|row| (row.shard, row))
                        .collect();
                }
                let shard = random.below(SHARDS) as u32;
                let step = STEPS[random.below(STEPS.len() as u64) as usize];
                let (epoch, owner) = view
                    .get(&shard)
                    .map_or((1, name.clone()), |row| (row.epoch, row.owner.clone()));
                let now = at(action as i64);
                if step
                    .take(&allocation, shard, epoch, &owner, &name, now)
                    .await
                    && step.changes_owner()
                {
                    won.push((shard, epoch));
                }
                tokio::task::yield_now().await;
            }
            won
        }));
    }
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    for database in databases {
        database.close().await;
    }
    let allocation = Allocation::open(backend.database.clone()).await.unwrap();
    let rows = allocation.assignments().await.unwrap();
    let mut changes: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (shard, epoch) in won {
        changes.entry(shard).or_default().push(epoch);
    }
    let shards: Vec<u32> = rows.iter().map(|row| row.shard).collect();
    let mut distinct = shards.clone();
    distinct.dedup();
    assert_eq!(shards, distinct, "one row per shard");
    for row in &rows {
        let mut epochs = changes.remove(&row.shard).unwrap_or_default();
        epochs.sort_unstable();
        let expected: Vec<u64> = (1..row.epoch).collect();
        assert_eq!(
            epochs, expected,
            "shard {}: each epoch changed owner once",
            row.shard
        );
        assert!(!row.owner.is_empty());
        assert_ne!(row.handoff.target(), Some(row.owner.as_str()));
    }
    assert!(
        changes.is_empty(),
        "changes to shards never created: {changes:?}"
    );
    eprintln!(
        "{} shards, epochs {:?}",
        rows.len(),
        rows.iter().map(|r| r.epoch).collect::<Vec<_>>()
    );
}
