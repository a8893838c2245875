//! Given / when / then tests of the account aggregate, one per command and rejection.

use super::*;
use crate::units::Price;

fn usd() -> Asset {
    Asset::new("USD").unwrap()
}

fn btc() -> Asset {
    Asset::new("BTC").unwrap()
}

fn id(text: &str) -> CommandId {
    CommandId::new(text).unwrap()
}

fn deposit(command_id: &str, asset: Asset, amount: u64) -> AccountCommand {
    AccountCommand::Deposit {
        command_id: id(command_id),
        asset,
        amount: Amount(amount),
        effective_at: None,
        at: Timestamp(100),
    }
}

fn withdraw(command_id: &str, asset: Asset, amount: u64) -> AccountCommand {
    AccountCommand::Withdraw {
        command_id: id(command_id),
        asset,
        amount: Amount(amount),
        effective_at: None,
        at: Timestamp(200),
    }
}

fn hold(order: u64, side: Side, price: Option<u64>, quantity: u64) -> AccountCommand {
    AccountCommand::PlaceHold {
        command_id: CommandId::derived(order, "hold").unwrap(),
        order_id: OrderId(order),
        symbol: Symbol::of(btc(), usd()),
        base: btc(),
        quote: usd(),
        side,
        price: price.map(Price),
        quantity: Quantity(quantity),
        start: None,
        at: Timestamp(300),
    }
}

fn settle(order: u64, trade: u64, price: u64, quantity: u64) -> AccountCommand {
    AccountCommand::SettleTrade {
        command_id: CommandId::derived(order, format!("settle-{trade}")).unwrap(),
        order_id: OrderId(order),
        trade_id: TradeId(trade),
        price: Price(price),
        quantity: Quantity(quantity),
        at: Timestamp(400),
    }
}

fn release(order: u64) -> AccountCommand {
    AccountCommand::ReleaseHold {
        command_id: CommandId::derived(order, "release").unwrap(),
        order_id: OrderId(order),
        at: Timestamp(500),
    }
}

fn finish(order: u64, legs: &[(u64, u64, u64)]) -> AccountCommand {
    AccountCommand::Finish {
        command_id: CommandId::derived(order, "finish").unwrap(),
        order_id: OrderId(order),
        legs: legs
            .iter()
            .map(|&(trade, price, quantity)| Leg {
                trade_id: TradeId(trade),
                price: Price(price),
                quantity: Quantity(quantity),
            })
            .collect(),
        at: Timestamp(600),
    }
}

fn limits(open: u32, notional: u64, position: &[(Asset, u64)]) -> AccountCommand {
    AccountCommand::SetRiskLimits {
        command_id: id("limits"),
        limits: RiskLimits {
            max_open_orders: open,
            max_order_notional: Amount(notional),
            max_position: position
                .iter()
                .map(|(asset, max)| (*asset, Amount(*max)))
                .collect(),
            max_orders_per_second: None,
        },
        at: Timestamp(50),
    }
}

/// Runs commands that must succeed, checking invariants and replay after each.
fn given(commands: &[AccountCommand]) -> (Account, Vec<AccountEvent>) {
    let mut account = Account::default();
    let mut log = Vec::new();
    for command in commands {
        let (events, _) = account.execute(command).unwrap_or_else(|error| {
            panic!("given {command:?} failed: {error}");
        });
        log.extend(events);
        account.check_invariants().unwrap();
        assert_eq!(Account::replay(&log), account);
    }
    (account, log)
}

fn balance(total: u64, held: u64) -> Balance {
    Balance {
        total: Amount(total),
        held: Amount(held),
    }
}

#[test]
fn deposit_credits_the_asset_and_replies_with_the_balance() {
    let (account, _) = given(&[]);
    let mut account = account;
    let (events, reply) = account.execute(&deposit("d1", usd(), 1_000)).unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::Deposited {
            amount: Amount(1_000),
            effective_at: Timestamp(100),
            ..
        }]
    ));
    assert_eq!(reply.balances[&usd()], balance(1_000, 0));
    assert_eq!(account.balance(usd()).available(), Amount(1_000));
}

#[test]
fn zero_amounts_are_refused() {
    let account = Account::default();
    assert!(matches!(
        account.decide(&deposit("d", usd(), 0)),
        Err(Error::ZeroValue { .. })
    ));
    assert!(matches!(
        account.decide(&withdraw("w", usd(), 0)),
        Err(Error::ZeroValue { .. })
    ));
}

#[test]
fn a_deposit_that_would_overflow_is_refused() {
    let (account, _) = given(&[deposit("d1", usd(), Amount::BALANCE_MAX.get())]);
    assert_eq!(
        account.decide(&deposit("d2", usd(), 1)),
        Err(Error::Overflow)
    );
}

#[test]
fn corrections_take_a_past_effective_time_but_not_a_future_one() {
    let account = Account::default();
    let backdated = AccountCommand::Deposit {
        command_id: id("fix"),
        asset: usd(),
        amount: Amount(5),
        effective_at: Some(Timestamp(10)),
        at: Timestamp(100),
    };
    assert!(matches!(
        account.decide(&backdated).unwrap().as_slice(),
        [AccountEvent::Deposited {
            effective_at: Timestamp(10),
            at: Timestamp(100),
            ..
        }]
    ));
    let future = AccountCommand::Withdraw {
        command_id: id("later"),
        asset: usd(),
        amount: Amount(5),
        effective_at: Some(Timestamp(101)),
        at: Timestamp(100),
    };
    assert_eq!(account.decide(&future), Err(Error::EffectiveInFuture));
}

#[test]
fn withdraw_debits_only_what_is_available() {
    let (mut account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 60),
    ]);
    assert_eq!(
        account.decide(&withdraw("w1", usd(), 401)),
        Err(Error::InsufficientFunds {
            asset: usd(),
            available: Amount(400),
            required: Amount(401)
        })
    );
    let (_, reply) = account.execute(&withdraw("w2", usd(), 400)).unwrap();
    assert_eq!(reply.balances[&usd()], balance(600, 600));
    assert!(matches!(
        account.decide(&withdraw("w3", btc(), 1)),
        Err(Error::InsufficientFunds { .. })
    ));
}

#[test]
fn a_repeated_command_id_is_a_no_op_with_the_first_reply() {
    let (mut account, _) = given(&[]);
    let (_, first) = account.execute(&deposit("d1", usd(), 100)).unwrap();
    account.execute(&deposit("d2", usd(), 50)).unwrap();
    let (events, again) = account.execute(&deposit("d1", usd(), 100)).unwrap();
    assert!(events.is_empty());
    assert_eq!(again, first, "the first reply, not today's balance");
    assert_eq!(account.balance(usd()).total, Amount(150));
}

#[test]
fn a_command_id_reused_for_another_command_is_a_conflict() {
    let (account, _) = given(&[deposit("d1", usd(), 100)]);
    assert_eq!(
        account.decide(&deposit("d1", usd(), 101)),
        Err(Error::CommandIdReused)
    );
    assert_eq!(
        account.decide(&withdraw("d1", usd(), 100)),
        Err(Error::CommandIdReused)
    );
}

#[test]
fn repeats_are_recognised_after_a_restart() {
    let (_, log) = given(&[deposit("d1", usd(), 100)]);
    let recovered = Account::replay(&log);
    assert_eq!(recovered.decide(&deposit("d1", usd(), 100)), Ok(vec![]));
}

#[test]
fn the_command_id_window_is_bounded_and_forgets_the_oldest() {
    let mut account = Account::default();
    for index in 0..=COMMAND_IDS_REMEMBERED_MAX {
        account
            .execute(&deposit(&format!("d{index}"), usd(), 1))
            .unwrap();
    }
    account.check_invariants().unwrap();
    assert!(!account.remembers(id("d0")));
    assert!(account.remembers(id("d1")));
    assert!(account.remembers(id(&format!("d{COMMAND_IDS_REMEMBERED_MAX}"))));
}

#[test]
fn a_buy_holds_the_quote_notional_and_a_sell_the_base_quantity() {
    let (mut account, _) = given(&[deposit("d1", usd(), 1_000), deposit("d2", btc(), 50)]);
    let (events, reply) = account.execute(&hold(1, Side::Buy, Some(10), 30)).unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::HoldPlaced {
            amount: Amount(300),
            side: Side::Buy,
            ..
        }]
    ));
    assert_eq!(reply.balances[&usd()], balance(1_000, 300));
    account.execute(&hold(2, Side::Sell, None, 20)).unwrap();
    assert_eq!(account.balance(btc()), balance(50, 20));
    assert_eq!(account.hold(OrderId(2)).unwrap().asset, btc());
    account.check_invariants().unwrap();
}

#[test]
fn a_hold_beyond_the_available_balance_is_insufficient_funds() {
    let (account, _) = given(&[deposit("d1", usd(), 299)]);
    assert_eq!(
        account.decide(&hold(1, Side::Buy, Some(10), 30)),
        Err(Error::InsufficientFunds {
            asset: usd(),
            available: Amount(299),
            required: Amount(300)
        })
    );
    assert!(matches!(
        account.decide(&hold(2, Side::Sell, None, 1)),
        Err(Error::InsufficientFunds { .. })
    ));
}

#[test]
fn a_buy_hold_needs_a_price_and_a_matching_symbol() {
    let (account, _) = given(&[deposit("d1", usd(), 1_000)]);
    assert!(matches!(
        account.decide(&hold(1, Side::Buy, None, 3)),
        Err(Error::InvalidOrder { .. })
    ));
    let mut wrong = hold(2, Side::Buy, Some(1), 3);
    if let AccountCommand::PlaceHold { symbol, .. } = &mut wrong {
        *symbol = Symbol::new("ETH-USD").unwrap();
    }
    assert!(matches!(
        account.decide(&wrong),
        Err(Error::InvalidOrder { .. })
    ));
}

#[test]
fn a_hold_whose_notional_overflows_is_refused() {
    let (account, _) = given(&[deposit("d1", usd(), 1_000)]);
    assert_eq!(
        account.decide(&hold(1, Side::Buy, Some(u64::MAX), 2)),
        Err(Error::Overflow)
    );
}

#[test]
fn one_hold_per_order() {
    let (account, _) = given(&[deposit("d1", usd(), 1_000), hold(1, Side::Buy, Some(1), 1)]);
    let mut other = hold(1, Side::Buy, Some(2), 1);
    if let AccountCommand::PlaceHold { command_id, .. } = &mut other {
        *command_id = id("another");
    }
    assert_eq!(
        account.decide(&other),
        Err(Error::DuplicateOrder {
            order_id: OrderId(1)
        })
    );
}

#[test]
fn risk_limit_on_open_orders() {
    let (account, _) = given(&[
        limits(2, u64::MAX, &[]),
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(1), 1),
        hold(2, Side::Buy, Some(1), 1),
    ]);
    assert_eq!(
        account.decide(&hold(3, Side::Buy, Some(1), 1)),
        Err(Error::RiskLimit {
            limit: "max_open_orders".to_owned(),
            requested: 3,
            maximum: 2
        })
    );
}

#[test]
fn risk_limit_on_order_notional() {
    let (account, _) = given(&[
        limits(10, 100, &[]),
        deposit("d1", usd(), 1_000),
        deposit("d2", btc(), 100),
    ]);
    assert!(account.decide(&hold(1, Side::Buy, Some(10), 10)).is_ok());
    assert_eq!(
        account.decide(&hold(1, Side::Buy, Some(10), 11)),
        Err(Error::RiskLimit {
            limit: "max_order_notional".to_owned(),
            requested: 110,
            maximum: 100
        })
    );
    assert!(matches!(
        account.decide(&hold(2, Side::Sell, Some(10), 11)),
        Err(Error::RiskLimit { .. })
    ));
}

#[test]
fn risk_limit_on_position_counts_open_buys() {
    let (account, _) = given(&[
        limits(10, u64::MAX, &[(btc(), 100)]),
        deposit("d1", usd(), 10_000),
        deposit("d2", btc(), 40),
        hold(1, Side::Buy, Some(1), 50),
    ]);
    assert!(account.decide(&hold(2, Side::Buy, Some(1), 10)).is_ok());
    assert_eq!(
        account.decide(&hold(2, Side::Buy, Some(1), 11)),
        Err(Error::RiskLimit {
            limit: "max_position".to_owned(),
            requested: 101,
            maximum: 100
        })
    );
    assert!(
        account.decide(&hold(3, Side::Sell, None, 40)).is_ok(),
        "selling reduces exposure"
    );
}

#[test]
fn risk_limit_on_order_rate_counts_the_holds_of_the_last_second() {
    let mut rate_limits = limits(100, u64::MAX, &[]);
    if let AccountCommand::SetRiskLimits { limits, .. } = &mut rate_limits {
        limits.max_orders_per_second = Some(2);
    }
    let held_at = |order: u64, at: i64| {
        let mut command = hold(order, Side::Sell, Some(1), 1);
        if let AccountCommand::PlaceHold { at: when, .. } = &mut command {
            *when = Timestamp(at);
        }
        command
    };
    let second = Timestamp::MICROS_PER_SECOND;
    let (account, _) = given(&[
        rate_limits,
        deposit("d1", btc(), 100),
        held_at(1, 10 * second),
        held_at(2, 10 * second),
    ]);
    assert_eq!(
        account.decide(&held_at(3, 10 * second + second / 4)),
        Err(Error::RiskLimit {
            limit: "max_orders_per_second".to_owned(),
            requested: 3,
            maximum: 2
        })
    );
    // Half a second later one token is back; the replayed state agrees.
    assert!(
        account
            .decide(&held_at(3, 10 * second + second / 2))
            .is_ok()
    );
    let (account, _) = given(&[
        limits(100, u64::MAX, &[]),
        deposit("d1", btc(), 100),
        held_at(1, 10 * second),
        held_at(2, 10 * second),
        held_at(3, 10 * second),
    ]);
    assert!(
        account.decide(&held_at(4, 10 * second)).is_ok(),
        "no rate limit set"
    );
}

#[test]
fn settling_a_buy_pays_from_the_hold_and_credits_the_base() {
    let (mut account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 30),
    ]);
    let (events, reply) = account.execute(&settle(1, 7, 9, 20)).unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::TradeSettled {
            debit_amount: Amount(180),
            credit_amount: Amount(20),
            ..
        }]
    ));
    assert_eq!(reply.balances[&usd()], balance(820, 120));
    assert_eq!(reply.balances[&btc()], balance(20, 0));
    let hold = account.hold(OrderId(1)).unwrap();
    assert_eq!(
        (hold.remaining, hold.quantity_open),
        (Amount(120), Quantity(10))
    );
}

#[test]
fn settling_a_sell_delivers_the_base_and_credits_the_quote() {
    let (mut account, _) = given(&[deposit("d1", btc(), 50), hold(1, Side::Sell, Some(10), 30)]);
    let (_, reply) = account.execute(&settle(1, 7, 12, 30)).unwrap();
    assert_eq!(reply.balances[&btc()], balance(20, 0));
    assert_eq!(reply.balances[&usd()], balance(360, 0));
}

#[test]
fn a_trade_settles_once_per_hold_whatever_the_command_id() {
    let (mut account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 30),
    ]);
    account.execute(&settle(1, 7, 10, 10)).unwrap();
    let mut retried = settle(1, 7, 10, 10);
    if let AccountCommand::SettleTrade { command_id, .. } = &mut retried {
        *command_id = id("other-id");
    }
    let (events, _) = account.execute(&retried).unwrap();
    assert!(events.is_empty());
    assert_eq!(account.balance(btc()).total, Amount(10));
}

#[test]
fn a_settlement_beyond_its_hold_is_refused() {
    let (account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 30),
    ]);
    assert!(matches!(
        account.decide(&settle(1, 1, 11, 30)),
        Err(Error::SettlementMismatch { .. })
    ));
    assert!(matches!(
        account.decide(&settle(1, 1, 10, 31)),
        Err(Error::SettlementMismatch { .. })
    ));
    assert_eq!(
        account.decide(&settle(9, 1, 10, 1)),
        Err(Error::HoldNotFound {
            order_id: OrderId(9)
        })
    );
}

#[test]
fn a_settlement_credit_that_would_overflow_is_refused() {
    let (account, _) = given(&[
        deposit("d1", usd(), Amount::BALANCE_MAX.get()),
        deposit("d2", btc(), 10),
        hold(1, Side::Sell, None, 10),
    ]);
    assert_eq!(account.decide(&settle(1, 1, 1, 1)), Err(Error::Overflow));
}

#[test]
fn release_returns_what_is_left_of_the_hold() {
    let (mut account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 30),
        settle(1, 7, 10, 10),
    ]);
    let (events, reply) = account.execute(&release(1)).unwrap();
    assert!(matches!(
        events.as_slice(),
        [AccountEvent::HoldReleased {
            amount: Amount(200),
            ..
        }]
    ));
    assert_eq!(reply.balances[&usd()], balance(900, 0));
    assert!(account.hold(OrderId(1)).is_none());
    assert_eq!(
        account.decide(&settle(1, 8, 10, 1)),
        Err(Error::HoldNotFound {
            order_id: OrderId(1)
        })
    );
    let mut unknown = release(2);
    if let AccountCommand::ReleaseHold { command_id, .. } = &mut unknown {
        *command_id = id("r2");
    }
    assert_eq!(
        account.decide(&unknown),
        Err(Error::HoldNotFound {
            order_id: OrderId(2)
        })
    );
}

#[test]
fn finish_settles_every_leg_and_releases_the_rest_in_one_decision() {
    let (mut account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 30),
    ]);
    let (events, reply) = account
        .execute(&finish(1, &[(7, 9, 10), (8, 10, 15)]))
        .unwrap();
    // 10 at 9 and 15 at 10 cost 240 of the 300 held; 60 go back.
    assert!(matches!(
        events.as_slice(),
        [
            AccountEvent::TradeSettled {
                debit_amount: Amount(90),
                ..
            },
            AccountEvent::TradeSettled {
                debit_amount: Amount(150),
                ..
            },
            AccountEvent::HoldReleased {
                amount: Amount(60),
                ..
            },
        ]
    ));
    assert_eq!(reply.balances[&usd()], balance(760, 0));
    assert_eq!(reply.balances[&btc()], balance(25, 0));
    assert!(account.hold(OrderId(1)).is_none());
    account.check_invariants().unwrap();
    // A retry repeats the first answer and changes nothing.
    let (events, again) = account
        .execute(&finish(1, &[(7, 9, 10), (8, 10, 15)]))
        .unwrap();
    assert!(events.is_empty());
    assert_eq!(again, reply);
    // So does a retry that names fewer legs: after a crash the saga may have learnt that
    // some were settled (by this very finish) before it heard the answer.
    let (events, again) = account.execute(&finish(1, &[(8, 10, 15)])).unwrap();
    assert!(events.is_empty());
    assert_eq!(again, reply);
}

#[test]
fn finish_skips_legs_already_settled() {
    let (mut account, _) = given(&[
        deposit("d1", btc(), 50),
        hold(1, Side::Sell, Some(10), 30),
        settle(1, 7, 12, 10),
    ]);
    let (events, reply) = account
        .execute(&finish(1, &[(7, 12, 10), (8, 11, 5)]))
        .unwrap();
    assert_eq!(events.len(), 2, "one new leg and the release");
    assert_eq!(reply.balances[&btc()], balance(35, 0));
    assert_eq!(reply.balances[&usd()], balance(120 + 55, 0));
}

#[test]
fn a_finish_that_cannot_settle_every_leg_changes_nothing() {
    let (account, _) = given(&[
        deposit("d1", usd(), 1_000),
        hold(1, Side::Buy, Some(10), 30),
    ]);
    // Each leg fits the hold alone; together they cost 310 of the 300 held.
    assert!(matches!(
        account.decide(&finish(1, &[(7, 10, 20), (8, 11, 10)])),
        Err(Error::SettlementMismatch { .. })
    ));
    // Together they fill 31 of an order of 30.
    assert!(matches!(
        account.decide(&finish(1, &[(7, 5, 20), (8, 5, 11)])),
        Err(Error::SettlementMismatch { .. })
    ));
    let too_many: Vec<(u64, u64, u64)> = (0..=FINISH_LEGS_MAX as u64)
        .map(|trade| (trade, 1, 1))
        .collect();
    assert!(matches!(
        account.decide(&finish(1, &too_many)),
        Err(Error::SettlementMismatch { .. })
    ));
    assert_eq!(
        account.decide(&finish(9, &[(7, 10, 1)])),
        Err(Error::HoldNotFound {
            order_id: OrderId(9)
        })
    );
}

#[test]
fn a_retried_hold_is_a_no_op_even_past_the_id_window() {
    let mut commands = vec![deposit("d0", usd(), 1_000), hold(1, Side::Buy, Some(1), 1)];
    for index in 0..COMMAND_IDS_REMEMBERED_MAX {
        commands.push(deposit(&format!("d{}", index + 1), usd(), 1));
    }
    let (account, _) = given(&commands);
    assert!(!account.remembers(CommandId::derived(1, "hold").unwrap()));
    assert_eq!(account.decide(&hold(1, Side::Buy, Some(1), 1)), Ok(vec![]));
}

#[test]
fn events_and_commands_have_unique_stable_names_and_round_trip() {
    use crate::aggregate::Message;
    let (_, log) = given(&[
        limits(5, 1_000_000, &[(btc(), 1_000)]),
        deposit("d1", usd(), 1_000),
        deposit("d2", btc(), 100),
        withdraw("w1", usd(), 1),
        hold(1, Side::Buy, Some(10), 30),
        settle(1, 7, 10, 10),
        release(1),
    ]);
    let names: BTreeSet<&str> = log.iter().map(Message::name).collect();
    assert_eq!(
        names.len(),
        6,
        "each event kind has its own name: {names:?}"
    );
    for event in &log {
        let json = serde_json::to_string(event).unwrap();
        assert_eq!(&serde_json::from_str::<AccountEvent>(&json).unwrap(), event);
    }
    assert_eq!(AccountEvent::SCHEMA_VERSION, 3);
}

#[test]
fn settlements_leave_the_id_window_to_the_commands_clients_retry() {
    let quantity = 2 * COMMAND_IDS_REMEMBERED_MAX as u64;
    let mut commands = vec![
        deposit("d0", btc(), quantity),
        withdraw("w1", btc(), 1),
        hold(1, Side::Sell, None, quantity - 1),
    ];
    for trade in 0..quantity - 1 {
        commands.push(settle(1, trade + 1, 10, 1));
    }
    let (account, _) = given(&commands);
    assert_eq!(account.balance(btc()), balance(0, 0));
    assert!(
        account.remembers(id("w1")),
        "the withdrawal is still remembered"
    );
    let retry = withdraw("w1", btc(), 1);
    assert_eq!(
        account.decide(&retry),
        Ok(vec![]),
        "its retry changes nothing"
    );
    assert_eq!(
        account.reply(&retry, &[]).balances[&btc()],
        balance(quantity - 1, 0),
        "and repeats the first answer"
    );
    // A settlement retried while its hold lives is still a no-op.
    assert_eq!(account.decide(&settle(1, 1, 10, 1)), Ok(vec![]));
}

#[test]
fn an_account_knows_whether_it_has_forgotten_a_command_id() {
    let mut commands = Vec::new();
    for index in 0..COMMAND_IDS_REMEMBERED_MAX - 1 {
        commands.push(deposit(&format!("d{index}"), btc(), 1));
    }
    let (account, _) = given(&commands);
    assert!(
        account.remembers_every_command(),
        "a new id is certainly new"
    );
    commands.push(deposit("last", btc(), 1));
    let (account, _) = given(&commands);
    assert!(account.remembers(id("d0")));
    assert!(
        !account.remembers_every_command(),
        "the window is full: the next id pushes the first out"
    );
    commands.push(deposit("one-more", btc(), 1));
    let (account, _) = given(&commands);
    assert!(!account.remembers(id("d0")), "forgotten");
    assert!(!account.remembers_every_command());
}
