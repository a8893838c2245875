//! The node starts, trades over HTTP, and stops cleanly on SIGTERM.

use serde_json::json;
use tradefloor_tests::{Node, NodeOptions};

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
    assert_eq!(node.stop().await, Some(0));
}
