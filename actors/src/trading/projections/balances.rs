//! Balances and positions: `{total, held}` per account and asset from the accounts' events,
//! and base quantity bought and sold per account and market from the books' trades.

use tradefloor_domain::account::{Account, AccountEvent};
use tradefloor_domain::{AccountId, Asset, Side};
use tradefloor_persistence::{Filter, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::trades::{decode_trade, symbol_of};
use super::{ReadModelError, begin_batch, from_sql, to_sql};
use crate::hosting::entity::Persistent;
use crate::hosting::projection::Projection;

/// The projection's name (its offset-store key).
pub const NAME: &str = "trading.balances";
/// Balances per account and asset.
pub const BALANCES_TABLE: &str = "trading_balances";
/// Positions per account and market.
pub const POSITIONS_TABLE: &str = "trading_positions";

pub(crate) const CREATE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS trading_balances (account_id TEXT NOT NULL, \
     asset TEXT NOT NULL, total BIGINT NOT NULL, held BIGINT NOT NULL, \
     PRIMARY KEY (account_id, asset))",
    "CREATE TABLE IF NOT EXISTS trading_positions (account_id TEXT NOT NULL, \
     symbol TEXT NOT NULL, bought BIGINT NOT NULL, sold BIGINT NOT NULL, \
     trades BIGINT NOT NULL, PRIMARY KEY (account_id, symbol))",
];

/// Keeps `trading_balances` and `trading_positions`.
#[derive(Debug, Default)]
pub struct BalancesProjection;

/// How an event moves one balance: signed changes of total and held.
struct Change {
    asset: Asset,
    total: i128,
    held: i128,
}

fn changes(event: &AccountEvent) -> Vec<Change> {
    let signed = |amount: tradefloor_domain::Amount| i128::from(amount.get());
    match event {
        AccountEvent::Deposited { asset, amount, .. } => vec![Change {
            asset: *asset,
            total: signed(*amount),
            held: 0,
        }],
        AccountEvent::Withdrawn { asset, amount, .. } => vec![Change {
            asset: *asset,
            total: -signed(*amount),
            held: 0,
        }],
        AccountEvent::HoldPlaced { asset, amount, .. } => vec![Change {
            asset: *asset,
            total: 0,
            held: signed(*amount),
        }],
        AccountEvent::TradeSettled {
            debit_asset,
            debit_amount,
            credit_asset,
            credit_amount,
            ..
        } => vec![
            Change {
                asset: *debit_asset,
                total: -signed(*debit_amount),
                held: -signed(*debit_amount),
            },
            Change {
                asset: *credit_asset,
                total: signed(*credit_amount),
                held: 0,
            },
        ],
        AccountEvent::HoldReleased { asset, amount, .. } => vec![Change {
            asset: *asset,
            total: 0,
            held: -signed(*amount),
        }],
        AccountEvent::RiskLimitsSet { .. } => Vec::new(),
    }
}

async fn apply_change(
    transaction: &mut Transaction,
    account: &str,
    change: &Change,
) -> Result<(), ReadModelError> {
    let key: [SqlValue; 2] = [account.into(), change.asset.as_str().into()];
    let rows = sql::fetch_in(
        transaction,
        "SELECT total, held FROM trading_balances WHERE account_id = $1 AND asset = $2",
        &key,
    )
    .await?;
    let (total, held) = match rows.first() {
        Some(row) => (
            i128::from(from_sql(&row[0], "total")?),
            i128::from(from_sql(&row[1], "held")?),
        ),
        None => (0, 0),
    };
    let (total, held) = (total + change.total, held + change.held);
    if held < 0 || held > total {
        return Err(ReadModelError::Corrupt(format!(
            "{account} {}: total {total}, held {held}",
            change.asset
        )));
    }
    let column = |value: i128| {
        i64::try_from(value).map_err(|_| ReadModelError::OutOfRange(format!("balance {value}")))
    };
    sql::execute(
        transaction,
        "INSERT INTO trading_balances (account_id, asset, total, held) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, asset) DO UPDATE SET total = excluded.total, held = excluded.held",
        &[
            key[0].clone(),
            key[1].clone(),
            column(total)?.into(),
            column(held)?.into(),
        ],
    )
    .await?;
    Ok(())
}

async fn apply_position(
    transaction: &mut Transaction,
    account: &AccountId,
    symbol: &str,
    side: Side,
    quantity: u64,
) -> Result<(), ReadModelError> {
    let key: [SqlValue; 2] = [account.as_str().into(), symbol.into()];
    let rows = sql::fetch_in(
        transaction,
        "SELECT bought, sold, trades FROM trading_positions WHERE account_id = $1 AND symbol = $2",
        &key,
    )
    .await?;
    let (mut bought, mut sold, mut trades) = match rows.first() {
        Some(row) => (
            from_sql(&row[0], "bought")?,
            from_sql(&row[1], "sold")?,
            from_sql(&row[2], "trades")?,
        ),
        None => (0, 0, 0),
    };
    let overflow = || ReadModelError::OutOfRange(format!("position of {account} in {symbol}"));
    match side {
        Side::Buy => bought = bought.checked_add(quantity).ok_or_else(overflow)?,
        Side::Sell => sold = sold.checked_add(quantity).ok_or_else(overflow)?,
    }
    trades = trades.checked_add(1).ok_or_else(overflow)?;
    sql::execute(
        transaction,
        "INSERT INTO trading_positions (account_id, symbol, bought, sold, trades) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, symbol) DO UPDATE SET \
         bought = excluded.bought, sold = excluded.sold, trades = excluded.trades",
        &[
            key[0].clone(),
            key[1].clone(),
            to_sql(bought, "bought")?.into(),
            to_sql(sold, "sold")?.into(),
            to_sql(trades, "trades")?.into(),
        ],
    )
    .await?;
    Ok(())
}

impl Projection for BalancesProjection {
    type Error = ReadModelError;

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        Filter::All
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[StoredEvent],
    ) -> Result<(), ReadModelError> {
        begin_batch(transaction, NAME).await?;
        let codec = <Account as Persistent>::codec();
        for stored in events {
            match stored.kind.as_str() {
                "account" => {
                    let account = stored.stream.strip_prefix("account|").ok_or_else(|| {
                        ReadModelError::Corrupt(format!("{} is not an account", stored.stream))
                    })?;
                    let event = codec.decode(stored)?;
                    for change in changes(&event) {
                        apply_change(transaction, account, &change).await?;
                    }
                }
                "order_book" if stored.name == "book.traded" => {
                    let Some(trade) = decode_trade(stored)? else {
                        continue;
                    };
                    let symbol = symbol_of(&stored.stream)?;
                    let maker_side = trade.taker_side.opposite();
                    let quantity = trade.quantity.get();
                    apply_position(
                        transaction,
                        &trade.taker_account_id,
                        symbol.as_str(),
                        trade.taker_side,
                        quantity,
                    )
                    .await?;
                    apply_position(
                        transaction,
                        &trade.maker_account_id,
                        symbol.as_str(),
                        maker_side,
                        quantity,
                    )
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        sql::execute(transaction, "DELETE FROM trading_balances", &[]).await?;
        sql::execute(transaction, "DELETE FROM trading_positions", &[]).await?;
        Ok(())
    }
}
