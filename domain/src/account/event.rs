//! What happened to an account: the only thing persisted about it.

use serde::{Deserialize, Serialize};

use crate::aggregate::Message;
use crate::ids::{Asset, CommandId, OrderId, Symbol, TradeId};
use crate::order::Side;
use crate::saga::SagaStart;
use crate::units::{Amount, Price, Quantity, Timestamp};

use super::limits::RiskLimits;

/// The command an event came from: its id and [fingerprint](super::AccountCommand::fingerprint),
/// kept so a repeated id can be answered (or refused) after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRef {
    /// The command id.
    pub id: CommandId,
    /// The command's fingerprint.
    pub fingerprint: u64,
}

/// An account event. `at` is the command's time; `effective_at` (where present) is the valid
/// time, equal to `at` unless the command was a correction. The journal adds `recorded_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountEvent {
    /// `amount` of `asset` was credited.
    Deposited {
        /// The command.
        command: CommandRef,
        /// The asset.
        asset: Asset,
        /// How much.
        amount: Amount,
        /// Valid time.
        effective_at: Timestamp,
        /// Command time.
        at: Timestamp,
    },
    /// `amount` of `asset` was debited.
    Withdrawn {
        /// The command.
        command: CommandRef,
        /// The asset.
        asset: Asset,
        /// How much.
        amount: Amount,
        /// Valid time.
        effective_at: Timestamp,
        /// Command time.
        at: Timestamp,
    },
    /// `amount` of `asset` is held for an order.
    HoldPlaced {
        /// The command.
        command: CommandRef,
        /// The order.
        order_id: OrderId,
        /// Its market.
        symbol: Symbol,
        /// The market's base asset.
        base: Asset,
        /// The market's quote asset.
        quote: Asset,
        /// The order's side.
        side: Side,
        /// The order's base quantity.
        quantity: Quantity,
        /// The asset held: quote for a buy, base for a sell.
        asset: Asset,
        /// How much is held.
        amount: Amount,
        /// The order's saga start, when the hold started the saga (see
        /// [`SagaStart`]); `None` in events of version 2 and before.
        start: Option<Box<SagaStart>>,
        /// Command time.
        at: Timestamp,
    },
    /// One leg of a trade was settled against the order's hold.
    TradeSettled {
        /// The command.
        command: CommandRef,
        /// The order.
        order_id: OrderId,
        /// The trade.
        trade_id: TradeId,
        /// The trade price.
        price: Price,
        /// The traded quantity.
        quantity: Quantity,
        /// The asset paid out of the hold, and how much.
        debit_asset: Asset,
        /// Amount paid.
        debit_amount: Amount,
        /// The asset received, and how much.
        credit_asset: Asset,
        /// Amount received.
        credit_amount: Amount,
        /// Command time.
        at: Timestamp,
    },
    /// What was left of an order's hold became available again.
    HoldReleased {
        /// The command.
        command: CommandRef,
        /// The order.
        order_id: OrderId,
        /// The asset held.
        asset: Asset,
        /// The amount released.
        amount: Amount,
        /// Command time.
        at: Timestamp,
    },
    /// The risk limits changed.
    RiskLimitsSet {
        /// The command.
        command: CommandRef,
        /// The new limits.
        limits: RiskLimits,
        /// Command time.
        at: Timestamp,
    },
}

/// How an event moves one balance: signed changes of its total and of what is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceChange {
    /// The asset.
    pub asset: Asset,
    /// Change of the total.
    pub total: i128,
    /// Change of the amount held.
    pub held: i128,
}

impl AccountEvent {
    /// How the event moves the account's balances (at most two: a trade's debit and credit),
    /// so that read models and monitors follow balances without folding whole accounts.
    pub fn balance_changes(&self) -> impl Iterator<Item = BalanceChange> {
        let signed = |amount: Amount| i128::from(amount.get());
        let change = |asset: Asset, total: i128, held: i128| BalanceChange { asset, total, held };
        let (first, second) = match self {
            AccountEvent::Deposited { asset, amount, .. } => {
                (Some(change(*asset, signed(*amount), 0)), None)
            }
            AccountEvent::Withdrawn { asset, amount, .. } => {
                (Some(change(*asset, -signed(*amount), 0)), None)
            }
            AccountEvent::HoldPlaced { asset, amount, .. } => {
                (Some(change(*asset, 0, signed(*amount))), None)
            }
            AccountEvent::TradeSettled {
                debit_asset,
                debit_amount,
                credit_asset,
                credit_amount,
                ..
            } => (
                Some(change(
                    *debit_asset,
                    -signed(*debit_amount),
                    -signed(*debit_amount),
                )),
                Some(change(*credit_asset, signed(*credit_amount), 0)),
            ),
            AccountEvent::HoldReleased { asset, amount, .. } => {
                (Some(change(*asset, 0, -signed(*amount))), None)
            }
            AccountEvent::RiskLimitsSet { .. } => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// The command this event came from.
    pub fn command(&self) -> CommandRef {
        match self {
            AccountEvent::Deposited { command, .. }
            | AccountEvent::Withdrawn { command, .. }
            | AccountEvent::HoldPlaced { command, .. }
            | AccountEvent::TradeSettled { command, .. }
            | AccountEvent::HoldReleased { command, .. }
            | AccountEvent::RiskLimitsSet { command, .. } => *command,
        }
    }

    /// Valid time of the event: `effective_at` for deposits and withdrawals, else `at`.
    pub fn effective_at(&self) -> Timestamp {
        match self {
            AccountEvent::Deposited { effective_at, .. }
            | AccountEvent::Withdrawn { effective_at, .. } => *effective_at,
            AccountEvent::HoldPlaced { at, .. }
            | AccountEvent::TradeSettled { at, .. }
            | AccountEvent::HoldReleased { at, .. }
            | AccountEvent::RiskLimitsSet { at, .. } => *at,
        }
    }
}

impl Message for AccountEvent {
    /// 2: the risk limits gained `max_orders_per_second` (version 1 is read through
    /// [`super::v1`]); 3: `hold_placed` may carry the saga's start (versions 1 and 2 read
    /// through [`super::v2`]).
    const SCHEMA_VERSION: u16 = 3;

    const NAMES: &'static [&'static str] = &[
        "account.deposited",
        "account.withdrawn",
        "account.hold_placed",
        "account.trade_settled",
        "account.hold_released",
        "account.risk_limits_set",
    ];

    fn name(&self) -> &'static str {
        match self {
            AccountEvent::Deposited { .. } => "account.deposited",
            AccountEvent::Withdrawn { .. } => "account.withdrawn",
            AccountEvent::HoldPlaced { .. } => "account.hold_placed",
            AccountEvent::TradeSettled { .. } => "account.trade_settled",
            AccountEvent::HoldReleased { .. } => "account.hold_released",
            AccountEvent::RiskLimitsSet { .. } => "account.risk_limits_set",
        }
    }
}
