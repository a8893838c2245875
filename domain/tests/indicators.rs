//! Every indicator of `features` against reference values from TA-Lib (and pandas for VWAP),
//! generated once by `bin/scripts/indicator-fixtures.py`: the same bars (`None` exactly where
//! the reference has none), each value within 1e-9 relative.

use serde_json::Value;
use tradefloor_domain::features::{
    Atr, Bar, Bollinger, Ema, FeatureConfig, Features, Macd, Rsi, Sma, Vwap,
};

const FIXTURE: &str = include_str!("fixtures/indicators.json");
const RELATIVE_TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

fn bars(fixture: &Value) -> Vec<Bar> {
    fixture["bars"]
        .as_array()
        .expect("bars")
        .iter()
        .map(|bar| Bar {
            start: bar["start"].as_i64().unwrap(),
            high: bar["high"].as_f64().unwrap(),
            low: bar["low"].as_f64().unwrap(),
            close: bar["close"].as_f64().unwrap(),
            volume: bar["volume"].as_f64().unwrap(),
        })
        .collect()
}

/// `ours` equals the reference series `name` bar by bar.
fn check(name: &str, ours: &[Option<f64>], reference: &Value) {
    let reference = reference.as_array().expect("a series");
    assert_eq!(ours.len(), reference.len(), "{name}: one value per bar");
    for (index, (ours, theirs)) in ours.iter().zip(reference).enumerate() {
        match (ours, theirs.as_f64()) {
            (None, None) => {}
            (Some(ours), Some(theirs)) => {
                let error = (ours - theirs).abs() / theirs.abs().max(1.0);
                assert!(
                    error <= RELATIVE_TOLERANCE,
                    "{name}[{index}]: {ours} against {theirs} (relative error {error:e})"
                );
            }
            (ours, _) => panic!("{name}[{index}]: {ours:?} against {theirs}"),
        }
    }
}

fn closes(bars: &[Bar]) -> impl Iterator<Item = f64> + '_ {
    bars.iter().map(|bar| bar.close)
}

#[test]
fn moving_averages_and_rsi_equal_ta_lib() {
    let fixture = fixture();
    let bars = bars(&fixture);
    let mut sma = Sma::new(20);
    let mut ema = Ema::new(20);
    let mut rsi = Rsi::new(14);
    let sma: Vec<_> = closes(&bars).map(|close| sma.update(close)).collect();
    let ema: Vec<_> = closes(&bars).map(|close| ema.update(close)).collect();
    let rsi: Vec<_> = closes(&bars).map(|close| rsi.update(close)).collect();
    check("sma_20", &sma, &fixture["sma_20"]);
    check("ema_20", &ema, &fixture["ema_20"]);
    check("rsi_14", &rsi, &fixture["rsi_14"]);
}

#[test]
fn macd_equals_ta_lib() {
    let fixture = fixture();
    let mut macd = Macd::new(12, 26, 9);
    let values: Vec<_> = closes(&bars(&fixture))
        .map(|close| macd.update(close))
        .collect();
    let reference = &fixture["macd_12_26_9"];
    check(
        "macd",
        &values
            .iter()
            .map(|value| value.map(|value| value.macd))
            .collect::<Vec<_>>(),
        &reference["macd"],
    );
    check(
        "signal",
        &values
            .iter()
            .map(|value| value.map(|value| value.signal))
            .collect::<Vec<_>>(),
        &reference["signal"],
    );
    check(
        "histogram",
        &values
            .iter()
            .map(|value| value.map(|value| value.histogram))
            .collect::<Vec<_>>(),
        &reference["histogram"],
    );
}

#[test]
fn bollinger_bands_equal_ta_lib() {
    let fixture = fixture();
    let mut bands = Bollinger::new(20, 2.0);
    let values: Vec<_> = closes(&bars(&fixture))
        .map(|close| bands.update(close))
        .collect();
    let reference = &fixture["bollinger_20_2"];
    check(
        "upper",
        &values
            .iter()
            .map(|value| value.map(|value| value.upper))
            .collect::<Vec<_>>(),
        &reference["upper"],
    );
    check(
        "middle",
        &values
            .iter()
            .map(|value| value.map(|value| value.middle))
            .collect::<Vec<_>>(),
        &reference["middle"],
    );
    check(
        "lower",
        &values
            .iter()
            .map(|value| value.map(|value| value.lower))
            .collect::<Vec<_>>(),
        &reference["lower"],
    );
}

#[test]
fn atr_equals_ta_lib_and_vwap_equals_pandas() {
    let fixture = fixture();
    let bars = bars(&fixture);
    let mut atr = Atr::new(14);
    let mut vwap = Vwap::daily();
    let atr: Vec<_> = bars.iter().map(|bar| atr.update(bar)).collect();
    let vwap: Vec<_> = bars.iter().map(|bar| vwap.update(bar)).collect();
    check("atr_14", &atr, &fixture["atr_14"]);
    check("vwap_daily", &vwap, &fixture["vwap_daily"]);
}

#[test]
fn a_feature_set_updates_every_indicator_together() {
    let fixture = fixture();
    let mut features = Features::new(FeatureConfig::default());
    let values: Vec<_> = bars(&fixture)
        .iter()
        .map(|bar| features.update(bar))
        .collect();
    check(
        "set sma",
        &values.iter().map(|value| value.sma).collect::<Vec<_>>(),
        &fixture["sma_20"],
    );
    check(
        "set rsi",
        &values.iter().map(|value| value.rsi).collect::<Vec<_>>(),
        &fixture["rsi_14"],
    );
    check(
        "set macd",
        &values
            .iter()
            .map(|value| value.macd.map(|macd| macd.histogram))
            .collect::<Vec<_>>(),
        &fixture["macd_12_26_9"]["histogram"],
    );
    check(
        "set atr",
        &values.iter().map(|value| value.atr).collect::<Vec<_>>(),
        &fixture["atr_14"],
    );
    check(
        "set vwap",
        &values.iter().map(|value| value.vwap).collect::<Vec<_>>(),
        &fixture["vwap_daily"],
    );
}
