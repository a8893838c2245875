//! Balances and positions: `{total, held}` per account and asset from the accounts' events,
//! and base quantity bought and sold per account and market from the books' trades.

use std::sync::Arc;

use std::collections::{BTreeMap, HashMap};

use tradefloor_domain::account::{Account, AccountEvent, BalanceChange};
use tradefloor_domain::{AccountId, OrderId, Side};
use tradefloor_persistence::{Database, Filter, Journal, OffsetStore, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::trades::{decode_trade, symbol_of};
use super::{ReadModelError, begin_batch, from_sql, to_sql};
use crate::hosting::entity::Persistent;
use crate::hosting::projection::{Blame, PROJECTION_PARTITION, Projection};

/// The projection's name (its offset-store key).
pub const NAME: &str = "trading.balances";
/// Balances per account and asset.
pub const BALANCES_TABLE: &str = "trading_balances";
/// Positions per account and market.
pub const POSITIONS_TABLE: &str = "trading_positions";
/// Open holds by order: the index a node sweeps for holds a crash orphaned.
pub const HOLDS_TABLE: &str = "trading_holds";

pub(crate) const CREATE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS trading_balances (account_id TEXT NOT NULL, \
     asset TEXT NOT NULL, total BIGINT NOT NULL, held BIGINT NOT NULL, \
     PRIMARY KEY (account_id, asset))",
    "CREATE TABLE IF NOT EXISTS trading_positions (account_id TEXT NOT NULL, \
     symbol TEXT NOT NULL, bought BIGINT NOT NULL, sold BIGINT NOT NULL, \
     trades BIGINT NOT NULL, PRIMARY KEY (account_id, symbol))",
    "CREATE TABLE IF NOT EXISTS trading_holds (order_id BIGINT PRIMARY KEY, \
     account_id TEXT NOT NULL, recorded_at BIGINT NOT NULL)",
];

/// The holds open after the offset this read model had applied, and that offset: where a
/// sweep for orphaned holds starts instead of offset 0 (see `recovery`). The offset is read
/// first, so the rows are at least that recent and the log after it holds everything newer.
pub async fn open_holds(
    database: &Database,
) -> Result<(HashMap<OrderId, (AccountId, i64)>, u64), ReadModelError> {
    let after = OffsetStore::new(database.clone())
        .load(NAME, PROJECTION_PARTITION)
        .await?;
    let rows = database
        .fetch(
            "SELECT order_id, account_id, recorded_at FROM trading_holds",
            &[],
        )
        .await?;
    let mut open = HashMap::with_capacity(rows.len());
    for row in rows {
        let order_id = OrderId(from_sql(&row[0], "order_id")?);
        let account = row[1].text().unwrap_or_default();
        let account_id = AccountId::new(account)
            .map_err(|error| ReadModelError::Corrupt(format!("hold of {order_id}: {error}")))?;
        let recorded_at = row[2].integer().ok_or_else(|| {
            ReadModelError::Corrupt(format!("hold of {order_id}: recorded_at {:?}", row[2]))
        })?;
        open.insert(order_id, (account_id, recorded_at));
    }
    Ok((open, after))
}

/// Empties the read model and its offset if it has applied events, so that it is built
/// again from offset 0 (by its actor, once started): for a read model written before it kept
/// the open holds, whose index it would otherwise lack for every hold placed until then.
pub(super) async fn reset_without_holds(journal: &Journal) -> Result<(), ReadModelError> {
    let offset = OffsetStore::new(journal.read_models().clone())
        .load(NAME, PROJECTION_PARTITION)
        .await?;
    if offset == 0 {
        return Ok(());
    }
    let mut transaction = journal.begin_read_models().await?;
    BalancesProjection.reset(&mut transaction).await?;
    OffsetStore::reset_in(&mut transaction, NAME, PROJECTION_PARTITION).await?;
    transaction.commit().await?;
    tracing::warn!(
        projection = NAME,
        offset,
        "balances read model without its index of open holds: built again from offset 0"
    );
    Ok(())
}

/// Keeps `trading_balances` and `trading_positions`.
#[derive(Debug, Default)]
pub struct BalancesProjection;

/// A batch's net effect, merged per row so that each row is written once, with one
/// multi-row upsert per table that adds to what the row holds (no read before the write).
#[derive(Default)]
struct Batch {
    /// `(total, held)` changes per `(account, asset)`.
    balances: BTreeMap<(String, String), (i128, i128)>,
    /// `(bought, sold, trades)` added per `(account, symbol)`.
    positions: BTreeMap<(String, String), (u64, u64, u64)>,
    /// Holds placed by the batch and still open at its end: `(account, recorded at)`.
    placed: BTreeMap<OrderId, (String, i64)>,
    /// Holds placed before the batch and released in it.
    released: Vec<OrderId>,
}

impl Batch {
    fn change(&mut self, account: &str, change: &BalanceChange) {
        let entry = self
            .balances
            .entry((account.to_owned(), change.asset.as_str().to_owned()))
            .or_default();
        entry.0 += change.total;
        entry.1 += change.held;
    }

    fn hold(&mut self, account: &str, event: &AccountEvent, recorded_at: i64) {
        match event {
            AccountEvent::HoldPlaced { order_id, .. } => {
                self.placed
                    .insert(*order_id, (account.to_owned(), recorded_at));
            }
            AccountEvent::HoldReleased { order_id, .. } => {
                // A hold placed and released within the batch never reaches the table.
                let placed_in_batch = self.placed.remove(order_id).is_some();
                if !placed_in_batch {
                    self.released.push(*order_id);
                }
            }
            _ => {}
        }
    }

    fn trade(
        &mut self,
        account: &AccountId,
        symbol: &str,
        side: Side,
        quantity: u64,
    ) -> Result<(), ReadModelError> {
        let overflow = || ReadModelError::OutOfRange(format!("position of {account} in {symbol}"));
        let (bought, sold, trades) = self
            .positions
            .entry((account.as_str().to_owned(), symbol.to_owned()))
            .or_default();
        let added = match side {
            Side::Buy => bought,
            Side::Sell => sold,
        };
        *added = added.checked_add(quantity).ok_or_else(overflow)?;
        *trades = trades.checked_add(1).ok_or_else(overflow)?;
        Ok(())
    }

    async fn write(mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        self.write_holds(transaction).await?;
        let column = |value: i128| {
            i64::try_from(value).map_err(|_| ReadModelError::OutOfRange(format!("balance {value}")))
        };
        let mut rows = Vec::with_capacity(self.balances.len());
        for ((account, asset), (total, held)) in self.balances {
            rows.push(vec![
                account.into(),
                asset.into(),
                column(total)?.into(),
                column(held)?.into(),
            ]);
        }
        let balances = sql::write_rows(
            transaction,
            BALANCES_TABLE,
            &["account_id", "asset", "total", "held"],
            &rows,
            "ON CONFLICT (account_id, asset) DO UPDATE SET \
             total = trading_balances.total + excluded.total, \
             held = trading_balances.held + excluded.held \
             RETURNING account_id, asset, total, held",
        )
        .await?;
        for row in &balances {
            let (total, held) = (row[2].integer(), row[3].integer());
            if !matches!((total, held), (Some(total), Some(held)) if 0 <= held && held <= total) {
                return Err(ReadModelError::Corrupt(format!(
                    "{:?} {:?}: total {total:?}, held {held:?}",
                    row[0], row[1]
                )));
            }
        }
        let mut rows = Vec::with_capacity(self.positions.len());
        for ((account, symbol), (bought, sold, trades)) in self.positions {
            rows.push(vec![
                account.into(),
                symbol.into(),
                to_sql(bought, "bought")?.into(),
                to_sql(sold, "sold")?.into(),
                to_sql(trades, "trades")?.into(),
            ]);
        }
        let positions = sql::write_rows(
            transaction,
            POSITIONS_TABLE,
            &["account_id", "symbol", "bought", "sold", "trades"],
            &rows,
            "ON CONFLICT (account_id, symbol) DO UPDATE SET \
             bought = trading_positions.bought + excluded.bought, \
             sold = trading_positions.sold + excluded.sold, \
             trades = trading_positions.trades + excluded.trades \
             RETURNING bought, sold, trades",
        )
        .await?;
        // SQLite turns an integer sum that overflows into a float: refuse the batch instead.
        if let Some(row) = positions
            .iter()
            .find(|row| row.iter().any(|value| value.integer().is_none()))
        {
            return Err(ReadModelError::OutOfRange(format!("position {row:?}")));
        }
        Ok(())
    }
}

impl Batch {
    async fn write_holds(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        let mut rows = Vec::with_capacity(self.placed.len());
        for (order_id, (account, recorded_at)) in std::mem::take(&mut self.placed) {
            let order_id = to_sql(order_id.0, "order_id")?;
            rows.push(vec![order_id.into(), account.into(), recorded_at.into()]);
        }
        let columns = ["order_id", "account_id", "recorded_at"];
        sql::insert_rows(transaction, HOLDS_TABLE, &columns, &rows, "").await?;
        let released = self
            .released
            .iter()
            .map(|order_id| to_sql(order_id.0, "order_id").map(SqlValue::from))
            .collect::<Result<Vec<_>, _>>()?;
        sql::delete_in(transaction, HOLDS_TABLE, "order_id", &released).await?;
        Ok(())
    }
}

impl Projection for BalancesProjection {
    type Error = ReadModelError;

    fn blame(&self, error: &ReadModelError) -> Blame {
        error.blame()
    }

    /// An account's balances are deltas: its events apply in order or not at all.
    fn order_key(&self, event: &StoredEvent) -> Option<String> {
        (event.kind == "account").then(|| event.stream.clone())
    }

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        Filter::All
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[Arc<StoredEvent>],
    ) -> Result<(), ReadModelError> {
        begin_batch(transaction, NAME).await?;
        let codec = <Account as Persistent>::codec();
        let mut batch = Batch::default();
        for stored in events {
            match stored.kind.as_str() {
                "account" => {
                    let account = stored.stream.strip_prefix("account|").ok_or_else(|| {
                        ReadModelError::Corrupt(format!("{} is not an account", stored.stream))
                    })?;
                    let event = codec.decode_shared(stored)?;
                    for change in event.balance_changes() {
                        batch.change(account, &change);
                    }
                    batch.hold(account, &event, stored.recorded_at);
                }
                "order_book" if stored.name == "book.traded" => {
                    let Some(trade) = decode_trade(stored)? else {
                        continue;
                    };
                    let symbol = symbol_of(&stored.stream)?;
                    let quantity = trade.quantity.get();
                    batch.trade(
                        &trade.taker_account_id,
                        symbol.as_str(),
                        trade.taker_side,
                        quantity,
                    )?;
                    batch.trade(
                        &trade.maker_account_id,
                        symbol.as_str(),
                        trade.taker_side.opposite(),
                        quantity,
                    )?;
                }
                _ => {}
            }
        }
        batch.write(transaction).await
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        transaction
            .execute("DELETE FROM trading_balances", &[])
            .await?;
        transaction
            .execute("DELETE FROM trading_positions", &[])
            .await?;
        transaction
            .execute("DELETE FROM trading_holds", &[])
            .await?;
        Ok(())
    }
}
