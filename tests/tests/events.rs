//! The log for consumers outside the node, against a real node: `GET /v1/events` pages
//! through every event once, in offset order, resuming from `next_after`; filters by kind,
//! name, stream and symbol keep only what they name; a long poll returns the next event as
//! it commits; a subscription's offset is kept by the node, forward only, and resumed from;
//! it is all for admins only, and bad parameters change nothing and say which.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradefloor_tests::sse::Sse;
use tradefloor_tests::{
    Http, Node, NodeOptions, deposit, eventually, limit_order, list_market, place,
};

const ADMIN_TOKEN: &str = "admin-secret-token-1b7e44c0d2";
const TRADER_TOKEN: &str = "alice-trader-token-5f0a93c2b8";

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n"
    )
}

/// Every event matching `filter`, page by page of `limit`.
async fn all_events(http: &Http, filter: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = http
            .get(&format!("/v1/events?after={after}&limit={limit}{filter}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let batch = page["events"].as_array().expect("events").clone();
        let next = page["next_after"].as_u64().expect("next_after");
        assert!(next >= after, "pages move forward");
        if batch.is_empty() && next == after {
            return events;
        }
        assert!(batch.len() <= limit as usize);
        events.extend(batch);
        after = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_paged_filtered_and_followed() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 100_000).await;
    deposit(&admin, "bob", "BTC", 100).await;
    place(&admin, &limit_order("bob", "sell", 100, 10)).await;
    place(&admin, &limit_order("alice", "buy", 100, 4)).await;
    // Settlement follows the answer: wait until alice's BTC is there.
    let started = Instant::now();
    while admin.get("/v1/accounts/alice").await.1["balances"]["BTC"]["total"] != 4 {
        assert!(started.elapsed() < Duration::from_secs(30), "settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every event once, in offset order, whatever the page size.
    let everything = all_events(&admin, "", 3).await;
    let offsets: Vec<u64> = everything
        .iter()
        .map(|event| event["offset"].as_u64().expect("an offset"))
        .collect();
    assert!(
        offsets.windows(2).all(|pair| pair[0] < pair[1]),
        "{offsets:?}"
    );
    assert_eq!(
        offsets.len(),
        offsets.last().copied().unwrap_or(0) as usize,
        "no gaps"
    );
    assert_eq!(all_events(&admin, "", 1_000).await, everything);
    assert!(everything.iter().all(|event| event["event"].is_object()));

    // Filters keep what they name and nothing else.
    let traded = all_events(&admin, "&names=book.traded", 2).await;
    assert_eq!(traded.len(), 1);
    assert_eq!(traded[0]["event"]["traded"]["quantity"], 4);
    let accounts = all_events(&admin, "&kinds=account", 2).await;
    assert!(!accounts.is_empty() && accounts.iter().all(|event| event["kind"] == "account"));
    let alice = all_events(&admin, "&stream=account%7Calice", 5).await;
    assert!(alice.iter().all(|event| event["stream"] == "account|alice"));
    let names: BTreeSet<&str> = alice
        .iter()
        .filter_map(|event| event["name"].as_str())
        .collect();
    assert!(names.contains("account.deposited") && names.contains("account.trade_settled"));
    let btc = all_events(&admin, "&symbol=BTC-USD", 50).await;
    assert!(btc.iter().any(|event| event["kind"] == "order_book"));
    assert!(
        btc.iter()
            .any(|event| event["name"] == "account.hold_placed")
    );
    assert!(
        btc.iter().all(|event| event["name"] != "account.deposited"),
        "deposits name no symbol"
    );
    let none = all_events(&admin, "&symbol=ETH-USD", 50).await;
    assert!(none.is_empty(), "{none:?}");

    // A long poll after the head returns the next event once it commits.
    let head = *offsets.last().expect("a head");
    let follower = admin.clone();
    let poll = tokio::spawn(async move {
        follower
            .get(&format!(
                "/v1/events?after={head}&wait_ms=20000&kinds=account"
            ))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the poll waits for an event");
    deposit(&admin, "carol", "USD", 7).await;
    let (status, page) = poll.await.expect("the poll answers");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"][0]["stream"], "account|carol", "{page}");
    // And an empty wait ends at its bound.
    let after = page["next_after"].as_u64().expect("next_after");
    let (status, page) = admin
        .get(&format!("/v1/events?after={after}&wait_ms=200"))
        .await;
    assert_eq!((status, page["events"].clone()), (200, json!([])));

    // A subscription's offset, kept by the node: forward only, and where `?subscription=`
    // resumes.
    let offset = |name: &str| format!("/v1/subscriptions/{name}/offset");
    assert_eq!(admin.get(&offset("tape")).await.1["offset"], 0);
    let commit = |value: u64| json!({"offset": value});
    let reply = admin
        .call(
            tradefloor_tests::Method::PUT,
            &offset("tape"),
            Some(&commit(head)),
        )
        .await;
    assert_eq!(
        (reply.status, reply.body["offset"].as_u64()),
        (200, Some(head)),
        "{}",
        reply.body
    );
    let behind = admin
        .call(
            tradefloor_tests::Method::PUT,
            &offset("tape"),
            Some(&commit(head - 1)),
        )
        .await;
    assert_eq!(behind.status, 409, "{}", behind.body);
    assert_eq!(behind.body["error"]["code"], "offset_behind");
    assert_eq!(
        admin.get(&offset("tape")).await.1["offset"],
        head,
        "nothing changed"
    );
    let (_, resumed) = admin
        .get("/v1/events?subscription=tape&kinds=account")
        .await;
    assert_eq!(resumed["events"][0]["stream"], "account|carol", "{resumed}");
    for bad in [
        json!({"offset": -1}),
        json!({"offset": 1, "more": 2}),
        json!([1]),
    ] {
        let reply = admin
            .call(tradefloor_tests::Method::PUT, &offset("tape"), Some(&bad))
            .await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    assert_eq!(admin.get(&offset("bad%20name")).await.0, 400);
    let trader_reply = node
        .http(Some(TRADER_TOKEN))
        .call(
            tradefloor_tests::Method::PUT,
            &offset("tape"),
            Some(&commit(head + 1)),
        )
        .await;
    assert_eq!(trader_reply.status, 403);

    // Admins only; bad parameters say which.
    let trader = node.http(Some(TRADER_TOKEN));
    assert_eq!(trader.get("/v1/events").await.0, 403);
    assert_eq!(node.http(None).get("/v1/events").await.0, 401);
    for bad in [
        "limit=0",
        "limit=1001",
        "wait_ms=30001",
        "after=9007199254740992",
        "kinds=ledger",
        "names=",
        "symbol=btc",
        "stream=",
        "subscription=a%20b",
        "bogus=1",
    ] {
        let (status, answer) = admin.get(&format!("/v1/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    assert_eq!(node.stop().await, Some(0));
}

/// Reads `count` events from `sse`, checking each `id` is its `offset`.
async fn take(sse: &mut Sse, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = sse.next().await.expect("the stream goes on");
        assert_eq!(event.id, event.data["offset"].as_u64(), "{:?}", event.data);
        assert_eq!(event.event, event.data["name"].as_str().expect("a name"));
        events.push(event.data);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_streams_as_server_sent_events_and_resumes_exactly() {
    let options = NodeOptions::with_config(format!(
        "{}\n[http_limits]\nlog_streams_max = 2\nstream_keepalive_seconds = 1\n",
        config()
    ));
    let mut node = Node::start(options).await;
    let admin = node.http(Some(ADMIN_TOKEN));
    list_market(&admin).await;
    deposit(&admin, "alice", "USD", 100_000).await;
    deposit(&admin, "bob", "BTC", 100).await;
    let url = node.url.clone();
    let before = all_events(&admin, "&kinds=account", 1_000).await;

    // The same events the pages give, in order, then the new ones as they commit.
    let path = "/v1/events?kinds=account";
    let mut sse = Sse::open(&url, path, Some(ADMIN_TOKEN), None)
        .await
        .expect("the stream opens");
    assert_eq!(take(&mut sse, before.len()).await, before);
    deposit(&admin, "carol", "USD", 7).await;
    let live = take(&mut sse, 1).await;
    assert_eq!(live[0]["stream"], "account|carol", "{live:?}");

    // At most `log_streams_max` open: the third is refused, and a closed one frees its place
    // (the node learns it at its next write, a keep-alive at the latest).
    let second = Sse::open(&url, path, Some(ADMIN_TOKEN), None).await;
    let third = Sse::open(&url, path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(
        third
            .err()
            .map(|(status, body)| (status, body["error"]["code"].clone())),
        Some((503, json!("overloaded")))
    );
    drop(second);
    drop(sse);
    let mut reopened = eventually("a place for a stream", Duration::from_secs(10), || async {
        Sse::open(&url, path, Some(ADMIN_TOKEN), None).await.ok()
    })
    .await;

    // Resuming after an id gives exactly the events after it, old and new.
    deposit(&admin, "dave", "USD", 9).await;
    let resume_at = before[before.len() / 2]["offset"]
        .as_u64()
        .expect("an offset");
    let mut resumed = Sse::open(&url, path, Some(ADMIN_TOKEN), Some(&resume_at.to_string()))
        .await
        .expect("the stream reopens");
    let expected = all_events(&admin, "&kinds=account", 1_000).await;
    let expected: Vec<Value> = expected
        .into_iter()
        .filter(|event| event["offset"].as_u64() > Some(resume_at))
        .collect();
    assert_eq!(take(&mut resumed, expected.len()).await, expected);
    assert_eq!(
        take(&mut reopened, before.len() + 2).await.last(),
        expected.last()
    );

    // Admins only, and the parameters are checked as for pages.
    let trader = Sse::open(&url, path, Some(TRADER_TOKEN), None).await;
    assert_eq!(trader.err().map(|(status, _)| status), Some(403));
    let bad = Sse::open(&url, "/v1/events?kinds=ledger", Some(ADMIN_TOKEN), None).await;
    assert_eq!(bad.err().map(|(status, _)| status), Some(400));
    let bad_id = Sse::open(&url, path, Some(ADMIN_TOKEN), Some("x")).await;
    assert_eq!(bad_id.err().map(|(status, _)| status), Some(400));
    drop((resumed, reopened));
    assert_eq!(node.stop().await, Some(0));
}
