//! The risk monitor end to end, on a real SQLite journal (and on PostgreSQL when
//! `DATABASE_URL` is set, each test in its own schema): deposits and trades that put an
//! account over its position limit flag it; members added and removed at run time take and
//! give partitions without missing an event; every partition is owned by exactly one member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tradefloor_actors::trading::{Exchange, NewOrder, RiskConfig, TradingConfig};
use tradefloor_domain::{Amount, OrderType, Price, Quantity, Side, TimeInForce};
use tradefloor_persistence::{Database, Journal, JournalConfig};

mod common;

use common::*;

const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: u32 = 8;
const BTC_LIMIT: u64 = 150;

fn config() -> TradingConfig {
    TradingConfig {
        risk: RiskConfig {
            members: 2,
            partition_count: PARTITIONS,
            position_limit: None,
            position_limits: BTreeMap::from([(asset("BTC"), BTC_LIMIT)]),
            batch_events_max: 16,
            poll_interval: Duration::from_millis(20),
            batch_interval_min: Duration::from_millis(5),
            // Fewer than the accounts: members drop accounts' totals and fold them again.
            accounts_cached_max: 4,
        },
        ..trading_config()
    }
}

fn journal_config() -> JournalConfig {
    JournalConfig {
        sqlite_synchronous_full: false,
        ..JournalConfig::default()
    }
}

async fn sqlite() -> (Journal, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let database = Database::connect(&url, &journal_config()).await.unwrap();
    let journal = Journal::open(database, journal_config()).await.unwrap();
    (journal, directory)
}

async fn postgres(test: &str) -> Option<(Journal, String, String)> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipped: DATABASE_URL is not set, so {test} did not run on PostgreSQL");
        return None;
    };
    let schema = format!("risk_{test}_{}", std::process::id());
    let database = Database::connect_postgres(&url, Some(&schema), &journal_config())
        .await
        .unwrap();
    let journal = Journal::open(database, journal_config()).await.unwrap();
    Some((journal, url, schema))
}

async fn drop_schema(url: &str, schema: &str) {
    let Database::Postgres(pool) = Database::connect(url, &journal_config()).await.unwrap() else {
        unreachable!("a postgres url");
    };
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn risk_caught_up(exchange: &Exchange) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !exchange.risk_caught_up().await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the risk monitor lags"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until no partition is being handed over, with `members` live members, then checks
/// that every partition is held by exactly one member and the shares are balanced.
async fn settled(exchange: &Exchange, members: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = exchange.risk_stats();
        if stats.members.len() == members && stats.is_settled() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = exchange.risk_stats();
    assert_eq!(stats.partition_count, PARTITIONS);
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for holder in &stats.holders {
        let holder = holder.clone().expect("every partition has a holder");
        assert!(stats.members.contains(&holder), "{holder} is a live member");
        *shares.entry(holder).or_default() += 1;
    }
    assert_eq!(shares.len(), members, "every member holds partitions");
    let (low, high) = (
        PARTITIONS as usize / members,
        (PARTITIONS as usize).div_ceil(members),
    );
    assert!(shares.values().all(|share| (low..=high).contains(share)));
    // The members' own views agree: disjoint, and together every partition.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut owned = Vec::new();
        for member in exchange.risk_member_stats().await.unwrap() {
            owned.extend(member.partitions.keys().copied());
        }
        owned.sort_unstable();
        if owned == (0..PARTITIONS).collect::<Vec<_>>() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members own {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn flagged(exchange: &Exchange) -> BTreeSet<(String, String, u64)> {
    exchange
        .risk_flags()
        .await
        .unwrap()
        .into_iter()
        .map(|flag| {
            assert_eq!(flag.position_limit, BTC_LIMIT);
            assert!(flag.first_offset <= flag.last_offset);
            (flag.account_id, flag.asset, flag.position)
        })
        .collect()
}

/// Deposits `amount` BTC on each of `count` accounts named `{prefix}-{i}`.
async fn deposit_many(exchange: &Exchange, prefix: &str, count: usize, amount: u64) {
    for index in 0..count {
        exchange
            .deposit(
                account(&format!("{prefix}-{index}")),
                asset("BTC"),
                Amount(amount),
                None,
                None,
            )
            .await
            .unwrap();
    }
}

fn expected(prefix: &str, count: usize, amount: u64) -> Vec<(String, String, u64)> {
    (0..count)
        .map(|index| (format!("{prefix}-{index}"), "BTC".to_owned(), amount))
        .collect()
}

async fn accounts_over_the_limit_are_flagged_as_members_come_and_go(journal: Journal) {
    let exchange = Exchange::start(journal, config()).await.unwrap();
    exchange.list_market(market()).await.unwrap();
    settled(&exchange, 2).await;

    // A deposit over the limit, one under, and a trade that pushes dave over.
    for (owner, code, amount) in [
        ("bob", "BTC", 100),
        ("carol", "BTC", 200),
        ("dave", "BTC", 120),
        ("dave", "USD", 10_000),
    ] {
        exchange
            .deposit(account(owner), asset(code), Amount(amount), None, None)
            .await
            .unwrap();
    }
    let order = |owner: &str, side| NewOrder {
        order_id: None,
        account_id: account(owner),
        symbol: symbol(),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(100)),
        quantity: Quantity(40),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    };
    exchange
        .place_order(order("bob", Side::Sell))
        .await
        .unwrap();
    exchange
        .place_order(order("dave", Side::Buy))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let dave = exchange.account(account("dave")).await.unwrap();
        if dave.balances.get(&asset("BTC")).map(|b| b.total.get()) == Some(160) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trade never settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    risk_caught_up(&exchange).await;
    let mut want: BTreeSet<(String, String, u64)> = BTreeSet::from([
        ("carol".to_owned(), "BTC".to_owned(), 200),
        ("dave".to_owned(), "BTC".to_owned(), 160),
    ]);
    assert_eq!(flagged(&exchange).await, want);

    // A third member: partitions move to it, and events written meanwhile are all seen.
    let added = exchange.add_risk_member().await.unwrap();
    deposit_many(&exchange, "early", 12, BTC_LIMIT + 1).await;
    settled(&exchange, 3).await;
    assert!(exchange.risk_stats().holders.contains(&Some(added.clone())));
    deposit_many(&exchange, "third", 12, BTC_LIMIT + 2).await;
    deposit_many(&exchange, "under", 6, BTC_LIMIT).await;
    risk_caught_up(&exchange).await;
    want.extend(expected("early", 12, BTC_LIMIT + 1));
    want.extend(expected("third", 12, BTC_LIMIT + 2));
    assert_eq!(flagged(&exchange).await, want);

    // Removing one hands its partitions to the others.
    let first = exchange.risk_stats().members[0].clone();
    assert!(exchange.remove_risk_member(&first).await.unwrap());
    assert!(!exchange.remove_risk_member(&first).await.unwrap());
    deposit_many(&exchange, "late", 12, BTC_LIMIT + 3).await;
    settled(&exchange, 2).await;
    assert!(!exchange.risk_stats().holders.contains(&Some(first)));
    risk_caught_up(&exchange).await;
    want.extend(expected("late", 12, BTC_LIMIT + 3));
    assert_eq!(flagged(&exchange).await, want);

    // Redelivery changes nothing: a fresh member re-reading from the committed offsets,
    // and every row stays as it was.
    let before = exchange.risk_flags().await.unwrap();
    exchange.add_risk_member().await.unwrap();
    settled(&exchange, 3).await;
    risk_caught_up(&exchange).await;
    assert_eq!(exchange.risk_flags().await.unwrap(), before);
    exchange.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_over_the_limit_are_flagged_as_members_come_and_go_on_sqlite() {
    let (journal, _directory) = sqlite().await;
    accounts_over_the_limit_are_flagged_as_members_come_and_go(journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_over_the_limit_are_flagged_as_members_come_and_go_on_postgres() {
    if let Some((journal, url, schema)) = postgres("flags").await {
        let database = journal.database().clone();
        accounts_over_the_limit_are_flagged_as_members_come_and_go(journal).await;
        database.close().await;
        drop_schema(&url, &schema).await;
    }
}
