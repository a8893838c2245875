//! Dead letters: messages that could not be delivered, counted and the latest kept.
//!
//! A message to a stopped actor, or one left in a mailbox when its actor stopped, is not an
//! error the sender can always see (a `tell` has no reply). Counting every one and keeping
//! the last few makes lost messages visible in the actor tree and in metrics. Only the last
//! [`DeadLettersConfig::recent_max`] are kept, so a storm of dead letters costs a bounded
//! amount of memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default number of recent dead letters kept for inspection.
pub const DEAD_LETTERS_RECENT_MAX_DEFAULT: usize = 128;

/// How many dead letters are kept for inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLettersConfig {
    /// The most recent dead letters kept; older ones are only counted.
    pub recent_max: usize,
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        Self {
            recent_max: DEAD_LETTERS_RECENT_MAX_DEFAULT,
        }
    }
}

/// One message that was not delivered. It describes the message; it does not hold it, so a
/// dead letter keeps no payload (or reply port) alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The path of the actor it was addressed to.
    pub recipient: String,
    /// The message's type name (for example from `std::any::type_name`).
    pub message_type: String,
    /// Why it was not delivered (recipient stopped, dropped from a stopping mailbox, ...).
    pub reason: String,
    /// When it was recorded, in milliseconds since the Unix epoch (wall clock, for humans).
    pub at_unix_ms: u64,
}

impl DeadLetter {
    /// A dead letter recorded now.
    pub fn new(
        recipient: impl Into<String>,
        message_type: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        // A clock before 1970 is a broken host, not a reason to lose the dead letter.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            recipient: recipient.into(),
            message_type: message_type.into(),
            reason: reason.into(),
            at_unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// A dead letter for a message of type `M`, named by `std::any::type_name`.
    pub fn of<M>(recipient: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(recipient, std::any::type_name::<M>(), reason)
    }
}

#[derive(Debug)]
struct Inner {
    recent_max: usize,
    count: AtomicU64,
    recent: Mutex<VecDeque<DeadLetter>>,
}

/// The node's dead letters; clones share one store.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    inner: Arc<Inner>,
}

impl Default for DeadLetters {
    fn default() -> Self {
        Self::new(DeadLettersConfig::default())
    }
}

impl DeadLetters {
    /// An empty store keeping the last `config.recent_max` dead letters (zero keeps none and
    /// only counts).
    pub fn new(config: DeadLettersConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                recent_max: config.recent_max,
                count: AtomicU64::new(0),
                recent: Mutex::new(VecDeque::with_capacity(config.recent_max)),
            }),
        }
    }

    /// Counts `letter` and keeps it, dropping the oldest kept one if the store is full.
    pub fn record(&self, letter: DeadLetter) {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            recipient = %letter.recipient,
            message_type = %letter.message_type,
            reason = %letter.reason,
            "dead letter"
        );
        if self.inner.recent_max == 0 {
            return;
        }
        let mut recent = self.lock();
        if recent.len() == self.inner.recent_max {
            recent.pop_front();
        }
        recent.push_back(letter);
        assert!(recent.len() <= self.inner.recent_max);
    }

    /// How many dead letters were recorded since the store was made.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The kept dead letters, oldest first.
    pub fn recent(&self) -> Vec<DeadLetter> {
        self.lock().iter().cloned().collect()
    }

    /// How many dead letters are kept at most.
    pub fn recent_max(&self) -> usize {
        self.inner.recent_max
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<DeadLetter>> {
        // Each critical section is one push or pop: a poisoned lock still guards valid data.
        self.inner
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(index: usize) -> DeadLetter {
        DeadLetter::new(format!("/a/{index}"), "Message", "recipient stopped")
    }

    #[test]
    fn counts_every_letter_and_keeps_the_latest() {
        let dead_letters = DeadLetters::new(DeadLettersConfig { recent_max: 3 });
        for index in 0..10 {
            dead_letters.record(letter(index));
        }
        assert_eq!(dead_letters.count(), 10);
        let recipients: Vec<_> = dead_letters
            .recent()
            .into_iter()
            .map(|letter| letter.recipient)
            .collect();
        assert_eq!(recipients, ["/a/7", "/a/8", "/a/9"]);
    }

    #[test]
    fn fewer_letters_than_the_bound_are_all_kept() {
        let dead_letters = DeadLetters::default();
        assert_eq!(dead_letters.recent_max(), DEAD_LETTERS_RECENT_MAX_DEFAULT);
        dead_letters.record(letter(0));
        dead_letters.record(letter(1));
        assert_eq!(dead_letters.count(), 2);
        assert_eq!(
            dead_letters.recent_without_time(),
            [letter_like(0), letter_like(1)]
        );
    }

    /// `letter(index)` as `recent_without_time` shows it.
    fn letter_like(index: usize) -> DeadLetter {
        DeadLetter {
            at_unix_ms: 0,
            ..letter(index)
        }
    }

    impl DeadLetters {
        fn recent_without_time(&self) -> Vec<DeadLetter> {
            self.recent()
                .into_iter()
                .map(|letter| DeadLetter {
                    at_unix_ms: 0,
                    ..letter
                })
                .collect()
        }
    }

    #[test]
    fn a_zero_bound_only_counts() {
        let dead_letters = DeadLetters::new(DeadLettersConfig { recent_max: 0 });
        dead_letters.record(letter(0));
        assert_eq!(dead_letters.count(), 1);
        assert!(dead_letters.recent().is_empty());
    }

    #[test]
    fn clones_share_one_store() {
        let dead_letters = DeadLetters::new(DeadLettersConfig { recent_max: 2 });
        let clone = dead_letters.clone();
        clone.record(letter(0));
        dead_letters.record(letter(1));
        assert_eq!(clone.count(), 2);
        assert_eq!(
            dead_letters.recent_without_time(),
            [letter_like(0), letter_like(1)]
        );
    }

    #[test]
    fn concurrent_records_are_all_counted_and_bounded() {
        let dead_letters = DeadLetters::new(DeadLettersConfig { recent_max: 16 });
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let dead_letters = dead_letters.clone();
                scope.spawn(move || {
                    for index in 0..1000 {
                        dead_letters.record(letter(thread * 1000 + index));
                    }
                });
            }
        });
        assert_eq!(dead_letters.count(), 4000);
        assert_eq!(dead_letters.recent().len(), 16);
    }

    #[test]
    fn a_letter_names_its_message_type_and_serializes() {
        let letter = DeadLetter::of::<u64>("/guardian/x", "recipient stopped");
        assert_eq!(letter.message_type, "u64");
        assert!(letter.at_unix_ms > 0);
        let json = serde_json::to_value(&letter).unwrap();
        assert_eq!(json["recipient"], "/guardian/x");
        assert_eq!(json["reason"], "recipient stopped");
    }
}
