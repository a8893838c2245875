//! The rules monitor: a supervised actor (`{path}/rules`) following the log with the pattern
//! rules of `tradefloor_domain::rules`, journaling each match as an alert
//! ([`super::alerts`]) and carrying out its action: halt the market, throttle the account
//! (its order rate limit), or only flag (the alert is the flag).
//!
//! It starts at the log's head the first time (the rules watch what happens from then on, not
//! the history). Its offset is committed in the journal's database (`trading.rules`) after
//! each batch. After a crash it reads again from that offset, and an alert for an event at or
//! below the last one already raised is not raised twice (the alert stream's last alert says
//! where that is).
//! Windows live in memory: at a restart the monitor reads again the events before its offset
//! that its longest rule looks back over (at most [`WARM_UP_EVENTS_MAX`]), raising nothing
//! for them, so a pattern that straddles the restart is still matched.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tradefloor_domain::account::{Account, AccountEvent};
use tradefloor_domain::book::{BookEvent, EndReason, OrderBook};
use tradefloor_domain::rules::{Action, Alert, Fact, RuleEngine, RuleSet};
use tradefloor_domain::{AccountId, Aggregate, CommandId, Symbol};
use tradefloor_persistence::{AppendRequest, Filter, Journal, OffsetStore, StoredEvent};

use super::Exchange;
use super::alerts::{ALERT_KIND, ALERTS_STREAM, AlertEvent, alert_codec, storage};
use crate::error::Error;
use crate::hosting::entity::Persistent;
use crate::hosting::log_tail::{LogTail, TailWaker};
use crate::runtime::supervisor::{ChildContext, ChildSpec, Progress};

/// The monitor's key in the offset store.
pub const RULES_CONSUMER: &str = "trading.rules";
/// Most events read at once.
const BATCH_EVENTS_MAX: usize = 512;
/// Most events read again at a restart to refill the rules' windows.
pub const WARM_UP_EVENTS_MAX: u64 = 200_000;
/// How long the monitor waits for the log bus before reading the database anyway.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What the monitor answers to.
#[derive(Debug)]
pub enum RulesMessage {
    /// The log has more (or the poll interval passed).
    Wake,
    /// Go on with the next batch.
    Poll,
    /// Put these rules in force (their windows start empty).
    Replace(RuleSet),
}

impl ractor::Message for RulesMessage {}

/// Where the running monitor and its rules are, shared with the exchange.
#[derive(Debug, Default)]
pub struct RulesHandle {
    actor: Mutex<Option<ActorRef<RulesMessage>>>,
    rules: Mutex<RuleSet>,
}

impl RulesHandle {
    /// The rules in force.
    pub fn rules(&self) -> RuleSet {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_rules(&self, set: RuleSet) {
        *self.rules.lock().unwrap_or_else(PoisonError::into_inner) = set;
    }

    /// The running incarnation, if any.
    pub fn actor(&self) -> Option<ActorRef<RulesMessage>> {
        self.actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The monitor while it runs.
pub(super) struct RunningRules {
    pub(super) handle: Arc<RulesHandle>,
    pub(super) supervisor: ActorRef<crate::runtime::supervisor::SupervisorMessage>,
}

/// What the monitor starts with.
#[derive(Clone)]
struct RulesArgs {
    journal: Journal,
    exchange: Weak<Exchange>,
    handle: Arc<RulesHandle>,
    progress: Option<Progress>,
}

/// The monitor's state.
struct Monitor {
    args: RulesArgs,
    engine: RuleEngine,
    tail: LogTail,
    waker: Option<TailWaker>,
    /// The offset committed last.
    committed: u64,
    /// The trigger offset of the last alert raised (none is raised twice).
    last_raised: u64,
    /// The alert stream's last sequence (this actor is its one writer).
    sequence: u64,
}

struct RulesActor;

/// The facts the rules see in `stored`, if any.
fn facts_of(stored: &StoredEvent) -> Vec<Fact> {
    match stored.kind.as_str() {
        <OrderBook as Aggregate>::KIND => {
            let Ok(event) = OrderBook::codec().decode_shared(stored) else {
                return Vec::new();
            };
            let symbol = stored
                .stream
                .split_once('|')
                .map_or("", |(_, s)| s)
                .to_owned();
            match &*event {
                BookEvent::Traded(trade) => vec![Fact::Trade {
                    symbol,
                    trade: *trade,
                }],
                BookEvent::Ended {
                    account_id,
                    reason: EndReason::Cancelled,
                    at,
                    ..
                } => vec![Fact::Cancelled {
                    account: account_id.as_str().to_owned(),
                    at: at.micros(),
                }],
                // A halt by the band (an operator's has no trigger price).
                BookEvent::Halted {
                    trigger_price: Some(price),
                    band,
                    at,
                } => vec![Fact::BandHalt {
                    symbol,
                    price: price.get(),
                    band: band
                        .as_ref()
                        .map_or((0, 0), |band| (band.low.get(), band.high.get())),
                    at: at.micros(),
                }],
                _ => Vec::new(),
            }
        }
        <Account as Aggregate>::KIND => {
            let Ok(event) = Account::codec().decode_shared(stored) else {
                return Vec::new();
            };
            let account = stored
                .stream
                .split_once('|')
                .map_or("", |(_, a)| a)
                .to_owned();
            match &*event {
                AccountEvent::Deposited {
                    asset, amount, at, ..
                } => vec![Fact::Deposited {
                    account,
                    asset: asset.as_str().to_owned(),
                    amount: amount.get(),
                    at: at.micros(),
                }],
                AccountEvent::Withdrawn {
                    asset, amount, at, ..
                } => vec![Fact::Withdrawn {
                    account,
                    asset: asset.as_str().to_owned(),
                    amount: amount.get(),
                    at: at.micros(),
                }],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// Feeds `engine` the events up to `committed` that `rules`' longest window reaches back over
/// (at most [`WARM_UP_EVENTS_MAX`]), raising nothing: those were raised before the restart,
/// or never will be.
async fn warm_up(
    journal: &Journal,
    engine: &mut RuleEngine,
    rules: &RuleSet,
    committed: u64,
) -> Result<(), Error> {
    let longest = rules.longest_window_micros();
    if longest == 0 {
        return Ok(());
    }
    // The journal stamps events with the system's time.
    let now = crate::hosting::saga_host::system_clock()().micros();
    let since = now.saturating_sub(longest);
    let mut after = super::events::offset_before(journal, since)
        .await?
        .max(committed.saturating_sub(WARM_UP_EVENTS_MAX));
    let from = after;
    while after < committed {
        let page = journal
            .read_all(after, BATCH_EVENTS_MAX, &Filter::All)
            .await
            .map_err(storage)?;
        let Some(last) = page.last() else { break };
        for stored in page
            .iter()
            .take_while(|stored| stored.global_offset <= committed)
        {
            for fact in facts_of(stored) {
                drop(engine.observe(stored.global_offset, &fact));
            }
        }
        after = last.global_offset;
    }
    tracing::info!(from, to = committed, "rules' windows refilled");
    Ok(())
}

impl Monitor {
    async fn open(args: RulesArgs) -> Result<Self, Error> {
        let offsets = OffsetStore::new(args.journal.database().clone());
        let mut committed = offsets.load(RULES_CONSUMER, 0).await.map_err(storage)?;
        let first_start = committed == 0;
        if first_start {
            // First start: the rules watch what happens from now on, not the history (which
            // would halt markets and throttle accounts for patterns long past).
            committed = args.journal.last_offset().await.map_err(storage)?;
            if committed > 0 {
                offsets
                    .commit(RULES_CONSUMER, 0, committed)
                    .await
                    .map_err(storage)?;
            }
        }
        let sequence = args
            .journal
            .last_sequence(ALERTS_STREAM)
            .await
            .map_err(storage)?;
        let last_raised = match sequence {
            0 => 0,
            last => {
                let stored = args
                    .journal
                    .read_stream(ALERTS_STREAM, last, 1)
                    .await
                    .map_err(storage)?;
                match stored.first().map(|event| alert_codec().decode(event)) {
                    Some(Ok(AlertEvent::Raised(alert))) => alert.offset,
                    _ => 0,
                }
            }
        };
        let rules = args.handle.rules();
        let mut engine = RuleEngine::new(&rules);
        if !first_start {
            warm_up(&args.journal, &mut engine, &rules, committed).await?;
        }
        let tail = LogTail::new(
            args.journal.clone(),
            Filter::All,
            committed,
            BATCH_EVENTS_MAX,
        );
        Ok(Self {
            args,
            engine,
            tail,
            waker: None,
            committed,
            last_raised,
            sequence,
        })
    }

    /// Takes the next batch: each event's facts through the rules, each alert raised.
    async fn step(&mut self) -> Result<(), Error> {
        let events = self.tail.next().await.map_err(storage)?;
        for stored in &events {
            for fact in facts_of(stored) {
                for alert in self.engine.observe(stored.global_offset, &fact) {
                    if alert.offset > self.last_raised {
                        self.raise(alert).await?;
                    }
                }
            }
        }
        let cursor = self.tail.cursor();
        if cursor > self.committed {
            OffsetStore::new(self.args.journal.database().clone())
                .commit(RULES_CONSUMER, 0, cursor)
                .await
                .map_err(storage)?;
            self.committed = cursor;
            metrics::gauge!("tradefloor_rules_offset").set(cursor as f64);
        }
        Ok(())
    }

    /// Journals `alert`, then carries out its action.
    async fn raise(&mut self, alert: Alert) -> Result<(), Error> {
        let event = alert_codec()
            .to_new_event(&AlertEvent::Raised(alert.clone()), Vec::new(), None)
            .map_err(storage)?;
        let outcome = self
            .args
            .journal
            .append(AppendRequest {
                stream: ALERTS_STREAM.to_owned(),
                kind: ALERT_KIND.to_owned(),
                expected_sequence: self.sequence,
                events: vec![event],
                fence: None,
            })
            .await
            .map_err(storage)?;
        self.sequence = outcome.last_sequence;
        self.last_raised = alert.offset;
        let action = match alert.action {
            Action::Halt => "halt",
            Action::Flag => "flag",
            Action::Throttle { .. } => "throttle",
        };
        metrics::counter!("tradefloor_alerts_total", "rule" => alert.rule.clone(), "action" => action)
            .increment(1);
        tracing::warn!(rule = %alert.rule, key = %alert.key, offset = alert.offset, action,
            message = %alert.message, "alert raised");
        if let Err(error) = self.carry_out(&alert).await {
            // The alert stands; its action is for an operator to finish.
            tracing::error!(rule = %alert.rule, %error, "alert's action failed");
        }
        Ok(())
    }

    async fn carry_out(&self, alert: &Alert) -> Result<(), Error> {
        let Some(exchange) = self.args.exchange.upgrade() else {
            return Ok(());
        };
        match (alert.action, &alert.symbol, &alert.account) {
            (Action::Halt, Some(symbol), _) => {
                let symbol = Symbol::new(symbol).map_err(Error::Rejected)?;
                match exchange.halt(symbol).await {
                    // Halted already (by hand, or by the book's band): nothing to do.
                    Err(Error::Rejected(tradefloor_domain::Error::MarketHalted { .. })) => Ok(()),
                    other => other,
                }
            }
            (Action::Throttle { orders_per_second }, _, Some(account)) => {
                let account = AccountId::new(account).map_err(Error::Rejected)?;
                let mut limits = exchange.limits(account).await?;
                let rate = limits
                    .max_orders_per_second
                    .map_or(orders_per_second, |rate| rate.min(orders_per_second));
                limits.max_orders_per_second = Some(rate);
                // One command per alert: a replay of the alert changes nothing more.
                let command = CommandId::new(&format!("alert-{}-{}", alert.rule, alert.offset))
                    .map_err(Error::Rejected)?;
                exchange
                    .set_limits(account, limits, Some(command))
                    .await
                    .map(drop)
            }
            _ => Ok(()),
        }
    }
}

impl Actor for RulesActor {
    type Msg = RulesMessage;
    type State = Monitor;
    type Arguments = RulesArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RulesMessage>,
        args: RulesArgs,
    ) -> Result<Monitor, ActorProcessingErr> {
        Ok(Monitor::open(args).await?)
    }

    async fn post_start(
        &self,
        myself: ActorRef<RulesMessage>,
        monitor: &mut Monitor,
    ) -> Result<(), ActorProcessingErr> {
        monitor.waker = Some(TailWaker::spawn(
            &monitor.args.journal,
            myself.clone(),
            POLL_INTERVAL,
            Duration::ZERO,
            None,
            || RulesMessage::Wake,
        ));
        myself.send_message(RulesMessage::Poll)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RulesMessage>,
        message: RulesMessage,
        monitor: &mut Monitor,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RulesMessage::Replace(set) => {
                monitor.engine = RuleEngine::new(&set);
                return Ok(());
            }
            RulesMessage::Wake => {
                if let Some(waker) = &monitor.waker {
                    waker.woken(&mut monitor.tail);
                }
            }
            RulesMessage::Poll => {}
        }
        monitor.step().await?;
        if let Some(progress) = &monitor.args.progress {
            progress.record();
        }
        if monitor.tail.has_more() {
            myself.send_message(RulesMessage::Poll)?;
        }
        Ok(())
    }
}

impl Exchange {
    /// Starts the rules monitor with `configured` (unless an operator journaled a
    /// replacement, which wins) under a supervisor of its own at `{path}/rules`. Nothing
    /// happens if it runs already.
    pub async fn start_rules(self: &Arc<Self>, configured: RuleSet) -> Result<(), Error> {
        if self
            .rules_monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return Ok(());
        }
        let set = match super::alerts::journaled_rules(&self.journal).await? {
            Some((journaled, _)) => journaled,
            None => configured,
        };
        set.validate().map_err(|reason| Error::StartFailed {
            actor: "/rules".to_owned(),
            reason: format!("invalid rules: {reason}"),
        })?;
        let handle = Arc::new(RulesHandle::default());
        handle.set_rules(set);
        let args = RulesArgs {
            journal: self.journal.clone(),
            exchange: Arc::downgrade(self),
            handle: handle.clone(),
            progress: None,
        };
        let slot = handle.clone();
        let spec = ChildSpec::new("monitor", "rules", move |context: ChildContext| {
            let mut args = args.clone();
            args.progress = Some(context.progress);
            let slot = slot.clone();
            async move {
                let (actor, _join) =
                    Actor::spawn_linked(None, RulesActor, args, context.supervisor).await?;
                *slot.actor.lock().unwrap_or_else(PoisonError::into_inner) = Some(actor.clone());
                Ok(actor.get_cell())
            }
        });
        let path = format!("{}/rules", self.config.path);
        let arguments = crate::runtime::supervisor::SupervisorArgs::new(
            path.clone(),
            crate::runtime::supervisor::SupervisionConfig::default(),
            vec![spec],
        )
        .with_registry(self.registry.clone());
        let (supervisor, _join) =
            Actor::spawn(None, crate::runtime::supervisor::Supervisor, arguments)
                .await
                .map_err(|error| Error::StartFailed {
                    actor: path,
                    reason: error.to_string(),
                })?;
        *self
            .rules_monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(RunningRules { handle, supervisor });
        tracing::info!("rules monitor started");
        Ok(())
    }

    /// Stops the rules monitor, if it runs (at shutdown).
    pub fn stop_rules(&self) {
        let running = self
            .rules_monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(running) = running {
            running.supervisor.stop(None);
        }
    }
}
