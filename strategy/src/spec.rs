//! What a strategy is: the file users write (`POST /v1/strategies`, `tradefloor backtest
//! --strategy FILE`), in JSON.

use serde::{Deserialize, Serialize};
use tradefloor_domain::features::FeatureConfig;

use crate::error::Error;

/// Most predictors in one strategy.
pub const PREDICTORS_MAX: usize = 16;
/// Longest id or predictor name (a strategy's client order ids add its bars' starts to its id).
pub const NAME_LEN_MAX: usize = 40;
/// Longest timeframe, in seconds (a day).
pub const TIMEFRAME_SECONDS_MAX: u32 = 86_400;

/// A strategy: where it reads, how it predicts, how far it may go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    /// Its name, `[A-Za-z0-9_-]{1,40}`.
    pub id: String,
    /// The symbol whose ticks it reads: a market of the node (its trades) or a reference
    /// symbol a feed publishes quotes for.
    pub symbol: String,
    /// Which prints of the symbol it reads: its trades on this node (default) or the quotes
    /// a feed publishes for it.
    #[serde(default)]
    pub source: PrintSource,
    /// The market it trades; the symbol it reads if omitted.
    #[serde(default)]
    pub market: Option<String>,
    /// The account its orders are placed for (live only).
    #[serde(default)]
    pub account: Option<String>,
    /// The bar length, in seconds (1 s, 60 s, 3 600 s …).
    pub timeframe_seconds: u32,
    /// Indicator periods; TA-Lib's defaults if omitted.
    #[serde(default)]
    pub features: FeatureConfig,
    /// The predictors, at least one.
    pub predictors: Vec<PredictorSpec>,
    /// How their scores are combined.
    #[serde(default)]
    pub ensemble: EnsembleSpec,
    /// The breaker in front of each predictor.
    #[serde(default)]
    pub breaker: BreakerSpec,
    /// Pre-trade risk and order size.
    pub risk: RiskSpec,
    /// What a backtest starts with.
    #[serde(default)]
    pub backtest: BacktestSpec,
}

/// Where a strategy's ticks come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrintSource {
    /// The trades of the node's market of that symbol.
    #[default]
    Trades,
    /// The quotes feeds publish for that (reference) symbol.
    Quotes,
}

/// One predictor and its weight in the ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorSpec {
    /// Its name in the strategy's state, unique within the strategy.
    pub name: String,
    /// What it is.
    pub kind: PredictorKind,
    /// A logistic predictor's model file (`tradefloor backtest --fit` writes one), reloaded
    /// when it changes; no other kind has one.
    #[serde(default)]
    pub model: Option<String>,
    /// Its weight in the ensemble (> 0).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// The kinds of predictor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictorKind {
    /// Rule-based: follows MACD's histogram, damped when RSI says overbought or oversold.
    Momentum,
    /// Rule-based: bets on a return inside the Bollinger bands.
    MeanReversion,
    /// Learned: logistic regression on the feature vector, its weights read from its model
    /// file.
    Logistic,
}

/// How scores become a signal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSpec {
    /// The weighted score at or beyond which the signal is buy (≥) or sell (≤ −), in (0, 1].
    pub threshold: f64,
}

impl Default for EnsembleSpec {
    fn default() -> Self {
        Self { threshold: 0.2 }
    }
}

/// Each predictor's breaker, counted in bars so that a backtest replays it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Consecutive failures that open it.
    pub failures_max: u32,
    /// Bars it stays open before one trial call.
    pub open_bars: u32,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        Self {
            failures_max: 3,
            open_bars: 10,
        }
    }
}

/// Order size and pre-trade risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSpec {
    /// Most base units per order (> 0).
    pub order_quantity: u64,
    /// Most base units held: a buy signal targets it, a sell signal targets zero.
    pub max_position: u64,
    /// Largest `price × quantity` of one order; no cap if omitted.
    #[serde(default)]
    pub max_order_notional: Option<u64>,
    /// Most orders in any minute of market time (> 0).
    #[serde(default = "orders_per_minute")]
    pub max_orders_per_minute: u32,
}

fn orders_per_minute() -> u32 {
    60
}

/// What a backtest starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestSpec {
    /// Cash in quote units.
    pub initial_cash: u64,
}

impl Default for BacktestSpec {
    fn default() -> Self {
        Self {
            initial_cash: 1_000_000,
        }
    }
}

impl StrategySpec {
    /// Reads a specification from JSON and checks it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] saying what is wrong.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let spec: Self =
            serde_json::from_str(text).map_err(|error| Error::InvalidSpec(error.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The market it trades.
    pub fn market(&self) -> &str {
        self.market.as_deref().unwrap_or(&self.symbol)
    }

    /// Checks what serde cannot.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] saying what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidSpec(reason));
        let name_ok = |name: &str| {
            (1..=NAME_LEN_MAX).contains(&name.len())
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        };
        if !name_ok(&self.id) {
            return invalid(format!("id {:?} is not [A-Za-z0-9_-]{{1,40}}", self.id));
        }
        if self.timeframe_seconds == 0 || self.timeframe_seconds > TIMEFRAME_SECONDS_MAX {
            return invalid(format!(
                "timeframe_seconds must be in 1..={TIMEFRAME_SECONDS_MAX}"
            ));
        }
        self.validate_features()?;
        if self.predictors.is_empty() || self.predictors.len() > PREDICTORS_MAX {
            return invalid(format!("between 1 and {PREDICTORS_MAX} predictors"));
        }
        for (index, predictor) in self.predictors.iter().enumerate() {
            if !name_ok(&predictor.name) {
                return invalid(format!("predictor name {:?} is not valid", predictor.name));
            }
            if self.predictors[..index]
                .iter()
                .any(|other| other.name == predictor.name)
            {
                return invalid(format!("two predictors are named {}", predictor.name));
            }
            if (predictor.kind == PredictorKind::Logistic) != predictor.model.is_some() {
                return invalid(format!(
                    "predictor {}: a logistic predictor has a model file, no other kind has",
                    predictor.name
                ));
            }
            if !(predictor.weight.is_finite() && predictor.weight > 0.0) {
                return invalid(format!("predictor {}'s weight must be > 0", predictor.name));
            }
        }
        let threshold = self.ensemble.threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return invalid("ensemble.threshold must be in (0, 1]".to_owned());
        }
        if self.breaker.failures_max == 0 {
            return invalid("breaker.failures_max must be > 0".to_owned());
        }
        let risk = &self.risk;
        if risk.order_quantity == 0 || risk.max_orders_per_minute == 0 {
            return invalid("risk.order_quantity and max_orders_per_minute must be > 0".to_owned());
        }
        if risk.max_order_notional == Some(0) {
            return invalid("risk.max_order_notional must be > 0".to_owned());
        }
        Ok(())
    }

    fn validate_features(&self) -> Result<(), Error> {
        let features = &self.features;
        let (fast, slow, signal) = features.macd;
        let periods = [
            features.moving_average,
            features.rsi,
            fast,
            slow,
            signal,
            features.bollinger.0,
            features.atr,
        ];
        if periods.iter().any(|period| !(1..=1_000).contains(period)) || fast >= slow {
            return Err(Error::InvalidSpec(
                "feature periods must be in 1..=1000, MACD's fast below its slow".to_owned(),
            ));
        }
        Ok(())
    }
}
