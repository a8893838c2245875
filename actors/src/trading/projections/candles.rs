//! Candles: OHLCV and VWAP per market over 1 s, 1 m and 1 h tumbling windows.
//!
//! A trade falls in the window `[start, start + width)` with `start = at − at mod width`
//! (event time, not arrival). Trades may arrive late, out of time order: each market keeps
//! the latest trade time seen, and a trade older than that minus the watermark is dropped
//! (counted in `late_dropped`); a later one updates its window wherever it falls: the open
//! is the earliest trade of the window (ties: the first to arrive), the close the latest
//! (ties: the last to arrive).
//!
//! VWAP is kept as two integers, Σ price × quantity and Σ quantity, and divided only when
//! read (rounded down): no float, every sum checked.

use tradefloor_domain::book::Trade;
use tradefloor_domain::{Price, Quantity, Timestamp};
use tradefloor_persistence::{Filter, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::trades::{TRADE_TAG, decode_trade, symbol_of};
use super::{ReadModelError, begin_batch, from_sql, to_sql};
use crate::hosting::projection::Projection;

/// The projection's name (its offset-store key).
pub const NAME: &str = "trading.candles";
/// One row per market, window width and window.
pub const CANDLES_TABLE: &str = "trading_candles";
/// Per market: the latest trade time seen and the late trades dropped.
pub const CLOCKS_TABLE: &str = "trading_candle_clocks";

pub(crate) const CREATE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS trading_candles (symbol TEXT NOT NULL, \
     interval_seconds BIGINT NOT NULL, bucket_start BIGINT NOT NULL, open BIGINT NOT NULL, \
     high BIGINT NOT NULL, low BIGINT NOT NULL, close BIGINT NOT NULL, \
     open_at BIGINT NOT NULL, close_at BIGINT NOT NULL, volume BIGINT NOT NULL, \
     notional BIGINT NOT NULL, trades BIGINT NOT NULL, \
     PRIMARY KEY (symbol, interval_seconds, bucket_start))",
    "CREATE TABLE IF NOT EXISTS trading_candle_clocks (symbol TEXT PRIMARY KEY, \
     latest_at BIGINT NOT NULL, late_dropped BIGINT NOT NULL)",
];

/// A candle window width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CandleInterval {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl CandleInterval {
    /// Every width kept.
    pub const ALL: [CandleInterval; 3] = [
        CandleInterval::Second,
        CandleInterval::Minute,
        CandleInterval::Hour,
    ];

    /// The width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            CandleInterval::Second => 1,
            CandleInterval::Minute => 60,
            CandleInterval::Hour => 3_600,
        }
    }

    /// The width in microseconds.
    pub fn micros(self) -> i64 {
        self.seconds() * 1_000_000
    }

    /// `1s`, `1m` or `1h` (the HTTP `interval` parameter).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1s" => Some(CandleInterval::Second),
            "1m" => Some(CandleInterval::Minute),
            "1h" => Some(CandleInterval::Hour),
            _ => None,
        }
    }
}

/// One window of one market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Candle {
    /// Start of the window (inclusive), microseconds since the epoch.
    pub start: Timestamp,
    /// Price of the window's earliest trade.
    pub open: Price,
    /// Highest price.
    pub high: Price,
    /// Lowest price.
    pub low: Price,
    /// Price of the window's latest trade.
    pub close: Price,
    /// Σ quantity.
    pub volume: Quantity,
    /// Σ price × quantity (quote units).
    pub notional: u64,
    /// `notional / volume`, rounded down.
    pub vwap: Price,
    /// Number of trades.
    pub trades: u64,
}

impl Candle {
    pub(crate) fn from_row(row: &[SqlValue]) -> Result<Self, ReadModelError> {
        let volume = from_sql(&row[5], "volume")?;
        let notional = from_sql(&row[6], "notional")?;
        if volume == 0 {
            return Err(ReadModelError::Corrupt(
                "a candle without volume".to_owned(),
            ));
        }
        Ok(Candle {
            start: Timestamp(row[0].integer().unwrap_or_default()),
            open: Price(from_sql(&row[1], "open")?),
            high: Price(from_sql(&row[2], "high")?),
            low: Price(from_sql(&row[3], "low")?),
            close: Price(from_sql(&row[4], "close")?),
            volume: Quantity(volume),
            notional,
            vwap: Price(notional / volume),
            trades: from_sql(&row[7], "trades")?,
        })
    }
}

/// The columns [`Candle::from_row`] reads, in order.
pub(crate) const COLUMNS: &str = "bucket_start, open, high, low, close, volume, notional, trades";

/// Keeps `trading_candles` and `trading_candle_clocks`.
#[derive(Debug)]
pub struct CandlesProjection {
    watermark_micros: i64,
}

impl CandlesProjection {
    /// Trades up to `watermark_micros` older than the latest seen are still counted.
    pub fn new(watermark_micros: i64) -> Self {
        assert!(watermark_micros >= 0, "a watermark is a duration");
        Self { watermark_micros }
    }

    /// Whether the trade is within the watermark (and moves the market's clock).
    async fn admit(
        &self,
        transaction: &mut Transaction,
        symbol: &str,
        at: i64,
    ) -> Result<bool, ReadModelError> {
        let rows = sql::fetch_in(
            transaction,
            "SELECT latest_at, late_dropped FROM trading_candle_clocks WHERE symbol = $1",
            &[symbol.into()],
        )
        .await?;
        let (latest, dropped) = match rows.first() {
            Some(row) => (
                row[0].integer().unwrap_or(i64::MIN),
                from_sql(&row[1], "late_dropped")?,
            ),
            None => (i64::MIN, 0),
        };
        let late = at < latest.saturating_sub(self.watermark_micros);
        let (latest, dropped) = if late {
            (latest, dropped + 1)
        } else {
            (latest.max(at), dropped)
        };
        sql::execute(
            transaction,
            "INSERT INTO trading_candle_clocks (symbol, latest_at, late_dropped) \
             VALUES ($1, $2, $3) ON CONFLICT (symbol) DO UPDATE SET \
             latest_at = excluded.latest_at, late_dropped = excluded.late_dropped",
            &[
                symbol.into(),
                latest.into(),
                to_sql(dropped, "late_dropped")?.into(),
            ],
        )
        .await?;
        Ok(!late)
    }
}

async fn add_to_window(
    transaction: &mut Transaction,
    symbol: &str,
    interval: CandleInterval,
    trade: &Trade,
) -> Result<(), ReadModelError> {
    let at = trade.at.micros();
    let start = at - at.rem_euclid(interval.micros());
    let key: [SqlValue; 3] = [symbol.into(), interval.seconds().into(), start.into()];
    let rows = sql::fetch_in(
        transaction,
        "SELECT open, high, low, close, open_at, close_at, volume, notional, trades \
         FROM trading_candles WHERE symbol = $1 AND interval_seconds = $2 AND bucket_start = $3",
        &key,
    )
    .await?;
    let price = trade.price.get();
    let quantity = trade.quantity.get();
    let overflow = || ReadModelError::OutOfRange(format!("candle of {symbol} at {start}"));
    let notional_of_trade = price.checked_mul(quantity).ok_or_else(overflow)?;
    let row = match rows.first() {
        None => [price, price, price, price, quantity, notional_of_trade, 1],
        Some(row) => {
            let mut open = from_sql(&row[0], "open")?;
            let high = from_sql(&row[1], "high")?.max(price);
            let low = from_sql(&row[2], "low")?.min(price);
            let mut close = from_sql(&row[3], "close")?;
            let open_at = row[4].integer().unwrap_or_default();
            let close_at = row[5].integer().unwrap_or_default();
            if at < open_at {
                open = price;
            }
            if at >= close_at {
                close = price;
            }
            let volume = from_sql(&row[6], "volume")?
                .checked_add(quantity)
                .ok_or_else(overflow)?;
            let notional = from_sql(&row[7], "notional")?
                .checked_add(notional_of_trade)
                .ok_or_else(overflow)?;
            let trades = from_sql(&row[8], "trades")?
                .checked_add(1)
                .ok_or_else(overflow)?;
            [open, high, low, close, volume, notional, trades]
        }
    };
    let (open_at, close_at) = match rows.first() {
        None => (at, at),
        Some(row) => (
            row[4].integer().unwrap_or_default().min(at),
            row[5].integer().unwrap_or_default().max(at),
        ),
    };
    let mut values: Vec<SqlValue> = key.to_vec();
    for (index, value) in row.iter().enumerate().take(4) {
        values.push(to_sql(*value, ["open", "high", "low", "close"][index])?.into());
    }
    values.push(open_at.into());
    values.push(close_at.into());
    values.push(to_sql(row[4], "volume")?.into());
    values.push(to_sql(row[5], "notional")?.into());
    values.push(to_sql(row[6], "trades")?.into());
    sql::execute(
        transaction,
        "INSERT INTO trading_candles (symbol, interval_seconds, bucket_start, open, high, low, \
         close, open_at, close_at, volume, notional, trades) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (symbol, interval_seconds, bucket_start) DO UPDATE SET \
         open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, \
         open_at = excluded.open_at, close_at = excluded.close_at, volume = excluded.volume, \
         notional = excluded.notional, trades = excluded.trades",
        &values,
    )
    .await?;
    Ok(())
}

impl Projection for CandlesProjection {
    type Error = ReadModelError;

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        Filter::Tag(TRADE_TAG.to_owned())
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[StoredEvent],
    ) -> Result<(), ReadModelError> {
        begin_batch(transaction, NAME).await?;
        for event in events {
            let Some(trade) = decode_trade(event)? else {
                continue;
            };
            let symbol = symbol_of(&event.stream)?;
            if !self
                .admit(transaction, symbol.as_str(), trade.at.micros())
                .await?
            {
                continue;
            }
            for interval in CandleInterval::ALL {
                add_to_window(transaction, symbol.as_str(), interval, &trade).await?;
            }
        }
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        sql::execute(transaction, "DELETE FROM trading_candles", &[]).await?;
        sql::execute(transaction, "DELETE FROM trading_candle_clocks", &[]).await?;
        Ok(())
    }
}
