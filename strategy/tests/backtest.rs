//! Backtests: a small case computed by hand, determinism on the checked-in tick file, resuming
//! from a checkpoint, and the breaker's fallback to the cached prediction.

use std::path::Path;

use tradefloor_strategy::engine::{Position, Source};
use tradefloor_strategy::report::equity_svg;
use tradefloor_strategy::{
    Backtest, BreakerState, Checkpoint, Direction, Error, LogisticModel, Prediction, Predictor,
    Report, Strategy, StrategySpec, Tick,
};

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn models(file: &str) -> Result<LogisticModel, Error> {
    LogisticModel::from_json(&data(file))
}

fn sample() -> (StrategySpec, Vec<Tick>) {
    let spec = StrategySpec::from_json(&data("strategy.json")).expect("the sample strategy");
    let ticks = Tick::parse_csv(&data("ticks.csv")).expect("the sample ticks");
    (spec, ticks)
}

fn run(spec: &StrategySpec, ticks: &[Tick]) -> (Report, String) {
    let mut backtest = Backtest::new(Strategy::new(spec.clone(), &models).expect("runs"));
    for tick in ticks {
        backtest.step(tick);
    }
    let checkpoint = backtest.checkpoint();
    let svg = equity_svg(&spec.id, 1_000_000, &checkpoint.ledger.equity);
    (backtest.report(), svg)
}

/// Mean reversion alone on Bollinger bands of two bars one deviation wide: a close below the
/// previous one is at the lower band (score +1, buy), above it at the upper band (−1, sell).
#[test]
fn a_small_case_gives_the_figures_computed_by_hand() {
    let spec = StrategySpec::from_json(
        r#"{"id": "hand", "symbol": "X-Y", "timeframe_seconds": 1,
            "features": {"moving_average": 2, "rsi": 2, "macd": [2, 3, 2], "bollinger": [2, 1], "atr": 2},
            "predictors": [{"name": "reversion", "kind": "mean_reversion"}],
            "risk": {"order_quantity": 2, "max_position": 3},
            "backtest": {"initial_cash": 1000}}"#,
    )
    .expect("valid");
    let prices = [100, 90, 95, 110, 100, 80, 85, 90];
    let ticks: Vec<Tick> = (0i64..)
        .zip(prices)
        .map(|(second, price)| Tick {
            at: second * 1_000_000,
            price,
            quantity: 1,
        })
        .collect();
    let (report, _) = run(&spec, &ticks);
    // Bars 100 (no bands yet), 90 buy 2, 95 sell 2 (+10), 110 sell (nothing held), 100 buy 2,
    // 80 buy 1 (the position's cap is 3), 85 sell 2 (cost 280 × 2/3 = 186: −16); the last
    // tick (90) opens a bar that never closes.
    let equity = [1000, 1000, 1010, 1010, 1010, 970, 985];
    assert_eq!(
        (report.bars, report.trades, report.position, report.cash),
        (7, 5, 1, 900)
    );
    assert_eq!((report.final_equity, report.pnl), (985, -15));
    assert_eq!(
        (report.max_drawdown, report.sales, report.winning_sales),
        (40, 2, 1)
    );
    assert!((report.max_drawdown_ratio - 40.0 / 1010.0).abs() < 1e-12);
    assert_eq!(report.hit_rate, Some(0.5));
    let returns: Vec<f64> = std::iter::once(1000)
        .chain(equity)
        .collect::<Vec<i32>>()
        .windows(2)
        .map(|pair| f64::from(pair[1]) / f64::from(pair[0]) - 1.0)
        .collect();
    let mean = returns.iter().sum::<f64>() / 7.0;
    let deviation = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 6.0).sqrt();
    let sharpe = mean / deviation * 31_536_000f64.sqrt();
    let reported = report.sharpe.expect("returns differ");
    assert!(
        (reported - sharpe).abs() < 1e-9 * sharpe.abs(),
        "{reported} vs {sharpe}"
    );
}

#[test]
fn the_same_data_gives_the_same_report_twice() {
    let (spec, ticks) = sample();
    let (first, first_svg) = run(&spec, &ticks);
    let (second, second_svg) = run(&spec, &ticks);
    assert_eq!(first, second);
    assert_eq!(first_svg, second_svg);
    assert_eq!(
        serde_json::to_string(&first).expect("json"),
        serde_json::to_string(&second).expect("json")
    );
    // The sample trades, and the figures hang together.
    assert!(first.trades > 10, "{}", first.text());
    assert_eq!(first.ticks, ticks.len() as u64);
    assert_eq!(first.final_equity - first.initial_equity, first.pnl);
    assert!(first_svg.starts_with("<svg") && first_svg.contains("<polyline"));
}

#[test]
fn a_backtest_resumed_from_its_checkpoint_reports_what_one_run_does() {
    let (spec, ticks) = sample();
    let (whole, _) = run(&spec, &ticks);
    let (head, tail) = ticks.split_at(ticks.len() / 3);
    let mut first = Backtest::new(Strategy::new(spec.clone(), &models).expect("runs"));
    for tick in head {
        first.step(tick);
    }
    let saved = serde_json::to_string(&first.checkpoint()).expect("a checkpoint is JSON");
    drop(first);
    let checkpoint: Checkpoint = serde_json::from_str(&saved).expect("read back");
    let strategy =
        Strategy::resume(spec.clone(), checkpoint.state.clone(), &models).expect("resumes");
    let mut resumed = Backtest::resume(strategy, checkpoint.clone()).expect("its own checkpoint");
    for tick in tail {
        resumed.step(tick);
    }
    assert_eq!(resumed.report(), whole);
    // Another strategy's checkpoint is refused.
    let mut other = spec.clone();
    other.id = "other".to_owned();
    let strategy = Strategy::resume(other, checkpoint.state.clone(), &models).expect("resumes");
    assert!(Backtest::resume(strategy, checkpoint).is_err());
}

/// A predictor that fails on every call.
struct Failing;

impl Predictor for Failing {
    fn predict(
        &mut self,
        _: &tradefloor_domain::features::FeatureValues,
    ) -> Result<Option<Prediction>, String> {
        Err("the model server is down".to_owned())
    }
}

#[test]
fn a_failing_predictor_falls_back_to_its_cached_prediction_behind_its_breaker() {
    let (spec, ticks) = sample();
    let mut strategy = Strategy::new(spec, &models).expect("runs");
    let mut ticks = ticks.iter();
    // Run until the learned predictor has answered.
    let cached = loop {
        let tick = ticks
            .next()
            .expect("the learned predictor answers within the sample");
        if let Some(bar) = strategy.on_tick(tick) {
            let decision = strategy.decide(&bar, Position::default());
            if let Some(score) = decision.predictions[2].score {
                break score;
            }
        }
    };
    strategy.replace_predictor(2, Box::new(Failing));
    let mut decisions = Vec::new();
    for tick in ticks {
        if let Some(bar) = strategy.on_tick(tick) {
            decisions.push(strategy.decide(&bar, Position::default()));
        }
        if decisions.len() == 20 {
            break;
        }
    }
    for (index, decision) in decisions.iter().enumerate() {
        let learned = &decision.predictions[2];
        assert_eq!(
            (learned.source, learned.score),
            (Source::Cached, Some(cached))
        );
        assert!(decision.signal.fallback);
        // Three failures open it for ten bars, then one trial fails and opens it again.
        let calls = matches!(index, 0..=2 | 12);
        assert_eq!(learned.error.is_some(), calls, "bar {index}: {learned:?}");
        let open = matches!(learned.breaker, BreakerState::Open { .. });
        assert_eq!(open, index >= 2, "bar {index}: {learned:?}");
        assert_eq!(
            decision.predictions[0].source,
            Source::Live,
            "the others go on"
        );
    }
    let (_, breaker) = &strategy.breakers()[2];
    assert_eq!((breaker.failures_total, breaker.opened_total), (4, 2));
    assert!(
        decisions
            .iter()
            .any(|d| d.signal.direction != Direction::Flat)
    );
}
