//! What callers ask of an account.

use serde::{Deserialize, Serialize};

use crate::aggregate::Message;
use crate::fingerprint::Fingerprint;
use crate::ids::{Asset, CommandId, OrderId, Symbol, TradeId};
use crate::order::Side;
use crate::saga::SagaStart;
use crate::units::{Amount, Price, Quantity, Timestamp};

use super::limits::RiskLimits;

/// A command to an account. Every command carries a `command_id` (repeating it repeats the
/// first outcome) and `at`, the time it happens (transaction time as the caller saw it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountCommand {
    /// Credit `amount` of `asset`. With an `effective_at` in the past it is a correction.
    Deposit {
        /// Idempotency key.
        command_id: CommandId,
        /// The asset credited.
        asset: Asset,
        /// How much; positive.
        amount: Amount,
        /// Valid time; defaults to `at`; never after `at`.
        effective_at: Option<Timestamp>,
        /// When the command happens.
        at: Timestamp,
    },
    /// Debit `amount` of `asset` from what is available (`total − held`).
    Withdraw {
        /// Idempotency key.
        command_id: CommandId,
        /// The asset debited.
        asset: Asset,
        /// How much; positive.
        amount: Amount,
        /// Valid time; defaults to `at`; never after `at`.
        effective_at: Option<Timestamp>,
        /// When the command happens.
        at: Timestamp,
    },
    /// Reserve funds for an order: a buy holds `price × quantity` of quote, a sell holds
    /// `quantity` of base. Risk limits are checked here.
    PlaceHold {
        /// Idempotency key.
        command_id: CommandId,
        /// The order the hold is for (one hold per order).
        order_id: OrderId,
        /// Its market.
        symbol: Symbol,
        /// The market's base asset.
        base: Asset,
        /// The market's quote asset.
        quote: Asset,
        /// Buy or sell.
        side: Side,
        /// Limit price, or a market order's protection price. Required to buy.
        price: Option<Price>,
        /// Base quantity of the order.
        quantity: Quantity,
        /// The order's saga start, when the hold is what starts the saga (an order id the
        /// venue generated): recorded with the hold ([`SagaStart`]). Not part of the
        /// fingerprint: the order id already names the order.
        start: Option<Box<SagaStart>>,
        /// When the command happens.
        at: Timestamp,
    },
    /// Settle this account's leg of a trade against the order's hold: a buy pays
    /// `price × quantity` quote out of the hold and receives `quantity` base; a sell delivers
    /// `quantity` base out of the hold and receives the quote. Each trade settles once.
    SettleTrade {
        /// Idempotency key.
        command_id: CommandId,
        /// The order whose hold pays.
        order_id: OrderId,
        /// The trade, unique within the order's market.
        trade_id: TradeId,
        /// The trade price.
        price: Price,
        /// The traded base quantity.
        quantity: Quantity,
        /// When the command happens.
        at: Timestamp,
    },
    /// Give back what is left of an order's hold once the order has ended.
    ReleaseHold {
        /// Idempotency key.
        command_id: CommandId,
        /// The order whose hold ends.
        order_id: OrderId,
        /// When the command happens.
        at: Timestamp,
    },
    /// Settle this account's remaining legs of an ended order and release what is left of its
    /// hold, in one decision (TigerBeetle's post and void of a pending transfer): how an order
    /// saga finishes once the book ended the order and every fill is known. Legs already
    /// settled are skipped; a hold already released makes the whole command a repeat.
    Finish {
        /// Idempotency key.
        command_id: CommandId,
        /// The order whose hold pays and ends.
        order_id: OrderId,
        /// The legs to settle, in order (each trade once).
        legs: Vec<Leg>,
        /// When the command happens.
        at: Timestamp,
    },
    /// Replace the account's risk limits (an admin command).
    SetRiskLimits {
        /// Idempotency key.
        command_id: CommandId,
        /// The new limits.
        limits: RiskLimits,
        /// When the command happens.
        at: Timestamp,
    },
}

/// One leg of a trade to settle against an order's hold (see [`AccountCommand::Finish`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The trade, unique within the order's market.
    pub trade_id: TradeId,
    /// The trade price.
    pub price: Price,
    /// The traded base quantity.
    pub quantity: Quantity,
}

impl AccountCommand {
    /// The command's idempotency key.
    pub fn command_id(&self) -> CommandId {
        match self {
            AccountCommand::Deposit { command_id, .. }
            | AccountCommand::Withdraw { command_id, .. }
            | AccountCommand::PlaceHold { command_id, .. }
            | AccountCommand::SettleTrade { command_id, .. }
            | AccountCommand::ReleaseHold { command_id, .. }
            | AccountCommand::Finish { command_id, .. }
            | AccountCommand::SetRiskLimits { command_id, .. } => *command_id,
        }
    }

    /// When the command happens.
    pub fn at(&self) -> Timestamp {
        match self {
            AccountCommand::Deposit { at, .. }
            | AccountCommand::Withdraw { at, .. }
            | AccountCommand::PlaceHold { at, .. }
            | AccountCommand::SettleTrade { at, .. }
            | AccountCommand::ReleaseHold { at, .. }
            | AccountCommand::Finish { at, .. }
            | AccountCommand::SetRiskLimits { at, .. } => *at,
        }
    }

    /// A stable fingerprint of everything but the id and `at`: a retry (same id, same body,
    /// later `at`) matches; another command reusing the id does not.
    pub fn fingerprint(&self) -> u64 {
        match self {
            AccountCommand::Deposit {
                asset,
                amount,
                effective_at,
                ..
            } => Fingerprint::new("deposit")
                .text(asset.as_str())
                .u64(amount.get())
                .option_i64(effective_at.map(Timestamp::micros))
                .finish(),
            AccountCommand::Withdraw {
                asset,
                amount,
                effective_at,
                ..
            } => Fingerprint::new("withdraw")
                .text(asset.as_str())
                .u64(amount.get())
                .option_i64(effective_at.map(Timestamp::micros))
                .finish(),
            AccountCommand::PlaceHold {
                order_id,
                symbol,
                base,
                quote,
                side,
                price,
                quantity,
                ..
            } => Fingerprint::new("place_hold")
                .u64(order_id.0)
                .text(symbol.as_str())
                .text(base.as_str())
                .text(quote.as_str())
                .u64(matches!(side, Side::Buy) as u64)
                .option_u64(price.map(Price::get))
                .u64(quantity.get())
                .finish(),
            AccountCommand::SettleTrade {
                order_id,
                trade_id,
                price,
                quantity,
                ..
            } => Fingerprint::new("settle_trade")
                .u64(order_id.0)
                .u64(trade_id.0)
                .u64(price.get())
                .u64(quantity.get())
                .finish(),
            AccountCommand::ReleaseHold { order_id, .. } => {
                Fingerprint::new("release_hold").u64(order_id.0).finish()
            }
            // The order alone: a finish sent again after a crash names fewer legs (the saga
            // learnt meanwhile that some were settled), and the first one already settled
            // every leg the order has (an order finishes once it ended and every fill is
            // known), so it answers for the later one.
            AccountCommand::Finish { order_id, .. } => {
                Fingerprint::new("finish").u64(order_id.0).finish()
            }
            AccountCommand::SetRiskLimits { limits, .. } => limits.fingerprint(),
        }
    }
}

impl Message for AccountCommand {
    /// 2: the risk limits gained `max_orders_per_second` (commands are not stored: no
    /// upcaster).
    /// 3: `PlaceHold` may carry the saga's start.
    const SCHEMA_VERSION: u16 = 3;

    const NAMES: &'static [&'static str] = &[
        "account.deposit",
        "account.withdraw",
        "account.place_hold",
        "account.settle_trade",
        "account.release_hold",
        "account.set_risk_limits",
        "account.finish",
    ];

    fn name(&self) -> &'static str {
        match self {
            AccountCommand::Deposit { .. } => "account.deposit",
            AccountCommand::Withdraw { .. } => "account.withdraw",
            AccountCommand::PlaceHold { .. } => "account.place_hold",
            AccountCommand::SettleTrade { .. } => "account.settle_trade",
            AccountCommand::ReleaseHold { .. } => "account.release_hold",
            AccountCommand::SetRiskLimits { .. } => "account.set_risk_limits",
            AccountCommand::Finish { .. } => "account.finish",
        }
    }
}
