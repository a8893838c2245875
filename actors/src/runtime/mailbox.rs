//! A bounded mailbox with a priority lane and a signal lane.
//!
//! ractor's own mailboxes are unbounded; an actor that falls behind would grow its queue until
//! the node runs out of memory. This mailbox puts a named bound on every queue:
//!
//! - the **normal lane** holds at most [`MailboxConfig::capacity`] messages;
//! - the **priority lane** holds at most [`MailboxConfig::priority_capacity`] messages and is
//!   always served before the normal lane, so commands such as cancel or observe overtake a
//!   backlog of ordinary work;
//! - the **signal lane** carries [`Signal`]s (stop, kill). It bypasses both bounds, so a
//!   supervisor can always stop an overloaded actor, yet it cannot grow: each kind of signal
//!   has one slot, and sending a signal that is already pending changes nothing.
//!
//! A sender that finds its lane full either fails at once ([`MailboxSender::try_send`], the
//! overload answer: HTTP 503 with Retry-After) or waits up to its deadline
//! ([`MailboxSender::send_timeout`]); the time spent waiting is measured in [`MailboxStats`].
//!
//! Guarantees, each tested below: every accepted message is received exactly once; messages
//! of one lane are received in the order they were accepted; signals come before priority
//! messages, priority messages before normal ones; a rejected message was not enqueued.
//!
//! ```
//! use tradefloor_actors::{Envelope, Error, Lane, MailboxConfig, Signal, mailbox};
//!
//! let config = MailboxConfig { capacity: 1, priority_capacity: 1 };
//! let (sender, mut receiver) = mailbox::<&str>("/guardian/example", config);
//! sender.try_send("work", Lane::Normal)?;
//! assert!(matches!(sender.try_send("more work", Lane::Normal), Err(Error::Overloaded { .. })));
//! sender.try_send("cancel", Lane::Priority)?;
//! sender.signal(Signal::Stop)?; // bypasses the full lanes
//! assert_eq!(receiver.try_recv(), Some(Envelope::Signal(Signal::Stop)));
//! assert_eq!(receiver.try_recv(), Some(Envelope::Message("cancel")));
//! assert_eq!(receiver.try_recv(), Some(Envelope::Message("work")));
//! # Ok::<(), Error>(())
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::Error;
use crate::runtime::dead_letters::{DeadLetter, DeadLetters};

/// Default bound of the normal lane: deep enough to absorb a burst, shallow enough that a
/// queued message is still worth processing when its turn comes.
pub const MAILBOX_CAPACITY_DEFAULT: usize = 1024;

/// Default bound of the priority lane: commands are few, a deep priority queue would only
/// hide a sender that misuses it.
pub const MAILBOX_PRIORITY_CAPACITY_DEFAULT: usize = 64;

/// Largest bound a lane may have (tokio's semaphore limit is far above; this keeps a typo in
/// a config file from disabling the bound in practice).
pub const MAILBOX_CAPACITY_MAX: usize = 1 << 24;

/// The bounds of one mailbox (configurable per actor kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxConfig {
    /// How many messages the normal lane holds.
    pub capacity: usize,
    /// How many messages the priority lane holds.
    pub priority_capacity: usize,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            capacity: MAILBOX_CAPACITY_DEFAULT,
            priority_capacity: MAILBOX_PRIORITY_CAPACITY_DEFAULT,
        }
    }
}

/// Which bounded lane a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Ordinary work, served after the priority lane is empty.
    Normal,
    /// Commands that must overtake a backlog (cancel, observe), served first.
    Priority,
}

/// A control message that bypasses the bounds of the mailbox.
///
/// Each kind has one slot in the signal lane, which is why the lane cannot grow: a second
/// `Stop` while one is pending is the same request and is absorbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Stop after the current message; queued messages are not processed.
    Stop,
    /// Stop now. Received before a pending `Stop`.
    Kill,
}

/// What [`MailboxReceiver::recv`] hands to the actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope<M> {
    /// A control signal; always received before any message.
    Signal(Signal),
    /// A message from one of the bounded lanes.
    Message(M),
}

/// A point-in-time view of a mailbox, for the actor tree and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MailboxStats {
    /// Messages waiting in the normal lane.
    pub len: usize,
    /// Messages waiting in the priority lane.
    pub priority_len: usize,
    /// Bound of the normal lane.
    pub capacity: usize,
    /// Bound of the priority lane.
    pub priority_capacity: usize,
    /// Messages refused because their lane was full (at once or after waiting).
    pub rejected: u64,
    /// Longest time one sender spent waiting for room, in microseconds.
    pub waited_max_us: u64,
    /// Time all senders spent waiting for room, in microseconds.
    pub waited_total_us: u64,
}

/// Counters shared by the senders, the receiver and any stats handle. Lengths are updated
/// under the mailbox lock, so they never disagree with the queues by more than one step.
#[derive(Debug)]
struct Counters {
    len: AtomicUsize,
    priority_len: AtomicUsize,
    capacity: usize,
    priority_capacity: usize,
    rejected: AtomicU64,
    waited_max_us: AtomicU64,
    waited_total_us: AtomicU64,
}

impl Counters {
    fn record_wait(&self, waited: Duration) {
        let waited_us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.waited_total_us.fetch_add(waited_us, Ordering::Relaxed);
        self.waited_max_us.fetch_max(waited_us, Ordering::Relaxed);
    }
}

/// A cheap, type-erased handle on a mailbox's counters, so the actor registry can show the
/// mailbox without knowing its message type.
#[derive(Clone, Debug)]
pub struct MailboxStatsHandle {
    counters: Arc<Counters>,
}

impl MailboxStatsHandle {
    /// The mailbox's current lengths, bounds and counters.
    pub fn stats(&self) -> MailboxStats {
        let counters = &self.counters;
        MailboxStats {
            len: counters.len.load(Ordering::Relaxed),
            priority_len: counters.priority_len.load(Ordering::Relaxed),
            capacity: counters.capacity,
            priority_capacity: counters.priority_capacity,
            rejected: counters.rejected.load(Ordering::Relaxed),
            waited_max_us: counters.waited_max_us.load(Ordering::Relaxed),
            waited_total_us: counters.waited_total_us.load(Ordering::Relaxed),
        }
    }
}

/// The queues; guarded by one lock so the receiver sees a consistent picture of all lanes.
#[derive(Debug)]
struct Queues<M> {
    normal: VecDeque<M>,
    priority: VecDeque<M>,
    stop_pending: bool,
    kill_pending: bool,
    senders: usize,
    receiver_closed: bool,
}

/// Room in a bounded lane is a semaphore permit: a sender takes one before it enqueues, the
/// receiver gives it back after it dequeues. tokio's semaphore is fair (first come, first
/// served) and its `acquire` is cancel-safe, which gives `send_timeout` both for free.
#[derive(Debug)]
struct Shared<M> {
    owner: String,
    queues: Mutex<Queues<M>>,
    normal_room: Semaphore,
    priority_room: Semaphore,
    /// Wakes the single receiver; `notify_one` keeps a permit if it is not waiting yet, so a
    /// message pushed between its check and its wait is not missed.
    receiver_wake: Notify,
    counters: Arc<Counters>,
}

impl<M> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, Queues<M>> {
        // No code panics while holding this lock, and every critical section leaves the
        // queues consistent, so a poisoned lock still guards valid data.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn room(&self, lane: Lane) -> &Semaphore {
        match lane {
            Lane::Normal => &self.normal_room,
            Lane::Priority => &self.priority_room,
        }
    }

    fn capacity(&self, lane: Lane) -> usize {
        match lane {
            Lane::Normal => self.counters.capacity,
            Lane::Priority => self.counters.priority_capacity,
        }
    }

    fn overloaded(&self, lane: Lane) -> Error {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        Error::Overloaded {
            actor: self.owner.clone(),
            capacity: self.capacity(lane),
        }
    }

    fn stopped(&self) -> Error {
        Error::Stopped {
            actor: self.owner.clone(),
        }
    }

    /// Enqueues a message whose room (permit) the caller already holds and has forgotten.
    fn push(&self, message: M, lane: Lane) -> Result<(), Error> {
        let mut queues = self.lock();
        if queues.receiver_closed {
            // Only possible if the receiver closed between the permit and this lock.
            return Err(self.stopped());
        }
        match lane {
            Lane::Normal => {
                queues.normal.push_back(message);
                self.counters
                    .len
                    .store(queues.normal.len(), Ordering::Relaxed);
            }
            Lane::Priority => {
                queues.priority.push_back(message);
                let priority_len = queues.priority.len();
                self.counters
                    .priority_len
                    .store(priority_len, Ordering::Relaxed);
            }
        }
        drop(queues);
        self.receiver_wake.notify_one();
        Ok(())
    }
}

/// Creates a mailbox for the actor at `owner` (its path, used in errors).
///
/// # Panics
///
/// If a lane's bound is zero or above [`MAILBOX_CAPACITY_MAX`]: a configuration that is a
/// programmer error, caught when the mailbox is made rather than when it overflows.
pub fn mailbox<M>(
    owner: impl Into<String>,
    config: MailboxConfig,
) -> (MailboxSender<M>, MailboxReceiver<M>) {
    assert!(config.capacity > 0, "mailbox capacity must be at least 1");
    assert!(config.capacity <= MAILBOX_CAPACITY_MAX);
    assert!(
        config.priority_capacity > 0,
        "priority capacity must be at least 1"
    );
    assert!(config.priority_capacity <= MAILBOX_CAPACITY_MAX);
    let counters = Arc::new(Counters {
        len: AtomicUsize::new(0),
        priority_len: AtomicUsize::new(0),
        capacity: config.capacity,
        priority_capacity: config.priority_capacity,
        rejected: AtomicU64::new(0),
        waited_max_us: AtomicU64::new(0),
        waited_total_us: AtomicU64::new(0),
    });
    let shared = Arc::new(Shared {
        owner: owner.into(),
        queues: Mutex::new(Queues {
            normal: VecDeque::new(),
            priority: VecDeque::new(),
            stop_pending: false,
            kill_pending: false,
            senders: 1,
            receiver_closed: false,
        }),
        normal_room: Semaphore::new(config.capacity),
        priority_room: Semaphore::new(config.priority_capacity),
        receiver_wake: Notify::new(),
        counters,
    });
    let sender = MailboxSender {
        shared: Arc::clone(&shared),
    };
    (sender, MailboxReceiver { shared })
}

/// The sending side of a mailbox; clone it for each sender.
#[derive(Debug)]
pub struct MailboxSender<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for MailboxSender<M> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> Drop for MailboxSender<M> {
    fn drop(&mut self) {
        let mut queues = self.shared.lock();
        queues.senders -= 1;
        let last = queues.senders == 0;
        drop(queues);
        if last {
            // The receiver may be waiting; it must learn that nothing more will come.
            self.shared.receiver_wake.notify_one();
        }
    }
}

impl<M> MailboxSender<M> {
    /// Enqueues `message` in `lane` if it has room, or fails at once.
    ///
    /// Errors: [`Error::Overloaded`] when the lane is full, [`Error::Stopped`] when the
    /// receiver is gone. In both cases nothing was enqueued.
    pub fn try_send(&self, message: M, lane: Lane) -> Result<(), Error> {
        match self.shared.room(lane).try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(self.shared.overloaded(lane)),
            Err(TryAcquireError::Closed) => return Err(self.shared.stopped()),
        }
        self.shared.push(message, lane)
    }

    /// Enqueues `message` in `lane`, waiting up to `deadline` for room.
    ///
    /// Senders waiting on the same lane get room in the order they started waiting.
    /// Errors: [`Error::Overloaded`] when the deadline passes without room (the message was
    /// not enqueued, so the caller handles it like an immediate overload, not like a
    /// [`Error::Timeout`] whose message may still be processed); [`Error::Stopped`] when the
    /// receiver is gone, also while waiting.
    ///
    /// Cancel-safe: dropped while waiting, it enqueues nothing and takes no room.
    pub async fn send_timeout(
        &self,
        message: M,
        lane: Lane,
        deadline: Duration,
    ) -> Result<(), Error> {
        let room = self.shared.room(lane);
        let permit = match room.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(self.shared.stopped()),
            Err(TryAcquireError::NoPermits) => {
                let started = Instant::now();
                let waited = tokio::time::timeout(deadline, room.acquire()).await;
                self.shared.counters.record_wait(started.elapsed());
                match waited {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_closed)) => return Err(self.shared.stopped()),
                    Err(_elapsed) => return Err(self.shared.overloaded(lane)),
                }
            }
        };
        permit.forget();
        self.shared.push(message, lane)
    }

    /// Sends a control signal, bypassing the bounds.
    ///
    /// A signal of a kind already pending is absorbed (the lane holds one of each kind).
    /// Errors: [`Error::Stopped`] when the receiver is gone.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        let mut queues = self.shared.lock();
        if queues.receiver_closed {
            return Err(self.shared.stopped());
        }
        match signal {
            Signal::Stop => queues.stop_pending = true,
            Signal::Kill => queues.kill_pending = true,
        }
        drop(queues);
        self.shared.receiver_wake.notify_one();
        Ok(())
    }

    /// The mailbox's current lengths, bounds and counters.
    pub fn stats(&self) -> MailboxStats {
        self.stats_handle().stats()
    }

    /// A handle on the counters that does not keep the mailbox open (it is not a sender).
    pub fn stats_handle(&self) -> MailboxStatsHandle {
        MailboxStatsHandle {
            counters: Arc::clone(&self.shared.counters),
        }
    }

    /// The path of the actor this mailbox belongs to.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// Whether the receiver has closed or been dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_closed
    }
}

/// The receiving side of a mailbox, owned by the actor.
#[derive(Debug)]
pub struct MailboxReceiver<M> {
    shared: Arc<Shared<M>>,
}

impl<M> MailboxReceiver<M> {
    /// The next signal, else the next priority message, else the next normal message,
    /// waiting until one arrives. `None` once every sender is gone and the lanes are empty,
    /// or once the mailbox is closed and drained.
    ///
    /// Cancel-safe: nothing is taken from the lanes unless it is returned, so `recv` can be
    /// one branch of a `select!`.
    pub async fn recv(&mut self) -> Option<Envelope<M>> {
        loop {
            // Registered before the check, so a push between the check and the wait still
            // wakes this task (notify_one also keeps a permit for a single waiter).
            let woken = self.shared.receiver_wake.notified();
            match self.poll_queues() {
                Polled::Ready(envelope) => return Some(envelope),
                Polled::Finished => return None,
                Polled::Empty => woken.await,
            }
        }
    }

    /// Like [`recv`](Self::recv) without waiting: `None` when nothing is queued right now.
    pub fn try_recv(&mut self) -> Option<Envelope<M>> {
        match self.poll_queues() {
            Polled::Ready(envelope) => Some(envelope),
            Polled::Finished | Polled::Empty => None,
        }
    }

    /// Refuses new messages and signals (senders get [`Error::Stopped`], waiting senders
    /// too). Messages already queued stay receivable, so the actor can drain them to the
    /// dead letters.
    pub fn close(&mut self) {
        self.shared.lock().receiver_closed = true;
        self.shared.normal_room.close();
        self.shared.priority_room.close();
    }

    /// Closes the mailbox and records each message still queued as a dead letter with
    /// `reason` (pending signals are dropped). Returns how many were recorded.
    pub fn close_to_dead_letters(&mut self, dead_letters: &DeadLetters, reason: &str) -> usize {
        self.close();
        let mut recorded = 0;
        while let Some(envelope) = self.try_recv() {
            if let Envelope::Message(message) = envelope {
                dead_letters.record(DeadLetter::of::<M>(self.shared.owner.as_str(), reason));
                drop(message);
                recorded += 1;
            }
        }
        recorded
    }

    /// The mailbox's current lengths, bounds and counters.
    pub fn stats(&self) -> MailboxStats {
        MailboxStatsHandle {
            counters: Arc::clone(&self.shared.counters),
        }
        .stats()
    }

    fn poll_queues(&self) -> Polled<M> {
        let mut queues = self.shared.lock();
        if queues.kill_pending {
            queues.kill_pending = false;
            return Polled::Ready(Envelope::Signal(Signal::Kill));
        }
        if queues.stop_pending {
            queues.stop_pending = false;
            return Polled::Ready(Envelope::Signal(Signal::Stop));
        }
        let counters = &self.shared.counters;
        if let Some(message) = queues.priority.pop_front() {
            counters
                .priority_len
                .store(queues.priority.len(), Ordering::Relaxed);
            drop(queues);
            self.shared.priority_room.add_permits(1);
            return Polled::Ready(Envelope::Message(message));
        }
        if let Some(message) = queues.normal.pop_front() {
            counters.len.store(queues.normal.len(), Ordering::Relaxed);
            drop(queues);
            self.shared.normal_room.add_permits(1);
            return Polled::Ready(Envelope::Message(message));
        }
        if queues.senders == 0 || queues.receiver_closed {
            Polled::Finished
        } else {
            Polled::Empty
        }
    }
}

impl<M> Drop for MailboxReceiver<M> {
    fn drop(&mut self) {
        self.close();
        let mut queues = self.shared.lock();
        let normal = std::mem::take(&mut queues.normal);
        let priority = std::mem::take(&mut queues.priority);
        self.shared.counters.len.store(0, Ordering::Relaxed);
        self.shared
            .counters
            .priority_len
            .store(0, Ordering::Relaxed);
        drop(queues);
        // Dropped outside the lock: a message's destructor (a reply port, say) may run code.
        drop((normal, priority));
    }
}

enum Polled<M> {
    Ready(Envelope<M>),
    Empty,
    Finished,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capacity: usize, priority_capacity: usize) -> MailboxConfig {
        MailboxConfig {
            capacity,
            priority_capacity,
        }
    }

    fn message<M>(envelope: Option<Envelope<M>>) -> M {
        match envelope {
            Some(Envelope::Message(message)) => message,
            _ => panic!("expected a message"),
        }
    }

    #[tokio::test]
    async fn overflow_is_rejected_and_nothing_accepted_is_lost() {
        let (sender, mut receiver) = mailbox::<u32>("/test/a", config(3, 2));
        let mut accepted = Vec::new();
        for value in 0..10 {
            match sender.try_send(value, Lane::Normal) {
                Ok(()) => accepted.push(value),
                Err(error) => assert_eq!(
                    error,
                    Error::Overloaded {
                        actor: "/test/a".to_string(),
                        capacity: 3
                    }
                ),
            }
        }
        assert_eq!(accepted, vec![0, 1, 2]);
        assert_eq!(sender.stats().rejected, 7);
        assert_eq!(sender.stats().len, 3);
        drop(sender);
        let mut received = Vec::new();
        while let Some(envelope) = receiver.recv().await {
            received.push(message(Some(envelope)));
        }
        assert_eq!(received, accepted);
    }

    #[tokio::test]
    async fn lanes_have_separate_bounds() {
        let (sender, _receiver) = mailbox::<u32>("/a", config(1, 1));
        sender.try_send(1, Lane::Normal).unwrap();
        sender.try_send(2, Lane::Priority).unwrap();
        let error = sender.try_send(3, Lane::Priority).unwrap_err();
        assert_eq!(
            error,
            Error::Overloaded {
                actor: "/a".to_string(),
                capacity: 1
            }
        );
        assert!(matches!(
            sender.try_send(4, Lane::Normal),
            Err(Error::Overloaded { capacity: 1, .. })
        ));
        let stats = sender.stats();
        assert_eq!((stats.len, stats.priority_len, stats.rejected), (1, 1, 2));
    }

    #[tokio::test]
    async fn receiving_makes_room_again() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(2, 1));
        for round in 0..5 {
            sender.try_send(round * 2, Lane::Normal).unwrap();
            sender.try_send(round * 2 + 1, Lane::Normal).unwrap();
            assert!(sender.try_send(99, Lane::Normal).is_err());
            assert_eq!(message(receiver.try_recv()), round * 2);
            assert_eq!(message(receiver.try_recv()), round * 2 + 1);
            assert_eq!(receiver.stats().len, 0);
        }
        assert!(receiver.try_recv().is_none());
    }

    #[tokio::test]
    async fn priority_lane_is_served_first() {
        let (sender, mut receiver) = mailbox::<&str>("/a", config(8, 8));
        sender.try_send("normal 1", Lane::Normal).unwrap();
        sender.try_send("normal 2", Lane::Normal).unwrap();
        sender.try_send("priority 1", Lane::Priority).unwrap();
        sender.try_send("priority 2", Lane::Priority).unwrap();
        let order: Vec<_> = (0..4).map(|_| message(receiver.try_recv())).collect();
        assert_eq!(order, ["priority 1", "priority 2", "normal 1", "normal 2"]);
    }

    #[tokio::test]
    async fn signals_come_first_and_bypass_a_full_mailbox() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        sender.try_send(1, Lane::Normal).unwrap();
        sender.try_send(2, Lane::Priority).unwrap();
        sender.signal(Signal::Stop).unwrap();
        sender.signal(Signal::Kill).unwrap();
        assert_eq!(receiver.try_recv(), Some(Envelope::Signal(Signal::Kill)));
        assert_eq!(receiver.try_recv(), Some(Envelope::Signal(Signal::Stop)));
        assert_eq!(message(receiver.try_recv()), 2);
        assert_eq!(message(receiver.try_recv()), 1);
        assert_eq!(receiver.try_recv(), None);
    }

    #[tokio::test]
    async fn repeated_signals_are_absorbed() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        for _ in 0..1000 {
            sender.signal(Signal::Stop).unwrap();
        }
        assert_eq!(receiver.try_recv(), Some(Envelope::Signal(Signal::Stop)));
        assert_eq!(receiver.try_recv(), None);
        // Once received, the slot is free for the next one.
        sender.signal(Signal::Stop).unwrap();
        assert_eq!(receiver.try_recv(), Some(Envelope::Signal(Signal::Stop)));
    }

    #[tokio::test]
    async fn recv_waits_for_a_message_or_a_signal() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        let waiting = tokio::spawn(async move {
            let first = receiver.recv().await;
            let second = receiver.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        sender.try_send(7, Lane::Normal).unwrap();
        tokio::task::yield_now().await;
        sender.signal(Signal::Stop).unwrap();
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first, Some(Envelope::Message(7)));
        assert_eq!(second, Some(Envelope::Signal(Signal::Stop)));
    }

    #[tokio::test]
    async fn recv_ends_when_all_senders_are_gone_and_lanes_are_empty() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(4, 4));
        let clone = sender.clone();
        sender.try_send(1, Lane::Normal).unwrap();
        clone.try_send(2, Lane::Priority).unwrap();
        clone.signal(Signal::Stop).unwrap();
        drop(sender);
        drop(clone);
        assert_eq!(receiver.recv().await, Some(Envelope::Signal(Signal::Stop)));
        assert_eq!(receiver.recv().await, Some(Envelope::Message(2)));
        assert_eq!(receiver.recv().await, Some(Envelope::Message(1)));
        assert_eq!(receiver.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_learns_the_last_sender_is_gone() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        let waiting = tokio::spawn(async move { receiver.recv().await });
        tokio::task::yield_now().await;
        drop(sender);
        assert_eq!(waiting.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn send_timeout_waits_for_room() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        sender.try_send(1, Lane::Normal).unwrap();
        let waiting_sender = sender.clone();
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            waiting_sender
                .send_timeout(2, Lane::Normal, Duration::from_secs(10))
                .await
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished());
        assert_eq!(message(receiver.try_recv()), 1);
        waiting.await.unwrap().unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(message(receiver.try_recv()), 2);
        let stats = sender.stats();
        assert_eq!(stats.waited_max_us, 3_000_000);
        assert_eq!(stats.waited_total_us, 3_000_000);
        assert_eq!(stats.rejected, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn send_timeout_gives_up_at_the_deadline() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        sender.try_send(1, Lane::Priority).unwrap();
        let started = Instant::now();
        let error = sender
            .send_timeout(2, Lane::Priority, Duration::from_millis(250))
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(
            error,
            Error::Overloaded {
                actor: "/a".to_string(),
                capacity: 1
            }
        );
        let stats = sender.stats();
        assert_eq!((stats.rejected, stats.waited_max_us), (1, 250_000));
        // The refused message was not enqueued.
        assert_eq!(message(receiver.try_recv()), 1);
        assert_eq!(receiver.try_recv(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn send_timeout_with_room_does_not_wait() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        sender
            .send_timeout(1, Lane::Normal, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(message(receiver.try_recv()), 1);
        assert_eq!(sender.stats().waited_max_us, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_senders_get_room_in_arrival_order() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        sender.try_send(0, Lane::Normal).unwrap();
        let mut waiting = Vec::new();
        for value in 1..=3 {
            let sender = sender.clone();
            waiting.push(tokio::spawn(async move {
                sender
                    .send_timeout(value, Lane::Normal, Duration::from_secs(60))
                    .await
            }));
            // Let each one start waiting before the next.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut received = Vec::new();
        while received.len() < 4 {
            received.push(message(receiver.recv().await));
        }
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert_eq!(received, [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_dropped_receiver_stops_senders() {
        let (sender, receiver) = mailbox::<u32>("/a/b", config(1, 1));
        drop(receiver);
        let stopped = Error::Stopped {
            actor: "/a/b".to_string(),
        };
        assert!(sender.is_closed());
        assert_eq!(sender.try_send(1, Lane::Normal), Err(stopped.clone()));
        assert_eq!(sender.signal(Signal::Stop), Err(stopped.clone()));
        let waited = sender
            .send_timeout(1, Lane::Priority, Duration::from_secs(1))
            .await;
        assert_eq!(waited, Err(stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_wakes_a_waiting_sender_with_stopped() {
        let (sender, mut receiver) = mailbox::<u32>("/a", config(1, 1));
        sender.try_send(1, Lane::Normal).unwrap();
        let waiting_sender = sender.clone();
        let waiting = tokio::spawn(async move {
            waiting_sender
                .send_timeout(2, Lane::Normal, Duration::from_secs(10))
                .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        receiver.close();
        assert!(matches!(waiting.await.unwrap(), Err(Error::Stopped { .. })));
        // What was queued before the close can still be drained (to the dead letters).
        assert_eq!(message(receiver.recv().await), 1);
        assert_eq!(receiver.recv().await, None);
    }

    #[tokio::test]
    async fn dropping_the_receiver_drops_queued_messages() {
        let (sender, receiver) = mailbox::<Arc<()>>("/a", config(4, 4));
        let tracked = Arc::new(());
        sender.try_send(Arc::clone(&tracked), Lane::Normal).unwrap();
        sender
            .try_send(Arc::clone(&tracked), Lane::Priority)
            .unwrap();
        assert_eq!(Arc::strong_count(&tracked), 3);
        drop(receiver);
        assert_eq!(Arc::strong_count(&tracked), 1);
        assert_eq!((sender.stats().len, sender.stats().priority_len), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_lose_nothing_and_keep_order_per_sender() {
        const SENDERS: u32 = 4;
        const PER_SENDER: u32 = 500;
        let (sender, mut receiver) = mailbox::<(u32, u32)>("/a", config(8, 2));
        let mut tasks = Vec::new();
        for id in 0..SENDERS {
            let sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                let mut accepted = Vec::new();
                for sequence in 0..PER_SENDER {
                    let lane = if sequence % 10 == 0 {
                        Lane::Priority
                    } else {
                        Lane::Normal
                    };
                    let sent = if sequence % 3 == 0 {
                        sender.try_send((id, sequence), lane)
                    } else {
                        sender
                            .send_timeout((id, sequence), lane, Duration::from_secs(60))
                            .await
                    };
                    if sent.is_ok() {
                        accepted.push((sequence, lane));
                    }
                }
                accepted
            }));
        }
        drop(sender);
        let mut received: Vec<Vec<u32>> = vec![Vec::new(); SENDERS as usize];
        while let Some(envelope) = receiver.recv().await {
            let (id, sequence) = message(Some(envelope));
            received[id as usize].push(sequence);
        }
        for (id, task) in tasks.into_iter().enumerate() {
            let accepted = task.await.unwrap();
            for lane in [Lane::Normal, Lane::Priority] {
                let sent: Vec<u32> = accepted
                    .iter()
                    .filter(|(_, sent_lane)| *sent_lane == lane)
                    .map(|(sequence, _)| *sequence)
                    .collect();
                let got: Vec<u32> = received[id]
                    .iter()
                    .copied()
                    .filter(|sequence| (sequence % 10 == 0) == (lane == Lane::Priority))
                    .collect();
                assert_eq!(got, sent, "sender {id}, lane {lane:?}");
            }
        }
    }

    #[tokio::test]
    async fn closing_to_dead_letters_records_each_queued_message() {
        let (sender, mut receiver) = mailbox::<u32>("/a/b", config(4, 4));
        sender.try_send(1, Lane::Normal).unwrap();
        sender.try_send(2, Lane::Priority).unwrap();
        sender.signal(Signal::Stop).unwrap();
        let dead_letters = DeadLetters::default();
        let recorded = receiver.close_to_dead_letters(&dead_letters, "recipient stopped");
        assert_eq!(recorded, 2);
        assert_eq!(dead_letters.count(), 2);
        let letter = &dead_letters.recent()[0];
        assert_eq!(letter.recipient, "/a/b");
        assert_eq!(letter.message_type, "u32");
        assert_eq!(letter.reason, "recipient stopped");
        assert!(matches!(
            sender.try_send(3, Lane::Normal),
            Err(Error::Stopped { .. })
        ));
        assert_eq!(receiver.recv().await, None);
    }

    #[test]
    fn stats_serialize() {
        let (sender, _receiver) = mailbox::<u32>("/a", config(2, 1));
        sender.try_send(1, Lane::Normal).unwrap();
        let json = serde_json::to_value(sender.stats()).unwrap();
        assert_eq!(json["len"], 1);
        assert_eq!(json["capacity"], 2);
        assert_eq!(json["priority_capacity"], 1);
    }

    #[test]
    #[should_panic(expected = "capacity must be at least 1")]
    fn a_zero_capacity_is_refused() {
        let _ = mailbox::<u32>("/a", config(0, 1));
    }
}
