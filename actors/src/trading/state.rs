//! An entity's current state read from the journal: its latest snapshot plus its stream's
//! tail, folded as the entity itself recovers.
//!
//! The facade's queries look at entities in memory (`queries`); this is their fallback on a
//! cluster node for an entity whose shard another node owns (an entity replies only after its
//! events are durable, so whatever a caller was told is in the journal and a read here sees
//! it), and what tests use to check the journal. The cost is bounded by the snapshot interval
//! ([`EntityConfig::snapshot_every_events`](crate::EntityConfig)).

use tradefloor_persistence::{Journal, SnapshotStore, codec};

use crate::error::Error;
use crate::hosting::entity::{Persistent, stream_of};

/// The state of entity `entity_id` of kind `A` and the last sequence it includes (0: the
/// entity has no events: it never existed).
pub async fn load_state<A: Persistent>(
    journal: &Journal,
    entity_id: &str,
) -> Result<(A, u64), Error> {
    let stream = stream_of::<A>(entity_id);
    let failed = |reason: String| Error::Persistence {
        actor: stream.clone(),
        reason,
    };
    let snapshots = SnapshotStore::new(
        journal.database().clone(),
        journal.config().payload_bytes_max,
    );
    let (mut state, mut sequence) = match snapshots
        .load(&stream)
        .await
        .map_err(|error| failed(error.to_string()))?
    {
        Some(snapshot) => (
            codec::decode::<A>(&snapshot.payload).map_err(failed)?,
            snapshot.sequence,
        ),
        None => (A::default(), 0),
    };
    let event_codec = A::codec();
    loop {
        let page = journal
            .read_stream(&stream, sequence + 1, journal.config().read_rows_max)
            .await
            .map_err(|error| failed(error.to_string()))?;
        if page.is_empty() {
            break;
        }
        for stored in &page {
            assert_eq!(stored.sequence, sequence + 1, "a stream has no gaps");
            let event = event_codec
                .decode(stored)
                .map_err(|error| failed(error.to_string()))?;
            state.apply(&event);
            sequence = stored.sequence;
        }
    }
    Ok((state, sequence))
}
