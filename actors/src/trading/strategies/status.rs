//! What users read of a strategy: kept by its actor as it decides, folded from its journal
//! when it does not run.

use std::collections::BTreeMap;

use serde::Serialize;
use tradefloor_strategy::engine::Decision;
use tradefloor_strategy::{BreakerState, Signal, Strategy, StrategySpec};

use super::record::{JournalEntry, StrategyRecord};

/// Whether a strategy runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Deciding bars as they close.
    Running,
    /// Stopped by a user (or never started).
    #[default]
    Stopped,
}

/// One predictor's breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerView {
    /// The predictor.
    pub predictor: String,
    /// Its breaker.
    pub state: BreakerState,
    /// Failures since the strategy started.
    pub failures_total: u64,
    /// Times it opened.
    pub opened_total: u64,
}

/// A strategy as users read it (its position and PnL are added from its account).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StrategyStatus {
    /// Its id.
    pub id: String,
    /// Its spec.
    pub spec: Option<StrategySpec>,
    /// Whether it runs.
    pub state: RunState,
    /// Why it last stopped, and the orders its stop cancelled.
    pub stopped: Option<(String, u32)>,
    /// When it last started, microseconds since the epoch.
    pub started_at: Option<i64>,
    /// Its account's base and quote at that start (its PnL counts from there).
    #[serde(skip)]
    pub start_balances: Option<(u64, u64)>,
    /// Ticks taken since its first start.
    pub ticks: u64,
    /// Bars decided since its first start.
    pub bars: u64,
    /// The last bar's close.
    pub last_close: Option<u64>,
    /// The last signal.
    pub signal: Option<Signal>,
    /// Whether the last signal used a cached prediction for a failing predictor.
    pub fallback: bool,
    /// Each predictor's breaker.
    pub breakers: Vec<BreakerView>,
    /// The latest decisions, newest last, with each predictor's part.
    pub decisions: Vec<Decision>,
    /// The latest journaled decisions and order answers, newest last.
    pub journal: Vec<JournalEntry>,
    /// Orders the placement answered.
    pub orders_answered: u64,
    /// Orders the placement refused.
    pub orders_failed: u64,
    /// Model files that failed to read at their last change, with why.
    pub model_errors: BTreeMap<String, String>,
}

impl StrategyStatus {
    /// The status of a strategy's journal, not running.
    pub fn of_record(id: &str, record: &StrategyRecord) -> Self {
        let mut status = Self {
            id: id.to_owned(),
            ..Self::default()
        };
        status.record(record);
        if let Some(state) = &record.state {
            status.ticks = state.ticks;
            status.bars = state.bars_decided;
            status.decisions = state.decisions.iter().cloned().collect();
            status.last_close = state.last_close;
            status.signal = state.last_signal;
        }
        status
    }

    fn record(&mut self, record: &StrategyRecord) {
        self.spec.clone_from(&record.spec);
        self.state = if record.running {
            RunState::Running
        } else {
            RunState::Stopped
        };
        self.stopped.clone_from(&record.stopped);
        self.started_at = record.started.map(|(at, _, _)| at);
        self.start_balances = record.started.map(|(_, base, quote)| (base, quote));
        self.journal = record.journal.iter().cloned().collect();
        self.orders_answered = record.orders_answered;
        self.orders_failed = record.orders_failed;
    }

    /// The actor started on `record` with `strategy`.
    pub fn running(&mut self, record: &StrategyRecord, strategy: &Strategy) {
        self.record(record);
        self.state = RunState::Running;
        self.observe(strategy);
    }

    /// The actor decided a bar.
    pub fn decided(&mut self, strategy: &Strategy, decision: &Decision) {
        self.observe(strategy);
        self.last_close = Some(decision.bar.close);
        self.signal = Some(decision.signal);
        self.fallback = decision.signal.fallback;
    }

    /// A journaled decision (`None`), or an order answered (`Some(true)`) or refused.
    pub fn entry(&mut self, answered: Option<bool>, entry: JournalEntry) {
        match answered {
            Some(true) => self.orders_answered += 1,
            Some(false) => self.orders_failed += 1,
            None => {}
        }
        if self.journal.len() == tradefloor_strategy::engine::RECENT_DECISIONS_MAX {
            self.journal.remove(0);
        }
        self.journal.push(entry);
    }

    /// A model file was read again, or failed to.
    pub fn model_reloaded(&mut self, path: &str, error: Option<String>) {
        match error {
            Some(error) => self.model_errors.insert(path.to_owned(), error),
            None => self.model_errors.remove(path),
        };
    }

    fn observe(&mut self, strategy: &Strategy) {
        let state = strategy.state();
        self.ticks = state.ticks;
        self.bars = state.bars_decided;
        self.decisions = state.decisions.iter().cloned().collect();
        self.breakers = strategy
            .breakers()
            .into_iter()
            .map(|(predictor, breaker)| BreakerView {
                predictor,
                state: breaker.state(),
                failures_total: breaker.failures_total,
                opened_total: breaker.opened_total,
            })
            .collect();
    }
}
