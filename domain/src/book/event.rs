//! What happened on an order book: the only thing persisted about it.

use serde::{Deserialize, Serialize};

use crate::aggregate::Message;
use crate::ids::{AccountId, OrderId, TradeId};
use crate::market::{MarketSpec, PriceBand};
use crate::order::{OrderSpec, Side};
use crate::units::{Price, Quantity, Timestamp};

/// One execution between a resting (maker) order and an incoming (taker) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Numbered from 1 within the market.
    pub trade_id: TradeId,
    /// The resting order.
    pub maker_order_id: OrderId,
    /// Its owner.
    pub maker_account_id: AccountId,
    /// The incoming order.
    pub taker_order_id: OrderId,
    /// Its owner.
    pub taker_account_id: AccountId,
    /// The taker's side (the maker is on the other).
    pub taker_side: Side,
    /// The maker's price: trades print at the resting price.
    pub price: Price,
    /// Base quantity traded.
    pub quantity: Quantity,
    /// What the maker has left to fill after this trade (0: the maker is filled and gone).
    pub maker_remaining: Quantity,
    /// What the taker has left to fill after this trade.
    pub taker_remaining: Quantity,
    /// When.
    pub at: Timestamp,
}

/// Why an order left the book (or never rested).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Completely filled.
    Filled,
    /// Cancelled by request.
    Cancelled,
    /// IOC or market remainder that could not be filled on arrival.
    Expired,
    /// The incoming order would have traded with its own account's resting order: the
    /// incoming order's remainder is cancelled (cancel-newest).
    SelfTradePrevented,
    /// The next trade would have printed outside the price band: the market halted and the
    /// incoming order's remainder was cancelled.
    Halted,
}

/// An order book event.
///
/// A submit that matches produces `Accepted`, then one `Traded` per execution, then exactly
/// one of `Rested` (the remainder rests) or `Ended` (it does not), with `Halted` before
/// `Ended` when the band stopped matching. Makers that a trade fills completely leave the
/// book with that trade (`maker_remaining` is 0); they get no `Ended` of their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookEvent {
    /// The market was listed.
    Listed {
        /// Its definition.
        spec: MarketSpec,
        /// When.
        at: Timestamp,
    },
    /// An order passed validation and entered matching, with its arrival sequence number.
    Accepted {
        /// The order.
        order: OrderSpec,
        /// Arrival order within the book: time priority.
        sequence: u64,
        /// When.
        at: Timestamp,
    },
    /// A trade was executed.
    Traded(Trade),
    /// The remainder of an accepted limit GTC order rests on the book.
    Rested {
        /// The order.
        order_id: OrderId,
        /// Its owner.
        account_id: AccountId,
        /// Its side.
        side: Side,
        /// Its limit price.
        price: Price,
        /// Quantity resting.
        remaining: Quantity,
        /// Its arrival sequence number (time priority).
        sequence: u64,
        /// When.
        at: Timestamp,
    },
    /// An order left the book or ended on arrival without resting.
    Ended {
        /// The order.
        order_id: OrderId,
        /// Its owner.
        account_id: AccountId,
        /// Why.
        reason: EndReason,
        /// Quantity never filled.
        remaining: Quantity,
        /// When.
        at: Timestamp,
    },
    /// An order the book never saw was abandoned by its saga: a later submit of this id is
    /// refused as a duplicate.
    Blocked {
        /// The order.
        order_id: OrderId,
        /// When.
        at: Timestamp,
    },
    /// Trading halted: a trade at `trigger_price` would have left `band` (or an operator
    /// halted it, with no trigger price).
    Halted {
        /// The price that would have printed.
        trigger_price: Option<Price>,
        /// The band in force.
        band: Option<PriceBand>,
        /// When.
        at: Timestamp,
    },
    /// Trading resumed around a new reference price.
    Resumed {
        /// The new reference price (None: still unset, the next trade sets it).
        reference_price: Option<Price>,
        /// When.
        at: Timestamp,
    },
}

impl BookEvent {
    /// The orders the event is about (a trade's maker and taker): their sagas learn of it.
    pub fn order_ids(&self) -> Vec<OrderId> {
        match self {
            BookEvent::Accepted { order, .. } => vec![order.order_id],
            BookEvent::Traded(trade) => vec![trade.maker_order_id, trade.taker_order_id],
            BookEvent::Rested { order_id, .. }
            | BookEvent::Ended { order_id, .. }
            | BookEvent::Blocked { order_id, .. } => vec![*order_id],
            BookEvent::Listed { .. } | BookEvent::Halted { .. } | BookEvent::Resumed { .. } => {
                Vec::new()
            }
        }
    }
}

impl Message for BookEvent {
    const SCHEMA_VERSION: u16 = 1;

    const NAMES: &'static [&'static str] = &[
        "book.listed",
        "book.accepted",
        "book.traded",
        "book.rested",
        "book.ended",
        "book.blocked",
        "book.halted",
        "book.resumed",
    ];

    fn name(&self) -> &'static str {
        match self {
            BookEvent::Listed { .. } => "book.listed",
            BookEvent::Accepted { .. } => "book.accepted",
            BookEvent::Traded(_) => "book.traded",
            BookEvent::Rested { .. } => "book.rested",
            BookEvent::Ended { .. } => "book.ended",
            BookEvent::Blocked { .. } => "book.blocked",
            BookEvent::Halted { .. } => "book.halted",
            BookEvent::Resumed { .. } => "book.resumed",
        }
    }
}
