//! The account's events as versions 1 and 2 stored them, for reading journals written before
//! version 3. Version 3 let `account.hold_placed` carry the saga's start (an order whose id
//! the venue generated starts its saga with its hold); every other event kept its shape. The
//! upcasters that use it are registered with the account's codec (in the actors crate).

use serde::Deserialize;

use super::event::{AccountEvent, CommandRef};
use crate::ids::{Asset, OrderId, Symbol};
use crate::order::Side;
use crate::units::{Amount, Quantity, Timestamp};

/// The index of `account.hold_placed` among the event's variants, which versions 1 and 2
/// stored before its fields (it cannot change: the variant order of stored events is frozen).
pub const HOLD_PLACED_INDEX: u32 = 2;

/// The fields of `account.hold_placed` in versions 1 and 2.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct HoldPlacedV2 {
    /// As in version 3.
    pub command: CommandRef,
    /// As in version 3.
    pub order_id: OrderId,
    /// As in version 3.
    pub symbol: Symbol,
    /// As in version 3.
    pub base: Asset,
    /// As in version 3.
    pub quote: Asset,
    /// As in version 3.
    pub side: Side,
    /// As in version 3.
    pub quantity: Quantity,
    /// As in version 3.
    pub asset: Asset,
    /// As in version 3.
    pub amount: Amount,
    /// As in version 3.
    pub at: Timestamp,
}

impl HoldPlacedV2 {
    /// The same event in the current version: holds of versions 1 and 2 followed their saga's
    /// journaled start, so they carry none.
    pub fn upcast(self) -> AccountEvent {
        AccountEvent::HoldPlaced {
            command: self.command,
            order_id: self.order_id,
            symbol: self.symbol,
            base: self.base,
            quote: self.quote,
            side: self.side,
            quantity: self.quantity,
            asset: self.asset,
            amount: self.amount,
            start: None,
            at: self.at,
        }
    }
}
