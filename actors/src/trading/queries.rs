//! Reads from live state: the account, the order and the book as their entities hold them in
//! memory, never by replaying a journal per request.
//!
//! A look at an entity runs in its shard between commands ([`ShardRegion::inspect`]), so it
//! sees every command acknowledged before it and nothing not yet durable. On a cluster node an
//! entity whose shard another node owns is folded from the journal instead (its latest
//! snapshot plus its tail, [`load_state`]): the same answer, at a cost bounded by the snapshot
//! interval.

use tradefloor_domain::account::Account;
use tradefloor_domain::book::{BookDepth, OrderBook};
use tradefloor_domain::saga::{OrderSaga, OrderView};
use tradefloor_domain::{AccountId, OrderId, Symbol};

use super::state::load_state;
use super::{AccountView, Exchange, balance_view};
use crate::error::Error;
use crate::hosting::entity::Persistent;
use crate::hosting::region::ShardRegion;

impl Exchange {
    /// The order as its saga knows it: status, filled quantity, fills.
    pub async fn order(&self, order_id: OrderId) -> Result<OrderView, Error> {
        let view = self
            .look(
                self.host.region(),
                &order_id.to_string(),
                |saga: &OrderSaga| saga.is_started().then(|| saga.view()),
            )
            .await?;
        view.ok_or(Error::Rejected(tradefloor_domain::Error::OrderNotFound {
            order_id,
        }))
    }

    /// The account's balances and open orders, as of every acknowledged command.
    pub async fn account(&self, account_id: AccountId) -> Result<AccountView, Error> {
        let (balances, holds) = self
            .look(&self.accounts, account_id.as_str(), |account: &Account| {
                let balances = account
                    .balances()
                    .iter()
                    .map(|(asset, balance)| (*asset, balance_view(*balance)))
                    .collect();
                let holds: Vec<OrderId> = account.holds().keys().copied().collect();
                (balances, holds)
            })
            .await?;
        let mut open_orders = Vec::with_capacity(holds.len());
        for order_id in holds {
            let view = self.order(order_id).await?;
            if !view.status.is_final() {
                open_orders.push(view);
            }
        }
        Ok(AccountView {
            account_id,
            balances,
            open_orders,
        })
    }

    /// Up to `levels` price levels per side of the market's book, best first.
    pub async fn book_depth(&self, symbol: Symbol, levels: usize) -> Result<BookDepth, Error> {
        let depth = self
            .look(&self.books, symbol.as_str(), move |book: &OrderBook| {
                book.spec().is_some().then(|| book.depth(levels))
            })
            .await?;
        depth.ok_or(Error::Rejected(tradefloor_domain::Error::UnknownMarket {
            symbol,
        }))
    }

    /// `look` at entity `entity_id` in memory, or (its shard owned by another node) at its
    /// state folded from the journal.
    async fn look<A: Persistent, R: Send + 'static>(
        &self,
        region: &ShardRegion<A>,
        entity_id: &str,
        look: impl Fn(&A) -> R + Clone + Send + 'static,
    ) -> Result<R, Error> {
        match region
            .inspect(entity_id, self.config.ask_deadline, look.clone())
            .await
        {
            Err(Error::Stopped { .. }) if region.remoting().is_some() => {
                let (state, _) = load_state::<A>(&self.journal, entity_id).await?;
                Ok(look(&state))
            }
            answer => answer,
        }
    }
}
