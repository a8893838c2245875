//! `tradefloor backtest` as a user runs it, on the checked-in sample data
//! (`strategy/tests/data`): the same report and equity curve twice, a run stopped at a
//! checkpoint and resumed reports what one whole run does, `--fit` writes a model a strategy
//! then runs with, and bad inputs fail with one clear line and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use tradefloor_tests::binary;

/// The sample strategy, ticks and model.
fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../strategy/tests/data")
        .join(name)
}

/// Runs `tradefloor backtest <args>` in `dir`.
fn backtest(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .arg("backtest")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the tradefloor binary runs")
}

/// Runs it and requires success; its stdout.
fn backtest_ok(dir: &Path, args: &[&str]) -> String {
    let output = backtest(dir, args);
    assert!(
        output.status.success(),
        "backtest {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs it and requires failure; its stderr.
fn backtest_fails(dir: &Path, args: &[&str]) -> String {
    let output = backtest(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "backtest {args:?} succeeded");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line of error: {stderr}"
    );
    stderr
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// The sample strategy and its model, copied into `dir` (so a test may replace the model).
fn strategy_in(dir: &Path) -> String {
    for name in ["strategy.json", "model.json"] {
        std::fs::copy(sample(name), dir.join(name)).expect("copy the sample");
    }
    "strategy.json".to_owned()
}

#[test]
fn the_same_data_gives_the_same_report_and_curve_twice() {
    let dir = tempfile::tempdir().expect("a directory");
    let (strategy, ticks) = (sample("strategy.json"), sample("ticks.csv"));
    let run = |report: &str, svg: &str| {
        let args = [
            "--strategy",
            strategy.to_str().unwrap(),
            "--data",
            ticks.to_str().unwrap(),
            "--report",
            report,
            "--svg",
            svg,
            "--json",
        ];
        backtest_ok(dir.path(), &args)
    };
    let printed = run("first.json", "first.svg");
    run("second.json", "second.svg");
    assert_eq!(
        read(dir.path(), "first.json"),
        read(dir.path(), "second.json")
    );
    assert_eq!(
        read(dir.path(), "first.svg"),
        read(dir.path(), "second.svg")
    );
    assert_eq!(printed, read(dir.path(), "first.json"));
    let report: Value = serde_json::from_str(&printed).expect("a JSON report");
    assert_eq!(report["strategy"], "sample-ensemble");
    assert_eq!(report["ticks"], 4_000);
    assert!(report["trades"].as_u64() > Some(10), "{report}");
    assert!(read(dir.path(), "first.svg").starts_with("<svg"));
    // The default curve's file and the text report.
    let text = backtest_ok(
        dir.path(),
        &[
            "--strategy",
            strategy.to_str().unwrap(),
            "--data",
            ticks.to_str().unwrap(),
        ],
    );
    assert!(
        text.contains("sample-ensemble") && text.contains("pnl"),
        "{text}"
    );
    assert_eq!(
        read(dir.path(), "equity.svg"),
        read(dir.path(), "first.svg")
    );
}

#[test]
fn a_run_resumed_from_its_checkpoint_reports_what_one_whole_run_does() {
    let dir = tempfile::tempdir().expect("a directory");
    let (strategy, ticks) = (sample("strategy.json"), sample("ticks.csv"));
    let (strategy, ticks) = (strategy.to_str().unwrap(), ticks.to_str().unwrap());
    let common = ["--strategy", strategy, "--data", ticks];
    backtest_ok(
        dir.path(),
        &[
            &common[..],
            &["--report", "whole.json", "--svg", "whole.svg"],
        ]
        .concat(),
    );
    let head = backtest_ok(
        dir.path(),
        &[
            &common[..],
            &["--ticks", "1500", "--checkpoint", "at-1500.json", "--json"],
        ]
        .concat(),
    );
    let head: Value = serde_json::from_str(&head).expect("a JSON report");
    assert_eq!(head["ticks"], 1_500);
    let checkpoint: Value = serde_json::from_str(&read(dir.path(), "at-1500.json")).unwrap();
    assert_eq!(checkpoint["state"]["ticks"], 1_500);
    backtest_ok(
        dir.path(),
        &[
            &common[..],
            &[
                "--resume",
                "at-1500.json",
                "--report",
                "resumed.json",
                "--svg",
                "resumed.svg",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        read(dir.path(), "resumed.json"),
        read(dir.path(), "whole.json")
    );
    assert_eq!(
        read(dir.path(), "resumed.svg"),
        read(dir.path(), "whole.svg")
    );
    // Another strategy's checkpoint, and a checkpoint beyond the data, are refused.
    let other = read(dir.path(), "at-1500.json").replace("sample-ensemble", "other");
    std::fs::write(dir.path().join("other.json"), other).unwrap();
    let refused = backtest_fails(
        dir.path(),
        &[&common[..], &["--resume", "other.json"]].concat(),
    );
    assert!(
        refused.contains("other's, not sample-ensemble's"),
        "{refused}"
    );
    std::fs::write(dir.path().join("short.csv"), "at,price,quantity\n1,100,1\n").unwrap();
    let refused = backtest_fails(
        dir.path(),
        &[
            "--strategy",
            strategy,
            "--data",
            "short.csv",
            "--resume",
            "at-1500.json",
        ],
    );
    assert!(refused.contains("the data has only 1"), "{refused}");
}

#[test]
fn fit_writes_a_model_that_a_strategy_then_runs_with() {
    let dir = tempfile::tempdir().expect("a directory");
    let strategy = strategy_in(dir.path());
    let ticks = sample("ticks.csv");
    let common = [
        "--strategy",
        strategy.as_str(),
        "--data",
        ticks.to_str().unwrap(),
    ];
    // Weights set by hand, before any fit.
    let by_hand = json!({"features": ["rsi", "macd_histogram", "bollinger_b", "close_vs_sma",
        "close_vs_ema", "atr", "close_vs_vwap"], "weights": [0.8, 2.0, -0.5, 0.3, 0.3, 0.0, 0.1],
        "bias": 0.0});
    std::fs::write(dir.path().join("model.json"), by_hand.to_string()).unwrap();
    let before = backtest_ok(dir.path(), &[&common[..], &["--json"]].concat());
    backtest_ok(
        dir.path(),
        &[&common[..], &["--fit", "fitted.json", "--svg", "fit.svg"]].concat(),
    );
    let model: Value = serde_json::from_str(&read(dir.path(), "fitted.json")).expect("JSON");
    assert_eq!(
        model["features"].as_array().map(Vec::len),
        Some(7),
        "{model}"
    );
    assert_eq!(
        model["weights"].as_array().map(Vec::len),
        Some(7),
        "{model}"
    );
    assert!(model["bias"].is_f64(), "{model}");
    // Fitting is deterministic.
    backtest_ok(
        dir.path(),
        &[&common[..], &["--fit", "again.json"]].concat(),
    );
    assert_eq!(
        read(dir.path(), "fitted.json"),
        read(dir.path(), "again.json")
    );
    // The strategy runs with the fitted model in place of its own, and decides otherwise.
    std::fs::copy(
        dir.path().join("fitted.json"),
        dir.path().join("model.json"),
    )
    .unwrap();
    let after = backtest_ok(dir.path(), &[&common[..], &["--json"]].concat());
    let (before, after): (Value, Value) = (
        serde_json::from_str(&before).unwrap(),
        serde_json::from_str(&after).unwrap(),
    );
    assert_eq!(after["ticks"], 4_000);
    assert_ne!(before, after, "the fitted model changes the decisions");
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("a directory");
    let strategy = strategy_in(dir.path());
    let ticks = sample("ticks.csv");
    let ticks = ticks.to_str().unwrap();
    let missing = backtest_fails(dir.path(), &["--strategy", "nowhere.json", "--data", ticks]);
    assert!(
        missing.contains("nowhere.json") && missing.contains("No such file"),
        "{missing}"
    );
    let missing = backtest_fails(dir.path(), &["--strategy", &strategy, "--data", "none.csv"]);
    assert!(missing.contains("none.csv"), "{missing}");
    std::fs::write(
        dir.path().join("bad.csv"),
        "# a comment\nat,price,quantity\n1,100,1\n2,-5,1\n",
    )
    .unwrap();
    let line = backtest_fails(dir.path(), &["--strategy", &strategy, "--data", "bad.csv"]);
    assert!(line.contains("bad.csv: line 4:"), "{line}");
    std::fs::write(
        dir.path().join("spec.json"),
        r#"{"id": "x", "symbol": "A-B"}"#,
    )
    .unwrap();
    let spec = backtest_fails(dir.path(), &["--strategy", "spec.json", "--data", ticks]);
    assert!(spec.contains("spec.json: invalid strategy"), "{spec}");
    std::fs::write(dir.path().join("model.json"), "{\"weights\": []}").unwrap();
    let model = backtest_fails(dir.path(), &["--strategy", &strategy, "--data", ticks]);
    assert!(model.contains("invalid model"), "{model}");
    let journal = backtest_fails(
        dir.path(),
        &["--strategy", &strategy, "--journal", "none.db"],
    );
    assert!(
        journal.contains("none.db: no such journal file"),
        "{journal}"
    );
    std::fs::write(dir.path().join("few.csv"), "at,price,quantity\n1,100,1\n").unwrap();
    let fit = backtest_fails(
        dir.path(),
        &[
            "--strategy",
            &strategy,
            "--data",
            "few.csv",
            "--fit",
            "m.json",
        ],
    );
    assert!(fit.contains("to fit on"), "{fit}");
}
