//! Tradefloor actors: the actor runtime on ractor and the trading actors built from
//! `tradefloor-domain`.
//!
//! This crate will hold supervision (one-for-one, one-for-all, rest-for-one with restart
//! intensity and backoff), bounded mailboxes with a priority lane, circuit breakers,
//! persistent entities (virtual actors recovering from snapshot plus journal tail), sagas,
//! projections, consumer groups and local shard regions.
//!
//! It arrives with the runtime issue; today it is an empty member of the workspace.
