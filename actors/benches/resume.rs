//! Whether a node's start depends on history: the time to start an [`Exchange`] (its regions,
//! read models and services, the resumption of its unfinished sagas and the sweep for
//! orphaned holds, all 256 shards of each region) on a journal holding `ORDERS` finished
//! orders, against the same start on an empty journal. For reference it also times one read
//! of the whole log, which is what resuming cost before the index of unfinished work (every
//! event since offset 0, for the sagas and again for the holds).
//!
//! `harness = false`: building the journal takes most of the run and is done once.
//!
//! ```sh
//! cargo bench -p tradefloor-actors --bench resume                  # 100 000 orders
//! ORDERS=1000000 cargo bench -p tradefloor-actors --bench resume   # the issue's figure
//! ```
//!
//! The orders are IOC buys on a book with nothing to sell: each is accepted, expires at once,
//! and its saga releases the hold and finishes (about 5 events per order). With
//! `RESTING_EVERY=n`, one order in `n` rests instead (a GTC buy below the market), so there is
//! unfinished work to resume (whose cost grows with it, as it should).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tradefloor_actors::trading::{Exchange, NewOrder, TradingConfig};
use tradefloor_domain::{
    AccountId, Amount, Asset, MarketSpec, OrderType, Price, Quantity, Side, Symbol, TimeInForce,
};
use tradefloor_persistence::{Database, Filter, Journal, JournalConfig};

/// Callers placing orders concurrently, each as an account of its own.
const CALLERS: usize = 64;
/// Starts timed per journal; the median is reported.
const STARTS: usize = 3;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn symbol() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

fn account(index: usize) -> AccountId {
    AccountId::new(&format!("trader-{index}")).unwrap()
}

fn market() -> MarketSpec {
    MarketSpec {
        symbol: symbol(),
        base: Asset::new("BTC").unwrap(),
        quote: Asset::new("USD").unwrap(),
        tick_size: Price(1),
        lot_size: Quantity(1),
        min_quantity: Quantity(1),
        max_quantity: Quantity(1_000),
        band_bps: 5_000,
        reference_price: Some(Price(100)),
    }
}

fn order(caller: usize, number: usize, resting_every: usize) -> NewOrder {
    let rests = resting_every > 0 && number % resting_every == resting_every - 1;
    NewOrder {
        order_id: None,
        account_id: account(caller),
        symbol: symbol(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(Price(if rests { 60 } else { 100 })),
        quantity: Quantity(1),
        time_in_force: if rests {
            TimeInForce::Gtc
        } else {
            TimeInForce::Ioc
        },
        post_only: false,
    }
}

async fn open(path: &std::path::Path) -> Journal {
    let config = JournalConfig::default();
    let url = format!("sqlite:{}", path.display());
    let database = Database::connect(&url, &config).await.unwrap();
    Journal::open(database, config).await.unwrap()
}

/// Fills the journal with `orders` orders, all finished but one in `resting_every` (if not 0).
async fn fill(path: &std::path::Path, orders: usize, resting_every: usize) {
    let exchange = Arc::new(
        Exchange::start(open(path).await, TradingConfig::default())
            .await
            .unwrap(),
    );
    exchange.list_market(market()).await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let exchange = exchange.clone();
        tasks.push(tokio::spawn(async move {
            let usd = Asset::new("USD").unwrap();
            let funds = Amount(1_000_000_000);
            exchange
                .deposit(account(caller), usd, funds, None, None)
                .await
                .unwrap();
            for number in (caller..orders).step_by(CALLERS) {
                let placed = exchange.place_order(order(caller, number, resting_every));
                placed.await.unwrap();
                if caller == 0 && number > 0 && number % 100_032 == 0 {
                    let seconds = started.elapsed().as_secs_f64();
                    eprintln!("about {number} orders placed, {seconds:.0} s");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    while !exchange.caught_up().await.unwrap() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "journal filled: {orders} orders in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Arc::into_inner(exchange).unwrap().shutdown().await.unwrap();
}

/// The median of [`STARTS`] starts of an exchange on the journal at `path`.
async fn start_time(path: &std::path::Path) -> Duration {
    let mut times = Vec::new();
    for _ in 0..STARTS {
        let journal = open(path).await;
        let started = Instant::now();
        let exchange = Exchange::start(journal, TradingConfig::default())
            .await
            .unwrap();
        times.push(started.elapsed());
        exchange.shutdown().await.unwrap();
    }
    times.sort();
    times[STARTS / 2]
}

/// One read of the whole log, page by page: what resuming used to cost.
async fn read_whole_log(path: &std::path::Path) -> (usize, Duration) {
    let journal = open(path).await;
    let started = Instant::now();
    let (mut events, mut after) = (0, 0);
    loop {
        let page = journal.read_all(after, 10_000, &Filter::All).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.global_offset;
        events += page.len();
    }
    (events, started.elapsed())
}

fn main() {
    let orders = env_count("ORDERS", 100_000);
    let resting_every = env_count("RESTING_EVERY", 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let directory = tempfile::tempdir().unwrap();
        let empty = directory.path().join("empty.db");
        let full = directory.path().join("full.db");
        // The empty journal gets its tables and market first, as the full one does.
        fill(&empty, 0, 0).await;
        fill(&full, orders, resting_every).await;
        let on_empty = start_time(&empty).await;
        let on_full = start_time(&full).await;
        let (events, whole_log) = read_whole_log(&full).await;
        println!();
        println!("| journal | start (median of {STARTS}) |");
        println!("|---|---|");
        println!("| empty | {:.0} ms |", on_empty.as_secs_f64() * 1e3);
        println!(
            "| {orders} orders, one in {resting_every} resting ({events} events) | {:.0} ms ({:.2} × empty) |",
            on_full.as_secs_f64() * 1e3,
            on_full.as_secs_f64() / on_empty.as_secs_f64()
        );
        println!(
            "one read of the whole log (what each of resume and the hold sweep did before): {:.0} ms",
            whole_log.as_secs_f64() * 1e3
        );
    });
}
