//! Hosting persistent actors: entities inside shards, shard regions (activation, routing to
//! shards, passivation), the saga host, and the consumers of the log (the log tail,
//! projections, consumer groups).

pub mod config;
pub mod consumer_group;
pub mod dead_letter_table;
pub mod entity;
pub(crate) mod log_fold;
pub mod log_tail;
pub mod projection;
pub mod region;
pub mod saga_host;
pub(crate) mod shard;
pub(crate) mod upcasters;
