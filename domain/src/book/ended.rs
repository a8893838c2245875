//! The bounded window of order ids that ended recently, so a late cancel or a resubmitted id
//! gets a precise answer instead of "not found".

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use rustc_hash::FxHashSet;

use crate::ids::OrderId;

use super::RECENTLY_ENDED_ORDERS_MAX;

/// Order ids in the order they ended, oldest evicted first once the window is full.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RecentlyEnded {
    in_end_order: VecDeque<OrderId>,
    members: FxHashSet<OrderId>,
}

impl RecentlyEnded {
    /// Whether `order_id` is in the window.
    pub(super) fn contains(&self, order_id: OrderId) -> bool {
        self.members.contains(&order_id)
    }

    /// Adds an order that just ended, evicting the oldest when the window is full.
    pub(super) fn push(&mut self, order_id: OrderId) {
        if self.in_end_order.len() == RECENTLY_ENDED_ORDERS_MAX {
            let evicted = self.in_end_order.pop_front().expect("the window is full");
            assert!(
                self.members.remove(&evicted),
                "the window and its set agree"
            );
        }
        assert!(
            self.members.insert(order_id),
            "an order ends once while in the window"
        );
        self.in_end_order.push_back(order_id);
        assert_eq!(self.in_end_order.len(), self.members.len());
    }
}
