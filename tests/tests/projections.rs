//! Operators' replays against a real node: a read model rebuilt in place from offset 0 while
//! the node serves (through the API and `ctl rebuild`, with its progress) ends with the same
//! answers as before and goes on with new events; a subscription replayed from an offset or
//! a time delivers those events again. Admins only; bad requests change nothing.

use std::time::Duration;

use serde_json::{Value, json};
use tradefloor_tests::{
    Http, Method, Node, NodeOptions, deposit, eventually, limit_order, list_market, place,
    tradefloor,
};

const ADMIN_TOKEN: &str = "admin-secret-token-6c0e5b2f94";
const TRADER_TOKEN: &str = "alice-trader-token-1d7a3e90c4";
const WITHIN: Duration = Duration::from_secs(30);

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n"
    )
}

/// The read models' answers: the tape, candles, positions and orders.
async fn answers(http: &Http) -> Value {
    let mut all = serde_json::Map::new();
    for path in [
        "/v1/markets/BTC-USD/trades",
        "/v1/markets/BTC-USD/candles?interval=1m",
        "/v1/accounts/alice/positions",
        "/v1/accounts/bob/positions",
    ] {
        let (status, body) = http.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        all.insert(path.to_owned(), body);
    }
    Value::Object(all)
}

/// The read model `name` as `GET /v1/projections` shows it.
async fn projection(http: &Http, name: &str) -> Value {
    let (status, list) = http.get("/v1/projections").await;
    assert_eq!(status, 200, "{list}");
    list["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .find(|projection| projection["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

/// Waits until every read model has read the log's head.
async fn caught_up(http: &Http) {
    eventually("read models caught up", WITHIN, || async {
        let (_, list) = http.get("/v1/projections").await;
        let projections = list["projections"].as_array()?.clone();
        (projections.len() == 4 && projections.iter().all(|p| p["lag"] == 0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_rebuild_in_place_and_subscriptions_replay() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 100_000).await;
    deposit(&admin, "bob", "BTC", 100).await;
    for quantity in [3, 5, 2] {
        place(&admin, &limit_order("bob", "sell", 100, quantity)).await;
        place(&admin, &limit_order("alice", "buy", 100, quantity)).await;
    }
    caught_up(&admin).await;
    let before = answers(&admin).await;
    assert_eq!(
        before["/v1/markets/BTC-USD/trades"]["trades"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // Through the API: 202 with the target, then done with the same answers.
    let reply = admin
        .call(Method::POST, "/v1/projections/trading.trades/rebuild", None)
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let target = reply.body["rebuild"]["target"].as_u64().expect("a target");
    assert!(target > 0, "{}", reply.body);
    eventually("the rebuild done", WITHIN, || async {
        let trades = projection(&admin, "trading.trades").await;
        trades["rebuild"]["took_ms"].is_u64().then_some(())
    })
    .await;
    assert_eq!(
        projection(&admin, "trading.trades").await["rebuild"]["progress"],
        1.0
    );
    assert_eq!(answers(&admin).await, before);

    // From a terminal, following its progress; the node serves meanwhile.
    let output = tradefloor(
        &node,
        &["ctl", "--token", ADMIN_TOKEN, "rebuild", "trading.balances"],
    )
    .await;
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("rebuilt trading.balances"), "{text}");
    assert_eq!(answers(&admin).await, before);
    let output = tradefloor(&node, &["ctl", "--token", ADMIN_TOKEN, "projections"]).await;
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        text.contains("trading.orders") && text.contains("rebuilt in"),
        "{text}"
    );

    // Rebuilt read models go on with new events.
    place(&admin, &limit_order("bob", "sell", 100, 1)).await;
    place(&admin, &limit_order("alice", "buy", 100, 1)).await;
    eventually("the new trade on the tape", WITHIN, || async {
        let (_, tape) = admin.get("/v1/markets/BTC-USD/trades").await;
        (tape["trades"].as_array()?.len() == 4).then_some(())
    })
    .await;

    // A subscription replayed from an offset, then from a time.
    let (_, page) = admin.get("/v1/events?limit=1000").await;
    let events = page["events"].as_array().expect("events").clone();
    let head = page["next_after"].as_u64().expect("next_after");
    let offset = "/v1/subscriptions/tape/offset";
    let replay = "/v1/subscriptions/tape/replay";
    let reply = admin
        .call(Method::PUT, offset, Some(&json!({"offset": head})))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = admin
        .call(Method::POST, replay, Some(&json!({"offset": 2})))
        .await;
    assert_eq!(
        (reply.status, reply.body["offset"].as_u64()),
        (200, Some(2)),
        "{}",
        reply.body
    );
    let (_, resumed) = admin.get("/v1/events?subscription=tape&limit=1").await;
    assert_eq!(resumed["events"][0]["offset"], 3, "{resumed}");
    let tenth = &events[9];
    let at = tenth["recorded_at"].as_i64().expect("recorded_at");
    let reply = admin
        .call(Method::POST, replay, Some(&json!({"at": at})))
        .await;
    let first_at = events
        .iter()
        .find(|event| event["recorded_at"].as_i64() >= Some(at))
        .expect("an event at that time");
    assert_eq!(
        reply.body["offset"].as_u64(),
        first_at["offset"].as_u64().map(|offset| offset - 1),
        "{}",
        reply.body
    );
    let rfc3339 = "2000-01-01T00:00:00Z";
    let output = tradefloor(
        &node,
        &[
            "ctl",
            "--token",
            ADMIN_TOKEN,
            "replay",
            "tape",
            "--at",
            rfc3339,
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        admin.get(offset).await.1["offset"],
        0,
        "every event is after 2000"
    );

    // Admins only; bad requests change nothing.
    let trader = node.http(Some(TRADER_TOKEN));
    assert_eq!(trader.get("/v1/projections").await.0, 403);
    let rebuild = "/v1/projections/trading.trades/rebuild";
    assert_eq!(trader.call(Method::POST, rebuild, None).await.status, 403);
    assert_eq!(
        trader
            .call(Method::POST, replay, Some(&json!({"offset": 1})))
            .await
            .status,
        403
    );
    let unknown = admin
        .call(
            Method::POST,
            "/v1/projections/trading.nothing/rebuild",
            None,
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "no_projection"));
    for bad in [
        json!({}),
        json!({"offset": 1, "at": 2}),
        json!({"offset": -1}),
    ] {
        let reply = admin.call(Method::POST, replay, Some(&bad)).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    assert_eq!(admin.get(offset).await.1["offset"], 0, "nothing changed");
    assert_eq!(node.stop().await, Some(0));
}
