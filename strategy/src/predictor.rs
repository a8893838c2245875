//! Predictors: from a bar's features to a score in `[-1, 1]` (−1 surely down, +1 surely up).

use serde::{Deserialize, Serialize};
use tradefloor_domain::features::FeatureValues;

use crate::error::Error;
use crate::spec::{PredictorKind, PredictorSpec};

/// One predictor's view of the next move.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// −1 (down) to +1 (up).
    pub score: f64,
}

impl Prediction {
    /// A prediction, its score clamped into `[-1, 1]`.
    pub fn new(score: f64) -> Self {
        Self {
            score: score.clamp(-1.0, 1.0),
        }
    }
}

/// Something that predicts from features. `Ok(None)`: not enough bars yet (not a failure).
pub trait Predictor: Send + Sync {
    /// The prediction for the bar these features close.
    ///
    /// # Errors
    ///
    /// Whatever the predictor fails with; its breaker counts it.
    fn predict(&mut self, features: &FeatureValues) -> Result<Option<Prediction>, String>;
}

/// The names of the feature vector's entries, in order: what a logistic model's weights
/// multiply.
pub const FEATURE_NAMES: [&str; 7] = [
    "rsi",
    "macd_histogram",
    "bollinger_b",
    "close_vs_sma",
    "close_vs_ema",
    "atr",
    "close_vs_vwap",
];

/// The features as one vector of comparable magnitudes (each scaled by the close, so a model
/// fits any price level); `None` until every feature has a value.
pub fn feature_vector(values: &FeatureValues) -> Option<[f64; 7]> {
    let close = values.close;
    if close <= 0.0 {
        return None;
    }
    let bands = values.bollinger?;
    let width = bands.upper - bands.lower;
    let percent_b = if width > 0.0 {
        (close - bands.lower) / width - 0.5
    } else {
        0.0
    };
    Some([
        (values.rsi? - 50.0) / 50.0,
        values.macd?.histogram / close * 100.0,
        percent_b,
        (close / values.sma? - 1.0) * 100.0,
        (close / values.ema? - 1.0) * 100.0,
        values.atr? / close * 100.0,
        (close / values.vwap? - 1.0) * 100.0,
    ])
}

/// Follows MACD's histogram (its sign, scaled by its size against the ATR), damped towards
/// zero as RSI nears an extreme (a trend that may be exhausted).
#[derive(Clone, Copy, Debug, Default)]
pub struct Momentum;

impl Predictor for Momentum {
    fn predict(&mut self, values: &FeatureValues) -> Result<Option<Prediction>, String> {
        let (Some(macd), Some(rsi), Some(atr)) = (values.macd, values.rsi, values.atr) else {
            return Ok(None);
        };
        let strength = if atr > 0.0 {
            macd.histogram / atr
        } else {
            macd.histogram.signum()
        };
        let exhausted = if (strength > 0.0 && rsi > 70.0) || (strength < 0.0 && rsi < 30.0) {
            0.5
        } else {
            1.0
        };
        Ok(Some(Prediction::new(strength * 4.0 * exhausted)))
    }
}

/// Bets on a return to the middle of the Bollinger bands: +1 at the lower band, −1 at the
/// upper one.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeanReversion;

impl Predictor for MeanReversion {
    fn predict(&mut self, values: &FeatureValues) -> Result<Option<Prediction>, String> {
        let Some(bands) = values.bollinger else {
            return Ok(None);
        };
        let half_width = (bands.upper - bands.lower) / 2.0;
        if half_width <= 0.0 {
            return Ok(Some(Prediction::new(0.0)));
        }
        Ok(Some(Prediction::new(
            (bands.middle - values.close) / half_width,
        )))
    }
}

/// A fitted logistic regression: `P(up) = σ(weights · features + bias)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticModel {
    /// The names of the features the weights multiply, in order ([`FEATURE_NAMES`]).
    pub features: Vec<String>,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// The intercept.
    pub bias: f64,
}

impl LogisticModel {
    /// Reads a model file's JSON.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidModel`] if it is not a model.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let model: Self =
            serde_json::from_str(text).map_err(|error| Error::InvalidModel(error.to_string()))?;
        if model.weights.len() != model.features.len()
            || !model.bias.is_finite()
            || model.weights.iter().any(|weight| !weight.is_finite())
        {
            return Err(Error::InvalidModel(
                "one finite weight per feature, and a finite bias".to_owned(),
            ));
        }
        Ok(model)
    }

    /// The probability that the next close is higher.
    ///
    /// # Errors
    ///
    /// When the model was fitted on other features than [`FEATURE_NAMES`].
    pub fn probability(&self, vector: &[f64; 7]) -> Result<f64, String> {
        if self.features.iter().map(String::as_str).ne(FEATURE_NAMES) {
            return Err(format!(
                "the model's features {:?} are not {FEATURE_NAMES:?}",
                self.features
            ));
        }
        let z: f64 = self
            .weights
            .iter()
            .zip(vector)
            .map(|(weight, value)| weight * value)
            .sum::<f64>()
            + self.bias;
        Ok(1.0 / (1.0 + (-z).exp()))
    }
}

/// The learned predictor: a [`LogisticModel`], replaceable while running.
#[derive(Clone, Debug)]
pub struct Logistic {
    model: LogisticModel,
}

impl Logistic {
    /// A predictor of `model`.
    pub fn new(model: LogisticModel) -> Self {
        Self { model }
    }

    /// Uses `model` from the next prediction on.
    pub fn replace(&mut self, model: LogisticModel) {
        self.model = model;
    }
}

impl Predictor for Logistic {
    fn predict(&mut self, values: &FeatureValues) -> Result<Option<Prediction>, String> {
        let Some(vector) = feature_vector(values) else {
            return Ok(None);
        };
        let probability = self.model.probability(&vector)?;
        Ok(Some(Prediction::new(2.0 * probability - 1.0)))
    }
}

/// The predictor a spec names; `models` gives the model of each logistic one by its file.
///
/// # Errors
///
/// [`Error::InvalidModel`] if a logistic predictor's model is missing from `models`.
pub fn build(
    spec: &PredictorSpec,
    models: &dyn Fn(&str) -> Result<LogisticModel, Error>,
) -> Result<Box<dyn Predictor>, Error> {
    Ok(match &spec.kind {
        PredictorKind::Momentum => Box::new(Momentum),
        PredictorKind::MeanReversion => Box::new(MeanReversion),
        PredictorKind::Logistic => {
            let file = spec.model.as_deref().unwrap_or_default();
            Box::new(Logistic::new(models(file)?))
        }
    })
}
