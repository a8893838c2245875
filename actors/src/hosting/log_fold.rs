//! Folding entities that derive part of their life from other streams (the order sagas,
//! which journal only what the account's and the book's events do not say, see
//! [`Persistent::must_journal`]).
//!
//! Such an entity's own stream is an exact prefix of its life; the rest are the facts other
//! streams record about it ([`Persistent::related_tag`]), which it takes as idempotent inputs.
//! [`fold_from_journal`] rebuilds one entity that way: its own events, then every related
//! fact (a fact it knew already decides nothing). [`LogFold`] folds many from the global log
//! in log order, as read models and the saga host's resume read it, and says when it cannot
//! be sure of an entity (the log read from the middle, a fact that shows an earlier one was
//! missed, own events written after related facts were folded): the entity must then be
//! folded from the journal instead.

use std::collections::HashMap;

use tradefloor_persistence::{Error as JournalError, Filter, Journal, StoredEvent};

use crate::hosting::entity::{Persistent, stream_of};

/// An entity folded from the log.
#[derive(Clone, Debug)]
pub(crate) struct Folded<P> {
    /// Its state.
    pub(crate) state: P,
    /// The last sequence of its own stream folded in.
    pub(crate) sequence: u64,
    /// The global offset it is folded through: events at or before it are in already.
    through: u64,
    /// Related facts were folded in after its last own event: an own event that follows may
    /// repeat them (written late, see [`Persistent::must_journal`]), so it cannot just be
    /// applied.
    absorbed: bool,
}

/// What folding one stored event did to an entity it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Folding {
    /// The entity changed.
    Changed(String),
    /// The fold cannot tell the entity's state from the log alone and forgot it: fold it from
    /// the journal ([`fold_from_journal`]).
    Unsure(String),
}

/// Entities of kind `P` folded from the global log, in log order.
pub(crate) struct LogFold<P: Persistent> {
    prefix: String,
    entities: HashMap<String, Folded<P>>,
    /// Related facts of entities not started yet (a hold recorded just before its saga's
    /// start), at most `early_max`: past it they are dropped, and what misses them is unsure.
    early: HashMap<String, Vec<P::Command>>,
    early_count: usize,
    early_max: usize,
}

impl<P: Persistent> LogFold<P> {
    /// An empty fold keeping up to `early_max` facts that come before their entity's start.
    pub(crate) fn new(early_max: usize) -> Self {
        Self {
            prefix: format!("{}|", P::KIND),
            entities: HashMap::new(),
            early: HashMap::new(),
            early_count: 0,
            early_max,
        }
    }

    /// The entity `id`, if folded.
    pub(crate) fn get(&self, id: &str) -> Option<&Folded<P>> {
        self.entities.get(id)
    }

    /// Forgets entity `id` (e.g. finished).
    pub(crate) fn remove(&mut self, id: &str) {
        self.entities.remove(id);
    }

    /// How many entities are folded.
    pub(crate) fn len(&self) -> usize {
        self.entities.len()
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.entities.clear();
        self.early.clear();
        self.early_count = 0;
    }

    /// Takes an entity folded from the journal through some offset.
    pub(crate) fn insert(&mut self, id: String, folded: Folded<P>) {
        self.entities.insert(id, folded);
    }

    /// The ids of the folded entities.
    pub(crate) fn into_ids(self) -> impl Iterator<Item = String> {
        self.entities.into_keys()
    }

    /// Folds `stored` into the entities it concerns that `select` picks, saying what it did
    /// to each in `out`.
    pub(crate) fn fold(
        &mut self,
        stored: &StoredEvent,
        select: impl Fn(&str) -> bool,
        out: &mut Vec<Folding>,
    ) {
        if let Some(id) = stored.stream.strip_prefix(&self.prefix) {
            if select(id) {
                out.push(self.fold_own(id, stored));
            }
            return;
        }
        for (id, command) in P::related_inputs(stored) {
            if select(&id)
                && let Some(folding) = self.fold_related(id, stored.global_offset, command)
            {
                out.push(folding);
            }
        }
    }

    fn fold_own(&mut self, id: &str, stored: &StoredEvent) -> Folding {
        let Ok(event) = P::codec().decode_shared(stored) else {
            self.entities.remove(id);
            return Folding::Unsure(id.to_owned());
        };
        match self.entities.get_mut(id) {
            Some(folded) if stored.global_offset <= folded.through => {
                return Folding::Changed(id.to_owned());
            }
            Some(folded) if stored.sequence == folded.sequence + 1 && !folded.absorbed => {
                folded.state.apply(&event);
                folded.sequence = stored.sequence;
                folded.through = stored.global_offset;
            }
            None if stored.sequence == 1 => {
                let mut state = P::default();
                state.apply(&event);
                let mut absorbed = false;
                if let Some(early) = self.early.remove(id) {
                    self.early_count -= early.len();
                    for command in &early {
                        absorbed |= decide_and_apply(&mut state, command, |_| {});
                    }
                }
                let folded = Folded {
                    state,
                    sequence: 1,
                    through: stored.global_offset,
                    absorbed,
                };
                self.entities.insert(id.to_owned(), folded);
            }
            _ => {
                self.entities.remove(id);
                return Folding::Unsure(id.to_owned());
            }
        }
        Folding::Changed(id.to_owned())
    }

    fn fold_related(&mut self, id: String, offset: u64, command: P::Command) -> Option<Folding> {
        let Some(folded) = self.entities.get_mut(&id) else {
            let mut state = P::default();
            if decide_and_apply(&mut state, &command, |_| {}) {
                // A fact that starts the entity (a hold that carries its saga's start): the
                // entity's own stream may follow with it written late, so it is absorbed.
                // The other inputs of the same stored event follow, so `through` stays before it.
                let folded = Folded {
                    state,
                    sequence: 0,
                    through: offset.saturating_sub(1),
                    absorbed: true,
                };
                self.entities.insert(id.clone(), folded);
                return Some(Folding::Changed(id));
            }
            if P::default().misses_an_earlier_fact(&command) {
                return Some(Folding::Unsure(id));
            }
            if self.early_count >= self.early_max {
                self.early.clear();
                self.early_count = 0;
            }
            self.early.entry(id).or_default().push(command);
            self.early_count += 1;
            return None;
        };
        if offset <= folded.through {
            return None;
        }
        folded.through = offset;
        if folded.state.misses_an_earlier_fact(&command) {
            self.entities.remove(&id);
            return Some(Folding::Unsure(id));
        }
        if decide_and_apply(&mut folded.state, &command, |_| {}) {
            folded.absorbed = true;
            return Some(Folding::Changed(id));
        }
        None
    }
}

/// Decides `command` against `state` and applies what it decided (a refusal decides nothing,
/// as the answer the fact stands for would have), handing each event to `each`. Whether
/// anything was decided.
fn decide_and_apply<P: Persistent>(
    state: &mut P,
    command: &P::Command,
    mut each: impl FnMut(&P::Event),
) -> bool {
    let events = state.decide(command).unwrap_or_default();
    for event in &events {
        state.apply(event);
        each(event);
    }
    !events.is_empty()
}

/// Folds entity `id` from the journal, through global offset `through`: its own events, then
/// the facts tagged for it, as inputs. Also returns the events those facts decided.
pub(crate) async fn fold_from_journal<P: Persistent>(
    journal: &Journal,
    id: &str,
    through: u64,
    page_events: usize,
) -> Result<(Folded<P>, Vec<P::Event>), JournalError> {
    let stream = stream_of::<P>(id);
    let codec = P::codec();
    let mut state = P::default();
    let mut sequence = 0;
    'own: loop {
        let page = journal
            .read_stream(&stream, sequence + 1, page_events)
            .await?;
        if page.is_empty() {
            break;
        }
        for stored in &page {
            if stored.global_offset > through {
                break 'own;
            }
            assert_eq!(stored.sequence, sequence + 1, "a stream has no gaps");
            state.apply(&codec.decode(stored)?);
            sequence = stored.sequence;
        }
    }
    let mut derived = Vec::new();
    if let Some(tag) = P::related_tag(id) {
        let filter = Filter::Tag(tag);
        let mut after = 0;
        'related: loop {
            let page = journal.read_all(after, page_events, &filter).await?;
            let Some(last) = page.last() else { break };
            after = last.global_offset;
            for stored in &page {
                if stored.global_offset > through {
                    break 'related;
                }
                for (target, command) in P::related_inputs(stored) {
                    if target == id {
                        decide_and_apply(&mut state, &command, |event| {
                            derived.push(event.clone());
                        });
                    }
                }
            }
        }
    }
    let folded = Folded {
        state,
        sequence,
        through,
        absorbed: !derived.is_empty(),
    };
    Ok((folded, derived))
}
