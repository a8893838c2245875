//! Persistent entities on a real SQLite journal: persist-then-reply, refusals, concurrency,
//! passivation, recovery from snapshot plus tail, overload, the priority lane, journal
//! failures, conflicts, fencing and the shard hand-off.

use std::time::Duration;

use tradefloor_actors::hosting::entity::stream_of;
use tradefloor_actors::{EntityConfig, Error, ShardRegion, shard_of};
use tradefloor_domain::account::Account;
use tradefloor_domain::book::{BookCommand, BookEvent, OrderBook};
use tradefloor_domain::{
    AccountId, Amount, Asset, MarketSpec, OrderId, OrderSpec, OrderType, Price, Quantity, Side,
    Symbol, TimeInForce, Timestamp,
};
use tradefloor_persistence::codec::EventCodec;
use tradefloor_persistence::{Database, Fence, Journal, JournalConfig, SnapshotStore};

mod common;

use common::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn config() -> EntityConfig {
    EntityConfig {
        shard_count: 8,
        ..EntityConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_comes_after_the_events_are_in_the_journal() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    let reply = region
        .ask("alice", deposit("d1", 100), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 100);
    // The reply came, so the event is durable: read it back with the codec.
    let stored = fixture
        .journal
        .read_stream(&stream_of::<Account>("alice"), 1, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let codec: EventCodec<_> = <Account as tradefloor_actors::Persistent>::codec();
    let event = codec.decode(&stored[0]).unwrap();
    assert!(matches!(
        event,
        tradefloor_domain::account::AccountEvent::Deposited {
            amount: Amount(100),
            ..
        }
    ));
    // A repeated command id: the first reply, nothing written.
    let again = region
        .ask("alice", deposit("d1", 100), DEADLINE)
        .await
        .unwrap();
    assert_eq!(again, reply);
    assert_eq!(stored_events(&fixture.journal, "account|alice").await, 1);
    region.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_changes_nothing() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    region
        .ask("bob", deposit("d1", 10), DEADLINE)
        .await
        .unwrap();
    let refused = region
        .ask("bob", withdraw("w1", 11), DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Rejected(tradefloor_domain::Error::InsufficientFunds { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(stored_events(&fixture.journal, "account|bob").await, 1);
    let reply = region
        .ask("bob", withdraw("w2", 10), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_run_concurrently_and_each_one_sequentially() {
    let fixture = fixture().await;
    let region = std::sync::Arc::new(
        ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
            .await
            .unwrap(),
    );
    let mut callers = Vec::new();
    for account in 0..40 {
        for deposit_index in 0..10 {
            let region = region.clone();
            callers.push(tokio::spawn(async move {
                let command = deposit(&format!("d{deposit_index}"), 1 + deposit_index);
                region
                    .ask(&format!("acct-{account}"), command, DEADLINE)
                    .await
                    .unwrap();
            }));
        }
    }
    for caller in callers {
        caller.await.unwrap();
    }
    for account in 0..40 {
        let stream = format!("account|acct-{account}");
        let stored = fixture.journal.read_stream(&stream, 1, 100).await.unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|event| event.sequence)
                .collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        let reply = region
            .ask(&format!("acct-{account}"), deposit("probe", 1), DEADLINE)
            .await
            .unwrap();
        assert_eq!(total(&reply), (1..=10).sum::<u64>() + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passivated_entity_comes_back_with_the_same_state() {
    let fixture = fixture().await;
    let config = EntityConfig {
        passivate_after: Duration::ZERO,
        passivation_interval: Duration::from_secs(3_600),
        ..config()
    };
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config)
        .await
        .unwrap();
    region
        .ask("carol", deposit("d1", 70), DEADLINE)
        .await
        .unwrap();
    let entities = |stats: Vec<tradefloor_actors::ShardStats>| {
        stats.iter().map(|shard| shard.entities).sum::<usize>()
    };
    assert_eq!(entities(region.stats().await), 1);
    region.passivate_idle();
    assert_eq!(entities(region.stats().await), 0, "passivated");
    assert_eq!(
        region
            .stats()
            .await
            .iter()
            .map(|shard| shard.passivated)
            .sum::<u64>(),
        1
    );
    // The next command reactivates it from the journal, same state (and same memory of ids).
    let again = region
        .ask("carol", deposit("d1", 70), DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        total(&again),
        70,
        "the repeated id is still recognised after reactivation"
    );
    let reply = region
        .ask("carol", deposit("d2", 5), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 75);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_is_the_latest_snapshot_plus_the_journal_tail() {
    let fixture = fixture().await;
    let config = EntityConfig {
        snapshot_every_events: 5,
        passivate_after: Duration::ZERO,
        ..config()
    };
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config)
        .await
        .unwrap();
    for index in 1..=12 {
        region
            .ask("dave", deposit(&format!("d{index}"), index), DEADLINE)
            .await
            .unwrap();
    }
    let snapshots = SnapshotStore::new(fixture.journal.database().clone(), 1 << 20);
    let mut snapshot = None;
    for _ in 0..100 {
        snapshot = snapshots.load("account|dave").await.unwrap();
        if snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.sequence == 10)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        snapshot.map(|snapshot| snapshot.sequence),
        Some(10),
        "a snapshot every 5 events"
    );
    region.passivate_idle();
    // Remove the events the snapshot covers: recovery must not need them.
    if let Database::Sqlite(pool) = fixture.journal.database() {
        sqlx::query("DELETE FROM events WHERE stream = 'account|dave' AND sequence <= 10")
            .execute(pool)
            .await
            .unwrap();
    }
    let reply = region
        .ask("dave", deposit("d13", 13), DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        total(&reply),
        (1..=13).sum::<u64>(),
        "snapshot (1..=10) + tail (11, 12) + the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_entity_queue_overloads_at_once_and_loses_nothing_it_accepted() {
    // Slow commits (each batch waits 300 ms) keep the entity persisting while commands queue.
    let fixture = fixture_with(JournalConfig {
        batch_wait: Duration::from_millis(300),
        ..JournalConfig::default()
    })
    .await;
    let config = EntityConfig {
        entity_mailbox_capacity: 3,
        ..config()
    };
    let region = std::sync::Arc::new(
        ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config)
            .await
            .unwrap(),
    );
    let mut callers = Vec::new();
    for index in 0..10u64 {
        let region = region.clone();
        callers.push(tokio::spawn(async move {
            region
                .ask("erin", deposit(&format!("d{index}"), 1), DEADLINE)
                .await
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut accepted, mut overloaded) = (0, 0);
    for caller in callers {
        match caller.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(Error::Overloaded { capacity: 3, .. }) => overloaded += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(overloaded > 0, "the queue filled");
    assert_eq!(accepted + overloaded, 10);
    assert_eq!(
        stored_events(&fixture.journal, "account|erin").await,
        accepted,
        "every accepted command persisted"
    );
}

fn book_spec() -> MarketSpec {
    MarketSpec {
        symbol: Symbol::new("BTC-USD").unwrap(),
        base: Asset::new("BTC").unwrap(),
        quote: usd(),
        tick_size: Price(1),
        lot_size: Quantity(1),
        min_quantity: Quantity(1),
        max_quantity: Quantity(1_000),
        band_bps: 5_000,
        reference_price: Some(Price(100)),
    }
}

fn sell(order: u64, price: u64) -> BookCommand {
    BookCommand::Submit {
        order: OrderSpec {
            order_id: OrderId(order),
            account_id: AccountId::new("maker").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            price: Some(Price(price)),
            quantity: Quantity(1),
            time_in_force: TimeInForce::Gtc,
            post_only: false,
        },
        at: Timestamp(order as i64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_overtake_queued_submits() {
    let fixture = fixture_with(JournalConfig {
        batch_wait: Duration::from_millis(200),
        ..JournalConfig::default()
    })
    .await;
    let region = std::sync::Arc::new(
        ShardRegion::<OrderBook>::start("/test/books", fixture.journal.clone(), config())
            .await
            .unwrap(),
    );
    region
        .ask(
            "BTC-USD",
            BookCommand::List {
                spec: book_spec(),
                at: Timestamp(0),
            },
            DEADLINE,
        )
        .await
        .unwrap();
    region.ask("BTC-USD", sell(1, 101), DEADLINE).await.unwrap();
    // While order 2 persists, submits 3 and 4 queue; then a cancel of order 1 arrives.
    let mut pending = Vec::new();
    for (queued, command) in [sell(2, 102), sell(3, 103), sell(4, 104)]
        .into_iter()
        .enumerate()
    {
        let region_for_ask = region.clone();
        pending.push(tokio::spawn(async move {
            region_for_ask.ask("BTC-USD", command, DEADLINE).await
        }));
        // Order 2 is being persisted and the ones after it wait in the book's queue.
        loop {
            let stats = region.stats().await;
            let persisting: usize = stats.iter().map(|shard| shard.persisting).sum();
            let waiting: usize = stats.iter().map(|shard| shard.queued).sum();
            if persisting == 1 && waiting == queued {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let cancel = BookCommand::Cancel {
        order_id: OrderId(1),
        at: Timestamp(9),
    };
    region.ask("BTC-USD", cancel, DEADLINE).await.unwrap();
    for result in pending {
        result.await.unwrap().unwrap();
    }
    let codec = <OrderBook as tradefloor_actors::Persistent>::codec();
    let order: Vec<String> = fixture
        .journal
        .read_stream("order_book|BTC-USD", 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|stored| match codec.decode(stored).unwrap() {
            BookEvent::Accepted { order, .. } => format!("submit {}", order.order_id),
            BookEvent::Ended { order_id, .. } => format!("cancel {order_id}"),
            _ => String::new(),
        })
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(
        order,
        ["submit 1", "submit 2", "cancel 1", "submit 3", "submit 4"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_never_acknowledged_and_the_entity_recovers() {
    let fixture = fixture().await;
    let region = std::sync::Arc::new(
        ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
            .await
            .unwrap(),
    );
    let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut callers = Vec::new();
    for index in 0..400u64 {
        let (region, acked_so_far) = (region.clone(), acked_so_far.clone());
        callers.push(tokio::spawn(async move {
            let account = format!("acct-{}", index % 10);
            // Each account's deposits go one after another, so the kill lands mid-stream.
            tokio::time::sleep(Duration::from_millis(index / 10)).await;
            let result = region
                .ask(&account, deposit(&format!("d{index}"), 1), DEADLINE)
                .await;
            if result.is_ok() {
                acked_so_far.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (account, result)
        }));
    }
    // Kill the journal's database in the middle of the writes.
    while acked_so_far.load(std::sync::atomic::Ordering::SeqCst) < 40 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    fixture.journal.database().close().await;
    let mut acknowledged = std::collections::BTreeMap::<String, usize>::new();
    let mut failed = 0;
    for caller in callers {
        match caller.await.unwrap() {
            (account, Ok(_)) => *acknowledged.entry(account).or_default() += 1,
            // Past the breaker's threshold the rest fail fast, unwritten.
            (
                _,
                Err(Error::Persistence { .. } | Error::Timeout { .. } | Error::BreakerOpen { .. }),
            ) => failed += 1,
            (_, Err(other)) => panic!("unexpected {other:?}"),
        }
    }
    // Reopen the journal: every acknowledged deposit is there.
    let config = JournalConfig::default();
    let reopened = Journal::open(
        Database::connect(&fixture.url, &config).await.unwrap(),
        config,
    )
    .await
    .unwrap();
    for account in 0..10 {
        let account = format!("acct-{account}");
        let stored = stored_events(&reopened, &format!("account|{account}")).await;
        let acked = acknowledged.get(&account).copied().unwrap_or(0);
        assert!(
            stored >= acked,
            "{account}: {stored} stored < {acked} acknowledged"
        );
    }
    let acked: usize = acknowledged.values().sum();
    eprintln!("{acked} acknowledged, {failed} failed when the journal died");
    assert!(acked >= 40 && failed > 0, "the kill landed mid-stream");
    // A fresh region on the reopened journal recovers each account from what is stored.
    let region = ShardRegion::<Account>::start("/test/accounts", reopened.clone(), self::config())
        .await
        .unwrap();
    let reply = region
        .ask("acct-0", deposit("after", 1), DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        total(&reply) as usize,
        stored_events(&reopened, "account|acct-0").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_writer_makes_the_entity_recover_rather_than_diverge() {
    let fixture = fixture().await;
    let first = ShardRegion::<Account>::start("/test/a", fixture.journal.clone(), config())
        .await
        .unwrap();
    let second = ShardRegion::<Account>::start("/test/b", fixture.journal.clone(), config())
        .await
        .unwrap();
    first
        .ask("frank", deposit("d1", 10), DEADLINE)
        .await
        .unwrap();
    second
        .ask("frank", deposit("d2", 20), DEADLINE)
        .await
        .unwrap();
    // `first` still believes frank is at sequence 1: its write conflicts and it recovers.
    let conflict = first
        .ask("frank", deposit("d3", 30), DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, Error::Persistence { .. }),
        "{conflict:?}"
    );
    let reply = first
        .ask("frank", deposit("d3", 30), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 60, "recovered 10 + 20, then applied 30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_shard_refuses_and_stops_and_a_new_owner_takes_over() {
    let fixture = fixture().await;
    let config = EntityConfig {
        shard_count: 1,
        ..config()
    };
    let region =
        ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config.clone())
            .await
            .unwrap();
    region.stop_shard(0).await.unwrap();
    region
        .start_shard(
            0,
            Some(Fence {
                key: "account-0".to_owned(),
                epoch: 1,
            }),
        )
        .await
        .unwrap();
    region
        .ask("gina", deposit("d1", 5), DEADLINE)
        .await
        .unwrap();
    // The shard moves: its new owner claims epoch 2.
    fixture.journal.claim_fence("account-0", 2).await.unwrap();
    let fenced = region
        .ask("gina", deposit("d2", 5), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(fenced, Error::Fenced { .. }), "{fenced:?}");
    assert_eq!(
        stored_events(&fixture.journal, "account|gina").await,
        1,
        "the stale owner wrote nothing"
    );
    let owner = ShardRegion::<Account>::start(
        "/test/owner",
        fixture.journal.clone(),
        EntityConfig {
            shard_count: 1,
            ..self::config()
        },
    )
    .await
    .unwrap();
    owner.stop_shard(0).await.unwrap();
    owner
        .start_shard(
            0,
            Some(Fence {
                key: "account-0".to_owned(),
                epoch: 2,
            }),
        )
        .await
        .unwrap();
    let reply = owner.ask("gina", deposit("d2", 5), DEADLINE).await.unwrap();
    assert_eq!(total(&reply), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_shard_finishes_what_it_accepted_and_starting_it_recovers() {
    let fixture = fixture_with(JournalConfig {
        batch_wait: Duration::from_millis(50),
        ..JournalConfig::default()
    })
    .await;
    let config = EntityConfig {
        shard_count: 4,
        ..config()
    };
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config)
        .await
        .unwrap();
    let shard = shard_of("hank", 4);
    for index in 0..20 {
        region
            .tell("hank", deposit(&format!("d{index}"), 1))
            .unwrap();
    }
    region.stop_shard(shard).await.unwrap();
    assert_eq!(
        stored_events(&fixture.journal, "account|hank").await,
        20,
        "everything accepted was persisted"
    );
    assert!(matches!(
        region.ask("hank", deposit("x", 1), DEADLINE).await,
        Err(Error::Stopped { .. })
    ));
    region.start_shard(shard, None).await.unwrap();
    let reply = region
        .ask("hank", deposit("d20", 1), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 21);
}

/// Commands that wait while their entity writes are decided together and written in one
/// append: each is decided against the state the ones before it left (a refusal included),
/// and each caller hears its own outcome, after the batch is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_commands_are_decided_in_order_and_written_in_one_append() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    // Delivered in this order (join_all polls each future once, in order, before any answer).
    let mut commands = vec![deposit("d0", 10), withdraw("w0", 10), withdraw("w1", 10)];
    for index in 1..=40 {
        commands.push(deposit(&format!("d{index}"), 1));
    }
    let asks = commands
        .into_iter()
        .map(|command| region.ask("carol", command, DEADLINE));
    let answers = futures_join_all(asks).await;
    assert_eq!(total(answers[0].as_ref().unwrap()), 10);
    assert_eq!(total(answers[1].as_ref().unwrap()), 0);
    assert!(
        matches!(answers[2], Err(Error::Rejected(_))),
        "the second withdrawal sees the first: {:?}",
        answers[2]
    );
    for (index, answer) in answers[3..].iter().enumerate() {
        assert_eq!(total(answer.as_ref().unwrap()), index as u64 + 1);
    }
    // 42 events in far fewer appends: the events of one append share a transaction time,
    // while an entity writing one command at a time would need one journal batch each.
    let stored = fixture
        .journal
        .read_stream(&stream_of::<Account>("carol"), 1, 100)
        .await
        .unwrap();
    assert_eq!(stored.len(), 42);
    let mut batches: Vec<i64> = stored.iter().map(|event| event.recorded_at).collect();
    batches.dedup();
    assert!(
        batches.len() < 10,
        "{} appends for 42 commands",
        batches.len()
    );

    // With batches of one command, the same traffic takes one append per command.
    let fixture = common::fixture().await;
    let region = ShardRegion::<Account>::start(
        "/test/accounts",
        fixture.journal.clone(),
        EntityConfig {
            batch_commands_max: 1,
            ..config()
        },
    )
    .await
    .unwrap();
    let asks = (0..20).map(|index| region.ask("dave", deposit(&format!("d{index}"), 1), DEADLINE));
    for answer in futures_join_all(asks).await {
        answer.unwrap();
    }
    let stored = fixture
        .journal
        .read_stream(&stream_of::<Account>("dave"), 1, 100)
        .await
        .unwrap();
    let mut batches: Vec<i64> = stored.iter().map(|event| event.recorded_at).collect();
    batches.dedup();
    assert_eq!(batches.len(), 20);
}

/// `ask_with_events` answers the events the command wrote, and none for a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_with_events_answers_the_events_written() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    let (reply, events) = region
        .ask_with_events("erin", deposit("d1", 7), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 7);
    assert!(matches!(
        events.as_slice(),
        [tradefloor_domain::account::AccountEvent::Deposited {
            amount: Amount(7),
            ..
        }]
    ));
    let (reply, events) = region
        .ask_with_events("erin", deposit("d1", 7), DEADLINE)
        .await
        .unwrap();
    assert_eq!(total(&reply), 7);
    assert!(events.is_empty(), "a repeat writes nothing: {events:?}");
}

/// Polls every future to completion, starting them in order (no futures crate here).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// An inspection queued behind commands runs after their writes, on the state they left:
/// it sees every command told before it (each durable by then) and never a batch whose write
/// is still under way; an entity never written is its default state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspection_sees_every_command_before_it_and_nothing_undurable() {
    let fixture = fixture().await;
    let region = ShardRegion::<Account>::start("/test/accounts", fixture.journal.clone(), config())
        .await
        .unwrap();
    for round in 0..20u64 {
        for index in 0..10u64 {
            region
                .tell("alice", deposit(&format!("d{round}-{index}"), 1))
                .unwrap();
        }
        let seen = region
            .inspect("alice", DEADLINE, |account: &Account| {
                account.balance(usd()).total
            })
            .await
            .unwrap();
        assert_eq!(seen, Amount((round + 1) * 10), "round {round}");
        // One event per deposit of 1: what it saw is all in the journal.
        let stored = stored_events(&fixture.journal, &stream_of::<Account>("alice")).await;
        assert!(
            seen.get() <= stored as u64,
            "an inspection saw {seen:?} with only {stored} events stored"
        );
    }
    let nobody = region
        .inspect("nobody", DEADLINE, |account: &Account| {
            account.balances().len()
        })
        .await
        .unwrap();
    assert_eq!(nobody, 0);
    region.stop().await.unwrap();
    let stopped = region
        .inspect("alice", DEADLINE, |account: &Account| {
            account.balances().len()
        })
        .await;
    assert!(matches!(stopped, Err(Error::Stopped { .. })), "{stopped:?}");
}
