//! Turns at an SQLite database's one write lock.
//!
//! SQLite lets one transaction write at a time; a writer that finds the lock taken polls for
//! it with sleeps that grow to tens of milliseconds (the busy handler), even if the lock is
//! released a moment later. So this process's writers of one database (the journal's
//! group-commit writer; snapshots; read models and offsets in theirs) queue for a turn here
//! instead, in order, each starting as soon as the one before commits. How long each kind of
//! writer holds its turn is measured (`tradefloor_sqlite_turn_seconds{writer}`): that is how
//! read models were found holding the journal's lock 66 % of the time, before they moved to
//! a database of their own.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

/// The gate of one SQLite database; cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteGate {
    lock: Arc<Mutex<()>>,
}

/// A turn to write (see `Journal::write_turn`); it ends when dropped.
#[derive(Debug)]
pub struct WriteTurn {
    _guard: OwnedMutexGuard<()>,
    /// When the turn began, and who took it, for the histogram of how long turns last.
    began: Instant,
    writer: &'static str,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        metrics::histogram!("tradefloor_sqlite_turn_seconds", "writer" => self.writer)
            .record(self.began.elapsed().as_secs_f64());
    }
}

impl WriteGate {
    /// Waits for the turns asked before this one, then holds the lock until the turn is
    /// dropped. `writer` names the kind of writer in the metrics.
    pub(crate) async fn turn(&self, writer: &'static str) -> WriteTurn {
        let guard = self.lock.clone().lock_owned().await;
        WriteTurn {
            _guard: guard,
            began: Instant::now(),
            writer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_taken_one_at_a_time_in_order() {
        let gate = WriteGate::default();
        let first = gate.turn("journal").await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for name in ["second", "third"] {
            let (gate, order) = (gate.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = gate.turn("background").await;
                order.lock().unwrap().push(name);
            }));
            // Queued before the next one asks.
            tokio::task::yield_now().await;
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody writes during a turn"
        );
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["second", "third"]);
    }
}
