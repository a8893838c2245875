//! One live strategy: a supervised actor that follows the log's price prints of its symbol,
//! decides each closed bar (`tradefloor_strategy`), places its orders through the ordinary
//! placement path under its own account, journals what it decided and checkpoints where it
//! stands.
//!
//! Exactly one order per bar, across crashes: an order's client id is its bar's start, so a
//! strategy that resumes from an older checkpoint and decides the same bars again asks for
//! the same orders, which the placement answers as retries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tradefloor_domain::{
    AccountId, Asset, ClientOrderId, OrderReference, OrderStatus, OrderType, Price, Quantity, Side,
    Symbol, TimeInForce,
};
use tradefloor_persistence::{AppendRequest, EventCodec, Journal, StoredEvent};
use tradefloor_strategy::engine::{Decision, OrderSide, Position};
use tradefloor_strategy::predictor::Logistic;
use tradefloor_strategy::tick::PriceBar;
use tradefloor_strategy::{Direction, LogisticModel, Strategy, StrategyEvent, StrategySpec};

use super::record::{JournalEntry, StrategyRecord};
use super::status::StrategyStatus;
use super::{STRATEGY_KIND, read_record, storage, strategy_codec, stream_of};
use crate::error::Error;
use crate::hosting::log_tail::{LogTail, TailWaker};
use crate::runtime::supervisor::Progress;
use crate::trading::config::StrategiesConfig;
use crate::trading::{Exchange, NewOrder};

/// What a strategy actor answers to.
#[derive(Debug)]
pub(super) enum StrategyMessage {
    /// The log bus has a batch, or the poll interval passed.
    Wake,
    /// The last batch was cut short: take the next one.
    Poll,
    /// Checkpoint now and answer (before a stop).
    Checkpoint(RpcReplyPort<()>),
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for StrategyMessage {}

/// What a strategy actor starts with.
#[derive(Clone)]
pub(super) struct StrategyArgs {
    /// Its id.
    pub id: String,
    /// The journal.
    pub journal: Journal,
    /// The exchange it trades on (weak: the node's shutdown takes the exchange back).
    pub exchange: Weak<Exchange>,
    /// What users read of it.
    pub status: Arc<Mutex<StrategyStatus>>,
    /// Its limits.
    pub config: StrategiesConfig,
    /// Its progress, watched by its supervisor.
    pub progress: Option<Progress>,
}

/// A running strategy.
pub(super) struct StrategyRun {
    args: StrategyArgs,
    spec: StrategySpec,
    account: AccountId,
    market: Symbol,
    /// The market's base asset: the position.
    base: Asset,
    strategy: Strategy,
    tail: LogTail,
    waker: Option<TailWaker>,
    codec: EventCodec<StrategyEvent>,
    /// The stream's last sequence (this actor is its one writer while it runs).
    sequence: u64,
    last_decided_bar: Option<i64>,
    last_direction: Option<Direction>,
    /// Orders answered since the last checkpoint (not placed again when their bars are
    /// decided again after a restart).
    answered: BTreeSet<u64>,
    /// The last event whose ticks were all taken.
    taken: u64,
    bars_since_checkpoint: u64,
    /// Each logistic predictor's model file and when it was last read.
    models: BTreeMap<usize, (String, Option<SystemTime>)>,
}

/// The actor of one strategy.
#[derive(Debug, Default)]
pub(super) struct StrategyActor;

fn read_model(path: &str) -> Result<LogisticModel, tradefloor_strategy::Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| tradefloor_strategy::Error::InvalidModel(format!("{path}: {error}")))?;
    LogisticModel::from_json(&text)
}

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

impl StrategyRun {
    async fn open(args: StrategyArgs) -> Result<Self, Error> {
        let record: StrategyRecord = read_record(&args.journal, &args.id).await?;
        let spec = record.spec.clone().ok_or_else(|| Error::StartFailed {
            actor: stream_of(&args.id),
            reason: "no such strategy".to_owned(),
        })?;
        let invalid = |reason: String| Error::StartFailed {
            actor: stream_of(&args.id),
            reason,
        };
        let strategy = match record.state.clone() {
            Some(state) => Strategy::resume(spec.clone(), state, &read_model),
            None => Strategy::new(spec.clone(), &read_model),
        }
        .map_err(|error| invalid(error.to_string()))?;
        let account = AccountId::new(spec.account.as_deref().unwrap_or_default())
            .map_err(|error| invalid(error.to_string()))?;
        let market = Symbol::new(spec.market()).map_err(|error| invalid(error.to_string()))?;
        let exchange = args.exchange.upgrade().ok_or_else(|| Error::Stopped {
            actor: stream_of(&args.id),
        })?;
        let base = exchange.market(market).await?.base;
        drop(exchange);
        let models = spec
            .predictors
            .iter()
            .enumerate()
            .filter_map(|(index, predictor)| {
                let path = predictor.model.clone()?;
                let at = modified(&path);
                Some((index, (path, at)))
            })
            .collect();
        let tail = LogTail::new(
            args.journal.clone(),
            super::prints(),
            record.cursor,
            args.config.batch_events_max,
        );
        args.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running(&record, &strategy);
        Ok(Self {
            spec,
            account,
            market,
            base,
            strategy,
            tail,
            waker: None,
            codec: strategy_codec(),
            sequence: record.sequence,
            last_decided_bar: record.last_decided_bar,
            last_direction: None,
            answered: record.answered_since_checkpoint.clone(),
            taken: record.cursor,
            bars_since_checkpoint: 0,
            models,
            args,
        })
    }

    fn exchange(&self) -> Result<Arc<Exchange>, Error> {
        self.args.exchange.upgrade().ok_or_else(|| Error::Stopped {
            actor: stream_of(&self.args.id),
        })
    }

    /// Appends `events` to the strategy's stream.
    async fn journal(&mut self, events: &[StrategyEvent]) -> Result<(), Error> {
        let events = events
            .iter()
            .map(|event| self.codec.to_new_event(event, Vec::new(), None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(storage)?;
        let outcome = self
            .args
            .journal
            .append(AppendRequest {
                stream: stream_of(&self.args.id),
                kind: STRATEGY_KIND.to_owned(),
                expected_sequence: self.sequence,
                events,
                fence: None,
            })
            .await
            .map_err(storage)?;
        self.sequence = outcome.last_sequence;
        Ok(())
    }

    /// Takes the log's next batch.
    async fn step(&mut self) -> Result<(), Error> {
        let events = self.tail.next().await.map_err(storage)?;
        for stored in &events {
            self.take(stored).await?;
        }
        if events.is_empty() {
            self.taken = self.taken.max(self.tail.cursor());
        }
        if self.bars_since_checkpoint >= self.args.config.checkpoint_bars {
            self.checkpoint().await?;
        }
        let state = self.strategy.state();
        let mut status = self
            .args
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        status.ticks = state.ticks;
        Ok(())
    }

    async fn take(&mut self, stored: &StoredEvent) -> Result<(), Error> {
        for tick in super::ticks_of(stored, &self.spec.symbol, self.spec.source)? {
            if let Some(bar) = self.strategy.on_tick(&tick) {
                self.bar(&bar).await?;
            }
        }
        self.taken = stored.global_offset;
        Ok(())
    }

    /// Decides a closed bar and places its order.
    async fn bar(&mut self, bar: &PriceBar) -> Result<(), Error> {
        self.reload_models();
        let exchange = self.exchange()?;
        let position = self.position(&exchange).await?;
        let decision = self.strategy.decide(bar, position);
        self.bars_since_checkpoint += 1;
        let replayed = self.last_decided_bar.is_some_and(|last| bar.start <= last);
        let turned = self.last_direction != Some(decision.signal.direction);
        self.last_direction = Some(decision.signal.direction);
        let mut entries = Vec::new();
        if !replayed && (turned || decision.order.is_some() || decision.refused.is_some()) {
            let event = decided(&decision);
            self.journal(std::slice::from_ref(&event)).await?;
            self.last_decided_bar = Some(bar.start);
            entries.push((None, JournalEntry::of(&event)));
        }
        let order = decision
            .order
            .as_ref()
            .filter(|order| !self.answered.contains(&order.client_order_id));
        if let Some(order) = order {
            let answer = self.place(&exchange, order).await;
            self.answered.insert(order.client_order_id);
            self.journal(std::slice::from_ref(&answer)).await?;
            let answered = matches!(answer, StrategyEvent::OrderAnswered { .. });
            entries.push((Some(answered), JournalEntry::of(&answer)));
        }
        let mut status = self
            .args
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        status.decided(&self.strategy, &decision);
        for (answered, entry) in entries {
            status.entry(answered, entry);
        }
        Ok(())
    }

    /// The account's position on the market as risk counts it: the base it holds plus what
    /// its open buys would add, and what it holds less what its open sells offer.
    async fn position(&self, exchange: &Exchange) -> Result<Position, Error> {
        let account = exchange.account(self.account).await?;
        let held = account
            .balances
            .get(&self.base)
            .map_or(0, |balance| balance.total.get());
        let (mut buying, mut selling) = (0_u64, 0_u64);
        for order in account
            .open_orders
            .iter()
            .filter(|order| order.symbol == self.market)
        {
            let open = order
                .quantity
                .get()
                .saturating_sub(order.filled_quantity.get());
            match order.side {
                Side::Buy => buying = buying.saturating_add(open),
                Side::Sell => selling = selling.saturating_add(open),
            }
        }
        Ok(Position {
            with_open_buys: held.saturating_add(buying),
            sellable: held.saturating_sub(selling),
        })
    }

    /// Places `order` under the strategy's account; what the placement answered.
    async fn place(
        &self,
        exchange: &Exchange,
        order: &tradefloor_strategy::OrderIntent,
    ) -> StrategyEvent {
        let failed = |reason: String| StrategyEvent::OrderFailed {
            client_order_id: order.client_order_id,
            reason,
        };
        let client = match ClientOrderId::new(order.client_order_id) {
            Ok(client) => client,
            Err(error) => return failed(error.to_string()),
        };
        let order_id = exchange.order_id_for(self.account, OrderReference::Client(client));
        let new = NewOrder {
            order_id: Some(order_id),
            account_id: self.account,
            symbol: self.market,
            side: match order.side {
                OrderSide::Buy => Side::Buy,
                OrderSide::Sell => Side::Sell,
            },
            order_type: OrderType::Limit,
            price: Some(Price(order.price)),
            quantity: Quantity(order.quantity),
            time_in_force: TimeInForce::Gtc,
            post_only: false,
        };
        match exchange.place_order(new).await {
            Ok(view) if view.status == OrderStatus::Rejected => failed(
                view.reject_reason
                    .map_or_else(|| "rejected".to_owned(), |reason| reason.to_string()),
            ),
            Ok(view) => StrategyEvent::OrderAnswered {
                client_order_id: order.client_order_id,
                order_id: view.order_id.0,
                status: format!("{:?}", view.status).to_lowercase(),
            },
            Err(error) => failed(error.to_string()),
        }
    }

    /// Reads again each model file that changed; a file that no longer reads leaves the
    /// predictor as it was (and says so in the status).
    fn reload_models(&mut self) {
        for (index, (path, seen)) in &mut self.models {
            let now = modified(path);
            if now == *seen {
                continue;
            }
            *seen = now;
            let outcome = read_model(path).map(|model| {
                self.strategy
                    .replace_predictor(*index, Box::new(Logistic::new(model)));
            });
            let mut status = self
                .args
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            status.model_reloaded(path, outcome.err().map(|error| error.to_string()));
        }
    }

    async fn checkpoint(&mut self) -> Result<(), Error> {
        let event = StrategyEvent::Checkpointed {
            cursor: self.taken,
            state: Box::new(self.strategy.state().clone()),
        };
        self.journal(&[event]).await?;
        self.answered.clear();
        self.bars_since_checkpoint = 0;
        Ok(())
    }
}

fn decided(decision: &Decision) -> StrategyEvent {
    StrategyEvent::Decided {
        bar_start: decision.bar.start,
        close: decision.bar.close,
        score: decision.signal.score,
        direction: decision.signal.direction,
        fallback: decision.signal.fallback,
        order: decision.order.clone(),
        refused: decision.refused.clone(),
    }
}

impl Actor for StrategyActor {
    type Msg = StrategyMessage;
    type State = StrategyRun;
    type Arguments = StrategyArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<StrategyMessage>,
        args: StrategyArgs,
    ) -> Result<StrategyRun, ActorProcessingErr> {
        Ok(StrategyRun::open(args).await?)
    }

    async fn post_start(
        &self,
        myself: ActorRef<StrategyMessage>,
        run: &mut StrategyRun,
    ) -> Result<(), ActorProcessingErr> {
        run.waker = Some(TailWaker::spawn(
            &run.args.journal,
            myself,
            run.args.config.poll_interval,
            std::time::Duration::ZERO,
            None,
            || StrategyMessage::Wake,
        ));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<StrategyMessage>,
        message: StrategyMessage,
        run: &mut StrategyRun,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            StrategyMessage::Checkpoint(reply) => {
                run.checkpoint().await?;
                let _ = reply.send(());
                return Ok(());
            }
            StrategyMessage::Wake => {
                if let Some(waker) = &run.waker {
                    waker.woken(&mut run.tail);
                }
            }
            StrategyMessage::Poll => {}
        }
        run.step().await?;
        if let Some(progress) = &run.args.progress {
            progress.record();
        }
        if run.tail.has_more() {
            myself.send_message(StrategyMessage::Poll)?;
        }
        Ok(())
    }
}
