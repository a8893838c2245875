//! The nemesis: three real nodes on PostgreSQL take deposits and withdrawals with command ids
//! through every node while a seeded schedule of faults hits them one at a time: SIGKILL and
//! restart, SIGSTOP past the failure timeout and SIGCONT (the node finds itself evicted and is
//! restarted), and the cluster link of the node behind a TCP proxy cut and healed (its
//! heartbeats go to the database, so a short cut fails the calls through the link without
//! evicting it). Afterwards every command that got no answer is repeated with its command id
//! until it gets one, and the checker reads the API and the journal: every account's total is
//! its deposits minus its applied withdrawals, each exactly once, and every stream had one
//! writer at a time (gap-free sequences, fence epochs never interleaved).
//!
//! CI runs a short schedule with a fixed seed. A longer run: `NEMESIS_SEED=<n>
//! NEMESIS_ROUNDS=<n> cargo test -p tradefloor-tests --test nemesis -- --nocapture`; the seed
//! is printed, so a failure can be replayed. Not yet in the schedule: orders and cancels,
//! PostgreSQL restarts, and comparing the read models with a rebuild.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use tradefloor_tests::cluster::{CLUSTER_TIMEOUT, Cluster};
use tradefloor_tests::journal::assert_one_writer;
use tradefloor_tests::load::LOAD_ASSET;
use tradefloor_tests::load::Ledger;
use tradefloor_tests::{Http, Method};

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

/// A withdrawal sent: `Some(true)` applied (200), `Some(false)` refused (422: not enough
/// funds), `None` unknown (no answer).
struct Withdrawal {
    account: String,
    amount: u64,
    command_id: String,
    applied: Option<bool>,
}

/// Every withdrawal sent, and what became of it.
#[derive(Clone, Default)]
struct Withdrawals(Arc<Mutex<Vec<Withdrawal>>>);

impl Withdrawals {
    /// Withdraws `amount` of USD from `account` through `url` under a new command id.
    async fn withdraw(&self, url: &str, account: &str, amount: u64) -> bool {
        let index = {
            let mut sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let command_id = format!("nemesis-withdrawal-{}", sent.len());
            sent.push(Withdrawal {
                account: account.to_owned(),
                amount,
                command_id,
                applied: None,
            });
            sent.len() - 1
        };
        self.send(url, index).await
    }

    /// Sends withdrawal `index` (again); whether it got an answer.
    async fn send(&self, url: &str, index: usize) -> bool {
        let (account, body) = {
            let sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let withdrawal = &sent[index];
            (
                withdrawal.account.clone(),
                serde_json::json!({"asset": LOAD_ASSET, "amount": withdrawal.amount,
                    "command_id": withdrawal.command_id}),
            )
        };
        let path = format!("/v1/accounts/{account}/withdrawals");
        let applied = match Http::new(url, None)
            .try_call(Method::POST, &path, Some(&body))
            .await
        {
            Ok(reply) if reply.status == 200 => Some(true),
            Ok(reply) if reply.status == 422 => Some(false),
            _ => None,
        };
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[index].applied = applied;
        applied.is_some()
    }

    /// Repeats every unanswered withdrawal with its command id through `url` until answered.
    async fn settle(&self, url: &str) {
        let pending: Vec<usize> = {
            let sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            (0..sent.len())
                .filter(|index| sent[*index].applied.is_none())
                .collect()
        };
        eprintln!("settling {} unanswered withdrawals", pending.len());
        for index in pending {
            let deadline = Instant::now() + CLUSTER_TIMEOUT;
            while !self.send(url, index).await {
                assert!(
                    Instant::now() < deadline,
                    "withdrawal {index} is never answered"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Σ amount per account over the applied withdrawals.
    fn applied_by_account(&self) -> BTreeMap<String, u64> {
        let mut sums = BTreeMap::new();
        for withdrawal in self.0.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            if withdrawal.applied == Some(true) {
                *sums.entry(withdrawal.account.clone()).or_insert(0) += withdrawal.amount;
            }
        }
        sums
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
    (ledger, withdrawals): (&Ledger, &Withdrawals),
    addresses: &Addresses,
    accounts: Vec<String>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|worker| {
            let (ledger, withdrawals, addresses, accounts, stop) = (
                ledger.clone(),
                withdrawals.clone(),
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
                    // Every account gets deposits and withdrawals (every fourth command), some
                    // of them more than it holds (refused).
                    let account = &accounts[(round / 3) % accounts.len()];
                    let acknowledged = if round % 4 == 3 {
                        withdrawals
                            .withdraw(&url, account, 1 + round as u64 % 13)
                            .await
                    } else {
                        ledger
                            .deposit(&Http::new(&url, None), account, 1 + round as u64 % 9)
                            .await
                    };
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
    let withdrawals = Withdrawals::default();
    let addresses: Addresses = Arc::new(Mutex::new(urls_of(&cluster)));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = start_load((&ledger, &withdrawals), &addresses, accounts, &stop);
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
    tokio::time::timeout(CLUSTER_TIMEOUT, ledger.settle(&survivor))
        .await
        .expect("the deposits settle");
    withdrawals.settle(&cluster.node(1).url).await;
    let withdrawn = withdrawals.applied_by_account();
    let mut expected = ledger.acknowledged_by_account();
    for (account, amount) in &withdrawn {
        let total = expected
            .get_mut(account)
            .expect("withdrawn after a deposit");
        *total = total
            .checked_sub(*amount)
            .expect("never more withdrawn than deposited");
    }
    let mut actual = BTreeMap::new();
    for account in expected.keys() {
        let (status, body) = survivor.get(&format!("/v1/accounts/{account}")).await;
        assert_eq!(status, 200, "{body}");
        let total = body["balances"][LOAD_ASSET]["total"].as_u64().unwrap_or(0);
        actual.insert(account.clone(), total);
    }
    assert_eq!(
        actual, expected,
        "every account holds its deposits minus its applied withdrawals, each once"
    );
    eprintln!(
        "nemesis: withdrawals applied into {} accounts, {} units; every total as the commands say",
        withdrawn.len(),
        withdrawn.values().sum::<u64>()
    );
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
