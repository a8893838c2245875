//! Tradefloor cluster: membership, location-transparent remoting, shard allocation,
//! hand-off and rebalancing.
//!
//! This crate will hold the membership table and heartbeats, remoting over ractor_cluster,
//! the lease-elected shard coordinator and fenced shard ownership, so that one entity never
//! has two writers.
//!
//! It arrives with the cluster issue; today it is an empty member of the workspace.
