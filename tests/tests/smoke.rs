//! The node starts, trades over HTTP, and stops cleanly on SIGTERM.

use std::time::Duration;

use serde_json::json;
use tradefloor_tests::{Node, NodeOptions, eventually};

/// A series of each kind the node exports: requests, the journal, mailboxes, breakers,
/// entities, read-model lag, the log's consumers' database reads (each reads at start), the
/// risk consumer group, waiting placements.
const METRICS: [&str; 9] = [
    "tradefloor_http_requests_total{method=\"POST\",route=\"/v1/orders\",status=\"201\"}",
    "tradefloor_journal_commit_seconds",
    "tradefloor_mailbox_length{kind=\"shard\",actor=\"/trading/books\"}",
    "tradefloor_breaker_state{breaker=\"/trading/accounts/journal\"}",
    "tradefloor_entities{region=\"/trading/sagas\"}",
    "tradefloor_projection_lag_events{consumer=\"trading.balances\"}",
    "tradefloor_log_tail_database_reads_total{why=\"start\"}",
    "tradefloor_consumer_members{group=\"trading.risk\"}",
    "tradefloor_placements_waiting",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_trades_over_http_and_stops_cleanly() {
    let mut node = Node::start(NodeOptions::default()).await;
    let http = node.http(None);
    let market = json!({"symbol": "BTC-USD", "base": "BTC", "quote": "USD",
        "tick_size": 1, "lot_size": 1});
    assert_eq!(http.post("/v1/markets", &market).await.0, 201);
    let deposit = json!({"asset": "USD", "amount": 10_000});
    assert_eq!(
        http.post("/v1/accounts/alice/deposits", &deposit).await.0,
        200
    );
    let deposit = json!({"asset": "BTC", "amount": 10});
    assert_eq!(
        http.post("/v1/accounts/bob/deposits", &deposit).await.0,
        200
    );
    let sell = json!({"account_id": "bob", "symbol": "BTC-USD", "side": "sell",
        "type": "limit", "price": 100, "quantity": 5});
    let (status, order) = http.post("/v1/orders", &sell).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "open");
    let buy = json!({"account_id": "alice", "symbol": "BTC-USD", "side": "buy",
        "type": "limit", "price": 100, "quantity": 5});
    let (status, order) = http.post("/v1/orders", &buy).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "filled");
    // The sampler reads the actors once a second.
    eventually("every kind of metric", Duration::from_secs(30), || async {
        let (_, text) = http.get("/metrics").await;
        let text = text.as_str().unwrap_or_default().to_owned();
        METRICS
            .iter()
            .all(|series| text.contains(series))
            .then_some(())
    })
    .await;
    assert_eq!(node.stop().await, Some(0));
}
