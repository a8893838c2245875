//! Tradefloor system tests: they start real `tradefloor` processes over real sockets and
//! check the cluster's guarantees (nothing acknowledged is lost, conservation of every
//! asset, one writer per entity).
//!
//! The tests arrive with the node and cluster issues; the domain's own tests live in
//! `domain/tests`.
