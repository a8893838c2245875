//! Per-account risk limits, checked when an order's funds are held.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::ids::Asset;
use crate::units::Amount;

/// Open orders an account may have unless its limits say otherwise.
pub const OPEN_ORDERS_MAX_DEFAULT: u32 = 1_000;

/// Risk limits of one account. Checked when a hold is placed (an order is admitted), never at
/// settlement: a trade that happened must settle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskLimits {
    /// Most orders open at once (holds outstanding).
    pub max_open_orders: u32,
    /// Largest `price × quantity` of one order, in its quote asset. Market sells without a
    /// protection price have no notional and are not checked against it.
    pub max_order_notional: Amount,
    /// Largest position per asset: the total plus every open buy of it, if all filled. Assets
    /// not listed are unlimited.
    pub max_position: BTreeMap<Asset, Amount>,
    /// Most orders a second: a bucket of this many holds, refilled at this many a second
    /// (see `rate.rs`). `None`: unlimited. Added in version 2 of the account's events.
    pub max_orders_per_second: Option<u32>,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_open_orders: OPEN_ORDERS_MAX_DEFAULT,
            max_order_notional: Amount(u64::MAX),
            max_position: BTreeMap::new(),
            max_orders_per_second: None,
        }
    }
}

impl RiskLimits {
    /// Refuses limits no order could ever pass.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_order_notional.is_zero() {
            return Err(Error::zero("max_order_notional"));
        }
        if self.max_orders_per_second == Some(0) {
            return Err(Error::zero("max_orders_per_second"));
        }
        Ok(())
    }

    pub(crate) fn check_open_orders(&self, open_orders: u64) -> Result<(), Error> {
        check(
            "max_open_orders",
            open_orders,
            u64::from(self.max_open_orders),
        )
    }

    pub(crate) fn check_order_notional(&self, notional: Amount) -> Result<(), Error> {
        check(
            "max_order_notional",
            notional.get(),
            self.max_order_notional.get(),
        )
    }

    pub(crate) fn check_position(&self, asset: Asset, position: Amount) -> Result<(), Error> {
        match self.max_position.get(&asset) {
            Some(maximum) => check("max_position", position.get(), maximum.get()),
            None => Ok(()),
        }
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        let mut fingerprint = Fingerprint::new("set_risk_limits")
            .u64(u64::from(self.max_open_orders))
            .u64(self.max_order_notional.get())
            .u64(self.max_position.len() as u64);
        for (asset, maximum) in &self.max_position {
            fingerprint = fingerprint.text(asset.as_str()).u64(maximum.get());
        }
        // Only when set: limits without it fingerprint as version 1 did, so a command retried
        // across the upgrade is still recognised.
        if let Some(rate) = self.max_orders_per_second {
            fingerprint = fingerprint
                .text("max_orders_per_second")
                .u64(u64::from(rate));
        }
        fingerprint.finish()
    }
}

fn check(limit: &str, requested: u64, maximum: u64) -> Result<(), Error> {
    if requested > maximum {
        return Err(Error::RiskLimit {
            limit: limit.to_owned(),
            requested,
            maximum,
        });
    }
    Ok(())
}
