//! Local tell throughput and ask round trips through `ShardRegion`, each beside a plain
//! ractor actor (`cast`, `call`) measured in the same run, alternating, three rounds.
//!
//! `harness = false`: every figure is paired with its baseline in the same process and round,
//! and the persisted ask is a few hundred fsyncs, not something to sample for seconds.
//!
//! ```sh
//! cargo bench -p tradefloor-actors --bench messaging
//! ```
//!
//! - tell: `MESSAGES` commands that decide no events (a repeated command id: the entity
//!   answers from its remembered outcome, nothing written), spread over 256 entities, sent by
//!   one task; finished when an ask to every entity has come back (per-entity FIFO).
//!   Baseline: `cast` of the same count to one ractor actor, then one `call`.
//! - ask, no journal: one caller, one entity, the repeated command, one at a time.
//!   Baseline: ractor `call` round trip.
//! - ask, persisted: one caller, one entity, a new deposit each (one SQLite append, WAL,
//!   `synchronous=FULL`, through the group-commit writer). Baseline: `Journal::append` of one
//!   64-byte event, one at a time, on the same database.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tradefloor_actors::{EntityConfig, Error, ShardRegion};
use tradefloor_domain::account::{Account, AccountCommand};
use tradefloor_domain::{Amount, Asset, CommandId, Timestamp};
use tradefloor_persistence::{AppendRequest, Database, Journal, JournalConfig, NewEvent};

const DEADLINE: Duration = Duration::from_secs(30);
const ROUNDS: usize = 3;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

enum CounterMessage {
    Add(u64),
    Get(RpcReplyPort<u64>),
}

impl ractor::Message for CounterMessage {}

struct Counter;

impl Actor for Counter {
    type Msg = CounterMessage;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<CounterMessage>,
        _arguments: (),
    ) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<CounterMessage>,
        message: CounterMessage,
        state: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CounterMessage::Add(amount) => *state += amount,
            CounterMessage::Get(reply) => {
                let _ = reply.send(*state);
            }
        }
        Ok(())
    }
}

fn deposit(id: &str, amount: u64) -> AccountCommand {
    AccountCommand::Deposit {
        command_id: CommandId::new(id).unwrap(),
        asset: Asset::new("USD").unwrap(),
        amount: Amount(amount),
        effective_at: None,
        at: Timestamp(1),
    }
}

/// Mean, median and 99th percentile of per-operation times, in microseconds.
#[derive(Clone, Copy)]
struct Latency {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let micros = |duration: Duration| duration.as_nanos() as f64 / 1_000.0;
    let total: Duration = samples.iter().sum();
    Latency {
        mean_us: micros(total) / samples.len() as f64,
        p50_us: micros(samples[samples.len() / 2]),
        p99_us: micros(samples[samples.len() * 99 / 100]),
    }
}

async fn ractor_cast_throughput(counter: &ActorRef<CounterMessage>, messages: usize) -> f64 {
    let before = ractor::call!(counter, CounterMessage::Get).unwrap();
    let started = Instant::now();
    for _ in 0..messages {
        counter.cast(CounterMessage::Add(1)).unwrap();
    }
    let after = ractor::call!(counter, CounterMessage::Get).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(after - before, messages as u64);
    messages as f64 / elapsed.as_secs_f64()
}

async fn region_tell_throughput(
    region: &ShardRegion<Account>,
    entities: &[String],
    messages: usize,
) -> (f64, u64) {
    let mut overloaded = 0u64;
    let started = Instant::now();
    for index in 0..messages {
        let entity_id = &entities[index % entities.len()];
        loop {
            match region.tell(entity_id, deposit("d1", 1)) {
                Ok(()) => break,
                Err(Error::Overloaded { .. }) => {
                    overloaded += 1;
                    tokio::task::yield_now().await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    for entity_id in entities {
        region
            .ask(entity_id, deposit("d1", 1), DEADLINE)
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    (
        (messages + entities.len()) as f64 / elapsed.as_secs_f64(),
        overloaded,
    )
}

async fn ractor_call_latency(counter: &ActorRef<CounterMessage>, calls: usize) -> Latency {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        ractor::call!(counter, CounterMessage::Get).unwrap();
        samples.push(started.elapsed());
    }
    latency(samples)
}

async fn region_ask_latency(region: &ShardRegion<Account>, asks: usize) -> Latency {
    let mut samples = Vec::with_capacity(asks);
    for _ in 0..asks {
        let started = Instant::now();
        region
            .ask("latency", deposit("d1", 1), DEADLINE)
            .await
            .unwrap();
        samples.push(started.elapsed());
    }
    latency(samples)
}

async fn region_persisted_ask_latency(
    region: &ShardRegion<Account>,
    round: usize,
    asks: usize,
) -> Latency {
    let mut samples = Vec::with_capacity(asks);
    for index in 0..asks {
        let command = deposit(&format!("p{round}-{index}"), 1);
        let started = Instant::now();
        region.ask("persisted", command, DEADLINE).await.unwrap();
        samples.push(started.elapsed());
    }
    latency(samples)
}

async fn journal_append_latency(journal: &Journal, round: usize, appends: usize) -> Latency {
    let stream = format!("raw|round-{round}");
    let mut samples = Vec::with_capacity(appends);
    for index in 0..appends {
        let request = AppendRequest {
            stream: stream.clone(),
            kind: "raw".to_owned(),
            expected_sequence: index as u64,
            events: vec![NewEvent {
                name: "Raw".to_owned(),
                schema_version: 1,
                payload: vec![7; 64],
                tags: Vec::new(),
                effective_at: None,
            }],
            fence: None,
        };
        let started = Instant::now();
        journal.append(request).await.unwrap();
        samples.push(started.elapsed());
    }
    latency(samples)
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_latency(values: &[Latency]) -> Latency {
    Latency {
        mean_us: median(values.iter().map(|value| value.mean_us).collect()),
        p50_us: median(values.iter().map(|value| value.p50_us).collect()),
        p99_us: median(values.iter().map(|value| value.p99_us).collect()),
    }
}

fn main() {
    let messages = env_count("MESSAGES", 1_000_000);
    let asks = env_count("ASKS", 50_000);
    let persisted_asks = env_count("PERSISTED_ASKS", 300);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", directory.path().join("journal.db").display());
        let journal_config = JournalConfig::default();
        let database = Database::connect(&url, &journal_config).await.unwrap();
        let journal = Journal::open(database, journal_config).await.unwrap();
        let config = EntityConfig {
            passivation_interval: Duration::from_secs(3_600),
            passivate_after: Duration::from_secs(3_600),
            ..EntityConfig::default()
        };
        let region = ShardRegion::<Account>::start("/bench/accounts", journal.clone(), config)
            .await
            .unwrap();
        let entities: Vec<String> = (0..256).map(|index| format!("acct-{index}")).collect();
        for entity_id in entities.iter().chain(["latency".to_owned()].iter()) {
            // The one write: later deliveries of `d1` are repeats that write nothing.
            region
                .ask(entity_id, deposit("d1", 1), DEADLINE)
                .await
                .unwrap();
        }
        let (counter, counter_join) = Actor::spawn(None, Counter, ()).await.unwrap();
        println!("load average before: {}", load_average());
        let (mut cast, mut tell, mut overloaded) = (Vec::new(), Vec::new(), 0);
        let (mut call, mut ask) = (Vec::new(), Vec::new());
        let (mut append, mut persisted) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            cast.push(ractor_cast_throughput(&counter, messages).await);
            let (rate, waits) = region_tell_throughput(&region, &entities, messages).await;
            tell.push(rate);
            overloaded += waits;
            call.push(ractor_call_latency(&counter, asks).await);
            ask.push(region_ask_latency(&region, asks).await);
            append.push(journal_append_latency(&journal, round, persisted_asks).await);
            persisted.push(region_persisted_ask_latency(&region, round, persisted_asks).await);
        }
        println!("load average after: {}", load_average());
        println!("tell: {overloaded} sends waited for a full shard inbox (all rounds)");
        for round in 0..ROUNDS {
            println!(
                "round {round}: cast {:.0}/s tell {:.0}/s | call {:.2} µs ask {:.2} µs | append {:.0} µs persisted ask {:.0} µs (means)",
                cast[round],
                tell[round],
                call[round].mean_us,
                ask[round].mean_us,
                append[round].mean_us,
                persisted[round].mean_us
            );
        }
        let (cast, tell) = (median(cast), median(tell));
        let (call, ask) = (median_latency(&call), median_latency(&ask));
        let (append, persisted) = (median_latency(&append), median_latency(&persisted));
        println!();
        println!("Medians of {ROUNDS} rounds:");
        println!();
        println!("| what | runtime | baseline | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| tell throughput, no journal ({messages} msgs) vs ractor cast | {:.0} msgs/s | {:.0} msgs/s | {:.3} |",
            tell,
            cast,
            tell / cast
        );
        let row = |name: &str, runtime: Latency, baseline: Latency| {
            println!(
                "| {name} | mean {:.2} µs, p50 {:.2}, p99 {:.2} | mean {:.2} µs, p50 {:.2}, p99 {:.2} | {:.2} (means) |",
                runtime.mean_us,
                runtime.p50_us,
                runtime.p99_us,
                baseline.mean_us,
                baseline.p50_us,
                baseline.p99_us,
                runtime.mean_us / baseline.mean_us
            );
        };
        row(
            &format!("ask round trip, no journal ({asks} asks) vs ractor call"),
            ask,
            call,
        );
        row(
            &format!(
                "ask round trip, persisted ({persisted_asks} asks) vs Journal::append"
            ),
            persisted,
            append,
        );
        row(
            "ask round trip, persisted vs ractor call",
            persisted,
            call,
        );
        counter.stop(None);
        let _ = counter_join.await;
        region.stop().await.unwrap();
    });
}
