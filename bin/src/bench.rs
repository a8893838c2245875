//! `tradefloor bench`: a load generator against a running node.
//!
//! Setup lists the market (a market already listed is fine) and funds every account with
//! both assets. Then the order flow: limit orders of many accounts around a mid price, buys
//! and sells at prices that overlap so most of them trade, quantities small so balances
//! last. Order `index` is a pure function of the seed and the index ([`OrderFlow::order`]):
//! a run is reproducible however requests interleave, and generating one costs a few
//! multiplications, so the generator leaves the cores it shares with the node to the node.
//!
//! Two loops drive it. Closed loop: `--concurrency` requests in flight, each sent when one
//! is answered, so it measures what the node sustains. Open loop: `--rate` requests a second
//! on a fixed timetable whatever the answers, each latency measured from the time it was
//! due (not sent), so a stalled node shows as latency instead of as fewer requests
//! (coordinated omission); at most [`OPEN_LOOP_IN_FLIGHT_MAX`] are in flight, and requests
//! due beyond that are dropped and counted. `--baseline` runs the same loops against
//! `GET /health/live`: the machine's HTTP ceiling, to read the order numbers against.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::api;
use crate::cli::BenchArgs;
use crate::client::Client;
use crate::error::Error;

/// Requests the open loop lets be in flight at once; one due beyond this is dropped.
pub const OPEN_LOOP_IN_FLIGHT_MAX: usize = 4_096;
/// The middle of the order flow's prices, in quote units: the market's reference price.
pub const MID_PRICE: u64 = 10_000;
/// Prices spread this many ticks either side of the mid, so buys and sells overlap.
pub const PRICE_SPREAD_TICKS: u64 = 5;
/// The largest order quantity: small, so a deposit lasts many orders.
pub const ORDER_QUANTITY_MAX: u64 = 5;
/// The base asset each account gets: a thousand open orders of the largest quantity.
pub const BASE_DEPOSIT: u64 = 1_000 * ORDER_QUANTITY_MAX;
/// The quote asset each account gets: a thousand open buys at the highest price.
pub const QUOTE_DEPOSIT: u64 = 1_000 * ORDER_QUANTITY_MAX * (MID_PRICE + PRICE_SPREAD_TICKS);
/// The largest latency the histogram tells apart, in microseconds (longer ones count as it).
pub const LATENCY_MAX_MICROS: u64 = 60_000_000;
/// Significant decimal digits the histogram keeps.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

const _: () = assert!(PRICE_SPREAD_TICKS < MID_PRICE, "prices stay positive");
const _: () = assert!(ORDER_QUANTITY_MAX > 0, "orders have a quantity");

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> Result<(), Error> {
    let clients = args
        .node
        .iter()
        .map(|node| Client::new(node, args.token.as_deref(), args.ca.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = clients.first() else {
        return Err(Error::Config("--node names no node".to_owned()));
    };
    let flow = if args.baseline {
        None
    } else {
        let accounts = match &args.owned_by {
            None => OrderFlow::account_names(args.accounts, |_| true),
            Some(owner) => {
                let shards = first.shards().await?;
                let owners: Vec<&str> = shards
                    .shards
                    .iter()
                    .map(|shard| shard.owner.as_str())
                    .collect();
                if !owners.contains(&owner.as_str()) {
                    return Err(Error::Config(format!("{owner} owns no shard")));
                }
                OrderFlow::account_names(args.accounts, |account| {
                    let shard = tradefloor_actors::shard_of(account, shards.shard_count);
                    owners.get(shard as usize) == Some(&owner.as_str())
                })
            }
        };
        let flow = OrderFlow::with_accounts(args.seed, accounts, &args.symbol);
        setup(first, &flow, args.concurrency, args.seed).await?;
        Some(flow)
    };
    let fanout = match (&flow, args.stream_subscribers) {
        (Some(_), subscribers) if subscribers > 0 => {
            let fanout = crate::fanout::Fanout::start(first, &args.symbol, subscribers);
            // Let the streams open before the orders flow.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some(fanout)
        }
        _ => None,
    };
    let mut report = load(clients, flow, &args).await;
    if let Some(fanout) = fanout {
        report.stream = Some(fanout.finish().await);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report).expect("a report always serializes");
        crate::ctl::print(&text)
    } else {
        crate::ctl::print(&render_report(&report))
    }
}

/// The orders of a run: which accounts trade which market, from which seed.
pub struct OrderFlow {
    seed: u64,
    symbol: String,
    accounts: Vec<String>,
}

impl OrderFlow {
    /// The flow of `accounts` accounts (`bench-0`, `bench-1`, …) on `symbol`.
    pub fn new(seed: u64, accounts: u32, symbol: &str) -> Self {
        Self::with_accounts(seed, Self::account_names(accounts, |_| true), symbol)
    }

    /// The flow of these accounts on `symbol`.
    pub fn with_accounts(seed: u64, accounts: Vec<String>, symbol: &str) -> Self {
        assert!(!accounts.is_empty(), "the flow needs an account");
        Self {
            seed: mix(seed),
            symbol: symbol.to_owned(),
            accounts,
        }
    }

    /// The first `count` of `bench-0`, `bench-1`, … that `keep` keeps.
    pub fn account_names(count: u32, keep: impl Fn(&str) -> bool) -> Vec<String> {
        (0..)
            .map(|index| format!("bench-{index}"))
            .filter(|account| keep(account))
            .take(count as usize)
            .collect()
    }

    /// Request `index` of a deposits run: 1 unit of the quote asset into an account.
    pub fn deposit(&self, index: u64) -> (&str, api::TransferRequest) {
        let bits = mix(self.seed.wrapping_add(index.wrapping_mul(SPLITMIX_GAMMA)));
        let account = (bits % self.accounts.len() as u64) as usize;
        let quote = self
            .symbol
            .split_once('-')
            .map_or("USD", |(_, quote)| quote);
        let deposit = api::TransferRequest {
            asset: quote.to_owned(),
            amount: 1,
            command_id: None,
            effective_at: None,
        };
        (self.accounts[account].as_str(), deposit)
    }

    /// Order `index`: a GTC limit order of a random account and side, at a price within
    /// [`PRICE_SPREAD_TICKS`] of [`MID_PRICE`], for 1 to [`ORDER_QUANTITY_MAX`].
    pub fn order(&self, index: u64) -> api::OrderRequest {
        // SplitMix64: the seed advanced `index` steps, one multiply-xorshift away from random.
        let bits = mix(self.seed.wrapping_add(index.wrapping_mul(SPLITMIX_GAMMA)));
        let account = (bits % self.accounts.len() as u64) as usize;
        let side = if (bits >> 32) & 1 == 0 {
            api::Side::Buy
        } else {
            api::Side::Sell
        };
        let offset = (bits >> 33) % (2 * PRICE_SPREAD_TICKS + 1);
        let quantity = 1 + (bits >> 45) % ORDER_QUANTITY_MAX;
        api::OrderRequest {
            order_id: None,
            command_id: None,
            account_id: self.accounts[account].clone(),
            symbol: self.symbol.clone(),
            side,
            order_type: api::OrderType::Limit,
            price: Some(MID_PRICE - PRICE_SPREAD_TICKS + offset),
            quantity,
            time_in_force: api::TimeInForce::Gtc,
            post_only: false,
        }
    }
}

/// SplitMix64's increment (the golden ratio in 64 bits).
const SPLITMIX_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: every input bit flips about half the output bits.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(SPLITMIX_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Lists the market unless it is listed, then funds every account with both assets,
/// `concurrency` deposits at a time, with a progress bar.
async fn setup(
    client: &Client,
    flow: &OrderFlow,
    concurrency: u32,
    seed: u64,
) -> Result<(), Error> {
    let Some((base, quote)) = flow.symbol.split_once('-') else {
        return Err(Error::Config(format!(
            "--symbol {:?} is not BASE-QUOTE",
            flow.symbol
        )));
    };
    let market = api::MarketRequest {
        symbol: flow.symbol.clone(),
        base: base.to_owned(),
        quote: quote.to_owned(),
        tick_size: 1,
        lot_size: 1,
        min_quantity: None,
        max_quantity: None,
        band_bps: None,
        reference_price: Some(MID_PRICE),
    };
    match shed_retried(|| client.list_market(&market).status()).await {
        Err(Error::Api { code, .. }) if code == "market_already_listed" => {}
        answer => {
            answer?;
        }
    }
    let deposits: Vec<(&str, api::TransferRequest)> = flow
        .accounts
        .iter()
        .flat_map(|account| {
            [(base, BASE_DEPOSIT), (quote, QUOTE_DEPOSIT)].map(|(asset, amount)| {
                // An id, so a deposit retried after a timeout is not credited twice.
                let deposit = api::TransferRequest {
                    asset: asset.to_owned(),
                    amount,
                    command_id: Some(format!("bench-{seed}-{asset}")),
                    effective_at: None,
                };
                (account.as_str(), deposit)
            })
        })
        .collect();
    let bar = progress_bar(
        Some(deposits.len() as u64),
        "depositing {bar:40} {pos}/{len} ({per_sec})",
    );
    futures_util::stream::iter(deposits)
        .map(|(account, deposit)| async move {
            shed_retried(|| client.deposit(account, &deposit).status()).await
        })
        .buffer_unordered(concurrency as usize)
        .try_for_each(|_| {
            bar.inc(1);
            futures_util::future::ready(Ok(()))
        })
        .await?;
    bar.finish_and_clear();
    Ok(())
}

/// Setup calls the node sheds (429, 503) are tried this many times in all.
const SETUP_ATTEMPTS_MAX: u32 = 30;
/// The longest pause between two attempts of a setup call.
const SETUP_RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// `call`, again after a growing pause while the node sheds it: setup must finish before
/// the measured run, whatever the node's load.
async fn shed_retried<F, Fut>(mut call: F) -> Result<u16, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u16, Error>>,
{
    let mut pause = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(Error::Api {
                status: 429 | 503, ..
            }) if attempt < SETUP_ATTEMPTS_MAX => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(SETUP_RETRY_PAUSE_MAX);
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

fn progress_bar(length: Option<u64>, template: &str) -> ProgressBar {
    let bar = length.map_or_else(ProgressBar::no_length, ProgressBar::new);
    bar.with_style(ProgressStyle::with_template(template).expect("the template is valid"))
}

/// What one request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// A 4xx answer other than 429, by code: the node refused the request.
    Rejected(String),
    /// 429 or 503, by code: the node shed load, ran out its deadline or had a breaker open.
    Shed(String),
    /// Another 5xx answer, by code.
    ServerError(String),
    /// No answer: the connection failed or the request timed out.
    Transport,
}

impl Outcome {
    /// The outcome of a call's result.
    pub fn of(result: Result<u16, Error>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(Error::Api {
                status: 429 | 503,
                code,
                ..
            }) => Outcome::Shed(code),
            Err(Error::Api { status, code, .. }) if (400..500).contains(&status) => {
                Outcome::Rejected(code)
            }
            Err(Error::Api { code, .. }) => Outcome::ServerError(code),
            Err(_) => Outcome::Transport,
        }
    }
}

/// Counts of outcomes and the latencies of answered requests.
struct Tally {
    latency_micros: Histogram<u64>,
    ok: u64,
    rejected: BTreeMap<String, u64>,
    shed: BTreeMap<String, u64>,
    server_errors: BTreeMap<String, u64>,
    transport_errors: u64,
    dropped: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_micros: Histogram::new_with_bounds(
                1,
                LATENCY_MAX_MICROS,
                LATENCY_SIGNIFICANT_DIGITS,
            )
            .expect("the histogram's bounds are valid"),
            ok: 0,
            rejected: BTreeMap::new(),
            shed: BTreeMap::new(),
            server_errors: BTreeMap::new(),
            transport_errors: 0,
            dropped: 0,
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        let answered = match outcome {
            Outcome::Ok => {
                self.ok += 1;
                true
            }
            Outcome::Rejected(code) => {
                *self.rejected.entry(code).or_default() += 1;
                true
            }
            Outcome::Shed(code) => {
                *self.shed.entry(code).or_default() += 1;
                true
            }
            Outcome::ServerError(code) => {
                *self.server_errors.entry(code).or_default() += 1;
                true
            }
            Outcome::Transport => {
                self.transport_errors += 1;
                false
            }
        };
        if answered {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency_micros.saturating_record(micros.max(1));
        }
    }
}

/// What the load loops send: an order of the flow, or the liveness probe (`--baseline`).
struct Work {
    /// Request `i` goes to client `i mod len`.
    clients: Vec<Client>,
    flow: Option<OrderFlow>,
    /// Deposits rather than orders.
    deposits: bool,
    tally: Mutex<Tally>,
    progress: ProgressBar,
}

impl Work {
    /// Sends request `index` and records its outcome with the latency since `due`.
    async fn send(&self, index: u64, due: Instant) {
        let client = &self.clients[(index % self.clients.len() as u64) as usize];
        let result = match &self.flow {
            Some(flow) if self.deposits => {
                let (account, deposit) = flow.deposit(index);
                client.deposit(account, &deposit).status().await
            }
            Some(flow) => client.place_order(&flow.order(index)).status().await,
            None => client.live().status().await,
        };
        let outcome = Outcome::of(result);
        self.tally
            .lock()
            .expect("no thread panics holding the tally")
            .record(outcome, due.elapsed());
        self.progress.inc(1);
    }
}

/// When a run ends: after a number of requests, or at a deadline.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this many requests.
    After(u64),
    /// Once this instant has passed.
    At(Instant),
}

impl Stop {
    /// Whether request `index`, due at `due`, is part of the run.
    pub fn allows(self, index: u64, due: Instant) -> bool {
        match self {
            Stop::After(requests) => index < requests,
            Stop::At(deadline) => due < deadline,
        }
    }
}

/// Runs the load loop the flags ask for and reports it.
async fn load(clients: Vec<Client>, flow: Option<OrderFlow>, args: &BenchArgs) -> Report {
    let stop = match args.duration_seconds {
        Some(seconds) => Stop::At(Instant::now() + Duration::from_secs(seconds)),
        None => Stop::After(args.orders),
    };
    let progress = match stop {
        Stop::After(requests) => progress_bar(
            Some(requests),
            "{elapsed_precise} {bar:40} {pos}/{len} requests ({per_sec})",
        ),
        Stop::At(_) => progress_bar(None, "{elapsed_precise} {pos} requests ({per_sec})"),
    };
    let baseline = flow.is_none();
    let work = Arc::new(Work {
        clients,
        flow,
        deposits: args.deposits,
        tally: Mutex::new(Tally::new()),
        progress,
    });
    let started = Instant::now();
    match args.rate {
        Some(rate) => open_loop(&work, rate, stop).await,
        None => closed_loop(&work, args.concurrency, stop).await,
    }
    let elapsed = started.elapsed();
    work.progress.finish_and_clear();
    let tally = work
        .tally
        .lock()
        .expect("no thread panics holding the tally");
    Report::new(
        match (baseline, args.deposits) {
            (true, _) => "baseline",
            (false, true) => "deposits",
            (false, false) => "orders",
        },
        args.rate,
        args.concurrency,
        elapsed,
        &tally,
    )
}

/// `concurrency` workers, each sending its next request when the last is answered.
async fn closed_loop(work: &Arc<Work>, concurrency: u32, stop: Stop) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let work = Arc::clone(work);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let due = Instant::now();
                    if !stop.allows(index, due) {
                        break;
                    }
                    work.send(index, due).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a load worker does not panic");
    }
}

/// Requests at `rate` a second on a fixed timetable, whatever the answers; a request due
/// while [`OPEN_LOOP_IN_FLIGHT_MAX`] are in flight is dropped.
async fn open_loop(work: &Arc<Work>, rate: u64, stop: Stop) {
    assert!(rate > 0, "the rate is positive");
    let in_flight = Arc::new(Semaphore::new(OPEN_LOOP_IN_FLIGHT_MAX));
    let start = tokio::time::Instant::now();
    let mut index = 0u64;
    loop {
        // From the start, not from the last request, so rounding never drifts the timetable.
        let offset_nanos = u128::from(index) * 1_000_000_000 / u128::from(rate);
        let due = start + Duration::from_nanos(u64::try_from(offset_nanos).unwrap_or(u64::MAX));
        if !stop.allows(index, due.into_std()) {
            break;
        }
        tokio::time::sleep_until(due).await;
        match Arc::clone(&in_flight).try_acquire_owned() {
            Ok(permit) => {
                let work = Arc::clone(work);
                tokio::spawn(async move {
                    work.send(index, due.into_std()).await;
                    drop(permit);
                });
            }
            Err(_) => {
                work.tally
                    .lock()
                    .expect("no thread panics holding the tally")
                    .dropped += 1;
                work.progress.inc(1);
            }
        }
        index += 1;
    }
    // Every request in flight holds a permit: having them all back means all were answered.
    let permits = u32::try_from(OPEN_LOOP_IN_FLIGHT_MAX).expect("the bound fits a u32");
    let _all = in_flight
        .acquire_many(permits)
        .await
        .expect("the semaphore is never closed");
}

/// Latency percentiles of the answered requests, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// The slowest.
    pub max: u64,
    /// The mean.
    pub mean: f64,
}

impl Latency {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// `orders`, or `baseline` (`GET /health/live`).
    pub target: &'static str,
    /// `closed_loop` or `open_loop`.
    pub mode: &'static str,
    /// Closed loop: requests in flight.
    pub concurrency: Option<u32>,
    /// Open loop: requests a second offered.
    pub offered_rate: Option<u64>,
    /// Requests sent a second, from the first send to the last answer: what the node kept
    /// up with, to compare with the offered rate.
    pub achieved_rate: f64,
    /// From the first request to the last answer.
    pub elapsed_seconds: f64,
    /// Requests sent.
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers other than 429, by code.
    pub rejected: BTreeMap<String, u64>,
    /// 429 and 503 answers, by code.
    pub shed: BTreeMap<String, u64>,
    /// Other 5xx answers, by code.
    pub server_errors: BTreeMap<String, u64>,
    /// Requests without an answer (connection failures, timeouts).
    pub transport_errors: u64,
    /// Open loop: requests not sent because too many were in flight.
    pub dropped: u64,
    /// 2xx answers a second.
    pub ok_per_second: f64,
    /// Latency of the answered requests (open loop: from when each was due).
    pub latency_micros: Latency,
    /// What the stream subscribers received (`--stream-subscribers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::fanout::FanoutReport>,
}

impl Report {
    fn new(
        target: &'static str,
        rate: Option<u64>,
        concurrency: u32,
        elapsed: Duration,
        tally: &Tally,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let sent = tally.ok
            + tally.rejected.values().sum::<u64>()
            + tally.shed.values().sum::<u64>()
            + tally.server_errors.values().sum::<u64>()
            + tally.transport_errors;
        Self {
            target,
            mode: if rate.is_some() {
                "open_loop"
            } else {
                "closed_loop"
            },
            concurrency: rate.is_none().then_some(concurrency),
            offered_rate: rate,
            achieved_rate: sent as f64 / seconds,
            elapsed_seconds: elapsed.as_secs_f64(),
            sent,
            ok: tally.ok,
            rejected: tally.rejected.clone(),
            shed: tally.shed.clone(),
            server_errors: tally.server_errors.clone(),
            transport_errors: tally.transport_errors,
            dropped: tally.dropped,
            ok_per_second: tally.ok as f64 / seconds,
            latency_micros: Latency::of(&tally.latency_micros),
            stream: None,
        }
    }
}

/// The report for people.
pub fn render_report(report: &Report) -> String {
    let loop_ = match (report.concurrency, report.offered_rate) {
        (_, Some(rate)) => format!("open loop at {rate}/s"),
        (Some(concurrency), None) => format!("closed loop, {concurrency} in flight"),
        (None, None) => "closed loop".to_owned(),
    };
    let by_code = |codes: &BTreeMap<String, u64>| {
        codes
            .iter()
            .map(|(code, count)| format!("{code} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let latency = &report.latency_micros;
    let mut text = format!(
        "{} ({loop_}): {} requests in {:.2} s, {:.1}/s",
        report.target, report.sent, report.elapsed_seconds, report.achieved_rate
    );
    let lines = [
        ("ok", report.ok, format!("{:.1}/s", report.ok_per_second)),
        (
            "rejected",
            report.rejected.values().sum(),
            by_code(&report.rejected),
        ),
        ("shed", report.shed.values().sum(), by_code(&report.shed)),
        (
            "server errors",
            report.server_errors.values().sum(),
            by_code(&report.server_errors),
        ),
        (
            "transport errors",
            report.transport_errors,
            "no answer".to_owned(),
        ),
        (
            "dropped",
            report.dropped,
            "over the in-flight bound".to_owned(),
        ),
    ];
    for (name, count, detail) in lines {
        let line = format!("\n  {name:<17}{count:>10}  {detail}");
        text.push_str(line.trim_end());
    }
    write!(
        text,
        "\n  latency µs       p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.0}, {} answers)",
        latency.p50,
        latency.p90,
        latency.p99,
        latency.p99_9,
        latency.max,
        latency.mean,
        latency.count
    )
    .expect("writing to a string");
    if let Some(stream) = &report.stream {
        let delay = &stream.delay_micros;
        write!(
            text,
            "\n  stream           {} of {} subscribers: {} events ({:.0}/s), {} trades\n  \
             trade delay µs   p50 {}  p99 {}  p99.9 {}  max {}",
            stream.connected,
            stream.subscribers,
            stream.events,
            stream.events_per_second,
            stream.trades,
            delay.p50,
            delay.p99,
            delay.p99_9,
            delay.max
        )
        .expect("writing to a string");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_is_a_function_of_the_seed_and_crosses_around_the_mid() {
        let flow = OrderFlow::new(7, 20, "BENCH-USD");
        let again = OrderFlow::new(7, 20, "BENCH-USD");
        let other = OrderFlow::new(8, 20, "BENCH-USD");
        let orders: Vec<_> = (0..1_000).map(|index| flow.order(index)).collect();
        assert_eq!(
            orders,
            (0..1_000).map(|i| again.order(i)).collect::<Vec<_>>()
        );
        assert_ne!(
            orders,
            (0..1_000).map(|i| other.order(i)).collect::<Vec<_>>()
        );
        let prices = |side| {
            orders
                .iter()
                .filter(move |order| order.side == side)
                .map(|order| order.price.expect("limit orders have a price"))
        };
        let highest_buy = prices(api::Side::Buy).max().expect("some buys");
        let lowest_sell = prices(api::Side::Sell).min().expect("some sells");
        assert!(
            highest_buy > lowest_sell,
            "buys and sells overlap, so they trade"
        );
        for order in &orders {
            let price = order.price.expect("a limit price");
            assert!(price.abs_diff(MID_PRICE) <= PRICE_SPREAD_TICKS);
            assert!((1..=ORDER_QUANTITY_MAX).contains(&order.quantity));
        }
        let accounts: std::collections::BTreeSet<_> =
            orders.iter().map(|order| &order.account_id).collect();
        assert_eq!(accounts.len(), 20, "every account trades");
    }

    #[test]
    fn outcomes_are_classified_by_status() {
        let api = |status: u16, code: &str| {
            Err(Error::Api {
                status,
                code: code.to_owned(),
                message: String::new(),
            })
        };
        assert_eq!(Outcome::of(Ok(201)), Outcome::Ok);
        assert_eq!(
            Outcome::of(api(429, "too_many_requests")),
            Outcome::Shed("too_many_requests".to_owned())
        );
        assert_eq!(
            Outcome::of(api(503, "timeout")),
            Outcome::Shed("timeout".to_owned())
        );
        assert_eq!(
            Outcome::of(api(422, "insufficient_funds")),
            Outcome::Rejected("insufficient_funds".to_owned())
        );
        assert_eq!(
            Outcome::of(api(500, "internal")),
            Outcome::ServerError("internal".to_owned())
        );
        assert_eq!(
            Outcome::of(Err(Error::Http("refused".to_owned()))),
            Outcome::Transport
        );
    }

    #[test]
    fn a_run_stops_after_its_requests_or_at_its_deadline() {
        let now = Instant::now();
        assert!(Stop::After(2).allows(1, now));
        assert!(!Stop::After(2).allows(2, now));
        let deadline = now + Duration::from_secs(1);
        assert!(Stop::At(deadline).allows(u64::MAX, now));
        assert!(!Stop::At(deadline).allows(0, deadline));
    }

    #[test]
    fn the_report_counts_every_outcome_and_reads_percentiles() {
        let mut tally = Tally::new();
        for millis in 1..=100 {
            tally.record(Outcome::Ok, Duration::from_millis(millis));
        }
        tally.record(
            Outcome::Rejected("insufficient_funds".to_owned()),
            Duration::from_millis(1),
        );
        tally.record(
            Outcome::Shed("overloaded".to_owned()),
            Duration::from_millis(1),
        );
        tally.record(Outcome::Transport, Duration::from_secs(30));
        tally.dropped = 4;
        let report = Report::new("orders", None, 8, Duration::from_secs(2), &tally);
        assert_eq!(report.sent, 103);
        assert_eq!(report.ok, 100);
        assert_eq!(
            report.latency_micros.count, 102,
            "transport errors have no latency"
        );
        assert!(report.latency_micros.p50.abs_diff(50_000) < 1_000);
        assert!(report.latency_micros.max.abs_diff(100_000) < 1_000);
        assert!((report.ok_per_second - 50.0).abs() < 1e-9);
        let text = render_report(&report);
        assert!(text.starts_with("orders (closed loop, 8 in flight): 103 requests in 2.00 s"));
        assert!(text.contains("insufficient_funds 1"), "{text}");
        assert!(text.contains("dropped                   4"), "{text}");
    }
}
