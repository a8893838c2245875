//! The order placement saga: one per order, hold → submit → settle → release.
//!
//! The saga is an event-sourced state machine like the aggregates: [`OrderSaga::decide_into`]
//! turns a [`SagaInput`] (the user's request, an answer to one of its commands, a book event
//! about its order, a timer tick) into [`SagaEvent`]s, and [`OrderSaga::apply`] folds them in.
//! What the saga wants done next is derived from its state: [`OrderSaga::commands`] lists the
//! commands newly called for by the events just applied, [`OrderSaga::outstanding`] everything
//! still unanswered (what a host re-sends after recovering the saga from its events), and
//! [`OrderSaga::deadline`] when the host should tick it.
//!
//! Steps:
//! 1. `Started` → `PlaceHold` on the account (a buy holds quote, a sell base).
//! 2. Hold placed → `Submit` to the book; hold refused → rejected, nothing to compensate.
//! 3. The book's events: rested → open; ended with every fill known → one `Finish` (the
//!    unsettled legs and the release, decided by the account at once); fills of an order
//!    still open → one `SettleTrade` each, and once it ended and all are settled,
//!    `ReleaseHold`. A refused submit → `ReleaseHold`, rejected.
//! 4. Released → finished.
//!
//! Each trade has two legs, one per order. This saga settles only its own order's leg, on its
//! own order's account: only the order's own saga knows every fill of the order and when the
//! order has ended, so only it can tell when the last fill is settled and the rest of the hold
//! may be released. Settling the other leg here would race with that saga's release.
//!
//! Every step that waits for an answer has a deadline; past it the step's commands are sent
//! again (they are idempotent: the same command ids) with exponential backoff, up to
//! [`SagaConfig::attempts_max`] sends. Then a hold is compensated (released, since the hold
//! may have been placed with its reply lost: the order is rejected with [`Error::Timeout`]), a
//! submit is cancelled on the book, and anything else stalls until an operator's
//! [`SagaInput::Retry`]: never dropped silently.

mod command;
mod config;
mod event;
mod input;
pub mod v1;
mod view;

#[cfg(test)]
mod tests;

pub use command::SagaCommand;
pub use config::{
    ATTEMPTS_LIMIT, ATTEMPTS_MAX_DEFAULT, STEP_TIMEOUT_MAX_MICROS_DEFAULT,
    STEP_TIMEOUT_MICROS_DEFAULT, SagaConfig,
};
pub use event::{SagaEvent, SagaStep};
pub use input::{SagaInput, SagaStart};
pub use view::{Fill, OrderView, SagaReply};

use crate::account::{AccountCommand, FINISH_LEGS_MAX, Leg};
use crate::aggregate::{Aggregate, Message, Priority};
use crate::book::command::BookCommand;
use crate::book::event::{BookEvent, EndReason, Trade};
use crate::error::Error;
use crate::ids::CommandId;
use crate::market::MarketSpec;
use crate::order::{OrderSpec, OrderStatus, Side};
use crate::units::{Quantity, Timestamp};
use serde::{Deserialize, Serialize};

/// The placement of one order: its hold, its life on the book, the settlement of its fills and
/// the release of its hold. Derived from its events only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderSaga {
    /// The order, its market and the saga's config; `None` until started.
    placement: Option<Placement>,
    hold: Hold,
    /// The hold was placed and the order sent to the book.
    submit_sent: bool,
    /// The submit exhausted its attempts: the saga cancels the order on the book.
    submit_timed_out: bool,
    /// The book has the order: one of its events about the order arrived.
    accepted: bool,
    rested: bool,
    /// Bounded by quantity / lot size (every fill is at least one lot).
    fills: Vec<Fill>,
    end: Option<End>,
    /// The user asked to cancel.
    cancel_requested: bool,
    /// The book refused the cancel; its events will say how the order ended.
    cancel_refused: Option<Error>,
    /// Decided without the book ending the order: rejected, or (in journals written before
    /// `SagaEvent::CancelQueued`) cancelled before submission.
    fate: Option<Fate>,
    /// Attempt number of the current step (0: the first send).
    attempt: u32,
    /// When the current attempt of the current step started: its deadline counts from here.
    attempt_started_at: Timestamp,
    /// The current step exhausted its attempts and waits for an operator.
    stalled: bool,
    /// The time of the latest event: the `at` of re-sent commands.
    last_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Placement {
    order: OrderSpec,
    market: MarketSpec,
    config: SagaConfig,
    /// The hold carries the start ([`SagaEvent::StartedByHold`]).
    by_hold: bool,
}

/// Where the order's hold stands on its account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Hold {
    #[default]
    NotRequested,
    Requested,
    Placed,
    Refused,
    /// The request timed out: the hold may or may not exist, so it is released anyway.
    Uncertain,
    Released,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct End {
    reason: EndReason,
    remaining: Quantity,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Fate {
    Rejected(Error),
    /// Only in journals written before `SagaEvent::CancelQueued`.
    CancelledBeforeSubmission,
}

impl Aggregate for OrderSaga {
    const KIND: &'static str = "order_saga";
    type Command = SagaInput;
    type Event = SagaEvent;
    type Reply = SagaReply;

    fn decide_into(&self, input: &SagaInput, events: &mut Vec<SagaEvent>) -> Result<(), Error> {
        let Some(placement) = &self.placement else {
            return match input {
                SagaInput::Start {
                    request,
                    market,
                    config,
                    by_hold,
                    at,
                } => decide_start(request, market, config, *by_hold, *at, events),
                _ => Err(Error::SagaNotStarted),
            };
        };
        match input {
            SagaInput::Start { .. } => Err(Error::SagaAlreadyStarted {
                order_id: placement.order.order_id,
            }),
            SagaInput::HoldPlaced { at } => {
                if self.hold == Hold::Requested {
                    events.push(SagaEvent::HoldConfirmed { at: *at });
                }
                Ok(())
            }
            SagaInput::HoldRejected { reason, at } => {
                if self.hold == Hold::Requested {
                    events.push(SagaEvent::HoldRefused {
                        reason: reason.clone(),
                        at: *at,
                    });
                }
                Ok(())
            }
            SagaInput::Book { event } => self.decide_book(placement, event, events),
            SagaInput::SubmitRejected { reason, at } => {
                self.decide_submit_rejected(reason, *at, events);
                Ok(())
            }
            SagaInput::CancelRejected { reason, at } => {
                if self.cancel_needed() {
                    events.push(SagaEvent::CancelRefused {
                        reason: reason.clone(),
                        at: *at,
                    });
                }
                Ok(())
            }
            SagaInput::LegSettled { trade_id, at } => {
                if self
                    .fills
                    .iter()
                    .any(|fill| fill.trade_id == *trade_id && !fill.settled)
                {
                    events.push(SagaEvent::LegSettled {
                        trade_id: *trade_id,
                        at: *at,
                    });
                }
                Ok(())
            }
            SagaInput::SettleRejected {
                trade_id,
                reason,
                at,
            } => {
                if self
                    .fills
                    .iter()
                    .any(|fill| fill.trade_id == *trade_id && !fill.settled)
                {
                    events.push(SagaEvent::SettleRefused {
                        trade_id: *trade_id,
                        reason: reason.clone(),
                        at: *at,
                    });
                }
                Ok(())
            }
            SagaInput::HoldReleased { at } => {
                if self.release_needed() {
                    events.push(SagaEvent::Released { at: *at });
                }
                Ok(())
            }
            SagaInput::CancelRequested { at } => {
                if self.cancel_request_matters() {
                    events.push(if self.hold == Hold::Requested {
                        SagaEvent::CancelQueued { at: *at }
                    } else {
                        SagaEvent::CancelRequested { at: *at }
                    });
                }
                Ok(())
            }
            SagaInput::Tick { now } => {
                self.decide_tick(placement, *now, events);
                Ok(())
            }
            SagaInput::Retry { at } => {
                if let Some(step) = self.waiting() {
                    events.push(SagaEvent::Resumed { step, at: *at });
                }
                Ok(())
            }
            SagaInput::Answers { inputs } => self.decide_answers(inputs, events),
        }
    }

    fn apply(&mut self, event: &SagaEvent) {
        let waiting_before = self.waiting();
        self.apply_fact(event);
        let waiting_after = self.waiting();
        match event {
            SagaEvent::Retried { attempt, at, .. } => {
                assert!(*attempt > self.attempt, "retries count up");
                self.attempt = *attempt;
                self.attempt_started_at = *at;
            }
            SagaEvent::Stalled { .. } => self.stalled = true,
            SagaEvent::Resumed { at, .. } => self.restart_step(*at),
            // A new step, or a settled leg (progress within the settle step), starts afresh.
            _ if waiting_before != waiting_after
                || matches!(event, SagaEvent::LegSettled { .. }) =>
            {
                self.restart_step(event.at());
            }
            _ => {}
        }
        self.last_at = event.at();
        self.assert_invariants();
    }

    fn reply(&self, _input: &SagaInput, events: &[SagaEvent]) -> SagaReply {
        SagaReply {
            view: self.view(),
            commands: self.commands(events),
            deadline: self.deadline(),
        }
    }

    fn priority(input: &SagaInput) -> Priority {
        match input {
            SagaInput::CancelRequested { .. } => Priority::High,
            _ => Priority::Normal,
        }
    }
}

/// Validates a new order and starts its saga.
fn decide_start(
    request: &OrderSpec,
    market: &MarketSpec,
    config: &SagaConfig,
    by_hold: bool,
    at: Timestamp,
    events: &mut Vec<SagaEvent>,
) -> Result<(), Error> {
    // The host builds the config, not the user: a bad one is a programming error.
    assert!(config.is_valid(), "invalid saga config {config:?}");
    market.validate()?;
    request.validate(market)?;
    if request.side == Side::Buy {
        let Some(price) = request.price else {
            return Err(Error::InvalidOrder {
                reason: "a market buy needs a protection price to size its hold".to_owned(),
            });
        };
        // The hold's notional must be representable; refuse now rather than at the account.
        price.notional(request.quantity)?;
    }
    let (order, market, config) = (*request, market.clone(), *config);
    events.push(if by_hold {
        SagaEvent::StartedByHold {
            order,
            market,
            config,
            at,
        }
    } else {
        SagaEvent::Started {
            order,
            market,
            config,
            at,
        }
    });
    Ok(())
}

impl OrderSaga {
    /// Decides each input against the state the previous ones left (on a scratch copy: the
    /// events are applied for real once they are durable).
    fn decide_answers(
        &self,
        inputs: &[SagaInput],
        events: &mut Vec<SagaEvent>,
    ) -> Result<(), Error> {
        let mut scratch = self.clone();
        let mut decided = Vec::new();
        for input in inputs {
            if matches!(input, SagaInput::Answers { .. } | SagaInput::Start { .. }) {
                return Err(Error::InvalidOrder {
                    reason: format!("{} cannot be an answer", input.name()),
                });
            }
            decided.clear();
            scratch.decide_into(input, &mut decided)?;
            for event in &decided {
                scratch.apply(event);
            }
            events.extend_from_slice(&decided);
        }
        Ok(())
    }

    /// Decides what a book event means for this order; events of other orders are ignored.
    fn decide_book(
        &self,
        placement: &Placement,
        event: &BookEvent,
        events: &mut Vec<SagaEvent>,
    ) -> Result<(), Error> {
        let order_id = placement.order.order_id;
        let at = match event {
            BookEvent::Accepted { order, at, .. } if order.order_id == order_id => *at,
            BookEvent::Traded(trade)
                if trade.maker_order_id == order_id || trade.taker_order_id == order_id =>
            {
                trade.at
            }
            BookEvent::Rested {
                order_id: id, at, ..
            }
            | BookEvent::Ended {
                order_id: id, at, ..
            } if *id == order_id => *at,
            BookEvent::Blocked { order_id: id, at } if *id == order_id => {
                // The book never had the order and now never will: as "not found".
                if self.cancel_needed() {
                    events.push(SagaEvent::CancelRefused {
                        reason: Error::OrderNotFound { order_id },
                        at: *at,
                    });
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        // Any event about the order proves the book has it, whichever arrives first.
        if !self.accepted {
            events.push(SagaEvent::Accepted { at });
        }
        match event {
            BookEvent::Traded(trade) => self.decide_trade(placement, trade, events),
            BookEvent::Rested { remaining, .. } => {
                if !self.rested && self.end.is_none() {
                    events.push(SagaEvent::Rested {
                        remaining: *remaining,
                        at,
                    });
                }
                Ok(())
            }
            BookEvent::Ended {
                reason, remaining, ..
            } => {
                if self.end.is_none() {
                    let unfilled_max = placement.order.quantity.checked_sub(self.filled())?;
                    if *remaining > unfilled_max {
                        return Err(inconsistent("the book ended it with more than is unfilled"));
                    }
                    events.push(SagaEvent::Ended {
                        reason: *reason,
                        remaining: *remaining,
                        at,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A new fill (deduplicated by trade id); a fill that leaves nothing to fill ends the
    /// order, since a maker filled completely gets no `Ended` event of its own.
    fn decide_trade(
        &self,
        placement: &Placement,
        trade: &Trade,
        events: &mut Vec<SagaEvent>,
    ) -> Result<(), Error> {
        if self
            .fills
            .iter()
            .any(|fill| fill.trade_id == trade.trade_id)
        {
            return Ok(());
        }
        let fillable = self.fillable(placement)?;
        if trade.quantity.is_zero() || trade.quantity > fillable {
            return Err(inconsistent("a trade fills more than the order has left"));
        }
        events.push(SagaEvent::Filled {
            trade_id: trade.trade_id,
            price: trade.price,
            quantity: trade.quantity,
            at: trade.at,
        });
        let remaining = if trade.maker_order_id == placement.order.order_id {
            trade.maker_remaining
        } else {
            trade.taker_remaining
        };
        if remaining.is_zero() && self.end.is_none() {
            events.push(SagaEvent::Ended {
                reason: EndReason::Filled,
                remaining: Quantity::ZERO,
                at: trade.at,
            });
        }
        Ok(())
    }

    /// The quantity fills may still add: up to the order's quantity, or once ended up to
    /// what the book says was filled.
    fn fillable(&self, placement: &Placement) -> Result<Quantity, Error> {
        let ceiling = match self.end {
            Some(end) => placement.order.quantity.checked_sub(end.remaining)?,
            None => placement.order.quantity,
        };
        ceiling.checked_sub(self.filled())
    }

    fn decide_submit_rejected(&self, reason: &Error, at: Timestamp, events: &mut Vec<SagaEvent>) {
        // `DuplicateOrder`: the book already has the order (a retried submit whose first reply
        // was lost), so its events will follow. Late refusals after the book showed the order
        // are stale.
        let duplicate = matches!(reason, Error::DuplicateOrder { .. });
        if duplicate || !self.submit_sent || self.accepted || self.fate.is_some() {
            return;
        }
        events.push(SagaEvent::SubmitRefused {
            reason: reason.clone(),
            at,
        });
    }

    fn decide_tick(&self, placement: &Placement, now: Timestamp, events: &mut Vec<SagaEvent>) {
        let Some(deadline) = self.deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        let step = self
            .waiting()
            .expect("a deadline belongs to a waiting step");
        let attempt_next = self.attempt + 1;
        if attempt_next < placement.config.attempts_max {
            events.push(SagaEvent::Retried {
                step,
                attempt: attempt_next,
                at: now,
            });
            return;
        }
        match step {
            SagaStep::Hold | SagaStep::Submit => events.push(SagaEvent::TimedOut { step, at: now }),
            SagaStep::Cancel | SagaStep::End | SagaStep::Settle | SagaStep::Release => {
                events.push(SagaEvent::Stalled { step, at: now });
            }
        }
    }

    /// Whether a user's cancel changes anything: not once the order's fate is known, not
    /// twice, and not while the saga is already cancelling the order itself.
    fn cancel_request_matters(&self) -> bool {
        !self.cancel_requested
            && self.fate.is_none()
            && self.end.is_none()
            && !self.submit_timed_out
            && self.cancel_refused.is_none()
    }

    /// Folds the fact an event records into the state.
    fn apply_fact(&mut self, event: &SagaEvent) {
        match event {
            SagaEvent::Started {
                order,
                market,
                config,
                ..
            }
            | SagaEvent::StartedByHold {
                order,
                market,
                config,
                ..
            } => {
                assert!(self.placement.is_none(), "a saga starts once");
                self.placement = Some(Placement {
                    order: *order,
                    market: market.clone(),
                    config: *config,
                    by_hold: matches!(event, SagaEvent::StartedByHold { .. }),
                });
                self.hold = Hold::Requested;
            }
            SagaEvent::HoldConfirmed { .. } => {
                self.hold = Hold::Placed;
                // A cancel before the hold was placed skips the submit: just release.
                self.submit_sent = self.fate.is_none();
            }
            SagaEvent::HoldRefused { reason, .. } => {
                self.hold = Hold::Refused;
                self.decide_fate(Fate::Rejected(reason.clone()));
            }
            SagaEvent::SubmitRefused { reason, .. } => {
                self.decide_fate(Fate::Rejected(reason.clone()));
            }
            SagaEvent::Accepted { .. } => self.accepted = true,
            SagaEvent::Filled {
                trade_id,
                price,
                quantity,
                ..
            } => {
                // In trade order, whatever order the fills were delivered in: a saga folded
                // from the book's journal after a crash lists them as the live one did.
                let at = self.fills.partition_point(|fill| fill.trade_id < *trade_id);
                self.fills.insert(
                    at,
                    Fill {
                        trade_id: *trade_id,
                        price: *price,
                        quantity: *quantity,
                        settled: false,
                    },
                );
            }
            SagaEvent::Rested { .. } => self.rested = true,
            SagaEvent::Ended {
                reason, remaining, ..
            } => {
                self.end = Some(End {
                    reason: *reason,
                    remaining: *remaining,
                });
            }
            SagaEvent::LegSettled { trade_id, .. } => {
                let fill = self
                    .fills
                    .iter_mut()
                    .find(|fill| fill.trade_id == *trade_id);
                fill.expect("only known fills settle").settled = true;
            }
            SagaEvent::SettleRefused { .. } => {} // Kept for the record; the deadline retries.
            SagaEvent::Released { .. } => self.hold = Hold::Released,
            SagaEvent::CancelRequested { .. } => {
                self.cancel_requested = true;
                // Only in journals written before `CancelQueued`: a cancel is no longer
                // requested before the hold is known placed.
                if !self.submit_sent {
                    self.decide_fate(Fate::CancelledBeforeSubmission);
                }
            }
            // The cancel goes to the book once the book has the order, though the saga has
            // not seen its hold placed yet: the placement submits the order right after the
            // hold, before the saga learns either answer (one `Answers` input, later, or
            // never if the node dies first). Deciding "cancelled before submission" then
            // released the hold of an order live on the book, whose fills could not settle
            // on this side.
            SagaEvent::CancelQueued { .. } => self.cancel_requested = true,
            SagaEvent::CancelRefused { reason, .. } => {
                let never_seen = matches!(reason, Error::OrderNotFound { .. }) && !self.accepted;
                if never_seen && self.submit_timed_out {
                    // The book never got the order: compensate.
                    self.decide_fate(Fate::Rejected(timeout(SagaStep::Submit)));
                } else {
                    self.cancel_refused = Some(reason.clone());
                }
            }
            SagaEvent::TimedOut {
                step: SagaStep::Hold,
                ..
            } => {
                self.hold = Hold::Uncertain;
                self.decide_fate(Fate::Rejected(timeout(SagaStep::Hold)));
            }
            SagaEvent::TimedOut {
                step: SagaStep::Submit,
                ..
            } => self.submit_timed_out = true,
            SagaEvent::TimedOut { step, .. } => {
                unreachable!("only hold and submit time out: {step}")
            }
            SagaEvent::Retried { .. } | SagaEvent::Stalled { .. } | SagaEvent::Resumed { .. } => {}
        }
    }

    /// Records the first fate decided; a later one (e.g. a timeout after a user's cancel)
    /// does not overwrite it.
    fn decide_fate(&mut self, fate: Fate) {
        if self.fate.is_none() {
            self.fate = Some(fate);
        }
    }

    fn restart_step(&mut self, at: Timestamp) {
        self.attempt = 0;
        self.attempt_started_at = at;
        self.stalled = false;
    }

    fn assert_invariants(&self) {
        let Some(placement) = &self.placement else {
            return;
        };
        let filled = self.filled();
        assert!(
            filled <= placement.order.quantity,
            "fills never exceed the order"
        );
        let fills_max = placement.order.quantity.get() / placement.market.lot_size.get();
        assert!(
            self.fills.len() as u64 <= fills_max,
            "every fill is at least one lot"
        );
        if let Some(end) = self.end {
            assert!(
                end.remaining <= placement.order.quantity,
                "remaining within the order"
            );
        }
        assert!(
            self.attempt < placement.config.attempts_max,
            "attempts are bounded"
        );
    }

    /// The order's base quantity filled so far.
    fn filled(&self) -> Quantity {
        Quantity(self.fills.iter().map(|fill| fill.quantity.get()).sum())
    }

    /// The order's base quantity whose leg is settled.
    fn settled(&self) -> Quantity {
        Quantity(
            self.fills
                .iter()
                .filter(|fill| fill.settled)
                .map(|fill| fill.quantity.get())
                .sum(),
        )
    }

    /// The submit waits for the book's first word about the order.
    fn submit_pending(&self) -> bool {
        self.submit_sent && !self.accepted && self.fate.is_none() && !self.submit_timed_out
    }

    /// A cancel is on its way to the book and unanswered: the saga's own (after a submit
    /// timeout), or the user's once the book has the order (sent no earlier, since a cancel
    /// travels in the book's priority lane and could overtake the submit).
    fn cancel_needed(&self) -> bool {
        self.end.is_none()
            && self.fate.is_none()
            && self.cancel_refused.is_none()
            && (self.submit_timed_out || (self.cancel_requested && self.accepted))
    }

    /// The book refused a cancel because the order ended, but its end is not known yet.
    fn end_pending(&self) -> bool {
        self.cancel_refused.is_some() && self.end.is_none() && self.fate.is_none()
    }

    /// The rest of the hold must be released: the order's fate is decided without the book,
    /// or it has ended and every fill is settled. Settled quantity must equal what the book
    /// says was filled (order quantity − remaining), so a fill still on its way holds the
    /// release back whatever order the events arrive in.
    fn release_needed(&self) -> bool {
        let Some(placement) = &self.placement else {
            return false;
        };
        if !matches!(self.hold, Hold::Placed | Hold::Uncertain) {
            return false;
        }
        let all_settled = self.fills.iter().all(|fill| fill.settled);
        if self.fate.is_some() {
            return all_settled;
        }
        match self.end {
            Some(end) => {
                let filled_by_book = Quantity(placement.order.quantity.get() - end.remaining.get());
                self.settled() == filled_by_book
            }
            None => false,
        }
    }

    /// The order has ended on the book, every fill the book reported is known, and some are
    /// unsettled (no more than one command carries): the account settles them and releases
    /// the rest of the hold in one decision, one append, instead of a settlement per fill
    /// and then a release, each answered and recorded by the saga on its own.
    fn finish_ready(&self) -> bool {
        let Some(placement) = &self.placement else {
            return false;
        };
        let Some(end) = self.end else {
            return false;
        };
        if self.hold != Hold::Placed || self.fate.is_some() {
            return false;
        }
        let unsettled = self.fills.iter().filter(|fill| !fill.settled).count();
        let filled_by_book = placement.order.quantity.get() - end.remaining.get();
        self.filled().get() == filled_by_book && (1..=FINISH_LEGS_MAX).contains(&unsettled)
    }

    /// The step waiting for an answer, if any. Several answers may be awaited at once (e.g.
    /// settlements while a cancel is out); the earliest step in the flow names the wait.
    fn waiting(&self) -> Option<SagaStep> {
        self.placement.as_ref()?;
        if self.hold == Hold::Requested {
            Some(SagaStep::Hold)
        } else if self.submit_pending() {
            Some(SagaStep::Submit)
        } else if self.cancel_needed() {
            Some(SagaStep::Cancel)
        } else if self.end_pending() {
            Some(SagaStep::End)
        } else if self.fills.iter().any(|fill| !fill.settled) {
            Some(SagaStep::Settle)
        } else if self.release_needed() {
            Some(SagaStep::Release)
        } else {
            None
        }
    }

    /// When the host should tick the saga: the current attempt's start plus its backoff.
    /// `None` when nothing is awaited (e.g. an order resting on the book), when finished, or
    /// when stalled (only an operator's `Retry` restarts it).
    pub fn deadline(&self) -> Option<Timestamp> {
        let placement = self.placement.as_ref()?;
        if self.stalled {
            return None;
        }
        self.waiting()?;
        let timeout_micros = placement.config.timeout_micros(self.attempt);
        // `is_valid` caps the timeout at i64::MAX.
        let timeout_micros = i64::try_from(timeout_micros).expect("timeouts fit in i64");
        Some(self.attempt_started_at.plus_micros(timeout_micros))
    }

    /// Decides, applies, and returns the commands to send: what an in-memory host does.
    pub fn step(&mut self, input: &SagaInput) -> Result<Vec<SagaCommand>, Error> {
        let events = self.decide(input)?;
        for event in &events {
            self.apply(event);
        }
        Ok(self.commands(&events))
    }

    /// The commands the just-applied `applied` events call for (called on the state after
    /// applying them), each once, at the time of the input that caused them.
    pub fn commands(&self, applied: &[SagaEvent]) -> Vec<SagaCommand> {
        let (Some(placement), Some(last)) = (&self.placement, applied.last()) else {
            return Vec::new();
        };
        let at = last.at();
        let mut commands = Vec::new();
        for event in applied {
            match event {
                SagaEvent::Started { .. } | SagaEvent::StartedByHold { .. }
                    if self.hold == Hold::Requested =>
                {
                    commands.push(self.place_hold(placement, at));
                }
                SagaEvent::HoldConfirmed { .. } if self.submit_pending() => {
                    commands.push(self.submit(placement, at));
                }
                SagaEvent::Accepted { .. }
                | SagaEvent::CancelRequested { .. }
                | SagaEvent::CancelQueued { .. }
                | SagaEvent::TimedOut {
                    step: SagaStep::Submit,
                    ..
                } if self.cancel_needed() => {
                    commands.push(self.cancel(placement, at));
                }
                SagaEvent::Filled { .. } | SagaEvent::Ended { .. } if self.finish_ready() => {
                    commands.push(self.finish(placement, at));
                }
                SagaEvent::Filled { trade_id, .. } => {
                    let fill = self.fills.iter().find(|fill| fill.trade_id == *trade_id);
                    if let Some(fill) = fill.filter(|fill| !fill.settled) {
                        commands.push(self.settle(placement, fill, at));
                    }
                }
                SagaEvent::Retried { .. } | SagaEvent::Resumed { .. } => {
                    commands.extend(self.outstanding_at(placement, at));
                }
                _ => {}
            }
            let may_release = matches!(
                event,
                SagaEvent::HoldConfirmed { .. }
                    | SagaEvent::SubmitRefused { .. }
                    | SagaEvent::CancelRefused { .. }
                    | SagaEvent::TimedOut {
                        step: SagaStep::Hold,
                        ..
                    }
                    | SagaEvent::Ended { .. }
                    | SagaEvent::LegSettled { .. }
            );
            if may_release && self.release_needed() {
                commands.push(self.release(placement, at));
            }
        }
        let mut unique = Vec::with_capacity(commands.len());
        for command in commands {
            if !unique.contains(&command) {
                unique.push(command);
            }
        }
        unique
    }

    /// Every command the saga still waits on, at the time of its latest event: what a host
    /// re-sends after recovering the saga (they are idempotent).
    pub fn outstanding(&self) -> Vec<SagaCommand> {
        match &self.placement {
            Some(placement) => self.outstanding_at(placement, self.last_at),
            None => Vec::new(),
        }
    }

    fn outstanding_at(&self, placement: &Placement, at: Timestamp) -> Vec<SagaCommand> {
        let mut commands = Vec::new();
        if self.hold == Hold::Requested {
            commands.push(self.place_hold(placement, at));
        }
        if self.submit_pending() {
            commands.push(self.submit(placement, at));
        }
        if self.cancel_needed() {
            commands.push(self.cancel(placement, at));
        }
        if self.finish_ready() {
            commands.push(self.finish(placement, at));
        } else {
            for fill in self.fills.iter().filter(|fill| !fill.settled) {
                commands.push(self.settle(placement, fill, at));
            }
        }
        if self.release_needed() {
            commands.push(self.release(placement, at));
        }
        commands
    }

    fn place_hold(&self, placement: &Placement, at: Timestamp) -> SagaCommand {
        let order = &placement.order;
        self.to_account(
            placement,
            AccountCommand::PlaceHold {
                command_id: command_id(order, "hold"),
                order_id: order.order_id,
                symbol: placement.market.symbol,
                base: placement.market.base,
                quote: placement.market.quote,
                side: order.side,
                price: order.price,
                quantity: order.quantity,
                start: placement.by_hold.then(|| {
                    Box::new(SagaStart {
                        order: *order,
                        market: placement.market.clone(),
                        config: placement.config,
                    })
                }),
                at,
            },
        )
    }

    fn settle(&self, placement: &Placement, fill: &Fill, at: Timestamp) -> SagaCommand {
        let order = &placement.order;
        self.to_account(
            placement,
            AccountCommand::SettleTrade {
                command_id: command_id(order, format_args!("settle-{}", fill.trade_id)),
                order_id: order.order_id,
                trade_id: fill.trade_id,
                price: fill.price,
                quantity: fill.quantity,
                at,
            },
        )
    }

    /// The unsettled legs and the release as one account command (see [`Self::finish_ready`]).
    fn finish(&self, placement: &Placement, at: Timestamp) -> SagaCommand {
        let order = &placement.order;
        let legs = self
            .fills
            .iter()
            .filter(|fill| !fill.settled)
            .map(|fill| Leg {
                trade_id: fill.trade_id,
                price: fill.price,
                quantity: fill.quantity,
            })
            .collect();
        self.to_account(
            placement,
            AccountCommand::Finish {
                command_id: command_id(order, "finish"),
                order_id: order.order_id,
                legs,
                at,
            },
        )
    }

    fn release(&self, placement: &Placement, at: Timestamp) -> SagaCommand {
        let order = &placement.order;
        self.to_account(
            placement,
            AccountCommand::ReleaseHold {
                command_id: command_id(order, "release"),
                order_id: order.order_id,
                at,
            },
        )
    }

    fn submit(&self, placement: &Placement, at: Timestamp) -> SagaCommand {
        SagaCommand::Book {
            symbol: placement.market.symbol,
            command: BookCommand::Submit {
                order: placement.order,
                at,
            },
        }
    }

    fn cancel(&self, placement: &Placement, at: Timestamp) -> SagaCommand {
        SagaCommand::Book {
            symbol: placement.market.symbol,
            // Abandon, not Cancel: in the priority lane it may overtake a submit still queued,
            // and only Abandon blocks that submit instead of answering "not found".
            command: BookCommand::Abandon {
                order_id: placement.order.order_id,
                at,
            },
        }
    }

    fn to_account(&self, placement: &Placement, command: AccountCommand) -> SagaCommand {
        SagaCommand::Account {
            account_id: placement.order.account_id,
            command,
        }
    }

    /// Where the order stands, as users see it.
    fn status(&self) -> OrderStatus {
        match (&self.fate, self.end) {
            (Some(Fate::Rejected(_)), _) => OrderStatus::Rejected,
            (Some(Fate::CancelledBeforeSubmission), _) => OrderStatus::Cancelled,
            (
                None,
                Some(End {
                    reason: EndReason::Filled,
                    ..
                }),
            ) => OrderStatus::Filled,
            (None, Some(_)) => OrderStatus::Cancelled,
            (None, None) if !self.fills.is_empty() => OrderStatus::PartiallyFilled,
            (None, None) if self.rested => OrderStatus::Open,
            (None, None) => OrderStatus::Pending,
        }
    }

    /// Whether the saga has started (it has an order to show).
    pub fn is_started(&self) -> bool {
        self.placement.is_some()
    }

    /// Whether `event`, decided by an input against this state, must be written to the saga's
    /// journal. The saga's record of what the account and the book did (the hold placed, the
    /// book's word on the order, its fills, settled legs, the release) is a fact of their
    /// journals already: a host may skip writing it and derive it again at recovery from
    /// their events about the order ([`SagaInput::from_account`], [`SagaInput::from_book`]).
    /// What only the saga knows (its start, refusals, cancels, retries, timeouts) must be
    /// written, and so must a release while the hold is not known placed: a release of a hold
    /// that may never have existed leaves no event on the account. A start the hold carries
    /// ([`SagaEvent::StartedByHold`]) is a fact of the account's journal once the hold is
    /// placed; until then (or if it never is) the saga's next written event carries it.
    pub fn must_journal(&self, event: &SagaEvent) -> bool {
        match event {
            SagaEvent::StartedByHold { .. }
            | SagaEvent::HoldConfirmed { .. }
            | SagaEvent::Accepted { .. }
            | SagaEvent::Filled { .. }
            | SagaEvent::Rested { .. }
            | SagaEvent::Ended { .. }
            | SagaEvent::LegSettled { .. } => false,
            SagaEvent::Released { .. } => self.hold != Hold::Placed,
            SagaEvent::Started { .. }
            | SagaEvent::HoldRefused { .. }
            | SagaEvent::SubmitRefused { .. }
            | SagaEvent::SettleRefused { .. }
            | SagaEvent::CancelRequested { .. }
            | SagaEvent::CancelRefused { .. }
            | SagaEvent::Retried { .. }
            | SagaEvent::TimedOut { .. }
            | SagaEvent::Stalled { .. }
            | SagaEvent::Resumed { .. }
            | SagaEvent::CancelQueued { .. } => true,
        }
    }

    /// Whether `input`, a fact of the account's or the book's journal about this order, shows
    /// that the saga missed an earlier one: anything but the start a hold carries and the
    /// hold's answer presupposes the saga started and the hold placed (the book gets the
    /// order only after both). The hold itself may be recorded just before the saga's start,
    /// so a fold of the log that starts in the middle (a read model after a restart) can miss
    /// it; it must then fold the saga again from the journal.
    pub fn misses_an_earlier_fact(&self, input: &SagaInput) -> bool {
        (self.placement.is_none() || self.hold == Hold::Requested)
            && !matches!(
                input,
                SagaInput::Start { .. }
                    | SagaInput::HoldPlaced { .. }
                    | SagaInput::HoldRejected { .. }
            )
    }

    /// Whether the saga has nothing left to do: the order's status is final, every fill is
    /// settled and the hold released (or never placed).
    pub fn is_finished(&self) -> bool {
        let hold_open = matches!(self.hold, Hold::Placed | Hold::Uncertain);
        self.placement.is_some()
            && self.status().is_final()
            && self.waiting().is_none()
            && !hold_open
    }

    /// The order as the saga knows it.
    ///
    /// # Panics
    /// If the saga has not started: there is no order to show yet.
    pub fn view(&self) -> OrderView {
        let placement = self
            .placement
            .as_ref()
            .expect("a view needs a started saga");
        let order = &placement.order;
        OrderView {
            order_id: order.order_id,
            account_id: order.account_id,
            symbol: placement.market.symbol,
            side: order.side,
            order_type: order.order_type,
            price: order.price,
            quantity: order.quantity,
            status: self.status(),
            filled_quantity: self.filled(),
            fills: self.fills.clone(),
            reject_reason: match &self.fate {
                Some(Fate::Rejected(reason)) => Some(reason.clone()),
                _ => None,
            },
            end_reason: self.end.map(|end| end.reason),
            resting: self.rested && self.end.is_none(),
            step: self.waiting(),
            stalled: self.stalled,
            attempts: self.attempt,
            finished: self.is_finished(),
        }
    }
}

/// The idempotency key of one of the saga's commands, e.g. `7:settle-3`.
fn command_id(order: &OrderSpec, suffix: impl std::fmt::Display) -> CommandId {
    // The longest id, `<u64>:settle-<u64>`, is 48 characters of digits, `:` and `-`: always
    // a valid command id.
    CommandId::derived(order.order_id, suffix).expect("derived saga command ids are valid")
}

fn timeout(step: SagaStep) -> Error {
    Error::Timeout {
        step: step.as_str().to_owned(),
    }
}

/// A book event contradicting what the saga knows: refused, changing nothing.
fn inconsistent(reason: &str) -> Error {
    Error::InvalidOrder {
        reason: reason.to_owned(),
    }
}

const _: () = assert!(CommandId::LENGTH_MAX >= 48);
