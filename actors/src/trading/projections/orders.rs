//! Orders with status and fills, from the order sagas' events.
//!
//! An order's row is its saga's [`OrderView`] after the batch's last event of that saga. The
//! saga's state at a sequence is fixed by its events (the journal never changes them), so the
//! projection folds the saga's events (the domain's own status rules, no copy of them here,
//! and a replay from offset 0 gives the same rows). It keeps the sagas it folded in memory
//! and folds each batch's events onto them; only a saga it does not hold at the sequence just
//! before the batch's first event of it (after a restart, or evicted) is read from the
//! journal. Every read happens before the batch's first write, so the batch's transaction
//! holds SQLite's write lock only for its row writes (the journal's writer waits on that
//! lock).

use std::collections::{BTreeMap, HashMap};

use tradefloor_domain::book::EndReason;
use tradefloor_domain::saga::{OrderSaga, OrderView};
use tradefloor_domain::{Aggregate, OrderStatus, OrderType, Side};
use tradefloor_persistence::{Filter, Journal, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::{ReadModelError, begin_batch, to_sql};
use crate::hosting::entity::Persistent;
use crate::hosting::projection::Projection;

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

/// Default of [`OrdersProjection::with_cache_max`]: sagas kept in memory.
pub const CACHE_SAGAS_MAX_DEFAULT: usize = 100_000;

/// Keeps `trading_orders` and `trading_order_fills`.
#[derive(Debug)]
pub struct OrdersProjection {
    journal: Journal,
    /// Unfinished sagas folded so far, by stream, with the last sequence folded in.
    cache: HashMap<String, (OrderSaga, u64)>,
    cache_max: usize,
}

impl OrdersProjection {
    /// A projection that reads sagas' streams from `journal` (when it does not hold them),
    /// keeping up to [`CACHE_SAGAS_MAX_DEFAULT`] sagas in memory.
    pub fn new(journal: Journal) -> Self {
        Self::with_cache_max(journal, CACHE_SAGAS_MAX_DEFAULT)
    }

    /// [`OrdersProjection::new`] keeping up to `cache_max` unfinished sagas in memory (a
    /// finished saga is dropped at once; past the bound the whole cache is dropped, and each
    /// saga is read from the journal again at its next event).
    pub fn with_cache_max(journal: Journal, cache_max: usize) -> Self {
        Self {
            journal,
            cache: HashMap::new(),
            cache_max,
        }
    }

    /// The saga of `stream` folded through `events` (its events in this batch, contiguous
    /// and in order), from the cache when it holds the saga right before them.
    async fn fold(
        &mut self,
        stream: &str,
        events: &[&StoredEvent],
    ) -> Result<OrderSaga, ReadModelError> {
        let (first, last) = (events[0].sequence, events[events.len() - 1].sequence);
        let cached = self.cache.remove(stream);
        let saga = match cached {
            Some((mut saga, sequence)) if sequence + 1 == first => {
                let codec = <OrderSaga as Persistent>::codec();
                for stored in events {
                    saga.apply(&codec.decode(stored)?);
                }
                saga
            }
            // A batch applied again after a rollback: the cache is already there.
            Some((saga, sequence)) if sequence == last => saga,
            _ => self.saga_at(stream, last).await?,
        };
        if !saga.view().finished && self.cache_max > 0 {
            if self.cache.len() >= self.cache_max {
                self.cache.clear();
            }
            self.cache.insert(stream.to_owned(), (saga.clone(), last));
        }
        Ok(saga)
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

/// The columns of `trading_orders`, in the order [`order_row`] gives them.
const ORDER_COLUMNS: [&str; 12] = [
    "order_id",
    "account_id",
    "symbol",
    "side",
    "order_type",
    "price",
    "quantity",
    "filled_quantity",
    "status",
    "reject_reason",
    "end_reason",
    "finished",
];

/// The columns of `trading_order_fills`.
const FILL_COLUMNS: [&str; 5] = ["order_id", "trade_id", "price", "quantity", "settled"];

fn order_row(view: &OrderView) -> Result<Vec<SqlValue>, ReadModelError> {
    let price = view
        .price
        .map(|price| to_sql(price.get(), "price"))
        .transpose()?;
    Ok(vec![
        to_sql(view.order_id.0, "order id")?.into(),
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
    ])
}

/// Writes the views (one per order) with one multi-row upsert per table.
async fn write_views(
    transaction: &mut Transaction,
    views: &[OrderView],
) -> Result<(), ReadModelError> {
    let mut orders = Vec::with_capacity(views.len());
    let mut fills = Vec::new();
    for view in views {
        orders.push(order_row(view)?);
        for fill in &view.fills {
            fills.push(vec![
                to_sql(view.order_id.0, "order id")?.into(),
                to_sql(fill.trade_id.0, "trade id")?.into(),
                to_sql(fill.price.get(), "price")?.into(),
                to_sql(fill.quantity.get(), "quantity")?.into(),
                i64::from(fill.settled).into(),
            ]);
        }
    }
    sql::write_rows(
        transaction,
        ORDERS_TABLE,
        &ORDER_COLUMNS,
        &orders,
        "ON CONFLICT (order_id) DO UPDATE SET filled_quantity = excluded.filled_quantity, \
         status = excluded.status, reject_reason = excluded.reject_reason, \
         end_reason = excluded.end_reason, finished = excluded.finished",
    )
    .await?;
    sql::write_rows(
        transaction,
        FILLS_TABLE,
        &FILL_COLUMNS,
        &fills,
        "ON CONFLICT (order_id, trade_id) DO UPDATE SET settled = excluded.settled",
    )
    .await?;
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
        // Each saga's events in the batch, in order; folded (reading the journal only for a
        // saga not in the cache) before the first write of the transaction.
        let mut by_stream: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
        for event in events {
            by_stream.entry(&event.stream).or_default().push(event);
        }
        let mut views = Vec::with_capacity(by_stream.len());
        for (stream, stream_events) in by_stream {
            let saga = self.fold(stream, &stream_events).await?;
            if saga != OrderSaga::default() {
                views.push(saga.view());
            }
        }
        begin_batch(transaction, NAME).await?;
        write_views(transaction, &views).await
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        self.cache.clear();
        sql::execute(transaction, "DELETE FROM trading_orders", &[]).await?;
        sql::execute(transaction, "DELETE FROM trading_order_fills", &[]).await?;
        Ok(())
    }
}
