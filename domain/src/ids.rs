//! Identifiers: short strings stored inline (no heap, `Copy`) and integer ids.
//!
//! Account ids, assets, market symbols and command ids are bounded strings with a fixed
//! character set, so they cost nothing to copy on the matching path and bad ones are refused
//! at the edge with [`Error::InvalidId`]. Orders and trades have integer ids.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A string of at most `N` ASCII bytes stored inline. The bytes after `len` are always zero,
/// so equality of the whole value is equality of the strings.
#[derive(Clone, Copy, PartialEq, Eq)]
struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    const CAPACITY_FITS_U8: () = assert!(N > 0 && N <= u8::MAX as usize);

    fn new(text: &str, is_allowed: fn(u8) -> bool) -> Option<Self> {
        let () = Self::CAPACITY_FITS_U8;
        if text.is_empty() || text.len() > N || !text.bytes().all(is_allowed) {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Self {
            len: text.len() as u8,
            bytes,
        })
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (checked in `new`), so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("inline ids are ASCII")
    }
}

macro_rules! short_id {
    ($(#[$doc:meta])* $name:ident, $capacity:literal, $what:literal, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name(InlineStr<$capacity>);

        impl $name {
            /// The longest accepted id, in bytes.
            pub const LENGTH_MAX: usize = $capacity;

            /// Parses an id, or [`Error::InvalidId`] naming what is wrong.
            pub fn new(text: &str) -> Result<Self, Error> {
                InlineStr::new(text, $allowed).map(Self).ok_or_else(|| Error::InvalidId {
                    what: $what.to_owned(),
                    reason: format!(
                        "{:?} must be 1 to {} characters of {}",
                        text,
                        $capacity,
                        stringify!($allowed),
                    ),
                })
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self, Error> {
                Self::new(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::new(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_id_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':')
}

fn is_asset_byte(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

fn is_symbol_byte(byte: u8) -> bool {
    is_asset_byte(byte) || byte == b'-'
}

short_id!(
    /// An account: 1 to 40 characters of letters, digits and `-_.:`.
    AccountId, 40, "account id", is_id_byte
);
short_id!(
    /// An asset code such as `BTC`: 1 to 12 upper-case letters and digits.
    Asset, 12, "asset", is_asset_byte
);
short_id!(
    /// A market symbol `BASE-QUOTE` such as `BTC-USD` (see [`Symbol::of`]).
    Symbol, 25, "symbol", is_symbol_byte
);
short_id!(
    /// A caller-chosen command id (a UUID fits): repeating it repeats the first outcome.
    CommandId, 64, "command id", is_id_byte
);

impl Symbol {
    /// The symbol of the market trading `base` against `quote`.
    pub fn of(base: Asset, quote: Asset) -> Self {
        let text = format!("{base}-{quote}");
        Self::new(&text).expect("two assets joined by '-' always make a valid symbol")
    }
}

impl CommandId {
    /// A command id derived from a parent id and a suffix, for the commands a saga issues
    /// (`order-7:hold`); the parts are valid id characters, so only length can fail.
    pub fn derived(parent: impl fmt::Display, suffix: impl fmt::Display) -> Result<Self, Error> {
        Self::new(&format!("{parent}:{suffix}"))
    }
}

macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    };
}

integer_id!(
    /// An order, unique across the venue. The order placement saga is keyed by it.
    OrderId
);
integer_id!(
    /// A trade, unique within its market (the book numbers them from 1); with the order id of
    /// one side it is unique across the venue.
    TradeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_bad_text() {
        let account = AccountId::new("alice-01").unwrap();
        assert_eq!(account.as_str(), "alice-01");
        assert_eq!(serde_json::to_string(&account).unwrap(), "\"alice-01\"");
        let back: AccountId = serde_json::from_str("\"alice-01\"").unwrap();
        assert_eq!(back, account);

        assert!(matches!(AccountId::new(""), Err(Error::InvalidId { .. })));
        assert!(matches!(
            AccountId::new("has space"),
            Err(Error::InvalidId { .. })
        ));
        assert!(matches!(
            AccountId::new(&"a".repeat(41)),
            Err(Error::InvalidId { .. })
        ));
        assert!(serde_json::from_str::<AccountId>("\"bad id\"").is_err());
        assert!(matches!(Asset::new("btc"), Err(Error::InvalidId { .. })));
        assert_eq!(
            Symbol::of(Asset::new("BTC").unwrap(), Asset::new("USD").unwrap()).as_str(),
            "BTC-USD"
        );
    }

    #[test]
    fn ids_order_as_their_text() {
        let a = AccountId::new("a").unwrap();
        let ab = AccountId::new("ab").unwrap();
        let b = AccountId::new("b").unwrap();
        assert!(a < ab && ab < b);
    }
}
