//! What users and operators see of a saga.

use serde::{Deserialize, Serialize};

use crate::book::event::EndReason;
use crate::error::Error;
use crate::ids::{AccountId, OrderId, Symbol, TradeId};
use crate::order::{OrderStatus, OrderType, Side};
use crate::units::{Price, Quantity};

use super::event::SagaStep;

/// One execution of the order, and whether this order's leg of it is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The trade.
    pub trade_id: TradeId,
    /// The trade price.
    pub price: Price,
    /// The quantity traded.
    pub quantity: Quantity,
    /// Whether the account settled this order's leg.
    pub settled: bool,
}

/// An order as its saga knows it: the reply to every saga input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order.
    pub order_id: OrderId,
    /// Its owner.
    pub account_id: AccountId,
    /// Its market.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit or protection price.
    pub price: Option<Price>,
    /// Base quantity ordered.
    pub quantity: Quantity,
    /// Where the order stands.
    pub status: OrderStatus,
    /// Base quantity filled so far.
    pub filled_quantity: Quantity,
    /// Its fills, in the order they were learned.
    pub fills: Vec<Fill>,
    /// Why it was rejected, when it was.
    pub reject_reason: Option<Error>,
    /// Why it left the book, when it did.
    pub end_reason: Option<EndReason>,
    /// Whether its remainder rests on the book: with `end_reason`, the sign that the book's
    /// whole answer to the submit (every fill on arrival, then rest or end) is known.
    #[serde(default)]
    pub resting: bool,
    /// The step waiting for an answer, if any.
    pub step: Option<SagaStep>,
    /// Whether that step exhausted its retries and waits for an operator's `Retry`.
    pub stalled: bool,
    /// The current attempt of that step (0: the first send).
    pub attempts: u32,
    /// Whether the saga has nothing left to do.
    pub finished: bool,
}

/// The saga's answer to an input: where the order stands, and what the input's events call
/// for, so a host can carry those commands out and wake the saga at its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaReply {
    /// The order as the saga knows it now.
    pub view: OrderView,
    /// The commands the input's events call for (none for a repeated or ignored input).
    pub commands: Vec<super::SagaCommand>,
    /// When the saga next wants a `Tick`, if it waits on anything.
    pub deadline: Option<crate::units::Timestamp>,
}
