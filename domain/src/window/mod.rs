//! Windows over event time: one operator for candles and for the pattern rules.
//!
//! A [`WindowOperator`] assigns keyed, timestamped inputs to windows ([`WindowSpec`]:
//! tumbling, hopping, session or count), folds each window's inputs with an
//! [`Accumulator`], and emits results as the **watermark** passes the windows' ends.
//!
//! - **Event time.** A window is `[start, end)` in the inputs' own times (microseconds), not
//!   in arrival order. Count windows are the exception: every `size` inputs of a key, in
//!   arrival order.
//! - **Watermark.** The latest event time seen minus [`WindowConfig::out_of_orderness`]: the
//!   operator's belief that nothing older is still to come. A window *closes* when the
//!   watermark reaches its end ([`EmissionKind::Closed`]).
//! - **Allowed lateness.** A closed window is kept [`WindowConfig::allowed_lateness`] longer:
//!   an input that still falls in it updates it and emits [`EmissionKind::Late`]. An input
//!   whose windows are all gone is *late*: counted ([`WindowOperator::late`]) and, if
//!   [`LatePolicy::SideOutput`], returned as a [`Late`] for the caller to route elsewhere.
//! - **Emit.** [`Emit::OnClose`] emits each window once, when it closes (and again for late
//!   updates); [`Emit::OnUpdate`] also emits it after every input ([`EmissionKind::Updated`]).
//! - **Bounded.** At most [`WindowConfig::windows_max`] windows are open; past it the
//!   earliest-ending is closed early ([`WindowOperator::evicted`] counts them), so a flood of
//!   keys costs bounded memory.
//!
//! Pure: no clock, no I/O. The caller feeds inputs ([`WindowOperator::push`]) and, when time
//! passes without inputs, moves the watermark itself ([`WindowOperator::advance_to`]).

use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod tests;

/// Which windows an input falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// Back-to-back windows of `width`: each input in exactly one.
    Tumbling {
        /// Width, microseconds.
        width: i64,
    },
    /// Windows of `width` starting every `hop` (sliding when `hop < width`): each input in
    /// `width / hop` of them (rounded up).
    Hopping {
        /// Width, microseconds.
        width: i64,
        /// Between two windows' starts, microseconds.
        hop: i64,
    },
    /// Per key, inputs closer than `gap` to one another: a window from the first input to the
    /// last plus `gap`. An input between two sessions that bridges them merges them.
    Session {
        /// The quiet time that ends a session, microseconds.
        gap: i64,
    },
    /// Per key, every `size` inputs in arrival order.
    Count {
        /// Inputs per window.
        size: u64,
    },
}

impl WindowSpec {
    /// Why this spec cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            WindowSpec::Tumbling { width } if width <= 0 => Err("width must be positive".into()),
            WindowSpec::Hopping { width, hop } if width <= 0 || hop <= 0 || hop > width => {
                Err("a hopping window needs 0 < hop <= width".into())
            }
            WindowSpec::Session { gap } if gap <= 0 => Err("gap must be positive".into()),
            WindowSpec::Count { size: 0 } => Err("size must be positive".into()),
            _ => Ok(()),
        }
    }

    /// The starts of the time windows `at` falls in (tumbling and hopping), earliest first.
    pub fn starts(&self, at: i64) -> Vec<i64> {
        let (width, hop) = match *self {
            WindowSpec::Tumbling { width } => (width, width),
            WindowSpec::Hopping { width, hop } => (width, hop),
            WindowSpec::Session { .. } | WindowSpec::Count { .. } => return Vec::new(),
        };
        let last = at - at.rem_euclid(hop);
        let mut starts = Vec::new();
        let mut start = last;
        while start > at - width {
            starts.push(start);
            start -= hop;
        }
        starts.reverse();
        starts
    }
}

/// When windows emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Once each, when the watermark closes it (and for each late update).
    OnClose,
    /// After every input too.
    OnUpdate,
}

/// What becomes of an input too late for any window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatePolicy {
    /// Counted and dropped.
    Drop,
    /// Counted and returned to the caller.
    SideOutput,
}

/// A window operator's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// Which windows.
    pub spec: WindowSpec,
    /// How far behind the latest event time the watermark trails, microseconds.
    pub out_of_orderness: i64,
    /// How long a closed window still takes late inputs, microseconds.
    pub allowed_lateness: i64,
    /// When windows emit.
    pub emit: Emit,
    /// What becomes of late inputs.
    pub late: LatePolicy,
    /// Most windows open at once.
    pub windows_max: usize,
}

impl WindowConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.spec.validate()?;
        if self.out_of_orderness < 0 || self.allowed_lateness < 0 {
            return Err("out_of_orderness and allowed_lateness are durations (≥ 0)".into());
        }
        if self.windows_max == 0 {
            return Err("windows_max must be positive".into());
        }
        Ok(())
    }
}

/// Folds a window's inputs.
pub trait Accumulator: Clone {
    /// What it folds.
    type Input;
    /// What a window emits.
    type Output;
    /// A window's state after its first input, at event time `at`.
    fn first(at: i64, input: &Self::Input) -> Self;
    /// Adds an input at event time `at` (not necessarily in time order).
    fn add(&mut self, at: i64, input: &Self::Input);
    /// Adds another window's state (two sessions bridged by an input).
    fn merge(&mut self, other: Self);
    /// The window's result.
    fn output(&self) -> Self::Output;
}

/// Why a window emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EmissionKind {
    /// An input changed it ([`Emit::OnUpdate`]); it is still open.
    Updated,
    /// The watermark passed its end (or it was evicted, or a count window filled).
    Closed,
    /// A late input changed it after it closed, within the allowed lateness.
    Late,
}

/// A window's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emission<K, O> {
    /// The key.
    pub key: K,
    /// Start (inclusive), microseconds; for count windows, the first input's time.
    pub start: i64,
    /// End (exclusive), microseconds; for count windows, the last input's time.
    pub end: i64,
    /// Why it emits.
    pub kind: EmissionKind,
    /// Its inputs folded.
    pub output: O,
}

/// An input too late for any window ([`LatePolicy::SideOutput`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Late<K, I> {
    /// Its key.
    pub key: K,
    /// Its event time.
    pub at: i64,
    /// The input.
    pub input: I,
}

/// What one push or watermark move gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output<K, O, I> {
    /// Windows emitted, in the order they emitted.
    pub emitted: Vec<Emission<K, O>>,
    /// Late inputs routed aside.
    pub late: Vec<Late<K, I>>,
}

impl<K, O, I> Default for Output<K, O, I> {
    fn default() -> Self {
        Self {
            emitted: Vec::new(),
            late: Vec::new(),
        }
    }
}

/// One open (or closed and kept) window.
#[derive(Clone, Debug)]
struct Open<A> {
    end: i64,
    state: A,
    /// Inputs in it (count windows close at their size).
    inputs: u64,
    closed: bool,
}

/// The operator (see the [module](self)).
#[derive(Clone, Debug)]
pub struct WindowOperator<K, A> {
    config: WindowConfig,
    /// By key, then start.
    windows: BTreeMap<(K, i64), Open<A>>,
    /// The open time windows by `(end, key, start)`: the next to close first.
    open_by_end: BTreeSet<(i64, K, i64)>,
    /// The closed windows kept for late inputs, by `(end + allowed lateness, key, start)`.
    kept_until: BTreeSet<(i64, K, i64)>,
    latest: Option<i64>,
    late: u64,
    evicted: u64,
}

impl<K: Ord + Clone, A: Accumulator> WindowOperator<K, A> {
    /// An operator with no windows yet.
    ///
    /// # Panics
    ///
    /// If `config` does not [validate](WindowConfig::validate).
    pub fn new(config: WindowConfig) -> Self {
        if let Err(reason) = config.validate() {
            panic!("invalid window config: {reason}");
        }
        Self {
            config,
            windows: BTreeMap::new(),
            open_by_end: BTreeSet::new(),
            kept_until: BTreeSet::new(),
            latest: None,
            late: 0,
            evicted: 0,
        }
    }

    /// The watermark: the latest event time seen minus the out-of-orderness (`i64::MIN`
    /// before any input).
    pub fn watermark(&self) -> i64 {
        self.latest.map_or(i64::MIN, |latest| {
            latest.saturating_sub(self.config.out_of_orderness)
        })
    }

    /// Inputs too late for any window so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Windows closed early to stay within [`WindowConfig::windows_max`].
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Windows held now (open, or closed and within the allowed lateness).
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether it holds no window.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Folds `input` of `key` at event time `at` into its windows; then moves the watermark
    /// and emits what it closes.
    pub fn push(&mut self, key: K, at: i64, input: A::Input) -> Output<K, A::Output, A::Input> {
        let mut output = Output::default();
        let watermark = self.watermark();
        let placed = match self.config.spec {
            WindowSpec::Count { size } => self.push_count(&key, at, &input, size, &mut output),
            WindowSpec::Session { gap } => self.push_session(&key, at, &input, gap, watermark),
            WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. } => {
                self.push_timed(&key, at, &input, watermark)
            }
        };
        match placed {
            Placed::Windows(starts) => self.emit_updates(&key, &starts, &mut output),
            Placed::Nowhere => {
                self.late += 1;
                if self.config.late == LatePolicy::SideOutput {
                    output.late.push(Late { key, at, input });
                }
            }
        }
        if !matches!(self.config.spec, WindowSpec::Count { .. }) {
            self.latest = Some(self.latest.map_or(at, |latest| latest.max(at)));
        }
        self.close_due(&mut output);
        self.evict(&mut output);
        output
    }

    /// Moves the watermark as if an input at `at` had come (time passing without inputs),
    /// and emits what it closes.
    pub fn advance_to(&mut self, at: i64) -> Output<K, A::Output, A::Input> {
        let mut output = Output::default();
        self.latest = Some(self.latest.map_or(at, |latest| latest.max(at)));
        self.close_due(&mut output);
        output
    }

    /// Whether a window ending at `end` still takes inputs at watermark `watermark`.
    fn accepts(&self, end: i64, watermark: i64) -> bool {
        watermark < end.saturating_add(self.config.allowed_lateness)
    }

    fn push_timed(&mut self, key: &K, at: i64, input: &A::Input, watermark: i64) -> Placed {
        let width = match self.config.spec {
            WindowSpec::Tumbling { width } | WindowSpec::Hopping { width, .. } => width,
            _ => unreachable!("timed windows only"),
        };
        let mut placed = Vec::new();
        for start in self.config.spec.starts(at) {
            let end = start.saturating_add(width);
            if !self.accepts(end, watermark) {
                continue;
            }
            match self.windows.get_mut(&(key.clone(), start)) {
                Some(open) => {
                    open.state.add(at, input);
                    open.inputs += 1;
                }
                None => {
                    let open = Open {
                        end,
                        state: A::first(at, input),
                        inputs: 1,
                        closed: false,
                    };
                    self.insert(key.clone(), start, open);
                }
            }
            placed.push(start);
        }
        Placed::of(placed)
    }

    fn push_session(
        &mut self,
        key: &K,
        at: i64,
        input: &A::Input,
        gap: i64,
        watermark: i64,
    ) -> Placed {
        let end = at.saturating_add(gap);
        if !self.accepts(end, watermark) {
            return Placed::Nowhere;
        }
        // Every session of the key this input touches: [start, end) overlapping [at, at+gap).
        let touching: Vec<i64> = self
            .windows
            .range((key.clone(), i64::MIN)..=(key.clone(), end))
            .filter(|((_, start), open)| *start <= end && open.end >= at)
            .map(|((_, start), _)| *start)
            .collect();
        let mut merged = Open {
            end,
            state: A::first(at, input),
            inputs: 1,
            closed: false,
        };
        let mut start = at;
        let mut any_closed = false;
        for touched in touching {
            let open = self.remove(key.clone(), touched).expect("listed");
            start = start.min(touched);
            merged.end = merged.end.max(open.end);
            merged.inputs += open.inputs;
            any_closed |= open.closed;
            merged.state.merge(open.state);
        }
        // A late input into a closed session updates it (a late emission), unless it moved
        // the session's end past the watermark: then it is open again.
        merged.closed = any_closed && watermark >= merged.end;
        self.insert(key.clone(), start, merged);
        Placed::Windows(vec![start])
    }

    fn push_count(
        &mut self,
        key: &K,
        at: i64,
        input: &A::Input,
        size: u64,
        output: &mut Output<K, A::Output, A::Input>,
    ) -> Placed {
        // A key has one count window at a time, under start i64::MIN.
        let slot = (key.clone(), i64::MIN);
        let open = self
            .windows
            .entry(slot.clone())
            .and_modify(|open| {
                open.state.add(at, input);
                open.inputs += 1;
                open.end = open.end.max(at);
            })
            .or_insert_with(|| Open {
                end: at,
                state: A::first(at, input),
                inputs: 1,
                closed: false,
            });
        if open.inputs < size {
            return Placed::Windows(vec![i64::MIN]);
        }
        let open = self.windows.remove(&slot).expect("just filled");
        output.emitted.push(Emission {
            key: key.clone(),
            start: i64::MIN,
            end: open.end,
            kind: EmissionKind::Closed,
            output: open.state.output(),
        });
        Placed::Windows(Vec::new())
    }

    /// [`Emit::OnUpdate`] emissions, and [`EmissionKind::Late`] ones for closed windows.
    fn emit_updates(&self, key: &K, starts: &[i64], output: &mut Output<K, A::Output, A::Input>) {
        for start in starts {
            let Some(open) = self.windows.get(&(key.clone(), *start)) else {
                continue;
            };
            let kind = if open.closed {
                EmissionKind::Late
            } else if self.config.emit == Emit::OnUpdate {
                EmissionKind::Updated
            } else {
                continue;
            };
            output.emitted.push(Emission {
                key: key.clone(),
                start: *start,
                end: open.end,
                kind,
                output: open.state.output(),
            });
        }
    }

    /// Closes the windows the watermark passed (emitting each) and drops those past their
    /// allowed lateness.
    fn close_due(&mut self, output: &mut Output<K, A::Output, A::Input>) {
        let watermark = self.watermark();
        while let Some((end, key, start)) = self
            .open_by_end
            .first()
            .filter(|(end, _, _)| *end <= watermark)
            .cloned()
        {
            self.open_by_end.remove(&(end, key.clone(), start));
            let open = self
                .windows
                .get_mut(&(key.clone(), start))
                .expect("indexed windows exist");
            open.closed = true;
            output.emitted.push(Emission {
                key: key.clone(),
                start,
                end,
                kind: EmissionKind::Closed,
                output: open.state.output(),
            });
            let until = end.saturating_add(self.config.allowed_lateness);
            self.kept_until.insert((until, key, start));
        }
        while let Some((until, key, start)) = self
            .kept_until
            .first()
            .filter(|(until, _, _)| *until <= watermark)
            .cloned()
        {
            self.kept_until.remove(&(until, key.clone(), start));
            self.windows.remove(&(key, start));
        }
    }

    /// Closes the earliest-ending windows early while more than the bound are held: kept
    /// closed ones first (they have emitted), then open ones.
    fn evict(&mut self, output: &mut Output<K, A::Output, A::Input>) {
        while self.windows.len() > self.config.windows_max {
            let (key, start) = match (self.kept_until.first(), self.open_by_end.first()) {
                (Some((_, key, start)), _) | (None, Some((_, key, start))) => (key.clone(), *start),
                // Only count windows: the one of the smallest key.
                (None, None) => self.windows.keys().next().cloned().expect("more than zero"),
            };
            let open = self.remove(key.clone(), start).expect("found");
            self.evicted += 1;
            if !open.closed {
                output.emitted.push(Emission {
                    key,
                    start,
                    end: open.end,
                    kind: EmissionKind::Closed,
                    output: open.state.output(),
                });
            }
        }
    }

    /// Holds `open` as `key`'s window from `start`, indexed by its end (time windows).
    fn insert(&mut self, key: K, start: i64, open: Open<A>) {
        if start != i64::MIN {
            if open.closed {
                let until = open.end.saturating_add(self.config.allowed_lateness);
                self.kept_until.insert((until, key.clone(), start));
            } else {
                self.open_by_end.insert((open.end, key.clone(), start));
            }
        }
        self.windows.insert((key, start), open);
    }

    /// Takes `key`'s window from `start` out, with its index entry.
    fn remove(&mut self, key: K, start: i64) -> Option<Open<A>> {
        let open = self.windows.remove(&(key.clone(), start))?;
        if open.closed {
            let until = open.end.saturating_add(self.config.allowed_lateness);
            self.kept_until.remove(&(until, key, start));
        } else {
            self.open_by_end.remove(&(open.end, key, start));
        }
        Some(open)
    }
}

/// Where an input went.
enum Placed {
    /// Into these windows (by start).
    Windows(Vec<i64>),
    /// Nowhere: too late for all of them.
    Nowhere,
}

impl Placed {
    fn of(starts: Vec<i64>) -> Self {
        if starts.is_empty() {
            Placed::Nowhere
        } else {
            Placed::Windows(starts)
        }
    }
}
