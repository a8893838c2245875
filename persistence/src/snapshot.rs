//! The snapshot store: the latest snapshot of each stream, with the sequence it includes.

use crate::database::Database;
use crate::error::Error;
use crate::journal::dispatch;
use crate::record::Snapshot;

/// Saves and loads the latest snapshot per stream.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    database: Database,
    payload_bytes_max: usize,
}

impl SnapshotStore {
    /// A store on `database`, refusing payloads above `payload_bytes_max`.
    pub fn new(database: Database, payload_bytes_max: usize) -> Self {
        Self {
            database,
            payload_bytes_max,
        }
    }

    /// Saves `snapshot` unless a snapshot at a later sequence is already stored.
    pub async fn save(&self, snapshot: &Snapshot) -> Result<(), Error> {
        if snapshot.payload.len() > self.payload_bytes_max {
            return Err(Error::InvalidRequest(format!(
                "snapshot of {} is {} bytes; at most {}",
                snapshot.stream,
                snapshot.payload.len(),
                self.payload_bytes_max
            )));
        }
        dispatch!(&self.database, save_snapshot(snapshot))
    }

    /// The latest snapshot of `stream`.
    pub async fn load(&self, stream: &str) -> Result<Option<Snapshot>, Error> {
        dispatch!(&self.database, load_snapshot(stream))
    }
}
