//! Tradefloor persistence: the storage every persistent actor stands on.
//!
//! This crate will hold the event journal (append with an expected sequence number and a
//! fenced owner epoch, group commit, reads per stream and in global order), the snapshot
//! store, the offset store for projections and consumer groups, bitemporal reads, the one
//! event codec (bincode 2 behind a single module, with upcasting), and the sqlx backends:
//! SQLite (embedded default) and PostgreSQL (production). It is generic over event types:
//! it knows bytes, names and versions, never the trading model.
//!
//! It arrives with the persistence issue; today it is an empty member of the workspace.
