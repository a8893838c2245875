//! The trading application end to end on a real SQLite journal, and on PostgreSQL when
//! `DATABASE_URL` is set (each test in its own schema; skipped, saying so, otherwise):
//! orders placed through the [`Exchange`] facade trade, settle on both accounts and show in
//! the read models.

use std::time::Duration;

use tradefloor_actors::trading::projections;
use tradefloor_actors::trading::{CandleInterval, Exchange, NewOrder};
use tradefloor_domain::saga::OrderView;
use tradefloor_domain::{
    Amount, OrderId, OrderStatus, OrderType, Price, Quantity, Side, TimeInForce, Timestamp,
};
use tradefloor_persistence::{Database, Journal, JournalConfig};

mod common;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

async fn journal() -> (Journal, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let config = JournalConfig {
        sqlite_synchronous_full: false,
        ..JournalConfig::default()
    };
    let journal = Journal::open(Database::connect(&url, &config).await.unwrap(), config)
        .await
        .unwrap();
    (journal, directory)
}

/// An exchange with BTC-USD listed, alice holding 100 000 USD and bob 100 BTC.
async fn exchange(journal: Journal) -> Exchange {
    let exchange = Exchange::start(journal, trading_config()).await.unwrap();
    exchange.list_market(market()).await.unwrap();
    for (owner, code, amount) in [("alice", "USD", 100_000), ("bob", "BTC", 100)] {
        exchange
            .deposit(account(owner), asset(code), Amount(amount), None, None)
            .await
            .unwrap();
    }
    exchange
}

/// A journal in a fresh schema of `DATABASE_URL`, with the URL and the schema (dropped after
/// the test); `None`, saying so, when the variable is not set.
async fn postgres_journal(test: &str) -> Option<(Journal, String, String)> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("skipped: DATABASE_URL is not set, so {test} did not run on PostgreSQL");
        return None;
    };
    let schema = format!(
        "trading_{}_{}",
        &test[..test.len().min(30)],
        std::process::id()
    );
    let config = JournalConfig::default();
    let database = Database::connect_postgres(&url, Some(&schema), &config)
        .await
        .unwrap();
    let journal = Journal::open(database, config).await.unwrap();
    Some((journal, url, schema))
}

async fn drop_schema(url: &str, schema: &str) {
    let Database::Postgres(pool) = Database::connect(url, &JournalConfig::default())
        .await
        .unwrap()
    else {
        unreachable!("DATABASE_URL is a PostgreSQL URL");
    };
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Runs the test body `$name(journal)` as `$name::sqlite` and `$name::postgres`.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (journal, _directory) = super::journal().await;
                super::$name(journal).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let test = stringify!($name);
                if let Some((journal, url, schema)) = super::postgres_journal(test).await {
                    let database = journal.database().clone();
                    super::$name(journal).await;
                    database.close().await;
                    super::drop_schema(&url, &schema).await;
                }
            }
        }
    };
}

fn limit(owner: &str, side: Side, price: u64, quantity: u64) -> NewOrder {
    NewOrder {
        order_id: None,
        account_id: account(owner),
        symbol: symbol(),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        quantity: Quantity(quantity),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    }
}

/// Waits until the order's saga is finished (final status, hold released, fills settled).
async fn settled(exchange: &Exchange, order_id: OrderId) -> OrderView {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = exchange.order(order_id).await.unwrap();
        if view.finished {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{view:?} never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the book feed and every read model handled the whole log.
async fn caught_up(exchange: &Exchange) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !exchange.caught_up().await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "read models lag");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(total, held)` of an asset on an account.
async fn balance(exchange: &Exchange, owner: &str, code: &str) -> (u64, u64) {
    let view = exchange.account(account(owner)).await.unwrap();
    view.balances
        .get(&asset(code))
        .map_or((0, 0), |balance| (balance.total.get(), balance.held.get()))
}

on_both_backends!(two_accounts_trade_end_to_end_and_the_read_models_follow);

async fn two_accounts_trade_end_to_end_and_the_read_models_follow(journal: Journal) {
    let exchange = exchange(journal).await;
    let sell = exchange
        .place_order(limit("bob", Side::Sell, 100, 10))
        .await
        .unwrap();
    assert_eq!(sell.status, OrderStatus::Open);
    let buy = exchange
        .place_order(limit("alice", Side::Buy, 100, 10))
        .await
        .unwrap();
    assert_eq!(buy.status, OrderStatus::Filled);
    assert_eq!(buy.filled_quantity, Quantity(10));
    settled(&exchange, buy.order_id).await;
    let maker = settled(&exchange, sell.order_id).await;
    assert_eq!(maker.status, OrderStatus::Filled);
    assert!(maker.fills.iter().all(|fill| fill.settled));
    assert_eq!(balance(&exchange, "alice", "BTC").await, (10, 0));
    assert_eq!(balance(&exchange, "alice", "USD").await, (99_000, 0));
    assert_eq!(balance(&exchange, "bob", "BTC").await, (90, 0));
    assert_eq!(balance(&exchange, "bob", "USD").await, (1_000, 0));

    caught_up(&exchange).await;
    let trades = exchange.trades(symbol(), 10).await.unwrap();
    assert_eq!(trades.len(), 1);
    assert_eq!(
        (trades[0].price, trades[0].quantity),
        (Price(100), Quantity(10))
    );
    for interval in CandleInterval::ALL {
        let candles = exchange.candles(symbol(), interval, 10).await.unwrap();
        assert_eq!(candles.len(), 1);
        assert_eq!(candles[0].vwap, Price(100));
        assert_eq!(candles[0].volume, Quantity(10));
    }
    let tables = projections::dump(exchange.journal().database())
        .await
        .unwrap();
    let balances = &tables[projections::balances::BALANCES_TABLE];
    assert_eq!(balances.len(), 4, "{balances:?}");
    let orders = &tables[projections::orders::ORDERS_TABLE];
    assert!(
        orders.iter().all(|row| row[8].text() == Some("filled")),
        "{orders:?}"
    );
    exchange.shutdown().await.unwrap();
}

on_both_backends!(partial_fills_cancel_and_the_hold_is_released);

async fn partial_fills_cancel_and_the_hold_is_released(journal: Journal) {
    let exchange = exchange(journal).await;
    let sell = exchange
        .place_order(limit("bob", Side::Sell, 100, 4))
        .await
        .unwrap();
    let buy = exchange
        .place_order(limit("alice", Side::Buy, 100, 10))
        .await
        .unwrap();
    assert_eq!(buy.status, OrderStatus::PartiallyFilled);
    assert_eq!(buy.filled_quantity, Quantity(4));
    settled(&exchange, sell.order_id).await;
    // 6 still resting at 100: 600 USD held, and the hold indexed for the orphan sweep.
    let open = exchange.account(account("alice")).await.unwrap();
    assert_eq!(open.open_orders.len(), 1);
    caught_up(&exchange).await;
    assert_eq!(open_holds(&exchange).await, vec![buy.order_id.0]);
    exchange.cancel_order(buy.order_id).await.unwrap();
    let cancelled = settled(&exchange, buy.order_id).await;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(balance(&exchange, "alice", "USD").await, (99_600, 0));
    assert_eq!(balance(&exchange, "alice", "BTC").await, (4, 0));
    assert!(
        exchange
            .account(account("alice"))
            .await
            .unwrap()
            .open_orders
            .is_empty()
    );
    caught_up(&exchange).await;
    assert!(open_holds(&exchange).await.is_empty());
    exchange.shutdown().await.unwrap();
}

/// The order ids of the balances read model's open holds.
async fn open_holds(exchange: &Exchange) -> Vec<u64> {
    let (holds, _) = projections::balances::open_holds(exchange.journal().read_models())
        .await
        .unwrap();
    let mut ids: Vec<u64> = holds.keys().map(|order_id| order_id.0).collect();
    ids.sort_unstable();
    ids
}

on_both_backends!(a_restart_keeps_the_balances_read_model_and_its_open_holds);

/// A node starting on tables that hold open holds keeps the balances read model as it is:
/// on PostgreSQL the check for the holds index once failed on any row (a 32-bit column) and
/// reset the shared read model, which in a cluster corrupted it under another node's writes.
async fn a_restart_keeps_the_balances_read_model_and_its_open_holds(journal: Journal) {
    let exchange = exchange(journal.clone()).await;
    let resting = exchange
        .place_order(limit("alice", Side::Buy, 90, 5))
        .await
        .unwrap();
    caught_up(&exchange).await;
    assert_eq!(open_holds(&exchange).await, vec![resting.order_id.0]);
    exchange.shutdown().await.unwrap();
    let offset = || async {
        journal
            .read_models()
            .fetch(
                "SELECT position FROM offsets WHERE consumer = 'trading.balances'",
                &[],
            )
            .await
            .unwrap()
    };
    let before = offset().await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_ne!(before[0][0], tradefloor_persistence::SqlValue::from(0_i64));

    projections::create_tables(&journal).await.unwrap();
    assert_eq!(offset().await, before, "the read model was not reset");
    let counted = journal
        .read_models()
        .fetch("SELECT COUNT(*), 1 FROM trading_holds", &[])
        .await
        .unwrap();
    assert_eq!(
        counted,
        vec![vec![1_i64.into(), 1_i64.into()]],
        "64- and 32-bit integers read back alike"
    );
}

on_both_backends!(ioc_fok_and_post_only_follow_their_rules);

async fn ioc_fok_and_post_only_follow_their_rules(journal: Journal) {
    let exchange = exchange(journal).await;
    exchange
        .place_order(limit("bob", Side::Sell, 100, 5))
        .await
        .unwrap();
    let fok = exchange
        .place_order(NewOrder {
            time_in_force: TimeInForce::Fok,
            ..limit("alice", Side::Buy, 100, 6)
        })
        .await
        .unwrap();
    assert_eq!(fok.status, OrderStatus::Rejected, "{fok:?}");
    // A refusal is answered once its hold is released: the funds are available at once.
    assert!(fok.finished, "{fok:?}");
    assert_eq!(balance(&exchange, "alice", "USD").await, (100_000, 0));
    let ioc = exchange
        .place_order(NewOrder {
            time_in_force: TimeInForce::Ioc,
            ..limit("alice", Side::Buy, 100, 6)
        })
        .await
        .unwrap();
    let ioc = settled(&exchange, ioc.order_id).await;
    assert_eq!(ioc.status, OrderStatus::Cancelled);
    assert_eq!(ioc.filled_quantity, Quantity(5));
    exchange
        .place_order(limit("bob", Side::Sell, 101, 5))
        .await
        .unwrap();
    let post_only = exchange
        .place_order(NewOrder {
            post_only: true,
            ..limit("alice", Side::Buy, 101, 1)
        })
        .await
        .unwrap();
    assert_eq!(post_only.status, OrderStatus::Rejected);
    assert!(post_only.finished, "{post_only:?}");
    assert_eq!(balance(&exchange, "alice", "USD").await, (99_500, 0));
    exchange.shutdown().await.unwrap();
}

on_both_backends!(self_trade_prevention_and_halt_then_resume);

async fn self_trade_prevention_and_halt_then_resume(journal: Journal) {
    let exchange = exchange(journal).await;
    exchange
        .deposit(account("bob"), asset("USD"), Amount(10_000), None, None)
        .await
        .unwrap();
    exchange
        .place_order(limit("bob", Side::Sell, 100, 5))
        .await
        .unwrap();
    let own = exchange
        .place_order(limit("bob", Side::Buy, 100, 5))
        .await
        .unwrap();
    let own = settled(&exchange, own.order_id).await;
    assert_eq!(own.status, OrderStatus::Cancelled);
    assert_eq!(own.filled_quantity, Quantity(0));

    exchange.halt(symbol()).await.unwrap();
    let halted = exchange
        .place_order(limit("alice", Side::Buy, 100, 1))
        .await
        .unwrap();
    assert_eq!(halted.status, OrderStatus::Rejected);
    exchange.resume(symbol(), None).await.unwrap();
    let after = exchange
        .place_order(limit("alice", Side::Buy, 100, 1))
        .await
        .unwrap();
    assert_eq!(after.status, OrderStatus::Filled);
    exchange.shutdown().await.unwrap();
}

on_both_backends!(a_rebuilt_read_model_equals_the_live_one_and_history_is_bitemporal);

async fn a_rebuilt_read_model_equals_the_live_one_and_history_is_bitemporal(journal: Journal) {
    let exchange = exchange(journal).await;
    for price in [100, 101, 99] {
        let sell = exchange
            .place_order(limit("bob", Side::Sell, price, 2))
            .await
            .unwrap();
        let buy = exchange
            .place_order(limit("alice", Side::Buy, price, 2))
            .await
            .unwrap();
        settled(&exchange, sell.order_id).await;
        settled(&exchange, buy.order_id).await;
    }
    let before_correction = exchange.now();
    exchange
        .deposit(
            account("alice"),
            asset("USD"),
            Amount(7),
            None,
            Some(Timestamp(1)),
        )
        .await
        .unwrap();
    let history = exchange
        .account_history(account("alice"), Timestamp(1), before_correction)
        .await
        .unwrap();
    assert!(
        !history.balances.contains_key(&asset("USD")),
        "not yet known"
    );
    let history = exchange
        .account_history(account("alice"), Timestamp(1), exchange.now())
        .await
        .unwrap();
    assert_eq!(history.balances[&asset("USD")].total, 7);

    caught_up(&exchange).await;
    let journal = exchange.journal().clone();
    let live = projections::dump(journal.database()).await.unwrap();
    exchange.shutdown().await.unwrap();
    projections::rebuild_all(
        &journal,
        &trading_config().projections,
        trading_config().candle_watermark_micros,
    )
    .await
    .unwrap();
    let rebuilt = projections::dump(journal.database()).await.unwrap();
    assert_eq!(live, rebuilt);
    assert_eq!(live[projections::trades::TRADES_TABLE].len(), 3);
}

/// The read models' supervisor has no parent: when a read model keeps failing (here its table
/// is dropped under it) and the supervisor gives up, the application says so, so the node can
/// stop instead of serving without read models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_models_supervisor_giving_up_is_reported() {
    let (journal, _directory) = journal().await;
    let exchange = exchange(journal).await;
    caught_up(&exchange).await;
    assert!(exchange.services_running());
    let Database::Sqlite(pool) = exchange.journal().database() else {
        unreachable!("the journal is SQLite")
    };
    sqlx::query("DROP TABLE trading_balances")
        .execute(pool)
        .await
        .unwrap();
    exchange
        .deposit(account("alice"), asset("USD"), Amount(1), None, None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), exchange.services_stopped())
        .await
        .expect("the supervisor gives up on a read model that fails at every batch");
    assert!(!exchange.services_running());
    exchange.shutdown().await.unwrap();
}

/// On the happy path the saga of an order whose id the venue generated writes nothing: its
/// start is in the hold, and the hold, the book's word on the order, its fills, settlement
/// and release are facts of the account's and the book's journals, which a restarted exchange
/// folds into the same sagas (and read models).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_orders_saga_journals_nothing_and_recovers_from_the_other_journals() {
    use tradefloor_persistence::Filter;

    let (journal, _directory) = journal().await;
    let exchange = exchange(journal.clone()).await;
    let maker = exchange
        .place_order(limit("bob", Side::Sell, 100, 10))
        .await
        .unwrap();
    let mut orders = vec![maker.order_id];
    for quantity in [3, 4] {
        let taker = exchange
            .place_order(limit("alice", Side::Buy, 100, quantity))
            .await
            .unwrap();
        assert_eq!(taker.status, OrderStatus::Filled);
        orders.push(taker.order_id);
    }
    let resting = exchange
        .place_order(limit("alice", Side::Buy, 90, 5))
        .await
        .unwrap();
    orders.push(resting.order_id);
    let mut before = Vec::new();
    for order_id in &orders[1..3] {
        before.push(settled(&exchange, *order_id).await);
    }
    for order_id in [orders[0], orders[3]] {
        before.push(exchange.order(order_id).await.unwrap());
    }
    caught_up(&exchange).await;
    let rows_before = projections::dump(journal.database()).await.unwrap();
    exchange.shutdown().await.unwrap();

    let saga_events = journal
        .read_all(0, 1_000, &Filter::Kind("order_saga".to_owned()))
        .await
        .unwrap();
    let names: Vec<&str> = saga_events
        .iter()
        .map(|event| event.name.as_str())
        .collect();
    assert!(
        names.is_empty(),
        "the holds carry the starts, the rest are facts: {names:?}"
    );

    let exchange = Exchange::start(journal.clone(), trading_config())
        .await
        .unwrap();
    let mut after = Vec::new();
    for order_id in &orders[1..3] {
        after.push(exchange.order(*order_id).await.unwrap());
    }
    for order_id in [orders[0], orders[3]] {
        after.push(exchange.order(order_id).await.unwrap());
    }
    assert_eq!(
        after, before,
        "the sagas as they were, fills and settlement included"
    );
    assert!(after[0].finished && after[1].finished);
    assert_eq!(after[2].filled_quantity, Quantity(7));
    assert_eq!(after[3].status, OrderStatus::Open);
    // The maker fills up after the restart: its saga goes on from the derived state.
    exchange
        .place_order(limit("alice", Side::Buy, 100, 3))
        .await
        .unwrap();
    let maker = settled(&exchange, orders[0]).await;
    assert_eq!(maker.status, OrderStatus::Filled);
    assert_eq!(maker.fills.len(), 3);
    caught_up(&exchange).await;
    let live = projections::dump(journal.database()).await.unwrap();
    exchange.shutdown().await.unwrap();
    assert_ne!(
        live, rows_before,
        "the read models followed the restarted exchange"
    );
    projections::rebuild_all(
        &journal,
        &trading_config().projections,
        trading_config().candle_watermark_micros,
    )
    .await
    .unwrap();
    let rebuilt = projections::dump(journal.database()).await.unwrap();
    assert_eq!(
        live, rebuilt,
        "the live read models equal a rebuild from offset 0"
    );
    let orders = &live[projections::orders::ORDERS_TABLE];
    assert_eq!(orders.len(), 5);
}

/// An exchange on `journal` in which alice places a buy of 5 at 90 (450 USD held) and that is
/// stopped; then alice's hold of 1 000 USD for `orphan`, placed with no saga: what a crash
/// after a generated order's hold and before its saga's start leaves behind. Answers the
/// resting order.
async fn resting_and_orphan(journal: &Journal, orphan: OrderId) -> OrderView {
    let exchange = exchange(journal.clone()).await;
    let resting = exchange
        .place_order(limit("alice", Side::Buy, 90, 5))
        .await
        .unwrap();
    assert_eq!(resting.status, OrderStatus::Open);
    exchange.shutdown().await.unwrap();
    place_orphan_hold(journal, orphan).await;
    resting
}

/// Places alice's hold of 1 000 USD for `orphan` through an accounts region of its own.
async fn place_orphan_hold(journal: &Journal, orphan: OrderId) {
    place_hold_without_saga(journal, "alice", orphan, false).await;
}

/// Places `owner`'s hold of 1 000 USD for `orphan` (depositing the funds first if `fund`)
/// through an accounts region of its own.
async fn place_hold_without_saga(journal: &Journal, owner: &str, orphan: OrderId, fund: bool) {
    place_hold(journal, owner, orphan, fund, None).await;
}

/// Places `owner`'s hold of 1 000 USD for a buy of 10 at 100 (`order`), carrying `start`,
/// through an accounts region of its own.
async fn place_hold(
    journal: &Journal,
    owner: &str,
    order: OrderId,
    fund: bool,
    start: Option<Box<tradefloor_domain::saga::SagaStart>>,
) {
    use tradefloor_actors::{EntityConfig, ShardRegion};
    use tradefloor_domain::CommandId;
    use tradefloor_domain::account::{Account, AccountCommand};

    let accounts =
        ShardRegion::<Account>::start("/orphan/accounts", journal.clone(), EntityConfig::default())
            .await
            .unwrap();
    if fund {
        let deposit = AccountCommand::Deposit {
            command_id: CommandId::new("fund-orphan").unwrap(),
            asset: asset("USD"),
            amount: Amount(5_000),
            effective_at: None,
            at: Timestamp(1),
        };
        accounts
            .ask(owner, deposit, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let hold = AccountCommand::PlaceHold {
        command_id: CommandId::derived(order, "hold").unwrap(),
        order_id: order,
        symbol: symbol(),
        base: asset("BTC"),
        quote: asset("USD"),
        side: Side::Buy,
        price: Some(Price(100)),
        quantity: Quantity(10),
        start,
        at: Timestamp(1),
    };
    accounts
        .ask(owner, hold, Duration::from_secs(5))
        .await
        .unwrap();
    accounts.stop().await.unwrap();
}

/// An account holding for an order whose saga has not started (the instant between a
/// generated order's hold and its start, or a hold the next sweep will release) is answered:
/// the hold counts in its balance, and no open order is made up for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_hold_whose_saga_has_not_started_is_answered() {
    let (journal, _directory) = journal().await;
    let exchange = exchange(journal.clone()).await;
    let resting = exchange
        .place_order(limit("alice", Side::Buy, 90, 5))
        .await
        .unwrap();
    // carol is not in the exchange's memory: her account is read from the journal as it is
    // first asked for, hold and all.
    place_hold_without_saga(&journal, "carol", OrderId(525_252), true).await;

    let carol = exchange.account(account("carol")).await.unwrap();
    let usd = carol.balances[&asset("USD")];
    assert_eq!((usd.total, usd.held), (Amount(5_000), Amount(1_000)));
    assert!(carol.open_orders.is_empty(), "{:?}", carol.open_orders);
    let alice = exchange.account(account("alice")).await.unwrap();
    assert_eq!(
        alice
            .open_orders
            .iter()
            .map(|order| order.order_id)
            .collect::<Vec<_>>(),
        vec![resting.order_id]
    );
    exchange.shutdown().await.unwrap();
}

/// A crash between a generated order's hold and its saga's start leaves a hold no saga will
/// release: the next start of the application releases it, and leaves a hold that has its
/// saga alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_without_a_saga_is_released_at_start() {
    let (journal, _directory) = journal().await;
    resting_and_orphan(&journal, OrderId(424_242)).await;

    let exchange = Exchange::start(journal, trading_config()).await.unwrap();
    let alice = exchange.account(account("alice")).await.unwrap();
    let usd = alice.balances[&asset("USD")];
    assert_eq!(usd.total, Amount(100_000));
    assert_eq!(
        usd.held,
        Amount(450),
        "only the resting order's hold is left"
    );
    assert_eq!(alice.open_orders.len(), 1);
    exchange.shutdown().await.unwrap();
}

/// A crash right after a generated order's hold (which carries its saga's start) and before
/// anything else leaves a started saga, not an orphan: the next start resumes it, the order
/// reaches its book and rests there, its hold kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_that_carries_its_start_is_resumed_at_start_not_released() {
    use tradefloor_domain::OrderSpec;
    use tradefloor_domain::saga::{SagaConfig, SagaStart};

    let (journal, _directory) = journal().await;
    let resting = exchange(journal.clone()).await;
    resting.shutdown().await.unwrap();
    let order = OrderId(434_343);
    let start = SagaStart {
        order: OrderSpec {
            order_id: order,
            account_id: account("alice"),
            side: Side::Buy,
            order_type: OrderType::Limit,
            price: Some(Price(100)),
            quantity: Quantity(10),
            time_in_force: TimeInForce::Gtc,
            post_only: false,
        },
        market: market(),
        config: SagaConfig {
            step_timeout_micros: 50_000,
            ..SagaConfig::default()
        },
    };
    place_hold(&journal, "alice", order, false, Some(Box::new(start))).await;

    let exchange = Exchange::start(journal, trading_config()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let view = loop {
        let view = exchange.order(order).await.unwrap();
        if view.resting || tokio::time::Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view.status, OrderStatus::Open, "{view:?}");
    assert!(view.resting, "{view:?}");
    let usd = exchange.account(account("alice")).await.unwrap().balances[&asset("USD")];
    assert_eq!(usd.held, Amount(1_000), "the hold stays with its order");
    caught_up(&exchange).await;
    assert_eq!(open_holds(&exchange).await, vec![order.0]);
    exchange.shutdown().await.unwrap();
}

/// A data directory from before the balances read model kept its index of open holds (the
/// table missing, the read model's offset far along): at the next start the read model is
/// built again from offset 0 with the index, so a hold orphaned before the upgrade is found
/// and released, and the resting order's hold is indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_from_before_the_holds_index_is_built_again_with_it() {
    use tradefloor_actors::hosting::projection::rebuild;

    let (journal, _directory) = journal().await;
    // The orphan's hold is one the read model applied (its offset is past it) before the
    // upgrade.
    let resting = resting_and_orphan(&journal, OrderId(424_243)).await;
    rebuild(
        &journal,
        &mut projections::balances::BalancesProjection,
        &trading_config().projections,
    )
    .await
    .unwrap();
    journal
        .read_models()
        .execute("DROP TABLE trading_holds")
        .await
        .unwrap();

    let exchange = Exchange::start(journal, trading_config()).await.unwrap();
    let usd = exchange.account(account("alice")).await.unwrap().balances[&asset("USD")];
    assert_eq!(usd.held, Amount(450), "the orphan's hold is released");
    caught_up(&exchange).await;
    assert_eq!(open_holds(&exchange).await, vec![resting.order_id.0]);
    let balances = &projections::dump(exchange.journal().read_models())
        .await
        .unwrap()["trading_balances"];
    let alice_usd: Vec<tradefloor_persistence::SqlValue> = vec![
        "alice".into(),
        "USD".into(),
        100_000_i64.into(),
        450_i64.into(),
    ];
    assert!(balances.contains(&alice_usd), "{balances:?}");
    exchange.shutdown().await.unwrap();
}

/// A withdrawal retried with its command id after 1 000 fills on the same account gets its
/// first answer and changes nothing: settlements do not push client command ids out of the
/// account's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_retried_after_a_thousand_fills_repeats_its_first_answer() {
    use tradefloor_domain::CommandId;

    const FILLS: u64 = 1_000;
    let (journal, _directory) = journal().await;
    let exchange = std::sync::Arc::new(exchange(journal).await);
    let withdrawal = CommandId::new("w-1").unwrap();
    // The same withdrawal each time: its command id with the same body.
    let withdraw = async || {
        exchange
            .withdraw(
                account("bob"),
                asset("BTC"),
                Amount(1),
                Some(withdrawal),
                None,
            )
            .await
            .unwrap()
    };
    let first = withdraw().await;
    exchange
        .deposit(account("bob"), asset("BTC"), Amount(FILLS), None, None)
        .await
        .unwrap();
    let maker = exchange
        .place_order(limit("bob", Side::Sell, 100, FILLS))
        .await
        .unwrap();
    let mut takers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let exchange = exchange.clone();
        takers.spawn(async move {
            for _ in (worker..FILLS).step_by(8) {
                let taker = exchange
                    .place_order(limit("alice", Side::Buy, 100, 1))
                    .await
                    .unwrap();
                assert_eq!(taker.status, OrderStatus::Filled, "{taker:?}");
            }
        });
    }
    while let Some(done) = takers.join_next().await {
        done.unwrap();
    }
    let maker = settled(&exchange, maker.order_id).await;
    assert_eq!(maker.fills.len() as u64, FILLS);
    let before = balance(&exchange, "bob", "BTC").await;
    assert_eq!(
        before,
        (99, 0),
        "bob sold all he deposited after the withdrawal"
    );

    let again = withdraw().await;
    assert_eq!(again, first, "the first answer");
    assert_eq!(
        balance(&exchange, "bob", "BTC").await,
        before,
        "nothing changed"
    );
    std::sync::Arc::into_inner(exchange)
        .expect("the takers are done")
        .shutdown()
        .await
        .unwrap();
}

on_both_backends!(command_ids_are_recognised_beyond_what_the_account_remembers);
/// A deposit's and a withdrawal's command ids are recognised at any age: retried after more
/// commands of the same account than it remembers (each deposit, hold and release is one),
/// each gets its first answer and changes nothing; reused with another body, it is refused
/// and changes nothing either.
async fn command_ids_are_recognised_beyond_what_the_account_remembers(journal: Journal) {
    use tradefloor_actors::Error;
    use tradefloor_domain::account::COMMAND_IDS_REMEMBERED_MAX;
    use tradefloor_domain::{CommandId, Error as DomainError};

    let exchange = exchange(journal).await;
    let carol = || account("carol");
    let deposit_id = CommandId::new("d-1").unwrap();
    let withdrawal_id = CommandId::new("w-1").unwrap();
    let deposit = |amount| {
        exchange.deposit(
            carol(),
            asset("USD"),
            Amount(amount),
            Some(deposit_id),
            None,
        )
    };
    let withdraw = |amount| {
        exchange.withdraw(
            carol(),
            asset("USD"),
            Amount(amount),
            Some(withdrawal_id),
            None,
        )
    };
    let first_deposit = deposit(500).await.unwrap();
    let first_withdrawal = withdraw(100).await.unwrap();
    // More commands than the account remembers: deposits, and orders (a hold and a release
    // each, for those that end).
    for _ in 0..COMMAND_IDS_REMEMBERED_MAX {
        exchange
            .deposit(carol(), asset("USD"), Amount(1), None, None)
            .await
            .unwrap();
    }
    for _ in 0..20 {
        let order = exchange
            .place_order(limit("carol", Side::Buy, 1, 1))
            .await
            .unwrap();
        exchange.cancel_order(order.order_id).await.unwrap();
        settled(&exchange, order.order_id).await;
    }
    let before = balance(&exchange, "carol", "USD").await;
    assert_eq!(before, (500 - 100 + COMMAND_IDS_REMEMBERED_MAX as u64, 0));

    assert_eq!(
        withdraw(100).await.unwrap(),
        first_withdrawal,
        "the first answer"
    );
    assert_eq!(
        deposit(500).await.unwrap(),
        first_deposit,
        "the first answer"
    );
    for reused in [withdraw(7).await, deposit(7).await] {
        assert!(
            matches!(reused, Err(Error::Rejected(DomainError::CommandIdReused))),
            "{reused:?}"
        );
    }
    assert_eq!(
        balance(&exchange, "carol", "USD").await,
        before,
        "nothing changed"
    );
    // A new id after all that is applied once.
    let fresh = CommandId::new("w-2").unwrap();
    for _ in 0..2 {
        exchange
            .withdraw(carol(), asset("USD"), Amount(10), Some(fresh), None)
            .await
            .unwrap();
    }
    assert_eq!(balance(&exchange, "carol", "USD").await, (before.0 - 10, 0));
    // Stopped before the schema is dropped: a read model still writing would deadlock with
    // the DROP.
    exchange.shutdown().await.unwrap();
}
