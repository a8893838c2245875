//! The account's events as version 1 stored them, for reading journals written before
//! version 2. Version 2 added `max_orders_per_second` to the risk limits; every other event
//! kept its shape, so only `account.risk_limits_set` has a version-1 shape here. The
//! upcasters that use it are registered with the account's codec (in the actors crate, which
//! owns the journal).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::event::{AccountEvent, CommandRef};
use super::limits::RiskLimits;
use crate::ids::Asset;
use crate::units::{Amount, Timestamp};

/// The index of `account.risk_limits_set` among the event's variants, which version 1 stored
/// before its fields (it cannot change: the variant order of stored events is frozen).
pub const RISK_LIMITS_SET_INDEX: u32 = 5;

/// Version 1 of the risk limits: without an order rate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RiskLimitsV1 {
    /// As in version 2.
    pub max_open_orders: u32,
    /// As in version 2.
    pub max_order_notional: Amount,
    /// As in version 2.
    pub max_position: BTreeMap<Asset, Amount>,
}

/// The fields of `account.risk_limits_set` in version 1.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RiskLimitsSetV1 {
    /// The command.
    pub command: CommandRef,
    /// The limits then.
    pub limits: RiskLimitsV1,
    /// Command time.
    pub at: Timestamp,
}

impl RiskLimitsSetV1 {
    /// The same event in the current version: limits set in version 1 had no order rate.
    pub fn upcast(self) -> AccountEvent {
        let RiskLimitsV1 {
            max_open_orders,
            max_order_notional,
            max_position,
        } = self.limits;
        AccountEvent::RiskLimitsSet {
            command: self.command,
            limits: RiskLimits {
                max_open_orders,
                max_order_notional,
                max_position,
                max_orders_per_second: None,
            },
            at: self.at,
        }
    }
}
