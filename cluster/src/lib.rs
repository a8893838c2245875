//! Tradefloor cluster: membership, location-transparent remoting, shard allocation,
//! hand-off and rebalancing (DESIGN §4).
//!
//! Today it holds what every other part of the cluster stands on, kept in the journal's
//! database (PostgreSQL for a real cluster, SQLite for a one-node one):
//!
//! - the **membership table** (the Orleans model): who is in the cluster, at which
//!   addresses, and whether alive, by heartbeats and a failure timeout; a node declared down
//!   learns it from a typed error and stops serving;
//! - **leader leases**: the shard coordinator is whoever holds
//!   [`SHARD_COORDINATOR_LEASE`]; each term carries a strictly increasing epoch, a fencing
//!   token for the journal's `claim_fence`;
//! - the **shard table**: which node owns each of the fixed number of shards, under a
//!   per-shard fencing epoch ([`fence_key`]), and where a graceful hand-off is;
//! - the **planner**, pure: from the shard table and the membership, which shards to place,
//!   reassign and move next, least-loaded first, within a bound on hand-offs in flight.
//!
//! Time is always an argument ([`Timestamp`]), never read inside a decision, so tests run on
//! a clock they control; every change is one conditional statement, so racing nodes cannot
//! both win.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tradefloor_cluster::{
//!     Allocation, ClusterConfig, Lease, Membership, Node, SHARD_COORDINATOR_LEASE, Timestamp, plan,
//! };
//! use tradefloor_persistence::{Database, JournalConfig};
//!
//! let config = ClusterConfig::default();
//! let database = Database::connect("sqlite:data/journal.db", &JournalConfig::default()).await?;
//! let membership = Membership::open(database.clone()).await?;
//! let node = Node {
//!     node_id: "n1".into(),
//!     http_addr: "127.0.0.1:8081".into(),
//!     cluster_addr: "127.0.0.1:9081".into(),
//! };
//! let me = membership.join(&node, Timestamp::now()).await?;
//! membership.mark_up("n1", me.incarnation, Timestamp::now()).await?;
//! // Every heartbeat interval: a refusal (`Error::Evicted`) means stop serving.
//! membership.heartbeat("n1", me.incarnation, Timestamp::now()).await?;
//! let dead = membership.declare_dead(config.failure_timeout, Timestamp::now()).await?;
//!
//! let lease = Lease::open(database.clone(), SHARD_COORDINATOR_LEASE).await?;
//! if let Ok(term) = lease.try_acquire("n1", Timestamp::now(), config.lease_duration).await {
//!     // This node coordinates: one round of shard allocation.
//!     let allocation = Allocation::open(database).await?;
//!     let up = vec!["n1".to_owned()];
//!     let plan = plan(&allocation.assignments().await?, 256, &up, &[], 16);
//!     for (shard, owner) in &plan.initial {
//!         allocation.create(*shard, owner, Timestamp::now()).await?;
//!     }
//!     // … then plan.reassign, plan.cancel, plan.complete and plan.moves likewise.
//! #   let _ = (term, dead);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`membership`] (the table, statuses, heartbeats, failure detection), [`lease`]
//! (leader election with fencing epochs), [`allocation`] (the shard table and its hand-off
//! transitions), [`mod@plan`] (the pure shard planner: placement and rebalancing),
//! [`config`] (every limit), [`time`] (timestamps passed in), and the [`Error`] type.
//! Remoting, and the coordinator and owners that drive hand-offs, are still to come
//! (issue 7).

pub mod allocation;
pub mod config;
mod error;
pub mod id_slots;
pub mod lease;
pub mod membership;
pub mod plan;
pub mod remote;
pub mod runtime;
mod schema;
mod settings;
pub mod time;
pub mod tls;

pub use allocation::{Allocation, fence_key};
pub use config::ClusterConfig;
pub use error::{Error, Eviction};
pub use lease::{Lease, SHARD_COORDINATOR_LEASE, Term};
pub use membership::{Member, Membership, Node, Status};
pub use plan::{Assignment, HandOff, Move, Plan, is_balanced, plan};
pub use time::Timestamp;
