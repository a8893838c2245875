//! Every limit of the trading application, named, with its default.

use std::time::Duration;

use tradefloor_domain::saga::SagaConfig;

use super::feed::FeedConfig;
use super::risk::RiskConfig;
use super::streams::StreamsConfig;
use crate::hosting::config::EntityConfig;
use crate::hosting::projection::ProjectionConfig;
use crate::hosting::saga_host::SagaHostConfig;

/// How an [`Exchange`](super::Exchange) runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradingConfig {
    /// Root of the application's actor paths, e.g. `/trading`.
    pub path: String,
    /// How the account, book and saga regions host their entities.
    pub entities: EntityConfig,
    /// Timeouts and retries of each order's saga (persisted with the saga).
    pub saga: SagaConfig,
    /// The saga host's limits.
    pub saga_host: SagaHostConfig,
    /// How long a call to an account or a book waits for its reply.
    pub ask_deadline: Duration,
    /// How long placing an order waits for the book to accept or reject it before it
    /// answers with the order still pending.
    pub placement_wait: Duration,
    /// The book feed's batch size and poll interval.
    pub feed: FeedConfig,
    /// The read models' batch size and poll interval.
    pub projections: ProjectionConfig,
    /// How late (behind the latest trade seen) a trade may arrive and still count in its
    /// candle, in microseconds.
    pub candle_watermark_micros: i64,
    /// The risk monitor's members, partitions and position limits.
    pub risk: RiskConfig,
    /// The live streams' buffers and bounds.
    pub streams: StreamsConfig,
    /// How live strategies run.
    pub strategies: StrategiesConfig,
}

/// Commands queued per trading entity. An order book is one hot entity that every order of
/// its market goes through, and it writes what is queued as one append: a queue shorter than
/// the callers in flight turns load into refused submits that wait out a saga's step timeout
/// (measured through HTTP: p99 5 s at 256 callers with 64, 0.7 s with 2 048). Idle entities
/// cost nothing for it: queues grow on demand.
pub const ENTITY_MAILBOX_CAPACITY_DEFAULT: usize = 2_048;

impl Default for TradingConfig {
    fn default() -> Self {
        Self {
            path: "/trading".to_owned(),
            entities: EntityConfig {
                entity_mailbox_capacity: ENTITY_MAILBOX_CAPACITY_DEFAULT,
                ..EntityConfig::default()
            },
            saga: SagaConfig::default(),
            saga_host: SagaHostConfig::default(),
            ask_deadline: Duration::from_secs(5),
            placement_wait: Duration::from_secs(5),
            feed: FeedConfig::default(),
            projections: ProjectionConfig::default(),
            candle_watermark_micros: 5_000_000,
            risk: RiskConfig::default(),
            streams: StreamsConfig::default(),
            strategies: StrategiesConfig::default(),
        }
    }
}

/// How live strategies run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategiesConfig {
    /// Strategies defined on a node at most.
    pub strategies_max: usize,
    /// Bars between two checkpoints of a running strategy (and one at every stop).
    pub checkpoint_bars: u64,
    /// Most log events a strategy takes at once.
    pub batch_events_max: usize,
    /// The longest a strategy waits for the log bus before it reads the database anyway.
    pub poll_interval: Duration,
}

impl Default for StrategiesConfig {
    fn default() -> Self {
        Self {
            strategies_max: 64,
            checkpoint_bars: 60,
            batch_events_max: 1_000,
            poll_interval: Duration::from_secs(1),
        }
    }
}
