//! Live strategies: each a supervised persistent actor on the node (under
//! `/trading/strategies/{id}`), fed by the log's price prints, trading under its own account
//! through the ordinary placement path (see `tradefloor_strategy` for what it decides).
//!
//! A strategy's journal (`strategy|{id}`) holds its spec, its starts and stops, the decisions
//! that asked for an order or turned the signal, the placement's answers and checkpoints
//! (every `checkpoint_bars` bars and at every stop). A node that restarts starts again every
//! strategy whose last start is later than its last stop, from its last checkpoint. Stopping
//! is the kill switch: the actor checkpoints and stops, then every order of its account still
//! open on its market is cancelled (the placement's saga releases the holds).
//!
//! One strategy per account (its position is the account's), and strategies run on a node of
//! its own (not yet on a cluster, where every node would run them).

mod actor;
mod record;
mod status;
pub mod ticks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ractor::{Actor, ActorRef};
use serde::Serialize;
use tradefloor_domain::{AccountId, Message, Symbol};
use tradefloor_persistence::{AppendRequest, EventCodec, Filter, Journal};
use tradefloor_strategy::{StrategyEvent, StrategySpec};

pub use status::{BreakerView, RunState, StrategyStatus};
pub use ticks::{prints, ticks_of};

use self::actor::{StrategyActor, StrategyArgs, StrategyMessage};
use self::record::StrategyRecord;
use super::Exchange;
use crate::error::Error;
use crate::runtime::supervisor::{
    ChildContext, ChildSpec, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage,
};

/// The kind of strategies' streams.
pub const STRATEGY_KIND: &str = "strategy";
/// The tag of each strategy's `created` event: the index of strategies.
const CREATED_TAG: &str = "strategy.created";
/// How long a stop waits for the actor's last checkpoint.
const STOP_CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The stream of strategy `id`.
pub fn stream_of(id: &str) -> String {
    format!("{STRATEGY_KIND}|{id}")
}

pub(crate) fn strategy_codec() -> EventCodec<StrategyEvent> {
    EventCodec::new(
        StrategyEvent::SCHEMA_VERSION,
        StrategyEvent::name,
        StrategyEvent::NAMES,
    )
}

fn storage(error: impl std::fmt::Display) -> Error {
    Error::Persistence {
        actor: "strategies".to_owned(),
        reason: error.to_string(),
    }
}

fn rejected(error: tradefloor_domain::Error) -> Error {
    Error::Rejected(error)
}

/// Folds strategy `id`'s journal.
async fn read_record(journal: &Journal, id: &str) -> Result<StrategyRecord, Error> {
    let codec = strategy_codec();
    let stream = stream_of(id);
    let mut record = StrategyRecord::default();
    loop {
        let page = journal
            .read_stream(&stream, record.sequence + 1, journal.config().read_rows_max)
            .await
            .map_err(storage)?;
        let Some(last) = page.last().map(|stored| stored.sequence) else {
            return Ok(record);
        };
        for stored in &page {
            record.apply(stored.sequence, &codec.decode(stored).map_err(storage)?);
        }
        debug_assert_eq!(record.sequence, last);
    }
}

/// A strategy as users read it: its status with its account's position and PnL.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyView {
    /// What it is and what it did.
    #[serde(flatten)]
    pub status: StrategyStatus,
    /// Base units its account holds.
    pub position: u64,
    /// Its account's gain since its last start, in quote units, the base marked at the last
    /// close: `Δquote + Δbase × close`.
    pub pnl: Option<i128>,
}

/// A strategy running on this node.
struct Running {
    supervisor: ActorRef<SupervisorMessage>,
    actor: Arc<Mutex<Option<ActorRef<StrategyMessage>>>>,
    status: Arc<Mutex<StrategyStatus>>,
}

/// The strategies running on a node.
#[derive(Default)]
pub struct Strategies {
    running: tokio::sync::Mutex<BTreeMap<String, Running>>,
}

impl std::fmt::Debug for Strategies {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Strategies").finish_non_exhaustive()
    }
}

impl Strategies {
    /// Stops every strategy's actor without journaling a stop: they start again with the node.
    async fn shutdown(&self) {
        for (_, running) in std::mem::take(&mut *self.running.lock().await) {
            running.supervisor.stop(None);
        }
    }
}

impl Exchange {
    /// Stops every strategy's actor without journaling a stop (the node is shutting down:
    /// they start again with it, from their checkpoints).
    pub async fn pause_strategies(&self) {
        self.strategies.shutdown().await;
    }

    /// What the strategies running on this node say now (for metrics: no journal read).
    pub async fn running_strategies(&self) -> Vec<StrategyStatus> {
        self.strategies
            .running
            .lock()
            .await
            .values()
            .map(|run| {
                run.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .collect()
    }

    /// The ids of every strategy defined (from the journal's index of them).
    async fn strategy_ids(&self) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        let mut after = 0;
        let filter = Filter::Tag(CREATED_TAG.to_owned());
        loop {
            let page = self
                .journal
                .read_all(after, self.journal.config().read_rows_max, &filter)
                .await
                .map_err(storage)?;
            let Some(last) = page.last() else {
                return Ok(ids);
            };
            after = last.global_offset;
            ids.extend(page.iter().filter_map(|stored| {
                let (_, id) = stored.stream.split_once('|')?;
                Some(id.to_owned())
            }));
        }
    }

    /// Defines a strategy and starts it.
    ///
    /// # Errors
    ///
    /// `invalid_strategy` (an invalid spec, no account, an unknown market, a clustered node),
    /// `strategy_exists` (its id, or another strategy on its account), overloaded at
    /// `strategies_max`, or the journal's errors.
    pub async fn create_strategy(
        self: &Arc<Self>,
        spec: StrategySpec,
    ) -> Result<StrategyView, Error> {
        let invalid =
            |reason: String| rejected(tradefloor_domain::Error::InvalidStrategy { reason });
        spec.validate()
            .map_err(|error| invalid(error.to_string()))?;
        if self.remoting.is_some() {
            return Err(invalid(
                "strategies run on a node of its own, not yet on a cluster".to_owned(),
            ));
        }
        let account = spec
            .account
            .as_deref()
            .ok_or_else(|| invalid("a live strategy names its account".to_owned()))?;
        AccountId::new(account).map_err(rejected)?;
        self.market(Symbol::new(spec.market()).map_err(rejected)?)
            .await?;
        let ids = self.strategy_ids().await?;
        if ids.len() >= self.config.strategies.strategies_max {
            return Err(Error::Overloaded {
                actor: "strategies".to_owned(),
                capacity: self.config.strategies.strategies_max,
            });
        }
        for other in &ids {
            let record = read_record(&self.journal, other).await?;
            let taken = record
                .spec
                .as_ref()
                .and_then(|other| other.account.as_deref())
                == Some(account);
            if other == &spec.id || taken {
                return Err(rejected(tradefloor_domain::Error::StrategyExists {
                    reason: format!("strategy {other} exists and trades account {account}"),
                }));
            }
        }
        let event = strategy_codec()
            .to_new_event(
                &StrategyEvent::Created { spec: spec.clone() },
                vec![CREATED_TAG.to_owned()],
                None,
            )
            .map_err(storage)?;
        self.journal
            .append(AppendRequest {
                stream: stream_of(&spec.id),
                kind: STRATEGY_KIND.to_owned(),
                expected_sequence: 0,
                events: vec![event],
                fence: None,
            })
            .await
            .map_err(|error| match error {
                tradefloor_persistence::Error::Conflict { .. } => {
                    rejected(tradefloor_domain::Error::StrategyExists {
                        reason: format!("strategy {} exists", spec.id),
                    })
                }
                other => storage(other),
            })?;
        tracing::info!(strategy = %spec.id, account, "strategy created");
        self.start_strategy(&spec.id).await
    }

    /// Starts a stopped strategy (reading the log from now, its state from its last
    /// checkpoint); a running one is left as it is.
    ///
    /// # Errors
    ///
    /// `strategy_not_found`, or what its start failed with.
    pub async fn start_strategy(self: &Arc<Self>, id: &str) -> Result<StrategyView, Error> {
        let mut running = self.strategies.running.lock().await;
        if !running.contains_key(id) {
            let record = self.strategy_record(id).await?;
            if !record.running {
                let account = self.strategy_account(&record)?;
                let (base, quote) = self.balances_of(&record, account).await?;
                let started = StrategyEvent::Started {
                    at: self.now().micros(),
                    from_offset: self.journal.last_offset().await.map_err(storage)?,
                    base,
                    quote,
                };
                self.append_strategy(id, record.sequence, &started).await?;
            }
            running.insert(id.to_owned(), self.spawn_strategy(id).await?);
            tracing::info!(strategy = %id, "strategy started");
        }
        drop(running);
        self.strategy(id).await
    }

    /// The kill switch: checkpoints and stops strategy `id`, then cancels every order of its
    /// account still open on its market.
    ///
    /// # Errors
    ///
    /// `strategy_not_found`, or the journal's errors.
    pub async fn stop_strategy(
        self: &Arc<Self>,
        id: &str,
        reason: &str,
    ) -> Result<StrategyView, Error> {
        let mut running = self.strategies.running.lock().await;
        if let Some(run) = running.remove(id) {
            let actor = run
                .actor
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(actor) = actor {
                // A failed checkpoint only means the strategy resumes from an earlier one.
                let checkpoint = ractor::call_t!(
                    actor,
                    StrategyMessage::Checkpoint,
                    u64::try_from(STOP_CHECKPOINT_WAIT.as_millis()).unwrap_or(u64::MAX)
                );
                if let Err(error) = checkpoint {
                    tracing::warn!(strategy = %id, %error, "no checkpoint at the stop");
                }
            }
            run.supervisor
                .stop_and_wait(Some(reason.to_owned()), Some(STOP_CHECKPOINT_WAIT))
                .await
                .map_err(storage)?;
        }
        let record = self.strategy_record(id).await?;
        if record.running {
            let cancelled = self.cancel_strategy_orders(&record).await?;
            let stopped = StrategyEvent::Stopped {
                at: self.now().micros(),
                reason: reason.to_owned(),
                cancelled,
            };
            self.append_strategy(id, record.sequence, &stopped).await?;
            tracing::info!(strategy = %id, reason, cancelled, "strategy stopped");
        }
        drop(running);
        self.strategy(id).await
    }

    /// Strategy `id` as users read it.
    ///
    /// # Errors
    ///
    /// `strategy_not_found`, or the journal's errors.
    pub async fn strategy(&self, id: &str) -> Result<StrategyView, Error> {
        let live = self.strategies.running.lock().await.get(id).map(|run| {
            run.status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
        let (status, record) = match live {
            Some(status) => (status, None),
            None => {
                let record = self.strategy_record(id).await?;
                (StrategyStatus::of_record(id, &record), Some(record))
            }
        };
        let spec = status.spec.clone().or_else(|| record.and_then(|r| r.spec));
        let account = spec
            .as_ref()
            .and_then(|spec| spec.account.as_deref())
            .and_then(|account| AccountId::new(account).ok());
        let market = spec
            .as_ref()
            .and_then(|spec| Symbol::new(spec.market()).ok());
        let (position, pnl) = match (account, market) {
            (Some(account), Some(market)) => {
                self.position_and_pnl(&status, account, market).await?
            }
            _ => (0, None),
        };
        Ok(StrategyView {
            status,
            position,
            pnl,
        })
    }

    /// Every strategy defined.
    ///
    /// # Errors
    ///
    /// The journal's errors.
    pub async fn strategies(&self) -> Result<Vec<StrategyView>, Error> {
        let mut views = Vec::new();
        for id in self.strategy_ids().await? {
            views.push(self.strategy(&id).await?);
        }
        Ok(views)
    }

    /// Starts again every strategy whose last start is later than its last stop (at the
    /// node's start).
    ///
    /// # Errors
    ///
    /// The journal's errors, or a strategy that does not start.
    pub async fn resume_strategies(self: &Arc<Self>) -> Result<usize, Error> {
        if self.remoting.is_some() {
            return Ok(0);
        }
        let mut resumed = 0;
        for id in self.strategy_ids().await? {
            if read_record(&self.journal, &id).await?.running {
                // One strategy that does not start must not keep the node from serving:
                // it says why, and a user starts it again.
                match self.start_strategy(&id).await {
                    Ok(_) => resumed += 1,
                    Err(error) => tracing::error!(strategy = %id, %error, "strategy not resumed"),
                }
            }
        }
        Ok(resumed)
    }

    async fn strategy_record(&self, id: &str) -> Result<StrategyRecord, Error> {
        let record = read_record(&self.journal, id).await?;
        if record.spec.is_none() {
            return Err(rejected(tradefloor_domain::Error::StrategyNotFound {
                id: id.to_owned(),
            }));
        }
        Ok(record)
    }

    fn strategy_account(&self, record: &StrategyRecord) -> Result<AccountId, Error> {
        let account = record
            .spec
            .as_ref()
            .and_then(|spec| spec.account.as_deref());
        AccountId::new(account.unwrap_or_default()).map_err(rejected)
    }

    /// The account's base and quote totals on the strategy's market.
    async fn balances_of(
        &self,
        record: &StrategyRecord,
        account: AccountId,
    ) -> Result<(u64, u64), Error> {
        let spec = record.spec.as_ref().expect("a record with a spec");
        let market = self
            .market(Symbol::new(spec.market()).map_err(rejected)?)
            .await?;
        let view = self.account(account).await?;
        let total = |asset| {
            view.balances
                .get(&asset)
                .map_or(0, |balance| balance.total.get())
        };
        Ok((total(market.base), total(market.quote)))
    }

    async fn position_and_pnl(
        &self,
        status: &StrategyStatus,
        account: AccountId,
        market: Symbol,
    ) -> Result<(u64, Option<i128>), Error> {
        let spec = self.market(market).await?;
        let view = self.account(account).await?;
        let total = |asset| {
            view.balances
                .get(&asset)
                .map_or(0, |balance| balance.total.get())
        };
        let (base, quote) = (total(spec.base), total(spec.quote));
        let pnl = match (status.start_balances, status.last_close) {
            (Some((base0, quote0)), Some(close)) => Some(
                i128::from(quote) - i128::from(quote0)
                    + (i128::from(base) - i128::from(base0)) * i128::from(close),
            ),
            _ => None,
        };
        Ok((base, pnl))
    }

    async fn append_strategy(
        &self,
        id: &str,
        expected: u64,
        event: &StrategyEvent,
    ) -> Result<(), Error> {
        let event = strategy_codec()
            .to_new_event(event, Vec::new(), None)
            .map_err(storage)?;
        self.journal
            .append(AppendRequest {
                stream: stream_of(id),
                kind: STRATEGY_KIND.to_owned(),
                expected_sequence: expected,
                events: vec![event],
                fence: None,
            })
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// Cancels every order of the strategy's account open on its market; how many.
    async fn cancel_strategy_orders(&self, record: &StrategyRecord) -> Result<u32, Error> {
        let account = self.strategy_account(record)?;
        let spec = record.spec.as_ref().expect("a record with a spec");
        let market = Symbol::new(spec.market()).map_err(rejected)?;
        let mut cancelled = 0;
        for order in self.account(account).await?.open_orders {
            if order.symbol == market {
                self.cancel_order(order.order_id).await?;
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    /// Starts strategy `id`'s actor under a supervisor of its own.
    async fn spawn_strategy(self: &Arc<Self>, id: &str) -> Result<Running, Error> {
        let status = Arc::new(Mutex::new(StrategyStatus {
            id: id.to_owned(),
            ..StrategyStatus::default()
        }));
        let actor = Arc::new(Mutex::new(None));
        let args = StrategyArgs {
            id: id.to_owned(),
            journal: self.journal.clone(),
            exchange: Arc::downgrade(self),
            status: status.clone(),
            config: self.config.strategies.clone(),
            progress: None,
        };
        let slot = actor.clone();
        let spec = ChildSpec::new("strategy", "strategy", move |context: ChildContext| {
            let mut args = args.clone();
            let slot = slot.clone();
            args.progress = Some(context.progress);
            async move {
                let (actor, _join) =
                    Actor::spawn_linked(None, StrategyActor, args, context.supervisor).await?;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(actor.clone());
                Ok(actor.get_cell())
            }
        });
        let path = format!("{}/strategies/{id}", self.config.path);
        let arguments = SupervisorArgs::new(path.clone(), SupervisionConfig::default(), vec![spec])
            .with_registry(self.registry.clone());
        let (supervisor, _join) =
            Actor::spawn(None, Supervisor, arguments)
                .await
                .map_err(|error| Error::StartFailed {
                    actor: path,
                    reason: error.to_string(),
                })?;
        Ok(Running {
            supervisor,
            actor,
            status,
        })
    }
}
