//! Given / when / then tests of the order book, and a property test over random flow.

use proptest::prelude::*;
use rustc_hash::FxHashMap;

use super::*;
use crate::ids::{Asset, Symbol};

const REFERENCE: u64 = 1_000;

fn spec() -> MarketSpec {
    MarketSpec {
        symbol: Symbol::new("BTC-USD").unwrap(),
        base: Asset::new("BTC").unwrap(),
        quote: Asset::new("USD").unwrap(),
        tick_size: Price(5),
        lot_size: Quantity(10),
        min_quantity: Quantity(10),
        max_quantity: Quantity(10_000),
        // ±10 %: [900, 1 100] around the reference.
        band_bps: 1_000,
        reference_price: Some(Price(REFERENCE)),
    }
}

fn account(name: &str) -> AccountId {
    AccountId::new(name).unwrap()
}

fn limit(id: u64, owner: &str, side: Side, price: u64, quantity: u64) -> OrderSpec {
    OrderSpec {
        order_id: OrderId(id),
        account_id: account(owner),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        quantity: Quantity(quantity),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    }
}

fn market(id: u64, owner: &str, side: Side, protection: Option<u64>, quantity: u64) -> OrderSpec {
    OrderSpec {
        order_type: OrderType::Market,
        price: protection.map(Price),
        time_in_force: TimeInForce::Ioc,
        ..limit(id, owner, side, 5, quantity)
    }
}

fn with_tif(order: OrderSpec, time_in_force: TimeInForce) -> OrderSpec {
    OrderSpec {
        time_in_force,
        ..order
    }
}

/// A book under test with the log of every event it applied; after each command it checks
/// that replaying the log gives the live state and that the book is not crossed.
struct Given {
    book: OrderBook,
    log: Vec<BookEvent>,
    clock: i64,
}

impl Given {
    fn unlisted() -> Self {
        Self {
            book: OrderBook::default(),
            log: Vec::new(),
            clock: 0,
        }
    }

    fn listed_with(spec: MarketSpec) -> Self {
        let mut given = Self::unlisted();
        given
            .when(BookCommand::List {
                spec,
                at: Timestamp(0),
            })
            .unwrap();
        given
    }

    fn listed() -> Self {
        Self::listed_with(spec())
    }

    /// Rests orders that must not trade.
    fn resting(mut self, orders: &[OrderSpec]) -> Self {
        for order in orders {
            let report = self.submit(*order).unwrap();
            assert_eq!(
                report.status,
                OrderStatus::Open,
                "{order:?} was meant to rest"
            );
        }
        self
    }

    fn now(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp(self.clock)
    }

    fn when(&mut self, command: BookCommand) -> Result<(Vec<BookEvent>, BookReply), Error> {
        let before = self.book.clone();
        let outcome = self.book.execute(&command);
        match &outcome {
            Ok((events, _)) => self.log.extend(events.iter().cloned()),
            Err(_) => assert_eq!(self.book, before, "a refused command changes nothing"),
        }
        assert_eq!(
            OrderBook::replay(&self.log),
            self.book,
            "replay gives the live state"
        );
        assert!(!self.book.is_crossed());
        outcome
    }

    fn submit_events(&mut self, order: OrderSpec) -> Result<Vec<BookEvent>, Error> {
        let at = self.now();
        self.when(BookCommand::Submit { order, at })
            .map(|(events, _)| events)
    }

    fn submit(&mut self, order: OrderSpec) -> Result<OrderReport, Error> {
        let at = self.now();
        match self.when(BookCommand::Submit { order, at })?.1 {
            BookReply::Order(report) => Ok(report),
            other => panic!("a submit replies with a report, not {other:?}"),
        }
    }

    fn cancel(&mut self, id: u64) -> Result<BookReply, Error> {
        let at = self.now();
        self.when(BookCommand::Cancel {
            order_id: OrderId(id),
            at,
        })
        .map(|(_, reply)| reply)
    }

    fn halt(&mut self) -> Result<Vec<BookEvent>, Error> {
        let at = self.now();
        self.when(BookCommand::Halt { at })
            .map(|(events, _)| events)
    }

    fn resume(&mut self, reference_price: Option<u64>) -> Result<Vec<BookEvent>, Error> {
        let at = self.now();
        let reference_price = reference_price.map(Price);
        self.when(BookCommand::Resume {
            reference_price,
            at,
        })
        .map(|(events, _)| events)
    }

    fn remaining(&self, id: u64) -> Option<u64> {
        self.book
            .resting_order(OrderId(id))
            .map(|order| order.remaining.get())
    }
}

/// `(maker, taker, price, quantity)` of each trade, in order.
fn fills(trades: &[Trade]) -> Vec<(u64, u64, u64, u64)> {
    trades
        .iter()
        .map(|trade| {
            (
                trade.maker_order_id.0,
                trade.taker_order_id.0,
                trade.price.get(),
                trade.quantity.get(),
            )
        })
        .collect()
}

fn end_reason(events: &[BookEvent]) -> Option<EndReason> {
    match events.last() {
        Some(BookEvent::Ended { reason, .. }) => Some(*reason),
        _ => None,
    }
}

// ----- listing -----

#[test]
fn a_market_is_listed_once() {
    let mut given = Given::unlisted();
    let (events, reply) = given
        .when(BookCommand::List {
            spec: spec(),
            at: Timestamp(1),
        })
        .unwrap();
    assert_eq!(
        events,
        vec![BookEvent::Listed {
            spec: spec(),
            at: Timestamp(1)
        }]
    );
    assert_eq!(reply, BookReply::Listed);
    assert_eq!(given.book.spec(), Some(&spec()));
    assert_eq!(given.book.reference_price(), Some(Price(REFERENCE)));

    let again = given.when(BookCommand::List {
        spec: spec(),
        at: Timestamp(2),
    });
    assert!(matches!(again, Err(Error::MarketAlreadyListed { symbol }) if symbol == spec().symbol));
}

#[test]
fn an_inconsistent_market_is_not_listed() {
    let mut given = Given::unlisted();
    let zero_tick = MarketSpec {
        tick_size: Price(0),
        ..spec()
    };
    let outcome = given.when(BookCommand::List {
        spec: zero_tick,
        at: Timestamp(1),
    });
    assert!(matches!(outcome, Err(Error::InvalidMarket { .. })));
    assert_eq!(given.book.spec(), None);
}

#[test]
fn an_unlisted_book_knows_no_market() {
    let mut given = Given::unlisted();
    assert!(matches!(
        given.submit(limit(1, "a", Side::Buy, 1_000, 10)),
        Err(Error::MarketNotListed)
    ));
    assert!(matches!(given.cancel(1), Err(Error::MarketNotListed)));
    assert!(matches!(given.halt(), Err(Error::MarketNotListed)));
    assert!(matches!(given.resume(None), Err(Error::MarketNotListed)));
}

// ----- validation -----

#[test]
fn orders_that_break_the_market_rules_are_refused() {
    let mut given = Given::listed();
    let off_tick = limit(1, "a", Side::Buy, 1_001, 10);
    assert!(matches!(
        given.submit(off_tick),
        Err(Error::BadTick {
            price: Price(1_001),
            ..
        })
    ));
    let off_lot = limit(2, "a", Side::Buy, 1_000, 15);
    assert!(matches!(
        given.submit(off_lot),
        Err(Error::BadLot {
            quantity: Quantity(15),
            ..
        })
    ));
    let too_big = limit(3, "a", Side::Buy, 1_000, 20_000);
    assert!(matches!(
        given.submit(too_big),
        Err(Error::QuantityOutOfRange { .. })
    ));
    let no_price = OrderSpec {
        price: None,
        ..limit(4, "a", Side::Buy, 1_000, 10)
    };
    assert!(matches!(
        given.submit(no_price),
        Err(Error::InvalidOrder { .. })
    ));
    let market_gtc = with_tif(market(5, "a", Side::Buy, None, 10), TimeInForce::Gtc);
    assert!(matches!(
        given.submit(market_gtc),
        Err(Error::InvalidOrder { .. })
    ));
    let post_only_market = OrderSpec {
        post_only: true,
        ..market(6, "a", Side::Buy, None, 10)
    };
    assert!(matches!(
        given.submit(post_only_market),
        Err(Error::InvalidOrder { .. })
    ));
    let post_only_ioc = OrderSpec {
        post_only: true,
        ..limit(7, "a", Side::Buy, 1_000, 10)
    };
    let post_only_ioc = with_tif(post_only_ioc, TimeInForce::Ioc);
    assert!(matches!(
        given.submit(post_only_ioc),
        Err(Error::InvalidOrder { .. })
    ));
    assert!(given.log.len() == 1, "only the listing happened");
}

// ----- price–time priority -----

#[test]
fn makers_at_one_price_fill_in_arrival_order() {
    let mut given = Given::listed().resting(&[
        limit(1, "m1", Side::Sell, 1_000, 30),
        limit(2, "m2", Side::Sell, 1_000, 30),
        limit(3, "m3", Side::Sell, 1_000, 30),
    ]);
    let report = given.submit(limit(10, "t", Side::Buy, 1_000, 50)).unwrap();
    assert_eq!(
        fills(&report.trades),
        vec![(1, 10, 1_000, 30), (2, 10, 1_000, 20)]
    );
    assert_eq!(report.status, OrderStatus::Filled);
    assert_eq!(given.remaining(1), None);
    assert_eq!(given.remaining(2), Some(10));
    assert_eq!(given.remaining(3), Some(30));
}

#[test]
fn the_better_price_fills_first_at_the_makers_price() {
    let mut given = Given::listed().resting(&[
        limit(1, "m1", Side::Sell, 1_010, 10),
        limit(2, "m2", Side::Sell, 1_000, 10),
        limit(3, "m3", Side::Sell, 1_005, 10),
    ]);
    let report = given.submit(limit(10, "t", Side::Buy, 1_050, 30)).unwrap();
    assert_eq!(
        fills(&report.trades),
        vec![(2, 10, 1_000, 10), (3, 10, 1_005, 10), (1, 10, 1_010, 10)]
    );
    assert_eq!(given.book.last_price(), Some(Price(1_010)));
    assert_eq!(given.book.open_order_count(), 0);
}

#[test]
fn a_partly_filled_limit_order_rests_its_remainder() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Buy, 995, 20)]);
    let events = given
        .submit_events(limit(2, "t", Side::Sell, 990, 50))
        .unwrap();
    let BookEvent::Traded(trade) = events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(trade.trade_id, TradeId(1));
    assert_eq!(
        (trade.maker_remaining, trade.taker_remaining),
        (Quantity(0), Quantity(30))
    );
    assert!(matches!(
        events[2],
        BookEvent::Rested {
            order_id: OrderId(2),
            price: Price(990),
            remaining: Quantity(30),
            sequence: 2,
            ..
        }
    ));
    assert_eq!(events.len(), 3, "a filled maker gets no Ended of its own");
    assert_eq!(given.book.best_ask(), Some(Price(990)));
    assert_eq!(given.book.best_bid(), None);
}

// ----- time in force -----

#[test]
fn an_ioc_remainder_expires() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Sell, 1_000, 20)]);
    let order = with_tif(limit(2, "t", Side::Buy, 1_000, 50), TimeInForce::Ioc);
    let events = given.submit_events(order).unwrap();
    assert!(matches!(
        events.last(),
        Some(BookEvent::Ended {
            reason: EndReason::Expired,
            remaining: Quantity(30),
            ..
        })
    ));
    assert_eq!(given.book.open_order_count(), 0);
    assert!(matches!(
        given.cancel(2),
        Err(Error::OrderAlreadyEnded { .. })
    ));
}

#[test]
fn a_fok_that_can_fill_fills() {
    let mut given = Given::listed().resting(&[
        limit(1, "m1", Side::Sell, 1_000, 20),
        limit(2, "m2", Side::Sell, 1_005, 30),
    ]);
    let report = given
        .submit(with_tif(
            limit(3, "t", Side::Buy, 1_005, 50),
            TimeInForce::Fok,
        ))
        .unwrap();
    assert_eq!(report.status, OrderStatus::Filled);
    assert_eq!(report.filled_quantity, Quantity(50));
}

#[test]
fn a_fok_that_cannot_fill_completely_changes_nothing() {
    let mut given = Given::listed().resting(&[
        limit(1, "m1", Side::Sell, 1_000, 20),
        limit(2, "m2", Side::Sell, 1_010, 30),
    ]);
    let too_much = with_tif(limit(3, "t", Side::Buy, 1_010, 60), TimeInForce::Fok);
    assert_eq!(given.submit(too_much), Err(Error::FokNotFillable));
    let price_too_low = with_tif(limit(4, "t", Side::Buy, 1_005, 50), TimeInForce::Fok);
    assert_eq!(given.submit(price_too_low), Err(Error::FokNotFillable));
    let market_too_big = with_tif(market(5, "t", Side::Buy, None, 60), TimeInForce::Fok);
    assert_eq!(given.submit(market_too_big), Err(Error::FokNotFillable));
    assert_eq!(given.remaining(1), Some(20));
    assert_eq!(given.remaining(2), Some(30));
}

#[test]
fn a_fok_stopped_by_a_self_trade_is_not_fillable() {
    let mut given = Given::listed().resting(&[
        limit(1, "m", Side::Sell, 1_000, 20),
        limit(2, "t", Side::Sell, 1_000, 30),
    ]);
    let order = with_tif(limit(3, "t", Side::Buy, 1_000, 50), TimeInForce::Fok);
    assert_eq!(given.submit(order), Err(Error::FokNotFillable));
    assert_eq!(given.remaining(1), Some(20));
}

#[test]
fn a_fok_stopped_by_the_band_is_not_fillable_and_does_not_halt() {
    let mut given = Given::listed().resting(&[
        limit(1, "m", Side::Sell, 1_100, 20),
        limit(2, "m", Side::Sell, 1_105, 30),
    ]);
    let order = with_tif(limit(3, "t", Side::Buy, 1_105, 50), TimeInForce::Fok);
    assert_eq!(given.submit(order), Err(Error::FokNotFillable));
    assert!(!given.book.is_halted());
}

// ----- post-only -----

#[test]
fn a_post_only_order_that_would_cross_is_refused() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Sell, 1_000, 20)]);
    let order = OrderSpec {
        post_only: true,
        ..limit(2, "t", Side::Buy, 1_000, 10)
    };
    assert_eq!(given.submit(order), Err(Error::PostOnlyWouldCross));
}

#[test]
fn a_post_only_order_that_would_not_cross_rests() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Sell, 1_000, 20)]);
    let order = OrderSpec {
        post_only: true,
        ..limit(2, "t", Side::Buy, 995, 10)
    };
    let report = given.submit(order).unwrap();
    assert_eq!(report.status, OrderStatus::Open);
    assert_eq!(report.resting_quantity, Quantity(10));
}

// ----- market orders -----

#[test]
fn a_market_order_takes_any_price_and_expires_the_rest() {
    let mut given = Given::listed().resting(&[
        limit(1, "m", Side::Buy, 1_000, 20),
        limit(2, "m", Side::Buy, 950, 20),
    ]);
    let events = given
        .submit_events(market(3, "t", Side::Sell, None, 50))
        .unwrap();
    let trades: Vec<Trade> = events
        .iter()
        .filter_map(|event| {
            if let BookEvent::Traded(trade) = event {
                Some(*trade)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(fills(&trades), vec![(1, 3, 1_000, 20), (2, 3, 950, 20)]);
    assert!(matches!(
        events.last(),
        Some(BookEvent::Ended {
            reason: EndReason::Expired,
            remaining: Quantity(10),
            ..
        })
    ));
}

#[test]
fn a_market_order_with_a_protection_price_goes_no_further() {
    let mut given = Given::listed().resting(&[
        limit(1, "m", Side::Buy, 1_000, 20),
        limit(2, "m", Side::Buy, 950, 20),
    ]);
    let report = given
        .submit(market(3, "t", Side::Sell, Some(975), 50))
        .unwrap();
    assert_eq!(fills(&report.trades), vec![(1, 3, 1_000, 20)]);
    assert_eq!(report.status, OrderStatus::Cancelled);
    assert_eq!(given.remaining(2), Some(20));
}

#[test]
fn a_market_order_on_an_empty_book_expires() {
    let mut given = Given::listed();
    let events = given
        .submit_events(market(1, "t", Side::Buy, None, 10))
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(end_reason(&events), Some(EndReason::Expired));
}

// ----- self-trade prevention -----

#[test]
fn a_self_trade_cancels_the_incoming_remainder_and_keeps_earlier_trades() {
    let mut given = Given::listed().resting(&[
        limit(1, "other", Side::Sell, 1_000, 20),
        limit(2, "me", Side::Sell, 1_000, 20),
        limit(3, "other", Side::Sell, 1_000, 20),
    ]);
    let events = given
        .submit_events(limit(4, "me", Side::Buy, 1_000, 50))
        .unwrap();
    assert!(matches!(
        events[1],
        BookEvent::Traded(Trade {
            maker_order_id: OrderId(1),
            ..
        })
    ));
    assert!(matches!(
        events[2],
        BookEvent::Ended {
            order_id: OrderId(4),
            reason: EndReason::SelfTradePrevented,
            remaining: Quantity(30),
            ..
        }
    ));
    assert_eq!(events.len(), 3);
    assert_eq!(
        given.remaining(2),
        Some(20),
        "the resting order is untouched"
    );
    assert_eq!(given.remaining(3), Some(20));
    assert_eq!(given.book.best_bid(), None, "the remainder did not rest");
}

// ----- volatility halt -----

#[test]
fn a_trade_outside_the_band_halts_the_market_instead() {
    // Band [900, 1 100] around 1 000.
    let mut given = Given::listed().resting(&[
        limit(1, "m", Side::Sell, 1_100, 20),
        limit(2, "m", Side::Sell, 1_105, 20),
        limit(3, "m", Side::Buy, 800, 20),
    ]);
    let events = given
        .submit_events(limit(4, "t", Side::Buy, 1_200, 50))
        .unwrap();
    assert!(matches!(
        events[1],
        BookEvent::Traded(Trade {
            price: Price(1_100),
            ..
        })
    ));
    assert!(matches!(
        events[2],
        BookEvent::Halted {
            trigger_price: Some(Price(1_105)),
            band: Some(PriceBand {
                low: Price(900),
                high: Price(1_100)
            }),
            ..
        }
    ));
    assert!(matches!(
        events[3],
        BookEvent::Ended {
            reason: EndReason::Halted,
            remaining: Quantity(30),
            ..
        }
    ));
    assert!(given.book.is_halted());
    assert_eq!(
        given.remaining(2),
        Some(20),
        "the trade outside the band did not happen"
    );

    // Halted: submits are refused, cancels are served, resume needs a valid price.
    let refused = given.submit(limit(5, "t", Side::Sell, 1_000, 10));
    assert!(matches!(refused, Err(Error::MarketHalted { .. })));
    assert_eq!(
        given.cancel(3).unwrap(),
        BookReply::Cancelled {
            order_id: OrderId(3),
            remaining: Quantity(20)
        }
    );
    assert!(matches!(
        given.resume(Some(1_001)),
        Err(Error::BadTick { .. })
    ));
    assert!(matches!(given.halt(), Err(Error::MarketHalted { .. })));

    // Resume around the last trade price by default: the band is now [990, 1 210].
    let events = given.resume(None).unwrap();
    assert!(matches!(
        events[..],
        [BookEvent::Resumed {
            reference_price: Some(Price(1_100)),
            ..
        }]
    ));
    let report = given.submit(limit(6, "t", Side::Buy, 1_105, 10)).unwrap();
    assert_eq!(fills(&report.trades), vec![(2, 6, 1_105, 10)]);
}

#[test]
fn resume_takes_a_given_reference_price() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Sell, 1_200, 10)]);
    given.halt().unwrap();
    given.resume(Some(1_200)).unwrap();
    assert_eq!(given.book.reference_price(), Some(Price(1_200)));
    let report = given.submit(limit(2, "t", Side::Buy, 1_200, 10)).unwrap();
    assert_eq!(report.status, OrderStatus::Filled);
}

#[test]
fn an_operator_halts_and_resumes_by_hand() {
    let mut given = Given::listed();
    assert!(matches!(
        given.resume(None),
        Err(Error::MarketNotHalted { .. })
    ));
    let events = given.halt().unwrap();
    assert!(matches!(
        events[..],
        [BookEvent::Halted {
            trigger_price: None,
            band: Some(PriceBand {
                low: Price(900),
                ..
            }),
            ..
        }]
    ));
    assert!(given.book.is_halted());
    let events = given.resume(None).unwrap();
    assert!(matches!(
        events[..],
        [BookEvent::Resumed {
            reference_price: Some(Price(REFERENCE)),
            ..
        }]
    ));
    assert!(!given.book.is_halted());
}

#[test]
fn without_a_listed_reference_the_first_trade_sets_it() {
    let mut given = Given::listed_with(MarketSpec {
        reference_price: None,
        ..spec()
    })
    .resting(&[
        limit(1, "m", Side::Sell, 5_000, 10),
        limit(2, "m", Side::Sell, 6_000, 10),
    ]);
    let report = given.submit(limit(3, "t", Side::Buy, 6_000, 20)).unwrap();
    assert_eq!(fills(&report.trades), vec![(1, 3, 5_000, 10)]);
    assert_eq!(given.book.reference_price(), Some(Price(5_000)));
    assert!(given.book.is_halted(), "6 000 is outside [4 500, 5 500]");
}

// ----- cancels -----

#[test]
fn a_resting_order_is_cancelled_once() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Buy, 1_000, 20)]);
    assert_eq!(
        given.cancel(1).unwrap(),
        BookReply::Cancelled {
            order_id: OrderId(1),
            remaining: Quantity(20)
        }
    );
    assert_eq!(given.book.open_order_count(), 0);
    assert_eq!(
        given.cancel(1),
        Err(Error::OrderAlreadyEnded {
            order_id: OrderId(1)
        })
    );
    assert_eq!(
        given.cancel(99),
        Err(Error::OrderNotFound {
            order_id: OrderId(99)
        })
    );
}

#[test]
fn a_filled_maker_has_already_ended() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Buy, 1_000, 20)]);
    given.submit(limit(2, "t", Side::Sell, 1_000, 20)).unwrap();
    assert_eq!(
        given.cancel(1),
        Err(Error::OrderAlreadyEnded {
            order_id: OrderId(1)
        })
    );
    assert_eq!(
        given.cancel(2),
        Err(Error::OrderAlreadyEnded {
            order_id: OrderId(2)
        })
    );
}

#[test]
fn cancels_in_the_middle_of_a_level_keep_the_queue_in_order() {
    let orders: Vec<OrderSpec> = (1..=100)
        .map(|id| limit(id, "m", Side::Sell, 1_000, 10))
        .collect();
    let mut given = Given::listed().resting(&orders);
    // Enough cancels behind the front to force a compaction of the level.
    for id in (2..=100).filter(|id| id % 4 != 0) {
        given.cancel(id).unwrap();
    }
    let expected: Vec<u64> = std::iter::once(1).chain((4..=100).step_by(4)).collect();
    let resting: Vec<u64> = given
        .book
        .resting_orders(Side::Sell)
        .map(|order| order.order_id.0)
        .collect();
    assert_eq!(resting, expected);
    let report = given.submit(limit(200, "t", Side::Buy, 1_000, 40)).unwrap();
    assert_eq!(
        fills(&report.trades),
        vec![
            (1, 200, 1_000, 10),
            (4, 200, 1_000, 10),
            (8, 200, 1_000, 10),
            (12, 200, 1_000, 10)
        ]
    );
    given.cancel(100).unwrap();
    assert_eq!(
        given.book.depth(1).asks,
        vec![LevelView {
            price: Price(1_000),
            quantity: Quantity(210),
            orders: 21
        }]
    );
}

#[test]
fn cancels_and_halts_travel_in_the_priority_lane() {
    let at = Timestamp(1);
    assert_eq!(
        OrderBook::priority(&BookCommand::Cancel {
            order_id: OrderId(1),
            at
        }),
        Priority::High
    );
    assert_eq!(
        OrderBook::priority(&BookCommand::Halt { at }),
        Priority::High
    );
    let submit = BookCommand::Submit {
        order: limit(1, "a", Side::Buy, 1_000, 10),
        at,
    };
    assert_eq!(OrderBook::priority(&submit), Priority::Normal);
    assert_eq!(
        OrderBook::priority(&BookCommand::Resume {
            reference_price: None,
            at
        }),
        Priority::Normal
    );
}

// ----- ids and numbering -----

#[test]
fn a_reused_order_id_is_a_duplicate() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Buy, 1_000, 20)]);
    let resting_again = limit(1, "m", Side::Buy, 990, 20);
    assert_eq!(
        given.submit(resting_again),
        Err(Error::DuplicateOrder {
            order_id: OrderId(1)
        })
    );
    given
        .submit(with_tif(
            limit(2, "m", Side::Buy, 990, 20),
            TimeInForce::Ioc,
        ))
        .unwrap();
    let ended_again = limit(2, "m", Side::Buy, 990, 20);
    assert_eq!(
        given.submit(ended_again),
        Err(Error::DuplicateOrder {
            order_id: OrderId(2)
        })
    );
}

#[test]
fn the_window_of_ended_orders_is_bounded() {
    let mut book = OrderBook::default();
    book.execute(&BookCommand::List {
        spec: spec(),
        at: Timestamp(0),
    })
    .unwrap();
    let count = RECENTLY_ENDED_ORDERS_MAX as u64 + 1;
    for id in 1..=count {
        let order = market(id, "t", Side::Buy, None, 10);
        book.execute(&BookCommand::Submit {
            order,
            at: Timestamp(1),
        })
        .unwrap();
    }
    // Order 1 was forgotten when order `count` ended; order 2 is still remembered.
    let cancel = |id| BookCommand::Cancel {
        order_id: OrderId(id),
        at: Timestamp(2),
    };
    assert_eq!(
        book.decide(&cancel(1)),
        Err(Error::OrderNotFound {
            order_id: OrderId(1)
        })
    );
    assert_eq!(
        book.decide(&cancel(2)),
        Err(Error::OrderAlreadyEnded {
            order_id: OrderId(2)
        })
    );
    let reused = BookCommand::Submit {
        order: market(1, "t", Side::Buy, None, 10),
        at: Timestamp(3),
    };
    assert!(book.decide(&reused).is_ok());
}

#[test]
fn sequences_and_trade_ids_count_up_from_one() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Sell, 1_000, 20)]);
    let events = given
        .submit_events(limit(2, "t", Side::Buy, 1_000, 10))
        .unwrap();
    assert!(matches!(events[0], BookEvent::Accepted { sequence: 2, .. }));
    let events = given
        .submit_events(limit(3, "t", Side::Buy, 1_000, 10))
        .unwrap();
    assert!(matches!(events[0], BookEvent::Accepted { sequence: 3, .. }));
    assert!(matches!(
        events[1],
        BookEvent::Traded(Trade {
            trade_id: TradeId(2),
            ..
        })
    ));
}

// ----- replies and queries -----

#[test]
fn the_report_tells_what_became_of_the_order() {
    let mut given = Given::listed().resting(&[limit(1, "m", Side::Sell, 1_000, 20)]);
    let report = given.submit(limit(2, "t", Side::Buy, 1_000, 50)).unwrap();
    assert_eq!(report.order_id, OrderId(2));
    assert_eq!(report.status, OrderStatus::PartiallyFilled);
    assert_eq!(report.filled_quantity, Quantity(20));
    assert_eq!(report.resting_quantity, Quantity(30));
    assert_eq!(report.trades.len(), 1);
    let trade = report.trades[0];
    assert_eq!(trade.maker_account_id, account("m"));
    assert_eq!(trade.taker_account_id, account("t"));
    assert_eq!(trade.taker_side, Side::Buy);

    let report = given.submit(limit(3, "x", Side::Buy, 995, 10)).unwrap();
    assert_eq!(
        (
            report.status,
            report.filled_quantity,
            report.resting_quantity
        ),
        (OrderStatus::Open, Quantity(0), Quantity(10))
    );
    let report = given
        .submit(with_tif(
            limit(4, "x", Side::Sell, 1_005, 10),
            TimeInForce::Ioc,
        ))
        .unwrap();
    assert_eq!(
        (report.status, report.resting_quantity),
        (OrderStatus::Cancelled, Quantity(0))
    );
}

#[test]
fn queries_show_the_book_in_priority_order() {
    let given = Given::listed().resting(&[
        limit(1, "a", Side::Buy, 990, 10),
        limit(2, "b", Side::Buy, 995, 20),
        limit(3, "c", Side::Buy, 990, 30),
        limit(4, "d", Side::Sell, 1_010, 40),
    ]);
    let bids: Vec<u64> = given
        .book
        .resting_orders(Side::Buy)
        .map(|order| order.order_id.0)
        .collect();
    assert_eq!(bids, vec![2, 1, 3]);
    let depth = given.book.depth(1);
    assert_eq!(
        depth.bids,
        vec![LevelView {
            price: Price(995),
            quantity: Quantity(20),
            orders: 1
        }]
    );
    assert_eq!(
        depth.asks,
        vec![LevelView {
            price: Price(1_010),
            quantity: Quantity(40),
            orders: 1
        }]
    );
    assert_eq!(given.book.depth(10).bids.len(), 2);
    assert_eq!(
        given.book.resting_order(OrderId(3)),
        Some(RestingOrder {
            order_id: OrderId(3),
            account_id: account("c"),
            side: Side::Buy,
            price: Price(990),
            remaining: Quantity(30),
            sequence: 3,
        })
    );
    assert_eq!(
        (given.book.best_bid(), given.book.best_ask()),
        (Some(Price(995)), Some(Price(1_010)))
    );
}

// ----- properties -----

#[derive(Clone, Debug)]
enum Action {
    Submit {
        side: Side,
        ticks: u64,
        lots: u64,
        account: u8,
        kind: u8,
    },
    Cancel {
        pick: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (any::<bool>(), 0u64..12, 1u64..6, 0u8..4, 0u8..6).prop_map(|(buy, ticks, lots, account, kind)| {
            Action::Submit { side: if buy { Side::Buy } else { Side::Sell }, ticks, lots, account, kind }
        }),
        1 => any::<usize>().prop_map(|pick| Action::Cancel { pick }),
    ]
}

fn order_for(
    id: u64,
    action_side: Side,
    ticks: u64,
    lots: u64,
    account: u8,
    kind: u8,
) -> OrderSpec {
    // Prices 970..=1 025 around the reference, some outside a 2 % band.
    let price = 970 + ticks * 5;
    let owner = format!("acct-{account}");
    let order = limit(id, &owner, action_side, price, lots * 10);
    match kind {
        0 => with_tif(order, TimeInForce::Ioc),
        1 => with_tif(order, TimeInForce::Fok),
        2 => market(id, &owner, action_side, None, lots * 10),
        3 => OrderSpec {
            post_only: true,
            ..order
        },
        _ => order,
    }
}

proptest! {
    #[test]
    fn random_flow_keeps_the_book_consistent(actions in prop::collection::vec(action(), 1..60)) {
        // A narrow band so that halts happen too.
        let mut given = Given::listed_with(MarketSpec { band_bps: 200, ..spec() });
        let mut quantities: FxHashMap<OrderId, Quantity> = FxHashMap::default();
        let mut filled: FxHashMap<OrderId, Quantity> = FxHashMap::default();
        let mut submitted: Vec<u64> = Vec::new();
        for (index, action) in actions.into_iter().enumerate() {
            let id = index as u64 + 1;
            let outcome = match action {
                Action::Submit { side, ticks, lots, account, kind } => {
                    let order = order_for(id, side, ticks, lots, account, kind);
                    if given.book.is_halted() && index % 5 == 0 {
                        given.resume(None).unwrap();
                    }
                    quantities.insert(order.order_id, order.quantity);
                    submitted.push(id);
                    given.submit_events(order)
                }
                Action::Cancel { pick } if !submitted.is_empty() => {
                    let at = given.now();
                    let order_id = OrderId(submitted[pick % submitted.len()]);
                    given.when(BookCommand::Cancel { order_id, at }).map(|(events, _)| events)
                }
                Action::Cancel { .. } => continue,
            };
            let Ok(events) = outcome else { continue };
            for event in &events {
                match event {
                    BookEvent::Traded(trade) => {
                        for order_id in [trade.maker_order_id, trade.taker_order_id] {
                            let total = filled.entry(order_id).or_default();
                            *total = total.checked_add(trade.quantity).unwrap();
                        }
                        prop_assert_eq!(
                            filled[&trade.maker_order_id].checked_add(trade.maker_remaining).unwrap(),
                            quantities[&trade.maker_order_id]
                        );
                        prop_assert_eq!(
                            filled[&trade.taker_order_id].checked_add(trade.taker_remaining).unwrap(),
                            quantities[&trade.taker_order_id]
                        );
                    }
                    BookEvent::Rested { order_id, remaining, .. }
                    | BookEvent::Ended { order_id, remaining, .. } => {
                        let done = filled.get(order_id).copied().unwrap_or_default();
                        prop_assert_eq!(done.checked_add(*remaining).unwrap(), quantities[order_id]);
                    }
                    _ => {}
                }
            }
            // `Given::when` already checked replay == state and not crossed.
            for side in [Side::Buy, Side::Sell] {
                for order in given.book.resting_orders(side) {
                    let done = filled.get(&order.order_id).copied().unwrap_or_default();
                    prop_assert_eq!(done.checked_add(order.remaining).unwrap(), quantities[&order.order_id]);
                }
            }
        }
    }
}

#[test]
fn abandon_cancels_a_resting_order() {
    let mut given = Given::listed().resting(&[limit(1, "maker", Side::Sell, 1_000, 30)]);
    let at = given.now();
    let (events, reply) = given
        .when(BookCommand::Abandon {
            order_id: OrderId(1),
            at,
        })
        .unwrap();
    assert_eq!(end_reason(&events), Some(EndReason::Cancelled));
    assert_eq!(
        reply,
        BookReply::Cancelled {
            order_id: OrderId(1),
            remaining: Quantity(30)
        }
    );
    assert_eq!(given.remaining(1), None);
}

#[test]
fn abandon_blocks_an_order_never_seen_so_its_late_submit_is_refused() {
    let mut given = Given::listed();
    let at = given.now();
    let (events, reply) = given
        .when(BookCommand::Abandon {
            order_id: OrderId(9),
            at,
        })
        .unwrap();
    assert!(matches!(
        events.as_slice(),
        [BookEvent::Blocked {
            order_id: OrderId(9),
            ..
        }]
    ));
    assert_eq!(
        reply,
        BookReply::Blocked {
            order_id: OrderId(9)
        }
    );
    // The submit that the abandon overtook arrives: it must not rest without a hold.
    assert_eq!(
        given.submit(limit(9, "late", Side::Buy, 1_000, 10)),
        Err(Error::DuplicateOrder {
            order_id: OrderId(9)
        })
    );
    assert_eq!(given.book.open_order_count(), 0);
    // A plain cancel of a blocked id is answered precisely.
    assert_eq!(
        given.cancel(9),
        Err(Error::OrderAlreadyEnded {
            order_id: OrderId(9)
        })
    );
}

#[test]
fn abandon_of_an_ended_order_says_so_and_goes_first() {
    let mut given = Given::listed().resting(&[limit(1, "maker", Side::Sell, 1_000, 10)]);
    given
        .submit(limit(2, "taker", Side::Buy, 1_000, 10))
        .unwrap();
    let at = given.now();
    let abandon = BookCommand::Abandon {
        order_id: OrderId(1),
        at,
    };
    assert_eq!(
        given.when(abandon.clone()),
        Err(Error::OrderAlreadyEnded {
            order_id: OrderId(1)
        })
    );
    assert_eq!(OrderBook::priority(&abandon), Priority::High);
}
