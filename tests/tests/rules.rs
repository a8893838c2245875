//! Pattern rules against a real node: each shipped kind of rule fires on a scripted flow
//! (a price move halts the market, a burst of cancels throttles its account, the same owner
//! on both sides of a trade and a deposit mostly withdrawn soon after are flagged) and not
//! on the benign flow around them; the alerts are journaled (`GET /v1/alerts`), on the
//! market's and the account's live streams, counted in
//! the metrics, raised once across a restart, a pattern straddling a restart still matched;
//! the rules are read and replaced through
//! `GET`/`PUT /v1/rules`, the replacement surviving a restart. Admins only.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tradefloor_tests::sse::Sse;
use tradefloor_tests::{
    Http, Method, Node, NodeOptions, deposit, eventually, limit_order, list_market, place,
};

const ADMIN_TOKEN: &str = "admin-secret-token-4f8b1d6a37";
const TRADER_TOKEN: &str = "alice-trader-token-9e2c7a05d3";
const WITHIN: Duration = Duration::from_secs(30);

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [rules]\nenabled = true\nowners = {{ alice = \"ann\", alice2 = \"ann\" }}\n\n\
         [[rules.rules]]\nname = \"price_move\"\nkind = \"price_move\"\nbps = 500\nwithin_ms = 60000\n\n\
         [[rules.rules]]\nname = \"cancel_burst\"\nkind = \"cancel_burst\"\ncancels = 5\n\
         within_ms = 60000\nthrottle_orders_per_second = 1\n\n\
         [[rules.rules]]\nname = \"wash_trade\"\nkind = \"wash_trade\"\ntrades = 1\nwithin_ms = 60000\n\n\
         [[rules.rules]]\nname = \"deposit_withdrawal\"\nkind = \"deposit_withdrawal\"\n\
         percent = 90\nwithin_ms = 3600000\n"
    )
}

/// Every alert on the node.
async fn alerts(http: &Http) -> Vec<Value> {
    let (status, page) = http.get("/v1/alerts?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["alerts"].as_array().expect("alerts").clone()
}

/// Waits until an alert of `rule` is on the node; returns it.
async fn alert_of(http: &Http, rule: &str) -> Value {
    eventually(rule, WITHIN, || async {
        alerts(http)
            .await
            .into_iter()
            .find(|alert| alert["rule"] == rule)
    })
    .await
}

/// `seller` sells `quantity` at `price` to `buyer` (the seller rests, the buyer takes).
async fn trade(http: &Http, seller: &str, buyer: &str, price: u64, quantity: u64) {
    place(http, &limit_order(seller, "sell", price, quantity)).await;
    place(http, &limit_order(buyer, "buy", price, quantity)).await;
}

async fn withdraw(http: &Http, account: &str, amount: u64) {
    let body = json!({"asset": "USD", "amount": amount});
    let (status, reply) = http
        .post(&format!("/v1/accounts/{account}/withdrawals"), &body)
        .await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_rules_fire_on_their_patterns_and_not_on_benign_flow() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    for (account, asset) in [
        ("alice", "USD"),
        ("alice2", "BTC"),
        ("bob", "BTC"),
        ("mallory", "USD"),
    ] {
        deposit(&admin, account, asset, 1_000_000).await;
    }
    let url = node.url.clone();
    let mut market = Sse::open(&url, "/v1/markets/BTC-USD/stream", Some(ADMIN_TOKEN), None)
        .await
        .expect("the market's stream opens");
    let mut mallory = Sse::open(&url, "/v1/accounts/mallory/stream", Some(ADMIN_TOKEN), None)
        .await
        .expect("mallory's stream opens");
    // Benign: distinct owners trading at a steady price, a small withdrawal.
    trade(&admin, "bob", "alice", 100, 2).await;
    trade(&admin, "bob", "alice", 101, 2).await;
    withdraw(&admin, "alice", 5_000).await;

    // The same owner on both sides.
    trade(&admin, "alice2", "alice", 101, 1).await;
    let wash = alert_of(&admin, "wash_trade").await;
    assert_eq!(
        (wash["key"].as_str(), wash["action"].as_str()),
        (Some("ann"), Some("flag"))
    );

    // Five cancels from one account: throttled to one order a second.
    for _ in 0..5 {
        let order = place(&admin, &limit_order("mallory", "buy", 90, 1)).await;
        let id = order["order_id"].as_u64().expect("an order id");
        let (status, body) = admin.delete(&format!("/v1/orders/{id}")).await;
        assert!(status == 200 || status == 202, "{status} {body}");
    }
    let burst = alert_of(&admin, "cancel_burst").await;
    assert_eq!(
        (
            burst["account"].as_str(),
            burst["orders_per_second"].as_u64()
        ),
        (Some("mallory"), Some(1))
    );
    let streamed = mallory.next_named("alert").await;
    assert_eq!(streamed.data["rule"], "cancel_burst", "{:?}", streamed.data);
    eventually("mallory throttled", WITHIN, || async {
        let (_, limits) = admin.get("/v1/accounts/mallory/limits").await;
        (limits["max_orders_per_second"] == 1).then_some(())
    })
    .await;

    // A deposit, then 95 % of it out.
    deposit(&admin, "mule", "USD", 10_000).await;
    withdraw(&admin, "mule", 9_500).await;
    let mule = alert_of(&admin, "deposit_withdrawal").await;
    assert_eq!(mule["account"], "mule");

    // The price moves 5 % within the minute: the market halts.
    trade(&admin, "bob", "alice", 104, 1).await;
    trade(&admin, "bob", "alice", 107, 1).await;
    let moved = alert_of(&admin, "price_move").await;
    assert_eq!(
        (moved["symbol"].as_str(), moved["action"].as_str()),
        (Some("BTC-USD"), Some("halt"))
    );
    // The market's stream had the wash trade's alert first.
    let wash_streamed = market.next_named("alert").await;
    assert_eq!(
        wash_streamed.data["rule"], "wash_trade",
        "{:?}",
        wash_streamed.data
    );
    let streamed = market.next_named("alert").await;
    assert_eq!(streamed.data["rule"], "price_move", "{:?}", streamed.data);
    let refused = eventually("the market halted", WITHIN, || async {
        let (status, body) = admin
            .post("/v1/orders", &limit_order("bob", "sell", 107, 1))
            .await;
        (status == 422).then_some(body)
    })
    .await;
    assert!(refused.to_string().contains("halt"), "{refused}");

    // Exactly these four: nothing on the benign flow.
    let raised = alerts(&admin).await;
    drop((market, mallory));
    let rules: BTreeSet<&str> = raised.iter().filter_map(|a| a["rule"].as_str()).collect();
    assert_eq!(raised.len(), 4, "{raised:?}");
    assert_eq!(rules.len(), 4, "{raised:?}");
    let (status, logged) = admin.get("/v1/events?kinds=alert&limit=100").await;
    assert_eq!(status, 200, "{logged}");
    let logged = logged["events"].as_array().expect("events").clone();
    assert_eq!(logged.len(), 4, "every alert is in the log: {logged:?}");
    assert!(
        logged
            .iter()
            .all(|event| event["name"] == "alert.raised" && event["event"].is_object())
    );
    let (_, metrics) = admin.get("/metrics").await;
    let metrics = metrics.as_str().map(str::to_owned).unwrap_or_default();
    assert!(metrics.contains("tradefloor_alerts_total{"), "{metrics}");

    // The rules as configured; replaced (journaled), the replacement and the alerts survive a
    // restart, and no alert is raised twice.
    let (status, set) = admin.get("/v1/rules").await;
    assert_eq!(
        (status, set["rules"].as_array().map(Vec::len)),
        (200, Some(4)),
        "{set}"
    );
    let only_wash = json!({"rules": [
        {"name": "wash", "kind": "wash_trade", "trades": 2, "within_ms": 1000},
        {"name": "drain", "kind": "deposit_withdrawal", "percent": 50, "within_ms": 60000}],
        "owners": {}});
    let reply = admin.call(Method::PUT, "/v1/rules", Some(&only_wash)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A pattern that straddles the restart: the deposit before, the withdrawal after (the
    // monitor reads its window's events again at start).
    deposit(&admin, "mule2", "USD", 1_000).await;
    let (_, page) = admin
        .get("/v1/events?after=0&limit=1000&stream=account%7Cmule2")
        .await;
    let deposited = page["events"][0]["offset"]
        .as_u64()
        .expect("the deposit's offset");
    eventually("the monitor past the deposit", WITHIN, || async {
        let (_, metrics) = admin.get("/metrics").await;
        let metrics = metrics.as_str().map(str::to_owned).unwrap_or_default();
        let offset = metrics
            .lines()
            .find_map(|line| line.strip_prefix("tradefloor_rules_offset "))?
            .parse::<f64>()
            .ok()?;
        (offset >= deposited as f64).then_some(())
    })
    .await;
    assert_eq!(node.stop().await, Some(0));
    node.restart().await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let (_, set) = admin.get("/v1/rules").await;
    assert_eq!(set, only_wash);
    // A new match after the restart: once it is raised, the monitor has read everything
    // before it, and none of the earlier alerts came again.
    withdraw(&admin, "mule2", 600).await;
    let drained = alert_of(&admin, "drain").await;
    assert_eq!(drained["account"], "mule2");
    let mut expected = raised.clone();
    expected.push(drained);
    assert_eq!(
        alerts(&admin).await,
        expected,
        "no alert twice after a restart"
    );

    // Admins only; bad rules change nothing.
    let trader = node.http(Some(TRADER_TOKEN));
    assert_eq!(trader.get("/v1/alerts").await.0, 403);
    assert_eq!(trader.get("/v1/rules").await.0, 403);
    for bad in [
        json!({"rules": [{"name": "x", "kind": "moon_phase", "within_ms": 1}]}),
        json!({"rules": [{"name": "x", "kind": "wash_trade", "trades": 0, "within_ms": 1000}]}),
        json!([1]),
    ] {
        let reply = admin.call(Method::PUT, "/v1/rules", Some(&bad)).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    assert_eq!(admin.get("/v1/rules").await.1, only_wash);
    assert_eq!(node.stop().await, Some(0));
}

/// The book's price band as one of the shipped rules: a print outside the band halts the
/// market in the book (before it prints) and raises the `price_band` alert; trades inside
/// it raise nothing, and an operator's halt is not the band's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_band_halt_is_the_shipped_price_band_rule() {
    let mut node = Node::start(NodeOptions::with_config(format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [rules]\nenabled = true\nshipped = true\n"
    )))
    .await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let (status, set) = admin.get("/v1/rules").await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["rules"][0],
        json!({"name": "price_band", "kind": "price_band"})
    );
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 1_000_000).await;
    deposit(&admin, "bob", "BTC", 1_000).await;
    // Inside the band (the first trade sets the reference price, the band is ±10 % of it).
    trade(&admin, "bob", "alice", 100, 1).await;
    trade(&admin, "bob", "alice", 105, 1).await;
    // An operator's halt and resume: not the band's.
    let (status, body) = admin.post("/v1/markets/BTC-USD/halt", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin
        .post(
            "/v1/markets/BTC-USD/resume",
            &json!({"reference_price": 100}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // 120 is outside 90 to 110: the book halts instead of printing.
    place(&admin, &limit_order("bob", "sell", 120, 1)).await;
    let (status, taker) = admin
        .post("/v1/orders", &limit_order("alice", "buy", 120, 1))
        .await;
    assert!(status == 200 || status == 201, "{status} {taker}");
    let band = alert_of(&admin, "price_band").await;
    assert_eq!(
        (band["symbol"].as_str(), band["action"].as_str()),
        (Some("BTC-USD"), Some("halt"))
    );
    assert!(
        band["message"].as_str().is_some_and(|m| m.contains("120")),
        "{band}"
    );
    let (_, trades) = admin.get("/v1/markets/BTC-USD/trades").await;
    assert!(
        !trades.to_string().contains("\"price\":120"),
        "nothing printed at 120: {trades}"
    );
    assert_eq!(alerts(&admin).await, [band], "one alert: the band's");
    assert_eq!(node.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_monitor_the_rules_routes_say_so() {
    let mut node = Node::start(NodeOptions::with_config(format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n"
    )))
    .await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let (status, body) = admin.get("/v1/rules").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("rules_off")),
        "{body}"
    );
    assert_eq!(admin.get("/v1/alerts").await.0, 200);
    assert_eq!(node.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_enabled_on_a_node_with_history_watch_from_then_on() {
    let tokens = format!("[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n");
    let mut node = Node::start(NodeOptions::with_config(tokens.clone())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 1_000_000).await;
    deposit(&admin, "bob", "BTC", 100).await;
    // A 7 % move in the history, before any rule ran.
    trade(&admin, "bob", "alice", 100, 1).await;
    trade(&admin, "bob", "alice", 107, 1).await;
    assert_eq!(node.stop().await, Some(0));
    node.options.config = Some(format!(
        "{tokens}\n[rules]\nenabled = true\n\n[[rules.rules]]\nname = \"price_move\"\n\
         kind = \"price_move\"\nbps = 500\nwithin_ms = 600000\n"
    ));
    node.restart().await;
    let admin = node.http(Some(ADMIN_TOKEN));
    // Trading goes on: the old move halted nothing and raised nothing.
    trade(&admin, "bob", "alice", 107, 1).await;
    // A new move does (down 6 %, inside the book's own band around its reference of 100);
    // the monitor reads in log order, so by then an alert on the old move would be there.
    trade(&admin, "bob", "alice", 101, 1).await;
    let moved = alert_of(&admin, "price_move").await;
    assert_eq!(moved["symbol"], "BTC-USD");
    assert_eq!(alerts(&admin).await, [moved], "nothing on the old move");
    assert_eq!(node.stop().await, Some(0));
}
