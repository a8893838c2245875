//! The order sagas' dispatcher: carries out each [`SagaCommand`] on the account and book
//! regions and maps the answer back to a [`SagaInput`].
//!
//! Account answers go straight back to the saga. Book answers do not, except refusals: what
//! the book *did* (accepted, traded, rested, ended) concerns other orders' sagas too (a
//! resting maker fills inside another order's submit), so it reaches every saga through the
//! durable [`feed`](super::feed), which reads the books' events from the journal. After a
//! book command the dispatcher wakes the feed, so that path costs no poll interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tradefloor_domain::account::{Account, AccountCommand};
use tradefloor_domain::book::{BookCommand, OrderBook};
use tradefloor_domain::saga::{OrderSaga, SagaCommand, SagaInput};
use tradefloor_domain::{AccountId, Symbol};

use crate::error::Error;
use crate::region::ShardRegion;
use crate::saga_host::{BoxFuture, Clock, Dispatcher};

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
        let input = match (command, result) {
            (AccountCommand::PlaceHold { .. }, Ok(_)) => SagaInput::HoldPlaced { at },
            (AccountCommand::PlaceHold { .. }, Err(Error::Rejected(reason))) => {
                SagaInput::HoldRejected { reason, at }
            }
            (AccountCommand::SettleTrade { trade_id, .. }, Ok(_)) => {
                SagaInput::LegSettled { trade_id, at }
            }
            (AccountCommand::SettleTrade { trade_id, .. }, Err(Error::Rejected(reason))) => {
                SagaInput::SettleRejected {
                    trade_id,
                    reason,
                    at,
                }
            }
            (AccountCommand::ReleaseHold { .. }, Ok(_))
            | (
                AccountCommand::ReleaseHold { .. },
                Err(Error::Rejected(tradefloor_domain::Error::HoldNotFound { .. })),
            ) => SagaInput::HoldReleased { at },
            (AccountCommand::ReleaseHold { .. }, Err(Error::Rejected(reason))) => {
                tracing::warn!(saga = %saga_id, %reason, "release refused; the deadline retries");
                return Vec::new();
            }
            // Infrastructure trouble: no answer; the saga's deadline retries.
            (_, Err(error)) => {
                tracing::debug!(saga = %saga_id, %error, "account command failed");
                return Vec::new();
            }
            (command, Ok(_)) => {
                tracing::error!(saga = %saga_id, ?command, "sagas send no such account command");
                return Vec::new();
            }
        };
        vec![(saga_id, input)]
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
            .ask(symbol.as_str(), command.clone(), self.ask_deadline)
            .await;
        // Whatever the answer, the book may have written events: let the feed look now.
        self.feed_wake.notify_one();
        match (command, result) {
            (BookCommand::Submit { .. }, Err(Error::Rejected(reason))) => {
                vec![(saga_id, SagaInput::SubmitRejected { reason, at })]
            }
            (
                BookCommand::Cancel { .. } | BookCommand::Abandon { .. },
                Err(Error::Rejected(reason)),
            ) => vec![(saga_id, SagaInput::CancelRejected { reason, at })],
            (_, Err(error)) => {
                tracing::debug!(saga = %saga_id, %error, "book command failed");
                Vec::new()
            }
            // What the book did reaches the sagas through the feed.
            (_, Ok(_)) => Vec::new(),
        }
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
