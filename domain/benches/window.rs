//! The window operator's throughput: inputs per second through `WindowOperator::push`, for
//! each kind of window, against a baseline that folds the same inputs into a `BTreeMap` of
//! tumbling buckets by hand (what a window costs at least: one map lookup per input).
//!
//! Inputs: 1 000 keys, event times mostly increasing with 10 % out of order by up to the
//! out-of-orderness, and 0.1 % later than that (late). Each window sums its inputs.
//!
//! Run with `cargo bench -p tradefloor-domain --bench window`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use tradefloor_domain::window::{
    Accumulator, Emit, LatePolicy, WindowConfig, WindowOperator, WindowSpec,
};

/// Inputs per measured run.
const INPUTS: usize = 200_000;
/// Distinct keys.
const KEYS: u64 = 1_000;
/// Microseconds between inputs on average.
const SPACING: i64 = 100;
/// The watermark trails the latest time by this much.
const OUT_OF_ORDERNESS: i64 = 50_000;

/// Counts and sums.
#[derive(Clone, Copy)]
struct Sum(u64, i64);

impl Accumulator for Sum {
    type Input = i64;
    type Output = (u64, i64);

    fn first(_at: i64, input: &i64) -> Self {
        Sum(1, *input)
    }

    fn add(&mut self, _at: i64, input: &i64) {
        self.0 += 1;
        self.1 += input;
    }

    fn merge(&mut self, other: Self) {
        self.0 += other.0;
        self.1 += other.1;
    }

    fn output(&self) -> (u64, i64) {
        (self.0, self.1)
    }
}

/// `(key, at, value)` inputs, deterministic.
fn inputs() -> Vec<(u64, i64, i64)> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..INPUTS)
        .map(|index| {
            let at = index as i64 * SPACING;
            let roll = next() % 1_000;
            let at = match roll {
                0 => at - 10 * OUT_OF_ORDERNESS,
                1..=100 => at - (next() % OUT_OF_ORDERNESS as u64) as i64,
                _ => at,
            };
            (next() % KEYS, at, (next() % 100) as i64)
        })
        .collect()
}

fn run(spec: WindowSpec, inputs: &[(u64, i64, i64)]) -> usize {
    let mut operator = WindowOperator::<u64, Sum>::new(WindowConfig {
        spec,
        out_of_orderness: OUT_OF_ORDERNESS,
        allowed_lateness: 0,
        emit: Emit::OnClose,
        late: LatePolicy::Drop,
        windows_max: 100_000,
    });
    let mut emitted = 0;
    for (key, at, value) in inputs {
        emitted += operator.push(*key, *at, *value).emitted.len();
    }
    emitted
}

/// The floor: tumbling buckets in a map, no watermark, nothing emitted.
fn baseline(inputs: &[(u64, i64, i64)]) -> usize {
    let mut buckets: BTreeMap<(u64, i64), (u64, i64)> = BTreeMap::new();
    for (key, at, value) in inputs {
        let bucket = buckets
            .entry((*key, at - at.rem_euclid(1_000_000)))
            .or_default();
        bucket.0 += 1;
        bucket.1 += value;
    }
    buckets.len()
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let inputs = inputs();
    let mut group = criterion.benchmark_group("window");
    group.throughput(Throughput::Elements(INPUTS as u64));
    group.bench_function("baseline_map", |b| b.iter(|| black_box(baseline(&inputs))));
    let specs = [
        ("tumbling_1s", WindowSpec::Tumbling { width: 1_000_000 }),
        (
            "hopping_10s_by_1s",
            WindowSpec::Hopping {
                width: 10_000_000,
                hop: 1_000_000,
            },
        ),
        ("session_gap_1s", WindowSpec::Session { gap: 1_000_000 }),
        ("count_100", WindowSpec::Count { size: 100 }),
    ];
    for (name, spec) in specs {
        group.bench_function(name, |b| b.iter(|| black_box(run(spec, &inputs))));
    }
    group.finish();
    criterion.final_summary();
}
