//! The saga's events as version 1 stored them, for reading journals written before version 2.
//! Version 2 stores the error of a refusal by name (`crate::stored_error`); version 1 stored
//! it as the binary codec stores any enum, by variant index, so reading it relies on
//! [`ERROR_CODES_V1`]: the errors' order then, which the test below keeps the current enum
//! to (new errors go last; none is ever moved or removed).

use serde::Deserialize;

use super::event::SagaEvent;
use crate::error::Error;
use crate::ids::TradeId;
use crate::units::Timestamp;

/// The errors in version 1's variant order, by code.
pub const ERROR_CODES_V1: [&str; 31] = [
    "invalid_id",
    "zero_value",
    "overflow",
    "invalid_market",
    "invalid_order",
    "bad_tick",
    "bad_lot",
    "quantity_out_of_range",
    "effective_in_future",
    "unknown_market",
    "market_not_listed",
    "order_not_found",
    "order_already_ended",
    "hold_not_found",
    "market_already_listed",
    "duplicate_order",
    "command_id_reused",
    "saga_already_started",
    "saga_not_started",
    "insufficient_funds",
    "risk_limit",
    "fok_not_fillable",
    "post_only_would_cross",
    "market_halted",
    "market_not_halted",
    "settlement_mismatch",
    "timeout",
    "invalid_quotes",
    "invalid_strategy",
    "strategy_not_found",
    "strategy_exists",
];

/// Indices (among the saga event's variants, frozen) of the four events that carry an error.
pub const HOLD_REFUSED_INDEX: u32 = 2;
/// See [`HOLD_REFUSED_INDEX`].
pub const SUBMIT_REFUSED_INDEX: u32 = 3;
/// See [`HOLD_REFUSED_INDEX`].
pub const SETTLE_REFUSED_INDEX: u32 = 9;
/// See [`HOLD_REFUSED_INDEX`].
pub const CANCEL_REFUSED_INDEX: u32 = 12;

/// The fields of `saga.hold_refused`, `saga.submit_refused` and `saga.cancel_refused` in
/// version 1: the error by variant index.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RefusedV1 {
    /// Why.
    pub reason: Error,
    /// When.
    pub at: Timestamp,
}

/// The fields of `saga.settle_refused` in version 1.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SettleRefusedV1 {
    /// The trade.
    pub trade_id: TradeId,
    /// Why.
    pub reason: Error,
    /// When.
    pub at: Timestamp,
}

impl RefusedV1 {
    /// As `saga.hold_refused` today.
    pub fn hold_refused(self) -> SagaEvent {
        SagaEvent::HoldRefused {
            reason: self.reason,
            at: self.at,
        }
    }

    /// As `saga.submit_refused` today.
    pub fn submit_refused(self) -> SagaEvent {
        SagaEvent::SubmitRefused {
            reason: self.reason,
            at: self.at,
        }
    }

    /// As `saga.cancel_refused` today.
    pub fn cancel_refused(self) -> SagaEvent {
        SagaEvent::CancelRefused {
            reason: self.reason,
            at: self.at,
        }
    }
}

impl SettleRefusedV1 {
    /// As `saga.settle_refused` today.
    pub fn upcast(self) -> SagaEvent {
        SagaEvent::SettleRefused {
            trade_id: self.trade_id,
            reason: self.reason,
            at: self.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use serde::de::{self, Visitor};

    use super::*;
    use crate::aggregate::Message;

    /// A deserializer that only records the variant names an enum declares, in order.
    struct Variants(Vec<&'static str>);

    #[derive(Debug)]
    struct Recorded;

    impl fmt::Display for Recorded {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("recorded")
        }
    }

    impl std::error::Error for Recorded {}

    impl de::Error for Recorded {
        fn custom<T: fmt::Display>(_: T) -> Self {
            Recorded
        }
    }

    impl<'de> de::Deserializer<'de> for &mut Variants {
        type Error = Recorded;

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Recorded> {
            self.0 = variants.to_vec();
            Err(Recorded)
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Recorded> {
            Err(Recorded)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }

    fn variants<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        let mut recorder = Variants(Vec::new());
        let _ = T::deserialize(&mut recorder);
        recorder.0
    }

    #[test]
    fn the_errors_of_version_1_keep_their_places() {
        let current = variants::<Error>();
        assert!(
            current.len() >= ERROR_CODES_V1.len(),
            "an error was removed: {current:?}"
        );
        assert_eq!(
            current[..ERROR_CODES_V1.len()],
            ERROR_CODES_V1,
            "version-1 saga events read errors by these places: add errors last only"
        );
    }

    #[test]
    fn the_refusals_keep_their_places_among_the_saga_events() {
        let names = SagaEvent::NAMES;
        assert_eq!(names[HOLD_REFUSED_INDEX as usize], "saga.hold_refused");
        assert_eq!(names[SUBMIT_REFUSED_INDEX as usize], "saga.submit_refused");
        assert_eq!(names[SETTLE_REFUSED_INDEX as usize], "saga.settle_refused");
        assert_eq!(names[CANCEL_REFUSED_INDEX as usize], "saga.cancel_refused");
        let declared = variants::<SagaEvent>();
        assert_eq!(declared.len(), names.len(), "{declared:?}");
        for (variant, name) in declared.iter().zip(names) {
            assert_eq!(
                format!("saga.{variant}"),
                *name,
                "the variants in the order of their names"
            );
        }
    }
}
