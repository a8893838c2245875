//! The Tradefloor trading model as pure, deterministic state machines.
//!
//! Nothing here does I/O, awaits, or reads a clock: time arrives inside commands. Every state
//! machine has the shape of [`Aggregate`]: `decide(&state, &command)` returns the events a
//! command produces or the [`Error`] that refuses it, and `apply(&mut state, &event)` folds an
//! event in. The actor runtime persists the events between the two, and recovery is replay.
//!
//! ```
//! use tradefloor_domain::account::{Account, AccountCommand};
//! use tradefloor_domain::{Aggregate, Amount, Asset, CommandId, Timestamp};
//!
//! let mut account = Account::default();
//! let deposit = AccountCommand::Deposit {
//!     command_id: CommandId::new("dep-1").unwrap(),
//!     asset: Asset::new("USD").unwrap(),
//!     amount: Amount(1_000),
//!     effective_at: None,
//!     at: Timestamp(1),
//! };
//! let (events, _reply) = account.execute(&deposit).unwrap();
//! assert_eq!(events.len(), 1);
//! // The same command id again is a no-op with the same reply.
//! let (again, _) = account.execute(&deposit).unwrap();
//! assert!(again.is_empty());
//! assert_eq!(account.balance(Asset::new("USD").unwrap()).total, Amount(1_000));
//! ```
//!
//! Modules:
//! - [`units`], [`ids`]: integer money units with checked arithmetic, and inline ids.
//! - [`error`]: the one error type, with stable codes.
//! - [`aggregate`]: the decide/apply shape and [`Message`] (stable names, schema versions).
//! - [`market`], [`order`]: market definitions and orders.
//! - [`account`]: balances, holds, settlement, risk limits, idempotent command ids.
//! - [`book`]: the order book: price–time matching, TIF, post-only, self-trade prevention,
//!   volatility halt.
//! - [`saga`]: the order placement saga (hold → submit → settle → release, compensation).
//! - [`history`]: bitemporal views of an account (as of a valid time, as known at a time).

pub mod account;
pub mod aggregate;
pub mod book;
pub mod error;
pub mod features;
mod fingerprint;
pub mod history;
pub mod ids;
pub mod market;
pub mod order;
pub mod order_ids;
pub mod quote;
pub mod rules;
pub mod saga;
pub mod stored_error;
pub mod units;
pub mod window;

pub use aggregate::{Aggregate, Message, Priority};
pub use error::{Error, ErrorKind};
pub use ids::{AccountId, Asset, CommandId, OrderId, Symbol, TradeId};
pub use market::{MarketSpec, PriceBand};
pub use order::{OrderSpec, OrderStatus, OrderType, Side, TimeInForce};
pub use order_ids::{ClientOrderId, OrderIdKey, OrderReference};
pub use units::{Amount, Price, Quantity, Timestamp};
