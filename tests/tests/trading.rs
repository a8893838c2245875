//! Trading through HTTP end to end, on the embedded SQLite journal and on PostgreSQL: a
//! market, deposits (idempotent by command id), crossing orders and partial fills, a cancel,
//! the market data read models, withdrawals, bitemporal history; then the node is stopped
//! (SIGTERM) and restarted, and killed (SIGKILL) and restarted, and must show the same
//! balances, orders and book.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tradefloor_tests::{
    Http, Node, NodeOptions, PROJECTION_TIMEOUT, SYMBOL, account, book, deposit, eventually,
    limit_order, list_market, place, postgres_database, snapshot, totals,
};

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
/// An hour, in microseconds (history times are µs since the epoch).
const HOUR_MICROS: i64 = 3_600_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trading_on_sqlite_survives_stop_and_kill() {
    trade_and_recover(NodeOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trading_on_postgres_survives_stop_and_kill() {
    let Some(url) = postgres_database("trading").await else {
        return;
    };
    trade_and_recover(NodeOptions::with_journal(&url)).await;
}

async fn trade_and_recover(options: NodeOptions) {
    let mut node = Node::start(options).await;
    let http = node.http(None);
    list_market(&http).await;
    deposits_are_idempotent(&http).await;
    let order_ids = trade(&http).await;
    market_data_follows_the_trades(&http).await;
    withdraw(&http).await;
    history_is_bitemporal(&http).await;
    check_conservation(&http).await;

    let before = state_with_orders(&http, &order_ids).await;
    assert_eq!(node.stop().await, Some(0), "a clean exit on SIGTERM");
    node.restart().await;
    let http = node.http(None);
    assert_eq!(state_with_orders(&http, &order_ids).await, before);

    node.kill().await;
    node.restart().await;
    let http = node.http(None);
    assert_eq!(state_with_orders(&http, &order_ids).await, before);
    check_conservation(&http).await;

    // The recovered node still trades: carol lifts bob's last ask.
    let bob_usd = account(&http, "bob").await["balances"]["USD"]["total"]
        .as_u64()
        .expect("bob has USD");
    let lift = place(&http, &limit_order("carol", "buy", 101, 3)).await;
    assert_eq!(lift["status"], "filled", "{lift}");
    // The placement is answered once the book traded; each side settles on its own account
    // right after (CI once checked in between): conservation holds once bob has his 303 USD.
    settled(&http, "bob", "USD", bob_usd + 303).await;
    settled(&http, "carol", "BTC", 3).await;
    check_conservation(&http).await;
    assert_eq!(node.stop().await, Some(0));
}

/// A deposit repeated with its `command_id` repeats its first reply and credits once.
async fn deposits_are_idempotent(http: &Http) {
    let first_body = json!({"asset": "USD", "amount": 100_000, "command_id": "alice-usd-1"});
    let (status, first) = http.post("/v1/accounts/alice/deposits", &first_body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["account_id"], "alice");
    assert_eq!(
        first["balances"]["USD"],
        json!({"total": 100_000, "held": 0, "available": 100_000})
    );
    deposit(http, "alice", "USD", 5_000).await;
    let (status, repeat) = http.post("/v1/accounts/alice/deposits", &first_body).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(
        repeat, first,
        "a repeated command id repeats the first reply"
    );
    let alice = account(http, "alice").await;
    assert_eq!(alice["balances"]["USD"]["total"], 105_000, "credited once");

    let bob = deposit(http, "bob", "BTC", 50).await;
    assert_eq!(bob["balances"]["BTC"]["available"], 50);
    deposit(http, "carol", "USD", 10_000).await;
}

/// Bob offers 10 @ 100 and 5 @ 101; alice takes 4, then 8 across both levels; alice rests a
/// bid and cancels it, and rests another. Answers every order's id.
async fn trade(http: &Http) -> Vec<u64> {
    let ask_100 = place(http, &limit_order("bob", "sell", 100, 10)).await;
    assert_eq!(ask_100["status"], "open", "{ask_100}");
    assert_eq!(ask_100["filled_quantity"], 0);
    let ask_101 = place(http, &limit_order("bob", "sell", 101, 5)).await;
    assert_eq!(ask_101["status"], "open", "{ask_101}");

    let take_4 = place(http, &limit_order("alice", "buy", 100, 4)).await;
    assert_eq!(take_4["status"], "filled", "{take_4}");
    assert_eq!(take_4["filled_quantity"], 4);
    assert_eq!(fills(&take_4), vec![(100, 4)]);
    let maker = order_when(http, &ask_100, "partially_filled").await;
    assert_eq!(maker["filled_quantity"], 4);

    let take_8 = place(http, &limit_order("alice", "buy", 101, 8)).await;
    assert_eq!(take_8["status"], "filled", "{take_8}");
    assert_eq!(
        fills(&take_8),
        vec![(100, 6), (101, 2)],
        "price-time priority"
    );
    order_when(http, &ask_100, "filled").await;
    let rest = order_when(http, &ask_101, "partially_filled").await;
    assert_eq!(rest["filled_quantity"], 2);

    let bid_95 = place(http, &limit_order("alice", "buy", 95, 3)).await;
    assert_eq!(bid_95["status"], "open", "{bid_95}");
    let path = format!("/v1/orders/{}", bid_95["order_id"]);
    let (status, cancel) = http.delete(&path).await;
    assert_eq!(status, 202, "{cancel}");
    let cancelled = order_when(http, &bid_95, "cancelled").await;
    assert_eq!(cancelled["filled_quantity"], 0);
    let bid_99 = place(http, &limit_order("alice", "buy", 99, 2)).await;
    assert_eq!(bid_99["status"], "open", "{bid_99}");

    let book = book(http).await;
    assert_eq!(book["symbol"], SYMBOL);
    assert_eq!(
        book["asks"],
        json!([{"price": 101, "quantity": 3, "orders": 1}])
    );
    assert_eq!(
        book["bids"],
        json!([{"price": 99, "quantity": 2, "orders": 1}])
    );

    // Every fill settles on both sides: 12 BTC for 4·100 + 6·100 + 2·101 = 1 202 USD.
    let alice = settled(http, "alice", "BTC", 12).await;
    assert_eq!(
        alice["balances"]["USD"],
        json!({"total": 105_000 - 1_202, "held": 2 * 99, "available": 105_000 - 1_202 - 198})
    );
    let open: Vec<&Value> = alice["open_orders"].as_array().unwrap().iter().collect();
    assert_eq!(open.len(), 1, "only the bid at 99 is open: {alice}");
    assert_eq!(open[0]["order_id"], bid_99["order_id"]);
    let bob = settled(http, "bob", "USD", 1_202).await;
    assert_eq!(
        bob["balances"]["BTC"],
        json!({"total": 38, "held": 3, "available": 35})
    );
    [ask_100, ask_101, take_4, take_8, bid_95, bid_99]
        .iter()
        .map(|order| order["order_id"].as_u64().expect("an order id"))
        .collect()
}

/// The trade tape and the candles (read models that trail) show the three trades.
async fn market_data_follows_the_trades(http: &Http) {
    let trades = eventually(
        "the trade tape has 3 trades",
        PROJECTION_TIMEOUT,
        || async {
            let (status, body) = http.get(&format!("/v1/markets/{SYMBOL}/trades")).await;
            assert_eq!(status, 200, "{body}");
            let trades = body["trades"].as_array().cloned().unwrap_or_default();
            (trades.len() == 3).then_some(trades)
        },
    )
    .await;
    let tape: Vec<(u64, u64)> = trades
        .iter()
        .map(|trade| {
            (
                trade["price"].as_u64().unwrap(),
                trade["quantity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tape, vec![(101, 2), (100, 6), (100, 4)], "newest first");
    assert!(trades.iter().all(|trade| trade["taker_side"] == "buy"));
    let (status, limited) = http
        .get(&format!("/v1/markets/{SYMBOL}/trades?limit=1"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(limited["trades"].as_array().map(Vec::len), Some(1));

    for interval in ["1s", "1m", "1h"] {
        let path = format!("/v1/markets/{SYMBOL}/candles?interval={interval}");
        let candles = eventually("candles count 3 trades", PROJECTION_TIMEOUT, || async {
            let (status, body) = http.get(&path).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["interval"], interval);
            let candles = body["candles"].as_array().cloned().unwrap_or_default();
            let trades: u64 = candles.iter().map(|c| c["trades"].as_u64().unwrap()).sum();
            (trades == 3).then_some(candles)
        })
        .await;
        let sum = |field: &str| -> u64 { candles.iter().map(|c| c[field].as_u64().unwrap()).sum() };
        assert_eq!(sum("volume"), 12, "{candles:?}");
        assert_eq!(sum("notional"), 1_202, "{candles:?}");
        let high = candles.iter().map(|c| c["high"].as_u64().unwrap()).max();
        let low = candles.iter().map(|c| c["low"].as_u64().unwrap()).min();
        assert_eq!((high, low), (Some(101), Some(100)));
    }
}

/// Withdrawals debit what is available; more than that is refused and changes nothing.
async fn withdraw(http: &Http) {
    let body = json!({"asset": "USD", "amount": 1_000, "command_id": "bob-out-1"});
    let (status, reply) = http.post("/v1/accounts/bob/withdrawals", &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["balances"]["USD"]["total"], 202);
    let (status, repeat) = http.post("/v1/accounts/bob/withdrawals", &body).await;
    assert_eq!((status, &repeat), (200, &reply), "idempotent withdrawal");
    // Bob holds 3 of his 38 BTC for his ask: 36 are not available.
    let too_much = json!({"asset": "BTC", "amount": 36});
    let (status, refused) = http.post("/v1/accounts/bob/withdrawals", &too_much).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(tradefloor_tests::code(&refused), "insufficient_funds");
    let bob = account(http, "bob").await;
    assert_eq!(bob["balances"]["BTC"]["total"], 38, "nothing withdrawn");
}

/// A backdated correction shows at its valid time only when asked as known after it.
async fn history_is_bitemporal(http: &Http) {
    let history = |query: String| async move {
        let (status, body) = http
            .get(&format!("/v1/accounts/carol/history{query}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    };
    let now = history(String::new()).await;
    assert_eq!(now["balances"]["USD"], json!({"total": 10_000, "held": 0}));
    let before_correction = now["known_at"].as_i64().expect("known_at");
    let deposited_at = now["events"][0]["recorded_at"].as_i64().expect("an event");
    assert!(deposited_at <= before_correction, "{now}");
    let correction_at = deposited_at - HOUR_MICROS;
    let correction = json!({"asset": "USD", "amount": 50, "effective_at": correction_at});
    let (status, reply) = http.post("/v1/accounts/carol/deposits", &correction).await;
    assert_eq!(status, 200, "{reply}");

    let usd = |body: &Value| body["balances"]["USD"]["total"].as_i64().unwrap_or(0);
    let between = correction_at + HOUR_MICROS / 2;
    let cases = [
        // (valid_at, known_at, USD total)
        (correction_at - HOUR_MICROS, None, 0),
        (between, None, 50),
        (between, Some(before_correction), 0),
        (before_correction, Some(before_correction), 10_000),
        (before_correction, None, 10_050),
    ];
    for (valid_at, known_at, expected) in cases {
        let mut query = format!("?valid_at={valid_at}");
        if let Some(known_at) = known_at {
            query.push_str(&format!("&known_at={known_at}"));
        }
        let body = history(query.clone()).await;
        assert_eq!(body["valid_at"], valid_at);
        assert_eq!(usd(&body), expected, "history{query}: {body}");
    }
    let latest = history(String::new()).await;
    assert_eq!(latest["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(latest["next_after"], Value::Null);
    // Paged: one event a page, in the same order, the second page the last.
    let first = history("?limit=1".to_owned()).await;
    assert_eq!(first["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["events"][0], latest["events"][0]);
    assert_eq!(first["next_after"], 1);
    let second = history("?limit=1&after=1".to_owned()).await;
    assert_eq!(second["events"][0], latest["events"][1]);
    assert_eq!(second["next_after"], Value::Null);
    assert_eq!(
        second["balances"], latest["balances"],
        "a page does not change the view"
    );
    for bad in ["?limit=0", "?limit=1001", "?after=-1"] {
        let (status, body) = http.get(&format!("/v1/accounts/carol/history{bad}")).await;
        assert_eq!(status, 400, "history{bad}: {body}");
    }
    assert_eq!(
        account(http, "carol").await["balances"]["USD"]["total"],
        10_050
    );
}

/// For every asset, Σ totals = deposits − withdrawals.
async fn check_conservation(http: &Http) {
    let expected = BTreeMap::from([
        ("BTC".to_owned(), 50),
        ("USD".to_owned(), 105_000 + 10_050 - 1_000),
    ]);
    assert_eq!(totals(http, &ACCOUNTS).await, expected);
}

/// The accounts, the book and every order.
async fn state_with_orders(http: &Http, order_ids: &[u64]) -> Value {
    let mut state = snapshot(http, &ACCOUNTS).await;
    for order_id in order_ids {
        let (status, order) = http.get(&format!("/v1/orders/{order_id}")).await;
        assert_eq!(status, 200, "{order}");
        state[order_id.to_string()] = order;
    }
    state
}

/// The order's `(price, quantity)` fills.
fn fills(order: &Value) -> Vec<(u64, u64)> {
    order["fills"]
        .as_array()
        .expect("fills")
        .iter()
        .map(|fill| {
            (
                fill["price"].as_u64().unwrap(),
                fill["quantity"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `GET` of `order` once it has `status` (a maker learns its fills from the book's feed).
async fn order_when(http: &Http, order: &Value, status: &str) -> Value {
    let path = format!("/v1/orders/{}", order["order_id"]);
    eventually(
        &format!("{path} is {status}"),
        PROJECTION_TIMEOUT,
        || async {
            let (code, body) = http.get(&path).await;
            assert_eq!(code, 200, "{body}");
            (body["status"] == status).then_some(body)
        },
    )
    .await
}

/// The account once its `asset` total is `total` (fills settle after the book matched).
async fn settled(http: &Http, name: &str, asset: &str, total: u64) -> Value {
    eventually(
        &format!("{name} has {total} {asset}"),
        PROJECTION_TIMEOUT,
        || async {
            let body = account(http, name).await;
            (body["balances"][asset]["total"] == total).then_some(body)
        },
    )
    .await
}
