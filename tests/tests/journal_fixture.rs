//! Journals written by earlier releases read identically today: a node of the current code
//! starts on a copy of each `tests/fixtures/journal-v*/journal.sqlite` (written by
//! `bin/scripts/journal-fixture.py` with the release before a schema changed: `journal-v1`
//! before the account's events went to version 2, `journal-v2` before the saga's did, with
//! rejected orders, `journal-v3` before the account's holds could carry their saga's start)
//! and every read route answers what that release answered
//! (`expected.json`), read models rebuilt from the log included. Answers may have gained
//! fields since; none may have lost or changed one. The state then goes on: the limits set
//! back then still refuse an order, and a resting order of then can be cancelled.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradefloor_tests::{Http, Method, Node, NodeOptions};

/// How long the rebuilt read models may take to show the whole fixture.
const CATCH_UP: Duration = Duration::from_secs(60);

fn fixture(release: &str, name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(release)
        .join(name)
}

/// Where `actual` differs from `expected`, field by field: every field of `expected` must be
/// in `actual` with the same value (objects may have gained fields; arrays keep their length).
fn differences(path: &str, expected: &Value, actual: &Value, found: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                match actual.get(key) {
                    Some(other) => differences(&format!("{path}.{key}"), value, other, found),
                    None => found.push(format!("{path}.{key}: missing")),
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (index, (value, other)) in expected.iter().zip(actual).enumerate() {
                differences(&format!("{path}[{index}]"), value, other, found);
            }
        }
        _ if expected == actual => {}
        _ => found.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

/// Every route of the fixture against the node: the differences, all routes together.
async fn compare(http: &Http, expected: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    for (route, answer) in expected {
        let (status, body) = http.get(route).await;
        if json!(status) != answer["status"] {
            found.push(format!(
                "{route}: status {status}, expected {}",
                answer["status"]
            ));
        }
        differences(route, &answer["body"], &body, &mut found);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_version_1_account_events_reads_identically() {
    reads_identically("journal-v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_version_1_saga_events_reads_identically() {
    reads_identically("journal-v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_version_2_holds_without_their_start_reads_identically() {
    reads_identically("journal-v3").await;
}

async fn reads_identically(release: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let journal = dir.path().join("journal.sqlite");
    std::fs::copy(fixture(release, "journal.sqlite"), &journal).expect("copy the fixture");
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixture(release, "expected.json")).expect("the fixture's answers"),
    )
    .expect("JSON");
    let expected = expected.as_object().expect("answers by route").clone();
    let options = NodeOptions::with_journal(&format!("sqlite:{}", journal.display()));
    let mut node = Node::start(options).await;

    let http = node.http(None);
    let started = Instant::now();
    let mut found = compare(&http, &expected).await;
    while !found.is_empty() && started.elapsed() < CATCH_UP {
        tokio::time::sleep(Duration::from_millis(250)).await;
        found = compare(&http, &expected).await;
    }
    assert!(
        found.is_empty(),
        "the fixture reads differently:\n{}",
        found.join("\n")
    );

    // Once more after a restart: the node now recovers from snapshots it saved itself.
    assert_eq!(node.stop().await, Some(0));
    node.restart().await;
    let http = node.http(None);
    let found = compare(&http, &expected).await;
    assert!(found.is_empty(), "after a restart:\n{}", found.join("\n"));

    // alice's limits of then still hold: 4 000 × 101 is above her max notional of 400 000.
    let order = json!({"account_id": "alice", "symbol": "BTC-USD", "side": "buy",
                       "type": "limit", "price": 101, "quantity": 4_000});
    let refused = http.call(Method::POST, "/v1/orders", Some(&order)).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["error"]["code"], "risk_limit",
        "{}",
        refused.body
    );
    // carol's order resting since then is cancelled, and her hold released.
    let carol = &expected["/v1/accounts/carol/orders/3001"]["body"];
    let cancel = http
        .call(
            Method::DELETE,
            &format!("/v1/orders/{}", carol["order_id"]),
            None,
        )
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    let released = Instant::now();
    loop {
        let (_, account) = http.get("/v1/accounts/carol").await;
        if account["balances"]["USD"]["held"] == 0 {
            assert_eq!(account["balances"]["USD"]["total"], 50_000);
            break;
        }
        assert!(
            released.elapsed() < CATCH_UP,
            "carol's hold stays: {account}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.stop().await, Some(0));
}
