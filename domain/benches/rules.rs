//! Pattern rules' cost per event: facts (trades, cancels, deposits, withdrawals) through a
//! `RuleEngine` running the four shipped rules, against the same facts through an engine
//! with no rules (the cost of looking at a fact at all).
//!
//! Run with `cargo bench -p tradefloor-domain --bench rules`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use tradefloor_domain::book::Trade;
use tradefloor_domain::rules::{Fact, RuleEngine, RuleSet};
use tradefloor_domain::{AccountId, OrderId, Price, Quantity, Side, Timestamp, TradeId};

/// Facts per measured run.
const FACTS: usize = 100_000;
/// Distinct accounts.
const ACCOUNTS: u64 = 1_000;

/// A deterministic mix: 60 % trades, 20 % cancels, 10 % deposits, 10 % withdrawals, one
/// every 100 µs, prices wandering by a tick.
fn facts() -> Vec<Fact> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let account = |n: u64| format!("acct-{}", n % ACCOUNTS);
    let mut price = 10_000u64;
    (0..FACTS)
        .map(|index| {
            let at = index as i64 * 100;
            let roll = next() % 10;
            let who = account(next());
            match roll {
                0..=5 => {
                    price = if next() % 2 == 0 {
                        price + 1
                    } else {
                        price - 1
                    };
                    Fact::Trade {
                        symbol: "BTC-USD".to_owned(),
                        trade: Trade {
                            trade_id: TradeId(index as u64),
                            maker_order_id: OrderId(1),
                            maker_account_id: AccountId::new(&who).unwrap(),
                            taker_order_id: OrderId(2),
                            taker_account_id: AccountId::new(&account(next())).unwrap(),
                            taker_side: Side::Buy,
                            price: Price(price),
                            quantity: Quantity(1),
                            maker_remaining: Quantity(0),
                            taker_remaining: Quantity(0),
                            at: Timestamp(at),
                        },
                    }
                }
                6 | 7 => Fact::Cancelled { account: who, at },
                8 => Fact::Deposited {
                    account: who,
                    asset: "USD".to_owned(),
                    amount: 1_000,
                    at,
                },
                _ => Fact::Withdrawn {
                    account: who,
                    asset: "USD".to_owned(),
                    amount: 100,
                    at,
                },
            }
        })
        .collect()
}

fn run(set: &RuleSet, facts: &[Fact]) -> usize {
    let mut engine = RuleEngine::new(set);
    facts
        .iter()
        .enumerate()
        .map(|(offset, fact)| engine.observe(offset as u64 + 1, fact).len())
        .sum()
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let facts = facts();
    let mut group = criterion.benchmark_group("rules");
    group.throughput(Throughput::Elements(FACTS as u64));
    let none = RuleSet::default();
    group.bench_function("no_rules", |b| b.iter(|| black_box(run(&none, &facts))));
    let shipped = RuleSet::shipped();
    group.bench_function("shipped_four", |b| {
        b.iter(|| black_box(run(&shipped, &facts)))
    });
    group.finish();
    criterion.final_summary();
}
