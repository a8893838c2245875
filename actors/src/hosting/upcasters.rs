//! How older versions of the stored events read today: one table per event type, an entry
//! per name and older version (docs/schema-evolution.md). A name whose shape did not change
//! reads as it is; a changed one decodes its old fields (the domain's `v1` modules) and fills
//! what is new.

use serde::de::DeserializeOwned;
use tradefloor_domain::account::AccountEvent;
use tradefloor_domain::account::v1::{RISK_LIMITS_SET_INDEX, RiskLimitsSetV1};
use tradefloor_domain::saga::SagaEvent;
use tradefloor_domain::saga::v1::{
    CANCEL_REFUSED_INDEX, HOLD_REFUSED_INDEX, RefusedV1, SETTLE_REFUSED_INDEX,
    SUBMIT_REFUSED_INDEX, SettleRefusedV1,
};
use tradefloor_persistence::{Upcaster, codec};

/// Version 1 of the account's events: only `account.risk_limits_set` changed shape (its
/// limits gained `max_orders_per_second`).
pub(crate) static ACCOUNT_V1: [Upcaster<AccountEvent>; 6] = [
    unchanged("account.deposited"),
    unchanged("account.withdrawn"),
    unchanged("account.hold_placed"),
    unchanged("account.trade_settled"),
    unchanged("account.hold_released"),
    changed("account.risk_limits_set", |bytes| {
        codec::decode_variant::<RiskLimitsSetV1>(bytes, RISK_LIMITS_SET_INDEX)
            .map(RiskLimitsSetV1::upcast)
    }),
];

/// Version 1 of the saga's events: the four refusals stored their error by variant index.
pub(crate) static SAGA_V1: [Upcaster<SagaEvent>; 18] = [
    unchanged("saga.started"),
    unchanged("saga.hold_confirmed"),
    changed("saga.hold_refused", |bytes| {
        codec::decode_variant::<RefusedV1>(bytes, HOLD_REFUSED_INDEX).map(RefusedV1::hold_refused)
    }),
    changed("saga.submit_refused", |bytes| {
        codec::decode_variant::<RefusedV1>(bytes, SUBMIT_REFUSED_INDEX)
            .map(RefusedV1::submit_refused)
    }),
    unchanged("saga.accepted"),
    unchanged("saga.filled"),
    unchanged("saga.rested"),
    unchanged("saga.ended"),
    unchanged("saga.leg_settled"),
    changed("saga.settle_refused", |bytes| {
        codec::decode_variant::<SettleRefusedV1>(bytes, SETTLE_REFUSED_INDEX)
            .map(SettleRefusedV1::upcast)
    }),
    unchanged("saga.released"),
    unchanged("saga.cancel_requested"),
    changed("saga.cancel_refused", |bytes| {
        codec::decode_variant::<RefusedV1>(bytes, CANCEL_REFUSED_INDEX)
            .map(RefusedV1::cancel_refused)
    }),
    unchanged("saga.retried"),
    unchanged("saga.timed_out"),
    unchanged("saga.stalled"),
    unchanged("saga.resumed"),
    unchanged("saga.cancel_queued"),
];

/// Version 1 of `name`, whose shape version 2 kept.
const fn unchanged<E: DeserializeOwned>(name: &'static str) -> Upcaster<E> {
    Upcaster {
        name,
        version: 1,
        read: codec::decode::<E>,
    }
}

/// Version 1 of `name`, read by `read`.
const fn changed<E>(name: &'static str, read: fn(&[u8]) -> Result<E, String>) -> Upcaster<E> {
    Upcaster {
        name,
        version: 1,
        read,
    }
}

#[cfg(test)]
mod tests {
    use tradefloor_domain::Message;

    use super::*;

    /// Every name of version 1 reads: a table that missed one would refuse its old events.
    #[test]
    fn every_version_1_name_has_an_upcaster() {
        let account: Vec<&str> = ACCOUNT_V1.iter().map(|upcaster| upcaster.name).collect();
        assert_eq!(account, AccountEvent::NAMES);
        let saga: Vec<&str> = SAGA_V1.iter().map(|upcaster| upcaster.name).collect();
        assert_eq!(saga, SagaEvent::NAMES);
    }
}
