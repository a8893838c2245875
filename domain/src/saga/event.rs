//! What happened in a saga: the only thing persisted about it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::aggregate::Message;
use crate::book::event::EndReason;
use crate::error::Error;
use crate::ids::TradeId;
use crate::market::MarketSpec;
use crate::order::OrderSpec;
use crate::units::{Price, Quantity, Timestamp};

use super::config::SagaConfig;

/// A step of the saga that waits for an answer, and so has a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    /// Waiting for the account to place the hold.
    Hold,
    /// Waiting for the book to accept (or refuse) the submitted order.
    Submit,
    /// Waiting for the book to cancel the order.
    Cancel,
    /// The book said the order ended; waiting for its events to say how.
    End,
    /// Waiting for the account to settle the order's fills.
    Settle,
    /// Waiting for the account to release the rest of the hold.
    Release,
}

impl SagaStep {
    /// The step's stable name, as used in [`Error::Timeout`].
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStep::Hold => "hold",
            SagaStep::Submit => "submit",
            SagaStep::Cancel => "cancel",
            SagaStep::End => "end",
            SagaStep::Settle => "settle",
            SagaStep::Release => "release",
        }
    }
}

impl fmt::Display for SagaStep {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A saga event. Every event carries `at`, the time of the input that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaEvent {
    /// The order was placed: the saga asks for the hold.
    Started {
        /// The order.
        order: OrderSpec,
        /// Its market.
        market: MarketSpec,
        /// Timeouts and retries, fixed for the saga's life.
        config: SagaConfig,
        /// When.
        at: Timestamp,
    },
    /// The account placed the hold.
    HoldConfirmed {
        /// When.
        at: Timestamp,
    },
    /// The account refused the hold: the order is rejected.
    HoldRefused {
        /// Why (stored by name).
        #[serde(with = "crate::stored_error")]
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// The book refused the order: it is rejected.
    SubmitRefused {
        /// Why (stored by name).
        #[serde(with = "crate::stored_error")]
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// The book has the order (its first event about the order arrived).
    Accepted {
        /// When.
        at: Timestamp,
    },
    /// The order traded.
    Filled {
        /// The trade.
        trade_id: TradeId,
        /// The trade price.
        price: Price,
        /// The quantity traded.
        quantity: Quantity,
        /// When.
        at: Timestamp,
    },
    /// The order rests on the book.
    Rested {
        /// Quantity resting.
        remaining: Quantity,
        /// When.
        at: Timestamp,
    },
    /// The order left the book (or never rested).
    Ended {
        /// Why.
        reason: EndReason,
        /// Quantity never filled.
        remaining: Quantity,
        /// When.
        at: Timestamp,
    },
    /// The account settled the order's leg of a trade.
    LegSettled {
        /// The trade.
        trade_id: TradeId,
        /// When.
        at: Timestamp,
    },
    /// The account refused to settle a leg; it will be retried.
    SettleRefused {
        /// The trade.
        trade_id: TradeId,
        /// Why (stored by name).
        #[serde(with = "crate::stored_error")]
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// Nothing is held for the order any more.
    Released {
        /// When.
        at: Timestamp,
    },
    /// The user asked to cancel the order.
    CancelRequested {
        /// When.
        at: Timestamp,
    },
    /// The book refused the cancel.
    CancelRefused {
        /// Why (stored by name).
        #[serde(with = "crate::stored_error")]
        reason: Error,
        /// When.
        at: Timestamp,
    },
    /// The deadline of `step` passed: its commands are sent again.
    Retried {
        /// The step.
        step: SagaStep,
        /// The new attempt number (0 was the first send).
        attempt: u32,
        /// When.
        at: Timestamp,
    },
    /// `step` exhausted its attempts and is compensated (hold: release and reject; submit:
    /// cancel on the book).
    TimedOut {
        /// The step.
        step: SagaStep,
        /// When.
        at: Timestamp,
    },
    /// `step` exhausted its attempts and cannot be compensated: an operator must look.
    Stalled {
        /// The step.
        step: SagaStep,
        /// When.
        at: Timestamp,
    },
    /// An operator restarted `step` with a fresh attempt count.
    Resumed {
        /// The step.
        step: SagaStep,
        /// When.
        at: Timestamp,
    },
    /// The user asked to cancel the order before the saga learned its hold was placed: the
    /// placement may have submitted the order already, so the cancel goes to the book once
    /// the book has it. (`CancelRequested` at that point, in journals written before this
    /// event existed, skipped the submit and released the hold.) Last, so the codec's
    /// variant indices of the others stay.
    CancelQueued {
        /// When.
        at: Timestamp,
    },
    /// The order was placed with an id the venue generated, and its hold carries this start
    /// (`account.hold_placed`'s `start`): the saga is started as by `Started`, but journals
    /// this only before another event it must write (recovery derives it from the hold).
    /// Last, so the codec's variant indices of the others stay.
    StartedByHold {
        /// The order.
        order: OrderSpec,
        /// Its market.
        market: MarketSpec,
        /// Timeouts and retries, fixed for the saga's life.
        config: SagaConfig,
        /// When.
        at: Timestamp,
    },
}

impl SagaEvent {
    /// The time of the input that caused the event.
    pub fn at(&self) -> Timestamp {
        match self {
            SagaEvent::Started { at, .. }
            | SagaEvent::StartedByHold { at, .. }
            | SagaEvent::HoldConfirmed { at }
            | SagaEvent::HoldRefused { at, .. }
            | SagaEvent::SubmitRefused { at, .. }
            | SagaEvent::Accepted { at }
            | SagaEvent::Filled { at, .. }
            | SagaEvent::Rested { at, .. }
            | SagaEvent::Ended { at, .. }
            | SagaEvent::LegSettled { at, .. }
            | SagaEvent::SettleRefused { at, .. }
            | SagaEvent::Released { at }
            | SagaEvent::CancelRequested { at }
            | SagaEvent::CancelRefused { at, .. }
            | SagaEvent::Retried { at, .. }
            | SagaEvent::TimedOut { at, .. }
            | SagaEvent::Stalled { at, .. }
            | SagaEvent::Resumed { at, .. }
            | SagaEvent::CancelQueued { at } => *at,
        }
    }
}

impl Message for SagaEvent {
    /// 2: refusals store their error by name (`stored_error`), not by variant index;
    /// version 1 is read through [`super::v1`].
    const SCHEMA_VERSION: u16 = 2;

    const NAMES: &'static [&'static str] = &[
        "saga.started",
        "saga.hold_confirmed",
        "saga.hold_refused",
        "saga.submit_refused",
        "saga.accepted",
        "saga.filled",
        "saga.rested",
        "saga.ended",
        "saga.leg_settled",
        "saga.settle_refused",
        "saga.released",
        "saga.cancel_requested",
        "saga.cancel_refused",
        "saga.retried",
        "saga.timed_out",
        "saga.stalled",
        "saga.resumed",
        "saga.cancel_queued",
        "saga.started_by_hold",
    ];

    fn name(&self) -> &'static str {
        match self {
            SagaEvent::Started { .. } => "saga.started",
            SagaEvent::HoldConfirmed { .. } => "saga.hold_confirmed",
            SagaEvent::HoldRefused { .. } => "saga.hold_refused",
            SagaEvent::SubmitRefused { .. } => "saga.submit_refused",
            SagaEvent::Accepted { .. } => "saga.accepted",
            SagaEvent::Filled { .. } => "saga.filled",
            SagaEvent::Rested { .. } => "saga.rested",
            SagaEvent::Ended { .. } => "saga.ended",
            SagaEvent::LegSettled { .. } => "saga.leg_settled",
            SagaEvent::SettleRefused { .. } => "saga.settle_refused",
            SagaEvent::Released { .. } => "saga.released",
            SagaEvent::CancelRequested { .. } => "saga.cancel_requested",
            SagaEvent::CancelRefused { .. } => "saga.cancel_refused",
            SagaEvent::Retried { .. } => "saga.retried",
            SagaEvent::TimedOut { .. } => "saga.timed_out",
            SagaEvent::Stalled { .. } => "saga.stalled",
            SagaEvent::Resumed { .. } => "saga.resumed",
            SagaEvent::CancelQueued { .. } => "saga.cancel_queued",
            SagaEvent::StartedByHold { .. } => "saga.started_by_hold",
        }
    }
}
