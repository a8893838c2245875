//! The backtest: recorded ticks through a strategy, each order filled whole at its bar's
//! close, with no fees; deterministic (the same ticks give the same report, bit for bit).
//!
//! A backtest can stop after any tick and write a [`Checkpoint`]; one resumed from it over the
//! same data gives the report an uninterrupted run gives.

use serde::{Deserialize, Serialize};

use crate::engine::{Decision, OrderSide, Position, Strategy};
use crate::error::Error;
use crate::report::{Fill, Report};
use crate::tick::Tick;

/// The simulated account: cash, position and the cost of what is held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Quote units.
    pub cash: i128,
    /// Base units held.
    pub position: u64,
    /// What the units held cost, in quote units.
    pub cost: i128,
    /// Equity after each decided bar: (bar start, equity in quote units).
    pub equity: Vec<(i64, i128)>,
    /// Every fill.
    pub fills: Vec<Fill>,
}

/// Where a backtest stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The strategy's id.
    pub strategy: String,
    /// Its state.
    pub state: crate::engine::StrategyState,
    /// The simulated account.
    pub ledger: Ledger,
}

/// A backtest in progress.
#[derive(Debug)]
pub struct Backtest {
    strategy: Strategy,
    ledger: Ledger,
}

impl Backtest {
    /// A backtest of `strategy` from its start, with the spec's initial cash.
    pub fn new(strategy: Strategy) -> Self {
        let ledger = Ledger {
            cash: i128::from(strategy.spec().backtest.initial_cash),
            ..Ledger::default()
        };
        Self { strategy, ledger }
    }

    /// A backtest going on from `checkpoint` (its strategy resumed from the checkpoint's state).
    ///
    /// # Errors
    ///
    /// [`Error::Checkpoint`] if the checkpoint is another strategy's.
    pub fn resume(strategy: Strategy, checkpoint: Checkpoint) -> Result<Self, Error> {
        if checkpoint.strategy != strategy.spec().id || checkpoint.state != *strategy.state() {
            return Err(Error::Checkpoint(format!(
                "it is not strategy {}'s at this point",
                strategy.spec().id
            )));
        }
        Ok(Self {
            strategy,
            ledger: checkpoint.ledger,
        })
    }

    /// Ticks taken so far.
    pub fn ticks(&self) -> u64 {
        self.strategy.state().ticks
    }

    /// The checkpoint of where it stands.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            strategy: self.strategy.spec().id.clone(),
            state: self.strategy.state().clone(),
            ledger: self.ledger.clone(),
        }
    }

    /// Takes the next recorded tick; the decision on the bar it closed, if any.
    pub fn step(&mut self, tick: &Tick) -> Option<Decision> {
        let bar = self.strategy.on_tick(tick)?;
        let decision = self
            .strategy
            .decide(&bar, Position::flat(self.ledger.position));
        if let Some(order) = &decision.order {
            self.fill(bar.start, order.side, order.quantity, order.price);
        }
        let equity = self.ledger.cash + i128::from(self.ledger.position) * i128::from(bar.close);
        self.ledger.equity.push((bar.start, equity));
        Some(decision)
    }

    /// Fills an order whole at its price.
    fn fill(&mut self, at: i64, side: OrderSide, quantity: u64, price: u64) {
        let ledger = &mut self.ledger;
        let notional = i128::from(quantity) * i128::from(price);
        let realized = match side {
            OrderSide::Buy => {
                ledger.cash -= notional;
                ledger.position += quantity;
                ledger.cost += notional;
                None
            }
            OrderSide::Sell => {
                // The units sold take their share of the cost held (the average cost).
                let cost = ledger.cost * i128::from(quantity) / i128::from(ledger.position);
                ledger.cash += notional;
                ledger.position -= quantity;
                ledger.cost -= cost;
                Some(notional - cost)
            }
        };
        ledger.fills.push(Fill {
            at,
            side,
            quantity,
            price,
            realized,
        });
    }

    /// The report of what it did so far.
    pub fn report(&self) -> Report {
        Report::of(
            self.strategy.spec(),
            &self.ledger,
            self.strategy.state().ticks,
            self.strategy.state().bars_decided,
        )
    }
}
