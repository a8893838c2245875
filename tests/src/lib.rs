//! Tradefloor system tests: they start real `tradefloor` processes over real sockets and
//! check the cluster's guarantees (nothing acknowledged is lost, conservation of every
//! asset, one writer per entity).
//!
//! The tests arrive with the node and cluster issues; each crate's own tests live in its
//! `tests/` folder (`domain/tests`, `persistence/tests`, `actors/tests`).
