//! Live streams for clients: a market's trades, top of book and candles; an account's
//! orders, fills and balance changes.
//!
//! One [hub](hub) per node follows the global log on the log bus (the database only to catch
//! up), converts each book and account event once into the [messages](message) of the
//! topics it concerns, and publishes them on a bounded broadcast channel per topic that has
//! subscribers. A [`Subscription`] reads its topic's channel; one that falls further behind
//! than the channel holds is ended ([`StreamEnd::Lagged`]) rather than buffered: the node's
//! memory does not depend on how fast clients read. A client resumes after the last id it
//! saw: its subscription first reads the messages it missed from the journal, up to the
//! log's head when it subscribed, then the channel, skipping what it already had: nothing
//! twice, nothing missed.

mod hub;
pub mod message;
mod subscription;

use std::fmt;
use std::time::Duration;

use tradefloor_domain::{AccountId, Symbol};

pub use hub::{StreamHub, StreamStats};
pub use message::{CandleBody, StreamMessage, TopBody};
pub use subscription::{StreamEnd, Subscription};

/// What a client follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// A market's trades, status, top of book and candles.
    Market(Symbol),
    /// An account's orders, fills, balance changes and limits.
    Account(AccountId),
}

impl Topic {
    /// Parses a channel name as [`Topic`]'s `Display` writes it (`market:BTC-USD`,
    /// `account:alice`).
    pub fn parse(channel: &str) -> Option<Self> {
        match channel.split_once(':')? {
            ("market", symbol) => Symbol::new(symbol).ok().map(Topic::Market),
            ("account", account) => AccountId::new(account).ok().map(Topic::Account),
            _ => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Market(symbol) => write!(formatter, "market:{symbol}"),
            Topic::Account(account) => write!(formatter, "account:{account}"),
        }
    }
}

/// The limits of a node's streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamsConfig {
    /// Messages a topic's channel holds for its slowest subscriber; one further behind is
    /// ended with [`StreamEnd::Lagged`].
    pub topic_buffer_messages: usize,
    /// Subscriptions open on the node at once; more are refused as overloaded.
    pub subscriptions_max: usize,
    /// The furthest back (in log offsets behind the head) a subscription may resume; older
    /// resumes are refused (the client starts again from a snapshot).
    pub resume_events_max: u64,
    /// Most events the hub takes from the log at once.
    pub batch_events_max: usize,
    /// The longest the hub waits for the log bus before it reads the database anyway (events
    /// other nodes appended reach no bus here).
    pub poll_interval: Duration,
    /// How often the hub reads the candles of the markets someone follows.
    pub candle_interval: Duration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            topic_buffer_messages: 4_096,
            subscriptions_max: 10_000,
            resume_events_max: 1_000_000,
            batch_events_max: 2_048,
            poll_interval: Duration::from_millis(100),
            candle_interval: Duration::from_millis(250),
        }
    }
}

impl StreamsConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.topic_buffer_messages == 0 {
            return Err("topic_buffer_messages is zero: no message could be delivered".to_owned());
        }
        if self.batch_events_max == 0 {
            return Err("batch_events_max is zero: the hub could read no event".to_owned());
        }
        Ok(())
    }
}
