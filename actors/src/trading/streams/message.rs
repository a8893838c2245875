//! What the log's events look like on a stream: a pure conversion of each book and account
//! event into the messages of the topics it concerns, serialized once for every subscriber.
//!
//! A message converted from an event carries the event's global offset as its id: a client
//! resumes after the last id it saw and gets every later message of its topic exactly once.
//! State updates (top of book, candles) carry no id: they are conflated, and a resumed
//! client gets the current state again as a snapshot.

use std::sync::Arc;

use serde::Serialize;
use tradefloor_domain::account::{Account, AccountEvent};
use tradefloor_domain::book::{BookDepth, BookEvent, LevelView, OrderBook, Trade};
use tradefloor_domain::{AccountId, Aggregate, Side, Symbol, Timestamp};
use tradefloor_persistence::StoredEvent;

use super::Topic;
use crate::hosting::entity::Persistent;
use crate::trading::projections::candles::{Candle, CandleInterval};
use crate::trading::projections::orders::end_reason_name;

/// Most messages one event makes for one topic (a trade between two orders of one account
/// makes two fills; a settled trade moves two balances): a message's id is its event's
/// offset times this, plus its rank among them.
pub const PARTS_PER_EVENT: u64 = 4;

/// The id of the `part`-th message `offset`'s event makes for one topic.
pub fn message_id(offset: u64, part: u64) -> u64 {
    assert!(
        part < PARTS_PER_EVENT,
        "an event makes at most {PARTS_PER_EVENT} messages per topic"
    );
    offset.saturating_mul(PARTS_PER_EVENT) + part
}

/// The offset of the event message `id` was made from.
pub fn offset_of(id: u64) -> u64 {
    id / PARTS_PER_EVENT
}

/// One message of a stream, built once and shared by every subscriber of its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessage {
    /// A cursor a client resumes after: [`message_id`] of the event it was made from (ids
    /// grow with the log); `None` for a conflated state update.
    pub id: Option<u64>,
    /// Its topic.
    pub topic: Topic,
    /// What it says: `trade`, `market`, `top`, `candle`, `order`, `fill`, `balance`, `limits`.
    pub event: &'static str,
    /// Its body, JSON.
    pub data: Arc<str>,
}

impl StreamMessage {
    /// A message of `topic` with `body` serialized.
    pub fn new(id: Option<u64>, topic: Topic, event: &'static str, body: &impl Serialize) -> Self {
        let data = serde_json::to_string(body).expect("stream bodies serialize");
        Self {
            id,
            topic,
            event,
            data: data.into(),
        }
    }
}

/// `top` on a market's stream: its best bid and ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopBody {
    symbol: String,
    bid: Option<LevelBody>,
    ask: Option<LevelBody>,
}

/// One side's best level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
struct LevelBody {
    price: u64,
    quantity: u64,
    orders: usize,
}

impl TopBody {
    /// The top of `depth`, `symbol`'s book.
    pub fn of(symbol: Symbol, depth: &BookDepth) -> Self {
        let level = |level: &LevelView| LevelBody {
            price: level.price.get(),
            quantity: level.quantity.get(),
            orders: level.orders,
        };
        Self {
            symbol: symbol.to_string(),
            bid: depth.bids.first().map(level),
            ask: depth.asks.first().map(level),
        }
    }
}

/// `candle` on a market's stream.
#[derive(Serialize)]
pub struct CandleBody<'a> {
    symbol: &'a str,
    interval: &'static str,
    start: i64,
    open: u64,
    high: u64,
    low: u64,
    close: u64,
    volume: u64,
    vwap: u64,
    trades: u64,
    /// Its bucket has passed: this is its final value.
    closed: bool,
}

impl<'a> CandleBody<'a> {
    /// `candle` of `symbol` and `interval`, final if `closed`.
    pub fn new(
        symbol: &'a Symbol,
        interval: CandleInterval,
        candle: &Candle,
        closed: bool,
    ) -> Self {
        Self {
            symbol: symbol.as_str(),
            interval: interval.name(),
            start: candle.start.micros(),
            open: candle.open.get(),
            high: candle.high.get(),
            low: candle.low.get(),
            close: candle.close.get(),
            volume: candle.volume.get(),
            vwap: candle.vwap.get(),
            trades: candle.trades,
            closed,
        }
    }
}

/// `trade` on a market's stream.
#[derive(Serialize)]
struct TradeBody<'a> {
    symbol: &'a str,
    trade_id: u64,
    maker_order_id: u64,
    taker_order_id: u64,
    taker_side: Side,
    price: u64,
    quantity: u64,
    at: i64,
}

/// `market` on a market's stream: trading halted or resumed.
#[derive(Serialize)]
struct MarketBody<'a> {
    symbol: &'a str,
    status: &'static str,
    at: i64,
}

/// `order` on an account's stream: the book accepted, rested or ended one of its orders.
#[derive(Serialize)]
struct OrderBody<'a> {
    account_id: &'a str,
    order_id: u64,
    symbol: &'a str,
    /// `accepted`, `rested` or `ended`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    side: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    at: i64,
}

/// `fill` on an account's stream: one of its orders traded.
#[derive(Serialize)]
struct FillBody<'a> {
    account_id: &'a str,
    order_id: u64,
    symbol: &'a str,
    trade_id: u64,
    side: Side,
    /// `maker` or `taker`.
    liquidity: &'static str,
    price: u64,
    quantity: u64,
    remaining: u64,
    at: i64,
}

/// `balance` on an account's stream: how one event moved one balance.
#[derive(Serialize)]
struct BalanceBody<'a> {
    account_id: &'a str,
    asset: &'a str,
    total_change: i128,
    held_change: i128,
    /// The event: `deposited`, `withdrawn`, `hold_placed`, `trade_settled`, `hold_released`.
    cause: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trade_id: Option<u64>,
    at: i64,
}

/// `limits` on an account's stream: its risk limits changed.
#[derive(Serialize)]
struct LimitsBody<'a> {
    account_id: &'a str,
    limits: &'a tradefloor_domain::account::RiskLimits,
    at: i64,
}

/// Whether `stored` can make a stream message: an order book's or an account's event.
pub(super) fn concerns_streams(stored: &StoredEvent) -> bool {
    stored.kind == <OrderBook as Aggregate>::KIND || stored.kind == <Account as Aggregate>::KIND
}

/// The messages `stored` makes, for every topic it concerns, appended to `out`.
///
/// # Errors
///
/// If the event cannot be decoded (the codec's error, as text).
pub(super) fn messages_of(
    stored: &StoredEvent,
    out: &mut Vec<Arc<StreamMessage>>,
) -> Result<(), String> {
    let first = out.len();
    convert(stored, out)?;
    // Ids: the event's offset and each message's rank among those of its topic.
    let made = &mut out[first..];
    for index in 0..made.len() {
        let part = made[..index]
            .iter()
            .filter(|earlier| earlier.topic == made[index].topic)
            .count() as u64;
        let message = Arc::make_mut(&mut made[index]);
        message.id = Some(message_id(stored.global_offset, part));
    }
    Ok(())
}

fn convert(stored: &StoredEvent, out: &mut Vec<Arc<StreamMessage>>) -> Result<(), String> {
    if stored.kind == <OrderBook as Aggregate>::KIND {
        let Some(symbol) = stored
            .stream
            .split_once('|')
            .and_then(|(_, id)| Symbol::new(id).ok())
        else {
            return Err(format!("{} is not an order book's stream", stored.stream));
        };
        let event = <OrderBook as Persistent>::codec()
            .decode(stored)
            .map_err(|error| error.to_string())?;
        book_messages(stored.global_offset, symbol, &event, out);
    } else if stored.kind == <Account as Aggregate>::KIND {
        let Some(account) = stored
            .stream
            .split_once('|')
            .and_then(|(_, id)| AccountId::new(id).ok())
        else {
            return Err(format!("{} is not an account's stream", stored.stream));
        };
        let event = <Account as Persistent>::codec()
            .decode(stored)
            .map_err(|error| error.to_string())?;
        account_messages(stored.global_offset, account, &event, out);
    }
    Ok(())
}

fn book_messages(
    offset: u64,
    symbol: Symbol,
    event: &BookEvent,
    out: &mut Vec<Arc<StreamMessage>>,
) {
    let id = Some(offset);
    let (account, body) = match event {
        BookEvent::Accepted {
            order: spec, at, ..
        } => (
            spec.account_id,
            OrderBody {
                side: Some(spec.side),
                price: spec.price.map(|price| price.get()),
                quantity: Some(spec.quantity.get()),
                ..OrderBody::new(&spec.account_id, &symbol, spec.order_id.0, "accepted", at)
            },
        ),
        BookEvent::Rested {
            order_id,
            account_id,
            side,
            price,
            remaining,
            at,
            ..
        } => (
            *account_id,
            OrderBody {
                side: Some(*side),
                price: Some(price.get()),
                remaining: Some(remaining.get()),
                ..OrderBody::new(account_id, &symbol, order_id.0, "rested", at)
            },
        ),
        BookEvent::Ended {
            order_id,
            account_id,
            reason,
            remaining,
            at,
        } => (
            *account_id,
            OrderBody {
                remaining: Some(remaining.get()),
                reason: Some(end_reason_name(*reason)),
                ..OrderBody::new(account_id, &symbol, order_id.0, "ended", at)
            },
        ),
        BookEvent::Traded(trade) => return trade_messages(offset, symbol, trade, out),
        BookEvent::Halted { at, .. } | BookEvent::Resumed { at, .. } => {
            let status = if matches!(event, BookEvent::Halted { .. }) {
                "halted"
            } else {
                "trading"
            };
            let body = MarketBody {
                symbol: symbol.as_str(),
                status,
                at: at.micros(),
            };
            let topic = Topic::Market(symbol);
            out.push(Arc::new(StreamMessage::new(id, topic, "market", &body)));
            return;
        }
        BookEvent::Listed { .. } | BookEvent::Blocked { .. } => return,
    };
    let topic = Topic::Account(account);
    out.push(Arc::new(StreamMessage::new(id, topic, "order", &body)));
}

impl<'a> OrderBody<'a> {
    fn new(
        account: &'a AccountId,
        symbol: &'a Symbol,
        order_id: u64,
        status: &'static str,
        at: &Timestamp,
    ) -> Self {
        Self {
            account_id: account.as_str(),
            order_id,
            symbol: symbol.as_str(),
            status,
            side: None,
            price: None,
            quantity: None,
            remaining: None,
            reason: None,
            at: at.micros(),
        }
    }
}

/// A trade on its market's stream and a fill on each side's account stream.
fn trade_messages(offset: u64, symbol: Symbol, trade: &Trade, out: &mut Vec<Arc<StreamMessage>>) {
    let id = Some(offset);
    let body = TradeBody {
        symbol: symbol.as_str(),
        trade_id: trade.trade_id.0,
        maker_order_id: trade.maker_order_id.0,
        taker_order_id: trade.taker_order_id.0,
        taker_side: trade.taker_side,
        price: trade.price.get(),
        quantity: trade.quantity.get(),
        at: trade.at.micros(),
    };
    out.push(Arc::new(StreamMessage::new(
        id,
        Topic::Market(symbol),
        "trade",
        &body,
    )));
    let maker_side = trade.taker_side.opposite();
    let legs = [
        (
            &trade.maker_account_id,
            trade.maker_order_id,
            maker_side,
            "maker",
            trade.maker_remaining,
        ),
        (
            &trade.taker_account_id,
            trade.taker_order_id,
            trade.taker_side,
            "taker",
            trade.taker_remaining,
        ),
    ];
    for (account, order_id, side, liquidity, remaining) in legs {
        let fill = FillBody {
            account_id: account.as_str(),
            order_id: order_id.0,
            symbol: symbol.as_str(),
            trade_id: trade.trade_id.0,
            side,
            liquidity,
            price: trade.price.get(),
            quantity: trade.quantity.get(),
            remaining: remaining.get(),
            at: trade.at.micros(),
        };
        out.push(Arc::new(StreamMessage::new(
            id,
            Topic::Account(*account),
            "fill",
            &fill,
        )));
    }
}

fn account_messages(
    offset: u64,
    account: AccountId,
    event: &AccountEvent,
    out: &mut Vec<Arc<StreamMessage>>,
) {
    let id = Some(offset);
    let topic = Topic::Account(account);
    let (cause, order_id, trade_id, at) = match event {
        AccountEvent::Deposited { at, .. } => ("deposited", None, None, at),
        AccountEvent::Withdrawn { at, .. } => ("withdrawn", None, None, at),
        AccountEvent::HoldPlaced { order_id, at, .. } => {
            ("hold_placed", Some(order_id.0), None, at)
        }
        AccountEvent::TradeSettled {
            order_id,
            trade_id,
            at,
            ..
        } => ("trade_settled", Some(order_id.0), Some(trade_id.0), at),
        AccountEvent::HoldReleased { order_id, at, .. } => {
            ("hold_released", Some(order_id.0), None, at)
        }
        AccountEvent::RiskLimitsSet { limits, at, .. } => {
            let body = LimitsBody {
                account_id: account.as_str(),
                limits,
                at: at.micros(),
            };
            out.push(Arc::new(StreamMessage::new(id, topic, "limits", &body)));
            return;
        }
    };
    // A release of nothing (the order used its whole hold) moves no balance.
    for change in event
        .balance_changes()
        .filter(|change| change.total != 0 || change.held != 0)
    {
        let body = BalanceBody {
            account_id: account.as_str(),
            asset: change.asset.as_str(),
            total_change: change.total,
            held_change: change.held,
            cause,
            order_id,
            trade_id,
            at: at.micros(),
        };
        out.push(Arc::new(StreamMessage::new(id, topic, "balance", &body)));
    }
}
