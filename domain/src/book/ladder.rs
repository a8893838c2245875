//! The resting orders of one book: per side, price levels in priority order; per level, orders
//! in arrival order; and an index from order id to where the order rests.
//!
//! A cancel in the middle of a level leaves a tombstone (a slot with nothing remaining) rather
//! than shifting the slots behind it: matching skips tombstones, and they are popped as soon
//! as they reach the front. The front slot of every level is therefore always live, which is
//! what lets a trade find its maker in O(1).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;

use crate::ids::{AccountId, OrderId};
use crate::order::Side;
use crate::units::{Price, Quantity};

use super::RestingOrder;
use super::event::Trade;

/// How many tombstones a level tolerates beyond twice its live orders before it compacts.
/// Compaction rewrites the index entries of the level, so it is amortised over at least this
/// many cancels, and a level never holds more than `2 × live + slack` slots.
const LEVEL_TOMBSTONES_SLACK: usize = 32;

/// Slots a new level reserves: levels near the top are created and emptied all the time,
/// and starting at 16 orders (about 1 KiB) saves the first rounds of doubling.
const LEVEL_SLOTS_INITIAL: usize = 16;

/// Both sides of resting orders and the index over them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Ladder {
    bids: Levels,
    asks: Levels,
    index: FxHashMap<OrderId, Location>,
}

/// The levels of one side, keyed so that ascending key order is best price first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Levels {
    by_priority: BTreeMap<u64, Level>,
    /// Sum of the live quantities of all levels: bounds every level's quantity, so checking
    /// this one sum in `decide` proves no level can overflow in `apply`.
    quantity: Quantity,
}

/// Where an indexed order rests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Location {
    side: Side,
    price: Price,
    /// Position counted from the creation of the level (see [`Level::popped`]).
    position: u64,
}

/// The orders resting at one price, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Level {
    price: Price,
    slots: VecDeque<Slot>,
    /// Slots popped from the front since the level was created (or last compacted): a slot's
    /// position is `popped + index in slots`, stable while slots ahead of it are popped.
    popped: u64,
    /// Sum of `remaining` over the live slots.
    live_quantity: Quantity,
    /// Number of live slots; the level leaves the book when it reaches 0.
    live_count: usize,
}

/// One resting order in a level; `remaining == 0` marks a tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Slot {
    pub(super) order_id: OrderId,
    pub(super) account_id: AccountId,
    pub(super) remaining: Quantity,
    pub(super) sequence: u64,
}

/// `a + b` for quantities `decide` already proved cannot overflow: a failure is a bug.
#[track_caller]
pub(super) fn plus(a: Quantity, b: Quantity) -> Quantity {
    Quantity(
        a.get()
            .checked_add(b.get())
            .expect("quantity sums are checked in decide"),
    )
}

/// `a − b` where `b ≤ a` by construction: a failure is a bug.
#[track_caller]
pub(super) fn minus(a: Quantity, b: Quantity) -> Quantity {
    Quantity(
        a.get()
            .checked_sub(b.get())
            .expect("quantities never go below zero"),
    )
}

/// The map key of a price on a side: ascending keys go from the best price to the worst.
fn priority_key(side: Side, price: Price) -> u64 {
    match side {
        Side::Buy => u64::MAX - price.get(),
        Side::Sell => price.get(),
    }
}

impl Level {
    fn new(price: Price) -> Self {
        Self {
            price,
            slots: VecDeque::with_capacity(LEVEL_SLOTS_INITIAL),
            popped: 0,
            live_quantity: Quantity::ZERO,
            live_count: 0,
        }
    }

    /// The level's price.
    pub(super) fn price(&self) -> Price {
        self.price
    }

    /// Total quantity resting at this price.
    pub(super) fn quantity(&self) -> Quantity {
        self.live_quantity
    }

    /// Number of orders resting at this price.
    pub(super) fn order_count(&self) -> usize {
        self.live_count
    }

    /// The live orders in arrival order (time priority).
    pub(super) fn live_slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|slot| !slot.remaining.is_zero())
    }

    /// Pops tombstones off the front, restoring "the front slot is live".
    fn pop_dead_front(&mut self) {
        while self
            .slots
            .front()
            .is_some_and(|slot| slot.remaining.is_zero())
        {
            self.slots.pop_front();
            self.popped += 1;
        }
    }

    /// Drops every tombstone and renumbers the live slots in the index.
    fn compact(&mut self, index: &mut FxHashMap<OrderId, Location>) {
        self.slots.retain(|slot| !slot.remaining.is_zero());
        assert_eq!(self.slots.len(), self.live_count);
        self.popped = 0;
        for (position, slot) in self.slots.iter().enumerate() {
            let location = index
                .get_mut(&slot.order_id)
                .expect("live slots are indexed");
            location.position = position as u64;
        }
    }
}

impl Ladder {
    fn levels(&self, side: Side) -> &Levels {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn levels_and_index_mut(
        &mut self,
        side: Side,
    ) -> (&mut Levels, &mut FxHashMap<OrderId, Location>) {
        match side {
            Side::Buy => (&mut self.bids, &mut self.index),
            Side::Sell => (&mut self.asks, &mut self.index),
        }
    }

    /// The levels of `side`, best price first.
    pub(super) fn levels_best_first(&self, side: Side) -> impl Iterator<Item = &Level> {
        self.levels(side).by_priority.values()
    }

    /// The best price on `side`: the highest bid or the lowest ask.
    pub(super) fn best_price(&self, side: Side) -> Option<Price> {
        self.levels(side)
            .by_priority
            .first_key_value()
            .map(|(_, level)| level.price)
    }

    /// Total quantity resting on `side`.
    pub(super) fn side_quantity(&self, side: Side) -> Quantity {
        self.levels(side).quantity
    }

    /// Whether `order_id` rests on the book.
    pub(super) fn contains(&self, order_id: OrderId) -> bool {
        self.index.contains_key(&order_id)
    }

    /// Number of resting orders.
    pub(super) fn order_count(&self) -> usize {
        self.index.len()
    }

    /// The resting order `order_id`, if any.
    pub(super) fn get(&self, order_id: OrderId) -> Option<RestingOrder> {
        let location = self.index.get(&order_id)?;
        let level =
            &self.levels(location.side).by_priority[&priority_key(location.side, location.price)];
        let slot = &level.slots[usize::try_from(location.position - level.popped).expect("fits")];
        assert_eq!(slot.order_id, order_id);
        Some(RestingOrder::from_slot(location.side, level.price, slot))
    }

    /// The resting orders of `side` in matching priority order.
    pub(super) fn orders(&self, side: Side) -> impl Iterator<Item = RestingOrder> + '_ {
        self.levels_best_first(side).flat_map(move |level| {
            level
                .live_slots()
                .map(move |slot| RestingOrder::from_slot(side, level.price, slot))
        })
    }

    /// Rests an order at the back of its level. Its sequence is the newest on the book.
    pub(super) fn insert(&mut self, order: RestingOrder) {
        assert!(
            !order.remaining.is_zero(),
            "only a positive remainder rests"
        );
        let (levels, index) = self.levels_and_index_mut(order.side);
        levels.quantity = plus(levels.quantity, order.remaining);
        let level = levels
            .by_priority
            .entry(priority_key(order.side, order.price))
            .or_insert_with(|| Level::new(order.price));
        if let Some(newest) = level.slots.back() {
            assert!(
                newest.sequence < order.sequence,
                "a level keeps arrival order"
            );
        }
        let position = level.popped + level.slots.len() as u64;
        level.slots.push_back(Slot {
            order_id: order.order_id,
            account_id: order.account_id,
            remaining: order.remaining,
            sequence: order.sequence,
        });
        level.live_quantity = plus(level.live_quantity, order.remaining);
        level.live_count += 1;
        let location = Location {
            side: order.side,
            price: order.price,
            position,
        };
        let previous = index.insert(order.order_id, location);
        assert!(previous.is_none(), "an order id rests at most once");
    }

    /// Takes `trade.quantity` from the maker, which must be the front order of the best level
    /// of the maker's side. A maker left with nothing leaves the book.
    pub(super) fn fill_front(&mut self, trade: &Trade) {
        let (levels, index) = self.levels_and_index_mut(trade.taker_side.opposite());
        levels.quantity = minus(levels.quantity, trade.quantity);
        let mut best = levels
            .by_priority
            .first_entry()
            .expect("a trade has a resting maker");
        let level = best.get_mut();
        assert_eq!(
            level.price, trade.price,
            "trades print at the best level's price"
        );
        let maker = level
            .slots
            .front_mut()
            .expect("a level on the book is never empty");
        assert_eq!(
            maker.order_id, trade.maker_order_id,
            "makers trade in price-time priority"
        );
        assert_eq!(maker.account_id, trade.maker_account_id);
        maker.remaining = minus(maker.remaining, trade.quantity);
        assert_eq!(maker.remaining, trade.maker_remaining);
        level.live_quantity = minus(level.live_quantity, trade.quantity);
        if maker.remaining.is_zero() {
            level.live_count -= 1;
            level.pop_dead_front();
            index
                .remove(&trade.maker_order_id)
                .expect("a resting maker is indexed");
            if level.live_count == 0 {
                assert!(level.live_quantity.is_zero());
                best.remove();
            }
        }
    }

    /// Takes a resting order off the book (a cancel), returning it as it was.
    pub(super) fn remove(&mut self, order_id: OrderId) -> Option<RestingOrder> {
        let location = self.index.remove(&order_id)?;
        let (levels, index) = self.levels_and_index_mut(location.side);
        let key = priority_key(location.side, location.price);
        let level = levels
            .by_priority
            .get_mut(&key)
            .expect("indexed orders are on their level");
        let offset = usize::try_from(location.position - level.popped).expect("fits");
        let slot = &mut level.slots[offset];
        assert_eq!(slot.order_id, order_id);
        assert!(!slot.remaining.is_zero(), "indexed orders are live");
        let removed = RestingOrder::from_slot(location.side, level.price, slot);
        slot.remaining = Quantity::ZERO;
        level.live_quantity = minus(level.live_quantity, removed.remaining);
        level.live_count -= 1;
        levels.quantity = minus(levels.quantity, removed.remaining);
        if level.live_count == 0 {
            assert!(level.live_quantity.is_zero());
            levels.by_priority.remove(&key);
        } else {
            level.pop_dead_front();
            if level.slots.len() > 2 * level.live_count + LEVEL_TOMBSTONES_SLACK {
                level.compact(index);
            }
        }
        Some(removed)
    }
}

impl RestingOrder {
    fn from_slot(side: Side, price: Price, slot: &Slot) -> Self {
        Self {
            order_id: slot.order_id,
            account_id: slot.account_id,
            side,
            price,
            remaining: slot.remaining,
            sequence: slot.sequence,
        }
    }
}
