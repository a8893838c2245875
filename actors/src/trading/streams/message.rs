//! What the log's events look like on a stream: a pure conversion of each book and account
//! event into the messages of the topics it concerns, serialized once for every subscriber.
//!
//! A message converted from an event carries the event's global offset as its id: a client
//! resumes after the last id it saw and gets every later message of its topic exactly once.
//! State updates (top of book, candles) carry no id: they are conflated, and a resumed
//! client gets the current state again as a snapshot.

use crate::trading::alerts::{ALERT_KIND, ALERTS_STREAM, AlertEvent, alert_codec};
use std::collections::BTreeSet;
use std::sync::Arc;
use tradefloor_domain::rules::Alert;

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
    stored.kind == <OrderBook as Aggregate>::KIND
        || stored.kind == <Account as Aggregate>::KIND
        || (stored.kind == ALERT_KIND && stored.stream == ALERTS_STREAM)
}

/// The topics someone follows: an event is decoded only if it may concern one, and a message
/// serialized only for one (most of the log concerns nobody watching).
#[derive(Clone, Debug, Default)]
pub(super) struct Interest {
    topics: BTreeSet<Topic>,
    /// Some account is followed (a book's events name accounts).
    accounts: bool,
}

impl Interest {
    /// Interest in `topics`.
    pub(super) fn of(topics: impl IntoIterator<Item = Topic>) -> Self {
        let topics: BTreeSet<Topic> = topics.into_iter().collect();
        let accounts = topics
            .iter()
            .any(|topic| matches!(topic, Topic::Account(_)));
        Self { topics, accounts }
    }

    /// Whether nothing is followed.
    pub(super) fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    fn wants(&self, topic: &Topic) -> bool {
        self.topics.contains(topic)
    }

    /// Whether an event of `stream` (of kind `kind`) may make a message someone follows.
    fn may_want(&self, kind: &str, owner: &str) -> bool {
        if kind == ALERT_KIND {
            // An alert names its market or account inside: decoded if anyone listens.
            return !self.is_empty();
        }
        if kind == <OrderBook as Aggregate>::KIND {
            self.accounts
                || Symbol::new(owner).is_ok_and(|symbol| self.wants(&Topic::Market(symbol)))
        } else {
            AccountId::new(owner).is_ok_and(|account| self.wants(&Topic::Account(account)))
        }
    }
}

/// Where an event's messages go: only those of wanted topics are made.
struct Out<'a> {
    interest: &'a Interest,
    messages: &'a mut Vec<Arc<StreamMessage>>,
}

impl Out<'_> {
    fn push(&mut self, id: Option<u64>, topic: Topic, event: &'static str, body: &impl Serialize) {
        if self.interest.wants(&topic) {
            self.messages
                .push(Arc::new(StreamMessage::new(id, topic, event, body)));
        }
    }
}

/// The messages `stored` makes for the topics of `interest` it concerns, appended to `out`.
///
/// # Errors
///
/// If the event cannot be decoded (the codec's error, as text).
pub(super) fn messages_of(
    stored: &StoredEvent,
    interest: &Interest,
    out: &mut Vec<Arc<StreamMessage>>,
) -> Result<(), String> {
    let owner = stored.stream.split_once('|').map_or("", |(_, owner)| owner);
    if !concerns_streams(stored) || !interest.may_want(&stored.kind, owner) {
        return Ok(());
    }
    let first = out.len();
    convert(
        stored,
        owner,
        &mut Out {
            interest,
            messages: out,
        },
    )?;
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

fn convert(stored: &StoredEvent, owner: &str, out: &mut Out<'_>) -> Result<(), String> {
    if stored.kind == ALERT_KIND {
        if let AlertEvent::Raised(alert) = alert_codec()
            .decode(stored)
            .map_err(|error| error.to_string())?
        {
            alert_messages(stored.global_offset, &alert, out);
        }
    } else if stored.kind == <OrderBook as Aggregate>::KIND {
        let Ok(symbol) = Symbol::new(owner) else {
            return Err(format!("{} is not an order book's stream", stored.stream));
        };
        let event = <OrderBook as Persistent>::codec()
            .decode_shared(stored)
            .map_err(|error| error.to_string())?;
        book_messages(stored.global_offset, symbol, &event, out);
    } else {
        let Ok(account) = AccountId::new(owner) else {
            return Err(format!("{} is not an account's stream", stored.stream));
        };
        let event = <Account as Persistent>::codec()
            .decode_shared(stored)
            .map_err(|error| error.to_string())?;
        account_messages(stored.global_offset, account, &event, out);
    }
    Ok(())
}

/// An alert on its market's stream and on its account's.
fn alert_messages(offset: u64, alert: &Alert, out: &mut Out<'_>) {
    let id = Some(offset);
    if let Some(symbol) = alert.symbol.as_deref().and_then(|s| Symbol::new(s).ok()) {
        out.push(id, Topic::Market(symbol), "alert", alert);
    }
    if let Some(account) = alert
        .account
        .as_deref()
        .and_then(|a| AccountId::new(a).ok())
    {
        out.push(id, Topic::Account(account), "alert", alert);
    }
}

fn book_messages(offset: u64, symbol: Symbol, event: &BookEvent, out: &mut Out<'_>) {
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
            out.push(id, topic, "market", &body);
            return;
        }
        BookEvent::Listed { .. } | BookEvent::Blocked { .. } => return,
    };
    let topic = Topic::Account(account);
    out.push(id, topic, "order", &body);
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
fn trade_messages(offset: u64, symbol: Symbol, trade: &Trade, out: &mut Out<'_>) {
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
    out.push(id, Topic::Market(symbol), "trade", &body);
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
        out.push(id, Topic::Account(*account), "fill", &fill);
    }
}

fn account_messages(offset: u64, account: AccountId, event: &AccountEvent, out: &mut Out<'_>) {
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
            out.push(id, topic, "limits", &body);
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
        out.push(id, topic, "balance", &body);
    }
}

#[cfg(test)]
mod tests {
    use tradefloor_domain::{OrderId, Price, Quantity, TradeId};
    use tradefloor_persistence::{Decoded, StoredEvent};

    use super::*;
    use crate::hosting::entity::encode;

    fn stored(offset: u64, stream: &str, event: BookEvent) -> StoredEvent {
        let new = encode::<OrderBook>(&[event]).expect("encodes").remove(0);
        StoredEvent {
            global_offset: offset,
            stream: stream.to_owned(),
            kind: "order_book".to_owned(),
            sequence: 1,
            name: new.name,
            schema_version: new.schema_version,
            payload: new.payload,
            tags: new.tags,
            recorded_at: 0,
            effective_at: 0,
            decoded: Decoded::default(),
        }
    }

    fn trade(maker: &str, taker: &str) -> BookEvent {
        BookEvent::Traded(Trade {
            trade_id: TradeId(7),
            maker_order_id: OrderId(1),
            maker_account_id: AccountId::new(maker).unwrap(),
            taker_order_id: OrderId(2),
            taker_account_id: AccountId::new(taker).unwrap(),
            taker_side: Side::Buy,
            price: Price(100),
            quantity: Quantity(3),
            maker_remaining: Quantity(0),
            taker_remaining: Quantity(1),
            at: Timestamp(5),
        })
    }

    fn topics(messages: &[Arc<StreamMessage>]) -> Vec<(String, &'static str, Option<u64>)> {
        messages
            .iter()
            .map(|message| (message.topic.to_string(), message.event, message.id))
            .collect()
    }

    #[test]
    fn a_trade_makes_a_trade_and_a_fill_per_side_with_distinct_ids() {
        let event = stored(10, "order_book|BTC-USD", trade("alice", "alice"));
        let interest = Interest::of([
            Topic::parse("market:BTC-USD").unwrap(),
            Topic::parse("account:alice").unwrap(),
        ]);
        let mut out = Vec::new();
        messages_of(&event, &interest, &mut out).unwrap();
        assert_eq!(
            topics(&out),
            vec![
                ("market:BTC-USD".to_owned(), "trade", Some(40)),
                ("account:alice".to_owned(), "fill", Some(40)),
                ("account:alice".to_owned(), "fill", Some(41)),
            ]
        );
        assert_eq!(offset_of(41), 10);
        let fill: serde_json::Value = serde_json::from_str(&out[1].data).unwrap();
        assert_eq!(
            (fill["liquidity"].as_str(), fill["side"].as_str()),
            (Some("maker"), Some("sell"))
        );
    }

    #[test]
    fn only_followed_topics_get_messages() {
        let event = stored(10, "order_book|BTC-USD", trade("bob", "alice"));
        let mut out = Vec::new();
        messages_of(
            &event,
            &Interest::of([Topic::parse("account:alice").unwrap()]),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            topics(&out),
            vec![("account:alice".to_owned(), "fill", Some(40))]
        );
        out.clear();
        messages_of(
            &event,
            &Interest::of([Topic::parse("market:ETH-USD").unwrap()]),
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        messages_of(&event, &Interest::default(), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn channels_parse_as_they_print() {
        for channel in ["market:BTC-USD", "account:alice"] {
            assert_eq!(Topic::parse(channel).unwrap().to_string(), channel);
        }
        for bad in ["market:", "weather:today", "account", "account:a b"] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }
}
