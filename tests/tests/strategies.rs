//! Live strategies against a real node fed by `tradefloor feed`: a strategy places orders
//! through the placement path under its own account, survives a SIGKILL of the node (it
//! resumes from its checkpoint and no order is placed twice), falls back to its cached
//! prediction behind an open breaker when its learned predictor's model turns bad, and its
//! kill switch stops it and cancels what rests. Bad specs and other accounts are refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tradefloor_tests::{Http, Node, NodeOptions, binary, deposit, eventually, list_market, place};

const ADMIN_TOKEN: &str = "admin-secret-token-41d9c0b7e2";
const FEED_TOKEN: &str = "feed-secret-token-8a2f61c3d9";
const QUANT_TOKEN: &str = "quant-trader-token-5e07b9a1c4";
const EVE_TOKEN: &str = "eve-trader-token-c3f18d62a0";
/// Strategies take their time to replay thousands of ticks on a loaded CI machine.
const STRATEGY_TIMEOUT: Duration = Duration::from_secs(120);

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{FEED_TOKEN}\"\nrole = \"feed\"\n\n\
         [[tokens]]\ntoken = \"{QUANT_TOKEN}\"\nrole = \"trader\"\naccounts = [\"quant\"]\n\n\
         [[tokens]]\ntoken = \"{EVE_TOKEN}\"\nrole = \"trader\"\naccounts = [\"eve\"]\n\n\
         [trading]\nstrategy_checkpoint_bars = 20\n"
    )
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../strategy/tests/data")
        .join(name)
}

fn spec(model: &Path) -> Value {
    json!({
        "id": "quant-1", "symbol": "BTC-USD", "source": "quotes", "account": "quant",
        "timeframe_seconds": 1,
        "features": {"moving_average": 5, "rsi": 5, "macd": [3, 6, 3], "bollinger": [5, 2], "atr": 5},
        "predictors": [
            {"name": "momentum", "kind": "momentum"},
            {"name": "reversion", "kind": "mean_reversion"},
            {"name": "learned", "kind": "logistic", "model": model.to_str().expect("utf-8")}
        ],
        "ensemble": {"threshold": 0.2},
        "breaker": {"failures_max": 2, "open_bars": 5},
        "risk": {"order_quantity": 1, "max_position": 3, "max_orders_per_minute": 30}
    })
}

/// `tradefloor feed` of `csv` into `node` at `rate` ticks/s.
fn feed_command(node: &Node, csv: &Path, rate: u32) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary());
    command
        .args(["feed", "--batch", "100", "--symbol", "BTC-USD"])
        .args(["--rate", &rate.to_string()])
        .arg("--csv")
        .arg(csv)
        .args(["--node", &node.url, "--token", FEED_TOKEN]);
    command
}

/// Runs `tradefloor feed` on `csv` into `node` to its end.
async fn feed(node: &Node, csv: &Path) {
    let output = feed_command(node, csv, 2_000)
        .output()
        .await
        .expect("run tradefloor feed");
    assert!(
        output.status.success(),
        "feed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn admin_of(node: &Node) -> Http {
    node.http(Some(ADMIN_TOKEN))
}

async fn strategy(http: &Http) -> Value {
    let (status, view) = http.get("/v1/strategies/quant-1").await;
    assert_eq!(status, 200, "{view}");
    view
}

/// Waits until the strategy has taken `ticks` ticks; its view then.
async fn taken(http: &Http, ticks: u64) -> Value {
    eventually("the strategy takes the ticks", STRATEGY_TIMEOUT, || async {
        let view = strategy(http).await;
        eprintln!(
            "DEBUG ticks {} bars {} answered {} failed {} state {} journal-last {}",
            view["ticks"],
            view["bars"],
            view["orders_answered"],
            view["orders_failed"],
            view["state"],
            view["journal"]
                .as_array()
                .and_then(|j| j.last())
                .cloned()
                .unwrap_or_default()
        );
        (view["ticks"].as_u64() >= Some(ticks)).then_some(view)
    })
    .await
}

/// The order ids of the account's holds, one per hold placed.
async fn holds(http: &Http) -> Vec<u64> {
    let (status, history) = http.get("/v1/accounts/quant/history?limit=1000").await;
    assert_eq!(status, 200, "{history}");
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|event| {
            let placed = event["event"].get("hold_placed")?;
            placed["order_id"].as_u64()
        })
        .collect()
}

async fn refused_specs(admin: &Http, eve: &Http, model: &Path) {
    let mut good = spec(model);
    for (body, status, code) in [
        (json!([1, 2]), 400, "invalid_json"),
        (json!({"id": "x"}), 400, "invalid_json"),
        (
            {
                good["timeframe_seconds"] = json!(0);
                good.clone()
            },
            400,
            "invalid_strategy",
        ),
        (
            {
                good["timeframe_seconds"] = json!(1);
                good["market"] = json!("ETH-USD");
                good.clone()
            },
            404,
            "unknown_market",
        ),
    ] {
        let (got, answer) = admin.post("/v1/strategies", &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (status, _) = eve.post("/v1/strategies", &spec(model)).await;
    assert_eq!(
        status, 403,
        "a trader defines strategies for its own accounts only"
    );
    let (status, answer) = admin.get("/v1/strategies/nobody").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("strategy_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_fed_by_a_feed_trades_survives_a_kill_falls_back_and_stops() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let quant = node.http(Some(QUANT_TOKEN));
    let eve = node.http(Some(EVE_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "quant", "USD", 10_000_000).await;
    deposit(&admin, "mm", "BTC", 1_000).await;
    // A market maker's ask under every price of the sample: the strategy's buys fill.
    place(
        &admin,
        &tradefloor_tests::limit_order("mm", "sell", 49_000, 1_000),
    )
    .await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let model = directory.path().join("model.json");
    std::fs::copy(sample("model.json"), &model).expect("copy the model");

    refused_specs(&admin, &eve, &model).await;
    let (status, created) = quant.post("/v1/strategies", &spec(&model)).await;
    assert_eq!(
        (status, created["state"].as_str()),
        (201, Some("running")),
        "{created}"
    );
    let (status, again) = admin.post("/v1/strategies", &spec(&model)).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("strategy_exists"))
    );
    let (status, _) = eve.get("/v1/strategies/quant-1").await;
    assert_eq!(status, 404, "another account's strategy is not shown");
    let (_, listed) = eve.get("/v1/strategies").await;
    assert_eq!(listed["strategies"], json!([]));

    // The feed replays the sample; the strategy decides its bars and trades.
    let ticks = tradefloor_strategy::Tick::parse_csv(
        &std::fs::read_to_string(sample("ticks.csv")).expect("the sample"),
    )
    .expect("ticks");
    // The feed replays the sample; the node is killed (SIGKILL) while the strategy takes it.
    let mut feeding = feed_command(&node, &sample("ticks.csv"), 500)
        .kill_on_drop(true)
        .spawn()
        .expect("start tradefloor feed");
    taken(&quant, 1_000).await;
    node.kill().await;
    // The feed fails with the node (or had finished): what it sent is in the journal.
    let _ = feeding.wait().await;
    node.restart().await;
    // A restarted node listens on a new port.
    let quant = node.http(Some(QUANT_TOKEN));
    let resumed = strategy(&quant).await;
    assert_eq!(resumed["state"], "running", "{resumed}");
    // It resumed from its checkpoint (at most 20 bars back) and decides the bars after it again;
    // the feed then goes again from the start: ticks it had taken fold into the open bar, the
    // rest close bars as before.
    let from = resumed["ticks"].as_u64().expect("ticks");
    feed(&node, &sample("ticks.csv")).await;
    let view = taken(&quant, from + ticks.len() as u64).await;
    assert!(view["bars"].as_u64() > Some(1_000), "{}", view["bars"]);
    assert!(
        view["orders_answered"].as_u64() > Some(0),
        "{}",
        view["journal"]
    );
    let position = view["position"].as_u64().expect("a position");
    assert!(
        (1..=3).contains(&position),
        "bought against the ask, within max_position: {position}"
    );
    assert!(view["pnl"].is_i64(), "{}", view["pnl"]);
    // No order twice: one hold per order, each order a bar's (its client id the bar's start).
    let placed = holds(&quant).await;
    let unique: BTreeSet<u64> = placed.iter().copied().collect();
    assert_eq!(unique.len(), placed.len(), "one hold per order: {placed:?}");
    assert!(!placed.is_empty());

    // The learned predictor's model turns bad (fitted on other features): its breaker opens and
    // its cached prediction stands in.
    let bad = json!({"features": ["spread"], "weights": [1.0], "bias": 0.0});
    std::fs::write(&model, bad.to_string()).expect("write the bad model");
    let later = directory.path().join("later.csv");
    let last = ticks.last().expect("ticks");
    let mut csv = String::from("at,price,quantity\n");
    for index in 1..=120_i64 {
        let price = last.price + u64::try_from(index % 7).expect("small") * 10;
        csv.push_str(&format!("{},{price},1\n", last.at + index * 1_000_000));
    }
    std::fs::write(&later, csv).expect("write later ticks");
    feed(&node, &later).await;
    let view = eventually("the breaker opens", STRATEGY_TIMEOUT, || async {
        let view = strategy(&quant).await;
        let learned = view["breakers"]
            .as_array()?
            .iter()
            .find(|breaker| breaker["predictor"] == "learned")?
            .clone();
        (learned["opened_total"].as_u64() > Some(0)).then_some(view)
    })
    .await;
    let cached = view["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .any(|decision| {
            decision["signal"]["fallback"] == true
                && decision["predictions"][2]["source"] == "cached"
                && decision["predictions"][2]["score"].is_f64()
        });
    assert!(
        cached,
        "a decision used the cached prediction: {}",
        view["decisions"]
    );
    let (_, tree) = admin_of(&node).get("/v1/actors").await;
    assert!(
        tree.to_string().contains("/trading/strategies/quant-1"),
        "the strategy is in the actor tree: {tree}"
    );
    let metrics = eventually("the strategy's metrics", STRATEGY_TIMEOUT, || async {
        let text = reqwest::get(format!("{}/metrics", node.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let open = text.lines().any(|line| {
            line.starts_with("tradefloor_strategy_breaker_open{")
                && line.contains("\"learned\"")
                && line.ends_with(" 1")
        });
        open.then_some(text)
    })
    .await;
    assert!(
        metrics.contains("tradefloor_strategy_bars{strategy=\"quant-1\"}"),
        "{metrics}"
    );

    // The kill switch: stopped, and what rests is cancelled (a bad body changes nothing).
    for bad in [json!([1]), json!({"why": "x"}), json!({"reason": 5})] {
        let (status, answer) = quant.post("/v1/strategies/quant-1/stop", &bad).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{bad}"
        );
    }
    assert_eq!(strategy(&quant).await["state"], "running");
    let (status, stopped) = quant
        .post(
            "/v1/strategies/quant-1/stop",
            &json!({"reason": "kill switch"}),
        )
        .await;
    assert_eq!(
        (status, stopped["state"].as_str()),
        (200, Some("stopped")),
        "{stopped}"
    );
    assert_eq!(stopped["stopped"][0], "kill switch");
    eventually("its orders are cancelled", STRATEGY_TIMEOUT, || async {
        let (_, account) = quant.get("/v1/accounts/quant").await;
        account["open_orders"].as_array()?.is_empty().then_some(())
    })
    .await;
    // It stays stopped across a restart, and starts again when asked.
    node.stop().await;
    node.restart().await;
    let quant = node.http(Some(QUANT_TOKEN));
    assert_eq!(strategy(&quant).await["state"], "stopped");
    let (status, started) = quant.post("/v1/strategies/quant-1/start", &json!({})).await;
    assert_eq!(
        (status, started["state"].as_str()),
        (200, Some("running")),
        "{started}"
    );
}
