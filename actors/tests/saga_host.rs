//! The saga host on a real SQLite journal: order placement sagas drive real account and book
//! entities to a settled trade; a lost effect is retried at the saga's deadline; sagas left
//! mid-flight by a stopped node resume on a new one.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tradefloor_actors::hosting::saga_host::{BoxFuture, system_clock};
use tradefloor_actors::trading::dispatch::{account_answer, book_refusal};
use tradefloor_actors::{Dispatcher, EntityConfig, SagaHost, SagaHostConfig, ShardRegion};
use tradefloor_domain::account::{Account, AccountCommand, AccountEvent};
use tradefloor_domain::book::{BookCommand, BookEvent, OrderBook};
use tradefloor_domain::saga::{OrderSaga, SagaCommand, SagaConfig, SagaInput};
use tradefloor_domain::{
    AccountId, Aggregate, Amount, Asset, CommandId, MarketSpec, OrderId, OrderSpec, OrderStatus,
    OrderType, Price, Quantity, Side, Symbol, TimeInForce, Timestamp,
};
use tradefloor_persistence::{Database, Journal, JournalConfig};

const DEADLINE: Duration = Duration::from_secs(10);

fn asset(code: &str) -> Asset {
    Asset::new(code).unwrap()
}

fn market() -> MarketSpec {
    MarketSpec {
        symbol: Symbol::new("BTC-USD").unwrap(),
        base: asset("BTC"),
        quote: asset("USD"),
        tick_size: Price(1),
        lot_size: Quantity(1),
        min_quantity: Quantity(1),
        max_quantity: Quantity(1_000),
        band_bps: 5_000,
        reference_price: Some(Price(100)),
    }
}

fn saga_config() -> SagaConfig {
    // Short steps, so a lost message is retried within the test.
    SagaConfig {
        step_timeout_micros: 50_000,
        step_timeout_max_micros: 200_000,
        attempts_max: 6,
    }
}

/// Carries out order-saga commands on real regions, as the trading application will.
#[derive(Clone)]
struct Trading {
    accounts: Arc<ShardRegion<Account>>,
    books: Arc<ShardRegion<OrderBook>>,
    journal: Journal,
    /// The last book sequence whose events were routed to sagas.
    book_seen: Arc<tokio::sync::Mutex<u64>>,
    /// Command names whose next effect is lost (never carried out), once each.
    lose_next: Arc<Mutex<HashSet<&'static str>>>,
    /// Lose every effect: a node that persisted its sagas and died before dispatching.
    lose_all: bool,
}

impl Trading {
    fn now() -> Timestamp {
        system_clock()()
    }

    async fn account(
        &self,
        account_id: AccountId,
        command: AccountCommand,
    ) -> Vec<(String, SagaInput)> {
        let (saga, at) = match &command {
            AccountCommand::PlaceHold { order_id, .. }
            | AccountCommand::SettleTrade { order_id, .. }
            | AccountCommand::ReleaseHold { order_id, .. }
            | AccountCommand::Finish { order_id, .. } => (order_id.to_string(), Self::now()),
            other => panic!("sagas do not send {other:?}"),
        };
        let result = self
            .accounts
            .ask(account_id.as_str(), command.clone(), DEADLINE)
            .await;
        // Infrastructure trouble gives no input: the saga's deadline retries.
        account_answer(&command, &result, at)
            .map(|input| (saga, input))
            .into_iter()
            .collect()
    }

    async fn book(
        &self,
        saga: String,
        symbol: Symbol,
        command: BookCommand,
    ) -> Vec<(String, SagaInput)> {
        let at = Self::now();
        let result = self
            .books
            .ask(symbol.as_str(), command.clone(), DEADLINE)
            .await;
        let mut inputs: Vec<(String, SagaInput)> = book_refusal(&command, &result, at)
            .map(|input| (saga, input))
            .into_iter()
            .collect();
        inputs.extend(self.route_book_events(symbol).await);
        inputs
    }

    /// Routes the book's new events (read back from its journal) to the sagas they concern.
    async fn route_book_events(&self, symbol: Symbol) -> Vec<(String, SagaInput)> {
        let mut seen = self.book_seen.lock().await;
        let stream = format!("order_book|{symbol}");
        let stored = self
            .journal
            .read_stream(&stream, *seen + 1, 10_000)
            .await
            .unwrap();
        let codec = <OrderBook as tradefloor_actors::Persistent>::codec();
        let mut inputs = Vec::new();
        for event in stored {
            *seen = event.sequence;
            let event = codec.decode(&event).unwrap();
            let concerned: Vec<OrderId> = match &event {
                BookEvent::Accepted { order, .. } => vec![order.order_id],
                BookEvent::Traded(trade) => vec![trade.maker_order_id, trade.taker_order_id],
                BookEvent::Rested { order_id, .. }
                | BookEvent::Ended { order_id, .. }
                | BookEvent::Blocked { order_id, .. } => {
                    vec![*order_id]
                }
                _ => Vec::new(),
            };
            for order_id in concerned {
                inputs.push((
                    order_id.to_string(),
                    SagaInput::Book {
                        event: event.clone(),
                    },
                ));
            }
        }
        inputs
    }
}

impl Dispatcher<OrderSaga> for Trading {
    fn dispatch(
        &self,
        saga_id: String,
        effect: SagaCommand,
    ) -> BoxFuture<Vec<(String, SagaInput)>> {
        let this = self.clone();
        Box::pin(async move {
            let name = match &effect {
                SagaCommand::Account { command, .. } => tradefloor_domain::Message::name(command),
                SagaCommand::Book { command, .. } => tradefloor_domain::Message::name(command),
            };
            if this.lose_all || this.lose_next.lock().unwrap().remove(name) {
                return Vec::new();
            }
            match effect {
                SagaCommand::Account {
                    account_id,
                    command,
                } => this.account(account_id, command).await,
                SagaCommand::Book { symbol, command } => this.book(saga_id, symbol, command).await,
            }
        })
    }
}

struct Node {
    host: SagaHost<OrderSaga>,
    trading: Trading,
}

async fn start_node(journal: &Journal, lose_all: bool) -> Node {
    start_node_with(journal, lose_all, SagaHostConfig::default()).await
}

async fn start_node_with(journal: &Journal, lose_all: bool, host_config: SagaHostConfig) -> Node {
    let config = EntityConfig {
        shard_count: 4,
        ..EntityConfig::default()
    };
    let accounts = Arc::new(
        ShardRegion::<Account>::start("/test/accounts", journal.clone(), config.clone())
            .await
            .unwrap(),
    );
    let books = Arc::new(
        ShardRegion::<OrderBook>::start("/test/books", journal.clone(), config.clone())
            .await
            .unwrap(),
    );
    let sagas = ShardRegion::<OrderSaga>::start("/test/sagas", journal.clone(), config)
        .await
        .unwrap();
    let trading = Trading {
        accounts,
        books,
        journal: journal.clone(),
        book_seen: Arc::new(tokio::sync::Mutex::new(0)),
        lose_next: Arc::new(Mutex::new(HashSet::new())),
        lose_all,
    };
    let host = SagaHost::new(sagas, trading.clone(), system_clock(), host_config);
    Node { host, trading }
}

async fn journal() -> (Journal, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let config = JournalConfig::default();
    let journal = Journal::open(Database::connect(&url, &config).await.unwrap(), config)
        .await
        .unwrap();
    (journal, directory)
}

async fn fund(node: &Node, account: &str, code: &str, amount: u64) {
    let command = AccountCommand::Deposit {
        command_id: CommandId::new(&format!("fund-{account}-{code}")).unwrap(),
        asset: asset(code),
        amount: Amount(amount),
        effective_at: None,
        at: Trading::now(),
    };
    node.trading
        .accounts
        .ask(account, command, DEADLINE)
        .await
        .unwrap();
}

fn order(order_id: u64, account: &str, side: Side, price: u64, quantity: u64) -> OrderSpec {
    OrderSpec {
        order_id: OrderId(order_id),
        account_id: AccountId::new(account).unwrap(),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        quantity: Quantity(quantity),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    }
}

async fn place(node: &Node, spec: OrderSpec) {
    let start = SagaInput::Start {
        request: spec,
        market: market(),
        config: saga_config(),
        // Even ids start as a generated id's order does: the hold carries the start.
        by_hold: spec.order_id.0.is_multiple_of(2),
        at: node.host.now(),
    };
    node.host
        .send(&spec.order_id.to_string(), start)
        .await
        .unwrap();
}

/// Polls a saga (with a harmless tick) until its order reaches `status` and it is finished
/// (or, for a resting order, merely reaches `status`).
async fn wait_for(node: &Node, order_id: u64, status: OrderStatus) {
    for _ in 0..500 {
        let reply = node
            .host
            .send(
                &order_id.to_string(),
                SagaInput::Tick {
                    now: node.host.now(),
                },
            )
            .await
            .unwrap();
        let finished_if_final =
            !status.is_final() || reply.deadline.is_none() && reply.view.finished;
        if reply.view.status == status && finished_if_final {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("order {order_id} never reached {status:?}");
}

/// An account's balances as its journal says.
async fn balances(journal: &Journal, account: &str) -> BTreeMap<String, (u64, u64)> {
    let codec = <Account as tradefloor_actors::Persistent>::codec();
    let stored = journal
        .read_stream(&format!("account|{account}"), 1, 10_000)
        .await
        .unwrap();
    let events: Vec<AccountEvent> = stored
        .iter()
        .map(|event| codec.decode(event).unwrap())
        .collect();
    Account::replay(&events)
        .balances()
        .iter()
        .map(|(asset, balance)| (asset.to_string(), (balance.total.get(), balance.held.get())))
        .collect()
}

async fn list_market(node: &Node) {
    node.trading
        .books
        .ask(
            "BTC-USD",
            BookCommand::List {
                spec: market(),
                at: Timestamp(0),
            },
            DEADLINE,
        )
        .await
        .unwrap();
}

/// Lists the market, funds alice and bob, and has bob's order 1 (sell 10 @ 100) filled by
/// alice's order 2.
async fn bob_sells_ten_to_alice(node: &Node) {
    list_market(node).await;
    fund(node, "alice", "USD", 100_000).await;
    fund(node, "bob", "BTC", 100).await;
    place(node, order(1, "bob", Side::Sell, 100, 10)).await;
    wait_for(node, 1, OrderStatus::Open).await;
    place(node, order(2, "alice", Side::Buy, 100, 10)).await;
    wait_for(node, 2, OrderStatus::Filled).await;
    wait_for(node, 1, OrderStatus::Filled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sagas_trade_and_settle_on_both_accounts() {
    let (journal, _directory) = journal().await;
    let node = start_node(&journal, false).await;
    bob_sells_ten_to_alice(&node).await;
    assert_eq!(balances(&journal, "alice").await["BTC"], (10, 0));
    assert_eq!(
        balances(&journal, "alice").await["USD"],
        (100_000 - 1_000, 0)
    );
    assert_eq!(balances(&journal, "bob").await["BTC"], (90, 0));
    assert_eq!(balances(&journal, "bob").await["USD"], (1_000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_effect_is_carried_out_again_at_the_sagas_deadline() {
    let (journal, _directory) = journal().await;
    let node = start_node(&journal, false).await;
    list_market(&node).await;
    fund(&node, "alice", "USD", 100_000).await;
    fund(&node, "bob", "BTC", 100).await;
    node.trading.lose_next.lock().unwrap().extend([
        "account.place_hold",
        "account.finish",
        "book.submit",
    ]);
    place(&node, order(1, "bob", Side::Sell, 100, 10)).await;
    wait_for(&node, 1, OrderStatus::Open).await;
    place(&node, order(2, "alice", Side::Buy, 100, 10)).await;
    wait_for(&node, 2, OrderStatus::Filled).await;
    wait_for(&node, 1, OrderStatus::Filled).await;
    assert!(
        node.trading.lose_next.lock().unwrap().is_empty(),
        "every loss happened"
    );
    let mut retried = 0;
    for saga in ["order_saga|1", "order_saga|2"] {
        let stored = journal.read_stream(saga, 1, 1_000).await.unwrap();
        retried += stored
            .iter()
            .filter(|event| event.name == "saga.retried")
            .count();
    }
    assert!(
        retried >= 3,
        "each lost effect was retried at a deadline ({retried} retries)"
    );
    assert_eq!(balances(&journal, "alice").await["BTC"], (10, 0));
    assert_eq!(balances(&journal, "bob").await["USD"], (1_000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_left_mid_flight_resume_on_a_new_node() {
    let (journal, _directory) = journal().await;
    {
        // A node that persists sagas and dies before carrying out any of their effects.
        let dying = start_node(&journal, true).await;
        list_market(&dying).await;
        fund(&dying, "bob", "BTC", 100).await;
        place(&dying, order(1, "bob", Side::Sell, 100, 10)).await;
        dying.host.region().stop().await.unwrap();
        dying.trading.accounts.stop().await.unwrap();
        dying.trading.books.stop().await.unwrap();
    }
    let node = start_node(&journal, false).await;
    assert_eq!(node.host.resume(&journal).await.unwrap(), 1);
    wait_for(&node, 1, OrderStatus::Open).await;
    assert_eq!(
        balances(&journal, "bob").await["BTC"],
        (100, 10),
        "the hold was placed after resuming"
    );
}

/// A watch registered before an order's start is woken by the first reply that satisfies it,
/// whichever input produced it (here the book's answer, routed by the dispatcher): nobody
/// polls the saga. Woken, it leaves the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_is_woken_by_the_reply_that_satisfies_it() {
    let (journal, _directory) = journal().await;
    let node = start_node(&journal, false).await;
    list_market(&node).await;
    fund(&node, "bob", "BTC", 100).await;
    let placed = node
        .host
        .watch("7", |reply| reply.view.status != OrderStatus::Pending)
        .unwrap();
    let settled = node
        .host
        .watch("7", |reply| reply.view.status == OrderStatus::Filled)
        .unwrap();
    assert_eq!(node.host.watches(), 2);
    place(&node, order(7, "bob", Side::Sell, 100, 10)).await;
    let reply = placed.wait(DEADLINE).await.expect("woken");
    assert_eq!(reply.view.status, OrderStatus::Open);
    // The other watch still waits for its own condition.
    assert_eq!(node.host.watches(), 1);
    assert!(settled.wait(Duration::from_millis(50)).await.is_none());
    assert_eq!(node.host.watches(), 0);
}

/// A watch that times out, or is dropped unwaited, is removed; the number of watches is
/// bounded, and a watch past the bound is refused with `Overloaded` until one leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_time_out_leave_and_are_bounded() {
    let (journal, _directory) = journal().await;
    let host_config = SagaHostConfig {
        watches_max: 2,
        ..SagaHostConfig::default()
    };
    let node = start_node_with(&journal, false, host_config).await;
    let never = node.host.watch("404", |_| true).unwrap();
    assert!(never.wait(Duration::from_millis(20)).await.is_none());
    assert_eq!(node.host.watches(), 0);

    let first = node.host.watch("1", |_| true).unwrap();
    let _second = node.host.watch("1", |_| true).unwrap();
    let refused = node.host.watch("2", |_| true);
    assert!(
        matches!(
            refused,
            Err(tradefloor_actors::Error::Overloaded { capacity: 2, .. })
        ),
        "a third watch is refused"
    );
    drop(first);
    assert_eq!(node.host.watches(), 1);
    let _third = node.host.watch("2", |_| true).unwrap();
    assert_eq!(node.host.watches(), 2);
}

/// Resuming ticks only the sagas that are not finished: two orders that filled each other and
/// settled are folded from the log and left alone; the one still resting is ticked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_ticks_only_unfinished_sagas() {
    let (journal, _directory) = journal().await;
    {
        let node = start_node(&journal, false).await;
        bob_sells_ten_to_alice(&node).await;
        place(&node, order(3, "bob", Side::Sell, 105, 5)).await;
        wait_for(&node, 3, OrderStatus::Open).await;
        node.host.region().stop().await.unwrap();
        node.trading.accounts.stop().await.unwrap();
        node.trading.books.stop().await.unwrap();
    }
    let node = start_node(&journal, false).await;
    assert_eq!(node.host.resume(&journal).await.unwrap(), 1);
}

/// Resuming from an index of unfinished work reads only the log after it: the sagas it lists
/// and those of the log after its offset are ticked; a saga left unfinished before the offset
/// and not listed is not found (so the history before it is not read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_an_index_reads_only_the_log_after_it() {
    let (journal, _directory) = journal().await;
    let indexed_at;
    {
        let node = start_node(&journal, false).await;
        bob_sells_ten_to_alice(&node).await;
        fund(&node, "bob", "BTC", 100).await;
        place(&node, order(3, "bob", Side::Sell, 105, 5)).await;
        wait_for(&node, 3, OrderStatus::Open).await;
        indexed_at = journal.last_offset().await.unwrap();
        place(&node, order(4, "bob", Side::Sell, 110, 5)).await;
        wait_for(&node, 4, OrderStatus::Open).await;
        node.host.region().stop().await.unwrap();
        node.trading.accounts.stop().await.unwrap();
        node.trading.books.stop().await.unwrap();
    }
    let node = start_node(&journal, false).await;
    let everything = |_: &str| true;
    let listed = vec!["3".to_owned()];
    let resumed = node
        .host
        .resume_from(&journal, listed, indexed_at, everything);
    assert_eq!(
        resumed.await.unwrap(),
        2,
        "order 3 as listed, order 4 from the log"
    );
    let resumed = node
        .host
        .resume_from(&journal, Vec::new(), indexed_at, everything);
    assert_eq!(resumed.await.unwrap(), 1, "order 3 is before the offset");
    let only_three = |id: &str| id == "3";
    let listed = vec!["3".to_owned()];
    let resumed = node
        .host
        .resume_from(&journal, listed, indexed_at, only_three);
    assert_eq!(
        resumed.await.unwrap(),
        1,
        "what select leaves out is not ticked"
    );
}
