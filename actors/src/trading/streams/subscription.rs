//! One client's subscription to a topic: what it missed from the journal, then live.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tradefloor_persistence::{Filter, Journal};

use super::Topic;
use super::hub::SubscriptionGuard;
use super::message::{
    Interest, PARTS_PER_EVENT, StreamMessage, message_id, messages_of, offset_of,
};

/// Events per journal read while a subscription catches up.
const CATCH_UP_PAGE_EVENTS: usize = 1_000;

/// Why a subscription ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The subscriber fell more than its topic's channel holds behind: it missed `missed`
    /// messages and must resume from its last id.
    Lagged {
        /// Messages it missed.
        missed: u64,
    },
    /// The hub stopped (the node is shutting down).
    Closed,
    /// The journal could not be read while catching up.
    Storage(String),
}

impl std::fmt::Display for StreamEnd {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamEnd::Lagged { missed } => write!(
                formatter,
                "the client read too slowly and {missed} messages were dropped; resume from the last id"
            ),
            StreamEnd::Closed => write!(formatter, "the node is shutting down"),
            StreamEnd::Storage(reason) => {
                write!(formatter, "the journal could not be read: {reason}")
            }
        }
    }
}

/// The part of the log a resumed subscription reads from the journal: the offsets after
/// `after`, up to `until` (the log's head when it subscribed).
#[derive(Debug)]
struct CatchUp {
    after: u64,
    until: u64,
    /// The client's last id: messages at or below it are skipped.
    seen: u64,
}

/// A client's view of one topic (see the [module](super)).
#[derive(Debug)]
pub struct Subscription {
    topic: Topic,
    journal: Journal,
    receiver: broadcast::Receiver<Arc<StreamMessage>>,
    catch_up: Option<CatchUp>,
    /// Read from the journal, not yet taken.
    queue: VecDeque<Arc<StreamMessage>>,
    /// Live messages with an id at or below it were read from the journal.
    skip_through: u64,
    _guard: SubscriptionGuard,
}

impl Subscription {
    pub(super) fn new(
        topic: Topic,
        journal: Journal,
        receiver: broadcast::Receiver<Arc<StreamMessage>>,
        resume: Option<(u64, u64)>,
        guard: SubscriptionGuard,
    ) -> Self {
        let catch_up = resume.map(|(seen, until)| CatchUp {
            // The event of the last id seen may have made more messages after it.
            after: offset_of(seen).saturating_sub(1),
            until,
            seen,
        });
        Self {
            topic,
            journal,
            receiver,
            catch_up,
            queue: VecDeque::new(),
            // Every message of the events up to the head comes from the journal.
            skip_through: resume.map_or(0, |(seen, until)| {
                seen.max(message_id(until, PARTS_PER_EVENT - 1))
            }),
            _guard: guard,
        }
    }

    /// Its topic.
    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// The next message: first those missed (from the journal), then live ones.
    pub async fn next(&mut self) -> Result<Arc<StreamMessage>, StreamEnd> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Ok(message);
            }
            if self.catch_up.is_some() {
                self.read_page().await?;
                continue;
            }
            match self.receiver.recv().await {
                Ok(message) if message.id.is_some_and(|id| id <= self.skip_through) => {}
                Ok(message) => return Ok(message),
                Err(RecvError::Lagged(missed)) => return Err(StreamEnd::Lagged { missed }),
                Err(RecvError::Closed) => return Err(StreamEnd::Closed),
            }
        }
    }

    /// A live message if one is waiting, without waiting (`None` while catching up).
    pub fn try_next(&mut self) -> Option<Result<Arc<StreamMessage>, StreamEnd>> {
        if let Some(message) = self.queue.pop_front() {
            return Some(Ok(message));
        }
        if self.catch_up.is_some() {
            return None;
        }
        loop {
            match self.receiver.try_recv() {
                Ok(message) if message.id.is_some_and(|id| id <= self.skip_through) => {}
                Ok(message) => return Some(Ok(message)),
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    return Some(Err(StreamEnd::Lagged { missed }));
                }
                Err(broadcast::error::TryRecvError::Closed) => return Some(Err(StreamEnd::Closed)),
            }
        }
    }

    /// Reads the next page of the log the subscription missed into its queue.
    async fn read_page(&mut self) -> Result<(), StreamEnd> {
        let Some(catch_up) = &mut self.catch_up else {
            return Ok(());
        };
        let filter = match self.topic {
            Topic::Market(_) => Filter::Kind("order_book".to_owned()),
            Topic::Account(_) => Filter::All,
        };
        let events = self
            .journal
            .read_all(catch_up.after, CATCH_UP_PAGE_EVENTS, &filter)
            .await
            .map_err(|error| StreamEnd::Storage(error.to_string()))?;
        let full = events.len() >= CATCH_UP_PAGE_EVENTS.min(self.journal.config().read_rows_max);
        let passed = events
            .last()
            .is_some_and(|last| last.global_offset >= catch_up.until);
        let mut messages = Vec::new();
        let interest = Interest::of([self.topic]);
        for event in &events {
            if event.global_offset > catch_up.until {
                break;
            }
            catch_up.after = event.global_offset;
            messages_of(event, &interest, &mut messages).map_err(StreamEnd::Storage)?;
        }
        let seen = catch_up.seen;
        self.queue.extend(
            messages
                .into_iter()
                .filter(|message| message.id.is_some_and(|id| id > seen)),
        );
        if !full || passed {
            self.catch_up = None;
        }
        Ok(())
    }
}
