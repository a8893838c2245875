//! Turns at an SQLite database's one write lock, with the journal first.
//!
//! SQLite lets one transaction write at a time; a writer that finds the lock taken polls for
//! it with sleeps that grow to tens of milliseconds. So this process's writers (the journal's
//! group-commit writer; read models, offsets and snapshots) queue for a turn here instead.
//!
//! The journal's writer goes first: commands wait on its commits, while the other writers
//! only trail the log. A background writer asking for a turn while the journal waits for one
//! steps aside, up to [`WriteGate::background_defer_max`]; after that it queues in order like
//! everyone else, so background writers are delayed under load but never starved. Measured
//! before this gate (a fair queue), the journal's writer spent 70 % of its time waiting for a
//! turn behind read-model transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use tokio::time::Instant;

/// The gate of one SQLite database; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct WriteGate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lock: Arc<Mutex<()>>,
    /// Journal batches waiting for a turn.
    journal_waiting: AtomicUsize,
    /// Woken when the journal's writer ends a turn.
    journal_done: Notify,
    background_defer_max: Duration,
}

/// A turn to write (see `Journal::write_turn`); it ends when dropped.
#[derive(Debug)]
pub struct WriteTurn {
    _guard: OwnedMutexGuard<()>,
    /// When the turn began, for the histogram of how long turns hold the lock.
    began: Instant,
    /// Set for the journal's turns: its end wakes the background writers stepping aside.
    gate: Option<WriteGate>,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        let held = self.began.elapsed().as_secs_f64();
        match &self.gate {
            Some(gate) => {
                gate.inner.journal_done.notify_waiters();
                metrics::histogram!("tradefloor_sqlite_turn_seconds", "writer" => "journal")
                    .record(held);
            }
            None => metrics::histogram!("tradefloor_sqlite_turn_seconds", "writer" => "background")
                .record(held),
        }
    }
}

impl WriteGate {
    /// A gate where background writers step aside for the journal at most
    /// `background_defer_max` per turn.
    pub(crate) fn new(background_defer_max: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                lock: Arc::new(Mutex::new(())),
                journal_waiting: AtomicUsize::new(0),
                journal_done: Notify::new(),
                background_defer_max,
            }),
        }
    }

    /// The journal writer's turn: queued in order, ahead of background writers that have not
    /// queued yet.
    pub(crate) async fn journal_turn(&self) -> WriteTurn {
        self.inner.journal_waiting.fetch_add(1, Ordering::SeqCst);
        let guard = self.inner.lock.clone().lock_owned().await;
        let before = self.inner.journal_waiting.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "every journal turn counted itself waiting");
        WriteTurn {
            _guard: guard,
            began: Instant::now(),
            gate: Some(self.clone()),
        }
    }

    /// A background writer's turn: it lets a waiting journal batch go first, for at most
    /// `background_defer_max`.
    pub(crate) async fn background_turn(&self) -> WriteTurn {
        let deadline = Instant::now() + self.inner.background_defer_max;
        loop {
            let journal_done = self.inner.journal_done.notified();
            tokio::pin!(journal_done);
            // Registered before the check, so a turn ending in between still wakes us.
            journal_done.as_mut().enable();
            let deferring = Instant::now() < deadline;
            if !deferring || self.inner.journal_waiting.load(Ordering::SeqCst) == 0 {
                let guard = self.inner.lock.clone().lock_owned().await;
                let journal_queued = self.inner.journal_waiting.load(Ordering::SeqCst) > 0;
                if !journal_queued || Instant::now() >= deadline {
                    return WriteTurn {
                        _guard: guard,
                        began: Instant::now(),
                        gate: None,
                    };
                }
                // The journal queued while we did: hand the lock on and wait for its turn.
                drop(guard);
            }
            let _ = tokio::time::timeout_at(deadline, journal_done).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiting_journal_goes_before_a_background_writer() {
        let gate = WriteGate::new(Duration::from_millis(50));
        let held = gate.journal_turn().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let background = tokio::spawn({
            let (gate, order) = (gate.clone(), order.clone());
            async move {
                let _turn = gate.background_turn().await;
                order.lock().unwrap().push("background");
            }
        });
        tokio::task::yield_now().await;
        let journal = tokio::spawn({
            let (gate, order) = (gate.clone(), order.clone());
            async move {
                let _turn = gate.journal_turn().await;
                order.lock().unwrap().push("journal");
            }
        });
        tokio::task::yield_now().await;
        drop(held);
        journal.await.unwrap();
        background.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["journal", "background"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_writer_waits_at_most_its_defer_bound() {
        let gate = WriteGate::new(Duration::from_millis(50));
        // A journal that keeps a batch waiting all the time.
        let held = gate.journal_turn().await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.journal_turn().await }
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let background = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _turn = gate.background_turn().await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(held);
        let next = waiting.await.unwrap();
        // The journal batch that was already queued goes first; then the background writer,
        // which queued once its bound passed, before any later journal batch.
        let later = tokio::spawn({
            let gate = gate.clone();
            async move { gate.journal_turn().await }
        });
        tokio::task::yield_now().await;
        drop(next);
        let served_at = background.await.unwrap();
        assert!(served_at - started >= Duration::from_millis(50));
        drop(later.await.unwrap());
    }

    #[tokio::test]
    async fn background_writers_go_at_once_when_the_journal_is_idle() {
        let gate = WriteGate::new(Duration::from_secs(60));
        let first = gate.background_turn().await;
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), gate.background_turn()).await;
        assert!(second.is_ok());
    }
}
