//! The order book aggregate, one per market: price–time priority matching.
//!
//! An incoming order trades against the opposite side, best price first and, within a price,
//! oldest first; trades print at the resting (maker) price. What is left of a limit GTC order
//! rests; what is left of anything else ends. On the way:
//!
//! - **Self-trade prevention** (cancel newest): when the next maker belongs to the incoming
//!   order's account, matching stops and the incoming remainder ends; earlier trades stand and
//!   the resting order is untouched.
//! - **Volatility halt**: a trade may print only inside [`MarketSpec::band_around`] the
//!   reference price (set at listing, else by the first trade, and again on resume). A trade
//!   outside it does not happen: the market halts and the incoming remainder ends. A halted
//!   market refuses submits and still serves cancels.
//! - **FOK** is refused without events unless it fills completely under those same rules;
//!   **post-only** is refused if it would trade on arrival.
//!
//! A submit decides `Accepted`, then one `Traded` per trade, then (when the band stopped it)
//! `Halted`, then exactly one of `Rested` or `Ended`. The book remembers a bounded window
//! ([`RECENTLY_ENDED_ORDERS_MAX`]) of ended order ids, to refuse reused ids and to tell a late
//! cancel that the order has already ended.
//!
//! ```
//! use tradefloor_domain::book::{BookCommand, BookReply, OrderBook};
//! use tradefloor_domain::{
//!     AccountId, Aggregate, Asset, MarketSpec, OrderId, OrderSpec, OrderStatus, OrderType,
//!     Price, Quantity, Side, Symbol, TimeInForce, Timestamp,
//! };
//!
//! let spec = MarketSpec {
//!     symbol: Symbol::new("BTC-USD").unwrap(),
//!     base: Asset::new("BTC").unwrap(),
//!     quote: Asset::new("USD").unwrap(),
//!     tick_size: Price(1),
//!     lot_size: Quantity(1),
//!     min_quantity: Quantity(1),
//!     max_quantity: Quantity(1_000),
//!     band_bps: 1_000,
//!     reference_price: Some(Price(100)),
//! };
//! let order = |id, account, side, price, quantity| OrderSpec {
//!     order_id: OrderId(id),
//!     account_id: AccountId::new(account).unwrap(),
//!     side,
//!     order_type: OrderType::Limit,
//!     price: Some(Price(price)),
//!     quantity: Quantity(quantity),
//!     time_in_force: TimeInForce::Gtc,
//!     post_only: false,
//! };
//! let mut book = OrderBook::default();
//! book.execute(&BookCommand::List { spec, at: Timestamp(1) }).unwrap();
//! let sell = order(1, "alice", Side::Sell, 101, 5);
//! book.execute(&BookCommand::Submit { order: sell, at: Timestamp(2) }).unwrap();
//! let buy = order(2, "bob", Side::Buy, 102, 3);
//! let (_events, reply) = book.execute(&BookCommand::Submit { order: buy, at: Timestamp(3) }).unwrap();
//! let BookReply::Order(report) = reply else { unreachable!() };
//! assert_eq!(report.status, OrderStatus::Filled);
//! assert_eq!(report.trades[0].price, Price(101)); // the maker's price
//! assert_eq!(book.resting_order(OrderId(1)).unwrap().remaining, Quantity(2));
//! ```

pub mod command;
mod ended;
pub mod event;
mod ladder;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Priority};
use crate::error::Error;
use crate::ids::{AccountId, OrderId, TradeId};
use crate::market::{MarketSpec, PriceBand};
use crate::order::{OrderSpec, OrderStatus, OrderType, Side, TimeInForce};
use crate::units::{Price, Quantity, Timestamp};

pub use command::{BookCommand, BookReply, OrderReport};
pub use event::{BookEvent, EndReason, Trade};

use ended::RecentlyEnded;
use ladder::{Ladder, minus};

/// How many ended order ids a book remembers (oldest forgotten first). Within the window a
/// reused order id is refused as a duplicate and a cancel gets [`Error::OrderAlreadyEnded`];
/// beyond it, [`Error::OrderNotFound`]. Costs about 24 bytes per id.
pub const RECENTLY_ENDED_ORDERS_MAX: usize = 65_536;

/// The order book of one market. Starts unlisted; see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBook {
    spec: Option<MarketSpec>,
    halted: bool,
    /// Centre of the volatility band; `None` until listing or the first trade sets it.
    reference_price: Option<Price>,
    /// `band_around(reference_price)`, kept so matching does not recompute it per level.
    band: Option<PriceBand>,
    last_price: Option<Price>,
    /// Sequence of the last accepted order (sequences start at 1).
    last_sequence: u64,
    /// Id of the last trade (trade ids start at 1).
    last_trade_id: u64,
    ladder: Ladder,
    recently_ended: RecentlyEnded,
    /// The order being matched, between its `Accepted` and its `Rested` or `Ended`. Always
    /// `None` between commands.
    incoming: Option<Incoming>,
}

/// An accepted order on its way through matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Incoming {
    order: OrderSpec,
    sequence: u64,
    remaining: Quantity,
}

/// An order resting on the book, as queries see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestingOrder {
    /// The order.
    pub order_id: OrderId,
    /// Its owner.
    pub account_id: AccountId,
    /// Its side.
    pub side: Side,
    /// Its limit price.
    pub price: Price,
    /// Quantity still to fill.
    pub remaining: Quantity,
    /// Its arrival sequence (time priority within the price).
    pub sequence: u64,
}

/// The aggregated top of the book, best price first on each side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookDepth {
    /// Buy levels, highest price first.
    pub bids: Vec<LevelView>,
    /// Sell levels, lowest price first.
    pub asks: Vec<LevelView>,
}

/// One price level of [`BookDepth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelView {
    /// The price.
    pub price: Price,
    /// Total quantity resting at it.
    pub quantity: Quantity,
    /// Number of orders resting at it.
    pub orders: usize,
}

/// Why matching an incoming order stopped.
enum Stop {
    /// Filled, or no more liquidity at acceptable prices.
    Exhausted,
    /// The next maker belongs to the incoming order's account.
    SelfTrade,
    /// The next trade would print at `price`, outside `band`.
    Band { price: Price, band: PriceBand },
}

impl OrderBook {
    /// The market's definition, once listed.
    pub fn spec(&self) -> Option<&MarketSpec> {
        self.spec.as_ref()
    }

    /// Whether trading is halted (submits refused, cancels served).
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// The centre of the volatility band, if set yet.
    pub fn reference_price(&self) -> Option<Price> {
        self.reference_price
    }

    /// The price of the last trade, if any.
    pub fn last_price(&self) -> Option<Price> {
        self.last_price
    }

    /// The highest resting buy price.
    pub fn best_bid(&self) -> Option<Price> {
        self.ladder.best_price(Side::Buy)
    }

    /// The lowest resting sell price.
    pub fn best_ask(&self) -> Option<Price> {
        self.ladder.best_price(Side::Sell)
    }

    /// Whether the best bid reaches the best ask. Never true between commands: an order that
    /// could trade does, or does not rest.
    pub fn is_crossed(&self) -> bool {
        match (self.best_bid(), self.best_ask()) {
            (Some(bid), Some(ask)) => bid >= ask,
            _ => false,
        }
    }

    /// Up to `levels` price levels per side, best first.
    pub fn depth(&self, levels: usize) -> BookDepth {
        let side = |side| {
            self.ladder
                .levels_best_first(side)
                .take(levels)
                .map(|level| LevelView {
                    price: level.price(),
                    quantity: level.quantity(),
                    orders: level.order_count(),
                })
                .collect()
        };
        BookDepth {
            bids: side(Side::Buy),
            asks: side(Side::Sell),
        }
    }

    /// The order `order_id` if it rests on the book.
    pub fn resting_order(&self, order_id: OrderId) -> Option<RestingOrder> {
        self.ladder.get(order_id)
    }

    /// The resting orders of `side` in matching priority: best price first, then arrival.
    pub fn resting_orders(&self, side: Side) -> impl Iterator<Item = RestingOrder> + '_ {
        self.ladder.orders(side)
    }

    /// Number of orders resting on both sides.
    pub fn open_order_count(&self) -> usize {
        self.ladder.order_count()
    }

    fn listed_spec(&self) -> Result<&MarketSpec, Error> {
        // A book does not know its own symbol before listing; the host that routed the
        // command does, and can report it as `UnknownMarket`.
        self.spec.as_ref().ok_or(Error::MarketNotListed)
    }

    fn decide_list(
        &self,
        spec: &MarketSpec,
        at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Error> {
        if let Some(listed) = &self.spec {
            return Err(Error::MarketAlreadyListed {
                symbol: listed.symbol,
            });
        }
        spec.validate()?;
        events.push(BookEvent::Listed {
            spec: spec.clone(),
            at,
        });
        Ok(())
    }

    fn decide_submit(
        &self,
        order: &OrderSpec,
        at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Error> {
        let spec = self.listed_spec()?;
        order.validate(spec)?;
        if self.halted {
            return Err(Error::MarketHalted {
                symbol: spec.symbol,
            });
        }
        if self.ladder.contains(order.order_id) || self.recently_ended.contains(order.order_id) {
            return Err(Error::DuplicateOrder {
                order_id: order.order_id,
            });
        }
        if order.post_only
            && self
                .ladder
                .best_price(order.side.opposite())
                .is_some_and(|best| order.accepts(best))
        {
            return Err(Error::PostOnlyWouldCross);
        }
        let sequence = self.last_sequence.checked_add(1).ok_or(Error::Overflow)?;
        let start = events.len();
        events.push(BookEvent::Accepted {
            order: *order,
            sequence,
            at,
        });
        let (remaining, stop) = self.match_incoming(spec, order, at, events)?;
        if order.time_in_force == TimeInForce::Fok && !remaining.is_zero() {
            // Nothing of a FOK happens unless all of it does, halts included.
            events.truncate(start);
            return Err(Error::FokNotFillable);
        }
        let end = |reason| BookEvent::Ended {
            order_id: order.order_id,
            account_id: order.account_id,
            reason,
            remaining,
            at,
        };
        let last = match stop {
            Stop::SelfTrade => end(EndReason::SelfTradePrevented),
            Stop::Band { price, band } => {
                events.push(BookEvent::Halted {
                    trigger_price: Some(price),
                    band: Some(band),
                    at,
                });
                end(EndReason::Halted)
            }
            Stop::Exhausted if remaining.is_zero() => end(EndReason::Filled),
            Stop::Exhausted
                if order.order_type == OrderType::Limit
                    && order.time_in_force == TimeInForce::Gtc =>
            {
                // The side's total bounds every level's, so the level cannot overflow either.
                self.ladder
                    .side_quantity(order.side)
                    .checked_add(remaining)?;
                BookEvent::Rested {
                    order_id: order.order_id,
                    account_id: order.account_id,
                    side: order.side,
                    price: order.price.expect("validated: a limit order has a price"),
                    remaining,
                    sequence,
                    at,
                }
            }
            Stop::Exhausted => end(EndReason::Expired),
        };
        events.push(last);
        Ok(())
    }

    /// Walks the opposite side read-only, pushing the trades `order` makes, and returns what
    /// is left of it and why matching stopped.
    fn match_incoming(
        &self,
        spec: &MarketSpec,
        order: &OrderSpec,
        at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Result<(Quantity, Stop), Error> {
        let mut remaining = order.quantity;
        let mut last_trade_id = self.last_trade_id;
        let mut band = self.band;
        for level in self.ladder.levels_best_first(order.side.opposite()) {
            let price = level.price();
            if !order.accepts(price) {
                break;
            }
            // With no reference yet, the first trade sets it and is inside its own band; the
            // band only moves on resume, so one check per level suffices.
            let outside_band = band.filter(|band| !band.contains(price));
            for maker in level.live_slots() {
                if maker.account_id == order.account_id {
                    return Ok((remaining, Stop::SelfTrade));
                }
                if let Some(band) = outside_band {
                    return Ok((remaining, Stop::Band { price, band }));
                }
                let quantity = remaining.min(maker.remaining);
                remaining = minus(remaining, quantity);
                last_trade_id = last_trade_id.checked_add(1).ok_or(Error::Overflow)?;
                band.get_or_insert_with(|| spec.band_around(price));
                events.push(BookEvent::Traded(Trade {
                    trade_id: TradeId(last_trade_id),
                    maker_order_id: maker.order_id,
                    maker_account_id: maker.account_id,
                    taker_order_id: order.order_id,
                    taker_account_id: order.account_id,
                    taker_side: order.side,
                    price,
                    quantity,
                    maker_remaining: minus(maker.remaining, quantity),
                    taker_remaining: remaining,
                    at,
                }));
                if remaining.is_zero() {
                    return Ok((remaining, Stop::Exhausted));
                }
            }
        }
        Ok((remaining, Stop::Exhausted))
    }

    fn decide_cancel(
        &self,
        order_id: OrderId,
        at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Error> {
        self.listed_spec()?;
        let Some(order) = self.ladder.get(order_id) else {
            return Err(if self.recently_ended.contains(order_id) {
                Error::OrderAlreadyEnded { order_id }
            } else {
                Error::OrderNotFound { order_id }
            });
        };
        events.push(BookEvent::Ended {
            order_id,
            account_id: order.account_id,
            reason: EndReason::Cancelled,
            remaining: order.remaining,
            at,
        });
        Ok(())
    }

    fn decide_abandon(
        &self,
        order_id: OrderId,
        at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Error> {
        match self.decide_cancel(order_id, at, events) {
            Err(Error::OrderNotFound { .. }) => {
                events.push(BookEvent::Blocked { order_id, at });
                Ok(())
            }
            other => other,
        }
    }

    fn decide_halt(&self, at: Timestamp, events: &mut Vec<BookEvent>) -> Result<(), Error> {
        let spec = self.listed_spec()?;
        if self.halted {
            return Err(Error::MarketHalted {
                symbol: spec.symbol,
            });
        }
        events.push(BookEvent::Halted {
            trigger_price: None,
            band: self.band,
            at,
        });
        Ok(())
    }

    fn decide_resume(
        &self,
        reference_price: Option<Price>,
        at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Error> {
        let spec = self.listed_spec()?;
        if !self.halted {
            return Err(Error::MarketNotHalted {
                symbol: spec.symbol,
            });
        }
        if let Some(price) = reference_price {
            spec.validate_price(price)?;
        }
        let reference_price = reference_price.or(self.last_price).or(self.reference_price);
        events.push(BookEvent::Resumed {
            reference_price,
            at,
        });
        Ok(())
    }

    fn apply_accepted(&mut self, order: &OrderSpec, sequence: u64) {
        assert!(self.spec.is_some(), "orders arrive on listed books");
        assert!(self.incoming.is_none(), "one order is matched at a time");
        assert_eq!(
            Some(sequence),
            self.last_sequence.checked_add(1),
            "sequences count up by one"
        );
        self.last_sequence = sequence;
        self.incoming = Some(Incoming {
            order: *order,
            sequence,
            remaining: order.quantity,
        });
    }

    fn apply_traded(&mut self, trade: &Trade) {
        let incoming = self
            .incoming
            .as_mut()
            .expect("a trade belongs to the incoming order");
        assert_eq!(incoming.order.order_id, trade.taker_order_id);
        assert_eq!(incoming.order.side, trade.taker_side);
        assert!(!trade.quantity.is_zero(), "trades move something");
        incoming.remaining = minus(incoming.remaining, trade.quantity);
        assert_eq!(incoming.remaining, trade.taker_remaining);
        assert_eq!(
            Some(trade.trade_id.0),
            self.last_trade_id.checked_add(1),
            "trade ids count up"
        );
        self.ladder.fill_front(trade);
        if trade.maker_remaining.is_zero() {
            self.recently_ended.push(trade.maker_order_id);
        }
        self.last_trade_id = trade.trade_id.0;
        self.last_price = Some(trade.price);
        if self.reference_price.is_none() {
            self.set_reference_price(Some(trade.price));
        }
    }

    fn set_reference_price(&mut self, reference_price: Option<Price>) {
        let spec = self
            .spec
            .as_ref()
            .expect("only a listed book has a reference price");
        self.reference_price = reference_price;
        self.band = reference_price.map(|reference| spec.band_around(reference));
    }

    fn apply_rested(&mut self, order: RestingOrder) {
        let incoming = self.incoming.take().expect("only the incoming order rests");
        assert_eq!(incoming.order.order_id, order.order_id);
        assert_eq!(incoming.sequence, order.sequence);
        assert_eq!(incoming.remaining, order.remaining);
        self.ladder.insert(order);
        assert!(!self.is_crossed(), "a resting order never crosses the book");
    }

    fn apply_ended(&mut self, order_id: OrderId, reason: EndReason, remaining: Quantity) {
        match self
            .incoming
            .take_if(|incoming| incoming.order.order_id == order_id)
        {
            Some(incoming) => {
                assert_eq!(incoming.remaining, remaining);
                assert_eq!(reason == EndReason::Filled, remaining.is_zero());
            }
            None => {
                assert_eq!(
                    reason,
                    EndReason::Cancelled,
                    "only a cancel ends a resting order"
                );
                let cancelled = self
                    .ladder
                    .remove(order_id)
                    .expect("a cancelled order rests");
                assert_eq!(cancelled.remaining, remaining);
            }
        }
        self.recently_ended.push(order_id);
    }
}

impl Aggregate for OrderBook {
    const KIND: &'static str = "order_book";
    type Command = BookCommand;
    type Event = BookEvent;
    type Reply = BookReply;

    fn decide_into(&self, command: &BookCommand, events: &mut Vec<BookEvent>) -> Result<(), Error> {
        match command {
            BookCommand::List { spec, at } => self.decide_list(spec, *at, events),
            BookCommand::Submit { order, at } => self.decide_submit(order, *at, events),
            BookCommand::Cancel { order_id, at } => self.decide_cancel(*order_id, *at, events),
            BookCommand::Abandon { order_id, at } => self.decide_abandon(*order_id, *at, events),
            BookCommand::Halt { at } => self.decide_halt(*at, events),
            BookCommand::Resume {
                reference_price,
                at,
            } => self.decide_resume(*reference_price, *at, events),
        }
    }

    fn apply(&mut self, event: &BookEvent) {
        match event {
            BookEvent::Listed { spec, .. } => {
                assert!(self.spec.is_none(), "a book is listed once");
                self.spec = Some(spec.clone());
                self.set_reference_price(spec.reference_price);
            }
            BookEvent::Accepted {
                order, sequence, ..
            } => self.apply_accepted(order, *sequence),
            BookEvent::Traded(trade) => self.apply_traded(trade),
            BookEvent::Rested {
                order_id,
                account_id,
                side,
                price,
                remaining,
                sequence,
                ..
            } => {
                self.apply_rested(RestingOrder {
                    order_id: *order_id,
                    account_id: *account_id,
                    side: *side,
                    price: *price,
                    remaining: *remaining,
                    sequence: *sequence,
                });
            }
            BookEvent::Ended {
                order_id,
                reason,
                remaining,
                ..
            } => {
                self.apply_ended(*order_id, *reason, *remaining);
            }
            BookEvent::Blocked { order_id, .. } => self.recently_ended.push(*order_id),
            BookEvent::Halted { .. } => self.halted = true,
            BookEvent::Resumed {
                reference_price, ..
            } => {
                self.halted = false;
                self.set_reference_price(*reference_price);
            }
        }
    }

    fn reply(&self, command: &BookCommand, events: &[BookEvent]) -> BookReply {
        match command {
            BookCommand::List { .. } => BookReply::Listed,
            BookCommand::Submit { order, .. } => {
                BookReply::Order(order_report(order.order_id, events))
            }
            BookCommand::Abandon { order_id, .. }
                if matches!(events, [BookEvent::Blocked { .. }]) =>
            {
                BookReply::Blocked {
                    order_id: *order_id,
                }
            }
            BookCommand::Cancel { order_id, .. } | BookCommand::Abandon { order_id, .. } => {
                let remaining = events
                    .iter()
                    .find_map(|event| match event {
                        BookEvent::Ended {
                            order_id: ended,
                            remaining,
                            ..
                        } if ended == order_id => Some(*remaining),
                        _ => None,
                    })
                    .expect("a cancel ends its order");
                BookReply::Cancelled {
                    order_id: *order_id,
                    remaining,
                }
            }
            BookCommand::Halt { .. } => BookReply::Halted,
            BookCommand::Resume { .. } => BookReply::Resumed,
        }
    }

    fn priority(command: &BookCommand) -> Priority {
        match command {
            BookCommand::Cancel { .. } | BookCommand::Abandon { .. } | BookCommand::Halt { .. } => {
                Priority::High
            }
            BookCommand::List { .. } | BookCommand::Submit { .. } | BookCommand::Resume { .. } => {
                Priority::Normal
            }
        }
    }
}

/// What became of a submitted order, read off the events its submit decided.
fn order_report(order_id: OrderId, events: &[BookEvent]) -> OrderReport {
    let trades: Vec<Trade> = events
        .iter()
        .filter_map(|event| match event {
            BookEvent::Traded(trade) => Some(*trade),
            _ => None,
        })
        .collect();
    let filled_quantity = trades
        .iter()
        .try_fold(Quantity::ZERO, |filled, trade| {
            filled.checked_add(trade.quantity)
        })
        .expect("fills never exceed the order's quantity");
    let (status, resting_quantity) = match events.last() {
        Some(BookEvent::Rested { remaining, .. }) if filled_quantity.is_zero() => {
            (OrderStatus::Open, *remaining)
        }
        Some(BookEvent::Rested { remaining, .. }) => (OrderStatus::PartiallyFilled, *remaining),
        Some(BookEvent::Ended {
            reason: EndReason::Filled,
            ..
        }) => (OrderStatus::Filled, Quantity::ZERO),
        Some(BookEvent::Ended { .. }) => (OrderStatus::Cancelled, Quantity::ZERO),
        other => panic!("a submit's events end with Rested or Ended, not {other:?}"),
    };
    OrderReport {
        order_id,
        status,
        filled_quantity,
        resting_quantity,
        trades,
    }
}
