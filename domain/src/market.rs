//! Markets `BASE-QUOTE`: tick size, lot size, quantity range and the volatility price band.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{Asset, Symbol};
use crate::units::{Amount, Price, Quantity};

/// Basis points in one whole (100 %).
pub const BASIS_POINTS_PER_UNIT: u32 = 10_000;

/// The definition of a market, fixed when it is listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSpec {
    /// `BASE-QUOTE`, e.g. `BTC-USD`.
    pub symbol: Symbol,
    /// The asset bought and sold, counted by [`Quantity`].
    pub base: Asset,
    /// The asset prices are quoted in, counted by [`Price`] per base unit.
    pub quote: Asset,
    /// Every price is a positive multiple of this.
    pub tick_size: Price,
    /// Every quantity is a positive multiple of this.
    pub lot_size: Quantity,
    /// The smallest order quantity.
    pub min_quantity: Quantity,
    /// The largest order quantity.
    pub max_quantity: Quantity,
    /// Half-width of the volatility band around the reference price, in basis points: a trade
    /// priced outside `reference ± reference × band_bps / 10 000` halts the market instead.
    pub band_bps: u32,
    /// The reference price at listing; `None` lets the first trade set it.
    pub reference_price: Option<Price>,
}

impl MarketSpec {
    /// Checks that the definition is consistent, or [`Error::InvalidMarket`] saying why.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidMarket { reason });
        if self.base == self.quote {
            return invalid(format!("base and quote are both {}", self.base));
        }
        if self.symbol != Symbol::of(self.base, self.quote) {
            return invalid(format!(
                "symbol {} is not {}-{}",
                self.symbol, self.base, self.quote
            ));
        }
        if self.tick_size.is_zero() || self.lot_size.is_zero() {
            return invalid("tick size and lot size must be positive".to_owned());
        }
        if self.min_quantity.is_zero() || self.min_quantity > self.max_quantity {
            return invalid(format!(
                "quantity range [{}, {}] is empty or starts at zero",
                self.min_quantity, self.max_quantity
            ));
        }
        if self.max_quantity.get() > Amount::BALANCE_MAX.get() {
            return invalid(format!(
                "max quantity {} is above {} (values fit a signed 64-bit integer)",
                self.max_quantity,
                Amount::BALANCE_MAX
            ));
        }
        if !self.min_quantity.get().is_multiple_of(self.lot_size.get())
            || !self.max_quantity.get().is_multiple_of(self.lot_size.get())
        {
            return invalid("min and max quantity must be multiples of the lot size".to_owned());
        }
        if self.band_bps == 0 || self.band_bps > BASIS_POINTS_PER_UNIT {
            return invalid(format!(
                "band_bps {} must be in 1..={BASIS_POINTS_PER_UNIT}",
                self.band_bps
            ));
        }
        if let Some(reference) = self.reference_price {
            self.validate_price(reference)?;
        }
        Ok(())
    }

    /// Checks a price: positive, storable as a signed 64-bit integer, and on the tick.
    pub fn validate_price(&self, price: Price) -> Result<(), Error> {
        if price.is_zero() {
            return Err(Error::zero("price"));
        }
        if price.get() > Amount::BALANCE_MAX.get() {
            return Err(Error::Overflow);
        }
        if !price.get().is_multiple_of(self.tick_size.get()) {
            return Err(Error::BadTick {
                price,
                tick_size: self.tick_size,
            });
        }
        Ok(())
    }

    /// Checks a quantity: on the lot and within `[min_quantity, max_quantity]`.
    pub fn validate_quantity(&self, quantity: Quantity) -> Result<(), Error> {
        if quantity.is_zero() {
            return Err(Error::zero("quantity"));
        }
        if !quantity.get().is_multiple_of(self.lot_size.get()) {
            return Err(Error::BadLot {
                quantity,
                lot_size: self.lot_size,
            });
        }
        if quantity < self.min_quantity || quantity > self.max_quantity {
            return Err(Error::QuantityOutOfRange {
                quantity,
                min: self.min_quantity,
                max: self.max_quantity,
            });
        }
        Ok(())
    }

    /// The band `[low, high]` around `reference`: prices a trade may print at without halting.
    pub fn band_around(&self, reference: Price) -> PriceBand {
        // u128 cannot overflow: u64 × 10 000 fits easily.
        let width = u128::from(reference.get()) * u128::from(self.band_bps)
            / u128::from(BASIS_POINTS_PER_UNIT);
        let width = u64::try_from(width).expect("band width ≤ reference price");
        PriceBand {
            low: Price(reference.get().saturating_sub(width)),
            high: Price(reference.get().saturating_add(width)),
        }
    }
}

/// Inclusive bounds a trade price must stay within.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBand {
    /// The lowest price allowed.
    pub low: Price,
    /// The highest price allowed.
    pub high: Price,
}

impl PriceBand {
    /// Whether `price` lies inside the band.
    pub fn contains(&self, price: Price) -> bool {
        self.low <= price && price <= self.high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MarketSpec {
        MarketSpec {
            symbol: Symbol::new("BTC-USD").unwrap(),
            base: Asset::new("BTC").unwrap(),
            quote: Asset::new("USD").unwrap(),
            tick_size: Price(5),
            lot_size: Quantity(10),
            min_quantity: Quantity(10),
            max_quantity: Quantity(1_000),
            band_bps: 1_000,
            reference_price: Some(Price(100)),
        }
    }

    #[test]
    fn a_consistent_market_validates() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn inconsistent_markets_are_refused() {
        let mut wrong_symbol = spec();
        wrong_symbol.symbol = Symbol::new("ETH-USD").unwrap();
        let mut zero_tick = spec();
        zero_tick.tick_size = Price(0);
        let mut empty_range = spec();
        empty_range.min_quantity = Quantity(2_000);
        let mut off_lot = spec();
        off_lot.max_quantity = Quantity(995);
        let mut wide_band = spec();
        wide_band.band_bps = 10_001;
        let mut same_assets = spec();
        same_assets.quote = same_assets.base;
        let mut off_tick_reference = spec();
        off_tick_reference.reference_price = Some(Price(101));
        for market in [
            wrong_symbol,
            zero_tick,
            empty_range,
            off_lot,
            wide_band,
            same_assets,
        ] {
            assert!(
                matches!(market.validate(), Err(Error::InvalidMarket { .. })),
                "{market:?}"
            );
        }
        assert!(matches!(
            off_tick_reference.validate(),
            Err(Error::BadTick { .. })
        ));
    }

    #[test]
    fn prices_and_quantities_are_checked_against_tick_and_lot() {
        let market = spec();
        assert_eq!(market.validate_price(Price(105)), Ok(()));
        assert_eq!(
            market.validate_price(Price(103)),
            Err(Error::BadTick {
                price: Price(103),
                tick_size: Price(5)
            })
        );
        assert!(matches!(
            market.validate_price(Price(0)),
            Err(Error::ZeroValue { .. })
        ));
        assert_eq!(market.validate_quantity(Quantity(20)), Ok(()));
        assert!(matches!(
            market.validate_quantity(Quantity(15)),
            Err(Error::BadLot { .. })
        ));
        assert!(matches!(
            market.validate_quantity(Quantity(2_000)),
            Err(Error::QuantityOutOfRange { .. })
        ));
    }

    #[test]
    fn the_band_is_symmetric_in_basis_points() {
        let band = spec().band_around(Price(1_000));
        assert_eq!(
            band,
            PriceBand {
                low: Price(900),
                high: Price(1_100)
            }
        );
        assert!(band.contains(Price(900)) && band.contains(Price(1_100)));
        assert!(!band.contains(Price(899)) && !band.contains(Price(1_101)));
        let top = spec().band_around(Price(u64::MAX));
        assert_eq!(top.high, Price(u64::MAX));
    }

    #[test]
    fn prices_and_quantities_fit_a_signed_64_bit_integer() {
        let storable = Amount::BALANCE_MAX.get();
        let on_tick = storable - storable % 5;
        assert_eq!(spec().validate_price(Price(on_tick)), Ok(()));
        assert_eq!(
            spec().validate_price(Price(on_tick + 5)),
            Err(Error::Overflow)
        );
        let too_large = MarketSpec {
            max_quantity: Quantity(storable + 1),
            lot_size: Quantity(1),
            ..spec()
        };
        assert!(matches!(
            too_large.validate(),
            Err(Error::InvalidMarket { .. })
        ));
    }
}
