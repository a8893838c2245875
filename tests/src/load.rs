//! A background load of deposits with command ids, and the ledger of what it sent: every
//! deposit is recorded before it is sent, and marked acknowledged when a node answered 200.
//! [`Ledger::settle`] repeats every unacknowledged one with its command id until a node
//! acknowledges it (a repeated command id is applied once), after which each account's
//! total must be exactly the ledger's sum.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use crate::Http;
use crate::cluster::CLUSTER_TIMEOUT;

/// The asset the load deposits.
pub const LOAD_ASSET: &str = "USD";

#[derive(Clone, Debug)]
struct Sent {
    account: String,
    amount: u64,
    command_id: String,
    acknowledged: bool,
}

/// Every deposit sent, and whether it was acknowledged.
#[derive(Clone, Default)]
pub struct Ledger {
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deposits `amount` of [`LOAD_ASSET`] into `account` through `http` under a new command
    /// id; whether it was acknowledged (200). Recorded either way.
    pub async fn deposit(&self, http: &Http, account: &str, amount: u64) -> bool {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let command_id = format!(
            "load-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let index = {
            let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
            sent.push(Sent {
                account: account.to_owned(),
                amount,
                command_id: command_id.clone(),
                acknowledged: false,
            });
            sent.len() - 1
        };
        let acknowledged = send(http, account, amount, &command_id).await;
        if acknowledged {
            self.sent.lock().unwrap_or_else(PoisonError::into_inner)[index].acknowledged = true;
        }
        acknowledged
    }

    /// How many deposits were sent and how many of them acknowledged.
    pub fn counts(&self) -> (usize, usize) {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let acknowledged = sent.iter().filter(|sent| sent.acknowledged).count();
        (sent.len(), acknowledged)
    }

    /// Repeats every unacknowledged deposit with its command id through `http` until it is
    /// acknowledged (for at most [`CLUSTER_TIMEOUT`] each); afterwards every deposit sent
    /// happened exactly once.
    pub async fn settle(&self, http: &Http) {
        let pending: Vec<(usize, Sent)> = self
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .enumerate()
            .filter(|(_, sent)| !sent.acknowledged)
            .collect();
        eprintln!("settling {} unacknowledged deposits", pending.len());
        for (index, deposit) in pending {
            let deadline = Instant::now() + CLUSTER_TIMEOUT;
            while !send(http, &deposit.account, deposit.amount, &deposit.command_id).await {
                assert!(
                    Instant::now() < deadline,
                    "deposit {} into {} is never acknowledged",
                    deposit.command_id,
                    deposit.account
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.sent.lock().unwrap_or_else(PoisonError::into_inner)[index].acknowledged = true;
        }
    }

    /// Σ amount per account over every acknowledged deposit (all of them after
    /// [`Ledger::settle`]).
    pub fn acknowledged_by_account(&self) -> BTreeMap<String, u64> {
        let mut sums = BTreeMap::new();
        for sent in self
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|sent| sent.acknowledged)
        {
            *sums.entry(sent.account.clone()).or_insert(0) += sent.amount;
        }
        sums
    }

    /// Settles the ledger through `http` and checks every account's [`LOAD_ASSET`] total,
    /// read through `http`, is exactly the sum of its deposits.
    pub async fn assert_all_present(&self, http: &Http) {
        self.settle(http).await;
        let expected = self.acknowledged_by_account();
        let mut actual = BTreeMap::new();
        for account in expected.keys() {
            let deadline = Instant::now() + CLUSTER_TIMEOUT;
            let total = loop {
                match http.try_get(&format!("/v1/accounts/{account}")).await {
                    Ok((200, body)) => break body["balances"][LOAD_ASSET]["total"].as_u64(),
                    reply => assert!(
                        Instant::now() < deadline,
                        "account {account} is not readable: {reply:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            actual.insert(account.clone(), total.unwrap_or(0));
        }
        let (sent, _) = self.counts();
        assert_eq!(
            actual, expected,
            "every deposit ({sent}) is in its account's total, once"
        );
        eprintln!(
            "all {sent} deposits into {} accounts present",
            expected.len()
        );
    }
}

async fn send(http: &Http, account: &str, amount: u64, command_id: &str) -> bool {
    let body = json!({"asset": LOAD_ASSET, "amount": amount, "command_id": command_id});
    matches!(
        http.try_call(
            crate::Method::POST,
            &format!("/v1/accounts/{account}/deposits"),
            Some(&body),
        )
        .await,
        Ok(reply) if reply.status == 200
    )
}

/// Workers depositing into `accounts` through their nodes until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    /// What the load sent.
    pub ledger: Ledger,
}

impl Load {
    /// One worker per client in `through`, each cycling over `accounts` with small pauses,
    /// recording into `ledger`.
    pub fn start(ledger: &Ledger, through: Vec<Http>, accounts: Vec<String>) -> Load {
        assert!(!accounts.is_empty(), "the load has accounts");
        let stop = Arc::new(AtomicBool::new(false));
        let accounts = Arc::new(accounts);
        let workers = through
            .into_iter()
            .enumerate()
            .map(|(worker, http)| {
                let stop = stop.clone();
                let accounts = accounts.clone();
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let mut round = worker;
                    while !stop.load(Ordering::Relaxed) {
                        let account = &accounts[round % accounts.len()];
                        let amount = 1 + (round as u64 % 9);
                        ledger.deposit(&http, account, amount).await;
                        round += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            workers,
            ledger: ledger.clone(),
        }
    }

    /// Stops the workers (each finishes the deposit it is sending) and prints the counts.
    pub async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("a load worker does not panic");
        }
        let (sent, acknowledged) = self.ledger.counts();
        eprintln!("load: {sent} deposits sent, {acknowledged} acknowledged");
        self.ledger
    }
}
