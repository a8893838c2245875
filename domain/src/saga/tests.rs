//! Given / when / then tests of the order placement saga.

use proptest::prelude::*;

use super::*;
use crate::account::AccountEvent;
use crate::aggregate::Message;
use crate::book::event::Trade;
use crate::ids::{AccountId, Asset, OrderId, Symbol, TradeId};
use crate::order::{OrderType, TimeInForce};
use crate::units::{Price, Quantity};

const ORDER: OrderId = OrderId(7);
const OTHER: OrderId = OrderId(8);

fn alice() -> AccountId {
    AccountId::new("alice").unwrap()
}

fn bob() -> AccountId {
    AccountId::new("bob").unwrap()
}

fn symbol() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

fn market() -> MarketSpec {
    MarketSpec {
        symbol: symbol(),
        base: Asset::new("BTC").unwrap(),
        quote: Asset::new("USD").unwrap(),
        tick_size: Price(1),
        lot_size: Quantity(1),
        min_quantity: Quantity(1),
        max_quantity: Quantity(1_000),
        band_bps: 1_000,
        reference_price: Some(Price(100)),
    }
}

/// 1 s per attempt, doubling up to 4 s, 3 sends per step.
fn config() -> SagaConfig {
    SagaConfig {
        step_timeout_micros: 1_000_000,
        step_timeout_max_micros: 4_000_000,
        attempts_max: 3,
    }
}

fn limit_buy(quantity: u64) -> OrderSpec {
    OrderSpec {
        order_id: ORDER,
        account_id: alice(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(Price(100)),
        quantity: Quantity(quantity),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    }
}

fn t(seconds: i64) -> Timestamp {
    Timestamp(seconds * Timestamp::MICROS_PER_SECOND)
}

fn start(order: OrderSpec) -> SagaInput {
    SagaInput::Start {
        request: order,
        market: market(),
        config: config(),
        by_hold: false,
        at: t(0),
    }
}

// Commands the saga should emit.

fn hold(order: &OrderSpec, at: Timestamp) -> SagaCommand {
    SagaCommand::Account {
        account_id: order.account_id,
        command: AccountCommand::PlaceHold {
            command_id: CommandId::new("7:hold").unwrap(),
            order_id: ORDER,
            symbol: symbol(),
            base: market().base,
            quote: market().quote,
            side: order.side,
            price: order.price,
            quantity: order.quantity,
            start: None,
            at,
        },
    }
}

fn submit(order: &OrderSpec, at: Timestamp) -> SagaCommand {
    SagaCommand::Book {
        symbol: symbol(),
        command: BookCommand::Submit { order: *order, at },
    }
}

fn cancel(at: Timestamp) -> SagaCommand {
    SagaCommand::Book {
        symbol: symbol(),
        command: BookCommand::Abandon {
            order_id: ORDER,
            at,
        },
    }
}

fn settle(trade_id: u64, price: u64, quantity: u64, at: Timestamp) -> SagaCommand {
    SagaCommand::Account {
        account_id: alice(),
        command: AccountCommand::SettleTrade {
            command_id: CommandId::new(&format!("7:settle-{trade_id}")).unwrap(),
            order_id: ORDER,
            trade_id: TradeId(trade_id),
            price: Price(price),
            quantity: Quantity(quantity),
            at,
        },
    }
}

fn release(at: Timestamp) -> SagaCommand {
    SagaCommand::Account {
        account_id: alice(),
        command: AccountCommand::ReleaseHold {
            command_id: CommandId::new("7:release").unwrap(),
            order_id: ORDER,
            at,
        },
    }
}

/// The unsettled legs `(trade, price, quantity)` and the release in one account command.
fn finish(legs: &[(u64, u64, u64)], at: Timestamp) -> SagaCommand {
    SagaCommand::Account {
        account_id: alice(),
        command: AccountCommand::Finish {
            command_id: CommandId::new("7:finish").unwrap(),
            order_id: ORDER,
            legs: legs
                .iter()
                .map(|&(trade_id, price, quantity)| Leg {
                    trade_id: TradeId(trade_id),
                    price: Price(price),
                    quantity: Quantity(quantity),
                })
                .collect(),
            at,
        },
    }
}

/// The account's answer to [`finish`]: every leg settled, the hold released.
fn finished(trades: &[u64], at: Timestamp) -> SagaInput {
    SagaInput::Answers {
        inputs: trades
            .iter()
            .map(|&trade_id| SagaInput::LegSettled {
                trade_id: TradeId(trade_id),
                at,
            })
            .chain([SagaInput::HoldReleased { at }])
            .collect(),
    }
}

// Book events about the order.

fn book(event: BookEvent) -> SagaInput {
    SagaInput::Book { event }
}

fn accepted(order: &OrderSpec, at: Timestamp) -> SagaInput {
    book(BookEvent::Accepted {
        order: *order,
        sequence: 1,
        at,
    })
}

/// Our order takes `quantity` from bob's resting order 8.
fn taker_trade(trade_id: u64, quantity: u64, taker_remaining: u64, at: Timestamp) -> SagaInput {
    book(BookEvent::Traded(Trade {
        trade_id: TradeId(trade_id),
        maker_order_id: OTHER,
        maker_account_id: bob(),
        taker_order_id: ORDER,
        taker_account_id: alice(),
        taker_side: Side::Buy,
        price: Price(100),
        quantity: Quantity(quantity),
        maker_remaining: Quantity(50),
        taker_remaining: Quantity(taker_remaining),
        at,
    }))
}

/// Bob's incoming order 8 takes `quantity` from our resting order.
fn maker_trade(trade_id: u64, quantity: u64, maker_remaining: u64, at: Timestamp) -> SagaInput {
    book(BookEvent::Traded(Trade {
        trade_id: TradeId(trade_id),
        maker_order_id: ORDER,
        maker_account_id: alice(),
        taker_order_id: OTHER,
        taker_account_id: bob(),
        taker_side: Side::Sell,
        price: Price(100),
        quantity: Quantity(quantity),
        maker_remaining: Quantity(maker_remaining),
        taker_remaining: Quantity(0),
        at,
    }))
}

fn rested(remaining: u64, at: Timestamp) -> SagaInput {
    book(BookEvent::Rested {
        order_id: ORDER,
        account_id: alice(),
        side: Side::Buy,
        price: Price(100),
        remaining: Quantity(remaining),
        sequence: 1,
        at,
    })
}

fn ended(reason: EndReason, remaining: u64, at: Timestamp) -> SagaInput {
    book(BookEvent::Ended {
        order_id: ORDER,
        account_id: alice(),
        reason,
        remaining: Quantity(remaining),
        at,
    })
}

fn leg_settled(trade_id: u64, at: Timestamp) -> SagaInput {
    SagaInput::LegSettled {
        trade_id: TradeId(trade_id),
        at,
    }
}

/// A saga with its event log: after every input it checks that replaying the log gives the
/// same state and the same outstanding commands (a crash at any step resumes identically).
#[derive(Default)]
struct Given {
    saga: OrderSaga,
    log: Vec<SagaEvent>,
}

impl Given {
    fn started(order: OrderSpec) -> Self {
        let mut given = Self::default();
        assert_eq!(given.when(start(order)), vec![hold(&order, t(0))]);
        given
    }

    /// Started, hold placed and the order submitted at 1 s.
    fn submitted(order: OrderSpec) -> Self {
        let mut given = Self::started(order);
        assert_eq!(
            given.when(SagaInput::HoldPlaced { at: t(1) }),
            vec![submit(&order, t(1))]
        );
        given
    }

    fn when(&mut self, input: SagaInput) -> Vec<SagaCommand> {
        let events = self.saga.decide(&input).unwrap();
        for event in &events {
            self.saga.apply(event);
        }
        self.log.extend(events.iter().cloned());
        let recovered = OrderSaga::replay(&self.log);
        assert_eq!(recovered, self.saga, "replay equals the live state");
        assert_eq!(recovered.outstanding(), self.saga.outstanding());
        self.saga.commands(&events)
    }

    fn refused(&self, input: SagaInput) -> Error {
        self.saga.decide(&input).unwrap_err()
    }

    fn view(&self) -> OrderView {
        self.saga.view()
    }
}

#[test]
fn happy_path_limit_buy() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    assert_eq!(given.view().status, OrderStatus::Pending);
    assert_eq!(given.view().step, Some(SagaStep::Submit));

    assert_eq!(given.when(accepted(&order, t(2))), vec![]);
    // Filled completely: the order has ended, so its leg and the release go as one.
    assert_eq!(
        given.when(taker_trade(1, 10, 0, t(2))),
        vec![finish(&[(1, 100, 10)], t(2))]
    );
    assert_eq!(given.view().status, OrderStatus::Filled);
    assert_eq!(given.when(ended(EndReason::Filled, 0, t(2))), vec![]);
    assert_eq!(given.view().step, Some(SagaStep::Settle));
    assert!(!given.saga.is_finished());

    assert_eq!(given.when(finished(&[1], t(3))), vec![]);

    let view = given.view();
    assert!(given.saga.is_finished());
    assert_eq!(view.status, OrderStatus::Filled);
    assert_eq!(view.filled_quantity, Quantity(10));
    assert_eq!(
        view.fills,
        vec![Fill {
            trade_id: TradeId(1),
            price: Price(100),
            quantity: Quantity(10),
            settled: true
        }]
    );
    assert_eq!(view.end_reason, Some(EndReason::Filled));
    assert_eq!(view.step, None);
    assert_eq!(given.saga.deadline(), None);
    assert_eq!(given.saga.outstanding(), vec![]);
}

#[test]
fn partial_fill_then_rest_then_maker_fills_then_user_cancel() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    given.when(accepted(&order, t(2)));
    assert_eq!(
        given.when(taker_trade(1, 3, 7, t(2))),
        vec![settle(1, 100, 3, t(2))]
    );
    assert!(
        !given.view().resting,
        "after a fill, more of the book's answer may follow"
    );
    assert_eq!(given.when(rested(7, t(2))), vec![]);
    assert_eq!(given.view().status, OrderStatus::PartiallyFilled);
    assert!(given.view().resting, "the book's answer is complete");
    given.when(leg_settled(1, t(3)));
    assert_eq!(
        given.saga.deadline(),
        None,
        "a resting order waits for nothing"
    );

    assert_eq!(
        given.when(maker_trade(2, 4, 3, t(100))),
        vec![settle(2, 100, 4, t(100))]
    );
    given.when(leg_settled(2, t(101)));
    assert_eq!(
        given.when(SagaInput::CancelRequested { at: t(200) }),
        vec![cancel(t(200))]
    );
    assert_eq!(given.view().step, Some(SagaStep::Cancel));
    assert_eq!(
        given.when(SagaInput::CancelRequested { at: t(201) }),
        vec![],
        "asked once"
    );

    assert_eq!(
        given.when(ended(EndReason::Cancelled, 3, t(201))),
        vec![release(t(201))]
    );
    given.when(SagaInput::HoldReleased { at: t(202) });
    let view = given.view();
    assert_eq!(view.status, OrderStatus::Cancelled);
    assert_eq!(view.filled_quantity, Quantity(7));
    assert!(given.saga.is_finished());
    assert_eq!(
        given.when(SagaInput::CancelRequested { at: t(300) }),
        vec![],
        "final: no-op"
    );
}

#[test]
fn a_refused_hold_rejects_without_compensation() {
    let order = limit_buy(10);
    let mut given = Given::started(order);
    let reason = Error::InsufficientFunds {
        asset: market().quote,
        available: crate::units::Amount(5),
        required: crate::units::Amount(1_000),
    };
    let commands = given.when(SagaInput::HoldRejected {
        reason: reason.clone(),
        at: t(1),
    });
    assert_eq!(commands, vec![]);
    let view = given.view();
    assert_eq!(view.status, OrderStatus::Rejected);
    assert_eq!(view.reject_reason, Some(reason));
    assert!(given.saga.is_finished());
    assert_eq!(given.saga.outstanding(), vec![]);
}

#[test]
fn a_refused_submit_releases_the_hold_and_rejects_with_the_reason() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    let reason = Error::PostOnlyWouldCross;
    let commands = given.when(SagaInput::SubmitRejected {
        reason: reason.clone(),
        at: t(2),
    });
    assert_eq!(commands, vec![release(t(2))]);
    assert_eq!(given.view().status, OrderStatus::Rejected);
    assert_eq!(given.view().reject_reason, Some(reason));
    assert!(!given.saga.is_finished());
    given.when(SagaInput::HoldReleased { at: t(3) });
    assert!(given.saga.is_finished());
}

#[test]
fn a_fok_order_that_cannot_fill_is_rejected_and_released() {
    let order = OrderSpec {
        time_in_force: TimeInForce::Fok,
        ..limit_buy(10)
    };
    let mut given = Given::submitted(order);
    let commands = given.when(SagaInput::SubmitRejected {
        reason: Error::FokNotFillable,
        at: t(2),
    });
    assert_eq!(commands, vec![release(t(2))]);
    assert_eq!(given.view().reject_reason, Some(Error::FokNotFillable));
}

#[test]
fn an_ioc_remainder_that_expires_is_cancelled_after_settling_its_fills() {
    let order = OrderSpec {
        time_in_force: TimeInForce::Ioc,
        ..limit_buy(10)
    };
    let mut given = Given::submitted(order);
    given.when(accepted(&order, t(2)));
    assert_eq!(
        given.when(taker_trade(1, 4, 6, t(2))),
        vec![settle(1, 100, 4, t(2))]
    );
    // The remainder expired with the leg still unsettled: the leg and the release go as one
    // (the account skips a leg settled meanwhile).
    assert_eq!(
        given.when(ended(EndReason::Expired, 6, t(2))),
        vec![finish(&[(1, 100, 4)], t(2))]
    );
    given.when(finished(&[1], t(3)));
    assert_eq!(given.view().status, OrderStatus::Cancelled);
    assert_eq!(given.view().end_reason, Some(EndReason::Expired));
    assert!(given.saga.is_finished());
}

#[test]
fn invalid_starts_are_refused_without_events() {
    let saga = OrderSaga::default();
    let zero = OrderSpec {
        quantity: Quantity(0),
        ..limit_buy(10)
    };
    assert!(matches!(
        saga.decide(&start(zero)),
        Err(Error::ZeroValue { .. })
    ));
    let market_buy = OrderSpec {
        order_type: OrderType::Market,
        price: None,
        time_in_force: TimeInForce::Ioc,
        ..limit_buy(10)
    };
    assert!(matches!(
        saga.decide(&start(market_buy)),
        Err(Error::InvalidOrder { .. })
    ));
    let market_sell = OrderSpec {
        side: Side::Sell,
        ..market_buy
    };
    assert_eq!(
        saga.decide(&start(market_sell)).map(|events| events.len()),
        Ok(1)
    );
    let overflowing = OrderSpec {
        price: Some(Price(u64::MAX)),
        ..limit_buy(10)
    };
    let mut wide_market = market();
    wide_market.reference_price = None;
    let input = SagaInput::Start {
        request: overflowing,
        market: wide_market,
        config: config(),
        by_hold: false,
        at: t(0),
    };
    assert_eq!(saga.decide(&input), Err(Error::Overflow));

    assert_eq!(
        saga.decide(&SagaInput::HoldPlaced { at: t(1) }),
        Err(Error::SagaNotStarted)
    );
    assert_eq!(
        saga.decide(&SagaInput::Tick { now: t(1) }),
        Err(Error::SagaNotStarted)
    );
    let given = Given::started(limit_buy(10));
    assert_eq!(
        given.refused(start(limit_buy(10))),
        Error::SagaAlreadyStarted { order_id: ORDER }
    );
}

#[test]
fn a_hold_that_times_out_is_retried_with_backoff_then_released_and_rejected() {
    let order = limit_buy(10);
    let mut given = Given::started(order);
    assert_eq!(given.saga.deadline(), Some(t(1)));
    assert_eq!(
        given.when(SagaInput::Tick { now: t(1) }),
        vec![hold(&order, t(1))]
    );
    assert_eq!(given.view().attempts, 1);
    assert_eq!(given.saga.deadline(), Some(t(3)), "1 s doubled");
    assert_eq!(
        given.when(SagaInput::Tick { now: t(3) }),
        vec![hold(&order, t(3))]
    );
    assert_eq!(given.saga.deadline(), Some(t(7)), "4 s: the cap");

    assert_eq!(
        given.when(SagaInput::Tick { now: t(7) }),
        vec![release(t(7))]
    );
    let timeout = Error::Timeout {
        step: "hold".to_owned(),
    };
    assert_eq!(given.view().status, OrderStatus::Rejected);
    assert_eq!(given.view().reject_reason, Some(timeout));
    assert_eq!(given.view().step, Some(SagaStep::Release));
    assert_eq!(
        given.when(SagaInput::HoldPlaced { at: t(8) }),
        vec![],
        "a late reply is stale"
    );
    given.when(SagaInput::HoldReleased { at: t(8) });
    assert!(given.saga.is_finished());
}

#[test]
fn no_tick_acts_before_the_deadline() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    assert_eq!(given.saga.deadline(), Some(t(2)));
    let before = given.saga.clone();
    assert_eq!(
        given.when(SagaInput::Tick {
            now: Timestamp(t(2).0 - 1)
        }),
        vec![]
    );
    assert_eq!(given.saga, before);
    assert_eq!(
        given.when(SagaInput::Tick { now: t(2) }),
        vec![submit(&order, t(2))]
    );
}

fn submit_timed_out() -> (Given, OrderSpec) {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    assert_eq!(
        given.when(SagaInput::Tick { now: t(2) }),
        vec![submit(&order, t(2))]
    );
    assert_eq!(
        given.when(SagaInput::Tick { now: t(4) }),
        vec![submit(&order, t(4))]
    );
    assert_eq!(
        given.when(SagaInput::Tick { now: t(8) }),
        vec![cancel(t(8))]
    );
    assert_eq!(given.view().step, Some(SagaStep::Cancel));
    assert_eq!(given.view().attempts, 0, "a new step starts afresh");
    (given, order)
}

#[test]
fn a_submit_that_times_out_and_is_unknown_to_the_book_is_released_and_rejected() {
    let (mut given, _) = submit_timed_out();
    let not_found = Error::OrderNotFound { order_id: ORDER };
    let commands = given.when(SagaInput::CancelRejected {
        reason: not_found,
        at: t(9),
    });
    assert_eq!(commands, vec![release(t(9))]);
    assert_eq!(
        given.view().reject_reason,
        Some(Error::Timeout {
            step: "submit".to_owned()
        })
    );
    given.when(SagaInput::HoldReleased { at: t(10) });
    assert_eq!(given.view().status, OrderStatus::Rejected);
    assert!(given.saga.is_finished());
}

#[test]
fn a_submit_that_times_out_and_is_blocked_by_the_book_is_released_and_rejected() {
    let (mut given, _) = submit_timed_out();
    let blocked = SagaInput::Book {
        event: BookEvent::Blocked {
            order_id: ORDER,
            at: t(9),
        },
    };
    assert_eq!(given.when(blocked.clone()), vec![release(t(9))]);
    assert_eq!(given.when(blocked), vec![], "a repeated event is harmless");
    given.when(SagaInput::HoldReleased { at: t(10) });
    assert_eq!(given.view().status, OrderStatus::Rejected);
    assert!(given.saga.is_finished());
}

#[test]
fn a_submit_that_times_out_but_had_ended_settles_its_late_fills() {
    let (mut given, order) = submit_timed_out();
    let already = Error::OrderAlreadyEnded { order_id: ORDER };
    assert_eq!(
        given.when(SagaInput::CancelRejected {
            reason: already,
            at: t(9)
        }),
        vec![]
    );
    assert_eq!(given.view().step, Some(SagaStep::End));
    given.when(accepted(&order, t(10)));
    assert_eq!(
        given.when(taker_trade(1, 10, 0, t(10))),
        vec![finish(&[(1, 100, 10)], t(10))]
    );
    assert_eq!(given.when(ended(EndReason::Filled, 0, t(10))), vec![]);
    given.when(finished(&[1], t(11)));
    assert_eq!(given.view().status, OrderStatus::Filled);
    assert!(given.saga.is_finished());
}

#[test]
fn a_submit_that_times_out_and_is_then_cancelled_by_the_book_continues_normally() {
    let (mut given, order) = submit_timed_out();
    given.when(accepted(&order, t(9)));
    assert_eq!(
        given.when(ended(EndReason::Cancelled, 10, t(9))),
        vec![release(t(9))]
    );
    assert_eq!(given.view().status, OrderStatus::Cancelled);
}

#[test]
fn duplicate_trades_settle_once() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    given.when(accepted(&order, t(2)));
    assert_eq!(
        given.when(taker_trade(1, 4, 6, t(2))),
        vec![settle(1, 100, 4, t(2))]
    );
    assert_eq!(given.when(taker_trade(1, 4, 6, t(2))), vec![]);
    given.when(rested(6, t(2)));
    given.when(leg_settled(1, t(3)));
    assert_eq!(given.when(taker_trade(1, 4, 6, t(2))), vec![]);
    assert_eq!(given.when(leg_settled(1, t(4))), vec![]);
    assert_eq!(given.view().fills.len(), 1);
    assert_eq!(given.view().filled_quantity, Quantity(4));
}

#[test]
fn ended_before_its_trades_still_settles_then_releases() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    assert_eq!(given.when(ended(EndReason::Expired, 4, t(2))), vec![]);
    assert_eq!(
        given.view().step,
        None,
        "the fills are on their way: nothing to retry"
    );
    assert!(
        !given.saga.is_finished(),
        "6 filled by the book's word, none known yet"
    );
    assert_eq!(
        given.when(taker_trade(2, 2, 8, t(2))),
        vec![settle(2, 100, 2, t(2))]
    );
    assert_eq!(given.when(leg_settled(2, t(3))), vec![], "4 more to come");
    // The last fill the book spoke of: the rest goes as one finish.
    assert_eq!(
        given.when(taker_trade(1, 4, 6, t(2))),
        vec![finish(&[(1, 100, 4)], t(2))]
    );
    assert_eq!(given.when(finished(&[1], t(4))), vec![]);
    assert!(given.saga.is_finished());
    let overfill = given.refused(taker_trade(3, 1, 0, t(5)));
    assert!(matches!(overfill, Error::InvalidOrder { .. }));
}

#[test]
fn a_maker_filled_completely_ends_without_an_ended_event() {
    let order = OrderSpec {
        side: Side::Sell,
        ..limit_buy(10)
    };
    let mut given = Given::submitted(order);
    given.when(accepted(&order, t(2)));
    given.when(rested(10, t(2)));
    assert_eq!(given.view().status, OrderStatus::Open);
    given.when(maker_trade(1, 6, 4, t(50)));
    // The last fill arrives, then its settlement, then the earlier fill's settlement.
    given.when(maker_trade(2, 4, 0, t(60)));
    assert_eq!(given.view().status, OrderStatus::Filled);
    assert_eq!(given.when(leg_settled(2, t(61))), vec![]);
    assert_eq!(given.when(leg_settled(1, t(62))), vec![release(t(62))]);
}

#[test]
fn an_ended_event_before_its_accepted_is_enough() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    assert_eq!(
        given.when(ended(EndReason::SelfTradePrevented, 10, t(2))),
        vec![release(t(2))]
    );
    assert_eq!(given.when(accepted(&order, t(2))), vec![]);
    assert_eq!(given.view().end_reason, Some(EndReason::SelfTradePrevented));
}

#[test]
fn settlement_failures_are_retried_then_stall_until_an_operator_retries() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    given.when(accepted(&order, t(2)));
    given.when(taker_trade(1, 10, 0, t(2)));
    given.when(ended(EndReason::Filled, 0, t(2)));
    let failure = Error::HoldNotFound { order_id: ORDER };
    let refusal = SagaInput::SettleRejected {
        trade_id: TradeId(1),
        reason: failure,
        at: t(2),
    };
    assert_eq!(given.when(refusal), vec![]);
    assert_eq!(given.saga.deadline(), Some(t(3)));
    assert_eq!(
        given.when(SagaInput::Tick { now: t(3) }),
        vec![finish(&[(1, 100, 10)], t(3))]
    );
    assert_eq!(
        given.when(SagaInput::Tick { now: t(5) }),
        vec![finish(&[(1, 100, 10)], t(5))]
    );
    assert_eq!(given.when(SagaInput::Tick { now: t(9) }), vec![]);
    let view = given.view();
    assert!(view.stalled);
    assert_eq!(view.step, Some(SagaStep::Settle));
    assert_eq!(
        given.saga.deadline(),
        None,
        "stalled: only an operator restarts it"
    );
    assert_eq!(given.when(SagaInput::Tick { now: t(100) }), vec![]);

    assert_eq!(
        given.when(SagaInput::Retry { at: t(200) }),
        vec![finish(&[(1, 100, 10)], t(200))]
    );
    assert!(!given.view().stalled);
    assert_eq!(given.view().attempts, 0);
    assert_eq!(given.saga.deadline(), Some(t(201)));
    assert_eq!(given.when(finished(&[1], t(201))), vec![]);
    assert!(given.saga.is_finished());
    assert_eq!(
        given.when(SagaInput::Retry { at: t(300) }),
        vec![],
        "nothing to restart"
    );
}

#[test]
fn a_release_that_is_never_answered_stalls() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    given.when(SagaInput::SubmitRejected {
        reason: Error::FokNotFillable,
        at: t(2),
    });
    given.when(SagaInput::Tick { now: t(3) });
    given.when(SagaInput::Tick { now: t(5) });
    assert_eq!(given.when(SagaInput::Tick { now: t(9) }), vec![]);
    assert!(given.view().stalled);
    assert_eq!(given.view().step, Some(SagaStep::Release));
    assert!(!given.saga.is_finished());
    assert_eq!(given.saga.outstanding(), vec![release(t(9))]);
}

#[test]
fn a_cancel_before_the_hold_is_placed_still_cancels_on_the_book() {
    // The placement may have submitted the order already: the saga learns the hold later.
    let order = limit_buy(10);
    let mut given = Given::started(order);
    assert_eq!(given.when(SagaInput::CancelRequested { at: t(1) }), vec![]);
    assert_eq!(given.view().status, OrderStatus::Pending);
    assert_eq!(
        given.when(SagaInput::HoldPlaced { at: t(2) }),
        vec![submit(&order, t(2))],
        "no release while the order may be on the book"
    );
    assert_eq!(given.when(accepted(&order, t(3))), vec![cancel(t(3))]);
    assert_eq!(
        given.when(ended(EndReason::Cancelled, 10, t(4))),
        vec![release(t(4))]
    );
    given.when(SagaInput::HoldReleased { at: t(5) });
    assert!(given.saga.is_finished());
    assert_eq!(given.view().status, OrderStatus::Cancelled);
}

#[test]
fn a_cancel_that_overtakes_the_placements_answers_cancels_on_the_book() {
    // Answered open, the order is cancelled before its saga gets the placement's answers
    // (the cancel's priority lane overtakes them, or they died with the node): the order
    // rests on the book, so its hold stays until the book ended it and its fills settled.
    let order = limit_buy(10);
    let mut given = Given::started(order);
    given.when(SagaInput::CancelRequested { at: t(1) });
    let answers = SagaInput::Answers {
        inputs: vec![
            SagaInput::HoldPlaced { at: t(1) },
            accepted(&order, t(1)),
            rested(10, t(1)),
        ],
    };
    assert_eq!(given.when(answers), vec![cancel(t(1))]);
    // Bob's sell fills it before the cancel reaches the book.
    assert_eq!(
        given.when(maker_trade(1, 10, 0, t(2))),
        vec![finish(&[(1, 100, 10)], t(2))],
        "released with its fill's settlement, not before"
    );
    assert_eq!(given.view().status, OrderStatus::Filled);
}

#[test]
fn an_old_journals_cancel_before_submission_replays_as_it_was_decided() {
    // Written before `CancelQueued`: the cancel skipped the submit and released the hold.
    let order = limit_buy(10);
    let saga = OrderSaga::replay(&[
        SagaEvent::Started {
            order,
            market: market(),
            config: config(),
            at: t(0),
        },
        SagaEvent::CancelRequested { at: t(1) },
        SagaEvent::HoldConfirmed { at: t(2) },
        SagaEvent::Released { at: t(3) },
    ]);
    assert_eq!(saga.view().status, OrderStatus::Cancelled);
    assert!(saga.is_finished());
    assert_eq!(
        saga.outstanding(),
        vec![],
        "no submit of an order with no hold"
    );
}

#[test]
fn a_cancel_while_submitting_waits_for_the_book_to_have_the_order() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    assert_eq!(given.when(SagaInput::CancelRequested { at: t(2) }), vec![]);
    assert_eq!(given.when(accepted(&order, t(3))), vec![cancel(t(3))]);
    let already = Error::OrderAlreadyEnded { order_id: ORDER };
    given.when(SagaInput::CancelRejected {
        reason: already,
        at: t(4),
    });
    assert_eq!(given.view().step, Some(SagaStep::End));
    assert_eq!(given.when(ended(EndReason::Filled, 0, t(4))), vec![]);
    assert_eq!(
        given.when(taker_trade(1, 10, 0, t(4))),
        vec![finish(&[(1, 100, 10)], t(4))]
    );
    assert_eq!(given.view().status, OrderStatus::Filled);
}

#[test]
fn crash_at_every_step_resumes_with_the_same_outstanding_commands() {
    let order = limit_buy(10);
    let inputs = vec![
        start(order),
        SagaInput::HoldPlaced { at: t(1) },
        accepted(&order, t(2)),
        taker_trade(1, 3, 7, t(2)),
        rested(7, t(2)),
        maker_trade(2, 7, 0, t(3)),
        leg_settled(2, t(4)),
        leg_settled(1, t(5)),
        SagaInput::HoldReleased { at: t(6) },
    ];
    let expected_outstanding = vec![
        vec![hold(&order, t(0))],
        vec![submit(&order, t(1))],
        vec![],
        vec![settle(1, 100, 3, t(2))],
        vec![settle(1, 100, 3, t(2))],
        vec![finish(&[(1, 100, 3), (2, 100, 7)], t(3))],
        vec![finish(&[(1, 100, 3)], t(4))],
        vec![release(t(5))],
        vec![],
    ];
    let mut given = Given::default();
    for (input, expected) in inputs.into_iter().zip(expected_outstanding) {
        given.when(input);
        let recovered = OrderSaga::replay(&given.log);
        assert_eq!(recovered.outstanding(), expected);
        assert_eq!(recovered.deadline(), given.saga.deadline());
        assert_eq!(recovered.view(), given.view());
    }
    assert!(given.saga.is_finished());
}

#[test]
fn stale_and_irrelevant_inputs_are_harmless() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    let before = given.saga.clone();
    let other_order = OrderSpec {
        order_id: OTHER,
        ..order
    };
    let harmless = vec![
        SagaInput::HoldPlaced { at: t(2) },
        SagaInput::HoldRejected {
            reason: Error::FokNotFillable,
            at: t(2),
        },
        SagaInput::SubmitRejected {
            reason: Error::DuplicateOrder { order_id: ORDER },
            at: t(2),
        },
        SagaInput::CancelRejected {
            reason: Error::OrderNotFound { order_id: ORDER },
            at: t(2),
        },
        leg_settled(9, t(2)),
        SagaInput::SettleRejected {
            trade_id: TradeId(9),
            reason: Error::Overflow,
            at: t(2),
        },
        SagaInput::HoldReleased { at: t(2) },
        accepted(&other_order, t(2)),
        book(BookEvent::Halted {
            trigger_price: None,
            band: None,
            at: t(2),
        }),
        book(BookEvent::Ended {
            order_id: OTHER,
            account_id: bob(),
            reason: EndReason::Filled,
            remaining: Quantity(0),
            at: t(2),
        }),
    ];
    for input in harmless {
        assert_eq!(given.when(input.clone()), vec![], "{input:?}");
        assert_eq!(given.saga, before, "{input:?}");
    }
}

#[test]
fn messages_round_trip_with_stable_names() {
    let order = limit_buy(10);
    let mut given = Given::submitted(order);
    given.when(accepted(&order, t(2)));
    given.when(taker_trade(1, 10, 0, t(2)));
    let names: Vec<_> = given.log.iter().map(|event| event.name()).collect();
    assert_eq!(
        names,
        [
            "saga.started",
            "saga.hold_confirmed",
            "saga.accepted",
            "saga.filled",
            "saga.ended"
        ]
    );
    for event in &given.log {
        let json = serde_json::to_string(event).unwrap();
        assert_eq!(&serde_json::from_str::<SagaEvent>(&json).unwrap(), event);
    }
    let input = SagaInput::CancelRejected {
        reason: Error::OrderNotFound { order_id: ORDER },
        at: t(1),
    };
    assert_eq!(input.name(), "saga.cancel_rejected");
    let json = serde_json::to_string(&input).unwrap();
    assert_eq!(serde_json::from_str::<SagaInput>(&json).unwrap(), input);
    let view = given.view();
    let json = serde_json::to_string(&view).unwrap();
    assert_eq!(serde_json::from_str::<OrderView>(&json).unwrap(), view);
    assert_eq!(
        OrderSaga::priority(&SagaInput::CancelRequested { at: t(1) }),
        Priority::High
    );
}

#[test]
fn the_default_config_is_valid_and_backs_off_to_its_cap() {
    let config = SagaConfig::default();
    assert!(config.is_valid());
    assert_eq!(config.timeout_micros(0), STEP_TIMEOUT_MICROS_DEFAULT);
    assert_eq!(config.timeout_micros(1), 2 * STEP_TIMEOUT_MICROS_DEFAULT);
    assert_eq!(
        config.timeout_micros(ATTEMPTS_LIMIT),
        STEP_TIMEOUT_MAX_MICROS_DEFAULT
    );
    assert_eq!(config.timeout_micros(200), STEP_TIMEOUT_MAX_MICROS_DEFAULT);
    assert!(
        !SagaConfig {
            attempts_max: 0,
            ..config
        }
        .is_valid()
    );
    assert!(
        !SagaConfig {
            step_timeout_micros: 0,
            ..config
        }
        .is_valid()
    );
}

/// The book's events for order 7 (buy 10): takes 3 (trade 1), rests 7, then is the maker of
/// trades 2 (4) and 3 (3, filling it).
fn scenario_book_events() -> Vec<SagaInput> {
    let order = limit_buy(10);
    vec![
        accepted(&order, t(2)),
        taker_trade(1, 3, 7, t(2)),
        rested(7, t(2)),
        maker_trade(2, 4, 3, t(3)),
        maker_trade(3, 3, 0, t(4)),
    ]
}

proptest! {
    /// Whatever order and however often the book's events and the account's replies arrive,
    /// each trade's leg is settled once and the hold released once, after every settlement.
    #[test]
    fn shuffled_and_duplicated_deliveries_settle_once_and_release_once(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 40),
        duplicates in proptest::collection::vec(any::<bool>(), 40),
    ) {
        let order = limit_buy(10);
        let mut saga = OrderSaga::default();
        saga.step(&start(order)).unwrap();
        saga.step(&SagaInput::HoldPlaced { at: t(1) }).unwrap();
        let mut pool = scenario_book_events();
        // The account applies each command as it arrives; its answers come back in any
        // order, possibly repeated, with the book's events.
        let mut settled_by_account: Vec<TradeId> = Vec::new();
        let mut settle_sent: Vec<TradeId> = Vec::new();
        let mut releases = 0;
        let mut picks = picks.into_iter();
        let mut duplicates = duplicates.into_iter().cycle();
        while !pool.is_empty() {
            let index = picks.next().map_or(0, |pick| pick.index(pool.len()));
            let input = if duplicates.next().unwrap() {
                pool[index].clone()
            } else {
                pool.swap_remove(index)
            };
            for command in saga.step(&input).unwrap() {
                let SagaCommand::Account { command, .. } = command else {
                    panic!("no book command expected: {command:?}");
                };
                match command {
                    AccountCommand::SettleTrade { trade_id, at, .. } => {
                        prop_assert_eq!(releases, 0, "no settlement after the release");
                        prop_assert!(!settle_sent.contains(&trade_id), "each leg settled once");
                        settle_sent.push(trade_id);
                        if !settled_by_account.contains(&trade_id) {
                            settled_by_account.push(trade_id);
                        }
                        pool.push(SagaInput::LegSettled { trade_id, at });
                    }
                    AccountCommand::Finish { legs, at, .. } => {
                        if releases == 0 {
                            for leg in &legs {
                                if !settled_by_account.contains(&leg.trade_id) {
                                    settled_by_account.push(leg.trade_id);
                                }
                            }
                            prop_assert_eq!(settled_by_account.len(), 3, "finished with every leg");
                            releases += 1;
                        }
                        pool.push(finished(&legs.iter().map(|leg| leg.trade_id.0).collect::<Vec<_>>(), at));
                    }
                    AccountCommand::ReleaseHold { at, .. } => {
                        prop_assert_eq!(settled_by_account.len(), 3, "release after settling");
                        if releases == 0 {
                            releases += 1;
                        }
                        pool.push(SagaInput::HoldReleased { at });
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        settled_by_account.sort();
        prop_assert_eq!(settled_by_account, vec![TradeId(1), TradeId(2), TradeId(3)]);
        prop_assert_eq!(releases, 1);
        prop_assert!(saga.is_finished());
        prop_assert_eq!(saga.view().status, OrderStatus::Filled);
        prop_assert_eq!(saga.view().filled_quantity, Quantity(10));
    }
}

#[test]
fn answers_decide_like_their_inputs_one_by_one() {
    let order = limit_buy(10);
    let inputs = vec![
        SagaInput::HoldPlaced { at: t(1) },
        accepted(&order, t(1)),
        taker_trade(1, 4, 6, t(1)),
        rested(6, t(1)),
    ];
    let mut one_by_one = Given::started(order);
    let mut commands = Vec::new();
    for input in inputs.clone() {
        commands.extend(one_by_one.when(input));
    }
    let mut batched = Given::started(order);
    let batch_commands = batched.when(SagaInput::Answers { inputs });
    assert_eq!(batched.saga, one_by_one.saga);
    assert_eq!(batched.log, one_by_one.log);
    // The submit was carried out by whoever gathered the answers: only the settlement is new.
    assert_eq!(batch_commands, vec![settle(1, 100, 4, t(1))]);
    assert!(commands.contains(&submit(&order, t(1))));
    assert!(batched.view().resting);
    assert_eq!(batched.view().status, OrderStatus::PartiallyFilled);
}

#[test]
fn answers_without_the_book_leave_the_submit_to_the_saga() {
    let order = limit_buy(10);
    let mut given = Given::started(order);
    let commands = given.when(SagaInput::Answers {
        inputs: vec![SagaInput::HoldPlaced { at: t(1) }],
    });
    assert_eq!(commands, vec![submit(&order, t(1))]);
}

#[test]
fn answers_refuse_nested_batches_and_starts_and_change_nothing() {
    let order = limit_buy(10);
    let given = Given::started(order);
    for inner in [SagaInput::Answers { inputs: vec![] }, start(order)] {
        let error = given.refused(SagaInput::Answers {
            inputs: vec![SagaInput::HoldPlaced { at: t(1) }, inner],
        });
        assert!(matches!(error, Error::InvalidOrder { .. }), "{error:?}");
    }
    assert_eq!(given.saga.view().status, OrderStatus::Pending);
}

/// A host that writes only what [`OrderSaga::must_journal`] asks for: what it skipped goes
/// first into its next write, as the entity host does.
#[derive(Default)]
struct SkippingHost {
    saga: OrderSaga,
    written: Vec<SagaEvent>,
    unwritten: Vec<SagaEvent>,
}

impl SkippingHost {
    fn step(&mut self, input: &SagaInput) -> Vec<SagaCommand> {
        let events = self.saga.decide(input).unwrap();
        let writes = events.iter().any(|event| self.saga.must_journal(event));
        for event in &events {
            self.saga.apply(event);
        }
        if writes {
            self.written.append(&mut self.unwritten);
            self.written.extend(events.iter().cloned());
        } else {
            self.unwritten.extend(events.iter().cloned());
        }
        self.saga.commands(&events)
    }

    /// The saga as recovery folds it: the written events, then every fact of the other
    /// journals in their order, as inputs.
    fn recovered(&self, facts: &[SagaInput]) -> OrderSaga {
        let mut saga = OrderSaga::default();
        for event in &self.written {
            saga.apply(event);
        }
        for fact in facts {
            match saga.step(fact) {
                // The start a hold carries, after the saga wrote its own.
                Ok(_) | Err(Error::SagaAlreadyStarted { .. }) => {}
                Err(error) => panic!("{fact:?} refused: {error:?}"),
            }
        }
        saga
    }
}

proptest! {
    /// However the answers and the book's events arrive (shuffled, repeated, with timer ticks
    /// and a user's cancel among them), a saga folded from what its host wrote and the facts
    /// of the account's and the book's journals is, at any point, a saga that could be, and
    /// once every fact was delivered it is the live saga.
    #[test]
    fn a_saga_folded_from_its_written_events_and_the_facts_is_the_live_one(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 60),
        duplicates in proptest::collection::vec(any::<bool>(), 60),
        ticks in proptest::collection::vec(any::<bool>(), 60),
        cancel_at in 0i64..60,
        by_hold in any::<bool>(),
    ) {
        let order = limit_buy(10);
        let mut host = SkippingHost::default();
        let start = if by_hold { start_by_hold(order) } else { start(order) };
        let hold = host.step(&start);
        host.step(&SagaInput::HoldPlaced { at: t(1) });
        // The account's and the book's journals, in log order.
        let mut facts = if by_hold {
            SagaInput::from_account(&hold_placed(&hold))
                .into_iter()
                .map(|(_, input)| input)
                .collect()
        } else {
            vec![SagaInput::HoldPlaced { at: t(1) }]
        };
        let mut pool = scenario_book_events();
        facts.extend(pool.iter().cloned());
        let mut applied: Vec<TradeId> = Vec::new();
        let mut released = false;
        let mut picks = picks.into_iter();
        let (mut duplicates, mut ticks) = (duplicates.into_iter(), ticks.into_iter());
        let mut round: i64 = 0;
        while !pool.is_empty() {
            round += 1;
            let index = picks.next().map_or(0, |pick| pick.index(pool.len()));
            let input = if duplicates.next().unwrap_or(false) {
                pool[index].clone()
            } else {
                pool.swap_remove(index)
            };
            let mut commands = host.step(&input);
            if ticks.next().unwrap_or(false) {
                commands.extend(host.step(&SagaInput::Tick { now: t(60 * round) }));
            }
            if round == cancel_at {
                commands.extend(host.step(&SagaInput::CancelRequested { at: t(round) }));
            }
            for command in commands {
                let SagaCommand::Account { command, .. } = command else { continue };
                match command {
                    AccountCommand::SettleTrade { trade_id, at, .. } if !released => {
                        if !applied.contains(&trade_id) {
                            applied.push(trade_id);
                            facts.push(SagaInput::LegSettled { trade_id, at });
                        }
                        pool.push(SagaInput::LegSettled { trade_id, at });
                    }
                    AccountCommand::Finish { legs, at, .. } => {
                        if !released {
                            for leg in &legs {
                                if !applied.contains(&leg.trade_id) {
                                    applied.push(leg.trade_id);
                                    facts.push(SagaInput::LegSettled { trade_id: leg.trade_id, at });
                                }
                            }
                            facts.push(SagaInput::HoldReleased { at });
                            released = true;
                        }
                        pool.push(finished(&legs.iter().map(|leg| leg.trade_id.0).collect::<Vec<_>>(), at));
                    }
                    AccountCommand::ReleaseHold { at, .. } => {
                        if !released {
                            facts.push(SagaInput::HoldReleased { at });
                            released = true;
                        }
                        pool.push(SagaInput::HoldReleased { at });
                    }
                    _ => {}
                }
            }
            // A crash now: recovery folds without a panic and knows at least what the live
            // saga knows.
            let recovered = host.recovered(&facts);
            prop_assert!(recovered.view().filled_quantity >= host.saga.view().filled_quantity);
        }
        prop_assert!(host.saga.is_finished());
        let recovered = host.recovered(&facts);
        prop_assert_eq!(recovered.view(), host.saga.view());
        prop_assert!(recovered.is_finished());
        prop_assert_eq!(recovered.outstanding(), host.saga.outstanding());
    }
}

#[test]
fn on_the_happy_path_only_the_start_is_written() {
    let order = limit_buy(10);
    let mut host = SkippingHost::default();
    host.step(&start(order));
    host.step(&SagaInput::HoldPlaced { at: t(1) });
    for input in scenario_book_events() {
        host.step(&input);
    }
    host.step(&finished(&[1, 2, 3], t(5)));
    assert!(host.saga.is_finished());
    let names: Vec<&str> = host.written.iter().map(SagaEvent::name).collect();
    assert_eq!(names, ["saga.started"]);
}

fn start_by_hold(order: OrderSpec) -> SagaInput {
    let SagaInput::Start {
        request,
        market,
        config,
        at,
        ..
    } = start(order)
    else {
        unreachable!()
    };
    SagaInput::Start {
        request,
        market,
        config,
        by_hold: true,
        at,
    }
}

/// The account's event for the hold `commands` ask for, placed at t(1).
fn hold_placed(commands: &[SagaCommand]) -> AccountEvent {
    let [
        SagaCommand::Account {
            command:
                AccountCommand::PlaceHold {
                    order_id,
                    symbol,
                    base,
                    quote,
                    side,
                    quantity,
                    start,
                    ..
                },
            ..
        },
    ] = commands
    else {
        panic!("not a hold: {commands:?}")
    };
    AccountEvent::HoldPlaced {
        command: crate::account::CommandRef {
            id: CommandId::derived(*order_id, "hold").unwrap(),
            fingerprint: 0,
        },
        order_id: *order_id,
        symbol: *symbol,
        base: *base,
        quote: *quote,
        side: *side,
        quantity: *quantity,
        asset: *quote,
        amount: crate::units::Amount(1_000),
        start: start.clone(),
        at: t(1),
    }
}

#[test]
fn a_generated_orders_hold_carries_its_start_and_the_happy_path_writes_nothing() {
    let order = limit_buy(10);
    let mut host = SkippingHost::default();
    let commands = host.step(&start_by_hold(order));
    let hold = hold_placed(&commands);
    let AccountEvent::HoldPlaced {
        start: Some(carried),
        ..
    } = &hold
    else {
        panic!("the hold carries no start: {hold:?}")
    };
    assert_eq!(
        **carried,
        SagaStart {
            order,
            market: market(),
            config: config()
        }
    );
    // The hold's event is the saga's start, then the hold's answer.
    let mut facts: Vec<SagaInput> = SagaInput::from_account(&hold)
        .into_iter()
        .map(|(order_id, input)| {
            assert_eq!(order_id, ORDER);
            input
        })
        .collect();
    assert_eq!(
        facts,
        [carried.input(t(1)), SagaInput::HoldPlaced { at: t(1) }]
    );
    host.step(&SagaInput::HoldPlaced { at: t(1) });
    for input in scenario_book_events() {
        host.step(&input);
        facts.push(input);
    }
    host.step(&finished(&[1, 2, 3], t(5)));
    facts.push(finished(&[1, 2, 3], t(5)));
    assert!(host.saga.is_finished());
    assert!(host.written.is_empty(), "{:?}", host.written);
    assert_eq!(host.recovered(&facts).view(), host.saga.view());
}

#[test]
fn a_started_by_hold_saga_writes_its_start_before_what_it_must_write() {
    let order = limit_buy(10);
    let mut host = SkippingHost::default();
    host.step(&start_by_hold(order));
    host.step(&SagaInput::HoldRejected {
        reason: Error::InsufficientFunds {
            asset: market().quote,
            available: crate::units::Amount(0),
            required: crate::units::Amount(1_000),
        },
        at: t(1),
    });
    let names: Vec<&str> = host.written.iter().map(SagaEvent::name).collect();
    assert_eq!(names, ["saga.started_by_hold", "saga.hold_refused"]);
    assert_eq!(host.recovered(&[]).view(), host.saga.view());
}
