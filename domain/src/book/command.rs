//! What callers ask of an order book, and what it answers.

use serde::{Deserialize, Serialize};

use crate::aggregate::Message;
use crate::ids::OrderId;
use crate::market::MarketSpec;
use crate::order::{OrderSpec, OrderStatus};
use crate::units::{Price, Quantity, Timestamp};

use super::event::Trade;

/// A command to the order book of one market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookCommand {
    /// List the market: the book exists from here on.
    List {
        /// The market's definition.
        spec: MarketSpec,
        /// When.
        at: Timestamp,
    },
    /// Submit a new order for matching.
    Submit {
        /// The order.
        order: OrderSpec,
        /// When.
        at: Timestamp,
    },
    /// Cancel a resting order. Travels in the mailbox's priority lane.
    Cancel {
        /// The order.
        order_id: OrderId,
        /// When.
        at: Timestamp,
    },
    /// Withdraw an order whatever became of it, for a saga that gave up waiting for its
    /// submit: a resting order is cancelled; an order the book never saw is blocked, so a
    /// submit still in flight is refused when it arrives. Travels in the priority lane, where
    /// it may overtake that submit: blocking is what makes the overtaking safe.
    Abandon {
        /// The order.
        order_id: OrderId,
        /// When.
        at: Timestamp,
    },
    /// Halt trading by hand (an operator's circuit breaker). Cancels are still served.
    Halt {
        /// When.
        at: Timestamp,
    },
    /// Resume a halted market, around a new reference price (default: the last trade price).
    Resume {
        /// The new band's centre.
        reference_price: Option<Price>,
        /// When.
        at: Timestamp,
    },
}

impl Message for BookCommand {
    const SCHEMA_VERSION: u16 = 1;

    const NAMES: &'static [&'static str] = &[
        "book.list",
        "book.submit",
        "book.cancel",
        "book.abandon",
        "book.halt",
        "book.resume",
    ];

    fn name(&self) -> &'static str {
        match self {
            BookCommand::List { .. } => "book.list",
            BookCommand::Submit { .. } => "book.submit",
            BookCommand::Cancel { .. } => "book.cancel",
            BookCommand::Abandon { .. } => "book.abandon",
            BookCommand::Halt { .. } => "book.halt",
            BookCommand::Resume { .. } => "book.resume",
        }
    }
}

/// The book's answer to a command that was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookReply {
    /// The market is listed.
    Listed,
    /// The outcome of a submit, right after matching.
    Order(OrderReport),
    /// A resting order was cancelled; `remaining` was never filled.
    Cancelled {
        /// The order.
        order_id: OrderId,
        /// Quantity left unfilled.
        remaining: Quantity,
    },
    /// The order had never reached the book and now never will (see
    /// [`BookCommand::Abandon`]).
    Blocked {
        /// The order.
        order_id: OrderId,
    },
    /// The market is halted.
    Halted,
    /// The market trades again.
    Resumed,
}

/// What became of a submitted order on arrival.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReport {
    /// The order.
    pub order_id: OrderId,
    /// `open`, `partially_filled`, `filled` or `cancelled` (remainder not rested).
    pub status: OrderStatus,
    /// Base quantity filled on arrival.
    pub filled_quantity: Quantity,
    /// Base quantity resting on the book (0 unless open or partially filled).
    pub resting_quantity: Quantity,
    /// The trades made on arrival, in execution order.
    pub trades: Vec<Trade>,
}
