//! The region's runtime services on a real SQLite journal: the journal circuit breaker, the
//! actor tree (region, shards, entity counts, breaker state) and dead letters.

use std::time::Duration;

use tradefloor_actors::{
    ActorStatus, ActorTree, BreakerConfig, BreakerState, EntityConfig, Error, Registry,
    ShardRegion, shard_of,
};
use tradefloor_domain::account::Account;

mod common;

use common::*;

const DEADLINE: Duration = Duration::from_secs(10);
const RESET_TIMEOUT: Duration = Duration::from_millis(200);
const FAILURE_THRESHOLD: u32 = 3;

fn config() -> EntityConfig {
    EntityConfig {
        shard_count: 4,
        breaker: BreakerConfig {
            failure_threshold: FAILURE_THRESHOLD,
            call_timeout: Duration::from_secs(5),
            reset_timeout: RESET_TIMEOUT,
            reset_timeout_max: Duration::from_secs(10),
        },
        ..EntityConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_fails_commands_fast_and_leaves_the_entity_as_it_was() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    region
        .ask("alice", deposit("d1", 10), DEADLINE)
        .await
        .unwrap();
    // Given a breaker opened by other failures of the same database.
    for _ in 0..FAILURE_THRESHOLD {
        let failed = region
            .breaker()
            .call(async { Err::<(), &str>("database down") })
            .await;
        assert_eq!(failed, Ok(Err("database down")));
    }
    assert_eq!(region.breaker().state().state, BreakerState::Open);
    // When alice gets a command: refused by the breaker, nothing written.
    let refused = region
        .ask("alice", deposit("d2", 1_000), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::BreakerOpen { .. }), "{refused:?}");
    assert_eq!(stored_events(&fixture.journal, "account|alice").await, 1);
    assert_eq!(region.breaker().state().rejected_count, 1);
    // Then after the reset timeout the next command is the probe; it succeeds, closes the
    // breaker, and alice's state never held the refused deposit.
    tokio::time::sleep(RESET_TIMEOUT).await;
    let reply = region
        .ask("alice", deposit("d3", 20), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 30, "10 + 20, the refused 1 000 not applied");
    assert_eq!(region.breaker().state().state, BreakerState::Closed);
    assert_eq!(stored_events(&fixture.journal, "account|alice").await, 2);
    region.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_do_not_count_as_breaker_failures() {
    let fixture = fixture().await;
    let first = ShardRegion::<Account>::start("/test/a", fixture.journal.clone(), config())
        .await
        .unwrap();
    let second = ShardRegion::<Account>::start("/test/b", fixture.journal.clone(), config())
        .await
        .unwrap();
    let mut conflicts = 0;
    for round in 0..2 * FAILURE_THRESHOLD {
        // Each region writes behind the other's back: the stale one conflicts, recovers,
        // and writes again next round.
        for (region, name) in [(&first, "a"), (&second, "b")] {
            match region
                .ask("frank", deposit(&format!("{name}{round}"), 1), DEADLINE)
                .await
            {
                Ok(_) => {}
                Err(Error::Persistence { .. }) => conflicts += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(conflicts > FAILURE_THRESHOLD, "{conflicts} conflicts");
    let breaker = first.breaker().state();
    assert_eq!(breaker.state, BreakerState::Closed);
    assert_eq!(breaker.consecutive_failures, 0);
    assert_eq!(breaker.opened_count, 0);
}

/// On tokio's paused clock: once the database is closed, nothing waits on another thread,
/// so the reset timeout can be stepped over exactly.
#[tokio::test]
async fn a_dead_database_opens_the_breaker_and_a_probe_goes_through_after_the_reset_timeout() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    region.ask("bob", deposit("d0", 5), DEADLINE).await.unwrap();
    fixture.journal.database().close().await;
    tokio::time::pause();
    // A failed write, then a failed recovery: each is an infrastructure failure.
    let mut persistence_errors = 0;
    let mut command = 0;
    loop {
        command += 1;
        match region
            .ask("bob", deposit(&format!("d{command}"), 1), DEADLINE)
            .await
        {
            Err(Error::Persistence { .. }) => persistence_errors += 1,
            Err(Error::BreakerOpen { .. }) => break,
            other => panic!("unexpected {other:?}"),
        }
        assert!(command <= FAILURE_THRESHOLD, "the breaker never opened");
    }
    assert!(persistence_errors >= 1);
    let opened = region.breaker().state();
    assert_eq!(opened.state, BreakerState::Open);
    assert_eq!(opened.opened_count, 1);
    // Open: every further command is refused without touching the database.
    let rejected_before = opened.rejected_count;
    for extra in 0..5 {
        let refused = region
            .ask("bob", deposit(&format!("x{extra}"), 1), DEADLINE)
            .await;
        assert!(
            matches!(refused, Err(Error::BreakerOpen { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(region.breaker().state().rejected_count, rejected_before + 5);
    // After the reset timeout one probe goes through; the database is still closed, so it
    // fails and the breaker opens again with the reset timeout doubled.
    tokio::time::advance(RESET_TIMEOUT).await;
    assert_eq!(region.breaker().state().state, BreakerState::HalfOpen);
    let probe = region.ask("bob", deposit("probe", 1), DEADLINE).await;
    assert!(matches!(probe, Err(Error::Persistence { .. })), "{probe:?}");
    let reopened = region.breaker().state();
    assert_eq!(reopened.state, BreakerState::Open);
    assert_eq!(reopened.opened_count, 2);
    assert_eq!(
        reopened.reset_timeout_ms,
        2 * RESET_TIMEOUT.as_millis() as u64
    );
}

fn find<'a>(tree: &'a ActorTree, path: &str) -> Option<&'a ActorTree> {
    if tree.path == path {
        return Some(tree);
    }
    tree.children.iter().find_map(|child| find(child, path))
}

fn count_nodes(tree: &ActorTree) -> usize {
    1 + tree.children.iter().map(count_nodes).sum::<usize>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_tree_shows_the_region_its_shards_entity_counts_and_the_breaker() {
    let fixture = fixture().await;
    let registry = Registry::default();
    let region = ShardRegion::<Account>::start_in(
        registry.clone(),
        "/guardian/regions/account",
        fixture.journal.clone(),
        config(),
    )
    .await
    .unwrap();
    let accounts: Vec<String> = (0..40).map(|index| format!("acct-{index}")).collect();
    for account in &accounts {
        region
            .ask(account, deposit("d1", 1), DEADLINE)
            .await
            .unwrap();
    }
    let tree = registry.snapshot("/", None).unwrap();
    let region_node = find(&tree, "/guardian/regions/account").expect("the region");
    assert_eq!(region_node.kind.as_deref(), Some("region"));
    assert_eq!(region_node.status, Some(ActorStatus::Running));
    let breaker = region_node.breaker.as_ref().expect("the region's breaker");
    assert_eq!(breaker.state, BreakerState::Closed);
    assert_eq!(breaker.name, "/guardian/regions/account/journal");
    // One node per shard holding counts, not a node per entity.
    assert_eq!(region_node.children.len(), 4);
    assert_eq!(count_nodes(region_node), 1 + 4);
    let mut entities = 0;
    for shard in 0..4u32 {
        let path = format!("/guardian/regions/account/shard-{shard}");
        let node = find(region_node, &path).expect("every shard");
        assert_eq!(node.kind.as_deref(), Some("shard"));
        assert_eq!(node.status, Some(ActorStatus::Running));
        let expected = accounts
            .iter()
            .filter(|account| shard_of(account, 4) == shard)
            .count() as u64;
        assert_eq!(node.entity_count, Some(expected), "{path}");
        let mailbox = node.mailbox.as_ref().expect("the shard's inbox");
        assert_eq!(
            mailbox.capacity,
            EntityConfig::default().shard_mailbox_capacity
        );
        assert_eq!(mailbox.len, 0, "every delivery sorted");
        entities += expected;
    }
    assert_eq!(entities, 40);
    // Stopping deregisters the shards and the region.
    region.stop().await.unwrap();
    assert!(registry.is_empty(), "{:?}", registry.snapshot("/", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passivated_entities_leave_the_shard_count() {
    let fixture = fixture().await;
    let registry = Registry::default();
    let config = EntityConfig {
        shard_count: 1,
        passivate_after: Duration::ZERO,
        passivation_interval: Duration::from_secs(3_600),
        ..config()
    };
    let region =
        ShardRegion::<Account>::start_in(registry.clone(), "/r", fixture.journal.clone(), config)
            .await
            .unwrap();
    for account in ["a", "b", "c"] {
        region
            .ask(account, deposit("d1", 1), DEADLINE)
            .await
            .unwrap();
    }
    let shard = registry.get("/r/shard-0").unwrap();
    assert_eq!(shard.entity_count(), Some(3));
    region.passivate_idle();
    // Stats go through the shard's inbox after the passivation request.
    let stats = region.stats().await;
    assert_eq!(stats[0].passivated, 3);
    assert_eq!(shard.entity_count(), Some(0));
    region.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_stopped_shard_and_orphaned_replies_are_dead_letters() {
    let fixture = fixture().await;
    let registry = Registry::default();
    let region =
        ShardRegion::<Account>::start_in(registry.clone(), "/r", fixture.journal.clone(), config())
            .await
            .unwrap();
    let shard = shard_of("carol", 4);
    region.stop_shard(shard).await.unwrap();
    assert!(
        registry.get(&format!("/r/shard-{shard}")).is_none(),
        "deregistered"
    );
    for attempt in 0..3 {
        let refused = region.tell("carol", deposit(&format!("d{attempt}"), 1));
        assert!(matches!(refused, Err(Error::Stopped { .. })), "{refused:?}");
    }
    let dead_letters = registry.dead_letters();
    assert_eq!(dead_letters.count(), 3);
    assert_eq!(
        dead_letters.recent()[0].recipient,
        format!("/r/shard-{shard}/carol")
    );
    // A caller that gives up before the reply: the reply becomes a dead letter.
    let other = (0..)
        .map(|index| format!("dave-{index}"))
        .find(|account| shard_of(account, 4) != shard)
        .unwrap();
    let gave_up = region.ask(&other, deposit("d1", 1), Duration::ZERO).await;
    assert!(matches!(gave_up, Err(Error::Timeout { .. })), "{gave_up:?}");
    for _ in 0..1_000 {
        if dead_letters.count() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(dead_letters.count(), 4);
    let orphan = dead_letters.recent().pop().unwrap();
    assert!(orphan.recipient.ends_with(&other), "{orphan:?}");
    // A restarted shard registers again and takes commands.
    region.start_shard(shard, None).await.unwrap();
    assert!(registry.get(&format!("/r/shard-{shard}")).is_some());
    region
        .ask("carol", deposit("again", 1), DEADLINE)
        .await
        .unwrap();
    region.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_entity_starts_without_reading_and_a_wrong_guess_only_costs_a_conflict() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/r", fixture.journal.clone(), config())
        .await
        .unwrap();
    let reply = region
        .ask_new("erin", deposit("d1", 10), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 10);
    // A second region (after a restart, say) wrongly believes erin is new: her first write
    // conflicts, she recovers, and the next command sees the stored 10.
    let restarted = ShardRegion::<Account>::start("/r2", fixture.journal.clone(), config())
        .await
        .unwrap();
    let conflict = restarted
        .ask_new("erin", deposit("d2", 5), DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, Error::Persistence { .. }),
        "{conflict:?}"
    );
    let reply = restarted
        .ask_new("erin", deposit("d2", 5), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 15);
    assert_eq!(stored_events(&fixture.journal, "account|erin").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_activations_recovers_a_few_at_a_time_and_every_entity_correctly() {
    let fixture = fixture().await;
    let accounts: Vec<String> = (0..50).map(|index| format!("acct-{index}")).collect();
    let before = ShardRegion::<Account>::start("/before", fixture.journal.clone(), config())
        .await
        .unwrap();
    for account in &accounts {
        before
            .ask(account, deposit("d1", 1), DEADLINE)
            .await
            .unwrap();
    }
    before.stop().await.unwrap();
    // After a restart, one shard recovering one entity at a time gets all 50 at once.
    let config = EntityConfig {
        shard_count: 1,
        recoveries_concurrent_max: 1,
        ..config()
    };
    let region = std::sync::Arc::new(
        ShardRegion::<Account>::start("/after", fixture.journal.clone(), config)
            .await
            .unwrap(),
    );
    let mut callers = Vec::new();
    for account in accounts.clone() {
        let region = region.clone();
        callers.push(tokio::spawn(async move {
            region.ask(&account, deposit("d2", 1), DEADLINE).await
        }));
    }
    for caller in callers {
        let reply = caller.await.unwrap().unwrap();
        assert_eq!(total(&reply), 2, "recovered 1, then 1 more");
    }
    let stats = region.stats().await;
    assert_eq!(stats[0].entities, 50);
    assert_eq!(stats[0].recovering, 0);
}
