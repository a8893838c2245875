//! What a node does at start, and for the shards it adopts: resume the unfinished order
//! sagas, and release the holds a crash orphaned.
//!
//! The sagas are resumed from an index of unfinished work, not from the whole log: the orders
//! read model's unfinished rows, and the log after the offset it had applied
//! ([`projections::orders::unfinished`], [`SagaHost::resume_from`]); the holds, from the
//! balances read model's open holds and the accounts' events after its offset
//! ([`projections::balances::open_holds`]).
//!
//! A placement with a generated order id records the saga's start in its hold (see
//! [`placement`](super::placement)): the hold is the start, and the saga is resumed like any
//! other. Journals written before that release started such a saga and placed its hold at
//! once, so a crash could leave a hold committed without the saga's start. Such an order was
//! never acknowledged and never reached its book (the submit waited for both), and no saga
//! will ever release its hold: the node releases it, with the release command id the saga
//! would have used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tradefloor_domain::account::{Account, AccountCommand, AccountEvent};
use tradefloor_domain::saga::OrderSaga;
use tradefloor_domain::{AccountId, Aggregate, CommandId, OrderId};
use tradefloor_persistence::{Filter, Journal, StoredEvent};

use crate::error::Error;
use crate::hosting::entity::{Persistent, order_tag, stream_of};
use crate::hosting::region::ShardRegion;
use crate::hosting::saga_host::SagaHost;
use crate::trading::projections;

/// Ticks every unfinished order saga `select` picks (see the module's documentation);
/// answers how many.
pub(super) async fn resume_sagas(
    host: &SagaHost<OrderSaga>,
    journal: &Journal,
    select: impl Fn(&str) -> bool,
) -> Result<usize, Error> {
    let (unfinished, after) = projections::orders::unfinished(journal.read_models())
        .await
        .map_err(|error| projections::storage("orders", error))?;
    host.resume_from(journal, unfinished, after, select).await
}

/// The event names the sweep decodes (the others it skips unread).
const HOLD_EVENTS: [&str; 2] = ["account.hold_placed", "account.hold_released"];

/// Releases the holds of orders whose saga never started.
pub(super) struct HoldSweep {
    pub(super) journal: Journal,
    pub(super) accounts: Arc<ShardRegion<Account>>,
    pub(super) ask_deadline: Duration,
    /// Where errors say they come from.
    pub(super) path: String,
}

impl HoldSweep {
    /// Releases every hold recorded before `recorded_before` (microseconds, journal time)
    /// whose order `select` picks, that does not carry its saga's start, and whose saga has
    /// no events; answers how many.
    ///
    /// Takes the holds still open (see `open_holds`), then looks up each one's saga stream. A
    /// node runs it at start, before it takes commands; a cluster node for the sagas of the
    /// shards it adopts, with `recorded_before` the time of the adoption, so a hold that a
    /// placement on this node has just placed (its saga's start on the way) is never taken
    /// for an orphan.
    pub(super) async fn run(
        &self,
        select: impl Fn(&str) -> bool,
        recorded_before: i64,
        now: tradefloor_domain::Timestamp,
    ) -> Result<usize, Error> {
        let open = self.open_holds(recorded_before).await?;
        let mut released = 0;
        for (order_id, account_id) in open {
            let saga_id = order_id.to_string();
            if !select(&saga_id) {
                continue;
            }
            let saga_events = self
                .journal
                .last_sequence(&stream_of::<OrderSaga>(&saga_id))
                .await
                .map_err(|error| self.storage_error(error))?;
            if saga_events > 0 || self.hold_starts_saga(order_id).await? {
                continue;
            }
            let release = AccountCommand::ReleaseHold {
                command_id: CommandId::derived(order_id, "release")
                    .expect("derived saga command ids are valid"),
                order_id,
                at: now,
            };
            self.accounts
                .ask(account_id.as_str(), release, self.ask_deadline)
                .await?;
            tracing::warn!(%order_id, account = %account_id, "released the hold of an order whose saga never started");
            released += 1;
        }
        Ok(released)
    }

    /// The holds recorded before `recorded_before` and open at the end of the log, by order:
    /// those the balances read model holds open, then the account events after its offset
    /// (so the history before it is not read).
    async fn open_holds(&self, recorded_before: i64) -> Result<HashMap<OrderId, AccountId>, Error> {
        let (indexed, mut after) = projections::balances::open_holds(self.journal.read_models())
            .await
            .map_err(|error| projections::storage("holds", error))?;
        let mut open: HashMap<OrderId, AccountId> = indexed
            .into_iter()
            .filter(|(_, (_, recorded_at))| *recorded_at < recorded_before)
            .map(|(order_id, (account_id, _))| (order_id, account_id))
            .collect();
        let codec = <Account as Persistent>::codec();
        let filter = Filter::Kind(Account::KIND.to_owned());
        let prefix = format!("{}|", Account::KIND);
        loop {
            let page = self
                .journal
                .read_all(after, self.journal.config().read_rows_max, &filter)
                .await
                .map_err(|error| self.storage_error(error))?;
            let Some(last) = page.last() else { break };
            after = last.global_offset;
            for stored in page.iter().filter(|stored| is_hold_event(stored)) {
                let event = codec
                    .decode(stored)
                    .map_err(|error| self.storage_error(error))?;
                match event {
                    AccountEvent::HoldPlaced {
                        order_id,
                        start: None,
                        ..
                    } if stored.recorded_at < recorded_before => {
                        let account = stored.stream.strip_prefix(&prefix).unwrap_or_default();
                        let account_id = AccountId::new(account).map_err(Error::Rejected)?;
                        open.insert(order_id, account_id);
                    }
                    AccountEvent::HoldReleased { order_id, .. } => {
                        open.remove(&order_id);
                    }
                    _ => {}
                }
            }
        }
        Ok(open)
    }

    /// Whether the hold of `order_id` carries its saga's start: then the hold is the saga,
    /// resumed with the others. One indexed read: the order's first event is its hold.
    async fn hold_starts_saga(&self, order_id: OrderId) -> Result<bool, Error> {
        let filter = Filter::Tag(order_tag(order_id));
        let first = self
            .journal
            .read_all(0, 1, &filter)
            .await
            .map_err(|error| self.storage_error(error))?;
        let Some(stored) = first.first().filter(|stored| is_hold_event(stored)) else {
            return Ok(false);
        };
        let event = <Account as Persistent>::codec()
            .decode(stored)
            .map_err(|error| self.storage_error(error))?;
        Ok(matches!(
            event,
            AccountEvent::HoldPlaced { start: Some(_), .. }
        ))
    }

    fn storage_error(&self, error: tradefloor_persistence::Error) -> Error {
        Error::Persistence {
            actor: self.path.clone(),
            reason: error.to_string(),
        }
    }
}

fn is_hold_event(stored: &StoredEvent) -> bool {
    HOLD_EVENTS.contains(&stored.name.as_str())
}
