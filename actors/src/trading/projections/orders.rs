//! Orders with status and fills, from the order sagas' events and the account's and the
//! book's facts about orders.
//!
//! An order's row is its saga's [`OrderView`] after the batch's last event about the order.
//! The saga journals only what the other journals do not say, so the projection folds the
//! saga as its host recovers it (the domain's own status rules, no copy of them here, and a
//! replay from offset 0 gives the same rows), with a [`LogFold`]: it keeps the sagas it folded
//! in memory and folds each batch's events onto them; only a saga the fold cannot be sure of
//! (after a restart, evicted, or with own events written after facts it folded) is read from
//! the journal. Every read happens before the batch's first write, so the batch's transaction
//! holds SQLite's write lock only for its row writes.

use std::sync::Arc;

use std::collections::BTreeSet;

use tradefloor_domain::book::EndReason;
use tradefloor_domain::saga::{OrderSaga, OrderView};
use tradefloor_domain::{OrderStatus, OrderType, Side};
use tradefloor_persistence::{Database, Filter, Journal, OffsetStore, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::{ReadModelError, begin_batch, from_sql, to_sql};
use crate::hosting::log_fold::{self, Folding, LogFold};
use crate::hosting::projection::{Blame, PROJECTION_PARTITION, Projection};

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
    // The index of unfinished work a node resumes its sagas from (see `unfinished`).
    "CREATE INDEX IF NOT EXISTS trading_orders_unfinished ON trading_orders (finished, order_id)",
];

/// Where resuming the order sagas can start instead of offset 0: the orders this read model
/// holds unfinished, and the offset it had applied. The offset is read first: the rows read
/// after it are at least that recent, and the log after it holds everything newer, so every
/// saga unfinished at the end of the log is in one or the other.
pub async fn unfinished(database: &Database) -> Result<(Vec<String>, u64), ReadModelError> {
    let after = OffsetStore::new(database.clone())
        .load(NAME, PROJECTION_PARTITION)
        .await?;
    let rows = database
        .fetch(
            "SELECT order_id FROM trading_orders WHERE finished = 0 ORDER BY order_id",
            &[],
        )
        .await?;
    let ids = rows
        .iter()
        .map(|row| from_sql(&row[0], "order_id").map(|id| id.to_string()))
        .collect::<Result<_, _>>()?;
    Ok((ids, after))
}

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

pub(crate) fn end_reason_name(reason: EndReason) -> &'static str {
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

/// Holds recorded before their saga's start, kept until it comes (normally the next batch).
const EARLY_FACTS_MAX: usize = 65_536;

/// Events per read when a saga is folded from the journal.
const READ_PAGE_EVENTS: usize = 1_000;

/// Keeps `trading_orders` and `trading_order_fills`.
pub struct OrdersProjection {
    journal: Journal,
    /// Unfinished sagas folded so far.
    fold: LogFold<OrderSaga>,
    cache_max: usize,
    /// The last offset applied: a batch that starts at or before it is applied again after a
    /// rollback, so what the fold holds is ahead of it.
    last_offset: u64,
}

impl std::fmt::Debug for OrdersProjection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OrdersProjection")
            .field("sagas", &self.fold.len())
            .field("cache_max", &self.cache_max)
            .finish_non_exhaustive()
    }
}

impl OrdersProjection {
    /// A projection that reads sagas' streams from `journal` (when it does not hold them),
    /// keeping up to [`CACHE_SAGAS_MAX_DEFAULT`] sagas in memory.
    pub fn new(journal: Journal) -> Self {
        Self::with_cache_max(journal, CACHE_SAGAS_MAX_DEFAULT)
    }

    /// [`OrdersProjection::new`] keeping up to `cache_max` unfinished sagas in memory (a
    /// finished saga is dropped at once; past the bound the whole cache is dropped, and each
    /// saga is folded from the journal again at its next event).
    pub fn with_cache_max(journal: Journal, cache_max: usize) -> Self {
        Self {
            journal,
            fold: LogFold::new(EARLY_FACTS_MAX),
            cache_max,
            last_offset: 0,
        }
    }

    /// Folds the batch's events into the sagas they concern (reading the journal only for a
    /// saga the fold cannot be sure of) and returns the views of those that changed.
    async fn fold_batch(
        &mut self,
        events: &[Arc<StoredEvent>],
    ) -> Result<Vec<OrderView>, ReadModelError> {
        if events
            .first()
            .is_some_and(|first| first.global_offset <= self.last_offset)
        {
            self.fold.clear();
        }
        let mut changed = BTreeSet::new();
        let mut foldings = Vec::new();
        // A saga folded from the journal is folded through the whole batch at once.
        let through = events.last().map_or(0, |last| last.global_offset);
        for stored in events {
            self.fold.fold(stored, |_| true, &mut foldings);
            for folding in foldings.drain(..) {
                match folding {
                    Folding::Changed(id) => {
                        changed.insert(id);
                    }
                    Folding::Unsure(id) => {
                        let (folded, _) = log_fold::fold_from_journal::<OrderSaga>(
                            &self.journal,
                            &id,
                            through,
                            READ_PAGE_EVENTS,
                        )
                        .await?;
                        self.fold.insert(id.clone(), folded);
                        changed.insert(id);
                    }
                }
            }
        }
        if let Some(last) = events.last() {
            self.last_offset = last.global_offset;
        }
        let mut views = Vec::with_capacity(changed.len());
        for id in changed {
            let Some(folded) = self.fold.get(&id) else {
                continue;
            };
            if folded.state.is_started() {
                let view = folded.state.view();
                if view.finished {
                    self.fold.remove(&id);
                }
                views.push(view);
            }
        }
        if self.fold.len() > self.cache_max {
            self.fold.clear();
        }
        Ok(views)
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
    sql::insert_rows(
        transaction,
        ORDERS_TABLE,
        &ORDER_COLUMNS,
        &orders,
        "ON CONFLICT (order_id) DO UPDATE SET filled_quantity = excluded.filled_quantity, \
         status = excluded.status, reject_reason = excluded.reject_reason, \
         end_reason = excluded.end_reason, finished = excluded.finished",
    )
    .await?;
    sql::insert_rows(
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

    fn blame(&self, error: &ReadModelError) -> Blame {
        error.blame()
    }

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        // The sagas' own events and the account's and the book's facts about orders.
        Filter::All
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[Arc<StoredEvent>],
    ) -> Result<(), ReadModelError> {
        // Every read happens before the transaction's first write.
        let views = self.fold_batch(events).await?;
        begin_batch(transaction, NAME).await?;
        write_views(transaction, &views).await
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        self.fold.clear();
        self.last_offset = 0;
        transaction
            .execute("DELETE FROM trading_orders", &[])
            .await?;
        transaction
            .execute("DELETE FROM trading_order_fills", &[])
            .await?;
        Ok(())
    }
}
