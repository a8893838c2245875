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

mod cluster;
pub mod config;
pub mod dispatch;
pub mod feed;
mod placement;
pub mod projections;
mod queries;
mod recovery;
pub mod risk;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ractor::{Actor, ActorRef};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tradefloor_domain::account::{Account, AccountCommand, AccountEvent, AccountReply};
use tradefloor_domain::book::{BookCommand, OrderBook, Trade};
use tradefloor_domain::history::{HistoricalBalance, RecordedEvent, account_as_of};
use tradefloor_domain::saga::{OrderSaga, OrderView, SagaInput};
use tradefloor_domain::{
    AccountId, Amount, Asset, CommandId, MarketSpec, OrderId, OrderType, Price, Quantity, Side,
    Symbol, TimeInForce, Timestamp,
};
use tradefloor_persistence::{Journal, OffsetStore};

pub use config::TradingConfig;
pub use projections::candles::{Candle, CandleInterval};
pub use risk::{RiskConfig, RiskFlag};

use crate::error::Error;
use crate::hosting::consumer_group::{
    ConsumerGroup, ConsumerMember, ConsumerMemberArgs, ConsumerMessage, GroupStats, MemberStats,
};
use crate::hosting::entity::{Persistent, stream_of};
use crate::hosting::projection::{PROJECTION_PARTITION, Projection, ProjectionActor};
use crate::hosting::region::ShardRegion;
use crate::hosting::saga_host::{Clock, SagaHost, system_clock};
use crate::hosting::shard::ShardStats;
use crate::routing::remote::{Forwarding, Remoting};
use crate::runtime::registry::Registry;
use crate::runtime::supervisor::{
    SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage,
};
use dispatch::TradingDispatcher;
use feed::BookFeed;
use projections::sql;

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
    /// The caller's order id, or `None` to have one generated. Repeating an id with the
    /// same order answers with that order; with another order, `saga_already_started`.
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
    /// Turns true when the services' supervisor stopped without being asked (it gave up).
    services_gave_up: tokio::sync::watch::Sender<bool>,
    /// The cluster, when this node is part of one.
    remoting: Option<Arc<Remoting>>,
    markets: RwLock<HashMap<Symbol, MarketSpec>>,
    /// The last generated id (order ids and command ids), from the clock at start.
    last_id: AtomicU64,
    /// Generated ids are `id_slot` modulo `id_stride` (1 and 0 on a node of its own).
    id_stride: u64,
    id_slot: u64,
    risk_group: ConsumerGroup,
    /// The risk monitor's live members by id.
    risk_members: Mutex<BTreeMap<String, RiskMember>>,
    /// The number of the last risk member started.
    risk_member_count: AtomicU64,
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

/// The services a node runs besides its shards, each a consumer of the whole log: the book
/// feed and every read model (the risk monitor is a consumer group, spread by partition).
pub const SERVICES: [&str; 6] = [
    feed::SERVICE_NAME,
    projections::balances::NAME,
    projections::orders::NAME,
    projections::trades::NAME,
    projections::candles::NAME,
    projections::audit::NAME,
];

/// A service's supervisor while it runs.
struct Services {
    supervisor: ActorRef<SupervisorMessage>,
    /// Ends when the supervisor has stopped (asked to, or having given up).
    join: JoinHandle<()>,
    /// Set before the supervisor is asked to stop, so its end is not taken for giving up.
    asked_to_stop: Arc<std::sync::atomic::AtomicBool>,
}

/// A running risk monitor member.
struct RiskMember {
    actor: ActorRef<ConsumerMessage>,
    join: JoinHandle<()>,
}

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
        create_tables(journal.read_models()).await?;
        let now = u64::try_from(clock().micros()).unwrap_or(0);
        let config_partitions = config.risk.partition_count.max(1);
        Ok(Self {
            journal,
            config,
            clock,
            accounts,
            books,
            host,
            registry,
            feed_wake,
            services: tokio::sync::Mutex::new(BTreeMap::new()),
            services_gave_up: tokio::sync::watch::Sender::new(false),
            remoting,
            markets: RwLock::new(HashMap::new()),
            last_id: AtomicU64::new(now),
            id_stride: 1,
            id_slot: 0,
            risk_group: ConsumerGroup::new(risk::GROUP_NAME, config_partitions),
            risk_members: Mutex::new(BTreeMap::new()),
            risk_member_count: AtomicU64::new(0),
        })
    }

    /// Starts every service on this node: the book feed and the read models, each under its
    /// own supervisor, and the risk monitor's members. Each reads the whole log, so a cluster
    /// spreads them over its nodes instead ([`Exchange::start_service`],
    /// [`Exchange::serve_risk_partitions`]).
    pub async fn start_services(&self) -> Result<(), Error> {
        for service in SERVICES {
            self.start_service(service).await?;
        }
        if self.risk_lock().is_empty() {
            for _ in 0..self.config.risk.members {
                self.add_risk_member().await?;
            }
        }
        Ok(())
    }

    /// Stops every service on this node and the risk monitor's members.
    pub async fn stop_services(&self) -> Result<(), Error> {
        let members: Vec<String> = self.risk_lock().keys().cloned().collect();
        for member in members {
            self.remove_risk_member(&member).await?;
        }
        for service in SERVICES {
            self.stop_service(service).await?;
        }
        Ok(())
    }

    /// The child spec of service `name` (one of [`SERVICES`]).
    fn service_spec(&self, name: &str) -> Option<crate::runtime::supervisor::ChildSpec> {
        let journal = &self.journal;
        let config = &self.config;
        let spec = match name {
            feed::SERVICE_NAME => BookFeed::spec(
                self.host.clone(),
                journal.clone(),
                config.feed.clone(),
                self.feed_wake.clone(),
            ),
            projections::balances::NAME => {
                projection_spec(journal, config, projections::balances::BalancesProjection)
            }
            projections::orders::NAME => {
                let journal_for_orders = journal.clone();
                ProjectionActor::spec(
                    projections::orders::NAME,
                    journal.clone(),
                    config.projections.clone(),
                    move || projections::orders::OrdersProjection::new(journal_for_orders.clone()),
                )
            }
            projections::trades::NAME => {
                projection_spec(journal, config, projections::trades::TradesProjection)
            }
            projections::candles::NAME => {
                let watermark = config.candle_watermark_micros;
                ProjectionActor::spec(
                    projections::candles::NAME,
                    journal.clone(),
                    config.projections.clone(),
                    move || projections::candles::CandlesProjection::new(watermark),
                )
            }
            projections::audit::NAME => {
                projection_spec(journal, config, projections::audit::AuditProjection)
            }
            _ => return None,
        };
        Some(spec)
    }

    /// Starts service `name` (one of [`SERVICES`]) on this node under its own supervisor, at
    /// `{path}/services/{name}`; nothing happens if it runs already.
    pub async fn start_service(&self, name: &str) -> Result<(), Error> {
        let mut services = self.services.lock().await;
        if services.contains_key(name) {
            return Ok(());
        }
        let path = format!("{}/services/{name}", self.config.path);
        let spec = self.service_spec(name).ok_or_else(|| Error::StartFailed {
            actor: path.clone(),
            reason: "no such service".to_owned(),
        })?;
        let arguments = SupervisorArgs::new(path.clone(), SupervisionConfig::default(), vec![spec])
            .with_registry(self.registry.clone());
        let (supervisor, supervisor_join) = Actor::spawn(None, Supervisor, arguments)
            .await
            .map_err(|error| Error::StartFailed {
                actor: path.clone(),
                reason: error.to_string(),
            })?;
        // The supervisor has no parent to escalate to: whoever runs the application learns
        // that it gave up through `services_stopped`.
        let asked_to_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gave_up = self.services_gave_up.clone();
        let asked = asked_to_stop.clone();
        let join = tokio::spawn(async move {
            let _ = supervisor_join.await;
            if !asked.load(Ordering::Acquire) {
                let _ = gave_up.send(true);
            }
        });
        services.insert(
            name.to_owned(),
            Services {
                supervisor,
                join,
                asked_to_stop,
            },
        );
        tracing::info!(service = %name, "service started");
        Ok(())
    }

    /// Stops service `name` on this node (another node takes it over); nothing happens if it
    /// does not run here.
    pub async fn stop_service(&self, name: &str) -> Result<(), Error> {
        let Some(service) = self.services.lock().await.remove(name) else {
            return Ok(());
        };
        service.asked_to_stop.store(true, Ordering::Release);
        service.supervisor.stop(None);
        let _ = service.join.await;
        tracing::info!(service = %name, "service stopped");
        Ok(())
    }

    /// The services running on this node.
    pub async fn running_services(&self) -> Vec<String> {
        self.services.lock().await.keys().cloned().collect()
    }

    /// Serves only these risk-monitor partitions on this node (a cluster spreads them):
    /// partitions taken away are finished, committed and released by their members.
    pub fn serve_risk_partitions(&self, partitions: &std::collections::BTreeSet<u32>) {
        self.risk_group.serve_only(partitions);
    }

    /// The risk-monitor partitions a member on this node holds right now.
    pub fn risk_partitions_held(&self) -> std::collections::BTreeSet<u32> {
        self.risk_group.held()
    }

    /// How many partitions the risk monitor's log is split into.
    pub fn risk_partition_count(&self) -> u32 {
        self.risk_group.partition_count()
    }

    /// Stops everything cleanly: the feed and projections, then the sagas, books and
    /// accounts (each finishing and persisting what it accepted).
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop_services().await?;
        self.host.region().stop().await?;
        self.books.stop().await?;
        self.accounts.stop().await?;
        Ok(())
    }

    fn risk_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RiskMember>> {
        self.risk_members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts one more risk monitor member; answers its id. Partitions move to it as their
    /// holders finish what they have in hand.
    pub async fn add_risk_member(&self) -> Result<String, Error> {
        let number = self.risk_member_count.fetch_add(1, Ordering::AcqRel) + 1;
        let member = format!("risk-{number:04}");
        let arguments = ConsumerMemberArgs {
            group: self.risk_group.clone(),
            member: member.clone(),
            journal: self.journal.clone(),
            config: self.config.risk.consumer(),
            handler: risk::RiskHandler::new(self.journal.clone(), self.config.risk.clone()),
            progress: None,
        };
        let (actor, join) = Actor::spawn(None, ConsumerMember::new(), arguments)
            .await
            .map_err(|error| Error::StartFailed {
                actor: format!("{}/risk/{member}", self.config.path),
                reason: error.to_string(),
            })?;
        self.risk_lock()
            .insert(member.clone(), RiskMember { actor, join });
        Ok(member)
    }

    /// Stops the risk member `member` (its partitions go to the others); `false` if no such
    /// member runs.
    pub async fn remove_risk_member(&self, member: &str) -> Result<bool, Error> {
        let Some(running) = self.risk_lock().remove(member) else {
            return Ok(false);
        };
        running.actor.stop(None);
        let _ = running.join.await;
        Ok(true)
    }

    /// The risk monitor group's assignment: members, target and current holder of each
    /// partition.
    pub fn risk_stats(&self) -> GroupStats {
        self.risk_group.stats()
    }

    /// Each live risk member's view (the partitions it holds and how far it read them).
    pub async fn risk_member_stats(&self) -> Result<Vec<MemberStats>, Error> {
        let actors: Vec<ActorRef<ConsumerMessage>> = self
            .risk_lock()
            .values()
            .map(|member| member.actor.clone())
            .collect();
        let mut stats = Vec::with_capacity(actors.len());
        for actor in &actors {
            stats.push(ConsumerMember::<risk::RiskHandler>::stats(actor).await?);
        }
        Ok(stats)
    }

    /// Every account flagged over a position limit, by account then asset.
    pub async fn risk_flags(&self) -> Result<Vec<RiskFlag>, Error> {
        risk::flags(self.journal.read_models())
            .await
            .map_err(|error| projections::storage("risk", error))
    }

    /// Whether the risk monitor committed every account event of every partition (for
    /// tests and readiness checks).
    pub async fn risk_caught_up(&self) -> Result<bool, Error> {
        let failed = |error: tradefloor_persistence::Error| Error::Persistence {
            actor: risk::GROUP_NAME.to_owned(),
            reason: error.to_string(),
        };
        let offsets = OffsetStore::new(self.journal.read_models().clone());
        let partition_count = self.risk_group.partition_count();
        let mut committed = Vec::with_capacity(partition_count as usize);
        for partition in 0..partition_count {
            committed.push(
                offsets
                    .load(risk::GROUP_NAME, partition)
                    .await
                    .map_err(failed)?,
            );
        }
        let filter = self.config.risk.consumer().filter;
        let mut from = committed.iter().copied().min().unwrap_or(0);
        loop {
            let page = self
                .journal
                .read_all(from, self.journal.config().read_rows_max, &filter)
                .await
                .map_err(failed)?;
            let Some(last) = page.last() else {
                return Ok(true);
            };
            from = last.global_offset;
            for event in &page {
                let partition =
                    crate::hosting::consumer_group::partition_of(&event.stream, partition_count);
                if event.global_offset > committed[partition as usize] {
                    return Ok(false);
                }
            }
        }
    }

    /// Placements waiting for their saga's answer right now (bounded by
    /// [`SagaHostConfig::watches_max`](crate::hosting::saga_host::SagaHostConfig::watches_max)).
    pub fn placements_waiting(&self) -> usize {
        self.host.watches()
    }

    /// Whether the book feed and the read models run (their supervisor has not stopped).
    pub fn services_running(&self) -> bool {
        !*self.services_gave_up.borrow()
    }

    /// Waits until the book feed's and read models' supervisor stops: after
    /// [`Exchange::shutdown`], or when its children failed more often than its restart
    /// intensity allows. The node then has no read models and no book feed: stop it.
    pub async fn services_stopped(&self) {
        let mut stopped = self.services_gave_up.subscribe();
        let _ = stopped.wait_for(|stopped| *stopped).await;
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

    fn next_id(&self) -> u64 {
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

    /// Lists a market (admin). Listing it again is refused (`market_already_listed`).
    pub async fn list_market(&self, spec: MarketSpec) -> Result<(), Error> {
        spec.validate().map_err(Error::Rejected)?;
        let command = BookCommand::List {
            spec: spec.clone(),
            at: self.now(),
        };
        self.books
            .ask(spec.symbol.as_str(), command, self.config.ask_deadline)
            .await?;
        self.remember_market(spec);
        Ok(())
    }

    fn remember_market(&self, spec: MarketSpec) {
        self.markets
            .write()
            .expect("no panics under the lock")
            .insert(spec.symbol, spec);
    }

    /// The market's definition: `unknown_market` if it was never listed.
    pub async fn market(&self, symbol: Symbol) -> Result<MarketSpec, Error> {
        if let Some(spec) = self
            .markets
            .read()
            .expect("no panics under the lock")
            .get(&symbol)
        {
            return Ok(spec.clone());
        }
        let (book, _) = state::load_state::<OrderBook>(&self.journal, symbol.as_str()).await?;
        let spec = book.spec().cloned().ok_or(Error::Rejected(
            tradefloor_domain::Error::UnknownMarket { symbol },
        ))?;
        self.remember_market(spec.clone());
        Ok(spec)
    }

    fn command_id(&self, given: Option<CommandId>, kind: &str) -> Result<CommandId, Error> {
        match given {
            Some(command_id) => Ok(command_id),
            None => CommandId::new(&format!("{kind}-{}", self.next_id())).map_err(Error::Rejected),
        }
    }

    /// Credits `amount` of `asset`; answers the touched balance. A repeated `command_id`
    /// repeats the first answer; `effective_at` in the past records a correction.
    pub async fn deposit(
        &self,
        account_id: AccountId,
        asset: Asset,
        amount: Amount,
        command_id: Option<CommandId>,
        effective_at: Option<Timestamp>,
    ) -> Result<BTreeMap<Asset, BalanceView>, Error> {
        let command = AccountCommand::Deposit {
            command_id: self.command_id(command_id, "deposit")?,
            asset,
            amount,
            effective_at,
            at: self.now(),
        };
        self.account_command(account_id, command).await
    }

    /// Debits `amount` of `asset` from what is available; answers the touched balance.
    pub async fn withdraw(
        &self,
        account_id: AccountId,
        asset: Asset,
        amount: Amount,
        command_id: Option<CommandId>,
        effective_at: Option<Timestamp>,
    ) -> Result<BTreeMap<Asset, BalanceView>, Error> {
        let command = AccountCommand::Withdraw {
            command_id: self.command_id(command_id, "withdraw")?,
            asset,
            amount,
            effective_at,
            at: self.now(),
        };
        self.account_command(account_id, command).await
    }

    async fn account_command(
        &self,
        account_id: AccountId,
        command: AccountCommand,
    ) -> Result<BTreeMap<Asset, BalanceView>, Error> {
        let reply: AccountReply = self
            .accounts
            .ask(account_id.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(reply
            .balances
            .into_iter()
            .map(|(asset, balance)| (asset, balance_view(balance)))
            .collect())
    }

    /// Places an order: validates it against its market, starts its saga and waits until the
    /// book accepted or rejected it (or [`TradingConfig::placement_wait`] passed: the order
    /// is then answered as pending and goes on).
    pub async fn place_order(&self, order: NewOrder) -> Result<OrderView, Error> {
        match &self.remoting {
            None => self.place_order_here(order, order.order_id.is_none()).await,
            Some(remoting) => {
                self.place_order_routed(remoting, order, Forwarding::Allowed)
                    .await
            }
        }
    }

    /// Asks for the order to be cancelled; answers the order as its saga knows it then (the
    /// cancel completes asynchronously: see [`Exchange::order`]).
    pub async fn cancel_order(&self, order_id: OrderId) -> Result<OrderView, Error> {
        let input = SagaInput::CancelRequested { at: self.now() };
        match self.host.send(&order_id.to_string(), input).await {
            Ok(reply) => Ok(reply.view),
            Err(Error::Rejected(tradefloor_domain::Error::SagaNotStarted)) => {
                Err(Error::Rejected(tradefloor_domain::Error::OrderNotFound {
                    order_id,
                }))
            }
            Err(error) => Err(error),
        }
    }

    /// Resumes an order whose saga stalled (a step exhausted its retries): the operator's
    /// retry. A saga that is not stalled ignores it.
    pub async fn retry_order(&self, order_id: OrderId) -> Result<OrderView, Error> {
        let input = SagaInput::Retry { at: self.now() };
        Ok(self.host.send(&order_id.to_string(), input).await?.view)
    }

    /// Halts trading on a market (admin): submits are refused, cancels served.
    pub async fn halt(&self, symbol: Symbol) -> Result<(), Error> {
        let command = BookCommand::Halt { at: self.now() };
        self.books
            .ask(symbol.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(())
    }

    /// Resumes a halted market around `reference_price` (default: the last trade price).
    pub async fn resume(
        &self,
        symbol: Symbol,
        reference_price: Option<Price>,
    ) -> Result<(), Error> {
        let command = BookCommand::Resume {
            reference_price,
            at: self.now(),
        };
        self.books
            .ask(symbol.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(())
    }

    /// The market's latest trades (up to `limit`), newest first, from the trade tape.
    pub async fn trades(&self, symbol: Symbol, limit: usize) -> Result<Vec<Trade>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sql::fetch(
            self.journal.read_models(),
            &format!(
                "SELECT {} FROM trading_trades WHERE symbol = $1 ORDER BY trade_id DESC LIMIT $2",
                projections::trades::COLUMNS
            ),
            &[symbol.as_str().into(), limit.into()],
        )
        .await
        .map_err(|error| projections::storage("trades", error))?;
        rows.iter()
            .map(|row| projections::trades::trade_from_row(row))
            .collect::<Result<_, _>>()
            .map_err(|error| projections::storage("trades", error))
    }

    /// The market's candles of `interval`, up to `limit`, newest first.
    pub async fn candles(
        &self,
        symbol: Symbol,
        interval: CandleInterval,
        limit: usize,
    ) -> Result<Vec<Candle>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sql::fetch(
            self.journal.read_models(),
            &format!(
                "SELECT {} FROM trading_candles WHERE symbol = $1 AND interval_seconds = $2 \
                 ORDER BY bucket_start DESC LIMIT $3",
                projections::candles::COLUMNS
            ),
            &[
                symbol.as_str().into(),
                interval.seconds().into(),
                limit.into(),
            ],
        )
        .await
        .map_err(|error| projections::storage("candles", error))?;
        rows.iter()
            .map(|row| Candle::from_row(row))
            .collect::<Result<_, _>>()
            .map_err(|error| projections::storage("candles", error))
    }

    /// The account as of `valid_at`, as known at `known_at` (bitemporal).
    pub async fn account_history(
        &self,
        account_id: AccountId,
        valid_at: Timestamp,
        known_at: Timestamp,
    ) -> Result<AccountHistory, Error> {
        let stream = stream_of::<Account>(account_id.as_str());
        let codec = <Account as Persistent>::codec();
        let failed = |error: tradefloor_persistence::Error| Error::Persistence {
            actor: stream.clone(),
            reason: error.to_string(),
        };
        let mut stored = Vec::new();
        loop {
            let page = self
                .journal
                .read_stream(
                    &stream,
                    stored.len() as u64 + 1,
                    self.journal.config().read_rows_max,
                )
                .await
                .map_err(failed)?;
            if page.is_empty() {
                break;
            }
            stored.extend(page);
        }
        let events = stored
            .iter()
            .map(|event| Ok((Timestamp(event.recorded_at), codec.decode(event)?)))
            .collect::<Result<Vec<(Timestamp, AccountEvent)>, tradefloor_persistence::Error>>()
            .map_err(failed)?;
        let view = account_as_of(
            events.iter().map(|(recorded_at, event)| RecordedEvent {
                recorded_at: *recorded_at,
                event,
            }),
            valid_at,
            known_at,
        );
        Ok(AccountHistory {
            balances: view.balances,
            events: view
                .events
                .iter()
                .map(|recorded| (recorded.recorded_at, recorded.event.clone()))
                .collect(),
        })
    }

    /// Whether every read model and the book feed have handled every event of the log that
    /// they read (for tests and readiness checks).
    pub async fn caught_up(&self) -> Result<bool, Error> {
        let lags = self.consumer_lags(1).await?;
        Ok(lags.iter().all(|(_, lag)| *lag == 0))
    }

    /// How many events each read model and the book feed still have to handle, counted up to
    /// `probe_max` (a consumer further behind shows `probe_max`).
    pub async fn consumer_lags(
        &self,
        probe_max: usize,
    ) -> Result<Vec<(&'static str, usize)>, Error> {
        let offsets = OffsetStore::new(self.journal.read_models().clone());
        let mut lags = Vec::new();
        for (name, filter) in consumers() {
            let failed = |error: tradefloor_persistence::Error| Error::Persistence {
                actor: name.to_owned(),
                reason: error.to_string(),
            };
            let offset = offsets
                .load(name, PROJECTION_PARTITION)
                .await
                .map_err(failed)?;
            let ahead = self
                .journal
                .read_all(offset, probe_max, &filter)
                .await
                .map_err(failed)?;
            lags.push((name, ahead.len()));
        }
        Ok(lags)
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

/// Every single-partition consumer of the log (the book feed and the read models), with the
/// events it reads.
fn consumers() -> [(&'static str, tradefloor_persistence::Filter); 6] {
    [
        (
            feed::FEED_NAME,
            tradefloor_persistence::Filter::Kind("order_book".to_owned()),
        ),
        (
            projections::balances::NAME,
            projections::balances::BalancesProjection.filter(),
        ),
        (
            projections::orders::NAME,
            // The sagas' events and the facts of the accounts and the books about orders.
            tradefloor_persistence::Filter::All,
        ),
        (
            projections::trades::NAME,
            projections::trades::TradesProjection.filter(),
        ),
        (
            projections::candles::NAME,
            projections::trades::TradesProjection.filter(),
        ),
        (
            projections::audit::NAME,
            projections::audit::AuditProjection.filter(),
        ),
    ]
}

/// Attempts at creating the read-model tables.
const CREATE_TABLES_ATTEMPTS: u32 = 5;

/// Creates the read-model tables if missing. Nodes of a cluster start together: two
/// PostgreSQL sessions creating one table at once can both pass `IF NOT EXISTS` and the
/// loser fails on the catalog's unique index; the next attempt finds the table.
async fn create_tables(database: &tradefloor_persistence::Database) -> Result<(), Error> {
    let mut attempt = 1;
    loop {
        let created = match projections::create_tables(database).await {
            Ok(()) => risk::create_table(database)
                .await
                .map_err(|error| projections::storage("risk", error)),
            Err(error) => Err(error),
        };
        match created {
            Err(error) if attempt < CREATE_TABLES_ATTEMPTS => {
                tracing::debug!(%error, attempt, "read-model tables not created yet");
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

fn projection_spec<P: Projection + Default>(
    journal: &Journal,
    config: &TradingConfig,
    projection: P,
) -> crate::runtime::supervisor::ChildSpec {
    let name = projection.name().to_owned();
    ProjectionActor::spec(
        name,
        journal.clone(),
        config.projections.clone(),
        P::default,
    )
}
