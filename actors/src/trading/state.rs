//! An entity's current state read from the journal: its latest snapshot plus its stream's
//! tail, folded as the entity itself recovers.
//!
//! The facade's queries look at entities in memory (`queries`); this is their fallback on a
//! cluster node for an entity whose shard another node owns (an entity replies only after its
//! events are durable, so whatever a caller was told is in the journal and a read here sees
//! it), and what tests use to check the journal. The cost is bounded by the snapshot interval
//! ([`EntityConfig::snapshot_every_events`](crate::EntityConfig)).

use tradefloor_persistence::{Journal, SnapshotStore};

use crate::error::Error;
use crate::hosting::entity::{self, Persistent, stream_of};

/// The state of entity `entity_id` of kind `A` and the last sequence it includes (0: the
/// entity has no events: it never existed). An entity that folds other streams' facts (a
/// saga) is folded with them, as it recovers.
pub async fn load_state<A: Persistent>(
    journal: &Journal,
    entity_id: &str,
) -> Result<(A, u64), Error> {
    let snapshots = SnapshotStore::new(
        journal.database().clone(),
        journal.config().payload_bytes_max,
    );
    let page_events = journal.config().read_rows_max;
    let recovered = entity::recover::<A>(journal, &snapshots, entity_id, page_events)
        .await
        .map_err(|error| Error::Persistence {
            actor: stream_of::<A>(entity_id),
            reason: error.to_string(),
        })?;
    Ok((recovered.state, recovered.sequence))
}
