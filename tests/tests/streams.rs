//! Live streams against a real node: SSE per market and per account, resumed after a
//! reconnect without gaps or duplicates; a WebSocket following several channels; a client
//! that stops reading is disconnected with the reason; a trader streams only its own
//! accounts.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tradefloor_tests::sse::{MESSAGE_TIMEOUT, Sse};
use tradefloor_tests::{
    Node, NodeOptions, PROJECTION_TIMEOUT, deposit, eventually, limit_order, list_market, place,
};

const ADMIN_TOKEN: &str = "admin-secret-token-7f3a9c2e51";
const TRADER_TOKEN: &str = "alice-trader-token-b84d06e1f7";

fn config(extra: &str) -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_deliver_trades_fills_and_balances_and_resume_exactly() {
    let mut node = Node::start(NodeOptions::with_config(config(""))).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let trader = node.http(Some(TRADER_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "bob", "BTC", 100).await;
    deposit(&admin, "alice", "USD", 1_000_000).await;

    let market_path = "/v1/markets/BTC-USD/stream";
    let mut market = Sse::open(&node.url, market_path, Some(ADMIN_TOKEN), None)
        .await
        .unwrap();
    let mut alice = Sse::open(
        &node.url,
        "/v1/accounts/alice/stream",
        Some(TRADER_TOKEN),
        None,
    )
    .await
    .unwrap();
    let top = market.next().await.unwrap();
    assert_eq!((top.event.as_str(), top.id), ("top", None), "{top:?}");
    let snapshot = alice.next().await.unwrap();
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["balances"]["USD"]["total"], 1_000_000);

    place(&admin, &limit_order("bob", "sell", 100, 50)).await;
    let taker = place(&trader, &limit_order("alice", "buy", 100, 2)).await;
    assert_eq!(taker["status"], "filled", "{taker}");
    // The trade is on both streams before the next command is even sent.
    let trade = market.next_named("trade").await;
    assert_eq!(trade.data["trade_id"], 1);
    assert_eq!(
        (trade.data["price"].clone(), trade.data["quantity"].clone()),
        (json!(100), json!(2))
    );
    assert_eq!(trade.data["taker_order_id"], taker["order_id"]);
    let mut seen = Vec::new();
    let fill = loop {
        let event = alice.next().await.expect("the account stream goes on");
        if event.event == "fill" {
            break event;
        }
        seen.push((
            event.event.clone(),
            event.data["status"].clone(),
            event.data["cause"].clone(),
        ));
    };
    assert_eq!(fill.data["liquidity"], "taker");
    assert_eq!(fill.data["order_id"], taker["order_id"]);
    assert!(
        seen.contains(&("balance".into(), Value::Null, json!("hold_placed")))
            && seen.contains(&("order".into(), json!("accepted"), Value::Null)),
        "the hold and the book's acceptance come before the fill: {seen:?}"
    );
    let settled = alice.next_named("balance").await;
    assert_eq!(settled.data["cause"], "trade_settled", "{settled:?}");
    assert!(settled.id > fill.id, "ids grow with the log");

    // Disconnect, trade three times, reconnect after the last id seen: exactly those three.
    let last = trade.id.expect("a trade has an id");
    drop(market);
    for _ in 0..3 {
        place(&trader, &limit_order("alice", "buy", 100, 1)).await;
    }
    let mut market = Sse::open(
        &node.url,
        market_path,
        Some(ADMIN_TOKEN),
        Some(&last.to_string()),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for expected in 2..=4 {
        let trade = market.next_named("trade").await;
        assert_eq!(
            trade.data["trade_id"], expected,
            "no gap, no duplicate: {trade:?}"
        );
        ids.push(trade.id.unwrap());
    }
    place(&trader, &limit_order("alice", "buy", 100, 1)).await;
    let live = market.next_named("trade").await;
    assert_eq!(
        live.data["trade_id"], 5,
        "live after the missed ones, none twice"
    );
    ids.push(live.id.unwrap());
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    // What a client may not do, and bad input: clear errors, nothing opened.
    let refusals = [
        (
            "/v1/accounts/bob/stream",
            Some(TRADER_TOKEN),
            None,
            403,
            "forbidden",
        ),
        ("/v1/accounts/alice/stream", None, None, 401, "unauthorized"),
        (
            "/v1/markets/ETH-USD/stream",
            Some(ADMIN_TOKEN),
            None,
            404,
            "unknown_market",
        ),
        (
            market_path,
            Some(ADMIN_TOKEN),
            Some("yesterday"),
            400,
            "invalid_header",
        ),
        (
            "/v1/markets/BTC-USD/stream?after=-1",
            Some(ADMIN_TOKEN),
            None,
            400,
            "invalid_query",
        ),
    ];
    for (path, token, last_id, status, code) in refusals {
        let error = Sse::open(&node.url, path, token, last_id).await.err();
        let (got, body) = error.unwrap_or_else(|| panic!("{path} must be refused"));
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    assert_eq!(node.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_further_back_than_the_bound_is_gone() {
    let config = config("[trading]\nstream_resume_events_max = 5\n");
    let mut node = Node::start(NodeOptions::with_config(config)).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    for account in ["a", "b", "c", "d", "e", "f"] {
        deposit(&admin, account, "USD", 10).await;
    }
    let path = "/v1/accounts/a/stream";
    let (status, body) = Sse::open(&node.url, path, Some(ADMIN_TOKEN), Some("4"))
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("resume_too_old")),
        "{body}"
    );
    // Without an id the stream opens (live from now).
    assert!(
        Sse::open(&node.url, path, Some(ADMIN_TOKEN), None)
            .await
            .is_ok()
    );
    assert_eq!(node.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_with_the_reason() {
    let config = config(
        "[http_limits]\nstream_buffer_messages = 4\n\n[trading]\nstream_topic_buffer_messages = 16\n",
    );
    let mut node = Node::start(NodeOptions::with_config(config)).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "bob", "BTC", 1_000).await;
    deposit(&admin, "alice", "USD", 1_000_000).await;
    place(&admin, &limit_order("bob", "sell", 100, 1_000)).await;

    // A client with a tiny receive window that sends its request and reads nothing.
    let address: std::net::SocketAddr = node.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /v1/markets/BTC-USD/stream HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let rss_before = node.rss_kib();
    subscriptions_shown(&admin, 1).await;
    // Each order trades: a trade, a top of book and candles for the stream, far more than
    // the connection's buffer and the sockets hold.
    let order = limit_order("alice", "buy", 100, 1);
    for _ in 0..60 {
        let orders = (0..8).map(|_| place(&admin, &order));
        futures_util::future::join_all(orders).await;
    }
    // Now read: what was buffered, then the reason, then the end of the response.
    let mut received = Vec::new();
    let read = tokio::time::timeout(MESSAGE_TIMEOUT, async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let read = stream.read(&mut chunk).await.unwrap();
            received.extend_from_slice(&chunk[..read]);
            if read == 0 || received.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        read.is_ok(),
        "the response ended: {} bytes read",
        received.len()
    );
    assert!(
        text.contains("event: error") && text.contains("slow_consumer"),
        "{text}"
    );
    assert!(
        node.rss_kib() < rss_before + 64 * 1024,
        "memory stayed bounded"
    );
    let (status, _) = admin.get("/health/ready").await;
    assert_eq!(status, 200, "the node serves on");
    // The node counted the slow client and let its subscription go.
    subscriptions_shown(&admin, 0).await;
    let (_, metrics) = admin.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("tradefloor_stream_slow_consumers_total 1"),
        "{metrics}"
    );
    assert_eq!(node.stop().await, Some(0));
}

/// Waits until the node's metrics show `count` stream subscriptions open.
async fn subscriptions_shown(http: &tradefloor_tests::Http, count: usize) {
    let line = format!("tradefloor_stream_subscriptions {count}\n");
    eventually(&line, PROJECTION_TIMEOUT, || async {
        let (_, metrics) = http.get("/metrics").await;
        metrics
            .as_str()
            .is_some_and(|text| text.contains(&line))
            .then_some(())
    })
    .await;
}

/// A WebSocket client: sends JSON, reads JSON text messages.
struct Ws {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    async fn connect(url: &str, token: &str) -> Ws {
        let mut request = format!("{}/v1/ws", url.replacen("http", "ws", 1))
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade succeeds");
        assert_eq!(response.status().as_u16(), 101);
        Ws { socket }
    }

    async fn send(&mut self, request: Value) {
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON message (pings are answered by the client library).
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(MESSAGE_TIMEOUT, self.socket.next())
                .await
                .expect("a message within the timeout")
                .expect("the socket is open")
                .expect("a frame");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// The next message of `channel` named `event`, skipping others.
    async fn next_event(&mut self, channel: &str, event: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["channel"] == channel && message["event"] == event {
                return message;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_follows_channels_and_resumes() {
    let mut node = Node::start(NodeOptions::with_config(config(""))).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let trader = node.http(Some(TRADER_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "bob", "BTC", 100).await;
    deposit(&admin, "alice", "USD", 1_000_000).await;

    let mut ws = Ws::connect(&node.url, TRADER_TOKEN).await;
    ws.send(json!({"op": "subscribe", "channel": "market:BTC-USD"}))
        .await;
    assert_eq!(
        ws.next().await,
        json!({"type": "subscribed", "channel": "market:BTC-USD"})
    );
    let top = ws.next().await;
    assert_eq!(
        (top["event"].as_str(), &top["id"]),
        (Some("top"), &Value::Null),
        "{top}"
    );
    ws.send(json!({"op": "subscribe", "channel": "account:alice"}))
        .await;
    assert_eq!(ws.next().await["type"], "subscribed");
    assert_eq!(ws.next().await["event"], "snapshot");
    // Refused: another account, a channel that does not exist, a message that is not one.
    ws.send(json!({"op": "subscribe", "channel": "account:bob"}))
        .await;
    let refused = ws.next().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    ws.send(json!({"op": "subscribe", "channel": "weather:today"}))
        .await;
    assert_eq!(ws.next().await["code"], "invalid_channel");
    ws.send(json!({"op": "dance"})).await;
    assert_eq!(ws.next().await["code"], "invalid_message");
    ws.send(json!({"op": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"}));

    place(&admin, &limit_order("bob", "sell", 100, 50)).await;
    place(&trader, &limit_order("alice", "buy", 100, 3)).await;
    let trade = ws.next_event("market:BTC-USD", "trade").await;
    assert_eq!(trade["data"]["quantity"], 3);
    let fill = ws.next_event("account:alice", "fill").await;
    assert_eq!(fill["data"]["trade_id"], trade["data"]["trade_id"]);

    // Unsubscribed: no more market messages; subscribed again after an id: from there.
    ws.send(json!({"op": "unsubscribe", "channel": "market:BTC-USD"}))
        .await;
    let unsubscribed = loop {
        let message = ws.next().await;
        if message["type"] == "unsubscribed" {
            break message;
        }
    };
    assert_eq!(unsubscribed["channel"], "market:BTC-USD");
    let before = trade["id"].as_u64().unwrap() - 1;
    ws.send(json!({"op": "subscribe", "channel": "market:BTC-USD", "after": before}))
        .await;
    let again = ws.next_event("market:BTC-USD", "trade").await;
    assert_eq!(
        again["id"], trade["id"],
        "resumed at the trade after the id given"
    );
    assert_eq!(node.stop().await, Some(0));
}

/// `tradefloor ctl --json watch <args>` as admin: the JSON lines it printed.
async fn watch(node: &Node, args: &[&str]) -> Vec<Value> {
    let run = tokio::process::Command::new(tradefloor_tests::binary())
        .args(["ctl", "--json", "watch"])
        .args(args)
        .env("TRADEFLOOR_NODE", &node.url)
        .env("TRADEFLOOR_TOKEN", ADMIN_TOKEN)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(MESSAGE_TIMEOUT, run)
        .await
        .expect("watch stops after its count")
        .expect("the binary runs");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_watch_prints_a_market_or_an_account_from_an_id() {
    let mut node = Node::start(NodeOptions::with_config(config(""))).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "bob", "BTC", 100).await;
    deposit(&admin, "alice", "USD", 1_000_000).await;
    place(&admin, &limit_order("bob", "sell", 100, 50)).await;
    for quantity in [1, 2] {
        place(&admin, &limit_order("alice", "buy", 100, quantity)).await;
    }
    // A market by its name: from the log's start, its snapshot then both trades.
    let lines = watch(&node, &["BTC-USD", "--after", "0", "--count", "2"]).await;
    let trades: Vec<&Value> = lines
        .iter()
        .filter(|line| line["event"] == "trade")
        .collect();
    assert_eq!(trades.len(), 2, "{lines:?}");
    assert_eq!(
        (
            trades[0]["data"]["quantity"].as_u64(),
            trades[1]["data"]["quantity"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(lines[0]["event"], "top", "the snapshot first");
    // An account, resumed after the first trade: the messages after it, from the second
    // order on (its hold first).
    let after = trades[0]["id"].as_u64().unwrap().to_string();
    let lines = watch(&node, &["alice", "--after", &after, "--count", "3"]).await;
    let with_ids: Vec<&Value> = lines.iter().filter(|line| !line["id"].is_null()).collect();
    assert_eq!(with_ids.len(), 3, "{lines:?}");
    assert!(
        with_ids
            .iter()
            .all(|line| line["id"].as_u64().unwrap() > trades[0]["id"].as_u64().unwrap())
    );
    assert_eq!(lines[0]["event"], "snapshot");
    // A refusal ends the command with the node's error.
    let output = tokio::process::Command::new(tradefloor_tests::binary())
        .args(["ctl", "watch", "market:ETH-USD"])
        .env("TRADEFLOOR_NODE", &node.url)
        .env("TRADEFLOOR_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown_market"));
    assert_eq!(node.stop().await, Some(0));
}
