//! Risk that users set and read against a real node: an admin sets an account's limits and
//! the account's next orders are held to them (an order rate too, across a restart);
//! positions and the risk monitor's flags are served, and a flag reaches the account's stream.

use serde_json::{Value, json};
use tradefloor_tests::{
    Http, Method, Node, NodeOptions, PROJECTION_TIMEOUT, deposit, eventually, limit_order,
    list_market, place,
};

const ADMIN_TOKEN: &str = "admin-secret-token-7f3a9c2e51";
const TRADER_TOKEN: &str = "alice-trader-token-b84d06e1f7";

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [trading]\nrisk_position_limit = 1000000\n"
    )
}

async fn put_limits(http: &Http, account: &str, body: Value) -> (u16, Value) {
    let reply = http
        .call(
            Method::PUT,
            &format!("/v1/accounts/{account}/limits"),
            Some(&body),
        )
        .await;
    (reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_by_an_admin_hold_the_next_orders_and_positions_and_flags_are_served() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let trader = node.http(Some(TRADER_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "bob", "BTC", 100).await;
    deposit(&admin, "alice", "USD", 100_000).await;

    // Defaults until set; a trader reads its own, sets none.
    let (status, limits) = trader.get("/v1/accounts/alice/limits").await;
    assert_eq!(
        (status, limits["max_open_orders"].as_u64()),
        (200, Some(1_000)),
        "{limits}"
    );
    let body = json!({"max_open_orders": 1, "max_order_notional": 5_000, "command_id": "l-1"});
    assert_eq!(put_limits(&trader, "alice", body.clone()).await.0, 403);
    // Bad input changes nothing.
    for (bad, code) in [
        (json!({"max_order_notional": 0}), "zero_value"),
        (json!({"max_orders_per_second": 0}), "zero_value"),
        (json!({"max_open_orders": -1}), "invalid_json"),
        (json!({"max_position": {"usd!": 5}}), "invalid_id"),
        (json!({"maximum": 5}), "invalid_json"),
        (json!([null, null]), "invalid_json"),
    ] {
        let (status, answer) = put_limits(&admin, "alice", bad.clone()).await;
        assert_eq!(answer["error"]["code"], code, "{bad}: {status} {answer}");
    }
    let (status, set) = put_limits(&admin, "alice", body.clone()).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        (
            set["max_open_orders"].as_u64(),
            set["max_order_notional"].as_u64()
        ),
        (Some(1), Some(5_000))
    );
    // A retry repeats the answer; the limits read back.
    assert_eq!(put_limits(&admin, "alice", body).await, (200, set.clone()));
    assert_eq!(trader.get("/v1/accounts/alice/limits").await, (200, set));

    // The account's orders are held to them: a notional of 10 000 is refused, one open order
    // is allowed and a second refused.
    let (status, refused) = trader
        .post("/v1/orders", &limit_order("alice", "buy", 100, 100))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("risk_limit")),
        "{refused}"
    );
    place(&trader, &limit_order("alice", "buy", 90, 10)).await;
    let (status, refused) = trader
        .post("/v1/orders", &limit_order("alice", "buy", 90, 10))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("risk_limit")),
        "{refused}"
    );

    // Positions: bob sells into alice's bid.
    place(&admin, &limit_order("bob", "sell", 90, 4)).await;
    let positions = eventually("alice's position", PROJECTION_TIMEOUT, || async {
        let (_, positions) = trader.get("/v1/accounts/alice/positions").await;
        (positions["positions"][0]["bought"] == 4).then_some(positions)
    })
    .await;
    assert_eq!(positions["positions"][0]["symbol"], "BTC-USD");
    assert_eq!(positions["positions"][0]["net"], 4);
    let (_, bob) = admin.get("/v1/accounts/bob/positions").await;
    assert_eq!(
        (
            bob["positions"][0]["sold"].as_u64(),
            bob["positions"][0]["net"].as_i64()
        ),
        (Some(4), Some(-4))
    );
    assert_eq!(trader.get("/v1/accounts/bob/positions").await.0, 403);

    // Flags: carol goes over the node's position limit (1 000 000 of any asset).
    assert_eq!(
        trader.get("/v1/accounts/alice/risk").await.1["flags"],
        json!([])
    );
    deposit(&admin, "carol", "USD", 2_000_000).await;
    let risk = eventually("carol flagged", PROJECTION_TIMEOUT, || async {
        let (_, risk) = admin.get("/v1/accounts/carol/risk").await;
        (risk["flags"]
            .as_array()
            .is_some_and(|flags| !flags.is_empty()))
        .then_some(risk)
    })
    .await;
    assert_eq!(risk["flags"][0]["asset"], "USD");
    assert_eq!(risk["flags"][0]["position"], 2_000_000);
    assert_eq!(trader.get("/v1/accounts/carol/risk").await.0, 403);

    // On the account's stream: in the snapshot of a flagged account, and live as raised.
    let carol = read_until(
        &node.url,
        "/v1/accounts/carol/stream",
        "event: risk",
        || async {},
    )
    .await;
    assert!(carol.contains("\"position\":2000000"), "{carol}");
    let dave = read_until(
        &node.url,
        "/v1/accounts/dave/stream",
        "event: risk",
        || async {
            deposit(&admin, "dave", "BTC", 3_000_000).await;
        },
    )
    .await;
    assert!(dave.contains("\"asset\":\"BTC\""), "{dave}");
    assert_eq!(node.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_rate_limit_refuses_a_burst_beyond_it_and_survives_a_restart() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 100_000).await;
    let body = json!({"max_orders_per_second": 1, "command_id": "rate-1"});
    let (status, set) = put_limits(&admin, "alice", body).await;
    assert_eq!(
        (status, set["max_orders_per_second"].as_u64()),
        (200, Some(1)),
        "{set}"
    );

    // A burst of five at once: the bucket holds one order, refilled once a second, so all
    // but about one are refused (all five pass only if they took over four seconds).
    let burst = |http: Http| async move {
        let orders = (0..5).map(|price| {
            let http = http.clone();
            async move {
                http.post("/v1/orders", &limit_order("alice", "buy", 10 + price, 1))
                    .await
            }
        });
        futures_util::future::join_all(orders).await
    };
    let answers = burst(admin.clone()).await;
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 422)
        .map(|(_, body)| body)
        .collect();
    let placed = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(placed + refused.len(), 5, "{answers:?}");
    assert!(placed >= 1 && !refused.is_empty(), "{answers:?}");
    for body in &refused {
        assert_eq!(body["error"]["code"], "risk_limit", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("max_orders_per_second"), "{body}");
    }

    // After a restart the limit is still in force (recovered from the journal).
    assert_eq!(node.stop().await, Some(0));
    node.restart().await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let (_, limits) = admin.get("/v1/accounts/alice/limits").await;
    assert_eq!(limits["max_orders_per_second"], 1, "{limits}");
    let answers = burst(admin.clone()).await;
    assert!(
        answers.iter().any(|(status, _)| *status == 422),
        "{answers:?}"
    );
    assert_eq!(node.stop().await, Some(0));
}

/// Opens the SSE stream at `path` as admin, runs `then`, and reads until `needle` appears.
async fn read_until<F, Fut>(url: &str, path: &str, needle: &str, then: F) -> String
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut response = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("the node answers");
    assert_eq!(response.status().as_u16(), 200);
    then().await;
    let mut text = String::new();
    while !text.contains(needle) {
        let chunk = tokio::time::timeout(PROJECTION_TIMEOUT, response.chunk())
            .await
            .expect("the stream goes on")
            .expect("the stream reads")
            .expect("the stream is not over");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    text
}
