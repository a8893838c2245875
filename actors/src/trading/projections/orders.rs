//! Orders with status and fills, from the order sagas' events.
//!
//! An order's row is its saga's [`OrderView`] after the batch's last event of that saga. The
//! saga's state at a sequence is fixed by its events (the journal never changes them), so the
//! projection folds the saga's stream from the journal up to that sequence: the domain's own
//! status rules, no copy of them here, and a replay from offset 0 gives the same rows.

use std::collections::BTreeMap;

use tradefloor_domain::book::EndReason;
use tradefloor_domain::saga::{OrderSaga, OrderView};
use tradefloor_domain::{Aggregate, OrderStatus, OrderType, Side};
use tradefloor_persistence::{Filter, Journal, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::{ReadModelError, begin_batch, to_sql};
use crate::entity::Persistent;
use crate::projection::Projection;

/// The projection's name (its offset-store key).
pub const NAME: &str = "trading.orders";
/// One row per order.
pub const ORDERS_TABLE: &str = "trading_orders";
/// One row per fill of an order.
pub const FILLS_TABLE: &str = "trading_order_fills";

pub(crate) const CREATE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS trading_orders (order_id BIGINT PRIMARY KEY, \
     account_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, \
     order_type TEXT NOT NULL, price BIGINT, quantity BIGINT NOT NULL, \
     filled_quantity BIGINT NOT NULL, status TEXT NOT NULL, reject_reason TEXT, \
     end_reason TEXT, finished BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trading_order_fills (order_id BIGINT NOT NULL, \
     trade_id BIGINT NOT NULL, price BIGINT NOT NULL, quantity BIGINT NOT NULL, \
     settled BIGINT NOT NULL, PRIMARY KEY (order_id, trade_id))",
];

/// The stable name of an order status, as the HTTP contract spells it.
pub fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Open => "open",
        OrderStatus::PartiallyFilled => "partially_filled",
        OrderStatus::Filled => "filled",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Rejected => "rejected",
    }
}

fn end_reason_name(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Filled => "filled",
        EndReason::Cancelled => "cancelled",
        EndReason::Expired => "expired",
        EndReason::SelfTradePrevented => "self_trade_prevented",
        EndReason::Halted => "halted",
    }
}

/// Keeps `trading_orders` and `trading_order_fills`.
#[derive(Debug)]
pub struct OrdersProjection {
    journal: Journal,
}

impl OrdersProjection {
    /// A projection that reads sagas' streams from `journal`.
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// The saga `saga_id` as of sequence `through`.
    async fn saga_at(&self, stream: &str, through: u64) -> Result<OrderSaga, ReadModelError> {
        let codec = <OrderSaga as Persistent>::codec();
        let mut saga = OrderSaga::default();
        let mut next = 1;
        while next <= through {
            let limit = usize::try_from(through - next + 1).unwrap_or(usize::MAX);
            let page = self.journal.read_stream(stream, next, limit).await?;
            let Some(last) = page.last() else {
                return Err(ReadModelError::Corrupt(format!(
                    "{stream} ends before {through}"
                )));
            };
            next = last.sequence + 1;
            for stored in &page {
                saga.apply(&codec.decode(stored)?);
            }
        }
        Ok(saga)
    }
}

async fn write_view(transaction: &mut Transaction, view: &OrderView) -> Result<(), ReadModelError> {
    let order_id: SqlValue = to_sql(view.order_id.0, "order id")?.into();
    let price = view
        .price
        .map(|price| to_sql(price.get(), "price"))
        .transpose()?;
    let values: [SqlValue; 12] = [
        order_id.clone(),
        view.account_id.as_str().into(),
        view.symbol.as_str().into(),
        match view.side {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
        .into(),
        match view.order_type {
            OrderType::Limit => "limit",
            OrderType::Market => "market",
        }
        .into(),
        price.into(),
        to_sql(view.quantity.get(), "quantity")?.into(),
        to_sql(view.filled_quantity.get(), "quantity")?.into(),
        status_name(view.status).into(),
        view.reject_reason
            .as_ref()
            .map_or(SqlValue::NullText, |reason| reason.code().into()),
        view.end_reason
            .map_or(SqlValue::NullText, |reason| end_reason_name(reason).into()),
        i64::from(view.finished).into(),
    ];
    sql::execute(
        transaction,
        "INSERT INTO trading_orders (order_id, account_id, symbol, side, order_type, price, \
         quantity, filled_quantity, status, reject_reason, end_reason, finished) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (order_id) DO UPDATE SET filled_quantity = excluded.filled_quantity, \
         status = excluded.status, reject_reason = excluded.reject_reason, \
         end_reason = excluded.end_reason, finished = excluded.finished",
        &values,
    )
    .await?;
    for fill in &view.fills {
        sql::execute(
            transaction,
            "INSERT INTO trading_order_fills (order_id, trade_id, price, quantity, settled) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id, trade_id) \
             DO UPDATE SET settled = excluded.settled",
            &[
                order_id.clone(),
                to_sql(fill.trade_id.0, "trade id")?.into(),
                to_sql(fill.price.get(), "price")?.into(),
                to_sql(fill.quantity.get(), "quantity")?.into(),
                i64::from(fill.settled).into(),
            ],
        )
        .await?;
    }
    Ok(())
}

impl Projection for OrdersProjection {
    type Error = ReadModelError;

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        Filter::Kind(<OrderSaga as Aggregate>::KIND.to_owned())
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[StoredEvent],
    ) -> Result<(), ReadModelError> {
        begin_batch(transaction, NAME).await?;
        // Each saga's last sequence in the batch: one row write per saga per batch.
        let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
        for event in events {
            latest.insert(&event.stream, event.sequence);
        }
        for (stream, through) in latest {
            let saga = self.saga_at(stream, through).await?;
            if saga == OrderSaga::default() {
                continue;
            }
            write_view(transaction, &saga.view()).await?;
        }
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        sql::execute(transaction, "DELETE FROM trading_orders", &[]).await?;
        sql::execute(transaction, "DELETE FROM trading_order_fills", &[]).await?;
        Ok(())
    }
}
