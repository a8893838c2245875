//! Market data as strategies read it: ticks (a trade on one of the node's markets, or an
//! external quote a feed published), cut into bars of a fixed timeframe.

use serde::{Deserialize, Serialize};
use tradefloor_domain::features::Bar;

use crate::error::Error;

/// One price print: a trade or an external quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// When, in microseconds since the epoch.
    pub at: i64,
    /// The price, in quote units per base unit.
    pub price: u64,
    /// The quantity, in base units (0 for a quote with no size).
    pub quantity: u64,
}

/// The header of a tick file.
pub const CSV_HEADER: &str = "at,price,quantity";

impl Tick {
    /// The ticks of a CSV file: a header `at,price,quantity`, then one tick per line
    /// (microseconds since the epoch, integer price, integer quantity). Blank lines and lines
    /// starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Data`] naming the first line that is not a tick.
    pub fn parse_csv(text: &str) -> Result<Vec<Tick>, Error> {
        let mut ticks = Vec::new();
        let mut header_seen = false;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header_seen {
                if line.replace(' ', "") != CSV_HEADER {
                    return Err(Error::Data {
                        line: index + 1,
                        reason: format!("expected the header `{CSV_HEADER}`"),
                    });
                }
                header_seen = true;
                continue;
            }
            ticks.push(Self::parse_line(line).map_err(|reason| Error::Data {
                line: index + 1,
                reason,
            })?);
        }
        Ok(ticks)
    }

    fn parse_line(line: &str) -> Result<Tick, String> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [at, price, quantity] = fields[..] else {
            return Err(format!("expected 3 fields, found {}", fields.len()));
        };
        let tick = Tick {
            at: at
                .parse()
                .map_err(|_| format!("time {at:?} is not an integer"))?,
            price: price
                .parse()
                .map_err(|_| format!("price {price:?} is not a positive integer"))?,
            quantity: quantity
                .parse()
                .map_err(|_| format!("quantity {quantity:?} is not an integer"))?,
        };
        if tick.price == 0 {
            return Err("a price must be positive".to_owned());
        }
        Ok(tick)
    }
}

/// A bar of integer prices, as ticks built it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBar {
    /// Start of its period, microseconds since the epoch.
    pub start: i64,
    /// First price.
    pub open: u64,
    /// Highest price.
    pub high: u64,
    /// Lowest price.
    pub low: u64,
    /// Last price.
    pub close: u64,
    /// Quantity traded.
    pub volume: u64,
}

impl PriceBar {
    fn of(start: i64, tick: &Tick) -> Self {
        Self {
            start,
            open: tick.price,
            high: tick.price,
            low: tick.price,
            close: tick.price,
            volume: tick.quantity,
        }
    }

    /// The bar as features read it (floating point).
    pub fn features_bar(&self) -> Bar {
        #[allow(clippy::cast_precision_loss)] // features are not money: rounding is fine
        Bar {
            start: self.start,
            high: self.high as f64,
            low: self.low as f64,
            close: self.close as f64,
            volume: self.volume as f64,
        }
    }
}

/// Cuts ticks into bars of one timeframe. A bar closes when the first tick of a later period
/// arrives (a period with no tick has no bar); a tick older than the open bar's period is
/// folded into the open bar, so a late tick is never lost nor reopens a closed bar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarBuilder {
    timeframe_micros: i64,
    open: Option<PriceBar>,
}

impl BarBuilder {
    /// Bars of `timeframe_seconds`.
    ///
    /// # Panics
    ///
    /// If the timeframe is zero.
    pub fn new(timeframe_seconds: u32) -> Self {
        assert!(timeframe_seconds > 0, "a bar lasts at least a second");
        Self {
            timeframe_micros: i64::from(timeframe_seconds) * 1_000_000,
            open: None,
        }
    }

    /// Takes a tick; the bar it closed, if it started a later period.
    pub fn push(&mut self, tick: &Tick) -> Option<PriceBar> {
        let start = tick.at.div_euclid(self.timeframe_micros) * self.timeframe_micros;
        match &mut self.open {
            Some(bar) if start <= bar.start => {
                bar.high = bar.high.max(tick.price);
                bar.low = bar.low.min(tick.price);
                bar.close = tick.price;
                bar.volume = bar.volume.saturating_add(tick.quantity);
                None
            }
            _ => self.open.replace(PriceBar::of(start, tick)),
        }
    }

    /// The bar still open, if any.
    pub fn open_bar(&self) -> Option<&PriceBar> {
        self.open.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(at: i64, price: u64, quantity: u64) -> Tick {
        Tick {
            at,
            price,
            quantity,
        }
    }

    #[test]
    fn bars_close_when_a_later_period_starts() {
        let mut bars = BarBuilder::new(1);
        assert_eq!(bars.push(&tick(1_000_000, 10, 1)), None);
        assert_eq!(bars.push(&tick(1_500_000, 12, 2)), None);
        assert_eq!(bars.push(&tick(1_200_000, 9, 1)), None);
        let closed = bars.push(&tick(3_000_000, 11, 1)).expect("a bar closed");
        assert_eq!(
            closed,
            PriceBar {
                start: 1_000_000,
                open: 10,
                high: 12,
                low: 9,
                close: 9,
                volume: 4
            }
        );
        // A late tick goes into the open bar.
        assert_eq!(bars.push(&tick(2_500_000, 13, 1)), None);
        assert_eq!(
            bars.open_bar().map(|bar| (bar.start, bar.high)),
            Some((3_000_000, 13))
        );
    }

    #[test]
    fn csv_is_read_and_bad_lines_are_named() {
        let ticks =
            Tick::parse_csv("# recorded\nat,price,quantity\n1,100,2\n\n2,101,0\n").expect("valid");
        assert_eq!(ticks, vec![tick(1, 100, 2), tick(2, 101, 0)]);
        let error = Tick::parse_csv("at,price,quantity\n1,100,2\n2,-1,0\n").unwrap_err();
        assert!(matches!(error, Error::Data { line: 3, .. }), "{error}");
        assert!(Tick::parse_csv("time,price\n").is_err());
        assert!(Tick::parse_csv("at,price,quantity\n1,0,1\n").is_err());
    }
}
