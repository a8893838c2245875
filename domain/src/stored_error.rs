//! How an [`Error`] inside a stored event is written: by name, never by variant index.
//!
//! The binary codec stores an enum's variant as its index, so an error stored that way would
//! change meaning as soon as a variant was added anywhere but last, or reordered. Events keep
//! errors through this module (`#[serde(with = "crate::stored_error")]`): in a binary format
//! the error is its JSON text, externally tagged by its code (`{"insufficient_funds": {…}}`),
//! which names the variant and each field; a human-readable format (the JSON of history
//! routes) gets the same object directly rather than a string of it. Refusals are rare events,
//! so the extra bytes do not matter.

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Writes `error` by name.
pub fn serialize<S: Serializer>(error: &Error, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return error.serialize(serializer);
    }
    let text = serde_json::to_string(error).map_err(S::Error::custom)?;
    serializer.serialize_str(&text)
}

/// Reads an error written by [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Error, D::Error> {
    if deserializer.is_human_readable() {
        return Error::deserialize(deserializer);
    }
    let text = String::deserialize(deserializer)?;
    serde_json::from_str(&text).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Asset;
    use crate::units::Amount;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        reason: Error,
    }

    #[test]
    fn an_error_is_stored_under_its_code_and_read_back() {
        let holder = Holder {
            reason: Error::InsufficientFunds {
                asset: Asset::new("USD").unwrap(),
                required: Amount(100),
                available: Amount(7),
            },
        };
        let json = serde_json::to_value(&holder).unwrap();
        assert!(json["reason"]["insufficient_funds"].is_object(), "{json}");
        assert_eq!(serde_json::from_value::<Holder>(json).unwrap(), holder);
    }
}
