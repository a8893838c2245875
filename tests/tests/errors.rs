//! Bad input, as a new user and an attacker would send it (DESIGN §7): each gets its 4xx with
//! the right JSON error code (a 405 also says what is `Allow`ed), and none changes anything (the accounts and the book are the
//! same after). A client that stalls halfway through its request head is cut off while the
//! node goes on serving others.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradefloor_tests::{
    Http, Method, Node, NodeOptions, SYMBOL, deposit, limit_order, list_market, place, snapshot,
    unchanged,
};

const ACCOUNTS: [&str; 2] = ["alice", "bob"];
/// The body limit of the node under test (`http_limits.body_bytes_max`).
const BODY_BYTES_MAX: usize = 4_096;
/// How long the node lets a client take over its request head.
const CLIENT_REQUEST_TIMEOUT_MS: u64 = 1_000;
/// A market with a coarse tick and lot and a quantity range, to break its rules.
const COARSE: &str = "ETH-USD";
/// Bob's resting ask, by its id.
const BOB_ASK: u64 = 777;

/// One bad request and the answer it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    body: &str,
    answer: (u16, &'static str),
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
        status: answer.0,
        code: answer.1,
    }
}

fn get(what: &'static str, path: &str, answer: (u16, &'static str)) -> Case {
    case(what, Method::GET, path, "", answer)
}

fn post(what: &'static str, path: &str, body: &str, answer: (u16, &'static str)) -> Case {
    case(what, Method::POST, path, body, answer)
}

fn order(what: &'static str, body: Value, answer: (u16, &'static str)) -> Case {
    post(what, "/v1/orders", &body.to_string(), answer)
}

/// An order of alice's on `symbol` with `changes` applied to a limit buy of 1 @ 100.
fn alice_order(symbol: &str, changes: Value) -> Value {
    let mut body = json!({"account_id": "alice", "symbol": symbol, "side": "buy",
        "type": "limit", "price": 100, "quantity": 1});
    for (key, value) in changes.as_object().expect("an object of changes") {
        body[key] = value.clone();
    }
    body
}

const INVALID_JSON: (u16, &str) = (400, "invalid_json");
const INVALID_ID: (u16, &str) = (400, "invalid_id");
const INVALID_QUERY: (u16, &str) = (400, "invalid_query");
const INVALID_PATH: (u16, &str) = (400, "invalid_path");

fn cases() -> Vec<Case> {
    let deposits = "/v1/accounts/alice/deposits";
    let book = format!("/v1/markets/{SYMBOL}/book");
    let far_future = i64::MAX / 2;
    let huge = format!(
        r#"{{"asset": "USD", "amount": 1, "command_id": "{}"}}"#,
        "x".repeat(BODY_BYTES_MAX)
    );
    let mut cases = vec![
        // The body is not the JSON the route takes.
        post(
            "truncated JSON",
            deposits,
            r#"{"asset": "USD", "amount": "#,
            INVALID_JSON,
        ),
        post("not JSON", deposits, "deposit 100 USD please", INVALID_JSON),
        post("empty body", deposits, "", INVALID_JSON),
        post("JSON null", deposits, "null", INVALID_JSON),
        post("a JSON array", deposits, "[1, 2]", INVALID_JSON),
        post(
            "amount as a string",
            deposits,
            r#"{"asset": "USD", "amount": "100"}"#,
            INVALID_JSON,
        ),
        post(
            "asset as a number",
            deposits,
            r#"{"asset": 7, "amount": 100}"#,
            INVALID_JSON,
        ),
        post(
            "negative amount",
            deposits,
            r#"{"asset": "USD", "amount": -5}"#,
            INVALID_JSON,
        ),
        post(
            "fractional amount",
            deposits,
            r#"{"asset": "USD", "amount": 1.5}"#,
            INVALID_JSON,
        ),
        post(
            "amount over u64",
            deposits,
            r#"{"asset": "USD", "amount": 18446744073709551616}"#,
            INVALID_JSON,
        ),
        post(
            "amount 1e30",
            deposits,
            r#"{"asset": "USD", "amount": 1e30}"#,
            INVALID_JSON,
        ),
        post(
            "unknown field",
            deposits,
            r#"{"asset": "USD", "amount": 1, "memo": "hi"}"#,
            INVALID_JSON,
        ),
        post(
            "missing amount",
            deposits,
            r#"{"asset": "USD"}"#,
            INVALID_JSON,
        ),
        post(
            "duplicate key",
            deposits,
            r#"{"asset": "USD", "amount": 1, "amount": 2}"#,
            INVALID_JSON,
        ),
        post(
            // Balances stay within a signed 64-bit integer, the read models' type: a larger
            // one once crash-looped the balances projection (found by the schema fuzzer).
            "a deposit taking a balance past 2^63 - 1",
            deposits,
            r#"{"asset": "USD", "amount": 9223372036854775807}"#,
            (422, "overflow"),
        ),
        post(
            "zero amount",
            deposits,
            r#"{"asset": "USD", "amount": 0}"#,
            (400, "zero_value"),
        ),
        post(
            "bad asset",
            deposits,
            r#"{"asset": "U$D", "amount": 1}"#,
            INVALID_ID,
        ),
        post(
            "empty asset",
            deposits,
            r#"{"asset": "", "amount": 1}"#,
            INVALID_ID,
        ),
        post(
            "bad command id",
            deposits,
            r#"{"asset": "USD", "amount": 1, "command_id": "a b"}"#,
            INVALID_ID,
        ),
        post(
            "effective in the future",
            deposits,
            &format!(r#"{{"asset": "USD", "amount": 1, "effective_at": {far_future}}}"#),
            (400, "effective_in_future"),
        ),
        post(
            "a reused command id with another body",
            deposits,
            r#"{"asset": "USD", "amount": 2, "command_id": "alice-usd-1"}"#,
            (409, "command_id_reused"),
        ),
        post(
            "bad account id",
            "/v1/accounts/al%20ice/deposits",
            r#"{"asset": "USD", "amount": 1}"#,
            INVALID_ID,
        ),
        post(
            "too long an account id",
            &format!("/v1/accounts/{}/deposits", "a".repeat(200)),
            r#"{"asset": "USD", "amount": 1}"#,
            INVALID_ID,
        ),
        post(
            "withdraw more than available",
            "/v1/accounts/alice/withdrawals",
            r#"{"asset": "USD", "amount": 10001}"#,
            (422, "insufficient_funds"),
        ),
        post(
            "withdraw from a stranger",
            "/v1/accounts/stranger/withdrawals",
            r#"{"asset": "USD", "amount": 1}"#,
            (422, "insufficient_funds"),
        ),
        post(
            "too large a body",
            deposits,
            &huge,
            (413, "payload_too_large"),
        ),
        // Orders.
        order(
            "unknown side",
            alice_order(SYMBOL, json!({"side": "hold"})),
            INVALID_JSON,
        ),
        order(
            "unknown type",
            alice_order(SYMBOL, json!({"type": "stop"})),
            INVALID_JSON,
        ),
        order(
            "unknown time in force",
            alice_order(SYMBOL, json!({"time_in_force": "day"})),
            INVALID_JSON,
        ),
        order(
            "negative price",
            alice_order(SYMBOL, json!({"price": -100})),
            INVALID_JSON,
        ),
        order(
            "order id as a string",
            alice_order(SYMBOL, json!({"order_id": "7"})),
            INVALID_JSON,
        ),
        order(
            "an order id at or above 2^53 (not exact in JSON)",
            alice_order(SYMBOL, json!({"order_id": 1_u64 << 53})),
            (400, "invalid_id"),
        ),
        order(
            "a limit order without a price",
            alice_order(SYMBOL, json!({"price": null})),
            (400, "invalid_order"),
        ),
        order(
            "a market order that would rest",
            alice_order(SYMBOL, json!({"type": "market"})),
            (400, "invalid_order"),
        ),
        order(
            "zero quantity",
            alice_order(SYMBOL, json!({"quantity": 0})),
            (400, "zero_value"),
        ),
        order(
            "zero price",
            alice_order(SYMBOL, json!({"price": 0})),
            (400, "zero_value"),
        ),
        order(
            "bad account id",
            alice_order(SYMBOL, json!({"account_id": "é"})),
            INVALID_ID,
        ),
        order("bad symbol", alice_order("btc-usd", json!({})), INVALID_ID),
        order(
            "unknown market",
            alice_order("DOGE-USD", json!({})),
            (404, "unknown_market"),
        ),
        order(
            "off the tick",
            alice_order(COARSE, json!({"price": 101})),
            (422, "bad_tick"),
        ),
        order(
            "off the lot",
            alice_order(COARSE, json!({"quantity": 15, "price": 100})),
            (422, "bad_lot"),
        ),
        order(
            "below the minimum quantity",
            alice_order(COARSE, json!({"quantity": 10})),
            (422, "quantity_out_of_range"),
        ),
        order(
            "above the maximum quantity",
            alice_order(COARSE, json!({"quantity": 1_010})),
            (422, "quantity_out_of_range"),
        ),
        order(
            "a price past 2^63 - 1",
            alice_order(SYMBOL, json!({"price": 9_223_372_036_854_775_808_u64})),
            (422, "overflow"),
        ),
        order(
            "a notional over 64 bits",
            alice_order(SYMBOL, json!({"price": u64::MAX, "quantity": 2})),
            (422, "overflow"),
        ),
        order(
            "insufficient funds",
            alice_order(SYMBOL, json!({"quantity": 101})),
            (422, "insufficient_funds"),
        ),
        order(
            "a post-only order that would cross",
            alice_order(SYMBOL, json!({"post_only": true})),
            (422, "post_only_would_cross"),
        ),
        order(
            "a fill-or-kill order that cannot fill",
            alice_order(SYMBOL, json!({"quantity": 6, "time_in_force": "fok"})),
            (422, "fok_not_fillable"),
        ),
        order(
            "a taken order id with another body",
            json!({"order_id": BOB_ASK, "account_id": "bob", "symbol": SYMBOL, "side": "sell",
                "type": "limit", "price": 200, "quantity": 1}),
            (409, "saga_already_started"),
        ),
        // Lookups of what does not exist.
        get(
            "unknown account",
            "/v1/accounts/nobody",
            (404, "unknown_account"),
        ),
        get("bad account id", "/v1/accounts/no%2Fbody", INVALID_ID),
        get(
            "unknown market",
            "/v1/markets/DOGE-USD",
            (404, "unknown_market"),
        ),
        get(
            "book of an unknown market",
            "/v1/markets/DOGE-USD/book",
            (404, "unknown_market"),
        ),
        get(
            "trades of an unknown market",
            "/v1/markets/DOGE-USD/trades",
            (404, "unknown_market"),
        ),
        get(
            "candles of an unknown market",
            "/v1/markets/DOGE-USD/candles",
            (404, "unknown_market"),
        ),
        get(
            "book of a bad symbol",
            "/v1/markets/BTC_USD/book",
            INVALID_ID,
        ),
        get(
            "unknown order",
            "/v1/orders/123456789",
            (404, "order_not_found"),
        ),
        case(
            "cancel an unknown order",
            Method::DELETE,
            "/v1/orders/123456789",
            "",
            (404, "order_not_found"),
        ),
        // Path parameters of the wrong type.
        get("order id not a number", "/v1/orders/abc", INVALID_PATH),
        get("negative order id", "/v1/orders/-1", INVALID_PATH),
        get(
            "order id over u64",
            "/v1/orders/18446744073709551616",
            INVALID_PATH,
        ),
        case(
            "cancel order id not a number",
            Method::DELETE,
            "/v1/orders/1e3",
            "",
            INVALID_PATH,
        ),
        post(
            "shard not a number",
            "/v1/cluster/shards/first/move",
            r#"{"to": "n1"}"#,
            INVALID_PATH,
        ),
        // Bad query values.
        get("depth 0", &format!("{book}?depth=0"), INVALID_QUERY),
        get(
            "depth too deep",
            &format!("{book}?depth=1001"),
            INVALID_QUERY,
        ),
        get(
            "depth not a number",
            &format!("{book}?depth=ten"),
            INVALID_QUERY,
        ),
        get("depth negative", &format!("{book}?depth=-1"), INVALID_QUERY),
        get(
            "unknown query parameter",
            &format!("{book}?levels=3"),
            INVALID_QUERY,
        ),
        get(
            "trades limit 0",
            &format!("/v1/markets/{SYMBOL}/trades?limit=0"),
            INVALID_QUERY,
        ),
        get(
            "unknown interval",
            &format!("/v1/markets/{SYMBOL}/candles?interval=2m"),
            INVALID_QUERY,
        ),
        get(
            "history at a date",
            "/v1/accounts/alice/history?valid_at=yesterday",
            INVALID_QUERY,
        ),
        get(
            "history beyond i64",
            "/v1/accounts/alice/history?known_at=9223372036854775808",
            INVALID_QUERY,
        ),
        get(
            "actors depth not a number",
            "/v1/actors?depth=all",
            INVALID_QUERY,
        ),
        get("actors too deep", "/v1/actors?depth=65", INVALID_QUERY),
        post(
            "dry run not a boolean",
            "/v1/cluster/rebalance?dry_run=maybe",
            "",
            INVALID_QUERY,
        ),
        // Markets.
        post(
            "a market listed twice",
            "/v1/markets",
            &json!({"symbol": SYMBOL, "base": "BTC", "quote": "USD", "tick_size": 1,
                "lot_size": 1})
            .to_string(),
            (409, "market_already_listed"),
        ),
        post(
            "a market whose symbol is not its assets",
            "/v1/markets",
            r#"{"symbol": "SOL-USD", "base": "ETH", "quote": "USD", "tick_size": 1, "lot_size": 1}"#,
            (400, "invalid_market"),
        ),
        post(
            "a market with a zero tick",
            "/v1/markets",
            r#"{"symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tick_size": 0, "lot_size": 1}"#,
            (400, "invalid_market"),
        ),
        post(
            "halt an unknown market",
            "/v1/markets/DOGE-USD/halt",
            "",
            (404, "unknown_market"),
        ),
        post(
            "resume a running market",
            &format!("/v1/markets/{SYMBOL}/resume"),
            "{}",
            (422, "market_not_halted"),
        ),
        // The cluster.
        post(
            "move an unknown shard",
            "/v1/cluster/shards/999999/move",
            r#"{"to": "n1"}"#,
            (404, "unknown_shard"),
        ),
        post(
            "move to an unknown node",
            "/v1/cluster/shards/1/move",
            r#"{"to": "n9"}"#,
            (404, "unknown_node"),
        ),
        post(
            "an unknown node leaves",
            "/v1/cluster/members/n9/leave",
            "",
            (404, "unknown_node"),
        ),
        post(
            "the last member leaves",
            "/v1/cluster/members/n1/leave",
            "",
            (409, "last_member"),
        ),
        get(
            "actors of an unknown node",
            "/v1/actors?node=n9",
            (404, "unknown_node"),
        ),
        // Routes and methods.
        get("unknown route", "/v1/nothing", (404, "not_found")),
        get("the root", "/", (404, "not_found")),
        get(
            "a path traversal",
            "/v1/../../etc/passwd",
            (404, "not_found"),
        ),
        case(
            "PUT an order",
            Method::PUT,
            "/v1/orders",
            "{}",
            (405, "method_not_allowed"),
        ),
        get(
            "GET the market listing",
            "/v1/markets",
            (405, "method_not_allowed"),
        ),
        case(
            "DELETE an account",
            Method::DELETE,
            "/v1/accounts/alice",
            "",
            (405, "method_not_allowed"),
        ),
        case(
            "PATCH health",
            Method::PATCH,
            "/health/live",
            "",
            (405, "method_not_allowed"),
        ),
    ];
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        cases.push(Case {
            content_type,
            ..post(
                "not application/json",
                deposits,
                r#"{"asset": "USD", "amount": 1}"#,
                (415, "unsupported_media_type"),
            )
        });
    }
    cases
}

fn config() -> String {
    format!(
        "[http_limits]\nbody_bytes_max = {BODY_BYTES_MAX}\n\
         client_request_timeout_ms = {CLIENT_REQUEST_TIMEOUT_MS}\n"
    )
}

/// Alice has 10 000 USD, bob 10 BTC and an ask of 5 @ 100 (his own id [`BOB_ASK`]; the
/// venue's id is returned); a coarse market is listed.
async fn setup(http: &Http) -> u64 {
    list_market(http).await;
    let coarse = json!({"symbol": COARSE, "base": "ETH", "quote": "USD", "tick_size": 5,
        "lot_size": 10, "min_quantity": 20, "max_quantity": 1_000});
    let (status, body) = http.post("/v1/markets", &coarse).await;
    assert_eq!(status, 201, "{body}");
    let first = json!({"asset": "USD", "amount": 10_000, "command_id": "alice-usd-1"});
    let (status, body) = http.post("/v1/accounts/alice/deposits", &first).await;
    assert_eq!(status, 200, "{body}");
    deposit(http, "bob", "BTC", 10).await;
    let mut ask = limit_order("bob", "sell", 100, 5);
    ask["order_id"] = json!(BOB_ASK);
    let answer = place(http, &ask).await;
    assert_eq!(answer["client_order_id"], BOB_ASK, "{answer}");
    let venue_id = answer["order_id"].as_u64().expect("the venue's id");
    assert_ne!(
        venue_id, BOB_ASK,
        "the venue's id is not the client's: {answer}"
    );
    venue_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_error_and_changes_nothing() {
    let node = Node::start(NodeOptions::with_config(config())).await;
    let http = node.http(None);
    setup(&http).await;
    let before = snapshot(&http, &ACCOUNTS).await;
    let mut failures = Vec::new();
    for case in cases() {
        let reply = http
            .call_raw(
                case.method.clone(),
                &case.path,
                case.content_type,
                case.body,
            )
            .await;
        let content_type = reply.header("content-type").unwrap_or_default().to_owned();
        if (reply.status, reply.code()) != (case.status, case.code)
            || content_type != "application/json"
            || reply.body["error"]["message"]
                .as_str()
                .is_none_or(str::is_empty)
            || (reply.status == 405) != reply.header("allow").is_some()
        {
            failures.push(format!(
                "{} ({} {}): expected {} {}, got {} {content_type} {}",
                case.what, case.method, case.path, case.status, case.code, reply.status, reply.body
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    unchanged(&http, &ACCOUNTS, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_market_refuses_orders_and_serves_cancels() {
    let node = Node::start(NodeOptions::default()).await;
    let http = node.http(None);
    let bob_ask = setup(&http).await;
    let (status, body) = http
        .post(&format!("/v1/markets/{SYMBOL}/halt"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let before = snapshot(&http, &ACCOUNTS).await;
    let (status, body) = http
        .post("/v1/orders", &limit_order("alice", "buy", 100, 1))
        .await;
    assert_eq!(
        (status, tradefloor_tests::code(&body)),
        (422, "market_halted"),
        "{body}"
    );
    unchanged(&http, &ACCOUNTS, &before).await;
    let (status, body) = http.delete(&format!("/v1/orders/{bob_ask}")).await;
    assert_eq!(status, 202, "cancels are served while halted: {body}");
    let (status, body) = http
        .post(
            &format!("/v1/markets/{SYMBOL}/resume"),
            &json!({"reference_price": 100}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    place(&http, &limit_order("alice", "buy", 100, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_off_while_others_are_served() {
    let node = Node::start(NodeOptions::with_config(config())).await;
    let http = node.http(None);
    let address = node.url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect to the node");
    stalled
        .write_all(b"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .await
        .expect("send half a request head");
    // Meanwhile the node serves everyone else.
    for _ in 0..5 {
        let (status, _) = http.get("/health/live").await;
        assert_eq!(status, 200);
    }
    // The node answers 408 or closes the connection; it does not wait for ever (the bound
    // is generous: a loaded machine is slow, but the node's timeout is one second).
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut answer))
        .await
        .expect("the node cuts a stalled client off");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_err() || answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a stalled client gets 408 or a closed connection, got {read:?}: {answer:?}"
    );
    let (status, _) = http.get("/health/live").await;
    assert_eq!(status, 200, "the node still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_make_no_new_metric_series() {
    let node = Node::start(NodeOptions::with_config(config())).await;
    let http = node.http(None);
    let invented: Vec<String> = (0..20).map(|k| format!("INVENTED{k}")).collect();
    for name in &invented {
        let method = Method::from_bytes(name.as_bytes()).expect("a valid method token");
        let reply = http.call(method, "/v1/orders", None).await;
        assert_eq!(reply.status, 405, "{name}: {}", reply.body);
    }
    let metrics = reqwest::get(format!("{}/metrics", node.url))
        .await
        .expect("the node answers")
        .text()
        .await
        .expect("a text body");
    assert!(
        metrics.contains("method=\"other\""),
        "invented methods are counted as other"
    );
    for name in &invented {
        assert!(
            !metrics.contains(name.as_str()),
            "{name} became a label value"
        );
    }
}
