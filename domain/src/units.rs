//! Integer units of the money path: [`Price`], [`Quantity`], [`Amount`] and [`Timestamp`].
//!
//! There are no floats anywhere here. Every operation that can overflow is checked and turns
//! overflow into [`Error::Overflow`], so an overflowing command is rejected, never wrapped.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

macro_rules! unit {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Zero of this unit.
            pub const ZERO: Self = Self(0);

            /// The raw integer.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// Whether this is zero.
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            /// `self + other`, or [`Error::Overflow`].
            pub fn checked_add(self, other: Self) -> Result<Self, Error> {
                self.0.checked_add(other.0).map(Self).ok_or(Error::Overflow)
            }

            /// `self - other`, or [`Error::Overflow`] when `other > self`.
            pub fn checked_sub(self, other: Self) -> Result<Self, Error> {
                self.0.checked_sub(other.0).map(Self).ok_or(Error::Overflow)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    };
}

unit!(
    /// Integer quote-asset units per base-asset unit.
    Price
);
unit!(
    /// Integer count of base-asset units.
    Quantity
);
unit!(
    /// Integer count of units of one asset (a balance, a hold, a notional).
    Amount
);

impl Price {
    /// The notional `price × quantity` in quote units, or [`Error::Overflow`].
    pub fn notional(self, quantity: Quantity) -> Result<Amount, Error> {
        self.0
            .checked_mul(quantity.0)
            .map(Amount)
            .ok_or(Error::Overflow)
    }
}

impl Amount {
    /// The largest balance an account may hold: every balance fits a signed 64-bit integer,
    /// the type of the SQL read models (and of most clients' integers).
    pub const BALANCE_MAX: Amount = Amount(i64::MAX as u64);

    /// `self + credit` as a balance: [`Error::Overflow`] above [`Amount::BALANCE_MAX`].
    pub fn checked_credit(self, credit: Amount) -> Result<Amount, Error> {
        let total = self.checked_add(credit)?;
        if total > Self::BALANCE_MAX {
            return Err(Error::Overflow);
        }
        Ok(total)
    }
}

impl From<Quantity> for Amount {
    /// A base quantity is an amount of the base asset.
    fn from(quantity: Quantity) -> Self {
        Amount(quantity.0)
    }
}

/// A point in time: microseconds since the Unix epoch (UTC).
///
/// The domain never reads a clock: every command carries the time it happens at, set by the
/// shell (the actor or the journal).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Microseconds in one second.
    pub const MICROS_PER_SECOND: i64 = 1_000_000;

    /// The raw microseconds since the epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// This instant plus `micros` microseconds, saturating at the end of time.
    pub const fn plus_micros(self, micros: i64) -> Self {
        Self(self.0.saturating_add(micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}us", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balance_credit_stops_at_the_signed_64_bit_maximum() {
        let almost = Amount(Amount::BALANCE_MAX.get() - 1);
        assert_eq!(almost.checked_credit(Amount(1)), Ok(Amount::BALANCE_MAX));
        assert_eq!(
            Amount::BALANCE_MAX.checked_credit(Amount(1)),
            Err(Error::Overflow)
        );
        assert_eq!(
            Amount::ZERO.checked_credit(Amount(u64::MAX)),
            Err(Error::Overflow)
        );
        assert_eq!(i64::try_from(Amount::BALANCE_MAX.get()), Ok(i64::MAX));
    }
}
