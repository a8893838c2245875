//! The nemesis: three real nodes on PostgreSQL take deposits, withdrawals, orders and cancels
//! with command ids through every node while a seeded schedule of faults hits them one at a
//! time: SIGKILL and restart, SIGSTOP past the failure timeout and SIGCONT (the node finds
//! itself evicted and is restarted), PostgreSQL stopped for up to three seconds and started
//! again (`pg_ctlcluster`: the machine's own server, which CI runs too), and the cluster link
//! of the node behind a TCP proxy cut and healed (its heartbeats go to the database, so a
//! short cut fails the calls through the link without evicting it). Afterwards every command that got no answer is repeated with its
//! command id until it gets one, every order still open is cancelled, and the checker reads
//! the API and the journal: every placed order is found by its id, ended, its fills settled;
//! every trade has exactly one buy leg and one sell leg; every account's USD and BTC are its
//! deposits, minus its applied withdrawals, plus and minus its fills, each exactly once; no
//! hold outlives its order; every stream had one writer at a time (gap-free sequences, fence
//! epochs never interleaved); and the read models, caught up, equal a rebuild of them from
//! offset 0.
//!
//! CI runs a short schedule with a fixed seed (one of each fault: a cut, a pause, a database
//! restart, a kill). A longer run: `bin/scripts/nemesis.sh [rounds]
//! [seed]`, or `NEMESIS_SEED=<n> NEMESIS_ROUNDS=<n> cargo test -p tradefloor-tests --test
//! nemesis -- --nocapture`; the seed is printed, so a failure can be replayed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use tradefloor_actors::trading::{TradingConfig, caught_up, projections};
use tradefloor_persistence::{Database, Journal, JournalConfig};
use tradefloor_tests::cluster::{CLUSTER_TIMEOUT, Cluster};
use tradefloor_tests::journal::assert_one_writer;
use tradefloor_tests::load::LOAD_ASSET;
use tradefloor_tests::load::Ledger;
use tradefloor_tests::{Http, Method, SYMBOL, deposit, eventually, list_market};

/// The node behind a proxy, whose cluster link the nemesis cuts.
const PROXIED: usize = 3;
/// Longer than the failure timeout (2 s): a paused node is declared down meanwhile.
const PAUSE: Duration = Duration::from_secs(5);
/// The BTC the seller starts with (it asks 1 BTC at a time).
const SELLER_BTC: u64 = 1_000_000;
/// How long a node resumed after a fault may take to learn it was evicted and exit.
const EXIT_WAIT: Duration = Duration::from_secs(30);

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
            let what = format!("withdrawal {index} answered");
            eventually(&what, CLUSTER_TIMEOUT, || async {
                self.send(url, index).await.then_some(())
            })
            .await;
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

/// An order placed under a command id, and what became of it.
struct Order {
    account: String,
    command_id: String,
    side: &'static str,
    price: u64,
    /// Its id once an answer named it (201 or 202).
    order_id: Option<u64>,
    /// Whether the placement was answered at all (a 422 refusal names no id).
    answered: bool,
}

/// Every order placed.
#[derive(Clone, Default)]
struct Orders(Arc<Mutex<Vec<Order>>>);

impl Orders {
    /// Orders 1 BTC (`side` `buy` or `sell`) at `price` on `account` under a new command id;
    /// whether answered.
    async fn place(&self, url: &str, account: &str, side: &'static str, price: u64) -> bool {
        let index = {
            let mut placed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let command_id = format!("nemesis-order-{}", placed.len());
            placed.push(Order {
                account: account.to_owned(),
                command_id,
                side,
                price,
                order_id: None,
                answered: false,
            });
            placed.len() - 1
        };
        self.send(url, index).await
    }

    /// Sends placement `index` (again); whether it got an answer.
    async fn send(&self, url: &str, index: usize) -> bool {
        let body = {
            let placed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let order = &placed[index];
            serde_json::json!({"account_id": order.account, "symbol": SYMBOL,
                "side": order.side, "type": "limit", "price": order.price, "quantity": 1,
                "command_id": order.command_id})
        };
        let reply = Http::new(url, None)
            .try_call(Method::POST, "/v1/orders", Some(&body))
            .await;
        let (answered, order_id) = match reply {
            Ok(reply) if matches!(reply.status, 201 | 202) => {
                (true, reply.body["order_id"].as_u64())
            }
            Ok(reply) if reply.status == 422 => (true, None),
            _ => (false, None),
        };
        let mut placed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        placed[index].answered |= answered;
        placed[index].order_id = placed[index].order_id.or(order_id);
        answered
    }

    /// The ids of the orders placed so far.
    fn ids(&self) -> Vec<u64> {
        let placed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        placed.iter().filter_map(|order| order.order_id).collect()
    }

    /// Asks to cancel order `order_id`; whether it got an answer (202, or 409: it had ended).
    async fn cancel(url: &str, order_id: u64) -> bool {
        let path = format!("/v1/orders/{order_id}");
        matches!(
            Http::new(url, None).try_call(Method::DELETE, &path, None).await,
            Ok(reply) if matches!(reply.status, 202 | 409)
        )
    }

    /// Repeats every unanswered placement until answered, then cancels every placed order
    /// until answered.
    async fn settle(&self, url: &str) {
        let unanswered: Vec<usize> = {
            let placed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            (0..placed.len())
                .filter(|index| !placed[*index].answered)
                .collect()
        };
        eprintln!("settling {} unanswered orders", unanswered.len());
        for index in unanswered {
            let what = format!("order {index} answered");
            eventually(&what, CLUSTER_TIMEOUT, || async {
                self.send(url, index).await.then_some(())
            })
            .await;
        }
        for order_id in self.ids() {
            let what = format!("order {order_id} cancelled");
            eventually(&what, CLUSTER_TIMEOUT, || async {
                Self::cancel(url, order_id).await.then_some(())
            })
            .await;
        }
    }

    /// Every placed order is found by its id, ended, its fills settled; and no hold
    /// outlives its order. Returns the ended orders.
    async fn check(&self, http: &Http, accounts: &[String]) -> Vec<serde_json::Value> {
        let mut ended = Vec::new();
        for order_id in self.ids() {
            let what = format!("order {order_id} ended, its fills settled");
            let order = eventually(&what, CLUSTER_TIMEOUT, || async {
                let (status, order) = http.get(&format!("/v1/orders/{order_id}")).await;
                assert_eq!(status, 200, "order {order_id}: {order}");
                let settled = order["fills"]
                    .as_array()
                    .is_some_and(|fills| fills.iter().all(|fill| fill["settled"] == true));
                let open = order["status"] == "open" || order["status"] == "pending";
                (!open && settled).then_some(order)
            })
            .await;
            ended.push(order);
        }
        for account in accounts {
            let what = format!("no hold outlives the orders of {account}");
            eventually(&what, CLUSTER_TIMEOUT, || async {
                let (status, body) = http.get(&format!("/v1/accounts/{account}")).await;
                assert_eq!(status, 200, "{body}");
                let held = |asset: &str| body["balances"][asset]["held"].as_u64().unwrap_or(0);
                (held(LOAD_ASSET) == 0 && held("BTC") == 0).then_some(())
            })
            .await;
        }
        let sent = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        eprintln!(
            "nemesis: {sent} orders sent, {} placed (the others refused), every one ended, no \
             hold left",
            self.ids().len()
        );
        ended
    }
}

/// Each account's (USD, BTC) after its orders' fills, from what it had before them; checks
/// every trade was settled once on each side (one buy leg and one sell leg per trade id).
fn after_fills(
    before: BTreeMap<String, (u64, u64)>,
    orders: &[serde_json::Value],
) -> BTreeMap<String, (u64, u64)> {
    let mut totals = before;
    let mut legs: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for order in orders {
        let account = order["account_id"].as_str().expect("an owner").to_owned();
        let buy = order["side"] == "buy";
        for fill in order["fills"].as_array().into_iter().flatten() {
            let (price, quantity) = (fill["price"].as_u64(), fill["quantity"].as_u64());
            let (price, quantity) = (price.expect("a price"), quantity.expect("a quantity"));
            let leg = legs
                .entry(fill["trade_id"].as_u64().expect("a trade id"))
                .or_default();
            let (usd, btc) = totals.entry(account.clone()).or_default();
            if buy {
                leg.0 += 1;
                *usd = usd
                    .checked_sub(price * quantity)
                    .expect("a buyer paid from its USD");
                *btc += quantity;
            } else {
                leg.1 += 1;
                *usd += price * quantity;
                *btc = btc
                    .checked_sub(quantity)
                    .expect("a seller delivered its BTC");
            }
        }
    }
    assert!(
        legs.values().all(|sides| *sides == (1, 1)),
        "every trade has one buy leg and one sell leg: {legs:?}"
    );
    eprintln!("nemesis: {} trades, each settled once per side", legs.len());
    totals
}

/// The read models, once caught up with the log, equal a rebuild of them from offset 0.
/// Stops every node first (nothing may write while the read models are rebuilt).
async fn assert_read_models_equal_a_rebuild(cluster: &mut Cluster) {
    let config = JournalConfig::default();
    let database = Database::connect(&cluster.database, &config)
        .await
        .expect("the test database");
    let journal = Journal::open(database, config).await.expect("the journal");
    eventually("the read models caught up", CLUSTER_TIMEOUT, || async {
        caught_up(&journal)
            .await
            .expect("the read models' lags")
            .then_some(())
    })
    .await;
    for number in cluster.running() {
        cluster.stop(number).await;
    }
    let live = projections::dump(journal.read_models())
        .await
        .expect("a dump");
    let trading = TradingConfig::default();
    projections::rebuild_all(
        &journal,
        &trading.projections,
        trading.candle_watermark_micros,
    )
    .await
    .expect("a rebuild");
    let rebuilt = projections::dump(journal.read_models())
        .await
        .expect("a dump");
    for (table, rows) in &live {
        assert_eq!(Some(rows), rebuilt.get(table), "read model table {table}");
    }
    let rows: usize = live.values().map(Vec::len).sum();
    eprintln!("nemesis: read models ({rows} rows) equal their rebuild");
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
    (ledger, withdrawals, orders, seller): (&Ledger, &Withdrawals, &Orders, &str),
    addresses: &Addresses,
    accounts: Vec<String>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|worker| {
            let (ledger, withdrawals, orders, seller, addresses, accounts, stop) = (
                ledger.clone(),
                withdrawals.clone(),
                orders.clone(),
                seller.to_owned(),
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
                    // Every account gets deposits, withdrawals (some of them more than it holds:
                    // refused), bids at 1 to 3 and cancels of earlier bids; a seller's asks at
                    // 3 cross the bids at 3, so every trade prints at 3 (inside the market's
                    // volatility band: a trade outside it would halt the market).
                    let account = &accounts[(round / 3) % accounts.len()];
                    let acknowledged = match round % 8 {
                        3 | 7 => {
                            withdrawals
                                .withdraw(&url, account, 1 + round as u64 % 13)
                                .await
                        }
                        1 => {
                            orders
                                .place(&url, account, "buy", 1 + round as u64 % 3)
                                .await
                        }
                        5 if (round / 8) % 2 == 1 => orders.place(&url, &seller, "sell", 3).await,
                        5 => match orders.ids().get(round / 8) {
                            Some(order_id) => Orders::cancel(&url, *order_id).await,
                            None => true,
                        },
                        _ => {
                            ledger
                                .deposit(&Http::new(&url, None), account, 1 + round as u64 % 9)
                                .await
                        }
                    };
                    round += 1;
                    let pause = if acknowledged { 10 } else { 200 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect()
}

/// Waits up to `wait` for node `number` to exit on its own, and restarts it if it did.
async fn restart_if_exited(cluster: &mut Cluster, number: usize, wait: Duration) {
    let deadline = Instant::now() + wait;
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

/// Runs `pg_ctlcluster` on the local PostgreSQL with `action` (e.g. `stop -m fast`).
fn postgres(action: &[&str]) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut versions| versions.next())
        .and_then(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .expect("a local PostgreSQL cluster under /etc/postgresql");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main"])
        .args(action)
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action:?}");
}

/// Stops PostgreSQL for `down`, starts it again and waits until it takes connections.
async fn restart_postgres(down: Duration) {
    postgres(&["stop", "-m", "fast"]);
    tokio::time::sleep(down).await;
    postgres(&["start"]);
    eventually("PostgreSQL back", Duration::from_secs(30), || async {
        std::process::Command::new("pg_isready")
            .args(["-q", "-h", "127.0.0.1"])
            .status()
            .is_ok_and(|status| status.success())
            .then_some(())
    })
    .await;
}

/// One fault on one node (or on the database), then the cluster whole again.
async fn strike(cluster: &mut Cluster, schedule: &mut Schedule) {
    let number = 1 + schedule.below(cluster.len() as u64) as usize;
    match schedule.below(4) {
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
            restart_if_exited(cluster, number, EXIT_WAIT).await;
        }
        2 => {
            let down = Duration::from_millis(500 + schedule.below(2_500));
            eprintln!("nemesis: stop PostgreSQL for {down:?}, start it");
            restart_postgres(down).await;
            // A node whose heartbeats failed past the failure timeout is declared down by the
            // first member to reach the database again, and exits when it learns it.
            tokio::time::sleep(Duration::from_secs(5)).await;
            for number in 1..=cluster.len() {
                restart_if_exited(cluster, number, Duration::ZERO).await;
            }
        }
        _ => {
            eprintln!("nemesis: cut n{PROXIED}'s cluster link for {PAUSE:?}, heal");
            cluster.proxy(PROXIED).cut().await;
            tokio::time::sleep(PAUSE).await;
            cluster.proxy(PROXIED).heal().await;
            restart_if_exited(cluster, PROXIED, EXIT_WAIT).await;
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
    list_market(&cluster.http(1)).await;
    let seller = layout.entities_on("n2", "nemesis-seller", 1).remove(0);
    deposit(&cluster.http(1), &seller, "BTC", SELLER_BTC).await;
    let ledger = Ledger::new();
    let withdrawals = Withdrawals::default();
    let orders = Orders::default();
    let addresses: Addresses = Arc::new(Mutex::new(urls_of(&cluster)));
    let stop = Arc::new(AtomicBool::new(false));
    let load = (&ledger, &withdrawals, &orders, seller.as_str());
    let workers = start_load(load, &addresses, accounts.clone(), &stop);
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
    orders.settle(&cluster.node(1).url).await;
    let mut traders = accounts.clone();
    traders.push(seller.clone());
    let ended = orders.check(&survivor, &traders).await;
    let withdrawn = withdrawals.applied_by_account();
    let mut before_fills: BTreeMap<String, (u64, u64)> = ledger
        .acknowledged_by_account()
        .into_iter()
        .map(|(account, usd)| (account, (usd, 0)))
        .collect();
    before_fills.insert(seller.clone(), (0, SELLER_BTC));
    // Fills first, then withdrawals: the totals are sums, so the order does not matter, but
    // subtracting in this order never goes below zero.
    let mut expected = after_fills(before_fills, &ended);
    for (account, amount) in &withdrawn {
        let (usd, _) = expected
            .get_mut(account)
            .expect("withdrawn after a deposit");
        *usd = usd
            .checked_sub(*amount)
            .expect("never more withdrawn than it held");
    }
    let mut actual = BTreeMap::new();
    for account in expected.keys() {
        let (status, body) = survivor.get(&format!("/v1/accounts/{account}")).await;
        assert_eq!(status, 200, "{body}");
        let total = |asset: &str| body["balances"][asset]["total"].as_u64().unwrap_or(0);
        actual.insert(account.clone(), (total(LOAD_ASSET), total("BTC")));
    }
    assert_eq!(
        actual, expected,
        "every account's USD and BTC are its deposits, minus its applied withdrawals, plus \
         and minus its fills, each once"
    );
    eprintln!(
        "nemesis: withdrawals applied into {} accounts, {} units; every total as the commands say",
        withdrawn.len(),
        withdrawn.values().sum::<u64>()
    );
    assert_read_models_equal_a_rebuild(&mut cluster).await;
    assert_one_writer(&cluster.database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_survive_kills_pauses_and_partitions() {
    let seed = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_261_222);
    let rounds = std::env::var("NEMESIS_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(4);
    nemesis(seed, rounds).await;
}
