//! The one error type of the domain: every way a command can be refused.
//!
//! A refused command changes nothing: `decide` returns the error and no events. Variants are
//! grouped by how a caller handles them ([`ErrorKind`]), and each has a stable
//! [`code`](Error::code) for the HTTP contract (`{"error": {"code": …}}`).

use serde::{Deserialize, Serialize};

use crate::ids::{Asset, OrderId, Symbol};
use crate::units::{Amount, Price, Quantity};

/// How a caller handles an [`Error`]; the HTTP layer maps it to a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input itself is malformed or out of range: fix the request (HTTP 400).
    Invalid,
    /// The market, order or hold named does not exist (HTTP 404).
    NotFound,
    /// The request collides with existing state, e.g. a reused id (HTTP 409).
    Conflict,
    /// A business rule refuses it in the current state; it may pass later (HTTP 422).
    Rejected,
}

/// A refused command, query or saga input. Carries enough data to explain itself.
///
/// Serialized externally tagged by its code (binary codecs cannot read internally tagged
/// enums); the HTTP layer builds its `{"error": {"code", "message"}}` body from
/// [`code`](Error::code) and `Display`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Error {
    /// An id has the wrong characters or length. Fix the id.
    #[error("invalid {what}: {reason}")]
    InvalidId {
        /// Which kind of id.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An amount, price or quantity that must be positive is zero. Fix the request.
    #[error("{what} must be greater than zero")]
    ZeroValue {
        /// Which field.
        what: String,
    },
    /// Arithmetic on the request would overflow 64 bits. The command is refused, never wrapped.
    #[error("arithmetic overflow: the amounts involved exceed 64 bits")]
    Overflow,
    /// A market definition is inconsistent. Fix the listing request.
    #[error("invalid market: {reason}")]
    InvalidMarket {
        /// What is inconsistent.
        reason: String,
    },
    /// An order is malformed for its type (e.g. a limit order without a price). Fix it.
    #[error("invalid order: {reason}")]
    InvalidOrder {
        /// What is wrong.
        reason: String,
    },
    /// The price is not a multiple of the market's tick size.
    #[error("price {price} is not a multiple of the tick size {tick_size}")]
    BadTick {
        /// The price given.
        price: Price,
        /// The market's tick size.
        tick_size: Price,
    },
    /// The quantity is not a multiple of the market's lot size.
    #[error("quantity {quantity} is not a multiple of the lot size {lot_size}")]
    BadLot {
        /// The quantity given.
        quantity: Quantity,
        /// The market's lot size.
        lot_size: Quantity,
    },
    /// The quantity is outside the market's `[min, max]`.
    #[error("quantity {quantity} is outside [{min}, {max}]")]
    QuantityOutOfRange {
        /// The quantity given.
        quantity: Quantity,
        /// The market's minimum.
        min: Quantity,
        /// The market's maximum.
        max: Quantity,
    },
    /// `effective_at` lies after the command's own time: only past valid times are allowed.
    #[error("effective_at lies in the future")]
    EffectiveInFuture,
    /// No market with this symbol is listed.
    #[error("unknown market {symbol}")]
    UnknownMarket {
        /// The symbol asked for.
        symbol: Symbol,
    },
    /// The order book got a command before its market was listed.
    #[error("no market is listed on this order book")]
    MarketNotListed,
    /// The order names no open order on this book (never seen, or already ended).
    #[error("order {order_id} is not open")]
    OrderNotFound {
        /// The order asked for.
        order_id: OrderId,
    },
    /// The order was on this book but has ended (filled, cancelled or expired): its events
    /// say how. Books remember a bounded window of recently ended orders.
    #[error("order {order_id} has already ended")]
    OrderAlreadyEnded {
        /// The order asked for.
        order_id: OrderId,
    },
    /// The account holds nothing for this order.
    #[error("no hold for order {order_id}")]
    HoldNotFound {
        /// The order asked for.
        order_id: OrderId,
    },
    /// This market is already listed.
    #[error("market {symbol} is already listed")]
    MarketAlreadyListed {
        /// The symbol.
        symbol: Symbol,
    },
    /// An order with this id was already submitted.
    #[error("order {order_id} already exists")]
    DuplicateOrder {
        /// The order id.
        order_id: OrderId,
    },
    /// A command id was used before for a different command: choose a fresh id.
    #[error("command id was already used for a different command")]
    CommandIdReused,
    /// The saga already runs for this order.
    #[error("order {order_id} was already placed")]
    SagaAlreadyStarted {
        /// The order id.
        order_id: OrderId,
    },
    /// The saga input arrived before the saga started.
    #[error("no order placement has started here")]
    SagaNotStarted,
    /// Not enough available balance (`total − held`) of the asset.
    #[error("insufficient funds: {required} {asset} required, {available} available")]
    InsufficientFunds {
        /// The asset short.
        asset: Asset,
        /// What is available.
        available: Amount,
        /// What the command needs.
        required: Amount,
    },
    /// A per-account risk limit would be broken.
    #[error("risk limit {limit} broken: {requested} requested, {maximum} allowed")]
    RiskLimit {
        /// Which limit: `max_open_orders`, `max_order_notional` or `max_position`.
        limit: String,
        /// The value the command would reach.
        requested: u64,
        /// The configured maximum.
        maximum: u64,
    },
    /// A fill-or-kill order cannot be filled completely right now.
    #[error("fill-or-kill order cannot be filled completely")]
    FokNotFillable,
    /// A post-only order would take liquidity.
    #[error("post-only order would cross the book")]
    PostOnlyWouldCross,
    /// The market is halted (volatility halt); only cancels are served until it resumes.
    #[error("market {symbol} is halted")]
    MarketHalted {
        /// The symbol.
        symbol: Symbol,
    },
    /// Resume was asked of a market that is not halted.
    #[error("market {symbol} is not halted")]
    MarketNotHalted {
        /// The symbol.
        symbol: Symbol,
    },
    /// A settlement does not match the hold it draws on (wrong side or assets).
    #[error("settlement does not match the hold of order {order_id}: {reason}")]
    SettlementMismatch {
        /// The order.
        order_id: OrderId,
        /// What does not match.
        reason: String,
    },
    /// A saga step exhausted its retries without an answer.
    #[error("timed out waiting for {step}")]
    Timeout {
        /// The step that timed out.
        step: String,
    },
    // New variants go last: saga events store this enum (until it is named, issue 15).
    /// A batch of quotes a feed published is malformed.
    #[error("invalid quotes: {reason}")]
    InvalidQuotes {
        /// What is wrong.
        reason: String,
    },
    /// A strategy's definition cannot run.
    #[error("invalid strategy: {reason}")]
    InvalidStrategy {
        /// What is wrong.
        reason: String,
    },
    /// No strategy has this id.
    #[error("strategy {id} not found")]
    StrategyNotFound {
        /// The id asked for.
        id: String,
    },
    /// A strategy with this id, or one trading this account, exists already.
    #[error("{reason}")]
    StrategyExists {
        /// Which.
        reason: String,
    },
}

impl Error {
    /// The stable machine-readable code, e.g. `insufficient_funds`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidId { .. } => "invalid_id",
            Error::ZeroValue { .. } => "zero_value",
            Error::Overflow => "overflow",
            Error::InvalidMarket { .. } => "invalid_market",
            Error::InvalidOrder { .. } => "invalid_order",
            Error::BadTick { .. } => "bad_tick",
            Error::BadLot { .. } => "bad_lot",
            Error::QuantityOutOfRange { .. } => "quantity_out_of_range",
            Error::EffectiveInFuture => "effective_in_future",
            Error::UnknownMarket { .. } => "unknown_market",
            Error::MarketNotListed => "market_not_listed",
            Error::OrderNotFound { .. } => "order_not_found",
            Error::OrderAlreadyEnded { .. } => "order_already_ended",
            Error::HoldNotFound { .. } => "hold_not_found",
            Error::MarketAlreadyListed { .. } => "market_already_listed",
            Error::DuplicateOrder { .. } => "duplicate_order",
            Error::CommandIdReused => "command_id_reused",
            Error::SagaAlreadyStarted { .. } => "saga_already_started",
            Error::SagaNotStarted => "saga_not_started",
            Error::InsufficientFunds { .. } => "insufficient_funds",
            Error::RiskLimit { .. } => "risk_limit",
            Error::FokNotFillable => "fok_not_fillable",
            Error::PostOnlyWouldCross => "post_only_would_cross",
            Error::MarketHalted { .. } => "market_halted",
            Error::MarketNotHalted { .. } => "market_not_halted",
            Error::SettlementMismatch { .. } => "settlement_mismatch",
            Error::Timeout { .. } => "timeout",
            Error::InvalidQuotes { .. } => "invalid_quotes",
            Error::InvalidStrategy { .. } => "invalid_strategy",
            Error::StrategyNotFound { .. } => "strategy_not_found",
            Error::StrategyExists { .. } => "strategy_exists",
        }
    }

    /// How a caller handles this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidId { .. }
            | Error::ZeroValue { .. }
            | Error::InvalidMarket { .. }
            | Error::InvalidOrder { .. }
            | Error::InvalidQuotes { .. }
            | Error::InvalidStrategy { .. }
            | Error::EffectiveInFuture => ErrorKind::Invalid,
            Error::UnknownMarket { .. }
            | Error::MarketNotListed
            | Error::OrderNotFound { .. }
            | Error::HoldNotFound { .. }
            | Error::SagaNotStarted
            | Error::StrategyNotFound { .. } => ErrorKind::NotFound,
            Error::MarketAlreadyListed { .. }
            | Error::DuplicateOrder { .. }
            | Error::OrderAlreadyEnded { .. }
            | Error::CommandIdReused
            | Error::SagaAlreadyStarted { .. }
            | Error::StrategyExists { .. } => ErrorKind::Conflict,
            Error::Overflow
            | Error::BadTick { .. }
            | Error::BadLot { .. }
            | Error::QuantityOutOfRange { .. }
            | Error::InsufficientFunds { .. }
            | Error::RiskLimit { .. }
            | Error::FokNotFillable
            | Error::PostOnlyWouldCross
            | Error::MarketHalted { .. }
            | Error::MarketNotHalted { .. }
            | Error::SettlementMismatch { .. }
            | Error::Timeout { .. } => ErrorKind::Rejected,
        }
    }

    /// A [`Error::ZeroValue`] for the named field.
    pub(crate) fn zero(what: &str) -> Self {
        Error::ZeroValue {
            what: what.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_under_their_code() {
        let error = Error::InsufficientFunds {
            asset: Asset::new("USD").unwrap(),
            available: Amount(1),
            required: Amount(2),
        };
        let json = serde_json::to_value(&error).unwrap();
        assert!(
            json.get(error.code()).is_some(),
            "externally tagged by code: {json}"
        );
        let back: Error = serde_json::from_value(json).unwrap();
        assert_eq!(back, error);
        assert_eq!(
            serde_json::to_value(Error::FokNotFillable).unwrap(),
            "fok_not_fillable"
        );
    }
}
