//! The membership table on both backends: the lifecycle of a node, failure detection on a
//! clock the test controls, eviction and rejoining, and races between nodes.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Backend, Random};
use tradefloor_cluster::id_slots::claim_id_slot;
use tradefloor_cluster::{
    ClusterConfig, Error, Eviction, Member, Membership, Node, Status, Timestamp,
};

on_both_backends!(
    lifecycle_join_up_heartbeat_leave_depart,
    silent_node_is_declared_down_after_the_timeout_and_not_before,
    declared_down_node_is_evicted,
    restart_with_the_same_id_rejoins_with_a_higher_incarnation,
    concurrent_declare_dead_moves_each_dead_node_exactly_once,
    heartbeat_racing_declare_dead_has_one_winner,
    id_slots_are_distinct_kept_refused_when_full_and_taken_from_the_down,
);

const T0: Timestamp = Timestamp::from_unix_ms(1_700_000_000_000);

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0.unix_ms() + offset_ms)
}

fn node(id: &str) -> Node {
    Node {
        node_id: id.to_owned(),
        http_addr: format!("{id}.http:8081"),
        cluster_addr: format!("{id}.cluster:9081"),
    }
}

fn timeout() -> Duration {
    ClusterConfig::default().failure_timeout
}

fn assert_evicted(result: Result<Member, Error>, expected: Eviction) {
    match result {
        Err(Error::Evicted { reason, .. }) => assert_eq!(reason, expected),
        other => panic!("expected eviction ({expected}), got {other:?}"),
    }
}

/// Joins `id` at `now` and marks it up; returns its incarnation.
async fn join_up(membership: &Membership, id: &str, now: Timestamp) -> u64 {
    let member = membership.join(&node(id), now).await.unwrap();
    membership
        .mark_up(id, member.incarnation, now)
        .await
        .unwrap();
    member.incarnation
}

async fn lifecycle_join_up_heartbeat_leave_depart(backend: &Backend) {
    let membership = Membership::open(backend.database.clone()).await.unwrap();
    assert!(membership.members().await.unwrap().is_empty());

    let joined = membership.join(&node("n1"), at(0)).await.unwrap();
    assert_eq!(joined.node, node("n1"));
    assert_eq!(joined.status, Status::Joining);
    assert_eq!(joined.incarnation, 1);
    assert_eq!(joined.joined_at, at(0));
    assert_eq!(joined.last_heartbeat, at(0));

    let up = membership.mark_up("n1", 1, at(10)).await.unwrap();
    assert_eq!(up.status, Status::Up);
    assert_eq!(up.last_heartbeat, at(10));
    // A retried mark_up (its reply lost) succeeds again.
    membership.mark_up("n1", 1, at(10)).await.unwrap();

    let beat = membership.heartbeat("n1", 1, at(500)).await.unwrap();
    assert_eq!(beat.status, Status::Up);
    assert_eq!(beat.last_heartbeat, at(500));
    // A heartbeat from a clock that stepped back does not move the stored time back.
    let late = membership.heartbeat("n1", 1, at(400)).await.unwrap();
    assert_eq!(late.last_heartbeat, at(500));

    let leaving = membership.leave("n1", 1, at(600)).await.unwrap();
    assert_eq!(leaving.status, Status::Leaving);
    membership.leave("n1", 1, at(600)).await.unwrap();
    // A leaving node still heartbeats while it hands its shards off, but cannot come back up.
    membership.heartbeat("n1", 1, at(700)).await.unwrap();
    match membership.mark_up("n1", 1, at(800)).await {
        Err(Error::InvalidTransition {
            status, operation, ..
        }) => {
            assert_eq!(status, Status::Leaving);
            assert_eq!(operation, "mark up");
        }
        other => panic!("expected an invalid transition, got {other:?}"),
    }

    let gone = membership.depart("n1", 1, at(900)).await.unwrap();
    assert_eq!(gone.status, Status::Down);
    membership.depart("n1", 1, at(900)).await.unwrap();
    assert_evicted(
        membership.heartbeat("n1", 1, at(1_000)).await,
        Eviction::Down,
    );

    assert_eq!(membership.members().await.unwrap(), vec![gone.clone()]);
    assert_eq!(membership.member("n1").await.unwrap(), Some(gone));
    assert_eq!(membership.member("n2").await.unwrap(), None);
    assert_evicted(
        membership.heartbeat("n2", 1, at(0)).await,
        Eviction::Unknown,
    );
    assert!(matches!(
        membership.join(&node(""), at(0)).await,
        Err(Error::InvalidRequest(_))
    ));
}

async fn silent_node_is_declared_down_after_the_timeout_and_not_before(backend: &Backend) {
    let membership = Membership::open(backend.database.clone()).await.unwrap();
    let timeout_ms = timeout().as_millis() as i64;
    join_up(&membership, "silent", at(0)).await;
    join_up(&membership, "alive", at(0)).await;
    membership.join(&node("joining"), at(0)).await.unwrap();
    membership.heartbeat("alive", 1, at(1_500)).await.unwrap();

    // Exactly `timeout` of silence is not yet too much.
    let dead = membership
        .declare_dead(timeout(), at(timeout_ms))
        .await
        .unwrap();
    assert!(dead.is_empty(), "declared too early: {dead:?}");

    let dead = membership
        .declare_dead(timeout(), at(timeout_ms + 1))
        .await
        .unwrap();
    let names: Vec<_> = dead
        .iter()
        .map(|member| member.node.node_id.as_str())
        .collect();
    assert_eq!(names, ["joining", "silent"]);
    assert!(dead.iter().all(|member| member.status == Status::Down));
    // Declared once: a second sweep finds nothing new.
    assert!(
        membership
            .declare_dead(timeout(), at(timeout_ms + 1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        membership.member("alive").await.unwrap().unwrap().status,
        Status::Up
    );

    // The living node goes silent too.
    let dead = membership
        .declare_dead(timeout(), at(1_500 + timeout_ms + 1))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].node.node_id, "alive");
}

async fn declared_down_node_is_evicted(backend: &Backend) {
    let membership = Membership::open(backend.database.clone()).await.unwrap();
    let incarnation = join_up(&membership, "n1", at(0)).await;
    let dead = membership
        .declare_dead(timeout(), at(10_000))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);

    // Whatever it tries, the node learns it is out and must stop serving.
    assert_evicted(
        membership.heartbeat("n1", incarnation, at(10_001)).await,
        Eviction::Down,
    );
    assert_evicted(
        membership.mark_up("n1", incarnation, at(10_001)).await,
        Eviction::Down,
    );
    assert_evicted(
        membership.leave("n1", incarnation, at(10_001)).await,
        Eviction::Down,
    );
    // The one thing a dead node may still do is confirm it is gone.
    membership
        .depart("n1", incarnation, at(10_001))
        .await
        .unwrap();
}

async fn restart_with_the_same_id_rejoins_with_a_higher_incarnation(backend: &Backend) {
    let membership = Membership::open(backend.database.clone()).await.unwrap();
    assert_eq!(join_up(&membership, "n1", at(0)).await, 1);

    // The process restarts (say after kill -9) on a new port, before anyone noticed.
    let moved = Node {
        http_addr: "n1.http:18081".to_owned(),
        ..node("n1")
    };
    let rejoined = membership.join(&moved, at(100)).await.unwrap();
    assert_eq!(rejoined.incarnation, 2);
    assert_eq!(rejoined.status, Status::Joining);
    assert_eq!(rejoined.node, moved);
    assert_eq!(rejoined.joined_at, at(100));

    // The old incarnation, if it still runs somewhere, is out.
    assert_evicted(
        membership.heartbeat("n1", 1, at(200)).await,
        Eviction::Superseded { current: 2 },
    );
    membership.mark_up("n1", 2, at(200)).await.unwrap();
    assert!(matches!(
        membership.heartbeat("n1", 7, at(200)).await,
        Err(Error::InvalidRequest(_))
    ));

    // Declared down, then restarted: it comes back as incarnation 3.
    assert_eq!(
        membership
            .declare_dead(timeout(), at(10_000))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(join_up(&membership, "n1", at(10_100)).await, 3);
    let members = membership.members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].status, Status::Up);
    assert_eq!(members[0].incarnation, 3);
}

/// Several nodes, each on its own connection pool, sweep for dead nodes at the same moment,
/// over several rounds in which different nodes die.
async fn concurrent_declare_dead_moves_each_dead_node_exactly_once(backend: &Backend) {
    const NODES: usize = 24;
    const SWEEPERS: usize = 6;
    const ROUNDS: i64 = 5;
    let mut random = Random::new(common::seed());
    let mut databases = Vec::new();
    let mut sweepers = Vec::new();
    for _ in 0..SWEEPERS {
        let database = backend.another_node().await;
        sweepers.push(Membership::open(database.clone()).await.unwrap());
        databases.push(database);
    }
    let membership = &sweepers[0];
    for index in 0..NODES {
        join_up(membership, &format!("n{index:02}"), at(0)).await;
    }
    for round in 1..=ROUNDS {
        let now = at(round * 10_000);
        // A random half of the live nodes heartbeat; the rest have been silent too long.
        let mut expected = BTreeSet::new();
        for member in membership.members().await.unwrap() {
            let id = member.node.node_id;
            if member.status == Status::Down {
                join_up(membership, &id, now).await;
            } else if random.below(2) == 0 {
                membership
                    .heartbeat(&id, member.incarnation, now)
                    .await
                    .unwrap();
            } else {
                expected.insert(id);
            }
        }
        let sweeps: Vec<_> = sweepers
            .iter()
            .map(|sweeper| {
                let sweeper = sweeper.clone();
                tokio::spawn(async move { sweeper.declare_dead(timeout(), now).await.unwrap() })
            })
            .collect();
        let mut declared = Vec::new();
        for sweep in sweeps {
            declared.extend(sweep.await.unwrap());
        }
        let declared_ids: Vec<_> = declared.iter().map(|m| m.node.node_id.clone()).collect();
        let unique: BTreeSet<_> = declared_ids.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            declared_ids.len(),
            "declared twice: {declared_ids:?}"
        );
        assert_eq!(unique, expected, "round {round}");
    }
    for database in databases {
        database.close().await;
    }
}

/// Each stale node heartbeats at the very moment others declare it dead: either the
/// heartbeat lands first (and the node is not declared) or it is refused as down.
async fn heartbeat_racing_declare_dead_has_one_winner(backend: &Backend) {
    const NODES: usize = 16;
    const SWEEPERS: usize = 3;
    const POOLS: usize = 4;
    let membership = Membership::open(backend.database.clone()).await.unwrap();
    let mut databases = Vec::new();
    let mut pools = Vec::new();
    for _ in 0..POOLS {
        let database = backend.another_node().await;
        pools.push(Membership::open(database.clone()).await.unwrap());
        databases.push(database);
    }
    for index in 0..NODES {
        join_up(&membership, &format!("n{index:02}"), at(0)).await;
    }
    let now = at(10_000);
    let mut beats = Vec::new();
    for index in 0..NODES {
        let membership = pools[index % POOLS].clone();
        beats.push(tokio::spawn(async move {
            let id = format!("n{index:02}");
            let result = membership.heartbeat(&id, 1, now).await;
            (id, result)
        }));
    }
    let mut sweeps = Vec::new();
    for _ in 0..SWEEPERS {
        let membership = membership.clone();
        sweeps.push(tokio::spawn(async move {
            membership.declare_dead(timeout(), now).await.unwrap()
        }));
    }
    let mut declared = BTreeSet::new();
    for sweep in sweeps {
        for member in sweep.await.unwrap() {
            assert!(declared.insert(member.node.node_id), "declared twice");
        }
    }
    for beat in beats {
        let (id, result) = beat.await.unwrap();
        match result {
            Ok(member) => {
                assert!(!declared.contains(&id), "{id} beat after it was declared");
                assert_eq!(member.status, Status::Up);
            }
            Err(Error::Evicted {
                reason: Eviction::Down,
                ..
            }) => assert!(declared.contains(&id)),
            Err(error) => panic!("{id}: {error}"),
        }
    }
    for database in databases {
        database.close().await;
    }
}

/// Id slots: distinct per node, kept across restarts, refused when every slot is held by a
/// node not down, taken over from a node declared down.
async fn id_slots_are_distinct_kept_refused_when_full_and_taken_from_the_down(backend: &Backend) {
    let database = &backend.database;
    let membership = Membership::open(database.clone()).await.unwrap();
    let t0 = Timestamp::from_unix_ms(1_700_000_000_000);
    let mut slots = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let member = membership.join(&node(id), t0).await.unwrap();
        membership
            .mark_up(id, member.incarnation, t0)
            .await
            .unwrap();
        slots.push(claim_id_slot(database, id, 3).await.unwrap());
    }
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2], "one slot each");
    let n2 = claim_id_slot(database, "n2", 3).await.unwrap();
    assert_eq!(
        claim_id_slot(database, "n2", 3).await.unwrap(),
        n2,
        "a node keeps its slot"
    );
    let refused = claim_id_slot(database, "n4", 3).await.unwrap_err();
    assert!(matches!(refused, Error::Misconfigured(_)), "{refused:?}");

    // n2 falls silent and is declared down: n4 takes its slot; n2, back, finds none.
    let later = Timestamp::from_unix_ms(t0.unix_ms() + 60_000);
    for id in ["n1", "n3"] {
        let incarnation = membership.member(id).await.unwrap().unwrap().incarnation;
        membership.heartbeat(id, incarnation, later).await.unwrap();
    }
    let dead = membership
        .declare_dead(ClusterConfig::default().failure_timeout, later)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].node.node_id, "n2");
    assert_eq!(claim_id_slot(database, "n4", 3).await.unwrap(), n2);
    let refused = claim_id_slot(database, "n2", 3).await.unwrap_err();
    assert!(matches!(refused, Error::Misconfigured(_)), "{refused:?}");
}
