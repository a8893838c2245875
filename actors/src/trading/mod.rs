//! The trading application: accounts, order books and order sagas as persistent entities,
//! the book feed, the read models under a supervisor, and [`Exchange`], the one facade the
//! HTTP layer and the tests call.
//!
//! The flow of an order: [`Exchange::place_order`] validates it against its market and
//! starts its saga; the saga holds funds on the account, submits to the book, settles each
//! fill on its own account and releases the rest of the hold (see `domain::saga`). The
//! [`dispatch`] module carries the saga's commands out and hands the book's events to every
//! saga they concern; the durable [`feed`] delivers them again from the journal (at least
//! once, across crashes); [`projections`] keep SQL read models. [`Exchange::place_order`]
//! waits on a [watch](crate::hosting::saga_host::SagaHost::watch), woken by the saga's first reply
//! that leaves `pending`.
//!
//! Reads that must reflect every acknowledged write (account, order, book depth) look at the
//! entity's state in memory (`queries`; on a cluster node, an entity of a shard owned
//! elsewhere is folded from the journal, [`state::load_state`]); market data lists (trades,
//! candles) come from the read models and trail the log by the projections' lag.
//!
//! [`Exchange`] is split by concern: `markets` (listing, halting, resuming), `accounts`
//! (deposits, withdrawals, history), `orders` (place, cancel, retry; the placement itself in
//! `placement`), `queries` (reads), `limits` (risk limits, positions and flags of an account),
//! `streams` (the live streams of the log), `services` (the book feed, the read models and the risk
//! monitor, and how far they read), `recovery` (what a node does at start and on adoption)
//! and `cluster` (shards moving between nodes).

mod accounts;
pub mod alerts;
pub mod archiver;
pub mod audit;
mod cluster;
pub mod config;
pub mod dispatch;
pub mod event_json;
pub mod events;
pub mod feed;
mod limits;
mod markets;
mod orders;
mod placement;
pub mod projections;
mod queries;
pub mod quotes;
mod recovery;
pub mod risk;
pub mod rules;
mod services;
pub mod sink;
pub mod state;
pub mod strategies;
pub mod streams;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::Notify;
use tradefloor_domain::account::{Account, AccountEvent};
use tradefloor_domain::book::OrderBook;
use tradefloor_domain::history::HistoricalBalance;
use tradefloor_domain::saga::{OrderSaga, OrderView};
use tradefloor_domain::{
    AccountId, Amount, Asset, MarketSpec, OrderId, OrderIdKey, OrderReference, OrderType, Price,
    Quantity, Side, Symbol, TimeInForce, Timestamp,
};
use tradefloor_persistence::Journal;
use tradefloor_persistence::secret::venue_secret;

pub use cluster::ID_SLOTS;
pub use config::TradingConfig;
pub use limits::Position;
pub use projections::candles::{Candle, CandleInterval};
pub use risk::{RiskConfig, RiskFlag};

use crate::error::Error;
use crate::hosting::consumer_group::ConsumerGroup;
use crate::hosting::entity::Persistent;
use crate::hosting::projection::ProjectionHandle;
use crate::hosting::region::ShardRegion;
use crate::hosting::saga_host::{Clock, SagaHost, system_clock};
use crate::hosting::shard::ShardStats;
use crate::routing::remote::Remoting;
use crate::runtime::registry::Registry;
use dispatch::TradingDispatcher;
pub use services::caught_up;
use services::{RiskMember, Services};

/// One asset's balance as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BalanceView {
    /// Everything owned.
    pub total: Amount,
    /// Reserved for open orders.
    pub held: Amount,
    /// `total − held`.
    pub available: Amount,
}

/// An account: its balances and its open orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The account.
    pub account_id: AccountId,
    /// Balances by asset.
    pub balances: BTreeMap<Asset, BalanceView>,
    /// Orders not yet final (pending, open, partially filled), by order id.
    pub open_orders: Vec<OrderView>,
}

/// An account as of a valid time, as known at a transaction time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountHistory {
    /// Signed balances by asset (a backdated correction can make a past balance negative).
    pub balances: BTreeMap<Asset, HistoricalBalance>,
    /// The events that make up the view, in valid-time order, with their transaction time.
    pub events: Vec<(Timestamp, AccountEvent)>,
}

/// A new order, as the HTTP layer receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NewOrder {
    /// The venue's id for the order (for a client's own id: [`Exchange::order_id_for`]), or
    /// `None` to have one generated. Repeating an id with the same order answers with that
    /// order; with another order, `saga_already_started`.
    pub order_id: Option<OrderId>,
    /// The owner.
    pub account_id: AccountId,
    /// The market.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price, or a market order's protection price (required to buy).
    pub price: Option<Price>,
    /// Base quantity.
    pub quantity: Quantity,
    /// GTC, IOC or FOK.
    pub time_in_force: TimeInForce,
    /// Refuse the order if it would trade on arrival.
    pub post_only: bool,
}

/// The trading application on one node. See the [module docs](self).
pub struct Exchange {
    journal: Journal,
    config: TradingConfig,
    clock: Clock,
    accounts: Arc<ShardRegion<Account>>,
    books: Arc<ShardRegion<OrderBook>>,
    host: SagaHost<OrderSaga>,
    registry: Registry,
    feed_wake: Arc<Notify>,
    /// The book feed and the read models running on this node, by service name.
    services: tokio::sync::Mutex<BTreeMap<String, Services>>,
    /// Where each read model's running incarnation is, for stats and rebuilds.
    projection_handles: std::sync::Mutex<BTreeMap<String, ProjectionHandle>>,
    /// Turns true when the services' supervisor stopped without being asked (it gave up).
    services_gave_up: tokio::sync::watch::Sender<bool>,
    /// The cluster, when this node is part of one.
    remoting: Option<Arc<Remoting>>,
    /// The live streams of this node's log.
    streams: streams::StreamHub,
    /// The streams' hub's supervisor (every node runs one).
    streams_supervisor: ractor::ActorRef<crate::runtime::supervisor::SupervisorMessage>,
    markets: RwLock<HashMap<Symbol, MarketSpec>>,
    /// One batch of quotes appended at a time (each append names the stream's head).
    quotes_lock: tokio::sync::Mutex<()>,
    /// The strategies running on this node.
    strategies: strategies::Strategies,
    /// The rules monitor, once started ([`Exchange::start_rules`]).
    rules_monitor: std::sync::Mutex<Option<rules::RunningRules>>,
    /// The last generated id (order ids and command ids), from the clock at start.
    last_id: AtomicU64,
    /// Generated ids are `id_slot` modulo `id_stride` (1 and 0 on a node of its own).
    id_stride: u64,
    id_slot: u64,
    /// The venue's key for the order ids of clients' own ids (see [`Exchange::order_id_for`]).
    order_ids: OrderIdKey,
    risk_group: ConsumerGroup,
    /// The risk monitor's live members by id.
    risk_members: Mutex<BTreeMap<String, RiskMember>>,
    /// The number of the last risk member started.
    risk_member_count: AtomicU64,
    /// Archive runs over the journal.
    archiver: archiver::Archiver,
}

/// What a region of the application starts with.
struct RegionStart {
    registry: Registry,
    path: String,
    journal: Journal,
    config: crate::hosting::config::EntityConfig,
    remoting: Option<Arc<Remoting>>,
}

impl RegionStart {
    /// A region on its own, or one node's part of a clustered one.
    async fn start<A: Persistent>(self) -> Result<ShardRegion<A>, Error> {
        match self.remoting {
            None => {
                ShardRegion::start_in(self.registry, self.path, self.journal, self.config).await
            }
            Some(remoting) => {
                ShardRegion::start_clustered(
                    self.registry,
                    self.path,
                    self.journal,
                    self.config,
                    remoting,
                )
                .await
            }
        }
    }
}

/// The name of the venue's secret that keys order ids ([`Exchange::order_id_for`]).
const ORDER_IDS_SECRET: &str = "order_ids";

/// The read models' names (their projections').
pub const READ_MODELS: [&str; 4] = [
    projections::balances::NAME,
    projections::orders::NAME,
    projections::trades::NAME,
    projections::candles::NAME,
];

/// The services a node runs besides its shards, each a consumer of the whole log: the book
/// feed and every read model (the risk monitor is a consumer group, spread by partition).
pub const SERVICES: [&str; 5] = [
    feed::SERVICE_NAME,
    projections::balances::NAME,
    projections::orders::NAME,
    projections::trades::NAME,
    projections::candles::NAME,
];

impl Exchange {
    /// Starts the application on `journal`: the regions, the saga host, the read-model
    /// tables, the supervisor of the book feed and the projections; then resumes every saga
    /// left in the journal (each retries, at its deadline, what it still waits on).
    pub async fn start(journal: Journal, config: TradingConfig) -> Result<Self, Error> {
        Self::start_in(Registry::default(), journal, config).await
    }

    /// [`Exchange::start`] with the regions and their shards registered in `registry` (the
    /// node's actor tree) under [`TradingConfig::path`].
    pub async fn start_in(
        registry: Registry,
        journal: Journal,
        config: TradingConfig,
    ) -> Result<Self, Error> {
        let exchange = Self::start_regions(registry, journal, config, None).await?;
        exchange.start_services().await?;
        let resumed = recovery::resume_sagas(&exchange.host, &exchange.journal, |_| true).await?;
        let released = exchange
            .hold_sweep()
            .run(|_| true, i64::MAX, exchange.now())
            .await?;
        tracing::info!(resumed, released, "trading application started");
        Ok(exchange)
    }

    /// Starts the regions (clustered if `remoting` is given), the saga host and the tables;
    /// no shard runs yet in a cluster, and no service.
    async fn start_regions(
        registry: Registry,
        journal: Journal,
        config: TradingConfig,
        remoting: Option<Arc<Remoting>>,
    ) -> Result<Self, Error> {
        let clock = system_clock();
        let path = config.path.clone();
        let start = |kind: &str| RegionStart {
            registry: registry.clone(),
            path: format!("{path}/{kind}"),
            journal: journal.clone(),
            config: config.entities.clone(),
            remoting: remoting.clone(),
        };
        let accounts = Arc::new(start("accounts").start::<Account>().await?);
        let books = Arc::new(start("books").start::<OrderBook>().await?);
        let sagas = start("sagas").start::<OrderSaga>().await?;
        let feed_wake = Arc::new(Notify::new());
        let dispatcher = TradingDispatcher {
            accounts: accounts.clone(),
            books: books.clone(),
            clock: clock.clone(),
            ask_deadline: config.ask_deadline,
            feed_wake: feed_wake.clone(),
        };
        let host = SagaHost::new(sagas, dispatcher, clock.clone(), config.saga_host.clone());
        create_tables(&journal).await?;
        let order_ids = venue_secret(journal.database(), ORDER_IDS_SECRET)
            .await
            .map_err(|error| Error::Persistence {
                actor: format!("{path} (the order ids' key)"),
                reason: error.to_string(),
            })?;
        let streams = streams::StreamHub::new(journal.clone(), config.streams.clone());
        let streams_supervisor = streams
            .start(registry.clone(), format!("{path}/streams"))
            .await?;
        let now = u64::try_from(clock().micros()).unwrap_or(0);
        let config_partitions = config.risk.partition_count.max(1);
        Ok(Self {
            archiver: archiver::Archiver::new(journal.clone()),
            journal,
            config,
            clock,
            accounts,
            books,
            host,
            registry,
            feed_wake,
            services: tokio::sync::Mutex::new(BTreeMap::new()),
            projection_handles: std::sync::Mutex::new(BTreeMap::new()),
            services_gave_up: tokio::sync::watch::Sender::new(false),
            remoting,
            streams,
            streams_supervisor,
            quotes_lock: tokio::sync::Mutex::new(()),
            strategies: strategies::Strategies::default(),
            rules_monitor: std::sync::Mutex::new(None),
            markets: RwLock::new(HashMap::new()),
            last_id: AtomicU64::new(now),
            id_stride: 1,
            id_slot: 0,
            order_ids: OrderIdKey::new(order_ids),
            risk_group: ConsumerGroup::new(risk::GROUP_NAME, config_partitions),
            risk_members: Mutex::new(BTreeMap::new()),
            risk_member_count: AtomicU64::new(0),
        })
    }

    /// Stops everything cleanly: the feed and projections, then the sagas, books and
    /// accounts (each finishing and persisting what it accepted).
    pub async fn shutdown(self) -> Result<(), Error> {
        self.pause_strategies().await;
        self.stop_rules();
        self.streams_supervisor.stop(None);
        self.stop_services().await?;
        self.host.region().stop().await?;
        self.books.stop().await?;
        self.accounts.stop().await?;
        Ok(())
    }

    /// Placements waiting for their saga's answer right now (bounded by
    /// [`SagaHostConfig::watches_max`](crate::hosting::saga_host::SagaHostConfig::watches_max)).
    pub fn placements_waiting(&self) -> usize {
        self.host.watches()
    }

    /// Every shard of the account, book and saga regions, with its region's path.
    pub async fn shard_stats(&self) -> Vec<(String, ShardStats)> {
        let mut all = Vec::new();
        let regions = [
            (self.accounts.path().to_owned(), self.accounts.stats().await),
            (self.books.path().to_owned(), self.books.stats().await),
            (
                self.host.region().path().to_owned(),
                self.host.region().stats().await,
            ),
        ];
        for (path, stats) in regions {
            all.extend(stats.into_iter().map(|shard| (path.clone(), shard)));
        }
        all
    }

    /// The node's live streams: subscribe to a market's or an account's messages.
    pub fn streams(&self) -> &streams::StreamHub {
        &self.streams
    }

    /// Archive runs over the journal (retention).
    pub fn archiver(&self) -> &archiver::Archiver {
        &self.archiver
    }

    /// The journal underneath.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The configuration in force.
    pub fn config(&self) -> &TradingConfig {
        &self.config
    }

    /// The application's current time.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// The venue's order id for what a client named its order by on `account` (its own order
    /// id or the placement's command id): the same for every retry, on every node, and out of
    /// reach of every other account (a keyed hash: [`OrderIdKey`]).
    pub fn order_id_for(&self, account: AccountId, reference: OrderReference) -> OrderId {
        self.order_ids.order_id(account, reference)
    }

    fn next_id(&self) -> u64 {
        // Clock-based: below the ids derived from clients' ids (OrderIdKey::DERIVED_MIN, 2^52)
        // until the year 2112.
        let now = u64::try_from(self.now().micros()).unwrap_or(0);
        let (stride, slot) = (self.id_stride, self.id_slot);
        // The smallest id in this node's slot above both the last one and the clock.
        let next = |last: u64| {
            let floor = last.max(now.saturating_sub(1));
            let candidate = floor - floor % stride + slot;
            if candidate > floor {
                candidate
            } else {
                candidate + stride
            }
        };
        let previous = self
            .last_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(next(last)))
            .expect("the update always succeeds");
        next(previous)
    }
}

impl Exchange {
    /// The release of holds whose saga never started (see [`recovery`]).
    fn hold_sweep(&self) -> recovery::HoldSweep {
        recovery::HoldSweep {
            journal: self.journal.clone(),
            accounts: self.accounts.clone(),
            ask_deadline: self.config.ask_deadline,
            path: format!("{}/recovery", self.config.path),
        }
    }
}

/// Attempts at creating the read-model tables.
const CREATE_TABLES_ATTEMPTS: u32 = 5;

/// Creates the read-model tables if missing (see [`with_create_retries`]).
async fn create_tables(journal: &Journal) -> Result<(), Error> {
    with_create_retries(|| async {
        projections::create_tables(journal).await?;
        risk::create_table(journal.read_models())
            .await
            .map_err(|error| projections::storage("risk", error))
    })
    .await
}

/// Runs `create` (creating tables if missing) until it succeeds, at most
/// [`CREATE_TABLES_ATTEMPTS`] times. Nodes of a cluster start together: two PostgreSQL
/// sessions creating one table at once can both pass `IF NOT EXISTS` and the loser fails on
/// the catalog's unique index; the next attempt finds the table.
pub(crate) async fn with_create_retries<F, Fut>(mut create: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let mut attempt = 1;
    loop {
        match create().await {
            Err(error) if attempt < CREATE_TABLES_ATTEMPTS => {
                tracing::debug!(%error, attempt, "tables not created yet");
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn balance_view(balance: tradefloor_domain::account::Balance) -> BalanceView {
    BalanceView {
        total: balance.total,
        held: balance.held,
        available: balance.available(),
    }
}
