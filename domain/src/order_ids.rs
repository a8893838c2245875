//! The venue's order ids for the ids clients choose: a client's `order_id` and `command_id`
//! are its own, scoped to its account, and the venue's id for them is a keyed hash of the
//! account and the client's id.
//!
//! Two accounts choosing the same number get two different orders, and no account can aim at
//! the id another account's choice will get: the key is a secret of the venue (kept in the
//! journal, [`OrderIdKey`]), so the mapping cannot be computed, let alone collided, from
//! outside (an unkeyed hash such as FNV can be inverted byte by byte). The same account and
//! id always give the same order, which is what makes a retry repeat its first answer.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;
use crate::ids::{AccountId, CommandId, OrderId};

/// The number a client chose as its order id: unique within its account only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientOrderId(u64);

impl ClientOrderId {
    /// Client order ids are below this: exact in a JSON number read as a double.
    pub const LIMIT: u64 = 1 << 53;

    /// `id` as a client's order id, if below [`Self::LIMIT`].
    pub fn new(id: u64) -> Result<Self, Error> {
        if id >= Self::LIMIT {
            return Err(Error::InvalidId {
                what: "order id".to_owned(),
                reason: format!("{id} is not below 2^53 (exact in JSON)"),
            });
        }
        Ok(Self(id))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a client named its order by: its own order id or the placement's command id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderReference {
    /// The body's `order_id`.
    Client(ClientOrderId),
    /// The body's `command_id` (without an `order_id`).
    Command(CommandId),
}

/// The venue's secret key for order ids (32 bytes, HMAC-SHA256), the same on every node of
/// one journal and for the journal's whole life: another key maps a retried id to a new order.
#[derive(Clone)]
pub struct OrderIdKey([u8; 32]);

impl std::fmt::Debug for OrderIdKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OrderIdKey(…)")
    }
}

impl OrderIdKey {
    /// Ids derived here are at or above this: above every id a node generates from its clock
    /// (microseconds since the epoch, below 2^52 until the year 2112), below 2^53 (exact in
    /// JSON).
    pub const DERIVED_MIN: u64 = 1 << 52;

    /// The key of these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The venue's order id for `reference` on `account`, in `[2^52, 2^53)`. Two accounts'
    /// references meet on one id with a chance of about one in 2^52 per pair of orders; the
    /// second is then refused as a conflict (the saga already started for another order),
    /// never given the first's order.
    pub fn order_id(&self, account: AccountId, reference: OrderReference) -> OrderId {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Length-prefixed fields, one tag per kind of reference: no two inputs share bytes.
        mac.update(&[account.as_str().len() as u8]);
        mac.update(account.as_str().as_bytes());
        match reference {
            OrderReference::Client(id) => {
                mac.update(b"c");
                mac.update(&id.0.to_be_bytes());
            }
            OrderReference::Command(command) => {
                mac.update(b"m");
                mac.update(command.as_str().as_bytes());
            }
        }
        let digest = mac.finalize().into_bytes();
        let mut first = [0_u8; 8];
        first.copy_from_slice(&digest[..8]);
        let hash = u64::from_be_bytes(first);
        OrderId(Self::DERIVED_MIN | (hash & (Self::DERIVED_MIN - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> OrderIdKey {
        OrderIdKey::new([byte; 32])
    }

    fn client(id: u64) -> OrderReference {
        OrderReference::Client(ClientOrderId::new(id).unwrap())
    }

    #[test]
    fn ids_are_stable_scoped_by_account_and_key_and_json_exact() {
        let alice = AccountId::new("alice").unwrap();
        let bob = AccountId::new("bob").unwrap();
        let id = key(1).order_id(alice, client(7));
        assert_eq!(id, key(1).order_id(alice, client(7)));
        assert_ne!(id, key(1).order_id(bob, client(7)), "scoped per account");
        assert_ne!(id, key(1).order_id(alice, client(8)));
        assert_ne!(id, key(2).order_id(alice, client(7)), "another venue's key");
        assert!((OrderIdKey::DERIVED_MIN..1 << 53).contains(&id.0));
        assert_eq!(id.0 as f64 as u64, id.0);
    }

    #[test]
    fn command_ids_and_client_ids_are_separate_spaces() {
        let alice = AccountId::new("alice").unwrap();
        let command = OrderReference::Command(CommandId::new("7").unwrap());
        let by_command = key(1).order_id(alice, command);
        assert_eq!(by_command, key(1).order_id(alice, command));
        assert_ne!(by_command, key(1).order_id(alice, client(7)));
        let bob_command = OrderReference::Command(CommandId::new("7").unwrap());
        assert_ne!(
            by_command,
            key(1).order_id(AccountId::new("bob").unwrap(), bob_command)
        );
    }

    #[test]
    fn client_ids_stop_below_two_to_the_fifty_three() {
        assert_eq!(ClientOrderId::new(7).unwrap().get(), 7);
        assert!(ClientOrderId::new((1 << 53) - 1).is_ok());
        assert!(ClientOrderId::new(1 << 53).is_err());
        assert!(ClientOrderId::new(u64::MAX).is_err());
    }

    #[test]
    fn the_key_is_not_printed() {
        assert_eq!(format!("{:?}", key(9)), "OrderIdKey(…)");
    }
}
