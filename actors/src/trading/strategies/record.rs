//! A strategy's journal folded: what it is, whether it runs, where it resumes.

use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;
use tradefloor_strategy::engine::RECENT_DECISIONS_MAX;
use tradefloor_strategy::{StrategyEvent, StrategySpec, StrategyState};

/// What a strategy's journal says, folded.
#[derive(Clone, Debug, Default)]
pub struct StrategyRecord {
    /// Its spec (`None` before `created`).
    pub spec: Option<StrategySpec>,
    /// Whether its last start is later than its last stop.
    pub running: bool,
    /// The last start: when, and the account's base and quote then.
    pub started: Option<(i64, u64, u64)>,
    /// The log offset it resumes after.
    pub cursor: u64,
    /// The state it resumes from (the last checkpoint's).
    pub state: Option<StrategyState>,
    /// The latest journaled decisions and order answers, newest last.
    pub journal: VecDeque<JournalEntry>,
    /// The start of the last bar a decision was journaled for.
    pub last_decided_bar: Option<i64>,
    /// Orders the placement answered.
    pub orders_answered: u64,
    /// Orders the placement refused.
    pub orders_failed: u64,
    /// The client ids of the orders answered since the last checkpoint: a strategy that
    /// resumes from it decides those bars again and need not place them again.
    pub answered_since_checkpoint: BTreeSet<u64>,
    /// The last stop's reason and orders cancelled.
    pub stopped: Option<(String, u32)>,
    /// The stream's sequence folded.
    pub sequence: u64,
}

/// A journaled decision or order answer, as users read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalEntry {
    /// The event's name.
    pub event: &'static str,
    /// The event.
    pub body: serde_json::Value,
}

impl JournalEntry {
    /// The entry of `event`.
    pub fn of(event: &StrategyEvent) -> Self {
        use tradefloor_domain::Message;
        Self {
            event: event.name(),
            body: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        }
    }
}

impl StrategyRecord {
    /// Folds the next event (at `sequence`).
    pub fn apply(&mut self, sequence: u64, event: &StrategyEvent) {
        self.sequence = sequence;
        match event {
            StrategyEvent::Created { spec } => self.spec = Some(spec.clone()),
            StrategyEvent::Started {
                at,
                from_offset,
                base,
                quote,
            } => {
                self.running = true;
                self.started = Some((*at, *base, *quote));
                self.cursor = *from_offset;
                self.stopped = None;
            }
            StrategyEvent::Decided { bar_start, .. } => {
                self.last_decided_bar = Some(*bar_start);
                self.remember(event);
            }
            StrategyEvent::OrderAnswered {
                client_order_id, ..
            } => {
                self.answered_since_checkpoint.insert(*client_order_id);
                self.orders_answered += 1;
                self.remember(event);
            }
            StrategyEvent::OrderFailed {
                client_order_id, ..
            } => {
                self.answered_since_checkpoint.insert(*client_order_id);
                self.orders_failed += 1;
                self.remember(event);
            }
            StrategyEvent::Checkpointed { cursor, state } => {
                self.answered_since_checkpoint.clear();
                self.cursor = *cursor;
                self.state = Some((**state).clone());
            }
            StrategyEvent::Stopped {
                reason, cancelled, ..
            } => {
                self.running = false;
                self.stopped = Some((reason.clone(), *cancelled));
            }
        }
    }

    fn remember(&mut self, event: &StrategyEvent) {
        if self.journal.len() == RECENT_DECISIONS_MAX {
            self.journal.pop_front();
        }
        self.journal.push_back(JournalEntry::of(event));
    }
}
