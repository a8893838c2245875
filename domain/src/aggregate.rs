//! The one shape every state machine here has, so the runtime can host any of them.
//!
//! `decide` holds every business rule and reads state without changing it; `apply` folds a
//! decided event into state, cannot fail and checks nothing but invariants. Replaying the
//! events a state machine emitted, from its default state, gives back the same state.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A command or event type that travels and is stored: it has a stable name per variant and a
/// schema version per type, which the journal's codec keeps in the envelope.
pub trait Message: Serialize + DeserializeOwned + Clone + Debug + PartialEq {
    /// Version of this type's schema. Bump it when the serialized shape changes and add an
    /// upcaster for the old version in the codec.
    const SCHEMA_VERSION: u16;

    /// Every name [`name`](Message::name) can return: a stored name outside this list is
    /// refused when read back, rather than decoded as whatever variant has its index.
    const NAMES: &'static [&'static str];

    /// The stable name of this variant, e.g. `account.deposited`. Never reuse a name.
    fn name(&self) -> &'static str;
}

/// Which lane of a mailbox a command should travel in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Served in arrival order.
    Normal,
    /// Served before every queued normal command (e.g. order cancels).
    High,
}

/// An event-sourced state machine: an aggregate (account, order book) or a saga.
pub trait Aggregate: Default + Clone + Debug {
    /// Stable name of the kind of entity, used in persistence ids and metrics.
    const KIND: &'static str;
    /// What callers ask for.
    type Command: Message;
    /// What happened; the only thing persisted.
    type Event: Message;
    /// What a caller is told after its command was applied (or repeated).
    type Reply: Debug + Clone + PartialEq;

    /// Decides the events a command produces, pushing them onto `events`, or refuses it.
    ///
    /// Must not mutate anything but `events`. On error the caller discards whatever was
    /// pushed. A repeated idempotent command decides no events.
    fn decide_into(
        &self,
        command: &Self::Command,
        events: &mut Vec<Self::Event>,
    ) -> Result<(), Error>;

    /// Folds one decided event into the state. Never fails: rules live in `decide`.
    fn apply(&mut self, event: &Self::Event);

    /// The reply to `command` once `events` (what it decided, possibly none for a repeat)
    /// have been applied to `self`.
    fn reply(&self, command: &Self::Command, events: &[Self::Event]) -> Self::Reply;

    /// The mailbox lane for `command`; normal unless the aggregate says otherwise.
    fn priority(_command: &Self::Command) -> Priority {
        Priority::Normal
    }

    /// Decides the events of a command into a new vector.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Error> {
        let mut events = Vec::new();
        self.decide_into(command, &mut events)?;
        Ok(events)
    }

    /// Decides, applies and replies in one step: what an in-memory host does, and what a
    /// persistent host does with a journal write between `decide` and `apply`.
    fn execute(
        &mut self,
        command: &Self::Command,
    ) -> Result<(Vec<Self::Event>, Self::Reply), Error> {
        let events = self.decide(command)?;
        for event in &events {
            self.apply(event);
        }
        let reply = self.reply(command, &events);
        Ok((events, reply))
    }

    /// Rebuilds a state from its events, in order, starting from the default state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Message;
    use crate::account::{AccountCommand, AccountEvent};
    use crate::book::{BookCommand, BookEvent};
    use crate::saga::{SagaEvent, SagaInput};

    #[test]
    fn message_names_are_unique_within_commands_and_within_events() {
        let commands = [AccountCommand::NAMES, BookCommand::NAMES, SagaInput::NAMES].concat();
        let events = [AccountEvent::NAMES, BookEvent::NAMES, SagaEvent::NAMES].concat();
        for names in [commands, events] {
            let unique: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), names.len(), "a name is used twice: {names:?}");
        }
    }
}
