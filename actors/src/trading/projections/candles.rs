//! Candles: OHLCV and VWAP per market over 1 s, 1 m and 1 h tumbling windows.
//!
//! Windows come from the window operator (`tradefloor_domain::window`), tumbling over event
//! time: a trade falls in `[start, start + width)` with `start = at − at mod width`. Trades
//! may arrive late, out of time order: each market keeps the latest trade time seen, its
//! watermark trails it by `candle_watermark_micros`, and a trade whose window (of a width)
//! ended before the watermark is dropped from it (counted once in `late_dropped`); one whose
//! window is still open updates it wherever it falls: the open is the earliest trade of the
//! window (ties: the first to arrive), the close the latest (ties: the last to arrive).
//!
//! VWAP is kept as two integers, Σ price × quantity and Σ quantity, and divided only when
//! read (rounded down): no float, every sum checked.

use std::sync::Arc;

use std::collections::BTreeMap;

use tradefloor_domain::book::Trade;
use tradefloor_domain::window::{
    Accumulator, Emit, LatePolicy, WindowConfig, WindowOperator, WindowSpec,
};
use tradefloor_domain::{Price, Quantity, Symbol, Timestamp};
use tradefloor_persistence::{Filter, Journal, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::trades::{TRADE_TAG, decode_trade, symbol_of};
use super::{ReadModelError, begin_batch, from_sql, to_sql};
use crate::hosting::projection::{Blame, Projection};

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

    /// `1s`, `1m` or `1h`: the name [`CandleInterval::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            CandleInterval::Second => "1s",
            CandleInterval::Minute => "1m",
            CandleInterval::Hour => "1h",
        }
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
const COLUMNS: &str = "bucket_start, open, high, low, close, volume, notional, trades";

/// `symbol`'s latest candles of `interval` (up to `limit`), newest first.
pub(crate) async fn latest_candles(
    journal: &Journal,
    symbol: Symbol,
    interval: CandleInterval,
    limit: usize,
) -> Result<Vec<Candle>, ReadModelError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = journal
        .read_models()
        .fetch(
            &format!(
                "SELECT {COLUMNS} FROM trading_candles WHERE symbol = $1 \
                 AND interval_seconds = $2 ORDER BY bucket_start DESC LIMIT $3"
            ),
            &[
                symbol.as_str().into(),
                interval.seconds().into(),
                limit.into(),
            ],
        )
        .await?;
    rows.iter().map(|row| Candle::from_row(row)).collect()
}

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
}

/// One window's trades: within a batch, then merged with the stored row.
#[derive(Clone, Copy, Debug)]
struct Window {
    open: u64,
    high: u64,
    low: u64,
    close: u64,
    open_at: i64,
    close_at: i64,
    volume: u64,
    notional: u64,
    trades: u64,
}

impl Window {
    fn of_trade(trade: &Trade) -> Result<Self, ReadModelError> {
        let (price, quantity, at) = (trade.price.get(), trade.quantity.get(), trade.at.micros());
        let notional = price
            .checked_mul(quantity)
            .ok_or_else(|| ReadModelError::OutOfRange(format!("notional of {trade:?}")))?;
        Ok(Window {
            open: price,
            high: price,
            low: price,
            close: price,
            open_at: at,
            close_at: at,
            volume: quantity,
            notional,
            trades: 1,
        })
    }

    /// `self` followed by `later` (which arrived after it): the open is the earliest trade
    /// (ties: the first to arrive), the close the latest (ties: the last to arrive).
    fn then(self, later: Window) -> Result<Self, ReadModelError> {
        let overflow = || ReadModelError::OutOfRange(format!("candle {self:?} + {later:?}"));
        Ok(Window {
            open: if later.open_at < self.open_at {
                later.open
            } else {
                self.open
            },
            open_at: self.open_at.min(later.open_at),
            close: if later.close_at >= self.close_at {
                later.close
            } else {
                self.close
            },
            close_at: self.close_at.max(later.close_at),
            high: self.high.max(later.high),
            low: self.low.min(later.low),
            volume: self.volume.checked_add(later.volume).ok_or_else(overflow)?,
            notional: self
                .notional
                .checked_add(later.notional)
                .ok_or_else(overflow)?,
            trades: self.trades.checked_add(later.trades).ok_or_else(overflow)?,
        })
    }

    fn from_row(row: &[SqlValue]) -> Result<Self, ReadModelError> {
        Ok(Window {
            open: from_sql(&row[0], "open")?,
            high: from_sql(&row[1], "high")?,
            low: from_sql(&row[2], "low")?,
            close: from_sql(&row[3], "close")?,
            open_at: row[4].integer().unwrap_or_default(),
            close_at: row[5].integer().unwrap_or_default(),
            volume: from_sql(&row[6], "volume")?,
            notional: from_sql(&row[7], "notional")?,
            trades: from_sql(&row[8], "trades")?,
        })
    }

    fn row(&self, key: &WindowKey) -> Result<Vec<SqlValue>, ReadModelError> {
        Ok(vec![
            key.0.as_str().into(),
            key.1.into(),
            key.2.into(),
            to_sql(self.open, "open")?.into(),
            to_sql(self.high, "high")?.into(),
            to_sql(self.low, "low")?.into(),
            to_sql(self.close, "close")?.into(),
            self.open_at.into(),
            self.close_at.into(),
            to_sql(self.volume, "volume")?.into(),
            to_sql(self.notional, "notional")?.into(),
            to_sql(self.trades, "trades")?.into(),
        ])
    }
}

/// `(symbol, interval_seconds, bucket_start)`.
type WindowKey = (String, i64, i64);

/// Most windows one market's operator holds within a batch (a batch holds at most
/// `projection_batch_events_max` trades, each in one window per width).
const BATCH_WINDOWS_MAX: usize = 65_536;

/// A candle's trades folded by the window operator: a [`Window`], or the overflow that
/// makes it unrepresentable (the batch fails with it).
#[derive(Clone, Debug)]
struct Ohlcv(Result<Window, String>);

impl Accumulator for Ohlcv {
    type Input = Window;
    type Output = Result<Window, String>;

    fn first(_at: i64, trade: &Window) -> Self {
        Ohlcv(Ok(*trade))
    }

    fn add(&mut self, _at: i64, trade: &Window) {
        if let Ok(window) = self.0 {
            self.0 = window.then(*trade).map_err(|error| match error {
                ReadModelError::OutOfRange(what) => what,
                other => other.to_string(),
            });
        }
    }

    fn merge(&mut self, other: Self) {
        match other.0 {
            Ok(window) => self.add(0, &window),
            Err(error) => self.0 = Err(error),
        }
    }

    fn output(&self) -> Result<Window, String> {
        self.0.clone()
    }
}

/// The columns of `trading_candles`, in the order [`Window::row`] gives them.
const WINDOW_COLUMNS: [&str; 12] = [
    "symbol",
    "interval_seconds",
    "bucket_start",
    "open",
    "high",
    "low",
    "close",
    "open_at",
    "close_at",
    "volume",
    "notional",
    "trades",
];

/// A market's clock: the latest trade time seen and the late trades dropped.
type Clock = (i64, u64);

async fn load_clock(transaction: &mut Transaction, symbol: &str) -> Result<Clock, ReadModelError> {
    let rows = transaction
        .fetch(
            "SELECT latest_at, late_dropped FROM trading_candle_clocks WHERE symbol = $1",
            &[symbol.into()],
        )
        .await?;
    Ok(match rows.first() {
        Some(row) => (
            row[0].integer().unwrap_or(i64::MIN),
            from_sql(&row[1], "late_dropped")?,
        ),
        None => (i64::MIN, 0),
    })
}

/// The stored row of `window` merged with the batch's trades in it (`batch`).
async fn merge_stored(
    transaction: &mut Transaction,
    key: &WindowKey,
    batch: Window,
) -> Result<Window, ReadModelError> {
    let rows = transaction
        .fetch(
            "SELECT open, high, low, close, open_at, close_at, volume, notional, trades \
         FROM trading_candles WHERE symbol = $1 AND interval_seconds = $2 AND bucket_start = $3",
            &[key.0.as_str().into(), key.1.into(), key.2.into()],
        )
        .await?;
    match rows.first() {
        Some(row) => Window::from_row(row)?.then(batch),
        None => Ok(batch),
    }
}

impl CandlesProjection {
    /// The window operator of one market and width, its watermark at the market's clock:
    /// tumbling windows emitting on every trade (the batch's part of a window, merged with
    /// its stored row), late when the window ended before the clock minus the watermark.
    fn operator(&self, interval: CandleInterval, latest_at: i64) -> WindowOperator<(), Ohlcv> {
        let mut operator = WindowOperator::new(WindowConfig {
            spec: WindowSpec::Tumbling {
                width: interval.micros(),
            },
            out_of_orderness: self.watermark_micros,
            allowed_lateness: 0,
            emit: Emit::OnUpdate,
            late: LatePolicy::SideOutput,
            windows_max: BATCH_WINDOWS_MAX,
        });
        if latest_at > i64::MIN {
            operator.advance_to(latest_at);
        }
        operator
    }

    /// Folds the batch's trades into its markets' clocks and windows (reading each clock and
    /// each window touched once), then writes every clock and window touched with one
    /// statement per table.
    async fn apply_trades(
        &self,
        transaction: &mut Transaction,
        trades: Vec<(String, Trade)>,
    ) -> Result<(), ReadModelError> {
        let mut clocks: BTreeMap<String, Clock> = BTreeMap::new();
        let mut operators: BTreeMap<(String, CandleInterval), WindowOperator<(), Ohlcv>> =
            BTreeMap::new();
        // The batch's trades per window: the operator's last emission of each.
        let mut windows: BTreeMap<WindowKey, Window> = BTreeMap::new();
        for (symbol, trade) in trades {
            let clock = match clocks.get_mut(&symbol) {
                Some(clock) => clock,
                None => {
                    let clock = load_clock(transaction, &symbol).await?;
                    clocks.entry(symbol.clone()).or_insert(clock)
                }
            };
            let at = trade.at.micros();
            let window = Window::of_trade(&trade)?;
            let mut late = false;
            for interval in CandleInterval::ALL {
                let operator = operators
                    .entry((symbol.clone(), interval))
                    .or_insert_with(|| self.operator(interval, clock.0));
                let output = operator.push((), at, window);
                late |= !output.late.is_empty();
                for emission in output.emitted {
                    let key = (symbol.clone(), interval.seconds(), emission.start);
                    windows.insert(key, emission.output.map_err(ReadModelError::OutOfRange)?);
                }
            }
            clock.0 = clock.0.max(at);
            clock.1 += u64::from(late);
        }
        let mut rows = Vec::with_capacity(windows.len());
        for (key, batch) in windows {
            rows.push(merge_stored(transaction, &key, batch).await?.row(&key)?);
        }
        sql::insert_rows(
            transaction,
            CANDLES_TABLE,
            &WINDOW_COLUMNS,
            &rows,
            "ON CONFLICT (symbol, interval_seconds, bucket_start) DO UPDATE SET \
             open = excluded.open, high = excluded.high, low = excluded.low, \
             close = excluded.close, open_at = excluded.open_at, close_at = excluded.close_at, \
             volume = excluded.volume, notional = excluded.notional, trades = excluded.trades",
        )
        .await?;
        let mut rows = Vec::with_capacity(clocks.len());
        for (symbol, (latest, dropped)) in clocks {
            rows.push(vec![
                symbol.into(),
                latest.into(),
                to_sql(dropped, "late_dropped")?.into(),
            ]);
        }
        sql::insert_rows(
            transaction,
            CLOCKS_TABLE,
            &["symbol", "latest_at", "late_dropped"],
            &rows,
            "ON CONFLICT (symbol) DO UPDATE SET \
             latest_at = excluded.latest_at, late_dropped = excluded.late_dropped",
        )
        .await?;
        Ok(())
    }
}

impl Projection for CandlesProjection {
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
        let mut trades = Vec::with_capacity(events.len());
        for event in events {
            if let Some(trade) = decode_trade(event)? {
                trades.push((symbol_of(&event.stream)?.as_str().to_owned(), trade));
            }
        }
        self.apply_trades(transaction, trades).await
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        transaction
            .execute("DELETE FROM trading_candles", &[])
            .await?;
        transaction
            .execute("DELETE FROM trading_candle_clocks", &[])
            .await?;
        Ok(())
    }
}
