//! What the saga is told: the user's request, the answers to its commands, the book's events
//! about its order, and the host's timer.

use serde::{Deserialize, Serialize};

use crate::account::{AccountEvent, Leg};
use crate::aggregate::Message;
use crate::book::event::BookEvent;
use crate::error::Error;
use crate::ids::{OrderId, TradeId};
use crate::market::MarketSpec;
use crate::order::OrderSpec;
use crate::units::Timestamp;

use super::config::SagaConfig;

/// An input to an [`OrderSaga`](super::OrderSaga). Every input carries the time it happens at:
/// the saga never reads a clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaInput {
    /// Place an order: starts the saga.
    Start {
        /// The order. A market buy needs `price`, its protection price, to size its hold.
        request: OrderSpec,
        /// The order's market.
        market: MarketSpec,
        /// Timeouts and retry limits for this saga.
        config: SagaConfig,
        /// The order's hold carries this start ([`SagaStart`]): the saga journals it only
        /// when it must write something else, and recovery derives it from the hold. Only
        /// for an order id the venue generated: a client's id needs its start journaled
        /// before any hold, so that a repeated id never places a second one.
        by_hold: bool,
        /// When.
        at: Timestamp,
    },
    /// The account placed the hold (the answer to `PlaceHold` was `Ok`).
    HoldPlaced {
        /// When.
        at: Timestamp,
    },
    /// The account refused the hold.
    HoldRejected {
        /// Why.
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// A book event that concerns this order; others are ignored. May be repeated or arrive
    /// out of step.
    Book {
        /// The event.
        event: BookEvent,
    },
    /// The book refused the `Submit`. `DuplicateOrder` means the book already has the order.
    SubmitRejected {
        /// Why.
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// The book refused a `Cancel`: `OrderNotFound` (never seen) or `OrderAlreadyEnded`.
    CancelRejected {
        /// Why.
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// The account settled this order's leg of a trade.
    LegSettled {
        /// The trade.
        trade_id: TradeId,
        /// When.
        at: Timestamp,
    },
    /// The account refused to settle this order's leg of a trade.
    SettleRejected {
        /// The trade.
        trade_id: TradeId,
        /// Why.
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// Nothing is held for the order any more: the answer to `ReleaseHold` was `Ok` or
    /// `HoldNotFound`.
    HoldReleased {
        /// When.
        at: Timestamp,
    },
    /// The user cancels the order.
    CancelRequested {
        /// When.
        at: Timestamp,
    },
    /// The host's timer: acts only once the saga's deadline has passed.
    Tick {
        /// The host's current time.
        now: Timestamp,
    },
    /// An operator restarts the current step with a fresh attempt count (e.g. a stalled one).
    Retry {
        /// When.
        at: Timestamp,
    },
    /// Several inputs decided in order as one: the answers to the saga's first commands when
    /// the placement carried them out itself (the hold's answer, then the book's events), so
    /// the saga records them in one append after the placement was answered. An input the saga
    /// refuses refuses the whole batch.
    Answers {
        /// The inputs, in the order they happened; none of them an `Answers`.
        inputs: Vec<SagaInput>,
    },
}

impl SagaInput {
    /// What a finish that went through tells the saga: every leg settled, then the rest of the
    /// hold released, recorded in one append.
    pub fn finished(legs: &[Leg], at: Timestamp) -> SagaInput {
        SagaInput::Answers {
            inputs: legs
                .iter()
                .map(|leg| SagaInput::LegSettled {
                    trade_id: leg.trade_id,
                    at,
                })
                .chain([SagaInput::HoldReleased { at }])
                .collect(),
        }
    }

    /// What a book event is to the sagas of the orders it concerns, by order.
    pub fn from_book(event: &BookEvent) -> Vec<(OrderId, SagaInput)> {
        event
            .order_ids()
            .into_iter()
            .map(|order_id| {
                let input = SagaInput::Book {
                    event: event.clone(),
                };
                (order_id, input)
            })
            .collect()
    }

    /// The order an account event concerns, if any.
    pub fn order_of(event: &AccountEvent) -> Option<OrderId> {
        match *event {
            AccountEvent::HoldPlaced { order_id, .. }
            | AccountEvent::TradeSettled { order_id, .. }
            | AccountEvent::HoldReleased { order_id, .. } => Some(order_id),
            AccountEvent::Deposited { .. }
            | AccountEvent::Withdrawn { .. }
            | AccountEvent::RiskLimitsSet { .. } => None,
        }
    }

    /// What an account event is to the saga of the order it concerns: the answer the saga
    /// got (or would have got) to the command that caused it, preceded by the saga's start
    /// when the hold carries it. A finish's events, one per leg then the release, are these
    /// inputs in the order of a finish's answer.
    pub fn from_account(event: &AccountEvent) -> Vec<(OrderId, SagaInput)> {
        match event {
            AccountEvent::HoldPlaced {
                order_id,
                start,
                at,
                ..
            } => {
                let hold = (*order_id, SagaInput::HoldPlaced { at: *at });
                match start {
                    Some(start) => vec![(*order_id, start.input(*at)), hold],
                    None => vec![hold],
                }
            }
            AccountEvent::TradeSettled {
                order_id,
                trade_id,
                at,
                ..
            } => vec![(
                *order_id,
                SagaInput::LegSettled {
                    trade_id: *trade_id,
                    at: *at,
                },
            )],
            AccountEvent::HoldReleased { order_id, at, .. } => {
                vec![(*order_id, SagaInput::HoldReleased { at: *at })]
            }
            AccountEvent::Deposited { .. }
            | AccountEvent::Withdrawn { .. }
            | AccountEvent::RiskLimitsSet { .. } => Vec::new(),
        }
    }
}

/// What starts a saga, carried by its order's hold when the venue generated the order's id
/// (`account.hold_placed`, see [`SagaInput::Start`]'s `by_hold`): the hold is then the
/// saga's start, and one durable write places both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaStart {
    /// The order.
    pub order: OrderSpec,
    /// Its market.
    pub market: MarketSpec,
    /// Timeouts and retry limits for the saga.
    pub config: SagaConfig,
}

impl SagaStart {
    /// The start as the saga's input at `at`.
    pub fn input(&self, at: Timestamp) -> SagaInput {
        SagaInput::Start {
            request: self.order,
            market: self.market.clone(),
            config: self.config,
            by_hold: true,
            at,
        }
    }
}

impl Message for SagaInput {
    /// 2: `Start` says whether the hold carries it.
    const SCHEMA_VERSION: u16 = 2;

    const NAMES: &'static [&'static str] = &[
        "saga.start",
        "saga.hold_placed",
        "saga.hold_rejected",
        "saga.book",
        "saga.submit_rejected",
        "saga.cancel_rejected",
        "saga.leg_settled",
        "saga.settle_rejected",
        "saga.hold_released",
        "saga.cancel_requested",
        "saga.tick",
        "saga.retry",
        "saga.answers",
    ];

    fn name(&self) -> &'static str {
        match self {
            SagaInput::Start { .. } => "saga.start",
            SagaInput::HoldPlaced { .. } => "saga.hold_placed",
            SagaInput::HoldRejected { .. } => "saga.hold_rejected",
            SagaInput::Book { .. } => "saga.book",
            SagaInput::SubmitRejected { .. } => "saga.submit_rejected",
            SagaInput::CancelRejected { .. } => "saga.cancel_rejected",
            SagaInput::LegSettled { .. } => "saga.leg_settled",
            SagaInput::SettleRejected { .. } => "saga.settle_rejected",
            SagaInput::HoldReleased { .. } => "saga.hold_released",
            SagaInput::CancelRequested { .. } => "saga.cancel_requested",
            SagaInput::Tick { .. } => "saga.tick",
            SagaInput::Retry { .. } => "saga.retry",
            SagaInput::Answers { .. } => "saga.answers",
        }
    }
}
