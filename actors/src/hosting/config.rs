//! Every limit of the entity runtime, named, with its default.

use std::time::Duration;

use crate::runtime::breaker::BreakerConfig;

/// How shard regions host entities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityConfig {
    /// Shards per region: entity id → shard by a stable hash. Fixed for the cluster's life.
    pub shard_count: u32,
    /// Commands queued per entity (normal lane) before callers get `Overloaded`.
    pub entity_mailbox_capacity: usize,
    /// Commands queued per entity in the priority lane (e.g. cancels).
    pub entity_priority_capacity: usize,
    /// Deliveries queued per shard (not yet sorted to their entity) before `Overloaded`.
    pub shard_mailbox_capacity: usize,
    /// A snapshot is saved after this many events since the last one (0: never).
    pub snapshot_every_events: u64,
    /// An entity idle this long is passivated (dropped from memory; its journal stays).
    pub passivate_after: Duration,
    /// How often a shard looks for idle entities.
    pub passivation_interval: Duration,
    /// Events read per page while recovering.
    pub recovery_page_events: usize,
    /// Recoveries a shard runs at once; entities activated beyond this wait their turn in
    /// the shard (an id each, no task), so a burst of first commands after a restart or a
    /// hand-off does not start a task and a database read for every entity at once.
    pub recoveries_concurrent_max: usize,
    /// Most commands an entity decides into one journal append when several wait in its
    /// queue (see [`crate::hosting::entity`]): a busy entity such as an order book then costs one
    /// commit per batch rather than per command. The journal's `append_events_max` also
    /// bounds a batch. 1 writes every command on its own.
    pub batch_commands_max: usize,
    /// The region's journal breaker, shared by its shards: every append and every recovery
    /// goes through it, and only infrastructure failures (the database, the writer) count.
    pub breaker: BreakerConfig,
}

impl Default for EntityConfig {
    fn default() -> Self {
        Self {
            shard_count: 256,
            entity_mailbox_capacity: 64,
            entity_priority_capacity: 16,
            shard_mailbox_capacity: 16_384,
            snapshot_every_events: 1_000,
            passivate_after: Duration::from_secs(120),
            passivation_interval: Duration::from_secs(30),
            recovery_page_events: 10_000,
            recoveries_concurrent_max: 4,
            batch_commands_max: 256,
            breaker: BreakerConfig::default(),
        }
    }
}
