//! Pattern rules over the log (complex event processing): thresholds and sequences within a
//! time, keyed by market, account or owner, each raising an [`Alert`] with an [`Action`].
//!
//! Every rule runs on the [window operator](crate::window): sliding (hopping) windows of the
//! rule's width `within`, one every quarter of it, emitting on every input, so "within T"
//! means "inside one window of width T" (a pattern spread over up to 1¼ T may still match
//! when it straddles two windows' starts; one shorter than ¾ T always does). Shipped kinds:
//!
//! - [`RuleKind::PriceMove`]: a market's trade prices moving more than `bps` within T
//!   (highest against lowest): **halt** the market.
//! - [`RuleKind::CancelBurst`]: at least `cancels` cancels from one account within T:
//!   **throttle** it (an order rate limit) and flag it.
//! - [`RuleKind::WashTrade`]: at least `trades` trades with the same owner on both sides
//!   within T (accounts are grouped by owner in [`RuleSet::owners`]; an account is its own
//!   owner otherwise): **flag**.
//! - [`RuleKind::DepositWithdrawal`]: a deposit followed by a withdrawal of at least
//!   `percent` % of it, of one asset by one account, within T: **flag**.
//!
//! A rule alerts once for a key within its `within` (a cooldown), so a burst raises one
//! alert, not one per event. Pure: the caller feeds [`Fact`]s in log order
//! ([`RuleEngine::observe`]) and carries out the alerts' actions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::book::Trade;
use crate::window::{Accumulator, Emit, LatePolicy, WindowConfig, WindowOperator, WindowSpec};

#[cfg(test)]
mod tests;

/// Most windows one rule holds (oldest closed early past it).
pub const RULE_WINDOWS_MAX: usize = 100_000;
/// Most rules in a set.
pub const RULES_MAX: usize = 64;
/// How far behind the latest event time a rule's windows still take events, microseconds.
pub const RULE_OUT_OF_ORDERNESS_MICROS: i64 = 1_000_000;

/// What a rule matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    /// A market's prices move more than `bps` (highest against lowest) within `within_ms`.
    PriceMove {
        /// Basis points (1/100 of a percent).
        bps: u64,
        /// The time, milliseconds.
        within_ms: u64,
    },
    /// At least `cancels` cancels from one account within `within_ms`.
    CancelBurst {
        /// Cancels.
        cancels: u64,
        /// The time, milliseconds.
        within_ms: u64,
        /// The order rate the account is throttled to (orders a second).
        throttle_orders_per_second: u32,
    },
    /// At least `trades` trades with one owner on both sides within `within_ms`.
    WashTrade {
        /// Trades.
        trades: u64,
        /// The time, milliseconds.
        within_ms: u64,
    },
    /// A deposit, then a withdrawal of at least `percent` % of it (same account and asset)
    /// within `within_ms`.
    DepositWithdrawal {
        /// Percent of the deposit.
        percent: u64,
        /// The time, milliseconds.
        within_ms: u64,
    },
    /// The book halted a market because a print would have left its price band (the
    /// market's `band_bps` around its reference price). The band is decided by the book,
    /// before the print: a rule over the log sees a print only after it happened, so only the
    /// book can stop one. This rule makes each such halt an alert like the others'.
    PriceBand {},
}

impl RuleKind {
    /// The rule's time, microseconds.
    fn within_micros(&self) -> i64 {
        let millis = match self {
            RuleKind::PriceMove { within_ms, .. }
            | RuleKind::CancelBurst { within_ms, .. }
            | RuleKind::WashTrade { within_ms, .. }
            | RuleKind::DepositWithdrawal { within_ms, .. } => *within_ms,
            // No window: each halt is one alert.
            RuleKind::PriceBand {} => 0,
        };
        i64::try_from(millis.saturating_mul(1_000)).unwrap_or(i64::MAX)
    }
}

/// A named rule. (Its unknown fields are refused by [`RuleKind`], which the flattened kind
/// hands them to.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Its name (alerts carry it): 1 to 64 of `A-Z a-z 0-9 _ - .`.
    pub name: String,
    /// What it matches.
    #[serde(flatten)]
    pub kind: RuleKind,
}

/// The rules in force and how accounts group into owners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Account → owner, for [`RuleKind::WashTrade`]; an account not listed is its own owner.
    #[serde(default)]
    pub owners: BTreeMap<String, String>,
}

impl RuleSet {
    /// The five shipped rules, at the thresholds of a quiet market.
    pub fn shipped() -> Self {
        let rule = |name: &str, kind| Rule {
            name: name.to_owned(),
            kind,
        };
        RuleSet {
            rules: vec![
                rule("price_band", RuleKind::PriceBand {}),
                rule(
                    "price_move",
                    RuleKind::PriceMove {
                        bps: 1_000,
                        within_ms: 60_000,
                    },
                ),
                rule(
                    "cancel_burst",
                    RuleKind::CancelBurst {
                        cancels: 50,
                        within_ms: 10_000,
                        throttle_orders_per_second: 1,
                    },
                ),
                rule(
                    "wash_trade",
                    RuleKind::WashTrade {
                        trades: 1,
                        within_ms: 60_000,
                    },
                ),
                rule(
                    "deposit_withdrawal",
                    RuleKind::DepositWithdrawal {
                        percent: 90,
                        within_ms: 3_600_000,
                    },
                ),
            ],
            owners: BTreeMap::new(),
        }
    }

    /// The longest time any of its rules looks back, microseconds: what a monitor that
    /// restarts reads again to refill its windows.
    pub fn longest_window_micros(&self) -> i64 {
        self.rules
            .iter()
            .map(|rule| rule.kind.within_micros())
            .max()
            .unwrap_or(0)
    }

    /// Why this set cannot run, if it cannot: names unique and well formed, thresholds and
    /// times positive, at most [`RULES_MAX`] rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > RULES_MAX {
            return Err(format!("at most {RULES_MAX} rules"));
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &self.rules {
            let well_formed = (1..=64).contains(&rule.name.len())
                && rule
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !well_formed {
                return Err(format!(
                    "rule name {:?}: 1 to 64 of A-Z a-z 0-9 _ - .",
                    rule.name
                ));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(format!("two rules are named {:?}", rule.name));
            }
            let positive = match &rule.kind {
                RuleKind::PriceMove { bps, within_ms } => *bps > 0 && *within_ms > 0,
                RuleKind::CancelBurst {
                    cancels,
                    within_ms,
                    throttle_orders_per_second,
                } => *cancels > 0 && *within_ms > 0 && *throttle_orders_per_second > 0,
                RuleKind::WashTrade { trades, within_ms } => *trades > 0 && *within_ms > 0,
                RuleKind::DepositWithdrawal { percent, within_ms } => {
                    (1..=100).contains(percent) && *within_ms > 0
                }
                RuleKind::PriceBand {} => continue,
            };
            if !positive || rule.kind.within_micros() < 4 {
                return Err(format!(
                    "rule {:?}: thresholds and times must be positive (percent 1 to 100)",
                    rule.name
                ));
            }
        }
        Ok(())
    }
}

/// What an alert asks for. (Externally tagged, so alerts journal in the binary codec.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Halt the market.
    Halt,
    /// Flag the account (or owner) for review.
    Flag,
    /// Limit the account's order rate to this many a second, and flag it.
    Throttle {
        /// Orders a second.
        orders_per_second: u32,
    },
}

/// A rule's match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule.
    pub rule: String,
    /// What it is about: a market (`BTC-USD`), an account or an owner.
    pub key: String,
    /// The account an action applies to, if any (the key of account rules).
    pub account: Option<String>,
    /// The market, for market rules.
    pub symbol: Option<String>,
    /// What to do.
    pub action: Action,
    /// What was seen, for people.
    pub message: String,
    /// The global offset of the event that completed the pattern.
    pub offset: u64,
    /// That event's time, microseconds.
    pub at: i64,
}

/// An event of the log, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// A trade of `symbol`.
    Trade {
        /// The market.
        symbol: String,
        /// The trade.
        trade: Trade,
    },
    /// An order cancelled at its account's request.
    Cancelled {
        /// The account.
        account: String,
        /// When.
        at: i64,
    },
    /// Money in.
    Deposited {
        /// The account.
        account: String,
        /// The asset.
        asset: String,
        /// How much.
        amount: u64,
        /// When.
        at: i64,
    },
    /// Money out.
    Withdrawn {
        /// The account.
        account: String,
        /// The asset.
        asset: String,
        /// How much.
        amount: u64,
        /// When.
        at: i64,
    },
    /// The book halted `symbol`: a print at `price` would have left its band.
    BandHalt {
        /// The market.
        symbol: String,
        /// The price that would have printed.
        price: u64,
        /// The band then, lowest and highest price allowed.
        band: (u64, u64),
        /// When.
        at: i64,
    },
}

/// What a rule's windows fold: prices, counts, or the largest deposit so far and whether a
/// large enough withdrawal followed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folded {
    low: u64,
    high: u64,
    count: u64,
    largest_deposit: u64,
    /// The largest withdrawal after a deposit, in percent of the largest deposit before it.
    withdrawn_percent: u64,
}

/// One input to a rule's windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A price.
    Price(u64),
    /// One more of what the rule counts.
    One,
    /// A deposit of this much.
    Deposit(u64),
    /// A withdrawal of this much.
    Withdrawal(u64),
}

impl Accumulator for Folded {
    type Input = Input;
    type Output = Folded;

    fn first(at: i64, input: &Input) -> Self {
        let mut folded = Folded {
            low: u64::MAX,
            high: 0,
            count: 0,
            largest_deposit: 0,
            withdrawn_percent: 0,
        };
        folded.add(at, input);
        folded
    }

    fn add(&mut self, _at: i64, input: &Input) {
        self.count += 1;
        match *input {
            Input::Price(price) => {
                self.low = self.low.min(price);
                self.high = self.high.max(price);
            }
            Input::One => {}
            Input::Deposit(amount) => self.largest_deposit = self.largest_deposit.max(amount),
            Input::Withdrawal(amount) if self.largest_deposit > 0 => {
                let percent = u128::from(amount) * 100 / u128::from(self.largest_deposit);
                let percent = u64::try_from(percent).unwrap_or(u64::MAX);
                self.withdrawn_percent = self.withdrawn_percent.max(percent);
            }
            Input::Withdrawal(_) => {}
        }
    }

    fn merge(&mut self, other: Self) {
        self.low = self.low.min(other.low);
        self.high = self.high.max(other.high);
        self.count += other.count;
        self.largest_deposit = self.largest_deposit.max(other.largest_deposit);
        self.withdrawn_percent = self.withdrawn_percent.max(other.withdrawn_percent);
    }

    fn output(&self) -> Folded {
        *self
    }
}

/// One rule running.
#[derive(Clone, Debug)]
struct Running {
    rule: Rule,
    windows: WindowOperator<String, Folded>,
    /// When each key last alerted (the cooldown).
    alerted: BTreeMap<String, i64>,
}

/// The rules in force, each over its windows (see the [module](self)).
#[derive(Clone, Debug)]
pub struct RuleEngine {
    rules: Vec<Running>,
    owners: BTreeMap<String, String>,
}

impl RuleEngine {
    /// An engine running `set`.
    ///
    /// # Panics
    ///
    /// If `set` does not [validate](RuleSet::validate).
    pub fn new(set: &RuleSet) -> Self {
        if let Err(reason) = set.validate() {
            panic!("invalid rules: {reason}");
        }
        let rules = set
            .rules
            .iter()
            .map(|rule| {
                let width = rule.kind.within_micros().max(4);
                let config = WindowConfig {
                    spec: WindowSpec::Hopping {
                        width,
                        hop: (width / 4).max(1),
                    },
                    out_of_orderness: RULE_OUT_OF_ORDERNESS_MICROS,
                    allowed_lateness: 0,
                    emit: Emit::OnUpdate,
                    late: LatePolicy::Drop,
                    windows_max: RULE_WINDOWS_MAX,
                };
                Running {
                    rule: rule.clone(),
                    windows: WindowOperator::new(config),
                    alerted: BTreeMap::new(),
                }
            })
            .collect();
        Self {
            rules,
            owners: set.owners.clone(),
        }
    }

    fn owner<'a>(&'a self, account: &'a str) -> &'a str {
        self.owners.get(account).map_or(account, String::as_str)
    }

    /// Feeds one fact (the event at global offset `offset`); the alerts it completes.
    pub fn observe(&mut self, offset: u64, fact: &Fact) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if let Fact::BandHalt {
            symbol,
            price,
            band: (low, high),
            at,
        } = fact
        {
            let message = format!("a print at {price} would have left the band {low} to {high}");
            for running in &self.rules {
                if running.rule.kind == (RuleKind::PriceBand {}) {
                    let key = symbol.clone();
                    alerts.push(alert(
                        &running.rule,
                        key,
                        fact,
                        offset,
                        *at,
                        message.clone(),
                    ));
                }
            }
            return alerts;
        }
        for index in 0..self.rules.len() {
            let Some((key, at, input)) = self.input_for(index, fact) else {
                continue;
            };
            let running = &mut self.rules[index];
            let output = running.windows.push(key.clone(), at, input);
            let matched = output
                .emitted
                .iter()
                .filter(|emission| emission.key == key)
                .find_map(|emission| matches(&running.rule.kind, &emission.output));
            let Some(message) = matched else {
                continue;
            };
            let cooldown = running.rule.kind.within_micros();
            let recent = running
                .alerted
                .get(&key)
                .is_some_and(|last| at < last.saturating_add(cooldown));
            if recent {
                continue;
            }
            running.alerted.insert(key.clone(), at);
            if running.alerted.len() > RULE_WINDOWS_MAX {
                // Bounded: forget the cooldowns that ended longest ago.
                let oldest = running
                    .alerted
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    running.alerted.remove(&oldest);
                }
            }
            alerts.push(alert(&running.rule, key, fact, offset, at, message));
        }
        alerts
    }

    /// The key, time and window input of `fact` for rule `index`, if the rule looks at it.
    fn input_for(&self, index: usize, fact: &Fact) -> Option<(String, i64, Input)> {
        match (&self.rules[index].rule.kind, fact) {
            (RuleKind::PriceMove { .. }, Fact::Trade { symbol, trade }) => Some((
                symbol.clone(),
                trade.at.micros(),
                Input::Price(trade.price.get()),
            )),
            (RuleKind::CancelBurst { .. }, Fact::Cancelled { account, at }) => {
                Some((account.clone(), *at, Input::One))
            }
            (RuleKind::WashTrade { .. }, Fact::Trade { trade, .. }) => {
                let maker = self.owner(trade.maker_account_id.as_str());
                let taker = self.owner(trade.taker_account_id.as_str());
                (maker == taker).then(|| (maker.to_owned(), trade.at.micros(), Input::One))
            }
            (
                RuleKind::DepositWithdrawal { .. },
                Fact::Deposited {
                    account,
                    asset,
                    amount,
                    at,
                },
            ) => Some((format!("{account}/{asset}"), *at, Input::Deposit(*amount))),
            (
                RuleKind::DepositWithdrawal { .. },
                Fact::Withdrawn {
                    account,
                    asset,
                    amount,
                    at,
                },
            ) => Some((
                format!("{account}/{asset}"),
                *at,
                Input::Withdrawal(*amount),
            )),
            _ => None,
        }
    }
}

/// Whether a window's fold matches `kind`; what it saw, for people.
fn matches(kind: &RuleKind, folded: &Folded) -> Option<String> {
    match *kind {
        RuleKind::PriceMove { bps, within_ms } => {
            let (low, high) = (folded.low, folded.high);
            let moved = u128::from(high.saturating_sub(low)) * 10_000;
            (low > 0 && high > low && moved > u128::from(bps) * u128::from(low)).then(|| {
                format!("prices from {low} to {high} within {within_ms} ms (over {bps} bps)")
            })
        }
        RuleKind::CancelBurst {
            cancels, within_ms, ..
        } => (folded.count >= cancels)
            .then(|| format!("{} cancels within {within_ms} ms", folded.count)),
        RuleKind::WashTrade { trades, within_ms } => (folded.count >= trades).then(|| {
            format!(
                "{} trades with the same owner on both sides within {within_ms} ms",
                folded.count
            )
        }),
        RuleKind::DepositWithdrawal { percent, within_ms } => {
            (folded.largest_deposit > 0 && folded.withdrawn_percent >= percent).then(|| {
                format!(
                    "{} % of a deposit of {} withdrawn within {within_ms} ms",
                    folded.withdrawn_percent, folded.largest_deposit
                )
            })
        }
        // Matched by the book's halt itself, never by a window.
        RuleKind::PriceBand {} => None,
    }
}

/// The alert of `rule` on `key`.
fn alert(rule: &Rule, key: String, fact: &Fact, offset: u64, at: i64, message: String) -> Alert {
    let (account, symbol, action) = match (&rule.kind, fact) {
        (RuleKind::PriceMove { .. }, Fact::Trade { symbol, .. })
        | (RuleKind::PriceBand {}, Fact::BandHalt { symbol, .. }) => {
            (None, Some(symbol.clone()), Action::Halt)
        }
        (
            RuleKind::CancelBurst {
                throttle_orders_per_second,
                ..
            },
            _,
        ) => (
            Some(key.clone()),
            None,
            Action::Throttle {
                orders_per_second: *throttle_orders_per_second,
            },
        ),
        (RuleKind::DepositWithdrawal { .. }, Fact::Withdrawn { account, .. }) => {
            (Some(account.clone()), None, Action::Flag)
        }
        (RuleKind::WashTrade { .. }, Fact::Trade { symbol, .. }) => {
            (None, Some(symbol.clone()), Action::Flag)
        }
        _ => (None, None, Action::Flag),
    };
    Alert {
        rule: rule.name.clone(),
        key,
        account,
        symbol,
        action,
        message,
        offset,
        at,
    }
}
