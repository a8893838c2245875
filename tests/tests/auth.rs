//! Bearer tokens and roles (DESIGN §5): no or a wrong token is 401 with `WWW-Authenticate`; the
//! funding system credits any account and trades nothing; a
//! trader acts on its own accounts only and never on admin routes (403), health and metrics
//! are open; without tokens a node refuses a non-loopback address; no token reaches the logs.

use serde_json::{Value, json};
use tradefloor_tests::{
    Http, Method, Node, NodeOptions, PROJECTION_TIMEOUT, Reply, SYMBOL, deposit, eventually,
    limit_order, list_market, place, snapshot, start_refused, unchanged,
};

const ADMIN_TOKEN: &str = "admin-secret-token-7f3a9c2e51";
const TRADER_TOKEN: &str = "alice-trader-token-b84d06e1f7";
const WRONG_TOKEN: &str = "alice-trader-token-b84d06e1f8";
const FUNDING_TOKEN: &str = "funding-system-token-5c9e27a0d3";

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [[tokens]]\ntoken = \"{FUNDING_TOKEN}\"\nrole = \"funding\"\n"
    )
}

/// Sends `method path` with an optional JSON body.
async fn send(http: &Http, method: Method, path: &str, body: Option<Value>) -> Reply {
    http.call(method, path, body.as_ref()).await
}

/// Sends each request as `who` and checks its status.
async fn expect_statuses(http: &Http, who: &str, cases: Vec<(Method, &str, Option<Value>, u16)>) {
    for (method, path, body, status) in cases {
        let reply = send(http, method.clone(), path, body).await;
        assert_eq!(
            reply.status, status,
            "{who} {method} {path}: {}",
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_and_roles_authorize() {
    let options = NodeOptions {
        capture_logs: true,
        // Everything the node logs, so a token in any log line would show.
        env: vec![("TRADEFLOOR_LOG_FILTER".to_owned(), "debug".to_owned())],
        ..NodeOptions::with_config(config())
    };
    let mut node = Node::start(options).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let trader = node.http(Some(TRADER_TOKEN));
    let funding = node.http(Some(FUNDING_TOKEN));
    let anonymous = node.http(None);
    let impostor = node.http(Some(WRONG_TOKEN));

    list_market(&admin).await;
    deposit(&admin, "bob", "BTC", 10).await;
    let bob_ask = place(&admin, &limit_order("bob", "sell", 100, 5)).await;
    let bob_order = format!("/v1/orders/{}", bob_ask["order_id"]);

    // No token, or a wrong one (one character off, or a bare prefix): 401 with a challenge.
    for (client, what) in [(&anonymous, "no token"), (&impostor, "a wrong token")] {
        for path in [
            "/v1/accounts/alice",
            "/v1/cluster/members",
            bob_order.as_str(),
        ] {
            let reply = send(client, Method::GET, path, None).await;
            assert_eq!(
                (reply.status, reply.code()),
                (401, "unauthorized"),
                "{what} on {path}"
            );
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "{what} on {path}"
            );
        }
    }
    let reply = Http::new(&node.url, Some(&ADMIN_TOKEN[..12]))
        .call(Method::GET, "/v1/cluster/members", None)
        .await;
    assert_eq!(reply.status, 401, "a prefix of a token is no token");

    // The funding system credits and reads any account, and trades nothing.
    let transfer = json!({"asset": "USD", "amount": 1_000});
    let funded: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (
            Method::POST,
            "/v1/accounts/alice/deposits",
            Some(transfer.clone()),
            200,
        ),
        (
            Method::POST,
            "/v1/accounts/bob/withdrawals",
            Some(json!({"asset": "BTC", "amount": 1})),
            200,
        ),
        (Method::GET, "/v1/accounts/bob", None, 200),
        (Method::GET, "/v1/accounts/bob/history", None, 200),
        (
            Method::POST,
            "/v1/orders",
            Some(limit_order("alice", "buy", 90, 1)),
            403,
        ),
        (Method::DELETE, &bob_order, None, 404),
        (Method::GET, "/v1/cluster/members", None, 403),
        (Method::POST, "/v1/markets/BTC-USD/halt", None, 403),
    ];
    expect_statuses(&funding, "funding", funded).await;

    // The trader on its own account: everything but a deposit.
    let own: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (
            Method::POST,
            "/v1/accounts/alice/deposits",
            Some(transfer.clone()),
            403,
        ),
        (
            Method::POST,
            "/v1/accounts/alice/withdrawals",
            Some(json!({"asset": "USD", "amount": 1})),
            200,
        ),
        (Method::GET, "/v1/accounts/alice", None, 200),
        (Method::GET, "/v1/accounts/alice/history", None, 200),
        (Method::GET, &bob_order, None, 404),
        (Method::GET, "/v1/markets/BTC-USD", None, 200),
        (Method::GET, "/v1/markets/BTC-USD/book", None, 200),
        (Method::GET, "/v1/markets/BTC-USD/trades", None, 200),
        (Method::GET, "/v1/markets/BTC-USD/candles", None, 200),
    ];
    expect_statuses(&trader, "trader", own).await;
    let alice_bid = place(&trader, &limit_order("alice", "buy", 90, 1)).await;
    let alice_order = format!("/v1/orders/{}", alice_bid["order_id"]);
    assert_eq!(
        send(&trader, Method::GET, &alice_order, None).await.status,
        200
    );

    // Order ids a client chooses are its account's own: bob's 5 and alice's 5 are two
    // orders, neither can take the other's, and each is found by its account's id.
    let mut bob_five = limit_order("bob", "sell", 100, 1);
    bob_five["order_id"] = json!(5);
    let bob_five = place(&admin, &bob_five).await;
    let mut alice_five = limit_order("alice", "buy", 90, 1);
    alice_five["order_id"] = json!(5);
    let alice_five = place(&trader, &alice_five).await;
    assert_eq!(alice_five["client_order_id"], 5, "{alice_five}");
    assert_eq!(alice_five["account_id"], "alice", "{alice_five}");
    assert_ne!(alice_five["order_id"], bob_five["order_id"], "{alice_five}");
    let (status, found) = trader.get("/v1/accounts/alice/orders/5").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["order_id"], alice_five["order_id"], "{found}");
    assert_eq!(found["client_order_id"], 5, "{found}");
    let reply = send(&trader, Method::GET, "/v1/accounts/bob/orders/5", None).await;
    assert_eq!(
        reply.status, 403,
        "bob's ids are not the trader's to ask: {}",
        reply.body
    );
    let (status, absent) = trader.get("/v1/accounts/alice/orders/6").await;
    assert_eq!(
        (status, tradefloor_tests::code(&absent)),
        (404, "order_not_found")
    );
    let cancel = format!("/v1/orders/{}", alice_five["order_id"]);
    assert_eq!(
        send(&trader, Method::DELETE, &cancel, None).await.status,
        202
    );
    // The cancel completes after its answer: wait for the hold to go, before the snapshots.
    eventually(
        "alice's order 5 cancelled, its hold released",
        PROJECTION_TIMEOUT,
        || async {
            let account = trader.get("/v1/accounts/alice").await.1;
            (account["balances"]["USD"]["held"] == 90).then_some(())
        },
    )
    .await;

    // The trader on bob's account and orders, and on admin routes: 403, and nothing changes.
    let before = snapshot(&admin, &["alice", "bob"]).await;
    let bob_bid = json!({"account_id": "bob", "symbol": SYMBOL, "side": "buy", "type": "limit",
        "price": 90, "quantity": 1});
    let forbidden: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/accounts/bob/deposits",
            Some(transfer.clone()),
        ),
        (
            Method::POST,
            "/v1/accounts/bob/withdrawals",
            Some(json!({"asset": "BTC", "amount": 1})),
        ),
        (Method::GET, "/v1/accounts/bob", None),
        (Method::GET, "/v1/accounts/bob/history", None),
        (Method::POST, "/v1/orders", Some(bob_bid)),
        (
            Method::POST,
            "/v1/markets",
            Some(json!({"symbol": "ETH-USD", "base": "ETH",
            "quote": "USD", "tick_size": 1, "lot_size": 1})),
        ),
        (Method::POST, "/v1/markets/BTC-USD/halt", None),
        (Method::POST, "/v1/markets/BTC-USD/resume", Some(json!({}))),
        (Method::GET, "/v1/cluster/members", None),
        (Method::GET, "/v1/cluster/shards", None),
        (Method::POST, "/v1/cluster/rebalance?dry_run=true", None),
        (
            Method::POST,
            "/v1/cluster/shards/0/move",
            Some(json!({"to": "n1"})),
        ),
        (Method::POST, "/v1/cluster/members/n1/leave", None),
        (Method::GET, "/v1/actors", None),
    ];
    for (method, path, body) in forbidden {
        let reply = send(&trader, method.clone(), path, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (403, "forbidden"),
            "trader {method} {path}: {}",
            reply.body
        );
    }
    // Another account's order is not found, as a missing one is: the same answer, byte for
    // byte, so no id is confirmed to be in use.
    let missing = "/v1/orders/987654321";
    for method in [Method::GET, Method::DELETE] {
        let reply = send(&trader, method.clone(), &bob_order, None).await;
        let absent = send(&trader, method.clone(), missing, None).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, "order_not_found"),
            "{method}"
        );
        let id = bob_ask["order_id"].to_string();
        assert_eq!(
            reply.body.to_string().replace(&id, "ID"),
            absent.body.to_string().replace("987654321", "ID"),
            "{method}"
        );
    }
    unchanged(&admin, &["alice", "bob"], &before).await;
    let (status, _) = admin.get("/v1/markets/ETH-USD").await;
    assert_eq!(status, 404, "the trader listed no market");

    // The trader cancels its own order; the admin reaches everything.
    assert_eq!(
        send(&trader, Method::DELETE, &alice_order, None)
            .await
            .status,
        202
    );
    for path in [
        "/v1/cluster/members",
        "/v1/cluster/shards",
        "/v1/actors",
        "/v1/accounts/bob",
    ] {
        assert_eq!(admin.get(path).await.0, 200, "admin GET {path}");
    }

    // Operations are open to anyone; other nodes' metrics only to admins.
    for path in ["/health/live", "/health/ready", "/metrics", "/openapi.json"] {
        assert_eq!(anonymous.get(path).await.0, 200, "anonymous GET {path}");
    }
    for path in ["/metrics?node=all", "/metrics?node=n2"] {
        assert_eq!(anonymous.get(path).await.0, 401, "anonymous GET {path}");
        assert_eq!(trader.get(path).await.0, 403, "trader GET {path}");
    }
    assert_eq!(admin.get("/metrics?node=all").await.0, 200);

    assert_eq!(node.stop().await, Some(0));
    let logs = node.logs();
    assert!(
        logs.contains("ready"),
        "the node's logs were captured: {logs}"
    );
    for token in [ADMIN_TOKEN, TRADER_TOKEN, WRONG_TOKEN, FUNDING_TOKEN] {
        assert!(!logs.contains(token), "a token appears in the logs");
    }
    // Written to a pipe, not a terminal: plain text, no colour codes.
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in the logs: {logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_tokens_refuses_a_public_address() {
    let (code, stderr) = start_refused(&NodeOptions::default(), "0.0.0.0:0").await;
    assert_ne!(code, Some(0), "refused: {stderr}");
    assert!(
        stderr.contains("without tokens") && stderr.contains("0.0.0.0"),
        "the node says why: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_configurations_are_refused_at_start() {
    let cases = [
        (
            "[[tokens]]\ntoken = \"short\"\nrole = \"admin\"\n",
            "shorter than 16 characters",
        ),
        (
            "[[tokens]]\ntoken = \"a-long-enough-trader-token\"\nrole = \"trader\"\n",
            "lists no accounts",
        ),
        (
            "[[tokens]]\ntoken = \"a-long-enough-owner-token\"\nrole = \"owner\"\n",
            "owner",
        ),
        (
            "[[tokens]]\ntoken = \"a-long-enough-funding-token\"\nrole = \"funding\"\n\
             accounts = [\"alice\"]\n",
            "only a trader's are limited",
        ),
    ];
    for (config, reason) in cases {
        let (code, stderr) = start_refused(&NodeOptions::with_config(config), "127.0.0.1:0").await;
        assert_ne!(code, Some(0), "{config}: {stderr}");
        assert!(
            stderr.contains(reason),
            "{config}: the node says why: {stderr}"
        );
        assert!(
            !stderr.contains("a-long-enough"),
            "the refusal does not echo the token: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_tokens_refuses_other_hosts_and_cross_site_posts() {
    let node = Node::start(NodeOptions::default()).await;
    let http = node.http(None);
    list_market(&http).await;
    deposit(&http, "alice", "USD", 1_000).await;
    let client = reqwest::Client::new();
    let halt = format!("{}/v1/markets/{SYMBOL}/halt", node.url);
    // What a page on another site makes a browser send: a form post, or a fetch.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let reply = client
            .post(&halt)
            .header(name, value)
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await
            .expect("the node answers");
        assert_eq!(reply.status(), 403, "{name}: {value}");
    }
    // DNS rebinding: the page's own name as the host, even for a read.
    let reply = client
        .get(format!("{}/v1/accounts/alice", node.url))
        .header("host", "evil.example:8080")
        .send()
        .await
        .expect("the node answers");
    assert_eq!(reply.status(), 403);
    // Nothing was halted; the node's own clients (and pages on its loopback) are served.
    place(&http, &limit_order("alice", "buy", 90, 1)).await;
    let reply = client
        .post(&halt)
        .header("origin", "http://127.0.0.1:3000")
        .send()
        .await
        .expect("the node answers");
    assert!(reply.status().is_success(), "{}", reply.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_its_rate_limit_gets_429_with_retry_after() {
    const LIMITED: &str = "carol-trader-token-limited-19a2";
    let config = format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{LIMITED}\"\nrole = \"trader\"\naccounts = [\"carol\"]\n\
         requests_per_second = 5\n"
    );
    let node = Node::start(NodeOptions::with_config(config)).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let limited = node.http(Some(LIMITED));
    deposit(&admin, "carol", "USD", 10).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let reply = send(&limited, Method::GET, "/v1/accounts/carol", None).await;
        if reply.status == 429 {
            let retry_after: u64 = reply
                .header("retry-after")
                .and_then(|value| value.parse().ok())
                .expect("a 429 says when to retry");
            assert!(retry_after >= 1, "{retry_after}");
            assert_eq!(reply.code(), "too_many_requests");
        }
        statuses.push(reply.status);
    }
    let ok = statuses.iter().filter(|status| **status == 200).count();
    assert!(ok >= 5, "the burst is served: {statuses:?}");
    assert!(
        statuses.contains(&429),
        "30 requests at once exceed 5 a second: {statuses:?}"
    );
    // Another token is not held back by this one's limit, and the limit refills.
    for _ in 0..10 {
        assert_eq!(admin.get("/v1/accounts/carol").await.0, 200);
    }
    eventually(
        "the limit refills",
        std::time::Duration::from_secs(5),
        || async { (limited.get("/v1/accounts/carol").await.0 == 200).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_who_sent_each_command_and_who_was_denied() {
    let config = format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\nname = \"ops\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [[tokens]]\ntoken = \"{FUNDING_TOKEN}\"\nrole = \"funding\"\nname = \"treasury\"\n"
    );
    let node = Node::start(NodeOptions::with_config(config)).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    let trader = node.http(Some(TRADER_TOKEN));
    let funding = node.http(Some(FUNDING_TOKEN));
    let anonymous = node.http(None);
    let deposit_path = "/v1/accounts/alice/deposits";
    let transfer = json!({"asset": "USD", "amount": 500});

    deposit(&funding, "alice", "USD", 500).await;
    assert_eq!(trader.post(deposit_path, &transfer).await.0, 403);
    assert_eq!(anonymous.get("/v1/accounts/alice").await.0, 401);
    assert_eq!(trader.get("/v1/accounts/alice").await.0, 200);
    let (status, _) = trader
        .post("/v1/orders", &json!({"account_id": "alice"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(trader.get("/v1/audit").await.0, 403);

    let expected: [(&str, &str, &str, u16, &str); 5] = [
        ("treasury", "POST", deposit_path, 200, "done"),
        ("trader-2", "POST", deposit_path, 403, "denied"),
        ("anonymous", "GET", "/v1/accounts/alice", 401, "denied"),
        ("trader-2", "POST", "/v1/orders", 400, "failed"),
        ("trader-2", "GET", "/v1/audit", 403, "denied"),
    ];
    let entries = eventually(
        "every audited request is in the log",
        std::time::Duration::from_secs(10),
        || async {
            let (status, log) = admin.get("/v1/audit?limit=50").await;
            assert_eq!(status, 200, "{log}");
            let entries = log["entries"].as_array().cloned().unwrap_or_default();
            (entries.len() >= expected.len()).then_some(entries)
        },
    )
    .await;
    let rows: Vec<(String, String, String, u64, String)> = entries
        .iter()
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
            let status = entry["status"].as_u64().unwrap_or_default();
            (
                text("principal"),
                text("method"),
                text("path"),
                status,
                text("outcome"),
            )
        })
        .collect();
    // Newest first, and nothing else: a read that was allowed is not a command.
    let mut oldest_first = rows.clone();
    oldest_first.reverse();
    let wanted: Vec<(String, String, String, u64, String)> = expected
        .iter()
        .map(|(who, method, path, status, outcome)| {
            let owned = |text: &str| text.to_owned();
            (
                owned(who),
                owned(method),
                owned(path),
                u64::from(*status),
                owned(outcome),
            )
        })
        .collect();
    assert_eq!(oldest_first, wanted);

    let (status, mine) = admin.get("/v1/audit?principal=treasury").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["entries"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(admin.get("/v1/audit?limit=0").await.0, 400);
}
