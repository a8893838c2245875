//! `tradefloor ctl` and `tradefloor bench` against a real node: the binary as an operator
//! runs it, its text and JSON outputs, its exit status on an error answer.

use serde_json::{Value, json};
use tradefloor_tests::{Node, NodeOptions, tradefloor};

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

async fn list_market(node: &Node, symbol: &str, base: &str, quote: &str) {
    let market = json!({"symbol": symbol, "base": base, "quote": quote,
        "tick_size": 1, "lot_size": 1});
    let (status, body) = node.http(None).post("/v1/markets", &market).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_trades_and_shows_accounts_and_books() {
    let node = Node::start(NodeOptions::default()).await;
    list_market(&node, "BTC-USD", "BTC", "USD").await;

    let deposit = ctl(&node, &["deposit", "alice", "USD", "10000"]).await;
    assert!(deposit.contains("account alice"), "{deposit}");
    assert!(
        deposit.contains("USD    10000     0      10000"),
        "{deposit}"
    );
    ctl(
        &node,
        &["deposit", "bob", "BTC", "10", "--command-id", "b1"],
    )
    .await;

    let sell = ctl(
        &node,
        &["order", "bob", "BTC-USD", "sell", "5", "--price", "100"],
    )
    .await;
    assert!(
        sell.contains("limit sell 5 BTC-USD @ 100 for bob: open"),
        "{sell}"
    );
    let buy = ctl_json(
        &node,
        &["order", "alice", "BTC-USD", "buy", "2", "--price", "100"],
    )
    .await;
    assert_eq!(buy["status"], "filled", "{buy}");
    assert_eq!(buy["filled_quantity"], 2);

    let account = ctl(&node, &["account", "bob"]).await;
    assert!(
        account.contains("ASSET  TOTAL  HELD  AVAILABLE"),
        "{account}"
    );
    assert!(account.contains("partially_filled"), "{account}");
    let account = ctl_json(&node, &["account", "alice"]).await;
    assert_eq!(account["balances"]["BTC"]["total"], 2, "{account}");
    assert_eq!(account["balances"]["USD"]["available"], 9_800, "{account}");

    let book = ctl(&node, &["book", "BTC-USD"]).await;
    assert!(book.contains("SIDE  PRICE  QUANTITY  ORDERS"), "{book}");
    assert!(book.contains("ask     100         3       1"), "{book}");
    let book = ctl_json(&node, &["book", "BTC-USD", "--depth", "1"]).await;
    assert_eq!(book["asks"][0]["quantity"], 3, "{book}");
    assert_eq!(book["bids"], json!([]));

    let order_id = sell_order_id(&node).await;
    let cancel = ctl(&node, &["cancel", &order_id.to_string()]).await;
    assert!(cancel.contains(&format!("order {order_id}:")), "{cancel}");
}

/// The id of bob's open sell order.
async fn sell_order_id(node: &Node) -> u64 {
    let account = ctl_json(node, &["account", "bob"]).await;
    account["open_orders"][0]["order_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("bob has an open order: {account}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_shows_the_cluster_and_the_actor_tree() {
    let node = Node::start(NodeOptions::default()).await;

    let members = ctl(&node, &["members"]).await;
    assert!(members.contains("NODE  STATUS"), "{members}");
    assert!(members.contains("n1    up"), "{members}");
    assert!(members.contains("(answered by n1)"), "{members}");
    let members = ctl_json(&node, &["members"]).await;
    assert_eq!(members["members"][0]["node_id"], "n1");

    let shards = ctl(&node, &["shards"]).await;
    assert!(
        shards.contains("SHARD  OWNER  ENTITIES  QUEUED"),
        "{shards}"
    );
    assert!(shards.contains("shards on 1 node(s)"), "{shards}");
    let shards = ctl_json(&node, &["shards"]).await;
    let count = shards["shard_count"].as_u64().expect("a shard count");
    assert_eq!(
        shards["shards"].as_array().map(Vec::len),
        Some(count as usize)
    );

    let tree = ctl(&node, &["tree"]).await;
    assert!(
        tree.starts_with("/ [cluster]\n└─ n1 [node] running"),
        "{tree}"
    );
    assert!(tree.contains("├─ ") && tree.contains("│  "), "{tree}");
    assert!(tree.contains("mailbox "), "{tree}");
    let shallow = ctl(&node, &["tree", "--depth", "1"]).await;
    assert!(shallow.contains("hidden)"), "{shallow}");
    assert!(shallow.lines().count() < tree.lines().count());
    let tree = ctl_json(&node, &["tree", "--of", "n1"]).await;
    assert_eq!(tree["path"], "/");
    assert_eq!(tree["children"][0]["path"], "/n1");

    let rebalance = ctl(&node, &["rebalance"]).await;
    assert!(rebalance.starts_with("nothing to move"), "{rebalance}");
    let plan = ctl_json(&node, &["rebalance", "--dry-run"]).await;
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["moves"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_exits_non_zero_with_the_code() {
    let node = Node::start(NodeOptions::default()).await;
    let output = tradefloor(&node, &["ctl", "account", "nobody"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("404 unknown_account"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = tradefloor(&node, &["ctl", "tree", "--of", "n9"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown_node"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_answers_every_order_and_reports_latency() {
    let node = Node::start(NodeOptions::default()).await;
    let report = bench(
        &node,
        &["--accounts", "20", "--orders", "200", "--concurrency", "8"],
    )
    .await;
    assert_eq!(report["target"], "orders");
    assert_eq!(report["mode"], "closed_loop");
    assert_eq!(report["sent"], 200, "{report}");
    assert_eq!(
        report["transport_errors"], 0,
        "every order is answered: {report}"
    );
    // The flow's orders are valid: the node refuses none of them. It may shed some when the
    // machine is busy (the tests share it), but not all.
    assert_eq!(report["rejected"], json!({}), "{report}");
    assert_eq!(report["server_errors"], json!({}), "{report}");
    let shed: u64 = report["shed"]
        .as_object()
        .expect("shed by code")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(report["ok"].as_u64().expect("ok") + shed, 200, "{report}");
    assert!(report["ok"].as_u64() > Some(0), "{report}");
    assert_latency_is_sane(&report, 200);

    // A second run finds the market listed and goes on; open loop this time.
    let report = bench(
        &node,
        &["--accounts", "5", "--orders", "40", "--rate", "200"],
    )
    .await;
    assert_eq!(report["mode"], "open_loop");
    assert_eq!(report["offered_rate"], 200);
    assert_eq!(
        report["sent"].as_u64().unwrap() + report["dropped"].as_u64().unwrap(),
        40
    );
    assert_eq!(report["transport_errors"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_baseline_hits_the_liveness_route() {
    let node = Node::start(NodeOptions::default()).await;
    let report = bench(
        &node,
        &["--baseline", "--orders", "500", "--concurrency", "4"],
    )
    .await;
    assert_eq!(report["target"], "baseline");
    assert_eq!(report["ok"], 500, "{report}");
    assert_latency_is_sane(&report, 500);
    let output = tradefloor(
        &node,
        &["bench", "--node", &node.url, "--baseline", "--orders", "50"],
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        text.starts_with("baseline (closed loop, 64 in flight): 50 requests"),
        "{text}"
    );
    assert!(text.contains("latency µs"), "{text}");
}

/// `tradefloor bench --json <args>` against `node`, parsed.
async fn bench(node: &Node, args: &[&str]) -> Value {
    let output = tradefloor(
        node,
        &[&["bench", "--json", "--node", &node.url], args].concat(),
    )
    .await;
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

fn assert_latency_is_sane(report: &Value, answers: u64) {
    let latency = &report["latency_micros"];
    let value = |name: &str| latency[name].as_u64().unwrap_or_else(|| panic!("{name}"));
    assert_eq!(value("count"), answers, "{report}");
    assert!(value("p50") > 0);
    assert!(value("p50") <= value("p90"));
    assert!(value("p90") <= value("p99"));
    assert!(value("p99") <= value("p99_9"));
    assert!(value("p99_9") <= value("max"));
    assert!(
        value("max") < 60_000_000,
        "no answer took a minute: {report}"
    );
}
