//! What the saga asks of the other state machines.

use serde::{Deserialize, Serialize};

use crate::account::AccountCommand;
use crate::book::command::BookCommand;
use crate::ids::{AccountId, Symbol};

/// A command the saga wants delivered. The host sends it and feeds the answer back as a
/// [`SagaInput`](super::SagaInput). Every command carries an idempotency key or is naturally
/// idempotent, so sending it again after a lost reply or a crash is safe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaCommand {
    /// For the order's account: place, settle against or release the order's hold.
    Account {
        /// The account.
        account_id: AccountId,
        /// What to do.
        command: AccountCommand,
    },
    /// For the order book of the order's market: submit or cancel the order.
    Book {
        /// The market.
        symbol: Symbol,
        /// What to do.
        command: BookCommand,
    },
}
