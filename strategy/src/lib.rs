//! Strategies, pure: the part of the AI trading pipeline that decides, with no I/O, so that a
//! live strategy (an actor on a node, fed by the log) and a backtest (fed by a recorded file)
//! run the same code and a backtest is deterministic.
//!
//! The pipeline: [`Tick`]s (trades on a market, or external quotes a feed published) are
//! cut into [`Bar`](tradefloor_domain::features::Bar)s of the strategy's timeframe
//! ([`BarBuilder`]); each closed bar updates the features
//! ([`Features`](tradefloor_domain::features::Features)); every predictor
//! ([`predictor`]) gives a score in `[-1, 1]` through its own [`Breaker`] (an open breaker or a
//! failing predictor falls back to its last good prediction); the [`ensemble`] weighs them
//! into a [`Signal`] with a confidence; the signal sets a target position, and the order that
//! moves towards it passes pre-trade risk ([`engine`]) before it is returned to the caller,
//! who places it (the actor through the ordinary placement path, the backtest by filling it
//! at the bar's close, [`backtest`]).
//!
//! Money stays integer (prices in the market's quote units per base unit, quantities in base
//! units, cash in quote units); features and scores are floating point.

pub mod backtest;
pub mod breaker;
pub mod engine;
pub mod ensemble;
mod error;
pub mod event;
pub mod predictor;
pub mod report;
pub mod spec;
pub mod tick;

pub use backtest::{Backtest, Checkpoint};
pub use breaker::{Breaker, BreakerState};
pub use engine::{Decision, OrderIntent, Strategy, StrategyState};
pub use ensemble::{Direction, Signal};
pub use error::Error;
pub use event::StrategyEvent;
pub use predictor::{LogisticModel, Prediction, Predictor};
pub use report::Report;
pub use spec::StrategySpec;
pub use tick::{BarBuilder, Tick};
