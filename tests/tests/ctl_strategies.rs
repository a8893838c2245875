//! `tradefloor ctl strategies` and `ctl strategy show|create|start|stop` against a real node:
//! the binary as an operator runs it, a strategy defined from the sample spec file, fed a
//! batch of recorded quotes, listed, shown, stopped (the kill switch) and started again; a
//! bad spec file refused before anything is sent, with its name and a non-zero exit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tradefloor_tests::{Node, NodeOptions, deposit, eventually, list_market, tradefloor};

/// The sample strategy's id (`strategy/tests/data/strategy.json`).
const STRATEGY: &str = "sample-ensemble";
/// The account it trades for here.
const ACCOUNT: &str = "strat-1";
/// Recorded ticks published as quotes: about 65 of the sample's 5 s bars.
const TICKS_PUBLISHED: usize = 1_000;
/// How long the strategy may take to decide the published bars.
const DECIDE_TIMEOUT: Duration = Duration::from_secs(30);

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../strategy/tests/data")
        .join(name)
}

/// `tradefloor ctl <args>`: its standard output; it must succeed.
async fn ctl(node: &Node, args: &[&str]) -> String {
    let output = tradefloor(node, &[&["ctl"], args].concat()).await;
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "ctl {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `tradefloor ctl --json <args>`, parsed.
async fn ctl_json(node: &Node, args: &[&str]) -> Value {
    let stdout = ctl(node, &[&["--json"], args].concat()).await;
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

/// `tradefloor ctl <args>`, which must fail: its standard error.
async fn ctl_fails(node: &Node, args: &[&str]) -> String {
    let output = tradefloor(node, &[&["ctl"], args].concat()).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "ctl {args:?} succeeded: {stderr}");
    assert!(output.stdout.is_empty(), "ctl {args:?} printed an answer");
    stderr
}

/// The sample spec trading for [`ACCOUNT`], written with its model next to it in `directory`
/// (the spec names the model by a relative path, which `ctl` resolves from the file).
fn write_spec(directory: &Path) -> PathBuf {
    std::fs::copy(sample("model.json"), directory.join("model.json")).expect("model copied");
    let text = std::fs::read_to_string(sample("strategy.json")).expect("the sample spec");
    let mut spec: Value = serde_json::from_str(&text).expect("JSON");
    spec["account"] = json!(ACCOUNT);
    let file = directory.join("strategy.json");
    std::fs::write(&file, spec.to_string()).expect("spec written");
    file
}

/// The first [`TICKS_PUBLISHED`] recorded ticks as one quotes batch.
fn quotes() -> Value {
    let text = std::fs::read_to_string(sample("ticks.csv")).expect("the sample ticks");
    let quotes: Vec<Value> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("at,"))
        .take(TICKS_PUBLISHED)
        .map(|line| {
            let fields: Vec<u64> = line
                .split(',')
                .map(|field| field.parse().expect("a number"))
                .collect();
            json!({"at": fields[0], "price": fields[1], "quantity": fields[2]})
        })
        .collect();
    json!({ "quotes": quotes })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_creates_shows_stops_and_starts_a_strategy() {
    let node = Node::start(NodeOptions::default()).await;
    let http = node.http(None);
    list_market(&http).await;
    deposit(&http, ACCOUNT, "USD", 10_000_000).await;
    let directory = tempfile::tempdir().expect("a directory");
    let file = write_spec(directory.path());

    let empty = ctl(&node, &["strategies"]).await;
    assert!(empty.starts_with("no strategies"), "{empty}");

    let created = ctl(
        &node,
        &["strategy", "create", file.to_str().expect("UTF-8")],
    )
    .await;
    assert!(
        created.starts_with("created\nstrategy sample-ensemble: running since "),
        "{created}"
    );
    assert!(
        created.contains("trades BTC-USD for account strat-1 on 5 s bars of BTC-USD"),
        "{created}"
    );
    assert!(
        created.contains("PREDICTOR  BREAKER  FAILURES  OPENED"),
        "{created}"
    );

    let (status, answer) = http.post("/v1/markets/BTC-USD/quotes", &quotes()).await;
    assert_eq!(status, 201, "{answer}");
    let decided = eventually("the strategy decides bars", DECIDE_TIMEOUT, || async {
        let view = ctl_json(&node, &["strategy", "show", STRATEGY]).await;
        (view["bars"].as_u64() > Some(10)).then_some(view)
    })
    .await;
    assert_eq!(decided["state"], "running", "{decided}");
    assert_eq!(decided["spec"]["account"], ACCOUNT);
    assert_eq!(
        decided["breakers"].as_array().map(Vec::len),
        Some(3),
        "{decided}"
    );

    let shown = ctl(&node, &["strategy", "show", STRATEGY]).await;
    assert!(shown.contains("\nlast signal "), "{shown}");
    assert!(shown.contains("position "), "{shown}");
    assert!(shown.contains("PnL "), "{shown}");
    assert!(
        shown.contains("last decisions\nBAR") && shown.contains("CLOSE  SIGNAL"),
        "{shown}"
    );
    assert!(shown.contains("momentum   closed"), "{shown}");

    let listed = ctl(&node, &["strategies"]).await;
    assert!(
        listed.starts_with("ID               STATE    MARKET   ACCOUNT"),
        "{listed}"
    );
    assert!(
        listed.contains("sample-ensemble  running  BTC-USD  strat-1"),
        "{listed}"
    );
    let listed = ctl_json(&node, &["strategies"]).await;
    assert_eq!(listed["strategies"][0]["id"], STRATEGY, "{listed}");

    let stopped = ctl(
        &node,
        &["strategy", "stop", STRATEGY, "--reason", "test over"],
    )
    .await;
    assert!(
        stopped.starts_with("strategy sample-ensemble: stopped (test over; "),
        "{stopped}"
    );
    let view = ctl_json(&node, &["strategy", "show", STRATEGY]).await;
    assert_eq!(view["state"], "stopped", "{view}");
    assert_eq!(view["stopped"][0], "test over", "{view}");
    // The kill switch cancelled whatever the strategy had resting.
    let account = tradefloor_tests::account(&http, ACCOUNT).await;
    assert_eq!(account["open_orders"], json!([]), "{account}");
    let listed = ctl(&node, &["strategies"]).await;
    assert!(listed.contains("sample-ensemble  stopped"), "{listed}");

    let started = ctl_json(&node, &["strategy", "start", STRATEGY]).await;
    assert_eq!(started["state"], "running", "{started}");
    let stopped = ctl_json(&node, &["strategy", "stop", STRATEGY]).await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["stopped"][0], "stopped by a user", "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_file_or_an_unknown_strategy_exits_non_zero_with_why() {
    let node = Node::start(NodeOptions::default()).await;
    let directory = tempfile::tempdir().expect("a directory");

    let missing = directory.path().join("missing.json");
    let stderr = ctl_fails(
        &node,
        &["strategy", "create", missing.to_str().expect("UTF-8")],
    )
    .await;
    assert!(stderr.contains("missing.json"), "{stderr}");

    let garbage = directory.path().join("garbage.json");
    std::fs::write(&garbage, "{\"id\": \"x\", ").expect("written");
    let stderr = ctl_fails(
        &node,
        &["strategy", "create", garbage.to_str().expect("UTF-8")],
    )
    .await;
    assert!(
        stderr.contains("garbage.json: not a strategy spec"),
        "{stderr}"
    );

    let unknown_field = directory.path().join("unknown-field.json");
    let mut spec: Value = serde_json::from_str(
        &std::fs::read_to_string(sample("strategy.json")).expect("the sample spec"),
    )
    .expect("JSON");
    spec["acount"] = json!(ACCOUNT);
    std::fs::write(&unknown_field, spec.to_string()).expect("written");
    let stderr = ctl_fails(
        &node,
        &["strategy", "create", unknown_field.to_str().expect("UTF-8")],
    )
    .await;
    assert!(stderr.contains("unknown field `acount`"), "{stderr}");

    let no_account = directory.path().join("no-account.json");
    std::fs::copy(sample("strategy.json"), &no_account).expect("copied");
    let stderr = ctl_fails(
        &node,
        &["strategy", "create", no_account.to_str().expect("UTF-8")],
    )
    .await;
    assert!(stderr.contains("names no `account`"), "{stderr}");

    let invalid = directory.path().join("invalid.json");
    spec.as_object_mut().expect("an object").remove("acount");
    spec["account"] = json!(ACCOUNT);
    spec["timeframe_seconds"] = json!(0);
    std::fs::write(&invalid, spec.to_string()).expect("written");
    let stderr = ctl_fails(
        &node,
        &["strategy", "create", invalid.to_str().expect("UTF-8")],
    )
    .await;
    assert!(
        stderr.contains("invalid.json: not a valid strategy"),
        "{stderr}"
    );

    let (status, list) = node.http(None).get("/v1/strategies").await;
    assert_eq!(status, 200);
    assert_eq!(list["strategies"], json!([]), "nothing was sent: {list}");

    let stderr = ctl_fails(&node, &["strategy", "show", "nobody"]).await;
    assert!(stderr.contains("404"), "{stderr}");
    let stderr = ctl_fails(&node, &["strategy", "stop", "nobody"]).await;
    assert!(stderr.contains("404"), "{stderr}");
}
