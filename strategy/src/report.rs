//! What a backtest reports: profit and loss, drawdown, hit rate, Sharpe ratio, trades, and the
//! equity curve as an SVG picture.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::backtest::Ledger;
use crate::engine::OrderSide;
use crate::spec::StrategySpec;

/// Seconds in a (365-day) year: Sharpe ratios are annualised by the bars in one.
const SECONDS_PER_YEAR: f64 = 31_536_000.0;

/// One simulated fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The bar's start.
    pub at: i64,
    /// Which side.
    pub side: OrderSide,
    /// Base units.
    pub quantity: u64,
    /// Quote units per base unit.
    pub price: u64,
    /// For a sale: its proceeds less the average cost of the units sold.
    pub realized: Option<i128>,
}

/// A backtest's figures. Money in quote units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The strategy.
    pub strategy: String,
    /// Ticks read.
    pub ticks: u64,
    /// Bars decided.
    pub bars: u64,
    /// Orders filled.
    pub trades: usize,
    /// Equity at the start (the initial cash).
    pub initial_equity: i128,
    /// Equity after the last bar: cash plus the position at the last close.
    pub final_equity: i128,
    /// `final_equity − initial_equity`.
    pub pnl: i128,
    /// The largest fall of equity from a previous peak.
    pub max_drawdown: i128,
    /// That fall as a fraction of its peak.
    pub max_drawdown_ratio: f64,
    /// Sales that realized a profit.
    pub winning_sales: usize,
    /// Sales.
    pub sales: usize,
    /// `winning_sales / sales`; `None` with no sale.
    pub hit_rate: Option<f64>,
    /// Mean over standard deviation (sample) of the returns per bar, annualised by the bars
    /// in a year; `None` with fewer than two returns or none that differ.
    pub sharpe: Option<f64>,
    /// Base units held at the end.
    pub position: u64,
    /// Quote units at the end.
    pub cash: i128,
}

impl Report {
    /// The report of a ledger.
    pub fn of(spec: &StrategySpec, ledger: &Ledger, ticks: u64, bars: u64) -> Self {
        let initial = i128::from(spec.backtest.initial_cash);
        let final_equity = ledger.equity.last().map_or(initial, |(_, equity)| *equity);
        let (max_drawdown, max_drawdown_ratio) = drawdown(initial, &ledger.equity);
        let sales: Vec<i128> = ledger
            .fills
            .iter()
            .filter_map(|fill| fill.realized)
            .collect();
        let winning_sales = sales.iter().filter(|realized| **realized > 0).count();
        #[allow(clippy::cast_precision_loss)] // ratios of counts
        let hit_rate = (!sales.is_empty()).then(|| winning_sales as f64 / sales.len() as f64);
        Self {
            strategy: spec.id.clone(),
            ticks,
            bars,
            trades: ledger.fills.len(),
            initial_equity: initial,
            final_equity,
            pnl: final_equity - initial,
            max_drawdown,
            max_drawdown_ratio,
            winning_sales,
            sales: sales.len(),
            hit_rate,
            sharpe: sharpe(initial, &ledger.equity, spec.timeframe_seconds),
            position: ledger.position,
            cash: ledger.cash,
        }
    }

    /// The report as text, one figure per line.
    pub fn text(&self) -> String {
        let percent = |value: Option<f64>| {
            value.map_or_else(
                || "n/a".to_owned(),
                |value| format!("{:.2} %", value * 100.0),
            )
        };
        format!(
            "strategy      {}\nticks         {}\nbars          {}\ntrades        {}\n\
             pnl           {} ({} → {})\nmax drawdown  {} ({})\nhit rate      {} ({}/{} sales)\n\
             sharpe        {}\nposition      {}\ncash          {}\n",
            self.strategy,
            self.ticks,
            self.bars,
            self.trades,
            self.pnl,
            self.initial_equity,
            self.final_equity,
            self.max_drawdown,
            percent(Some(self.max_drawdown_ratio)),
            percent(self.hit_rate),
            self.winning_sales,
            self.sales,
            self.sharpe
                .map_or_else(|| "n/a".to_owned(), |sharpe| format!("{sharpe:.4}")),
            self.position,
            self.cash,
        )
    }
}

#[allow(clippy::cast_precision_loss)] // equity as a ratio
fn drawdown(initial: i128, equity: &[(i64, i128)]) -> (i128, f64) {
    let mut peak = initial;
    let mut worst = (0, 0.0);
    for (_, value) in equity {
        peak = peak.max(*value);
        let fall = peak - value;
        if fall > worst.0 {
            let ratio = if peak > 0 {
                fall as f64 / peak as f64
            } else {
                0.0
            };
            worst = (fall, ratio);
        }
    }
    worst
}

#[allow(clippy::cast_precision_loss)] // returns are not money
fn sharpe(initial: i128, equity: &[(i64, i128)], timeframe_seconds: u32) -> Option<f64> {
    let mut previous = initial as f64;
    let mut returns = Vec::with_capacity(equity.len());
    for (_, value) in equity {
        let value = *value as f64;
        if previous > 0.0 {
            returns.push(value / previous - 1.0);
        }
        previous = value;
    }
    if returns.len() < 2 {
        return None;
    }
    let count = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / count;
    let variance = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (count - 1.0);
    let deviation = variance.sqrt();
    (deviation > 0.0)
        .then(|| mean / deviation * (SECONDS_PER_YEAR / f64::from(timeframe_seconds)).sqrt())
}

/// The equity curve as an SVG picture (800 × 320), with its range and the strategy's name.
#[allow(clippy::cast_precision_loss)] // pixels
pub fn equity_svg(strategy: &str, initial: i128, equity: &[(i64, i128)]) -> String {
    const WIDTH: f64 = 800.0;
    const HEIGHT: f64 = 320.0;
    const MARGIN: f64 = 40.0;
    let values: Vec<i128> = std::iter::once(initial)
        .chain(equity.iter().map(|(_, value)| *value))
        .collect();
    let low = values.iter().copied().min().unwrap_or(0);
    let high = values.iter().copied().max().unwrap_or(0);
    let span = (high - low).max(1) as f64;
    let step = (WIDTH - 2.0 * MARGIN) / (values.len().max(2) - 1) as f64;
    let mut points = String::new();
    for (index, value) in values.iter().enumerate() {
        let x = MARGIN + index as f64 * step;
        let y = MARGIN + (high - value) as f64 / span * (HEIGHT - 2.0 * MARGIN);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let name: String = strategy
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"20\">{name}: equity over {} bars</text>\n\
         <text x=\"4\" y=\"{MARGIN}\">{high}</text>\n\
         <text x=\"4\" y=\"{}\">{low}</text>\n\
         <line x1=\"{MARGIN}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\n\
         <polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\" points=\"{}\"/>\n</svg>\n",
        equity.len(),
        HEIGHT - MARGIN,
        HEIGHT - MARGIN,
        WIDTH - MARGIN,
        HEIGHT - MARGIN,
        points.trim_end(),
    )
}
