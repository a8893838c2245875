//! The nemesis: three real nodes on PostgreSQL take deposits with command ids through every
//! node while a seeded schedule of faults hits them one at a time: SIGKILL and restart, SIGSTOP
//! past the failure timeout and SIGCONT (the node finds itself evicted and is restarted), and
//! the cluster link of the node behind a TCP proxy cut and healed (its heartbeats go to the
//! database, so a short cut fails the calls through the link without evicting it). Afterwards every deposit
//! sent is repeated with its command id until acknowledged, and the checker reads the API and
//! the journal: every deposit is in its account exactly once, and every stream had one writer
//! at a time (gap-free sequences, fence epochs never interleaved).
//!
//! CI runs a short schedule with a fixed seed. A longer run: `NEMESIS_SEED=<n>
//! NEMESIS_ROUNDS=<n> cargo test -p tradefloor-tests --test nemesis -- --nocapture`; the seed
//! is printed, so a failure can be replayed. Not yet in the schedule: orders and cancels,
//! withdrawals, PostgreSQL restarts, and comparing the read models with a rebuild.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tradefloor_tests::Http;
use tradefloor_tests::cluster::{CLUSTER_TIMEOUT, Cluster};
use tradefloor_tests::journal::assert_one_writer;
use tradefloor_tests::load::Ledger;

/// The node behind a proxy, whose cluster link the nemesis cuts.
const PROXIED: usize = 3;
/// Longer than the failure timeout (2 s): a paused node is declared down meanwhile.
const PAUSE: Duration = Duration::from_secs(5);

/// A small deterministic generator (xorshift64*), so a seed replays its schedule.
struct Schedule(u64);

impl Schedule {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// Each node's current HTTP address (a restarted node listens on a new port).
type Addresses = Arc<Mutex<Vec<String>>>;

fn urls_of(cluster: &Cluster) -> Vec<String> {
    (1..=cluster.len())
        .map(|number| cluster.node(number).url.clone())
        .collect()
}

/// Depositors cycling over the accounts and the nodes until `stop`; a failed deposit (the
/// node is down or paused) is recorded unacknowledged and retried after the run.
fn start_load(
    ledger: &Ledger,
    addresses: &Addresses,
    accounts: Vec<String>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|worker| {
            let (ledger, addresses, accounts, stop) = (
                ledger.clone(),
                addresses.clone(),
                accounts.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut round = worker;
                while !stop.load(Ordering::Relaxed) {
                    let url = {
                        let addresses = addresses.lock().unwrap_or_else(PoisonError::into_inner);
                        addresses[round % addresses.len()].clone()
                    };
                    let account = &accounts[round % accounts.len()];
                    let acknowledged = ledger
                        .deposit(&Http::new(&url, None), account, 1 + round as u64 % 9)
                        .await;
                    round += 1;
                    let pause = if acknowledged { 10 } else { 200 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect()
}

/// Waits (bounded) for node `number` to exit on its own, and restarts it if it did.
async fn restart_if_exited(cluster: &mut Cluster, number: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.node_mut(number).is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if cluster.node_mut(number).is_running() {
        eprintln!("nemesis: n{number} served on");
    } else {
        eprintln!("nemesis: n{number} left the cluster; restarted");
        cluster.restart(number).await;
    }
}

fn signal(cluster: &Cluster, number: usize, signal: &str) {
    let pid = cluster.node(number).pid().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// One fault on one node, then the node back in the cluster.
async fn strike(cluster: &mut Cluster, schedule: &mut Schedule) {
    let number = 1 + schedule.below(cluster.len() as u64) as usize;
    match schedule.below(3) {
        0 => {
            eprintln!("nemesis: SIGKILL n{number}, restart");
            cluster.kill(number).await;
            tokio::time::sleep(Duration::from_millis(500 + schedule.below(2_000))).await;
            cluster.restart(number).await;
        }
        1 => {
            eprintln!("nemesis: SIGSTOP n{number} for {PAUSE:?}, SIGCONT");
            signal(cluster, number, "-STOP");
            tokio::time::sleep(PAUSE).await;
            signal(cluster, number, "-CONT");
            restart_if_exited(cluster, number).await;
        }
        _ => {
            eprintln!("nemesis: cut n{PROXIED}'s cluster link for {PAUSE:?}, heal");
            cluster.proxy(PROXIED).cut().await;
            tokio::time::sleep(PAUSE).await;
            cluster.proxy(PROXIED).heal().await;
            restart_if_exited(cluster, PROXIED).await;
        }
    }
}

async fn nemesis(seed: u64, rounds: usize) {
    let Some(mut cluster) =
        Cluster::start_with_proxies(&format!("nemesis_{seed}"), 3, &[PROXIED]).await
    else {
        return;
    };
    eprintln!("nemesis: seed {seed}, {rounds} rounds (replay: NEMESIS_SEED={seed})");
    let layout = cluster.settled().await;
    let accounts: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .flat_map(|id| layout.entities_on(id, "nemesis", 4))
        .collect();
    let ledger = Ledger::new();
    let addresses: Addresses = Arc::new(Mutex::new(urls_of(&cluster)));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = start_load(&ledger, &addresses, accounts, &stop);
    let mut schedule = Schedule(seed | 1);
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(500 + schedule.below(1_500))).await;
        strike(&mut cluster, &mut schedule).await;
        *addresses.lock().unwrap_or_else(PoisonError::into_inner) = urls_of(&cluster);
        cluster.settled().await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a depositor does not panic");
    }
    let (sent, acknowledged) = ledger.counts();
    eprintln!("nemesis: {sent} deposits sent, {acknowledged} acknowledged during the faults");
    let survivor = cluster.http(1);
    tokio::time::timeout(CLUSTER_TIMEOUT, ledger.assert_all_present(&survivor))
        .await
        .expect("the ledger settles");
    assert_one_writer(&cluster.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_survive_kills_pauses_and_partitions() {
    let seed = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_261_206);
    let rounds = std::env::var("NEMESIS_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(4);
    nemesis(seed, rounds).await;
}
