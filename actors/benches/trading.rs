//! Orders per second through the [`Exchange`] facade with persistence, with p50/p99 latency of
//! each `place_order`, beside the in-memory matching-engine figure of the domain benchmark.
//!
//! `harness = false`: one run is one fixed workload (start an exchange on a fresh journal, fund
//! the accounts, place a fixed number of orders from many callers) measured once; criterion's
//! repeated sampling would need a fresh journal per sample.
//!
//! ```sh
//! cargo bench -p tradefloor-actors --bench trading
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p tradefloor-actors --bench trading
//! ORDERS=5000 ACCOUNTS=200 CALLERS=64 cargo bench -p tradefloor-actors --bench trading
//! ```
//!
//! The workload, on each backend (SQLite always: a fresh file journal, WAL, `synchronous=FULL`;
//! PostgreSQL when `DATABASE_URL` is set: a schema of its own, dropped afterwards):
//! - an [`Exchange`] with the default [`TradingConfig`], two markets listed (BTC-USD and
//!   ETH-USD, reference price 100, tick 1, lot 1);
//! - `ACCOUNTS` accounts, each funded with USD, BTC and ETH (deposits, not measured);
//! - a warm-up of `CALLERS` orders (not measured), then `ORDERS` GTC limit orders from
//!   `CALLERS` concurrent tasks: each order picks an account, a market and a side from a
//!   fixed-seed generator, a quantity of 1–5 and a price in 97–103 (buys and sells around the
//!   reference price, so most orders cross something resting on the other side);
//! - each `place_order` is timed from the call to its answer (the book accepted or rejected the
//!   order, i.e. the saga held the funds, submitted to the book and learned its answer);
//!   orders/s is `ORDERS` over the wall time of the measured phase.
//!
//! Settlement of the fills continues after `place_order` answers; the bench then waits for
//! the feed and the read models to catch up and reports that tail separately.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tradefloor_actors::trading::{Exchange, NewOrder, TradingConfig};
use tradefloor_domain::{
    AccountId, Amount, Asset, MarketSpec, OrderStatus, OrderType, Price, Quantity, Side, Symbol,
    TimeInForce,
};
use tradefloor_persistence::{Database, Journal, JournalConfig};

/// The domain benchmark's median (BENCHMARKS.md, "Matching engine"), orders/s.
const MATCHING_IN_MEMORY: f64 = 5_400_000.0;

const MARKETS: [(&str, &str); 2] = [("BTC-USD", "BTC"), ("ETH-USD", "ETH")];

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn asset(code: &str) -> Asset {
    Asset::new(code).unwrap()
}

fn account(index: usize) -> AccountId {
    AccountId::new(&format!("trader-{index}")).unwrap()
}

fn market(symbol: &str, base: &str) -> MarketSpec {
    MarketSpec {
        symbol: Symbol::new(symbol).unwrap(),
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

/// A fixed-seed generator (SplitMix64), so every run places the same orders.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn crossing_order(generator: &mut Generator, accounts: usize) -> NewOrder {
    let (symbol, _) = MARKETS[generator.below(MARKETS.len())];
    let side = if generator.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    };
    NewOrder {
        order_id: None,
        account_id: account(generator.below(accounts)),
        symbol: Symbol::new(symbol).unwrap(),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(97 + generator.below(7) as u64)),
        quantity: Quantity(1 + generator.below(5) as u64),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    }
}

#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    statuses: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
}

/// Places `count` orders from `callers` tasks; answers each order's latency and outcome.
async fn place(
    exchange: &Arc<Exchange>,
    count: usize,
    callers: usize,
    accounts: usize,
    seed: u64,
) -> Outcome {
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let exchange = exchange.clone();
        let share = count / callers + usize::from(caller < count % callers);
        tasks.push(tokio::spawn(async move {
            let mut generator = Generator(seed ^ (caller as u64).wrapping_mul(0x1000_0001));
            let mut outcome = Outcome::default();
            for _ in 0..share {
                let order = crossing_order(&mut generator, accounts);
                let started = Instant::now();
                let placed = exchange.place_order(order).await;
                outcome.latencies.push(started.elapsed());
                match placed {
                    Ok(view) => {
                        *outcome
                            .statuses
                            .entry(format!("{:?}", view.status))
                            .or_default() += 1;
                    }
                    Err(error) => {
                        let text = format!("{error}");
                        let kind = text.split(':').next().unwrap_or_default().to_owned();
                        *outcome.errors.entry(kind).or_default() += 1;
                    }
                }
            }
            outcome
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        let outcome = task.await.unwrap();
        total.latencies.extend(outcome.latencies);
        for (status, count) in outcome.statuses {
            *total.statuses.entry(status).or_default() += count;
        }
        for (error, count) in outcome.errors {
            *total.errors.entry(error).or_default() += count;
        }
    }
    total
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

async fn run(backend: &str, journal: Journal) {
    let orders = env_count("ORDERS", 5_000);
    let accounts = env_count("ACCOUNTS", 200);
    let callers = env_count("CALLERS", 64);
    println!("## {backend}");
    println!("load average at start: {}", load_average());
    let exchange = Arc::new(
        Exchange::start(journal, TradingConfig::default())
            .await
            .unwrap(),
    );
    for (symbol, base) in MARKETS {
        exchange.list_market(market(symbol, base)).await.unwrap();
    }
    let setup = Instant::now();
    let mut funding = Vec::new();
    for caller in 0..callers.min(accounts) {
        let exchange = exchange.clone();
        funding.push(tokio::spawn(async move {
            for index in (caller..accounts).step_by(callers) {
                for (code, amount) in [("USD", 100_000_000), ("BTC", 1_000_000), ("ETH", 1_000_000)]
                {
                    exchange
                        .deposit(account(index), asset(code), Amount(amount), None, None)
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in funding {
        task.await.unwrap();
    }
    println!(
        "funded {accounts} accounts (3 deposits each) in {:.2} s",
        setup.elapsed().as_secs_f64()
    );
    let warm_up = place(&exchange, callers, callers, accounts, 1).await;
    assert!(warm_up.errors.is_empty(), "warm-up: {:?}", warm_up.errors);

    let load_before = load_average();
    let started = Instant::now();
    let mut outcome = place(&exchange, orders, callers, accounts, 2).await;
    let elapsed = started.elapsed();
    let load_after = load_average();

    let settle = Instant::now();
    let deadline = settle + Duration::from_secs(60);
    while !exchange.caught_up().await.unwrap() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = exchange.caught_up().await.unwrap();
    let settle = settle.elapsed();

    outcome.latencies.sort();
    let rate = orders as f64 / elapsed.as_secs_f64();
    let p50 = percentile(&outcome.latencies, 0.50);
    let p99 = percentile(&outcome.latencies, 0.99);
    let max = *outcome.latencies.last().unwrap();
    let pending = outcome
        .statuses
        .get(&format!("{:?}", OrderStatus::Pending))
        .copied()
        .unwrap_or(0);
    println!(
        "{orders} orders, {accounts} accounts, {callers} callers, 2 markets: {:.2} s",
        elapsed.as_secs_f64()
    );
    println!("answers: {:?}", outcome.statuses);
    println!("errors: {:?}", outcome.errors);
    println!(
        "read models {} {:.2} s after the last answer",
        if caught_up {
            "caught up"
        } else {
            "still lagging"
        },
        settle.as_secs_f64()
    );
    println!("load average during: before {load_before}, after {load_after}");
    println!();
    println!(
        "| backend | orders/s | p50 | p99 | max | vs matching in memory (5.40 M/s) | load (before → after) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {backend} | {rate:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2e} (1 : {:.0}) | {load_before} → {load_after} |",
        milliseconds(p50),
        milliseconds(p99),
        milliseconds(max),
        rate / MATCHING_IN_MEMORY,
        MATCHING_IN_MEMORY / rate,
    );
    if pending > 0 {
        println!("note: {pending} orders answered still pending (placement_wait ran out first)");
    }
    println!();
    Arc::into_inner(exchange)
        .expect("every caller finished")
        .shutdown()
        .await
        .unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = JournalConfig::default();
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        let journal = Journal::open(Database::connect(&url, &config).await.unwrap(), config)
            .await
            .unwrap();
        run("SQLite (file, WAL, synchronous=FULL)", journal).await;

        match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let config = JournalConfig::default();
                let schema = format!("bench_trading_{}", std::process::id());
                let database = Database::connect_postgres(&url, Some(&schema), &config)
                    .await
                    .unwrap();
                let journal = Journal::open(database, config.clone()).await.unwrap();
                run("PostgreSQL", journal.clone()).await;
                journal.database().close().await;
                let admin = Database::connect(&url, &config).await.unwrap();
                if let Database::Postgres(pool) = &admin {
                    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                        .execute(pool)
                        .await
                        .unwrap();
                }
                admin.close().await;
            }
            Err(_) => println!("DATABASE_URL not set: PostgreSQL figures skipped"),
        }
    });
}
