use proptest::prelude::*;

use super::*;

/// Counts inputs and sums their values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sum {
    count: u64,
    total: i64,
}

impl Accumulator for Sum {
    type Input = i64;
    type Output = (u64, i64);

    fn first(_at: i64, input: &i64) -> Self {
        Sum {
            count: 1,
            total: *input,
        }
    }

    fn add(&mut self, _at: i64, input: &i64) {
        self.count += 1;
        self.total += input;
    }

    fn merge(&mut self, other: Self) {
        self.count += other.count;
        self.total += other.total;
    }

    fn output(&self) -> (u64, i64) {
        (self.count, self.total)
    }
}

fn config(spec: WindowSpec) -> WindowConfig {
    WindowConfig {
        spec,
        out_of_orderness: 5,
        allowed_lateness: 0,
        emit: Emit::OnClose,
        late: LatePolicy::SideOutput,
        windows_max: 1_000,
    }
}

type Operator = WindowOperator<&'static str, Sum>;

/// `(start, end, kind, (count, total))` of every emission.
fn emitted(output: &Output<&str, (u64, i64), i64>) -> Vec<(i64, i64, EmissionKind, (u64, i64))> {
    output
        .emitted
        .iter()
        .map(|emission| (emission.start, emission.end, emission.kind, emission.output))
        .collect()
}

#[test]
fn tumbling_windows_close_when_the_watermark_passes_and_take_out_of_order_inputs() {
    let mut operator = Operator::new(config(WindowSpec::Tumbling { width: 10 }));
    assert!(operator.push("a", 3, 1).emitted.is_empty());
    assert!(operator.push("a", 12, 10).emitted.is_empty());
    // Out of order but within the out-of-orderness (watermark 7): still in [0, 10).
    assert!(operator.push("a", 8, 2).emitted.is_empty());
    assert_eq!(operator.watermark(), 7);
    // The watermark reaches 10: [0, 10) closes, with both of its inputs.
    let output = operator.push("a", 15, 100);
    assert_eq!(emitted(&output), [(0, 10, EmissionKind::Closed, (2, 3))]);
    // [10, 20) closes on time passing alone.
    let output = operator.advance_to(30);
    assert_eq!(emitted(&output), [(10, 20, EmissionKind::Closed, (2, 110))]);
    assert_eq!((operator.late(), operator.len()), (0, 0));
}

#[test]
fn late_inputs_update_a_kept_window_then_go_to_the_side_output() {
    let mut operator = Operator::new(WindowConfig {
        allowed_lateness: 10,
        ..config(WindowSpec::Tumbling { width: 10 })
    });
    operator.push("a", 1, 1);
    let closed = operator.push("a", 16, 1);
    assert_eq!(emitted(&closed), [(0, 10, EmissionKind::Closed, (1, 1))]);
    // Watermark 11: [0, 10) is closed but kept until 20; a late input updates it.
    let late = operator.push("a", 4, 5);
    assert_eq!(emitted(&late), [(0, 10, EmissionKind::Late, (2, 6))]);
    // Watermark 25: [0, 10) is gone; an input for it is late, counted and routed aside.
    operator.push("a", 30, 1);
    let too_late = operator.push("a", 2, 7);
    assert!(too_late.emitted.is_empty());
    assert_eq!(
        too_late.late,
        [Late {
            key: "a",
            at: 2,
            input: 7
        }]
    );
    assert_eq!(operator.late(), 1);
    // Dropped instead when the policy says so.
    let mut dropping = Operator::new(WindowConfig {
        late: LatePolicy::Drop,
        ..config(WindowSpec::Tumbling { width: 10 })
    });
    dropping.push("a", 50, 1);
    assert!(dropping.push("a", 1, 1).late.is_empty());
    assert_eq!(dropping.late(), 1);
}

#[test]
fn hopping_windows_take_each_input_in_every_window_it_falls_in() {
    let spec = WindowSpec::Hopping { width: 10, hop: 5 };
    assert_eq!(spec.starts(12), [5, 10]);
    assert_eq!(spec.starts(-3), [-10, -5]);
    let mut operator = Operator::new(config(spec));
    let mut all = Vec::new();
    for at in [1, 6, 12] {
        all.extend(emitted(&operator.push("a", at, at)));
    }
    all.extend(emitted(&operator.advance_to(100)));
    assert_eq!(
        all,
        [
            (-5, 5, EmissionKind::Closed, (1, 1)),
            (0, 10, EmissionKind::Closed, (2, 7)),
            (5, 15, EmissionKind::Closed, (2, 18)),
            (10, 20, EmissionKind::Closed, (1, 12)),
        ]
    );
}

#[test]
fn sessions_grow_with_inputs_within_the_gap_and_an_input_between_two_merges_them() {
    let mut operator = Operator::new(WindowConfig {
        out_of_orderness: 20,
        ..config(WindowSpec::Session { gap: 10 })
    });
    operator.push("a", 0, 1);
    operator.push("a", 8, 1);
    operator.push("a", 25, 1);
    operator.push("b", 5, 100);
    assert_eq!(operator.len(), 3, "two sessions of a, one of b");
    // Arriving late but within the out-of-orderness, 16 bridges [0, 18) and [25, 35).
    operator.push("a", 16, 1);
    assert_eq!(operator.len(), 2);
    let output = operator.advance_to(100);
    let mut sessions: Vec<_> = output
        .emitted
        .iter()
        .map(|e| (e.key, e.start, e.end, e.output))
        .collect();
    sessions.sort();
    assert_eq!(sessions, [("a", 0, 35, (4, 4)), ("b", 5, 15, (1, 100))]);
}

#[test]
fn count_windows_close_every_size_inputs_per_key() {
    let mut operator = Operator::new(config(WindowSpec::Count { size: 3 }));
    assert!(operator.push("a", 100, 1).emitted.is_empty());
    assert!(operator.push("b", 1, 1).emitted.is_empty());
    assert!(operator.push("a", 50, 2).emitted.is_empty());
    let output = operator.push("a", 70, 3);
    assert_eq!(
        emitted(&output),
        [(i64::MIN, 100, EmissionKind::Closed, (3, 6))]
    );
    assert_eq!(operator.len(), 1, "b's window is still open");
}

#[test]
fn on_update_emits_after_every_input_then_once_more_on_close() {
    let mut operator = Operator::new(WindowConfig {
        emit: Emit::OnUpdate,
        ..config(WindowSpec::Tumbling { width: 10 })
    });
    assert_eq!(
        emitted(&operator.push("a", 1, 2)),
        [(0, 10, EmissionKind::Updated, (1, 2))]
    );
    assert_eq!(
        emitted(&operator.push("a", 2, 3)),
        [(0, 10, EmissionKind::Updated, (2, 5))]
    );
    let output = operator.push("a", 20, 1);
    assert_eq!(
        emitted(&output),
        [
            (20, 30, EmissionKind::Updated, (1, 1)),
            (0, 10, EmissionKind::Closed, (2, 5)),
        ]
    );
}

#[test]
fn past_the_bound_the_earliest_windows_close_early() {
    let mut operator = Operator::new(WindowConfig {
        windows_max: 2,
        ..config(WindowSpec::Tumbling { width: 10 })
    });
    operator.push("a", 1, 1);
    operator.push("b", 2, 1);
    let output = operator.push("c", 3, 1);
    assert_eq!(output.emitted.len(), 1, "{output:?}");
    assert_eq!(output.emitted[0].kind, EmissionKind::Closed);
    assert_eq!((operator.len(), operator.evicted()), (2, 1));
}

#[test]
fn invalid_specs_are_refused() {
    for spec in [
        WindowSpec::Tumbling { width: 0 },
        WindowSpec::Hopping { width: 5, hop: 10 },
        WindowSpec::Session { gap: -1 },
        WindowSpec::Count { size: 0 },
    ] {
        assert!(config(spec).validate().is_err(), "{spec:?}");
    }
    let negative = WindowConfig {
        allowed_lateness: -1,
        ..config(WindowSpec::Tumbling { width: 1 })
    };
    assert!(negative.validate().is_err());
}

proptest! {
    /// Whatever the arrival order, within the out-of-orderness every input lands in exactly
    /// the tumbling window of its time, each window is emitted once, and nothing is late.
    #[test]
    fn arrival_order_within_the_bound_does_not_change_the_windows(
        times in prop::collection::vec(0i64..1_000, 1..60),
        seed in any::<u64>(),
    ) {
        let in_order = {
            let mut sorted = times.clone();
            sorted.sort_unstable();
            sorted
        };
        let mut shuffled = times.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for index in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let run = |order: &[i64]| {
            let mut operator = Operator::new(WindowConfig {
                out_of_orderness: 1_000,
                ..config(WindowSpec::Tumbling { width: 100 })
            });
            let mut all = Vec::new();
            for at in order {
                all.extend(emitted(&operator.push("k", *at, *at)));
            }
            all.extend(emitted(&operator.advance_to(10_000)));
            all.sort();
            (all, operator.late())
        };
        let (expected, late) = run(&in_order);
        prop_assert_eq!(late, 0);
        prop_assert_eq!(run(&shuffled), (expected.clone(), 0));
        let count: u64 = expected.iter().map(|(_, _, _, (count, _))| count).sum();
        prop_assert_eq!(count, times.len() as u64);
        for (start, end, kind, (_, total)) in expected {
            prop_assert_eq!(kind, EmissionKind::Closed);
            let inside: i64 = times.iter().filter(|at| (start..end).contains(*at)).sum();
            prop_assert_eq!(total, inside);
        }
    }
}
