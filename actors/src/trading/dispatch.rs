//! The order sagas' dispatcher: carries out each [`SagaCommand`] on the account and book
//! regions and maps the answer back to a [`SagaInput`].
//!
//! Account answers go straight back to the saga. What the book *did* (accepted, traded,
//! rested, ended) concerns other orders' sagas too (a resting maker fills inside another
//! order's submit): the dispatcher asks the book for the events its command wrote and hands
//! each to every saga it concerns at once, the way the feed would. The durable
//! [`feed`](super::feed), which reads the books' events from the journal, delivers them again
//! (sagas deduplicate): it is what makes delivery survive a crash between the book's write
//! and this hand-off. The dispatcher wakes the feed only when the hand-off could not happen
//! (the book gave no answer, though it may have written); otherwise the feed reads at its poll
//! interval, in larger batches: each feed batch commits its offset, and on SQLite every commit
//! competes with the journal's writer for the database's one write lock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tradefloor_domain::account::{Account, AccountCommand};
use tradefloor_domain::book::{BookCommand, OrderBook};
use tradefloor_domain::saga::{OrderSaga, SagaCommand, SagaInput};
use tradefloor_domain::{AccountId, Symbol, Timestamp};

use crate::error::Error;
use crate::hosting::region::ShardRegion;
use crate::hosting::saga_host::{BoxFuture, Clock, Dispatcher};

/// Carries out order-saga commands on this node's regions.
#[derive(Clone)]
pub struct TradingDispatcher {
    pub(crate) accounts: Arc<ShardRegion<Account>>,
    pub(crate) books: Arc<ShardRegion<OrderBook>>,
    pub(crate) clock: Clock,
    pub(crate) ask_deadline: Duration,
    pub(crate) feed_wake: Arc<Notify>,
}

impl TradingDispatcher {
    async fn account(
        &self,
        saga_id: String,
        account_id: AccountId,
        command: AccountCommand,
    ) -> Vec<(String, SagaInput)> {
        let at = (self.clock)();
        let result = self
            .accounts
            .ask(account_id.as_str(), command.clone(), self.ask_deadline)
            .await;
        match account_answer(&command, &result, at) {
            Some(input) => return vec![(saga_id, input)],
            None => match result {
                Err(Error::Rejected(reason)) => {
                    tracing::warn!(saga = %saga_id, %reason, ?command, "refused; the deadline retries")
                }
                // Infrastructure trouble: no answer; the saga's deadline retries.
                Err(error) => tracing::debug!(saga = %saga_id, %error, "account command failed"),
                Ok(_) => {
                    tracing::error!(saga = %saga_id, ?command, "sagas send no such account command")
                }
            },
        }
        Vec::new()
    }

    async fn book(
        &self,
        saga_id: String,
        symbol: Symbol,
        command: BookCommand,
    ) -> Vec<(String, SagaInput)> {
        let at = (self.clock)();
        let result = self
            .books
            .ask_with_events(symbol.as_str(), command.clone(), self.ask_deadline)
            .await;
        if let Some(input) = book_refusal(&command, &result, at) {
            return vec![(saga_id, input)];
        }
        match result {
            // What the book did, to every saga it concerns, in the order it was written.
            Ok((_, events)) => events
                .into_iter()
                .flat_map(|event| SagaInput::from_book(&event))
                .map(|(order_id, input)| (order_id.to_string(), input))
                .collect(),
            Err(error) => {
                // No answer, but the book may have written events: let the feed look now.
                self.feed_wake.notify_one();
                tracing::debug!(saga = %saga_id, %error, "book command failed");
                Vec::new()
            }
        }
    }
}

/// The saga input an account's answer to a saga's command means, if any. `None` leaves the
/// saga waiting: its deadline retries (an infrastructure failure, or a refused release, which
/// would mean a broken invariant worth a retry and a log line rather than a guess).
pub fn account_answer<R>(
    command: &AccountCommand,
    result: &Result<R, Error>,
    at: Timestamp,
) -> Option<SagaInput> {
    Some(match (command, result) {
        (AccountCommand::PlaceHold { .. }, Ok(_)) => SagaInput::HoldPlaced { at },
        (AccountCommand::PlaceHold { .. }, Err(Error::Rejected(reason))) => {
            SagaInput::HoldRejected {
                reason: reason.clone(),
                at,
            }
        }
        (AccountCommand::SettleTrade { trade_id, .. }, Ok(_)) => SagaInput::LegSettled {
            trade_id: *trade_id,
            at,
        },
        // No hold left means the order's finish settled the leg first: its answer tells.
        (
            AccountCommand::SettleTrade { .. },
            Err(Error::Rejected(tradefloor_domain::Error::HoldNotFound { .. })),
        ) => return None,
        (AccountCommand::SettleTrade { trade_id, .. }, Err(Error::Rejected(reason))) => {
            SagaInput::SettleRejected {
                trade_id: *trade_id,
                reason: reason.clone(),
                at,
            }
        }
        // No hold left means an earlier finish went through (a hold with fills is released
        // by its saga only, once every fill is settled).
        (AccountCommand::Finish { legs, .. }, Ok(_))
        | (
            AccountCommand::Finish { legs, .. },
            Err(Error::Rejected(tradefloor_domain::Error::HoldNotFound { .. })),
        ) => SagaInput::finished(legs, at),
        // Nothing of a refused finish is applied; the saga's deadline sends it again.
        (AccountCommand::Finish { legs, .. }, Err(Error::Rejected(reason))) => {
            SagaInput::SettleRejected {
                trade_id: legs.first()?.trade_id,
                reason: reason.clone(),
                at,
            }
        }
        // No hold left is what a release wants: an earlier release went through.
        (AccountCommand::ReleaseHold { .. }, Ok(_))
        | (
            AccountCommand::ReleaseHold { .. },
            Err(Error::Rejected(tradefloor_domain::Error::HoldNotFound { .. })),
        ) => SagaInput::HoldReleased { at },
        _ => return None,
    })
}

/// The saga input a book's refusal of a saga's command means, if it was refused. What the
/// book did when it accepted a command reaches the sagas through the feed instead.
pub fn book_refusal<R>(
    command: &BookCommand,
    result: &Result<R, Error>,
    at: Timestamp,
) -> Option<SagaInput> {
    let Err(Error::Rejected(reason)) = result else {
        return None;
    };
    let reason = reason.clone();
    match command {
        BookCommand::Submit { .. } => Some(SagaInput::SubmitRejected { reason, at }),
        BookCommand::Cancel { .. } | BookCommand::Abandon { .. } => {
            Some(SagaInput::CancelRejected { reason, at })
        }
        _ => None,
    }
}

impl Dispatcher<OrderSaga> for TradingDispatcher {
    fn dispatch(
        &self,
        saga_id: String,
        effect: SagaCommand,
    ) -> BoxFuture<Vec<(String, SagaInput)>> {
        let this = self.clone();
        Box::pin(async move {
            match effect {
                SagaCommand::Account {
                    account_id,
                    command,
                } => this.account(saga_id, account_id, command).await,
                SagaCommand::Book { symbol, command } => this.book(saga_id, symbol, command).await,
            }
        })
    }
}
