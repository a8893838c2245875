//! Bitemporal views of an account: its balances as of a valid time, as known at a
//! transaction time.
//!
//! Every stored event has two times: `recorded_at` (transaction time, set by the journal when
//! it was written) and `effective_at` (valid time, from the command; a correction carries a
//! past one). "As of `valid_at`, as known at `known_at`" means: take the events recorded at
//! or before `known_at`, keep those effective at or before `valid_at`, and fold them in
//! valid-time order (ties in recording order).
//!
//! Balances here are signed: a correction backdated before an earlier withdrawal can make a
//! past balance negative in valid time, and a report must show that rather than hide it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::account::AccountEvent;
use crate::ids::Asset;
use crate::units::Timestamp;

/// An account event with the transaction time the journal recorded it at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedEvent<'a> {
    /// Transaction time.
    pub recorded_at: Timestamp,
    /// The event.
    pub event: &'a AccountEvent,
}

/// One asset's balance in a historical view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoricalBalance {
    /// Everything owned.
    pub total: i128,
    /// Reserved for open orders.
    pub held: i128,
}

/// An account as of a valid time, as known at a transaction time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountAsOf<'a> {
    /// Balances by asset.
    pub balances: BTreeMap<Asset, HistoricalBalance>,
    /// The events that make up the view, in valid-time order.
    pub events: Vec<RecordedEvent<'a>>,
}

/// The account's state as of `valid_at`, as known at `known_at`, from its events in
/// recording order (the order the journal returns them in).
pub fn account_as_of<'a>(
    events: impl IntoIterator<Item = RecordedEvent<'a>>,
    valid_at: Timestamp,
    known_at: Timestamp,
) -> AccountAsOf<'a> {
    let mut view: Vec<RecordedEvent<'a>> = events
        .into_iter()
        .filter(|recorded| {
            recorded.recorded_at <= known_at && recorded.event.effective_at() <= valid_at
        })
        .collect();
    // Stable: events effective at the same instant keep their recording order.
    view.sort_by_key(|recorded| recorded.event.effective_at());
    let mut balances: BTreeMap<Asset, HistoricalBalance> = BTreeMap::new();
    for recorded in &view {
        for (asset, total, held) in balance_changes(recorded.event) {
            let balance = balances.entry(asset).or_default();
            balance.total += total;
            balance.held += held;
        }
    }
    AccountAsOf {
        balances,
        events: view,
    }
}

/// The `(asset, Δtotal, Δheld)` an event makes.
fn balance_changes(event: &AccountEvent) -> Vec<(Asset, i128, i128)> {
    let signed = |amount: crate::units::Amount| i128::from(amount.get());
    match *event {
        AccountEvent::Deposited { asset, amount, .. } => vec![(asset, signed(amount), 0)],
        AccountEvent::Withdrawn { asset, amount, .. } => vec![(asset, -signed(amount), 0)],
        AccountEvent::HoldPlaced { asset, amount, .. } => vec![(asset, 0, signed(amount))],
        AccountEvent::HoldReleased { asset, amount, .. } => vec![(asset, 0, -signed(amount))],
        AccountEvent::TradeSettled {
            debit_asset,
            debit_amount,
            credit_asset,
            credit_amount,
            ..
        } => vec![
            (debit_asset, -signed(debit_amount), -signed(debit_amount)),
            (credit_asset, signed(credit_amount), 0),
        ],
        AccountEvent::RiskLimitsSet { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Account, AccountCommand};
    use crate::aggregate::Aggregate;
    use crate::ids::CommandId;
    use crate::units::Amount;

    fn usd() -> Asset {
        Asset::new("USD").unwrap()
    }

    /// Runs (command, recorded_at) pairs; the journal would stamp recorded_at.
    fn record(commands: &[(AccountCommand, i64)]) -> (Account, Vec<(Timestamp, AccountEvent)>) {
        let mut account = Account::default();
        let mut log = Vec::new();
        for (command, recorded_at) in commands {
            let (events, _) = account.execute(command).unwrap();
            log.extend(
                events
                    .into_iter()
                    .map(|event| (Timestamp(*recorded_at), event)),
            );
        }
        (account, log)
    }

    fn money(
        kind: &str,
        id: &str,
        amount: u64,
        effective_at: Option<i64>,
        at: i64,
    ) -> AccountCommand {
        let command_id = CommandId::new(id).unwrap();
        let (amount, effective_at, at) =
            (Amount(amount), effective_at.map(Timestamp), Timestamp(at));
        match kind {
            "deposit" => AccountCommand::Deposit {
                command_id,
                asset: usd(),
                amount,
                effective_at,
                at,
            },
            _ => AccountCommand::Withdraw {
                command_id,
                asset: usd(),
                amount,
                effective_at,
                at,
            },
        }
    }

    fn total_as_of(log: &[(Timestamp, AccountEvent)], valid_at: i64, known_at: i64) -> i128 {
        let events = log.iter().map(|(recorded_at, event)| RecordedEvent {
            recorded_at: *recorded_at,
            event,
        });
        account_as_of(events, Timestamp(valid_at), Timestamp(known_at))
            .balances
            .get(&usd())
            .map_or(0, |balance| balance.total)
    }

    #[test]
    fn a_backdated_correction_changes_the_past_only_as_known_after_it() {
        // Day 10: deposit 100. Day 20: withdraw 30. Day 30: we learn the day-10 deposit was
        // really 150, so a correction of +50 effective day 10 is recorded on day 30.
        let (account, log) = record(&[
            (money("deposit", "d1", 100, None, 10), 10),
            (money("withdraw", "w1", 30, None, 20), 20),
            (money("deposit", "fix", 50, Some(10), 30), 30),
        ]);
        assert_eq!(account.balance(usd()).total, Amount(120));
        assert_eq!(
            total_as_of(&log, 15, 25),
            100,
            "as known before the correction"
        );
        assert_eq!(
            total_as_of(&log, 15, 30),
            150,
            "as known after the correction"
        );
        assert_eq!(total_as_of(&log, 25, 25), 70);
        assert_eq!(total_as_of(&log, 25, 30), 120);
        assert_eq!(
            total_as_of(&log, 5, 30),
            0,
            "nothing was valid before day 10"
        );
        assert_eq!(
            total_as_of(&log, 30, 30),
            i128::from(account.balance(usd()).total.get())
        );
    }

    #[test]
    fn a_correction_backdated_before_a_withdrawal_can_show_a_negative_past() {
        let (_, log) = record(&[
            (money("deposit", "d1", 100, None, 10), 10),
            (money("withdraw", "fix", 40, Some(5), 20), 20),
        ]);
        assert_eq!(total_as_of(&log, 7, 20), -40);
        assert_eq!(total_as_of(&log, 10, 20), 60);
    }

    #[test]
    fn the_view_lists_its_events_in_valid_time_order() {
        let (_, log) = record(&[
            (money("deposit", "d1", 100, None, 10), 10),
            (money("deposit", "fix", 1, Some(3), 20), 20),
        ]);
        let events = log.iter().map(|(recorded_at, event)| RecordedEvent {
            recorded_at: *recorded_at,
            event,
        });
        let view = account_as_of(events, Timestamp(100), Timestamp(100));
        let order: Vec<i64> = view
            .events
            .iter()
            .map(|recorded| recorded.event.effective_at().0)
            .collect();
        assert_eq!(order, vec![3, 10]);
    }
}
