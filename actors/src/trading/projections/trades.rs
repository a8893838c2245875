//! The trade tape: every trade of every market, from the books' `Traded` events.

use std::sync::Arc;

use tradefloor_domain::book::{BookEvent, OrderBook, Trade};
use tradefloor_domain::{AccountId, OrderId, Price, Quantity, Side, Symbol, Timestamp, TradeId};
use tradefloor_persistence::{Filter, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::{ReadModelError, begin_batch, from_sql, to_sql};
use crate::hosting::entity::Persistent;
use crate::hosting::projection::{Blame, Projection};

/// The projection's name (its offset-store key).
pub const NAME: &str = "trading.trades";
/// The tape.
pub const TRADES_TABLE: &str = "trading_trades";
/// The tag the order book puts on its `Traded` events.
pub const TRADE_TAG: &str = "trade";

pub(crate) const CREATE: &[&str] = &["CREATE TABLE IF NOT EXISTS trading_trades (\
     symbol TEXT NOT NULL, trade_id BIGINT NOT NULL, price BIGINT NOT NULL, \
     quantity BIGINT NOT NULL, maker_order_id BIGINT NOT NULL, maker_account_id TEXT NOT NULL, \
     taker_order_id BIGINT NOT NULL, taker_account_id TEXT NOT NULL, taker_side TEXT NOT NULL, \
     maker_remaining BIGINT NOT NULL, taker_remaining BIGINT NOT NULL, at BIGINT NOT NULL, \
     PRIMARY KEY (symbol, trade_id))"];

/// The columns read back by [`trade_from_row`], in order.
pub(crate) const COLUMNS: &str = "trade_id, price, quantity, maker_order_id, maker_account_id, \
     taker_order_id, taker_account_id, taker_side, maker_remaining, taker_remaining, at";

/// The market of an order-book stream (`order_book|BTC-USD`).
pub(crate) fn symbol_of(stream: &str) -> Result<Symbol, ReadModelError> {
    stream
        .strip_prefix("order_book|")
        .and_then(|symbol| Symbol::new(symbol).ok())
        .ok_or_else(|| ReadModelError::Corrupt(format!("{stream} is not an order book")))
}

/// The trade a `book.traded` event records.
pub(crate) fn decode_trade(event: &StoredEvent) -> Result<Option<Trade>, ReadModelError> {
    match &*<OrderBook as Persistent>::codec().decode_shared(event)? {
        BookEvent::Traded(trade) => Ok(Some(*trade)),
        _ => Ok(None),
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// The tape's columns, in the order [`TradesProjection`] writes them.
const INSERT_COLUMNS: [&str; 12] = [
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "maker_order_id",
    "maker_account_id",
    "taker_order_id",
    "taker_account_id",
    "taker_side",
    "maker_remaining",
    "taker_remaining",
    "at",
];

/// Writes each trade to `trading_trades`.
#[derive(Debug, Default)]
pub struct TradesProjection;

impl Projection for TradesProjection {
    type Error = ReadModelError;

    fn blame(&self, error: &ReadModelError) -> Blame {
        error.blame()
    }

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        Filter::Tag(TRADE_TAG.to_owned())
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[Arc<StoredEvent>],
    ) -> Result<(), ReadModelError> {
        begin_batch(transaction, NAME).await?;
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let Some(trade) = decode_trade(event)? else {
                continue;
            };
            let symbol = symbol_of(&event.stream)?;
            rows.push(vec![
                symbol.as_str().into(),
                to_sql(trade.trade_id.0, "trade id")?.into(),
                to_sql(trade.price.get(), "price")?.into(),
                to_sql(trade.quantity.get(), "quantity")?.into(),
                to_sql(trade.maker_order_id.0, "order id")?.into(),
                trade.maker_account_id.as_str().into(),
                to_sql(trade.taker_order_id.0, "order id")?.into(),
                trade.taker_account_id.as_str().into(),
                side_name(trade.taker_side).into(),
                to_sql(trade.maker_remaining.get(), "quantity")?.into(),
                to_sql(trade.taker_remaining.get(), "quantity")?.into(),
                trade.at.micros().into(),
            ]);
        }
        sql::insert_rows(transaction, "trading_trades", &INSERT_COLUMNS, &rows, "").await?;
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        transaction
            .execute("DELETE FROM trading_trades", &[])
            .await?;
        Ok(())
    }
}

/// A tape row (columns [`COLUMNS`]) back as a trade.
pub(crate) fn trade_from_row(row: &[SqlValue]) -> Result<Trade, ReadModelError> {
    let text = |index: usize| {
        row[index]
            .text()
            .ok_or_else(|| ReadModelError::Corrupt(format!("column {index} is not text")))
    };
    let account = |index: usize| {
        text(index).and_then(|id| {
            AccountId::new(id).map_err(|error| ReadModelError::Corrupt(error.to_string()))
        })
    };
    Ok(Trade {
        trade_id: TradeId(from_sql(&row[0], "trade id")?),
        price: Price(from_sql(&row[1], "price")?),
        quantity: Quantity(from_sql(&row[2], "quantity")?),
        maker_order_id: OrderId(from_sql(&row[3], "order id")?),
        maker_account_id: account(4)?,
        taker_order_id: OrderId(from_sql(&row[5], "order id")?),
        taker_account_id: account(6)?,
        taker_side: if text(7)? == "buy" {
            Side::Buy
        } else {
            Side::Sell
        },
        maker_remaining: Quantity(from_sql(&row[8], "quantity")?),
        taker_remaining: Quantity(from_sql(&row[9], "quantity")?),
        at: Timestamp(row[10].integer().unwrap_or_default()),
    })
}
