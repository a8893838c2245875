//! The trading read models: SQL tables in the journal's database, each fed by a
//! [`Projection`](crate::hosting::projection::Projection) that commits its offset in the same
//! transaction as its writes (exactly once), each creating its own tables.
//!
//! - [`balances`]: balances `{total, held}` per account and asset, and positions (base bought
//!   and sold) per account and market.
//! - [`orders`]: every order with its status, filled quantity and fills.
//! - [`trades`]: the trade tape per market.
//! - [`candles`]: OHLCV and VWAP over 1 s, 1 m and 1 h tumbling windows, late trades
//!   accepted within a watermark.
//!
//! Money is stored as `BIGINT`: an amount above `i64::MAX` fails the batch (nothing of it is
//! kept) rather than being rounded or wrapped.

pub mod balances;
pub mod candles;
pub mod orders;
pub mod sql;
pub mod trades;

use std::collections::BTreeMap;

use tradefloor_persistence::{Database, Journal, Transaction};

use crate::error::Error;
use crate::hosting::dead_letter_table::DeadLetterTable;
use crate::hosting::projection::{Blame, ProjectionConfig, rebuild};
use sql::SqlValue;

/// Why a read model failed a batch. The batch is discarded; the projection's supervisor
/// restarts it and the batch comes again.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// The database refused a statement, the journal could not be read or an event not
    /// decoded.
    #[error("read model storage failed: {0}")]
    Storage(#[from] tradefloor_persistence::Error),
    /// A value does not fit its column (money above `i64::MAX`): fix the schema.
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// The tables contradict the events (e.g. a negative balance): rebuild the read model.
    #[error("read model inconsistent: {0}")]
    Corrupt(String),
}

impl ReadModelError {
    /// Whose fault it is: an event that cannot be decoded is poison; values out of range,
    /// contradictions and data the database refused are the event's; any other failure of
    /// the database is the read model's.
    pub fn blame(&self) -> Blame {
        use tradefloor_persistence::Error as E;
        match self {
            ReadModelError::Storage(E::Decode { .. } | E::UnknownEvent { .. }) => Blame::Poison,
            ReadModelError::Storage(error) => Blame::of_storage(error),
            ReadModelError::OutOfRange(_) | ReadModelError::Corrupt(_) => Blame::Event,
        }
    }
}

/// A `u64` as a `BIGINT`, or [`ReadModelError::OutOfRange`].
pub(crate) fn to_sql(value: u64, what: &str) -> Result<i64, ReadModelError> {
    i64::try_from(value).map_err(|_| ReadModelError::OutOfRange(format!("{what} = {value}")))
}

/// A `BIGINT` column read back as a `u64`, or [`ReadModelError::Corrupt`].
pub(crate) fn from_sql(value: &SqlValue, what: &str) -> Result<u64, ReadModelError> {
    value
        .integer()
        .and_then(|integer| u64::try_from(integer).ok())
        .ok_or_else(|| ReadModelError::Corrupt(format!("{what} is {value:?}")))
}

const BATCHES_TABLE: &str = "CREATE TABLE IF NOT EXISTS trading_read_model_batches (\
     projection TEXT PRIMARY KEY, batches BIGINT NOT NULL)";

/// The first statement of every batch: a write, so that on SQLite the batch's transaction
/// holds the write lock before it reads (a deferred transaction that reads first cannot wait
/// for the lock later). Counts the batches too.
pub(crate) async fn begin_batch(
    transaction: &mut Transaction,
    projection: &str,
) -> Result<(), ReadModelError> {
    transaction
        .execute(
            "INSERT INTO trading_read_model_batches (projection, batches) VALUES ($1, 1) \
         ON CONFLICT (projection) DO UPDATE SET batches = trading_read_model_batches.batches + 1",
            &[projection.into()],
        )
        .await?;
    Ok(())
}

/// Every read-model table, for [`dump`]: `(table, ORDER BY columns)`.
pub const TABLES: &[(&str, &str)] = &[
    (balances::BALANCES_TABLE, "account_id, asset"),
    (balances::POSITIONS_TABLE, "account_id, symbol"),
    (balances::HOLDS_TABLE, "order_id"),
    (orders::ORDERS_TABLE, "order_id"),
    (orders::FILLS_TABLE, "order_id, trade_id"),
    (trades::TRADES_TABLE, "symbol, trade_id"),
    (
        candles::CANDLES_TABLE,
        "symbol, interval_seconds, bucket_start",
    ),
    (candles::CLOCKS_TABLE, "symbol"),
];

/// Creates every read-model table that does not exist yet. A balances read model written
/// before it kept its index of open holds (`trading_holds`) is reset, so it is built again
/// from offset 0 with that index: the sweep for orphaned holds trusts it.
pub async fn create_tables(journal: &Journal) -> Result<(), Error> {
    let database = journal.read_models();
    // Only a missing table means an old read model: any other failure resets nothing (a
    // reset of the shared tables while another node's read model writes them corrupts them).
    let holds_indexed = match database
        .fetch(
            &format!("SELECT order_id FROM {} LIMIT 1", balances::HOLDS_TABLE),
            &[],
        )
        .await
    {
        Ok(_) => true,
        Err(error) if error.is_missing_table() => false,
        Err(error) => return Err(storage("balances", error)),
    };
    create_every_table(database).await?;
    DeadLetterTable::new(database.clone())
        .create()
        .await
        .map_err(|error| storage("dead letters", error))?;
    if !holds_indexed {
        balances::reset_without_holds(journal)
            .await
            .map_err(|error| storage("balances", error))?;
    }
    Ok(())
}

async fn create_every_table(database: &Database) -> Result<(), Error> {
    let statements = [BATCHES_TABLE]
        .into_iter()
        .chain(balances::CREATE.iter().copied())
        .chain(orders::CREATE.iter().copied())
        .chain(trades::CREATE.iter().copied())
        .chain(candles::CREATE.iter().copied());
    for statement in statements {
        let statement = match database {
            // On SQLite only `INTEGER PRIMARY KEY` is the table's own key (its rowid): a
            // `BIGINT` key is a second B-tree written with every row. Both are 64 bits there.
            Database::Sqlite(_) => statement.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY"),
            Database::Postgres(_) => statement.to_owned(),
        };
        database
            .execute(&statement)
            .await
            .map_err(|error| storage("read models", error))?;
    }
    Ok(())
}

/// Every row of every read-model table, in key order: what a rebuild must reproduce.
pub async fn dump(database: &Database) -> Result<BTreeMap<String, Vec<Vec<SqlValue>>>, Error> {
    let mut tables = BTreeMap::new();
    for (table, order) in TABLES {
        let rows = database
            .fetch(&format!("SELECT * FROM {table} ORDER BY {order}"), &[])
            .await
            .map_err(|error| storage(table, error))?;
        tables.insert((*table).to_owned(), rows);
    }
    Ok(tables)
}

/// Rebuilds every read model from offset 0 (stop the exchange's projections first).
pub async fn rebuild_all(
    journal: &Journal,
    config: &ProjectionConfig,
    candle_watermark_micros: i64,
) -> Result<(), Error> {
    let fail = |error: String| Error::Failed {
        actor: "read models".to_owned(),
        reason: error,
    };
    create_tables(journal).await?;
    rebuild(journal, &mut balances::BalancesProjection, config)
        .await
        .map_err(|error| fail(error.to_string()))?;
    rebuild(
        journal,
        &mut orders::OrdersProjection::new(journal.clone()),
        config,
    )
    .await
    .map_err(|error| fail(error.to_string()))?;
    rebuild(journal, &mut trades::TradesProjection, config)
        .await
        .map_err(|error| fail(error.to_string()))?;
    rebuild(
        journal,
        &mut candles::CandlesProjection::new(candle_watermark_micros),
        config,
    )
    .await
    .map_err(|error| fail(error.to_string()))?;
    Ok(())
}

/// A read-model query that failed, as the runtime's error.
pub(crate) fn storage(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Persistence {
        actor: format!("read model {what}"),
        reason: error.to_string(),
    }
}
