//! How older versions of the stored events read today: one table per event type, an entry
//! per name and older version (docs/schema-evolution.md). A name whose shape did not change
//! reads as it is; a changed one decodes its old fields (the domain's `v1` modules) and fills
//! what is new.

use serde::de::DeserializeOwned;
use tradefloor_domain::account::AccountEvent;
use tradefloor_domain::account::v1::{RISK_LIMITS_SET_INDEX, RiskLimitsSetV1};
use tradefloor_domain::account::v2::{HOLD_PLACED_INDEX, HoldPlacedV2};
use tradefloor_domain::saga::SagaEvent;
use tradefloor_domain::saga::v1::{
    CANCEL_REFUSED_INDEX, HOLD_REFUSED_INDEX, RefusedV1, SETTLE_REFUSED_INDEX,
    SUBMIT_REFUSED_INDEX, SettleRefusedV1,
};
use tradefloor_persistence::{Upcaster, codec};

/// Versions 1 and 2 of the account's events: version 2 changed `account.risk_limits_set`
/// (its limits gained `max_orders_per_second`), version 3 `account.hold_placed` (it may carry
/// the saga's start).
pub(crate) static ACCOUNT_OLD: [Upcaster<AccountEvent>; 12] = [
    unchanged("account.deposited", 1),
    unchanged("account.withdrawn", 1),
    changed("account.hold_placed", 1, hold_placed_v2),
    unchanged("account.trade_settled", 1),
    unchanged("account.hold_released", 1),
    changed("account.risk_limits_set", 1, |bytes| {
        codec::decode_variant::<RiskLimitsSetV1>(bytes, RISK_LIMITS_SET_INDEX)
            .map(RiskLimitsSetV1::upcast)
    }),
    unchanged("account.deposited", 2),
    unchanged("account.withdrawn", 2),
    changed("account.hold_placed", 2, hold_placed_v2),
    unchanged("account.trade_settled", 2),
    unchanged("account.hold_released", 2),
    unchanged("account.risk_limits_set", 2),
];

fn hold_placed_v2(bytes: &[u8]) -> Result<AccountEvent, String> {
    codec::decode_variant::<HoldPlacedV2>(bytes, HOLD_PLACED_INDEX).map(HoldPlacedV2::upcast)
}

/// Version 1 of the saga's events: the four refusals stored their error by variant index.
pub(crate) static SAGA_V1: [Upcaster<SagaEvent>; 18] = [
    unchanged("saga.started", 1),
    unchanged("saga.hold_confirmed", 1),
    changed("saga.hold_refused", 1, |bytes| {
        codec::decode_variant::<RefusedV1>(bytes, HOLD_REFUSED_INDEX).map(RefusedV1::hold_refused)
    }),
    changed("saga.submit_refused", 1, |bytes| {
        codec::decode_variant::<RefusedV1>(bytes, SUBMIT_REFUSED_INDEX)
            .map(RefusedV1::submit_refused)
    }),
    unchanged("saga.accepted", 1),
    unchanged("saga.filled", 1),
    unchanged("saga.rested", 1),
    unchanged("saga.ended", 1),
    unchanged("saga.leg_settled", 1),
    changed("saga.settle_refused", 1, |bytes| {
        codec::decode_variant::<SettleRefusedV1>(bytes, SETTLE_REFUSED_INDEX)
            .map(SettleRefusedV1::upcast)
    }),
    unchanged("saga.released", 1),
    unchanged("saga.cancel_requested", 1),
    changed("saga.cancel_refused", 1, |bytes| {
        codec::decode_variant::<RefusedV1>(bytes, CANCEL_REFUSED_INDEX)
            .map(RefusedV1::cancel_refused)
    }),
    unchanged("saga.retried", 1),
    unchanged("saga.timed_out", 1),
    unchanged("saga.stalled", 1),
    unchanged("saga.resumed", 1),
    unchanged("saga.cancel_queued", 1),
];

/// `version` of `name`, whose shape the current version kept.
const fn unchanged<E: DeserializeOwned>(name: &'static str, version: u16) -> Upcaster<E> {
    Upcaster {
        name,
        version,
        read: codec::decode::<E>,
    }
}

/// `version` of `name`, read by `read`.
const fn changed<E>(
    name: &'static str,
    version: u16,
    read: fn(&[u8]) -> Result<E, String>,
) -> Upcaster<E> {
    Upcaster {
        name,
        version,
        read,
    }
}

#[cfg(test)]
mod tests {
    use tradefloor_domain::Message;

    use super::*;

    /// Every name of every older version reads: a table that missed one would refuse its
    /// old events. (Names added later, at the end, have no older version.)
    #[test]
    fn every_older_name_has_an_upcaster() {
        for version in [1, 2] {
            let account: Vec<&str> = ACCOUNT_OLD
                .iter()
                .filter(|upcaster| upcaster.version == version)
                .map(|upcaster| upcaster.name)
                .collect();
            assert_eq!(account, AccountEvent::NAMES, "account version {version}");
        }
        let saga: Vec<&str> = SAGA_V1.iter().map(|upcaster| upcaster.name).collect();
        assert_eq!(saga, SagaEvent::NAMES[..SAGA_V1.len()]);
        assert_eq!(SagaEvent::NAMES[SAGA_V1.len()..], ["saga.started_by_hold"]);
    }
}
