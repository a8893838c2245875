use super::*;
use crate::book::Trade;
use crate::{AccountId, OrderId, Price, Quantity, Side, Timestamp, TradeId};

const SECOND: i64 = 1_000_000;

fn trade(maker: &str, taker: &str, price: u64, at: i64) -> Fact {
    Fact::Trade {
        symbol: "BTC-USD".to_owned(),
        trade: Trade {
            trade_id: TradeId(1),
            maker_order_id: OrderId(1),
            maker_account_id: AccountId::new(maker).unwrap(),
            taker_order_id: OrderId(2),
            taker_account_id: AccountId::new(taker).unwrap(),
            taker_side: Side::Buy,
            price: Price(price),
            quantity: Quantity(1),
            maker_remaining: Quantity(0),
            taker_remaining: Quantity(0),
            at: Timestamp(at),
        },
    }
}

fn deposit(account: &str, amount: u64, at: i64) -> Fact {
    Fact::Deposited {
        account: account.to_owned(),
        asset: "USD".to_owned(),
        amount,
        at,
    }
}

fn withdrawal(account: &str, amount: u64, at: i64) -> Fact {
    Fact::Withdrawn {
        account: account.to_owned(),
        asset: "USD".to_owned(),
        amount,
        at,
    }
}

fn cancel(account: &str, at: i64) -> Fact {
    Fact::Cancelled {
        account: account.to_owned(),
        at,
    }
}

/// Every alert of `facts` fed in order, offsets from 1.
fn run(set: &RuleSet, facts: &[Fact]) -> Vec<Alert> {
    let mut engine = RuleEngine::new(set);
    facts
        .iter()
        .enumerate()
        .flat_map(|(index, fact)| engine.observe(index as u64 + 1, fact))
        .collect()
}

fn shipped() -> RuleSet {
    RuleSet {
        owners: [("alice", "ann"), ("alice2", "ann")]
            .into_iter()
            .map(|(a, o)| (a.to_owned(), o.to_owned()))
            .collect(),
        ..RuleSet::shipped()
    }
}

#[test]
fn a_price_move_beyond_the_band_within_the_time_halts_the_market_and_a_slow_one_does_not() {
    // 1 000 bps = 10 % within 60 s.
    let jump = [
        trade("a", "b", 100, 0),
        trade("a", "b", 105, 10 * SECOND),
        trade("a", "b", 111, 20 * SECOND),
    ];
    let alerts = run(&shipped(), &jump);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "price_move");
    assert_eq!(
        (alerts[0].action, alerts[0].symbol.as_deref()),
        (Action::Halt, Some("BTC-USD"))
    );
    assert_eq!(alerts[0].offset, 3);
    // The same rise over five minutes is benign.
    let drift: Vec<Fact> = (0..12)
        .map(|step| trade("a", "b", 100 + step, step as i64 * 30 * SECOND))
        .collect();
    assert!(run(&shipped(), &drift).is_empty());
}

#[test]
fn a_burst_of_cancels_throttles_its_account_once_and_a_trickle_does_not() {
    let burst: Vec<Fact> = (0..60)
        .map(|n| cancel("mallory", n * SECOND / 10))
        .collect();
    let alerts = run(&shipped(), &burst);
    assert_eq!(
        alerts.len(),
        1,
        "one alert per burst, not per cancel: {alerts:?}"
    );
    assert_eq!(alerts[0].account.as_deref(), Some("mallory"));
    assert_eq!(
        alerts[0].action,
        Action::Throttle {
            orders_per_second: 1
        }
    );
    assert_eq!(alerts[0].offset, 50, "the 50th cancel completes it");
    let trickle: Vec<Fact> = (0..60).map(|n| cancel("carol", n * SECOND)).collect();
    assert!(run(&shipped(), &trickle).is_empty());
}

#[test]
fn the_same_owner_on_both_sides_is_flagged_and_distinct_owners_are_not() {
    let alerts = run(&shipped(), &[trade("alice", "alice2", 100, 0)]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].rule.as_str(), alerts[0].key.as_str()),
        ("wash_trade", "ann")
    );
    assert_eq!(alerts[0].action, Action::Flag);
    assert!(
        run(
            &shipped(),
            &[
                trade("alice", "bob", 100, 0),
                trade("bob", "alice", 100, SECOND)
            ]
        )
        .is_empty()
    );
}

#[test]
fn a_deposit_mostly_withdrawn_soon_after_is_flagged_and_a_small_or_late_one_is_not() {
    let alerts = run(
        &shipped(),
        &[
            deposit("mule", 10_000, 0),
            withdrawal("mule", 9_500, 60 * SECOND),
        ],
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].account.as_deref(), Some("mule"));
    assert!(alerts[0].message.contains("95 %"), "{}", alerts[0].message);
    // A small part, or after the hour, or a withdrawal with no deposit before it: benign.
    assert!(
        run(
            &shipped(),
            &[
                deposit("saver", 10_000, 0),
                withdrawal("saver", 2_000, SECOND)
            ]
        )
        .is_empty()
    );
    assert!(
        run(
            &shipped(),
            &[
                deposit("slow", 10_000, 0),
                withdrawal("slow", 10_000, 3 * 3_600 * SECOND)
            ]
        )
        .is_empty()
    );
    assert!(
        run(
            &shipped(),
            &[
                withdrawal("first", 10_000, 0),
                deposit("first", 10_000, SECOND)
            ]
        )
        .is_empty()
    );
}

#[test]
fn invalid_rule_sets_are_refused() {
    let mut duplicate = RuleSet::shipped();
    duplicate.rules.push(duplicate.rules[0].clone());
    assert!(duplicate.validate().is_err());
    let zero = RuleSet {
        rules: vec![Rule {
            name: "zero".to_owned(),
            kind: RuleKind::PriceMove {
                bps: 0,
                within_ms: 1_000,
            },
        }],
        owners: BTreeMap::new(),
    };
    assert!(zero.validate().is_err());
    let bad_name = RuleSet {
        rules: vec![Rule {
            name: "a b".to_owned(),
            kind: RuleKind::WashTrade {
                trades: 1,
                within_ms: 1_000,
            },
        }],
        owners: BTreeMap::new(),
    };
    assert!(bad_name.validate().is_err());
    assert!(RuleSet::shipped().validate().is_ok());
}

#[test]
fn rule_sets_read_from_json_by_kind() {
    let set: RuleSet = serde_json::from_value(serde_json::json!({
        "rules": [{"name": "fast", "kind": "price_move", "bps": 50, "within_ms": 1000}],
        "owners": {"alice2": "alice"}
    }))
    .unwrap();
    assert_eq!(
        set.rules[0].kind,
        RuleKind::PriceMove {
            bps: 50,
            within_ms: 1_000
        }
    );
    let unknown = serde_json::from_value::<RuleSet>(serde_json::json!({
        "rules": [{"name": "x", "kind": "moon_phase", "within_ms": 1}]
    }));
    assert!(unknown.is_err());
    let extra = serde_json::from_value::<RuleSet>(serde_json::json!({
        "rules": [{"name": "x", "kind": "wash_trade", "trades": 1, "within_ms": 1, "more": 1}]
    }));
    assert!(extra.is_err(), "unknown fields are refused");
}

#[test]
fn the_books_band_halt_raises_the_price_band_alert_and_trades_inside_do_not() {
    let halt = Fact::BandHalt {
        symbol: "BTC-USD".to_owned(),
        price: 120,
        band: (90, 110),
        at: 3 * SECOND,
    };
    let inside = [trade("a", "b", 100, 0), trade("a", "b", 105, SECOND)];
    assert!(run(&shipped(), &inside).is_empty());
    let alerts = run(
        &shipped(),
        &[inside[0].clone(), inside[1].clone(), halt.clone()],
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (
            alerts[0].rule.as_str(),
            alerts[0].action,
            alerts[0].symbol.as_deref(),
            alerts[0].offset
        ),
        ("price_band", Action::Halt, Some("BTC-USD"), 3)
    );
    assert!(alerts[0].message.contains("120"), "{}", alerts[0].message);
    // Every halt is its own alert (each stopped a print); a set without the rule has none.
    assert_eq!(run(&shipped(), &[halt.clone(), halt.clone()]).len(), 2);
    let without = RuleSet {
        rules: RuleSet::shipped().rules[1..].to_vec(),
        ..RuleSet::default()
    };
    assert!(run(&without, &[halt]).is_empty());
    let set: RuleSet = serde_json::from_value(serde_json::json!({
        "rules": [{"name": "band", "kind": "price_band"}]
    }))
    .unwrap();
    assert!(set.validate().is_ok());
    assert_eq!(set.rules[0].kind, RuleKind::PriceBand {});
}

#[test]
fn a_restart_reads_back_over_the_longest_window() {
    // deposit_withdrawal's hour.
    assert_eq!(RuleSet::shipped().longest_window_micros(), 3_600_000_000);
    assert_eq!(RuleSet::default().longest_window_micros(), 0);
}
