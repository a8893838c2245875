//! Strategy throughput on one core: feature updates per second (`Features::update`, one per
//! bar) and whole decisions per second (`Strategy::decide`: the features, the sample spec's
//! three predictors behind their breakers, the ensemble, pre-trade risk and the decision
//! kept in the strategy's state).
//!
//! The bars are the checked-in sample's: `strategy/tests/data/ticks.csv` cut into the sample
//! spec's 5 s bars, the logistic model read from `strategy/tests/data/model.json`. Each
//! iteration runs every bar through a fresh state (made outside the measured time), so the
//! figures include the indicators' warm-up as a live strategy goes through it. The decisions'
//! position follows the orders they decide, so risk sees what a backtest would.
//!
//! Run with `cargo bench -p tradefloor-strategy --bench strategy` (BENCHMARKS.md).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use tradefloor_domain::features::Features;
use tradefloor_strategy::engine::{OrderSide, Position};
use tradefloor_strategy::tick::PriceBar;
use tradefloor_strategy::{BarBuilder, Error, LogisticModel, Strategy, StrategySpec, Tick};

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn models(file: &str) -> Result<LogisticModel, Error> {
    LogisticModel::from_json(&data(file))
}

/// The sample spec and the bars its timeframe cuts the sample ticks into.
fn sample() -> (StrategySpec, Vec<PriceBar>) {
    let spec = StrategySpec::from_json(&data("strategy.json")).expect("the sample strategy");
    let ticks = Tick::parse_csv(&data("ticks.csv")).expect("the sample ticks");
    let mut builder = BarBuilder::new(spec.timeframe_seconds);
    let bars: Vec<PriceBar> = ticks.iter().filter_map(|tick| builder.push(tick)).collect();
    assert!(bars.len() > 100, "the sample makes {} bars", bars.len());
    (spec, bars)
}

fn strategy(criterion: &mut Criterion) {
    let (spec, bars) = sample();
    let feature_bars: Vec<_> = bars.iter().map(PriceBar::features_bar).collect();
    let mut group = criterion.benchmark_group("strategy");
    group.throughput(Throughput::Elements(bars.len() as u64));

    group.bench_function("feature_updates", |bencher| {
        bencher.iter_batched_ref(
            || Features::new(spec.features),
            |features| {
                for bar in &feature_bars {
                    black_box(features.update(black_box(bar)));
                }
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("decisions", |bencher| {
        bencher.iter_batched_ref(
            || Strategy::new(spec.clone(), &models).expect("the sample strategy runs"),
            |strategy| {
                let mut position = 0_u64;
                for bar in &bars {
                    let decision = strategy.decide(black_box(bar), Position::flat(position));
                    if let Some(order) = &decision.order {
                        position = match order.side {
                            OrderSide::Buy => position + order.quantity,
                            OrderSide::Sell => position.saturating_sub(order.quantity),
                        };
                    }
                    black_box(decision);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    strategy(&mut criterion);
    criterion.final_summary();
}
