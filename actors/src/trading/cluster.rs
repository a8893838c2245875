//! The trading application as one node of a cluster: its regions start no shard until the
//! cluster hands it one ([`Exchange::adopt_shards`], under the owner's fence) and stop a
//! shard when it moves away ([`Exchange::release_shard`]); calls for shards elsewhere go to
//! their owner, and this node serves the calls other nodes route here ([`Exchange::serve`]).
//!
//! Shard `s` of every region (accounts, books, sagas) moves as one unit under the fence
//! `shard-{s}`: an order's saga and an account with the same shard number live together.
//! A placement runs where its saga's shard lives, so the node that waits for the book's
//! answer is the node that receives it.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tradefloor_domain::OrderId;
use tradefloor_domain::saga::OrderView;
use tradefloor_persistence::{Fence, Journal};

use super::{Exchange, NewOrder};
use crate::error::Error;
use crate::hosting::region::shard_of;
use crate::hosting::saga_host::SagaHost;
use crate::routing::remote::{self, Call, Forward, Forwarding, Remoting};
use crate::runtime::registry::Registry;

use super::TradingConfig;

/// The operation placing an order on the node hosting its saga.
const OP_PLACE_ORDER: &str = "place_order";

/// Generated ids of a clustered node are its slot modulo this; each member holds a slot of
/// its own (the cluster assigns them), so two nodes never generate the same id. Also the
/// most members a cluster can have up at once.
pub const ID_SLOTS: u32 = 64;

/// A placement sent to the saga's node.
#[derive(Serialize, Deserialize)]
struct PlaceOrder {
    order: NewOrder,
    /// Whether the id was generated (the saga starts without reading the journal).
    fresh: bool,
}

impl Exchange {
    /// Starts the application as node `remoting.node_id()` of a cluster, generating ids in
    /// `id_slot` (below [`ID_SLOTS`], the node's own in the cluster): regions with no shard
    /// running, no service; the cluster adopts shards and starts the services where it
    /// places them. Calls from other nodes are served from now on.
    pub async fn start_clustered(
        registry: Registry,
        journal: Journal,
        config: TradingConfig,
        remoting: Arc<Remoting>,
        id_slot: u32,
    ) -> Result<Arc<Self>, Error> {
        assert!(id_slot < ID_SLOTS, "id slot {id_slot} of {ID_SLOTS}");
        let node_id = remoting.node_id().to_owned();
        let mut exchange =
            Self::start_regions(registry, journal, config, Some(remoting.clone())).await?;
        exchange.id_stride = u64::from(ID_SLOTS);
        exchange.id_slot = u64::from(id_slot);
        // Risk partitions are spread over the nodes: none is served here until the cluster
        // gives this node some; its members wait for them.
        exchange.risk_group.serve_only(&BTreeSet::new());
        for _ in 0..exchange.config.risk.members {
            exchange.add_risk_member().await?;
        }
        let exchange = Arc::new(exchange);
        let serving = Arc::downgrade(&exchange);
        remoting.set_handler(Arc::new(move |call: Call| {
            let serving = serving.clone();
            Box::pin(async move {
                match serving.upgrade() {
                    Some(exchange) => exchange.serve(call).await,
                    None => Err(Error::Stopped { actor: call.target }),
                }
            })
        }));
        tracing::info!(node = %node_id, "trading application started as a cluster node");
        Ok(exchange)
    }

    /// Starts shards on this node, each under its fence (the journal refuses the writes of
    /// any older owner from the moment the fence was claimed), then resumes their unfinished
    /// sagas in the background. Claim each fence (`Journal::claim_fence`) before.
    pub async fn adopt_shards(&self, shards: &[(u32, Fence)]) -> Result<(), Error> {
        for (shard, fence) in shards {
            self.accounts
                .start_shard(*shard, Some(fence.clone()))
                .await?;
            self.books.start_shard(*shard, Some(fence.clone())).await?;
            self.host
                .region()
                .start_shard(*shard, Some(fence.clone()))
                .await?;
        }
        if shards.is_empty() {
            return Ok(());
        }
        let adopted: BTreeSet<u32> = shards.iter().map(|(shard, _)| *shard).collect();
        let host = self.host.clone();
        let journal = self.journal.clone();
        let shard_count = self.config.entities.shard_count;
        let sweep = self.hold_sweep();
        let adopted_at = self.now();
        tokio::spawn(async move {
            let select = |saga_id: &str| adopted.contains(&shard_of(saga_id, shard_count));
            match super::recovery::resume_sagas(&host, &journal, select).await {
                Ok(resumed) => tracing::info!(resumed, "sagas of adopted shards resumed"),
                Err(error) => tracing::warn!(%error, "sagas of adopted shards not resumed"),
            }
            match sweep.run(select, adopted_at.micros(), host.now()).await {
                Ok(released) => {
                    tracing::info!(released, "orphaned holds of adopted shards released")
                }
                Err(error) => tracing::warn!(%error, "orphaned holds of adopted shards not swept"),
            }
        });
        Ok(())
    }

    /// Stops shard `shard` on this node cleanly (every command it accepted persisted and
    /// answered), sagas first, so the next owner can start it.
    pub async fn release_shard(&self, shard: u32) -> Result<(), Error> {
        for stopped in [
            self.host.region().stop_shard(shard).await,
            self.books.stop_shard(shard).await,
            self.accounts.stop_shard(shard).await,
        ] {
            match stopped {
                Ok(()) | Err(Error::Stopped { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Serves a call another node routed here: an entity's command, a saga's input, or a
    /// placement.
    pub async fn serve(&self, call: Call) -> remote::Reply {
        let sagas = self.host.region().path();
        if call.target == self.accounts.path() {
            self.accounts.serve(call).await
        } else if call.target == self.books.path() {
            self.books.serve(call).await
        } else if call.target == sagas
            && SagaHost::<tradefloor_domain::saga::OrderSaga>::serves(&call.operation)
        {
            self.host.serve(call).await
        } else if call.target == sagas {
            self.host.region().serve(call).await
        } else if call.target == self.config.path && call.operation == OP_PLACE_ORDER {
            let placement: PlaceOrder = remote::decode(&call.target, &call.body)?;
            let remoting = self.remoting.as_ref().ok_or_else(|| Error::Stopped {
                actor: call.target.clone(),
            })?;
            let view = self
                .place_order_routed(remoting, placement.order, Forwarding::Refused)
                .await?;
            remote::encode(&call.target, &view)
        } else {
            Err(Error::Failed {
                actor: call.target.clone(),
                reason: format!("no operation {:?} here", call.operation),
            })
        }
    }

    /// Places an order on the node hosting its saga. The id is fixed first: it decides the
    /// saga's shard.
    pub(super) async fn place_order_routed(
        &self,
        remoting: &Remoting,
        order: NewOrder,
        forwarding: Forwarding,
    ) -> Result<OrderView, Error> {
        let fresh = order.order_id.is_none();
        let order_id = order.order_id.unwrap_or_else(|| OrderId(self.next_id()));
        let order = NewOrder {
            order_id: Some(order_id),
            ..order
        };
        let saga_id = order_id.to_string();
        let shard = shard_of(&saga_id, self.config.entities.shard_count);
        let what = format!("{}/sagas/{saga_id}", self.config.path);
        let deadline = self.config.ask_deadline + self.config.placement_wait;
        remoting
            .route(
                shard,
                &what,
                deadline,
                forwarding,
                |_| self.place_order_here(order, fresh),
                Forward {
                    target: &self.config.path,
                    operation: OP_PLACE_ORDER,
                    entity_id: &saga_id,
                    body: &PlaceOrder { order, fresh },
                },
            )
            .await
    }
}

#[cfg(test)]
mod wire_tests;
