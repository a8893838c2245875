//! The account aggregate: balances per asset `{total, held}`, holds for open orders, trade
//! settlement, risk limits, and idempotent command ids.
//!
//! Invariants, asserted in [`apply`](Account::apply) and checked by
//! [`check_invariants`](Account::check_invariants): for every asset `held ≤ total`, and `held`
//! equals the sum of the holds on that asset. A command id already applied is a no-op with the
//! first reply; the same id with a different body is refused with
//! [`Error::CommandIdReused`]. Each trade settles at most once per hold.

mod command;
mod event;
mod limits;
mod rate;
pub mod v1;
pub mod v2;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

pub use self::command::{AccountCommand, Leg};
pub use self::event::{AccountEvent, BalanceChange, CommandRef};
pub use self::limits::{OPEN_ORDERS_MAX_DEFAULT, RiskLimits};
use self::rate::OrderRate;
use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::ids::{Asset, CommandId, OrderId, Symbol, TradeId};
use crate::order::Side;
use crate::units::{Amount, Quantity, Timestamp};

/// How many command ids an account remembers for idempotency, oldest forgotten first.
///
/// Saga commands stay idempotent beyond this window through their holds (one hold per order,
/// each trade settled once per hold), and settlements never enter it; the window serves the
/// deposits, withdrawals and limits clients retry, and the holds and releases of orders (two
/// per order). Bounded so that a million accounts fit in memory: a deposit, withdrawal or
/// limits command older than the last 256 such commands of its account is recognised by its
/// host instead, which looks its id up in the journal (an index of tagged events) before
/// deciding a command the account does not remember.
pub const COMMAND_IDS_REMEMBERED_MAX: usize = 256;

/// Most legs one [`AccountCommand::Finish`] settles: its events (one per leg and the release)
/// go in one append, whose size the journal bounds. A saga with more unsettled fills settles
/// them one by one first.
pub const FINISH_LEGS_MAX: usize = 256;

/// One asset's balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Everything the account owns of the asset.
    pub total: Amount,
    /// The part reserved for open orders.
    pub held: Amount,
}

impl Balance {
    /// `total − held`: what new orders and withdrawals may use.
    pub fn available(&self) -> Amount {
        // held ≤ total is an invariant of the aggregate.
        Amount(self.total.get() - self.held.get())
    }
}

/// Funds reserved for one open order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The command that placed it (a retry of it is a no-op even after the id window).
    pub command: CommandRef,
    /// The order's market.
    pub symbol: Symbol,
    /// The market's base asset.
    pub base: Asset,
    /// The market's quote asset.
    pub quote: Asset,
    /// The order's side.
    pub side: Side,
    /// The asset held: quote for a buy, base for a sell.
    pub asset: Asset,
    /// What is still held.
    pub remaining: Amount,
    /// Base quantity not yet settled: counts toward the position limit while buying.
    pub quantity_open: Quantity,
    /// Trades already settled against this hold (each settles once).
    pub settled: BTreeSet<TradeId>,
}

/// The answer to an account command: the balances it touched, as they were right after it.
/// A repeated command id gets the very same answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReply {
    /// The command answered.
    pub command_id: Option<CommandId>,
    /// Each touched asset's balance after the command.
    pub balances: BTreeMap<Asset, Balance>,
}

/// What the account remembers of an applied command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Outcome {
    fingerprint: u64,
    /// Touched balances after the command: at most two assets (a settlement's debit and
    /// credit), stored inline so remembering stays small.
    balances: [Option<(Asset, Balance)>; 2],
}

/// The account aggregate. Created by its first event (accounts are virtual: any id exists).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    balances: BTreeMap<Asset, Balance>,
    holds: BTreeMap<OrderId, Hold>,
    limits: RiskLimits,
    order_rate: OrderRate,
    outcomes: BTreeMap<CommandId, Outcome>,
    /// Remembered command ids in the order they were applied, for eviction.
    outcome_order: VecDeque<CommandId>,
}

impl Account {
    /// The balance of `asset` (zero if never touched).
    pub fn balance(&self, asset: Asset) -> Balance {
        self.balances.get(&asset).copied().unwrap_or_default()
    }

    /// All balances, by asset.
    pub fn balances(&self) -> &BTreeMap<Asset, Balance> {
        &self.balances
    }

    /// The hold of an open order.
    pub fn hold(&self, order_id: OrderId) -> Option<&Hold> {
        self.holds.get(&order_id)
    }

    /// Holds of open orders, by order id.
    pub fn holds(&self) -> &BTreeMap<OrderId, Hold> {
        &self.holds
    }

    /// The risk limits in force.
    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    /// Whether the account has forgotten no command id yet (fewer than
    /// [`COMMAND_IDS_REMEMBERED_MAX`] remembered ones so far; the window never shrinks): a
    /// command id it does not remember is then certainly new.
    pub fn remembers_every_command(&self) -> bool {
        self.outcome_order.len() < COMMAND_IDS_REMEMBERED_MAX
    }

    /// Whether the command id is remembered (its repeat would be a no-op).
    pub fn remembers(&self, command_id: CommandId) -> bool {
        self.outcomes.contains_key(&command_id)
    }

    /// Checks every invariant, for tests and for assertions after recovery: `held ≤ total`
    /// per asset, `held` equals the sum of the holds on the asset, and the id window is
    /// consistent and bounded.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held_by_holds: BTreeMap<Asset, u128> = BTreeMap::new();
        for hold in self.holds.values() {
            *held_by_holds.entry(hold.asset).or_default() += u128::from(hold.remaining.get());
        }
        for (asset, balance) in &self.balances {
            if balance.held > balance.total {
                return Err(format!(
                    "{asset}: held {} > total {}",
                    balance.held, balance.total
                ));
            }
            let expected = held_by_holds.remove(asset).unwrap_or(0);
            if u128::from(balance.held.get()) != expected {
                return Err(format!(
                    "{asset}: held {} but holds sum {expected}",
                    balance.held
                ));
            }
        }
        if let Some((asset, amount)) = held_by_holds.into_iter().find(|(_, amount)| *amount > 0) {
            return Err(format!("{asset}: holds sum {amount} without a balance"));
        }
        if self.outcomes.len() != self.outcome_order.len()
            || self.outcomes.len() > COMMAND_IDS_REMEMBERED_MAX
        {
            return Err(format!(
                "command id window: {} outcomes, {} in order, max {COMMAND_IDS_REMEMBERED_MAX}",
                self.outcomes.len(),
                self.outcome_order.len()
            ));
        }
        Ok(())
    }

    fn decide_command(
        &self,
        command: &AccountCommand,
        cause: CommandRef,
    ) -> Result<AccountEvent, Error> {
        match *command {
            AccountCommand::Deposit {
                asset,
                amount,
                effective_at,
                at,
                ..
            } => {
                let effective_at = valid_time(effective_at, at)?;
                positive(amount, "amount")?;
                // Balances stay storable as signed 64-bit integers (the read models' type).
                self.balance(asset).total.checked_credit(amount)?;
                Ok(AccountEvent::Deposited {
                    command: cause,
                    asset,
                    amount,
                    effective_at,
                    at,
                })
            }
            AccountCommand::Withdraw {
                asset,
                amount,
                effective_at,
                at,
                ..
            } => {
                let effective_at = valid_time(effective_at, at)?;
                positive(amount, "amount")?;
                self.require_available(asset, amount)?;
                Ok(AccountEvent::Withdrawn {
                    command: cause,
                    asset,
                    amount,
                    effective_at,
                    at,
                })
            }
            AccountCommand::PlaceHold { .. } => self.decide_hold(command, cause),
            AccountCommand::SettleTrade {
                order_id,
                trade_id,
                price,
                quantity,
                at,
                ..
            } => {
                let hold = self
                    .holds
                    .get(&order_id)
                    .ok_or(Error::HoldNotFound { order_id })?;
                let leg = Leg {
                    trade_id,
                    price,
                    quantity,
                };
                self.decide_settle(order_id, hold, leg, Amount::ZERO, at, cause)
            }
            AccountCommand::ReleaseHold { order_id, at, .. } => {
                let hold = self
                    .holds
                    .get(&order_id)
                    .ok_or(Error::HoldNotFound { order_id })?;
                Ok(AccountEvent::HoldReleased {
                    command: cause,
                    order_id,
                    asset: hold.asset,
                    amount: hold.remaining,
                    at,
                })
            }
            AccountCommand::Finish { .. } => unreachable!("decided by decide_finish"),
            AccountCommand::SetRiskLimits { ref limits, at, .. } => {
                limits.validate()?;
                Ok(AccountEvent::RiskLimitsSet {
                    command: cause,
                    limits: limits.clone(),
                    at,
                })
            }
        }
    }

    /// This account's leg of a trade against `hold` (as earlier legs of the same decision
    /// left it), `credited` being what those legs already credit in this leg's credit asset.
    fn decide_settle(
        &self,
        order_id: OrderId,
        hold: &Hold,
        leg: Leg,
        credited: Amount,
        at: Timestamp,
        cause: CommandRef,
    ) -> Result<AccountEvent, Error> {
        let Leg {
            trade_id,
            price,
            quantity,
        } = leg;
        positive(Amount(quantity.get()), "quantity")?;
        positive(Amount(price.get()), "price")?;
        let mismatch = |reason: String| Error::SettlementMismatch { order_id, reason };
        if quantity > hold.quantity_open {
            return Err(mismatch(format!(
                "trade {trade_id} quantity {quantity} exceeds the {} left open",
                hold.quantity_open
            )));
        }
        let notional = price.notional(quantity)?;
        let (debit_asset, debit_amount, credit_asset, credit_amount) = match hold.side {
            Side::Buy => (hold.quote, notional, hold.base, Amount::from(quantity)),
            Side::Sell => (hold.base, Amount::from(quantity), hold.quote, notional),
        };
        if debit_amount > hold.remaining {
            return Err(mismatch(format!(
                "trade {trade_id} costs {debit_amount} {debit_asset}, the hold has {}",
                hold.remaining
            )));
        }
        self.balance(credit_asset)
            .total
            .checked_credit(credited)?
            .checked_credit(credit_amount)?;
        Ok(AccountEvent::TradeSettled {
            command: cause,
            order_id,
            trade_id,
            price,
            quantity,
            debit_asset,
            debit_amount,
            credit_asset,
            credit_amount,
            at,
        })
    }

    /// [`AccountCommand::Finish`]: each leg not yet settled, decided against the hold as the
    /// legs before it leave it, then the release of what remains; all or nothing.
    fn decide_finish(
        &self,
        order_id: OrderId,
        legs: &[Leg],
        at: Timestamp,
        cause: CommandRef,
        events: &mut Vec<AccountEvent>,
    ) -> Result<(), Error> {
        if legs.len() > FINISH_LEGS_MAX {
            return Err(Error::SettlementMismatch {
                order_id,
                reason: format!(
                    "{} legs in one finish; at most {FINISH_LEGS_MAX}",
                    legs.len()
                ),
            });
        }
        let Some(hold) = self.holds.get(&order_id) else {
            return Err(Error::HoldNotFound { order_id });
        };
        let mut hold = hold.clone();
        let mut credited = Amount::ZERO;
        // Decided into a list of its own, so that a refused leg leaves `events` untouched.
        let mut settled = Vec::with_capacity(legs.len() + 1);
        for leg in legs {
            if hold.settled.contains(&leg.trade_id) {
                continue;
            }
            let event = self.decide_settle(order_id, &hold, *leg, credited, at, cause)?;
            let AccountEvent::TradeSettled {
                debit_amount,
                credit_amount,
                ..
            } = event
            else {
                unreachable!("a leg settles")
            };
            hold.remaining = Amount(hold.remaining.get() - debit_amount.get());
            hold.quantity_open = Quantity(hold.quantity_open.get() - leg.quantity.get());
            hold.settled.insert(leg.trade_id);
            credited = Amount(credited.get() + credit_amount.get());
            settled.push(event);
        }
        events.append(&mut settled);
        events.push(AccountEvent::HoldReleased {
            command: cause,
            order_id,
            asset: hold.asset,
            amount: hold.remaining,
            at,
        });
        Ok(())
    }

    fn decide_hold(
        &self,
        command: &AccountCommand,
        cause: CommandRef,
    ) -> Result<AccountEvent, Error> {
        let AccountCommand::PlaceHold {
            order_id,
            symbol,
            base,
            quote,
            side,
            price,
            quantity,
            ref start,
            at,
            ..
        } = *command
        else {
            unreachable!("decide_hold is only called with PlaceHold");
        };
        if self.holds.contains_key(&order_id) {
            return Err(Error::DuplicateOrder { order_id });
        }
        if base == quote || symbol != Symbol::of(base, quote) {
            return Err(Error::InvalidOrder {
                reason: format!("symbol {symbol} does not match assets {base}/{quote}"),
            });
        }
        positive(Amount(quantity.get()), "quantity")?;
        if let Some(price) = price {
            positive(Amount(price.get()), "price")?;
        }
        let open_orders = self.holds.len() as u64 + 1;
        self.limits.check_open_orders(open_orders)?;
        self.order_rate
            .check(self.limits.max_orders_per_second, at)?;
        let notional = price.map(|price| price.notional(quantity)).transpose()?;
        if let Some(notional) = notional {
            self.limits.check_order_notional(notional)?;
        }
        let (asset, amount) = match side {
            Side::Buy => {
                let notional = notional.ok_or_else(|| Error::InvalidOrder {
                    reason: "a buy needs a price (limit or protection) to size its hold".to_owned(),
                })?;
                self.limits
                    .check_position(base, self.position_if_filled(base, quantity)?)?;
                (quote, notional)
            }
            Side::Sell => (base, Amount::from(quantity)),
        };
        self.require_available(asset, amount)?;
        Ok(AccountEvent::HoldPlaced {
            command: cause,
            order_id,
            symbol,
            base,
            quote,
            side,
            quantity,
            asset,
            amount,
            start: start.clone(),
            at,
        })
    }

    /// The position in `base` if every open buy on it and one more of `quantity` filled.
    fn position_if_filled(&self, base: Asset, quantity: Quantity) -> Result<Amount, Error> {
        let mut position = self
            .balance(base)
            .total
            .checked_add(Amount::from(quantity))?;
        for hold in self.holds.values() {
            if hold.side == Side::Buy && hold.base == base {
                position = position.checked_add(Amount::from(hold.quantity_open))?;
            }
        }
        Ok(position)
    }

    fn require_available(&self, asset: Asset, required: Amount) -> Result<(), Error> {
        let available = self.balance(asset).available();
        if available < required {
            return Err(Error::InsufficientFunds {
                asset,
                available,
                required,
            });
        }
        Ok(())
    }

    /// A repeat of a command already applied: its id is remembered (or, past the window,
    /// the hold it placed or the trade it settled is still there).
    fn is_repeat(&self, command: &AccountCommand, fingerprint: u64) -> Result<bool, Error> {
        if let Some(outcome) = self.outcomes.get(&command.command_id()) {
            return if outcome.fingerprint == fingerprint {
                Ok(true)
            } else {
                Err(Error::CommandIdReused)
            };
        }
        Ok(match *command {
            AccountCommand::PlaceHold { order_id, .. } => self
                .holds
                .get(&order_id)
                .is_some_and(|hold| hold.command.fingerprint == fingerprint),
            AccountCommand::SettleTrade {
                order_id, trade_id, ..
            } => self
                .holds
                .get(&order_id)
                .is_some_and(|hold| hold.settled.contains(&trade_id)),
            _ => false,
        })
    }

    fn balance_mut(&mut self, asset: Asset) -> &mut Balance {
        self.balances.entry(asset).or_default()
    }

    fn remember(&mut self, command: CommandRef, touched: [Option<Asset>; 2]) {
        let balances = touched.map(|asset| asset.map(|asset| (asset, self.balance(asset))));
        if self.outcome_order.len() == COMMAND_IDS_REMEMBERED_MAX {
            let oldest = self.outcome_order.pop_front().expect("window is full");
            self.outcomes.remove(&oldest);
        }
        let previous = self.outcomes.insert(
            command.id,
            Outcome {
                fingerprint: command.fingerprint,
                balances,
            },
        );
        assert!(
            previous.is_none(),
            "decide never lets a remembered command id through"
        );
        self.outcome_order.push_back(command.id);
    }

    fn assert_balance(&self, asset: Asset) {
        let balance = self.balance(asset);
        assert!(balance.held <= balance.total, "{asset}: held exceeds total");
    }
}

/// Resolves a command's valid time: `effective_at` if given (never after `at`), else `at`.
fn valid_time(effective_at: Option<Timestamp>, at: Timestamp) -> Result<Timestamp, Error> {
    match effective_at {
        Some(effective_at) if effective_at > at => Err(Error::EffectiveInFuture),
        Some(effective_at) => Ok(effective_at),
        None => Ok(at),
    }
}

fn positive(amount: Amount, what: &str) -> Result<(), Error> {
    if amount.is_zero() {
        return Err(Error::zero(what));
    }
    Ok(())
}

impl Aggregate for Account {
    const KIND: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Reply = AccountReply;

    fn decide_into(
        &self,
        command: &AccountCommand,
        events: &mut Vec<AccountEvent>,
    ) -> Result<(), Error> {
        let fingerprint = command.fingerprint();
        if self.is_repeat(command, fingerprint)? {
            return Ok(());
        }
        let cause = CommandRef {
            id: command.command_id(),
            fingerprint,
        };
        if let AccountCommand::Finish {
            order_id,
            ref legs,
            at,
            ..
        } = *command
        {
            return self.decide_finish(order_id, legs, at, cause, events);
        }
        events.push(self.decide_command(command, cause)?);
        Ok(())
    }

    fn apply(&mut self, event: &AccountEvent) {
        let touched = match *event {
            AccountEvent::Deposited { asset, amount, .. } => {
                let balance = self.balance_mut(asset);
                balance.total = balance
                    .total
                    .checked_add(amount)
                    .expect("decided without overflow");
                [Some(asset), None]
            }
            AccountEvent::Withdrawn { asset, amount, .. } => {
                let balance = self.balance_mut(asset);
                balance.total = balance
                    .total
                    .checked_sub(amount)
                    .expect("decided within total");
                [Some(asset), None]
            }
            AccountEvent::HoldPlaced {
                command,
                order_id,
                symbol,
                base,
                quote,
                side,
                quantity,
                asset,
                amount,
                at,
                start: _,
            } => {
                self.order_rate.count(self.limits.max_orders_per_second, at);
                let balance = self.balance_mut(asset);
                balance.held = balance
                    .held
                    .checked_add(amount)
                    .expect("decided within total");
                let hold = Hold {
                    command,
                    symbol,
                    base,
                    quote,
                    side,
                    asset,
                    remaining: amount,
                    quantity_open: quantity,
                    settled: BTreeSet::new(),
                };
                assert!(
                    self.holds.insert(order_id, hold).is_none(),
                    "one hold per order"
                );
                [Some(asset), None]
            }
            AccountEvent::TradeSettled {
                order_id,
                trade_id,
                quantity,
                debit_asset,
                debit_amount,
                credit_asset,
                credit_amount,
                ..
            } => {
                let hold = self
                    .holds
                    .get_mut(&order_id)
                    .expect("settled against a hold");
                assert_eq!(hold.asset, debit_asset, "a settlement pays out of its hold");
                hold.remaining = hold
                    .remaining
                    .checked_sub(debit_amount)
                    .expect("within hold");
                hold.quantity_open = hold
                    .quantity_open
                    .checked_sub(quantity)
                    .expect("within order");
                assert!(
                    hold.settled.insert(trade_id),
                    "each trade settles once per hold"
                );
                let debit = self.balance_mut(debit_asset);
                debit.held = debit.held.checked_sub(debit_amount).expect("within held");
                debit.total = debit.total.checked_sub(debit_amount).expect("within total");
                let credit = self.balance_mut(credit_asset);
                credit.total = credit
                    .total
                    .checked_add(credit_amount)
                    .expect("decided without overflow");
                [Some(debit_asset), Some(credit_asset)]
            }
            AccountEvent::HoldReleased {
                order_id,
                asset,
                amount,
                ..
            } => {
                let hold = self.holds.remove(&order_id).expect("released a hold");
                assert_eq!(
                    hold.remaining, amount,
                    "a release gives back all that is left"
                );
                let balance = self.balance_mut(asset);
                balance.held = balance.held.checked_sub(amount).expect("within held");
                // Both of the order's assets: a finish also settled into the other one.
                [Some(hold.base), Some(hold.quote)]
            }
            AccountEvent::RiskLimitsSet { ref limits, .. } => {
                self.limits = limits.clone();
                [None, None]
            }
        };
        for asset in touched.into_iter().flatten() {
            self.assert_balance(asset);
        }
        // A settlement is recognised by its hold's settled trades (and, after the release,
        // refused for want of a hold): it need not take a place in the id window, where a
        // burst of fills would push out the deposits and withdrawals clients may retry.
        if !matches!(event, AccountEvent::TradeSettled { .. }) {
            self.remember(event.command(), touched);
        }
    }

    fn reply(&self, command: &AccountCommand, events: &[AccountEvent]) -> AccountReply {
        let command_id = command.command_id();
        let touched: Vec<(Asset, Balance)> = match self.outcomes.get(&command_id) {
            Some(outcome) => outcome.balances.iter().flatten().copied().collect(),
            // A settlement (never remembered), or a repeat recognised by its hold or settled
            // trade past the id window: the balances it touches as they are now.
            None => {
                debug_assert!(
                    events.is_empty() || matches!(command, AccountCommand::SettleTrade { .. }),
                    "applied commands other than settlements are remembered"
                );
                self.assets_touched_by(command)
                    .into_iter()
                    .map(|asset| (asset, self.balance(asset)))
                    .collect()
            }
        };
        AccountReply {
            command_id: Some(command_id),
            balances: touched.into_iter().collect(),
        }
    }
}

impl Account {
    fn assets_touched_by(&self, command: &AccountCommand) -> Vec<Asset> {
        match *command {
            AccountCommand::Deposit { asset, .. } | AccountCommand::Withdraw { asset, .. } => {
                vec![asset]
            }
            AccountCommand::PlaceHold { order_id, .. }
            | AccountCommand::SettleTrade { order_id, .. }
            | AccountCommand::ReleaseHold { order_id, .. }
            | AccountCommand::Finish { order_id, .. } => match self.holds.get(&order_id) {
                Some(hold) => vec![hold.base, hold.quote],
                None => Vec::new(),
            },
            AccountCommand::SetRiskLimits { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
