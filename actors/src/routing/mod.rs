//! Location transparency: where each shard lives, and the one routing loop that runs a call
//! here, forwards it to the owner node or waits out a hand-off.

pub mod remote;
