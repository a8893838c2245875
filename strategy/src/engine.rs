//! A strategy's decisions: each closed bar updates the features, asks every predictor through
//! its breaker, weighs the answers into a signal and turns the signal into at most one order
//! that passed pre-trade risk. The caller owns the position (a backtest's ledger, or the
//! account on a node) and places the order.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tradefloor_domain::features::{FeatureValues, Features};

use crate::breaker::{Breaker, BreakerState};
use crate::ensemble::{self, Direction, Signal};
use crate::error::Error;
use crate::predictor::{LogisticModel, Prediction, Predictor, build};
use crate::spec::StrategySpec;
use crate::tick::{BarBuilder, PriceBar, Tick};

/// Decisions kept in a strategy's state for users to read.
pub const RECENT_DECISIONS_MAX: usize = 32;
/// The window of `max_orders_per_minute`, in microseconds.
const MINUTE_MICROS: i64 = 60_000_000;

/// A side of an order a strategy wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSide {
    /// Buy base with quote.
    Buy,
    /// Sell base for quote.
    Sell,
}

/// What a strategy holds, as risk counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Base units held plus what the open buys would add (a buy may not take it over
    /// `max_position`).
    pub with_open_buys: u64,
    /// Base units held and not offered by an open sell (what a sell may offer).
    pub sellable: u64,
}

impl Position {
    /// A position with no open order: `units` held.
    pub fn flat(units: u64) -> Self {
        Self {
            with_open_buys: units,
            sellable: units,
        }
    }
}

/// An order a strategy decided, past pre-trade risk: a limit at the bar's close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderIntent {
    /// Its client order id: the bar's start in seconds (one strategy per account, at most one
    /// order per bar), so that a strategy that decides the same bar again (after a restart)
    /// asks for the same order, which the placement then recognises as a retry.
    pub client_order_id: u64,
    /// Which side.
    pub side: OrderSide,
    /// Base units.
    pub quantity: u64,
    /// Limit price, quote units per base unit.
    pub price: u64,
}

/// Where one predictor's part of a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// It answered now.
    Live,
    /// It failed or its breaker is open: its last good prediction stood in.
    Cached,
    /// No prediction (warming up, or failed with nothing cached).
    None,
}

/// One predictor's part in a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorOutcome {
    /// The predictor.
    pub name: String,
    /// Its score, if any.
    pub score: Option<f64>,
    /// Where the score came from.
    pub source: Source,
    /// Its breaker after the call.
    pub breaker: BreakerState,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What a strategy decided on one bar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The bar.
    pub bar: PriceBar,
    /// The features after it.
    pub features: FeatureValues,
    /// Each predictor's part.
    pub predictions: Vec<PredictorOutcome>,
    /// The ensemble's signal.
    pub signal: Signal,
    /// The order it passed to the caller, if any.
    pub order: Option<OrderIntent>,
    /// Why pre-trade risk refused the order the signal wanted, if it did.
    pub refused: Option<String>,
}

/// Everything a strategy remembers between bars: what a checkpoint stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyState {
    bars: BarBuilder,
    features: Features,
    /// Bars decided.
    pub bars_decided: u64,
    breakers: Vec<Breaker>,
    cached: Vec<Option<Prediction>>,
    /// Starts of the bars an order was decided on, within the last minute.
    recent_orders: VecDeque<i64>,
    /// The latest decisions, newest last: for users to read, not part of a checkpoint (a
    /// live strategy checkpoints often; decisions with their features would make each
    /// checkpoint several times larger, and a resumed strategy decides the same without them).
    #[serde(skip)]
    pub decisions: VecDeque<Decision>,
    /// The last decided bar's close.
    pub last_close: Option<u64>,
    /// The last signal.
    pub last_signal: Option<Signal>,
    /// Ticks taken.
    pub ticks: u64,
    /// The last tick taken.
    pub last_tick: Option<Tick>,
}

/// A running strategy: its spec, its predictors and its state.
pub struct Strategy {
    spec: StrategySpec,
    predictors: Vec<Box<dyn Predictor>>,
    state: StrategyState,
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Strategy")
            .field("spec", &self.spec)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Strategy {
    /// A strategy from its start; `models` reads the model file of each logistic predictor.
    ///
    /// # Errors
    ///
    /// An invalid spec, or a model that cannot be read.
    pub fn new(
        spec: StrategySpec,
        models: &dyn Fn(&str) -> Result<LogisticModel, Error>,
    ) -> Result<Self, Error> {
        spec.validate()?;
        let state = StrategyState {
            bars: BarBuilder::new(spec.timeframe_seconds),
            features: Features::new(spec.features),
            bars_decided: 0,
            breakers: vec![Breaker::default(); spec.predictors.len()],
            cached: vec![None; spec.predictors.len()],
            recent_orders: VecDeque::new(),
            decisions: VecDeque::new(),
            last_close: None,
            last_signal: None,
            ticks: 0,
            last_tick: None,
        };
        Self::resume(spec, state, models)
    }

    /// A strategy going on from a checkpoint's state.
    ///
    /// # Errors
    ///
    /// An invalid spec, a state of another shape, or a model that cannot be read.
    pub fn resume(
        spec: StrategySpec,
        state: StrategyState,
        models: &dyn Fn(&str) -> Result<LogisticModel, Error>,
    ) -> Result<Self, Error> {
        spec.validate()?;
        if state.breakers.len() != spec.predictors.len()
            || state.cached.len() != spec.predictors.len()
        {
            return Err(Error::Checkpoint(
                "its predictors are not the strategy's".to_owned(),
            ));
        }
        let predictors = spec
            .predictors
            .iter()
            .map(|predictor| build(predictor, models))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            spec,
            predictors,
            state,
        })
    }

    /// Its spec.
    pub fn spec(&self) -> &StrategySpec {
        &self.spec
    }

    /// Its state (a checkpoint).
    pub fn state(&self) -> &StrategyState {
        &self.state
    }

    /// Each predictor's name and breaker.
    pub fn breakers(&self) -> Vec<(String, Breaker)> {
        self.spec
            .predictors
            .iter()
            .zip(&self.state.breakers)
            .map(|(predictor, breaker)| (predictor.name.clone(), breaker.clone()))
            .collect()
    }

    /// Swaps the predictor at `index` (a model file changed).
    ///
    /// # Panics
    ///
    /// If there is no predictor at `index`.
    pub fn replace_predictor(&mut self, index: usize, predictor: Box<dyn Predictor>) {
        self.predictors[index] = predictor;
    }

    /// Takes a tick; the bar it closed, if any, to be decided with [`Strategy::decide`].
    pub fn on_tick(&mut self, tick: &Tick) -> Option<PriceBar> {
        self.state.ticks += 1;
        self.state.last_tick = Some(*tick);
        self.state.bars.push(tick)
    }

    /// Decides a closed bar, holding `position` now.
    pub fn decide(&mut self, bar: &PriceBar, position: Position) -> Decision {
        let features = self.state.features.update(&bar.features_bar());
        let index = self.state.bars_decided;
        self.state.bars_decided += 1;
        let predictions = self.predict(index, &features);
        let fallback = predictions
            .iter()
            .any(|outcome| outcome.source == Source::Cached);
        let scores: Vec<(f64, f64)> = predictions
            .iter()
            .zip(&self.spec.predictors)
            .filter_map(|(outcome, spec)| outcome.score.map(|score| (score, spec.weight)))
            .collect();
        let signal = ensemble::combine(&scores, self.spec.ensemble.threshold, fallback);
        let (order, refused) = self.order_for(&signal, bar, position);
        let decision = Decision {
            bar: *bar,
            features,
            predictions,
            signal,
            order,
            refused,
        };
        self.state.last_close = Some(bar.close);
        self.state.last_signal = Some(signal);
        if self.state.decisions.len() == RECENT_DECISIONS_MAX {
            self.state.decisions.pop_front();
        }
        self.state.decisions.push_back(decision.clone());
        decision
    }

    /// Asks every predictor through its breaker.
    fn predict(&mut self, bar: u64, features: &FeatureValues) -> Vec<PredictorOutcome> {
        let mut outcomes = Vec::with_capacity(self.predictors.len());
        for (index, predictor) in self.predictors.iter_mut().enumerate() {
            let breaker = &mut self.state.breakers[index];
            let cached = &mut self.state.cached[index];
            let mut error = None;
            let live = if breaker.allows(bar) {
                match predictor.predict(features) {
                    Ok(prediction) => {
                        breaker.success();
                        Some(prediction)
                    }
                    Err(reason) => {
                        breaker.failure(bar, &self.spec.breaker);
                        error = Some(reason);
                        None
                    }
                }
            } else {
                None
            };
            let (score, source) = match (live, *cached) {
                (Some(Some(prediction)), _) => {
                    *cached = Some(prediction);
                    (Some(prediction.score), Source::Live)
                }
                (Some(None), _) => (None, Source::None),
                (None, Some(prediction)) => (Some(prediction.score), Source::Cached),
                (None, None) => (None, Source::None),
            };
            outcomes.push(PredictorOutcome {
                name: self.spec.predictors[index].name.clone(),
                score,
                source,
                breaker: breaker.state(),
                error,
            });
        }
        outcomes
    }

    /// The order that moves the position towards what the signal wants, if risk lets it: a
    /// buy up to `max_position` counting what open buys would add, a sell of what is held and
    /// not offered yet.
    fn order_for(
        &mut self,
        signal: &Signal,
        bar: &PriceBar,
        position: Position,
    ) -> (Option<OrderIntent>, Option<String>) {
        let risk = self.spec.risk;
        let (side, wanted) = match signal.direction {
            Direction::Buy => (
                OrderSide::Buy,
                risk.max_position.saturating_sub(position.with_open_buys),
            ),
            Direction::Sell => (OrderSide::Sell, position.sellable),
            Direction::Flat => return (None, None),
        };
        if wanted == 0 {
            return (None, None);
        }
        let mut quantity = wanted.min(risk.order_quantity);
        if let Some(max_notional) = risk.max_order_notional {
            quantity = quantity.min(max_notional / bar.close);
            if quantity == 0 {
                return (
                    None,
                    Some(format!(
                        "one unit at {} is above max_order_notional",
                        bar.close
                    )),
                );
            }
        }
        let recent = &mut self.state.recent_orders;
        while recent
            .front()
            .is_some_and(|start| *start <= bar.start - MINUTE_MICROS)
        {
            recent.pop_front();
        }
        if recent.len() >= risk.max_orders_per_minute as usize {
            return (None, Some("max_orders_per_minute reached".to_owned()));
        }
        recent.push_back(bar.start);
        let order = OrderIntent {
            client_order_id: u64::try_from(bar.start.div_euclid(1_000_000)).unwrap_or(0),
            side,
            quantity,
            price: bar.close,
        };
        (Some(order), None)
    }
}
