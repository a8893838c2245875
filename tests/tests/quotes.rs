//! Market data in, against a real node: `POST /v1/markets/{symbol}/quotes` is for feeds and
//! admins only and refuses bad batches; a feed's token does nothing else but read public
//! market data; `tradefloor feed` replays a tick file into the node's journal (read back as
//! strategies read it), restamped if asked, and a backtest reads the journal as it reads the
//! file.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use tradefloor_actors::trading::strategies::{prints, ticks_of};
use tradefloor_persistence::{Database, Journal, JournalConfig};
use tradefloor_strategy::Tick;
use tradefloor_strategy::spec::PrintSource;
use tradefloor_tests::{Node, NodeOptions, binary, list_market};

const ADMIN_TOKEN: &str = "admin-secret-token-5c1e9a7b33";
const FEED_TOKEN: &str = "feed-secret-token-0d4f2b8e61";
const TRADER_TOKEN: &str = "alice-trader-token-93ac71d0e4";
const FUNDING_TOKEN: &str = "funding-secret-token-6e2a9f05";

fn config() -> String {
    format!(
        "[[tokens]]\ntoken = \"{ADMIN_TOKEN}\"\nrole = \"admin\"\n\n\
         [[tokens]]\ntoken = \"{FEED_TOKEN}\"\nrole = \"feed\"\n\n\
         [[tokens]]\ntoken = \"{TRADER_TOKEN}\"\nrole = \"trader\"\naccounts = [\"alice\"]\n\n\
         [[tokens]]\ntoken = \"{FUNDING_TOKEN}\"\nrole = \"funding\"\n"
    )
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../strategy/tests/data")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_come_from_feeds_and_admins_only_and_bad_batches_are_refused() {
    let node = Node::start(NodeOptions::with_config(config())).await;
    let feed = node.http(Some(FEED_TOKEN));
    let path = "/v1/markets/BTC-USD/quotes";
    let batch = json!({"quotes": [{"at": 1_000_000, "price": 101, "quantity": 2}, {"price": 102}]});
    let (status, answer) = feed.post(path, &batch).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        (answer["symbol"].as_str(), answer["accepted"].as_u64()),
        (Some("BTC-USD"), Some(2))
    );
    let first_offset = answer["offset"].as_u64().expect("an offset");
    let (status, answer) = node.http(Some(ADMIN_TOKEN)).post(path, &batch).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer["offset"].as_u64() > Some(first_offset), "{answer}");
    for (token, status) in [
        (Some(TRADER_TOKEN), 403),
        (Some(FUNDING_TOKEN), 403),
        (None, 401),
    ] {
        let (got, answer) = node.http(token).post(path, &batch).await;
        assert_eq!(got, status, "{token:?}: {answer}");
    }

    let many: Vec<Value> = (1..=1_001).map(|price| json!({"price": price})).collect();
    for (bad, code) in [
        (json!({"quotes": []}), "invalid_quotes"),
        (json!({"quotes": many}), "invalid_quotes"),
        (json!({"quotes": [{"price": 0}]}), "invalid_quotes"),
        (
            json!({"quotes": [{"price": 1_u64 << 63}]}),
            "invalid_quotes",
        ),
        (
            json!({"quotes": [{"price": 5, "quantity": u64::MAX}]}),
            "invalid_quotes",
        ),
        (json!({"quotes": [{"price": -1}]}), "invalid_json"),
        (json!({"quotes": [{"price": 1.5}]}), "invalid_json"),
        (
            json!({"quotes": [{"price": 1, "quantity": -2}]}),
            "invalid_json",
        ),
        (json!({"quotes": [{"price": 1, "size": 2}]}), "invalid_json"),
        (json!({"quotes": [{"at": 1}]}), "invalid_json"),
        (json!({"quotes": [[1, 100, 0]]}), "invalid_json"),
        (json!([[{"price": 1}]]), "invalid_json"),
        (json!({"prices": [{"price": 1}]}), "invalid_json"),
        (json!({"quotes": [{"price": 1}], "more": 1}), "invalid_json"),
    ] {
        let (status, answer) = feed.post(path, &bad).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{bad}: {answer}"
        );
    }
    let (status, answer) = feed.post("/v1/markets/btc!usd/quotes", &batch).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_id")),
        "{answer}"
    );
    let (status, answer) = feed.get(path).await;
    assert_eq!(status, 405, "{answer}");

    // A feed reads public market data and touches nothing else.
    list_market(&node.http(Some(ADMIN_TOKEN))).await;
    assert_eq!(feed.get("/v1/markets/BTC-USD").await.0, 200);
    assert_eq!(feed.get("/v1/markets/BTC-USD/book?depth=5").await.0, 200);
    for (method_path, body) in [
        (
            "/v1/accounts/alice/deposits",
            json!({"asset": "USD", "amount": 5}),
        ),
        (
            "/v1/accounts/alice/withdrawals",
            json!({"asset": "USD", "amount": 5}),
        ),
        (
            "/v1/orders",
            json!({"account_id": "alice", "symbol": "BTC-USD", "side": "buy", "type": "limit",
                "price": 100, "quantity": 1}),
        ),
        (
            "/v1/markets",
            json!({"symbol": "ETH-USD", "base": "ETH", "quote": "USD", "tick_size": 1, "lot_size": 1}),
        ),
    ] {
        let (status, answer) = feed.post(method_path, &body).await;
        assert_eq!(status, 403, "{method_path}: {answer}");
    }
    assert_eq!(feed.get("/v1/accounts/alice").await.0, 403);
    assert_eq!(feed.get("/v1/actors").await.0, 403);

    // The route is in the OpenAPI document.
    let (_, document) = feed.get("/openapi.json").await;
    let operation = &document["paths"]["/v1/markets/{symbol}/quotes"]["post"];
    assert!(operation["requestBody"].is_object(), "{operation}");
}

/// Runs `tradefloor feed` against `node` with `args`; it must succeed. Its stdout.
async fn feed(node: &Node, args: &[&str]) -> String {
    let mut command = std::process::Command::new(binary());
    command
        .arg("feed")
        .args(args)
        .args(["--node", &node.url, "--token", FEED_TOKEN])
        .env_remove("TRADEFLOOR_TOKEN");
    let output: Output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread does not panic")
        .expect("the tradefloor binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "feed {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The ticks of `symbol` in a stopped node's journal, as strategies read them.
async fn journal_ticks(journal: &Path, symbol: &str) -> Vec<Tick> {
    let config = JournalConfig::default();
    let url = format!("sqlite:{}", journal.display());
    let database = Database::connect(&url, &config)
        .await
        .expect("the journal opens");
    let journal = Journal::open(database, config)
        .await
        .expect("the journal opens");
    let mut ticks = Vec::new();
    let mut after = 0;
    loop {
        let page = journal
            .read_all(after, 1_000, &prints())
            .await
            .expect("reads");
        let Some(last) = page.last() else {
            return ticks;
        };
        after = last.global_offset;
        for stored in &page {
            ticks.extend(ticks_of(stored, symbol, PrintSource::Quotes).expect("decodes"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_replays_a_tick_file_into_the_journal_and_a_backtest_reads_it_back() {
    let mut node = Node::start(NodeOptions::with_config(config())).await;
    let ticks_csv = sample("ticks.csv");
    let summary = feed(
        &node,
        &[
            "--csv",
            ticks_csv.to_str().unwrap(),
            "--rate",
            "20000",
            "--batch",
            "500",
            "--symbol",
            "BTC-USD",
        ],
    )
    .await;
    assert!(
        summary.contains("published 4000 ticks of BTC-USD in 8 batches"),
        "{summary}"
    );
    let dir = tempfile::tempdir().expect("a directory");
    let recorded = dir.path().join("recorded.csv");
    std::fs::write(
        &recorded,
        "at,price,quantity\n1000000,100,1\n1500000,101,0\n3000000,99,2\n",
    )
    .unwrap();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let summary = feed(
        &node,
        &[
            "--csv",
            recorded.to_str().unwrap(),
            "--rate",
            "100",
            "--batch",
            "2",
            "--symbol",
            "ETH-USD",
            "--restamp",
        ],
    )
    .await;
    assert!(
        summary.contains("published 3 ticks of ETH-USD in 2 batches"),
        "{summary}"
    );
    assert_eq!(node.stop().await, Some(0));

    let journal = node.data_dir.join("journal.sqlite");
    let expected = Tick::parse_csv(&std::fs::read_to_string(&ticks_csv).unwrap()).unwrap();
    assert_eq!(journal_ticks(&journal, "BTC-USD").await, expected);
    let restamped = journal_ticks(&journal, "ETH-USD").await;
    let prices: Vec<u64> = restamped.iter().map(|tick| tick.price).collect();
    assert_eq!(prices, [100, 101, 99]);
    let spacing: Vec<i64> = restamped
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    assert_eq!(spacing, [500_000, 1_500_000], "{restamped:?}");
    assert!(
        i128::from(restamped[0].at) >= i128::try_from(started).unwrap(),
        "{restamped:?}"
    );

    // A backtest of the journal reports what one of the file does.
    let strategy = sample("strategy.json");
    let run = |source: &[&str]| {
        let output = std::process::Command::new(binary())
            .args([
                "backtest",
                "--strategy",
                strategy.to_str().unwrap(),
                "--json",
            ])
            .args(source)
            .arg("--svg")
            .arg(dir.path().join("equity.svg"))
            .output()
            .expect("the tradefloor binary runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    assert_eq!(
        run(&["--journal", journal.to_str().unwrap()]),
        run(&["--data", ticks_csv.to_str().unwrap()])
    );
}
