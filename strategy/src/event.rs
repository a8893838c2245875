//! What a live strategy journals (`strategy|{id}`): its spec, starts and stops, the decisions
//! that asked for an order or changed the signal, the orders' fates, and checkpoints.

use serde::{Deserialize, Serialize};
use tradefloor_domain::Message;

use crate::engine::{OrderIntent, StrategyState};
use crate::ensemble::Direction;
use crate::spec::StrategySpec;

/// One event of a strategy's journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyEvent {
    /// The strategy was defined.
    Created {
        /// Its spec.
        spec: StrategySpec,
    },
    /// It was started: it reads the log after `from_offset`, its account held `base` and
    /// `quote` (its PnL counts from there).
    Started {
        /// When, microseconds since the epoch.
        at: i64,
        /// The log offset it reads after (when it has no checkpoint).
        from_offset: u64,
        /// Base units its account held.
        base: u64,
        /// Quote units its account held.
        quote: u64,
    },
    /// A bar's decision that wanted an order or turned the signal.
    Decided {
        /// The bar's start.
        bar_start: i64,
        /// Its close.
        close: u64,
        /// The ensemble's score.
        score: f64,
        /// The signal.
        direction: Direction,
        /// Whether a cached prediction stood in.
        fallback: bool,
        /// The order it asked for.
        order: Option<OrderIntent>,
        /// Why risk refused one.
        refused: Option<String>,
    },
    /// The placement answered an order.
    OrderAnswered {
        /// The order's client id.
        client_order_id: u64,
        /// The venue's order id.
        order_id: u64,
        /// Its status then.
        status: String,
    },
    /// The placement refused an order (the compensation of the saga already ran).
    OrderFailed {
        /// The order's client id.
        client_order_id: u64,
        /// Why.
        reason: String,
    },
    /// Where it stood: the log offset read and its state, to resume from.
    Checkpointed {
        /// Every event at or below it was taken.
        cursor: u64,
        /// The state after it.
        state: Box<StrategyState>,
    },
    /// It was stopped (the kill switch), its resting orders cancelled.
    Stopped {
        /// When.
        at: i64,
        /// Why.
        reason: String,
        /// Orders cancelled.
        cancelled: u32,
    },
}

impl Message for StrategyEvent {
    const SCHEMA_VERSION: u16 = 1;
    const NAMES: &'static [&'static str] = &[
        "strategy.created",
        "strategy.started",
        "strategy.decided",
        "strategy.order_answered",
        "strategy.order_failed",
        "strategy.checkpointed",
        "strategy.stopped",
    ];

    fn name(&self) -> &'static str {
        match self {
            StrategyEvent::Created { .. } => "strategy.created",
            StrategyEvent::Started { .. } => "strategy.started",
            StrategyEvent::Decided { .. } => "strategy.decided",
            StrategyEvent::OrderAnswered { .. } => "strategy.order_answered",
            StrategyEvent::OrderFailed { .. } => "strategy.order_failed",
            StrategyEvent::Checkpointed { .. } => "strategy.checkpointed",
            StrategyEvent::Stopped { .. } => "strategy.stopped",
        }
    }
}
