//! `backtest --fit`: fits the learned predictor's logistic regression on recorded ticks.
//!
//! The ticks are cut into the strategy's bars and each closed bar updates the features, as a
//! running strategy does; every bar whose features are all known is one sample: its feature
//! vector ([`feature_vector`]) and whether the next bar closes higher. The fit is linfa's
//! (L-BFGS with L2 regularisation), deterministic for the same samples; its model is written
//! in the form [`LogisticModel::from_json`] reads, with `P(up)` for the weights' sign.

use linfa::Dataset;
use linfa::traits::Fit;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use tradefloor_domain::features::Features;
use tradefloor_strategy::predictor::{FEATURE_NAMES, feature_vector};
use tradefloor_strategy::{BarBuilder, LogisticModel, StrategySpec, Tick};

use crate::error::Error;

/// Fewest samples a model is fitted on.
pub const SAMPLES_MIN: usize = 20;
/// Most solver iterations.
pub const ITERATIONS_MAX: u64 = 200;

/// A fitted model and what it was fitted on.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    /// The model.
    pub model: LogisticModel,
    /// Bars it was fitted on.
    pub samples: usize,
    /// Of them, those followed by a higher close.
    pub rises: usize,
}

/// The samples of `ticks` under `spec`'s timeframe and features: one feature vector per bar
/// whose features are known, and whether the next bar closed higher.
pub fn samples(spec: &StrategySpec, ticks: &[Tick]) -> (Vec<[f64; 7]>, Vec<bool>) {
    let mut bars = BarBuilder::new(spec.timeframe_seconds);
    let mut features = Features::new(spec.features);
    let mut vectors = Vec::new();
    let mut rises = Vec::new();
    let mut previous: Option<([f64; 7], u64)> = None;
    for tick in ticks {
        let Some(bar) = bars.push(tick) else {
            continue;
        };
        let values = features.update(&bar.features_bar());
        if let Some((vector, close)) = previous {
            vectors.push(vector);
            rises.push(bar.close > close);
        }
        previous = feature_vector(&values).map(|vector| (vector, bar.close));
    }
    (vectors, rises)
}

/// Fits a logistic regression of `P(next close higher)` on the features of `ticks`' bars.
///
/// # Errors
///
/// [`Error::Data`] with fewer than [`SAMPLES_MIN`] samples, samples all of one outcome, or a
/// fit that fails.
pub fn fit(spec: &StrategySpec, ticks: &[Tick]) -> Result<Fitted, Error> {
    let (vectors, outcomes) = samples(spec, ticks);
    let count = vectors.len();
    if count < SAMPLES_MIN {
        return Err(Error::Data(format!(
            "only {count} bars with every feature known to fit on; at least {SAMPLES_MIN} needed"
        )));
    }
    let rises = outcomes.iter().filter(|rise| **rise).count();
    if rises == 0 || rises == count {
        return Err(Error::Data(
            "every bar moves the same way: nothing to fit".to_owned(),
        ));
    }
    let records = Array2::from_shape_vec((count, FEATURE_NAMES.len()), vectors.concat())
        .map_err(|error| Error::Data(format!("samples: {error}")))?;
    let dataset = Dataset::new(records, Array1::from(outcomes));
    let fitted = LogisticRegression::default()
        .max_iterations(ITERATIONS_MAX)
        .fit(&dataset)
        .map_err(|error| Error::Data(format!("the fit failed: {error}")))?;
    // linfa's positive class is the larger one: turn its weights into those of `P(up)`.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let model = LogisticModel {
        features: FEATURE_NAMES
            .iter()
            .map(|name| (*name).to_owned())
            .collect(),
        weights: fitted.params().iter().map(|weight| sign * weight).collect(),
        bias: sign * fitted.intercept(),
    };
    if !model.bias.is_finite() || model.weights.iter().any(|weight| !weight.is_finite()) {
        return Err(Error::Data(
            "the fit diverged: a weight is not finite".to_owned(),
        ));
    }
    Ok(Fitted {
        model,
        samples: count,
        rises,
    })
}
