//! Retention against a real node: an archive run (`POST /v1/archive`, followed through
//! `GET /v1/archive`) moves the accounts' and the book's old events into zstd files, and every
//! read answers as before: an account's history (paged, and as of an earlier time), the log
//! (`GET /v1/events`), a read model rebuilt from offset 0, and the node killed and restarted
//! on the archived journal; the accounts go on trading from where they were.

use std::time::Duration;

use serde_json::{Value, json};
use tradefloor_tests::{
    Http, Node, NodeOptions, deposit, eventually, limit_order, list_market, place,
};

const WITHIN: Duration = Duration::from_secs(60);

const ADMIN_TOKEN: &str = "admin-secret-token-archive-51c3e9";
const TRADER_TOKEN: &str = "alice-trader-token-archive-7d20b4";

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [trading]\nsnapshot_every_events = 4\n"
    )
}

/// Every read the archive must not change, as the node answers them.
async fn reads(http: &Http, middle: i64) -> Vec<Value> {
    let mut reads = Vec::new();
    for account in ["alice", "bob"] {
        for query in [
            "limit=1000".to_owned(),
            "limit=7&after=3".to_owned(),
            format!("limit=1000&valid_at={middle}&known_at={middle}"),
        ] {
            let (status, mut history) = http
                .get(&format!("/v1/accounts/{account}/history?{query}"))
                .await;
            assert_eq!(status, 200, "{history}");
            // The times the query defaulted to "now" differ between the two reads.
            if !query.contains("valid_at") {
                history["valid_at"] = Value::Null;
                history["known_at"] = Value::Null;
            }
            reads.push(history);
        }
        let (status, view) = http.get(&format!("/v1/accounts/{account}")).await;
        assert_eq!(status, 200, "{view}");
        reads.push(view);
    }
    let (status, log) = http.get("/v1/events?after=0&limit=1000").await;
    assert_eq!(status, 200, "{log}");
    reads.push(log);
    reads
}

/// Starts a run of everything recorded before now and waits for its end.
async fn archive_everything(http: &Http) -> Value {
    let (status, started) = http
        .post("/v1/archive", &json!({"older_than_seconds": 0}))
        .await;
    assert_eq!(status, 202, "{started}");
    eventually("the archive run ends", WITHIN, || async {
        let (status, archive) = http.get("/v1/archive").await;
        assert_eq!(status, 200, "{archive}");
        archive["run"]["took_ms"].is_u64().then_some(archive)
    })
    .await
}

async fn balances_rebuilt(http: &Http) {
    let (status, started) = http
        .post("/v1/projections/trading.balances/rebuild", &json!({}))
        .await;
    assert_eq!(status, 202, "{started}");
    eventually("the rebuild ends", WITHIN, || async {
        let (_, list) = http.get("/v1/projections").await;
        list["projections"]
            .as_array()?
            .iter()
            .find(|projection| projection["name"] == "trading.balances")?["rebuild"]["took_ms"]
            .as_u64()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_events_read_as_before_across_a_rebuild_and_a_restart() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let http = node.http(Some(ADMIN_TOKEN));
    let trader = node.http(Some(TRADER_TOKEN));
    assert_eq!(trader.get("/v1/archive").await.0, 403);
    let body = json!({"older_than_seconds": 0});
    assert_eq!(
        trader.post("/v1/archive", &body).await.0,
        403,
        "admins only"
    );
    list_market(&http).await;
    deposit(&http, "alice", "USD", 1_000_000).await;
    deposit(&http, "bob", "BTC", 1_000).await;
    let mut middle = 0;
    for round in 0..12_u64 {
        place(&http, &limit_order("bob", "sell", 100 + round % 3, 2)).await;
        place(&http, &limit_order("alice", "buy", 100 + round % 3, 2)).await;
        if round == 6 {
            middle = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros(),
            )
            .unwrap();
        }
    }
    let (status, refused) = http.post("/v1/archive", &json!({})).await;
    assert_eq!(status, 400, "no horizon given or configured: {refused}");
    // The read models have caught up once bob's fills show in his balances.
    eventually("bob's fills in the read models", WITHIN, || async {
        let (_, view) = http.get("/v1/accounts/bob").await;
        (view["balances"]["USD"]["total"].as_u64()? > 0).then_some(())
    })
    .await;
    let before = reads(&http, middle).await;

    let archive = archive_everything(&http).await;
    let run = &archive["run"];
    assert_eq!(run["error"], Value::Null, "{archive}");
    let moved = run["events"].as_u64().unwrap();
    assert!(
        moved >= 20,
        "the accounts' and the book's old events move: {archive}"
    );
    assert_eq!(archive["events"].as_u64(), Some(moved), "{archive}");
    let files = std::fs::read_dir(node.data_dir.join("archive"))
        .unwrap()
        .count();
    assert_eq!(Some(files as u64), archive["files"].as_u64(), "{archive}");
    assert_eq!(
        reads(&http, middle).await,
        before,
        "reads changed by archiving"
    );

    balances_rebuilt(&http).await;
    assert_eq!(
        reads(&http, middle).await,
        before,
        "a rebuild from the archive differs"
    );

    node.kill().await;
    node.restart().await;
    let http = node.http(Some(ADMIN_TOKEN));
    assert_eq!(
        reads(&http, middle).await,
        before,
        "the restarted node reads otherwise"
    );
    // The accounts go on from their heads.
    place(&http, &limit_order("bob", "sell", 101, 1)).await;
    let filled = place(&http, &limit_order("alice", "buy", 101, 1)).await;
    assert_eq!(filled["status"], "filled", "{filled}");
    let (status, again) = http
        .post("/v1/archive", &json!({"older_than_seconds": 0}))
        .await;
    assert_eq!(status, 202, "{again}");
}
