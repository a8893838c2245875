//! What an order is, as the book and the saga both see it.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{AccountId, OrderId};
use crate::market::MarketSpec;
use crate::units::{Price, Quantity};

/// Buy or sell, from the order owner's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buys base, pays quote.
    Buy,
    /// Sells base, receives quote.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Self {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Limit or market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Trades at `price` or better; may rest on the book.
    Limit,
    /// Takes liquidity at any price (or no worse than its optional protection price) and
    /// never rests.
    Market,
}

/// How long an order lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests on the book.
    Gtc,
    /// Immediate or cancel: fill what can be filled now, cancel the rest.
    Ioc,
    /// Fill or kill: fill all of it now, or refuse the whole order.
    Fok,
}

/// An order as submitted to a book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSpec {
    /// Unique across the venue.
    pub order_id: OrderId,
    /// The owner.
    pub account_id: AccountId,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// The limit price; for a market order, the optional protection price (the worst price
    /// it accepts).
    pub price: Option<Price>,
    /// Base units to trade.
    pub quantity: Quantity,
    /// GTC, IOC or FOK. Market orders take IOC or FOK.
    pub time_in_force: TimeInForce,
    /// Only add liquidity: refused if it would trade on arrival. Limit GTC orders only.
    pub post_only: bool,
}

impl OrderSpec {
    /// Checks the order against its market's rules: price on tick, quantity on lot and in
    /// range, and a consistent combination of type, time in force and post-only.
    pub fn validate(&self, market: &MarketSpec) -> Result<(), Error> {
        let invalid = |reason: &str| {
            Err(Error::InvalidOrder {
                reason: reason.to_owned(),
            })
        };
        match (self.order_type, self.price) {
            (OrderType::Limit, None) => return invalid("a limit order needs a price"),
            (_, Some(price)) => market.validate_price(price)?,
            (OrderType::Market, None) => {}
        }
        market.validate_quantity(self.quantity)?;
        if self.order_type == OrderType::Market && self.time_in_force == TimeInForce::Gtc {
            return invalid("a market order cannot rest: use ioc or fok");
        }
        if self.post_only
            && (self.order_type != OrderType::Limit || self.time_in_force != TimeInForce::Gtc)
        {
            return invalid("post-only applies to limit gtc orders only");
        }
        Ok(())
    }

    /// Whether a trade at `price` is acceptable to this order.
    pub fn accepts(&self, price: Price) -> bool {
        match (self.side, self.price) {
            (_, None) => true,
            (Side::Buy, Some(limit)) => price <= limit,
            (Side::Sell, Some(limit)) => price >= limit,
        }
    }
}

/// Where an order stands, as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted but not yet on the book (funds being held, or being submitted).
    Pending,
    /// Resting on the book, nothing filled.
    Open,
    /// Resting on the book, partly filled.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Ended before being completely filled (cancelled, expired, self-trade prevention,
    /// halt); it may have partial fills.
    Cancelled,
    /// Refused: by the account (funds, risk) or by the book (rules, FOK, post-only, halt).
    Rejected,
}

impl OrderStatus {
    /// Whether the order can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Rejected
        )
    }
}
