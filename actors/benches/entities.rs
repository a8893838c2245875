//! Memory per idle active entity and activation time, beside plain ractor actors.
//!
//! `harness = false`: the measurement is one-shot (activate a million entities once, read the
//! process's resident memory before and after), which criterion's repeated sampling does not
//! fit: each sample would need a fresh process to measure memory honestly. Each part runs in a
//! child process of its own, so memory freed by one part cannot hide the next part's growth.
//!
//! ```sh
//! cargo bench -p tradefloor-actors --bench entities
//! ENTITIES=1000000 RECOVERED_ENTITIES=100000 RACTOR_ACTORS=100000 cargo bench -p tradefloor-actors --bench entities
//! ```
//!
//! Parts:
//! - `ractor`: spawn plain ractor actors one after another (each awaited), keep them idle.
//! - `new`: `ShardRegion::tell_new` a refused command (withdraw from an empty account) to each
//!   of `ENTITIES` accounts: activation without any I/O (the pure runtime cost: routing, the
//!   shard's inbox, the entity's cell, one decision, no reply).
//! - `recover`: `ShardRegion::ask` the same command from `RECOVERY_CALLERS` concurrent callers,
//!   each going through its share of `RECOVERED_ENTITIES` accounts one after another: each
//!   activation first recovers from the (empty) SQLite journal (one snapshot read, one stream
//!   read), so this includes I/O.
//! - `recover-burst`: `ShardRegion::tell` the same command to the same count of accounts from
//!   one task, no window: every shard gets its activations at once and runs
//!   `EntityConfig::recoveries_concurrent_max` recoveries at a time (before that bound existed,
//!   100 000 such tells started 100 000 recovery tasks and ran for minutes).

use std::process::Command;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tradefloor_actors::{EntityConfig, Error, ShardRegion};
use tradefloor_domain::account::{Account, AccountCommand};
use tradefloor_domain::{Amount, Asset, CommandId, Timestamp};
use tradefloor_persistence::{Database, Journal, JournalConfig};

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Idle;

impl Actor for Idle {
    type Msg = u64;
    type State = u64;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<u64>,
        _arguments: (),
    ) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        message: u64,
        state: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        *state += message;
        Ok(())
    }
}

/// One measured line: `RESULT part count bytes_per elapsed_ns_per`.
fn report(part: &str, count: usize, bytes: u64, elapsed: Duration) {
    println!(
        "RESULT {part} {count} {:.0} {:.0}",
        bytes as f64 / count as f64,
        elapsed.as_nanos() as f64 / count as f64
    );
}

async fn ractor_part(count: usize) {
    let mut actors = Vec::with_capacity(count);
    let before = resident_bytes();
    let started = Instant::now();
    for _ in 0..count {
        actors.push(Actor::spawn(None, Idle, ()).await.expect("spawn"));
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = resident_bytes();
    report("ractor", count, after.saturating_sub(before), elapsed);
    for (actor, _) in &actors {
        actor.stop(None);
    }
    for (_, join) in actors {
        let _ = join.await;
    }
}

fn refused_withdrawal() -> AccountCommand {
    AccountCommand::Withdraw {
        command_id: CommandId::new("w").unwrap(),
        asset: Asset::new("USD").unwrap(),
        amount: Amount(1),
        effective_at: None,
        at: Timestamp(1),
    }
}

async fn entities_part(part: &str, count: usize) {
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
    let region = ShardRegion::<Account>::start("/bench/accounts", journal, config)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = resident_bytes();
    let started = Instant::now();
    let mut overloaded = 0u64;
    if part == "recover" {
        let region = std::sync::Arc::new(region);
        let callers = env_count("RECOVERY_CALLERS", 256);
        let mut tasks = Vec::new();
        for caller in 0..callers {
            let region = region.clone();
            tasks.push(tokio::spawn(async move {
                for index in (caller..count).step_by(callers) {
                    let refused = region
                        .ask(
                            &format!("acct-{index}"),
                            refused_withdrawal(),
                            Duration::from_secs(600),
                        )
                        .await;
                    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let active: usize = region
            .stats()
            .await
            .iter()
            .map(|shard| shard.entities)
            .sum();
        assert_eq!(active, count);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = resident_bytes();
        report(part, count, after.saturating_sub(before), elapsed);
        region.stop().await.unwrap();
        return;
    }
    for index in 0..count {
        let entity_id = format!("acct-{index}");
        loop {
            let sent = if part == "new" {
                region.tell_new(&entity_id, refused_withdrawal())
            } else {
                region.tell(&entity_id, refused_withdrawal())
            };
            match sent {
                Ok(()) => break,
                Err(Error::Overloaded { .. }) => {
                    // A shard's inbox is full: let the shards catch up.
                    overloaded += 1;
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    loop {
        let stats = region.stats().await;
        let active: usize = stats.iter().map(|shard| shard.entities).sum();
        let busy: usize = stats
            .iter()
            .map(|shard| shard.queued + shard.recovering)
            .sum();
        if active == count && busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = resident_bytes();
    eprintln!("{part}: {overloaded} sends waited for a full shard inbox");
    report(part, count, after.saturating_sub(before), elapsed);
    region.stop().await.unwrap();
}

fn run_child(part: &str, count: usize) -> (f64, f64) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--part", part, "--count", &count.to_string()])
        .output()
        .expect("run the part in a child process");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "part {part} failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("RESULT"))
        .expect("a RESULT line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
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

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        arguments
            .iter()
            .position(|argument| argument == flag)
            .map(|at| arguments[at + 1].clone())
    };
    if let Some(part) = value_of("--part") {
        let count: usize = value_of("--count").unwrap().parse().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            match part.as_str() {
                "ractor" => ractor_part(count).await,
                "new" | "recover" | "recover-burst" => entities_part(&part, count).await,
                other => panic!("unknown part {other}"),
            }
        });
        return;
    }
    let entities = env_count("ENTITIES", 1_000_000);
    let recovered = env_count("RECOVERED_ENTITIES", 100_000);
    let ractor_actors = env_count("RACTOR_ACTORS", 100_000);
    println!("load average before: {}", load_average());
    let ractor = run_child("ractor", ractor_actors);
    let new = run_child("new", entities);
    let recover = run_child("recover", recovered);
    let burst = run_child("recover-burst", recovered);
    println!("load average after: {}", load_average());
    println!();
    println!("| what | count | memory per actor | time per activation (spawn) |");
    println!("|---|---|---|---|");
    let row = |name: &str, count: usize, (bytes, ns): (f64, f64)| {
        println!(
            "| {name} | {count} | {:.0} B ({:.2} KiB) | {:.2} µs |",
            bytes,
            bytes / 1024.0,
            ns / 1000.0
        );
    };
    row(
        "plain ractor actor, spawned and awaited",
        ractor_actors,
        ractor,
    );
    row("entity, tell_new (no I/O)", entities, new);
    row(
        "entity, ask with recovery from SQLite (256 callers)",
        recovered,
        recover,
    );
    row(
        "entity, tell with recovery from SQLite (one burst)",
        recovered,
        burst,
    );
    println!();
    println!(
        "entity / ractor: memory {:.3}, activation (no I/O) vs spawn {:.3}",
        new.0 / ractor.0,
        new.1 / ractor.1
    );
}
