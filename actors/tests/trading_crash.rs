//! A randomized crash test of the trading application on a real SQLite journal.
//!
//! A seeded PRNG drives several rounds. Each round runs a fresh [`Exchange`] in its own tokio
//! runtime on the same journal file, fires a random burst of concurrent deposits,
//! withdrawals, orders (limit GTC, IOC, market) on two markets and cancels across ten
//! accounts, and at a random point drops the whole runtime without `shutdown`: every actor
//! and every in-flight request dies where it stands, as in a process crash. Every
//! acknowledged reply is recorded; the next round first retries, with the same command ids,
//! the deposits and withdrawals the crash left unanswered. The seed (`CRASH_SEED` to
//! override) fixes the operations and the crash points; the interleaving stays real.
//!
//! A last exchange then resumes, settles every saga, cancels what still rests and stops;
//! the journal must then show conservation of every asset, no hold left, every acknowledged
//! deposit, withdrawal and order present, every trade settled exactly once on each side, and
//! read models equal to a rebuild from offset 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tradefloor_actors::EntityConfig;
use tradefloor_actors::Persistent;
use tradefloor_actors::hosting::projection::ProjectionConfig;
use tradefloor_actors::trading::feed::FeedConfig;
use tradefloor_actors::trading::projections;
use tradefloor_actors::trading::state::load_state;
use tradefloor_actors::trading::{Exchange, NewOrder, TradingConfig};
use tradefloor_domain::account::{Account, AccountEvent};
use tradefloor_domain::book::{BookEvent, OrderBook};
use tradefloor_domain::saga::{OrderSaga, SagaConfig};
use tradefloor_domain::{
    AccountId, Aggregate, Amount, Asset, CommandId, MarketSpec, OrderId, OrderStatus, OrderType,
    Price, Quantity, Side, Symbol, TimeInForce, TradeId,
};
use tradefloor_persistence::{Database, Filter, Journal, JournalConfig, StoredEvent};

const SEED: u64 = 0x5EED_CAFE_F00D_0005;
const ROUNDS: u64 = 8;
const ACCOUNTS: usize = 10;
const WORKERS: usize = 4;
const SETTLE_WAIT: Duration = Duration::from_secs(120);

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

fn asset(code: &str) -> Asset {
    Asset::new(code).unwrap()
}

fn account(index: usize) -> AccountId {
    AccountId::new(&format!("acct{index}")).unwrap()
}

fn assets() -> [Asset; 3] {
    [asset("USD"), asset("BTC"), asset("ETH")]
}

fn symbols() -> [Symbol; 2] {
    [
        Symbol::new("BTC-USD").unwrap(),
        Symbol::new("ETH-USD").unwrap(),
    ]
}

fn market(symbol: Symbol, base: &str) -> MarketSpec {
    MarketSpec {
        symbol,
        base: asset(base),
        quote: asset("USD"),
        tick_size: Price(1),
        lot_size: Quantity(1),
        min_quantity: Quantity(1),
        max_quantity: Quantity(1_000),
        band_bps: 5_000,
        reference_price: Some(Price(100)),
    }
}

/// Each round gets its own actor path, as a restarted process would have its own actor
/// registry (the runtime's names are process-global).
fn config(round: u64) -> TradingConfig {
    TradingConfig {
        path: format!("/trading-{round}"),
        entities: EntityConfig {
            shard_count: 4,
            ..EntityConfig::default()
        },
        saga: SagaConfig {
            step_timeout_micros: 200_000,
            step_timeout_max_micros: 1_000_000,
            attempts_max: 8,
        },
        feed: FeedConfig {
            batch_events_max: 256,
            poll_interval: Duration::from_millis(20),
            batch_interval_min: Duration::from_millis(5),
        },
        projections: ProjectionConfig {
            batch_events_max: 256,
            poll_interval: Duration::from_millis(20),
            batch_interval_min: Duration::from_millis(5),
            ..ProjectionConfig::default()
        },
        placement_wait: Duration::from_secs(2),
        ..TradingConfig::default()
    }
}

async fn open_journal(url: &str) -> Journal {
    let config = JournalConfig {
        sqlite_synchronous_full: false,
        ..JournalConfig::default()
    };
    Journal::open(Database::connect(url, &config).await.unwrap(), config)
        .await
        .unwrap()
}

/// A balance movement asked for: `(account, asset, amount)`.
type Movement = (AccountId, Asset, u64);

/// What the clients were told, and what they asked for.
#[derive(Default)]
struct Record {
    /// Every deposit sent, by command id (acknowledged or not).
    deposits_sent: HashMap<String, Movement>,
    /// Deposits answered Ok.
    deposits_acked: BTreeSet<String>,
    /// Every withdrawal sent, by command id.
    withdrawals_sent: HashMap<String, Movement>,
    /// Withdrawals answered Ok.
    withdrawals_acked: BTreeSet<String>,
    /// Orders answered Ok by `place_order`.
    orders_acked: BTreeSet<OrderId>,
    /// Cancels answered Ok.
    cancels_acked: u64,
}

type Shared = Arc<Mutex<Record>>;

async fn worker(exchange: Arc<Exchange>, record: Shared, round: u64, index: usize, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut step: u64 = 0;
    loop {
        step += 1;
        let who = account(rng.below(ACCOUNTS as u64) as usize);
        let roll = rng.below(100);
        if roll < 8 {
            let asset = assets()[rng.below(3) as usize];
            let amount = if asset == assets()[0] {
                rng.range(100, 5_000)
            } else {
                rng.range(1, 20)
            };
            let id = format!("dep-{round}-{index}-{step}");
            record
                .lock()
                .unwrap()
                .deposits_sent
                .insert(id.clone(), (who, asset, amount));
            let command = Some(CommandId::new(&id).unwrap());
            if exchange
                .deposit(who, asset, Amount(amount), command, None)
                .await
                .is_ok()
            {
                record.lock().unwrap().deposits_acked.insert(id);
            }
        } else if roll < 14 {
            let asset = assets()[rng.below(3) as usize];
            let amount = if asset == assets()[0] {
                rng.range(100, 20_000)
            } else {
                rng.range(1, 40)
            };
            let id = format!("wd-{round}-{index}-{step}");
            record
                .lock()
                .unwrap()
                .withdrawals_sent
                .insert(id.clone(), (who, asset, amount));
            let command = Some(CommandId::new(&id).unwrap());
            if exchange
                .withdraw(who, asset, Amount(amount), command, None)
                .await
                .is_ok()
            {
                record.lock().unwrap().withdrawals_acked.insert(id);
            }
        } else if roll < 28 {
            let target = {
                let record = record.lock().unwrap();
                let count = record.orders_acked.len() as u64;
                (count > 0).then(|| {
                    *record
                        .orders_acked
                        .iter()
                        .nth(rng.below(count) as usize)
                        .unwrap()
                })
            };
            if let Some(order_id) = target
                && exchange.cancel_order(order_id).await.is_ok()
            {
                record.lock().unwrap().cancels_acked += 1;
            }
        } else {
            let symbol = symbols()[rng.below(2) as usize];
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let kind = rng.below(10);
            let (order_type, price, time_in_force) = match kind {
                0..=5 => (
                    OrderType::Limit,
                    Some(Price(rng.range(92, 108))),
                    TimeInForce::Gtc,
                ),
                6..=7 => (
                    OrderType::Limit,
                    Some(Price(rng.range(92, 108))),
                    TimeInForce::Ioc,
                ),
                _ => (
                    OrderType::Market,
                    (side == Side::Buy).then_some(Price(120)),
                    TimeInForce::Ioc,
                ),
            };
            let order_id = OrderId((round + 1) * 10_000_000 + index as u64 * 1_000_000 + step);
            let order = NewOrder {
                order_id: Some(order_id),
                account_id: who,
                symbol,
                side,
                order_type,
                price,
                quantity: Quantity(rng.range(1, 6)),
                time_in_force,
                post_only: false,
            };
            if exchange.place_order(order).await.is_ok() {
                record.lock().unwrap().orders_acked.insert(order_id);
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One round: start an exchange, load it, and crash it (drop the runtime) after `run`.
fn crash_round(url: &str, round: u64, record: &Shared, rng: &mut Rng) {
    let run = Duration::from_millis(rng.range(150, 900));
    let seeds: Vec<u64> = (0..WORKERS).map(|_| rng.next()).collect();
    let node = runtime();
    node.block_on(async {
        let exchange = Exchange::start(open_journal(url).await, config(round))
            .await
            .unwrap();
        if round == 0 {
            let [btc, eth] = symbols();
            exchange.list_market(market(btc, "BTC")).await.unwrap();
            exchange.list_market(market(eth, "ETH")).await.unwrap();
            for index in 0..ACCOUNTS {
                for (asset, amount) in assets().into_iter().zip([100_000, 200, 200]) {
                    let id = format!("seed-{index}-{asset}");
                    record
                        .lock()
                        .unwrap()
                        .deposits_sent
                        .insert(id.clone(), (account(index), asset, amount));
                    exchange
                        .deposit(
                            account(index),
                            asset,
                            Amount(amount),
                            Some(CommandId::new(&id).unwrap()),
                            None,
                        )
                        .await
                        .unwrap();
                    record.lock().unwrap().deposits_acked.insert(id);
                }
            }
        }
        // Clients retry what the last crash left unanswered, with the same command ids: a
        // retry must not apply twice (checked on the journal).
        let (deposits, withdrawals) = {
            let record = record.lock().unwrap();
            let unanswered = |sent: &HashMap<String, Movement>, acked: &BTreeSet<String>| {
                let mut list: Vec<(String, Movement)> = sent
                    .iter()
                    .filter(|(id, _)| !acked.contains(*id))
                    .map(|(id, movement)| (id.clone(), *movement))
                    .collect();
                list.sort_by(|a, b| a.0.cmp(&b.0));
                list
            };
            (
                unanswered(&record.deposits_sent, &record.deposits_acked),
                unanswered(&record.withdrawals_sent, &record.withdrawals_acked),
            )
        };
        for (id, (who, asset, amount)) in deposits {
            let command = Some(CommandId::new(&id).unwrap());
            if exchange
                .deposit(who, asset, Amount(amount), command, None)
                .await
                .is_ok()
            {
                record.lock().unwrap().deposits_acked.insert(id);
            }
        }
        for (id, (who, asset, amount)) in withdrawals {
            let command = Some(CommandId::new(&id).unwrap());
            if exchange
                .withdraw(who, asset, Amount(amount), command, None)
                .await
                .is_ok()
            {
                record.lock().unwrap().withdrawals_acked.insert(id);
            }
        }
        let exchange = Arc::new(exchange);
        for (index, seed) in seeds.into_iter().enumerate() {
            tokio::spawn(worker(exchange.clone(), record.clone(), round, index, seed));
        }
        tokio::time::sleep(run).await;
    });
    // The crash: every task of the node (workers, actors, projections) dies mid-flight.
    drop(node);
    // Whatever the crash interrupted, each account's journal folds to a consistent state.
    runtime().block_on(async {
        let journal = open_journal(url).await;
        for index in 0..ACCOUNTS {
            let (state, _) = load_state::<Account>(&journal, account(index).as_str())
                .await
                .unwrap();
            state
                .check_invariants()
                .unwrap_or_else(|error| panic!("after crash {round}, acct{index}: {error}"));
        }
    });
}

/// Every event of the journal, in order.
async fn all_events(journal: &Journal) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |event| event.global_offset);
        let page = journal
            .read_all(after, journal.config().read_rows_max, &Filter::All)
            .await
            .unwrap();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

fn entity_id(event: &StoredEvent) -> &str {
    event.stream.split_once('|').unwrap().1
}

fn saga_ids(events: &[StoredEvent]) -> BTreeSet<OrderId> {
    events
        .iter()
        .filter(|event| event.kind == OrderSaga::KIND)
        .map(|event| OrderId(entity_id(event).parse().unwrap()))
        .collect()
}

/// Resumes on a last exchange, waits for every saga to settle, cancels what rests, waits for
/// everything to finish and the read models to catch up; answers the live read models.
async fn settle(url: &str) -> BTreeMap<String, Vec<Vec<projections::sql::SqlValue>>> {
    let exchange = Exchange::start(open_journal(url).await, config(ROUNDS))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut cancelled = BTreeSet::new();
    loop {
        let ids = saga_ids(&all_events(exchange.journal()).await);
        let mut busy = Vec::new();
        for order_id in ids {
            let view = exchange.order(order_id).await.unwrap();
            if view.finished {
                continue;
            }
            if view.stalled {
                // On a loaded machine a step can exhaust its retries; an operator resumes it.
                exchange.retry_order(order_id).await.unwrap();
            }
            if !view.status.is_final()
                && view.status != OrderStatus::Pending
                && view.step.is_none()
                && cancelled.insert(order_id)
            {
                exchange.cancel_order(order_id).await.unwrap();
            }
            busy.push(view);
        }
        if busy.is_empty() && exchange.caught_up().await.unwrap() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sagas never settled: {busy:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = projections::dump(exchange.journal().database())
        .await
        .unwrap();
    exchange.shutdown().await.unwrap();
    live
}

async fn check(
    url: &str,
    record: &Record,
    live: BTreeMap<String, Vec<Vec<projections::sql::SqlValue>>>,
) {
    let journal = open_journal(url).await;
    let events = all_events(&journal).await;
    let account_codec = <Account as Persistent>::codec();
    let book_codec = <OrderBook as Persistent>::codec();

    // Conservation: the accounts' totals are what the journal's deposits and withdrawals
    // say; every acknowledged movement is there, and nothing that was never asked for.
    let mut expected: BTreeMap<Asset, i128> = BTreeMap::new();
    let mut deposits_in_journal = BTreeSet::new();
    let mut withdrawals_in_journal = BTreeSet::new();
    let mut settled: HashMap<(OrderId, TradeId), (AccountId, u32)> = HashMap::new();
    let mut trades = Vec::new();
    for event in &events {
        if event.kind == Account::KIND {
            let owner = AccountId::new(entity_id(event)).unwrap();
            match account_codec.decode(event).unwrap() {
                AccountEvent::Deposited {
                    command,
                    asset,
                    amount,
                    ..
                } => {
                    let id = command.id.to_string();
                    assert_eq!(
                        record.deposits_sent.get(&id),
                        Some(&(owner, asset, amount.get())),
                        "deposit {id} in the journal"
                    );
                    assert!(deposits_in_journal.insert(id), "a deposit applied twice");
                    *expected.entry(asset).or_default() += i128::from(amount.get());
                }
                AccountEvent::Withdrawn {
                    command,
                    asset,
                    amount,
                    ..
                } => {
                    let id = command.id.to_string();
                    assert_eq!(
                        record.withdrawals_sent.get(&id),
                        Some(&(owner, asset, amount.get())),
                        "withdrawal {id} in the journal"
                    );
                    assert!(
                        withdrawals_in_journal.insert(id),
                        "a withdrawal applied twice"
                    );
                    *expected.entry(asset).or_default() -= i128::from(amount.get());
                }
                AccountEvent::TradeSettled {
                    order_id, trade_id, ..
                } => {
                    let entry = settled.entry((order_id, trade_id)).or_insert((owner, 0));
                    assert_eq!(entry.0, owner, "{order_id} settled on two accounts");
                    entry.1 += 1;
                }
                _ => {}
            }
        } else if event.kind == OrderBook::KIND
            && let BookEvent::Traded(trade) = book_codec.decode(event).unwrap()
        {
            trades.push((entity_id(event).to_owned(), trade));
        }
    }
    for id in &record.deposits_acked {
        assert!(deposits_in_journal.contains(id), "acked deposit {id} lost");
    }
    for id in &record.withdrawals_acked {
        assert!(
            withdrawals_in_journal.contains(id),
            "acked withdrawal {id} lost"
        );
    }

    let mut totals: BTreeMap<Asset, i128> = BTreeMap::new();
    for index in 0..ACCOUNTS {
        let (state, _) = load_state::<Account>(&journal, account(index).as_str())
            .await
            .unwrap();
        state
            .check_invariants()
            .unwrap_or_else(|error| panic!("acct{index}: {error}"));
        assert!(
            state.holds().is_empty(),
            "acct{index} keeps holds after every order finished: {:?}",
            state.holds()
        );
        for (asset, balance) in state.balances() {
            assert_eq!(balance.held, Amount(0), "acct{index} {asset} still held");
            *totals.entry(*asset).or_default() += i128::from(balance.total.get());
        }
    }
    expected.retain(|_, amount| *amount != 0);
    totals.retain(|_, amount| *amount != 0);
    assert_eq!(totals, expected, "conservation of every asset");

    // Every acknowledged order exists and is final.
    let sagas = saga_ids(&events);
    for order_id in &record.orders_acked {
        assert!(sagas.contains(order_id), "acked order {order_id} lost");
    }
    for order_id in &sagas {
        let (saga, sequence) = load_state::<OrderSaga>(&journal, &order_id.to_string())
            .await
            .unwrap();
        assert!(sequence > 0);
        let view = saga.view();
        assert!(view.finished && view.status.is_final(), "{view:?}");
        assert!(view.fills.iter().all(|fill| fill.settled), "{view:?}");
    }

    // Every trade settles exactly once on each side, and nothing else settles.
    let mut seen = BTreeSet::new();
    for (symbol, trade) in &trades {
        assert!(
            seen.insert((symbol, trade.trade_id)),
            "trade {symbol} {:?} twice",
            trade.trade_id
        );
        for (order_id, owner) in [
            (trade.maker_order_id, trade.maker_account_id),
            (trade.taker_order_id, trade.taker_account_id),
        ] {
            assert_eq!(
                settled.remove(&(order_id, trade.trade_id)),
                Some((owner, 1)),
                "trade {:?} of order {order_id} settled once on {owner}",
                trade.trade_id
            );
        }
    }
    assert!(settled.is_empty(), "settlements of no trade: {settled:?}");

    // The read models equal a rebuild from the journal.
    let config = config(ROUNDS);
    projections::rebuild_all(
        &journal,
        &config.projections,
        config.candle_watermark_micros,
    )
    .await
    .unwrap();
    let rebuilt = projections::dump(journal.database()).await.unwrap();
    assert_eq!(live, rebuilt, "read models differ from a rebuild");
    eprintln!(
        "crash test: {} events, {} trades, {} sagas, {} orders acked, {} deposits acked, {} \
         withdrawals acked, {} cancels acked",
        events.len(),
        trades.len(),
        sagas.len(),
        record.orders_acked.len(),
        record.deposits_acked.len(),
        record.withdrawals_acked.len(),
        record.cancels_acked,
    );
    assert!(!trades.is_empty(), "the test traded nothing");
}

#[test]
fn random_crashes_lose_nothing_and_settle_every_trade_once() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(SEED);
    eprintln!("crash test seed {seed}");
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let record: Shared = Arc::default();
    let mut rng = Rng(seed | 1);
    for round in 0..ROUNDS {
        crash_round(&url, round, &record, &mut rng);
    }
    let node = runtime();
    let live = node.block_on(settle(&url));
    let record = record.lock().unwrap();
    node.block_on(check(&url, &record, live));
}
