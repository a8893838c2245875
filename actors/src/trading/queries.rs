//! Reads from live state: the account, the order and the book as their entities hold them in
//! memory, never by replaying a journal per request.
//!
//! A look at an entity runs in its shard between commands ([`ShardRegion::inspect`]), so it
//! sees every command acknowledged before it and nothing not yet durable. On a cluster node an
//! entity whose shard another node owns is folded from the journal instead (its latest
//! snapshot plus its tail, [`load_state`]): the same answer, at a cost bounded by the snapshot
//! interval.

use tradefloor_domain::account::Account;
use tradefloor_domain::book::{BookDepth, OrderBook, Trade};
use tradefloor_domain::saga::{OrderSaga, OrderView};
use tradefloor_domain::{AccountId, OrderId, Symbol};

use super::projections;
use super::state::load_state;
use super::{AccountView, Exchange, balance_view};
use super::{Candle, CandleInterval};
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

    /// The account's balances and open orders, as of every acknowledged command (its holds
    /// count in its balances; an order appears once its saga started).
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
            // A hold whose saga has not started is no order the client was told of: a
            // generated order's hold and start are written at once, and a crash between them
            // leaves a hold the next sweep releases (see `recovery`).
            match self.order(order_id).await {
                Ok(view) if !view.status.is_final() => open_orders.push(view),
                Ok(_) | Err(Error::Rejected(tradefloor_domain::Error::OrderNotFound { .. })) => {}
                Err(error) => return Err(error),
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
    pub(super) async fn look<A: Persistent, R: Send + 'static>(
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

impl Exchange {
    /// The market's latest trades (up to `limit`), newest first, from the trade tape.
    pub async fn trades(&self, symbol: Symbol, limit: usize) -> Result<Vec<Trade>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.journal.read_models().fetch(&format!(
                "SELECT {} FROM trading_trades WHERE symbol = $1 ORDER BY trade_id DESC LIMIT $2",
                projections::trades::COLUMNS
            ),
            &[symbol.as_str().into(), limit.into()],
        )
        .await
        .map_err(|error| projections::storage("trades", error))?;
        rows.iter()
            .map(|row| projections::trades::trade_from_row(row))
            .collect::<Result<_, _>>()
            .map_err(|error| projections::storage("trades", error))
    }

    /// The market's candles of `interval`, up to `limit`, newest first.
    pub async fn candles(
        &self,
        symbol: Symbol,
        interval: CandleInterval,
        limit: usize,
    ) -> Result<Vec<Candle>, Error> {
        projections::candles::latest_candles(&self.journal, symbol, interval, limit)
            .await
            .map_err(|error| projections::storage("candles", error))
    }
}
