//! Overload (DESIGN §3, §7): a flood of concurrent orders on one book and two accounts, against
//! a node with a small in-flight bound and small entity mailboxes, is answered 2xx, 4xx, 429
//! or 503 only (the last two with `Retry-After`), never with a dropped connection; the node
//! stays live; every order answered 2xx exists afterwards; every asset is conserved; memory
//! stays bounded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tradefloor_tests::{
    Method, Node, NodeOptions, PROJECTION_TIMEOUT, deposit, eventually, limit_order, list_market,
    rss_kib, totals,
};

/// Concurrent order requests in the flood.
const FLOOD_ORDERS: u64 = 400;
/// The first order id of the flood (ids are the caller's, to look every order up after).
const FIRST_ORDER_ID: u64 = 5_000_000;
const USD_DEPOSIT: u64 = 10_000_000;
const BTC_DEPOSIT: u64 = 10_000;
/// A generous bound on the node's memory growth over the flood.
const RSS_GROWTH_MAX_KIB: u64 = 512 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_is_shed_not_dropped_and_loses_nothing() {
    let config = "[http_limits]\nrequests_in_flight_max = 48\n\n\
                  [trading]\nentity_mailbox_capacity = 4\n";
    let node = Node::start(NodeOptions::with_config(config)).await;
    let http = node.http(None);
    list_market(&http).await;
    deposit(&http, "alice", "USD", USD_DEPOSIT).await;
    deposit(&http, "bob", "BTC", BTC_DEPOSIT).await;
    let rss_before = node.rss_kib();

    // Sample the node's memory and liveness while the flood runs.
    let flooding = Arc::new(AtomicBool::new(true));
    let rss_peak = Arc::new(AtomicU64::new(rss_before));
    let pid = node.pid();
    let sampler = {
        let (flooding, rss_peak) = (flooding.clone(), rss_peak.clone());
        let http = http.clone();
        tokio::spawn(async move {
            let mut live = BTreeMap::<u16, u64>::new();
            while flooding.load(Ordering::Acquire) {
                rss_peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::AcqRel);
                let reply = http
                    .try_call(Method::GET, "/health/live", None)
                    .await
                    .expect("the node stays up during the flood");
                *live.entry(reply.status).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            live
        })
    };

    let mut flood = JoinSet::new();
    for index in 0..FLOOD_ORDERS {
        let http = http.clone();
        let (account, side) = if index % 2 == 0 {
            ("alice", "buy")
        } else {
            ("bob", "sell")
        };
        let mut order = limit_order(account, side, 100 + index % 3, 1 + index % 4);
        order["order_id"] = json!(FIRST_ORDER_ID + index);
        flood.spawn(async move {
            let reply = http
                .try_call(Method::POST, "/v1/orders", Some(&order))
                .await;
            (FIRST_ORDER_ID + index, reply)
        });
    }
    let mut statuses = BTreeMap::<u16, u64>::new();
    let mut accepted = Vec::new();
    let mut problems = Vec::new();
    while let Some(joined) = flood.join_next().await {
        let (order_id, reply) = joined.expect("a flood task ends");
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                problems.push(format!("order {order_id}: no answer: {error}"));
                continue;
            }
        };
        *statuses.entry(reply.status).or_default() += 1;
        match reply.status {
            // The venue's id for the client's (the answer names both).
            200..=299 => match reply.body["order_id"].as_u64() {
                Some(venue_id) if reply.body["client_order_id"] == order_id => {
                    accepted.push(venue_id);
                }
                _ => problems.push(format!("order {order_id}: answered {}", reply.body)),
            },
            429 | 503 if reply.header("retry-after").is_none() => problems.push(format!(
                "order {order_id}: {} without Retry-After",
                reply.status
            )),
            400..=499 | 503 => {}
            status => problems.push(format!("order {order_id}: {status} {}", reply.body)),
        }
    }
    flooding.store(false, Ordering::Release);
    let live = sampler.await.expect("the sampler ends");
    println!("flood answers by status: {statuses:?}; /health/live meanwhile: {live:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        !accepted.is_empty(),
        "some orders got through: {statuses:?}"
    );
    assert_eq!(
        live.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "liveness is answered 200 throughout, never shed"
    );

    // Every order answered 2xx exists, and settles: every asset is conserved.
    for order_id in &accepted {
        let (status, body) = http.get(&format!("/v1/orders/{order_id}")).await;
        assert_eq!(status, 200, "accepted order {order_id}: {body}");
    }
    let expected = BTreeMap::from([
        ("BTC".to_owned(), BTC_DEPOSIT),
        ("USD".to_owned(), USD_DEPOSIT),
    ]);
    eventually(
        "every fill settles on both accounts",
        PROJECTION_TIMEOUT,
        || async { (totals(&http, &["alice", "bob"]).await == expected).then_some(()) },
    )
    .await;
    assert_eq!(
        http.get("/health/live").await.0,
        200,
        "the node is up after"
    );

    let rss_after = node.rss_kib();
    let rss_peak = rss_peak.load(Ordering::Acquire).max(rss_after);
    println!(
        "node RSS: before {rss_before} KiB, peak {rss_peak} KiB, after {rss_after} KiB \
         ({} orders accepted of {FLOOD_ORDERS})",
        accepted.len()
    );
    assert!(
        rss_peak - rss_before < RSS_GROWTH_MAX_KIB,
        "memory stays bounded: {rss_before} KiB → {rss_peak} KiB"
    );
}
